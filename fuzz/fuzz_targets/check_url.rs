#![no_main]
// See exechealthz::fuzz::check_url for what is driven and what must hold.
libfuzzer_sys::fuzz_target!(|data: &[u8]| exechealthz::fuzz::check_url(data));

#![no_main]
// See exechealthz::fuzz::request_head for what is driven and what must hold.
libfuzzer_sys::fuzz_target!(|data: &[u8]| exechealthz::fuzz::request_head(data));

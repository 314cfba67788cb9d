#![no_main]
// See exechealthz::fuzz::hpack_blocks for what is driven and what must hold.
libfuzzer_sys::fuzz_target!(|data: &[u8]| exechealthz::fuzz::hpack_blocks(data));

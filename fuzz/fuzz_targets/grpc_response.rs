#![no_main]
// See exechealthz::fuzz::grpc_response for what is driven and what must hold.
libfuzzer_sys::fuzz_target!(|data: &[u8]| exechealthz::fuzz::grpc_response(data));

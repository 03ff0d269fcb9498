//! The `WWW-Authenticate` challenge parser: arbitrary header values never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = oci_rs_registry_client::parse_challenges(s);
});

//! What a monitor reads from others: attach frames from a client and CRI log records back
//! from its log. Decoding never panics, never takes more than the frame says, and a record
//! that parses keeps its content byte for byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oci_rs_runtime::{Frame, MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((frame, used))) = Frame::decode(rest) {
        assert!(used >= 5 && used <= rest.len() && used <= 5 + MAX_FRAME);
        assert_eq!(frame.encode(), rest[..used].to_vec());
        rest = &rest[used..];
    }
    for line in data.split(|&b| b == b'\n') {
        if let Some(r) = oci_rs_runtime::parse_log_record(line) {
            assert!(line.ends_with(&r.content));
            let ts = oci_rs_runtime::rfc3339(r.time);
            assert_eq!(oci_rs_runtime::parse_rfc3339(&ts), Some(r.time));
        }
    }
});

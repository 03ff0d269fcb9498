//! Digest strings: parsing never panics, and whatever parses is safe as path components.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(d) = oci_rs_image::parse_digest(s) {
            let (alg, hex) =
                oci_rs_image::digest_path_components(&d).expect("parsed digest has safe components");
            assert!(alg == "sha256" || alg == "sha512");
            assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(d.to_string(), s);
        }
    }
});

//! Image references: parsing arbitrary text never panics; what parses round-trips through its
//! display form, and its digest (if any) is safe to use in a path.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oci_rs_image::ImageReference;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = ImageReference::parse(s) {
        let shown = r.to_string();
        let again = ImageReference::parse(&shown).expect("a displayed reference parses");
        assert_eq!(again.to_string(), shown);
        assert_eq!(
            ImageReference::parse(&r.familiar())
                .expect("familiar form parses")
                .to_string(),
            shown
        );
        if let Some(d) = r.digest() {
            oci_rs_image::digest_path_components(d).expect("a parsed digest is path-safe");
        }
    }
});

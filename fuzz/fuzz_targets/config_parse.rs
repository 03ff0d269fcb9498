//! Image configs (OCI and Docker): arbitrary bytes never panic the parsers the crates use on
//! configs (typed, and the JSON view `inspect` and the image builder work on); what parses
//! re-serialises to something that parses to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oci_image::oci_spec::image::ImageConfiguration;

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = serde_json::from_slice::<ImageConfiguration>(data) {
        let again = serde_json::to_vec(&cfg).expect("a parsed config serialises");
        let back: ImageConfiguration = serde_json::from_slice(&again).expect("and parses back");
        assert_eq!(back, cfg);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        // What ImageInspect and ImageBuilder read from a config's JSON.
        let _ = v
            .pointer("/rootfs/diff_ids")
            .and_then(|d| d.as_array())
            .map(|a| a.len());
        let _ = v.get("config").and_then(|c| c.get("Env"));
    }
});

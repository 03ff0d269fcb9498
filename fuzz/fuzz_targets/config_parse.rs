//! Image configs (OCI and Docker): arbitrary bytes never panic the parsers the crates use on
//! configs (typed, and the JSON view `inspect` and the image builder work on); what parses
//! re-serialises to something that parses to the same value (up to the order of the keys of
//! `ExposedPorts` and `Volumes`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use oci_rs_image::oci_spec::image::ImageConfiguration;

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = serde_json::from_slice::<ImageConfiguration>(data) {
        let again = serde_json::to_vec(&cfg).expect("a parsed config serialises");
        let back: ImageConfiguration = serde_json::from_slice(&again).expect("and parses back");
        // oci-spec reads ExposedPorts and Volumes (JSON objects) through a hash map into
        // lists, so their order may differ between two parses: compare them sorted.
        let sorted = |c: &ImageConfiguration| {
            let mut c = c.clone();
            if let Some(mut conf) = c.config().clone() {
                if let Some(mut p) = conf.exposed_ports().clone() {
                    p.sort();
                    conf.set_exposed_ports(Some(p));
                }
                if let Some(mut v) = conf.volumes().clone() {
                    v.sort();
                    conf.set_volumes(Some(v));
                }
                c.set_config(Some(conf));
            }
            c
        };
        assert_eq!(sorted(&back), sorted(&cfg));
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

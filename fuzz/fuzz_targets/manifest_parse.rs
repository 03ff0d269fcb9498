//! Manifests and indexes: parsing arbitrary bytes under each declared media type never panics;
//! what parses keeps its exact bytes and digest and re-parses to the same body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oci_rs_image::{media, Manifest};

const DECLARED: [Option<&str>; 6] = [
    None,
    Some(media::OCI_MANIFEST),
    Some(media::OCI_INDEX),
    Some(media::DOCKER_MANIFEST),
    Some(media::DOCKER_MANIFEST_LIST),
    Some("application/json"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let declared = DECLARED[selector as usize % DECLARED.len()];
    if let Ok(m) = Manifest::parse(body.to_vec(), declared) {
        assert_eq!(m.bytes().as_ref(), body);
        assert_eq!(m.digest(), &oci_rs_image::sha256(body));
        let again = Manifest::parse(body.to_vec(), Some(m.media_type()))
            .expect("re-parse with own media type");
        assert_eq!(again.body(), m.body());
        // Children are descriptors with digests; using them as paths must be checked.
        for child in m.children() {
            let _ = oci_rs_image::digest_path_components(child.digest());
        }
    }
});

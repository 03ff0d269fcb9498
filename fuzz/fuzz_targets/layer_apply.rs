//! Layer apply: arbitrary bytes as a plain tar applied into a temporary root never panic and
//! never change anything outside the root.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oci_rs_layer::{apply_tar, ApplyOptions, Devices, Ownership};

fn snapshot(dir: &std::path::Path) -> Vec<(String, u64, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let md = std::fs::symlink_metadata(e.path()).ok();
        out.push((
            e.file_name().to_string_lossy().into_owned(),
            md.map(|m| m.len()).unwrap_or(0),
            std::fs::read(e.path()).unwrap_or_default(),
        ));
    }
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    if std::fs::create_dir(&root).is_err() || std::fs::create_dir(&outside).is_err() {
        return;
    }
    let _ = std::fs::write(outside.join("secret"), b"sentinel");
    let before = snapshot(&outside);
    let before_parent = snapshot(dir.path());
    let opts = ApplyOptions {
        ownership: Ownership::Rootless,
        devices: Devices::Skip,
        ..Default::default()
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let _ = rt.block_on(apply_tar(&root, data, &opts));
    assert_eq!(snapshot(&outside), before, "the sentinel changed");
    assert_eq!(
        snapshot(dir.path()).len(),
        before_parent.len(),
        "something appeared beside the root"
    );
});

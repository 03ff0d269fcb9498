//! Walks under a small descriptor limit: whiteout application, removal and diff of a tree
//! deeper than the limit hold a bounded number of descriptors (they held one or two per
//! level, and failed with EMFILE). Its own test binary: the limit is process-wide.

#![allow(clippy::unwrap_used)]

mod common;

use common::{tar, E};
use oci_rs_layer::{apply_tar, ApplyOptions};

const LIMIT: u64 = 128;
const DEPTH: usize = 300;

#[tokio::test]
async fn deep_trees_are_handled_within_a_small_descriptor_limit() {
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(LIMIT),
            maximum: rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum,
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let chain = "a/".repeat(DEPTH);
    // A lower layer, then one that keeps a deep chain and makes `o` opaque after it: the
    // opaque marker clears the lower `o/old` and walks the kept chain.
    let lower = tar(&[E::dir("o"), E::file("o/old", b"lower")]);
    apply_tar(&root, &lower[..], &ApplyOptions::default())
        .await
        .unwrap();
    let upper = tar(&[
        E::file(&format!("o/{chain}f"), b"kept"),
        E::file("o/.wh..wh..opq", b""),
    ]);
    apply_tar(&root, &upper[..], &ApplyOptions::default())
        .await
        .unwrap();
    assert!(!root.join("o/old").exists());
    assert_eq!(
        std::fs::read(root.join(format!("o/{chain}f"))).unwrap(),
        b"kept"
    );
    // A diff of the whole tree, and of it against an empty lower.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for lower in [None, Some(empty.as_path())] {
        let (report, _) = oci_rs_layer::diff(
            lower,
            &root,
            tokio::io::sink(),
            &oci_rs_layer::DiffOptions::default(),
        )
        .await
        .unwrap();
        assert!(report.changed > DEPTH as u64, "{report:?}");
    }
    // And its removal.
    let parent = rustix::fs::open(
        &root,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    assert!(oci_rs_layer::remove_all(std::os::fd::AsFd::as_fd(&parent), "o".as_ref()).unwrap());
    assert!(!root.join("o").exists());
}

//! A create that fails after its init was cloned leaves no process behind: not a running init,
//! not a zombie. Its own test binary, with one test, so that no other test's children can be
//! mistaken for a leftover.

#![allow(clippy::unwrap_used)]

use oci_rs_runtime::{ContainerBuilder, Error};
use oci_spec::runtime::{HookBuilder, HooksBuilder, RootBuilder, Spec};

#[test]
fn a_create_that_fails_after_the_clone_kills_and_reaps_its_init() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: creating namespaces and cgroups needs root");
        return;
    }
    oci_rs_runtime::allow_unsealed();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rootfs")).unwrap();
    let mut spec = Spec::default();
    spec.set_root(Some(RootBuilder::default().path("rootfs").build().unwrap()));
    // A createContainer hook makes the state go to the init after the clone, and annotations
    // over 32 KiB make that state too large: the create fails with the init cloned, placed in
    // its cgroup and waiting for its go.
    let hook = HookBuilder::default().path("/bin/true").build().unwrap();
    spec.set_hooks(Some(
        HooksBuilder::default()
            .create_container(vec![hook])
            .build()
            .unwrap(),
    ));
    spec.set_annotations(Some([("big".to_string(), "x".repeat(40 * 1024))].into()));
    let state = dir.path().join("state");
    let err = ContainerBuilder::new("guarded", spec, dir.path())
        .state_root(&state)
        .create()
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidSpec { field, .. } if *field == "annotations"),
        "{err}"
    );
    // No child at all: the init was killed and reaped.
    let left = rustix::process::waitid(
        rustix::process::WaitId::All,
        rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOHANG,
    );
    assert_eq!(
        left.err(),
        Some(rustix::io::Errno::CHILD),
        "a child was left"
    );
    assert!(!state.join("guarded").exists());
}

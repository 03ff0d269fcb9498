//! A program that neither re-executed sealed nor accepted the risk cannot create containers
//! (its own test binary: the acceptance is process-wide).

#![allow(clippy::unwrap_used)]

use oci_rs_runtime::{ContainerBuilder, Error};
use oci_spec::runtime::{RootBuilder, Spec};

#[test]
fn create_refuses_an_unsealed_program() {
    assert!(!oci_rs_runtime::is_sealed());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rootfs")).unwrap();
    let mut spec = Spec::default();
    spec.set_root(Some(RootBuilder::default().path("rootfs").build().unwrap()));
    let state = dir.path().join("state");
    let err = ContainerBuilder::new("unsealed", spec, dir.path())
        .state_root(&state)
        .create()
        .unwrap_err();
    assert!(matches!(err, Error::UnsealedExe), "{err}");
    assert!(
        oci_rs_runtime::chain(&err).contains("reexec_sealed"),
        "{err}"
    );
    assert!(!state.exists(), "nothing was set up");
}

//! Crash consistency: `kill -9` of a pull, a push and a layer apply at random points leaves a
//! store that verifies clean, and the operation then runs to completion.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

const OCI: &str = env!("CARGO_BIN_EXE_oci");

fn ready() -> bool {
    common::have_registry()
}

fn oci(data: &Path, args: &[&str]) -> std::process::Child {
    common::silent(
        Path::new(OCI),
        &["-q".as_ref(), "--data-dir".as_ref(), data.as_os_str()],
    )
    .args(args)
    .spawn()
    .unwrap()
}

fn kill_after(mut child: std::process::Child, ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    let _ = child.kill();
    let _ = child.wait();
}

fn run_ok(data: &Path, args: &[&str]) {
    let st = oci(data, args).wait().unwrap();
    assert!(st.success(), "oci {args:?} failed after the crashes");
}

#[test]
fn killed_pull_push_and_apply_leave_clean_stores() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reg = common::Registry::start();
    // An image with 24 MB of incompressible data, from a tar built with GNU tar.
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    let mut noise = vec![0u8; 24 << 20];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut noise)
        .unwrap();
    std::fs::write(root.join("noise"), &noise).unwrap();
    for i in 0..300 {
        std::fs::write(root.join(format!("small{i}")), format!("{i}")).unwrap();
    }
    let tar = dir.path().join("rootfs.tar");
    common::tar_dir(&root, &tar);
    let image = format!("{}/crash/img:1", reg.addr);
    let a = dir.path().join("a");
    run_ok(&a, &["import", tar.to_str().unwrap(), &image]);

    // Push, killed at several points, then completed.
    for ms in [5, 40, 120, 300] {
        kill_after(oci(&a, &["push", &image]), ms);
        common::verify_layout(&a.join("images"));
    }
    run_ok(&a, &["push", &image]);

    // Pull into a fresh store, killed at several points; the store stays clean each time.
    let b = dir.path().join("b");
    for ms in [5, 30, 80, 200, 400] {
        kill_after(oci(&b, &["pull", &image]), ms);
        if b.join("images/index.json").exists() {
            common::verify_layout(&b.join("images"));
        }
    }
    run_ok(&b, &["pull", &image]);
    common::verify_layout(&b.join("images"));

    // Layer apply, killed, then re-applied over what the killed one left.
    let blob = std::fs::read_dir(b.join("images/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let target = dir.path().join("unpacked");
    std::fs::create_dir_all(&target).unwrap();
    for ms in [10, 60, 150] {
        let child = Command::new(OCI)
            .args(["layer", "apply"])
            .arg(&target)
            .arg(&blob)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        kill_after(child, ms);
    }
    let st = Command::new(OCI)
        .args(["layer", "apply"])
        .arg(&target)
        .arg(&blob)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(std::fs::read(target.join("noise")).unwrap(), noise);
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 301);
}

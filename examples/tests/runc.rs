//! The runc-compatible command line, driven as containerd's shim drives runc.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

const RUNC: &str = env!("CARGO_BIN_EXE_oci-runc");

fn quiet(root: &Path, args: &[&str]) -> std::process::ExitStatus {
    Command::new(RUNC)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
}

fn runc(root: &Path, args: &[&str]) -> Output {
    Command::new(RUNC)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn spec_create_start_exec_state_kill_delete_run() {
    if !rustix::process::geteuid().is_root() || !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: needs root and busybox-static");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (bundle, root) = (dir.path().join("bundle"), dir.path().join("state"));
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "proc", "dev", "sys"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for t in ["sh", "sleep", "echo", "hostname"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(t)).unwrap();
    }
    let o = Command::new(RUNC)
        .arg("spec")
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        runc(&root, &["spec", "--bundle", bundle.to_str().unwrap()])
            .status
            .code(),
        Some(1),
        "spec refuses to overwrite"
    );
    let cfg = bundle.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    v["process"]["args"] = serde_json::json!(["sleep", "30"]);
    v["process"]["terminal"] = serde_json::json!(false);
    v["hostname"] = serde_json::json!("c1host");
    std::fs::write(&cfg, serde_json::to_vec(&v).unwrap()).unwrap();
    let b = bundle.to_str().unwrap();
    let pidfile = dir.path().join("pid");
    // The init inherits create's stdio, as with runc: not pipes this test would wait on.
    let o = quiet(
        &root,
        &[
            "create",
            "--bundle",
            b,
            "--pid-file",
            pidfile.to_str().unwrap(),
            "c1",
        ],
    );
    assert!(o.success());
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    let state: serde_json::Value =
        serde_json::from_slice(&runc(&root, &["state", "c1"]).stdout).unwrap();
    assert_eq!(state["status"], "created");
    assert_eq!(state["pid"], pid);
    assert!(runc(&root, &["start", "c1"]).status.success());
    let state: serde_json::Value =
        serde_json::from_slice(&runc(&root, &["state", "c1"]).stdout).unwrap();
    assert_eq!(state["status"], "running");
    let o = runc(
        &root,
        &["exec", "c1", "sh", "-c", "echo in-$(hostname); exit 3"],
    );
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "in-c1host");
    let list = String::from_utf8(runc(&root, &["list"]).stdout).unwrap();
    assert!(list.contains("c1") && list.contains("running"), "{list}");
    assert_eq!(
        runc(&root, &["delete", "c1"]).status.code(),
        Some(1),
        "running: refused without --force"
    );
    assert!(runc(&root, &["kill", "c1", "KILL"]).status.success());
    for _ in 0..200 {
        let s: serde_json::Value =
            serde_json::from_slice(&runc(&root, &["state", "c1"]).stdout).unwrap();
        if s["status"] == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(runc(&root, &["delete", "c1"]).status.success());
    let o = runc(&root, &["state", "c1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
    // run: foreground, the container's exit code.
    v["process"]["args"] = serde_json::json!(["sh", "-c", "exit 7"]);
    std::fs::write(&cfg, serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(
        runc(&root, &["run", "--bundle", b, "r1"]).status.code(),
        Some(7)
    );
    let features: serde_json::Value =
        serde_json::from_slice(&runc(&root, &["features"]).stdout).unwrap();
    assert!(features["linux"]["namespaces"].as_array().unwrap().len() >= 7);
}

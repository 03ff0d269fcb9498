//! CVE-2019-5736 end to end. A container's command is `#!/proc/self/exe` with `LD_PRELOAD`: the
//! kernel runs, inside the container, whatever the exec helper was executing, and the
//! preloaded code keeps a descriptor to `/proc/self/exe` and writes through it once
//! oci-runc has exited (runc before 1.0-rc6 was overwritten this way). oci-runc seals itself
//! first (`oci_rs_runtime::reexec_sealed`): the attacker must get only a sealed view, and
//! the file on disk must stay as it was.
//!
//! The image carries the host's loader and libraries, so that the runtime's binary can run in
//! it: the worst case, not an incidental protection.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

const RUNC: &str = env!("CARGO_BIN_EXE_oci-runc");

/// Copies every library `ldd` lists for `binary` (and the loader) to the same path in `rootfs`.
fn copy_libraries(binary: &Path, rootfs: &Path) {
    let out = Command::new("ldd").arg(binary).output().unwrap();
    assert!(out.status.success(), "ldd {}", binary.display());
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let Some(path) = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(Path::new)
        else {
            continue;
        };
        let dest = rootfs.join(path.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        if !dest.exists() {
            std::fs::copy(path, &dest).unwrap();
        }
    }
}

fn cc(args: &[&str], out: &Path) {
    let st = Command::new("cc")
        .args(args)
        .arg("-o")
        .arg(out)
        .status()
        .unwrap();
    assert!(st.success(), "cc {args:?}");
}

#[test]
fn a_container_cannot_overwrite_the_runtime_through_proc_self_exe() {
    if !rustix::process::geteuid().is_root() || !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: needs root and busybox-static");
        return;
    }
    if Command::new("cc").arg("--version").output().is_err()
        || Command::new("ldd").arg("--version").output().is_err()
    {
        eprintln!("skipping: needs cc and ldd to build the attacker's programs");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The runtime the attack targets: a copy, so that a successful attack would change only it.
    let host = dir.path().join("host-runc");
    std::fs::copy(RUNC, &host).unwrap();
    let runc = |args: &[&str]| common::runc_quiet(&host, &dir.path().join("state"), args);
    let bundle = dir.path().join("bundle");
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for t in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(t)).unwrap();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cve");
    cc(
        &["-shared", "-fPIC", src.join("grab_exe.c").to_str().unwrap()],
        &rootfs.join("grab_exe.so"),
    );
    cc(
        &[src.join("writer.c").to_str().unwrap()],
        &rootfs.join("writer"),
    );
    copy_libraries(&host, &rootfs);
    copy_libraries(&rootfs.join("writer"), &rootfs);
    std::fs::write(rootfs.join("evil"), "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(
        rootfs.join("evil"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let st = Command::new(&host)
        .arg("spec")
        .current_dir(&bundle)
        .status()
        .unwrap();
    assert!(st.success());
    let cfg = bundle.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    v["process"]["args"] = serde_json::json!(["sleep", "60"]);
    v["process"]["terminal"] = serde_json::json!(false);
    v["root"]["readonly"] = serde_json::json!(false);
    std::fs::write(&cfg, serde_json::to_vec(&v).unwrap()).unwrap();
    let before = std::fs::read(&host).unwrap();
    assert!(runc(&["create", "--bundle", bundle.to_str().unwrap(), "victim"]).success());
    assert!(runc(&["start", "victim"]).success());

    let exec = runc(&[
        "exec",
        "--env",
        "LD_PRELOAD=/grab_exe.so",
        "victim",
        "/evil",
    ]);
    let report = rootfs.join("report");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !report.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    runc(&["delete", "--force", "victim"]);

    assert!(exec.success(), "the attacker's code ran (exec {exec})");
    assert!(!text.is_empty(), "the attacker's writer reported");
    assert!(!text.starts_with("written"), "the attacker wrote: {text}");
    // As root, oci-runc runs from a read-only overlay view of its file (the attacker's open
    // for writing fails); without the privilege to mount, from a sealed memfd copy (the open
    // succeeds, the write does not).
    assert!(
        text.starts_with("open refused: Read-only file system")
            || (text.starts_with("write refused: Operation not permitted")
                && text.contains("/memfd:oci-runtime-sealed")),
        "the attacker held only a sealed view: {text}"
    );
    assert_eq!(
        std::fs::read(&host).unwrap(),
        before,
        "the runtime's file is unchanged"
    );
    eprintln!("attacker's report: {}", text.trim());
}

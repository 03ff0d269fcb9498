//! The threat model of the `oci` command line, one test per attack or fault, as a user runs
//! it: what a hostile image, archive, container or another local user can reach through what
//! `oci` creates. Lower-level classes are tested in each crate (oci-layer's `tests/apply.rs`
//! hostile layers, oci-runtime's `tests/run.rs` device rules).

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;

const OCI: &str = env!("CARGO_BIN_EXE_oci");

fn root_with_busybox() -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: running containers needs root");
        return false;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: /bin/busybox is missing (scripts/test.sh installs busybox-static)");
        return false;
    }
    true
}

/// A data directory with the busybox image `local/bb:1` imported.
struct Store {
    dir: tempfile::TempDir,
}

impl Store {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tar = common::busybox_rootfs_tar(dir.path(), &["sh", "cat", "grep", "id", "ls"]);
        let s = Self { dir };
        s.ok(&["import", tar.to_str().unwrap(), "local/bb:1"]);
        s
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn oci(&self, args: &[&str]) -> Output {
        Command::new(OCI)
            .arg("-q")
            .arg("--data-dir")
            .arg(self.data())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.oci(args);
        assert!(
            o.status.success(),
            "oci {args:?} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

/// `Cap*` lines of /proc/self/status as (name, mask).
fn caps(status: &str) -> Vec<(String, u64)> {
    status
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.starts_with("Cap")
                .then(|| (k.to_owned(), u64::from_str_radix(v.trim(), 16).unwrap()))
        })
        .collect()
}

#[test]
fn non_root_container_user_has_no_capabilities() {
    if !root_with_busybox() {
        return;
    }
    let s = Store::new();
    let root = caps(&s.ok(&["run", "--rm", "local/bb:1", "cat", "/proc/self/status"]));
    let nobody = caps(&s.ok(&[
        "run",
        "--rm",
        "-u",
        "65534:65534",
        "local/bb:1",
        "cat",
        "/proc/self/status",
    ]));
    for (name, mask) in &nobody {
        match name.as_str() {
            // The bounding set is docker's; nothing else for a non-root user.
            "CapBnd" => assert_ne!(*mask, 0),
            _ => assert_eq!(*mask, 0, "{name} of uid 65534: {nobody:?}"),
        }
    }
    for (name, mask) in &root {
        match name.as_str() {
            "CapInh" | "CapAmb" => assert_eq!(*mask, 0, "{name} of root: {root:?}"),
            _ => assert_ne!(*mask, 0, "{name}"),
        }
    }
}

#[test]
fn container_with_default_capabilities_cannot_open_a_device_it_makes() {
    if !root_with_busybox() {
        return;
    }
    let s = Store::new();
    // CAP_MKNOD is in docker's default set: making a node works, opening it must not (the
    // loop control device 10:237 here, which root opens without any other capability;
    // /dev/null, 1:3, stays usable).
    if std::fs::File::open("/dev/loop-control").is_err() {
        eprintln!("skipping: /dev/loop-control cannot be opened on this host");
        return;
    }
    let out = s.ok(&[
        "run",
        "--rm",
        "local/bb:1",
        "sh",
        "-c",
        "busybox mknod /lc c 10 237 && echo made; (: < /lc) 2>/dev/null && echo opened; echo x >/dev/null && echo null-ok",
    ]);
    assert!(out.contains("made"), "{out}");
    assert!(!out.contains("opened"), "{out}");
    assert!(out.contains("null-ok"), "{out}");
}

#[test]
fn store_directories_are_private_to_their_owner() {
    if !root_with_busybox() {
        return;
    }
    let s = Store::new();
    s.ok(&["run", "--name", "kept", "local/bb:1", "sh", "-c", ":"]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let data = s.data();
    assert_eq!(mode(&data), 0o700, "data directory");
    // The image layout below holds only compressed blobs; the data directory covers it.
    for sub in ["snapshots", "snapshots/layers", "snapshots/containers"] {
        let p = data.join(sub);
        assert_eq!(mode(&p) & 0o077, 0, "{} is {:o}", p.display(), mode(&p));
    }
    // An existing store made world-readable (as before this fix) is tightened when opened.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        data.join("snapshots/layers"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    s.ok(&["images"]);
    s.ok(&["ps", "-a"]);
    assert_eq!(mode(&data), 0o700);
    s.ok(&["rm", "kept"]);
    assert_eq!(mode(&data.join("snapshots/layers")) & 0o077, 0);
}

#[test]
fn unpacked_tree_is_out_of_other_users_reach_unless_asked() {
    if !root_with_busybox() {
        return;
    }
    let s = Store::new();
    let target = s.dir.path().join("unpacked");
    s.ok(&["unpack", "local/bb:1", target.to_str().unwrap()]);
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(target.join("rootfs/bin/busybox").is_file());
    let public = s.dir.path().join("public");
    s.ok(&["unpack", "--public", "local/bb:1", public.to_str().unwrap()]);
    assert!(public.join("bin/busybox").is_file());
}

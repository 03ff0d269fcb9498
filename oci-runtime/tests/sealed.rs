//! `exe::reexec_sealed` in a program of its own (it re-executes the process, so it cannot
//! share one with other tests): the re-executed program has the same arguments and
//! environment and runs from a view of its file that refuses every write: a read-only overlay
//! as root, a sealed memfd copy without privileges (run again as an unprivileged user when
//! the test runs as root). A second call does nothing, and a program started unsealed with
//! the re-execution guard set gets an error instead of re-executing again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rustix::fs::{Mode, OFlags, SealFlags};
use rustix::io::Errno;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Command;

const ORIGINAL: &str = "SEALED_TEST_ORIGINAL_EXE";
const ARGS: &str = "SEALED_TEST_ARGS";
/// Set in the unprivileged second run.
const CHILD: &str = "SEALED_TEST_CHILD";
/// Set in the run that starts with the re-execution guard already in its environment.
const GUARD_CHECK: &str = "SEALED_TEST_GUARD_CHECK";

fn joined_args() -> OsString {
    let mut all = OsString::new();
    for a in std::env::args_os() {
        all.push(a);
        all.push("\u{1f}");
    }
    all
}

fn main() {
    if std::env::var_os(GUARD_CHECK).is_some() {
        // Started unsealed with the guard set, as a copy that did not come out sealed would
        // be: an error, not another re-execution (and not a loop).
        let pid = std::process::id();
        let err = oci_rs_runtime::reexec_sealed().unwrap_err();
        assert!(
            oci_rs_runtime::chain(&err).contains("still not sealed"),
            "{err}"
        );
        assert_eq!(std::process::id(), pid);
        assert!(!oci_rs_runtime::is_sealed());
        eprintln!("sealed: the guard stops a second re-execution ({err})");
        return;
    }
    if std::env::var_os(ORIGINAL).is_none() && std::env::var_os(CHILD).is_none() {
        // The guard, checked in a run of its own.
        let status = Command::new(std::env::current_exe().unwrap())
            .env(GUARD_CHECK, "1")
            .env("_OCI_RUNTIME_SEALED_REEXEC", "1")
            .status()
            .unwrap();
        assert!(status.success(), "the guard run: {status}");
    }
    if std::env::var_os(ORIGINAL).is_none() {
        // First run, from the file on disk.
        assert!(!oci_rs_runtime::is_sealed());
        std::env::set_var(ORIGINAL, std::env::current_exe().unwrap());
        std::env::set_var(ARGS, joined_args());
    }
    oci_rs_runtime::reexec_sealed().expect("re-execute sealed");

    // Now in the sealed program.
    assert!(oci_rs_runtime::is_sealed());
    assert_eq!(
        std::env::var_os(ARGS).unwrap(),
        joined_args(),
        "arguments kept"
    );
    assert!(
        std::env::vars_os().all(|(k, _)| !k.to_string_lossy().starts_with("_OCI_RUNTIME")),
        "the re-execution guard is not left in the environment"
    );
    let link = std::fs::read_link("/proc/self/exe").unwrap();
    let original = std::fs::read(std::env::var_os(ORIGINAL).unwrap()).unwrap();
    assert_eq!(
        std::fs::read("/proc/self/exe").unwrap(),
        original,
        "the sealed program is the program"
    );
    let exe = rustix::fs::open("/proc/self/exe", OFlags::RDONLY, Mode::empty()).unwrap();
    let kind = if link
        .to_string_lossy()
        .starts_with("/memfd:oci-runtime-sealed")
    {
        check_memfd(&exe);
        "memfd copy"
    } else {
        check_overlay(&exe);
        "read-only overlay"
    };
    assert_eq!(
        std::fs::read("/proc/self/exe").unwrap(),
        original,
        "unchanged"
    );
    if std::env::var_os(CHILD).is_some() {
        assert_eq!(
            kind, "memfd copy",
            "without privileges, the copy is a memfd"
        );
    }

    // Sealed already: a second call returns without re-executing.
    let pid = std::process::id();
    oci_rs_runtime::reexec_sealed().unwrap();
    assert_eq!(std::process::id(), pid);
    eprintln!(
        "sealed: ok, {kind} ({} bytes, {})",
        original.len(),
        link.display()
    );

    // As root the overlay is used: run again as an unprivileged user for the memfd copy.
    if rustix::process::geteuid().is_root() && std::env::var_os(CHILD).is_none() {
        if !Path::new("/usr/bin/setpriv").exists() {
            eprintln!("sealed: skipping the unprivileged run: no setpriv (util-linux)");
            return;
        }
        // A copy where that user can reach it (the target directory may be private).
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("sealed");
        std::fs::copy(std::env::var_os(ORIGINAL).unwrap(), &copy).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let status = Command::new("/usr/bin/setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&copy)
            .env_remove(ORIGINAL)
            .env_remove(ARGS)
            .env(CHILD, "1")
            .status()
            .unwrap();
        assert!(status.success(), "the unprivileged run: {status}");
    }
}

/// A memfd copy: sealed against writes, growth, shrinking and further seals (and mode
/// changes where the kernel has F_SEAL_EXEC). While a process runs from it the kernel refuses
/// to open it for writing (ETXTBSY); a container process holding /proc/PID/exe waits until
/// none does, and then meets the seals (examples' CVE-2019-5736 test does exactly that).
fn check_memfd(exe: &OwnedFd) {
    let seals = rustix::fs::fcntl_get_seals(exe).unwrap();
    for (seal, name) in [
        (SealFlags::WRITE, "write"),
        (SealFlags::GROW, "grow"),
        (SealFlags::SHRINK, "shrink"),
        (SealFlags::SEAL, "seal"),
    ] {
        assert!(seals.contains(seal), "{name} sealed: {seals:?}");
    }
    assert_eq!(
        rustix::fs::fcntl_add_seals(exe, SealFlags::FUTURE_WRITE),
        Err(Errno::PERM),
        "the seals are final"
    );
    if seals.contains(SealFlags::EXEC) {
        assert_eq!(
            rustix::fs::fchmod(exe, Mode::from_raw_mode(0o666)),
            Err(Errno::PERM),
            "mode change refused"
        );
    }
}

/// A read-only overlay: opening for writing fails with EROFS (before the kernel even asks
/// whether the file is running), and so does changing its mode.
fn check_overlay(exe: &OwnedFd) {
    let fs = rustix::fs::fstatfs(exe).unwrap();
    assert_eq!(fs.f_type as u64, 0x794c_7630, "overlayfs");
    assert_eq!(
        rustix::fs::open("/proc/self/exe", OFlags::WRONLY, Mode::empty()).err(),
        Some(Errno::ROFS)
    );
    assert_eq!(
        rustix::fs::fchmod(exe, Mode::from_raw_mode(0o666)),
        Err(Errno::ROFS)
    );
}

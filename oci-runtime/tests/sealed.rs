//! `exe::reexec_sealed` in a program of its own (it re-executes the process, so it cannot
//! share one with other tests): the re-executed program has the same arguments and
//! environment, runs from a memfd copy of its file that refuses writes, truncation and mode
//! changes, and a second call does nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::ffi::OsString;

const ORIGINAL: &str = "SEALED_TEST_ORIGINAL_EXE";
const ARGS: &str = "SEALED_TEST_ARGS";

fn joined_args() -> OsString {
    let mut all = OsString::new();
    for a in std::env::args_os() {
        all.push(a);
        all.push("\u{1f}");
    }
    all
}

fn main() {
    if std::env::var_os(ORIGINAL).is_none() {
        // First run, from the file on disk.
        assert!(!oci_runtime::exe::is_sealed());
        std::env::set_var(ORIGINAL, std::env::current_exe().unwrap());
        std::env::set_var(ARGS, joined_args());
    }
    oci_runtime::exe::reexec_sealed().expect("re-execute sealed");

    // Now in the sealed copy.
    assert!(oci_runtime::exe::is_sealed());
    assert_eq!(std::env::var_os(ARGS).unwrap(), joined_args(), "arguments kept");
    assert!(
        std::env::vars_os().all(|(k, _)| !k.to_string_lossy().starts_with("_OCI_RUNTIME")),
        "the re-execution guard is not left in the environment"
    );
    let link = std::fs::read_link("/proc/self/exe").unwrap();
    assert!(
        link.to_string_lossy().starts_with("/memfd:oci-runtime-sealed"),
        "{}",
        link.display()
    );
    let original = std::fs::read(std::env::var_os(ORIGINAL).unwrap()).unwrap();
    assert_eq!(
        std::fs::read("/proc/self/exe").unwrap(),
        original,
        "the copy is the program"
    );

    // While a process runs from it the kernel refuses to open it for writing (ETXTBSY); a
    // container process holding /proc/PID/exe waits until none does, and then meets the seals.
    let exe = rustix::fs::open("/proc/self/exe", OFlags::RDONLY, Mode::empty()).unwrap();
    let seals = rustix::fs::fcntl_get_seals(&exe).unwrap();
    use rustix::fs::SealFlags;
    for (seal, name) in [
        (SealFlags::WRITE, "write"),
        (SealFlags::GROW, "grow"),
        (SealFlags::SHRINK, "shrink"),
        (SealFlags::SEAL, "seal"),
    ] {
        assert!(seals.contains(seal), "{name} sealed: {seals:?}");
    }
    assert_eq!(
        rustix::fs::fcntl_add_seals(&exe, SealFlags::FUTURE_WRITE),
        Err(Errno::PERM),
        "the seals are final"
    );
    // F_SEAL_EXEC exists since Linux 6.3: the mode cannot change either.
    if seals.contains(SealFlags::EXEC) {
        assert_eq!(
            rustix::fs::fchmod(&exe, Mode::from_raw_mode(0o666)),
            Err(Errno::PERM),
            "mode change refused"
        );
    }
    assert_eq!(std::fs::read("/proc/self/exe").unwrap(), original, "unchanged");

    // Sealed already: a second call returns without re-executing.
    let pid = std::process::id();
    oci_runtime::exe::reexec_sealed().unwrap();
    assert_eq!(std::process::id(), pid);
    println!("sealed: ok ({} bytes copied, {})", original.len(), link.display());
}

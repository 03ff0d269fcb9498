//! Paths inside a root: `openat2(RESOLVE_IN_ROOT)`, retried when the kernel asks.
//!
//! A scoped lookup that walks `..` fails with `EAGAIN` when any rename or mount happened on
//! the system while it ran (the kernel cannot then prove that it stayed inside the root).
//! On a busy host (other containers starting, a build renaming its layers) that is routine,
//! not an error: the lookup is tried again, a bounded number of times.

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// How many times a lookup that got `EAGAIN` is tried again.
const AGAIN_TRIES: usize = 64;

/// `path` opened with `flags` (and `O_CLOEXEC`) under `root` as if `root` were `/`, magic
/// links refused. Makes system calls only: safe in the init after its clone.
pub(crate) fn open_in_root<P: rustix::path::Arg + Copy>(
    root: BorrowedFd<'_>,
    path: P,
    flags: OFlags,
) -> Result<OwnedFd, Errno> {
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            root,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) if tries < AGAIN_TRIES => tries += 1,
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::fd::AsFd;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Renames on another thread bump the kernel's rename sequence while lookups walk `..`:
    /// a single `openat2` then fails with EAGAIN now and then (it made CI fail, creating a
    /// mount target under a link that climbs). Every lookup here must succeed.
    #[test]
    fn lookups_through_dotdot_survive_concurrent_renames() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("root/a/b")).unwrap();
        std::fs::create_dir_all(dir.path().join("churn")).unwrap();
        let root = rustix::fs::open(
            dir.path().join("root"),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let stop = AtomicBool::new(false);
        let churn = dir.path().join("churn");
        std::thread::scope(|s| {
            s.spawn(|| {
                let (x, y) = (churn.join("x"), churn.join("y"));
                std::fs::write(&x, b"").unwrap();
                while !stop.load(Ordering::Relaxed) {
                    std::fs::rename(&x, &y).unwrap();
                    std::fs::rename(&y, &x).unwrap();
                }
            });
            let start = std::time::Instant::now();
            let mut failures = 0;
            let mut n = 0;
            while start.elapsed() < std::time::Duration::from_secs(2) {
                let r = open_in_root(root.as_fd(), c"a/b/../../a/b/../..", OFlags::PATH);
                if r.is_err() {
                    failures += 1;
                }
                n += 1;
            }
            stop.store(true, Ordering::Relaxed);
            assert_eq!(failures, 0, "{failures} of {n} lookups failed");
        });
    }
}

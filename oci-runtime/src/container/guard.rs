//! Guards that undo a step of a `create` (or `exec`) that failed later, when dropped.

use super::*;

/// Undoes a step of a create that failed later, when dropped, unless disarmed: each holds
/// what it removes.
macro_rules! guard {
    ($(#[$doc:meta])* $name:ident($held:ty), |$v:ident| $undo:expr) => {
        $(#[$doc])*
        pub(super) struct $name(pub(super) Option<$held>);

        impl $name {
            /// Keeps what it holds.
            pub(super) fn disarm(mut self) {
                self.0 = None;
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                if let Some($v) = self.0.take() {
                    $undo;
                }
            }
        }
    };
}

guard!(
    /// The container's state directory, removed.
    DirGuard(PathBuf),
    |dir| {
        let _ = std::fs::remove_dir_all(dir);
    }
);

guard!(
    /// The container's cgroup, removed (after its processes: declare it before them).
    CgroupGuard(Cgroup),
    |c| {
        let _ = c.remove();
    }
);

guard!(
    /// The mounts under a rootfs, detached: those a container without a mount namespace of
    /// its own made in the caller's.
    MountsGuard(PathBuf),
    |rootfs| detach_mounts_under(&rootfs)
);

guard!(
    /// A child (an init or exec helper, not yet released), killed and reaped.
    ChildGuard(i32),
    |pid| {
        if let Some(p) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
        }
    }
);

/// Detaches (lazily, with their submounts) every mount of this mount namespace at `rootfs`
/// or under it, deepest first: what a container without a mount namespace of its own left in
/// its creator's. Errors are logged, not returned: this is a clean-up.
pub(super) fn detach_mounts_under(rootfs: &Path) {
    let info = match std::fs::read_to_string("/proc/thread-self/mountinfo") {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read /proc/thread-self/mountinfo to detach a container's mounts");
            return;
        }
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(rootfs))
        .collect();
    // Deepest first; a point detached with its parent is gone already (EINVAL, ENOENT).
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for p in points {
        match rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH) {
            Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e, "cannot detach a container's mount")
            }
        }
    }
}

/// The mount point of this mount namespace that holds `path` (the longest mount point that
/// is `path` or one of its parents), from `/proc/thread-self/mountinfo`.
pub(crate) fn mount_point_of(path: &Path) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo").ok()?;
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| path.starts_with(p))
        .max_by_key(|p| p.components().count())
}

/// A mountinfo path field with its octal escapes (`\040` for a space, `\011`, `\012`,
/// `\134`) undone.
fn unescape_mountinfo(field: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    std::ffi::OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::unescape_mountinfo;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/a\\134b\\011"), "/a\\b\t");
        // Not an escape: kept as it is.
        assert_eq!(unescape_mountinfo("/a\\0"), "/a\\0");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}

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
    /// A child (an init or exec helper, not yet released), killed and reaped.
    ChildGuard(i32),
    |pid| {
        if let Some(p) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
        }
    }
);

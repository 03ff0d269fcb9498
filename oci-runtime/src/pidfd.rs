//! Waiting for a process that is not necessarily our child, and learning how it ended,
//! through a pidfd.
//!
//! A pidfd becomes readable when its process exits, whoever its parent is. Its exit status
//! goes to the parent that reaps it; since Linux 6.15 the kernel also keeps it for everyone
//! holding a pidfd of the process, readable with the `PIDFD_GET_INFO` ioctl and
//! `PIDFD_INFO_EXIT` once the process has been reaped. So a `wait` from another process (an
//! `oci-runc` that did not create the container, a library user that loaded it by id) gets the
//! real exit code instead of nothing.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// `struct pidfd_info` of `linux/pidfd.h`, its first version (64 bytes), whose last field
/// became `exit_code` in Linux 6.15.
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    /// pid, tgid, ppid, then the real, effective, saved and filesystem uids and gids.
    ids: [u32; 11],
    exit_code: i32,
}

const _: () = assert!(std::mem::size_of::<PidfdInfo>() == 64);

/// `_IOWR(PIDFS_IOCTL_MAGIC = 0xFF, 11, 64 bytes)`.
const PIDFD_GET_INFO: u32 = (3 << 30) | (64 << 16) | (0xFF << 8) | 11;
/// Asks for (and, in the answer, says there is) the exit status.
const PIDFD_INFO_EXIT: u64 = 1 << 3;

/// How long a process that has exited may stay a zombie before its parent reaps it, here:
/// the exit status is only reported after the reaping.
const REAP_WAIT: Duration = Duration::from_secs(2);

/// Waits until the process `pid`, started at `start_time` (clock ticks after boot, as
/// `/proc/PID/stat` says, so that a reused pid is never mistaken for it), has ended, and
/// returns its exit code, or 128 + the signal that ended it. `None` when that cannot be known:
/// the process was gone before a pidfd could be opened, or the kernel is older than 6.15 and
/// another process reaped it.
pub(crate) fn wait_exit(pid: i32, start_time: u64) -> Option<i32> {
    wait_exit_of(pid, &open(pid, start_time)?)
}

/// A pidfd of the process `pid` started at `start_time`, `None` when it is gone (or the pid
/// now names another process). Held from before the process can exit (a created container's
/// init, before `start` releases it), it makes the exit status knowable however fast the
/// process ends.
pub(crate) fn open(pid: i32, start_time: u64) -> Option<OwnedFd> {
    let p = rustix::process::Pid::from_raw(pid)?;
    let fd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()?;
    // The pid may have been reused between the caller's check and the open.
    if crate::container::proc_start_time(pid).is_none_or(|(t, _)| t != start_time) {
        return None;
    }
    Some(fd)
}

/// [`wait_exit`] through a pidfd from [`open`].
pub(crate) fn wait_exit_of(pid: i32, fd: &OwnedFd) -> Option<i32> {
    loop {
        let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
    }
    // Our own child (a container loaded by id in the process that created it): reap it.
    if let Ok(Some(st)) = rustix::process::waitid(
        rustix::process::WaitId::PidFd(fd.as_fd()),
        rustix::process::WaitIdOptions::EXITED,
    ) {
        if let Some(code) = st.exit_status() {
            return Some(code);
        }
        if let Some(sig) = st.terminating_signal() {
            return Some(128 + sig);
        }
    }
    // Another process's child: its status, once that process has reaped it.
    let deadline = Instant::now() + REAP_WAIT;
    let mut delay = Duration::from_millis(1);
    loop {
        match exit_info(fd) {
            Some(Some(status)) => return Some(decode(status)),
            Some(None) => {}
            None => return None,
        }
        if Instant::now() > deadline {
            tracing::debug!(
                pid,
                "the container's init was not reaped in time; no exit status"
            );
            return None;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

/// The wait status the kernel kept for the pidfd's process: `Some(None)` while it has not
/// been reaped, `None` when the kernel does not keep it (before Linux 6.15).
#[allow(unsafe_code)]
fn exit_info(fd: &OwnedFd) -> Option<Option<i32>> {
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_EXIT,
        ..PidfdInfo::default()
    };
    // SAFETY: the ioctl writes at most the 64 bytes of `info`, the size its number carries;
    // `info` lives across the call.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            PIDFD_GET_INFO as _,
            std::ptr::addr_of_mut!(info),
        )
    };
    if r < 0 {
        // ENOTTY or EINVAL: no pidfs ioctls; ESRCH: reaped and not kept.
        return None;
    }
    Some((info.mask & PIDFD_INFO_EXIT != 0).then_some(info.exit_code))
}

/// A wait status as an exit code: the code, or 128 + the terminating signal.
fn decode(status: i32) -> i32 {
    if status & 0x7f == 0 {
        (status >> 8) & 0xff
    } else {
        128 + (status & 0x7f)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn wait_statuses_decode_as_shells_do() {
        assert_eq!(decode(7 << 8), 7);
        assert_eq!(decode(0), 0);
        assert_eq!(decode(9), 137);
        assert_eq!(decode(15 | 0x80), 143); // with the core-dump bit
    }

    #[test]
    fn a_child_that_exits_is_waited_through_its_pidfd() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exit 5"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let start = crate::container::proc_start_time(pid).unwrap().0;
        assert_eq!(wait_exit(pid, start), Some(5));
        // Reaped by wait_exit: std sees it gone.
        assert!(child.try_wait().is_err() || child.try_wait().unwrap().is_some());
    }

    #[test]
    fn a_pid_with_another_start_time_is_not_waited_for() {
        let me = std::process::id() as i32;
        let start = crate::container::proc_start_time(me).unwrap().0;
        assert_eq!(wait_exit(me, start + 1), None);
    }
}

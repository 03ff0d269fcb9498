//! The clone: `clone3` itself and the three ways the parent starts the init or an exec'd
//! process (directly, from a thread in a joined pid namespace, or through a joined user
//! namespace).

use super::*;

/// clone3 arguments (linux/sched.h).
#[repr(C)]
#[derive(Default)]
pub(super) struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// clone3 with `args` and no stack: fork-like, the child continues after the call with 0.
/// Returns the child's pid, or -1 with errno set. Async-signal-safe: one system call.
pub(super) fn clone3(args: &CloneArgs) -> libc::c_long {
    // SAFETY: clone3 without CLONE_VM and without a stack behaves like fork: the child gets a
    // copy of this address space and continues here with a return value of 0. `args` lives
    // across the call and its size is passed.
    unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    }
}

/// Starts the init with the namespaces in `flags` and returns its pid (in the caller's pid
/// namespace). The child never returns.
pub(crate) fn spawn(plan: &Plan, flags: u64) -> std::io::Result<i32> {
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    let keep = plan.descriptors();
    let ret = clone3(&args);
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if ret == 0 {
        close_inherited(&keep);
        child_main(plan);
    }
    Ok(ret as i32)
}

/// [`spawn()`] for a caller without `CAP_SYS_ADMIN` in its own user namespace (rootless) whose
/// container joins an existing user namespace `user` (and perhaps the pid namespace `pid_ns`):
/// joining a pid namespace needs that capability in the joiner's own user namespace, and
/// namespaces the init creates must belong to the joined user namespace, not to the caller's.
/// So, as runc's nsexec does, an intermediate process (single-threaded, as joining a user
/// namespace requires) joins the user namespace, then the pid namespace, then clones the init
/// as its sibling (`CLONE_PARENT`): the init is in both, owns its new namespaces through the
/// joined user namespace, and is still the caller's child, whose exit the caller sees. The
/// intermediate reports the init's pid on a pipe and exits; it is reaped here.
///
/// `plan.join` must not hold `user` or `pid_ns` (the init would join them again). The
/// intermediate and the init make system calls only: they are copies of a possibly
/// multi-threaded program.
pub(super) fn spawn_through_user_ns(
    plan: &Plan,
    flags: u64,
    user: &OwnedFd,
    pid_ns: Option<&OwnedFd>,
) -> std::io::Result<i32> {
    let keep = plan.descriptors();
    let (report_read, report_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    let mid = clone3(&args);
    if mid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if mid == 0 {
        // The answer: the init's pid, or minus the errno of what failed.
        fn answer(fd: &OwnedFd, v: i64) -> ! {
            let _ = rustix::io::write(fd, &v.to_ne_bytes());
            // SAFETY: ends this copy without destructors or atexit handlers.
            unsafe { libc::_exit(0) }
        }
        let answer = |v: i64| -> ! { answer(&report_write, v) };
        let errno = || -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(22));
        // SAFETY: setns with namespace descriptors this copy holds and their types.
        if unsafe { libc::setns(user.as_raw_fd(), libc::CLONE_NEWUSER) } != 0 {
            answer(errno());
        }
        if let Some(ns) = pid_ns {
            // SAFETY: as above.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
                answer(errno());
            }
        }
        let args = CloneArgs {
            flags: flags | libc::CLONE_PARENT as u64,
            exit_signal: 0,
            ..Default::default()
        };
        // From this single-threaded copy; with CLONE_PARENT the child's parent (and exit
        // signal) are this process's.
        let init = clone3(&args);
        if init == 0 {
            close_inherited(&keep);
            child_main(plan);
        }
        answer(if init < 0 { errno() } else { init });
    }
    drop(report_write);
    let mut buf = [0u8; 8];
    let got = read_full(&report_read, &mut buf);
    // Reaped whatever it said.
    let _ = rustix::process::waitpid(
        rustix::process::Pid::from_raw(mid as i32),
        rustix::process::WaitOptions::empty(),
    );
    if !got {
        return Err(std::io::Error::other(
            "the process joining the user namespace ended without an answer",
        ));
    }
    match i64::from_ne_bytes(buf) {
        v if v > 0 => Ok(v as i32),
        v => Err(std::io::Error::from_raw_os_error((-v) as i32)),
    }
}

/// Reads exactly `buf.len()` bytes; false at an early end of file or an error.
fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> bool {
    let mut at = 0;
    while at < buf.len() {
        match rustix::io::read(fd, &mut buf[at..]) {
            Ok(0) => return false,
            Ok(n) => at += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return false,
        }
    }
    true
}

/// [`spawn()`] from a thread of its own that joined the pid namespace `ns` first, so that the
/// init is inside it: joining one takes effect only for the joiner's children and cannot be
/// undone, so no thread of the caller's may do it. The thread stays, as the init's parent
/// (whose end would deliver the init's death signal while it is set up), until the returned
/// sender is dropped. The init stays a child of this process: it can be waited for, and it
/// goes to the subreaper when the process exits, as runc's does.
pub(super) fn spawn_in_pid_ns(
    plan: Plan,
    flags: u64,
    ns: OwnedFd,
) -> std::io::Result<(i32, std::sync::mpsc::Sender<()>)> {
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    let (hold, held) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("oci-init-pid-ns".into())
        .spawn(move || {
            // SAFETY: setns of this thread (pid namespace for its children) with a namespace
            // descriptor we own; the thread ends without cloning anything else.
            let r = if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
                Err(std::io::Error::last_os_error())
            } else {
                spawn(&plan, flags)
            };
            // The parent's copies of the init's descriptors.
            drop(plan);
            let spawned = r.is_ok();
            let _ = pid_tx.send(r);
            if spawned {
                let _ = held.recv();
            }
        })?;
    let pid = pid_rx
        .recv()
        .map_err(|_| std::io::Error::other("the pid namespace thread ended"))??;
    Ok((pid, hold))
}

/// Closes every descriptor the child got with the copy of the caller's table but does not use:
/// other threads' files, sockets and pipes. A created container may wait long for `start`,
/// and must not keep them open meanwhile (a file being written would stay busy for exec, a
/// socket bound, a pipe without its end of file).
pub(super) fn close_inherited(keep: &[u32]) {
    let mut next = 3u32;
    for &fd in keep {
        if fd > next {
            // SAFETY: close_range on descriptors nothing in this process uses.
            unsafe { libc::syscall(libc::SYS_close_range, next, fd - 1, 0u32) };
        }
        next = next.max(fd.saturating_add(1));
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, next, u32::MAX, 0u32) };
}

/// Closes every descriptor above stderr but those in `keep` (negative entries are none).
/// Nothing allocated: the child may not.
pub(super) fn close_all_but(keep: [RawFd; 3]) {
    let mut fds = [u32::MAX; 3];
    for (slot, &fd) in fds.iter_mut().zip(keep.iter()) {
        if fd > 2 {
            *slot = fd as u32;
        }
    }
    fds.sort_unstable();
    let n = fds.iter().take_while(|&&f| f != u32::MAX).count();
    close_inherited(&fds[..n]);
}

/// Starts the init of `plan` with the new namespaces in `flags`, in the way its joins need,
/// and returns its pid and, when it was cloned from a thread that joined a pid namespace,
/// the sender that holds that thread until the init is set up (drop it then).
///
/// - A caller without `CAP_SYS_ADMIN` (`can_admin` false) whose container joins a user
///   namespace: through [`spawn_through_user_ns`], which also joins the pid namespace.
/// - A container that joins a pid namespace: [`spawn_in_pid_ns`].
/// - Otherwise [`spawn()`].
///
/// The parent's copies of the child's descriptors are closed when this returns.
pub(crate) fn spawn_init(
    mut plan: Plan,
    flags: u64,
    can_admin: bool,
) -> std::io::Result<(i32, Option<std::sync::mpsc::Sender<()>>)> {
    let take = |plan: &mut Plan, nstype: i32| {
        plan.join
            .iter()
            .position(|(_, f)| *f == nstype)
            .map(|i| plan.join.remove(i).0)
    };
    if !can_admin {
        if let Some(user) = take(&mut plan, libc::CLONE_NEWUSER) {
            let pid_ns = take(&mut plan, libc::CLONE_NEWPID);
            let pid = spawn_through_user_ns(&plan, flags, &user, pid_ns.as_ref())?;
            return Ok((pid, None));
        }
    }
    // Joining a pid namespace takes effect for children only: the init is cloned from a
    // thread that joined it.
    let pid_ns = if flags & libc::CLONE_NEWPID as u64 == 0 {
        plan.join
            .iter()
            .find(|(_, f)| *f == libc::CLONE_NEWPID)
            .map(|(fd, _)| fd.try_clone())
            .transpose()?
    } else {
        None
    };
    match pid_ns {
        None => spawn(&plan, flags).map(|pid| (pid, None)),
        Some(ns) => spawn_in_pid_ns(plan, flags, ns).map(|(pid, held)| (pid, Some(held))),
    }
}

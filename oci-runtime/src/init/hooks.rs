//! The createContainer hooks, run by the init from its phase 2.

use super::*;

/// Runs the createContainer hooks: in the container's namespaces, before `pivot_root` (so their
/// paths resolve in the runtime's tree), each with the state on stdin and its timeout. A hook
/// that fails or is late ends the init with a report naming it (its exit code as a negative
/// errno, or ETIMEDOUT).
pub(super) fn create_container_hooks(plan: &Plan) {
    // The parent sends the length (4 bytes, native order), then the state. Our own copy of
    // the pipe's write end means no end of file to wait for: read exactly that much.
    let mut state = [0u8; MAX_HOOK_STATE];
    let mut head = [0u8; 4];
    read_exact(plan, &mut head);
    let len = u32::from_ne_bytes(head) as usize;
    if len > state.len() {
        fail(plan, Step::Hook, Errno::TOOBIG);
    }
    read_exact(plan, &mut state[..len]);
    for (i, h) in plan.create_container.iter().enumerate() {
        CURRENT.store(i as u32, std::sync::atomic::Ordering::Relaxed);
        let (r, w) = check!(
            plan,
            Step::Hook,
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        );
        let (argv, envp) = (h.argv.as_ptr(), h.env.as_ptr());
        // SAFETY: a plain fork (clone with SIGCHLD): this process has one thread, and the
        // child only calls dup2, execve and _exit.
        let pid =
            unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0) };
        if pid < 0 {
            fail(
                plan,
                Step::Hook,
                Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::AGAIN),
            );
        }
        if pid == 0 {
            // SAFETY: stdin from the pipe, then the hook's program; _exit if that fails.
            unsafe {
                libc::dup2(r.as_raw_fd(), 0);
                libc::execve(h.path.as_ptr(), argv, envp);
                libc::_exit(127)
            }
        }
        drop(r);
        // A hook that ignores its stdin may close it early: not an error.
        let mut sent = 0;
        while sent < len {
            match rustix::io::write(&w, &state[sent..len]) {
                Ok(n) => sent += n,
                Err(Errno::INTR) => {}
                Err(_) => break,
            }
        }
        drop(w);
        // Instant and sleep are a vDSO clock read and nanosleep: no allocation, no lock.
        let start = std::time::Instant::now();
        let code = loop {
            let mut status = 0;
            // SAFETY: waitpid on our own child, status written to a local.
            let got = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
            if got == pid as libc::pid_t {
                break if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                };
            }
            if let Some(limit) = h.timeout {
                if start.elapsed() > limit {
                    // SAFETY: kill and reap our own child.
                    unsafe {
                        libc::kill(pid as libc::pid_t, libc::SIGKILL);
                        libc::waitpid(pid as libc::pid_t, &mut status, 0);
                    }
                    fail(plan, Step::Hook, Errno::TIMEDOUT);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        if code != 0 {
            report(plan.report.as_fd(), Step::Hook, -code);
            // SAFETY: as in `fail`.
            unsafe { libc::_exit(125) }
        }
    }
    CURRENT.store(u32::MAX, std::sync::atomic::Ordering::Relaxed);
}

/// Fills `buf` from the sync pipe.
pub(super) fn read_exact(plan: &Plan, buf: &mut [u8]) {
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::read(&plan.sync_read, &mut buf[got..]) {
            Ok(0) => fail(plan, Step::Hook, Errno::PIPE),
            Ok(n) => got += n,
            Err(Errno::INTR) => {}
            Err(e) => fail(plan, Step::Hook, e),
        }
    }
}

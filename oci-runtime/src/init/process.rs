//! Phases 5 to 8: the process's privileges, terminal and stdio, the wait for `start`, and
//! `execve`.

use super::*;

/// Phase 5: the process's privileges: oom score, dumpability, rlimits, the capability
/// bounding set, groups and ids, capabilities, no_new_privs and umask (and the seccomp
/// filter here when there is no no_new_privs, since it then needs CAP_SYS_ADMIN).
pub(super) fn drop_privileges(plan: &Plan) {
    let p = &plan.process;
    if let Some(v) = &p.oom_score_adj {
        let fd = check!(
            plan,
            Step::OomScore,
            rustix::fs::open(
                c"/proc/self/oom_score_adj",
                OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::empty()
            )
        );
        check!(plan, Step::OomScore, rustix::io::write(&fd, v.as_bytes()));
    }
    // From here the process drops to the container's capabilities and user while it is still
    // a copy of the calling program's memory (its environment, and whatever secrets it
    // holds), and a created container's init waits so for `start`. Non-dumpable, no process
    // without CAP_SYS_PTRACE over the caller's user namespace can read or trace it, whatever
    // its uid and capabilities: not another container sharing the pid namespace, not the
    // container's own processes during an exec. `execve` makes the process dumpable again.
    // After the oom_score_adj write: a non-dumpable process's /proc files belong to the
    // caller's root, which the init of a user namespace cannot write.
    if plan.undumpable {
        check!(plan, Step::Dumpable, prctl(libc::PR_SET_DUMPABLE, 0, 0));
    }
    for (res, soft, hard) in &p.rlimits {
        let lim = rustix::process::Rlimit {
            current: Some(*soft),
            maximum: Some(*hard),
        };
        check!(plan, Step::Rlimit, rustix::process::setrlimit(*res, lim));
    }
    if !p.no_new_privs {
        // Without no_new_privs, the filter needs CAP_SYS_ADMIN: install it while we have it.
        install_seccomp(plan);
    }
    if let Some(caps) = &p.caps {
        for cap in 0..64u64 {
            if caps[0] & (1 << cap) == 0 {
                match prctl(libc::PR_CAPBSET_DROP, cap, 0) {
                    Ok(()) | Err(Errno::INVAL) => {}
                    Err(e) => fail(plan, Step::Bounding, e),
                }
            }
        }
        check!(plan, Step::Caps, prctl(libc::PR_SET_KEEPCAPS, 1, 0));
    }
    if !(plan.groups_denied && p.groups.is_empty()) {
        check!(
            plan,
            Step::Groups,
            rustix::thread::set_thread_groups(
                // SAFETY-free: Gid is a transparent wrapper of gid_t; the slice is built in the parent.
                gids(&p.groups)
            )
        );
    }
    check!(
        plan,
        Step::Gid,
        rustix::thread::set_thread_res_gid(
            rustix::fs::Gid::from_raw(p.gid),
            rustix::fs::Gid::from_raw(p.gid),
            rustix::fs::Gid::from_raw(p.gid)
        )
    );
    check!(
        plan,
        Step::Uid,
        rustix::thread::set_thread_res_uid(
            rustix::fs::Uid::from_raw(p.uid),
            rustix::fs::Uid::from_raw(p.uid),
            rustix::fs::Uid::from_raw(p.uid)
        )
    );
    if !plan.undumpable && p.uid != 0 {
        // The uid change made the process non-dumpable (the kernel's rule for a change of
        // credentials): when the caller asked for readable namespaces (a rootless caller's
        // slirp4netns opens /proc/PID/ns/*), keep them readable under a non-root user too.
        check!(plan, Step::Dumpable, prctl(libc::PR_SET_DUMPABLE, 1, 0));
    }
    if let Some(caps) = &p.caps {
        check!(plan, Step::Caps, prctl(libc::PR_SET_KEEPCAPS, 0, 0));
        set_caps(plan, caps);
        for cap in 0..64u64 {
            if caps[4] & (1 << cap) != 0 {
                // As runc: a capability that is not also inheritable and permitted cannot be
                // ambient; the kernel says EPERM and the process runs without it.
                match prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE as u64, cap) {
                    Ok(()) | Err(Errno::PERM) => {}
                    Err(e) => fail(plan, Step::Ambient, e),
                }
            }
        }
    }
    if p.no_new_privs {
        check!(
            plan,
            Step::NoNewPrivs,
            prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0)
        );
    }
    if let Some(m) = p.umask {
        rustix::process::umask(Mode::from_raw_mode(m));
    }
}

/// Phase 6: a terminal, when asked for: a new pty whose master goes to the console socket,
/// and whose slave becomes the controlling terminal (in a session of its own) and stdio.
pub(super) fn attach_console(plan: &Plan) {
    let p = &plan.process;
    if let Some(sock) = &plan.console {
        use rustix::pty::OpenptFlags;
        let master = check!(
            plan,
            Step::Console,
            rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
        );
        check!(plan, Step::Console, rustix::pty::unlockpt(&master));
        if let Some((rows, cols)) = p.console_size {
            let ws = rustix::termios::Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            check!(
                plan,
                Step::Console,
                rustix::termios::tcsetwinsize(&master, ws)
            );
        }
        let slave = check!(
            plan,
            Step::Console,
            rustix::pty::ioctl_tiocgptpeer(&master, OpenptFlags::RDWR | OpenptFlags::NOCTTY)
        );
        // A session of its own, with the pty as its controlling terminal.
        let _ = rustix::process::setsid();
        check!(
            plan,
            Step::Console,
            rustix::process::ioctl_tiocsctty(&slave)
        );
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
        let fds = [master.as_fd()];
        control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds));
        check!(
            plan,
            Step::Console,
            rustix::net::sendmsg(
                sock,
                &[std::io::IoSlice::new(b"/dev/ptmx")],
                &mut control,
                rustix::net::SendFlags::empty()
            )
        );
        for i in 0..3 {
            // SAFETY: dup2 of the pty's slave onto 0, 1 and 2.
            if unsafe { libc::dup2(slave.as_raw_fd(), i) } < 0 {
                fail(
                    plan,
                    Step::Console,
                    Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::BADF),
                );
            }
        }
        drop(master);
        drop(slave);
    }
}

/// Phase 6, continued: the stdio the caller gave, then every descriptor above stderr marked
/// close-on-exec.
pub(super) fn attach_stdio(plan: &Plan) {
    for (i, fd) in plan.stdio.iter().enumerate() {
        if let Some(fd) = fd {
            // SAFETY: dup2 of a descriptor the parent prepared onto 0, 1 or 2.
            if unsafe { libc::dup2(*fd, i as i32) } < 0 {
                fail(
                    plan,
                    Step::Stdio,
                    Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::BADF),
                );
            }
        }
    }
    // From here the child needs only the report pipe and, to wait for `start`, the host's
    // `/proc` and the exec fifo: every other descriptor (namespaces joined, the console
    // socket, the stdio given, the state pipe of the createContainer hooks, the rootfs) is
    // closed now, before the working directory is entered (CVE-2024-21626: a cwd of
    // `/proc/self/fd/N` enters whatever descriptor N is).
    let keep = [
        plan.report.as_raw_fd(),
        plan.proc.as_raw_fd(),
        plan.fifo.as_ref().map_or(-1, |(f, _)| f.as_raw_fd()),
    ];
    spawn::close_all_but(keep);
}

/// Phase 6b: the working directory, entered as the process's user and checked to be inside
/// the container's root. `chdir` of `/proc/self/fd/N` follows descriptor N wherever it
/// points, so a cwd given by an image, a Dockerfile or a spec could name a descriptor the
/// init still holds on a host directory (CVE-2024-21626); the only ones left at the first
/// call are the report pipe, the exec fifo and the host's `/proc`, and at the last (after
/// `start`) the report pipe and the fifo's write end, neither of them a directory. Either
/// way, a cwd that the kernel cannot reach from the root (`getcwd` answers `(unreachable)`
/// or fails) is refused, as runc does since 1.1.12.
///
/// Called twice for an init: before `start`, so that a bad cwd fails `create` with the step,
/// and after the host's `/proc` is closed, which is the cwd the process runs in.
pub(super) fn enter_cwd(plan: &Plan) -> Result<(), (Step, Errno)> {
    rustix::process::chdir(plan.process.cwd.as_c_str()).map_err(|e| (Step::Cwd, e))?;
    let mut buf = [0u8; 4096];
    // SAFETY: getcwd writes at most `buf.len()` bytes into `buf`, a buffer on this stack.
    let n = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    if n < 0 {
        let e = Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::NOENT);
        return Err((Step::CwdOutsideRoot, e));
    }
    if buf[0] != b'/' {
        return Err((Step::CwdOutsideRoot, Errno::XDEV));
    }
    Ok(())
}

/// Phase 7: reports ready to the parent, then (an init) blocks on the exec fifo until
/// `start` opens its other end.
pub(super) fn wait_for_start(plan: &Plan) {
    // The creating thread may end any time once it has our report; that must not kill the
    // container, so the death signal goes first.
    let _ = prctl(libc::PR_SET_PDEATHSIG, 0, 0);
    report(plan.report.as_fd(), Step::Ready, 0);
    if let Some((_, rel)) = &plan.fifo {
        // Blocks until `start` opens the other end.
        let w = check!(
            plan,
            Step::Fifo,
            rustix::fs::openat(
                &plan.proc,
                rel.as_c_str(),
                OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::empty()
            )
        );
        check!(plan, Step::Fifo, rustix::io::write(&w, b"0"));
        // Kept open (it is close-on-exec) until `execve`: `start` waits for the fifo's end of
        // file, which comes when the process has been executed (or the init has died), so
        // that the poststart hooks run after it, as the spec says.
        std::mem::forget(w);
    }
    // The host's `/proc` and the fifo's path are done with: closed before the last chdir.
    let fifo = plan.fifo.as_ref().map_or(-1, |(f, _)| f.as_raw_fd());
    for fd in [plan.proc.as_raw_fd(), fifo] {
        if fd > 2 {
            // SAFETY: closes descriptors the plan owns and this child no longer uses; the
            // child never drops the plan (it ends by execve or _exit).
            unsafe { libc::close(fd) };
        }
    }
}

/// Phase 7b: the working directory entered again with the host's `/proc` closed (see
/// [`enter_cwd`]). The process has been started by now, so a failure (a directory replaced
/// since `create`) is said on its stderr, as a failed `execve` is, besides the report.
pub(super) fn enter_cwd_for_exec(plan: &Plan) {
    if let Err((step, e)) = enter_cwd(plan) {
        let reason: &[u8] = if step == Step::CwdOutsideRoot {
            b"outside the container's root"
        } else {
            b"cannot enter it"
        };
        let cwd = plan.process.cwd.to_bytes();
        let message = [
            &b"oci-runtime: working directory \""[..],
            cwd,
            b"\": ",
            reason,
            b"\n",
        ];
        fail_saying(plan, step, e, 126, &message)
    }
}

/// Phase 8: the seccomp filter (with no_new_privs, as late as can be), the `--init` reaper,
/// then `execve` of each candidate path; a failure ends the child with 127 or 126, as docker
/// and shells do.
pub(super) fn exec(plan: &Plan) -> ! {
    let p = &plan.process;
    default_signals();
    if p.no_new_privs {
        // As late as can be, right before execve: everything above ran unfiltered.
        install_seccomp(plan);
    }
    if plan.reaper {
        become_reaper(plan);
    }
    let (argv, envp) = (p.argv.as_ptr(), p.env.as_ptr());
    let mut last = Errno::NOENT;
    for path in &p.exec {
        // SAFETY: argv and envp are null-terminated arrays of pointers to CStrings that live
        // in this (copied) address space until execve replaces it.
        unsafe { libc::execve(path.as_ptr(), argv, envp) };
        let e = Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::NOENT);
        if e != Errno::NOENT && e != Errno::NOTDIR {
            last = e;
        }
    }
    // As docker and shells say it: 127 when there is no such program, 126 when there is
    // one that cannot be executed.
    let arg0 = p.argv.first().map_or(&b""[..], |a| a.to_bytes());
    let (code, reason): (i32, &[u8]) = match last {
        Errno::NOENT | Errno::NOTDIR => (127, b"executable file not found in $PATH"),
        Errno::NOEXEC => (126, b"exec format error"),
        Errno::ACCESS => (126, b"permission denied"),
        Errno::PERM => (126, b"operation not permitted"),
        Errno::TXTBSY => (126, b"text file busy"),
        Errno::TOOBIG => (126, b"argument list too long"),
        Errno::LOOP => (126, b"too many levels of symbolic links"),
        _ => (126, b"cannot execute"),
    };
    let message = [&b"oci-runtime: exec: \""[..], arg0, b"\": ", reason, b"\n"];
    fail_saying(plan, Step::Exec, last, code, &message)
}

/// The process starts with every signal's default disposition and none blocked, as with
/// runc and docker: `execve` keeps ignored signals ignored and the mask as it is, and the
/// calling program's are not the container's (Rust ignores SIGPIPE, so `yes | head` in a
/// container ran for ever on EPIPE; a runtime thread may block signals).
fn default_signals() {
    // The kernel's struct sigaction (handler, flags, restorer, mask), all zero: SIG_DFL.
    // By system call, since libc's wrapper refuses the signals it reserves (32 and 33), which
    // the calling program may ignore too.
    let dfl = [0u64; 4];
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads a zeroed kernel sigaction (8-byte mask) and changes only
        // this process's disposition of `sig`.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                dfl.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            )
        };
    }
    // SAFETY: sigemptyset fills a plain sigset_t; sigprocmask sets this thread's mask.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// `--init`: forks; the child returns to `execve` the process, this process stays as its
/// reaper and signal relay and ends with its exit code. Only system calls, nothing allocated.
pub(super) fn become_reaper(plan: &Plan) {
    // SAFETY: sigset_t is plain data; sigfillset and sigprocmask fill and read it.
    let (mut all, mut old): (libc::sigset_t, libc::sigset_t) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: as above; every signal blocked before the fork, so none is lost in between.
    unsafe {
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // clone, not clone3: the seccomp filter is installed by now, and docker's profile makes
    // clone3 fail (ENOSYS) while it lets a clone without namespace flags through.
    // SAFETY: clone with only SIGCHLD and no new stack is fork: the child continues below on
    // a copy of this stack with 0.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        fail(
            plan,
            Step::Reaper,
            Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::AGAIN),
        );
    }
    if pid == 0 {
        // SAFETY: restores the mask saved above.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        return;
    }
    let child = pid as libc::pid_t;
    // SAFETY: the reaper keeps no descriptor: not the report pipe, not the process's stdio.
    unsafe { libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) };
    loop {
        // SAFETY: waits for one of the blocked signals; `all` is a filled set.
        let sig = unsafe { libc::sigwaitinfo(&all, std::ptr::null_mut()) };
        if sig == libc::SIGCHLD || sig < 0 {
            loop {
                let mut status = 0i32;
                // SAFETY: waitpid for any child, without blocking, with a valid pointer.
                let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if r <= 0 {
                    break;
                }
                if r == child {
                    let code = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    };
                    // SAFETY: see `fail`.
                    unsafe { libc::_exit(code) }
                }
            }
        } else {
            // SAFETY: kill(2) of our own child.
            unsafe { libc::kill(child, sig) };
        }
    }
}

pub(super) fn gids(g: &[u32]) -> &[rustix::fs::Gid] {
    // SAFETY: rustix's Gid is #[repr(transparent)] over gid_t (u32), so a slice of u32 has
    // the same layout as a slice of Gid.
    unsafe { std::slice::from_raw_parts(g.as_ptr().cast::<rustix::fs::Gid>(), g.len()) }
}

/// Installs the seccomp filter (one system call; the program was compiled by the parent).
pub(super) fn install_seccomp(plan: &Plan) {
    let Some(prog) = &plan.seccomp else { return };
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const crate::seccomp::SockFilter,
    }
    let fprog = SockFprog {
        len: prog.len() as u16,
        filter: prog.as_ptr(),
    };
    // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER, 0, prog) reads `len` instructions from a program
    // that lives in this address space until execve.
    let r = unsafe { libc::syscall(libc::SYS_seccomp, 1u32, 0u32, &fprog as *const SockFprog) };
    if r != 0 {
        fail(
            plan,
            Step::Seccomp,
            Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::INVAL),
        );
    }
}

pub(super) fn set_caps(plan: &Plan, caps: &[u64; 5]) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let [_, eff, perm, inh, _] = *caps;
    let header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [
        Data {
            effective: eff as u32,
            permitted: perm as u32,
            inheritable: inh as u32,
        },
        Data {
            effective: (eff >> 32) as u32,
            permitted: (perm >> 32) as u32,
            inheritable: (inh >> 32) as u32,
        },
    ];
    // SAFETY: capset with a version-3 header reads exactly two Data structs, which `data` is.
    let r = unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) };
    if r != 0 {
        fail(
            plan,
            Step::Caps,
            Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::INVAL),
        );
    }
}

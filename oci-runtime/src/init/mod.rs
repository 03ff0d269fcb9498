//! The container's init: a child made with `clone3` (new namespaces in one call), which runs
//! a precomputed [`Plan`] with system calls only, then waits to be started and `execve`s.
//!
//! Why not re-execute a helper binary: the library must work inside any program (no helper
//! to find and trust on disk), and a child of `clone3` without `CLONE_VM` is a copy of the
//! caller's memory, so every
//! string, path and argument vector can be built before the clone. After the clone the child
//! is alone in a copy of a possibly multi-threaded process: it must not allocate, lock, panic
//! or run destructors. Everything below `child_main` therefore takes only prepared
//! `CStr`s and numbers, formats nothing, and reports failures to the parent as two integers
//! (the step and the errno) on a pipe.
//!
//! The CVE-2019-5736 class: until its `execve`, the init or exec helper is an image of the
//! calling program, so `/proc/self/exe` inside the container names whatever that program
//! runs from. [`crate::reexec_sealed`] makes that a sealed in-memory copy (the program re-executes
//! from it at start), and creating or executing refuses an unsealed program unless it
//! accepted the risk.
//!
//! File descriptors: every descriptor this crate opens is `O_CLOEXEC`; right after the clone
//! the child closes every descriptor of the caller's that its plan does not name, and once
//! its stdio is attached every one but the report pipe, the exec fifo and the host's `/proc`.
//! Those last two are closed once `start` has come, and the working directory is entered
//! (and checked to be inside the root) both before and after that, so that no host
//! descriptor reaches the container process or its cwd (CVE-2024-21626).

#![allow(unsafe_code)]

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::MountFlags;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// Setup steps, reported with the errno when one fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Step {
    Ready = 0,
    Sync = 1,
    SetNs = 2,
    Propagation = 3,
    BindRoot = 4,
    OpenRoot = 5,
    MountTarget = 6,
    Mount = 7,
    Remount = 8,
    Device = 9,
    Symlink = 10,
    PivotRoot = 11,
    Masked = 12,
    ReadonlyPath = 13,
    ReadonlyRoot = 14,
    Hostname = 15,
    Sysctl = 16,
    Rlimit = 17,
    OomScore = 18,
    Bounding = 19,
    Groups = 20,
    Uid = 21,
    Gid = 22,
    Caps = 23,
    Ambient = 24,
    NoNewPrivs = 25,
    Cwd = 26,
    Stdio = 27,
    Fifo = 28,
    Exec = 29,
    SetSid = 30,
    Console = 31,
    Seccomp = 32,
    Hook = 33,
    TimeNs = 34,
    Dumpable = 35,
    Loopback = 36,
    Reaper = 37,
    CwdOutsideRoot = 38,
    Cgroup = 39,
    CgroupNs = 40,
}

impl Step {
    pub(crate) fn name(code: u32) -> &'static str {
        const NAMES: [&str; 41] = [
            "ready",
            "sync with parent",
            "join namespace",
            "root propagation",
            "bind rootfs",
            "open rootfs",
            "create mount target",
            "mount",
            "remount",
            "create device",
            "create /dev symlink",
            "pivot_root",
            "mask path",
            "read-only path",
            "read-only rootfs",
            "hostname",
            "sysctl",
            "rlimit",
            "oom_score_adj",
            "capability bounding set",
            "setgroups",
            "setuid",
            "setgid",
            "capset",
            "ambient capabilities",
            "no_new_privs",
            "chdir to cwd",
            "stdio",
            "wait for start",
            "execve",
            "setsid",
            "terminal",
            "seccomp",
            "createContainer hook",
            "time namespace",
            "set non-dumpable",
            "loopback up",
            "init reaper",
            "working directory outside the container's root",
            "join cgroup",
            "cgroup namespace",
        ];
        NAMES.get(code as usize).copied().unwrap_or("unknown step")
    }
}

/// Which mount or device the child is working on (reported with a failure).
static CURRENT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);

fn report(fd: BorrowedFd<'_>, step: Step, errno: i32) {
    let mut rec = [0u8; 12];
    rec[..4].copy_from_slice(&(step as u32).to_ne_bytes());
    rec[4..8].copy_from_slice(&errno.to_ne_bytes());
    rec[8..].copy_from_slice(
        &CURRENT
            .load(std::sync::atomic::Ordering::Relaxed)
            .to_ne_bytes(),
    );
    let _ = rustix::io::write(fd, &rec);
}

fn fail(plan: &Plan, step: Step, e: Errno) -> ! {
    fail_with(plan, step, e, 125)
}

/// Reports `step` failing with `e` and ends the child with `code`.
fn fail_with(plan: &Plan, step: Step, e: Errno, code: i32) -> ! {
    fail_saying(plan, step, e, code, &[])
}

/// [`fail_with`], first writing `message` (its parts, one after another) on stderr: for the
/// failures after `start`, which the process's own stderr is where anyone sees. The report
/// pipe's reader, or stderr's, may be gone by then: SIGPIPE is ignored first (the process's
/// disposition is already the default, see `process::default_signals`), so the writes fail
/// and the exit code stays.
fn fail_saying(plan: &Plan, step: Step, e: Errno, code: i32, message: &[&[u8]]) -> ! {
    // SAFETY: signal(2) with SIG_IGN for SIGPIPE changes only this process's disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let err = rustix::stdio::stderr();
    for part in message {
        let _ = rustix::io::write(err, part);
    }
    report(plan.report.as_fd(), step, e.raw_os_error());
    // SAFETY: _exit ends the child without running destructors or atexit handlers, which is
    // what a forked child of a multi-threaded process must do.
    unsafe { libc::_exit(code) }
}

macro_rules! check {
    ($plan:expr, $step:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(err) => fail($plan, $step, err),
        }
    };
}

mod harden;
mod hooks;
mod plan;
mod process;
mod report;
mod rootfs;
mod spawn;

use harden::harden;
use hooks::create_container_hooks;
pub(crate) use plan::{
    DeviceStep, ExecOptions, ExecStrings, HookStep, InitOptions, MountStep, Plan, ProcessPlan,
    MAX_HOOK_STATE,
};
use process::{
    attach_console, attach_stdio, drop_privileges, enter_cwd, enter_cwd_for_exec, exec,
    wait_for_start,
};
pub(crate) use report::{channels, child_failure_or, read_report, ChildEnds};
use rootfs::{build_rootfs, enter_root};
pub(crate) use spawn::spawn_init;
fn prctl(option: i32, a: u64, b: u64) -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(option, a, b, 0u64, 0u64) };
    if r < 0 {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::INVAL))
    } else {
        Ok(())
    }
}

/// The init (or an exec helper) after the clone, system calls only. Each phase reports the
/// step that failed (and the errno) on the report pipe and ends the child; the parent turns
/// that into an [`Error::Init`](crate::Error::Init).
///
/// | phase | what | where |
/// |---|---|---|
/// | 0 | wait for the parent's go (id maps written, cgroup joined) | [`wait_for_go`] |
/// | 1 | join and enter namespaces | [`enter_namespaces`] |
/// | 1b | exec only: chroot, when the container has no mount namespace (the process was cloned into the container's pid namespace, see [`spawn_init`]) | [`rootfs::exec_chroot`] |
/// | 2 | build the rootfs (mounts, devices, links, createContainer hooks) | [`rootfs::build_rootfs`] |
/// | 3 | enter it (pivot_root or chroot, late propagation) | [`rootfs::enter_root`] |
/// | 4 | harden it (hostname, loopback, sysctls, masked and read-only paths) | [`harden::harden`] |
/// | 5 | drop privileges (oom score, rlimits, capabilities, ids, no_new_privs) | [`process::drop_privileges`] |
/// | 6 | attach the console (a new pty) and stdio, close every other descriptor but three | [`process::attach_console`], [`process::attach_stdio`] |
/// | 6b | enter the cwd, checked to be inside the root | [`process::enter_cwd`] |
/// | 7 | report ready, wait for `start` (the exec fifo), close the host's `/proc` | [`process::wait_for_start`] |
/// | 7b | enter the cwd again, with no host directory open | [`process::enter_cwd_for_exec`] |
/// | 8 | seccomp, the `--init` reaper, `execve` | [`process::exec`] |
///
/// An exec helper (joining a running container) skips phases 2 to 4, and has no fifo to
/// wait on in 7.
fn child_main(plan: &Plan) -> ! {
    wait_for_go(plan);
    enter_namespaces(plan);
    if plan.exec {
        if plan.exec_chroot {
            rootfs::exec_chroot(plan);
        }
    } else {
        let root = build_rootfs(plan);
        enter_root(plan, &root);
        harden(plan);
    }
    drop_privileges(plan);
    attach_console(plan);
    attach_stdio(plan);
    if let Err((step, e)) = enter_cwd(plan) {
        fail(plan, step, e)
    }
    wait_for_start(plan);
    enter_cwd_for_exec(plan);
    exec(plan)
}

/// Phase 0: dies with the parent while being set up, joins its cgroup (v1), and waits for
/// its go.
fn wait_for_go(plan: &Plan) {
    let _ = prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as u64, 0);
    // One thread (a clone's copy): moving it moves the process.
    for fd in &plan.cgroup_tasks {
        check!(plan, Step::Cgroup, rustix::io::write(fd, b"0"));
        // SAFETY: this copy's own descriptor, not used again; closing it keeps it from
        // the container.
        unsafe { libc::close(fd.as_raw_fd()) };
    }
    let mut b = [0u8; 1];
    match rustix::io::read(&plan.sync_read, &mut b) {
        Ok(1) => {}
        Ok(_) => fail(plan, Step::Sync, Errno::PIPE),
        Err(e) => fail(plan, Step::Sync, e),
    }
}

/// Phase 1: the namespaces. A new user namespace gets its ids (setgroups denied or set),
/// a time namespace its offsets; the namespaces given by path are joined; a new session.
fn enter_namespaces(plan: &Plan) {
    if plan.new_userns {
        // Our credentials are still the host's (unmapped here) until we set them.
        let root_g = rustix::fs::Gid::from_raw(0);
        let root_u = rustix::fs::Uid::from_raw(0);
        check!(
            plan,
            Step::Gid,
            rustix::thread::set_thread_res_gid(root_g, root_g, root_g)
        );
        check!(
            plan,
            Step::Uid,
            rustix::thread::set_thread_res_uid(root_u, root_u, root_u)
        );
    }
    if let Some(offsets) = &plan.time_ns {
        // SAFETY: CLONE_NEWTIME changes only the namespace our children (and we, at execve)
        // get; nothing in this process relies on the old one.
        check!(plan, Step::TimeNs, unsafe {
            rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWTIME)
        });
        if !offsets.as_bytes().is_empty() {
            let fd = check!(
                plan,
                Step::TimeNs,
                rustix::fs::openat(
                    &plan.proc,
                    c"self/timens_offsets",
                    OFlags::WRONLY | OFlags::CLOEXEC,
                    Mode::empty()
                )
            );
            check!(
                plan,
                Step::TimeNs,
                rustix::io::write(&fd, offsets.as_bytes())
            );
        }
    }
    for (fd, nstype) in &plan.join {
        // SAFETY: setns with a namespace descriptor we own and its type.
        if unsafe { libc::setns(fd.as_raw_fd(), *nstype) } != 0 {
            fail(
                plan,
                Step::SetNs,
                Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::INVAL),
            );
        }
    }
    if plan.new_cgroupns {
        // SAFETY: CLONE_NEWCGROUP changes only how this process (and its children) see
        // cgroup paths; nothing in this process relies on the old view.
        check!(plan, Step::CgroupNs, unsafe {
            rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWCGROUP)
        });
    }
    if plan.setsid {
        check!(plan, Step::SetSid, rustix::process::setsid());
    }
}

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
//! File descriptors: every descriptor this crate opens is `O_CLOEXEC`, and just before
//! `execve` the child marks every descriptor above 2 close-on-exec with `close_range`, so no
//! host descriptor reaches the container process (CVE-2024-21626).

#![allow(unsafe_code)]

use rustix::fs::{Mode, OFlags, ResolveFlags};
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
}

impl Step {
    pub(crate) fn name(code: u32) -> &'static str {
        const NAMES: [&str; 38] = [
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
        ];
        NAMES.get(code as usize).copied().unwrap_or("unknown step")
    }
}

/// One mount, prepared.
#[derive(Debug)]
pub(crate) struct MountStep {
    pub source: Option<CString>,
    /// Target prefixes relative to the rootfs, and each one's last component:
    /// (`dev`, `dev`), (`dev/pts`, `pts`).
    pub prefixes: Vec<(CString, CString)>,
    pub fstype: Option<CString>,
    pub flags: MountFlags,
    pub data: Option<CString>,
    /// Flags to apply with a bind remount afterwards (ro, nosuid, ... on bind mounts).
    pub remount: Option<MountFlags>,
    pub propagation: Option<MountFlags>,
    /// The target is a file (bind of a file): created as an empty file.
    pub file: bool,
}

/// A device node (or a bind of the host's) to create in the rootfs.
#[derive(Debug)]
pub(crate) struct DeviceStep {
    /// Relative to the rootfs (`dev/null`), with its parent (`dev`) and name (`null`).
    pub parent: CString,
    pub name: CString,
    pub host: CString,
    pub kind: rustix::fs::FileType,
    pub dev: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub bind: bool,
}

/// The process to run.
#[derive(Debug)]
pub(crate) struct ProcessPlan {
    /// `process.consoleSize` (rows, columns), set on the terminal before the process runs.
    pub console_size: Option<(u16, u16)>,
    /// `execve` candidates (args[0] alone when it has a `/`, else each PATH entry joined).
    pub exec: Vec<CString>,
    pub argv: ExecStrings,
    pub env: ExecStrings,
    pub cwd: CString,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub umask: Option<u32>,
    pub rlimits: Vec<(rustix::process::Resource, u64, u64)>,
    /// Capability sets as bit masks: bounding, effective, permitted, inheritable, ambient.
    pub caps: Option<[u64; 5]>,
    pub no_new_privs: bool,
    pub oom_score_adj: Option<CString>,
}

/// A createContainer hook, run by the init after the mounts and before `pivot_root`.
#[derive(Debug)]
pub(crate) struct HookStep {
    pub path: CString,
    pub argv: ExecStrings,
    pub env: ExecStrings,
    pub timeout: Option<std::time::Duration>,
}

/// Largest state document the init accepts for its createContainer hooks (read onto its
/// stack, since it must not allocate).
pub(crate) const MAX_HOOK_STATE: usize = 32 * 1024;

/// Everything the child does, prepared by the parent.
#[derive(Debug)]
pub(crate) struct Plan {
    pub rootfs: CString,
    pub propagation: MountFlags,
    /// Given to `/` after `pivot_root` (shared or unbindable roots).
    pub root_propagation: Option<MountFlags>,
    pub mounts: Vec<MountStep>,
    pub devices: Vec<DeviceStep>,
    pub symlinks: Vec<(CString, CString)>,
    pub masked: Vec<CString>,
    pub readonly_paths: Vec<CString>,
    pub readonly_root: bool,
    pub pivot: bool,
    pub prepare_root: bool,
    pub hostname: Option<CString>,
    pub domainname: Option<CString>,
    /// A new network namespace was made: bring its loopback interface up (as runc and crun do).
    pub loopback_up: bool,
    /// Stay as a reaper (pid 1) and run the process as a child (see
    /// `ContainerBuilder::reaper`).
    pub reaper: bool,
    /// (`sys/...` path under the container's procfs, value), written after pivot_root.
    pub sysctl: Vec<(CString, CString)>,
    /// Namespaces to join (fd, the clone flag of its type), joined in order.
    pub join: Vec<(OwnedFd, i32)>,
    pub process: ProcessPlan,
    /// stdin, stdout, stderr for the process (None: inherit).
    pub stdio: [Option<RawFd>; 3],
    /// The exec fifo, opened `O_PATH`, and `self/fd/N` for it relative to `proc`.
    pub fifo: Option<(OwnedFd, CString)>,
    /// The host's `/proc`, opened `O_PATH` (to reopen the fifo after pivot_root).
    pub proc: OwnedFd,
    /// Wait for the parent's go (after uid/gid maps and cgroup placement).
    pub sync_read: OwnedFd,
    /// Where failures are reported.
    pub report: OwnedFd,
    /// Make the process a session leader.
    pub setsid: bool,
    /// The init is in a new user namespace: become its root once the maps are written.
    pub new_userns: bool,
    /// `setgroups` is denied in the user namespace (a rootless single mapping): skip it when
    /// there are no additional groups instead of failing.
    pub groups_denied: bool,
    /// A compiled seccomp filter to install before `execve`.
    pub seccomp: Option<Vec<crate::seccomp::SockFilter>>,
    /// A connected unix socket to send the terminal's master to (runc's `--console-socket`):
    /// the process then gets a new pty as its controlling terminal and stdio.
    pub console: Option<OwnedFd>,
    /// `exec` into a running container: join its namespaces (plan.join), fork once more so
    /// that the process is inside its pid namespace, and set up only the process.
    pub exec: bool,
    /// createContainer hooks; the parent sends the state after the go byte when there are.
    pub create_container: Vec<HookStep>,
    /// A new time namespace with these `timens_offsets` lines: the init unshares it (it
    /// takes effect at `execve`) and writes the offsets, which the kernel allows only before
    /// any process is inside it, hence not with `clone3`.
    pub time_ns: Option<CString>,
    /// Become non-dumpable before dropping privileges: always for an exec helper; for an init
    /// unless the caller lacks CAP_SYS_PTRACE and has startContainer hooks to run in it (they
    /// open its /proc/PID/ns files).
    pub undumpable: bool,
}

/// A fixed-size path buffer: `/proc/self/fd/N` without allocating.
struct FdPath {
    buf: [u8; 40],
}

impl FdPath {
    fn new(fd: RawFd) -> Self {
        let mut buf = [0u8; 40];
        let prefix = b"/proc/self/fd/";
        buf[..prefix.len()].copy_from_slice(prefix);
        let mut digits = [0u8; 12];
        let mut n = fd.max(0) as u32;
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..len {
            buf[prefix.len() + i] = digits[len - 1 - i];
        }
        Self { buf }
    }

    fn as_cstr(&self) -> &CStr {
        // The buffer always ends in zeros: the prefix and at most 10 digits fill 24 of 40.
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"/")
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

/// clone3 arguments (linux/sched.h).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
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
fn clone3(args: &CloneArgs) -> libc::c_long {
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

/// [`spawn`] for a caller without `CAP_SYS_ADMIN` in its own user namespace (rootless) whose
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
pub(crate) fn spawn_through_user_ns(
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

/// [`spawn`] from a thread of its own that joined the pid namespace `ns` first, so that the
/// init is inside it: joining one takes effect only for the joiner's children and cannot be
/// undone, so no thread of the caller's may do it. The thread stays, as the init's parent
/// (whose end would deliver the init's death signal while it is set up), until the returned
/// sender is dropped. The init stays a child of this process: it can be waited for, and it
/// goes to the subreaper when the process exits, as runc's does.
pub(crate) fn spawn_in_pid_ns(
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

impl Plan {
    /// The descriptors the child uses (above stderr), sorted.
    fn descriptors(&self) -> Vec<u32> {
        let mut fds: Vec<RawFd> = vec![
            self.proc.as_raw_fd(),
            self.sync_read.as_raw_fd(),
            self.report.as_raw_fd(),
        ];
        fds.extend(self.stdio.iter().flatten().copied());
        fds.extend(self.fifo.iter().map(|(f, _)| f.as_raw_fd()));
        fds.extend(self.console.iter().map(|f| f.as_raw_fd()));
        fds.extend(self.join.iter().map(|(f, _)| f.as_raw_fd()));
        let mut fds: Vec<u32> = fds
            .into_iter()
            .filter(|&f| f > 2)
            .map(|f| f as u32)
            .collect();
        fds.sort_unstable();
        fds.dedup();
        fds
    }
}

/// Closes every descriptor the child got with the copy of the caller's table but does not use:
/// other threads' files, sockets and pipes. A created container may wait long for `start`,
/// and must not keep them open meanwhile (a file being written would stay busy for exec, a
/// socket bound, a pipe without its end of file).
fn close_inherited(keep: &[u32]) {
    let mut next = 3u32;
    for &fd in keep {
        if fd > next {
            // SAFETY: close_range on descriptors nothing in this process uses.
            unsafe { libc::syscall(libc::SYS_close_range, next, fd - 1, 0u32) };
        }
        next = fd + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, next, u32::MAX, 0u32) };
}

fn open_in_root(root: BorrowedFd<'_>, rel: &CStr, flags: OFlags) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        root,
        rel,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

fn ensure_target(root: BorrowedFd<'_>, m: &MountStep) -> Result<OwnedFd, Errno> {
    let n = m.prefixes.len();
    for (i, (prefix, name)) in m.prefixes.iter().enumerate() {
        if open_in_root(root, prefix, OFlags::PATH).is_ok() {
            continue;
        }
        let parent = if i == 0 {
            open_in_root(root, c".", OFlags::PATH | OFlags::DIRECTORY)?
        } else {
            open_in_root(root, &m.prefixes[i - 1].0, OFlags::PATH | OFlags::DIRECTORY)?
        };
        if i + 1 == n && m.file {
            match rustix::fs::openat(
                &parent,
                name.as_c_str(),
                OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            ) {
                Ok(_) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e),
            }
        } else {
            match rustix::fs::mkdirat(&parent, name.as_c_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e),
            }
        }
    }
    match m.prefixes.last() {
        Some((rel, _)) => open_in_root(root, rel, OFlags::PATH),
        None => open_in_root(root, c".", OFlags::PATH),
    }
}

fn do_mount(plan: &Plan, root: BorrowedFd<'_>, m: &MountStep) {
    let target = check!(plan, Step::MountTarget, ensure_target(root, m));
    let path = FdPath::new(target.as_raw_fd());
    check!(
        plan,
        Step::Mount,
        rustix::mount::mount(
            m.source.as_deref().unwrap_or(c"none"),
            path.as_cstr(),
            m.fstype.as_deref().unwrap_or(c""),
            m.flags,
            m.data.as_deref(),
        )
    );
    drop(target);
    if m.remount.is_some() || m.propagation.is_some() {
        // Reopen: the old descriptor is the directory under the new mount.
        let last = m.prefixes.last().map(|p| p.0.as_c_str()).unwrap_or(c".");
        let mounted = check!(
            plan,
            Step::MountTarget,
            open_in_root(root, last, OFlags::PATH)
        );
        let path = FdPath::new(mounted.as_raw_fd());
        if let Some(flags) = m.remount {
            check!(
                plan,
                Step::Remount,
                rustix::mount::mount_remount(path.as_cstr(), MountFlags::BIND | flags, c"")
            );
        }
        if let Some(p) = m.propagation {
            check!(
                plan,
                Step::Propagation,
                rustix::mount::mount(c"none", path.as_cstr(), c"", p, None)
            );
        }
    }
}

fn do_device(plan: &Plan, root: BorrowedFd<'_>, d: &DeviceStep) {
    let parent = check!(
        plan,
        Step::Device,
        open_in_root(root, &d.parent, OFlags::PATH | OFlags::DIRECTORY)
    );
    if d.bind {
        match rustix::fs::openat(
            &parent,
            d.name.as_c_str(),
            OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        ) {
            Ok(_) | Err(Errno::EXIST) => {}
            Err(e) => fail(plan, Step::Device, e),
        }
        let target = check!(
            plan,
            Step::Device,
            rustix::fs::openat(
                &parent,
                d.name.as_c_str(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty()
            )
        );
        let path = FdPath::new(target.as_raw_fd());
        check!(
            plan,
            Step::Device,
            rustix::mount::mount_bind(d.host.as_c_str(), path.as_cstr())
        );
    } else {
        match rustix::fs::mknodat(
            &parent,
            d.name.as_c_str(),
            d.kind,
            Mode::from_raw_mode(d.mode & 0o777),
            d.dev,
        ) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let _ =
                    rustix::fs::unlinkat(&parent, d.name.as_c_str(), rustix::fs::AtFlags::empty());
                check!(
                    plan,
                    Step::Device,
                    rustix::fs::mknodat(
                        &parent,
                        d.name.as_c_str(),
                        d.kind,
                        Mode::from_raw_mode(d.mode & 0o777),
                        d.dev
                    )
                );
            }
            Err(e) => fail(plan, Step::Device, e),
        }
        check!(
            plan,
            Step::Device,
            rustix::fs::chownat(
                &parent,
                d.name.as_c_str(),
                Some(rustix::fs::Uid::from_raw(d.uid)),
                Some(rustix::fs::Gid::from_raw(d.gid)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW
            )
        );
        // The mode as the spec gives it: mknod applied the umask.
        check!(
            plan,
            Step::Device,
            rustix::fs::chmodat(
                &parent,
                d.name.as_c_str(),
                Mode::from_raw_mode(d.mode & 0o777),
                rustix::fs::AtFlags::empty()
            )
        );
    }
}

fn set_caps(plan: &Plan, caps: &[u64; 5]) {
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

fn prctl(option: i32, a: u64, b: u64) -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(option, a, b, 0u64, 0u64) };
    if r < 0 {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::INVAL))
    } else {
        Ok(())
    }
}

/// Runs the createContainer hooks: in the container's namespaces, before `pivot_root` (so their
/// paths resolve in the runtime's tree), each with the state on stdin and its timeout. A hook
/// that fails or is late ends the init with a report naming it (its exit code as a negative
/// errno, or ETIMEDOUT).
fn create_container_hooks(plan: &Plan) {
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

/// Strings for `execve` with their null-terminated pointer array, both built by the parent,
/// so the child allocates nothing however many there are (a fixed-size array on the child's
/// stack silently dropped arguments past 255 and variables past 1023).
#[derive(Debug)]
pub(crate) struct ExecStrings {
    /// Owns what `ptrs` point into.
    strings: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

// SAFETY: `ptrs` point into the heap buffers of `strings`, which this struct owns and never
// changes or drops before itself; moving the struct (or the Vec) does not move those buffers.
// Nothing writes through the pointers.
unsafe impl Send for ExecStrings {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for ExecStrings {}

impl ExecStrings {
    pub fn new(strings: Vec<CString>) -> Self {
        let mut ptrs: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        Self { strings, ptrs }
    }

    /// The null-terminated pointer array.
    pub fn as_ptr(&self) -> *const *const libc::c_char {
        self.ptrs.as_ptr()
    }

    /// The first string (a process's `argv[0]`).
    pub fn first(&self) -> Option<&CString> {
        self.strings.first()
    }
}

/// Fills `buf` from the sync pipe.
fn read_exact(plan: &Plan, buf: &mut [u8]) {
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

/// The source of every masked file: the /dev/null made in the rootfs, checked through a
/// descriptor to be the null device (1:3), so that a /dev/null replaced by something else (a
/// symlink to a procfs file: the CVE-2025-31133 class) is never bound over a masked path.
fn null_device(plan: &Plan) -> OwnedFd {
    let fd = check!(
        plan,
        Step::Masked,
        rustix::fs::open(
            c"/dev/null",
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty()
        )
    );
    let st = check!(plan, Step::Masked, rustix::fs::fstat(&fd));
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::CharacterDevice
        || st.st_rdev != rustix::fs::makedev(1, 3)
    {
        fail(plan, Step::Masked, Errno::NODEV);
    }
    fd
}

/// Masks `path`: a read-only tmpfs over a directory, the checked `null` bound from its
/// descriptor over anything else; nothing for a path that does not exist.
fn mask(plan: &Plan, null: &OwnedFd, path: &CStr) {
    match rustix::fs::stat(path) {
        Ok(st)
            if rustix::fs::FileType::from_raw_mode(st.st_mode)
                == rustix::fs::FileType::Directory =>
        {
            check!(
                plan,
                Step::Masked,
                rustix::mount::mount(c"tmpfs", path, c"tmpfs", MountFlags::RDONLY, None)
            );
        }
        Ok(_) => {
            use rustix::mount::{MoveMountFlags, OpenTreeFlags};
            let tree = check!(
                plan,
                Step::Masked,
                rustix::mount::open_tree(
                    null,
                    c"",
                    OpenTreeFlags::OPEN_TREE_CLONE
                        | OpenTreeFlags::OPEN_TREE_CLOEXEC
                        | OpenTreeFlags::AT_EMPTY_PATH
                )
            );
            check!(
                plan,
                Step::Masked,
                rustix::mount::move_mount(
                    &tree,
                    c"",
                    rustix::fs::CWD,
                    path,
                    MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_SYMLINKS
                )
            );
        }
        Err(Errno::NOENT) => {}
        Err(e) => fail(plan, Step::Masked, e),
    }
}

/// `struct ifreq` with the flags member of its union (40 bytes on Linux).
#[repr(C)]
struct IfreqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// `ip link set lo up` through the ioctls (a system call each, nothing allocated).
fn loopback_up() -> Result<(), Errno> {
    let sock = rustix::net::socket_with(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    let mut req = IfreqFlags {
        name: [0; 16],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write a struct ifreq, which `req` is
    // laid out as (name, then the flags member of the union, padded to its size).
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO));
        }
        req.flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO));
        }
    }
    Ok(())
}

/// The init (or an exec helper) after the clone, system calls only: it waits for the parent's
/// go, then runs the phases in order, each reporting the step that failed on the report pipe:
/// [`enter_namespaces`], then for an exec helper a fork into the joined pid namespace and
/// [`setup_process`]; for an init [`build_rootfs`], [`enter_root`], [`harden`] and
/// [`setup_process`], which ends in `execve`.
fn child_main(plan: &Plan) -> ! {
    // Die with the parent while we are still being set up.
    let _ = prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as u64, 0);
    // Wait for the go: maps written, cgroup joined.
    let mut b = [0u8; 1];
    match rustix::io::read(&plan.sync_read, &mut b) {
        Ok(1) => {}
        Ok(_) => fail(plan, Step::Sync, Errno::PIPE),
        Err(e) => fail(plan, Step::Sync, e),
    }
    enter_namespaces(plan);
    if plan.exec {
        // setns into a pid namespace only takes effect for children: the process is a child
        // of this one, which stays outside to pass its exit status on.
        let args = CloneArgs {
            exit_signal: libc::SIGCHLD as u64,
            ..Default::default()
        };
        let pid = clone3(&args);
        if pid < 0 {
            fail(
                plan,
                Step::SetNs,
                Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::AGAIN),
            );
        }
        if pid > 0 {
            // No report from here: the grandchild reports, and the pipe closes at its exec.
            let _ = prctl(libc::PR_SET_PDEATHSIG, 0, 0);
            let code = loop {
                let mut status = 0i32;
                // SAFETY: waitpid on our own child with a valid status pointer.
                let r = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
                if r == pid as i32 {
                    if libc::WIFEXITED(status) {
                        break libc::WEXITSTATUS(status);
                    }
                    if libc::WIFSIGNALED(status) {
                        break 128 + libc::WTERMSIG(status);
                    }
                } else if r < 0
                    && Errno::from_io_error(&std::io::Error::last_os_error()) != Some(Errno::INTR)
                {
                    break 125;
                }
            };
            // SAFETY: see `fail`.
            unsafe { libc::_exit(code) }
        }
        setup_process(plan);
    }
    let root = build_rootfs(plan);
    enter_root(plan, &root);
    harden(plan);
    setup_process(plan)
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
    if plan.setsid {
        check!(plan, Step::SetSid, rustix::process::setsid());
    }
}

/// Phase 2: the root filesystem, still in the runtime's view: the root prepared (propagation,
/// the rootfs bound onto itself), then the mounts, devices and /dev links made inside it
/// through `openat2(RESOLVE_IN_ROOT)`, and the createContainer hooks. Returns the root.
fn build_rootfs(plan: &Plan) -> OwnedFd {
    if plan.prepare_root {
        check!(
            plan,
            Step::Propagation,
            rustix::mount::mount(c"none", c"/", c"", plan.propagation, None)
        );
        check!(
            plan,
            Step::BindRoot,
            rustix::mount::mount_bind_recursive(plan.rootfs.as_c_str(), plan.rootfs.as_c_str())
        );
    }
    let root = check!(
        plan,
        Step::OpenRoot,
        rustix::fs::open(
            plan.rootfs.as_c_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty()
        )
    );
    for (i, m) in plan.mounts.iter().enumerate() {
        CURRENT.store(i as u32, std::sync::atomic::Ordering::Relaxed);
        do_mount(plan, root.as_fd(), m);
    }
    for (i, d) in plan.devices.iter().enumerate() {
        CURRENT.store(i as u32, std::sync::atomic::Ordering::Relaxed);
        do_device(plan, root.as_fd(), d);
    }
    CURRENT.store(u32::MAX, std::sync::atomic::Ordering::Relaxed);
    for (target, link) in &plan.symlinks {
        match rustix::fs::symlinkat(target.as_c_str(), &root, link.as_c_str()) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => fail(plan, Step::Symlink, e),
        }
    }
    if !plan.create_container.is_empty() {
        create_container_hooks(plan);
    }
    root
}

/// Phase 3: entering it: pivot_root (or chroot with `no_pivot`), the old root detached,
/// and a shared or unbindable propagation set on `/`.
fn enter_root(plan: &Plan, root: &OwnedFd) {
    // Enter the root.
    check!(plan, Step::PivotRoot, rustix::process::fchdir(root));
    if plan.pivot {
        check!(
            plan,
            Step::PivotRoot,
            rustix::process::pivot_root(c".", c".")
        );
        check!(
            plan,
            Step::PivotRoot,
            rustix::mount::unmount(c".", rustix::mount::UnmountFlags::DETACH)
        );
    } else {
        check!(plan, Step::PivotRoot, rustix::process::chroot(c"."));
    }
    check!(plan, Step::PivotRoot, rustix::process::chdir(c"/"));
    if let Some(p) = plan.root_propagation {
        check!(
            plan,
            Step::Propagation,
            rustix::mount::mount(c"none", c"/", c"", p, None)
        );
    }
}

/// Phase 4: hardening, inside: hostname and domainname, the loopback, sysctls, then the
/// masked and read-only paths and a read-only root. Then `setup_process` (phase 5) drops to
/// the container's user and capabilities, attaches the console and executes.
fn harden(plan: &Plan) {
    // Sysctls before the masked and read-only paths (as runc): /proc/sys is usually one of
    // the read-only ones.
    if let Some(h) = &plan.hostname {
        check!(
            plan,
            Step::Hostname,
            rustix::system::sethostname(h.as_bytes())
        );
    }
    if let Some(d) = &plan.domainname {
        check!(
            plan,
            Step::Hostname,
            rustix::system::setdomainname(d.as_bytes())
        );
    }
    if plan.loopback_up {
        check!(plan, Step::Loopback, loopback_up());
    }
    if !plan.sysctl.is_empty() {
        // Through the container's /proc, checked to be a procfs, and beneath it without
        // links or mount crossings, non-blocking: a rootfs without /proc mounted, a symlink
        // planted under it (the CVE-2025-52881 class) or a FIFO in its place must not turn a
        // sysctl into a write to some file, or a hang.
        let proc = check!(
            plan,
            Step::Sysctl,
            rustix::fs::open(
                c"/proc",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty()
            )
        );
        let fs = check!(plan, Step::Sysctl, rustix::fs::fstatfs(&proc));
        if fs.f_type != rustix::fs::PROC_SUPER_MAGIC {
            fail(plan, Step::Sysctl, Errno::XDEV);
        }
        for (path, value) in &plan.sysctl {
            let fd = check!(
                plan,
                Step::Sysctl,
                rustix::fs::openat2(
                    &proc,
                    path.as_c_str(),
                    OFlags::WRONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    rustix::fs::ResolveFlags::BENEATH
                        | rustix::fs::ResolveFlags::NO_SYMLINKS
                        | rustix::fs::ResolveFlags::NO_MAGICLINKS
                        | rustix::fs::ResolveFlags::NO_XDEV
                )
            );
            check!(plan, Step::Sysctl, rustix::io::write(&fd, value.as_bytes()));
        }
    }
    if !plan.masked.is_empty() {
        let null = null_device(plan);
        for p in &plan.masked {
            mask(plan, &null, p);
        }
    }
    for p in &plan.readonly_paths {
        match rustix::mount::mount_bind_recursive(p.as_c_str(), p.as_c_str()) {
            Ok(()) => check!(
                plan,
                Step::ReadonlyPath,
                rustix::mount::mount_remount(
                    p.as_c_str(),
                    MountFlags::BIND
                        | MountFlags::RDONLY
                        | MountFlags::NOSUID
                        | MountFlags::NODEV
                        | MountFlags::NOEXEC,
                    c""
                )
            ),
            Err(Errno::NOENT) => {}
            Err(e) => fail(plan, Step::ReadonlyPath, e),
        }
    }
    if plan.readonly_root {
        let flags = match rustix::fs::statvfs(c"/") {
            Ok(s) => {
                let mut f = MountFlags::empty();
                let st = s.f_flag;
                if st.contains(rustix::fs::StatVfsMountFlags::NOSUID) {
                    f |= MountFlags::NOSUID;
                }
                if st.contains(rustix::fs::StatVfsMountFlags::NODEV) {
                    f |= MountFlags::NODEV;
                }
                if st.contains(rustix::fs::StatVfsMountFlags::NOEXEC) {
                    f |= MountFlags::NOEXEC;
                }
                f
            }
            Err(e) => fail(plan, Step::ReadonlyRoot, e),
        };
        check!(
            plan,
            Step::ReadonlyRoot,
            rustix::mount::mount_remount(c"/", MountFlags::BIND | MountFlags::RDONLY | flags, c"")
        );
    }
}

/// The process part: oom score, rlimits, capabilities, user, no_new_privs, umask, cwd,
/// stdio, descriptors, then (after `start` for an init) execve.
/// Installs the seccomp filter (one system call; the program was compiled by the parent).
fn install_seccomp(plan: &Plan) {
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

fn setup_process(plan: &Plan) -> ! {
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
    check!(plan, Step::Cwd, rustix::process::chdir(p.cwd.as_c_str()));
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
    // No host descriptor above stderr survives execve.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
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
    }
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
    let err = rustix::stdio::stderr();
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
    for part in [&b"oci-runtime: exec: \""[..], arg0, b"\": ", reason, b"\n"] {
        let _ = rustix::io::write(err, part);
    }
    fail_with(plan, Step::Exec, last, code)
}

/// `--init`: forks; the child returns to `execve` the process, this process stays as its
/// reaper and signal relay and ends with its exit code. Only system calls, nothing allocated.
fn become_reaper(plan: &Plan) {
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

fn gids(g: &[u32]) -> &[rustix::fs::Gid] {
    // SAFETY: rustix's Gid is #[repr(transparent)] over gid_t (u32), so a slice of u32 has
    // the same layout as a slice of Gid.
    unsafe { std::slice::from_raw_parts(g.as_ptr().cast::<rustix::fs::Gid>(), g.len()) }
}

//! What the parent prepares for the child: every path, string and number the init or exec
//! helper needs, built before the clone so that the child allocates nothing.

use super::*;

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
    /// The parent's prefixes, each with its last component (`dev`, `dev/cpu`, `dev/cpu/0`),
    /// made as directories when missing: a privileged container gets every host device.
    pub dirs: Vec<(CString, CString)>,
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
    /// `execve` candidates (`args[0]` alone when it has a `/`, else each PATH entry joined).
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
    /// The working directory's prefixes in the root, made when missing.
    pub cwd_dirs: Vec<(CString, CString)>,
    pub masked: Vec<CString>,
    pub readonly_paths: Vec<CString>,
    pub readonly_root: bool,
    pub pivot: bool,
    /// Give `/` the set-up propagation (`propagation`) first: in the container's own mount
    /// namespace only, never in the caller's.
    pub private_root: bool,
    /// With a shared set-up propagation: the mount that holds the rootfs, made private
    /// (alone) before the rootfs is bound onto itself, so that the bind propagates nowhere
    /// and `pivot_root` accepts it, as runc does.
    pub root_parent: Option<CString>,
    /// An exec helper chroots into the rootfs after joining the namespaces: the container
    /// shares the caller's mount namespace, so nothing else puts it in its root.
    pub exec_chroot: bool,
    pub hostname: Option<CString>,
    pub domainname: Option<CString>,
    /// A new network namespace was made: bring its loopback interface up (as runc and crun do).
    pub loopback_up: bool,
    /// Unshare a new cgroup namespace once in the container's cgroup (after the go), so
    /// that its root is the container's cgroup, as runc and crun make it; never at the
    /// clone, which would root it at the runtime's.
    pub new_cgroupns: bool,
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
    /// cgroup v1 `tasks` files the child writes `0` to before anything else, moving itself
    /// (see `Cgroup::self_join_files`); closed right after.
    pub cgroup_tasks: Vec<OwnedFd>,
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

impl Plan {
    /// The descriptors the child uses (above stderr), sorted.
    pub(super) fn descriptors(&self) -> Vec<u32> {
        let mut fds: Vec<RawFd> = vec![
            self.proc.as_raw_fd(),
            self.sync_read.as_raw_fd(),
            self.report.as_raw_fd(),
        ];
        fds.extend(self.stdio.iter().flatten().copied());
        fds.extend(self.fifo.iter().map(|(f, _)| f.as_raw_fd()));
        fds.extend(self.console.iter().map(|f| f.as_raw_fd()));
        fds.extend(self.join.iter().map(|(f, _)| f.as_raw_fd()));
        fds.extend(self.cgroup_tasks.iter().map(|f| f.as_raw_fd()));
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

/// What a container's init is given besides its spec and its filesystem plan: the choices
/// of [`ContainerBuilder`](crate::ContainerBuilder) and what `create` opened for it.
pub(crate) struct InitOptions {
    /// The rootfs, absolute and canonical.
    pub rootfs: CString,
    pub namespaces: crate::plan::Namespaces,
    pub pivot: bool,
    pub reaper: bool,
    pub undumpable: bool,
    pub groups_denied: bool,
    pub stdio: [Option<RawFd>; 3],
    /// The exec fifo (see [`Plan::fifo`]).
    pub fifo: (OwnedFd, CString),
    pub console: Option<OwnedFd>,
}

impl Plan {
    /// A plan that runs `process` and does nothing else: no mounts, no namespaces, no root
    /// to enter. [`for_create`](Self::for_create) and [`for_exec`](Self::for_exec) start
    /// from it.
    fn base(
        rootfs: CString,
        process: ProcessPlan,
        stdio: [Option<RawFd>; 3],
        ends: super::ChildEnds,
    ) -> Plan {
        Plan {
            rootfs,
            propagation: MountFlags::empty(),
            root_propagation: None,
            mounts: Vec::new(),
            devices: Vec::new(),
            symlinks: Vec::new(),
            cwd_dirs: Vec::new(),
            masked: Vec::new(),
            readonly_paths: Vec::new(),
            readonly_root: false,
            pivot: false,
            private_root: false,
            root_parent: None,
            exec_chroot: false,
            hostname: None,
            domainname: None,
            loopback_up: false,
            new_cgroupns: false,
            reaper: false,
            sysctl: Vec::new(),
            join: Vec::new(),
            process,
            stdio,
            fifo: None,
            proc: ends.proc,
            sync_read: ends.sync_read,
            cgroup_tasks: Vec::new(),
            report: ends.report,
            setsid: false,
            new_userns: false,
            groups_denied: false,
            seccomp: None,
            console: None,
            exec: false,
            create_container: Vec::new(),
            time_ns: None,
            undumpable: true,
        }
    }

    /// The plan of a container's init: `spec`'s process, hostname, seccomp filter,
    /// createContainer hooks and time offsets, the filesystem `built` from it, and `opts`.
    pub(crate) fn for_create(
        spec: &oci_spec::runtime::Spec,
        built: crate::plan::Built,
        opts: InitOptions,
        ends: super::ChildEnds,
    ) -> crate::error::Result<Plan> {
        use crate::error::Error;
        use crate::plan::cstr;
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| Error::spec("process", "", "missing"))?;
        let ns = opts.namespaces;
        let uts = |name: &Option<String>, what| {
            name.as_ref()
                .filter(|_| ns.new_uts)
                .map(|h| cstr(h.as_str(), what))
                .transpose()
        };
        let linux = spec.linux().as_ref();
        let create_container = spec
            .hooks()
            .as_ref()
            .and_then(|h| h.create_container().as_deref())
            .unwrap_or_default();
        Ok(Plan {
            propagation: built.propagation,
            root_propagation: built.root_propagation.filter(|_| ns.mount),
            mounts: built.mounts,
            devices: built.devices,
            symlinks: built.symlinks,
            cwd_dirs: built.cwd,
            masked: built.masked,
            readonly_paths: built.readonly_paths,
            sysctl: built.sysctl,
            readonly_root: spec
                .root()
                .as_ref()
                .and_then(|r| r.readonly())
                .unwrap_or(false),
            // In a new mount namespace or a joined one, as runc: the root is prepared there
            // (propagation, the rootfs bound onto itself) so that pivot_root has a mount to
            // enter. Without one, the caller's `/` keeps its propagation, the root is a
            // chroot, and nothing is pivoted or detached in the caller's namespace.
            pivot: opts.pivot && ns.mount,
            private_root: ns.mount,
            root_parent: if ns.mount && built.propagation.bits() as u64 & libc::MS_SHARED != 0 {
                use std::os::unix::ffi::OsStrExt;
                let rootfs =
                    std::path::Path::new(std::ffi::OsStr::from_bytes(opts.rootfs.as_bytes()));
                let point = crate::container::mount_point_of(rootfs).ok_or_else(|| {
                    Error::spec(
                        "linux.rootfsPropagation",
                        "shared",
                        "the mount holding the rootfs is not in /proc/thread-self/mountinfo",
                    )
                })?;
                Some(cstr(point.as_os_str().as_encoded_bytes(), "root.path")?)
            } else {
                None
            },
            hostname: uts(spec.hostname(), "hostname")?,
            domainname: uts(spec.domainname(), "domainname")?,
            loopback_up: ns.flags & libc::CLONE_NEWNET as u64 != 0,
            new_cgroupns: ns.flags & libc::CLONE_NEWCGROUP as u64 != 0,
            reaper: opts.reaper,
            join: ns.join,
            fifo: Some(opts.fifo),
            new_userns: ns.new_user,
            groups_denied: opts.groups_denied,
            create_container: crate::hooks::create_container_hooks(create_container)?,
            time_ns: if ns.new_time {
                Some(crate::plan::time_offsets(spec)?)
            } else {
                None
            },
            undumpable: opts.undumpable,
            seccomp: linux
                .and_then(|l| l.seccomp().as_ref())
                .map(crate::seccomp::compile_seccomp)
                .transpose()?,
            console: opts.console,
            ..Plan::base(
                opts.rootfs,
                crate::plan::process(process)?,
                opts.stdio,
                ends,
            )
        })
    }

    /// The plan of an exec helper: join the running container's namespaces and run
    /// `process` there; the rootfs is only where it is.
    pub(crate) fn for_exec(
        rootfs: CString,
        process: ProcessPlan,
        opts: ExecOptions,
        ends: super::ChildEnds,
    ) -> Plan {
        Plan {
            join: opts.join,
            console: opts.console,
            seccomp: opts.seccomp,
            groups_denied: opts.groups_denied,
            exec_chroot: opts.chroot,
            exec: true,
            // Nothing opens the helper's /proc files.
            undumpable: true,
            ..Plan::base(rootfs, process, opts.stdio, ends)
        }
    }
}

/// What an exec helper is given besides its process.
pub(crate) struct ExecOptions {
    /// The container's namespaces that differ from the caller's, opened, with their types.
    pub join: Vec<(OwnedFd, i32)>,
    pub stdio: [Option<RawFd>; 3],
    pub console: Option<OwnedFd>,
    /// The container's seccomp filter (none for a hook, the runtime's own program).
    pub seccomp: Option<Vec<crate::seccomp::SockFilter>>,
    /// The container's user namespace denies setgroups (a rootless single mapping).
    pub groups_denied: bool,
    /// The container shares the caller's mount namespace: chroot into its rootfs.
    pub chroot: bool,
}

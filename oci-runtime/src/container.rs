//! Containers: create, start, state, kill, wait, delete, run; state on disk under a state
//! root so that another process can start, query, signal or delete a created container.

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
pub use crate::hooks::run_hooks;
use crate::hooks::{
    create_container_hooks, hook_error, hook_paths_are_absolute, hook_state, hook_timeout,
    run_hooks_warning,
};
use crate::idmap::{id_maps_method, write_id_maps, IdMaps};
use crate::init::{spawn, Plan, Step};
use crate::plan::{cstr, filesystem, process, process as process_plan};
use oci_spec::runtime::{ContainerState, Hook, LinuxNamespaceType, Spec, State, StateBuilder};
use rustix::fs::{Mode, OFlags};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The status of a container, as the runtime spec names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Init is set up and waits for `start`.
    Created,
    /// The process runs.
    Running,
    /// The process has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        })
    }
}

/// What is kept on disk for a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    id: String,
    pid: i32,
    /// Start time of the pid (clock ticks after boot), to tell a reused pid apart.
    start_time: u64,
    bundle: PathBuf,
    rootfs: PathBuf,
    annotations: HashMap<String, String>,
    created: u64,
    cgroup: Option<Cgroup>,
    poststart: Vec<Hook>,
    poststop: Vec<Hook>,
    /// Run by `start`, inside the container, before its process.
    #[serde(default)]
    start_container: Vec<Hook>,
    /// The seccomp profile, for processes started with `exec`.
    #[serde(default)]
    seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
}

/// Creates `dir` and its missing parents with mode 0700.
pub(crate) fn private_dir(dir: &Path) -> Result<()> {
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir)
        .map_err(|e| Error::io("mkdir", dir, e))
}

/// Writes `dir/name` through `dir/.name.tmp` and a rename, so a reader sees the old file or
/// the new one, never a part.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    std::fs::write(&tmp, bytes).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))
}

/// Parses a signal as `kill` and a stop signal name it: `TERM`, `SIGTERM`, `sigterm` or a
/// number from 1 to 64.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(Error::InvalidSignal(s.to_owned()))
        };
    }
    let up = s.to_ascii_uppercase();
    Ok(match up.strip_prefix("SIG").unwrap_or(&up) {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        "WINCH" => libc::SIGWINCH,
        "ALRM" => libc::SIGALRM,
        "PWR" => libc::SIGPWR,
        _ => return Err(Error::InvalidSignal(s.to_owned())),
    })
}

/// Checks a container id.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_owned()))
    }
}

pub(crate) fn proc_start_time(pid: i32) -> Option<(u64, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may hold spaces and parentheses: fields start after the last `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state))
}

/// Whether this thread has CAP_SYS_PTRACE: then a non-dumpable init stays readable to us
/// (startContainer hooks open its /proc/PID/ns files), and the init may always be one.
fn can_trace() -> bool {
    rustix::thread::capabilities(None).is_ok_and(|c| {
        c.effective
            .contains(rustix::thread::CapabilitySet::SYS_PTRACE)
    })
}

/// Whether this thread has CAP_SYS_ADMIN in its own user namespace: without it (rootless),
/// a container that joins a user namespace is cloned through it (see
/// `init::spawn_through_user_ns`).
fn can_admin() -> bool {
    rustix::thread::capabilities(None).is_ok_and(|c| {
        c.effective
            .contains(rustix::thread::CapabilitySet::SYS_ADMIN)
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Builds a container.
#[derive(Debug)]
pub struct ContainerBuilder {
    id: String,
    spec: Spec,
    bundle: PathBuf,
    state_root: PathBuf,
    stdio: [Option<OwnedFd>; 3],
    no_pivot: bool,
    reaper: bool,
    readable_namespaces: bool,
    cgroup_root: Option<PathBuf>,
    console_socket: Option<PathBuf>,
    console_stream: Option<OwnedFd>,
}

impl ContainerBuilder {
    /// A container `id` running `spec`, whose relative paths (root, bind sources) are relative
    /// to `bundle`. State goes under `/run/oci-rs` unless [`state_root`](Self::state_root).
    pub fn new(id: &str, spec: Spec, bundle: impl Into<PathBuf>) -> Self {
        Self {
            id: id.to_owned(),
            spec,
            bundle: bundle.into(),
            state_root: PathBuf::from("/run/oci-rs"),
            stdio: [None, None, None],
            no_pivot: false,
            reaper: false,
            readable_namespaces: false,
            cgroup_root: None,
            console_socket: None,
            console_stream: None,
        }
    }

    /// Where container state is kept.
    pub fn state_root(mut self, p: impl Into<PathBuf>) -> Self {
        self.state_root = p.into();
        self
    }

    /// The process's stdin (default: inherited).
    pub fn stdin(mut self, fd: OwnedFd) -> Self {
        self.stdio[0] = Some(fd);
        self
    }

    /// The process's stdout (default: inherited).
    pub fn stdout(mut self, fd: OwnedFd) -> Self {
        self.stdio[1] = Some(fd);
        self
    }

    /// The process's stderr (default: inherited).
    pub fn stderr(mut self, fd: OwnedFd) -> Self {
        self.stdio[2] = Some(fd);
        self
    }

    /// The unix socket that receives the terminal's master (runc's `--console-socket`), for a
    /// process with `terminal: true`.
    pub fn console_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.console_socket = Some(path.into());
        self
    }

    /// Like [`console_socket`](Self::console_socket), with a connected unix stream socket
    /// (one end of a `socketpair`) instead of a path: the terminal's master is sent on it.
    pub fn console_stream(mut self, sock: OwnedFd) -> Self {
        self.console_stream = Some(sock);
        self
    }

    /// Keep a tiny reaper as the container's pid 1 (docker's `--init`): the init forks the
    /// process right before `execve` and stays, with every signal blocked, to reap whatever
    /// is reparented to it and to pass every signal it receives on to the process; it ends
    /// with the process's exit code. It is this program's clone that never executes anything,
    /// non-dumpable, holding no descriptor, under the container's credentials, capabilities
    /// and seccomp filter.
    pub fn reaper(mut self, yes: bool) -> Self {
        self.reaper = yes;
        self
    }

    /// Keep the created init dumpable, so a caller without CAP_SYS_PTRACE (rootless) can
    /// open its `/proc/PID/ns` files between `create` and `start`: slirp4netns and the port
    /// proxy join its namespaces so. The init executes the container's program at `start`
    /// either way, which makes the kernel decide dumpability afresh.
    pub fn readable_namespaces(mut self, yes: bool) -> Self {
        self.readable_namespaces = yes;
        self
    }

    /// `chroot` instead of `pivot_root` (for a root on ramfs).
    pub fn no_pivot(mut self, yes: bool) -> Self {
        self.no_pivot = yes;
        self
    }

    /// Use a v2 hierarchy at this mount (the unified hierarchy of a hybrid host) instead of
    /// what [`Cgroup::detect`] finds.
    pub fn cgroup_v2_root(mut self, p: impl Into<PathBuf>) -> Self {
        self.cgroup_root = Some(p.into());
        self
    }

    /// Creates the container: its init is set up in its namespaces and waits for
    /// [`Container::start`].
    pub fn create(mut self) -> Result<Container> {
        validate_id(&self.id)?;
        crate::exe::check()?;
        let spec = &self.spec;
        let terminal = spec
            .process()
            .as_ref()
            .is_some_and(|p| p.terminal().unwrap_or(false));
        if terminal != (self.console_socket.is_some() || self.console_stream.is_some()) {
            return Err(if terminal {
                Error::spec(
                    "process.terminal",
                    true,
                    "no console socket to send the terminal to",
                )
            } else {
                Error::spec("process.terminal", false, "a console socket was given")
            });
        }
        let proc_spec = spec
            .process()
            .as_ref()
            .ok_or_else(|| Error::spec("process", "", "missing"))?;
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| Error::spec("root", "", "missing"))?;
        let rootfs = if root.path().is_absolute() {
            root.path().clone()
        } else {
            self.bundle.join(root.path())
        };
        let rootfs = std::fs::canonicalize(&rootfs).map_err(|e| Error::io("rootfs", &rootfs, e))?;
        // Private: the state holds the exec fifo, whose writer starts the container.
        private_dir(&self.state_root)?;
        let dir = self.state_root.join(&self.id);
        match std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&dir)
        {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(self.id.clone()))
            }
            Err(e) => return Err(Error::io("mkdir", &dir, e)),
        }
        let console_stream = self.console_stream.take();
        let result = self.create_in(&dir, &rootfs, proc_spec, console_stream);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    fn create_in(
        &self,
        dir: &Path,
        rootfs: &Path,
        proc_spec: &oci_spec::runtime::Process,
        mut console_stream: Option<OwnedFd>,
    ) -> Result<Container> {
        let spec = &self.spec;
        hook_paths_are_absolute(spec)?;
        let linux = spec.linux().as_ref();
        let mut flags: u64 = 0;
        let mut join = Vec::new();
        let mut new_user = false;
        let mut new_mnt = false;
        let mut new_uts = false;
        let mut new_time = false;
        for ns in linux
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
        {
            let flag = match ns.typ() {
                LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
                LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
                LinuxNamespaceType::Network => libc::CLONE_NEWNET,
                LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
                LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
                LinuxNamespaceType::User => libc::CLONE_NEWUSER,
                LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
                LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
            };
            match ns.path() {
                Some(p) => {
                    let fd = rustix::fs::open(p, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                        .map_err(|e| Error::io("open namespace", p, e))?;
                    join.push((fd, flag));
                }
                None if flag == libc::CLONE_NEWTIME => new_time = true,
                None => {
                    flags |= flag as u64;
                    new_user |= flag == libc::CLONE_NEWUSER;
                    new_mnt |= flag == libc::CLONE_NEWNS;
                    new_uts |= flag == libc::CLONE_NEWUTS;
                }
            }
        }
        if !new_mnt && !join.iter().any(|(_, f)| *f == libc::CLONE_NEWNS) {
            return Err(Error::spec(
                "linux.namespaces",
                "",
                "a mount namespace is required",
            ));
        }
        // Device rules are checked before anything is created.
        let dev_rules = crate::devices::device_rules(linux)?;
        // cgroup: created and limited now, joined before the init is released.
        let cg_path = linux
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| format!("oci-rs/{}", self.id));
        let cgroup = match &self.cgroup_root {
            Some(r) => Some(Cgroup::v2_at(r, &cg_path)?),
            None => Some(Cgroup::detect(&cg_path)?),
        };
        let cgroup = match cgroup {
            Some(c) => match c.create(linux.and_then(|l| l.resources().as_ref()), &dev_rules) {
                Ok(()) => Some(c),
                Err(e) if !rustix::process::geteuid().is_root() => {
                    tracing::info!(error = %e, "no cgroup (not delegated); running in the caller's");
                    None
                }
                Err(e) => {
                    let _ = c.remove();
                    return Err(e);
                }
            },
            None => None,
        };
        // From here on, a failure must not leave the cgroup behind.
        let rest = || -> Result<Container> {
            let built = filesystem(
                spec,
                &self.bundle,
                cgroup.as_ref(),
                new_user || join.iter().any(|(_, f)| *f == libc::CLONE_NEWUSER),
            )?;
            let fifo_path = dir.join("exec.fifo");
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &fifo_path,
                rustix::fs::FileType::Fifo,
                Mode::from_raw_mode(0o600),
                0,
            )
            .map_err(|e| Error::io("mkfifo", &fifo_path, e))?;
            // The init opens the fifo as the container's user, which has no capabilities when
            // it is not root: give it that user's host ids (the state directory is private;
            // the init reaches the fifo through its O_PATH descriptor).
            let joins_user = join.iter().any(|(_, f)| *f == libc::CLONE_NEWUSER);
            let host = |maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>, id: u32| {
                if !new_user {
                    // Joining a user namespace: its mapping is not in the spec, keep the owner.
                    return (!joins_user).then_some(id);
                }
                maps.into_iter().flatten().find_map(|m| {
                    (id >= m.container_id() && id - m.container_id() < m.size())
                        .then(|| m.host_id() + (id - m.container_id()))
                })
            };
            let uid = host(
                linux.and_then(|l| l.uid_mappings().as_ref()),
                proc_spec.user().uid(),
            );
            let gid = host(
                linux.and_then(|l| l.gid_mappings().as_ref()),
                proc_spec.user().gid(),
            );
            match rustix::fs::chown(
                &fifo_path,
                uid.map(rustix::fs::Uid::from_raw),
                gid.map(rustix::fs::Gid::from_raw),
            ) {
                Ok(()) => {}
                // An unprivileged caller cannot give the fifo to a subordinate id (a rootless
                // container's non-root user): let any id write it instead. The state
                // directory is private, so no other user reaches the fifo by its path; the
                // init opens it through its descriptor.
                Err(rustix::io::Errno::PERM) if !rustix::process::geteuid().is_root() => {
                    rustix::fs::chmod(&fifo_path, Mode::from_raw_mode(0o622))
                        .map_err(|e| Error::io("chmod", &fifo_path, e))?;
                }
                Err(e) => return Err(Error::io("chown", &fifo_path, e)),
            }
            let fifo = rustix::fs::open(&fifo_path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| Error::io("open", &fifo_path, e))?;
            let fifo_rel = cstr(format!("self/fd/{}", fifo.as_raw_fd()), "exec fifo")?;
            let Channels {
                proc,
                sync_read,
                sync_write,
                report_read,
                report_write,
            } = channels()?;
            let hostname = if new_uts {
                spec.hostname()
                    .as_ref()
                    .map(|h| cstr(h.as_str(), "hostname"))
                    .transpose()?
            } else {
                None
            };
            let domainname = if new_uts {
                spec.domainname()
                    .as_ref()
                    .map(|h| cstr(h.as_str(), "domainname"))
                    .transpose()?
            } else {
                None
            };
            let mount_names: Vec<String> = built
                .mounts
                .iter()
                .map(|m| {
                    m.prefixes
                        .last()
                        .map(|p| format!("/{}", p.0.to_string_lossy()))
                        .unwrap_or_else(|| "/".into())
                })
                .collect();
            let device_names: Vec<String> = built
                .devices
                .iter()
                .map(|d| {
                    format!(
                        "/{}/{}",
                        d.parent.to_string_lossy(),
                        d.name.to_string_lossy()
                    )
                })
                .collect();
            let id_method = if new_user {
                Some(id_maps_method(spec)?)
            } else {
                None
            };
            let cc_hooks = spec
                .hooks()
                .as_ref()
                .and_then(|h| h.create_container().clone())
                .unwrap_or_default();
            let start_hooks = spec
                .hooks()
                .as_ref()
                .and_then(|h| h.start_container().clone())
                .unwrap_or_default();
            let mut plan = Plan {
                rootfs: cstr(rootfs.as_os_str().as_encoded_bytes(), "root.path")?,
                propagation: built.propagation,
                root_propagation: built.root_propagation,
                mounts: built.mounts,
                devices: built.devices,
                symlinks: built.symlinks,
                masked: built.masked,
                readonly_paths: built.readonly_paths,
                readonly_root: spec
                    .root()
                    .as_ref()
                    .and_then(|r| r.readonly())
                    .unwrap_or(false),
                pivot: !self.no_pivot,
                // In a new mount namespace or a joined one (one of them is required), as runc:
                // the root is prepared there (propagation, the rootfs bound onto itself) so
                // that pivot_root has a mount to enter.
                prepare_root: true,
                hostname,
                domainname,
                loopback_up: flags & libc::CLONE_NEWNET as u64 != 0,
                reaper: self.reaper,
                sysctl: built.sysctl,
                join,
                process: process(proc_spec)?,
                stdio: [
                    self.stdio[0].as_ref().map(|f| f.as_raw_fd()),
                    self.stdio[1].as_ref().map(|f| f.as_raw_fd()),
                    self.stdio[2].as_ref().map(|f| f.as_raw_fd()),
                ],
                fifo: Some((fifo, fifo_rel)),
                proc,
                sync_read,
                report: report_write,
                setsid: false,
                new_userns: new_user,
                groups_denied: id_method == Some(IdMaps::DirectDenyGroups),
                exec: false,
                create_container: create_container_hooks(&cc_hooks)?,
                time_ns: if new_time {
                    Some(time_offsets(spec)?)
                } else {
                    None
                },
                // Without CAP_SYS_PTRACE (rootless) the caller could not open a non-dumpable
                // init's namespaces, which only startContainer hooks need.
                undumpable: can_trace() || (start_hooks.is_empty() && !self.readable_namespaces),
                seccomp: linux
                    .and_then(|l| l.seccomp().as_ref())
                    .map(crate::seccomp::compile_seccomp)
                    .transpose()?,
                console: match (console_stream.take(), &self.console_socket) {
                    (Some(s), _) => Some(s),
                    (None, Some(p)) => Some(
                        std::os::unix::net::UnixStream::connect(p)
                            .map_err(|e| Error::io("connect", p, e))?
                            .into(),
                    ),
                    (None, None) => None,
                },
            };
            let clone_err = |e| Error::Init {
                step: "clone3".into(),
                source: e,
            };
            // Rootless, joining a user namespace: the init is cloned from inside it, so that
            // it can join a pid namespace there and its new namespaces belong to it.
            let through_user = if can_admin() {
                None
            } else {
                plan.join
                    .iter()
                    .position(|(_, f)| *f == libc::CLONE_NEWUSER)
                    .map(|i| plan.join.remove(i).0)
            };
            let (pid, _held) = if let Some(user) = through_user {
                let pid_ns = plan
                    .join
                    .iter()
                    .position(|(_, f)| *f == libc::CLONE_NEWPID)
                    .map(|i| plan.join.remove(i).0);
                let pid = crate::init::spawn_through_user_ns(&plan, flags, &user, pid_ns.as_ref())
                    .map_err(clone_err)?;
                // The parent's copies of the child's ends.
                drop(plan);
                (pid, None)
            } else {
                // Joining a pid namespace takes effect for children only: the init is cloned
                // from a thread that joined it (and is held until the init is set up).
                let pid_ns = if flags & libc::CLONE_NEWPID as u64 == 0 {
                    plan.join
                        .iter()
                        .find(|(_, f)| *f == libc::CLONE_NEWPID)
                        .map(|(fd, _)| fd.try_clone())
                        .transpose()
                        .map_err(|e| Error::io("dup", "pid namespace", e))?
                } else {
                    None
                };
                match pid_ns {
                    None => {
                        let pid = crate::init::spawn(&plan, flags).map_err(clone_err)?;
                        // The parent's copies of the child's ends.
                        drop(plan);
                        (pid, None)
                    }
                    Some(ns) => {
                        let (pid, held) =
                            crate::init::spawn_in_pid_ns(plan, flags, ns).map_err(clone_err)?;
                        (pid, Some(held))
                    }
                }
            };
            let fail = |e: Error| {
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_raw(pid).unwrap_or(rustix::process::Pid::INIT),
                    rustix::process::Signal::KILL,
                );
                let _ = rustix::process::waitpid(
                    rustix::process::Pid::from_raw(pid),
                    rustix::process::WaitOptions::empty(),
                );
                if let Some(c) = &cgroup {
                    let _ = c.remove();
                }
                e
            };
            if let Some(method) = id_method {
                if let Err(e) = write_id_maps(pid, spec, method) {
                    return Err(fail(e));
                }
            }
            if let Some(c) = &cgroup {
                if let Err(e) = c.add(pid) {
                    return Err(fail(e));
                }
            }
            let mut go = vec![b'1'];
            if !cc_hooks.is_empty() {
                // The createContainer hooks' state: "creating", with the init's pid.
                let state = StateBuilder::default()
                    .version("1.2.0")
                    .id(self.id.clone())
                    .status(ContainerState::Creating)
                    .pid(pid)
                    .bundle(self.bundle.clone())
                    .annotations(spec.annotations().clone().unwrap_or_default())
                    .build()
                    .map_err(|e| {
                        fail(Error::Build {
                            what: "state for createContainer hooks",
                            source: e,
                        })
                    })?;
                let json = serde_json::to_vec(&state).map_err(|e| {
                    fail(Error::Serialize {
                        what: "state for createContainer hooks",
                        source: e,
                    })
                })?;
                if json.len() > crate::init::MAX_HOOK_STATE {
                    return Err(fail(Error::spec(
                        "annotations",
                        "",
                        "they make the state for createContainer hooks larger than 32 KiB",
                    )));
                }
                go.extend_from_slice(&(json.len() as u32).to_ne_bytes());
                go.extend_from_slice(&json);
            }
            // Fits in the pipe (64 KiB) before the init reads it.
            if let Err(e) = rustix::io::write(&sync_write, &go) {
                return Err(fail(Error::io("write", "sync pipe", e)));
            }
            drop(sync_write);
            let hook_paths: Vec<String> = cc_hooks
                .iter()
                .map(|h| h.path().display().to_string())
                .collect();
            match read_report(
                report_read.as_fd(),
                &mount_names,
                &device_names,
                &hook_paths,
            ) {
                Ok(()) => {}
                Err(e) => return Err(fail(e)),
            }
            let start_time = proc_start_time(pid).map(|s| s.0).unwrap_or(0);
            let hooks = spec.hooks().as_ref();
            let saved = Saved {
                id: self.id.clone(),
                pid,
                start_time,
                bundle: self.bundle.clone(),
                rootfs: rootfs.to_path_buf(),
                annotations: spec.annotations().clone().unwrap_or_default(),
                created: now_secs(),
                cgroup: cgroup.clone(),
                poststart: hooks
                    .and_then(|h| h.poststart().clone())
                    .unwrap_or_default(),
                poststop: hooks.and_then(|h| h.poststop().clone()).unwrap_or_default(),
                start_container: start_hooks,
                seccomp: linux.and_then(|l| l.seccomp().clone()),
            };
            let c = Container {
                dir: dir.to_path_buf(),
                saved,
                child: true,
            };
            c.save()?;
            let mut pre = hooks
                .and_then(|h| {
                    #[allow(deprecated)]
                    h.prestart().clone()
                })
                .unwrap_or_default();
            pre.extend(
                hooks
                    .and_then(|h| h.create_runtime().clone())
                    .unwrap_or_default(),
            );
            if let Err(e) = run_hooks("createRuntime", &pre, &c.state()) {
                let _ = c.kill(libc::SIGKILL);
                let _ = c.clone_for_delete().delete(true);
                return Err(e);
            }
            Ok(c)
        };
        let result = rest();
        if result.is_err() {
            if let Some(c) = &cgroup {
                let _ = c.remove();
            }
        }
        result
    }
}

/// What a child is started with: the host's `/proc` (opened before any pivot), a pipe it
/// waits on for the parent's go, and one it reports its progress on.
struct Channels {
    proc: OwnedFd,
    sync_read: OwnedFd,
    sync_write: OwnedFd,
    report_read: OwnedFd,
    report_write: OwnedFd,
}

fn channels() -> Result<Channels> {
    let proc = rustix::fs::open(
        "/proc",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open", "/proc", e))?;
    let (sync_read, sync_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| Error::io("pipe", "sync", e))?;
    let (report_read, report_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| Error::io("pipe", "report", e))?;
    Ok(Channels {
        proc,
        sync_read,
        sync_write,
        report_read,
        report_write,
    })
}

fn read_report(
    fd: std::os::fd::BorrowedFd<'_>,
    names: &[String],
    devices: &[String],
    hooks: &[String],
) -> Result<()> {
    let mut rec = [0u8; 12];
    let mut got = 0;
    while got < 12 {
        match rustix::io::read(fd, &mut rec[got..]) {
            Ok(0) => {
                return Err(Error::Init {
                    step: "setup".into(),
                    source: std::io::Error::other("the container init exited without a report"),
                })
            }
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::io("read", "report pipe", e)),
        }
    }
    let step = u32::from_ne_bytes([rec[0], rec[1], rec[2], rec[3]]);
    let errno = i32::from_ne_bytes([rec[4], rec[5], rec[6], rec[7]]);
    let index = u32::from_ne_bytes([rec[8], rec[9], rec[10], rec[11]]) as usize;
    if step == Step::Ready as u32 {
        return Ok(());
    }
    if step == Step::Hook as u32 {
        let path = hooks.get(index).cloned().unwrap_or_default();
        return Err(Error::Hook {
            kind: "createContainer",
            path: path.into(),
            reason: if errno < 0 {
                format!("exited with {}", -errno)
            } else if errno == libc::ETIMEDOUT {
                "timed out".into()
            } else {
                std::io::Error::from_raw_os_error(errno).to_string()
            },
        });
    }
    let mut what = Step::name(step).to_owned();
    let which = if step == Step::Device as u32 {
        devices.get(index)
    } else {
        names.get(index)
    };
    if let Some(n) = which {
        what = format!("{what} ({n})");
    }
    Err(Error::Init {
        step: what,
        source: std::io::Error::from_raw_os_error(errno),
    })
}

/// `linux.timeOffsets` as `timens_offsets` lines (`monotonic` and `boottime` only).
fn time_offsets(spec: &Spec) -> Result<std::ffi::CString> {
    let mut text = String::new();
    let offsets = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().clone())
        .unwrap_or_default();
    let mut clocks: Vec<_> = offsets.iter().collect();
    clocks.sort_by(|a, b| a.0.cmp(b.0));
    for (clock, off) in clocks {
        if clock != "monotonic" && clock != "boottime" {
            return Err(Error::spec(
                "linux.timeOffsets",
                clock,
                "unknown clock (monotonic or boottime)",
            ));
        }
        let ns = off.nanosecs().unwrap_or(0);
        if ns >= 1_000_000_000 {
            return Err(Error::spec(
                "linux.timeOffsets",
                format!("{clock} nanosecs {ns}"),
                "a second or more",
            ));
        }
        text.push_str(&format!("{clock} {} {ns}\n", off.secs().unwrap_or(0)));
    }
    cstr(text, "linux.timeOffsets")
}

/// A created container.
#[derive(Debug)]
pub struct Container {
    dir: PathBuf,
    saved: Saved,
    /// True in the process that created it (which can `waitpid` it).
    child: bool,
}

impl Container {
    /// Loads container `id` from `state_root`.
    pub fn load(state_root: &Path, id: &str) -> Result<Self> {
        validate_id(id)?;
        let dir = state_root.join(id);
        let path = dir.join("state.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_owned()))
            }
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| Error::State {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            dir,
            saved,
            child: false,
        })
    }

    /// Every container under `state_root`.
    pub fn list(state_root: &Path) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(state_root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io("read", state_root, e)),
        };
        for e in rd.flatten() {
            if let Some(id) = e.file_name().to_str() {
                if let Ok(c) = Container::load(state_root, id) {
                    out.push(c);
                }
            }
        }
        out.sort_by(|a, b| a.saved.id.cmp(&b.saved.id));
        Ok(out)
    }

    fn clone_for_delete(&self) -> Container {
        Container {
            dir: self.dir.clone(),
            saved: self.saved.clone(),
            child: self.child,
        }
    }

    fn save(&self) -> Result<()> {
        let bytes = serde_json::to_vec(&self.saved).map_err(|e| Error::State {
            path: self.dir.join("state.json"),
            reason: e.to_string(),
        })?;
        write_atomic(&self.dir, "state.json", &bytes)
    }

    fn lock(&self) -> Result<std::fs::File> {
        let f = std::fs::File::open(&self.dir).map_err(|e| Error::io("open", &self.dir, e))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::io("lock", &self.dir, e))?;
        Ok(f)
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.saved.id
    }

    /// The init's pid (in the creator's pid namespace).
    pub fn pid(&self) -> i32 {
        self.saved.pid
    }

    /// The root filesystem.
    pub fn rootfs(&self) -> &Path {
        &self.saved.rootfs
    }

    /// The container's cgroup, when it has its own.
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.saved.cgroup.as_ref()
    }

    /// Freezes every process of the container (runc's `pause`), so that what it writes
    /// stands still, for a consistent `commit`. A container without a cgroup of its own
    /// (rootless, not delegated) cannot be paused: an error.
    pub fn pause(&self) -> Result<()> {
        self.freezer()?.freeze(true)
    }

    /// Thaws what [`Container::pause`] froze.
    pub fn resume(&self) -> Result<()> {
        self.freezer()?.freeze(false)
    }

    fn freezer(&self) -> Result<&Cgroup> {
        self.saved.cgroup.as_ref().ok_or_else(|| Error::WrongState {
            id: self.saved.id.clone(),
            status: "without a cgroup of its own".into(),
            op: "pause",
        })
    }

    /// The current status.
    pub fn status(&self) -> Status {
        match proc_start_time(self.saved.pid) {
            Some((start, state))
                if start == self.saved.start_time && state != 'Z' && state != 'X' =>
            {
                if self.dir.join("exec.fifo").exists() {
                    Status::Created
                } else {
                    Status::Running
                }
            }
            _ => Status::Stopped,
        }
    }

    /// The runtime-spec state.
    pub fn state(&self) -> State {
        let status = match self.status() {
            Status::Created => ContainerState::Created,
            Status::Running => ContainerState::Running,
            Status::Stopped => ContainerState::Stopped,
        };
        let mut b = StateBuilder::default()
            .version("1.2.0")
            .id(self.saved.id.clone())
            .status(status)
            .bundle(self.saved.bundle.clone())
            .annotations(self.saved.annotations.clone());
        if status != ContainerState::Stopped {
            b = b.pid(self.saved.pid);
        }
        b.build().unwrap_or_default()
    }

    /// Lets the init `execve` the process.
    pub fn start(&mut self) -> Result<()> {
        let _lock = self.lock()?;
        let status = self.status();
        if status != Status::Created {
            return Err(Error::WrongState {
                id: self.saved.id.clone(),
                status: status.to_string(),
                op: "start",
            });
        }
        let hooks = std::mem::take(&mut self.saved.start_container);
        let ran = self.run_hooks_inside("startContainer", &hooks);
        self.saved.start_container = hooks;
        if let Err(e) = ran {
            // The spec: a failing startContainer hook stops the container.
            let _ = self.kill(libc::SIGKILL);
            return Err(e);
        }
        let fifo = self.dir.join("exec.fifo");
        let fd = rustix::fs::open(
            &fifo,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open", &fifo, e))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut b = [0u8; 1];
        loop {
            match rustix::io::read(&fd, &mut b) {
                Ok(1) => break,
                Ok(_) | Err(rustix::io::Errno::AGAIN) => {
                    if self.status() == Status::Stopped {
                        return Err(Error::WrongState {
                            id: self.saved.id.clone(),
                            status: "stopped".into(),
                            op: "start",
                        });
                    }
                    if Instant::now() > deadline {
                        return Err(Error::io(
                            "read",
                            &fifo,
                            std::io::Error::other("the init did not answer"),
                        ));
                    }
                    // Wake as soon as the init writes (it opens its end when we opened ours).
                    let mut fds = [rustix::event::PollFd::new(
                        &fd,
                        rustix::event::PollFlags::IN,
                    )];
                    let wait = rustix::event::Timespec {
                        tv_sec: 0,
                        tv_nsec: 50_000_000,
                    };
                    match rustix::event::poll(&mut fds, Some(&wait)) {
                        Ok(_) | Err(rustix::io::Errno::INTR) => {}
                        Err(e) => return Err(Error::io("poll", &fifo, e)),
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::io("read", &fifo, e)),
            }
        }
        std::fs::remove_file(&fifo).map_err(|e| Error::io("remove", &fifo, e))?;
        run_hooks_warning("poststart", &self.saved.poststart, &self.state());
        Ok(())
    }

    /// Runs another process in the running container: it joins the init's namespaces (user
    /// first, then mount, pid, network, ipc, uts, cgroup) and cgroup, with its own args, env,
    /// cwd, user and capabilities from `process`. `stdio` are its stdin, stdout and stderr
    /// (None: inherited).
    pub fn exec(
        &self,
        process: &oci_spec::runtime::Process,
        stdio: [Option<OwnedFd>; 3],
    ) -> Result<ExecProcess> {
        if process.terminal().unwrap_or(false) {
            return Err(Error::spec(
                "process.terminal",
                true,
                "needs exec_terminal and a console socket",
            ));
        }
        self.exec_inner(process, stdio, None, None)
    }

    /// [`exec`](Self::exec) with a terminal: the pty's master goes to the unix socket at
    /// `console_socket`, the process gets the slave as its controlling terminal and stdio.
    pub fn exec_terminal(
        &self,
        process: &oci_spec::runtime::Process,
        console_socket: &Path,
    ) -> Result<ExecProcess> {
        let sock = std::os::unix::net::UnixStream::connect(console_socket)
            .map_err(|e| Error::io("connect", console_socket, e))?;
        self.exec_inner(process, [None, None, None], Some(sock.into()), None)
    }

    /// Runs hooks in the container's namespaces and cgroup (the startContainer hooks: their
    /// path resolves in the container), one after the other, each with the state on stdin and
    /// its timeout, as root with the runtime's full privileges (no seccomp, all capabilities).
    fn run_hooks_inside(&self, kind: &'static str, hooks: &[Hook]) -> Result<()> {
        if hooks.is_empty() {
            return Ok(());
        }
        let json = hook_state(kind, &self.state())?;
        for h in hooks {
            let path = h.path().clone();
            let herr = hook_error(kind, &path);
            let mut args = h.args().clone().unwrap_or_default();
            if args.is_empty() {
                args.push(path.to_string_lossy().into_owned());
            }
            let mut process = oci_spec::runtime::Process::default();
            process.set_args(Some(args));
            process.set_env(Some(h.env().clone().unwrap_or_default()));
            process.set_cwd(PathBuf::from("/"));
            process.set_capabilities(None);
            process.set_no_new_privileges(Some(false));
            process.set_rlimits(None);
            let program = cstr(path.as_os_str().as_encoded_bytes(), "hooks[].path")?;
            // The state is small: it fits in the pipe before anyone reads.
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| Error::io("pipe", "hook stdin", e))?;
            rustix::io::write(&w, &json).map_err(|e| Error::io("write", "hook stdin", e))?;
            drop(w);
            let child = self
                .exec_inner(&process, [Some(r), None, None], None, Some(program))
                .map_err(|e| herr(e.to_string()))?;
            let deadline = hook_timeout(h).map(|t| Instant::now() + t);
            match child.wait_until(deadline)? {
                Some(0) => {}
                Some(code) => return Err(herr(format!("exited with {code}"))),
                None => return Err(herr("timed out".into())),
            }
        }
        Ok(())
    }

    fn exec_inner(
        &self,
        process: &oci_spec::runtime::Process,
        stdio: [Option<OwnedFd>; 3],
        console: Option<OwnedFd>,
        hook: Option<std::ffi::CString>,
    ) -> Result<ExecProcess> {
        crate::exe::check()?;
        let status = self.status();
        let allowed = status == Status::Running || (hook.is_some() && status == Status::Created);
        if !allowed {
            return Err(Error::WrongState {
                id: self.saved.id.clone(),
                status: status.to_string(),
                op: "exec",
            });
        }
        let pid = self.saved.pid;
        let mut join = Vec::new();
        for (name, flag) in [
            ("user", libc::CLONE_NEWUSER),
            ("mnt", libc::CLONE_NEWNS),
            ("pid", libc::CLONE_NEWPID),
            ("net", libc::CLONE_NEWNET),
            ("ipc", libc::CLONE_NEWIPC),
            ("uts", libc::CLONE_NEWUTS),
            ("cgroup", libc::CLONE_NEWCGROUP),
            ("time", libc::CLONE_NEWTIME),
        ] {
            let theirs = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
            let ours = PathBuf::from(format!("/proc/self/ns/{name}"));
            let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
                continue;
            };
            use std::os::unix::fs::MetadataExt;
            if a.ino() == b.ino() && a.dev() == b.dev() {
                continue;
            }
            let fd = rustix::fs::open(&theirs, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| Error::io("open namespace", &theirs, e))?;
            join.push((fd, flag));
        }
        let mut process = process_plan(process)?;
        let seccomp = match &hook {
            // Hooks are the runtime's own programs: the container's filter is not theirs.
            Some(_) => None,
            None => self
                .saved
                .seccomp
                .as_ref()
                .map(crate::seccomp::compile_seccomp)
                .transpose()?,
        };
        if let Some(program) = hook {
            process.exec = vec![program];
        }
        let Channels {
            proc,
            sync_read,
            sync_write,
            report_read,
            report_write,
        } = channels()?;
        let plan = Plan {
            rootfs: cstr(
                self.saved.rootfs.as_os_str().as_encoded_bytes(),
                "root.path",
            )?,
            propagation: rustix::mount::MountFlags::empty(),
            root_propagation: None,
            mounts: Vec::new(),
            devices: Vec::new(),
            symlinks: Vec::new(),
            masked: Vec::new(),
            readonly_paths: Vec::new(),
            readonly_root: false,
            pivot: false,
            prepare_root: false,
            hostname: None,
            loopback_up: false,
            reaper: false,
            domainname: None,
            sysctl: Vec::new(),
            join,
            process,
            stdio: [
                stdio[0].as_ref().map(|f| f.as_raw_fd()),
                stdio[1].as_ref().map(|f| f.as_raw_fd()),
                stdio[2].as_ref().map(|f| f.as_raw_fd()),
            ],
            fifo: None,
            proc,
            sync_read,
            report: report_write,
            setsid: false,
            new_userns: false,
            // A rootless container's user namespace may deny setgroups.
            groups_denied: std::fs::read_to_string(format!("/proc/{pid}/setgroups"))
                .is_ok_and(|s| s.trim() == "deny"),
            exec: true,
            console,
            seccomp,
            create_container: Vec::new(),
            time_ns: None,
            // Nothing opens the helper's /proc files.
            undumpable: true,
        };
        let child = spawn(&plan, 0).map_err(|e| Error::Init {
            step: "clone3".into(),
            source: e,
        })?;
        drop(plan);
        let reap = || {
            let _ = rustix::process::waitpid(
                rustix::process::Pid::from_raw(child),
                rustix::process::WaitOptions::empty(),
            );
        };
        if let Some(cg) = &self.saved.cgroup {
            if let Err(e) = cg.add(child) {
                drop(sync_write);
                reap();
                return Err(e);
            }
        }
        if let Err(e) = rustix::io::write(&sync_write, b"1") {
            reap();
            return Err(Error::io("write", "sync pipe", e));
        }
        drop(sync_write);
        if let Err(e) = read_report(report_read.as_fd(), &[], &[], &[]) {
            reap();
            return Err(e);
        }
        Ok(ExecProcess { pid: child })
    }

    /// Sends `signal` to the init.
    pub fn kill(&self, signal: i32) -> Result<()> {
        if self.status() == Status::Stopped {
            return Err(Error::WrongState {
                id: self.saved.id.clone(),
                status: "stopped".into(),
                op: "kill",
            });
        }
        // SAFETY-free: kill(2) with a pid we verified by its start time.
        rustix::process::Pid::from_raw(self.saved.pid)
            .ok_or_else(|| Error::State {
                path: self.dir.clone(),
                reason: "invalid pid".into(),
            })
            .and_then(|p| {
                let sig = rustix::process::Signal::from_named_raw(signal)
                    .ok_or_else(|| Error::InvalidSignal(signal.to_string()))?;
                rustix::process::kill_process(p, sig).map_err(|e| Error::io("kill", &self.dir, e))
            })
    }

    /// Sends `signal` to every process of the container's cgroup (`kill --all`).
    pub fn kill_all(&self, signal: i32) -> Result<()> {
        let Some(cg) = &self.saved.cgroup else {
            return self.kill(signal);
        };
        let sig = rustix::process::Signal::from_named_raw(signal)
            .ok_or_else(|| Error::InvalidSignal(signal.to_string()))?;
        for pid in cg.pids() {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, sig);
            }
        }
        Ok(())
    }

    /// Waits for the process to exit: its exit code, or 128 + the signal that ended it.
    ///
    /// A container this process did not create (loaded with [`Container::load`]) is waited
    /// for through a pidfd: its exit code is known on Linux 6.15 and later, once its parent
    /// (or the subreaper it was left to) has reaped it; otherwise, or when it had ended
    /// before the call, this returns -1 once it is gone.
    pub fn wait(&mut self) -> Result<i32> {
        if self.child {
            let pid = rustix::process::Pid::from_raw(self.saved.pid);
            loop {
                match rustix::process::waitpid(pid, rustix::process::WaitOptions::empty()) {
                    Ok(Some((_, st))) => {
                        if let Some(code) = st.exit_status() {
                            return Ok(code);
                        }
                        if let Some(sig) = st.terminating_signal() {
                            return Ok(128 + sig);
                        }
                    }
                    Ok(None) => {}
                    Err(rustix::io::Errno::INTR) => {}
                    Err(rustix::io::Errno::CHILD) => break,
                    Err(e) => return Err(Error::io("waitpid", &self.dir, e)),
                }
            }
        }
        // Not our child: a pidfd says when it ends and, on Linux 6.15 and later, how.
        if self.status() != Status::Stopped {
            if let Some(code) = crate::pidfd::wait_exit(self.saved.pid, self.saved.start_time) {
                return Ok(code);
            }
        }
        // An older kernel, or it ended before we looked: wait until it is gone; its status
        // is not ours to read.
        let mut delay = Duration::from_millis(1);
        while self.status() != Status::Stopped {
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(100));
        }
        Ok(-1)
    }

    /// Removes the container. A created or running one is killed first when `force`, refused
    /// otherwise (a created one is always removable, as runc allows).
    pub fn delete(mut self, force: bool) -> Result<()> {
        let _lock = self.lock()?;
        match self.status() {
            Status::Stopped => {}
            Status::Created => {
                self.kill(libc::SIGKILL)?;
            }
            Status::Running if force => {
                let _ = self.kill_all(libc::SIGKILL);
                let _ = self.kill(libc::SIGKILL);
            }
            Status::Running => {
                return Err(Error::WrongState {
                    id: self.saved.id.clone(),
                    status: "running".into(),
                    op: "delete (use force)",
                })
            }
        }
        if self.child {
            let _ = self.wait();
        } else {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.status() != Status::Stopped && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        if let Some(cg) = &self.saved.cgroup {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match cg.remove() {
                    Ok(()) => break,
                    Err(_) if Instant::now() < deadline => {
                        let _ = self.kill_all(libc::SIGKILL);
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let state = self.state();
        std::fs::remove_dir_all(&self.dir).map_err(|e| Error::io("remove", &self.dir, e))?;
        run_hooks_warning("poststop", &self.saved.poststop, &state);
        Ok(())
    }
}

/// A process started by [`Container::exec`].
#[derive(Debug)]
pub struct ExecProcess {
    pid: i32,
}

impl ExecProcess {
    /// Its pid (of the helper that waits for it inside the container's pid namespace).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits until `deadline` (None: for ever): its exit code, or 128 + the signal that ended
    /// it; None when the deadline passed, after killing it.
    pub fn wait_until(self, deadline: Option<Instant>) -> Result<Option<i32>> {
        let Some(deadline) = deadline else {
            return self.wait().map(Some);
        };
        let pid = rustix::process::Pid::from_raw(self.pid).ok_or_else(|| Error::State {
            path: PathBuf::new(),
            reason: "invalid pid".into(),
        })?;
        loop {
            match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG) {
                Ok(Some((_, st))) => {
                    if let Some(code) = exit_code(st) {
                        return Ok(Some(code));
                    }
                }
                Ok(None) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::io("waitpid", "exec process", e)),
            }
            if Instant::now() > deadline {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for it: its exit code, or 128 + the signal that ended it.
    pub fn wait(self) -> Result<i32> {
        loop {
            match rustix::process::waitpid(
                rustix::process::Pid::from_raw(self.pid),
                rustix::process::WaitOptions::empty(),
            ) {
                Ok(Some((_, st))) => {
                    if let Some(code) = exit_code(st) {
                        return Ok(code);
                    }
                }
                Ok(None) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::io("waitpid", format!("exec {}", self.pid), e)),
            }
        }
    }
}

/// The exit code of an ended process, or 128 + the signal that ended it; None while it has
/// only stopped.
fn exit_code(st: rustix::process::WaitStatus) -> Option<i32> {
    st.exit_status()
        .or_else(|| st.terminating_signal().map(|sig| 128 + sig))
}

/// create + start + wait + delete: the exit code (128 + signal when killed).
pub fn run(builder: ContainerBuilder) -> Result<i32> {
    let mut c = builder.create()?;
    if let Err(e) = c.start() {
        let _ = c.clone_for_delete().delete(true);
        return Err(e);
    }
    let code = c.wait()?;
    c.delete(true)?;
    Ok(code)
}

#[cfg(test)]
mod signal_tests {
    #![allow(clippy::unwrap_used)]
    use super::parse_signal;

    #[test]
    fn signals_read_as_docker_and_runc_write_them() {
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("sigkill").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
        assert_eq!(
            parse_signal("65").unwrap_err().to_string(),
            "invalid signal \"65\""
        );
    }
}

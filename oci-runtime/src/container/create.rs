//! `create`: the builder, the namespaces and plan of the init, the clone, and the wait until
//! the init is set up (its report on a pipe).

use super::*;

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
        console_stream: Option<OwnedFd>,
    ) -> Result<Container> {
        let spec = &self.spec;
        hook_paths_are_absolute(spec)?;
        let linux = spec.linux().as_ref();
        let ns = Namespaces::of(linux)?;
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
        let guard = CgroupGuard(cgroup.clone());
        let c = self.init_in(dir, rootfs, proc_spec, console_stream, ns, cgroup)?;
        guard.disarm();
        Ok(c)
    }

    /// With the cgroup made: the init's plan, the clone, the id maps and cgroup, the wait for
    /// its report, the saved state and the createRuntime hooks.
    fn init_in(
        &self,
        dir: &Path,
        rootfs: &Path,
        proc_spec: &oci_spec::runtime::Process,
        mut console_stream: Option<OwnedFd>,
        ns: Namespaces,
        cgroup: Option<Cgroup>,
    ) -> Result<Container> {
        let spec = &self.spec;
        let linux = spec.linux().as_ref();
        let Namespaces {
            flags,
            join,
            new_user,
            new_uts,
            new_time,
            ..
        } = ns;
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
            pidfd: None,
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
    }
}

/// The namespaces of a spec: those to create (clone flags; a time namespace is unshared by
/// the init), and those to join by path (opened now).
struct Namespaces {
    flags: u64,
    join: Vec<(OwnedFd, i32)>,
    new_user: bool,
    new_uts: bool,
    new_time: bool,
}

impl Namespaces {
    fn of(linux: Option<&oci_spec::runtime::Linux>) -> Result<Self> {
        let mut ns = Namespaces {
            flags: 0,
            join: Vec::new(),
            new_user: false,
            new_uts: false,
            new_time: false,
        };
        let mut new_mnt = false;
        for n in linux
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
        {
            let flag = match n.typ() {
                LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
                LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
                LinuxNamespaceType::Network => libc::CLONE_NEWNET,
                LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
                LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
                LinuxNamespaceType::User => libc::CLONE_NEWUSER,
                LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
                LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
            };
            match n.path() {
                Some(p) => {
                    let fd = rustix::fs::open(p, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                        .map_err(|e| Error::io("open namespace", p, e))?;
                    ns.join.push((fd, flag));
                }
                None if flag == libc::CLONE_NEWTIME => ns.new_time = true,
                None => {
                    ns.flags |= flag as u64;
                    ns.new_user |= flag == libc::CLONE_NEWUSER;
                    new_mnt |= flag == libc::CLONE_NEWNS;
                    ns.new_uts |= flag == libc::CLONE_NEWUTS;
                }
            }
        }
        if !new_mnt && !ns.join.iter().any(|(_, f)| *f == libc::CLONE_NEWNS) {
            return Err(Error::spec(
                "linux.namespaces",
                "",
                "a mount namespace is required",
            ));
        }
        Ok(ns)
    }
}

/// Removes a container's cgroup when dropped, unless disarmed: the clean-up of a create that
/// failed after the cgroup was made.
struct CgroupGuard(Option<Cgroup>);

impl CgroupGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            let _ = c.remove();
        }
    }
}

/// What a child is started with: the host's `/proc` (opened before any pivot), a pipe it
/// waits on for the parent's go, and one it reports its progress on.
pub(super) struct Channels {
    pub(super) proc: OwnedFd,
    pub(super) sync_read: OwnedFd,
    pub(super) sync_write: OwnedFd,
    pub(super) report_read: OwnedFd,
    pub(super) report_write: OwnedFd,
}

pub(super) fn channels() -> Result<Channels> {
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

pub(super) fn read_report(
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

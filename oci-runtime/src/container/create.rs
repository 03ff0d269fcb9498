//! `create`: the builder, the namespaces and plan of the init, the clone, and the wait until
//! the init is set up (its report on a pipe).

use super::guard::{CgroupGuard, ChildGuard, DirGuard, MountsGuard};
use super::start::exec_fifo;
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
        // From here on, a failure removes the state directory.
        let state = DirGuard(Some(dir.clone()));
        let console_stream = self.console_stream.take();
        let c = self.create_in(&dir, &rootfs, proc_spec, console_stream)?;
        state.disarm();
        Ok(c)
    }

    fn create_in(
        &self,
        dir: &Path,
        rootfs: &Path,
        proc_spec: &oci_spec::runtime::Process,
        console_stream: Option<OwnedFd>,
    ) -> Result<Container> {
        let spec = &self.spec;
        crate::plan::check_version(spec.version())?;
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
        let joins_user = ns.join.iter().any(|(_, f)| *f == libc::CLONE_NEWUSER);
        let built = filesystem(
            spec,
            &self.bundle,
            cgroup.as_ref(),
            ns.new_user || joins_user,
        )?;
        let fifo = exec_fifo(dir, spec, proc_spec, ns.new_user, joins_user)?;
        // What the init's report names, by index.
        let (mount_names, device_names) = built.names();
        let id_method = if ns.new_user {
            Some(id_maps_method(spec)?)
        } else {
            None
        };
        let hooks = spec.hooks().as_ref();
        let cc_hooks = hooks
            .and_then(|h| h.create_container().clone())
            .unwrap_or_default();
        let start_hooks = hooks
            .and_then(|h| h.start_container().clone())
            .unwrap_or_default();
        let console = match (console_stream.take(), &self.console_socket) {
            (Some(s), _) => Some(s),
            (None, Some(p)) => Some(
                std::os::unix::net::UnixStream::connect(p)
                    .map_err(|e| Error::io("connect", p, e))?
                    .into(),
            ),
            (None, None) => None,
        };
        // A new cgroup namespace is unshared by the init once it is in its cgroup (see
        // `Plan::new_cgroupns`), not made by the clone.
        let flags = ns.flags & !(libc::CLONE_NEWCGROUP as u64);
        let shares_mounts = !ns.mount;
        if shares_mounts {
            tracing::warn!(
                id = %self.id,
                "no mount namespace: the container's mounts are made in this one, under its \
                 rootfs, and its root is a chroot (which a process with CAP_SYS_CHROOT can leave)"
            );
        }
        let (ends, parent) = channels()?;
        let mut plan = Plan::for_create(
            spec,
            built,
            InitOptions {
                rootfs: cstr(rootfs.as_os_str().as_encoded_bytes(), "root.path")?,
                namespaces: ns,
                pivot: !self.no_pivot,
                reaper: self.reaper,
                // Without CAP_SYS_PTRACE (rootless) the caller could not open a non-dumpable
                // init's namespaces, which only startContainer hooks need.
                undumpable: can_trace() || (start_hooks.is_empty() && !self.readable_namespaces),
                groups_denied: id_method == Some(IdMaps::DirectDenyGroups),
                stdio: stdio_fds(&self.stdio),
                fifo,
                console,
            },
            ends,
        )?;
        // v1: the init moves itself, cheaper than a move by pid (see `self_join_files`).
        plan.cgroup_tasks = match &cgroup {
            Some(c) => c.self_join_files()?,
            None => Vec::new(),
        };
        let joins_itself = !plan.cgroup_tasks.is_empty();
        let (pid, _held) = spawn_init(plan, flags, can_admin()).map_err(|e| Error::Init {
            step: "clone3".into(),
            source: e,
        })?;
        // From here on, a failure detaches the mounts the init made in this namespace (if
        // any; declared first, so that it runs after the kill), and kills and reaps the init.
        let mounts = MountsGuard(shares_mounts.then(|| rootfs.to_path_buf()));
        let init = ChildGuard(Some(pid));
        let sent = (|| {
            if let Some(method) = id_method {
                write_id_maps(pid, spec, method)?;
            }
            if let Some(c) = cgroup.as_ref().filter(|_| !joins_itself) {
                c.add(pid)?;
            }
            let go = self.go_message(pid, !cc_hooks.is_empty())?;
            // Fits in the pipe (64 KiB) before the init reads it.
            rustix::io::write(&parent.sync_write, &go)
                .map_err(|e| Error::io("write", "sync pipe", e))
        })();
        if let Err(e) = sent {
            return Err(child_failure_or(
                e,
                parent.sync_write,
                parent.report_read.as_fd(),
            ));
        }
        drop(parent.sync_write);
        let hook_paths: Vec<String> = cc_hooks
            .iter()
            .map(|h| h.path().display().to_string())
            .collect();
        read_report(
            parent.report_read.as_fd(),
            &mount_names,
            &device_names,
            &hook_paths,
        )?;
        let saved = Saved {
            id: self.id.clone(),
            pid,
            start_time: proc_start_time(pid).map(|s| s.0).unwrap_or(0),
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
            shares_mounts,
        };
        let c = Container {
            dir: dir.to_path_buf(),
            saved,
            child: true,
            pidfd: None,
        };
        c.save()?;
        // The container is on record now: a failure from here is cleaned up by deleting it.
        init.disarm();
        mounts.disarm();
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

    /// The go the init waits for: one byte, then, when it has createContainer hooks to run,
    /// their state ("creating", with the init's pid) after its length.
    fn go_message(&self, pid: i32, with_state: bool) -> Result<Vec<u8>> {
        let mut go = vec![b'1'];
        if !with_state {
            return Ok(go);
        }
        let what = "state for createContainer hooks";
        let state = StateBuilder::default()
            .version(STATE_VERSION)
            .id(self.id.clone())
            .status(ContainerState::Creating)
            .pid(pid)
            .bundle(self.bundle.clone())
            .annotations(self.spec.annotations().clone().unwrap_or_default())
            .build()
            .map_err(|e| Error::Build { what, source: e })?;
        let json = serde_json::to_vec(&state).map_err(|e| Error::Serialize { what, source: e })?;
        if json.len() > crate::init::MAX_HOOK_STATE {
            return Err(Error::spec(
                "annotations",
                "",
                "they make the state for createContainer hooks larger than 32 KiB",
            ));
        }
        go.extend_from_slice(&(json.len() as u32).to_ne_bytes());
        go.extend_from_slice(&json);
        Ok(go)
    }
}

/// The raw descriptors of the stdio given (None: inherited).
pub(super) fn stdio_fds(stdio: &[Option<OwnedFd>; 3]) -> [Option<std::os::fd::RawFd>; 3] {
    [0, 1, 2].map(|i| stdio[i].as_ref().map(|f| f.as_raw_fd()))
}

//! `exec`: another process in a running container's namespaces and cgroup.

use super::create::stdio_fds;
use super::guard::ChildGuard;
use super::*;

/// A process started by [`Container::exec`].
#[derive(Debug)]
pub struct ExecProcess {
    pid: i32,
}

impl ExecProcess {
    /// Its pid, in the caller's pid namespace: the process itself, a child of the caller.
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

impl Container {
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
    pub(super) fn run_hooks_inside(&self, kind: &'static str, hooks: &[Hook]) -> Result<()> {
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
            // A paused container is refused too, as runc does: the process would hang frozen.
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
        let (ends, parent) = channels()?;
        let mut plan = Plan::for_exec(
            cstr(
                self.saved.rootfs.as_os_str().as_encoded_bytes(),
                "root.path",
            )?,
            process,
            ExecOptions {
                join,
                stdio: stdio_fds(&stdio),
                console,
                seccomp,
                // A rootless container's user namespace may deny setgroups.
                groups_denied: std::fs::read_to_string(format!("/proc/{pid}/setgroups"))
                    .is_ok_and(|s| s.trim() == "deny"),
                chroot: self.saved.shares_mounts,
            },
            ends,
        );
        // Started inside the container's pid namespace (from a thread that joined it, or
        // through its user namespace), as this process's child: the pid is the process's
        // own, as runc's `--pid-file` is, so a signal to it (containerd's exec timeout) ends
        // the process, and the subreaper gets it when this program exits.
        plan.cgroup_tasks = match &self.saved.cgroup {
            Some(c) => c.self_join_files()?,
            None => Vec::new(),
        };
        let joins_itself = !plan.cgroup_tasks.is_empty();
        let (child, _held) = spawn_init(plan, 0, can_admin()).map_err(|e| Error::Init {
            step: "clone3".into(),
            source: e,
        })?;
        // From here on, a failure kills and reaps the process.
        let process = ChildGuard(Some(child));
        let sent = (|| {
            if let Some(cg) = self.saved.cgroup.as_ref().filter(|_| !joins_itself) {
                cg.add(child)?;
            }
            rustix::io::write(&parent.sync_write, b"1")
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
        read_report(parent.report_read.as_fd(), &[], &[], &[])?;
        process.disarm();
        Ok(ExecProcess { pid: child })
    }
}

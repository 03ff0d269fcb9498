//! `start`: the exec fifo (made by `create`, whose init blocks on it) that lets the init's
//! `execve` go, then the poststart hooks.

use super::*;

impl Container {
    /// Whether [`start`](Self::start) runs startContainer hooks, which run in the
    /// container's namespaces as clones of this program: a program that seals itself only
    /// when it has to ([`crate::reexec_sealed`]) asks this before `start`.
    pub fn has_start_container_hooks(&self) -> bool {
        !self.saved.start_container.is_empty()
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
        if !self.child {
            self.pidfd = crate::pidfd::open(self.saved.pid, self.saved.start_time);
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
        // The init's byte says it goes on to `execve`; the end of file (the init's end closes
        // at `execve`, or when it dies) says it has gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got_byte = false;
        let mut b = [0u8; 1];
        loop {
            match rustix::io::read(&fd, &mut b) {
                Ok(1) => got_byte = true,
                Ok(0) if got_byte => break,
                Ok(_) | Err(rustix::io::Errno::AGAIN) => {
                    if !got_byte && self.status() == Status::Stopped {
                        return Err(Error::WrongState {
                            id: self.saved.id.clone(),
                            status: "stopped".into(),
                            op: "start",
                        });
                    }
                    if Instant::now() > deadline {
                        if got_byte {
                            // Let go: the init is on its way to `execve` (a slow file system,
                            // a stopped init); the hooks run without waiting longer.
                            tracing::warn!(
                                id = %self.saved.id,
                                "the process was not executed within 10 s of start"
                            );
                            break;
                        }
                        return Err(Error::io(
                            "read",
                            &fifo,
                            std::io::Error::other("the init did not answer"),
                        ));
                    }
                    // Wake as soon as the init writes (it opens its end when we opened ours)
                    // or closes its end.
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
        // The state of the start that just happened: running, with its pid, even when the
        // process has already ended (a `true`), as the poststart hooks' state says it.
        run_hooks_warning(
            "poststart",
            &self.saved.poststart,
            &self.state_as(ContainerState::Running),
        );
        Ok(())
    }
}

/// Makes the exec fifo in the state directory `dir`, owned by the container process's host
/// ids, and opens it `O_PATH`: the init opens it for writing as that user, through the
/// descriptor (as `self/fd/N` under the host's `/proc`, the returned name), and blocks until
/// `start` opens it for reading.
pub(super) fn exec_fifo(
    dir: &Path,
    spec: &Spec,
    proc_spec: &oci_spec::runtime::Process,
    new_user: bool,
    joins_user: bool,
) -> Result<(OwnedFd, std::ffi::CString)> {
    let linux = spec.linux().as_ref();
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
    let rel = cstr(format!("self/fd/{}", fifo.as_raw_fd()), "exec fifo")?;
    Ok((fifo, rel))
}

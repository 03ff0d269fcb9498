//! `start`: the exec fifo that lets the init's `execve` go, then the poststart hooks.

use super::*;

impl Container {
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
}

//! `wait` and `delete`.

use super::*;

impl Container {
    /// Waits for the process to exit: its exit code, or 128 + the signal that ended it.
    ///
    /// A container this process did not create (loaded with [`Container::load`]) is waited
    /// for through a pidfd: its exit code is known on Linux 6.15 and later, once its parent
    /// (or the subreaper it was left to) has reaped it, even when that was before this call if
    /// this handle started it; otherwise (an older kernel, or a process that ended before a
    /// handle that did not start it looked) this returns -1 once it is gone.
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
        // Not our child: a pidfd says when it ends and, on Linux 6.15 and later, how. The one
        // `start` opened works even when the process has already ended.
        let code = match self.pidfd.take() {
            Some(fd) => crate::pidfd::wait_exit_of(self.saved.pid, &fd),
            None if self.status() != Status::Stopped => {
                crate::pidfd::wait_exit(self.saved.pid, self.saved.start_time)
            }
            None => None,
        };
        if let Some(code) = code {
            return Ok(code);
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
            Status::Running | Status::Paused if force => {
                let _ = self.kill_all(libc::SIGKILL);
                let _ = self.kill(libc::SIGKILL);
                // A frozen process dies only once thawed.
                if let Some(cg) = self.saved.cgroup.as_ref().filter(|c| c.is_frozen()) {
                    let _ = cg.freeze(false);
                }
            }
            s @ (Status::Running | Status::Paused) => {
                return Err(Error::WrongState {
                    id: self.saved.id.clone(),
                    status: s.to_string(),
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
        if self.saved.shares_mounts {
            super::guard::detach_mounts_under(&self.saved.rootfs);
        }
        let state = self.state();
        std::fs::remove_dir_all(&self.dir).map_err(|e| Error::io("remove", &self.dir, e))?;
        run_hooks_warning("poststop", &self.saved.poststop, &state);
        Ok(())
    }

    pub(super) fn clone_for_delete(&self) -> Container {
        Container {
            dir: self.dir.clone(),
            saved: self.saved.clone(),
            child: self.child,
            pidfd: None,
        }
    }
}

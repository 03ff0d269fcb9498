//! Signals and the freezer: `kill`, `kill --all`, `pause`, `resume`.

use super::*;

impl Container {
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

    /// Changes the resource limits of a created, running or paused container (runc's
    /// `update`, what the kubelet's in-place resize reaches through containerd): the given
    /// ones are written to its cgroup, the others stay. Device rules are not changed here.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use oci_rs_runtime::Container;
    /// use oci_spec::runtime::{LinuxPidsBuilder, LinuxResourcesBuilder};
    /// let c = Container::load(std::path::Path::new("/run/oci-runc"), "web")?;
    /// let pids = LinuxPidsBuilder::default().limit(100).build()?;
    /// c.update(&LinuxResourcesBuilder::default().pids(pids).build()?)?;
    /// # Ok(()) }
    /// ```
    pub fn update(&self, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        let status = self.status();
        if status == Status::Stopped {
            return Err(Error::WrongState {
                id: self.saved.id.clone(),
                status: status.to_string(),
                op: "update",
            });
        }
        let cg = self
            .saved
            .cgroup
            .as_ref()
            .ok_or_else(|| Error::WrongState {
                id: self.saved.id.clone(),
                status: "without a cgroup of its own".into(),
                op: "update",
            })?;
        cg.update(resources)
    }

    fn freezer(&self) -> Result<&Cgroup> {
        self.saved.cgroup.as_ref().ok_or_else(|| Error::WrongState {
            id: self.saved.id.clone(),
            status: "without a cgroup of its own".into(),
            op: "pause",
        })
    }
}

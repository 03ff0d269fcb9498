//! What a container is now: its status, and the runtime spec's state.

use super::*;

impl Container {
    /// The current status.
    pub fn status(&self) -> Status {
        match proc_start_time(self.saved.pid) {
            Some((start, state))
                if start == self.saved.start_time && state != 'Z' && state != 'X' =>
            {
                if self.dir.join("exec.fifo").exists() {
                    Status::Created
                } else if self.saved.cgroup.as_ref().is_some_and(Cgroup::is_frozen) {
                    Status::Paused
                } else {
                    Status::Running
                }
            }
            _ => Status::Stopped,
        }
    }

    /// The runtime-spec state.
    pub fn state(&self) -> State {
        self.state_as(match self.status() {
            Status::Created => ContainerState::Created,
            Status::Running => ContainerState::Running,
            // The runtime spec has no paused state (runc says "paused" beside it).
            Status::Paused => ContainerState::Running,
            Status::Stopped => ContainerState::Stopped,
        })
    }

    /// The runtime-spec state with `status` (and the pid unless stopped): what the hooks of
    /// a transition are given, whatever the process did meanwhile.
    pub(super) fn state_as(&self, status: ContainerState) -> State {
        let mut b = StateBuilder::default()
            .version(STATE_VERSION)
            .id(self.saved.id.clone())
            .status(status)
            .bundle(self.saved.bundle.clone())
            .annotations(self.saved.annotations.clone());
        if status != ContainerState::Stopped {
            b = b.pid(self.saved.pid);
        }
        b.build().unwrap_or_default()
    }
}

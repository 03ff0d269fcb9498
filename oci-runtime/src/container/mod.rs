//! Containers: create, start, state, kill, wait, delete, run; state on disk under a state
//! root so that another process can start, query, signal or delete a created container.

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
pub use crate::hooks::run_hooks;
use crate::hooks::{
    hook_error, hook_paths_are_absolute, hook_state, hook_timeout, run_hooks_warning,
};
use crate::idmap::{id_maps_method, write_id_maps, IdMaps};
use crate::init::{
    channels, child_failure_or, read_report, spawn_init, ExecOptions, InitOptions, Plan,
};
use crate::plan::{cstr, filesystem, process as process_plan, Namespaces};
use oci_spec::runtime::{ContainerState, Hook, Spec, State, StateBuilder};
use rustix::fs::{Mode, OFlags};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod create;
mod delete;
mod exec;
mod guard;
mod signal;
mod start;
mod state;

pub use create::ContainerBuilder;
pub use exec::ExecProcess;
pub(crate) use guard::mount_point_of;

/// The status of a container, as the runtime spec names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Init is set up and waits for `start`.
    Created,
    /// The process runs.
    Running,
    /// The process exists but its cgroup is frozen ([`Container::pause`]).
    Paused,
    /// The process has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
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
    /// The container has no mount namespace of its own: its mounts are in the creator's,
    /// under the rootfs, and `delete` detaches them.
    #[serde(default)]
    shares_mounts: bool,
}

/// The runtime spec version of the state documents this runtime writes (`state`, and the
/// hooks' stdin).
const STATE_VERSION: &str = "1.2.0";

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

/// A created container.
#[derive(Debug)]
pub struct Container {
    dir: PathBuf,
    saved: Saved,
    /// True in the process that created it (which can `waitpid` it).
    child: bool,
    /// Another process's container: a pidfd of its init opened by `start` before it let the
    /// init go, so that `wait` learns how it ended however soon that is.
    pidfd: Option<OwnedFd>,
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
            pidfd: None,
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

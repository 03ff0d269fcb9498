//! The container engine (feature `engine`): what a docker-like program keeps between its
//! invocations, as library types that any program opens on the same data directory, so
//! that `oci` and an embedding program see the same containers and volumes.
//!
//! - [`Containers`]: ids, unique and generated names, each container's record, create and
//!   run under a detached [`Monitor`](crate::Monitor), list, inspect (docker's document),
//!   stop with the image's stop signal, restart policy, `--rm`, logs, exec, top, remove with
//!   its snapshot, network endpoints and names.
//! - [`Volumes`]: named volumes (`DATA/volumes/NAME/_data`, docker's layout), filled from the
//!   image on first use.
//!
//! The images a container runs come from `oci-rs-image`'s stores and are unpacked by
//! `oci-rs-layer`'s [`Snapshotter`](oci_rs_layer::Snapshotter): this module is where the
//! runtime meets those two crates, so the dependency graph is
//! `oci-rs-image ← oci-rs-layer ← oci-rs-runtime` (and `oci-rs-image ← oci-rs-registry-client`);
//! a program that wants pulls hands [`Containers::run`] an image it resolved (or pulled)
//! through the image crate's traits: the runtime never talks to a registry itself.
//!
//! A data directory holds `containers/`, `volumes/`, `snapshots/` and (for the monitor's
//! runtime state) `run/`; it is private to its owner (0700). Networks are host-wide, as the
//! kernel's interfaces are: see [`Networks::host`](crate::Networks::host).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use oci_rs_runtime::{Containers, RunImage, RunRequest};
//! use oci_rs_runtime::{LogQuery, LogStream};
//! use std::time::Duration;
//!
//! let data = std::path::Path::new("/var/lib/my-tool");
//! let layout = oci_rs_image::OciLayout::create(data.join("images")).await?;
//! // An image already in the store (see oci-rs-layer's `ImageStore` for pulls).
//! let image = RunImage::resolve(&layout, "docker.io/library/busybox:latest", None).await?;
//! let containers = Containers::open(data)?;
//! let mut req = RunRequest::default();
//! req.name = Some("web".into());
//! req.detach = true;
//! req.opts.args = vec!["sh".into(), "-c".into(), "echo hello; sleep 60".into()];
//! let (_id, _monitor) = containers.run(&image, req).await?;
//! containers.logs("web", &LogQuery::default(), false, &mut |s: LogStream, b: &[u8]| {
//!     print!("{s:?}: {}", String::from_utf8_lossy(b));
//!     Ok(())
//! })?;
//! containers.stop("web", Duration::from_secs(10))?;
//! containers.remove("web", false)?;
//! # Ok(())
//! # }
//! ```

mod containers;
mod inspect;
mod usage;
mod volumes;

pub use containers::{
    host_memory, parse_container_path, parse_link, random_hex, ContainerConfig, ContainerFilter,
    ContainerStats, ContainerView, Containers, CopyIn, ExecRequest, ExecSession, InterfaceStats,
    ProcessRow, ProcessTable, PruneFilter, RunImage, RunRequest, StatsRow, ANONYMOUS_VOLUME_LABEL,
    PORTS_DISCARDED, PS_EF_TITLES,
};
#[cfg(feature = "api")]
pub(crate) use inspect::{network_settings, NetworkFacts};
pub use inspect::{ContainerInspect, InspectState};
pub use usage::{
    CacheUsage, DiskUsage, DiskUsageRows, ImageUsage, PruneReport, SystemPruneOptions,
    SystemPruneReport, UsageLine,
};
pub use volumes::{parse_mount_arg, parse_volume_arg, MountArg, VolumeFilter, VolumeInfo, Volumes};

use std::path::PathBuf;

/// A `Result` with [`EngineError`].
pub type EngineResult<T, E = EngineError> = std::result::Result<T, E>;

/// What can go wrong in the container and volume stores.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No container has this name, id or id prefix.
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    /// An id prefix that more than one container's id starts with.
    #[error("multiple containers match {0:?}: give more of the id")]
    AmbiguousContainer(String),
    /// A container or volume name outside `[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}`.
    #[error("invalid {what} name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName {
        /// `container` or `volume`.
        what: &'static str,
        /// The name refused.
        name: String,
    },
    /// Another container has the name (docker's words).
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{by}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse {
        /// The name.
        name: String,
        /// The id of the container that has it.
        by: String,
    },
    /// `rename` to the name the container has (docker's words).
    #[error("Renaming a container with the same name as its current name")]
    SameName(String),
    /// Every generated name tried was taken.
    #[error("no free container name")]
    NoFreeName,
    /// The operation does not fit the container's state. Said in docker's daemon's words
    /// where scripts match them: `rm` of a running or paused container, `pause`, `unpause`,
    /// and `kill`, `exec`, `top` of one that is not running.
    #[error("{}", wrong_state(action, container, id, state))]
    WrongState {
        /// The container's name.
        container: String,
        /// Its id.
        id: String,
        /// Its state (`running`, `exited`, `paused`, ...).
        state: String,
        /// What was asked (`remove`, `exec in`, ...).
        action: &'static str,
    },
    /// `attach` to a container that is not running (docker's words, which scripts match).
    #[error("You cannot attach to a {state} container, {hint}: {container}")]
    NotAttachable {
        /// The container's name.
        container: String,
        /// `stopped` or `paused`.
        state: &'static str,
        /// What to do first (`start it first`, `unpause it first`).
        hint: &'static str,
    },
    /// A container whose network membership does not allow the change.
    #[error("container {container}: {problem}")]
    Network {
        /// The container's name.
        container: String,
        /// What is wrong.
        problem: String,
    },
    /// `logs` of a container whose log driver is `none` (docker's words).
    #[error("configured logging driver does not support reading (container {0})")]
    LogsDisabled(String),
    /// A container record without the monitor record every container has.
    #[error("container {0} has no monitor record")]
    NoMonitor(String),
    /// A path that is not in the container's filesystem.
    #[error("Could not find the file {path} in container {container}")]
    NoSuchPath {
        /// The container as named.
        container: String,
        /// The path.
        path: String,
    },
    /// Removing an image that a container was made from, without force.
    #[error("conflict: unable to remove {image}: container {name} ({}) is using it (remove the container, or force)", id.get(..12).unwrap_or(id))]
    ImageInUse {
        /// The image as named.
        image: String,
        /// The container's name.
        name: String,
        /// The container's id.
        id: String,
    },
    /// No volume has this name.
    #[error("get {0}: no such volume")]
    NoSuchVolume(String),
    /// A volume a container uses.
    #[error("volume {name} is in use by container {container}: remove the container first")]
    VolumeInUse {
        /// The volume.
        name: String,
        /// The first container that mounts it.
        container: String,
    },
    /// `top` with `ps` options: `ps` failed, printed no table with a `PID` column, or the
    /// options would title another column `PID`.
    #[error("ps {args} for container {container}: {problem}")]
    Ps {
        /// The container as named.
        container: String,
        /// The options given to `ps`.
        args: String,
        /// What went wrong (ps's own message when it failed).
        problem: String,
    },
    /// A `-v` or `--mount` argument that is not one.
    #[error("invalid {flag} {spec:?}: {problem}")]
    MountSpec {
        /// `volume` or `--mount`.
        flag: &'static str,
        /// The argument.
        spec: String,
        /// What is wrong.
        problem: String,
    },
    /// Copying the image's directory into a new volume failed.
    #[error("copying {target} of the image into volume {volume}")]
    FillVolume {
        /// The volume.
        volume: String,
        /// The path in the image.
        target: String,
        /// The cause.
        #[source]
        source: Box<oci_rs_layer::Error>,
    },
    /// A file of the store could not be read or written.
    #[error("{action} {}", path.display())]
    Io {
        /// What was done (`read`, `create`, `remove`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A record of the store that is not what this crate wrote.
    #[error("corrupt record {}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The runtime failed (create, start, signal, exec, the monitor, a network).
    #[error(transparent)]
    Runtime(Box<crate::Error>),
    /// Unpacking or removing a container's filesystem failed.
    #[error(transparent)]
    Layer(Box<oci_rs_layer::Error>),
    /// Reading the image store failed.
    #[error(transparent)]
    ImageStore(Box<oci_rs_image::Error>),
}

impl From<crate::Error> for EngineError {
    fn from(e: crate::Error) -> Self {
        Self::Runtime(Box::new(e))
    }
}

impl From<crate::NetError> for EngineError {
    fn from(e: crate::NetError) -> Self {
        Self::Runtime(Box::new(e.into()))
    }
}

impl From<oci_rs_layer::Error> for EngineError {
    fn from(e: oci_rs_layer::Error) -> Self {
        Self::Layer(Box::new(e))
    }
}

impl From<oci_rs_image::Error> for EngineError {
    fn from(e: oci_rs_image::Error) -> Self {
        Self::ImageStore(Box::new(e))
    }
}

impl EngineError {
    /// docker's exit status for an `exec` that failed this way: 126 when the runtime could
    /// not set its process up (its working directory, its user); `None` for any other
    /// failure (a command that is not there is the process's own 127).
    pub fn exec_status(&self) -> Option<i32> {
        match self {
            Self::Runtime(r) if matches!(**r, crate::Error::Init { .. }) => Some(126),
            _ => None,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Writes `bytes` to `path` through a temporary file beside it and a rename, so that a
/// reader sees the old record or the new one.
pub(crate) fn write_record(
    path: &std::path::Path,
    value: &impl serde::Serialize,
) -> EngineResult<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| EngineError::Record {
        path: path.to_owned(),
        source,
    })?;
    // A temporary name of its own: two writers of one record (two processes updating one
    // container) must not write into, or rename away, each other's file.
    let tmp = path.with_extension(format!("json.{}.tmp", containers::random_hex(6)?));
    std::fs::write(&tmp, bytes).map_err(|e| EngineError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        EngineError::io("rename", &tmp, e)
    })
}

/// Reads a JSON record written by [`write_record`]; `None` when the file is missing.
pub(crate) fn read_record<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> EngineResult<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| EngineError::Record {
                path: path.to_owned(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EngineError::io("read", path, e)),
    }
}

/// [`EngineError::WrongState`]'s message: docker's daemon's where it has one.
fn wrong_state(action: &str, container: &str, id: &str, state: &str) -> String {
    match (action, state) {
        ("remove", "paused") => format!(
            "cannot remove container \"/{container}\": container is paused and must be unpaused first"
        ),
        ("remove", _) => format!(
            "cannot remove container \"/{container}\": container is {state}: stop the container before removing or force remove"
        ),
        ("copy into", "mounted read-only at /") => "container rootfs is marked read-only".into(),
        ("copy into", _) => "mounted volume is marked read-only".into(),
        ("pause", "paused") => format!("container {id} is already paused"),
        ("unpause", _) => format!("container {id} is not paused"),
        ("kill", _) => format!("cannot kill container: {container}: container {id} is not running"),
        ("pause" | "exec in" | "list the processes of", _) => {
            format!("container {id} is not running")
        }
        _ => format!("cannot {action} container {container}: it is {state}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// Records written by several threads at once (two processes updating one container)
    /// are each whole: every write succeeds and the record reads back. With one temporary
    /// name for all writers, renames failed ("No such file") and records were lost.
    #[test]
    fn records_written_at_once_each_land_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::thread::scope(|s| {
            for t in 0..8 {
                let path = &path;
                s.spawn(move || {
                    for k in 0..50 {
                        super::write_record(path, &serde_json::json!({"t": t, "k": k})).unwrap();
                    }
                });
            }
        });
        let v: serde_json::Value = super::read_record(&path).unwrap().unwrap();
        assert_eq!(v["k"], 49);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "no temporary file is left");
    }
}

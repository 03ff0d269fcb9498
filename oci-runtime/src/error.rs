//! The one error type of this crate.

use std::path::PathBuf;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong running containers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The spec asks for something invalid or unsupported.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// A user or group named in the process is not in the image's passwd or group file.
    #[error("unable to find {what} {name}: {reason}")]
    User {
        /// `user` or `group`.
        what: &'static str,
        /// The name looked up.
        name: String,
        /// Why it was not found.
        reason: &'static str,
    },
    /// A signal name or number that is not one.
    #[error("invalid signal {0:?}")]
    InvalidSignal(String),
    /// A container id is not acceptable.
    #[error("invalid container id {0:?}: 1-1024 characters of [A-Za-z0-9_+.-], not `.` or `..`")]
    InvalidId(String),
    /// No container with this id.
    #[error("container {0:?} does not exist")]
    NotFound(String),
    /// A container with this id exists already.
    #[error("container {0:?} already exists")]
    Exists(String),
    /// The operation does not fit the container's status.
    #[error("container {id:?} is {status}, cannot {op}")]
    WrongState {
        /// The container.
        id: String,
        /// Its status.
        status: String,
        /// What was asked.
        op: &'static str,
    },
    /// The container's init failed while setting it up, at `step`.
    #[error("container init failed at {step}")]
    Init {
        /// The setup step (`mount /proc`, `pivot_root`, `setuid`, ...).
        step: String,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// A hook failed.
    #[error("{kind} hook {path} failed: {reason}")]
    Hook {
        /// Which hook list.
        kind: &'static str,
        /// The hook's program.
        path: PathBuf,
        /// What happened.
        reason: String,
    },
    /// A cgroup could not be set up.
    #[error("cgroup {}", path.display())]
    Cgroup {
        /// The cgroup file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A system call or file operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The program runs from its file on disk, which a container could reach through
    /// `/proc/self/exe` (the CVE-2019-5736 class): see [`crate::reexec_sealed`].
    #[error("refusing to run a container from an unsealed program: call oci_rs_runtime::reexec_sealed() at the start of main, or oci_rs_runtime::allow_unsealed() to accept that a container can reach this program's file through /proc/self/exe")]
    UnsealedExe,
    /// Setting up a container's network failed.
    #[cfg(feature = "network")]
    #[error(transparent)]
    Network(#[from] crate::network::NetError),
    /// A container's monitor could not start it.
    #[error("container {id}: {reason}")]
    Monitor {
        /// The container.
        id: String,
        /// What the monitor reported.
        reason: String,
    },
    /// State on disk could not be read or written.
    #[error("container state {}: {reason}", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// Wraps an I/O error with the operation and path.
    pub fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: impl Into<std::io::Error>,
    ) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source: source.into(),
        }
    }
}

/// An error and its causes in one line, `what failed: why: why deeper`, for the places that
/// keep an error as text (a monitor's status, a report to the program that spawned it).
/// Display alone says only what failed; the causes are in `source()`.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        // A foreign error that still repeats its cause is not printed twice.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = c.source();
    }
    out
}

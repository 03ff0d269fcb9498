//! The one error type of this crate.

use std::borrow::Cow;
use std::path::PathBuf;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong running containers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The spec (a bundle's `config.json`) has a value this runtime refuses: invalid, or valid
    /// but not supported here.
    #[error("invalid spec: {field}{}: {reason}", Quoted(value))]
    InvalidSpec {
        /// The field, as a path in the spec's JSON (`linux.cgroupsPath`, `process.args`).
        field: &'static str,
        /// The value refused, empty when the field is missing.
        value: String,
        /// Why it is refused.
        reason: Cow<'static, str>,
    },
    /// A value given to this crate's own API (a `docker run` style option to
    /// [`spec_from_image`](crate::spec_from_image) or one of its parsers) is refused.
    #[error("invalid {option}{}: {reason}", Quoted(value))]
    InvalidOption {
        /// The option (`volume`, `restart policy`, `memory limit`).
        option: &'static str,
        /// The value refused, empty when it is missing.
        value: String,
        /// Why it is refused.
        reason: Cow<'static, str>,
    },
    /// oci-spec's builders refused a value this crate put together.
    #[error("could not build the {what}")]
    Build {
        /// What was being built.
        what: &'static str,
        /// The builder's error.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// A record could not be serialized.
    #[error("could not serialize the {what}")]
    Serialize {
        /// What was being serialized.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
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
    /// A seccomp profile file (`--security-opt seccomp=FILE`) that is not the runtime
    /// spec's `linux.seccomp` JSON.
    #[error("seccomp profile {} is not a runtime-spec linux.seccomp object", path.display())]
    SeccompProfile {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
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
    /// A `--format` template could not be parsed or run (see [`crate::format`]).
    #[cfg(feature = "format")]
    #[error("template {template:?}")]
    Template {
        /// The template (at most its first 80 characters).
        template: String,
        /// What the template engine said.
        #[source]
        source: Box<gotmpl::TemplateError>,
    },
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

/// ` "value"` (Debug-quoted), or nothing for an empty value.
struct Quoted<'a>(&'a str);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, " {:?}", self.0)
        }
    }
}

impl Error {
    /// [`Error::InvalidSpec`] for `field`, its `value` (empty when missing) and why.
    pub(crate) fn spec(
        field: &'static str,
        value: impl std::fmt::Display,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error::InvalidSpec {
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// [`Error::InvalidOption`] for `option`, its `value` and why.
    pub(crate) fn option(
        option: &'static str,
        value: impl std::fmt::Display,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error::InvalidOption {
            option,
            value: value.to_string(),
            reason: reason.into(),
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_field_and_value_once() {
        let e = Error::spec("linux.cgroupsPath", "a/../b", "a component is `..`");
        assert_eq!(
            e.to_string(),
            r#"invalid spec: linux.cgroupsPath "a/../b": a component is `..`"#
        );
        let e = Error::spec("process", "", "missing");
        assert_eq!(e.to_string(), "invalid spec: process: missing");
        let e = Error::option("restart policy", "sometimes", "expected always");
        assert_eq!(
            e.to_string(),
            r#"invalid restart policy "sometimes": expected always"#
        );
        // A wrapped cause is in source() only.
        let bad = serde_json::from_str::<u8>("x").unwrap_err();
        let e = Error::Serialize {
            what: "hook state",
            source: bad,
        };
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(!e.to_string().contains(&cause));
        assert_eq!(
            chain(&e),
            format!("could not serialize the hook state: {cause}")
        );
    }
}

//! The error of a Dockerfile build.

/// A `Result` with [`BuildError`].
pub type Result<T, E = BuildError> = std::result::Result<T, E>;

/// What can stop a Dockerfile build.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The Dockerfile does not parse.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// The Dockerfile's name.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// An instruction is refused: bad flags, arguments or values (`Dockerfile:LINE: KEYWORD
    /// ARGS: problem`).
    #[error("{place}: {problem}")]
    Instruction {
        /// `Dockerfile:LINE: KEYWORD ARGS`, the arguments cut short.
        place: String,
        /// What is wrong.
        problem: String,
    },
    /// A `RUN` step's command exited with a status other than 0 (worded as BuildKit's).
    #[error("{place}: process \"{process}\" did not complete successfully: exit code: {code}")]
    RunFailed {
        /// `Dockerfile:LINE: RUN ARGS`.
        place: String,
        /// What ran, as BuildKit shows it (`/bin/sh -c make`).
        process: String,
        /// The command's exit code.
        code: i32,
    },
    /// An instruction failed; the cause is the source.
    #[error("{place}")]
    Step {
        /// `Dockerfile:LINE: KEYWORD ARGS`.
        place: String,
        /// The cause.
        #[source]
        source: Box<BuildError>,
    },
    /// The Dockerfile, its stages or the context cannot make a build (no `FROM`, a missing
    /// target stage, a cycle between stages, a source outside the context, ...).
    #[error("{0}")]
    Invalid(String),
    /// An operation of the build failed; what it was is said here, the cause is the source.
    #[error("{what}")]
    Failed {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Reading or writing layers and snapshots failed.
    #[error(transparent)]
    Layer(Box<oci_rs_layer::Error>),
    /// The image store failed.
    #[error(transparent)]
    Image(Box<oci_rs_image::Error>),
    /// Running a step's container failed.
    #[error(transparent)]
    Runtime(Box<crate::Error>),
    /// An i/o error without a path.
    #[error("i/o error")]
    Io(#[from] std::io::Error),
    /// A JSON document could not be made or read.
    #[error("invalid JSON")]
    Json(#[from] serde_json::Error),
}

impl From<oci_rs_layer::Error> for BuildError {
    fn from(e: oci_rs_layer::Error) -> Self {
        Self::Layer(Box::new(e))
    }
}

impl From<oci_rs_image::Error> for BuildError {
    fn from(e: oci_rs_image::Error) -> Self {
        Self::Image(Box::new(e))
    }
}

impl From<crate::Error> for BuildError {
    fn from(e: crate::Error) -> Self {
        Self::Runtime(Box::new(e))
    }
}

impl From<crate::EngineError> for BuildError {
    fn from(e: crate::EngineError) -> Self {
        Self::Failed {
            what: "the container store".into(),
            source: Box::new(e),
        }
    }
}

impl From<super::words::WordError> for BuildError {
    fn from(e: super::words::WordError) -> Self {
        Self::Invalid(e.0)
    }
}

impl From<rustix::io::Errno> for BuildError {
    fn from(e: rustix::io::Errno) -> Self {
        Self::Io(e.into())
    }
}

/// Says what was being done when an operation failed, keeping its error as the source.
pub(crate) trait Context<T> {
    /// `what` as the error's message.
    fn context(self, what: impl Into<String>) -> Result<T>;
    /// `what()` as the error's message, made only on failure.
    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|e| BuildError::Failed {
            what: what.into(),
            source: Box::new(e),
        })
    }

    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| BuildError::Failed {
            what: what().into(),
            source: Box::new(e),
        })
    }
}

/// `return Err(BuildError::Invalid(format!(...)))`.
macro_rules! bail {
    ($($t:tt)*) => {
        return Err($crate::build::BuildError::Invalid(format!($($t)*)))
    };
}
pub(crate) use bail;

/// `BuildError::Invalid(format!(...))`.
macro_rules! invalid {
    ($($t:tt)*) => {
        $crate::build::BuildError::Invalid(format!($($t)*))
    };
}
pub(crate) use invalid;

//! The one error type of this crate.

use oci_spec::image::Digest;
use std::path::PathBuf;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `oci-rs-image`.
///
/// Variants name the object concerned (digest, path, reference, media type) and carry the
/// underlying cause as `source`, so a message reads well on its own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A digest string is not a valid `algorithm:encoded` pair.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest {
        /// What was given.
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// The digest algorithm is valid but not one this crate can compute (sha256, sha512).
    #[error("unsupported digest algorithm {algorithm:?} in {digest}")]
    UnsupportedAlgorithm {
        /// The algorithm name.
        algorithm: String,
        /// The whole digest.
        digest: String,
    },
    /// Content hashed to another digest than the one expected.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest the descriptor promised.
        expected: Digest,
        /// The digest of the bytes actually read.
        actual: Digest,
    },
    /// Content was shorter than the descriptor's size (longer is [`Error::SizeExceeded`]).
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The digest of the object.
        digest: Digest,
        /// The size promised.
        expected: u64,
        /// The size read.
        actual: u64,
    },
    /// Content went past the descriptor's size.
    #[error("content of {digest} exceeds its declared size of {expected} bytes")]
    SizeExceeded {
        /// The digest of the object.
        digest: Digest,
        /// The size promised.
        expected: u64,
    },
    /// A document (manifest, index, config, JSON answer) is larger than allowed.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was being read.
        what: &'static str,
        /// Its size, or the bytes read before giving up.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The `mediaType` inside a document contradicts the declared one (CVE-2021-41190).
    #[error("media type mismatch: declared {declared}, document says {found}")]
    MediaTypeMismatch {
        /// The media type from the descriptor or Content-Type.
        declared: String,
        /// The one in the document.
        found: String,
    },
    /// A document is ambiguous: it has the fields of both a manifest and an index.
    #[error("ambiguous document: {reason}")]
    AmbiguousManifest {
        /// What makes it ambiguous.
        reason: String,
    },
    /// Docker image manifest schema 1 is not supported.
    #[error("docker manifest schema 1 ({media_type}) is not supported; re-push the image with schema 2 or OCI")]
    Schema1 {
        /// The media type that announced it.
        media_type: String,
    },
    /// A media type that is not a manifest or index where one was needed.
    #[error("unsupported media type {media_type:?} for {what}")]
    UnsupportedMediaType {
        /// The media type.
        media_type: String,
        /// What was expected.
        what: &'static str,
    },
    /// A JSON document could not be parsed.
    #[error("invalid {what}")]
    InvalidJson {
        /// What was being parsed.
        what: &'static str,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// An image reference could not be parsed.
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference {
        /// What was given.
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// No entry of an index matches the wanted platform.
    #[error("no image for platform {wanted} (available: {})", if available.is_empty() { "none".to_owned() } else { available.join(", ") })]
    NoMatchingPlatform {
        /// The wanted platform, as `os/arch[/variant]`.
        wanted: String,
        /// The platforms the index offers.
        available: Vec<String>,
    },
    /// A platform string could not be parsed.
    #[error("invalid platform {input:?}: {reason}")]
    InvalidPlatform {
        /// What was given.
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// A blob is not in the store.
    #[error("blob {digest} not found")]
    BlobNotFound {
        /// Its digest.
        digest: Digest,
    },
    /// A tag or reference name is not in the store.
    #[error("reference {name:?} not found")]
    ReferenceNotFound {
        /// The name asked for.
        name: String,
    },
    /// A tag or reference name is not acceptable.
    #[error("invalid reference name {name:?}: {reason}")]
    InvalidReferenceName {
        /// The name.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// An OCI image layout on disk is not valid.
    #[error("invalid OCI layout at {}: {reason}", path.display())]
    InvalidLayout {
        /// The layout directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An archive (docker-archive or oci-archive) is not valid.
    #[error("invalid archive: {reason}")]
    InvalidArchive {
        /// What is wrong.
        reason: String,
    },
    /// An image configuration or layer list is not consistent.
    #[error("invalid image: {reason}")]
    InvalidImage {
        /// What is wrong.
        reason: String,
    },
    /// A health check docker would refuse (an unknown test kind, an interval under 1 ms).
    #[error("invalid health check: {reason}")]
    InvalidHealthcheck {
        /// What is wrong.
        reason: String,
    },
    /// An I/O error on a path.
    #[error("i/o error on {}", path.display())]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An I/O error on a stream (no path concerned).
    #[error("i/o error on a stream")]
    Stream(#[from] std::io::Error),
    /// oci-spec's builders refused a document this crate put together.
    #[error("could not build {what}")]
    Build {
        /// What was being built (`index.json`, `a manifest`).
        what: &'static str,
        /// The builder's error.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// A task this crate spawned on the tokio runtime panicked or was cancelled.
    #[error("the {what} task did not finish")]
    Task {
        /// What the task was doing.
        what: &'static str,
        /// Why it did not finish.
        #[source]
        source: tokio::task::JoinError,
    },
    /// An error from a store or transport of another crate (a registry client), kept whole:
    /// its message and causes are the foreign error's own, so nothing is said twice, and
    /// [`Error::is_not_found`] holds when the foreign error said so.
    #[error(transparent)]
    Foreign(ForeignError),
}

/// A foreign error carried by [`Error::Foreign`]. Its `Display` and `source()` are the
/// foreign error's; [`ForeignError::get_ref`] and [`ForeignError::into_inner`] give it back
/// for downcasting.
#[derive(Debug)]
pub struct ForeignError {
    error: Box<dyn std::error::Error + Send + Sync + 'static>,
    not_found: bool,
    transient: bool,
}

impl ForeignError {
    /// The foreign error.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.error
    }

    /// The foreign error, owned.
    pub fn into_inner(self) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self.error
    }

    /// Whether the foreign error said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.not_found
    }

    /// Whether the foreign error said the operation may succeed if done again.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

impl std::fmt::Display for ForeignError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for ForeignError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Carries a foreign error (for implementations of this crate's traits in other crates):
    /// its own message says what failed on which object.
    pub fn foreign(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Error::Foreign(ForeignError {
            error: error.into(),
            not_found: false,
            transient: false,
        })
    }

    /// [`Error::foreign`] for a foreign error that says the object does not exist.
    pub fn foreign_not_found(
        error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error::Foreign(ForeignError {
            error: error.into(),
            not_found: true,
            transient: false,
        })
    }

    /// [`Error::foreign`] for a foreign error that may not happen again: a connection that
    /// broke, a server that went away or answered "try later". [`copy`](crate::copy())
    /// writes a blob again from the start (at most [`BLOB_ATTEMPTS`](crate::BLOB_ATTEMPTS)
    /// times) when its destination fails so.
    pub fn foreign_transient(
        error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error::Foreign(ForeignError {
            error: error.into(),
            not_found: false,
            transient: true,
        })
    }

    /// True when a foreign store or transport said the operation may succeed if done again
    /// ([`Error::foreign_transient`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Foreign(f) if f.transient)
    }

    /// True when the object asked for does not exist (blob, reference, file).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::BlobNotFound { .. } | Error::ReferenceNotFound { .. } => true,
            Error::Foreign(f) => f.not_found,
            Error::Io { source, .. } | Error::Stream(source) => {
                source.kind() == std::io::ErrorKind::NotFound
            }
            _ => false,
        }
    }

    /// True when the content did not match what its descriptor promised.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            Error::DigestMismatch { .. } | Error::SizeMismatch { .. } | Error::SizeExceeded { .. }
        )
    }

    /// Turns a verification error into an `io::Error` carrying it, for `AsyncRead` impls.
    pub(crate) fn into_io(self) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, self)
    }

    /// Recovers this crate's error from an `io::Error` made by `Error::into_io`, or wraps it.
    pub fn from_io(err: std::io::Error) -> Self {
        if err.get_ref().is_some_and(|e| e.is::<Error>()) {
            if let Some(inner) = err.into_inner() {
                if let Ok(e) = inner.downcast::<Error>() {
                    return *e;
                }
            }
            // Unreachable in practice: the check above proved the inner error is ours.
            return Error::Stream(std::io::Error::other("lost inner error"));
        }
        Error::Stream(err)
    }
}

/// An error and its causes in one line, `what failed: why: why deeper`. This crate's errors
/// (and those of the crates built on it) say only what failed in their Display and give
/// the cause from `source()`; this is the text for a log line or a status that outlives
/// the error.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("registry answered 404 for http://r/v2/a/manifests/b")]
    struct NotThere(#[source] std::io::Error);

    #[test]
    fn a_foreign_error_reads_as_its_own_and_keeps_its_kind() {
        let inner = || NotThere(std::io::Error::other("deeper"));
        let e = Error::foreign_not_found(inner());
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), inner().to_string());
        // Its cause is the foreign error's cause, so a chain does not repeat the message.
        assert_eq!(chain(&e), format!("{}: deeper", inner()));
        let Error::Foreign(f) = Error::foreign(inner()) else {
            panic!("not foreign");
        };
        assert!(!f.is_not_found());
        assert!(f.into_inner().downcast::<NotThere>().is_ok());
    }
}

//! The one error type of this crate.

use std::path::PathBuf;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong applying, diffing or snapshotting layers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tar entry's path or link target is refused (`..`, or not representable).
    #[error("unsafe path {path:?} in layer: {reason}")]
    UnsafePath {
        /// The entry's path as found in the tar.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// A tar entry cannot be applied (unsupported type, inconsistent headers).
    #[error("invalid layer entry {path:?}: {reason}")]
    InvalidEntry {
        /// The entry's path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A system call on a path inside the root failed.
    #[error("{op} {}", path.display())]
    Fs {
        /// What was being done (`mkdir`, `open`, `chown`, ...).
        op: &'static str,
        /// The path inside the root.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The layer's media type is not a layer type this crate handles.
    #[error("unsupported layer media type {0:?}")]
    UnsupportedMediaType(String),
    /// The stream's magic bytes contradict its media type.
    #[error("layer announced as {declared} but its first bytes look like {found}")]
    CompressionMismatch {
        /// What the media type said.
        declared: &'static str,
        /// What the bytes say.
        found: &'static str,
    },
    /// The uncompressed tar did not hash to the expected DiffID.
    #[error("diff ID mismatch: expected {expected}, got {actual}")]
    DiffIdMismatch {
        /// The DiffID from the image config.
        expected: String,
        /// The DiffID computed.
        actual: String,
    },
    /// Reading the layer stream failed (truncated, corrupt compression, bad tar); `entries`
    /// entries had been applied before.
    #[error("layer stream failed after {entries} entries")]
    Stream {
        /// Entries applied before the failure.
        entries: u64,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Applying entry number `index` (`path`) failed; the entries before it were applied.
    #[error("applying entry {index} ({path:?}) failed")]
    Apply {
        /// The entry's index in the tar.
        index: u64,
        /// The entry's path.
        path: String,
        /// The cause.
        #[source]
        source: Box<Error>,
    },
    /// The layer would write more bytes than [`ApplyOptions::max_bytes`](crate::ApplyOptions)
    /// allows (file sizes as declared, holes of sparse files included).
    #[error("layer exceeds the limit of {limit} bytes ({path:?} would bring it to {would_be})")]
    TooLarge {
        /// The limit.
        limit: u64,
        /// The entry that went over it.
        path: String,
        /// The total with that entry.
        would_be: u64,
    },
    /// No image in the [`ImageStore`](crate::ImageStore) by this name, id or id prefix.
    #[error("No such image: {0}")]
    NoSuchImage(String),
    /// An image id prefix that more than one image's id starts with.
    #[error("ambiguous image id prefix {prefix}: it matches {matches}")]
    AmbiguousImage {
        /// The prefix given.
        prefix: String,
        /// The short ids it matches, comma-separated.
        matches: String,
    },
    /// Removing an image is refused (docker's "conflict").
    #[error("conflict: unable to remove {image}: {reason}")]
    Conflict {
        /// The image as named.
        image: String,
        /// Why.
        reason: String,
    },
    /// Removing an image that a container was made from, without force.
    #[error("conflict: unable to remove {image}: container {} is using it (remove the container, or force)", container.get(..12).unwrap_or(container))]
    ImageInUse {
        /// The image as named.
        image: String,
        /// The container's snapshot id.
        container: String,
    },
    /// A name stands for another kind of document than the operation needs.
    #[error("{image} is not {expected}")]
    WrongKind {
        /// The image as named.
        image: String,
        /// What it should be (`an image`, `a manifest list`).
        expected: &'static str,
    },
    /// The image a name stands for here is another platform's than the one asked for, and
    /// no registry was given to fetch the right one.
    #[error("{image} is an image for {found}, not {wanted}")]
    WrongPlatform {
        /// The image as named.
        image: String,
        /// The platform asked for.
        wanted: String,
        /// The image's platform.
        found: String,
    },
    /// An image whose documents contradict each other.
    #[error("invalid image {image}: {reason}")]
    InvalidImage {
        /// The image as named.
        image: String,
        /// What is wrong.
        reason: String,
    },
    /// A Dockerfile-style change (`commit -c`, `import -c`) that is not one.
    #[error("invalid change {change:?}: {reason}")]
    InvalidChange {
        /// The change.
        change: String,
        /// What is wrong.
        reason: String,
    },
    /// `manifest create` of a list that exists, without amending it.
    #[error("refusing to replace {0}: it exists (amend it instead)")]
    ListExists(String),
    /// An image that is not an entry of the manifest list.
    #[error("{image} is not in the manifest list {list}")]
    NotInList {
        /// The image.
        image: String,
        /// The list.
        list: String,
    },
    /// A `--pull` policy that is not one.
    #[error("invalid pull policy {0:?}: expected missing, always or never")]
    InvalidPullPolicy(String),
    /// An `images --filter` term this store does not know.
    #[error("unsupported filter {0:?} (dangling=BOOL, reference=PATTERN)")]
    InvalidFilter(String),
    /// An archive without any image.
    #[error("{} holds no image", .0.display())]
    EmptyArchive(PathBuf),
    /// A pull, push or load of `reference` failed.
    #[error("{what} of {reference} failed")]
    Transfer {
        /// `pull`, `push` or `load`.
        what: &'static str,
        /// The reference (or archive tag).
        reference: String,
        /// The cause.
        #[source]
        source: Box<Error>,
    },
    /// An error from `oci-rs-image` (digests, stores).
    #[error(transparent)]
    Image(#[from] oci_rs_image::Error),
    /// An I/O error without a path.
    #[error("i/o error on a stream")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// True when an object asked for does not exist (a blob missing from its source).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Image(e) if e.is_not_found())
    }

    /// Wraps a system-call error with the operation and path.
    pub fn fs(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: impl Into<std::io::Error>,
    ) -> Self {
        Error::Fs {
            op,
            path: path.into(),
            source: source.into(),
        }
    }
}

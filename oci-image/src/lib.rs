//! # oci-rs-image
//!
//! OCI and Docker container images as Rust values and as content on disk: digests that are
//! verified while they stream, manifests and indexes that keep their exact bytes, references
//! with docker's normalisation, platform selection from multi-arch indexes, the OCI image
//! layout as a content store, `docker save` and OCI archives, and the traits that let every
//! piece plug into every other ([`BlobStore`], [`ReferenceStore`], [`ImageSource`],
//! [`ImageDestination`]).
//!
//! The spec types themselves come from [`oci_spec`]; this crate adds behaviour.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> oci_rs_image::Result<()> {
//! use oci_rs_image::{BlobStore, BlobStoreExt, MemoryStore, Manifest};
//!
//! let store = MemoryStore::new();
//! let info = store.put_bytes(bytes::Bytes::from_static(b"{}")).await?;
//! assert_eq!(info.size, 2);
//!
//! let index = br#"{"schemaVersion":2,"manifests":[]}"#;
//! let m = Manifest::parse(&index[..], None)?;
//! assert!(m.kind().is_index());
//! # Ok(())
//! # }
//! ```
//!
//! ## Guarantees
//!
//! - Every blob handed out by a store or source is wrapped in a [`VerifyingReader`]: reading it
//!   to the end without an error proves the size and digest matched.
//! - A digest that reaches a path or URL has been validated (sha256 or sha512, lowercase hex).
//! - Manifests are capped at 4 MiB, Docker schema 1 is refused, and a document whose
//!   `mediaType` contradicts the declared type, or that is both a manifest and an index, is
//!   refused (CVE-2021-41190).
//! - Stores make a blob visible only after its size and digest were checked.
//!
//! ## Async, and what needs tokio
//!
//! Streams are tokio's `AsyncRead`/`AsyncWrite`. Every `async fn` that touches files
//! ([`OciLayout`], the archives, [`copy()`] into or out of them, [`write_layer`]'s parallel
//! gzip) does its blocking work with `tokio::task::spawn_blocking`, so it must be called inside
//! a tokio runtime; a current-thread one is enough. The synchronous parts (parsing manifests,
//! digests, references, platforms) need none.
//!
//! ## Cargo features
//!
//! - `testing`: the `testing` module, conformance tests a third-party store or transfer end runs in its
//!   own tests.
//! - `zstd` (default): writing zstd layers ([`Compression::Zstd`]). Its C library is the
//!   slowest part of a clean build; without it a zstd layer is an
//!   [`Error::UnsupportedMediaType`].

// Private modules, one public path per item: everything public is named at the crate root,
// except the media type constants (`media`), the store adapter helpers (`adapter`) and the
// conformance suite (`testing`), which are namespaces of their own.
mod archive;
mod build;
mod compression;
mod copy;
mod digest;
mod error;
mod healthcheck;
mod inspect;
mod layout;
mod lease;
mod manifest;
pub mod media;
mod memory;
mod output;
mod platform;
mod reference;
mod store;
mod targuard;
#[cfg(feature = "testing")]
pub mod testing;
mod text;
mod time;
mod transfer;
mod verify;

pub use archive::{ArchiveFormat, ArchiveSource, ArchiveWriter, DockerManifestEntry};
pub use build::{
    read_config, read_config_json, read_small_blob, write_layer, ImageBuilder, GZIP_BLOCK,
    MAX_CONFIG_SIZE,
};
pub use compression::Compression;
pub use copy::{
    copy, copy_without_finish, with_progress, CopyEvent, CopyOptions, CopyReport, PlatformFilter,
    ProgressFn, Progressed, BLOB_ATTEMPTS,
};
pub use digest::{
    check_supported as check_digest_algorithm, digest_of, parse_digest,
    path_components as digest_path_components, sha256, verify_bytes, Hasher,
};
pub use error::{chain, Error, ForeignError, Result};
pub use healthcheck::{DockerExtras, Healthcheck};
pub use inspect::{DescriptorView, ImageInspect, ManifestEntry, ManifestInspect, RootFsView};
pub use layout::{
    ref_name, GcReport, OciLayout, CONTAINERD_IMAGE_NAME, OCI_LAYOUT_CONTENT, REF_NAME,
};
pub use lease::{Lease, LEASES_DIR};
pub use manifest::{
    descriptor, digest_like, index_from_json, index_to_json, Manifest, ManifestBody, ManifestKind,
    MAX_MANIFEST_SIZE,
};
pub use memory::MemoryStore;
pub use output::OutputFile;
pub use platform::{
    is_attestation, normalize as normalize_platform, platform_string, select as select_platform,
    PlatformSpec,
};
pub use reference::{valid_path_component, valid_tag, ImageReference, DOCKER_HUB_API_HOST};
pub use store::{
    adapter, reachable, validate_ref_name, verified, BlobInfo, BlobReader, BlobStore, BlobStoreExt,
    BlobWriter, Expected, ReferenceStore,
};
pub use targuard::{TarGuard, MAX_TAR_RECORD};
pub use text::{excerpt, printable, wildcard};
pub use time::{now_ns, parse_rfc3339, rfc3339};
pub use transfer::{ImageDestination, ImageSource, ManifestRef, Remote, UrlSource};
pub use verify::{HashingReader, VerifyingReader};

pub use oci_spec;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

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
//! ## Cargo features
//!
//! - `testing`: the `testing` module, conformance tests a third-party store or transfer end runs in its
//!   own tests.
//! - `zstd` (default): writing zstd layers ([`media::Compression::Zstd`]). Its C library is the
//!   slowest part of a clean build; without it a zstd layer is an
//!   [`Error::UnsupportedMediaType`].

pub mod archive;
pub mod build;
pub mod copy;
pub mod digest;
pub mod error;
pub mod inspect;
pub mod layout;
pub mod lease;
pub mod manifest;
pub mod media;
pub mod memory;
pub mod output;
pub mod platform;
pub mod reference;
pub mod store;
pub mod targuard;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transfer;
pub mod verify;

pub use archive::{ArchiveFormat, ArchiveSource, ArchiveWriter};
pub use build::ImageBuilder;
pub use copy::{copy, CopyEvent, CopyOptions, CopyReport, PlatformFilter};
pub use digest::{parse_digest, sha256, Hasher};
pub use error::{chain, Error, Result};
pub use inspect::{ImageInspect, ManifestInspect};
pub use layout::{GcReport, OciLayout};
pub use manifest::{descriptor, Manifest, ManifestBody, ManifestKind, MAX_MANIFEST_SIZE};
pub use memory::MemoryStore;
pub use output::OutputFile;
pub use platform::PlatformSpec;
pub use reference::ImageReference;
pub use store::{
    BlobInfo, BlobReader, BlobStore, BlobStoreExt, BlobWriter, Expected, ReferenceStore,
};
pub use targuard::{TarGuard, MAX_TAR_RECORD};
pub use transfer::{ImageDestination, ImageSource, ManifestRef};
pub use verify::{HashingReader, VerifyingReader};

pub use oci_spec;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

//! # oci-rs-layer
//!
//! Layers of OCI and Docker images applied to directories, safely, and trees turned back into
//! layers; overlay snapshots; and on them [`ImageStore`], the local image store of a
//! docker-like program.
//!
//! ## The image store
//!
//! [`ImageStore`] keeps images on a data directory: an OCI layout under `DATA/images` whose
//! names are full references ([`store_name`]), the unpacked layers and containers'
//! filesystems under `DATA/snapshots` ([`Snapshotter`]), and the build cache. It does what
//! `docker pull`, `push`, `images`, `tag`, `rmi`, `history`, `inspect`, `image prune`, `save`,
//! `load`, `import`, `commit` and `export` do. Pulls and pushes go through
//! [`oci_rs_image::Remote`], which the `Client` of
//! [oci-rs-registry-client](https://docs.rs/oci-rs-registry-client) implements: this crate
//! holds no registry code, and the example takes the registry as a `&dyn Remote`.
//!
//! ```no_run
//! # async fn demo(
//! #     registry: &dyn oci_rs_image::Remote,
//! #     container_id: &str,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use oci_rs_image::CopyOptions;
//! use oci_rs_layer::{CommitOptions, ImageStore};
//!
//! let store = ImageStore::open("/var/lib/my-tool".as_ref()).await?;
//!
//! // Pulled and unpacked into snapshots in one pass, each blob read once.
//! let pulled = store
//!     .pull(registry, "busybox:latest", &CopyOptions::default(), true)
//!     .await?;
//! println!("{}", pulled.lines().join("\n")); // docker's "Pull complete" lines
//!
//! store.tag("busybox", "my-busybox:1").await?;
//! for row in store.list().await? {
//!     println!("{}:{} {} {} bytes", row.repository, row.tag, row.id, row.size);
//! }
//!
//! // A container's changes as a new layer on its image. The snapshot is the container's:
//! // oci-rs-runtime's container store makes one per container, named by its id.
//! let how = CommitOptions {
//!     message: Some("configured".into()),
//!     changes: vec!["ENV MODE=production".into()],
//!     ..CommitOptions::default()
//! };
//! let image = store.commit(container_id, Some("my-busybox:2"), &how).await?;
//! println!("{}", image.digest());
//! # Ok(())
//! # }
//! ```
//!
//! ## Layers
//!
//! Layers of OCI and Docker images applied to directories, safely: gzip, zstd or plain tars,
//! OCI whiteouts (`.wh.NAME`) and opaque directories (`.wh..wh..opq`), every file type a layer
//! can hold, ownership (as root, rootless with umoci's `user.rootlesscontainers` xattr, or
//! through user-namespace id maps), xattrs, modes and mtimes; the DiffID computed on the same
//! pass. Trees diff back into layers ([`diff()`], [`diff_overlay`], [`export`], [`flatten`]),
//! and [`Snapshotter`] unpacks each layer once and mounts images as overlayfs.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use oci_rs_layer::{EntryHeader, EntryType, TarWriter};
//!
//! // A layer: a tar holding one file (made here with the crate's own tar writer).
//! let mut tar = TarWriter::new(Vec::new());
//! let mut file = EntryHeader::new(b"etc/motd".to_vec(), EntryType::Regular);
//! file.size = 6;
//! tar.file(&file, &mut &b"hello\n"[..]).await?;
//! let tar = tar.finish().await?;
//!
//! // Applied to a directory: every path resolved inside it, the DiffID computed on the way.
//! let root = tempfile::tempdir()?;
//! let media_type = "application/vnd.oci.image.layer.v1.tar";
//! let opts = oci_rs_layer::ApplyOptions::default();
//! let report = oci_rs_layer::apply(root.path(), &tar[..], media_type, &opts).await?;
//! assert_eq!(std::fs::read_to_string(root.path().join("etc/motd"))?, "hello\n");
//! assert_eq!(report.diff_id, Some(oci_rs_image::sha256(&tar)));
//! # Ok(())
//! # }
//! ```
//!
//! ## Safety by construction
//!
//! Nothing a layer holds can reach outside the directory it is applied to. Every operation is
//! made relative to a descriptor of a parent directory that `openat2(RESOLVE_IN_ROOT)` found
//! inside the root, and the last component is never followed (see [`Root`]). Entries with
//! `..` components are refused; absolute paths and symlinks resolve as if the root were `/`.
//! xattrs other than `user.*` (`trusted.overlay.*`, `security.*`) are refused unless the
//! caller allows them.
//!
//! ## Async, and what needs tokio
//!
//! Applying, diffing, the [`Snapshotter`] and the [`ImageStore`] run on tokio (`tokio::fs`,
//! `spawn_blocking`): call them inside a tokio runtime; a current-thread one is enough.
//!
//! ## Cargo features
//!
//! - `zstd` (default): reading zstd layers (and oci-rs-image's `zstd`, writing them). Without
//!   it a zstd layer is an [`Error::UnsupportedMediaType`].
//!
//! ## Crates and how they compose
//!
//! ```text
//! oci-rs-image                  image models, content stores; the traits Remote, UrlSource,
//! |                             ImageSource and ImageDestination
//! +-- oci-rs-layer              layers applied and diffed, overlay snapshots, ImageStore
//! |   +-- oci-rs-runtime        the runtime; with `engine`: containers, volumes, builds
//! +-- oci-rs-registry-client    registries; its Client is a Remote and a UrlSource
//! ```
//!
//! Each crate depends only on those above it. This crate reads images through
//! [`ImageSource`](oci_rs_image::ImageSource) and, in the [`ImageStore`], pulls and pushes
//! through [`Remote`](oci_rs_image::Remote), so it never depends on the registry client;
//! oci-rs-runtime depends on it because containers run on its snapshots and `commit` and
//! builds diff their changes into layers through it.

// Private modules, one public path per item: everything public is named at the crate root.
mod apply;
mod diff;
mod error;
mod images;
mod pathset;
mod pull;
mod root;
mod snapshot;
mod sparse;
mod tarw;

pub use apply::{
    apply, apply_file, apply_tar, decompress, rootless_xattr, ApplyOptions, ApplyReport, Devices,
    IdRange, Ownership, DEFAULT_MAX_LAYER_BYTES, MAX_PATH, MTIME_RANGE, OPAQUE_MARKER,
    ROOTLESS_XATTR, WHITEOUT_PREFIX,
};
pub use diff::{
    diff, diff_overlay, diff_to_file, diff_to_store, export, export_entry, DiffOptions, DiffReport,
};
pub use error::{Error, Result};
pub use images::{
    apply_change, creation_time, store_name, CacheEntry, CommitOptions, Found, HistoryRow,
    ImageChange, ImageFilter, ImageObserver, ImageRow, ImageStore, Loaded, PullPolicy, PullReport,
    Removed, RunnableImage, ShortNames,
};
pub use oci_spec;
pub use pull::{pull_and_unpack, PullUnpackReport};
pub use root::{clean as clean_path, empty_dir, kind_at, list_dir, open_beneath, remove_all, Root};
pub use snapshot::{
    flatten, mount_overlay, private_dir, Change, ChangeKind, Mount, MountKind, SnapshotInfo,
    Snapshotter, UnpackReport,
};
pub use tarw::{EntryHeader, EntryType, TarWriter};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

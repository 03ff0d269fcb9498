//! The module of [`apply()`], whose docs say what it is for (the module is private).

use crate::error::{Error, Result};
use crate::root::{clean, kind_at, remove_all, Root};
use futures_util::StreamExt;
use oci_rs_image::oci_spec::image::Digest;
use oci_rs_image::HashingReader;
use oci_rs_image::{media::layer_compression, Compression};
use rustix::fs::{
    fchmod, fchown, futimens, linkat, mkdirat, mknodat, openat, symlinkat, AtFlags, FileType, Gid,
    Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio_tar::{Archive, EntryType};

/// The prefix of whiteout files.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The name of the opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The xattr in which rootless mode keeps ownership (umoci's format).
pub const ROOTLESS_XATTR: &str = "user.rootlesscontainers";

/// What to do with file ownership.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Ownership {
    /// `chown` as root, [`Ownership::Rootless`] otherwise.
    #[default]
    Auto,
    /// `chown` to the uid/gid of the tar (needs root).
    Preserve,
    /// No `chown`: files belong to the caller, and a uid/gid other than 0 is kept in the
    /// `user.rootlesscontainers` xattr as umoci does.
    Rootless,
    /// `chown` through user-namespace maps (container id → host id).
    Map {
        /// uid ranges.
        uids: Vec<IdRange>,
        /// gid ranges.
        gids: Vec<IdRange>,
    },
}

/// One line of a uid or gid map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id inside the container.
    pub container: u32,
    /// First id on the host.
    pub host: u32,
    /// How many ids.
    pub size: u32,
}

fn map_id(ranges: &[IdRange], id: u32) -> Option<u32> {
    ranges
        .iter()
        .find(|r| id >= r.container && id - r.container < r.size)
        .map(|r| r.host + (id - r.container))
}

/// What to do with device nodes that cannot be created (not root).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Devices {
    /// Create them; skip (and report) when the kernel refuses.
    #[default]
    CreateOrSkip,
    /// Create them; fail when the kernel refuses.
    Create,
    /// Never create them (reported as skipped).
    Skip,
}

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The DiffID the uncompressed tar must hash to.
    pub diff_id: Option<Digest>,
    /// Ownership handling.
    pub ownership: Ownership,
    /// Device node handling.
    pub devices: Devices,
    /// Durability: one `syncfs` of the filesystem holding `root` once the layer is applied
    /// and verified, so that everything it wrote is on the disk when `apply` returns. One
    /// call rather than an fsync per file, which on ext4 costs a journal commit per file.
    pub sync: bool,
    /// xattr name prefixes applied (default `user.`); others (`trusted.*`, `security.*`) are
    /// refused: skipped and reported, or an error with `fail_on_refused_xattr`.
    pub allowed_xattrs: Vec<String>,
    /// Fail instead of skipping a refused xattr.
    pub fail_on_refused_xattr: bool,
    /// Record whiteouts the way overlayfs reads them instead of deleting: `.wh.NAME` becomes
    /// a 0/0 character device `NAME`, an opaque marker the `trusted.overlay.opaque=y` xattr
    /// on its directory. For unpacking each layer into its own overlay lower directory.
    pub overlay_whiteouts: bool,
    /// The most bytes the layer's files may hold together, as their headers declare them
    /// (a sparse file's holes count; they are created as holes, never written as zeros):
    /// an entry that would go over fails with [`Error::TooLarge`] before anything of it is
    /// written. Default [`DEFAULT_MAX_LAYER_BYTES`]; `None` for no limit.
    pub max_bytes: Option<u64>,
    /// Names are files, not layer markers: `.wh.` entries are written as the files they
    /// name, never read as whiteouts (a copy into a container, `docker cp`).
    pub plain_names: bool,
    /// Drop the setuid and setgid bits of what is written (a copy out of a container onto
    /// a host must not make set-id programs from the container's files).
    pub strip_setid: bool,
    /// Every entry as if its header said this uid and gid, whatever it says (then taken as
    /// [`ApplyOptions::ownership`] says): `docker cp`'s ownership, root's or the container
    /// user's.
    pub owner: Option<(u32, u32)>,
}

/// The longest path of an entry, or target of a link, in bytes (Linux's `PATH_MAX`): what
/// every runtime and tool can reach by path. It also bounds the depth of a tree, and with it
/// the cost of resolving and remembering ancestors.
pub const MAX_PATH: usize = 4096;

/// The default [`ApplyOptions::max_bytes`]: 1 TiB.
pub const DEFAULT_MAX_LAYER_BYTES: u64 = 1 << 40;

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            diff_id: None,
            ownership: Ownership::Auto,
            devices: Devices::CreateOrSkip,
            sync: false,
            allowed_xattrs: vec!["user.".into()],
            fail_on_refused_xattr: false,
            overlay_whiteouts: false,
            max_bytes: Some(DEFAULT_MAX_LAYER_BYTES),
            plain_names: false,
            owner: None,
            strip_setid: false,
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Tar entries processed.
    pub entries: u64,
    /// Bytes of the uncompressed tar.
    pub tar_bytes: u64,
    /// Regular files written.
    pub files: u64,
    /// Bytes of file content written.
    pub file_bytes: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hard links created.
    pub hardlinks: u64,
    /// Whiteouts applied (including those that found nothing).
    pub whiteouts: u64,
    /// Opaque markers applied.
    pub opaque_dirs: u64,
    /// Device nodes and fifos created.
    pub devices: u64,
    /// Device nodes not created, by path.
    pub skipped_devices: Vec<String>,
    /// xattrs refused, as `path: name`.
    pub refused_xattrs: Vec<String>,
    /// The DiffID: sha256 of the uncompressed tar.
    pub diff_id: Option<Digest>,
}

/// Applying a layer (a tar, plain or compressed) onto a directory, with OCI whiteouts.
///
/// Every write goes through [`crate::root::Root`]: nothing outside the root can be
/// created, changed or removed, whatever the tar holds. File contents stream from the
/// decompressor straight into the file; only one buffer is in memory. File system calls are
/// made directly on the calling task (they are short, and going through `spawn_blocking` per
/// call costs more than it saves); run the future on a multi-thread runtime or inside
/// `spawn_blocking` when that matters.
///
/// Applies a layer blob of `media_type` (OCI or Docker layer types; gzip, zstd or plain,
/// checked against the stream's first bytes) onto `root`.
///
/// ```no_run
/// # async fn f() -> oci_rs_layer::Result<()> {
/// let file = tokio::fs::File::open("layer.tar.gz").await?;
/// let report = oci_rs_layer::apply(
///     std::path::Path::new("/tmp/rootfs"),
///     file,
///     "application/vnd.oci.image.layer.v1.tar+gzip",
///     &oci_rs_layer::ApplyOptions::default(),
/// )
/// .await?;
/// println!("{} entries, diff id {:?}", report.entries, report.diff_id);
/// # Ok(()) }
/// ```
pub async fn apply(
    root: &Path,
    reader: impl AsyncRead + Send + Unpin,
    media_type: &str,
    opts: &ApplyOptions,
) -> Result<ApplyReport> {
    let declared = layer_compression(media_type)
        .ok_or_else(|| Error::UnsupportedMediaType(media_type.to_owned()))?;
    let tar = decompress(reader, Some(declared)).await?;
    apply_tar(root, tar, opts).await
}

fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
        _ => "an uncompressed tar",
    }
}

/// Wraps a layer stream in the decompressor it needs. With `declared`, the first bytes must
/// agree with it; without, they decide.
pub async fn decompress<'a>(
    reader: impl AsyncRead + Send + Unpin + 'a,
    declared: Option<Compression>,
) -> Result<Pin<Box<dyn AsyncRead + Send + 'a>>> {
    use async_compression::tokio::bufread::GzipDecoder;
    let mut buf = BufReader::with_capacity(256 * 1024, reader);
    let head = buf.fill_buf().await?;
    let found = Compression::from_magic(head);
    if let Some(d) = declared {
        if d != found && !head.is_empty() {
            return Err(Error::CompressionMismatch {
                declared: compression_name(d),
                found: compression_name(found),
            });
        }
    }
    Ok(match found {
        Compression::Gzip => {
            let mut d = GzipDecoder::new(buf);
            d.multiple_members(true);
            Box::pin(d)
        }
        #[cfg(feature = "zstd")]
        Compression::Zstd => {
            let mut d = async_compression::tokio::bufread::ZstdDecoder::new(buf);
            d.multiple_members(true);
            Box::pin(d)
        }
        // Built without zstd: a clear error, not a tar parse of compressed bytes.
        #[cfg(not(feature = "zstd"))]
        Compression::Zstd => {
            return Err(Error::UnsupportedMediaType(
                "a zstd layer (oci-rs-layer was built without its zstd feature)".into(),
            ))
        }
        _ => Box::pin(buf),
    })
}

/// Applies the layer file `file` (plain, gzip or zstd, told by its first bytes) onto `root`.
pub async fn apply_file(root: &Path, file: &Path, opts: &ApplyOptions) -> Result<ApplyReport> {
    let f = tokio::fs::File::open(file)
        .await
        .map_err(|e| Error::fs("open", file, e))?;
    let tar = decompress(f, None).await?;
    apply_tar(root, tar, opts).await
}

/// Applies an uncompressed layer tar onto `root`.
pub async fn apply_tar(
    root: &Path,
    tar: impl AsyncRead + Send + Unpin,
    opts: &ApplyOptions,
) -> Result<ApplyReport> {
    let root_path = root;
    let root = Root::open(root)?;
    // Long-name and PAX records are held whole by the parser: refuse huge ones first.
    // Old GNU sparse files are taken out of the parser's hands (their holes would be read as
    // zeros); the DiffID is hashed below that, over the layer's own bytes.
    let sparse = crate::sparse::SparseMaps::default();
    let mut archive = Archive::new(crate::sparse::SparseFilter::new(
        HashingReader::new(oci_rs_image::TarGuard::new(tar)),
        sparse.clone(),
    ));
    let mut report = ApplyReport::default();
    let mut st = State {
        root: &root,
        opts,
        ownership: match &opts.ownership {
            Ownership::Auto if rustix::process::geteuid().is_root() => Ownership::Preserve,
            Ownership::Auto => Ownership::Rootless,
            o => o.clone(),
        },
        touched: crate::pathset::PathSet::default(),
        dirs: BTreeMap::new(),
        cache: None,
        buf: vec![0u8; 256 * 1024],
        declared_bytes: 0,
        sparse,
    };
    {
        let mut entries = archive
            .entries()
            .map_err(|source| Error::Stream { entries: 0, source })?;
        while let Some(entry) = entries.next().await {
            let mut entry = entry.map_err(|source| Error::Stream {
                entries: report.entries,
                source,
            })?;
            let raw = match entry.path_bytes() {
                Ok(p) => String::from_utf8_lossy(&p).into_owned(),
                Err(source) => {
                    return Err(Error::Stream {
                        entries: report.entries,
                        source,
                    })
                }
            };
            if let Err(e) = st.entry(&mut entry, &raw, &mut report).await {
                let e = match e {
                    e @ Error::Stream { .. } => e,
                    Error::Io(source) => Error::Stream {
                        entries: report.entries,
                        source,
                    },
                    e => e,
                };
                return Err(Error::Apply {
                    index: report.entries,
                    path: raw,
                    source: Box::new(e),
                });
            }
            report.entries += 1;
        }
    }
    st.finish_dirs()?;
    // The end-of-archive blocks and any padding after them are part of the DiffID.
    let mut rest = archive
        .into_inner()
        .map_err(|_| Error::Stream {
            entries: report.entries,
            source: std::io::Error::other("tar reader still in use"),
        })?
        .into_inner();
    tokio::io::copy(&mut rest, &mut tokio::io::sink())
        .await
        .map_err(|source| Error::Stream {
            entries: report.entries,
            source,
        })?;
    report.tar_bytes = rest.bytes();
    let (diff_id, _) = rest.finish();
    if let Some(want) = &opts.diff_id {
        if want != &diff_id {
            return Err(Error::DiffIdMismatch {
                expected: want.to_string(),
                actual: diff_id.to_string(),
            });
        }
    }
    report.diff_id = Some(diff_id);
    if opts.sync {
        // The root's descriptor is O_PATH, which syncfs refuses: a real one through it.
        let dir = rustix::fs::openat(
            root.fd(),
            ".",
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| Error::fs("open", root_path, e))?;
        rustix::fs::syncfs(&dir).map_err(|e| Error::fs("syncfs", root_path, e))?;
    }
    Ok(report)
}

/// Metadata of one entry.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    /// Seconds and nanoseconds since the epoch, clamped to [`MTIME_RANGE`].
    mtime: (i64, u32),
    xattrs: Vec<(String, Vec<u8>)>,
}

struct State<'a> {
    root: &'a Root,
    opts: &'a ApplyOptions,
    ownership: Ownership,
    /// Paths this layer created, and their ancestors: an opaque marker keeps them.
    touched: crate::pathset::PathSet,
    /// Directories whose mode and mtime are set at the end (after their contents).
    dirs: BTreeMap<PathBuf, (u32, (i64, u32))>,
    /// The parent directory of the previous entry.
    cache: Option<(PathBuf, OwnedFd)>,
    buf: Vec<u8>,
    /// File bytes declared so far (for [`ApplyOptions::max_bytes`]).
    declared_bytes: u64,
    /// The maps of the sparse files the stream's filter rewrote.
    sparse: crate::sparse::SparseMaps,
}

impl State<'_> {
    fn parent(&mut self, rel: &Path) -> Result<BorrowedFd<'_>> {
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let hit = matches!(&self.cache, Some((p, _)) if *p == parent);
        if !hit {
            let (fd, _) = self.root.parent_of(rel)?;
            self.cache = Some((parent, fd));
        }
        match &self.cache {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => Err(Error::Io(std::io::Error::other("parent cache lost"))),
        }
    }

    fn touch(&mut self, rel: &Path) {
        self.touched.insert(rel);
    }

    async fn entry<R: AsyncRead + Unpin + Send>(
        &mut self,
        e: &mut tokio_tar::Entry<Archive<R>>,
        raw: &str,
        report: &mut ApplyReport,
    ) -> Result<()> {
        let kind = e.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }
        let rel = clean(raw)?;
        if rel.as_os_str().len() > MAX_PATH {
            return Err(bad(
                raw,
                &format!("a path of {} bytes: over {MAX_PATH}", rel.as_os_str().len()),
            ));
        }
        let mut xattrs = Vec::new();
        let ustar_size = e.header().raw_entry_size().unwrap_or(0);
        let (mut uid, mut gid) = (e.header().uid().unwrap_or(0), e.header().gid().unwrap_or(0));
        let mut mtime = (header_mtime(e.header()), 0u32);
        if let Some(pax) = e.pax_extensions().await? {
            for ext in pax {
                let ext = ext?;
                let key = ext.key().map_err(|_| Error::InvalidEntry {
                    path: raw.to_owned(),
                    reason: "PAX key is not UTF-8".into(),
                })?;
                let num = || {
                    ext.value()
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                        .ok_or_else(|| Error::InvalidEntry {
                            path: raw.to_owned(),
                            reason: format!("PAX {key} is not a number"),
                        })
                };
                match key {
                    "size" => {
                        let pax_size = num()?;
                        if ustar_size != 0 && ustar_size != pax_size {
                            return Err(Error::InvalidEntry {
                                path: raw.to_owned(),
                                reason: format!(
                                    "PAX size {pax_size} disagrees with the header's {ustar_size}"
                                ),
                            });
                        }
                    }
                    "uid" => uid = num()?,
                    "gid" => gid = num()?,
                    "mtime" => {
                        mtime = ext
                            .value()
                            .ok()
                            .and_then(pax_time)
                            .ok_or_else(|| bad(raw, "PAX mtime is not a time"))?;
                    }
                    k => {
                        if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                            xattrs.push((name.to_owned(), ext.value_bytes().to_vec()));
                        }
                    }
                }
            }
        }
        if rel.as_os_str().is_empty() {
            // The root itself (`./`): its metadata is the caller's business.
            return Ok(());
        }
        let setid = if self.opts.strip_setid { 0o6000 } else { 0 };
        let meta = Meta {
            mode: e.header().mode().unwrap_or(0o644) & 0o7777 & !setid,
            uid: match self.opts.owner {
                Some((u, _)) => u,
                None => u32::try_from(uid).map_err(|_| bad(raw, "uid out of range"))?,
            },
            gid: match self.opts.owner {
                Some((_, g)) => g,
                None => u32::try_from(gid).map_err(|_| bad(raw, "gid out of range"))?,
            },
            mtime: (
                mtime.0.clamp(*MTIME_RANGE.start(), *MTIME_RANGE.end()),
                mtime.1,
            ),
            xattrs,
        };
        // A cached parent below this path may be replaced by this entry.
        if matches!(&self.cache, Some((p, _)) if p.starts_with(&rel)) {
            self.cache = None;
        }
        let name = rel.file_name().unwrap_or_default().to_owned();
        let name_bytes = name.as_bytes();
        if !self.opts.plain_names && name_bytes.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            self.cache = None;
            return self.whiteout(&rel, raw, report);
        }
        let result = match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(e, &rel, &meta, report).await
            }
            EntryType::Directory => self.dir(&rel, &meta, report),
            EntryType::Symlink => {
                let target = e
                    .link_name_bytes()?
                    .ok_or_else(|| bad(raw, "symlink without a target"))?
                    .into_owned();
                if target.len() > MAX_PATH {
                    return Err(bad(raw, &format!("a link target over {MAX_PATH} bytes")));
                }
                self.symlink(&rel, &target, &meta, report)
            }
            EntryType::Link => {
                let target = e
                    .link_name_bytes()?
                    .ok_or_else(|| bad(raw, "hard link without a target"))?;
                let target = clean(&String::from_utf8_lossy(&target))?;
                self.hardlink(&rel, &target, report)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let dev = rustix::fs::makedev(
                    e.header().device_major().ok().flatten().unwrap_or(0),
                    e.header().device_minor().ok().flatten().unwrap_or(0),
                );
                let ft = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                self.node(&rel, ft, dev, &meta, raw, report)
            }
            other => Err(bad(raw, &format!("unsupported entry type {other:?}"))),
        };
        if !matches!(
            kind,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse
        ) {
            self.cache = None;
        }
        result?;
        self.touch(&rel);
        Ok(())
    }

    fn whiteout(&mut self, rel: &Path, raw: &str, report: &mut ApplyReport) -> Result<()> {
        let name = rel.file_name().unwrap_or_default().as_bytes();
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        if self.opts.overlay_whiteouts {
            return self.overlay_whiteout(&parent, name, raw, report);
        }
        if name == OPAQUE_MARKER.as_bytes() {
            report.opaque_dirs += 1;
            let dir = match self.root.open_dir(&parent) {
                Ok(d) => d,
                Err(Error::Fs { source, .. })
                    if source.raw_os_error() == Some(Errno::NOENT.raw_os_error()) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            self.clear_lower(dir.as_fd(), &parent)?;
            return Ok(());
        }
        let Some(target) = whiteout_target(name, raw)? else {
            return Ok(());
        };
        report.whiteouts += 1;
        let target_rel = parent.join(OsStr::from_bytes(target));
        // A whiteout only hides lower layers' files, not this layer's.
        if self.touched.contains(&target_rel) {
            return Ok(());
        }
        let dir = match self.root.open_dir(&parent) {
            Ok(d) => d,
            Err(Error::Fs { source, .. }) if matches!(source.raw_os_error(), Some(n) if n == Errno::NOENT.raw_os_error() || n == Errno::NOTDIR.raw_os_error()) => {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        remove_all(dir.as_fd(), OsStr::from_bytes(target))
            .map_err(|e| Error::fs("remove", &target_rel, e))?;
        Ok(())
    }

    fn overlay_whiteout(
        &mut self,
        parent: &Path,
        name: &[u8],
        raw: &str,
        report: &mut ApplyReport,
    ) -> Result<()> {
        self.root.mkdir_all(parent)?;
        if name == OPAQUE_MARKER.as_bytes() {
            let fd = self
                .root
                .resolve(parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC)?;
            rustix::fs::fsetxattr(&fd, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                .map_err(|e| Error::fs("setxattr", parent, e))?;
            report.opaque_dirs += 1;
            return Ok(());
        }
        let Some(target) = whiteout_target(name, raw)? else {
            return Ok(());
        };
        let target_rel = parent.join(OsStr::from_bytes(target));
        let dir = self.root.open_dir(parent)?;
        Self::make_room(dir.as_fd(), OsStr::from_bytes(target), &target_rel, false)?;
        mknodat(
            &dir,
            OsStr::from_bytes(target),
            FileType::CharacterDevice,
            Mode::empty(),
            0,
        )
        .map_err(|e| Error::fs("mknod whiteout", &target_rel, e))?;
        report.whiteouts += 1;
        Ok(())
    }

    /// Removes what lower layers put under `dir` (`rel` in the root), keeping what this
    /// layer touched. Iterative: a stack of paths below `dir`, each directory opened beneath
    /// it without following links while its entries are handled, so two descriptors are
    /// open however deep the kept tree goes.
    fn clear_lower(&self, dir: BorrowedFd<'_>, rel: &Path) -> Result<()> {
        let mut todo: Vec<PathBuf> = vec![PathBuf::new()];
        while let Some(sub) = todo.pop() {
            let here = rel.join(&sub);
            let fd =
                crate::root::open_beneath(dir, &sub).map_err(|e| Error::fs("open", &here, e))?;
            let names =
                crate::root::list_dir(fd.as_fd()).map_err(|e| Error::fs("list", &here, e))?;
            for n in names {
                let child = here.join(&n);
                if !self.touched.contains(&child) {
                    remove_all(fd.as_fd(), &n).map_err(|e| Error::fs("remove", &child, e))?;
                } else if kind_at(&fd, &n).map_err(|e| Error::fs("stat", &child, e))?
                    == Some(FileType::Directory)
                {
                    todo.push(sub.join(&n));
                }
            }
        }
        Ok(())
    }

    /// Removes whatever is at `name` unless it is a directory and `keep_dir`.
    fn make_room(dir: BorrowedFd<'_>, name: &OsStr, rel: &Path, keep_dir: bool) -> Result<bool> {
        match kind_at(dir, name).map_err(|e| Error::fs("stat", rel, e))? {
            None => Ok(false),
            Some(FileType::Directory) if keep_dir => Ok(true),
            Some(_) => {
                remove_all(dir, name).map_err(|e| Error::fs("remove", rel, e))?;
                Ok(false)
            }
        }
    }

    async fn file<R: AsyncRead + Unpin + Send>(
        &mut self,
        e: &mut tokio_tar::Entry<Archive<R>>,
        rel: &Path,
        meta: &Meta,
        report: &mut ApplyReport,
    ) -> Result<()> {
        // A sparse file the filter rewrote: its stored runs and where they go.
        let map = if crate::sparse::rewritten(e.header().as_bytes()) {
            let map = self.sparse.take(e.raw_header_position()).ok_or_else(|| {
                Error::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "a sparse entry whose map was lost",
                ))
            })?;
            Some(map)
        } else {
            None
        };
        let size = map
            .as_ref()
            .map_or_else(|| e.effective_size(), |m| m.real_size);
        let would_be = self.declared_bytes.saturating_add(size);
        if let Some(limit) = self.opts.max_bytes.filter(|l| would_be > *l) {
            return Err(Error::TooLarge {
                limit,
                path: rel.display().to_string(),
                would_be,
            });
        }
        self.declared_bytes = would_be;
        let sparse = e.header().entry_type() == EntryType::GNUSparse;
        let name = rel.file_name().unwrap_or_default().to_owned();
        let fd = {
            let dir = self.parent(rel)?;
            Self::make_room(dir, &name, rel, false)?;
            openat(
                dir,
                &name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| Error::fs("create", rel, e))?
        };
        let mut f = std::fs::File::from(fd);
        if let Some(map) = map {
            // Each stored run at its offset; the holes between are never written.
            for (off, len) in map.runs {
                std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(off))
                    .map_err(|e| Error::fs("seek", rel, e))?;
                let mut left = len;
                while left > 0 {
                    let want = (self.buf.len() as u64).min(left) as usize;
                    let n = e.read(&mut self.buf[..want]).await?;
                    if n == 0 {
                        return Err(Error::Io(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "a sparse entry's data ends early",
                        )));
                    }
                    f.write_all(&self.buf[..n])
                        .map_err(|e| Error::fs("write", rel, e))?;
                    report.file_bytes += n as u64;
                    left -= n as u64;
                }
            }
            f.set_len(size).map_err(|e| Error::fs("truncate", rel, e))?;
            self.metadata(f.as_fd(), rel, meta, true, report)?;
            report.files += 1;
            return Ok(());
        }
        loop {
            let n = e.read(&mut self.buf).await?;
            if n == 0 {
                break;
            }
            if sparse {
                // Holes stay holes: zero blocks are skipped, the length set at the end.
                for block in self.buf[..n].chunks(4096) {
                    if block.iter().all(|b| *b == 0) {
                        std::io::Seek::seek(&mut f, std::io::SeekFrom::Current(block.len() as i64))
                            .map_err(|e| Error::fs("seek", rel, e))?;
                    } else {
                        f.write_all(block).map_err(|e| Error::fs("write", rel, e))?;
                        report.file_bytes += block.len() as u64;
                    }
                }
                continue;
            }
            f.write_all(&self.buf[..n])
                .map_err(|e| Error::fs("write", rel, e))?;
            report.file_bytes += n as u64;
        }
        if sparse {
            f.set_len(size).map_err(|e| Error::fs("truncate", rel, e))?;
        }
        self.metadata(f.as_fd(), rel, meta, true, report)?;
        report.files += 1;
        Ok(())
    }

    fn dir(&mut self, rel: &Path, meta: &Meta, report: &mut ApplyReport) -> Result<()> {
        let name = rel.file_name().unwrap_or_default().to_owned();
        let dir = self.parent(rel)?;
        if !Self::make_room(dir, &name, rel, true)? {
            match mkdirat(dir, &name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(Error::fs("mkdir", rel, e)),
            }
        }
        let fd = openat(
            dir,
            &name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::fs("open", rel, e))?;
        // The entry describes the directory whole: xattrs we would apply that it does not list
        // are removed from a directory that was already there.
        self.drop_stale_xattrs(fd.as_fd(), rel, &meta.xattrs)?;
        // Mode and mtime are set after the directory's contents (see finish_dirs); until then
        // the owner can write into it.
        let meta_now = Meta {
            mode: 0o700,
            uid: meta.uid,
            gid: meta.gid,
            mtime: meta.mtime,
            xattrs: meta.xattrs.clone(),
        };
        self.metadata(fd.as_fd(), rel, &meta_now, false, report)?;
        self.dirs.insert(rel.to_path_buf(), (meta.mode, meta.mtime));
        report.dirs += 1;
        Ok(())
    }

    fn symlink(
        &mut self,
        rel: &Path,
        target: &[u8],
        meta: &Meta,
        report: &mut ApplyReport,
    ) -> Result<()> {
        let name = rel.file_name().unwrap_or_default().to_owned();
        let ownership = self.ownership.clone();
        let dir = self.parent(rel)?;
        Self::make_room(dir, &name, rel, false)?;
        symlinkat(OsStr::from_bytes(target), dir, &name)
            .map_err(|e| Error::fs("symlink", rel, e))?;
        if let Some((u, g)) = owner(&ownership, meta) {
            rustix::fs::chownat(dir, &name, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| Error::fs("chown", rel, e))?;
        }
        let t = times(meta.mtime);
        rustix::fs::utimensat(dir, &name, &t, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::fs("utimes", rel, e))?;
        report.symlinks += 1;
        Ok(())
    }

    fn hardlink(&mut self, rel: &Path, target: &Path, report: &mut ApplyReport) -> Result<()> {
        if rel == target {
            return Ok(());
        }
        let (tdir, tname) = self.root.parent_of(target)?;
        match kind_at(&tdir, tname).map_err(|e| Error::fs("stat", target, e))? {
            None => {
                return Err(Error::InvalidEntry {
                    path: rel.display().to_string(),
                    reason: format!("hard link to {} which does not exist", target.display()),
                })
            }
            Some(FileType::Directory) => {
                return Err(Error::InvalidEntry {
                    path: rel.display().to_string(),
                    reason: format!("hard link to the directory {}", target.display()),
                })
            }
            Some(_) => {}
        }
        let name = rel.file_name().unwrap_or_default().to_owned();
        let dir = self.parent(rel)?;
        Self::make_room(dir, &name, rel, false)?;
        // No AT_SYMLINK_FOLLOW: a symlink target is linked itself, never followed.
        linkat(&tdir, tname, dir, &name, AtFlags::empty())
            .map_err(|e| Error::fs("link", rel, e))?;
        report.hardlinks += 1;
        Ok(())
    }

    fn node(
        &mut self,
        rel: &Path,
        ft: FileType,
        dev: u64,
        meta: &Meta,
        raw: &str,
        report: &mut ApplyReport,
    ) -> Result<()> {
        let is_device = ft != FileType::Fifo;
        if is_device && self.opts.devices == Devices::Skip {
            report.skipped_devices.push(raw.to_owned());
            return Ok(());
        }
        let name = rel.file_name().unwrap_or_default().to_owned();
        let ownership = self.ownership.clone();
        let devices = self.opts.devices;
        let dir = self.parent(rel)?;
        Self::make_room(dir, &name, rel, false)?;
        match mknodat(dir, &name, ft, Mode::from_raw_mode(meta.mode & 0o777), dev) {
            Ok(()) => {}
            Err(Errno::PERM) if is_device && devices == Devices::CreateOrSkip => {
                report.skipped_devices.push(raw.to_owned());
                return Ok(());
            }
            Err(e) => return Err(Error::fs("mknod", rel, e)),
        }
        // Open without following (it is a node we just made) to set metadata by descriptor.
        let fd = openat(
            dir,
            &name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::fs("open", rel, e))?;
        if let Some((u, g)) = owner(&ownership, meta) {
            rustix::fs::chownat(&fd, "", Some(u), Some(g), AtFlags::EMPTY_PATH)
                .map_err(|e| Error::fs("chown", rel, e))?;
        }
        rustix::fs::chmodat(dir, &name, Mode::from_raw_mode(meta.mode), AtFlags::empty())
            .map_err(|e| Error::fs("chmod", rel, e))?;
        rustix::fs::utimensat(dir, &name, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::fs("utimes", rel, e))?;
        report.devices += 1;
        Ok(())
    }

    fn drop_stale_xattrs(
        &self,
        fd: BorrowedFd<'_>,
        rel: &Path,
        keep: &[(String, Vec<u8>)],
    ) -> Result<()> {
        let mut names = vec![0u8; 4096];
        let n = match rustix::fs::flistxattr(fd, &mut names[..]) {
            Ok(n) => n,
            Err(Errno::NOTSUP) => return Ok(()),
            Err(e) => return Err(Error::fs("listxattr", rel, e)),
        };
        for raw in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
            let Ok(key) = std::str::from_utf8(raw) else {
                continue;
            };
            let ours = self
                .opts
                .allowed_xattrs
                .iter()
                .any(|p| key.starts_with(p.as_str()))
                && key != ROOTLESS_XATTR;
            if ours && !keep.iter().any(|(k, _)| k == key) {
                rustix::fs::fremovexattr(fd, key).map_err(|e| Error::fs("removexattr", rel, e))?;
            }
        }
        Ok(())
    }

    /// Ownership, mode, xattrs and mtime on an open file or directory.
    fn metadata(
        &self,
        fd: BorrowedFd<'_>,
        rel: &Path,
        meta: &Meta,
        set_time: bool,
        report: &mut ApplyReport,
    ) -> Result<()> {
        match owner(&self.ownership, meta) {
            Some((u, g)) => fchown(fd, Some(u), Some(g)).map_err(|e| Error::fs("chown", rel, e))?,
            None if self.ownership == Ownership::Rootless && (meta.uid != 0 || meta.gid != 0) => {
                rustix::fs::fsetxattr(
                    fd,
                    ROOTLESS_XATTR,
                    &rootless_xattr(meta.uid, meta.gid),
                    XattrFlags::empty(),
                )
                .map_err(|e| Error::fs("setxattr", rel, e))?;
            }
            None => {}
        }
        // After chown, which clears setuid/setgid.
        fchmod(fd, Mode::from_raw_mode(meta.mode)).map_err(|e| Error::fs("chmod", rel, e))?;
        for (name, value) in &meta.xattrs {
            let allowed = self
                .opts
                .allowed_xattrs
                .iter()
                .any(|p| name.starts_with(p.as_str()))
                && name != ROOTLESS_XATTR;
            if !allowed {
                if self.opts.fail_on_refused_xattr {
                    return Err(Error::InvalidEntry {
                        path: rel.display().to_string(),
                        reason: format!("xattr {name} is not allowed"),
                    });
                }
                report
                    .refused_xattrs
                    .push(format!("{}: {name}", rel.display()));
                continue;
            }
            rustix::fs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty())
                .map_err(|e| Error::fs("setxattr", rel, e))?;
        }
        if set_time {
            futimens(fd, &times(meta.mtime)).map_err(|e| Error::fs("utimes", rel, e))?;
        }
        Ok(())
    }

    /// Sets directories' modes and mtimes, deepest first, through descriptors of the
    /// directories themselves (a path that is no longer a directory is left alone).
    fn finish_dirs(&mut self) -> Result<()> {
        self.cache = None;
        for (rel, (mode, mtime)) in self.dirs.iter().rev() {
            let (parent, name) = match self.root.parent_of(rel) {
                Ok(x) => x,
                Err(_) => continue,
            };
            let fd = match openat(
                &parent,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(Error::fs("open", rel, e)),
            };
            fchmod(&fd, Mode::from_raw_mode(*mode)).map_err(|e| Error::fs("chmod", rel, e))?;
            futimens(&fd, &times(*mtime)).map_err(|e| Error::fs("utimes", rel, e))?;
        }
        Ok(())
    }
}

/// The name a `.wh.NAME` entry hides; `None` for aufs metadata (`.wh..wh.plnk` and the like)
/// that carries nothing to apply; an error for an empty, `.` or `..` name.
fn whiteout_target<'a>(name: &'a [u8], raw: &str) -> Result<Option<&'a [u8]>> {
    let target = &name[WHITEOUT_PREFIX.len()..];
    if target.starts_with(b".wh.") {
        return Ok(None);
    }
    if target.is_empty() || target == b"." || target == b".." {
        return Err(Error::UnsafePath {
            path: raw.to_owned(),
            reason: "whiteout of an empty, `.` or `..` name".into(),
        });
    }
    Ok(Some(target))
}

fn bad(path: &str, reason: &str) -> Error {
    Error::InvalidEntry {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

fn owner(o: &Ownership, meta: &Meta) -> Option<(Uid, Gid)> {
    match o {
        Ownership::Preserve => Some((Uid::from_raw(meta.uid), Gid::from_raw(meta.gid))),
        Ownership::Map { uids, gids } => {
            // Unmapped ids become the overflow id, as the kernel shows them.
            let u = map_id(uids, meta.uid).unwrap_or(65534);
            let g = map_id(gids, meta.gid).unwrap_or(65534);
            Some((Uid::from_raw(u), Gid::from_raw(g)))
        }
        _ => None,
    }
}

/// Modification times are clamped to this range of seconds (1901-12-13 to 2446-05-10, what
/// ext4 stores): an out-of-range value, such as a huge base-256 field, becomes the nearest
/// end, never a time the filesystem silently wraps or changes.
pub const MTIME_RANGE: std::ops::RangeInclusive<i64> = -(1 << 31)..=0x3_7fff_ffff;

/// The header's mtime, base-256 (signed, as GNU tar and Go write it) or octal.
fn header_mtime(h: &tokio_tar::Header) -> i64 {
    let field = &h.as_old().mtime;
    if field[0] & 0x80 == 0 {
        return h
            .mtime()
            .map_or(0, |t| i64::try_from(t).unwrap_or(*MTIME_RANGE.end()));
    }
    // Base-256: two's complement big-endian, the first byte's top bit the marker.
    let negative = field[0] & 0x40 != 0;
    let inv = if negative { 0xff } else { 0 };
    let mut x: u128 = 0;
    for (i, b) in field.iter().enumerate() {
        let mut c = b ^ inv;
        if i == 0 {
            c &= 0x7f;
        }
        x = (x << 8) | u128::from(c);
    }
    let x = i64::try_from(x).unwrap_or(i64::MAX);
    if negative {
        !x
    } else {
        x
    }
}

/// A PAX time (`[-]SECONDS[.FRACTION]`) as seconds and nanoseconds.
fn pax_time(v: &str) -> Option<(i64, u32)> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if int.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let mut digits = frac.bytes().take(9).map(|b| u32::from(b - b'0'));
    let mut nsec = 0u32;
    for _ in 0..9 {
        nsec = nsec * 10 + digits.next().unwrap_or(0);
    }
    if int.starts_with('-') && nsec > 0 {
        // -1.25 is 1.25 s before the epoch: -2 s + 0.75 s.
        Some((secs - 1, 1_000_000_000 - nsec))
    } else {
        Some((secs, nsec))
    }
}

fn times(mtime: (i64, u32)) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime.0,
        tv_nsec: mtime.1.into(),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// umoci's `user.rootlesscontainers` value: protobuf `Resource { uint32 uid = 1; uint32 gid = 2; }`.
pub fn rootless_xattr(uid: u32, gid: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, v) in [(0x08u8, uid), (0x10u8, gid)] {
        if v == 0 {
            continue;
        }
        out.push(tag);
        let mut v = v;
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }
    out
}

#[cfg(all(test, not(feature = "zstd")))]
mod without_zstd {
    #![allow(clippy::unwrap_used)]

    /// Built without zstd, a zstd layer is a clear error, not a tar parse of compressed bytes.
    #[tokio::test]
    async fn a_zstd_layer_is_unsupported() {
        let frame = [0x28u8, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0];
        let err = super::decompress(&frame[..], None).await.err().unwrap();
        assert!(
            err.to_string().contains("without its zstd feature"),
            "{err}"
        );
    }
}

//! The module of [`diff()`], whose docs say what it is for (the module is private).

use crate::apply::{OPAQUE_MARKER, ROOTLESS_XATTR, WHITEOUT_PREFIX};
use crate::error::{Error, Result};
use crate::root::Root;
use crate::tarw::{EntryHeader, TarWriter};
use oci_rs_image::oci_spec::image::{Descriptor, Digest};
use oci_rs_image::BlobStore;
use oci_rs_image::Compression;
use rustix::fs::{openat, statat, AtFlags, FileType, Mode, OFlags, Stat};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWrite;
use tokio_tar::EntryType;

/// Files up to this size are read in one call, in place (see `write_changes`).
const SMALL_FILE: u64 = 64 * 1024;

/// How to write a diff.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Clamp every mtime to this (SOURCE_DATE_EPOCH), for reproducible layers.
    pub source_date_epoch: Option<u64>,
    /// Paths (relative to the tree, like `etc/hosts`) where a runtime made an empty file as a
    /// bind-mount target: left out when they are empty regular files, so a commit does not
    /// record them (docker leaves out `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`).
    pub mount_points: Vec<PathBuf>,
    /// Write files with holes as old GNU sparse entries (their holes described, not stored
    /// as zeros; readers of GNU tar, Go's `archive/tar` and this crate's apply read them).
    /// [`export`] always does; layers do not unless asked.
    pub sparse: bool,
}

impl DiffOptions {
    /// Reads `SOURCE_DATE_EPOCH` from the environment.
    pub fn from_env() -> Self {
        Self {
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|v| v.parse().ok()),
            mount_points: Vec::new(),
            sparse: false,
        }
    }
}

/// What a diff found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffReport {
    /// Entries added or changed.
    pub changed: u64,
    /// Whiteouts written.
    pub deleted: u64,
    /// Opaque directories written.
    pub opaque: u64,
    /// Hard links written as links.
    pub hardlinks: u64,
    /// Bytes of the tar.
    pub tar_bytes: u64,
}

/// One change, in output order.
// Whiteouts are the small variant and the rarer one; boxing the common `Add` would cost an
// allocation per changed path for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Change {
    Add {
        rel: PathBuf,
        st: Stat,
        link: Vec<u8>,
        xattrs: Vec<(String, Vec<u8>)>,
        hardlink_to: Option<PathBuf>,
    },
    Whiteout(PathBuf),
    Opaque(PathBuf),
}

/// Leaves out the empty regular files at `opts.mount_points`.
fn without_mount_points(changes: Vec<Change>, opts: &DiffOptions) -> Vec<Change> {
    if opts.mount_points.is_empty() {
        return changes;
    }
    changes
        .into_iter()
        .filter(|c| match c {
            Change::Add { rel, st, .. } => {
                !(kind(st) == FileType::RegularFile
                    && st.st_size == 0
                    && opts.mount_points.iter().any(|m| m == rel))
            }
            _ => true,
        })
        .collect()
}

fn kind(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

fn list(dir: BorrowedFd<'_>) -> std::io::Result<BTreeMap<Vec<u8>, Stat>> {
    let mut out = BTreeMap::new();
    for name in crate::root::list_dir(dir)? {
        let st = statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)?;
        out.insert(name.into_vec(), st);
    }
    Ok(out)
}

/// xattrs of a regular file or directory (`trusted.*` left out: overlay bookkeeping).
fn xattrs(dir: BorrowedFd<'_>, name: &[u8], st: &Stat) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let k = kind(st);
    if k != FileType::RegularFile && k != FileType::Directory {
        return Ok(Vec::new());
    }
    let flags = if k == FileType::Directory {
        OFlags::RDONLY | OFlags::DIRECTORY
    } else {
        OFlags::RDONLY
    };
    let fd = openat(
        dir,
        OsStr::from_bytes(name),
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::flistxattr(&fd, &mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for raw in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let Ok(key) = std::str::from_utf8(raw) else {
            continue;
        };
        if key.starts_with("trusted.") || key == "security.selinux" {
            continue;
        }
        let mut v = vec![0u8; 65536];
        let len = rustix::fs::fgetxattr(&fd, key, &mut v[..])?;
        v.truncate(len);
        out.push((key.to_owned(), v));
    }
    out.sort();
    Ok(out)
}

fn link_target(dir: BorrowedFd<'_>, name: &[u8], st: &Stat) -> std::io::Result<Vec<u8>> {
    if kind(st) == FileType::Symlink {
        Ok(rustix::fs::readlinkat(dir, OsStr::from_bytes(name), Vec::new())?.into_bytes())
    } else {
        Ok(Vec::new())
    }
}

struct Walker {
    changes: Vec<Change>,
    /// (dev, ino) of multiply-linked files → the first path seen.
    links: HashMap<(u64, u64), PathBuf>,
}

impl Walker {
    fn add(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: PathBuf,
        st: Stat,
    ) -> std::io::Result<()> {
        let mut hardlink_to = None;
        if kind(&st) == FileType::RegularFile && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            match self.links.get(&key) {
                Some(first) => hardlink_to = Some(first.clone()),
                None => {
                    self.links.insert(key, rel.clone());
                }
            }
        }
        let link = link_target(dir, name, &st)?;
        let xattrs = xattrs(dir, name, &st)?;
        self.changes.push(Change::Add {
            rel,
            st,
            link,
            xattrs,
            hardlink_to,
        });
        Ok(())
    }

    /// Everything under `rel` (an added directory's contents).
    fn add_tree(&mut self, root: &Root, rel: &Path) -> std::io::Result<()> {
        let mut d = DirAt::new(root, rel);
        for (name, st) in list(d.fd()?)? {
            let child = child_path(rel, &name)?;
            self.add(d.fd()?, &name, child.clone(), st)?;
            if kind(&st) == FileType::Directory {
                d.close();
                self.add_tree(root, &child)?;
            }
        }
        Ok(())
    }

    fn compare(&mut self, lower: &Root, upper: &Root, rel: &Path) -> std::io::Result<()> {
        let mut lo_dir = DirAt::new(lower, rel);
        let mut up_dir = DirAt::new(upper, rel);
        let lo = list(lo_dir.fd()?)?;
        let up = list(up_dir.fd()?)?;
        // A directory whose lower entries are all gone (two or more) is replaced wholesale.
        let all_gone = lo.len() >= 2 && lo.keys().all(|k| !up.contains_key(k));
        if all_gone {
            self.changes.push(Change::Opaque(rel.to_path_buf()));
        }
        // Siblings in byte order of the names written (a whiteout sorts as `.wh.NAME`).
        let mut names: Vec<(Vec<u8>, &Vec<u8>)> = lo
            .keys()
            .chain(up.keys())
            .map(|n| {
                let written = if up.contains_key(n) {
                    n.clone()
                } else {
                    [WHITEOUT_PREFIX.as_bytes(), n].concat()
                };
                (written, n)
            })
            .collect();
        names.sort();
        names.dedup();
        for (_, name) in names {
            let child = child_path(rel, name)?;
            match (lo.get(name), up.get(name)) {
                (Some(_), None) => {
                    if !all_gone {
                        let mut wh = OsString::from(WHITEOUT_PREFIX);
                        wh.push(OsStr::from_bytes(name));
                        self.changes.push(Change::Whiteout(rel.join(wh)));
                    }
                }
                (None, Some(u)) => {
                    self.add(up_dir.fd()?, name, child.clone(), *u)?;
                    if kind(u) == FileType::Directory {
                        up_dir.close();
                        lo_dir.close();
                        self.add_tree(upper, &child)?;
                    }
                }
                (Some(l), Some(u)) => {
                    let both_dirs =
                        kind(l) == FileType::Directory && kind(u) == FileType::Directory;
                    if all_gone || differs(lo_dir.fd()?, up_dir.fd()?, name, l, u)? {
                        self.add(up_dir.fd()?, name, child.clone(), *u)?;
                    } else if kind(u) == FileType::RegularFile && u.st_nlink > 1 {
                        self.links
                            .entry((u.st_dev, u.st_ino))
                            .or_insert(child.clone());
                    }
                    if kind(u) == FileType::Directory {
                        up_dir.close();
                        lo_dir.close();
                        if both_dirs && !all_gone {
                            self.compare(lower, upper, &child)?;
                        } else {
                            self.add_tree(upper, &child)?;
                        }
                    }
                }
                (None, None) => {}
            }
        }
        Ok(())
    }

    fn overlay(&mut self, upper: &Root, rel: &Path) -> std::io::Result<()> {
        let mut d = DirAt::new(upper, rel);
        for (name, st) in list(d.fd()?)? {
            let child = child_path(rel, &name)?;
            let k = kind(&st);
            if k == FileType::CharacterDevice && st.st_rdev == 0 {
                let mut wh = OsString::from(WHITEOUT_PREFIX);
                wh.push(OsStr::from_bytes(&name));
                self.changes.push(Change::Whiteout(rel.join(wh)));
                continue;
            }
            self.add(d.fd()?, &name, child.clone(), st)?;
            if k == FileType::Directory {
                if overlay_opaque(d.fd()?, &name)? {
                    self.changes.push(Change::Opaque(child.clone()));
                }
                d.close();
                self.overlay(upper, &child)?;
            }
        }
        Ok(())
    }
}

/// A directory of a walk, opened beneath its root when needed and closed before the walk
/// descends: the walk holds at most two descriptors per tree, however deep it goes.
struct DirAt<'r> {
    root: &'r Root,
    rel: &'r Path,
    fd: Option<OwnedFd>,
}

impl<'r> DirAt<'r> {
    fn new(root: &'r Root, rel: &'r Path) -> Self {
        Self {
            root,
            rel,
            fd: None,
        }
    }

    fn fd(&mut self) -> std::io::Result<BorrowedFd<'_>> {
        if self.fd.is_none() {
            self.fd = Some(crate::root::open_beneath(self.root.fd(), self.rel)?);
        }
        match &self.fd {
            Some(fd) => Ok(fd.as_fd()),
            None => Err(std::io::Error::other("directory descriptor lost")),
        }
    }

    fn close(&mut self) {
        self.fd = None;
    }
}

/// `rel/name`, refused past [`MAX_PATH`](crate::apply::MAX_PATH) bytes: a tree deeper than
/// that cannot be a layer any runtime applies, and the walk stops with a clear error instead
/// of exhausting the stack or the descriptor table.
fn child_path(rel: &Path, name: &[u8]) -> std::io::Result<PathBuf> {
    let child = rel.join(OsStr::from_bytes(name));
    if child.as_os_str().len() > crate::apply::MAX_PATH {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "a path of {} bytes under {}: over {} bytes, not written as a layer",
                child.as_os_str().len(),
                rel.components()
                    .next()
                    .map_or("/".into(), |c| c.as_os_str().to_string_lossy()),
                crate::apply::MAX_PATH
            ),
        ));
    }
    Ok(child)
}

/// Runs a walk on a thread of its own with a stack for the deepest tree a layer may hold
/// ([`MAX_PATH`](crate::apply::MAX_PATH) bytes: 2048 levels).
fn walk_thread<T: Send>(f: impl FnOnce() -> std::io::Result<T> + Send) -> std::io::Result<T> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("oci-layer-walk".into())
            .stack_size(64 << 20)
            .spawn_scoped(s, f)?
            .join()
            .map_err(|_| std::io::Error::other("the tree walk panicked"))?
    })
}

fn overlay_opaque(dir: BorrowedFd<'_>, name: &[u8]) -> std::io::Result<bool> {
    let fd = openat(
        dir,
        OsStr::from_bytes(name),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for key in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        let mut v = [0u8; 8];
        if let Ok(n) = rustix::fs::fgetxattr(&fd, key, &mut v[..]) {
            if &v[..n] == b"y" {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn differs(
    lower: BorrowedFd<'_>,
    upper: BorrowedFd<'_>,
    name: &[u8],
    l: &Stat,
    u: &Stat,
) -> std::io::Result<bool> {
    if kind(l) != kind(u)
        || l.st_mode != u.st_mode
        || l.st_uid != u.st_uid
        || l.st_gid != u.st_gid
        || l.st_rdev != u.st_rdev
    {
        return Ok(true);
    }
    if kind(u) != FileType::Directory
        && (l.st_size != u.st_size
            || l.st_mtime != u.st_mtime
            || l.st_mtime_nsec != u.st_mtime_nsec)
    {
        return Ok(true);
    }
    if kind(u) == FileType::Directory && (l.st_mtime != u.st_mtime) {
        // A directory whose entries changed has a new mtime but is itself unchanged unless its
        // own metadata moved; the entries are diffed one by one.
        return Ok(xattrs(lower, name, l)? != xattrs(upper, name, u)?);
    }
    if kind(u) == FileType::Symlink {
        return Ok(link_target(lower, name, l)? != link_target(upper, name, u)?);
    }
    Ok(xattrs(lower, name, l)? != xattrs(upper, name, u)?)
}

fn decode_rootless(v: &[u8]) -> (u64, u64) {
    let (mut uid, mut gid) = (0u64, 0u64);
    let mut i = 0;
    while i < v.len() {
        let tag = v[i];
        i += 1;
        let mut val = 0u64;
        let mut shift = 0;
        while i < v.len() {
            let b = v[i];
            i += 1;
            val |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 || shift > 63 {
                break;
            }
        }
        match tag {
            0x08 => uid = val,
            0x10 => gid = val,
            _ => {}
        }
    }
    (uid, gid)
}

/// Turning a file tree's changes into a layer: `docker commit`, `docker export`, and the
/// writable layer of an overlay mount.
///
/// [`diff`] compares two trees (lower = the image's filesystem, upper = the container's) by
/// metadata (type, mode, owner, size, mtime with nanoseconds, device, symlink target,
/// xattrs) and never by content; deletions become `.wh.NAME` whiteouts, and a directory all of
/// whose lower entries are gone becomes an opaque directory. [`diff_overlay`] reads an
/// overlayfs upper directory directly (whiteouts there are 0/0 character devices, opaque
/// directories carry `trusted.overlay.opaque=y`), without looking at the lower layers.
///
/// Output is reproducible: siblings in byte order of their names, directories before their
/// contents, normalised headers (no user names, no atime), and with
/// [`DiffOptions::source_date_epoch`] every mtime clamped to it. Hard links inside the tree
/// stay hard links. Trees are read without following symlinks anywhere.
///
/// Writes the changes from `lower` (none: an empty tree) to `upper` as a tar into `out`.
pub async fn diff<W: AsyncWrite + Unpin>(
    lower: Option<&Path>,
    upper: &Path,
    out: W,
    opts: &DiffOptions,
) -> Result<(DiffReport, W)> {
    let up = Root::open(upper)?;
    let lo = lower.map(Root::open).transpose()?;
    let changes = walk_thread(|| {
        let mut w = Walker {
            changes: Vec::new(),
            links: HashMap::new(),
        };
        match &lo {
            Some(lo) => w.compare(lo, &up, Path::new("")),
            None => w.add_tree(&up, Path::new("")),
        }?;
        Ok(w.changes)
    })
    .map_err(|e| Error::fs("walk", upper, e))?;
    write_changes(&up, without_mount_points(changes, opts), out, opts).await
}

/// Writes an overlayfs upper directory as a layer.
pub async fn diff_overlay<W: AsyncWrite + Unpin>(
    upper: &Path,
    out: W,
    opts: &DiffOptions,
) -> Result<(DiffReport, W)> {
    let up = Root::open(upper)?;
    let changes = walk_thread(|| {
        let mut w = Walker {
            changes: Vec::new(),
            links: HashMap::new(),
        };
        w.overlay(&up, Path::new(""))?;
        Ok(w.changes)
    })
    .map_err(|e| Error::fs("walk", upper, e))?;
    write_changes(&up, without_mount_points(changes, opts), out, opts).await
}

/// A whole directory as one tar (`docker export`), streamed as it is walked; files with
/// holes keep them (see [`DiffOptions::sparse`]).
pub async fn export<W: AsyncWrite + Unpin>(
    dir: &Path,
    out: W,
    opts: &DiffOptions,
) -> Result<(DiffReport, W)> {
    let opts = DiffOptions {
        sparse: true,
        ..opts.clone()
    };
    diff(None, dir, out, &opts).await
}

async fn write_changes<W: AsyncWrite + Unpin>(
    root: &Root,
    changes: Vec<Change>,
    out: W,
    opts: &DiffOptions,
) -> Result<(DiffReport, W)> {
    let mut tw = TarWriter::new(out);
    let mut report = DiffReport::default();
    let clamp = |t: i64| {
        let t = t.max(0) as u64;
        opts.source_date_epoch.map_or(t, |e| t.min(e))
    };
    for c in changes {
        match c {
            Change::Whiteout(rel) => {
                let mut h = EntryHeader::new(rel.into_os_string().into_vec(), EntryType::Regular);
                h.mtime = opts.source_date_epoch.unwrap_or(0);
                tw.header(&h).await?;
                report.deleted += 1;
            }
            Change::Opaque(rel) => {
                let mut h = EntryHeader::new(
                    rel.join(OPAQUE_MARKER).into_os_string().into_vec(),
                    EntryType::Regular,
                );
                h.mtime = opts.source_date_epoch.unwrap_or(0);
                tw.header(&h).await?;
                report.opaque += 1;
            }
            Change::Add {
                rel,
                st,
                link,
                mut xattrs,
                hardlink_to,
            } => {
                let k = kind(&st);
                let mut h =
                    EntryHeader::new(rel.clone().into_os_string().into_vec(), EntryType::Regular);
                h.mode = st.st_mode & 0o7777;
                h.uid = u64::from(st.st_uid);
                h.gid = u64::from(st.st_gid);
                h.mtime = clamp(st.st_mtime);
                if let Some(i) = xattrs.iter().position(|(k, _)| k == ROOTLESS_XATTR) {
                    let (_, v) = xattrs.remove(i);
                    (h.uid, h.gid) = decode_rootless(&v);
                }
                h.xattrs = xattrs;
                report.changed += 1;
                if let Some(target) = hardlink_to {
                    h.kind = EntryType::Link;
                    h.link = target.into_os_string().into_vec();
                    h.xattrs.clear();
                    tw.header(&h).await?;
                    report.hardlinks += 1;
                    continue;
                }
                match k {
                    FileType::RegularFile => {
                        h.size = st.st_size as u64;
                        let fd = root
                            .resolve(&rel, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC)
                            .map_err(|e| match e {
                                Error::Fs { source, .. } => Error::fs("open", &rel, source),
                                e => e,
                            })?;
                        // Holes stay holes when asked (export): a file with few blocks for
                        // its size is looked at for them.
                        let runs = (opts.sparse && (st.st_blocks as u64) * 512 < h.size)
                            .then(|| crate::tarw::data_runs(fd.as_fd(), h.size))
                            .flatten();
                        match runs {
                            Some(runs) => {
                                let mut f = tokio::fs::File::from_std(std::fs::File::from(fd));
                                tw.sparse_file(&h, &runs, &mut f).await?
                            }
                            // A small file is read in place, in one call: a hop to tokio's
                            // blocking pool (two, with the close) costs more than reading
                            // 64 KiB of a local file, and a tree has thousands of them.
                            None if h.size <= SMALL_FILE => {
                                let mut body = Vec::with_capacity(h.size as usize);
                                std::io::Read::read_to_end(
                                    &mut std::io::Read::take(std::fs::File::from(fd), h.size),
                                    &mut body,
                                )
                                .map_err(|e| Error::fs("read", &rel, e))?;
                                tw.file(&h, &mut &body[..]).await?
                            }
                            None => {
                                let mut f = tokio::fs::File::from_std(std::fs::File::from(fd));
                                tw.file(&h, &mut f).await?
                            }
                        }
                    }
                    FileType::Directory => {
                        h.kind = EntryType::Directory;
                        tw.header(&h).await?;
                    }
                    FileType::Symlink => {
                        h.kind = EntryType::Symlink;
                        h.link = link;
                        h.xattrs.clear();
                        tw.header(&h).await?;
                    }
                    FileType::Fifo => {
                        h.kind = EntryType::Fifo;
                        tw.header(&h).await?;
                    }
                    FileType::CharacterDevice | FileType::BlockDevice => {
                        h.kind = if k == FileType::CharacterDevice {
                            EntryType::Char
                        } else {
                            EntryType::Block
                        };
                        h.dev = (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev));
                        tw.header(&h).await?;
                    }
                    _ => {
                        tracing::warn!(path = %rel.display(), "skipping a socket or unknown file type");
                        report.changed -= 1;
                    }
                }
            }
        }
    }
    report.tar_bytes = tw.written() + 1024;
    let out = tw.finish().await?;
    Ok((report, out))
}

/// A diff written into `store` as a compressed layer, the DiffID and compressed digest
/// computed on the way: ready for [`oci_rs_image::ImageBuilder::append_layer`].
pub async fn diff_to_store(
    store: &dyn BlobStore,
    lower: Option<&Path>,
    upper: &Path,
    overlay: bool,
    compression: Compression,
    opts: &DiffOptions,
) -> Result<(Descriptor, Digest, DiffReport)> {
    let (w, mut r) = tokio::io::duplex(64 * 1024);
    let produce = async move {
        let (report, mut w) = if overlay {
            diff_overlay(upper, w, opts).await?
        } else {
            diff(lower, upper, w, opts).await?
        };
        tokio::io::AsyncWriteExt::shutdown(&mut w).await?;
        Ok::<_, Error>(report)
    };
    // The reader moves into its future: if storing fails, it is dropped and the writer's
    // next write fails instead of waiting forever.
    let consume = async move { oci_rs_image::write_layer(store, &mut r, compression, false).await };
    let (report, layer) = tokio::join!(produce, consume);
    let report = report?;
    let (desc, diff_id) = layer?;
    Ok((desc, diff_id, report))
}

/// [`diff_to_store`] of `lower` against `upper` (plain directories) as a compressed layer
/// file `output` (umoci's and `oci layer diff`'s): a regular file is written beside itself and
/// renamed into place; a device, pipe or FIFO is written to. Returns the layer's descriptor
/// and DiffID.
pub async fn diff_to_file(
    lower: &Path,
    upper: &Path,
    output: &Path,
    compression: Compression,
    opts: &DiffOptions,
) -> Result<(Descriptor, Digest)> {
    // The layer goes through a one-blob OCI layout next to the output, then is moved.
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = tempfile::tempdir_in(parent).map_err(|e| Error::fs("mkdir", parent, e))?;
    let store = oci_rs_image::OciLayout::create(dir.path())
        .await?
        .with_fsync(false);
    let (desc, diff_id, _) =
        diff_to_store(&store, Some(lower), upper, false, compression, opts).await?;
    let blob = store.blob_path(desc.digest())?;
    if oci_rs_image::OutputFile::streams_to(output) {
        let mut out = oci_rs_image::OutputFile::create(output)?;
        let mut f = out.file().ok_or_else(|| {
            Error::fs(
                "open",
                output,
                std::io::Error::from(std::io::ErrorKind::Other),
            )
        })?;
        let mut blob_file = std::fs::File::open(&blob).map_err(|e| Error::fs("open", &blob, e))?;
        std::io::copy(&mut blob_file, &mut f).map_err(|e| Error::fs("write", output, e))?;
    } else {
        std::fs::rename(&blob, output).map_err(|e| Error::fs("rename", output, e))?;
    }
    Ok((desc, diff_id))
}

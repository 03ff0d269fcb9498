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
    /// Leave the setuid and setgid bits out of the modes written: a copy out of a container
    /// (`docker cp`) must not hand its reader set-id programs the container made.
    pub strip_setid: bool,
    /// Entries whose path starts with the first path are written as starting with the
    /// second (docker's archive rebasing): [`export_entry`] of `.` with `(".", "data")`
    /// names a directory's tree `data/...`, as `docker cp` names a volume's root by its
    /// mount point.
    pub rebase: Option<(PathBuf, PathBuf)>,
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
            strip_setid: false,
            rebase: None,
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

/// Whether `c` is an empty regular file at one of `opts.mount_points` (left out).
fn is_mount_point(c: &Change, opts: &DiffOptions) -> bool {
    match c {
        Change::Add { rel, st, .. } => {
            kind(st) == FileType::RegularFile
                && st.st_size == 0
                && opts.mount_points.iter().any(|m| m == rel)
        }
        _ => false,
    }
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
        // Copied out: the 64 KiB buffer is not kept per file.
        out.push((key.to_owned(), v[..len].to_vec()));
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

/// A tree walk. It hands each change to the tar writer as it finds it, through a bounded
/// queue: the walk waits for the writer, so memory stays flat however many entries the
/// tree holds.
struct Walker {
    out: tokio::sync::mpsc::Sender<std::io::Result<Change>>,
    /// (dev, ino) of multiply-linked files → the first path seen.
    links: HashMap<(u64, u64), PathBuf>,
}

impl Walker {
    /// Hands `c` to the writer; an error once the writer has stopped (it failed or was
    /// dropped), which ends the walk.
    fn emit(&mut self, c: Change) -> std::io::Result<()> {
        self.out.blocking_send(Ok(c)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the tar writer stopped")
        })
    }

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
        self.emit(Change::Add {
            rel,
            st,
            link,
            xattrs,
            hardlink_to,
        })
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
            self.emit(Change::Opaque(rel.to_path_buf()))?;
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
                        self.emit(Change::Whiteout(rel.join(wh)))?;
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
                self.emit(Change::Whiteout(rel.join(wh)))?;
                continue;
            }
            self.add(d.fd()?, &name, child.clone(), st)?;
            if k == FileType::Directory {
                if overlay_opaque(d.fd()?, &name)? {
                    self.emit(Change::Opaque(child.clone()))?;
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

/// A walk running on a thread of its own, with a stack for the deepest tree a layer may
/// hold ([`MAX_PATH`](crate::apply::MAX_PATH) bytes: 2048 levels): its changes as they are
/// found, then its error if it failed.
struct Walk {
    changes: tokio::sync::mpsc::Receiver<std::io::Result<Change>>,
    thread: std::thread::JoinHandle<()>,
    /// The tree walked (for messages).
    what: PathBuf,
}

impl Walk {
    fn start(
        what: &Path,
        f: impl FnOnce(&mut Walker) -> std::io::Result<()> + Send + 'static,
    ) -> Result<Self> {
        let (tx, changes) = tokio::sync::mpsc::channel(256);
        let thread = std::thread::Builder::new()
            .name("oci-layer-walk".into())
            .stack_size(64 << 20)
            .spawn(move || {
                let mut w = Walker {
                    out: tx,
                    links: HashMap::new(),
                };
                if let Err(e) = f(&mut w) {
                    // Unless the writer is what stopped it: then nobody is listening.
                    let _ = w.out.blocking_send(Err(e));
                }
            })
            .map_err(|e| Error::fs("walk", what, e))?;
        Ok(Self {
            changes,
            thread,
            what: what.to_owned(),
        })
    }

    /// The next change; None at the walk's end. Its failure is the walk's error.
    async fn next(&mut self) -> Result<Option<Change>> {
        match self.changes.recv().await {
            Some(Ok(c)) => Ok(Some(c)),
            Some(Err(e)) => Err(Error::fs("walk", &self.what, e)),
            None => Ok(None),
        }
    }

    /// Waits for the thread, which has ended or is ending (the queue closed): an error
    /// when it panicked, so a walk cut short is never taken for a whole one.
    async fn finish(self) -> Result<()> {
        let Walk { thread, what, .. } = self;
        let joined = tokio::task::spawn_blocking(move || thread.join()).await;
        match joined {
            Ok(Ok(())) => Ok(()),
            _ => Err(Error::fs(
                "walk",
                &what,
                std::io::Error::other("the tree walk panicked"),
            )),
        }
    }
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
    let walked = up.try_clone()?;
    let lo = lower.map(Root::open).transpose()?;
    let walk = Walk::start(upper, move |w| match &lo {
        Some(lo) => w.compare(lo, &walked, Path::new("")),
        None => w.add_tree(&walked, Path::new("")),
    })?;
    write_changes(&up, walk, out, opts).await
}

/// Writes an overlayfs upper directory as a layer.
pub async fn diff_overlay<W: AsyncWrite + Unpin>(
    upper: &Path,
    out: W,
    opts: &DiffOptions,
) -> Result<(DiffReport, W)> {
    let up = Root::open(upper)?;
    let walked = up.try_clone()?;
    let walk = Walk::start(upper, move |w| w.overlay(&walked, Path::new("")))?;
    write_changes(&up, walk, out, opts).await
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

/// One entry of the directory `dir` as a tar (`docker cp` out of a container): `name`
/// itself, and for a directory everything under it, each path starting with `name`; `.`
/// for `dir` itself, its entries then named `./NAME` (`docker cp CONTAINER:DIR/.`). Nothing
/// is followed: `name` as a symlink is the link. `dir` is usually `/proc/self/fd/N` of a
/// directory resolved inside a container's root, so that a container cannot swap a link in
/// between.
pub async fn export_entry<W: AsyncWrite + Unpin>(
    dir: &Path,
    name: &OsStr,
    out: W,
    opts: &DiffOptions,
) -> Result<(DiffReport, W)> {
    let root = Root::open(dir)?;
    let bytes = name.as_bytes().to_vec();
    if bytes.is_empty() || bytes.contains(&b'/') || bytes == b".." {
        return Err(Error::UnsafePath {
            path: name.to_string_lossy().into_owned(),
            reason: "not one entry's name".into(),
        });
    }
    let walked = root.try_clone()?;
    let name = name.to_owned();
    let walk = Walk::start(&dir.join(&name), move |w| {
        let st = statat(walked.fd(), &name, AtFlags::SYMLINK_NOFOLLOW)?;
        let rel = PathBuf::from(&name);
        w.add(walked.fd(), &bytes, rel.clone(), st)?;
        if kind(&st) == FileType::Directory {
            w.add_tree(&walked, &rel)?;
        }
        Ok(())
    })?;
    let opts = DiffOptions {
        sparse: true,
        // One entry's tree has no runtime mount points to leave out.
        mount_points: Vec::new(),
        ..opts.clone()
    };
    write_changes(&root, walk, out, &opts).await
}

/// Writes the walk's changes as a tar as they come; the walk's error, if it fails, ends the
/// tar unfinished (no end-of-archive blocks: a reader sees it cut short).
async fn write_changes<W: AsyncWrite + Unpin>(
    root: &Root,
    mut walk: Walk,
    out: W,
    opts: &DiffOptions,
) -> Result<(DiffReport, W)> {
    let mut tw = TarWriter::new(out);
    let mut report = DiffReport::default();
    let named = |rel: PathBuf| -> Vec<u8> {
        let rebased = opts.rebase.as_ref().and_then(|(from, to)| {
            let rest = rel.strip_prefix(from).ok()?;
            Some(match rest.as_os_str().is_empty() {
                true => to.clone(),
                false => to.join(rest),
            })
        });
        rebased.unwrap_or(rel).into_os_string().into_vec()
    };
    let clamp = |t: i64| {
        let t = t.max(0) as u64;
        opts.source_date_epoch.map_or(t, |e| t.min(e))
    };
    while let Some(c) = walk.next().await? {
        if is_mount_point(&c, opts) {
            continue;
        }
        match c {
            Change::Whiteout(rel) => {
                let mut h = EntryHeader::new(named(rel), EntryType::Regular);
                h.mtime = opts.source_date_epoch.unwrap_or(0);
                tw.header(&h).await?;
                report.deleted += 1;
            }
            Change::Opaque(rel) => {
                let mut h = EntryHeader::new(named(rel.join(OPAQUE_MARKER)), EntryType::Regular);
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
                let mut h = EntryHeader::new(named(rel.clone()), EntryType::Regular);
                h.mode = st.st_mode & 0o7777 & if opts.strip_setid { !0o6000 } else { !0 };
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
                    h.link = named(target);
                    h.xattrs.clear();
                    tw.header(&h).await?;
                    report.hardlinks += 1;
                    continue;
                }
                match k {
                    FileType::RegularFile => {
                        h.size = st.st_size as u64;
                        // Non-blocking, and checked to be the regular file the walk saw: a
                        // tree that changes meanwhile (a running container's) could have put
                        // a FIFO (an open that never returns) or a device node (the host's
                        // disk, read as the file's bytes) in its place.
                        let fd = root
                            .resolve(
                                &rel,
                                OFlags::RDONLY
                                    | OFlags::NOFOLLOW
                                    | OFlags::CLOEXEC
                                    | OFlags::NONBLOCK,
                            )
                            .map_err(|e| match e {
                                Error::Fs { source, .. } => Error::fs("open", &rel, source),
                                e => e,
                            })?;
                        let now = rustix::fs::fstat(&fd).map_err(|e| Error::fs("stat", &rel, e))?;
                        if kind(&now) != FileType::RegularFile
                            || now.st_dev != st.st_dev
                            || now.st_ino != st.st_ino
                        {
                            return Err(Error::fs(
                                "read",
                                &rel,
                                std::io::Error::other("it changed while the tree was written"),
                            ));
                        }
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
    walk.finish().await?;
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

//! The module of [`Root`], whose docs say what it is for (the module is private).

use crate::error::{Error, Result};
use rustix::fs::{
    openat, openat2, statat, unlinkat, AtFlags, FileType, Mode, OFlags, ResolveFlags, CWD,
};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// File system operations confined to a root directory.
///
/// Every path is resolved from a directory file descriptor of the root with `openat2` and
/// `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`: `..` and symlinks (absolute or relative, in any
/// component, in chains) are resolved as if the root were `/`, so nothing outside it can be
/// reached. Only the parent directory is resolved that way; the last component is always
/// operated on with `*at` calls that do not follow it (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`,
/// `O_EXCL` creation), so an entry can never write through a symlink. Where `openat2` is
/// missing (Linux before 5.6), the parent is walked one component at a time with
/// `O_NOFOLLOW`, and a symlink in a parent component is refused instead of followed.
///
/// A directory that every operation stays inside.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// A cleaned relative path: no `.`, `..`, empty or root components.
pub fn clean(raw: &str) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(raw).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                return Err(Error::UnsafePath {
                    path: raw.to_owned(),
                    reason: "`..` component".into(),
                })
            }
            Component::Prefix(_) => {
                return Err(Error::UnsafePath {
                    path: raw.to_owned(),
                    reason: "path prefix".into(),
                })
            }
        }
    }
    Ok(out)
}

impl Root {
    /// Opens `path` (which must be a directory; symlinks are not followed).
    pub fn open(path: &Path) -> Result<Self> {
        let fd = openat(
            CWD,
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::fs("open root", path, e))?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// A second handle on the same directory (for a walk on another thread).
    pub fn try_clone(&self) -> Result<Self> {
        Ok(Self {
            fd: self
                .fd
                .try_clone()
                .map_err(|e| Error::fs("dup", &self.path, e))?,
            path: self.path.clone(),
        })
    }

    /// The root's path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens a directory inside the root (`rel` empty means the root), resolving symlinks
    /// inside the root. Returns `O_PATH` descriptors unless `flags` asks otherwise.
    pub fn open_dir(&self, rel: &Path) -> Result<OwnedFd> {
        self.resolve(rel, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC)
    }

    /// Resolves `rel` inside the root with `flags`.
    pub fn resolve(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd> {
        let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        match openat2_retry(self.fd.as_fd(), rel, flags, how) {
            Some(r) => r.map_err(|e| Error::fs("resolve", rel, e)),
            None => self.walk(rel, flags),
        }
    }

    /// The fallback walk: one component at a time, never following a symlink.
    fn walk(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd> {
        let comps = normal_components(rel);
        let mut cur = openat(
            &self.fd,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::fs("resolve", rel, e))?;
        for (i, c) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let f = if last {
                flags | OFlags::NOFOLLOW
            } else {
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
            };
            cur = openat(&cur, *c, f, Mode::empty()).map_err(|e| {
                let e = if e == Errno::NOTDIR || e == Errno::LOOP {
                    std::io::Error::other(
                        "a symlink in a parent component (followed only with openat2)",
                    )
                } else {
                    e.into()
                };
                Error::fs("resolve", rel, e)
            })?;
        }
        if comps.is_empty() {
            cur = openat(&cur, ".", flags, Mode::empty())
                .map_err(|e| Error::fs("resolve", rel, e))?;
        }
        Ok(cur)
    }

    /// Opens the parent directory of `rel`, creating missing directories (mode 0755, owned
    /// by the caller) inside the root. Returns the parent and the last component.
    pub fn parent_of<'a>(&self, rel: &'a Path) -> Result<(OwnedFd, &'a OsStr)> {
        let name = rel.file_name().ok_or_else(|| Error::UnsafePath {
            path: rel.display().to_string(),
            reason: "no file name".into(),
        })?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        match self.open_dir(parent) {
            Ok(fd) => Ok((fd, name)),
            Err(Error::Fs { source, .. })
                if source.raw_os_error() == Some(Errno::NOENT.raw_os_error()) =>
            {
                self.mkdir_all(parent)?;
                Ok((self.open_dir(parent)?, name))
            }
            Err(e) => Err(e),
        }
    }

    /// Creates `rel` and its missing parents as directories inside the root.
    ///
    /// The deepest existing ancestor is found by bisection (each probe one resolution
    /// inside the root), and what is missing below it is created and entered one component
    /// at a time from its parent's descriptor: O(depth · log depth), not a resolution of
    /// every prefix. A component that is a symlink to nowhere (or to something that is no
    /// directory) is an error: a layer's entry never makes a link's target.
    pub fn mkdir_all(&self, rel: &Path) -> Result<()> {
        self.mkdir_all_hops(rel, None)
    }

    /// [`Root::mkdir_all`], but a component that is a symlink (dangling, or to a directory
    /// not made yet) is followed inside the root and its target made, as BuildKit makes a
    /// `WORKDIR` or a `COPY` destination: `/app -> /srv/app` makes `/srv/app`. A target
    /// climbing above the root stays at its top. At most 40 links are followed (the
    /// kernel's limit).
    pub fn mkdir_all_through_links(&self, rel: &Path) -> Result<()> {
        self.mkdir_all_hops(rel, Some(0))
    }

    fn mkdir_all_hops(&self, rel: &Path, hops: Option<usize>) -> Result<()> {
        let comps = normal_components(rel);
        let prefix = |k: usize| comps[..k].iter().collect::<PathBuf>();
        let exists = |k: usize| -> Result<bool> {
            match self.open_dir(&prefix(k)) {
                Ok(_) => Ok(true),
                Err(Error::Fs { source, .. }) if matches!(source.raw_os_error(), Some(n) if n == Errno::NOENT.raw_os_error() || n == Errno::NOTDIR.raw_os_error()) => {
                    Ok(false)
                }
                Err(e) => Err(e),
            }
        };
        if exists(comps.len())? {
            return Ok(());
        }
        // exists(lo), !exists(hi): shorter prefixes of an existing directory exist.
        let (mut lo, mut hi) = (0, comps.len());
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if exists(mid)? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let mut parent = self.open_dir(&prefix(lo))?;
        for (i, c) in comps.iter().enumerate().skip(lo) {
            match rustix::fs::mkdirat(&parent, *c, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(Error::fs("mkdir", prefix(i + 1), e)),
            }
            // Ours (or a directory that raced in): entered without following anything.
            match openat(
                &parent,
                *c,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => parent = fd,
                Err(Errno::NOTDIR) if hops.is_some() => {
                    // A symlink: made again from its target, read as a path inside the root.
                    let target = match rustix::fs::readlinkat(&parent, *c, Vec::new()) {
                        Ok(t) => PathBuf::from(std::ffi::OsString::from_vec(t.into_bytes())),
                        Err(_) => {
                            return Err(Error::fs("mkdir", prefix(i + 1), Errno::NOTDIR));
                        }
                    };
                    let hops = hops.unwrap_or(0);
                    if hops >= MAX_LINK_HOPS {
                        return Err(Error::fs("mkdir", prefix(i + 1), Errno::LOOP));
                    }
                    let mut next = if target.is_absolute() {
                        PathBuf::new()
                    } else {
                        prefix(i)
                    };
                    next.push(&target);
                    next.extend(&comps[i + 1..]);
                    return self.mkdir_all_hops(&lexical_in_root(&next), Some(hops + 1));
                }
                Err(e) => return Err(Error::fs("mkdir", prefix(i + 1), e)),
            }
        }
        Ok(())
    }
}

/// How many symlinks [`Root::mkdir_all_through_links`] follows for one path.
const MAX_LINK_HOPS: usize = 40;

/// `path` with `.` and `..` resolved lexically, `..` stopping at the root (as the root's
/// `..` is itself), and a leading `/` meaning the root: a relative path inside the root.
fn lexical_in_root(path: &Path) -> PathBuf {
    let mut out: Vec<&OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir => out.clear(),
            Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out.iter().collect()
}

/// The normal components of `rel`.
fn normal_components(rel: &Path) -> Vec<&OsStr> {
    rel.components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// `openat2` of `rel` under `dir` (`dir` itself when empty), tried again on EAGAIN (a
/// concurrent rename or mount raced the lookup); `None` when the kernel has no `openat2`.
fn openat2_retry(
    dir: BorrowedFd<'_>,
    rel: &Path,
    flags: OFlags,
    how: ResolveFlags,
) -> Option<std::result::Result<OwnedFd, Errno>> {
    if NO_OPENAT2.load(Ordering::Relaxed) {
        return None;
    }
    let target: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    match openat2(dir, target, flags, Mode::empty(), how) {
        Err(Errno::NOSYS) => {
            NO_OPENAT2.store(true, Ordering::Relaxed);
            None
        }
        Err(Errno::AGAIN) => {
            // Tried again while the kernel asks, a bounded number of times (a busy host
            // renames and mounts all the time).
            let mut r = Err(Errno::AGAIN);
            for _ in 0..64 {
                r = openat2(dir, target, flags, Mode::empty(), how);
                if !matches!(r, Err(Errno::AGAIN)) {
                    break;
                }
            }
            Some(r)
        }
        r => Some(r),
    }
}

/// Opens the directory `rel` beneath `dir` (`dir` itself when empty) following no symlink in
/// any component. `O_PATH`.
pub fn open_beneath(dir: BorrowedFd<'_>, rel: &Path) -> std::io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    if let Some(r) = openat2_retry(dir, rel, flags, how) {
        return Ok(r?);
    }
    let mut cur = openat(dir, ".", flags, Mode::empty())?;
    for c in normal_components(rel) {
        cur = openat(&cur, c, flags, Mode::empty())?;
    }
    Ok(cur)
}

/// The type of what is at `name` in `dir`, without following a symlink; `None` if nothing.
pub fn kind_at(dir: impl AsFd, name: &OsStr) -> std::io::Result<Option<FileType>> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes `name` in `dir` and, for a directory, everything under it. Symlinks are removed,
/// never followed. Returns false when nothing was there.
///
/// Iterative, with two descriptors open whatever the depth (a container can make a tree
/// deeper than any stack or descriptor limit with `mkdir` and `mv`): it descends by `openat`
/// without following links, climbs back by `..`, and checks on the way up that `..` holds
/// the directory it left (same device and inode) before removing it.
pub fn remove_all(dir: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<bool> {
    match kind_at(dir, name)? {
        None => return Ok(false),
        Some(FileType::Directory) => {}
        Some(_) => {
            return match unlinkat(dir, name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => Ok(true),
                Err(e) => Err(e.into()),
            }
        }
    }
    let open_dir = |at: BorrowedFd<'_>, n: &OsStr| {
        openat(
            at,
            n,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let id = |fd: BorrowedFd<'_>| rustix::fs::fstat(fd).map(|st| (st.st_dev, st.st_ino));
    // The names from `dir` down to the current directory, and their (dev, ino).
    let mut path: Vec<(std::ffi::OsString, (u64, u64))> = Vec::new();
    let mut cur = open_dir(dir, name)?;
    path.push((name.to_os_string(), id(cur.as_fd())?));
    loop {
        // Everything here that is not a directory goes; the first directory is entered.
        let mut sub = None;
        for n in list_dir(cur.as_fd())? {
            match kind_at(&cur, &n)? {
                Some(FileType::Directory) => {
                    sub = Some(n);
                    break;
                }
                Some(_) => match unlinkat(&cur, &n, AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(e) => return Err(e.into()),
                },
                None => {}
            }
        }
        if let Some(n) = sub {
            let next = open_dir(cur.as_fd(), &n)?;
            path.push((n, id(next.as_fd())?));
            cur = next;
            continue;
        }
        // Empty: climb and remove it.
        let (leaving, leaving_id) = path
            .pop()
            .ok_or_else(|| std::io::Error::other("empty path"))?;
        let parent = if path.is_empty() {
            None
        } else {
            Some(open_dir(cur.as_fd(), OsStr::new(".."))?)
        };
        let at = parent.as_ref().map_or(dir, |p| p.as_fd());
        match statat(at, &leaving, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if (st.st_dev, st.st_ino) == leaving_id => {}
            Ok(_) | Err(Errno::NOENT) => {
                return Err(std::io::Error::other(
                    "the tree changed while it was being removed",
                ))
            }
            Err(e) => return Err(e.into()),
        }
        match unlinkat(at, &leaving, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        match parent {
            None => return Ok(true),
            Some(p) => {
                if path
                    .last()
                    .is_some_and(|(_, want)| id(p.as_fd()).ok() != Some(*want))
                {
                    return Err(std::io::Error::other(
                        "the tree changed while it was being removed",
                    ));
                }
                cur = p;
            }
        }
    }
}

/// Removes every entry of the directory `dir` for which `keep` is false.
pub fn empty_dir(dir: BorrowedFd<'_>, keep: &dyn Fn(&OsStr) -> bool) -> std::io::Result<()> {
    let names = list_dir(dir)?;
    for n in names {
        if !keep(&n) {
            remove_all(dir, &n)?;
        }
    }
    Ok(())
}

/// The names in a directory (without `.` and `..`).
pub fn list_dir(dir: BorrowedFd<'_>) -> std::io::Result<Vec<std::ffi::OsString>> {
    // Dir needs a readable descriptor; reopen "." from an O_PATH one.
    let fd = openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    for e in rustix::fs::Dir::read_from(&fd)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Links followed to make directories stay inside the root (one climbing above it lands
    /// at its top), a loop of links is an error rather than a hang, and the strict
    /// `mkdir_all` (what a layer's entries use) never makes a link's target.
    #[test]
    fn directories_through_links_are_made_inside_the_root_and_loops_end() {
        let dir = tempfile::tempdir().unwrap();
        let root_dir = dir.path().join("root");
        std::fs::create_dir(&root_dir).unwrap();
        std::os::unix::fs::symlink("/srv/app", root_dir.join("app")).unwrap();
        std::os::unix::fs::symlink("../../../../outside", root_dir.join("up")).unwrap();
        std::os::unix::fs::symlink("b", root_dir.join("a")).unwrap();
        std::os::unix::fs::symlink("a", root_dir.join("b")).unwrap();
        let root = Root::open(&root_dir).unwrap();
        assert!(root.mkdir_all(Path::new("app/sub")).is_err());
        assert!(!root_dir.join("srv").exists());
        root.mkdir_all_through_links(Path::new("app/sub")).unwrap();
        assert!(root_dir.join("srv/app/sub").is_dir());
        root.mkdir_all_through_links(Path::new("up/x")).unwrap();
        assert!(root_dir.join("outside/x").is_dir());
        assert!(!dir.path().join("outside").exists());
        let looped = root.mkdir_all_through_links(Path::new("a/x")).unwrap_err();
        assert!(
            matches!(
                &looped,
                Error::Fs { source, .. } if source.raw_os_error() == Some(Errno::LOOP.raw_os_error())
            ),
            "{looped:?}"
        );
    }
}

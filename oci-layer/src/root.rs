//! File system operations confined to a root directory.
//!
//! Every path is resolved from a directory file descriptor of the root with `openat2` and
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`: `..` and symlinks (absolute or relative, in any
//! component, in chains) are resolved as if the root were `/`, so nothing outside it can be
//! reached. Only the parent directory is resolved that way; the last component is always
//! operated on with `*at` calls that do not follow it (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`,
//! `O_EXCL` creation), so an entry can never write through a symlink. Where `openat2` is
//! missing (Linux before 5.6), the parent is walked one component at a time with
//! `O_NOFOLLOW`, and a symlink in a parent component is refused instead of followed.

use crate::error::{Error, Result};
use rustix::fs::{
    openat, openat2, statat, unlinkat, AtFlags, FileType, Mode, OFlags, ResolveFlags, CWD,
};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

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
        let target: &Path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            match openat2(
                &self.fd,
                target,
                flags,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(fd) => return Ok(fd),
                Err(Errno::NOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
                // EAGAIN: a concurrent rename raced the lookup; retry once.
                Err(Errno::AGAIN) => {
                    return openat2(
                        &self.fd,
                        target,
                        flags,
                        Mode::empty(),
                        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
                    )
                    .map_err(|e| Error::fs("resolve", rel, e))
                }
                Err(e) => return Err(Error::fs("resolve", rel, e)),
            }
        }
        self.walk(rel, flags)
    }

    /// The fallback walk: one component at a time, never following a symlink.
    fn walk(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd> {
        let comps: Vec<&OsStr> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(p) => Some(p),
                _ => None,
            })
            .collect();
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
    pub fn mkdir_all(&self, rel: &Path) -> Result<()> {
        let mut prefix = PathBuf::new();
        let mut parent = self.open_dir(Path::new(""))?;
        for c in rel.components() {
            let Component::Normal(c) = c else { continue };
            prefix.push(c);
            match self.open_dir(&prefix) {
                Ok(fd) => parent = fd,
                Err(Error::Fs { source, .. })
                    if source.raw_os_error() == Some(Errno::NOENT.raw_os_error()) =>
                {
                    match rustix::fs::mkdirat(&parent, c, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(Error::fs("mkdir", &prefix, e)),
                    }
                    parent = self.open_dir(&prefix)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
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
pub fn remove_all(dir: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<bool> {
    match kind_at(dir, name)? {
        None => Ok(false),
        Some(FileType::Directory) => {
            let sub = openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            empty_dir(sub.as_fd(), &|_| false)?;
            match unlinkat(dir, name, AtFlags::REMOVEDIR) {
                Ok(()) | Err(Errno::NOENT) => Ok(true),
                Err(e) => Err(e.into()),
            }
        }
        Some(_) => match unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(true),
            Err(e) => Err(e.into()),
        },
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

//! The module of [`Lease`], whose docs say what it is for (the module is private).

use crate::error::{Error, Result};
use oci_spec::image::Digest;
use rustix::fs::FlockOperation;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The directory of lease files inside a layout.
pub const LEASES_DIR: &str = ".leases";
const NEW_PREFIX: &str = ".new-";

/// Leases: what protects content that is being written from a garbage collection running in
/// another task or process (containerd's leases are the model).
///
/// A pull writes its blobs first and tags the image last; until the tag exists nothing in
/// `index.json` reaches those blobs, and a [`gc`](crate::OciLayout::gc) at that moment (an
/// `rmi` in another terminal) would delete them, leaving a tagged image that cannot run. A
/// handle from [`OciLayout::leased`](crate::OciLayout::leased) records every blob it writes,
/// and every blob it finds already present (a copy skips those), in a lease file
/// `DIR/.leases/NAME` on which it holds a lock; `gc` keeps whatever a live lease names. A
/// lease ends when its last handle is dropped, or when its process dies (the lock goes with
/// it, and the next `gc` removes the file).
///
/// Ordering: recording a blob and the check or rename that precedes it happen under a shared
/// lock on the layout directory, and `gc` reads the leases and deletes under the exclusive
/// one, so a blob is either seen by `gc` as leased or written after `gc` is done.
///
/// A live lease: its file, locked while this value exists.
#[derive(Debug)]
pub struct Lease {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    recorded: Mutex<HashSet<Digest>>,
}

impl Lease {
    /// Creates a lease in the layout at `root`.
    pub(crate) fn create(root: &Path) -> Result<Self> {
        let dir = root.join(LEASES_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        // Locked before it gets the name gc reads, so gc never takes it for a stale one.
        let tmp = tempfile::Builder::new()
            .prefix(NEW_PREFIX)
            .tempfile_in(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        rustix::fs::flock(tmp.as_file(), FlockOperation::LockShared)
            .map_err(|e| Error::io(tmp.path(), e.into()))?;
        let name = tmp
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(NEW_PREFIX))
            .map(|n| format!("lease-{n}"))
            .ok_or_else(|| Error::io(&dir, std::io::Error::other("temporary lease name")))?;
        let path = dir.join(name);
        let file = tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        Ok(Self {
            path,
            file: Mutex::new(file),
            recorded: Mutex::new(HashSet::new()),
        })
    }

    /// The lease file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds `digest` to the lease (once).
    pub(crate) fn record(&self, digest: &Digest) -> Result<()> {
        let mut seen = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.insert(digest.clone()) {
            return Ok(());
        }
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(format!("{digest}\n").as_bytes())
            .map_err(|e| Error::io(&self.path, e))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The digests named by the live leases of the layout at `root`; leases whose holder is
/// gone are removed. Call under the layout's exclusive lock.
pub(crate) fn live_digests(root: &Path) -> Result<HashSet<Digest>> {
    let dir = root.join(LEASES_DIR);
    let mut out = HashSet::new();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        if !entry.file_name().to_string_lossy().starts_with("lease-") {
            continue;
        }
        let path = entry.path();
        let Ok(mut f) = std::fs::File::open(&path) else {
            continue;
        };
        match rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                // Nobody holds it: its process ended without dropping it.
                tracing::debug!(lease = %path.display(), "removing a stale lease");
                let _ = std::fs::remove_file(&path);
                continue;
            }
            Err(rustix::io::Errno::WOULDBLOCK) => {}
            Err(e) => return Err(Error::io(&path, e.into())),
        }
        // Bounded: a lease names each blob once, 72 bytes a line.
        let mut text = String::new();
        (&mut f)
            .take(64 << 20)
            .read_to_string(&mut text)
            .map_err(|e| Error::io(&path, e))?;
        out.extend(
            text.lines()
                .filter_map(|l| crate::digest::parse_digest(l.trim()).ok()),
        );
    }
    Ok(out)
}

/// Runs `f` under a shared lock on the layout directory at `root` (see the module docs).
pub(crate) fn shared<T>(root: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let dir = std::fs::File::open(root).map_err(|e| Error::io(root, e))?;
    rustix::fs::flock(&dir, FlockOperation::LockShared).map_err(|e| Error::io(root, e.into()))?;
    f()
}

//! The module of [`OciLayout`], whose docs say what it is for (the module is private).

use crate::digest::{parse_digest, path_components, Hasher};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::store::{
    adapter, validate_ref_name, verified, BlobInfo, BlobReader, BlobStore, BlobWriter, Expected,
    ReferenceStore,
};
use crate::transfer::{ImageDestination, ImageSource, ManifestRef};
use async_trait::async_trait;
use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageIndexBuilder, MediaType};
use std::collections::HashMap;
use std::future::Future as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWrite;

/// The annotation that names an entry of `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation docker and containerd use for the full image name.
pub const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";
/// The content of the `oci-layout` file.
pub const OCI_LAYOUT_CONTENT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
const INGEST_PREFIX: &str = ".ingest-";
/// An ingest temporary locked before it had a name (see `locked_temporary`).
const LOCKED_INGEST_PREFIX: &str = ".ingest-locked-";
/// Largest `index.json` read.
const MAX_INDEX_SIZE: u64 = 64 * 1024 * 1024;

/// The OCI image layout directory as a content store.
///
/// ```text
/// DIR/oci-layout          {"imageLayoutVersion":"1.0.0"}
/// DIR/index.json          an image index; tags are `org.opencontainers.image.ref.name`
/// DIR/blobs/<alg>/<hex>   content, named by digest
/// ```
///
/// Ingest writes to a temporary file in the layout directory (`.ingest-*`, ignored by every
/// reader) and renames it to `blobs/<alg>/<hex>` only after size and digest matched, after an
/// `fsync`: a crash or a wrong blob never leaves a file that looks complete. Every change of
/// `index.json` takes an exclusive `flock` on the layout directory, reads the index, and
/// replaces it by rename, so concurrent writers (tasks, processes, other tools holding the same
/// lock) never lose each other's tags or leave a torn file.
///
/// An OCI image layout directory. Cloning shares it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> oci_rs_image::Result<()> {
/// use oci_rs_image::{BlobStoreExt, OciLayout, ReferenceStore};
/// let dir = tempfile::tempdir()?;
/// let layout = OciLayout::create(dir.path()).await?;
/// let info = layout.put_bytes("hello".into()).await?;
/// assert!(dir.path().join("blobs/sha256").join(info.digest.digest()).exists());
/// assert!(ReferenceStore::list(&layout).await?.is_empty());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct OciLayout {
    inner: Arc<LayoutInner>,
    /// Set on a handle from [`OciLayout::leased`].
    lease: Option<Arc<crate::lease::Lease>>,
}

#[derive(Debug)]
struct LayoutInner {
    root: PathBuf,
    fsync: bool,
}

/// What [`OciLayout::gc`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed.
    pub removed: Vec<Digest>,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Blobs kept because a tag reaches them.
    pub kept: usize,
    /// Stale temporary files removed.
    pub stale_temporaries: usize,
}

impl OciLayout {
    /// Opens an existing layout, checking `oci-layout` and `index.json`.
    pub async fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let layout_file = root.join("oci-layout");
        let text = tokio::fs::read(&layout_file)
            .await
            .map_err(|e| Error::io(&layout_file, e))?;
        let v: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| invalid(&root, format!("oci-layout is not JSON: {e}")))?;
        match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
            Some(ver) if ver.starts_with("1.") => {}
            other => {
                return Err(invalid(
                    &root,
                    format!("unsupported imageLayoutVersion {other:?}"),
                ))
            }
        }
        let this = Self::at(root);
        this.read_index().await?;
        // What an interrupted process was writing (a pull stopped by Ctrl-C) goes now, not
        // at the next gc: nobody resumes it.
        let root = this.inner.root.clone();
        let reaped = spawn_blocking(move || Ok(reap_abandoned_ingests(&root))).await?;
        if reaped > 0 {
            tracing::debug!(reaped, "removed abandoned ingest temporaries");
        }
        Ok(this)
    }

    /// Creates a layout (or opens it when `oci-layout` already exists there).
    pub async fn create(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        if tokio::fs::try_exists(root.join("oci-layout"))
            .await
            .unwrap_or(false)
        {
            return Self::open(root).await;
        }
        let blobs = root.join("blobs").join("sha256");
        tokio::fs::create_dir_all(&blobs)
            .await
            .map_err(|e| Error::io(&blobs, e))?;
        let this = Self::at(root);
        let index_path = this.index_path();
        if !tokio::fs::try_exists(&index_path).await.unwrap_or(false) {
            let empty = empty_index()?;
            this.write_index_file(&empty)?;
        }
        let layout_file = this.inner.root.join("oci-layout");
        write_atomic(
            &this.inner.root,
            &layout_file,
            OCI_LAYOUT_CONTENT.as_bytes(),
            true,
        )?;
        Ok(this)
    }

    fn at(root: PathBuf) -> Self {
        Self {
            inner: Arc::new(LayoutInner { root, fsync: true }),
            lease: None,
        }
    }

    /// A handle on the same layout with a new lease: until its last clone is dropped,
    /// [`gc`](Self::gc), in this process or another, keeps every blob this handle writes or
    /// finds present. Use it for a pull, a load or a build, whose blobs no tag reaches until
    /// the end (see [`Lease`](crate::Lease)).
    pub fn leased(&self) -> Result<Self> {
        Ok(Self {
            inner: self.inner.clone(),
            lease: Some(Arc::new(crate::lease::Lease::create(self.root())?)),
        })
    }

    /// Whether blobs and the index are `fsync`ed before they become visible (default true).
    /// Turning it off is faster and still never shows a wrong blob, but a power loss may leave
    /// an empty file under a blob's name.
    pub fn with_fsync(self, fsync: bool) -> Self {
        Self {
            inner: Arc::new(LayoutInner {
                root: self.inner.root.clone(),
                fsync,
            }),
            lease: self.lease,
        }
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The path of a blob (validated digest; the file may not exist).
    pub fn blob_path(&self, digest: &Digest) -> Result<PathBuf> {
        let (alg, hex) = path_components(digest)?;
        Ok(self.inner.root.join("blobs").join(alg).join(hex))
    }

    fn index_path(&self) -> PathBuf {
        self.inner.root.join("index.json")
    }

    /// Reads and parses `index.json`.
    pub async fn read_index(&self) -> Result<ImageIndex> {
        let path = self.index_path();
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| Error::io(&path, e))?;
        self.parse_index(&bytes)
    }

    fn parse_index(&self, bytes: &[u8]) -> Result<ImageIndex> {
        if bytes.len() as u64 > MAX_INDEX_SIZE {
            return Err(Error::TooLarge {
                what: "index.json",
                size: bytes.len() as u64,
                limit: MAX_INDEX_SIZE,
            });
        }
        let index = crate::manifest::index_from_json(bytes)
            .map_err(|e| invalid(&self.inner.root, format!("index.json: {e}")))?;
        for d in index.manifests() {
            crate::digest::check_supported(d.digest())?;
        }
        Ok(index)
    }

    fn write_index_file(&self, index: &ImageIndex) -> Result<()> {
        let bytes = crate::manifest::index_to_json(index)?;
        write_atomic(
            &self.inner.root,
            &self.index_path(),
            &bytes,
            self.inner.fsync,
        )
    }

    /// Runs `f` on `index.json` under the layout's exclusive lock and writes the result back
    /// when `f` says it changed something.
    pub async fn update_index<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&mut ImageIndex) -> Result<(T, bool)> + Send + 'static,
        T: Send + 'static,
    {
        let this = self.clone();
        spawn_blocking(move || {
            let _lock = this.lock()?;
            let path = this.index_path();
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let mut index = this.parse_index(&bytes)?;
            let (out, changed) = f(&mut index)?;
            if changed {
                this.write_index_file(&index)?;
            }
            Ok(out)
        })
        .await
    }

    /// Takes the exclusive lock on the layout directory (blocking).
    fn lock(&self) -> Result<std::fs::File> {
        let dir = std::fs::File::open(&self.inner.root).map_err(|e| Error::io(self.root(), e))?;
        rustix::fs::flock(&dir, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::io(self.root(), e.into()))?;
        Ok(dir)
    }

    /// Tags `desc` as `name` and also records the full image name (`io.containerd.image.name`)
    /// as docker does, when given.
    pub async fn tag(&self, name: &str, desc: &Descriptor, image_name: Option<&str>) -> Result<()> {
        validate_ref_name(name)?;
        let mut desc = desc.clone();
        let mut ann = desc.annotations().clone().unwrap_or_default();
        ann.insert(REF_NAME.to_owned(), name.to_owned());
        if let Some(full) = image_name {
            ann.insert(CONTAINERD_IMAGE_NAME.to_owned(), full.to_owned());
        }
        desc.set_annotations(Some(ann));
        let name = name.to_owned();
        self.update_index(move |index| {
            let mut entries: Vec<Descriptor> = index
                .manifests()
                .iter()
                .filter(|d| ref_name(d) != Some(name.as_str()))
                .cloned()
                .collect();
            entries.push(desc);
            index.set_manifests(entries);
            Ok(((), true))
        })
        .await
    }

    /// Removes every blob that no entry of `index.json` reaches, and the temporary files of
    /// ingests whose writer is gone (nobody holds their lock). Runs under the index lock, so tags cannot change meanwhile; a blob being
    /// ingested right now is not yet visible and is not touched.
    pub async fn gc(&self) -> Result<GcReport> {
        self.gc_keeping(&[]).await
    }

    /// [`gc`](Self::gc) that also keeps what the manifests `roots` reach (images that
    /// containers were made from, say). Blobs named by live leases are always kept.
    pub async fn gc_keeping(&self, roots: &[Descriptor]) -> Result<GcReport> {
        let roots = roots.to_vec();
        self.gc_with_roots(async move { Ok(roots) }).await
    }

    /// [`gc_keeping`](Self::gc_keeping) with roots that `roots` finds once the layout is
    /// locked and the live leases are read: for a program that names blobs outside this
    /// layout's index (a registry's repositories), and links a blob there only after writing
    /// it under a lease. Whatever such a program linked before dropping its lease is then in
    /// the roots, and whatever it still holds a lease on is kept as leased.
    pub async fn gc_with_roots<F>(&self, roots: F) -> Result<GcReport>
    where
        F: std::future::Future<Output = Result<Vec<Descriptor>>> + Send,
    {
        // Without this handle's lease: gc holds the exclusive lock a lease would wait for.
        let plain = Self {
            inner: self.inner.clone(),
            lease: None,
        };
        let lock = {
            let this = plain.clone();
            spawn_blocking(move || this.lock()).await?
        };
        let root = plain.inner.root.clone();
        // A leased handle records each blob it writes or finds, children included: what a
        // lease names is kept as it is, not walked. Read before the roots (see above).
        let leased = spawn_blocking(move || crate::lease::live_digests(&root)).await?;
        let index = plain.read_index().await?;
        let roots = roots.await?;
        let mut todo: Vec<Descriptor> = index.manifests().clone();
        todo.extend(roots);
        let reachable = crate::store::reachable(&plain, todo).await?;
        let mut report = GcReport::default();
        for d in BlobStore::list(&plain).await? {
            if reachable.contains(&d) || leased.contains(&d) {
                report.kept += 1;
                continue;
            }
            let path = plain.blob_path(&d)?;
            let size = tokio::fs::metadata(&path)
                .await
                .map(|m| m.len())
                .unwrap_or(0);
            if plain.delete(&d).await? {
                report.bytes_freed += size;
                report.removed.push(d);
            }
        }
        let root = plain.root().to_path_buf();
        report.stale_temporaries +=
            spawn_blocking(move || Ok(reap_abandoned_ingests(&root))).await?;
        drop(lock);
        tracing::debug!(
            removed = report.removed.len(),
            bytes = report.bytes_freed,
            "layout gc"
        );
        Ok(report)
    }
}

/// A new `.ingest-*` file in `root` that is locked (shared) from the moment it has a name:
/// made unnamed (`O_TMPFILE`), locked, then linked in. Any such file nobody has locked is
/// therefore abandoned (its writer died: a kill, Ctrl-C) and may go at once. Where the
/// file system has no `O_TMPFILE`, it is named first and locked right after.
fn locked_temporary(root: &Path) -> Result<(std::fs::File, tempfile::TempPath)> {
    use rustix::fs::{FlockOperation, Mode, OFlags};
    let err = |e: std::io::Error| Error::io(root, e);
    match rustix::fs::open(
        root,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) {
        Ok(fd) => {
            rustix::fs::flock(&fd, FlockOperation::LockShared).map_err(|e| err(e.into()))?;
            let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
            // tempfile's names, and its retries when one is taken; the file is ours already.
            let ((), temp) = tempfile::Builder::new()
                .prefix(LOCKED_INGEST_PREFIX)
                .make_in(root, |name| {
                    rustix::fs::linkat(
                        rustix::fs::CWD,
                        proc_path.as_str(),
                        rustix::fs::CWD,
                        name,
                        rustix::fs::AtFlags::SYMLINK_FOLLOW,
                    )
                    .map_err(std::io::Error::from)
                })
                .map_err(err)?
                .into_parts();
            Ok((fd.into(), temp))
        }
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR | rustix::io::Errno::INVAL) => {
            let (file, temp) = tempfile::Builder::new()
                .prefix(INGEST_PREFIX)
                .tempfile_in(root)
                .map_err(err)?
                .into_parts();
            rustix::fs::flock(&file, FlockOperation::LockShared)
                .map_err(|e| Error::io(&*temp, e.into()))?;
            Ok((file, temp))
        }
        Err(e) => Err(err(e.into())),
    }
}

/// Removes the `.ingest-*` files in `root` that no writer holds (see [`locked_temporary`]);
/// how many. Those of the fallback path get a minute, the time between their naming and
/// their locking being unguarded there.
fn reap_abandoned_ingests(root: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut removed = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str().filter(|n| n.starts_with(INGEST_PREFIX)) else {
            continue;
        };
        let settled = name.starts_with(LOCKED_INGEST_PREFIX)
            || e.metadata()
                .and_then(|m| m.created().or_else(|_| m.modified()))
                .is_ok_and(|t| t.elapsed().is_ok_and(|a| a > Duration::from_secs(60)));
        let unused = std::fs::File::open(e.path()).is_ok_and(|f| {
            rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
        });
        if settled && unused && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn invalid(root: &Path, reason: String) -> Error {
    Error::InvalidLayout {
        path: root.to_path_buf(),
        reason,
    }
}

/// The `org.opencontainers.image.ref.name` of an index entry.
pub fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

fn empty_index() -> Result<ImageIndex> {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::new())
        .build()
        .map_err(|source| Error::Build {
            what: "an empty index",
            source,
        })
}

async fn spawn_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|source| Error::Task {
            what: "file system",
            source,
        })?
}

/// Writes a small file by temporary file and rename in `dir`.
fn write_atomic(dir: &Path, dest: &Path, data: &[u8], fsync: bool) -> Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(INGEST_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    tmp.write_all(data).map_err(|e| Error::io(tmp.path(), e))?;
    set_readable(tmp.as_file(), tmp.path())?;
    if fsync {
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(tmp.path(), e))?;
    }
    tmp.persist(dest).map_err(|e| Error::io(dest, e.error))?;
    Ok(())
}

fn set_readable(f: &std::fs::File, path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| Error::io(path, e))
}

/// Bytes gathered before they are handed to a blocking thread that hashes and writes them:
/// large enough that the hand-off costs nothing next to the work (a thread hop per small write
/// was most of a pull's time), small enough that many concurrent downloads stay well under the
/// memory target (two such buffers per blob being written).
const WRITE_CHUNK: usize = 512 * 1024;

/// The temporary file and the running digest, owned by whichever thread writes next.
struct Sink {
    file: std::fs::File,
    hasher: Hasher,
    /// Bytes written so far (where the next chunk goes).
    offset: u64,
    /// Whether written chunks are pushed to the disk as they go (the blob is fsynced at
    /// commit).
    write_behind: bool,
}

impl Sink {
    /// Hashes and writes one chunk. With write-behind, the kernel starts writing it to the
    /// disk at once (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does not wait), so that
    /// the fsync at commit finds little left to write instead of the whole blob.
    #[allow(unsafe_code)]
    fn put(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.hasher.update(chunk);
        self.file.write_all(chunk)?;
        if self.write_behind {
            use std::os::fd::AsRawFd;
            let (off, len) = (self.offset as libc::off64_t, chunk.len() as libc::off64_t);
            // SAFETY: a plain system call on a descriptor this sink owns; it reads no memory.
            // Advice only: a filesystem that refuses it loses nothing.
            let _ = unsafe {
                libc::sync_file_range(self.file.as_raw_fd(), off, len, libc::SYNC_FILE_RANGE_WRITE)
            };
        }
        self.offset += chunk.len() as u64;
        Ok(())
    }
}

type SinkTask = tokio::task::JoinHandle<std::io::Result<(Box<Sink>, Vec<u8>)>>;

enum SinkState {
    /// Ready for the next chunk.
    Idle(Box<Sink>),
    /// A blocking thread is hashing and writing a chunk.
    Busy(SinkTask),
    /// A write failed; the blob can only be dropped.
    Failed,
}

/// A blob being written into the layout: a temporary file, hashed as it is written.
///
/// Writes are gathered into a buffer; a full buffer goes to a blocking thread (hash, then
/// `write_all` with std's file) while the next one fills, so the network side and the disk
/// side of a pull run at once on different cores.
struct LayoutWriter {
    layout: OciLayout,
    temp: tempfile::TempPath,
    expected: Expected,
    written: u64,
    buf: Vec<u8>,
    spare: Option<Vec<u8>>,
    sink: SinkState,
}

impl LayoutWriter {
    /// Waits until no chunk is in flight.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let SinkState::Busy(task) = &mut self.sink {
            let done = ready!(Pin::new(task).poll(cx));
            match done {
                Ok(Ok((sink, spare))) => {
                    self.sink = SinkState::Idle(sink);
                    self.spare = Some(spare);
                }
                Ok(Err(e)) => {
                    self.sink = SinkState::Failed;
                    return Poll::Ready(Err(e));
                }
                Err(e) => {
                    self.sink = SinkState::Failed;
                    return Poll::Ready(Err(std::io::Error::other(e)));
                }
            }
        }
        match self.sink {
            SinkState::Idle(_) => Poll::Ready(Ok(())),
            _ => Poll::Ready(Err(std::io::Error::other("an earlier write failed"))),
        }
    }

    /// Hands the gathered bytes to a blocking thread (after the previous chunk is done).
    fn poll_hand_off(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_idle(cx))?;
        if self.buf.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let SinkState::Idle(mut sink) = std::mem::replace(&mut self.sink, SinkState::Failed) else {
            return Poll::Ready(Err(std::io::Error::other("an earlier write failed")));
        };
        let next = self
            .spare
            .take()
            .unwrap_or_else(|| Vec::with_capacity(WRITE_CHUNK));
        let mut chunk = std::mem::replace(&mut self.buf, next);
        self.sink = SinkState::Busy(tokio::task::spawn_blocking(move || {
            sink.put(&chunk)?;
            chunk.clear();
            Ok((sink, chunk))
        }));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for LayoutWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let (Some(size), Some(d)) = (this.expected.size, this.expected.digest.as_ref()) {
            if this.written + data.len() as u64 > size {
                return Poll::Ready(Err(Error::SizeExceeded {
                    digest: d.clone(),
                    expected: size,
                }
                .into_io()));
            }
        }
        if this.buf.len() >= WRITE_CHUNK {
            ready!(this.poll_hand_off(cx))?;
        }
        let n = data.len().min(WRITE_CHUNK - this.buf.len());
        this.buf.extend_from_slice(&data[..n]);
        this.written += n as u64;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_hand_off(cx))?;
        this.poll_idle(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

#[async_trait]
impl BlobWriter for LayoutWriter {
    async fn commit(mut self: Box<Self>) -> Result<BlobInfo> {
        use tokio::io::AsyncWriteExt;
        self.flush().await.map_err(|e| Error::io(&*self.temp, e))?;
        let LayoutWriter {
            layout,
            temp,
            expected,
            written,
            sink,
            ..
        } = *self;
        let SinkState::Idle(sink) = sink else {
            return Err(Error::io(
                &*temp,
                std::io::Error::other("an earlier write failed"),
            ));
        };
        let Sink { file, hasher, .. } = *sink;
        let actual = hasher.finish();
        check_expected(&expected, &actual, written)?;
        let dest = layout.blob_path(&actual)?;
        let fsync = layout.inner.fsync;
        let (lease, root, digest) = (
            layout.lease.clone(),
            layout.inner.root.clone(),
            actual.clone(),
        );
        spawn_blocking(move || {
            set_readable(&file, &temp)?;
            if fsync {
                file.sync_all().map_err(|e| Error::io(&*temp, e))?;
            }
            drop(file);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            // Same content under the same name: replacing an existing blob is harmless.
            let persist = || temp.persist(&dest).map_err(|e| Error::io(&dest, e.error));
            match &lease {
                Some(l) => crate::lease::shared(&root, || {
                    persist()?;
                    l.record(&digest)
                }),
                None => persist().map(drop),
            }
        })
        .await?;
        Ok(BlobInfo {
            digest: actual,
            size: written,
        })
    }

    fn written(&self) -> u64 {
        self.written
    }
}

/// A blob's size from the metadata of its path: `None` when it is not there, an error when
/// something other than a regular file stands under its name.
fn blob_size(
    root: &Path,
    path: &Path,
    meta: std::io::Result<std::fs::Metadata>,
) -> Result<Option<u64>> {
    match meta {
        Ok(m) if m.is_file() => Ok(Some(m.len())),
        Ok(_) => Err(invalid(
            root,
            format!("{} is not a regular file", path.display()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Checks a finished write against what was expected.
pub(crate) fn check_expected(expected: &Expected, actual: &Digest, size: u64) -> Result<()> {
    let named = expected.digest.clone().unwrap_or_else(|| actual.clone());
    if let Some(want) = expected.size {
        if size != want {
            return Err(Error::SizeMismatch {
                digest: named,
                expected: want,
                actual: size,
            });
        }
    }
    if let Some(want) = &expected.digest {
        if want != actual {
            return Err(Error::DigestMismatch {
                expected: want.clone(),
                actual: actual.clone(),
            });
        }
    }
    Ok(())
}

#[async_trait]
impl BlobStore for OciLayout {
    async fn open(&self, desc: &Descriptor) -> Result<BlobReader> {
        let path = self.blob_path(desc.digest())?;
        let file = tokio::fs::File::open(&path).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::BlobNotFound {
                    digest: desc.digest().clone(),
                }
            } else {
                Error::io(&path, e)
            }
        })?;
        verified(file, desc)
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.blob_path(digest)?;
        let root = self.inner.root.clone();
        let Some(lease) = self.lease.clone() else {
            return blob_size(&root, &path, tokio::fs::symlink_metadata(&path).await);
        };
        // Found under a lease, a blob is kept from here on (a copy skips it).
        let d = digest.clone();
        spawn_blocking(move || {
            crate::lease::shared(&root, || {
                let size = blob_size(&root, &path, std::fs::symlink_metadata(&path))?;
                if size.is_some() {
                    lease.record(&d)?;
                }
                Ok(size)
            })
        })
        .await
    }

    async fn ingest(&self, expected: Expected) -> Result<Box<dyn BlobWriter>> {
        let hasher = match &expected.digest {
            Some(d) => {
                path_components(d)?;
                Hasher::for_digest(d)?
            }
            None => Hasher::default(),
        };
        let root = self.inner.root.clone();
        let (file, temp) = spawn_blocking(move || locked_temporary(&root)).await?;
        Ok(Box::new(LayoutWriter {
            layout: self.clone(),
            temp,
            expected,
            written: 0,
            buf: Vec::with_capacity(WRITE_CHUNK),
            spare: None,
            sink: SinkState::Idle(Box::new(Sink {
                file,
                hasher,
                offset: 0,
                write_behind: self.inner.fsync,
            })),
        }))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let path = self.blob_path(digest)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    async fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for alg in ["sha256", "sha512"] {
            let dir = self.inner.root.join("blobs").join(alg);
            let mut rd = match tokio::fs::read_dir(&dir).await {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            };
            while let Some(e) = rd.next_entry().await.map_err(|e| Error::io(&dir, e))? {
                if let Some(name) = e.file_name().to_str() {
                    if let Ok(d) = parse_digest(&format!("{alg}:{name}")) {
                        out.push(d);
                    }
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl ReferenceStore for OciLayout {
    async fn resolve(&self, name: &str) -> Result<Descriptor> {
        let index = self.read_index().await?;
        index
            .manifests()
            .iter()
            .rev()
            .find(|d| ref_name(d) == Some(name))
            .cloned()
            .ok_or_else(|| Error::ReferenceNotFound {
                name: name.to_owned(),
            })
    }

    async fn set(&self, name: &str, desc: &Descriptor) -> Result<()> {
        self.tag(name, desc, None).await
    }

    async fn remove(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.update_index(move |index| {
            let before = index.manifests().len();
            let kept: Vec<Descriptor> = index
                .manifests()
                .iter()
                .filter(|d| ref_name(d) != Some(name.as_str()))
                .cloned()
                .collect();
            let changed = kept.len() != before;
            index.set_manifests(kept);
            Ok((changed, changed))
        })
        .await
    }

    async fn list(&self) -> Result<Vec<(String, Descriptor)>> {
        let index = self.read_index().await?;
        let mut by_name: HashMap<String, Descriptor> = HashMap::new();
        for d in index.manifests() {
            if let Some(n) = ref_name(d) {
                by_name.insert(n.to_owned(), d.clone());
            }
        }
        let mut out: Vec<_> = by_name.into_iter().collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

#[async_trait]
impl ImageSource for OciLayout {
    async fn manifest(&self, reference: &ManifestRef) -> Result<Manifest> {
        match reference {
            ManifestRef::Tag(t) => {
                let desc = match ReferenceStore::resolve(self, t).await {
                    Ok(d) => d,
                    // A layout with exactly one untagged image answers to the empty tag, as
                    // skopeo's `oci:DIR` without a tag does.
                    Err(e) if e.is_not_found() && t.is_empty() => {
                        let index = self.read_index().await?;
                        match index.manifests().as_slice() {
                            [only] => only.clone(),
                            _ => return Err(e),
                        }
                    }
                    Err(e) => return Err(e),
                };
                adapter::manifest(self, &desc).await
            }
            ManifestRef::Digest(d) => adapter::manifest_by_digest(self, d).await,
        }
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobReader> {
        self.open(desc).await
    }
}

#[async_trait]
impl ImageDestination for OciLayout {
    async fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        adapter::has_blob(self, desc).await
    }

    async fn put_blob(&self, desc: &Descriptor, reader: BlobReader) -> Result<()> {
        adapter::put_blob(self, desc, reader).await
    }

    /// Ingest checks size and digest before the blob becomes visible.
    fn verifies_blobs(&self) -> bool {
        true
    }

    async fn put_manifest(&self, manifest: &Manifest, tag: Option<&str>) -> Result<()> {
        adapter::put_manifest(self, manifest).await?;
        if let Some(tag) = tag {
            self.tag(tag, &manifest.descriptor(), None).await?;
        }
        Ok(())
    }
}

//! What a registry keeps: content-addressed blobs (a [`BlobStore`]), one [`ReferenceStore`]
//! per repository for its tags, manifests and blob links, and upload sessions.

use async_trait::async_trait;
use oci_rs_image::oci_spec::image::Digest;
use oci_rs_image::{
    BlobInfo, BlobReader, BlobStore, Error, Expected, OciLayout, ReferenceStore, Result,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// What [`RegistryStorage::upload_append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// The chunk was added; the session's new size.
    Size(u64),
    /// The chunk did not start at the session's size (`size`): nothing was written.
    WrongOffset {
        /// The session's size.
        size: u64,
    },
    /// The session would pass the limit: the chunk was dropped.
    OverLimit,
    /// The client's stream failed part way: what arrived is kept (`size` now), so that the
    /// client can resume from there.
    Interrupted {
        /// The session's size now.
        size: u64,
        /// What the stream said.
        error: String,
    },
}

/// What [`DiskStorage::gc`] removed and kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryGcReport {
    /// Blobs removed.
    pub removed: Vec<Digest>,
    /// Their bytes.
    pub bytes_freed: u64,
    /// Blobs kept (named, reached or leased).
    pub kept: usize,
    /// Upload sessions removed as abandoned.
    pub uploads_removed: usize,
}

/// An upload session: what `POST /v2/<name>/blobs/uploads/` starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    /// The repository it was started in (it may be used in that one only).
    pub repository: String,
    /// Bytes received so far.
    pub size: u64,
}

/// The storage of a [`Registry`](super::Registry): blobs shared by every repository, a
/// reference store per repository, and upload sessions that outlive the process (their
/// state is in the storage, not in memory).
///
/// A repository's reference store holds three kinds of names: tags (`latest`), manifests by
/// digest (`sha256:…`, what the repository has) and blob links (`blob:sha256:…`, the blobs
/// pushed to or mounted in it, the only ones it serves).
#[async_trait]
pub trait RegistryStorage: Send + Sync {
    /// The content store of every blob and manifest.
    fn blobs(&self) -> &dyn BlobStore;

    /// A handle on the same content store for a push: what it writes or finds present is
    /// kept from a garbage collection until the handle is dropped (after the push has named
    /// it in its repository).
    async fn leased_blobs(&self) -> Result<Arc<dyn BlobStore>>;

    /// The reference store of a repository; `None` when it does not exist and `create` is
    /// false. `name` has been validated.
    async fn repository(&self, name: &str, create: bool)
        -> Result<Option<Arc<dyn ReferenceStore>>>;

    /// Every repository's name, sorted.
    async fn repositories(&self) -> Result<Vec<String>>;

    /// `len` bytes of a blob from `start` (a `Range` request); the caller checked both
    /// against the blob's size.
    async fn read_range(&self, digest: &Digest, start: u64, len: u64) -> Result<BlobReader>;

    /// Starts an upload session for `repository` and returns its id.
    async fn upload_start(&self, repository: &str) -> Result<String>;

    /// A session's state; `None` when there is no such session.
    async fn upload_info(&self, id: &str) -> Result<Option<UploadInfo>>;

    /// Appends what `reader` yields at `offset`, which must be the session's size, keeping
    /// the session at most `limit` bytes. What arrived before a read error stays (the client
    /// resumes from there); a chunk over the limit is dropped whole.
    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        reader: &mut (dyn AsyncRead + Send + Unpin),
        limit: u64,
    ) -> Result<Appended>;

    /// Moves a session's bytes into `into` (a handle on the blob store, leased), verified
    /// against `digest` while they stream, and ends the session (also when they do not
    /// match: nothing is kept then).
    async fn upload_commit(
        &self,
        id: &str,
        digest: &Digest,
        into: &dyn BlobStore,
    ) -> Result<BlobInfo>;

    /// Ends a session and drops its bytes; false when there was none.
    async fn upload_cancel(&self, id: &str) -> Result<bool>;
}

/// [`RegistryStorage`] in a directory: `blobs/` is an OCI layout holding every blob,
/// `repositories/NAME/_layout/` an OCI layout per repository (its `index.json` holds the
/// names; its blobs directory stays empty; no name component starts with `_`, so no
/// repository's directory is another's layout), `uploads/ID/` a session (`data` and
/// `repository`).
#[derive(Debug, Clone)]
pub struct DiskStorage {
    root: PathBuf,
    blobs: OciLayout,
    /// Repositories opened so far (opening one reads its files; a handle is a clone).
    repos: Arc<std::sync::Mutex<std::collections::HashMap<String, OciLayout>>>,
}

impl DiskStorage {
    /// Opens (creating when missing) the storage at `root`.
    pub async fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        for d in ["repositories", "uploads"] {
            let p = root.join(d);
            tokio::fs::create_dir_all(&p)
                .await
                .map_err(|e| Error::io(&p, e))?;
        }
        let blobs = OciLayout::create(root.join("blobs")).await?;
        Ok(Self {
            root,
            blobs,
            repos: Arc::default(),
        })
    }

    /// The blob store (an OCI layout).
    pub fn layout(&self) -> &OciLayout {
        &self.blobs
    }

    /// Removes every blob that no repository names (by tag, manifest or blob link) nor
    /// reaches through a manifest, and the upload sessions nobody has written to for
    /// `upload_max_age`. Safe while pushes run, in this process or another: a push writes
    /// under a lease ([`RegistryStorage::leased_blobs`]) and names its blobs before it drops
    /// the lease, and the roots are read after the leases (see
    /// [`OciLayout::gc_with_roots`]).
    pub async fn gc(&self, upload_max_age: std::time::Duration) -> Result<RegistryGcReport> {
        let roots = async {
            let mut roots = Vec::new();
            for name in self.repositories().await? {
                if let Some(repo) = self.repository(&name, false).await? {
                    roots.extend(repo.list().await?.into_iter().map(|(_, d)| d));
                }
            }
            Ok(roots)
        };
        let blobs = self.blobs.gc_with_roots(roots).await?;
        let mut uploads_removed = 0;
        let dir = self.root.join("uploads");
        let mut rd = tokio::fs::read_dir(&dir)
            .await
            .map_err(|e| Error::io(&dir, e))?;
        while let Some(e) = rd.next_entry().await.map_err(|e| Error::io(&dir, e))? {
            let data = e.path().join("data");
            let idle = match tokio::fs::metadata(&data).await.and_then(|m| m.modified()) {
                Ok(t) => t.elapsed().unwrap_or_default(),
                // A session being made, or a stray entry: by the directory's age.
                Err(_) => e
                    .metadata()
                    .await
                    .and_then(|m| m.modified())
                    .map(|t| t.elapsed().unwrap_or_default())
                    .unwrap_or_default(),
            };
            if idle >= upload_max_age && tokio::fs::remove_dir_all(e.path()).await.is_ok() {
                uploads_removed += 1;
            }
        }
        Ok(RegistryGcReport {
            removed: blobs.removed,
            bytes_freed: blobs.bytes_freed,
            kept: blobs.kept,
            uploads_removed,
        })
    }

    fn upload_dir(&self, id: &str) -> Result<PathBuf> {
        check_upload_id(id)?;
        Ok(self.root.join("uploads").join(id))
    }
}

/// `id` as [`random_id`] makes them (32 lowercase hex digits), before it names anything.
pub(super) fn check_upload_id(id: &str) -> Result<()> {
    if id.len() != 32
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(Error::InvalidReferenceName {
            name: id.chars().take(64).collect(),
            reason: "not an upload id".into(),
        });
    }
    Ok(())
}

/// 128 random bits from the kernel, as 32 hex digits: an upload id is a capability.
pub(super) fn random_id() -> Result<String> {
    let mut b = [0u8; 16];
    let path = Path::new("/dev/urandom");
    std::io::Read::read_exact(
        &mut std::fs::File::open(path).map_err(|e| Error::io(path, e))?,
        &mut b,
    )
    .map_err(|e| Error::io(path, e))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The directory of a repository's layout under its name's directory.
const LAYOUT: &str = "_layout";

fn not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

#[async_trait]
impl RegistryStorage for DiskStorage {
    fn blobs(&self) -> &dyn BlobStore {
        &self.blobs
    }

    async fn leased_blobs(&self) -> Result<Arc<dyn BlobStore>> {
        let layout = self.blobs.clone();
        let leased = tokio::task::spawn_blocking(move || layout.leased())
            .await
            .map_err(|e| Error::io(self.blobs.root(), std::io::Error::other(e)))??;
        Ok(Arc::new(leased))
    }

    async fn repository(
        &self,
        name: &str,
        create: bool,
    ) -> Result<Option<Arc<dyn ReferenceStore>>> {
        let cached = self
            .repos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        if let Some(layout) = cached {
            return Ok(Some(Arc::new(layout)));
        }
        let dir = self.root.join("repositories").join(name).join(LAYOUT);
        let layout = if tokio::fs::try_exists(dir.join("oci-layout"))
            .await
            .unwrap_or(false)
        {
            OciLayout::open(&dir).await?
        } else if create {
            OciLayout::create(&dir).await?
        } else {
            return Ok(None);
        };
        self.repos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), layout.clone());
        Ok(Some(Arc::new(layout)))
    }

    async fn repositories(&self) -> Result<Vec<String>> {
        let base = self.root.join("repositories");
        let mut out = Vec::new();
        let mut stack = vec![String::new()];
        while let Some(prefix) = stack.pop() {
            let dir = base.join(&prefix);
            let mut rd = match tokio::fs::read_dir(&dir).await {
                Ok(rd) => rd,
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            };
            while let Some(e) = rd.next_entry().await.map_err(|e| Error::io(&dir, e))? {
                let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if name.starts_with('_') || !e.file_type().await.is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let full = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                if tokio::fs::try_exists(base.join(&full).join(LAYOUT).join("oci-layout"))
                    .await
                    .unwrap_or(false)
                {
                    out.push(full.clone());
                }
                stack.push(full);
            }
        }
        out.sort();
        Ok(out)
    }

    async fn read_range(&self, digest: &Digest, start: u64, len: u64) -> Result<BlobReader> {
        let path = self.blobs.blob_path(digest)?;
        let mut f = tokio::fs::File::open(&path).await.map_err(|e| {
            if not_found(&e) {
                Error::BlobNotFound {
                    digest: digest.clone(),
                }
            } else {
                Error::io(&path, e)
            }
        })?;
        f.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| Error::io(&path, e))?;
        Ok(Box::pin(f.take(len)))
    }

    async fn upload_start(&self, repository: &str) -> Result<String> {
        let id = random_id()?;
        let dir = self.upload_dir(&id)?;
        tokio::fs::create_dir(&dir)
            .await
            .map_err(|e| Error::io(&dir, e))?;
        let data = dir.join("data");
        tokio::fs::write(&data, b"")
            .await
            .map_err(|e| Error::io(&data, e))?;
        // Written last: a session without it is unfinished and is not one.
        let repo = dir.join("repository");
        tokio::fs::write(&repo, repository.as_bytes())
            .await
            .map_err(|e| Error::io(&repo, e))?;
        Ok(id)
    }

    async fn upload_info(&self, id: &str) -> Result<Option<UploadInfo>> {
        let Ok(dir) = self.upload_dir(id) else {
            return Ok(None);
        };
        let repo = dir.join("repository");
        let repository = match tokio::fs::read_to_string(&repo).await {
            Ok(s) => s,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(Error::io(&repo, e)),
        };
        let data = dir.join("data");
        let size = match tokio::fs::metadata(&data).await {
            Ok(m) => m.len(),
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(Error::io(&data, e)),
        };
        Ok(Some(UploadInfo { repository, size }))
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        reader: &mut (dyn AsyncRead + Send + Unpin),
        limit: u64,
    ) -> Result<Appended> {
        let dir = self.upload_dir(id)?;
        let data = dir.join("data");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&data)
            .map_err(|e| Error::io(&data, e))?;
        // One writer per session at a time, across processes too.
        let file = tokio::task::spawn_blocking(move || {
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map(|()| file)
        })
        .await
        .map_err(|e| Error::io(&data, std::io::Error::other(e)))?
        .map_err(|e| Error::io(&data, e.into()))?;
        let size = file.metadata().map_err(|e| Error::io(&data, e))?.len();
        if size != offset {
            return Ok(Appended::WrongOffset { size });
        }
        let mut f = tokio::fs::File::from_std(file);
        f.seek(std::io::SeekFrom::Start(size))
            .await
            .map_err(|e| Error::io(&data, e))?;
        let room = limit.saturating_sub(size);
        let mut buf = vec![0u8; 256 << 10];
        let mut n = 0u64;
        loop {
            let got = match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(got) => got,
                Err(e) => {
                    // What arrived before the client went away stays: the upload resumes there.
                    f.flush().await.map_err(|e| Error::io(&data, e))?;
                    return Ok(Appended::Interrupted {
                        size: size + n,
                        error: e.to_string(),
                    });
                }
            };
            n += got as u64;
            if n > room {
                f.set_len(size).await.map_err(|e| Error::io(&data, e))?;
                return Ok(Appended::OverLimit);
            }
            f.write_all(&buf[..got])
                .await
                .map_err(|e| Error::io(&data, e))?;
        }
        f.flush().await.map_err(|e| Error::io(&data, e))?;
        Ok(Appended::Size(size + n))
    }

    async fn upload_commit(
        &self,
        id: &str,
        digest: &Digest,
        into: &dyn BlobStore,
    ) -> Result<BlobInfo> {
        let dir = self.upload_dir(id)?;
        let data = dir.join("data");
        let file = std::fs::File::open(&data).map_err(|e| Error::io(&data, e))?;
        // After any append still running on this session (they hold the same lock).
        let file = tokio::task::spawn_blocking(move || {
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map(|()| file)
        })
        .await
        .map_err(|e| Error::io(&data, std::io::Error::other(e)))?
        .map_err(|e| Error::io(&data, e.into()))?;
        let mut f = tokio::fs::File::from_std(file);
        let mut w = into
            .ingest(Expected {
                digest: Some(digest.clone()),
                size: None,
            })
            .await?;
        let copied = tokio::io::copy(&mut f, &mut w).await;
        let result = match copied {
            Ok(_) => w.commit().await,
            Err(e) => Err(Error::io(&data, e)),
        };
        let _ = tokio::fs::remove_dir_all(&dir).await;
        result
    }

    async fn upload_cancel(&self, id: &str) -> Result<bool> {
        let Ok(dir) = self.upload_dir(id) else {
            return Ok(false);
        };
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(Error::io(&dir, e)),
        }
    }
}

//! [`RegistryStorage`] in an S3 bucket (feature `s3`), through the `object_store` crate:
//! one object per blob, names and upload sessions as objects too, nothing on the local disk,
//! so that several `registry serve` processes over one bucket serve the same content and a
//! client can continue an upload on another of them.
//!
//! Objects under the prefix:
//!
//! - `blobs/sha256/HEX`: a blob, written as an S3 multipart upload that is completed only
//!   once its digest is checked: no partial or wrong object is ever visible;
//! - `repositories/NAME/_repository`: the repository exists; `repositories/NAME/_refs/REF`:
//!   what a tag, manifest digest or blob link names (a descriptor, JSON);
//! - `uploads/ID/repository` and `uploads/ID/chunks/OFFSET`: a session and its chunks;
//! - `leases/ID`: a push between a blob's upload and its name; `pins/ID/ALG/HEX`: a blob that
//!   push found present and is about to name (a cross-repository mount, a manifest's
//!   content); `gc/ID`: a gc running, holding the digests it is about to delete, one per line
//!   (see [`S3Storage::gc`]).

use super::storage::{Appended, RegistryStorage, UploadInfo};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path as OPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use oci_rs_image::oci_spec::image::{Descriptor, Digest};
use oci_rs_image::{
    digest_path_components, parse_digest, BlobInfo, BlobReader, BlobStore, BlobWriter, Error,
    Expected, Hasher, ReferenceStore, Result,
};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// The digest a blob's key names (`…/blobs/ALG/HEX`), if it names one.
fn digest_of_key(key: &OPath) -> Option<Digest> {
    let mut parts: Vec<String> = key.parts().map(|p| p.as_ref().to_owned()).collect();
    let hex = parts.pop()?;
    let alg = parts.pop()?;
    parse_digest(&format!("{alg}:{hex}")).ok()
}

/// What failed against the bucket.
#[derive(Debug, thiserror::Error)]
#[error("S3: {what}")]
struct S3Error {
    what: &'static str,
    #[source]
    source: object_store::Error,
}

fn s3_error(what: &'static str, source: object_store::Error) -> Error {
    Error::foreign(S3Error { what, source })
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

/// The S3 storage of a registry: an `object_store` store (an S3 bucket, or any other backend
/// of that crate) and a prefix in it.
#[derive(Clone)]
pub struct S3Storage {
    blobs: S3Blobs,
    clock_margin: std::time::Duration,
}

impl std::fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Storage")
            .field("store", &self.blobs.store.to_string())
            .field("prefix", &self.blobs.prefix)
            .finish()
    }
}

/// The blobs of an [`S3Storage`] as a [`BlobStore`].
#[derive(Clone)]
struct S3Blobs {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl S3Blobs {
    fn path(&self, rest: &str) -> OPath {
        if self.prefix.is_empty() {
            OPath::from(rest)
        } else {
            OPath::from(format!("{}/{rest}", self.prefix))
        }
    }

    fn blob(&self, d: &Digest) -> Result<OPath> {
        let (alg, hex) = digest_path_components(d)?;
        Ok(self.path(&format!("blobs/{alg}/{hex}")))
    }

    async fn get_reader(
        &self,
        path: &OPath,
        range: Option<std::ops::Range<u64>>,
    ) -> std::result::Result<BlobReader, object_store::Error> {
        let opts = object_store::GetOptions {
            range: range.map(object_store::GetRange::Bounded),
            ..Default::default()
        };
        let got = self.store.get_opts(path, opts).await?;
        let stream = got.into_stream().map_err(std::io::Error::other);
        Ok(Box::pin(tokio_util::io::StreamReader::new(stream)))
    }
}

impl S3Storage {
    /// A registry's storage at `prefix` (may be empty) in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self {
            blobs: S3Blobs {
                store,
                prefix: prefix.trim_matches('/').to_owned(),
            },
            clock_margin: S3_GC_MARGIN,
        }
    }

    /// What [`S3Storage::gc`] allows between the clocks of the bucket's frontends
    /// ([`S3_GC_MARGIN`] unless set): blobs written this long before the oldest live lease
    /// or gc's start are kept too.
    pub fn with_clock_margin(mut self, margin: std::time::Duration) -> Self {
        self.clock_margin = margin;
        self
    }

    /// `s3://BUCKET/PREFIX` with the credentials, region and endpoint of the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
    /// `AWS_ALLOW_HTTP`, ...), as object_store's `AmazonS3Builder::from_env` reads them.
    pub fn from_url(url: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidReference {
            input: url.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("not s3://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket"));
        }
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| s3_error("configuring the bucket", e))?;
        Ok(Self::new(Arc::new(store), prefix))
    }

    /// Removes every blob that no repository names (by tag, manifest or blob link) nor
    /// reaches through a manifest, and the upload sessions nobody has written to for
    /// `upload_max_age`: [`DiskStorage::gc`](super::DiskStorage::gc) over the bucket, and as
    /// safe while replicas serve pushes.
    ///
    /// Every write of a blob happens under a lease, an object under `leases/` that lives
    /// until the blob is named in its repository ([`RegistryStorage::leased_blobs`]). gc
    /// first writes an object of its own, whose time the bucket sets (all times here are the
    /// bucket's, never a replica's clock), then lists the leases, then reads the names: a
    /// blob is kept when something names or reaches it, or when it was written after the
    /// oldest live lease began or after gc began (less [`S3Storage::with_clock_margin`]). A
    /// blob's time is when its upload began, which is after its lease was taken. Leases older
    /// than [`S3_LEASE_MAX_AGE`] belong to replicas that died mid-push and are removed.
    ///
    /// A push may also name a blob it found present (a cross-repository mount, a manifest
    /// naming blobs already linked), which its time does not protect. The leased handle
    /// writes a pin (`pins/LEASE/ALG/HEX`) before it answers that the blob is there, then
    /// reads the markers of running gcs, then the blob: gc writes the digests it is about to
    /// delete into its marker, then reads the pins, and keeps what is pinned. Whichever of
    /// the two writes first, the other reads it (S3 reads after writes consistently): either
    /// gc sees the pin and keeps the blob, or the push sees the blob among a gc's candidates
    /// (or already gone) and answers that it is not there, so the client uploads it.
    ///
    /// Multipart uploads that a dead replica left unfinished are invisible here: a bucket
    /// lifecycle rule (`AbortIncompleteMultipartUpload`) removes their parts. Each blob is
    /// read again just before it is deleted, and kept when it was written anew since the
    /// listing. What this does not cover: a push slower than [`S3_LEASE_MAX_AGE`] (its lease
    /// and pins count as abandoned). A gc that has held its candidates for half that long
    /// stops deleting (pushes heed its marker for the whole of it, by their own clocks).
    /// A blob written again after gc announced it (a client that uploads what a mount was
    /// refused) is no longer doomed: gc keeps a blob whose object changed since its listing,
    /// and a push finds it present.
    pub async fn gc(&self, upload_max_age: std::time::Duration) -> Result<super::RegistryGcReport> {
        let store = &self.blobs.store;
        let marker = self
            .blobs
            .path(&format!("gc/{}", super::storage::random_id()?));
        store
            .put(&marker, PutPayload::from_static(b""))
            .await
            .map_err(|e| s3_error("marking the start of gc", e))?;
        let result = self.gc_since(&marker, upload_max_age).await;
        if let Err(e) = store.delete(&marker).await {
            tracing::warn!(error = %e, "removing gc's marker");
        }
        result
    }

    async fn gc_since(
        &self,
        marker: &OPath,
        upload_max_age: std::time::Duration,
    ) -> Result<super::RegistryGcReport> {
        let store = &self.blobs.store;
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let started = store
            .head(marker)
            .await
            .map_err(|e| s3_error("reading gc's marker", e))?
            .last_modified
            .timestamp_millis();
        let mut cutoff = started;
        for lease in self.list_prefix("leases").await? {
            let at = lease.last_modified.timestamp_millis();
            if started.saturating_sub(at) > ms(S3_LEASE_MAX_AGE) {
                tracing::info!(lease = %lease.location, "removing an expired lease");
                let _ = store.delete(&lease.location).await;
            } else {
                cutoff = cutoff.min(at);
            }
        }
        cutoff = cutoff.saturating_sub(ms(self.clock_margin));
        let mut roots = Vec::new();
        for name in self.repositories().await? {
            if let Some(repo) = self.repository(&name, false).await? {
                roots.extend(repo.list().await?.into_iter().map(|(_, d)| d));
            }
        }
        let reachable = oci_rs_image::reachable(&self.blobs, roots).await?;
        let mut report = super::RegistryGcReport::default();
        let mut candidates = Vec::new();
        for m in self.list_prefix("blobs").await? {
            let Some(d) = digest_of_key(&m.location) else {
                continue;
            };
            if reachable.contains(&d) || m.last_modified.timestamp_millis() >= cutoff {
                report.kept += 1;
            } else {
                candidates.push((d, m));
            }
        }
        if !candidates.is_empty() {
            // Announced before the pins are read: a push that pins one of these after this
            // reads it here and does not name it (see above).
            let mut list = String::new();
            for (d, _) in &candidates {
                list.push_str(d.as_ref());
                list.push('\n');
            }
            store
                .put(marker, PutPayload::from(list.into_bytes()))
                .await
                .map_err(|e| s3_error("writing gc's candidates", e))?;
        }
        let announced = std::time::Instant::now();
        let pinned = self.pinned(started).await?;
        for (d, m) in candidates {
            if pinned.contains(&d) {
                report.kept += 1;
                continue;
            }
            // Pushes heed a marker for S3_LEASE_MAX_AGE by their own clocks: half of it
            // leaves room for a replica whose clock runs ahead of the bucket's.
            if announced.elapsed() >= S3_LEASE_MAX_AGE / 2 {
                tracing::warn!(
                    "gc stops deleting: its candidates are older than half a lease's life"
                );
                report.kept += 1;
                continue;
            }
            // Read again just before the delete: a push may have written this blob anew
            // (under its lease) since the listing, and then it is kept.
            // At a second's resolution: a listing may give milliseconds where HEAD's
            // Last-Modified header cannot (MinIO); the ETag tells a new object apart.
            match store.head(&m.location).await {
                Ok(now)
                    if now.last_modified.timestamp() == m.last_modified.timestamp()
                        && now.e_tag == m.e_tag => {}
                Ok(_) => {
                    report.kept += 1;
                    continue;
                }
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(s3_error("reading a blob before deleting it", e)),
            }
            store
                .delete(&m.location)
                .await
                .map_err(|e| s3_error("deleting a blob", e))?;
            report.bytes_freed += m.size;
            report.removed.push(d);
        }
        // The markers of gcs that died.
        for m in self.list_prefix("gc").await? {
            if m.location != *marker
                && started.saturating_sub(m.last_modified.timestamp_millis()) > ms(S3_LEASE_MAX_AGE)
            {
                let _ = store.delete(&m.location).await;
            }
        }
        // Sessions: by the newest of their objects.
        let mut sessions: std::collections::BTreeMap<String, (i64, Vec<OPath>)> =
            Default::default();
        for m in self.list_prefix("uploads").await? {
            let rel = m.location.prefix_match(&self.blobs.path("uploads"));
            let Some(id) = rel
                .and_then(|mut r| r.next())
                .map(|p| p.as_ref().to_owned())
            else {
                continue;
            };
            let e = sessions.entry(id).or_insert((i64::MIN, Vec::new()));
            e.0 = e.0.max(m.last_modified.timestamp_millis());
            e.1.push(m.location);
        }
        for (_, (newest, objects)) in sessions {
            if started.saturating_sub(newest) >= ms(upload_max_age) {
                for o in objects {
                    let _ = store.delete(&o).await;
                }
                report.uploads_removed += 1;
            }
        }
        Ok(report)
    }

    /// The objects under `rest` of the prefix.
    async fn list_prefix(&self, rest: &str) -> Result<Vec<object_store::ObjectMeta>> {
        self.blobs
            .store
            .list(Some(&self.blobs.path(rest)))
            .try_collect()
            .await
            .map_err(|e| s3_error("listing the bucket", e))
    }

    /// The digests live leases pinned (see [`S3Storage::gc`]); pins older than
    /// [`S3_LEASE_MAX_AGE`] at `now` (ms, the bucket's time) are removed instead.
    async fn pinned(&self, now: i64) -> Result<std::collections::HashSet<Digest>> {
        let max = i64::try_from(S3_LEASE_MAX_AGE.as_millis()).unwrap_or(i64::MAX);
        let mut out = std::collections::HashSet::new();
        for m in self.list_prefix("pins").await? {
            if now.saturating_sub(m.last_modified.timestamp_millis()) > max {
                let _ = self.blobs.store.delete(&m.location).await;
            } else if let Some(d) = digest_of_key(&m.location) {
                out.insert(d);
            }
        }
        Ok(out)
    }

    fn session(&self, id: &str, rest: &str) -> Result<OPath> {
        super::storage::check_upload_id(id)?;
        Ok(self.blobs.path(&format!("uploads/{id}/{rest}")))
    }

    /// The chunks of a session, in order: (offset, size, path).
    async fn chunks(&self, id: &str) -> Result<Vec<(u64, u64, OPath)>> {
        let prefix = self.session(id, "chunks")?;
        let mut out: Vec<(u64, u64, OPath)> = self
            .blobs
            .store
            .list(Some(&prefix))
            .map_err(|e| s3_error("listing an upload's chunks", e))
            .try_filter_map(|m| async move {
                Ok(m.location
                    .filename()
                    .and_then(|f| f.parse::<u64>().ok())
                    .map(|off| (off, m.size, m.location.clone())))
            })
            .try_collect()
            .await?;
        out.sort_by_key(|c| c.0);
        Ok(out)
    }
}

/// What an [`S3Writer`] sends to the task that drives its multipart upload.
enum Part {
    Data(Bytes),
    Finish,
}

/// A blob being written: the bytes go to a task that drives an S3 multipart upload, and are
/// hashed on the way. The upload is completed on [`commit`](BlobWriter::commit) when the
/// digest and size check out, and aborted otherwise, or when the writer is dropped.
struct S3Writer {
    tx: Option<tokio_util::sync::PollSender<Part>>,
    task: Option<tokio::task::JoinHandle<std::result::Result<(), object_store::Error>>>,
    hasher: Option<Hasher>,
    expected: Expected,
    written: u64,
}

impl AsyncWrite for S3Writer {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        let this = &mut *self;
        let Some(tx) = this.tx.as_mut() else {
            return Poll::Ready(Err(std::io::Error::other("the upload has ended")));
        };
        match tx.poll_reserve(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => {
                return Poll::Ready(Err(std::io::Error::other("the S3 upload failed")))
            }
            Poll::Ready(Ok(())) => {}
        }
        let n = buf.len().min(1 << 20);
        if tx
            .send_item(Part::Data(Bytes::copy_from_slice(&buf[..n])))
            .is_err()
        {
            return Poll::Ready(Err(std::io::Error::other("the S3 upload failed")));
        }
        if let Some(h) = this.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        this.written += n as u64;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl BlobWriter for S3Writer {
    async fn commit(mut self: Box<Self>) -> Result<BlobInfo> {
        let actual = self
            .hasher
            .take()
            .map(Hasher::finish)
            .unwrap_or_else(|| oci_rs_image::sha256(b""));
        let check = (|| {
            if let Some(size) = self.expected.size {
                if size != self.written {
                    return Err(Error::SizeMismatch {
                        digest: actual.clone(),
                        expected: size,
                        actual: self.written,
                    });
                }
            }
            if let Some(want) = &self.expected.digest {
                if *want != actual {
                    return Err(Error::DigestMismatch {
                        expected: want.clone(),
                        actual: actual.clone(),
                    });
                }
            }
            Ok(())
        })();
        let mut tx = self.tx.take();
        if check.is_ok() {
            if let Some(tx) = tx.as_mut() {
                let sent = futures_util::future::poll_fn(|cx| tx.poll_reserve(cx)).await;
                if sent.is_err() || tx.send_item(Part::Finish).is_err() {
                    return Err(Error::Stream(std::io::Error::other("the S3 upload failed")));
                }
            }
        }
        // Without Finish the task aborts the upload.
        drop(tx);
        let done = match self.task.take() {
            Some(t) => t
                .await
                .map_err(|e| Error::Stream(std::io::Error::other(e)))?,
            None => Ok(()),
        };
        check?;
        done.map_err(|e| s3_error("completing a blob", e))?;
        Ok(BlobInfo {
            digest: actual,
            size: self.written,
        })
    }

    fn written(&self) -> u64 {
        self.written
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        // Dropped without commit: the task sees the channel close and aborts the upload.
        self.tx.take();
    }
}

/// Starts a multipart upload of `path` driven by a task; the writer's end.
async fn multipart_writer(
    store: &Arc<dyn ObjectStore>,
    path: OPath,
    expected: Expected,
) -> Result<S3Writer> {
    let hasher = match &expected.digest {
        Some(d) => Hasher::for_digest(d)?,
        None => Hasher::default(),
    };
    let upload = store
        .put_multipart(&path)
        .await
        .map_err(|e| s3_error("starting a multipart upload", e))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Part>(4);
    let task = tokio::spawn(async move {
        let mut w = WriteMultipart::new(upload);
        loop {
            match rx.recv().await {
                Some(Part::Data(b)) => {
                    if let Err(e) = w.wait_for_capacity(4).await {
                        let _ = w.abort().await;
                        return Err(e);
                    }
                    w.write(&b);
                }
                Some(Part::Finish) => return w.finish().await.map(|_| ()),
                None => {
                    let _ = w.abort().await;
                    return Ok(());
                }
            }
        }
    });
    Ok(S3Writer {
        tx: Some(tokio_util::sync::PollSender::new(tx)),
        task: Some(task),
        hasher: Some(hasher),
        expected,
        written: 0,
    })
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn open(&self, desc: &Descriptor) -> Result<BlobReader> {
        let path = self.blob(desc.digest())?;
        let reader = self.get_reader(&path, None).await.map_err(|e| {
            if is_not_found(&e) {
                Error::BlobNotFound {
                    digest: desc.digest().clone(),
                }
            } else {
                s3_error("reading a blob", e)
            }
        })?;
        Ok(Box::pin(oci_rs_image::VerifyingReader::new(
            reader,
            desc.digest().clone(),
            Some(desc.size()),
        )?))
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match self.store.head(&self.blob(digest)?).await {
            Ok(m) => Ok(Some(m.size)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(s3_error("looking up a blob", e)),
        }
    }

    async fn ingest(&self, expected: Expected) -> Result<Box<dyn BlobWriter>> {
        let Some(d) = expected.digest.clone() else {
            // Content-addressed only: the registry always knows the digest it expects.
            return Err(Error::InvalidReferenceName {
                name: String::new(),
                reason: "an S3 blob is written under the digest it must have".into(),
            });
        };
        let path = self.blob(&d)?;
        Ok(Box::new(
            multipart_writer(&self.store, path, expected).await?,
        ))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let path = self.blob(digest)?;
        if self.stat(digest).await?.is_none() {
            return Ok(false);
        }
        self.store
            .delete(&path)
            .await
            .map_err(|e| s3_error("deleting a blob", e))?;
        Ok(true)
    }

    async fn list(&self) -> Result<Vec<Digest>> {
        let prefix = self.path("blobs");
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| s3_error("listing blobs", e))?;
        Ok(metas
            .iter()
            .filter_map(|m| digest_of_key(&m.location))
            .collect())
    }
}

/// How long a lease object counts: one older than this belongs to a replica that died
/// mid-push, and [`S3Storage::gc`] removes it. Pushes last far less (each request has its
/// deadline).
pub const S3_LEASE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// What [`S3Storage::gc`] allows between the clocks of the bucket's frontends by default:
/// blobs written this long before the oldest live lease (or before gc began) are kept too.
pub const S3_GC_MARGIN: std::time::Duration = std::time::Duration::from_secs(10);

/// The blob store of an [`S3Storage`] under a lease (an object under `leases/`), which is
/// removed with its pins when this is dropped.
struct LeasedS3Blobs {
    blobs: S3Blobs,
    id: String,
    lease: Option<OPath>,
    pins: std::sync::Mutex<Vec<OPath>>,
    markers: std::sync::Mutex<MarkerCache>,
}

impl Drop for LeasedS3Blobs {
    fn drop(&mut self) {
        let (Some(lease), Ok(rt)) = (self.lease.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let pins = std::mem::take(
            self.pins
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let store = self.blobs.store.clone();
        rt.spawn(async move {
            for pin in pins {
                if let Err(e) = store.delete(&pin).await {
                    tracing::warn!(%pin, error = %e, "removing a pin (gc removes it when it expires)");
                }
            }
            if let Err(e) = store.delete(&lease).await {
                tracing::warn!(%lease, error = %e, "removing a lease (gc removes it when it expires)");
            }
        });
    }
}

/// Running gcs' announced candidates, by marker, as last read (keyed by the marker's ETag).
type MarkerCache =
    std::collections::HashMap<OPath, (Option<String>, Arc<std::collections::HashSet<Digest>>)>;

impl S3Blobs {
    /// When a running gc announced it would delete `digest` (the bucket's time of the latest
    /// marker naming it, ms), if one did. A marker older than [`S3_LEASE_MAX_AGE`] is a dead
    /// gc's, which no longer deletes. Marker contents are kept in `cache` by ETag: a push
    /// that checks many blobs reads each marker once.
    async fn announced(
        &self,
        digest: &Digest,
        cache: &std::sync::Mutex<MarkerCache>,
    ) -> Result<Option<i64>> {
        let markers: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.path("gc")))
            .try_collect()
            .await
            .map_err(|e| s3_error("listing running gcs", e))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let max = i64::try_from(S3_LEASE_MAX_AGE.as_millis()).unwrap_or(i64::MAX);
        let mut latest = None;
        for m in markers {
            let at = m.last_modified.timestamp_millis();
            if m.size == 0 || now.saturating_sub(at) > max {
                continue;
            }
            let cached = cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&m.location)
                .filter(|(tag, _)| m.e_tag.is_some() && *tag == m.e_tag)
                .map(|(_, set)| set.clone());
            let set = match cached {
                Some(set) => set,
                None => {
                    let body = match self.store.get(&m.location).await {
                        Ok(g) => g.bytes().await,
                        Err(e) => Err(e),
                    };
                    let body = match body {
                        Ok(b) => b,
                        // That gc has ended meanwhile.
                        Err(e) if is_not_found(&e) => continue,
                        Err(e) => return Err(s3_error("reading a running gc's marker", e)),
                    };
                    let set: Arc<std::collections::HashSet<Digest>> = Arc::new(
                        String::from_utf8_lossy(&body)
                            .lines()
                            .filter_map(|l| parse_digest(l).ok())
                            .collect(),
                    );
                    cache
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(m.location.clone(), (m.e_tag.clone(), set.clone()));
                    set
                }
            };
            if set.contains(digest) {
                latest = latest.max(Some(at));
            }
        }
        Ok(latest)
    }
}

#[async_trait]
impl BlobStore for LeasedS3Blobs {
    async fn open(&self, desc: &Descriptor) -> Result<BlobReader> {
        self.blobs.open(desc).await
    }

    /// Found present, a blob is pinned: kept from gc until this handle is dropped. The pin
    /// is written first, then running gcs' candidates are read, then the blob (see
    /// [`S3Storage::gc`]); a blob a gc is about to delete is reported missing, unless it was
    /// written again since that gc announced it.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        let (alg, hex) = digest_path_components(digest)?;
        let pin = self.blobs.path(&format!("pins/{}/{alg}/{hex}", self.id));
        self.blobs
            .store
            .put(&pin, PutPayload::default())
            .await
            .map_err(|e| s3_error("pinning a blob", e))?;
        self.pins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(pin);
        let announced = self.blobs.announced(digest, &self.markers).await?;
        let meta = match self.blobs.store.head(&self.blobs.blob(digest)?).await {
            Ok(m) => m,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(s3_error("looking up a blob", e)),
        };
        match announced {
            Some(at) if meta.last_modified.timestamp_millis() <= at => {
                tracing::info!(%digest, "a running gc is about to delete this blob; reported missing");
                Ok(None)
            }
            _ => Ok(Some(meta.size)),
        }
    }

    async fn ingest(&self, expected: Expected) -> Result<Box<dyn BlobWriter>> {
        self.blobs.ingest(expected).await
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        self.blobs.delete(digest).await
    }

    async fn list(&self) -> Result<Vec<Digest>> {
        self.blobs.list().await
    }
}

/// A repository's names: one object per name.
struct S3Refs {
    store: Arc<dyn ObjectStore>,
    base: String,
}

impl S3Refs {
    fn path(&self, name: &str) -> OPath {
        OPath::from(format!("{}/_refs/{name}", self.base))
    }
}

#[async_trait]
impl ReferenceStore for S3Refs {
    async fn resolve(&self, name: &str) -> Result<Descriptor> {
        let not_found = || Error::ReferenceNotFound {
            name: name.to_owned(),
        };
        oci_rs_image::validate_ref_name(name).map_err(|_| not_found())?;
        let got = match self.store.get(&self.path(name)).await {
            Ok(g) => g,
            Err(e) if is_not_found(&e) => return Err(not_found()),
            Err(e) => return Err(s3_error("reading a name", e)),
        };
        let bytes = got
            .bytes()
            .await
            .map_err(|e| s3_error("reading a name", e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::InvalidJson {
            what: "a stored descriptor",
            source: e,
        })
    }

    async fn set(&self, name: &str, desc: &Descriptor) -> Result<()> {
        oci_rs_image::validate_ref_name(name)?;
        let json = serde_json::to_vec(desc).map_err(|e| Error::InvalidJson {
            what: "a descriptor",
            source: e,
        })?;
        self.store
            .put(&self.path(name), PutPayload::from(json))
            .await
            .map_err(|e| s3_error("writing a name", e))?;
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<bool> {
        if oci_rs_image::validate_ref_name(name).is_err() {
            return Ok(false);
        }
        let path = self.path(name);
        match self.store.head(&path).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) => return Err(s3_error("looking up a name", e)),
        }
        self.store
            .delete(&path)
            .await
            .map_err(|e| s3_error("removing a name", e))?;
        Ok(true)
    }

    async fn list(&self) -> Result<Vec<(String, Descriptor)>> {
        let prefix = OPath::from(format!("{}/_refs", self.base));
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| s3_error("listing names", e))?;
        let mut out = Vec::new();
        for m in metas {
            let Some(name) = m.location.filename().map(str::to_owned) else {
                continue;
            };
            // A name removed meanwhile is simply not listed.
            if let Ok(d) = self.resolve(&name).await {
                out.push((name, d));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

#[async_trait]
impl RegistryStorage for S3Storage {
    fn blobs(&self) -> &dyn BlobStore {
        &self.blobs
    }

    async fn leased_blobs(&self) -> Result<Arc<dyn BlobStore>> {
        let id = super::storage::random_id()?;
        let lease = self.blobs.path(&format!("leases/{id}"));
        self.blobs
            .store
            .put(&lease, PutPayload::from_static(b""))
            .await
            .map_err(|e| s3_error("taking a lease", e))?;
        Ok(Arc::new(LeasedS3Blobs {
            blobs: self.blobs.clone(),
            id,
            lease: Some(lease),
            pins: std::sync::Mutex::default(),
            markers: std::sync::Mutex::default(),
        }))
    }

    async fn repository(
        &self,
        name: &str,
        create: bool,
    ) -> Result<Option<Arc<dyn ReferenceStore>>> {
        let base = self.blobs.path(&format!("repositories/{name}")).to_string();
        let marker = OPath::from(format!("{base}/_repository"));
        let exists = match self.blobs.store.head(&marker).await {
            Ok(_) => true,
            Err(e) if is_not_found(&e) => false,
            Err(e) => return Err(s3_error("looking up a repository", e)),
        };
        if !exists {
            if !create {
                return Ok(None);
            }
            self.blobs
                .store
                .put(&marker, PutPayload::from_static(b""))
                .await
                .map_err(|e| s3_error("making a repository", e))?;
        }
        Ok(Some(Arc::new(S3Refs {
            store: self.blobs.store.clone(),
            base,
        })))
    }

    async fn repositories(&self) -> Result<Vec<String>> {
        let prefix = self.blobs.path("repositories");
        let metas: Vec<object_store::ObjectMeta> = self
            .blobs
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| s3_error("listing repositories", e))?;
        let strip = format!("{prefix}/");
        let mut out: Vec<String> = metas
            .iter()
            .filter_map(|m| {
                let p = m.location.to_string();
                p.strip_prefix(&strip)?
                    .strip_suffix("/_repository")
                    // A tag named `_repository` is an object under `_refs/`, not a marker.
                    .filter(|n| super::route::valid_name(n))
                    .map(str::to_owned)
            })
            .collect();
        out.sort();
        Ok(out)
    }

    async fn read_range(&self, digest: &Digest, start: u64, len: u64) -> Result<BlobReader> {
        let path = self.blobs.blob(digest)?;
        self.blobs
            .get_reader(&path, Some(start..start + len))
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    Error::BlobNotFound {
                        digest: digest.clone(),
                    }
                } else {
                    s3_error("reading a blob", e)
                }
            })
    }

    async fn upload_start(&self, repository: &str) -> Result<String> {
        let id = super::storage::random_id()?;
        self.blobs
            .store
            .put(
                &self.session(&id, "repository")?,
                PutPayload::from(repository.as_bytes().to_vec()),
            )
            .await
            .map_err(|e| s3_error("starting an upload", e))?;
        Ok(id)
    }

    async fn upload_info(&self, id: &str) -> Result<Option<UploadInfo>> {
        let Ok(path) = self.session(id, "repository") else {
            return Ok(None);
        };
        let repository = match self.blobs.store.get(&path).await {
            Ok(g) => String::from_utf8_lossy(
                &g.bytes()
                    .await
                    .map_err(|e| s3_error("reading an upload", e))?,
            )
            .into_owned(),
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(s3_error("reading an upload", e)),
        };
        let size = self
            .chunks(id)
            .await?
            .last()
            .map_or(0, |(off, len, _)| off + len);
        Ok(Some(UploadInfo { repository, size }))
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        reader: &mut (dyn AsyncRead + Send + Unpin),
        limit: u64,
    ) -> Result<Appended> {
        let size = self
            .chunks(id)
            .await?
            .last()
            .map_or(0, |(off, len, _)| off + len);
        if size != offset {
            return Ok(Appended::WrongOffset { size });
        }
        // The chunk is an object of its own, visible once whole.
        let path = self.session(id, &format!("chunks/{offset:020}"))?;
        let mut w = multipart_writer(&self.blobs.store, path, Expected::default()).await?;
        let room = limit.saturating_sub(size);
        let mut buf = vec![0u8; 256 << 10];
        let mut n = 0u64;
        loop {
            let got = match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(got) => got,
                Err(e) => {
                    // Dropped: the chunk is not kept; the session stays where it was.
                    drop(w);
                    return Ok(Appended::Interrupted {
                        size,
                        error: e.to_string(),
                    });
                }
            };
            n += got as u64;
            if n > room {
                drop(w);
                return Ok(Appended::OverLimit);
            }
            tokio::io::AsyncWriteExt::write_all(&mut w, &buf[..got])
                .await
                .map_err(Error::Stream)?;
        }
        if n == 0 {
            drop(w);
            return Ok(Appended::Size(size));
        }
        Box::new(w).commit().await?;
        Ok(Appended::Size(size + n))
    }

    async fn upload_commit(
        &self,
        id: &str,
        digest: &Digest,
        into: &dyn BlobStore,
    ) -> Result<BlobInfo> {
        let chunks = self.chunks(id).await?;
        let mut w = into
            .ingest(Expected {
                digest: Some(digest.clone()),
                size: None,
            })
            .await?;
        let mut result = Ok(());
        for (_, _, path) in &chunks {
            match self.blobs.get_reader(path, None).await {
                Ok(mut r) => {
                    if let Err(e) = tokio::io::copy(&mut r, &mut w).await {
                        result = Err(Error::Stream(e));
                        break;
                    }
                }
                Err(e) => {
                    result = Err(s3_error("reading an upload's chunk", e));
                    break;
                }
            }
        }
        let committed = match result {
            Ok(()) => w.commit().await,
            Err(e) => Err(e),
        };
        self.upload_cancel(id).await?;
        committed
    }

    async fn upload_cancel(&self, id: &str) -> Result<bool> {
        let Ok(prefix) = self.session(id, "") else {
            return Ok(false);
        };
        let prefix = OPath::from(prefix.to_string().trim_end_matches('/'));
        let metas: Vec<object_store::ObjectMeta> = self
            .blobs
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| s3_error("listing an upload", e))?;
        let any = !metas.is_empty();
        for m in metas {
            self.blobs
                .store
                .delete(&m.location)
                .await
                .map_err(|e| s3_error("removing an upload", e))?;
        }
        Ok(any)
    }
}

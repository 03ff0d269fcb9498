//! The module of [`copy()`], whose docs say what it is for (the module is private).

use crate::error::{Error, Result};
use crate::manifest::{Manifest, ManifestBody};
use crate::platform::{self, PlatformSpec};
use crate::store::BlobReader;
use crate::transfer::{ImageDestination, ImageSource, ManifestRef};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use oci_spec::image::{Descriptor, Digest};
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// Which images of an index to copy.
#[derive(Debug, Clone, Default)]
pub enum PlatformFilter {
    /// The host's platform (what `docker pull` does).
    #[default]
    Host,
    /// One platform: the destination receives that image's manifest, not the index.
    One(PlatformSpec),
    /// Every image of the index, and the index itself (`skopeo copy --all`).
    All,
}

impl PlatformFilter {
    /// The platform whose image this filter takes from an index: the one asked for, else the
    /// host's (also for `All`, where the host's is the one a caller unpacks or runs).
    pub fn platform(&self) -> PlatformSpec {
        match self {
            PlatformFilter::One(p) => p.clone(),
            PlatformFilter::Host | PlatformFilter::All => PlatformSpec::host(),
        }
    }
}

/// Something that happened during a copy, for progress bars and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CopyEvent {
    /// A blob is already at the destination.
    BlobSkipped {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// A blob was mounted from another repository of the same registry.
    BlobMounted {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// A blob transfer started.
    BlobStarted {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// Bytes of a blob went through (emitted at most every 256 KiB and at the end).
    BlobProgress {
        /// The blob.
        digest: Digest,
        /// Bytes so far.
        done: u64,
        /// Its size.
        size: u64,
    },
    /// A blob transfer failed transiently ([`Error::is_transient`]) and starts again from
    /// its first byte: its progress goes back to zero.
    BlobRetrying {
        /// The blob.
        digest: Digest,
        /// The attempt that starts now (2 for the first retry).
        attempt: u32,
        /// What failed, with its causes.
        error: String,
    },
    /// A blob transfer finished and was verified.
    BlobDone {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// Compressed bytes of a layer went through its unpacking (oci-rs-layer's streaming
    /// unpack; emitted at most every 256 KiB and at the end).
    LayerExtracting {
        /// The layer blob.
        digest: Digest,
        /// Bytes so far.
        done: u64,
        /// Its size.
        size: u64,
    },
    /// A layer was unpacked, verified (blob digest and DiffID) and made visible.
    LayerExtracted {
        /// The layer blob.
        digest: Digest,
    },
    /// A manifest or index was written.
    ManifestWritten {
        /// Its digest.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&CopyEvent) + Send + Sync>;

/// How to copy.
#[derive(Clone)]
pub struct CopyOptions {
    /// Which images of an index to copy.
    pub platforms: PlatformFilter,
    /// Blobs transferred at once (at least 1).
    pub concurrency: usize,
    /// The tag to give the copied image at the destination.
    pub tag: Option<String>,
    /// Where progress events go.
    pub progress: Option<ProgressFn>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            platforms: PlatformFilter::Host,
            concurrency: 4,
            tag: None,
            progress: None,
        }
    }
}

impl fmt::Debug for CopyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyOptions")
            .field("platforms", &self.platforms)
            .field("concurrency", &self.concurrency)
            .field("tag", &self.tag)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl CopyOptions {
    /// Sets the tag at the destination.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Sets the platform filter.
    pub fn platforms(mut self, p: PlatformFilter) -> Self {
        self.platforms = p;
        self
    }

    /// Sets the blob concurrency.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Sets the progress callback.
    pub fn progress(mut self, f: impl Fn(&CopyEvent) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    fn emit(&self, e: CopyEvent) {
        if let Some(p) = &self.progress {
            p(&e);
        }
    }
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// The manifest or index written last, under the tag: what the destination now names.
    pub manifest: Descriptor,
    /// Blobs transferred.
    pub blobs_copied: usize,
    /// Bytes transferred.
    pub bytes_copied: u64,
    /// Blobs the destination already had.
    pub blobs_skipped: usize,
    /// Blobs mounted from another repository.
    pub blobs_mounted: usize,
}

#[derive(Default)]
struct Tally {
    copied: usize,
    bytes: u64,
    skipped: usize,
    mounted: usize,
}

/// One generic image copy between any [`ImageSource`] and any [`ImageDestination`].
///
/// `pull` is a copy from a registry into a layout, `push` the reverse, `save` a copy into an
/// archive and `load` a copy out of one. Blobs go before the manifests that point at them,
/// manifests before the index, so a destination never holds a manifest whose content is
/// missing.
///
/// Copies the image `from` names out of `src` into `dst`.
///
/// With [`PlatformFilter::Host`] or [`PlatformFilter::One`] an index is resolved to one image
/// and only that image is written; with [`PlatformFilter::All`] every child and the index are.
/// Blobs the destination has are skipped; others are streamed, verified on the way, with at
/// most `concurrency` at once. [`ImageDestination::finish`] is called at the end.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> oci_rs_image::Result<()> {
/// use oci_rs_image::{copy, CopyOptions, ImageBuilder, ManifestRef, MemoryStore, OciLayout};
/// let src = MemoryStore::new();
/// let image = ImageBuilder::new("linux", "amd64").build(&src).await?;
/// let dir = tempfile::tempdir()?;
/// let dst = OciLayout::create(dir.path()).await?;
/// let opts = CopyOptions::default().tag("v1");
/// let report = copy(&src, &dst, &ManifestRef::Digest(image.digest().clone()), &opts).await?;
/// assert_eq!(report.manifest.digest(), image.digest());
/// # Ok(())
/// # }
/// ```
pub async fn copy(
    src: &dyn ImageSource,
    dst: &dyn ImageDestination,
    from: &ManifestRef,
    opts: &CopyOptions,
) -> Result<CopyReport> {
    let report = copy_without_finish(src, dst, from, opts).await?;
    dst.finish().await?;
    Ok(report)
}

/// [`copy`] without the final [`ImageDestination::finish`]: for writing several images into
/// one archive, then finishing it once.
pub async fn copy_without_finish(
    src: &dyn ImageSource,
    dst: &dyn ImageDestination,
    from: &ManifestRef,
    opts: &CopyOptions,
) -> Result<CopyReport> {
    let top = src.manifest(from).await?;
    let mut tally = Tally::default();
    let written = match top.body() {
        ManifestBody::Image(_) => {
            copy_image(src, dst, &top, opts, &mut tally).await?;
            put_manifest(dst, &top, opts.tag.as_deref(), opts).await?;
            top
        }
        ManifestBody::Index(index) => match &opts.platforms {
            PlatformFilter::All => {
                for child in index.manifests() {
                    let m = src
                        .manifest(&ManifestRef::Digest(child.digest().clone()))
                        .await?;
                    if m.kind().is_index() {
                        return Err(Error::InvalidImage {
                            reason: format!("nested index {} is not supported", m.digest()),
                        });
                    }
                    check_child(child, &m)?;
                    copy_image(src, dst, &m, opts, &mut tally).await?;
                    put_manifest(dst, &m, None, opts).await?;
                }
                put_manifest(dst, &top, opts.tag.as_deref(), opts).await?;
                top
            }
            filter => {
                let child = platform::select(index, &filter.platform())?;
                let m = src
                    .manifest(&ManifestRef::Digest(child.digest().clone()))
                    .await?;
                check_child(child, &m)?;
                if m.kind().is_index() {
                    return Err(Error::InvalidImage {
                        reason: format!("nested index {} is not supported", m.digest()),
                    });
                }
                copy_image(src, dst, &m, opts, &mut tally).await?;
                put_manifest(dst, &m, opts.tag.as_deref(), opts).await?;
                m
            }
        },
    };
    Ok(CopyReport {
        manifest: written.descriptor(),
        blobs_copied: tally.copied,
        bytes_copied: tally.bytes,
        blobs_skipped: tally.skipped,
        blobs_mounted: tally.mounted,
    })
}

fn check_child(desc: &Descriptor, m: &Manifest) -> Result<()> {
    if m.size() != desc.size() {
        return Err(Error::SizeMismatch {
            digest: desc.digest().clone(),
            expected: desc.size(),
            actual: m.size(),
        });
    }
    Ok(())
}

async fn put_manifest(
    dst: &dyn ImageDestination,
    m: &Manifest,
    tag: Option<&str>,
    opts: &CopyOptions,
) -> Result<()> {
    dst.put_manifest(m, tag).await?;
    opts.emit(CopyEvent::ManifestWritten {
        digest: m.digest().clone(),
        media_type: m.media_type().to_owned(),
    });
    Ok(())
}

enum Outcome {
    Skipped,
    Mounted,
    Copied(u64),
}

async fn copy_image(
    src: &dyn ImageSource,
    dst: &dyn ImageDestination,
    m: &Manifest,
    opts: &CopyOptions,
    tally: &mut Tally,
) -> Result<()> {
    // The first error to happen is the one reported (a failed blob may make others fail).
    let blobs = m.children();
    let from = src.registry_repository();
    let outcomes: Vec<Outcome> = stream::iter(blobs.into_iter().map(|desc| {
        let from = from.clone();
        async move { copy_blob(src, dst, &desc, from.as_ref(), opts).await }
    }))
    .buffer_unordered(opts.concurrency.max(1))
    .try_collect()
    .await?;
    for o in outcomes {
        match o {
            Outcome::Skipped => tally.skipped += 1,
            Outcome::Mounted => tally.mounted += 1,
            Outcome::Copied(n) => {
                tally.copied += 1;
                tally.bytes += n;
            }
        }
    }
    Ok(())
}

async fn copy_blob(
    src: &dyn ImageSource,
    dst: &dyn ImageDestination,
    desc: &Descriptor,
    from: Option<&(String, String)>,
    opts: &CopyOptions,
) -> Result<Outcome> {
    let digest = desc.digest().clone();
    let size = desc.size();
    if dst.has_blob(desc).await? {
        opts.emit(CopyEvent::BlobSkipped { digest, size });
        return Ok(Outcome::Skipped);
    }
    if let Some(from) = from {
        if dst.mount_blob(desc, from).await? {
            opts.emit(CopyEvent::BlobMounted { digest, size });
            return Ok(Outcome::Mounted);
        }
    }
    opts.emit(CopyEvent::BlobStarted {
        digest: digest.clone(),
        size,
    });
    let mut attempt = 1;
    loop {
        // Verified exactly once: by the destination when it checks what it stores, else here.
        let reader = if dst.verifies_blobs() {
            src.blob_unverified(desc).await?
        } else {
            src.blob(desc).await?
        };
        let reader = with_progress(reader, desc, Progressed::Transfer, opts.progress.as_ref());
        tracing::debug!(%digest, size, attempt, "copying blob");
        match dst.put_blob(desc, reader).await {
            Ok(()) => break,
            // A destination that went away mid-way (a registry replica that died, a
            // connection reset): the blob again from its start, which a load balancer
            // may send elsewhere; never after content failed its digest.
            Err(e) if e.is_transient() && attempt < BLOB_ATTEMPTS => {
                let error = crate::error::chain(&e);
                tracing::warn!(%digest, attempt, %error, "writing a blob failed; again from the start");
                tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
                attempt += 1;
                opts.emit(CopyEvent::BlobRetrying {
                    digest: digest.clone(),
                    attempt,
                    error,
                });
                if dst.has_blob(desc).await.unwrap_or(false) {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    opts.emit(CopyEvent::BlobDone { digest, size });
    Ok(Outcome::Copied(size))
}

/// How many times [`copy`](crate::copy()) writes one blob when its destination fails with a
/// transient error ([`Error::is_transient`]).
pub const BLOB_ATTEMPTS: u32 = 3;

/// What a reader made by [`with_progress`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progressed {
    /// [`CopyEvent::BlobProgress`]: a blob's bytes going from a source to a destination.
    Transfer,
    /// [`CopyEvent::LayerExtracting`]: a layer's compressed bytes going through its unpacking.
    Extraction,
}

/// `reader` (the blob `desc`) reporting the bytes read through it to `progress`: at most every
/// 256 KiB, and at its end. With no `progress`, `reader` itself.
pub fn with_progress(
    reader: BlobReader,
    desc: &Descriptor,
    what: Progressed,
    progress: Option<&ProgressFn>,
) -> BlobReader {
    match progress {
        Some(p) => Box::pin(ProgressReader {
            inner: reader,
            digest: desc.digest().clone(),
            size: desc.size(),
            what,
            done: 0,
            reported: 0,
            progress: p.clone(),
        }),
        None => reader,
    }
}

struct ProgressReader {
    inner: BlobReader,
    digest: Digest,
    size: u64,
    what: Progressed,
    done: u64,
    reported: u64,
    progress: ProgressFn,
}

impl AsyncRead for ProgressReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = this.inner.as_mut().poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let n = (buf.filled().len() - before) as u64;
            this.done += n;
            if this.done - this.reported >= 256 * 1024 || (n == 0 && this.done > this.reported) {
                this.reported = this.done;
                let (digest, done, size) = (this.digest.clone(), this.done, this.size);
                (this.progress)(&match this.what {
                    Progressed::Transfer => CopyEvent::BlobProgress { digest, done, size },
                    Progressed::Extraction => CopyEvent::LayerExtracting { digest, done, size },
                });
            }
        }
        r
    }
}

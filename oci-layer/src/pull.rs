//! Fetching and unpacking in one pass: each layer blob is read once from its source, written
//! to the store (which checks its digest) and unpacked into its own snapshot directory
//! (which checks its DiffID) at the same time, and the layers of an image go in parallel.

use crate::apply::{apply, ApplyOptions, ApplyReport};
use crate::error::{Error, Result};
use crate::snapshot::{Snapshotter, UnpackReport};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use oci_rs_image::oci_spec::image::{Descriptor, Digest};
use oci_rs_image::{
    with_progress, BlobStore, CopyEvent, CopyOptions, CopyReport, Expected, ImageDestination,
    ImageSource, Manifest, ManifestRef, PlatformFilter, ProgressFn, Progressed,
};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// Bytes asked of the source per read.
const CHUNK: usize = 128 * 1024;
/// Chunks queued between the download and the unpacking of one layer: at most 4 MiB.
const QUEUE: usize = 32;

/// What [`pull_and_unpack`] did.
#[derive(Debug, Clone)]
pub struct PullUnpackReport {
    /// The copy of the image into the store (its layers are counted as skipped there: they
    /// were stored while they were unpacked).
    pub copy: CopyReport,
    /// The image manifest whose layers were unpacked (the host's, or the asked platform's,
    /// of an index); `None` when every platform of an index was copied and none is the
    /// host's.
    pub manifest: Option<Manifest>,
    /// The unpacking.
    pub unpack: UnpackReport,
}

/// Pulls the image `reference` from `src` into `store` and unpacks its layers into
/// `snapshots` in the same pass, as `docker run` of an image it does not have yet needs:
/// every layer blob is read from `src` once; its bytes go to the store, which verifies the
/// digest before it keeps anything, and through decompression into the layer's own
/// directory, whose DiffID is verified; layers go in parallel (bounded by the cores). A layer
/// directory becomes visible only when both checks passed, so a blob that fails its digest
/// leaves neither a blob nor a layer behind; a crash leaves only temporary directories, which
/// nothing reads and the next unpack removes once their process is gone. Layers the
/// store already has are unpacked from it, and layers already unpacked are left alone.
///
/// Then the image's config and manifests are copied with `opts` (its platform filter and
/// tag) as [`copy`](oci_rs_image::copy()) does, from the manifest that was resolved first, so
/// a tag that moves meanwhile cannot make the store name another image than the one
/// unpacked. With `PlatformFilter::All`, every image is copied and the host's is unpacked.
/// `opts.progress` receives the copy's events and the unpacking's
/// ([`CopyEvent::LayerExtracting`], [`CopyEvent::LayerExtracted`]).
///
/// ```no_run
/// # async fn f(src: &dyn oci_rs_image::ImageSource) -> oci_rs_layer::Result<()> {
/// use oci_rs_image::{CopyOptions, ManifestRef, OciLayout};
/// use oci_rs_layer::{pull_and_unpack, Snapshotter};
///
/// let store = OciLayout::create("/var/lib/app/images").await?;
/// let snapshots = Snapshotter::new("/var/lib/app/snapshots")?;
/// let opts = CopyOptions::default().tag("library/debian:12");
/// let done = pull_and_unpack(src, &store, &ManifestRef::Tag("12".into()), &opts, &snapshots)
///     .await?;
/// if let Some(image) = &done.manifest {
///     let mount = snapshots.prepare("c1", &store, image, false).await?;
/// #   let _ = mount;
/// }
/// # Ok(()) }
/// ```
pub async fn pull_and_unpack<D>(
    src: &dyn ImageSource,
    store: &D,
    reference: &ManifestRef,
    opts: &CopyOptions,
    snapshots: &Snapshotter,
) -> Result<PullUnpackReport>
where
    D: BlobStore + ImageDestination,
{
    let top = src.manifest(reference).await?;
    let top_digest = top.digest().clone();
    let image = match top.as_index() {
        Some(index) => {
            match oci_rs_image::select_platform(index, &opts.platforms.platform()) {
                Ok(child) => Some(
                    src.manifest(&ManifestRef::Digest(child.digest().clone()))
                        .await?,
                ),
                // Copying every platform of an index that has none for this host: nothing
                // to unpack, the copy goes on.
                Err(_) if matches!(opts.platforms, PlatformFilter::All) => None,
                Err(e) => return Err(e.into()),
            }
        }
        None => Some(top),
    };
    let unpack = match &image {
        Some(image) => {
            let stack = Snapshotter::image_stack(src, image).await?;
            snapshots
                .unpack_while_storing(src, store, &stack, opts.progress.as_ref())
                .await?
        }
        None => UnpackReport::default(),
    };
    let copy = oci_rs_image::copy(src, store, &ManifestRef::Digest(top_digest), opts).await?;
    Ok(PullUnpackReport {
        copy,
        manifest: image,
        unpack,
    })
}

impl Snapshotter {
    /// [`Snapshotter::unpack_layers`] from `src` into `store` in one pass: each layer that is
    /// not unpacked yet and that `store` lacks is fetched from `src` once, stored (verified)
    /// and unpacked (verified) at the same time; one the store has is unpacked from it.
    /// Layers go in parallel. See [`pull_and_unpack`].
    pub async fn unpack_while_storing(
        &self,
        src: &dyn ImageSource,
        store: &dyn BlobStore,
        stack: &[(Descriptor, Digest)],
        progress: Option<&ProgressFn>,
    ) -> Result<UnpackReport> {
        self.unpack_stack(src, Some(store), stack, progress).await
    }

    /// Unpacks the layers of `stack` that are not unpacked yet, in parallel (bounded by the
    /// cores), in order in the report.
    pub(crate) async fn unpack_stack(
        &self,
        src: &dyn ImageSource,
        store: Option<&dyn BlobStore>,
        stack: &[(Descriptor, Digest)],
        progress: Option<&ProgressFn>,
    ) -> Result<UnpackReport> {
        // Temporaries of unpacks whose process is gone (a crash, a kill) go first.
        self.reap_unpack_dirs();
        let jobs = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
        // After a failure no layer starts, and those under way are waited for: dropped, their
        // unpacking tasks would go on writing into temporaries being removed (or outlive a
        // caller that exits on the error) and leave them behind.
        let failed = std::sync::atomic::AtomicBool::new(false);
        let failed = &failed;
        let mut done = futures_util::stream::iter(stack)
            .map(|(layer, diff_id)| async move {
                if failed.load(std::sync::atomic::Ordering::Relaxed) {
                    return None;
                }
                Some(
                    self.unpack_layer(src, store, layer, diff_id, progress)
                        .await,
                )
            })
            .buffered(jobs);
        let mut report = UnpackReport::default();
        let mut first_error = None;
        while let Some(r) = done.next().await {
            match r {
                Some(Ok((dir, unpacked))) => {
                    if unpacked {
                        report.unpacked += 1;
                    } else {
                        report.reused += 1;
                    }
                    report.layers.push(dir);
                }
                Some(Err(e)) => {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
                None => {}
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// One layer into its directory unless it is there. Returns the directory and whether it
    /// was unpacked now.
    async fn unpack_layer(
        &self,
        src: &dyn ImageSource,
        store: Option<&dyn BlobStore>,
        layer: &Descriptor,
        diff_id: &Digest,
        progress: Option<&ProgressFn>,
    ) -> Result<(PathBuf, bool)> {
        let dir = self.layer_dir(diff_id)?;
        if dir.is_dir() {
            return Ok((dir, false));
        }
        let tmp = self.unpack_dir()?;
        let opts = ApplyOptions {
            diff_id: Some(diff_id.clone()),
            overlay_whiteouts: true,
            ..self.apply_options().clone()
        };
        let fetch = match store {
            Some(store) if !store.contains(layer.digest()).await? => Some(store),
            _ => None,
        };
        match fetch {
            Some(store) => fetch_and_apply(src, store, layer, tmp.path(), opts, progress).await?,
            None => {
                let blob = match store {
                    Some(store) => store.open(layer).await?,
                    None => src.blob(layer).await?,
                };
                let reader = with_progress(blob, layer, Progressed::Extraction, progress);
                join(spawn_apply(tmp.path(), reader, layer, opts), tmp.path()).await?;
            }
        }
        if let Some(p) = progress {
            p(&CopyEvent::LayerExtracted {
                digest: layer.digest().clone(),
            });
        }
        let tmp = tmp.keep();
        match std::fs::rename(&tmp, &dir) {
            Ok(()) => {
                if self.apply_options().sync {
                    // The layer's contents were synced by apply; now the name.
                    let layers = self.root().join("layers");
                    std::fs::File::open(&layers)
                        .and_then(|d| d.sync_all())
                        .map_err(|e| Error::fs("fsync", &layers, e))?;
                }
                Ok((dir, true))
            }
            // Someone else unpacked it meanwhile: theirs is as good as ours.
            Err(_) if dir.is_dir() => {
                let _ = crate::snapshot::remove_tree(&tmp);
                Ok((dir, false))
            }
            Err(e) => Err(Error::fs("rename", &dir, e)),
        }
    }
}

fn spawn_apply(
    root: &Path,
    reader: impl AsyncRead + Send + Unpin + 'static,
    layer: &Descriptor,
    opts: ApplyOptions,
) -> JoinHandle<Result<ApplyReport>> {
    let root = root.to_owned();
    let media = layer.media_type().to_string();
    tokio::spawn(async move { apply(&root, reader, &media, &opts).await })
}

async fn join(task: JoinHandle<Result<ApplyReport>>, root: &Path) -> Result<ApplyReport> {
    match task.await {
        Ok(r) => r,
        Err(e) => Err(Error::fs(
            "unpack",
            root,
            std::io::Error::other(format!("the unpacking task failed: {e}")),
        )),
    }
}

/// Reads the blob from `src` once: every chunk is written to the store's writer and queued
/// for the unpacking task. The store's commit checks size and digest; the unpacking checks
/// the DiffID; both must pass.
async fn fetch_and_apply(
    src: &dyn ImageSource,
    store: &dyn BlobStore,
    layer: &Descriptor,
    root: &Path,
    opts: ApplyOptions,
    progress: Option<&ProgressFn>,
) -> Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(QUEUE);
    let queued = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let reader = with_progress(
        Box::pin(tokio_util::io::StreamReader::new(queued)),
        layer,
        Progressed::Extraction,
        progress,
    );
    let body = src.blob_unverified(layer).await?;
    let mut body = with_progress(body, layer, Progressed::Transfer, progress);
    let mut w = store.ingest(Expected::descriptor(layer)).await?;
    // Started once nothing can return early before it is joined (below, on every path).
    let applying = spawn_apply(root, reader, layer, opts);
    let (digest, size) = (layer.digest().clone(), layer.size());
    if let Some(p) = progress {
        p(&CopyEvent::BlobStarted {
            digest: digest.clone(),
            size,
        });
    }
    let mut tx = Some(tx);
    let mut buf = BytesMut::with_capacity(CHUNK);
    loop {
        if buf.capacity() - buf.len() < CHUNK / 4 {
            buf.reserve(CHUNK);
        }
        let n = match body.read_buf(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                if let Some(tx) = tx.take() {
                    let _ = tx
                        .send(Err(std::io::Error::new(
                            e.kind(),
                            "the layer's download failed",
                        )))
                        .await;
                }
                // Ended (failed on that error) before its temporary goes.
                let _ = join(applying, root).await;
                return Err(oci_rs_image::Error::from_io(e).into());
            }
        };
        if n == 0 {
            break;
        }
        let chunk = buf.split().freeze();
        if let Err(e) = w.write_all(&chunk).await {
            drop(tx);
            let _ = join(applying, root).await;
            return Err(oci_rs_image::Error::from_io(e).into());
        }
        // The unpacking stopped reading: it failed, or it is done before the blob's end.
        // Either way the rest is still read and checked, so that a blob the registry sent
        // wrong is reported as that, not as the broken layer it makes.
        if let Some(t) = &tx {
            if t.send(Ok(chunk)).await.is_err() {
                tx = None;
            }
        }
    }
    drop(tx);
    let stored = w.commit().await;
    let applied = join(applying, root).await;
    // The blob's own check first: a digest mismatch is why an unpacking would fail too.
    stored?;
    applied?;
    if let Some(p) = progress {
        p(&CopyEvent::BlobDone { digest, size });
    }
    Ok(())
}

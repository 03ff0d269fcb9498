//! An in-memory store: blobs and references in hash maps. For tests and small tools.

use crate::digest::Hasher;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::store::{
    adapter, validate_ref_name, verified, BlobInfo, BlobReader, BlobStore, BlobWriter, Expected,
    ReferenceStore,
};
use crate::transfer::{ImageDestination, ImageSource, ManifestRef};
use async_trait::async_trait;
use bytes::Bytes;
use oci_spec::image::{Descriptor, Digest};
use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

#[derive(Debug, Default)]
struct Inner {
    blobs: HashMap<Digest, Bytes>,
    refs: BTreeMap<String, Descriptor>,
}

/// Blobs and references held in memory. Cloning shares the same content.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> oci_rs_image::Result<()> {
/// use oci_rs_image::{BlobStore, BlobStoreExt, MemoryStore};
/// let store = MemoryStore::new();
/// let info = store.put_bytes("hello".into()).await?;
/// assert!(store.contains(&info.digest).await?);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps half-updated (each update is
        // one insert or remove), so a poisoned lock is safe to keep using.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Total bytes held in blobs.
    pub fn total_size(&self) -> u64 {
        self.lock().blobs.values().map(|b| b.len() as u64).sum()
    }
}

struct MemoryWriter {
    store: MemoryStore,
    expected: Expected,
    hasher: Hasher,
    buf: Vec<u8>,
}

impl AsyncWrite for MemoryWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let (Some(size), Some(d)) = (this.expected.size, this.expected.digest.as_ref()) {
            if this.buf.len() as u64 + data.len() as u64 > size {
                return Poll::Ready(Err(Error::SizeExceeded {
                    digest: d.clone(),
                    expected: size,
                }
                .into_io()));
            }
        }
        this.hasher.update(data);
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl BlobWriter for MemoryWriter {
    async fn commit(self: Box<Self>) -> Result<BlobInfo> {
        let this = *self;
        let actual = this.hasher.finish();
        let size = this.buf.len() as u64;
        if let Some(expected) = &this.expected.digest {
            if let Some(want) = this.expected.size {
                if size != want {
                    return Err(Error::SizeMismatch {
                        digest: expected.clone(),
                        expected: want,
                        actual: size,
                    });
                }
            }
            if &actual != expected {
                return Err(Error::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        } else if let Some(want) = this.expected.size {
            if size != want {
                return Err(Error::SizeMismatch {
                    digest: actual,
                    expected: want,
                    actual: size,
                });
            }
        }
        this.store
            .lock()
            .blobs
            .entry(actual.clone())
            .or_insert_with(|| this.buf.into());
        Ok(BlobInfo {
            digest: actual,
            size,
        })
    }

    fn written(&self) -> u64 {
        self.buf.len() as u64
    }
}

#[async_trait]
impl BlobStore for MemoryStore {
    async fn open(&self, desc: &Descriptor) -> Result<BlobReader> {
        let data = self
            .lock()
            .blobs
            .get(desc.digest())
            .cloned()
            .ok_or_else(|| Error::BlobNotFound {
                digest: desc.digest().clone(),
            })?;
        verified(Cursor::new(data), desc)
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.lock().blobs.get(digest).map(|b| b.len() as u64))
    }

    async fn ingest(&self, expected: Expected) -> Result<Box<dyn BlobWriter>> {
        let hasher = match &expected.digest {
            Some(d) => Hasher::for_digest(d)?,
            None => Hasher::default(),
        };
        Ok(Box::new(MemoryWriter {
            store: self.clone(),
            expected,
            hasher,
            buf: Vec::new(),
        }))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        Ok(self.lock().blobs.remove(digest).is_some())
    }

    async fn list(&self) -> Result<Vec<Digest>> {
        Ok(self.lock().blobs.keys().cloned().collect())
    }
}

#[async_trait]
impl ReferenceStore for MemoryStore {
    async fn resolve(&self, name: &str) -> Result<Descriptor> {
        self.lock()
            .refs
            .get(name)
            .cloned()
            .ok_or_else(|| Error::ReferenceNotFound {
                name: name.to_owned(),
            })
    }

    async fn set(&self, name: &str, desc: &Descriptor) -> Result<()> {
        validate_ref_name(name)?;
        self.lock().refs.insert(name.to_owned(), desc.clone());
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<bool> {
        Ok(self.lock().refs.remove(name).is_some())
    }

    async fn list(&self) -> Result<Vec<(String, Descriptor)>> {
        Ok(self
            .lock()
            .refs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

#[async_trait]
impl ImageSource for MemoryStore {
    async fn manifest(&self, reference: &ManifestRef) -> Result<Manifest> {
        match reference {
            ManifestRef::Tag(t) => {
                let desc = ReferenceStore::resolve(self, t).await?;
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
impl ImageDestination for MemoryStore {
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
            ReferenceStore::set(self, tag, &manifest.descriptor()).await?;
        }
        Ok(())
    }
}

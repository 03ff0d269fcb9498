//! The module of [`BlobStore`], whose docs say what it is for (the module is private).

use crate::error::{Error, Result};
use crate::verify::VerifyingReader;
use async_trait::async_trait;
use bytes::Bytes;
use oci_spec::image::{Descriptor, Digest};
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A stream of blob bytes. Readers handed out by this crate's stores and sources verify size
/// and digest as they are read (see [`VerifyingReader`]).
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

/// The digest and size of a stored blob.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobInfo {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// A blob being written. Nothing is visible in the store until [`BlobWriter::commit`]
/// succeeds; dropping the writer without committing discards what was written.
#[async_trait]
pub trait BlobWriter: AsyncWrite + Send + Unpin {
    /// Checks size and digest against what was expected (if anything was), then makes the
    /// blob visible atomically. A blob already present with the same digest is not an error.
    async fn commit(self: Box<Self>) -> Result<BlobInfo>;

    /// Bytes written so far.
    fn written(&self) -> u64;
}

/// What an ingest expects to receive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// The digest the content must have; `None` computes a sha256 digest.
    pub digest: Option<Digest>,
    /// The size the content must have.
    pub size: Option<u64>,
}

impl Expected {
    /// Expect exactly what a descriptor says.
    pub fn descriptor(desc: &Descriptor) -> Self {
        Self {
            digest: Some(desc.digest().clone()),
            size: Some(desc.size()),
        }
    }

    /// Expect nothing: the digest is computed (sha256) while writing.
    pub fn unknown() -> Self {
        Self::default()
    }
}

/// Content store traits: content-addressed blobs and named references.
///
/// Modelled on containerd's content store and arrow-rs `object_store`: few methods, usable as
/// `dyn`, every byte verified against its descriptor before it may be trusted.
///
/// Content-addressed blob storage.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Opens a blob; the reader fails unless the bytes match the descriptor's size and digest.
    async fn open(&self, desc: &Descriptor) -> Result<BlobReader>;

    /// The size of the blob if it is present.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;

    /// Starts writing a blob.
    async fn ingest(&self, expected: Expected) -> Result<Box<dyn BlobWriter>>;

    /// Removes a blob; false when it was not there.
    async fn delete(&self, digest: &Digest) -> Result<bool>;

    /// Every blob's digest (order unspecified).
    async fn list(&self) -> Result<Vec<Digest>>;

    /// True when the blob is present.
    async fn contains(&self, digest: &Digest) -> Result<bool> {
        Ok(self.stat(digest).await?.is_some())
    }
}

/// Named references (tags) to descriptors of manifests or indexes.
#[async_trait]
pub trait ReferenceStore: Send + Sync {
    /// The descriptor a name points at.
    async fn resolve(&self, name: &str) -> Result<Descriptor>;

    /// Points `name` at `desc`, replacing what it pointed at.
    async fn set(&self, name: &str, desc: &Descriptor) -> Result<()>;

    /// Removes a name; false when it was not there.
    async fn remove(&self, name: &str) -> Result<bool>;

    /// Every name and what it points at, sorted by name.
    async fn list(&self) -> Result<Vec<(String, Descriptor)>>;
}

/// Conveniences over any [`BlobStore`].
#[async_trait]
pub trait BlobStoreExt: BlobStore {
    /// Stores bytes held in memory and returns their sha256 info.
    async fn put_bytes(&self, data: Bytes) -> Result<BlobInfo> {
        let mut w = self.ingest(Expected::unknown()).await?;
        w.write_all(&data).await?;
        w.commit().await
    }

    /// Copies a stream into the store, checking it against `expected`.
    async fn put_stream(
        &self,
        expected: Expected,
        reader: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<BlobInfo> {
        let mut w = self.ingest(expected).await?;
        tokio::io::copy(reader, &mut w)
            .await
            .map_err(Error::from_io)?;
        w.commit().await
    }

    /// Reads a whole blob into memory, refusing blobs over `limit` bytes.
    async fn read_bytes(&self, desc: &Descriptor, limit: u64) -> Result<Bytes> {
        if desc.size() > limit {
            return Err(Error::TooLarge {
                what: "blob read into memory",
                size: desc.size(),
                limit,
            });
        }
        let mut r = self.open(desc).await?;
        let mut buf = Vec::with_capacity(desc.size() as usize);
        r.read_to_end(&mut buf).await.map_err(Error::from_io)?;
        Ok(buf.into())
    }
}

impl<T: BlobStore + ?Sized> BlobStoreExt for T {}

/// The transfer-trait methods of a content store ([`ImageSource`](crate::ImageSource) and
/// [`ImageDestination`](crate::ImageDestination) over a [`BlobStore`]), shared by
/// [`MemoryStore`](crate::MemoryStore) and [`OciLayout`](crate::OciLayout), and public so a
/// third-party store implements those traits with them instead of copying them.
pub mod adapter {
    use super::{BlobReader, BlobStore, BlobStoreExt, Expected};
    use crate::error::{Error, Result};
    use crate::manifest::{Manifest, MAX_MANIFEST_SIZE};
    use oci_spec::image::{Descriptor, Digest, MediaType};

    /// True when the store has the blob with the descriptor's size.
    pub async fn has_blob(s: &dyn BlobStore, desc: &Descriptor) -> Result<bool> {
        Ok(s.stat(desc.digest()).await? == Some(desc.size()))
    }

    /// Stores a blob stream checked against its descriptor.
    pub async fn put_blob(
        s: &dyn BlobStore,
        desc: &Descriptor,
        mut reader: BlobReader,
    ) -> Result<()> {
        s.put_stream(Expected::descriptor(desc), &mut reader)
            .await
            .map(|_| ())
    }

    /// Stores a manifest's exact bytes under its digest.
    pub async fn put_manifest(s: &dyn BlobStore, m: &Manifest) -> Result<()> {
        let mut w = s.ingest(Expected::descriptor(&m.descriptor())).await?;
        tokio::io::AsyncWriteExt::write_all(&mut w, m.bytes())
            .await
            .map_err(Error::from_io)?;
        w.commit().await.map(|_| ())
    }

    /// Reads and verifies the manifest a descriptor names.
    pub async fn manifest(s: &dyn BlobStore, desc: &Descriptor) -> Result<Manifest> {
        let bytes = s.read_bytes(desc, MAX_MANIFEST_SIZE).await?;
        Manifest::parse_verified(bytes, desc)
    }

    /// Reads the manifest stored under a digest (its media type from its own bytes).
    pub async fn manifest_by_digest(s: &dyn BlobStore, d: &Digest) -> Result<Manifest> {
        let size = s
            .stat(d)
            .await?
            .ok_or_else(|| Error::BlobNotFound { digest: d.clone() })?;
        let desc = crate::manifest::descriptor(MediaType::ImageManifest, d.clone(), size);
        let bytes = s.read_bytes(&desc, MAX_MANIFEST_SIZE).await?;
        Manifest::parse_expecting(bytes, None, d)
    }
}

/// Wraps any reader so that it verifies against a descriptor, as a [`BlobReader`].
pub fn verified(
    reader: impl AsyncRead + Send + Unpin + 'static,
    desc: &Descriptor,
) -> Result<BlobReader> {
    Ok(Box::pin(VerifyingReader::for_descriptor(reader, desc)?))
}

macro_rules! forward_blob_store {
    ($($t:ty),*) => {$(
        #[async_trait]
        impl<T: BlobStore + ?Sized> BlobStore for $t {
            async fn open(&self, desc: &Descriptor) -> Result<BlobReader> { (**self).open(desc).await }
            async fn stat(&self, digest: &Digest) -> Result<Option<u64>> { (**self).stat(digest).await }
            async fn ingest(&self, expected: Expected) -> Result<Box<dyn BlobWriter>> { (**self).ingest(expected).await }
            async fn delete(&self, digest: &Digest) -> Result<bool> { (**self).delete(digest).await }
            async fn list(&self) -> Result<Vec<Digest>> { (**self).list().await }
            // Forwarded too: a store's own `contains` (a cheaper check than `stat`) is kept.
            async fn contains(&self, digest: &Digest) -> Result<bool> { (**self).contains(digest).await }
        }
    )*};
}
forward_blob_store!(Arc<T>, Box<T>, &T);

macro_rules! forward_reference_store {
    ($($t:ty),*) => {$(
        #[async_trait]
        impl<T: ReferenceStore + ?Sized> ReferenceStore for $t {
            async fn resolve(&self, name: &str) -> Result<Descriptor> { (**self).resolve(name).await }
            async fn set(&self, name: &str, desc: &Descriptor) -> Result<()> { (**self).set(name, desc).await }
            async fn remove(&self, name: &str) -> Result<bool> { (**self).remove(name).await }
            async fn list(&self) -> Result<Vec<(String, Descriptor)>> { (**self).list().await }
        }
    )*};
}
forward_reference_store!(Arc<T>, Box<T>, &T);

/// Checks a reference name as stored in `org.opencontainers.image.ref.name`: non-empty, at most
/// 255 characters of `[A-Za-z0-9._:@/+=-]`, no empty, `.` or `..` path segment.
pub fn validate_ref_name(name: &str) -> Result<()> {
    let bad = |reason: &str| Error::InvalidReferenceName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() || name.len() > 255 {
        return Err(bad("must be 1 to 255 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:@/+=-".contains(&b))
    {
        return Err(bad("only A-Z a-z 0-9 . _ : @ / + = - are allowed"));
    }
    if name
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(bad("empty, `.` or `..` path segment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names() {
        for ok in [
            "latest",
            "v1.0",
            "docker.io/library/busybox:latest",
            "a@sha256:00",
        ] {
            validate_ref_name(ok).unwrap();
        }
        for bad in ["", "../x", "a//b", "a b", "x\n", "/abs", "a/./b"] {
            assert!(validate_ref_name(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod forwarding_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::MemoryStore;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store with its own `contains`, counting its calls.
    struct Counting {
        inner: MemoryStore,
        contains: AtomicUsize,
    }

    #[async_trait]
    impl BlobStore for Counting {
        async fn open(&self, desc: &Descriptor) -> Result<BlobReader> {
            self.inner.open(desc).await
        }
        async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
            self.inner.stat(digest).await
        }
        async fn ingest(&self, expected: Expected) -> Result<Box<dyn BlobWriter>> {
            self.inner.ingest(expected).await
        }
        async fn delete(&self, digest: &Digest) -> Result<bool> {
            self.inner.delete(digest).await
        }
        async fn list(&self) -> Result<Vec<Digest>> {
            BlobStore::list(&self.inner).await
        }
        async fn contains(&self, digest: &Digest) -> Result<bool> {
            self.contains.fetch_add(1, Ordering::SeqCst);
            self.inner.contains(digest).await
        }
    }

    #[tokio::test]
    async fn arc_box_and_references_forward_every_method() {
        let store = Arc::new(Counting {
            inner: MemoryStore::new(),
            contains: AtomicUsize::new(0),
        });
        let info = store.put_bytes(Bytes::from_static(b"x")).await.unwrap();
        assert!(store.contains(&info.digest).await.unwrap());
        let boxed: Box<dyn BlobStore> = Box::new(store.clone());
        assert!(boxed.contains(&info.digest).await.unwrap());
        let by_ref: &dyn BlobStore = &&*store;
        assert!(by_ref.contains(&info.digest).await.unwrap());
        assert_eq!(store.contains.load(Ordering::SeqCst), 3);
    }
}

/// The digests reachable from `roots` in `store`: the roots, and what every manifest or
/// index among them names (children, and an image manifest's `subject`), transitively. A
/// manifest missing from the store (a tag whose blobs were never fetched) ends its branch;
/// one larger than [`MAX_MANIFEST_SIZE`](crate::MAX_MANIFEST_SIZE) is not read. What a
/// garbage collector keeps.
pub async fn reachable(
    store: &dyn BlobStore,
    roots: impl IntoIterator<Item = Descriptor>,
) -> Result<std::collections::HashSet<oci_spec::image::Digest>> {
    use crate::MAX_MANIFEST_SIZE;
    let mut reachable = std::collections::HashSet::new();
    let mut todo: Vec<Descriptor> = roots.into_iter().collect();
    while let Some(desc) = todo.pop() {
        if !reachable.insert(desc.digest().clone()) {
            continue;
        }
        let is_manifest =
            crate::manifest::ManifestKind::from_media_type(desc.media_type().as_ref()).is_some();
        if !is_manifest || desc.size() > MAX_MANIFEST_SIZE {
            continue;
        }
        match store.read_bytes(&desc, MAX_MANIFEST_SIZE).await {
            Ok(bytes) => {
                let m = crate::Manifest::parse_verified(bytes, &desc)?;
                todo.extend(m.children());
                if let Some(subject) = m.as_image().and_then(|i| i.subject().clone()) {
                    reachable.insert(subject.digest().clone());
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(reachable)
}

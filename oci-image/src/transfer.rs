//! The module of [`ImageSource`], whose docs say what it is for (the module is private).

use crate::digest::parse_digest;
use crate::error::Result;
use crate::manifest::Manifest;
use crate::reference::ImageReference;
use crate::store::BlobReader;
use async_trait::async_trait;
use oci_spec::image::{Descriptor, Digest};
use std::fmt;
use std::sync::Arc;

/// How a source is asked for a manifest: by tag (a name inside the source) or by digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ManifestRef {
    /// A tag or reference name.
    Tag(String),
    /// A content digest.
    Digest(Digest),
}

impl ManifestRef {
    /// `sha256:…`/`sha512:…` becomes a digest (validated); anything else a tag.
    pub fn parse(s: &str) -> Result<Self> {
        if s.starts_with("sha256:") || s.starts_with("sha512:") {
            Ok(ManifestRef::Digest(parse_digest(s)?))
        } else {
            Ok(ManifestRef::Tag(s.to_owned()))
        }
    }
}

impl fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestRef::Tag(t) => f.write_str(t),
            ManifestRef::Digest(d) => write!(f, "{d}"),
        }
    }
}

impl From<Digest> for ManifestRef {
    fn from(d: Digest) -> Self {
        ManifestRef::Digest(d)
    }
}

/// The traits that join image ends: where images come from and where they go.
///
/// A registry, an OCI layout, a docker-archive and an oci-archive are each an
/// [`ImageSource`], an [`ImageDestination`], or both; `copy` moves an image between any two.
///
/// Where images are read from.
#[async_trait]
pub trait ImageSource: Send + Sync {
    /// A manifest or index, by tag or digest. When asked by digest, the bytes returned are
    /// verified against it.
    async fn manifest(&self, reference: &ManifestRef) -> Result<Manifest>;

    /// A blob as a stream that verifies size and digest as it is read.
    async fn blob(&self, desc: &Descriptor) -> Result<BlobReader>;

    /// The blob's bytes without this source's own check, for a destination that checks size
    /// and digest itself before storing anything ([`ImageDestination::verifies_blobs`]): the
    /// content is then hashed once rather than twice. At most `size + 1` bytes are yielded,
    /// so that the destination sees an overrun. The default is [`blob`](Self::blob); sources
    /// whose `blob` hashes as it streams (a registry) override it.
    async fn blob_unverified(&self, desc: &Descriptor) -> Result<BlobReader> {
        self.blob(desc).await
    }

    /// The repository this source reads, when it is a registry repository (used for
    /// cross-repository mounts); `None` otherwise.
    fn registry_repository(&self) -> Option<(String, String)> {
        None
    }
}

/// Where images are written to.
#[async_trait]
pub trait ImageDestination: Send + Sync {
    /// True when the destination already has this blob.
    async fn has_blob(&self, desc: &Descriptor) -> Result<bool>;

    /// Stores a blob read from `reader`, which must match `desc`.
    async fn put_blob(&self, desc: &Descriptor, reader: BlobReader) -> Result<()>;

    /// True when [`put_blob`](Self::put_blob) checks size and digest against the descriptor
    /// itself and keeps nothing that does not match (content stores): [`copy`](crate::copy())
    /// then reads with [`ImageSource::blob_unverified`]. False by default.
    fn verifies_blobs(&self) -> bool {
        false
    }

    /// Stores a manifest or index, after the blobs it points at, and tags it when `tag` is given.
    async fn put_manifest(&self, manifest: &Manifest, tag: Option<&str>) -> Result<()>;

    /// Tries a cross-repository mount of a blob from `(registry, repository)`; false when the
    /// destination cannot or would not (the caller then uploads).
    async fn mount_blob(&self, _desc: &Descriptor, _from: &(String, String)) -> Result<bool> {
        Ok(false)
    }

    /// Finishes the destination (archives write their index and trailer here).
    async fn finish(&self) -> Result<()> {
        Ok(())
    }
}

/// Where images named by reference live: registries, for a program that pulls and pushes by
/// name (`docker.io/library/busybox:latest`). `oci-rs-registry-client` implements it for its
/// `Client`; a program can put a mirror, a cache or a test double in its place. The image
/// stores that pull and push by name take a `&dyn Remote`, so they need no registry code of
/// their own.
#[async_trait]
pub trait Remote: Send + Sync {
    /// A source reading the repository of `reference` (which names the image within it).
    async fn source(&self, reference: &ImageReference) -> Result<Box<dyn ImageSource>>;

    /// A destination writing into the repository of `reference`.
    async fn destination(&self, reference: &ImageReference) -> Result<Box<dyn ImageDestination>>;

    /// The name a short one (`nginx`) stands for with these registries (a configuration's
    /// aliases and search registries); image stores ask before they pull. The name as given
    /// by default, which references read as Docker Hub's.
    fn qualify(&self, name: &str) -> String {
        name.to_owned()
    }

    /// Every name a short one may stand for, in the order a pull tries them (podman's:
    /// each search registry in turn until one has the image); the first is
    /// [`qualify`](Self::qualify)'s. One name by default.
    fn candidates(&self, name: &str) -> Vec<String> {
        vec![self.qualify(name)]
    }

    /// `docker login` as a daemon does it for a client (the Engine API's `/auth`, and the
    /// `X-Registry-Auth` of a push or pull): checks `username` and `password` against
    /// `registry` and returns these registries with them for `registry`, in place of what
    /// this remote would use there. Stores nothing. `Ok(None)` when this remote takes no
    /// credentials (the default).
    async fn login(
        &self,
        registry: &str,
        username: &str,
        password: &str,
    ) -> Result<Option<std::sync::Arc<dyn Remote>>> {
        let _ = (registry, username, password);
        Ok(None)
    }
}

/// Where bytes named by URL come from (`ADD https://...` in a Dockerfile, `import URL`).
/// `oci-rs-registry-client` implements it for its `Client` (its proxies, TLS roots and
/// timeouts); a program can restrict it (an allow-list, a cache) by putting its own in place.
#[async_trait]
pub trait UrlSource: Send + Sync {
    /// The body of `url`, as a stream; an error for a status other than success.
    async fn fetch(&self, url: &str) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>>;
}

macro_rules! forward_transfer {
    ($($t:ty),*) => {$(
        #[async_trait]
        impl<T: ImageSource + ?Sized> ImageSource for $t {
            async fn manifest(&self, reference: &ManifestRef) -> Result<Manifest> { (**self).manifest(reference).await }
            async fn blob(&self, desc: &Descriptor) -> Result<BlobReader> { (**self).blob(desc).await }
            async fn blob_unverified(&self, desc: &Descriptor) -> Result<BlobReader> { (**self).blob_unverified(desc).await }
            fn registry_repository(&self) -> Option<(String, String)> { (**self).registry_repository() }
        }
        #[async_trait]
        impl<T: ImageDestination + ?Sized> ImageDestination for $t {
            async fn has_blob(&self, desc: &Descriptor) -> Result<bool> { (**self).has_blob(desc).await }
            async fn put_blob(&self, desc: &Descriptor, reader: BlobReader) -> Result<()> { (**self).put_blob(desc, reader).await }
            fn verifies_blobs(&self) -> bool { (**self).verifies_blobs() }
            async fn put_manifest(&self, manifest: &Manifest, tag: Option<&str>) -> Result<()> { (**self).put_manifest(manifest, tag).await }
            async fn mount_blob(&self, desc: &Descriptor, from: &(String, String)) -> Result<bool> { (**self).mount_blob(desc, from).await }
            async fn finish(&self) -> Result<()> { (**self).finish().await }
        }
    )*};
}
forward_transfer!(Arc<T>, Box<T>);

#[async_trait]
impl<T: Remote + ?Sized> Remote for Arc<T> {
    async fn source(&self, reference: &ImageReference) -> Result<Box<dyn ImageSource>> {
        (**self).source(reference).await
    }
    async fn destination(&self, reference: &ImageReference) -> Result<Box<dyn ImageDestination>> {
        (**self).destination(reference).await
    }
    fn qualify(&self, name: &str) -> String {
        (**self).qualify(name)
    }
    fn candidates(&self, name: &str) -> Vec<String> {
        (**self).candidates(name)
    }
}

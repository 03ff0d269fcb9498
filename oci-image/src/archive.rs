//! The module of [`ArchiveSource`], whose docs say what it is for (the module is private).

use crate::digest::{parse_digest, path_components, Hasher};
use crate::error::{Error, Result};
use crate::layout::{ref_name, CONTAINERD_IMAGE_NAME, OCI_LAYOUT_CONTENT, REF_NAME};
use crate::manifest::{descriptor, Manifest, ManifestBody, ManifestKind, MAX_MANIFEST_SIZE};
use crate::media;
use crate::reference::ImageReference;
use crate::store::{verified, BlobReader};
use crate::transfer::{ImageDestination, ImageSource, ManifestRef};
use crate::Compression;
use async_trait::async_trait;
use futures_util::StreamExt;
use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageIndexBuilder, MediaType};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio_tar::{Archive, Builder, EntryType, Header};

/// Largest `index.json`, `manifest.json` or config read from an archive.
const MAX_META_SIZE: u64 = 16 * 1024 * 1024;
/// Most entries an archive may have.
const MAX_ENTRIES: usize = 1_000_000;

/// Which archive to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save`: an OCI layout plus `manifest.json` and `repositories`.
    Docker,
    /// `oci-archive`: a tar of an OCI layout.
    Oci,
}

/// One entry of docker's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerManifestEntry {
    /// Path of the config in the archive.
    pub config: String,
    /// `name:tag` of the image.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub repo_tags: Vec<String>,
    /// Paths of the layers in the archive, base first.
    pub layers: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

type Sink = Box<dyn AsyncWrite + Send + Unpin>;

struct WriterState {
    tar: Option<Builder<Sink>>,
    written: HashSet<Digest>,
    /// Manifests written, in order, with their tag.
    manifests: Vec<(Manifest, Option<String>)>,
    finished: bool,
}

/// Writes a docker-archive or an oci-archive. Use it as the destination of a copy (one or
/// several times), then call [`ImageDestination::finish`] once (copy does that).
pub struct ArchiveWriter {
    format: ArchiveFormat,
    state: Mutex<WriterState>,
    target: std::sync::Mutex<Option<crate::output::OutputFile>>,
    repository: Option<String>,
}

impl std::fmt::Debug for ArchiveWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("format", &self.format)
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

impl ArchiveWriter {
    /// Writes to a file; it appears under `path` only when [`ImageDestination::finish`]
    /// succeeds. A path that names a character device, pipe or FIFO (`/dev/stdout`) is
    /// written to directly, never replaced (see [`OutputFile`](crate::OutputFile)).
    pub async fn create(path: impl AsRef<Path>, format: ArchiveFormat) -> Result<Self> {
        let mut out = crate::output::OutputFile::create(path.as_ref())?;
        let file = out.file().ok_or_else(|| Error::InvalidArchive {
            reason: "the output file is unusable".into(),
        })?;
        let sink: Sink = Box::new(tokio::io::BufWriter::with_capacity(
            256 * 1024,
            tokio::fs::File::from_std(file),
        ));
        let mut this = Self::new(sink, format);
        this.target = std::sync::Mutex::new(Some(out));
        Ok(this)
    }

    /// Writes to any stream (stdout, a pipe, a socket).
    pub fn new(sink: impl AsyncWrite + Send + Unpin + 'static, format: ArchiveFormat) -> Self {
        Self {
            format,
            state: Mutex::new(WriterState {
                tar: Some(Builder::new_non_terminated(Box::new(sink) as Sink)),
                written: HashSet::new(),
                manifests: Vec::new(),
                finished: false,
            }),
            target: std::sync::Mutex::new(None),
            repository: None,
        }
    }

    /// The repository name that bare tags belong to (`busybox` makes tag `v1` into
    /// `busybox:v1` in `manifest.json`).
    pub fn repository(mut self, name: &str) -> Self {
        self.repository = Some(name.to_owned());
        self
    }

    fn full_name(&self, tag: &str) -> Option<ImageReference> {
        if tag.contains(':') || tag.contains('/') {
            return ImageReference::parse(tag).ok();
        }
        let repo = self.repository.as_deref()?;
        ImageReference::parse(&format!("{repo}:{tag}")).ok()
    }
}

fn blob_name(d: &Digest) -> Result<String> {
    let (alg, hex) = path_components(d)?;
    Ok(format!("blobs/{alg}/{hex}"))
}

fn file_header(size: u64, mode: u32, kind: EntryType) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

async fn append_bytes(tar: &mut Builder<Sink>, name: &str, data: &[u8]) -> Result<()> {
    let mut h = file_header(data.len() as u64, 0o644, EntryType::Regular);
    tar.append_data(&mut h, name, data)
        .await
        .map_err(Error::from_io)
}

impl WriterState {
    fn tar(&mut self) -> Result<&mut Builder<Sink>> {
        if self.finished {
            return Err(Error::InvalidArchive {
                reason: "the archive was already finished".into(),
            });
        }
        self.tar.as_mut().ok_or_else(|| Error::InvalidArchive {
            reason: "an earlier write failed; the archive is unusable".into(),
        })
    }

    async fn start(&mut self) -> Result<()> {
        if !self.written.is_empty() || !self.manifests.is_empty() {
            return Ok(());
        }
        let tar = self.tar()?;
        for dir in ["blobs/", "blobs/sha256/"] {
            let mut h = file_header(0, 0o755, EntryType::Directory);
            tar.append_data(&mut h, dir, tokio::io::empty())
                .await
                .map_err(Error::from_io)?;
        }
        append_bytes(tar, "oci-layout", OCI_LAYOUT_CONTENT.as_bytes()).await
    }
}

#[async_trait]
impl ImageDestination for ArchiveWriter {
    async fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        Ok(self.state.lock().await.written.contains(desc.digest()))
    }

    async fn put_blob(&self, desc: &Descriptor, mut reader: BlobReader) -> Result<()> {
        let name = blob_name(desc.digest())?;
        let mut st = self.state.lock().await;
        st.start().await?;
        if st.written.contains(desc.digest()) {
            return Ok(());
        }
        let tar = st.tar()?;
        let mut h = file_header(desc.size(), 0o644, EntryType::Regular);
        if let Err(e) = tar.append_data(&mut h, &name, &mut reader).await {
            // A blob cut short leaves a torn entry: the archive cannot be continued.
            st.tar = None;
            return Err(Error::from_io(e));
        }
        st.written.insert(desc.digest().clone());
        Ok(())
    }

    async fn put_manifest(&self, manifest: &Manifest, tag: Option<&str>) -> Result<()> {
        let name = blob_name(manifest.digest())?;
        let mut st = self.state.lock().await;
        st.start().await?;
        if !st.written.contains(manifest.digest()) {
            let tar = st.tar()?;
            if let Err(e) = append_bytes(tar, &name, manifest.bytes()).await {
                st.tar = None;
                return Err(e);
            }
            st.written.insert(manifest.digest().clone());
        }
        st.manifests
            .push((manifest.clone(), tag.map(str::to_owned)));
        Ok(())
    }

    async fn finish(&self) -> Result<()> {
        let mut st = self.state.lock().await;
        if st.finished {
            return Ok(());
        }
        st.start().await?;
        // Top-level documents: tagged ones, and untagged ones no recorded index points at.
        let children: HashSet<Digest> = st
            .manifests
            .iter()
            .filter(|(m, _)| m.kind().is_index())
            .flat_map(|(m, _)| m.children().into_iter().map(|d| d.digest().clone()))
            .collect();
        let mut entries = Vec::new();
        let mut docker = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (m, tag) in &st.manifests {
            if tag.is_none() && children.contains(m.digest()) {
                continue;
            }
            let mut desc = m.descriptor();
            let full = tag.as_deref().and_then(|t| self.full_name(t));
            if let Some(t) = tag {
                let mut ann = HashMap::new();
                match &full {
                    Some(r) => {
                        ann.insert(CONTAINERD_IMAGE_NAME.to_owned(), r.to_string());
                        ann.insert(REF_NAME.to_owned(), r.tag().unwrap_or("latest").to_owned());
                    }
                    None => {
                        ann.insert(REF_NAME.to_owned(), t.clone());
                    }
                }
                desc.set_annotations(Some(ann));
            }
            entries.push(desc);
            if let (ArchiveFormat::Docker, ManifestBody::Image(img)) = (self.format, m.body()) {
                let familiar = full.as_ref().map(|r| r.familiar());
                let mut layers = Vec::new();
                for l in img.layers() {
                    layers.push(blob_name(l.digest())?);
                }
                if let (Some(r), Some(last)) = (&full, img.layers().last()) {
                    let repo_name = familiar
                        .as_deref()
                        .and_then(|f| f.rsplit_once(':').map(|(n, _)| n.to_owned()))
                        .unwrap_or_else(|| r.name());
                    repositories.entry(repo_name).or_default().insert(
                        r.tag().unwrap_or("latest").to_owned(),
                        last.digest().digest().to_owned(),
                    );
                }
                docker.push(DockerManifestEntry {
                    config: blob_name(img.config().digest())?,
                    repo_tags: familiar.into_iter().collect(),
                    layers,
                });
            }
        }
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(entries)
            .build()
            .map_err(|source| Error::Build {
                what: "index.json",
                source,
            })?;
        let index = crate::manifest::index_to_json(&index)?;
        let format = self.format;
        let tar = st.tar()?;
        append_bytes(tar, "index.json", &index).await?;
        if format == ArchiveFormat::Docker {
            let mj = serde_json::to_vec(&docker).map_err(|source| Error::InvalidJson {
                what: "manifest.json",
                source,
            })?;
            append_bytes(tar, "manifest.json", &mj).await?;
            if !repositories.is_empty() {
                let rj =
                    serde_json::to_vec(&repositories).map_err(|source| Error::InvalidJson {
                        what: "repositories",
                        source,
                    })?;
                append_bytes(tar, "repositories", &rj).await?;
            }
        }
        let mut tar = st.tar.take().ok_or_else(|| Error::InvalidArchive {
            reason: "the archive is unusable".into(),
        })?;
        tar.finish().await.map_err(Error::from_io)?;
        let mut sink = tar.into_inner().await.map_err(Error::from_io)?;
        sink.flush().await.map_err(Error::from_io)?;
        sink.shutdown().await.map_err(Error::from_io)?;
        st.finished = true;
        let target = self.target.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(out) = target {
            out.commit()?;
        }
        Ok(())
    }
}

/// Where an entry's bytes are in the archive file.
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: u64,
    size: u64,
}

/// `docker save` archives and OCI archives, read and written through the transfer traits, so
/// that `save` and `load` are [`copy`](crate::copy()) calls.
///
/// [`ArchiveWriter`] writes what docker 25 and later write: an OCI layout in a tar
/// (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`) and, in [`ArchiveFormat::Docker`], also
/// `manifest.json` and `repositories`, so the same file is a valid docker-archive and a valid
/// oci-archive. Blobs stream straight into the tar; nothing is held in memory but the small
/// index files. Written to a path, the archive appears under its name only once complete.
///
/// [`ArchiveSource`] reads both formats and the older docker layout (`<id>/layer.tar`,
/// `<hex>.json`), from a seekable file: one pass records where each entry's bytes are, then
/// blobs are read straight from those offsets, verified as they stream.
///
/// A docker-archive or oci-archive file, read as an [`ImageSource`].
///
/// Tags: an OCI `org.opencontainers.image.ref.name`, an `io.containerd.image.name`, or a
/// docker `RepoTags` entry (`busybox:latest`, normalised, so `docker.io/library/busybox`
/// finds it too); the empty tag finds the only image of a one-image archive.
#[derive(Debug)]
pub struct ArchiveSource {
    path: PathBuf,
    entries: HashMap<String, Span>,
    index: Option<ImageIndex>,
    docker: Vec<DockerManifestEntry>,
    /// Manifests synthesised from `manifest.json` for legacy archives.
    synthesized: HashMap<Digest, Manifest>,
    /// Where synthesised configs and layers are.
    locations: HashMap<Digest, String>,
    /// docker RepoTag (normalised) → manifest digest.
    docker_tags: HashMap<String, Digest>,
}

fn clean_entry_name(raw: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            std::path::Component::Normal(p) => parts.push(p.to_str()?.to_owned()),
            std::path::Component::CurDir => {}
            // `..`, absolute paths: never a name this reader looks up.
            _ => return None,
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

impl ArchiveSource {
    /// Scans an archive file.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| Error::io(&path, e))?;
        // Long-name and PAX records are held whole by the parser: refuse huge ones first.
        let mut archive = Archive::new(crate::TarGuard::new(tokio::io::BufReader::with_capacity(
            256 * 1024,
            file,
        )));
        let mut entries = HashMap::new();
        let mut stream = archive.entries().map_err(|e| Error::io(&path, e))?;
        while let Some(entry) = stream.next().await {
            let entry = entry.map_err(|e| bad_archive(&path, &e.to_string()))?;
            let kind = entry.header().entry_type();
            if !(kind.is_file() || kind == EntryType::Continuous) {
                continue;
            }
            let name = entry
                .path()
                .map_err(|e| bad_archive(&path, &e.to_string()))?;
            let Some(name) = clean_entry_name(&name) else {
                continue;
            };
            entries.insert(
                name,
                Span {
                    offset: entry.raw_file_position(),
                    size: entry.effective_size(),
                },
            );
            if entries.len() > MAX_ENTRIES {
                return Err(bad_archive(&path, "too many entries"));
            }
        }
        let mut this = Self {
            path,
            entries,
            index: None,
            docker: Vec::new(),
            synthesized: HashMap::new(),
            locations: HashMap::new(),
            docker_tags: HashMap::new(),
        };
        if let Some(bytes) = this.read_meta("index.json").await? {
            let index = crate::manifest::index_from_json(&bytes)
                .map_err(|e| bad_archive(&this.path, &format!("index.json: {e}")))?;
            for d in index.manifests() {
                crate::digest::check_supported(d.digest())?;
            }
            this.index = Some(index);
        }
        if let Some(bytes) = this.read_meta("manifest.json").await? {
            this.docker = serde_json::from_slice(&bytes)
                .map_err(|e| bad_archive(&this.path, &format!("manifest.json: {e}")))?;
            this.load_docker().await?;
        }
        if this.index.is_none() && this.docker.is_empty() {
            return Err(bad_archive(
                &this.path,
                "neither index.json nor manifest.json: not an image archive",
            ));
        }
        Ok(this)
    }

    async fn read_span(&self, span: Span, limit: u64, what: &str) -> Result<Vec<u8>> {
        if span.size > limit {
            return Err(bad_archive(
                &self.path,
                &format!("{what} of {} bytes is over the limit", span.size),
            ));
        }
        let mut f = tokio::fs::File::open(&self.path)
            .await
            .map_err(|e| Error::io(&self.path, e))?;
        f.seek(std::io::SeekFrom::Start(span.offset))
            .await
            .map_err(|e| Error::io(&self.path, e))?;
        let mut buf = vec![0; span.size as usize];
        f.read_exact(&mut buf)
            .await
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(buf)
    }

    async fn read_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match self.entries.get(name) {
            Some(span) => Ok(Some(self.read_span(*span, MAX_META_SIZE, name).await?)),
            None => Ok(None),
        }
    }

    fn span(&self, name: &str) -> Result<Span> {
        let name = clean_entry_name(Path::new(name))
            .ok_or_else(|| bad_archive(&self.path, &format!("bad entry name {name:?}")))?;
        self.entries
            .get(&name)
            .copied()
            .ok_or_else(|| bad_archive(&self.path, &format!("{name} is missing")))
    }

    /// Builds Docker schema 2 manifests for the images of `manifest.json`, hashing layers
    /// whose names do not give their digest.
    async fn load_docker(&mut self) -> Result<()> {
        // Each entry is hashed once, however many images or layer slots name it.
        let mut hashed: HashMap<u64, Digest> = HashMap::new();
        for entry in self.docker.clone() {
            let cspan = self.span(&entry.config)?;
            let config_bytes = self.read_span(cspan, MAX_META_SIZE, "config").await?;
            let config_digest = crate::digest::sha256(&config_bytes);
            let config: serde_json::Value = serde_json::from_slice(&config_bytes)
                .map_err(|e| bad_archive(&self.path, &format!("{}: {e}", entry.config)))?;
            let diff_ids: Vec<String> = config
                .pointer("/rootfs/diff_ids")
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if diff_ids.len() != entry.layers.len() {
                return Err(bad_archive(
                    &self.path,
                    &format!(
                        "{} lists {} diff_ids for {} layers",
                        entry.config,
                        diff_ids.len(),
                        entry.layers.len()
                    ),
                ));
            }
            self.locations
                .insert(config_digest.clone(), entry.config.clone());
            let mut layers = Vec::new();
            for (i, lpath) in entry.layers.iter().enumerate() {
                let span = self.span(lpath)?;
                let head = self
                    .read_span(
                        Span {
                            offset: span.offset,
                            size: span.size.min(4),
                        },
                        4,
                        "layer",
                    )
                    .await?;
                let compression = Compression::from_magic(&head);
                let media_type = match compression {
                    Compression::Gzip => media::DOCKER_LAYER_GZIP,
                    Compression::Zstd => media::DOCKER_LAYER_ZSTD,
                    _ => media::DOCKER_LAYER_TAR,
                };
                let digest = match digest_from_name(lpath) {
                    Some(d) => d,
                    None if compression == Compression::None => {
                        // An uncompressed legacy layer is named by its DiffID in the config.
                        parse_digest(&diff_ids[i])?
                    }
                    None => match hashed.get(&span.offset) {
                        Some(d) => d.clone(),
                        None => {
                            let d = self.hash_span(span).await?;
                            hashed.insert(span.offset, d.clone());
                            d
                        }
                    },
                };
                self.locations.insert(digest.clone(), lpath.clone());
                layers.push(descriptor(MediaType::from(media_type), digest, span.size));
            }
            let m = oci_spec::image::ImageManifestBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::from(media::DOCKER_MANIFEST))
                .config(descriptor(
                    MediaType::from(media::DOCKER_CONFIG),
                    config_digest,
                    cspan.size,
                ))
                .layers(layers)
                .build()
                .map_err(|source| Error::Build {
                    what: "a manifest for a docker-archive image",
                    source,
                })?;
            let m = Manifest::from_image(&m, ManifestKind::DockerManifest)?;
            for t in &entry.repo_tags {
                if let Ok(r) = ImageReference::parse(t) {
                    self.docker_tags.insert(r.to_string(), m.digest().clone());
                }
            }
            self.synthesized.insert(m.digest().clone(), m);
        }
        Ok(())
    }

    async fn hash_span(&self, span: Span) -> Result<Digest> {
        let mut f = self.open_span(span).await?;
        let mut h = Hasher::default();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f
                .read(&mut buf)
                .await
                .map_err(|e| Error::io(&self.path, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finish())
    }

    async fn open_span(&self, span: Span) -> Result<tokio::io::Take<tokio::fs::File>> {
        let mut f = tokio::fs::File::open(&self.path)
            .await
            .map_err(|e| Error::io(&self.path, e))?;
        f.seek(std::io::SeekFrom::Start(span.offset))
            .await
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(f.take(span.size))
    }

    /// Every name an image of the archive answers to.
    pub fn tags(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .index
            .iter()
            .flat_map(|i| i.manifests().iter())
            .filter_map(|d| {
                let a = d.annotations().as_ref()?;
                a.get(CONTAINERD_IMAGE_NAME)
                    .or_else(|| a.get(REF_NAME))
                    .cloned()
            })
            .collect();
        for e in &self.docker {
            out.extend(e.repo_tags.iter().cloned());
        }
        out.sort();
        out.dedup();
        out
    }

    /// Every image at the archive's top level, named or not: the entries of `index.json`,
    /// else the images of a docker `manifest.json` (by digest). Empty for an archive that
    /// holds no image.
    pub fn manifests(&self) -> Vec<Descriptor> {
        let entries = self.index.as_ref().map(|i| i.manifests().as_slice());
        match entries {
            Some(e) if !e.is_empty() => e.to_vec(),
            _ => {
                let mut out: Vec<Descriptor> = self
                    .synthesized
                    .values()
                    .map(Manifest::descriptor)
                    .collect();
                out.sort_by_key(|d| d.digest().to_string());
                out
            }
        }
    }

    fn find_tag(&self, tag: &str) -> Option<Descriptor> {
        let index = self.index.as_ref();
        let entries = index.map(|i| i.manifests().as_slice()).unwrap_or_default();
        if tag.is_empty() {
            if let [only] = entries {
                return Some(only.clone());
            }
            if entries.is_empty() && self.synthesized.len() == 1 {
                return self.synthesized.values().next().map(Manifest::descriptor);
            }
            return None;
        }
        if let Some(d) = entries.iter().rev().find(|d| ref_name(d) == Some(tag)) {
            return Some(d.clone());
        }
        let normal = ImageReference::parse(tag).ok().map(|r| r.to_string());
        if let Some(n) = &normal {
            let by_name = entries.iter().rev().find(|d| {
                d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(CONTAINERD_IMAGE_NAME))
                    .and_then(|v| ImageReference::parse(v).ok())
                    .is_some_and(|r| &r.to_string() == n)
            });
            if let Some(d) = by_name {
                return Some(d.clone());
            }
            if let Some(d) = self.docker_tags.get(n) {
                return self.synthesized.get(d).map(Manifest::descriptor);
            }
        }
        None
    }
}

fn digest_from_name(path: &str) -> Option<Digest> {
    let mut parts = path.rsplit('/');
    let hex = parts.next()?;
    let alg = parts.next()?;
    if parts.next() != Some("blobs") {
        return None;
    }
    parse_digest(&format!("{alg}:{hex}")).ok()
}

fn bad_archive(path: &Path, reason: &str) -> Error {
    Error::InvalidArchive {
        reason: format!("{}: {reason}", path.display()),
    }
}

#[async_trait]
impl ImageSource for ArchiveSource {
    async fn manifest(&self, reference: &ManifestRef) -> Result<Manifest> {
        let desc = match reference {
            ManifestRef::Tag(t) => self
                .find_tag(t)
                .ok_or_else(|| Error::ReferenceNotFound { name: t.clone() })?,
            ManifestRef::Digest(d) => {
                if let Some(m) = self.synthesized.get(d) {
                    return Ok(m.clone());
                }
                let span = self
                    .span(&blob_name(d)?)
                    .map_err(|_| Error::BlobNotFound { digest: d.clone() })?;
                let bytes = self.read_span(span, MAX_MANIFEST_SIZE, "manifest").await?;
                return Manifest::parse_expecting(bytes, None, d);
            }
        };
        if let Some(m) = self.synthesized.get(desc.digest()) {
            return Ok(m.clone());
        }
        let span = self.span(&blob_name(desc.digest())?)?;
        let bytes = self.read_span(span, MAX_MANIFEST_SIZE, "manifest").await?;
        Manifest::parse_verified(bytes, &desc)
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobReader> {
        let name = match self.locations.get(desc.digest()) {
            Some(n) => n.clone(),
            None => blob_name(desc.digest())?,
        };
        let span = self.span(&name).map_err(|_| Error::BlobNotFound {
            digest: desc.digest().clone(),
        })?;
        let f = self.open_span(span).await?;
        verified(f, desc)
    }
}

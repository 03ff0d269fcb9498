//! The module of [`ImageBuilder`], whose docs say what it is for (the module is private).

use crate::error::{Error, Result};
use crate::manifest::{descriptor, Manifest, ManifestBody, ManifestKind};
use crate::media;
use crate::store::{BlobStore, BlobStoreExt, Expected};
use crate::transfer::ImageSource;
use crate::verify::HashingReader;
use crate::Compression;
use bytes::Bytes;
use oci_spec::image::{
    Descriptor, Digest, ImageConfiguration, ImageManifest, ImageManifestBuilder, MediaType,
};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use tokio::io::AsyncRead;

/// Largest config read into memory.
pub const MAX_CONFIG_SIZE: u64 = 8 * 1024 * 1024;

/// Image building blocks: a new image from a config and layers, appending layers, setting
/// config fields, writing the result to a store.
///
/// The config is edited as JSON, not through `oci_spec::image::ImageConfiguration`: a base
/// image's config carries fields that type does not know (`Healthcheck`, `Shell`, `OnBuild`,
/// docker's `container_config`), and they must survive an append. Objects serialise with
/// sorted keys, so the same inputs always give the same config digest.
///
/// Builds an image: config edits, layers, then [`ImageBuilder::build`] into a store.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> oci_rs_image::Result<()> {
/// use oci_rs_image::{Compression, ImageBuilder, MemoryStore};
/// let store = MemoryStore::new();
/// let mut b = ImageBuilder::new("linux", "amd64")
///     .entrypoint(["/bin/sh", "-c"])
///     .env("PATH", "/bin")
///     .label("org.example", "yes");
/// let tar = vec![0u8; 1024]; // an empty tar: two zero blocks
/// b.add_layer_tar(&store, &mut &tar[..], Compression::Gzip, "empty").await?;
/// let image = b.build(&store).await?;
/// assert_eq!(image.as_image().unwrap().layers().len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    config: Value,
    layers: Vec<Descriptor>,
    kind: ManifestKind,
    annotations: HashMap<String, String>,
}

impl ImageBuilder {
    /// A new, empty image for `os`/`arch`, with OCI media types.
    pub fn new(os: &str, arch: &str) -> Self {
        Self {
            config: json!({
                "architecture": arch,
                "os": os,
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            }),
            layers: Vec::new(),
            kind: ManifestKind::OciManifest,
            annotations: HashMap::new(),
        }
    }

    /// Starts from an existing image (to add layers to it, as a `FROM` line does). Docker
    /// images stay Docker images.
    pub async fn from_image(src: &dyn ImageSource, manifest: &Manifest) -> Result<Self> {
        let ManifestBody::Image(m) = manifest.body() else {
            return Err(Error::InvalidImage {
                reason: format!("{} is an index, not an image", manifest.digest()),
            });
        };
        let config = read_config_json(src, m.config()).await?;
        let this = Self {
            config,
            layers: m.layers().clone(),
            kind: manifest.kind(),
            annotations: HashMap::new(),
        };
        let diff_ids = this.diff_ids().len();
        if diff_ids != this.layers.len() {
            return Err(Error::InvalidImage {
                reason: format!(
                    "config of {} lists {diff_ids} diff_ids for {} layers",
                    manifest.digest(),
                    this.layers.len()
                ),
            });
        }
        Ok(this)
    }

    /// Writes Docker schema 2 media types instead of OCI ones.
    pub fn docker(mut self, yes: bool) -> Self {
        self.kind = if yes {
            ManifestKind::DockerManifest
        } else {
            ManifestKind::OciManifest
        };
        self
    }

    fn root(&mut self) -> &mut Map<String, Value> {
        if !self.config.is_object() {
            self.config = json!({});
        }
        match &mut self.config {
            Value::Object(m) => m,
            _ => unreachable!("made an object above"),
        }
    }

    fn exec(&mut self) -> &mut Map<String, Value> {
        let root = self.root();
        let c = root.entry("config").or_insert_with(|| json!({}));
        if !c.is_object() {
            *c = json!({});
        }
        match c {
            Value::Object(m) => m,
            _ => unreachable!("made an object above"),
        }
    }

    fn set_exec(mut self, key: &str, v: Value) -> Self {
        self.exec().insert(key.to_owned(), v);
        self
    }

    /// Sets `Entrypoint`.
    pub fn entrypoint<S: Into<String>>(self, args: impl IntoIterator<Item = S>) -> Self {
        self.set_exec("Entrypoint", strings(args))
    }

    /// Sets `Cmd`.
    pub fn cmd<S: Into<String>>(self, args: impl IntoIterator<Item = S>) -> Self {
        self.set_exec("Cmd", strings(args))
    }

    /// Sets one environment variable, replacing an earlier value of the same name.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        let exec = self.exec();
        let list = exec.entry("Env").or_insert_with(|| json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        if let Value::Array(items) = list {
            // Replaced where it stands (docker's and BuildKit's order), else appended.
            let prefix = format!("{key}=");
            let entry = Value::String(format!("{key}={value}"));
            let mut at = items
                .iter()
                .position(|v| v.as_str().is_some_and(|s| s.starts_with(&prefix)));
            match at.take() {
                Some(i) => {
                    items[i] = entry;
                    let mut k = 0;
                    items.retain(|v| {
                        k += 1;
                        k - 1 <= i || !v.as_str().is_some_and(|s| s.starts_with(&prefix))
                    });
                }
                None => items.push(entry),
            }
        }
        self
    }

    /// Sets `WorkingDir`.
    pub fn working_dir(self, dir: &str) -> Self {
        self.set_exec("WorkingDir", json!(dir))
    }

    /// Sets `User` (`name`, `uid`, `uid:gid`, `name:group`).
    pub fn user(self, user: &str) -> Self {
        self.set_exec("User", json!(user))
    }

    /// Sets `StopSignal`.
    pub fn stop_signal(self, signal: &str) -> Self {
        self.set_exec("StopSignal", json!(signal))
    }

    fn set_map_key(mut self, field: &str, key: &str, value: Value) -> Self {
        let exec = self.exec();
        let map = exec.entry(field).or_insert_with(|| json!({}));
        if !map.is_object() {
            *map = json!({});
        }
        if let Value::Object(m) = map {
            m.insert(key.to_owned(), value);
        }
        self
    }

    /// Sets a label.
    pub fn label(self, key: &str, value: &str) -> Self {
        self.set_map_key("Labels", key, json!(value))
    }

    /// Adds an exposed port (`80/tcp`; a bare number means tcp).
    pub fn expose(self, port: &str) -> Self {
        let port = if port.contains('/') {
            port.to_owned()
        } else {
            format!("{port}/tcp")
        };
        self.set_map_key("ExposedPorts", &port, json!({}))
    }

    /// Adds a volume.
    pub fn volume(self, path: &str) -> Self {
        self.set_map_key("Volumes", path, json!({}))
    }

    /// Sets the CPU variant (`v7`, `v8`).
    pub fn variant(mut self, variant: &str) -> Self {
        self.root().insert("variant".into(), json!(variant));
        self
    }

    /// Sets `author`.
    pub fn author(mut self, author: &str) -> Self {
        self.root().insert("author".into(), json!(author));
        self
    }

    /// Sets `created` (RFC 3339). Left unset, the image has no creation time, which keeps
    /// builds reproducible.
    pub fn created(mut self, rfc3339: &str) -> Self {
        self.root().insert("created".into(), json!(rfc3339));
        self
    }

    /// Sets a manifest annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The diff IDs of the layers so far.
    pub fn diff_ids(&self) -> Vec<String> {
        self.config
            .pointer("/rootfs/diff_ids")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The config as it stands.
    pub fn config_json(&self) -> &Value {
        &self.config
    }

    /// The layers so far, base first.
    pub fn layers(&self) -> &[Descriptor] {
        &self.layers
    }

    /// Replaces the config and layers with a state saved earlier from
    /// [`ImageBuilder::config_json`] and [`ImageBuilder::layers`] (a build cache's entry).
    /// The config must list one DiffID per layer.
    pub fn restore(mut self, config: Value, layers: Vec<Descriptor>) -> Result<Self> {
        self.config = config;
        self.layers = layers;
        if self.diff_ids().len() != self.layers.len() {
            return Err(Error::InvalidImage {
                reason: format!(
                    "a saved state lists {} diff_ids for {} layers",
                    self.diff_ids().len(),
                    self.layers.len()
                ),
            });
        }
        Ok(self)
    }

    /// Sets (or, with `Value::Null`, removes) a field of the execution config by its
    /// docker name: `Shell`, `Healthcheck`, `OnBuild`, or any other.
    pub fn config_field(mut self, key: &str, value: Value) -> Self {
        if value.is_null() {
            self.exec().remove(key);
            return self;
        }
        self.set_exec(key, value)
    }

    /// Appends a layer already in the store: its descriptor, the digest of its uncompressed
    /// tar (DiffID) and the history line (`created_by`) to record.
    pub fn append_layer(&mut self, layer: Descriptor, diff_id: &Digest, created_by: &str) {
        let created = self.config.get("created").cloned();
        let root = self.root();
        let rootfs = root
            .entry("rootfs")
            .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
        if let Some(Value::Array(ids)) = rootfs.get_mut("diff_ids") {
            ids.push(json!(diff_id.to_string()));
        } else {
            *rootfs = json!({"type": "layers", "diff_ids": [diff_id.to_string()]});
        }
        let hist = root.entry("history").or_insert_with(|| json!([]));
        if !hist.is_array() {
            *hist = json!([]);
        }
        if let Value::Array(h) = hist {
            let mut entry = json!({"created_by": created_by});
            if let Some(c) = created {
                entry["created"] = c;
            }
            h.push(entry);
        }
        self.layers.push(layer);
    }

    /// Sets `comment` and `author` on the last history entry (docker's `commit -m -a`).
    pub fn annotate_last_history(&mut self, comment: Option<&str>, author: Option<&str>) {
        if let Some(Value::Array(h)) = self.root().get_mut("history") {
            if let Some(Value::Object(last)) = h.last_mut() {
                if let Some(c) = comment {
                    last.insert("comment".into(), json!(c));
                }
                if let Some(a) = author {
                    last.insert("author".into(), json!(a));
                }
            }
        }
    }

    /// Records a history line for a config-only change (`empty_layer`), as `ENV` or `CMD` do.
    pub fn history_note(&mut self, created_by: &str) {
        let created = self.config.get("created").cloned();
        let hist = self.root().entry("history").or_insert_with(|| json!([]));
        if let Value::Array(h) = hist {
            let mut entry = json!({"created_by": created_by, "empty_layer": true});
            if let Some(c) = created {
                entry["created"] = c;
            }
            h.push(entry);
        }
    }

    /// Compresses an uncompressed layer tar into `store` in one pass, computing its DiffID
    /// and compressed digest on the way, and appends it. Returns the layer's descriptor.
    pub async fn add_layer_tar(
        &mut self,
        store: &dyn BlobStore,
        tar: &mut (dyn AsyncRead + Send + Unpin),
        compression: Compression,
        created_by: &str,
    ) -> Result<Descriptor> {
        let (desc, diff_id) = write_layer(store, tar, compression, self.kind.is_docker()).await?;
        self.append_layer(desc.clone(), &diff_id, created_by);
        Ok(desc)
    }

    /// Writes the config and the manifest into `store` and returns the manifest.
    pub async fn build(self, store: &dyn BlobStore) -> Result<Manifest> {
        // Check that the config is one an OCI consumer can read.
        let _: ImageConfiguration =
            serde_json::from_value(self.config.clone()).map_err(|source| Error::InvalidJson {
                what: "image config",
                source,
            })?;
        let bytes = serde_json::to_vec(&self.config).map_err(|source| Error::InvalidJson {
            what: "image config",
            source,
        })?;
        let info = store.put_bytes(Bytes::from(bytes)).await?;
        let config_type = if self.kind.is_docker() {
            media::DOCKER_CONFIG
        } else {
            media::OCI_CONFIG
        };
        let config = descriptor(MediaType::from(config_type), info.digest, info.size);
        let mut b = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::from(self.kind.media_type()))
            .config(config)
            .layers(self.layers);
        if !self.annotations.is_empty() {
            b = b.annotations(self.annotations);
        }
        let m: ImageManifest = b.build().map_err(|source| Error::Build {
            what: "the manifest",
            source,
        })?;
        let manifest = Manifest::from_image(&m, self.kind)?;
        let mut w = store
            .ingest(Expected::descriptor(&manifest.descriptor()))
            .await?;
        tokio::io::AsyncWriteExt::write_all(&mut w, manifest.bytes())
            .await
            .map_err(Error::from_io)?;
        w.commit().await?;
        Ok(manifest)
    }
}

fn strings<S: Into<String>>(args: impl IntoIterator<Item = S>) -> Value {
    Value::Array(args.into_iter().map(|s| Value::String(s.into())).collect())
}

/// Reads an image config (up to [`MAX_CONFIG_SIZE`]) as JSON.
pub async fn read_config_json(src: &dyn ImageSource, desc: &Descriptor) -> Result<Value> {
    let bytes = read_small_blob(src, desc, MAX_CONFIG_SIZE, "image config").await?;
    serde_json::from_slice(&bytes).map_err(|source| Error::InvalidJson {
        what: "image config",
        source,
    })
}

/// Reads and parses an image config (up to [`MAX_CONFIG_SIZE`]).
pub async fn read_config(src: &dyn ImageSource, desc: &Descriptor) -> Result<ImageConfiguration> {
    let bytes = read_small_blob(src, desc, MAX_CONFIG_SIZE, "image config").await?;
    serde_json::from_slice(&bytes).map_err(|source| Error::InvalidJson {
        what: "image config",
        source,
    })
}

/// Reads a blob from a source into memory, refusing one over `limit`.
pub async fn read_small_blob(
    src: &dyn ImageSource,
    desc: &Descriptor,
    limit: u64,
    what: &'static str,
) -> Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    if desc.size() > limit {
        return Err(Error::TooLarge {
            what,
            size: desc.size(),
            limit,
        });
    }
    let mut r = src.blob(desc).await?;
    let mut out = Vec::with_capacity(desc.size() as usize);
    r.read_to_end(&mut out).await.map_err(Error::from_io)?;
    Ok(out)
}

/// Uncompressed bytes per gzip member in [`write_layer`].
pub const GZIP_BLOCK: usize = 1 << 20;

/// Compresses `input` into `store` as gzip, on all cores: the input is cut into
/// [`GZIP_BLOCK`]-sized blocks, each compressed as its own gzip member on a blocking thread,
/// written in order (RFC 1952 allows concatenated members; Go's, zlib's and our readers take
/// them as one stream). The output depends only on the input, not on how many cores did the
/// work, so layers stay reproducible; the cost is the 32 KiB window restarting every MiB
/// (well under 1% larger). At most one block per core plus the one being read is in memory.
async fn parallel_gzip(
    store: &dyn BlobStore,
    input: &mut (dyn AsyncRead + Send + Unpin),
) -> Result<crate::store::BlobInfo> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 16);
    let mut w = store.ingest(Expected::unknown()).await?;
    let mut inflight = std::collections::VecDeque::new();
    // Blocks and outputs are recycled: a steady stream allocates nothing. Buffers of a
    // megabyte allocated and freed per block, on different threads, leave glibc's heap
    // fragmented (its mmap threshold rises to their size after the first free), and
    // resident memory then grows with the layer.
    let mut spare_blocks: Vec<Vec<u8>> = Vec::new();
    let mut spare_outputs: Vec<Vec<u8>> = Vec::new();
    // So are the deflate states (a few hundred kilobytes each).
    let mut spare_deflates: Vec<flate2::Compress> = Vec::new();
    let mut first = true;
    loop {
        let mut block = spare_blocks
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(GZIP_BLOCK));
        block.resize(GZIP_BLOCK, 0);
        let mut n = 0;
        while n < GZIP_BLOCK {
            let k = input.read(&mut block[n..]).await.map_err(Error::from_io)?;
            if k == 0 {
                break;
            }
            n += k;
        }
        block.truncate(n);
        let last = block.len() < GZIP_BLOCK;
        // An empty input still makes one (empty) member: a valid gzip stream.
        if !block.is_empty() || first {
            first = false;
            let mut out = spare_outputs.pop().unwrap_or_default();
            out.clear();
            // Room for the worst case (stored blocks: 5 bytes per 16 KiB, the header and
            // trailer), so an incompressible block never regrows its output.
            out.reserve(block.len() + block.len() / 16384 * 5 + 1024);
            let deflate = spare_deflates
                .pop()
                .unwrap_or_else(|| flate2::Compress::new(flate2::Compression::default(), false));
            inflight.push_back(tokio::task::spawn_blocking(move || {
                gzip_member(deflate, block, out)
            }));
        } else {
            spare_blocks.push(block);
        }
        while inflight.len() > threads || (last && !inflight.is_empty()) {
            let Some(task) = inflight.pop_front() else {
                break;
            };
            let (deflate, block, member) = task
                .await
                .map_err(|source| Error::Task {
                    what: "gzip",
                    source,
                })?
                .map_err(Error::from_io)?;
            w.write_all(&member).await.map_err(Error::from_io)?;
            spare_blocks.push(block);
            spare_outputs.push(member);
            spare_deflates.push(deflate);
        }
        if last {
            break;
        }
    }
    w.commit().await
}

/// One gzip member of `block` into `out` (cleared first) with a reused deflate state:
/// the header (no name, no time), raw deflate, CRC-32 and size. Returns the pieces to reuse.
fn gzip_member(
    mut deflate: flate2::Compress,
    block: Vec<u8>,
    mut out: Vec<u8>,
) -> std::io::Result<(flate2::Compress, Vec<u8>, Vec<u8>)> {
    deflate.reset();
    out.clear();
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let mut consumed = 0usize;
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(block.len() / 2 + 1024);
        }
        let before = deflate.total_in();
        let status = deflate
            .compress_vec(&block[consumed..], &mut out, flate2::FlushCompress::Finish)
            .map_err(std::io::Error::other)?;
        consumed += usize::try_from(deflate.total_in() - before).unwrap_or(0);
        if status == flate2::Status::StreamEnd {
            break;
        }
    }
    let mut crc = flate2::Crc::new();
    crc.update(&block);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(block.len() as u32).to_le_bytes());
    Ok((deflate, block, out))
}

/// Compresses an uncompressed tar into `store`, computing its DiffID and its compressed
/// digest in one pass. Returns the layer descriptor (media type by compression, Docker or
/// OCI) and the DiffID. Gzip runs on all cores (see [`GZIP_BLOCK`]).
pub async fn write_layer(
    store: &dyn BlobStore,
    tar: &mut (dyn AsyncRead + Send + Unpin),
    compression: Compression,
    docker: bool,
) -> Result<(Descriptor, Digest)> {
    let mut hashing = HashingReader::new(tar);
    let info = match compression {
        Compression::None => store.put_stream(Expected::unknown(), &mut hashing).await?,
        Compression::Gzip => parallel_gzip(store, &mut hashing).await?,
        #[cfg(feature = "zstd")]
        Compression::Zstd => {
            use async_compression::tokio::bufread::ZstdEncoder;
            let mut enc = ZstdEncoder::new(tokio::io::BufReader::with_capacity(
                128 * 1024,
                &mut hashing,
            ));
            store.put_stream(Expected::unknown(), &mut enc).await?
        }
        #[cfg(not(feature = "zstd"))]
        Compression::Zstd => {
            return Err(Error::UnsupportedMediaType {
                media_type: media::OCI_LAYER_ZSTD.to_owned(),
                what: "a layer written by oci-rs-image built without its zstd feature",
            })
        }
    };
    let (diff_id, _) = hashing.finish();
    let media_type = match (compression, docker) {
        (Compression::None, false) => media::OCI_LAYER_TAR,
        (Compression::Gzip, false) => media::OCI_LAYER_GZIP,
        (Compression::Zstd, false) => media::OCI_LAYER_ZSTD,
        (Compression::None, true) => media::DOCKER_LAYER_TAR,
        (Compression::Gzip, true) => media::DOCKER_LAYER_GZIP,
        (Compression::Zstd, true) => media::DOCKER_LAYER_ZSTD,
    };
    Ok((
        descriptor(MediaType::from(media_type), info.digest, info.size),
        diff_id,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BlobStoreExt;
    use crate::MemoryStore;
    use std::io::Read;

    /// A variable set again keeps its place in Env (docker's and BuildKit's order), a new one
    /// goes last, and a duplicate left by an older image goes.
    #[test]
    fn env_replaces_a_variable_where_it_stands() {
        let b = ImageBuilder::new("linux", "amd64")
            .env("PATH", "/bin")
            .env("A", "1")
            .env("PATH", "/bin:/opt/bin")
            .env("B", "2");
        assert_eq!(
            b.config_json()["config"]["Env"],
            json!(["PATH=/bin:/opt/bin", "A=1", "B=2"])
        );
        let mut b = b;
        b.exec()
            .insert("Env".into(), json!(["A=1", "X=1", "A=2", "Y=1"]));
        let b = b.env("A", "3");
        assert_eq!(
            b.config_json()["config"]["Env"],
            json!(["A=3", "X=1", "Y=1"])
        );
    }

    /// Several gzip members for several blocks: the stream decodes to the input, the DiffID
    /// is the input's digest, and the same input gives the same bytes (reproducible).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gzip_layers_are_members_that_decode_to_the_input() {
        let mut input = Vec::new();
        let mut x = 7u64;
        while input.len() < 3 * GZIP_BLOCK + 12345 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Half noise, half text: compressible, but not trivially.
            input.extend_from_slice(&x.to_le_bytes());
            input.extend_from_slice(b"a line of text ");
        }
        let store = MemoryStore::new();
        let (desc, diff_id) = write_layer(&store, &mut &input[..], Compression::Gzip, false)
            .await
            .unwrap();
        assert_eq!(diff_id, crate::digest::sha256(&input));
        let blob = store.read_bytes(&desc, u64::MAX).await.unwrap();
        assert!(blob.len() < input.len());
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&blob[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out == input, "decoded bytes differ");
        // A single-member reader stops after the first member: there are several.
        let mut first = Vec::new();
        flate2::read::GzDecoder::new(&blob[..])
            .read_to_end(&mut first)
            .unwrap();
        assert_eq!(first.len(), GZIP_BLOCK);
        let (again, _) = write_layer(&store, &mut &input[..], Compression::Gzip, false)
            .await
            .unwrap();
        assert_eq!(again.digest(), desc.digest());
        // Empty input: one empty member, still a valid gzip stream.
        let (empty, _) = write_layer(&store, &mut &b""[..], Compression::Gzip, false)
            .await
            .unwrap();
        let blob = store.read_bytes(&empty, 1024).await.unwrap();
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&blob[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out.is_empty() && !blob.is_empty());
    }
}

//! A build cache beyond one store (`--cache-to`, `--cache-from`): a build's cache entries
//! exported to a registry or an OCI layout directory, and taken by another build on another
//! machine (a CI runner with an empty store), in BuildKit's remote cache format.
//!
//! The export is what BuildKit's `type=registry` and `type=local` exporters write: an OCI
//! image index (or, with `image-manifest=true`, an image manifest) whose entries are the
//! layer blobs and one `application/vnd.buildkit.cacheconfig.v0` blob. That cache config
//! lists the layers (each with the index of its parent layer) and the records: one per build
//! step, its digest the step's cache key, its result the top layer of the step's state and its
//! input the record of the step before. A record also names, in the field `ociRsConfig`
//! (which BuildKit's reader ignores), the image configuration of the state, a blob of the
//! same manifest: this builder's cache entries hold the whole state (config and layers), so
//! that a step taken from the cache needs nothing run before it.
//!
//! Importing reads only the manifest and the cache config; a step's config and layers are
//! fetched when the build reaches that step and it is not in the store, each layer checked
//! against its digest before it is kept.

use super::error::{invalid, BuildError, Result};
use oci_rs_image::oci_spec::image::{
    Descriptor, ImageIndexBuilder, ImageManifestBuilder, MediaType,
};
use oci_rs_image::{BlobStore, ImageDestination, ImageSource, Manifest, ManifestKind, ManifestRef};
use oci_rs_layer::{CacheEntry, ImageStore};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// The media type of BuildKit's cache config blob.
const CACHE_CONFIG_MEDIA_TYPE: &str = "application/vnd.buildkit.cacheconfig.v0";

/// The largest cache config read from a cache source: a hostile registry's blob is refused
/// before it is read, not held in memory.
const MAX_CACHE_CONFIG: u64 = 32 << 20;

/// Blobs pushed at once by an export.
const PUSH_CONCURRENCY: usize = 4;

/// Where a build cache is kept outside the store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheLocation {
    /// `type=registry,ref=NAME[:TAG]` (or the bare `NAME[:TAG]`): a manifest in a registry,
    /// reached through [`BuildSources::remote`](super::BuildSources::remote).
    Registry(String),
    /// `type=local,dest=DIR` (export) or `type=local,src=DIR` (import), with `tag=TAG`
    /// (default `latest`): an OCI layout directory.
    Local {
        /// The layout's directory.
        dir: PathBuf,
        /// The name of the cache manifest in the layout.
        tag: String,
    },
}

impl std::fmt::Display for CacheLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Registry(r) => write!(f, "registry {r}"),
            Self::Local { dir, tag } => write!(f, "local {}:{tag}", dir.display()),
        }
    }
}

/// Which steps an export takes (`mode=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CacheMode {
    /// `min` (the default): the steps of the built stage and of the stages it is `FROM`, whose
    /// layers are the image's. A stage only copied from is built again by an importer
    /// (BuildKit can skip it; use `max` for multi-stage builds).
    #[default]
    Min,
    /// `max`: every step of every stage the build ran or took from the cache.
    Max,
}

/// `--cache-to`: where a build exports its cache, in BuildKit's format (see the module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    /// Where.
    pub location: CacheLocation,
    /// Which steps.
    pub mode: CacheMode,
    /// `image-manifest=true`: an image manifest (its config the cache config) instead of an
    /// index, for registries that refuse an index of layers.
    pub image_manifest: bool,
    /// `ignore-error=true`: a failed export is reported and the build still succeeds.
    pub ignore_error: bool,
}

/// `--cache-from`: a cache another build exported, to take steps from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheImport {
    /// Where.
    pub location: CacheLocation,
}

/// `k=v,k=v` as BuildKit's cache flags take them; a bare value is `type=registry,ref=VALUE`.
fn fields(s: &str, flag: &str) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    if !s.contains('=') {
        out.insert("type".to_owned(), "registry".to_owned());
        out.insert("ref".to_owned(), s.to_owned());
        return Ok(out);
    }
    for part in s.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            invalid!(
                "{flag} {}: expected key=value, not {:?}",
                oci_rs_image::excerpt(s, 64),
                oci_rs_image::excerpt(part, 32)
            )
        })?;
        out.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    Ok(out)
}

fn location(f: &mut HashMap<String, String>, flag: &str, dir_key: &str) -> Result<CacheLocation> {
    let kind = f.remove("type").unwrap_or_else(|| "registry".to_owned());
    let loc = match kind.as_str() {
        "registry" => {
            let r = f
                .remove("ref")
                .filter(|r| !r.is_empty())
                .ok_or_else(|| invalid!("{flag} type=registry needs ref=NAME"))?;
            oci_rs_image::ImageReference::parse(&r)?;
            CacheLocation::Registry(r)
        }
        "local" => {
            let dir = f
                .remove(dir_key)
                .filter(|d| !d.is_empty())
                .ok_or_else(|| invalid!("{flag} type=local needs {dir_key}=DIR"))?;
            let tag = f.remove("tag").unwrap_or_else(|| "latest".to_owned());
            CacheLocation::Local {
                dir: dir.into(),
                tag,
            }
        }
        other => {
            return Err(invalid!(
                "{flag} type={}: this builder keeps a cache in a registry or a local directory",
                oci_rs_image::excerpt(other, 32)
            ))
        }
    };
    Ok(loc)
}

fn boolean(f: &mut HashMap<String, String>, key: &str, flag: &str) -> Result<bool> {
    match f.remove(key).as_deref() {
        None => Ok(false),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(invalid!(
            "{flag} {key}={}: expected true or false",
            oci_rs_image::excerpt(v, 32)
        )),
    }
}

fn no_more(f: HashMap<String, String>, flag: &str) -> Result<()> {
    match f.into_keys().next() {
        None => Ok(()),
        Some(k) => Err(invalid!(
            "{flag}: unknown option {}",
            oci_rs_image::excerpt(&k, 32)
        )),
    }
}

impl std::str::FromStr for CacheExport {
    type Err = BuildError;

    /// `type=registry,ref=NAME[,mode=min|max][,image-manifest=true][,ignore-error=true]`,
    /// `type=local,dest=DIR[,tag=T]`, or a bare `NAME` (a registry).
    /// `oci-mediatypes=true` is taken (this builder writes OCI media types only).
    fn from_str(s: &str) -> Result<Self> {
        const FLAG: &str = "--cache-to";
        let mut f = fields(s, FLAG)?;
        let location = location(&mut f, FLAG, "dest")?;
        let mode = match f.remove("mode").as_deref() {
            None | Some("min") => CacheMode::Min,
            Some("max") => CacheMode::Max,
            Some(m) => {
                return Err(invalid!(
                    "{FLAG} mode={}: expected min or max",
                    oci_rs_image::excerpt(m, 32)
                ))
            }
        };
        let image_manifest = boolean(&mut f, "image-manifest", FLAG)?;
        let ignore_error = boolean(&mut f, "ignore-error", FLAG)?;
        if f.get("oci-mediatypes").is_some_and(|v| v == "true") {
            f.remove("oci-mediatypes");
        }
        no_more(f, FLAG)?;
        Ok(Self {
            location,
            mode,
            image_manifest,
            ignore_error,
        })
    }
}

impl std::str::FromStr for CacheImport {
    type Err = BuildError;

    /// `type=registry,ref=NAME`, `type=local,src=DIR[,tag=T]`, or a bare `NAME`.
    fn from_str(s: &str) -> Result<Self> {
        const FLAG: &str = "--cache-from";
        let mut f = fields(s, FLAG)?;
        let location = location(&mut f, FLAG, "src")?;
        no_more(f, FLAG)?;
        Ok(Self { location })
    }
}

/// BuildKit's cache config (`cache/remotecache/v1/spec.go` in moby/buildkit): the fields
/// are named as there; a field of its that this builder does not use is ignored on reading.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    layers: Vec<CacheLayer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    records: Vec<CacheRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheLayer {
    #[serde(default)]
    blob: String,
    /// The index of the layer below, -1 for none (BuildKit's writer leaves out a 0).
    #[serde(default)]
    parent: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<LayerAnnotations>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayerAnnotations {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    media_type: String,
    #[serde(default, rename = "diffID", skip_serializing_if = "String::is_empty")]
    diff_id: String,
    #[serde(default)]
    size: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheRecord {
    /// BuildKit calls the results `layers`.
    #[serde(default, rename = "layers", skip_serializing_if = "Vec::is_empty")]
    results: Vec<CacheResult>,
    #[serde(default)]
    digest: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    inputs: Vec<Vec<CacheInput>>,
    /// This builder's: the digest of the state's image config, a blob of the manifest.
    #[serde(
        default,
        rename = "ociRsConfig",
        skip_serializing_if = "Option::is_none"
    )]
    config: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheResult {
    layer: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheInput {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    selector: String,
    link: i64,
}

/// A step the build took into its state: its key, the key before it, the stage.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub parent: String,
    pub key: String,
    pub stage: usize,
    /// The step is one of the image's stage or a stage that one is `FROM`.
    pub in_image: bool,
}

fn blob_reader(bytes: Vec<u8>) -> oci_rs_image::BlobReader {
    Box::pin(std::io::Cursor::new(bytes))
}

/// Writes the cache entries of `links` (those the store still has) to `dest` as BuildKit's
/// cache manifest, tagged `tag`; the manifest's descriptor.
pub(crate) async fn export(
    images: &ImageStore,
    links: &[Link],
    dest: &dyn ImageDestination,
    tag: &str,
    image_manifest: bool,
) -> Result<Descriptor> {
    let mut cfg = CacheConfig::default();
    let mut layer_ix: HashMap<(String, i64), usize> = HashMap::new();
    let mut record_ix: HashMap<&str, usize> = HashMap::new();
    let mut layers: Vec<Descriptor> = Vec::new();
    let mut configs: Vec<(Descriptor, Vec<u8>)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for l in links {
        if record_ix.contains_key(l.key.as_str()) {
            continue;
        }
        let Some(entry) = images.cache_get(&l.key) else {
            continue;
        };
        let diff_ids = entry
            .config
            .pointer("/rootfs/diff_ids")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut parent = -1i64;
        for (n, d) in entry.layers.iter().enumerate() {
            let k = (d.digest().to_string(), parent);
            let ix = *layer_ix.entry(k).or_insert_with(|| {
                cfg.layers.push(CacheLayer {
                    blob: d.digest().to_string(),
                    parent,
                    annotations: Some(LayerAnnotations {
                        media_type: d.media_type().to_string(),
                        diff_id: diff_ids
                            .get(n)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        size: d.size(),
                    }),
                });
                cfg.layers.len() - 1
            });
            parent = ix as i64;
            if seen.insert(d.digest().to_string()) {
                layers.push(d.clone());
            }
        }
        let bytes = serde_json::to_vec(&entry.config)?;
        let cd = oci_rs_image::descriptor(
            MediaType::ImageConfig,
            oci_rs_image::sha256(&bytes),
            bytes.len() as u64,
        );
        let config = cd.digest().to_string();
        if seen.insert(config.clone()) {
            configs.push((cd, bytes));
        }
        let inputs = match record_ix.get(l.parent.as_str()) {
            Some(&p) => vec![vec![CacheInput {
                selector: String::new(),
                link: p as i64,
            }]],
            None => Vec::new(),
        };
        cfg.records.push(CacheRecord {
            results: if parent >= 0 {
                vec![CacheResult { layer: parent }]
            } else {
                Vec::new()
            },
            digest: format!("sha256:{}", l.key),
            inputs,
            config: Some(config),
        });
        record_ix.insert(&l.key, cfg.records.len() - 1);
    }

    // The layers, from the store (several at once), then the configs and the cache config.
    use futures_util::StreamExt as _;
    let layout = images.layout();
    let mut pushes = futures_util::stream::iter(layers.iter().map(|d| async move {
        if dest.has_blob(d).await? {
            return Ok::<_, BuildError>(());
        }
        let r = layout.open(d).await?;
        dest.put_blob(d, r).await?;
        Ok(())
    }))
    .buffer_unordered(PUSH_CONCURRENCY);
    while let Some(r) = pushes.next().await {
        r?;
    }
    drop(pushes);
    for (d, bytes) in &configs {
        if !dest.has_blob(d).await? {
            dest.put_blob(d, blob_reader(bytes.clone())).await?;
        }
    }
    let cfg_bytes = serde_json::to_vec(&cfg)?;
    let cfg_desc = oci_rs_image::descriptor(
        MediaType::Other(CACHE_CONFIG_MEDIA_TYPE.to_owned()),
        oci_rs_image::sha256(&cfg_bytes),
        cfg_bytes.len() as u64,
    );
    dest.put_blob(&cfg_desc, blob_reader(cfg_bytes)).await?;

    let mut blobs = layers;
    blobs.extend(configs.into_iter().map(|(d, _)| d));
    let manifest = if image_manifest {
        let m = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(cfg_desc)
            .layers(blobs)
            .build()
            .map_err(|e| invalid!("the cache manifest: {e}"))?;
        Manifest::from_image(&m, ManifestKind::OciManifest)?
    } else {
        blobs.push(cfg_desc);
        let ix = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(blobs)
            .build()
            .map_err(|e| invalid!("the cache index: {e}"))?;
        Manifest::from_index(&ix, ManifestKind::OciIndex)?
    };
    dest.put_manifest(&manifest, Some(tag)).await?;
    dest.finish().await?;
    Ok(manifest.descriptor())
}

/// A step of an imported cache: the layers of its state, bottom first, and its config.
#[derive(Debug, Clone)]
struct Record {
    layers: Vec<Descriptor>,
    config: Descriptor,
}

/// A cache read from a [`CacheImport`]: which keys it has; their states fetched on demand.
pub(crate) struct Imported {
    /// Where it was read from.
    pub location: CacheLocation,
    source: Box<dyn ImageSource>,
    records: HashMap<String, Record>,
}

impl Imported {
    /// Reads the cache manifest `tag` of `source` and its cache config.
    pub(crate) async fn read(
        location: CacheLocation,
        source: Box<dyn ImageSource>,
        tag: &str,
    ) -> Result<Self> {
        let m = source.manifest(&ManifestRef::parse(tag)?).await?;
        let (blobs, cfg_desc) = if let Some(ix) = m.as_index() {
            let cfg = ix
                .manifests()
                .iter()
                .find(|d| d.media_type().to_string() == CACHE_CONFIG_MEDIA_TYPE)
                .cloned();
            (ix.manifests().clone(), cfg)
        } else if let Some(im) = m.as_image() {
            let cfg = Some(im.config().clone())
                .filter(|d| d.media_type().to_string() == CACHE_CONFIG_MEDIA_TYPE);
            (im.layers().clone(), cfg)
        } else {
            (Vec::new(), None)
        };
        let cfg_desc = cfg_desc.ok_or_else(|| {
            invalid!("the manifest {tag:?} is not a build cache (no {CACHE_CONFIG_MEDIA_TYPE})")
        })?;
        let bytes =
            oci_rs_image::read_small_blob(&*source, &cfg_desc, MAX_CACHE_CONFIG, "a cache config")
                .await?;
        let cfg: CacheConfig = serde_json::from_slice(&bytes)?;
        let by_digest: HashMap<String, Descriptor> = blobs
            .into_iter()
            .map(|d| (d.digest().to_string(), d))
            .collect();
        let mut records = HashMap::new();
        for r in &cfg.records {
            let Some(key) = r
                .digest
                .strip_prefix("sha256:")
                .filter(|k| k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()))
            else {
                continue;
            };
            let Some(config) = r.config.as_ref().and_then(|c| by_digest.get(c)) else {
                continue;
            };
            let top = r.results.last().map_or(-1, |x| x.layer);
            if let Some(layers) = chain(&cfg.layers, top, &by_digest) {
                records.insert(
                    key.to_owned(),
                    Record {
                        layers,
                        config: config.clone(),
                    },
                );
            }
        }
        Ok(Self {
            location,
            source,
            records,
        })
    }

    /// How many steps the cache holds.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// The state of step `key` from this cache, put into `images` (its layers fetched and
    /// checked, its entry written); `None` when the cache has no such step.
    pub(crate) async fn fetch(&self, images: &ImageStore, key: &str) -> Result<Option<CacheEntry>> {
        let Some(rec) = self.records.get(key) else {
            return Ok(None);
        };
        let bytes = oci_rs_image::read_small_blob(
            &*self.source,
            &rec.config,
            oci_rs_image::MAX_CONFIG_SIZE,
            "a cached state's config",
        )
        .await?;
        let config: Value = serde_json::from_slice(&bytes)?;
        // Under a lease until the entry names them: a gc meanwhile must not take them.
        let store = images.layout().leased()?;
        for l in &rec.layers {
            if !store.contains(l.digest()).await? {
                let r = self.source.blob(l).await?;
                ImageDestination::put_blob(&store, l, r).await?;
            }
        }
        let entry = CacheEntry {
            config,
            layers: rec.layers.clone(),
        };
        images.cache_put(key, &entry)?;
        Ok(Some(entry))
    }
}

/// The layers from `top` down its parents, bottom first; `None` when an index is out of
/// range, the parents loop, or a blob is not in the manifest.
fn chain(
    layers: &[CacheLayer],
    top: i64,
    by_digest: &HashMap<String, Descriptor>,
) -> Option<Vec<Descriptor>> {
    let mut out = Vec::new();
    let mut ix = top;
    while ix >= 0 {
        if out.len() >= layers.len() {
            return None;
        }
        let l = layers.get(usize::try_from(ix).ok()?)?;
        out.push(by_digest.get(&l.blob)?.clone());
        ix = l.parent;
    }
    out.reverse();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_as_buildkit_reads_them() {
        let e: CacheExport = "type=registry,ref=localhost:5000/app:cache,mode=max"
            .parse()
            .unwrap();
        assert_eq!(
            e.location,
            CacheLocation::Registry("localhost:5000/app:cache".into())
        );
        assert_eq!(e.mode, CacheMode::Max);
        let e: CacheExport = "localhost:5000/app:cache".parse().unwrap();
        assert_eq!(e.mode, CacheMode::Min);
        let e: CacheExport = "type=local,dest=/tmp/c,image-manifest=true,oci-mediatypes=true"
            .parse()
            .unwrap();
        assert!(e.image_manifest);
        assert_eq!(
            e.location,
            CacheLocation::Local {
                dir: "/tmp/c".into(),
                tag: "latest".into()
            }
        );
        let i: CacheImport = "type=local,src=/tmp/c,tag=v1".parse().unwrap();
        assert_eq!(
            i.location,
            CacheLocation::Local {
                dir: "/tmp/c".into(),
                tag: "v1".into()
            }
        );
        for bad in [
            "type=gha",
            "type=registry",
            "type=registry,ref=a,mode=most",
            "type=registry,ref=a,color=red",
            "type=local,src=/x",
            "type=registry,ref=a,ignore-error=maybe",
            "type=registry,ref=UPPER/Case",
        ] {
            assert!(bad.parse::<CacheExport>().is_err(), "{bad}");
        }
        assert!("type=local,dest=/x".parse::<CacheImport>().is_err());
    }

    #[test]
    fn a_layer_chain_that_loops_or_points_outside_is_refused() {
        let d = oci_rs_image::descriptor(MediaType::ImageLayerGzip, oci_rs_image::sha256(b"x"), 1);
        let by: HashMap<_, _> = [(d.digest().to_string(), d.clone())].into();
        let l = |parent| CacheLayer {
            blob: d.digest().to_string(),
            parent,
            annotations: None,
        };
        assert_eq!(chain(&[l(-1), l(0)], 1, &by).map(|c| c.len()), Some(2));
        assert!(chain(&[l(1), l(0)], 1, &by).is_none(), "a loop");
        assert!(chain(&[l(-1)], 5, &by).is_none(), "out of range");
        assert!(chain(&[l(-1)], -1, &by).is_some_and(|c| c.is_empty()));
        let other = CacheLayer {
            blob: oci_rs_image::sha256(b"y").to_string(),
            parent: -1,
            annotations: None,
        };
        assert!(
            chain(&[other], 0, &by).is_none(),
            "a blob not in the manifest"
        );
    }

    #[test]
    fn a_buildkit_written_config_parses() {
        // As BuildKit writes it: parent 0 left out, -1 written, createdAt and chains present.
        let text = r#"{"layers":[{"blob":"sha256:aa","parent":-1},{"blob":"sha256:bb"}],
            "records":[{"digest":"sha256:cc","layers":[{"layer":1,"createdAt":"2024-01-01T00:00:00Z"}],
            "inputs":[[{"selector":"sha256:dd","link":0}]],"chains":[]}]}"#;
        let c: CacheConfig = serde_json::from_str(text).unwrap();
        assert_eq!(c.layers[1].parent, 0);
        assert_eq!(c.records[0].results[0].layer, 1);
        assert!(c.records[0].config.is_none());
    }
}

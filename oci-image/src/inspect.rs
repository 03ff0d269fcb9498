//! Views shaped like `docker image inspect` and `docker manifest inspect --verbose`.

use crate::build::read_config_json;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, ManifestBody};
use crate::platform::platform_string;
use crate::transfer::{ImageSource, ManifestRef};
use serde::Serialize;
use serde_json::Value;

/// `docker image inspect` for one image. Field names are docker's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    /// The config digest, which docker calls the image ID.
    pub id: String,
    /// Names of the image (`name:tag`).
    pub repo_tags: Vec<String>,
    /// `name@digest` of the manifest.
    pub repo_digests: Vec<String>,
    /// Docker's parent image ID (empty for pulled images).
    pub parent: String,
    /// The comment of the last history entry.
    pub comment: String,
    /// Creation time (RFC 3339), empty when unknown.
    pub created: String,
    /// The author.
    pub author: String,
    /// The execution config (`User`, `Env`, `Entrypoint`, `Cmd`, ...) as the image has it.
    pub config: Value,
    /// CPU architecture.
    pub architecture: String,
    /// CPU variant, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Operating system.
    pub os: String,
    /// OS version, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// Sum of the layer blob sizes as stored (compressed); an image store may give the
    /// unpacked size instead, as docker does (`oci_rs_layer::ImageStore::inspect` does).
    pub size: u64,
    /// The layers as DiffIDs.
    #[serde(rename = "RootFS")]
    pub root_fs: RootFsView,
    /// The manifest's own digest and media type (not in docker's output, but what a
    /// registry-centric tool wants next to it).
    pub descriptor: DescriptorView,
}

/// `RootFS` of [`ImageInspect`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RootFsView {
    /// Always `layers`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// DiffIDs, base layer first.
    pub layers: Vec<String>,
}

/// A descriptor for display.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescriptorView {
    /// Media type.
    pub media_type: String,
    /// Digest.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// `os/arch[/variant]` when the descriptor names a platform.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

impl ImageInspect {
    /// Builds the view of the image `manifest` (an image manifest, not an index), reading its
    /// config from `src`. `name` is the repository name (`docker.io/library/busybox`) and
    /// `tags` the tags it has there.
    pub async fn new(
        src: &dyn ImageSource,
        manifest: &Manifest,
        name: Option<&str>,
        tags: &[String],
    ) -> Result<Self> {
        let ManifestBody::Image(m) = manifest.body() else {
            return Err(Error::InvalidImage {
                reason: format!(
                    "{} is an index; inspect one of its images",
                    manifest.digest()
                ),
            });
        };
        let config = read_config_json(src, m.config()).await?;
        let s = |k: &str| {
            config
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let layers: Vec<String> = config
            .pointer("/rootfs/diff_ids")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let comment = config
            .get("history")
            .and_then(Value::as_array)
            .and_then(|h| h.last())
            .and_then(|e| e.get("comment"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(Self {
            id: m.config().digest().to_string(),
            repo_tags: name
                .map(|n| tags.iter().map(|t| format!("{n}:{t}")).collect())
                .unwrap_or_default(),
            repo_digests: name
                .map(|n| vec![format!("{n}@{}", manifest.digest())])
                .unwrap_or_default(),
            parent: String::new(),
            comment,
            created: s("created"),
            author: s("author"),
            config: config.get("config").cloned().unwrap_or(Value::Null),
            architecture: s("architecture"),
            variant: config
                .get("variant")
                .and_then(Value::as_str)
                .map(str::to_owned),
            os: s("os"),
            os_version: config
                .get("os.version")
                .and_then(Value::as_str)
                .map(str::to_owned),
            size: m.layers().iter().map(|l| l.size()).sum(),
            root_fs: RootFsView {
                kind: "layers".into(),
                layers,
            },
            descriptor: DescriptorView {
                media_type: manifest.media_type().to_owned(),
                digest: manifest.digest().to_string(),
                size: manifest.size(),
                platform: None,
            },
        })
    }
}

/// `docker manifest inspect --verbose` of an index: every child with its platform, and the
/// image manifest of each (when the source has it).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManifestInspect {
    /// The name inspected.
    #[serde(rename = "Ref")]
    pub reference: String,
    /// The top-level document.
    pub descriptor: DescriptorView,
    /// The children of an index (empty for an image manifest).
    pub manifests: Vec<ManifestEntry>,
    /// The document itself, as JSON.
    pub raw: Value,
}

/// One child of an index in [`ManifestInspect`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManifestEntry {
    /// The child.
    pub descriptor: DescriptorView,
    /// True for attestation manifests (`unknown/unknown` with a reference annotation).
    pub attestation: bool,
    /// The child manifest as JSON, when the source could give it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Value>,
    /// Layer count and total size of the child, when read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl ManifestInspect {
    /// Builds the view; children are fetched from `src` when `fetch_children` is set.
    pub async fn new(
        src: &dyn ImageSource,
        manifest: &Manifest,
        reference: &str,
        fetch_children: bool,
    ) -> Result<Self> {
        let raw: Value =
            serde_json::from_slice(manifest.bytes()).map_err(|source| Error::InvalidJson {
                what: "manifest",
                source,
            })?;
        let mut manifests = Vec::new();
        if let ManifestBody::Index(index) = manifest.body() {
            for d in index.manifests() {
                let (child, size) = if fetch_children {
                    let m = src
                        .manifest(&ManifestRef::Digest(d.digest().clone()))
                        .await?;
                    let size = m
                        .as_image()
                        .map(|i| i.layers().iter().map(|l| l.size()).sum::<u64>());
                    let v =
                        serde_json::from_slice(m.bytes()).map_err(|source| Error::InvalidJson {
                            what: "manifest",
                            source,
                        })?;
                    (Some(v), size)
                } else {
                    (None, None)
                };
                manifests.push(ManifestEntry {
                    descriptor: DescriptorView {
                        media_type: d.media_type().to_string(),
                        digest: d.digest().to_string(),
                        size: d.size(),
                        platform: d.platform().as_ref().map(platform_string),
                    },
                    attestation: crate::platform::is_attestation(d),
                    manifest: child,
                    size,
                });
            }
        }
        Ok(Self {
            reference: reference.to_owned(),
            descriptor: DescriptorView {
                media_type: manifest.media_type().to_owned(),
                digest: manifest.digest().to_string(),
                size: manifest.size(),
                platform: None,
            },
            manifests,
            raw,
        })
    }
}

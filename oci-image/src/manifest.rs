//! Manifests and indexes, OCI and Docker, parsed into one type that keeps the exact bytes.

use crate::digest::{sha256, verify_bytes, Hasher};
use crate::error::{Error, Result};
use crate::media;
use bytes::Bytes;
use oci_spec::image::{
    Descriptor, DescriptorBuilder, Digest, ImageIndex, ImageManifest, MediaType,
};
use serde::de::IgnoredAny;
use serde::Deserialize;

/// The largest manifest or index accepted, as the distribution spec recommends (4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// Which of the four supported document types a manifest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ManifestKind {
    /// `application/vnd.oci.image.manifest.v1+json`
    OciManifest,
    /// `application/vnd.oci.image.index.v1+json`
    OciIndex,
    /// `application/vnd.docker.distribution.manifest.v2+json`
    DockerManifest,
    /// `application/vnd.docker.distribution.manifest.list.v2+json`
    DockerManifestList,
}

impl ManifestKind {
    /// The kind a media type names, if it names one of the four.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        match media::essence(media_type) {
            media::OCI_MANIFEST => Some(Self::OciManifest),
            media::OCI_INDEX => Some(Self::OciIndex),
            media::DOCKER_MANIFEST => Some(Self::DockerManifest),
            media::DOCKER_MANIFEST_LIST => Some(Self::DockerManifestList),
            _ => None,
        }
    }

    /// The media type string.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::OciManifest => media::OCI_MANIFEST,
            Self::OciIndex => media::OCI_INDEX,
            Self::DockerManifest => media::DOCKER_MANIFEST,
            Self::DockerManifestList => media::DOCKER_MANIFEST_LIST,
        }
    }

    /// True for an index or manifest list.
    pub fn is_index(self) -> bool {
        matches!(self, Self::OciIndex | Self::DockerManifestList)
    }

    /// True for the Docker media types.
    pub fn is_docker(self) -> bool {
        matches!(self, Self::DockerManifest | Self::DockerManifestList)
    }
}

/// The parsed body of a [`Manifest`].
// Both variants are a few hundred bytes and manifests are held one or a few at a time; boxing
// would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ManifestBody {
    /// An image manifest (OCI or Docker schema 2).
    Image(ImageManifest),
    /// An index (OCI) or manifest list (Docker).
    Index(ImageIndex),
}

/// A manifest or index with its exact bytes, digest and kind.
///
/// The digest is always of [`Manifest::bytes`], never of re-serialised JSON.
///
/// ```
/// let json = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
/// let m = oci_rs_image::Manifest::parse(&json[..], Some("application/vnd.oci.image.index.v1+json"))?;
/// assert!(m.kind().is_index());
/// assert_eq!(m.digest(), &oci_rs_image::sha256(json));
/// # Ok::<(), oci_rs_image::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    bytes: Bytes,
    digest: Digest,
    kind: ManifestKind,
    body: ManifestBody,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    manifests: Option<IgnoredAny>,
    layers: Option<IgnoredAny>,
    config: Option<IgnoredAny>,
    fs_layers: Option<IgnoredAny>,
}

impl Manifest {
    /// Parses a manifest or index.
    ///
    /// `declared` is the media type from the descriptor or `Content-Type` that delivered the
    /// bytes; when absent or generic (`application/json`), the document's own `mediaType`
    /// field decides, and failing that its shape. Refuses documents over
    /// [`MAX_MANIFEST_SIZE`], Docker schema 1, documents whose `mediaType` contradicts the
    /// declared one, and documents with the fields of both a manifest and an index
    /// (CVE-2021-41190).
    pub fn parse(bytes: impl Into<Bytes>, declared: Option<&str>) -> Result<Self> {
        let bytes = bytes.into();
        let digest = sha256(&bytes);
        Self::parse_with_digest(bytes, declared, digest)
    }

    /// Parses bytes that must match a descriptor: its digest and size are checked first, and
    /// its media type is the declared one.
    pub fn parse_verified(bytes: impl Into<Bytes>, desc: &Descriptor) -> Result<Self> {
        let bytes = bytes.into();
        if desc.size() > MAX_MANIFEST_SIZE {
            return Err(Error::TooLarge {
                what: "manifest",
                size: desc.size(),
                limit: MAX_MANIFEST_SIZE,
            });
        }
        verify_bytes(&bytes, desc.digest(), Some(desc.size()))?;
        let declared = desc.media_type().to_string();
        Self::parse_with_digest(bytes, Some(&declared), desc.digest().clone())
    }

    /// Parses bytes that must hash to `expected` (any supported algorithm).
    pub fn parse_expecting(
        bytes: impl Into<Bytes>,
        declared: Option<&str>,
        expected: &Digest,
    ) -> Result<Self> {
        let bytes = bytes.into();
        if bytes.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(Error::TooLarge {
                what: "manifest",
                size: bytes.len() as u64,
                limit: MAX_MANIFEST_SIZE,
            });
        }
        verify_bytes(&bytes, expected, None)?;
        Self::parse_with_digest(bytes, declared, expected.clone())
    }

    fn parse_with_digest(bytes: Bytes, declared: Option<&str>, digest: Digest) -> Result<Self> {
        if bytes.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(Error::TooLarge {
                what: "manifest",
                size: bytes.len() as u64,
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let declared = declared.map(media::essence).filter(|d| {
            !d.is_empty() && *d != "application/json" && *d != "application/octet-stream"
        });
        if let Some(d) = declared {
            if d == media::DOCKER_SCHEMA1 || d == media::DOCKER_SCHEMA1_SIGNED {
                return Err(Error::Schema1 {
                    media_type: d.to_owned(),
                });
            }
        }
        let probe: Probe = serde_json::from_slice(&bytes).map_err(|source| Error::InvalidJson {
            what: "manifest",
            source,
        })?;
        if probe.fs_layers.is_some()
            || probe.schema_version.as_ref().and_then(|v| v.as_u64()) == Some(1)
        {
            return Err(Error::Schema1 {
                media_type: probe
                    .media_type
                    .clone()
                    .unwrap_or_else(|| media::DOCKER_SCHEMA1.to_owned()),
            });
        }
        match probe.schema_version.as_ref().and_then(|v| v.as_u64()) {
            Some(2) => {}
            other => {
                return Err(Error::InvalidImage {
                    reason: format!("manifest schemaVersion must be 2, found {other:?}"),
                })
            }
        }
        let has_index_fields = probe.manifests.is_some();
        let has_image_fields = probe.layers.is_some() || probe.config.is_some();
        if has_index_fields && has_image_fields {
            return Err(Error::AmbiguousManifest {
                reason: "document has both `manifests` and `config`/`layers`".into(),
            });
        }
        if let (Some(d), Some(found)) = (declared, probe.media_type.as_deref()) {
            // Compared as media types, parameters (and an empty `;`) aside, as the declared
            // one is: a manifest re-parses under the media type it reports.
            if d != media::essence(found) {
                return Err(Error::MediaTypeMismatch {
                    declared: d.to_owned(),
                    found: found.to_owned(),
                });
            }
        }
        let kind_name = declared
            .map(str::to_owned)
            .or_else(|| probe.media_type.clone());
        let kind = match kind_name {
            Some(name) => {
                ManifestKind::from_media_type(&name).ok_or(Error::UnsupportedMediaType {
                    media_type: name,
                    what: "manifest",
                })?
            }
            None if has_index_fields => ManifestKind::OciIndex,
            None if has_image_fields => ManifestKind::OciManifest,
            None => {
                return Err(Error::UnsupportedMediaType {
                    media_type: String::new(),
                    what: "manifest (no mediaType and neither layers nor manifests)",
                })
            }
        };
        if kind.is_index() && has_image_fields {
            return Err(Error::AmbiguousManifest {
                reason: format!("{} has `config`/`layers` fields", kind.media_type()),
            });
        }
        if !kind.is_index() && has_index_fields {
            return Err(Error::AmbiguousManifest {
                reason: format!("{} has a `manifests` field", kind.media_type()),
            });
        }
        let body = if kind.is_index() {
            let mut index: ImageIndex =
                serde_json::from_slice(&bytes).map_err(|source| Error::InvalidJson {
                    what: "image index",
                    source,
                })?;
            restore_platform_fields(&bytes, &mut index)?;
            ManifestBody::Index(index)
        } else {
            ManifestBody::Image(serde_json::from_slice(&bytes).map_err(|source| {
                Error::InvalidJson {
                    what: "image manifest",
                    source,
                }
            })?)
        };
        Ok(Self {
            bytes,
            digest,
            kind,
            body,
        })
    }

    /// Serialises an image manifest and wraps it (for building new images).
    pub fn from_image(manifest: &ImageManifest, kind: ManifestKind) -> Result<Self> {
        let bytes = serde_json::to_vec(manifest).map_err(|source| Error::InvalidJson {
            what: "image manifest",
            source,
        })?;
        Self::parse(bytes, Some(kind.media_type()))
    }

    /// Serialises an index and wraps it (for building new indexes).
    pub fn from_index(index: &ImageIndex, kind: ManifestKind) -> Result<Self> {
        Self::parse(index_to_json(index)?, Some(kind.media_type()))
    }

    /// The exact bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The digest of the bytes.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The document type.
    pub fn kind(&self) -> ManifestKind {
        self.kind
    }

    /// The media type string.
    pub fn media_type(&self) -> &'static str {
        self.kind.media_type()
    }

    /// The parsed body.
    pub fn body(&self) -> &ManifestBody {
        &self.body
    }

    /// The image manifest, when this is one.
    pub fn as_image(&self) -> Option<&ImageManifest> {
        match &self.body {
            ManifestBody::Image(m) => Some(m),
            ManifestBody::Index(_) => None,
        }
    }

    /// The index, when this is one.
    pub fn as_index(&self) -> Option<&ImageIndex> {
        match &self.body {
            ManifestBody::Index(i) => Some(i),
            ManifestBody::Image(_) => None,
        }
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// A descriptor for this document.
    pub fn descriptor(&self) -> Descriptor {
        descriptor(
            MediaType::from(self.media_type()),
            self.digest.clone(),
            self.size(),
        )
    }

    /// The blobs this document points at: config then layers for a manifest, the child
    /// manifests for an index.
    pub fn children(&self) -> Vec<Descriptor> {
        match &self.body {
            ManifestBody::Image(m) => std::iter::once(m.config().clone())
                .chain(m.layers().iter().cloned())
                .collect(),
            ManifestBody::Index(i) => i.manifests().clone(),
        }
    }
}

#[derive(Deserialize)]
struct RawIndex {
    manifests: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawPlatform {
    #[serde(rename = "os.version")]
    os_version: Option<String>,
    #[serde(rename = "os.features")]
    os_features: Option<Vec<String>>,
}

/// oci-spec 0.10 (de)serialises `os.version` and `os.features` as `osVersion`/`osFeatures`,
/// so they are lost from real indexes; read them from the bytes under their spec names.
fn restore_platform_fields(bytes: &[u8], index: &mut ImageIndex) -> Result<()> {
    let raw: RawIndex = serde_json::from_slice(bytes).map_err(|source| Error::InvalidJson {
        what: "image index",
        source,
    })?;
    let mut manifests = index.manifests().clone();
    for (entry, raw) in manifests.iter_mut().zip(raw.manifests) {
        let (Some(p), Some(rp)) = (entry.platform().clone(), raw.platform) else {
            continue;
        };
        let mut p = p;
        if rp.os_version.is_some() {
            p.set_os_version(rp.os_version);
        }
        if rp.os_features.is_some() {
            p.set_os_features(rp.os_features);
        }
        entry.set_platform(Some(p));
    }
    index.set_manifests(manifests);
    Ok(())
}

/// Parses an index (`index.json` of a layout, for instance), keeping `os.version` and
/// `os.features` of its platforms.
pub fn index_from_json(bytes: &[u8]) -> Result<ImageIndex> {
    let mut index: ImageIndex =
        serde_json::from_slice(bytes).map_err(|source| Error::InvalidJson {
            what: "image index",
            source,
        })?;
    restore_platform_fields(bytes, &mut index)?;
    Ok(index)
}

/// Serialises an index with the platform fields under their spec names (`os.version`,
/// `os.features`), which oci-spec 0.10 writes as `osVersion`/`osFeatures`.
pub fn index_to_json(index: &ImageIndex) -> Result<Vec<u8>> {
    let json = |source| Error::InvalidJson {
        what: "image index",
        source,
    };
    let mut v = serde_json::to_value(index).map_err(json)?;
    if let Some(list) = v.get_mut("manifests").and_then(|m| m.as_array_mut()) {
        for entry in list {
            if let Some(p) = entry.get_mut("platform").and_then(|p| p.as_object_mut()) {
                for (from, to) in [("osVersion", "os.version"), ("osFeatures", "os.features")] {
                    if let Some(x) = p.remove(from) {
                        p.insert(to.to_owned(), x);
                    }
                }
            }
        }
    }
    serde_json::to_vec(&v).map_err(json)
}

/// Builds a descriptor from its three required fields.
pub fn descriptor(media_type: MediaType, digest: Digest, size: u64) -> Descriptor {
    // DescriptorBuilder only fails when a required field is missing; all three are set.
    DescriptorBuilder::default()
        .media_type(media_type)
        .digest(digest)
        .size(size)
        .build()
        .unwrap_or_else(|_| unreachable!("all required descriptor fields are set"))
}

/// Computes the digest of bytes with the algorithm of `like` (for re-verifying documents).
pub fn digest_like(like: &Digest, data: &[u8]) -> Result<Digest> {
    let mut h = Hasher::for_digest(like)?;
    h.update(data);
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    const L1: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn oci_manifest() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{CFG}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{L1}","size":0}}]}}"#
        )
    }

    fn docker_manifest() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{CFG}","size":2}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{L1}","size":0}}]}}"#
        )
    }

    #[test]
    fn parses_the_four_kinds_and_keeps_bytes() {
        let m = Manifest::parse(oci_manifest(), None).unwrap();
        assert_eq!(m.kind(), ManifestKind::OciManifest);
        assert_eq!(m.digest(), &sha256(oci_manifest().as_bytes()));
        assert_eq!(m.bytes().as_ref(), oci_manifest().as_bytes());
        assert_eq!(m.children().len(), 2);

        let d = Manifest::parse(docker_manifest(), Some(media::DOCKER_MANIFEST)).unwrap();
        assert_eq!(d.kind(), ManifestKind::DockerManifest);

        let list = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{L1}","size":3,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            media::DOCKER_MANIFEST_LIST,
            media::DOCKER_MANIFEST
        );
        let l = Manifest::parse(
            list,
            Some("application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8"),
        )
        .unwrap();
        assert_eq!(l.kind(), ManifestKind::DockerManifestList);
        assert_eq!(l.as_index().unwrap().manifests().len(), 1);

        let idx = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            Manifest::parse(idx, None).unwrap().kind(),
            ManifestKind::OciIndex
        );
    }

    #[test]
    fn whitespace_changes_the_digest_not_the_body() {
        let a = Manifest::parse(oci_manifest(), None).unwrap();
        let spaced = oci_manifest().replace(",", ", ");
        let b = Manifest::parse(spaced, None).unwrap();
        assert_eq!(a.body(), b.body());
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn refuses_schema1() {
        let s1 = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(matches!(
            Manifest::parse(s1, None),
            Err(Error::Schema1 { .. })
        ));
        assert!(matches!(
            Manifest::parse(oci_manifest(), Some(media::DOCKER_SCHEMA1_SIGNED)),
            Err(Error::Schema1 { .. })
        ));
    }

    #[test]
    fn refuses_contradicting_media_type() {
        let err = Manifest::parse(oci_manifest(), Some(media::OCI_INDEX)).unwrap_err();
        assert!(matches!(err, Error::MediaTypeMismatch { .. }), "{err}");
        let err = Manifest::parse(docker_manifest(), Some(media::OCI_MANIFEST)).unwrap_err();
        assert!(matches!(err, Error::MediaTypeMismatch { .. }), "{err}");
    }

    #[test]
    fn refuses_ambiguous_documents() {
        let both = format!(
            r#"{{"schemaVersion":2,"manifests":[],"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{CFG}","size":2}},"layers":[]}}"#
        );
        assert!(matches!(
            Manifest::parse(both, None),
            Err(Error::AmbiguousManifest { .. })
        ));
        let layers_in_index = r#"{"schemaVersion":2,"layers":[]}"#;
        assert!(matches!(
            Manifest::parse(layers_in_index, Some(media::OCI_INDEX)),
            Err(Error::AmbiguousManifest { .. })
        ));
    }

    #[test]
    fn refuses_oversized_documents() {
        let mut big = oci_manifest().into_bytes();
        big.pop();
        big.extend(format!(r#","annotations":{{"x":"{}"}}}}"#, "a".repeat(4 << 20)).bytes());
        assert!(matches!(
            Manifest::parse(big, None),
            Err(Error::TooLarge {
                limit: MAX_MANIFEST_SIZE,
                ..
            })
        ));
    }

    #[test]
    fn parse_verified_checks_digest_and_size() {
        let m = Manifest::parse(oci_manifest(), None).unwrap();
        let desc = m.descriptor();
        Manifest::parse_verified(oci_manifest(), &desc).unwrap();
        let tampered = oci_manifest().replace("\"size\":2", "\"size\":3");
        assert!(matches!(
            Manifest::parse_verified(tampered, &desc),
            Err(Error::DigestMismatch { .. })
        ));
    }

    #[test]
    fn refuses_garbage_and_wrong_schema() {
        assert!(Manifest::parse("not json", None).is_err());
        assert!(Manifest::parse(r#"{"schemaVersion":3,"manifests":[]}"#, None).is_err());
        assert!(Manifest::parse(r#"{"schemaVersion":2}"#, None).is_err());
        assert!(Manifest::parse(
            r#"{"schemaVersion":2,"mediaType":"text/plain","manifests":[]}"#,
            None
        )
        .is_err());
    }

    mod roundtrip {
        use super::*;
        use oci_spec::image::{ImageIndexBuilder, ImageManifestBuilder, PlatformBuilder};
        use proptest::prelude::*;

        fn layer(i: usize, size: u64) -> Descriptor {
            descriptor(
                MediaType::ImageLayerGzip,
                sha256(format!("layer {i}").as_bytes()),
                size,
            )
        }

        proptest! {
            /// Any manifest we build parses back to the same body, kind and digest (of its
            /// exact bytes), in both media type families.
            #[test]
            fn manifests_round_trip(
                sizes in proptest::collection::vec(0u64..u64::MAX / 2, 0..12),
                docker in any::<bool>(),
                ann in proptest::option::of(proptest::collection::hash_map("[a-z.]{1,12}", "[ -~]{0,20}", 0..4)),
            ) {
                let kind = if docker { ManifestKind::DockerManifest } else { ManifestKind::OciManifest };
                let mut b = ImageManifestBuilder::default()
                    .schema_version(2u32)
                    .media_type(MediaType::from(kind.media_type()))
                    .config(descriptor(MediaType::ImageConfig, sha256(b"{}"), 2))
                    .layers(sizes.iter().enumerate().map(|(i, s)| layer(i, *s)).collect::<Vec<_>>());
                if let Some(a) = ann {
                    b = b.annotations(a);
                }
                let m = Manifest::from_image(&b.build().unwrap(), kind).unwrap();
                let back = Manifest::parse(m.bytes().clone(), Some(kind.media_type())).unwrap();
                prop_assert_eq!(back.kind(), kind);
                prop_assert_eq!(back.digest(), &sha256(m.bytes()));
                prop_assert_eq!(back.body(), m.body());
                prop_assert_eq!(back.children().len(), sizes.len() + 1);
                // Verified parsing with its own descriptor succeeds; one changed byte fails.
                Manifest::parse_verified(m.bytes().clone(), &m.descriptor()).unwrap();
                let mut bad = m.bytes().to_vec();
                let last = bad.len() - 2;
                bad[last] ^= 1;
                prop_assert!(Manifest::parse_verified(bad, &m.descriptor()).is_err());
            }

            /// Indexes keep their platforms, `os.version` and `os.features` included.
            #[test]
            fn indexes_round_trip(
                entries in proptest::collection::vec(("[a-z0-9]{1,8}", proptest::option::of("[0-9.]{1,10}"), proptest::collection::vec("[a-z0-9]{1,6}", 0..3)), 0..8),
            ) {
                let manifests: Vec<Descriptor> = entries.iter().enumerate().map(|(i, (arch, ver, feats))| {
                    let mut d = layer(i, i as u64);
                    d.set_media_type(MediaType::ImageManifest);
                    let mut p = PlatformBuilder::default().os("linux").architecture(arch.as_str()).build().unwrap();
                    p.set_os_version(ver.clone());
                    if !feats.is_empty() {
                        p.set_os_features(Some(feats.clone()));
                    }
                    d.set_platform(Some(p));
                    d
                }).collect();
                let idx = ImageIndexBuilder::default()
                    .schema_version(2u32)
                    .media_type(MediaType::ImageIndex)
                    .manifests(manifests)
                    .build()
                    .unwrap();
                let m = Manifest::from_index(&idx, ManifestKind::OciIndex).unwrap();
                let text = String::from_utf8(m.bytes().to_vec()).unwrap();
                prop_assert!(!text.contains("osVersion") && !text.contains("osFeatures"), "{}", text);
                let back = Manifest::parse(m.bytes().clone(), None).unwrap();
                prop_assert_eq!(back.kind(), ManifestKind::OciIndex);
                let got = back.as_index().unwrap();
                prop_assert_eq!(got.manifests().len(), entries.len());
                for (d, (_, ver, feats)) in got.manifests().iter().zip(&entries) {
                    let p = d.platform().as_ref().unwrap();
                    prop_assert_eq!(p.os_version(), ver);
                    let want = if feats.is_empty() { None } else { Some(feats.clone()) };
                    prop_assert_eq!(p.os_features(), &want);
                }
            }
        }
    }

    /// Found by the fuzz smoke: a body whose mediaType carries an empty parameter (`;`)
    /// parsed under `application/json` but not again under the media type it reported.
    #[test]
    fn a_media_type_with_parameters_re_parses_under_its_own() {
        let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json;","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
        let m = Manifest::parse(body.to_vec(), Some("application/json")).unwrap();
        let again = Manifest::parse(body.to_vec(), Some(m.media_type())).unwrap();
        assert_eq!(again.body(), m.body());
    }
}

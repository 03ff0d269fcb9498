//! The local image store of the command-line tools: an OCI layout under a data directory,
//! tagged by full references (`docker.io/library/busybox:latest`), and the verbs over it.

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use oci_rs_image::oci_spec::image::{Descriptor, Digest};
use oci_rs_image::Compression;
use oci_rs_image::{
    copy, ArchiveFormat, ArchiveSource, ArchiveWriter, CopyEvent, CopyOptions, ImageBuilder,
    ImageInspect, ImageReference, ImageSource, Manifest, ManifestInspect, ManifestRef, OciLayout,
    PlatformFilter, PlatformSpec, ReferenceStore,
};
use oci_rs_registry_client::{
    Client, DockerConfig, RegistryDestination, RegistrySource, Repository,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The data directory: `--data-dir`, else `$XDG_DATA_HOME/oci-rs`, else `/var/lib/oci-rs` as
/// root, else `~/.local/share/oci-rs`.
pub fn data_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("oci-rs");
    }
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/oci-rs");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".local/share/oci-rs")
}

/// The store and the registry client.
pub struct Images {
    /// The OCI layout holding every image.
    pub layout: OciLayout,
    /// Where layers are unpacked (`data_dir/snapshots`), for pulls that unpack.
    snapshots: PathBuf,
    insecure: Vec<String>,
    quiet: bool,
}

/// One row of `images`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageRow {
    /// `registry/repository` in docker's short form.
    pub repository: String,
    /// The tag.
    pub tag: String,
    /// Config digest (docker's image ID).
    pub id: String,
    /// Manifest digest.
    pub digest: String,
    /// The unpacked size: the sum of the layers' uncompressed bytes, as docker's SIZE.
    pub size: u64,
    /// The sum of the layers' compressed sizes (what a pull moves).
    pub compressed_size: u64,
    /// When the image was created (nanoseconds since the epoch), when its config says.
    pub created: Option<u64>,
}

/// Now, as RFC 3339, for a new image's `created`; `SOURCE_DATE_EPOCH` when set, so that
/// builds and imports can be reproducible.
pub(crate) fn creation_time() -> String {
    let ns = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or_else(oci_rs_runtime::now_ns, |s| s.saturating_mul(1_000_000_000));
    oci_rs_runtime::rfc3339(ns)
}

/// What a pull did, as docker tells it.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The manifest or index now named.
    pub manifest: Descriptor,
    /// Each layer's digest, and whether this pull fetched it (else it was there already).
    pub layers: Vec<(String, bool)>,
    /// The name already pointed at this image before the pull.
    pub up_to_date: bool,
    /// The reference pulled.
    pub reference: ImageReference,
}

impl PullReport {
    /// docker's lines after the progress: `ID: Pull complete` or `ID: Already exists` per
    /// layer, `Digest: ...`, `Status: ...`, then the full reference.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (d, fetched) in &self.layers {
            let hex = d.split_once(':').map_or(d.as_str(), |(_, h)| h);
            out.push(format!(
                "{}: {}",
                short(hex),
                if *fetched {
                    "Pull complete"
                } else {
                    "Already exists"
                }
            ));
        }
        out.push(format!("Digest: {}", self.manifest.digest()));
        let name = self.reference.familiar();
        out.push(if self.up_to_date {
            format!("Status: Image is up to date for {name}")
        } else {
            format!("Status: Downloaded newer image for {name}")
        });
        out.push(self.reference.to_string());
        out
    }
}

/// What `commit` is told besides the container and the name.
#[derive(Debug, Clone)]
pub struct CommitOptions {
    /// `-m`: the history entry's comment.
    pub message: Option<String>,
    /// `-a`: the image's and the history entry's author.
    pub author: Option<String>,
    /// `-c`: Dockerfile-style changes (`CMD ["sh"]`, `ENV K=V`, ...).
    pub changes: Vec<String>,
    /// Freeze a running container while its layer is read (docker's default).
    pub pause: bool,
}

impl Default for CommitOptions {
    fn default() -> Self {
        Self {
            message: None,
            author: None,
            changes: Vec::new(),
            pause: true,
        }
    }
}

/// One row of `history`: a history entry of the config, newest first.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryRow {
    /// The image id on the newest row, `None` (docker's `<missing>`) on the others.
    pub id: Option<String>,
    /// When (nanoseconds since the epoch), when recorded.
    pub created: Option<u64>,
    /// The command that made it.
    pub created_by: String,
    /// Its layer's unpacked size (0 for an empty layer).
    pub size: u64,
    /// The comment.
    pub comment: String,
}

/// What [`Images::find`] found.
#[derive(Debug, Clone)]
pub struct Found {
    /// The image's descriptor in the store.
    pub desc: Descriptor,
    /// The reference it was named by (for an id: its first name).
    pub reference: ImageReference,
    /// Every store name that points at it.
    pub names: Vec<String>,
    /// Named by its id (or a prefix of it), not by a reference.
    pub by_id: bool,
}

impl Images {
    /// Opens (creating) the store under `data_dir/images`. The data directory is private to
    /// its owner (0700, tightened when an existing one is more open): it holds unpacked
    /// layers, whose setuid binaries and device nodes no other local user may reach.
    pub async fn open(data_dir: &Path, insecure: Vec<String>, quiet: bool) -> Result<Self> {
        oci_rs_layer::private_dir(data_dir)
            .with_context(|| format!("opening the data directory {}", data_dir.display()))?;
        let layout = OciLayout::create(data_dir.join("images"))
            .await
            .with_context(|| format!("opening the image store in {}", data_dir.display()))?;
        Ok(Self {
            layout,
            snapshots: data_dir.join("snapshots"),
            insecure,
            quiet,
        })
    }

    fn client(&self) -> Result<Client> {
        let mut b = Client::builder().credentials(DockerConfig::load_default()?);
        for r in &self.insecure {
            b = b.insecure_registry(r);
        }
        Ok(b.build()?)
    }

    fn options(&self, platform: Option<&str>, tag: Option<String>) -> Result<CopyOptions> {
        self.options_observed(platform, tag, |_| {})
    }

    /// [`Images::options`] with `observe` seeing every copy event beside the bars.
    fn options_observed(
        &self,
        platform: Option<&str>,
        tag: Option<String>,
        observe: impl Fn(&CopyEvent) + Send + Sync + 'static,
    ) -> Result<CopyOptions> {
        let mut opts = CopyOptions::default();
        if let Some(p) = platform {
            opts = opts.platforms(if p == "all" {
                PlatformFilter::All
            } else {
                PlatformFilter::One(p.parse::<PlatformSpec>()?)
            });
        }
        if let Some(t) = tag {
            opts = opts.tag(t);
        }
        let bars = (!self.quiet).then(Bars::default);
        opts = opts.progress(move |e| {
            observe(e);
            if let Some(b) = &bars {
                b.event(e);
            }
        });
        Ok(opts)
    }

    /// `pull REF`: into the store, tagged with the full reference.
    pub async fn pull(&self, reference: &str, platform: Option<&str>) -> Result<Descriptor> {
        Ok(self.pull_report(reference, platform, false).await?.manifest)
    }

    /// [`Images::pull`] that also unpacks the image's layers into the snapshots as they
    /// arrive (`run` of an image not here yet, `pull --unpack`, a build's `FROM`): each blob
    /// is read once, see [`oci_rs_layer::pull_and_unpack`].
    pub async fn pull_unpacked(
        &self,
        reference: &str,
        platform: Option<&str>,
    ) -> Result<Descriptor> {
        Ok(self.pull_report(reference, platform, true).await?.manifest)
    }

    /// [`Images::pull`] (or with `unpack`, [`Images::pull_unpacked`]) with what docker prints
    /// of it: each layer's fate, and whether the name already pointed at this image.
    pub async fn pull_report(
        &self,
        reference: &str,
        platform: Option<&str>,
        unpack: bool,
    ) -> Result<PullReport> {
        let r = ImageReference::parse(reference)?;
        let (repo, what) = Repository::parse_reference(reference)?;
        let src = RegistrySource::new(self.client()?, repo);
        let name = store_name(&r);
        let before = self.layout.resolve(&name).await.ok();
        // Leased: a gc in another process keeps what this pull writes before it tags.
        let dst = self.layout.leased()?;
        let fetched: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
        let seen = fetched.clone();
        let opts = self.options_observed(platform, Some(name), move |e| {
            if let CopyEvent::BlobDone { digest, .. } = e {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(digest.to_string());
            }
        })?;
        let report = if unpack {
            let snapshots = oci_rs_layer::Snapshotter::new(&self.snapshots)?;
            oci_rs_layer::pull_and_unpack(&src, &dst, &what, &opts, &snapshots)
                .await
                .with_context(|| format!("pulling {reference}"))?
                .copy
        } else {
            copy(&src, &dst, &what, &opts)
                .await
                .with_context(|| format!("pulling {reference}"))?
        };
        let fetched = fetched.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let top = self
            .layout
            .manifest(&ManifestRef::Digest(report.manifest.digest().clone()))
            .await?;
        let mut images = Vec::new();
        match top.as_index() {
            Some(index) => {
                for d in index.manifests() {
                    if let Ok(m) = self
                        .layout
                        .manifest(&ManifestRef::Digest(d.digest().clone()))
                        .await
                    {
                        images.push(m);
                    }
                }
            }
            None => images.push(top),
        }
        let mut layers = Vec::new();
        for m in &images {
            for l in m.as_image().map(|i| i.layers().clone()).unwrap_or_default() {
                let d = l.digest().to_string();
                if !layers.iter().any(|(x, _): &(String, bool)| *x == d) {
                    let got = fetched.contains(&d);
                    layers.push((d, got));
                }
            }
        }
        Ok(PullReport {
            up_to_date: before.is_some_and(|b| b.digest() == report.manifest.digest()),
            manifest: report.manifest,
            layers,
            reference: r,
        })
    }

    /// `push REF`: what the store names `REF` to its registry.
    pub async fn push(&self, reference: &str) -> Result<Descriptor> {
        let r = ImageReference::parse(reference)?;
        let desc = self.resolve(&r).await?;
        let (repo, _) = Repository::parse_reference(reference)?;
        let dst = RegistryDestination::new(self.client()?, repo);
        let tag = r.tag().map(str::to_owned);
        let report = copy(
            &self.layout,
            &dst,
            &ManifestRef::Digest(desc.digest().clone()),
            &self.options(Some("all"), tag)?,
        )
        .await
        .with_context(|| format!("pushing {reference}"))?;
        Ok(report.manifest)
    }

    async fn resolve(&self, r: &ImageReference) -> Result<Descriptor> {
        self.layout
            .resolve(&store_name(r))
            .await
            .map_err(|_| anyhow!("no such image: {}", r.familiar()))
    }

    /// An image as a user names it: a reference in the store, else docker's image id (the
    /// config digest, `sha256:` optional) or a unique prefix of one. Returns its descriptor,
    /// the reference it was found by (the first name of an image found by id) and every
    /// store name that points at it. Two images sharing the prefix: an error naming both.
    pub async fn find(&self, name: &str) -> Result<Found> {
        self.find_opt(name)
            .await?
            .ok_or_else(|| anyhow!("no such image: {name}"))
    }

    /// [`Images::find`], with `None` for an image that is not there (an ambiguous id
    /// prefix is still an error).
    pub async fn find_opt(&self, name: &str) -> Result<Option<Found>> {
        let by_ref = match ImageReference::parse(name) {
            Ok(r) => match self.layout.resolve(&store_name(&r)).await {
                Ok(d) => Some((d, r)),
                Err(_) => None,
            },
            Err(_) => None,
        };
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        let looks_like_id = !hex.is_empty()
            && hex.len() <= 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let mut matches: Vec<(String, Descriptor, String)> = Vec::new();
        if by_ref.is_none() && looks_like_id {
            for (store, desc) in ReferenceStore::list(&self.layout).await? {
                let m = self
                    .layout
                    .manifest(&ManifestRef::Digest(desc.digest().clone()))
                    .await?;
                let id = match self.for_host(m).await {
                    Ok(m) => match m.as_image() {
                        Some(i) => i.config().digest().to_string(),
                        None => m.digest().to_string(),
                    },
                    Err(_) => desc.digest().to_string(),
                };
                if id
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.starts_with(hex))
                {
                    matches.push((id, desc, store));
                }
            }
        }
        let (desc, reference) = match by_ref {
            Some(x) => x,
            None => {
                let ids: std::collections::BTreeSet<&str> =
                    matches.iter().map(|m| m.0.as_str()).collect();
                match ids.len() {
                    0 => return Ok(None),
                    1 => {}
                    _ => bail!(
                        "ambiguous image id prefix {name}: it matches {}",
                        ids.iter()
                            .map(|i| short(i.trim_start_matches("sha256:")))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
                let (_, d, store) = &matches[0];
                let r = ImageReference::parse(store)
                    .with_context(|| format!("the stored name {store}"))?;
                (d.clone(), r)
            }
        };
        let names = ReferenceStore::list(&self.layout)
            .await?
            .into_iter()
            .filter(|(_, d)| d.digest() == desc.digest())
            .map(|(n, _)| n)
            .collect();
        Ok(Some(Found {
            desc,
            reference,
            names,
            by_id: !matches.is_empty(),
        }))
    }

    /// `history IMAGE`: the config's history, newest first, each entry that made a layer
    /// with that layer's size. A config without history (a foreign tool's) gives one row
    /// per layer.
    pub async fn history(&self, name: &str) -> Result<Vec<HistoryRow>> {
        let found = self.find(name).await?;
        let m = self
            .layout
            .manifest(&ManifestRef::Digest(found.desc.digest().clone()))
            .await?;
        let m = self.for_host(m).await?;
        let img = m
            .as_image()
            .ok_or_else(|| anyhow!("{name} is not an image"))?;
        let config = oci_rs_image::read_config(&self.layout, img.config()).await?;
        let time = |t: &Option<String>| t.as_deref().and_then(oci_rs_runtime::parse_rfc3339);
        // docker's SIZE: each layer's unpacked bytes.
        let mut unpacked = Vec::new();
        for l in img.layers() {
            unpacked.push(self.unpacked_size(l).await?);
        }
        let mut sizes = unpacked.into_iter();
        let mut rows: Vec<HistoryRow> = match config.history() {
            Some(h) if !h.is_empty() => h
                .iter()
                .map(|e| HistoryRow {
                    id: None,
                    created: time(e.created()),
                    created_by: e.created_by().clone().unwrap_or_default(),
                    size: if e.empty_layer().unwrap_or(false) {
                        0
                    } else {
                        sizes.next().unwrap_or(0)
                    },
                    comment: e.comment().clone().unwrap_or_default(),
                })
                .collect(),
            _ => sizes
                .map(|size| HistoryRow {
                    id: None,
                    created: time(config.created()),
                    created_by: String::new(),
                    size,
                    comment: String::new(),
                })
                .collect(),
        };
        rows.reverse();
        if let Some(first) = rows.first_mut() {
            first.id = Some(img.config().digest().to_string());
        }
        Ok(rows)
    }

    /// `image prune [-a]`: without `all`, only what no name reaches (gc); with `all`, every
    /// image no container was made from loses its names first. Returns the names removed
    /// and the bytes freed.
    pub async fn prune(&self, data_dir: &Path, all: bool) -> Result<(Vec<String>, u64)> {
        let containers = Self::containers(data_dir)?;
        let used: std::collections::BTreeSet<String> =
            containers.iter().map(|c| c.image.clone()).collect();
        let mut removed = Vec::new();
        if all {
            for (name, desc) in ReferenceStore::list(&self.layout).await? {
                let top = self
                    .layout
                    .manifest(&ManifestRef::Digest(desc.digest().clone()))
                    .await?;
                let host = self.for_host(top).await.map(|m| m.digest().to_string());
                let in_use = used.contains(&desc.digest().to_string())
                    || host.as_ref().is_ok_and(|h| used.contains(h));
                if !in_use {
                    removed.push(self.untag(name).await?);
                }
            }
        }
        Ok((removed, self.gc_keeping_containers(&containers).await?))
    }

    /// Removes store name `name`; its familiar form.
    async fn untag(&self, name: String) -> Result<String> {
        self.layout.remove(&name).await?;
        Ok(ImageReference::parse(&name)
            .map(|r| r.familiar())
            .unwrap_or(name))
    }

    /// gc of what no name reaches, keeping what `containers` were made from (tagged or
    /// not); the bytes freed.
    async fn gc_keeping_containers(
        &self,
        containers: &[oci_rs_layer::SnapshotInfo],
    ) -> Result<u64> {
        let mut roots = Vec::new();
        for c in containers {
            let Ok(d) = oci_rs_image::parse_digest(&c.image) else {
                continue;
            };
            if let Ok(m) = self.layout.manifest(&ManifestRef::Digest(d)).await {
                roots.push(m.descriptor());
            }
        }
        // The build cache's layers: a rebuild finds them.
        if let Some(data) = self.layout.root().parent() {
            roots.extend(crate::build::cache_roots(data));
        }
        Ok(self.layout.gc_keeping(&roots).await?.bytes_freed)
    }

    /// The image manifests an image name stands for: itself, or each entry of an index.
    async fn image_manifests(&self, name: &str) -> Result<Vec<Manifest>> {
        let desc = match self.find_opt(name).await? {
            Some(f) => f.desc,
            None => self.pull(name, None).await?,
        };
        let m = self
            .layout
            .manifest(&ManifestRef::Digest(desc.digest().clone()))
            .await?;
        match m.as_index() {
            None => Ok(vec![m]),
            Some(index) => {
                let mut out = Vec::new();
                for d in index.manifests() {
                    out.push(
                        self.layout
                            .manifest(&ManifestRef::Digest(d.digest().clone()))
                            .await?,
                    );
                }
                Ok(out)
            }
        }
    }

    /// The manifest list `desc` (named `r` in messages).
    async fn read_list(
        &self,
        desc: &Descriptor,
        r: &ImageReference,
    ) -> Result<oci_rs_image::oci_spec::image::ImageIndex> {
        let m = self
            .layout
            .manifest(&ManifestRef::Digest(desc.digest().clone()))
            .await?;
        m.as_index()
            .cloned()
            .ok_or_else(|| anyhow!("{} is an image, not a manifest list", r.familiar()))
    }

    /// `manifest create LIST IMAGE...`: an OCI index named LIST in the store, one entry per
    /// image manifest (an image found neither here nor... is pulled first), each with the
    /// platform its config says. `amend` adds to an existing LIST instead of refusing it.
    pub async fn manifest_create(
        &self,
        list: &str,
        images: &[String],
        amend: bool,
    ) -> Result<Descriptor> {
        use oci_rs_image::oci_spec::image::{MediaType, PlatformBuilder};
        let r = ImageReference::parse(list)?;
        let mut entries: Vec<Descriptor> = Vec::new();
        if let Ok(old) = self.layout.resolve(&store_name(&r)).await {
            if !amend {
                bail!(
                    "refusing to replace {}: it exists (use --amend)",
                    r.familiar()
                );
            }
            entries = self.read_list(&old, &r).await?.manifests().clone();
        }
        for image in images {
            for m in self.image_manifests(image).await? {
                let img = m
                    .as_image()
                    .ok_or_else(|| anyhow!("{image} holds a nested index"))?;
                let config = oci_rs_image::read_config(&self.layout, img.config()).await?;
                let mut p = PlatformBuilder::default()
                    .os(config.os().clone())
                    .architecture(config.architecture().clone())
                    .build()?;
                p.set_variant(config.variant().clone());
                let mut d = m.descriptor();
                d.set_platform(Some(p));
                entries.retain(|e| e.digest() != d.digest());
                entries.push(d);
            }
        }
        self.write_index(&r, entries, |b| {
            b.schema_version(2u32).media_type(MediaType::ImageIndex)
        })
        .await
    }

    async fn write_index(
        &self,
        r: &ImageReference,
        entries: Vec<Descriptor>,
        shape: impl FnOnce(
            oci_rs_image::oci_spec::image::ImageIndexBuilder,
        ) -> oci_rs_image::oci_spec::image::ImageIndexBuilder,
    ) -> Result<Descriptor> {
        let idx = shape(oci_rs_image::oci_spec::image::ImageIndexBuilder::default())
            .manifests(entries)
            .build()?;
        let m = Manifest::from_index(&idx, oci_rs_image::ManifestKind::OciIndex)?;
        let store = self.layout.leased()?;
        oci_rs_image::ImageDestination::put_manifest(&store, &m, None).await?;
        self.layout
            .tag(&store_name(r), &m.descriptor(), Some(&r.to_string()))
            .await?;
        Ok(m.descriptor())
    }

    /// `manifest annotate LIST IMAGE --os --arch --variant`: the platform of IMAGE's entry.
    pub async fn manifest_annotate(
        &self,
        list: &str,
        image: &str,
        os: Option<&str>,
        arch: Option<&str>,
        variant: Option<&str>,
    ) -> Result<Descriptor> {
        use oci_rs_image::oci_spec::image::{Arch, Os, PlatformBuilder};
        let r = ImageReference::parse(list)?;
        let desc = self
            .layout
            .resolve(&store_name(&r))
            .await
            .map_err(|_| anyhow!("no such manifest list: {}", r.familiar()))?;
        let idx = self.read_list(&desc, &r).await?;
        let mut entries = idx.manifests().clone();
        let wanted: Vec<Digest> = self
            .image_manifests(image)
            .await?
            .iter()
            .map(|m| m.digest().clone())
            .collect();
        let mut hit = false;
        for e in entries.iter_mut().filter(|e| wanted.contains(e.digest())) {
            hit = true;
            let old = e.platform().clone();
            let mut p = PlatformBuilder::default()
                .os(os
                    .map(Os::from)
                    .or_else(|| old.as_ref().map(|p| p.os().clone()))
                    .unwrap_or(Os::Linux))
                .architecture(
                    arch.map(|a| Arch::from(oci_rs_image::normalize_platform(a, None).0.as_str()))
                        .or_else(|| old.as_ref().map(|p| p.architecture().clone()))
                        .unwrap_or(Arch::Amd64),
                )
                .build()?;
            p.set_variant(
                variant
                    .map(str::to_owned)
                    .or_else(|| old.as_ref().and_then(|p| p.variant().clone())),
            );
            e.set_platform(Some(p));
        }
        if !hit {
            bail!("{image} is not in the manifest list {}", r.familiar());
        }
        let media = idx.media_type().clone();
        self.write_index(&r, entries, |b| {
            let b = b.schema_version(2u32);
            match media {
                Some(m) => b.media_type(m),
                None => b,
            }
        })
        .await
    }

    /// `tag SRC DST`.
    pub async fn tag(&self, from: &str, to: &str) -> Result<()> {
        let desc = self.find(from).await?.desc;
        let to = ImageReference::parse(to)?;
        self.layout.set(&store_name(&to), &desc).await?;
        Ok(())
    }

    /// `images`.
    pub async fn list(&self) -> Result<Vec<ImageRow>> {
        let mut rows = Vec::new();
        for (name, desc) in ReferenceStore::list(&self.layout).await? {
            let Ok(r) = ImageReference::parse(&name) else {
                continue;
            };
            let m = self
                .layout
                .manifest(&ManifestRef::Digest(desc.digest().clone()))
                .await?;
            let m = self.for_host(m).await?;
            let img = m.as_image().map(|i| (i.config().digest().to_string(), i));
            let created = match &img {
                Some((_, i)) => oci_rs_image::read_config(&self.layout, i.config())
                    .await
                    .ok()
                    .and_then(|c| {
                        c.created()
                            .as_deref()
                            .and_then(oci_rs_runtime::parse_rfc3339)
                    }),
                None => None,
            };
            // Docker's form: a name pulled by digest is `REPO <none>`, its digest shown by
            // --digests; not a repository named `...@sha256`.
            let repository = r.familiar_name();
            rows.push(ImageRow {
                created,
                repository,
                tag: r.tag().unwrap_or("<none>").to_owned(),
                id: img.as_ref().map(|i| i.0.clone()).unwrap_or_default(),
                digest: desc.digest().to_string(),
                compressed_size: img
                    .as_ref()
                    .map(|i| i.1.layers().iter().map(|l| l.size()).sum())
                    .unwrap_or(0),
                size: match &img {
                    Some((_, i)) => {
                        let mut total = 0;
                        for l in i.layers() {
                            total += self.unpacked_size(l).await?;
                        }
                        total
                    }
                    None => 0,
                },
            });
        }
        Ok(rows)
    }

    /// The uncompressed size of a layer blob: counted once by decompressing it, then kept in
    /// `sizes/HEX` beside the store (a blob's content never changes).
    async fn unpacked_size(&self, layer: &Descriptor) -> Result<u64> {
        let Some(data) = self.layout.root().parent() else {
            return Ok(layer.size());
        };
        let cache = data.join("sizes").join(layer.digest().digest());
        if let Some(n) = std::fs::read_to_string(&cache)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return Ok(n);
        }
        let Ok(blob) = self.layout.blob(layer).await else {
            // Not here (a foreign platform's layer): the compressed size says something.
            return Ok(layer.size());
        };
        let mut plain = oci_rs_layer::decompress(blob, None).await?;
        let n = tokio::io::copy(&mut plain, &mut tokio::io::sink()).await?;
        if std::fs::create_dir_all(cache.parent().unwrap_or(data)).is_ok() {
            let tmp = cache.with_extension("tmp");
            if std::fs::write(&tmp, n.to_string()).is_ok() {
                let _ = std::fs::rename(&tmp, &cache);
            }
        }
        Ok(n)
    }

    /// The image of an index for the host platform (an image manifest is returned as is).
    async fn for_host(&self, m: Manifest) -> Result<Manifest> {
        match m.as_index() {
            Some(index) => {
                let d = oci_rs_image::select_platform(index, &PlatformSpec::host())?;
                Ok(self
                    .layout
                    .manifest(&ManifestRef::Digest(d.digest().clone()))
                    .await?)
            }
            None => Ok(m),
        }
    }

    /// `rmi [-f] REF...`: untag, then remove what no tag reaches any more. An image that a
    /// container was made from is refused (as docker does) unless `force`, which untags it;
    /// its content stays as long as a container needs it (commit and export read it).
    /// An image named by its id (or a prefix) loses every name it has; with more than one,
    /// only with `force`, as docker's. Returns the names untagged and the bytes freed.
    pub async fn remove(
        &self,
        data_dir: &Path,
        references: &[String],
        force: bool,
    ) -> Result<(Vec<String>, u64)> {
        let containers = Self::containers(data_dir)?;
        let mut untagged = Vec::new();
        for reference in references {
            let found = self.find(reference).await?;
            let r = found.reference.clone();
            let desc = found.desc.clone();
            let names = if found.by_id {
                if found.names.len() > 1 && !force {
                    bail!(
                        "conflict: unable to delete {reference} (must be forced): the image is referenced by {} names",
                        found.names.len()
                    );
                }
                found.names.clone()
            } else {
                vec![store_name(&r)]
            };
            if !force {
                let top = self
                    .layout
                    .manifest(&ManifestRef::Digest(desc.digest().clone()))
                    .await?;
                let host = self.for_host(top).await?.digest().to_string();
                let named = desc.digest().to_string();
                if let Some(c) = containers
                    .iter()
                    .find(|c| c.image == host || c.image == named)
                {
                    let name = oci_rs_runtime::engine::Containers::open(data_dir)?
                        .view(&c.id)
                        .map(|v| v.config.name)
                        .unwrap_or_default();
                    bail!(
                        "conflict: unable to remove {}: container {name} ({}) is using it (rm the container, or rmi -f)",
                        r.familiar(),
                        c.id.get(..12).unwrap_or(&c.id)
                    );
                }
            }
            for name in names {
                untagged.push(self.untag(name).await?);
            }
        }
        Ok((untagged, self.gc_keeping_containers(&containers).await?))
    }

    /// `inspect REF`: docker's view of the image for the host platform.
    pub async fn inspect(&self, reference: &str) -> Result<ImageInspect> {
        let Found {
            desc, reference: r, ..
        } = self.find(reference).await?;
        let m = self
            .layout
            .manifest(&ManifestRef::Digest(desc.digest().clone()))
            .await?;
        let m = self.for_host(m).await?;
        let tags: Vec<String> = ReferenceStore::list(&self.layout)
            .await?
            .into_iter()
            .filter(|(_, d)| d.digest() == desc.digest())
            .filter_map(|(n, _)| {
                let r2 = ImageReference::parse(&n).ok()?;
                (r2.name() == r.name()).then(|| r2.tag().map(str::to_owned))?
            })
            .collect();
        let name = r.familiar();
        let name = name.rsplit_once(':').map(|(n, _)| n).unwrap_or(&name);
        Ok(ImageInspect::new(&self.layout, &m, Some(name), &tags).await?)
    }

    /// `manifest inspect REF`: from the registry.
    pub async fn manifest_inspect(&self, reference: &str) -> Result<ManifestInspect> {
        let (repo, what) = Repository::parse_reference(reference)?;
        let src = RegistrySource::new(self.client()?, repo);
        let m = src.manifest(&what).await?;
        Ok(ManifestInspect::new(&src, &m, reference, true).await?)
    }

    /// `save [-o FILE] REF...`: a docker-archive that `docker load` accepts, into `file` (a
    /// regular file is replaced atomically; a device, pipe or FIFO is written to) or, with
    /// `None`, to standard output (refused when it is a terminal, as docker does).
    pub async fn save(&self, file: Option<&Path>, references: &[String]) -> Result<()> {
        if references.is_empty() {
            bail!("save needs at least one image");
        }
        let w = match file {
            Some(f) => ArchiveWriter::create(f, ArchiveFormat::Docker).await?,
            None => ArchiveWriter::new(stdout_sink()?, ArchiveFormat::Docker),
        };
        for reference in references {
            let f = self.find(reference).await?;
            let (r, desc) = (f.reference, f.desc);
            let opts = self.options(None, Some(r.familiar()))?;
            let src = self
                .layout
                .manifest(&ManifestRef::Digest(desc.digest().clone()))
                .await?;
            let m = self.for_host(src).await?;
            // One copy per image; `finish` after the last writes the index files.
            oci_rs_image::copy_without_finish(
                &self.layout,
                &w,
                &ManifestRef::Digest(m.digest().clone()),
                &opts,
            )
            .await?;
        }
        oci_rs_image::ImageDestination::finish(&w).await?;
        Ok(())
    }

    /// `load [-i FILE]`: every image of a docker-archive or oci-archive, each platform that is
    /// there; returns docker's lines (`Loaded image: NAME`, or `Loaded image ID: ID` for an
    /// image the archive does not name). With `None` the archive is read from standard
    /// input; a pipe is first copied into a private temporary file in the data directory
    /// (an archive is read by offsets).
    pub async fn load(&self, data_dir: &Path, file: Option<&Path>) -> Result<Vec<String>> {
        let spooled;
        let file = match file {
            Some(f) => f.to_path_buf(),
            None if stdin_is_regular() => PathBuf::from("/dev/stdin"),
            None => {
                spooled = spool_stdin(data_dir).await?;
                spooled.path().to_path_buf()
            }
        };
        let file = file.as_path();
        let a = ArchiveSource::open(file).await?;
        let mut loaded = Vec::new();
        let mut tags = a.tags();
        if tags.is_empty() {
            tags.push(String::new());
        }
        for t in tags {
            // A full name (`busybox:1`, `reg/app`) names the image; a bare tag (`latest`,
            // `amd64`, as umoci and skopeo write an oci-archive) says nothing of the
            // repository, so that image is loaded untagged and reported by id, as docker does.
            let name = match ImageReference::parse(&t) {
                Ok(r) if t.contains(':') || t.contains('/') => Some(store_name(&r)),
                _ => None,
            };
            let what = ManifestRef::Tag(t.clone());
            let dst = self.layout.leased()?;
            // The host's image is unpacked as it loads, as docker's load extracts.
            let snapshots = oci_rs_layer::Snapshotter::new(&self.snapshots)?;
            let opts = self.options(Some("all"), name.clone())?;
            let loaded_one = oci_rs_layer::pull_and_unpack(&a, &dst, &what, &opts, &snapshots)
                .await
                .map(|r| r.copy);
            let report = match loaded_one {
                Ok(r) => r,
                Err(e) if e.is_not_found() => {
                    // An index whose other platforms' blobs were left out: what is there.
                    tracing::info!(tag = %t, error = %e, "not every platform is in the archive; loading the host's");
                    let opts = self.options(None, name.clone())?;
                    oci_rs_layer::pull_and_unpack(&a, &dst, &what, &opts, &snapshots)
                        .await?
                        .copy
                }
                Err(e) => return Err(anyhow::Error::new(e).context(format!("loading {t:?}"))),
            };
            loaded.push(match name {
                Some(n) => format!("Loaded image: {}", ImageReference::parse(&n)?.familiar()),
                None => format!(
                    "Loaded image ID: {}",
                    self.image_id(&report.manifest).await?
                ),
            });
        }
        // A docker-archive is also an oci-archive here, so an image can be named by both
        // manifests: one line per image, as docker prints.
        let mut seen = std::collections::BTreeSet::new();
        loaded.retain(|l| seen.insert(l.clone()));
        if loaded.is_empty() {
            bail!("{} holds no image", file.display());
        }
        Ok(loaded)
    }

    /// Docker's image id for what a manifest descriptor names: the config digest of an
    /// image, the digest of an index.
    async fn image_id(&self, desc: &Descriptor) -> Result<String> {
        let m = self
            .layout
            .manifest(&ManifestRef::Digest(desc.digest().clone()))
            .await?;
        Ok(match m.as_image() {
            Some(img) => img.config().digest().to_string(),
            None => m.digest().to_string(),
        })
    }

    /// `import FILE|URL|- REF`: a filesystem tar (plain, gzip or zstd) as a one-layer image,
    /// from a file, an http(s) URL, or standard input (`-`, a pipe is fine: it is read once,
    /// as a stream).
    pub async fn import(
        &self,
        source: &str,
        reference: &str,
        changes: &[String],
    ) -> Result<Descriptor> {
        let r = ImageReference::parse(reference)?;
        let host = PlatformSpec::host();
        let mut b = ImageBuilder::new(&host.os, &host.architecture);
        if let Some(v) = &host.variant {
            b = b.variant(v);
        }
        for c in changes {
            b = apply_change(b, c)?;
        }
        let input: Box<dyn tokio::io::AsyncRead + Send + Unpin> = if source == "-" {
            Box::new(tokio::io::stdin())
        } else if source.starts_with("http://") || source.starts_with("https://") {
            Box::new(download(source).await?)
        } else {
            Box::new(
                tokio::fs::File::open(source)
                    .await
                    .with_context(|| format!("opening {source}"))?,
            )
        };
        b = b.created(&creation_time());
        // Followed as a tar on the way (and passed through unchanged), so bytes that are not
        // one are refused instead of becoming a layer nothing can apply.
        let mut tar = oci_rs_image::TarGuard::new(oci_rs_layer::decompress(input, None).await?);
        let store = self.layout.leased()?;
        b.add_layer_tar(&store, &mut tar, Compression::Gzip, "imported")
            .await
            .with_context(|| format!("importing {source}"))?;
        let m = b.build(&store).await?;
        self.layout
            .tag(&store_name(&r), &m.descriptor(), Some(&r.to_string()))
            .await?;
        Ok(m.descriptor())
    }
}

impl Images {
    /// `unpack IMAGE DIR`: every layer of the host's image, applied in order. Returns the
    /// layer and entry counts. With `public` false the tree goes into `dir/rootfs` under a
    /// `dir` made private (0700, as umoci lays it out), so no other local user can reach its
    /// setuid binaries or device nodes, not even while it is being written; with `public` the
    /// layers go straight into `dir`, which keeps the image's modes.
    pub async fn unpack(&self, reference: &str, dir: &Path, public: bool) -> Result<(usize, u64)> {
        let r = ImageReference::parse(reference)?;
        let desc = self.resolve(&r).await?;
        let m = self
            .layout
            .manifest(&ManifestRef::Digest(desc.digest().clone()))
            .await?;
        let m = self.for_host(m).await?;
        let img = m
            .as_image()
            .ok_or_else(|| anyhow!("{} is not an image", r.familiar()))?;
        let config = oci_rs_image::read_config(&self.layout, img.config()).await?;
        if config.rootfs().diff_ids().len() != img.layers().len() {
            bail!(
                "{}: the config lists {} diff_ids for {} layers",
                r.familiar(),
                config.rootfs().diff_ids().len(),
                img.layers().len()
            );
        }
        let dir = if public {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.to_path_buf()
        } else {
            oci_rs_layer::private_dir(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
            let rootfs = dir.join("rootfs");
            std::fs::create_dir_all(&rootfs)
                .with_context(|| format!("creating {}", rootfs.display()))?;
            rootfs
        };
        let dir = dir.as_path();
        let mut entries = 0;
        for (layer, diff_id) in img.layers().iter().zip(config.rootfs().diff_ids()) {
            let opts = oci_rs_layer::ApplyOptions {
                diff_id: Some(oci_rs_image::parse_digest(diff_id)?),
                ..Default::default()
            };
            let blob = self.layout.blob(layer).await?;
            let rep = oci_rs_layer::apply(dir, blob, layer.media_type().as_ref(), &opts)
                .await
                .with_context(|| format!("applying layer {}", layer.digest()))?;
            entries += rep.entries;
        }
        Ok((img.layers().len(), entries))
    }
}

impl Images {
    /// The image `run` starts from: resolved in the store or pulled when missing, the
    /// platform's (or the host's) manifest of an index, and its configuration and config
    /// digest (docker's image id).
    pub async fn image_for_run(
        &self,
        image: &str,
        platform: Option<&str>,
    ) -> Result<(
        Manifest,
        oci_rs_image::oci_spec::image::ImageConfiguration,
        Digest,
    )> {
        let desc = match self.find_opt(image).await? {
            Some(f) => f.desc,
            None => {
                let r = ImageReference::parse(image)?;
                if !self.quiet {
                    eprintln!("Unable to find image '{}' locally", r.familiar());
                }
                self.pull_unpacked(image, platform).await?
            }
        };
        let m = self
            .layout
            .manifest(&ManifestRef::Digest(desc.digest().clone()))
            .await?;
        let m = match (m.as_index(), platform) {
            (Some(index), Some(p)) => {
                let d = oci_rs_image::select_platform(index, &p.parse::<PlatformSpec>()?)?;
                self.layout
                    .manifest(&ManifestRef::Digest(d.digest().clone()))
                    .await?
            }
            _ => self.for_host(m).await?,
        };
        let img = m
            .as_image()
            .ok_or_else(|| anyhow!("{image} is not an image"))?;
        let config = oci_rs_image::read_config(&self.layout, img.config()).await?;
        let config_digest = img.config().digest().clone();
        Ok((m, config, config_digest))
    }

    /// The snapshots of every container (what each was made from).
    fn containers(data_dir: &Path) -> Result<Vec<oci_rs_layer::SnapshotInfo>> {
        Ok(oci_rs_layer::Snapshotter::new(data_dir.join("snapshots"))?.list()?)
    }
}

impl Images {
    async fn image_of(&self, rec: &oci_rs_layer::SnapshotInfo) -> Result<Manifest> {
        Ok(self
            .layout
            .manifest(&ManifestRef::Digest(oci_rs_image::parse_digest(
                &rec.image,
            )?))
            .await?)
    }

    fn snapshot(data_dir: &Path, name: &str) -> Result<(oci_rs_layer::SnapshotInfo, PathBuf)> {
        let id = oci_rs_runtime::engine::Containers::open(data_dir)?.resolve(name)?;
        let info = oci_rs_layer::Snapshotter::new(data_dir.join("snapshots"))?.info(&id)?;
        Ok((info, data_dir.join("snapshots/containers").join(id)))
    }

    /// `commit [-m] [-a] [-c]... [--pause] ID IMAGE`: the container's changes as a new layer
    /// on its image, tagged. A running container is frozen (its cgroup's freezer) while its
    /// writable layer is read, so the image is one moment of it, and thawed however the
    /// read ends; `pause: false` skips that, as docker's `--pause=false`.
    pub async fn commit(
        &self,
        data_dir: &Path,
        id: &str,
        reference: &str,
        how: &CommitOptions,
    ) -> Result<Descriptor> {
        let (rec, dir) = Self::snapshot(data_dir, id)?;
        let full_id = oci_rs_runtime::engine::Containers::open(data_dir)?.resolve(id)?;
        let frozen = match oci_rs_runtime::Container::load(&data_dir.join("run"), &full_id) {
            Ok(c) if how.pause && c.status() == oci_rs_runtime::Status::Running => {
                c.pause()
                    .with_context(|| format!("pausing {id} to commit it (or use --pause=false)"))?;
                Some(c)
            }
            _ => None,
        };
        let made = self.commit_frozen(&rec, &dir, id, reference, how).await;
        if let Some(c) = frozen {
            c.resume()
                .with_context(|| format!("resuming {id} after the commit"))?;
        }
        made
    }

    async fn commit_frozen(
        &self,
        rec: &oci_rs_layer::SnapshotInfo,
        dir: &Path,
        id: &str,
        reference: &str,
        how: &CommitOptions,
    ) -> Result<Descriptor> {
        let base = self.image_of(rec).await?;
        let overlay = rec.kind == oci_rs_layer::MountKind::Overlay;
        let mut opts = oci_rs_layer::DiffOptions::from_env();
        // The empty files the runtime made as targets of the per-container /etc binds.
        opts.mount_points = ["etc/hosts", "etc/hostname", "etc/resolv.conf"]
            .map(PathBuf::from)
            .to_vec();
        let store = self.layout.leased()?;
        let (layer, diff_id, _) = if overlay {
            oci_rs_layer::diff_to_store(
                &store,
                None,
                &dir.join("upper"),
                true,
                Compression::Gzip,
                &opts,
            )
            .await?
        } else {
            let lower = tempfile::tempdir_in(dir)?;
            self.apply_image(&base, lower.path()).await?;
            oci_rs_layer::diff_to_store(
                &store,
                Some(lower.path()),
                &dir.join("rootfs"),
                false,
                Compression::Gzip,
                &opts,
            )
            .await?
        };
        // The new image's own time (the base's was copied before), on its history line too.
        let mut b = ImageBuilder::from_image(&store, &base)
            .await?
            .created(&creation_time());
        if let Some(a) = &how.author {
            b = b.author(a);
        }
        for c in &how.changes {
            b = apply_change(b, c)?;
        }
        b.append_layer(layer, &diff_id, &format!("oci commit {id}"));
        b.annotate_last_history(how.message.as_deref(), how.author.as_deref());
        let m = b.build(&store).await?;
        let r = ImageReference::parse(reference)?;
        self.layout
            .tag(&store_name(&r), &m.descriptor(), Some(&r.to_string()))
            .await?;
        Ok(m.descriptor())
    }

    async fn apply_image(&self, m: &Manifest, dir: &Path) -> Result<()> {
        let img = m
            .as_image()
            .ok_or_else(|| anyhow!("{} is not an image", m.digest()))?;
        for layer in img.layers() {
            let blob = self.layout.blob(layer).await?;
            oci_rs_layer::apply(
                dir,
                blob,
                layer.media_type().as_ref(),
                &oci_rs_layer::ApplyOptions::default(),
            )
            .await?;
        }
        Ok(())
    }

    /// `export ID [-o FILE]`: the container's whole filesystem as one tar, into `output` (a
    /// regular file replaced atomically, a device, pipe or FIFO written to) or standard output.
    pub async fn export(&self, data_dir: &Path, id: &str, output: Option<&Path>) -> Result<()> {
        let (rec, dir) = Self::snapshot(data_dir, id)?;
        let snapshots = oci_rs_layer::Snapshotter::new(data_dir.join("snapshots"))?;
        // Held until the export ends (a rootless one's flattened view).
        let mut _view = None;
        let src = match rec.kind {
            // As root, the container's files are read where they are, its overlay mounted
            // again when it is not: streamed as walked, nothing staged.
            oci_rs_layer::MountKind::Overlay if rustix::process::geteuid().is_root() => {
                snapshots.open(&rec.id)?.rootfs
            }
            // Rootless, the overlay is mounted only in the container's namespaces: the image
            // and the changes are flattened into a view first.
            oci_rs_layer::MountKind::Overlay => {
                let view = snapshots.export_view(&rec.id)?;
                let base = self.image_of(&rec).await?;
                self.apply_image(&base, view.path()).await?;
                // The changes go from the upper directory into the view through a pipe.
                let (w, r) = tokio::io::duplex(1 << 20);
                let upper = dir.join("upper");
                let produce = async move {
                    let (_, mut w) = oci_rs_layer::diff_overlay(
                        &upper,
                        w,
                        &oci_rs_layer::DiffOptions::default(),
                    )
                    .await?;
                    tokio::io::AsyncWriteExt::shutdown(&mut w).await?;
                    Ok::<_, anyhow::Error>(())
                };
                let apply_opts = oci_rs_layer::ApplyOptions::default();
                let consume = oci_rs_layer::apply_tar(view.path(), r, &apply_opts);
                let (a, b) = tokio::join!(produce, consume);
                a?;
                b?;
                let path = view.path().to_path_buf();
                _view = Some(view);
                path
            }
            _ => dir.join("rootfs"),
        };
        let (out, sink): (_, Box<dyn tokio::io::AsyncWrite + Send + Unpin>) = match output {
            Some(path) => {
                let mut out = oci_rs_image::OutputFile::create(path)?;
                let f = out
                    .file()
                    .ok_or_else(|| anyhow!("{} is unusable", path.display()))?;
                // Large writes: each one is a hop to tokio's blocking pool.
                let f = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(f));
                (Some(out), Box::new(f))
            }
            None => (None, Box::new(stdout_sink()?)),
        };
        let (_, mut sink) =
            oci_rs_layer::export(&src, sink, &oci_rs_layer::DiffOptions::from_env()).await?;
        tokio::io::AsyncWriteExt::flush(&mut sink).await?;
        if let Some(out) = out {
            out.commit()?;
        }
        Ok(())
    }
}

/// `login REGISTRY`: checks the credentials against the registry (`GET /v2/` through its
/// challenge), then stores them in the docker `config.json` (`$DOCKER_CONFIG`, else
/// `~/.docker`), mode 0600, as `docker login` does. Returns the file written.
pub async fn login(
    registry: &str,
    username: &str,
    password: &str,
    insecure: &[String],
) -> Result<oci_rs_registry_client::StoredIn> {
    use oci_rs_registry_client::{Credential, StaticCredentials};
    let cred = Credential::Basic {
        username: username.to_owned(),
        password: password.to_owned(),
    };
    let mut b = Client::builder().credentials(StaticCredentials::new().with(registry, cred));
    for r in insecure {
        b = b.insecure_registry(r);
    }
    b.build()?
        .ping(registry)
        .await
        .with_context(|| format!("logging in to {registry}"))?;
    let dir = oci_rs_registry_client::docker_config_dir()
        .ok_or_else(|| anyhow!("neither DOCKER_CONFIG nor HOME is set"))?;
    Ok(oci_rs_registry_client::save_login(&dir, registry, username, password, None).await?)
}

/// `logout [REGISTRY]`: what `login` stored, removed; false when there was nothing.
pub async fn logout(registry: &str) -> Result<bool> {
    let dir = oci_rs_registry_client::docker_config_dir()
        .ok_or_else(|| anyhow!("neither DOCKER_CONFIG nor HOME is set"))?;
    Ok(oci_rs_registry_client::remove_login(&dir, registry, None).await?)
}

/// `layer apply DIR FILE`.
pub async fn apply_file(dir: &Path, file: &Path) -> Result<oci_rs_layer::ApplyReport> {
    let f = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    let tar = oci_rs_layer::decompress(f, None).await?;
    Ok(oci_rs_layer::apply_tar(dir, tar, &oci_rs_layer::ApplyOptions::default()).await?)
}

/// `layer diff LOWER UPPER -o FILE`: returns (compressed digest, DiffID).
pub async fn diff_file(
    lower: &Path,
    upper: &Path,
    output: &Path,
    compression: &str,
) -> Result<(String, String)> {
    let c = match compression {
        "gzip" => Compression::Gzip,
        "zstd" => Compression::Zstd,
        "none" => Compression::None,
        other => bail!("unknown compression {other:?} (gzip, zstd, none)"),
    };
    // The layer goes through a one-blob OCI layout next to the output, then is moved.
    let dir = tempfile::tempdir_in(
        output
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )?;
    let store = OciLayout::create(dir.path()).await?.with_fsync(false);
    let (desc, diff_id, _) = oci_rs_layer::diff_to_store(
        &store,
        Some(lower),
        upper,
        false,
        c,
        &oci_rs_layer::DiffOptions::from_env(),
    )
    .await?;
    let blob = store.blob_path(desc.digest())?;
    if oci_rs_image::OutputFile::streams_to(output) {
        let mut f = oci_rs_image::OutputFile::create(output)?
            .file()
            .ok_or_else(|| anyhow!("{} is unusable", output.display()))?;
        std::io::copy(&mut std::fs::File::open(&blob)?, &mut f)
            .with_context(|| format!("writing {}", output.display()))?;
    } else {
        std::fs::rename(&blob, output).with_context(|| format!("writing {}", output.display()))?;
    }
    Ok((desc.digest().to_string(), diff_id.to_string()))
}

/// The name an image has in the store: the full reference (`docker.io/library/busybox:latest`).
pub fn store_name(r: &ImageReference) -> String {
    match (r.tag(), r.digest()) {
        (Some(_), _) | (None, None) => {
            let t = r.tag().unwrap_or("latest");
            format!("{}:{t}", r.name())
        }
        (None, Some(d)) => format!("{}@{d}", r.name()),
    }
}

/// Standard output as the sink of an archive, refused when it is a terminal (as docker's
/// "cowardly refusing to save to a terminal").
fn stdout_sink() -> Result<tokio::io::BufWriter<tokio::io::Stdout>> {
    if rustix::termios::isatty(std::io::stdout()) {
        bail!("cowardly refusing to write an archive to a terminal: use -o FILE or redirect");
    }
    Ok(tokio::io::BufWriter::with_capacity(
        256 * 1024,
        tokio::io::stdout(),
    ))
}

fn stdin_is_regular() -> bool {
    rustix::fs::fstat(std::io::stdin()).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
    })
}

/// Copies standard input into a private temporary file under `data_dir`.
async fn spool_stdin(data_dir: &Path) -> Result<tempfile::NamedTempFile> {
    let tmp = tempfile::Builder::new()
        .prefix(".stdin-")
        .tempfile_in(data_dir)
        .with_context(|| format!("creating a temporary file in {}", data_dir.display()))?;
    let mut f = tokio::fs::File::from_std(tmp.reopen()?);
    tokio::io::copy(&mut tokio::io::stdin(), &mut f)
        .await
        .context("reading the archive from standard input")?;
    tokio::io::AsyncWriteExt::flush(&mut f).await?;
    Ok(tmp)
}

/// The body of an http(s) URL as a stream (for `import URL`).
async fn download(url: &str) -> Result<impl tokio::io::AsyncRead + Send + Unpin> {
    use futures_util::TryStreamExt;
    let resp = reqwest::get(url)
        .await
        .with_context(|| format!("fetching {url}"))?
        .error_for_status()
        .with_context(|| format!("fetching {url}"))?;
    let stream = resp.bytes_stream().map_err(std::io::Error::other);
    Ok(tokio_util::io::StreamReader::new(stream))
}

/// Applies one Dockerfile-style `--change` (`CMD`, `ENTRYPOINT`, `ENV`, `WORKDIR`, `USER`,
/// `LABEL`, `EXPOSE`).
pub fn apply_change(b: ImageBuilder, change: &str) -> Result<ImageBuilder> {
    let (verb, rest) = change
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| anyhow!("invalid change {change:?}: expected `VERB value`"))?;
    let rest = rest.trim();
    let args = || -> Result<Vec<String>> {
        if rest.starts_with('[') {
            serde_json::from_str(rest).with_context(|| format!("invalid JSON array in {change:?}"))
        } else {
            Ok(vec!["/bin/sh".into(), "-c".into(), rest.into()])
        }
    };
    let kv = || -> Result<(String, String)> {
        rest.split_once('=')
            .or_else(|| rest.split_once(' '))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
            .ok_or_else(|| anyhow!("invalid change {change:?}: expected KEY=VALUE"))
    };
    Ok(match verb.to_ascii_uppercase().as_str() {
        "CMD" => b.cmd(args()?),
        "ENTRYPOINT" => b.entrypoint(args()?),
        "ENV" => {
            let (k, v) = kv()?;
            b.env(&k, &v)
        }
        "LABEL" => {
            let (k, v) = kv()?;
            b.label(&k, &v)
        }
        "WORKDIR" => b.working_dir(rest),
        "USER" => b.user(rest),
        "EXPOSE" => b.expose(rest),
        other => bail!(
            "unsupported change {other:?} (CMD, ENTRYPOINT, ENV, LABEL, WORKDIR, USER, EXPOSE)"
        ),
    })
}

/// Progress bars per blob, drawn on stderr when it is a terminal.
#[derive(Clone, Default)]
struct Bars {
    multi: Arc<MultiProgress>,
    bars: Arc<Mutex<HashMap<String, ProgressBar>>>,
}

impl Bars {
    fn event(&self, e: &CopyEvent) {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        match e {
            CopyEvent::BlobStarted { digest, size } => {
                let pb = self.multi.add(ProgressBar::new(*size));
                pb.set_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                pb.set_prefix(short(digest.digest()).to_owned());
                bars.insert(digest.to_string(), pb);
            }
            CopyEvent::BlobProgress { digest, done, .. } => {
                if let Some(pb) = bars.get(&digest.to_string()) {
                    pb.set_position(*done);
                }
            }
            CopyEvent::BlobDone { digest, .. } => {
                if let Some(pb) = bars.remove(&digest.to_string()) {
                    pb.finish_and_clear();
                }
                tracing::info!(%digest, "blob done");
            }
            CopyEvent::BlobSkipped { digest, .. } | CopyEvent::BlobMounted { digest, .. } => {
                tracing::info!(%digest, "blob already there");
            }
            // Unpacking while pulling: a second bar per layer, as docker's "Extracting".
            CopyEvent::LayerExtracting { digest, done, size } => {
                let key = format!("x{digest}");
                let pb = bars.entry(key).or_insert_with(|| {
                    let pb = self.multi.add(ProgressBar::new(*size));
                    pb.set_style(
                        ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                    );
                    pb.set_prefix(format!("{} extracting", short(digest.digest())));
                    pb
                });
                pb.set_position(*done);
            }
            CopyEvent::LayerExtracted { digest } => {
                if let Some(pb) = bars.remove(&format!("x{digest}")) {
                    pb.finish_and_clear();
                }
                tracing::info!(%digest, "layer extracted");
            }
            _ => {}
        }
    }
}

/// The first 12 characters of a hex digest, as docker shows IDs.
pub fn short(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}

//! The module of [`ImageStore`], whose docs say what it is for (the module is private).

use crate::error::{Error, Result};
use crate::snapshot::{SnapshotInfo, Snapshotter};
use oci_rs_image::oci_spec::image::{Descriptor, Digest, ImageConfiguration, ImageIndex};
use oci_rs_image::{
    copy, copy_without_finish, ArchiveSource, ArchiveWriter, Compression, CopyEvent, CopyOptions,
    ImageBuilder, ImageDestination, ImageInspect, ImageReference, ImageSource, Manifest,
    ManifestRef, OciLayout, PlatformFilter, PlatformSpec, ReferenceStore, Remote,
};
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The local image store of a docker-like program: an OCI layout under `DATA/images` whose
/// names are full references (`docker.io/library/busybox:latest`, see [`store_name`]), the
/// unpacked layers and containers' filesystems under `DATA/snapshots` ([`Snapshotter`]),
/// and the build cache's entries under `DATA/build-cache`. It is what `docker pull`, `push`,
/// `images`, `tag`, `rmi`, `history`, `inspect`, `image prune`, `save`, `load`, `import`,
/// `commit` and `export` work on; pulls and pushes go through a [`Remote`] (a registry
/// client), so this crate holds no registry code.
///
/// Images are found as users name them ([`ImageStore::find`]): a reference, docker's image
/// id (the config digest) or a unique prefix of one. Removal and pruning never take what a
/// container's snapshot was made from, nor the build cache's layers; every write goes
/// through a lease, so a concurrent gc in another process keeps what it has not tagged yet.
///
/// ```no_run
/// # async fn demo(registry: &dyn oci_rs_image::Remote) -> Result<(), Box<dyn std::error::Error>> {
/// use oci_rs_image::CopyOptions;
/// use oci_rs_layer::ImageStore;
///
/// let store = ImageStore::open("/var/lib/my-tool".as_ref()).await?;
/// // Pulled and unpacked in one pass (what running it needs next).
/// let pulled = store
///     .pull(registry, "busybox:latest", &CopyOptions::default(), true)
///     .await?;
/// println!("{}", pulled.lines().join("\n"));
/// store.tag("busybox", "localhost:5000/tools/busybox:1").await?;
/// store.push(registry, "localhost:5000/tools/busybox:1", &CopyOptions::default()).await?;
/// for row in store.list().await? {
///     println!("{}:{} {}", row.repository, row.tag, row.size);
/// }
/// # Ok(())
/// # }
/// ```
pub struct ImageStore {
    layout: OciLayout,
    snapshots: Snapshotter,
    data: PathBuf,
    short_names: Option<ShortNames>,
    observer: Option<ImageObserver>,
}

/// What the store did to an image, as docker's image events tell it: given to the
/// observer of [`ImageStore::with_observer`] once done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageChange {
    /// docker's action: `pull`, `push`, `tag`, `untag`, `delete`, `import`, `load`, `save`.
    pub action: &'static str,
    /// The image: its name for `pull`, `push` and `save` (as docker's events carry it),
    /// else its id (`sha256:…`).
    pub id: String,
    /// The name involved (the new one of a `tag`), when there is one.
    pub name: Option<String>,
}

/// An observer of what an [`ImageStore`] does to images (a journal of docker's events).
pub type ImageObserver = Arc<dyn Fn(&ImageChange) + Send + Sync>;

/// Every full name a short one may stand for, in the order a pull tries them (podman's
/// search registries: [`Remote::candidates`]); see [`ImageStore::with_short_names`].
pub type ShortNames = Arc<dyn Fn(&str) -> Vec<String> + Send + Sync>;

/// One image name of the store, as `docker images` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageRow {
    /// `registry/repository` in docker's short form.
    pub repository: String,
    /// The tag (`<none>` for a name by digest).
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
    /// Each layer's digest and unpacked size, bottom first (what `system df` compares to
    /// tell the bytes images share).
    pub layers: Vec<(String, u64)>,
}

/// Whether a pull's failure lets the next search registry be tried, as podman does: any
/// failure to get the image (not there, not ours to see, a registry down), but not content
/// that failed its digest.
fn absent(e: &Error) -> bool {
    match e {
        Error::Transfer { source, .. } => absent(source),
        Error::Image(i) => !i.is_integrity(),
        _ => true,
    }
}

/// docker's `images` selection: `REPO[:TAG]` patterns (an argument, `--filter reference=`)
/// and `--filter dangling=BOOL`. A pattern matches the familiar `REPO:TAG`, or `REPO` alone,
/// with `*` for any run of characters but `/` (docker's `path.Match`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFilter {
    patterns: Vec<String>,
    dangling: Option<bool>,
}

impl ImageFilter {
    /// The filter of `images [REFERENCE] [--filter K=V]...`.
    pub fn parse(reference: Option<&str>, filters: &[String]) -> Result<Self> {
        let mut f = Self {
            patterns: reference.map(str::to_owned).into_iter().collect(),
            dangling: None,
        };
        for term in filters {
            match term.split_once('=') {
                Some(("dangling", "true" | "1")) => f.dangling = Some(true),
                Some(("dangling", "false" | "0")) => f.dangling = Some(false),
                Some(("reference", v)) => f.patterns.push(v.to_owned()),
                _ => return Err(Error::InvalidFilter(term.clone())),
            }
        }
        Ok(f)
    }

    /// Whether `row` is listed.
    pub fn matches(&self, row: &ImageRow) -> bool {
        // A `*` never takes a `/`, so the `/`s meet one to one and each part matches alone.
        let glob = |pattern: &str, text: &str| {
            let (p, t): (Vec<&str>, Vec<&str>) =
                (pattern.split('/').collect(), text.split('/').collect());
            p.len() == t.len()
                && p.iter().zip(&t).all(|(p, t)| {
                    let (p, t): (Vec<char>, Vec<char>) = (p.chars().collect(), t.chars().collect());
                    oci_rs_image::wildcard(&p, &t, |c| *c == '*', |a, b| a == b)
                })
        };
        self.dangling.is_none_or(|d| d == (row.tag == "<none>"))
            && (self.patterns.is_empty()
                || self.patterns.iter().any(|p| {
                    glob(p, &row.repository) || glob(p, &format!("{}:{}", row.repository, row.tag))
                }))
    }
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
                hex.get(..12).unwrap_or(hex),
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

/// What [`ImageStore::commit`] is told besides the container and the name.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// The history entry's comment (`-m`).
    pub message: Option<String>,
    /// The image's and the history entry's author (`-a`).
    pub author: Option<String>,
    /// Dockerfile-style changes (`-c`: `CMD ["sh"]`, `ENV K=V`, ...; see [`apply_change`]).
    pub changes: Vec<String>,
    /// The history entry's `created_by` (default: `oci commit ID`).
    pub created_by: Option<String>,
    /// The container's environment (`K=V`), each set over the image's before `changes`:
    /// docker commits a container's `Config`, run options included.
    pub env: Vec<String>,
    /// The command the container was run with (`Cmd`), when it was given one.
    pub cmd: Option<Vec<String>>,
    /// Its `--entrypoint`, when given (`[""]`: none).
    pub entrypoint: Option<Vec<String>>,
    /// Its `--workdir`, when given.
    pub working_dir: Option<String>,
    /// Its `--user`, when given.
    pub user: Option<String>,
}

/// One history entry of an image, as `docker history` lists them (newest first).
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

/// What [`ImageStore::find`] found.
#[derive(Debug, Clone)]
pub struct Found {
    /// The image's descriptor in the store.
    pub desc: Descriptor,
    /// The reference it was named by (for an id: its first name; `None` for an untagged
    /// image, docker's dangling one).
    pub reference: Option<ImageReference>,
    /// Every store name that points at it.
    pub names: Vec<String>,
    /// Named by its id (or a prefix of it), not by a reference.
    pub by_id: bool,
}

/// What [`ImageStore::remove`] (`rmi`) or [`ImageStore::prune`] removed, as docker reports
/// it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    /// The names removed, in their familiar form (docker's `Untagged:` lines).
    pub untagged: Vec<String>,
    /// The ids of the images removed altogether (docker's `Deleted:` lines).
    pub deleted: Vec<String>,
    /// The bytes freed.
    pub bytes_freed: u64,
}

/// One image a load brought in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Loaded {
    /// Named by the archive (docker's `Loaded image: NAME`), in its familiar form.
    Named(String),
    /// Not named (docker's `Loaded image ID: ID`).
    Id(String),
}

/// What a `run` starts from: an image manifest of one platform, its configuration and
/// configuration digest (docker's image id).
#[derive(Debug, Clone)]
pub struct RunnableImage {
    /// The image manifest.
    pub manifest: Manifest,
    /// Its configuration.
    pub config: ImageConfiguration,
    /// The configuration's digest.
    pub config_digest: Digest,
    /// What docker's config adds that `config` does not carry: health check and shell.
    pub extras: oci_rs_image::DockerExtras,
}

impl RunnableImage {
    /// The image's `os/arch` when its architecture is not the host's (what docker warns of
    /// when it runs one without `--platform`); `None` for the host's.
    pub fn foreign_platform(&self) -> Option<String> {
        let arch = self.config.architecture().to_string();
        (arch != PlatformSpec::host().architecture).then(|| format!("{}/{arch}", self.config.os()))
    }

    /// The image `manifest` (named `name` in messages) stands for in `source`: for an
    /// index, the manifest of `platform` (the host's when `None`); then its configuration.
    pub async fn of(
        source: &dyn ImageSource,
        manifest: Manifest,
        platform: Option<&PlatformSpec>,
        name: &str,
    ) -> Result<Self> {
        let manifest = match manifest.as_index() {
            Some(index) => {
                let p = platform.cloned().unwrap_or_else(PlatformSpec::host);
                let d = oci_rs_image::select_platform(index, &p)?;
                source
                    .manifest(&ManifestRef::Digest(d.digest().clone()))
                    .await?
            }
            None => manifest,
        };
        let img = manifest.as_image().ok_or_else(|| Error::WrongKind {
            image: name.to_owned(),
            expected: "an image",
        })?;
        let bytes = oci_rs_image::read_small_blob(
            source,
            img.config(),
            oci_rs_image::MAX_CONFIG_SIZE,
            "image config",
        )
        .await?;
        let config =
            serde_json::from_slice(&bytes).map_err(|source| oci_rs_image::Error::InvalidJson {
                what: "image config",
                source,
            })?;
        let extras = oci_rs_image::DockerExtras::of_config_json(&bytes)?;
        let config_digest = img.config().digest().clone();
        Ok(Self {
            manifest,
            config,
            config_digest,
            extras,
        })
    }
}

/// When `run` pulls its image: docker's `--pull missing|always|never`.
///
/// ```
/// use oci_rs_layer::PullPolicy;
/// assert_eq!("never".parse::<PullPolicy>().unwrap(), PullPolicy::Never);
/// assert!("sometimes".parse::<PullPolicy>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Only an image that is not here (docker's default).
    #[default]
    Missing,
    /// Before every run.
    Always,
    /// Never: an image that is not here is an error.
    Never,
}

impl std::str::FromStr for PullPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "missing" => Ok(Self::Missing),
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            other => Err(Error::InvalidPullPolicy(other.to_owned())),
        }
    }
}

/// The layers of every build cache entry's image, which gc keeps: a rebuild finds them.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct CacheEntry {
    /// The image configuration at that step.
    pub config: serde_json::Value,
    /// The layers at that step.
    pub layers: Vec<Descriptor>,
}

/// The name an image has in the store: the full reference (`docker.io/library/busybox:latest`,
/// or `NAME@DIGEST` for a reference by digest alone).
pub fn store_name(r: &ImageReference) -> String {
    match (r.tag(), r.digest()) {
        (Some(_), _) | (None, None) => {
            let t = r.tag().unwrap_or("latest");
            format!("{}:{t}", r.name())
        }
        (None, Some(d)) => format!("{}@{d}", r.name()),
    }
}

/// Now, as RFC 3339, for a new image's `created`; `SOURCE_DATE_EPOCH` when set, so that
/// builds, commits and imports can be reproducible.
pub fn creation_time() -> String {
    let ns = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or_else(oci_rs_image::now_ns, |s| s.saturating_mul(1_000_000_000));
    oci_rs_image::rfc3339(ns)
}

/// Applies one Dockerfile-style change (`docker commit -c`, `import -c`): `CMD`,
/// `ENTRYPOINT` (JSON array or shell form), `ENV`, `LABEL` (`K=V` or `K V`), `WORKDIR`,
/// `USER`, `EXPOSE`.
pub fn apply_change(b: ImageBuilder, change: &str) -> Result<ImageBuilder> {
    let bad = |reason: &str| Error::InvalidChange {
        change: change.to_owned(),
        reason: reason.to_owned(),
    };
    let (verb, rest) = change
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| bad("expected `VERB value`"))?;
    let rest = rest.trim();
    let args = || -> Result<Vec<String>> {
        if rest.starts_with('[') {
            serde_json::from_str(rest).map_err(|_| bad("invalid JSON array"))
        } else {
            Ok(vec!["/bin/sh".into(), "-c".into(), rest.into()])
        }
    };
    let kv = || -> Result<(String, String)> {
        rest.split_once('=')
            .or_else(|| rest.split_once(' '))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
            .ok_or_else(|| bad("expected KEY=VALUE"))
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
        _ => {
            return Err(bad(
                "unsupported instruction (CMD, ENTRYPOINT, ENV, LABEL, WORKDIR, USER, EXPOSE)",
            ))
        }
    })
}

/// The platform an image's configuration says, as a spec (for messages) and as an OCI
/// platform (for [`PlatformSpec::matches`]).
fn config_platform(c: &ImageConfiguration) -> (PlatformSpec, oci_spec::image::Platform) {
    let spec = PlatformSpec::new(
        &c.os().to_string(),
        &c.architecture().to_string(),
        c.variant().as_deref(),
    );
    let mut p = oci_spec::image::Platform::default();
    p.set_os(c.os().clone());
    p.set_architecture(c.architecture().clone());
    p.set_variant(c.variant().clone());
    (spec, p)
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

impl ImageStore {
    /// Opens (creating) the store of data directory `data`. The data directory is private
    /// to its owner (0700, tightened when an existing one is more open): it holds unpacked
    /// layers, whose setuid binaries and device nodes no other local user may reach.
    pub async fn open(data: &Path) -> Result<Self> {
        crate::private_dir(data)?;
        let layout = OciLayout::create(data.join("images")).await?;
        Ok(Self {
            layout,
            snapshots: Snapshotter::new(data.join("snapshots"))?,
            data: data.to_owned(),
            short_names: None,
            observer: None,
        })
    }

    /// This store, telling `observer` of each image it pulls, pushes, tags, untags,
    /// deletes, imports, loads and saves ([`ImageChange`]), after the change.
    pub fn with_observer(mut self, observer: ImageObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Tells the observer, if any, of `action` on image `id`.
    fn notify(&self, action: &'static str, id: &str, name: Option<&str>) {
        if let Some(o) = &self.observer {
            o(&ImageChange {
                action,
                id: id.to_owned(),
                name: name.map(str::to_owned),
            });
        }
    }

    /// This store, finding a short name that names nothing here under each name
    /// `short_names` gives for it, in order, as podman finds an image pulled from one of
    /// its search registries (`team/app` as `quay.io/team/app:latest`). Without it a short
    /// name is Docker Hub's, as docker looks it up.
    pub fn with_short_names(mut self, short_names: ShortNames) -> Self {
        self.short_names = Some(short_names);
        self
    }

    /// The OCI layout holding every image.
    pub fn layout(&self) -> &OciLayout {
        &self.layout
    }

    /// The unpacked layers and containers' filesystems.
    pub fn snapshots(&self) -> &Snapshotter {
        &self.snapshots
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Pulls `reference` from `remote` into the store, named by its full reference, with
    /// `opts`' platform filter, concurrency and progress (its tag is the store's). With
    /// `unpack`, the layers are unpacked into the snapshots as they arrive
    /// ([`pull_and_unpack`](crate::pull_and_unpack): what running the image needs next, each
    /// blob read once).
    ///
    /// A short name is tried as each name the remote's configuration gives it
    /// ([`Remote::candidates`]: each search registry in turn), until one is found; the
    /// error of the first when none is.
    pub async fn pull(
        &self,
        remote: &dyn Remote,
        reference: &str,
        opts: &CopyOptions,
        unpack: bool,
    ) -> Result<PullReport> {
        let candidates = remote.candidates(reference);
        let mut first_error = None;
        for (i, name) in candidates.iter().enumerate() {
            match self.pull_one(remote, name, opts, unpack).await {
                Err(e) if i + 1 < candidates.len() && absent(&e) => {
                    tracing::info!(reference = %name, error = %oci_rs_image::chain(&e), "not there; the next search registry");
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(first_error.unwrap_or(e)),
                Ok(r) => {
                    let familiar = ImageReference::parse(name).map(|r| r.familiar());
                    self.notify("pull", familiar.as_deref().unwrap_or(name), None);
                    return Ok(r);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| Error::NoSuchImage(reference.to_owned())))
    }

    async fn pull_one(
        &self,
        remote: &dyn Remote,
        reference: &str,
        opts: &CopyOptions,
        unpack: bool,
    ) -> Result<PullReport> {
        let r = ImageReference::parse(reference)?;
        let src = remote.source(&r).await?;
        let what = r.manifest_ref();
        let name = store_name(&r);
        let before = self.layout.resolve(&name).await.ok();
        // Leased: a gc in another process keeps what this pull writes before it tags.
        let dst = self.layout.leased()?;
        let fetched: Arc<Mutex<HashSet<String>>> = Arc::default();
        let seen = fetched.clone();
        let outer = opts.progress.clone();
        let mut opts = opts.clone().tag(name).progress(move |e| {
            if let CopyEvent::BlobDone { digest, .. } = e {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(digest.to_string());
            }
            if let Some(p) = &outer {
                p(e);
            }
        });
        opts.concurrency = opts.concurrency.max(1);
        let copied = if unpack {
            crate::pull_and_unpack(&*src, &dst, &what, &opts, &self.snapshots)
                .await
                .map(|r| r.copy)
        } else {
            copy(&*src, &dst, &what, &opts).await.map_err(Error::from)
        };
        let report = copied.map_err(|e| Error::Transfer {
            what: "pull",
            reference: reference.to_owned(),
            source: Box::new(e),
        })?;
        let fetched = fetched.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut layers: Vec<(String, bool)> = Vec::new();
        for m in self.image_manifests_of(report.manifest.digest()).await? {
            for l in m.as_image().map(|i| i.layers().clone()).unwrap_or_default() {
                let d = l.digest().to_string();
                if !layers.iter().any(|(x, _)| *x == d) {
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

    /// The image manifests `digest` stands for: itself, or each entry of an index that is
    /// in the store.
    async fn image_manifests_of(&self, digest: &Digest) -> Result<Vec<Manifest>> {
        let top = self.manifest(digest).await?;
        let Some(index) = top.as_index() else {
            return Ok(vec![top]);
        };
        let mut out = Vec::new();
        for d in index.manifests() {
            if let Ok(m) = self.manifest(d.digest()).await {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// What the store names `r`, by its store name only (no id).
    async fn resolve_named(&self, r: &ImageReference) -> Result<Descriptor> {
        self.layout
            .resolve(&store_name(r))
            .await
            .map_err(|_| Error::NoSuchImage(r.familiar()))
    }

    async fn manifest(&self, digest: &Digest) -> Result<Manifest> {
        Ok(self
            .layout
            .manifest(&ManifestRef::Digest(digest.clone()))
            .await?)
    }

    /// Pushes what the store names `reference` to its registry through `remote`, every
    /// platform of an index (`opts`' concurrency and progress; its platform filter and tag
    /// are the push's).
    pub async fn push(
        &self,
        remote: &dyn Remote,
        reference: &str,
        opts: &CopyOptions,
    ) -> Result<Descriptor> {
        let r = ImageReference::parse(reference)?;
        let desc = self.resolve_named(&r).await?;
        let dst = remote.destination(&r).await?;
        let mut opts = opts.clone().platforms(PlatformFilter::All);
        opts.tag = r.tag().map(str::to_owned);
        let report = copy(
            &self.layout,
            &*dst,
            &ManifestRef::Digest(desc.digest().clone()),
            &opts,
        )
        .await
        .map_err(|e| Error::Transfer {
            what: "push",
            reference: reference.to_owned(),
            source: Box::new(e.into()),
        })?;
        self.notify("push", &r.familiar(), None);
        Ok(report.manifest)
    }

    /// The image `name` for running: found in the store ([`ImageStore::find`]) or, when it
    /// is not there and a `remote` is given, pulled and unpacked; then the manifest of
    /// `platform` (the host's when `None`) and its configuration. `on_pull` is called before
    /// a pull (docker's "Unable to find image ... locally").
    pub async fn image_for_run(
        &self,
        name: &str,
        platform: Option<&PlatformSpec>,
        remote: Option<(&dyn Remote, &CopyOptions)>,
        on_pull: impl FnOnce(&ImageReference),
    ) -> Result<RunnableImage> {
        self.image_for_run_with(name, platform, remote, PullPolicy::Missing, on_pull)
            .await
    }

    /// [`ImageStore::image_for_run`] with docker's `--pull` policy: `Missing` pulls only an
    /// image that is not here, `Always` pulls first whatever is here (and fails with the
    /// pull), `Never` does not pull (an image not here is [`Error::NoSuchImage`]).
    pub async fn image_for_run_with(
        &self,
        name: &str,
        platform: Option<&PlatformSpec>,
        remote: Option<(&dyn Remote, &CopyOptions)>,
        policy: PullPolicy,
        on_pull: impl FnOnce(&ImageReference),
    ) -> Result<RunnableImage> {
        let mut on_pull = Some(on_pull);
        let remote = match policy {
            PullPolicy::Never => None,
            _ => remote,
        };
        let found = match (policy, remote) {
            (PullPolicy::Always, Some((remote, opts))) => {
                let mut opts = opts.clone();
                if let Some(p) = platform {
                    opts.platforms = PlatformFilter::One(p.clone());
                }
                Some(self.pull(remote, name, &opts, true).await?.manifest)
            }
            _ => self.find_opt(name).await?.map(|f| f.desc),
        };
        let desc = match found {
            Some(d) => d,
            None => {
                let Some((remote, opts)) = remote else {
                    return Err(Error::NoSuchImage(name.to_owned()));
                };
                // A short name as the remote resolves it may be here already (pulled from
                // any of its search registries).
                let qualified = remote.qualify(name);
                let mut here = None;
                for c in remote.candidates(name) {
                    if c != name {
                        here = self.find_opt(&c).await?;
                        if here.is_some() {
                            break;
                        }
                    }
                }
                match here {
                    Some(f) => f.desc,
                    None => {
                        if let Some(f) = on_pull.take() {
                            f(&ImageReference::parse(&qualified)?);
                        }
                        let mut opts = opts.clone();
                        if let Some(p) = platform {
                            opts.platforms = PlatformFilter::One(p.clone());
                        }
                        self.pull(remote, name, &opts, true).await?.manifest
                    }
                }
            }
        };
        let m = self.manifest(desc.digest()).await?;
        let run = RunnableImage::of(&self.layout, m, platform, name).await?;
        let Some(wanted) = platform else {
            return Ok(run);
        };
        // The name may stand for another platform's image here (a pull for that platform
        // tagged it): fetch the one asked for, as docker does, rather than run the other.
        let (found, found_platform) = config_platform(&run.config);
        if wanted.matches(&found_platform) {
            return Ok(run);
        }
        let Some((remote, opts)) = remote else {
            return Err(Error::WrongPlatform {
                image: name.to_owned(),
                wanted: wanted.to_string(),
                found: found.to_string(),
            });
        };
        if let Some(f) = on_pull.take() {
            f(&ImageReference::parse(name)?);
        }
        let mut opts = opts.clone();
        opts.platforms = PlatformFilter::One(wanted.clone());
        let desc = self.pull(remote, name, &opts, true).await?.manifest;
        let m = self.manifest(desc.digest()).await?;
        let run = RunnableImage::of(&self.layout, m, platform, name).await?;
        // The registry has only the other platform's (a single-platform image): refused,
        // as docker refuses it, rather than run what was not asked for.
        let (found, got) = config_platform(&run.config);
        if !wanted.matches(&got) {
            return Err(Error::WrongPlatform {
                image: name.to_owned(),
                wanted: wanted.to_string(),
                found: found.to_string(),
            });
        }
        Ok(run)
    }

    /// An image as a user names it: a reference in the store, else docker's image id (the
    /// config digest, `sha256:` optional) or a unique prefix of one. Returns its descriptor,
    /// the reference it was found by (the first name of an image found by id) and every
    /// store name that points at it. Two images sharing the prefix: an error naming both.
    pub async fn find(&self, name: &str) -> Result<Found> {
        // Named as docker names a missing image: with the tag a bare name stands for.
        let missing = || match ImageReference::parse(name) {
            Ok(r) if r.tag().is_none() && r.digest().is_none() => format!("{name}:latest"),
            _ => name.to_owned(),
        };
        self.find_opt(name)
            .await?
            .ok_or_else(|| Error::NoSuchImage(missing()))
    }

    /// [`ImageStore::find`], with `None` for an image that is not there (an ambiguous id
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
        let mut matches: Vec<(String, Descriptor, Option<String>)> = Vec::new();
        if by_ref.is_none() && looks_like_id {
            let named = ReferenceStore::list(&self.layout)
                .await?
                .into_iter()
                .map(|(store, desc)| (Some(store), desc));
            let untagged = self.untagged().await?.into_iter().map(|d| (None, d));
            for (store, desc) in named.chain(untagged).collect::<Vec<_>>() {
                // An entry whose manifest is gone names nothing to find by id.
                let Ok(m) = self.manifest(desc.digest()).await else {
                    continue;
                };
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
        let by_ref = match (by_ref, &self.short_names) {
            (None, Some(candidates)) if matches.is_empty() => {
                let mut found = None;
                for c in candidates(name).iter().filter(|c| *c != name) {
                    let Ok(r) = ImageReference::parse(c) else {
                        continue;
                    };
                    if let Ok(d) = self.layout.resolve(&store_name(&r)).await {
                        found = Some((d, r));
                        break;
                    }
                }
                found
            }
            (by_ref, _) => by_ref,
        };
        let (desc, reference) = match by_ref {
            Some((d, r)) => (d, Some(r)),
            None => {
                let ids: BTreeSet<&str> = matches.iter().map(|m| m.0.as_str()).collect();
                match ids.len() {
                    0 => return Ok(None),
                    1 => {}
                    _ => {
                        return Err(Error::AmbiguousImage {
                            prefix: name.to_owned(),
                            matches: ids.iter().map(|i| short(i)).collect::<Vec<_>>().join(", "),
                        })
                    }
                }
                let (_, d, store) = &matches[0];
                let reference = match store {
                    Some(s) => Some(ImageReference::parse(s)?),
                    None => None,
                };
                (d.clone(), reference)
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

    /// The history of image `name`, newest first, each entry that made a layer with that
    /// layer's size. A config without history (a foreign tool's) gives one row per layer.
    pub async fn history(&self, name: &str) -> Result<Vec<HistoryRow>> {
        let found = self.find(name).await?;
        let m = self.manifest(found.desc.digest()).await?;
        let m = self.for_host(m).await?;
        let img = m.as_image().ok_or_else(|| Error::WrongKind {
            image: name.to_owned(),
            expected: "an image",
        })?;
        let config = oci_rs_image::read_config(&self.layout, img.config()).await?;
        let time = |t: &Option<String>| t.as_deref().and_then(oci_rs_image::parse_rfc3339);
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

    /// The snapshots of every container (what each was made from).
    fn containers(&self) -> Result<Vec<SnapshotInfo>> {
        self.snapshots.list()
    }

    /// Removes unused images: without `all`, the untagged ones (docker's dangling images)
    /// no container was made from; with `all`, every image no container was made from loses
    /// its names first. Then what no name reaches goes (gc).
    pub async fn prune(&self, all: bool) -> Result<Removed> {
        let containers = self.containers()?;
        let used: BTreeSet<String> = containers.iter().map(|c| c.image.clone()).collect();
        let mut pruned = Removed::default();
        if all {
            let mut gone = Vec::new();
            for (name, desc) in ReferenceStore::list(&self.layout).await? {
                if !self.in_use(&desc, &used).await? {
                    let id = self.image_id(&desc).await?;
                    let untagged = self.untag(name).await?;
                    self.notify("untag", &id, Some(&untagged));
                    pruned.untagged.push(untagged);
                    if !gone.contains(&id) {
                        gone.push(id);
                    }
                }
            }
            // An image whose last name went is deleted (docker's `deleted:` line); one that
            // another name still has is not.
            let mut left = BTreeSet::new();
            for (_, d) in ReferenceStore::list(&self.layout).await? {
                if let Ok(id) = self.image_id(&d).await {
                    left.insert(id);
                }
            }
            for id in gone {
                if !left.contains(&id) {
                    self.notify("delete", &id, None);
                    pruned.deleted.push(id);
                }
            }
        }
        for desc in self.untagged().await? {
            // One whose manifest is gone is no one's: it goes (its digest as its id).
            if !self.in_use(&desc, &used).await.unwrap_or(false) {
                let id = (self.image_id(&desc).await).unwrap_or_else(|_| desc.digest().to_string());
                self.forget_untagged(desc.digest()).await?;
                if !pruned.deleted.contains(&id) {
                    self.notify("delete", &id, None);
                    pruned.deleted.push(id);
                }
            }
        }
        pruned.bytes_freed = self.gc_keeping_containers(&containers).await?;
        Ok(pruned)
    }

    /// Whether a container was made from the image `desc` names (`used`: the images of the
    /// containers' snapshots), or from its host platform's image.
    async fn in_use(&self, desc: &Descriptor, used: &BTreeSet<String>) -> Result<bool> {
        if used.contains(&desc.digest().to_string()) {
            return Ok(true);
        }
        let top = self.manifest(desc.digest()).await?;
        let host = self.for_host(top).await.map(|m| m.digest().to_string());
        Ok(host.is_ok_and(|h| used.contains(&h)))
    }

    /// Removes store names `names` of the image `desc` names and keeps the image untagged,
    /// in one change of the index; their familiar forms.
    async fn untag_keeping(&self, names: &[String], desc: &Descriptor) -> Result<Vec<String>> {
        let (names, mut kept) = (names.to_vec(), desc.clone());
        kept.set_annotations(None);
        let gone = names.clone();
        self.layout
            .update_index(move |index| {
                let mut entries: Vec<Descriptor> = index
                    .manifests()
                    .iter()
                    .filter(|d| {
                        !oci_rs_image::ref_name(d).is_some_and(|n| names.iter().any(|x| x == n))
                    })
                    .cloned()
                    .collect();
                if !entries.iter().any(|d| d.digest() == kept.digest()) {
                    entries.push(kept);
                }
                index.set_manifests(entries);
                Ok(((), true))
            })
            .await?;
        Ok(gone
            .into_iter()
            .map(|n| ImageReference::parse(&n).map(|r| r.familiar()).unwrap_or(n))
            .collect())
    }

    /// Removes store name `name`; its familiar form.
    async fn untag(&self, name: String) -> Result<String> {
        self.layout.remove(&name).await?;
        Ok(ImageReference::parse(&name)
            .map(|r| r.familiar())
            .unwrap_or(name))
    }

    /// Removes every blob no name reaches, keeping what containers were made from and the
    /// build cache's layers; the bytes freed.
    pub async fn gc(&self) -> Result<u64> {
        let containers = self.containers()?;
        self.gc_keeping_containers(&containers).await
    }

    /// gc of what no name reaches, keeping what `containers` were made from (tagged or
    /// not) and the build cache; the bytes freed.
    async fn gc_keeping_containers(&self, containers: &[SnapshotInfo]) -> Result<u64> {
        let mut roots = Vec::new();
        for c in containers {
            let Ok(d) = oci_rs_image::parse_digest(&c.image) else {
                continue;
            };
            if let Ok(m) = self.manifest(&d).await {
                roots.push(m.descriptor());
            }
        }
        roots.extend(self.cache_roots());
        Ok(self.layout.gc_keeping(&roots).await?.bytes_freed)
    }

    /// The build cache's directory (`DATA/build-cache`).
    pub fn cache_dir(&self) -> PathBuf {
        self.data.join("build-cache")
    }

    /// The layers every build cache entry names: what gc keeps.
    pub fn cache_roots(&self) -> Vec<Descriptor> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.cache_dir()) else {
            return out;
        };
        for e in rd.flatten() {
            let Ok(bytes) = std::fs::read(e.path()) else {
                continue;
            };
            if let Ok(entry) = serde_json::from_slice::<CacheEntry>(&bytes) {
                out.extend(entry.layers);
            }
        }
        out
    }

    /// The build cache entry `key`, when there is one that parses.
    pub fn cache_get(&self, key: &str) -> Option<CacheEntry> {
        let bytes = std::fs::read(self.cache_dir().join(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes build cache entry `key` by rename, so a reader sees it whole or not at all
    /// (concurrent builds share the directory). The temporary file has a random name: two
    /// stores in one process (two builds on two threads) write the same key at once.
    pub fn cache_put(&self, key: &str, entry: &CacheEntry) -> Result<()> {
        let dir = self.cache_dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::fs("mkdir", &dir, e))?;
        let target = dir.join(key);
        let bytes = serde_json::to_vec(entry).map_err(|e| Error::fs("encode", &target, e))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{key}."))
            .tempfile_in(&dir)
            .map_err(|e| Error::fs("create", &dir, e))?;
        std::io::Write::write_all(&mut tmp, &bytes)
            .map_err(|e| Error::fs("write", tmp.path(), e))?;
        tmp.persist(&target)
            .map_err(|e| Error::fs("rename", &target, e.error))?;
        Ok(())
    }

    /// Removes every build cache entry and every `RUN --mount=type=cache` directory (kept
    /// beside the entries, in `build-cache-mounts`); how many.
    pub fn prune_cache(&self) -> Result<usize> {
        let mounts = self.cache_dir().with_file_name("build-cache-mounts");
        let mut gone = 0;
        if let Ok(rd) = std::fs::read_dir(&mounts) {
            for e in rd.flatten() {
                let p = e.path();
                let removed = if e.file_type().is_ok_and(|t| t.is_dir()) {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                if removed.is_ok() && e.file_type().is_ok_and(|t| t.is_dir()) {
                    gone += 1;
                }
            }
        }
        self.prune_entries().map(|n| n + gone)
    }

    fn prune_entries(&self) -> Result<usize> {
        let dir = self.cache_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::fs("read", &dir, e)),
        };
        let mut n = 0;
        for e in rd.flatten() {
            if std::fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The manifest list `desc` (named `r` in messages).
    async fn read_list(&self, desc: &Descriptor, r: &ImageReference) -> Result<ImageIndex> {
        let m = self.manifest(desc.digest()).await?;
        m.as_index().cloned().ok_or_else(|| Error::WrongKind {
            image: r.familiar(),
            expected: "a manifest list",
        })
    }

    /// The image manifests image `name` (found as [`ImageStore::find`] finds it) stands for:
    /// itself, or each entry of an index.
    async fn image_manifests(&self, name: &str) -> Result<Vec<Manifest>> {
        let desc = self.find(name).await?.desc;
        let m = self.manifest(desc.digest()).await?;
        match m.as_index() {
            None => Ok(vec![m]),
            Some(index) => {
                let mut out = Vec::new();
                for d in index.manifests() {
                    out.push(self.manifest(d.digest()).await?);
                }
                Ok(out)
            }
        }
    }

    /// `manifest create LIST IMAGE...`: an OCI index named `list` in the store, one entry
    /// per image manifest of `images` (which must be in the store), each with the platform
    /// its config says. `amend` adds to an existing list instead of refusing it.
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
                return Err(Error::ListExists(r.familiar()));
            }
            entries = self.read_list(&old, &r).await?.manifests().clone();
        }
        for image in images {
            for m in self.image_manifests(image).await? {
                let img = m.as_image().ok_or_else(|| Error::WrongKind {
                    image: image.clone(),
                    expected: "an image or an index of images",
                })?;
                let config = oci_rs_image::read_config(&self.layout, img.config()).await?;
                let mut p = PlatformBuilder::default()
                    .os(config.os().clone())
                    .architecture(config.architecture().clone())
                    .build()
                    .map_err(|source| oci_rs_image::Error::Build {
                        what: "a platform",
                        source,
                    })?;
                p.set_variant(config.variant().clone());
                let mut d = m.descriptor();
                d.set_platform(Some(p));
                entries.retain(|e| e.digest() != d.digest());
                entries.push(d);
            }
        }
        self.write_index(&r, entries, Some(MediaType::ImageIndex))
            .await
    }

    async fn write_index(
        &self,
        r: &ImageReference,
        entries: Vec<Descriptor>,
        media: Option<oci_rs_image::oci_spec::image::MediaType>,
    ) -> Result<Descriptor> {
        let mut b =
            oci_rs_image::oci_spec::image::ImageIndexBuilder::default().schema_version(2u32);
        if let Some(m) = media {
            b = b.media_type(m);
        }
        let idx = b
            .manifests(entries)
            .build()
            .map_err(|source| oci_rs_image::Error::Build {
                what: "a manifest list",
                source,
            })?;
        let m = Manifest::from_index(&idx, oci_rs_image::ManifestKind::OciIndex)?;
        let store = self.layout.leased()?;
        ImageDestination::put_manifest(&store, &m, None).await?;
        self.layout
            .tag(&store_name(r), &m.descriptor(), Some(&r.to_string()))
            .await?;
        Ok(m.descriptor())
    }

    /// `manifest annotate LIST IMAGE --os --arch --variant`: the platform of IMAGE's entry
    /// in manifest list `list`.
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
        let desc = self.resolve_named(&r).await?;
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
                .build()
                .map_err(|source| oci_rs_image::Error::Build {
                    what: "a platform",
                    source,
                })?;
            p.set_variant(
                variant
                    .map(str::to_owned)
                    .or_else(|| old.as_ref().and_then(|p| p.variant().clone())),
            );
            e.set_platform(Some(p));
        }
        if !hit {
            return Err(Error::NotInList {
                image: image.to_owned(),
                list: r.familiar(),
            });
        }
        self.write_index(&r, entries, idx.media_type().clone())
            .await
    }

    /// Gives the image `from` (found as [`ImageStore::find`] finds it) the name `to`.
    pub async fn tag(&self, from: &str, to: &str) -> Result<()> {
        let desc = self.find(from).await?.desc;
        let to = ImageReference::parse(to)?;
        self.layout.set(&store_name(&to), &desc).await?;
        if self.observer.is_some() {
            let id = self.image_id(&desc).await?;
            self.notify("tag", &id, Some(&to.familiar()));
        }
        Ok(())
    }

    /// Every name in the store, as `docker images` lists them, then each untagged image
    /// (docker's dangling ones) as `<none>` `<none>`.
    pub async fn list(&self) -> Result<Vec<ImageRow>> {
        let mut rows = Vec::new();
        for (name, desc) in ReferenceStore::list(&self.layout).await? {
            let Ok(r) = ImageReference::parse(&name) else {
                continue;
            };
            // Docker's form: a name pulled by digest is `REPO <none>`, its digest shown by
            // --digests; not a repository named `...@sha256`.
            let tag = r.tag().unwrap_or("<none>");
            rows.push(self.row(r.familiar_name(), tag, &desc).await);
        }
        for desc in self.untagged().await? {
            rows.push(self.row("<none>".into(), "<none>", &desc).await);
        }
        // A name whose manifest cannot be read is left out of the list, not its end (gc
        // and prune still see it, and rmi removes it).
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                r.map_err(|e| tracing::warn!(error = %oci_rs_image::chain(&e), "an image of the store cannot be read"))
                    .ok()
            })
            .collect())
    }

    /// The `images` row of the image `desc` names, as `repository` `tag`.
    async fn row(&self, repository: String, tag: &str, desc: &Descriptor) -> Result<ImageRow> {
        let m = self.manifest(desc.digest()).await?;
        let m = self.for_host(m).await?;
        let img = m.as_image().map(|i| (i.config().digest().to_string(), i));
        let created = match &img {
            Some((_, i)) => oci_rs_image::read_config(&self.layout, i.config())
                .await
                .ok()
                .and_then(|c| c.created().as_deref().and_then(oci_rs_image::parse_rfc3339)),
            None => None,
        };
        let (mut size, mut layers) = (0, Vec::new());
        if let Some((_, i)) = &img {
            for l in i.layers() {
                let unpacked = self.unpacked_size(l).await?;
                size += unpacked;
                layers.push((l.digest().to_string(), unpacked));
            }
        }
        Ok(ImageRow {
            created,
            layers,
            repository,
            tag: tag.to_owned(),
            id: img.as_ref().map(|i| i.0.clone()).unwrap_or_default(),
            digest: desc.digest().to_string(),
            compressed_size: img
                .as_ref()
                .map(|i| i.1.layers().iter().map(|l| l.size()).sum())
                .unwrap_or(0),
            size,
        })
    }

    /// The store's untagged images (docker's dangling ones: a build, commit or import
    /// without a name, a load of an unnamed image): index entries without a name whose
    /// manifest no name points at, once each.
    async fn untagged(&self) -> Result<Vec<Descriptor>> {
        let index = self.layout.read_index().await?;
        let named: HashSet<&Digest> = index
            .manifests()
            .iter()
            .filter(|d| oci_rs_image::ref_name(d).is_some())
            .map(|d| d.digest())
            .collect();
        let mut seen = HashSet::new();
        Ok(index
            .manifests()
            .iter()
            .filter(|d| oci_rs_image::ref_name(d).is_none() && !named.contains(d.digest()))
            .filter(|d| seen.insert(d.digest().clone()))
            .cloned()
            .collect())
    }

    /// Keeps the image `desc` names (already in the store) as an untagged image: listed as
    /// `<none>`, found by its id, removed by `rmi ID` or `image prune`. docker's image of a
    /// build, commit or import without a name.
    pub async fn keep_untagged(&self, desc: &Descriptor) -> Result<()> {
        // Without a name's annotations: a named entry's descriptor would name it again.
        let mut desc = desc.clone();
        desc.set_annotations(None);
        self.layout
            .update_index(move |index| {
                let mut entries = index.manifests().clone();
                let have = entries.iter().any(|d| d.digest() == desc.digest());
                if !have {
                    entries.push(desc);
                    index.set_manifests(entries);
                }
                Ok(((), !have))
            })
            .await?;
        Ok(())
    }

    /// Names the image `desc` names `reference`, or keeps it untagged without one
    /// ([`keep_untagged`](Self::keep_untagged)).
    pub async fn name_or_keep(&self, desc: &Descriptor, reference: Option<&str>) -> Result<()> {
        match reference {
            Some(reference) => {
                let r = ImageReference::parse(reference)?;
                self.layout
                    .tag(&store_name(&r), desc, Some(&r.to_string()))
                    .await?;
                Ok(())
            }
            None => self.keep_untagged(desc).await,
        }
    }

    /// Drops the untagged entries of `digest` unless a name points at it: the image of a
    /// build without a name, tagged and then untagged, goes with its last name (docker's),
    /// and a multi-platform build's images, kept while it ran, go once its index holds them.
    pub async fn forget_untagged(&self, digest: &Digest) -> Result<()> {
        let digest = digest.clone();
        self.layout
            .update_index(move |index| {
                let entries = index.manifests();
                let named = entries
                    .iter()
                    .any(|d| d.digest() == &digest && oci_rs_image::ref_name(d).is_some());
                let kept: Vec<Descriptor> = entries
                    .iter()
                    .filter(|d| {
                        named || d.digest() != &digest || oci_rs_image::ref_name(d).is_some()
                    })
                    .cloned()
                    .collect();
                let changed = kept.len() != entries.len();
                if changed {
                    index.set_manifests(kept);
                }
                Ok(((), changed))
            })
            .await?;
        Ok(())
    }

    /// The uncompressed size of a layer blob: counted once by decompressing it, then kept in
    /// `DATA/sizes/HEX` (a blob's content never changes).
    async fn unpacked_size(&self, layer: &Descriptor) -> Result<u64> {
        let cache = self.data.join("sizes").join(layer.digest().digest());
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
        let mut plain = crate::decompress(blob, None).await?;
        let n = tokio::io::copy(&mut plain, &mut tokio::io::sink()).await?;
        if std::fs::create_dir_all(self.data.join("sizes")).is_ok() {
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
                self.manifest(d.digest()).await
            }
            None => Ok(m),
        }
    }

    /// `rmi [-f] NAME...`: untags, then removes what no name reaches any more. The last name
    /// of an image that a container was made from is refused (as docker does) unless `force`,
    /// which untags it and keeps the image untagged; one of several names is untagged
    /// whoever uses the image. Content
    /// stays as long as a container needs it (commit and export read it).
    /// An image named by its id (or a prefix) loses every name it has; with more than one,
    /// only with `force`, as docker's. Returns the names untagged, the ids of the images
    /// that went altogether, and the bytes freed.
    pub async fn remove(&self, names: &[String], force: bool) -> Result<Removed> {
        let containers = self.containers()?;
        let mut removed = Removed::default();
        let mut gone = Vec::new();
        for name in names {
            let found = self.find(name).await?;
            let r = found.reference.clone();
            let desc = found.desc.clone();
            let store_names = if found.by_id {
                if found.names.len() > 1 && !force {
                    return Err(Error::Conflict {
                        image: name.clone(),
                        reason: format!(
                            "it must be forced: the image is referenced by {} names",
                            found.names.len()
                        ),
                    });
                }
                found.names.clone()
            } else {
                r.iter().map(store_name).collect()
            };
            // docker's rule: a name of an image that keeps other names is only untagged,
            // whoever uses the image; its last name (or its id) is refused while a container
            // was made from it.
            let last_name = found.by_id || found.names.len() <= 1;
            let mut in_use = None;
            if last_name {
                let top = self.manifest(desc.digest()).await?;
                let host = self.for_host(top).await?.digest().to_string();
                let named = desc.digest().to_string();
                in_use = containers
                    .iter()
                    .find(|c| c.image == host || c.image == named);
            }
            if let (Some(c), false) = (in_use, force) {
                return Err(Error::ImageInUse {
                    image: r.as_ref().map_or_else(|| name.clone(), |r| r.familiar()),
                    container: c.id.clone(),
                });
            }
            let id = self.image_id(&desc).await?;
            let untagged = match in_use {
                // Forced off a container's image, the image stays, untagged (docker's
                // `<none>`): its names swapped for that in one change of the index, so no
                // gc in between finds it unnamed.
                Some(_) => self.untag_keeping(&store_names, &desc).await?,
                None => {
                    let mut gone = Vec::new();
                    for n in store_names {
                        gone.push(self.untag(n).await?);
                    }
                    self.forget_untagged(desc.digest()).await?;
                    gone
                }
            };
            for g in untagged {
                self.notify("untag", &id, Some(&g));
                removed.untagged.push(g);
            }
            gone.push((desc.digest().clone(), id));
        }
        // Gone altogether: nothing in the index names it any more.
        let index = self.layout.read_index().await?;
        for (digest, id) in gone {
            let kept = index.manifests().iter().any(|d| d.digest() == &digest);
            if !kept && !removed.deleted.contains(&id) {
                self.notify("delete", &id, None);
                removed.deleted.push(id);
            }
        }
        removed.bytes_freed = self.gc_keeping_containers(&containers).await?;
        Ok(removed)
    }

    /// docker's `image inspect` of image `name` for the host platform.
    pub async fn inspect(&self, name: &str) -> Result<ImageInspect> {
        let Found {
            desc, reference: r, ..
        } = self.find(name).await?;
        let m = self.manifest(desc.digest()).await?;
        let m = self.for_host(m).await?;
        let tags: Vec<String> = ReferenceStore::list(&self.layout)
            .await?
            .into_iter()
            .filter(|(_, d)| d.digest() == desc.digest())
            .filter_map(|(n, _)| {
                let r2 = ImageReference::parse(&n).ok()?;
                let r = r.as_ref()?;
                (r2.name() == r.name()).then(|| r2.tag().map(str::to_owned))?
            })
            .collect();
        let familiar = r.map(|r| r.familiar());
        let repo = familiar
            .as_deref()
            .map(|f| f.rsplit_once(':').map_or(f, |(n, _)| n));
        let mut doc = ImageInspect::new(&self.layout, &m, repo, &tags).await?;
        // docker's Size: the layers unpacked, as `images` shows it.
        if let Some(img) = m.as_image() {
            let mut size = 0;
            for l in img.layers() {
                size += self.unpacked_size(l).await?;
            }
            doc.size = size;
        }
        Ok(doc)
    }

    /// `save NAME...`: the host's image of each name into `archive` (named as the user
    /// named it), then the archive finished.
    pub async fn save(
        &self,
        archive: &ArchiveWriter,
        names: &[String],
        opts: &CopyOptions,
    ) -> Result<()> {
        for name in names {
            let f = self.find(name).await?;
            let tag = f.reference.map(|r| r.familiar());
            self.save_one(archive, &f.desc, tag.as_deref(), opts)
                .await?;
        }
        ImageDestination::finish(archive).await?;
        for name in names {
            self.notify("save", name, None);
        }
        Ok(())
    }

    /// The host's image of `desc` into `archive` as `tag`; `finish` after the last writes
    /// the archive's index files.
    async fn save_one(
        &self,
        archive: &ArchiveWriter,
        desc: &Descriptor,
        tag: Option<&str>,
        opts: &CopyOptions,
    ) -> Result<()> {
        let mut opts = opts.clone();
        opts.tag = tag.map(str::to_owned);
        let m = self.manifest(desc.digest()).await?;
        let m = self.for_host(m).await?;
        copy_without_finish(
            &self.layout,
            archive,
            &ManifestRef::Digest(m.digest().clone()),
            &opts,
        )
        .await?;
        Ok(())
    }

    /// One image of the store, named or not, by its descriptor into `archive` (as `tag`
    /// when given), then the archive finished: a build's result as an OCI or docker archive.
    pub async fn save_descriptor(
        &self,
        archive: &ArchiveWriter,
        desc: &Descriptor,
        tag: Option<&str>,
        opts: &CopyOptions,
    ) -> Result<()> {
        self.save_one(archive, desc, tag, opts).await?;
        ImageDestination::finish(archive).await?;
        Ok(())
    }

    /// `load`: every image of the docker-archive or oci-archive `file`, each platform that
    /// is there, the host's unpacked as it loads (as docker's load extracts). A full name in
    /// the archive (`busybox:1`, `reg/app`) names the image; a bare tag (`latest`, as umoci
    /// and skopeo write an oci-archive) says nothing of the repository, so that image is
    /// loaded unnamed, as docker does. An archive naming no image loads each of its images
    /// unnamed; one that holds none is [`Error::EmptyArchive`].
    pub async fn load(&self, file: &Path, opts: &CopyOptions) -> Result<Vec<Loaded>> {
        let a = ArchiveSource::open(file).await?;
        let mut loaded = Vec::new();
        let mut wanted: Vec<(String, ManifestRef)> = a
            .tags()
            .into_iter()
            .map(|t| (t.clone(), ManifestRef::Tag(t)))
            .collect();
        if wanted.is_empty() {
            wanted = a
                .manifests()
                .iter()
                .map(|d| {
                    (
                        d.digest().to_string(),
                        ManifestRef::Digest(d.digest().clone()),
                    )
                })
                .collect();
        }
        if wanted.is_empty() {
            return Err(Error::EmptyArchive(file.to_owned()));
        }
        for (t, what) in wanted {
            let name = match (&what, ImageReference::parse(&t)) {
                (ManifestRef::Tag(_), Ok(r)) if t.contains(':') || t.contains('/') => Some(r),
                _ => None,
            };
            let dst = self.layout.leased()?;
            let mut all = opts.clone().platforms(PlatformFilter::All);
            all.tag = name.as_ref().map(store_name);
            let report = match crate::pull_and_unpack(&a, &dst, &what, &all, &self.snapshots).await
            {
                Ok(r) => r.copy,
                Err(e) if e.is_not_found() => {
                    // An index whose other platforms' blobs were left out: what is there.
                    tracing::info!(tag = %t, error = %e, "not every platform is in the archive; loading the host's");
                    let host = all.clone().platforms(PlatformFilter::Host);
                    crate::pull_and_unpack(&a, &dst, &what, &host, &self.snapshots)
                        .await?
                        .copy
                }
                Err(e) => {
                    return Err(Error::Transfer {
                        what: "load",
                        reference: t,
                        source: Box::new(e),
                    })
                }
            };
            let id = self.image_id(&report.manifest).await?;
            let familiar = name.as_ref().map(|r| r.familiar());
            loaded.push(match &familiar {
                Some(f) => Loaded::Named(f.clone()),
                None => {
                    self.keep_untagged(&report.manifest).await?;
                    Loaded::Id(id.clone())
                }
            });
            self.notify("load", &id, familiar.as_deref());
        }
        // A docker-archive is also an oci-archive here, so an image can be named by both
        // manifests: one entry per image, as docker prints.
        let mut seen = BTreeSet::new();
        loaded.retain(|l| seen.insert(l.clone()));
        Ok(loaded)
    }

    /// Docker's image id for what a manifest descriptor names: the config digest of an
    /// image, the digest of an index (what `commit` and `import` print, and `inspect` and
    /// `run` find an image by).
    pub async fn image_id(&self, desc: &Descriptor) -> Result<String> {
        let m = self.manifest(desc.digest()).await?;
        Ok(match m.as_image() {
            Some(img) => img.config().digest().to_string(),
            None => m.digest().to_string(),
        })
    }

    /// docker's ids of the images `desc` names: its config digest, or each platform's of an
    /// index whose manifests are in the store (a container made from any of them, by
    /// `--platform` too, keeps one of these as its image id).
    pub async fn image_ids(&self, desc: &Descriptor) -> Result<Vec<String>> {
        let m = self.manifest(desc.digest()).await?;
        if let Some(img) = m.as_image() {
            return Ok(vec![img.config().digest().to_string()]);
        }
        let mut ids = vec![m.digest().to_string()];
        if let Some(index) = m.as_index() {
            for child in index.manifests() {
                if let Ok(c) = self.manifest(child.digest()).await {
                    if let Some(img) = c.as_image() {
                        ids.push(img.config().digest().to_string());
                    }
                }
            }
        }
        Ok(ids)
    }

    /// `import`: a filesystem tar (plain, gzip or zstd, read once as a stream) as a
    /// one-layer image for the host platform named `reference` (untagged without one, as
    /// docker's), with docker's `changes` ([`apply_change`]).
    pub async fn import(
        &self,
        input: impl tokio::io::AsyncRead + Send + Unpin,
        reference: Option<&str>,
        changes: &[String],
    ) -> Result<Descriptor> {
        self.import_for(input, reference, changes, &PlatformSpec::host())
            .await
    }

    /// [`import`](Self::import) as an image for `platform` (docker's `import --platform`):
    /// the tar's programs are taken to be that platform's.
    pub async fn import_for(
        &self,
        input: impl tokio::io::AsyncRead + Send + Unpin,
        reference: Option<&str>,
        changes: &[String],
        platform: &PlatformSpec,
    ) -> Result<Descriptor> {
        self.import_with(input, reference, changes, platform, None)
            .await
    }

    /// [`import_for`](Self::import_for) with docker's `import --message`: the comment of
    /// the layer's history entry.
    pub async fn import_with(
        &self,
        input: impl tokio::io::AsyncRead + Send + Unpin,
        reference: Option<&str>,
        changes: &[String],
        platform: &PlatformSpec,
        message: Option<&str>,
    ) -> Result<Descriptor> {
        if let Some(r) = reference {
            ImageReference::parse(r)?;
        }
        let mut b = ImageBuilder::new(&platform.os, &platform.architecture);
        if let Some(v) = &platform.variant {
            b = b.variant(v);
        }
        for c in changes {
            b = apply_change(b, c)?;
        }
        b = b.created(&creation_time());
        // Followed as a tar on the way (and passed through unchanged), so bytes that are not
        // one are refused instead of becoming a layer nothing can apply.
        let mut tar = oci_rs_image::TarGuard::new(crate::decompress(input, None).await?);
        let store = self.layout.leased()?;
        b.add_layer_tar(&store, &mut tar, Compression::Gzip, "imported")
            .await?;
        if message.is_some() {
            b.annotate_last_history(message, None);
        }
        let m = b.build(&store).await?;
        self.name_or_keep(&m.descriptor(), reference).await?;
        if self.observer.is_some() {
            let id = self.image_id(&m.descriptor()).await?;
            self.notify("import", &id, reference);
        }
        Ok(m.descriptor())
    }

    /// `unpack NAME DIR`: every layer of the host's image, applied in order. Returns the
    /// layer and entry counts. With `public` false the tree goes into `dir/rootfs` under a
    /// `dir` made private (0700, as umoci lays it out), so no other local user can reach its
    /// setuid binaries or device nodes, not even while it is being written; with `public` the
    /// layers go straight into `dir`, which keeps the image's modes.
    pub async fn unpack(&self, name: &str, dir: &Path, public: bool) -> Result<(usize, u64)> {
        let r = ImageReference::parse(name)?;
        let desc = self.resolve_named(&r).await?;
        self.unpack_descriptor(&desc, &r.familiar(), dir, public)
            .await
    }

    /// [`ImageStore::unpack`] of the image (or index: the host's image of it) that `desc`
    /// names in the store, named or not (a build's result, say); `label` names it in errors.
    pub async fn unpack_descriptor(
        &self,
        desc: &Descriptor,
        label: &str,
        dir: &Path,
        public: bool,
    ) -> Result<(usize, u64)> {
        let m = self.manifest(desc.digest()).await?;
        let m = self.for_host(m).await?;
        let img = m.as_image().ok_or_else(|| Error::WrongKind {
            image: label.to_owned(),
            expected: "an image",
        })?;
        let config = oci_rs_image::read_config(&self.layout, img.config()).await?;
        if config.rootfs().diff_ids().len() != img.layers().len() {
            return Err(Error::InvalidImage {
                image: label.to_owned(),
                reason: format!(
                    "the config lists {} diff_ids for {} layers",
                    config.rootfs().diff_ids().len(),
                    img.layers().len()
                ),
            });
        }
        let dir = if public {
            std::fs::create_dir_all(dir).map_err(|e| Error::fs("mkdir", dir, e))?;
            dir.to_path_buf()
        } else {
            crate::private_dir(dir)?;
            let rootfs = dir.join("rootfs");
            std::fs::create_dir_all(&rootfs).map_err(|e| Error::fs("mkdir", &rootfs, e))?;
            rootfs
        };
        let mut entries = 0;
        for (layer, diff_id) in img.layers().iter().zip(config.rootfs().diff_ids()) {
            let opts = crate::ApplyOptions {
                diff_id: Some(oci_rs_image::parse_digest(diff_id)?),
                ..Default::default()
            };
            let blob = self.layout.blob(layer).await?;
            let rep = crate::apply(&dir, blob, layer.media_type().as_ref(), &opts).await?;
            entries += rep.entries;
        }
        Ok((img.layers().len(), entries))
    }

    /// The manifest a snapshot was made from.
    async fn image_of(&self, rec: &SnapshotInfo) -> Result<Manifest> {
        self.manifest(&oci_rs_image::parse_digest(&rec.image)?)
            .await
    }

    /// Applies every layer of image manifest `m` to `dir`.
    async fn apply_image(&self, m: &Manifest, dir: &Path) -> Result<()> {
        let img = m.as_image().ok_or_else(|| Error::WrongKind {
            image: m.digest().to_string(),
            expected: "an image",
        })?;
        for layer in img.layers() {
            let blob = self.layout.blob(layer).await?;
            crate::apply(
                dir,
                blob,
                layer.media_type().as_ref(),
                &crate::ApplyOptions::default(),
            )
            .await?;
        }
        Ok(())
    }

    /// `commit`: the changes in container snapshot `id` as a new layer on its image, named
    /// `reference` (untagged without one, as docker's). The caller freezes a running container first if the image is to be one
    /// moment of it (the runtime's container store does).
    pub async fn commit(
        &self,
        id: &str,
        reference: Option<&str>,
        how: &CommitOptions,
    ) -> Result<Descriptor> {
        if let Some(r) = reference {
            ImageReference::parse(r)?;
        }
        let rec = self.snapshots.info(id)?;
        let dir = self.snapshots.container_dir(id);
        let base = self.image_of(&rec).await?;
        let mut opts = crate::DiffOptions::from_env();
        // The empty files the runtime made as targets of the per-container /etc binds.
        opts.mount_points = ["etc/hosts", "etc/hostname", "etc/resolv.conf"]
            .map(PathBuf::from)
            .to_vec();
        let store = self.layout.leased()?;
        let (layer, diff_id, _) = if rec.kind == crate::MountKind::Overlay {
            crate::diff_to_store(
                &store,
                None,
                &dir.join("upper"),
                true,
                Compression::Gzip,
                &opts,
            )
            .await?
        } else {
            let lower = tempfile::tempdir_in(&dir).map_err(|e| Error::fs("mkdir", &dir, e))?;
            self.apply_image(&base, lower.path()).await?;
            crate::diff_to_store(
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
        // The container's configuration, then the changes asked for over it.
        for e in &how.env {
            if let Some((k, v)) = e.split_once('=') {
                b = b.env(k, v);
            }
        }
        if let Some(e) = &how.entrypoint {
            b = b.entrypoint(
                e.iter()
                    .filter(|a| !(e.len() == 1 && a.is_empty()))
                    .cloned(),
            );
            // An entrypoint given replaces the image's Cmd too, as docker's.
            b = b.cmd(how.cmd.clone().unwrap_or_default());
        } else if let Some(c) = &how.cmd {
            b = b.cmd(c.clone());
        }
        if let Some(w) = &how.working_dir {
            b = b.working_dir(w);
        }
        if let Some(u) = &how.user {
            b = b.user(u);
        }
        for c in &how.changes {
            b = apply_change(b, c)?;
        }
        let created_by = how
            .created_by
            .clone()
            .unwrap_or_else(|| format!("oci commit {id}"));
        b.append_layer(layer, &diff_id, &created_by);
        b.annotate_last_history(how.message.as_deref(), how.author.as_deref());
        let m = b.build(&store).await?;
        self.name_or_keep(&m.descriptor(), reference).await?;
        Ok(m.descriptor())
    }

    /// `export`: container snapshot `id`'s whole filesystem as one tar into `sink`
    /// (returned, flushed). As root the container's files are read where they are, its
    /// overlay mounted again when it is not: streamed as walked, nothing staged. Rootless,
    /// the overlay is mounted only in the container's namespaces, so the image and the
    /// changes are first flattened into a view.
    pub async fn export<W>(&self, id: &str, sink: W) -> Result<W>
    where
        W: tokio::io::AsyncWrite + Send + Unpin,
    {
        let rec = self.snapshots.info(id)?;
        let dir = self.snapshots.container_dir(id);
        // Held until the export ends (a rootless one's flattened view).
        let mut _view = None;
        let src = match rec.kind {
            crate::MountKind::Overlay if rustix::process::geteuid().is_root() => {
                self.snapshots.open(&rec.id)?.rootfs
            }
            crate::MountKind::Overlay => {
                let view = self.snapshots.export_view(&rec.id)?;
                let base = self.image_of(&rec).await?;
                self.apply_image(&base, view.path()).await?;
                // The changes go from the upper directory into the view through a pipe.
                let (w, r) = tokio::io::duplex(1 << 20);
                let upper = dir.join("upper");
                let produce = async move {
                    let (_, mut w) =
                        crate::diff_overlay(&upper, w, &crate::DiffOptions::default()).await?;
                    tokio::io::AsyncWriteExt::shutdown(&mut w).await?;
                    Ok::<_, Error>(())
                };
                let apply_opts = crate::ApplyOptions::default();
                let consume = crate::apply_tar(view.path(), r, &apply_opts);
                let (a, b) = tokio::join!(produce, consume);
                a?;
                b?;
                let path = view.path().to_path_buf();
                _view = Some(view);
                path
            }
            _ => dir.join("rootfs"),
        };
        let (_, mut sink) = crate::export(&src, sink, &crate::DiffOptions::from_env()).await?;
        tokio::io::AsyncWriteExt::flush(&mut sink).await?;
        Ok(sink)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Two stores in one process (an embedder building on two threads) writing one cache
    /// key at once: each write lands whole, none fails. With a temporary file named after
    /// the process, one thread's rename took the other's file away ("rename: No such file").
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_stores_in_one_process_write_one_cache_key_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = ImageStore::open(dir.path()).await.unwrap();
        let b = ImageStore::open(dir.path()).await.unwrap();
        let entry = CacheEntry {
            config: serde_json::json!({"step": 1}),
            layers: Vec::new(),
        };
        std::thread::scope(|s| {
            for store in [&a, &b, &a, &b] {
                let entry = &entry;
                s.spawn(move || {
                    for _ in 0..300 {
                        store.cache_put("k", entry).unwrap();
                    }
                });
            }
        });
        assert_eq!(a.cache_get("k").unwrap().config, entry.config);
        let left: Vec<_> = std::fs::read_dir(a.cache_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["k"], "temporary files left");
    }

    fn listed(pattern: &str, name: &str) -> bool {
        let (repository, tag) = name.rsplit_once(':').unwrap_or((name, "<none>"));
        let row = ImageRow {
            repository: repository.into(),
            tag: tag.into(),
            id: String::new(),
            digest: String::new(),
            size: 0,
            compressed_size: 0,
            created: None,
            layers: Vec::new(),
        };
        ImageFilter::parse(Some(pattern), &[])
            .unwrap()
            .matches(&row)
    }

    #[test]
    fn reference_patterns_match_within_a_component() {
        assert!(listed("busy*", "busybox:1"));
        assert!(listed("*:1", "app:1"));
        assert!(!listed("*", "library/app:1"));
        assert!(listed("localhost:5000/*:*", "localhost:5000/x:y"));
        assert!(listed("bb", "bb:1"));
        assert!(!listed("bb:2", "bb:1"));
        assert!(!listed("*/x", "a/b/x:1"));
        assert!(listed("*/*/x", "a/b/x:1"));
        // Exponential in the stars when each tried every split.
        let a40 = "a".repeat(40);
        assert!(!listed("*a*a*a*a*a*a*a*a*a*a*a*a*b", &format!("{a40}:t")));
        assert!(listed("*a*a*a*a*a*a*a*a*a*a*a*a*", &format!("{a40}:t")));
        let dangling = ImageFilter::parse(None, &["dangling=true".into()]).unwrap();
        let row = |tag: &str| ImageRow {
            repository: "r".into(),
            tag: tag.into(),
            id: String::new(),
            digest: String::new(),
            size: 0,
            compressed_size: 0,
            created: None,
            layers: Vec::new(),
        };
        assert!(dangling.matches(&row("<none>")) && !dangling.matches(&row("1")));
        assert!(matches!(
            ImageFilter::parse(None, &["label=x".into()]),
            Err(Error::InvalidFilter(_))
        ));
    }
}

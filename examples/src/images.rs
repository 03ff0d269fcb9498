//! The image verbs of `oci` over oci-rs-layer's [`ImageStore`]: the registry client it pulls
//! and pushes through, progress bars, and the CLI's files (standard input and output,
//! archives, URLs). Everything the store does is the library's.

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use oci_rs_image::oci_spec::image::Descriptor;
use oci_rs_image::{
    ArchiveFormat, ArchiveWriter, CopyEvent, CopyOptions, ImageReference, ImageSource,
    ManifestInspect, PlatformFilter, PlatformSpec,
};
use oci_rs_layer::{ImageStore, Loaded, PullReport, RunnableImage};
use oci_rs_registry_client::{Client, DockerConfig, RegistryConfig, RegistrySource, Repository};
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

/// The image store and the registry client of one `oci` invocation; the store's own verbs
/// are reached through `Deref`. The client (docker's credentials, the TLS roots) is made
/// on first use: most verbs never reach a registry.
pub struct Images {
    store: ImageStore,
    client: std::sync::OnceLock<Client>,
    insecure: Vec<String>,
    quiet: bool,
}

impl std::ops::Deref for Images {
    type Target = ImageStore;
    fn deref(&self) -> &ImageStore {
        &self.store
    }
}

/// Registries through the client, made when a verb first reaches one.
#[async_trait::async_trait]
impl oci_rs_image::Remote for Images {
    async fn source(
        &self,
        r: &ImageReference,
    ) -> oci_rs_image::Result<Box<dyn oci_rs_image::ImageSource>> {
        self.registry()?.source(r).await
    }

    async fn destination(
        &self,
        r: &ImageReference,
    ) -> oci_rs_image::Result<Box<dyn oci_rs_image::ImageDestination>> {
        self.registry()?.destination(r).await
    }

    async fn login(
        &self,
        registry: &str,
        username: &str,
        password: &str,
    ) -> oci_rs_image::Result<Option<std::sync::Arc<dyn oci_rs_image::Remote>>> {
        oci_rs_image::Remote::login(self.registry()?, registry, username, password).await
    }

    /// As the registry configuration says; a client that cannot be made resolves nothing
    /// (the pull then says why).
    fn qualify(&self, name: &str) -> String {
        match self.client() {
            Ok(c) => oci_rs_image::Remote::qualify(c, name),
            Err(_) => name.to_owned(),
        }
    }

    fn candidates(&self, name: &str) -> Vec<String> {
        match self.client() {
            Ok(c) => oci_rs_image::Remote::candidates(c, name),
            Err(_) => vec![name.to_owned()],
        }
    }
}

/// URLs through the client, made when a verb first fetches one.
#[async_trait::async_trait]
impl oci_rs_image::UrlSource for Images {
    async fn fetch(
        &self,
        url: &str,
    ) -> oci_rs_image::Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>> {
        self.registry()?.fetch(url).await
    }
}

impl Images {
    /// [`Images::client`] for the traits: its error as an image error.
    fn registry(&self) -> oci_rs_image::Result<&Client> {
        self.client().map_err(oci_rs_image::Error::foreign)
    }

    /// The store of `data_dir` and a client trusting docker's credentials, reaching the
    /// `insecure` registries over plain HTTP; `quiet`: no progress bars.
    pub async fn open(data_dir: &Path, insecure: Vec<String>, quiet: bool) -> Result<Self> {
        // What happens to images goes into the events journal, as the engine's do.
        let store = Self::open_store(data_dir)
            .await?
            .with_observer(oci_rs_runtime::Containers::open(data_dir)?.image_observer());
        Ok(Self {
            store,
            client: std::sync::OnceLock::new(),
            insecure,
            quiet,
        })
    }

    /// The image store of `data_dir`, finding a short name pulled from one of
    /// registries.conf's search registries by it (what reads need of [`Images::open`]).
    pub async fn open_store(data_dir: &Path) -> Result<ImageStore> {
        Ok(ImageStore::open(data_dir)
            .await
            .with_context(|| format!("opening the image store in {}", data_dir.display()))?
            .with_short_names(std::sync::Arc::new(RegistryConfig::default_short_names())))
    }

    /// The registry client.
    pub fn client(&self) -> Result<&Client> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let b = Client::builder().credentials(DockerConfig::load_default()?);
        // Mirrors, insecure and blocked registries and short names of the machine's
        // registries.conf and daemon.json; what cannot be applied is said.
        let registries = RegistryConfig::load_default()?;
        if !self.quiet {
            for w in &registries.ignored {
                eprintln!("WARNING: {w}");
            }
        }
        let mut b = registries.apply(b);
        for r in &self.insecure {
            b = b.insecure_registry(r);
        }
        let built = b.build()?;
        Ok(self.client.get_or_init(|| built))
    }

    /// Copy options for `--platform` (`all`, or one), drawing progress bars unless quiet.
    pub fn copy_options(&self, platform: Option<&str>) -> Result<CopyOptions> {
        let mut opts = CopyOptions::default();
        if let Some(p) = platform {
            opts = opts.platforms(if p == "all" {
                PlatformFilter::All
            } else {
                PlatformFilter::One(p.parse::<PlatformSpec>()?)
            });
        }
        if !self.quiet {
            let bars = Bars::default();
            opts = opts.progress(move |e| bars.event(e));
        }
        Ok(opts)
    }

    /// `pull [--unpack] REF`.
    pub async fn pull_report(
        &self,
        reference: &str,
        platform: Option<&str>,
        unpack: bool,
    ) -> Result<PullReport> {
        let opts = self.copy_options(platform)?;
        let report = self.store.pull(self, reference, &opts, unpack).await?;
        if platform.is_none() {
            // What a run of it would start: another platform's image is warned of.
            if let Ok(run) = self
                .store
                .image_for_run(reference, None, None, |_| {})
                .await
            {
                self.warn_foreign(&run);
            }
        }
        Ok(report)
    }

    /// docker's warning for an image of another platform than the host's, taken without
    /// `--platform`.
    fn warn_foreign(&self, run: &RunnableImage) {
        match run.foreign_platform() {
            Some(p) if !self.quiet => eprintln!(
                "WARNING: The requested image's platform ({p}) does not match the detected \
                 host platform ({}) and no specific platform was requested",
                PlatformSpec::host()
            ),
            _ => {}
        }
    }

    /// `pull -a REPO`: the repository's tags, as its registry lists them (all pages), each
    /// as a reference to pull; a reference with a tag or digest is refused, as docker's.
    pub async fn all_tags(&self, repository: &str) -> Result<Vec<String>> {
        // As written: a parsed reference has `latest` filled in.
        let last = repository.rsplit('/').next().unwrap_or(repository);
        if last.contains(':') || last.contains('@') {
            bail!("tag can't be used with --all-tags/-a");
        }
        let name = oci_rs_image::Remote::qualify(self, repository);
        let (repo, _) = Repository::parse_reference(&name)?;
        let tags = self.client()?.tags(&repo, None).await?;
        Ok(tags.into_iter().map(|t| format!("{name}:{t}")).collect())
    }

    /// `push REF`.
    pub async fn push(&self, reference: &str) -> Result<Descriptor> {
        let opts = self.copy_options(None)?;
        Ok(self.store.push(self, reference, &opts).await?)
    }

    /// The image `run` starts from, pulled (and unpacked) when it is not here.
    pub async fn image_for_run(
        &self,
        image: &str,
        platform: Option<&str>,
        pull: oci_rs_layer::PullPolicy,
    ) -> Result<RunnableImage> {
        let platform = platform.map(str::parse::<PlatformSpec>).transpose()?;
        let opts = self.copy_options(None)?;
        let quiet = self.quiet;
        let run = self
            .store
            .image_for_run_with(
                image,
                platform.as_ref(),
                Some((self as &dyn oci_rs_image::Remote, &opts)),
                pull,
                |r| {
                    if !quiet {
                        eprintln!("Unable to find image '{}' locally", r.familiar());
                    }
                },
            )
            .await?;
        if platform.is_none() {
            self.warn_foreign(&run);
        }
        Ok(run)
    }

    /// `manifest inspect REF` without `-v`: the registry's document as it sent it.
    pub async fn manifest_bytes(&self, reference: &str) -> Result<Vec<u8>> {
        let (repo, what) = Repository::parse_reference(reference)?;
        let src = RegistrySource::new(self.client()?.clone(), repo);
        Ok(src.manifest(&what).await?.bytes().to_vec())
    }

    /// `manifest inspect REF`: from the registry.
    pub async fn manifest_inspect(&self, reference: &str) -> Result<ManifestInspect> {
        let (repo, what) = Repository::parse_reference(reference)?;
        let src = RegistrySource::new(self.client()?.clone(), repo);
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
        Ok(self
            .store
            .save(&w, references, &self.copy_options(None)?)
            .await?)
    }

    /// `load [-i FILE]`: docker's lines (`Loaded image: NAME`, `Loaded image ID: ID`). With
    /// `None` the archive is read from standard input; a pipe is first copied into a private
    /// temporary file in the data directory (an archive is read by offsets).
    pub async fn load(&self, file: Option<&Path>) -> Result<Vec<String>> {
        let spooled;
        let file = match file {
            Some(f) => f.to_path_buf(),
            None if stdin_is_regular() => PathBuf::from("/dev/stdin"),
            None => {
                spooled = spool_stdin(self.data_dir()).await?;
                spooled.path().to_path_buf()
            }
        };
        let loaded = self.store.load(&file, &self.copy_options(None)?).await?;
        Ok(loaded
            .into_iter()
            .map(|l| match l {
                Loaded::Named(n) => format!("Loaded image: {n}"),
                Loaded::Id(id) => format!("Loaded image ID: {id}"),
            })
            .collect())
    }

    /// `import FILE|URL|- [REF]`: from a file, an http(s) URL, or standard input (`-`, a pipe
    /// is fine: it is read once, as a stream); untagged without `REF`; `message` the
    /// history's comment.
    pub async fn import(
        &self,
        source: &str,
        reference: Option<&str>,
        changes: &[String],
        platform: Option<&str>,
        message: Option<&str>,
    ) -> Result<Descriptor> {
        let platform = match platform {
            Some(p) => p.parse()?,
            None => oci_rs_image::PlatformSpec::host(),
        };
        let input: Box<dyn tokio::io::AsyncRead + Send + Unpin> = if source == "-" {
            Box::new(tokio::io::stdin())
        } else if source.starts_with("http://") || source.starts_with("https://") {
            oci_rs_image::UrlSource::fetch(self, source).await?
        } else {
            Box::new(
                tokio::fs::File::open(source)
                    .await
                    .with_context(|| format!("opening {source}"))?,
            )
        };
        self.store
            .import_with(input, reference, changes, &platform, message)
            .await
            .with_context(|| format!("importing {source}"))
    }

    /// `export ID [-o FILE]`: into `output` (a regular file replaced atomically, a device,
    /// pipe or FIFO written to) or standard output.
    pub async fn export(
        &self,
        containers: &oci_rs_runtime::Containers,
        id: &str,
        output: Option<&Path>,
    ) -> Result<()> {
        match output {
            Some(path) => {
                let mut out = oci_rs_image::OutputFile::create(path)?;
                let f = out
                    .file()
                    .ok_or_else(|| anyhow!("{} is unusable", path.display()))?;
                // Large writes: each one is a hop to tokio's blocking pool.
                let f = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(f));
                containers.export(&self.store, id, f).await?;
                out.commit()?;
            }
            None => {
                containers.export(&self.store, id, stdout_sink()?).await?;
            }
        }
        Ok(())
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
            CopyEvent::BlobRetrying {
                digest,
                attempt,
                error,
            } => {
                if let Some(pb) = bars.get(&digest.to_string()) {
                    pb.set_position(0);
                }
                tracing::warn!(%digest, attempt, %error, "blob failed; sending it again");
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

//! Dockerfile builds: a Dockerfile into an image, daemonless, on the four crates.
//!
//! - [`parse`] reads the Dockerfile, [`words`] does its variable substitution and quoting,
//!   [`ignore`] reads `.dockerignore`, [`context`] turns `COPY`/`ADD` sources into tar entries.
//! - Each stage is an [`ImageBuilder`] (oci-rs-image) over a stack of layers. A step that
//!   changes files (`RUN`, `COPY`, `ADD`) runs on an overlay snapshot of that stack
//!   (oci-rs-layer's [`Snapshotter`](oci_rs_layer::Snapshotter)); its upper directory is diffed into the step's layer
//!   and then becomes that layer's unpacked directory, so the next step mounts it without
//!   unpacking anything. `RUN` goes through oci-rs-runtime (`spec_from_image`, on docker's
//!   default build network, the default bridge, unless [`BuildNetwork`] says otherwise),
//!   with `RUN --mount` (`cache`, `bind`, `tmpfs`, `secret`, `ssh`: see [`mounts`]);
//!   `RUN --security=insecure` and `RUN --network=host` need the caller's [`Entitlement`].
//!   `FROM` pulls through the [`Remote`] of [`BuildSources`] when the image is not in the
//!   store; `ADD` fetches URLs through its [`UrlSource`] and git repositories with the
//!   host's `git` ([`git`]).
//! - The cache is keyed as BuildKit's: the parent's key, the instruction after
//!   substitution (build args included), and for `COPY`/`ADD` a digest of the copied
//!   content (names, types, modes, owners, link targets, bytes; not times). An entry is the
//!   whole image state after the step (config with its history, and layers), so a rebuild
//!   with nothing changed gives the same image id. Entries live in `DATA/build-cache`,
//!   written by rename (concurrent builds share them), kept by `image prune`/`rmi`'s gc and
//!   removed by `builder prune`.
//! - `--cache-to` and `--cache-from` ([`cache`]) carry those entries between machines, in
//!   BuildKit's cache manifest format, through a registry or an OCI layout directory.
//! - Stages the target does not need are not built.
//!
//! Differences from docker: names in `/etc/hosts` of a `RUN` are the sandbox's only.

mod archive;
mod cache;
mod context;
mod error;
mod git;
mod ignore;
mod mounts;
mod multi;
mod outputs;
mod parse;
mod words;

pub use cache::{CacheExport, CacheImport, CacheLocation, CacheMode};
use context::Owner;
pub use context::{read_context_file, StreamedContext};
pub use error::BuildError;
use error::{bail, invalid, Context, Result};
use ignore::Ignore;
pub use mounts::{BuildSecret, BuildSsh};
pub use multi::build_platforms;
use oci_rs_image::oci_spec::image::{Descriptor, Digest};
use oci_rs_image::{BlobStore, CopyOptions, ImageBuilder, Remote, UrlSource};
use oci_rs_layer::ImageStore;
pub use outputs::BuildOutput;
use parse::{Args, Dockerfile, Instr};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;
use words::Lex;

/// The network of `RUN` steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BuildNetwork {
    /// docker's default (`--network default` or `bridge`): the default bridge network with
    /// egress (so `apt-get`, `pip` and `npm` work); slirp4netns for a rootless build, which
    /// cannot make bridges.
    #[default]
    Default,
    /// Only a loopback interface (`none`).
    None,
    /// The host's network (`host`).
    Host,
}

impl std::str::FromStr for BuildNetwork {
    type Err = BuildError;

    /// docker's `--network` values for a build: `default` (or `bridge`), `none`, `host`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "default" | "bridge" => Ok(Self::Default),
            "none" => Ok(Self::None),
            "host" => Ok(Self::Host),
            other => Err(invalid!(
                "--network {}: a build's steps run with default (bridge), none or host",
                oci_rs_image::excerpt(other, 64)
            )),
        }
    }
}

/// What a build may do beyond its sandbox when the caller grants it (`--allow`, BuildKit's
/// entitlements): a Dockerfile alone cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Entitlement {
    /// `network.host`: `RUN --network=host` (the build's own `--network host` grants it too).
    NetworkHost,
    /// `security.insecure`: `RUN --security=insecure`, a step with every capability and
    /// device and no seccomp filter, as `docker run --privileged`.
    SecurityInsecure,
}

impl std::str::FromStr for Entitlement {
    type Err = BuildError;

    /// `network.host` or `security.insecure`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "network.host" => Ok(Self::NetworkHost),
            "security.insecure" => Ok(Self::SecurityInsecure),
            other => Err(invalid!(
                "--allow {}: the entitlements are network.host and security.insecure",
                oci_rs_image::excerpt(other, 64)
            )),
        }
    }
}

/// What a build is asked (`docker build`'s options).
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// `-t`: names to tag the image with.
    pub tags: Vec<String>,
    /// `--build-arg K=V`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build (default: the last).
    pub target: Option<String>,
    /// `--no-cache`: run every step (the results still go into the cache).
    pub no_cache: bool,
    /// `--pull`: pull every `FROM` image even when it is in the store.
    pub pull: bool,
    /// `--platform os/arch`.
    pub platform: Option<String>,
    /// `--label K=V` on the image.
    pub labels: BTreeMap<String, String>,
    /// `--network`.
    pub network: BuildNetwork,
    /// `--secret id=ID,src=PATH|env=NAME`: what `RUN --mount=type=secret,id=ID` reads.
    pub secrets: BTreeMap<String, BuildSecret>,
    /// Where `RUN` steps' output goes (their stdout and stderr); `None`: kept in a file
    /// that a failing step hands to the events ([`BuildEvent::FailedOutput`]), as `-q`.
    pub run_output: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    /// The Dockerfile's name, for messages (`Dockerfile`).
    pub file_label: String,
    /// The text of the Dockerfile's own ignore file, `NAME.dockerignore` beside the
    /// Dockerfile `NAME` ([`read_dockerignore`] reads it), which BuildKit takes instead of
    /// the context's `.dockerignore`. `None`: the context's `.dockerignore`.
    pub dockerignore: Option<String>,
    /// `--cache-to`: where the build's cache is exported when it has built (BuildKit's
    /// format, see [`CacheExport`]).
    pub cache_to: Vec<CacheExport>,
    /// `--cache-from`: caches other builds exported, whose steps this build may take
    /// instead of running them (see [`CacheImport`]). One that cannot be read is reported
    /// ([`BuildEvent::CacheProblem`]) and the build goes on, as BuildKit's does.
    pub cache_from: Vec<CacheImport>,
    /// `--allow`: what the Dockerfile's steps may ask beyond the sandbox.
    pub allow: Vec<Entitlement>,
    /// `--ssh ID[=SOCKET]`: the SSH agents `RUN --mount=type=ssh,id=ID` reaches.
    pub ssh: BTreeMap<String, BuildSsh>,
}

/// Where a build reaches beyond the store: registries for the `FROM` images the store does
/// not have (and for all of them with [`BuildOptions::pull`]), and URLs for `ADD URL`.
/// `oci-rs-registry-client`'s `Client` is both.
#[derive(Clone, Default)]
pub struct BuildSources<'a> {
    /// Registries.
    pub remote: Option<&'a dyn Remote>,
    /// URLs.
    pub urls: Option<&'a dyn UrlSource>,
    /// Platform filter, concurrency and progress of pulls.
    pub pull: CopyOptions,
}

/// What a build is doing, for a program to show: steps numbered as BuildKit shows them.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildEvent<'a> {
    /// Step `number` starts: its instruction (`[stage 1/4] RUN make`). The text is the
    /// Dockerfile's, or a base image's `ONBUILD` trigger: untrusted, see
    /// [`oci_rs_image::printable`].
    Step {
        /// The step's number in the build.
        number: usize,
        /// What it runs.
        instruction: &'a str,
    },
    /// Step `number` was taken from the cache.
    Cached {
        /// The step.
        number: usize,
    },
    /// Step `number` ran, in `elapsed`.
    Done {
        /// The step.
        number: usize,
        /// How long it took.
        elapsed: std::time::Duration,
    },
    /// A `--build-arg` that no `ARG` of the built stages declared (docker warns).
    UnusedArg {
        /// Its name.
        name: &'a str,
    },
    /// The output of `RUN` step `number`, which failed, when the build kept it
    /// ([`BuildOptions::run_output`] `None`).
    FailedOutput {
        /// The step.
        number: usize,
        /// The output, from its start.
        log: &'a mut std::fs::File,
    },
    /// A `--cache-from` that could not be read, or a `--cache-to` with `ignore-error=true`
    /// that could not be written: the build went on without it.
    CacheProblem {
        /// Which cache.
        location: &'a CacheLocation,
        /// What went wrong (its causes through `source()`).
        error: &'a (dyn std::error::Error + 'static),
    },
}

/// Where build events go (see [`BuildEvent`]).
pub type BuildEvents<'a> = Box<dyn FnMut(BuildEvent<'_>) + Send + 'a>;

/// The image a build made.
#[derive(Debug, Clone)]
pub struct Built {
    /// The manifest's descriptor.
    pub manifest: Descriptor,
    /// The image id (config digest).
    pub id: Digest,
    /// Steps run and steps taken from the cache.
    pub ran: usize,
    /// Steps taken from the cache.
    pub cached: usize,
}

/// The Dockerfile of a build and its name for messages: `file` (default `Dockerfile` in the
/// context) read as BuildKit reads it. One of the context's files (the default, a relative
/// `file` with `context_is_scratch`, or a `file` whose path, made absolute and cleaned with
/// links not followed, lies under the context's) is resolved inside the context
/// ([`read_context_file`]), so a link there never leads to a host file; a `file` elsewhere,
/// which the caller named itself, is read as given (docker allows a Dockerfile outside the
/// context). At most [`MAX_DOCKERFILE`] bytes.
pub fn read_dockerfile(
    context: &Path,
    file: Option<&Path>,
    context_is_scratch: bool,
) -> Result<(String, String)> {
    let label = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "Dockerfile".into())
    };
    if let Some(rel) = dockerfile_in_context(context, context_is_scratch, file)? {
        let text = read_context_file(context, &rel, MAX_DOCKERFILE)?.ok_or_else(|| {
            invalid!(
                "no {} in the build context {}",
                rel.display(),
                context.display()
            )
        })?;
        return Ok((text, label(&rel)));
    }
    let path = file.map(Path::to_path_buf).unwrap_or_default();
    let meta = std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > MAX_DOCKERFILE {
        bail!("{} is larger than {MAX_DOCKERFILE} bytes", path.display());
    }
    let t =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok((t, label(&path)))
}

/// The Dockerfile's own ignore file, as BuildKit finds one: `NAME.dockerignore` beside the
/// Dockerfile `NAME` (`file`, default `Dockerfile` in the context, taken as
/// [`read_dockerfile`] takes it: `-f sub/app.Dockerfile` has `sub/app.Dockerfile.dockerignore`),
/// read the way that Dockerfile is read (inside the context when it is one of the context's
/// files, as given otherwise). When there is one, it replaces the context's `.dockerignore`:
/// hand it to the build as [`BuildOptions::dockerignore`]. `Ok(None)` when there is none; one
/// that is not a regular file, or is larger than [`MAX_DOCKERFILE`] bytes, is an error.
pub fn read_dockerignore(
    context: &Path,
    file: Option<&Path>,
    context_is_scratch: bool,
) -> Result<Option<String>> {
    let beside = |p: &Path| {
        let mut name = p.as_os_str().to_owned();
        name.push(".dockerignore");
        PathBuf::from(name)
    };
    if let Some(rel) = dockerfile_in_context(context, context_is_scratch, file)? {
        return read_context_file(context, &beside(&rel), MAX_DOCKERFILE);
    }
    let path = beside(file.unwrap_or(Path::new("Dockerfile")));
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    if meta.len() > MAX_DOCKERFILE {
        bail!("{} is larger than {MAX_DOCKERFILE} bytes", path.display());
    }
    std::fs::read_to_string(&path)
        .map(Some)
        .with_context(|| format!("reading {}", path.display()))
}

/// The Dockerfile's path inside the context when it is one of the context's files: the
/// default `Dockerfile`, a relative `-f` with a context from standard input, or a `-f` whose
/// path (made absolute and cleaned, links not followed) lies under the context's. Those are
/// read resolved inside the context ([`context::read_context_file`]), so a link there never
/// leads to a host file. `None` for a `-f` elsewhere, which the user named themselves and
/// which is read as given, as docker allows a Dockerfile outside the context.
fn dockerfile_in_context(
    context: &Path,
    stdin_context: bool,
    file: Option<&Path>,
) -> Result<Option<PathBuf>> {
    let Some(f) = file else {
        return Ok(Some(PathBuf::from("Dockerfile")));
    };
    if stdin_context {
        return Ok(f.is_relative().then(|| f.to_path_buf()));
    }
    let lexical = |p: &Path| -> Result<PathBuf> {
        let abs =
            std::path::absolute(p).with_context(|| format!("making {} absolute", p.display()))?;
        let mut out = PathBuf::new();
        for c in abs.components() {
            match c {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                std::path::Component::CurDir => {}
                c => out.push(c),
            }
        }
        Ok(out)
    };
    let (f, dir) = (lexical(f)?, lexical(context)?);
    Ok(f.strip_prefix(&dir).ok().map(Path::to_path_buf))
}

/// Part of every cache key: a change in what a step makes changes this, so old entries
/// are never taken for new ones.
const CACHE_VERSION: &str = "oci-build-cache-2";

/// The largest Dockerfile read.
pub const MAX_DOCKERFILE: u64 = 4 << 20;

/// How many stages may be in the making at once (see [`DockerfileBuild::stage_once`]). Each level
/// is a step's future polled inside another's, some 300 KiB of stack in a debug build: 30
/// overflowed the main thread's 8 MiB.
const MAX_NESTED_STAGES: usize = 8;

/// One stage: its `FROM` and its instructions.
struct StageDef {
    name: Option<String>,
    from: Instr,
    body: Vec<Instr>,
}

/// A stage as built so far.
#[derive(Clone)]
struct State {
    image: ImageBuilder,
    key: String,
    /// ARGs declared in the stage: name → value (None: declared without one).
    args: BTreeMap<String, Option<String>>,
    /// `CMD` set in this stage (an `ENTRYPOINT` then keeps it).
    cmd_set: bool,
}

impl State {
    fn config(&self) -> &Value {
        self.image.config_json()
    }

    fn env_value(&self, name: &str) -> Option<String> {
        let env = self.config().pointer("/config/Env")?.as_array()?;
        let prefix = format!("{name}=");
        env.iter()
            .rev()
            .filter_map(Value::as_str)
            .find_map(|e| e.strip_prefix(&prefix).map(str::to_owned))
    }

    /// A variable as the Dockerfile sees it: ENV first, then ARG.
    fn lookup(&self, name: &str) -> Option<String> {
        self.env_value(name)
            .or_else(|| self.args.get(name).cloned().flatten())
    }

    fn shell(&self) -> Vec<String> {
        Some(strings_at(self.config(), "/config/Shell"))
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    /// The config's `User` ("" when none).
    fn user(&self) -> String {
        self.config()
            .pointer("/config/User")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    fn workdir(&self) -> String {
        self.config()
            .pointer("/config/WorkingDir")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("/")
            .to_owned()
    }

    fn stack(&self) -> Result<Vec<(Descriptor, Digest)>> {
        let ids = self.image.diff_ids();
        self.image
            .layers()
            .iter()
            .zip(ids)
            .map(|(l, d)| Ok((l.clone(), oci_rs_image::parse_digest(&d)?)))
            .collect()
    }
}

/// The strings of the JSON array at `pointer` (none when it is missing or not an array).
/// The `PATH` BuildKit gives a stage whose base image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn strings_at(v: &Value, pointer: &str) -> Vec<String> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn sha(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    format!("{:x}", h.finalize())
}

/// A Dockerfile build into an [`ImageStore`]: `FROM` images from the store or, when missing,
/// pulled through [`BuildSources`]; `RUN` steps in containers of this crate on overlay
/// snapshots of each stage; `COPY`/`ADD` from the context (filtered by its `.dockerignore`)
/// or other stages, resolved inside their trees; the cache kept by the store. One call,
/// [`DockerfileBuild::build`], builds and tags.
///
/// ```no_run
/// # async fn demo(
/// #     registry: &dyn oci_rs_image::Remote,
/// #     urls: &dyn oci_rs_image::UrlSource,
/// # ) -> Result<(), Box<dyn std::error::Error>> {
/// use oci_rs_layer::ImageStore;
/// use oci_rs_runtime::{read_dockerfile, BuildEvent, BuildOptions, BuildSources, DockerfileBuild};
///
/// let store = ImageStore::open("/var/lib/my-tool".as_ref()).await?;
/// let context = std::path::Path::new("./app");
/// let (dockerfile, name) = read_dockerfile(context, None, false)?;
/// let sources = BuildSources {
///     remote: Some(registry), // oci-rs-registry-client's Client
///     urls: Some(urls),
///     ..BuildSources::default()
/// };
/// let opts = BuildOptions {
///     tags: vec!["localhost:5000/app:1".into()],
///     file_label: name,
///     ..BuildOptions::default()
/// };
/// let events = Box::new(|e: BuildEvent<'_>| {
///     if let BuildEvent::Step { number, instruction } = e {
///         eprintln!("#{number} {}", oci_rs_image::printable(instruction));
///     }
/// });
/// let built = DockerfileBuild::new(&store, sources, &dockerfile, Some(context), opts, events)?
///     .build()
///     .await?;
/// println!("{} ({} steps run, {} cached)", built.id, built.ran, built.cached);
/// # Ok(())
/// # }
/// ```
pub struct DockerfileBuild<'a> {
    images: &'a ImageStore,
    sources: BuildSources<'a>,
    data: PathBuf,
    context: Option<PathBuf>,
    ignore: Ignore,
    opts: BuildOptions,
    df: Dockerfile,
    lex: Lex,
    stages: Vec<StageDef>,
    global_args: BTreeMap<String, Option<String>>,
    built: HashMap<usize, State>,
    step: usize,
    ran: usize,
    cached: usize,
    events: BuildEvents<'a>,
    used_args: std::collections::BTreeSet<String>,
    building: Vec<usize>,
    /// The steps taken into states, in order, for `--cache-to`.
    links: std::sync::Mutex<Vec<cache::Link>>,
    /// The stage being built, and the stage each stage is `FROM` (when it is one).
    stage_now: usize,
    from_stage: HashMap<usize, usize>,
    /// The `--cache-from` caches that could be read.
    imported: Vec<cache::Imported>,
    /// Steps a `--cache-from` cache has but could not give (a blob missing or damaged):
    /// reported as events, and the steps run.
    cache_problems: std::sync::Mutex<Vec<(CacheLocation, BuildError)>>,
    /// One platform of a multi-platform build: its steps name the platform.
    pub(crate) show_platform: bool,
}

impl<'a> DockerfileBuild<'a> {
    /// A build of `dockerfile` (its text) with `context` (a directory; `None` for none, as
    /// with a Dockerfile on standard input and no context) into `images`, telling `events`
    /// how it goes. The Dockerfile is parsed and its stages checked here.
    pub fn new(
        images: &'a ImageStore,
        sources: BuildSources<'a>,
        dockerfile: &str,
        context: Option<&Path>,
        opts: BuildOptions,
        events: BuildEvents<'a>,
    ) -> Result<Self> {
        let label = if opts.file_label.is_empty() {
            "Dockerfile".to_owned()
        } else {
            opts.file_label.clone()
        };
        let df = parse::parse(dockerfile).map_err(|e| BuildError::Syntax {
            file: label.clone(),
            line: e.line,
            column: e.column,
            message: e.message,
        })?;
        let lex = Lex { escape: df.escape };
        let ignore_text = match (context, &opts.dockerignore) {
            // The Dockerfile's own ignore file wins, as in BuildKit.
            (Some(_), Some(text)) => Some(text.clone()),
            // Resolved inside the context: a `.dockerignore` linking out of it must not make
            // the build read (or leak through its errors) a host file.
            (Some(c), None) => {
                context::read_context_file(c, Path::new(".dockerignore"), MAX_DOCKERFILE)?
            }
            (None, _) => None,
        };
        if let Some(why) = ignore_text.as_deref().and_then(Ignore::refusal) {
            bail!("failed to parse the .dockerignore: {why}");
        }
        let ignore = ignore_text.map(|t| Ignore::parse(&t)).unwrap_or_default();
        let mut this = Self {
            images,
            sources,
            data: images.data_dir().to_path_buf(),
            context: context.map(Path::to_path_buf),
            ignore,
            opts: BuildOptions {
                file_label: label,
                ..opts
            },
            df,
            lex,
            stages: Vec::new(),
            global_args: BTreeMap::new(),
            built: HashMap::new(),
            step: 0,
            ran: 0,
            cached: 0,
            events,
            used_args: Default::default(),
            building: Vec::new(),
            links: Default::default(),
            stage_now: 0,
            from_stage: HashMap::new(),
            imported: Vec::new(),
            cache_problems: Default::default(),
            show_platform: false,
        };
        this.split_stages()?;
        Ok(this)
    }

    fn at(&self, i: &Instr, what: impl std::fmt::Display) -> BuildError {
        BuildError::Instruction {
            place: self.place(i),
            problem: what.to_string(),
        }
    }

    /// `e` with the instruction it failed on as its context (the cause stays in `source()`).
    fn wrap(&self, i: &Instr, e: impl Into<BuildError>) -> BuildError {
        BuildError::Step {
            place: self.place(i),
            source: Box::new(e.into()),
        }
    }

    /// `Dockerfile:LINE: KEYWORD ARGS` for messages, the arguments cut short: a hostile
    /// line can be megabytes, and the message must still be read.
    fn place(&self, i: &Instr) -> String {
        const SHOWN: usize = 200;
        let mut args = i.args_text();
        if let Some((cut, _)) = args.char_indices().nth(SHOWN) {
            args.truncate(cut);
            args.push_str("...");
        }
        // An ONBUILD trigger is a base image's text: no escape sequence reaches the terminal.
        format!(
            "{}:{}: {} {}",
            self.opts.file_label,
            i.line,
            i.keyword,
            (&args)
        )
    }

    fn split_stages(&mut self) -> Result<()> {
        let instrs = std::mem::take(&mut self.df.instrs);
        // BuildKit's automatic platform arguments, in the global scope: usable in `FROM`,
        // and in a stage that declares them (`ARG TARGETARCH`).
        let host = oci_rs_image::PlatformSpec::host();
        let target = match &self.opts.platform {
            Some(p) => p.parse::<oci_rs_image::PlatformSpec>()?,
            None => host.clone(),
        };
        for (prefix, p) in [("TARGET", &target), ("BUILD", &host)] {
            // containerd's normal form, as BuildKit shows it: arm64's v8 is no variant.
            let variant = match p.variant.clone().unwrap_or_default() {
                v if p.architecture == "arm64" && v == "v8" => String::new(),
                v => v,
            };
            let mut platform = format!("{}/{}", p.os, p.architecture);
            if !variant.is_empty() {
                platform = format!("{platform}/{variant}");
            }
            for (k, v) in [
                ("PLATFORM", platform),
                ("OS", p.os.clone()),
                ("ARCH", p.architecture.clone()),
                ("VARIANT", variant),
            ] {
                let name = format!("{prefix}{k}");
                let v = match self.opts.build_args.get(&name) {
                    Some(given) => {
                        self.used_args.insert(name.clone());
                        given.clone()
                    }
                    None => v,
                };
                self.global_args.insert(name, Some(v));
            }
        }
        let mut cur: Option<StageDef> = None;
        for i in instrs {
            match i.keyword.as_str() {
                "FROM" => {
                    if let Some(s) = cur.take() {
                        self.stages.push(s);
                    }
                    let words = self.shell_words(&i)?;
                    let name = match words.as_slice() {
                        [_] => None,
                        [_, as_, n] if as_.eq_ignore_ascii_case("as") => {
                            Some(n.to_ascii_lowercase())
                        }
                        _ => return Err(self.at(&i, "expected FROM IMAGE [AS NAME]")),
                    };
                    for (f, _) in &i.flags {
                        if f != "platform" {
                            return Err(self.at(&i, format!("unknown flag --{f}")));
                        }
                    }
                    cur = Some(StageDef {
                        name,
                        from: i,
                        body: Vec::new(),
                    });
                }
                "ARG" if cur.is_none() => {
                    let empty = State {
                        image: ImageBuilder::new("linux", "amd64"),
                        key: String::new(),
                        args: BTreeMap::new(),
                        cmd_set: false,
                    };
                    for (k, v) in self.arg_decls(&i, &empty)? {
                        // An automatic platform argument declared again keeps its value.
                        let v = self
                            .opts
                            .build_args
                            .get(&k)
                            .cloned()
                            .or(v)
                            .or_else(|| self.global_lookup(&k));
                        if self.opts.build_args.contains_key(&k) {
                            self.used_args.insert(k.clone());
                        }
                        self.global_args.insert(k, v);
                    }
                }
                _ => match &mut cur {
                    Some(s) => s.body.push(i),
                    None => return Err(self.at(&i, "the first instruction must be FROM (or ARG)")),
                },
            }
        }
        if let Some(s) = cur {
            self.stages.push(s);
        }
        if self.stages.is_empty() {
            bail!("{}: no FROM instruction", self.opts.file_label);
        }
        Ok(())
    }

    /// The raw words of a shell-form argument list (no substitution).
    fn shell_words(&self, i: &Instr) -> Result<Vec<String>> {
        match &i.args {
            Args::Shell(s) => Ok(self.lex.split_raw(s).into_iter().collect()),
            Args::Exec(v) => Ok(v.clone()),
        }
    }

    fn global_lookup(&self, name: &str) -> Option<String> {
        self.global_args.get(name).cloned().flatten()
    }

    fn stage_index(&self, name: &str) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| {
                name.parse::<usize>()
                    .ok()
                    .filter(|&n| n < self.stages.len())
            })
    }

    /// Builds the target and tags it.
    pub async fn build(mut self) -> Result<Built> {
        let (built, links) = self.build_keeping_links().await?;
        let number = self.step + 1;
        export_caches(
            self.images,
            self.sources.remote,
            &self.opts.cache_to,
            &links,
            number,
            &mut self.events,
        )
        .await?;
        Ok(built)
    }

    /// Builds and tags; the steps for `--cache-to`, which the caller exports (a
    /// multi-platform build exports those of all its platforms at once).
    pub(crate) async fn build_keeping_links(&mut self) -> Result<(Built, Vec<cache::Link>)> {
        self.import_caches().await;
        self.reap_stale_snapshots()?;
        let target = match &self.opts.target {
            Some(t) => self.stage_index(t).ok_or_else(|| {
                invalid!("the target stage {t:?} is not in {}", self.opts.file_label)
            })?,
            None => self.stages.len() - 1,
        };
        let state = Box::pin(self.stage(target)).await?;
        for k in self.opts.build_args.keys() {
            if !self.used_args.contains(k) {
                (self.events)(BuildEvent::UnusedArg { name: k });
            }
        }
        let mut image = state.image;
        for (k, v) in &self.opts.labels {
            image = image.label(k, v);
        }
        let store = self.images.layout().leased()?;
        let m = image.build(&store).await?;
        let id = m
            .as_image()
            .map(|i| i.config().digest().clone())
            .ok_or_else(|| invalid!("the built manifest is not an image"))?;
        if self.opts.tags.is_empty() {
            self.images.keep_untagged(&m.descriptor()).await?;
        }
        for t in &self.opts.tags {
            self.images.name_or_keep(&m.descriptor(), Some(t)).await?;
        }
        let result = Built {
            manifest: m.descriptor(),
            id,
            ran: self.ran,
            cached: self.cached,
        };
        Ok((result, self.links_for_export(target)))
    }

    /// Reads the `--cache-from` caches; one that cannot be read is an event, not a failure.
    async fn import_caches(&mut self) {
        let imports = self.opts.cache_from.clone();
        for imp in &imports {
            self.line(&format!("importing cache manifest from {}", imp.location));
            let started = Instant::now();
            match self.open_import(&imp.location).await {
                Ok(i) => {
                    tracing::debug!(steps = i.len(), location = %imp.location, "build cache imported");
                    self.imported.push(i);
                }
                Err(e) => (self.events)(BuildEvent::CacheProblem {
                    location: &imp.location,
                    error: &e,
                }),
            }
            self.done(started, false);
        }
    }

    async fn open_import(&self, at: &CacheLocation) -> Result<cache::Imported> {
        let (source, tag): (Box<dyn oci_rs_image::ImageSource>, String) = match at {
            CacheLocation::Registry(r) => {
                let r = oci_rs_image::ImageReference::parse(r)?;
                let remote = self.sources.remote.ok_or_else(|| {
                    invalid!("a registry cache needs a registry (BuildSources::remote)")
                })?;
                let tag = match (r.digest(), r.tag()) {
                    (Some(d), _) => d.to_string(),
                    (None, t) => t.unwrap_or("latest").to_owned(),
                };
                (remote.source(&r).await?, tag)
            }
            CacheLocation::Local { dir, tag } => (
                Box::new(oci_rs_image::OciLayout::open(dir).await?),
                tag.clone(),
            ),
        };
        cache::Imported::read(at.clone(), source, &tag).await
    }

    /// The steps taken into states, each marked when it belongs to the target stage or a
    /// stage it is `FROM` (what `mode=min` exports).
    fn links_for_export(&self, target: usize) -> Vec<cache::Link> {
        let mut chain = std::collections::HashSet::from([target]);
        let mut s = target;
        while let Some(&up) = self.from_stage.get(&s) {
            if !chain.insert(up) {
                break;
            }
            s = up;
        }
        let mut links = self.links.lock().map(|l| l.clone()).unwrap_or_default();
        for l in &mut links {
            l.in_image = chain.contains(&l.stage);
        }
        links
    }

    fn report_cache_problems(&mut self) {
        let problems = self
            .cache_problems
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        for (location, error) in problems {
            (self.events)(BuildEvent::CacheProblem {
                location: &location,
                error: &error,
            });
        }
    }

    /// Notes that the state of step `key` came after `parent`'s, for `--cache-to`.
    fn link(&self, parent: &str, key: &str) {
        if self.opts.cache_to.is_empty() {
            return;
        }
        if let Ok(mut l) = self.links.lock() {
            l.push(cache::Link {
                parent: parent.to_owned(),
                key: key.to_owned(),
                stage: self.stage_now,
                in_image: false,
            });
        }
    }

    /// Builds stage `idx` (and what it needs), once.
    async fn stage(&mut self, idx: usize) -> Result<State> {
        if let Some(s) = self.built.get(&idx) {
            return Ok(s.clone());
        }
        // The stages it names are built first, in order, so that when it (or they) ask for
        // them they are there: a chain of thousands of stages, each FROM the one before, built
        // by each asking for its base, recursed thousands deep and overflowed the stack.
        for dep in self.needed_first(idx)? {
            self.stage_once(dep).await?;
        }
        self.stage_once(idx).await
    }

    /// The stages stage `idx` names and that are not built, directly or through others, each
    /// after those it names in turn (a depth-first walk kept on a stack, not recursing).
    fn needed_first(&self, idx: usize) -> Result<Vec<usize>> {
        let mut order = Vec::new();
        let mut seen = vec![false; self.stages.len()];
        let mut on_path = vec![false; self.stages.len()];
        seen[idx] = true;
        on_path[idx] = true;
        let mut path = vec![(idx, self.names(idx))];
        while let Some((s, names)) = path.last_mut() {
            let s = *s;
            match names.pop() {
                Some(d) if on_path[d] => return Err(self.cycle(d)),
                Some(d) if seen[d] || self.built.contains_key(&d) => {}
                Some(d) => {
                    seen[d] = true;
                    on_path[d] = true;
                    path.push((d, self.names(d)));
                }
                None => {
                    on_path[s] = false;
                    path.pop();
                    if s != idx {
                        order.push(s);
                    }
                }
            }
        }
        Ok(order)
    }

    /// The stages stage `idx` names: its `FROM` (an earlier stage) and each `--from=`. A
    /// `FROM` that does not substitute is left to [`Self::stage_inner`] to report.
    fn names(&self, idx: usize) -> Vec<usize> {
        let st = &self.stages[idx];
        let glob = |n: &str| self.global_lookup(n);
        let from = self
            .shell_words(&st.from)
            .ok()
            .and_then(|w| self.lex.word(w.first()?, &glob).ok())
            .and_then(|image| self.stage_index(&image))
            .filter(|&d| d < idx);
        // `--from` is taken as written: BuildKit does not expand it (see `copy`).
        let copies = st
            .body
            .iter()
            .filter_map(|i| self.stage_index(i.flag("from")?));
        from.into_iter().chain(copies).collect()
    }

    /// BuildKit's step prefix: `[linux/arm64 build 2/12]`, the platform in a multi-platform
    /// build, the stage's name when it has one, and the step number as wide as the total.
    fn step_prefix(&self, stage: usize, k: usize, n: usize) -> String {
        let mut out = String::from("[");
        if self.show_platform {
            if let Some(p) = &self.opts.platform {
                out.push_str(p);
                out.push(' ');
            }
        }
        if let Some(name) = &self.stages[stage].name {
            out.push_str(name);
            out.push(' ');
        }
        let width = n.to_string().len();
        out.push_str(&format!("{k:>width$}/{n}]"));
        out
    }

    /// A stage's name, or its number.
    fn stage_label(&self, idx: usize) -> String {
        match &self.stages[idx].name {
            Some(n) => n.clone(),
            None => idx.to_string(),
        }
    }

    fn cycle(&self, idx: usize) -> BuildError {
        invalid!(
            "{}: stage {} needs itself (a cycle of FROM or COPY --from)",
            self.opts.file_label,
            self.stage_label(idx)
        )
    }

    /// Builds stage `idx` unless it is built: the stages it names must be.
    async fn stage_once(&mut self, idx: usize) -> Result<State> {
        if let Some(s) = self.built.get(&idx) {
            return Ok(s.clone());
        }
        if self.building.contains(&idx) {
            return Err(self.cycle(idx));
        }
        // Only a stage an ONBUILD trigger names with `--from=` is built from inside another
        // (it is not known before): bounded, as a chain of those would recurse.
        if self.building.len() >= MAX_NESTED_STAGES {
            bail!(
                "{}: stage {}: more than {MAX_NESTED_STAGES} stages nested through ONBUILD triggers' --from",
                self.opts.file_label,
                self.stage_label(idx)
            );
        }
        self.building.push(idx);
        let r = self.stage_inner(idx).await;
        self.building.pop();
        r
    }

    async fn stage_inner(&mut self, idx: usize) -> Result<State> {
        let from = self.stages[idx].from.clone();
        let body = self.stages[idx].body.clone();
        let words = self.shell_words(&from)?;
        let glob = |n: &str| self.global_lookup(n);
        let image_name = self
            .lex
            .word(&words[0], &glob)
            .map_err(|e| self.wrap(&from, e))?;
        let platform = match from.flag("platform") {
            Some(p) => Some(self.lex.word(p, &glob).map_err(|e| self.wrap(&from, e))?),
            None => self.opts.platform.clone(),
        };
        let total = body.iter().filter(|i| i.keyword != "ARG").count() + 1;
        let label = format!("{} FROM {image_name}", self.step_prefix(idx, 1, total));
        self.line(&label);
        let started = Instant::now();
        let mut state = match self.stage_index(&image_name).filter(|&i| i < idx) {
            Some(dep) => {
                self.from_stage.insert(idx, dep);
                let mut s = Box::pin(self.stage(dep)).await?;
                s.args.clear();
                s.cmd_set = false;
                s
            }
            None if image_name.eq_ignore_ascii_case("scratch") => {
                let (os, arch) = match &platform {
                    Some(p) => {
                        let p: oci_rs_image::PlatformSpec = p.parse()?;
                        (p.os.clone(), p.architecture.clone())
                    }
                    None => (
                        "linux".to_owned(),
                        oci_rs_image::PlatformSpec::host().architecture.clone(),
                    ),
                };
                State {
                    image: ImageBuilder::new(&os, &arch),
                    key: sha(&[CACHE_VERSION, "scratch", &os, &arch]),
                    args: BTreeMap::new(),
                    cmd_set: false,
                }
            }
            None => {
                let place = format!("{}:{}: FROM {image_name}", self.opts.file_label, from.line);
                let m = self
                    .base_image(&image_name, platform.as_deref())
                    .await
                    .context(place)?;
                let image = ImageBuilder::from_image(self.images.layout(), &m)
                    .await?
                    .docker(false);
                State {
                    image,
                    key: sha(&[CACHE_VERSION, "from", m.digest().as_ref()]),
                    args: BTreeMap::new(),
                    cmd_set: false,
                }
            }
        };
        self.done(started, false);
        // A stage whose base sets no PATH gets BuildKit's default, in its steps and in the
        // image (scratch, a base without Env).
        if !strings_at(state.config(), "/config/Env")
            .iter()
            .any(|e| e.starts_with("PATH="))
        {
            state.image = state.image.env("PATH", DEFAULT_PATH);
        }
        // ONBUILD triggers of the base run first, and are not inherited.
        let triggers = strings_at(state.config(), "/config/OnBuild");
        if !triggers.is_empty() {
            state.image = state.image.config_field("OnBuild", Value::Null);
        }
        let mut steps = Vec::new();
        for t in &triggers {
            let i = parse::instruction(t, from.line).map_err(|e| {
                invalid!(
                    "{}:{}: ONBUILD trigger \"{}\" of {image_name}: {}",
                    self.opts.file_label,
                    from.line,
                    // The trigger is the base image's text: named, not echoed whole.
                    oci_rs_image::excerpt(t, 64),
                    e.message
                )
            })?;
            steps.push(i);
        }
        steps.extend(body);
        // Numbered as BuildKit shows them: ARG lines are not steps.
        let n = steps.iter().filter(|i| i.keyword != "ARG").count() + 1;
        let mut k = 1;
        for i in &steps {
            if i.keyword != "ARG" {
                k += 1;
            }
            // Set again for each step: a step can build another stage (ONBUILD's --from).
            self.stage_now = idx;
            state = self.instruction(state, i, k, n).await?;
        }
        self.built.insert(idx, state.clone());
        Ok(state)
    }

    fn line(&mut self, what: &str) {
        self.step += 1;
        (self.events)(BuildEvent::Step {
            number: self.step,
            instruction: what,
        });
    }

    /// The image manifest of a `FROM` (or `COPY --from`) image for `platform`: from the
    /// store, pulled (and unpacked) when missing or with `--pull`.
    async fn base_image(
        &self,
        name: &str,
        platform: Option<&str>,
    ) -> Result<oci_rs_image::Manifest> {
        let platform = platform
            .map(str::parse::<oci_rs_image::PlatformSpec>)
            .transpose()?;
        let remote = self.sources.remote.map(|r| (r, &self.sources.pull));
        if self.opts.pull {
            if let Some((r, pull)) = remote {
                let mut pull = pull.clone();
                if let Some(p) = &platform {
                    pull.platforms = oci_rs_image::PlatformFilter::One(p.clone());
                }
                self.images.pull(r, name, &pull, true).await?;
            }
        }
        Ok(self
            .images
            .image_for_run(name, platform.as_ref(), remote, |_| {})
            .await?
            .manifest)
    }

    fn done(&mut self, started: Instant, cached: bool) {
        let number = self.step;
        (self.events)(if cached {
            BuildEvent::Cached { number }
        } else {
            BuildEvent::Done {
                number,
                elapsed: started.elapsed(),
            }
        });
    }

    fn arg_decls(&self, i: &Instr, s: &State) -> Result<Vec<(String, Option<String>)>> {
        let mut out = Vec::new();
        let look = |n: &str| s.lookup(n).or_else(|| self.global_lookup(n));
        for w in self.shell_words(i)? {
            match w.split_once('=') {
                Some((k, v)) => {
                    let v = self.lex.word(v, &look).map_err(|e| self.wrap(i, e))?;
                    out.push((k.to_owned(), Some(v)));
                }
                None => out.push((w, None)),
            }
        }
        Ok(out)
    }

    /// `KEY=VALUE` pairs (or the legacy `KEY VALUE`) of `ENV` and `LABEL`, substituted.
    fn pairs(&self, i: &Instr, s: &State) -> Result<Vec<(String, String)>> {
        let text = i.args_text();
        let look = |n: &str| s.lookup(n);
        let raw = self.lex.split_raw(&text);
        let first_has_eq = raw.first().is_some_and(|w| {
            let unq = self.lex.word(w, &|_| None).unwrap_or_default();
            w.contains('=') && !unq.starts_with('=')
        });
        if !first_has_eq {
            // `ENV KEY value with spaces`: one pair, the rest of the line its value.
            let Some((k, rest)) = text.trim().split_once(char::is_whitespace) else {
                return Err(self.at(i, "expected KEY=VALUE"));
            };
            let v = self
                .lex
                .word(rest.trim(), &look)
                .map_err(|e| self.wrap(i, e))?;
            return Ok(vec![(k.to_owned(), v)]);
        }
        let mut out = Vec::new();
        for w in raw {
            let Some(eq) = find_unquoted_eq(&w, self.lex.escape) else {
                return Err(self.at(
                    i,
                    format!("\"{}\" is not KEY=VALUE", oci_rs_image::excerpt(&w, 64)),
                ));
            };
            let k = self
                .lex
                .word(&w[..eq], &look)
                .map_err(|e| self.wrap(i, e))?;
            let v = self
                .lex
                .word(&w[eq + 1..], &look)
                .map_err(|e| self.wrap(i, e))?;
            if k.is_empty() {
                return Err(self.at(i, "an empty key"));
            }
            out.push((k, v));
        }
        Ok(out)
    }

    fn words_of(&self, i: &Instr, s: &State) -> Result<Vec<String>> {
        let look = |n: &str| s.lookup(n);
        match &i.args {
            Args::Exec(v) => Ok(v.clone()),
            Args::Shell(t) => self.lex.words(t, &look).map_err(|e| self.wrap(i, e)),
        }
    }

    fn one_word(&self, i: &Instr, s: &State) -> Result<String> {
        let look = |n: &str| s.lookup(n);
        self.lex
            .word(i.args_text().trim(), &look)
            .map_err(|e| self.wrap(i, e))
    }

    fn check_flags(&self, i: &Instr, allowed: &[&str]) -> Result<()> {
        for (f, _) in &i.flags {
            if !allowed.contains(&f.as_str()) {
                return Err(self.at(i, format!("unknown flag --{f}")));
            }
        }
        Ok(())
    }

    /// The command of `RUN`, `CMD` or `ENTRYPOINT`: exec form as is, shell form through
    /// the stage's `SHELL`.
    fn command(&self, i: &Instr, s: &State) -> Vec<String> {
        match &i.args {
            Args::Exec(v) => v.clone(),
            Args::Shell(t) => {
                let mut c = s.shell();
                c.push(t.clone());
                c
            }
        }
    }

    async fn instruction(&mut self, mut s: State, i: &Instr, k: usize, n: usize) -> Result<State> {
        let started = Instant::now();
        let text = i.args_text();
        // The line as written, flags and all (`COPY --from=build /out /`), as BuildKit's.
        let flags = i.flags_text();
        let label = format!(
            "{} {} {flags}{}",
            self.step_prefix(self.stage_now, k, n),
            i.keyword,
            text.lines().next().unwrap_or("")
        );
        // Metadata steps: the new config, and the history line docker writes.
        let mut meta: Option<(ImageBuilder, String)> = None;
        let mut workdir: Option<String> = None;
        let img = s.image.clone();
        match i.keyword.as_str() {
            "ENV" => {
                let pairs = self.pairs(i, &s)?;
                let mut b = img;
                let mut hist = Vec::new();
                for (k, v) in pairs {
                    hist.push(format!("{k}={v}"));
                    b = b.env(&k, &v);
                }
                meta = Some((b, format!("ENV {}", hist.join(" "))));
            }
            "LABEL" => {
                let mut b = img;
                let mut hist = Vec::new();
                for (k, v) in self.pairs(i, &s)? {
                    hist.push(format!("{k}={v}"));
                    b = b.label(&k, &v);
                }
                meta = Some((b, format!("LABEL {}", hist.join(" "))));
            }
            "ARG" => {
                for (name, default) in self.arg_decls(i, &s)? {
                    let v = match self.opts.build_args.get(&name) {
                        Some(v) => {
                            self.used_args.insert(name.clone());
                            Some(v.clone())
                        }
                        None => default.or_else(|| self.global_lookup(&name)),
                    };
                    s.args.insert(name, v);
                }
                // No history line (as BuildKit), but later keys depend on the values.
                let vals = serde_json::to_string(&s.args).unwrap_or_default();
                s.key = sha(&[&s.key, "ARG", &vals]);
                return Ok(s);
            }
            "EXPOSE" => {
                let mut b = img;
                let ports = self.words_of(i, &s)?;
                for p in &ports {
                    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                    let ok = num.split('-').all(|x| x.parse::<u16>().is_ok())
                        && matches!(proto.to_ascii_lowercase().as_str(), "tcp" | "udp" | "sctp");
                    if !ok {
                        return Err(self.at(
                            i,
                            format!("invalid port \"{}\"", oci_rs_image::excerpt(p, 32)),
                        ));
                    }
                    b = b.expose(&format!("{num}/{}", proto.to_ascii_lowercase()));
                }
                meta = Some((b, format!("EXPOSE map[{}]", ports.join(" "))));
            }
            "VOLUME" => {
                let mut b = img;
                let vols = self.words_of(i, &s)?;
                for v in &vols {
                    b = b.volume(v);
                }
                meta = Some((b, format!("VOLUME {}", serde_json::to_string(&vols)?)));
            }
            "USER" => {
                let u = self.one_word(i, &s)?;
                meta = Some((img.user(&u), format!("USER {u}")));
            }
            "WORKDIR" => {
                let w = self.one_word(i, &s)?;
                let full = if w.starts_with('/') {
                    w.clone()
                } else {
                    format!("{}/{w}", s.workdir().trim_end_matches('/'))
                };
                let full = format!("/{}", ignore::clean_components(&full).join("/"));
                // Made in the filesystem as well (a step of its own, below).
                workdir = Some(full);
            }
            "STOPSIGNAL" => {
                let sig = self.one_word(i, &s)?;
                crate::parse_signal(&sig).map_err(|e| self.wrap(i, e))?;
                meta = Some((img.stop_signal(&sig), format!("STOPSIGNAL {sig}")));
            }
            "MAINTAINER" => {
                let m = self.one_word(i, &s)?;
                meta = Some((img.author(&m), format!("MAINTAINER {m}")));
            }
            "CMD" => {
                let c = self.command(i, &s);
                s.cmd_set = true;
                let h = format!("CMD {}", serde_json::to_string(&c)?);
                meta = Some((img.cmd(c), h));
            }
            "ENTRYPOINT" => {
                let c = self.command(i, &s);
                let mut b = img.config_field("Entrypoint", json!(c));
                if !s.cmd_set {
                    b = b.config_field("Cmd", Value::Null);
                }
                meta = Some((b, format!("ENTRYPOINT {}", serde_json::to_string(&c)?)));
            }
            "SHELL" => {
                let Args::Exec(v) = &i.args else {
                    return Err(self.at(i, "SHELL requires the JSON form"));
                };
                meta = Some((
                    img.config_field("Shell", json!(v)),
                    format!("SHELL {}", serde_json::to_string(v)?),
                ));
            }
            "HEALTHCHECK" => {
                self.check_flags(
                    i,
                    &[
                        "interval",
                        "timeout",
                        "start-period",
                        "start-interval",
                        "retries",
                    ],
                )?;
                let hc = self.healthcheck(i, &s)?;
                let h = format!("HEALTHCHECK {}", serde_json::to_string(&hc)?);
                meta = Some((img.config_field("Healthcheck", hc), h));
            }
            "ONBUILD" => {
                let t = text.trim().to_owned();
                let inner = parse::instruction(&t, i.line).map_err(|e| self.at(i, e.message))?;
                if matches!(inner.keyword.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                    return Err(self.at(
                        i,
                        format!("{} is not allowed as an ONBUILD trigger", inner.keyword),
                    ));
                }
                let mut list: Vec<Value> = s
                    .config()
                    .pointer("/config/OnBuild")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                list.push(json!(t));
                meta = Some((
                    img.config_field("OnBuild", Value::Array(list)),
                    format!("ONBUILD {t}"),
                ));
            }
            "RUN" | "COPY" | "ADD" => {}
            "FROM" => return Err(self.at(i, "FROM inside a stage")),
            other => return Err(self.at(i, format!("unknown instruction {other}"))),
        }
        if let Some(full) = workdir {
            self.line(&label);
            return Box::pin(self.workdir(s, i, full, started)).await;
        }
        if let Some((b, hist)) = meta {
            self.line(&label);
            let key = sha(&[&s.key, &hist]);
            let hit = self.cache_get(&s.key, &key, &b).await;
            self.report_cache_problems();
            if let Some(hit) = hit? {
                s.image = hit;
                self.cached += 1;
                self.done(started, true);
            } else {
                let mut b = b.created(&oci_rs_layer::creation_time());
                b.history_note(&hist);
                self.cache_put(&s.key, &key, &b)?;
                s.image = b;
                self.ran += 1;
                self.done(started, false);
            }
            s.key = key;
            return Ok(s);
        }
        // A stage that `--from` names is built before this step's line.
        let named = {
            let look = |n: &str| s.lookup(n);
            i.flag("from")
                .and_then(|f| self.lex.word(f, &look).ok())
                .and_then(|f| self.stage_index(&f))
        };
        if let Some(idx) = named {
            Box::pin(self.stage(idx)).await?;
        }
        self.line(&label);
        // Boxed: a step's future (mounts, network, copies) is large, and a stage is polled
        // inside the stage that names it, as deep as a chain of stages goes.
        let r = match i.keyword.as_str() {
            "RUN" => Box::pin(self.run(s, i, started)).await,
            _ => Box::pin(self.copy(s, i, started)).await,
        };
        r
    }

    fn healthcheck(&self, i: &Instr, s: &State) -> Result<Value> {
        let text = i.args_text();
        let t = text.trim();
        if t.eq_ignore_ascii_case("none") {
            return Ok(json!({"Test": ["NONE"]}));
        }
        let Some(rest) = t.strip_prefix("CMD").or_else(|| t.strip_prefix("cmd")) else {
            return Err(self.at(i, "expected HEALTHCHECK [OPTIONS] CMD command, or NONE"));
        };
        let rest = rest.trim();
        let test = match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) if rest.starts_with('[') => {
                let mut t = vec!["CMD".to_owned()];
                t.extend(v);
                t
            }
            _ => vec!["CMD-SHELL".to_owned(), rest.to_owned()],
        };
        let mut hc = json!({"Test": test});
        let look = |n: &str| s.lookup(n);
        for (flag, field) in [
            ("interval", "Interval"),
            ("timeout", "Timeout"),
            ("start-period", "StartPeriod"),
            ("start-interval", "StartInterval"),
        ] {
            if let Some(v) = i.flag(flag) {
                let v = self.lex.word(v, &look).map_err(|e| self.wrap(i, e))?;
                let ns = parse_duration_ns(&v)
                    .ok_or_else(|| self.at(i, format!("--{flag}={v}: not a duration")))?;
                hc[field] = json!(ns);
            }
        }
        if let Some(v) = i.flag("retries") {
            let n: u32 = v
                .parse()
                .map_err(|_| self.at(i, format!("--retries={v}: not a count")))?;
            hc["Retries"] = json!(n);
        }
        Ok(hc)
    }

    /// Takes the step from the cache when it is there: the state, the key, the count and
    /// the progress line. False on a miss.
    async fn take_cached(&mut self, s: &mut State, key: &str, started: Instant) -> Result<bool> {
        let hit = self.cache_get(&s.key, key, &s.image).await;
        self.report_cache_problems();
        match hit? {
            Some(hit) => {
                s.image = hit;
                s.key = key.to_owned();
                self.cached += 1;
                self.done(started, true);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// A cached state for `key` (the step after `parent`'s), when its layers are all still
    /// in the store, or from a `--cache-from` cache that has the step.
    async fn cache_get(
        &self,
        parent: &str,
        key: &str,
        template: &ImageBuilder,
    ) -> Result<Option<ImageBuilder>> {
        if self.opts.no_cache {
            return Ok(None);
        }
        let mut entry = match self.images.cache_get(key) {
            Some(e) if self.all_stored(&e).await => Some(e),
            _ => None,
        };
        if entry.is_none() {
            for imported in &self.imported {
                match imported.fetch(self.images, key).await {
                    Ok(Some(e)) => {
                        entry = Some(e);
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        if let Ok(mut p) = self.cache_problems.lock() {
                            p.push((imported.location.clone(), e));
                        }
                    }
                }
            }
        }
        let Some(entry) = entry else {
            return Ok(None);
        };
        match template.clone().restore(entry.config, entry.layers) {
            Ok(b) => {
                self.link(parent, key);
                Ok(Some(b))
            }
            Err(_) => Ok(None),
        }
    }

    async fn all_stored(&self, entry: &oci_rs_layer::CacheEntry) -> bool {
        for l in &entry.layers {
            if !self
                .images
                .layout()
                .contains(l.digest())
                .await
                .unwrap_or(false)
            {
                return false;
            }
        }
        true
    }

    fn cache_put(&self, parent: &str, key: &str, b: &ImageBuilder) -> Result<()> {
        let entry = oci_rs_layer::CacheEntry {
            config: b.config_json().clone(),
            layers: b.layers().to_vec(),
        };
        self.images.cache_put(key, &entry)?;
        self.link(parent, key);
        Ok(())
    }
}

/// Exports the cache entries of `links` to each of `to` (see [`CacheExport`]), each shown
/// as a step from `number` on.
pub(crate) async fn export_caches(
    images: &ImageStore,
    remote: Option<&dyn Remote>,
    to: &[CacheExport],
    links: &[cache::Link],
    mut number: usize,
    events: &mut BuildEvents<'_>,
) -> Result<()> {
    for exp in to {
        let instruction = format!("exporting cache to {}", exp.location);
        events(BuildEvent::Step {
            number,
            instruction: &instruction,
        });
        let started = Instant::now();
        let chosen: Vec<cache::Link> = links
            .iter()
            .filter(|l| exp.mode == CacheMode::Max || l.in_image)
            .cloned()
            .collect();
        let done = async {
            let (dest, tag): (Box<dyn oci_rs_image::ImageDestination>, String) = match &exp.location
            {
                CacheLocation::Registry(r) => {
                    let r = oci_rs_image::ImageReference::parse(r)?;
                    let remote = remote.ok_or_else(|| {
                        invalid!("a registry cache needs a registry (BuildSources::remote)")
                    })?;
                    let tag = r.tag().unwrap_or("latest").to_owned();
                    (remote.destination(&r).await?, tag)
                }
                CacheLocation::Local { dir, tag } => (
                    Box::new(oci_rs_image::OciLayout::create(dir).await?),
                    tag.clone(),
                ),
            };
            cache::export(images, &chosen, &*dest, &tag, exp.image_manifest).await
        }
        .await;
        match done {
            Ok(_) => {}
            Err(e) if exp.ignore_error => events(BuildEvent::CacheProblem {
                location: &exp.location,
                error: &e,
            }),
            Err(e) => {
                return Err(BuildError::Failed {
                    what: format!("exporting the build cache to {}", exp.location),
                    source: Box::new(e),
                })
            }
        }
        events(BuildEvent::Done {
            number,
            elapsed: started.elapsed(),
        });
        number += 1;
    }
    Ok(())
}

fn find_unquoted_eq(w: &str, escape: char) -> Option<usize> {
    let mut quote = None;
    let mut skip = false;
    for (p, c) in w.char_indices() {
        if skip {
            skip = false;
            continue;
        }
        match (quote, c) {
            (None, '=') => return Some(p),
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (q, c) if c == escape && q != Some('\'') => skip = true,
            _ => {}
        }
    }
    None
}

use crate::health::parse_duration_ns;

mod steps;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_pairs() {
        assert_eq!(parse_duration_ns("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration_ns("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration_ns("500ms"), Some(500_000_000));
        assert_eq!(parse_duration_ns("5"), None);
        assert_eq!(find_unquoted_eq("\"a=b\"=c", '\\'), Some(5));
        assert_eq!(find_unquoted_eq("a\\=b=c", '\\'), Some(4));
    }
}

//! `oci`: a docker-like command line over the oci-rs crates.
//!
//! Images live in an OCI layout under the data directory (`--data-dir`, else
//! `$XDG_DATA_HOME/oci-rs`, `/var/lib/oci-rs` as root, `~/.local/share/oci-rs`).
//!
//! ```text
//! oci import rootfs.tar localhost:5000/busybox:1 -c 'CMD ["sh"]'
//! oci push localhost:5000/busybox:1
//! oci pull --platform linux/arm64 localhost:5000/busybox:1
//! oci images
//! oci inspect busybox
//! oci save -o busybox.tar busybox && oci load -i busybox.tar
//! ```

use anyhow::Result;
use clap::{Parser, Subcommand};
use oci_examples::images::{data_dir, short, Images};
use oci_examples::EXIT_TOOL_FAILURE;
use oci_examples::{terminal, text};
use oci_rs_runtime::{parse_mount_arg, parse_volume_arg, MountArg, Volumes};
use oci_rs_runtime::{Containers, ExecRequest, RunImage, RunRequest};
use oci_rs_runtime::{ExtraMount, NetworkMode, RunOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "oci",
    version,
    about = "A docker-like tool over the oci-rs crates"
)]
struct Cli {
    /// Where images (and containers) are kept.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Registries reached over plain HTTP (loopback registries always are).
    #[arg(long = "insecure-registry", global = true)]
    insecure: Vec<String>,
    /// No progress bars (before the verb: `ps -q` and others have their own `-q`).
    #[arg(long, short)]
    quiet: bool,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Pull an image from a registry.
    Pull {
        /// Print only the image's full name.
        #[arg(short, long)]
        quiet: bool,
        /// The image (`busybox`, `localhost:5000/app:1`, `name@sha256:...`).
        image: String,
        /// `os/arch[/variant]`, or `all` for every platform of an index.
        #[arg(long)]
        platform: Option<String>,
        /// Also unpack the layers, as they arrive, so that a first `run` starts at once.
        #[arg(long)]
        unpack: bool,
    },
    /// Push an image to its registry.
    Push {
        /// The image.
        image: String,
    },
    /// Give an image another name.
    Tag {
        /// The image.
        source: String,
        /// The new name.
        target: String,
    },
    /// List images.
    Images {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Every image (there are no intermediate ones here; accepted as docker's).
        #[arg(short, long)]
        all: bool,
        /// Only the image ids.
        #[arg(short, long)]
        quiet: bool,
        /// Show the manifest digests.
        #[arg(long)]
        digests: bool,
        /// Full ids.
        #[arg(long)]
        no_trunc: bool,
        /// `dangling=true|false`, `reference=PATTERN` (`*` matches within a path
        /// component).
        #[arg(short, long)]
        filter: Vec<String>,
        /// A template per image: `{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}`.
        #[arg(long)]
        format: Option<String>,
        /// Only images of this repository (and `:TAG`).
        reference: Option<String>,
    },
    /// What this oci is and where it keeps things (docker's `info`).
    Info,
    /// Versions (docker's `version`).
    Version,
    /// Show an image's history (newest first).
    History {
        /// Full ids and commands.
        #[arg(long)]
        no_trunc: bool,
        /// Only the ids.
        #[arg(short, long)]
        quiet: bool,
        /// Human sizes and times (the default; `--human=false` for raw values).
        #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
        human: bool,
        /// The image.
        image: String,
    },
    /// Build an image from a Dockerfile.
    Build {
        /// Names for the image (`-t app:1`), any number.
        #[arg(short, long = "tag")]
        tag: Vec<String>,
        /// The Dockerfile (default CONTEXT/Dockerfile; `-`: standard input).
        #[arg(short, long)]
        file: Option<PathBuf>,
        /// Build-time variables (`--build-arg K=V`, or `K` to take it from the environment).
        #[arg(long = "build-arg")]
        build_arg: Vec<String>,
        /// The stage to build (default: the last).
        #[arg(long)]
        target: Option<String>,
        /// Run every step instead of taking results from the cache.
        #[arg(long)]
        no_cache: bool,
        /// Pull every FROM image, even when it is in the store.
        #[arg(long)]
        pull: bool,
        /// `os/arch[/variant]` of the FROM images.
        #[arg(long)]
        platform: Option<String>,
        /// Labels on the image (`--label K=V`).
        #[arg(long)]
        label: Vec<String>,
        /// The network of RUN steps: none (the default) or host.
        #[arg(long, default_value = "none")]
        network: String,
        /// Write the image id to this file.
        #[arg(long)]
        iidfile: Option<PathBuf>,
        /// Progress output: plain or tty (both print one line per step).
        #[arg(long, default_value = "plain")]
        progress: String,
        /// Print only the image id (a failing step's output is still shown).
        #[arg(short, long)]
        quiet: bool,
        /// The context: a directory, or `-` for a tar on standard input.
        context: PathBuf,
    },
    /// Build cache commands (`builder prune`).
    Builder {
        #[command(subcommand)]
        verb: BuilderVerb,
    },
    /// Image commands (`image prune`).
    Image {
        #[command(subcommand)]
        verb: ImageVerb,
    },
    /// Remove images (untag, then delete what nothing else uses).
    Rmi {
        /// Untag an image even when a container uses it (its content stays for the container).
        #[arg(short, long)]
        force: bool,
        /// The images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show containers or images like `docker inspect` (containers first).
    Inspect {
        /// Go-template-style fields: `{{.State.Status}}`, `{{json .Config}}`.
        #[arg(short, long)]
        format: Option<String>,
        /// Containers or images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Manifest commands.
    Manifest {
        #[command(subcommand)]
        verb: ManifestVerb,
    },
    /// Write images to a docker-archive (what `docker load` reads).
    Save {
        /// The archive file (`-` or none: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// The images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Read images from a docker-archive or oci-archive.
    Load {
        /// The archive file (`-` or none: standard input).
        #[arg(short, long)]
        input: Option<PathBuf>,
    },
    /// Run a command in a new container from an image (pulled when missing).
    Run(Box<RunArgs>),
    /// List containers (running ones; `-a` for all).
    Ps {
        /// All containers, stopped ones too.
        #[arg(short, long)]
        all: bool,
        /// Only the ids.
        #[arg(short = 'q', long = "quiet")]
        ids_only: bool,
        /// Full ids and commands.
        #[arg(long)]
        no_trunc: bool,
        /// `status=running|exited|created|restarting`, `name=NAME`.
        #[arg(short, long)]
        filter: Vec<String>,
        /// Go-template-style fields of each container's inspect document: `{{.Name}}`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show a container's output.
    Logs {
        /// Keep printing new output until the container ends.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines (`all` for every line).
        #[arg(short = 'n', long, default_value = "all")]
        tail: String,
        /// Since a time (RFC 3339) or a duration ago (`10m`, `1h30m`).
        #[arg(long)]
        since: Option<String>,
        /// Until a time or a duration ago.
        #[arg(long)]
        until: Option<String>,
        /// Prefix each line with its time.
        #[arg(short, long)]
        timestamps: bool,
        /// The container.
        container: String,
    },
    /// Stop containers: the stop signal, then SIGKILL after the timeout.
    Stop {
        /// Seconds to wait before SIGKILL.
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        /// The containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Restart containers (stop, then start).
    Restart {
        /// Seconds to wait before SIGKILL.
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        /// The containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to containers.
    Kill {
        /// The signal (`KILL`, `SIGTERM`, `15`).
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        /// The containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Start stopped containers.
    Start {
        /// Attach to its output and return its exit code.
        #[arg(short, long)]
        attach: bool,
        /// Attach stdin too.
        #[arg(short, long)]
        interactive: bool,
        /// The containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Wait for containers to exit and print their exit codes.
    Wait {
        /// The containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Attach to a running container's output (and stdin).
    Attach {
        /// Do not send stdin.
        #[arg(long)]
        no_stdin: bool,
        /// The container.
        container: String,
    },
    /// Run a command in a running container.
    Exec {
        /// Do not wait for it.
        #[arg(short, long)]
        detach: bool,
        /// Keep stdin open.
        #[arg(short, long)]
        interactive: bool,
        /// Allocate a terminal.
        #[arg(short, long)]
        tty: bool,
        /// Set an environment variable.
        #[arg(short, long = "env")]
        env: Vec<String>,
        /// Working directory.
        #[arg(short, long)]
        workdir: Option<String>,
        /// User.
        #[arg(short, long)]
        user: Option<String>,
        /// The container.
        container: String,
        /// The command.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Named volumes.
    Volume {
        #[command(subcommand)]
        verb: VolumeVerb,
    },
    /// Networks: bridges with a subnet, NAT egress and names.
    Network {
        #[command(subcommand)]
        verb: NetworkVerb,
    },
    /// Show a container's published ports (`80/tcp -> 0.0.0.0:8080`).
    Port {
        /// The container.
        container: String,
        /// Only this container port (`80` or `80/tcp`).
        port: Option<String>,
    },
    /// Container commands (`container prune`).
    Container {
        #[command(subcommand)]
        verb: ContainerVerb,
    },
    /// Show the processes of a running container.
    Top {
        /// The container.
        container: String,
    },
    /// Remove containers.
    Rm {
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        /// The containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Make a new image from a container's changes.
    Commit {
        /// A comment for the new history entry.
        #[arg(short, long)]
        message: Option<String>,
        /// The author (`Name <email>`).
        #[arg(short, long)]
        author: Option<String>,
        /// Dockerfile-style changes: `CMD ["sh"]`, `ENV K=V`, `EXPOSE 80`, ...
        #[arg(short, long = "change")]
        change: Vec<String>,
        /// Freeze a running container while its changes are read (`--pause=false`: don't).
        #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
        pause: bool,
        /// The container.
        container: String,
        /// The new image's name.
        image: String,
    },
    /// Write a container's filesystem as a tar.
    Export {
        /// The tar file (`-` or none: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// The container.
        container: String,
    },
    /// Check credentials against a registry and store them in docker's config.json.
    /// Remove the credentials `login` stored.
    Logout {
        /// The registry (default docker.io).
        registry: Option<String>,
    },
    Login {
        /// The registry (default docker.io).
        registry: Option<String>,
        /// User name (asked on a terminal when not given).
        #[arg(short, long)]
        username: Option<String>,
        /// Password (prefer --password-stdin).
        #[arg(short, long)]
        password: Option<String>,
        /// Read the password from stdin.
        #[arg(long = "password-stdin")]
        password_stdin: bool,
    },
    /// Apply an image's layers into DIR/rootfs, DIR private to you (0700).
    Unpack {
        /// The image.
        image: String,
        /// The directory (created when missing).
        dir: PathBuf,
        /// Apply straight into DIR with the image's modes: any local user may then reach the
        /// image's setuid binaries and device nodes.
        #[arg(long)]
        public: bool,
    },
    /// Layer files by hand.
    Layer {
        #[command(subcommand)]
        verb: LayerVerb,
    },
    /// Make a one-layer image from a filesystem tar (plain, gzip or zstd).
    Import {
        /// The tar file, an http(s) URL, or `-` for standard input.
        file: String,
        /// The image name to give it.
        image: String,
        /// Dockerfile-style changes: `CMD ["sh"]`, `ENV K=V`, `WORKDIR /w`, `USER u`, ...
        #[arg(short, long = "change")]
        change: Vec<String>,
    },
}

#[derive(Subcommand)]
enum VolumeVerb {
    /// Create a volume.
    Create {
        /// Labels `KEY=VALUE`.
        #[arg(long)]
        label: Vec<String>,
        /// Its name.
        name: String,
    },
    /// List volumes.
    Ls {
        /// Only the names.
        #[arg(short = 'q', long = "quiet")]
        names_only: bool,
    },
    /// Show volumes as JSON.
    Inspect {
        /// The volumes.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes (refused while a container uses one).
    Rm {
        /// The volumes.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum BuilderVerb {
    /// Remove the build cache (its layers go at the next image prune or rmi).
    Prune {
        /// Every entry (there is only one kind; accepted as docker's).
        #[arg(short, long)]
        all: bool,
        /// Do not ask (there is no prompt; accepted as docker's).
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum ImageVerb {
    /// Remove unused images: blobs no name reaches; with `-a`, every image no container
    /// was made from.
    Prune {
        /// Every image without a container, not only dangling content.
        #[arg(short, long)]
        all: bool,
        /// Do not ask (there is no prompt; accepted as docker's).
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum NetworkVerb {
    /// Create a bridge network.
    Create {
        /// Its subnet (default: the first free 10.89.N.0/24).
        #[arg(long)]
        subnet: Option<String>,
        /// The driver (bridge is the only one).
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        /// Its name.
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only the ids.
        #[arg(short = 'q', long = "quiet")]
        ids_only: bool,
    },
    /// Show networks as JSON.
    Inspect {
        /// The networks.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks (refused while a container is on one).
    #[command(alias = "remove")]
    Rm {
        /// The networks.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Connect a container to a network (now if it runs, and at every start).
    Connect {
        /// The network.
        network: String,
        /// The container.
        container: String,
    },
    /// Disconnect a container from a network.
    Disconnect {
        /// The network.
        network: String,
        /// The container.
        container: String,
    },
}

#[derive(Subcommand)]
enum ContainerVerb {
    /// Remove every stopped container.
    Prune {
        /// Do not ask (there is no prompt; accepted as docker's).
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short, long)]
    detach: bool,
    /// Keep stdin open.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a terminal.
    #[arg(short, long)]
    tty: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Set an environment variable (`KEY=VALUE`).
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Read environment variables from a file (`KEY=VALUE` lines, `#` comments).
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// Working directory.
    #[arg(short, long)]
    workdir: Option<String>,
    /// User (`uid`, `uid:gid`, `name`, `name:group`).
    #[arg(short, long)]
    user: Option<String>,
    /// Container name.
    #[arg(long)]
    name: Option<String>,
    /// Hostname.
    #[arg(long)]
    hostname: Option<String>,
    /// bridge (the default as root), a network's name, slirp4netns (the default rootless),
    /// none, host, or container:NAME.
    #[arg(long, alias = "net")]
    network: Option<String>,
    /// Publish a port: `[IP:][HOST[-END]:]CTR[-END][/tcp|/udp]`.
    #[arg(short, long = "publish")]
    publish: Vec<String>,
    /// Publish every EXPOSEd port on a free host port.
    #[arg(short = 'P', long)]
    publish_all: bool,
    /// Replace the image's entrypoint.
    #[arg(long)]
    entrypoint: Option<String>,
    /// `os/arch[/variant]`.
    #[arg(long)]
    platform: Option<String>,
    /// Bind a host path: `HOST:CONTAINER[:ro]`.
    #[arg(short, long = "volume")]
    volume: Vec<String>,
    /// `type=bind|volume|tmpfs,source=...,target=...[,readonly]`.
    #[arg(long)]
    mount: Vec<String>,
    /// A tmpfs: `CONTAINER[:OPTIONS]`.
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// Memory limit (`64m`, `1g`, bytes).
    #[arg(short, long)]
    memory: Option<String>,
    /// CPUs (`1.5`).
    #[arg(long)]
    cpus: Option<f64>,
    /// Process limit.
    #[arg(long)]
    pids_limit: Option<i64>,
    /// Add a capability.
    #[arg(long)]
    cap_add: Vec<String>,
    /// Drop a capability.
    #[arg(long)]
    cap_drop: Vec<String>,
    /// Every capability and device.
    #[arg(long)]
    privileged: bool,
    /// `no-new-privileges`.
    #[arg(long)]
    security_opt: Vec<String>,
    /// `no`, `on-failure[:N]`, `always`, `unless-stopped`.
    #[arg(long, default_value = "no")]
    restart: String,
    /// `max-size=10m`, `max-file=3`.
    #[arg(long)]
    log_opt: Vec<String>,
    /// A label `KEY=VALUE`.
    #[arg(short, long)]
    label: Vec<String>,
    /// The signal `stop` sends.
    #[arg(long)]
    stop_signal: Option<String>,
    /// A tiny reaper as pid 1 that passes signals on.
    #[arg(long)]
    init: bool,
    /// The image.
    image: String,
    /// The command and its arguments (default: the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Subcommand)]
enum LayerVerb {
    /// Apply one layer file (gzip, zstd or plain tar, found by its first bytes) to a directory.
    Apply {
        /// The directory.
        dir: PathBuf,
        /// The layer file.
        file: PathBuf,
    },
    /// Write the changes from LOWER to UPPER as a layer file.
    Diff {
        /// The original tree.
        lower: PathBuf,
        /// The changed tree.
        upper: PathBuf,
        /// The layer file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// gzip, zstd or none.
        #[arg(long, default_value = "gzip")]
        compression: String,
    },
}

#[derive(Subcommand)]
enum ManifestVerb {
    /// Show a manifest or index from its registry, each platform's manifest included.
    Inspect {
        /// The image.
        image: String,
    },
    /// Make a multi-platform index LIST from images (pulled when they are not here), each
    /// entry with the platform its config says.
    Create {
        /// Add to an existing LIST.
        #[arg(short, long)]
        amend: bool,
        /// The list's name.
        list: String,
        /// The images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Set the platform of an image's entry in LIST.
    Annotate {
        /// The OS.
        #[arg(long)]
        os: Option<String>,
        /// The architecture.
        #[arg(long)]
        arch: Option<String>,
        /// The variant (`v8`, `v7`).
        #[arg(long)]
        variant: Option<String>,
        /// The list.
        list: String,
        /// The image whose entry changes.
        image: String,
    },
    /// Push LIST and every image it names to LIST's registry.
    Push {
        /// The list.
        list: String,
    },
}

/// `-` means standard input or output, as for docker.
fn dash(p: Option<&Path>) -> Option<&Path> {
    p.filter(|p| p.as_os_str() != "-")
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    // As an io::Error, so that a reader that went away (`| head`) ends it quietly.
    serde_json::to_writer_pretty(&mut out, v).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// `version`: nothing is opened or created.
fn print_version(out: &mut impl Write) -> Result<()> {
    let p = oci_rs_image::PlatformSpec::host();
    writeln!(out, "Client:")?;
    writeln!(out, " Version:           {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(
        out,
        " API version:       none (no daemon: every verb is a library call)"
    )?;
    writeln!(out, " OS/Arch:           {}/{}", p.os, p.architecture)?;
    writeln!(
        out,
        " Runtime:           oci-runtime {} (OCI runtime spec {})",
        env!("CARGO_PKG_VERSION"),
        oci_spec::runtime::VERSION
    )?;
    Ok(())
}

/// The cgroup layout: `2`, `1 (hybrid: v1 controllers, an empty v2 hierarchy)` or `1`.
fn cgroup_version() -> &'static str {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else if Path::new("/sys/fs/cgroup/unified").exists() {
        "1 (hybrid: v1 controllers beside a v2 hierarchy)"
    } else {
        "1"
    }
}

async fn run(cli: Cli) -> Result<()> {
    if matches!(cli.verb, Verb::Version) {
        return print_version(&mut std::io::stdout().lock());
    }
    let mut dir = data_dir(cli.data_dir.as_deref());
    // A verb that only reads never creates the store: with no store yet it reads an empty
    // one, made aside and gone when the verb ends.
    let read_only = matches!(
        cli.verb,
        Verb::Images { .. }
            | Verb::Inspect { .. }
            | Verb::History { .. }
            | Verb::Ps { .. }
            | Verb::Logs { .. }
            | Verb::Port { .. }
            | Verb::Info
            | Verb::Manifest {
                verb: ManifestVerb::Inspect { .. }
            }
    );
    let _empty = if read_only && !dir.exists() {
        let t = tempfile::tempdir()?;
        dir = t.path().join("data");
        Some(t)
    } else {
        None
    };
    let insecure = cli.insecure.clone();
    let images = Images::open(&dir, cli.insecure, cli.quiet).await?;
    let mut out = std::io::stdout().lock();
    match cli.verb {
        Verb::Version => print_version(&mut out)?,
        Verb::Info => {
            let store = Containers::open(&dir)?;
            let views = store.list()?;
            let running = views
                .iter()
                .filter(|v| v.status.state == oci_rs_runtime::MonitorState::Running)
                .count();
            let n_images = images.list().await?.len();
            let root = rustix::process::geteuid().is_root();
            let p = oci_rs_image::PlatformSpec::host();
            let uts = rustix::system::uname();
            writeln!(
                out,
                "Client: oci {} (daemonless)",
                env!("CARGO_PKG_VERSION")
            )?;
            writeln!(out, " Containers: {}", views.len())?;
            writeln!(out, "  Running: {running}")?;
            writeln!(out, "  Stopped: {}", views.len() - running)?;
            writeln!(out, " Images: {n_images}")?;
            writeln!(
                out,
                " Storage Driver: {}",
                if root {
                    "overlay (snapshots)"
                } else {
                    "copy (rootless snapshots)"
                }
            )?;
            writeln!(out, " Data Root: {}", dir.display())?;
            writeln!(out, " Cgroup Version: {}", cgroup_version())?;
            writeln!(
                out,
                " Runtime: oci-runtime (in process, monitored by oci-monitor)"
            )?;
            writeln!(
                out,
                " Network: {}",
                if root {
                    format!(
                        "bridge (nftables, netlink), networks under {}",
                        oci_rs_runtime::Networks::host_dir().display()
                    )
                } else {
                    "slirp4netns with a userland port proxy (rootless)".to_owned()
                }
            )?;
            writeln!(out, " Rootless: {}", !root)?;
            writeln!(out, " Kernel Version: {}", uts.release().to_string_lossy())?;
            writeln!(out, " OSType: {}", p.os)?;
            writeln!(out, " Architecture: {}", p.architecture)?;
            writeln!(
                out,
                " CPUs: {}",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            )?;
            writeln!(out, " Insecure Registries:")?;
            writeln!(out, "  127.0.0.0/8 (loopback: always plain HTTP)")?;
            for r in &insecure {
                writeln!(out, "  {r}")?;
            }
        }
        Verb::Pull {
            image,
            platform,
            quiet,
            unpack,
        } => {
            let r = oci_rs_image::ImageReference::parse(&image)?;
            if !quiet {
                let tag = r
                    .tag()
                    .map(str::to_owned)
                    .or_else(|| r.digest().map(|d| d.to_string()))
                    .unwrap_or_else(|| "latest".into());
                // docker names the repository's path, without the registry.
                writeln!(out, "{tag}: Pulling from {}", r.repository())?;
                out.flush()?;
            }
            let report = images
                .pull_report(&image, platform.as_deref(), unpack)
                .await?;
            if quiet {
                writeln!(out, "{}", report.reference)?;
            } else {
                for l in report.lines() {
                    writeln!(out, "{}", oci_rs_image::printable(&l))?;
                }
            }
        }
        Verb::Push { image } => {
            let d = images.push(&image).await?;
            writeln!(out, "Digest: {} size: {}", d.digest(), d.size())?;
        }
        Verb::Tag { source, target } => images.tag(&source, &target).await?,
        Verb::Images {
            json,
            all: _,
            quiet,
            digests,
            no_trunc,
            filter,
            format,
            reference,
        } => {
            let rows = images.list().await?;
            let rows = text::image_filter(rows, reference.as_deref(), &filter)?;
            if json {
                drop(out);
                return print_json(&rows);
            }
            let id_of = |r: &oci_rs_layer::ImageRow| {
                let hex = r.id.split_once(':').map(|(_, h)| h).unwrap_or(&r.id);
                if no_trunc {
                    r.id.clone()
                } else {
                    short(hex).to_owned()
                }
            };
            if quiet {
                let mut seen = std::collections::BTreeSet::new();
                for r in &rows {
                    if seen.insert(r.id.clone()) {
                        writeln!(out, "{}", id_of(r))?;
                    }
                }
                return Ok(());
            }
            if let Some(f) = format {
                for r in &rows {
                    let doc = serde_json::json!({
                        "Repository": r.repository,
                        "Tag": r.tag,
                        "ID": id_of(r),
                        "Digest": r.digest,
                        "CreatedSince": r.created.map(text::ago).unwrap_or_else(|| "N/A".into()),
                        "CreatedAt": r.created.map(oci_rs_runtime::rfc3339).unwrap_or_default(),
                        "Size": text::human_size(r.size),
                    });
                    writeln!(out, "{}", text::format_template(&f, &doc)?)?;
                }
                return Ok(());
            }
            let digest_col = if digests { "DIGEST" } else { "" };
            writeln!(
                out,
                "{:<40} {:<16} {}{:<14} {:<18} SIZE",
                "REPOSITORY",
                "TAG",
                if digests {
                    format!("{digest_col:<72} ")
                } else {
                    String::new()
                },
                "IMAGE ID",
                "CREATED"
            )?;
            for r in &rows {
                // Names come from the store, which an archive's or a registry's tags fill.
                writeln!(
                    out,
                    "{:<40} {:<16} {}{:<14} {:<18} {}",
                    oci_rs_image::printable(&r.repository),
                    oci_rs_image::printable(&r.tag),
                    if digests {
                        format!("{:<72} ", oci_rs_image::printable(&r.digest))
                    } else {
                        String::new()
                    },
                    id_of(r),
                    r.created.map(text::ago).unwrap_or_else(|| "N/A".into()),
                    text::human_size(r.size)
                )?;
            }
        }
        Verb::History {
            no_trunc,
            quiet,
            human,
            image,
        } => {
            let rows = images.history(&image).await?;
            let id = |r: &oci_rs_layer::HistoryRow| match &r.id {
                Some(i) if no_trunc => i.clone(),
                Some(i) => short(i.trim_start_matches("sha256:")).to_owned(),
                None => "<missing>".into(),
            };
            if quiet {
                for r in &rows {
                    writeln!(out, "{}", id(r))?;
                }
                return Ok(());
            }
            writeln!(
                out,
                "{:<14} {:<20} {:<47} {:<10} COMMENT",
                "IMAGE", "CREATED", "CREATED BY", "SIZE"
            )?;
            for r in &rows {
                // `created_by` and the comment are the image's text: a hostile image must
                // not send escape sequences to the terminal. Tabs read as spaces, as before.
                let by = oci_rs_image::printable(&r.created_by.replace('\t', " ")).into_owned();
                let by = if no_trunc || by.chars().count() <= 45 {
                    by
                } else {
                    format!("{}…", by.chars().take(44).collect::<String>())
                };
                let created = match (r.created, human) {
                    (None, _) => "N/A".to_owned(),
                    (Some(t), true) => text::ago(t),
                    (Some(t), false) => oci_rs_runtime::rfc3339(t),
                };
                let size = if human {
                    text::human_size(r.size)
                } else {
                    r.size.to_string()
                };
                writeln!(
                    out,
                    "{:<14} {:<20} {:<47} {:<10} {}",
                    id(r),
                    created,
                    by,
                    size,
                    oci_rs_image::printable(&r.comment)
                )?;
            }
        }
        Verb::Build {
            tag,
            file,
            build_arg,
            target,
            no_cache,
            pull,
            platform,
            label,
            network,
            iidfile,
            progress,
            quiet,
            context,
        } => {
            if !matches!(progress.as_str(), "plain" | "tty" | "auto") {
                anyhow::bail!("--progress {progress}: use plain or tty");
            }
            let network = match network.as_str() {
                "none" | "default" => oci_rs_runtime::BuildNetwork::None,
                "host" => oci_rs_runtime::BuildNetwork::Host,
                n => anyhow::bail!("--network {n}: a build step runs with none or host"),
            };
            let pairs = |list: Vec<String>,
                         env: bool|
             -> Result<std::collections::BTreeMap<String, String>> {
                let mut m = std::collections::BTreeMap::new();
                for kv in list {
                    match kv.split_once('=') {
                        Some((k, v)) => {
                            m.insert(k.to_owned(), v.to_owned());
                        }
                        None if env => {
                            if let Ok(v) = std::env::var(&kv) {
                                m.insert(kv, v);
                            }
                        }
                        None => {
                            m.insert(kv, String::new());
                        }
                    }
                }
                Ok(m)
            };
            let opts = oci_rs_runtime::BuildOptions {
                tags: tag,
                build_args: pairs(build_arg, true)?,
                target,
                no_cache,
                pull,
                platform,
                labels: pairs(label, false)?,
                network,
                run_output: None,
                file_label: String::new(),
            };
            let built =
                oci_examples::build::build_cli(&images, &context, file.as_deref(), opts, quiet)
                    .await?;
            if let Some(p) = iidfile {
                std::fs::write(&p, built.id.to_string()).map_err(|e| {
                    anyhow::Error::new(e).context(format!("writing {}", p.display()))
                })?;
            }
            writeln!(out, "{}", built.id)?;
        }
        Verb::Builder {
            verb: BuilderVerb::Prune { .. },
        } => {
            let n = images.prune_cache()?;
            let (_, freed) = images.prune(false).await?;
            writeln!(out, "Deleted build cache objects: {n}")?;
            writeln!(out, "Total reclaimed space: {}", text::human_size(freed))?;
        }
        Verb::Image {
            verb: ImageVerb::Prune { all, force: _ },
        } => {
            let (removed, freed) = images.prune(all).await?;
            if !removed.is_empty() {
                writeln!(out, "Deleted Images:")?;
                for n in removed {
                    writeln!(out, "untagged: {}", oci_rs_image::printable(&n))?;
                }
                writeln!(out)?;
            }
            writeln!(out, "Total reclaimed space: {}", text::human_size(freed))?;
        }
        Verb::Rmi {
            force,
            images: names,
        } => {
            let (untagged, freed) = Containers::open(&dir)?
                .remove_images(&images, &names, force)
                .await?;
            for n in untagged {
                writeln!(out, "Untagged: {}", oci_rs_image::printable(&n))?;
            }
            writeln!(out, "Freed {freed} bytes")?;
        }
        Verb::Inspect {
            format,
            images: names,
        } => {
            let store = Containers::open(&dir)?;
            let mut views = Vec::new();
            for n in &names {
                views.push(match store.resolve(n) {
                    Ok(id) => serde_json::to_value(store.inspect(&id)?)?,
                    Err(_) => serde_json::to_value(images.inspect(n).await?)?,
                });
            }
            match format {
                Some(f) => {
                    for v in &views {
                        writeln!(out, "{}", text::format_template(&f, v)?)?;
                    }
                }
                None => {
                    drop(out);
                    return print_json(&views);
                }
            }
        }
        Verb::Manifest {
            verb: ManifestVerb::Inspect { image },
        } => {
            let v = images.manifest_inspect(&image).await?;
            drop(out);
            return print_json(&v);
        }
        Verb::Manifest {
            verb:
                ManifestVerb::Create {
                    amend,
                    list,
                    images: members,
                },
        } => {
            let d = images.manifest_create(&list, &members, amend).await?;
            writeln!(out, "Created manifest list {list} ({})", d.digest())?;
        }
        Verb::Manifest {
            verb:
                ManifestVerb::Annotate {
                    os,
                    arch,
                    variant,
                    list,
                    image,
                },
        } => {
            images
                .manifest_annotate(
                    &list,
                    &image,
                    os.as_deref(),
                    arch.as_deref(),
                    variant.as_deref(),
                )
                .await?;
        }
        Verb::Manifest {
            verb: ManifestVerb::Push { list },
        } => {
            let d = images.push(&list).await?;
            writeln!(out, "{}", d.digest())?;
        }
        Verb::Save {
            output,
            images: names,
        } => {
            // The archive may go to standard output: release it first.
            drop(out);
            images.save(dash(output.as_deref()), &names).await?;
            return Ok(());
        }
        Verb::Load { input } => {
            for line in images.load(dash(input.as_deref())).await? {
                // Names an archive carries.
                writeln!(out, "{}", oci_rs_image::printable(&line))?;
            }
        }
        Verb::Run(args) => {
            drop(out);
            let code = run_container(&images, &dir, *args).await?;
            std::process::exit(code);
        }
        Verb::Login {
            registry,
            username,
            password,
            password_stdin,
        } => {
            let registry = registry.unwrap_or_else(|| "docker.io".into());
            let interactive = "Cannot perform an interactive login from a non TTY device";
            let username = match username {
                Some(u) => u,
                None => terminal::prompt("Username: ", true)?
                    .ok_or_else(|| anyhow::anyhow!("{interactive}"))?,
            };
            let password = match (password, password_stdin) {
                (Some(_), true) => {
                    anyhow::bail!("--password and --password-stdin are mutually exclusive")
                }
                (Some(p), false) => p,
                (None, true) => {
                    let mut p = String::new();
                    std::io::stdin().read_line(&mut p)?;
                    p.trim_end_matches(['\n', '\r']).to_owned()
                }
                (None, false) => terminal::prompt("Password: ", false)?
                    .ok_or_else(|| anyhow::anyhow!("{interactive}"))?,
            };
            if username.is_empty() || password.is_empty() {
                anyhow::bail!("a user name and a password are needed");
            }
            match oci_examples::images::login(&registry, &username, &password, &insecure).await? {
                oci_rs_registry_client::StoredIn::ConfigFile(path) => {
                    writeln!(out, "Login Succeeded (credentials in {})", path.display())?
                }
                oci_rs_registry_client::StoredIn::Helper(h) => writeln!(
                    out,
                    "Login Succeeded (credentials in the docker-credential-{h} store)"
                )?,
                _ => writeln!(out, "Login Succeeded")?,
            }
        }
        Verb::Logout { registry } => {
            let registry = registry.unwrap_or_else(|| "docker.io".into());
            if oci_examples::images::logout(&registry).await? {
                writeln!(out, "Removing login credentials for {registry}")?;
            } else {
                writeln!(out, "Not logged in to {registry}")?;
            }
        }
        v @ (Verb::Ps { .. }
        | Verb::Logs { .. }
        | Verb::Stop { .. }
        | Verb::Restart { .. }
        | Verb::Kill { .. }
        | Verb::Start { .. }
        | Verb::Wait { .. }
        | Verb::Attach { .. }
        | Verb::Exec { .. }
        | Verb::Volume { .. }
        | Verb::Network { .. }
        | Verb::Port { .. }
        | Verb::Container { .. }
        | Verb::Top { .. }
        | Verb::Rm { .. }) => {
            drop(out);
            let code = container_verb(&dir, v).await?;
            if code != 0 {
                std::process::exit(code);
            }
        }
        Verb::Commit {
            message,
            author,
            change,
            pause,
            container,
            image,
        } => {
            let how = oci_rs_layer::CommitOptions {
                message,
                author,
                changes: change,
                created_by: None,
            };
            let d = Containers::open(&dir)?
                .commit(&images, &container, &image, &how, pause)
                .await?;
            writeln!(out, "{}", d.digest())?;
        }
        Verb::Export { output, container } => {
            drop(out);
            images
                .export(
                    &Containers::open(&dir)?,
                    &container,
                    dash(output.as_deref()),
                )
                .await?;
            return Ok(());
        }
        Verb::Unpack { image, dir, public } => {
            let r = images.unpack(&image, &dir, public).await?;
            writeln!(out, "{} layers, {} entries", r.0, r.1)?;
        }
        Verb::Layer {
            verb: LayerVerb::Apply { dir, file },
        } => {
            let r = oci_examples::images::apply_file(&dir, &file).await?;
            let id = r.diff_id.map(|d| d.to_string()).unwrap_or_default();
            writeln!(out, "{} entries, diff id {id}", r.entries)?;
        }
        Verb::Layer {
            verb:
                LayerVerb::Diff {
                    lower,
                    upper,
                    output,
                    compression,
                },
        } => {
            let (digest, diff_id) =
                oci_examples::images::diff_file(&lower, &upper, &output, &compression).await?;
            writeln!(out, "digest {digest} diff id {diff_id}")?;
        }
        Verb::Import {
            file,
            image,
            change,
        } => {
            let d = images.import(&file, &image, &change).await?;
            writeln!(out, "{}", d.digest())?;
        }
    }
    Ok(())
}

fn main() {
    // A container's monitor is this program again (see oci_rs_runtime::monitor).
    oci_rs_runtime::serve_if_requested();
    // Usage errors as docker gives them: one line and exit 125 (help and version as clap's).
    let cli = match Cli::try_parse_from(docker_spellings(std::env::args_os().collect())) {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp
                    | clap::error::ErrorKind::DisplayVersion
                    | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("oci: {first} (see 'oci --help')");
            std::process::exit(EXIT_TOOL_FAILURE);
        }
    };
    // Only `run` starts containers; before any thread, so that they cannot reach this
    // program's file (CVE-2019-5736).
    if matches!(
        cli.verb,
        Verb::Run { .. }
            | Verb::Start { .. }
            | Verb::Restart { .. }
            | Verb::Exec { .. }
            | Verb::Build { .. }
    ) {
        if let Err(e) = oci_rs_runtime::reexec_sealed() {
            eprintln!("oci: {e}");
            std::process::exit(EXIT_TOOL_FAILURE);
        }
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oci: cannot start the runtime: {e}");
            std::process::exit(EXIT_TOOL_FAILURE);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        // A reader that went away (`oci logs x | head`) is not a failure.
        let broken_pipe = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if broken_pipe {
            std::process::exit(0);
        }
        // Messages name images, tags, files and Dockerfile text: line breaks are kept (a
        // failed step's output spans lines), every other control character is escaped.
        let msg = format!("{e:#}");
        let msg: Vec<_> = msg.split('\n').map(oci_rs_image::printable).collect();
        eprintln!("oci: {}", msg.join("\n"));
        std::process::exit(EXIT_TOOL_FAILURE);
    }
}

async fn run_container(images: &Images, dir: &Path, a: RunArgs) -> Result<i32> {
    let store = Containers::open(dir)?;
    let rootless = !rustix::process::geteuid().is_root();
    let net_arg = a
        .network
        .clone()
        .unwrap_or_else(|| if rootless { "slirp4netns" } else { "bridge" }.to_owned());
    let (network, join_network, networks) = match net_arg.as_str() {
        "none" => (NetworkMode::None, None, Vec::new()),
        "host" => (NetworkMode::Host, None, Vec::new()),
        "slirp4netns" => (NetworkMode::Slirp, None, Vec::new()),
        other => match other.strip_prefix("container:") {
            Some(name) => (
                NetworkMode::None,
                Some(store.network_namespace(name)?),
                Vec::new(),
            ),
            None if rootless => anyhow::bail!(
                "network {other:?} needs root: a rootless container uses slirp4netns, none or host"
            ),
            None => {
                let n = store.networks().get(other)?;
                (NetworkMode::Bridge, None, vec![n.name])
            }
        },
    };
    let mut publish = Vec::new();
    for p in &a.publish {
        publish.extend(oci_rs_runtime::parse_publish(p)?);
    }
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(text::read_env_file(f)?);
    }
    env.extend(a.env);
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    let parsed: Vec<MountArg> = a
        .volume
        .iter()
        .map(|v| parse_volume_arg(v))
        .chain(a.mount.iter().map(|m| parse_mount_arg(m)))
        .collect::<Result<_, _>>()?;
    for m in parsed {
        match m {
            MountArg::Extra(e) => mounts.push(e),
            MountArg::Volume {
                name,
                target,
                readonly,
            } => volumes.push((name, target, readonly)),
        }
    }
    for t in &a.tmpfs {
        mounts.push(ExtraMount::parse_tmpfs(t)?);
    }
    let mut no_new_privileges = false;
    let mut seccomp = oci_rs_runtime::SeccompChoice::Default;
    for o in &a.security_opt {
        match o.as_str() {
            "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true" => {
                no_new_privileges = true
            }
            "seccomp=unconfined" | "seccomp:unconfined" => {
                seccomp = oci_rs_runtime::SeccompChoice::Unconfined
            }
            o if o.starts_with("seccomp=") || o.starts_with("seccomp:") => {
                let file = &o[8..];
                let text = std::fs::read(file)
                    .map_err(|e| anyhow::anyhow!("reading the seccomp profile {file}: {e}"))?;
                let profile = serde_json::from_slice(&text)
                    .map_err(|e| anyhow::anyhow!("the seccomp profile {file}: {e}"))?;
                seccomp = oci_rs_runtime::SeccompChoice::Profile(profile);
            }
            other => anyhow::bail!(
                "unsupported --security-opt {other:?} (no-new-privileges, seccomp=FILE|unconfined)"
            ),
        }
    }
    let mut labels = std::collections::BTreeMap::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_owned(), v.to_owned());
    }
    let opts = RunOptions {
        args: a.args,
        entrypoint: a.entrypoint.map(|e| vec![e]),
        env,
        workdir: a.workdir,
        user: a.user,
        network,
        join_network,
        hostname: a.hostname,
        terminal: a.tty,
        rootless: None,
        mounts,
        read_only: a.read_only,
        memory: a.memory.as_deref().map(text::parse_size).transpose()?,
        cpus: a.cpus,
        pids_limit: a.pids_limit,
        cap_add: a.cap_add,
        cap_drop: a.cap_drop,
        privileged: a.privileged,
        no_new_privileges,
        seccomp,
    };
    if let Some(s) = &a.stop_signal {
        oci_rs_runtime::parse_signal(s)?;
    }
    let found = images
        .image_for_run(&a.image, a.platform.as_deref())
        .await?;
    let image = RunImage::from_store(images, found, &a.image);
    let req = RunRequest {
        opts,
        name: a.name,
        rm: a.rm,
        console_size: (a.tty && !a.detach).then(terminal::console_size).flatten(),
        detach: a.detach,
        interactive: a.interactive,
        restart: a.restart.parse()?,
        log: text::parse_log_opts(&a.log_opt)?,
        labels,
        stop_signal: a.stop_signal,
        volumes,
        init: a.init,
        network_mode: net_arg.starts_with("container:").then(|| net_arg.clone()),
        networks,
        publish,
        publish_all: a.publish_all,
    };
    let (id, monitor) = store.run(&image, req).await?;
    if a.detach {
        writeln!(std::io::stdout(), "{id}")?;
        return Ok(0);
    }
    let code = terminal::attach(&monitor, a.interactive, a.tty).await?;
    if a.rm {
        // The monitor removes it; `run --rm` returns once it is gone, as docker's does.
        store.wait_removed(&id, std::time::Duration::from_secs(30));
    }
    Ok(code)
}

fn network_verb(store: &Containers, verb: NetworkVerb, out: &mut impl Write) -> Result<()> {
    let nets = store.networks();
    match verb {
        NetworkVerb::Create {
            subnet,
            driver,
            name,
        } => {
            if driver != "bridge" {
                anyhow::bail!("unsupported network driver {driver:?} (bridge)");
            }
            let subnet = subnet
                .as_deref()
                .map(oci_rs_runtime::parse_subnet)
                .transpose()?;
            writeln!(out, "{}", nets.create(&name, subnet)?.id)?;
        }
        NetworkVerb::Ls { ids_only } => {
            let mut rows: Vec<(String, String, &str)> = nets
                .list()?
                .into_iter()
                .map(|n| (n.id[..12].to_owned(), n.name, "bridge"))
                .collect();
            // Fixed ids for the two built-in modes: the hex of their names.
            rows.push(("686f73740000".into(), "host".into(), "host"));
            rows.push(("6e6f6e650000".into(), "none".into(), "null"));
            if !ids_only {
                writeln!(
                    out,
                    "{:<14} {:<20} {:<10} SCOPE",
                    "NETWORK ID", "NAME", "DRIVER"
                )?;
            }
            for (id, name, driver) in rows {
                if ids_only {
                    writeln!(out, "{id}")?;
                } else {
                    let name = oci_rs_image::printable(&name);
                    writeln!(out, "{id:<14} {name:<20} {driver:<10} local")?;
                }
            }
        }
        NetworkVerb::Inspect { names } => {
            let eps = nets.endpoints()?;
            let docs = names
                .iter()
                .map(|n| {
                    let n = nets.get(n)?;
                    let containers: serde_json::Map<String, serde_json::Value> = eps
                        .iter()
                        .filter(|e| e.network == n.name)
                        .map(|e| {
                            (
                                e.container.clone(),
                                serde_json::json!({
                                    "Name": e.name,
                                    "MacAddress": e.mac,
                                    "IPv4Address": format!("{}/{}", e.ip, e.prefix),
                                    "IPv6Address": "",
                                }),
                            )
                        })
                        .collect();
                    Ok(serde_json::json!({
                        "Name": n.name,
                        "Id": n.id,
                        "Created": text::rfc3339_s(n.created),
                        "Scope": "local",
                        "Driver": "bridge",
                        "EnableIPv6": false,
                        "IPAM": {"Driver": "default", "Options": {}, "Config": [
                            {"Subnet": n.cidr(), "Gateway": n.gateway.to_string()}
                        ]},
                        "Internal": false,
                        "Attachable": false,
                        "Containers": containers,
                        "Options": {"com.docker.network.bridge.name": n.bridge},
                        "Labels": {},
                    }))
                })
                .collect::<Result<Vec<_>>>()?;
            print_json(&docs)?;
        }
        NetworkVerb::Rm { names } => {
            for n in names {
                nets.remove(&n)?;
                writeln!(out, "{n}")?;
            }
        }
        NetworkVerb::Connect { network, container } => store.connect(&network, &container)?,
        NetworkVerb::Disconnect { network, container } => store.disconnect(&network, &container)?,
    }
    Ok(())
}

async fn container_verb(dir: &Path, v: Verb) -> Result<i32> {
    let store = Containers::open(dir)?;
    let mut out = std::io::stdout().lock();
    match v {
        Verb::Ps {
            all,
            ids_only,
            no_trunc,
            filter,
            format,
        } => {
            let rows = store.list()?;
            let rows = text::filter(rows, all, &filter)?;
            if let Some(f) = format {
                for r in rows {
                    let doc = serde_json::to_value(store.inspect(&r.config.id)?)?;
                    writeln!(out, "{}", text::format_template(&f, &doc)?)?;
                }
                return Ok(0);
            }
            if ids_only {
                for r in rows {
                    let id = if no_trunc {
                        &r.config.id[..]
                    } else {
                        &r.config.id[..12]
                    };
                    writeln!(out, "{id}")?;
                }
                return Ok(0);
            }
            writeln!(
                out,
                "{:<14} {:<24} {:<24} {:<18} {:<28} {:<24} NAMES",
                "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS"
            )?;
            for r in rows {
                let id = if no_trunc {
                    &r.config.id[..]
                } else {
                    &r.config.id[..12]
                };
                // The command is the image's (or the user's) text, the image reference and
                // the name the user's: all shown through `printable`, as every table does.
                let cmd = format!(
                    "\"{}\"",
                    oci_rs_image::printable(&r.config.command.join(" "))
                );
                let cmd = if no_trunc || cmd.chars().count() <= 22 {
                    cmd
                } else {
                    format!("{}…\"", cmd.chars().take(19).collect::<String>())
                };
                writeln!(
                    out,
                    "{:<14} {:<24} {:<24} {:<18} {:<28} {:<24} {}",
                    id,
                    oci_rs_image::printable(&r.config.image),
                    cmd,
                    text::ago(r.config.created),
                    text::status_text(&r.status),
                    text::ports_text(&r.status),
                    oci_rs_image::printable(&r.config.name)
                )?;
            }
        }
        Verb::Logs {
            follow,
            tail,
            since,
            until,
            timestamps,
            container,
        } => {
            let q = oci_rs_runtime::LogQuery {
                since: since.as_deref().map(text::parse_time).transpose()?,
                until: until.as_deref().map(text::parse_time).transpose()?,
                tail: match tail.as_str() {
                    "all" => None,
                    n => Some(
                        n.parse()
                            .map_err(|_| anyhow::anyhow!("invalid --tail {n:?}"))?,
                    ),
                },
                timestamps,
            };
            drop(out);
            let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
            store.logs(&container, &q, follow, &mut |s, b| {
                let w: &mut dyn Write = match s {
                    oci_rs_runtime::LogStream::Stdout => &mut stdout,
                    oci_rs_runtime::LogStream::Stderr => &mut stderr,
                };
                w.write_all(b)?;
                w.flush()
            })?;
        }
        Verb::Stop { time, containers } => {
            for c in containers {
                store.stop(&c, std::time::Duration::from_secs(time))?;
                writeln!(out, "{c}")?;
            }
        }
        Verb::Restart { time, containers } => {
            for c in containers {
                store.stop(&c, std::time::Duration::from_secs(time))?;
                store.start(&c, false)?;
                writeln!(out, "{c}")?;
            }
        }
        Verb::Kill { signal, containers } => {
            let sig = oci_rs_runtime::parse_signal(&signal)?;
            for c in containers {
                store.kill(&c, sig)?;
                writeln!(out, "{c}")?;
            }
        }
        Verb::Start {
            attach,
            interactive,
            containers,
        } => {
            if attach && containers.len() > 1 {
                anyhow::bail!("you cannot start and attach multiple containers at once");
            }
            for c in containers {
                let m = store.start(&c, attach)?;
                if attach {
                    drop(out);
                    return terminal::attach(&m, interactive, false).await;
                }
                writeln!(out, "{c}")?;
            }
        }
        Verb::Wait { containers } => {
            for c in containers {
                writeln!(out, "{}", store.wait(&c)?)?;
            }
        }
        Verb::Attach {
            no_stdin,
            container,
        } => {
            let m = store.monitor(&container)?;
            drop(out);
            return terminal::attach(&m, !no_stdin, false).await;
        }
        Verb::Exec {
            detach,
            interactive,
            tty,
            env,
            workdir,
            user,
            container,
            args,
        } => {
            drop(out);
            let req = ExecRequest {
                args,
                env,
                workdir,
                user,
                interactive,
                detach,
                tty,
            };
            // Blocking: the process is waited for (and a terminal relayed) on this thread.
            return tokio::task::spawn_blocking(move || -> Result<i32> {
                if !tty {
                    return Ok(store.exec(&container, &req)?);
                }
                let (c, mut process) = store.exec_process(&container, &req)?;
                process.set_console_size(terminal::console_size());
                terminal::exec_tty(&c, &process, interactive)
            })
            .await
            .map_err(|e| anyhow::anyhow!("exec: {e}"))?;
        }
        Verb::Rm { force, containers } => {
            for c in containers {
                store.remove(&c, force)?;
                writeln!(out, "{c}")?;
            }
        }
        Verb::Volume { verb } => {
            let vols = Volumes::open(dir)?;
            match verb {
                VolumeVerb::Create { label, name } => {
                    let labels = label
                        .iter()
                        .map(|l| {
                            let (k, v) = l.split_once('=').unwrap_or((l, ""));
                            (k.to_owned(), v.to_owned())
                        })
                        .collect();
                    vols.create(&name, labels)?;
                    writeln!(out, "{name}")?;
                }
                VolumeVerb::Ls { names_only } => {
                    if !names_only {
                        writeln!(out, "{:<10} VOLUME NAME", "DRIVER")?;
                    }
                    for v in vols.list()? {
                        if names_only {
                            writeln!(out, "{}", oci_rs_image::printable(&v.name))?;
                        } else {
                            writeln!(out, "{:<10} {}", v.driver, oci_rs_image::printable(&v.name))?;
                        }
                    }
                }
                VolumeVerb::Inspect { names } => {
                    let infos = names
                        .iter()
                        .map(|n| vols.inspect(n))
                        .collect::<Result<Vec<_>, _>>()?;
                    drop(out);
                    print_json(&infos)?;
                }
                VolumeVerb::Rm { names } => {
                    for n in names {
                        vols.remove(&n, &store.volume_users(&n))?;
                        writeln!(out, "{n}")?;
                    }
                }
            }
        }
        Verb::Network { verb } => network_verb(&store, verb, &mut out)?,
        Verb::Port { container, port } => {
            let v = store.view(&container)?;
            let ports = v.status.network.map(|n| n.ports).unwrap_or_default();
            let want = port.map(|p| {
                if p.contains('/') {
                    p
                } else {
                    format!("{p}/tcp")
                }
            });
            let mut any = false;
            for p in ports {
                let key = format!("{}/{}", p.container_port, p.proto);
                if want.as_ref().is_none_or(|w| *w == key) {
                    any = true;
                    if want.is_some() {
                        writeln!(out, "{}:{}", p.host_ip, p.host_port)?;
                    } else {
                        writeln!(out, "{key} -> {}:{}", p.host_ip, p.host_port)?;
                    }
                }
            }
            if let (Some(w), false) = (want, any) {
                anyhow::bail!("no public port '{w}' published for {container}");
            }
        }
        Verb::Container {
            verb: ContainerVerb::Prune { force: _ },
        } => {
            let gone = store.prune()?;
            if !gone.is_empty() {
                writeln!(out, "Deleted Containers:")?;
            }
            for id in &gone {
                writeln!(out, "{id}")?;
            }
        }
        Verb::Top { container } => {
            writeln!(out, "{:<8} {:<8} {:<10} CMD", "PID", "UID", "TIME")?;
            for p in store.top(&container)? {
                let secs = p.cpu.as_secs();
                writeln!(
                    out,
                    "{:<8} {:<8} {:02}:{:02}:{:02}   {}",
                    p.pid,
                    p.uid,
                    secs / 3600,
                    secs / 60 % 60,
                    secs % 60,
                    // Any process in the container sets its own argv: no escape sequence
                    // from it reaches the terminal.
                    oci_rs_image::printable(&p.command)
                )?;
            }
        }
        _ => anyhow::bail!("not a container verb"),
    }
    Ok(0)
}

/// docker's management-command spellings (`container ls`, `image rm`, ...) as the verbs they
/// name, so scripts written for docker run unchanged. `container prune` is a verb of its own.
fn docker_spellings(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    // Skip the global options to find the verb.
    let mut i = 1;
    while let Some(a) = args.get(i).and_then(|a| a.to_str()) {
        match a {
            "-q" | "--quiet" => i += 1,
            "--data-dir" | "--insecure-registry" => i += 2,
            a if a.starts_with("--data-dir=") || a.starts_with("--insecure-registry=") => i += 1,
            _ => break,
        }
    }
    let (Some(group), Some(verb)) = (
        args.get(i).and_then(|a| a.to_str()),
        args.get(i + 1).and_then(|a| a.to_str()),
    ) else {
        return args;
    };
    let mapped = match (group, verb) {
        ("container", "ls" | "list" | "ps") => "ps",
        (
            "container",
            v @ ("rm" | "inspect" | "start" | "stop" | "restart" | "kill" | "wait" | "logs"
            | "exec" | "attach" | "top" | "run" | "commit" | "export"),
        ) => v,
        ("image", "ls" | "list") => "images",
        ("image", "rm") => "rmi",
        (
            "image",
            v @ ("inspect" | "pull" | "push" | "tag" | "save" | "load" | "import" | "history"),
        ) => v,
        _ => return args,
    };
    args.splice(i..i + 2, [std::ffi::OsString::from(mapped)]);
    args
}

#[cfg(test)]
mod tests {
    use super::docker_spellings;

    fn map(args: &[&str]) -> Vec<String> {
        docker_spellings(args.iter().map(Into::into).collect())
            .into_iter()
            .map(|a| a.into_string().unwrap_or_default())
            .collect()
    }

    #[test]
    fn management_commands_name_the_verbs() {
        assert_eq!(map(&["oci", "container", "ls", "-a"]), ["oci", "ps", "-a"]);
        assert_eq!(
            map(&["oci", "-q", "--data-dir", "/d", "image", "rm", "x"]),
            ["oci", "-q", "--data-dir", "/d", "rmi", "x"]
        );
        assert_eq!(map(&["oci", "image", "ls"]), ["oci", "images"]);
        assert_eq!(
            map(&["oci", "container", "prune"]),
            ["oci", "container", "prune"]
        );
        assert_eq!(map(&["oci", "ps", "container"]), ["oci", "ps", "container"]);
        assert_eq!(
            map(&["oci", "container", "exec", "c", "ls"]),
            ["oci", "exec", "c", "ls"]
        );
    }
}

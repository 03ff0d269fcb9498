//! The command line: docker's verbs and flags, as clap parses them.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "oci",
    version,
    about = "A docker-like tool over the oci-rs crates"
)]
pub(crate) struct Cli {
    /// Where images (and containers) are kept.
    #[arg(long, global = true)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Registries reached over plain HTTP (loopback registries always are).
    #[arg(long = "insecure-registry", global = true)]
    pub(crate) insecure: Vec<String>,
    /// No progress bars (before the verb: `ps -q` and others have their own `-q`).
    #[arg(long, short)]
    pub(crate) quiet: bool,
    #[command(subcommand)]
    pub(crate) verb: Verb,
}

// Parsed once per process: `build`'s many flags make its variant the largest, and boxing
// it buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub(crate) enum Verb {
    /// Pull an image from a registry.
    Pull {
        /// Print only the image's full name.
        #[arg(short, long)]
        quiet: bool,
        /// Every tag of the repository.
        #[arg(short, long = "all-tags")]
        all_tags: bool,
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
    Info {
        /// A Go template over docker's `/info` fields (`{{.ServerVersion}}`, `{{json .}}`),
        /// or `json`.
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Versions (docker's `version`).
    Version {
        /// A Go template over docker's version document (`{{.Client.Version}}`,
        /// `{{.Server.Version}}`), or `json`.
        #[arg(short, long)]
        format: Option<String>,
    },
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
        /// A Go template per layer (`{{.CreatedBy}} {{.Size}}`), `table TEMPLATE` or `json`.
        #[arg(long)]
        format: Option<String>,
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
        /// `os/arch[/variant]` to build for; several, comma-separated, make one image per
        /// platform under an image index.
        #[arg(long)]
        platform: Option<String>,
        /// Labels on the image (`--label K=V`).
        #[arg(long)]
        label: Vec<String>,
        /// A secret for `RUN --mount=type=secret`: id=ID,src=PATH or id=ID,env=NAME.
        #[arg(long)]
        secret: Vec<String>,
        /// The network of RUN steps: default (the default bridge, with egress; slirp4netns
        /// rootless), none or host.
        #[arg(long, default_value = "default")]
        network: String,
        /// Write the image id to this file.
        #[arg(long)]
        iidfile: Option<PathBuf>,
        /// Also write the result: DIR, or type=local|tar|oci|docker,dest=PATH.
        #[arg(long, short = 'o')]
        output: Vec<String>,
        /// Push each -t name to its registry once built.
        #[arg(long)]
        push: bool,
        /// Export the build cache: type=registry,ref=NAME[,mode=max] or type=local,dest=DIR.
        #[arg(long = "cache-to")]
        cache_to: Vec<String>,
        /// Take steps from a cache: NAME, type=registry,ref=NAME or type=local,src=DIR.
        #[arg(long = "cache-from")]
        cache_from: Vec<String>,
        /// An SSH agent for RUN --mount=type=ssh: ID (SSH_AUTH_SOCK's agent) or ID=SOCKET.
        #[arg(long)]
        ssh: Vec<String>,
        /// Let steps ask for network.host or security.insecure (comma-separated).
        #[arg(long, value_delimiter = ',')]
        allow: Vec<String>,
        /// Progress output: plain or tty (both print one line per step), or quiet (as -q).
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
    /// Manage images: `image ls`, `inspect`, `rm`, `pull`, `push`, `tag`, `save`, `load`,
    /// `import`, `history`, `build`, `prune`.
    #[command(
        after_help = "Also: image ls|list, inspect, rm|remove, pull, push, tag, save, load, \
                      import, history and build, as the top-level verbs of those names."
    )]
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
        /// Only this kind of object: `container` or `image`.
        #[arg(long = "type", value_parser = ["container", "image"])]
        kind: Option<String>,
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
    /// Make a new container from an image (pulled when missing) without starting it: its id.
    /// `start` starts it.
    Create(Box<RunArgs>),
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
        /// `status=`, `name=`, `id=`, `label=KEY[=VALUE]`, `exited=CODE`, `ancestor=IMAGE`,
        /// `network=`, `volume=`, `health=healthy|unhealthy|starting|none`.
        #[arg(short, long)]
        filter: Vec<String>,
        /// A Go template over docker's ps fields (`{{.ID}}`, `{{.Names}}`, `{{.Status}}`,
        /// `{{.Label "k"}}`, ...), `table TEMPLATE`, or `json`.
        #[arg(long)]
        format: Option<String>,
        /// The last N containers made (all states).
        #[arg(short = 'n', long)]
        last: Option<usize>,
        /// The last container made (all states).
        #[arg(short, long)]
        latest: bool,
        /// The SIZE column: the bytes each wrote.
        #[arg(short, long)]
        size: bool,
    },
    /// Show what happens to containers, networks and volumes, as it happens.
    Events {
        /// From a time (RFC 3339) or a duration ago (`10m`); without it, only what comes.
        #[arg(long)]
        since: Option<String>,
        /// Until a time or a duration ago; without it, until interrupted.
        #[arg(long)]
        until: Option<String>,
        /// `type=`, `event=`, `container=`, `image=`, `label=KEY[=VALUE]`, `network=`,
        /// `volume=`.
        #[arg(short, long)]
        filter: Vec<String>,
        /// Go-template-style fields of each event's JSON (docker's): `{{.Action}}`, or
        /// `json`.
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
        /// Show the attributes `--log-opt labels=`/`env=` chose before each line.
        #[arg(long)]
        details: bool,
        /// The container.
        container: String,
    },
    /// Stop containers: the stop signal, then SIGKILL after the timeout.
    Stop {
        /// Seconds to wait before SIGKILL (default: the container's --stop-timeout, or 10).
        #[arg(short, long)]
        time: Option<u64>,
        /// The containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Restart containers (stop, then start).
    Restart {
        /// Seconds to wait before SIGKILL (default: each container's stop timeout).
        #[arg(short, long)]
        time: Option<u64>,
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
        /// The keys that detach (docker's `ctrl-p,ctrl-q` by default; `""`: none).
        #[arg(long)]
        detach_keys: Option<String>,
        /// Forward signals to the container while attached.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        sig_proxy: bool,
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
        /// The keys that detach (docker's `ctrl-p,ctrl-q` by default; `""`: none).
        #[arg(long)]
        detach_keys: Option<String>,
        /// Forward signals to the container.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        sig_proxy: bool,
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
        /// Read environment variables from a file of `KEY=VALUE` lines.
        #[arg(long = "env-file")]
        env_file: Vec<PathBuf>,
        /// Working directory.
        #[arg(short, long)]
        workdir: Option<String>,
        /// User.
        #[arg(short, long)]
        user: Option<String>,
        /// Every capability (the container's seccomp filter and devices stay).
        #[arg(long)]
        privileged: bool,
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
    /// Manage containers: `container ls`, `inspect`, `rm`, `run`, `create`, `start`, `stop`,
    /// `exec`, `logs`, ... and `prune`.
    #[command(
        after_help = "Also: container ls|list|ps, inspect, rm|remove, start, stop, restart, \
                      kill, wait, logs, exec, attach, top, run, create, commit, export, cp, \
                      diff, pause, unpause, port, rename, stats and update, as the top-level \
                      verbs of those names."
    )]
    Container {
        #[command(subcommand)]
        verb: ContainerVerb,
    },
    /// Show running containers' use: CPU, memory, network and block I/O, processes.
    Stats {
        /// Every container, those not running with zeros (else the running ones).
        #[arg(short, long)]
        all: bool,
        /// Whole ids.
        #[arg(long)]
        no_trunc: bool,
        /// One table, then end (else a table a second).
        #[arg(long)]
        no_stream: bool,
        /// A Go template per container (`{{.Name}} {{.CPUPerc}}`), `table TEMPLATE` or `json`.
        #[arg(long)]
        format: Option<String>,
        /// The containers (default: every running one).
        containers: Vec<String>,
    },
    /// Show the processes of a running container: `ps -ef`'s columns, or the host's `ps`
    /// run with the options given (`oci top c1 -o pid,user,args`, `oci top c1 aux`).
    Top {
        /// The container.
        container: String,
        /// Options for `ps`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_options: Vec<String>,
    },
    /// List what a container changed against its image (A added, C changed, D deleted).
    Diff {
        /// The container.
        container: String,
    },
    /// Suspend every process of containers (the cgroup freezer).
    Pause {
        /// The containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Resume paused containers.
    Unpause {
        /// The containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Change the resource limits of running containers, or the restart policy.
    Update {
        /// `no`, `on-failure[:N]`, `always`, `unless-stopped`.
        #[arg(long)]
        restart: Option<String>,
        #[command(flatten)]
        resources: ResourceArgs,
        /// The containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Rename a container.
    Rename {
        /// The container.
        container: String,
        /// Its new name.
        name: String,
    },
    /// Remove containers.
    Rm {
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        /// Remove its anonymous volumes too.
        #[arg(short, long)]
        volumes: bool,
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
        /// The new image's name (without one, the image is untagged: found by its id).
        image: Option<String>,
    },
    /// Copy files between a container and the host: `CONTAINER:PATH HOSTPATH`,
    /// `HOSTPATH CONTAINER:PATH` (into a directory, or as a new name), or `-` for a tar on
    /// standard input or output. Paths in the container are resolved inside its root: its
    /// links never lead out.
    Cp {
        /// Follow a link given as the source, on the host or in the container (docker's `-L`).
        #[arg(short = 'L', long)]
        follow_link: bool,
        /// Into a container: what is written belongs to the container's user (docker's
        /// `-a`); without it, each file keeps its owner.
        #[arg(short, long)]
        archive: bool,
        /// Where from.
        src: String,
        /// Where to.
        dst: String,
    },
    /// Write a container's filesystem as a tar.
    Export {
        /// The tar file (`-` or none: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// The container.
        container: String,
    },
    /// Remove the credentials `login` stored.
    Logout {
        /// The registry (default docker.io).
        registry: Option<String>,
    },
    /// Check credentials against a registry and store them in docker's config.json.
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
    /// The system's services (docker's `system`): `df`, `prune`, `service`, `info`,
    /// `events`.
    #[command(after_help = "Also: system info and system events, as `info` and `events`.")]
    System {
        #[command(subcommand)]
        verb: SystemVerb,
    },
    /// A registry of our own (the distribution API over a directory).
    Registry {
        #[command(subcommand)]
        verb: RegistryVerb,
    },
    /// Make a one-layer image from a filesystem tar (plain, gzip or zstd).
    Import {
        /// The tar file, an http(s) URL, or `-` for standard input.
        file: String,
        /// The image name to give it (without one, the image is untagged: found by its id).
        image: Option<String>,
        /// Dockerfile-style changes: `CMD ["sh"]`, `ENV K=V`, `WORKDIR /w`, `USER u`, ...
        #[arg(short, long = "change")]
        change: Vec<String>,
        /// The platform of the tar's programs (`linux/arm64`; default the host's).
        #[arg(long)]
        platform: Option<String>,
        /// A comment for the image's history (its `Comment`).
        #[arg(short, long)]
        message: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum VolumeVerb {
    /// Create a volume.
    Create {
        /// Labels `KEY=VALUE`.
        #[arg(long)]
        label: Vec<String>,
        /// The local driver's options: `type=none`, `o=bind`, `device=DIR` (a host
        /// directory), or `type=tmpfs`, `o=size=64m`.
        #[arg(short, long = "opt")]
        opt: Vec<String>,
        /// Its name.
        name: String,
    },
    /// List volumes.
    Ls {
        /// Only the names.
        #[arg(short = 'q', long = "quiet")]
        names_only: bool,
        /// `name=`, `label=KEY[=VALUE]`, `label!=`, `driver=`, `dangling=true|false`.
        #[arg(short, long)]
        filter: Vec<String>,
        /// A Go template per volume (`{{.Name}}`, `{{.Driver}}`, `{{.Label "KEY"}}`),
        /// `table TEMPLATE` or `json`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Remove the anonymous volumes no container uses; with `-a`, named ones too.
    Prune {
        /// Named volumes too (docker's `all=true`).
        #[arg(short, long)]
        all: bool,
        /// `label=KEY[=VALUE]`, `label!=`, as `ls`'s.
        #[arg(long)]
        filter: Vec<String>,
        /// Do not ask (nothing asks: accepted as docker's).
        #[arg(short, long)]
        force: bool,
    },
    /// Show volumes as JSON.
    Inspect {
        /// A Go template over each one's document (`{{.Mountpoint}}`, `{{json .}}`).
        #[arg(short, long)]
        format: Option<String>,
        /// The volumes.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes (refused while a container uses one).
    Rm {
        /// A volume that does not exist is no error.
        #[arg(short, long)]
        force: bool,
        /// The volumes.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum BuilderVerb {
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
pub(crate) enum ImageVerb {
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
pub(crate) enum NetworkVerb {
    /// Create a bridge network.
    Create {
        /// Its subnet (default: the first free 10.89.N.0/24); again for the IPv6 one.
        #[arg(long)]
        subnet: Vec<String>,
        /// The bridge's address, the containers' gateway (default: the subnet's first);
        /// again for IPv6.
        #[arg(long)]
        gateway: Vec<String>,
        /// IPv6 too: containers get an address in the IPv6 subnet (default: a random
        /// unique local /64) and the IPv6 default route.
        #[arg(long)]
        ipv6: bool,
        /// No way out: nothing forwarded to or from other interfaces, no default route.
        #[arg(long)]
        internal: bool,
        /// The driver (bridge is the only one).
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        /// A label `KEY=VALUE`.
        #[arg(long)]
        label: Vec<String>,
        /// Its name.
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only the ids.
        #[arg(short = 'q', long = "quiet")]
        ids_only: bool,
        /// `name=`, `id=`, `label=`, `label!=`, `driver=`, `type=custom|builtin`,
        /// `dangling=true|false`.
        #[arg(short, long)]
        filter: Vec<String>,
        /// A Go template per network (`{{.ID}}`, `{{.Name}}`, `{{.Label "KEY"}}`),
        /// `table TEMPLATE` or `json`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Remove the networks no container is on (not `bridge`).
    Prune {
        /// As `ls`'s, and `until=TIME`.
        #[arg(long)]
        filter: Vec<String>,
        /// Do not ask (nothing asks: accepted as docker's).
        #[arg(short, long)]
        force: bool,
    },
    /// Show networks as JSON.
    Inspect {
        /// A Go template over each one's document (`{{.Name}}`, `{{.IPAM.Config}}`,
        /// `{{json .}}`).
        #[arg(short, long)]
        format: Option<String>,
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
        /// Another name the container answers to on this network.
        #[arg(long)]
        alias: Vec<String>,
        /// Its IPv4 address on this network.
        #[arg(long)]
        ip: Option<std::net::Ipv4Addr>,
        /// Its IPv6 address on this network (one with IPv6).
        #[arg(long)]
        ip6: Option<std::net::Ipv6Addr>,
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
pub(crate) enum ContainerVerb {
    /// Remove every stopped container.
    Prune {
        /// `until=TIME|DURATION`, `label=KEY[=VALUE]`, `label!=KEY[=VALUE]`.
        #[arg(long)]
        filter: Vec<String>,
        /// Do not ask (there is no prompt; accepted as docker's).
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short, long)]
    pub(crate) detach: bool,
    /// Keep stdin open.
    #[arg(short, long)]
    pub(crate) interactive: bool,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub(crate) tty: bool,
    /// Attach to these streams only: `stdin`, `stdout`, `stderr` (all by default).
    #[arg(short, long, ignore_case = true, value_parser = ["stdin", "stdout", "stderr"], conflicts_with = "detach")]
    pub(crate) attach: Vec<String>,
    /// The keys that detach (docker's `ctrl-p,ctrl-q` by default; `""`: none).
    #[arg(long)]
    pub(crate) detach_keys: Option<String>,
    /// Forward signals to the container while attached.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub(crate) sig_proxy: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub(crate) rm: bool,
    /// Set an environment variable (`KEY=VALUE`).
    #[arg(short, long = "env")]
    pub(crate) env: Vec<String>,
    /// Read environment variables from a file (`KEY=VALUE` lines, `#` comments).
    #[arg(long = "env-file")]
    pub(crate) env_file: Vec<PathBuf>,
    /// Working directory.
    #[arg(short, long)]
    pub(crate) workdir: Option<String>,
    /// User (`uid`, `uid:gid`, `name`, `name:group`).
    #[arg(short, long)]
    pub(crate) user: Option<String>,
    /// Container name.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Hostname.
    #[arg(long)]
    pub(crate) hostname: Option<String>,
    /// bridge (the default as root), a network's name, slirp4netns (the default rootless),
    /// none, host, or container:NAME.
    #[arg(long, alias = "net")]
    pub(crate) network: Option<String>,
    /// Another name the container answers to on its (user-defined) network.
    #[arg(long = "network-alias", alias = "net-alias")]
    pub(crate) network_alias: Vec<String>,
    /// Its IPv4 address on its (user-defined) network.
    #[arg(long)]
    pub(crate) ip: Option<std::net::Ipv4Addr>,
    /// Its IPv6 address on the first network (one with IPv6, `--network`).
    #[arg(long)]
    pub(crate) ip6: Option<std::net::Ipv6Addr>,
    /// `host`: the host's UTS namespace (its hostname).
    #[arg(long, value_parser = ["host"])]
    pub(crate) uts: Option<String>,
    /// Its MAC address on its (first) network (`02:42:ac:11:00:02`).
    #[arg(long = "mac-address")]
    pub(crate) mac_address: Option<String>,
    /// Link to a running container: `NAME[:ALIAS]`, which answers to ALIAS here.
    #[arg(long)]
    pub(crate) link: Vec<String>,
    /// Publish a port: `[IP:][HOST[-END]:]CTR[-END][/tcp|/udp]`.
    #[arg(short, long = "publish")]
    pub(crate) publish: Vec<String>,
    /// Publish every EXPOSEd port on a free host port.
    #[arg(short = 'P', long)]
    pub(crate) publish_all: bool,
    /// Replace the image's entrypoint.
    #[arg(long)]
    pub(crate) entrypoint: Option<String>,
    /// `os/arch[/variant]`.
    #[arg(long)]
    pub(crate) platform: Option<String>,
    /// When to pull the image: `missing`, `always` or `never`.
    #[arg(long, default_value = "missing")]
    pub(crate) pull: String,
    /// A volume: `HOST:CONTAINER[:ro]` (a bind), `NAME:CONTAINER[:ro]` (a named volume),
    /// or `CONTAINER` (an anonymous one).
    #[arg(short, long = "volume")]
    pub(crate) volume: Vec<String>,
    /// `type=bind|volume|tmpfs,source=...,target=...[,readonly]`.
    #[arg(long)]
    pub(crate) mount: Vec<String>,
    /// A tmpfs: `CONTAINER[:OPTIONS]`.
    #[arg(long)]
    pub(crate) tmpfs: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    pub(crate) read_only: bool,
    #[command(flatten)]
    pub(crate) resources: ResourceArgs,
    /// The OOM killer's preference for its processes (-1000 to 1000).
    #[arg(long = "oom-score-adj", allow_hyphen_values = true)]
    pub(crate) oom_score_adj: Option<i32>,
    /// Add a capability.
    #[arg(long)]
    pub(crate) cap_add: Vec<String>,
    /// Drop a capability.
    #[arg(long)]
    pub(crate) cap_drop: Vec<String>,
    /// Every capability and device.
    #[arg(long)]
    pub(crate) privileged: bool,
    /// `no-new-privileges`.
    #[arg(long)]
    pub(crate) security_opt: Vec<String>,
    /// A kernel parameter of the container's namespaces: `net.ipv4.ip_forward=1`.
    #[arg(long)]
    pub(crate) sysctl: Vec<String>,
    /// A resource limit: `nofile=1024:2048`.
    #[arg(long)]
    pub(crate) ulimit: Vec<String>,
    /// The size of /dev/shm (`128m`).
    #[arg(long)]
    pub(crate) shm_size: Option<String>,
    /// Another group for the user (a gid or a name in the image).
    #[arg(long)]
    pub(crate) group_add: Vec<String>,
    /// A line of /etc/hosts: `NAME:IP`.
    #[arg(long)]
    pub(crate) add_host: Vec<String>,
    /// A name server, instead of the host's.
    #[arg(long)]
    pub(crate) dns: Vec<String>,
    /// A search domain.
    #[arg(long)]
    pub(crate) dns_search: Vec<String>,
    /// A resolver option.
    #[arg(long)]
    pub(crate) dns_option: Vec<String>,
    /// The health check: a command the image's shell runs in the container.
    #[arg(long)]
    pub(crate) health_cmd: Option<String>,
    /// Between health probes (`30s`, `1m30s`).
    #[arg(long)]
    pub(crate) health_interval: Option<String>,
    /// How long a probe may run.
    #[arg(long)]
    pub(crate) health_timeout: Option<String>,
    /// After a start, how long failures do not count.
    #[arg(long)]
    pub(crate) health_start_period: Option<String>,
    /// Between probes in the start period.
    #[arg(long)]
    pub(crate) health_start_interval: Option<String>,
    /// Failures in a row that make it unhealthy.
    #[arg(long)]
    pub(crate) health_retries: Option<u32>,
    /// No health check, not even the image's.
    #[arg(long)]
    pub(crate) no_healthcheck: bool,
    /// The pid namespace: `host` or `container:NAME`.
    #[arg(long)]
    pub(crate) pid: Option<String>,
    /// The IPC namespace: `private`, `shareable`, `host`, `none` or `container:NAME`.
    #[arg(long)]
    pub(crate) ipc: Option<String>,
    /// A host device: `HOST[:CONTAINER][:PERMISSIONS]`.
    #[arg(long)]
    pub(crate) device: Vec<String>,
    /// Mount another container's volumes and binds: `NAME[:ro|:rw]`.
    #[arg(long)]
    pub(crate) volumes_from: Vec<String>,
    /// `no`, `on-failure[:N]`, `always`, `unless-stopped`.
    #[arg(long, default_value = "no")]
    pub(crate) restart: String,
    /// `max-size=10m`, `max-file=3`, `labels=a,b`, `env=A,B` (shown by `logs --details`).
    #[arg(long)]
    pub(crate) log_opt: Vec<String>,
    /// `json-file`, `local`, `k8s-file` (kept alike) or `none` (nothing kept).
    #[arg(long, default_value = "json-file")]
    pub(crate) log_driver: String,
    /// A label `KEY=VALUE`.
    #[arg(short, long)]
    pub(crate) label: Vec<String>,
    /// The signal `stop` sends.
    #[arg(long)]
    pub(crate) stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10; -1: for ever).
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) stop_timeout: Option<i64>,
    /// Write the container's id to this file (refused if it exists).
    #[arg(long)]
    pub(crate) cidfile: Option<std::path::PathBuf>,
    /// A tiny reaper as pid 1 that passes signals on.
    #[arg(long)]
    pub(crate) init: bool,
    /// This init binary (tini, docker-init) as pid 1 instead, from the host (implies --init).
    #[arg(long)]
    pub(crate) init_path: Option<std::path::PathBuf>,
    /// The image.
    pub(crate) image: String,
    /// The command and its arguments (default: the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) args: Vec<String>,
}

#[derive(Subcommand)]
pub(crate) enum LayerVerb {
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
pub(crate) enum ManifestVerb {
    /// Show a manifest or index from its registry, as the registry has it.
    Inspect {
        /// docker's verbose form: the reference, the descriptor and each platform's
        /// manifest of an index.
        #[arg(short, long)]
        verbose: bool,
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

/// `oci system …`
#[derive(Subcommand)]
pub(crate) enum SystemVerb {
    /// What images, containers, volumes and the build cache hold on disk.
    Df {
        /// Each container's and volume's size too.
        #[arg(short, long)]
        verbose: bool,
        /// A Go template over each line's fields (`{{.Type}}`, `{{.TotalCount}}`,
        /// `{{.Active}}`, `{{.Size}}`, `{{.Reclaimable}}`), `table TEMPLATE`, or `json`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Remove stopped containers, unused networks, dangling images and the build cache;
    /// with `-a` every image no container uses, with `--volumes` unused anonymous volumes.
    Prune {
        /// Every unused image, not only dangling content.
        #[arg(short, long)]
        all: bool,
        /// Unused anonymous volumes too.
        #[arg(long)]
        volumes: bool,
        /// `until=`, `label=`, `label!=` for containers (as `container prune`'s).
        #[arg(long)]
        filter: Vec<String>,
        /// Do not ask (nothing asks: accepted as docker's).
        #[arg(short, long)]
        force: bool,
    },
    /// Serve the Docker Engine API (as `podman system service`), so that docker's CLI,
    /// docker-compose and the Docker SDKs drive this engine. Access to the socket is root on
    /// the host: it is made 0660.
    Service {
        /// Stop after this many seconds without a connection (0: never).
        #[arg(short, long, default_value_t = 5)]
        time: u64,
        /// Where to listen: `unix:///PATH` (default: /run/oci-rs/oci.sock as root, else
        /// $XDG_RUNTIME_DIR/oci-rs/oci.sock), or `tcp://ADDR:PORT` (loopback only, unless
        /// with `--tlsverify`).
        uri: Option<String>,
        /// Serve TCP over TLS with this PEM certificate chain (with `--tlskey`).
        #[arg(long, requires = "tlskey")]
        tlscert: Option<PathBuf>,
        /// The PEM private key of `--tlscert`.
        #[arg(long, requires = "tlscert")]
        tlskey: Option<PathBuf>,
        /// Admit only clients with a certificate signed by `--tlscacert`'s CAs (dockerd's
        /// `--tlsverify`); needed to listen off loopback.
        #[arg(long, requires_all = ["tlscacert", "tlscert"])]
        tlsverify: bool,
        /// The PEM CA bundle that `--tlsverify` checks clients' certificates with.
        #[arg(long, requires = "tlsverify")]
        tlscacert: Option<PathBuf>,
    },
}

/// `oci registry …`
#[derive(Subcommand)]
pub(crate) enum RegistryVerb {
    /// Serve the distribution API (OCI distribution spec v1.1, docker's registry v2).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:5000")]
        addr: String,
        /// Where blobs, repositories and upload sessions are kept: a directory, or
        /// `s3://BUCKET/PREFIX` (credentials, region and endpoint from the AWS_* variables).
        #[arg(long, default_value = "/var/lib/oci-rs-registry")]
        storage: PathBuf,
        /// Serve pulls only.
        #[arg(long = "read-only")]
        read_only: bool,
        /// Refuse blobs larger than this many bytes.
        #[arg(long = "max-blob-size")]
        max_blob_size: Option<u64>,
        /// `htpasswd:FILE` (basic auth) or `token:FILE` (docker's token flow at /token),
        /// FILE an htpasswd file of bcrypt entries (`htpasswd -B`). Default: open.
        #[arg(long)]
        auth: Option<String>,
        /// Who may do what (JSON rules; default: any known user everything).
        #[arg(long)]
        access: Option<PathBuf>,
        /// Sign tokens with the first 32 bytes of this file (default: a random key per
        /// process): replicas behind one name need the same key.
        #[arg(long = "token-key")]
        token_key: Option<PathBuf>,
        /// Serve HTTPS with this PEM certificate chain and PEM private key.
        #[arg(long, num_args = 2, value_names = ["CERT", "KEY"])]
        tls: Option<Vec<PathBuf>>,
        /// Be a pull-through cache of this registry (`https://registry-1.docker.io`,
        /// `http://127.0.0.1:5000`), with docker's credentials for it; pushes are refused.
        #[arg(long = "pull-through")]
        pull_through: Option<String>,
    },
    /// Remove the blobs no repository names or reaches, and abandoned upload sessions
    /// (safe while the registry serves).
    Gc {
        /// The registry's storage: a directory, or `s3://BUCKET/PREFIX` (credentials,
        /// region and endpoint from the AWS_* variables).
        #[arg(long, default_value = "/var/lib/oci-rs-registry")]
        storage: PathBuf,
        /// Upload sessions idle this many hours are abandoned.
        #[arg(long = "uploads-older-than", default_value_t = 168)]
        uploads_older_than: u64,
    },
}

/// docker's resource flags, of `run`/`create` and `update`.
#[derive(clap::Args)]
pub(crate) struct ResourceArgs {
    /// CPUs (`1.5`: one and a half CPUs' time).
    #[arg(long)]
    pub(crate) cpus: Option<f64>,
    /// CPU shares (relative weight, 2 to 262144).
    #[arg(long = "cpu-shares", short = 'c')]
    pub(crate) cpu_shares: Option<u64>,
    /// The CFS period in microseconds.
    #[arg(long = "cpu-period")]
    pub(crate) cpu_period: Option<u64>,
    /// The CFS quota in microseconds per period (-1: none).
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub(crate) cpu_quota: Option<i64>,
    /// CPUs the processes may run on (`0-3`, `0,1`).
    #[arg(long = "cpuset-cpus")]
    pub(crate) cpuset_cpus: Option<String>,
    /// Memory nodes the processes may use (`0`, `0-1`).
    #[arg(long = "cpuset-mems")]
    pub(crate) cpuset_mems: Option<String>,
    /// Memory limit (`512m`, `1g`; 0: unlimited).
    #[arg(long, short = 'm')]
    pub(crate) memory: Option<String>,
    /// Memory plus swap (`-1`: unlimited swap).
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub(crate) memory_swap: Option<String>,
    /// A soft limit the kernel reclaims down to under memory pressure.
    #[arg(long = "memory-reservation")]
    pub(crate) memory_reservation: Option<String>,
    /// Maximum processes (0 or -1: unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub(crate) pids_limit: Option<i64>,
}

impl ResourceArgs {
    /// The flags given; sizes in docker's spellings (`512m`, `0` or `-1`: no limit).
    pub(crate) fn flags(&self) -> anyhow::Result<oci_rs_runtime::ResourceFlags> {
        let size = |s: &Option<String>| -> anyhow::Result<Option<i64>> {
            s.as_deref()
                .map(|s| {
                    Ok(match s.trim() {
                        "-1" | "0" => -1,
                        v => i64::try_from(oci_rs_runtime::parse_size(v)?)?,
                    })
                })
                .transpose()
        };
        Ok(oci_rs_runtime::ResourceFlags {
            cpus: self.cpus,
            cpu_shares: self.cpu_shares,
            cpu_period: self.cpu_period,
            cpu_quota: self.cpu_quota,
            cpuset_cpus: self.cpuset_cpus.clone(),
            cpuset_mems: self.cpuset_mems.clone(),
            memory: size(&self.memory)?,
            memory_swap: size(&self.memory_swap)?,
            memory_reservation: size(&self.memory_reservation)?,
            pids_limit: self.pids_limit,
        })
    }
}

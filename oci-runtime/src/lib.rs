//! # oci-rs-runtime
//!
//! A Linux container runtime as a library, following the OCI runtime spec, and, with the cargo
//! feature `engine` (on by default), the container store, volume store and Dockerfile builder
//! of a docker-like program built on it.
//!
//! ## Pull and run
//!
//! Images live in an [`ImageStore`](oci_rs_layer::ImageStore) of oci-rs-layer on a data
//! directory; [`Containers`], the container store, opens the same directory. The store pulls
//! through the [`Remote`](oci_rs_image::Remote) trait of oci-rs-image, which the `Client` of
//! [oci-rs-registry-client](https://docs.rs/oci-rs-registry-client) implements: this crate
//! holds no registry code, and the examples take the registry as a `&dyn Remote`.
//!
//! A container's monitor is the program executed again, and a container must not reach the
//! program's file, so a program that runs containers starts `main` with two calls:
//!
//! ```no_run
//! use std::process::ExitCode;
//!
//! fn main() -> ExitCode {
//!     // When this process is a container's monitor: serve it, then exit.
//!     oci_rs_runtime::serve_if_requested();
//!     // Before any thread starts: run from a sealed copy of the program (CVE-2019-5736).
//!     if let Err(e) = oci_rs_runtime::reexec_sealed() {
//!         eprintln!("{e}");
//!         return ExitCode::from(125);
//!     }
//!     // Then a tokio runtime, and the calls below.
//!     ExitCode::SUCCESS
//! }
//! ```
//!
//! ```no_run
//! # #[cfg(feature = "engine")]
//! # async fn demo(registry: &dyn oci_rs_image::Remote) -> Result<(), Box<dyn std::error::Error>> {
//! use oci_rs_image::CopyOptions;
//! use oci_rs_layer::ImageStore;
//! use oci_rs_runtime::{Containers, RunImage, RunOptions, RunRequest};
//!
//! let data = std::path::Path::new("/var/lib/my-tool");
//! let images = ImageStore::open(data).await?;
//! let containers = Containers::open(data)?;
//!
//! // Found in the store, else pulled through `registry` and unpacked.
//! let pull = CopyOptions::default();
//! let found = images
//!     .image_for_run("busybox", None, Some((registry, &pull)), |r| eprintln!("pulling {r}"))
//!     .await?;
//! let image = RunImage::from_store(&images, found, "busybox");
//!
//! let req = RunRequest {
//!     opts: RunOptions {
//!         args: vec!["echo".into(), "hello".into()],
//!         ..RunOptions::default()
//!     },
//!     detach: true,
//!     ..RunRequest::default()
//! };
//! let (id, _monitor) = containers.run(&image, req).await?;
//! let code = containers.wait(&id)?;
//! containers.remove(&id, false)?;
//! println!("exit code {code}");
//! # Ok(())
//! # }
//! ```
//!
//! Without `detach`, the container's process waits until a client attaches to its monitor
//! ([`Monitor::attach`]), so that it misses no output, as `docker run` in the foreground does.
//!
//! ## A detached container, by name
//!
//! A container outlives the program that started it: its [`Monitor`] keeps its stdio, log and
//! exit status. Any later process that opens the same data directory names it by its name, its
//! id or a unique prefix of the id.
//!
//! ```no_run
//! # #[cfg(feature = "engine")]
//! # async fn demo(
//! #     images: &oci_rs_layer::ImageStore,
//! #     containers: &oci_rs_runtime::Containers,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use oci_rs_runtime::{LogQuery, LogStream, RunImage, RunOptions, RunRequest};
//! use std::time::Duration;
//!
//! // From the store only: without a remote, an image that is not there is an error.
//! let found = images.image_for_run("busybox", None, None, |_| {}).await?;
//! let image = RunImage::from_store(images, found, "busybox");
//! let req = RunRequest {
//!     name: Some("ticker".into()),
//!     detach: true,
//!     opts: RunOptions {
//!         args: vec!["sh".into(), "-c".into(), "while date; do sleep 1; done".into()],
//!         ..RunOptions::default()
//!     },
//!     ..RunRequest::default()
//! };
//! containers.run(&image, req).await?;
//!
//! // Later, in this process or another one:
//! let last = LogQuery {
//!     tail: Some(10),
//!     ..LogQuery::default()
//! };
//! containers.logs("ticker", &last, false, &mut |stream: LogStream, bytes: &[u8]| {
//!     print!("{stream:?}: {}", String::from_utf8_lossy(bytes));
//!     Ok(())
//! })?;
//! containers.stop("ticker", Duration::from_secs(10))?;
//! containers.remove("ticker", false)?;
//! # Ok(())
//! # }
//! ```
//!
//! ## A build from a Dockerfile
//!
//! [`DockerfileBuild`] builds into the `ImageStore`: `FROM` images from the store or pulled
//! through a `Remote`, `ADD URL` through an [`UrlSource`](oci_rs_image::UrlSource) (the
//! registry client's `Client` is both), `RUN` steps in containers on overlay snapshots,
//! BuildKit's cache keys. `RUN` starts containers, so `main` starts with the two calls above.
//!
//! ```no_run
//! # #[cfg(feature = "engine")]
//! # async fn demo(
//! #     client: &(impl oci_rs_image::Remote + oci_rs_image::UrlSource),
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use oci_rs_layer::ImageStore;
//! use oci_rs_runtime::{read_dockerfile, BuildEvent, BuildOptions, BuildSources, DockerfileBuild};
//!
//! let images = ImageStore::open("/var/lib/my-tool".as_ref()).await?;
//! let context = std::path::Path::new("./app");
//! // ./app/Dockerfile, resolved inside the context: a link there cannot lead to a host file.
//! let (dockerfile, file_label) = read_dockerfile(context, None, false)?;
//! let sources = BuildSources {
//!     remote: Some(client), // FROM images the store does not have
//!     urls: Some(client),   // ADD https://...
//!     ..BuildSources::default()
//! };
//! let opts = BuildOptions {
//!     tags: vec!["my-app:1".into()],
//!     file_label,
//!     ..BuildOptions::default()
//! };
//! let events = Box::new(|e: BuildEvent<'_>| {
//!     if let BuildEvent::Step { number, instruction } = e {
//!         // The Dockerfile's text is untrusted: escaped before it reaches a terminal.
//!         eprintln!("#{number} {}", oci_rs_image::printable(instruction));
//!     }
//! });
//! let built = DockerfileBuild::new(&images, sources, &dockerfile, Some(context), opts, events)?
//!     .build()
//!     .await?;
//! println!("{} ({} steps run, {} from the cache)", built.id, built.ran, built.cached);
//! # Ok(())
//! # }
//! ```
//!
//! ## The engine (feature `engine`)
//!
//! What a docker-like program keeps between its invocations, as library types that any
//! program opens on the same data directory (`DATA/containers`, `DATA/volumes`, `DATA/run`,
//! beside the image store's `DATA/images` and the shared `DATA/snapshots`), so that several
//! programs see the same containers:
//!
//! - [`Containers`]: the container store. Ids, unique names and each container's record;
//!   [`run`](Containers::run) makes a container from a [`RunImage`] and a [`RunRequest`] and
//!   starts it under a detached [`Monitor`]; then [`view`](Containers::view),
//!   [`list`](Containers::list), [`stop`](Containers::stop), [`kill`](Containers::kill),
//!   [`start`](Containers::start), [`wait`](Containers::wait), [`logs`](Containers::logs),
//!   [`exec`](Containers::exec), [`top`](Containers::top), [`inspect`](Containers::inspect),
//!   [`commit`](Containers::commit), [`export`](Containers::export) and
//!   [`remove`](Containers::remove), each by name, id or unique id prefix. A container run
//!   with [`rm`](RunRequest::rm) is removed by its monitor through this library
//!   ([`MonitorConfig::remove_from`]), however the run ends.
//! - [`RunImage`]: the image a container is made from: what an `ImageStore` found or pulled
//!   ([`RunImage::from_store`]), a manifest of any [`ImageSource`](oci_rs_image::ImageSource)
//!   ([`RunImage::new`]), or a name in an OCI layout ([`RunImage::resolve`]).
//! - [`Volumes`]: named volumes (`DATA/volumes/NAME/_data`, docker's layout), filled from the
//!   image on first use.
//! - [`DockerfileBuild`]: a Dockerfile into an image of an `ImageStore`, without a daemon:
//!   multi-stage builds, BuildKit's cache keys, `RUN` steps in containers of this crate,
//!   progress as [`BuildEvent`]s and failures as [`BuildError`]s.
//!
//! The stores fail with [`EngineError`]. Without the feature, the crate is the runtime
//! described below with its monitor and networks, and does not depend on oci-rs-layer.
//!
//! ## Crates and how they compose
//!
//! oci-rs is four crates; each depends only on those above it in this tree:
//!
//! ```text
//! oci-rs-image                  image models, content stores; the traits Remote, UrlSource,
//! |                             ImageSource and ImageDestination
//! +-- oci-rs-layer              layers applied and diffed, overlay snapshots, ImageStore
//! |   +-- oci-rs-runtime        the runtime; with `engine`: containers, volumes, builds
//! +-- oci-rs-registry-client    registries; its Client is a Remote and a UrlSource
//! ```
//!
//! - The registry client depends on nothing of ours but oci-rs-image: it speaks the
//!   distribution protocol and hands out oci-rs-image's manifests and verified blob streams.
//!   A program that only pulls and pushes needs no layer or container code, and the crates
//!   that use images need no HTTP, TLS or credentials code.
//! - This crate depends on oci-rs-layer (with `engine`) because containers and builds are
//!   made of layers: a container runs on a snapshot of its image (each layer unpacked once,
//!   mounted as overlayfs), `commit` and each build step diff the changes into a new layer,
//!   volumes are filled through export and apply, and images are found in an `ImageStore`.
//!   It depends on oci-rs-image always (time helpers; with `engine`, images).
//! - The crates meet through oci-rs-image's traits, not through each other:
//!   [`Remote`](oci_rs_image::Remote) (images by reference: what `ImageStore` pulls from and
//!   pushes to, and what a build's `FROM` pulls through), [`UrlSource`](oci_rs_image::UrlSource)
//!   (bytes by URL: a build's `ADD`), and [`ImageSource`](oci_rs_image::ImageSource) and
//!   [`ImageDestination`](oci_rs_image::ImageDestination) (the two ends of a copy; snapshots
//!   read layers from an `ImageSource`). The registry client implements all four; a program
//!   can put a mirror, a cache or a test double in its place.
//!
//! ## The runtime
//!
//! A Linux namespace container runtime as a library, following the OCI runtime spec: give it
//! an `oci_spec::runtime::Spec` and a root filesystem, and [`ContainerBuilder::create`] sets
//! up the container's init in new namespaces (mount, pid, uts, ipc, net, user, cgroup, time),
//! with the spec's mounts resolved inside the rootfs, default devices, `pivot_root`, masked
//! and read-only paths, hostname, sysctls, rlimits, capabilities, `no_new_privs`, user, and
//! cgroup limits (v1 or v2); [`Container::start`] lets it `execve`.
//!
//! The spec usually comes from an image: [`spec_from_image`] makes the one
//! `docker run` would (docker's capabilities, seccomp profile, devices and mounts):
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use oci_rs_runtime::{spec_from_image, NetworkMode, RunOptions};
//!
//! let config: oci_spec::image::ImageConfiguration = serde_json::from_str(
//!     r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
//!         "config":{"Env":["PATH=/bin"],"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"]}}"#,
//! )?;
//! let opts = RunOptions {
//!     network: NetworkMode::None,
//!     memory: Some(64 << 20),
//!     ..RunOptions::default()
//! };
//! let spec = spec_from_image(&config, "/var/lib/c1/rootfs".as_ref(), &opts)?;
//! let process = spec.process().as_ref().unwrap();
//! assert_eq!(process.args().as_deref(), Some(&["/bin/sh".into(), "-c".into(), "echo hi".into()][..]));
//! // Then: ContainerBuilder::new("c1", spec, "/var/lib/c1").create()?.start()?, or run().
//! # Ok(())
//! # }
//! ```
//!
//! Device access is always enforced by the kernel: deny everything, then the spec's
//! `linux.resources.devices` rules, then the default devices and the spec's `linux.devices`
//! (see [`device_rules`]), through the v1 devices controller or a v2 cgroup device (eBPF)
//! program. A device node shipped in an image, or made with `CAP_MKNOD`, opens nothing else;
//! a root container whose rules cannot be enforced is not created.
//!
//! ## Design
//!
//! The init is a `clone3` child that runs a plan computed beforehand with system calls only
//! (see the `init` module for why: no helper binary to find, safe in
//! multi-threaded programs). Mount targets are opened with `openat2(RESOLVE_IN_ROOT)` and
//! mounted through `/proc/self/fd/N`, so a symlink in the rootfs can never redirect a mount
//! outside it (the CVE-2021-30465 class). Every descriptor is close-on-exec and the init marks
//! all above stderr close-on-exec right before `execve` (CVE-2024-21626); right after the clone it
//! closes every descriptor it inherited but does not use, so a created container waiting for
//! `start` holds none of the embedding program's files, sockets or pipes. State lives in
//! `STATE_ROOT/ID/state.json` with an exec fifo, as runc does, so another process can start,
//! query, signal or delete a created container.
//!
//! A spec without a mount namespace (the spec lets a container inherit the runtime's) runs as
//! runc and crun run it: its mounts are made in the caller's mount namespace under the
//! rootfs, whose bind onto itself is entered by `chroot`, and nothing is pivoted, detached or
//! made private in the caller's namespace. `delete` (run in that same mount namespace) or a
//! create that fails detaches those mounts; `exec` chroots into the rootfs. A warning says that a process with
//! `CAP_SYS_CHROOT` can leave such a root.
//!
//! Where things are, for a reader of the source: `container/` holds one module per verb
//! (`create`, `start`, `state`, `signal`, `exec`, `delete`) and the guards that undo a failed
//! create; `plan.rs` turns a spec into the init's plan (pure, unit-tested); `init/` is the
//! child after the clone, whose `child_main` lists its phases in order (wait for the go,
//! namespaces, rootfs, root, hardening, privileges, console and stdio, the wait for `start`,
//! `execve`), one file per phase group, with the parent's side (`spawn`, `report`) beside it.
//!
//! The program's own file is kept out of containers' reach (CVE-2019-5736): call
//! [`reexec_sealed`] first in `main`, and the program runs from a sealed in-memory copy
//! that `/proc/self/exe` in a container can reach but not change. Creating a container or
//! executing in one from an unsealed program fails unless it called [`allow_unsealed`].
//!
//! Before it drops to the container's user and capabilities, the init (and an exec's
//! helper) makes itself non-dumpable (unless a caller without CAP_SYS_PTRACE has startContainer
//! hooks to run in it): until its `execve` it is a copy
//! of the calling program's memory, and another container sharing its pid namespace must not
//! read it. Joining a pid namespace by path takes effect for children only, so the init is
//! cloned from a short-lived thread that joined it; it stays the caller's child. Rootless, a
//! container that joins a user namespace (and a pid namespace in it) is cloned by an
//! intermediate process that joined them first, as runc's nsexec does, as a sibling
//! (`CLONE_PARENT`): it is still the caller's child, and its new namespaces belong to the
//! joined user namespace.
//!
//! [`spec_from_image`] turns an image configuration and `docker run` options into
//! the spec docker would give the container.
//!
//! [`Monitor`] keeps a detached container's stdio, [logs](LogWriter) and exit status
//! after the program that started it is gone, restarts it by policy and lets clients
//! [attach](Frame).
//!
//! [`Container::exec`] runs more processes in a running container (its namespaces, cgroup).
//!
//! Terminals go through a console socket as with runc, and `linux.seccomp` is compiled to BPF
//! by [`compile_seccomp`] (x86_64 and aarch64).
//!
//! A time namespace is unshared by the init rather than created by `clone3`, so that it can
//! write `linux.timeOffsets` (monotonic, boottime) before anything is inside; the process
//! enters it at `execve`, and `exec` joins it.
//!
//! Rootless: as root, id maps are written directly; without root, a single mapping of the
//! caller's own uid and gid is written directly after denying `setgroups` (which the init then
//! skips when there are no additional groups), and anything more goes through the setuid
//! helpers `newuidmap`/`newgidmap` (ranges from /etc/subuid and /etc/subgid). A cgroup that
//! cannot be created without root (not delegated) is left out rather than failing the
//! container.
//!
//! Hooks: createRuntime (and the deprecated prestart), poststart and poststop run in the
//! runtime's namespaces; createContainer hooks are forked by the init after the mounts and
//! before `pivot_root` (in the container's namespaces, their path still resolving in the
//! runtime's tree), with the state ("creating", the init's pid) sent down the sync pipe;
//! startContainer hooks run at `start` inside the container (its namespaces and cgroup, path
//! resolved there) before its process, through the same machinery as `exec`. Every hook gets
//! the state on stdin and its timeout; a failing or late hook fails the operation (a
//! failing startContainer hook stops the container), except poststart and poststop hooks,
//! whose failures are warnings after which the lifecycle goes on, as the spec says.
//!
//! Not yet: seccomp on architectures other than x86_64 and aarch64, and its
//! `SCMP_ACT_NOTIFY` action.

#[cfg(feature = "api")]
pub mod api;
mod attach;
#[cfg(feature = "engine")]
mod build;
mod cgroup;
mod container;
mod default_seccomp;
mod devices;
#[cfg(feature = "engine")]
mod engine;
mod error;
mod events;
mod exe;
#[cfg(feature = "format")]
pub mod format;
mod health;
mod hooks;
mod idmap;
mod image_spec;
mod init;
mod logs;
mod monitor;
#[cfg(feature = "network")]
mod network;
mod options;
mod pidfd;
mod plan;
mod resolve;
mod seccomp;
mod sharing;
mod syscalls_aarch64;
mod syscalls_x86_64;
#[cfg(feature = "engine")]
mod terminal;

pub use attach::{receive_terminal, Attach, DetachKeys, DetachScanner, Frame, MAX_FRAME};
#[cfg(feature = "engine")]
pub use build::{
    build_platforms, read_context_file, read_dockerfile, read_dockerignore, BuildError, BuildEvent,
    BuildEvents, BuildNetwork, BuildOptions, BuildOutput, BuildSecret, BuildSources, BuildSsh,
    Built, CacheExport, CacheImport, CacheLocation, CacheMode, DockerfileBuild, Entitlement,
    StreamedContext, MAX_DOCKERFILE,
};
pub use cgroup::{Cgroup, CgroupStats};
pub use container::{
    parse_signal, run, run_hooks, validate_id, Container, ContainerBuilder, ExecProcess, Status,
};
pub use default_seccomp::docker_default_seccomp;
pub use devices::{device_rules, DeviceRule, DEFAULT_ALLOWED};
#[cfg(feature = "engine")]
pub use engine::{
    parse_container_path, parse_link, parse_mount_arg, parse_volume_arg, random_hex, CacheUsage,
    ContainerConfig, ContainerFilter, ContainerInspect, ContainerStats, ContainerView, Containers,
    CopyIn, DiskUsage, DiskUsageRows, EngineError, EngineResult, ExecRequest, ExecSession,
    ImageUsage, InspectState, InterfaceStats, MountArg, ProcessRow, ProcessTable, PruneFilter,
    PruneReport, RunImage, RunRequest, StatsRow, SystemPruneOptions, SystemPruneReport, UsageLine,
    VolumeFilter, VolumeInfo, Volumes, ANONYMOUS_VOLUME_LABEL, PORTS_DISCARDED, PS_EF_TITLES,
};
pub use error::{chain, Error, Result};
pub use events::{Event, EventFilter, EventSink, Follower, Journal, JOURNAL_MAX};
pub use exe::{allow_unsealed, is_sealed, reexec_sealed, sealed_main};
pub use health::{
    Health, HealthFlags, HealthProbe, HealthResult, HealthStatus, MAX_HEALTH_LOG, MAX_PROBE_OUTPUT,
};
pub use image_spec::{
    capability_set, check_sysctl, docker_device_rules, etc_extras, etc_files, home_dir,
    is_valid_hostname, parse_capability, parse_sysctl, parse_ulimit, resolve_user, resources_of,
    set_env, spec_from_image, ExtraMount, NetworkMode, ResourceFlags, Rootless, RunOptions,
    SeccompChoice, DEFAULT_CAPABILITIES, ETC_MOUNT_POINTS,
};
pub use logs::{
    follow_logs, log_files, parse_log_record, read_logs, LogAttributes, LogLimits, LogQuery,
    LogRecord, LogStream, LogWriter,
};
pub use monitor::{
    ago, binary_size, human_duration, human_size, serve_if_requested, Monitor, MonitorConfig,
    MonitorState, MonitorStatus, RestartPolicy, ATTACH_SOCKET, LOG_FILE,
};
#[cfg(feature = "network")]
pub use network::{
    attach_network, parse_mac, parse_publish, parse_subnet, parse_subnet6, AttachedNetwork,
    Endpoint, Ipv6Endpoint, Ipv6Subnet, NetError, NetworkAttachment, NetworkConfig, NetworkFilter,
    NetworkOptions, NetworkPlan, NetworkRequest, Networks, PortMapping, Proto, PublishedPort,
    DEFAULT_NETWORK, HOST_NETWORKS_DIR,
};
pub use oci_rs_image::{now_ns, parse_rfc3339, rfc3339};

/// docker's `CreatedAt` in lists: `2026-12-07 06:11:15 +0000 UTC` (Go's time printed), for
/// `ns` since the epoch.
#[cfg_attr(not(any(feature = "engine", feature = "format")), allow(dead_code))]
pub(crate) fn docker_time(ns: u64) -> String {
    let t = rfc3339(ns - ns % 1_000_000_000);
    format!(
        "{} +0000 UTC",
        t.get(..19).unwrap_or(&t).replacen('T', " ", 1)
    )
}
pub use oci_spec;
pub use options::{env_from_args, parse_log_time, parse_size, read_env_file};
pub use seccomp::{compile_seccomp, SockFilter};
pub use sharing::{DeviceMapping, NamespaceChoice};
#[cfg(feature = "engine")]
pub use terminal::{attach_stdio, console_size, exec_stdio, AttachOptions};

/// The README's example, compiled and run as a doctest.
#[cfg(all(doctest, feature = "engine"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

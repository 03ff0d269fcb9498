//! The container store. A container is
//!
//! - a snapshot (oci-rs-layer's [`Snapshotter`], id = the container id), which knows its image;
//! - `DATA/containers/ID/config.json`: name, image, creation time and the run options;
//! - the same directory as its monitor's ([`Monitor`]: status, log, attach socket) and the
//!   runtime's state under `DATA/run/ID` while a process exists;
//! - `DATA/containers/.names/NAME`, created exclusively, so of two runs with one name exactly
//!   one gets it.
//!
//! Ids are 64 random hex digits (docker's); names, ids and unique id prefixes all name a
//! container.

use super::{read_record, write_record, EngineError, EngineResult, VolumeFilter, Volumes};
use crate::{
    LogLimits, LogQuery, LogStream, Monitor, MonitorConfig, MonitorState, MonitorStatus,
    NetworkMode, NetworkPlan, NetworkRequest, Networks, PortMapping, RestartPolicy, RunOptions,
};
use oci_rs_image::oci_spec::image::{Digest, ImageConfiguration};
use oci_rs_image::{ImageSource, Manifest, ManifestRef, PlatformSpec};
use oci_rs_layer::Snapshotter;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The image a container is made from: a manifest (of one platform), its configuration, and
/// the store its layers are read from.
pub struct RunImage<'a> {
    /// Where the layers are.
    pub source: &'a dyn ImageSource,
    /// The image manifest.
    pub manifest: Manifest,
    /// Its configuration.
    pub config: ImageConfiguration,
    /// The configuration's digest (docker's image id).
    pub config_digest: Digest,
    /// The image as the user named it (recorded, and shown by `ps` and `inspect`).
    pub name: String,
    /// What docker's image config adds: its health check and shell.
    pub extras: oci_rs_image::DockerExtras,
}

impl<'a> RunImage<'a> {
    /// The image `manifest` names in `source`: for an index, the manifest of `platform` (the
    /// host's when `None`); then its configuration.
    pub async fn new(
        source: &'a dyn ImageSource,
        manifest: Manifest,
        platform: Option<&PlatformSpec>,
        name: &str,
    ) -> EngineResult<Self> {
        let image = oci_rs_layer::RunnableImage::of(source, manifest, platform, name).await?;
        Ok(Self::of_runnable(source, image, name))
    }

    fn of_runnable(
        source: &'a dyn ImageSource,
        image: oci_rs_layer::RunnableImage,
        name: &str,
    ) -> Self {
        Self {
            source,
            manifest: image.manifest,
            config: image.config,
            config_digest: image.config_digest,
            name: name.to_owned(),
            extras: image.extras,
        }
    }

    /// The image an [`ImageStore`](oci_rs_layer::ImageStore) found (or pulled) for running
    /// ([`ImageStore::image_for_run`](oci_rs_layer::ImageStore::image_for_run)), named
    /// `name` as the user named it.
    pub fn from_store(
        store: &'a oci_rs_layer::ImageStore,
        image: oci_rs_layer::RunnableImage,
        name: &str,
    ) -> Self {
        Self::of_runnable(store.layout(), image, name)
    }

    /// The image named `name` in `store` (a store name such as
    /// `docker.io/library/busybox:latest`), for `platform` (the host's when `None`).
    pub async fn resolve<S>(
        store: &'a S,
        name: &str,
        platform: Option<&PlatformSpec>,
    ) -> EngineResult<Self>
    where
        S: ImageSource + oci_rs_image::ReferenceStore,
    {
        let desc = oci_rs_image::ReferenceStore::resolve(store, name).await?;
        let m = store
            .manifest(&ManifestRef::Digest(desc.digest().clone()))
            .await?;
        Self::new(store, m, platform, name).await
    }
}

impl RunRequest {
    /// What docker warns of for this request, that the engine then ignores: ports published
    /// with the host's network ([`PORTS_DISCARDED`]).
    pub fn warnings(&self) -> Vec<String> {
        let host = self.opts.network == NetworkMode::Host && self.opts.join_network.is_none();
        if host && (!self.publish.is_empty() || self.publish_all) {
            vec![PORTS_DISCARDED.to_owned()]
        } else {
            Vec::new()
        }
    }
}

/// Where `--init-path`'s binary is in the container (docker's place for its init).
const INIT_TARGET: &str = "/sbin/docker-init";

/// docker's warning for ports published with the host's network, which are dropped.
pub const PORTS_DISCARDED: &str = "Published ports are discarded when using host network mode";

/// What [`Containers::run`] is asked besides the image.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// The docker-run options that shape the spec.
    pub opts: RunOptions,
    /// The container name (default: a generated adjective_surname).
    pub name: Option<String>,
    /// Remove the container when it exits (by its monitor, however the run ends).
    pub rm: bool,
    /// Return once it runs instead of waiting for a client to attach (`-d`).
    pub detach: bool,
    /// Keep stdin open (`-i`).
    pub interactive: bool,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Log size cap.
    pub log: LogLimits,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The signal `stop` sends (default: the image's StopSignal, else SIGTERM).
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL when not told (`--stop-timeout`; default 10, -1
    /// for ever).
    pub stop_timeout: Option<i64>,
    /// Named volumes: (name, path in the container, read-only); an empty name is an
    /// anonymous volume (`-v /data`), made with a random name, labelled
    /// [`ANONYMOUS_VOLUME_LABEL`], and removed with the container by
    /// [`Containers::remove_with_volumes`] and `rm`. The image's `VOLUME`s that no mount
    /// covers are anonymous volumes too, as docker's.
    pub volumes: Vec<(String, String, bool)>,
    /// A reaper as pid 1 (`--init`).
    pub init: bool,
    /// `--init-path`: this host binary as pid 1 instead of the built-in reaper (tini,
    /// docker-init, catatonit), bind-mounted read-only at `/sbin/docker-init` and run as
    /// `/sbin/docker-init -- COMMAND...`, as docker runs its init.
    pub init_path: Option<std::path::PathBuf>,
    /// `container:NAME` for a joined network (shown by `inspect`).
    pub network_mode: Option<String>,
    /// The bridge networks (with [`NetworkMode::Bridge`]); empty: the default `bridge`.
    pub networks: Vec<String>,
    /// Network aliases, by network name: other names the container answers to there.
    pub aliases: BTreeMap<String, Vec<String>>,
    /// Addresses asked for, by network name (`--ip`): user-defined networks only.
    pub addresses: BTreeMap<String, std::net::Ipv4Addr>,
    /// IPv6 addresses asked for, by network name (`--ip6`): networks with IPv6 only.
    pub addresses6: BTreeMap<String, std::net::Ipv6Addr>,
    /// MAC addresses asked for, by network name (`--mac-address`).
    pub macs: BTreeMap<String, String>,
    /// docker's legacy links (`--link NAME[:ALIAS]`, see [`parse_link`]): the container
    /// `NAME` answers to `ALIAS` in this one's `/etc/hosts`, on the networks they share.
    /// `NAME` must exist at create and be running at each start.
    pub links: Vec<(String, String)>,
    /// `-p` mappings.
    pub publish: Vec<PortMapping>,
    /// `-P`: every port the image EXPOSEs on a free host port.
    pub publish_all: bool,
    /// The terminal's size, for a container with a terminal that a client attaches to.
    pub console_size: Option<oci_spec::runtime::Box>,
}

/// A `--link` argument, or an entry of the API's `HostConfig.Links`: `NAME[:ALIAS]`, or
/// `/NAME:/CONTAINER/ALIAS` as docker records them; the alias is the name when not given.
///
/// ```
/// use oci_rs_runtime::parse_link;
/// assert_eq!(parse_link("db:database").unwrap(), ("db".into(), "database".into()));
/// assert_eq!(parse_link("/db:/web/sql").unwrap(), ("db".into(), "sql".into()));
/// assert_eq!(parse_link("db").unwrap(), ("db".into(), "db".into()));
/// assert!(parse_link("db:two words").is_err());
/// ```
pub fn parse_link(s: &str) -> EngineResult<(String, String)> {
    let (name, alias) = s.split_once(':').unwrap_or((s, s));
    let name = name.trim_start_matches('/');
    let alias = alias.rsplit('/').next().unwrap_or(alias);
    if name.is_empty() || alias.is_empty() || !crate::network::valid_hosts_name(alias) {
        return Err(EngineError::MountSpec {
            flag: "--link",
            spec: s.to_owned(),
            problem: "give NAME[:ALIAS], the alias a host name".into(),
        });
    }
    Ok((name.to_owned(), alias.to_owned()))
}

/// A container path with its `..` components taken lexically from the root down, as
/// docker's daemon cleans one (`/a/../../b` is `/b`): what is left is resolved inside the
/// container's root all the same. A trailing `/.` or `/` is kept (they mean "the contents"
/// and "a directory" to `cp`).
fn rooted(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.split('/').any(|c| c == "..") {
        return path.into();
    }
    let mut kept: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            c => kept.push(c),
        }
    }
    let mut out = format!("/{}", kept.join("/"));
    if path.ends_with("/.") && out != "/" {
        out.push_str("/.");
    } else if path.ends_with('/') && out != "/" {
        out.push('/');
    }
    out.into()
}

/// Whether `e` comes from writing into a pipe whose reader went away.
fn broken_pipe(e: &EngineError) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// A `cp` destination that is not a directory: its parent directory, and the name to give.
fn split_dest(dest: &str) -> (String, Option<String>) {
    let trimmed = dest.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some(("", name)) => ("/".to_owned(), Some(name.to_owned())),
        Some((parent, name)) => (parent.to_owned(), Some(name.to_owned())),
        None => (".".to_owned(), Some(trimmed.to_owned())),
    }
}

/// `CONTAINER:PATH` as docker reads a `cp` argument: a colon before any slash, and not a
/// path that starts with `/` or `.` (those are the host's). `NAME:` is the container's `/`.
///
/// ```
/// use oci_rs_runtime::parse_container_path;
/// assert_eq!(parse_container_path("web:/etc"), Some(("web", "/etc")));
/// assert_eq!(parse_container_path("./a:b"), None);
/// ```
pub fn parse_container_path(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    let (c, p) = arg.split_once(':')?;
    (!c.is_empty() && !c.contains('/')).then_some((c, if p.is_empty() { "/" } else { p }))
}

/// The directory, in a container's, of a shareable `/dev/shm` (`--ipc shareable`).
const SHM_DIR: &str = "shm";

/// Mounts a shareable container's `/dev/shm` at `dir` (a tmpfs of `size`, 64 MiB by default
/// as docker's) unless it is mounted already.
fn mount_shm(dir: &Path, size: Option<u64>) -> EngineResult<()> {
    if !rustix::process::geteuid().is_root() {
        return Err(crate::Error::option(
            "ipc",
            "shareable",
            "a shareable /dev/shm is a mount on the host: root only",
        )
        .into());
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let parent = dir.parent().unwrap_or(dir);
            let on_parent =
                |p: &Path| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::dev(&m));
            if on_parent(dir).ok() != on_parent(parent).ok() {
                return Ok(());
            }
        }
        Err(e) => return Err(EngineError::io("create", dir, e)),
    }
    let data = std::ffi::CString::new(format!("mode=1777,size={}", size.unwrap_or(64 << 20)))
        .map_err(|e| EngineError::io("mount a tmpfs on", dir, std::io::Error::other(e)))?;
    rustix::mount::mount(
        "shm",
        dir,
        "tmpfs",
        rustix::mount::MountFlags::NOSUID
            | rustix::mount::MountFlags::NODEV
            | rustix::mount::MountFlags::NOEXEC,
        data.as_c_str(),
    )
    .map_err(|e| EngineError::io("mount a tmpfs on", dir, e.into()))
}

/// Unmounts a shareable `/dev/shm`, if there is one (detached: a joiner may still hold it).
fn unmount_shm(dir: &Path) {
    match rustix::mount::unmount(dir, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) => {}
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::INVAL | rustix::io::Errno::PERM) => {}
        Err(e) => {
            tracing::warn!(path = %dir.display(), error = %e, "unmounting a shareable /dev/shm")
        }
    }
}

/// docker's rule: an address is asked for on a user-defined network, not the default
/// `bridge`.
fn check_addresses(addresses: &BTreeMap<String, std::net::Ipv4Addr>) -> EngineResult<()> {
    match addresses.get(crate::DEFAULT_NETWORK) {
        Some(a) => Err(crate::Error::option(
            "ip",
            a,
            "user specified IP address is supported on user defined networks only",
        )
        .into()),
        None => Ok(()),
    }
}

/// docker's rule: aliases are for user-defined networks, not the default `bridge`.
fn check_aliases(name: &str, aliases: &BTreeMap<String, Vec<String>>) -> EngineResult<()> {
    match aliases.get(crate::DEFAULT_NETWORK) {
        Some(a) if !a.is_empty() => Err(EngineError::Network {
            container: name.to_owned(),
            problem: format!(
                "network-scoped aliases are supported only on user-defined networks, not {}",
                crate::DEFAULT_NETWORK
            ),
        }),
        _ => Ok(()),
    }
}

/// The label of a volume the engine made for one container (`-v /data`, an image's
/// `VOLUME`), which goes with it (docker's).
pub const ANONYMOUS_VOLUME_LABEL: &str = "com.docker.volume.anonymous";

/// What is kept of a container besides its snapshot and monitor.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ContainerConfig {
    /// The full id.
    pub id: String,
    /// The name.
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    /// The image's config digest (docker's image id).
    pub image_id: String,
    /// When it was created (nanoseconds since the epoch).
    pub created: u64,
    /// The command (entrypoint and arguments) as the spec has it.
    pub command: Vec<String>,
    /// docker's `Config.Env`: the image's environment with the run's over it, without what
    /// the runtime adds (`HOSTNAME`, `HOME`, `TERM`); `None` in records older than this
    /// field (the spec's environment stands in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// The options it was run with.
    pub run: RunOptions,
    /// Removed when it exits.
    pub rm: bool,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Log cap.
    pub log: LogLimits,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The signal `stop` sends.
    pub stop_signal: String,
    /// Seconds `stop` waits before SIGKILL when not told (None: docker's 10; -1: for ever).
    #[serde(default)]
    pub stop_timeout: Option<i64>,
    /// Keep stdin open.
    pub interactive: bool,
    /// Named volumes: (name, path in the container, read-only).
    #[serde(default)]
    pub volumes: Vec<(String, String, bool)>,
    /// A reaper as pid 1.
    #[serde(default)]
    pub init: bool,
    /// `container:NAME` when it shares another container's network.
    #[serde(default)]
    pub network_mode: Option<String>,
    /// The bridge networks it joins at each start.
    #[serde(default)]
    pub networks: Vec<String>,
    /// Its network aliases, by network name.
    #[serde(default)]
    pub aliases: BTreeMap<String, Vec<String>>,
    /// The addresses it asked for, by network name.
    #[serde(default)]
    pub addresses: BTreeMap<String, std::net::Ipv4Addr>,
    /// The IPv6 addresses it asked for, by network name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub addresses6: BTreeMap<String, std::net::Ipv6Addr>,
    /// The MAC addresses it asked for, by network name.
    #[serde(default)]
    pub macs: BTreeMap<String, String>,
    /// Its links: each linked container's name, and the aliases it has here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub links: BTreeMap<String, Vec<String>>,
    /// The ports it publishes.
    #[serde(default)]
    pub publish: Vec<PortMapping>,
    /// Its health check as docker shows it: the run's over the image's (`NONE` when turned
    /// off); None when neither has one.
    #[serde(default)]
    pub healthcheck: Option<oci_rs_image::Healthcheck>,
    /// That check ready to run; None when it checks nothing.
    #[serde(default)]
    pub health: Option<crate::HealthProbe>,
}

impl ContainerConfig {
    /// How long `stop` waits before SIGKILL when not told: its `--stop-timeout`, else
    /// docker's 10 s (a year for "for ever").
    pub fn stop_timeout(&self) -> Duration {
        match self.stop_timeout {
            None => Duration::from_secs(10),
            Some(t) if t < 0 => Duration::from_secs(365 * 86_400),
            Some(t) => Duration::from_secs(t as u64),
        }
    }
}

/// One container as `ps` and `inspect` see it.
#[derive(Debug, Clone)]
pub struct ContainerView {
    /// What was recorded at creation.
    pub config: ContainerConfig,
    /// The monitor's status, reconciled with the process table.
    pub status: MonitorStatus,
    /// Running, with every process frozen ([`Containers::pause`]).
    pub paused: bool,
    /// Its monitor.
    pub monitor: Monitor,
}

/// How a copy into a container writes (`docker cp`'s flags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyIn {
    /// A link given as the host source is followed, and what it points at copied under the
    /// link's name (`-L`).
    pub follow_link: bool,
    /// What is written belongs to the container's user (`-a`, the Engine API's
    /// `copyUIDGID`) when it runs as one other than root; otherwise each entry keeps the
    /// owner its archive header gives, as dockerd does (docker's CLI writes the host files'
    /// owners there).
    pub copy_uid_gid: bool,
}

/// What [`Containers::exec`] runs.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The command.
    pub args: Vec<String>,
    /// More environment (`K=V`).
    pub env: Vec<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// User (`name`, `uid`, `uid:gid`).
    pub user: Option<String>,
    /// Give it this process's stdin.
    pub interactive: bool,
    /// Do not wait, and give it no stdio.
    pub detach: bool,
    /// A terminal: [`Containers::exec_process`] gives the process to run on one.
    pub tty: bool,
    /// Every capability this process holds, for root (docker's `exec --privileged`); the
    /// container's seccomp filter, cgroup and devices stay its own.
    pub privileged: bool,
}

/// A path in a container's filesystem as docker's `X-Docker-Container-Path-Stat` header
/// gives it ([`Containers::stat_path`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PathStat {
    /// The last component (`/` for the root).
    pub name: String,
    /// Its size in bytes.
    pub size: i64,
    /// Go's `os.FileMode`: the permission bits with the type in the high bits (directory
    /// `1 << 31`, symlink `1 << 27`, ...), as docker's clients read it.
    pub mode: u32,
    /// Modification time, RFC 3339.
    pub mtime: String,
    /// A symlink's target (empty for anything else).
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// Where a container path lies for `cp`: the root it resolves in (the container's
/// filesystem, or the host directory of a bind or volume mounted over the path) and the path
/// inside that root.
struct Located {
    /// The container's name (for messages).
    container: String,
    root: oci_rs_layer::Root,
    /// The path inside `root` (relative; empty for the root).
    rel: PathBuf,
    /// Where `root` is in the container (`/` for its own filesystem).
    mounted_at: PathBuf,
    /// Whether the mount is read-only.
    readonly: bool,
}

impl Located {
    fn missing(&self, path: &str) -> EngineError {
        EngineError::NoSuchPath {
            container: self.container.clone(),
            path: path.to_owned(),
        }
    }

    /// The stat of the path (`path` as the user gave it, for messages), and the parent's
    /// descriptor with the last component (none for the root). A symlink's target is given
    /// as docker gives it: resolved inside the container, absolute.
    fn stat(
        &self,
        path: &str,
    ) -> EngineResult<(PathStat, Option<(std::os::fd::OwnedFd, std::ffi::OsString)>)> {
        let (dir, name) = match self.rel.file_name() {
            Some(n) => {
                let parent = self.rel.parent().unwrap_or(Path::new(""));
                let fd = self.root.open_dir(parent).map_err(|_| self.missing(path))?;
                (Some(fd), n.to_owned())
            }
            None => (None, std::ffi::OsString::from(".")),
        };
        let base = match &dir {
            Some(d) => std::os::fd::AsFd::as_fd(d),
            None => self.root.fd(),
        };
        let st = rustix::fs::statat(base, &name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|_| self.missing(path))?;
        let link_target = match st.st_mode & libc::S_IFMT {
            libc::S_IFLNK => self.link_target(base, &name),
            _ => String::new(),
        };
        let shown = match (&dir, self.mounted_at.file_name()) {
            (Some(_), _) => name.to_string_lossy().into_owned(),
            // A mount's root is named as its mount point is.
            (None, Some(m)) => m.to_string_lossy().into_owned(),
            (None, None) => "/".into(),
        };
        let stat = PathStat {
            name: shown,
            size: st.st_size,
            mode: go_mode(st.st_mode),
            mtime: oci_rs_image::rfc3339(
                non_negative(st.st_mtime)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(non_negative(st.st_mtime_nsec)),
            ),
            link_target,
        };
        Ok((stat, dir.map(|d| (d, name))))
    }

    /// Symlink `name` (in `dir`)'s target as a path in the container: followed inside the
    /// root to what it names, else (dangling there, or naming a mount's contents) the
    /// target joined to the link's directory, `.` and `..` taken lexically.
    fn link_target(&self, dir: std::os::fd::BorrowedFd<'_>, name: &std::ffi::OsStr) -> String {
        let raw = rustix::fs::readlinkat(dir, name, Vec::new())
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
        let flags = rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC;
        let resolved = self.root.resolve(&self.rel, flags).ok().and_then(|fd| {
            let host = std::fs::read_link(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&fd)
            ))
            .ok()?;
            let root = std::fs::canonicalize(self.root.path()).ok()?;
            let inside = host.strip_prefix(&root).ok()?;
            Some(self.mounted_at.join(inside).display().to_string())
        });
        resolved.unwrap_or_else(|| {
            let at = self
                .mounted_at
                .join(self.rel.parent().unwrap_or(Path::new("")));
            let mut out = PathBuf::from("/");
            for c in at.join(&raw).components() {
                match c {
                    std::path::Component::Normal(n) => out.push(n),
                    std::path::Component::ParentDir => {
                        out.pop();
                    }
                    _ => {}
                }
            }
            out.display().to_string()
        })
    }
}

/// A stat field as u64 (its C type is signed on some architectures); negative as 0.
fn non_negative<T: TryInto<u64>>(v: T) -> u64 {
    v.try_into().unwrap_or(0)
}

/// Go's `os.FileMode` of a `st_mode`.
fn go_mode(mode: u32) -> u32 {
    let kind = match mode & libc::S_IFMT {
        libc::S_IFDIR => 1 << 31,
        libc::S_IFLNK => 1 << 27,
        libc::S_IFBLK => 1 << 26,
        libc::S_IFCHR => (1 << 26) | (1 << 21),
        libc::S_IFIFO => 1 << 25,
        libc::S_IFSOCK => 1 << 24,
        _ => 0,
    };
    let special = (if mode & libc::S_ISUID != 0 {
        1 << 23
    } else {
        0
    }) | (if mode & libc::S_ISGID != 0 {
        1 << 22
    } else {
        0
    }) | (if mode & libc::S_ISVTX != 0 {
        1 << 20
    } else {
        0
    });
    kind | special | (mode & 0o777)
}

/// One reading of a container's use ([`Containers::stats`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ContainerStats {
    /// The container's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was read (nanoseconds since the epoch).
    pub read_at: u64,
    /// When its process started (nanoseconds since the epoch), when known.
    pub started_at: Option<u64>,
    /// Its cgroup's counters.
    pub cgroup: crate::CgroupStats,
    /// Its network interfaces' counters (loopback left out), by name.
    pub networks: BTreeMap<String, InterfaceStats>,
    /// The host's CPU time so far, in nanoseconds (docker's `system_cpu_usage`).
    pub system_cpu_ns: Option<u64>,
    /// The host's CPUs.
    pub online_cpus: u32,
}

/// What docker's `stats` table shows of one container, from a reading and the one before.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatsRow {
    /// The container's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its CPU time against the host's between the two readings, times the host's CPUs (as
    /// docker's: 200% is two CPUs' worth); without a reading before, its CPU time since it
    /// started against the time since (podman's first figure).
    pub cpu_percent: f64,
    /// Memory in use, the inactive page cache left out (docker's).
    pub mem_usage: u64,
    /// Its memory limit, else the host's memory.
    pub mem_limit: u64,
    /// `mem_usage` against `mem_limit`.
    pub mem_percent: f64,
    /// Bytes received on its interfaces.
    pub net_rx: u64,
    /// Bytes sent.
    pub net_tx: u64,
    /// Bytes read from block devices.
    pub block_read: u64,
    /// Bytes written.
    pub block_write: u64,
    /// Its processes and threads.
    pub pids: u64,
}

impl StatsRow {
    /// The row of a container that is not running (`stats -a`): every figure zero, as
    /// docker shows it.
    pub fn not_running(id: &str, name: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            cpu_percent: 0.0,
            mem_usage: 0,
            mem_limit: 0,
            mem_percent: 0.0,
            net_rx: 0,
            net_tx: 0,
            block_read: 0,
            block_write: 0,
            pids: 0,
        }
    }

    /// docker's `stats --format` fields (`ID`, `Name`, `Container`, `CPUPerc`, `MemUsage`,
    /// `MemPerc`, `NetIO`, `BlockIO`, `PIDs`), as docker's CLI writes them (see
    /// `crate::format`).
    pub fn fields(&self) -> serde_json::Value {
        self.fields_with(false)
    }

    /// [`StatsRow::fields`]; with `no_trunc` the whole id (`stats --no-trunc`).
    pub fn fields_with(&self, no_trunc: bool) -> serde_json::Value {
        let pair = |a: String, b: String| format!("{a} / {b}");
        let id = match no_trunc {
            true => self.id.as_str(),
            false => self.id.get(..12).unwrap_or(&self.id),
        };
        serde_json::json!({
            "ID": id,
            "Name": self.name,
            "Container": self.name,
            "CPUPerc": format!("{:.2}%", self.cpu_percent),
            "MemUsage": pair(crate::binary_size(self.mem_usage), crate::binary_size(self.mem_limit)),
            "MemPerc": format!("{:.2}%", self.mem_percent),
            "NetIO": pair(crate::human_size(self.net_rx), crate::human_size(self.net_tx)),
            "BlockIO": pair(crate::human_size(self.block_read), crate::human_size(self.block_write)),
            "PIDs": self.pids.to_string(),
        })
    }
}

impl ContainerStats {
    /// docker's `stats` columns for this reading, with the CPU use since `before` (a
    /// reading of the same container).
    pub fn row_since(&self, before: Option<&ContainerStats>) -> StatsRow {
        let g = &self.cgroup;
        let cpu_percent = match before {
            Some(b) => (|| {
                let cpu = g.cpu_ns?.checked_sub(b.cgroup.cpu_ns?)?;
                let sys = self.system_cpu_ns?.checked_sub(b.system_cpu_ns?)?;
                (sys > 0).then(|| cpu as f64 / sys as f64 * f64::from(self.online_cpus) * 100.0)
            })(),
            // No reading before: the average since the container started (podman's first
            // figure), in the same unit (100% is one CPU's worth).
            None => (|| {
                let elapsed = self.read_at.checked_sub(self.started_at?)?;
                let cpu = g.cpu_ns?;
                (elapsed > 0).then(|| cpu as f64 / elapsed as f64 * 100.0)
            })(),
        }
        .unwrap_or(0.0);
        let mem_usage = g
            .memory
            .unwrap_or(0)
            .saturating_sub(g.inactive_file.unwrap_or(0));
        let mem_limit = g.memory_limit.unwrap_or_else(host_memory);
        StatsRow {
            id: self.id.clone(),
            name: self.name.clone(),
            cpu_percent,
            mem_usage,
            mem_limit,
            mem_percent: match mem_limit {
                0 => 0.0,
                l => mem_usage as f64 / l as f64 * 100.0,
            },
            net_rx: self.networks.values().map(|n| n.rx_bytes).sum(),
            net_tx: self.networks.values().map(|n| n.tx_bytes).sum(),
            block_read: g.io_read.unwrap_or(0),
            block_write: g.io_write.unwrap_or(0),
            pids: g.pids.unwrap_or(0),
        }
    }
}

/// The host's memory in bytes (`/proc/meminfo`'s MemTotal; 0 when unreadable): the limit of
/// a container without one.
pub fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// One network interface's counters, as `/proc/net/dev` has them.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct InterfaceStats {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Send errors.
    pub tx_errors: u64,
    /// Packets dropped on sending.
    pub tx_dropped: u64,
}

/// A process [`Containers::exec_piped`] started, and the caller's ends of its stdio.
#[derive(Debug)]
pub struct ExecSession {
    /// The process (wait for it to learn its exit code).
    pub process: crate::ExecProcess,
    /// Its stdin's write end, with `interactive` (the terminal itself with `tty`).
    pub stdin: Option<std::os::fd::OwnedFd>,
    /// Its stdout's read end, or the terminal's master with `tty`.
    pub stdout: std::os::fd::OwnedFd,
    /// Its stderr's read end (none with `tty`: the terminal carries both).
    pub stderr: Option<std::os::fd::OwnedFd>,
}

/// The container store under a data directory.
pub struct Containers {
    data: PathBuf,
    dir: PathBuf,
    state_root: PathBuf,
}

/// `bytes` random bytes from the kernel, as hex (ids of containers, build steps).
pub fn random_hex(bytes: usize) -> EngineResult<String> {
    let mut b = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| EngineError::io("read", "/dev/urandom", e))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The event journal's file, in the data directory.
pub(super) const EVENTS_FILE: &str = "events.jsonl";

const ADJECTIVES: [&str; 24] = [
    "brave", "calm", "clever", "eager", "fervent", "gentle", "happy", "jolly", "keen", "lucid",
    "merry", "nifty", "proud", "quirky", "relaxed", "serene", "sharp", "sleepy", "stoic", "tender",
    "upbeat", "vibrant", "wise", "zealous",
];
const SURNAMES: [&str; 24] = [
    "babbage",
    "curie",
    "darwin",
    "euler",
    "faraday",
    "gauss",
    "hopper",
    "hypatia",
    "kepler",
    "lovelace",
    "maxwell",
    "meitner",
    "newton",
    "noether",
    "pascal",
    "ramanujan",
    "ritchie",
    "shannon",
    "tesla",
    "thompson",
    "turing",
    "volta",
    "wozniak",
    "yalow",
];

/// docker's names: `[a-zA-Z0-9][a-zA-Z0-9_.-]`, at most 128 bytes.
pub(crate) fn valid_name(what: &'static str, name: &str) -> EngineResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(EngineError::InvalidName {
            what,
            name: name.to_owned(),
        })
    }
}

impl Containers {
    /// The store under `data` (created when missing, private to its owner).
    pub fn open(data: &Path) -> EngineResult<Self> {
        let dir = data.join("containers");
        oci_rs_layer::private_dir(data)?;
        oci_rs_layer::private_dir(&dir)?;
        oci_rs_layer::private_dir(&dir.join(".names"))?;
        Ok(Self {
            data: data.to_owned(),
            dir,
            state_root: data.join("run"),
        })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The snapshots of the containers' filesystems (`DATA/snapshots`).
    pub fn snapshots(&self) -> EngineResult<Snapshotter> {
        Ok(Snapshotter::new(self.data.join("snapshots"))?)
    }

    /// The runtime's state root of the containers' processes (`DATA/run`).
    pub fn state_root(&self) -> &Path {
        &self.state_root
    }

    fn config_of(&self, id: &str) -> EngineResult<ContainerConfig> {
        read_record(&self.dir.join(id).join("config.json"))?
            .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))
    }

    fn ids(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| !n.starts_with('.') && self.dir.join(n).join("config.json").exists())
            .collect();
        out.sort();
        out
    }

    /// The full id of the container named `what`: a name, a full id or a unique id prefix.
    pub fn resolve(&self, what: &str) -> EngineResult<String> {
        if what.is_empty() || what.contains('/') || what.starts_with('.') {
            return Err(EngineError::NoSuchContainer(what.to_owned()));
        }
        if let Ok(id) = std::fs::read_to_string(self.dir.join(".names").join(what)) {
            if self.dir.join(&id).join("config.json").exists() {
                return Ok(id);
            }
        }
        let matches: Vec<String> = self
            .ids()
            .into_iter()
            .filter(|id| id.starts_with(what))
            .collect();
        match matches.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(EngineError::NoSuchContainer(what.to_owned())),
            _ => Err(EngineError::AmbiguousContainer(what.to_owned())),
        }
    }

    /// Takes `name` for `id`: the name file appears whole or not at all (written aside, then
    /// linked into place, which fails if the name exists), so a racing run that lost reads
    /// the winner's id, never an empty file.
    fn reserve_name(&self, name: &str, id: &str) -> EngineResult<()> {
        valid_name("container", name)?;
        let names = self.dir.join(".names");
        let path = names.join(name);
        let aside = names.join(format!(".{id}.{}", random_hex(4)?));
        std::fs::write(&aside, id).map_err(|e| EngineError::io("write", &aside, e))?;
        let linked = std::fs::hard_link(&aside, &path);
        let _ = std::fs::remove_file(&aside);
        match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(EngineError::NameInUse {
                    name: name.to_owned(),
                    by: std::fs::read_to_string(&path).unwrap_or_default(),
                })
            }
            Err(e) => Err(EngineError::io("create", &path, e)),
        }
    }

    fn generated_name(&self, id: &str) -> EngineResult<String> {
        let r = random_hex(8)?;
        let n = u64::from_str_radix(&r, 16).unwrap_or(0);
        for attempt in 0..64u64 {
            let v = n.wrapping_add(attempt.wrapping_mul(7919));
            let mut name = format!(
                "{}_{}",
                ADJECTIVES[(v % 24) as usize],
                SURNAMES[(v / 24 % 24) as usize]
            );
            if attempt >= 24 {
                name.push_str(&(attempt % 10).to_string());
            }
            match self.reserve_name(&name, id) {
                Ok(()) => return Ok(name),
                Err(EngineError::NameInUse { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Err(EngineError::NoFreeName)
    }

    /// Creates a container from `image` and starts it under a detached monitor (`run`).
    /// Returns the id and the monitor; unless `req.detach`, the process waits for a client
    /// to attach (see [`Monitor`]) so that it misses no output. When anything fails, nothing
    /// of the container is left.
    pub async fn run(
        &self,
        image: &RunImage<'_>,
        req: RunRequest,
    ) -> EngineResult<(String, Monitor)> {
        self.create_or_run(image, req, true).await
    }

    /// Creates a container from `image` without starting it (docker's `create`): its
    /// snapshot, record and a monitor record in the `created` state. [`Containers::start`]
    /// starts it. When anything fails, nothing of the container is left.
    pub async fn create(
        &self,
        image: &RunImage<'_>,
        req: RunRequest,
    ) -> EngineResult<(String, Monitor)> {
        self.create_or_run(image, req, false).await
    }

    async fn create_or_run(
        &self,
        image: &RunImage<'_>,
        req: RunRequest,
        start: bool,
    ) -> EngineResult<(String, Monitor)> {
        // Parsed before anything is made, so a bad option leaves nothing behind.
        let stop_signal = req.stop_signal.clone();
        if let Some(s) = &stop_signal {
            crate::parse_signal(s)?;
        }
        check_aliases(req.name.as_deref().unwrap_or("(new)"), &req.aliases)?;
        check_addresses(&req.addresses)?;
        for m in req.macs.values() {
            crate::parse_mac(m)?;
        }
        if let Some(h) = &req.opts.healthcheck {
            h.validate()?;
        }
        let id = random_hex(32)?;
        let name = match &req.name {
            Some(n) => {
                self.reserve_name(n, &id)?;
                n.clone()
            }
            None => self.generated_name(&id)?,
        };
        let mut created = None;
        let made = match self.make(image, &req, &id, &name, stop_signal).await {
            Ok((cfg, spec)) => {
                // Recorded before its monitor can record its start.
                self.event(&cfg, "create", &[]);
                let cfg = created.insert(cfg);
                match start {
                    true => self.start_monitor(cfg, spec, !req.detach),
                    false => Monitor::prepare(self.monitor_config(cfg, spec, false))
                        .map_err(EngineError::from),
                }
            }
            Err(e) => Err(e),
        };
        match made {
            Ok(m) => Ok((id, m)),
            Err(e) => {
                if let Some(cfg) = &created {
                    self.event(cfg, "destroy", &[]);
                }
                // The container exists only if its monitor has it: clean up what was made.
                if let Err(e) = self.remove_files(&id, Some(&name), None) {
                    tracing::warn!(container = %id, error = %crate::chain(&e), "cleaning up a failed run");
                }
                Err(e)
            }
        }
    }

    async fn make(
        &self,
        image: &RunImage<'_>,
        req: &RunRequest,
        id: &str,
        name: &str,
        stop_signal: Option<String>,
    ) -> EngineResult<(ContainerConfig, oci_spec::runtime::Spec)> {
        let config = &image.config;
        let mut opts = req.opts.clone();
        let cfg_network = opts.network;
        let mut publish = req.publish.clone();
        if req.publish_all {
            let exposed = config
                .config()
                .as_ref()
                .and_then(|c| c.exposed_ports().clone())
                .unwrap_or_default();
            for e in exposed {
                publish.extend(crate::parse_publish(&e)?);
            }
        }
        if !publish.is_empty() && cfg_network == NetworkMode::Host && opts.join_network.is_none() {
            // docker's: the host's ports are the container's; a warning, not an error
            // (see `RunRequest::warnings`).
            tracing::warn!("{PORTS_DISCARDED}");
            publish.clear();
        }
        if !publish.is_empty() && !matches!(cfg_network, NetworkMode::Bridge | NetworkMode::Slirp) {
            return Err(crate::Error::InvalidOption {
                option: "port publication",
                value: req.network_mode.clone().unwrap_or_else(|| {
                    match cfg_network {
                        NetworkMode::Host => "host",
                        _ => "none",
                    }
                    .into()
                }),
                reason: "ports are published only on a bridge network or with slirp4netns".into(),
            }
            .into());
        }
        // docker's rule: two of the user's mounts (binds, tmpfs, volumes) on one path are
        // refused, not one silently dropped.
        let mut targets = std::collections::BTreeSet::new();
        let user_targets = opts
            .mounts
            .iter()
            .map(|m| m.target())
            .chain(req.volumes.iter().map(|v| v.1.as_str()));
        for t in user_targets {
            let norm = t.trim_end_matches('/');
            if !targets.insert(if norm.is_empty() { "/" } else { norm }) {
                return Err(EngineError::MountSpec {
                    flag: "volume",
                    spec: t.to_owned(),
                    problem: format!("Duplicate mount point: {t}"),
                });
            }
        }
        let snap = self.snapshots()?;
        let mount = snap
            .prepare(id, image.source, &image.manifest, false)
            .await?;
        if opts.uts_host {
            // docker's rule: the host's UTS namespace has the host's name.
            if let Some(h) = &opts.hostname {
                return Err(crate::Error::option(
                    "hostname",
                    h,
                    "conflicting options: hostname and the UTS mode (host)",
                )
                .into());
            }
            opts.hostname = Some(
                rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        let hostname = opts
            .hostname
            .get_or_insert_with(|| id[..12].to_owned())
            .clone();
        let dir = self.dir.join(id);
        oci_rs_layer::private_dir(&dir)?;
        if let crate::NamespaceChoice::Shareable { shm } = &mut opts.ipc {
            *shm = dir.join(SHM_DIR);
            mount_shm(shm, opts.shm_size)?;
        }
        // Before the user's mounts, so a -v on one of them wins, as with docker.
        let mut mounts = crate::etc_files(&dir, &hostname, opts.network)?;
        // docker's `--add-host NAME:host-gateway`: the host as the container reaches it.
        let is_gateway = |h: &String| h.ends_with(":host-gateway") || h.ends_with("=host-gateway");
        if opts.extra_hosts.iter().any(is_gateway) {
            let gateway = match opts.network {
                NetworkMode::Bridge => {
                    let net = req.networks.first().map_or(crate::DEFAULT_NETWORK, |n| n);
                    self.networks().get(net)?.gateway.to_string()
                }
                // slirp4netns's address of the host.
                NetworkMode::Slirp => "10.0.2.2".to_owned(),
                _ => "127.0.0.1".to_owned(),
            };
            for h in opts.extra_hosts.iter_mut().filter(|h| is_gateway(h)) {
                let name = h.len() - "host-gateway".len() - 1;
                *h = format!("{}:{gateway}", &h[..name]);
            }
        }
        crate::etc_extras(&dir, &opts)?;
        mounts.append(&mut opts.mounts);
        let wanted = self.volume_list(req, config, &mounts)?;
        if !wanted.is_empty() {
            let volumes = Volumes::open(&self.data)?;
            for (vname, target, readonly) in &wanted {
                let labels = match req.volumes.iter().any(|v| &v.0 == vname) {
                    true => BTreeMap::new(),
                    false => BTreeMap::from([(ANONYMOUS_VOLUME_LABEL.to_owned(), String::new())]),
                };
                let (info, _) = volumes.create(vname, labels)?;
                volumes.mount(vname)?;
                volumes
                    .fill_from_image(vname, &mount.rootfs, target)
                    .await?;
                mounts.retain(|m| m.target() != target);
                mounts.push(crate::ExtraMount::Bind {
                    source: info.mountpoint,
                    target: target.clone(),
                    readonly: *readonly,
                });
            }
        }
        if let Some(init) = &req.init_path {
            let is_file = std::fs::metadata(init).is_ok_and(|m| m.is_file());
            if !init.is_absolute() || !is_file {
                return Err(crate::Error::option(
                    "init-path",
                    init.display(),
                    "not an absolute path to a file on this host",
                )
                .into());
            }
            mounts.push(crate::ExtraMount::Bind {
                source: init.clone(),
                target: INIT_TARGET.into(),
                readonly: true,
            });
        }
        opts.mounts = mounts;
        if !rustix::process::geteuid().is_root() && opts.rootless.is_none() {
            opts.rootless = Some(crate::Rootless::current());
        }
        let mut spec = crate::spec_from_image(config, &mount.rootfs, &opts)?;
        if opts.terminal && !req.detach {
            if let Some(p) = spec.process_mut() {
                p.set_console_size(req.console_size);
            }
        }
        let command = spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default();
        if req.init_path.is_some() {
            if let Some(p) = spec.process_mut() {
                let args = [INIT_TARGET.to_owned(), "--".to_owned()]
                    .into_iter()
                    .chain(command.iter().cloned())
                    .collect();
                p.set_args(Some(args));
            }
        }
        let image_stop = config
            .config()
            .as_ref()
            .and_then(|c| c.stop_signal().clone());
        let networks = if cfg_network == NetworkMode::Bridge && req.networks.is_empty() {
            vec![crate::DEFAULT_NETWORK.to_owned()]
        } else {
            req.networks.clone()
        };
        let mut aliases = req.aliases.clone();
        aliases.retain(|net, a| !a.is_empty() && networks.contains(net));
        let mut addresses = req.addresses.clone();
        addresses.retain(|net, _| networks.contains(net));
        let mut addresses6 = req.addresses6.clone();
        addresses6.retain(|net, _| networks.contains(net));
        let mut macs = req.macs.clone();
        macs.retain(|net, _| networks.contains(net));
        let links = self.link_targets(name, cfg_network, &req.links)?;
        let healthcheck = match (&image.extras.healthcheck, &opts.healthcheck) {
            (Some(i), Some(o)) => Some(i.merged_under(o)),
            (i, o) => o.clone().or_else(|| i.clone()),
        };
        let health = healthcheck
            .as_ref()
            .and_then(|h| crate::HealthProbe::of(h, &image.extras.shell));
        let mut env = Vec::new();
        let image_env = config.config().as_ref().and_then(|c| c.env().clone());
        for e in image_env.iter().flatten().chain(opts.env.iter()) {
            crate::set_env(&mut env, e);
        }
        let cfg = ContainerConfig {
            id: id.to_owned(),
            name: name.to_owned(),
            image: image.name.clone(),
            image_id: image.config_digest.to_string(),
            created: crate::now_ns(),
            command,
            env: Some(env),
            run: opts,
            rm: req.rm,
            restart: req.restart,
            log: req.log.clone(),
            labels: req.labels.clone(),
            stop_signal: stop_signal
                .or(image_stop)
                .unwrap_or_else(|| "SIGTERM".into()),
            interactive: req.interactive,
            stop_timeout: req.stop_timeout,
            volumes: wanted,
            init: req.init && req.init_path.is_none(),
            network_mode: req.network_mode.clone(),
            networks,
            aliases,
            addresses,
            addresses6,
            macs,
            links,
            publish,
            healthcheck,
            health,
        };
        self.save_config(&cfg)?;
        Ok((cfg, spec))
    }

    /// The volumes of a new container: `req`'s, an anonymous one given a random name, and
    /// one for each of the image's `VOLUME`s that no mount or volume of `req` covers.
    fn volume_list(
        &self,
        req: &RunRequest,
        config: &ImageConfiguration,
        mounts: &[crate::ExtraMount],
    ) -> EngineResult<Vec<(String, String, bool)>> {
        let mut out = Vec::new();
        for (name, target, ro) in &req.volumes {
            let name = match name.is_empty() {
                true => random_hex(32)?,
                false => name.clone(),
            };
            out.push((name, target.clone(), *ro));
        }
        let image_volumes = config
            .config()
            .as_ref()
            .and_then(|c| c.volumes().clone())
            .unwrap_or_default();
        let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
        for path in image_volumes {
            let covered = out.iter().any(|(_, t, _)| same(t, &path))
                || mounts.iter().any(|m| same(m.target(), &path));
            if !covered {
                out.push((random_hex(32)?, path, false));
            }
        }
        Ok(out)
    }

    fn start_monitor(
        &self,
        cfg: &ContainerConfig,
        spec: oci_spec::runtime::Spec,
        attach_first: bool,
    ) -> EngineResult<Monitor> {
        self.check_links(cfg)?;
        let (m, _pid) = Monitor::spawn(self.monitor_config(cfg, spec, attach_first))?;
        Ok(m)
    }

    fn monitor_config(
        &self,
        cfg: &ContainerConfig,
        spec: oci_spec::runtime::Spec,
        attach_first: bool,
    ) -> MonitorConfig {
        let dir = self.dir.join(&cfg.id);
        let bundle = self.data.join("snapshots/containers").join(&cfg.id);
        let mut mc = MonitorConfig::new(&cfg.id, spec, &bundle, &self.state_root, &dir);
        mc.log = cfg.log.clone();
        mc.restart = cfg.restart;
        mc.stdin = cfg.interactive;
        mc.attach_first = attach_first;
        mc.init = cfg.init;
        mc.health = cfg.health.clone();
        mc.network = match cfg.run.network {
            NetworkMode::Bridge => Some(NetworkPlan::Bridge {
                store: Networks::host_dir(),
                request: self.network_request(cfg),
            }),
            NetworkMode::Slirp => Some(NetworkPlan::Slirp {
                ports: cfg.publish.clone(),
            }),
            _ => None,
        };
        if cfg.rm {
            // The monitor removes the container through this store when it has ended.
            mc.remove_from = Some(self.data.clone());
        }
        mc.events = Some(crate::EventSink {
            journal: self.journal().path().to_owned(),
            attributes: Self::event_attributes(cfg),
            volumes: cfg.volumes.clone(),
        });
        mc
    }

    /// The store's event journal (`DATA/events.jsonl`): what its containers, networks and
    /// volumes went through, as docker's `events` reports it.
    pub fn journal(&self) -> crate::Journal {
        crate::Journal::open(&self.data.join(EVENTS_FILE))
    }

    /// docker's attributes of container `cfg`'s events: its name, image and labels.
    fn event_attributes(cfg: &ContainerConfig) -> BTreeMap<String, String> {
        let mut a = cfg.labels.clone();
        a.insert("name".into(), cfg.name.clone());
        a.insert("image".into(), cfg.image.clone());
        a
    }

    /// Records container `cfg`'s event `action` with `extra` attributes (best effort: the
    /// change it reports has happened, whatever becomes of the journal).
    fn event(&self, cfg: &ContainerConfig, action: &str, extra: &[(&str, String)]) {
        let mut e = crate::Event::new("container", action, &cfg.id);
        e.attributes = Self::event_attributes(cfg);
        for (k, v) in extra {
            e.attributes.insert((*k).to_owned(), v.clone());
        }
        self.record(&e);
    }

    /// An observer for an image store of the same data directory
    /// ([`ImageStore::with_observer`](oci_rs_layer::ImageStore::with_observer)) that
    /// records what it does in this store's journal as docker's image events (`image`
    /// events, the image's name as `name`).
    pub fn image_observer(&self) -> oci_rs_layer::ImageObserver {
        let journal = self.journal();
        std::sync::Arc::new(move |c: &oci_rs_layer::ImageChange| {
            let mut e = crate::Event::new("image", c.action, &c.id);
            if let Some(n) = &c.name {
                e = e.with("name", n);
            }
            if let Err(err) = journal.record(&e) {
                tracing::warn!(id = %e.id, action = %e.action, error = %crate::chain(&err), "recording an event");
            }
        })
    }

    /// Records container `what`'s event `action` (best effort: a container that cannot be
    /// read records nothing).
    fn event_of(&self, what: &str, action: &str) {
        if let Ok(v) = self.view(what) {
            self.event(&v.config, action, &[]);
        }
    }

    /// Records docker's `attach` event of container `what`: a client attached to its
    /// streams (`attach`, `start -a`, `run` without `-d`).
    pub fn attached(&self, what: &str) {
        self.event_of(what, "attach");
    }

    /// Records `e` in the journal, best effort.
    pub(crate) fn record(&self, e: &crate::Event) {
        if let Err(err) = self.journal().record(e) {
            tracing::warn!(id = %e.id, action = %e.action, error = %crate::chain(&err), "recording an event");
        }
    }

    /// Creates bridge network `name` as `opts` ask (its subnet, else the next free one) in
    /// the host's network store, and records it (docker's `network create`).
    pub fn create_network(
        &self,
        name: &str,
        opts: &crate::NetworkOptions,
    ) -> EngineResult<crate::NetworkConfig> {
        let n = self.networks().create_with(name, opts)?;
        self.network_event("create", &n, None);
        Ok(n)
    }

    /// Removes network `name` (refused while a container is on it), and records it.
    pub fn remove_network(&self, name: &str) -> EngineResult<()> {
        let nets = self.networks();
        let n = nets.get(name)?;
        nets.remove(&n.name)?;
        self.network_event("destroy", &n, None);
        Ok(())
    }

    /// Removes every network that `filter` passes and no container is on, except the
    /// default one (docker's `network prune`); their names. One that a container joined
    /// meanwhile stays.
    pub fn prune_networks(&self, filter: &crate::NetworkFilter) -> EngineResult<Vec<String>> {
        let (nets, eps) = self.networks().list_filtered(filter)?;
        let mut gone = Vec::new();
        for cfg in nets {
            if cfg.name == crate::DEFAULT_NETWORK || eps.iter().any(|e| e.network == cfg.name) {
                continue;
            }
            match self.remove_network(&cfg.name) {
                Ok(()) => gone.push(cfg.name),
                Err(EngineError::Runtime(r))
                    if matches!(*r, crate::Error::Network(crate::NetError::InUse { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(gone)
    }

    /// Records network `n`'s event `action` (of `container`, for connect and disconnect).
    fn network_event(&self, action: &str, n: &crate::NetworkConfig, container: Option<&str>) {
        let mut e = crate::Event::new("network", action, &n.id)
            .with("name", &n.name)
            .with("type", "bridge");
        if let Some(c) = container {
            e = e.with("container", c);
        }
        self.record(&e);
    }

    /// The network store: the host's one (see [`Networks::host`]).
    pub fn networks(&self) -> Networks {
        Networks::host()
    }

    /// Joins container `what` to network `net`, where it also answers to `aliases`: now
    /// when it runs, and at every start.
    pub fn connect(&self, net: &str, what: &str, aliases: &[String]) -> EngineResult<()> {
        self.connect_with(net, what, aliases, &[])
    }

    /// [`Containers::connect`] with the addresses it gets there (`network connect --ip`,
    /// `--ip6`): at most one of each family.
    pub fn connect_with(
        &self,
        net: &str,
        what: &str,
        aliases: &[String],
        addresses: &[std::net::IpAddr],
    ) -> EngineResult<()> {
        let v = self.view(what)?;
        let nets = self.networks();
        let n = nets.get(net)?;
        if v.config.run.network != NetworkMode::Bridge {
            return Err(EngineError::Network {
                container: v.config.name,
                problem: format!("it is not on a bridge network: it cannot join {}", n.name),
            });
        }
        if v.config.networks.contains(&n.name) {
            return Err(EngineError::Network {
                container: v.config.name,
                problem: format!("it is already on network {}", n.name),
            });
        }
        let mut cfg = v.config.clone();
        cfg.aliases.insert(n.name.clone(), aliases.to_vec());
        check_aliases(&cfg.name, &cfg.aliases)?;
        let (mut v4, mut v6) = (None, None);
        for a in addresses {
            let twice = match a {
                std::net::IpAddr::V4(a) => v4.replace(*a).is_some(),
                std::net::IpAddr::V6(a) => v6.replace(*a).is_some(),
            };
            if twice {
                return Err(crate::Error::option("ip", a, "one address per family").into());
            }
        }
        if let Some(a) = v4 {
            cfg.addresses.insert(n.name.clone(), a);
        }
        if let Some(a) = v6 {
            cfg.addresses6.insert(n.name.clone(), a);
        }
        check_addresses(&cfg.addresses)?;
        if v.status.state == MonitorState::Running {
            // connect takes only the network asked for, and no ports, from the request.
            nets.connect(&n.name, &self.network_request(&cfg), v.status.pid)?;
        }
        self.update_config(&v.config.id, |cfg| {
            cfg.aliases.insert(n.name.clone(), aliases.to_vec());
            if let Some(a) = v4 {
                cfg.addresses.insert(n.name.clone(), a);
            }
            if let Some(a) = v6 {
                cfg.addresses6.insert(n.name.clone(), a);
            }
            cfg.networks.push(n.name.clone());
            Ok(())
        })?;
        self.network_event("connect", &n, Some(&v.config.id));
        Ok(())
    }

    /// Takes container `what` off network `net`.
    pub fn disconnect(&self, net: &str, what: &str) -> EngineResult<()> {
        let v = self.view(what)?;
        let nets = self.networks();
        let n = nets.get(net)?;
        if !v.config.networks.contains(&n.name) {
            return Err(EngineError::Network {
                container: v.config.name,
                problem: format!("it is not on network {}", n.name),
            });
        }
        nets.disconnect(&n.name, &v.config.id)?;
        self.update_config(&v.config.id, |cfg| {
            cfg.networks.retain(|x| *x != n.name);
            cfg.aliases.remove(&n.name);
            cfg.addresses.remove(&n.name);
            cfg.addresses6.remove(&n.name);
            Ok(())
        })?;
        self.network_event("disconnect", &n, Some(&v.config.id));
        Ok(())
    }

    /// `diff`: what container `what` changed against its image, as docker lists it (added,
    /// changed, deleted paths, sorted), the files the runtime binds over left out.
    pub fn diff(&self, what: &str) -> EngineResult<Vec<oci_rs_layer::Change>> {
        let id = self.resolve(what)?;
        let cfg = self.config_of(&id)?;
        // What the runtime mounted over: its /etc files, /dev, /proc and /sys, and the
        // container's own mounts.
        let points: Vec<PathBuf> = crate::ETC_MOUNT_POINTS
            .iter()
            .chain(&["dev", "proc", "sys"])
            .map(PathBuf::from)
            .chain(
                cfg.run
                    .mounts
                    .iter()
                    .map(|m| PathBuf::from(m.target().trim_start_matches('/'))),
            )
            .collect();
        Ok(self.snapshots()?.change_list(&id, &points)?)
    }

    /// `rename OLD NEW`: container `what` takes the name `new` (taken as `run --name` takes
    /// one: of two renames to one name exactly one wins) and gives up its old one.
    /// Containers on its networks keep the old name in their `/etc/hosts` until they are
    /// connected again.
    pub fn rename(&self, what: &str, new: &str) -> EngineResult<()> {
        let id = self.resolve(what)?;
        if self.config_of(&id)?.name == new {
            return Err(EngineError::SameName(new.to_owned()));
        }
        self.reserve_name(new, &id)?;
        let old = self.update_config(&id, |cfg| {
            Ok(std::mem::replace(&mut cfg.name, new.to_owned()))
        });
        let names = self.dir.join(".names");
        let old = match old {
            Ok(old) => old,
            Err(e) => {
                let _ = std::fs::remove_file(names.join(new));
                return Err(e);
            }
        };
        // The old name goes only if it still names this container.
        let path = names.join(&old);
        if std::fs::read_to_string(&path).is_ok_and(|x| x == id) {
            std::fs::remove_file(&path).map_err(|e| EngineError::io("remove", &path, e))?;
        }
        if let Ok(cfg) = self.config_of(&id) {
            self.event(&cfg, "rename", &[("oldName", old)]);
        }
        Ok(())
    }

    /// Reads container `id`'s record, changes it with `f` and writes it, under the record's
    /// lock: two processes changing one container (a connect and a rename) both keep their
    /// change.
    fn update_config<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerConfig) -> EngineResult<T>,
    ) -> EngineResult<T> {
        let path = self.dir.join(id).join(".config.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| EngineError::io("open", &path, e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| EngineError::io("lock", &path, e.into()))?;
        let mut cfg = self.config_of(id)?;
        let out = f(&mut cfg)?;
        self.save_config(&cfg)?;
        Ok(out)
    }

    /// What container `cfg` asks of its bridge networks at each start.
    fn network_request(&self, cfg: &ContainerConfig) -> NetworkRequest {
        NetworkRequest {
            container: cfg.id.clone(),
            name: cfg.name.clone(),
            hostname: cfg.run.hostname.clone().unwrap_or_default(),
            networks: cfg.networks.clone(),
            ports: cfg.publish.clone(),
            hosts_file: Some(self.dir.join(&cfg.id).join("hosts")),
            aliases: cfg.aliases.clone(),
            addresses: cfg.addresses.clone(),
            addresses6: cfg.addresses6.clone(),
            macs: cfg.macs.clone(),
            links: cfg.links.clone(),
        }
    }

    /// The links of a container `name` to make, by linked container name: each one
    /// exists, and the container is on bridge networks (docker's rules).
    fn link_targets(
        &self,
        name: &str,
        network: NetworkMode,
        links: &[(String, String)],
    ) -> EngineResult<BTreeMap<String, Vec<String>>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if links.is_empty() {
            return Ok(out);
        }
        if network != NetworkMode::Bridge {
            return Err(EngineError::Network {
                container: name.to_owned(),
                problem: "conflicting options: links need a bridge network".into(),
            });
        }
        for (target, alias) in links {
            // docker's words; not a missing container of the request itself.
            let id = self.resolve(target).map_err(|e| match e {
                EngineError::NoSuchContainer(_) => EngineError::Network {
                    container: name.to_owned(),
                    problem: format!("Could not get container for {target}"),
                },
                e => e,
            })?;
            let linked = self.config_of(&id)?;
            let aliases = out.entry(linked.name).or_default();
            if !aliases.contains(alias) {
                aliases.push(alias.clone());
            }
        }
        Ok(out)
    }

    /// docker's rule at each start: every linked container is running.
    fn check_links(&self, cfg: &ContainerConfig) -> EngineResult<()> {
        for (target, aliases) in &cfg.links {
            let running = self
                .view(target)
                .is_ok_and(|v| v.status.state == MonitorState::Running);
            if !running {
                return Err(EngineError::Network {
                    container: cfg.name.clone(),
                    problem: format!(
                        "Cannot link to a non running container: /{target} AS /{}/{}",
                        cfg.name,
                        aliases.first().map_or(target.as_str(), String::as_str)
                    ),
                });
            }
        }
        Ok(())
    }

    fn save_config(&self, cfg: &ContainerConfig) -> EngineResult<()> {
        write_record(&self.dir.join(&cfg.id).join("config.json"), cfg)
    }

    /// The monitor of container `what`.
    pub fn monitor(&self, what: &str) -> EngineResult<Monitor> {
        let id = self.resolve(what)?;
        Ok(Monitor::open(&self.dir.join(id))?)
    }

    /// A container's record and reconciled status.
    pub fn view(&self, what: &str) -> EngineResult<ContainerView> {
        let id = self.resolve(what)?;
        // Removed meanwhile (by its `--rm` monitor, or another process): gone, not broken.
        let gone = |e: EngineError| match self.dir.join(&id).join("config.json").exists() {
            true => e,
            false => EngineError::NoSuchContainer(what.to_owned()),
        };
        let config = self.config_of(&id).map_err(gone)?;
        let Ok((monitor, status)) =
            Monitor::open(&self.dir.join(&id)).and_then(|m| m.status().map(|s| (m, s)))
        else {
            return Err(gone(EngineError::NoMonitor(id.clone())));
        };
        let paused = status.state == MonitorState::Running
            && crate::Container::load(&self.state_root, &id)
                .is_ok_and(|c| c.status() == crate::Status::Paused);
        Ok(ContainerView {
            config,
            status,
            paused,
            monitor,
        })
    }

    /// Every container, newest first.
    pub fn list(&self) -> EngineResult<Vec<ContainerView>> {
        let mut out: Vec<ContainerView> = self
            .ids()
            .iter()
            .filter_map(|id| self.view(id).ok())
            .collect();
        out.sort_by_key(|v| std::cmp::Reverse(v.config.created));
        Ok(out)
    }

    /// [`list`](Self::list) as docker's daemon lists containers: each one's `config.image` is
    /// the name it was created from while that name still names the container's image in
    /// `images`, and the image's id (`sha256:…`) once the name is gone (`rmi -f`) or names
    /// another image (a newer pull or build).
    pub async fn list_with_images(
        &self,
        images: &oci_rs_layer::ImageStore,
    ) -> EngineResult<Vec<ContainerView>> {
        let mut views = self.list()?;
        let mut current: std::collections::HashMap<String, Vec<String>> = Default::default();
        for v in &mut views {
            let c = &mut v.config;
            if c.image_id.is_empty() || c.image.is_empty() {
                continue;
            }
            if !current.contains_key(&c.image) {
                let ids = match images.find_opt(&c.image).await {
                    Ok(Some(found)) => images.image_ids(&found.desc).await.unwrap_or_default(),
                    _ => Vec::new(),
                };
                current.insert(c.image.clone(), ids);
            }
            if !current
                .get(&c.image)
                .is_some_and(|ids| ids.contains(&c.image_id))
            {
                c.image = c.image_id.clone();
            }
        }
        Ok(views)
    }

    /// [`Containers::stop`] with `timeout`, or the container's own (`--stop-timeout`, 10 s
    /// when it has none): docker's `stop` with and without `-t`.
    pub fn stop_within(
        &self,
        what: &str,
        timeout: Option<Duration>,
    ) -> EngineResult<MonitorStatus> {
        let timeout = match timeout {
            Some(t) => t,
            None => self.view(what)?.config.stop_timeout(),
        };
        self.stop(what, timeout)
    }

    /// docker's `restart`: a running (or restarting) container stopped as by
    /// [`Containers::stop_within`], then started again; a stopped one just started. A
    /// container run with `rm` is kept across the stop, as dockerd keeps it.
    pub fn restart(&self, what: &str, timeout: Option<Duration>) -> EngineResult<Monitor> {
        let v = self.view(what)?;
        if matches!(
            v.status.state,
            MonitorState::Running | MonitorState::Restarting
        ) {
            v.monitor.keep_on_exit()?;
            self.stop_within(&v.config.id, timeout)?;
        }
        let m = self.start(&v.config.id, false)?;
        self.event(&v.config, "restart", &[]);
        Ok(m)
    }

    /// Stops container `what`: its stop signal, then SIGKILL after `timeout`. A paused
    /// container is thawed first, as docker does, so that it can act on the signal.
    pub fn stop(&self, what: &str, timeout: Duration) -> EngineResult<MonitorStatus> {
        let v = self.view(what)?;
        if v.paused {
            self.thaw(&v.config.id)?;
        }
        let sig = crate::parse_signal(&v.config.stop_signal)?;
        let was_running = v.status.state == MonitorState::Running;
        if was_running {
            // docker's: the stop signal is a kill event before the die and the stop.
            self.event(&v.config, "kill", &[("signal", sig.to_string())]);
        }
        let status = v.monitor.stop(sig, timeout)?;
        if was_running {
            self.event(&v.config, "stop", &[]);
        }
        Ok(status)
    }

    /// Sends `signal` to the process of running container `what` (a paused one gets it
    /// as it is thawed).
    pub fn kill(&self, what: &str, signal: i32) -> EngineResult<()> {
        let v = self.running(what, "kill")?;
        v.monitor.kill(signal)?;
        if v.paused {
            self.thaw(&v.config.id)?;
        }
        self.event(&v.config, "kill", &[("signal", signal.to_string())]);
        Ok(())
    }

    /// Freezes every process of running container `what` (docker's `pause`, the cgroup
    /// freezer): they stop being scheduled until [`unpause`](Self::unpause).
    pub fn pause(&self, what: &str) -> EngineResult<()> {
        let v = self.running(what, "pause")?;
        if v.paused {
            return Err(EngineError::WrongState {
                container: v.config.name,
                id: v.config.id,
                state: "paused".into(),
                action: "pause",
            });
        }
        crate::Container::load(&self.state_root, &v.config.id)?.pause()?;
        self.event(&v.config, "pause", &[]);
        Ok(())
    }

    /// Thaws what [`pause`](Self::pause) froze.
    pub fn unpause(&self, what: &str) -> EngineResult<()> {
        let v = self.view(what)?;
        if !v.paused {
            return Err(EngineError::WrongState {
                container: v.config.name,
                id: v.config.id,
                state: v.status.state.to_string(),
                action: "unpause",
            });
        }
        self.thaw(&v.config.id)?;
        self.event(&v.config, "unpause", &[]);
        Ok(())
    }

    fn thaw(&self, id: &str) -> EngineResult<()> {
        crate::Container::load(&self.state_root, id)?.resume()?;
        Ok(())
    }

    /// Changes the resource limits of container `what` (docker's `update`): the ones
    /// `resources` sets, written to its cgroup when it runs and kept for its next start;
    /// the others stay.
    pub fn update(
        &self,
        what: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> EngineResult<()> {
        let v = self.view(what)?;
        // A running container's cgroup now; any container's next start (docker's).
        if v.status.state == MonitorState::Running {
            crate::Container::load(&self.state_root, &v.config.id)?.update(resources)?;
        }
        // Kept, as docker keeps them: inspect shows the new limits and the next start
        // applies them.
        let memory = resources.memory().as_ref().and_then(|m| m.limit());
        let pids = resources.pids().as_ref().map(|p| p.limit());
        let cpus = resources
            .cpu()
            .as_ref()
            .and_then(|c| match (c.quota(), c.period()) {
                (Some(q), Some(p)) if p > 0 => Some((q > 0).then(|| q as f64 / p as f64)),
                _ => None,
            });
        self.update_config(&v.config.id, |cfg| {
            if let Some(m) = memory {
                cfg.run.memory = (m > 0).then_some(m);
            }
            if let Some(p) = pids {
                cfg.run.pids_limit = (p > 0).then_some(p);
            }
            if let Some(c) = cpus {
                cfg.run.cpus = c;
            }
            Ok(())
        })?;
        let mut mc = MonitorConfig::read(&self.dir.join(&v.config.id))?;
        if let Some(linux) = mc.spec.linux_mut() {
            let mut r = linux.resources().clone().unwrap_or_default();
            if resources.memory().is_some() {
                r.set_memory(*resources.memory());
            }
            if resources.pids().is_some() {
                r.set_pids(*resources.pids());
            }
            if resources.cpu().is_some() {
                r.set_cpu(resources.cpu().clone());
            }
            linux.set_resources(Some(r));
        }
        mc.write()?;
        self.event(&v.config, "update", &[]);
        Ok(())
    }

    /// Changes container `what`'s restart policy (docker's `update --restart`), running or
    /// not: a running container's monitor applies it when the container next exits.
    pub fn set_restart(&self, what: &str, policy: RestartPolicy) -> EngineResult<()> {
        let v = self.view(what)?;
        if v.config.rm && policy != RestartPolicy::No {
            return Err(crate::Error::option(
                "restart policy",
                format!("{policy:?}"),
                "a container removed when it exits (--rm) is not restarted",
            )
            .into());
        }
        self.update_config(&v.config.id, |cfg| {
            cfg.restart = policy;
            Ok(())
        })?;
        let dir = self.dir.join(&v.config.id);
        let mut mc = MonitorConfig::read(&dir)?;
        mc.restart = policy;
        mc.write()?;
        self.event(&v.config, "update", &[]);
        Ok(())
    }

    fn running(&self, what: &str, action: &'static str) -> EngineResult<ContainerView> {
        let v = self.view(what)?;
        if v.status.state != MonitorState::Running {
            return Err(EngineError::WrongState {
                container: v.config.name,
                id: v.config.id,
                state: v.status.state.to_string(),
                action,
            });
        }
        Ok(v)
    }

    /// docker's `start`: a running (or restarting) container is left as it is, its monitor
    /// returned to attach to; any other is [`start`](Self::start)ed.
    pub fn start_unless_running(&self, what: &str, attach_first: bool) -> EngineResult<Monitor> {
        match self.view(what)?.status.state {
            MonitorState::Running | MonitorState::Restarting => self.monitor(what),
            _ => self.start(what, attach_first),
        }
    }

    /// The monitor of container `what` to attach to, with its view: refused in docker's
    /// words for a paused container, or one neither running nor waiting for a client.
    pub fn attachable(&self, what: &str) -> EngineResult<(ContainerView, Monitor)> {
        let v = self.view(what)?;
        let waiting = v.status.state == MonitorState::Created && v.status.monitor_alive;
        let running = matches!(
            v.status.state,
            MonitorState::Running | MonitorState::Restarting
        );
        let refuse = |state, hint| EngineError::NotAttachable {
            container: v.config.name.clone(),
            state,
            hint,
        };
        if v.paused {
            return Err(refuse("paused", "unpause it first"));
        }
        if !running && !waiting {
            return Err(refuse("stopped", "start it first"));
        }
        let m = self.monitor(what)?;
        Ok((v, m))
    }

    /// Starts a stopped container again, on the same snapshot, under a new monitor; with
    /// `attach_first`, the process waits for a client to attach.
    pub fn start(&self, what: &str, attach_first: bool) -> EngineResult<Monitor> {
        let v = self.view(what)?;
        match v.status.state {
            MonitorState::Exited => {}
            MonitorState::Created if !v.status.monitor_alive => {}
            s => {
                return Err(EngineError::WrongState {
                    container: v.config.name,
                    id: v.config.id,
                    state: s.to_string(),
                    action: "start",
                })
            }
        }
        // Mounted again when it is not (after a reboot), and so is a shareable /dev/shm.
        self.snapshots()?.open(&v.config.id)?;
        if let crate::NamespaceChoice::Shareable { shm } = &v.config.run.ipc {
            mount_shm(shm, v.config.run.shm_size)?;
        }
        // So is a bind or tmpfs volume.
        if !v.config.volumes.is_empty() {
            let volumes = Volumes::open(&self.data)?;
            for (name, _, _) in &v.config.volumes {
                volumes.mount(name)?;
            }
        }
        let spec = self.saved_spec(&v.config.id)?;
        self.start_monitor(&v.config, spec, attach_first)
    }

    /// The spec as first made, kept in the monitor's config.
    fn saved_spec(&self, id: &str) -> EngineResult<oci_spec::runtime::Spec> {
        Ok(MonitorConfig::read(&self.dir.join(id))?.spec)
    }

    /// Blocks until container `what` has exited for good; its exit code.
    pub fn wait(&self, what: &str) -> EngineResult<i32> {
        let m = self.monitor(what)?;
        let s = m.wait_exited(Duration::from_secs(u64::MAX / 4))?;
        Ok(s.exit_code.unwrap_or(255))
    }

    /// Removes container `what`: its process state, network endpoints, snapshot, record and
    /// name. A running container is refused unless `force`, which kills it first.
    ///
    /// Removers of one container (a program, and the monitor of a container run with `rm`
    /// as it ends) take turns on a lock of its directory; whoever comes second finds it gone
    /// and succeeds.
    pub fn remove(&self, what: &str, force: bool) -> EngineResult<()> {
        self.remove_container(what, force, false).map(|_| ())
    }

    /// [`Containers::remove`], then the container's anonymous volumes that no other
    /// container uses (docker's `rm -v`; a `--rm` container's monitor does this). The
    /// volumes go before the container's record, so whoever sees the container gone (as
    /// [`Containers::wait_removed`]) sees its volumes gone too.
    pub fn remove_with_volumes(&self, what: &str, force: bool) -> EngineResult<()> {
        self.remove_container(what, force, true).map(|_| ())
    }

    /// Removes the anonymous volumes of `cfg` that no container but it uses.
    fn remove_anonymous_volumes(&self, cfg: &ContainerConfig) -> EngineResult<()> {
        let volumes = Volumes::open(&self.data)?;
        for (name, _, _) in &cfg.volumes {
            let anonymous = volumes
                .inspect(name)
                .is_ok_and(|v| v.labels.contains_key(ANONYMOUS_VOLUME_LABEL));
            if !anonymous {
                continue;
            }
            let others = self.volume_users_but(name, Some(&cfg.id));
            if others.is_empty() {
                if let Err(e) = volumes.remove(name, &others) {
                    tracing::warn!(volume = %name, error = %crate::chain(&e), "removing an anonymous volume");
                }
            }
        }
        Ok(())
    }

    /// Removes the container; its record, unless another remover got there first.
    fn remove_container(
        &self,
        what: &str,
        force: bool,
        with_volumes: bool,
    ) -> EngineResult<Option<ContainerConfig>> {
        let id = self.view(what)?.config.id;
        let dir = self.dir.join(&id);
        let lock = match std::fs::File::open(&dir) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(EngineError::io("open", &dir, e)),
        };
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| EngineError::io("lock", &dir, e.into()))?;
        let v = match self.view(&id) {
            Ok(v) => v,
            Err(_) if !dir.exists() => return Ok(None),
            Err(e) => return Err(e),
        };
        if matches!(
            v.status.state,
            MonitorState::Running | MonitorState::Restarting
        ) {
            if !force {
                let state = match v.paused {
                    true => "paused".to_owned(),
                    false => v.status.state.to_string(),
                };
                return Err(EngineError::WrongState {
                    container: v.config.name,
                    id: v.config.id,
                    state,
                    action: "remove",
                });
            }
            // A frozen process dies only once thawed.
            if v.paused {
                self.thaw(&v.config.id)?;
            }
            v.monitor.stop(libc::SIGKILL, Duration::ZERO)?;
            if !self.dir.join(&v.config.id).exists() {
                // Its `rm` monitor removed it meanwhile: gone, once.
                return Ok(None);
            }
        }
        self.release(&v.config.id)?;
        self.remove_files(
            &v.config.id,
            Some(&v.config.name),
            with_volumes.then_some(&v.config),
        )?;
        self.event(&v.config, "destroy", &[]);
        Ok(Some(v.config))
    }

    /// Frees what a container holds outside its files: its runtime state and its network
    /// endpoints (the monitor releases them when the container ends; this covers a monitor
    /// that was killed).
    fn release(&self, id: &str) -> EngineResult<()> {
        if let Ok(c) = crate::Container::load(&self.state_root, id) {
            c.delete(true)?;
        }
        if Networks::host_dir().exists() {
            self.networks().detach(id)?;
        }
        Ok(())
    }

    /// Removes container `id`'s snapshot, name and record; with `volumes`, its anonymous
    /// volumes between the first two and the record.
    fn remove_files(
        &self,
        id: &str,
        name: Option<&str>,
        volumes: Option<&ContainerConfig>,
    ) -> EngineResult<()> {
        let snap = self.snapshots()?;
        let base = self.data.join("snapshots/containers").join(id);
        if snap.info(id).is_ok() || base.exists() {
            if let Err(e) = snap.remove(id) {
                if snap.info(id).is_err() && !base.exists() {
                    // Removed by another remover of the same container (its `rm` monitor).
                    return self.remove_files(id, name, volumes);
                }
                // Rootless: files the container's other users made (nginx's www-data
                // directories, mode 0700) belong to subordinate ids that only a user
                // namespace with the same mappings may remove, as `podman unshare` does.
                if rustix::process::geteuid().is_root() || !remove_in_user_namespace(&base) {
                    return Err(e.into());
                }
            }
        }
        if let Some(n) = name {
            let p = self.dir.join(".names").join(n);
            if std::fs::read_to_string(&p).is_ok_and(|x| x == id) {
                let _ = std::fs::remove_file(p);
            }
        }
        if let Some(cfg) = volumes {
            self.remove_anonymous_volumes(cfg)?;
        }
        let dir = self.dir.join(id);
        self.keep_last_status(id);
        unmount_shm(&dir.join(SHM_DIR));
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::io("remove", &dir, e)),
        }
    }

    /// Keeps the last status of container `id`, which is being removed, for
    /// [`Containers::removed_status`]: a hard link in `containers/.exits`, whose entries
    /// older than ten minutes go as new ones come.
    fn keep_last_status(&self, id: &str) {
        let status = self.dir.join(id).join(crate::monitor::STATUS_FILE);
        // A container that never got a status (its creation failed) leaves nothing.
        if !status.exists() {
            return;
        }
        let exits = self.dir.join(".exits");
        if std::fs::create_dir_all(&exits).is_err() {
            return;
        }
        let _ = std::fs::remove_file(exits.join(id));
        if let Err(e) = std::fs::hard_link(&status, exits.join(id)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::debug!(container = %id, error = %e, "keeping the last status");
            }
        }
        let old = std::time::SystemTime::now() - Duration::from_secs(600);
        for e in std::fs::read_dir(&exits).into_iter().flatten().flatten() {
            if e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < old)
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// The last status of container `id` (a full id), removed in the last ten minutes: how
    /// a waiter that saw it go (docker's `wait --condition removed`, `run --rm`) learns its
    /// exit code.
    pub fn removed_status(&self, id: &str) -> Option<MonitorStatus> {
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let bytes = std::fs::read(self.dir.join(".exits").join(id)).ok()?;
        let mut s: MonitorStatus = serde_json::from_slice(&bytes).ok()?;
        s.state = MonitorState::Exited;
        Some(s)
    }

    /// The running container `what` and the process `req` describes in it: the
    /// container's own process (user, environment, capabilities) with `req`'s command,
    /// environment, directory and user. For a caller that runs it itself (on a terminal:
    /// `req.tty`); [`Containers::exec`] runs one without.
    pub fn exec_process(
        &self,
        what: &str,
        req: &ExecRequest,
    ) -> EngineResult<(crate::Container, oci_spec::runtime::Process)> {
        let v = self.running(what, "exec in")?;
        let c = crate::Container::load(&self.state_root, &v.config.id)?;
        let mut process = self
            .saved_spec(&v.config.id)?
            .process()
            .clone()
            .ok_or_else(|| EngineError::NoMonitor(v.config.id.clone()))?;
        process.set_args(Some(req.args.clone()));
        process.set_terminal(Some(req.tty));
        let mut env = process.env().clone().unwrap_or_default();
        // As docker's daemon: TERM for a terminal, HOME of another user's.
        if req.tty {
            crate::set_env(&mut env, "TERM=xterm");
        }
        if let Some(u) = &req.user {
            let (uid, gid, extra) = crate::resolve_user(c.rootfs(), u)?;
            let mut user = process.user().clone();
            user.set_uid(uid);
            user.set_gid(gid);
            user.set_additional_gids(Some(extra));
            process.set_user(user);
            crate::set_env(
                &mut env,
                &format!("HOME={}", crate::home_dir(c.rootfs(), uid)),
            );
        }
        for e in &req.env {
            crate::set_env(&mut env, e);
        }
        process.set_env(Some(env));
        if let Some(w) = &req.workdir {
            process.set_cwd(PathBuf::from(w));
        }
        if req.privileged {
            let all = crate::image_spec::all_capabilities();
            let root = process.user().uid() == 0;
            let none = std::collections::HashSet::new();
            let caps = oci_spec::runtime::LinuxCapabilitiesBuilder::default()
                .bounding(all.clone())
                .effective(if root { all.clone() } else { none.clone() })
                .permitted(if root { all } else { none.clone() })
                .inheritable(none.clone())
                .ambient(none)
                .build()
                .map_err(|e| crate::Error::option("privileged", "exec", e.to_string()))?;
            process.set_capabilities(Some(caps));
        }
        // docker's exec events carry the command in their action.
        let cmd = req.args.join(" ");
        for action in ["exec_create", "exec_start"] {
            self.event(&v.config, &format!("{action}: {cmd}"), &[]);
        }
        Ok((c, process))
    }

    /// Runs `req.args` in running container `what` without a terminal, with this process's
    /// stdio (stdin only with `req.interactive`; none with `req.detach`); its exit code, or
    /// 0 at once when detached.
    pub fn exec(&self, what: &str, req: &ExecRequest) -> EngineResult<i32> {
        let req = ExecRequest {
            tty: false,
            ..req.clone()
        };
        let (c, process) = self.exec_process(what, &req)?;
        let null = || -> EngineResult<Option<std::os::fd::OwnedFd>> {
            Ok(Some(
                std::fs::File::open("/dev/null")
                    .map_err(|e| EngineError::io("open", "/dev/null", e))?
                    .into(),
            ))
        };
        let stdio = if req.detach {
            [null()?, null()?, null()?]
        } else if req.interactive {
            [None, None, None]
        } else {
            [null()?, None, None]
        };
        let p = c.exec(&process, stdio)?;
        if req.detach {
            // Reaped by whoever inherits it; its output goes nowhere, as docker's exec -d.
            let _ = p.pid();
            return Ok(0);
        }
        let code = p.wait()?;
        if let Ok(cfg) = self.config_of(c.id()) {
            self.event(&cfg, "exec_die", &[("exitCode", code.to_string())]);
        }
        Ok(code)
    }

    /// Starts `req.args` in running container `what` with its stdio on descriptors the
    /// caller relays (the Engine API's exec, an embedder's own): pipes, or with `req.tty` a
    /// terminal whose master comes back. The process is the caller's child.
    pub fn exec_piped(&self, what: &str, req: &ExecRequest) -> EngineResult<ExecSession> {
        let (c, process) = self.exec_process(what, req)?;
        let pipe = || {
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| EngineError::io("pipe", "exec stdio", e.into()))
        };
        if req.tty {
            let dir = tempfile::Builder::new()
                .prefix("oci-exec-")
                .tempdir()
                .map_err(|e| EngineError::io("create", "a console socket directory", e))?;
            let path = dir.path().join("console.sock");
            let listener = std::os::unix::net::UnixListener::bind(&path)
                .map_err(|e| EngineError::io("bind", &path, e))?;
            let process = c.exec_terminal(&process, &path)?;
            let terminal = || -> EngineResult<_> {
                let (sock, _) = listener
                    .accept()
                    .map_err(|e| EngineError::io("accept", &path, e))?;
                let master = crate::receive_terminal(&sock)?;
                let stdin = match req.interactive {
                    true => Some(
                        master
                            .try_clone()
                            .map_err(|e| EngineError::io("dup", "the terminal", e))?,
                    ),
                    false => None,
                };
                Ok((master, stdin))
            };
            let (master, stdin) = match terminal() {
                Ok(t) => t,
                Err(e) => {
                    // Not left running, nor unreaped.
                    let _ = rustix::process::kill_process(
                        rustix::process::Pid::from_raw(process.pid())
                            .ok_or_else(|| EngineError::NoMonitor(what.to_owned()))?,
                        rustix::process::Signal::KILL,
                    );
                    let _ = process.wait();
                    return Err(e);
                }
            };
            return Ok(ExecSession {
                process,
                stdin,
                stdout: master,
                stderr: None,
            });
        }
        let (stdin_r, stdin_w) = match req.interactive {
            true => {
                let (r, w) = pipe()?;
                (r, Some(w))
            }
            false => (
                std::fs::File::open("/dev/null")
                    .map_err(|e| EngineError::io("open", "/dev/null", e))?
                    .into(),
                None,
            ),
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let process = c.exec(&process, [Some(stdin_r), Some(out_w), Some(err_w)])?;
        Ok(ExecSession {
            process,
            stdin: stdin_w,
            stdout: out_r,
            stderr: Some(err_r),
        })
    }

    /// Container `what`'s log as `query` selects it, each chunk to `emit`; with `follow`,
    /// new output too until the container has ended.
    pub fn logs(
        &self,
        what: &str,
        query: &LogQuery,
        follow: bool,
        emit: &mut dyn FnMut(LogStream, &[u8]) -> std::io::Result<()>,
    ) -> EngineResult<()> {
        self.logs_while(what, query, follow, &|| true, emit)
    }

    /// [`Containers::logs`] for a reader that may leave: a follow ends as soon as `present`
    /// says it has gone (a service's client that hung up), not at the container's next
    /// output or its end.
    pub fn logs_while(
        &self,
        what: &str,
        query: &LogQuery,
        follow: bool,
        present: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(LogStream, &[u8]) -> std::io::Result<()>,
    ) -> EngineResult<()> {
        let v = self.view(what)?;
        if v.config.log.disabled {
            return Err(EngineError::LogsDisabled(v.config.name));
        }
        let mut details = None;
        if query.details.is_some() {
            let env = match &v.config.env {
                Some(env) => env.clone(),
                // An older record: the spec's, when it can be read.
                None => self
                    .saved_spec(&v.config.id)
                    .ok()
                    .and_then(|s| s.process().as_ref().and_then(|p| p.env().clone()))
                    .unwrap_or_default(),
            };
            details = Some(LogQuery {
                details: Some(v.config.log.attributes.render(&v.config.labels, &env)?),
                ..query.clone()
            });
        }
        let query = details.as_ref().unwrap_or(query);
        let m = v.monitor;
        let pos = crate::read_logs(&m.log_path(), query, &mut *emit)?;
        if follow {
            let mut done = || {
                !present()
                    || m.status()
                        .map(|s| s.state == MonitorState::Exited && !s.monitor_alive)
                        .unwrap_or(true)
            };
            crate::follow_logs(&m.log_path(), pos, query, &mut done, emit)?;
        }
        Ok(())
    }

    /// Where `path` of container `what` lies, as `docker cp` reads and writes it: under the
    /// deepest directory bind or named volume mounted over it (a host directory, the same
    /// whether the container runs or not), else in the container's own filesystem (its
    /// snapshot, mounted when it is not).
    fn locate(&self, what: &str, path: &str) -> EngineResult<Located> {
        let v = self.view(what)?;
        let rel = oci_rs_layer::clean_path(path)?;
        let mut over: Option<(&Path, PathBuf, bool)> = None;
        for m in &v.config.run.mounts {
            let crate::ExtraMount::Bind {
                source,
                target,
                readonly,
            } = m
            else {
                continue;
            };
            let t = oci_rs_layer::clean_path(target)?;
            let deeper = over
                .as_ref()
                .is_none_or(|o| t.components().count() > o.1.components().count());
            if !t.as_os_str().is_empty() && rel.starts_with(&t) && deeper && source.is_dir() {
                over = Some((source, t, *readonly));
            }
        }
        let (root, inner, mounted_at, readonly) = match over {
            Some((source, t, ro)) => (
                oci_rs_layer::Root::open(source)?,
                rel.strip_prefix(&t).unwrap_or(Path::new("")).to_owned(),
                Path::new("/").join(t),
                ro,
            ),
            None => {
                let m = self.snapshots()?.open(&v.config.id)?;
                (
                    oci_rs_layer::Root::open(&m.rootfs)?,
                    rel,
                    PathBuf::from("/"),
                    // `--read-only`: docker refuses a copy into the root too.
                    v.config.run.read_only,
                )
            }
        };
        Ok(Located {
            container: v.config.name,
            root,
            rel: inner,
            mounted_at,
            readonly,
        })
    }

    /// `path` in container `what` (resolved inside its root, the last component not
    /// followed) as docker's clients see it before a copy.
    pub fn stat_path(&self, what: &str, path: &str) -> EngineResult<PathStat> {
        let path = &rooted(path);
        let at = self.locate(what, path)?;
        Ok(at.stat(path)?.0)
    }

    /// `docker cp CONTAINER:PATH -`: `path` in container `what` as a tar into `sink` (its
    /// last component and, for a directory, everything under it, named from that
    /// component; for `DIR/.`, the directory's contents, named from `.`), resolved inside the
    /// container's root so that no link leads out. Records docker's `archive-path` event.
    pub async fn copy_from<W>(&self, what: &str, path: &str, sink: W) -> EngineResult<(PathStat, W)>
    where
        W: tokio::io::AsyncWrite + Unpin,
    {
        self.copy_from_as(what, path, None, sink).await
    }

    /// [`copy_from`](Self::copy_from) as docker's `cp -L`: when `path` is a symbolic link,
    /// what it leads to (followed inside the container's root, at most 40 links deep),
    /// named as the link.
    pub async fn copy_from_following<W>(
        &self,
        what: &str,
        path: &str,
        sink: W,
    ) -> EngineResult<(PathStat, W)>
    where
        W: tokio::io::AsyncWrite + Unpin,
    {
        let asked = rooted(path).into_owned();
        let mut at = asked.clone();
        for _ in 0..40 {
            let place = self.locate(what, &at)?;
            let (stat, _) = place.stat(&at)?;
            if stat.link_target.is_empty() {
                if at == asked {
                    return self.copy_from(what, path, sink).await;
                }
                let name = asked.rsplit('/').find(|n| !n.is_empty()).unwrap_or(".");
                return self.copy_from_as(what, &at, Some(name), sink).await;
            }
            // Relative to the link's directory; an absolute one to the container's root
            // (`rooted` keeps every `..` under it).
            let dir = at.rsplit_once('/').map_or("", |d| d.0);
            at = match stat.link_target.starts_with('/') {
                true => rooted(&stat.link_target).into_owned(),
                false => rooted(&format!("{dir}/{}", stat.link_target)).into_owned(),
            };
        }
        Err(EngineError::io(
            "follow",
            asked.as_str(),
            std::io::Error::from_raw_os_error(libc::ELOOP),
        ))
    }

    /// [`copy_from`](Self::copy_from), the entry named `name_as` when given.
    async fn copy_from_as<W>(
        &self,
        what: &str,
        path: &str,
        name_as: Option<&str>,
        sink: W,
    ) -> EngineResult<(PathStat, W)>
    where
        W: tokio::io::AsyncWrite + Unpin,
    {
        let path = &rooted(path);
        let at = self.locate(what, path)?;
        let (mut stat, parent) = at.stat(path)?;
        let opts = oci_rs_layer::DiffOptions {
            strip_setid: true,
            ..oci_rs_layer::DiffOptions::default()
        };
        let proc_fd = |fd: &std::os::fd::OwnedFd| {
            PathBuf::from(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(fd)
            ))
        };
        let contents = path == "." || path.ends_with("/.");
        let sink = match parent {
            _ if contents => {
                let dir = at.root.open_dir(&at.rel).map_err(|_| at.missing(path))?;
                stat.name = ".".into();
                oci_rs_layer::export_entry(&proc_fd(&dir), ".".as_ref(), sink, &opts)
                    .await?
                    .1
            }
            Some((dir, entry)) => {
                let opts = match name_as {
                    Some(n) => {
                        stat.name = n.to_owned();
                        oci_rs_layer::DiffOptions {
                            rebase: Some((entry.clone().into(), n.into())),
                            ..opts
                        }
                    }
                    None => opts,
                };
                oci_rs_layer::export_entry(&proc_fd(&dir), &entry, sink, &opts)
                    .await?
                    .1
            }
            // A mount's root, named by its mount point.
            None if at.mounted_at != Path::new("/") => {
                let opts = oci_rs_layer::DiffOptions {
                    rebase: Some((".".into(), stat.name.clone().into())),
                    ..opts
                };
                oci_rs_layer::export_entry(at.root.path(), ".".as_ref(), sink, &opts)
                    .await?
                    .1
            }
            None => oci_rs_layer::export(at.root.path(), sink, &opts).await?.1,
        };
        self.event_of(what, "archive-path");
        Ok((stat, sink))
    }

    /// `docker cp - CONTAINER:DIR`: the tar `archive` unpacked into the directory `dir` of
    /// container `what`, resolved inside the container's root; the archive's entries are
    /// confined to that directory as a layer's are to its root (oci-rs-layer's
    /// [`apply_tar`](oci_rs_layer::apply_tar)).
    ///
    /// Owners as [`CopyIn::copy_uid_gid`] says. Records docker's `extract-to-dir` event.
    pub async fn copy_into<R>(
        &self,
        what: &str,
        dir: &str,
        archive: R,
        how: CopyIn,
    ) -> EngineResult<()>
    where
        R: tokio::io::AsyncRead + Send + Unpin,
    {
        let dir = &rooted(dir);
        let owner = match how.copy_uid_gid {
            true => Some(self.container_user(what)?).filter(|ids| *ids != (0, 0)),
            false => None,
        };
        let at = self.locate(what, dir)?;
        if at.readonly {
            return Err(EngineError::WrongState {
                container: at.container,
                id: self.resolve(what)?,
                state: format!("mounted read-only at {}", at.mounted_at.display()),
                action: "copy into",
            });
        }
        let fd = at.root.open_dir(&at.rel).map_err(|_| at.missing(dir))?;
        let at = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ));
        let opts = oci_rs_layer::ApplyOptions {
            plain_names: true,
            owner,
            ..oci_rs_layer::ApplyOptions::default()
        };
        oci_rs_layer::apply_tar(&at, archive, &opts).await?;
        self.event_of(what, "extract-to-dir");
        Ok(())
    }

    /// The uid and gid container `what`'s process runs as (its saved spec's), root's when
    /// it has none yet.
    fn container_user(&self, what: &str) -> EngineResult<(u32, u32)> {
        let id = self.resolve(what)?;
        Ok(self
            .saved_spec(&id)
            .ok()
            .and_then(|s| s.process().clone())
            .map_or((0, 0), |p| (p.user().uid(), p.user().gid())))
    }

    /// `docker cp CONTAINER:PATH HOST`: `path` of container `what` onto the host. Into
    /// `host` when it is a directory; else as the new name `host` (its parent must exist).
    /// Returns what was copied.
    pub async fn copy_to_host(
        &self,
        what: &str,
        path: &str,
        host: &Path,
    ) -> EngineResult<PathStat> {
        self.copy_to_host_following(what, path, host, false).await
    }

    /// [`copy_to_host`](Self::copy_to_host); with `follow` (docker's `cp -L`), a link at
    /// `path` is followed as [`copy_from_following`](Self::copy_from_following) does.
    pub async fn copy_to_host_following(
        &self,
        what: &str,
        path: &str,
        host: &Path,
        follow: bool,
    ) -> EngineResult<PathStat> {
        let (w, r) = tokio::io::duplex(1 << 20);
        let (into, rename) = if host.is_dir() {
            (host.to_path_buf(), None)
        } else {
            let parent = match host.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let tmp = tempfile::Builder::new()
                .prefix(".oci-cp-")
                .tempdir_in(&parent)
                .map_err(|e| EngineError::io("create", &parent, e))?;
            (tmp.path().to_path_buf(), Some(tmp))
        };
        let produce = async {
            let (stat, mut w) = match follow {
                true => self.copy_from_following(what, path, w).await?,
                false => self.copy_from(what, path, w).await?,
            };
            tokio::io::AsyncWriteExt::shutdown(&mut w)
                .await
                .map_err(|e| EngineError::io("write", "the copy", e))?;
            Ok::<_, EngineError>(stat)
        };
        // The container's files on the host: belonging to the caller (no chown, and no
        // ownership forged through the rootless xattr), no device nodes, no set-id bits,
        // names taken literally.
        let apply = oci_rs_layer::ApplyOptions {
            ownership: oci_rs_layer::Ownership::Rootless,
            devices: oci_rs_layer::Devices::Skip,
            allowed_xattrs: Vec::new(),
            plain_names: true,
            strip_setid: true,
            ..oci_rs_layer::ApplyOptions::default()
        };
        let consume = oci_rs_layer::apply_tar(&into, r, &apply);
        let (stat, applied) = tokio::join!(produce, consume);
        let stat = stat?;
        applied?;
        if let Some(tmp) = rename {
            match stat.name.as_str() {
                // The whole root, or a directory's contents: the directory it was
                // unpacked into is the copy.
                "/" | "." => {
                    let dir = tmp.keep();
                    std::fs::rename(&dir, host).map_err(|e| EngineError::io("rename", host, e))?;
                }
                name => {
                    std::fs::rename(tmp.path().join(name), host)
                        .map_err(|e| EngineError::io("rename", host, e))?;
                }
            }
        }
        Ok(stat)
    }

    /// `docker cp HOST CONTAINER:DEST`: the host's file or directory `host` (a link copied
    /// as the link) into container `what`, by docker's rules: into `dest` when it is a
    /// directory; else as the new name `dest` (its parent must exist), a file replacing a
    /// file there, never a directory replacing a file. `HOST/.` copies a directory's
    /// contents. See [`copy_from_host_with`](Self::copy_from_host_with) for `-L`.
    pub async fn copy_from_host(&self, host: &Path, what: &str, dest: &str) -> EngineResult<()> {
        self.copy_from_host_with(host, what, dest, CopyIn::default())
            .await
    }

    /// [`copy_from_host`](Self::copy_from_host) as `how` says ([`CopyIn`]: `-L`, `-a`).
    pub async fn copy_from_host_with(
        &self,
        host: &Path,
        what: &str,
        dest: &str,
        how: CopyIn,
    ) -> EngineResult<()> {
        let bad = |kind: std::io::ErrorKind| EngineError::io("copy", host, kind.into());
        // `SRC/.`: the directory's contents (the entry `.`), as docker's.
        let raw = host.as_os_str().as_encoded_bytes();
        let contents = raw.ends_with(b"/.") || raw == b".";
        let (parent, name) = if contents {
            (host.to_path_buf(), std::ffi::OsString::from("."))
        } else {
            let name = host
                .file_name()
                .ok_or_else(|| bad(std::io::ErrorKind::InvalidInput))?
                .to_owned();
            let parent = match host.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            (parent, name)
        };
        // -L: what the link points at, named as the link.
        let (parent, entry) = match how.follow_link && !contents {
            true => {
                let target =
                    std::fs::canonicalize(host).map_err(|e| EngineError::io("resolve", host, e))?;
                let entry = target
                    .file_name()
                    .map(|n| n.to_owned())
                    .unwrap_or_else(|| name.clone());
                let dir = target
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("/"));
                (dir, entry)
            }
            false => (parent, name.clone()),
        };
        let source_is_dir = std::fs::symlink_metadata(parent.join(&entry))
            .map_err(|e| EngineError::io("stat", host, e))?
            .is_dir();
        // Where it lands: into DEST (a directory), or as DEST's last component in its
        // parent.
        const GO_DIR: u32 = 1 << 31;
        const GO_SYMLINK: u32 = 1 << 27;
        // A link as DEST is followed one level, as docker's client follows it (its target
        // is then resolved inside the root like any path).
        let linked;
        let dest = match self.stat_path(what, dest) {
            Ok(st) if st.mode & GO_SYMLINK != 0 && !st.link_target.is_empty() => {
                linked = if st.link_target.starts_with('/') {
                    st.link_target
                } else {
                    let (parent, _) = split_dest(dest);
                    format!("{}/{}", parent.trim_end_matches('/'), st.link_target)
                };
                linked.as_str()
            }
            _ => dest,
        };
        let (into, as_name) = match self.stat_path(what, dest) {
            Ok(st) if st.mode & GO_DIR != 0 => (dest.to_owned(), None),
            Ok(_) if source_is_dir => {
                return Err(EngineError::MountSpec {
                    flag: "cp",
                    spec: dest.to_owned(),
                    problem: "cannot copy a directory to a file".into(),
                })
            }
            Ok(_) if dest.ends_with('/') => {
                return Err(EngineError::MountSpec {
                    flag: "cp",
                    spec: dest.to_owned(),
                    problem: "not a directory".into(),
                })
            }
            Ok(_) => split_dest(dest),
            Err(EngineError::NoSuchPath { .. }) if !dest.ends_with('/') => split_dest(dest),
            Err(e) => return Err(e),
        };
        let rebase = match (&as_name, contents) {
            (Some(n), _) => Some((PathBuf::from(&entry), PathBuf::from(n))),
            (None, _) if entry != name => Some((PathBuf::from(&entry), PathBuf::from(&name))),
            _ => None,
        };
        let (w, r) = tokio::io::duplex(1 << 20);
        let produce = async {
            let opts = oci_rs_layer::DiffOptions {
                rebase,
                ..oci_rs_layer::DiffOptions::default()
            };
            let (_, mut w) = oci_rs_layer::export_entry(&parent, &entry, w, &opts).await?;
            tokio::io::AsyncWriteExt::shutdown(&mut w)
                .await
                .map_err(|e| EngineError::io("write", "the copy", e))?;
            Ok::<_, EngineError>(())
        };
        let (a, b) = tokio::join!(produce, self.copy_into(what, &into, r, how));
        // The host side's own failure (an unreadable file) first; but a pipe the unpacking
        // side closed says only that it failed, and its error is the one to give (a missing
        // destination made `cp` succeed quietly when the pipe's error was taken).
        match (a, b) {
            (Err(e), _) if !broken_pipe(&e) => Err(e),
            (_, Err(e)) => Err(e),
            (a, Ok(())) => a,
        }
    }

    /// One reading of running container `what`'s use (`docker stats`): its cgroup's
    /// counters, its network interfaces' (read in its network namespace through its init's
    /// `/proc/PID/net/dev`), and the host's CPU time and CPUs to set them against.
    pub fn stats(&self, what: &str) -> EngineResult<ContainerStats> {
        let v = self.running(what, "read the statistics of")?;
        let c = crate::Container::load(&self.state_root, &v.config.id)?;
        let cgroup = c.cgroup().map(|g| g.stats()).unwrap_or_default();
        let mut networks = BTreeMap::new();
        let dev = std::fs::read_to_string(format!("/proc/{}/net/dev", c.pid())).unwrap_or_default();
        for l in dev.lines().skip(2) {
            let Some((name, rest)) = l.split_once(':') else {
                continue;
            };
            let name = name.trim();
            if name == "lo" {
                continue;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if f.len() >= 16 {
                networks.insert(
                    name.to_owned(),
                    InterfaceStats {
                        rx_bytes: f[0],
                        rx_packets: f[1],
                        rx_errors: f[2],
                        rx_dropped: f[3],
                        tx_bytes: f[8],
                        tx_packets: f[9],
                        tx_errors: f[10],
                        tx_dropped: f[11],
                    },
                );
            }
        }
        // The host's CPU time: /proc/stat's first line, in clock ticks (USER_HZ, 100).
        let system_cpu_ns = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            let line = s.lines().next()?.strip_prefix("cpu ")?.to_owned();
            let ticks: u64 = line
                .split_whitespace()
                .take(8)
                .filter_map(|x| x.parse::<u64>().ok())
                .sum();
            Some(ticks.saturating_mul(10_000_000))
        });
        Ok(ContainerStats {
            started_at: v.status.started_at,
            id: v.config.id,
            name: v.config.name,
            read_at: crate::now_ns(),
            cgroup,
            networks,
            system_cpu_ns,
            online_cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        })
    }

    /// The pids of running container `what`'s processes (its cgroup's, else its init), in
    /// order; `action` names what was asked of it in the error when it does not run.
    fn pids_of(&self, what: &str, action: &'static str) -> EngineResult<Vec<i32>> {
        let v = self.running(what, action)?;
        let c = crate::Container::load(&self.state_root, &v.config.id)?;
        let mut pids: Vec<i32> = c.cgroup().map(|g| g.pids()).unwrap_or_default();
        if pids.is_empty() {
            pids.push(c.pid());
        }
        pids.sort_unstable();
        Ok(pids)
    }

    /// docker's `top CONTAINER [ps OPTIONS]`: without `ps_args`, the `ps -ef` table of
    /// [`top`](Self::top); with them, the host's `ps` run with those arguments (as dockerd
    /// runs it), its rows kept for the container's processes by the `PID` column, the last
    /// column taking the rest of each line. Arguments that would title another column `PID`
    /// (`-o user=PID`) are refused: the rows are chosen by that column.
    pub fn top_ps(&self, what: &str, ps_args: &[String]) -> EngineResult<ProcessTable> {
        if ps_args.is_empty() {
            let rows = self.top(what)?;
            return Ok(ProcessTable {
                titles: PS_EF_TITLES.iter().map(|t| (*t).to_owned()).collect(),
                processes: rows.iter().map(ProcessRow::ps_ef).collect(),
            });
        }
        let refused = |problem: String| EngineError::Ps {
            container: what.to_owned(),
            args: ps_args.join(" "),
            problem,
        };
        for spec in ps_args.iter().flat_map(|a| a.split(',')) {
            if let Some((key, title)) = spec.split_once('=') {
                let key = key.rsplit(char::is_whitespace).next().unwrap_or(key);
                if title.trim_start().starts_with("PID") && key.trim_start_matches('-') != "pid" {
                    return Err(refused(format!("specifying {spec:?} is not allowed")));
                }
            }
        }
        let pids = self.pids_of(what, "list the processes of")?;
        let listed: Vec<String> = pids.iter().map(i32::to_string).collect();
        let run = |extra: &[String]| {
            std::process::Command::new("ps")
                .args(ps_args)
                .args(extra)
                .stdin(std::process::Stdio::null())
                .output()
        };
        // `-q PIDS` lists only these; some options (BSD `f`) refuse it: then every process.
        let out = match run(&["-q".to_owned(), listed.join(",")]) {
            Ok(o) if o.status.success() => o,
            _ => run(&[]).map_err(|e| refused(format!("running ps: {e}")))?,
        };
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(refused(err.trim().to_owned()));
        }
        let table = parse_ps(&String::from_utf8_lossy(&out.stdout), &pids).map_err(refused)?;
        self.event_of(what, "top");
        Ok(table)
    }

    /// The processes of running container `what` (its cgroup's, else its init), read from
    /// /proc, by pid. Records docker's `top` event, as [`top_ps`](Self::top_ps) does.
    pub fn top(&self, what: &str) -> EngineResult<Vec<ProcessRow>> {
        let pids = self.pids_of(what, "list the processes of")?;
        let tick = 100u64;
        let boot_secs: u64 = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0);
        let mut out = Vec::new();
        for pid in pids {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let rest = stat.rsplit_once(')').map_or("", |r| r.1);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let cpu: u64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0)
                + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
            let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|u| u.split_whitespace().next().map(str::to_owned))
                })
                .unwrap_or_default();
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .split('\0')
                        .filter(|a| !a.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
            let started_ticks = field(19);
            out.push(ProcessRow {
                pid,
                ppid: field(1) as i32,
                uid,
                cpu: Duration::from_secs(cpu / tick),
                started: (boot_secs * tick + started_ticks) * (1_000_000_000 / tick),
                tty: tty_name(field(4)),
                command: cmd,
            });
        }
        self.event_of(what, "top");
        Ok(out)
    }

    /// Sets `req`'s network from docker's `--network` value: `none`, `host`, `slirp4netns`,
    /// `container:NAME` (that running container's namespace), or the name of a bridge
    /// network. `None` is docker's default: the `bridge` network for root, `slirp4netns`
    /// for a rootless caller, who cannot make bridges.
    pub fn set_network(&self, req: &mut RunRequest, arg: Option<&str>) -> EngineResult<()> {
        let rootless = !rustix::process::geteuid().is_root();
        let arg = arg.unwrap_or(if rootless { "slirp4netns" } else { "bridge" });
        req.opts.join_network = None;
        req.network_mode = None;
        req.networks = Vec::new();
        req.opts.network = match arg {
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            "slirp4netns" => NetworkMode::Slirp,
            other => match other.strip_prefix("container:") {
                Some(name) => {
                    req.opts.join_network = Some(self.network_namespace(name)?);
                    req.network_mode = Some(other.to_owned());
                    NetworkMode::None
                }
                None if rootless => {
                    return Err(crate::Error::option(
                        "network",
                        other,
                        "needs root: a rootless container uses slirp4netns, none or host",
                    )
                    .into())
                }
                None => {
                    req.networks = vec![self.networks().get(other)?.name];
                    NetworkMode::Bridge
                }
            },
        };
        Ok(())
    }

    /// docker's `--pid` or `--ipc` value (`kind` names which in errors): `""`, `private`
    /// (and `shareable` for ipc), `host`, `none` (ipc only), or `container:NAME`, a running
    /// container of this store whose namespace the new one joins.
    pub fn namespace_choice(
        &self,
        kind: &'static str,
        arg: &str,
    ) -> EngineResult<crate::NamespaceChoice> {
        use crate::NamespaceChoice;
        Ok(match (kind, arg) {
            (_, "" | "private") => NamespaceChoice::Private,
            // Its /dev/shm directory is the container's, known once it is made (see `make`).
            ("ipc", "shareable") => NamespaceChoice::Shareable {
                shm: PathBuf::new(),
            },
            (_, "host") => NamespaceChoice::Host,
            ("ipc", "none") => NamespaceChoice::None,
            (_, other) => match other.strip_prefix("container:") {
                Some(name) => {
                    let v = self.running(name, "join the namespaces of")?;
                    let c = crate::Container::load(&self.state_root, &v.config.id)?;
                    // docker's rule: an IPC namespace is joined only where the donor made its
                    // /dev/shm to be shared.
                    let shm = match (kind, &v.config.run.ipc) {
                        ("ipc", NamespaceChoice::Shareable { shm }) => Some(shm.clone()),
                        ("ipc", _) => {
                            return Err(crate::Error::option(
                                "ipc",
                                other,
                                "non-shareable IPC (hint: use --ipc shareable for the donor \
                                 container)",
                            )
                            .into())
                        }
                        _ => None,
                    };
                    NamespaceChoice::Container {
                        name: name.to_owned(),
                        pid: c.pid(),
                        shm,
                    }
                }
                None => {
                    return Err(crate::Error::option(
                        kind,
                        other,
                        "expected host, container:NAME, private (ipc: shareable, none)",
                    )
                    .into())
                }
            },
        })
    }

    /// The network namespace of running container `what`, for another container to join.
    pub fn network_namespace(&self, what: &str) -> EngineResult<PathBuf> {
        let v = self.running(what, "join the network of")?;
        let c = crate::Container::load(&self.state_root, &v.config.id)?;
        Ok(PathBuf::from(format!("/proc/{}/ns/net", c.pid())))
    }

    /// Readings of containers `names` (`stats`): each must run. With no names, every
    /// running container's; one that ends meanwhile is left out.
    pub fn stats_of(&self, names: &[String]) -> EngineResult<Vec<ContainerStats>> {
        if !names.is_empty() {
            return names.iter().map(|n| self.stats(n)).collect();
        }
        Ok(self
            .list()?
            .into_iter()
            .filter(|v| v.status.state == MonitorState::Running)
            .filter_map(|v| self.stats(&v.config.id).ok())
            .collect())
    }

    /// docker's `stats` table, once: a row for each of `names` (those not running with
    /// zeros; every running container when empty; with `all`, every container), CPU use
    /// counted since `before` (what this returned the last time; empty the first time: the
    /// average since each started), and the readings to give as `before` next time.
    pub fn stats_rows(
        &self,
        names: &[String],
        all: bool,
        before: &[ContainerStats],
    ) -> EngineResult<(Vec<StatsRow>, Vec<ContainerStats>)> {
        let row = |s: &ContainerStats| s.row_since(before.iter().find(|b| b.id == s.id));
        if !all && names.is_empty() {
            let now = self.stats_of(names)?;
            return Ok((now.iter().map(row).collect(), now));
        }
        // Named ones as docker shows them: one that is not running (or stopped since the
        // last reading) is a row of zeros, one that is gone an error.
        let views = match names.is_empty() {
            true => self.list()?,
            false => names
                .iter()
                .map(|n| self.view(n))
                .collect::<EngineResult<Vec<_>>>()?,
        };
        let (mut rows, mut now) = (Vec::new(), Vec::new());
        for v in views {
            let reading = (v.status.state == MonitorState::Running)
                .then(|| self.stats(&v.config.id).ok())
                .flatten();
            match reading {
                Some(s) => {
                    rows.push(row(&s));
                    now.push(s);
                }
                None => rows.push(StatsRow::not_running(&v.config.id, &v.config.name)),
            }
        }
        Ok((rows, now))
    }

    /// docker's `--volumes-from NAME[:ro|:rw]`: container `spec`'s named volumes and binds
    /// (not the engine's own `/etc` files), added to `req` where `req` mounts nothing at the
    /// same path; `ro` or `rw` overrides each one's mode, else it keeps its own.
    pub fn add_volumes_from(&self, req: &mut RunRequest, spec: &str) -> EngineResult<()> {
        let (name, mode) = match spec.rsplit_once(':') {
            Some((n, m @ ("ro" | "rw"))) => (n, Some(m == "ro")),
            _ => (spec, None),
        };
        let v = self.view(name)?;
        let taken = |req: &RunRequest, target: &str| {
            req.volumes.iter().any(|x| x.1 == target)
                || req.opts.mounts.iter().any(|m| m.target() == target)
        };
        let own = self.dir.join(&v.config.id);
        for (vol, target, ro) in &v.config.volumes {
            if !taken(req, target) {
                req.volumes
                    .push((vol.clone(), target.clone(), mode.unwrap_or(*ro)));
            }
        }
        for m in &v.config.run.mounts {
            let crate::ExtraMount::Bind {
                source,
                target,
                readonly,
            } = m
            else {
                continue;
            };
            let is_volume = v.config.volumes.iter().any(|x| &x.1 == target);
            if source.starts_with(&own) || is_volume || taken(req, target) {
                continue;
            }
            req.opts.mounts.push(crate::ExtraMount::Bind {
                source: source.clone(),
                target: target.clone(),
                readonly: mode.unwrap_or(*readonly),
            });
        }
        Ok(())
    }

    /// The names of the containers that mount volume `name`.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        self.volume_users_but(name, None)
    }

    /// [`Containers::volume_users`] other than container `except` (an id).
    fn volume_users_but(&self, name: &str, except: Option<&str>) -> Vec<String> {
        self.ids()
            .iter()
            .filter(|id| Some(id.as_str()) != except)
            .filter_map(|id| self.config_of(id).ok())
            .filter(|c| c.volumes.iter().any(|v| v.0 == name))
            .map(|c| c.name)
            .collect()
    }

    /// Removes volume `name` unless a container mounts it.
    pub fn remove_volume(&self, name: &str) -> EngineResult<()> {
        Volumes::open(&self.data)?.remove(name, &self.volume_users(name))
    }

    /// The volumes that pass `filter`, by name.
    pub fn list_volumes(&self, filter: &VolumeFilter) -> EngineResult<Vec<super::VolumeInfo>> {
        let vols = Volumes::open(&self.data)?.list()?;
        let used = self.used_volumes();
        Ok(vols
            .into_iter()
            .filter(|v| filter.matches(v, used.contains(&v.name)))
            .collect())
    }

    /// Removes the volumes no container uses that pass `filter`: anonymous ones only, as
    /// docker 23's prune, unless the filter has `all=true`. Their names.
    pub fn prune_volumes(&self, filter: &VolumeFilter) -> EngineResult<super::PruneReport> {
        let vols = Volumes::open(&self.data)?;
        let used = self.used_volumes();
        let mut gone = super::PruneReport::default();
        for v in vols.list()? {
            let anonymous = v.labels.contains_key(ANONYMOUS_VOLUME_LABEL);
            if used.contains(&v.name) || !(filter.all() || anonymous) || !filter.matches(&v, false)
            {
                continue;
            }
            // A container made since the list: kept, as a volume in use.
            let size = vols.reclaimable(&v.name);
            match vols.remove(&v.name, &self.volume_users(&v.name)) {
                Ok(()) => {
                    gone.deleted.push(v.name);
                    gone.space_reclaimed += size;
                }
                Err(EngineError::VolumeInUse { .. } | EngineError::NoSuchVolume(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(gone)
    }

    /// The names of the volumes some container mounts.
    fn used_volumes(&self) -> std::collections::BTreeSet<String> {
        self.ids()
            .iter()
            .filter_map(|id| self.config_of(id).ok())
            .flat_map(|c| c.volumes.into_iter().map(|v| v.0))
            .collect()
    }

    /// Removes every exited container: their ids and the bytes they wrote.
    pub fn prune(&self) -> EngineResult<super::PruneReport> {
        self.prune_filtered(&PruneFilter::default())
    }

    /// Removes every exited container that passes `filter` (docker's `container prune
    /// --filter until=|label=|label!=`): their ids and the bytes they wrote.
    pub fn prune_filtered(&self, filter: &PruneFilter) -> EngineResult<super::PruneReport> {
        let mut gone = super::PruneReport::default();
        for v in self.list()? {
            if v.status.state == MonitorState::Exited
                && filter.matches(&v.config.labels, v.config.created)
            {
                let size = self.written_size(&v.config.id);
                self.remove(&v.config.id, false)?;
                gone.deleted.push(v.config.id);
                gone.space_reclaimed += size;
            }
        }
        Ok(gone)
    }

    /// Waits until container `id` has been removed (by its `rm` monitor), at most `timeout`.
    pub fn wait_removed(&self, id: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.dir.join(id).exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Commits container `what`'s changes as a new layer on its image, named `reference` in
    /// `images` (untagged without one: `docker commit`). A running container is frozen (its cgroup's freezer) while
    /// its writable layer is read, so the image is one moment of it, and thawed however the
    /// read ends; `pause: false` skips that, as docker's `--pause=false`.
    pub async fn commit(
        &self,
        images: &oci_rs_layer::ImageStore,
        what: &str,
        reference: Option<&str>,
        how: &oci_rs_layer::CommitOptions,
        pause: bool,
    ) -> EngineResult<oci_rs_image::oci_spec::image::Descriptor> {
        let id = self.resolve(what)?;
        let frozen = match crate::Container::load(&self.state_root, &id) {
            Ok(c) if pause && c.status() == crate::Status::Running => {
                c.pause()?;
                Some(c)
            }
            _ => None,
        };
        let mut how = how.clone();
        how.created_by
            .get_or_insert_with(|| format!("oci commit {what}"));
        // docker commits the container's Config: its environment and the run's command,
        // entrypoint, working directory and user (unless the caller says otherwise).
        if let Ok(cfg) = self.config_of(&id) {
            if how.env.is_empty() {
                how.env = cfg.env.clone().unwrap_or_default();
            }
            let run = &cfg.run;
            if how.entrypoint.is_none() && how.cmd.is_none() {
                how.entrypoint = run.entrypoint.clone();
                how.cmd =
                    (!run.args.is_empty() || run.entrypoint.is_some()).then(|| run.args.clone());
            }
            how.working_dir = how.working_dir.take().or_else(|| run.workdir.clone());
            how.user = how.user.take().or_else(|| run.user.clone());
        }
        let made = images.commit(&id, reference, &how).await;
        if let Some(c) = frozen {
            c.resume()?;
        }
        let made = made?;
        if let Ok(cfg) = self.config_of(&id) {
            let image = images.image_id(&made).await?;
            self.event(&cfg, "commit", &[("imageID", image)]);
        }
        Ok(made)
    }

    /// Removes images `names` from `images` ([`ImageStore::remove`](oci_rs_layer::ImageStore::remove),
    /// `docker rmi`), naming the container that uses one when it is refused. Returns the
    /// names untagged, the images removed and the bytes freed.
    pub async fn remove_images(
        &self,
        images: &oci_rs_layer::ImageStore,
        names: &[String],
        force: bool,
    ) -> EngineResult<oci_rs_layer::Removed> {
        match images.remove(names, force).await {
            Err(oci_rs_layer::Error::ImageInUse { image, container }) => {
                let name = self
                    .view(&container)
                    .map(|v| v.config.name)
                    .unwrap_or_else(|_| container.clone());
                Err(EngineError::ImageInUse {
                    image,
                    name,
                    id: container,
                })
            }
            r => Ok(r?),
        }
    }

    /// Container `what`'s whole filesystem as one tar into `sink` (`docker export`); the
    /// sink, flushed. Records docker's `export` event.
    pub async fn export<W>(
        &self,
        images: &oci_rs_layer::ImageStore,
        what: &str,
        sink: W,
    ) -> EngineResult<W>
    where
        W: tokio::io::AsyncWrite + Send + Unpin,
    {
        let id = self.resolve(what)?;
        let sink = images.export(&id, sink).await?;
        self.event_of(&id, "export");
        Ok(sink)
    }

    /// docker's `inspect` document of container `what`.
    pub fn inspect(&self, what: &str) -> EngineResult<super::ContainerInspect> {
        let v = self.view(what)?;
        let spec = self.saved_spec(&v.config.id).ok();
        Ok(super::inspect::inspect(
            &v,
            spec.as_ref(),
            &self.data.join("volumes"),
            self.dir.join(&v.config.id).join(crate::LOG_FILE),
            &self.network_facts(),
        ))
    }

    /// Each network's id by its name and the live endpoints (none of either when the store
    /// cannot be read).
    pub(crate) fn network_facts(&self) -> super::inspect::NetworkFacts {
        let nets = self.networks();
        super::inspect::NetworkFacts {
            ids: nets
                .list()
                .map(|l| l.into_iter().map(|n| (n.name, n.id)).collect())
                .unwrap_or_default(),
            endpoints: nets.endpoints().unwrap_or_default(),
        }
    }
}

/// docker's prune filters (`container prune`, `image prune`): `until=TIME|DURATION` (made
/// before it), `label=KEY[=VALUE]` (every one given), `label!=KEY[=VALUE]` (none of them).
///
/// ```
/// use oci_rs_runtime::PruneFilter;
/// let f = PruneFilter::parse(&["label!=keep".into(), "until=1h".into()]).unwrap();
/// assert!(!f.matches(&[("keep".to_owned(), String::new())].into(), 0));
/// assert!(PruneFilter::parse(&["status=exited".into()]).is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct PruneFilter {
    until: Option<u64>,
    labels: Vec<String>,
    not_labels: Vec<String>,
}

impl PruneFilter {
    /// The filter of `KEY=VALUE` terms.
    pub fn parse(terms: &[String]) -> EngineResult<Self> {
        let mut f = Self::default();
        for t in terms {
            let bad = |reason: &'static str| {
                EngineError::from(crate::Error::InvalidOption {
                    option: "prune filter",
                    value: t.clone(),
                    reason: reason.into(),
                })
            };
            match t.split_once('=') {
                Some(("until", v)) => {
                    let at =
                        crate::parse_log_time(v).map_err(|_| bad("until: a time or a duration"))?;
                    f.until = Some(f.until.map_or(at, |u| u.min(at)));
                }
                Some(("label", v)) => f.labels.push(v.to_owned()),
                Some(("label!", v)) => f.not_labels.push(v.to_owned()),
                _ => return Err(bad("keys: until, label, label!")),
            }
        }
        Ok(f)
    }

    /// Whether an object with `labels`, made at `created` (ns since the epoch), passes.
    pub fn matches(&self, labels: &BTreeMap<String, String>, created: u64) -> bool {
        let has = |term: &String| match term.split_once('=') {
            Some((k, want)) => labels.get(k).is_some_and(|x| x == want),
            None => labels.contains_key(term),
        };
        self.until.is_none_or(|u| created < u)
            && self.labels.iter().all(has)
            && !self.not_labels.iter().any(has)
    }
}

/// docker's `ps` selection: running containers only unless `all`, and `--filter` terms
/// (terms of one key are alternatives, of different keys all required):
/// `status=created|running|paused|restarting|exited`, `name=PART`, `id=PREFIX`, `label=KEY`
/// or `label=KEY=VALUE` (every label term must hold, as docker has it), `exited=CODE`,
/// `ancestor=IMAGE` (as named, or an id prefix), `network=NAME`, `volume=NAME|PATH`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerFilter {
    all: bool,
    status: Vec<String>,
    names: Vec<String>,
    ids: Vec<String>,
    labels: Vec<(String, Option<String>)>,
    exited: Vec<i32>,
    ancestors: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
    health: Vec<String>,
}

/// The filter keys [`ContainerFilter::parse`] takes, said in its error.
const FILTER_KEYS: &str = "status=created|running|paused|restarting|exited, name=PART, \
    id=PREFIX, label=KEY[=VALUE], exited=CODE, ancestor=IMAGE, network=NAME, volume=NAME or \
    health=starting|healthy|unhealthy|none";

impl ContainerFilter {
    /// The filter of `ps [-a] [--filter K=V]...`.
    pub fn parse(all: bool, filters: &[String]) -> EngineResult<Self> {
        let mut f = Self {
            all,
            ..Self::default()
        };
        for term in filters {
            let bad = || crate::Error::InvalidOption {
                option: "filter",
                value: term.clone(),
                reason: FILTER_KEYS.into(),
            };
            match term.split_once('=') {
                Some(("status", s))
                    if ["created", "running", "paused", "restarting", "exited"].contains(&s) =>
                {
                    f.status.push(s.to_owned())
                }
                Some(("name", n)) => f.names.push(n.trim_start_matches('/').to_owned()),
                Some(("id", i)) => f.ids.push(i.to_owned()),
                Some(("label", l)) => f.labels.push(match l.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                    None => (l.to_owned(), None),
                }),
                Some(("exited", c)) => f.exited.push(c.parse().map_err(|_| bad())?),
                Some(("ancestor", a)) => f.ancestors.push(a.to_owned()),
                Some(("network", n)) => f.networks.push(n.to_owned()),
                Some(("volume", v)) => f.volumes.push(v.to_owned()),
                Some(("health", h))
                    if ["starting", "healthy", "unhealthy", "none"].contains(&h) =>
                {
                    f.health.push(h.to_owned())
                }
                _ => return Err(bad().into()),
            }
        }
        Ok(f)
    }

    /// Whether container `v` is listed.
    pub fn matches(&self, v: &ContainerView) -> bool {
        let state = v.status.state;
        let c = &v.config;
        let shown = match (v.paused, state) {
            (true, _) => "paused".to_owned(),
            (false, s) => s.to_string(),
        };
        let by_status = if self.status.is_empty() {
            self.all || matches!(state, MonitorState::Running | MonitorState::Restarting)
        } else {
            self.status.contains(&shown)
        };
        let any = |terms: &[String], f: &dyn Fn(&str) -> bool| {
            terms.is_empty() || terms.iter().any(|t| f(t))
        };
        let image_id = c.image_id.trim_start_matches("sha256:");
        by_status
            && any(&self.names, &|n| c.name.contains(n))
            && any(&self.ids, &|i| c.id.starts_with(i))
            && self.labels.iter().all(|(k, want)| {
                c.labels
                    .get(k)
                    .is_some_and(|v| want.as_ref().is_none_or(|w| w == v))
            })
            && (self.exited.is_empty()
                || (state == MonitorState::Exited
                    && v.status.exit_code.is_some_and(|e| self.exited.contains(&e))))
            && any(&self.ancestors, &|a| {
                c.image == a
                    || c.image.strip_suffix(":latest") == Some(a)
                    || a.trim_start_matches("sha256:").len() >= 4
                        && image_id.starts_with(a.trim_start_matches("sha256:"))
            })
            && any(&self.networks, &|n| c.networks.iter().any(|x| x == n))
            && any(&self.volumes, &|vol| {
                c.volumes
                    .iter()
                    .any(|(name, target, _)| name == vol || target == vol)
            })
            && any(&self.health, &|h| {
                let health = v.status.health.as_ref().filter(|_| c.health.is_some());
                h == health.map_or("none".to_owned(), |x| x.status.to_string())
            })
    }
}

/// One process of a container, as [`Containers::top`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRow {
    /// Its pid (in the host's pid namespace).
    pub pid: i32,
    /// Its parent's pid.
    pub ppid: i32,
    /// Its real uid, as /proc shows it.
    pub uid: String,
    /// User and system CPU time, to the second.
    pub cpu: Duration,
    /// When it started (nanoseconds since the epoch).
    pub started: u64,
    /// Its controlling terminal (`pts/0`), `?` without one.
    pub tty: String,
    /// Its command line (set by the process itself: untrusted text).
    pub command: String,
}

/// A table of a container's processes, as docker's `top` answers ([`Containers::top_ps`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessTable {
    /// The column titles.
    pub titles: Vec<String>,
    /// One row per process, a cell per title (text the processes set: untrusted).
    pub processes: Vec<Vec<String>>,
}

/// The rows of `ps` output `text` whose `PID` column is one of `pids`; each row has one
/// cell per title, the last taking the rest of its line (a command with spaces).
fn parse_ps(text: &str, pids: &[i32]) -> Result<ProcessTable, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let titles: Vec<String> = lines
        .next()
        .ok_or("ps printed nothing")?
        .split_ascii_whitespace()
        .map(str::to_owned)
        .collect();
    let pid_at = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or("ps printed no PID column")?;
    let mut processes = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let Some(pid) = fields.get(pid_at).and_then(|p| p.parse::<i32>().ok()) else {
            return Err(format!("unexpected ps line {line:?}"));
        };
        if pids.binary_search(&pid).is_err() {
            continue;
        }
        let last = titles.len() - 1;
        let mut row: Vec<String> = fields.iter().take(last).map(|f| (*f).to_owned()).collect();
        if fields.len() > last {
            row.push(fields[last..].join(" "));
        }
        processes.push(row);
    }
    Ok(ProcessTable { titles, processes })
}

/// The columns of [`ProcessRow::ps_ef`]: what docker's `top` shows by default (`ps -ef`).
pub const PS_EF_TITLES: [&str; 8] = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];

impl ProcessRow {
    /// This process as a line of `ps -ef` ([`PS_EF_TITLES`]), as docker's `top` shows it:
    /// the user's name from the host's passwd (its number without one), the CPU use in
    /// percent of its lifetime, the start as `HH:MM` today (UTC) or `MonDD` before.
    pub fn ps_ef(&self) -> Vec<String> {
        let now = crate::now_ns();
        let life = now.saturating_sub(self.started).max(1);
        let c = (self.cpu.as_nanos() as u64 * 100 / life).min(99);
        let stamp = crate::rfc3339(self.started);
        let today = crate::rfc3339(now);
        let stime = if stamp.get(..10) == today.get(..10) {
            stamp.get(11..16).unwrap_or("").to_owned()
        } else {
            const MONTHS: [&str; 12] = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            let month: usize = stamp.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
            format!(
                "{}{}",
                MONTHS[month.clamp(1, 12) - 1],
                stamp.get(8..10).unwrap_or("")
            )
        };
        let t = self.cpu.as_secs();
        let time = match t / 86_400 {
            0 => format!("{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60),
            d => format!("{d}-{:02}:{:02}:{:02}", t / 3600 % 24, t / 60 % 60, t % 60),
        };
        vec![
            user_name(&self.uid),
            self.pid.to_string(),
            self.ppid.to_string(),
            c.to_string(),
            stime,
            self.tty.clone(),
            time,
            self.command.clone(),
        ]
    }
}

/// The host's name for uid `uid` (what `ps` prints), the number itself without one.
fn user_name(uid: &str) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid).then(|| f[0].to_owned())
            })
        })
        .unwrap_or_else(|| uid.to_owned())
}

/// A `tty_nr` of `/proc/PID/stat` as `ps` names it: `pts/N`, `ttyN`, or `?`.
fn tty_name(nr: u64) -> String {
    let major = (nr >> 8) & 0xfff;
    let minor = (nr & 0xff) | ((nr >> 12) & 0xfff00);
    match major {
        0 => "?".into(),
        136..=143 => format!("pts/{}", minor + (major - 136) * 256),
        4 if minor < 64 => format!("tty{minor}"),
        _ => format!("{major}:{minor}"),
    }
}

/// `rm -rf path` inside a user namespace that maps the caller's subordinate ids
/// (util-linux's `unshare --map-auto`); true when the tree is gone.
fn remove_in_user_namespace(path: &Path) -> bool {
    let ok = std::process::Command::new("unshare")
        .args(["--map-auto", "--map-root-user", "rm", "-rf", "--"])
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok && !path.exists()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ps_rows_are_chosen_by_their_pid_column_and_the_last_takes_the_rest() {
        let text = "USER  PID %CPU COMMAND\nroot    1  0.0 /sbin/init splash\nroot   42  1.5 sleep 30\nu     43  0.0 sh -c x\n";
        let t = super::parse_ps(text, &[42, 43]).unwrap();
        assert_eq!(t.titles, ["USER", "PID", "%CPU", "COMMAND"]);
        assert_eq!(
            t.processes,
            [
                ["root", "42", "1.5", "sleep 30"],
                ["u", "43", "0.0", "sh -c x"]
            ]
        );
        assert!(super::parse_ps("USER COMMAND\nroot init\n", &[1]).is_err());
        assert!(super::parse_ps("", &[1]).is_err());
        assert!(super::parse_ps("PID CMD\nnot-a-pid x\n", &[1]).is_err());
    }

    #[test]
    fn container_paths_climb_no_higher_than_the_root() {
        for (given, want) in [
            ("/data/x", "/data/x"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/../../b/", "/b/"),
            ("/a/b/../.", "/a/."),
            ("/..", "/"),
            ("../x", "/x"),
        ] {
            assert_eq!(super::rooted(given), want, "{given}");
        }
        assert_eq!(super::split_dest("/new"), ("/".into(), Some("new".into())));
        assert_eq!(super::split_dest("/a/b/"), ("/a".into(), Some("b".into())));
    }
}

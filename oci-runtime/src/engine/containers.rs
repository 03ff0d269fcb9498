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

use super::{read_record, write_record, EngineError, EngineResult, Volumes};
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
    /// Named volumes: (name, path in the container, read-only).
    pub volumes: Vec<(String, String, bool)>,
    /// A reaper as pid 1 (`--init`).
    pub init: bool,
    /// `container:NAME` for a joined network (shown by `inspect`).
    pub network_mode: Option<String>,
    /// The bridge networks (with [`NetworkMode::Bridge`]); empty: the default `bridge`.
    pub networks: Vec<String>,
    /// `-p` mappings.
    pub publish: Vec<PortMapping>,
    /// `-P`: every port the image EXPOSEs on a free host port.
    pub publish_all: bool,
    /// The terminal's size, for a container with a terminal that a client attaches to.
    pub console_size: Option<oci_spec::runtime::Box>,
}

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
    /// The ports it publishes.
    #[serde(default)]
    pub publish: Vec<PortMapping>,
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
        // Parsed before anything is made, so a bad option leaves nothing behind.
        let stop_signal = req.stop_signal.clone();
        if let Some(s) = &stop_signal {
            crate::parse_signal(s)?;
        }
        let id = random_hex(32)?;
        let name = match &req.name {
            Some(n) => {
                self.reserve_name(n, &id)?;
                n.clone()
            }
            None => self.generated_name(&id)?,
        };
        let made = self.make(image, &req, &id, &name, stop_signal).await;
        match made {
            Ok(m) => Ok((id, m)),
            Err(e) => {
                // The container exists only if its monitor has it: clean up what was made.
                if let Err(e) = self.remove_files(&id, Some(&name)) {
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
    ) -> EngineResult<Monitor> {
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
        let snap = self.snapshots()?;
        let mount = snap
            .prepare(id, image.source, &image.manifest, false)
            .await?;
        let hostname = opts
            .hostname
            .get_or_insert_with(|| id[..12].to_owned())
            .clone();
        let dir = self.dir.join(id);
        oci_rs_layer::private_dir(&dir)?;
        // Before the user's mounts, so a -v on one of them wins, as with docker.
        let mut mounts = crate::etc_files(&dir, &hostname, opts.network)?;
        mounts.append(&mut opts.mounts);
        if !req.volumes.is_empty() {
            let volumes = Volumes::open(&self.data)?;
            for (vname, target, readonly) in &req.volumes {
                let (info, _) = volumes.create(vname, BTreeMap::new())?;
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
        let image_stop = config
            .config()
            .as_ref()
            .and_then(|c| c.stop_signal().clone());
        let cfg = ContainerConfig {
            id: id.to_owned(),
            name: name.to_owned(),
            image: image.name.clone(),
            image_id: image.config_digest.to_string(),
            created: crate::now_ns(),
            command,
            run: opts,
            rm: req.rm,
            restart: req.restart,
            log: req.log,
            labels: req.labels.clone(),
            stop_signal: stop_signal
                .or(image_stop)
                .unwrap_or_else(|| "SIGTERM".into()),
            interactive: req.interactive,
            volumes: req.volumes.clone(),
            init: req.init,
            network_mode: req.network_mode.clone(),
            networks: if cfg_network == NetworkMode::Bridge && req.networks.is_empty() {
                vec![crate::DEFAULT_NETWORK.to_owned()]
            } else {
                req.networks.clone()
            },
            publish,
        };
        self.save_config(&cfg)?;
        self.start_monitor(&cfg, spec, !req.detach)
    }

    fn start_monitor(
        &self,
        cfg: &ContainerConfig,
        spec: oci_spec::runtime::Spec,
        attach_first: bool,
    ) -> EngineResult<Monitor> {
        let dir = self.dir.join(&cfg.id);
        let bundle = self.data.join("snapshots/containers").join(&cfg.id);
        let mut mc = MonitorConfig::new(&cfg.id, spec, &bundle, &self.state_root, &dir);
        mc.log = cfg.log;
        mc.restart = cfg.restart;
        mc.stdin = cfg.interactive;
        mc.attach_first = attach_first;
        mc.init = cfg.init;
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
        let (m, _pid) = Monitor::spawn(mc)?;
        Ok(m)
    }

    /// The network store: the host's one (see [`Networks::host`]).
    pub fn networks(&self) -> Networks {
        Networks::host()
    }

    /// Joins container `what` to network `net`: now when it runs, and at every start.
    pub fn connect(&self, net: &str, what: &str) -> EngineResult<()> {
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
        if v.status.state == MonitorState::Running {
            // connect takes only the network asked for, and no ports, from the request.
            nets.connect(&n.name, &self.network_request(&v.config), v.status.pid)?;
        }
        self.update_config(&v.config.id, |cfg| {
            cfg.networks.push(n.name);
            Ok(())
        })
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
            Ok(())
        })
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
        }
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
        let config = self.config_of(&id)?;
        let Ok((monitor, status)) =
            Monitor::open(&self.dir.join(&id)).and_then(|m| m.status().map(|s| (m, s)))
        else {
            return Err(EngineError::NoMonitor(id));
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

    /// Stops container `what`: its stop signal, then SIGKILL after `timeout`. A paused
    /// container is thawed first, as docker does, so that it can act on the signal.
    pub fn stop(&self, what: &str, timeout: Duration) -> EngineResult<MonitorStatus> {
        let v = self.view(what)?;
        if v.paused {
            self.thaw(&v.config.id)?;
        }
        let sig = crate::parse_signal(&v.config.stop_signal)?;
        Ok(v.monitor.stop(sig, timeout)?)
    }

    /// Sends `signal` to the process of running container `what` (a paused one gets it
    /// as it is thawed).
    pub fn kill(&self, what: &str, signal: i32) -> EngineResult<()> {
        let v = self.running(what, "kill")?;
        v.monitor.kill(signal)?;
        if v.paused {
            self.thaw(&v.config.id)?;
        }
        Ok(())
    }

    /// Freezes every process of running container `what` (docker's `pause`, the cgroup
    /// freezer): they stop being scheduled until [`unpause`](Self::unpause).
    pub fn pause(&self, what: &str) -> EngineResult<()> {
        let v = self.running(what, "pause")?;
        if v.paused {
            return Err(EngineError::WrongState {
                container: v.config.name,
                state: "paused".into(),
                action: "pause",
            });
        }
        crate::Container::load(&self.state_root, &v.config.id)?.pause()?;
        Ok(())
    }

    /// Thaws what [`pause`](Self::pause) froze.
    pub fn unpause(&self, what: &str) -> EngineResult<()> {
        let v = self.view(what)?;
        if !v.paused {
            return Err(EngineError::WrongState {
                container: v.config.name,
                state: v.status.state.to_string(),
                action: "unpause",
            });
        }
        self.thaw(&v.config.id)
    }

    fn thaw(&self, id: &str) -> EngineResult<()> {
        crate::Container::load(&self.state_root, id)?.resume()?;
        Ok(())
    }

    /// Changes the resource limits of running container `what` (docker's `update`): the
    /// ones `resources` sets, written to its cgroup; the others stay.
    pub fn update(
        &self,
        what: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> EngineResult<()> {
        let v = self.running(what, "update")?;
        crate::Container::load(&self.state_root, &v.config.id)?.update(resources)?;
        Ok(())
    }

    fn running(&self, what: &str, action: &'static str) -> EngineResult<ContainerView> {
        let v = self.view(what)?;
        if v.status.state != MonitorState::Running {
            return Err(EngineError::WrongState {
                container: v.config.name,
                state: v.status.state.to_string(),
                action,
            });
        }
        Ok(v)
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
                    state: s.to_string(),
                    action: "start",
                })
            }
        }
        // Mounted again when it is not (after a reboot).
        self.snapshots()?.open(&v.config.id)?;
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
        let id = self.view(what)?.config.id;
        let dir = self.dir.join(&id);
        let lock = match std::fs::File::open(&dir) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(EngineError::io("open", &dir, e)),
        };
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| EngineError::io("lock", &dir, e.into()))?;
        let v = match self.view(&id) {
            Ok(v) => v,
            Err(_) if !dir.exists() => return Ok(()),
            Err(e) => return Err(e),
        };
        if matches!(
            v.status.state,
            MonitorState::Running | MonitorState::Restarting
        ) {
            if !force {
                return Err(EngineError::WrongState {
                    container: v.config.name,
                    state: v.status.state.to_string(),
                    action: "remove (stop it first, or force)",
                });
            }
            // A frozen process dies only once thawed.
            if v.paused {
                self.thaw(&v.config.id)?;
            }
            v.monitor.stop(libc::SIGKILL, Duration::ZERO)?;
            if !self.dir.join(&v.config.id).exists() {
                // Its `rm` monitor removed it meanwhile: gone, once.
                return Ok(());
            }
        }
        self.release(&v.config.id)?;
        self.remove_files(&v.config.id, Some(&v.config.name))
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

    fn remove_files(&self, id: &str, name: Option<&str>) -> EngineResult<()> {
        let snap = self.snapshots()?;
        let base = self.data.join("snapshots/containers").join(id);
        if snap.info(id).is_ok() || base.exists() {
            if let Err(e) = snap.remove(id) {
                if snap.info(id).is_err() && !base.exists() {
                    // Removed by another remover of the same container (its `rm` monitor).
                    return self.remove_files(id, name);
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
        let dir = self.dir.join(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::io("remove", &dir, e)),
        }
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
        for e in &req.env {
            crate::set_env(&mut env, e);
        }
        process.set_env(Some(env));
        if let Some(w) = &req.workdir {
            process.set_cwd(PathBuf::from(w));
        }
        if let Some(u) = &req.user {
            let (uid, gid, extra) = crate::resolve_user(c.rootfs(), u)?;
            let mut user = process.user().clone();
            user.set_uid(uid);
            user.set_gid(gid);
            user.set_additional_gids(Some(extra));
            process.set_user(user);
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
        Ok(p.wait()?)
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
        let m = self.monitor(what)?;
        let pos = crate::read_logs(&m.log_path(), query, &mut *emit)?;
        if follow {
            let mut done = || {
                m.status()
                    .map(|s| s.state == MonitorState::Exited && !s.monitor_alive)
                    .unwrap_or(true)
            };
            crate::follow_logs(&m.log_path(), pos, query.timestamps, &mut done, emit)?;
        }
        Ok(())
    }

    /// The processes of running container `what` (its cgroup's, else its init), read from
    /// /proc, by pid.
    pub fn top(&self, what: &str) -> EngineResult<Vec<ProcessRow>> {
        let v = self.running(what, "list the processes of")?;
        let c = crate::Container::load(&self.state_root, &v.config.id)?;
        let mut pids: Vec<i32> = c.cgroup().map(|g| g.pids()).unwrap_or_default();
        if pids.is_empty() {
            pids.push(c.pid());
        }
        pids.sort_unstable();
        let tick = 100u64;
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
            out.push(ProcessRow {
                pid,
                uid,
                cpu: Duration::from_secs(cpu / tick),
                command: cmd,
            });
        }
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

    /// The network namespace of running container `what`, for another container to join.
    pub fn network_namespace(&self, what: &str) -> EngineResult<PathBuf> {
        let v = self.running(what, "join the network of")?;
        let c = crate::Container::load(&self.state_root, &v.config.id)?;
        Ok(PathBuf::from(format!("/proc/{}/ns/net", c.pid())))
    }

    /// The names of the containers that mount volume `name`.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        self.ids()
            .iter()
            .filter_map(|id| self.config_of(id).ok())
            .filter(|c| c.volumes.iter().any(|v| v.0 == name))
            .map(|c| c.name)
            .collect()
    }

    /// Removes volume `name` unless a container mounts it.
    pub fn remove_volume(&self, name: &str) -> EngineResult<()> {
        Volumes::open(&self.data)?.remove(name, &self.volume_users(name))
    }

    /// Removes every exited container; their ids.
    pub fn prune(&self) -> EngineResult<Vec<String>> {
        let mut gone = Vec::new();
        for v in self.list()? {
            if v.status.state == MonitorState::Exited {
                self.remove(&v.config.id, false)?;
                gone.push(v.config.id);
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
    /// `images` (`docker commit`). A running container is frozen (its cgroup's freezer) while
    /// its writable layer is read, so the image is one moment of it, and thawed however the
    /// read ends; `pause: false` skips that, as docker's `--pause=false`.
    pub async fn commit(
        &self,
        images: &oci_rs_layer::ImageStore,
        what: &str,
        reference: &str,
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
        let made = images.commit(&id, reference, &how).await;
        if let Some(c) = frozen {
            c.resume()?;
        }
        Ok(made?)
    }

    /// Removes images `names` from `images` ([`ImageStore::remove`](oci_rs_layer::ImageStore::remove),
    /// `docker rmi`), naming the container that uses one when it is refused. Returns the
    /// names untagged and the bytes freed.
    pub async fn remove_images(
        &self,
        images: &oci_rs_layer::ImageStore,
        names: &[String],
        force: bool,
    ) -> EngineResult<(Vec<String>, u64)> {
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
    /// sink, flushed.
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
        Ok(images.export(&id, sink).await?)
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
        ))
    }
}

/// docker's `ps` selection: running containers only unless `all`, and `--filter` terms
/// (`status=created|running|restarting|exited`, `name=PART`; terms of one key are
/// alternatives, of different keys all required).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerFilter {
    all: bool,
    status: Vec<String>,
    names: Vec<String>,
}

impl ContainerFilter {
    /// The filter of `ps [-a] [--filter K=V]...`.
    pub fn parse(all: bool, filters: &[String]) -> EngineResult<Self> {
        let mut f = Self {
            all,
            ..Self::default()
        };
        for term in filters {
            match term.split_once('=') {
                Some(("status", s))
                    if ["created", "running", "restarting", "exited"].contains(&s) =>
                {
                    f.status.push(s.to_owned())
                }
                Some(("name", n)) => f.names.push(n.to_owned()),
                _ => {
                    return Err(crate::Error::InvalidOption {
                        option: "filter",
                        value: term.clone(),
                        reason: "status=created|running|restarting|exited or name=PART".into(),
                    }
                    .into())
                }
            }
        }
        Ok(f)
    }

    /// Whether container `v` is listed.
    pub fn matches(&self, v: &ContainerView) -> bool {
        let state = v.status.state;
        let by_status = if self.status.is_empty() {
            self.all || matches!(state, MonitorState::Running | MonitorState::Restarting)
        } else {
            self.status.contains(&state.to_string())
        };
        by_status
            && (self.names.is_empty()
                || self
                    .names
                    .iter()
                    .any(|n| v.config.name.contains(n.as_str())))
    }
}

/// One process of a container, as [`Containers::top`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRow {
    /// Its pid (in the host's pid namespace).
    pub pid: i32,
    /// Its real uid, as /proc shows it.
    pub uid: String,
    /// User and system CPU time, to the second.
    pub cpu: Duration,
    /// Its command line (set by the process itself: untrusted text).
    pub command: String,
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

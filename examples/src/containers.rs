//! The container store of `oci`: what `run`, `ps`, `logs`, `stop`, `kill`, `start`, `wait`,
//! `rm`, `exec` and `inspect` share. A container is
//!
//! - a snapshot (oci-rs-layer's [`Snapshotter`], id = the container id), which knows its image;
//! - `DATA/containers/ID/config.json`: name, image, creation time and the run options;
//! - the same directory as its monitor's (oci-rs-runtime's [`Monitor`]: status, log, attach
//!   socket) and the runtime's state under `DATA/run/ID` while a process exists;
//! - `DATA/containers/.names/NAME`, created exclusively, so of two `run --name x` exactly one
//!   gets the name.
//!
//! Ids are 64 random hex digits (docker's); names, ids and unique id prefixes all name a
//! container.

use anyhow::{anyhow, bail, Context, Result};
use oci_rs_layer::Snapshotter;
use oci_rs_runtime::LogLimits;
use oci_rs_runtime::{Monitor, MonitorConfig, MonitorState, MonitorStatus, RestartPolicy};
use oci_rs_runtime::{NetworkMode, RunOptions};
use oci_rs_runtime::{NetworkPlan, NetworkRequest, Networks, PortMapping};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `run` is asked besides the image.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// The docker-run options that shape the spec.
    pub opts: RunOptions,
    /// The container name (default: a generated adjective_surname).
    pub name: Option<String>,
    /// Remove the container when it exits (by its monitor, however the run ends).
    pub rm: bool,
    /// `os/arch[/variant]` to pull and run.
    pub platform: Option<String>,
    /// Return once it runs (`-d`) instead of attaching.
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
    /// The bridge networks (with [`oci_rs_runtime::NetworkMode::Bridge`]); empty: the
    /// default `bridge`.
    pub networks: Vec<String>,
    /// `-p` mappings.
    pub publish: Vec<PortMapping>,
    /// `-P`: every port the image EXPOSEs on a free host port.
    pub publish_all: bool,
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
    /// Its monitor.
    pub monitor: Monitor,
}

/// The container store under a data directory.
pub struct Containers {
    data: PathBuf,
    dir: PathBuf,
    state_root: PathBuf,
}

pub(crate) fn random_hex(bytes: usize) -> Result<String> {
    let mut b = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom")?;
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

impl Containers {
    /// The store under `data` (created when missing, private to its owner).
    pub fn open(data: &Path) -> Result<Self> {
        let dir = data.join("containers");
        oci_rs_layer::private_dir(&dir)?;
        oci_rs_layer::private_dir(&dir.join(".names"))?;
        Ok(Self {
            data: data.to_owned(),
            dir,
            state_root: data.join("run"),
        })
    }

    fn snapshots(&self) -> Result<Snapshotter> {
        Ok(Snapshotter::new(self.data.join("snapshots"))?)
    }

    fn config_of(&self, id: &str) -> Result<ContainerConfig> {
        let p = self.dir.join(id).join("config.json");
        let b = std::fs::read(&p).map_err(|_| anyhow!("no such container: {id}"))?;
        Ok(serde_json::from_slice(&b)?)
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
    pub fn resolve(&self, what: &str) -> Result<String> {
        if what.is_empty() || what.contains('/') || what.starts_with('.') {
            bail!("no such container: {what}");
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
            [] => bail!("no such container: {what}"),
            _ => bail!("multiple containers match {what:?}: give more of the id"),
        }
    }

    fn reserve_name(&self, name: &str, id: &str) -> Result<()> {
        let ok = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            && name.as_bytes()[0].is_ascii_alphanumeric();
        if !ok {
            bail!("invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
        }
        let path = self.dir.join(".names").join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(id.as_bytes())?;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let other = std::fs::read_to_string(&path).unwrap_or_default();
                bail!(
                    "the container name \"/{name}\" is already in use by container \"{other}\": remove (or rename) that container to reuse the name"
                )
            }
            Err(e) => Err(e).with_context(|| format!("reserving the name {name}")),
        }
    }

    fn generated_name(&self, id: &str) -> Result<String> {
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
            if self.reserve_name(&name, id).is_ok() {
                return Ok(name);
            }
        }
        bail!("no free container name")
    }

    /// Creates the container and starts it under a detached monitor: `run`. Returns the id
    /// and the monitor; with `detach` false the process waits for [`crate::terminal::attach`] to start.
    pub async fn run(
        &self,
        images: &crate::images::Images,
        image: &str,
        req: RunRequest,
    ) -> Result<(String, Monitor)> {
        // Parsed before anything is made, so a bad option leaves nothing behind.
        let stop_signal = req.stop_signal.clone();
        if let Some(s) = &stop_signal {
            oci_rs_runtime::parse_signal(s)?;
        }
        let (manifest, config, config_digest) =
            images.image_for_run(image, req.platform.as_deref()).await?;
        let id = random_hex(32)?;
        let name = match &req.name {
            Some(n) => {
                self.reserve_name(n, &id)?;
                n.clone()
            }
            None => self.generated_name(&id)?,
        };
        let made = async {
            let snap = self.snapshots()?;
            let mount = snap
                .prepare(&id, &images.layout, &manifest, false)
                .await
                .with_context(|| format!("preparing the filesystem of {name}"))?;
            let mut opts = req.opts.clone();
            let hostname = opts
                .hostname
                .get_or_insert_with(|| id[..12].to_owned())
                .clone();
            let dir = self.dir.join(&id);
            oci_rs_layer::private_dir(&dir)?;
            // Before the user's mounts, so a -v on one of them wins, as with docker.
            let mut mounts = oci_rs_runtime::etc_files(&dir, &hostname, opts.network)?;
            mounts.append(&mut opts.mounts);
            let volumes = crate::volumes::Volumes::open(&self.data)?;
            for (name, target, readonly) in &req.volumes {
                let (info, _) = volumes.create(name, BTreeMap::new())?;
                volumes.fill_from_image(name, &mount.rootfs, target).await?;
                mounts.retain(|m| m.target() != target);
                mounts.push(oci_rs_runtime::ExtraMount::Bind {
                    source: info.mountpoint,
                    target: target.clone(),
                    readonly: *readonly,
                });
            }
            opts.mounts = mounts;
            if !rustix::process::geteuid().is_root() && opts.rootless.is_none() {
                opts.rootless = Some(oci_rs_runtime::Rootless::current());
            }
            let cfg_network = opts.network;
            let mut publish = req.publish.clone();
            if req.publish_all {
                let exposed = config
                    .config()
                    .as_ref()
                    .and_then(|c| c.exposed_ports().clone())
                    .unwrap_or_default();
                for e in exposed {
                    publish.extend(oci_rs_runtime::parse_publish(&e)?);
                }
            }
            if !publish.is_empty() && !matches!(cfg_network, NetworkMode::Bridge | NetworkMode::Slirp) {
                bail!("ports are published only on a bridge network or with slirp4netns, not with --network {}", req.network_mode.as_deref().unwrap_or(match cfg_network { NetworkMode::Host => "host", _ => "none" }));
            }
            let mut spec = oci_rs_runtime::spec_from_image(&config, &mount.rootfs, &opts)?;
            if opts.terminal && !req.detach {
                if let Some(p) = spec.process_mut() {
                    p.set_console_size(crate::terminal::console_size());
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
                id: id.clone(),
                name: name.clone(),
                image: image.to_owned(),
                image_id: config_digest.to_string(),
                created: oci_rs_runtime::now_ns(),
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
                    vec![oci_rs_runtime::DEFAULT_NETWORK.to_owned()]
                } else {
                    req.networks.clone()
                },
                publish,
            };
            self.save_config(&cfg)?;
            self.start_monitor(&cfg, spec, !req.detach)
        }
        .await;
        match made {
            Ok(m) => Ok((id, m)),
            Err(e) => {
                // The container exists only if its monitor has it: clean up what was made.
                let _ = self.remove_files(&id, Some(&name));
                Err(e)
            }
        }
    }

    fn start_monitor(
        &self,
        cfg: &ContainerConfig,
        spec: oci_spec::runtime::Spec,
        attach_first: bool,
    ) -> Result<Monitor> {
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
                store: self.networks_dir(),
                request: self.network_request(cfg),
            }),
            NetworkMode::Slirp => Some(NetworkPlan::Slirp {
                ports: cfg.publish.clone(),
            }),
            _ => None,
        };
        if cfg.rm {
            mc.exit_command = vec![
                "/proc/self/exe".into(),
                "-q".into(),
                "--data-dir".into(),
                self.data.display().to_string(),
                "rm".into(),
                "-f".into(),
                cfg.id.clone(),
            ];
        }
        let (m, _pid) = Monitor::spawn(mc)?;
        Ok(m)
    }

    /// The network store (bridges, endpoints): host-wide, as the kernel's interfaces and
    /// firewall are, whatever the data directory: `$OCI_NETWORKS_DIR`, else
    /// `/var/lib/oci/networks`.
    pub fn networks_dir(&self) -> PathBuf {
        Networks::host_dir()
    }

    /// The network store: the host's one (see [`Networks::host`]).
    pub fn networks(&self) -> Networks {
        Networks::host()
    }

    /// `network connect NET CONTAINER`: joins now when it runs, and at every start.
    pub fn connect(&self, net: &str, what: &str) -> Result<()> {
        let v = self.view(what)?;
        let nets = self.networks();
        let n = nets.get(net)?;
        if v.config.run.network != NetworkMode::Bridge {
            bail!(
                "container {} is not on a bridge network: it cannot join {}",
                v.config.name,
                n.name
            );
        }
        if v.config.networks.contains(&n.name) {
            bail!(
                "container {} is already on network {}",
                v.config.name,
                n.name
            );
        }
        if v.status.state == MonitorState::Running {
            // connect takes only the network asked for, and no ports, from the request.
            nets.connect(&n.name, &self.network_request(&v.config), v.status.pid)?;
        }
        let mut cfg = v.config;
        cfg.networks.push(n.name);
        self.save_config(&cfg)
    }

    /// `network disconnect NET CONTAINER`.
    pub fn disconnect(&self, net: &str, what: &str) -> Result<()> {
        let v = self.view(what)?;
        let nets = self.networks();
        let n = nets.get(net)?;
        if !v.config.networks.contains(&n.name) {
            bail!("container {} is not on network {}", v.config.name, n.name);
        }
        nets.disconnect(&n.name, &v.config.id)?;
        let mut cfg = v.config;
        cfg.networks.retain(|x| *x != n.name);
        self.save_config(&cfg)
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

    fn save_config(&self, cfg: &ContainerConfig) -> Result<()> {
        let dir = self.dir.join(&cfg.id);
        let tmp = dir.join(".config.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(cfg)?)?;
        std::fs::rename(&tmp, dir.join("config.json"))?;
        Ok(())
    }

    /// The monitor of container `what`.
    pub fn monitor(&self, what: &str) -> Result<Monitor> {
        let id = self.resolve(what)?;
        Ok(Monitor::open(&self.dir.join(id))?)
    }

    /// A container's record and reconciled status.
    pub fn view(&self, what: &str) -> Result<ContainerView> {
        let id = self.resolve(what)?;
        let config = self.config_of(&id)?;
        let Ok((monitor, status)) =
            Monitor::open(&self.dir.join(&id)).and_then(|m| m.status().map(|s| (m, s)))
        else {
            bail!("container {id} has no monitor record")
        };
        Ok(ContainerView {
            config,
            status,
            monitor,
        })
    }

    /// Every container, newest first.
    pub fn list(&self) -> Result<Vec<ContainerView>> {
        let mut out: Vec<ContainerView> = self
            .ids()
            .iter()
            .filter_map(|id| self.view(id).ok())
            .collect();
        out.sort_by_key(|v| std::cmp::Reverse(v.config.created));
        Ok(out)
    }

    /// `stop [-t N]`: the container's stop signal, then SIGKILL after `timeout`.
    pub fn stop(&self, what: &str, timeout: Duration) -> Result<MonitorStatus> {
        let v = self.view(what)?;
        let sig = oci_rs_runtime::parse_signal(&v.config.stop_signal)?;
        Ok(v.monitor.stop(sig, timeout)?)
    }

    /// `kill [-s SIG]`.
    pub fn kill(&self, what: &str, signal: i32) -> Result<()> {
        let v = self.view(what)?;
        if v.status.state != MonitorState::Running {
            bail!("container {} is not running", v.config.name);
        }
        Ok(v.monitor.kill(signal)?)
    }

    /// `start`: a stopped container again, on the same snapshot, under a new monitor.
    pub fn start(&self, what: &str, attach_first: bool) -> Result<Monitor> {
        let v = self.view(what)?;
        match v.status.state {
            MonitorState::Exited => {}
            MonitorState::Created if !v.status.monitor_alive => {}
            s => bail!("container {} is {s}", v.config.name),
        }
        // Mounted again when it is not (after a reboot).
        self.snapshots()?.open(&v.config.id)?;
        let spec = self.saved_spec(&v.config.id)?;
        self.start_monitor(&v.config, spec, attach_first)
    }

    /// The spec as first made, kept in the monitor's config.
    fn saved_spec(&self, id: &str) -> Result<oci_spec::runtime::Spec> {
        Ok(MonitorConfig::read(&self.dir.join(id))?.spec)
    }

    /// `wait`: blocks until the container has exited for good; its exit code.
    pub fn wait(&self, what: &str) -> Result<i32> {
        let m = self.monitor(what)?;
        let s = m.wait_exited(Duration::from_secs(u64::MAX / 4))?;
        Ok(s.exit_code.unwrap_or(255))
    }

    /// `rm [-f]`: a running container is refused unless `force`, which kills it first.
    ///
    /// Removers of one container (this verb, and the `oci rm -f` its `--rm` monitor runs as
    /// it ends) take turns on a lock of its directory; whoever comes second finds it gone and
    /// succeeds.
    pub fn remove(&self, what: &str, force: bool) -> Result<()> {
        let id = self.view(what)?.config.id;
        let dir = self.dir.join(&id);
        let lock = match std::fs::File::open(&dir) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("opening {}", dir.display())),
        };
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("locking {}", dir.display()))?;
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
                bail!(
                    "cannot remove container {}: it is {}: stop it first, or use rm -f",
                    v.config.name,
                    v.status.state
                );
            }
            v.monitor.stop(libc::SIGKILL, Duration::ZERO)?;
            if !self.dir.join(&v.config.id).exists() {
                // Its `--rm` monitor removed it meanwhile: gone, once.
                return Ok(());
            }
        }
        if let Ok(c) = oci_rs_runtime::Container::load(&self.state_root, &v.config.id) {
            c.delete(true)
                .with_context(|| format!("deleting the state of {}", v.config.id))?;
        }
        // The monitor releases them when the container ends; this covers a monitor that
        // was killed.
        if self.networks_dir().exists() {
            self.networks().detach(&v.config.id)?;
        }
        self.remove_files(&v.config.id, Some(&v.config.name))
    }

    fn remove_files(&self, id: &str, name: Option<&str>) -> Result<()> {
        let snap = self.snapshots()?;
        let base = self.data.join("snapshots/containers").join(id);
        if snap.info(id).is_ok() || base.exists() {
            if let Err(e) = snap.remove(id) {
                if snap.info(id).is_err() && !base.exists() {
                    // Removed by another remover of the same container (its `--rm` monitor).
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
        match std::fs::remove_dir_all(self.dir.join(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing container {id}")),
        }
    }

    /// `exec`: runs `args` in the running container `what` with this process's stdio (or
    /// none with `detach`); the exit code, or 0 at once when detached.
    pub fn exec(&self, what: &str, req: &ExecRequest) -> Result<i32> {
        let v = self.view(what)?;
        if v.status.state != MonitorState::Running {
            bail!("container {} is not running", v.config.name);
        }
        let c = oci_rs_runtime::Container::load(&self.state_root, &v.config.id)?;
        let mut process = self
            .saved_spec(&v.config.id)?
            .process()
            .clone()
            .ok_or_else(|| anyhow!("the container has no process"))?;
        process.set_args(Some(req.args.clone()));
        process.set_terminal(Some(false));
        let mut env = process.env().clone().unwrap_or_default();
        for e in &req.env {
            oci_rs_runtime::set_env(&mut env, e);
        }
        process.set_env(Some(env));
        if let Some(w) = &req.workdir {
            process.set_cwd(PathBuf::from(w));
        }
        if let Some(u) = &req.user {
            let (uid, gid, extra) = oci_rs_runtime::resolve_user(c.rootfs(), u)?;
            let mut user = process.user().clone();
            user.set_uid(uid);
            user.set_gid(gid);
            user.set_additional_gids(Some(extra));
            process.set_user(user);
        }
        if req.tty {
            process.set_terminal(Some(true));
            process.set_console_size(crate::terminal::console_size());
            return crate::terminal::exec_tty(&c, &process, req.interactive);
        }
        let null = || -> Result<Option<std::os::fd::OwnedFd>> {
            Ok(Some(std::fs::File::open("/dev/null")?.into()))
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
}

impl Containers {
    /// `logs [-f]`: the container's log as `query` selects it, to this process's stdout and
    /// stderr; with `follow`, new output until the container has ended.
    pub fn logs(&self, what: &str, query: &oci_rs_runtime::LogQuery, follow: bool) -> Result<()> {
        use oci_rs_runtime::LogStream;
        let m = self.monitor(what)?;
        let mut out = std::io::stdout();
        let mut err = std::io::stderr();
        let mut emit = |s: LogStream, b: &[u8]| -> std::io::Result<()> {
            match s {
                LogStream::Stdout => {
                    out.write_all(b)?;
                    out.flush()
                }
                LogStream::Stderr => {
                    err.write_all(b)?;
                    err.flush()
                }
            }
        };
        let pos = oci_rs_runtime::read_logs(&m.log_path(), query, &mut emit)?;
        if follow {
            let mut done = || {
                m.status()
                    .map(|s| s.state == MonitorState::Exited && !s.monitor_alive)
                    .unwrap_or(true)
            };
            oci_rs_runtime::follow_logs(
                &m.log_path(),
                pos,
                query.timestamps,
                &mut done,
                &mut emit,
            )?;
        }
        Ok(())
    }

    /// `top`: the container's processes (its cgroup's, else its init's descendants) as
    /// `PID USER TIME CMD` lines, read from /proc.
    pub fn top(&self, what: &str) -> Result<Vec<String>> {
        let v = self.view(what)?;
        if v.status.state != MonitorState::Running {
            bail!("container {} is not running", v.config.name);
        }
        let c = oci_rs_runtime::Container::load(&self.state_root, &v.config.id)?;
        let mut pids: Vec<i32> = c.cgroup().map(|g| g.pids()).unwrap_or_default();
        if pids.is_empty() {
            pids.push(c.pid());
        }
        pids.sort_unstable();
        let tick = 100u64;
        let mut out = vec![format!("{:<8} {:<8} {:<10} CMD", "PID", "UID", "TIME")];
        for pid in pids {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let rest = stat.rsplit_once(')').map_or("", |r| r.1);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let cpu: u64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0)
                + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
            let secs = cpu / tick;
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
            out.push(format!(
                "{pid:<8} {uid:<8} {:02}:{:02}:{:02}   {}",
                secs / 3600,
                secs / 60 % 60,
                secs % 60,
                // Any process in the container sets its own argv: no escape sequence from it
                // reaches the terminal.
                crate::text::printable(&cmd)
            ));
        }
        Ok(out)
    }

    /// The network namespace of running container `what`, for `--network container:NAME`.
    pub fn network_namespace(&self, what: &str) -> Result<PathBuf> {
        let v = self.view(what)?;
        if v.status.state != MonitorState::Running {
            bail!(
                "cannot join the network of container {}: it is {}",
                v.config.name,
                v.status.state
            );
        }
        let c = oci_rs_runtime::Container::load(&self.state_root, &v.config.id)?;
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

    /// `container prune`: removes every exited container; their names.
    pub fn prune(&self) -> Result<Vec<String>> {
        let mut gone = Vec::new();
        for v in self.list()? {
            if v.status.state == MonitorState::Exited {
                self.remove(&v.config.id, false)?;
                gone.push(v.config.id);
            }
        }
        Ok(gone)
    }

    /// Waits until container `id` has been removed (by its monitor's exit command), at most
    /// `timeout`.
    pub fn wait_removed(&self, id: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.dir.join(id).exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `inspect` of a container, shaped as docker's.
    pub fn inspect(&self, what: &str) -> Result<Inspect> {
        let v = self.view(what)?;
        let spec = self.saved_spec(&v.config.id).ok();
        let process = spec.as_ref().and_then(|s| s.process().clone());
        let c = &v.config;
        let st = &v.status;
        let zero = "0001-01-01T00:00:00Z".to_owned();
        let time = |t: Option<u64>| t.map_or_else(|| zero.clone(), oci_rs_runtime::rfc3339);
        let volume_of = |source: &Path| {
            c.volumes.iter().find(|(n, _, _)| {
                source.parent().and_then(|p| p.file_name()) == Some(std::ffi::OsStr::new(n))
                    && source.starts_with(self.data.join("volumes"))
            })
        };
        let mounts = c
            .run
            .mounts
            .iter()
            .filter(|m| !["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"].contains(&m.target()))
            .map(|m| match m {
                oci_rs_runtime::ExtraMount::Bind {
                    source,
                    target,
                    readonly,
                } if volume_of(source).is_some() => serde_json::json!({"Type": "volume", "Name": volume_of(source).map(|v| v.0.clone()), "Source": source, "Destination": target, "Driver": "local", "RW": !readonly}),
                oci_rs_runtime::ExtraMount::Bind {
                    source,
                    target,
                    readonly,
                } => serde_json::json!({"Type": "bind", "Source": source, "Destination": target, "RW": !readonly}),
                oci_rs_runtime::ExtraMount::Tmpfs { target, .. } => {
                    serde_json::json!({"Type": "tmpfs", "Source": "", "Destination": target, "RW": true})
                }
                _ => serde_json::json!({}),
            })
            .collect();
        let (path, args) = c
            .command
            .split_first()
            .map_or((String::new(), Vec::new()), |(p, a)| {
                (p.clone(), a.to_vec())
            });
        Ok(Inspect {
            id: c.id.clone(),
            name: format!("/{}", c.name),
            created: oci_rs_runtime::rfc3339(c.created),
            path,
            args,
            image: c.image_id.clone(),
            restart_count: st.restart_count,
            state: InspectState {
                status: st.state.to_string(),
                running: st.state == MonitorState::Running,
                restarting: st.state == MonitorState::Restarting,
                pid: if st.state == MonitorState::Running {
                    st.pid
                } else {
                    0
                },
                exit_code: st.exit_code.unwrap_or(0),
                error: st.error.clone().unwrap_or_default(),
                started_at: time(st.started_at),
                finished_at: time(st.finished_at),
            },
            config: serde_json::json!({
                "Hostname": c.run.hostname,
                "User": c.run.user.clone().unwrap_or_default(),
                "Env": process.as_ref().and_then(|p| p.env().clone()).unwrap_or_default(),
                "Cmd": c.command,
                "Image": c.image,
                "WorkingDir": process.as_ref().map(|p| p.cwd().display().to_string()).unwrap_or_default(),
                "Labels": c.labels,
                "StopSignal": c.stop_signal,
                "OpenStdin": c.interactive,
                "Tty": c.run.terminal,
            }),
            host_config: serde_json::json!({
                "AutoRemove": c.rm,
                "RestartPolicy": {"Name": match c.restart {
                    RestartPolicy::No => "no",
                    RestartPolicy::OnFailure { .. } => "on-failure",
                    RestartPolicy::Always => "always",
                    RestartPolicy::UnlessStopped => "unless-stopped",
                }, "MaximumRetryCount": match c.restart {
                    RestartPolicy::OnFailure { max: Some(n) } => n,
                    _ => 0,
                }},
                "NetworkMode": match (&c.run.join_network, c.run.network) {
                    (Some(_), _) => c.network_mode.clone().unwrap_or_else(|| "container".into()),
                    (None, NetworkMode::Host) => "host".into(),
                    (None, NetworkMode::Slirp) => "slirp4netns".into(),
                    (None, NetworkMode::Bridge) => c
                        .networks
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "bridge".into()),
                    _ => "none".to_owned(),
                },
                "PortBindings": port_bindings(c.publish.iter().map(|p| (p.container_port, p.proto, p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED), p.host_port))),
                "Memory": c.run.memory.unwrap_or(0),
                "NanoCpus": c.run.cpus.map_or(0, |x| (x * 1e9) as i64),
                "PidsLimit": c.run.pids_limit,
                "CapAdd": c.run.cap_add,
                "CapDrop": c.run.cap_drop,
                "Privileged": c.run.privileged,
                "ReadonlyRootfs": c.run.read_only,
                "LogConfig": {"Type": "cri", "Config": {
                    "max-size": c.log.max_size.map(|s| s.to_string()),
                    "max-file": c.log.max_files.to_string(),
                }},
            }),
            mounts,
            network_settings: network_settings(st),
            log_path: self.dir.join(&c.id).join(oci_rs_runtime::LOG_FILE),
        })
    }
}

/// docker's container inspect document (the fields this tool has).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Inspect {
    /// Full id.
    pub id: String,
    /// `/name`.
    pub name: String,
    /// RFC 3339.
    pub created: String,
    /// The program.
    pub path: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The image id.
    pub image: String,
    /// Restarts so far.
    pub restart_count: u32,
    /// The state.
    pub state: InspectState,
    /// docker's Config.
    pub config: serde_json::Value,
    /// docker's HostConfig.
    pub host_config: serde_json::Value,
    /// Binds and tmpfs mounts.
    pub mounts: Vec<serde_json::Value>,
    /// docker's NetworkSettings.
    pub network_settings: serde_json::Value,
    /// The log file.
    pub log_path: PathBuf,
}

/// docker's State.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectState {
    /// created, running, restarting, exited.
    pub status: String,
    /// Whether it runs.
    pub running: bool,
    /// Whether it is between restarts.
    pub restarting: bool,
    /// The init's pid (0 when not running).
    pub pid: i32,
    /// The last exit code.
    pub exit_code: i32,
    /// Why it could not start.
    pub error: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: String,
}

/// What `exec` runs.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The command.
    pub args: Vec<String>,
    /// More environment.
    pub env: Vec<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Keep stdin.
    pub interactive: bool,
    /// Do not wait.
    pub detach: bool,
    /// A terminal (`-t`).
    pub tty: bool,
}

/// docker's `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}`.
fn port_bindings(
    ports: impl Iterator<Item = (u16, oci_rs_runtime::Proto, std::net::Ipv4Addr, u16)>,
) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (c, proto, ip, h) in ports {
        let e = m
            .entry(format!("{c}/{proto}"))
            .or_insert_with(|| serde_json::json!([]));
        if let Some(a) = e.as_array_mut() {
            a.push(serde_json::json!({
                "HostIp": ip.to_string(),
                "HostPort": if h == 0 { String::new() } else { h.to_string() },
            }));
        }
    }
    serde_json::Value::Object(m)
}

/// docker's NetworkSettings: the running container's addresses and ports.
fn network_settings(st: &MonitorStatus) -> serde_json::Value {
    let Some(n) = &st.network else {
        return serde_json::json!({"Ports": {}, "Networks": {}, "IPAddress": "", "Gateway": "", "MacAddress": ""});
    };
    let nets: serde_json::Map<String, serde_json::Value> = n
        .endpoints
        .iter()
        .map(|e| {
            (
                e.network.clone(),
                serde_json::json!({
                    "IPAddress": e.ip.to_string(),
                    "IPPrefixLen": e.prefix,
                    "Gateway": e.gateway.to_string(),
                    "MacAddress": e.mac,
                    "EndpointID": format!("{}-{}", &e.container[..12.min(e.container.len())], e.interface),
                }),
            )
        })
        .collect();
    let first = n.endpoints.first();
    serde_json::json!({
        "Ports": port_bindings(n.ports.iter().map(|p| (p.container_port, p.proto, p.host_ip, p.host_port))),
        "Networks": nets,
        "IPAddress": first.map(|e| e.ip.to_string()).unwrap_or_default(),
        "IPPrefixLen": first.map_or(0, |e| e.prefix),
        "Gateway": first.map(|e| e.gateway.to_string()).unwrap_or_default(),
        "MacAddress": first.map(|e| e.mac.clone()).unwrap_or_default(),
    })
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

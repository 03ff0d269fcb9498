//! `/containers/...`: docker's container JSON as the container store's requests.

use super::{blocking, empty, filters, flag, json, query, read_json, EngineApi, Fail, Reply};
use crate::engine::{ContainerFilter, ContainerView, EngineError, RunImage, RunRequest};
use crate::{ExtraMount, MonitorState, RunOptions};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The body of `POST /containers/create`: the fields of docker's `Config` this engine acts
/// on (the others are accepted and ignored, as an older daemon does).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    hostname: Option<String>,
    user: Option<String>,
    tty: Option<bool>,
    open_stdin: Option<bool>,
    env: Option<Vec<String>>,
    cmd: Option<StringOrList>,
    entrypoint: Option<StringOrList>,
    image: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    working_dir: Option<String>,
    stop_signal: Option<String>,
    stop_timeout: Option<i64>,
    volumes: Option<BTreeMap<String, serde_json::Value>>,
    healthcheck: Option<oci_rs_image::Healthcheck>,
    /// The first network's MAC address, as API versions before 1.44 send it.
    mac_address: Option<String>,
    host_config: Option<HostConfig>,
    networking_config: Option<NetworkingConfig>,
}

/// `NetworkingConfig`: the networks to join at create (the first is `NetworkMode`'s) and
/// each one's aliases.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkingConfig {
    endpoints_config: Option<BTreeMap<String, Option<super::EndpointConfig>>>,
}

/// docker accepts `"Cmd": "sh"` as well as `["sh"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct HostConfig {
    binds: Option<Vec<String>>,
    network_mode: Option<String>,
    port_bindings: Option<BTreeMap<String, Option<Vec<PortBinding>>>>,
    restart_policy: Option<RestartPolicyBody>,
    auto_remove: Option<bool>,
    privileged: Option<bool>,
    publish_all_ports: Option<bool>,
    readonly_rootfs: Option<bool>,
    cap_add: Option<Vec<String>>,
    cap_drop: Option<Vec<String>>,
    #[serde(flatten)]
    resources: ResourceBody,
    oom_score_adj: Option<i32>,
    tmpfs: Option<BTreeMap<String, String>>,
    init: Option<bool>,
    security_opt: Option<Vec<String>>,
    log_config: Option<LogConfig>,
    mounts: Option<Vec<MountBody>>,
    sysctls: Option<BTreeMap<String, String>>,
    ulimits: Option<Vec<UlimitBody>>,
    shm_size: Option<i64>,
    group_add: Option<Vec<String>>,
    extra_hosts: Option<Vec<String>>,
    links: Option<Vec<String>>,
    dns: Option<Vec<String>>,
    dns_search: Option<Vec<String>>,
    dns_options: Option<Vec<String>>,
    pid_mode: Option<String>,
    ipc_mode: Option<String>,
    #[serde(rename = "UTSMode")]
    uts_mode: Option<String>,
    volumes_from: Option<Vec<String>>,
    devices: Option<Vec<DeviceBody>>,
}

/// One of HostConfig's `Devices`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DeviceBody {
    path_on_host: String,
    path_in_container: String,
    cgroup_permissions: String,
}

/// The policy a `RestartPolicy` body names; None when it names none.
fn restart_policy(
    body: Option<RestartPolicyBody>,
) -> Result<Option<crate::RestartPolicy>, crate::Error> {
    let Some((n, max)) = body.and_then(|r| {
        r.name
            .filter(|n| !n.is_empty())
            .map(|n| (n, r.maximum_retry_count.unwrap_or(0)))
    }) else {
        return Ok(None);
    };
    match n.as_str() {
        "on-failure" if max > 0 => format!("{n}:{max}").parse().map(Some),
        _ => n.parse().map(Some),
    }
}

/// docker's resource fields, of `HostConfig` and of an update's body: 0, empty or null is
/// not set.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ResourceBody {
    memory: Option<i64>,
    memory_swap: Option<i64>,
    memory_reservation: Option<i64>,
    nano_cpus: Option<i64>,
    cpu_shares: Option<i64>,
    cpu_period: Option<i64>,
    cpu_quota: Option<i64>,
    cpuset_cpus: Option<String>,
    cpuset_mems: Option<String>,
    pids_limit: Option<i64>,
}

impl ResourceBody {
    fn flags(&self) -> crate::ResourceFlags {
        let set = |v: Option<i64>| v.filter(|v| *v != 0);
        let text = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        crate::ResourceFlags {
            cpus: set(self.nano_cpus).map(|n| n as f64 / 1e9),
            cpu_shares: set(self.cpu_shares).and_then(|s| u64::try_from(s).ok()),
            cpu_period: set(self.cpu_period).and_then(|s| u64::try_from(s).ok()),
            cpu_quota: set(self.cpu_quota),
            cpuset_cpus: text(&self.cpuset_cpus),
            cpuset_mems: text(&self.cpuset_mems),
            memory: set(self.memory),
            memory_swap: set(self.memory_swap),
            memory_reservation: set(self.memory_reservation),
            pids_limit: set(self.pids_limit),
        }
    }
}

/// The body of `POST /containers/{id}/update`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct UpdateBody {
    #[serde(flatten)]
    resources: ResourceBody,
    restart_policy: Option<RestartPolicyBody>,
}

/// One of `HostConfig.Ulimits`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct UlimitBody {
    name: String,
    soft: i64,
    hard: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PortBinding {
    host_ip: Option<String>,
    host_port: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RestartPolicyBody {
    name: Option<String>,
    maximum_retry_count: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct LogConfig {
    #[serde(rename = "Type")]
    kind: Option<String>,
    config: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct MountBody {
    #[serde(rename = "Type")]
    kind: Option<String>,
    source: Option<String>,
    target: Option<String>,
    read_only: Option<bool>,
}

impl CreateBody {
    /// The container store's request, and the image named.
    fn into_request(self, api: &EngineApi) -> Result<(String, RunRequest), Fail> {
        let image = self
            .image
            .filter(|i| !i.is_empty())
            .ok_or_else(|| Fail::bad("config: no image given"))?;
        if let Some(h) = &self.healthcheck {
            h.validate().map_err(|e| Fail::bad(e.to_string()))?;
        }
        let hc = self.host_config.unwrap_or_default();
        let mac = self.mac_address.clone();
        let mut mounts = Vec::new();
        let mut volumes = Vec::new();
        for b in hc.binds.unwrap_or_default() {
            match crate::parse_volume_arg(&b)? {
                crate::MountArg::Extra(e) => mounts.push(e),
                crate::MountArg::Volume {
                    name,
                    target,
                    readonly,
                } => volumes.push((name, target, readonly)),
            }
        }
        for m in hc.mounts.unwrap_or_default() {
            let target = m
                .target
                .ok_or_else(|| Fail::bad("mount: no Target given"))?;
            let readonly = m.read_only.unwrap_or(false);
            match m.kind.as_deref().unwrap_or("volume") {
                "bind" => mounts.push(ExtraMount::Bind {
                    source: m
                        .source
                        .ok_or_else(|| Fail::bad("bind mount: no Source given"))?
                        .into(),
                    target,
                    readonly,
                }),
                // No source: an anonymous volume, which the engine names.
                "volume" => volumes.push((m.source.unwrap_or_default(), target, readonly)),
                "tmpfs" => mounts.push(ExtraMount::parse_tmpfs(&target)?),
                other => return Err(Fail::bad(format!("mount type {other:?} is not supported"))),
            }
        }
        // `Volumes` (`docker run -v /data`): anonymous volumes where nothing else mounts.
        for path in self.volumes.unwrap_or_default().into_keys() {
            let covered = volumes.iter().any(|v| v.1 == path)
                || mounts.iter().any(|m: &ExtraMount| m.target() == path);
            if !covered {
                volumes.push((String::new(), path, false));
            }
        }
        for (path, opts) in hc.tmpfs.unwrap_or_default() {
            let spec = match opts.is_empty() {
                true => path,
                false => format!("{path}:{opts}"),
            };
            mounts.push(ExtraMount::parse_tmpfs(&spec)?);
        }
        let mut publish = Vec::new();
        for (port, bindings) in hc.port_bindings.unwrap_or_default() {
            let port = port
                .contains('/')
                .then(|| port.clone())
                .unwrap_or(format!("{port}/tcp"));
            for b in bindings.unwrap_or_default() {
                let ip = b.host_ip.unwrap_or_default();
                let host = b.host_port.unwrap_or_default();
                let spec = match (ip.is_empty(), host.is_empty()) {
                    (true, true) => port.clone(),
                    (true, false) => format!("{host}:{port}"),
                    (false, _) => format!("{ip}:{host}:{port}"),
                };
                publish.extend(crate::parse_publish(&spec).map_err(EngineError::from)?);
            }
        }
        let mut opts = RunOptions {
            args: self.cmd.map(StringOrList::into_vec).unwrap_or_default(),
            entrypoint: self.entrypoint.map(StringOrList::into_vec),
            env: self.env.unwrap_or_default(),
            workdir: self.working_dir.filter(|w| !w.is_empty()),
            user: self.user.filter(|u| !u.is_empty()),
            hostname: self.hostname.filter(|h| !h.is_empty()),
            terminal: self.tty.unwrap_or(false),
            mounts,
            read_only: hc.readonly_rootfs.unwrap_or(false),
            // 0 is docker's "no limit".
            memory: hc.resources.memory.filter(|m| *m > 0),
            cpus: hc
                .resources
                .nano_cpus
                .filter(|n| *n > 0)
                .map(|n| n as f64 / 1e9),
            pids_limit: hc.resources.pids_limit.filter(|p| *p > 0),
            resources: hc.resources.flags(),
            oom_score_adj: hc.oom_score_adj.filter(|o| *o != 0),
            cap_add: hc.cap_add.unwrap_or_default(),
            cap_drop: hc.cap_drop.unwrap_or_default(),
            privileged: hc.privileged.unwrap_or(false),
            sysctls: hc.sysctls.unwrap_or_default(),
            ulimits: hc
                .ulimits
                .unwrap_or_default()
                .into_iter()
                .map(|u| format!("{}={}:{}", u.name, u.soft, u.hard))
                .collect(),
            // 0 is docker's "the default".
            shm_size: hc.shm_size.filter(|s| *s > 0).map(|s| s as u64),
            group_add: hc.group_add.unwrap_or_default(),
            extra_hosts: hc.extra_hosts.unwrap_or_default(),
            dns: hc.dns.unwrap_or_default(),
            dns_search: hc.dns_search.unwrap_or_default(),
            dns_options: hc.dns_options.unwrap_or_default(),
            healthcheck: self.healthcheck,
            ..RunOptions::default()
        };
        for o in hc.security_opt.unwrap_or_default() {
            opts.security_opt(&o)?;
        }
        let restart = restart_policy(hc.restart_policy)?.unwrap_or_default();
        let log_config = hc.log_config.unwrap_or_default();
        let log_driver = log_config.kind.unwrap_or_default();
        let log_opts: Vec<String> = log_config
            .config
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if let Some(s) = &self.stop_signal {
            crate::parse_signal(s)?;
        }
        let mut req = RunRequest {
            opts,
            rm: hc.auto_remove.unwrap_or(false),
            detach: true,
            interactive: self.open_stdin.unwrap_or(false),
            restart,
            log: crate::LogLimits::for_driver(&log_driver, &log_opts)?,
            labels: self.labels.unwrap_or_default(),
            stop_signal: self.stop_signal.filter(|s| !s.is_empty()),
            stop_timeout: self.stop_timeout.map(|t| t.clamp(-1, YEAR as i64)),
            volumes,
            init: hc.init.unwrap_or(false),
            publish,
            publish_all: hc.publish_all_ports.unwrap_or(false),
            links: hc
                .links
                .unwrap_or_default()
                .iter()
                .map(|l| crate::parse_link(l))
                .collect::<Result<_, _>>()?,
            ..RunRequest::default()
        };
        let endpoints = self
            .networking_config
            .and_then(|n| n.endpoints_config)
            .unwrap_or_default();
        // No NetworkMode but endpoints: the first endpoint's network, as docker takes it.
        let network = hc
            .network_mode
            .filter(|n| !n.is_empty() && n != "default")
            .or_else(|| endpoints.keys().find(|k| *k != "default").cloned());
        api.containers.set_network(&mut req, network.as_deref())?;
        req.opts.pid = api
            .containers
            .namespace_choice("pid", hc.pid_mode.as_deref().unwrap_or(""))?;
        req.opts.ipc = api
            .containers
            .namespace_choice("ipc", hc.ipc_mode.as_deref().unwrap_or(""))?;
        req.opts.uts_host = match hc.uts_mode.as_deref().unwrap_or("") {
            "" => false,
            "host" => true,
            other => {
                return Err(Fail::bad(format!(
                    "invalid UTS mode {other:?}: host or none"
                )))
            }
        };
        for from in hc.volumes_from.unwrap_or_default() {
            api.containers.add_volumes_from(&mut req, &from)?;
        }
        for d in hc.devices.unwrap_or_default() {
            let container = match d.path_in_container.is_empty() {
                true => &d.path_on_host,
                false => &d.path_in_container,
            };
            let access = match d.cgroup_permissions.is_empty() {
                true => "rwm",
                false => &d.cgroup_permissions,
            };
            let spec = format!("{}:{container}:{access}", d.path_on_host);
            req.opts
                .devices
                .push(spec.parse().map_err(EngineError::from)?);
        }
        if req.opts.network == crate::NetworkMode::Bridge {
            let nets = api.containers.networks();
            for (net, ep) in endpoints {
                // By name or id, as the network store resolves it; docker's CLI names the
                // network it left to the engine "default".
                let name = match (net.as_str(), req.networks.first()) {
                    ("default", Some(first)) => first.clone(),
                    _ => nets.get(&net).map_err(EngineError::from)?.name,
                };
                if !req.networks.contains(&name) {
                    req.networks.push(name.clone());
                }
                if let Some(a) = ep.as_ref().map(|e| e.address()).transpose()?.flatten() {
                    req.addresses.insert(name.clone(), a);
                }
                if let Some(a) = ep.as_ref().map(|e| e.address6()).transpose()?.flatten() {
                    req.addresses6.insert(name.clone(), a);
                }
                if let Some(m) = ep.as_ref().and_then(|e| e.mac_address.clone()) {
                    if !m.is_empty() {
                        req.macs.insert(name.clone(), m);
                    }
                }
                let aliases = ep.and_then(|e| e.aliases).unwrap_or_default();
                req.aliases.insert(name, aliases);
            }
            if let (Some(m), Some(first)) = (mac.filter(|m| !m.is_empty()), req.networks.first()) {
                req.macs.entry(first.clone()).or_insert(m);
            }
        }
        Ok((image, req))
    }
}

/// docker's `/containers/json` entry.
fn list_entry(v: &ContainerView, facts: &crate::engine::NetworkFacts) -> serde_json::Value {
    let c = &v.config;
    let state = match (v.paused, v.status.state) {
        (true, _) => "paused".to_string(),
        (false, s) => s.to_string(),
    };
    let mut status = v.status.status_text();
    if v.paused {
        status.push_str(" (Paused)");
    }
    let ports: Vec<serde_json::Value> = v
        .status
        .network
        .as_ref()
        .filter(|_| v.status.state == MonitorState::Running)
        .map(|n| {
            n.ports
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "IP": p.host_ip.to_string(),
                        "PrivatePort": p.container_port,
                        "PublicPort": p.host_port,
                        "Type": p.proto.to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let network_mode = c
        .network_mode
        .clone()
        .unwrap_or_else(|| match c.run.network {
            crate::NetworkMode::Host => "host".into(),
            crate::NetworkMode::None => "none".into(),
            crate::NetworkMode::Slirp => "slirp4netns".into(),
            _ => c
                .networks
                .first()
                .cloned()
                .unwrap_or_else(|| "bridge".into()),
        });
    // docker lists each network's whole endpoint, as inspect shows it (testcontainers reads
    // the gateway from the list).
    let networks = crate::engine::network_settings(c, &v.status, facts)["Networks"].take();
    serde_json::json!({
        "Id": c.id,
        "Names": [format!("/{}", c.name)],
        "Image": c.image,
        "ImageID": c.image_id,
        "Command": c.command.join(" "),
        "Created": c.created / 1_000_000_000,
        "Ports": ports,
        "Labels": c.labels,
        "State": state,
        "Status": status,
        "HostConfig": { "NetworkMode": network_mode },
        "NetworkSettings": { "Networks": networks },
        "Mounts": c.volumes.iter().map(|(name, target, ro)| serde_json::json!({
            "Type": "volume", "Name": name, "Driver": "local", "Destination": target, "RW": !ro,
        })).collect::<Vec<_>>(),
    })
}

impl EngineApi {
    pub(super) async fn list_containers(&self, req: &Request<Incoming>) -> Reply {
        let q = query(req);
        let filter = ContainerFilter::parse(flag(&q, "all"), &filters(&q)?)?;
        let limit = q
            .get("limit")
            .and_then(|l| l.parse::<i64>().ok())
            .filter(|l| *l > 0);
        let ids = self.containers.network_facts();
        let mut out: Vec<serde_json::Value> = self
            .containers
            .list_with_images(&self.images)
            .await?
            .iter()
            .filter(|v| filter.matches(v))
            .map(|v| list_entry(v, &ids))
            .collect();
        if let Some(l) = limit {
            out.truncate(l as usize);
        }
        Ok(json(StatusCode::OK, &out))
    }

    /// `POST /containers/prune`: every exited container that passes the `filters` (`until`,
    /// `label`, `label!`).
    pub(super) async fn prune_containers(self: &Arc<Self>, req: &Request<Incoming>) -> Reply {
        let filter = crate::PruneFilter::parse(&filters(&query(req))?)?;
        let api = self.clone();
        let gone = blocking(move || Ok(api.containers.prune_filtered(&filter)?)).await?;
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "ContainersDeleted": gone.deleted, "SpaceReclaimed": gone.space_reclaimed }),
        ))
    }

    /// `GET /system/df`'s containers and volumes (images come from the image store).
    /// `/system/df`'s containers and volumes, their sizes from `du`.
    pub(super) async fn df_parts(
        self: &Arc<Self>,
        du: Arc<crate::DiskUsage>,
    ) -> Result<(Vec<serde_json::Value>, Vec<serde_json::Value>), Fail> {
        let api = self.clone();
        blocking(move || {
            let views = api.containers.list()?;
            let ids = api.containers.network_facts();
            let containers = views
                .iter()
                .map(|v| {
                    let mut e = list_entry(v, &ids);
                    let rw = du.container_sizes.get(&v.config.id).copied();
                    e["SizeRw"] = rw.unwrap_or(0).into();
                    e["SizeRootFs"] = 0.into();
                    e
                })
                .collect();
            let vols = crate::engine::Volumes::open(api.containers.data_dir())?.list()?;
            let volumes = vols
                .into_iter()
                .map(|v| {
                    let refs = api.containers.volume_users(&v.name).len();
                    let mut doc = serde_json::to_value(&v).unwrap_or_default();
                    let size = du.volume_sizes.get(&v.name).copied().unwrap_or(0);
                    doc["UsageData"] = serde_json::json!({ "Size": size, "RefCount": refs });
                    doc
                })
                .collect();
            Ok((containers, volumes))
        })
        .await
    }

    pub(super) async fn create_container(self: &Arc<Self>, req: Request<Incoming>) -> Reply {
        let q = query(&req);
        let name = q
            .get("name")
            .map(|n| n.trim_start_matches('/').to_owned())
            .filter(|n| !n.is_empty());
        let platform = q
            .get("platform")
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<oci_rs_image::PlatformSpec>())
            .transpose()
            .map_err(|e| Fail::bad(super::chain(&e)))?;
        let body: CreateBody = read_json(req).await?;
        let (image, mut run) = body.into_request(self)?;
        run.name = name;
        super::on_own_thread(self, move |api| async move {
            api.create_from(&image, platform, run).await
        })
        .await
    }

    async fn create_from(
        &self,
        image: &str,
        platform: Option<oci_rs_image::PlatformSpec>,
        run: RunRequest,
    ) -> Reply {
        let found = self
            .images
            .image_for_run(image, platform.as_ref(), None, |_| {})
            .await
            .map_err(|e| match e {
                oci_rs_layer::Error::NoSuchImage(_) => {
                    Fail::not_found(format!("No such image: {}", familiar_tagged(image)))
                }
                e => Fail::from(e),
            })?;
        let img = RunImage::from_store(&self.images, found, image);
        let warnings = run.warnings();
        let (id, _monitor) = self.containers.create(&img, run).await?;
        Ok(json(
            StatusCode::CREATED,
            &serde_json::json!({ "Id": id, "Warnings": warnings }),
        ))
    }

    pub(super) fn inspect_container(&self, id: &str) -> Reply {
        let doc = self.containers.inspect(id)?;
        let mut doc = serde_json::to_value(&doc)
            .map_err(|e| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        // The log is kept in CRI's format; this API serves it as docker serves a json-file
        // log (`logs`, `attach` with `logs`), and clients check for a driver they know.
        if let Some(t) = doc
            .pointer_mut("/HostConfig/LogConfig/Type")
            .filter(|t| *t != "none")
        {
            *t = "json-file".into();
        }
        Ok(json(StatusCode::OK, &doc))
    }

    pub(super) async fn start_container(self: &Arc<Self>, id: &str) -> Reply {
        let api = self.clone();
        let what = id.to_owned();
        blocking(move || {
            let v = api.containers.view(&what)?;
            if v.status.state == MonitorState::Running {
                return Ok(empty(StatusCode::NOT_MODIFIED));
            }
            let attach_first = api
                .attaching
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&v.config.id);
            api.containers.start(&v.config.id, attach_first)?;
            Ok(empty(StatusCode::NO_CONTENT))
        })
        .await
    }

    pub(super) async fn stop_container(
        self: &Arc<Self>,
        id: &str,
        req: &Request<Incoming>,
    ) -> Reply {
        let q = query(req);
        let timeout = stop_timeout(&q)?;
        let api = self.clone();
        let what = id.to_owned();
        blocking(move || {
            let v = api.containers.view(&what)?;
            if !active(&v.status) {
                return Ok(empty(StatusCode::NOT_MODIFIED));
            }
            api.containers.stop_within(&v.config.id, timeout)?;
            Ok(empty(StatusCode::NO_CONTENT))
        })
        .await
    }

    pub(super) async fn restart_container(
        self: &Arc<Self>,
        id: &str,
        req: &Request<Incoming>,
    ) -> Reply {
        let q = query(req);
        let timeout = stop_timeout(&q)?;
        let api = self.clone();
        let what = id.to_owned();
        blocking(move || {
            api.containers.restart(&what, timeout)?;
            Ok(empty(StatusCode::NO_CONTENT))
        })
        .await
    }

    pub(super) async fn kill_container(
        self: &Arc<Self>,
        id: &str,
        req: &Request<Incoming>,
    ) -> Reply {
        let q = query(req);
        let signal = crate::parse_signal(
            q.get("signal")
                .filter(|s| !s.is_empty())
                .map_or("SIGKILL", String::as_str),
        )?;
        let api = self.clone();
        let what = id.to_owned();
        blocking(move || {
            let v = api.containers.view(&what)?;
            if !active(&v.status) {
                return Err(Fail::new(
                    StatusCode::CONFLICT,
                    format!(
                        "cannot kill container: {what}: container {} is not running",
                        v.config.id
                    ),
                ));
            }
            api.containers.kill(&v.config.id, signal)?;
            Ok(empty(StatusCode::NO_CONTENT))
        })
        .await
    }

    /// `wait?condition=not-running|next-exit|removed`: the headers at once (clients start
    /// the container only once they have them), the exit code when the condition is met.
    pub(super) async fn wait_container(
        self: &Arc<Self>,
        id: &str,
        req: &Request<Incoming>,
    ) -> Reply {
        let q = query(req);
        let condition = q
            .get("condition")
            .filter(|c| !c.is_empty())
            .map_or("not-running", String::as_str)
            .to_owned();
        if !matches!(condition.as_str(), "not-running" | "next-exit" | "removed") {
            return Err(Fail::bad(format!("invalid condition: {condition:?}")));
        }
        let before = self.containers.view(id)?;
        let full_id = before.config.id.clone();
        let (tx, body) = super::channel_body(1);
        let api = self.clone();
        tokio::spawn(async move {
            // The client's leaving (its body dropped) ends the wait.
            let code = tokio::select! {
                c = api.wait_for(&full_id, &condition, before) => c,
                _ = tx.closed() => return,
            };
            let reply = serde_json::json!({ "Error": null, "StatusCode": code });
            let mut line = serde_json::to_vec(&reply).unwrap_or_default();
            line.push(b'\n');
            let _ = tx.send(line.into()).await;
        });
        Ok(super::json_lines(body))
    }

    /// Polls the container's status until `condition` holds; its exit code then.
    async fn wait_for(&self, id: &str, condition: &str, before: ContainerView) -> i32 {
        let ran_before = (before.status.started_at, before.status.restart_count);
        let was_running = active(&before.status);
        let mut last = before.status;
        let mut delay = Duration::from_millis(5);
        loop {
            match self.containers.view(id) {
                Ok(v) => {
                    let s = v.status;
                    let exited = s.state == MonitorState::Exited;
                    let new_run = (s.started_at, s.restart_count) != ran_before;
                    let done = match condition {
                        "not-running" => !active(&s),
                        "next-exit" => exited && (was_running || new_run),
                        _ => false,
                    };
                    if done {
                        return s.exit_code.unwrap_or(0);
                    }
                    last = s;
                }
                Err(_) => {
                    let gone = self.containers.removed_status(id).unwrap_or(last);
                    return gone.exit_code.unwrap_or(0);
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }

    /// `GET /containers/{id}/stats`: one reading set against one a second earlier
    /// (`stream=false`), the reading alone (`one-shot`), or a reading each second, each
    /// with the one before as docker's `precpu_stats`.
    pub(super) async fn container_stats(
        self: &Arc<Self>,
        id: &str,
        req: &Request<Incoming>,
    ) -> Reply {
        let q = query(req);
        let stream = q
            .get("stream")
            .is_none_or(|v| !matches!(v.as_str(), "0" | "false" | "False"));
        let one_shot = flag(&q, "one-shot");
        let read =
            |api: Arc<EngineApi>, id: String| blocking(move || Ok(api.containers.stats(&id)?));
        let first = read(self.clone(), id.to_owned()).await?;
        let (tx, body) = super::channel_body(2);
        let api = self.clone();
        tokio::spawn(async move {
            let id = first.id.clone();
            let line = |cur: &crate::engine::ContainerStats,
                        pre: Option<&crate::engine::ContainerStats>| {
                let mut b = serde_json::to_vec(&stats_doc(cur, pre)).unwrap_or_default();
                b.push(b'\n');
                bytes::Bytes::from(b)
            };
            if !stream && one_shot {
                let _ = tx.send(line(&first, None)).await;
                return;
            }
            if stream && tx.send(line(&first, None)).await.is_err() {
                return;
            }
            let mut pre = first;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = tx.closed() => return,
                }
                let Ok(cur) = read(api.clone(), id.clone()).await else {
                    return;
                };
                if tx.send(line(&cur, Some(&pre))).await.is_err() || !stream {
                    return;
                }
                pre = cur;
            }
        });
        Ok(super::json_lines(body))
    }

    /// `GET /containers/{id}/top?ps_args=`: `ps -ef`'s table, or the host's `ps` with
    /// `ps_args` (split at spaces, as dockerd splits them).
    pub(super) async fn top_container(
        self: &Arc<Self>,
        id: &str,
        q: &std::collections::HashMap<String, String>,
    ) -> Reply {
        let api = self.clone();
        let what = id.to_owned();
        let args: Vec<String> = q
            .get("ps_args")
            .map(|a| a.split_ascii_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let table = blocking(move || Ok(api.containers.top_ps(&what, &args)?)).await?;
        Ok(json(StatusCode::OK, &table))
    }

    pub(super) async fn pause_container(self: &Arc<Self>, id: &str, pause: bool) -> Reply {
        let api = self.clone();
        let what = id.to_owned();
        blocking(move || {
            match pause {
                true => api.containers.pause(&what)?,
                false => api.containers.unpause(&what)?,
            }
            Ok(empty(StatusCode::NO_CONTENT))
        })
        .await
    }

    /// `POST /containers/{id}/update`: new resource limits of a running container, written
    /// to its cgroup (0 leaves a value as it is, as docker's clients send it).
    pub(super) async fn update_container(
        self: &Arc<Self>,
        id: &str,
        req: Request<Incoming>,
    ) -> Reply {
        let b: UpdateBody = read_json(req).await?;
        let flags = b.resources.flags();
        let any = flags != crate::ResourceFlags::default();
        let resources = crate::resources_of(&flags)?;
        let restart = restart_policy(b.restart_policy)?;
        let api = self.clone();
        let what = id.to_owned();
        blocking(move || {
            if any {
                api.containers.update(&what, &resources)?;
            }
            if let Some(policy) = restart {
                api.containers.set_restart(&what, policy)?;
            }
            Ok(json(StatusCode::OK, &serde_json::json!({ "Warnings": [] })))
        })
        .await
    }

    pub(super) async fn rename_container(
        self: &Arc<Self>,
        id: &str,
        req: &Request<Incoming>,
    ) -> Reply {
        let q = query(req);
        let new = q
            .get("name")
            .map(|n| n.trim_start_matches('/').to_owned())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Fail::bad("rename: no name given"))?;
        let api = self.clone();
        let what = id.to_owned();
        blocking(move || {
            api.containers.rename(&what, &new)?;
            Ok(empty(StatusCode::NO_CONTENT))
        })
        .await
    }

    pub(super) async fn remove_container(
        self: &Arc<Self>,
        id: &str,
        req: &Request<Incoming>,
    ) -> Reply {
        let q = query(req);
        let force = flag(&q, "force");
        let volumes = flag(&q, "v");
        let api = self.clone();
        let what = id.to_owned();
        blocking(move || {
            // A running or paused one is refused by the engine, in docker's words (409).
            let v = api.containers.view(&what)?;
            match volumes {
                true => api.containers.remove_with_volumes(&v.config.id, force)?,
                false => api.containers.remove(&v.config.id, force)?,
            }
            api.attaching
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&v.config.id);
            Ok(empty(StatusCode::NO_CONTENT))
        })
        .await
    }
}

/// docker's stats document of `cur`, with `pre` as its `precpu_stats`.
fn stats_doc(
    cur: &crate::engine::ContainerStats,
    pre: Option<&crate::engine::ContainerStats>,
) -> serde_json::Value {
    let cpu = |s: Option<&crate::engine::ContainerStats>| match s {
        Some(s) => serde_json::json!({
            "cpu_usage": { "total_usage": s.cgroup.cpu_ns.unwrap_or(0), "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
            "system_cpu_usage": s.system_cpu_ns.unwrap_or(0),
            "online_cpus": s.online_cpus,
            "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
        }),
        None => serde_json::json!({ "cpu_usage": { "total_usage": 0 }, "throttling_data": {} }),
    };
    let c = &cur.cgroup;
    let mut stats = serde_json::Map::new();
    if let Some(f) = c.inactive_file {
        stats.insert("inactive_file".into(), f.into());
    }
    let networks: serde_json::Map<String, serde_json::Value> = cur
        .networks
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
        .collect();
    serde_json::json!({
        "read": oci_rs_image::rfc3339(cur.read_at),
        "preread": pre.map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), |p| oci_rs_image::rfc3339(p.read_at)),
        "id": cur.id,
        "name": format!("/{}", cur.name),
        "pids_stats": { "current": c.pids.unwrap_or(0), "limit": c.pids_limit },
        "blkio_stats": { "io_service_bytes_recursive": [
            { "major": 0, "minor": 0, "op": "read", "value": c.io_read.unwrap_or(0) },
            { "major": 0, "minor": 0, "op": "write", "value": c.io_write.unwrap_or(0) },
        ] },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu(Some(cur)),
        "precpu_stats": cpu(pre),
        "memory_stats": {
            "usage": c.memory.unwrap_or(0),
            // docker shows the host's memory when there is no limit.
            "limit": c.memory_limit.unwrap_or_else(host_memory),
            "stats": stats,
        },
        "networks": networks,
    })
}

/// The host's memory, in bytes (`MemTotal`).
pub(super) use crate::engine::host_memory;

/// Running, restarting, or started and waiting for its attached client (a monitor that
/// holds a created container): what stop, kill and wait treat as running.
fn active(s: &crate::MonitorStatus) -> bool {
    match s.state {
        MonitorState::Running | MonitorState::Restarting => true,
        MonitorState::Created => s.monitor_alive,
        MonitorState::Exited => false,
    }
}

/// `t` (seconds; -1 waits forever) as a stop timeout; None when not given (the container's
/// own, docker's 10 s by default).
fn stop_timeout(q: &std::collections::HashMap<String, String>) -> Result<Option<Duration>, Fail> {
    Ok(Some(match q.get("t").filter(|t| !t.is_empty()) {
        None => return Ok(None),
        Some(t) => match t.parse::<i64>() {
            // "Forever" and huge values as a year: a deadline past that would overflow.
            Ok(n) if n < 0 => Duration::from_secs(YEAR),
            Ok(n) => Duration::from_secs((n as u64).min(YEAR)),
            Err(_) => return Err(Fail::bad(format!("invalid stop timeout {t:?}"))),
        },
    }))
}

const YEAR: u64 = 365 * 86_400;

/// `busybox` → `busybox:latest`, as docker names a missing image.
fn familiar_tagged(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if name.contains('@') || last.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

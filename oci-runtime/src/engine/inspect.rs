//! docker's container inspect document.

use super::{ContainerConfig, ContainerView};
use crate::{MonitorState, MonitorStatus, NetworkMode, RestartPolicy};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// docker's inspect document of container `v` (whose spec is `spec`), with its volumes under
/// `volumes_dir` and its log at `log_path`.
pub(super) fn inspect(
    v: &ContainerView,
    spec: Option<&oci_spec::runtime::Spec>,
    volumes_dir: &Path,
    log_path: PathBuf,
    facts: &NetworkFacts,
) -> ContainerInspect {
    let process = spec.and_then(|s| s.process().clone());
    let c = &v.config;
    let st = &v.status;
    let zero = "0001-01-01T00:00:00Z".to_owned();
    let time = |t: Option<u64>| t.map_or_else(|| zero.clone(), crate::rfc3339);
    let volume_of = |source: &Path| {
        c.volumes.iter().find(|(n, _, _)| {
            source.parent().and_then(|p| p.file_name()) == Some(std::ffi::OsStr::new(n))
                && source.starts_with(volumes_dir)
        })
    };
    let mounts = c
        .run
        .mounts
        .iter()
        .filter(|m| !["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"].contains(&m.target()))
        .map(|m| match m {
            crate::ExtraMount::Bind {
                source,
                target,
                readonly,
            } if volume_of(source).is_some() => serde_json::json!({"Type": "volume", "Name": volume_of(source).map(|v| v.0.clone()), "Source": source, "Destination": target, "Driver": "local", "RW": !readonly}),
            crate::ExtraMount::Bind {
                source,
                target,
                readonly,
            } => serde_json::json!({"Type": "bind", "Source": source, "Destination": target, "RW": !readonly}),
            crate::ExtraMount::Tmpfs { target, .. } => {
                serde_json::json!({"Type": "tmpfs", "Source": "", "Destination": target, "RW": true})
            }
        })
        .collect();
    let (path, args) = c
        .command
        .split_first()
        .map_or((String::new(), Vec::new()), |(p, a)| {
            (p.clone(), a.to_vec())
        });
    ContainerInspect {
        id: c.id.clone(),
        name: format!("/{}", c.name),
        created: crate::rfc3339(c.created),
        path,
        args,
        image: c.image_id.clone(),
        restart_count: st.restart_count,
        state: InspectState {
            status: if v.paused {
                "paused".into()
            } else {
                st.state.to_string()
            },
            running: st.state == MonitorState::Running,
            paused: v.paused,
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
            health: st.health.clone(),
        },
        config: serde_json::json!({
            "Hostname": c.run.hostname,
            "User": c.run.user.clone().unwrap_or_default(),
            "Env": c.env.clone().or_else(|| process.as_ref().and_then(|p| p.env().clone())).unwrap_or_default(),
            "Cmd": c.command,
            "Image": c.image,
            "WorkingDir": process.as_ref().map(|p| p.cwd().display().to_string()).unwrap_or_default(),
            "Labels": c.labels,
            "StopSignal": c.stop_signal,
            "StopTimeout": c.stop_timeout,
            "OpenStdin": c.interactive,
            "Tty": c.run.terminal,
            "Healthcheck": c.healthcheck,
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
            // docker's record of links: `/LINKED:/NAME/ALIAS`; null without any.
            "Links": (!c.links.is_empty()).then(|| c.links.iter().flat_map(|(target, aliases)| {
                aliases.iter().map(move |a| format!("/{target}:/{}/{a}", c.name))
            }).collect::<Vec<_>>()),
            "PortBindings": port_bindings(c.publish.iter().map(|p| (p.container_port, p.proto, p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED), p.host_port))),
            "Memory": c.run.memory.unwrap_or(0),
            "NanoCpus": c.run.cpus.map_or(0, |x| (x * 1e9) as i64),
            "PidsLimit": c.run.pids_limit,
            "CpuShares": c.run.resources.cpu_shares.unwrap_or(0),
            "CpuPeriod": c.run.resources.cpu_period.unwrap_or(0),
            "CpuQuota": c.run.resources.cpu_quota.unwrap_or(0),
            "CpusetCpus": c.run.resources.cpuset_cpus.clone().unwrap_or_default(),
            "CpusetMems": c.run.resources.cpuset_mems.clone().unwrap_or_default(),
            "MemoryReservation": c.run.resources.memory_reservation.unwrap_or(0),
            "MemorySwap": c.run.resources.memory_swap.unwrap_or(0),
            "OomScoreAdj": c.run.oom_score_adj.unwrap_or(0),
            "CapAdd": c.run.cap_add,
            "CapDrop": c.run.cap_drop,
            "Privileged": c.run.privileged,
            "ReadonlyRootfs": c.run.read_only,
            "PidMode": c.run.pid.docker_mode(false),
            "IpcMode": c.run.ipc.docker_mode(true),
            "UTSMode": if c.run.uts_host { "host" } else { "" },
            "Devices": c.run.devices.iter().map(|d| serde_json::json!({
                "PathOnHost": d.host, "PathInContainer": d.container, "CgroupPermissions": d.access,
            })).collect::<Vec<_>>(),
            "LogConfig": match &c.log.given {
                Some((driver, opts)) => serde_json::json!({"Type": driver, "Config": opts}),
                // A record from before the options were kept.
                None => serde_json::json!({"Type": if c.log.disabled { "none" } else { "json-file" }, "Config": {
                    "max-size": c.log.max_size.map(|s| s.to_string()),
                    "max-file": c.log.max_files.to_string(),
                }}),
            },
        }),
        mounts,
        network_settings: network_settings(c, st, facts),
        log_path,
    }
}

/// docker's container inspect document (the fields this tool has).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInspect {
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

impl super::ContainerView {
    /// [`ps_fields`](Self::ps_fields) as docker's `ps` shows them without `--no-trunc`
    /// (`truncate`): the command cut to 20 characters (the last one `…`) before it is
    /// quoted, and each mount's name to 15; with `--no-trunc`, the whole command and the
    /// whole id.
    pub fn ps_fields_truncated(&self, truncate: bool) -> serde_json::Value {
        let mut v = self.ps_fields();
        if truncate {
            let cut = |s: &str, n: usize| match s.chars().count() > n {
                true => format!("{}…", s.chars().take(n - 1).collect::<String>()),
                false => s.to_owned(),
            };
            let cmd = cut(&self.config.command.join(" "), 20);
            v["Command"] = format!("\"{cmd}\"").into();
            let mounts = self.mount_names();
            let mounts: Vec<String> = mounts.iter().map(|m| cut(m, 15)).collect();
            v["Mounts"] = mounts.join(",").into();
            // An image listed by id (its name gone): 12 digits, as docker's CLI cuts it.
            if let Some(hex) = self.config.image.strip_prefix("sha256:") {
                v["Image"] = hex.chars().take(12).collect::<String>().into();
            }
        } else {
            v["ID"] = self.config.id.clone().into();
        }
        v
    }

    /// The fields docker's `ps --format` knows, for this container: `ID` (12 digits),
    /// `Image`, `Command` (quoted), `CreatedAt`, `RunningFor`, `Ports`, `State`, `Status`,
    /// `Names`, `Labels` (`k=v,...`), `Mounts`, `Networks`, `LocalVolumes`, `Size`.
    pub fn ps_fields(&self) -> serde_json::Value {
        let c = &self.config;
        let st = &self.status;
        let state = match (self.paused, st.state) {
            (true, _) => "paused".to_owned(),
            (false, s) => s.to_string(),
        };
        let status = match self.paused {
            true => format!("{} (Paused)", st.status_text()),
            false => st.status_text(),
        };
        #[cfg(feature = "network")]
        let ports = st.network.as_ref().map_or(String::new(), |n| {
            n.ports
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        });
        #[cfg(not(feature = "network"))]
        let ports = String::new();
        let mounts = self.mount_names();
        serde_json::json!({
            "ID": &c.id[..12.min(c.id.len())],
            "Image": c.image,
            "Command": format!("\"{}\"", c.command.join(" ")),
            // docker's `2026-12-07 06:11:15 +0000 UTC`.
            "CreatedAt": docker_time(c.created),
            "RunningFor": crate::ago(c.created),
            "Ports": ports,
            "State": state,
            "Status": status,
            "Names": c.name,
            "Labels": labels_text(&c.labels),
            // For `{{.Label "KEY"}}` (see `crate::format`).
            "Label": c.labels,
            "Mounts": mounts.join(","),
            "Networks": c.networks.join(","),
            "LocalVolumes": c.volumes.len().to_string(),
            "Size": "",
        })
    }

    /// What `ps` shows as the container's mounts: volumes by name, binds by their host
    /// path; not the engine's own /etc files.
    fn mount_names(&self) -> Vec<String> {
        let c = &self.config;
        let is_volume = |source: &std::path::Path| {
            source.file_name() == Some(std::ffi::OsStr::new("_data"))
                && c.volumes.iter().any(|v| {
                    source.parent().and_then(|p| p.file_name()) == Some(std::ffi::OsStr::new(&v.0))
                })
        };
        c.volumes
            .iter()
            .map(|v| v.0.clone())
            .chain(c.run.mounts.iter().filter_map(|m| match m {
                crate::ExtraMount::Bind { source, .. }
                    if !is_volume(source) && !source.starts_with(self.monitor.dir()) =>
                {
                    Some(source.display().to_string())
                }
                _ => None,
            }))
            .collect()
    }
}

/// docker's State.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectState {
    /// created, running, paused, restarting, exited.
    pub status: String,
    /// Whether it runs.
    pub running: bool,
    /// Whether it runs frozen (`pause`).
    pub paused: bool,
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
    /// Its health, when it has a health check (docker leaves the field out otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::Health>,
}

/// docker's `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}`.
fn port_bindings(
    ports: impl Iterator<Item = (u16, crate::Proto, std::net::Ipv4Addr, u16)>,
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

/// What the network store knows that a container's `NetworkSettings` shows.
#[derive(Debug, Default)]
pub(crate) struct NetworkFacts {
    /// Each network's id by its name.
    pub ids: BTreeMap<String, String>,
    /// The live endpoints.
    pub endpoints: Vec<crate::Endpoint>,
}

/// docker's NetworkSettings: every network the container is configured on, with its aliases
/// (as docker shows a created container's), and the running container's addresses and ports.
/// `facts` gives each network's id by its name (docker-compose compares a container's
/// `NetworkID` with the network's `Id` to tell whether it must be recreated) and the network
/// store's endpoints (where those a running container got from `network connect` are).
pub(crate) fn network_settings(
    c: &ContainerConfig,
    st: &MonitorStatus,
    facts: &NetworkFacts,
) -> serde_json::Value {
    let running = st
        .network
        .as_ref()
        .filter(|_| st.state == MonitorState::Running);
    let mut endpoints: Vec<crate::Endpoint> =
        running.map(|n| n.endpoints.clone()).unwrap_or_default();
    if running.is_some() {
        let connected: Vec<crate::Endpoint> = facts
            .endpoints
            .iter()
            .filter(|e| e.container == c.id && !endpoints.iter().any(|x| x.network == e.network))
            .cloned()
            .collect();
        endpoints.extend(connected);
    }
    let network_ids = &facts.ids;
    let short = c.id.get(..12).unwrap_or(&c.id);
    let mut nets = serde_json::Map::new();
    for net in c
        .networks
        .iter()
        .chain(endpoints.iter().map(|e| &e.network))
    {
        if nets.contains_key(net) {
            continue;
        }
        let e = endpoints.iter().find(|e| &e.network == net);
        // docker lists the short id among a user network's aliases (docker-compose looks for
        // it to tell a container it set up).
        let mut aliases = c.aliases.get(net).cloned().unwrap_or_default();
        if net != crate::DEFAULT_NETWORK && !aliases.iter().any(|a| a == short) {
            aliases.push(short.to_owned());
        }
        nets.insert(
            net.clone(),
            serde_json::json!({
                "Aliases": (net != crate::DEFAULT_NETWORK).then_some(aliases),
                "IPAMConfig": ipam_config(c, net),
                "NetworkID": network_ids.get(net).unwrap_or(net),
                "IPAddress": e.map(|e| e.ip.to_string()).unwrap_or_default(),
                "IPPrefixLen": e.map_or(0, |e| e.prefix),
                "Gateway": e.map(|e| e.gateway.to_string()).unwrap_or_default(),
                "MacAddress": e.map(|e| e.mac.clone()).unwrap_or_default(),
                "EndpointID": e.map(|e| format!("{short}-{}", e.interface)).unwrap_or_default(),
                "GlobalIPv6Address": v6(e).map(|v| v.address.to_string()).unwrap_or_default(),
                "GlobalIPv6PrefixLen": v6(e).map_or(0, |v| v.prefix),
                "IPv6Gateway": v6(e).map(|v| v.gateway.to_string()).unwrap_or_default(),
            }),
        );
    }
    let first = endpoints.first();
    let ports = running.map(|n| n.ports.as_slice()).unwrap_or_default();
    serde_json::json!({
        "Ports": port_bindings(ports.iter().map(|p| (p.container_port, p.proto, p.host_ip, p.host_port))),
        "Networks": nets,
        "IPAddress": first.map(|e| e.ip.to_string()).unwrap_or_default(),
        "IPPrefixLen": first.map_or(0, |e| e.prefix),
        "Gateway": first.map(|e| e.gateway.to_string()).unwrap_or_default(),
        "MacAddress": first.map(|e| e.mac.clone()).unwrap_or_default(),
        "GlobalIPv6Address": v6(first).map(|v| v.address.to_string()).unwrap_or_default(),
        "GlobalIPv6PrefixLen": v6(first).map_or(0, |v| v.prefix),
        "IPv6Gateway": v6(first).map(|v| v.gateway.to_string()).unwrap_or_default(),
    })
}

/// The IPv6 address of an endpoint, when it has one.
fn v6(e: Option<&crate::Endpoint>) -> Option<crate::Ipv6Endpoint> {
    e.and_then(|e| e.ipv6)
}

/// docker's `IPAMConfig` of container `c` on network `net`: the addresses it asked for.
fn ipam_config(c: &super::ContainerConfig, net: &str) -> Option<serde_json::Value> {
    let (v4, v6) = (c.addresses.get(net), c.addresses6.get(net));
    if v4.is_none() && v6.is_none() {
        return None;
    }
    let mut m = serde_json::Map::new();
    if let Some(a) = v4 {
        m.insert("IPv4Address".into(), a.to_string().into());
    }
    if let Some(a) = v6 {
        m.insert("IPv6Address".into(), a.to_string().into());
    }
    Some(m.into())
}

use crate::docker_time;

/// `KEY=VALUE,...`: docker's `Labels` column.
pub(crate) fn labels_text(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl crate::NetworkConfig {
    /// docker's `network ls` fields of this network (`ID`, `Name`, `Driver`, `Scope`,
    /// `IPv6`, `Internal`, `Labels`, `CreatedAt`), for `--format` (see `crate::format`).
    pub fn ls_fields(&self) -> serde_json::Value {
        serde_json::json!({
            "ID": self.id.get(..12).unwrap_or(&self.id),
            "Name": self.name,
            "Driver": "bridge",
            "Scope": "local",
            "IPv6": self.ipv6.is_some().to_string(),
            "Internal": self.internal.to_string(),
            "Labels": labels_text(&self.labels),
            "Label": self.labels,
            "CreatedAt": docker_time(self.created.saturating_mul(1_000_000_000)),
        })
    }

    /// The `network ls` fields of built-in network `name` (`host` or `none`): fixed ids, the
    /// hex of their names.
    pub fn builtin_ls_fields(name: &str) -> serde_json::Value {
        let (id, driver) = match name {
            "host" => ("686f73740000", "host"),
            _ => ("6e6f6e650000", "null"),
        };
        serde_json::json!({
            "ID": id, "Name": name, "Driver": driver, "Scope": "local", "IPv6": "false",
            "Internal": "false", "Labels": "", "Label": {}, "CreatedAt": "",
        })
    }
}

impl super::VolumeInfo {
    /// docker's `volume ls` fields of this volume (`Name`, `Driver`, `Scope`,
    /// `Mountpoint`, `Labels`, and `Links` and `Size`, which docker's CLI shows as `N/A`
    /// outside `system df -v`), for `--format` (see `crate::format`).
    pub fn ls_fields(&self) -> serde_json::Value {
        serde_json::json!({
            "Name": self.name,
            "Driver": self.driver,
            "Scope": self.scope,
            "Mountpoint": self.mountpoint,
            "Labels": labels_text(&self.labels),
            "Label": self.labels,
            "Links": "N/A",
            "Size": "N/A",
        })
    }
}

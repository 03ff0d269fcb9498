//! docker's container inspect document.

use super::ContainerView;
use crate::{MonitorState, MonitorStatus, NetworkMode, RestartPolicy};
use std::path::{Path, PathBuf};

/// docker's inspect document of container `v` (whose spec is `spec`), with its volumes under
/// `volumes_dir` and its log at `log_path`.
pub(super) fn inspect(
    v: &ContainerView,
    spec: Option<&oci_spec::runtime::Spec>,
    volumes_dir: &Path,
    log_path: PathBuf,
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

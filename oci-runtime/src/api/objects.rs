//! `/volumes/...` and `/networks/...`: the volume store and the host's bridge networks in
//! docker's JSON.

use super::{blocking, empty, filters, json, query, read_json, EngineApi, Fail, Reply};
use crate::engine::{EngineError, Volumes};
use crate::NetError;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct VolumeBody {
    name: Option<String>,
    driver: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    driver_opts: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkBody {
    name: Option<String>,
    driver: Option<String>,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
    labels: Option<BTreeMap<String, String>>,
    internal: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Ipam {
    driver: Option<String>,
    config: Option<Vec<IpamConfig>>,
    options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfig {
    subnet: Option<String>,
    gateway: Option<String>,
    #[serde(rename = "IPRange")]
    ip_range: Option<String>,
    aux_address: Option<BTreeMap<String, String>>,
}

impl NetworkBody {
    /// What it asks, or why it cannot be served: what is not acted on is refused, not
    /// dropped (docker-compose compares a network's options with its file's).
    fn options(self) -> Result<crate::NetworkOptions, Fail> {
        if let Some(d) = self
            .driver
            .as_deref()
            .filter(|d| !d.is_empty() && *d != "bridge")
        {
            return Err(Fail::bad(format!(
                "network driver {d:?}: only bridge is served"
            )));
        }
        if let Some((k, _)) = self.options.as_ref().and_then(|o| o.iter().next()) {
            return Err(Fail::bad(format!(
                "network driver option {k:?} is not supported"
            )));
        }
        let ipam = self.ipam.unwrap_or_default();
        if let Some(d) = ipam
            .driver
            .as_deref()
            .filter(|d| !d.is_empty() && *d != "default")
        {
            return Err(Fail::bad(format!(
                "IPAM driver {d:?}: only default is served"
            )));
        }
        if ipam.options.as_ref().is_some_and(|o| !o.is_empty()) {
            return Err(Fail::bad("IPAM options are not supported"));
        }
        let mut opts = crate::NetworkOptions {
            labels: self.labels.unwrap_or_default(),
            internal: self.internal.unwrap_or(false),
            ipv6: self.enable_ipv6.unwrap_or(false),
            ..crate::NetworkOptions::default()
        };
        // A pool per address family: its subnet, and its gateway.
        let (mut subnets, mut gateways) = (Vec::new(), Vec::new());
        for c in ipam.config.unwrap_or_default() {
            if c.ip_range.as_deref().is_some_and(|r| !r.is_empty())
                || c.aux_address.as_ref().is_some_and(|a| !a.is_empty())
            {
                return Err(Fail::bad(
                    "IPRange and AuxiliaryAddresses are not supported",
                ));
            }
            subnets.extend(c.subnet.filter(|s| !s.is_empty()));
            gateways.extend(c.gateway.filter(|g| !g.is_empty()));
        }
        opts.set_pools(&subnets, &gateways).map_err(net_fail)?;
        Ok(opts)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectBody {
    container: Option<String>,
    endpoint_config: Option<super::EndpointConfig>,
}

/// docker's status codes for the network store's refusals.
fn net_fail(e: NetError) -> Fail {
    Fail::new(super::net_status(&e), super::chain(&e))
}

fn volume_fail(e: EngineError) -> Fail {
    match e {
        EngineError::NoSuchVolume(n) => Fail::not_found(format!("get {n}: no such volume")),
        EngineError::VolumeInUse { .. } => Fail::new(StatusCode::CONFLICT, super::chain(&e)),
        e => Fail::from(e),
    }
}

/// docker's `host` and `none`, which every engine lists.
fn builtin_network(name: &str) -> serde_json::Value {
    serde_json::json!({
        "Name": name,
        "Id": name,
        "Scope": "local",
        "Driver": if name == "host" { "host" } else { "null" },
        "EnableIPv6": false,
        "IPAM": { "Driver": "default", "Options": null, "Config": [] },
        "Internal": false,
        "Attachable": false,
        "Containers": {},
        "Options": {},
        "Labels": {},
    })
}

impl EngineApi {
    /// `GET /volumes` with docker's `filters` (compose lists its project's by label).
    pub(super) async fn list_volumes(self: &Arc<Self>, req: &Request<Incoming>) -> Reply {
        let filter = crate::VolumeFilter::parse(&filters(&query(req))?).map_err(volume_fail)?;
        let api = self.clone();
        let vols =
            blocking(move || api.containers.list_volumes(&filter).map_err(volume_fail)).await?;
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "Volumes": vols, "Warnings": [] }),
        ))
    }

    pub(super) async fn create_volume(self: &Arc<Self>, req: Request<Incoming>) -> Reply {
        let b: VolumeBody = read_json(req).await?;
        if let Some(d) = b
            .driver
            .as_deref()
            .filter(|d| !d.is_empty() && *d != "local")
        {
            return Err(Fail::bad(format!(
                "volume driver {d:?}: only local is served"
            )));
        }
        let name = match b.name.filter(|n| !n.is_empty()) {
            Some(n) => n,
            None => crate::engine::random_hex(32)?,
        };
        let api = self.clone();
        let info = blocking(move || {
            Volumes::open(api.containers.data_dir())
                .and_then(|v| {
                    v.create_with(
                        &name,
                        b.labels.unwrap_or_default(),
                        b.driver_opts.unwrap_or_default(),
                    )
                })
                .map_err(volume_fail)
        })
        .await?;
        Ok(json(StatusCode::CREATED, &info.0))
    }

    pub(super) async fn inspect_volume(self: &Arc<Self>, name: &str) -> Reply {
        let api = self.clone();
        let name = name.to_owned();
        let info = blocking(move || {
            Volumes::open(api.containers.data_dir())
                .and_then(|v| v.inspect(&name))
                .map_err(volume_fail)
        })
        .await?;
        Ok(json(StatusCode::OK, &info))
    }

    pub(super) async fn remove_volume(self: &Arc<Self>, name: &str) -> Reply {
        let api = self.clone();
        let name = name.to_owned();
        blocking(move || api.containers.remove_volume(&name).map_err(volume_fail)).await?;
        Ok(empty(StatusCode::NO_CONTENT))
    }

    /// `POST /volumes/prune`: the unused volumes that pass the `filters`; anonymous ones
    /// only unless `all=true`, as docker's since API 1.42.
    pub(super) async fn prune_volumes(self: &Arc<Self>, req: &Request<Incoming>) -> Reply {
        let filter = crate::VolumeFilter::parse(&filters(&query(req))?).map_err(volume_fail)?;
        let api = self.clone();
        let gone =
            blocking(move || api.containers.prune_volumes(&filter).map_err(volume_fail)).await?;
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "VolumesDeleted": gone.deleted, "SpaceReclaimed": gone.space_reclaimed }),
        ))
    }

    pub(super) async fn list_networks(self: &Arc<Self>, req: &Request<Incoming>) -> Reply {
        let filter = crate::NetworkFilter::parse(&filters(&query(req))?).map_err(net_fail)?;
        let api = self.clone();
        let builtins = filter.builtins();
        let (nets, eps) = blocking(move || {
            api.containers
                .networks()
                .list_filtered(&filter)
                .map_err(net_fail)
        })
        .await?;
        let mut out: Vec<serde_json::Value> = nets.iter().map(|n| n.document(&eps)).collect();
        out.extend(builtins.into_iter().map(builtin_network));
        Ok(json(StatusCode::OK, &out))
    }

    pub(super) async fn inspect_network(self: &Arc<Self>, name: &str) -> Reply {
        if matches!(name, "host" | "none") {
            return Ok(json(StatusCode::OK, &builtin_network(name)));
        }
        let api = self.clone();
        let name = name.to_owned();
        let doc = blocking(move || {
            let n = api.containers.networks();
            let cfg = n.get(&name).map_err(net_fail)?;
            Ok(cfg.document(&n.endpoints().map_err(net_fail)?))
        })
        .await?;
        Ok(json(StatusCode::OK, &doc))
    }

    pub(super) async fn create_network(self: &Arc<Self>, req: Request<Incoming>) -> Reply {
        let mut b: NetworkBody = read_json(req).await?;
        let name = b
            .name
            .take()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Fail::bad("network name is required"))?;
        let opts = b.options()?;
        let api = self.clone();
        let cfg = blocking(move || Ok(api.containers.create_network(&name, &opts)?)).await?;
        Ok(json(
            StatusCode::CREATED,
            &serde_json::json!({ "Id": cfg.id, "Warning": "" }),
        ))
    }

    pub(super) async fn remove_network(self: &Arc<Self>, name: &str) -> Reply {
        let api = self.clone();
        let name = name.to_owned();
        blocking(move || Ok(api.containers.remove_network(&name)?)).await?;
        Ok(empty(StatusCode::NO_CONTENT))
    }

    /// `connect` and `disconnect` of a container, by the network's name or id.
    pub(super) async fn connect_network(
        self: &Arc<Self>,
        name: &str,
        req: Request<Incoming>,
        connect: bool,
    ) -> Reply {
        let b: ConnectBody = read_json(req).await?;
        let container = b
            .container
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Fail::bad("no container given"))?;
        let mut addresses: Vec<std::net::IpAddr> = Vec::new();
        if let Some(e) = &b.endpoint_config {
            addresses.extend(e.address()?.map(std::net::IpAddr::V4));
            addresses.extend(e.address6()?.map(std::net::IpAddr::V6));
        }
        let api = self.clone();
        let name = name.to_owned();
        blocking(move || {
            let net = api.containers.networks().get(&name).map_err(net_fail)?.name;
            match connect {
                true => {
                    let aliases = b.endpoint_config.and_then(|e| e.aliases);
                    api.containers.connect_with(
                        &net,
                        &container,
                        &aliases.unwrap_or_default(),
                        &addresses,
                    )?
                }
                false => api.containers.disconnect(&net, &container)?,
            }
            Ok(())
        })
        .await?;
        Ok(empty(StatusCode::OK))
    }

    /// `POST /networks/prune`: every network but the default one with no container on it
    /// that the filters pass.
    pub(super) async fn prune_networks(self: &Arc<Self>, req: &Request<Incoming>) -> Reply {
        let filter = crate::NetworkFilter::parse(&filters(&query(req))?).map_err(net_fail)?;
        let api = self.clone();
        let gone = blocking(move || Ok(api.containers.prune_networks(&filter)?)).await?;
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "NetworksDeleted": gone }),
        ))
    }
}

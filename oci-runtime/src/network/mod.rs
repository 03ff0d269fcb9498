mod netlink;
mod nft;
mod proxy;

use crate::container::proc_start_time;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What a network operation failed with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A netlink request the kernel refused.
    #[error("netlink: cannot {what}")]
    Netlink {
        /// What was asked.
        what: String,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
    /// `nft` refused the rules.
    #[error("nftables: applying the oci table failed: {detail}")]
    Nft {
        /// What nft said.
        detail: String,
    },
    /// A file of the store.
    #[error("network store: cannot {op} {path}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A malformed record in the store.
    #[error("network store: {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A `-p` value or a subnet that does not parse.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// What kind of value.
        what: &'static str,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// No such network.
    #[error("network {0} not found")]
    NotFound(String),
    /// A network of that name exists.
    #[error("network with name {0} already exists")]
    Exists(String),
    /// The subnet overlaps another network's or a host route.
    #[error("subnet {subnet} overlaps {other}")]
    Overlap {
        /// The asked subnet.
        subnet: String,
        /// What it overlaps.
        other: String,
    },
    /// Containers use the network.
    #[error("network {name} is in use by {containers:?}")]
    InUse {
        /// The network.
        name: String,
        /// The containers attached to it.
        containers: Vec<String>,
    },
    /// The subnet has no free address.
    #[error("network {0} has no free address")]
    Exhausted(String),
    /// A host port that another container or program holds.
    #[error("cannot publish {addr}/{proto}: the port is already in use")]
    PortInUse {
        /// The host address and port.
        addr: SocketAddrV4,
        /// tcp or udp.
        proto: Proto,
        /// The bind error, when a program holds it.
        #[source]
        source: Option<std::io::Error>,
    },
    /// A socket for a published port.
    #[error("cannot open a socket for {addr}")]
    Socket {
        /// The host address and port.
        addr: SocketAddrV4,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A tool the set-up runs (`slirp4netns`).
    #[error("cannot run {tool}: {reason}")]
    Tool {
        /// The program.
        tool: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// Something this mode cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// The host's bridges and firewall table follow another network store, which has
    /// running containers: this one may not rewrite them (see [`Networks::host`]).
    #[error("network store {ours} cannot change the host's networks: they belong to the store {owner}, which has running containers (use Networks::host)")]
    OtherStore {
        /// This store's directory.
        ours: PathBuf,
        /// The store that has them.
        owner: PathBuf,
    },
}

type Result<T> = std::result::Result<T, NetError>;

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> NetError + 'a {
    move |source| NetError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One `-p` request: a container port and the host port (or range to pick from) for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host address to listen on (all when `None`).
    pub host_ip: Option<Ipv4Addr>,
    /// The first host port to try; 0 asks for a free one.
    pub host_port: u16,
    /// The last host port to try (equal to `host_port` for one port).
    pub host_port_end: u16,
    /// The container's port.
    pub container_port: u16,
    /// The protocol.
    pub proto: Proto,
}

/// A port as it was published: what `docker port` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    /// The host address (0.0.0.0 for all).
    pub host_ip: Ipv4Addr,
    /// The host port.
    pub host_port: u16,
    /// The container's port.
    pub container_port: u16,
    /// The protocol.
    pub proto: Proto,
    /// Published on IPv4 only: the host address was given, `0.0.0.0` included, as docker
    /// tells `-p 0.0.0.0:P:Q` from `-p P:Q` (which publishes on the host's IPv6 addresses
    /// too, for a network with IPv6).
    #[serde(default)]
    pub ipv4_only: bool,
}

impl std::fmt::Display for PublishedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}->{}/{}",
            self.host_ip, self.host_port, self.container_port, self.proto
        )
    }
}

fn parse_port(v: &str, what: &str, all: &str) -> Result<u16> {
    match v.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(NetError::Invalid {
            what: "port mapping",
            value: all.to_owned(),
            reason: format!("{what} {v:?} is not a port between 1 and 65535"),
        }),
    }
}

fn parse_range(v: &str, what: &str, all: &str) -> Result<(u16, u16)> {
    match v.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse_port(a, what, all)?, parse_port(b, what, all)?);
            if b < a {
                return Err(NetError::Invalid {
                    what: "port mapping",
                    value: all.to_owned(),
                    reason: format!("{what} range {v} ends before it starts"),
                });
            }
            Ok((a, b))
        }
        None => {
            let p = parse_port(v, what, all)?;
            Ok((p, p))
        }
    }
}

/// Parses docker's `-p` value: `[IP:][HOST[-END]:]CTR[-END][/tcp|/udp]`. A container range
/// gives one mapping per port (the host range must then be as long, or absent for random
/// ports); one container port with a host range takes the first free port of the range.
pub fn parse_publish(spec: &str) -> Result<Vec<PortMapping>> {
    let bad = |reason: &str| NetError::Invalid {
        what: "port mapping",
        value: spec.to_owned(),
        reason: reason.to_owned(),
    };
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, "tcp")) => (r, Proto::Tcp),
        Some((r, "udp")) => (r, Proto::Udp),
        Some((_, p)) => return Err(bad(&format!("unknown protocol {p:?} (tcp or udp)"))),
        None => (spec, Proto::Tcp),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, ctr) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [i, h, c] => (Some(*i), Some(*h), *c),
        _ => {
            return Err(bad(
                "too many colons (IPv6 host addresses are not supported)",
            ))
        }
    };
    let host_ip = match ip {
        None | Some("") => None,
        Some(i) => Some(
            i.parse::<Ipv4Addr>()
                .map_err(|_| bad(&format!("{i:?} is not an IPv4 address")))?,
        ),
    };
    let (c0, c1) = parse_range(ctr, "container port", spec)?;
    let host = match host {
        None | Some("") => None,
        Some(h) => Some(parse_range(h, "host port", spec)?),
    };
    let n = c1 - c0;
    let mut out = Vec::new();
    match host {
        None => {
            for c in c0..=c1 {
                out.push(PortMapping {
                    host_ip,
                    host_port: 0,
                    host_port_end: 0,
                    container_port: c,
                    proto,
                });
            }
        }
        Some((h0, h1)) if n == 0 => out.push(PortMapping {
            host_ip,
            host_port: h0,
            host_port_end: h1,
            container_port: c0,
            proto,
        }),
        Some((h0, h1)) if h1 - h0 == n => {
            for i in 0..=n {
                out.push(PortMapping {
                    host_ip,
                    host_port: h0 + i,
                    host_port_end: h0 + i,
                    container_port: c0 + i,
                    proto,
                });
            }
        }
        Some(_) => return Err(bad("the host and container ranges differ in length")),
    }
    Ok(out)
}

/// A MAC address as docker's `--mac-address` takes it: six hex octets split by `:` (or
/// `-`), unicast.
///
/// ```
/// use oci_rs_runtime::parse_mac;
/// assert_eq!(parse_mac("02:42:ac:11:00:09").unwrap(), [2, 0x42, 0xac, 0x11, 0, 9]);
/// assert!(parse_mac("01:00:5e:00:00:01").is_err(), "multicast");
/// assert!(parse_mac("02:42:ac:11:00").is_err());
/// ```
pub fn parse_mac(v: &str) -> Result<[u8; 6]> {
    let bad = |reason: &'static str| NetError::Invalid {
        what: "MAC address",
        value: v.to_owned(),
        reason: reason.into(),
    };
    let parts: Vec<&str> = v.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad("expected six hex octets like 02:42:ac:11:00:02"));
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(&parts) {
        if p.len() != 2 {
            return Err(bad("expected six hex octets like 02:42:ac:11:00:02"));
        }
        *m = u8::from_str_radix(p, 16).map_err(|_| bad("not hexadecimal"))?;
    }
    if mac[0] & 1 == 1 {
        return Err(bad("a multicast address"));
    }
    Ok(mac)
}

/// A subnet in CIDR notation, `10.89.3.0/24`; host bits must be zero.
pub fn parse_subnet(v: &str) -> Result<(Ipv4Addr, u8)> {
    let bad = |reason: &str| NetError::Invalid {
        what: "subnet",
        value: v.to_owned(),
        reason: reason.to_owned(),
    };
    let (a, p) = v.split_once('/').ok_or_else(|| bad("not ADDRESS/PREFIX"))?;
    let addr: Ipv4Addr = a.parse().map_err(|_| bad("not an IPv4 address"))?;
    let prefix: u8 = p.parse().map_err(|_| bad("bad prefix length"))?;
    match subnet_problem((addr, prefix)) {
        Some(why) => Err(bad(why)),
        None => Ok((addr, prefix)),
    }
}

/// Why `s` cannot be a network's subnet, if it cannot: a prefix length outside 8 to 30, host
/// bits set, or a reserved range.
fn subnet_problem(s: (Ipv4Addr, u8)) -> Option<&'static str> {
    if !(8..=30).contains(&s.1) {
        return Some("the prefix length must be between 8 and 30");
    }
    if u32::from(s.0) & !mask(s.1) != 0 {
        return Some("host bits are set");
    }
    reserved_range(s)
}

/// Why a subnet cannot be a network's: it overlaps the loopback, link-local, multicast or
/// reserved ranges, or `0.0.0.0/8` (a bridge there would answer for the host's own loopback
/// or for groups, and routes to it are refused or ignored by the kernel).
fn reserved_range(s: (Ipv4Addr, u8)) -> Option<&'static str> {
    [
        (
            (Ipv4Addr::new(0, 0, 0, 0), 8),
            "it overlaps 0.0.0.0/8 (this network)",
        ),
        (
            (Ipv4Addr::new(127, 0, 0, 0), 8),
            "it overlaps the loopback range 127.0.0.0/8",
        ),
        (
            (Ipv4Addr::new(169, 254, 0, 0), 16),
            "it overlaps the link-local range 169.254.0.0/16",
        ),
        (
            (Ipv4Addr::new(224, 0, 0, 0), 4),
            "it overlaps the multicast range 224.0.0.0/4",
        ),
        (
            (Ipv4Addr::new(240, 0, 0, 0), 4),
            "it overlaps the reserved range 240.0.0.0/4",
        ),
    ]
    .into_iter()
    .find(|(r, _)| overlaps(s, *r))
    .map(|(_, why)| why)
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// An IPv6 subnet in CIDR notation, `fd00:1::/64`; host bits must be zero.
pub fn parse_subnet6(v: &str) -> Result<(Ipv6Addr, u8)> {
    let bad = |reason: &str| NetError::Invalid {
        what: "IPv6 subnet",
        value: v.to_owned(),
        reason: reason.to_owned(),
    };
    let (a, p) = v.split_once('/').ok_or_else(|| bad("not ADDRESS/PREFIX"))?;
    let addr: Ipv6Addr = a.parse().map_err(|_| bad("not an IPv6 address"))?;
    let prefix: u8 = p.parse().map_err(|_| bad("bad prefix length"))?;
    match subnet6_problem((addr, prefix)) {
        Some(why) => Err(bad(why)),
        None => Ok((addr, prefix)),
    }
}

/// Why `s` cannot be a network's IPv6 subnet, if it cannot: a prefix length outside 16 to
/// 120, host bits set, or a range the kernel or every host gives another meaning
/// (unspecified and loopback, IPv4-mapped, link-local, multicast).
fn subnet6_problem(s: (Ipv6Addr, u8)) -> Option<&'static str> {
    if !(16..=120).contains(&s.1) {
        return Some("the prefix length must be between 16 and 120");
    }
    if u128::from(s.0) & !mask6(s.1) != 0 {
        return Some("host bits are set");
    }
    [
        (
            (Ipv6Addr::UNSPECIFIED, 96),
            "it overlaps ::/96 (unspecified, loopback, IPv4-compatible)",
        ),
        (
            (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96),
            "it overlaps the IPv4-mapped range ::ffff:0:0/96",
        ),
        (
            (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
            "it overlaps the link-local range fe80::/10",
        ),
        (
            (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
            "it overlaps the multicast range ff00::/8",
        ),
    ]
    .into_iter()
    .find(|(r, _)| overlaps6(s, *r))
    .map(|(_, why)| why)
}

fn mask6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

fn overlaps6(a: (Ipv6Addr, u8), b: (Ipv6Addr, u8)) -> bool {
    let m = mask6(a.1.min(b.1));
    u128::from(a.0) & m == u128::from(b.0) & m
}

/// A network's IPv6 subnet (`network create --ipv6`), beside its IPv4 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Subnet {
    /// The subnet's address.
    pub subnet: Ipv6Addr,
    /// Its prefix length.
    pub prefix: u8,
    /// The bridge's address, the containers' IPv6 default route.
    pub gateway: Ipv6Addr,
}

impl Ipv6Subnet {
    /// `fd89:1:2:3::/64`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.subnet, self.prefix)
    }

    /// Whether `a` is a host address of the subnet other than its gateway (not the subnet's
    /// own address: the subnet-router anycast address).
    fn is_host(&self, a: Ipv6Addr) -> bool {
        let (base, v) = (u128::from(self.subnet), u128::from(a));
        v & mask6(self.prefix) == base && v != base && a != self.gateway
    }
}

fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let m = mask(a.1.min(b.1));
    u32::from(a.0) & m == u32::from(b.0) & m
}

/// A network: a bridge with a subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Its name.
    pub name: String,
    /// A 64-hex id, as docker's.
    pub id: String,
    /// The bridge interface on the host.
    pub bridge: String,
    /// The subnet's address.
    pub subnet: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The bridge's address, the containers' default route.
    pub gateway: Ipv4Addr,
    /// When it was created (seconds since the epoch).
    pub created: u64,
    /// Its labels (`network create --label`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Cut off from outside (`network create --internal`): no masquerade, nothing forwarded
    /// between its bridge and any other interface, and no default route in its containers
    /// (unless another of their networks gives one).
    #[serde(default)]
    pub internal: bool,
    /// Its IPv6 subnet (docker's `EnableIPv6`): each container gets an address in it too,
    /// and the IPv6 default route through it. Once a container is attached to such a
    /// network the host routes IPv6 (`net.ipv6.conf.all.forwarding=1`, as docker sets it),
    /// so an interface that takes its IPv6 routes from router advertisements (`accept_ra`
    /// 1) stops taking them; networks without IPv6 route none (the `ip6 oci` table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Subnet>,
}

/// What `network create` may ask besides a name: docker's `--subnet`, `--gateway`,
/// `--label` and `--internal`.
///
/// ```
/// use oci_rs_runtime::NetworkOptions;
/// let o = NetworkOptions {
///     subnet: Some(oci_rs_runtime::parse_subnet("10.77.0.0/24").unwrap()),
///     gateway: Some("10.77.0.254".parse().unwrap()),
///     internal: true,
///     ..NetworkOptions::default()
/// };
/// # let _ = o;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkOptions {
    /// Its subnet; the next free /24 of 10.89.0.0/16 when none.
    pub subnet: Option<(Ipv4Addr, u8)>,
    /// The bridge's address, the containers' gateway: inside the subnet (the first host
    /// address when none).
    pub gateway: Option<Ipv4Addr>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// See [`NetworkConfig::internal`].
    pub internal: bool,
    /// An IPv6 subnet too (docker's `--ipv6`): `subnet6`, else a unique local /64
    /// (`fdXX:XXXX:XXXX::/64`, random, as docker 27 makes one).
    pub ipv6: bool,
    /// The IPv6 subnet, with `ipv6`.
    pub subnet6: Option<(Ipv6Addr, u8)>,
    /// The bridge's IPv6 address: inside `subnet6` (its first host address when none).
    pub gateway6: Option<Ipv6Addr>,
}

impl NetworkOptions {
    /// docker's `--subnet` and `--gateway` flags (each may be given for IPv4 and for
    /// IPv6), or its IPAM pools: every subnet and gateway goes to its family's field, a
    /// gateway needing a subnet of its family, and at most one of each per family. An IPv6
    /// subnet still needs [`NetworkOptions::ipv6`].
    ///
    /// ```
    /// let mut o = oci_rs_runtime::NetworkOptions { ipv6: true, ..Default::default() };
    /// o.set_pools(&["10.77.0.0/24".into(), "fd77::/64".into()], &["fd77::1".into()]).unwrap();
    /// assert_eq!(o.gateway6, Some("fd77::1".parse().unwrap()));
    /// // A gateway without a subnet of its family.
    /// let mut bare = oci_rs_runtime::NetworkOptions::default();
    /// assert!(bare.set_pools(&[], &["10.1.1.1".into()]).is_err());
    /// ```
    pub fn set_pools(&mut self, subnets: &[String], gateways: &[String]) -> Result<()> {
        let twice = |what: &'static str, value: &str| NetError::Invalid {
            what,
            value: value.to_owned(),
            reason: "one subnet (and gateway) per address family".into(),
        };
        for sn in subnets {
            if sn.contains(':') {
                if self.subnet6.is_some() {
                    return Err(twice("IPv6 subnet", sn));
                }
                self.subnet6 = Some(parse_subnet6(sn)?);
            } else {
                if self.subnet.is_some() {
                    return Err(twice("subnet", sn));
                }
                self.subnet = Some(parse_subnet(sn)?);
            }
        }
        for g in gateways {
            let bad = |reason: &str| NetError::Invalid {
                what: "gateway",
                value: g.clone(),
                reason: reason.to_owned(),
            };
            match g.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(a)) if self.subnet.is_some() && self.gateway.is_none() => {
                    self.gateway = Some(a);
                }
                Ok(std::net::IpAddr::V6(a))
                    if self.subnet6.is_some() && self.gateway6.is_none() =>
                {
                    self.gateway6 = Some(a);
                }
                Ok(_) => return Err(bad("a gateway needs one subnet of its address family")),
                Err(_) => return Err(bad("not an IP address")),
            }
        }
        Ok(())
    }
}

impl NetworkConfig {
    /// docker's `network inspect` document of this network, with those of `endpoints` on it
    /// as its containers (keyed by container id).
    pub fn document(&self, endpoints: &[Endpoint]) -> serde_json::Value {
        let containers: serde_json::Map<String, serde_json::Value> = endpoints
            .iter()
            .filter(|e| e.network == self.name)
            .map(|e| {
                let doc = serde_json::json!({
                    "Name": e.name,
                    "EndpointID": e.veth,
                    "MacAddress": e.mac,
                    "IPv4Address": format!("{}/{}", e.ip, e.prefix),
                    "IPv6Address": e.ipv6.map(|v| format!("{}/{}", v.address, v.prefix)).unwrap_or_default(),
                });
                (e.container.clone(), doc)
            })
            .collect();
        let mut ipam =
            vec![serde_json::json!({"Subnet": self.cidr(), "Gateway": self.gateway.to_string()})];
        if let Some(v6) = self.ipv6 {
            ipam.push(serde_json::json!({"Subnet": v6.cidr(), "Gateway": v6.gateway.to_string()}));
        }
        // As docker's: the default network names its bridge; a user network has no options
        // unless given some (docker-compose compares them with its file's).
        let options = match self.name == DEFAULT_NETWORK {
            true => serde_json::json!({"com.docker.network.bridge.name": self.bridge}),
            false => serde_json::json!({}),
        };
        serde_json::json!({
            "Name": self.name,
            "Id": self.id,
            "Created": crate::rfc3339(self.created.saturating_mul(1_000_000_000)),
            "Scope": "local",
            "Driver": "bridge",
            "EnableIPv6": self.ipv6.is_some(),
            "IPAM": {"Driver": "default", "Options": {}, "Config": ipam},
            "Internal": self.internal,
            "Attachable": false,
            "Ingress": false,
            "ConfigOnly": false,
            "Containers": containers,
            "Options": options,
            "Labels": self.labels,
        })
    }

    /// `10.89.0.0/24`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.subnet, self.prefix)
    }
}

/// The default network's name, as docker's.
pub const DEFAULT_NETWORK: &str = "bridge";

/// docker's network filters (`network ls --filter`, `network prune --filter`): `name=PART`,
/// `id=PREFIX`, `label=KEY[=VALUE]`, `label!=KEY[=VALUE]`, `driver=bridge`,
/// `type=custom|builtin`, `scope=local`, `dangling=true|false` (no container on it) and
/// `until=TIME` (created before: RFC 3339, Unix seconds or a duration ago).
///
/// ```
/// use oci_rs_runtime::NetworkFilter;
/// let f = NetworkFilter::parse(&["label=team=a".into(), "label!=keep".into()]).unwrap();
/// assert!(NetworkFilter::parse(&["colour=red".into()]).is_err());
/// # let _ = f;
/// ```
#[derive(Debug, Clone, Default)]
pub struct NetworkFilter {
    terms: Vec<(String, String)>,
}

impl NetworkFilter {
    /// The filter of `KEY=VALUE` terms (several values of one key: any of them).
    pub fn parse(terms: &[String]) -> Result<Self> {
        let mut out = Vec::new();
        for t in terms {
            let bad = |reason: &str| NetError::Invalid {
                what: "network filter",
                value: t.clone(),
                reason: reason.into(),
            };
            let (k, v) = t.split_once('=').ok_or_else(|| bad("expected KEY=VALUE"))?;
            let (k, v) = match k.strip_suffix('!') {
                Some("label") => ("label!", v),
                _ => (k, v),
            };
            match k {
                "name" | "id" | "label" | "label!" | "driver" | "scope" => {}
                "type" if ["custom", "builtin"].contains(&v) => {}
                "dangling" if ["true", "false", "1", "0"].contains(&v) => {}
                "until" => {
                    crate::parse_log_time(v).map_err(|_| bad("until: a time or a duration"))?;
                }
                _ => {
                    return Err(bad(
                        "keys: name, id, label, label!, driver, type, scope, dangling, until",
                    ))
                }
            }
            out.push((k.to_owned(), v.to_owned()));
        }
        Ok(Self { terms: out })
    }

    /// Whether network `n` (with `in_use`: a container on it) passes: every key given
    /// matches one of its values (`label!` must match none).
    /// The default `bridge` is built in, as docker's.
    pub fn matches(&self, n: &NetworkConfig, in_use: bool) -> bool {
        let kind = match n.name == DEFAULT_NETWORK {
            true => "builtin",
            false => "custom",
        };
        let net = (n.name.as_str(), n.id.as_str(), "bridge", kind);
        self.passes(net, &n.labels, n.created, in_use)
    }

    /// The built-in networks (`host`, `none`) that pass.
    pub fn builtins(&self) -> Vec<&'static str> {
        ["host", "none"]
            .into_iter()
            .filter(|b| self.matches_builtin(b))
            .collect()
    }

    /// Whether the built-in network `name` (`host`, `none`) passes.
    pub fn matches_builtin(&self, name: &str) -> bool {
        let id = name.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        let driver = if name == "none" { "null" } else { name };
        self.passes((name, &id, driver, "builtin"), &BTreeMap::new(), 0, true)
    }

    /// `net` is (name, id, driver, type).
    fn passes(
        &self,
        net: (&str, &str, &str, &str),
        labels: &BTreeMap<String, String>,
        created: u64,
        in_use: bool,
    ) -> bool {
        let (name, id, driver, kind) = net;
        let label = |v: &str| match v.split_once('=') {
            Some((k, want)) => labels.get(k).is_some_and(|x| x == want),
            None => labels.contains_key(v),
        };
        let keys: BTreeSet<&str> = self.terms.iter().map(|(k, _)| k.as_str()).collect();
        keys.into_iter().all(|key| {
            let mut vals = self.terms.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
            match key {
                "label!" => !vals.any(|v| label(v)),
                // Every label asked for, as docker's.
                "label" => vals.all(|v| label(v)),
                "name" => vals.any(|v| name.contains(v.as_str())),
                "id" => vals.any(|v| id.starts_with(v.as_str())),
                "driver" => vals.any(|v| v == driver),
                "scope" => vals.any(|v| v == "local"),
                "type" => vals.any(|v| v == kind),
                "dangling" => vals.any(|v| (v == "true" || v == "1") != in_use),
                "until" => vals.any(|v| {
                    crate::parse_log_time(v)
                        .is_ok_and(|t| created.saturating_mul(1_000_000_000) < t)
                }),
                _ => false,
            }
        })
    }
}

/// One container's address on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The container's id.
    pub container: String,
    /// The container's name.
    pub name: String,
    /// The container's hostname.
    pub hostname: String,
    /// The network's name.
    pub network: String,
    /// The interface in the container.
    pub interface: String,
    /// The host end of the veth pair.
    pub veth: String,
    /// The address.
    pub ip: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
    /// The gateway.
    pub gateway: Ipv4Addr,
    /// Its IPv6 address, on a network with IPv6 ([`NetworkConfig::ipv6`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Endpoint>,
    /// The MAC address.
    pub mac: String,
    /// Ports published to this address.
    pub ports: Vec<PublishedPort>,
    /// The container init's pid and start time: the endpoint is released once it is gone.
    pub pid: i32,
    /// `/proc/PID/stat` start time of `pid`.
    pub start_time: u64,
    /// The file bind-mounted at the container's `/etc/hosts`, kept up to date with the
    /// names of the network's containers.
    pub hosts_file: Option<PathBuf>,
    /// Other names the container answers to on this network (docker's network aliases:
    /// docker-compose's service names), in the other containers' `/etc/hosts` too.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// docker's links of this container: each linked container's name, and the other
    /// names it has in this container's `/etc/hosts` only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub links: BTreeMap<String, Vec<String>>,
    /// The proxy of its published ports on the host's IPv6 addresses (its pid and `/proc`
    /// start time), which a disconnect stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<(i32, u64)>,
}

/// A container's IPv6 address on a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Endpoint {
    /// The address.
    pub address: Ipv6Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The gateway (the bridge's address).
    pub gateway: Ipv6Addr,
}

impl Endpoint {
    fn alive(&self) -> bool {
        // A zombie is gone too: a killed monitor leaves its init unreaped.
        self.pid > 0
            && proc_start_time(self.pid)
                .is_some_and(|(t, state)| t == self.start_time && !matches!(state, 'Z' | 'X'))
    }
}

/// What a container asks of the networks when it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRequest {
    /// The container's id.
    pub container: String,
    /// Its name (in the others' `/etc/hosts` when it is a valid host name).
    pub name: String,
    /// Its hostname.
    pub hostname: String,
    /// The networks, in order: the first gets `eth0` and the default route.
    pub networks: Vec<String>,
    /// The ports to publish (on the first network's address).
    pub ports: Vec<PortMapping>,
    /// The container's `/etc/hosts` source file, to keep up to date.
    pub hosts_file: Option<PathBuf>,
    /// Network aliases, by network name (see [`Endpoint::aliases`]).
    #[serde(default)]
    pub aliases: BTreeMap<String, Vec<String>>,
    /// Addresses asked for, by network name (docker's `--ip`, `IPAMConfig.IPv4Address`):
    /// taken as they are when free and inside the subnet, refused otherwise; the other
    /// networks give the next free one.
    #[serde(default)]
    pub addresses: BTreeMap<String, Ipv4Addr>,
    /// IPv6 addresses asked for, by network name (docker's `--ip6`,
    /// `IPAMConfig.IPv6Address`): on networks with IPv6 only, as [`Self::addresses`].
    #[serde(default)]
    pub addresses6: BTreeMap<String, Ipv6Addr>,
    /// MAC addresses asked for, by network name (docker's `--mac-address`); the others are
    /// derived from the IP address, as docker's.
    #[serde(default)]
    pub macs: BTreeMap<String, String>,
    /// docker's links (see [`Endpoint::links`]).
    #[serde(default)]
    pub links: BTreeMap<String, Vec<String>>,
}

/// How a container's network is set up at each start (kept in the monitor's config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
// One per container, kept in its monitor's config: its size does not matter, and a box would
// only make every construction wordier.
#[allow(clippy::large_enum_variant)]
pub enum NetworkPlan {
    /// Root: veths on bridges of the store at `store`.
    Bridge {
        /// The [`Networks`] directory.
        store: PathBuf,
        /// What to attach.
        request: NetworkRequest,
    },
    /// Rootless: slirp4netns for egress and the userland proxy for `ports`.
    Slirp {
        /// The ports to publish.
        ports: Vec<PortMapping>,
    },
}

/// What a started container's network looks like: kept in its status for `inspect`,
/// `port` and `ps`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachment {
    /// Its addresses (none with slirp4netns, whose address is always 10.0.2.100).
    pub endpoints: Vec<Endpoint>,
    /// Its published ports.
    pub ports: Vec<PublishedPort>,
}

/// A set-up network, held while the container runs: the port reservations and helper
/// processes. Dropping it does not undo anything; [`AttachedNetwork::detach`] does.
#[derive(Debug)]
pub struct AttachedNetwork {
    /// What was set up.
    pub attachment: NetworkAttachment,
    plan: NetworkPlan,
    _reservations: Vec<OwnedFd>,
    helpers: Vec<OwnedFd>,
}

impl AttachedNetwork {
    /// Undoes the set-up: stops the helpers, releases the addresses and rewrites the
    /// rules. Errors are logged: a container's end must not fail on them, and whatever is
    /// left is reconciled at the next change.
    pub fn detach(self) {
        for pidfd in &self.helpers {
            let _ = rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL);
            // Reaped here (when it is our child and not reaped yet), so no zombie outlives
            // the monitor.
            let _ = rustix::process::waitid(
                rustix::process::WaitId::PidFd(pidfd.as_fd()),
                rustix::process::WaitIdOptions::EXITED,
            );
        }
        if let NetworkPlan::Bridge { store, request } = &self.plan {
            if let Err(e) = Networks::open(store).detach(&request.container) {
                tracing::warn!(container = %request.container, error = %e, "network detach");
            }
        }
    }
}

/// Sets up the network of the created container whose init is `pid`, as `plan` says.
pub fn attach_network(plan: &NetworkPlan, pid: i32) -> Result<AttachedNetwork> {
    match plan {
        NetworkPlan::Bridge { store, request } => {
            let (endpoints, reservations) = Networks::open(store).attach(request, pid)?;
            let ports = endpoints
                .first()
                .map(|e| e.ports.clone())
                .unwrap_or_default();
            let mut helpers = Vec::new();
            let networks = Networks::open(store);
            // Docker publishes nothing of an internal network's (the proxy, connecting from
            // the host, would pass by its isolation rules).
            let internal = |ep: &Endpoint| networks.get(&ep.network).map_or(true, |n| n.internal);
            if let Some(ep) = endpoints.first().filter(|ep| !internal(ep)) {
                let six = ipv6_listeners(ep);
                if !six.is_empty() {
                    match proxy::spawn(proxy::Target::Address(ep.ip), six) {
                        Ok((p, pid)) => {
                            helpers.push(p);
                            if let Err(e) = networks.set_proxy(&ep.network, &ep.container, pid) {
                                tracing::warn!(error = %e, "recording the IPv6 port proxy");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "the IPv6 port proxy did not start"),
                    }
                }
            }
            Ok(AttachedNetwork {
                attachment: NetworkAttachment { endpoints, ports },
                plan: plan.clone(),
                _reservations: reservations,
                helpers,
            })
        }
        NetworkPlan::Slirp { ports } => {
            if ports.iter().any(|p| p.proto == Proto::Udp) {
                return Err(NetError::Unsupported(
                    "rootless containers publish TCP ports only".into(),
                ));
            }
            let (published, listeners) = reserve_ports(ports, &[], true)?;
            let (slirp, exit) = proxy::slirp4netns(pid)?;
            let mut helpers = vec![slirp];
            if !listeners.is_empty() {
                match proxy::spawn(proxy::Target::Inside(pid), listeners) {
                    Ok((p, _)) => helpers.push(p),
                    Err(e) => {
                        let _ = rustix::process::pidfd_send_signal(
                            &helpers[0],
                            rustix::process::Signal::KILL,
                        );
                        return Err(e);
                    }
                }
            }
            Ok(AttachedNetwork {
                attachment: NetworkAttachment {
                    endpoints: Vec::new(),
                    ports: published,
                },
                plan: plan.clone(),
                _reservations: vec![exit],
                helpers,
            })
        }
    }
}

/// A bound host port and what it was bound for.
type Reserved = (OwnedFd, PublishedPort);

/// docker-proxy's IPv6 side: a container without an IPv6 address has each TCP port
/// published on every address (not given as `0.0.0.0`) listened on at `[::]` too (IPv6
/// only), for the proxy to connect to its IPv4 address, when the host has IPv6. A port that
/// another program holds there is left to it, and said so.
fn ipv6_listeners(ep: &Endpoint) -> Vec<Reserved> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let mut out = Vec::new();
    if ep.ipv6.is_some() {
        // Its own IPv6 address: the ip6 rules publish the ports.
        return out;
    }
    for p in &ep.ports {
        if p.proto != Proto::Tcp || !p.host_ip.is_unspecified() || p.ipv4_only {
            continue;
        }
        let fd = match rustix::net::socket_with(
            AddressFamily::INET6,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        ) {
            Ok(fd) => fd,
            Err(e) => {
                tracing::debug!(error = %e, "no IPv6 on the host: ports are published on IPv4");
                return out;
            }
        };
        let _ = rustix::net::sockopt::set_ipv6_v6only(&fd, true);
        // The proxy accepts on it, so a restart finds its last connections in TIME_WAIT:
        // bound again regardless, as docker-proxy's listener is (it listens at once).
        let _ = rustix::net::sockopt::set_socket_reuseaddr(&fd, true);
        let at = std::net::SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, p.host_port, 0, 0);
        // Listening at once: a port that cannot be is left alone, the others stay.
        match rustix::net::bind(&fd, &at).and_then(|()| rustix::net::listen(&fd, 1024)) {
            Ok(()) => out.push((fd, p.clone())),
            Err(e) => {
                tracing::warn!(port = p.host_port, error = %e, "not published on the host's IPv6 addresses")
            }
        }
    }
    out
}

/// Binds each requested host port (a free one for port 0, the first free one of a range),
/// refusing those in `taken`. TCP sockets are left bound but not listening, which holds the
/// port against other programs. With `for_proxy` they listen at once, for the proxy: they
/// take the port even while its last connections linger in TIME_WAIT (a restart), as a
/// listener does (without listening, two such sockets could share a port).
fn reserve_ports(
    ports: &[PortMapping],
    taken: &[PublishedPort],
    for_proxy: bool,
) -> Result<(Vec<PublishedPort>, Vec<Reserved>)> {
    use rustix::net::{AddressFamily, SocketType};
    let mut out: Vec<PublishedPort> = Vec::new();
    let mut fds = Vec::new();
    for m in ports {
        let ip = m.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let clash = |port: u16, list: &[PublishedPort]| {
            list.iter().any(|t| {
                t.proto == m.proto
                    && t.host_port == port
                    && (t.host_ip.is_unspecified() || ip.is_unspecified() || t.host_ip == ip)
            })
        };
        let mut last_err = None;
        let mut got = None;
        let candidates: Vec<u16> = if m.host_port == 0 {
            vec![0]
        } else {
            (m.host_port..=m.host_port_end.max(m.host_port)).collect()
        };
        for port in candidates {
            if port != 0 && (clash(port, taken) || clash(port, &out)) {
                last_err = None;
                continue;
            }
            let ty = match m.proto {
                Proto::Tcp => SocketType::STREAM,
                Proto::Udp => SocketType::DGRAM,
            };
            let fd = rustix::net::socket_with(
                AddressFamily::INET,
                ty,
                rustix::net::SocketFlags::CLOEXEC,
                None,
            )
            .map_err(|e| NetError::Socket {
                addr: SocketAddrV4::new(ip, port),
                source: e.into(),
            })?;
            let listen = for_proxy && m.proto == Proto::Tcp;
            if listen {
                let _ = rustix::net::sockopt::set_socket_reuseaddr(&fd, true);
            }
            // The proxy's sockets listen at once: two bound sockets that both reuse an
            // address could share a port, two listening ones cannot.
            let bound = rustix::net::bind(&fd, &SocketAddrV4::new(ip, port)).and_then(|()| {
                if listen {
                    rustix::net::listen(&fd, 1024)
                } else {
                    Ok(())
                }
            });
            match bound {
                Ok(()) => {
                    let bound = match rustix::net::getsockname(&fd) {
                        Ok(a) => SocketAddrV4::try_from(a).map(|a| a.port()).unwrap_or(port),
                        Err(_) => port,
                    };
                    got = Some((fd, bound));
                    break;
                }
                Err(e) => last_err = Some(std::io::Error::from(e)),
            }
        }
        let Some((fd, host_port)) = got else {
            return Err(NetError::PortInUse {
                addr: SocketAddrV4::new(ip, m.host_port),
                proto: m.proto,
                source: last_err,
            });
        };
        let p = PublishedPort {
            host_ip: ip,
            host_port,
            container_port: m.container_port,
            proto: m.proto,
            ipv4_only: m.host_ip.is_some(),
        };
        out.push(p.clone());
        fds.push((fd, p));
    }
    Ok((out, fds))
}

/// Container networking without a daemon: bridges with NAT egress, user-defined networks,
/// names on a network, published ports; and for rootless containers slirp4netns with a
/// userland port proxy. Behind the `network` cargo feature (on by default).
///
/// # Root: bridges
/// A [`Networks`] store (a directory of the caller's) keeps the network definitions and the
/// endpoints, the address allocations of running containers, under one file lock, so two
/// processes never hand out one address. [`Networks::attach`] is called with the pid of a
/// created (not yet started) container's init; it
///
/// 1. reconciles: an endpoint whose init is gone (its monitor was killed with it) is
///    released, its veth deleted;
/// 2. creates the network's bridge when it is missing (the gateway address, up, and
///    `route_localnet` so that the host's loopback reaches published ports);
/// 3. takes the lowest free address, reserves each published host port by binding it (a
///    port in use is [`NetError::PortInUse`] before the container starts; the reservation is
///    held in the returned [`AttachedNetwork`] for the container's life);
/// 4. creates a veth pair through netlink, the container's end named `eth0` (`eth1`, ... for
///    more networks) and moved straight into the container's namespace, where it gets its
///    address, a MAC derived from it (as docker's), the loopback up and the default route;
/// 5. writes the whole `ip oci` nftables table again from the endpoints (see the `nft`
///    module's docs: masquerade egress, DNAT of published ports from outside and from the
///    host itself, hairpin, and no forwarding between different networks);
/// 6. puts the names of the network's containers in each one's `/etc/hosts` (see below).
///
/// [`AttachedNetwork::detach`] undoes it; the kernel deletes the veth with the namespace in any
/// case.
///
/// **Names.** Docker runs a DNS server per network and podman runs aardvark-dns; both are
/// daemons. Here every container on a network gets the others' names in its `/etc/hosts`,
/// rewritten in place (the file is bind-mounted, so the inode must stay) whenever a container
/// joins or leaves, in lines marked `# oci-network` so the container's own lines are kept.
/// Resolution through `/etc/hosts` needs nothing running and survives a dead monitor; the
/// price is that only libc-style resolvers see the names (a program that only speaks DNS
/// does not).
///
/// # Rootless: slirp4netns and a userland proxy
/// An unprivileged user cannot make veths or firewall rules on the host. [`NetworkPlan::Slirp`]
/// runs `slirp4netns` (a Debian package; chosen over pasta because Debian's podman 4.3 uses
/// it by default, so the two compare like for like, and because its `--exit-fd` ties its life
/// to the monitor's) for egress, and publishes ports with a proxy in rootlesskit's "builtin"
/// style: the listening sockets are bound on the host first, then a forked process joins the
/// container's user and network namespaces and connects each accepted client to the port
/// inside, splicing the bytes. No firewall rule is needed; the server sees connections
/// from 127.0.0.1.
///
/// # Example
/// A detached container with port 8080 of the host published to its port 80, on the default
/// bridge (as root): the monitor attaches it before each start and detaches it after.
///
/// ```no_run
/// use oci_rs_runtime::{etc_files, spec_from_image, NetworkMode, RunOptions};
/// use oci_rs_runtime::{Monitor, MonitorConfig};
/// use oci_rs_runtime::{parse_publish, NetworkRequest, NetworkPlan, DEFAULT_NETWORK};
/// use std::path::Path;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let config: oci_spec::image::ImageConfiguration = serde_json::from_str("{}")?;
/// let dir = Path::new("/var/lib/myapp/web");
/// let opts = RunOptions {
///     network: NetworkMode::Bridge,
///     mounts: etc_files(dir, "web", NetworkMode::Bridge)?,
///     ..Default::default()
/// };
/// let spec = spec_from_image(&config, Path::new("/var/lib/myapp/web/rootfs"), &opts)?;
/// let mut mc = MonitorConfig::new("web", spec, dir, Path::new("/run/myapp"), dir);
/// mc.network = Some(NetworkPlan::Bridge {
///     // The host's one network store, which `oci` uses too (see `Networks`).
///     store: oci_rs_runtime::Networks::host_dir(),
///     request: NetworkRequest {
///         container: "web".into(),
///         name: "web".into(),
///         hostname: "web".into(),
///         networks: vec![DEFAULT_NETWORK.into()],
///         ports: parse_publish("8080:80")?,
///         hosts_file: Some(dir.join("hosts")),
///         ..NetworkRequest::default()
///     },
/// });
/// let (monitor, _pid) = Monitor::spawn(mc)?;
/// let published = monitor.status()?.network.map(|n| n.ports).unwrap_or_default();
/// # let _ = published;
/// # Ok(())
/// # }
/// ```
///
/// Hostile containers: every change is made from the host side; the container's processes
/// have no `CAP_NET_ADMIN` outside their own network namespace, so they can change neither
/// the bridge nor the rules.
///
/// The store of networks and endpoints: a directory with `NAME.json` per network,
/// `endpoints.json` and the `lock` every change holds.
///
/// **One per host.** The bridges and the `ip oci` table are the host's, and the table is
/// written whole from one store's records: a second store would erase the first one's
/// rules. Programs open [`Networks::host`] (as `oci` does) and share it. A store opened
/// elsewhere ([`Networks::open`], for a host of its own or tests) may change the host's
/// networks only while the store that last did has no running container; otherwise its
/// changes fail with [`NetError::OtherStore`] and nothing of the other's is touched.
#[derive(Debug, Clone)]
pub struct Networks {
    dir: PathBuf,
}

/// The store's lock, held while it lives.
struct Locked {
    _fd: std::fs::File,
}

const ENDPOINTS: &str = "endpoints.json";
const MARK: &str = "# oci-network";
/// The most of a container's `/etc/hosts` that is read back.
const HOSTS_MAX: u64 = 1 << 20;

/// The default network's subnet, and where the automatic subnets of new networks start.
const AUTO_BASE: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 0);

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// docker's rule for host names: a valid host name label (letters, digits, hyphens) or a
/// dotted run of them.
fn valid_hostname(n: &str) -> bool {
    crate::image_spec::is_valid_hostname(n)
}

/// What may be put in an `/etc/hosts` line as a name: a host name, or a container name or
/// alias with `_` in it (`project_web_1`), which docker's DNS answers for too. No blank, no
/// `#`, nothing that would add a line or a name to the line.
pub(crate) fn valid_hosts_name(n: &str) -> bool {
    let plain = n.replace('_', "x");
    !n.starts_with('_') && valid_hostname(&plain)
}

/// An exclusive lock on the file `name` in `dir` (both made when missing, the directory
/// 0700), held while the guard lives.
fn lock_in(dir: &Path, name: &str) -> Result<Locked> {
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir)
        .map_err(io("create", dir))?;
    let path = dir.join(name);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("open", &path))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io("lock", &path)(e.into()))?;
    Ok(Locked { _fd: f })
}

/// Replaces the file `name` in `dir` with `bytes` by rename, so a reader sees it whole.
fn write_in(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    std::fs::write(&tmp, bytes).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("rename", &path))
}

/// The host's network store, unless `$OCI_NETWORKS_DIR` says otherwise.
pub const HOST_NETWORKS_DIR: &str = "/var/lib/oci/networks";

/// Host-wide and gone at reboot, as the bridges and the table are: the lock and the record
/// of which store the host's networks follow.
const HOST_CLAIM_DIR: &str = "/run/oci-rs";
const OWNER_FILE: &str = "networks.owner";

impl Networks {
    /// The store at `dir` (created on the first change). Prefer [`Networks::host`]: see the
    /// type's docs.
    pub fn open(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// The host's one store: `$OCI_NETWORKS_DIR`, else [`HOST_NETWORKS_DIR`].
    pub fn host() -> Self {
        Self::open(&Self::host_dir())
    }

    /// Where [`Networks::host`] is.
    pub fn host_dir() -> PathBuf {
        std::env::var_os("OCI_NETWORKS_DIR")
            .filter(|d| !d.is_empty())
            .map_or_else(|| PathBuf::from(HOST_NETWORKS_DIR), PathBuf::from)
    }

    /// This store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the host's networks for this store (see the type's docs), under a host-wide
    /// lock held by the guard returned.
    fn claim_host(&self) -> Result<Locked> {
        self.claim_host_at(Path::new(HOST_CLAIM_DIR))
    }

    fn claim_host_at(&self, run: &Path) -> Result<Locked> {
        let held = lock_in(run, "networks.lock")?;
        let ours = std::fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone());
        let owner_path = run.join(OWNER_FILE);
        let owner = match std::fs::read(&owner_path) {
            Ok(b) => Some(PathBuf::from(
                <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(b),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("read", &owner_path)(e)),
        };
        if owner.as_deref() != Some(ours.as_path()) {
            if let Some(owner) = owner {
                // Read without its lock (its writes are renames, so whole): taking it here,
                // under the host lock, could deadlock with that store's own claim.
                let live = Networks::open(&owner)
                    .read_json::<Vec<Endpoint>>(ENDPOINTS)
                    .ok()
                    .flatten()
                    .unwrap_or_default()
                    .iter()
                    .any(Endpoint::alive);
                if live {
                    return Err(NetError::OtherStore { ours, owner });
                }
                tracing::info!(from = %owner.display(), to = %ours.display(), "the host's networks change stores");
            }
            write_in(run, OWNER_FILE, ours.as_os_str().as_encoded_bytes())?;
        }
        Ok(held)
    }

    fn lock(&self) -> Result<Locked> {
        lock_in(&self.dir, "lock")
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        write_in(&self.dir, name, bytes)
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| NetError::Corrupt {
                    path,
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    fn default_network() -> NetworkConfig {
        NetworkConfig {
            name: DEFAULT_NETWORK.into(),
            id: format!("{:0>64}", "0b1d9e"),
            bridge: "oci0".into(),
            subnet: AUTO_BASE,
            prefix: 24,
            gateway: Ipv4Addr::new(10, 89, 0, 1),
            created: 0,
            labels: BTreeMap::new(),
            internal: false,
            ipv6: None,
        }
    }

    /// Every network, the default `bridge` first (it exists from the start, as docker's).
    pub fn list(&self) -> Result<Vec<NetworkConfig>> {
        let mut out = vec![Self::default_network()];
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(r) => r,
            // Not made yet, or root's (a rootless caller): the built-in network only.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                return Ok(out)
            }
            Err(e) => return Err(io("read", &self.dir)(e)),
        };
        let mut more = Vec::new();
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = n.strip_suffix(".net.json") {
                if let Some(c) = self.read_json::<NetworkConfig>(&n)? {
                    if c.name == stem {
                        more.push(c);
                    }
                }
            }
        }
        more.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(more);
        Ok(out)
    }

    /// Network `name` (or a unique prefix of its id).
    pub fn get(&self, name: &str) -> Result<NetworkConfig> {
        let all = self.list()?;
        if let Some(n) = all.iter().find(|n| n.name == name) {
            return Ok(n.clone());
        }
        let by_id: Vec<&NetworkConfig> = all
            .iter()
            .filter(|n| name.len() >= 3 && n.id.starts_with(name))
            .collect();
        match by_id.as_slice() {
            [one] => Ok((*one).clone()),
            _ => Err(NetError::NotFound(name.to_owned())),
        }
    }

    /// The networks `filter` passes (each judged with whether a container is on it), and
    /// every endpoint of the store (for their [`NetworkConfig::document`]s).
    pub fn list_filtered(
        &self,
        filter: &NetworkFilter,
    ) -> Result<(Vec<NetworkConfig>, Vec<Endpoint>)> {
        let eps = self.endpoints()?;
        let nets = self
            .list()?
            .into_iter()
            .filter(|n| filter.matches(n, eps.iter().any(|e| e.network == n.name)))
            .collect();
        Ok((nets, eps))
    }

    /// Creates network `name` with `subnet` (else the first free 10.89.N.0/24).
    pub fn create(&self, name: &str, subnet: Option<(Ipv4Addr, u8)>) -> Result<NetworkConfig> {
        self.create_labelled(name, subnet, BTreeMap::new())
    }

    /// [`Networks::create`] with labels.
    pub fn create_labelled(
        &self,
        name: &str,
        subnet: Option<(Ipv4Addr, u8)>,
        labels: BTreeMap<String, String>,
    ) -> Result<NetworkConfig> {
        self.create_with(
            name,
            &NetworkOptions {
                subnet,
                labels,
                ..NetworkOptions::default()
            },
        )
    }

    /// [`Networks::create`] with everything [`NetworkOptions`] holds.
    pub fn create_with(&self, name: &str, opts: &NetworkOptions) -> Result<NetworkConfig> {
        let (subnet, labels) = (opts.subnet, opts.labels.clone());
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            || name.starts_with(['.', '-'])
            || ["host", "none", DEFAULT_NETWORK].contains(&name)
        {
            return Err(NetError::Invalid {
                what: "network name",
                value: name.to_owned(),
                reason: "use letters, digits, '_', '.' and '-'; host, none and bridge are taken"
                    .into(),
            });
        }
        let _l = self.lock()?;
        let all = self.list()?;
        if all.iter().any(|n| n.name == name) {
            return Err(NetError::Exists(name.to_owned()));
        }
        let routes = host_routes();
        let free = |s: (Ipv4Addr, u8)| -> Option<String> {
            all.iter()
                .find(|n| overlaps(s, (n.subnet, n.prefix)))
                .map(|n| format!("network {} ({})", n.name, n.cidr()))
                .or_else(|| {
                    routes
                        .iter()
                        .find(|r| overlaps(s, **r))
                        .map(|r| format!("the host route {}/{}", r.0, r.1))
                })
        };
        let (subnet, prefix) = match subnet {
            Some(s) => {
                if let Some(why) = subnet_problem(s) {
                    return Err(NetError::Invalid {
                        what: "subnet",
                        value: format!("{}/{}", s.0, s.1),
                        reason: why.into(),
                    });
                }
                if let Some(other) = free(s) {
                    return Err(NetError::Overlap {
                        subnet: format!("{}/{}", s.0, s.1),
                        other,
                    });
                }
                s
            }
            None => (1..=255u32)
                .map(|i| (Ipv4Addr::from(u32::from(AUTO_BASE) + (i << 8)), 24))
                .find(|s| free(*s).is_none())
                .ok_or_else(|| NetError::Exhausted("10.89.0.0/16".into()))?,
        };
        let used: BTreeSet<String> = all.iter().map(|n| n.bridge.clone()).collect();
        let bridge = (1..)
            .map(|i| format!("oci{i}"))
            .find(|b| !used.contains(b))
            .unwrap_or_else(|| "oci-x".into());
        let mut id = [0u8; 32];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom")
                .map_err(io("open", Path::new("/dev/urandom")))?,
            &mut id,
        )
        .map_err(io("read", Path::new("/dev/urandom")))?;
        let gateway = match opts.gateway {
            None => Ipv4Addr::from(u32::from(subnet) + 1),
            Some(g) => {
                let (base, last) = (u32::from(subnet), u32::from(subnet) | !mask(prefix));
                if u32::from(g) <= base || u32::from(g) >= last {
                    return Err(NetError::Invalid {
                        what: "gateway",
                        value: g.to_string(),
                        reason: format!("not a host address of {subnet}/{prefix}"),
                    });
                }
                g
            }
        };
        let ipv6 = self.ipv6_subnet(opts, &all, &id)?;
        let cfg = NetworkConfig {
            name: name.to_owned(),
            id: id.iter().map(|b| format!("{b:02x}")).collect(),
            bridge,
            subnet,
            prefix,
            gateway,
            created: now_s(),
            labels,
            internal: opts.internal,
            ipv6,
        };
        let bytes = serde_json::to_vec_pretty(&cfg).map_err(|e| NetError::Corrupt {
            path: self.dir.join(name),
            reason: e.to_string(),
        })?;
        self.write(&format!("{name}.net.json"), &bytes)?;
        Ok(cfg)
    }

    /// The IPv6 subnet `opts` asks for, checked against the other networks' (`all`) and
    /// the host's routes; a unique local /64 drawn from `random` when none is given.
    fn ipv6_subnet(
        &self,
        opts: &NetworkOptions,
        all: &[NetworkConfig],
        random: &[u8; 32],
    ) -> Result<Option<Ipv6Subnet>> {
        if !opts.ipv6 {
            if let Some((a, p)) = opts.subnet6 {
                return Err(NetError::Invalid {
                    what: "IPv6 subnet",
                    value: format!("{a}/{p}"),
                    reason: "given without enabling IPv6 (--ipv6)".into(),
                });
            }
            return Ok(None);
        }
        let (subnet, prefix) = match opts.subnet6 {
            Some(s) => {
                if let Some(why) = subnet6_problem(s) {
                    return Err(NetError::Invalid {
                        what: "IPv6 subnet",
                        value: format!("{}/{}", s.0, s.1),
                        reason: why.into(),
                    });
                }
                s
            }
            None => {
                // RFC 4193: fd, a random 40-bit global id, subnet id 0.
                let r = random;
                let words = [
                    0xfd00 | u16::from(r[0]),
                    u16::from_be_bytes([r[1], r[2]]),
                    u16::from_be_bytes([r[3], r[4]]),
                ];
                (
                    Ipv6Addr::new(words[0], words[1], words[2], 0, 0, 0, 0, 0),
                    64,
                )
            }
        };
        let s = (subnet, prefix);
        if let Some(n) = all
            .iter()
            .find(|n| n.ipv6.is_some_and(|v| overlaps6(s, (v.subnet, v.prefix))))
        {
            return Err(NetError::Overlap {
                subnet: format!("{subnet}/{prefix}"),
                other: format!(
                    "network {} ({})",
                    n.name,
                    n.ipv6.map(|v| v.cidr()).unwrap_or_default()
                ),
            });
        }
        if let Some(r) = host_routes6().iter().find(|r| overlaps6(s, **r)) {
            return Err(NetError::Overlap {
                subnet: format!("{subnet}/{prefix}"),
                other: format!("the host route {}/{}", r.0, r.1),
            });
        }
        let first = Ipv6Addr::from(u128::from(subnet) + 1);
        let mut net = Ipv6Subnet {
            subnet,
            prefix,
            gateway: first,
        };
        if let Some(g) = opts.gateway6 {
            net.gateway = Ipv6Addr::UNSPECIFIED;
            if !net.is_host(g) {
                return Err(NetError::Invalid {
                    what: "IPv6 gateway",
                    value: g.to_string(),
                    reason: format!("not a host address of {subnet}/{prefix}"),
                });
            }
            net.gateway = g;
        }
        Ok(Some(net))
    }

    /// Removes network `name`: refused while a running container is on it.
    pub fn remove(&self, name: &str) -> Result<()> {
        let cfg = self.get(name)?;
        if cfg.name == DEFAULT_NETWORK {
            return Err(NetError::Unsupported(
                "the default bridge network cannot be removed".into(),
            ));
        }
        let _l = self.lock()?;
        let eps = self.reconcile()?;
        let users: Vec<String> = eps
            .iter()
            .filter(|e| e.network == cfg.name)
            .map(|e| e.name.clone())
            .collect();
        if !users.is_empty() {
            return Err(NetError::InUse {
                name: cfg.name,
                containers: users,
            });
        }
        let host = self.claim_host()?;
        let path = self.dir.join(format!("{}.net.json", cfg.name));
        std::fs::remove_file(&path).map_err(io("remove", &path))?;
        let _ = std::fs::remove_file(self.dir.join(format!("{}.last", cfg.name)));
        if let Ok(mut nl) = netlink::Netlink::new() {
            nl.delete_link(&cfg.bridge)?;
        }
        drop(host);
        self.apply_rules(&eps)
    }

    /// docker's `network inspect` document of network `name`: its subnet, gateway and
    /// bridge, and the containers attached to it now (keyed by container id).
    pub fn inspect(&self, name: &str) -> Result<serde_json::Value> {
        Ok(self.get(name)?.document(&self.endpoints()?))
    }

    /// The endpoints of running containers (those whose init is gone are released first).
    pub fn endpoints(&self) -> Result<Vec<Endpoint>> {
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        let _l = self.lock()?;
        self.reconcile()
    }

    /// Under the lock: drops dead endpoints (deleting their veths, rewriting the rules and
    /// hosts files when any was dropped) and returns the live ones.
    fn reconcile(&self) -> Result<Vec<Endpoint>> {
        let all: Vec<Endpoint> = self.read_json(ENDPOINTS)?.unwrap_or_default();
        let (live, dead): (Vec<Endpoint>, Vec<Endpoint>) = all.into_iter().partition(|e| e.alive());
        if !dead.is_empty() {
            tracing::info!(
                count = dead.len(),
                "releasing endpoints of containers that are gone"
            );
            if let Ok(mut nl) = netlink::Netlink::new() {
                for d in &dead {
                    let _ = nl.delete_link(&d.veth);
                }
            }
            self.save_endpoints(&live)?;
            self.apply_rules(&live)?;
            self.write_hosts(&live);
        }
        Ok(live)
    }

    fn save_endpoints(&self, eps: &[Endpoint]) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(eps).map_err(|e| NetError::Corrupt {
            path: self.dir.join(ENDPOINTS),
            reason: e.to_string(),
        })?;
        self.write(ENDPOINTS, &bytes)
    }

    fn apply_rules(&self, eps: &[Endpoint]) -> Result<()> {
        let _host = self.claim_host()?;
        let nets = self.list()?;
        let used: BTreeSet<&str> = eps.iter().map(|e| e.network.as_str()).collect();
        let rules: Vec<nft::NetRules> = nets
            .iter()
            .filter(|n| used.contains(n.name.as_str()))
            .map(|n| nft::NetRules {
                bridge: n.bridge.clone(),
                subnet: n.subnet,
                prefix: n.prefix,
                ipv6: n.ipv6.map(|v| (v.subnet, v.prefix)),
                internal: n.internal,
            })
            .collect();
        let ports: Vec<nft::PortRule> = eps
            .iter()
            .flat_map(|e| {
                e.ports.iter().map(|p| nft::PortRule {
                    owner: e.container[..e.container.len().min(12)].to_owned(),
                    host_ip: (!p.host_ip.is_unspecified()).then_some(p.host_ip),
                    ipv4_only: p.ipv4_only,
                    host_port: p.host_port,
                    proto: p.proto,
                    ip: e.ip,
                    ip6: e.ipv6.map(|v| v.address),
                    port: p.container_port,
                })
            })
            .collect();
        let [v4, v6] = nft::batches(&rules, &ports);
        nft::apply(v4)?;
        // IPv6's table matters once a network has IPv6 (the host then forwards it); on a
        // kernel that cannot have it, IPv4 networks still work.
        match nft::apply(v6) {
            Err(e) if !nets.iter().any(|n| n.ipv6.is_some()) => {
                tracing::warn!(error = %e, "the ip6 table of the networks");
                Ok(())
            }
            r => r,
        }
    }

    /// Rewrites the marked lines of every endpoint's hosts file: the other containers of
    /// its networks, by name and short id. Best effort: a file that is gone is skipped.
    fn write_hosts(&self, eps: &[Endpoint]) {
        // Once per file: a container on two networks has one hosts file with the names of
        // both (each endpoint writing it in turn left only the last network's).
        let files: BTreeSet<&PathBuf> = eps.iter().filter_map(|e| e.hosts_file.as_ref()).collect();
        for path in files {
            let nets: BTreeSet<&str> = eps
                .iter()
                .filter(|e| e.hosts_file.as_ref() == Some(path) && !e.network.is_empty())
                .map(|e| e.network.as_str())
                .collect();
            // The names this container's links give others, here only.
            let links: BTreeMap<&str, &Vec<String>> = eps
                .iter()
                .filter(|e| e.hosts_file.as_ref() == Some(path))
                .flat_map(|e| e.links.iter().map(|(k, v)| (k.as_str(), v)))
                .collect();
            // The container writes this file: at most HOSTS_MAX of it is read back, so a
            // container that fills it cannot make every network change read gigabytes.
            let mut old = String::new();
            let read = std::fs::File::open(path).and_then(|f| {
                std::io::Read::read_to_string(&mut std::io::Read::take(f, HOSTS_MAX), &mut old)
            });
            if read.is_err() {
                continue;
            }
            if old.len() as u64 >= HOSTS_MAX {
                tracing::warn!(path = %path.display(), "a hosts file over 1 MiB: its own lines are dropped");
                old = "127.0.0.1\tlocalhost\n".into();
            }
            let mut text: String = old
                .lines()
                .filter(|l| !l.ends_with(MARK))
                .map(|l| format!("{l}\n"))
                .collect();
            let mut seen = BTreeSet::new();
            for o in eps.iter().filter(|o| nets.contains(o.network.as_str())) {
                if !seen.insert((o.container.clone(), o.ip)) {
                    continue;
                }
                // Only valid host names, whatever a record says (an older version's, or an
                // embedder's): a line is one address and names without blanks.
                let mut names: Vec<String> = Vec::new();
                let short = o.container.get(..12).unwrap_or(&o.container);
                let given = [o.hostname.as_str(), o.name.as_str(), short];
                let linked = links
                    .get(o.name.as_str())
                    .into_iter()
                    .flat_map(|v| v.iter());
                for n in given
                    .into_iter()
                    .chain(o.aliases.iter().map(String::as_str))
                    .chain(linked.map(String::as_str))
                {
                    if valid_hosts_name(n) && !names.iter().any(|m| m == n) {
                        names.push(n.to_owned());
                    }
                }
                if names.is_empty() {
                    continue;
                }
                text.push_str(&format!("{}\t{}\t{MARK}\n", o.ip, names.join(" ")));
                if let Some(v6) = o.ipv6 {
                    text.push_str(&format!("{}\t{}\t{MARK}\n", v6.address, names.join(" ")));
                }
            }
            if text != old {
                // In place: the container sees this inode through its bind mount.
                if let Err(err) = std::fs::write(path, text) {
                    tracing::warn!(path = %path.display(), error = %err, "updating hosts");
                }
            }
        }
    }

    /// Under the lock: records `eps` (what stays), deletes the veths of `gone`, takes the
    /// names of `gone` out of every hosts file (theirs included) and rewrites the rules.
    fn release(&self, eps: &[Endpoint], gone: &[Endpoint]) -> Result<()> {
        self.save_endpoints(eps)?;
        for g in gone {
            // Its IPv6 port proxy, when it is still the process recorded.
            if let Some((pid, start)) = g.proxy {
                if crate::container::proc_start_time(pid).map(|(t, _)| t) == Some(start) {
                    if let Some(p) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                    }
                }
            }
        }
        if let Ok(mut nl) = netlink::Netlink::new() {
            for g in gone {
                let _ = nl.delete_link(&g.veth);
            }
        }
        // A released endpoint stays in the list only for its file, on no network.
        let mut files = eps.to_vec();
        files.extend(gone.iter().map(|g| Endpoint {
            network: String::new(),
            ..g.clone()
        }));
        self.write_hosts(&files);
        self.apply_rules(eps)
    }

    /// Records `pid` as the IPv6 port proxy of `container`'s endpoint on `net`
    /// ([`Endpoint::proxy`]).
    fn set_proxy(&self, net: &str, container: &str, pid: i32) -> Result<()> {
        let start = crate::container::proc_start_time(pid).map(|(t, _)| t);
        let _l = self.lock()?;
        let mut eps: Vec<Endpoint> = self.read_json(ENDPOINTS)?.unwrap_or_default();
        if let (Some(e), Some(start)) = (
            eps.iter_mut()
                .find(|e| e.container == container && e.network == net),
            start,
        ) {
            e.proxy = Some((pid, start));
            self.save_endpoints(&eps)?;
        }
        Ok(())
    }

    /// Attaches the created container whose init is `pid` to the networks of `req`; its
    /// endpoints and the held port reservations.
    pub fn attach(&self, req: &NetworkRequest, pid: i32) -> Result<(Vec<Endpoint>, Vec<OwnedFd>)> {
        self.attach_inner(req, pid, false)
    }

    /// `network connect`: adds the networks of `req` to the running container whose init is
    /// `pid`, as its next interfaces (`eth1`, ...), keeping what it has. No ports.
    pub fn connect(&self, net: &str, req: &NetworkRequest, pid: i32) -> Result<Endpoint> {
        let req = NetworkRequest {
            networks: vec![net.to_owned()],
            ports: Vec::new(),
            ..req.clone()
        };
        let (mut made, _) = self.attach_inner(&req, pid, true)?;
        made.pop().ok_or_else(|| NetError::NotFound(net.to_owned()))
    }

    /// `network disconnect`: removes the container's interface on `net`.
    pub fn disconnect(&self, net: &str, container: &str) -> Result<()> {
        let _l = self.lock()?;
        let mut eps = self.reconcile()?;
        let Some(pos) = eps
            .iter()
            .position(|e| e.container == container && e.network == net)
        else {
            return Ok(());
        };
        let gone = eps.remove(pos);
        self.release(&eps, &[gone])
    }

    fn attach_inner(
        &self,
        req: &NetworkRequest,
        pid: i32,
        additive: bool,
    ) -> Result<(Vec<Endpoint>, Vec<OwnedFd>)> {
        let start_time = proc_start_time(pid)
            .map(|(t, _)| t)
            .ok_or_else(|| NetError::Io {
                op: "read",
                path: PathBuf::from(format!("/proc/{pid}/stat")),
                source: std::io::Error::from_raw_os_error(libc::ESRCH),
            })?;
        let _l = self.lock()?;
        let mut eps = self.reconcile()?;
        // Held from a previous life of this container (a restart): released first.
        if !additive {
            eps.retain(|e| e.container != req.container);
        }
        // Each name goes into the `/etc/hosts` of every container on the network: one with a
        // newline or a space would add lines or aliases there.
        if !valid_hostname(&req.hostname) {
            return Err(NetError::Invalid {
                what: "hostname",
                value: req.hostname.clone(),
                reason: crate::image_spec::HOSTNAME_RULE.into(),
            });
        }
        let first = eps.iter().filter(|e| e.container == req.container).count();
        if let Some(n) = req.networks.iter().find(|n| {
            eps.iter()
                .any(|e| e.container == req.container && &e.network == *n)
        }) {
            return Err(NetError::Exists(format!("endpoint of {} on {n}", req.name)));
        }
        let nets: Vec<NetworkConfig> = req
            .networks
            .iter()
            .map(|n| self.get(n))
            .collect::<Result<_>>()?;
        // Before anything of the host's is made: refused when another store has it.
        drop(self.claim_host()?);
        let taken: Vec<PublishedPort> = eps.iter().flat_map(|e| e.ports.clone()).collect();
        let (published, reservations) = reserve_ports(&req.ports, &taken, false)?;
        let ns_path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        let ns = std::fs::File::open(&ns_path).map_err(io("open", &ns_path))?;
        let mut host = netlink::Netlink::new()?;
        let mut inside = netlink::Netlink::in_namespace(ns.as_fd())?;
        if let Some(lo) = inside.link_index("lo")? {
            inside.set_up(lo)?;
        }
        let mut made: Vec<Endpoint> = Vec::new();
        let result = (|| -> Result<()> {
            for (k, net) in nets.iter().enumerate() {
                let i = first + k;
                // Each step is a no-op when already so (an address there, a link up, a
                // sysctl set), so a bridge made by an earlier run is mended too.
                let br = host.ensure_bridge(&net.bridge)?;
                host.add_address(br, net.gateway, net.prefix)?;
                if let Some(v6) = net.ipv6 {
                    sysctl(&format!("net/ipv6/conf/{}/disable_ipv6", net.bridge), "0");
                    host.add_address6(br, v6.gateway, v6.prefix)?;
                    // As docker's: the host routes IPv6 too once a network has it.
                    sysctl("net/ipv6/conf/all/forwarding", "1");
                }
                host.set_up(br)?;
                sysctl(&format!("net/ipv4/conf/{}/route_localnet", net.bridge), "1");
                sysctl("net/ipv4/ip_forward", "1");
                let used: BTreeSet<Ipv4Addr> = eps
                    .iter()
                    .chain(made.iter())
                    .filter(|e| e.network == net.name)
                    .map(|e| e.ip)
                    .collect();
                let base = u32::from(net.subnet);
                let last = base | !mask(net.prefix);
                let ip = match req.addresses.get(&net.name) {
                    Some(&asked) => {
                        let a = u32::from(asked);
                        let refuse = |reason: String| NetError::Invalid {
                            what: "address",
                            value: asked.to_string(),
                            reason,
                        };
                        if a <= base || a >= last || asked == net.gateway {
                            return Err(refuse(format!(
                                "not a free host address of network {} ({}, gateway {})",
                                net.name,
                                net.cidr(),
                                net.gateway
                            )));
                        }
                        if used.contains(&asked) {
                            return Err(refuse(format!("in use on network {}", net.name)));
                        }
                        asked
                    }
                    None => {
                        // The next free address after the last one given out (wrapping), as
                        // docker does: an address just released is not handed out again at
                        // once, so stale ARP and conntrack entries of its old owner do not
                        // reach a new container. One asked for by a container is skipped.
                        let cursor_file = format!("{}.last", net.name);
                        let after = self
                            .read_json::<Ipv4Addr>(&cursor_file)
                            .ok()
                            .flatten()
                            .map_or(base + 1, u32::from);
                        let span = last.saturating_sub(base + 2);
                        let ip = (0..span)
                            .map(|k| {
                                Ipv4Addr::from(
                                    base + 2 + (after.saturating_sub(base + 1) + k) % span,
                                )
                            })
                            .find(|a| !used.contains(a) && *a != net.gateway)
                            .ok_or_else(|| NetError::Exhausted(net.name.clone()))?;
                        self.write(&cursor_file, format!("\"{ip}\"").as_bytes())?;
                        ip
                    }
                };
                let ipv6 = match net.ipv6 {
                    None => {
                        if let Some(asked) = req.addresses6.get(&net.name) {
                            return Err(NetError::Invalid {
                                what: "IPv6 address",
                                value: asked.to_string(),
                                reason: format!("network {} has no IPv6", net.name),
                            });
                        }
                        None
                    }
                    Some(v6) => {
                        let used: BTreeSet<Ipv6Addr> = eps
                            .iter()
                            .chain(made.iter())
                            .filter(|e| e.network == net.name)
                            .filter_map(|e| e.ipv6.map(|a| a.address))
                            .collect();
                        let address = match req.addresses6.get(&net.name) {
                            Some(&asked) => {
                                let refuse = |reason: String| NetError::Invalid {
                                    what: "IPv6 address",
                                    value: asked.to_string(),
                                    reason,
                                };
                                if !v6.is_host(asked) {
                                    return Err(refuse(format!(
                                        "not a host address of network {} ({}, gateway {})",
                                        net.name,
                                        v6.cidr(),
                                        v6.gateway
                                    )));
                                }
                                if used.contains(&asked) {
                                    return Err(refuse(format!("in use on network {}", net.name)));
                                }
                                asked
                            }
                            // The lowest free one: an IPv6 subnet is too large to run out.
                            None => (1..=u128::from(u16::MAX))
                                .map(|k| Ipv6Addr::from(u128::from(v6.subnet) + k))
                                .find(|a| v6.is_host(*a) && !used.contains(a))
                                .ok_or_else(|| NetError::Exhausted(net.name.clone()))?,
                        };
                        Some(Ipv6Endpoint {
                            address,
                            prefix: v6.prefix,
                            gateway: v6.gateway,
                        })
                    }
                };
                let veth = format!(
                    "veth{}{}",
                    &req.container[..req.container.len().min(8)],
                    if i == 0 { String::new() } else { i.to_string() }
                );
                let interface = format!("eth{i}");
                let _ = host.delete_link(&veth);
                host.add_veth(&veth, br, &interface, ns.as_fd())?;
                let o = ip.octets();
                let mac = match req.macs.get(&net.name) {
                    Some(m) => parse_mac(m)?,
                    None => [0x02, 0x42, o[0], o[1], o[2], o[3]],
                };
                made.push(Endpoint {
                    container: req.container.clone(),
                    name: req.name.clone(),
                    hostname: req.hostname.clone(),
                    network: net.name.clone(),
                    interface: interface.clone(),
                    veth,
                    ip,
                    prefix: net.prefix,
                    gateway: net.gateway,
                    ipv6,
                    mac: mac
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                    ports: if i == 0 {
                        published.clone()
                    } else {
                        Vec::new()
                    },
                    pid,
                    start_time,
                    hosts_file: req.hosts_file.clone(),
                    aliases: req.aliases.get(&net.name).cloned().unwrap_or_default(),
                    links: req.links.clone(),
                    proxy: None,
                });
                let idx = inside
                    .link_index(&interface)?
                    .ok_or_else(|| NetError::Netlink {
                        what: format!("find {interface} in the container"),
                        source: std::io::Error::from_raw_os_error(libc::ENODEV),
                    })?;
                inside.set_mac(idx, mac)?;
                inside.add_address(idx, ip, net.prefix)?;
                if let Some(v6) = ipv6 {
                    inside.add_address6(idx, v6.address, v6.prefix)?;
                }
                inside.set_up(idx)?;
                // The default route: through the first network that is not internal, when
                // the container has none yet; IPv6's through the first such one with IPv6.
                if !additive && Some(k) == nets.iter().position(|n| !n.internal) {
                    inside.add_default_route(net.gateway.into())?;
                }
                if let Some(v6) = ipv6 {
                    let first6 = nets.iter().position(|n| !n.internal && n.ipv6.is_some());
                    if !additive && Some(k) == first6 {
                        inside.add_default_route(v6.gateway.into())?;
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            for m in &made {
                let _ = host.delete_link(&m.veth);
            }
            return Err(e);
        }
        eps.extend(made.iter().cloned());
        self.save_endpoints(&eps)?;
        if let Err(e) = self.apply_rules(&eps) {
            eps.retain(|e| e.container != req.container);
            let _ = self.save_endpoints(&eps);
            for m in &made {
                let _ = host.delete_link(&m.veth);
            }
            return Err(e);
        }
        self.write_hosts(&eps);
        Ok((made, reservations.into_iter().map(|(fd, _)| fd).collect()))
    }

    /// Releases every endpoint of `container` (deleting its veths) and rewrites the rules.
    pub fn detach(&self, container: &str) -> Result<()> {
        if !self.dir.exists() {
            return Ok(());
        }
        let _l = self.lock()?;
        let mut eps = self.reconcile()?;
        let gone: Vec<Endpoint> = eps
            .iter()
            .filter(|e| e.container == container)
            .cloned()
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        eps.retain(|e| e.container != container);
        self.release(&eps, &gone)
    }

    /// Removes our rules and bridges when nothing uses them (for tests and `network prune`
    /// style clean-up): the table goes when no endpoint is left.
    pub fn tidy(&self) -> Result<()> {
        let _l = self.lock()?;
        let eps = self.reconcile()?;
        self.apply_rules(&eps)?;
        if eps.is_empty() {
            if let Ok(mut nl) = netlink::Netlink::new() {
                for n in self.list()? {
                    let _ = nl.delete_link(&n.bridge);
                }
            }
        }
        Ok(())
    }
}

/// Writes a sysctl under /proc/sys; failures are logged (a read-only /proc/sys in a
/// nested container should not stop the set-up, the kernel's answer will show later).
fn sysctl(name: &str, value: &str) {
    let path = Path::new("/proc/sys").join(name);
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
        return;
    }
    if let Err(e) = std::fs::write(&path, value) {
        tracing::warn!(path = %path.display(), error = %e, "sysctl");
    }
}

/// The host's IPv4 routes other than the default (from /proc/net/route), which a new
/// network must not overlap.
fn host_routes() -> Vec<(Ipv4Addr, u8)> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let m = u32::from_str_radix(f.get(7)?, 16).ok()?;
            // Little-endian words in the kernel's text.
            let (dest, m) = (u32::from_be(dest.to_le()), u32::from_be(m.to_le()));
            let prefix = m.count_ones() as u8;
            (prefix > 0 && !f.first()?.starts_with("oci")).then_some((Ipv4Addr::from(dest), prefix))
        })
        .collect()
}

/// The host's IPv6 routes other than the default, link-local, multicast and its own
/// addresses (from /proc/net/ipv6_route), which a new IPv6 network must not overlap.
fn host_routes6() -> Vec<(Ipv6Addr, u8)> {
    let Ok(text) = std::fs::read_to_string("/proc/net/ipv6_route") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = Ipv6Addr::from(u128::from_str_radix(f.first()?, 16).ok()?);
            let prefix = u8::from_str_radix(f.get(1)?, 16).ok()?;
            let dev = f.last()?;
            let special = prefix == 0
                || prefix == 128
                || overlaps6(
                    (dest, prefix),
                    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
                )
                || overlaps6(
                    (dest, prefix),
                    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
                );
            (!special && !dev.starts_with("oci")).then_some((dest, prefix))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_parse_as_docker_reads_them() {
        let p = parse_publish("8080:80").unwrap();
        assert_eq!(
            p,
            vec![PortMapping {
                host_ip: None,
                host_port: 8080,
                host_port_end: 8080,
                container_port: 80,
                proto: Proto::Tcp
            }]
        );
        let p = parse_publish("127.0.0.1:53:53/udp").unwrap();
        assert_eq!(p[0].host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(p[0].proto, Proto::Udp);
        let p = parse_publish("80").unwrap();
        assert_eq!((p[0].host_port, p[0].container_port), (0, 80));
        let p = parse_publish("8000-8002:80-82").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!((p[2].host_port, p[2].container_port), (8002, 82));
        let p = parse_publish("9000-9010:80").unwrap();
        assert_eq!((p[0].host_port, p[0].host_port_end), (9000, 9010));
        let p = parse_publish("127.0.0.1::80").unwrap();
        assert_eq!(p[0].host_port, 0);
        for bad in [
            "",
            "0:80",
            "65536:80",
            "80:x",
            "8000-8001:80-83",
            "1:2:3:4",
            "80/sctp",
            "300.1.1.1:80:80",
            "90-80:80",
        ] {
            assert!(
                matches!(parse_publish(bad), Err(NetError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn subnets_parse_and_overlap() {
        assert_eq!(
            parse_subnet("10.1.2.0/24").unwrap(),
            (Ipv4Addr::new(10, 1, 2, 0), 24)
        );
        for bad in [
            "10.1.2.1/24",
            "10.1.2.0",
            "10.1.2.0/31",
            "x/24",
            "10.0.0.0/4",
        ] {
            assert!(parse_subnet(bad).is_err(), "{bad}");
        }
        let a = parse_subnet("10.1.0.0/16").unwrap();
        assert!(overlaps(a, parse_subnet("10.1.5.0/24").unwrap()));
        assert!(!overlaps(a, parse_subnet("10.2.0.0/24").unwrap()));
    }

    fn endpoint(container: &str, ip: [u8; 4], hosts: Option<PathBuf>) -> Endpoint {
        Endpoint {
            container: container.into(),
            name: container.into(),
            hostname: container.into(),
            network: "n".into(),
            interface: "eth0".into(),
            veth: "v".into(),
            ip: Ipv4Addr::from(ip),
            prefix: 24,
            gateway: Ipv4Addr::new(10, 0, 0, 1),
            ipv6: None,
            mac: String::new(),
            ports: Vec::new(),
            pid: 0,
            start_time: 0,
            hosts_file: hosts,
            aliases: Vec::new(),
            links: BTreeMap::new(),
            proxy: None,
        }
    }

    #[test]
    fn hosts_files_keep_the_containers_lines_and_cap_what_is_read_back() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::write(&a, "127.0.0.1\tlocalhost\n10.9.9.9\tmine\n").unwrap();
        // A container that filled its file: 3 MiB of one line.
        std::fs::write(&b, "x".repeat(3 << 20)).unwrap();
        let eps = [
            endpoint("web", [10, 0, 0, 2], Some(a.clone())),
            endpoint("db", [10, 0, 0, 3], Some(b.clone())),
        ];
        let store = Networks::open(d.path());
        store.write_hosts(&eps);
        let ta = std::fs::read_to_string(&a).unwrap();
        assert!(
            ta.contains("10.9.9.9\tmine\n"),
            "its own line is kept: {ta}"
        );
        assert!(ta.contains("10.0.0.3\tdb\t# oci-network"), "{ta}");
        assert!(ta.contains("10.0.0.2\tweb\t# oci-network"), "{ta}");
        let tb = std::fs::read_to_string(&b).unwrap();
        assert!(tb.len() < 4096, "{}", tb.len());
        assert!(tb.contains("10.0.0.2\tweb\t# oci-network"), "{tb}");
        // Run again: the marked lines are replaced, not added to.
        store.write_hosts(&eps[..1]);
        let ta = std::fs::read_to_string(&a).unwrap();
        assert!(!ta.contains("db"), "{ta}");
        assert_eq!(ta.matches(MARK).count(), 1, "{ta}");
    }

    /// Network aliases (docker-compose's service names) follow the container's own names;
    /// one that would change the line's shape is left out, the others kept.
    #[test]
    fn aliases_are_names_in_the_others_hosts_files() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::write(&a, "127.0.0.1\tlocalhost\n").unwrap();
        let mut db = endpoint("proj_db_1", [10, 0, 0, 3], None);
        db.aliases = vec!["db".into(), "evil\n10.6.6.6 bank".into(), "my_db".into()];
        let eps = [endpoint("web", [10, 0, 0, 2], Some(a.clone())), db];
        Networks::open(d.path()).write_hosts(&eps);
        let ta = std::fs::read_to_string(&a).unwrap();
        assert!(
            ta.contains("10.0.0.3\tproj_db_1 db my_db\t# oci-network\n"),
            "{ta}"
        );
        assert!(!ta.contains("bank"), "{ta}");
    }

    /// A link's alias is a name in the linking container's hosts file only; one that would
    /// change the line's shape is left out.
    #[test]
    fn link_aliases_are_names_in_the_linking_containers_file_only() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        for f in [&a, &b] {
            std::fs::write(f, "127.0.0.1\tlocalhost\n").unwrap();
        }
        let mut web = endpoint("web", [10, 0, 0, 2], Some(a.clone()));
        web.links = BTreeMap::from([(
            "db".to_owned(),
            vec!["sql".to_owned(), "x\n10.6.6.6 bank".to_owned()],
        )]);
        let eps = [
            web,
            endpoint("db", [10, 0, 0, 3], None),
            endpoint("other", [10, 0, 0, 4], Some(b.clone())),
        ];
        Networks::open(d.path()).write_hosts(&eps);
        let ta = std::fs::read_to_string(&a).unwrap();
        assert!(ta.contains("10.0.0.3\tdb sql\t# oci-network\n"), "{ta}");
        assert!(!ta.contains("bank"), "{ta}");
        let tb = std::fs::read_to_string(&b).unwrap();
        assert!(tb.contains("10.0.0.3\tdb\t# oci-network\n"), "{tb}");
    }

    /// Two stores side by side: the second may not take the host's networks while the
    /// first has a running container, and may once it has none.
    #[test]
    fn a_second_store_cannot_take_the_hosts_networks_from_a_live_one() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run");
        let (a, b) = (
            Networks::open(&d.path().join("a")),
            Networks::open(&d.path().join("b")),
        );
        std::fs::create_dir_all(a.dir()).unwrap();
        std::fs::create_dir_all(b.dir()).unwrap();
        drop(a.claim_host_at(&run).unwrap());
        // A running container in a: this test process stands for its init.
        let me = std::process::id() as i32;
        let mut ep = endpoint("web", [10, 0, 0, 2], None);
        ep.pid = me;
        ep.start_time = proc_start_time(me).unwrap().0;
        a.save_endpoints(std::slice::from_ref(&ep)).unwrap();
        match b.claim_host_at(&run) {
            Err(NetError::OtherStore { owner, .. }) => {
                assert_eq!(owner, std::fs::canonicalize(a.dir()).unwrap());
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("the second store took the host's networks"),
        }
        // a itself goes on.
        drop(a.claim_host_at(&run).unwrap());
        a.save_endpoints(&[]).unwrap();
        drop(b.claim_host_at(&run).unwrap());
        assert_eq!(
            std::fs::read(run.join(OWNER_FILE)).unwrap(),
            std::fs::canonicalize(b.dir())
                .unwrap()
                .as_os_str()
                .as_encoded_bytes()
        );
    }

    #[test]
    fn host_names_follow_rfc_1123() {
        assert!(valid_hostname("web-1"));
        assert!(valid_hostname("a.b"));
        for bad in [
            "web_1",
            "-x",
            "x-",
            "",
            "a..b",
            "a b",
            "a\nb",
            "10.0.0.9\tvictim",
        ] {
            assert!(!valid_hostname(bad), "{bad}");
        }
        // Container names and aliases in /etc/hosts may have '_' (docker's DNS answers for
        // them); nothing that changes the line's shape.
        assert!(valid_hosts_name("proj_web_1"));
        assert!(valid_hosts_name("web"));
        for bad in ["_x", "a b", "a\nb", "x#y", "", "a..b", "-x"] {
            assert!(!valid_hosts_name(bad), "{bad}");
        }
    }

    #[test]
    fn loopback_multicast_and_reserved_subnets_are_refused() {
        for bad in [
            "127.0.0.0/8",
            "127.1.0.0/16",
            "224.0.0.0/8",
            "239.1.0.0/16",
            "240.0.0.0/8",
            "169.254.0.0/16",
            "0.0.0.0/8",
            "96.0.0.0/3",
        ] {
            assert!(
                matches!(parse_subnet(bad), Err(NetError::Invalid { .. })),
                "{bad}"
            );
        }
        assert!(parse_subnet("172.30.0.0/16").is_ok());
        let dir = tempfile::tempdir().unwrap();
        let nets = Networks::open(dir.path());
        for s in [
            (Ipv4Addr::new(127, 0, 0, 0), 8),
            (Ipv4Addr::new(224, 1, 0, 0), 16),
        ] {
            assert!(
                matches!(
                    nets.create("n", Some(s)),
                    Err(NetError::Invalid { what: "subnet", .. })
                ),
                "{s:?}"
            );
        }
    }

    #[test]
    fn ports_clash_with_taken_ones_and_with_each_other() {
        let taken = vec![PublishedPort {
            host_ip: Ipv4Addr::UNSPECIFIED,
            host_port: 1,
            container_port: 80,
            proto: Proto::Tcp,
            ipv4_only: false,
        }];
        // Port 1 is "taken" by another container: refused without binding it.
        let e = reserve_ports(&parse_publish("1:80").unwrap(), &taken, false).unwrap_err();
        assert!(matches!(e, NetError::PortInUse { source: None, .. }), "{e}");
        // Two random ports in one request are two different ports.
        let spec = [parse_publish("1").unwrap(), parse_publish("2").unwrap()].concat();
        let (got, _fds) = reserve_ports(&spec, &[], false).unwrap();
        assert_ne!(got[0].host_port, got[1].host_port);
        assert!(got.iter().all(|p| p.host_port != 0));
    }
}

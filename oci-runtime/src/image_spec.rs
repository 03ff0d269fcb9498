use crate::error::{Error, Result};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    get_default_namespaces, Capabilities, Capability, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxIdMapping,
    LinuxIdMappingBuilder, LinuxMemoryBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResources, LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec,
    UserBuilder,
};
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Docker's default capability set.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::NetRaw,
    Capability::SysChroot,
    Capability::Mknod,
    Capability::AuditWrite,
    Capability::Setfcap,
];

/// Which network a container gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum NetworkMode {
    /// A new network namespace with only the loopback interface.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A new network namespace that [`crate::Networks`] attaches to bridges at each start:
    /// `/etc/hosts` then names the container by its address, not 127.0.1.1.
    Bridge,
    /// A new network namespace with slirp4netns (rootless): its resolver is 10.0.2.3 and
    /// its address 10.0.2.100.
    Slirp,
}

/// The ids a rootless container is mapped to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rootless {
    /// The caller's uid (container root).
    pub uid: u32,
    /// The caller's gid.
    pub gid: u32,
    /// The subordinate uid range (start, count), mapped from container id 1.
    pub subuids: Option<(u32, u32)>,
    /// The subordinate gid range.
    pub subgids: Option<(u32, u32)>,
}

impl Rootless {
    /// The calling user, with its ranges from `/etc/subuid` and `/etc/subgid` (by name or
    /// number, as shadow-utils reads them).
    pub fn current() -> Self {
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let name = passwd_entries(&passwd)
            .find(|e| e.uid == uid)
            .map(|e| e.name.to_owned());
        let range = |file: &str| -> Option<(u32, u32)> {
            let text = std::fs::read_to_string(file).ok()?;
            text.lines().find_map(|l| {
                let f: Vec<&str> = l.trim().split(':').collect();
                let who = *f.first()?;
                if who != uid.to_string() && Some(who) != name.as_deref() {
                    return None;
                }
                Some((f.get(1)?.parse().ok()?, f.get(2)?.parse().ok()?))
            })
        };
        Self {
            uid,
            gid,
            subuids: range("/etc/subuid"),
            subgids: range("/etc/subgid"),
        }
    }
}

/// A mount a container gets besides the image's filesystem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum ExtraMount {
    /// A host directory or file (`-v /host:/ctr[:ro]`, `--mount type=bind`). The target is
    /// resolved inside the rootfs by the runtime, so no link in the image can move it.
    Bind {
        /// The host path (absolute).
        source: PathBuf,
        /// The path in the container (absolute).
        target: String,
        /// Mounted read-only.
        readonly: bool,
    },
    /// A fresh tmpfs (`--tmpfs /run:size=64m`).
    Tmpfs {
        /// The path in the container (absolute).
        target: String,
        /// Mount options (`size=64m,mode=1777`).
        options: Vec<String>,
    },
}

impl ExtraMount {
    /// Parses docker's `-v SRC:DST[:OPTS]` for a host path (`ro`, `rw`, `z`/`Z` ignored).
    pub fn parse_volume(spec: &str) -> Result<Self> {
        let bad = |why: String| Error::option("volume", spec, why);
        let parts: Vec<&str> = spec.split(':').collect();
        let (src, dst, opts) = match parts.as_slice() {
            [s, d] => (*s, *d, ""),
            [s, d, o] => (*s, *d, *o),
            _ => return Err(bad("expected HOST:CONTAINER[:ro]".into())),
        };
        if !src.starts_with('/') {
            return Err(bad("the host path must be absolute".into()));
        }
        if !dst.starts_with('/') {
            return Err(bad("the container path must be absolute".into()));
        }
        let mut readonly = false;
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o {
                "ro" => readonly = true,
                "rw" | "z" | "Z" => {}
                other => return Err(bad(format!("unknown option {other:?}"))),
            }
        }
        Ok(Self::Bind {
            source: PathBuf::from(src),
            target: dst.to_owned(),
            readonly,
        })
    }

    /// Parses docker's `--tmpfs DST[:OPTS]`.
    pub fn parse_tmpfs(spec: &str) -> Result<Self> {
        let (dst, opts) = spec.split_once(':').unwrap_or((spec, ""));
        if !dst.starts_with('/') {
            return Err(Error::option(
                "tmpfs",
                spec,
                "the container path must be absolute",
            ));
        }
        Ok(Self::Tmpfs {
            target: dst.to_owned(),
            options: opts
                .split(',')
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }

    fn to_spec(&self) -> Result<Mount> {
        let m = match self {
            Self::Bind {
                source,
                target,
                readonly,
            } => {
                let mut options = vec!["rbind".to_owned(), "rprivate".to_owned()];
                options.push(if *readonly { "ro" } else { "rw" }.to_owned());
                MountBuilder::default()
                    .typ("bind")
                    .source(source)
                    .destination(target)
                    .options(options)
                    .build()
            }
            Self::Tmpfs { target, options } => {
                let mut o = vec!["nosuid".to_owned(), "nodev".to_owned()];
                o.extend(options.iter().cloned());
                MountBuilder::default()
                    .typ("tmpfs")
                    .source("tmpfs")
                    .destination(target)
                    .options(o)
                    .build()
            }
        };
        m.map_err(|source| Error::Build {
            what: "mount",
            source,
        })
    }

    /// The path in the container.
    pub fn target(&self) -> &str {
        match self {
            Self::Bind { target, .. } | Self::Tmpfs { target, .. } => target,
        }
    }
}

/// What a host name may be, said in errors.
pub(crate) const HOSTNAME_RULE: &str =
    "not a valid host name: dot-separated labels of letters, digits and '-' (RFC 1123)";

/// docker's rule for host names (RFC 1123): dot-separated labels of 1 to 63 letters, digits
/// and hyphens, not starting or ending with a hyphen, 253 bytes at most. A hostname and a
/// container's names go into `/etc/hosts` files other containers read: nothing else may.
pub fn is_valid_hostname(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A container's hostname: a valid host name (see [`is_valid_hostname`]) the kernel takes
/// (64 bytes at most).
fn check_hostname(hostname: &str) -> Result<()> {
    if is_valid_hostname(hostname) && hostname.len() <= 64 {
        Ok(())
    } else {
        Err(Error::option(
            "hostname",
            hostname.escape_debug(),
            HOSTNAME_RULE,
        ))
    }
}

/// The files [`etc_files`] binds over, relative to the root: a container's diff and a build
/// step's layer leave them out, as docker's do.
pub const ETC_MOUNT_POINTS: [&str; 3] = ["etc/hosts", "etc/hostname", "etc/resolv.conf"];

/// Writes the container's `hostname`, `hosts` and `resolv.conf` into `dir` (a directory of
/// the caller's, e.g. the container's own) and returns the read-write binds that put them at
/// `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`, as docker does. With the host's
/// network the host's `hosts` and `resolv.conf` are copied; otherwise `hosts` names
/// localhost and the container, and `resolv.conf` is the host's without loopback name
/// servers (a resolver on 127.0.0.x of the host is not reachable from another network
/// namespace), or empty when nothing is left. On a [`NetworkMode::Bridge`] the container's own
/// address line is added at attach time, the servers are systemd-resolved's upstream ones
/// when the host's file names only its 127.0.0.53, and docker's fallback servers (8.8.8.8,
/// 8.8.4.4) stand in when no server is left; with [`NetworkMode::Slirp`] the server is slirp4netns's
/// 10.0.2.3.
pub fn etc_files(dir: &Path, hostname: &str, network: NetworkMode) -> Result<Vec<ExtraMount>> {
    check_hostname(hostname)?;
    let write = |name: &str, text: &str| -> Result<PathBuf> {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| Error::io("write", &p, e))?;
        Ok(p)
    };
    let host_resolv = host_resolv_conf(network);
    let (hosts, resolv) = if network == NetworkMode::Host {
        (
            std::fs::read_to_string("/etc/hosts")
                .unwrap_or_else(|_| "127.0.0.1\tlocalhost\n".into()),
            host_resolv,
        )
    } else {
        let own = match network {
            NetworkMode::Bridge => String::new(),
            NetworkMode::Slirp => format!("10.0.2.100\t{hostname}\n"),
            _ => format!("127.0.1.1\t{hostname}\n"),
        };
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n{own}"
        );
        let mut resolv: String = host_resolv
            .lines()
            .filter(|l| {
                let mut f = l.split_whitespace();
                !(f.next() == Some("nameserver")
                    && (network == NetworkMode::Slirp
                        || f.next()
                            .is_some_and(|a| a.starts_with("127.") || a == "::1")))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let has_server = resolv.lines().any(|l| l.starts_with("nameserver"));
        match network {
            // slirp4netns forwards 10.0.2.3 to the host's resolver, loopback ones included.
            NetworkMode::Slirp => resolv.push_str("nameserver 10.0.2.3\n"),
            // docker's fallback when the host's only resolvers are on its loopback.
            NetworkMode::Bridge if !has_server => {
                resolv.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n")
            }
            _ => {}
        }
        (hosts, resolv)
    };
    let mut out = Vec::new();
    for (name, text) in [
        ("hostname", format!("{hostname}\n")),
        ("hosts", hosts),
        ("resolv.conf", resolv),
    ] {
        out.push(ExtraMount::Bind {
            source: write(name, &text)?,
            target: format!("/etc/{name}"),
            readonly: false,
        });
    }
    Ok(out)
}

/// docker's rule for `--sysctl`: only parameters a container's own namespaces hold, as the
/// runtime decides (IPC's, `fs.mqueue.*`, `kernel.domainname`, and `net.*` with a network
/// namespace of its own; `kernel.hostname` is `--hostname`'s); a value on one line.
pub fn check_sysctl(key: &str, value: &str, network: NetworkMode) -> Result<()> {
    let shape = !key.is_empty()
        && !key.starts_with('.')
        && !key.contains("..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    let namespaced = key != "kernel.hostname"
        && crate::plan::sysctl_namespaced(key, |t| {
            t != LinuxNamespaceType::Network || network != NetworkMode::Host
        });
    if !shape || !namespaced {
        return Err(Error::option(
            "sysctl",
            key.escape_debug(),
            "not a parameter of the container's own namespaces (IPC's, fs.mqueue.*, \
             kernel.domainname, or net.* without the host's network)",
        ));
    }
    if value.contains(['\n', '\0']) {
        return Err(Error::option("sysctl", key, "a value on one line"));
    }
    Ok(())
}

/// docker's `--sysctl KEY=VALUE` as a pair (checked by [`check_sysctl`] when the spec is
/// made).
pub fn parse_sysctl(spec: &str) -> Result<(String, String)> {
    spec.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| Error::option("sysctl", spec.escape_debug(), "KEY=VALUE"))
}

/// docker's `--ulimit NAME=SOFT[:HARD]` (`nofile=1024:2048`; `-1` is unlimited) as the
/// runtime spec's `RLIMIT_NAME` and limits.
pub fn parse_ulimit(spec: &str) -> Result<oci_spec::runtime::PosixRlimit> {
    use oci_spec::runtime::PosixRlimitType as T;
    let bad = |why: &'static str| Error::option("ulimit", spec.escape_debug(), why);
    let (name, limits) = spec
        .split_once('=')
        .ok_or_else(|| bad("NAME=SOFT[:HARD]"))?;
    let typ = match name {
        "as" => T::RlimitAs,
        "core" => T::RlimitCore,
        "cpu" => T::RlimitCpu,
        "data" => T::RlimitData,
        "fsize" => T::RlimitFsize,
        "locks" => T::RlimitLocks,
        "memlock" => T::RlimitMemlock,
        "msgqueue" => T::RlimitMsgqueue,
        "nice" => T::RlimitNice,
        "nofile" => T::RlimitNofile,
        "nproc" => T::RlimitNproc,
        "rss" => T::RlimitRss,
        "rtprio" => T::RlimitRtprio,
        "rttime" => T::RlimitRttime,
        "sigpending" => T::RlimitSigpending,
        "stack" => T::RlimitStack,
        _ => return Err(bad("not a resource limit docker knows")),
    };
    let value = |v: &str| -> Result<u64> {
        match v {
            "-1" | "unlimited" => Ok(u64::MAX),
            v => v.parse().map_err(|_| bad("limits are numbers")),
        }
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((s, h)) => (value(s)?, value(h)?),
        None => (value(limits)?, value(limits)?),
    };
    if soft > hard {
        return Err(bad("the soft limit is above the hard one"));
    }
    oci_spec::runtime::PosixRlimitBuilder::default()
        .typ(typ)
        .soft(soft)
        .hard(hard)
        .build()
        .map_err(spec_err)
}

/// Adds `opts`' `--add-host` lines to the `hosts` and its `--dns`, `--dns-search` and
/// `--dns-option` to the `resolv.conf` that [`etc_files`] wrote into `dir`: given name
/// servers replace the host's, as docker's do. Each value is checked to keep to its line.
pub fn etc_extras(dir: &Path, opts: &RunOptions) -> Result<()> {
    let line_safe = |what: &'static str, v: &str| {
        if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c.is_control() || c == '#') {
            Err(Error::option(
                what,
                v.escape_debug(),
                "one word, on one line",
            ))
        } else {
            Ok(())
        }
    };
    if !opts.extra_hosts.is_empty() {
        let mut add = String::new();
        for h in &opts.extra_hosts {
            // NAME:IP, the address possibly IPv6 (docker also takes NAME=IP).
            let (name, ip) = h
                .split_once('=')
                .or_else(|| h.split_once(':'))
                .ok_or_else(|| Error::option("add-host", h.escape_debug(), "NAME:IP"))?;
            line_safe("add-host", name)?;
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            let ip: std::net::IpAddr = ip.parse().map_err(|_| {
                Error::option(
                    "add-host",
                    h.escape_debug(),
                    "not an IP address or host-gateway",
                )
            })?;
            add.push_str(&format!("{ip}\t{name}\n"));
        }
        let p = dir.join("hosts");
        let mut text = std::fs::read_to_string(&p).map_err(|e| Error::io("read", &p, e))?;
        text.push_str(&add);
        std::fs::write(&p, text).map_err(|e| Error::io("write", &p, e))?;
    }
    if opts.dns.is_empty() && opts.dns_search.is_empty() && opts.dns_options.is_empty() {
        return Ok(());
    }
    let p = dir.join("resolv.conf");
    let old = std::fs::read_to_string(&p).map_err(|e| Error::io("read", &p, e))?;
    let mut text = String::new();
    for l in old.lines() {
        let key = l.split_whitespace().next().unwrap_or("");
        let replaced = (key == "nameserver" && !opts.dns.is_empty())
            || ((key == "search" || key == "domain") && !opts.dns_search.is_empty())
            || (key == "options" && !opts.dns_options.is_empty());
        if !replaced {
            text.push_str(l);
            text.push('\n');
        }
    }
    for d in &opts.dns {
        let ip: std::net::IpAddr = d
            .parse()
            .map_err(|_| Error::option("dns", d.escape_debug(), "not an IP address"))?;
        text.push_str(&format!("nameserver {ip}\n"));
    }
    // docker's `--dns-search .`: no search domains at all.
    let search: Vec<&String> = opts
        .dns_search
        .iter()
        .filter(|s| s.as_str() != ".")
        .collect();
    for s in &search {
        line_safe("dns-search", s)?;
    }
    if !search.is_empty() {
        let names: Vec<&str> = search.iter().map(|s| s.as_str()).collect();
        text.push_str(&format!("search {}\n", names.join(" ")));
    }
    for o in &opts.dns_options {
        line_safe("dns-option", o)?;
    }
    if !opts.dns_options.is_empty() {
        text.push_str(&format!("options {}\n", opts.dns_options.join(" ")));
    }
    std::fs::write(&p, text).map_err(|e| Error::io("write", &p, e))
}

/// Whether every `nameserver` of a resolv.conf is on the loopback (systemd-resolved's
/// 127.0.0.53, dnsmasq's 127.0.0.1), or there is none.
fn only_loopback_servers(text: &str) -> bool {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("nameserver")).then(|| f.next()).flatten()
        })
        .all(|a| a.starts_with("127.") || a == "::1")
}

/// The host's resolv.conf for a container: as docker does, when it names only a loopback
/// resolver and systemd-resolved keeps the real upstream servers in
/// `/run/systemd/resolve/resolv.conf`, that file (a container cannot reach the host's
/// loopback).
fn host_resolv_conf(network: NetworkMode) -> String {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if network == NetworkMode::Bridge && only_loopback_servers(&text) {
        if let Ok(up) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf") {
            if !only_loopback_servers(&up) {
                return up;
            }
        }
    }
    text
}

/// Which seccomp filter a container gets (`--security-opt seccomp=...`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum SeccompChoice {
    /// Docker's default profile for the container's capabilities (see
    /// [`crate::docker_default_seccomp`]); none with `--privileged`, and none where this crate cannot
    /// compile seccomp yet (architectures other than x86_64 and aarch64).
    #[default]
    Default,
    /// No filter (`seccomp=unconfined`).
    Unconfined,
    /// This profile (`seccomp=FILE`, the runtime spec's `linux.seccomp` JSON).
    Profile(oci_spec::runtime::LinuxSeccomp),
}

/// What `docker run` flags change in the spec built from the image.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RunOptions {
    /// Command and arguments replacing the image's Cmd (Entrypoint is kept).
    pub args: Vec<String>,
    /// Replaces the image's Entrypoint when set (and then its Cmd too, as docker's: only
    /// `args` follow it); `[""]` or `[]` is none at all.
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE` pairs added to (or replacing those of) the image's Env.
    pub env: Vec<String>,
    /// Replaces the image's WorkingDir.
    pub workdir: Option<String>,
    /// Replaces the image's User (`uid`, `uid:gid`, `name`, `name:group`).
    pub user: Option<String>,
    /// The network.
    pub network: NetworkMode,
    /// Join this network namespace instead (`/proc/PID/ns/net` of another container's init:
    /// docker's `--network container:NAME`, as the containers of a pod share one).
    pub join_network: Option<PathBuf>,
    /// The hostname (default `container`).
    pub hostname: Option<String>,
    /// Allocate a terminal.
    pub terminal: bool,
    /// Run in a user namespace of the calling (unprivileged) user, as rootless podman does:
    /// container root is the user, container ids from 1 are the user's subordinate range.
    pub rootless: Option<Rootless>,
    /// Binds and tmpfs mounts, in order.
    pub mounts: Vec<ExtraMount>,
    /// Mount the root filesystem read-only.
    pub read_only: bool,
    /// Memory limit in bytes (`--memory`).
    pub memory: Option<i64>,
    /// CPU limit in CPUs (`--cpus 1.5`), as a CFS quota over a 100 ms period.
    pub cpus: Option<f64>,
    /// Process limit (`--pids-limit`).
    pub pids_limit: Option<i64>,
    /// The rest of docker's resource flags: `--cpu-shares`, `--cpu-period`, `--cpu-quota`,
    /// `--cpuset-cpus`, `--cpuset-mems`, `--memory-swap`, `--memory-reservation` (its
    /// `cpus`, `memory` and `pids_limit` are ignored: the fields above are the run's).
    pub resources: ResourceFlags,
    /// The kernel's OOM-killer preference for its processes (`--oom-score-adj`, -1000 to
    /// 1000).
    pub oom_score_adj: Option<i32>,
    /// Capabilities added to docker's default set (`NET_ADMIN`, `CAP_NET_ADMIN`, `ALL`).
    pub cap_add: Vec<String>,
    /// Capabilities removed from it (`ALL` drops all).
    pub cap_drop: Vec<String>,
    /// Every capability, every device, no masked or read-only paths (`--privileged`).
    pub privileged: bool,
    /// Set `no_new_privs`, so setuid binaries and file capabilities gain nothing
    /// (`--security-opt no-new-privileges`).
    pub no_new_privileges: bool,
    /// The seccomp filter.
    pub seccomp: SeccompChoice,
    /// Kernel parameters of the container's namespaces (`--sysctl net.ipv4.ip_forward=1`):
    /// only those a namespace of its own holds (see [`check_sysctl`]).
    pub sysctls: std::collections::BTreeMap<String, String>,
    /// Resource limits of its processes, as docker's `--ulimit NAME=SOFT[:HARD]`.
    pub ulimits: Vec<String>,
    /// The size of its `/dev/shm` in bytes (`--shm-size`; docker's default is 64 MiB).
    pub shm_size: Option<u64>,
    /// More groups for its user (`--group-add`): gids, or names in the image's
    /// `/etc/group`.
    pub group_add: Vec<String>,
    /// More lines of its `/etc/hosts` (`--add-host NAME:IP`).
    pub extra_hosts: Vec<String>,
    /// Its name servers (`--dns`), instead of the host's.
    pub dns: Vec<String>,
    /// Its search domains (`--dns-search`).
    pub dns_search: Vec<String>,
    /// Its resolver options (`--dns-option`).
    pub dns_options: Vec<String>,
    /// Its health check (`--health-cmd` and the other `--health-*` flags, `--no-healthcheck`):
    /// each field set replaces the image's (see [`Healthcheck::merged_under`]).
    ///
    /// [`Healthcheck::merged_under`]: oci_rs_image::Healthcheck::merged_under
    pub healthcheck: Option<oci_rs_image::Healthcheck>,
    /// Its pid namespace (`--pid`).
    pub pid: crate::NamespaceChoice,
    /// The host's UTS namespace (`--uts host`): the host's hostname, which the container
    /// cannot change; `hostname` is then the host's (the engine sets it).
    pub uts_host: bool,
    /// Its IPC namespace and `/dev/shm` (`--ipc`).
    pub ipc: crate::NamespaceChoice,
    /// Host devices it is given (`--device`).
    pub devices: Vec<crate::DeviceMapping>,
}

impl RunOptions {
    /// Applies one of docker's `--security-opt` values: `no-new-privileges` (also
    /// `no-new-privileges:true` and `=true`), `seccomp=unconfined`, or `seccomp=FILE`, a
    /// profile in the runtime spec's `linux.seccomp` JSON, read now (`:` may stand for `=`).
    ///
    /// ```
    /// let mut opts = oci_rs_runtime::RunOptions::default();
    /// opts.security_opt("no-new-privileges").unwrap();
    /// opts.security_opt("seccomp=unconfined").unwrap();
    /// assert!(opts.no_new_privileges);
    /// assert!(opts.security_opt("apparmor=x").is_err());
    /// ```
    pub fn security_opt(&mut self, opt: &str) -> Result<()> {
        match opt {
            "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true" => {
                self.no_new_privileges = true
            }
            "no-new-privileges:false" | "no-new-privileges=false" => self.no_new_privileges = false,
            "seccomp=unconfined" | "seccomp:unconfined" => self.seccomp = SeccompChoice::Unconfined,
            o if o.starts_with("seccomp=") || o.starts_with("seccomp:") => {
                let path = PathBuf::from(&o["seccomp=".len()..]);
                let text = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
                let profile = serde_json::from_slice(&text)
                    .map_err(|source| Error::SeccompProfile { path, source })?;
                self.seccomp = SeccompChoice::Profile(profile);
            }
            other => {
                return Err(Error::option(
                    "security option",
                    other,
                    "supported: no-new-privileges, seccomp=FILE, seccomp=unconfined",
                ))
            }
        }
        Ok(())
    }
}

/// Parses a capability name as docker accepts it: any case, with or without `CAP_`.
pub fn parse_capability(name: &str) -> Result<Capability> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(bare).map_err(|_| Error::option("capability", name, "unknown"))
}

/// What `--cap-add ALL` and `--privileged` give: every capability this process's bounding set
/// holds (as docker gives what its daemon has; a capability the caller lacks cannot be given).
pub(crate) fn all_capabilities() -> Capabilities {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    crate::plan::CAPABILITY_NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| bounding & (1 << i) != 0)
        .filter_map(|(_, n)| Capability::from_str(n).ok())
        .collect()
}

/// Docker's default capabilities with `add` and `drop` applied (`ALL` in either).
pub fn capability_set(add: &[String], drop: &[String]) -> Result<Capabilities> {
    let mut caps: Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
    let is_all = |s: &String| s.eq_ignore_ascii_case("all");
    if drop.iter().any(is_all) {
        caps.clear();
    }
    for d in drop.iter().filter(|s| !is_all(s)) {
        caps.remove(&parse_capability(d)?);
    }
    if add.iter().any(is_all) {
        caps = all_capabilities();
    }
    for a in add.iter().filter(|s| !is_all(s)) {
        caps.insert(parse_capability(a)?);
    }
    Ok(caps)
}

fn id_maps(own: u32, sub: Option<(u32, u32)>) -> Result<Vec<LinuxIdMapping>> {
    let map = |c: u32, h: u32, n: u32| {
        LinuxIdMappingBuilder::default()
            .container_id(c)
            .host_id(h)
            .size(n)
            .build()
            .map_err(|source| Error::Build {
                what: "id mapping",
                source,
            })
    };
    let mut out = vec![map(0, own, 1)?];
    if let Some((start, count)) = sub.filter(|s| s.1 > 0) {
        out.push(map(1, start, count)?);
    }
    Ok(out)
}

fn spec_err(source: oci_spec::OciSpecError) -> Error {
    Error::Build {
        what: "runtime spec",
        source,
    }
}

/// From an image configuration and `docker run` options to a runtime [`Spec`], the way
/// docker does it: Entrypoint + Cmd (or the given arguments), Env over docker's default PATH,
/// WorkingDir, User resolved against the image's own `/etc/passwd` and `/etc/group` (read
/// inside the rootfs, never through a link out of it), docker's 14 default capabilities
/// (none inheritable or ambient; none effective for a non-root user), docker's device rules,
/// the default mounts, masked and read-only paths, binds, tmpfs mounts, a read-only root and
/// cgroup limits.
///
/// ```no_run
/// # fn main() -> oci_rs_runtime::Result<()> {
/// use oci_rs_runtime::{spec_from_image, NetworkMode, RunOptions};
/// let config: oci_spec::image::ImageConfiguration =
///     serde_json::from_str(r#"{"architecture":"amd64","os":"linux",
///         "config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]}}"#).unwrap();
/// let opts = RunOptions {
///     args: vec!["echo".into(), "hi".into()],
///     network: NetworkMode::Host,
///     memory: Some(64 << 20),
///     ..RunOptions::default()
/// };
/// let spec = spec_from_image(&config, "/var/lib/c/rootfs".as_ref(), &opts)?;
/// # let _ = spec; Ok(()) }
/// ```
///
/// Builds a runtime spec from an image configuration and `docker run` options, as docker
/// does (see the module docs). `rootfs` is where the image's filesystem is.
pub fn spec_from_image(
    image: &ImageConfiguration,
    rootfs: &Path,
    opts: &RunOptions,
) -> Result<Spec> {
    let cfg = image.config().clone().unwrap_or_default();
    // docker's `--entrypoint ""` (sent as `[""]`) is no entrypoint at all.
    let entrypoint = opts
        .entrypoint
        .clone()
        .map(|e| e.into_iter().filter(|a| !a.is_empty()).collect::<Vec<_>>());
    let mut args: Vec<String> = entrypoint
        .clone()
        .or_else(|| cfg.entrypoint().clone())
        .unwrap_or_default();
    // As docker's: an entrypoint given replaces the image's Cmd too.
    if opts.args.is_empty() && entrypoint.is_none() {
        args.extend(cfg.cmd().clone().unwrap_or_default());
    } else {
        args.extend(opts.args.iter().cloned());
    }
    if args.is_empty() {
        return Err(Error::option(
            "command",
            "",
            "the image has no Entrypoint or Cmd and none was given",
        ));
    }

    let mut env: Vec<String> = vec![format!("PATH={}", crate::plan::DEFAULT_PATH)];
    for e in cfg.env().iter().flatten().chain(opts.env.iter()) {
        set_env(&mut env, e);
    }
    if opts.terminal {
        set_env(&mut env, "TERM=xterm");
    }
    let hostname = opts
        .hostname
        .clone()
        .unwrap_or_else(|| "container".to_owned());
    check_hostname(&hostname)?;
    set_env(&mut env, &format!("HOSTNAME={hostname}"));

    let user_spec = opts
        .user
        .clone()
        .or_else(|| cfg.user().clone())
        .unwrap_or_default();
    let (uid, gid, mut extra) = resolve_user(rootfs, &user_spec)?;
    for g in &opts.group_add {
        // A gid as it is; a name looked up in the image's /etc/group.
        let gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => resolve_user(rootfs, &format!("0:{g}"))?.1,
        };
        if !extra.contains(&gid) {
            extra.push(gid);
        }
    }
    // docker's: HOME from the user's passwd entry unless the image or the run sets it.
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        set_env(&mut env, &format!("HOME={}", home_dir(rootfs, uid)));
    }
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| cfg.working_dir().clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    if !cwd.starts_with('/') {
        return Err(Error::option("working directory", cwd, "not absolute"));
    }
    let user = UserBuilder::default()
        .uid(uid)
        .gid(gid)
        .additional_gids(extra)
        .build()
        .map_err(spec_err)?;

    let caps = if opts.privileged {
        all_capabilities()
    } else {
        capability_set(&opts.cap_add, &opts.cap_drop)?
    };
    // Never inheritable or ambient (the CVE-2022-29162 class: oci-spec's builder defaults
    // fill both), and as docker: a non-root user keeps only the bounding set, so its
    // processes start with no capabilities (a setuid or file-capability binary can still
    // gain what the bounding set allows).
    let seccomp = match (&opts.seccomp, opts.privileged) {
        (SeccompChoice::Profile(p), _) => Some(p.clone()),
        (SeccompChoice::Unconfined, _) | (_, true) => None,
        (SeccompChoice::Default, false) if crate::seccomp::Arch::HOST.is_some() => {
            Some(crate::default_seccomp::docker_default_seccomp(&caps)?)
        }
        (SeccompChoice::Default, false) => {
            tracing::warn!("no default seccomp profile on this architecture yet");
            None
        }
    };
    let none = HashSet::new();
    let (eff, perm) = if uid == 0 {
        (caps.clone(), caps.clone())
    } else {
        (none.clone(), none.clone())
    };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps)
        .effective(eff)
        .permitted(perm)
        .inheritable(none.clone())
        .ambient(none)
        .build()
        .map_err(spec_err)?;
    if let Some(o) = opts.oom_score_adj {
        if !(-1000..=1000).contains(&o) {
            return Err(Error::option(
                "oom-score-adj",
                o,
                "not between -1000 and 1000",
            ));
        }
    }
    let mut process = ProcessBuilder::default();
    if let Some(o) = opts.oom_score_adj {
        process = process.oom_score_adj(o);
    }
    let process = process
        .capabilities(capabilities)
        .args(args)
        .env(env)
        .cwd(cwd)
        .user(user)
        .terminal(opts.terminal)
        .no_new_privileges(opts.no_new_privileges)
        .rlimits(
            opts.ulimits
                .iter()
                .map(|u| parse_ulimit(u))
                .collect::<Result<Vec<_>>>()?,
        )
        .build()
        .map_err(spec_err)?;
    let mut spec = match &opts.rootless {
        // Its mounts and namespaces (a user namespace; /sys bound, not mounted).
        Some(r) => Spec::rootless(r.uid, r.gid),
        None => Spec::default(),
    };
    spec.set_process(Some(process));
    spec.set_root(Some(
        RootBuilder::default()
            .path(rootfs)
            .readonly(opts.read_only)
            .build()
            .map_err(spec_err)?,
    ));
    // With the host's UTS namespace there is no hostname of its own to set.
    spec.set_hostname((!opts.uts_host).then_some(hostname));
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    if let Some(size) = opts.shm_size {
        if size == 0 {
            return Err(Error::option("shm-size", size, "above zero"));
        }
        for m in mounts
            .iter_mut()
            .filter(|m| m.destination() == Path::new("/dev/shm"))
        {
            let mut o: Vec<String> = m.options().clone().unwrap_or_default();
            o.retain(|x| !x.starts_with("size="));
            o.push(format!("size={size}"));
            m.set_options(Some(o));
        }
    }
    crate::sharing::shm_mount(&mut mounts, &opts.ipc)?;
    for m in &opts.mounts {
        // A later mount on the same target replaces an earlier one, as docker's do.
        mounts.retain(|x| x.destination() != Path::new(m.target()));
        mounts.push(m.to_spec()?);
    }
    spec.set_mounts(Some(mounts));
    if let Some(linux) = spec.linux_mut() {
        let mut ns = linux
            .namespaces()
            .clone()
            .unwrap_or_else(get_default_namespaces);
        ns.retain(|n| n.typ() != LinuxNamespaceType::Network);
        // A network namespace of its own unless it shares the host's or another's (the
        // rootless base spec has none at all, which would have left such containers on the
        // host's network).
        if opts.network != NetworkMode::Host && opts.join_network.is_none() {
            ns.push(
                oci_spec::runtime::LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::Network)
                    .build()
                    .map_err(spec_err)?,
            );
        }
        if let Some(path) = &opts.join_network {
            ns.push(
                oci_spec::runtime::LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::Network)
                    .path(path)
                    .build()
                    .map_err(spec_err)?,
            );
        }
        crate::sharing::join_namespaces(&mut ns, &opts.pid, &opts.ipc)?;
        if opts.uts_host {
            ns.retain(|n| n.typ() != oci_spec::runtime::LinuxNamespaceType::Uts);
        }
        linux.set_namespaces(Some(ns));
        if let Some(r) = &opts.rootless {
            linux.set_uid_mappings(Some(id_maps(r.uid, r.subuids)?));
            linux.set_gid_mappings(Some(id_maps(r.gid, r.subgids)?));
        }
        linux.set_seccomp(seccomp);
        if !opts.sysctls.is_empty() {
            for (k, v) in &opts.sysctls {
                check_sysctl(k, v, opts.network)?;
            }
            let mut all = linux.sysctl().clone().unwrap_or_default();
            all.extend(opts.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())));
            linux.set_sysctl(Some(all));
        }
        if opts.privileged {
            linux.set_masked_paths(None);
            linux.set_readonly_paths(None);
        }
        let (nodes, mut allowed) = crate::sharing::device_entries(&opts.devices)?;
        if !nodes.is_empty() {
            let mut all = linux.devices().clone().unwrap_or_default();
            all.retain(|d| !nodes.iter().any(|n| n.path() == d.path()));
            all.extend(nodes);
            linux.set_devices(Some(all));
        }
        let res = LinuxResourcesBuilder::default().devices(if opts.privileged {
            vec![LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .access("rwm")
                .build()
                .map_err(spec_err)?]
        } else {
            let mut rules = docker_device_rules()?;
            rules.append(&mut allowed);
            rules
        });
        if let Some(m) = opts.memory {
            // A run's limit is a limit: -1 (none) is an update's word.
            if m < 6 << 20 {
                return Err(Error::option(
                    "memory limit",
                    format!("{m} bytes"),
                    "below the minimum of 6 MiB",
                ));
            }
        }
        let limits = resources_of(&ResourceFlags {
            cpus: opts.cpus,
            memory: opts.memory,
            pids_limit: opts.pids_limit,
            ..opts.resources.clone()
        })?;
        let mut res = res.build().map_err(spec_err)?;
        res.set_memory(*limits.memory());
        res.set_cpu(limits.cpu().clone());
        res.set_pids(*limits.pids());
        linux.set_resources(Some(res));
    }
    Ok(spec)
}

/// docker's resource flags as `update` takes them. Memory values are bytes, `-1` for no
/// limit.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ResourceFlags {
    /// CPU time in CPUs (`--cpus 1.5`), as a CFS quota over a 100 ms period.
    pub cpus: Option<f64>,
    /// Relative CPU weight (`--cpu-shares`, 2 to 262144).
    pub cpu_shares: Option<u64>,
    /// The CFS period in microseconds (`--cpu-period`, 1000 to 1000000).
    pub cpu_period: Option<u64>,
    /// The CFS quota in microseconds per period (`--cpu-quota`, at least 1000, or -1).
    pub cpu_quota: Option<i64>,
    /// The CPUs allowed (`--cpuset-cpus 0-1`).
    pub cpuset_cpus: Option<String>,
    /// The memory nodes allowed (`--cpuset-mems 0`).
    pub cpuset_mems: Option<String>,
    /// Memory limit (`--memory`; at least 6 MiB, or -1).
    pub memory: Option<i64>,
    /// Memory plus swap (`--memory-swap`), or -1.
    pub memory_swap: Option<i64>,
    /// The soft limit the kernel reclaims down to under pressure (`--memory-reservation`;
    /// at least 6 MiB, at most the limit).
    pub memory_reservation: Option<i64>,
    /// Process limit (`--pids-limit`; 0 or -1: none).
    pub pids_limit: Option<i64>,
}

/// The `linux.resources` that `flags` set (what [`Container::update`](crate::Container::update)
/// writes), checked as docker checks them.
pub fn resources_of(flags: &ResourceFlags) -> Result<LinuxResources> {
    let mut res = LinuxResourcesBuilder::default();
    if flags.memory.is_some() || flags.memory_swap.is_some() || flags.memory_reservation.is_some() {
        let mut m = LinuxMemoryBuilder::default();
        if let Some(r) = flags.memory_reservation {
            if r < 6 << 20 {
                return Err(Error::option(
                    "memory-reservation",
                    format!("{r} bytes"),
                    "below the minimum of 6 MiB",
                ));
            }
            if flags.memory.is_some_and(|l| l != -1 && r > l) {
                return Err(Error::option(
                    "memory-reservation",
                    format!("{r} bytes"),
                    "above the memory limit",
                ));
            }
            m = m.reservation(r);
        }
        if flags.memory_swap.is_some_and(|s| s != -1) && flags.memory.is_none() {
            return Err(Error::option(
                "memory-swap",
                flags.memory_swap.unwrap_or_default(),
                "set only with a memory limit (--memory)",
            ));
        }
        if let Some(limit) = flags.memory {
            if limit != -1 && limit < 6 << 20 {
                return Err(Error::option(
                    "memory limit",
                    format!("{limit} bytes"),
                    "below the minimum of 6 MiB",
                ));
            }
            m = m.limit(limit);
        }
        if let Some(swap) = flags.memory_swap {
            if swap != -1 && flags.memory.is_some_and(|l| l != -1 && swap < l) {
                return Err(Error::option(
                    "memory-swap",
                    format!("{swap} bytes"),
                    "below the memory limit",
                ));
            }
            m = m.swap(swap);
        }
        res = res.memory(m.build().map_err(spec_err)?);
    }
    if flags.cpus.is_some()
        || flags.cpu_shares.is_some()
        || flags.cpu_period.is_some()
        || flags.cpu_quota.is_some()
        || flags.cpuset_cpus.is_some()
        || flags.cpuset_mems.is_some()
    {
        let mut c = LinuxCpuBuilder::default();
        if flags.cpus.is_some() && (flags.cpu_period.is_some() || flags.cpu_quota.is_some()) {
            return Err(Error::option(
                "cpus",
                flags.cpus.unwrap_or_default(),
                "conflicts with --cpu-period and --cpu-quota (docker's: use one or the other)",
            ));
        }
        if let Some(p) = flags.cpu_period {
            if !(1000..=1_000_000).contains(&p) {
                return Err(Error::option(
                    "cpu-period",
                    p,
                    "not between 1000 and 1000000 µs",
                ));
            }
            c = c.period(p);
        }
        if let Some(q) = flags.cpu_quota {
            if q != -1 && q < 1000 {
                return Err(Error::option(
                    "cpu-quota",
                    q,
                    "below the minimum of 1000 µs",
                ));
            }
            c = c.quota(q);
        }
        if let Some(m) = &flags.cpuset_mems {
            check_cpuset("cpuset-mems", m)?;
            c = c.mems(m.clone());
        }
        if let Some(cpus) = flags.cpus {
            if !(cpus > 0.0 && cpus.is_finite()) {
                return Err(Error::option("cpus", cpus, "not a positive number"));
            }
            let period: u64 = 100_000;
            c = c
                .period(period)
                .quota((cpus * period as f64).round() as i64);
        }
        if let Some(s) = flags.cpu_shares {
            if !(2..=262_144).contains(&s) {
                return Err(Error::option("cpu-shares", s, "not between 2 and 262144"));
            }
            c = c.shares(s);
        }
        if let Some(set) = &flags.cpuset_cpus {
            check_cpuset("cpuset-cpus", set)?;
            c = c.cpus(set.clone());
        }
        res = res.cpu(c.build().map_err(spec_err)?);
    }
    if let Some(p) = flags.pids_limit {
        res = res.pids(
            LinuxPidsBuilder::default()
                .limit(p)
                .build()
                .map_err(spec_err)?,
        );
    }
    res.build().map_err(spec_err)
}

/// A cpuset list as the kernel takes it (`0-3,5`): anything else would only fail later, in
/// the cgroup's file, with less to say.
fn check_cpuset(option: &'static str, v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.split(',').all(|r| {
            let mut ends = r.splitn(2, '-');
            let a = ends.next().and_then(|x| x.parse::<u32>().ok());
            match (a, ends.next()) {
                (Some(_), None) => true,
                (Some(a), Some(b)) => b.parse::<u32>().is_ok_and(|b| b >= a),
                _ => false,
            }
        });
    match ok {
        true => Ok(()),
        false => Err(Error::option(option, v, "not a list like 0-3,5")),
    }
}

/// Docker's device cgroup rules: deny everything, then the runtime's defaults
/// ([`crate::DEFAULT_ALLOWED`]: mknod of any node; read, write and mknod of null, zero,
/// full, random, urandom, tty, console, ptmx and the pty slaves) and `/dev/net/tun`.
pub fn docker_device_rules() -> Result<Vec<LinuxDeviceCgroup>> {
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .map_err(spec_err)?;
    let tun = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(LinuxDeviceType::C)
        .major(10)
        .minor(200)
        .access("rwm")
        .build()
        .map_err(spec_err)?;
    let mut rules = vec![deny_all];
    rules.extend(crate::DEFAULT_ALLOWED.iter().map(|r| r.to_spec()));
    rules.push(tun);
    Ok(rules)
}

/// Sets `KEY=VALUE` in `env`, replacing an earlier value of `KEY` (as `-e` does over an
/// image's Env).
pub fn set_env(env: &mut Vec<String>, kv: &str) {
    let key = kv.split('=').next().unwrap_or(kv);
    env.retain(|e| e.split('=').next() != Some(key));
    env.push(kv.to_owned());
}

/// Resolves `user[:group]` (names or numbers) against the rootfs' passwd and group files.
/// An empty string is root. Returns uid, gid and the supplementary groups of a named user.
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<(u32, u32, Vec<u32>)> {
    if spec.is_empty() {
        return Ok((0, 0, Vec::new()));
    }
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in_root(rootfs, "etc/passwd").unwrap_or_default();
    let groups = read_in_root(rootfs, "etc/group").unwrap_or_default();
    let (uid, mut gid, name) = match user.parse::<u32>() {
        Ok(uid) => {
            let entry = passwd_entries(&passwd).find(|e| e.uid == uid);
            (
                uid,
                entry.as_ref().map_or(0, |e| e.gid),
                entry.map(|e| e.name),
            )
        }
        Err(_) => {
            let e = passwd_entries(&passwd)
                .find(|e| e.name == user)
                .ok_or_else(|| Error::User {
                    what: "user",
                    name: user.to_owned(),
                    reason: "no matching entries in passwd file",
                })?;
            (e.uid, e.gid, Some(e.name))
        }
    };
    if let Some(g) = group {
        gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_entries(&groups)
                .find(|e| e.0 == g)
                .map(|e| e.1)
                .ok_or_else(|| Error::User {
                    what: "group",
                    name: g.to_owned(),
                    reason: "no matching entries in group file",
                })?,
        };
    }
    let extra = match name {
        Some(name) => group_entries(&groups)
            .filter(|e| e.2.contains(&name) && e.1 != gid)
            .map(|e| e.1)
            .collect(),
        None => Vec::new(),
    };
    Ok((uid, gid, extra))
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

/// docker's `HOME` for `uid`: its home directory in the image's `/etc/passwd`; without one
/// (or with an empty or relative one) `/root` for root and `/` for anyone else, as docker
/// gives them.
pub fn home_dir(rootfs: &Path, uid: u32) -> String {
    let passwd = read_in_root(rootfs, "etc/passwd").unwrap_or_default();
    let fallback = if uid == 0 { "/root" } else { "/" };
    let home = passwd_entries(&passwd)
        .find(|e| e.uid == uid)
        .map(|e| e.home)
        .filter(|h| h.starts_with('/'))
        .unwrap_or(fallback)
        .to_owned();
    home
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 3 {
            return None;
        }
        let members = f.get(3).map_or_else(Vec::new, |m| {
            m.split(',').filter(|s| !s.is_empty()).collect()
        });
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// Reads a small file inside `root`, resolving symlinks as if `root` were `/` (openat2
/// RESOLVE_IN_ROOT), so a hostile image cannot make us read a host file.
fn read_in_root(root: &Path, rel: &str) -> std::io::Result<String> {
    use rustix::fs::{Mode, OFlags};
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let fd = crate::resolve::open_in_root(std::os::fd::AsFd::as_fd(&dir), rel, OFlags::RDONLY)?;
    let mut s = String::new();
    std::fs::File::from(fd)
        .take(1 << 20)
        .read_to_string(&mut s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nextra:x:500:www\n",
        )
        .unwrap();
        d
    }

    fn config(json: &str) -> ImageConfiguration {
        serde_json::from_str(&format!(
            r#"{{"architecture":"amd64","os":"linux","config":{json},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn users_resolve_by_name_and_number() {
        let r = rootfs();
        assert_eq!(resolve_user(r.path(), "").unwrap(), (0, 0, vec![]));
        assert_eq!(resolve_user(r.path(), "www").unwrap(), (33, 33, vec![500]));
        assert_eq!(
            resolve_user(r.path(), "1000:1000").unwrap(),
            (1000, 1000, vec![])
        );
        assert_eq!(resolve_user(r.path(), "www:extra").unwrap().1, 500);
        let e = resolve_user(r.path(), "nobody-here").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unable to find user nobody-here: no matching entries in passwd file"
        );
    }

    #[test]
    fn passwd_symlink_cannot_leave_the_rootfs() {
        let r = tempfile::tempdir().unwrap();
        std::fs::create_dir(r.path().join("etc")).unwrap();
        // Resolved inside the rootfs the link names <rootfs>/etc/shadow, which does not exist;
        // a plain open would have read the host's /etc/shadow.
        std::os::unix::fs::symlink("/../../../../etc/shadow", r.path().join("etc/passwd")).unwrap();
        assert!(resolve_user(r.path(), "root").is_err());
    }

    #[test]
    fn spec_follows_docker_rules() {
        let r = rootfs();
        let cfg = config(
            r#"{"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"],"Env":["PATH=/bin","A=1"],"WorkingDir":"/srv","User":"www"}"#,
        );
        let spec = spec_from_image(&cfg, r.path(), &RunOptions::default()).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/bin/sh", "-c", "echo hi"]);
        assert_eq!(
            p.env().as_ref().unwrap(),
            &["PATH=/bin", "A=1", "HOSTNAME=container", "HOME=/var/www"]
        );
        assert_eq!(p.cwd(), &PathBuf::from("/srv"));
        assert_eq!(p.user().uid(), 33);
        assert_eq!(p.no_new_privileges(), Some(false));

        let opts = RunOptions {
            args: vec!["date".into()],
            env: vec!["A=2".into()],
            network: NetworkMode::Host,
            ..Default::default()
        };
        let spec = spec_from_image(&cfg, r.path(), &opts).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/bin/sh", "-c", "date"]);
        assert!(p.env().as_ref().unwrap().contains(&"A=2".to_owned()));
        let ns = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap();
        assert!(ns.iter().all(|n| n.typ() != LinuxNamespaceType::Network));
    }

    #[test]
    fn no_inheritable_or_ambient_and_none_effective_for_a_non_root_user() {
        let r = rootfs();
        let cfg = config(r#"{"Cmd":["id"]}"#);
        for (user, root) in [("", true), ("65534:65534", false), ("www", false)] {
            let opts = RunOptions {
                user: Some(user.into()),
                ..Default::default()
            };
            let spec = spec_from_image(&cfg, r.path(), &opts).unwrap();
            let caps = spec
                .process()
                .as_ref()
                .unwrap()
                .capabilities()
                .clone()
                .unwrap();
            let len = |s: &Option<Capabilities>| s.as_ref().map_or(0, |s| s.len());
            assert_eq!(len(caps.inheritable()), 0, "{user}");
            assert_eq!(len(caps.ambient()), 0, "{user}");
            assert_eq!(len(caps.bounding()), 14, "{user}");
            assert_eq!(len(caps.effective()), if root { 14 } else { 0 }, "{user}");
            assert_eq!(len(caps.permitted()), if root { 14 } else { 0 }, "{user}");
        }
        let spec = spec_from_image(&cfg, r.path(), &RunOptions::default()).unwrap();
        let devices = spec.linux().as_ref().unwrap().resources().as_ref().unwrap();
        let rules = devices.devices().as_ref().unwrap();
        assert!(
            !rules[0].allow() && rules[0].typ().is_none(),
            "deny all comes first"
        );
        assert!(rules.iter().any(|d| d.allow() && d.major() == Some(136)));
    }

    #[test]
    fn every_network_but_host_and_joined_gets_its_own_namespace_rootless_too() {
        let r = rootfs();
        let cfg = config(r#"{"Cmd":["id"]}"#);
        let net_ns = |opts: &RunOptions| {
            let spec = spec_from_image(&cfg, r.path(), opts).unwrap();
            let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
            ns.into_iter()
                .filter(|n| n.typ() == LinuxNamespaceType::Network)
                .map(|n| n.path().clone())
                .collect::<Vec<_>>()
        };
        for rootless in [None, Some(Rootless::current())] {
            for network in [NetworkMode::None, NetworkMode::Bridge, NetworkMode::Slirp] {
                let opts = RunOptions {
                    network,
                    rootless: rootless.clone(),
                    ..Default::default()
                };
                assert_eq!(net_ns(&opts), vec![None], "{network:?} {rootless:?}");
            }
            let host = RunOptions {
                network: NetworkMode::Host,
                rootless: rootless.clone(),
                ..Default::default()
            };
            assert!(net_ns(&host).is_empty());
            let joined = RunOptions {
                join_network: Some("/proc/1/ns/net".into()),
                rootless,
                ..Default::default()
            };
            assert_eq!(net_ns(&joined), vec![Some(PathBuf::from("/proc/1/ns/net"))]);
        }
    }

    #[test]
    fn loopback_resolvers_are_recognised() {
        assert!(only_loopback_servers(
            "nameserver 127.0.0.53\noptions edns0\n"
        ));
        assert!(only_loopback_servers(
            "nameserver ::1\nnameserver 127.0.0.1\n"
        ));
        assert!(!only_loopback_servers(
            "nameserver 127.0.0.53\nnameserver 10.0.0.2\n"
        ));
    }

    #[test]
    fn capabilities_add_and_drop_as_docker() {
        let set = capability_set(&["net_admin".into()], &["CAP_CHOWN".into()]).unwrap();
        assert!(set.contains(&Capability::NetAdmin));
        assert!(!set.contains(&Capability::Chown));
        assert_eq!(set.len(), 14);
        let set = capability_set(&["KILL".into()], &["ALL".into()]).unwrap();
        assert_eq!(set.into_iter().collect::<Vec<_>>(), vec![Capability::Kill]);
        let all = capability_set(&["ALL".into()], &[]).unwrap();
        assert_eq!(all, all_capabilities());
        assert!(all.len() <= 41 && all.is_superset(&DEFAULT_CAPABILITIES.into_iter().collect()));
        let e = capability_set(&["CAP_NOPE".into()], &[]).unwrap_err();
        assert_eq!(e.to_string(), "invalid capability \"CAP_NOPE\": unknown");
    }

    #[test]
    fn mounts_limits_and_read_only_reach_the_spec() {
        let r = rootfs();
        let cfg = config(r#"{"Cmd":["id"]}"#);
        let opts = RunOptions {
            mounts: vec![
                ExtraMount::parse_volume("/srv/data:/data:ro").unwrap(),
                ExtraMount::parse_tmpfs("/tmp:size=1m").unwrap(),
            ],
            read_only: true,
            memory: Some(64 << 20),
            cpus: Some(1.5),
            pids_limit: Some(50),
            ..Default::default()
        };
        let spec = spec_from_image(&cfg, r.path(), &opts).unwrap();
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        let mounts = spec.mounts().as_ref().unwrap();
        let data = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/data"))
            .unwrap();
        assert!(data.options().as_ref().unwrap().contains(&"ro".to_owned()));
        assert_eq!(
            mounts
                .iter()
                .filter(|m| m.destination() == Path::new("/tmp"))
                .count(),
            1
        );
        let res = spec.linux().as_ref().unwrap().resources().clone().unwrap();
        assert_eq!(res.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(res.cpu().as_ref().unwrap().quota(), Some(150_000));
        assert_eq!(res.pids().as_ref().unwrap().limit(), 50);

        for bad in ["data:/data", "/data:rel", "/a:/b:rw:x", "/a:/b:bogus"] {
            assert!(ExtraMount::parse_volume(bad).is_err(), "{bad}");
        }
        let low = RunOptions {
            memory: Some(1024),
            ..Default::default()
        };
        assert!(spec_from_image(&cfg, r.path(), &low).is_err());
    }
}

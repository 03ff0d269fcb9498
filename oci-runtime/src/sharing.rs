//! What a container may share with the host or another container besides its network:
//! docker's `--pid`, `--ipc` and `--device`.

use crate::error::{Error, Result};
use oci_spec::runtime::{
    LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, Mount, MountBuilder,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Whose namespace of a kind docker lets a container choose: its pid namespace (`--pid`) or
/// its IPC namespace (`--ipc`, with the `/dev/shm` that goes with it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NamespaceChoice {
    /// One of its own (docker's default; `private` for `--ipc`).
    #[default]
    Private,
    /// `--ipc shareable`: one of its own, whose `/dev/shm` is the tmpfs at `shm` on the host
    /// (bound in), so that other containers can join it with `container:NAME`. Whoever
    /// builds the spec mounts that tmpfs (the engine does, in the container's directory).
    Shareable {
        /// The host directory its `/dev/shm` is.
        shm: PathBuf,
    },
    /// The host's (`host`); with `--ipc host` the host's `/dev/shm` too.
    Host,
    /// Another running container's (`container:NAME`), by its init's pid when the spec was
    /// made. For `--ipc`, that container's `/dev/shm` comes from `shm`, the host directory
    /// of a [`NamespaceChoice::Shareable`] one (a mount in another mount namespace cannot be
    /// bound: the kernel refuses).
    Container {
        /// The name it was given by.
        name: String,
        /// Its init's pid (in the caller's pid namespace).
        pid: i32,
        /// Its `/dev/shm` on the host (`--ipc` only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shm: Option<PathBuf>,
    },
    /// `--ipc none`: one of its own, without a `/dev/shm`.
    None,
}

impl NamespaceChoice {
    /// docker's spelling, as `inspect` shows `PidMode` and `IpcMode`: `""` for a private one
    /// (`private` when `private_word`, as docker shows a default IpcMode), `host`,
    /// `container:NAME`, `none`.
    pub fn docker_mode(&self, private_word: bool) -> String {
        match self {
            Self::Private if private_word => "private".into(),
            Self::Private => String::new(),
            Self::Shareable { .. } => "shareable".into(),
            Self::Host => "host".into(),
            Self::Container { name, .. } => format!("container:{name}"),
            Self::None => "none".into(),
        }
    }
}

/// A host device given to a container: docker's `--device HOST[:CONTAINER][:PERMISSIONS]`.
///
/// ```
/// use oci_rs_runtime::DeviceMapping;
/// let d: DeviceMapping = "/dev/fuse".parse().unwrap();
/// assert_eq!((d.container.to_str(), d.access.as_str()), (Some("/dev/fuse"), "rwm"));
/// let d: DeviceMapping = "/dev/null:/dev/mynull:r".parse().unwrap();
/// assert_eq!((d.container.to_str(), d.access.as_str()), (Some("/dev/mynull"), "r"));
/// assert_eq!("/dev/null:rw".parse::<DeviceMapping>().unwrap().access, "rw");
/// assert!("/dev/null:/x:rwz".parse::<DeviceMapping>().is_err());
/// assert!("dev/null".parse::<DeviceMapping>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMapping {
    /// The device node on the host.
    pub host: PathBuf,
    /// Where the container sees it.
    pub container: PathBuf,
    /// What the device cgroup lets it do: letters of `rwm` (read, write, mknod).
    pub access: String,
}

impl std::str::FromStr for DeviceMapping {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &'static str| Error::option("device", s, why);
        let is_access = |a: &str| !a.is_empty() && a.chars().all(|c| "rwm".contains(c));
        let parts: Vec<&str> = s.split(':').collect();
        let (host, container, access) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, a] if is_access(a) => (*h, *h, *a),
            [h, c] => (*h, *c, "rwm"),
            [h, c, a] => (*h, *c, *a),
            _ => return Err(bad("expected HOST[:CONTAINER][:PERMISSIONS]")),
        };
        if !is_access(access) {
            return Err(bad("permissions are letters of rwm"));
        }
        for p in [host, container] {
            if !p.starts_with('/') || Path::new(p).components().any(|c| c.as_os_str() == "..") {
                return Err(bad("device paths are absolute, without `..`"));
            }
        }
        Ok(Self {
            host: host.into(),
            container: container.into(),
            access: access.into(),
        })
    }
}

fn spec_err(source: oci_spec::OciSpecError) -> Error {
    Error::Build {
        what: "runtime spec",
        source,
    }
}

/// Applies `pid` and `ipc` to a spec's namespaces: a host namespace is left out, another
/// container's is joined by path.
pub(crate) fn join_namespaces(
    ns: &mut Vec<LinuxNamespace>,
    pid: &NamespaceChoice,
    ipc: &NamespaceChoice,
) -> Result<()> {
    for (kind, file, choice) in [
        (LinuxNamespaceType::Pid, "pid", pid),
        (LinuxNamespaceType::Ipc, "ipc", ipc),
    ] {
        let path = match choice {
            NamespaceChoice::Private
            | NamespaceChoice::Shareable { .. }
            | NamespaceChoice::None => {
                if ns.iter().any(|n| n.typ() == kind) {
                    continue;
                }
                None
            }
            NamespaceChoice::Host => {
                ns.retain(|n| n.typ() != kind);
                continue;
            }
            NamespaceChoice::Container { pid, .. } => {
                ns.retain(|n| n.typ() != kind);
                Some(PathBuf::from(format!("/proc/{pid}/ns/{file}")))
            }
        };
        let mut b = LinuxNamespaceBuilder::default().typ(kind);
        if let Some(p) = path {
            b = b.path(p);
        }
        ns.push(b.build().map_err(spec_err)?);
    }
    Ok(())
}

/// Makes `/dev/shm` follow the IPC namespace `ipc`: the host's or that container's bound
/// in, none for `none`, the spec's own tmpfs for a private one.
pub(crate) fn shm_mount(mounts: &mut Vec<Mount>, ipc: &NamespaceChoice) -> Result<()> {
    let shm = Path::new("/dev/shm");
    let bind = |source: PathBuf| {
        MountBuilder::default()
            .destination(shm)
            .typ("bind")
            .source(source)
            .options(vec!["rbind".into(), "nosuid".into(), "nodev".into()])
            .build()
            .map_err(spec_err)
    };
    let replacement = match ipc {
        NamespaceChoice::Private => return Ok(()),
        NamespaceChoice::None => None,
        NamespaceChoice::Host => Some(bind(shm.to_owned())?),
        NamespaceChoice::Shareable { shm: host } => Some(bind(host.clone())?),
        NamespaceChoice::Container {
            shm: Some(host), ..
        } => Some(bind(host.clone())?),
        NamespaceChoice::Container {
            name, shm: None, ..
        } => {
            return Err(Error::option(
                "ipc",
                format!("container:{name}"),
                "that container's /dev/shm is not shareable (run it with --ipc shareable)",
            ))
        }
    };
    mounts.retain(|m| m.destination() != shm);
    mounts.extend(replacement);
    Ok(())
}

/// The spec's `linux.devices` entries and device cgroup rules for `devices`: each host path
/// must be a character or block device now; the container gets the same node (number,
/// mode) at its path, owned by root, and the access asked for.
pub(crate) fn device_entries(
    devices: &[DeviceMapping],
) -> Result<(Vec<oci_spec::runtime::LinuxDevice>, Vec<LinuxDeviceCgroup>)> {
    let mut nodes = Vec::new();
    let mut rules = Vec::new();
    for d in devices {
        let st = rustix::fs::stat(&d.host)
            .map_err(|e| Error::io("stat", &d.host, std::io::Error::from(e)))?;
        let kind = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
            rustix::fs::FileType::CharacterDevice => LinuxDeviceType::C,
            rustix::fs::FileType::BlockDevice => LinuxDeviceType::B,
            _ => {
                return Err(Error::option(
                    "device",
                    d.host.display(),
                    "not a character or block device",
                ))
            }
        };
        let (major, minor) = (
            i64::from(rustix::fs::major(st.st_rdev)),
            i64::from(rustix::fs::minor(st.st_rdev)),
        );
        nodes.push(
            LinuxDeviceBuilder::default()
                .path(&d.container)
                .typ(kind)
                .major(major)
                .minor(minor)
                .file_mode(st.st_mode & 0o777)
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(spec_err)?,
        );
        rules.push(
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(kind)
                .major(major)
                .minor(minor)
                .access(d.access.clone())
                .build()
                .map_err(spec_err)?,
        );
    }
    Ok((nodes, rules))
}

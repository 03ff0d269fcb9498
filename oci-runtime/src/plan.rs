//! Turning an `oci_spec::runtime::Spec` into the init's `Plan`: every string, path, flag
//! and number the child needs, computed before the clone.

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::init::{DeviceStep, MountStep, ProcessPlan};
use oci_spec::runtime::{LinuxDeviceType, LinuxNamespaceType, Mount, Process, Spec};
use rustix::fs::FileType;
use rustix::fs::{Mode, OFlags};
use rustix::mount::MountFlags;
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

/// The PATH used to find the program when the process environment has none, and the one
/// docker sets when an image does not set one.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub(crate) fn cstr(s: impl Into<Vec<u8>>, what: &'static str) -> Result<CString> {
    CString::new(s).map_err(|e| {
        Error::spec(
            what,
            String::from_utf8_lossy(&e.into_vec()),
            "contains a NUL byte",
        )
    })
}

/// Checks `ociVersion`: SemVer 2.0 (`MAJOR.MINOR.PATCH`, an optional `-pre.release` and
/// `+build`), of major version 1, the one this runtime implements (every 1.x, since the spec
/// keeps compatibility within a major version). A missing or malformed one is refused, as the
/// spec asks of invalid values.
pub(crate) fn check_version(v: &str) -> Result<()> {
    let refuse = |reason| Err(Error::spec("ociVersion", v, reason));
    let (rest, build) = match v.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (v, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let ident =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let numeric = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
    };
    let parts: Vec<&str> = core.split('.').collect();
    let well_formed = parts.len() == 3
        && parts.iter().all(|p| numeric(p))
        && pre.is_none_or(|p| {
            p.split('.')
                .all(|i| ident(i) && (!i.bytes().all(|b| b.is_ascii_digit()) || numeric(i)))
        })
        && build.is_none_or(|b| b.split('.').all(ident));
    if v.is_empty() {
        return refuse("missing");
    }
    if !well_formed {
        return refuse("not a SemVer 2.0 version");
    }
    if parts[0] != "1" {
        return refuse("unsupported major version (this runtime implements 1.x)");
    }
    Ok(())
}

/// `a/b/c` → [(`a`,`a`), (`a/b`,`b`), (`a/b/c`,`c`)], refusing `..`.
fn prefixes(dest: &Path) -> Result<Vec<(CString, CString)>> {
    let mut out = Vec::new();
    let mut acc = PathBuf::new();
    for c in dest.components() {
        match c {
            Component::Normal(p) => {
                acc.push(p);
                out.push((
                    cstr(acc.as_os_str().as_encoded_bytes(), "mounts[].destination")?,
                    cstr(p.as_encoded_bytes(), "mounts[].destination")?,
                ));
            }
            Component::RootDir | Component::CurDir => {}
            _ => {
                return Err(Error::spec(
                    "mounts[].destination",
                    dest.display(),
                    "has a `..` component",
                ))
            }
        }
    }
    Ok(out)
}

fn raw(bits: u64) -> MountFlags {
    MountFlags::from_bits_retain(bits as _)
}

const MS_REC: u64 = libc::MS_REC;

fn propagation(name: &str) -> Option<MountFlags> {
    let bits = match name {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | MS_REC,
        _ => return None,
    };
    Some(raw(bits))
}

fn mount_step(m: &Mount, bundle: &Path, cgroup: Option<&Cgroup>) -> Result<Vec<MountStep>> {
    let dest = m.destination();
    if !dest.is_absolute() {
        return Err(Error::spec(
            "mounts[].destination",
            dest.display(),
            "not absolute",
        ));
    }
    let mut flags = MountFlags::empty();
    let mut clear = MountFlags::empty();
    let mut data = Vec::new();
    let mut bind = false;
    let mut rec = false;
    let mut prop = None;
    for o in m.options().iter().flatten() {
        match o.as_str() {
            "ro" => flags |= MountFlags::RDONLY,
            "rw" => clear |= MountFlags::RDONLY,
            "nosuid" => flags |= MountFlags::NOSUID,
            "suid" => clear |= MountFlags::NOSUID,
            "nodev" => flags |= MountFlags::NODEV,
            "dev" => clear |= MountFlags::NODEV,
            "noexec" => flags |= MountFlags::NOEXEC,
            "exec" => clear |= MountFlags::NOEXEC,
            "sync" => flags |= MountFlags::SYNCHRONOUS,
            "noatime" => flags |= MountFlags::NOATIME,
            "nodiratime" => flags |= MountFlags::NODIRATIME,
            "relatime" => flags |= MountFlags::RELATIME,
            "strictatime" => flags |= MountFlags::STRICTATIME,
            "bind" => bind = true,
            "rbind" => {
                bind = true;
                rec = true;
            }
            "async" | "atime" | "norelatime" | "defaults" => {}
            other => match propagation(other) {
                Some(p) => prop = Some(p),
                None => data.push(other.to_owned()),
            },
        }
    }
    let flags = flags - clear;
    let typ = m
        .typ()
        .as_deref()
        .unwrap_or(if bind { "bind" } else { "none" });
    if typ == "cgroup" || typ == "cgroup2" && cgroup.is_some_and(|c| matches!(c, Cgroup::V1 { .. }))
    {
        return cgroup_mounts(dest, flags, cgroup);
    }
    let source = m.source().as_ref().map(|s| {
        if bind && s.is_relative() {
            bundle.join(s)
        } else {
            s.clone()
        }
    });
    let file = bind
        && source
            .as_ref()
            .is_some_and(|s| std::fs::metadata(s).is_ok_and(|md| !md.is_dir()));
    let mut step = MountStep {
        source: source
            .as_ref()
            .map(|s| cstr(s.as_os_str().as_encoded_bytes(), "mounts[].source"))
            .transpose()?,
        prefixes: prefixes(dest)?,
        fstype: if bind {
            None
        } else {
            Some(cstr(typ, "mounts[].type")?)
        },
        flags,
        data: if data.is_empty() || bind {
            None
        } else {
            Some(cstr(data.join(","), "mounts[].options")?)
        },
        remount: None,
        propagation: prop,
        file,
    };
    if bind {
        step.flags = MountFlags::BIND
            | if rec {
                raw(MS_REC)
            } else {
                MountFlags::empty()
            };
        // A bind mount ignores other flags; they are applied by a remount.
        if !flags.is_empty() {
            step.remount = Some(flags);
        }
    }
    Ok(vec![step])
}

/// A cgroup v1 mount: a tmpfs with one read-only bind per controller of the container's
/// cgroup (what runc does), or a cgroup2 mount on a v2 host.
fn cgroup_mounts(
    dest: &Path,
    flags: MountFlags,
    cgroup: Option<&Cgroup>,
) -> Result<Vec<MountStep>> {
    let ro = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    match cgroup {
        Some(Cgroup::V2 { .. }) => Ok(vec![MountStep {
            source: Some(cstr("cgroup2", "x")?),
            prefixes: prefixes(dest)?,
            fstype: Some(cstr("cgroup2", "x")?),
            flags: flags | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            data: None,
            remount: None,
            propagation: None,
            file: false,
        }]),
        other => {
            let mut steps = vec![MountStep {
                source: Some(cstr("tmpfs", "x")?),
                prefixes: prefixes(dest)?,
                fstype: Some(cstr("tmpfs", "x")?),
                flags: MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                data: Some(cstr("mode=755", "x")?),
                remount: None,
                propagation: None,
                file: false,
            }];
            if let Some(c) = other {
                for dir in c.dirs() {
                    let Some(ctrl) = dir
                        .strip_prefix("/sys/fs/cgroup")
                        .ok()
                        .and_then(|p| p.components().next())
                        .map(|c| c.as_os_str().to_owned())
                    else {
                        continue;
                    };
                    steps.push(MountStep {
                        source: Some(cstr(
                            dir.as_os_str().as_encoded_bytes(),
                            "linux.cgroupsPath",
                        )?),
                        prefixes: prefixes(&dest.join(ctrl))?,
                        fstype: None,
                        flags: MountFlags::BIND,
                        data: None,
                        remount: Some(ro),
                        propagation: None,
                        file: false,
                    });
                }
            }
            Ok(steps)
        }
    }
}

pub(crate) struct Built {
    pub mounts: Vec<MountStep>,
    pub devices: Vec<DeviceStep>,
    pub symlinks: Vec<(CString, CString)>,
    /// The process's working directory, as prefixes in the root: made when missing (as
    /// runc makes it, and docker's `-w` relies on), after the mounts.
    pub cwd: Vec<(CString, CString)>,
    pub masked: Vec<CString>,
    pub readonly_paths: Vec<CString>,
    pub sysctl: Vec<(CString, CString)>,
    pub propagation: MountFlags,
    /// The propagation given to the container's root after `pivot_root`, when it cannot be
    /// the set-up's (shared, unbindable).
    pub root_propagation: Option<MountFlags>,
}

impl Built {
    /// The mounts' destinations and the devices' paths, in order: what the init's report
    /// names a failing mount or device by (its index).
    pub(crate) fn names(&self) -> (Vec<String>, Vec<String>) {
        let mounts = self
            .mounts
            .iter()
            .map(|m| match m.prefixes.last() {
                Some(p) => format!("/{}", p.0.to_string_lossy()),
                None => "/".into(),
            })
            .collect();
        let devices = self
            .devices
            .iter()
            .map(|d| {
                format!(
                    "/{}/{}",
                    d.parent.to_string_lossy(),
                    d.name.to_string_lossy()
                )
            })
            .collect();
        (mounts, devices)
    }
}

/// Whether sysctl `key` (dotted) belongs to a namespace the container has, as runc decides:
/// the IPC ones and `fs.mqueue.*` to its ipc namespace, `net.*` to its network namespace,
/// `kernel.hostname` and `kernel.domainname` to its uts namespace. Every other sysctl is the
/// host's, and writing it from a container would change the host.
pub(crate) fn sysctl_namespaced(key: &str, has: impl Fn(LinuxNamespaceType) -> bool) -> bool {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        has(LinuxNamespaceType::Ipc)
    } else if key.starts_with("net.") {
        has(LinuxNamespaceType::Network)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        has(LinuxNamespaceType::Uts)
    } else {
        false
    }
}

/// Mounts, devices, /dev symlinks, masked and read-only paths, sysctls.
pub(crate) fn filesystem(
    spec: &Spec,
    bundle: &Path,
    cgroup: Option<&Cgroup>,
    userns: bool,
) -> Result<Built> {
    let mut mounts = Vec::new();
    for m in spec.mounts().iter().flatten() {
        mounts.extend(mount_step(m, bundle, cgroup)?);
    }
    let linux = spec.linux().as_ref();
    let mut devices = Vec::new();
    let defaults = [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ];
    let mut wanted: Vec<(String, FileType, u64, u32, u32, u32, bool)> = defaults
        .iter()
        .map(|(n, ma, mi)| {
            (
                format!("dev/{n}"),
                FileType::CharacterDevice,
                rustix::fs::makedev(*ma, *mi),
                0o666,
                0,
                0,
                true,
            )
        })
        .collect();
    for d in linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        let p = d.path();
        let rel = p.strip_prefix("/").unwrap_or(p);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(Error::spec(
                "linux.devices[].path",
                p.display(),
                "has a `.` or `..` component",
            ));
        }
        let kind = match d.typ() {
            LinuxDeviceType::B => FileType::BlockDevice,
            LinuxDeviceType::P => FileType::Fifo,
            _ => FileType::CharacterDevice,
        };
        let rel = rel.display().to_string();
        wanted.retain(|w| w.0 != rel);
        wanted.push((
            rel,
            kind,
            rustix::fs::makedev(d.major() as u32, d.minor() as u32),
            d.file_mode().unwrap_or(0o666),
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
            userns,
        ));
    }
    for (rel, kind, dev, mode, uid, gid, bind) in wanted {
        let path = Path::new(&rel);
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path.file_name().unwrap_or_default();
        devices.push(DeviceStep {
            dirs: prefixes(parent)?,
            parent: cstr(
                parent.as_os_str().as_encoded_bytes(),
                "linux.devices[].path",
            )?,
            name: cstr(name.as_encoded_bytes(), "linux.devices[].path")?,
            host: cstr(format!("/{rel}"), "linux.devices[].path")?,
            kind,
            dev,
            mode,
            uid,
            gid,
            bind,
        });
    }
    let mut symlinks = Vec::new();
    for (target, link) in [
        ("/proc/self/fd", "dev/fd"),
        ("/proc/self/fd/0", "dev/stdin"),
        ("/proc/self/fd/1", "dev/stdout"),
        ("/proc/self/fd/2", "dev/stderr"),
    ] {
        symlinks.push((cstr(target, "x")?, cstr(link, "x")?));
    }
    if spec
        .mounts()
        .iter()
        .flatten()
        .any(|m| m.destination() == Path::new("/dev/pts"))
    {
        symlinks.push((cstr("pts/ptmx", "x")?, cstr("dev/ptmx", "x")?));
    }
    let paths = |field: &'static str, v: Option<&Vec<String>>| -> Result<Vec<CString>> {
        v.into_iter()
            .flatten()
            .map(|p| {
                if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
                    return Err(Error::spec(field, p, "must be absolute without `..`"));
                }
                cstr(p.as_str(), field)
            })
            .collect()
    };
    let masked = paths(
        "linux.maskedPaths",
        linux.and_then(|l| l.masked_paths().as_ref()),
    )?;
    let readonly_paths = paths(
        "linux.readonlyPaths",
        linux.and_then(|l| l.readonly_paths().as_ref()),
    )?;
    let mut sysctl = Vec::new();
    for (k, v) in linux
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        if k.is_empty()
            || k.contains('/') && k.contains("..")
            || k.split(['.', '/']).any(|c| c.is_empty() || c == "..")
        {
            return Err(Error::spec("linux.sysctl", k, "not a sysctl name"));
        }
        if !sysctl_namespaced(&k.replace('/', "."), |t| {
            linux
                .and_then(|l| l.namespaces().as_ref())
                .is_some_and(|ns| ns.iter().any(|n| n.typ() == t))
        }) {
            return Err(Error::spec(
                "linux.sysctl",
                k,
                "not in a namespace of the container: it would change the host",
            ));
        }
        sysctl.push((
            cstr(format!("sys/{}", k.replace('.', "/")), "linux.sysctl")?,
            cstr(v.as_str(), "linux.sysctl")?,
        ));
    }
    let asked = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        None | Some("") => raw(libc::MS_PRIVATE | MS_REC),
        Some(p) => propagation(p)
            .ok_or_else(|| Error::spec("linux.rootfsPropagation", p, "unknown propagation"))?,
    };
    // An unbindable tree cannot be bound onto itself: it is made private for the set-up,
    // and the container's root gets the propagation asked for after pivot_root (as crun
    // does). A shared one stays shared for the set-up, so that the mounts bound from the
    // host stay in the host's peer groups (mounts propagate both ways, as with runc); only
    // the mount holding the rootfs is made private (pivot_root refuses a shared one), and
    // the root gets the propagation again after pivot_root.
    let (propagation, root_propagation) = if asked.contains(raw(libc::MS_UNBINDABLE)) {
        (raw(libc::MS_PRIVATE | MS_REC), Some(asked))
    } else if asked.contains(raw(libc::MS_SHARED)) {
        (asked, Some(asked))
    } else {
        (asked, None)
    };
    let cwd = match spec.process() {
        Some(p) => prefixes(p.cwd())
            .map_err(|_| Error::spec("process.cwd", p.cwd().display(), "has a `..` component"))?,
        None => Vec::new(),
    };
    Ok(Built {
        mounts,
        devices,
        symlinks,
        cwd,
        masked,
        readonly_paths,
        sysctl,
        propagation,
        root_propagation,
    })
}

/// Capability names in the kernel's numbering (bit i of a capability set is entry i).
pub(crate) const CAPABILITY_NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

fn cap_number(name: &str) -> Option<u64> {
    let n = name.trim_start_matches("CAP_");
    CAPABILITY_NAMES
        .iter()
        .position(|x| *x == n)
        .map(|i| i as u64)
}

fn cap_mask<T: serde::Serialize>(set: Option<&std::collections::HashSet<T>>) -> Result<u64> {
    let mut m = 0u64;
    for c in set.into_iter().flatten() {
        let name = serde_json::to_value(c)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let n = cap_number(&name)
            .ok_or_else(|| Error::spec("process.capabilities", name, "unknown capability"))?;
        m |= 1 << n;
    }
    Ok(m)
}

fn rlimit(name: &str) -> Option<rustix::process::Resource> {
    use rustix::process::Resource as R;
    Some(match name.trim_start_matches("RLIMIT_") {
        "CPU" => R::Cpu,
        "FSIZE" => R::Fsize,
        "DATA" => R::Data,
        "STACK" => R::Stack,
        "CORE" => R::Core,
        "RSS" => R::Rss,
        "NPROC" => R::Nproc,
        "NOFILE" => R::Nofile,
        "MEMLOCK" => R::Memlock,
        "AS" => R::As,
        "LOCKS" => R::Locks,
        "SIGPENDING" => R::Sigpending,
        "MSGQUEUE" => R::Msgqueue,
        "NICE" => R::Nice,
        "RTPRIO" => R::Rtprio,
        "RTTIME" => R::Rttime,
        _ => return None,
    })
}

/// The process part.
pub(crate) fn process(p: &Process) -> Result<ProcessPlan> {
    let args = p.args().clone().unwrap_or_default();
    let Some(arg0) = args.first() else {
        return Err(Error::spec("process.args", "", "empty"));
    };
    let env = p.env().clone().unwrap_or_default();
    // A NUL in args[0] is the args' fault, not the PATH candidates' made from it.
    cstr(arg0.as_str(), "process.args")?;
    let exec = if arg0.contains('/') {
        vec![cstr(arg0.as_str(), "process.args")?]
    } else {
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| cstr(format!("{}/{arg0}", d.trim_end_matches('/')), "process.env"))
            .collect::<Result<_>>()?
    };
    let cwd = p.cwd();
    if !cwd.is_absolute() {
        return Err(Error::spec("process.cwd", cwd.display(), "not absolute"));
    }
    let mut rlimits = Vec::new();
    for r in p.rlimits().iter().flatten() {
        let name = serde_json::to_value(r.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let res =
            rlimit(&name).ok_or_else(|| Error::spec("process.rlimits", name, "unknown rlimit"))?;
        rlimits.push((res, r.soft(), r.hard()));
    }
    let caps = match p.capabilities() {
        Some(c) => Some([
            cap_mask(c.bounding().as_ref())?,
            cap_mask(c.effective().as_ref())?,
            cap_mask(c.permitted().as_ref())?,
            cap_mask(c.inheritable().as_ref())?,
            cap_mask(c.ambient().as_ref())?,
        ]),
        None => None,
    };
    Ok(ProcessPlan {
        exec,
        argv: crate::init::ExecStrings::new(
            args.iter()
                .map(|a| cstr(a.as_str(), "process.args"))
                .collect::<Result<_>>()?,
        ),
        env: crate::init::ExecStrings::new(
            env.iter()
                .map(|e| cstr(e.as_str(), "process.env"))
                .collect::<Result<_>>()?,
        ),
        cwd: cstr(cwd.as_os_str().as_encoded_bytes(), "process.cwd")?,
        uid: p.user().uid(),
        gid: p.user().gid(),
        groups: p.user().additional_gids().clone().unwrap_or_default(),
        umask: p.user().umask(),
        rlimits,
        caps,
        no_new_privs: p.no_new_privileges().unwrap_or(false),
        console_size: p.console_size().as_ref().map(|b| {
            (
                u16::try_from(b.height()).unwrap_or(u16::MAX),
                u16::try_from(b.width()).unwrap_or(u16::MAX),
            )
        }),
        oom_score_adj: p
            .oom_score_adj()
            .map(|v| cstr(v.to_string(), "process.oomScoreAdj"))
            .transpose()?,
    })
}

/// The namespaces of a spec: those to create (clone flags; a time namespace is unshared by
/// the init), and those to join by path (opened now).
pub(crate) struct Namespaces {
    /// The clone flags of the namespaces to create (all but time).
    pub flags: u64,
    /// The namespaces to join, opened, with their clone flags.
    pub join: Vec<(OwnedFd, i32)>,
    pub new_user: bool,
    pub new_uts: bool,
    pub new_time: bool,
    /// The container has a mount namespace of its own, new or joined. Without one (the spec
    /// allows it) its mounts are made in the caller's, and its root is a chroot.
    pub mount: bool,
}

impl Namespaces {
    /// Reads `linux.namespaces`, opening those given by path.
    pub(crate) fn of(linux: Option<&oci_spec::runtime::Linux>) -> Result<Self> {
        let mut ns = Namespaces {
            flags: 0,
            join: Vec::new(),
            new_user: false,
            new_uts: false,
            new_time: false,
            mount: false,
        };
        for n in linux
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
        {
            let flag = match n.typ() {
                LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
                LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
                LinuxNamespaceType::Network => libc::CLONE_NEWNET,
                LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
                LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
                LinuxNamespaceType::User => libc::CLONE_NEWUSER,
                LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
                LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
            };
            match n.path() {
                Some(p) => {
                    let fd = rustix::fs::open(p, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                        .map_err(|e| Error::io("open namespace", p, e))?;
                    ns.join.push((fd, flag));
                }
                None if flag == libc::CLONE_NEWTIME => ns.new_time = true,
                None => {
                    ns.flags |= flag as u64;
                    ns.new_user |= flag == libc::CLONE_NEWUSER;
                    ns.new_uts |= flag == libc::CLONE_NEWUTS;
                }
            }
        }
        ns.mount = ns.flags & libc::CLONE_NEWNS as u64 != 0
            || ns.join.iter().any(|(_, f)| *f == libc::CLONE_NEWNS);
        Ok(ns)
    }
}

/// `linux.timeOffsets` as `timens_offsets` lines (`monotonic` and `boottime` only).
pub(crate) fn time_offsets(spec: &Spec) -> Result<std::ffi::CString> {
    let mut text = String::new();
    let offsets = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().clone())
        .unwrap_or_default();
    let mut clocks: Vec<_> = offsets.iter().collect();
    clocks.sort_by(|a, b| a.0.cmp(b.0));
    for (clock, off) in clocks {
        if clock != "monotonic" && clock != "boottime" {
            return Err(Error::spec(
                "linux.timeOffsets",
                clock,
                "unknown clock (monotonic or boottime)",
            ));
        }
        let ns = off.nanosecs().unwrap_or(0);
        if ns >= 1_000_000_000 {
            return Err(Error::spec(
                "linux.timeOffsets",
                format!("{clock} nanosecs {ns}"),
                "a second or more",
            ));
        }
        text.push_str(&format!("{clock} {} {ns}\n", off.secs().unwrap_or(0)));
    }
    cstr(text, "linux.timeOffsets")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mount(json: serde_json::Value) -> Mount {
        serde_json::from_value(json).unwrap()
    }

    fn spec(json: serde_json::Value) -> Spec {
        let mut base = serde_json::json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "mount"}]}
        });
        if let (Some(b), Some(extra)) = (base.as_object_mut(), json.as_object()) {
            for (k, v) in extra {
                b.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(base).unwrap()
    }

    fn names(v: &[(CString, CString)]) -> Vec<(&str, &str)> {
        v.iter()
            .map(|(a, b)| (a.to_str().unwrap(), b.to_str().unwrap()))
            .collect()
    }

    #[test]
    fn oci_version_must_be_semver_of_major_1() {
        for ok in [
            "1.0.0",
            "1.0.2-dev",
            "1.2.0",
            "1.3.0-rc.1",
            "1.1.0+build.5",
            "1.10.0",
        ] {
            assert!(check_version(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "missing"),
            ("invalid", "SemVer"),
            ("1.0", "SemVer"),
            ("1.0.0.0", "SemVer"),
            ("01.0.0", "SemVer"),
            ("1.0.0-", "SemVer"),
            ("1.0.0-rc.01", "SemVer"),
            ("1.0.0+", "SemVer"),
            ("2.0.0", "major"),
            ("0.9.0", "major"),
        ] {
            let e = check_version(bad).unwrap_err().to_string();
            assert!(e.contains("ociVersion") && e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn mount_destinations_become_prefixes_and_dotdot_is_refused() {
        let p = prefixes(Path::new("/dev/./pts")).unwrap();
        assert_eq!(names(&p), [("dev", "dev"), ("dev/pts", "pts")]);
        let e = prefixes(Path::new("/a/../etc")).unwrap_err();
        assert!(
            matches!(
                &e,
                Error::InvalidSpec {
                    field: "mounts[].destination",
                    ..
                }
            ),
            "{e}"
        );
        let e = mount_step(
            &mount(serde_json::json!({"destination": "rel", "type": "tmpfs"})),
            Path::new("/b"),
            None,
        )
        .unwrap_err();
        assert!(matches!(&e, Error::InvalidSpec { reason, .. } if reason == "not absolute"));
    }

    #[test]
    fn mount_options_split_into_flags_data_and_a_bind_remount() {
        let m = mount(serde_json::json!({
            "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k", "rslave"]
        }));
        let s = &mount_step(&m, Path::new("/b"), None).unwrap()[0];
        assert_eq!(
            s.flags,
            MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::NODEV
        );
        assert_eq!(s.data.as_deref(), Some(c"mode=1777,size=65536k"));
        assert_eq!(s.fstype.as_deref(), Some(c"tmpfs"));
        assert_eq!(s.propagation, Some(raw(libc::MS_SLAVE | MS_REC)));
        assert!(s.remount.is_none() && !s.file);
        // "rw" clears an earlier "ro".
        let m = mount(serde_json::json!({"destination": "/x", "type": "tmpfs",
            "options": ["ro", "rw"]}));
        assert_eq!(
            mount_step(&m, Path::new("/b"), None).unwrap()[0].flags,
            MountFlags::empty()
        );

        // A bind: relative sources are the bundle's, its other flags go to a remount, a
        // file source makes a file target.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let m = mount(serde_json::json!({
            "destination": "/etc/f", "source": "file", "options": ["rbind", "ro", "nosuid"]
        }));
        let s = &mount_step(&m, dir.path(), None).unwrap()[0];
        assert_eq!(
            s.source.as_deref().unwrap().to_bytes(),
            dir.path().join("file").as_os_str().as_encoded_bytes()
        );
        assert_eq!(s.flags, MountFlags::BIND | raw(MS_REC));
        assert_eq!(s.remount, Some(MountFlags::RDONLY | MountFlags::NOSUID));
        assert!(s.fstype.is_none() && s.data.is_none() && s.file);
    }

    #[test]
    fn sysctls_belong_to_the_namespaces_that_hold_them() {
        let only = |t: LinuxNamespaceType| move |x: LinuxNamespaceType| x == t;
        assert!(sysctl_namespaced(
            "net.ipv4.ip_forward",
            only(LinuxNamespaceType::Network)
        ));
        assert!(!sysctl_namespaced(
            "net.ipv4.ip_forward",
            only(LinuxNamespaceType::Ipc)
        ));
        assert!(sysctl_namespaced(
            "kernel.shmmax",
            only(LinuxNamespaceType::Ipc)
        ));
        assert!(sysctl_namespaced(
            "fs.mqueue.msg_max",
            only(LinuxNamespaceType::Ipc)
        ));
        assert!(sysctl_namespaced(
            "kernel.hostname",
            only(LinuxNamespaceType::Uts)
        ));
        // Not namespaced at all: it would change the host.
        assert!(!sysctl_namespaced("vm.swappiness", |_| true));
        assert!(!sysctl_namespaced("kernel.core_pattern", |_| true));
    }

    #[test]
    fn the_filesystem_plan_refuses_what_would_reach_the_host() {
        let bundle = Path::new("/b");
        let refused = |linux: serde_json::Value| {
            let mut l = serde_json::json!({"namespaces": [{"type": "mount"}]});
            for (k, v) in linux.as_object().unwrap() {
                l[k] = v.clone();
            }
            filesystem(&spec(serde_json::json!({"linux": l})), bundle, None, false)
                .err()
                .map(|e| e.to_string())
        };
        let e = refused(serde_json::json!({"sysctl": {"kernel.core_pattern": "|/evil"}})).unwrap();
        assert!(
            e.contains("linux.sysctl") && e.contains("change the host"),
            "{e}"
        );
        let e = refused(serde_json::json!({"sysctl": {"net/../x": "1"}})).unwrap();
        assert!(e.contains("not a sysctl name"), "{e}");
        let e = refused(serde_json::json!({"maskedPaths": ["relative"]})).unwrap();
        assert!(e.contains("linux.maskedPaths"), "{e}");
        let e = refused(serde_json::json!({"readonlyPaths": ["/proc/../etc"]})).unwrap();
        assert!(e.contains("linux.readonlyPaths"), "{e}");
        let e = refused(
            serde_json::json!({"devices": [{"path": "/dev/../etc/x", "type": "c",
            "major": 1, "minor": 3}]}),
        )
        .unwrap();
        assert!(e.contains("linux.devices[].path"), "{e}");
        let e = refused(serde_json::json!({"rootfsPropagation": "sideways"})).unwrap();
        assert!(e.contains("linux.rootfsPropagation"), "{e}");
        // A namespaced sysctl with its namespace is fine.
        assert!(refused(serde_json::json!({
            "namespaces": [{"type": "mount"}, {"type": "network"}],
            "sysctl": {"net.ipv4.ip_forward": "1"}
        }))
        .is_none());
    }

    #[test]
    fn default_devices_are_made_and_spec_devices_replace_them() {
        let s = spec(
            serde_json::json!({"linux": {"namespaces": [{"type": "mount"}],
            "devices": [{"path": "/dev/null", "type": "c", "major": 1, "minor": 3,
                "fileMode": 432, "uid": 5, "gid": 6},
                {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]}}),
        );
        let b = filesystem(&s, Path::new("/b"), None, false).unwrap();
        let null: Vec<&DeviceStep> = b
            .devices
            .iter()
            .filter(|d| d.name.as_c_str() == c"null")
            .collect();
        assert_eq!(
            null.len(),
            1,
            "the spec's /dev/null replaces the default one"
        );
        assert_eq!((null[0].mode, null[0].uid, null[0].gid), (0o660, 5, 6));
        assert!(!null[0].bind);
        for n in [c"zero", c"full", c"random", c"urandom", c"tty", c"fuse"] {
            assert!(b.devices.iter().any(|d| d.name.as_c_str() == n), "{n:?}");
        }
        // In a user namespace, nodes cannot be made: the host's are bound.
        let b = filesystem(&s, Path::new("/b"), None, true).unwrap();
        assert!(b.devices.iter().all(|d| d.bind));
    }

    #[test]
    fn shared_and_unbindable_roots_get_their_propagation_after_pivot_root() {
        let built = |p: &str| {
            let s = spec(
                serde_json::json!({"linux": {"namespaces": [{"type": "mount"}],
                "rootfsPropagation": p}}),
            );
            let b = filesystem(&s, Path::new("/b"), None, false).unwrap();
            (b.propagation, b.root_propagation)
        };
        let private = raw(libc::MS_PRIVATE | MS_REC);
        assert_eq!(built("rslave"), (raw(libc::MS_SLAVE | MS_REC), None));
        assert_eq!(built("private"), (raw(libc::MS_PRIVATE), None));
        let shared = raw(libc::MS_SHARED);
        assert_eq!(built("shared"), (shared, Some(shared)));
        assert_eq!(
            built("runbindable"),
            (private, Some(raw(libc::MS_UNBINDABLE | MS_REC)))
        );
    }

    #[test]
    fn the_process_plan_resolves_the_program_and_checks_its_fields() {
        let proc_of =
            |json: serde_json::Value| -> Process { serde_json::from_value(json).unwrap() };
        let p = process(&proc_of(serde_json::json!({
            "args": ["ls", "-l"], "cwd": "/work", "user": {"uid": 7, "gid": 8},
            "env": ["PATH=/usr/bin:/bin/", "A=b"],
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}],
            "capabilities": {"bounding": ["CAP_KILL", "CAP_CHOWN"]}
        })))
        .unwrap();
        assert_eq!(p.exec, [c"/usr/bin/ls".to_owned(), c"/bin/ls".to_owned()]);
        assert_eq!((p.uid, p.gid), (7, 8));
        assert_eq!(p.cwd.as_c_str(), c"/work");
        assert_eq!(p.rlimits, [(rustix::process::Resource::Nofile, 10, 20)]);
        let caps = p.caps.unwrap();
        assert_eq!(caps[0], (1 << 5) | 1, "KILL is 5, CHOWN 0");
        assert_eq!(caps[1..], [0, 0, 0, 0]);
        // A path is used as it is; no PATH falls back to docker's default.
        let p = process(&proc_of(
            serde_json::json!({"args": ["/bin/sh"], "cwd": "/",
            "user": {"uid": 0, "gid": 0}}),
        ))
        .unwrap();
        assert_eq!(p.exec, [c"/bin/sh".to_owned()]);
        let p = process(&proc_of(serde_json::json!({"args": ["sh"], "cwd": "/",
            "user": {"uid": 0, "gid": 0}})))
        .unwrap();
        assert_eq!(p.exec.len(), DEFAULT_PATH.split(':').count());
        // Refused, each naming its field.
        for (json, field) in [
            (
                serde_json::json!({"args": [], "cwd": "/", "user": {"uid": 0, "gid": 0}}),
                "process.args",
            ),
            (
                serde_json::json!({"args": ["sh"], "cwd": "rel", "user": {"uid": 0, "gid": 0}}),
                "process.cwd",
            ),
            (
                serde_json::json!({"args": ["a\u{0}b"], "cwd": "/", "user": {"uid": 0, "gid": 0}}),
                "process.args",
            ),
            (
                serde_json::json!({"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                "env": ["X=\u{0}"]}),
                "process.env",
            ),
        ] {
            let e = process(&proc_of(json)).unwrap_err();
            assert!(
                matches!(&e, Error::InvalidSpec { field: f, .. } if *f == field),
                "{e}"
            );
        }
    }
}

#[cfg(test)]
mod init_plan_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::init::{channels, ExecOptions, InitOptions, Plan};

    fn spec(namespaces: serde_json::Value, root_propagation: &str) -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "box",
            "process": {"args": ["/bin/sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": namespaces, "rootfsPropagation": root_propagation}
        }))
        .unwrap()
    }

    fn plan_for(s: &Spec, pivot: bool) -> Plan {
        let namespaces = Namespaces::of(s.linux().as_ref()).unwrap();
        let built = filesystem(s, Path::new("/b"), None, false).unwrap();
        let fifo =
            rustix::fs::open("/dev/null", OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let opts = InitOptions {
            rootfs: cstr("/b/rootfs", "root.path").unwrap(),
            namespaces,
            pivot,
            reaper: false,
            undumpable: true,
            groups_denied: false,
            stdio: [None, None, None],
            fifo: (fifo, cstr("self/fd/9", "fifo").unwrap()),
            console: None,
        };
        Plan::for_create(s, built, opts, channels().unwrap().0).unwrap()
    }

    #[test]
    fn an_init_with_a_mount_namespace_prepares_binds_and_pivots_into_its_root() {
        let s = spec(
            serde_json::json!([{"type": "mount"}, {"type": "uts"}, {"type": "network"}]),
            "shared",
        );
        let p = plan_for(&s, true);
        assert!(p.private_root && p.pivot && !p.exec && !p.exec_chroot);
        assert_eq!(p.root_propagation, Some(raw(libc::MS_SHARED)));
        assert_eq!(p.hostname.as_deref(), Some(c"box"));
        assert!(p.loopback_up && p.readonly_root && p.fifo.is_some());
        // `no_pivot` is a chroot, still in the prepared root.
        let p = plan_for(&s, false);
        assert!(p.private_root && !p.pivot);
    }

    #[test]
    fn an_init_without_a_mount_namespace_leaves_the_callers_root_alone() {
        // No mount and no uts namespace: nothing is made private or pivoted in the caller's
        // mount namespace, no late propagation reaches its `/`, and the hostname is the
        // caller's.
        let p = plan_for(&spec(serde_json::json!([{"type": "pid"}]), "shared"), true);
        assert!(!p.private_root && !p.pivot);
        assert_eq!(p.root_propagation, None);
        assert_eq!(p.hostname, None);
        assert!(!p.loopback_up && p.readonly_root);
    }

    #[test]
    fn an_exec_helper_runs_only_its_process() {
        let s = spec(serde_json::json!([{"type": "mount"}]), "rprivate");
        let process = process(s.process().as_ref().unwrap()).unwrap();
        let p = Plan::for_exec(
            cstr("/b/rootfs", "root.path").unwrap(),
            process,
            ExecOptions {
                join: Vec::new(),
                stdio: [None, Some(1), None],
                console: None,
                seccomp: None,
                groups_denied: true,
                chroot: true,
            },
            channels().unwrap().0,
        );
        assert!(p.exec && p.exec_chroot && p.groups_denied && p.undumpable);
        assert!(!p.private_root && !p.pivot && !p.readonly_root);
        assert!(p.mounts.is_empty() && p.devices.is_empty() && p.masked.is_empty());
        assert!(p.fifo.is_none() && p.hostname.is_none() && p.create_container.is_empty());
        assert_eq!(p.stdio, [None, Some(1), None]);
    }
}

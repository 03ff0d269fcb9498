//! Shared pieces of the oci-rs examples and command-line tools.
//!
//! The binaries under `src/bin/` are the examples; this library holds what several of them use,
//! chiefly [`runtime_spec`], which turns an image configuration into a runtime spec the way
//! `docker run` does.

pub mod images;

use anyhow::{bail, Context, Result};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    get_default_namespaces, Capability, LinuxCapabilitiesBuilder, LinuxDeviceCgroup,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxNamespaceType, LinuxResourcesBuilder,
    ProcessBuilder, RootBuilder, Spec, UserBuilder,
};
use std::io::Read;
use std::path::Path;

/// Exit code for a failure of the tool itself (not of the container), as docker and runc use.
pub const EXIT_TOOL_FAILURE: i32 = 125;

/// The PATH docker sets when an image does not set one.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Which network a container gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// A new, empty network namespace (loopback only).
    #[default]
    None,
    /// The host's network namespace.
    Host,
}

/// What `docker run` flags change in the spec built from the image.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Command and arguments replacing the image's Cmd (Entrypoint is kept).
    pub args: Vec<String>,
    /// Replaces the image's Entrypoint when set.
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE` pairs added to (or replacing those of) the image's Env.
    pub env: Vec<String>,
    /// Replaces the image's WorkingDir.
    pub workdir: Option<String>,
    /// Replaces the image's User (`uid`, `uid:gid`, `name`, `name:group`).
    pub user: Option<String>,
    /// The network.
    pub network: Network,
    /// The hostname (defaults to the container id).
    pub hostname: Option<String>,
    /// Allocate a terminal.
    pub terminal: bool,
    /// Run in a user namespace of the calling (unprivileged) user, as rootless podman does:
    /// container root is the user, container ids from 1 are the user's subordinate range
    /// (`/etc/subuid`, `/etc/subgid`) when there is one.
    pub rootless: Option<Rootless>,
}

/// The ids a rootless container is mapped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rootless {
    /// The caller's uid and gid (container root).
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
        let name = read_passwd_name(uid);
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

fn read_passwd_name(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    let name = passwd_entries(&text)
        .find(|e| e.2 == uid)
        .map(|e| e.0.to_owned());
    name
}

fn id_maps(own: u32, sub: Option<(u32, u32)>) -> Result<Vec<oci_spec::runtime::LinuxIdMapping>> {
    let map = |c: u32, h: u32, n: u32| {
        oci_spec::runtime::LinuxIdMappingBuilder::default()
            .container_id(c)
            .host_id(h)
            .size(n)
            .build()
    };
    let mut out = vec![map(0, own, 1)?];
    if let Some((start, count)) = sub.filter(|s| s.1 > 0) {
        out.push(map(1, start, count)?);
    }
    Ok(out)
}

/// Builds a runtime spec from an image configuration, as `docker run` does: Entrypoint + Cmd
/// (or the given args), Env merged over a default PATH, WorkingDir, User resolved against the
/// rootfs' `/etc/passwd` and `/etc/group`, the default mounts and namespaces, and the network.
pub fn runtime_spec(image: &ImageConfiguration, rootfs: &Path, opts: &RunOptions) -> Result<Spec> {
    let cfg = image.config().clone().unwrap_or_default();
    let mut args: Vec<String> = opts
        .entrypoint
        .clone()
        .or_else(|| cfg.entrypoint().clone())
        .unwrap_or_default();
    if opts.args.is_empty() {
        args.extend(cfg.cmd().clone().unwrap_or_default());
    } else {
        args.extend(opts.args.iter().cloned());
    }
    if args.is_empty() {
        bail!("no command: the image has no Entrypoint or Cmd and none was given");
    }

    let mut env: Vec<String> = vec![DEFAULT_PATH.to_owned()];
    for e in cfg.env().iter().flatten().chain(opts.env.iter()) {
        set_env(&mut env, e);
    }
    if opts.terminal {
        set_env(&mut env, "TERM=xterm");
    }

    let user_spec = opts
        .user
        .clone()
        .or_else(|| cfg.user().clone())
        .unwrap_or_default();
    let (uid, gid, extra) = resolve_user(rootfs, &user_spec)?;
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| cfg.working_dir().clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    if !cwd.starts_with('/') {
        bail!("working directory {cwd:?} is not absolute");
    }

    let user = UserBuilder::default()
        .uid(uid)
        .gid(gid)
        .additional_gids(extra)
        .build()?;
    // Docker's default capability set.
    let caps: std::collections::HashSet<Capability> = [
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
    ]
    .into_iter()
    .collect();
    // Never inheritable or ambient (the CVE-2022-29162 class: oci-spec's builder defaults
    // fill both), and as docker: a non-root user keeps only the bounding set, so its
    // processes start with no capabilities (a setuid or file-capability binary can still
    // gain what the bounding set allows).
    let none = std::collections::HashSet::new();
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
        .build()?;
    let process = ProcessBuilder::default()
        .capabilities(capabilities)
        .args(args)
        .env(env)
        .cwd(cwd)
        .user(user)
        .terminal(opts.terminal)
        .no_new_privileges(true)
        .build()?;
    let mut spec = match &opts.rootless {
        // Its mounts and namespaces (a user namespace; /sys bound, not mounted).
        Some(r) => Spec::rootless(r.uid, r.gid),
        None => Spec::default(),
    };
    spec.set_process(Some(process));
    spec.set_root(Some(
        RootBuilder::default()
            .path(rootfs)
            .readonly(false)
            .build()?,
    ));
    spec.set_hostname(Some(
        opts.hostname
            .clone()
            .unwrap_or_else(|| "container".to_owned()),
    ));
    if let Some(linux) = spec.linux_mut() {
        let mut ns = linux
            .namespaces()
            .clone()
            .unwrap_or_else(get_default_namespaces);
        if opts.network == Network::Host {
            ns.retain(|n| n.typ() != LinuxNamespaceType::Network);
        }
        linux.set_namespaces(Some(ns));
        if let Some(r) = &opts.rootless {
            linux.set_uid_mappings(Some(id_maps(r.uid, r.subuids)?));
            linux.set_gid_mappings(Some(id_maps(r.gid, r.subgids)?));
        }
        linux.set_resources(Some(
            LinuxResourcesBuilder::default()
                .devices(docker_device_rules()?)
                .build()?,
        ));
    }
    Ok(spec)
}

/// Docker's device cgroup rules: deny everything, then the runtime's defaults
/// ([`oci_runtime::DEFAULT_ALLOWED`]: mknod of any node; read, write and mknod of null, zero,
/// full, random, urandom, tty, console, ptmx and the pty slaves) and `/dev/net/tun`. The
/// runtime enforces them through the devices cgroup, so a device node in an image, or one a
/// container makes, opens nothing else.
pub fn docker_device_rules() -> Result<Vec<LinuxDeviceCgroup>> {
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()?;
    let tun = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(LinuxDeviceType::C)
        .major(10)
        .minor(200)
        .access("rwm")
        .build()?;
    let mut rules = vec![deny_all];
    rules.extend(oci_runtime::DEFAULT_ALLOWED.iter().map(|r| r.to_spec()));
    rules.push(tun);
    Ok(rules)
}

fn set_env(env: &mut Vec<String>, kv: &str) {
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
            let entry = passwd_entries(&passwd).find(|e| e.2 == uid);
            (uid, entry.as_ref().map_or(0, |e| e.3), entry.map(|e| e.0))
        }
        Err(_) => {
            let e = passwd_entries(&passwd)
                .find(|e| e.0 == user)
                .with_context(|| {
                    format!("unable to find user {user}: no matching entries in passwd file")
                })?;
            (e.2, e.3, Some(e.0))
        }
    };
    if let Some(g) = group {
        gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_entries(&groups)
                .find(|e| e.0 == g)
                .map(|e| e.1)
                .with_context(|| {
                    format!("unable to find group {g}: no matching entries in group file")
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

type PasswdEntry<'a> = (&'a str, (), u32, u32);

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        Some((f[0], (), f[2].parse().ok()?, f[3].parse().ok()?))
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
fn read_in_root(root: &Path, rel: &str) -> Result<String> {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let fd = openat2(
        &dir,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?;
    let mut s = String::new();
    std::fs::File::from(fd)
        .take(1 << 20)
        .read_to_string(&mut s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
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
        assert!(resolve_user(r.path(), "nobody-here").is_err());
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
        let cfg: ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"],"Env":["PATH=/bin","A=1"],"WorkingDir":"/srv","User":"www"},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        let spec = runtime_spec(&cfg, r.path(), &RunOptions::default()).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/bin/sh", "-c", "echo hi"]);
        assert_eq!(p.env().as_ref().unwrap(), &["PATH=/bin", "A=1"]);
        assert_eq!(p.cwd(), &std::path::PathBuf::from("/srv"));
        assert_eq!(p.user().uid(), 33);

        let opts = RunOptions {
            args: vec!["date".into()],
            env: vec!["A=2".into()],
            network: Network::Host,
            ..Default::default()
        };
        let spec = runtime_spec(&cfg, r.path(), &opts).unwrap();
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
        let cfg: ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Cmd":["id"]},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        for (user, root) in [("", true), ("65534:65534", false), ("www", false)] {
            let opts = RunOptions {
                user: Some(user.into()),
                ..Default::default()
            };
            let spec = runtime_spec(&cfg, r.path(), &opts).unwrap();
            let caps = spec
                .process()
                .as_ref()
                .unwrap()
                .capabilities()
                .clone()
                .unwrap();
            let len =
                |s: &Option<oci_spec::runtime::Capabilities>| s.as_ref().map_or(0, |s| s.len());
            assert_eq!(len(caps.inheritable()), 0, "{user}");
            assert_eq!(len(caps.ambient()), 0, "{user}");
            assert_eq!(len(caps.bounding()), 14, "{user}");
            assert_eq!(len(caps.effective()), if root { 14 } else { 0 }, "{user}");
            assert_eq!(len(caps.permitted()), if root { 14 } else { 0 }, "{user}");
        }
        let spec = runtime_spec(&cfg, r.path(), &RunOptions::default()).unwrap();
        let devices = spec.linux().as_ref().unwrap().resources().as_ref().unwrap();
        let rules = devices.devices().as_ref().unwrap();
        assert!(
            !rules[0].allow() && rules[0].typ().is_none(),
            "deny all comes first"
        );
        assert!(rules.iter().any(|d| d.allow() && d.major() == Some(136)));
    }
}

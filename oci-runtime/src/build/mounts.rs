//! `RUN --mount`: BuildKit's cache, tmpfs and secret mounts for one step.
//!
//! - `type=cache`: a directory kept under the data directory between builds (by `id`,
//!   default the target), outside every layer, emptied by the build cache's prune.
//!   `sharing=shared` (default) lets steps use it at once, `locked` makes them take turns,
//!   `private` gives a step that finds it in use an empty one of its own.
//! - `type=tmpfs`: a fresh tmpfs (`size=` in bytes).
//! - `type=bind`: `source` (default the root) of the build context (as filtered by
//!   `.dockerignore`, so what it leaves out is not there) or of `from`, a stage or image;
//!   read-only, or `rw` on a copy whose writes are thrown away.
//! - `type=secret`: a secret of [`super::BuildOptions::secrets`], as a read-only file at
//!   `target` (default `/run/secrets/ID`) or as the variable `env=NAME`; never in a layer,
//!   the cache key, the history or the config.
//! - `type=ssh`: an SSH agent of [`super::BuildOptions::ssh`] (docker's `--ssh`), as a
//!   socket at `target` (default `/run/buildkit/ssh_agent.N`) named by `SSH_AUTH_SOCK`. The
//!   step gets a socket of its own (owned by `uid`/`gid`, `mode` 0600), whose connections
//!   are relayed to the agent: the agent's own path and socket are never in the step.
//!
//! What a step created only to mount over (its target and missing parents) is removed
//! before the step's layer is taken, as BuildKit removes its mount stubs.

use super::error::{invalid, Context, Result};
use crate::ExtraMount;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// A secret a build's `RUN --mount=type=secret,id=ID` reads: its bytes. `Debug` shows its
/// size only.
#[derive(Clone, Default)]
pub struct BuildSecret(Vec<u8>);

impl BuildSecret {
    /// A secret of these bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The content of `path` (docker's `--secret id=ID,src=PATH`), at most 500 KiB as
    /// BuildKit allows.
    pub fn from_file(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("reading the secret {}", path.display()))?;
        if meta.len() > MAX_SECRET {
            return Err(invalid!(
                "the secret {} is over {MAX_SECRET} bytes",
                path.display()
            ));
        }
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading the secret {}", path.display()))?;
        Ok(Self(bytes))
    }

    /// The value of environment variable `name` (docker's `--secret id=ID,env=NAME`).
    pub fn from_env(name: &str) -> Result<Self> {
        std::env::var_os(name)
            .map(|v| Self(std::os::unix::ffi::OsStringExt::into_vec(v)))
            .ok_or_else(|| invalid!("the secret's variable {name} is not set"))
    }
}

impl BuildSecret {
    /// Reads docker's `--secret` value: `id=ID,src=PATH` (also `source=`), `id=ID,env=NAME`,
    /// or `id=ID` alone (the variable `ID` when it is set, else the file `ID`), with an
    /// optional `type=file|env`. Returns the id and the secret.
    ///
    /// ```
    /// // The secret `token` is the value of the variable PATH here.
    /// let (id, _secret) = oci_rs_runtime::BuildSecret::from_flag("id=token,env=PATH").unwrap();
    /// assert_eq!(id, "token");
    /// assert!(oci_rs_runtime::BuildSecret::from_flag("src=/etc/hostname").is_err());
    /// ```
    pub fn from_flag(spec: &str) -> Result<(String, Self)> {
        let (mut id, mut src, mut env, mut typ) = (None, None, None, None);
        for part in spec.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| invalid!("--secret {spec}: {part} is not KEY=VALUE"))?;
            match k {
                "id" => id = Some(v.to_owned()),
                "src" | "source" => src = Some(PathBuf::from(v)),
                "env" => env = Some(v.to_owned()),
                "type" => typ = Some(v.to_owned()),
                other => return Err(invalid!("--secret {spec}: unknown key {other}")),
            }
        }
        let id = id.ok_or_else(|| invalid!("--secret {spec}: no id"))?;
        let secret = match (typ.as_deref(), src, env) {
            (_, Some(p), None) => Self::from_file(&p)?,
            (_, None, Some(n)) => Self::from_env(&n)?,
            (Some("env"), None, None) => Self::from_env(&id)?,
            (Some("file"), None, None) => Self::from_file(Path::new(&id))?,
            (None, None, None) if std::env::var_os(&id).is_some() => Self::from_env(&id)?,
            (None, None, None) => Self::from_file(Path::new(&id))?,
            (_, Some(_), Some(_)) => {
                return Err(invalid!("--secret {spec}: src and env are exclusive"))
            }
            (Some(t), None, None) => {
                return Err(invalid!("--secret {spec}: type={t}: file or env"))
            }
        };
        Ok((id, secret))
    }
}

impl std::fmt::Debug for BuildSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BuildSecret({} bytes)", self.0.len())
    }
}

/// An SSH agent a build's `RUN --mount=type=ssh` steps may use: its socket (docker's
/// `--ssh default`, `--ssh ID=SOCKET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSsh {
    socket: PathBuf,
}

impl BuildSsh {
    /// The agent listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    /// The agent's socket.
    pub(super) fn socket(&self) -> &Path {
        &self.socket
    }

    /// Reads docker's `--ssh` value: `ID` (the agent of `SSH_AUTH_SOCK`) or `ID=SOCKET`.
    /// Key files (which BuildKit loads into an agent of its own) are refused: give an
    /// agent's socket. Returns the id and the agent.
    ///
    /// ```
    /// use oci_rs_runtime::BuildSsh;
    /// let sock = std::env::temp_dir().join(format!("agent-{}.sock", std::process::id()));
    /// let _agent = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    /// let (id, _agent) = BuildSsh::from_flag(&format!("work={}", sock.display())).unwrap();
    /// assert_eq!(id, "work");
    /// // A file that is not a socket (a key) is refused.
    /// assert!(BuildSsh::from_flag("work=/etc/passwd").is_err());
    /// # std::fs::remove_file(&sock).unwrap();
    /// ```
    pub fn from_flag(spec: &str) -> Result<(String, Self)> {
        let (id, path) = match spec.split_once('=') {
            Some((id, p)) => (id, PathBuf::from(p.split(',').next().unwrap_or_default())),
            None => (
                spec,
                std::env::var_os("SSH_AUTH_SOCK")
                    .map(PathBuf::from)
                    .ok_or_else(|| invalid!("--ssh {spec}: SSH_AUTH_SOCK is not set"))?,
            ),
        };
        if id.is_empty() {
            return Err(invalid!("--ssh {spec}: no id"));
        }
        let meta = std::fs::metadata(&path)
            .with_context(|| format!("--ssh {spec}: reading {}", path.display()))?;
        if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
            return Err(invalid!(
                "--ssh {spec}: {} is not an agent's socket (key files are not taken)",
                path.display()
            ));
        }
        Ok((id.to_owned(), Self::new(path)))
    }
}

/// The largest secret read from a file.
const MAX_SECRET: u64 = 500 << 10;

/// How steps share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sharing {
    Shared,
    Private,
    Locked,
}

/// One `--mount` of a `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RunMount {
    Cache {
        id: String,
        target: String,
        sharing: Sharing,
        uid: u32,
        gid: u32,
        mode: u32,
        readonly: bool,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
    },
    Secret {
        id: String,
        target: Option<String>,
        env: Option<String>,
        required: bool,
        uid: u32,
        gid: u32,
        mode: u32,
    },
    Ssh {
        id: String,
        /// `None` until [`number_ssh_targets`] gives the default.
        target: Option<String>,
        required: bool,
        uid: u32,
        gid: u32,
        mode: u32,
    },
    /// Made ready by the step itself, which has the context and the other stages.
    Bind {
        target: String,
        source: String,
        from: Option<String>,
        rw: bool,
    },
}

impl RunMount {
    /// Parses a `--mount` value (`type=cache,target=/root/.cache,sharing=locked`).
    pub(super) fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut kv: BTreeMap<String, String> = BTreeMap::new();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, "true"));
            let k = match k.to_ascii_lowercase().as_str() {
                "dst" | "destination" => "target".to_owned(),
                "ro" => "readonly".to_owned(),
                "src" => "source".to_owned(),
                other => other.to_owned(),
            };
            if kv.insert(k.clone(), v.to_owned()).is_some() {
                return Err(format!("{k} is given twice"));
            }
        }
        let typ = kv.remove("type").unwrap_or_else(|| "bind".to_owned());
        let target = kv.remove("target");
        let flag =
            |kv: &mut BTreeMap<String, String>, k: &str| -> std::result::Result<bool, String> {
                match kv.remove(k).as_deref() {
                    None | Some("false") => Ok(false),
                    Some("true") | Some("") => Ok(true),
                    Some(v) => Err(format!("{k}={v}: true or false")),
                }
            };
        let num = |kv: &mut BTreeMap<String, String>, k: &str, radix: u32, default: u32| match kv
            .remove(k)
        {
            None => Ok(default),
            Some(v) => u32::from_str_radix(&v, radix).map_err(|_| format!("{k}={v}: not a number")),
        };
        let absolute = |t: &str| -> std::result::Result<String, String> {
            if t.starts_with('/') {
                Ok(t.to_owned())
            } else {
                Err(format!("target {t}: must be an absolute path"))
            }
        };
        let m = match typ.as_str() {
            "cache" => {
                let target = absolute(&target.ok_or("a cache mount needs a target")?)?;
                let sharing = match kv.remove("sharing").as_deref() {
                    None | Some("shared") => Sharing::Shared,
                    Some("private") => Sharing::Private,
                    Some("locked") => Sharing::Locked,
                    Some(v) => return Err(format!("sharing={v}: shared, private or locked")),
                };
                let readonly = flag(&mut kv, "readonly")?;
                // `from` and `source` (a cache seeded from a stage) are not taken.
                Self::Cache {
                    id: kv.remove("id").unwrap_or_else(|| target.clone()),
                    target,
                    sharing,
                    uid: num(&mut kv, "uid", 10, 0)?,
                    gid: num(&mut kv, "gid", 10, 0)?,
                    mode: num(&mut kv, "mode", 8, 0o755)?,
                    readonly,
                }
            }
            "tmpfs" => Self::Tmpfs {
                target: absolute(&target.ok_or("a tmpfs mount needs a target")?)?,
                size: kv
                    .remove("size")
                    .map(|v| crate::parse_size(&v).map_err(|_| format!("size={v}: not a size")))
                    .transpose()?,
            },
            "secret" => {
                let env = kv.remove("env");
                let id = match (kv.remove("id"), &target) {
                    (Some(id), _) => id,
                    (None, Some(t)) => t.rsplit('/').next().unwrap_or_default().to_owned(),
                    (None, None) => return Err("a secret mount needs an id or a target".into()),
                };
                Self::Secret {
                    target: match (target, &env) {
                        (Some(t), _) => Some(absolute(&t)?),
                        (None, Some(_)) => None,
                        (None, None) => Some(format!("/run/secrets/{id}")),
                    },
                    id,
                    env,
                    required: flag(&mut kv, "required")?,
                    uid: num(&mut kv, "uid", 10, 0)?,
                    gid: num(&mut kv, "gid", 10, 0)?,
                    mode: num(&mut kv, "mode", 8, 0o400)?,
                }
            }
            "bind" => Self::Bind {
                target: absolute(&target.ok_or("a bind mount needs a target")?)?,
                source: kv.remove("source").unwrap_or_else(|| ".".to_owned()),
                from: kv.remove("from"),
                rw: flag(&mut kv, "rw")? | flag(&mut kv, "readwrite")?,
            },
            "ssh" => Self::Ssh {
                id: kv.remove("id").unwrap_or_else(|| "default".to_owned()),
                target: target.map(|t| absolute(&t)).transpose()?,
                required: flag(&mut kv, "required")?,
                uid: num(&mut kv, "uid", 10, 0)?,
                gid: num(&mut kv, "gid", 10, 0)?,
                mode: num(&mut kv, "mode", 8, 0o600)?,
            },
            other => return Err(format!("type={other}: cache, tmpfs, secret, ssh or bind")),
        };
        if let Some(k) = kv.keys().next() {
            return Err(format!("unknown option {k}"));
        }
        Ok(m)
    }

    /// What the mount adds to the step's cache key (a secret's id and place, never its
    /// bytes).
    pub(super) fn key(&self) -> String {
        format!("{self:?}")
    }

    fn target(&self) -> Option<&str> {
        match self {
            Self::Cache { target, .. } | Self::Tmpfs { target, .. } | Self::Bind { target, .. } => {
                Some(target)
            }
            Self::Secret { target, .. } | Self::Ssh { target, .. } => target.as_deref(),
        }
    }
}

/// Gives the SSH mounts of a step without a target BuildKit's defaults:
/// `/run/buildkit/ssh_agent.N`, N counting the step's SSH mounts from 0.
pub(super) fn number_ssh_targets(mounts: &mut [RunMount]) {
    let mut n = 0;
    for m in mounts {
        if let RunMount::Ssh { target, .. } = m {
            if target.is_none() {
                *target = Some(format!("/run/buildkit/ssh_agent.{n}"));
            }
            n += 1;
        }
    }
}

/// Relays each connection to `listener` to the agent at `agent`, until dropped.
struct Relay(tokio::task::JoinHandle<()>);

impl Drop for Relay {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Relay")
    }
}

fn relay(listener: std::os::unix::net::UnixListener, agent: PathBuf) -> Result<Relay> {
    listener.set_nonblocking(true)?;
    let handle = tokio::runtime::Handle::try_current().map_err(|e| super::BuildError::Failed {
        what: "an SSH mount needs the tokio runtime the build runs on".into(),
        source: Box::new(e),
    })?;
    let _guard = handle.enter();
    let listener = tokio::net::UnixListener::from_std(listener)?;
    Ok(Relay(handle.spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((mut step, _)) = listener.accept().await {
            let agent = agent.clone();
            conns.spawn(async move {
                match tokio::net::UnixStream::connect(&agent).await {
                    Ok(mut a) => {
                        let _ = tokio::io::copy_bidirectional(&mut step, &mut a).await;
                    }
                    Err(e) => tracing::warn!(agent = %agent.display(), error = %e, "the SSH agent is not answering"),
                }
            });
        }
    })))
}

/// A step's mounts made ready: what the runtime mounts, variables for the process, and what
/// must live until the step has ended (locks, private directories).
#[derive(Debug, Default)]
pub(super) struct Prepared {
    /// Mounts for the step's container.
    pub mounts: Vec<ExtraMount>,
    /// `NAME=VALUE` of secrets given as variables.
    pub env: Vec<String>,
    /// The targets made for the mounts, and their parents made with them, deepest first.
    pub stubs: Vec<PathBuf>,
    _locks: Vec<OwnedFd>,
    _relays: Vec<Relay>,
    _temps: Vec<tempfile::TempDir>,
}

/// Makes `mounts` ready for a step whose root filesystem is `rootfs`: cache directories
/// under `data`, secrets written into `private` (a directory of the step's bundle, 0700).
pub(super) fn prepare(
    mounts: &[RunMount],
    data: &Path,
    private: &Path,
    rootfs: &Path,
    secrets: &BTreeMap<String, BuildSecret>,
    ssh: &BTreeMap<String, BuildSsh>,
) -> Result<Prepared> {
    let mut p = Prepared::default();
    let root = oci_rs_layer::Root::open(rootfs)?;
    for (n, m) in mounts.iter().enumerate() {
        if let Some(t) = m.target() {
            // What is missing of the target, made by the runtime for the mount: removed after.
            let comps = super::ignore::clean_components(t);
            let prefix = |k: usize| comps[..k].iter().collect::<PathBuf>();
            let have = (0..=comps.len())
                .rev()
                .find(|&k| root.resolve(&prefix(k), rustix::fs::OFlags::PATH).is_ok())
                .unwrap_or(0);
            for k in (have + 1..=comps.len()).rev() {
                p.stubs.push(prefix(k));
            }
        }
        match m {
            RunMount::Cache {
                id,
                target,
                sharing,
                uid,
                gid,
                mode,
                readonly,
            } => {
                let dir = cache_mounts_dir(data);
                oci_rs_layer::private_dir(&dir)?;
                let name = format!("{:x}", Sha256::digest(id.as_bytes()));
                let path = dir.join(&name);
                let lock = lock_file(&dir.join(format!("{name}.lock")))?;
                let mut source = path.clone();
                match sharing {
                    Sharing::Shared => {}
                    Sharing::Locked => {
                        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
                            .context("locking a cache mount")?;
                        p._locks.push(lock);
                    }
                    Sharing::Private => {
                        match rustix::fs::flock(
                            &lock,
                            rustix::fs::FlockOperation::NonBlockingLockExclusive,
                        ) {
                            Ok(()) => p._locks.push(lock),
                            Err(_) => {
                                let t = tempfile::Builder::new()
                                    .prefix(".private-")
                                    .tempdir_in(&dir)?;
                                source = t.path().to_path_buf();
                                p._temps.push(t);
                            }
                        }
                    }
                }
                if !path.exists() {
                    std::fs::create_dir(&path)
                        .or_else(|e| {
                            if e.kind() == std::io::ErrorKind::AlreadyExists {
                                Ok(())
                            } else {
                                Err(e)
                            }
                        })
                        .context("making a cache mount")?;
                    std::fs::set_permissions(
                        &path,
                        std::os::unix::fs::PermissionsExt::from_mode(*mode),
                    )?;
                    give(&path, *uid, *gid)?;
                }
                if source != path {
                    std::fs::set_permissions(
                        &source,
                        std::os::unix::fs::PermissionsExt::from_mode(*mode),
                    )?;
                    give(&source, *uid, *gid)?;
                }
                p.mounts.push(ExtraMount::Bind {
                    source,
                    target: target.clone(),
                    readonly: *readonly,
                });
            }
            RunMount::Bind { .. } => {}
            RunMount::Tmpfs { target, size } => p.mounts.push(ExtraMount::Tmpfs {
                target: target.clone(),
                options: size.iter().map(|s| format!("size={s}")).collect(),
            }),
            RunMount::Secret {
                id,
                target,
                env,
                required,
                uid,
                gid,
                mode,
            } => {
                let Some(secret) = secrets.get(id) else {
                    if *required {
                        return Err(invalid!("the secret {id} is required and was not given"));
                    }
                    continue;
                };
                if let Some(name) = env {
                    let value = std::str::from_utf8(&secret.0).map_err(|_| {
                        invalid!("the secret {id} is not text, as a variable must be")
                    })?;
                    p.env.push(format!("{name}={value}"));
                }
                if let Some(target) = target {
                    let file = private.join(format!("secret-{n}"));
                    std::fs::write(&file, &secret.0).context("writing a secret for a step")?;
                    std::fs::set_permissions(
                        &file,
                        std::os::unix::fs::PermissionsExt::from_mode(*mode),
                    )?;
                    give(&file, *uid, *gid)?;
                    p.mounts.push(ExtraMount::Bind {
                        source: file,
                        target: target.clone(),
                        readonly: true,
                    });
                }
            }
            RunMount::Ssh {
                id,
                target,
                required,
                uid,
                gid,
                mode,
            } => {
                let Some(agent) = ssh.get(id) else {
                    if *required {
                        return Err(invalid!(
                            "the SSH agent {id} is required and was not given (--ssh {id})"
                        ));
                    }
                    continue;
                };
                let Some(target) = target else { continue };
                let sock = private.join(format!("ssh-{n}.sock"));
                let _ = std::fs::remove_file(&sock);
                let listener = std::os::unix::net::UnixListener::bind(&sock)
                    .with_context(|| format!("making the SSH socket {}", sock.display()))?;
                std::fs::set_permissions(
                    &sock,
                    std::os::unix::fs::PermissionsExt::from_mode(*mode),
                )?;
                give(&sock, *uid, *gid)?;
                p._relays.push(relay(listener, agent.socket.clone())?);
                if !p.env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK=")) {
                    p.env.push(format!("SSH_AUTH_SOCK={target}"));
                }
                p.mounts.push(ExtraMount::Bind {
                    source: sock,
                    target: target.clone(),
                    readonly: false,
                });
            }
        }
    }
    Ok(p)
}

/// Gives `path` to `uid:gid` of the step. Rootless, the step's ids are the caller's user
/// namespace's, which the caller cannot give files to: what it makes stays its own, which
/// is the step's root.
fn give(path: &Path, uid: u32, gid: u32) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("giving {} to {uid}:{gid}", path.display()))
}

/// Removes what was made for the mounts of a step that has ended (an empty file or
/// directory only: a step may have put something there itself).
pub(super) fn remove_stubs(rootfs: &Path, stubs: &[PathBuf]) {
    for s in stubs {
        let p = rootfs.join(s);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir(&p);
            }
            Ok(m) if m.is_file() && m.len() == 0 => {
                let _ = std::fs::remove_file(&p);
            }
            _ => {}
        }
    }
}

/// Where cache mounts live under a data directory (pruned with the build cache by
/// `ImageStore::prune_cache`).
fn cache_mounts_dir(data: &Path) -> PathBuf {
    data.join("build-cache-mounts")
}

fn lock_file(path: &Path) -> Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok(f.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn mounts_read_as_buildkit_writes_them() {
        assert_eq!(
            RunMount::parse("type=cache,target=/root/.cache,sharing=locked,mode=0700,uid=1000")
                .unwrap(),
            RunMount::Cache {
                id: "/root/.cache".into(),
                target: "/root/.cache".into(),
                sharing: Sharing::Locked,
                uid: 1000,
                gid: 0,
                mode: 0o700,
                readonly: false,
            }
        );
        assert!(matches!(
            RunMount::parse("type=secret,id=tok").unwrap(),
            RunMount::Secret { target: Some(t), required: false, mode: 0o400, .. } if t == "/run/secrets/tok"
        ));
        assert!(matches!(
            RunMount::parse("type=secret,id=tok,env=TOKEN,required").unwrap(),
            RunMount::Secret {
                target: None,
                required: true,
                ..
            }
        ));
        assert!(matches!(
            RunMount::parse("type=tmpfs,dst=/scratch,size=1m").unwrap(),
            RunMount::Tmpfs {
                size: Some(1048576),
                ..
            }
        ));
        for bad in [
            "type=cache",
            "type=cache,target=rel",
            "type=cache,target=/x,sharing=sometimes",
            "type=cache,target=/x,bogus=1",
            "type=nfs,target=/x",
            "type=cache,target=/x,target=/y",
            "type=bind,source=.",
            "type=ssh,target=relative",
            "type=ssh,mode=rw",
        ] {
            assert!(RunMount::parse(bad).is_err(), "{bad}");
        }
        // A secret's bytes never show in Debug.
        assert_eq!(
            format!("{:?}", BuildSecret::new(b"hunter2".to_vec())),
            "BuildSecret(7 bytes)"
        );
        // SSH mounts: id `default`, numbered targets, mode 0600.
        let mut ms = vec![
            RunMount::parse("type=ssh").unwrap(),
            RunMount::parse("type=ssh,id=work,target=/agent,mode=0640,uid=7,required").unwrap(),
            RunMount::parse("type=ssh,id=other").unwrap(),
        ];
        number_ssh_targets(&mut ms);
        let targets: Vec<_> = ms.iter().map(|m| m.target().unwrap().to_owned()).collect();
        assert_eq!(
            targets,
            [
                "/run/buildkit/ssh_agent.0",
                "/agent",
                "/run/buildkit/ssh_agent.2"
            ]
        );
        assert!(matches!(
            &ms[1],
            RunMount::Ssh { id, required: true, uid: 7, mode: 0o640, .. } if id == "work"
        ));
        assert!(matches!(&ms[0], RunMount::Ssh { id, mode: 0o600, .. } if id == "default"));
    }

    /// `--ssh ID=PATH` takes an agent's socket, and nothing else (a key file, a missing
    /// path); a step's socket relays each connection to the agent.
    #[tokio::test]
    async fn an_ssh_agent_is_reached_through_a_relay_of_its_own() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let agent_path = dir.path().join("agent.sock");
        let agent = tokio::net::UnixListener::bind(&agent_path).unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = agent.accept().await {
                let mut b = [0u8; 4];
                if c.read_exact(&mut b).await.is_ok() && &b == b"ping" {
                    let _ = c.write_all(b"pong").await;
                }
            }
        });
        let (id, ssh) = BuildSsh::from_flag(&format!("work={}", agent_path.display())).unwrap();
        assert_eq!(id, "work");
        let key = dir.path().join("id_ed25519");
        std::fs::write(&key, "not a socket").unwrap();
        for bad in [
            format!("k={}", key.display()),
            format!("k={}", dir.path().join("missing").display()),
            format!("={}", agent_path.display()),
        ] {
            assert!(BuildSsh::from_flag(&bad).is_err(), "{bad}");
        }
        let step = dir.path().join("step.sock");
        let listener = std::os::unix::net::UnixListener::bind(&step).unwrap();
        let relay = relay(listener, ssh.socket.clone()).unwrap();
        for _ in 0..2 {
            let mut c = tokio::net::UnixStream::connect(&step).await.unwrap();
            c.write_all(b"ping").await.unwrap();
            let mut b = [0u8; 4];
            c.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"pong");
        }
        drop(relay);
        tokio::task::yield_now().await;
        let mut c = tokio::net::UnixStream::connect(&step).await;
        if let Ok(c) = &mut c {
            // The relay is gone: nothing answers.
            let mut b = [0u8; 4];
            let _ = c.write_all(b"ping").await;
            let read =
                tokio::time::timeout(std::time::Duration::from_millis(200), c.read_exact(&mut b))
                    .await;
            assert!(!matches!(read, Ok(Ok(_))), "answered after the relay ended");
        }
    }
}

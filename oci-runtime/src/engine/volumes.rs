//! Named volumes (docker's `volume create|ls|inspect|rm`, `-v NAME:/path` and
//! `--mount type=volume,...`), kept under `DATA/volumes/NAME/_data` (docker's layout), private
//! to their owner. A volume that is empty when a container first mounts it is filled with
//! what the image has at the mount point, as docker does, copied through oci-rs-layer's export
//! and apply, which resolve every path inside their roots (a link in the image cannot make
//! the copy read a host file).

use super::containers::valid_name as valid;
use super::{read_record, write_record, EngineError, EngineResult as Result};
use std::path::{Path, PathBuf};

/// A volume as `volume inspect` shows it (docker's fields).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeInfo {
    /// The name.
    pub name: String,
    /// Always `local`.
    pub driver: String,
    /// Where its files are.
    pub mountpoint: PathBuf,
    /// RFC 3339.
    pub created_at: String,
    /// Labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Always `local`.
    pub scope: String,
    /// The local driver's options (docker's `--opt`): `type=none,o=bind,device=DIR` (a
    /// host directory) or `type=tmpfs[,o=size=...]`; empty for a plain volume.
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
}

/// What a volume's driver options ask for.
enum Backing {
    Plain,
    Bind(PathBuf),
    Tmpfs(String),
}

/// The local driver's options, as docker's takes them, or why not.
fn backing(options: &std::collections::BTreeMap<String, String>) -> Result<Backing> {
    if options.is_empty() {
        return Ok(Backing::Plain);
    }
    let bad = |reason: &'static str| {
        EngineError::from(crate::Error::option(
            "volume driver options",
            options
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
            reason,
        ))
    };
    if let Some(k) = options
        .keys()
        .find(|k| !["type", "o", "device"].contains(&k.as_str()))
    {
        let _ = k;
        return Err(bad("only type, o and device are taken"));
    }
    let o = options.get("o").map(String::as_str).unwrap_or("");
    match (
        options.get("type").map(String::as_str),
        options.get("device"),
    ) {
        (Some("none"), Some(dev)) if o.split(',').any(|x| x == "bind" || x == "rbind") => {
            if o.split(',').any(|x| !matches!(x, "bind" | "rbind")) {
                return Err(bad("o: bind (or rbind) alone"));
            }
            let dev = PathBuf::from(dev);
            if !dev.is_absolute() || !dev.is_dir() {
                return Err(bad("device: an existing absolute directory"));
            }
            Ok(Backing::Bind(dev))
        }
        (Some("tmpfs"), _) => {
            if o.split(',').filter(|x| !x.is_empty()).any(|x| {
                let k = x.split('=').next().unwrap_or("");
                !matches!(k, "size" | "mode" | "uid" | "gid" | "nr_inodes")
            }) {
                return Err(bad("o for tmpfs: size, mode, uid, gid, nr_inodes"));
            }
            Ok(Backing::Tmpfs(o.to_owned()))
        }
        _ => Err(bad(
            "type=none with o=bind and a device, or type=tmpfs, are served",
        )),
    }
}

/// Mounts `info`'s bind or tmpfs on its data directory unless it is mounted already.
fn mount_backing(info: &VolumeInfo) -> Result<()> {
    use rustix::mount::{mount, mount_bind, MountFlags};
    let data = &info.mountpoint;
    if is_mount(data) {
        return Ok(());
    }
    match backing(&info.options)? {
        Backing::Plain => Ok(()),
        Backing::Bind(dev) => mount_bind(&dev, data)
            .map_err(|e| EngineError::io("bind-mount a volume on", data, e.into())),
        Backing::Tmpfs(o) => {
            let o = std::ffi::CString::new(o)
                .map_err(|e| EngineError::io("mount a tmpfs on", data, std::io::Error::other(e)))?;
            mount(
                "tmpfs",
                data,
                "tmpfs",
                MountFlags::NOSUID | MountFlags::NODEV,
                o.as_c_str(),
            )
            .map_err(|e| EngineError::io("mount a tmpfs on", data, e.into()))
        }
    }
}

/// Whether `dir` is a mount point, from this mount namespace's mount table (a bind mount of a
/// directory of the same filesystem has its parent's device number: that cannot tell).
pub(crate) fn is_mount(dir: &Path) -> bool {
    dir.canonicalize()
        .is_ok_and(|d| crate::container::mount_point_of(&d).as_deref() == Some(d.as_path()))
}

/// docker's `volume ls --filter` and `volume prune --filter` terms: `name=PART`,
/// `label=KEY[=VALUE]`, `label!=KEY[=VALUE]`, `driver=local`, `dangling=true|false`, and for
/// a prune `all=true|false` (docker 23's: without it a prune takes anonymous volumes only).
/// Several values of one key are alternatives; `label` terms are all required.
///
/// ```
/// use oci_rs_runtime::VolumeFilter;
/// let f = VolumeFilter::parse(&["label=com.docker.compose.project=web".into()]).unwrap();
/// assert!(!f.all());
/// assert!(VolumeFilter::parse(&["colour=red".into()]).is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct VolumeFilter {
    terms: Vec<(String, String)>,
    all: bool,
}

impl VolumeFilter {
    /// The filter of `KEY=VALUE` terms.
    pub fn parse(terms: &[String]) -> Result<Self> {
        let mut f = Self::default();
        for t in terms {
            let bad = |reason: &'static str| {
                EngineError::from(crate::Error::InvalidOption {
                    option: "volume filter",
                    value: t.clone(),
                    reason: reason.into(),
                })
            };
            let (k, v) = t.split_once('=').ok_or_else(|| bad("expected KEY=VALUE"))?;
            let k = match k.strip_suffix('!') {
                Some("label") => "label!",
                _ => k,
            };
            match k {
                "name" | "label" | "label!" | "driver" => {}
                "dangling" | "all" if ["true", "false", "1", "0"].contains(&v) => {}
                _ => return Err(bad(
                    "keys: name, label, label!, driver, dangling (true|false), all (true|false)",
                )),
            }
            if k == "all" {
                f.all = v == "true" || v == "1";
            } else {
                f.terms.push((k.to_owned(), v.to_owned()));
            }
        }
        Ok(f)
    }

    /// Whether a prune takes named volumes too (`all=true`), not only anonymous ones.
    pub fn all(&self) -> bool {
        self.all
    }

    /// Whether volume `v` (with `in_use`: a container mounts it) passes every key given.
    pub fn matches(&self, v: &VolumeInfo, in_use: bool) -> bool {
        let label = |term: &str| match term.split_once('=') {
            Some((k, want)) => v.labels.get(k).is_some_and(|x| x == want),
            None => v.labels.contains_key(term),
        };
        let mut keys: Vec<&str> = self.terms.iter().map(|(k, _)| k.as_str()).collect();
        keys.dedup();
        keys.into_iter().all(|key| {
            let mut vals = self.terms.iter().filter(|(k, _)| k == key).map(|(_, x)| x);
            match key {
                "label" => vals.all(|x| label(x)),
                "label!" => !vals.any(|x| label(x)),
                "name" => vals.any(|x| v.name.contains(x.as_str())),
                "driver" => vals.any(|x| *x == v.driver),
                "dangling" => vals.any(|x| (x == "true" || x == "1") != in_use),
                _ => false,
            }
        })
    }
}

/// The volumes under a data directory.
pub struct Volumes {
    dir: PathBuf,
}

fn valid_name(name: &str) -> Result<()> {
    valid("volume", name)
}

fn mount_spec(flag: &'static str, spec: &str, problem: impl Into<String>) -> EngineError {
    EngineError::MountSpec {
        flag,
        spec: spec.to_owned(),
        problem: problem.into(),
    }
}

impl Volumes {
    /// The store under `data` (created when missing, 0700).
    pub fn open(data: &Path) -> Result<Self> {
        let dir = data.join("volumes");
        oci_rs_layer::private_dir(&dir)?;
        Ok(Self { dir })
    }

    /// `volume create NAME`: made when missing (so two creates of one name agree); whether it
    /// was made now.
    pub fn create(
        &self,
        name: &str,
        labels: std::collections::BTreeMap<String, String>,
    ) -> Result<(VolumeInfo, bool)> {
        self.create_with(name, labels, Default::default())
    }

    /// [`Volumes::create`] with the local driver's `options` (see [`VolumeInfo::options`]):
    /// a bind or tmpfs volume is mounted on its data directory now (root only), and again by
    /// [`Volumes::mount`] after a reboot.
    pub fn create_with(
        &self,
        name: &str,
        labels: std::collections::BTreeMap<String, String>,
        options: std::collections::BTreeMap<String, String>,
    ) -> Result<(VolumeInfo, bool)> {
        valid_name(name)?;
        if !matches!(backing(&options)?, Backing::Plain) && !rustix::process::geteuid().is_root() {
            return Err(crate::Error::option(
                "volume driver options",
                name,
                "a bind or tmpfs volume is a mount on the host: root only",
            )
            .into());
        }
        let base = self.dir.join(name);
        match std::fs::create_dir(&base) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Ok((self.inspect(name)?, false))
            }
            Err(e) => return Err(EngineError::io("create", &base, e)),
        }
        oci_rs_layer::private_dir(&base)?;
        let data = base.join("_data");
        // The data directory itself is what containers see: root-owned, 0755 as docker's.
        std::fs::create_dir(&data).map_err(|e| EngineError::io("create", &data, e))?;
        let info = VolumeInfo {
            name: name.to_owned(),
            driver: "local".into(),
            mountpoint: data,
            created_at: crate::rfc3339(crate::now_ns()),
            labels,
            scope: "local".into(),
            options,
        };
        if let Err(e) = mount_backing(&info) {
            let _ = std::fs::remove_dir_all(&base);
            return Err(e);
        }
        write_record(&base.join("meta.json"), &info)?;
        self.record("create", name);
        Ok((info, true))
    }

    /// Mounts volume `name`'s bind or tmpfs on its data directory when it is not (after a
    /// reboot); nothing for a plain volume.
    pub fn mount(&self, name: &str) -> Result<()> {
        mount_backing(&self.inspect(name)?)
    }

    /// `volume inspect NAME`.
    pub fn inspect(&self, name: &str) -> Result<VolumeInfo> {
        valid_name(name)?;
        read_record(&self.dir.join(name).join("meta.json"))?
            .ok_or_else(|| EngineError::NoSuchVolume(name.to_owned()))
    }

    /// `volume ls`.
    pub fn list(&self) -> Result<Vec<VolumeInfo>> {
        let mut out: Vec<VolumeInfo> = std::fs::read_dir(&self.dir)
            .map_err(|e| EngineError::io("read", &self.dir, e))?
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter_map(|n| self.inspect(&n).ok())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The bytes removing volume `name` frees: what its data directory holds (0 for a bind
    /// volume, whose directory is the user's).
    pub fn reclaimable(&self, name: &str) -> u64 {
        let data = self.dir.join(name).join("_data");
        match is_mount(&data) {
            true => 0,
            false => super::usage::tree_size(&data),
        }
    }

    /// `volume rm NAME`: refused while a container (named in `users`) has it mounted.
    pub fn remove(&self, name: &str, users: &[String]) -> Result<()> {
        self.inspect(name)?;
        if let Some(c) = users.first() {
            return Err(EngineError::VolumeInUse {
                name: name.to_owned(),
                container: c.clone(),
            });
        }
        let base = self.dir.join(name);
        // A bind volume's directory is the user's: unmounted first, and never removed
        // through (remove_dir_all would go into it).
        let data = base.join("_data");
        if is_mount(&data) {
            rustix::mount::unmount(&data, rustix::mount::UnmountFlags::DETACH)
                .map_err(|e| EngineError::io("unmount", &data, e.into()))?;
            if is_mount(&data) {
                return Err(EngineError::io(
                    "unmount",
                    &data,
                    std::io::Error::other("still mounted"),
                ));
            }
        }
        // The marker goes first: a half-removed volume is no longer listed.
        let meta = base.join("meta.json");
        std::fs::remove_file(&meta).map_err(|e| EngineError::io("remove", &meta, e))?;
        std::fs::remove_dir_all(&base).map_err(|e| EngineError::io("remove", &base, e))?;
        self.record("destroy", name);
        Ok(())
    }

    /// Records volume `name`'s event `action` in the store's journal, best effort.
    fn record(&self, action: &str, name: &str) {
        let Some(data) = self.dir.parent() else {
            return;
        };
        let e = crate::Event::new("volume", action, name).with("driver", "local");
        if let Err(err) =
            crate::Journal::open(&data.join(super::containers::EVENTS_FILE)).record(&e)
        {
            tracing::warn!(volume = %name, error = %crate::chain(&err), "recording an event");
        }
    }

    /// Fills volume `name` from `rootfs`'s `target` when the volume is empty (first use) and
    /// the image has a directory there; its data directory takes that directory's owner and
    /// mode.
    pub async fn fill_from_image(&self, name: &str, rootfs: &Path, target: &str) -> Result<()> {
        use rustix::fs::{Mode, OFlags};
        let data = self.inspect(name)?.mountpoint;
        let io = |action, e: std::io::Error| EngineError::io(action, &data, e);
        if std::fs::read_dir(&data)
            .map_err(|e| io("read", e))?
            .next()
            .is_some()
        {
            return Ok(());
        }
        let root = rustix::fs::open(
            rootfs,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| EngineError::io("open", rootfs, e.into()))?;
        let rel = target.trim_start_matches('/');
        let src = match crate::resolve::open_in_root(
            std::os::fd::AsFd::as_fd(&root),
            if rel.is_empty() { "." } else { rel },
            OFlags::PATH | OFlags::DIRECTORY,
        ) {
            Ok(fd) => fd,
            // Nothing there, or not a directory: the volume starts empty.
            Err(_) => return Ok(()),
        };
        let st = rustix::fs::fstat(&src).map_err(|e| EngineError::io("stat", target, e.into()))?;
        rustix::fs::chown(
            &data,
            Some(rustix::fs::Uid::from_raw(st.st_uid)),
            Some(rustix::fs::Gid::from_raw(st.st_gid)),
        )
        .map_err(|e| io("chown", e.into()))?;
        rustix::fs::chmod(&data, Mode::from_raw_mode(st.st_mode & 0o7777))
            .map_err(|e| io("chmod", e.into()))?;
        // The directory found inside the rootfs, by its descriptor.
        let src_path = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&src)
        ));
        let (w, r) = tokio::io::duplex(1 << 20);
        let produce = async move {
            let (_, mut w) =
                oci_rs_layer::export(&src_path, w, &oci_rs_layer::DiffOptions::default()).await?;
            tokio::io::AsyncWriteExt::shutdown(&mut w)
                .await
                .map_err(|e| oci_rs_layer::Error::Fs {
                    op: "write",
                    path: PathBuf::from(target),
                    source: e,
                })?;
            Ok::<_, oci_rs_layer::Error>(())
        };
        let opts = oci_rs_layer::ApplyOptions::default();
        let consume = oci_rs_layer::apply_tar(&data, r, &opts);
        let (a, b) = tokio::join!(produce, consume);
        let fill = |source| EngineError::FillVolume {
            volume: name.to_owned(),
            target: target.to_owned(),
            source: Box::new(source),
        };
        a.map_err(fill)?;
        b.map_err(fill)?;
        drop(src);
        Ok(())
    }
}

/// A mount as `-v` or `--mount` gives it: a bind or tmpfs, or a named volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountArg {
    /// A host path or tmpfs.
    Extra(crate::ExtraMount),
    /// A named volume (created on first use), or an anonymous one.
    Volume {
        /// The volume; empty for an anonymous one (`-v /data`: made with a random name at
        /// create, removed with its container by `rm -v` and `--rm`).
        name: String,
        /// The path in the container.
        target: String,
        /// Mounted read-only.
        readonly: bool,
    },
}

/// Parses `-v`: `/host:/ctr[:ro]` is a bind, `NAME:/ctr[:ro]` a named volume, `/ctr` alone
/// an anonymous volume.
///
/// ```
/// use oci_rs_runtime::{parse_volume_arg, MountArg};
/// let anon = parse_volume_arg("/data").unwrap();
/// assert_eq!(anon, MountArg::Volume { name: String::new(), target: "/data".into(), readonly: false });
/// ```
pub fn parse_volume_arg(spec: &str) -> Result<MountArg> {
    if spec.starts_with('/') && !spec.contains(':') {
        return Ok(MountArg::Volume {
            name: String::new(),
            target: spec.to_owned(),
            readonly: false,
        });
    }
    if spec.starts_with('/') {
        return Ok(MountArg::Extra(crate::ExtraMount::parse_volume(spec)?));
    }
    let parts: Vec<&str> = spec.split(':').collect();
    let (name, target, opts) = match parts.as_slice() {
        [n, t] => (*n, *t, ""),
        [n, t, o] => (*n, *t, *o),
        _ => {
            return Err(mount_spec(
                "volume",
                spec,
                "expected HOST:CONTAINER[:ro] or NAME:CONTAINER[:ro]",
            ))
        }
    };
    if valid_name(name).is_err() {
        return Err(mount_spec(
            "volume",
            spec,
            "a volume name is [a-zA-Z0-9][a-zA-Z0-9_.-]",
        ));
    }
    if !target.starts_with('/') {
        return Err(mount_spec(
            "volume",
            spec,
            "the container path must be absolute",
        ));
    }
    let mut readonly = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => readonly = true,
            "rw" | "z" | "Z" => {}
            other => {
                return Err(mount_spec(
                    "volume",
                    spec,
                    format!("unknown option {other:?}"),
                ))
            }
        }
    }
    Ok(MountArg::Volume {
        name: name.to_owned(),
        target: target.to_owned(),
        readonly,
    })
}

/// Parses `--mount type=bind|volume|tmpfs,source=...,target=...[,readonly][,tmpfs-size=N]`.
pub fn parse_mount_arg(spec: &str) -> Result<MountArg> {
    let (mut typ, mut source, mut target, mut readonly, mut size) =
        ("volume".to_owned(), None, None, false, None);
    for kv in spec.split(',') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "type" => typ = v.to_owned(),
            "source" | "src" => source = Some(v.to_owned()),
            "target" | "destination" | "dst" => target = Some(v.to_owned()),
            "readonly" | "ro" => readonly = v.is_empty() || v == "true" || v == "1",
            "tmpfs-size" => size = Some(v.to_owned()),
            _ => return Err(mount_spec("--mount", spec, format!("unknown key {k:?}"))),
        }
    }
    let target = target.ok_or_else(|| mount_spec("--mount", spec, "no target"))?;
    let ro = if readonly { ":ro" } else { "" };
    match typ.as_str() {
        "bind" => {
            let src = source.ok_or_else(|| mount_spec("--mount", spec, "no source"))?;
            if !src.starts_with('/') {
                return Err(mount_spec(
                    "--mount",
                    spec,
                    "a bind source must be an absolute path",
                ));
            }
            parse_volume_arg(&format!("{src}:{target}{ro}"))
        }
        "volume" => {
            let src = source.ok_or_else(|| mount_spec("--mount", spec, "no source"))?;
            if src.starts_with('/') {
                return Err(mount_spec("--mount", spec, "a volume source is a name"));
            }
            parse_volume_arg(&format!("{src}:{target}{ro}"))
        }
        "tmpfs" => Ok(MountArg::Extra(crate::ExtraMount::parse_tmpfs(
            &match size {
                Some(s) => format!("{target}:size={s}"),
                None => target,
            },
        )?)),
        other => Err(mount_spec(
            "--mount",
            spec,
            format!("unknown type {other:?} (bind, volume, tmpfs)"),
        )),
    }
}

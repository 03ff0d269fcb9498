//! The module of [`Snapshotter`], whose docs say what it is for (the module is private).

use crate::apply::{apply, ApplyOptions};
use crate::diff::{diff, diff_overlay, DiffOptions};
use crate::error::{Error, Result};
use oci_rs_image::oci_spec::image::{Descriptor, Digest};
use oci_rs_image::read_config;
use oci_rs_image::Compression;
use oci_rs_image::{ImageSource, Manifest};
use std::path::{Path, PathBuf};

/// The prefix of temporary unpack directories under `layers`.
const UNPACK_PREFIX: &str = ".unpack-";
const EXPORT_PREFIX: &str = ".export-";

/// A new temporary directory in `dir` named `PREFIXPID-RANDOM` after this process, for
/// [`reap_process_temps`] to tell from a live process's.
fn process_temp_dir(dir: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{prefix}{}-", std::process::id()))
        .tempdir_in(dir)
        .map_err(|e| Error::fs("mkdtemp", dir, e))
}

/// Removes the directories of [`process_temp_dir`] in `dir` whose process is gone.
fn reap_process_temps(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = rustix::process::Pid::from_raw(pid).is_some_and(|p| {
            !matches!(
                rustix::process::test_kill_process(p),
                Err(rustix::io::Errno::SRCH)
            )
        });
        if !alive {
            tracing::debug!(dir = ?e.path(), "removing a dead process's temporary directory");
            let _ = remove_tree(&e.path());
        }
    }
}

/// Overlay snapshots: each layer unpacked once into its own directory, keyed by DiffID, and
/// an image's layers mounted as overlayfs lower directories under a fresh upper and work
/// directory: the container's read-write layer. [`Snapshotter::commit`] turns that upper
/// directory into a layer.
///
/// ```text
/// ROOT/layers/<diffid hex>/      one layer, whiteouts as overlayfs reads them
/// ROOT/containers/<id>/upper     the container's changes
/// ROOT/containers/<id>/work      overlayfs scratch
/// ROOT/containers/<id>/rootfs    the mount point (or, without overlayfs, a full copy)
/// ROOT/containers/<id>/snapshot.json   which image it came from, its kind and layers
/// ```
///
/// A container store reopens a snapshot by id ([`Snapshotter::open`], which mounts it again
/// when it is not mounted, e.g. after a reboot), lists them ([`Snapshotter::list`]) and
/// learns which image each came from; nothing outside this module writes into these
/// directories.
///
/// Where overlayfs cannot be mounted (not root, no user-namespace overlay), `prepare` applies
/// the layers into `rootfs` instead, and `commit` diffs it against a fresh copy of the image.
/// A layer directory appears under its name only complete (applied in a temporary directory,
/// then renamed), so two images sharing a layer unpack it once, and a crash never leaves a
/// half layer that looks whole.
///
/// Where snapshots live.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    root: PathBuf,
    apply: ApplyOptions,
}

/// How a container's root filesystem is provided.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// An overlayfs mount of the layer directories.
    Overlay,
    /// A plain directory with every layer applied (no overlayfs here).
    Copy,
}

/// A prepared root filesystem.
#[derive(Debug, Clone)]
pub struct Mount {
    /// The container id.
    pub id: String,
    /// The directory to use as the container's root.
    pub rootfs: PathBuf,
    /// The upper (read-write) directory, for overlay mounts.
    pub upper: PathBuf,
    /// How it is provided.
    pub kind: MountKind,
    /// The layer directories, base first.
    pub layers: Vec<PathBuf>,
}

/// What the snapshotter keeps about a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotInfo {
    /// The snapshot (container) id.
    pub id: String,
    /// The manifest digest of the image it was prepared from.
    pub image: String,
    /// How its root filesystem is provided.
    pub kind: MountKind,
    /// The layer directories, base first.
    pub layers: Vec<PathBuf>,
}

const INFO_FILE: &str = "snapshot.json";

/// How a path of a container differs from its image ([`Snapshotter::change_list`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// `A`: not in the image.
    Added,
    /// `C`: in the image, and different (or, for a directory, its contents).
    Changed,
    /// `D`: in the image, removed.
    Deleted,
}

impl ChangeKind {
    /// docker's letter: `A`, `C` or `D`.
    pub fn letter(self) -> char {
        match self {
            Self::Added => 'A',
            Self::Changed => 'C',
            Self::Deleted => 'D',
        }
    }
}

/// One path a container changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// How.
    pub kind: ChangeKind,
    /// The absolute path in the container.
    pub path: String,
}

/// Whether the topmost of `layers` (base first) that has `rel` has it as a file, not as a
/// whiteout; no layer having it means no.
fn in_layers(layers: &[PathBuf], rel: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for l in layers.iter().rev() {
        if let Ok(m) = std::fs::symlink_metadata(l.join(rel)) {
            return !(m.file_type().is_char_device() && m.rdev() == 0);
        }
    }
    false
}

/// What [`Snapshotter::unpack`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackReport {
    /// Layer directories, base first.
    pub layers: Vec<PathBuf>,
    /// Layers applied now.
    pub unpacked: usize,
    /// Layers that were already there.
    pub reused: usize,
}

fn valid_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 128
        || id.starts_with('.')
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(Error::InvalidEntry {
            path: id.to_owned(),
            reason: "container ids are 1-128 of [A-Za-z0-9._-], not starting with `.`".into(),
        });
    }
    Ok(())
}

/// Creates `dir` (and missing parents) with mode 0700, or tightens an existing directory
/// owned by this user to 0700, so no other local user can walk into what it holds.
///
/// Unpacked layers hold an image's device nodes and setuid-root binaries: a directory on the
/// way to them that others may search lets any local user run them (euid 0 from uid 65534).
pub fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::fs("mkdir", parent, e))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::fs("mkdir", dir, e)),
    }
    let meta = std::fs::metadata(dir).map_err(|e| Error::fs("stat", dir, e))?;
    if !meta.is_dir() {
        return Err(Error::fs(
            "mkdir",
            dir,
            std::io::Error::from(std::io::ErrorKind::NotADirectory),
        ));
    }
    if meta.mode() & 0o077 != 0 && meta.uid() == rustix::process::geteuid().as_raw() {
        tracing::info!(dir = %dir.display(), mode = format!("{:o}", meta.mode() & 0o7777), "tightening to 0700");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::fs("chmod", dir, e))?;
    }
    Ok(())
}

/// Removes the tree at `path` with [`crate::root::remove_all`]: any depth, two descriptors.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::fs(
            "remove",
            path,
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        ));
    };
    let dir = match rustix::fs::open(
        parent,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(d) => d,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(Error::fs("open", parent, e)),
    };
    crate::root::remove_all(std::os::fd::AsFd::as_fd(&dir), name)
        .map_err(|e| Error::fs("remove", path, e))?;
    Ok(())
}

impl Snapshotter {
    /// Snapshots under `root` (created when missing). `root`, its `layers` and `containers`
    /// directories and each container's directory are private to their owner (0700, and
    /// tightened when an existing store is opened): see [`private_dir`].
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        private_dir(&root)?;
        for d in ["layers", "containers"] {
            private_dir(&root.join(d))?;
        }
        Ok(Self {
            root,
            apply: ApplyOptions::default(),
        })
    }

    /// The options layers are applied with (ownership, devices, xattrs, and `sync`: each
    /// unpacked layer is on the disk, its name included, before it is used).
    pub fn with_apply_options(mut self, opts: ApplyOptions) -> Self {
        self.apply = opts;
        self
    }

    /// The directory of the layer with this DiffID.
    pub fn layer_dir(&self, diff_id: &Digest) -> Result<PathBuf> {
        let (alg, hex) = oci_rs_image::digest_path_components(diff_id)?;
        Ok(self.root.join("layers").join(format!("{alg}-{hex}")))
    }

    fn image_layers(manifest: &Manifest) -> Result<Vec<Descriptor>> {
        manifest
            .as_image()
            .map(|m| m.layers().clone())
            .ok_or_else(|| Error::InvalidEntry {
                path: manifest.digest().to_string(),
                reason: "an index, not an image manifest".into(),
            })
    }

    /// The layers of an image paired with their DiffIDs (from its config).
    pub async fn image_stack(
        src: &dyn ImageSource,
        manifest: &Manifest,
    ) -> Result<Vec<(Descriptor, Digest)>> {
        let layers = Self::image_layers(manifest)?;
        let config_desc = manifest
            .as_image()
            .map(|m| m.config().clone())
            .ok_or_else(|| Error::InvalidEntry {
                path: manifest.digest().to_string(),
                reason: "an index, not an image manifest".into(),
            })?;
        let config = read_config(src, &config_desc).await?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != layers.len() {
            return Err(Error::InvalidEntry {
                path: manifest.digest().to_string(),
                reason: format!("{} diff_ids for {} layers", diff_ids.len(), layers.len()),
            });
        }
        layers
            .into_iter()
            .zip(diff_ids)
            .map(|(l, d)| Ok((l, oci_rs_image::parse_digest(d)?)))
            .collect()
    }

    /// Unpacks every layer of an image that is not unpacked yet, each into its own
    /// directory with overlay whiteouts, verifying blob digests and DiffIDs.
    pub async fn unpack(&self, src: &dyn ImageSource, manifest: &Manifest) -> Result<UnpackReport> {
        let stack = Self::image_stack(src, manifest).await?;
        self.unpack_layers(src, &stack).await
    }

    /// [`Snapshotter::unpack`] for a stack of layers given with their DiffIDs, base first
    /// (an image being built has no manifest yet).
    pub async fn unpack_layers(
        &self,
        src: &dyn ImageSource,
        stack: &[(Descriptor, Digest)],
    ) -> Result<UnpackReport> {
        self.unpack_stack(src, None, stack, None).await
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn apply_options(&self) -> &ApplyOptions {
        &self.apply
    }

    /// A new temporary directory to unpack a layer in, named after this process
    /// (`.unpack-PID-RANDOM`) so that the next unpack can tell a dead process's from a running
    /// one's.
    pub(crate) fn unpack_dir(&self) -> Result<tempfile::TempDir> {
        process_temp_dir(&self.root.join("layers"), UNPACK_PREFIX)
    }

    /// Removes the temporary unpack directories of processes that are gone (a crash or a
    /// kill in the middle of an unpack).
    pub(crate) fn reap_unpack_dirs(&self) {
        reap_process_temps(&self.root.join("layers"), UNPACK_PREFIX);
    }

    /// A new, empty directory in container `id`'s snapshot for a flattened view of its files
    /// (an export where its overlay cannot be mounted here: rootless), removed when the value
    /// is dropped. Named after this process (`.export-PID-RANDOM`), so the views that exports
    /// of processes now gone left (a kill, Ctrl-C) are removed first.
    pub fn export_view(&self, id: &str) -> Result<tempfile::TempDir> {
        valid_id(id)?;
        let dir = self.root.join("containers").join(id);
        reap_process_temps(&dir, EXPORT_PREFIX);
        process_temp_dir(&dir, EXPORT_PREFIX)
    }

    /// Takes an overlay snapshot's upper directory as the unpacked directory of the layer
    /// `diff_id` that was just made from it, so the next snapshot on that layer needs no
    /// unpacking (a build's next step). The snapshot must be unmounted; its upper directory
    /// is gone afterwards. Does nothing when that layer is already unpacked.
    pub fn adopt_upper(&self, id: &str, diff_id: &Digest) -> Result<()> {
        valid_id(id)?;
        let dir = self.layer_dir(diff_id)?;
        if dir.is_dir() {
            return Ok(());
        }
        let upper = self.root.join("containers").join(id).join("upper");
        match std::fs::rename(&upper, &dir) {
            Ok(()) => Ok(()),
            Err(_) if dir.is_dir() => Ok(()),
            Err(e) => Err(Error::fs("rename", &upper, e)),
        }
    }

    /// Prepares a root filesystem for container `id`: an overlay mount of the image's
    /// layers when possible, else a copy. `force_copy` skips overlayfs.
    pub async fn prepare(
        &self,
        id: &str,
        src: &dyn ImageSource,
        manifest: &Manifest,
        force_copy: bool,
    ) -> Result<Mount> {
        let stack = Self::image_stack(src, manifest).await?;
        self.prepare_layers(id, src, &stack, manifest.digest().as_ref(), force_copy)
            .await
    }

    /// [`Snapshotter::prepare`] for a stack of layers with their DiffIDs, base first;
    /// `image` is what [`SnapshotInfo::image`] records.
    pub async fn prepare_layers(
        &self,
        id: &str,
        src: &dyn ImageSource,
        stack: &[(Descriptor, Digest)],
        image: &str,
        force_copy: bool,
    ) -> Result<Mount> {
        valid_id(id)?;
        let base = self.root.join("containers").join(id);
        if base.exists() {
            return Err(Error::InvalidEntry {
                path: id.to_owned(),
                reason: "a container with this id already exists".into(),
            });
        }
        let (upper, work, rootfs) = (base.join("upper"), base.join("work"), base.join("rootfs"));
        private_dir(&base)?;
        for d in [&upper, &work, &rootfs] {
            std::fs::create_dir_all(d).map_err(|e| Error::fs("mkdir", d, e))?;
        }
        let layers = if force_copy {
            Vec::new()
        } else {
            self.unpack_layers(src, stack).await?.layers
        };
        let info = |kind: MountKind, layers: &[PathBuf]| SnapshotInfo {
            id: id.to_owned(),
            image: image.to_owned(),
            kind,
            layers: layers.to_vec(),
        };
        // An empty stack (FROM scratch) has no lower directory to mount: a plain directory.
        if !force_copy && !layers.is_empty() {
            match mount_overlay(&layers, &upper, &work, &rootfs) {
                Ok(()) => {
                    self.write_info(&info(MountKind::Overlay, &layers))?;
                    return Ok(Mount {
                        id: id.to_owned(),
                        rootfs,
                        upper,
                        kind: MountKind::Overlay,
                        layers,
                    });
                }
                Err(e) => tracing::info!(error = %e, "overlayfs unavailable; copying layers"),
            }
        }
        self.apply_stack(src, stack, &rootfs).await?;
        self.write_info(&info(MountKind::Copy, &layers))?;
        Ok(Mount {
            id: id.to_owned(),
            rootfs,
            upper,
            kind: MountKind::Copy,
            layers,
        })
    }

    fn write_info(&self, info: &SnapshotInfo) -> Result<()> {
        let dir = self.root.join("containers").join(&info.id);
        let tmp = dir.join(format!(".{INFO_FILE}.tmp"));
        let bytes = serde_json::to_vec(info).map_err(|e| Error::InvalidEntry {
            path: info.id.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&tmp, bytes).map_err(|e| Error::fs("write", &tmp, e))?;
        std::fs::rename(&tmp, dir.join(INFO_FILE)).map_err(|e| Error::fs("rename", &tmp, e))
    }

    /// The directory of container snapshot `id` (`ROOT/containers/ID`: its `rootfs`, and for
    /// an overlay its `upper` and `work`).
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// What is known of snapshot `id`.
    pub fn info(&self, id: &str) -> Result<SnapshotInfo> {
        valid_id(id)?;
        let path = self.root.join("containers").join(id).join(INFO_FILE);
        let bytes = std::fs::read(&path).map_err(|e| Error::fs("read", &path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::InvalidEntry {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Every snapshot, by id.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>> {
        let dir = self.root.join("containers");
        let mut out = Vec::new();
        let rd = std::fs::read_dir(&dir).map_err(|e| Error::fs("read", &dir, e))?;
        for e in rd.flatten() {
            if let Some(id) = e.file_name().to_str() {
                if let Ok(i) = self.info(id) {
                    out.push(i);
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Reopens snapshot `id`: its root filesystem mounted again when it is an overlay that is
    /// not mounted (after a reboot, or an unmount by [`Snapshotter::unmount`]).
    pub fn open(&self, id: &str) -> Result<Mount> {
        let info = self.info(id)?;
        let base = self.root.join("containers").join(id);
        let (upper, work, rootfs) = (base.join("upper"), base.join("work"), base.join("rootfs"));
        if info.kind == MountKind::Overlay && !is_mount_point(&rootfs, &base) {
            mount_overlay(&info.layers, &upper, &work, &rootfs)
                .map_err(|e| Error::fs("mount", &rootfs, e))?;
        }
        Ok(Mount {
            id: info.id,
            rootfs,
            upper,
            kind: info.kind,
            layers: info.layers,
        })
    }

    /// Unmounts snapshot `id`'s overlay (its files stay; [`Snapshotter::open`] mounts it again).
    pub fn unmount(&self, id: &str) -> Result<()> {
        valid_id(id)?;
        let rootfs = self.root.join("containers").join(id).join("rootfs");
        match rustix::mount::unmount(&rootfs, rustix::mount::UnmountFlags::DETACH) {
            Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(rustix::io::Errno::PERM) if !rustix::process::geteuid().is_root() => Ok(()),
            Err(e) => Err(Error::fs("unmount", &rootfs, e)),
        }
    }

    async fn apply_stack(
        &self,
        src: &dyn ImageSource,
        stack: &[(Descriptor, Digest)],
        dir: &Path,
    ) -> Result<()> {
        for (layer, _) in stack {
            let blob = src.blob(layer).await?;
            apply(dir, blob, layer.media_type().as_ref(), &self.apply).await?;
        }
        Ok(())
    }

    /// The container's changes as a compressed layer in `store`: (descriptor, DiffID).
    pub async fn commit(
        &self,
        mount: &Mount,
        src: &dyn ImageSource,
        manifest: &Manifest,
        store: &dyn oci_rs_image::BlobStore,
        compression: Compression,
        opts: &DiffOptions,
    ) -> Result<(Descriptor, Digest)> {
        let stack = Self::image_stack(src, manifest).await?;
        let (d, id, _) = self
            .commit_layers(mount, src, &stack, store, compression, opts)
            .await?;
        Ok((d, id))
    }

    /// [`Snapshotter::commit`] for a snapshot prepared from a stack of layers; also returns
    /// what the diff found (nothing changed: every count zero).
    pub async fn commit_layers(
        &self,
        mount: &Mount,
        src: &dyn ImageSource,
        stack: &[(Descriptor, Digest)],
        store: &dyn oci_rs_image::BlobStore,
        compression: Compression,
        opts: &DiffOptions,
    ) -> Result<(Descriptor, Digest, crate::diff::DiffReport)> {
        match mount.kind {
            MountKind::Overlay => {
                crate::diff::diff_to_store(store, None, &mount.upper, true, compression, opts).await
            }
            MountKind::Copy => {
                let lower = tempfile::Builder::new()
                    .prefix(".lower-")
                    .tempdir_in(self.root.join("containers"))
                    .map_err(|e| Error::fs("mkdtemp", &self.root, e))?;
                self.apply_stack(src, stack, lower.path()).await?;
                crate::diff::diff_to_store(
                    store,
                    Some(lower.path()),
                    &mount.rootfs,
                    false,
                    compression,
                    opts,
                )
                .await
            }
        }
    }

    /// Unmounts and removes container `id`'s directories.
    pub fn remove(&self, id: &str) -> Result<()> {
        valid_id(id)?;
        let base = self.root.join("containers").join(id);
        let rootfs = base.join("rootfs");
        match rustix::mount::unmount(&rootfs, rustix::mount::UnmountFlags::DETACH) {
            Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
            // Not root: nothing of ours is mounted in this namespace (a rootless container's
            // mounts lived and died in its own), and the kernel refuses to look.
            Err(rustix::io::Errno::PERM) if !rustix::process::geteuid().is_root() => {}
            Err(e) => return Err(Error::fs("unmount", &rootfs, e)),
        }
        remove_tree(&base)
    }

    /// What container snapshot `id` changed against its image, as `docker diff` lists it:
    /// each path added, changed (a directory whose contents changed is changed too) or
    /// deleted, sorted by path. Read from its overlay's upper directory (a whiteout is a
    /// deletion; a path one of its layers has, a change). A snapshot that is a copy has no
    /// record of its changes: [`Error::InvalidEntry`]. `mount_points` (relative, as
    /// [`DiffOptions::mount_points`]) are what a runtime mounted over: left out when they
    /// are empty (a file, or a directory), and so is a directory only they are in.
    pub fn change_list(&self, id: &str, mount_points: &[PathBuf]) -> Result<Vec<Change>> {
        let info = self.info(id)?;
        if info.kind != MountKind::Overlay {
            return Err(Error::InvalidEntry {
                path: id.to_owned(),
                reason: "the snapshot is a copy, which keeps no record of its changes".into(),
            });
        }
        let upper = self.root.join("containers").join(id).join("upper");
        let mut out = Vec::new();
        let mut stack = vec![PathBuf::new()];
        // Directories holding nothing but mount point stubs, left out after the walk.
        let mut stub_dirs: Vec<PathBuf> = Vec::new();
        while let Some(rel) = stack.pop() {
            let dir = upper.join(&rel);
            let rd = std::fs::read_dir(&dir).map_err(|e| Error::fs("read", &dir, e))?;
            let (mut children, mut stubs) = (0, 0);
            for e in rd {
                let e = e.map_err(|e| Error::fs("read", &dir, e))?;
                let path = rel.join(e.file_name());
                let meta = std::fs::symlink_metadata(e.path())
                    .map_err(|err| Error::fs("stat", e.path(), err))?;
                children += 1;
                let empty = (meta.is_file() && meta.len() == 0)
                    || (meta.is_dir()
                        && std::fs::read_dir(e.path()).is_ok_and(|mut d| d.next().is_none()));
                if empty && mount_points.contains(&path) {
                    stubs += 1;
                    continue;
                }
                use std::os::unix::fs::{FileTypeExt, MetadataExt};
                let whiteout = meta.file_type().is_char_device() && meta.rdev() == 0;
                let kind = if whiteout {
                    ChangeKind::Deleted
                } else if in_layers(&info.layers, &path) {
                    ChangeKind::Changed
                } else {
                    ChangeKind::Added
                };
                if meta.is_dir() {
                    stack.push(path.clone());
                }
                out.push(Change {
                    kind,
                    path: format!("/{}", path.display()),
                });
            }
            if stubs > 0 && stubs == children {
                stub_dirs.push(rel);
            }
        }
        out.retain(|c| {
            !stub_dirs
                .iter()
                .any(|d| Path::new(&c.path).strip_prefix("/").is_ok_and(|p| p == d))
        });
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Writes a container's changes as a plain tar (for inspection; `docker diff`).
    pub async fn changes<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        mount: &Mount,
        out: W,
    ) -> Result<W> {
        let opts = DiffOptions::default();
        let (_, w) = match mount.kind {
            MountKind::Overlay => diff_overlay(&mount.upper, out, &opts).await?,
            MountKind::Copy => diff(None, &mount.rootfs, out, &opts).await?,
        };
        Ok(w)
    }
}

/// Flattens an image's layers into one: applies them in order into a scratch directory next to
/// `scratch_parent`, then writes that tree as a single compressed layer into `store`. Returns
/// the layer's descriptor and DiffID, ready for a one-layer image (`docker export | docker
/// import` in one call).
pub async fn flatten(
    src: &dyn ImageSource,
    manifest: &Manifest,
    store: &dyn oci_rs_image::BlobStore,
    compression: Compression,
    scratch_parent: &Path,
) -> Result<(Descriptor, Digest)> {
    let layers = Snapshotter::image_layers(manifest)?;
    let scratch = tempfile::Builder::new()
        .prefix(".flatten-")
        .tempdir_in(scratch_parent)
        .map_err(|e| Error::fs("mkdtemp", scratch_parent, e))?;
    for layer in &layers {
        let blob = src.blob(layer).await?;
        apply(
            scratch.path(),
            blob,
            layer.media_type().as_ref(),
            &ApplyOptions::default(),
        )
        .await?;
    }
    let (desc, diff_id, _) = crate::diff::diff_to_store(
        store,
        None,
        scratch.path(),
        false,
        compression,
        &DiffOptions::from_env(),
    )
    .await?;
    Ok((desc, diff_id))
}

/// Whether `path` is mounted on (its device differs from its parent's).
fn is_mount_point(path: &Path, parent: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(path), std::fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    }
}

/// Mounts overlayfs with `layers` (base first) as lower directories.
pub fn mount_overlay(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> std::io::Result<()> {
    // overlayfs wants the topmost lower first.
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| {
            p.display()
                .to_string()
                .replace(',', "\\,")
                .replace(':', "\\:")
        })
        .collect();
    if lower.is_empty() {
        return Err(std::io::Error::other("an image without layers"));
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    if data.len() >= 4096 {
        return Err(std::io::Error::other(
            "too many layers for one overlay mount option page",
        ));
    }
    let data = std::ffi::CString::new(data).map_err(std::io::Error::other)?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        rustix::mount::MountFlags::empty(),
        Some(data.as_c_str()),
    )?;
    Ok(())
}

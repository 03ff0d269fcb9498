//! What a store holds on disk, as docker's `system df` shows it.

use super::{Containers, EngineResult, PruneFilter, Volumes};
use crate::MonitorState;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One line of `system df`: how many, how many in use, their bytes, and the bytes a prune
/// would free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct UsageLine {
    /// How many there are.
    pub total: usize,
    /// How many are in use (an image a container was made from, a running container, a
    /// volume a container mounts).
    pub active: usize,
    /// Their bytes on disk (apparent sizes).
    pub size: u64,
    /// The bytes of those not in use.
    pub reclaimable: u64,
}

impl UsageLine {
    /// The fields docker's `system df --format` knows of this line (`Type`, `TotalCount`,
    /// `Active`, `Size`, `Reclaimable` with its share), `kind` its TYPE.
    pub fn df_fields(&self, kind: &str) -> serde_json::Value {
        let share = match self.size {
            0 => String::new(),
            s => format!(" ({}%)", self.reclaimable * 100 / s),
        };
        serde_json::json!({
            "Type": kind,
            "TotalCount": self.total.to_string(),
            "Active": self.active.to_string(),
            "Size": crate::human_size(self.size),
            "Reclaimable": format!("{}{share}", crate::human_size(self.reclaimable)),
        })
    }
}

/// docker's `system df`: images, containers, local volumes and the build cache.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiskUsage {
    /// Images, one per image id: each one's unpacked size (layers two images share count
    /// in both).
    pub images: UsageLine,
    /// Containers: the bytes each wrote (its snapshot's upper directory).
    pub containers: UsageLine,
    /// Named and anonymous volumes: the bytes under each.
    pub volumes: UsageLine,
    /// Build cache entries and `RUN --mount=type=cache` directories.
    pub build_cache: UsageLine,
    /// Each container's written bytes, by id.
    pub container_sizes: BTreeMap<String, u64>,
    /// Each volume's bytes, by name.
    pub volume_sizes: BTreeMap<String, u64>,
    /// Each named (or untagged) image, as `system df -v` lists it.
    pub image_rows: Vec<ImageUsage>,
    /// Each build cache entry and cache mount, as `system df -v` lists them.
    pub cache_rows: Vec<CacheUsage>,
    /// The unpacked bytes of every layer of every image, each layer once (docker's
    /// `LayersSize`).
    pub layers_size: u64,
}

/// One image of `system df -v`: its `images` row and the bytes it shares with others.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImageUsage {
    /// `registry/repository` in docker's short form (`<none>` when untagged).
    pub repository: String,
    /// The tag (`<none>`).
    pub tag: String,
    /// docker's image id (the config digest).
    pub id: String,
    /// When it was created (nanoseconds since the epoch), when its config says.
    pub created: Option<u64>,
    /// Its unpacked size.
    pub size: u64,
    /// The unpacked bytes of its layers that another image (another id) has too.
    pub shared_size: u64,
    /// How many containers were made from it.
    pub containers: usize,
}

impl ImageUsage {
    /// The fields docker's `system df -v` shows of an image (`Repository`, `Tag`, `ID`,
    /// `CreatedSince`, `Size`, `SharedSize`, `UniqueSize`, `Containers`).
    pub fn df_fields(&self) -> serde_json::Value {
        let hex = self.id.split_once(':').map_or(&self.id[..], |(_, h)| h);
        serde_json::json!({
            "Repository": self.repository,
            "Tag": self.tag,
            "ID": hex.chars().take(12).collect::<String>(),
            "CreatedSince": self.created.map_or_else(|| "N/A".into(), crate::ago),
            "Size": crate::human_size(self.size),
            "SharedSize": crate::human_size(self.shared_size),
            "UniqueSize": crate::human_size(self.size - self.shared_size.min(self.size)),
            "Containers": self.containers.to_string(),
        })
    }
}

/// One record of the build cache in `system df -v`: an entry of the step cache (`regular`,
/// a small record naming the layers it keeps) or a `RUN --mount=type=cache` directory
/// (`exec.cachemount`), as BuildKit types them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheUsage {
    /// Its key (an entry) or directory name (a cache mount).
    pub id: String,
    /// `regular` or `exec.cachemount`.
    pub kind: &'static str,
    /// Its bytes on disk.
    pub size: u64,
    /// When it was last written (nanoseconds since the epoch).
    pub modified: Option<u64>,
}

impl CacheUsage {
    /// The fields docker's `system df -v` shows of a build cache record (`ID`, `CacheType`,
    /// `Size`, `CreatedSince`); `LastUsedSince`, `UsageCount` and `Shared`, which the
    /// engine does not track, are empty.
    pub fn df_fields(&self) -> serde_json::Value {
        serde_json::json!({
            "ID": self.id.chars().take(12).collect::<String>(),
            "CacheType": self.kind,
            "Size": crate::human_size(self.size),
            "CreatedSince": self.modified.map_or_else(|| "N/A".into(), crate::ago),
            "LastUsedSince": "",
            "UsageCount": "",
            "Shared": "",
        })
    }
}

impl Containers {
    /// What this store holds on disk (docker's `system df`), its images in `images`.
    pub async fn disk_usage(&self, images: &oci_rs_layer::ImageStore) -> EngineResult<DiskUsage> {
        let views = self.list()?;
        let mut du = DiskUsage::default();
        // Images: one line per id.
        let used_images: BTreeSet<&str> =
            views.iter().map(|v| v.config.image_id.as_str()).collect();
        let mut seen = BTreeSet::new();
        let rows = images.list().await?;
        // The ids each layer belongs to: one with two is shared.
        let mut owners: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut layer_sizes: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &rows {
            for (digest, size) in &r.layers {
                owners.entry(digest).or_default().insert(&r.id);
                layer_sizes.insert(digest, *size);
            }
        }
        du.layers_size = layer_sizes.values().sum();
        for r in &rows {
            let shared_size = r
                .layers
                .iter()
                .filter(|(d, _)| owners.get(d.as_str()).is_some_and(|o| o.len() > 1))
                .map(|(_, n)| n)
                .sum();
            du.image_rows.push(ImageUsage {
                repository: r.repository.clone(),
                tag: r.tag.clone(),
                id: r.id.clone(),
                created: r.created,
                size: r.size,
                shared_size,
                containers: views.iter().filter(|v| v.config.image_id == r.id).count(),
            });
        }
        for r in rows {
            if !seen.insert(r.id.clone()) {
                continue;
            }
            du.images.total += 1;
            du.images.size += r.size;
            if used_images.contains(r.id.as_str()) {
                du.images.active += 1;
            } else {
                du.images.reclaimable += r.size;
            }
        }
        // Containers: what each wrote.
        let snapshots = self.data_dir().join("snapshots/containers");
        for v in &views {
            let size = tree_size(&snapshots.join(&v.config.id).join("upper"));
            du.containers.total += 1;
            du.containers.size += size;
            if matches!(
                v.status.state,
                MonitorState::Running | MonitorState::Restarting
            ) {
                du.containers.active += 1;
            } else {
                du.containers.reclaimable += size;
            }
            du.container_sizes.insert(v.config.id.clone(), size);
        }
        // Volumes.
        let used_volumes: BTreeSet<&str> = views
            .iter()
            .flat_map(|v| v.config.volumes.iter().map(|x| x.0.as_str()))
            .collect();
        for vol in Volumes::open(self.data_dir())?.list()? {
            let size = tree_size(&vol.mountpoint);
            du.volumes.total += 1;
            du.volumes.size += size;
            if used_volumes.contains(vol.name.as_str()) {
                du.volumes.active += 1;
            } else {
                du.volumes.reclaimable += size;
            }
            du.volume_sizes.insert(vol.name, size);
        }
        // The build cache: its entries and cache mounts, none in use between builds.
        let cache = images.cache_dir();
        for (dir, kind) in [
            (cache.clone(), "regular"),
            (
                cache.with_file_name("build-cache-mounts"),
                "exec.cachemount",
            ),
        ] {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                // An entry being written (a temporary file) is not one yet.
                if name.starts_with('.') {
                    continue;
                }
                let size = tree_size(&e.path());
                du.build_cache.total += 1;
                du.build_cache.size += size;
                du.build_cache.reclaimable += size;
                let modified = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos() as u64);
                du.cache_rows.push(CacheUsage {
                    id: name,
                    kind,
                    size,
                    modified,
                });
            }
        }
        Ok(du)
    }
}

/// The rows of docker's `system df -v`, as its templates see them: images (with the bytes
/// they share), containers (`ps`'s fields, with what each wrote as `Size`), local volumes
/// (`Name`, `Links`, `Size`) and build cache records; [`DiskUsageRows::render`] writes them
/// as docker's CLI does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiskUsageRows {
    /// [`ImageUsage::df_fields`] of each image.
    pub images: Vec<serde_json::Value>,
    /// Each container's `ps` fields, its written bytes as `Size`.
    pub containers: Vec<serde_json::Value>,
    /// Each volume's `Name`, `Links` (the containers using it) and `Size`.
    pub volumes: Vec<serde_json::Value>,
    /// [`CacheUsage::df_fields`] of each build cache record.
    pub cache: Vec<serde_json::Value>,
    /// The build cache's bytes (the `Build cache usage:` title).
    pub build_cache_size: u64,
}

impl DiskUsageRows {
    /// docker's `system df -v` text: a table each of images, containers, local volumes and
    /// the build cache, under docker's titles.
    #[cfg(feature = "format")]
    pub fn render(&self) -> crate::Result<String> {
        use crate::format::{self, Format};
        let section = |template: &str, rows: &[serde_json::Value], headers| {
            Format::parse("table", template)?.render_all(rows, headers)
        };
        Ok(format!(
            "Images space usage:\n\n{}\nContainers space usage:\n\n{}\nLocal Volumes space usage:\n\n{}\nBuild cache usage: {}\n\n{}",
            section(
                r"table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}",
                &self.images,
                format::DF_IMAGE_HEADERS,
            )?,
            section(
                r"table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}",
                &self.containers,
                format::DF_CONTAINER_HEADERS,
            )?,
            section(
                r"table {{.Name}}\t{{.Links}}\t{{.Size}}",
                &self.volumes,
                format::DF_VOLUME_HEADERS,
            )?,
            crate::human_size(self.build_cache_size),
            section(
                r"table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t{{.UsageCount}}\t{{.Shared}}",
                &self.cache,
                format::DF_CACHE_HEADERS,
            )?,
        ))
    }
}

impl Containers {
    /// The rows of docker's `system df -v` from `du` (this store's [`disk_usage`](Self::disk_usage)):
    /// containers name their images as [`list_with_images`](Self::list_with_images) does.
    pub async fn disk_usage_rows(
        &self,
        images: &oci_rs_layer::ImageStore,
        du: &DiskUsage,
    ) -> EngineResult<DiskUsageRows> {
        let containers = self
            .list_with_images(images)
            .await?
            .iter()
            .map(|v| {
                let mut f = v.ps_fields_truncated(true);
                let size = du.container_sizes.get(&v.config.id).copied().unwrap_or(0);
                f["Size"] = crate::human_size(size).into();
                f
            })
            .collect();
        let volumes = du
            .volume_sizes
            .iter()
            .map(|(name, size)| {
                serde_json::json!({
                    "Name": name,
                    "Links": self.volume_users(name).len().to_string(),
                    "Size": crate::human_size(*size),
                })
            })
            .collect();
        Ok(DiskUsageRows {
            images: du.image_rows.iter().map(ImageUsage::df_fields).collect(),
            containers,
            volumes,
            cache: du.cache_rows.iter().map(CacheUsage::df_fields).collect(),
            build_cache_size: du.build_cache.size,
        })
    }
}

impl Containers {
    /// The bytes container `id` wrote (its snapshot's upper directory: `ps -s`'s SIZE).
    pub fn written_size(&self, id: &str) -> u64 {
        tree_size(
            &self
                .data_dir()
                .join("snapshots/containers")
                .join(id)
                .join("upper"),
        )
    }

    /// docker's `SizeRw` and `SizeRootFs` of every container, by id (`ps -s`, `system df`):
    /// what its writable layer holds, and that with its image's unpacked size (`images` is
    /// the store its image is in; 0 for an image no longer there).
    pub async fn sizes(
        &self,
        images: &oci_rs_layer::ImageStore,
    ) -> EngineResult<BTreeMap<String, (u64, u64)>> {
        let image_sizes: BTreeMap<String, u64> = images
            .list()
            .await?
            .into_iter()
            .map(|r| (r.id, r.size))
            .collect();
        Ok(self
            .list()?
            .into_iter()
            .map(|v| {
                let rw = self.written_size(&v.config.id);
                let image = image_sizes.get(&v.config.image_id).copied().unwrap_or(0);
                (v.config.id, (rw, rw + image))
            })
            .collect())
    }
}

/// What [`Containers::system_prune`] removes besides stopped containers, unused networks,
/// dangling images and the build cache.
#[derive(Debug, Clone, Default)]
pub struct SystemPruneOptions {
    /// Every image no container uses, not only the dangling ones (docker's `-a`).
    pub all_images: bool,
    /// Anonymous volumes no container uses (docker's `--volumes`).
    pub volumes: bool,
    /// Which stopped containers go (`until`, `label`, `label!`).
    pub filter: PruneFilter,
}

/// What a prune of containers or volumes removed, as docker reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// The ids (containers) or names (volumes) removed.
    pub deleted: Vec<String>,
    /// The bytes their removal freed: the containers' writable layers, the volumes' data.
    pub space_reclaimed: u64,
}

/// What [`Containers::system_prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SystemPruneReport {
    /// The containers removed.
    pub containers: PruneReport,
    /// The names of the networks removed.
    pub networks: Vec<String>,
    /// The volumes removed.
    pub volumes: PruneReport,
    /// The image names untagged and the untagged images removed.
    pub images: oci_rs_layer::Removed,
    /// How many build cache entries and cache mounts were removed.
    pub build_cache: usize,
    /// The bytes freed, as [`Containers::disk_usage`] measures them before and after.
    pub reclaimed: u64,
}

impl Containers {
    /// docker's `system prune`: stopped containers (those `options.filter` takes), networks
    /// no container is on, with `options.volumes` unused anonymous volumes, dangling images
    /// (every unused one with `options.all_images`) and the build cache, in that order, so
    /// that what a removed container held is free for the next step.
    ///
    /// ```no_run
    /// # async fn f(images: &oci_rs_layer::ImageStore) -> oci_rs_runtime::EngineResult<()> {
    /// let store = oci_rs_runtime::Containers::open(std::path::Path::new("/var/lib/oci-rs"))?;
    /// let report = store
    ///     .system_prune(images, &oci_rs_runtime::SystemPruneOptions::default())
    ///     .await?;
    /// println!("{} containers removed, {} bytes freed", report.containers.deleted.len(), report.reclaimed);
    /// # Ok(()) }
    /// ```
    pub async fn system_prune(
        &self,
        images: &oci_rs_layer::ImageStore,
        options: &SystemPruneOptions,
    ) -> EngineResult<SystemPruneReport> {
        let total =
            |d: &DiskUsage| d.images.size + d.containers.size + d.volumes.size + d.build_cache.size;
        let before = total(&self.disk_usage(images).await?);
        let containers = self.prune_filtered(&options.filter)?;
        let networks = self.prune_networks(&crate::NetworkFilter::default())?;
        let volumes = if options.volumes {
            self.prune_volumes(&super::VolumeFilter::default())?
        } else {
            PruneReport::default()
        };
        let images_gone = images.prune(options.all_images).await?;
        let build_cache = images.prune_cache()?;
        let after = total(&self.disk_usage(images).await?);
        Ok(SystemPruneReport {
            containers,
            networks,
            volumes,
            images: images_gone,
            build_cache,
            reclaimed: before.saturating_sub(after),
        })
    }
}

impl Containers {
    /// docker's `/info` document of this store and host (what `docker info --format`
    /// templates read): container counts by state, the images (by id), the kernel, OS,
    /// CPUs and memory, the cgroup version, and this engine's fixed answers (driver,
    /// runtimes, security options).
    pub async fn system_info(
        &self,
        images: &oci_rs_layer::ImageStore,
    ) -> EngineResult<serde_json::Value> {
        let views = self.list()?;
        let count =
            |f: &dyn Fn(&super::ContainerView) -> bool| views.iter().filter(|v| f(v)).count();
        let running = count(&|v| v.status.state == MonitorState::Running && !v.paused);
        let paused = count(&|v| v.paused);
        let ids: BTreeSet<String> = images.list().await?.into_iter().map(|r| r.id).collect();
        let uname = rustix::system::uname();
        let os = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_else(|| "Linux".into());
        let cgroup_v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let mut doc = serde_json::json!({
            "ID": "",
            "Containers": views.len(),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": views.len() - running - paused,
            "Images": ids.len(),
            "Driver": "overlay",
            "DriverStatus": [],
            "Plugins": { "Volume": ["local"], "Network": ["bridge", "host", "null"], "Log": ["json-file"] },
            "MemoryLimit": true,
            "SwapLimit": false,
            "CpuCfsPeriod": true,
            "CpuCfsQuota": true,
            "PidsLimit": true,
            "IPv4Forwarding": true,
            "Debug": false,
            "NFd": 0,
            "NGoroutines": 0,
            "SystemTime": oci_rs_image::rfc3339(crate::now_ns()),
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": if cgroup_v2 { "2" } else { "1" },
            "KernelVersion": uname.release().to_string_lossy(),
            "OperatingSystem": os,
            "OSType": "linux",
            "Architecture": uname.machine().to_string_lossy(),
            "NCPU": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "MemTotal": super::host_memory(),
        });
        let more = serde_json::json!({
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": { "IndexConfigs": {}, "InsecureRegistryCIDRs": [], "Mirrors": [] },
            "DockerRootDir": self.data_dir(),
            "Name": uname.nodename().to_string_lossy(),
            "Labels": [],
            "ExperimentalBuild": false,
            "ServerVersion": env!("CARGO_PKG_VERSION"),
            "Runtimes": { "oci-rs": { "path": "oci-rs" } },
            "DefaultRuntime": "oci-rs",
            "Swarm": { "LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "", "ControlAvailable": false, "Error": "", "RemoteManagers": null },
            "LiveRestoreEnabled": true,
            "Isolation": "",
            "InitBinary": "",
            "SecurityOptions": ["name=seccomp,profile=builtin"],
            "Warnings": [],
        });
        if let (Some(d), serde_json::Value::Object(m)) = (doc.as_object_mut(), more) {
            d.extend(m);
        }
        Ok(doc)
    }
}

/// The apparent bytes of the files under `root` (not following links, not crossing into
/// other filesystems' mounts); 0 when it cannot be read.
pub(crate) fn tree_size(root: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(root) else {
        return 0;
    };
    if !top.is_dir() {
        return top.len();
    }
    let dev = top.dev();
    let mut total = 0u64;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                if m.dev() == dev {
                    stack.push(e.path());
                }
            } else {
                total = total.saturating_add(m.len());
            }
        }
    }
    total
}

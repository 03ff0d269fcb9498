//! cgroups: v1 (one hierarchy per controller) or v2 (unified), chosen by what the host has.
//!
//! The container's cgroup is created and limited before its init is released to `execve`,
//! and the init is placed in it then; `delete` removes it. Without write access (rootless,
//! not delegated) nothing is written and the container runs in the caller's cgroup.

use crate::devices::{self, DeviceRule};
use crate::error::{Error, Result};
use oci_spec::runtime::LinuxResources;
use std::path::{Path, PathBuf};

/// v1 controllers this runtime manages (the freezer for pause and resume, as runc's); those
/// the host does not mount are left out, and a spec that limits through one of them is an
/// error.
pub const V1_CONTROLLERS: [&str; 11] = [
    "memory", "pids", "cpu", "cpuset", "cpuacct", "devices", "freezer", "blkio", "net_cls",
    "net_prio", "hugetlb",
];

/// A container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Cgroup {
    /// v1: one directory per controller, `mount/controller/path`.
    V1 {
        /// Where the controller hierarchies are mounted (`/sys/fs/cgroup`).
        mount: PathBuf,
        /// The cgroup path inside each hierarchy.
        path: String,
    },
    /// v2: one directory in the unified hierarchy.
    V2 {
        /// Where the unified hierarchy is mounted.
        mount: PathBuf,
        /// The cgroup path inside it.
        path: String,
    },
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|source| Error::Cgroup {
        path: path.to_path_buf(),
        source,
    })
}

/// `value` into `path`, which must exist: a limit this host cannot apply (a controller not
/// mounted, a file the kernel or the I/O scheduler does not have) is a clear error, as with
/// runc and crun, not a container without it.
fn write_existing(path: &Path, value: &str) -> Result<()> {
    if !path.exists() {
        return Err(Error::Cgroup {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "this host has no such cgroup file: the limit cannot be applied",
            ),
        });
    }
    write(path, value)
}

fn clean_path(p: &str) -> Result<String> {
    let p = p.trim_start_matches('/');
    if p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(Error::spec(
            "linux.cgroupsPath",
            p,
            "a component is empty, `.` or `..`",
        ));
    }
    Ok(p.to_owned())
}

/// What a cgroup has used, as its controllers count it ([`Cgroup::stats`]); a counter this
/// host does not keep is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CgroupStats {
    /// CPU time of all its processes, in nanoseconds.
    pub cpu_ns: Option<u64>,
    /// Memory in use, in bytes (page cache included, as the kernel counts it).
    pub memory: Option<u64>,
    /// The memory limit; `None` without one.
    pub memory_limit: Option<u64>,
    /// Inactive page cache (what docker subtracts from the usage it shows).
    pub inactive_file: Option<u64>,
    /// Processes (and threads) in it.
    pub pids: Option<u64>,
    /// The process limit; `None` without one.
    pub pids_limit: Option<u64>,
    /// Bytes read from block devices.
    pub io_read: Option<u64>,
    /// Bytes written to block devices.
    pub io_write: Option<u64>,
}

/// A number in a cgroup file; `max` (no limit) and unreadable files are `None`.
fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed cgroup file (`memory.stat`, `cpu.stat`).
fn keyed(path: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

impl Cgroup {
    /// What the cgroup's processes have used so far (`docker stats`' figures). A v1 memory
    /// limit at the kernel's "unlimited" value reads as none.
    pub fn stats(&self) -> CgroupStats {
        match self {
            Cgroup::V1 { mount, path } => {
                let at = |c: &str, f: &str| mount.join(c).join(path).join(f);
                let (mut read, mut write) = (None::<u64>, None::<u64>);
                if let Ok(t) =
                    std::fs::read_to_string(at("blkio", "blkio.throttle.io_service_bytes"))
                {
                    for l in t.lines() {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        if let [_, op, v] = f.as_slice() {
                            let v: u64 = v.parse().unwrap_or(0);
                            match *op {
                                "Read" => *read.get_or_insert(0) += v,
                                "Write" => *write.get_or_insert(0) += v,
                                _ => {}
                            }
                        }
                    }
                }
                CgroupStats {
                    cpu_ns: read_u64(&at("cpuacct", "cpuacct.usage")),
                    memory: read_u64(&at("memory", "memory.usage_in_bytes")),
                    memory_limit: read_u64(&at("memory", "memory.limit_in_bytes"))
                        .filter(|l| *l < (1 << 62)),
                    inactive_file: keyed(&at("memory", "memory.stat"), "total_inactive_file"),
                    pids: read_u64(&at("pids", "pids.current")),
                    pids_limit: read_u64(&at("pids", "pids.max")),
                    io_read: read.or(Some(0)),
                    io_write: write.or(Some(0)),
                }
            }
            Cgroup::V2 { mount, path } => {
                let at = |f: &str| mount.join(path).join(f);
                let (mut read, mut write) = (0u64, 0u64);
                for l in std::fs::read_to_string(at("io.stat"))
                    .unwrap_or_default()
                    .lines()
                {
                    for kv in l.split_whitespace().skip(1) {
                        match kv.split_once('=') {
                            Some(("rbytes", v)) => read += v.parse::<u64>().unwrap_or(0),
                            Some(("wbytes", v)) => write += v.parse::<u64>().unwrap_or(0),
                            _ => {}
                        }
                    }
                }
                CgroupStats {
                    cpu_ns: keyed(&at("cpu.stat"), "usage_usec").map(|u| u.saturating_mul(1000)),
                    memory: read_u64(&at("memory.current")),
                    memory_limit: read_u64(&at("memory.max")),
                    inactive_file: keyed(&at("memory.stat"), "inactive_file"),
                    pids: read_u64(&at("pids.current")),
                    pids_limit: read_u64(&at("pids.max")),
                    io_read: Some(read),
                    io_write: Some(write),
                }
            }
        }
    }

    /// The cgroup for `path` on this host: v2 when `/sys/fs/cgroup` is the unified hierarchy,
    /// else v1.
    pub fn detect(path: &str) -> Result<Self> {
        let path = clean_path(path)?;
        let base = PathBuf::from("/sys/fs/cgroup");
        if base.join("cgroup.controllers").exists() {
            Ok(Cgroup::V2 { mount: base, path })
        } else {
            Ok(Cgroup::V1 { mount: base, path })
        }
    }

    /// A v2 cgroup under another mount (the unified hierarchy of a hybrid host).
    pub fn v2_at(mount: impl Into<PathBuf>, path: &str) -> Result<Self> {
        Ok(Cgroup::V2 {
            mount: mount.into(),
            path: clean_path(path)?,
        })
    }

    /// Directories of this cgroup (one per v1 controller that the host has).
    pub fn dirs(&self) -> Vec<PathBuf> {
        match self {
            Cgroup::V1 { mount, path } => V1_CONTROLLERS
                .iter()
                .map(|c| mount.join(c))
                .filter(|m| m.is_dir())
                .map(|m| m.join(path))
                .collect(),
            Cgroup::V2 { mount, path } => vec![mount.join(path)],
        }
    }

    /// Creates the cgroup, applies `resources` and enforces the device `rules` (from
    /// [`crate::device_rules`]): a host without a devices controller (v1) or without cgroup device
    /// programs (v2) is an error, never a container with every device open.
    pub fn create(&self, resources: Option<&LinuxResources>, rules: &[DeviceRule]) -> Result<()> {
        for d in self.dirs() {
            std::fs::create_dir_all(&d).map_err(|source| Error::Cgroup {
                path: d.clone(),
                source,
            })?;
        }
        match self {
            Cgroup::V1 { mount, path } => {
                // cpuset needs cpus and mems before a task may join.
                let cs = mount.join("cpuset");
                if cs.is_dir() {
                    let mut parent = cs.clone();
                    for comp in path.split('/') {
                        let child = parent.join(comp);
                        for f in ["cpuset.cpus", "cpuset.mems"] {
                            let cur = std::fs::read_to_string(child.join(f)).unwrap_or_default();
                            if cur.trim().is_empty() {
                                let v = std::fs::read_to_string(parent.join(f)).unwrap_or_default();
                                write(&child.join(f), v.trim())?;
                            }
                        }
                        parent = child;
                    }
                }
                if let Some(r) = resources {
                    self.apply_v1(mount, path, r)?;
                }
                let dev = mount.join("devices");
                if !dev.is_dir() {
                    return Err(Error::Cgroup {
                        path: dev,
                        source: std::io::Error::other(
                            "no devices controller: device rules cannot be enforced",
                        ),
                    });
                }
                devices::apply_v1(&dev.join(path), rules)?;
            }
            Cgroup::V2 { mount, path } => {
                if let Some(r) = resources {
                    self.apply_v2(&mount.join(path), r)?;
                }
                devices::apply_v2(&mount.join(path), rules)?;
            }
        }
        Ok(())
    }

    fn apply_v1(&self, mount: &Path, path: &str, r: &LinuxResources) -> Result<()> {
        let f = |ctrl: &str, file: &str| mount.join(ctrl).join(path).join(file);
        if let Some(m) = r.memory() {
            let memsw = f("memory", "memory.memsw.limit_in_bytes");
            let swap = m.swap().filter(|_| memsw.exists());
            // memory+swap may never be below memory: raising both (an update), it goes first.
            let current = std::fs::read_to_string(&memsw)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok());
            let swap_first = match (swap, current) {
                (Some(s), Some(c)) => s == -1 || s > c,
                _ => false,
            };
            if let Some(s) = swap.filter(|_| swap_first) {
                write(&memsw, &s.to_string())?;
            }
            if let Some(limit) = m.limit() {
                write(&f("memory", "memory.limit_in_bytes"), &limit.to_string())?;
            }
            if let Some(s) = swap.filter(|_| !swap_first) {
                write(&memsw, &s.to_string())?;
            }
            if let Some(v) = m.reservation() {
                write_existing(&f("memory", "memory.soft_limit_in_bytes"), &v.to_string())?;
            }
            if let Some(v) = m.kernel() {
                // Deprecated by the spec, and gone from kernels since 5.16 (runc ignores it).
                let p = f("memory", "memory.kmem.limit_in_bytes");
                if p.exists() {
                    write(&p, &v.to_string())?;
                } else {
                    tracing::warn!(limit = v, "linux.resources.memory.kernel: this kernel has no kernel memory limit; ignored");
                }
            }
            if let Some(v) = m.kernel_tcp() {
                write_existing(
                    &f("memory", "memory.kmem.tcp.limit_in_bytes"),
                    &v.to_string(),
                )?;
            }
            if let Some(v) = m.swappiness() {
                if v > 100 {
                    return Err(Error::spec(
                        "linux.resources.memory.swappiness",
                        v,
                        "above 100",
                    ));
                }
                write_existing(&f("memory", "memory.swappiness"), &v.to_string())?;
            }
            if m.disable_oom_killer() == Some(true) {
                write_existing(&f("memory", "memory.oom_control"), "1")?;
            }
        }
        if let Some(b) = r.block_io() {
            let dir = mount.join("blkio").join(path);
            // CFQ's files, or BFQ's where the host's scheduler is BFQ (as runc).
            let weight_file = |name: &str| {
                let cfq = dir.join(format!("blkio.{name}"));
                let bfq = dir.join(format!("blkio.bfq.{name}"));
                if !cfq.exists() && bfq.exists() {
                    bfq
                } else {
                    cfq
                }
            };
            if let Some(w) = b.weight() {
                write_existing(&weight_file("weight"), &w.to_string())?;
            }
            if let Some(w) = b.leaf_weight() {
                write_existing(&dir.join("blkio.leaf_weight"), &w.to_string())?;
            }
            for d in b.weight_device().iter().flatten() {
                if let Some(w) = d.weight() {
                    write_existing(
                        &weight_file("weight_device"),
                        &format!("{}:{} {w}", d.major(), d.minor()),
                    )?;
                }
                if let Some(w) = d.leaf_weight() {
                    write_existing(
                        &dir.join("blkio.leaf_weight_device"),
                        &format!("{}:{} {w}", d.major(), d.minor()),
                    )?;
                }
            }
            for (file, devs) in [
                (
                    "blkio.throttle.read_bps_device",
                    b.throttle_read_bps_device(),
                ),
                (
                    "blkio.throttle.write_bps_device",
                    b.throttle_write_bps_device(),
                ),
                (
                    "blkio.throttle.read_iops_device",
                    b.throttle_read_iops_device(),
                ),
                (
                    "blkio.throttle.write_iops_device",
                    b.throttle_write_iops_device(),
                ),
            ] {
                for d in devs.iter().flatten() {
                    write_existing(
                        &dir.join(file),
                        &format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                    )?;
                }
            }
        }
        if let Some(n) = r.network() {
            if let Some(id) = n.class_id() {
                write_existing(&f("net_cls", "net_cls.classid"), &id.to_string())?;
            }
            for p in n.priorities().iter().flatten() {
                write_existing(
                    &f("net_prio", "net_prio.ifpriomap"),
                    &format!("{} {}", p.name(), p.priority()),
                )?;
            }
        }
        for h in r.hugepage_limits().iter().flatten() {
            write_existing(
                &f(
                    "hugetlb",
                    &format!("hugetlb.{}.limit_in_bytes", h.page_size()),
                ),
                &h.limit().to_string(),
            )?;
        }
        if let Some(p) = r.pids() {
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            };
            write(&f("pids", "pids.max"), &v)?;
        }
        if let Some(c) = r.cpu() {
            if let Some(s) = c.shares() {
                write(&f("cpu", "cpu.shares"), &s.to_string())?;
            }
            if let Some(p) = c.period() {
                write(&f("cpu", "cpu.cfs_period_us"), &p.to_string())?;
            }
            if let Some(q) = c.quota() {
                write(&f("cpu", "cpu.cfs_quota_us"), &q.to_string())?;
            }
            if let Some(cpus) = c.cpus() {
                write(&f("cpuset", "cpuset.cpus"), cpus)?;
            }
            if let Some(mems) = c.mems() {
                write(&f("cpuset", "cpuset.mems"), mems)?;
            }
        }
        Ok(())
    }

    fn apply_v2(&self, dir: &Path, r: &LinuxResources) -> Result<()> {
        let set = |file: &str, v: &str| -> Result<()> {
            let p = dir.join(file);
            if p.exists() {
                write(&p, v)
            } else {
                Err(Error::Cgroup {
                    path: p,
                    source: std::io::Error::other("controller not enabled for this cgroup"),
                })
            }
        };
        if let Some(m) = r.memory() {
            let max = |v: i64| match v {
                -1 => "max".to_owned(),
                v => v.to_string(),
            };
            if let Some(limit) = m.limit() {
                set("memory.max", &max(limit))?;
            }
            if let Some(r) = m.reservation() {
                set("memory.low", &max(r))?;
            }
            if let Some(swap) = m.swap() {
                // The spec's is memory plus swap; cgroup v2's is swap alone (runc's rule).
                let v = match (swap, m.limit()) {
                    (-1, _) => "max".to_owned(),
                    (s, Some(l)) if l > 0 && s >= l => (s - l).to_string(),
                    (s, l) => {
                        return Err(Error::Cgroup {
                            path: dir.join("memory.swap.max"),
                            source: std::io::Error::other(format!(
                                "memory+swap {s} needs a memory limit at most it (limit {l:?})"
                            )),
                        })
                    }
                };
                // No swap controller file (swap accounting off): nothing to limit.
                if dir.join("memory.swap.max").exists() {
                    set("memory.swap.max", &v)?;
                }
            }
        }
        if let Some(p) = r.pids() {
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            };
            set("pids.max", &v)?;
        }
        if let Some(c) = r.cpu() {
            if let Some(s) = c.shares() {
                // The conversion runc and crun use from shares (2..262144) to weight (1..10000).
                let w = 1 + ((s.clamp(2, 262_144) - 2) * 9999) / 262_142;
                set("cpu.weight", &w.to_string())?;
            }
            if c.quota().is_some() || c.period().is_some() {
                let q = c
                    .quota()
                    .filter(|q| *q > 0)
                    .map_or("max".to_owned(), |q| q.to_string());
                set("cpu.max", &format!("{q} {}", c.period().unwrap_or(100_000)))?;
            }
            if let Some(cpus) = c.cpus() {
                set("cpuset.cpus", cpus)?;
            }
            if let Some(mems) = c.mems() {
                set("cpuset.mems", mems)?;
            }
        }
        Ok(())
    }

    /// v1: each hierarchy's `tasks` file, opened for writing (close-on-exec), for a
    /// single-threaded child to move itself with `0`: the kernel moves the calling thread
    /// without the global lock that a write of a pid to `cgroup.procs` takes, whose RCU
    /// grace period costs 5 to 15 ms on every container's first write. Empty for v2, where
    /// the parent uses [`Cgroup::add`]. The kernel checks the permission against the
    /// credentials that opened the file.
    pub(crate) fn self_join_files(&self) -> Result<Vec<std::os::fd::OwnedFd>> {
        match self {
            Cgroup::V1 { .. } => self
                .dirs()
                .into_iter()
                .map(|d| {
                    let p = d.join("tasks");
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&p)
                        .map(std::os::fd::OwnedFd::from)
                        .map_err(|source| Error::Cgroup { path: p, source })
                })
                .collect(),
            Cgroup::V2 { .. } => Ok(Vec::new()),
        }
    }

    /// Moves process `pid` into the cgroup.
    pub fn add(&self, pid: i32) -> Result<()> {
        for d in self.dirs() {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The processes in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let Some(d) = self.dirs().into_iter().next() else {
            return Vec::new();
        };
        std::fs::read_to_string(d.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Freezes (`true`) or thaws every process of the cgroup, and waits until the kernel
    /// says it is done (v1 `freezer.state`, v2 `cgroup.events`), at most 5 s.
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        // What to write where, and the line that says it is done, in which file.
        let (file, value, state, want) = match self {
            Cgroup::V1 { mount, path } => {
                let f = mount.join("freezer").join(path).join("freezer.state");
                let v = if frozen { "FROZEN" } else { "THAWED" };
                (f.clone(), v, f, v)
            }
            Cgroup::V2 { mount, path } => {
                let d = mount.join(path);
                (
                    d.join("cgroup.freeze"),
                    if frozen { "1" } else { "0" },
                    d.join("cgroup.events"),
                    if frozen { "frozen 1" } else { "frozen 0" },
                )
            }
        };
        let done = |text: &str| text.lines().any(|l| l.trim() == want);
        write(&file, value)?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let now = std::fs::read_to_string(&state).map_err(|source| Error::Cgroup {
                path: state.clone(),
                source,
            })?;
            if done(&now) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::Cgroup {
                    path: state,
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("still {} after 5 s", now.trim()),
                    ),
                });
            }
            // v1 may need the state written again while tasks are still freezing.
            if matches!(self, Cgroup::V1 { .. }) {
                let _ = std::fs::write(&file, value);
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Writes `resources` to the existing cgroup (runc's `update`): only what they set
    /// changes. On v1 a memory limit and its memory+swap limit are written in the order the
    /// kernel accepts (memory+swap may never be below memory).
    pub fn update(&self, resources: &LinuxResources) -> Result<()> {
        match self {
            Cgroup::V1 { mount, path } => self.apply_v1(mount, path, resources),
            Cgroup::V2 { mount, path } => self.apply_v2(&mount.join(path), resources),
        }
    }

    /// Whether the cgroup is frozen (v1 `freezer.state` FROZEN, v2 `cgroup.freeze` 1).
    pub fn is_frozen(&self) -> bool {
        match self {
            Cgroup::V1 { mount, path } => {
                std::fs::read_to_string(mount.join("freezer").join(path).join("freezer.state"))
                    .is_ok_and(|s| s.trim() == "FROZEN")
            }
            Cgroup::V2 { mount, path } => {
                std::fs::read_to_string(mount.join(path).join("cgroup.freeze"))
                    .is_ok_and(|s| s.trim() == "1")
            }
        }
    }

    /// Removes the cgroup (it must be empty).
    pub fn remove(&self) -> Result<()> {
        for d in self.dirs() {
            match std::fs::remove_dir(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::Cgroup { path: d, source }),
            }
        }
        Ok(())
    }
}

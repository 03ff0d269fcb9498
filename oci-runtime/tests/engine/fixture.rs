//! What every engine test starts from: a data directory whose image store holds a busybox
//! image, and small helpers over the container store.

use oci_rs_image::{Compression, ImageBuilder, ReferenceStore};
use oci_rs_layer::ImageStore;
use oci_rs_runtime::{
    Containers, EngineError, LogQuery, LogStream, NetworkMode, RunImage, RunRequest,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The busybox applets the test image links.
pub const TOOLS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "true", "ls", "id", "hostname", "grep", "unshare", "wget",
    "httpd", "touch", "truncate", "rm", "wc", "pwd", "nc", "ip", "ping", "printf", "test",
    "readlink", "ps", "head",
];

/// A data directory with a busybox image (`/data/seed` in it) in its store, named
/// `busybox:test`.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: ImageStore,
    pub manifest: oci_rs_image::Manifest,
    pub rt: tokio::runtime::Handle,
}

/// A busybox root filesystem under `root` with [`TOOLS`] linked in `/bin`, `/data/seed`
/// and a world-writable `/tmp`.
pub fn busybox_rootfs(root: &Path) {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(root.join("data/seed"), "from the image\n").unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::set_permissions(
        root.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for t in TOOLS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(t)).unwrap();
    }
}

/// `root` as a tar file at `tar`.
pub fn tar_dir(root: &Path, tar: &Path) {
    assert!(Command::new("tar")
        .arg("-C")
        .arg(root)
        .arg("-cf")
        .arg(tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
}

impl Fixture {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        busybox_rootfs(&rootfs);
        let data = dir.path().join("data");
        let store = ImageStore::open(&data).await.unwrap();
        let manifest = import(&store, &rootfs, "busybox:test", &[]).await;
        Self {
            dir,
            store,
            manifest,
            rt: tokio::runtime::Handle::current(),
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory `root` as the one-layer image `name`, configured by `config`'s
    /// `(key, value)` pairs: `cmd` (words; empty: none; default `sh`), `workdir`, `expose`,
    /// `env` (`K=V`).
    pub fn import(&self, root: &Path, name: &str, config: &[(&str, &str)]) {
        self.rt.block_on(import(&self.store, root, name, config));
    }

    pub fn image(&self) -> RunImage<'_> {
        self.rt
            .block_on(RunImage::new(
                self.store.layout(),
                self.manifest.clone(),
                None,
                "busybox:test",
            ))
            .unwrap()
    }

    /// The image `name` of the store, ready to run.
    pub fn image_named(&self, name: &str) -> RunImage<'_> {
        let found = self
            .rt
            .block_on(self.store.image_for_run(name, None, None, |_| {}))
            .unwrap();
        RunImage::from_store(&self.store, found, name)
    }

    pub fn run(&self, store: &Containers, req: RunRequest) -> Result<String, EngineError> {
        let image = self.image();
        self.rt.block_on(store.run(&image, req)).map(|(id, _)| id)
    }

    /// Runs `req` from the image `name` to its end: its exit code and its output.
    pub fn run_to_end(
        &self,
        store: &Containers,
        name: &str,
        req: RunRequest,
    ) -> Result<(i32, String, String), EngineError> {
        let image = self.image_named(name);
        let (id, _) = self.rt.block_on(store.run(&image, req))?;
        let code = store.wait(&id)?;
        let (out, err) = logs(store, &id);
        store.remove(&id, true)?;
        Ok((code, out, err))
    }
}

/// A test that failed part-way must not leave its containers running (nor their mounts,
/// endpoints and rules): every container of the store goes with the fixture.
impl Drop for Fixture {
    fn drop(&mut self) {
        if let Ok(store) = Containers::open(&self.data()) {
            for v in store.list().unwrap_or_default() {
                let _ = store.remove(&v.config.id, true);
            }
        }
    }
}

pub async fn import(
    store: &ImageStore,
    root: &Path,
    name: &str,
    config: &[(&str, &str)],
) -> oci_rs_image::Manifest {
    let tar = root.with_extension("tar");
    tar_dir(root, &tar);
    let layout = store.layout();
    let arch = oci_rs_image::PlatformSpec::host().architecture;
    let mut b = ImageBuilder::new("linux", &arch).env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    for (key, value) in config {
        b = match *key {
            "cmd" if value.is_empty() => b,
            "cmd" => b.cmd(value.split(' ')),
            "workdir" => b.working_dir(value),
            "expose" => b.expose(value),
            "volume" => b.volume(value),
            "entrypoint" => b.entrypoint(value.split(' ')),
            "env" => {
                let (k, v) = value.split_once('=').unwrap();
                b.env(k, v)
            }
            other => panic!("no config key {other}"),
        };
    }
    if !config.iter().any(|(k, _)| *k == "cmd") {
        b = b.cmd(["sh"]);
    }
    let mut f = tokio::fs::File::open(&tar).await.unwrap();
    b.add_layer_tar(layout, &mut f, Compression::Gzip, "busybox")
        .await
        .unwrap();
    let manifest = b.build(layout).await.unwrap();
    let stored = oci_rs_layer::store_name(&name.parse().unwrap());
    ReferenceStore::set(layout, &stored, &manifest.descriptor())
        .await
        .unwrap();
    manifest
}

/// A detached request without a network running `sh -c script`.
pub fn detached(name: Option<&str>, script: &str) -> RunRequest {
    let mut req = RunRequest {
        name: name.map(str::to_owned),
        detach: true,
        ..RunRequest::default()
    };
    req.opts.network = NetworkMode::None;
    req.opts.args = vec!["sh".into(), "-c".into(), script.into()];
    req
}

/// What container `what` wrote, as (stdout, stderr).
pub fn logs(store: &Containers, what: &str) -> (String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    store
        .logs(what, &LogQuery::default(), false, &mut |s, b| {
            match s {
                LogStream::Stdout => out.extend_from_slice(b),
                LogStream::Stderr => err.extend_from_slice(b),
            }
            Ok(())
        })
        .unwrap();
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// Waits up to 20 s for `f`.
pub fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The file `path` of container `what`'s filesystem, read from the host.
pub fn read_in(store: &Containers, what: &str, path: &str) -> String {
    let id = store.resolve(what).unwrap();
    let rootfs = store.snapshots().unwrap().open(&id).unwrap().rootfs;
    std::fs::read_to_string(rootfs.join(path)).unwrap_or_default()
}

/// Mounts whose mount point lies under `dir`.
pub fn mounts_under(dir: &Path) -> usize {
    let d = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&d))
        .count()
}

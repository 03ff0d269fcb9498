//! What the end-to-end tests share: a real registry on a free loopback port, and tars.

#![allow(clippy::unwrap_used, dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// True when the CNCF distribution registry is installed; says why the caller skips if not.
pub fn have_registry() -> bool {
    let ok = Path::new("/usr/bin/docker-registry").exists();
    if !ok {
        eprintln!("skipping: docker-registry is missing (scripts/test.sh installs it)");
    }
    ok
}

/// `docker-registry serve` on a free loopback port, with its storage in a temporary
/// directory; stopped when dropped.
pub struct Registry {
    child: Child,
    _dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// An anonymous registry.
    pub fn start() -> Self {
        Self::start_with_auth(None)
    }

    /// With `htpasswd` auth when given a file of bcrypt entries.
    pub fn start_with_auth(htpasswd: Option<&Path>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let cfg = dir.path().join("config.yml");
        let auth = htpasswd
            .map(|p| {
                format!(
                    "auth:\n  htpasswd:\n    realm: e2e\n    path: {}\n",
                    p.display()
                )
            })
            .unwrap_or_default();
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{auth}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            _dir: dir,
            addr,
        }
    }
}

/// A ustar archive holding one regular file.
pub fn tar_with_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", content.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(content);
    out.resize(512 + content.len().div_ceil(512) * 512, 0);
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

/// A bundle directory `dir/bundle` whose rootfs holds busybox as `tools`, with the state root
/// `dir/state`, after `RUNC spec` (`runc`: a runc-compatible command, `oci-runc`).
pub fn busybox_bundle(
    runc: &Path,
    dir: &Path,
    tools: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (bundle, root) = (dir.join("bundle"), dir.join("state"));
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "proc", "dev", "sys"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for t in tools {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(t)).unwrap();
    }
    let o = Command::new(runc)
        .arg("spec")
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(o.status.success());
    (bundle, root)
}

/// A rootfs of busybox with `tools` linked to it, in `dir/rootfs`, and its tar in `dir/r.tar`
/// (returned).
pub fn busybox_rootfs_tar(dir: &Path, tools: &[&str]) -> std::path::PathBuf {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for t in tools {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(t)).unwrap();
    }
    let tar = dir.join("r.tar");
    tar_dir(&rootfs, &tar);
    tar
}

/// GNU tar of the directory `dir`'s contents into `tar`.
pub fn tar_dir(dir: &Path, tar: &Path) {
    assert!(Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
}

/// `program` with `args` and no stdio (null in, output dropped).
pub fn silent(program: &Path, args: &[&std::ffi::OsStr]) -> Command {
    let mut c = Command::new(program);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Runs the runc-compatible binary `runc` with `--root root` and `args`, no stdio.
pub fn runc_quiet(runc: &Path, root: &Path, args: &[&str]) -> std::process::ExitStatus {
    silent(runc, &["--root".as_ref(), root.as_os_str()])
        .args(args)
        .status()
        .unwrap()
}

/// A user for the rootless test, with a subordinate id range: created when missing (the test
/// runs as root in CI and changes /etc/passwd, /etc/subuid and /etc/subgid once).
pub fn rootless_user() -> Option<(u32, u32, u32)> {
    const NAME: &str = "oci-rs-rootless";
    const SUB_START: u32 = 300_000;
    let have = |cmd: &str| Path::new(cmd).exists();
    if !have("/usr/sbin/useradd") || !have("/usr/bin/setpriv") || !have("/usr/bin/newuidmap") {
        eprintln!("skipping: needs useradd, setpriv and newuidmap (Debian packages passwd, util-linux, uidmap)");
        return None;
    }
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    let clone = std::fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone")
        .unwrap_or_else(|_| "1".into());
    if max.trim() == "0" || clone.trim() == "0" {
        eprintln!("skipping: unprivileged user namespaces are disabled on this kernel");
        return None;
    }
    let id = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, NAME]).output().ok()?;
        String::from_utf8(o.stdout).ok()?.trim().parse().ok()
    };
    if id("-u").is_none() {
        let st = Command::new("/usr/sbin/useradd")
            .args(["-M", "-s", "/usr/sbin/nologin", NAME])
            .status()
            .unwrap();
        assert!(st.success(), "useradd {NAME}");
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if !text.lines().any(|l| l.starts_with(&format!("{NAME}:"))) {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(file)
                .unwrap();
            std::io::Write::write_all(&mut f, format!("{NAME}:{SUB_START}:65536\n").as_bytes())
                .unwrap();
        }
    }
    let sub: u32 = std::fs::read_to_string("/etc/subuid")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{NAME}:")))
        .and_then(|rest| rest.split(':').next()?.parse().ok())
        .unwrap();
    Some((id("-u")?, id("-g")?, sub))
}

/// Runs `oci -q --data-dir DATA ARGS` as the user `ids` (uid, gid), with HOME and the working
/// directory at `home`.
pub fn oci_as(
    oci: &str,
    ids: (u32, u32),
    home: &Path,
    data: &Path,
    args: &[&str],
) -> std::process::Output {
    Command::new("/usr/bin/setpriv")
        .args([
            &format!("--reuid={}", ids.0),
            &format!("--regid={}", ids.1),
            "--clear-groups",
            oci,
            "-q",
            "--data-dir",
        ])
        .arg(data)
        .args(args)
        .env("HOME", home)
        .current_dir(home)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// [`oci_as`] that must succeed; its standard output.
pub fn ok_as(oci: &str, ids: (u32, u32), home: &Path, data: &Path, args: &[&str]) -> String {
    let o = oci_as(oci, ids, home, data, args);
    assert!(
        o.status.success(),
        "as uid {}: oci {args:?} failed ({}): {}",
        ids.0,
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// True when running containers is possible (root, and busybox-static for the images); says
/// why the caller skips if not.
pub fn root_with_busybox() -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: running containers needs root");
        return false;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: /bin/busybox is missing (scripts/test.sh installs busybox-static)");
        return false;
    }
    true
}

/// `oci -q --data-dir DATA ...` as the tests run it.
pub struct Cli {
    /// The `oci` binary.
    pub oci: &'static str,
    /// The data directory.
    pub data: std::path::PathBuf,
}

impl Cli {
    /// The command, not run.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.oci);
        c.arg("-q").arg("--data-dir").arg(&self.data).args(args);
        c
    }

    /// Runs it with no stdin.
    pub fn oci(&self, args: &[&str]) -> std::process::Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Runs it; it must succeed. Its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.oci(args);
        assert!(
            o.status.success(),
            "oci {args:?} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs it; it must fail. Its standard error.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.oci(args);
        assert!(!o.status.success(), "oci {args:?} succeeded");
        String::from_utf8(o.stderr).unwrap()
    }

    /// `inspect --format FORMAT name`, trimmed.
    pub fn field(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "--format", format, name])
            .trim()
            .to_owned()
    }
}

/// A new pseudo-terminal: (master, slave).
pub fn pty() -> (std::fs::File, std::fs::File) {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    (std::fs::File::from(master), slave)
}

/// `cmd` with its stdio on a new pty: `command` typed after a moment (800 ms, time to make
/// the terminal raw), then, when `keys` is not empty, once `done` says the command ran
/// (the client then has its terminal raw: in the cooked mode before, the line discipline
/// takes Ctrl-Q for itself), `keys`. Its exit code and everything it wrote; it must end
/// within 20 s.
pub fn typed_on_pty(
    mut cmd: Command,
    command: &[u8],
    done: impl Fn() -> bool,
    keys: &[u8],
) -> (i32, String) {
    use std::io::{Read, Write};
    let (mut master, slave) = pty();
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    let what = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut reader = master.try_clone().unwrap();
    let output = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the child and every copy of the slave are gone.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    std::thread::sleep(Duration::from_millis(800));
    master.write_all(command).unwrap();
    if !keys.is_empty() {
        wait_for("the typed command", 20, done);
        master.write_all(keys).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code().unwrap_or(-1);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} on a pty did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(master);
    (code, output.join().unwrap())
}

/// Every blob file of the OCI layout at `dir` is named by its content, and index.json parses:
/// temporaries are never blobs.
#[allow(dead_code)]
pub fn verify_layout(dir: &Path) {
    use std::io::Read;
    let index = std::fs::read(dir.join("index.json")).unwrap();
    let _: serde_json::Value = serde_json::from_slice(&index).unwrap();
    let blobs = dir.join("blobs/sha256");
    for e in std::fs::read_dir(&blobs).into_iter().flatten() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let mut f = std::fs::File::open(e.path()).unwrap();
        let mut h = oci_rs_image::Hasher::default();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        assert_eq!(h.finish().digest(), name, "a blob does not match its name");
    }
}

/// Every path of a tree: (mode, uid, gid, sha256 of a file's bytes or a link's target).
#[allow(dead_code)]
pub fn tree(root: &Path) -> std::collections::BTreeMap<String, (u32, u32, u32, String)> {
    fn walk(
        root: &Path,
        dir: &Path,
        out: &mut std::collections::BTreeMap<String, (u32, u32, u32, String)>,
    ) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                std::fs::read_link(&p).unwrap().display().to_string()
            } else if m.is_file() {
                use sha2::Digest;
                format!("{:x}", sha2::Sha256::digest(std::fs::read(&p).unwrap()))
            } else {
                String::new()
            };
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            out.insert(
                rel,
                (
                    std::os::unix::fs::MetadataExt::mode(&m),
                    std::os::unix::fs::MetadataExt::uid(&m),
                    std::os::unix::fs::MetadataExt::gid(&m),
                    what,
                ),
            );
            if m.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A TCP port nothing listens on now (on any address).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP GET to `addr`, retried until something answers (10 s).
pub fn http_get(addr: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            std::io::Write::write_all(&mut s, b"GET / HTTP/1.0\r\n\r\n").unwrap();
            let mut out = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut out);
            if !out.is_empty() {
                return out;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing answers on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to `secs` seconds for `ready` (a server that listens); panics naming `what`.
pub fn wait_for(what: &str, secs: u64, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not start listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `run` flags for the kernel and the resolver (docker's and ours), then the image and a
/// command printing what they change; [`check_kernel_and_resolver`] reads its output.
pub const KERNEL_AND_RESOLVER_RUN: &[&str] = &[
    "--network",
    "none",
    "--sysctl",
    "kernel.shmmax=1048576",
    "--ulimit",
    "nofile=512:1024",
    "--shm-size",
    "8m",
    "--group-add",
    "1234",
    "--add-host",
    "db.local:10.1.2.3",
    "--dns",
    "9.9.9.9",
    "--dns-search",
    "example.com",
    "--dns-option",
    "ndots:2",
];

/// The command after [`KERNEL_AND_RESOLVER_RUN`] and the image.
pub const KERNEL_AND_RESOLVER_SCRIPT: &[&str] = &[
    "sh",
    "-c",
    "cat /proc/sys/kernel/shmmax; ulimit -n; ulimit -Hn; id -G; cat /etc/hosts /etc/resolv.conf /proc/mounts",
];

/// Checks what [`KERNEL_AND_RESOLVER_SCRIPT`] printed, and that the host's sysctl is its own.
pub fn check_kernel_and_resolver(out: &str) {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.get(..4),
        Some(&["1048576", "512", "1024", "0 1234"][..]),
        "{out}"
    );
    assert!(out.contains("10.1.2.3\tdb.local\n"), "{out}");
    assert!(
        out.contains("nameserver 9.9.9.9\nsearch example.com\noptions ndots:2\n"),
        "{out}"
    );
    assert!(
        !out.contains("nameserver 127.") && out.matches("nameserver").count() == 1,
        "{out}"
    );
    let shm = lines
        .iter()
        .find(|l| l.split_whitespace().nth(1) == Some("/dev/shm"));
    assert!(shm.is_some_and(|l| l.contains("size=8192k")), "{out}");
    let host = std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    assert_ne!(host.trim(), "1048576", "the host's own");
}

/// A registry with htpasswd auth for one user, its file in `dir`; `None` (saying why) when
/// htpasswd (apache2-utils) is missing.
pub fn registry_with_user(dir: &Path, user: &str, password: &str) -> Option<Registry> {
    let Ok(out) = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()
    else {
        eprintln!("skipping: htpasswd (apache2-utils) is missing");
        return None;
    };
    let htpasswd = dir.join("htpasswd");
    std::fs::write(&htpasswd, &out.stdout).unwrap();
    Some(Registry::start_with_auth(Some(&htpasswd)))
}

/// The standard output of `o`, which must have succeeded (`what` ran, said in the failure
/// with both its outputs).
pub fn succeeded(what: &str, o: std::process::Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{what} failed ({}): {out}{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

//! The threats that the `oci` and `oci-runc` command lines themselves handle, as a user runs
//! them: where `save` writes when its output is a link to standard output or a FIFO, what
//! `import` reads from standard input (`-`) and a URL, the whole rootless flow run as an
//! unprivileged user, and a `/proc/self/fd/N` working directory in a bundle given to
//! `oci-runc`. The engine's own threats are tested through the library in the crates that
//! own them: oci-rs-runtime's `tests/engine/threats.rs` (store modes, capabilities, devices,
//! working directories, refused runs, exit codes, rmi, export) and oci-rs-layer's
//! `tests/image_store.rs` (unpack, archives, diff_ids, zstd frames), `tests/apply.rs` (hostile
//! layers); oci-rs-runtime's `tests/run.rs` (device rules).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;

const OCI: &str = env!("CARGO_BIN_EXE_oci");

/// A data directory with the busybox image `local/bb:1` imported; `oci` runs through
/// [`common::Cli`].
struct Store {
    dir: tempfile::TempDir,
    cli: common::Cli,
}

impl std::ops::Deref for Store {
    type Target = common::Cli;
    fn deref(&self) -> &common::Cli {
        &self.cli
    }
}

impl Store {
    /// A store with nothing in it.
    fn empty() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cli = common::Cli {
            oci: OCI,
            data: dir.path().join("data"),
        };
        Self { dir, cli }
    }

    fn new() -> Self {
        let s = Self::empty();
        let tar = common::busybox_rootfs_tar(s.dir.path(), &["sh", "cat", "grep", "id", "ls"]);
        s.ok(&["import", tar.to_str().unwrap(), "local/bb:1"]);
        s
    }
}

impl Store {
    /// Runs `oci` in `cwd` with `input` on a pipe as its standard input.
    fn piped(&self, cwd: &Path, args: &[&str], input: Vec<u8>) -> Output {
        let mut c = self
            .cmd(args)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = c.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut stdin, &input);
        });
        let out = c.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }
}

fn assert_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn save_to_a_link_to_stdout_streams_and_keeps_the_link() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    // The shape of /dev/stdout (a link to /proc/self/fd/1), in a directory of our own.
    let link = s.dir.path().join("stdout");
    std::os::unix::fs::symlink("/proc/self/fd/1", &link).unwrap();
    let o = s.piped(
        s.dir.path(),
        &["save", "-o", link.to_str().unwrap(), "local/bb:1"],
        Vec::new(),
    );
    assert_ok(&o, "save -o LINK-TO-STDOUT");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(o.stdout.len() > 100_000, "the archive went to the pipe");
    // `-o -` and no -o: standard output too, and no file named `-`.
    for args in [
        &["save", "-o", "-", "local/bb:1"][..],
        &["save", "local/bb:1"],
    ] {
        let o2 = s.piped(s.dir.path(), args, Vec::new());
        assert_ok(&o2, "save to stdout");
        // The same archive (entry times may differ by the second it was written).
        assert_eq!(o2.stdout.len(), o.stdout.len(), "{args:?}");
    }
    assert!(!s.dir.path().join("-").exists());
    // `load` with no -i reads a pipe (an archive is read by offsets: it is spooled first).
    let fresh = Store::empty();
    let loaded = fresh.piped(fresh.dir.path(), &["load"], o.stdout.clone());
    assert_ok(&loaded, "load from a pipe");
    assert!(String::from_utf8_lossy(&loaded.stdout).contains("local/bb:1"));
    let again = fresh.piped(fresh.dir.path(), &["load", "-i", "-"], o.stdout);
    assert_ok(&again, "load -i - from a pipe");
    assert_eq!(
        fresh.ok(&["run", "--rm", "local/bb:1", "sh", "-c", "echo loaded"]),
        "loaded\n"
    );
}

#[test]
fn save_to_a_fifo_writes_into_it() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let fifo = s.dir.path().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    s.ok(&["save", "-o", fifo.to_str().unwrap(), "local/bb:1"]);
    assert!(reader.join().unwrap().len() > 100_000);
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &std::fs::symlink_metadata(&fifo).unwrap().file_type()
    ));
}

/// `import -` reads standard input, a pipe here: read once as a stream, never sought in.
#[test]
fn import_reads_standard_input() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let tar = std::fs::read(s.dir.path().join("r.tar")).unwrap();
    let o = s.piped(s.dir.path(), &["import", "-", "local/piped:1"], tar);
    assert_ok(&o, "import - from a pipe");
    assert!(!s.dir.path().join("-").exists());
    let listing = s.ok(&["run", "--rm", "local/piped:1", "ls", "/bin"]);
    for tool in ["busybox", "cat", "grep", "id", "ls", "sh"] {
        assert!(listing.lines().any(|l| l == tool), "{tool} in {listing}");
    }
}

#[test]
fn import_reads_an_http_url() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Ok(mut server) = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(s.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        eprintln!("skipping: python3 is missing (the test's HTTP server)");
        return;
    };
    common::wait_for("python3 -m http.server", 10, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let url = format!("http://127.0.0.1:{port}/r.tar");
    let o = s.oci(&["import", &url, "local/url:1"]);
    let missing = s.oci(&[
        "import",
        &format!("http://127.0.0.1:{port}/nothing.tar"),
        "x:1",
    ]);
    let _ = server.kill();
    let _ = server.wait();
    assert_ok(&o, "import URL");
    assert_eq!(
        s.ok(&["run", "--rm", "local/url:1", "sh", "-c", "echo from-url"]),
        "from-url\n"
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
}

// Rootless: `oci run` by an unprivileged user failed after the pull ("unmount …/rootfs:
// Operation not permitted"). The whole flow runs in a user namespace of the user, with its
// subordinate ranges, as rootless podman does.
#[test]
fn rootless_user_pulls_runs_commits_and_removes() {
    if !common::root_with_busybox() {
        return;
    }
    if !common::have_registry() {
        return;
    }
    let Some((uid, gid, sub)) = common::rootless_user() else {
        return;
    };
    // The image reaches the registry from root's store; the user pulls it from there.
    let reg = common::Registry::start();
    let s = Store::new();
    let image = format!("{}/rootless/bb:1", reg.addr);
    s.ok(&["tag", "local/bb:1", &image]);
    s.ok(&["push", &image]);
    let home = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(home.path(), Some(uid), Some(gid)).unwrap();
    let data = home.path().join("data");
    let ok = |args: &[&str]| common::ok_as(OCI, (uid, gid), home.path(), &data, args);
    ok(&["pull", &image]);
    let out = ok(&[
        "run",
        "--rm",
        &image,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map",
    ]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0"), "container root: {out}");
    let maps: Vec<Vec<u32>> = lines
        .map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect())
        .collect();
    assert!(maps.contains(&vec![0, uid, 1]), "{out}");
    assert!(
        maps.contains(&vec![1, sub, 65536]),
        "the subordinate range: {out}"
    );
    ok(&[
        "run",
        "--name",
        "mine",
        &image,
        "sh",
        "-c",
        "echo made > /made",
    ]);
    ok(&["commit", "mine", "local/mine:1"]);
    assert_eq!(
        ok(&["run", "--rm", "local/mine:1", "cat", "/made"]),
        "made\n"
    );
    ok(&["rm", "mine"]);
    let left: Vec<_> = std::fs::read_dir(data.join("snapshots/containers"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "containers left: {left:?}");
}

/// What a process does from a cwd of `/proc/self/fd/N` to reach the host (CVE-2024-21626):
/// climb as far as `..` goes, read the marker by its host path and create a file beside it.
fn cwd_escape_probe(marker: &Path) -> String {
    let dir = marker.parent().unwrap().display().to_string();
    format!(
        "cd ../../../../../../../../..; cat .{m} 2>/dev/null; echo x > .{dir}/pwned 2>/dev/null; true",
        m = marker.display()
    )
}

/// Fails the test if anything of the probe reached the host.
fn assert_not_escaped(marker: &Path, secret: &str, what: &str, o: &Output) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !text.contains(secret),
        "{what}: read the host's file: {text}"
    );
    assert!(
        !marker.with_file_name("pwned").exists(),
        "{what}: wrote a file on the host"
    );
}

/// A host directory with a marker file whose content a container must never read.
fn host_marker(dir: &Path) -> (PathBuf, String) {
    let host = dir.join("host");
    std::fs::create_dir_all(&host).unwrap();
    let secret = format!("host-secret-{}", std::process::id());
    std::fs::write(host.join("marker"), &secret).unwrap();
    (host.join("marker"), secret)
}

/// CVE-2024-21626 through the runc-compatible command line, as containerd and Kubernetes run
/// us: `process.cwd` of `/proc/self/fd/N` in the bundle's config.
#[test]
fn oci_runc_run_with_a_cwd_through_proc_self_fd_never_reaches_the_host() {
    if !common::root_with_busybox() {
        return;
    }
    let runc = Path::new(env!("CARGO_BIN_EXE_oci-runc"));
    let dir = tempfile::tempdir().unwrap();
    let (marker, secret) = host_marker(dir.path());
    let probe = cwd_escape_probe(&marker);
    let (bundle, state) = common::busybox_bundle(runc, dir.path(), &["sh", "cat", "echo"]);
    let cfg = bundle.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    v["process"]["args"] = serde_json::json!(["sh", "-c", probe]);
    v["process"]["terminal"] = serde_json::json!(false);
    for n in 3..=24 {
        v["process"]["cwd"] = serde_json::json!(format!("/proc/self/fd/{n}"));
        std::fs::write(&cfg, serde_json::to_vec(&v).unwrap()).unwrap();
        let o = Command::new(runc)
            .arg("--root")
            .arg(&state)
            .args([
                "run",
                "--bundle",
                bundle.to_str().unwrap(),
                &format!("c{n}"),
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_not_escaped(&marker, &secret, &format!("oci-runc run, cwd fd {n}"), &o);
        let _ = Command::new(runc)
            .arg("--root")
            .arg(&state)
            .args(["delete", "-f", &format!("c{n}")])
            .output();
    }
}

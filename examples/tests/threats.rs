//! The threat model of the `oci` command line, one test per attack or fault, as a user runs
//! it: what a hostile image, archive, container or another local user can reach through what
//! `oci` creates. Lower-level classes are tested in each crate (oci-rs-layer's `tests/apply.rs`
//! hostile layers, oci-rs-runtime's `tests/run.rs` device rules).

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
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

    fn data(&self) -> PathBuf {
        self.cli.data.clone()
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

/// `Cap*` lines of /proc/self/status as (name, mask).
fn caps(status: &str) -> Vec<(String, u64)> {
    status
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.starts_with("Cap")
                .then(|| (k.to_owned(), u64::from_str_radix(v.trim(), 16).unwrap()))
        })
        .collect()
}

#[test]
fn non_root_container_user_has_no_capabilities() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let root = caps(&s.ok(&["run", "--rm", "local/bb:1", "cat", "/proc/self/status"]));
    let nobody = caps(&s.ok(&[
        "run",
        "--rm",
        "-u",
        "65534:65534",
        "local/bb:1",
        "cat",
        "/proc/self/status",
    ]));
    for (name, mask) in &nobody {
        match name.as_str() {
            // The bounding set is docker's; nothing else for a non-root user.
            "CapBnd" => assert_ne!(*mask, 0),
            _ => assert_eq!(*mask, 0, "{name} of uid 65534: {nobody:?}"),
        }
    }
    for (name, mask) in &root {
        match name.as_str() {
            "CapInh" | "CapAmb" => assert_eq!(*mask, 0, "{name} of root: {root:?}"),
            _ => assert_ne!(*mask, 0, "{name}"),
        }
    }
}

#[test]
fn container_with_default_capabilities_cannot_open_a_device_it_makes() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    // CAP_MKNOD is in docker's default set: making a node works, opening it must not (the
    // loop control device 10:237 here, which root opens without any other capability;
    // /dev/null, 1:3, stays usable).
    if std::fs::File::open("/dev/loop-control").is_err() {
        eprintln!("skipping: /dev/loop-control cannot be opened on this host");
        return;
    }
    let out = s.ok(&[
        "run",
        "--rm",
        "local/bb:1",
        "sh",
        "-c",
        "busybox mknod /lc c 10 237 && echo made; (: < /lc) 2>/dev/null && echo opened; echo x >/dev/null && echo null-ok",
    ]);
    assert!(out.contains("made"), "{out}");
    assert!(!out.contains("opened"), "{out}");
    assert!(out.contains("null-ok"), "{out}");
}

#[test]
fn store_directories_are_private_to_their_owner() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    s.ok(&["run", "--name", "kept", "local/bb:1", "sh", "-c", ":"]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let data = s.data();
    assert_eq!(mode(&data), 0o700, "data directory");
    // The image layout below holds only compressed blobs; the data directory covers it.
    for sub in ["snapshots", "snapshots/layers", "snapshots/containers"] {
        let p = data.join(sub);
        assert_eq!(mode(&p) & 0o077, 0, "{} is {:o}", p.display(), mode(&p));
    }
    // An existing store made world-readable (as before this fix) is tightened when opened.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        data.join("snapshots/layers"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    s.ok(&["images"]);
    s.ok(&["ps", "-a"]);
    assert_eq!(mode(&data), 0o700);
    s.ok(&["rm", "kept"]);
    assert_eq!(mode(&data.join("snapshots/layers")) & 0o077, 0);
}

#[test]
fn unpacked_tree_is_out_of_other_users_reach_unless_asked() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let target = s.dir.path().join("unpacked");
    s.ok(&["unpack", "local/bb:1", target.to_str().unwrap()]);
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(target.join("rootfs/bin/busybox").is_file());
    let public = s.dir.path().join("public");
    s.ok(&["unpack", "--public", "local/bb:1", public.to_str().unwrap()]);
    assert!(public.join("bin/busybox").is_file());
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

#[test]
fn import_reads_a_pipe_and_every_zstd_frame() {
    if !common::root_with_busybox() {
        return;
    }
    if Command::new("zstd").arg("--version").output().is_err() {
        eprintln!("skipping: zstd is missing (scripts/test.sh installs it)");
        return;
    }
    let s = Store::new();
    let tar = std::fs::read(s.dir.path().join("r.tar")).unwrap();
    // Two frames, split inside busybox: the second holds its end and every link.
    let (a, b) = tar.split_at(tar.len() / 2);
    let mut zst = Vec::new();
    for part in [a, b] {
        let mut c = Command::new("zstd")
            .args(["-q", "-c"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = c.stdin.take().unwrap();
        let part = part.to_vec();
        let w = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &part).unwrap());
        zst.extend(c.wait_with_output().unwrap().stdout);
        w.join().unwrap();
    }
    let o = s.piped(s.dir.path(), &["import", "-", "local/zst:1"], zst);
    assert_ok(&o, "import - of a two-frame zstd tar");
    let listing = s.ok(&["run", "--rm", "local/zst:1", "ls", "/bin"]);
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "http.server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
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
    assert_eq!(missing.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
}

// Silently wrong: an oci-archive naming its images by bare tags loaded nothing and exited 0;
// a multi-platform one kept only the host's image.

#[test]
fn oci_archive_with_bare_tags_and_platforms_loads_what_is_there() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let dir = s.dir.path();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Two platforms of one image and an index over them, in an oci-archive whose index
    // names the index by the bare tag "latest" (as umoci and skopeo do).
    let archive = dir.join("multi.tar");
    let (amd, arm) = rt.block_on(async {
        use oci_rs_image::oci_spec::image::{ImageIndexBuilder, MediaType, PlatformBuilder};
        use oci_rs_image::{ImageDestination, ManifestKind, MemoryStore};
        let store = MemoryStore::new();
        let tar = std::fs::read(dir.join("r.tar")).unwrap();
        let mut descs = Vec::new();
        let mut digests = Vec::new();
        for arch in ["amd64", "arm64"] {
            let mut b = oci_rs_image::ImageBuilder::new("linux", arch).cmd(["sh"]);
            b.add_layer_tar(
                &store,
                &mut &tar[..],
                oci_rs_image::Compression::Gzip,
                "import",
            )
            .await
            .unwrap();
            let m = b.build(&store).await.unwrap();
            let mut d = m.descriptor();
            d.set_platform(Some(
                PlatformBuilder::default()
                    .os("linux")
                    .architecture(arch)
                    .build()
                    .unwrap(),
            ));
            digests.push(m.digest().to_string());
            descs.push(d);
        }
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(descs)
            .build()
            .unwrap();
        let index = oci_rs_image::Manifest::from_index(&index, ManifestKind::OciIndex).unwrap();
        store.put_manifest(&index, Some("latest")).await.unwrap();
        let w = oci_rs_image::ArchiveWriter::create(&archive, oci_rs_image::ArchiveFormat::Oci)
            .await
            .unwrap();
        oci_rs_image::copy(
            &store,
            &w,
            &oci_rs_image::ManifestRef::Tag("latest".into()),
            &oci_rs_image::CopyOptions::default()
                .platforms(oci_rs_image::PlatformFilter::All)
                .tag("latest"),
        )
        .await
        .unwrap();
        (digests[0].clone(), digests[1].clone())
    });
    let fresh = Store::empty();
    let out = fresh.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(out.starts_with("Loaded image ID: sha256:"), "{out}");
    // Both platforms' manifests are in the store.
    for d in [amd, arm] {
        let hex = d.strip_prefix("sha256:").unwrap();
        assert!(
            fresh.data().join("images/blobs/sha256").join(hex).is_file(),
            "{d} was not loaded"
        );
    }
    // An archive with no image at all is an error, not a silent success.
    let empty = dir.join("empty.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&empty)
        .arg("-C")
        .arg(dir)
        .arg("r.tar")
        .status()
        .unwrap();
    assert!(st.success());
    let o = fresh.oci(&["load", "-i", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(125));
}

// Data loss and wrong results around a container's life.

/// The names of the containers `ps -a` lists, after checking that each has a snapshot and
/// no snapshot is left without a container.
fn containers_left(s: &Store) -> Vec<String> {
    let snapshots = std::fs::read_dir(s.data().join("snapshots/containers"))
        .map(|d| d.count())
        .unwrap_or(0);
    let names: Vec<String> = s
        .ok(&["ps", "-a"])
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect();
    assert_eq!(snapshots, names.len(), "a snapshot per container");
    names
}

fn mounts_under(dir: &Path) -> usize {
    let d = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&d))
        .count()
}

#[test]
fn run_rm_leaves_nothing_when_the_spec_fails_before_start() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    // No Cmd in the image and none given; and an unknown user.
    let tar = s.dir.path().join("r.tar");
    s.ok(&["import", tar.to_str().unwrap(), "local/nocmd:1"]);
    for args in [
        &["run", "--rm", "local/nocmd:1"][..],
        &["run", "--rm", "-u", "nosuchuser", "local/bb:1", "sh"],
    ] {
        let o = s.oci(args);
        assert_eq!(o.status.code(), Some(125), "{args:?}");
        assert_eq!(containers_left(&s), Vec::<String>::new(), "{args:?}");
        assert_eq!(mounts_under(&s.data()), 0, "{args:?}");
    }
}

#[test]
fn missing_or_unrunnable_programs_exit_127_and_126() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let o = s.oci(&["run", "--rm", "local/bb:1", "nosuchprogram"]);
    assert_eq!(o.status.code(), Some(127));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("\"nosuchprogram\": executable file not found in $PATH"),
        "{err}"
    );
    // A file that is not a program (busybox's own directory entry for /bin is a dir).
    let o = s.oci(&["run", "--rm", "local/bb:1", "/bin"]);
    assert_eq!(
        o.status.code(),
        Some(126),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn rm_of_a_running_container_is_refused_without_force() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let mut running = Command::new(OCI)
        .arg("-q")
        .arg("--data-dir")
        .arg(s.data())
        .args([
            "run",
            "-i",
            "--name",
            "busy",
            "local/bb:1",
            "sh",
            "-c",
            "read x",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while s
        .oci(&["inspect", "--format", "{{.State.Status}}", "busy"])
        .stdout
        != b"running\n"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the container did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let o = s.oci(&["rm", "busy"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is running"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(containers_left(&s), vec!["busy".to_owned()]);
    assert!(running.try_wait().unwrap().is_none(), "still running");
    s.ok(&["rm", "-f", "busy"]);
    let code = running.wait().unwrap();
    assert_eq!(code.code(), Some(137), "killed");
    assert_eq!(containers_left(&s), Vec::<String>::new());
}

#[test]
fn rmi_keeps_what_a_container_uses() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    s.ok(&[
        "run",
        "--name",
        "user",
        "local/bb:1",
        "sh",
        "-c",
        "echo x > /made",
    ]);
    let o = s.oci(&["rmi", "local/bb:1"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("container user ("),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(s.ok(&["images"]).contains("local/bb"));
    // Forced: untagged, but the container can still be committed from its image.
    s.ok(&["rmi", "-f", "local/bb:1"]);
    assert!(!s.ok(&["images"]).contains("local/bb"));
    s.ok(&["commit", "user", "local/after:1"]);
    assert_eq!(
        s.ok(&["run", "--rm", "local/after:1", "cat", "/made"]),
        "x\n"
    );
}

#[test]
fn unpack_refuses_a_config_with_fewer_diff_ids_than_layers() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use oci_rs_image::{BlobStoreExt, ImageDestination, ImageSource, ReferenceStore};
        let layout = oci_rs_image::OciLayout::open(s.data().join("images"))
            .await
            .unwrap();
        let desc = layout.resolve("docker.io/local/bb:1").await.unwrap();
        let m = layout
            .manifest(&oci_rs_image::ManifestRef::Digest(desc.digest().clone()))
            .await
            .unwrap();
        let mut img = m.as_image().unwrap().clone();
        let cfg = oci_rs_image::read_config(&layout, img.config())
            .await
            .unwrap();
        let mut cfg = serde_json::to_value(&cfg).unwrap();
        cfg["rootfs"]["diff_ids"] = serde_json::json!([]);
        let bytes = serde_json::to_vec(&cfg).unwrap();
        let info = layout.put_bytes(bytes.into()).await.unwrap();
        let mut c = img.config().clone();
        c.set_digest(info.digest);
        c.set_size(info.size);
        img.set_config(c);
        let bad = oci_rs_image::Manifest::from_image(&img, oci_rs_image::ManifestKind::OciManifest)
            .unwrap();
        layout
            .put_manifest(&bad, Some("docker.io/local/bad:1"))
            .await
            .unwrap();
    });
    let target = s.dir.path().join("bad");
    let o = s.oci(&["unpack", "local/bad:1", target.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("0 diff_ids for 1 layers"), "{err}");
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

/// CVE-2024-21626 through `oci run -w` and through an image's `WorkingDir` (the user types
/// only `oci run IMAGE`): for every descriptor number the run fails or stays in the root.
#[test]
fn a_working_directory_through_proc_self_fd_never_reaches_the_host() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let (marker, secret) = host_marker(s.dir.path());
    let probe = cwd_escape_probe(&marker);
    let hostile = s.dir.path().join("hostile");
    let tar = common::busybox_rootfs_tar(&hostile, &["sh", "cat", "echo"]);
    for n in 3..=24 {
        let cwd = format!("/proc/self/fd/{n}");
        let o = s.oci(&["run", "--rm", "-w", &cwd, "local/bb:1", "sh", "-c", &probe]);
        assert_not_escaped(&marker, &secret, &format!("run -w {cwd}"), &o);
        let image = format!("local/hostile-cwd:{n}");
        s.ok(&[
            "import",
            tar.to_str().unwrap(),
            &image,
            "-c",
            &format!("WORKDIR {cwd}"),
        ]);
        let o = s.oci(&["run", "--rm", &image, "sh", "-c", &probe]);
        assert_not_escaped(&marker, &secret, &format!("image WorkingDir {cwd}"), &o);
    }
}

/// CVE-2024-21626 through a hostile Dockerfile: `WORKDIR /proc/self/fd/N` before a `RUN`.
#[test]
fn a_dockerfile_workdir_through_proc_self_fd_never_reaches_the_host() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let (marker, secret) = host_marker(s.dir.path());
    let probe = cwd_escape_probe(&marker);
    let ctx = s.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    for n in 3..=24 {
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM local/bb:1\nWORKDIR /proc/self/fd/{n}\nRUN {probe}\n"),
        )
        .unwrap();
        let o = s.oci(&[
            "build",
            "-t",
            "local/hostile-build:1",
            ctx.to_str().unwrap(),
        ]);
        assert_not_escaped(&marker, &secret, &format!("build WORKDIR fd {n}"), &o);
    }
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

/// `oci export` streams the container's files where they are: a 16 GiB sparse file made in
/// the container (no disk used) keeps its holes in the tar (it was written out as zeros),
/// deleted image files are absent, and nothing is left in the container's directory.
#[test]
fn export_streams_in_place_and_keeps_holes() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::empty();
    let tools = s.dir.path().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let tar = common::busybox_rootfs_tar(&tools, &["sh", "truncate", "echo", "rm", "cat"]);
    s.ok(&["import", tar.to_str().unwrap(), "local/sparse:1"]);
    s.ok(&[
        "run",
        "--name",
        "holes",
        "local/sparse:1",
        "sh",
        "-c",
        "truncate -s 16G /big && echo tail >> /big && rm /bin/cat",
    ]);
    let out = s.dir.path().join("holes.tar");
    s.ok(&["export", "-o", out.to_str().unwrap(), "holes"]);
    let size = std::fs::metadata(&out).unwrap().len();
    assert!(size < 16 << 20, "{size} bytes exported");
    let listing = Command::new("tar").arg("-tvf").arg(&out).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("17179869189"), "{listing}");
    assert!(listing.contains("bin/busybox"), "{listing}");
    assert!(!listing.contains("bin/cat"), "{listing}");
    let id = s.ok(&["inspect", "--format", "{{.Id}}", "holes"]);
    let snap = s.data().join("snapshots/containers").join(id.trim());
    let left: Vec<_> = std::fs::read_dir(&snap)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    s.ok(&["rm", "holes"]);
}

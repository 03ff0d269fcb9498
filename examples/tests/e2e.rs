//! End to end through the `oci` command line, against a real registry on a loopback port:
//! build a busybox image from the busybox-static package, push, pull, run, commit, save/load,
//! export/import, multi-arch selection, and one-line errors.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;

use common::{tar_with_file, Registry};

const OCI: &str = env!("CARGO_BIN_EXE_oci");

fn ready() -> bool {
    let mut ok = true;
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: running containers needs root");
        ok = false;
    }
    for p in ["/bin/busybox", "/usr/bin/docker-registry"] {
        if !Path::new(p).exists() {
            eprintln!("skipping: {p} is missing (scripts/test.sh installs it)");
            ok = false;
        }
    }
    ok
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn data(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `oci --data-dir DATA ARGS`.
    fn oci(&self, data: &str, args: &[&str]) -> Output {
        Command::new(OCI)
            .arg("-q")
            .arg("--data-dir")
            .arg(self.data(data))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, data: &str, args: &[&str]) -> String {
        let o = self.oci(data, args);
        assert!(
            o.status.success(),
            "oci {args:?} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// A rootfs tar from the busybox-static package.
    fn busybox_tar(&self) -> PathBuf {
        let root = self.dir.path().join("rootfs");
        for d in ["bin", "etc", "tmp", "var"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        for t in [
            "sh", "echo", "cat", "ls", "rm", "touch", "id", "hostname", "uname", "true",
        ] {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(t));
        }
        std::fs::write(root.join("etc/motd"), b"from the image\n").unwrap();
        std::fs::write(root.join("etc/doomed"), b"to be deleted\n").unwrap();
        let tar = self.dir.path().join("rootfs.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        tar
    }
}

#[test]
fn push_pull_run_commit_save_load_export_import() {
    if !ready() {
        return;
    }
    let reg = Registry::start();
    let env = Env::new();
    let tar = env.busybox_tar();
    let image = format!("{}/e2e/busybox:1", reg.addr);
    env.ok(
        "a",
        &[
            "import",
            tar.to_str().unwrap(),
            &image,
            "-c",
            r#"CMD ["cat", "/etc/motd"]"#,
        ],
    );
    env.ok("a", &["push", &image]);

    // A fresh store pulls it back and runs it.
    env.ok("b", &["pull", &image]);
    let out = env.ok("b", &["run", "--rm", &image]);
    assert_eq!(out, "from the image\n");
    let o = env.oci(
        "b",
        &["run", "--rm", &image, "sh", "-c", "echo hello; exit 3"],
    );
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello\n");
    // run pulls what is missing.
    let out = env.ok("c", &["run", "--rm", &image, "echo", "pulled on demand"]);
    assert_eq!(out, "pulled on demand\n");

    // Change files, commit, push under another tag, pull and check: the new file is there and
    // the deleted one stays deleted (whiteouts round-trip).
    env.ok(
        "b",
        &[
            "run",
            "--name",
            "changer",
            &image,
            "sh",
            "-c",
            "echo new > /etc/added; rm /etc/doomed",
        ],
    );
    assert!(env.ok("b", &["ps", "-a"]).contains("changer"));
    let committed = format!("{}/e2e/busybox:2", reg.addr);
    // commit prints the image id, as docker: what inspect and run take.
    let id = env.ok("b", &["commit", "changer", &committed]);
    let id = id.trim();
    assert_eq!(
        env.ok("b", &["inspect", "--format", "{{.Id}}", id]).trim(),
        id
    );
    env.ok("b", &["push", &committed]);
    env.ok("b", &["rm", "changer"]);
    let out = env.ok(
        "d",
        &[
            "run",
            "--rm",
            &committed,
            "sh",
            "-c",
            "cat /etc/added; ls /etc",
        ],
    );
    assert!(out.starts_with("new\n"), "{out}");
    assert!(!out.contains("doomed"), "{out}");
    assert!(out.contains("motd"), "{out}");

    // save → load → run.
    let saved = env.dir.path().join("saved.tar");
    env.ok("d", &["save", "-o", saved.to_str().unwrap(), &committed]);
    let loaded = env.ok("e", &["load", "-i", saved.to_str().unwrap()]);
    assert!(loaded.contains("e2e/busybox:2"), "{loaded}");
    assert_eq!(
        env.ok("e", &["run", "--rm", &committed, "cat", "/etc/added"]),
        "new\n"
    );

    // export → import → run.
    env.ok(
        "e",
        &["run", "--name", "exp", &committed, "touch", "/tmp/exported"],
    );
    let exported = env.dir.path().join("exported.tar");
    env.ok("e", &["export", "-o", exported.to_str().unwrap(), "exp"]);
    env.ok("f", &["import", exported.to_str().unwrap(), "local/flat:1"]);
    let out = env.ok("f", &["run", "--rm", "local/flat:1", "ls", "/tmp", "/etc"]);
    assert!(
        out.contains("exported") && out.contains("added") && !out.contains("doomed"),
        "{out}"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok("f", &["inspect", "local/flat:1"])).unwrap();
    assert_eq!(
        inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(),
        1,
        "flattened"
    );

    // build --push and --output: the built image reaches the registry (another store pulls
    // and runs it), and its filesystem a directory.
    let ctx = env.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {committed}\nRUN echo pushed > /pushed\n"),
    )
    .unwrap();
    let built = format!("{}/e2e/built:1", reg.addr);
    let dir = env.dir.path().join("build-out");
    env.ok(
        "e",
        &[
            "build",
            "-q",
            "-t",
            &built,
            "--push",
            "--output",
            dir.to_str().unwrap(),
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("pushed")).unwrap(),
        "pushed\n"
    );
    assert_eq!(
        env.ok("g", &["run", "--rm", &built, "cat", "/pushed"]),
        "pushed\n"
    );
}

#[test]
fn errors_are_one_line_with_dockers_exit_codes() {
    if !ready() {
        return;
    }
    let env = Env::new();
    // docker's codes: 125 when `run` fails before the container runs, 1 for other verbs.
    for (args, code) in [
        (
            vec!["run", "--rm", "127.0.0.1:1/nothing/here:1", "true"],
            125,
        ),
        (vec!["inspect", "not-pulled"], 1),
        (vec!["pull", "UPPERCASE/is-invalid"], 1),
        (vec!["rm", "no-such-container"], 1),
    ] {
        let o = env.oci("x", &args);
        assert_eq!(o.status.code(), Some(code), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("oci: "), "{err}");
    }
}

#[test]
fn multi_arch_index_resolves_to_the_host_and_platform_picks_another() {
    if !ready() {
        return;
    }
    use oci_rs_image::oci_spec::image::{ImageIndexBuilder, MediaType, PlatformBuilder};
    use oci_rs_image::{ImageBuilder, Manifest, ManifestKind, OciLayout, PlatformSpec};
    let reg = Registry::start();
    let env = Env::new();
    let tar = std::fs::read(env.busybox_tar()).unwrap();
    let host = PlatformSpec::host();
    let other = if host.architecture == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let index_ref = format!("{}/e2e/multi:1", reg.addr);
    rt.block_on(async {
        // Build both images straight into the CLI's store, then tag an index over them.
        let store = OciLayout::create(env.data("m").join("images"))
            .await
            .unwrap();
        let mut entries = Vec::new();
        for arch in [host.architecture.as_str(), other] {
            let mut b = ImageBuilder::new("linux", arch).cmd(["cat", "/etc/arch"]);
            b.add_layer_tar(
                &store,
                &mut &tar[..],
                oci_rs_image::Compression::Gzip,
                "base",
            )
            .await
            .unwrap();
            let marker = tar_with_file("etc/arch", arch.as_bytes());
            b.add_layer_tar(
                &store,
                &mut &marker[..],
                oci_rs_image::Compression::Gzip,
                "arch",
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
            entries.push(d);
        }
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(entries)
            .build()
            .unwrap();
        let index = Manifest::from_index(&index, ManifestKind::OciIndex).unwrap();
        oci_rs_image::ImageDestination::put_manifest(&store, &index, Some(index_ref.as_str()))
            .await
            .unwrap();
    });
    env.ok("m", &["push", &index_ref]);
    // The host's image runs; --platform pulls the other one.
    assert_eq!(
        env.ok("n", &["run", "--rm", &index_ref]).trim(),
        host.architecture
    );
    env.ok(
        "o",
        &["pull", "--platform", &format!("linux/{other}"), &index_ref],
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok("o", &["inspect", &index_ref])).unwrap();
    assert_eq!(inspect[0]["Architecture"], other);
    // docker's `manifest inspect`: the index itself; `-v` its verbose form.
    let text = env.ok("o", &["manifest", "inspect", &index_ref]);
    // As the registry sent it, indented with tabs (docker's json.Indent).
    assert!(
        text.starts_with("{\n\t\"") && text.contains("\n\t\"schemaVersion\": 2"),
        "{text}"
    );
    let mi: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(mi["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(mi["manifests"].as_array().unwrap().len(), 2);
    let mi: serde_json::Value =
        serde_json::from_str(&env.ok("o", &["manifest", "inspect", "-v", &index_ref])).unwrap();
    assert_eq!(mi["Manifests"].as_array().unwrap().len(), 2);
}

fn example(bin: &str, args: &[&str]) -> String {
    let o = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{bin} {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// A registry holding `small/busybox:1` (pushed by `oci` from a store of its own, `a`).
fn busybox_in_a_registry() -> (Registry, Env, String) {
    let reg = Registry::start();
    let env = Env::new();
    let tar = env.busybox_tar();
    let image = format!("{}/small/busybox:1", reg.addr);
    env.ok("a", &["import", tar.to_str().unwrap(), &image]);
    env.ok("a", &["push", &image]);
    (reg, env, image)
}

/// `embed`, the life cycle on the four crates alone, against a real registry: it pulls and
/// runs, serves on a published port, builds, commits and pushes; what it pushed is then
/// pulled and run by `pull_and_run` in another store.
#[test]
fn the_embedding_program_runs_the_whole_life_cycle() {
    if !ready() {
        return;
    }
    let (reg, env, image) = busybox_in_a_registry();
    let context = env.data("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        format!("FROM {image}\nRUN echo built > /built\n"),
    )
    .unwrap();
    let port = common::free_port().to_string();
    let d = |n: &str| env.data(n).to_str().unwrap().to_owned();
    let out = example(
        env!("CARGO_BIN_EXE_embed"),
        &[&reg.addr, &d("e"), context.to_str().unwrap(), &port],
    );
    assert!(out.starts_with("hello exited with 0\nhello\n"), "{out}");
    // httpd served /etc/hostname through the published port, and logged its answer.
    let served = out.lines().find(|l| l.starts_with("web served ")).unwrap();
    assert_ne!(served, "web served 0 bytes", "{out}");
    assert!(out.contains("response:200"), "{out}");
    assert!(
        out.contains(&format!("pushed {}/small/built:1 sha256:", reg.addr)),
        "{out}"
    );
    let built = format!("{}/small/built:1", reg.addr);
    let out = example(
        env!("CARGO_BIN_EXE_pull_and_run"),
        &["--data-dir", &d("q"), &built, "cat", "/built"],
    );
    assert_eq!(out, "built\n");
    let web = format!("{}/small/web:1", reg.addr);
    let out = example(
        env!("CARGO_BIN_EXE_pull_and_run"),
        &["--data-dir", &d("r"), &web, "cat", "/etc/motd"],
    );
    assert_eq!(out, "from the image\n");
    // The one-flow examples, each on a store of its own.
    let out = example(
        env!("CARGO_BIN_EXE_build_image"),
        &[&d("b"), context.to_str().unwrap(), "local/app:1"],
    );
    assert!(out.contains("RUN echo built > /built") && out.contains("local/app:1 is sha256:"));
    let script = "echo tick; sleep 30 & wait";
    let out = example(
        env!("CARGO_BIN_EXE_run_detached"),
        &[&d("rd"), &image, "ticker", "sh", "-c", script],
    );
    assert!(
        out.contains("Z tick\n") && out.contains("ticker stopped"),
        "{out}"
    );
    let port = common::free_port().to_string();
    let out = example(
        env!("CARGO_BIN_EXE_publish_port"),
        &[&d("pp"), &image, &port],
    );
    assert!(out.starts_with("HTTP/1.") && out.contains(" 200 "), "{out}");
}

#[test]
fn the_small_examples_compose() {
    if !ready() {
        return;
    }
    let (reg, env, image) = busybox_in_a_registry();
    let d = |n: &str| env.data(n).to_str().unwrap().to_owned();
    let out = example(
        env!("CARGO_BIN_EXE_pull_and_run"),
        &["--data-dir", &d("p"), &image, "echo", "hi"],
    );
    assert_eq!(out, "hi\n");
    let next = format!("{}/small/busybox:2", reg.addr);
    example(
        env!("CARGO_BIN_EXE_commit_and_push"),
        &[
            "--data-dir",
            &d("c"),
            &image,
            &next,
            "sh",
            "-c",
            "echo made > /made",
        ],
    );
    let out = example(
        env!("CARGO_BIN_EXE_pull_and_run"),
        &["--data-dir", &d("q"), &next, "cat", "/made"],
    );
    assert_eq!(out, "made\n");
    let archive = format!("{}/a.tar", d("x"));
    std::fs::create_dir_all(d("x")).unwrap();
    example(
        env!("CARGO_BIN_EXE_copy"),
        &[
            &format!("docker://{next}"),
            &format!("docker-archive:{archive}:small/busybox:2"),
        ],
    );
    example(
        env!("CARGO_BIN_EXE_copy"),
        &[
            &format!("docker-archive:{archive}"),
            &format!("oci:{}:t", d("layout")),
        ],
    );
    let layout = std::fs::read_to_string(env.data("layout").join("index.json")).unwrap();
    assert!(layout.contains("\"t\""), "{layout}");
    let out = example(env!("CARGO_BIN_EXE_inspect"), &[&next]);
    assert!(
        out.contains("\"RootFS\"") && out.contains("\"Ref\""),
        "{out}"
    );
}

#[test]
fn login_stores_credentials_that_push_then_uses() {
    if !ready() {
        return;
    }
    let env = Env::new();
    let Some(reg) = common::registry_with_user(env.dir.path(), "alice", "s3cret") else {
        return;
    };
    let docker_config = env.dir.path().join("docker");
    let login = |password: &str| {
        let mut child = Command::new(OCI)
            .args(["login", &reg.addr, "-u", "alice", "--password-stdin"])
            .env("DOCKER_CONFIG", &docker_config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    let bad = login("wrong");
    assert_eq!(bad.status.code(), Some(1));
    assert!(!docker_config.join("config.json").exists());
    let ok = login("s3cret");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(docker_config.join("config.json")).unwrap()).unwrap();
    assert!(cfg["auths"][reg.addr.as_str()]["auth"].is_string());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(docker_config.join("config.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // push reads them.
    let tar = env.busybox_tar();
    let image = format!("{}/auth/busybox:1", reg.addr);
    env.ok("a", &["import", tar.to_str().unwrap(), &image]);
    let o = Command::new(OCI)
        .args(["-q", "--data-dir"])
        .arg(env.data("a"))
        .args(["push", &image])
        .env("DOCKER_CONFIG", &docker_config)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let anon = env.oci("b", &["pull", &image]);
    assert_eq!(
        anon.status.code(),
        Some(1),
        "anonymous pull must be refused"
    );
}

/// Reads the pty `m` until its output holds `want` (30 s at most); all it read.
fn pty_until(m: &mut std::fs::File, want: &str) -> String {
    use std::io::Read;
    let mut seen = Vec::new();
    let mut b = [0u8; 256];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !String::from_utf8_lossy(&seen).contains(want) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(
            !left.is_zero(),
            "no {want:?}; the terminal showed {:?}",
            String::from_utf8_lossy(&seen)
        );
        let mut fds = [rustix::event::PollFd::new(
            &*m,
            rustix::event::PollFlags::IN,
        )];
        let ts = rustix::event::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        if rustix::event::poll(&mut fds, Some(&ts)).unwrap_or(0) == 0 {
            continue;
        }
        match m.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&b[..n]),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[test]
fn login_asks_on_a_terminal_honours_a_credential_store_and_logout_removes_it() {
    if !ready() {
        return;
    }
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let Some(reg) = common::registry_with_user(env.dir.path(), "bob", "pa55") else {
        return;
    };
    let cfg_dir = env.dir.path().join("docker");
    // On a terminal: both asked, the password without echo.
    let (mut m, slave) = common::pty();
    let mut child = Command::new(OCI)
        .args(["login", &reg.addr])
        .env("DOCKER_CONFIG", &cfg_dir)
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap())
        .spawn()
        .unwrap();
    drop(slave);
    pty_until(&mut m, "Username: ");
    m.write_all(b"bob\n").unwrap();
    pty_until(&mut m, "Password: ");
    m.write_all(b"pa55\n").unwrap();
    let rest = pty_until(&mut m, "Login Succeeded");
    assert!(!rest.contains("pa55"), "the password was echoed: {rest:?}");
    assert!(child.wait().unwrap().success());
    let mode = std::fs::metadata(&cfg_dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "the config directory is private");
    // Without a terminal and without a user name: docker's error, no prompt.
    let o = Command::new(OCI)
        .args(["login", &reg.addr])
        .env("DOCKER_CONFIG", &cfg_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("non TTY"),
        "{o:?}"
    );
    // logout removes the entry.
    let o = Command::new(OCI)
        .args(["logout", &reg.addr])
        .env("DOCKER_CONFIG", &cfg_dir)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("Removing login credentials"));
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cfg_dir.join("config.json")).unwrap()).unwrap();
    assert!(cfg["auths"].get(reg.addr.as_str()).is_none(), "{cfg}");

    // A configured credential store gets the secret; the file keeps none; push reads it back.
    let helpers = env.dir.path().join("bin");
    std::fs::create_dir(&helpers).unwrap();
    let vault = env.dir.path().join("vault");
    let helper = helpers.join("docker-credential-filevault");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n# A real helper of docker's protocol, keeping one secret in a file.\n\
             case \"$1\" in\n\
             store) cat > {v} ;;\n\
             get) cat {v} 2>/dev/null || {{ echo 'credentials not found in native keychain'; exit 1; }} ;;\n\
             erase) rm -f {v} ;;\n\
             esac\n",
            v = vault.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        cfg_dir.join("config.json"),
        r#"{"credsStore":"filevault","auths":{}}"#,
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        helpers.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new(OCI)
        .args(["login", &reg.addr, "-u", "bob", "--password-stdin"])
        .env("DOCKER_CONFIG", &cfg_dir)
        .env("PATH", &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "pa55").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("docker-credential-filevault"));
    let text = std::fs::read_to_string(cfg_dir.join("config.json")).unwrap();
    assert!(!text.contains("auth\""), "no secret in the file: {text}");
    assert!(std::fs::read_to_string(&vault).unwrap().contains("pa55"));
    let tar = env.busybox_tar();
    let image = format!("{}/vault/busybox:1", reg.addr);
    env.ok("a", &["import", tar.to_str().unwrap(), &image]);
    let o = Command::new(OCI)
        .args(["-q", "--data-dir"])
        .arg(env.data("a"))
        .args(["push", &image])
        .env("DOCKER_CONFIG", &cfg_dir)
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(OCI)
        .args(["logout", &reg.addr])
        .env("DOCKER_CONFIG", &cfg_dir)
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "logout: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!vault.exists(), "erase reached the helper");
}

#[test]
fn pull_prints_what_docker_prints() {
    if !ready() {
        return;
    }
    let reg = Registry::start();
    let env = Env::new();
    let tar = env.busybox_tar();
    let image = format!("{}/e2e/lines:1", reg.addr);
    env.ok("a", &["import", tar.to_str().unwrap(), &image]);
    env.ok("a", &["push", &image]);
    let first = env.ok("b", &["pull", &image]);
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines[0], "1: Pulling from e2e/lines", "{first}");
    assert!(
        lines[1].ends_with(": Pull complete") && lines[1].len() == 12 + 15,
        "{first}"
    );
    assert!(lines[2].starts_with("Digest: sha256:"), "{first}");
    assert_eq!(
        lines[3],
        format!("Status: Downloaded newer image for {image}")
    );
    assert_eq!(lines[4], image);
    let again = env.ok("b", &["pull", &image]);
    assert!(again.contains(": Already exists"), "{again}");
    assert!(
        again.contains(&format!("Status: Image is up to date for {image}")),
        "{again}"
    );
    assert_eq!(env.ok("c", &["pull", "-q", &image]), format!("{image}\n"));
    // Pulled by digest: docker's `REPO <none>` row, the digest under --digests.
    let digest = lines[2].trim_start_matches("Digest: ");
    let by_digest = format!("{}/e2e/lines@{digest}", reg.addr);
    env.ok("f", &["pull", &by_digest]);
    let rows = env.ok("f", &["images", "--digests"]);
    let row = rows.lines().nth(1).unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols[..3],
        [format!("{}/e2e/lines", reg.addr).as_str(), "<none>", digest],
        "{rows}"
    );
    // --platform in containerd's short form.
    let amd = env.oci("d", &["pull", "--platform", "amd64", &image]);
    assert!(amd.status.success(), "{amd:?}");
    // run of a missing image says so first (without the global -q).
    let o = Command::new(OCI)
        .arg("--data-dir")
        .arg(env.data("e"))
        .args(["run", "--rm", "--network", "none", &image, "true"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .starts_with(&format!("Unable to find image '{image}' locally")),
        "{o:?}"
    );
}

#[test]
fn manifest_create_annotate_push_then_pull_each_platform() {
    if !ready() {
        return;
    }
    let reg = Registry::start();
    let env = Env::new();
    let (a, b) = (
        format!("{}/e2e/multi-amd:1", reg.addr),
        format!("{}/e2e/multi-arm:1", reg.addr),
    );
    for (i, (name, text)) in [(&a, "amd64 build"), (&b, "arm64 build")]
        .iter()
        .enumerate()
    {
        let tar = env.dir.path().join(format!("m{i}.tar"));
        std::fs::write(&tar, tar_with_file("which", text.as_bytes())).unwrap();
        env.ok("a", &["import", tar.to_str().unwrap(), name]);
    }
    let list = format!("{}/e2e/multi:1", reg.addr);
    let out = env.ok("a", &["manifest", "create", &list, &a, &b]);
    assert!(
        out.starts_with(&format!("Created manifest list {list}")),
        "{out}"
    );
    // It exists now: a second create is refused without --amend.
    assert_eq!(
        env.oci("a", &["manifest", "create", &list, &a])
            .status
            .code(),
        Some(1)
    );
    env.ok(
        "a",
        &[
            "manifest",
            "annotate",
            "--arch",
            "arm64",
            "--variant",
            "v8",
            &list,
            &b,
        ],
    );
    env.ok("a", &["manifest", "push", &list]);
    // skopeo reads the index from the registry, with both platforms.
    if Path::new("/usr/bin/skopeo").exists() {
        let raw = Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{list}"),
            ])
            .output()
            .unwrap();
        assert!(raw.status.success(), "{raw:?}");
        let idx: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
        let plats: Vec<String> = idx["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let p = &m["platform"];
                let v = p["variant"].as_str().map(|v| format!("/{v}"));
                format!(
                    "{}/{}{}",
                    p["os"].as_str().unwrap_or(""),
                    p["architecture"].as_str().unwrap_or(""),
                    v.unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(plats, ["linux/amd64", "linux/arm64/v8"], "{idx}");
    }
    // Each platform pulls its own image: its config is in that store, the other's is not.
    let config = |name: &str| {
        env.ok("a", &["inspect", "--format", "{{.Id}}", name])
            .trim()
            .trim_start_matches("sha256:")
            .to_owned()
    };
    let (ca, cb) = (config(&a), config(&b));
    let has = |data: &str, hex: &str| {
        env.data(data)
            .join("images/blobs/sha256")
            .join(hex)
            .exists()
    };
    env.ok("b", &["pull", "--platform", "linux/arm64/v8", &list]);
    assert!(
        has("b", &cb) && !has("b", &ca),
        "arm64 pulled the arm64 entry"
    );
    env.ok("c", &["pull", "--platform", "amd64", &list]);
    assert!(
        has("c", &ca) && !has("c", &cb),
        "amd64 pulled the amd64 entry"
    );
}

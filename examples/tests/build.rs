//! `oci build` as a command line: its flags, a failing step's output and exit code,
//! contexts and Dockerfiles on standard input, builds by several processes at once, a
//! rootless user, a build killed mid-step, escape sequences kept from the terminal, and the
//! same Dockerfile built by Debian's buildah, whose image must hold the same files and
//! config, with our image run by podman. What a build does (instructions, the cache, ADD,
//! hostile contexts) is tested through the library in oci-rs-runtime's `tests/build.rs`.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;

const OCI: &str = env!("CARGO_BIN_EXE_oci");
const TOOLS: &[&str] = &[
    "sh", "echo", "cat", "ls", "mkdir", "rm", "touch", "id", "env", "test", "printf", "wc",
];

/// A store with busybox imported as `localhost/bb:1`, and a context directory.
fn setup(d: &Path) -> (common::Cli, PathBuf) {
    let tar = common::busybox_rootfs_tar(d, TOOLS);
    let cli = common::Cli {
        oci: OCI,
        data: d.join("data"),
    };
    cli.ok(&["import", tar.to_str().unwrap(), "localhost/bb:1"]);
    let ctx = d.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    (cli, ctx)
}

fn write(p: &Path, text: &str) {
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(p, text).unwrap();
}

/// `oci build ARGS` with its progress (standard error) returned; must succeed.
fn build(cli: &common::Cli, args: &[&str]) -> (String, String) {
    let mut a = vec!["build"];
    a.extend_from_slice(args);
    let o = cli.oci(&a);
    assert!(
        o.status.success(),
        "oci build {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (
        String::from_utf8(o.stdout).unwrap().trim().to_owned(),
        String::from_utf8(o.stderr).unwrap(),
    )
}

fn build_fails(cli: &common::Cli, args: &[&str]) -> String {
    let mut a = vec!["build"];
    a.extend_from_slice(args);
    let o = cli.oci(&a);
    assert!(!o.status.success(), "oci build {args:?} succeeded");
    String::from_utf8(o.stderr).unwrap()
}

fn run(cli: &common::Cli, args: &[&str]) -> String {
    let mut a = vec!["run", "--rm"];
    a.extend_from_slice(args);
    cli.ok(&a)
}

/// docker's build flags reach the builder: `-f` (with the Dockerfile's own ignore file
/// beside it), `--build-arg`, `--target`, `--label`, `--iidfile` and `-q`; a failing step's
/// message names the file and line, and `builder prune` empties the cache (what a build does
/// with them is tested in the library, oci-runtime/tests/build.rs).
#[test]
fn build_flags_reach_the_builder() {
    if !common::root_with_busybox() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cli, ctx) = setup(dir.path());
    let f = ctx.join("f.Dockerfile");
    write(
        &f,
        "FROM localhost/bb:1 AS a\nARG V\nRUN echo v$V > /v\nCOPY *.txt /ctx/\nFROM a AS b\nRUN exit 3\n",
    );
    // `f.Dockerfile.dockerignore` is taken instead of the context's `.dockerignore`.
    write(&ctx.join(".dockerignore"), "kept.txt\n");
    write(&ctx.join("f.Dockerfile.dockerignore"), "ignored.txt\n");
    write(&ctx.join("kept.txt"), "kept\n");
    write(&ctx.join("ignored.txt"), "ignored\n");
    let (f, c) = (f.to_str().unwrap(), ctx.to_str().unwrap());
    let args = [
        "-f",
        f,
        "--build-arg",
        "V=7",
        "--target",
        "a",
        "-t",
        "t:1",
        c,
    ];
    let (_, progress) = build(&cli, &args);
    assert!(!progress.contains("exit 3"), "{progress}");
    assert_eq!(run(&cli, &["t:1", "cat", "/v"]), "v7\n");
    assert_eq!(run(&cli, &["t:1", "ls", "/ctx"]), "kept.txt\n");
    let err = build_fails(&cli, &["-f", f, "--target", "b", c]);
    assert!(
        err.contains("f.Dockerfile:6: RUN exit 3") && err.contains("exit code: 3"),
        "{err}"
    );
    // --label and --iidfile; -q prints the id only, and no step's output.
    write(
        &ctx.join("Dockerfile"),
        "FROM localhost/bb:1\nRUN echo quiet-run\n",
    );
    let iid = dir.path().join("iid");
    let (id, progress) = build(
        &cli,
        &[
            "-q",
            "--label",
            "from.cli=yes",
            "--iidfile",
            iid.to_str().unwrap(),
            "-t",
            "q:1",
            c,
        ],
    );
    assert!(id.starts_with("sha256:") && !id.contains('\n'), "{id}");
    assert!(!progress.contains("quiet-run"), "{progress}");
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), id);
    assert_eq!(cli.field("q:1", "{{.Id}}"), id);
    let cfg: serde_json::Value =
        serde_json::from_str(&cli.field("q:1", "{{json .Config}}")).unwrap();
    assert_eq!(cfg["Labels"]["from.cli"], "yes");
    let out = cli.ok(&["builder", "prune", "-f"]);
    assert!(out.starts_with("Deleted build cache objects: "), "{out}");
    assert_eq!(
        std::fs::read_dir(cli.data.join("build-cache"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_failing_run_step_shows_its_output_and_exit_code() {
    if !common::root_with_busybox() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cli, ctx) = setup(dir.path());
    let c = ctx.to_str().unwrap();
    // Its output (streamed, or with -q kept and shown once it failed), the instruction and
    // the exit code; nothing tagged. (Refused Dockerfiles and contexts: the library's
    // oci-runtime/tests/build.rs.)
    write(
        &ctx.join("Dockerfile"),
        "FROM localhost/bb:1\nRUN echo before-failing && exit 7\n",
    );
    for quiet in [None, Some("-q"), Some("--progress=quiet")] {
        let mut args = vec!["-t", "bad:1", c];
        if let Some(q) = quiet {
            args.insert(0, q);
        }
        let o = cli.oci(&[&["build"][..], &args].concat());
        assert_eq!(o.status.code(), Some(1), "docker's build exits 1");
        let err = String::from_utf8(o.stderr).unwrap();
        assert!(err.contains("before-failing"), "{err}");
        assert!(
            err.contains("Dockerfile:2: RUN echo before-failing && exit 7: process \"/bin/sh -c echo before-failing && exit 7\" did not complete successfully: exit code: 7"),
            "{err}"
        );
    }
    assert!(!cli.oci(&["inspect", "bad:1"]).status.success());
}

#[test]
fn contexts_and_dockerfiles_from_standard_input_and_reproducible_output() {
    if !common::root_with_busybox() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cli, ctx) = setup(dir.path());
    write(&ctx.join("f"), "from a tar\n");
    write(
        &ctx.join("Dockerfile"),
        "FROM localhost/bb:1\nCOPY f /f\nRUN cat /f > /g\n",
    );
    let tar = dir.path().join("ctx.tar");
    common::tar_dir(&ctx, &tar);
    let o = cli
        .cmd(&["build", "-t", "s:1", "-"])
        .stdin(std::fs::File::open(&tar).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(run(&cli, &["s:1", "cat", "/g"]), "from a tar\n");
    // The Dockerfile on standard input, the context a directory.
    let o = cli
        .cmd(&["build", "-f", "-", "-t", "s:2", ctx.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(b"FROM localhost/bb:1\nCOPY f /h\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(run(&cli, &["s:2", "cat", "/h"]), "from a tar\n");
    // `build -` with a Dockerfile (not a tar): a build without a context, as docker's.
    let o = cli
        .cmd(&["build", "-t", "s:4", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(b"FROM localhost/bb:1\nRUN echo no-context > /n\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(run(&cli, &["s:4", "cat", "/n"]), "no-context\n");
    // SOURCE_DATE_EPOCH: two uncached builds give the same bytes, so the same id.
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let o = cli
                .cmd(&["build", "--no-cache", "-t", "s:3", ctx.to_str().unwrap()])
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8(o.stdout).unwrap()
        })
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert!(cli
        .field("s:3", "{{.Created}}")
        .starts_with("2023-11-14T22:13:20"));
}

#[test]
fn builds_match_buildah_and_run_under_podman() {
    if !common::root_with_busybox() {
        return;
    }
    if !Path::new("/usr/bin/buildah").exists() || !Path::new("/usr/bin/podman").exists() {
        eprintln!("skipping: needs buildah and podman (scripts/test.sh installs them)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cli, ctx) = setup(d);
    // buildah 1.28 (Debian 12) has no heredocs: the shared Dockerfile does without them.
    write(&ctx.join("keep.md"), "keep\n");
    write(&ctx.join("drop.md"), "drop\n");
    write(&ctx.join("d/one"), "1\n");
    write(&ctx.join("d/sub/two"), "2\n");
    std::os::unix::fs::symlink("one", ctx.join("d/link")).unwrap();
    std::fs::set_permissions(ctx.join("d/one"), std::fs::Permissions::from_mode(0o640)).unwrap();
    write(&ctx.join(".dockerignore"), "*.md\n!keep.md\n");
    write(
        &ctx.join("Dockerfile"),
        r#"ARG BASE=localhost/bb:1
FROM ${BASE} AS builder
ARG VERSION=0
RUN mkdir -p /out && echo "v${VERSION}" > /out/version && echo x > /out/gone && rm /out/gone
COPY --chmod=0755 d/one /out/run.sh

FROM ${BASE}
ENV PATH=/usr/local/bin:/bin A="x y"
LABEL org.example.a="1 2" b=3
WORKDIR /srv/app
COPY --from=builder /out/ /usr/local/
COPY *.md d/ /docs/
COPY --chown=5:6 d /dd
COPY d/one rel
RUN mkdir -p /var/x && echo hi > /var/x/f && rm -f /bin/cat && touch -d @0 /var/x/f
USER 1000:1000
EXPOSE 8080 53/udp
STOPSIGNAL SIGINT
VOLUME /data
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo hello from $A"]
"#,
    );
    let storage = [
        "--root",
        d.join("cs/root").to_str().unwrap(),
        "--runroot",
        d.join("cs/run").to_str().unwrap(),
        "--storage-driver",
        "vfs",
    ]
    .map(str::to_owned);
    let peer = |program: &str, args: &[&str]| -> Output {
        let mut c = Command::new(program);
        c.args(&storage);
        if program == "podman" {
            c.args([
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--runtime",
                "runc",
            ]);
        }
        let o = c.args(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            o.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    };
    let rootfs_tar = d.join("r.tar");
    peer(
        "podman",
        &["import", rootfs_tar.to_str().unwrap(), "localhost/bb:1"],
    );
    peer(
        "buildah",
        &[
            "bud",
            "--layers",
            "--isolation",
            "chroot",
            "--build-arg",
            "VERSION=7",
            "-t",
            "localhost/cmp:buildah",
            ctx.to_str().unwrap(),
        ],
    );
    let theirs = d.join("theirs.tar");
    peer(
        "buildah",
        &[
            "push",
            "localhost/cmp:buildah",
            &format!("oci-archive:{}:localhost/cmp:buildah", theirs.display()),
        ],
    );
    build(
        &cli,
        &[
            "--build-arg",
            "VERSION=7",
            "-t",
            "localhost/cmp:oci",
            ctx.to_str().unwrap(),
        ],
    );
    cli.ok(&["load", "-i", theirs.to_str().unwrap()]);
    let (ours_dir, theirs_dir) = (d.join("u-ours"), d.join("u-theirs"));
    cli.ok(&["unpack", "localhost/cmp:oci", ours_dir.to_str().unwrap()]);
    cli.ok(&[
        "unpack",
        "localhost/cmp:buildah",
        theirs_dir.to_str().unwrap(),
    ]);
    let mut ours = common::tree(&ours_dir);
    let mut them = common::tree(&theirs_dir);
    // What buildah documents as its own: the empty bind targets its RUN left behind (docker
    // and we leave them out of the layer) and the /run it mounts a tmpfs on.
    for p in [
        "rootfs/etc/hostname",
        "rootfs/etc/hosts",
        "rootfs/etc/resolv.conf",
        "rootfs/run",
    ] {
        them.remove(p);
        ours.remove(p);
    }
    // The base has no /etc: buildah's RUN leaves the one it made for those targets, BuildKit
    // removes it with them (its mount stubs go with the parents made for them), and so do we.
    if !ours.contains_key("rootfs/etc") {
        them.remove("rootfs/etc");
    }
    let diff: Vec<_> = ours
        .keys()
        .chain(them.keys())
        .filter(|k| ours.get(*k) != them.get(*k))
        .map(|k| (k.clone(), ours.get(k).cloned(), them.get(k).cloned()))
        .collect();
    assert!(diff.is_empty(), "{diff:#?}");
    // The configs agree on what a user reads (buildah adds its version label).
    let config = |name: &str| -> serde_json::Value {
        let mut v: serde_json::Value =
            serde_json::from_str(&cli.field(name, "{{json .Config}}")).unwrap();
        if let Some(l) = v["Labels"].as_object_mut() {
            l.remove("io.buildah.version");
        }
        v
    };
    let (a, b) = (config("localhost/cmp:oci"), config("localhost/cmp:buildah"));
    for k in [
        "Cmd",
        "Entrypoint",
        "Env",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Labels",
        "Volumes",
        "StopSignal",
    ] {
        assert_eq!(a[k], b[k], "{k}: ours {a} theirs {b}");
    }
    // Our image runs under podman.
    let ours_tar = d.join("ours.tar");
    cli.ok(&[
        "save",
        "-o",
        ours_tar.to_str().unwrap(),
        "localhost/cmp:oci",
    ]);
    peer("podman", &["load", "-i", ours_tar.to_str().unwrap()]);
    let o = peer(
        "podman",
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "localhost/cmp:oci",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello from x y\n");
}

#[test]
fn concurrent_builds_share_one_store_and_cache() {
    if !common::root_with_busybox() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cli, ctx) = setup(dir.path());
    write(&ctx.join("f"), "f\n");
    write(
        &ctx.join("Dockerfile"),
        "FROM localhost/bb:1\nCOPY f /f\nRUN cat /f /f > /ff\nRUN echo $RANDOM > /r\n",
    );
    let children: Vec<_> = (0..4)
        .map(|k| {
            cli.cmd(&["build", "-t", &format!("par:{k}"), ctx.to_str().unwrap()])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for k in 0..4 {
        assert_eq!(run(&cli, &[&format!("par:{k}"), "cat", "/ff"]), "f\nf\n");
    }
    // The cache they left is whole: a fifth build takes every step from it.
    let (_, p) = build(&cli, &["-t", "par:5", ctx.to_str().unwrap()]);
    assert_eq!(p.matches(" CACHED").count(), 3, "{p}");
}

#[test]
fn rootless_builds_run_steps_as_the_image_user() {
    if !common::root_with_busybox() {
        return;
    }
    let Some((uid, gid, _)) = common::rootless_user() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let tar = common::busybox_rootfs_tar(h, TOOLS);
    write(&h.join("ctx/f"), "f\n");
    write(
        &h.join("ctx/Dockerfile"),
        "FROM bb:1\nCOPY f /home/u/\nRUN mkdir -m 1777 /scratch && case \"$(cat /proc/net/dev)\" in *tap0*) ;; *) exit 9;; esac\n\
         RUN --mount=type=secret,id=s cat /run/secrets/s > /scratch/sec\n\
         USER 1000:1000\nRUN id -u > /scratch/id && cat /home/u/f >> /scratch/id\nCMD [\"cat\", \"/scratch/id\"]\n",
    );
    write(&h.join("secret"), "rootless-secret");
    std::fs::set_permissions(h.join("ctx/f"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut stack = vec![h.to_path_buf()];
    while let Some(p) = stack.pop() {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).unwrap();
        if p.is_dir() && !p.is_symlink() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        }
    }
    let data = h.join("data");
    let ok = |args: &[&str]| common::ok_as(OCI, (uid, gid), h, &data, args);
    ok(&["import", tar.to_str().unwrap(), "bb:1"]);
    let ctx = h.join("ctx");
    let secret = format!("id=s,src={}", h.join("secret").display());
    ok(&[
        "build",
        "--secret",
        &secret,
        "-t",
        "rl:1",
        ctx.to_str().unwrap(),
    ]);
    // A secret mount rootless: the file is the caller's, which is the step's root.
    assert_eq!(
        ok(&["run", "--rm", "rl:1", "cat", "/scratch/sec"]),
        "rootless-secret"
    );
    // The RUN ran as uid 1000 in the user namespace; the image runs rootless as that user
    // (slirp4netns reads its namespaces). Files a rootless apply gives to another owner
    // stay the caller's (see the note on rootless snapshots), so the step writes to a
    // world-writable directory.
    assert_eq!(ok(&["run", "--rm", "rl:1"]), "1000\nf\n");
    assert_eq!(
        ok(&["run", "--rm", "--network", "none", "rl:1"]),
        "1000\nf\n"
    );
}

#[test]
fn a_build_killed_mid_step_leaves_nothing_the_next_build_trips_on() {
    if !common::root_with_busybox() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cli, ctx) = setup(dir.path());
    write(
        &ctx.join("Dockerfile"),
        "FROM localhost/bb:1\nRUN echo started > /started && sleep 60\n",
    );
    let mut child = cli
        .cmd(&["build", "-t", "killed:1", ctx.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the RUN's container is running, then kill -9 the build.
    let snaps = cli.data.join("snapshots/containers");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let running = loop {
        let found: Vec<PathBuf> = std::fs::read_dir(&snaps)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if let Some(p) = found.iter().find(|p| p.join("rootfs/started").exists()) {
            break p.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the RUN never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!cli.oci(&["inspect", "killed:1"]).status.success());
    // The next build removes the dead build's snapshot and stops its container.
    write(
        &ctx.join("Dockerfile"),
        "FROM localhost/bb:1\nRUN echo ok > /ok\n",
    );
    build(&cli, &["-t", "next:1", ctx.to_str().unwrap()]);
    assert!(!running.exists(), "{} is still there", running.display());
    let left: Vec<_> = std::fs::read_dir(cli.data.join("run"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "runtime state left: {left:?}");
    assert_eq!(run(&cli, &["next:1", "cat", "/ok"]), "ok\n");
}

// `*a*a…*b` against a long name of `a`s tried every split at every star: minutes for one
// name, as a COPY source and as a .dockerignore line alike.
#[test]
fn escape_sequences_from_images_and_containers_never_reach_the_terminal() {
    if !common::root_with_busybox() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cli, ctx) = setup(dir.path());
    let no_esc = |what: &str, out: &[u8]| {
        assert!(
            !out.contains(&0x1b) && !out.contains(&0x07),
            "{what}: {}",
            String::from_utf8_lossy(out)
        );
    };
    write(
        &ctx.join("Dockerfile"),
        "FROM localhost/bb:1\nLABEL x=\"\x1b]0;pwned\x07\"\nRUN true \x1b[2J\nONBUILD LABEL y=\"\x1b[2J\"\nCMD [\"echo\", \"\\u001b]0;pwned\\u0007\"]\n",
    );
    build(&cli, &["-t", "esc:1", ctx.to_str().unwrap()]);
    for args in [
        &["history", "esc:1"][..],
        &["history", "--no-trunc", "esc:1"],
        &["images"],
        &["inspect", "--format", "{{.Config.Labels.x}}", "esc:1"],
    ] {
        no_esc(&format!("{args:?}"), cli.ok(args).as_bytes());
    }
    // What is shown is the escape, readable.
    let h = cli.ok(&["history", "--no-trunc", "esc:1"]);
    assert!(h.contains("-c true \\u{1b}[2J"), "{h}");
    // A build from it: the ONBUILD trigger is echoed in the progress lines.
    let child = dir.path().join("child");
    write(&child.join("Dockerfile"), "FROM esc:1\n");
    let (_, progress) = build(&cli, &["-t", "child:1", child.to_str().unwrap()]);
    no_esc("the child's build", progress.as_bytes());
    // A container whose command holds escapes (the exec-form CMD's JSON escapes are real
    // ESC and BEL characters): ps quotes them.
    let cmd = cli.field("esc:1", "{{json .Config.Cmd}}");
    assert!(
        serde_json::from_str::<Vec<String>>(&cmd).unwrap()[1].contains('\x1b'),
        "{cmd}"
    );
    cli.ok(&["run", "--name", "esc", "esc:1"]);
    for args in [&["ps", "-a"][..], &["ps", "-a", "--no-trunc"]] {
        no_esc(&format!("{args:?}"), cli.ok(args).as_bytes());
    }
    cli.ok(&["rm", "esc"]);
    // A running process's argv, as `top` lists it (a script of `sh -c` that outlives its
    // `sleep`, so the shell's own argv is what is shown).
    let sleepy = dir.path().join("sleepy");
    std::fs::create_dir_all(&sleepy).unwrap();
    let tar = common::busybox_rootfs_tar(&sleepy, &["sh", "sleep"]);
    cli.ok(&["import", tar.to_str().unwrap(), "localhost/sleepy:1"]);
    cli.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "esc-top",
        "localhost/sleepy:1",
        "sh",
        "-c",
        "sleep 60; : \x1b]0;pwned\x07",
    ]);
    let top = cli.ok(&["top", "esc-top"]);
    cli.ok(&["rm", "-f", "esc-top"]);
    assert!(top.contains("pwned"), "{top}");
    no_esc("top", top.as_bytes());
}

/// `--cache-to type=registry` and `--cache-from` against a real registry (Debian's
/// docker-registry), as two CI runners use them: the second, with an empty store, takes
/// every step from the cache the first pushed and makes the same image; skopeo reads the
/// cache manifest as BuildKit writes it (an index with a cache config). A cache that is not
/// there is a warning, not a failure, as with docker buildx.
#[test]
fn a_registry_cache_lets_an_empty_store_take_every_step() {
    if !common::root_with_busybox() || !common::have_registry() {
        return;
    }
    let reg = common::Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (first, ctx) = setup(&dir.path().join("first"));
    let base = format!("{}/ci/bb:1", reg.addr);
    first.ok(&["tag", "localhost/bb:1", &base]);
    first.ok(&["push", &base]);
    write(
        &ctx.join("Dockerfile"),
        &format!(
            "FROM {base} AS tool\nRUN echo tool > /tool\nFROM {base}\nCOPY f /f\n\
             RUN cat /proc/sys/kernel/random/uuid > /r\nCOPY --from=tool /tool /tool\n"
        ),
    );
    write(&ctx.join("f"), "f\n");
    let cache = format!("{}/ci/app:cache", reg.addr);
    let c = ctx.to_str().unwrap();
    let to = format!("type=registry,ref={cache},mode=max");
    let pushed = format!("{}/ci/app:1", reg.addr);
    let (id, progress) = build(&first, &["--cache-to", &to, "-t", &pushed, "--push", c]);
    assert!(
        progress.contains(&format!("exporting cache to registry {cache}")),
        "{progress}"
    );
    // BuildKit's plain progress: `#N [stage k/n] INSTRUCTION`, then `#N DONE 0.0s`.
    let lines: Vec<&str> = progress.lines().collect();
    assert!(
        lines.contains(&&*format!("#1 [tool 1/2] FROM {base}")),
        "{progress}"
    );
    assert!(
        lines.contains(&"#2 [tool 2/2] RUN echo tool > /tool"),
        "{progress}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("#2 DONE ") && l.ends_with('s')),
        "{progress}"
    );
    assert!(
        lines.contains(&"#6 [4/4] COPY --from=tool /tool /tool"),
        "{progress}"
    );
    // --push: the image is in the registry under the name, skopeo reads it.
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{pushed}"))
        .output()
        .unwrap();
    assert!(raw.status.success(), "{raw:?}");
    let m: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        m["config"]["digest"], id,
        "the pushed image is the one built"
    );
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{cache}"))
        .output()
        .unwrap();
    assert!(raw.status.success(), "{raw:?}");
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert!(
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["mediaType"] == "application/vnd.buildkit.cacheconfig.v0"),
        "{index}"
    );

    // Another runner: an empty store, the same context.
    let second = common::Cli {
        oci: OCI,
        data: dir.path().join("second/data"),
    };
    let (id2, progress) = build(&second, &["--cache-from", &cache, "-t", "app:1", c]);
    assert_eq!(id2, id, "{progress}");
    assert_eq!(progress.matches(" CACHED").count(), 4, "{progress}");
    assert!(progress.lines().any(|l| l == "#3 CACHED"), "{progress}");
    assert_eq!(
        run(&second, &["app:1", "cat", "/r"]),
        run(&first, &[&pushed, "cat", "/r"])
    );

    // A cache that is not there: a warning, and the build goes on.
    let third = common::Cli {
        oci: OCI,
        data: dir.path().join("third/data"),
    };
    let missing = format!("type=registry,ref={}/ci/none:cache", reg.addr);
    let (_, progress) = build(&third, &["--cache-from", &missing, c]);
    assert!(progress.contains("WARNING: cache registry"), "{progress}");
}

/// `--secret id=ID,src=FILE` and `--secret id=ID,env=NAME` reach `RUN
/// --mount=type=secret`, and `--ssh ID=SOCKET` a `RUN --mount=type=ssh`; an unknown `--allow`
/// entitlement and a `--secret` without an id are refused with docker's flag named.
#[test]
fn secret_ssh_and_allow_flags_reach_the_builder() {
    if !common::root_with_busybox() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cli, ctx) = setup(dir.path());
    let secret = dir.path().join("tok");
    std::fs::write(&secret, "from-a-file").unwrap();
    let agent = dir.path().join("agent.sock");
    let _agent = std::os::unix::net::UnixListener::bind(&agent).unwrap();
    write(
        &ctx.join("Dockerfile"),
        "FROM localhost/bb:1\n\
         RUN --mount=type=secret,id=tok --mount=type=secret,id=var,env=V \
         --mount=type=ssh,id=work sh -c 'cat /run/secrets/tok > /seen; echo \" $V\" >> /seen; \
         test -S $SSH_AUTH_SOCK && echo ssh >> /seen'\n",
    );
    let c = ctx.to_str().unwrap();
    let src = format!("id=tok,src={}", secret.display());
    let ssh = format!("work={}", agent.display());
    let mut cmd = cli.cmd(&[
        "build",
        "--secret",
        &src,
        "--secret",
        "id=var,env=SECRET_VAR",
        "--ssh",
        &ssh,
        "-t",
        "sec:1",
        c,
    ]);
    let out = cmd.env("SECRET_VAR", "from-a-variable").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        run(&cli, &["sec:1", "cat", "/seen"]),
        "from-a-file from-a-variable\nssh\n"
    );
    let err = build_fails(&cli, &["--allow", "network.everything", c]);
    assert!(err.contains("--allow network.everything"), "{err}");
    let err = build_fails(&cli, &["--secret", "src=/etc/passwd", c]);
    assert!(err.contains("--secret src=/etc/passwd: no id"), "{err}");
}

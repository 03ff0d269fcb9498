//! Dockerfile builds through the library (`DockerfileBuild` into an `ImageStore`), on a
//! busybox base: inputs made to blow up (globs, nesting, stage chains) must finish, or fail
//! with a typed error at the line. Real `RUN` containers: root only.

#![allow(clippy::unwrap_used)]

use oci_rs_layer::ImageStore;
use oci_rs_runtime::{BuildError, BuildEvent, BuildOptions, BuildSources, Built, DockerfileBuild};
use std::path::{Path, PathBuf};

/// A store with busybox as `localhost/bb:1`, and a context directory.
struct Lib {
    _dir: tempfile::TempDir,
    store: ImageStore,
    ctx: PathBuf,
}

impl Lib {
    async fn new() -> Option<Self> {
        if !rustix::process::geteuid().is_root() || !Path::new("/bin/busybox").exists() {
            eprintln!("skipping: RUN steps need root and /bin/busybox (busybox-static)");
            return None;
        }
        // Steps run from this test program's file; sealing is tested in tests/sealed.rs.
        oci_rs_runtime::allow_unsealed();
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs/bin");
        std::fs::create_dir_all(&rootfs).unwrap();
        std::fs::copy("/bin/busybox", rootfs.join("busybox")).unwrap();
        for t in ["sh", "cat", "test", "echo", "ls", "id"] {
            std::os::unix::fs::symlink("busybox", rootfs.join(t)).unwrap();
        }
        let tar = dir.path().join("bb.tar");
        let made = std::process::Command::new("tar")
            .arg("-C")
            .arg(dir.path().join("rootfs"))
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(made.success());
        let store = ImageStore::open(&dir.path().join("data")).await.unwrap();
        let f = tokio::fs::File::open(&tar).await.unwrap();
        store.import(f, Some("localhost/bb:1"), &[]).await.unwrap();
        let ctx = dir.path().join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        Some(Self {
            _dir: dir,
            store,
            ctx,
        })
    }

    /// Gives this store `other`'s base image (the same blobs: each store made its own, with
    /// its own times), as another machine pulling the same base would have.
    async fn same_base_as(&self, other: &Lib) {
        let archive = self._dir.path().join("base.tar");
        let w = oci_rs_image::ArchiveWriter::create(&archive, oci_rs_image::ArchiveFormat::Oci)
            .await
            .unwrap();
        let opts = oci_rs_image::CopyOptions::default();
        other
            .store
            .save(&w, &["localhost/bb:1".to_owned()], &opts)
            .await
            .unwrap();
        self.store.load(&archive, &opts).await.unwrap();
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.ctx.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Builds the context's Dockerfile, tagged `tag`.
    async fn build(&self, tag: &str) -> Result<Built, BuildError> {
        self.build_with(tag, false).await.0
    }

    /// [`Lib::build`], with `--no-cache` when asked, and what each step did: `ran` or
    /// `cached`, in order.
    async fn build_with(
        &self,
        tag: &str,
        no_cache: bool,
    ) -> (Result<Built, BuildError>, Vec<&'static str>) {
        let opts = BuildOptions {
            tags: vec![tag.into()],
            no_cache,
            ..BuildOptions::default()
        };
        let (built, steps, _) = self.build_opts("Dockerfile", opts).await;
        (built, steps)
    }

    /// The context's `file` built with `opts`: what each step did (`ran` or `cached`) and
    /// each step's instruction, in order.
    async fn build_opts(
        &self,
        file: &str,
        opts: BuildOptions,
    ) -> (Result<Built, BuildError>, Vec<&'static str>, Vec<String>) {
        self.build_from(file, opts, BuildSources::default()).await
    }

    /// [`Lib::build_opts`] with `sources` beyond the store.
    async fn build_from(
        &self,
        file: &str,
        opts: BuildOptions,
        sources: BuildSources<'_>,
    ) -> (Result<Built, BuildError>, Vec<&'static str>, Vec<String>) {
        let text = std::fs::read_to_string(self.ctx.join(file)).unwrap();
        let steps = std::sync::Mutex::new(Vec::new());
        let lines = std::sync::Mutex::new(Vec::new());
        let built = {
            let events = Box::new(|e: BuildEvent<'_>| match e {
                BuildEvent::Cached { .. } => steps.lock().unwrap().push("cached"),
                BuildEvent::Done { .. } => steps.lock().unwrap().push("ran"),
                BuildEvent::Step { instruction, .. } => {
                    lines.lock().unwrap().push(instruction.to_owned())
                }
                _ => {}
            });
            match DockerfileBuild::new(&self.store, sources, &text, Some(&self.ctx), opts, events) {
                Ok(b) => b.build().await,
                Err(e) => Err(e),
            }
        };
        (
            built,
            steps.into_inner().unwrap(),
            lines.into_inner().unwrap(),
        )
    }

    /// `text` built as the context's Dockerfile, tagged `tag`.
    async fn build_text(&self, text: &str, tag: &str) -> Result<Built, BuildError> {
        std::fs::write(self.ctx.join(".text.Dockerfile"), text).unwrap();
        let opts = BuildOptions {
            tags: vec![tag.into()],
            ..BuildOptions::default()
        };
        self.build_opts(".text.Dockerfile", opts).await.0
    }

    /// The file `path` of image `name`, unpacked.
    async fn read(&self, name: &str, path: &str) -> String {
        let out = tempfile::tempdir_in(self.ctx.parent().unwrap()).unwrap();
        self.store.unpack(name, out.path(), false).await.unwrap();
        std::fs::read_to_string(out.path().join("rootfs").join(path)).unwrap()
    }

    fn blobs(&self) -> usize {
        let dir = self.store.layout().root().join("blobs/sha256");
        std::fs::read_dir(dir).unwrap().count()
    }

    /// The environment of image `name`.
    async fn env(&self, name: &str) -> Vec<String> {
        let run = self
            .store
            .image_for_run(name, None, None, |_| {})
            .await
            .unwrap();
        run.config.config().clone().unwrap().env().clone().unwrap()
    }
}

#[tokio::test]
async fn adversarial_globs_in_copy_and_dockerignore_finish() {
    let Some(lib) = Lib::new().await else { return };
    let stars = "*a*a*a*a*a*a*a*a*a*a*a*a*b";
    let a40 = "a".repeat(40);
    lib.write(&a40, "a\n");
    lib.write(&format!("{a40}b"), "b\n");
    lib.write(
        "Dockerfile",
        &format!(
            "FROM localhost/bb:1\nCOPY {stars} /x/\nRUN test -f /x/{a40}b && ! test -e /x/{a40}\n"
        ),
    );
    lib.build("globs:1").await.unwrap();
    // Ignored, its one match is gone: refused as any missing source, at the line.
    lib.write(".dockerignore", &format!("{stars}\n"));
    let err = lib.build("globs:2").await.unwrap_err();
    let text = oci_rs_runtime::chain(&err);
    assert!(
        text.starts_with("Dockerfile:2: COPY")
            && text.contains(&format!(
                "{stars}: no such file or directory in the build context"
            )),
        "{text}"
    );
    lib.write(
        "Dockerfile",
        &format!(
            "FROM localhost/bb:1\nCOPY . /ctx/\nRUN test -f /ctx/{a40} && ! test -e /ctx/{a40}b\n"
        ),
    );
    lib.build("globs:3").await.unwrap();
}

// This and the next recursed once per level of the input and overflowed the stack: the
// build died on a signal instead of failing (or succeeding).
#[tokio::test]
async fn a_deeply_nested_substitution_fails_clearly() {
    let Some(lib) = Lib::new().await else { return };
    let deep = format!("{}x{}", "${A:-".repeat(20_000), "}".repeat(20_000));
    lib.write(
        "Dockerfile",
        &format!("FROM localhost/bb:1\nENV B={deep}\n"),
    );
    match lib.build("deep:1").await {
        Err(BuildError::Step { place, source }) => {
            assert!(place.starts_with("Dockerfile:2: ENV B=${A:-"), "{place}");
            assert!(place.len() < 300, "the place repeats the line: {place}");
            let cause = source.to_string();
            assert!(
                cause.contains("variable substitution nested deeper than 64 levels"),
                "{cause}"
            );
        }
        other => panic!("a 20,000-deep substitution: {other:?}"),
    }
}

#[tokio::test]
async fn a_chain_of_thousands_of_stages_builds() {
    let Some(lib) = Lib::new().await else { return };
    // Each stage on the one before.
    let mut df = "FROM localhost/bb:1 AS s0\n".to_owned();
    for k in 1..3000 {
        df.push_str(&format!("FROM s{} AS s{k}\n", k - 1));
    }
    df.push_str("ENV LAST=s2999\n");
    lib.write("Dockerfile", &df);
    lib.build("chain:1").await.unwrap();
    assert!(lib.env("chain:1").await.contains(&"LAST=s2999".to_owned()));
    // A stage an ONBUILD trigger names is only known as its step runs, so built from inside
    // the step: a few such are fine, a chain of them is bounded.
    let triggers = |n: usize| {
        let mut df = "FROM localhost/bb:1 AS t0\nRUN echo 0 > /n\n".to_owned();
        for k in 1..=n {
            df.push_str(&format!(
                "FROM localhost/bb:1 AS u{k}\nONBUILD COPY --from=t{} /n /n\nFROM u{k} AS t{k}\n",
                k - 1
            ));
        }
        lib.write("Dockerfile", &df);
    };
    triggers(3);
    lib.build("triggers:1").await.unwrap();
    assert_eq!(lib.read("triggers:1", "n").await, "0\n");
    triggers(100);
    let err = lib.build("triggers:2").await.unwrap_err();
    let text = oci_rs_runtime::chain(&err);
    assert!(
        text.contains("more than 8 stages nested through ONBUILD triggers' --from"),
        "{text}"
    );
}

#[tokio::test]
async fn the_cache_reruns_only_from_the_changed_step() {
    let Some(lib) = Lib::new().await else { return };
    lib.write("a.txt", "a\n");
    lib.write("b.txt", "b\n");
    lib.write(
        "Dockerfile",
        "FROM localhost/bb:1\nCOPY a.txt /a\nRUN cat /a > /a2\nCOPY b.txt /b\nRUN cat /a /b > /ab\nCMD [\"cat\", \"/ab\"]\n",
    );
    let (first, steps) = lib.build_with("c:1", false).await;
    let first = first.unwrap();
    assert!(!steps.contains(&"cached"), "{steps:?}");
    // Nothing changed: every step cached, no blob written, the same image id.
    let blobs = lib.blobs();
    let (again, steps) = lib.build_with("c:1", false).await;
    assert_eq!(again.unwrap().id, first.id);
    assert_eq!(
        steps.iter().filter(|s| **s == "cached").count(),
        5,
        "{steps:?}"
    );
    assert_eq!(lib.blobs(), blobs);
    // A new mtime is not a change.
    let f = std::fs::File::options()
        .write(true)
        .open(lib.ctx.join("a.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    assert_eq!(lib.build("c:1").await.unwrap().id, first.id);
    // b.txt changes: the steps before its COPY are cached, that COPY and what follows run.
    lib.write("b.txt", "B\n");
    let (changed, steps) = lib.build_with("c:1", false).await;
    assert_ne!(changed.unwrap().id, first.id);
    assert_eq!(steps, ["ran", "cached", "cached", "ran", "ran", "ran"]);
    assert_eq!(lib.read("c:1", "ab").await, "a\nB\n");
    // A changed mode is a change too.
    std::fs::set_permissions(
        lib.ctx.join("a.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let (_, steps) = lib.build_with("c:1", false).await;
    assert!(!steps.contains(&"cached"), "{steps:?}");
    // no_cache runs everything; pruning the cache empties it, and the next build runs all.
    let (_, steps) = lib.build_with("c:2", true).await;
    assert!(!steps.contains(&"cached"), "{steps:?}");
    assert!(lib.store.prune_cache().unwrap() > 0);
    assert_eq!(std::fs::read_dir(lib.store.cache_dir()).unwrap().count(), 0);
    let (_, steps) = lib.build_with("c:1", false).await;
    assert!(!steps.contains(&"cached"), "{steps:?}");
}

#[tokio::test]
async fn links_are_never_followed_out_of_the_context_or_the_rootfs() {
    let Some(lib) = Lib::new().await else { return };
    let d = lib.ctx.parent().unwrap().to_path_buf();
    let outside = d.join("outside-secret");
    std::fs::write(&outside, "host secret\n").unwrap();
    // A context whose links point out of it: a source that is one is followed inside the
    // context (where there is no such file); inside a copied directory they are copied as
    // the links themselves.
    std::os::unix::fs::symlink(&outside, lib.ctx.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../outside-secret", lib.ctx.join("rel-link")).unwrap();
    std::os::unix::fs::symlink(&d, lib.ctx.join("dir-link")).unwrap();
    std::fs::create_dir(lib.ctx.join("links")).unwrap();
    std::os::unix::fs::symlink(&outside, lib.ctx.join("links/abs-link")).unwrap();
    std::os::unix::fs::symlink("../outside-secret", lib.ctx.join("links/rel-link")).unwrap();
    std::os::unix::fs::symlink(&d, lib.ctx.join("links/dir-link")).unwrap();
    // An image whose /app is a link to a host directory, /up a link climbing out, /data2 a
    // link to its own /data: a COPY through them stays inside the image's filesystem.
    let target = d.join("host-target");
    std::fs::create_dir_all(&target).unwrap();
    let evil = tempfile::tempdir_in(&d).unwrap();
    std::fs::create_dir_all(evil.path().join("data")).unwrap();
    std::os::unix::fs::symlink(&target, evil.path().join("app")).unwrap();
    std::os::unix::fs::symlink("../../../../../..", evil.path().join("up")).unwrap();
    std::os::unix::fs::symlink("/data", evil.path().join("data2")).unwrap();
    let (_, mut tar) = oci_rs_layer::export(
        evil.path(),
        Vec::new(),
        &oci_rs_layer::DiffOptions::default(),
    )
    .await
    .unwrap();
    tokio::io::AsyncWriteExt::flush(&mut tar).await.unwrap();
    lib.store
        .import(&tar[..], Some("localhost/evil:1"), &[])
        .await
        .unwrap();
    lib.write("payload", "payload\n");
    // `dir-link/outside-secret` resolves inside the context, where there is no such file.
    lib.write(
        "Dockerfile",
        "FROM localhost/evil:1\nCOPY dir-link/outside-secret /x\n",
    );
    let err = oci_rs_runtime::chain(&lib.build("links:1").await.unwrap_err());
    assert!(
        err.contains("dir-link/outside-secret: no such file"),
        "{err}"
    );
    for src in ["abs-link", "rel-link"] {
        let text = format!("FROM localhost/evil:1\nCOPY {src} /x\n");
        let err = oci_rs_runtime::chain(&lib.build_text(&text, "links:1").await.unwrap_err());
        assert!(err.contains(&format!("{src}: no such file")), "{err}");
    }
    // /app resolves inside the rootfs to a directory that is not there: made there (as
    // BuildKit makes a destination through a link), and the host's directory of that name
    // is untouched.
    lib.write("Dockerfile", "FROM localhost/evil:1\nCOPY payload /app/\n");
    lib.build("links:1").await.unwrap();
    assert!(
        std::fs::read_dir(&target).unwrap().next().is_none(),
        "written through /app on the host"
    );
    let inside = format!("{}/payload", target.display());
    assert_eq!(lib.read("links:1", &inside[1..]).await, "payload\n");
    lib.write(
        "Dockerfile",
        "FROM localhost/evil:1\nCOPY links /links/\nCOPY payload /up/tmp/escaped\nCOPY payload /data2/\n",
    );
    lib.build("links:1").await.unwrap();
    assert!(!Path::new("/tmp/escaped").exists());
    let out = tempfile::tempdir_in(&d).unwrap();
    lib.store
        .unpack("links:1", out.path(), false)
        .await
        .unwrap();
    let rootfs = out.path().join("rootfs");
    let link = |name: &str| std::fs::read_link(rootfs.join("links").join(name)).unwrap();
    assert_eq!(link("abs-link"), outside);
    assert_eq!(link("rel-link"), Path::new("../outside-secret"));
    assert_eq!(link("dir-link"), d);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("tmp/escaped")).unwrap(),
        "payload\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("data/payload")).unwrap(),
        "payload\n"
    );
}

#[tokio::test]
async fn multi_stage_heredocs_dockerignore_and_build_args() {
    let Some(lib) = Lib::new().await else { return };
    lib.write("keep.md", "keep\n");
    lib.write("drop.md", "drop\n");
    lib.write("secret/key", "s3cret\n");
    lib.write("secret/public", "pub\n");
    lib.write(
        ".dockerignore",
        "# docker's rules\n*.md\n!keep.md\nsecret\n!secret/public\n",
    );
    lib.write(
        "build.Dockerfile",
        r#"ARG BASE=localhost/bb:1
FROM ${BASE} AS builder
ARG VERSION
RUN mkdir /out && echo "v${VERSION:-none}" > /out/version
RUN <<EOF
echo "script ${VERSION}" > /out/script
EOF
RUN cat <<EOT > /out/inline && echo more >> /out/inline
quoted $VERSION
EOT
RUN <<EOF
#!/bin/sh
echo "shebang $0 $VERSION" > /out/shebang
EOF
COPY --chmod=0755 <<-"EOT" /out/run.sh
	#!/bin/sh
	echo run $VERSION
	EOT

FROM builder AS never
RUN exit 3

FROM ${BASE} AS final
ARG VERSION
COPY --from=builder /out/ /usr/local/
COPY . /ctx/
RUN echo "${VERSION:+set} ${UNSET:-default}" > /args
"#,
    );
    let opts = |target: Option<&str>, tag: &str| BuildOptions {
        tags: vec![tag.into()],
        build_args: [("VERSION".to_owned(), "7".to_owned())]
            .into_iter()
            .filter(|_| target.is_none())
            .collect(),
        target: target.map(str::to_owned),
        file_label: "build.Dockerfile".into(),
        ..BuildOptions::default()
    };
    let (built, _, lines) = lib.build_opts("build.Dockerfile", opts(None, "ms:1")).await;
    built.unwrap();
    // The stage nothing needs is not built.
    assert!(!lines.iter().any(|l| l.contains("exit 3")), "{lines:?}");
    let mut got = String::new();
    for p in [
        "usr/local/version",
        "usr/local/script",
        "usr/local/inline",
        "usr/local/shebang",
        "args",
    ] {
        got.push_str(&lib.read("ms:1", p).await);
    }
    assert_eq!(
        got,
        "v7\nscript 7\nquoted 7\nmore\nshebang /dev/pipes/EOF 7\nset default\n"
    );
    assert_eq!(
        lib.read("ms:1", "usr/local/run.sh").await,
        "#!/bin/sh\necho run $VERSION\n"
    );
    // The context as the .dockerignore leaves it.
    let out = tempfile::tempdir_in(lib.ctx.parent().unwrap()).unwrap();
    lib.store.unpack("ms:1", out.path(), false).await.unwrap();
    let ls = |p: &str| {
        let mut v: Vec<String> = std::fs::read_dir(out.path().join("rootfs").join(p))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        ls("ctx"),
        [".dockerignore", "build.Dockerfile", "keep.md", "secret"]
    );
    assert_eq!(ls("ctx/secret"), ["public"]);
    // A target builds that stage (and what it needs) only.
    let (built, _, lines) = lib
        .build_opts("build.Dockerfile", opts(Some("builder"), "ms:b"))
        .await;
    built.unwrap();
    assert!(
        !lines.iter().any(|l| l.contains("COPY . /ctx/")),
        "{lines:?}"
    );
    assert_eq!(lib.read("ms:b", "out/version").await, "vnone\n");
    let (built, _, _) = lib
        .build_opts("build.Dockerfile", opts(Some("never"), "ms:n"))
        .await;
    assert!(
        matches!(built, Err(BuildError::RunFailed { code: 3, .. })),
        "{built:?}"
    );
}

#[tokio::test]
async fn bad_dockerfiles_and_contexts_are_refused_clearly() {
    let Some(lib) = Lib::new().await else { return };
    let cases: &[(&str, &str)] = &[
        (
            "FROM localhost/bb:1\nRUN true\n  BOGUS x\n",
            "Dockerfile:3:3: unknown instruction \"BOGUS\"",
        ),
        (
            "FROM localhost/bb:1\nCOPY --frm=x a /\n",
            "Dockerfile:2: COPY a /: unknown flag --frm",
        ),
        (
            "FROM localhost/bb:1\nCOPY ../outside /x\n",
            "\"../outside\" is outside the build context",
        ),
        (
            "FROM localhost/bb:1\nCOPY missing /x\n",
            "missing: no such file or directory in the build context",
        ),
        (
            "FROM localhost/bb:1\nADD --checksum=md5:00 http://127.0.0.1:9/f /f\n",
            "--checksum=md5:00: expected sha256:<64 hex digits>",
        ),
        (
            "FROM localhost/bb:1\nRUN <<EOF\nno end\n",
            "Dockerfile:2:1: the heredoc EOF is not terminated",
        ),
        ("RUN true\n", "the first instruction must be FROM"),
        ("FROM localhost/bb:1\nENV A=${B:?unset}\n", "B: unset"),
        ("FROM localhost/bb:1 AS a\nCOPY --from=a /x /y\n", "a cycle"),
        ("FROM localhost/bb:1\nEXPOSE 99999\n", "invalid port"),
    ];
    for (text, want) in cases {
        lib.write("Dockerfile", text);
        let err = lib.build("bad:1").await.unwrap_err();
        let chain = oci_rs_runtime::chain(&err);
        assert!(chain.contains(want), "{text:?}: {chain}");
    }
    // Nothing was tagged, and no build snapshot is left behind by the failures.
    assert!(lib.store.find("bad:1").await.is_err());
    assert!(lib.store.snapshots().list().unwrap().is_empty());
}

/// A `Dockerfile` or `.dockerignore` that is a link out of the context is resolved inside
/// it (as if the context were `/`), as BuildKit reads them: a host file is never read, and
/// no error echoes its text. A Dockerfile line that is no instruction is named by a short
/// token, never echoed whole.
#[tokio::test]
async fn the_dockerfile_and_dockerignore_never_lead_out_of_the_context() {
    let Some(lib) = Lib::new().await else { return };
    let d = lib.ctx.parent().unwrap().to_path_buf();
    let shadow = d.join("shadow");
    std::fs::write(&shadow, "root:$6$secrethash:19000:0:99999:7:::\n").unwrap();
    let dockerfile = lib.ctx.join("Dockerfile");
    let read = |file: Option<&Path>| {
        oci_rs_runtime::read_dockerfile(&lib.ctx, file, false)
            .map_err(|e| oci_rs_runtime::chain(&e))
    };
    // An absolute and a relative link out: no such file inside the context, named by
    // default or by its path inside the context.
    for target in [shadow.clone(), PathBuf::from("../shadow")] {
        let _ = std::fs::remove_file(&dockerfile);
        std::os::unix::fs::symlink(&target, &dockerfile).unwrap();
        for file in [None, Some(dockerfile.as_path())] {
            let err = read(file).unwrap_err();
            assert!(!err.contains("secrethash"), "{target:?}: {err}");
            assert!(err.contains("no Dockerfile in the build context"), "{err}");
        }
    }
    // An absolute link names the context's own file of that path.
    lib.write("etc/shadow", "FROM localhost/bb:1\nLABEL via=link\n");
    std::fs::remove_file(&dockerfile).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", &dockerfile).unwrap();
    assert_eq!(
        read(None).unwrap().0,
        "FROM localhost/bb:1\nLABEL via=link\n"
    );
    // A file outside the context is the caller's own choice and is read; its first line is
    // still not echoed by the build's error.
    let (text, _) = read(Some(&shadow)).unwrap();
    let err = lib.build_text(&text, "x:1").await.unwrap_err();
    let err = oci_rs_runtime::chain(&err);
    assert!(!err.contains("secrethash"), "{err}");
    assert!(err.contains("unknown instruction \"root…\""), "{err}");
    // A .dockerignore linking out: the host file (which would exclude `payload`) is not read.
    let ignore = d.join("outside-ignore");
    std::fs::write(&ignore, "payload\n").unwrap();
    lib.write("payload", "payload\n");
    std::os::unix::fs::symlink(&ignore, lib.ctx.join(".dockerignore")).unwrap();
    let copy = "FROM localhost/bb:1\nCOPY payload /payload\n";
    lib.build_text(copy, "ignored:1").await.unwrap();
    // The same link resolved inside the context finds the context's own file.
    std::fs::remove_file(lib.ctx.join(".dockerignore")).unwrap();
    std::os::unix::fs::symlink("/inner-ignore", lib.ctx.join(".dockerignore")).unwrap();
    lib.write("inner-ignore", "payload\n");
    let err = lib.build_text(copy, "ignored:1").await.unwrap_err();
    let err = oci_rs_runtime::chain(&err);
    assert!(err.contains("payload: no such file"), "{err}");
    // Unknown instructions: a short token of the first word, never the rest of the line.
    std::fs::remove_file(lib.ctx.join(".dockerignore")).unwrap();
    for (line, shown, hidden) in [
        (
            "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
            "unknown instruction \"AWS_SECRET_ACCESS_KEY…\"",
            "wJalr",
        ),
        (
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefTAILSECRET more",
            "unknown instruction \"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef…\"",
            "TAILSECRET",
        ),
        (
            "$6$secrethash$tail",
            "unknown instruction (the line does not start with a word)",
            "secrethash",
        ),
    ] {
        let text = format!("FROM localhost/bb:1\n{line}\n");
        let err = lib.build_text(&text, "x:1").await.unwrap_err();
        let err = oci_rs_runtime::chain(&err);
        assert!(err.contains(shown), "{line}: {err}");
        assert!(!err.contains(hidden), "{line}: {err}");
    }
}

/// The image's configuration of `name` in `lib`'s store.
async fn config(lib: &Lib, name: &str) -> oci_spec::image::ImageConfiguration {
    lib.store
        .image_for_run(name, None, None, |_| {})
        .await
        .unwrap()
        .config
}

/// The image configuration of `name` as JSON (with what oci-spec does not model).
async fn config_json(lib: &Lib, name: &str) -> serde_json::Value {
    let run = lib
        .store
        .image_for_run(name, None, None, |_| {})
        .await
        .unwrap();
    let desc = run.manifest.as_image().unwrap().config().clone();
    oci_rs_image::read_config_json(lib.store.layout(), &desc)
        .await
        .unwrap()
}

#[tokio::test]
async fn onbuild_triggers_run_when_the_image_is_a_base() {
    let Some(lib) = Lib::new().await else { return };
    lib.write("payload", "payload\n");
    let base = "FROM localhost/bb:1\nONBUILD COPY payload /from-child\nONBUILD RUN echo triggered > /onbuild\n";
    lib.build_text(base, "base:1").await.unwrap();
    assert_eq!(
        config_json(&lib, "base:1").await["config"]["OnBuild"],
        serde_json::json!(["COPY payload /from-child", "RUN echo triggered > /onbuild"])
    );
    // The child's build, with its own context: the triggers run first, in it.
    lib.write("payload", "child's\n");
    lib.build_text("FROM base:1\nENV CHILD=1\n", "child:1")
        .await
        .unwrap();
    assert_eq!(lib.read("child:1", "onbuild").await, "triggered\n");
    assert_eq!(lib.read("child:1", "from-child").await, "child's\n");
    // Triggers are not inherited.
    let child = config_json(&lib, "child:1").await;
    assert!(child["config"].get("OnBuild").is_none(), "{child}");
}

#[tokio::test]
async fn a_cache_entry_survives_image_removal_until_its_prune() {
    let Some(lib) = Lib::new().await else { return };
    let text = "FROM localhost/bb:1\nRUN echo x > /x\n";
    lib.build_text(text, "g:1").await.unwrap();
    let layers = config(&lib, "g:1").await.rootfs().diff_ids().clone();
    let blobs = lib.blobs();
    lib.store.remove(&["g:1".to_owned()], false).await.unwrap();
    lib.store.prune(false).await.unwrap();
    // Only the config and the manifest went: the RUN step's layer is kept for the cache.
    assert_eq!(lib.blobs(), blobs - 2);
    std::fs::write(lib.ctx.join("Dockerfile"), text).unwrap();
    let (built, steps) = lib.build_with("g:1", false).await;
    built.unwrap();
    assert_eq!(config(&lib, "g:1").await.rootfs().diff_ids(), &layers);
    assert_eq!(
        steps.iter().filter(|s| **s == "cached").count(),
        1,
        "{steps:?}"
    );
    assert_eq!(lib.read("g:1", "x").await, "x\n");
    // Once the cache is pruned, gc takes the layer.
    lib.store.prune_cache().unwrap();
    lib.store.remove(&["g:1".to_owned()], false).await.unwrap();
    lib.store.gc().await.unwrap();
    assert_eq!(lib.blobs(), blobs - 3);
}

#[tokio::test]
async fn a_copy_onto_a_changed_parent_reuses_its_layer_when_sound() {
    let Some(lib) = Lib::new().await else { return };
    lib.write("a.txt", "a\n");
    lib.write("assets/x", "x\n");
    lib.write("assets/sub/y", "y\n");
    let text = "FROM localhost/bb:1\nCOPY a.txt /a\nCOPY assets/ /assets/\nCOPY a.txt /assets/a\n";
    lib.build_text(text, "l:1").await.unwrap();
    let before = config(&lib, "l:1").await.rootfs().diff_ids().clone();
    lib.write("a.txt", "changed\n");
    lib.build_text(text, "l:1").await.unwrap();
    let after = config(&lib, "l:1").await.rootfs().diff_ids().clone();
    // The first COPY changed; the assets layer onto a new /assets is the same layer; the
    // last COPY, whose file changed, is not.
    assert_ne!(before[1], after[1]);
    assert_eq!(before[2], after[2]);
    assert_ne!(before[3], after[3]);
    let mut all = String::new();
    for p in ["a", "assets/x", "assets/sub/y", "assets/a"] {
        all.push_str(&lib.read("l:1", p).await);
    }
    assert_eq!(all, "changed\nx\ny\nchanged\n");
    // Onto a parent where a copied path exists already the layer is made again: here /assets
    // holds x as a directory, which the COPY replaces.
    let text = "FROM localhost/bb:1\nRUN mkdir -p /assets/x/inner\nCOPY assets/ /assets/\n";
    lib.build_text(text, "l:1").await.unwrap();
    assert_eq!(lib.read("l:1", "assets/x").await, "x\n");
    // `COPY --link` (BuildKit's flag for exactly this): the same layer onto another parent.
    let text = "FROM localhost/bb:1\nCOPY a.txt /a\nCOPY --link assets/ /assets/\n";
    lib.build_text(text, "l:2").await.unwrap();
    let before = config(&lib, "l:2").await.rootfs().diff_ids().clone();
    lib.write("a.txt", "changed again\n");
    lib.build_text(text, "l:2").await.unwrap();
    let after = config(&lib, "l:2").await.rootfs().diff_ids().clone();
    assert_ne!(before[1], after[1]);
    assert_eq!(before[2], after[2], "the --link layer is reused");
    assert_eq!(lib.read("l:2", "assets/sub/y").await, "y\n");
}

/// One stage with every config instruction: the RUN sees the ENV and WORKDIR, the COPYs
/// land where the WORKDIR says, and the image's config and history say what the file says.
#[tokio::test]
async fn a_single_stage_build_has_the_config_and_history_it_describes() {
    let Some(lib) = Lib::new().await else { return };
    lib.write("hello.txt", "hello\n");
    lib.write("src/a/b.txt", "b\n");
    let text = r#"# a comment
FROM localhost/bb:1
ENV GREETING="hello there" \
    OTHER=x\ y
WORKDIR /app
COPY hello.txt .
COPY src/ ./src/
RUN echo "$GREETING from $(id -u)" > /app/out \
  # a comment inside a continuation
  && test -f /app/src/a/b.txt
USER 1000:1000
EXPOSE 8080 53/udp
LABEL org.example.name="my app" version=1
STOPSIGNAL SIGINT
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/out; pwd; id -u; echo $OTHER"]
"#;
    let built = lib.build_text(text, "app:1").await.unwrap();
    assert_eq!(lib.read("app:1", "app/out").await, "hello there from 0\n");
    assert_eq!(lib.read("app:1", "app/hello.txt").await, "hello\n");
    assert_eq!(lib.read("app:1", "app/src/a/b.txt").await, "b\n");
    let doc = config_json(&lib, "app:1").await;
    let cfg = &doc["config"];
    assert_eq!(cfg["WorkingDir"], "/app");
    assert_eq!(cfg["User"], "1000:1000");
    assert_eq!(cfg["StopSignal"], "SIGINT");
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(
        cfg["Cmd"],
        serde_json::json!(["cat /app/out; pwd; id -u; echo $OTHER"])
    );
    assert_eq!(cfg["Labels"]["org.example.name"], "my app");
    assert_eq!(cfg["Labels"]["version"], "1");
    assert!(cfg["ExposedPorts"].get("53/udp").is_some(), "{cfg}");
    assert!(cfg["ExposedPorts"].get("8080/tcp").is_some(), "{cfg}");
    let env = cfg["Env"].as_array().unwrap();
    for want in ["GREETING=hello there", "OTHER=x y"] {
        assert!(env.contains(&serde_json::json!(want)), "{want}: {env:?}");
    }
    // History: a row per step, newest first, config steps without a layer.
    let history = lib.store.history("app:1").await.unwrap();
    assert_eq!(history.len(), 12, "{history:?}");
    assert_eq!(
        history[0].id.as_deref(),
        Some(built.id.to_string().as_str())
    );
    assert!(
        history[0].created_by.contains("CMD [\"cat /app/out"),
        "{history:?}"
    );
    let copy = history
        .iter()
        .find(|h| h.created_by.contains("COPY hello.txt ."))
        .unwrap();
    assert!(copy.size > 0, "{copy:?}");
    let user = history
        .iter()
        .find(|h| h.created_by.contains("USER 1000:1000"))
        .unwrap();
    assert_eq!(user.size, 0, "{user:?}");
}

/// Serves `body` over HTTP on a loopback port for `n` requests; returns the URL.
fn serve(body: Vec<u8>, n: usize) -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/files/tool.bin?x=1", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming().take(n) {
            let mut s = s.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    url
}

/// `ADD` of local tars (plain and gzip) unpacks them, of a plain file copies it, of a URL
/// fetches it through the program's [`oci_rs_image::UrlSource`] (here the registry client,
/// as `oci` does) and checks `--checksum`; `COPY --from` an image; `SHELL`, `HEALTHCHECK`,
/// `MAINTAINER` and labels from the options reach the image.
#[tokio::test]
async fn add_unpacks_archives_and_fetches_urls_with_a_checksum() {
    let Some(lib) = Lib::new().await else { return };
    let top = lib.ctx.parent().unwrap();
    std::fs::create_dir_all(top.join("arch/top")).unwrap();
    std::fs::write(top.join("arch/top/inner.txt"), "inside\n").unwrap();
    let tar = lib.ctx.join("files.tar");
    for (program, args) in [
        (
            "tar",
            vec![
                "-C",
                top.join("arch").to_str().unwrap(),
                "-cf",
                tar.to_str().unwrap(),
                ".",
            ],
        ),
        ("gzip", vec!["-k", tar.to_str().unwrap()]),
    ] {
        let st = std::process::Command::new(program)
            .args(&args)
            .status()
            .unwrap();
        assert!(st.success(), "{program}");
    }
    lib.write("plain.txt", "not an archive\n");
    let body = b"downloaded bytes\n".to_vec();
    let sum = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(&body))
    };
    let url = serve(body, 3);
    lib.write(
        "Dockerfile",
        &format!(
            "FROM localhost/bb:1\nADD files.tar /t/\nADD files.tar.gz /g\nADD plain.txt /p/\n\
             ARG SUM=sha256:{sum}\nADD --checksum=${{SUM}} {url} /dl/\nCOPY --from=localhost/bb:1 /bin/busybox /copied-busybox\n\
             SHELL [\"/bin/sh\", \"-c\", \"echo shell-was-used > /shell && exec /bin/sh -c \\\"$0\\\"\"]\n\
             RUN echo run > /r\nHEALTHCHECK --interval=5s --retries=2 CMD echo ok\nMAINTAINER someone\n"
        ),
    );
    let client = oci_rs_registry_client::Client::new().unwrap();
    let sources = || BuildSources {
        urls: Some(&client),
        ..BuildSources::default()
    };
    let opts = BuildOptions {
        tags: vec!["add:1".into()],
        labels: [("from.options".to_owned(), "yes".to_owned())].into(),
        ..BuildOptions::default()
    };
    lib.build_from("Dockerfile", opts, sources())
        .await
        .0
        .unwrap();
    for (path, want) in [
        ("t/top/inner.txt", "inside\n"),
        ("g/top/inner.txt", "inside\n"),
        ("p/plain.txt", "not an archive\n"),
        ("dl/tool.bin", "downloaded bytes\n"),
        ("r", "run\n"),
        ("shell", "shell-was-used\n"),
    ] {
        assert_eq!(lib.read("add:1", path).await, want, "{path}");
    }
    let out = tempfile::tempdir_in(top).unwrap();
    lib.store.unpack("add:1", out.path(), false).await.unwrap();
    let mode = |p: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(out.path().join("rootfs").join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        mode("dl/tool.bin"),
        0o600,
        "a URL's file is 0600, as docker's"
    );
    assert_eq!(mode("copied-busybox"), 0o755);
    let doc = config_json(&lib, "add:1").await;
    assert_eq!(doc["config"]["Labels"]["from.options"], "yes");
    assert_eq!(
        doc["config"]["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "echo ok"])
    );
    assert_eq!(doc["config"]["Healthcheck"]["Interval"], 5_000_000_000u64);
    assert_eq!(doc["config"]["Healthcheck"]["Retries"], 2);
    assert_eq!(doc["author"], "someone");
    // A wrong checksum fails, naming both digests.
    lib.write(
        "Dockerfile",
        &format!(
            "FROM localhost/bb:1\nADD --checksum=sha256:{} {url} /dl/\n",
            "0".repeat(64)
        ),
    );
    let opts = BuildOptions {
        no_cache: true,
        ..BuildOptions::default()
    };
    let err = lib
        .build_from("Dockerfile", opts, sources())
        .await
        .0
        .unwrap_err();
    let err = oci_rs_runtime::chain(&err);
    assert!(
        err.contains(&format!("checksum sha256:{sum}, expected sha256:0000")),
        "{err}"
    );
    // Without --checksum the URL is fetched as BuildKit fetches it.
    lib.write(
        "Dockerfile",
        &format!("FROM localhost/bb:1\nADD {url} /nochk/\n"),
    );
    let opts = BuildOptions {
        tags: vec!["nochk:1".into()],
        ..BuildOptions::default()
    };
    lib.build_from("Dockerfile", opts, sources())
        .await
        .0
        .unwrap();
    assert_eq!(
        lib.read("nochk:1", "nochk/tool.bin").await,
        "downloaded bytes\n"
    );
    // Without a URL source, ADD of a URL is refused, not fetched some other way.
    lib.write(
        "Dockerfile",
        &format!("FROM localhost/bb:1\nADD {url} /dl/\n"),
    );
    assert!(lib.build("nourl:1").await.is_err());
}

/// Four builds at once, each through a store of its own on one data directory (as four
/// programs would): each image is whole, and the cache they leave is too, so a fifth build
/// takes every step from it.
#[tokio::test]
async fn concurrent_builds_share_one_store_and_cache() {
    let Some(lib) = Lib::new().await else { return };
    lib.write("f", "f\n");
    lib.write(
        "Dockerfile",
        "FROM localhost/bb:1\nCOPY f /f\nRUN cat /f /f > /ff\nRUN echo $$ > /r\n",
    );
    let data = lib.store.layout().root().parent().unwrap().to_owned();
    let text = std::fs::read_to_string(lib.ctx.join("Dockerfile")).unwrap();
    std::thread::scope(|s| {
        for k in 0..4 {
            let (data, text, ctx) = (&data, &text, &lib.ctx);
            s.spawn(move || {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(async {
                    let store = ImageStore::open(data).await.unwrap();
                    let opts = BuildOptions {
                        tags: vec![format!("par:{k}")],
                        ..BuildOptions::default()
                    };
                    DockerfileBuild::new(
                        &store,
                        BuildSources::default(),
                        text,
                        Some(ctx),
                        opts,
                        Box::new(|_| {}),
                    )
                    .unwrap()
                    .build()
                    .await
                    .unwrap();
                });
            });
        }
    });
    for k in 0..4 {
        assert_eq!(lib.read(&format!("par:{k}"), "ff").await, "f\nf\n");
    }
    let (built, steps) = lib.build_with("par:5", false).await;
    built.unwrap();
    // FROM, then COPY and both RUNs from the cache.
    assert_eq!(steps, ["ran", "cached", "cached", "cached"]);
}

/// A stage whose base sets no PATH gets BuildKit's default, in its RUN steps and in the
/// image's config (issue 31, defect 1); a base's own PATH is kept.
#[tokio::test]
async fn a_base_without_path_gets_buildkits_default() {
    let Some(lib) = Lib::new().await else { return };
    const DEFAULT: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    lib.write("f", "f\n");
    lib.build_text("FROM scratch\nCOPY f /f\n", "scratchy:1")
        .await
        .unwrap();
    assert_eq!(lib.env("scratchy:1").await, [DEFAULT]);
    // localhost/bb:1 was imported with no Env at all.
    lib.build_text("FROM localhost/bb:1\nRUN echo $PATH > /p\n", "bbpath:1")
        .await
        .unwrap();
    assert_eq!(lib.env("bbpath:1").await, [DEFAULT]);
    assert_eq!(
        lib.read("bbpath:1", "p").await,
        format!("{}\n", &DEFAULT["PATH=".len()..])
    );
    lib.build_text(
        "FROM localhost/bb:1\nENV PATH=/opt/bin:/bin\nFROM bbpath:1\nENV PATH=/mine:/bin\nRUN echo $PATH > /p\n",
        "own:1",
    )
    .await
    .unwrap();
    assert_eq!(lib.env("own:1").await, ["PATH=/mine:/bin"]);
    assert_eq!(lib.read("own:1", "p").await, "/mine:/bin\n");
}

/// BuildKit's readings of COPY and ADD that differed here (issue 31 defects 5, 7 and 8, and
/// what BuildKit's own tests check): the JSON form keeps names with blanks whole (and still
/// expands variables); a heredoc delimiter may hold a dot; `--chmod` and `--checksum` take
/// variables; an empty destination is the WORKDIR (`testEmptyDestDir`). And what BuildKit
/// refuses: a variable in `--from` (`testDockerfileCopyFromArgs`: issue 31's defect 7 asked
/// for the opposite, BuildKit decides) or in a mount's `from`, `--checksum` for a source that
/// is not a URL, and a lone `!` in `.dockerignore` (`testDockerignoreInvalid`).
#[tokio::test]
async fn copy_and_add_words_flags_and_refusals_as_buildkit_reads_them() {
    let Some(lib) = Lib::new().await else { return };
    lib.write("a b.txt", "spaced\n");
    lib.write("plain.txt", "plain\n");
    let text = r#"FROM localhost/bb:1 AS first
RUN echo one > /one
FROM localhost/bb:1
ARG NAME=plain.txt
ARG MODE=0741
ENV empty=""
COPY ["a b.txt", "/dst/"]
COPY ["${NAME}", "/dst/"]
COPY --from=first /one /one
COPY --chmod=${MODE} plain.txt /moded
WORKDIR /w
COPY plain.txt $empty
COPY <<robots.txt <<humans.txt /docs/
User-agent: *
robots.txt
humans
humans.txt
"#;
    lib.build_text(text, "copies:1").await.unwrap();
    for (path, want) in [
        ("dst/a b.txt", "spaced\n"),
        ("dst/plain.txt", "plain\n"),
        ("one", "one\n"),
        ("w/plain.txt", "plain\n"),
        ("docs/robots.txt", "User-agent: *\n"),
        ("docs/humans.txt", "humans\n"),
    ] {
        assert_eq!(lib.read("copies:1", path).await, want, "{path}");
    }
    let out = tempfile::tempdir_in(lib.ctx.parent().unwrap()).unwrap();
    lib.store
        .unpack("copies:1", out.path(), false)
        .await
        .unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(out.path().join("rootfs/moded"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o7777, 0o741);

    for (text, want) in [
        (
            "ARG SRC=first\nFROM localhost/bb:1 AS first\nFROM localhost/bb:1\nCOPY --from=$SRC /bin/sh /x\n",
            "variable expansion is not supported for --from",
        ),
        (
            "FROM localhost/bb:1 AS first\nFROM localhost/bb:1\nARG V=first\n\
             RUN --mount=type=bind,from=${V},target=/m true\n",
            "'from' doesn't support variable expansion",
        ),
        (
            "FROM localhost/bb:1\nADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 plain.txt /p\n",
            "checksum requires HTTP(S) or Git sources",
        ),
    ] {
        let err = lib.build_text(text, "refused:1").await.unwrap_err();
        let err = oci_rs_runtime::chain(&err);
        assert!(err.contains(want), "{text}: {err}");
    }
    lib.write(".dockerignore", "*.tmp\n!\n");
    let err = lib
        .build_text("FROM localhost/bb:1\n", "refused:1")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("illegal exclusion pattern: \"!\""),
        "{err}"
    );
    std::fs::remove_file(lib.ctx.join(".dockerignore")).unwrap();
}

/// A build's input stream as docker's `build -` reads it (issue 31 defect 13): a tar, plain
/// or compressed (gzip, xz, bzip2), is a context; anything else a Dockerfile alone, which
/// builds without one.
#[tokio::test]
async fn a_streamed_input_is_a_context_archive_or_a_dockerfile() {
    use oci_rs_runtime::StreamedContext;
    let Some(lib) = Lib::new().await else { return };
    let scratch = lib.ctx.parent().unwrap();
    lib.write("Dockerfile", "FROM localhost/bb:1\nCOPY f /f\n");
    lib.write("f", "from the tar\n");
    let tar = scratch.join("ctx.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&lib.ctx)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let gz = std::process::Command::new("gzip")
        .arg("-c")
        .arg(&tar)
        .output()
        .unwrap()
        .stdout;
    let mut streams = vec![std::fs::read(&tar).unwrap(), gz];
    // xz and bzip2 too, as docker's daemon decompresses a context.
    if have(&["xz", "bzip2"]) {
        for program in ["xz", "bzip2"] {
            streams.push(filter(program, &["-c"], &streams[0]));
        }
    }
    for bytes in streams {
        match StreamedContext::read(&bytes[..], scratch).await.unwrap() {
            StreamedContext::Context(dir) => {
                assert_eq!(
                    std::fs::read_to_string(dir.path().join("f")).unwrap(),
                    "from the tar\n"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    let text = "FROM localhost/bb:1\nRUN echo alone > /a\n";
    let StreamedContext::Dockerfile(read) = StreamedContext::read(text.as_bytes(), scratch)
        .await
        .unwrap()
    else {
        panic!("a Dockerfile read as a context");
    };
    assert_eq!(read, text);
    let built = DockerfileBuild::new(
        &lib.store,
        BuildSources::default(),
        &read,
        None,
        BuildOptions {
            tags: vec!["alone:1".into()],
            ..BuildOptions::default()
        },
        Box::new(|_| {}),
    )
    .unwrap()
    .build()
    .await;
    built.unwrap();
    assert_eq!(lib.read("alone:1", "a").await, "alone\n");
    // Too big, or not text: refused.
    let big = vec![b'#'; (oci_rs_runtime::MAX_DOCKERFILE + 1) as usize];
    assert!(StreamedContext::read(&big[..], scratch).await.is_err());
    assert!(StreamedContext::read(&[0xff, 0xfe, 0x00][..], scratch)
        .await
        .is_err());
}

/// The image `name` of `lib`'s store unpacked: the directory (removed when dropped) and the
/// rootfs in it.
async fn unpacked(lib: &Lib, name: &str) -> (tempfile::TempDir, PathBuf) {
    let out = tempfile::tempdir_in(lib.ctx.parent().unwrap()).unwrap();
    lib.store.unpack(name, out.path(), false).await.unwrap();
    let rootfs = out.path().join("rootfs");
    (out, rootfs)
}

/// A source that is a symlink is copied as what it leads to, followed inside its tree as
/// BuildKit follows it (issue 31 defect 2): a stage's `/bin/sh -> busybox` gives the program,
/// a context link the file or directory it names (links inside a copied directory stay
/// links), and a link that climbs out of the context or names a host path finds the context's
/// file of that name, or nothing: never the host's.
#[tokio::test]
async fn a_source_that_is_a_link_is_copied_as_what_it_leads_to() {
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
    let Some(lib) = Lib::new().await else { return };
    let d = lib.ctx.parent().unwrap().to_path_buf();
    std::fs::write(d.join("outside-secret"), "host secret\n").unwrap();
    let c = &lib.ctx;
    lib.write("real.txt", "real\n");
    std::fs::set_permissions(c.join("real.txt"), PermissionsExt::from_mode(0o640)).unwrap();
    symlink("real.txt", c.join("link.txt")).unwrap();
    symlink("link.txt", c.join("chain")).unwrap();
    symlink("/real.txt", c.join("abs-link")).unwrap();
    // `..` stops at the context's root: this is the context's own outside-secret.
    symlink("../../outside-secret", c.join("up-link")).unwrap();
    lib.write("outside-secret", "the context's own\n");
    lib.write("realdir/inner.txt", "inner\n");
    symlink("inner.txt", c.join("realdir/inner-link")).unwrap();
    symlink("realdir", c.join("dir-link")).unwrap();
    symlink(d.join("outside-secret"), c.join("host-link")).unwrap();
    let text = "FROM localhost/bb:1 AS st
RUN busybox ln -s /bin/busybox /abs-sh && busybox ln -s ../../../../../../../../../.. /up
FROM localhost/bb:1
COPY --from=st /bin/sh /x
COPY --from=st /abs-sh /up/bin/sh /from-stage/
COPY link.txt /l
COPY chain abs-link up-link /links/
COPY dir-link /d/
COPY realdir/inner-link /il
";
    lib.build_text(text, "follow:1").await.unwrap();
    let (_out, r) = unpacked(&lib, "follow:1").await;
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let bb_mode = std::fs::metadata("/bin/busybox").unwrap().mode() & 0o7777;
    for p in ["x", "from-stage/abs-sh", "from-stage/sh"] {
        let m = std::fs::symlink_metadata(r.join(p)).unwrap();
        assert!(m.is_file(), "{p}: {m:?}");
        assert_eq!(m.mode() & 0o7777, bb_mode, "{p}");
        assert!(std::fs::read(r.join(p)).unwrap() == busybox, "{p}");
    }
    for (p, want, mode) in [
        ("l", "real\n", 0o640),
        ("links/chain", "real\n", 0o640),
        ("links/abs-link", "real\n", 0o640),
        ("links/up-link", "the context's own\n", 0o644),
        ("d/inner.txt", "inner\n", 0o644),
        ("il", "inner\n", 0o644),
    ] {
        let m = std::fs::symlink_metadata(r.join(p)).unwrap();
        assert!(m.is_file(), "{p}: {m:?}");
        assert_eq!(m.mode() & 0o7777, mode, "{p}");
        assert_eq!(std::fs::read_to_string(r.join(p)).unwrap(), want, "{p}");
    }
    assert_eq!(
        std::fs::read_link(r.join("d/inner-link")).unwrap(),
        Path::new("inner.txt")
    );
    // A link to a host path names that path inside the context (or the stage), where there
    // is none.
    let stage = format!(
        "FROM localhost/bb:1 AS st\nRUN busybox ln -s {} /out\nFROM localhost/bb:1\nCOPY --from=st /out /o\n",
        d.join("outside-secret").display()
    );
    for (text, src) in [
        ("FROM localhost/bb:1\nCOPY host-link /h\n", "host-link"),
        (stage.as_str(), "/out"),
    ] {
        let err = oci_rs_runtime::chain(&lib.build_text(text, "follow:2").await.unwrap_err());
        assert!(err.contains(&format!("{src}: no such file")), "{err}");
        assert!(!err.contains("host secret"), "{err}");
    }
}

/// One source that a wildcard expands to one file, onto a destination without a trailing
/// `/`, is copied as that destination, as BuildKit's `COPY f*.go foo2.go` and
/// `COPY sub/*/dir2/foo /subdest3/bar` (issue 31 defect 6); several matches, or a trailing
/// `/`, make it a directory, and an existing directory takes the file inside.
#[tokio::test]
async fn one_wildcard_match_onto_a_file_name_is_that_file() {
    let Some(lib) = Lib::new().await else { return };
    lib.write("foo.go", "foo\n");
    lib.write("bar.go", "bar\n");
    lib.write("sub/dir1/dir2/foo", "deep\n");
    let text = "FROM localhost/bb:1
WORKDIR /w
COPY f*.go foo2.go
COPY sub/*/dir2/foo /subdest3/bar
COPY *.go /gofiles
COPY sub/* /subdest
COPY f*.go /one/
RUN busybox mkdir /exists
COPY f*.go /exists
";
    lib.build_text(text, "wild:1").await.unwrap();
    let (_out, r) = unpacked(&lib, "wild:1").await;
    for (p, want) in [
        ("w/foo2.go", "foo\n"),
        ("subdest3/bar", "deep\n"),
        ("gofiles/foo.go", "foo\n"),
        ("gofiles/bar.go", "bar\n"),
        ("subdest/dir2/foo", "deep\n"),
        ("one/foo.go", "foo\n"),
        ("exists/foo.go", "foo\n"),
    ] {
        let m = std::fs::symlink_metadata(r.join(p)).unwrap();
        assert!(m.is_file(), "{p}: {m:?}");
        assert_eq!(std::fs::read_to_string(r.join(p)).unwrap(), want, "{p}");
    }
}

/// Files of the context that are hard links of each other stay one file when one source
/// copies them (issue 31 defect 9), as BuildKit's copier links what it met before: one inode
/// in the image, in the layer a hard link entry.
#[tokio::test]
async fn hard_links_in_the_context_stay_linked() {
    use std::os::unix::fs::MetadataExt;
    let Some(lib) = Lib::new().await else { return };
    lib.write("hl/a", "same\n");
    std::fs::hard_link(lib.ctx.join("hl/a"), lib.ctx.join("hl/b")).unwrap();
    std::fs::create_dir_all(lib.ctx.join("hl/sub")).unwrap();
    std::fs::hard_link(lib.ctx.join("hl/a"), lib.ctx.join("hl/sub/c")).unwrap();
    lib.write("hl/other", "same\n");
    let text = "FROM localhost/bb:1\nCOPY hl /hl/\nCOPY --chmod=0600 . /all/\n";
    lib.build_text(text, "hard:1").await.unwrap();
    let (_out, r) = unpacked(&lib, "hard:1").await;
    for base in ["hl", "all/hl"] {
        let meta = |p: &str| std::fs::symlink_metadata(r.join(base).join(p)).unwrap();
        let (a, b, c, other) = (meta("a"), meta("b"), meta("sub/c"), meta("other"));
        assert!(a.is_file() && b.is_file() && c.is_file(), "{base}");
        assert_eq!(a.ino(), b.ino(), "{base}");
        assert_eq!(a.ino(), c.ino(), "{base}");
        assert_eq!(a.nlink(), 3, "{base}");
        assert_ne!(a.ino(), other.ino(), "{base}");
        assert_eq!(other.nlink(), 1, "{base}");
        let text = std::fs::read_to_string(r.join(base).join("sub/c")).unwrap();
        assert_eq!(text, "same\n", "{base}");
    }
    let mode = std::fs::metadata(r.join("all/hl/b")).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o600);
}

/// `.dockerignore` patterns apply to paths from the context's root whatever the source names
/// (issue 31 defect 11): an excluded directory with an exception inside is walked, and is
/// there (with its own mode, and the `--chown` owner) as the parent of what is kept, so
/// `COPY ./ ./`, `COPY subdir ./` and a wildcard matching it agree, as BuildKit's context
/// transfer makes them agree.
#[tokio::test]
async fn dockerignore_exceptions_agree_for_the_root_and_a_subdirectory() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(lib) = Lib::new().await else { return };
    lib.write("subdir/keep.txt", "keep\n");
    lib.write("subdir/drop.txt", "drop\n");
    lib.write("subdir/inner/keep.txt", "inner keep\n");
    lib.write("subdir/inner/drop.txt", "inner drop\n");
    lib.write("gone/x", "x\n");
    lib.write("other.txt", "other\n");
    let sub = lib.ctx.join("subdir");
    std::fs::set_permissions(&sub, PermissionsExt::from_mode(0o750)).unwrap();
    lib.write(
        ".dockerignore",
        "subdir\ngone\n!subdir/keep.txt\n!subdir/inner/keep.txt\n",
    );
    let text = "FROM localhost/bb:1
COPY --chown=7:8 ./ /all/
COPY subdir /sub/
COPY sub* /glob/
COPY subdir/inner /inner/
";
    lib.build_text(text, "ign:1").await.unwrap();
    let (_out, r) = unpacked(&lib, "ign:1").await;
    for (p, want) in [
        ("all/other.txt", "other\n"),
        ("all/subdir/keep.txt", "keep\n"),
        ("all/subdir/inner/keep.txt", "inner keep\n"),
        ("sub/keep.txt", "keep\n"),
        ("sub/inner/keep.txt", "inner keep\n"),
        ("glob/keep.txt", "keep\n"),
        ("glob/inner/keep.txt", "inner keep\n"),
        ("inner/keep.txt", "inner keep\n"),
    ] {
        assert_eq!(std::fs::read_to_string(r.join(p)).unwrap(), want, "{p}");
    }
    for p in [
        "all/gone",
        "all/subdir/drop.txt",
        "all/subdir/inner/drop.txt",
        "sub/drop.txt",
        "sub/inner/drop.txt",
        "glob/drop.txt",
        "inner/drop.txt",
    ] {
        assert!(!r.join(p).exists(), "{p}");
    }
    let m = std::fs::symlink_metadata(r.join("all/subdir")).unwrap();
    assert!(m.is_dir());
    assert_eq!(
        (m.mode() & 0o7777, m.uid(), m.gid()),
        (0o750, 7, 8),
        "the excluded directory kept as a parent"
    );
    // Excluded with nothing kept inside: not there, for every form.
    let err = lib
        .build_text("FROM localhost/bb:1\nCOPY gone /g/\n", "ign:2")
        .await
        .unwrap_err();
    let err = oci_rs_runtime::chain(&err);
    assert!(err.contains("gone: no such file"), "{err}");
}

/// Whether the programs `names` are on this machine (Debian's xz-utils and bzip2 make the
/// archives of the tests below); a message says which are missing.
fn have(names: &[&str]) -> bool {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| {
            std::process::Command::new(n)
                .arg("--version")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_err()
        })
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "skipping: {} missing (Debian's xz-utils, bzip2)",
            missing.join(", ")
        );
    }
    missing.is_empty()
}

/// `program args...` run with `input` on its standard input: its standard output.
fn filter(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feed = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    feed.join().unwrap();
    assert!(out.status.success(), "{program} {args:?}");
    out.stdout
}

/// `ADD` of a local archive compressed with xz or bzip2 unpacks it, as with gzip (BuildKit:
/// identity, gzip, bzip2, xz), told by its bytes whatever its name: an archive named like a
/// plain file is unpacked, and a compressed file that is no tar (`notes.txt.xz`, `.gz` too)
/// is copied as it is, as BuildKit's `isArchivePath` tells them. Several xz streams or bzip2 streams
/// one after the other are one archive (what `pixz` and `pbzip2` write).
#[tokio::test]
async fn add_unpacks_xz_and_bzip2_archives_told_by_their_bytes() {
    let Some(lib) = Lib::new().await else { return };
    if !have(&["xz", "bzip2"]) {
        return;
    }
    let top = lib.ctx.parent().unwrap();
    std::fs::create_dir_all(top.join("arch/top")).unwrap();
    std::fs::write(top.join("arch/top/inner.txt"), "inside\n").unwrap();
    let tar = top.join("files.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(top.join("arch"))
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let tar = std::fs::read(&tar).unwrap();
    let put = |name: &str, bytes: &[u8]| std::fs::write(lib.ctx.join(name), bytes).unwrap();
    let xz = filter("xz", &["-c"], &tar);
    let bz = filter("bzip2", &["-c"], &tar);
    put("files.tar.xz", &xz);
    put("files.tar.bz2", &bz);
    // Named as nothing in particular: the bytes tell.
    put("xz-archive.dat", &xz);
    put("bz-archive.dat", &bz);
    // Split in two, each half compressed on its own, the halves one after the other.
    let (a, b) = tar.split_at(tar.len() / 2);
    put(
        "multi.tar.xz",
        &[filter("xz", &["-c"], a), filter("xz", &["-c"], b)].concat(),
    );
    put(
        "multi.tar.bz2",
        &[filter("bzip2", &["-c"], a), filter("bzip2", &["-c"], b)].concat(),
    );
    // Compressed, but not a tar: copied as they are.
    let notes = b"just notes\n".repeat(100);
    let notes_xz = filter("xz", &["-c"], &notes);
    let notes_bz = filter("bzip2", &["-c"], &notes);
    let notes_gz = filter("gzip", &["-c"], &notes);
    put("notes.txt.xz", &notes_xz);
    put("notes.txt.bz2", &notes_bz);
    put("notes.txt.gz", &notes_gz);
    lib.write(
        "Dockerfile",
        "FROM localhost/bb:1
ADD files.tar.xz /x/
ADD files.tar.bz2 /b/
ADD xz-archive.dat /xd/
ADD bz-archive.dat /bd/
ADD multi.tar.xz /mx/
ADD multi.tar.bz2 /mb/
ADD notes.txt.xz notes.txt.bz2 notes.txt.gz /n/
",
    );
    lib.build("xzbz:1").await.unwrap();
    let (_out, r) = unpacked(&lib, "xzbz:1").await;
    for d in ["x", "b", "xd", "bd", "mx", "mb"] {
        let p = r.join(d).join("top/inner.txt");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "inside\n", "{d}");
    }
    assert!(!r.join("xd/xz-archive.dat").exists());
    assert_eq!(std::fs::read(r.join("n/notes.txt.xz")).unwrap(), notes_xz);
    assert_eq!(std::fs::read(r.join("n/notes.txt.bz2")).unwrap(), notes_bz);
    assert_eq!(std::fs::read(r.join("n/notes.txt.gz")).unwrap(), notes_gz);
    // A tar whose xz stream is cut short is an archive that fails to unpack: the build
    // fails, naming it, rather than copying part of it.
    put("cut.tar.xz", &xz[..xz.len() - 20]);
    lib.write("Dockerfile", "FROM localhost/bb:1\nADD cut.tar.xz /c/\n");
    let err = lib.build("cut:1").await.unwrap_err();
    let err = oci_rs_runtime::chain(&err);
    assert!(err.contains("unpacking cut.tar.xz"), "{err}");
}

/// A Dockerfile's own ignore file, `NAME.dockerignore` beside the Dockerfile `NAME`, wins
/// over the context's `.dockerignore` (BuildKit's rule): for `-f sub/app.Dockerfile`, for the
/// default `Dockerfile`, and for a Dockerfile outside the context. Without one, the
/// context's `.dockerignore` applies. One that is a link out of the context is resolved
/// inside it, as the Dockerfile is.
#[tokio::test]
async fn a_dockerfiles_own_ignore_file_wins_over_the_contexts() {
    use oci_rs_runtime::read_dockerignore;
    let Some(lib) = Lib::new().await else { return };
    for f in ["a.txt", "b.txt", "c.txt"] {
        lib.write(f, f);
    }
    lib.write(".dockerignore", "a.txt\n");
    let df = "FROM localhost/bb:1\nCOPY . /all/\n";
    lib.write("sub/app.Dockerfile", df);
    lib.write(
        "sub/app.Dockerfile.dockerignore",
        "b.txt\nsub\n*.dockerignore\n",
    );
    lib.write("sub/other.Dockerfile", df);
    lib.write("Dockerfile", df);
    let outside = lib.ctx.parent().unwrap().join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("x.Dockerfile"), df).unwrap();
    std::fs::write(outside.join("x.Dockerfile.dockerignore"), "c.txt\n").unwrap();
    // What `COPY . /all/` copied of a.txt, b.txt and c.txt, built from `file` (`-f`).
    let kept = |file: Option<PathBuf>, tag: &'static str| {
        let lib = &lib;
        async move {
            let ignore = read_dockerignore(&lib.ctx, file.as_deref(), false).unwrap();
            let opts = BuildOptions {
                tags: vec![tag.into()],
                dockerignore: ignore,
                ..BuildOptions::default()
            };
            let file = file.unwrap_or_else(|| lib.ctx.join("Dockerfile"));
            lib.build_opts(file.to_str().unwrap(), opts)
                .await
                .0
                .unwrap();
            let (_out, r) = unpacked(lib, tag).await;
            ["a.txt", "b.txt", "c.txt"]
                .into_iter()
                .filter(|f| r.join("all").join(f).exists())
                .collect::<Vec<_>>()
        }
    };
    let app = lib.ctx.join("sub/app.Dockerfile");
    assert_eq!(kept(Some(app), "own:1").await, ["a.txt", "c.txt"]);
    // Named through `..` as well.
    let rel = read_dockerignore(
        &lib.ctx,
        Some(&lib.ctx.join("sub/../sub/app.Dockerfile")),
        false,
    )
    .unwrap();
    assert_eq!(rel.as_deref(), Some("b.txt\nsub\n*.dockerignore\n"));
    // None beside it: the context's `.dockerignore`.
    let other = lib.ctx.join("sub/other.Dockerfile");
    assert_eq!(kept(Some(other), "own:2").await, ["b.txt", "c.txt"]);
    assert_eq!(kept(None, "own:3").await, ["b.txt", "c.txt"]);
    // The default Dockerfile has one too: `Dockerfile.dockerignore`.
    lib.write("Dockerfile.dockerignore", "c.txt\n");
    assert_eq!(kept(None, "own:4").await, ["a.txt", "b.txt"]);
    // A Dockerfile outside the context: its own beside it, read as given.
    let x = outside.join("x.Dockerfile");
    assert_eq!(kept(Some(x), "own:5").await, ["a.txt", "b.txt"]);
    // A link out of the context is resolved inside it: there is no such file there.
    let host = lib.ctx.parent().unwrap().join("host-ignore");
    std::fs::write(&host, "secret patterns\n").unwrap();
    std::fs::remove_file(lib.ctx.join("Dockerfile.dockerignore")).unwrap();
    std::os::unix::fs::symlink(&host, lib.ctx.join("Dockerfile.dockerignore")).unwrap();
    assert_eq!(read_dockerignore(&lib.ctx, None, false).unwrap(), None);
}

/// Every path under `dir` (files, directories, links), from it, sorted.
fn tree_of(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(base).unwrap().to_str().unwrap().to_owned());
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `COPY --exclude=PATTERN` (repeatable, `ADD` too) and `COPY --parents` (Dockerfile 1.7
/// syntax, as BuildKit's reference and its frontend tests have them): the trees they make.
#[tokio::test]
async fn copy_exclude_and_parents_make_the_trees_buildkit_makes() {
    use std::os::unix::fs::PermissionsExt;
    let Some(lib) = Lib::new().await else { return };
    for f in [
        "x/a.txt",
        "y/a.txt",
        "src/a.txt",
        "src/x/b.txt",
        "src/x/y/c.txt",
        "src/x/y/c.md",
        "home.txt",
        "homer.md",
        "homes/keep.rs",
        "homes/notes.txt",
    ] {
        lib.write(f, f);
    }
    std::fs::set_permissions(lib.ctx.join("src/x"), PermissionsExt::from_mode(0o750)).unwrap();
    let text = "FROM localhost/bb:1 AS base
RUN mkdir -p /test/a/b/c/d/e && echo foo > /test/a/b/c/d/foo && echo bay > /test/a/b/c/d/e/bay

FROM localhost/bb:1
COPY ./x/a.txt ./y/a.txt /no_parents/
COPY --parents ./x/a.txt ./y/a.txt /parents/
COPY --parents ./src/**/*.txt /glob/
COPY --parents ./src/./x/y/*.txt /pivot/
COPY --parents=true src/x/y/c.md /one
COPY --parents=false src/x/y/c.md /flat
COPY --from=base --parents /test/a/b/./c/d /from/
COPY --from=base --parents /test/a/./b*/zz /empty/
COPY --exclude=*.txt hom* /mydir/
COPY --exclude=**/*.txt --exclude=*.md . /ctx/
ADD --exclude=*.rs homes /added/
COPY --exclude=**/y --parents src/./x /both/
";
    lib.build_text(text, "sel:1").await.unwrap();
    let (_out, r) = unpacked(&lib, "sel:1").await;
    let t = |d: &str| tree_of(&r.join(d));
    assert_eq!(t("no_parents"), ["a.txt"]);
    assert_eq!(t("parents"), ["x", "x/a.txt", "y", "y/a.txt"]);
    assert_eq!(
        t("glob"),
        [
            "src",
            "src/a.txt",
            "src/x",
            "src/x/b.txt",
            "src/x/y",
            "src/x/y/c.txt"
        ]
    );
    assert_eq!(t("pivot"), ["x", "x/y", "x/y/c.txt"]);
    assert_eq!(t("one"), ["src", "src/x", "src/x/y", "src/x/y/c.md"]);
    assert_eq!(
        std::fs::read_to_string(r.join("flat")).unwrap(),
        "src/x/y/c.md"
    );
    assert_eq!(t("from"), ["c", "c/d", "c/d/e", "c/d/e/bay", "c/d/foo"]);
    assert_eq!(t("empty"), Vec::<String>::new());
    assert_eq!(t("mydir"), ["homer.md", "keep.rs"]);
    assert_eq!(
        t("ctx"),
        [
            ".text.Dockerfile",
            "homes",
            "homes/keep.rs",
            "src",
            "src/x",
            "src/x/y",
            "src/x/y/c.md",
            "x",
            "y"
        ]
    );
    assert_eq!(t("added"), ["notes.txt"]);
    assert_eq!(t("both"), ["x", "x/b.txt"]);
    // The parents a `--parents` copy makes keep their own modes.
    let mode = |p: &str| std::fs::metadata(r.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("glob/src/x"), 0o750);
    // A bad boolean, a bare --exclude, --parents on ADD: refused at their line.
    for (line, want) in [
        (
            "COPY --parents=maybe x /d/",
            "--parents=maybe: expected true or false",
        ),
        ("COPY --exclude x /d/", "--exclude needs a pattern"),
        ("ADD --parents x /d/", "unknown flag --parents"),
        ("COPY --parents x/nothing /d/", "x/nothing: no such file"),
    ] {
        let err = lib
            .build_text(&format!("FROM localhost/bb:1\n{line}\n"), "sel:2")
            .await
            .unwrap_err();
        let err = oci_rs_runtime::chain(&err);
        assert!(err.contains(want), "{line}: {err}");
    }
}

/// BuildKit's automatic platform arguments (issue 31): `TARGETPLATFORM`, `TARGETOS`,
/// `TARGETARCH`, `TARGETVARIANT` and the `BUILD*` ones, in `FROM` lines and in a stage that
/// declares them, for the build's `--platform` (the host's by default); a stage that does
/// not declare them does not see them, and they are never "unused build args".
#[tokio::test]
async fn platform_arguments_are_set_as_buildkit_sets_them() {
    let Some(lib) = Lib::new().await else { return };
    let host = oci_rs_image::PlatformSpec::host();
    let text = "ARG TARGETARCH\n\
        FROM localhost/bb:1 AS base-amd64\n\
        FROM localhost/bb:1 AS base-arm64\n\
        FROM base-${TARGETARCH}\n\
        ARG TARGETPLATFORM\n\
        ARG TARGETOS TARGETARCH BUILDPLATFORM BUILDARCH\n\
        RUN echo $TARGETPLATFORM $TARGETOS $TARGETARCH $BUILDPLATFORM $BUILDARCH > /p && echo \"[$TARGETVARIANT]\" >> /p\n";
    lib.write("Dockerfile", text);
    let steps = std::sync::Mutex::new(Vec::new());
    let opts = BuildOptions {
        tags: vec!["plat:1".into()],
        ..BuildOptions::default()
    };
    let built = DockerfileBuild::new(
        &lib.store,
        BuildSources::default(),
        text,
        Some(&lib.ctx),
        opts,
        Box::new(|e| {
            if let BuildEvent::UnusedArg { name } = e {
                steps.lock().unwrap().push(name.to_owned());
            }
        }),
    )
    .unwrap()
    .build()
    .await;
    built.unwrap();
    let arch = &host.architecture;
    let platform = match &host.variant {
        Some(v) => format!("linux/{arch}/{v}"),
        None => format!("linux/{arch}"),
    };
    assert_eq!(
        lib.read("plat:1", "p").await,
        format!("{platform} linux {arch} {platform} {arch}\n[]\n")
    );
    assert!(steps.into_inner().unwrap().is_empty(), "reported as unused");
}

/// A multi-platform build (issue 31): one image per platform, each with its own
/// architecture in its config and its own files (chosen by `TARGETARCH`), under one image
/// index with each entry's platform; a `RUN` for an architecture the host cannot run (no
/// binfmt_misc handler) is refused saying so, rather than failing with "exec format error".
#[tokio::test]
async fn a_multi_platform_build_is_an_index_of_one_image_per_platform() {
    let Some(lib) = Lib::new().await else { return };
    lib.write("bin-amd64", "an amd64 program\n");
    lib.write("bin-arm64", "an arm64 program\n");
    let text = "FROM scratch\nARG TARGETARCH\nCOPY bin-${TARGETARCH} /app\n";
    let opts = BuildOptions {
        tags: vec!["multi:1".into()],
        platform: Some("linux/amd64,linux/arm64".into()),
        ..BuildOptions::default()
    };
    let built = oci_rs_runtime::build_platforms(
        &lib.store,
        BuildSources::default(),
        text,
        Some(&lib.ctx),
        opts,
        Box::new(|_| {}),
    )
    .await
    .unwrap();
    let index = oci_rs_image::ImageSource::manifest(
        lib.store.layout(),
        &oci_rs_image::ManifestRef::Digest(built.manifest.digest().clone()),
    )
    .await
    .unwrap();
    let index = index.as_index().unwrap().clone();
    assert_eq!(index.manifests().len(), 2);
    // One image listed: each platform's is the index's, not an untagged one of its own.
    let rows = lib.store.list().await.unwrap();
    assert!(rows.iter().any(|r| r.repository == "multi"), "{rows:?}");
    assert!(!rows.iter().any(|r| r.repository == "<none>"), "{rows:?}");
    for (d, arch) in index.manifests().iter().zip(["amd64", "arm64"]) {
        assert_eq!(
            d.platform().as_ref().unwrap().architecture().to_string(),
            arch
        );
        let m = oci_rs_image::ImageSource::manifest(
            lib.store.layout(),
            &oci_rs_image::ManifestRef::Digest(d.digest().clone()),
        )
        .await
        .unwrap();
        let img = m.as_image().unwrap();
        let cfg = oci_rs_image::read_config_json(lib.store.layout(), img.config())
            .await
            .unwrap();
        assert_eq!(cfg["architecture"], arch);
        let dir = tempfile::tempdir_in(lib.ctx.parent().unwrap()).unwrap();
        lib.store
            .unpack_descriptor(d, arch, dir.path(), true)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("app")).unwrap(),
            format!("an {arch} program\n"),
            "{arch}'s image holds its own program"
        );
    }
    // The tag names the index; the host's image of it unpacks.
    assert_eq!(
        lib.read("multi:1", "app").await,
        format!(
            "an {} program\n",
            oci_rs_image::PlatformSpec::host().architecture
        )
    );
    // A RUN for a foreign architecture, without the kernel's handler for it (CI registers
    // qemu-aarch64 only: s390x and the others are not there).
    let Some(foreign) = [
        ("linux/s390x", "s390x"),
        ("linux/ppc64le", "ppc64le"),
        ("linux/riscv64", "riscv64"),
    ]
    .into_iter()
    .find(|(_, q)| !Path::new(&format!("/proc/sys/fs/binfmt_misc/qemu-{q}")).exists()) else {
        eprintln!(
            "every candidate architecture has a binfmt_misc handler: the refusal is not tested"
        );
        return;
    };
    let handler = format!("/proc/sys/fs/binfmt_misc/qemu-{}", foreign.1);
    lib.write(
        "Dockerfile",
        "FROM scratch\nCOPY bin-amd64 /bin/sh\nRUN true\n",
    );
    let opts = BuildOptions {
        platform: Some(foreign.0.to_owned()),
        ..BuildOptions::default()
    };
    let (built, _, _) = lib.build_opts("Dockerfile", opts).await;
    let err = oci_rs_runtime::chain(&built.unwrap_err());
    assert!(
        err.contains("binfmt_misc") && err.contains(&handler),
        "{err}"
    );
}

/// `--cache-to type=local` then, in another store (a CI runner's empty one),
/// `--cache-from type=local`: every step is taken from the exported cache, and the image is
/// the exporting build's own (same id; a `RUN` that prints a random value is not run again).
/// `mode=min` leaves out a stage the image only copies from, which the importer runs again.
/// The export is BuildKit's cache manifest: an index of the layers and one cache config.
#[tokio::test]
async fn a_cache_exported_by_one_store_is_taken_by_another() {
    use oci_rs_runtime::{CacheExport, CacheImport};
    let Some(a) = Lib::new().await else { return };
    let Some(b) = Lib::new().await else { return };
    let text = "FROM localhost/bb:1 AS tool\nRUN echo tool > /tool\n\
                FROM localhost/bb:1\nCOPY f /f\nRUN cat /proc/sys/kernel/random/uuid > /r\n\
                COPY --from=tool /tool /tool\nENV X=1\n";
    b.same_base_as(&a).await;
    for lib in [&a, &b] {
        lib.write("f", "the same file\n");
        lib.write("Dockerfile", text);
    }
    let caches = tempfile::tempdir().unwrap();
    let (max, min) = (caches.path().join("max"), caches.path().join("min"));
    let opts = |cache_to: Vec<CacheExport>, cache_from: Vec<CacheImport>| BuildOptions {
        tags: vec!["app:1".into()],
        cache_to,
        cache_from,
        ..BuildOptions::default()
    };
    let to = |d: &Path, mode: &str| -> CacheExport {
        format!("type=local,dest={},mode={mode}", d.display())
            .parse()
            .unwrap()
    };
    let from =
        |d: &Path| -> CacheImport { format!("type=local,src={}", d.display()).parse().unwrap() };
    let first = a
        .build_opts(
            "Dockerfile",
            opts(vec![to(&max, "max"), to(&min, "min")], vec![]),
        )
        .await
        .0
        .unwrap();
    assert_eq!((first.ran, first.cached), (5, 0));

    // The export: an OCI layout whose `latest` is an index of layers, image configs and
    // one BuildKit cache config, whose records are the steps.
    let layout = oci_rs_image::OciLayout::open(&max).await.unwrap();
    let index: serde_json::Value = {
        let top = layout.read_index().await.unwrap();
        let d = &top.manifests()[0];
        let p = layout.blob_path(d.digest()).unwrap();
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let entries = index["manifests"].as_array().unwrap();
    let cfg = entries
        .iter()
        .find(|d| d["mediaType"] == "application/vnd.buildkit.cacheconfig.v0")
        .expect("a cache config");
    let digest: oci_rs_image::oci_spec::image::Digest =
        cfg["digest"].as_str().unwrap().parse().unwrap();
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.blob_path(&digest).unwrap()).unwrap())
            .unwrap();
    let records = cfg["records"].as_array().unwrap();
    assert_eq!(records.len(), 5, "one record per step: {cfg}");
    assert!(records
        .iter()
        .all(|r| r["digest"].as_str().unwrap().starts_with("sha256:")));
    assert!(
        records.iter().filter(|r| r["inputs"].is_array()).count() >= 3,
        "steps link to the step before: {cfg}"
    );
    assert!(entries
        .iter()
        .any(|d| d["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"));

    // Another store takes every step from it, and makes the same image.
    let (second, steps, _) = b
        .build_opts("Dockerfile", opts(vec![], vec![from(&max)]))
        .await;
    let second = second.unwrap();
    assert_eq!((second.ran, second.cached), (0, 5), "{steps:?}");
    assert_eq!(second.id, first.id);
    assert_eq!(b.read("app:1", "r").await, a.read("app:1", "r").await);

    // mode=min: the stage only copied from is not in it, so its step runs again; the
    // image's own steps are taken (the COPY --from too: it is keyed by the files it copies,
    // which that step made again the same).
    let Some(c) = Lib::new().await else { return };
    c.same_base_as(&a).await;
    c.write("f", "the same file\n");
    c.write("Dockerfile", text);
    let third = c
        .build_opts("Dockerfile", opts(vec![], vec![from(&min)]))
        .await
        .0
        .unwrap();
    assert_eq!((third.ran, third.cached), (1, 4));
    assert_eq!(c.read("app:1", "r").await, a.read("app:1", "r").await);
}

/// A cache that cannot be read (missing), or whose layer is damaged, makes the build run
/// the steps instead, reporting it; nothing of the damaged blob is kept.
#[tokio::test]
async fn a_missing_or_damaged_cache_is_reported_and_the_steps_run() {
    use oci_rs_runtime::{CacheExport, CacheImport};
    let Some(a) = Lib::new().await else { return };
    let Some(b) = Lib::new().await else { return };
    b.same_base_as(&a).await;
    for lib in [&a, &b] {
        lib.write("f", "f\n");
        lib.write(
            "Dockerfile",
            "FROM localhost/bb:1\nCOPY f /f\nRUN echo run > /r\n",
        );
    }
    let caches = tempfile::tempdir().unwrap();
    let dir = caches.path().join("c");
    let export: CacheExport = format!("type=local,dest={}", dir.display())
        .parse()
        .unwrap();
    let opts = BuildOptions {
        tags: vec!["x:1".into()],
        cache_to: vec![export],
        ..BuildOptions::default()
    };
    let first = a.build_opts("Dockerfile", opts).await.0.unwrap();

    // Damage every layer blob of the cache that the other store does not have (its base
    // it has): same size, other bytes.
    let stored = b.store.layout().root().join("blobs/sha256");
    let layout = oci_rs_image::OciLayout::open(&dir).await.unwrap();
    let mut damaged = Vec::new();
    for e in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        if bytes.starts_with(&[0x1f, 0x8b]) && !stored.join(p.file_name().unwrap()).exists() {
            std::fs::write(&p, vec![0u8; bytes.len()]).unwrap();
            damaged.push(p.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(!damaged.is_empty());
    drop(layout);
    let problems = std::sync::Mutex::new(Vec::new());
    let run = |from: &Path| {
        let text = std::fs::read_to_string(b.ctx.join("Dockerfile")).unwrap();
        let opts = BuildOptions {
            tags: vec!["x:1".into()],
            cache_from: vec![format!("type=local,src={}", from.display())
                .parse::<CacheImport>()
                .unwrap()],
            ..BuildOptions::default()
        };
        let problems = &problems;
        let events = Box::new(move |e: BuildEvent<'_>| {
            if let BuildEvent::CacheProblem { error, .. } = e {
                problems.lock().unwrap().push(oci_rs_runtime::chain(error));
            }
        });
        let store = &b.store;
        let ctx = b.ctx.clone();
        async move {
            DockerfileBuild::new(
                store,
                BuildSources::default(),
                &text,
                Some(&ctx),
                opts,
                events,
            )
            .unwrap()
            .build()
            .await
        }
    };
    let built = run(&dir).await.unwrap();
    assert_eq!(built.ran, 2, "the damaged steps ran");
    assert_eq!(b.read("x:1", "r").await, "run\n");
    assert_ne!(built.id, first.id, "made here, not taken");
    let seen = problems.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the damage is reported");
    for d in &damaged {
        // The step made here may make the same layer again; the damaged bytes are not it.
        if let Ok(bytes) = std::fs::read(stored.join(d)) {
            let sum = oci_rs_image::sha256(&bytes);
            assert_eq!(sum.digest(), d, "nothing of a damaged blob is kept");
        }
    }

    // A cache that is not there: reported, and the build goes on.
    problems.lock().unwrap().clear();
    let built = run(&caches.path().join("nothing-here")).await.unwrap();
    assert_eq!(
        built.cached, 2,
        "the steps are in this store's own cache now"
    );
    let seen = problems.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
}

/// A `RUN` for arm64 on an amd64 host, for real: the base image holds an arm64 busybox, which
/// the kernel hands to qemu-aarch64-static (binfmt_misc, registered with the F flag, as the
/// container's root has no qemu), so `uname -m` says `aarch64` and the image's config says
/// arm64. Then a multi-platform build from an index of an amd64 and an arm64 busybox: each
/// platform's `RUN` runs its own architecture's program. scripts/test.sh sets it all up
/// (qemu-user-static, the handler, `OCI_TEST_ARM64_BUSYBOX` from Debian's busybox-static:arm64).
#[tokio::test]
async fn a_run_for_arm64_runs_through_binfmt_misc_and_qemu() {
    let Some(lib) = Lib::new().await else { return };
    if oci_rs_image::PlatformSpec::host().architecture != "amd64" {
        eprintln!("skipping: the foreign-architecture RUN is tested on an amd64 host");
        return;
    }
    let Some(busybox) = std::env::var_os("OCI_TEST_ARM64_BUSYBOX")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    else {
        eprintln!(
            "skipping: OCI_TEST_ARM64_BUSYBOX names no arm64 busybox (scripts/test.sh unpacks \
             Debian's busybox-static:arm64 and sets it)"
        );
        return;
    };
    let handler = "/proc/sys/fs/binfmt_misc/qemu-aarch64";
    match std::fs::read_to_string(handler) {
        Err(e) => {
            eprintln!(
                "skipping: no binfmt_misc handler {handler} ({e}; scripts/test.sh registers \
                 qemu-user-static's, as root)"
            );
            return;
        }
        Ok(h) if h.lines().next() != Some("enabled") => {
            eprintln!("skipping: the binfmt_misc handler {handler} is disabled");
            return;
        }
        Ok(h)
            if !h
                .lines()
                .any(|l| l.starts_with("flags:") && l.contains('F')) =>
        {
            eprintln!(
                "skipping: the binfmt_misc handler {handler} has no F flag (scripts/test.sh \
                 registers it again with F)"
            );
            return;
        }
        Ok(_) => {}
    }

    // The arm64 base: one layer with busybox and its links, config architecture arm64.
    let root = tempfile::tempdir_in(lib.ctx.parent().unwrap()).unwrap();
    let bin = root.path().join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(&busybox, bin.join("busybox")).unwrap();
    for t in ["sh", "uname", "cat"] {
        std::os::unix::fs::symlink("busybox", bin.join(t)).unwrap();
    }
    let tar = root.path().join("arm64.tar");
    let made = std::process::Command::new("tar")
        .arg("-C")
        .arg(root.path().join("rootfs"))
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(made.success());
    let layout = lib.store.layout().leased().unwrap();
    let mut b = oci_rs_image::ImageBuilder::new("linux", "arm64");
    let mut f = tokio::fs::File::open(&tar).await.unwrap();
    b.add_layer_tar(
        &layout,
        &mut f,
        oci_rs_image::Compression::Gzip,
        "arm64 busybox",
    )
    .await
    .unwrap();
    let m = b.build(&layout).await.unwrap();
    let r = oci_rs_image::ImageReference::parse("localhost/bb-arm64:1").unwrap();
    layout
        .tag(
            &oci_rs_layer::store_name(&r),
            &m.descriptor(),
            Some(&r.to_string()),
        )
        .await
        .unwrap();

    // FROM it, for linux/arm64: the RUN is emulated.
    lib.write(
        "Dockerfile",
        "FROM localhost/bb-arm64:1\nRUN uname -m > /m\n",
    );
    let opts = BuildOptions {
        tags: vec!["arm:1".into()],
        platform: Some("linux/arm64".into()),
        ..BuildOptions::default()
    };
    let (built, steps, _) = lib.build_opts("Dockerfile", opts).await;
    built.unwrap();
    assert_eq!(steps, ["ran", "ran"]);
    assert_eq!(lib.read("arm:1", "m").await, "aarch64\n");
    assert_eq!(config_json(&lib, "arm:1").await["architecture"], "arm64");

    // Both platforms from one index of the two busyboxes: each RUN in its own architecture.
    lib.store
        .manifest_create(
            "localhost/bb-multi:1",
            &[
                "localhost/bb:1".to_owned(),
                "localhost/bb-arm64:1".to_owned(),
            ],
            false,
        )
        .await
        .unwrap();
    let text = "FROM localhost/bb-multi:1\nARG TARGETARCH\n\
        RUN busybox uname -m > /m && echo $TARGETARCH >> /m\n";
    let opts = BuildOptions {
        tags: vec!["multi-run:1".into()],
        platform: Some("linux/amd64,linux/arm64".into()),
        ..BuildOptions::default()
    };
    let built = oci_rs_runtime::build_platforms(
        &lib.store,
        BuildSources::default(),
        text,
        Some(&lib.ctx),
        opts,
        Box::new(|_| {}),
    )
    .await
    .unwrap();
    let index = oci_rs_image::ImageSource::manifest(
        lib.store.layout(),
        &oci_rs_image::ManifestRef::Digest(built.manifest.digest().clone()),
    )
    .await
    .unwrap();
    let index = index.as_index().unwrap().clone();
    assert_eq!(index.manifests().len(), 2);
    for (d, (arch, machine)) in index
        .manifests()
        .iter()
        .zip([("amd64", "x86_64"), ("arm64", "aarch64")])
    {
        assert_eq!(
            d.platform().as_ref().unwrap().architecture().to_string(),
            arch
        );
        let m = oci_rs_image::ImageSource::manifest(
            lib.store.layout(),
            &oci_rs_image::ManifestRef::Digest(d.digest().clone()),
        )
        .await
        .unwrap();
        let cfg =
            oci_rs_image::read_config_json(lib.store.layout(), m.as_image().unwrap().config())
                .await
                .unwrap();
        assert_eq!(cfg["architecture"], arch);
        let dir = tempfile::tempdir_in(lib.ctx.parent().unwrap()).unwrap();
        lib.store
            .unpack_descriptor(d, arch, dir.path(), true)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("m")).unwrap(),
            format!("{machine}\n{arch}\n"),
            "{arch}'s RUN ran its own busybox"
        );
    }
}

/// Step lines as BuildKit's plain progress shows them: `[NAME k/n]` in a named stage,
/// `[k/n]` in another, the step number as wide as the total.
#[tokio::test]
async fn steps_are_labelled_as_buildkit_labels_them() {
    let Some(lib) = Lib::new().await else { return };
    let envs: String = (1..=9).map(|k| format!("ENV A{k}={k}\n")).collect();
    lib.write(
        "Dockerfile",
        &format!(
            "FROM localhost/bb:1 AS build\n{envs}FROM localhost/bb:1\nCOPY --from=build /bin/sh /x\n"
        ),
    );
    let (built, _, lines) = lib.build_opts("Dockerfile", BuildOptions::default()).await;
    built.unwrap();
    assert_eq!(lines[0], "[build  1/10] FROM localhost/bb:1");
    assert_eq!(lines[1], "[build  2/10] ENV A1=1");
    assert_eq!(lines[9], "[build 10/10] ENV A9=9");
    assert_eq!(lines[10], "[1/2] FROM localhost/bb:1");
    assert_eq!(lines[11], "[2/2] COPY --from=build /bin/sh /x");
}

/// `RUN --security=insecure` and `RUN --network=host` only with the caller's entitlement
/// (`--allow`), as BuildKit; an insecure step has every capability, a sandboxed one
/// docker's default set.
#[tokio::test]
async fn insecure_and_host_network_steps_need_the_entitlement() {
    use oci_rs_runtime::Entitlement;
    let Some(lib) = Lib::new().await else { return };
    lib.write(
        "Dockerfile",
        "FROM localhost/bb:1\n\
         RUN --security=insecure busybox grep CapEff /proc/self/status > /insecure\n\
         RUN busybox grep CapEff /proc/self/status > /sandbox\n",
    );
    let err = lib.build("sec:1").await.unwrap_err().to_string();
    assert!(
        err.contains("Dockerfile:2: RUN")
            && err.contains("needs the security.insecure entitlement"),
        "{err}"
    );
    let opts = BuildOptions {
        tags: vec!["sec:1".into()],
        allow: vec![Entitlement::SecurityInsecure],
        ..BuildOptions::default()
    };
    lib.build_opts("Dockerfile", opts).await.0.unwrap();
    let caps = |line: String| {
        let hex = line.split_whitespace().last().unwrap().to_owned();
        u64::from_str_radix(&hex, 16).unwrap()
    };
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    let insecure = caps(lib.read("sec:1", "insecure").await);
    let sandbox = caps(lib.read("sec:1", "sandbox").await);
    assert!(insecure & CAP_SYS_ADMIN != 0, "{insecure:x}");
    assert!(sandbox & CAP_SYS_ADMIN == 0, "{sandbox:x}");

    lib.write(
        "Dockerfile",
        "FROM localhost/bb:1\nRUN --network=host echo host > /h\n",
    );
    let err = lib.build("net:1").await.unwrap_err().to_string();
    assert!(err.contains("needs the network.host entitlement"), "{err}");
    let opts = BuildOptions {
        tags: vec!["net:1".into()],
        allow: vec![Entitlement::NetworkHost],
        ..BuildOptions::default()
    };
    lib.build_opts("Dockerfile", opts).await.0.unwrap();
    assert!("security.sandbox".parse::<Entitlement>().is_err());
}

/// `RUN --mount=type=ssh`: the step finds a socket of its own at the target (numbered by
/// default, its owner and mode as asked) named by `SSH_AUTH_SOCK`, and the image keeps no
/// trace of it; a required agent that was not given fails the step, one not required is
/// left out.
#[tokio::test]
async fn ssh_mounts_give_the_step_a_socket_of_its_own() {
    use oci_rs_runtime::BuildSsh;
    let Some(lib) = Lib::new().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&agent).unwrap();
    lib.write(
        "Dockerfile",
        "FROM localhost/bb:1\n\
         RUN --mount=type=ssh --mount=type=ssh,id=work,target=/w.sock,uid=7,mode=0640 \
         test -S $SSH_AUTH_SOCK && test -S /w.sock && \
         busybox stat -c '%a %u %n' $SSH_AUTH_SOCK /w.sock > /seen\n\
         RUN --mount=type=ssh,id=absent test ! -e /run/buildkit/ssh_agent.0 && echo none > /absent\n",
    );
    let opts = BuildOptions {
        tags: vec!["ssh:1".into()],
        ssh: [
            ("default".to_owned(), BuildSsh::new(&agent)),
            ("work".to_owned(), BuildSsh::new(&agent)),
        ]
        .into(),
        ..BuildOptions::default()
    };
    lib.build_opts("Dockerfile", opts.clone()).await.0.unwrap();
    assert_eq!(
        lib.read("ssh:1", "seen").await,
        "600 0 /run/buildkit/ssh_agent.0\n640 7 /w.sock\n"
    );
    assert_eq!(lib.read("ssh:1", "absent").await, "none\n");
    let out = tempfile::tempdir_in(lib.ctx.parent().unwrap()).unwrap();
    lib.store.unpack("ssh:1", out.path(), false).await.unwrap();
    for p in ["run/buildkit", "w.sock"] {
        assert!(
            !out.path().join("rootfs").join(p).exists(),
            "{p} left in the image"
        );
    }
    lib.write(
        "Dockerfile",
        "FROM localhost/bb:1\nRUN --mount=type=ssh,id=absent,required true\n",
    );
    let err = oci_rs_runtime::chain(&lib.build_opts("Dockerfile", opts).await.0.unwrap_err());
    assert!(err.contains("the SSH agent absent is required"), "{err}");
}

/// `--chown` by name and number and `--chmod` (with a variable), as BuildKit's
/// `testCopyChown`, `testCopyChmod` and `testCopyChownCreateDest` check them: a user alone
/// is also the group (by number), a group by name, a directory's files all take the owner.
#[tokio::test]
async fn copy_chown_by_name_and_chmod_give_the_owners_and_modes_buildkit_gives() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(lib) = Lib::new().await else { return };
    lib.write(
        "passwd",
        "root:x:0:0::/root:/bin/sh\ndaemon:x:1:1::/:/bin/false\nuser:x:1000:1000::/home/user:/bin/sh\n\
         nobody:x:65534:65534::/:/bin/false\n",
    );
    lib.write(
        "group",
        "root:x:0:\ndaemon:x:1:\nuser:x:1000:\nnobody:x:65534:\n",
    );
    lib.write("foo", "foo\n");
    lib.write("bar", "bar\n");
    lib.write("sub/f", "f\n");
    lib.write(
        "Dockerfile",
        "FROM localhost/bb:1\nCOPY passwd /etc/passwd\nCOPY group /etc/group\nARG mode=755\n\
         COPY --chown=daemon foo /\nCOPY --chown=1000:nobody bar /baz\n\
         COPY --chmod=${mode} foo /footer\nCOPY --chown=user:user sub /dest\n",
    );
    lib.build("owners:1").await.unwrap();
    let out = tempfile::tempdir_in(lib.ctx.parent().unwrap()).unwrap();
    lib.store
        .unpack("owners:1", out.path(), false)
        .await
        .unwrap();
    let at = |p: &str| {
        let m = std::fs::symlink_metadata(out.path().join("rootfs").join(p)).unwrap();
        (m.uid(), m.gid(), m.permissions().mode() & 0o7777)
    };
    assert_eq!(at("foo"), (1, 1, 0o644));
    assert_eq!(at("baz"), (1000, 65534, 0o644));
    assert_eq!(at("footer").2, 0o755);
    assert_eq!((at("dest").0, at("dest").1), (1000, 1000));
    assert_eq!((at("dest/f").0, at("dest/f").1), (1000, 1000));
}

/// `FROM --platform=$BUILDPLATFORM` (cross-compiling): that stage runs natively on the
/// build host while the image is the target platform's, and the automatic arguments say
/// which is which (BuildKit's `testPlatformArgsExplicit` reads them so).
#[tokio::test]
async fn a_stage_from_the_build_platform_runs_natively_for_another_target() {
    let Some(lib) = Lib::new().await else { return };
    let host = oci_rs_image::PlatformSpec::host().architecture;
    let target = if host == "amd64" { "arm64" } else { "amd64" };
    let text = "FROM --platform=$BUILDPLATFORM localhost/bb:1 AS build\n\
                ARG TARGETPLATFORM TARGETARCH BUILDARCH\n\
                RUN echo $TARGETPLATFORM $TARGETARCH $BUILDARCH > /p\n\
                FROM scratch\nCOPY --from=build /p /\n";
    let opts = BuildOptions {
        tags: vec!["cross:1".into()],
        platform: Some(format!("linux/{target}")),
        ..BuildOptions::default()
    };
    std::fs::write(lib.ctx.join("Dockerfile"), text).unwrap();
    lib.build_opts("Dockerfile", opts).await.0.unwrap();
    let desc = lib.store.find("cross:1").await.unwrap().desc;
    let dir = tempfile::tempdir_in(lib.ctx.parent().unwrap()).unwrap();
    lib.store
        .unpack_descriptor(&desc, "cross:1", dir.path(), true)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("p")).unwrap(),
        format!("linux/{target} {target} {host}\n")
    );
    let m = oci_rs_image::ImageSource::manifest(
        lib.store.layout(),
        &oci_rs_image::ManifestRef::Digest(desc.digest().clone()),
    )
    .await
    .unwrap();
    let cfg = oci_rs_image::read_config_json(lib.store.layout(), m.as_image().unwrap().config())
        .await
        .unwrap();
    assert_eq!(cfg["architecture"], target);
}

/// `git daemon` serving `repo.git` (made here: a file, a subdirectory, a tag `v1` and a
/// later commit on `main`) on a free loopback port; stopped when dropped.
struct GitServer {
    child: std::process::Child,
    url: String,
    v1: String,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git_server(dir: &Path) -> Option<GitServer> {
    let daemon = Path::new("/usr/lib/git-core/git-daemon");
    if !daemon.exists() {
        eprintln!("skipping: git is missing (scripts/test.sh installs it)");
        return None;
    }
    let git = |cwd: &Path, args: &[&str]| -> String {
        let out = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(cwd)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("sub")).unwrap();
    git(&work, &["init", "-q"]);
    std::fs::write(work.join("file"), "v1\n").unwrap();
    std::fs::write(work.join("sub/inner"), "inner\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "one"]);
    git(&work, &["tag", "v1"]);
    let v1 = git(&work, &["rev-parse", "HEAD"]);
    std::fs::write(work.join("file"), "v2\n").unwrap();
    git(&work, &["commit", "-q", "-am", "two"]);
    // A branch whose `link` leads to the host's /etc (and has an `etc` of its own).
    git(&work, &["checkout", "-q", "-b", "evil"]);
    std::os::unix::fs::symlink("/etc", work.join("link")).unwrap();
    std::fs::create_dir(work.join("etc")).unwrap();
    std::fs::write(work.join("etc/x"), "x\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "evil"]);
    git(&work, &["checkout", "-q", "main"]);
    git(dir, &["clone", "-q", "--bare", "work", "repo.git"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("git")
        .args([
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", dir.display()))
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Some(GitServer {
        child,
        url: format!("git://127.0.0.1:{port}/repo.git"),
        v1,
    })
}

/// `ADD` of a git repository as BuildKit's `testAddGit`-style cases read it: a tag, a branch
/// with a subdirectory, a commit by id, `.git` left out unless `--keep-git-dir`; a
/// `--checksum` that is not the commit fails; a rebuild with nothing changed takes the step
/// from the cache.
#[tokio::test]
async fn add_of_a_git_repository_copies_the_commit_asked_for() {
    let Some(lib) = Lib::new().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = git_server(dir.path()) else {
        return;
    };
    let (url, v1) = (&server.url, &server.v1);
    lib.write(
        "Dockerfile",
        &format!(
            "FROM localhost/bb:1\nADD {url}#v1 /tag/\nADD {url}#main:sub /sub/\n\
             ADD {url}#{v1} /commit/\nADD --keep-git-dir=true {url}?ref=main /kept/\n"
        ),
    );
    lib.build("git:1").await.unwrap();
    assert_eq!(lib.read("git:1", "tag/file").await, "v1\n");
    assert_eq!(lib.read("git:1", "tag/sub/inner").await, "inner\n");
    assert_eq!(lib.read("git:1", "sub/inner").await, "inner\n");
    assert_eq!(lib.read("git:1", "commit/file").await, "v1\n");
    assert_eq!(lib.read("git:1", "kept/file").await, "v2\n");
    let out = tempfile::tempdir_in(lib.ctx.parent().unwrap()).unwrap();
    lib.store.unpack("git:1", out.path(), false).await.unwrap();
    let root = out.path().join("rootfs");
    assert!(!root.join("tag/.git").exists());
    assert!(!root.join("sub/file").exists(), "only the subdirectory");
    assert!(root.join("kept/.git").is_dir());
    let (again, steps) = lib.build_with("git:1", false).await;
    again.unwrap();
    assert_eq!(
        steps.iter().filter(|s| **s == "cached").count(),
        4,
        "{steps:?}"
    );

    lib.write(
        "Dockerfile",
        &format!("FROM localhost/bb:1\nADD --checksum=0123456 {url}#v1 /x/\n"),
    );
    let err = oci_rs_runtime::chain(&lib.build("git:2").await.unwrap_err());
    assert!(err.contains("checksum mismatch"), "{err}");
    lib.write(
        "Dockerfile",
        &format!("FROM localhost/bb:1\nADD {url}#no-such-branch /x/\n"),
    );
    let err = oci_rs_runtime::chain(&lib.build("git:3").await.unwrap_err());
    assert!(err.contains("git fetch of git://"), "{err}");
    // A subdirectory that is a link the repository holds: refused, never the host's /etc.
    lib.write(
        "Dockerfile",
        &format!("FROM localhost/bb:1\nADD {url}#evil:link /x/\n"),
    );
    let err = oci_rs_runtime::chain(&lib.build("git:4").await.unwrap_err());
    assert!(
        err.contains("is not a directory of the repository"),
        "{err}"
    );
}

/// Mount options as BuildKit's tests check them: a cache mount's `uid`, `gid` and `mode`
/// (`testCacheMountUser`), its default id is its target (`testCacheMountDefaultID`), a
/// tmpfs' `size` (`testMountTmpfsSize`), and a bind of the context is read-only.
#[tokio::test]
async fn run_mount_options_reach_the_step_as_buildkit_gives_them() {
    let Some(lib) = Lib::new().await else { return };
    lib.write("f", "f\n");
    lib.write(
        "Dockerfile",
        "FROM localhost/bb:1\n\
         RUN --mount=type=cache,target=/c,uid=1001,gid=1002,mode=0751 busybox stat -c '%u %g %a' /c > /st\n\
         RUN --mount=type=cache,target=/mycache touch /mycache/foo\n\
         RUN --mount=type=cache,target=/mycache2 test ! -e /mycache2/foo && echo apart > /apart\n\
         RUN --mount=type=cache,target=/mycache test -e /mycache/foo && echo kept > /kept\n\
         RUN --mount=type=tmpfs,target=/dev/shm,size=128m busybox grep ' /dev/shm ' /proc/mounts > /m\n\
         RUN --mount=type=bind,target=/ctx sh -c 'touch /ctx/x 2>/dev/null; echo $? > /rc'\n",
    );
    lib.build("mopts:1").await.unwrap();
    assert_eq!(lib.read("mopts:1", "st").await, "1001 1002 751\n");
    assert_eq!(lib.read("mopts:1", "apart").await, "apart\n");
    assert_eq!(lib.read("mopts:1", "kept").await, "kept\n");
    let m = lib.read("mopts:1", "m").await;
    assert!(m.contains("size=131072k"), "{m}");
    assert_ne!(
        lib.read("mopts:1", "rc").await,
        "0\n",
        "the context bind is read-only"
    );
}

/// What some of issue 31's defects leave in the image, path by path (type, mode, link
/// target): a WORKDIR through a link keeps the link and makes its target inside the root;
/// a WORKDIR no step uses is a 0755 directory (`testWorkdirCreatesDir`); wildcard-matched
/// links in the context are copied as the files they lead to (`testCopySymlinks`).
#[tokio::test]
async fn defects_of_issue_31_leave_the_trees_buildkit_leaves() {
    use std::os::unix::fs::PermissionsExt;
    let Some(lib) = Lib::new().await else { return };
    lib.write("sub/data", "data\n");
    std::os::unix::fs::symlink("data", lib.ctx.join("sub/l1")).unwrap();
    std::os::unix::fs::symlink("data", lib.ctx.join("sub/l2")).unwrap();
    lib.write(
        "Dockerfile",
        "FROM localhost/bb:1\nRUN ln -s /srv/app /app\nWORKDIR /app/sub\nRUN echo in > here\n\
         COPY sub/l* /alllinks/\nWORKDIR /foo\nWORKDIR /\n",
    );
    lib.build("trees:1").await.unwrap();
    let out = tempfile::tempdir_in(lib.ctx.parent().unwrap()).unwrap();
    lib.store
        .unpack("trees:1", out.path(), false)
        .await
        .unwrap();
    let root = out.path().join("rootfs");
    assert_eq!(
        std::fs::read_link(root.join("app")).unwrap(),
        Path::new("/srv/app"),
        "the link stays a link"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("srv/app/sub/here")).unwrap(),
        "in\n"
    );
    let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
    assert!(meta("srv/app/sub").is_dir());
    assert!(meta("foo").is_dir());
    assert_eq!(meta("foo").permissions().mode() & 0o7777, 0o755);
    for l in ["l1", "l2"] {
        let m = meta(&format!("alllinks/{l}"));
        assert!(m.file_type().is_file(), "{l} is a file");
        assert_eq!(
            std::fs::read_to_string(root.join("alllinks").join(l)).unwrap(),
            "data\n"
        );
    }
}

/// `--cache-to` of a multi-platform build holds every platform's steps, in BuildKit's
/// `image-manifest=true` form (an image manifest whose config is the cache config) too; a
/// store that imports it takes every step of both platforms.
#[tokio::test]
async fn a_multi_platform_cache_serves_every_platform() {
    use oci_rs_runtime::{CacheExport, CacheImport};
    let Some(a) = Lib::new().await else { return };
    let Some(b) = Lib::new().await else { return };
    for lib in [&a, &b] {
        lib.write("bin-amd64", "amd64\n");
        lib.write("bin-arm64", "arm64\n");
    }
    let text = "FROM scratch\nARG TARGETARCH\nCOPY bin-${TARGETARCH} /app\nENV A=1\n";
    let dir = tempfile::tempdir().unwrap();
    let export: CacheExport = format!(
        "type=local,dest={},image-manifest=true,mode=max",
        dir.path().display()
    )
    .parse()
    .unwrap();
    let import: CacheImport = format!("type=local,src={}", dir.path().display())
        .parse()
        .unwrap();
    async fn build(lib: &Lib, text: &str, to: Vec<CacheExport>, from: Vec<CacheImport>) -> Built {
        let opts = BuildOptions {
            tags: vec!["mp:1".into()],
            platform: Some("linux/amd64,linux/arm64".into()),
            cache_to: to,
            cache_from: from,
            ..BuildOptions::default()
        };
        oci_rs_runtime::build_platforms(
            &lib.store,
            BuildSources::default(),
            text,
            Some(&lib.ctx),
            opts,
            Box::new(|_| {}),
        )
        .await
        .unwrap()
    }
    let first = build(&a, text, vec![export], vec![]).await;
    assert_eq!((first.ran, first.cached), (4, 0));
    let layout = oci_rs_image::OciLayout::open(dir.path()).await.unwrap();
    let top = layout.read_index().await.unwrap();
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.blob_path(top.manifests()[0].digest()).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.buildkit.cacheconfig.v0"
    );
    let second = build(&b, text, vec![], vec![import]).await;
    assert_eq!((second.ran, second.cached), (0, 4));
    assert_eq!(second.id, first.id, "the same index");
}

//! A differential corpus: the same Dockerfiles and contexts built by `oci build` and by
//! Debian's buildah (`buildah bud --layers --isolation chroot`), on the same busybox base, and
//! the two images compared fact by fact: every path's type, mode, owner, size, sha256 and
//! link target, which paths share a file (hard links), and the config fields a user reads.
//!
//! BuildKit (docker's builder) is the reference, not buildah. Where buildah is known to
//! differ from BuildKit, a case rewrites buildah's facts into BuildKit's (`buildkit`), saying
//! why and citing the Dockerfile reference or BuildKit's code and tests, so ours is held to
//! BuildKit's answer there. Where ours differs from BuildKit, the case lists the fact in
//! `ours_differ` with the reason: the test documents the bug, and fails once the bug is
//! fixed so that the entry is removed. Every other difference fails the test.
//!
//! Not compared, as builders legitimately differ there: timestamps, history entries, how the
//! files are cut into layers (so digests), buildah's `io.buildah.version` label and what its
//! RUN leaves behind ([`BUILDAH_OWN`]).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

const OCI: &str = env!("CARGO_BIN_EXE_oci");
const TOOLS: &[&str] = &[
    "sh", "echo", "cat", "ls", "mkdir", "rm", "touch", "id", "ln", "mkfifo", "chmod", "chown",
    "printf",
];

/// What buildah writes into every image that BuildKit does not: left out of buildah's side
/// only, so ours must not have them either.
const BUILDAH_OWN: &[&str] = &[
    // buildah's RUN leaves the files it bind-mounts over in the layer (empty, 0755);
    // BuildKit removes its mount stubs after a step (executor/stubs.go, MountStubsCleaner,
    // which covers /etc/hosts and /etc/resolv.conf) and mounts nothing on /etc/hostname.
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    // buildah mounts a tmpfs on /run for RUN and leaves the directory; BuildKit mounts
    // nothing there.
    "/run",
];

/// The config fields compared (buildah's own label, `io.buildah.version`, left out).
const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Labels",
    "Volumes",
    "StopSignal",
    "Shell",
];

/// An image as compared: `/path` → `KIND MODE UID:GID` (a file adds its size and sha256, a
/// symbolic link its target); `hardlinks /first` → the paths sharing that file;
/// `config Field` → the field's JSON.
type Facts = BTreeMap<String, String>;

/// One build of the corpus.
struct Case {
    /// The image name (`localhost/NAME:oci`, `localhost/NAME:buildah`).
    name: &'static str,
    dockerfile: &'static str,
    /// The same build in the syntax buildah 1.28 reads, when it cannot read `dockerfile`.
    peer_dockerfile: Option<&'static str>,
    build_args: &'static [&'static str],
    /// Turns buildah's facts into BuildKit's where buildah is known to differ (each change
    /// with its reason).
    buildkit: fn(&mut Facts),
    /// The facts where ours differs from BuildKit: bugs, with the reason.
    ours_differ: &'static [(&'static str, &'static str)],
}

impl Case {
    fn new(name: &'static str, dockerfile: &'static str) -> Self {
        Self {
            name,
            dockerfile,
            peer_dockerfile: None,
            build_args: &[],
            buildkit: |_| {},
            ours_differ: &[],
        }
    }
}

/// A store and a buildah storage holding the same busybox base, `localhost/bb:1` (with an
/// /etc/passwd naming `app`, 1000:1001, and no Env), and a context directory.
struct Bench {
    dir: tempfile::TempDir,
    cli: common::Cli,
    ctx: PathBuf,
    /// buildah's storage driver.
    driver: &'static str,
}

impl Bench {
    /// None (and why, on standard error) when the corpus cannot run here.
    fn new() -> Option<Self> {
        if !common::root_with_busybox() {
            return None;
        }
        if !Path::new("/usr/bin/buildah").exists() {
            eprintln!("skipping: needs buildah (scripts/test.sh installs it)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            &d.join("rootfs/etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        );
        write(&d.join("rootfs/etc/group"), "root:x:0:\napp:x:1001:\n");
        let tar = common::busybox_rootfs_tar(d, TOOLS);
        let cli = common::Cli {
            oci: OCI,
            data: d.join("data"),
        };
        cli.ok(&["import", tar.to_str().unwrap(), "localhost/bb:1"]);
        let saved = d.join("bb.tar");
        cli.ok(&["save", "-o", saved.to_str().unwrap(), "localhost/bb:1"]);
        let ctx = d.join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        // overlay, as BuildKit's snapshots, is several times faster than vfs (which copies
        // the whole root for each step); vfs where overlay cannot be mounted.
        let mut b = Self {
            dir,
            cli,
            ctx,
            driver: "overlay",
        };
        let pull = ["pull", "-q", &format!("docker-archive:{}", saved.display())];
        if !b.buildah(&pull).status.success() {
            eprintln!("buildah on overlay storage failed here: vfs instead");
            b.driver = "vfs";
            b.buildah_ok(&pull);
        }
        Some(b)
    }

    /// `buildah` on the bench's own storage.
    fn buildah(&self, args: &[&str]) -> std::process::Output {
        let d = self.dir.path().join(self.driver);
        Command::new("buildah")
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .args(["--storage-driver", self.driver])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// [`Self::buildah`] that must succeed.
    fn buildah_ok(&self, args: &[&str]) {
        let o = self.buildah(args);
        assert!(
            o.status.success(),
            "buildah {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Builds the case both ways, compares, and fails on any difference the case does not
    /// explain.
    fn check(&self, case: &Case) {
        let d = self.dir.path();
        let ctx = self.ctx.to_str().unwrap();
        write(&self.ctx.join("Dockerfile"), case.dockerfile);
        let peer_file = match case.peer_dockerfile {
            Some(text) => {
                let f = d.join("peer.Dockerfile");
                write(&f, text);
                f
            }
            None => self.ctx.join("Dockerfile"),
        };
        let args: Vec<&str> = case
            .build_args
            .iter()
            .flat_map(|a| ["--build-arg", a])
            .collect();
        let (ours_name, theirs_name) = (
            format!("localhost/{}:oci", case.name),
            format!("localhost/{}:buildah", case.name),
        );
        let started = std::time::Instant::now();
        let mut bud = vec!["bud", "-q", "--layers", "--isolation", "chroot", "-f"];
        bud.push(peer_file.to_str().unwrap());
        bud.extend(&args);
        bud.extend(["-t", &theirs_name, ctx]);
        self.buildah_ok(&bud);
        let archive = format!(
            "oci-archive:{}:{theirs_name}",
            d.join("theirs.tar").display()
        );
        self.buildah_ok(&["push", "-q", &theirs_name, &archive]);
        let buildah_took = started.elapsed();
        let started = std::time::Instant::now();
        let mut build = vec!["build"];
        build.extend(&args);
        build.extend(["-t", &ours_name, ctx]);
        self.cli.ok(&build);
        let ours_took = started.elapsed();
        eprintln!(
            "{}: buildah {buildah_took:.2?}, ours {ours_took:.2?}",
            case.name
        );
        self.cli
            .ok(&["load", "-i", d.join("theirs.tar").to_str().unwrap()]);
        let ours = facts(&self.cli, &ours_name, &d.join("u-ours"));
        let mut want = facts(&self.cli, &theirs_name, &d.join("u-theirs"));
        for p in BUILDAH_OWN {
            want.remove(*p);
        }
        let buildah = want.clone();
        (case.buildkit)(&mut want);
        for k in differing(&buildah, &want) {
            eprintln!(
                "{}: buildah differs from BuildKit at {k}: buildah {:?}, BuildKit {:?}",
                case.name,
                buildah.get(k),
                want.get(k)
            );
        }
        let differ = differing(&ours, &want);
        let show = |k: &str| {
            format!(
                "{k}\n    ours:     {:?}\n    BuildKit: {:?}",
                ours.get(k),
                want.get(k)
            )
        };
        let mut unexplained = Vec::new();
        for k in &differ {
            match case.ours_differ.iter().find(|(key, _)| key == k) {
                Some((_, why)) => eprintln!("{}: KNOWN BUG {}\n    {why}", case.name, show(k)),
                None => unexplained.push(show(k)),
            }
        }
        let fixed: Vec<&str> = case
            .ours_differ
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| !differ.iter().any(|d| d == k))
            .collect();
        assert!(
            unexplained.is_empty() && fixed.is_empty(),
            "{}: ours differs from BuildKit at:\n{}\nlisted as differing but now the same \
             (remove from ours_differ): {fixed:?}",
            case.name,
            unexplained.join("\n")
        );
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        // buildah leaves the working container of a stage another copies from mounted, and
        // its overlay storage bind-mounted on itself: both undone so the directory can go.
        let _ = self.buildah(&["rm", "--all"]);
        let dir = format!("{}/", self.dir.path().display());
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&dir))
            .map(str::to_owned)
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = rustix::mount::unmount(m.as_str(), rustix::mount::UnmountFlags::DETACH);
        }
    }
}

fn write(p: &Path, text: &str) {
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(p, text).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `image` unpacked into `dir`, as [`Facts`].
fn facts(cli: &common::Cli, image: &str, dir: &Path) -> Facts {
    use std::os::unix::fs::MetadataExt;
    cli.ok(&["unpack", image, dir.to_str().unwrap()]);
    let mut out = Facts::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (rel, (mode, uid, gid, what)) in common::tree(dir) {
        let Some(p) = rel.strip_prefix("rootfs") else {
            continue;
        };
        let path = if p.is_empty() {
            "/".to_owned()
        } else {
            p.to_owned()
        };
        let meta = std::fs::symlink_metadata(dir.join(&rel)).unwrap();
        let kind = match mode & 0o170000 {
            0o040000 => "dir",
            0o100000 => "file",
            0o120000 => "symlink",
            0o010000 => "fifo",
            0o020000 => "chardev",
            0o060000 => "blockdev",
            0o140000 => "socket",
            _ => "unknown",
        };
        let mut fact = format!("{kind} {:04o} {uid}:{gid}", mode & 0o7777);
        match kind {
            "file" => {
                fact += &format!(" {} bytes sha256:{what}", meta.len());
                if meta.nlink() > 1 {
                    inodes.entry(meta.ino()).or_default().push(path.clone());
                }
            }
            "symlink" => fact += &format!(" -> {what}"),
            _ => {}
        }
        out.insert(path, fact);
    }
    for mut paths in inodes.into_values().filter(|p| p.len() > 1) {
        paths.sort();
        out.insert(format!("hardlinks {}", paths[0]), paths.join(" "));
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&cli.field(image, "{{json .Config}}")).unwrap();
    if let Some(l) = config["Labels"].as_object_mut() {
        // buildah's own label.
        l.remove("io.buildah.version");
        if l.is_empty() {
            config["Labels"] = serde_json::Value::Null;
        }
    }
    for f in CONFIG_FIELDS {
        out.insert(format!("config {f}"), config[f].to_string());
    }
    out
}

/// The keys whose facts differ between `a` and `b` (missing from one included).
fn differing<'a>(a: &'a Facts, b: &'a Facts) -> Vec<&'a String> {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .collect()
}

/// `fact` with its owner made `owner`.
fn owned(fact: &str, owner: &str) -> String {
    let mut w: Vec<&str> = fact.split(' ').collect();
    w[2] = owner;
    w.join(" ")
}

/// `fact` with its mode made `mode`.
fn moded(fact: &str, mode: &str) -> String {
    let mut w: Vec<&str> = fact.split(' ').collect();
    w[1] = mode;
    w.join(" ")
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Case 1: `FROM scratch`: the stage gets BuildKit's default PATH (convert.go: "make sure that PATH
/// is always set"), which an `ENV PATH=$PATH:…` extends in place; a `RUN` on a root without /etc
/// leaves none.
#[test]
fn scratch_gets_the_default_path() {
    let Some(b) = Bench::new() else { return };
    write(&b.ctx.join("f"), "hello\n");
    std::fs::copy("/bin/busybox", b.ctx.join("busybox")).unwrap();
    b.check(&Case {
        buildkit: |f| {
            // buildah's RUN left /etc holding its bind targets (BUILDAH_OWN); BuildKit's stub
            // cleaner is recursive for LLB execs (client/llb/exec.go sets
            // RemoveMountStubsRecursive), so the /etc it made for /etc/hosts goes too.
            f.remove("/etc");
            // What BuildKit gives, whatever buildah does: the default PATH set when the stage
            // starts, then extended in place by the ENV.
            f.insert(
                "config Env".into(),
                format!(r#"["{DEFAULT_PATH}:/opt/bin","A=1"]"#),
            );
        },
        ours_differ: &[],
        ..Case::new(
            "scratch",
            r#"FROM scratch
COPY f /f
COPY busybox /bin/busybox
ENV A=1 PATH=$PATH:/opt/bin
RUN ["/bin/busybox", "sh", "-c", "echo $PATH > /path"]
"#,
        )
    });
}

/// Case 2: A source that is a symbolic link is followed (the top-level source: the Dockerfile
/// reference, and BuildKit's FollowSymlinks for COPY sources); links inside a copied directory stay
/// links; a destination or WORKDIR through a link, dangling or to a directory not there yet, is
/// made through it inside the root.
#[test]
fn source_links_followed_and_links_inside_kept() {
    let Some(b) = Bench::new() else { return };
    let c = &b.ctx;
    write(&c.join("real.txt"), "target\n");
    std::os::unix::fs::symlink("real.txt", c.join("top-link")).unwrap();
    write(&c.join("d/one"), "one\n");
    write(&c.join("d/sub/s"), "s\n");
    for (target, link) in [
        ("one", "d/rel"),
        ("/etc/passwd", "d/abs"),
        ("sub", "d/dirlink"),
        ("missing", "d/dangling"),
        ("d", "dlink"),
    ] {
        std::os::unix::fs::symlink(target, c.join(link)).unwrap();
    }
    b.check(&Case::new(
        "links",
        r#"FROM localhost/bb:1 AS tools
FROM localhost/bb:1
COPY top-link /copied
COPY top-link /dst/
COPY d /d
COPY d/ /d2/
COPY dlink /viadirlink
COPY --from=tools /bin/sh /sh-from-stage
RUN ln -s /made/by/link /linkdir && ln -s /srv/real /srv-link
COPY top-link /linkdir/
WORKDIR /srv-link/work
RUN touch here
"#,
    ));
}

/// Case 3: WORKDIR made owned by the current USER (a name from /etc/passwd, or numeric ids), so
/// that `RUN touch x` works; a WORKDIR nothing uses is still made.
#[test]
fn workdir_owned_by_the_user() {
    let Some(b) = Bench::new() else { return };
    b.check(&Case {
        buildkit: |f| {
            // "If the WORKDIR doesn't exist, it will be created even if it's not used in any
            // subsequent Dockerfile instruction" (the Dockerfile reference, WORKDIR); BuildKit
            // makes it with the user's ids (dispatchWorkdir's Mkdir with the chown of USER).
            // buildah 1.28 makes a WORKDIR only when a later step uses it.
            for p in ["/home/app/work/rel", "/home/app/work/rel/unused"] {
                f.insert(p.into(), "dir 0755 1000:1001".into());
            }
            f.insert("/numeric".into(), "dir 0755 2000:2002".into());
        },
        ..Case::new(
            "workdir",
            r#"FROM localhost/bb:1
USER app
WORKDIR /home/app/work
RUN touch x && id -u > uid
WORKDIR rel/unused
USER 0
WORKDIR /root-owned
RUN touch y
USER 2000:2002
WORKDIR /numeric
USER app
WORKDIR /home/app/work
"#,
        )
    });
}

/// Case 4: The JSON form for names with spaces; one wildcard match onto a file name gives that
/// file, not a directory holding it (BuildKit's `COPY f*.go foo2.go` and `COPY sub/*/dir2/foo
/// /dest/bar`, dockerfile_copy_test.go).
#[test]
fn json_form_and_single_wildcard_matches() {
    let Some(b) = Bench::new() else { return };
    let c = &b.ctx;
    write(&c.join("a b.txt"), "ab\n");
    write(&c.join("foo1.go"), "foo1\n");
    write(&c.join("bar.txt"), "bar\n");
    write(&c.join("sub/a/dir2/foo"), "deep\n");
    b.check(&Case::new(
        "words",
        r#"FROM localhost/bb:1
COPY ["a b.txt", "/dst/"]
COPY ["a b.txt", "/named file"]
COPY f*.go foo2.go
COPY sub/*/dir2/foo /dest/bar
COPY b?r.txt /x/
COPY ["sub/a", "/with space/"]
"#,
    ));
}

/// Case 5: Heredocs (dockerfile_heredoc_test.go): `COPY <<robots.txt <<humans.txt` (names with a
/// dot), expanded unless the delimiter is quoted, 0644 root files (convert_copy.go's Mkfile) with
/// --chmod/--chown applied, `<<-` stripping tabs; `RUN <<EOF` run by the shell, a shebang script
/// run as a program (mounted at /dev/pipes, which is not left behind), and a heredoc the shell
/// itself reads. buildah 1.28 has no heredocs: it builds the same files from the context.
#[test]
fn heredocs() {
    let Some(b) = Bench::new() else { return };
    for (name, text) in [
        ("robots.txt", "User-agent: *\nDisallow: /world\n"),
        ("humans.txt", "Made by world\n"),
        ("raw.txt", "kept ${WHO} as written\n"),
        ("tabs.sh", "#!/bin/sh\necho tabs\n"),
    ] {
        write(&b.ctx.join(name), text);
        chmod(&b.ctx.join(name), 0o644);
    }
    b.check(&Case {
        peer_dockerfile: Some(
            r#"FROM localhost/bb:1
ARG WHO=world
RUN mkdir -p /docs && echo "plain $WHO" > /docs/plain
COPY robots.txt humans.txt /docs/
COPY raw.txt /docs/
COPY --chmod=0755 --chown=app tabs.sh /docs/tabs.sh
RUN /docs/tabs.sh > /docs/script-out
RUN printf 'from the shell: %s\nquoted: $WHO\n' "$WHO" > /docs/shell-heredoc
"#,
        ),
        ours_differ: &[],
        ..Case::new(
            "heredocs",
            "FROM localhost/bb:1
ARG WHO=world
RUN <<EOF
mkdir -p /docs
echo \"plain $WHO\" > /docs/plain
EOF
COPY <<robots.txt <<humans.txt /docs/
User-agent: *
Disallow: /${WHO}
robots.txt
Made by ${WHO}
humans.txt
COPY <<\"raw.txt\" /docs/
kept ${WHO} as written
raw.txt
COPY --chmod=0755 --chown=app <<-EOF /docs/tabs.sh
\t#!/bin/sh
\techo tabs
\tEOF
RUN <<EOF
#!/bin/sh -e
/docs/tabs.sh > /docs/script-out
EOF
RUN cat <<EOT > /docs/shell-heredoc && cat <<'EOT2' >> /docs/shell-heredoc
from the shell: $WHO
EOT
quoted: $WHO
EOT2
",
        )
    });
}

/// Case 6: Hard links: files linked in the context stay linked within one copied directory
/// (BuildKit's context transfer keeps them, and fsutil's copier links what shares an inode); two
/// sources of one COPY are separate copies (one copy action each); a link a RUN makes to a file of
/// a lower layer stays a link.
#[test]
fn hard_links_kept() {
    let Some(b) = Bench::new() else { return };
    let c = &b.ctx;
    write(&c.join("d/a"), "hl\n");
    std::fs::hard_link(c.join("d/a"), c.join("d/b")).unwrap();
    write(&c.join("d/sub/keep"), "k\n");
    std::fs::hard_link(c.join("d/a"), c.join("d/sub/c")).unwrap();
    write(&c.join("d/solo"), "solo\n");
    write(&c.join("top"), "top\n");
    std::fs::hard_link(c.join("top"), c.join("top2")).unwrap();
    b.check(&Case {
        buildkit: |f| {
            // A link a RUN makes stays a link: BuildKit's overlay differ writes the copied-up
            // /d/solo and /d/solo-run as a hard link to it (the tar writer links paths sharing
            // an inode). buildah agrees on overlay storage; on vfs (the fallback) its diff
            // holds only the new name, as a file of its own.
            f.insert("hardlinks /d/solo".into(), "/d/solo /d/solo-run".into());
        },
        ..Case::new(
            "hardlinks",
            r#"FROM localhost/bb:1
COPY d /d
COPY top top2 /t/
COPY d/a /single
RUN ln /d/solo /d/solo-run
"#,
        )
    });
}

/// Case 7: `.dockerignore` with `!` exceptions (BuildKit's patternmatcher: the last matching line
/// wins; an exception under an excluded directory brings back that path), for `COPY ./ ./` and
/// `COPY subdir ./` alike; the Dockerfile and .dockerignore excluded.
#[test]
fn dockerignore_exceptions() {
    let Some(b) = Bench::new() else { return };
    let c = &b.ctx;
    for f in [
        "a.md",
        "b.md",
        "keep.md",
        "docs/x.md",
        "docs/api/y.md",
        "docs/old/z.md",
        "sub/keep/k.txt",
        "sub/drop/d.txt",
        "sub/drop/gone.txt",
        "sub/top.txt",
        "src/main.go",
        "src/main_test.go",
        "src/tmp.log",
        "root.log",
    ] {
        write(&c.join(f), f);
    }
    write(
        &c.join(".dockerignore"),
        concat!(
            "*.md\n!keep.md\ndocs\n!docs/api\n**/*.log\nsub/drop\n!sub/drop/d.txt\n",
            "src/*_test.go\nDockerfile\n.dockerignore\n"
        ),
    );
    b.check(&Case::new(
        "ignore",
        r#"FROM localhost/bb:1
WORKDIR /all
COPY ./ ./
WORKDIR /sub
COPY sub ./
COPY docs /docs/
"#,
    ));
}

/// Case 8: `--chown`/`--chmod` on files and a directory, and the directories a COPY makes (the one
/// a directory's contents go into is made, not copied: 0755 or --chmod's mode, root's or
/// --chown's, whatever the source directory's; testCopyChownExistingDir); `ADD` of a local
/// tar.gz, unpacked with its entries' modes, owners, set-id bits, links and a fifo (and
/// `--chown` applied to every entry).
#[test]
fn chown_chmod_and_local_archives() {
    let Some(b) = Bench::new() else { return };
    let c = &b.ctx;
    write(&c.join("f.txt"), "f\n");
    chmod(&c.join("f.txt"), 0o600);
    write(&c.join("dir/g"), "g\n");
    write(&c.join("dir/sub/h"), "h\n");
    chmod(&c.join("dir/sub"), 0o700);
    std::os::unix::fs::symlink("g", c.join("dir/lnk")).unwrap();
    write(&c.join("d750/inner/x"), "x\n");
    chmod(&c.join("d750"), 0o750);
    // The archive's tree: modes, owners, a set-uid program, a sticky directory, links, a fifo.
    let t = b.dir.path().join("archive");
    write(&t.join("pkg/bin/run"), "run\n");
    chmod(&t.join("pkg/bin/run"), 0o4755);
    write(&t.join("pkg/etc/conf"), "conf\n");
    chmod(&t.join("pkg/etc/conf"), 0o600);
    std::os::unix::fs::chown(t.join("pkg/etc/conf"), Some(33), Some(44)).unwrap();
    write(&t.join("pkg/ro"), "ro\n");
    chmod(&t.join("pkg/ro"), 0o444);
    std::os::unix::fs::chown(t.join("pkg/ro"), Some(1000), Some(1000)).unwrap();
    chmod(&t.join("pkg/etc"), 0o1777);
    std::os::unix::fs::symlink("bin/run", t.join("pkg/link")).unwrap();
    std::fs::hard_link(t.join("pkg/etc/conf"), t.join("pkg/hard")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        t.join("pkg/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    chmod(&t.join("pkg/fifo"), 0o640);
    assert!(Command::new("tar")
        .arg("--numeric-owner")
        .arg("-C")
        .arg(&t)
        .arg("-czf")
        .arg(c.join("p.tar.gz"))
        .arg("pkg")
        .status()
        .unwrap()
        .success());
    b.check(&Case {
        buildkit: |f| {
            // BuildKit makes the missing directories of a COPY's destination with the
            // --chmod mode, as fsutil's copy.Copy and prepareTargetDir call MkdirAll with it
            // (testCopyChmod: `COPY --chmod=777 foo /parent/foo` gives /parent 0777, and
            // 770 a new /parent/sub); buildah makes them 0755. The directory a directory is
            // copied into is made, not copied, so it has that mode too.
            for p in ["/c", "/c/dir", "/k", "/k/l", "/y", "/y/z"] {
                let mode = if p.starts_with("/c") { "0640" } else { "0700" };
                let fact = moded(&f[p], mode);
                f.insert(p.into(), fact);
            }
            // ADD --chown applies to every entry of an unpacked archive (go-archive's
            // ChownOpts in solver/llbsolver/file/unpack.go; testDockerfileAddChownArchive
            // checks out/foo is 100:200); buildah 1.28 keeps the archive's owners.
            let keys: Vec<String> = f
                .keys()
                .filter(|k| k.starts_with("/opt2/pkg"))
                .cloned()
                .collect();
            for k in keys {
                let fact = owned(&f[&k], "5:5");
                f.insert(k, fact);
            }
        },
        ours_differ: &[],
        ..Case::new(
            "chown",
            r#"FROM localhost/bb:1
COPY --chown=1000:1000 --chmod=0640 f.txt /c/
COPY --chown=1000:1000 --chmod=0640 dir /c/dir
COPY --chown=7:8 dir /c/dir2
COPY --chmod=755 f.txt /c/x
COPY d750 /new750
COPY --chown=3:4 d750 /a/b/new750
COPY --chown=3:4 f.txt /p/q/f
COPY --chown=3:4 f.txt /r/s/
COPY --chown=3:4 dir /t/u/
COPY --chmod=0700 dir /y/z
COPY --chmod=0700 f.txt /k/l/
COPY --chown=app dir /named
ADD p.tar.gz /opt/
ADD --chown=5:5 p.tar.gz /opt2/
ADD f.txt /add-f
"#,
        )
    });
}

/// Case 9: Multi-stage: `COPY --from` by name and by index, ARG and ENV substituted in paths,
/// labels and ports; the global ARG's default in a stage that declares it bare; and the config:
/// EXPOSE, LABEL, VOLUME, STOPSIGNAL, USER, ENTRYPOINT and CMD.
#[test]
fn multi_stage_and_config() {
    let Some(b) = Bench::new() else { return };
    write(&b.ctx.join("app.txt"), "app\n");
    b.check(&Case {
        build_args: &["VERSION=2.5"],
        ..Case::new(
            "config",
            r#"ARG BASE=localhost/bb:1
ARG STAGE=build
FROM ${BASE} AS build
ARG VERSION=1.0
ENV OUT=/out/v${VERSION}
RUN mkdir -p ${OUT} && echo "version ${VERSION}" > ${OUT}/info && echo x > /out/extra
COPY app.txt ${OUT}/

FROM ${BASE} AS final
ARG VERSION=1.0
ARG STAGE
ARG PORT=9000
ENV APP_HOME=/srv/app \
    GREETING="hello world" EMPTY=
WORKDIR ${APP_HOME}
COPY --from=build /out/v${VERSION}/ ./lib/
COPY --from=0 /out/extra $APP_HOME/extra-${VERSION}
LABEL org.opencontainers.image.version=${VERSION} multi="a b" \
      stage=$STAGE
EXPOSE 8080 53/udp ${PORT}/tcp
VOLUME ["/data", "/srv/app/cache"]
VOLUME /logs
STOPSIGNAL SIGTERM
USER 1000:1000
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo $GREETING"]
"#,
        )
    });
}

/// Case 10: What RUN leaves: new files with their modes and owners, a sticky directory, links
/// (absolute, dangling), a fifo; a base file removed (a whiteout) and a directory replaced
/// (opaque).
#[test]
fn run_results_and_whiteouts() {
    let Some(b) = Bench::new() else { return };
    b.check(&Case::new(
        "run",
        r#"FROM localhost/bb:1
RUN mkdir -p /var/lib/app /tmp && chmod 1777 /tmp && echo data > /var/lib/app/data \
 && chmod 0600 /var/lib/app/data && chown 12:34 /var/lib/app/data \
 && ln -s /var/lib/app/data /data-link && ln -s ../../nowhere /var/lib/app/dangling \
 && mkfifo -m 0640 /var/lib/app/fifo && rm /bin/cat && mkdir /opaque && echo 1 > /opaque/one
RUN rm -rf /opaque && mkdir /opaque && echo 2 > /opaque/two && touch /bin/cat-was-here \
 && rm /bin/printf /etc/group
"#,
    ));
}

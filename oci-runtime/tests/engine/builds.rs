//! Builds whose steps need the engine's image store and real containers, checked in the
//! image they make: `WORKDIR` as BuildKit makes it, and destinations through links.

use crate::fixture::Fixture;
use crate::Test;
use oci_rs_runtime::{BuildError, BuildNetwork, BuildOptions, BuildSources, DockerfileBuild};
use std::os::unix::fs::MetadataExt;

pub const TESTS: &[Test] = &[
    (
        "workdir_is_made_for_the_user_and_links_are_followed_inside_the_root",
        workdir_is_made_for_the_user_and_links_are_followed_inside_the_root,
    ),
    (
        "run_steps_have_docker_s_default_network_with_egress",
        run_steps_have_docker_s_default_network_with_egress,
    ),
    (
        "apt_get_update_reaches_debian_s_mirror_by_default",
        apt_get_update_reaches_debian_s_mirror_by_default,
    ),
    (
        "run_mounts_cache_tmpfs_and_secrets_stay_out_of_the_image",
        run_mounts_cache_tmpfs_and_secrets_stay_out_of_the_image,
    ),
    (
        "bind_mounts_of_the_context_and_a_stage",
        bind_mounts_of_the_context_and_a_stage,
    ),
    (
        "an_untagged_build_goes_to_a_directory_a_tar_and_archives",
        an_untagged_build_goes_to_a_directory_a_tar_and_archives,
    ),
];

/// Builds `dockerfile` with `files` as its context, tagged `tag`; the image unpacked.
fn build(f: &Fixture, dockerfile: &str, files: &[(&str, &str)], tag: &str) -> tempfile::TempDir {
    try_build(f, dockerfile, files, tagged(tag, BuildNetwork::Default)).unwrap()
}

/// Options that tag the image `tag` and run its steps on `network`.
fn tagged(tag: &str, network: BuildNetwork) -> BuildOptions {
    BuildOptions {
        tags: vec![tag.into()],
        network,
        ..BuildOptions::default()
    }
}

/// [`build`] with `opts` (its first tag names the image and the context), its error
/// returned.
fn try_build(
    f: &Fixture,
    dockerfile: &str,
    files: &[(&str, &str)],
    opts: BuildOptions,
) -> Result<tempfile::TempDir, BuildError> {
    let tag = opts.tags[0].clone();
    let context = f
        .dir
        .path()
        .join(format!("context-{}", tag.replace(':', "-")));
    std::fs::create_dir_all(&context).unwrap();
    for (name, text) in files {
        std::fs::write(context.join(name), text).unwrap();
    }
    let b = DockerfileBuild::new(
        &f.store,
        BuildSources::default(),
        dockerfile,
        Some(&context),
        opts,
        Box::new(|_| {}),
    )?;
    f.rt.block_on(b.build())?;
    let out = tempfile::tempdir_in(f.dir.path()).unwrap();
    f.rt.block_on(f.store.unpack(&tag, out.path(), false))
        .unwrap();
    Ok(out)
}

/// Issue 31 defects 3, 4 and 10: a `WORKDIR` or a `COPY` destination through a link that
/// dangles (absolute or relative) makes the link's target inside the root; a `WORKDIR` is
/// made owned by the current `USER` (its new parents too), so the next `RUN` as that user
/// can write there; and a `WORKDIR` no step uses is made all the same.
fn workdir_is_made_for_the_user_and_links_are_followed_inside_the_root(f: &Fixture) {
    let dockerfile = "FROM busybox:test\n\
        RUN ln -s /srv/app /app && ln -s ../opt/tool /rel && ln -s /../../../escape /up\n\
        WORKDIR /app/sub\n\
        RUN pwd > /tmp/pwd\n\
        USER 1000:1000\n\
        WORKDIR /tmp/u/work\n\
        RUN echo mine > made-by-user\n\
        USER 0\n\
        WORKDIR /unused/dir\n\
        COPY f /rel/deep/\n\
        COPY f /up/\n";
    let out = build(f, dockerfile, &[("f", "copied\n")], "workdirs:1");
    let root = out.path().join("rootfs");
    assert!(root.join("srv/app/sub").is_dir(), "WORKDIR through /app");
    assert_eq!(
        std::fs::read_to_string(root.join("tmp/pwd")).unwrap(),
        "/srv/app/sub\n",
        "the RUN ran in the link's target"
    );
    for dir in ["tmp/u", "tmp/u/work"] {
        let m = std::fs::metadata(root.join(dir)).unwrap();
        assert_eq!((m.uid(), m.gid()), (1000, 1000), "{dir}");
    }
    assert_eq!(
        std::fs::metadata(root.join("tmp")).unwrap().uid(),
        0,
        "an existing parent keeps its owner"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("tmp/u/work/made-by-user")).unwrap(),
        "mine\n"
    );
    assert!(
        root.join("unused/dir").is_dir(),
        "an unused WORKDIR is made"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("opt/tool/deep/f")).unwrap(),
        "copied\n",
        "a COPY destination through a relative link"
    );
    // A link that climbs above the root lands at the root's top, never outside it.
    assert_eq!(
        std::fs::read_to_string(root.join("escape/f")).unwrap(),
        "copied\n"
    );
    assert!(!f.dir.path().join("escape").exists());
    assert!(!std::path::Path::new("/escape").exists());
    // The image's config says the last WORKDIR; history has a line for each.
    let history = f.rt.block_on(f.store.history("workdirs:1")).unwrap();
    let workdirs = history
        .iter()
        .filter(|h| h.created_by.starts_with("WORKDIR "))
        .count();
    assert_eq!(workdirs, 3, "{history:?}");
}

/// Issue 31: a `RUN` step has docker's default build network, the default bridge with
/// egress: it reaches a server on the host's own address (as it would one on the
/// internet). With `none`, or `RUN --network=none`, it has only loopback, and the step
/// fails; nothing of the step's network is left on the host.
fn run_steps_have_docker_s_default_network_with_egress(f: &Fixture) {
    if !std::path::Path::new("/usr/sbin/nft").exists() {
        eprintln!("skipping: /usr/sbin/nft is missing (scripts/test.sh installs nftables)");
        return;
    }
    let www = f.dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), "from the host\n").unwrap();
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = std::process::Command::new("/bin/busybox")
        .args(["httpd", "-f", "-p", &format!("0.0.0.0:{port}"), "-h"])
        .arg(&www)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed however the test ends (a failed build must not leave it holding the port).
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let server = Kill(server);
    let route = std::process::Command::new("ip")
        .args(["-4", "-o", "route", "get", "1.1.1.1"])
        .output()
        .unwrap();
    let route = String::from_utf8_lossy(&route.stdout).into_owned();
    let Some(host_ip) = route
        .split_whitespace()
        .skip_while(|w| *w != "src")
        .nth(1)
        .map(str::to_owned)
    else {
        drop(server);
        eprintln!("skipping: the host has no route to the outside ({route})");
        return;
    };
    let url = format!("http://{host_ip}:{port}/index.html");
    let fetch = format!("FROM busybox:test\nRUN wget -q -O /fetched {url}\n");
    let out = build(f, &fetch, &[], "egress:1");
    assert_eq!(
        std::fs::read_to_string(out.path().join("rootfs/fetched")).unwrap(),
        "from the host\n"
    );
    let none = try_build(
        f,
        &fetch.replace("RUN wget", "RUN --network=none wget"),
        &[],
        tagged("n:1", BuildNetwork::Default),
    );
    assert!(
        matches!(none, Err(BuildError::RunFailed { .. })),
        "{none:?}"
    );
    let none = try_build(f, &fetch, &[], tagged("n:2", BuildNetwork::None));
    assert!(
        matches!(none, Err(BuildError::RunFailed { .. })),
        "{none:?}"
    );
    drop(server);
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("vethbuild"),
        "a step's veth is left"
    );
    let rules = std::process::Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&rules.stdout).contains("\"build-"),
        "a step's rule is left"
    );
}

/// The commonest Dockerfile line there is, `RUN apt-get update`, on a Debian base: it
/// reaches Debian's mirror through the default network (skipped, saying why, where the
/// Debian base cannot be made or the mirror cannot be reached from the host).
fn apt_get_update_reaches_debian_s_mirror_by_default(f: &Fixture) {
    let Some(root) = crate::network::nginx_tar() else {
        return;
    };
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(&("deb.debian.org", 80))
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| {
            std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(5)).is_ok()
        });
    if !reachable {
        eprintln!("skipping: deb.debian.org:80 is not reachable from this host");
        return;
    }
    f.import(&root, "debian:base", &[("cmd", "")]);
    let out = build(
        f,
        "FROM debian:base\nRUN apt-get update && ls /var/lib/apt/lists > /lists\n",
        &[],
        "apt:1",
    );
    let lists = std::fs::read_to_string(out.path().join("rootfs/lists")).unwrap();
    assert!(lists.contains("deb.debian.org"), "{lists}");
}

/// Issue 31's `RUN --mount`: a cache mount keeps its files between builds (a `--no-cache`
/// rebuild sees what the first left) and is emptied by the cache's prune; a tmpfs and the
/// cache are not in the layer; a secret is readable as a file and as a variable while the
/// step runs, and nowhere in the image: no blob of the store, no history line, no config,
/// no cache entry holds it, and the mount points made for the step are gone.
fn run_mounts_cache_tmpfs_and_secrets_stay_out_of_the_image(f: &Fixture) {
    let secret = format!("s3cret-{}", std::process::id());
    let dockerfile = "FROM busybox:test\n\
        RUN --mount=type=cache,target=/cache,id=c1 sh -c 'echo run >> /cache/runs; cat /cache/runs | wc -l > /count'\n\
        RUN --mount=type=tmpfs,target=/scratch,size=1m sh -c 'echo t > /scratch/x && test -f /scratch/x'\n\
        RUN --mount=type=secret,id=tok,target=/etc/tok,uid=100,gid=102,mode=0741 --mount=type=secret,id=tok,env=TOKEN \
            sh -c 'busybox stat -c \"%u %g %a\" /etc/tok > /st && busybox sha256sum /etc/tok | busybox cut -c1-64 > /sum && \
            printf %s \"$TOKEN\" | busybox sha256sum | busybox cut -c1-64 > /esum && test ! -e /run/secrets/tok && echo seen > /seen'\n";
    let cache_dir = f.dir.path().join("secret-cache-export");
    let run = |no_cache: bool| {
        let opts = BuildOptions {
            no_cache,
            secrets: [(
                "tok".to_owned(),
                oci_rs_runtime::BuildSecret::new(secret.clone().into_bytes()),
            )]
            .into(),
            cache_to: vec![format!("type=local,dest={},mode=max", cache_dir.display())
                .parse()
                .unwrap()],
            ..tagged("mounts:1", BuildNetwork::Default)
        };
        try_build(f, dockerfile, &[], opts).unwrap()
    };
    let first = run(false);
    let root = first.path().join("rootfs");
    // The secret reached the step, as a file (owner and mode as asked) and as a variable,
    // and the variable alone made no file.
    let sum = {
        use sha2::Digest;
        format!("{:x}\n", sha2::Sha256::digest(secret.as_bytes()))
    };
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    assert_eq!(read("st"), "100 102 741\n");
    assert_eq!(read("sum"), sum);
    assert_eq!(read("esum"), sum);
    assert_eq!(
        std::fs::read_to_string(root.join("count")).unwrap().trim(),
        "1"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("seen")).unwrap(),
        "seen\n"
    );
    for made in ["cache", "scratch", "run/secrets", "etc/tok"] {
        assert!(!root.join(made).exists(), "{made} is in the image");
    }
    assert!(root.join("run").is_dir() || !root.join("run").exists());
    let second = run(true);
    assert_eq!(
        std::fs::read_to_string(second.path().join("rootfs/count"))
            .unwrap()
            .trim(),
        "2",
        "the cache mount kept the first build's file"
    );
    // The secret is in no file of the store (blobs, history, config, cache entries, layer
    // and step snapshots, what the steps' bundles left) nor in the exported cache.
    let mut stack = vec![f.data(), cache_dir.clone()];
    let mut files = 0;
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else if m.is_file() {
            files += 1;
            let bytes = std::fs::read(&p).unwrap();
            let mut text = bytes.clone();
            // Gzip layers: their decompressed content too.
            if bytes.starts_with(&[0x1f, 0x8b]) {
                let out = std::process::Command::new("gzip")
                    .args(["-dc"])
                    .arg(&p)
                    .output()
                    .unwrap();
                text.extend(out.stdout);
            }
            assert!(
                !text.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the secret is in {}",
                p.display()
            );
        }
    }
    assert!(files > 10, "{files} files searched");
    // A required secret that was not given fails the step's build; prune empties the cache.
    let context = f.dir.path().join("context-mounts-1");
    let b = DockerfileBuild::new(
        &f.store,
        BuildSources::default(),
        "FROM busybox:test\nRUN --mount=type=secret,id=absent,required true\n",
        Some(&context),
        BuildOptions::default(),
        Box::new(|_| {}),
    )
    .unwrap();
    assert!(f.rt.block_on(b.build()).is_err());
    assert!(f.store.prune_cache().unwrap() >= 1);
    assert_eq!(
        std::fs::read_dir(f.data().join("build-cache-mounts"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_dir())
            .count(),
        0
    );
}

/// `RUN --mount=type=bind`: the context as `.dockerignore` leaves it (an ignored file is not
/// there), read-only unless `rw`, whose writes are thrown away; a file of another stage;
/// nothing of them in the layer; and a change to a bound file runs the step again while an
/// unchanged context takes it from the cache.
fn bind_mounts_of_the_context_and_a_stage(f: &Fixture) {
    let files = [
        ("src.txt", "source v1\n"),
        ("secret.key", "never in a bind\n"),
        (".dockerignore", "*.key\n"),
    ];
    let dockerfile = "FROM busybox:test AS tools\n\
        RUN echo from-a-stage > /tool\n\
        FROM busybox:test\n\
        RUN --mount=type=bind,target=/ctx --mount=type=bind,from=tools,source=/tool,target=/t/tool \
            sh -c 'cat /ctx/src.txt /t/tool > /out; test -e /ctx/secret.key && echo leaked >> /out; touch /ctx/x 2>/dev/null && echo writable >> /out; true'\n\
        RUN --mount=type=bind,target=/w,rw sh -c 'echo scribble > /w/src.txt && cat /w/src.txt > /rw'\n";
    let out = build(f, dockerfile, &files, "binds:1");
    let root = out.path().join("rootfs");
    assert_eq!(
        std::fs::read_to_string(root.join("out")).unwrap(),
        "source v1\nfrom-a-stage\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("rw")).unwrap(),
        "scribble\n"
    );
    for made in ["ctx", "t", "w"] {
        assert!(!root.join(made).exists(), "{made} is in the image");
    }
    // The rw write went to a copy: the context is as it was.
    let context = f.dir.path().join("context-binds-1");
    assert_eq!(
        std::fs::read_to_string(context.join("src.txt")).unwrap(),
        "source v1\n"
    );
    // Changed bound content: the step runs again and sees it.
    let files2 = [("src.txt", "source v2\n"), files[1], files[2]];
    let out = build(f, dockerfile, &files2, "binds:1");
    assert_eq!(
        std::fs::read_to_string(out.path().join("rootfs/out")).unwrap(),
        "source v2\nfrom-a-stage\n"
    );
}

/// Issue 31's outputs (`--output`): an untagged build's filesystem into a directory and a
/// tar, and the image into an OCI and a docker archive that a fresh store loads and runs
/// from (its file there).
fn an_untagged_build_goes_to_a_directory_a_tar_and_archives(f: &Fixture) {
    use oci_rs_runtime::BuildOutput;
    let context = f.dir.path().join("out-context");
    std::fs::create_dir_all(&context).unwrap();
    let b = DockerfileBuild::new(
        &f.store,
        BuildSources::default(),
        "FROM busybox:test\nRUN echo built > /built\n",
        Some(&context),
        BuildOptions::default(),
        Box::new(|_| {}),
    )
    .unwrap();
    let built = f.rt.block_on(b.build()).unwrap();
    let out = f.dir.path().join("outputs");
    std::fs::create_dir_all(&out).unwrap();
    let outputs: Vec<BuildOutput> = [
        format!("type=local,dest={}", out.join("dir").display()),
        format!("type=tar,dest={}", out.join("fs.tar").display()),
        format!("type=oci,dest={}", out.join("oci.tar").display()),
        format!("type=docker,dest={}", out.join("docker.tar").display()),
    ]
    .iter()
    .map(|o| o.parse().unwrap())
    .collect();
    for o in &outputs {
        f.rt.block_on(o.write(&f.store, &built, Some("local/out:1")))
            .unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(out.join("dir/built")).unwrap(),
        "built\n"
    );
    assert!(out.join("dir/bin/busybox").is_file());
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(out.join("fs.tar"))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.trim_start_matches("./") == "built"),
        "{listing}"
    );
    for archive in ["oci.tar", "docker.tar"] {
        let fresh = f.dir.path().join(format!("fresh-{archive}"));
        let store =
            f.rt.block_on(oci_rs_layer::ImageStore::open(&fresh))
                .unwrap();
        let loaded =
            f.rt.block_on(store.load(&out.join(archive), &Default::default()));
        let loaded = loaded.unwrap();
        assert_eq!(loaded.len(), 1, "{archive}: {loaded:?}");
        let dir = f.dir.path().join(format!("unpacked-{archive}"));
        f.rt.block_on(store.unpack("local/out:1", &dir, true))
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("built")).unwrap(),
            "built\n",
            "{archive}"
        );
    }
}

//! The engine's threat model, one test per attack or fault, through the library as an
//! embedding program drives it: what another local user can reach in the data directory
//! (its modes, tightened when an existing store is opened), what a container's process is
//! allowed (no capabilities for a non-root user, no device it makes itself), a working
//! directory of `/proc/self/fd/N` that would leave the container's root (CVE-2024-21626:
//! from the request, the image's `WorkingDir` and a Dockerfile's `WORKDIR`), runs refused
//! before they start that must leave nothing behind, the exit codes of programs that are
//! missing or cannot run, an image a container was made from kept by `rmi`, and `export`
//! of a container's sparse file. The image store's own faults (archives, unpack, import)
//! are in oci-rs-layer's `tests/image_store.rs`; the command line's in the examples'
//! `tests/threats.rs`.

use crate::fixture::{detached, logs, mounts_under, Fixture};
use crate::Test;
use oci_rs_layer::{CommitOptions, ImageStore};
use oci_rs_runtime::{
    BuildEvent, BuildOptions, BuildSources, Containers, DockerfileBuild, EngineError, RunRequest,
};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const TESTS: &[Test] = &[
    (
        "store_directories_are_private_to_their_owner",
        store_directories_are_private_to_their_owner,
    ),
    (
        "non_root_container_user_has_no_capabilities",
        non_root_container_user_has_no_capabilities,
    ),
    (
        "container_with_default_capabilities_cannot_open_a_device_it_makes",
        container_with_default_capabilities_cannot_open_a_device_it_makes,
    ),
    (
        "run_rm_leaves_nothing_when_the_spec_fails_before_start",
        run_rm_leaves_nothing_when_the_spec_fails_before_start,
    ),
    (
        "missing_or_unrunnable_programs_exit_127_and_126",
        missing_or_unrunnable_programs_exit_127_and_126,
    ),
    (
        "rmi_keeps_what_a_container_uses",
        rmi_keeps_what_a_container_uses,
    ),
    (
        "a_working_directory_through_proc_self_fd_never_reaches_the_host",
        a_working_directory_through_proc_self_fd_never_reaches_the_host,
    ),
    (
        "a_dockerfile_workdir_through_proc_self_fd_never_reaches_the_host",
        a_dockerfile_workdir_through_proc_self_fd_never_reaches_the_host,
    ),
    (
        "export_streams_in_place_and_keeps_holes",
        export_streams_in_place_and_keeps_holes,
    ),
];

/// A request without a network that runs `args` as given (none: the image's command).
fn running(args: &[&str]) -> RunRequest {
    let mut req = detached(None, "");
    req.opts.args = args.iter().map(|a| a.to_string()).collect();
    req
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn loosen(p: &Path) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn store_directories_are_private_to_their_owner(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    f.run(&store, detached(Some("kept"), ":")).unwrap();
    assert_eq!(store.wait("kept").unwrap(), 0);
    let data = f.data();
    assert_eq!(mode(&data), 0o700, "data directory");
    // The image layout below holds only compressed blobs; the data directory covers it.
    for sub in [
        "containers",
        "snapshots",
        "snapshots/layers",
        "snapshots/containers",
    ] {
        let p = data.join(sub);
        assert_eq!(mode(&p) & 0o077, 0, "{} is {:o}", p.display(), mode(&p));
    }
    // An existing store made world-readable (as before this fix) is tightened when opened:
    // by the image store,
    let layers = data.join("snapshots/layers");
    loosen(&data);
    loosen(&layers);
    f.rt.block_on(ImageStore::open(&data)).unwrap();
    assert_eq!(mode(&data), 0o700, "data directory, by ImageStore::open");
    assert_eq!(mode(&layers) & 0o077, 0, "layers, by ImageStore::open");
    // and by the container store, whose removal of a container opens the snapshots.
    loosen(&data);
    loosen(&data.join("containers"));
    loosen(&layers);
    let store = Containers::open(&data).unwrap();
    assert_eq!(mode(&data), 0o700, "data directory, by Containers::open");
    assert_eq!(mode(&data.join("containers")) & 0o077, 0);
    store.remove("kept", false).unwrap();
    assert_eq!(mode(&layers) & 0o077, 0, "layers, by Containers::remove");
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

fn non_root_container_user_has_no_capabilities(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let status = |user: Option<&str>| {
        let mut req = running(&["cat", "/proc/self/status"]);
        req.opts.user = user.map(str::to_owned);
        let (code, out, err) = f.run_to_end(&store, "busybox:test", req).unwrap();
        assert_eq!(code, 0, "{err}");
        caps(&out)
    };
    let root = status(None);
    let nobody = status(Some("65534:65534"));
    assert_eq!(nobody.len(), 5, "{nobody:?}");
    for (name, mask) in &nobody {
        match name.as_str() {
            // The bounding set is docker's; nothing else for a non-root user.
            "CapBnd" => assert_ne!(*mask, 0),
            _ => assert_eq!(*mask, 0, "{name} of uid 65534: {nobody:?}"),
        }
    }
    assert_eq!(root.len(), 5, "{root:?}");
    for (name, mask) in &root {
        match name.as_str() {
            "CapInh" | "CapAmb" => assert_eq!(*mask, 0, "{name} of root: {root:?}"),
            _ => assert_ne!(*mask, 0, "{name}"),
        }
    }
}

fn container_with_default_capabilities_cannot_open_a_device_it_makes(f: &Fixture) {
    // CAP_MKNOD is in docker's default set: making a node works, opening it must not (the
    // loop control device 10:237 here, which root opens without any other capability;
    // /dev/null, 1:3, stays usable).
    if std::fs::File::open("/dev/loop-control").is_err() {
        eprintln!("skipping: /dev/loop-control cannot be opened on this host");
        return;
    }
    let store = Containers::open(&f.data()).unwrap();
    let (code, out, err) = f
        .run_to_end(
            &store,
            "busybox:test",
            running(&[
                "sh",
                "-c",
                "busybox mknod /lc c 10 237 && echo made; (: < /lc) 2>/dev/null && echo opened; \
                 echo x >/dev/null && echo null-ok",
            ]),
        )
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("made"), "{out}");
    assert!(!out.contains("opened"), "{out}");
    assert!(out.contains("null-ok"), "{out}");
}

/// Fails the test unless no container, snapshot, name or mount is left in the data
/// directory.
fn assert_nothing_left(f: &Fixture, store: &Containers, what: &str) {
    assert!(store.list().unwrap().is_empty(), "{what}: a container");
    assert!(
        store.snapshots().unwrap().list().unwrap().is_empty(),
        "{what}: a snapshot"
    );
    let entries = |dir: PathBuf| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            // The last statuses of containers removed earlier (`removed_status`) are the
            // store's; a refused run adds none (it never had a status).
            .filter(|n| n != ".exits")
            .collect()
    };
    assert_eq!(
        entries(f.data().join("containers")),
        [".names"],
        "{what}: a container's directory"
    );
    assert!(
        entries(f.data().join("containers/.names")).is_empty(),
        "{what}: a name"
    );
    assert!(
        entries(f.data().join("snapshots/containers")).is_empty(),
        "{what}: a snapshot's directory"
    );
    assert_eq!(mounts_under(&f.data()), 0, "{what}: a mount");
}

fn run_rm_leaves_nothing_when_the_spec_fails_before_start(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    // No Cmd in the image and none given; and an unknown user.
    f.import(
        &f.dir.path().join("rootfs"),
        "local/nocmd:1",
        &[("cmd", "")],
    );
    let mut nocmd = running(&[]);
    nocmd.rm = true;
    nocmd.name = Some("nocmd".into());
    let mut nouser = running(&["sh"]);
    nouser.rm = true;
    nouser.name = Some("nouser".into());
    nouser.opts.user = Some("nosuchuser".into());
    for (image, req) in [("local/nocmd:1", nocmd), ("busybox:test", nouser)] {
        let what = format!("{image} as {:?}", req.name);
        let run = f.image_named(image);
        match f.rt.block_on(store.run(&run, req)) {
            Err(e) => eprintln!("{what}: refused: {}", oci_rs_runtime::chain(&e)),
            Ok((id, _)) => panic!("{what}: ran as {id}"),
        }
        assert_nothing_left(f, &store, &what);
    }
}

fn missing_or_unrunnable_programs_exit_127_and_126(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let (code, _, err) = f
        .run_to_end(&store, "busybox:test", running(&["nosuchprogram"]))
        .unwrap();
    assert_eq!(code, 127, "{err}");
    assert!(
        err.contains("\"nosuchprogram\": executable file not found in $PATH"),
        "{err}"
    );
    // A file that is not a program: /bin is a directory.
    let (code, _, err) = f
        .run_to_end(&store, "busybox:test", running(&["/bin"]))
        .unwrap();
    assert_eq!(code, 126, "{err}");
}

fn rmi_keeps_what_a_container_uses(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let id = f
        .run(&store, detached(Some("user"), "echo x > /made"))
        .unwrap();
    assert_eq!(store.wait("user").unwrap(), 0);
    let names = ["busybox:test".to_owned()];
    let listed = |name: &str| {
        f.rt.block_on(f.store.list())
            .unwrap()
            .iter()
            .any(|r| r.repository.ends_with(name))
    };
    // Refused by the image store, naming the container's snapshot; and by the container
    // store, naming the container as the user knows it.
    match f.rt.block_on(f.store.remove(&names, false)) {
        Err(oci_rs_layer::Error::ImageInUse { image, container }) => {
            assert_eq!((image.as_str(), container.as_str()), ("busybox:test", &*id));
        }
        other => panic!("ImageStore::remove of a used image: {other:?}"),
    }
    match f.rt.block_on(store.remove_images(&f.store, &names, false)) {
        Err(e @ EngineError::ImageInUse { .. }) => {
            assert!(e.to_string().contains("container user ("), "{e}");
        }
        other => panic!("Containers::remove_images of a used image: {other:?}"),
    }
    assert!(listed("busybox"), "the refused image lost its name");
    // Forced: untagged, but the container can still be committed from its image.
    f.rt.block_on(store.remove_images(&f.store, &names, true))
        .unwrap();
    assert!(!listed("busybox"), "forced, the image keeps its name");
    f.rt.block_on(store.commit(
        &f.store,
        "user",
        Some("local/after:1"),
        &CommitOptions::default(),
        true,
    ))
    .unwrap();
    let (code, out, err) = f
        .run_to_end(&store, "local/after:1", running(&["cat", "/made"]))
        .unwrap();
    assert_eq!((code, out.as_str()), (0, "x\n"), "{err}");
    store.remove("user", false).unwrap();
}

/// A host directory with a marker file whose content a container must never read.
fn host_marker(dir: &Path) -> (PathBuf, String) {
    let host = dir.join("host");
    std::fs::create_dir_all(&host).unwrap();
    let secret = format!("host-secret-{}", std::process::id());
    std::fs::write(host.join("marker"), &secret).unwrap();
    (host.join("marker"), secret)
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

/// Fails the test if anything of the probe reached the host: `text` is everything the run
/// said (its output, or its error).
fn assert_not_escaped(marker: &Path, secret: &str, what: &str, text: &str) {
    assert!(
        !text.contains(secret),
        "{what}: read the host's file: {text}"
    );
    assert!(
        !marker.with_file_name("pwned").exists(),
        "{what}: wrote a file on the host"
    );
}

/// CVE-2024-21626 through the request's working directory and through an image's
/// `WorkingDir` (the embedder asks for nothing): for every descriptor number the run fails
/// or stays in the root.
fn a_working_directory_through_proc_self_fd_never_reaches_the_host(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let (marker, secret) = host_marker(f.dir.path());
    let probe = cwd_escape_probe(&marker);
    let said = |r: Result<(i32, String, String), EngineError>| match r {
        Ok((code, out, err)) => format!("exit {code}: {out}{err}"),
        Err(e) => oci_rs_runtime::chain(&e),
    };
    for n in 3..=24 {
        let cwd = format!("/proc/self/fd/{n}");
        let mut req = running(&["sh", "-c", &probe]);
        req.opts.workdir = Some(cwd.clone());
        let text = said(f.run_to_end(&store, "busybox:test", req));
        assert_not_escaped(&marker, &secret, &format!("workdir {cwd}"), &text);
        let image = format!("local/hostile-cwd:{n}");
        f.import(
            &f.dir.path().join("rootfs"),
            &image,
            &[("workdir", cwd.as_str())],
        );
        let text = said(f.run_to_end(&store, &image, running(&["sh", "-c", &probe])));
        assert_not_escaped(&marker, &secret, &format!("image WorkingDir {cwd}"), &text);
    }
    assert!(store.list().unwrap().is_empty());
}

/// CVE-2024-21626 through a hostile Dockerfile: `WORKDIR /proc/self/fd/N` before a `RUN`.
fn a_dockerfile_workdir_through_proc_self_fd_never_reaches_the_host(f: &Fixture) {
    let (marker, secret) = host_marker(f.dir.path());
    let probe = cwd_escape_probe(&marker);
    let context = f.dir.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    let output = f.dir.path().join("run-output");
    for n in 3..=24 {
        let dockerfile = format!("FROM busybox:test\nWORKDIR /proc/self/fd/{n}\nRUN {probe}\n");
        // Every RUN step's output into one file, read after the build.
        let log = std::fs::File::create(&output).unwrap();
        let opts = BuildOptions {
            tags: vec!["local/hostile-build:1".into()],
            run_output: Some(std::sync::Arc::new(log.into())),
            ..BuildOptions::default()
        };
        let events = Box::new(|_: BuildEvent<'_>| {});
        let result = DockerfileBuild::new(
            &f.store,
            BuildSources::default(),
            &dockerfile,
            Some(&context),
            opts,
            events,
        )
        .and_then(|b| f.rt.block_on(b.build()));
        let mut text = std::fs::read_to_string(&output).unwrap();
        if let Err(e) = &result {
            text.push_str(&oci_rs_runtime::chain(e));
        }
        assert_not_escaped(&marker, &secret, &format!("build WORKDIR fd {n}"), &text);
    }
}

/// `export` streams the container's files where they are: a 16 GiB sparse file made in the
/// container (no disk used) keeps its holes in the tar (it was written out as zeros),
/// deleted image files are absent, and nothing is left in the container's directory.
fn export_streams_in_place_and_keeps_holes(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let id = f
        .run(
            &store,
            detached(
                Some("holes"),
                "truncate -s 16G /big && echo tail >> /big && rm /bin/cat",
            ),
        )
        .unwrap();
    assert_eq!(
        store.wait("holes").unwrap(),
        0,
        "{:?}",
        logs(&store, "holes")
    );
    let out = f.dir.path().join("holes.tar");
    f.rt.block_on(async {
        let file = tokio::fs::File::create(&out).await.unwrap();
        store.export(&f.store, "holes", file).await.unwrap();
    });
    let size = std::fs::metadata(&out).unwrap().len();
    assert!(size < 16 << 20, "{size} bytes exported");
    let listing = Command::new("tar").arg("-tvf").arg(&out).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("17179869189"), "{listing}");
    assert!(listing.contains("bin/busybox"), "{listing}");
    assert!(!listing.contains("bin/cat"), "{listing}");
    let snap = f.data().join("snapshots/containers").join(&id);
    let left: Vec<_> = std::fs::read_dir(&snap)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    store.remove("holes", false).unwrap();
}

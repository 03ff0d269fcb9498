//! The image verbs that need a running container, through [`Containers`] and the image
//! store: `commit` of a running container, frozen while its changes are read and thawed
//! after, with the message, author and changes it is given, and `pause: false` leaving it
//! running throughout. The image store's own verbs (names, ids and prefixes, history, prune,
//! save and load, pulls that unpack) are tested in oci-rs-layer's `tests/image_store.rs`;
//! what the command line prints, in the examples' `tests/image_verbs.rs`.

use crate::fixture::{busybox_rootfs, detached, until, Fixture};
use crate::Test;
use oci_rs_layer::CommitOptions;
use oci_rs_runtime::{Containers, MonitorState};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub const TESTS: &[Test] = &[(
    "commit_pauses_a_running_container_and_records_message_author_and_changes",
    commit_pauses_a_running_container_and_records_message_author_and_changes,
)];

/// The freezer of process `pid`'s cgroup: the file that says whether it is frozen, and the
/// lines it holds when frozen and when thawed (v1 `freezer.state`, v2 `cgroup.events`).
fn freezer_of(pid: i32) -> Option<(PathBuf, &'static str, &'static str)> {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    if let Some(path) = cg
        .lines()
        .find_map(|l| l.split_once(":freezer:").map(|(_, p)| p.to_owned()))
    {
        let state = PathBuf::from(format!("/sys/fs/cgroup/freezer{path}/freezer.state"));
        return Some((state, "FROZEN", "THAWED"));
    }
    let unified = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let path = cg.lines().find_map(|l| l.strip_prefix("0::"))?;
    let events = PathBuf::from(format!("/sys/fs/cgroup{path}/cgroup.events"));
    (unified && events.exists()).then_some((events, "frozen 1", "frozen 0"))
}

/// Whether the freezer file `state` holds the line `line` now.
fn holds(state: &std::path::Path, line: &str) -> bool {
    std::fs::read_to_string(state).is_ok_and(|s| s.lines().any(|l| l.trim() == line))
}

/// Runs `during` while a thread watches the freezer file `state` every 200 µs; whether it
/// saw the line `frozen`.
fn watching<T>(
    state: &std::path::Path,
    frozen: &'static str,
    during: impl FnOnce() -> T,
) -> (T, bool) {
    let seen = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, stop, state) = (seen.clone(), stop.clone(), state.to_owned());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if holds(&state, frozen) {
                    seen.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        })
    };
    let out = during();
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    (out, seen.load(Ordering::Relaxed))
}

fn commit_pauses_a_running_container_and_records_message_author_and_changes(f: &Fixture) {
    let root = f.dir.path().join("bb");
    busybox_rootfs(&root);
    f.import(&root, "bb:1", &[]);
    let store = Containers::open(&f.data()).unwrap();
    // 40 MB of changes, so the commit lasts long enough to be seen frozen.
    let mut req = detached(
        Some("w"),
        "head -c 40000000 /dev/urandom > /big; while :; do sleep 0.05; done",
    );
    req.opts.env = vec!["FROM_RUN=1".into()];
    req.opts.workdir = Some("/".into());
    let (id, _) =
        f.rt.block_on(store.run(&f.image_named("bb:1"), req))
            .unwrap();
    let big = store
        .snapshots()
        .unwrap()
        .open(&id)
        .unwrap()
        .rootfs
        .join("big");
    until("the big file", || {
        std::fs::metadata(&big).is_ok_and(|m| m.len() == 40_000_000)
    });
    let pid = store.view("w").unwrap().status.pid;
    let freezer = freezer_of(pid);
    if freezer.is_none() {
        eprintln!("skipping the freeze checks: no freezer file for the container's cgroup");
    }
    let how = CommitOptions {
        message: Some("a message".into()),
        author: Some("Ada <ada@example.org>".into()),
        changes: vec!["ENV STAGE=two".into()],
        ..CommitOptions::default()
    };
    let before = oci_rs_image::now_ns();
    let commit = || {
        f.rt.block_on(store.commit(&f.store, "w", Some("snap:1"), &how, true))
    };
    let made = match &freezer {
        Some((state, frozen, thawed)) => {
            let (made, seen) = watching(state, frozen, commit);
            assert!(seen, "not frozen during the commit");
            assert!(holds(state, thawed), "not thawed after the commit");
            made
        }
        None => commit(),
    };
    let made = made.unwrap();
    let after = oci_rs_image::now_ns();
    assert_eq!(store.view("w").unwrap().status.state, MonitorState::Running);

    // The image: its author and changes, and its history's top row for the commit.
    let run =
        f.rt.block_on(f.store.image_for_run("snap:1", None, None, |_| {}))
            .unwrap();
    assert_eq!(run.manifest.digest(), made.digest());
    assert_eq!(
        run.config.author().as_deref(),
        Some("Ada <ada@example.org>")
    );
    let env = run.config.config().clone().unwrap().env().clone().unwrap();
    assert!(env.contains(&"STAGE=two".to_owned()), "{env:?}");
    // docker commits the container's Config: the run's environment and command too.
    assert!(env.contains(&"FROM_RUN=1".to_owned()), "{env:?}");
    let cmd = run.config.config().clone().unwrap().cmd().clone().unwrap();
    assert_eq!(cmd[..2], ["sh".to_owned(), "-c".to_owned()], "{cmd:?}");
    let history = f.rt.block_on(f.store.history("snap:1")).unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    let top = &history[0];
    assert_eq!(top.created_by, "oci commit w");
    assert_eq!(top.comment, "a message");
    let created = top.created.unwrap();
    assert!(
        (before..=after).contains(&created),
        "the commit's own time: {before} <= {created} <= {after}"
    );
    assert!(top.size > 40_000_000, "the layer holds /big: {}", top.size);
    // And it runs, with the file the container wrote.
    let wc = detached(None, "wc -c < /big");
    let (code, out, err) = f.run_to_end(&store, "snap:1", wc).unwrap();
    assert_eq!((code, out.trim()), (0, "40000000"), "{err}");

    // pause: false leaves it running throughout.
    let commit = || {
        f.rt.block_on(store.commit(&f.store, "w", Some("snap:2"), &how, false))
    };
    match &freezer {
        Some((state, frozen, _)) => {
            let (made, seen) = watching(state, frozen, commit);
            made.unwrap();
            assert!(!seen, "frozen by a commit without pause");
        }
        None => {
            commit().unwrap();
        }
    }
    assert_eq!(store.view("w").unwrap().status.state, MonitorState::Running);
    store.remove("w", true).unwrap();
}

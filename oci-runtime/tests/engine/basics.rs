//! The first things an embedder does: a detached container by name, unique names, `--rm`,
//! named volumes, a build whose image runs, exec, restart policies, start and prune.

use crate::fixture::{detached, logs, read_in, until, Fixture};
use crate::Test;
use oci_rs_runtime::{
    BuildError, BuildEvent, BuildOptions, BuildSources, Containers, DockerfileBuild, EngineError,
    MonitorState, RunImage, Volumes,
};
use std::time::Duration;

pub const TESTS: &[Test] = &[
    ("a_detached_container_by_name", a_detached_container_by_name),
    (
        "names_are_unique_and_a_refused_run_leaves_nothing",
        names_are_unique_and_a_refused_run_leaves_nothing,
    ),
    (
        "rm_is_done_by_the_monitor_through_the_library",
        rm_is_done_by_the_monitor_through_the_library,
    ),
    (
        "a_named_volume_is_filled_from_the_image_and_kept_while_used",
        a_named_volume_is_filled_from_the_image_and_kept_while_used,
    ),
    (
        "a_dockerfile_builds_into_the_store_and_its_image_runs",
        a_dockerfile_builds_into_the_store_and_its_image_runs,
    ),
    (
        "a_failing_run_step_is_a_typed_error_with_its_output",
        a_failing_run_step_is_a_typed_error_with_its_output,
    ),
    (
        "exec_runs_with_the_containers_process_and_the_requests_changes",
        exec_runs_with_the_containers_process_and_the_requests_changes,
    ),
    (
        "on_failure_restarts_at_most_max_times",
        on_failure_restarts_at_most_max_times,
    ),
    (
        "start_runs_an_exited_container_again_and_prune_removes_it",
        start_runs_an_exited_container_again_and_prune_removes_it,
    ),
    (
        "stop_and_rm_of_an_rm_container_always_succeed",
        stop_and_rm_of_an_rm_container_always_succeed,
    ),
];

fn a_detached_container_by_name(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let id = f
        .run(
            &store,
            detached(
                Some("web"),
                "trap 'exit 3' TERM; echo hello; echo oops >&2; sleep 60 & wait",
            ),
        )
        .unwrap();
    assert_eq!(store.resolve("web").unwrap(), id);
    assert_eq!(store.resolve(&id[..10]).unwrap(), id);
    until("the container's output", || {
        logs(&store, "web").0 == "hello\n"
    });
    assert_eq!(logs(&store, "web").1, "oops\n");
    let v = store.view("web").unwrap();
    assert_eq!(v.status.state, MonitorState::Running);
    assert_eq!(v.config.image, "busybox:test");
    // The shell's child shows its own command line once it has executed `sleep`.
    until("sleep in the container's processes", || {
        store
            .top("web")
            .unwrap()
            .iter()
            .any(|p| p.command == "sleep 60")
    });
    // Removing a running container needs force, and leaves it running.
    assert!(matches!(
        store.remove("web", false),
        Err(EngineError::WrongState { .. })
    ));
    let st = store.stop("web", Duration::from_secs(5)).unwrap();
    assert_eq!(st.state, MonitorState::Exited);
    // The stop signal reached the shell, whose trap ended it (not SIGKILL's 137).
    assert_eq!(store.wait("web").unwrap(), 3);
    let doc = serde_json::to_value(store.inspect("web").unwrap()).unwrap();
    assert_eq!(doc["Name"], "/web");
    assert_eq!(doc["State"]["ExitCode"], 3);
    store.remove("web", false).unwrap();
    assert!(matches!(
        store.resolve("web"),
        Err(EngineError::NoSuchContainer(_))
    ));
    assert!(store.snapshots().unwrap().info(&id).is_err());
    assert!(store.list().unwrap().is_empty());
}

fn names_are_unique_and_a_refused_run_leaves_nothing(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let first = f
        .run(&store, detached(Some("db"), "exec sleep 60"))
        .unwrap();
    match f.run(&store, detached(Some("db"), "true")) {
        Err(EngineError::NameInUse { name, by }) => {
            assert_eq!(name, "db");
            assert_eq!(by, first);
        }
        other => panic!("a second db: {other:?}"),
    }
    assert!(matches!(
        f.run(&store, detached(Some("-bad/name"), "true")),
        Err(EngineError::InvalidName { .. })
    ));
    let mut bad = detached(Some("late"), "true");
    bad.stop_signal = Some("SIGNOPE".into());
    assert!(matches!(f.run(&store, bad), Err(EngineError::Runtime(_))));
    // Publishing a port without a network is refused after the name was reserved: the
    // name and everything else made for it are released.
    let mut no_net = detached(Some("ports"), "true");
    no_net.publish = oci_rs_runtime::parse_publish("8080:80").unwrap();
    assert!(f.run(&store, no_net).is_err());
    assert!(store.resolve("ports").is_err());
    let ids: Vec<String> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|v| v.config.id)
        .collect();
    assert_eq!(ids, vec![first.clone()]);
    assert_eq!(store.snapshots().unwrap().list().unwrap().len(), 1);
    // A generated name for a run without one.
    let other = f.run(&store, detached(None, "true")).unwrap();
    let name = store.view(&other).unwrap().config.name;
    assert!(name.contains('_'), "{name}");
    store.remove("db", true).unwrap();
    store.remove(&other, true).unwrap();
    assert!(store.list().unwrap().is_empty());
}

fn rm_is_done_by_the_monitor_through_the_library(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let mut req = detached(Some("once"), "echo done");
    req.rm = true;
    let id = f.run(&store, req).unwrap();
    store.wait_removed(&id, Duration::from_secs(20));
    assert!(
        matches!(store.resolve("once"), Err(EngineError::NoSuchContainer(_))),
        "the monitor did not remove the container"
    );
    assert!(!f.data().join("containers").join(&id).exists());
    assert!(!f.data().join("containers/.names/once").exists());
    assert!(store.snapshots().unwrap().info(&id).is_err());
}

fn a_named_volume_is_filled_from_the_image_and_kept_while_used(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let mut req = detached(Some("user"), "echo more > /data/new; exec sleep 60");
    req.volumes = vec![("vol1".into(), "/data".into(), false)];
    f.run(&store, req).unwrap();
    let vols = Volumes::open(&f.data()).unwrap();
    let info = vols.inspect("vol1").unwrap();
    until("the container's write", || {
        info.mountpoint.join("new").exists()
    });
    assert_eq!(
        std::fs::read_to_string(info.mountpoint.join("seed")).unwrap(),
        "from the image\n"
    );
    match store.remove_volume("vol1") {
        Err(EngineError::VolumeInUse { name, container }) => {
            assert_eq!((name.as_str(), container.as_str()), ("vol1", "user"));
        }
        other => panic!("removing a used volume: {other:?}"),
    }
    store.remove("user", true).unwrap();
    // The volume outlives its container, and goes once nothing uses it.
    assert!(info.mountpoint.join("new").exists());
    store.remove_volume("vol1").unwrap();
    assert!(matches!(
        vols.inspect("vol1"),
        Err(EngineError::NoSuchVolume(_))
    ));
}

fn build(
    f: &Fixture,
    dockerfile: &str,
    files: &[(&str, &str)],
    events: &mut Vec<String>,
) -> Result<oci_rs_runtime::Built, BuildError> {
    let context = f.dir.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    for (name, text) in files {
        std::fs::write(context.join(name), text).unwrap();
    }
    let opts = BuildOptions {
        tags: vec!["local/built:1".into()],
        ..BuildOptions::default()
    };
    let seen = std::sync::Mutex::new(Vec::new());
    let result = {
        let record = Box::new(|e: BuildEvent<'_>| {
            let line = match e {
                BuildEvent::Step { instruction, .. } => format!("step {instruction}"),
                BuildEvent::Cached { .. } => "cached".into(),
                BuildEvent::Done { .. } => "done".into(),
                BuildEvent::FailedOutput { log, .. } => {
                    let mut out = String::new();
                    std::io::Read::read_to_string(log, &mut out).unwrap();
                    format!("output {out}")
                }
                other => format!("{other:?}"),
            };
            seen.lock().unwrap().push(line);
        });
        let b = DockerfileBuild::new(
            &f.store,
            BuildSources::default(),
            dockerfile,
            Some(&context),
            opts,
            record,
        )?;
        f.rt.block_on(b.build())
    };
    events.extend(seen.into_inner().unwrap());
    result
}

fn a_dockerfile_builds_into_the_store_and_its_image_runs(f: &Fixture) {
    let dockerfile = "FROM busybox:test\nRUN echo built > /built\nCOPY hello.txt /srv/\n\
                      CMD [\"cat\", \"/built\", \"/srv/hello.txt\"]\n";
    let mut events = Vec::new();
    let built = build(f, dockerfile, &[("hello.txt", "hello\n")], &mut events).unwrap();
    assert_eq!((built.ran, built.cached), (3, 0), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("step") && e.contains("FROM busybox:test")),
        "{events:?}"
    );
    // Named in the store; its id is the config digest.
    let found = f.rt.block_on(f.store.find("local/built:1")).unwrap();
    assert_eq!(found.names, ["docker.io/local/built:1"]);
    let run =
        f.rt.block_on(f.store.image_for_run("local/built:1", None, None, |_| {}))
            .unwrap();
    assert_eq!(run.config_digest, built.id);
    // A rebuild takes every step from the cache and makes the same image.
    let mut again = Vec::new();
    let rebuilt = build(f, dockerfile, &[], &mut again).unwrap();
    assert_eq!((rebuilt.ran, rebuilt.cached), (0, 3), "{again:?}");
    assert_eq!(rebuilt.id, built.id);
    // And it runs.
    let store = Containers::open(&f.data()).unwrap();
    let image = RunImage::from_store(&f.store, run, "local/built:1");
    let mut req = detached(Some("built"), "");
    req.opts.args = Vec::new();
    let (id, _) = f.rt.block_on(store.run(&image, req)).unwrap();
    assert_eq!(store.wait(&id).unwrap(), 0);
    assert_eq!(logs(&store, "built").0, "built\nhello\n");
    store.remove("built", false).unwrap();
}

fn a_failing_run_step_is_a_typed_error_with_its_output(f: &Fixture) {
    let mut events = Vec::new();
    let err = build(
        f,
        "FROM busybox:test\nRUN echo about to fail; exit 3\n",
        &[],
        &mut events,
    )
    .unwrap_err();
    match &err {
        BuildError::RunFailed {
            place,
            process,
            code,
            ..
        } => {
            assert_eq!(process, "/bin/sh -c echo about to fail; exit 3");
            assert_eq!(*code, 3);
            assert!(place.starts_with("Dockerfile:2: RUN"), "{place}");
        }
        other => panic!("a failing RUN: {other:?}"),
    }
    assert!(
        events.iter().any(|e| e == "output about to fail\n"),
        "{events:?}"
    );
    let mut none = Vec::new();
    assert!(matches!(
        build(f, "FROM busybox:test\nFROBNICATE x\n", &[], &mut none),
        Err(BuildError::Syntax { line: 2, .. }) | Err(BuildError::Instruction { .. })
    ));
    // No FROM: refused before anything runs, at the line.
    assert!(matches!(
        build(f, "RUN true\n", &[], &mut none),
        Err(BuildError::Instruction { place, .. }) if place == "Dockerfile:1: RUN true"
    ));
}

fn exec_runs_with_the_containers_process_and_the_requests_changes(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let mut req = detached(Some("target"), "exec sleep 60");
    req.opts.env = vec!["FROM_RUN=1".into()];
    f.run(&store, req).unwrap();
    let exec = |args: &[&str], env: &[&str], dir: Option<&str>, user: Option<&str>| {
        let req = oci_rs_runtime::ExecRequest {
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env.iter().map(|a| a.to_string()).collect(),
            workdir: dir.map(str::to_owned),
            user: user.map(str::to_owned),
            ..Default::default()
        };
        store.exec("target", &req).unwrap()
    };
    let script = "echo $FROM_RUN:$ADDED:$(pwd):$(id -u):$(id -g) > /tmp/out";
    assert_eq!(
        exec(
            &["sh", "-c", script],
            &["ADDED=2"],
            Some("/data"),
            Some("1234:5678")
        ),
        0
    );
    assert_eq!(
        read_in(&store, "target", "tmp/out"),
        "1:2:/data:1234:5678\n"
    );
    assert_eq!(exec(&["sh", "-c", "exit 7"], &[], None, None), 7);
    store.stop("target", Duration::from_secs(1)).unwrap();
    // Not running: a typed refusal, nothing run.
    let refused = store.exec("target", &oci_rs_runtime::ExecRequest::default());
    assert!(
        matches!(refused, Err(EngineError::WrongState { .. })),
        "{refused:?}"
    );
    store.remove("target", false).unwrap();
}

fn on_failure_restarts_at_most_max_times(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let mut req = detached(Some("flaky"), "echo run >> /data/runs; exit 3");
    req.restart = oci_rs_runtime::RestartPolicy::OnFailure { max: Some(2) };
    f.run(&store, req).unwrap();
    assert_eq!(store.wait("flaky").unwrap(), 3);
    let v = store.view("flaky").unwrap();
    assert_eq!(v.status.restart_count, 2);
    assert_eq!(v.status.state, MonitorState::Exited);
    // One filesystem across the restarts: the first run and both restarts wrote to it.
    assert_eq!(read_in(&store, "flaky", "data/runs"), "run\nrun\nrun\n");
    store.remove("flaky", false).unwrap();
}

fn start_runs_an_exited_container_again_and_prune_removes_it(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    f.run(&store, detached(Some("again"), "echo once >> /data/log"))
        .unwrap();
    assert_eq!(store.wait("again").unwrap(), 0);
    store.start("again", false).unwrap();
    assert_eq!(store.wait("again").unwrap(), 0);
    assert_eq!(read_in(&store, "again", "data/log"), "once\nonce\n");
    // Starting one that runs is refused.
    f.run(&store, detached(Some("busy"), "exec sleep 60"))
        .unwrap();
    assert!(matches!(
        store.start("busy", false),
        Err(EngineError::WrongState { .. })
    ));
    // prune takes the exited one only.
    let gone = store.prune().unwrap();
    assert_eq!(gone.len(), 1);
    assert!(store.resolve("again").is_err());
    store.remove("busy", true).unwrap();
    assert!(store.list().unwrap().is_empty());
}

/// A container run with `rm` is removed by its monitor as it ends; a stop or a forced
/// remove racing that removal succeeds, and leaves nothing.
fn stop_and_rm_of_an_rm_container_always_succeed(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    for round in 0..8 {
        for stop in [true, false] {
            let mut req = detached(None, "exec sleep 30");
            req.rm = true;
            let id = f.run(&store, req).unwrap();
            if stop {
                store.stop(&id, Duration::from_secs(1)).unwrap();
            } else {
                store.remove(&id, true).unwrap();
            }
            until(&format!("round {round}: nothing left"), || {
                store.list().unwrap().is_empty()
            });
            assert!(store.snapshots().unwrap().list().unwrap().is_empty());
        }
    }
}

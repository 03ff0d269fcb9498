//! The first things an embedder does: a detached container by name, unique names, `--rm`,
//! named volumes, a build whose image runs, exec, restart policies, start and prune.

use crate::fixture::{busybox_rootfs, detached, logs, read_in, until, Fixture};
use crate::Test;
use oci_rs_runtime::{
    BuildError, BuildEvent, BuildOptions, BuildSources, Containers, DockerfileBuild, EngineError,
    MonitorState, RunImage, Volumes,
};
use std::time::Duration;

pub const TESTS: &[Test] = &[
    ("a_detached_container_by_name", a_detached_container_by_name),
    (
        "bind_and_tmpfs_volumes_of_the_local_driver",
        bind_and_tmpfs_volumes_of_the_local_driver,
    ),
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
        "a_restart_policy_changed_while_running_applies_at_its_exit",
        a_restart_policy_changed_while_running_applies_at_its_exit,
    ),
    (
        "anonymous_volumes_come_and_go_with_their_container",
        anonymous_volumes_come_and_go_with_their_container,
    ),
    ("a_stop_timeout_of_its_own", a_stop_timeout_of_its_own),
    ("a_container_without_a_log", a_container_without_a_log),
    (
        "volumes_from_another_container",
        volumes_from_another_container,
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
    // A restart keeps a `--rm` container (dockerd's), which still goes when it ends.
    let mut req = detached(Some("again"), "exec sleep 60");
    req.rm = true;
    let id = f.run(&store, req).unwrap();
    store
        .restart("again", Some(Duration::from_secs(1)))
        .unwrap();
    let v = store.view("again").unwrap();
    assert_eq!(v.status.state, oci_rs_runtime::MonitorState::Running);
    store.stop("again", Duration::from_secs(1)).unwrap();
    store.wait_removed(&id, Duration::from_secs(20));
    assert!(matches!(
        store.resolve("again"),
        Err(EngineError::NoSuchContainer(_))
    ));
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

/// docker's `update --restart` on a running container: its monitor applies the new policy
/// when the container exits; a `--rm` container refuses one that would restart it.
fn a_restart_policy_changed_while_running_applies_at_its_exit(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    f.run(
        &store,
        detached(Some("later"), "echo run >> /data/runs; sleep 1; exit 3"),
    )
    .unwrap();
    let policy = oci_rs_runtime::RestartPolicy::OnFailure { max: Some(1) };
    store.set_restart("later", policy).unwrap();
    assert_eq!(store.wait("later").unwrap(), 3);
    let v = store.view("later").unwrap();
    assert_eq!((v.status.restart_count, v.config.restart), (1, policy));
    assert_eq!(read_in(&store, "later", "data/runs"), "run\nrun\n");
    store.remove("later", false).unwrap();
    let mut req = detached(Some("gone"), "sleep 5");
    req.rm = true;
    f.run(&store, req).unwrap();
    let refused = store.set_restart("gone", oci_rs_runtime::RestartPolicy::Always);
    assert!(refused.is_err(), "{refused:?}");
    store.remove("gone", true).unwrap();
}

/// Anonymous volumes as docker makes them: `-v /data` and the image's `VOLUME` each get a
/// volume of a random name with the image's files in it (a mount over the path takes the
/// image's place), labelled anonymous; `remove_with_volumes` (`rm -v`) removes them, a
/// plain `remove` keeps them, and a `--rm` container's monitor removes them.
fn anonymous_volumes_come_and_go_with_their_container(f: &Fixture) {
    let root = f.dir.path().join("vol-image");
    busybox_rootfs(&root);
    std::fs::create_dir_all(root.join("seeded")).unwrap();
    std::fs::write(root.join("seeded/file"), "from the image\n").unwrap();
    f.import(
        &root,
        "vols:1",
        &[("volume", "/seeded"), ("volume", "/covered")],
    );
    let store = Containers::open(&f.data()).unwrap();
    let volumes = oci_rs_runtime::Volumes::open(&f.data()).unwrap();
    let anonymous = || {
        volumes
            .list()
            .unwrap()
            .into_iter()
            .filter(|v| {
                v.labels
                    .contains_key(oci_rs_runtime::ANONYMOUS_VOLUME_LABEL)
            })
            .count()
    };
    let run = |name: &str, rm: bool, script: &str| {
        let mut req = detached(Some(name), script);
        req.rm = rm;
        req.volumes = vec![
            (String::new(), "/scratch".into(), false),
            ("named".into(), "/covered".into(), false),
        ];
        let image = f.image_named("vols:1");
        f.rt.block_on(store.run(&image, req)).unwrap().0
    };
    run("a", false, "cat /seeded/file; echo kept > /scratch/x");
    assert_eq!(store.wait("a").unwrap(), 0);
    assert_eq!(logs(&store, "a").0, "from the image\n");
    let v = store.view("a").unwrap();
    let targets: Vec<&str> = v.config.volumes.iter().map(|x| x.1.as_str()).collect();
    assert_eq!(targets, ["/scratch", "/covered", "/seeded"]);
    assert_eq!(v.config.volumes[0].0.len(), 64);
    assert_eq!(anonymous(), 2);
    store.remove("a", false).unwrap();
    assert_eq!(anonymous(), 2, "a plain remove keeps them");
    run("b", false, "true");
    store.wait("b").unwrap();
    assert_eq!(anonymous(), 4);
    store.remove_with_volumes("b", false).unwrap();
    assert_eq!(anonymous(), 2);
    assert!(volumes.inspect("named").is_ok(), "a named volume stays");
    let id = run("c", true, "true");
    store.wait_removed(&id, std::time::Duration::from_secs(20));
    assert_eq!(anonymous(), 2, "--rm took its own");
    // Filters and prunes: a prune takes the unused anonymous volumes only unless `all=true`,
    // and never one a container uses.
    use oci_rs_runtime::VolumeFilter;
    let filter = |terms: &[&str]| {
        VolumeFilter::parse(&terms.iter().map(|t| t.to_string()).collect::<Vec<_>>()).unwrap()
    };
    let names =
        |v: Vec<oci_rs_runtime::VolumeInfo>| v.into_iter().map(|v| v.name).collect::<Vec<_>>();
    volumes
        .create("labelled", [("team".to_owned(), "a".to_owned())].into())
        .unwrap();
    assert_eq!(
        names(store.list_volumes(&filter(&["label=team=a"])).unwrap()),
        ["labelled"]
    );
    assert!(names(store.list_volumes(&filter(&["label=team=b"])).unwrap()).is_empty());
    run("d", false, "sleep 300");
    assert_eq!(anonymous(), 4, "d has two of its own");
    let in_use = names(store.list_volumes(&filter(&["dangling=false"])).unwrap());
    assert_eq!(in_use.len(), 3, "{in_use:?}");
    assert!(in_use.contains(&"named".to_owned()));
    assert_eq!(store.prune_volumes(&filter(&[])).unwrap().deleted.len(), 2);
    assert_eq!(anonymous(), 2, "d's own stay");
    assert!(store
        .prune_volumes(&filter(&["all=true", "label!=team"]))
        .unwrap()
        .deleted
        .is_empty());
    store.remove_with_volumes("d", true).unwrap();
    let named = volumes.inspect("named").unwrap().mountpoint;
    std::fs::write(named.join("held"), vec![7u8; 10_000]).unwrap();
    let pruned = store.prune_volumes(&filter(&["all=1"])).unwrap();
    let mut gone = pruned.deleted.clone();
    gone.sort();
    assert_eq!(gone, ["labelled", "named"]);
    // What they held is what the prune says it freed.
    assert!(pruned.space_reclaimed >= 10_000, "{pruned:?}");
    assert!(VolumeFilter::parse(&["dangling=maybe".into()]).is_err());
    // `--entrypoint ""`: none, and not the image's Cmd either.
    f.import(
        &root,
        "ep:1",
        &[("entrypoint", "echo from-entrypoint"), ("cmd", "from-cmd")],
    );
    let mut req = detached(Some("ep"), "");
    req.opts.args = vec!["echo".into(), "given".into()];
    req.opts.entrypoint = Some(vec![String::new()]);
    let (code, out, _) = f.run_to_end(&store, "ep:1", req).unwrap();
    assert_eq!((code, out.as_str()), (0, "given\n"));
    let mut req = detached(Some("ep2"), "");
    req.opts.args = Vec::new();
    req.opts.entrypoint = Some(vec!["echo".into(), "only".into()]);
    let (_, out, _) = f.run_to_end(&store, "ep:1", req).unwrap();
    assert_eq!(out, "only\n", "an entrypoint given drops the image's Cmd");
}

/// `--volumes-from`: another container's volumes (named and anonymous) and binds, with
/// their modes or the one asked for; a path the new container mounts itself stays its own.
fn volumes_from_another_container(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let host = f.dir.path().join("bound");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("h"), "from the host\n").unwrap();
    let mut donor = detached(Some("donor"), "echo named > /named/n; echo anon > /anon/a");
    donor.volumes = vec![
        ("shared-vol".into(), "/named".into(), false),
        (String::new(), "/anon".into(), false),
    ];
    donor.opts.mounts.push(oci_rs_runtime::ExtraMount::Bind {
        source: host.clone(),
        target: "/bound".into(),
        readonly: true,
    });
    f.run(&store, donor).unwrap();
    assert_eq!(store.wait("donor").unwrap(), 0);
    let mut req = detached(
        Some("taker"),
        "cat /named/n /anon/a /bound/h; echo x > /named/w 2>/dev/null || echo read-only",
    );
    store.add_volumes_from(&mut req, "donor:ro").unwrap();
    let (code, out, _) = f.run_to_end(&store, "busybox:test", req).unwrap();
    assert_eq!(code, 0);
    assert_eq!(out, "named\nanon\nfrom the host\nread-only\n");
    // Its own mount at a path wins over the donor's.
    let mut req = detached(Some("own"), "cat /named/n 2>/dev/null || echo own");
    req.volumes = vec![("other-vol".into(), "/named".into(), false)];
    store.add_volumes_from(&mut req, "donor").unwrap();
    let (_, out, _) = f.run_to_end(&store, "busybox:test", req).unwrap();
    assert_eq!(out, "own\n");
    assert!(store
        .add_volumes_from(&mut detached(None, ""), "nobody")
        .is_err());
    store.remove_with_volumes("donor", false).unwrap();
}

/// The `none` log driver: nothing is written, and `logs` says why.
fn a_container_without_a_log(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let mut req = detached(Some("nolog"), "echo not kept");
    req.log = oci_rs_runtime::LogLimits::for_driver("none", &[]).unwrap();
    f.run(&store, req).unwrap();
    assert_eq!(store.wait("nolog").unwrap(), 0);
    let got = store.logs("nolog", &Default::default(), false, &mut |_, _| Ok(()));
    assert!(
        matches!(got, Err(EngineError::LogsDisabled(ref n)) if n == "nolog"),
        "{got:?}"
    );
    let log = store.monitor("nolog").unwrap().log_path();
    assert!(std::fs::metadata(&log).map_or(true, |m| m.len() == 0));
    store.remove("nolog", false).unwrap();
}

/// `--stop-timeout`: `stop` without a time waits the container's own before SIGKILL.
fn a_stop_timeout_of_its_own(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let mut req = detached(
        Some("slowstop"),
        "trap '' TERM; while :; do sleep 0.1; done",
    );
    req.stop_timeout = Some(1);
    f.run(&store, req).unwrap();
    let v = store.view("slowstop").unwrap();
    assert_eq!(v.config.stop_timeout(), std::time::Duration::from_secs(1));
    let t = std::time::Instant::now();
    store.stop("slowstop", v.config.stop_timeout()).unwrap();
    let took = t.elapsed();
    assert!(took >= std::time::Duration::from_millis(900), "{took:?}");
    assert_eq!(store.view("slowstop").unwrap().status.exit_code, Some(137));
    store.remove("slowstop", false).unwrap();
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
    assert_eq!(gone.deleted.len(), 1);
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

/// The local driver's options, as compose's `driver_opts` give them: a volume that is a host
/// directory (`type=none,o=bind,device=DIR`), whose files removing the volume leaves alone,
/// and a tmpfs volume with a size; anything else is refused.
fn bind_and_tmpfs_volumes_of_the_local_driver(f: &Fixture) {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: bind and tmpfs volumes are mounts on the host (root only)");
        return;
    }
    let store = Containers::open(&f.data()).unwrap();
    let volumes = oci_rs_runtime::Volumes::open(&f.data()).unwrap();
    let host = f.dir.path().join("host-dir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("hostfile"), "from the host\n").unwrap();
    let opts = |kv: &[(&str, &str)]| {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let dev = host.display().to_string();
    volumes
        .create_with(
            "bound",
            Default::default(),
            opts(&[("type", "none"), ("o", "bind"), ("device", &dev)]),
        )
        .unwrap();
    volumes
        .create_with(
            "mem",
            Default::default(),
            opts(&[("type", "tmpfs"), ("o", "size=1m")]),
        )
        .unwrap();
    let mut req = detached(
        Some("user"),
        "cat /b/hostfile; echo new > /b/new; grep -c ' /m tmpfs' /proc/mounts; \
         head -c 2000000 /dev/zero > /m/big 2>/dev/null || echo full",
    );
    req.volumes = vec![
        ("bound".into(), "/b".into(), false),
        ("mem".into(), "/m".into(), false),
    ];
    let (code, out, _) = f.run_to_end(&store, "busybox:test", req).unwrap();
    assert_eq!((code, out.as_str()), (0, "from the host\n1\nfull\n"));
    assert_eq!(std::fs::read_to_string(host.join("new")).unwrap(), "new\n");
    assert_eq!(volumes.inspect("bound").unwrap().options["device"], dev);
    let _ = store.remove("user", true);
    volumes.remove("bound", &[]).unwrap();
    volumes.remove("mem", &[]).unwrap();
    assert_eq!(
        std::fs::read_to_string(host.join("hostfile")).unwrap(),
        "from the host\n",
        "removing the volume leaves the host's directory alone"
    );
    assert!(host.join("new").exists());
    for bad in [
        opts(&[("type", "nfs"), ("o", "addr=10.0.0.1"), ("device", ":/x")]),
        opts(&[("type", "none"), ("o", "bind"), ("device", "relative/dir")]),
        opts(&[("type", "none"), ("o", "bind,uid=5"), ("device", &dev)]),
        opts(&[("colour", "red")]),
    ] {
        let err = volumes
            .create_with("bad", Default::default(), bad.clone())
            .unwrap_err();
        assert!(
            err.to_string().contains("volume driver options"),
            "{bad:?}: {err}"
        );
        assert!(
            volumes.inspect("bad").is_err(),
            "a refused volume is not kept"
        );
    }
}

//! Health checks run by the monitor: docker's status rules, probe output, time-outs, probes
//! that flood or leave children behind, what a probe's process can see, pause and restart.

use crate::fixture::{detached, until, Fixture};
use crate::Test;
use oci_rs_image::Healthcheck;
use oci_rs_runtime::{Containers, ExecRequest, Health, HealthStatus, MAX_PROBE_OUTPUT};
use std::time::Duration;

pub const TESTS: &[Test] = &[
    (
        "health_follows_the_probe_and_is_recorded_as_docker_records_it",
        health_follows_the_probe_and_is_recorded_as_docker_records_it,
    ),
    (
        "probes_that_hang_flood_or_leave_children_cannot_hold_the_monitor",
        probes_that_hang_flood_or_leave_children_cannot_hold_the_monitor,
    ),
    (
        "no_probe_runs_while_paused_and_a_restart_starts_over",
        no_probe_runs_while_paused_and_a_restart_starts_over,
    ),
];

/// A detached `sleep` container with health check `test` every 200 ms.
fn checked(name: &str, test: &[&str], timeout_ms: u64) -> oci_rs_runtime::RunRequest {
    let mut req = detached(Some(name), "sleep 1000");
    req.opts.healthcheck = Some(Healthcheck {
        test: test.iter().map(|s| s.to_string()).collect(),
        interval: 200_000_000,
        timeout: timeout_ms * 1_000_000,
        retries: 2,
        ..Default::default()
    });
    req
}

fn health(store: &Containers, what: &str) -> Health {
    store
        .view(what)
        .unwrap()
        .status
        .health
        .expect("a health record")
}

fn exec(store: &Containers, what: &str, script: &str) {
    let req = ExecRequest {
        args: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    };
    assert_eq!(store.exec(what, &req).unwrap(), 0);
}

fn health_follows_the_probe_and_is_recorded_as_docker_records_it(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let req = checked("hc", &["CMD-SHELL", "echo probe; test -e /ready"], 5_000);
    f.run(&store, req).unwrap();
    let v = store.view("hc").unwrap();
    assert!(
        v.status.status_text().ends_with("(health: starting)"),
        "{}",
        v.status.status_text()
    );
    assert_eq!(v.config.healthcheck.as_ref().unwrap().retries, 2);
    // Two failures in a row: unhealthy, each result with its code and output.
    until("unhealthy", || {
        health(&store, "hc").status == HealthStatus::Unhealthy
    });
    let h = health(&store, "hc");
    assert!(h.failing_streak >= 2);
    let last = h.log.last().unwrap();
    assert_eq!((last.exit_code, last.output.as_str()), (1, "probe\n"));
    assert!(last.start <= last.end && !last.start.is_empty());
    assert!(store
        .view("hc")
        .unwrap()
        .status
        .status_text()
        .ends_with("(unhealthy)"));
    // The probe runs in the container: what it looks for appears there, and it is healthy.
    exec(&store, "hc", "touch /ready");
    until("healthy", || {
        health(&store, "hc").status == HealthStatus::Healthy
    });
    let h = health(&store, "hc");
    assert_eq!((h.failing_streak, h.log.last().unwrap().exit_code), (0, 0));
    assert!(h.log.len() <= oci_rs_runtime::MAX_HEALTH_LOG);
    // The filters of ps, and the events of each change, with the container's attributes.
    let listed = |term: &str| {
        let f = oci_rs_runtime::ContainerFilter::parse(false, &[term.to_owned()]).unwrap();
        store
            .list()
            .unwrap()
            .iter()
            .filter(|v| f.matches(v))
            .count()
    };
    assert_eq!(
        (listed("health=healthy"), listed("health=unhealthy")),
        (1, 0)
    );
    assert_eq!(listed("health=none"), 0);
    let actions: Vec<_> = store
        .journal()
        .read_since(0)
        .unwrap()
        .into_iter()
        .filter(|e| e.action.starts_with("health_status"))
        .map(|e| (e.action, e.attributes.get("name").cloned()))
        .collect();
    let hc = Some("hc".to_owned());
    assert_eq!(
        actions,
        [
            ("health_status: unhealthy".to_owned(), hc.clone()),
            ("health_status: healthy".to_owned(), hc)
        ]
    );
    // A check docker would refuse is refused before anything is made.
    let mut bad = checked("bad", &["CMD-SHELL", "true"], 5_000);
    bad.opts.healthcheck.as_mut().unwrap().interval = 1_000;
    assert!(f.run(&store, bad).is_err());
    assert!(store.view("bad").is_err());
    store.remove("hc", true).unwrap();
}

fn probes_that_hang_flood_or_leave_children_cannot_hold_the_monitor(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    // Runs past its timeout: killed, -1, docker's message with what it wrote.
    f.run(
        &store,
        checked("slow", &["CMD-SHELL", "echo begun; sleep 30"], 300),
    )
    .unwrap();
    // Writes without end: the first 4096 bytes are kept, "..." marks the cut.
    f.run(
        &store,
        checked("flood", &["CMD-SHELL", "while :; do echo y; done"], 300),
    )
    .unwrap();
    // Leaves a child holding its output open: its result is its own exit.
    f.run(
        &store,
        checked("orphan", &["CMD-SHELL", "sleep 30 & echo left"], 10_000),
    )
    .unwrap();
    // Sees only its stdio: no descriptor of the monitor's reaches it.
    f.run(
        &store,
        checked(
            "fds",
            &["CMD-SHELL", "ls /proc/self/fd | tr '\\n' ' '"],
            5_000,
        ),
    )
    .unwrap();
    for name in ["slow", "flood", "orphan", "fds"] {
        until(name, || !health(&store, name).log.is_empty());
    }
    let first = |name: &str| health(&store, name).log[0].clone();
    let slow = first("slow");
    assert_eq!(slow.exit_code, -1);
    assert_eq!(
        slow.output,
        "Health check exceeded timeout (300ms): begun\n"
    );
    let flood = first("flood");
    assert_eq!(flood.exit_code, -1);
    let prefix = "Health check exceeded timeout (300ms): ";
    assert_eq!(flood.output.len(), prefix.len() + MAX_PROBE_OUTPUT + 3);
    assert!(flood.output.starts_with(&format!("{prefix}y\ny\n")) && flood.output.ends_with("..."));
    let orphan = first("orphan");
    assert_eq!((orphan.exit_code, orphan.output.as_str()), (0, "left\n"));
    assert_eq!(health(&store, "orphan").status, HealthStatus::Healthy);
    let fds = first("fds");
    assert_eq!(fds.exit_code, 0);
    for fd in fds.output.split_whitespace() {
        // 0-2 its stdio, 3 the directory ls reads.
        assert!(
            ["0", "1", "2", "3"].contains(&fd),
            "the probe holds fd {fd}: {}",
            fds.output
        );
    }
    // The monitors still relay and stop: none is held by its probe.
    for name in ["slow", "flood", "orphan", "fds"] {
        store.stop(name, Duration::from_secs(5)).unwrap();
        store.remove(name, true).unwrap();
    }
}

fn no_probe_runs_while_paused_and_a_restart_starts_over(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    f.run(&store, checked("p", &["CMD", "true"], 5_000))
        .unwrap();
    until("healthy", || {
        health(&store, "p").status == HealthStatus::Healthy
    });
    store.pause("p").unwrap();
    let before = health(&store, "p").log.last().unwrap().end.clone();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(health(&store, "p").log.last().unwrap().end, before);
    store.unpause("p").unwrap();
    until("a probe after unpause", || {
        health(&store, "p").log.last().unwrap().end != before
    });
    // Stopped, it keeps its last health; started again, it starts over with the old log.
    store.stop("p", Duration::from_secs(5)).unwrap();
    let kept = health(&store, "p");
    assert_eq!(kept.status, HealthStatus::Healthy);
    assert!(!store
        .view("p")
        .unwrap()
        .status
        .status_text()
        .contains("health"));
    store.start("p", false).unwrap();
    until("started", || {
        store.view("p").unwrap().status.state == oci_rs_runtime::MonitorState::Running
    });
    let again = health(&store, "p");
    assert!(again.status == HealthStatus::Starting || again.log.len() > kept.log.len());
    // The old results stay until five new ones push them out (a second at least).
    assert!(again.log.contains(kept.log.last().unwrap()));
    store.remove("p", true).unwrap();
}

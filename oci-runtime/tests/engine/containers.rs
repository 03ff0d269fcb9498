//! Containers that outlive the call that made them, through [`Containers`] alone: a server
//! on a read-only bind, stop within its timeout or on the process's own handler, logs with
//! tails and rotation, names raced by two stores, exec, binds that an image's links cannot
//! move, named volumes, a killed monitor, docker's defaults and privilege options, a full
//! disk while logging, `init`, a joined network namespace, and restart back-off.

use crate::fixture::{busybox_rootfs, detached, logs, mounts_under, until, Fixture};
use crate::Test;
use oci_rs_runtime::{
    parse_mount_arg, parse_volume_arg, Containers, EngineError, ExecRequest, ExtraMount, LogLimits,
    LogQuery, LogStream, MonitorState, MountArg, NetworkMode, RestartPolicy, RunRequest,
    SeccompChoice, Volumes,
};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const TESTS: &[Test] = &[
    (
        "a_server_on_a_read_only_bind_stops_within_its_timeout",
        a_server_on_a_read_only_bind_stops_within_its_timeout,
    ),
    (
        "two_stores_racing_for_one_name_exactly_one_wins",
        two_stores_racing_for_one_name_exactly_one_wins,
    ),
    (
        "rename_moves_the_name_and_two_renames_to_one_name_race_fairly",
        rename_moves_the_name_and_two_renames_to_one_name_race_fairly,
    ),
    (
        "diff_lists_what_the_container_added_changed_and_deleted",
        diff_lists_what_the_container_added_changed_and_deleted,
    ),
    (
        "logs_rotate_at_their_cap_and_keep_the_newest",
        logs_rotate_at_their_cap_and_keep_the_newest,
    ),
    (
        "exec_sees_the_containers_hostname_and_detached_exec_runs",
        exec_sees_the_containers_hostname_and_detached_exec_runs,
    ),
    (
        "binds_are_written_through_and_image_links_cannot_move_them",
        binds_are_written_through_and_image_links_cannot_move_them,
    ),
    (
        "a_named_volume_copies_the_image_links_as_links",
        a_named_volume_copies_the_image_links_as_links,
    ),
    (
        "a_killed_monitor_is_reconciled_with_the_process_table",
        a_killed_monitor_is_reconciled_with_the_process_table,
    ),
    (
        "defaults_users_rely_on_and_the_privilege_options",
        defaults_users_rely_on_and_the_privilege_options,
    ),
    (
        "a_full_disk_while_logging_keeps_the_container_running_and_says_so",
        a_full_disk_while_logging_keeps_the_container_running_and_says_so,
    ),
    (
        "init_reaps_orphans_and_passes_signals_on",
        init_reaps_orphans_and_passes_signals_on,
    ),
    (
        "a_container_joins_another_containers_network_namespace",
        a_container_joins_another_containers_network_namespace,
    ),
    (
        "restart_always_backs_off_and_shows_restarting",
        restart_always_backs_off_and_shows_restarting,
    ),
];

/// A detached request for `args` (no shell) without a network.
fn command(name: Option<&str>, args: &[&str]) -> RunRequest {
    let mut req = detached(name, "");
    req.opts.args = args.iter().map(|a| a.to_string()).collect();
    req
}

fn state(store: &Containers, what: &str) -> MonitorState {
    store.view(what).unwrap().status.state
}

fn snapshots(store: &Containers) -> usize {
    store.snapshots().unwrap().list().unwrap().len()
}

fn http_get(port: u16, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            return out;
        }
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `-v` / `--mount` arguments as the request's binds and volumes.
fn mount_args(req: &mut RunRequest, volumes: &[&str], mounts: &[&str]) {
    let parsed = volumes
        .iter()
        .map(|v| parse_volume_arg(v))
        .chain(mounts.iter().map(|m| parse_mount_arg(m)));
    for m in parsed {
        match m.unwrap() {
            MountArg::Extra(e) => req.opts.mounts.push(e),
            MountArg::Volume {
                name,
                target,
                readonly,
            } => req.volumes.push((name, target, readonly)),
        }
    }
}

fn a_server_on_a_read_only_bind_stops_within_its_timeout(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let port = free_port();
    let www = f.dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), "served from a bind\n").unwrap();
    let addr = format!("127.0.0.1:{port}");
    let mut req = command(
        Some("web"),
        &["httpd", "-f", "-v", "-p", &addr, "-h", "/www"],
    );
    req.opts.network = NetworkMode::Host;
    mount_args(&mut req, &[&format!("{}:/www:ro", www.display())], &[]);
    let id = f.run(&store, req).unwrap();
    assert_eq!(id.len(), 64, "the full id: {id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(http_get(port, "/index.html").contains("served from a bind"));
    // The access log reaches the logs (busybox httpd -v logs on stderr).
    until("the access log", || {
        logs(&store, "web").1.contains("response:200")
    });
    // httpd as pid 1 has no SIGTERM handler, so the kernel ignores SIGTERM: SIGKILL after 1 s.
    let t = Instant::now();
    let st = store.stop("web", Duration::from_secs(1)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert_eq!(st.exit_code, Some(137));
    assert_eq!(state(&store, "web"), MonitorState::Exited);

    // A process that handles SIGTERM ends on it, well before the timeout.
    f.run(
        &store,
        detached(
            Some("polite"),
            "trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.1; done",
        ),
    )
    .unwrap();
    until("up", || logs(&store, "polite").0 == "up\n");
    let t = Instant::now();
    let st = store.stop("polite", Duration::from_secs(20)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(st.exit_code, Some(0));
    assert_eq!(logs(&store, "polite").0, "up\nbye\n");
    // The last line only, and lines with their times.
    let mut tail = Vec::new();
    let q = LogQuery {
        tail: Some(1),
        ..LogQuery::default()
    };
    store
        .logs("polite", &q, false, &mut |_, b| {
            tail.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
    assert_eq!(tail, b"bye\n");
    // Start runs it again on the same snapshot; a signal other than the stop's ends it.
    store.start("polite", false).unwrap();
    until("the second run", || {
        logs(&store, "polite").0 == "up\nbye\nup\n"
    });
    store.kill("polite", 15).unwrap();
    assert_eq!(store.wait("polite").unwrap(), 0);
}

/// Two stores on one data directory (two programs, as far as the store can tell) run a
/// container of the same name at once: one gets it, the other a typed refusal and nothing
/// left behind.
fn two_stores_racing_for_one_name_exactly_one_wins(f: &Fixture) {
    for _round in 0..3 {
        let results: Vec<Result<String, EngineError>> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let store = Containers::open(&f.data()).unwrap();
                        f.run(&store, detached(Some("same"), "exec sleep 30"))
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let won: Vec<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "{results:?}");
        let lost = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert!(
            matches!(lost, EngineError::NameInUse { name, by } if name == "same" && by == won[0]),
            "{lost:?}"
        );
        let store = Containers::open(&f.data()).unwrap();
        assert_eq!(snapshots(&store), 1, "the loser left nothing behind");
        store.remove("same", true).unwrap();
        assert_eq!(snapshots(&store), 0);
    }
}

/// `rename` (issue 32): the new name finds the container, the old one nothing, a taken name
/// is refused; two stores renaming two containers to one name at once: exactly one wins,
/// the loser keeps its name.
fn rename_moves_the_name_and_two_renames_to_one_name_race_fairly(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let a = f
        .run(&store, detached(Some("ren-a"), "exec sleep 30"))
        .unwrap();
    let b = f
        .run(&store, detached(Some("ren-b"), "exec sleep 30"))
        .unwrap();
    store.rename("ren-a", "ren-c").unwrap();
    assert_eq!(store.resolve("ren-c").unwrap(), a);
    assert!(matches!(
        store.resolve("ren-a"),
        Err(EngineError::NoSuchContainer(_))
    ));
    assert_eq!(store.view(&a).unwrap().config.name, "ren-c");
    assert!(matches!(
        store.rename("ren-c", "ren-b"),
        Err(EngineError::NameInUse { name, by }) if name == "ren-b" && by == b
    ));
    assert!(store.rename("ren-c", "bad/name").is_err());
    for _round in 0..3 {
        let results: Vec<Result<(), EngineError>> = std::thread::scope(|s| {
            let racers: Vec<_> = ["ren-c", "ren-b"]
                .into_iter()
                .map(|who| {
                    s.spawn(move || {
                        let store = Containers::open(&f.data()).unwrap();
                        store.rename(who, "ren-won")
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        let winner = store.resolve("ren-won").unwrap();
        let loser = if winner == a { &b } else { &a };
        let kept = store.view(loser).unwrap().config.name;
        assert!(kept == "ren-b" || kept == "ren-c", "{kept}");
        assert_eq!(store.resolve(&kept).unwrap(), *loser);
        let back = if winner == a { "ren-c" } else { "ren-b" };
        store.rename("ren-won", back).unwrap();
    }
    store.remove(&a, true).unwrap();
    store.remove(&b, true).unwrap();
}

/// `diff` (issue 32) as docker lists it: a file added in a new directory, a file of the
/// image changed and one deleted, their directories changed; the runtime's /etc files are
/// not changes.
fn diff_lists_what_the_container_added_changed_and_deleted(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let id = f
        .run(
            &store,
            detached(
                Some("differ"),
                "mkdir /made && echo n > /made/new && echo more >> /data/seed && rm /bin/ls",
            ),
        )
        .unwrap();
    assert_eq!(store.wait(&id).unwrap(), 0);
    let got: Vec<String> = store
        .diff("differ")
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c.kind.letter(), c.path))
        .collect();
    assert_eq!(
        got,
        [
            "C /bin",
            "D /bin/ls",
            "C /data",
            "C /data/seed",
            "A /made",
            "A /made/new"
        ],
        "{got:?}"
    );
    assert!(matches!(
        store.diff("no-such"),
        Err(EngineError::NoSuchContainer(_))
    ));
    store.remove(&id, true).unwrap();
}

fn logs_rotate_at_their_cap_and_keep_the_newest(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let mut req = detached(
        Some("capped"),
        "i=0; while [ $i -lt 500 ]; do echo line $i; i=$((i+1)); done",
    );
    req.log = LogLimits::from_opts(&["max-size=2k".into(), "max-file=2".into()]).unwrap();
    f.run(&store, req).unwrap();
    assert_eq!(store.wait("capped").unwrap(), 0);
    let log = store.view("capped").unwrap().monitor.log_path();
    let files = std::fs::read_dir(log.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ctr.log"))
        .count();
    assert_eq!(files, 2, "the current file and one rotated");
    let text = logs(&store, "capped").0;
    assert!(
        text.ends_with("line 499\n") && text.len() < 8 << 10,
        "{}",
        text.len()
    );
    for bad in [
        "max-file=x",
        "max-size=lots",
        "colour=blue",
        "labels-regex=(",
        "compress=true",
        "mode=non-blocking",
        "tag={{.Name}}",
    ] {
        assert!(LogLimits::from_opts(&[bad.into()]).is_err(), "{bad}");
    }

    // `logs --details`: the labels and environment `--log-opt` chose before each line, after
    // its time, as docker's json-file keeps them; a space alone when none were chosen.
    let mut req = detached(Some("detailed"), "echo one; echo two >&2");
    req.labels = [
        ("team".to_owned(), "a b".to_owned()),
        ("tier".to_owned(), "web".to_owned()),
        ("other".to_owned(), "x".to_owned()),
    ]
    .into();
    req.opts.env = vec![
        "APP_MODE=prod".into(),
        "APP_ZONE=eu/1".into(),
        "HOME=/x".into(),
    ];
    req.log = LogLimits::for_driver(
        "json-file",
        &[
            "labels=team".into(),
            "labels-regex=^ti".into(),
            "env-regex=^APP_".into(),
        ],
    )
    .unwrap();
    f.run(&store, req).unwrap();
    assert_eq!(store.wait("detailed").unwrap(), 0);
    let read = |what: &str, q: &LogQuery| {
        let mut got = Vec::new();
        store
            .logs(what, q, false, &mut |_, b| {
                got.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
        String::from_utf8(got).unwrap()
    };
    let details = LogQuery {
        details: Some(String::new()),
        ..LogQuery::default()
    };
    let attrs = "APP_MODE=prod,APP_ZONE=eu%2F1,team=a+b,tier=web";
    let text = read("detailed", &details);
    assert!(
        text.contains(&format!("{attrs} one\n")) && text.contains(&format!("{attrs} two\n")),
        "{text}"
    );
    let stamped = read(
        "detailed",
        &LogQuery {
            timestamps: true,
            ..details.clone()
        },
    );
    let first = stamped.lines().next().unwrap();
    let (time, rest) = first.split_once(' ').unwrap();
    assert!(oci_rs_runtime::parse_log_time(time).is_ok(), "{first}");
    assert!(rest.starts_with(attrs), "{first}");
    assert_eq!(
        read(
            "capped",
            &LogQuery {
                tail: Some(1),
                ..details
            }
        ),
        " line 499\n"
    );
    let inspect = serde_json::to_value(store.inspect("detailed").unwrap()).unwrap();
    assert_eq!(
        inspect["HostConfig"]["LogConfig"],
        serde_json::json!({"Type": "json-file", "Config": {
            "labels": "team", "labels-regex": "^ti", "env-regex": "^APP_"
        }})
    );
    // docker's Config.Env: the image's and the run's, not what the runtime adds.
    let env: Vec<&str> = inspect["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"APP_MODE=prod") && !env.iter().any(|e| e.starts_with("HOSTNAME=")),
        "{env:?}"
    );
}

fn exec_sees_the_containers_hostname_and_detached_exec_runs(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let mut req = command(Some("box"), &["sleep", "100"]);
    req.opts.hostname = Some("boxhost".into());
    f.run(&store, req).unwrap();
    let exec = |args: &[&str], detach: bool| {
        let req = ExecRequest {
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec!["X=42".into()],
            detach,
            ..ExecRequest::default()
        };
        store.exec("box", &req).unwrap()
    };
    let script = "echo $X $(hostname) > /tmp/seen; cat /proc/1/cmdline >> /tmp/seen";
    assert_eq!(exec(&["sh", "-c", script], false), 0);
    assert_eq!(
        crate::fixture::read_in(&store, "box", "tmp/seen"),
        "42 boxhost\nsleep\x00100\x00"
    );
    exec(&["touch", "/tmp/made-by-exec-d"], true);
    until("the detached exec", || {
        exec(&["test", "-e", "/tmp/made-by-exec-d"], false) == 0
    });
    store.remove("box", true).unwrap();
}

fn binds_are_written_through_and_image_links_cannot_move_them(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    // An image whose /escape is a link to the host's root as seen from the rootfs' parent.
    let root = f.dir.path().join("linky");
    busybox_rootfs(&root);
    std::fs::create_dir(root.join("target")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../", root.join("escape")).unwrap();
    f.import(&root, "linky:1", &[]);
    let host = f.dir.path().join("shared");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("from-host"), "h\n").unwrap();
    let mut req = detached(
        None,
        "cat /target/from-host; echo c > /target/from-container; ls /tmp | wc -l",
    );
    mount_args(
        &mut req,
        &[&format!("{}:/escape/target", host.display())],
        &[],
    );
    req.opts
        .mounts
        .push(ExtraMount::parse_tmpfs("/tmp:size=1m").unwrap());
    let (code, out, err) = f.run_to_end(&store, "linky:1", req).unwrap();
    // The target resolved inside the rootfs: /escape/target is the image's /target.
    assert_eq!((code, out.as_str()), (0, "h\n0\n"), "{err}");
    assert_eq!(
        std::fs::read_to_string(host.join("from-container")).unwrap(),
        "c\n"
    );
    assert!(
        !Path::new("/target").exists(),
        "a bind reached the host's /"
    );
    // Read-only binds are read-only.
    let mut req = detached(None, "echo x > /target/no");
    mount_args(&mut req, &[&format!("{}:/target:ro", host.display())], &[]);
    let (code, _, err) = f.run_to_end(&store, "linky:1", req).unwrap();
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!host.join("no").exists());
    // Bad mounts are typed errors, refused before anything is made.
    for bad in [
        "rel/ative:/x",
        "/x:relative",
        "/a:/b:bogus",
        "name:relative",
    ] {
        let refused = parse_volume_arg(bad);
        assert!(
            matches!(
                &refused,
                Err(EngineError::MountSpec { .. }) | Err(EngineError::Runtime(_))
            ),
            "{bad}: {refused:?}"
        );
    }
    assert_eq!(snapshots(&store), 0);
    assert_eq!(mounts_under(&f.data()), 0);
}

fn a_named_volume_copies_the_image_links_as_links(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    // An image with files at the mount point: a fresh volume starts as a copy of them.
    let root = f.dir.path().join("seeded");
    busybox_rootfs(&root);
    std::fs::create_dir_all(root.join("srv/sub")).unwrap();
    std::fs::write(root.join("srv/sub/seed"), "from the image\n").unwrap();
    // A link in the image that would lead a careless copy to the host's files.
    std::os::unix::fs::symlink("/etc", root.join("srv/hostetc")).unwrap();
    f.import(&root, "seeded:1", &[]);
    let mut req = detached(None, "cat /srv/sub/seed; echo inside > /srv/written");
    mount_args(&mut req, &["data:/srv"], &[]);
    let (code, out, _) = f.run_to_end(&store, "seeded:1", req).unwrap();
    assert_eq!((code, out.as_str()), (0, "from the image\n"));
    let mp = Volumes::open(&f.data())
        .unwrap()
        .inspect("data")
        .unwrap()
        .mountpoint;
    assert!(mp.starts_with(f.data()), "{mp:?}");
    assert_eq!(
        std::fs::read_to_string(mp.join("written")).unwrap(),
        "inside\n"
    );
    assert_eq!(
        std::fs::read_link(mp.join("hostetc")).unwrap(),
        Path::new("/etc"),
        "the link is copied as a link, not followed"
    );
    // Kept across containers; not filled again once it holds something; read-only mounts.
    std::fs::remove_file(mp.join("sub/seed")).unwrap();
    let mut req = detached(None, "ls /x; touch /x/no");
    mount_args(
        &mut req,
        &[],
        &["type=volume,source=data,target=/x,readonly"],
    );
    let (code, out, _) = f.run_to_end(&store, "seeded:1", req).unwrap();
    assert_ne!(code, 0, "written through a read-only mount");
    assert_eq!(out, "hostetc\nsub\nwritten\n");
    store.remove_volume("data").unwrap();
    assert!(!mp.exists());
    for bad in [
        "type=volume,target=/x",
        "type=bind,source=rel,target=/x",
        "type=nfs,source=a,target=/x",
        "type=volume,source=a",
    ] {
        assert!(
            matches!(parse_mount_arg(bad), Err(EngineError::MountSpec { .. })),
            "{bad}"
        );
    }
}

fn a_killed_monitor_is_reconciled_with_the_process_table(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    // A descriptor the caller leaves open across exec: the monitor must not keep it.
    let (leak_r, _leak_w) = rustix::pipe::pipe().unwrap();
    let leaked = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&leak_r)
    ))
    .unwrap();
    f.run(&store, command(Some("lost"), &["sleep", "100"]))
        .unwrap();
    let status = store.view("lost").unwrap().status;
    let (monitor, init) = (status.monitor_pid, status.pid);
    for fd in std::fs::read_dir(format!("/proc/{monitor}/fd"))
        .unwrap()
        .flatten()
    {
        assert_ne!(
            std::fs::read_link(fd.path()).ok(),
            Some(leaked.clone()),
            "inherited"
        );
    }
    let kill = |pid: i32| {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap()
    };
    kill(monitor);
    std::thread::sleep(Duration::from_millis(200));
    // The container still runs, and shows so.
    assert_eq!(state(&store, "lost"), MonitorState::Running);
    kill(init);
    until("the dead init to show", || {
        state(&store, "lost") == MonitorState::Exited
    });
    assert_eq!(
        store.view("lost").unwrap().status.exit_code,
        Some(255),
        "the code is lost"
    );
    store.remove("lost", false).unwrap();
    assert_eq!(snapshots(&store), 0);
}

fn cgroup_file(pid: i32, controller: &str, file: &str) -> Option<String> {
    let groups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for l in groups.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        let p = if ctrls.split(',').any(|c| c == controller) {
            format!("/sys/fs/cgroup/{controller}{path}/{file}")
        } else if ctrls.is_empty() {
            format!("/sys/fs/cgroup{path}/{file}")
        } else {
            continue;
        };
        if let Ok(v) = std::fs::read_to_string(&p) {
            return Some(v.trim().to_owned());
        }
    }
    None
}

fn defaults_users_rely_on_and_the_privilege_options(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let run = |req: RunRequest| {
        let (code, out, err) = f.run_to_end(&store, "busybox:test", req).unwrap();
        assert_eq!(code, 0, "{err}");
        out
    };
    // Loopback up, /etc/hostname and /etc/hosts written, docker's seccomp profile: a user
    // namespace needs no capability, yet the profile refuses it.
    let mut req = detached(
        None,
        "cat /sys/class/net/lo/flags /etc/hostname; grep -c h1 /etc/hosts; \
         test -f /etc/resolv.conf && echo resolv; grep Seccomp: /proc/self/status; \
         unshare -U true 2>/dev/null || echo refused",
    );
    req.opts.network = NetworkMode::Bridge;
    req.opts.hostname = Some("h1".into());
    assert_eq!(run(req), "0x9\nh1\n1\nresolv\nSeccomp:\t2\nrefused\n");
    let mut req = detached(
        None,
        "grep Seccomp: /proc/self/status; unshare -U true && echo allowed",
    );
    req.opts.security_opt("seccomp=unconfined").unwrap();
    assert_eq!(req.opts.seccomp, SeccompChoice::Unconfined);
    assert_eq!(run(req), "Seccomp:\t0\nallowed\n");
    // Capabilities: docker's 14, changed by cap_add/cap_drop, none for a non-root user.
    let eff = |add: &[&str], drop: &[&str], user: Option<&str>| -> u64 {
        let mut req = command(None, &["grep", "CapEff", "/proc/self/status"]);
        req.opts.cap_add = add.iter().map(|s| s.to_string()).collect();
        req.opts.cap_drop = drop.iter().map(|s| s.to_string()).collect();
        req.opts.user = user.map(str::to_owned);
        let out = run(req);
        u64::from_str_radix(out.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(eff(&[], &[], None), 0xa80425fb, "docker's default set");
    assert_eq!(
        eff(&["NET_ADMIN"], &["CHOWN"], None),
        0xa80425fb - 1 + (1 << 12)
    );
    assert_eq!(eff(&[], &["ALL"], None), 0);
    assert_eq!(eff(&[], &[], Some("1000")), 0);
    // A read-only root.
    let mut req = command(None, &["touch", "/x"]);
    req.opts.read_only = true;
    let (code, _, err) = f.run_to_end(&store, "busybox:test", req).unwrap();
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    // Limits in the container's cgroup.
    let mut req = command(Some("lim"), &["sleep", "100"]);
    req.opts.pids_limit = Some(42);
    req.opts.memory = Some(oci_rs_runtime::parse_size("64m").unwrap() as i64);
    f.run(&store, req).unwrap();
    let pid = store.view("lim").unwrap().status.pid;
    assert_eq!(cgroup_file(pid, "pids", "pids.max").as_deref(), Some("42"));
    let mem = cgroup_file(pid, "memory", "memory.limit_in_bytes")
        .or_else(|| cgroup_file(pid, "memory", "memory.max"));
    assert_eq!(mem.as_deref(), Some("67108864"));
    store.remove("lim", true).unwrap();
    // docker's other resource flags, in the cgroup (v2's files; v1 has its own) and the
    // process.
    let mut req = command(
        Some("lim2"),
        &["sh", "-c", "cat /proc/self/oom_score_adj; exec sleep 100"],
    );
    req.opts.memory = Some(64 << 20);
    req.opts.resources = oci_rs_runtime::ResourceFlags {
        cpu_shares: Some(512),
        cpu_period: Some(50_000),
        cpu_quota: Some(25_000),
        cpuset_cpus: Some("0".into()),
        cpuset_mems: Some("0".into()),
        memory_reservation: Some(32 << 20),
        memory_swap: Some(96 << 20),
        ..Default::default()
    };
    req.opts.oom_score_adj = Some(500);
    f.run(&store, req).unwrap();
    until("lim2 prints its oom_score_adj", || {
        logs(&store, "lim2").0 == "500\n"
    });
    let pid = store.view("lim2").unwrap().status.pid;
    if cgroup_file(pid, "", "cpu.weight").is_some() {
        let v = |file: &str| cgroup_file(pid, "", file).unwrap_or_default();
        assert_eq!(v("cpu.weight"), "20", "runc's conversion of 512 shares");
        assert_eq!(v("cpu.max"), "25000 50000");
        assert_eq!(v("cpuset.cpus"), "0");
        assert_eq!(v("cpuset.mems"), "0");
        assert_eq!(v("memory.low"), (32u64 << 20).to_string());
        if let Some(swap) = cgroup_file(pid, "", "memory.swap.max") {
            assert_eq!(swap, (32u64 << 20).to_string(), "memory+swap less memory");
        }
    } else {
        let v = |ctrl: &str, file: &str| cgroup_file(pid, ctrl, file).unwrap_or_default();
        assert_eq!(v("cpu", "cpu.shares"), "512");
        assert_eq!(v("cpu", "cpu.cfs_period_us"), "50000");
        assert_eq!(v("cpu", "cpu.cfs_quota_us"), "25000");
        assert_eq!(v("cpuset", "cpuset.cpus"), "0");
        assert_eq!(v("cpuset", "cpuset.mems"), "0");
        assert_eq!(
            v("memory", "memory.soft_limit_in_bytes"),
            (32u64 << 20).to_string()
        );
        if let Some(memsw) = cgroup_file(pid, "memory", "memory.memsw.limit_in_bytes") {
            assert_eq!(memsw, (96u64 << 20).to_string());
        }
    }
    store.remove("lim2", true).unwrap();
    for (flags, why) in [
        (
            oci_rs_runtime::ResourceFlags {
                cpu_shares: Some(1),
                ..Default::default()
            },
            "between 2 and 262144",
        ),
        (
            oci_rs_runtime::ResourceFlags {
                cpu_period: Some(10),
                ..Default::default()
            },
            "between 1000",
        ),
        (
            oci_rs_runtime::ResourceFlags {
                cpuset_cpus: Some("0-a".into()),
                ..Default::default()
            },
            "like 0-3,5",
        ),
        (
            oci_rs_runtime::ResourceFlags {
                memory_reservation: Some(1 << 20),
                ..Default::default()
            },
            "6 MiB",
        ),
        (
            oci_rs_runtime::ResourceFlags {
                memory_swap: Some(1 << 30),
                ..Default::default()
            },
            "with a memory limit",
        ),
        (
            oci_rs_runtime::ResourceFlags {
                cpus: Some(1.0),
                cpu_quota: Some(5000),
                ..Default::default()
            },
            "conflicts",
        ),
    ] {
        let err = oci_rs_runtime::resources_of(&flags).unwrap_err();
        assert!(
            err.to_string().contains(why) || format!("{err:?}").contains(why),
            "{why}: {err}"
        );
    }
    // Values refused: typed errors, and a refused run leaves nothing.
    assert!(oci_rs_runtime::parse_size("lots").is_err());
    assert!("sometimes".parse::<RestartPolicy>().is_err());
    let mut opts = oci_rs_runtime::RunOptions::default();
    assert!(matches!(
        opts.security_opt("seccomp=/nonexistent"),
        Err(oci_rs_runtime::Error::Io { .. })
    ));
    let mut req = command(None, &["true"]);
    req.opts.cap_add = vec!["CAP_NOPE".into()];
    assert!(matches!(
        f.run(&store, req),
        Err(EngineError::Runtime(e)) if matches!(*e, oci_rs_runtime::Error::InvalidOption { .. })
    ));
    assert_eq!(snapshots(&store), 0, "refused runs leave nothing");
    assert!(store.list().unwrap().is_empty());
}

fn a_full_disk_while_logging_keeps_the_container_running_and_says_so(f: &Fixture) {
    // The data directory on a small tmpfs of its own.
    let data = f.dir.path().join("small");
    std::fs::create_dir(&data).unwrap();
    let size = std::ffi::CString::new("size=24m").unwrap();
    rustix::mount::mount(
        "tmpfs",
        &data,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        Some(size.as_c_str()),
    )
    .unwrap();
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            if let Ok(store) = Containers::open(&self.0) {
                let _ = store.remove("chatty", true);
            }
            let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
        }
    }
    let _guard = Unmount(data.clone());
    let images =
        f.rt.block_on(oci_rs_layer::ImageStore::open(&data))
            .unwrap();
    let root = f.dir.path().join("rootfs");
    f.rt.block_on(crate::fixture::import(&images, &root, "busybox:test", &[]));
    let store = Containers::open(&data).unwrap();
    let found =
        f.rt.block_on(images.image_for_run("busybox:test", None, None, |_| {}))
            .unwrap();
    let image = oci_rs_runtime::RunImage::from_store(&images, found, "busybox:test");
    let req = detached(
        Some("chatty"),
        "i=0; while :; do echo line $i; i=$((i+1)); done",
    );
    f.rt.block_on(store.run(&image, req)).unwrap();
    // Fill what is left of the disk while it logs.
    let filler = data.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 1 << 16];
    while file.write_all(&block).is_ok() {}
    drop(file);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        state(&store, "chatty"),
        MonitorState::Running,
        "the container keeps running on a full disk"
    );
    // Space again: the log goes on, and says what was lost (the note comes first, so stop
    // the writer before reading: it may fill the disk again).
    std::fs::remove_file(&filler).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    store.kill("chatty", 9).unwrap();
    store.wait("chatty").unwrap();
    let mut err = Vec::new();
    store
        .logs("chatty", &LogQuery::default(), false, &mut |s, b| {
            if s == LogStream::Stderr {
                err.extend_from_slice(b);
            }
            Ok(())
        })
        .unwrap();
    let err = String::from_utf8_lossy(&err);
    assert!(err.contains("log truncated"), "no truncation note: {err}");
    store.remove("chatty", true).unwrap();
}

fn init_reaps_orphans_and_passes_signals_on(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    // Without init, `sleep` as pid 1 has SIGTERM ignored by the kernel; with it, the reaper
    // is pid 1 and passes SIGTERM on, so stop needs no SIGKILL.
    let mut req = command(Some("i"), &["sleep", "1000"]);
    req.init = true;
    f.run(&store, req).unwrap();
    // An orphan (its parent, the sh, exits at once) is reaped: no zombie stays.
    let orphan = ExecRequest {
        args: vec!["sh".into(), "-c".into(), "sleep 0.2 &".into()],
        ..ExecRequest::default()
    };
    assert_eq!(store.exec("i", &orphan).unwrap(), 0);
    std::thread::sleep(Duration::from_millis(600));
    let pid = store.view("i").unwrap().status.pid.to_string();
    let zombies = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|st| {
            let rest = st.rsplit_once(')').map_or("", |r| r.1);
            let f: Vec<&str> = rest.split_whitespace().collect();
            f.first() == Some(&"Z") && f.get(1) == Some(&pid.as_str())
        })
        .count();
    assert_eq!(zombies, 0, "children of the reaper left as zombies");
    let t = Instant::now();
    let st = store.stop("i", Duration::from_secs(10)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(st.exit_code, Some(143));
    store.remove("i", false).unwrap();
    let mut req = detached(None, "echo $$");
    req.init = true;
    let (_, out, _) = f.run_to_end(&store, "busybox:test", req).unwrap();
    assert_eq!(out, "2\n", "the process is pid 2, under the reaper");
    let mut req = detached(None, "exit 4");
    req.init = true;
    assert_eq!(f.run_to_end(&store, "busybox:test", req).unwrap().0, 4);
}

fn a_container_joins_another_containers_network_namespace(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let mut pod = detached(
        Some("pod"),
        "echo from-the-pod > /page; exec httpd -f -p 127.0.0.1:8080 -h /",
    );
    store.set_network(&mut pod, Some("none")).unwrap();
    f.run(&store, pod).unwrap();
    let get = "wget -q -O - http://127.0.0.1:8080/page";
    // Its loopback is reachable from a container that joins its network namespace ...
    let mut joined = detached(None, &format!("sleep 0.3; {get}"));
    store
        .set_network(&mut joined, Some("container:pod"))
        .unwrap();
    assert_eq!(joined.network_mode.as_deref(), Some("container:pod"));
    let (code, out, err) = f.run_to_end(&store, "busybox:test", joined).unwrap();
    assert_eq!((code, out.as_str()), (0, "from-the-pod\n"), "{err}");
    // ... and from no other.
    let (code, _, _) = f
        .run_to_end(&store, "busybox:test", detached(None, get))
        .unwrap();
    assert_ne!(code, 0);
    store.remove("pod", true).unwrap();
    let mut late = detached(None, "true");
    assert!(matches!(
        store.set_network(&mut late, Some("container:pod")),
        Err(EngineError::NoSuchContainer(_))
    ));
}

/// Restart `always` of a program that exits at once backs off as docker's does (100 ms,
/// doubling, up to a minute): in 2 s that is at most a handful of restarts, the container
/// shows as restarting while it waits, and a stop during the wait holds.
fn restart_always_backs_off_and_shows_restarting(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let mut req = command(Some("loop"), &["true"]);
    req.restart = RestartPolicy::Always;
    f.run(&store, req).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let count = store.view("loop").unwrap().status.restart_count;
    // 100 + 200 + 400 + 800 ms of waiting fit in 2 s, not 3,200 ms more.
    assert!((1..=5).contains(&count), "{count} restarts in 2 s");
    until("restarting", || {
        state(&store, "loop") == MonitorState::Restarting
    });
    store.stop("loop", Duration::from_secs(10)).unwrap();
    assert_eq!(state(&store, "loop"), MonitorState::Exited);
    let after = store.view("loop").unwrap().status.restart_count;
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(store.view("loop").unwrap().status.restart_count, after);
    store.remove("loop", false).unwrap();
}

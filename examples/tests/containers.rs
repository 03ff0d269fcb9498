//! Containers that outlive one command, through the `oci` command line with real
//! containers: detached runs under a monitor, logs, stop, kill, restart policies, exec, a
//! real pty, binds, names, `--rm` however the run ends, and what survives a killed CLI or
//! monitor.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

const OCI: &str = env!("CARGO_BIN_EXE_oci");
const TOOLS: &[&str] = &[
    "sh", "cat", "echo", "sleep", "httpd", "stty", "ls", "touch", "true", "id", "hostname", "grep",
    "unshare", "wget",
];

/// A data directory with the busybox image `bb:1` imported; `oci` runs through
/// [`common::Cli`].
struct Store {
    dir: tempfile::TempDir,
    cli: common::Cli,
}

impl std::ops::Deref for Store {
    type Target = common::Cli;
    fn deref(&self) -> &common::Cli {
        &self.cli
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.remove_all();
    }
}

impl Store {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tar = common::busybox_rootfs_tar(dir.path(), TOOLS);
        let cli = common::Cli {
            oci: OCI,
            data: dir.path().join("data"),
        };
        let s = Self { dir, cli };
        s.ok(&[
            "import",
            tar.to_str().unwrap(),
            "bb:1",
            "-c",
            "CMD [\"sh\"]",
        ]);
        s
    }

    fn data(&self) -> PathBuf {
        self.cli.data.clone()
    }

    /// Waits until `name`'s State.Status is `want`.
    fn wait_status(&self, name: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.field(name, "{{.State.Status}}");
            if s == want {
                return;
            }
            assert!(Instant::now() < deadline, "{name} stayed {s}, not {want}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every container of this store, force-removed (a test that failed part-way must not
    /// leave a container running).
    fn remove_all(&self) {
        if let Ok(o) = self.cmd(&["ps", "-a", "-q", "--no-trunc"]).output() {
            for id in String::from_utf8_lossy(&o.stdout).lines() {
                let _ = self.cmd(&["rm", "-f", id]).output();
            }
        }
    }

    fn snapshots(&self) -> usize {
        std::fs::read_dir(self.data().join("snapshots/containers"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn mounts(&self) -> usize {
        let m = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let d = self.data().display().to_string();
        m.lines().filter(|l| l.contains(&d)).count()
    }
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

#[test]
fn detached_httpd_serves_logs_and_stops_within_the_timeout() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let port = common::free_port().to_string();
    let www = s.dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), "served from a bind\n").unwrap();
    let bind = format!("{}:/www:ro", www.display());
    let addr = format!("127.0.0.1:{port}");
    let id = s.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "host",
        "-v",
        &bind,
        "bb:1",
        "httpd",
        "-f",
        "-v",
        "-p",
        &addr,
        "-h",
        "/www",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "the full id: {id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    let ps = s.ok(&["ps"]);
    assert!(
        ps.contains(&id[..12]) && ps.contains("web") && ps.contains("Up "),
        "{ps}"
    );
    assert!(http_get(port.parse().unwrap(), "/index.html").contains("served from a bind"));
    // The access log reaches `logs` (busybox httpd -v logs on stderr).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let o = s.oci(&["logs", "web"]);
        if String::from_utf8_lossy(&o.stderr).contains("response:200") {
            break;
        }
        assert!(Instant::now() < deadline, "no access log: {o:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // httpd as pid 1 has no SIGTERM handler, so the kernel ignores SIGTERM: SIGKILL after 1 s.
    let t = Instant::now();
    s.ok(&["stop", "-t", "1", "web"]);
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert_eq!(s.field("web", "{{.State.ExitCode}}"), "137");
    assert!(s.ok(&["ps", "-a"]).contains("Exited (137)"));
    assert!(!s.ok(&["ps"]).contains("web"), "ps lists running ones only");

    // A process that handles SIGTERM ends on it, well before the timeout.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "polite",
        "bb:1",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.1; done",
    ]);
    s.wait_status("polite", "running");
    let t = Instant::now();
    s.ok(&["stop", "-t", "20", "polite"]);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(s.field("polite", "{{.State.ExitCode}}"), "0");
    assert_eq!(s.ok(&["logs", "polite"]), "up\nbye\n");
    assert_eq!(s.ok(&["logs", "--tail", "1", "polite"]), "bye\n");
    let stamped = s.ok(&["logs", "-t", "polite"]);
    assert!(
        stamped
            .lines()
            .all(|l| l.len() > 31 && l.as_bytes()[4] == b'-'),
        "{stamped}"
    );

    // start runs it again on the same snapshot.
    s.ok(&["start", "polite"]);
    s.wait_status("polite", "running");
    s.ok(&["kill", "-s", "TERM", "polite"]);
    assert_eq!(s.ok(&["wait", "polite"]).trim(), "0");
}

#[test]
fn rm_refuses_a_running_container_and_force_removes_it() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    s.ok(&["run", "-d", "--name", "busy", "bb:1", "sleep", "100"]);
    let o = s.oci(&["rm", "busy"]);
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("running") && err.lines().count() == 1, "{err}");
    assert_eq!(s.field("busy", "{{.State.Status}}"), "running");
    s.ok(&["rm", "-f", "busy"]);
    assert_eq!(s.snapshots(), 0);
    assert_eq!(s.mounts(), 0);
    assert!(s.ok(&["ps", "-a", "-q"]).trim().is_empty());
    // The name is free again.
    s.ok(&["run", "--name", "busy", "bb:1", "true"]);
}

#[test]
fn two_runs_with_one_name_exactly_one_wins() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let spawn = || {
        s.cmd(&["run", "-d", "--name", "same", "bb:1", "sleep", "30"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let won = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "{outs:?}");
    let lost = outs.iter().find(|o| !o.status.success()).unwrap();
    assert!(
        String::from_utf8_lossy(&lost.stderr).contains("is already in use by container"),
        "{lost:?}"
    );
    assert_eq!(s.ok(&["ps", "-q"]).lines().count(), 1);
    s.ok(&["rm", "-f", "same"]);
    assert_eq!(s.snapshots(), 0, "the loser left nothing behind");
}

#[test]
fn restart_on_failure_restarts_twice() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "bb:1",
        "sh",
        "-c",
        "echo attempt; exit 3",
    ]);
    assert_eq!(s.ok(&["wait", "flaky"]).trim(), "3");
    assert_eq!(s.field("flaky", "{{.RestartCount}}"), "2");
    assert_eq!(s.ok(&["logs", "flaky"]), "attempt\nattempt\nattempt\n");
    assert_eq!(
        s.field("flaky", "{{json .HostConfig.RestartPolicy}}"),
        r#"{"MaximumRetryCount":2,"Name":"on-failure"}"#
    );

    // A size cap: the log rotates, at most max-file files are kept, the newest lines read.
    s.ok(&[
        "run",
        "--name",
        "capped",
        "--log-opt",
        "max-size=2k",
        "--log-opt",
        "max-file=2",
        "bb:1",
        "sh",
        "-c",
        "i=0; while [ $i -lt 500 ]; do echo line $i; i=$((i+1)); done",
    ]);
    let log = PathBuf::from(s.field("capped", "{{.LogPath}}"));
    let files = std::fs::read_dir(log.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ctr.log"))
        .count();
    assert_eq!(files, 2, "the current file and one rotated");
    let text = s.ok(&["logs", "capped"]);
    assert!(
        text.ends_with("line 499\n") && text.len() < 8 << 10,
        "{}",
        text.len()
    );
}

#[test]
fn exec_and_exec_detached_run_in_the_container() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "--hostname",
        "boxhost",
        "bb:1",
        "sleep",
        "100",
    ]);
    s.wait_status("box", "running");
    let out = s.ok(&[
        "exec",
        "-e",
        "X=42",
        "box",
        "sh",
        "-c",
        "echo $X $(hostname); cat /proc/1/cmdline",
    ]);
    assert_eq!(out, "42 boxhost\nsleep\x00100\x00");
    let o = s.oci(&["exec", "box", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    s.ok(&["exec", "-d", "box", "touch", "/made-by-exec-d"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let o = s.oci(&["exec", "box", "ls", "/made-by-exec-d"]);
        if o.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "exec -d did not run: {o:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.ok(&["rm", "-f", "box"]);
}

#[test]
fn bind_mounts_are_written_through_and_image_links_cannot_move_them() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    // An image whose /escape is a link to the host's root as seen from the rootfs' parent.
    let root = s.dir.path().join("linky");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for t in ["sh", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(t)).unwrap();
    }
    std::fs::create_dir(root.join("target")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../", root.join("escape")).unwrap();
    let tar = s.dir.path().join("linky.tar");
    common::tar_dir(&root, &tar);
    s.ok(&["import", tar.to_str().unwrap(), "linky:1"]);

    let host = s.dir.path().join("shared");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("from-host"), "h\n").unwrap();
    let bind = format!("{}:/escape/target", host.display());
    let out = s.ok(&[
        "run",
        "--rm",
        "-v",
        &bind,
        "--tmpfs",
        "/tmp:size=1m",
        "linky:1",
        "sh",
        "-c",
        "cat /target/from-host; echo c > /target/from-container; ls /tmp | wc -l",
    ]);
    // The target resolved inside the rootfs: /escape/target is the image's /target.
    assert!(out.starts_with("h\n"), "{out}");
    assert_eq!(
        std::fs::read_to_string(host.join("from-container")).unwrap(),
        "c\n"
    );
    assert!(
        !Path::new("/target").exists(),
        "a bind reached the host's /"
    );
    // Read-only binds are read-only.
    let ro = format!("{}:/target:ro", host.display());
    let o = s.oci(&[
        "run",
        "--rm",
        "-v",
        &ro,
        "linky:1",
        "sh",
        "-c",
        "echo x > /target/no",
    ]);
    assert!(!o.status.success());
    assert!(!host.join("no").exists());
    // Bad mounts are one-line errors and leave nothing.
    for bad in [
        "rel/ative:/x",
        "/x:relative",
        "/a:/b:bogus",
        "name:relative",
    ] {
        let o = s.oci(&["run", "--rm", "-v", bad, "linky:1", "true"]);
        assert_eq!(o.status.code(), Some(125), "{bad}");
        assert_eq!(
            String::from_utf8_lossy(&o.stderr).lines().count(),
            1,
            "{o:?}"
        );
    }
    assert_eq!(s.snapshots(), 0);
}

#[test]
fn the_cli_killed_while_attached_leaves_a_container_that_stays_manageable() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let mut cli = s
        .cmd(&[
            "run",
            "--name",
            "orphan",
            "bb:1",
            "sh",
            "-c",
            "trap 'exit 0' TERM; while :; do echo tick; sleep 0.1; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = [0u8; 5];
    cli.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(&first, b"tick\n");
    cli.kill().unwrap();
    cli.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.field("orphan", "{{.State.Status}}"), "running");
    let logs = s.ok(&["logs", "orphan"]);
    assert!(
        logs.lines().count() >= 3 && logs.lines().all(|l| l == "tick"),
        "{logs}"
    );
    s.ok(&["stop", "orphan"]);
    assert_eq!(s.field("orphan", "{{.State.ExitCode}}"), "0");
}

#[test]
fn a_killed_monitor_is_reconciled_with_the_process_table() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    // A descriptor the caller leaves open across exec: the monitor must not keep it.
    let (leak_r, _leak_w) = rustix::pipe::pipe().unwrap();
    let leaked = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&leak_r)
    ))
    .unwrap();
    let id = s.ok(&["run", "-d", "--name", "lost", "bb:1", "sleep", "100"]);
    let id = id.trim();
    let status: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.data().join("containers").join(id).join("status.json")).unwrap(),
    )
    .unwrap();
    let monitor = status["monitor_pid"].as_i64().unwrap() as i32;
    let init = status["pid"].as_i64().unwrap() as i32;
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
    // The container still runs: ps says so, and stop still works on it.
    assert_eq!(s.field("lost", "{{.State.Status}}"), "running");
    kill(init);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.field("lost", "{{.State.Status}}") != "exited" {
        assert!(Instant::now() < deadline, "a dead init still shows running");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        s.field("lost", "{{.State.ExitCode}}"),
        "255",
        "the code is lost"
    );
    s.ok(&["rm", "lost"]);
    assert_eq!(s.snapshots(), 0);
}

#[test]
fn run_rm_with_ctrl_c_leaves_no_snapshot_and_no_mount() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let mut cli = s
        .cmd(&[
            "run",
            "--rm",
            "bb:1",
            "sh",
            "-c",
            "trap 'echo interrupted; exit 130' INT; echo ready; while :; do sleep 0.1; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 6];
    cli.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(cli.id() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let o = cli.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "the container's code");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "interrupted\n");
    assert_eq!(s.snapshots(), 0);
    assert_eq!(s.mounts(), 0);
    assert!(s.ok(&["ps", "-a", "-q"]).trim().is_empty());
}

#[test]
fn a_tty_run_gets_a_real_terminal_its_size_and_resizes() {
    if !common::root_with_busybox() {
        return;
    }
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let s = Store::new();
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    let size = |rows, cols| rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(&master, size(40, 100)).unwrap();
    let before = rustix::termios::tcgetattr(&slave).unwrap();
    let mut cli = s
        .cmd(&[
            "run",
            "-it",
            "--rm",
            "bb:1",
            "sh",
            "-c",
            "stty size; [ -t 0 ] && echo tty; read x; stty size",
        ])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap())
        .spawn()
        .unwrap();
    let mut m = std::fs::File::from(master);
    let read_until = |m: &mut std::fs::File, want: &str| {
        let mut seen = Vec::new();
        let mut b = [0u8; 256];
        let deadline = Instant::now() + Duration::from_secs(30);
        while !String::from_utf8_lossy(&seen).contains(want) {
            // Bounded: a run that failed leaves the terminal open (the test holds the slave).
            let mut fds = [rustix::event::PollFd::new(
                &*m,
                rustix::event::PollFlags::IN,
            )];
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {want:?} within 30 s; the terminal showed {:?}",
                String::from_utf8_lossy(&seen)
            );
            let ts = rustix::event::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: 0,
            };
            if rustix::event::poll(&mut fds, Some(&ts)).unwrap_or(0) == 0 {
                continue;
            }
            let n = m.read(&mut b).unwrap();
            assert!(
                n > 0,
                "terminal closed before {want:?}: {:?}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&b[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    };
    let first = read_until(&mut m, "tty");
    assert!(first.contains("40 100"), "{first}");
    rustix::termios::tcsetwinsize(&m, size(50, 120)).unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(cli.id() as i32).unwrap(),
        rustix::process::Signal::WINCH,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    m.write_all(b"\n").unwrap();
    let second = read_until(&mut m, "50 120");
    assert!(second.contains("50 120"), "{second}");
    assert!(cli.wait().unwrap().success());
    let after = rustix::termios::tcgetattr(&slave).unwrap();
    assert_eq!(
        before.local_modes, after.local_modes,
        "the host terminal is restored from raw mode"
    );
    assert_eq!(s.snapshots(), 0);

    // exec -it into a running container: a terminal of its own, at the caller's size.
    s.ok(&["run", "-d", "--name", "t", "bb:1", "sleep", "100"]);
    s.wait_status("t", "running");
    let mut cli = s
        .cmd(&[
            "exec",
            "-it",
            "t",
            "sh",
            "-c",
            "stty size; [ -t 0 ] && echo exec-tty; read x; echo got $x",
        ])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap())
        .spawn()
        .unwrap();
    let seen = read_until(&mut m, "exec-tty");
    assert!(seen.contains("50 120"), "{seen}");
    m.write_all(b"word\n").unwrap();
    read_until(&mut m, "got word");
    assert!(cli.wait().unwrap().success());
    let after = rustix::termios::tcgetattr(&slave).unwrap();
    assert_eq!(
        before.local_modes, after.local_modes,
        "restored after exec -it"
    );
    s.ok(&["rm", "-f", "t"]);
}

/// A cgroup file of process `pid` for `controller` (v1 hierarchy, else the unified one).
fn cgroup_file(pid: &str, controller: &str, file: &str) -> Option<String> {
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

#[test]
fn defaults_users_rely_on_and_the_privilege_flags() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    // Loopback up, /etc/hostname and /etc/hosts written, docker's seccomp profile: a user
    // namespace needs no capability, yet the profile refuses it.
    let out = s.ok(&[
        "run", "--rm", "--hostname", "h1", "bb:1", "sh", "-c",
        "cat /sys/class/net/lo/flags /etc/hostname; grep -c h1 /etc/hosts; test -f /etc/resolv.conf && echo resolv; grep Seccomp: /proc/self/status; unshare -U true || echo refused",
    ]);
    assert_eq!(out, "0x9\nh1\n1\nresolv\nSeccomp:\t2\nrefused\n");
    let out = s.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "bb:1",
        "sh",
        "-c",
        "grep Seccomp: /proc/self/status; unshare -U true && echo allowed",
    ]);
    assert_eq!(out, "Seccomp:\t0\nallowed\n");
    // Capabilities: docker's 14, changed by --cap-add/--cap-drop, none for a non-root user.
    let eff = |args: &[&str]| -> u64 {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["bb:1", "grep", "CapEff", "/proc/self/status"]);
        let o = s.ok(&a);
        u64::from_str_radix(o.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(eff(&[]), 0xa80425fb, "docker's default set");
    assert_eq!(
        eff(&["--cap-drop", "CHOWN", "--cap-add", "NET_ADMIN"]),
        0xa80425fb - 1 + (1 << 12)
    );
    assert_eq!(eff(&["--cap-drop", "ALL"]), 0);
    assert_eq!(eff(&["-u", "1000"]), 0);
    // A read-only root; limits in the container's cgroup.
    let o = s.oci(&["run", "--rm", "--read-only", "bb:1", "touch", "/x"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Read-only file system"),
        "{o:?}"
    );
    s.ok(&[
        "run",
        "-d",
        "--name",
        "lim",
        "--pids-limit",
        "42",
        "--memory",
        "64m",
        "bb:1",
        "sleep",
        "100",
    ]);
    s.wait_status("lim", "running");
    let pid = s.field("lim", "{{.State.Pid}}");
    assert_eq!(cgroup_file(&pid, "pids", "pids.max").as_deref(), Some("42"));
    let mem = cgroup_file(&pid, "memory", "memory.limit_in_bytes")
        .or_else(|| cgroup_file(&pid, "memory", "memory.max"));
    assert_eq!(mem.as_deref(), Some("67108864"));
    s.ok(&["rm", "-f", "lim"]);
    for bad in [
        &["run", "--rm", "--memory", "lots", "bb:1", "true"][..],
        &["run", "--rm", "--cap-add", "CAP_NOPE", "bb:1", "true"],
        &["run", "--rm", "--restart", "sometimes", "bb:1", "true"],
        &[
            "run",
            "--rm",
            "--security-opt",
            "seccomp=/nonexistent",
            "bb:1",
            "true",
        ],
        &["run", "--rm", "--log-opt", "max-file=x", "bb:1", "true"],
    ] {
        let o = s.oci(bad);
        assert_eq!(o.status.code(), Some(125), "{bad:?}");
        assert_eq!(
            String::from_utf8_lossy(&o.stderr).lines().count(),
            1,
            "{o:?}"
        );
    }
    assert_eq!(s.snapshots(), 0, "refused runs leave nothing");
    assert!(s.ok(&["ps", "-a", "-q"]).trim().is_empty());
}

#[test]
fn a_named_volume_is_filled_from_the_image_written_inside_and_read_on_the_host() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    // An image with files at the mount point: a fresh volume starts as a copy of them.
    let root = s.dir.path().join("seeded");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("srv/sub")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for t in ["sh", "cat", "ls", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(t)).unwrap();
    }
    std::fs::write(root.join("srv/sub/seed"), "from the image\n").unwrap();
    // A link in the image that would lead a careless copy to the host's files.
    std::os::unix::fs::symlink("/etc", root.join("srv/hostetc")).unwrap();
    let tar = s.dir.path().join("seeded.tar");
    common::tar_dir(&root, &tar);
    s.ok(&["import", tar.to_str().unwrap(), "seeded:1"]);

    let out = s.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/srv",
        "seeded:1",
        "sh",
        "-c",
        "cat /srv/sub/seed; echo inside > /srv/written",
    ]);
    assert_eq!(out, "from the image\n");
    let info: serde_json::Value =
        serde_json::from_str(&s.ok(&["volume", "inspect", "data"])).unwrap();
    let mp = PathBuf::from(info[0]["Mountpoint"].as_str().unwrap());
    assert!(mp.starts_with(s.data()), "{mp:?}");
    assert_eq!(
        std::fs::read_to_string(mp.join("written")).unwrap(),
        "inside\n"
    );
    assert_eq!(
        std::fs::read_link(mp.join("hostetc")).unwrap(),
        Path::new("/etc"),
        "the link is copied as a link, not followed"
    );
    // Kept across containers; not filled again once it holds something.
    std::fs::remove_file(mp.join("sub/seed")).unwrap();
    let out = s.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,source=data,target=/x,readonly",
        "seeded:1",
        "ls",
        "/x",
    ]);
    assert_eq!(out, "hostetc\nsub\nwritten\n");
    // In use: not removable.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "holder",
        "-v",
        "data:/srv",
        "seeded:1",
        "sleep",
        "100",
    ]);
    let o = s.oci(&["volume", "rm", "data"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("in use by container holder"));
    s.ok(&["rm", "-f", "holder"]);
    s.ok(&["volume", "rm", "data"]);
    assert!(s.ok(&["volume", "ls", "-q"]).trim().is_empty());
    assert!(!mp.exists());
    for bad in [
        "type=volume,target=/x",
        "type=bind,source=rel,target=/x",
        "type=nfs,source=a,target=/x",
        "type=volume,source=a",
    ] {
        let o = s.oci(&["run", "--rm", "--mount", bad, "seeded:1", "true"]);
        assert_eq!(o.status.code(), Some(125), "{bad}");
    }
}

#[test]
fn rootless_detached_run_logs_exec_stop_and_rm() {
    if !common::root_with_busybox() {
        return;
    }
    let Some((uid, gid, _)) = common::rootless_user() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let tar = common::busybox_rootfs_tar(home.path(), TOOLS);
    for e in walk(home.path()) {
        std::os::unix::fs::lchown(&e, Some(uid), Some(gid)).unwrap();
    }
    let data = home.path().join("data");
    let as_user = |args: &[&str]| common::oci_as(OCI, (uid, gid), home.path(), &data, args);
    let ok = |args: &[&str]| common::ok_as(OCI, (uid, gid), home.path(), &data, args);
    ok(&["import", tar.to_str().unwrap(), "bb:1"]);
    ok(&[
        "run",
        "-d",
        "--name",
        "rl",
        "-v",
        "rlvol:/vol",
        "bb:1",
        "sh",
        "-c",
        "trap 'exit 0' TERM; id -u; echo v > /vol/f; sleep 100 & wait",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok(&["logs", "rl"]) != "0\n" {
        assert!(Instant::now() < deadline, "no output");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ok(&["ps"]).contains("Up "));
    assert_eq!(ok(&["exec", "rl", "cat", "/vol/f"]), "v\n");
    ok(&["stop", "rl"]);
    assert_eq!(
        ok(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            "rl"
        ]),
        "exited 0\n"
    );
    let o = as_user(&["volume", "rm", "rlvol"]);
    assert!(!o.status.success(), "in use by a stopped container");
    ok(&["rm", "rl"]);
    ok(&["volume", "rm", "rlvol"]);
    assert!(ok(&["ps", "-a", "-q"]).trim().is_empty());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_full_disk_while_logging_keeps_the_container_running_and_says_so() {
    if !common::root_with_busybox() {
        return;
    }
    // The data directory on a small tmpfs of its own.
    let top = tempfile::tempdir().unwrap();
    let data = top.path().join("data");
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
            let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
        }
    }
    let _guard = Unmount(data.clone());
    struct Kill(PathBuf);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new(OCI)
                .arg("--data-dir")
                .arg(&self.0)
                .args(["rm", "-f", "chatty"])
                .output();
        }
    }
    let _kill = Kill(data.clone());
    let tar = common::busybox_rootfs_tar(top.path(), TOOLS);
    let oci = |args: &[&str]| {
        Command::new(OCI)
            .arg("-q")
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    assert!(oci(&["import", tar.to_str().unwrap(), "bb:1"])
        .status
        .success());
    let o = oci(&[
        "run",
        "-d",
        "--name",
        "chatty",
        "bb:1",
        "sh",
        "-c",
        "i=0; while :; do echo line $i; i=$((i+1)); done",
    ]);
    assert!(o.status.success(), "{o:?}");
    // Fill what is left of the disk while it logs.
    let filler = data.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 1 << 16];
    while f.write_all(&block).is_ok() {}
    drop(f);
    std::thread::sleep(Duration::from_millis(500));
    let status = |o: Output| String::from_utf8_lossy(&o.stdout).trim().to_owned();
    assert_eq!(
        status(oci(&["inspect", "--format", "{{.State.Status}}", "chatty"])),
        "running",
        "the container keeps running on a full disk"
    );
    // Space again: the log goes on, and says what was lost (the note comes first, so stop
    // the writer before reading: it may fill the disk again).
    std::fs::remove_file(&filler).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(oci(&["kill", "chatty"]).status.success());
    let o = oci(&["logs", "chatty"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("log truncated"),
        "no truncation note: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(oci(&["rm", "-f", "chatty"]).status.success());
}

#[test]
fn usage_errors_are_one_line_with_exit_125_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["run", "--bogus", "bb:1"][..],
        &["stop", "-t", "soon", "x"],
        &["logs", "--since", "yesterday", "x"],
        &["logs", "--tail", "many", "x"],
        &["kill", "-s", "NOPE", "x"],
    ] {
        let o = Command::new(OCI)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(125), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("oci: "), "{err}");
    }
}

#[test]
fn init_reaps_orphans_and_passes_signals_on() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    // Without --init, `sleep` as pid 1 has SIGTERM ignored by the kernel; with it, the
    // reaper is pid 1 and passes SIGTERM on, so stop needs no SIGKILL.
    s.ok(&[
        "run", "-d", "--init", "--name", "i", "bb:1", "sleep", "1000",
    ]);
    s.wait_status("i", "running");
    // An orphan (its parent, the sh, exits at once) is reaped: no zombie stays.
    s.ok(&["exec", "i", "sh", "-c", "sleep 0.2 &"]);
    std::thread::sleep(Duration::from_millis(600));
    let pid = s.field("i", "{{.State.Pid}}");
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
    s.ok(&["stop", "-t", "10", "i"]);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(s.field("i", "{{.State.ExitCode}}"), "143");
    assert_eq!(
        s.ok(&["run", "--rm", "--init", "bb:1", "sh", "-c", "echo $$"])
            .trim(),
        "2",
        "the process is pid 2, under the reaper"
    );
    let o = s.oci(&["run", "--rm", "--init", "bb:1", "sh", "-c", "exit 4"]);
    assert_eq!(o.status.code(), Some(4));
}

#[test]
fn network_container_joins_another_containers_namespace() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "pod",
        "bb:1",
        "sh",
        "-c",
        "echo from-the-pod > /page; exec httpd -f -p 127.0.0.1:8080 -h /",
    ]);
    s.wait_status("pod", "running");
    std::thread::sleep(Duration::from_millis(300));
    // Its loopback is reachable from a container that joins its network namespace ...
    let out = s.ok(&[
        "run",
        "--rm",
        "--network",
        "container:pod",
        "bb:1",
        "wget",
        "-q",
        "-O",
        "-",
        "http://127.0.0.1:8080/page",
    ]);
    assert_eq!(out, "from-the-pod\n");
    // ... and from no other.
    let o = s.oci(&[
        "run",
        "--rm",
        "bb:1",
        "wget",
        "-q",
        "-O",
        "-",
        "http://127.0.0.1:8080/page",
    ]);
    assert!(!o.status.success());
    s.ok(&["rm", "-f", "pod"]);
    let o = s.oci(&["run", "--rm", "--network", "container:pod", "bb:1", "true"]);
    assert_eq!(o.status.code(), Some(125));
}

/// `oci exec -d` returns with its standard streams released: `x=$(oci exec -d C sleep 30)`
/// does not wait for the sleep. Judged by the end of file of the caller's pipe once `oci`
/// has exited, while the detached process still runs.
#[test]
fn exec_detached_releases_the_callers_streams() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    s.ok(&["run", "-d", "--name", "box", "bb:1", "sleep", "60"]);
    for stream in ["stdout", "stderr"] {
        let mut cmd = s.cmd(&["exec", "-d", "box", "sleep", "30"]);
        cmd.stdin(Stdio::null());
        if stream == "stdout" {
            cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        } else {
            cmd.stderr(Stdio::piped()).stdout(Stdio::null());
        }
        let mut child = cmd.spawn().unwrap();
        let pipe: std::os::fd::OwnedFd = if stream == "stdout" {
            child.stdout.take().unwrap().into()
        } else {
            child.stderr.take().unwrap().into()
        };
        assert!(child.wait().unwrap().success());
        let flags = rustix::fs::fcntl_getfl(&pipe).unwrap();
        rustix::fs::fcntl_setfl(&pipe, flags | rustix::fs::OFlags::NONBLOCK).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            rustix::io::read(&pipe, &mut buf).map_err(|e| e.to_string()),
            Ok(0),
            "the caller's {stream} is still held by the detached exec"
        );
    }
    s.ok(&["rm", "-f", "box"]);
}

/// `--restart always` of a program that exits at once backs off as docker's does (100 ms,
/// doubling, up to a minute): in 2 s that is at most a handful of restarts (it was thousands),
/// the container shows as restarting while it waits, and a stop during the wait holds.
#[test]
fn restart_always_backs_off_and_shows_restarting() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "loop",
        "--restart",
        "always",
        "bb:1",
        "true",
    ]);
    std::thread::sleep(Duration::from_secs(2));
    let count: u32 = s.field("loop", "{{.RestartCount}}").parse().unwrap();
    // 100 + 200 + 400 + 800 ms of waiting fit in 2 s, not 3,200 ms more.
    assert!((1..=5).contains(&count), "{count} restarts in 2 s");
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.field("loop", "{{.State.Status}}") != "restarting" {
        assert!(Instant::now() < deadline, "never seen restarting");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(s.ok(&["ps"]).contains("Restarting"), "{}", s.ok(&["ps"]));
    s.ok(&["stop", "loop"]);
    assert_eq!(s.field("loop", "{{.State.Status}}"), "exited");
    let after: u32 = s.field("loop", "{{.RestartCount}}").parse().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        s.field("loop", "{{.RestartCount}}").parse::<u32>().unwrap(),
        after
    );
    s.ok(&["rm", "loop"]);
}

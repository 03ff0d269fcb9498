//! Containers through the `oci` command line, for what only a command line does: docker's
//! output and exit codes, a real pty, an attached CLI killed or interrupted, exec -d
//! releasing the caller's streams, and a rootless user. The engine behind it (detached runs,
//! stop, logs, names, restart policies, exec, binds, volumes, limits, a killed monitor) is
//! tested at the library level in oci-rs-runtime's `tests/engine`.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
    _dir: tempfile::TempDir,
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
        let s = Self { _dir: dir, cli };
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

/// `--init-path`: the host's static init (Debian's docker-init, tini-static) is pid 1 and
/// runs the command; a relative path is refused before anything is made.
#[test]
fn an_init_of_the_hosts_as_pid_1() {
    let init = "/usr/bin/docker-init";
    if !common::root_with_busybox() || !Path::new(init).exists() {
        eprintln!("skipping: needs root and {init} (Debian's tini-static)");
        return;
    }
    let s = Store::new();
    let o = s.oci(&[
        "run",
        "--rm",
        "--init-path",
        init,
        "bb:1",
        "cat",
        "/proc/1/cmdline",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, b"/sbin/docker-init\0--\0cat\0/proc/1/cmdline\0");
    s.ok(&[
        "run",
        "-d",
        "--name",
        "ini",
        "--init-path",
        init,
        "bb:1",
        "sleep",
        "300",
    ]);
    assert_eq!(s.field("ini", "{{.Path}} {{.Args}}"), "sleep [300]");
    // The init passes SIGTERM on: the stop does not wait for its timeout.
    let t = Instant::now();
    s.ok(&["stop", "-t", "20", "ini"]);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let err = s.fails(&["run", "--rm", "--init-path", "docker-init", "bb:1", "true"]);
    assert!(err.contains("init-path"), "{err}");
    assert_eq!(s.ok(&["ps", "-aq"]).lines().count(), 1, "only ini was made");
}

/// Verbs with nothing to do answer as docker's: `stop` of a container never started
/// returns at once, `start` of a running one prints its name, `rm -f` of a missing one is
/// quiet and succeeds, `attach` to a stopped one says so in docker's words; and `events`
/// templates see docker's field names, `--since` takes a date.
#[test]
fn verbs_with_nothing_to_do_answer_as_docker_s() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    s.ok(&["create", "--name", "made", "bb:1", "sleep", "60"]);
    let started = std::time::Instant::now();
    assert_eq!(s.ok(&["stop", "made"]), "made\n");
    // A hang, not a speed: the wait for a monitor that was never there took 30 s.
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(s.ok(&["start", "made"]), "made\n");
    assert_eq!(s.ok(&["start", "made"]), "made\n", "a running container");
    // An exec whose process cannot be set up: docker's 126 (the runtime could not start
    // it); a command that is not there is 127.
    let o = s.oci(&["exec", "-w", "/nonexist", "made", "pwd"]);
    assert_eq!(o.status.code(), Some(126), "{o:?}");
    let o = s.oci(&["exec", "made", "no-such-command"]);
    assert_eq!(o.status.code(), Some(127), "{o:?}");
    // An exec's events, with its command, as docker's.
    let o = s.oci(&["exec", "made", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    let execs = s.ok(&[
        "events",
        "--since",
        "10m",
        "--until",
        "0s",
        "--filter",
        "container=made",
        "--format",
        "{{.Action}} {{.Actor.Attributes.exitCode}}",
    ]);
    assert!(
        execs.contains("exec_create: sh -c exit 3 <no value>\nexec_start: sh -c exit 3 <no value>\nexec_die 3\n"),
        "{execs}"
    );
    let o = s.oci(&["rm", "-f", "nosuch"]);
    assert!(o.status.success() && o.stdout.is_empty(), "{o:?}");
    let o = s.oci(&["rm", "nosuch"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such container: nosuch"));
    s.ok(&["stop", "-t", "1", "made"]);
    let o = s.oci(&["attach", "made"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("You cannot attach to a stopped container, start it first"),
        "{o:?}"
    );
    let id = s.field("made", "{{.Id}}");
    let today = s.ok(&[
        "events",
        "--since",
        &today(),
        "--until",
        "0s",
        "--filter",
        "event=stop",
        "--format",
        "{{.Type}} {{.Status}} {{.ID}} {{.Scope}} {{.Time}}",
    ]);
    let line = today.lines().last().unwrap_or_default().to_owned();
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(
        words.get(..4),
        Some(&["container", "stop", id.as_str(), "local"][..]),
        "{today}"
    );
    assert!(words[4].parse::<u64>().is_ok(), "{line}");
    // docker's prune report: a heading, what went, the space freed.
    let out = s.ok(&["container", "prune", "-f"]);
    assert!(
        out.starts_with(&format!(
            "Deleted Containers:\n{id}\n\nTotal reclaimed space: "
        )),
        "{out}"
    );
    assert_eq!(
        s.ok(&["volume", "prune", "-f"]),
        "Total reclaimed space: 0B\n"
    );
}

/// Today's date, `2006-01-02`, in UTC.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    oci_rs_image::rfc3339(secs * 1_000_000_000)[..10].to_owned()
}

/// docker's defaults: HOME from the user's passwd entry (`/root` without one), TERM for
/// `exec -t`, a missing `-w` directory made, a flag given twice taking its last value, and
/// two mounts on one path refused.
#[test]
fn docker_s_defaults_home_workdir_term_and_repeated_flags() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    assert_eq!(
        s.ok(&["run", "--rm", "bb:1", "sh", "-c", "echo $HOME"]),
        "/root\n"
    );
    // A user with a passwd entry gets its home; root without one /root, another /.
    let out = s.ok(&[
        "run",
        "--rm",
        "-u",
        "65534",
        "bb:1",
        "sh",
        "-c",
        "echo $HOME",
    ]);
    assert_eq!(
        out, "/\n",
        "no passwd entry for 65534 in this image: docker's /"
    );
    let out = s.ok(&[
        "run",
        "--rm",
        "-e",
        "HOME=/elsewhere",
        "bb:1",
        "sh",
        "-c",
        "echo $HOME",
    ]);
    assert_eq!(out, "/elsewhere\n");
    // `-e NAME` takes this process's value, and is left out when it has none (docker's CLI).
    let o = s
        .cmd(&[
            "run",
            "--rm",
            "-e",
            "FROM_HOST",
            "-e",
            "OCI_RS_UNSET_HERE",
            "bb:1",
            "sh",
            "-c",
            "echo ${FROM_HOST}; env | grep -c OCI_RS_UNSET_HERE",
        ])
        .env("FROM_HOST", "host value")
        .env_remove("OCI_RS_UNSET_HERE")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "host value\n0\n");
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "-w",
            "/made/for/me",
            "bb:1",
            "sh",
            "-c",
            "echo $PWD; ls -d /made/for/me"
        ]),
        "/made/for/me\n/made/for/me\n"
    );
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "--name",
            "first",
            "--name",
            "last",
            "-e",
            "A=1",
            "-e",
            "B=2",
            "bb:1",
            "sh",
            "-c",
            "echo $A$B $(hostname)"
        ])
        .split_whitespace()
        .next(),
        Some("12")
    );
    s.ok(&[
        "run", "-d", "--name", "one", "--name", "two", "bb:1", "sleep", "30",
    ]);
    assert_eq!(s.field("two", "{{.Name}}"), "/two");
    // top: docker's `ps -ef` columns.
    let top = s.ok(&["top", "two"]);
    let mut lines = top.lines();
    assert_eq!(
        lines
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        (row[0], row.get(7..)),
        ("root", Some(&["sleep", "30"][..])),
        "{top}"
    );
    // top with ps options: the host's ps, its rows of this container's processes only.
    let pid = row[1];
    let top = s.ok(&["top", "two", "-o", "pid,comm,args"]);
    let rows: Vec<Vec<&str>> = top
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{top}");
    assert_eq!(rows[0], ["PID", "COMMAND", "COMMAND"], "{top}");
    assert_eq!(rows[1], [pid, "sleep", "sleep", "30"], "{top}");
    let top = s.ok(&["top", "two", "aux"]);
    let titles: Vec<&str> = top
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(titles.get(..2), Some(&["USER", "PID"][..]), "{top}");
    assert_eq!(top.lines().count(), 2, "{top}");
    let o = s.oci(&["top", "two", "-o", "pid,user=PID"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("not allowed"), "{err}");
    let out = s.ok(&["exec", "-t", "two", "sh", "-c", "echo TERM=$TERM"]);
    assert!(out.contains("TERM=xterm"), "{out}");
    // exec --env-file (then -e over it) and --privileged (more capabilities than the
    // container's).
    let env_file = s.data.with_file_name("exec.env");
    std::fs::write(&env_file, "FROM_FILE=1\n# comment\nBOTH=file\n").unwrap();
    let out = s.ok(&[
        "exec",
        "--env-file",
        env_file.to_str().unwrap(),
        "-e",
        "BOTH=flag",
        "two",
        "sh",
        "-c",
        "echo $FROM_FILE $BOTH",
    ]);
    assert_eq!(out, "1 flag\n");
    let caps = |args: &[&str]| {
        let out = s.ok(args);
        let hex = out.split_whitespace().nth(1).unwrap_or("0").to_owned();
        u64::from_str_radix(&hex, 16).unwrap_or(0)
    };
    let plain = caps(&["exec", "two", "grep", "CapEff", "/proc/self/status"]);
    let privileged = caps(&[
        "exec",
        "--privileged",
        "two",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert!(
        privileged & plain == plain && privileged > plain,
        "{plain:x} {privileged:x}"
    );
    // host-gateway: the default bridge's gateway.
    let hosts = s.ok(&[
        "run",
        "--rm",
        "--add-host",
        "hg:host-gateway",
        "bb:1",
        "cat",
        "/etc/hosts",
    ]);
    let line = hosts.lines().find(|l| l.ends_with("\thg")).unwrap_or("");
    assert!(
        line.split('\t')
            .next()
            .is_some_and(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()),
        "{hosts}"
    );
    let err = s.fails(&[
        "run",
        "--rm",
        "-v",
        "/tmp:/data",
        "-v",
        "/var:/data/",
        "bb:1",
        "true",
    ]);
    assert!(err.contains("Duplicate mount point"), "{err}");
    assert_eq!(s.ok(&["ps", "-aq"]).lines().count(), 1, "only two was made");
}

/// Verbs given several names do each one and report each failure (exit 1), as docker's;
/// `image inspect` and `container inspect` look up their own kind only; podman's and
/// docker's other spellings name the same verbs.
#[test]
fn several_names_kinds_of_inspect_and_spellings() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    s.ok(&["run", "-d", "--name", "a1", "bb:1", "sleep", "30"]);
    s.ok(&["run", "-d", "--name", "a2", "bb:1", "sleep", "30"]);
    let o = s.oci(&["stop", "-t", "0", "a1", "missing", "a2"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "a1\na2\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such container: missing"));
    assert_eq!(s.field("a2", "{{.State.Status}}"), "exited");
    // -l and -n take the newest of every state; -s adds what each wrote.
    assert_eq!(s.ok(&["ps", "-l", "--format", "{{.Names}}"]), "a2\n");
    assert_eq!(
        s.ok(&["ps", "-n", "2", "--format", "{{.Names}}"]),
        "a2\na1\n"
    );
    let sized = s.ok(&["ps", "-a", "-s"]);
    assert!(
        sized.lines().next().unwrap_or("").ends_with("SIZE"),
        "{sized}"
    );
    // docker's `WRITTEN (virtual WRITTEN+IMAGE)`: the image is busybox, over a megabyte.
    // A template that shows the size asks for it (docker's CLI), with or without -s.
    let size = s.ok(&["ps", "-l", "--format", "{{.Size}}"]);
    let virt = size
        .split("(virtual ")
        .nth(1)
        .unwrap_or("")
        .trim_end_matches(")\n");
    assert!(virt.ends_with("MB") || virt.ends_with("kB"), "{size}");
    assert!(!virt.starts_with("0B"), "{size}");
    let o = s.oci(&["rm", "a1", "missing", "a2"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(s.ok(&["ps", "-aq"]), "");
    s.ok(&["volume", "create", "seen"]);
    assert_eq!(
        s.ok(&[
            "volume",
            "inspect",
            "--format",
            "{{.Name}} {{.Driver}}",
            "seen"
        ]),
        "seen local\n"
    );
    s.ok(&["volume", "rm", "seen"]);
    s.ok(&["volume", "rm", "-f", "never-made"]);
    assert!(s
        .fails(&["volume", "rm", "never-made"])
        .contains("no such volume"));
    // The kinds of inspect.
    s.ok(&["tag", "bb:1", "twin"]);
    s.ok(&["create", "--name", "twin", "bb:1", "true"]);
    assert_eq!(
        s.ok(&["container", "inspect", "-f", "{{.Name}}", "twin"]),
        "/twin\n"
    );
    assert!(s
        .ok(&["image", "inspect", "-f", "{{.Id}}", "twin"])
        .starts_with("sha256:"));
    let err = s.fails(&["container", "inspect", "bb:1"]);
    assert!(err.contains("No such container: bb:1"), "{err}");
    let err = s.fails(&["image", "inspect", "nothing:here"]);
    assert!(err.contains("No such image: nothing:here"), "{err}");
    let err = s.fails(&["inspect", "nothing"]);
    assert!(err.contains("No such object: nothing"), "{err}");
    // Spellings.
    assert_eq!(
        s.ok(&["system", "info", "--format", "{{.OSType}}"]),
        "linux\n"
    );
    s.ok(&["volume", "create", "vv"]);
    assert!(s.ok(&["volume", "list"]).contains("vv"));
    s.ok(&["volume", "remove", "vv"]);
    s.ok(&["container", "remove", "twin"]);
}

/// `oci ARGS` on a terminal, `input` typed after a moment: its exit code.
fn typed_on_a_pty(s: &Store, args: &[&str], input: &[u8]) -> i32 {
    typed_then_keys(s, args, input, || true, b"")
}

/// `oci ARGS` on a terminal, `command` and then the detach `keys` typed as
/// [`common::typed_on_pty`] types them: its exit code.
fn typed_then_keys(
    s: &Store,
    args: &[&str],
    command: &[u8],
    done: impl Fn() -> bool,
    keys: &[u8],
) -> i32 {
    common::typed_on_pty(s.cmd(args), command, done, keys).0
}

/// Ctrl-P Ctrl-Q (or `--detach-keys`) ends `run -it` and `attach` with 0 and leaves the
/// container running, with what was typed before delivered; `-a stdout` relays stdout
/// only; `--sig-proxy=false` leaves signals to the client.
#[test]
fn detach_keys_attach_streams_and_the_signal_proxy() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let exists = |f: &str| {
        s.oci(&["exec", "dk", "sh", "-c", &format!("test -e {f}")])
            .status
            .success()
    };
    let code = typed_then_keys(
        &s,
        &["run", "-it", "--name", "dk", "bb:1", "sh"],
        b"touch /one\r",
        || exists("/one"),
        b"\x10\x11",
    );
    assert_eq!(code, 0);
    assert_eq!(s.field("dk", "{{.State.Running}}"), "true");
    let code = typed_then_keys(
        &s,
        &["attach", "--detach-keys", "ctrl-x,z", "dk"],
        b"touch /two\r",
        || exists("/two"),
        b"\x18z",
    );
    assert_eq!(code, 0);
    assert_eq!(s.field("dk", "{{.State.Running}}"), "true");
    // What was typed before the keys reaches the shell, which runs it in its time.
    common::wait_for("the typed commands", 20, || {
        s.oci(&["exec", "dk", "sh", "-c", "test -f /one && test -f /two"])
            .status
            .success()
    });
    // A partial sequence is input like any other.
    let code = typed_on_a_pty(
        &s,
        &["attach", "--detach-keys", "a,b", "dk"],
        b"test a1 = a1 && exit 4\r",
    );
    assert_eq!(code, 4);
    // Without a terminal, input passes whole (the keys too) and the run lasts until the
    // container ends: its output and exit code.
    let mut piped = s
        .cmd(&["run", "--rm", "-i", "bb:1", "sh", "-c", "cat; exit 3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    piped
        .stdin
        .take()
        .unwrap()
        .write_all(b"a\x10\x11b\n")
        .unwrap();
    let o = piped.wait_with_output().unwrap();
    assert_eq!(
        (o.status.code(), &o.stdout[..]),
        (Some(3), &b"a\x10\x11b\n"[..])
    );
    let err = s.fails(&["run", "--detach-keys", "ctrl-1", "-i", "bb:1", "true"]);
    assert!(err.contains("detach-keys"), "{err}");

    let o = s.oci(&[
        "run",
        "--rm",
        "-a",
        "stdout",
        "bb:1",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert!(!String::from_utf8_lossy(&o.stderr).contains("err"));
    let err = s.fails(&["run", "-d", "-a", "stdout", "bb:1", "true"]);
    assert!(err.contains("cannot be used with"), "{err}");

    // Without the proxy, a SIGTERM ends the client and not the container.
    let mut cli = s
        .cmd(&[
            "run",
            "--name",
            "sp",
            "--sig-proxy=false",
            "bb:1",
            "sleep",
            "300",
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_for("sp running", 20, || {
        s.oci(&["inspect", "-f", "{{.State.Running}}", "sp"]).stdout == b"true\n"
    });
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(cli.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert!(!cli.wait().unwrap().success());
    assert_eq!(s.field("sp", "{{.State.Running}}"), "true");
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
fn usage_errors_are_one_line_with_dockers_codes_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A flag that does not parse is a usage error (125); values docker's daemon checks
    // (a time, a tail, a signal) are a failed verb (1).
    for (args, code) in [
        (&["run", "--bogus", "bb:1"][..], 125),
        (&["stop", "-t", "soon", "x"], 125),
        (&["logs", "--since", "yesterday", "x"], 1),
        (&["logs", "--tail", "many", "x"], 1),
        (&["kill", "-s", "NOPE", "x"], 1),
    ] {
        let o = Command::new(OCI)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(code), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("oci: "), "{err}");
    }
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

/// What `oci` prints of a container's life, as docker does: the full id from `run -d`,
/// `ps` and `ps -a` columns, `logs -t` times, `--format` fields, exec's exit code, and a
/// refused `rm` as one line with exit code 1. The engine's behaviour behind it is tested in
/// oci-rs-runtime's `tests/engine`.
#[test]
fn a_detached_containers_life_as_docker_prints_it() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let id = s.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--restart",
        "on-failure:2",
        "bb:1",
        "sh",
        "-c",
        "echo up; exec sleep 100",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "the full id: {id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    s.wait_status("web", "running");
    let ps = s.ok(&["ps"]);
    assert!(
        ps.contains(&id[..12]) && ps.contains("web") && ps.contains("Up "),
        "{ps}"
    );
    assert_eq!(
        s.field("web", "{{json .HostConfig.RestartPolicy}}"),
        r#"{"MaximumRetryCount":2,"Name":"on-failure"}"#
    );
    let o = s.oci(&["exec", "web", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let o = s.oci(&["rm", "web"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("running") && err.lines().count() == 1, "{err}");
    s.ok(&["stop", "-t", "1", "web"]);
    assert_eq!(s.field("web", "{{.State.ExitCode}}"), "137");
    assert!(s.ok(&["ps", "-a"]).contains("Exited (137)"));
    assert!(!s.ok(&["ps"]).contains("web"), "ps lists running ones only");
    assert_eq!(s.ok(&["logs", "web"]), "up\n");
    // No attributes chosen: docker's `--details` still puts a space before each line.
    assert_eq!(s.ok(&["logs", "--details", "web"]), " up\n");
    let stamped = s.ok(&["logs", "-t", "web"]);
    assert!(
        stamped
            .lines()
            .all(|l| l.len() > 31 && l.as_bytes()[4] == b'-'),
        "{stamped}"
    );
    s.ok(&["rm", "web"]);
    assert!(s.ok(&["ps", "-a", "-q"]).trim().is_empty());
    // Its life as `events` tells it, from its journal.
    let events = |terms: &[&str]| {
        let mut args = vec!["events", "--since", "10m", "--until", "0s"];
        args.extend_from_slice(terms);
        s.ok(&args)
    };
    let actions = events(&["--filter", "container=web", "--format", "{{.Action}}"]);
    let got: Vec<&str> = actions.lines().collect();
    assert_eq!(
        got,
        [
            "create",
            "start",
            "exec_create: sh -c exit 7",
            "exec_start: sh -c exit 7",
            "exec_die",
            "kill",
            "die",
            "stop",
            "destroy"
        ],
        "{actions}"
    );
    let code = events(&[
        "--filter",
        "event=die",
        "--format",
        "{{.Actor.Attributes.exitCode}}",
    ]);
    assert_eq!(code, "137\n");
    let line = events(&["--filter", "event=create"]);
    assert!(
        line.contains(&format!(" container create {id} (")) && line.contains("name=web"),
        "{line}"
    );
}

/// What docker's daemon journals besides a container's life: `top`, `cp` both ways
/// (`extract-to-dir`, `archive-path`), `export`, an attach (`start -a`), and each run's
/// volume `mount` and `unmount`, with docker's attributes.
#[test]
fn copies_exports_tops_attaches_and_volume_mounts_are_events() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let id = s.ok(&[
        "run",
        "-d",
        "--name",
        "evc",
        "-v",
        "evvol:/data",
        "bb:1",
        "sleep",
        "100",
    ]);
    let id = id.trim();
    s.wait_status("evc", "running");
    s.ok(&["top", "evc"]);
    let host = s.data().with_file_name("evfile");
    std::fs::write(&host, "x").unwrap();
    s.ok(&["cp", host.to_str().unwrap(), "evc:/data/"]);
    let back = s.data().with_file_name("evback");
    s.ok(&["cp", "evc:/data/evfile", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "x");
    let tar = s.data().with_file_name("ev.tar");
    s.ok(&["export", "-o", tar.to_str().unwrap(), "evc"]);
    s.ok(&["stop", "-t", "1", "evc"]);
    s.ok(&["create", "--name", "eva", "bb:1", "true"]);
    s.ok(&["start", "-a", "eva"]);
    let events = |terms: &[&str]| {
        let mut args = vec!["events", "--since", "10m", "--until", "0s"];
        args.extend_from_slice(terms);
        s.ok(&args)
    };
    let actions = events(&["--filter", "container=evc", "--format", "{{.Action}}"]);
    let got: Vec<&str> = actions
        .lines()
        .filter(|a| !["kill", "die", "stop"].contains(a))
        .collect();
    assert_eq!(
        got,
        [
            "create",
            "start",
            "top",
            "extract-to-dir",
            "archive-path",
            "export"
        ],
        "{actions}"
    );
    let volumes = events(&[
        "--filter",
        "type=volume",
        "--format",
        "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.container}} {{.Actor.Attributes.destination}}",
    ]);
    let got: Vec<&str> = volumes.lines().collect();
    assert_eq!(
        got,
        [
            "create evvol <no value> <no value>".to_owned(),
            format!("mount evvol {id} /data"),
            format!("unmount evvol {id} <no value>"),
        ],
        "{volumes}"
    );
    let rw = events(&[
        "--filter",
        "event=mount",
        "--format",
        "{{index .Actor.Attributes \"read/write\"}} {{.Actor.Attributes.driver}}",
    ]);
    assert_eq!(rw, "true local\n");
    let attached = events(&["--filter", "container=eva", "--format", "{{.Action}}"]);
    let got: Vec<&str> = attached.lines().collect();
    assert_eq!(got, ["create", "attach", "start", "die"], "{attached}");
}

/// Refusals that scripts match, in docker's daemon's words: `rm` of a running or paused
/// container, `pause` and `unpause` out of turn, `kill`, `exec` and `top` of one not
/// running, `rename` to its own name or another's.
#[test]
fn refusals_in_docker_s_words() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let a = s.ok(&["run", "-d", "--name", "ra", "bb:1", "sleep", "100"]);
    let a = a.trim();
    let c = s.ok(&["create", "--name", "rc", "bb:1", "true"]);
    let c = c.trim();
    s.wait_status("ra", "running");
    let said = |args: &[&str]| s.fails(args).trim().trim_start_matches("oci: ").to_owned();
    assert_eq!(
        said(&["rm", "ra"]),
        "cannot remove container \"/ra\": container is running: stop the container before removing or force remove"
    );
    assert_eq!(
        said(&["pause", "rc"]),
        format!("container {c} is not running")
    );
    assert_eq!(
        said(&["unpause", "ra"]),
        format!("container {a} is not paused")
    );
    s.ok(&["pause", "ra"]);
    assert_eq!(
        said(&["pause", "ra"]),
        format!("container {a} is already paused")
    );
    assert_eq!(
        said(&["rm", "ra"]),
        "cannot remove container \"/ra\": container is paused and must be unpaused first"
    );
    s.ok(&["unpause", "ra"]);
    assert_eq!(
        said(&["kill", "rc"]),
        format!("cannot kill container: rc: container {c} is not running")
    );
    assert_eq!(
        said(&["exec", "rc", "true"]),
        format!("container {c} is not running")
    );
    assert_eq!(
        said(&["top", "rc"]),
        format!("container {c} is not running")
    );
    assert_eq!(
        said(&["rename", "ra", "ra"]),
        "Renaming a container with the same name as its current name"
    );
    assert_eq!(
        said(&["rename", "ra", "rc"]),
        format!("Conflict. The container name \"/rc\" is already in use by container \"{c}\". You have to remove (or rename) that container to be able to reuse that name.")
    );
    s.ok(&["rm", "-f", "ra"]);
    // A copy into a read-only root.
    s.ok(&[
        "run",
        "-d",
        "--read-only",
        "--name",
        "rr",
        "bb:1",
        "sleep",
        "100",
    ]);
    let host = s.data().with_file_name("rrfile");
    std::fs::write(&host, "x").unwrap();
    assert_eq!(
        said(&["cp", host.to_str().unwrap(), "rr:/"]),
        "container rootfs is marked read-only"
    );
    s.ok(&["rm", "-f", "rr"]);
}

/// `ps` names a container's image as docker's daemon does: by the name it was created from
/// while that name still names the image, by the image's id once `rmi -f` took the name.
#[test]
fn ps_shows_the_image_id_once_its_name_is_gone() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    s.ok(&["tag", "bb:1", "bb:keep"]);
    s.ok(&["run", "-d", "--name", "pi", "bb:1", "sleep", "100"]);
    let image = |args: &[&str]| {
        let mut a = vec!["ps", "--format", "{{.Image}}"];
        a.extend_from_slice(args);
        s.ok(&a).trim().to_owned()
    };
    assert_eq!(image(&[]), "bb:1");
    let id = s.ok(&["image", "inspect", "--format", "{{.Id}}", "bb:1"]);
    let id = id.trim();
    s.ok(&["rmi", "-f", "bb:1"]);
    assert_eq!(image(&[]), id.trim_start_matches("sha256:")[..12]);
    assert_eq!(image(&["--no-trunc"]), id);
    s.ok(&["rm", "-f", "pi"]);
}

/// Values the engine refuses reach the user as one line and exit code 125, and leave no
/// container behind.
#[test]
fn refused_run_flags_are_one_line_with_exit_125() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    for bad in [
        &["--memory", "lots"][..],
        &["--cap-add", "CAP_NOPE"],
        &["--restart", "sometimes"],
        &["--security-opt", "seccomp=/nonexistent"],
        &["--log-opt", "max-file=x"],
        &["-v", "rel/ative:/x"],
        &["-v", "/a:/b:bogus"],
        &["--mount", "type=nfs,source=a,target=/x"],
        &["--network", "container:nope"],
        // Kernel parameters outside the container's namespaces, limits and lines that
        // would change another line of its files.
        &["--sysctl", "kernel.hostname=x"],
        &["--sysctl", "net.ipv4.ip_forward=1", "--network", "host"],
        &["--ulimit", "nofile=9:1"],
        &["--ulimit", "bogus=1"],
        &["--add-host", "evil:1.2.3.4 bank"],
        &["--add-host", "nocolon"],
        &["--dns", "not-an-ip"],
        &["--dns-option", "ndots:1\nnameserver 6.6.6.6"],
        &["--shm-size", "0"],
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(bad);
        args.extend_from_slice(&["bb:1", "true"]);
        let o = s.oci(&args);
        assert_eq!(o.status.code(), Some(125), "{bad:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
        assert!(err.starts_with("oci: "), "{err}");
    }
    assert_eq!(s.snapshots(), 0, "refused runs leave nothing");
    assert!(s.ok(&["ps", "-a", "-q"]).trim().is_empty());
}

/// The run flags for the kernel and the resolver reach the container: a namespaced sysctl,
/// limits, /dev/shm's size, another group, hosts lines, name servers, search domains and
/// resolver options (replacing the host's).
#[test]
fn run_flags_for_the_kernel_and_the_resolver() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(common::KERNEL_AND_RESOLVER_RUN);
    args.push("bb:1");
    args.extend_from_slice(common::KERNEL_AND_RESOLVER_SCRIPT);
    common::check_kernel_and_resolver(&s.ok(&args));
}

/// `--cidfile` (written; refused when it exists, leaving no container), `-v /data` an
/// anonymous volume that `rm -v` takes, `--stop-timeout` that `stop` without `-t` waits,
/// `--entrypoint ""`, and a health check that `ps` shows.
#[test]
fn run_flags_for_ids_volumes_stopping_entrypoints_and_health() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let cid = s.data().with_extension("cid");
    let _ = std::fs::remove_file(&cid);
    let id = s.ok(&[
        "run",
        "-d",
        "--name",
        "flags",
        "--cidfile",
        cid.to_str().unwrap(),
        "-v",
        "/data",
        "--stop-timeout",
        "1",
        "--health-cmd",
        "true",
        "--health-interval",
        "200ms",
        "bb:1",
        "sh",
        "-c",
        "trap '' TERM; while :; do sleep 0.1; done",
    ]);
    assert_eq!(std::fs::read_to_string(&cid).unwrap(), id.trim());
    let err = s.fails(&[
        "run",
        "-d",
        "--cidfile",
        cid.to_str().unwrap(),
        "bb:1",
        "true",
    ]);
    assert!(err.contains("container ID file found"), "{err}");
    assert_eq!(s.ok(&["ps", "-aq"]).lines().count(), 1);
    common::wait_for("healthy", 20, || {
        s.ok(&["ps", "--format", "{{.Status}}"])
            .trim_end()
            .ends_with("(healthy)")
    });
    // docker's: an anonymous volume's 64-hex name cut to 15 characters (the last `…`),
    // whole with --no-trunc; one local volume.
    let vol = s.ok(&["ps", "--format", "{{.Mounts}} {{.LocalVolumes}}"]);
    assert_eq!(vol.trim().chars().count(), 15 + 2, "{vol}");
    assert!(vol.trim().ends_with("… 1"), "{vol}");
    let vol = s
        .ok(&["ps", "--no-trunc", "--format", "{{.Mounts}}"])
        .trim()
        .to_owned();
    assert_eq!(vol.len(), 64, "{vol}");
    let t = std::time::Instant::now();
    s.ok(&["stop", "flags"]);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(8),
        "{:?}",
        t.elapsed()
    );
    assert!(t.elapsed() >= std::time::Duration::from_millis(900));
    s.ok(&["rm", "-v", "flags"]);
    assert!(!s.ok(&["volume", "ls"]).contains(&vol));
    assert_eq!(
        s.ok(&["run", "--rm", "--entrypoint", "", "bb:1", "echo", "x"]),
        "x\n"
    );
    let _ = std::fs::remove_file(&cid);
}

/// `run --pull`: `never` refuses an image that is not here (and makes no container),
/// `missing` pulls it once and then runs what it has, `always` pulls again and runs what the
/// registry has now.
#[test]
fn run_pull_policies_as_docker_s() {
    if !common::root_with_busybox() || !common::have_registry() {
        return;
    }
    let reg = common::Registry::start();
    let (seed, s) = (Store::new(), Store::new());
    let remote = format!("{}/pulltest/bb:1", reg.addr);
    let publish = |word: &str| {
        seed.ok(&[
            "run",
            "--name",
            word,
            "bb:1",
            "sh",
            "-c",
            &format!("echo {word} > /v"),
        ]);
        seed.ok(&["commit", word, &remote]);
        seed.ok(&["push", &remote]);
    };
    publish("one");
    let err = s.fails(&["run", "--rm", "--pull", "never", &remote, "cat", "/v"]);
    assert!(err.to_lowercase().contains("no such image"), "{err}");
    assert_eq!(s.ok(&["ps", "-aq"]), "");
    assert_eq!(
        s.ok(&["run", "--rm", "--pull", "missing", &remote, "cat", "/v"]),
        "one\n"
    );
    publish("two");
    assert_eq!(s.ok(&["run", "--rm", &remote, "cat", "/v"]), "one\n");
    assert_eq!(
        s.ok(&["run", "--rm", "--pull", "always", &remote, "cat", "/v"]),
        "two\n"
    );
    let err = s.fails(&["run", "--rm", "--pull", "sometimes", "bb:1", "true"]);
    assert!(err.contains("pull policy"), "{err}");
}

/// `stats --no-stream`: docker's columns for a busy container with a memory limit (its CPU
/// share above zero, the limit as docker writes it), every running one without names, and
/// docker's error for one that does not exist.
#[test]
fn stats_shows_what_a_container_uses() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "--memory",
        "64m",
        "bb:1",
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    s.ok(&["run", "-d", "--name", "idle", "bb:1", "sleep", "300"]);
    let out = s.ok(&["stats", "--no-stream", "busy"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("CONTAINER ID") && lines[0].contains("MEM USAGE / LIMIT"));
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cols[1], "busy", "{out}");
    let cpu: f64 = cols[2].trim_end_matches('%').parse().unwrap();
    assert!(cpu > 10.0, "a busy loop at {cpu}%: {out}");
    assert_eq!(cols[5], "64MiB", "{out}");
    let all = s.ok(&["stats", "--no-stream"]);
    assert!(all.contains(" busy ") && all.contains(" idle "), "{all}");
    let mut named = s.ok(&["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}"]);
    named = named
        .lines()
        .map(|l| format!("{l}\n"))
        .collect::<Vec<_>>()
        .join("");
    assert!(
        named.contains("busy 1\n") && named.contains("idle 1\n"),
        "{named}"
    );
    let json = s.ok(&["stats", "--no-stream", "--format", "json", "idle"]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["Name"], "idle", "{json}");
    let err = s.fails(&["stats", "--no-stream", "nobody"]);
    assert!(err.contains("No such container: nobody"), "{err}");
    // -a: stopped containers too, with zeros; --no-trunc: whole ids.
    s.ok(&["create", "--name", "stopped", "bb:1", "true"]);
    let every = s.ok(&[
        "stats",
        "--no-stream",
        "-a",
        "--format",
        "{{.Name}} {{.CPUPerc}} {{.MemUsage}}",
    ]);
    assert!(
        every.contains("stopped 0.00% 0B / 0B\n") && every.contains("busy "),
        "{every}"
    );
    assert!(!s
        .ok(&["stats", "--no-stream", "--format", "{{.Name}}"])
        .contains("stopped"));
    // Named, a container that is not running is a row of zeros too (docker's).
    assert_eq!(
        s.ok(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.MemUsage}} {{.PIDs}}",
            "stopped"
        ]),
        "stopped 0B / 0B 0\n"
    );
    let id = s.ok(&[
        "stats",
        "--no-stream",
        "--no-trunc",
        "--format",
        "{{.ID}}",
        "idle",
    ]);
    assert_eq!(id.trim().len(), 64, "{id}");
}

/// `run` of an image of another platform without `--platform` warns as docker does (the
/// image here is the host's busybox imported as arm64: the host runs it either way), and
/// says nothing with `--platform` given or for the host's own image.
#[test]
fn run_warns_of_an_image_for_another_platform() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let dir = tempfile::tempdir().unwrap();
    let tar = common::busybox_rootfs_tar(dir.path(), TOOLS);
    let other = if oci_rs_image::PlatformSpec::host().architecture == "arm64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    s.ok(&[
        "import",
        "--platform",
        other,
        tar.to_str().unwrap(),
        "other:1",
    ]);
    let run = |args: &[&str]| {
        let out = Command::new(OCI)
            .arg("--data-dir")
            .arg(s.data())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    let err = run(&["run", "--rm", "other:1", "true"]);
    assert!(
        err.contains(&format!("WARNING: The requested image's platform ({other}) does not match the detected host platform")),
        "{err}"
    );
    assert!(!run(&["run", "--rm", "--platform", other, "other:1", "true"]).contains("WARNING"));
    assert!(!run(&["run", "--rm", "bb:1", "true"]).contains("WARNING"));
    // A pull of it says so too.
    if common::have_registry() {
        let reg = common::Registry::start();
        let remote = format!("{}/plat/other:1", reg.addr);
        s.ok(&["tag", "other:1", &remote]);
        s.ok(&["push", &remote]);
        let fresh = tempfile::tempdir().unwrap();
        let o = Command::new(OCI)
            .arg("--data-dir")
            .arg(fresh.path())
            .args(["pull", &remote])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        let err = String::from_utf8(o.stderr).unwrap();
        assert!(
            err.contains(&format!(
                "WARNING: The requested image's platform ({other})"
            )),
            "{err}"
        );
        // pull -a: every tag of the repository.
        let second = format!("{}/plat/other:2", reg.addr);
        s.ok(&["tag", "other:1", &second]);
        s.ok(&["push", &second]);
        let all = Store::new();
        let repo = format!("{}/plat/other", reg.addr);
        all.ok(&["pull", "-a", &repo]);
        let tags = all.ok(&["images", "--format", "{{.Tag}}", &repo]);
        let tags: std::collections::BTreeSet<&str> = tags.lines().collect();
        assert_eq!(tags, ["1", "2"].into(), "{tags:?}");
        assert!(all.fails(&["pull", "-a", &remote]).contains("--all-tags"));
    }
}

/// `rename OLD NEW` as docker's: silent on success, the new name then names the container;
/// a missing container is docker's error and exit code 1.
#[test]
fn rename_gives_the_container_its_new_name() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    s.ok(&["run", "-d", "--name", "old", "bb:1", "sleep", "30"]);
    assert_eq!(s.ok(&["rename", "old", "new"]), "");
    assert_eq!(s.field("new", "{{.Name}}"), "/new");
    let out = s.oci(&["rename", "old", "other"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such container: old"));
}

/// `diff` prints docker's lines, `KIND PATH`, sorted.
#[test]
fn diff_prints_what_a_container_changed() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    s.ok(&[
        "run",
        "--name",
        "d",
        "bb:1",
        "sh",
        "-c",
        "mkdir /made && echo x > /made/f",
    ]);
    assert_eq!(s.ok(&["diff", "d"]), "A /made\nA /made/f\n");
    assert!(s
        .fails(&["diff", "nothing"])
        .contains("No such container: nothing"));
}

/// The `pids.max` of process `pid`'s cgroup (v1 or v2), when it can be read.
fn pids_max(pid: &str) -> Option<String> {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    cgroup.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        let dir = match ctrls {
            "" => format!("/sys/fs/cgroup{path}"),
            c if c.split(',').any(|c| c == "pids") => format!("/sys/fs/cgroup/pids{path}"),
            _ => return None,
        };
        let max = std::fs::read_to_string(format!("{dir}/pids.max")).ok()?;
        Some(max.trim().to_owned())
    })
}

/// `pause`, `unpause` and `update` as docker's: the freezer, `(Paused)` in `ps`, `paused`
/// in `inspect`, exec refused while frozen, new limits in the running container's cgroup,
/// and `stop` and `rm -f` of a paused container.
#[test]
fn pause_unpause_and_update_a_running_container() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    s.ok(&["run", "-d", "--name", "frozen", "bb:1", "sleep", "100"]);
    s.wait_status("frozen", "running");
    assert_eq!(s.ok(&["pause", "frozen"]).trim(), "frozen");
    assert!(s.ok(&["ps"]).contains("(Paused)"), "{}", s.ok(&["ps"]));
    assert_eq!(
        s.field(
            "frozen",
            "{{.State.Status}} {{.State.Paused}} {{.State.Running}}"
        ),
        "paused true true"
    );
    assert!(!s.oci(&["exec", "frozen", "true"]).status.success());
    s.fails(&["pause", "frozen"]);
    assert_eq!(s.ok(&["unpause", "frozen"]).trim(), "frozen");
    assert_eq!(s.field("frozen", "{{.State.Status}}"), "running");
    s.fails(&["unpause", "frozen"]);
    assert!(s.oci(&["exec", "frozen", "true"]).status.success());
    // New limits, read back from the container's own cgroup.
    s.ok(&[
        "update",
        "--pids-limit",
        "77",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "frozen",
    ]);
    let pid = s.field("frozen", "{{.State.Pid}}");
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path_of = |ctrl: &str| -> Option<String> {
        cgroup.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            ctrls
                .split(',')
                .any(|c| c == ctrl)
                .then(|| format!("/sys/fs/cgroup/{ctrl}{path}"))
        })
    };
    if let (Some(pids), Some(mem), Some(cpu)) = (path_of("pids"), path_of("memory"), path_of("cpu"))
    {
        let read = |p: String| std::fs::read_to_string(p).unwrap().trim().to_owned();
        assert_eq!(read(format!("{pids}/pids.max")), "77");
        assert_eq!(
            read(format!("{mem}/memory.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
        assert_eq!(read(format!("{cpu}/cpu.cfs_quota_us")), "50000");
    }
    let e = s.fails(&["update", "--memory", "1k", "frozen"]);
    assert!(e.contains("6 MiB") && e.lines().count() == 1, "{e}");
    // Kept, as docker keeps them: inspect shows them, and a restart applies them again.
    assert_eq!(
        s.field(
            "frozen",
            "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}}"
        ),
        "67108864 77 500000000"
    );
    s.ok(&["restart", "-t", "0", "frozen"]);
    s.wait_status("frozen", "running");
    if let Some(max) = pids_max(&s.field("frozen", "{{.State.Pid}}")) {
        assert_eq!(max, "77", "after the restart");
    }
    // A paused container stops, and is removed by force.
    s.ok(&["pause", "frozen"]);
    s.ok(&["stop", "-t", "1", "frozen"]);
    assert_eq!(s.field("frozen", "{{.State.Status}}"), "exited");
    // A stopped container's limits change for its next start (docker's).
    s.ok(&["update", "--pids-limit", "55", "frozen"]);
    assert_eq!(s.field("frozen", "{{.HostConfig.PidsLimit}}"), "55");
    s.ok(&["start", "frozen"]);
    s.wait_status("frozen", "running");
    if let Some(max) = pids_max(&s.field("frozen", "{{.State.Pid}}")) {
        assert_eq!(max, "55", "the next start's limit");
    }
    s.ok(&["stop", "-t", "1", "frozen"]);
    s.ok(&["run", "-d", "--name", "frozen2", "bb:1", "sleep", "100"]);
    s.wait_status("frozen2", "running");
    s.ok(&["pause", "frozen2"]);
    s.ok(&["rm", "-f", "frozen2"]);
    assert!(!s.ok(&["ps", "-a"]).contains("frozen2"));
}

/// `oci cp` both ways, to a new name and into a directory, and as a tar on standard output
/// (links that point out of the container are tested through the Engine API's `docker cp`,
/// which runs the same library calls: examples/tests/docker_api.rs).
#[test]
fn cp_copies_both_ways_and_keeps_to_the_container() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let host = s.data().with_file_name("cp-host");
    std::fs::create_dir_all(host.join("tree/sub")).unwrap();
    std::fs::write(host.join("tree/sub/f"), "from the host\n").unwrap();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "bb:1",
        "sh",
        "-c",
        "echo inside > /x; exec sleep 300",
    ]);
    s.wait_status("box", "running");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.oci(&["cp", "box:/x", "-"]).status.success() {
        assert!(Instant::now() < deadline, "no /x");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Out: to a new name, and into a directory.
    s.ok(&["cp", "box:/x", host.join("renamed").to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(host.join("renamed")).unwrap(),
        "inside\n"
    );
    s.ok(&["cp", "box:/x", host.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(host.join("x")).unwrap(), "inside\n");
    // -L with a link in the container: what it leads to (inside the container, however it
    // climbs), named as the link; without, the link itself.
    s.ok(&[
        "exec",
        "box",
        "sh",
        "-c",
        "ln -s ../../../x /lnk && ln -s /lnk /lnk2",
    ]);
    let followed = host.join("followed");
    s.ok(&["cp", "-L", "box:/lnk2", followed.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&followed).unwrap(), "inside\n");
    assert!(!followed.is_symlink());
    s.ok(&["cp", "-L", "box:/lnk", host.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(host.join("lnk")).unwrap(),
        "inside\n"
    );
    let kept = host.join("kept");
    s.ok(&["cp", "box:/lnk", kept.to_str().unwrap()]);
    assert!(kept.is_symlink());
    // A tar on standard output.
    let o = s.oci(&["cp", "box:/x", "-"]);
    assert!(o.status.success());
    assert!(o.stdout.windows(2).any(|w| w == b"x\0"), "not a tar of x");
    // In: a tree into a directory.
    s.ok(&["cp", host.join("tree").to_str().unwrap(), "box:/"]);
    assert_eq!(
        s.ok(&["exec", "box", "cat", "/tree/sub/f"]),
        "from the host\n"
    );
    // Owners as docker's daemon makes them: the archive's (the host file's), or with -a
    // the container user's.
    std::os::unix::fs::chown(host.join("tree/sub/f"), Some(1234), Some(1234)).unwrap();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "usr",
        "-u",
        "4321:4321",
        "bb:1",
        "sleep",
        "300",
    ]);
    s.wait_status("usr", "running");
    let f = host.join("tree/sub/f");
    s.ok(&["cp", f.to_str().unwrap(), "usr:/plain"]);
    s.ok(&["cp", "-a", f.to_str().unwrap(), "usr:/archived"]);
    assert_eq!(
        s.ok(&[
            "exec",
            "usr",
            "busybox",
            "stat",
            "-c",
            "%u:%g",
            "/plain",
            "/archived"
        ]),
        "1234:1234\n4321:4321\n"
    );
    // Into a directory that is not there: an error naming it, not a quiet success.
    let err = s.fails(&["cp", f.to_str().unwrap(), "usr:/nodir/x"]);
    assert!(err.contains("/nodir"), "{err}");
    s.ok(&["rm", "-f", "usr"]);
    // In, by docker's rules for the destination: a new name for a file or a directory,
    // `DIR/.` for a directory's contents, a link followed with -L, never a directory over
    // a file, and a missing directory (`DEST/`) refused.
    let f = host.join("tree/sub/f");
    s.ok(&["cp", f.to_str().unwrap(), "box:/renamed-f"]);
    assert_eq!(
        s.ok(&["exec", "box", "cat", "/renamed-f"]),
        "from the host\n"
    );
    s.ok(&["cp", host.join("tree").to_str().unwrap(), "box:/other-tree"]);
    assert_eq!(
        s.ok(&["exec", "box", "cat", "/other-tree/sub/f"]),
        "from the host\n"
    );
    let contents = format!("{}/.", host.join("tree").display());
    s.ok(&["cp", &contents, "box:/tree-contents"]);
    assert_eq!(
        s.ok(&["exec", "box", "cat", "/tree-contents/sub/f"]),
        "from the host\n"
    );
    std::os::unix::fs::symlink(&f, host.join("link")).unwrap();
    s.ok(&[
        "cp",
        "-L",
        host.join("link").to_str().unwrap(),
        "box:/followed",
    ]);
    assert_eq!(
        s.ok(&["exec", "box", "cat", "/followed"]),
        "from the host\n"
    );
    let err = s.fails(&["cp", host.join("tree").to_str().unwrap(), "box:/renamed-f"]);
    assert!(err.contains("cannot copy a directory to a file"), "{err}");
    // A link as the destination is followed one level; DEST/ must be a directory.
    s.ok(&["exec", "box", "sh", "-c", "mkdir /real && ln -s real /via"]);
    s.ok(&["cp", f.to_str().unwrap(), "box:/via"]);
    assert_eq!(s.ok(&["exec", "box", "cat", "/real/f"]), "from the host\n");
    let err = s.fails(&["cp", f.to_str().unwrap(), "box:/renamed-f/"]);
    assert!(err.contains("not a directory"), "{err}");
    let err = s.fails(&["cp", f.to_str().unwrap(), "box:/no-such-dir/"]);
    assert!(
        err.contains("Could not find the file /no-such-dir/"),
        "{err}"
    );
    // Usage and missing paths: one line, nothing made.
    assert!(s
        .fails(&["cp", "a", "b"])
        .contains("one side is CONTAINER:PATH"));
    assert!(s
        .fails(&["cp", "box:/no/such", host.to_str().unwrap()])
        .contains("Could not find the file /no/such in container box"));
}

/// `--format` as docker's CLI takes it, wherever docker has it: Go's template language
/// (range, if, with, index, printf, len, join, upper, `.Label "KEY"`), `table` with aligned
/// columns and docker's headers, `json`; a broken template is one line and exit 1.
#[test]
fn format_templates_as_docker_s() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "front",
        "--label",
        "tier=web",
        "--label",
        "a.b=dotted",
        "bb:1",
        "sleep",
        "30",
    ]);
    s.ok(&["run", "--name", "a-much-longer-name", "bb:1", "true"]);
    // info's fields are docker's /info document's.
    let info = s.ok(&[
        "info",
        "--format",
        "{{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}} {{.Images}} {{.OSType}}",
    ]);
    assert_eq!(info, "2 1 1 1 linux\n");
    let info: serde_json::Value =
        serde_json::from_str(&s.ok(&["info", "--format", "json"])).unwrap();
    assert_eq!(info["DockerRootDir"], s.data.to_str().unwrap());
    let table = s.ok(&[
        "ps",
        "-a",
        "--format",
        r#"table {{.Names}}\t{{.Label "tier"}}\t{{.State}}"#,
    ]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAMES", "LABEL", "STATE"]
    );
    // Columns start where the header's do (docker's tabwriter: widest cell + 3).
    let col = lines[0].find("LABEL").unwrap();
    assert_eq!(col, "a-much-longer-name".len() + 3, "{table}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("front") && l[col..].starts_with("web")),
        "{table}"
    );
    assert_eq!(
        s.ok(&["ps", "--format", "{{.Names}} {{upper .State}}"]),
        "front RUNNING\n"
    );
    let labels = s.field(
        "front",
        r#"{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}"#,
    );
    assert_eq!(labels, "a.b=dotted;tier=web;");
    assert_eq!(
        s.field("front", r#"{{index .Config.Labels "a.b"}}"#),
        "dotted"
    );
    assert_eq!(
        s.field(
            "front",
            r#"{{if .State.Running}}up{{else}}down{{end}} {{len .Config.Cmd}}"#
        ),
        "up 2"
    );
    assert_eq!(
        s.field("front", r#"{{with .State}}{{printf "%v" .Running}}{{end}}"#),
        "true"
    );
    assert_eq!(s.field("front", "{{join .Config.Cmd \",\"}}"), "sleep,30");
    assert_eq!(s.field("front", "{{.NoSuchField}}"), "<no value>");
    let json = s.ok(&["ps", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["Names"], "front");
    assert_eq!(
        s.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        "bb:1\n"
    );
    let images = s.ok(&["images", "--format", r"table {{.Repository}}\t{{.Tag}}"]);
    assert!(images.starts_with("REPOSITORY   TAG\n"), "{images}");
    let history = s.ok(&[
        "history",
        "--format",
        "{{.Size}}|{{json .CreatedBy}}",
        "bb:1",
    ]);
    assert_eq!(history.lines().count(), 1, "{history}");
    assert!(history.contains('|'), "{history}");
    let history = s.ok(&["history", "--format", r"table {{.ID}}\t{{.Size}}", "bb:1"]);
    assert!(history.starts_with("IMAGE "), "{history}");
    s.ok(&["volume", "create", "--label", "team=a", "vf"]);
    assert_eq!(
        s.ok(&["volume", "ls", "--format", r#"{{.Name}}:{{.Label "team"}}"#]),
        "vf:a\n"
    );
    // What docker's CLI shows uncounted outside `system df -v`.
    assert_eq!(
        s.ok(&["volume", "ls", "--format", "{{.Links}} {{.Size}}"]),
        "N/A N/A\n"
    );
    let nets = s.ok(&[
        "network",
        "ls",
        "--format",
        "{{.Name}}",
        "--filter",
        "type=builtin",
    ]);
    assert_eq!(nets, "bridge\nhost\nnone\n");
    let out = s.oci(&["ps", "--format", "{{.Names"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("{{.Names") && err.contains("unclosed action"),
        "{err}"
    );
}

/// `create` then `start`, as docker's: create prints the id and leaves a `created`
/// container; its errors are exit 125 and leave nothing; `container create` is the same.
#[test]
fn create_then_start() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    let id = s.ok(&[
        "create", "--name", "made", "--label", "k=v", "bb:1", "sh", "-c", "echo hi",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    assert_eq!(s.field("made", "{{.State.Status}}"), "created");
    assert_eq!(s.field("made", r#"{{index .Config.Labels "k"}}"#), "v");
    let ps = s.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert_eq!(ps, "made Created\n");
    s.ok(&["start", "made"]);
    assert_eq!(s.ok(&["wait", "made"]).trim(), "0");
    assert_eq!(s.ok(&["logs", "made"]), "hi\n");
    let other = s.ok(&["container", "create", "bb:1", "true"]);
    assert_eq!(s.field(other.trim(), "{{.State.Status}}"), "created");
    let out = s.oci(&["create", "--cpu-shares", "1", "bb:1", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        s.ok(&["ps", "-a", "-q"]).lines().count(),
        2,
        "the refused create left nothing"
    );
}

/// `system df` and `system prune` as docker's: counts, sizes measured on disk, and a prune
/// that takes stopped containers, unused networks, (with `--volumes`) unused anonymous
/// volumes and (with `-a`) unused images.
#[test]
fn system_df_and_prune() {
    if !common::root_with_busybox() {
        return;
    }
    let s = Store::new();
    s.ok(&[
        "run",
        "--name",
        "writer",
        "-v",
        "/scratch",
        "bb:1",
        "sh",
        "-c",
        "head -c 300000 /bin/busybox > /big; head -c 200000 /bin/busybox > /scratch/f",
    ]);
    s.ok(&["volume", "create", "named"]);
    let df = s.ok(&["system", "df"]);
    let row = |kind: &str| -> Vec<String> {
        let line = df
            .lines()
            .find(|l| l.starts_with(kind))
            .unwrap_or_else(|| panic!("{df}"));
        line[kind.len()..]
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert!(df.starts_with("TYPE"), "{df}");
    assert_eq!(row("Images")[..2], ["1", "1"], "{df}");
    assert_eq!(row("Containers")[..3], ["1", "0", "300kB"], "{df}");
    assert_eq!(row("Local Volumes")[..3], ["2", "1", "200kB"], "{df}");
    assert_eq!(
        s.ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]),
        "Images 1\nContainers 1\nLocal Volumes 2\nBuild Cache 0\n"
    );
    let version = s.ok(&[
        "version",
        "--format",
        "{{.Client.Version}} {{.Server.ApiVersion}}",
    ]);
    assert_eq!(version.split_whitespace().count(), 2, "{version}");
    // -v: docker's four sections, each a table under its title; an image that shares its
    // layer with another counts it as shared.
    s.ok(&["tag", "bb:1", "bb:2"]);
    s.ok(&["commit", "writer", "bb:written"]);
    let verbose = s.ok(&["system", "df", "-v"]);
    let titles: Vec<&str> = verbose
        .lines()
        .filter(|l| l.ends_with(':') || l.starts_with("Build cache usage:"))
        .collect();
    assert_eq!(
        titles,
        [
            "Images space usage:",
            "Containers space usage:",
            "Local Volumes space usage:",
            "Build cache usage: 0B"
        ],
        "{verbose}"
    );
    // The row whose first columns are `start`'s words, as columns.
    let line = |start: &str| -> Vec<String> {
        let columns = |l: &str| -> Vec<String> {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let want = columns(start);
        verbose
            .lines()
            .map(columns)
            .find(|c| c.len() >= want.len() && c[..want.len()] == want[..])
            .unwrap_or_else(|| panic!("no {start:?}: {verbose}"))
    };
    assert_eq!(
        line("REPOSITORY"),
        [
            "REPOSITORY",
            "TAG",
            "IMAGE ID",
            "CREATED",
            "SIZE",
            "SHARED SIZE",
            "UNIQUE SIZE",
            "CONTAINERS"
        ]
    );
    let base = line("bb  1");
    let written = line("bb  written");
    // bb:1's one layer is bb:written's first: shared by both, unique to neither of them.
    assert_eq!(base[5], base[4], "shared = size: {verbose}");
    assert_eq!(
        (base[6].as_str(), base[7].as_str()),
        ("0B", "1"),
        "{verbose}"
    );
    assert_eq!(written[5], base[4], "{verbose}");
    assert_ne!(written[6], "0B", "its own layer: {verbose}");
    assert_eq!(
        line("CONTAINER ID"),
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "LOCAL VOLUMES",
            "SIZE",
            "CREATED",
            "STATUS",
            "NAMES"
        ]
    );
    let writer = line(s.ok(&["ps", "-aq", "--filter", "name=writer"]).trim());
    assert_eq!(
        (writer[3].as_str(), writer[4].as_str()),
        ("1", "300kB"),
        "{verbose}"
    );
    assert_eq!(line("VOLUME NAME"), ["VOLUME NAME", "LINKS", "SIZE"]);
    assert_eq!(line("named"), ["named", "0", "0B"]);
    assert_eq!(
        line("CACHE ID"),
        [
            "CACHE ID",
            "CACHE TYPE",
            "SIZE",
            "CREATED",
            "LAST USED",
            "USAGE",
            "SHARED"
        ]
    );
    s.ok(&["rmi", "bb:2", "bb:written"]);
    s.ok(&["rm", "writer"]);
    s.ok(&["run", "--name", "ended", "bb:1", "true"]);
    let out = s.ok(&["system", "prune", "-f", "--volumes"]);
    assert!(out.contains("Deleted Containers:"), "{out}");
    assert!(out.contains("Deleted Volumes:"), "{out}");
    assert!(out.contains("Total reclaimed space: "), "{out}");
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(
        s.ok(&["volume", "ls", "-q"]),
        "named\n",
        "a named volume stays"
    );
    assert_eq!(
        s.ok(&["images", "-q"]).lines().count(),
        1,
        "no -a: the image stays"
    );
    let out = s.ok(&["system", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: bb:1"), "{out}");
    assert_eq!(s.ok(&["images", "-q"]), "");
}

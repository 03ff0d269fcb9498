//! The runc-compatible command line, driven as containerd's shim drives runc.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;

const RUNC: &str = env!("CARGO_BIN_EXE_oci-runc");

fn quiet(root: &Path, args: &[&str]) -> std::process::ExitStatus {
    common::runc_quiet(Path::new(RUNC), root, args)
}

fn runc(root: &Path, args: &[&str]) -> Output {
    Command::new(RUNC)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// [`common::busybox_bundle`] made by this `oci-runc`.
fn busybox_bundle(dir: &Path, tools: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
    common::busybox_bundle(Path::new(RUNC), dir, tools)
}

#[test]
fn spec_create_start_exec_state_kill_delete_run() {
    if !rustix::process::geteuid().is_root() || !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: needs root and busybox-static");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (bundle, root) = busybox_bundle(dir.path(), &["sh", "sleep", "echo", "hostname"]);
    assert_eq!(
        runc(&root, &["spec", "--bundle", bundle.to_str().unwrap()])
            .status
            .code(),
        Some(1),
        "spec refuses to overwrite"
    );
    let cfg = bundle.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    let caps = &v["process"]["capabilities"];
    assert!(caps["bounding"].is_array(), "{caps}");
    assert!(
        caps.get("inheritable").is_none() && caps.get("ambient").is_none(),
        "no inheritable or ambient capabilities in the template: {caps}"
    );
    v["process"]["args"] = serde_json::json!(["sleep", "30"]);
    v["process"]["terminal"] = serde_json::json!(false);
    v["hostname"] = serde_json::json!("c1host");
    std::fs::write(&cfg, serde_json::to_vec(&v).unwrap()).unwrap();
    let b = bundle.to_str().unwrap();
    let pidfile = dir.path().join("pid");
    // The init inherits create's stdio, as with runc: not pipes this test would wait on.
    let o = quiet(
        &root,
        &[
            "create",
            "--bundle",
            b,
            "--pid-file",
            pidfile.to_str().unwrap(),
            "c1",
        ],
    );
    assert!(o.success());
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    let state: serde_json::Value =
        serde_json::from_slice(&runc(&root, &["state", "c1"]).stdout).unwrap();
    assert_eq!(state["status"], "created");
    assert_eq!(state["pid"], pid);
    assert!(runc(&root, &["start", "c1"]).status.success());
    let state: serde_json::Value =
        serde_json::from_slice(&runc(&root, &["state", "c1"]).stdout).unwrap();
    assert_eq!(state["status"], "running");
    let o = runc(
        &root,
        &["exec", "c1", "sh", "-c", "echo in-$(hostname); exit 3"],
    );
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "in-c1host");
    let list = String::from_utf8(runc(&root, &["list"]).stdout).unwrap();
    assert!(list.contains("c1") && list.contains("running"), "{list}");
    assert_eq!(
        runc(&root, &["delete", "c1"]).status.code(),
        Some(1),
        "running: refused without --force"
    );
    assert!(runc(&root, &["kill", "c1", "KILL"]).status.success());
    for _ in 0..200 {
        let s: serde_json::Value =
            serde_json::from_slice(&runc(&root, &["state", "c1"]).stdout).unwrap();
        if s["status"] == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(runc(&root, &["delete", "c1"]).status.success());
    let o = runc(&root, &["state", "c1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
    // run: foreground, the container's exit code.
    v["process"]["args"] = serde_json::json!(["sh", "-c", "exit 7"]);
    std::fs::write(&cfg, serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(
        runc(&root, &["run", "--bundle", b, "r1"]).status.code(),
        Some(7)
    );
    let features: serde_json::Value =
        serde_json::from_slice(&runc(&root, &["features"]).stdout).unwrap();
    assert!(features["linux"]["namespaces"].as_array().unwrap().len() >= 7);
}

/// oci-runc run by an unprivileged user: `spec --rootless` (one mapping, written directly),
/// then several mappings through newuidmap and newgidmap; no cgroup is touched.
#[test]
fn rootless_runs_as_an_unprivileged_user() {
    if !rustix::process::geteuid().is_root() || !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: needs root (to make the unprivileged user) and busybox-static");
        return;
    }
    let Some((uid, gid, sub)) = common::rootless_user() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (bundle, root) = (dir.path().join("bundle"), dir.path().join("state"));
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for t in ["sh", "id", "cat", "touch", "chown", "stat", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(t)).unwrap();
    }
    let chown = |p: &Path| {
        let st = Command::new("chown")
            .args(["-R", &format!("{uid}:{gid}")])
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success());
    };
    chown(dir.path());
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // `program` run as the user.
    let setpriv = |program: &str| {
        let mut c = Command::new("/usr/bin/setpriv");
        c.args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
            program,
        ]);
        c
    };
    let as_user = |args: &[&str]| -> Output {
        setpriv(RUNC)
            .arg("--root")
            .arg(&root)
            .args(args)
            .current_dir(&bundle)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // For what leaves a container behind: it inherits the stdio, so not pipes this test would
    // wait on.
    let detached = |args: &[&str]| -> std::process::ExitStatus {
        setpriv(RUNC)
            .arg("--root")
            .arg(&root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    let o = as_user(&["spec", "--rootless"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["sh", "-c", "id -u; cat /proc/self/uid_map"]);
    spec["root"]["readonly"] = false.into();
    // Writes the spec for the user, runs it as the user under `id`, and gives its output.
    let run_as_user = |spec: &serde_json::Value, id: &str| -> String {
        std::fs::write(&config, serde_json::to_vec(spec).unwrap()).unwrap();
        chown(&config);
        let o = as_user(&["run", "--bundle", bundle.to_str().unwrap(), id]);
        common::succeeded("oci-runc run", o)
    };
    let out = run_as_user(&spec, "one");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0"], "{out}");
    assert_eq!(lines[1], ["0", &uid.to_string(), "1"], "{out}");
    assert_eq!(lines.len(), 2, "{out}");

    // Container root is the user; 1..65536 are the user's subordinate ids: a file chowned
    // to 1000 inside belongs to sub + 999 outside.
    spec["linux"]["uidMappings"] = serde_json::json!([
        {"containerID": 0, "hostID": uid, "size": 1},
        {"containerID": 1, "hostID": sub, "size": 65536}
    ]);
    spec["linux"]["gidMappings"] = serde_json::json!([
        {"containerID": 0, "hostID": gid, "size": 1},
        {"containerID": 1, "hostID": sub, "size": 65536}
    ]);
    spec["process"]["args"] = serde_json::json!([
        "sh",
        "-c",
        "cat /proc/self/uid_map; touch /tmp/owned && chown 1000:1000 /tmp/owned"
    ]);
    // runc's default set has no CAP_CHOWN; inside its own user namespace root may have it.
    let caps = serde_json::json!(["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"]);
    for set in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ] {
        spec["process"]["capabilities"][set] = caps.clone();
    }
    let out = run_as_user(&spec, "two");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains(&sub.to_string()), "{out}");
    let meta = std::fs::metadata(rootfs.join("tmp/owned")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (sub + 999, sub + 999));
    assert!(
        !Path::new("/sys/fs/cgroup/pids/oci-rs/two").exists(),
        "a rootless container got a cgroup"
    );

    // A created container's init waits as a copy of oci-runc's memory: non-dumpable, so that
    // even its owner reads none of it (nor would a container sharing its namespaces).
    spec["process"]["args"] = serde_json::json!(["sleep", "30"]);
    std::fs::write(&config, serde_json::to_vec(&spec).unwrap()).unwrap();
    chown(&config);
    // The init inherits create's stdio: not pipes this test would wait on.
    assert!(detached(&["create", "--bundle", bundle.to_str().unwrap(), "waits"]).success());
    let state: serde_json::Value =
        serde_json::from_slice(&as_user(&["state", "waits"]).stdout).unwrap();
    let pid = state["pid"].as_i64().unwrap();
    let read = setpriv("cat")
        .arg(format!("/proc/{pid}/environ"))
        .output()
        .unwrap();
    as_user(&["delete", "--force", "waits"]);
    assert!(
        !read.status.success() && read.stdout.is_empty(),
        "the owner read the waiting init's environment: {}",
        String::from_utf8_lossy(&read.stdout)
    );
    assert!(
        String::from_utf8_lossy(&read.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );

    // A second rootless container in the user and pid namespaces of a running one, by path:
    // its pid 1 is the first one's process, and its ids are the first one's mapping.
    assert!(detached(&[
        "run",
        "--detach",
        "--bundle",
        bundle.to_str().unwrap(),
        "host"
    ])
    .success());
    let state: serde_json::Value =
        serde_json::from_slice(&as_user(&["state", "host"]).stdout).unwrap();
    let host = state["pid"].as_i64().unwrap();
    let mut joiner = spec.clone();
    joiner["process"]["args"] = serde_json::json!([
        "sh",
        "-c",
        "cat /proc/1/cmdline; echo; cat /proc/self/uid_map"
    ]);
    joiner["linux"]["namespaces"] = serde_json::json!([
        {"type": "user", "path": format!("/proc/{host}/ns/user")},
        {"type": "pid", "path": format!("/proc/{host}/ns/pid")},
        {"type": "mount"},
        {"type": "ipc"},
        {"type": "uts"}
    ]);
    let obj = joiner["linux"].as_object_mut().unwrap();
    obj.remove("uidMappings");
    obj.remove("gidMappings");
    let out = run_as_user(&joiner, "joiner");
    as_user(&["delete", "--force", "host"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first().copied(), Some("sleep\u{0}30\u{0}"), "{out}");
    assert!(
        out.contains(&sub.to_string()),
        "the first one's mapping: {out}"
    );
}

/// A container created by another process (`oci-runc create` under a reaper of its own, as a
/// shim or a supervisor would be) is waited for from this one through the library: the real
/// exit code, not -1 (a pidfd, and Linux 6.15's exit status for pidfd holders).
#[test]
fn a_container_this_process_did_not_create_is_waited_for_with_its_exit_code() {
    if !rustix::process::geteuid().is_root() || !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: needs root and busybox-static");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (bundle, root) = busybox_bundle(dir.path(), &["sh"]);
    let cfg = bundle.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    v["process"]["args"] = serde_json::json!(["sh", "-c", "exit 7"]);
    v["process"]["terminal"] = serde_json::json!(false);
    std::fs::write(&cfg, serde_json::to_vec(&v).unwrap()).unwrap();
    // The reaper: a child subreaper that runs `create`, says so, and reaps the orphaned init.
    let reaper = "import ctypes, os, subprocess, sys\n\
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)\n\
        subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n\
        print('created', flush=True)\n\
        while True:\n\
        \x20   try:\n\
        \x20       os.wait()\n\
        \x20   except ChildProcessError:\n\
        \x20       break\n";
    let mut helper = Command::new("python3")
        .arg("-c")
        .arg(reaper)
        .arg(RUNC)
        .arg("--root")
        .arg(&root)
        .args(["create", "--bundle", bundle.to_str().unwrap(), "waited"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(helper.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "created");
    oci_rs_runtime::allow_unsealed();
    let mut c = oci_rs_runtime::Container::load(&root, "waited").unwrap();
    c.start().unwrap();
    // Long enough for `exit 7` to have ended and been reaped by the helper before the wait
    // begins (under load it happened anyway): the status is still known.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(c.wait().unwrap(), 7);
    assert!(helper.wait().unwrap().success());
    c.delete(false).unwrap();
}

/// The calls containerd's runc v2 shim makes besides create, start, state, kill and delete:
/// `exec --detach --pid-file` (the pid must be the process: the shim's exec timeout kills
/// it), `pause`/`resume` (state says "paused"), `update --resources -` (the kubelet's
/// in-place resize), `ps --format json`, and `delete --force` of a paused container.
#[test]
fn the_shims_exec_pause_update_and_ps_calls() {
    if !rustix::process::geteuid().is_root() || !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: needs root and busybox-static");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (bundle, root) = busybox_bundle(dir.path(), &["sh", "sleep", "cat"]);
    let cfg = bundle.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    v["process"]["args"] = serde_json::json!(["sleep", "60"]);
    v["process"]["terminal"] = serde_json::json!(false);
    v["linux"]["cgroupsPath"] = serde_json::json!(format!("oci-runc-test-{}", std::process::id()));
    v["linux"]["resources"] = serde_json::json!({"pids": {"limit": 50}});
    std::fs::write(&cfg, serde_json::to_vec(&v).unwrap()).unwrap();
    let b = bundle.to_str().unwrap();
    assert!(quiet(&root, &["create", "--bundle", b, "s1"]).success());
    assert!(runc(&root, &["start", "s1"]).status.success());
    let state = |root: &Path| -> serde_json::Value {
        serde_json::from_slice(&runc(root, &["state", "s1"]).stdout).unwrap()
    };
    let init: i32 = state(&root)["pid"].as_i64().unwrap() as i32;

    // exec --detach --pid-file, with a process.json as the shim writes it.
    let mut process = v["process"].clone();
    process["args"] = serde_json::json!(["sleep", "4321"]);
    let pjson = dir.path().join("process.json");
    std::fs::write(&pjson, serde_json::to_vec(&process).unwrap()).unwrap();
    let pidfile = dir.path().join("exec.pid");
    let o = quiet(
        &root,
        &[
            "exec",
            "--detach",
            "--process",
            pjson.to_str().unwrap(),
            "--pid-file",
            pidfile.to_str().unwrap(),
            "s1",
        ],
    );
    assert!(o.success());
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let cmdline = loop {
        let c = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if c == b"sleep\x004321\x00" || std::time::Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(
        cmdline, b"sleep\x004321\x00",
        "the pid file names the process itself"
    );

    // ps --format json lists the init and the exec'd process.
    let pids: Vec<i32> =
        serde_json::from_slice(&runc(&root, &["ps", "--format", "json", "s1"]).stdout).unwrap();
    assert!(pids.contains(&init) && pids.contains(&pid), "{pids:?}");
    // Killing that pid (containerd's exec timeout) ends the process.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    // update --resources - (stdin), as the shim sends it.
    let mut child = Command::new(RUNC)
        .arg("--root")
        .arg(&root)
        .args(["update", "--resources", "-", "s1"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"pids": {"limit": 77}, "cpu": {"shares": 512}}"#)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let cgroup = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    let pids_path = cgroup
        .lines()
        .find_map(|l| {
            l.strip_prefix("0::")
                .or_else(|| l.split_once(":pids:").map(|x| x.1))
        })
        .unwrap()
        .to_string();
    let pids_dir = if Path::new("/sys/fs/cgroup/pids").is_dir() {
        format!("/sys/fs/cgroup/pids{pids_path}")
    } else {
        format!("/sys/fs/cgroup{pids_path}")
    };
    assert_eq!(
        std::fs::read_to_string(format!("{pids_dir}/pids.max"))
            .unwrap()
            .trim(),
        "77"
    );
    // And with flags.
    assert!(runc(&root, &["update", "--pids-limit", "88", "s1"])
        .status
        .success());
    assert_eq!(
        std::fs::read_to_string(format!("{pids_dir}/pids.max"))
            .unwrap()
            .trim(),
        "88"
    );
    // A document that is not resources: a clear error, nothing changed.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, b"[1, 2]").unwrap();
    let o = runc(
        &root,
        &["update", "--resources", bad.to_str().unwrap(), "s1"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not linux.resources"));

    // pause, resume, and the states they give; exec refused while paused.
    assert!(runc(&root, &["pause", "s1"]).status.success());
    assert_eq!(state(&root)["status"], "paused");
    assert_eq!(runc(&root, &["exec", "s1", "true"]).status.code(), Some(1));
    assert!(runc(&root, &["resume", "s1"]).status.success());
    assert_eq!(state(&root)["status"], "running");
    // containerd's global flags before the verb.
    let o = runc(
        &root,
        &["--rootless=false", "--systemd-cgroup", "state", "s1"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // delete --force of a paused container ends it and removes its cgroup.
    assert!(runc(&root, &["pause", "s1"]).status.success());
    assert!(runc(&root, &["delete", "--force", "s1"]).status.success());
    assert!(!Path::new(&pids_dir).exists(), "{pids_dir} removed");
    assert_eq!(runc(&root, &["state", "s1"]).status.code(), Some(1));
}

/// `start` seals itself (a re-execution from a read-only view of its file) only when it
/// runs startContainer hooks in the container: then the hook runs and leaves its mark; a
/// start without hooks stays a plain process, and both start their container.
#[test]
fn start_runs_start_container_hooks_from_a_sealed_program() {
    if !rustix::process::geteuid().is_root() || !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: needs root and busybox-static");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (bundle, root) = busybox_bundle(dir.path(), &["sh", "sleep", "echo"]);
    let cfg = bundle.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    v["process"]["args"] = serde_json::json!(["sleep", "30"]);
    v["process"]["terminal"] = serde_json::json!(false);
    v["root"]["readonly"] = serde_json::json!(false);
    let b = bundle.to_str().unwrap();
    for (id, hooked) in [("plain", false), ("hooked", true)] {
        if hooked {
            v["hooks"] = serde_json::json!({"startContainer": [{
                "path": "/bin/sh",
                "args": ["sh", "-c", "echo started-inside > /hook-mark"]
            }]});
        }
        std::fs::write(&cfg, serde_json::to_vec(&v).unwrap()).unwrap();
        assert!(quiet(&root, &["create", "--bundle", b, id]).success());
        let o = runc(&root, &["start", id]);
        assert!(
            o.status.success(),
            "start {id}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let state: serde_json::Value =
            serde_json::from_slice(&runc(&root, &["state", id]).stdout).unwrap();
        assert_eq!(state["status"], "running", "{id}");
        assert_eq!(quiet(&root, &["delete", "--force", id]).code(), Some(0));
    }
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/hook-mark")).unwrap(),
        "started-inside\n"
    );
}

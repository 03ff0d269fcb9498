//! Real containers from a busybox rootfs: namespaces, mounts, state transitions, limits.

#![allow(clippy::unwrap_used)]

use oci_rs_runtime::{run, Container, ContainerBuilder, Error, Status};
use oci_spec::runtime::{RootBuilder, Spec};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn root_or_skip() -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: creating namespaces and mounts needs root");
        return false;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: /bin/busybox (busybox-static) is not installed");
        return false;
    }
    true
}

/// One copy of busybox for every bundle, hard-linked into each. Copying it per bundle raced
/// with the other tests' clones: a child forked while a copy was being written holds the
/// write descriptor, and exec of that file fails with ETXTBSY. Written once, before any test
/// here has a container, it is never open for writing while one forks.
fn busybox() -> &'static Path {
    static COPY: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    let (_, path) = COPY.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busybox");
        std::fs::copy("/bin/busybox", &path).unwrap();
        (dir, path)
    });
    path
}

struct Bundle {
    dir: tempfile::TempDir,
    state: PathBuf,
}

impl Bundle {
    fn new() -> Self {
        // This test program runs from its file on disk and its images are our own busybox
        // trees; sealing is tested in tests/sealed.rs and end to end in examples' runc tests.
        oci_rs_runtime::allow_unsealed();
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::hard_link(busybox(), rootfs.join("bin/busybox")).unwrap();
        for t in [
            "sh", "echo", "cat", "hostname", "id", "ls", "true", "false", "sleep", "touch", "grep",
            "ps", "readlink", "mount", "yes", "head",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(t)).unwrap();
        }
        std::fs::write(rootfs.join("etc/hello"), b"hello from the rootfs\n").unwrap();
        let state = dir.path().join("state");
        Self { dir, state }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn spec(&self, args: &[&str]) -> Spec {
        let mut spec = Spec::default();
        spec.set_root(Some(
            RootBuilder::default()
                .path("rootfs")
                .readonly(false)
                .build()
                .unwrap(),
        ));
        let mut p: oci_spec::runtime::Process = spec.process().clone().unwrap();
        p.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        p.set_terminal(Some(false));
        spec.set_process(Some(p));
        spec.set_hostname(Some("box".into()));
        spec
    }

    fn builder(&self, id: &str, spec: Spec) -> (ContainerBuilder, OwnedFd) {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let b = ContainerBuilder::new(id, spec, self.dir.path())
            .state_root(&self.state)
            .stdout(w);
        (b, r)
    }
}

fn read_all(fd: OwnedFd) -> String {
    let mut f = std::fs::File::from(fd);
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    s
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), fastrand_u32())
}

fn fastrand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

#[test]
fn runs_a_process_in_new_namespaces() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let spec = b.spec(&[
        "sh",
        "-c",
        "echo pid=$$; hostname; cat /etc/hello; ls /proc/1/exe >/dev/null && echo proc-ok; exit 7",
    ]);
    let (builder, out) = b.builder(&unique("ns"), spec);
    let code = run(builder).unwrap();
    let text = read_all(out);
    assert_eq!(code, 7, "{text}");
    assert!(text.contains("pid=1\n"), "{text}");
    assert!(text.contains("box\n"), "{text}");
    assert!(text.contains("hello from the rootfs"), "{text}");
    assert!(text.contains("proc-ok"), "{text}");
}

#[test]
fn create_start_state_kill_delete() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let id = unique("life");
    let (builder, _out) = b.builder(&id, b.spec(&["sleep", "30"]));
    let c = builder.create().unwrap();
    assert_eq!(c.status(), Status::Created);
    let st = serde_json::to_value(c.state()).unwrap();
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id.as_str());
    // Another "process" loads it by id and starts it.
    let mut other = Container::load(&b.state, &id).unwrap();
    other.start().unwrap();
    assert_eq!(other.status(), Status::Running);
    assert!(matches!(other.start(), Err(Error::WrongState { .. })));
    let again = Container::load(&b.state, &id).unwrap();
    assert!(matches!(again.delete(false), Err(Error::WrongState { .. })));
    // Pid 1 of a namespace ignores signals it has no handler for: SIGTERM does nothing to
    // `sleep`, SIGKILL ends it.
    other.kill(libc::SIGKILL).unwrap();
    let mut mine = c;
    assert_eq!(mine.wait().unwrap(), 128 + libc::SIGKILL);
    assert_eq!(mine.status(), Status::Stopped);
    mine.delete(false).unwrap();
    assert!(matches!(
        Container::load(&b.state, &id),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        ContainerBuilder::new("../x", b.spec(&["true"]), b.dir.path())
            .state_root(&b.state)
            .create(),
        Err(Error::InvalidId(_))
    ));
}

#[test]
fn read_only_rootfs_and_masked_paths() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let mut spec = b.spec(&["sh", "-c", "touch /etc/x 2>/dev/null && echo wrote || echo refused; cat /proc/kcore 2>&1 | head -c 10 | wc -c; echo x > /proc/sysrq-trigger 2>/dev/null && echo sysrq || echo ro-proc"]);
    let mut root = spec.root().clone().unwrap();
    root.set_readonly(Some(true));
    spec.set_root(Some(root));
    let (builder, out) = b.builder(&unique("ro"), spec);
    assert_eq!(run(builder).unwrap(), 0);
    let text = read_all(out);
    assert!(text.contains("refused"), "{text}");
    assert!(text.contains("ro-proc"), "{text}");
    assert!(!b.rootfs().join("etc/x").exists());
}

#[test]
fn mount_targets_cannot_escape_through_symlinks() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let outside = b.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    // A symlink in the rootfs pointing at a host directory: the mount must land inside.
    std::os::unix::fs::symlink(&outside, b.rootfs().join("evil")).unwrap();
    let mut spec = b.spec(&["sh", "-c", "ls /evil >/dev/null; echo done"]);
    let mut mounts = spec.mounts().clone().unwrap();
    mounts.push(
        oci_spec::runtime::MountBuilder::default()
            .destination("/evil")
            .typ("tmpfs")
            .source("tmpfs")
            .build()
            .unwrap(),
    );
    spec.set_mounts(Some(mounts));
    let (builder, _out) = b.builder(&unique("evil"), spec.clone());
    // The link resolves inside the root, where its target does not exist: refused.
    let e = builder.create().unwrap_err();
    assert!(oci_rs_runtime::chain(&e).contains("/evil"), "{e}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(outside.to_str().unwrap()),
        "mounted outside the root"
    );
    // A link to a directory that exists inside the root is followed there.
    std::fs::remove_file(b.rootfs().join("evil")).unwrap();
    std::os::unix::fs::symlink("/tmp", b.rootfs().join("evil")).unwrap();
    let mut spec2 = b.spec(&["sh", "-c", "grep -c ' /tmp ' /proc/self/mountinfo"]);
    spec2.set_mounts(spec.mounts().clone());
    let (builder, out) = b.builder(&unique("evil2"), spec2);
    assert_eq!(run(builder).unwrap(), 0);
    assert_eq!(read_all(out).trim(), "1");
}

#[test]
fn failures_in_setup_are_reported_with_the_step() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    // A program that is not there exits 127, one that cannot run 126 (as docker and shells).
    std::fs::set_permissions(
        b.rootfs().join("etc/hello"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for (args, code) in [
        (&["/bin/does-not-exist"][..], 127),
        (&["not-in-path"], 127),
        (&["/etc/hello"], 126),
    ] {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let (builder, _) = b.builder(&unique("noexec"), b.spec(args));
        let mut c = builder.stderr(w).create().unwrap();
        c.start().unwrap();
        assert_eq!(c.wait().unwrap(), code, "{args:?}");
        c.delete(false).unwrap();
        let text = read_all(r);
        let want = if code == 127 {
            "executable file not found in $PATH"
        } else {
            "exec format error"
        };
        assert!(
            text.contains(&format!("exec: \"{}\": {want}", args[0])),
            "{text}"
        );
    }
    let mut spec = b.spec(&["true"]);
    let mut p = spec.process().clone().unwrap();
    p.set_cwd("relative".into());
    spec.set_process(Some(p));
    assert!(matches!(
        b.builder(&unique("cwd"), spec).0.create(),
        Err(Error::InvalidSpec { field: "process.cwd", ref value, .. }) if value == "relative"
    ));
}

#[test]
fn user_namespace_maps_ids() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let mut spec = b.spec(&["sh", "-c", "id -u; cat /proc/self/uid_map"]);
    let mut linux = spec.linux().clone().unwrap();
    let mut ns = linux.namespaces().clone().unwrap();
    ns.push(
        oci_spec::runtime::LinuxNamespaceBuilder::default()
            .typ(oci_spec::runtime::LinuxNamespaceType::User)
            .build()
            .unwrap(),
    );
    linux.set_namespaces(Some(ns));
    let map = |c: u32, h: u32, s: u32| {
        oci_spec::runtime::LinuxIdMappingBuilder::default()
            .container_id(c)
            .host_id(h)
            .size(s)
            .build()
            .unwrap()
    };
    linux.set_uid_mappings(Some(vec![map(0, 100_000, 65536)]));
    linux.set_gid_mappings(Some(vec![map(0, 100_000, 65536)]));
    spec.set_linux(Some(linux));
    // The rootfs must be reachable by the mapped root.
    std::os::unix::fs::chown(b.rootfs(), Some(100_000), Some(100_000)).unwrap();
    let (builder, out) = b.builder(&unique("userns"), spec);
    let code = run(builder).unwrap();
    let text = read_all(out);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("0\n"), "{text}");
    assert!(text.contains("100000"), "{text}");
}

#[test]
fn cgroup_v1_limits_apply() {
    if !root_or_skip() {
        return;
    }
    if !Path::new("/sys/fs/cgroup/pids").is_dir()
        || Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    {
        eprintln!("skipping: no cgroup v1 pids controller here");
        return;
    }
    let b = Bundle::new();
    let mut spec = b.spec(&["sh", "-c", "cat /proc/self/cgroup | grep pids"]);
    let mut linux = spec.linux().clone().unwrap();
    let res = oci_spec::runtime::LinuxResourcesBuilder::default()
        .pids(
            oci_spec::runtime::LinuxPidsBuilder::default()
                .limit(42i64)
                .build()
                .unwrap(),
        )
        .memory(
            oci_spec::runtime::LinuxMemoryBuilder::default()
                .limit(64i64 * 1024 * 1024)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    linux.set_resources(Some(res));
    let id = unique("cg");
    linux.set_cgroups_path(Some(PathBuf::from(format!("/oci-rs-test/{id}"))));
    spec.set_linux(Some(linux));
    let (builder, out) = b.builder(&id, spec);
    let mut c = builder.create().unwrap();
    let max =
        std::fs::read_to_string(format!("/sys/fs/cgroup/pids/oci-rs-test/{id}/pids.max")).unwrap();
    assert_eq!(max.trim(), "42");
    let mem = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/oci-rs-test/{id}/memory.limit_in_bytes"
    ))
    .unwrap();
    assert_eq!(mem.trim(), (64 * 1024 * 1024).to_string());
    // The init is in the cgroup of every hierarchy before it runs anything.
    let pid = serde_json::to_value(c.state()).unwrap()["pid"]
        .as_i64()
        .unwrap();
    for h in ["pids", "memory", "cpu", "freezer", "devices"] {
        let procs =
            std::fs::read_to_string(format!("/sys/fs/cgroup/{h}/oci-rs-test/{id}/cgroup.procs"))
                .unwrap_or_default();
        assert!(procs.lines().any(|l| l == pid.to_string()), "{h}: {procs}");
    }
    c.start().unwrap();
    assert_eq!(c.wait().unwrap(), 0);
    c.delete(false).unwrap();
    // Its cgroup namespace is rooted at its own cgroup (unshared once it was there, as
    // runc does), not at the runtime's: it sees itself at `/`.
    let text = read_all(out);
    assert!(text.trim_end().ends_with(":pids:/"), "{text}");
    assert!(
        !Path::new(&format!("/sys/fs/cgroup/pids/oci-rs-test/{id}")).exists(),
        "cgroup removed on delete"
    );
}

#[test]
fn cgroup_v2_placement_on_the_unified_hierarchy() {
    if !root_or_skip() {
        return;
    }
    let unified = Path::new("/sys/fs/cgroup/unified");
    if !unified.join("cgroup.procs").exists() {
        eprintln!("skipping: no separate unified (v2) hierarchy here");
        return;
    }
    let b = Bundle::new();
    let id = unique("v2");
    let mut spec = b.spec(&["sh", "-c", "cat /proc/self/cgroup | grep '^0::'"]);
    let mut linux = spec.linux().clone().unwrap();
    linux.set_cgroups_path(Some(PathBuf::from(format!("oci-rs-test/{id}"))));
    linux.set_resources(None);
    spec.set_linux(Some(linux));
    let (builder, out) = b.builder(&id, spec.clone());
    let mut c = builder.cgroup_v2_root(unified).create().unwrap();
    let pid = serde_json::to_value(c.state()).unwrap()["pid"]
        .as_i64()
        .unwrap();
    let procs = std::fs::read_to_string(unified.join(format!("oci-rs-test/{id}/cgroup.procs")))
        .unwrap_or_default();
    c.start().unwrap();
    let code = c.wait().unwrap();
    c.delete(false).unwrap();
    let text = read_all(out);
    assert_eq!(code, 0, "{text}");
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");
    // Its cgroup namespace's root is its cgroup.
    assert_eq!(text.trim(), "0::/", "{text}");
}

#[test]
fn many_containers_leave_nothing_behind() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    for i in 0..20 {
        let id = unique(&format!("loop{i}"));
        let (builder, _out) = b.builder(&id, b.spec(&["true"]));
        let mut c = builder.create().unwrap();
        if i % 2 == 0 {
            c.start().unwrap();
            assert_eq!(c.wait().unwrap(), 0);
        } else {
            // Deleting a created container kills its waiting init.
        }
        c.delete(false).unwrap();
        assert!(!Path::new(&format!("/sys/fs/cgroup/pids/oci-rs/{id}")).exists());
    }
    let mounts_after = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    assert_eq!(
        mounts_before, mounts_after,
        "mounts leaked into the host namespace"
    );
    assert_eq!(
        std::fs::read_dir(&b.state).unwrap().count(),
        0,
        "state left behind"
    );
    // A killed init is reported stopped; unknown ids are clear errors.
    let id = unique("killed");
    let (builder, _out) = b.builder(&id, b.spec(&["sleep", "30"]));
    let mut c = builder.create().unwrap();
    c.start().unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(c.pid()).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    assert_eq!(c.wait().unwrap(), 137);
    assert_eq!(
        Container::load(&b.state, &id).unwrap().status(),
        Status::Stopped
    );
    c.delete(false).unwrap();
    assert!(matches!(
        Container::load(&b.state, "no-such-container"),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn exec_joins_a_running_container() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let id = unique("exec");
    let (builder, _out) = b.builder(&id, b.spec(&["sleep", "30"]));
    let mut c = builder.create().unwrap();
    // Not running yet: refused.
    let proc_spec = |args: &[&str]| {
        let mut p = b.spec(args).process().clone().unwrap();
        p.set_env(Some(vec!["PATH=/bin".into(), "FROM_EXEC=yes".into()]));
        p
    };
    assert!(matches!(
        c.exec(&proc_spec(&["true"]), [None, None, None]),
        Err(Error::WrongState { .. })
    ));
    c.start().unwrap();
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let p = c
        .exec(
            &proc_spec(&["sh", "-c", "echo pid=$$ host=$(hostname) env=$FROM_EXEC; cat /etc/hello; ls /proc/1/exe >/dev/null && echo sees-init; \
                [ \"$(cat /proc/self/cgroup)\" = \"$(cat /proc/1/cgroup)\" ] && echo same-cgroups; \
                for f in /proc/self/fd/*; do echo fd=$(readlink $f); done; exit 5"]),
            [None, Some(w), None],
        )
        .unwrap();
    assert_eq!(p.wait().unwrap(), 5);
    let text = read_all(r);
    assert!(!text.contains("pid=1 "), "{text}");
    assert!(text.contains("host=box env=yes"), "{text}");
    assert!(text.contains("hello from the rootfs"), "{text}");
    assert!(
        text.contains("sees-init"),
        "the exec'd process is in the container's pid namespace: {text}"
    );
    // In the init's cgroups (it moved itself there on v1), holding none of their files (the
    // child closes them at once; the close of every other descriptor before the process
    // runs would too).
    assert!(text.contains("same-cgroups"), "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("fd=") && (l.contains("cgroup") || l.contains("tasks"))),
        "{text}"
    );
    // A missing program fails with 127 (not found), not a hang.
    let p = c
        .exec(&proc_spec(&["/bin/nope"]), [None, None, None])
        .unwrap();
    assert_eq!(p.wait().unwrap(), 127);
    // Also when nobody reads its stderr any more: the message fails, the code stays (the
    // process starts with SIGPIPE's default action, which would make it 141).
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    drop(r);
    let p = c
        .exec(&proc_spec(&["/bin/nope"]), [None, None, Some(w)])
        .unwrap();
    assert_eq!(p.wait().unwrap(), 127);
    c.kill(libc::SIGKILL).unwrap();
    c.wait().unwrap();
    c.delete(false).unwrap();
}

#[test]
fn terminal_master_goes_to_the_console_socket() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let sock_path = b.dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    // Receives the master, as containerd's shim or `recvtty` do, and reads what the process
    // writes on its terminal.
    let receiver = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let mut name = [0u8; 64];
        let msg = rustix::net::recvmsg(
            &conn,
            &mut [std::io::IoSliceMut::new(&mut name)],
            &mut control,
            rustix::net::RecvFlags::empty(),
        )
        .unwrap();
        assert_eq!(&name[..msg.bytes], b"/dev/ptmx");
        let master = control
            .drain()
            .find_map(|m| match m {
                rustix::net::RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
                _ => None,
            })
            .unwrap();
        let mut f = std::fs::File::from(master);
        let mut out = Vec::new();
        // EIO once the last slave descriptor is closed: the process is gone.
        let _ = f.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    });
    let mut spec = b.spec(&[
        "sh",
        "-c",
        "tty; [ -t 0 ] && [ -t 1 ] && echo on-a-terminal",
    ]);
    let mut p = spec.process().clone().unwrap();
    p.set_terminal(Some(true));
    spec.set_process(Some(p.clone()));
    // Without a console socket, a terminal is refused.
    assert!(matches!(
        ContainerBuilder::new(&unique("tty0"), spec.clone(), b.dir.path())
            .state_root(&b.state)
            .create(),
        Err(Error::InvalidSpec {
            field: "process.terminal",
            ..
        })
    ));
    let c = ContainerBuilder::new(&unique("tty"), spec, b.dir.path())
        .state_root(&b.state)
        .console_socket(&sock_path);
    assert_eq!(run(c).unwrap(), 0);
    let text = receiver.join().unwrap();
    assert!(text.contains("/dev/pts/0"), "{text:?}");
    assert!(text.contains("on-a-terminal"), "{text:?}");
}

fn seccomp_profile(json: serde_json::Value) -> oci_spec::runtime::LinuxSeccomp {
    serde_json::from_value(json).unwrap()
}

#[test]
fn seccomp_denies_with_the_profiles_errno() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let run_with = |profile: serde_json::Value, script: &str| -> (i32, String) {
        let mut spec = b.spec(&["sh", "-c", script]);
        let mut linux = spec.linux().clone().unwrap();
        linux.set_seccomp(Some(seccomp_profile(profile)));
        spec.set_linux(Some(linux));
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let builder = ContainerBuilder::new(&unique("sc"), spec, b.dir.path())
            .state_root(&b.state)
            .stdout(w.try_clone().unwrap())
            .stderr(w);
        let code = run(builder).unwrap();
        (code, read_all(r))
    };
    // A deny list: mkdir and mkdirat fail with ENOSYS, everything else runs.
    let (code, out) = run_with(
        serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
        }),
        "mkdir /tmp/d 2>&1; echo after",
    );
    assert_eq!(code, 0);
    assert!(out.contains("Function not implemented"), "{out}");
    assert!(out.contains("after"), "{out}");
    assert!(!b.rootfs().join("tmp/d").exists());
    // An argument condition: kill(pid, 0) is refused (EPERM), kill(pid, SIGCONT) allowed.
    let (code, out) = run_with(
        serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{
                "names": ["kill"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 1,
                "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]
            }]
        }),
        "kill -0 $$ 2>&1 || echo zero-refused; kill -CONT $$ && echo cont-allowed",
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("zero-refused") && out.contains("cont-allowed"),
        "{out}"
    );
    // An allow list whose default kills: a process that makes a call outside it dies.
    let (code, _) = run_with(
        serde_json::json!({"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": []}),
        "true",
    );
    assert_eq!(
        code,
        128 + libc::SIGSYS,
        "killed by the filter at its first system call"
    );
}

/// A hook running `sh -c SCRIPT` (the host's sh, or the container's for startContainer).
fn hook(script: &str, timeout: Option<i64>) -> oci_spec::runtime::Hook {
    let mut b = oci_spec::runtime::HookBuilder::default()
        .path("/bin/sh")
        .args(vec!["sh".to_string(), "-c".into(), script.into()]);
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    b.build().unwrap()
}

#[test]
fn hooks_run_in_order_with_the_state_and_where_the_spec_says() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let id = unique("hooks");
    let log = b.dir.path().join("hooks.log");
    let comm = b.dir.path().join("comm");
    // Host hooks append "NAME STATE-JSON" lines; the startContainer hook runs inside the
    // container (its sh, its hostname, its root) before the process, which prints what it
    // left behind.
    let host = |name: &str| {
        hook(
            &format!(
                "printf '{name} ' >>{0}; cat >>{0}; echo >>{0}",
                log.display()
            ),
            Some(5),
        )
    };
    // The process ends at once, and the poststart hook is still given the state of the start
    // (running, with the pid), not whatever the process did meanwhile (it was "stopped", with
    // no pid, under load).
    let mut spec = b.spec(&["sh", "-c", "cat /hook-saw"]);
    spec.set_hooks(Some(
        oci_spec::runtime::HooksBuilder::default()
            .create_runtime(vec![host("createRuntime")])
            .start_container(vec![hook("hostname >/hook-saw; cat >>/hook-saw", Some(5))])
            .poststart(vec![
                host("poststart"),
                // What the container's pid runs by then: its program, executed already.
                hook(
                    &format!(
                        "pid=$(sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/'); cat /proc/$pid/comm >{}",
                        comm.display()
                    ),
                    Some(5),
                ),
            ])
            .poststop(vec![host("poststop")])
            .build()
            .unwrap(),
    ));
    let (builder, out) = b.builder(&id, spec);
    let mut c = builder.create().unwrap();
    assert!(
        !b.rootfs().join("hook-saw").exists(),
        "startContainer ran at create"
    );
    let c_pid = c.pid();
    c.start().unwrap();
    assert_eq!(c.wait().unwrap(), 0);
    c.delete(false).unwrap();
    let text = read_all(out);
    assert!(text.starts_with("box\n"), "{text}");
    let inside: serde_json::Value = serde_json::from_str(&text[4..]).unwrap();
    assert_eq!(inside["id"], id.as_str());
    assert_eq!(inside["status"], "created");
    let lines: Vec<(String, serde_json::Value)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            let (name, json) = l.split_once(' ').unwrap();
            (name.to_string(), serde_json::from_str(json).unwrap())
        })
        .collect();
    let names: Vec<&str> = lines.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["createRuntime", "poststart", "poststop"]);
    assert_eq!(lines[0].1["status"], "created");
    assert_eq!(lines[1].1["status"], "running");
    assert_eq!(lines[1].1["pid"], c_pid);
    // sh, or the cat it executes in its place; not this test program, whose copy the init is
    // until its execve.
    let comm = std::fs::read_to_string(&comm).unwrap();
    assert!(comm == "sh\n" || comm == "cat\n", "{comm}");
    assert_eq!(lines[2].1["status"], "stopped");
    for (_, st) in &lines {
        assert_eq!(st["id"], id.as_str());
    }
}

#[test]
fn failing_or_slow_hooks_fail_the_operation_but_poststart_and_poststop_go_on() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let with = |hooks: oci_spec::runtime::Hooks| {
        let mut spec = b.spec(&["touch", "/process-ran"]);
        spec.set_hooks(Some(hooks));
        spec
    };
    // createRuntime exits 3: no container is left behind.
    let id = unique("hookfail");
    let spec = with(
        oci_spec::runtime::HooksBuilder::default()
            .create_runtime(vec![hook("exit 3", None)])
            .build()
            .unwrap(),
    );
    let err = b.builder(&id, spec).0.create().unwrap_err();
    assert!(
        matches!(&err, Error::Hook { kind: "createRuntime", reason, .. } if reason.contains('3')),
        "{err}"
    );
    assert!(matches!(
        Container::load(&b.state, &id),
        Err(Error::NotFound(_))
    ));
    // startContainer fails: start fails, the container is stopped, its process never ran.
    for (script, timeout, says) in [("exit 4", None, "4"), ("sleep 30", Some(1), "timed out")] {
        let id = unique("hookstart");
        let spec = with(
            oci_spec::runtime::HooksBuilder::default()
                .start_container(vec![hook(script, timeout)])
                .build()
                .unwrap(),
        );
        let mut c = b.builder(&id, spec).0.create().unwrap();
        let started = Instant::now();
        let err = c.start().unwrap_err();
        assert!(
            matches!(&err, Error::Hook { kind: "startContainer", reason, .. } if reason.contains(says)),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(20));
        c.wait().unwrap();
        assert_eq!(c.status(), Status::Stopped);
        assert!(!b.rootfs().join("process-ran").exists());
        c.delete(false).unwrap();
    }
    // poststart and poststop: a failure is a warning, and the next hook and the lifecycle go
    // on (runtime spec, lifecycle steps 8 and 12).
    let log = b.dir.path().join("after.log");
    let mark = |name: &str| hook(&format!("echo {name} >>{}", log.display()), Some(5));
    let id = unique("hookpost");
    let spec = with(
        oci_spec::runtime::HooksBuilder::default()
            .poststart(vec![hook("exit 5", None), mark("poststart")])
            .poststop(vec![hook("exit 6", None), mark("poststop")])
            .build()
            .unwrap(),
    );
    let mut c = b.builder(&id, spec).0.create().unwrap();
    c.start().unwrap();
    assert_eq!(c.wait().unwrap(), 0);
    c.delete(false).unwrap();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "poststart\npoststop\n"
    );
    assert!(matches!(
        Container::load(&b.state, &id),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn create_container_hooks_run_in_the_container_before_pivot_root() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let id = unique("cchook");
    // The host's sh (its path resolves in the runtime's tree, as the spec says), run in the
    // container's pid namespace (a small $$) and mount namespace (before pivot_root, the
    // rootfs is still reachable by its host path), with the state on stdin.
    let rootfs = b.rootfs();
    let script = format!("echo $$ >{0}/cc-pid; cat >{0}/cc-state", rootfs.display());
    let mut spec = b.spec(&["cat", "/cc-pid"]);
    spec.set_hooks(Some(
        oci_spec::runtime::HooksBuilder::default()
            .create_container(vec![hook(&script, Some(5))])
            .build()
            .unwrap(),
    ));
    let (builder, out) = b.builder(&id, spec);
    let mut c = builder.create().unwrap();
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rootfs.join("cc-state")).unwrap()).unwrap();
    assert_eq!(st["status"], "creating");
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["pid"], serde_json::to_value(c.state()).unwrap()["pid"]);
    c.start().unwrap();
    assert_eq!(c.wait().unwrap(), 0);
    c.delete(false).unwrap();
    let pid: u32 = read_all(out).trim().parse().unwrap();
    assert!(
        pid < 10,
        "the hook ran outside the container's pid namespace: pid {pid}"
    );

    // A failing or late createContainer hook fails create, naming the hook.
    for (script, timeout, says) in [
        ("exit 5", None, "exited with 5"),
        ("sleep 30", Some(1), "timed out"),
    ] {
        let id = unique("ccfail");
        let mut spec = b.spec(&["true"]);
        spec.set_hooks(Some(
            oci_spec::runtime::HooksBuilder::default()
                .create_container(vec![hook(script, timeout)])
                .build()
                .unwrap(),
        ));
        let err = b.builder(&id, spec).0.create().unwrap_err();
        assert!(
            matches!(&err, Error::Hook { kind: "createContainer", reason, .. } if reason.contains(says)),
            "{err}"
        );
        assert!(matches!(
            Container::load(&b.state, &id),
            Err(Error::NotFound(_))
        ));
    }
}

#[test]
fn time_namespace_offsets_move_the_containers_clocks() {
    if !root_or_skip() {
        return;
    }
    if !Path::new("/proc/self/timens_offsets").exists() {
        eprintln!("skipping: this kernel has no time namespaces");
        return;
    }
    let b = Bundle::new();
    let id = unique("time");
    // A year of boot time: the container's /proc/uptime says so, the host's does not.
    let year = 365 * 24 * 3600i64;
    let mut spec = b.spec(&["cat", "/proc/uptime"]);
    let mut linux = spec.linux().clone().unwrap();
    let mut namespaces = linux.namespaces().clone().unwrap();
    namespaces.push(
        oci_spec::runtime::LinuxNamespaceBuilder::default()
            .typ(oci_spec::runtime::LinuxNamespaceType::Time)
            .build()
            .unwrap(),
    );
    linux.set_namespaces(Some(namespaces));
    let offset = |secs| {
        oci_spec::runtime::LinuxTimeOffsetBuilder::default()
            .secs(secs)
            .nanosecs(0u32)
            .build()
            .unwrap()
    };
    linux.set_time_offsets(Some(
        [
            ("boottime".to_string(), offset(year)),
            ("monotonic".to_string(), offset(year)),
        ]
        .into(),
    ));
    spec.set_linux(Some(linux));
    let (builder, out) = b.builder(&id, spec.clone());
    assert_eq!(run(builder).unwrap(), 0);
    let uptime: f64 = read_all(out)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let host: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        uptime >= year as f64 + host - 5.0,
        "uptime {uptime}, host {host}"
    );

    // An unknown clock is refused before anything starts.
    let mut linux = spec.linux().clone().unwrap();
    linux.set_time_offsets(Some([("realtime".to_string(), offset(1))].into()));
    spec.set_linux(Some(linux));
    let err = b.builder(&unique("time"), spec).0.create().unwrap_err();
    assert!(
        matches!(&err, Error::InvalidSpec { field: "linux.timeOffsets", value, .. } if value == "realtime"),
        "{err}"
    );
}

#[test]
fn a_created_container_holds_none_of_the_callers_other_descriptors() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let id = unique("fds");
    // Open in this (multi-threaded) process while the container is made: a file being
    // written and a listening socket.
    let file = tempfile::NamedTempFile::new().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (builder, _out) = b.builder(&id, b.spec(&["true"]));
    let mut c = builder.create().unwrap();
    let pid = serde_json::to_value(c.state()).unwrap()["pid"]
        .as_i64()
        .unwrap();
    let mut held = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let e = e.unwrap();
        if let Ok(target) = std::fs::read_link(e.path()) {
            held.push(target.display().to_string());
        }
    }
    let port = listener.local_addr().unwrap().port();
    // Finish the container before judging, so that a failure leaves nothing running.
    c.start().unwrap();
    assert_eq!(c.wait().unwrap(), 0);
    c.delete(false).unwrap();
    assert!(
        !held.iter().any(|t| t == &file.path().display().to_string()),
        "the init held the caller's file: {held:?}"
    );
    // Nor the cgroup files it moved itself into its cgroup with (closed at once, and by the
    // close of every other descriptor in any case).
    assert!(
        !held.iter().any(|t| t.contains("/sys/fs/cgroup")),
        "the init held a cgroup file: {held:?}"
    );
    let inode = std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .find(|l| l.contains(&format!(":{port:04X} ")))
        .and_then(|l| l.split_whitespace().nth(9).map(str::to_owned))
        .unwrap();
    assert!(
        !held.iter().any(|t| t == &format!("socket:[{inode}]")),
        "the init held the caller's socket: {held:?}"
    );
    drop(listener);
}

#[test]
fn sysctls_are_written_in_the_containers_namespaces_only() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let mut spec = b.spec(&[
        "sh",
        "-c",
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/ping_group_range; \
         echo 0 > /proc/sys/net/ipv4/ip_forward && echo proc-sys-writable",
    ]);
    let mut linux = spec.linux().clone().unwrap();
    // The default spec's read-only paths include /proc/sys: the sysctls go in before.
    assert!(linux
        .readonly_paths()
        .as_ref()
        .is_some_and(|p| p.iter().any(|p| p == "/proc/sys")));
    linux.set_sysctl(Some(
        [
            ("net.ipv4.ip_forward", "1"),
            ("net/ipv4/ping_group_range", "0 0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    ));
    spec.set_linux(Some(linux.clone()));
    let host_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let (builder, out) = b.builder(&unique("sysctl"), spec.clone());
    let code = run(builder).unwrap();
    let text = read_all(out);
    assert_eq!(code, 1, "{text}");
    assert_eq!(text, "1\n0\t0\n", "{text}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_forward,
        "the host's value is untouched"
    );

    // Sysctls of the host, or of a namespace the container does not have, are refused.
    for (key, drop_ns) in [
        ("kernel.core_pattern", None),
        ("vm.overcommit_memory", None),
        (
            "net.ipv4.ip_forward",
            Some(oci_spec::runtime::LinuxNamespaceType::Network),
        ),
        (
            "kernel.shmmax",
            Some(oci_spec::runtime::LinuxNamespaceType::Ipc),
        ),
    ] {
        let mut l = linux.clone();
        l.set_sysctl(Some(
            [(key.to_string(), "1".to_string())].into_iter().collect(),
        ));
        if let Some(t) = drop_ns {
            let ns: Vec<_> = l
                .namespaces()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|n| n.typ() != t)
                .collect();
            l.set_namespaces(Some(ns));
        }
        let mut s = spec.clone();
        s.set_linux(Some(l));
        let (builder, _out) = b.builder(&unique("sysctl-host"), s);
        match builder.create() {
            Err(Error::InvalidSpec {
                field: "linux.sysctl",
                value,
                ..
            }) => assert_eq!(value, key),
            other => panic!("{key}: {other:?}"),
        }
    }
}

#[test]
fn device_nodes_get_their_missing_parent_directories() {
    if !root_or_skip() {
        return;
    }
    // A privileged pod gets every host device, /dev/cpu/0/cpuid among them: the directories
    // on the way are made (they failed the create before).
    let b = Bundle::new();
    let mut spec = b.spec(&["sh", "-c", "ls -l /dev/cpu/0/null /dev/a/b/c/zero"]);
    let mut linux = spec.linux().clone().unwrap();
    let dev = |path: &str, minor| {
        oci_spec::runtime::LinuxDeviceBuilder::default()
            .path(path)
            .typ(oci_spec::runtime::LinuxDeviceType::C)
            .major(1)
            .minor(minor)
            .build()
            .unwrap()
    };
    linux.set_devices(Some(vec![
        dev("/dev/cpu/0/null", 3),
        dev("/dev/a/b/c/zero", 5),
    ]));
    spec.set_linux(Some(linux));
    let (builder, out) = b.builder(&unique("devdirs"), spec);
    assert_eq!(run(builder).unwrap(), 0);
    let text = read_all(out);
    assert!(text.contains("1,   3") && text.contains("1,   5"), "{text}");
}

#[test]
fn rshared_mounts_propagate_both_ways_and_the_host_keeps_its_mounts() {
    if !root_or_skip() {
        return;
    }
    use rustix::mount::{mount_bind, mount_change, unmount, MountPropagationFlags, UnmountFlags};
    // What a kubelet's Bidirectional volume asks (CSI and storage plugins rely on it):
    // mounts made on the host under the volume appear in the container, and mounts the
    // container makes there appear on the host. The host's own mounts outlive the container
    // (its old root is detached as slaves, not as the host's peers).
    let b = Bundle::new();
    let host = tempfile::tempdir().unwrap();
    let vol = host.path().join("vol");
    std::fs::create_dir_all(vol.join("from-host")).unwrap();
    mount_bind(&vol, &vol).unwrap();
    mount_change(
        &vol,
        MountPropagationFlags::SHARED | MountPropagationFlags::REC,
    )
    .unwrap();
    let cleanup = |p: &Path| {
        let _ = unmount(p, UnmountFlags::DETACH);
    };
    let mut spec = b.spec(&["sleep", "30"]);
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(
        oci_spec::runtime::MountBuilder::default()
            .destination("/vol")
            .typ("bind")
            .source(&vol)
            .options(vec!["rbind".to_string(), "rshared".to_string()])
            .build()
            .unwrap(),
    );
    spec.set_mounts(Some(mounts));
    let mut linux = spec.linux().clone().unwrap();
    linux.set_rootfs_propagation(Some("rshared".into()));
    spec.set_linux(Some(linux));
    let mut p = spec.process().clone().unwrap();
    let mut caps = p.capabilities().clone().unwrap();
    let mut set = caps.bounding().clone().unwrap_or_default();
    set.insert(oci_spec::runtime::Capability::SysAdmin);
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    p.set_capabilities(Some(caps));
    spec.set_process(Some(p.clone()));
    let id = unique("rshared");
    let (builder, _out) = b.builder(&id, spec);
    let mut c = builder.create().unwrap();
    c.start().unwrap();
    // Host to container.
    rustix::mount::mount(
        "tmpfs",
        vol.join("from-host"),
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None::<&std::ffi::CStr>,
    )
    .unwrap();
    std::fs::write(vol.join("from-host/flag"), b"x").unwrap();
    let exec = |args: &[&str]| {
        let mut p = p.clone();
        p.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        p.set_env(Some(vec!["PATH=/bin".into()]));
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let e = c.exec(&p, [None, Some(w), None]).unwrap();
        let code = e.wait().unwrap();
        (code, read_all(r))
    };
    let (code, text) = exec(&["ls", "/vol/from-host"]);
    // Container to host.
    let (code2, _) = exec(&[
        "sh",
        "-c",
        "mkdir -p /vol/from-ctr && mount -t tmpfs none /vol/from-ctr && touch /vol/from-ctr/made",
    ]);
    let seen_on_host = vol.join("from-ctr/made").exists();
    c.kill(libc::SIGKILL).unwrap();
    c.wait().unwrap();
    c.delete(false).unwrap();
    let host_kept = vol.join("from-host/flag").exists();
    cleanup(&vol.join("from-ctr"));
    cleanup(&vol.join("from-host"));
    cleanup(&vol);
    assert_eq!((code, text.trim()), (0, "flag"), "host to container");
    assert_eq!(code2, 0);
    assert!(seen_on_host, "container to host");
    assert!(host_kept, "the host's mount outlived the container");
}

#[test]
fn an_exec_pid_is_the_process_itself() {
    if !root_or_skip() {
        return;
    }
    // As runc's --pid-file: containerd's exec timeout kills that pid, and a helper's death
    // left the real process running (and the call hanging).
    let b = Bundle::new();
    let id = unique("execpid");
    let (builder, _out) = b.builder(&id, b.spec(&["sleep", "30"]));
    let mut c = builder.create().unwrap();
    c.start().unwrap();
    let mut p = b.spec(&["sleep", "4321"]).process().clone().unwrap();
    p.set_env(Some(vec!["PATH=/bin".into()]));
    let e = c.exec(&p, [None, None, None]).unwrap();
    // The pid is known before the execve: the same process, once it has run it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let cmdline = loop {
        let c = std::fs::read(format!("/proc/{}/cmdline", e.pid())).unwrap();
        if c == b"sleep\x004321\x00" || Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(cmdline, b"sleep\x004321\x00");
    let status = std::fs::read_to_string(format!("/proc/{}/status", e.pid())).unwrap();
    let ppid = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse::<u32>()
        .unwrap();
    assert_eq!(ppid, std::process::id(), "the caller's own child");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(e.pid()).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    assert_eq!(e.wait().unwrap(), 128 + libc::SIGKILL);
    c.kill(libc::SIGKILL).unwrap();
    c.wait().unwrap();
    c.delete(false).unwrap();
}

#[test]
fn masking_uses_only_the_null_device() {
    if !root_or_skip() {
        return;
    }
    // The spec puts another device at /dev/null (here /dev/zero's numbers, standing for a
    // /dev/null that something replaced): masking must fail rather than bind it over
    // /proc/kcore and friends.
    let b = Bundle::new();
    let mut spec = b.spec(&["true"]);
    let mut linux = spec.linux().clone().unwrap();
    linux.set_devices(Some(vec![oci_spec::runtime::LinuxDeviceBuilder::default()
        .path("/dev/null")
        .typ(oci_spec::runtime::LinuxDeviceType::C)
        .major(1)
        .minor(5)
        .build()
        .unwrap()]));
    spec.set_linux(Some(linux.clone()));
    let (builder, _out) = b.builder(&unique("null"), spec.clone());
    match builder.create() {
        Err(Error::Init { step, .. }) => assert_eq!(step, "mask path"),
        other => panic!("{other:?}"),
    }
    // Without masked paths the same container runs.
    linux.set_masked_paths(Some(Vec::new()));
    spec.set_linux(Some(linux));
    let (builder, _out) = b.builder(&unique("null"), spec);
    assert_eq!(run(builder).unwrap(), 0);
}

#[test]
fn a_created_init_is_out_of_reach_of_other_containers() {
    if !root_or_skip() {
        return;
    }
    // A created container's init waits for `start` with the container's user and
    // capabilities, still a copy of this program's memory: its environment is this test's.
    // A second container in its pid namespace, with the same user and capabilities, must not
    // read it.
    let b = Bundle::new();
    let (builder, _out) = b.builder(&unique("waits"), b.spec(&["true"]));
    let waiting = builder.create().unwrap();
    let mut spec = b.spec(&[
        "sh",
        "-c",
        "cat /proc/1/environ 2>&1; echo; grep Name /proc/1/status; echo self=$$; exit 3",
    ]);
    let mut linux = spec.linux().clone().unwrap();
    let namespaces = linux
        .namespaces()
        .clone()
        .unwrap()
        .into_iter()
        .map(|mut n| {
            if n.typ() == oci_spec::runtime::LinuxNamespaceType::Pid {
                n.set_path(Some(format!("/proc/{}/ns/pid", waiting.pid()).into()));
            }
            n
        })
        .collect();
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
    let (builder, out) = b.builder(&unique("peer"), spec);
    let code = run(builder);
    let text = read_all(out);
    waiting.delete(true).unwrap();
    // The exit status comes back through the process that forked the peer's init into the
    // pid namespace.
    assert_eq!(code.unwrap(), 3);
    assert!(
        !text.contains("CARGO") && !text.contains("PATH="),
        "the peer read the init: {text}"
    );
    assert!(text.contains("Permission denied"), "{text}");
    // It is in the waiting init's pid namespace: pid 1 there is the init (a copy of this
    // test's thread, whose name it has), and it is not pid 1 itself.
    let comm = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
    assert!(text.contains(&format!("Name:\t{comm}")), "{text}");
    assert!(!text.contains("self=1\n"), "{text}");
}

// Threat: a device node shipped in an image, or made in the container with CAP_MKNOD, opens
// a host device. The devices cgroup (v1) or a cgroup device program (v2) must refuse it
// unless a rule allows it, while the default devices keep working.

/// A loop device over a 1 MiB file that starts with `DISK-CONTENT`: a host block device whose
/// reads and writes are harmless to check (the host's own disk is not even open to root in
/// every sandbox). Detached on drop.
struct LoopDisk {
    dev: String,
    file: tempfile::NamedTempFile,
    major: u32,
    minor: u32,
}

impl LoopDisk {
    fn new() -> Option<Self> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, b"DISK-CONTENT").unwrap();
        file.as_file().set_len(1 << 20).unwrap();
        let out = std::process::Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file.path())
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!("losetup: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let st = rustix::fs::stat(dev.as_str()).unwrap();
        let (major, minor) = (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev));
        Some(Self {
            dev,
            file,
            major,
            minor,
        })
    }

    fn content(&self) -> Vec<u8> {
        let _ = std::process::Command::new("blockdev")
            .args(["--flushbufs", &self.dev])
            .status();
        std::fs::read(self.file.path()).unwrap()[..12].to_vec()
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .args(["-d", &self.dev])
            .status();
    }
}

/// Runs a script that reads and writes `disk` through a node shipped in the image and through
/// one it makes itself, with `rules` as `linux.resources.devices`, and returns its output.
fn device_probe(disk: &LoopDisk, v2: Option<&Path>, rules: serde_json::Value) -> String {
    let (major, minor) = (disk.major, disk.minor);
    let b = Bundle::new();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        b.rootfs().join("hostdisk"),
        rustix::fs::FileType::BlockDevice,
        rustix::fs::Mode::from_raw_mode(0o600),
        rustix::fs::makedev(major, minor),
    )
    .unwrap();
    let id = unique("dev");
    let script = format!(
        "busybox head -c 12 /hostdisk 2>/dev/null; echo; \
         echo PWNED | busybox dd of=/hostdisk conv=notrunc 2>/dev/null && echo image-node-written; \
         busybox mknod /tmp/made b {major} {minor} && echo mknod-ok; \
         busybox head -c 12 /tmp/made 2>/dev/null | busybox sed s/DISK/MADE/; echo; \
         echo x > /dev/null && busybox head -c 1 /dev/urandom >/dev/null && echo defaults-ok"
    );
    let mut spec = b.spec(&["sh", "-c", &script]);
    let mut p = spec.process().clone().unwrap();
    let mut caps = p.capabilities().clone().unwrap();
    let mut set = caps.bounding().clone().unwrap();
    set.insert(oci_spec::runtime::Capability::Mknod);
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    p.set_capabilities(Some(caps));
    spec.set_process(Some(p));
    let mut linux = spec.linux().clone().unwrap();
    linux.set_cgroups_path(Some(PathBuf::from(format!("oci-rs-test/{id}"))));
    linux.set_resources(Some(
        serde_json::from_value(serde_json::json!({ "devices": rules })).unwrap(),
    ));
    spec.set_linux(Some(linux));
    let (mut builder, out) = b.builder(&id, spec);
    if let Some(u) = v2 {
        builder = builder.cgroup_v2_root(u);
    }
    let code = run(builder).unwrap();
    let text = read_all(out);
    assert_eq!(code, 0, "{text}");
    text
}

fn check_device_rules(v2: Option<&Path>) {
    let Some(disk) = LoopDisk::new() else {
        eprintln!("skipping: no loop device could be set up here");
        return;
    };
    // No rules at all, and docker's deny-all: the disk can be neither read nor written.
    for rules in [
        serde_json::json!([]),
        serde_json::json!([{ "allow": false, "access": "rwm" }]),
    ] {
        let text = device_probe(&disk, v2, rules);
        assert!(!text.contains("DISK-CONTENT"), "{text}");
        assert!(!text.contains("MADE-CONTENT"), "{text}");
        assert!(!text.contains("written"), "{text}");
        assert!(text.contains("mknod-ok"), "mknod stays allowed: {text}");
        assert!(text.contains("defaults-ok"), "{text}");
        assert_eq!(disk.content(), b"DISK-CONTENT");
    }
    // A rule that allows reading this disk, and only reading it.
    let text = device_probe(
        &disk,
        v2,
        serde_json::json!([{ "allow": false, "access": "rwm" },
            { "allow": true, "type": "b", "major": disk.major, "minor": disk.minor, "access": "r" }]),
    );
    assert!(text.contains("DISK-CONTENT"), "{text}");
    assert!(text.contains("MADE-CONTENT"), "{text}");
    assert!(!text.contains("written"), "{text}");
    assert!(text.contains("defaults-ok"), "{text}");
    assert_eq!(disk.content(), b"DISK-CONTENT");
}

#[test]
fn image_device_node_cannot_open_a_host_disk_cgroup_v1() {
    if !root_or_skip() {
        return;
    }
    if !Path::new("/sys/fs/cgroup/devices").is_dir() {
        eprintln!("skipping: no v1 devices controller here (the v2 test covers this host)");
        return;
    }
    check_device_rules(None);
}

#[test]
fn image_device_node_cannot_open_a_host_disk_cgroup_v2() {
    if !root_or_skip() {
        return;
    }
    let unified = Path::new("/sys/fs/cgroup/unified");
    let v2 = if unified.join("cgroup.procs").exists() {
        unified
    } else if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Path::new("/sys/fs/cgroup")
    } else {
        eprintln!("skipping: no cgroup v2 hierarchy here");
        return;
    };
    check_device_rules(Some(v2));
}

#[test]
fn invalid_device_rules_are_refused_before_anything_runs() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let mut spec = b.spec(&["true"]);
    let mut linux = spec.linux().clone().unwrap();
    linux.set_resources(Some(
        serde_json::from_value(serde_json::json!({
            "devices": [{ "allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwz" }]
        }))
        .unwrap(),
    ));
    spec.set_linux(Some(linux));
    let (builder, _out) = b.builder(&unique("devbad"), spec);
    let err = run(builder).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidSpec { field: "linux.resources.devices[].access", value, .. } if value == "rwz"),
        "{err}"
    );
}

// Fault: a container asked for more arguments or environment variables than a fixed-size
// pointer array in the init holds silently got fewer.
#[test]
fn every_argument_and_environment_variable_reaches_the_process() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let mut args: Vec<String> = [
        "sh",
        "-c",
        "echo args=$#; busybox env | grep -c '^V[0-9]'",
        "x",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend((0..3000).map(|i| format!("a{i}")));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut spec = b.spec(&refs);
    let mut p = spec.process().clone().unwrap();
    let mut env = p.env().clone().unwrap_or_default();
    env.extend((0..5000).map(|i| format!("V{i}=value-{i}")));
    p.set_env(Some(env));
    spec.set_process(Some(p));
    let (builder, out) = b.builder(&unique("many"), spec);
    let code = run(builder).unwrap();
    let text = read_all(out);
    assert_eq!(code, 0, "{text}");
    assert_eq!(text, "args=3000\n5000\n");
}

// Fault: with no procfs on /proc, a FIFO at the sysctl's path in the rootfs hung creation
// (the file was opened for writing, blocking, before the procfs check).
#[test]
fn sysctl_path_that_is_a_fifo_fails_at_once() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let dir = b.rootfs().join("proc/sys/net/ipv4");
    std::fs::create_dir_all(&dir).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.join("ip_forward"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o666),
        0,
    )
    .unwrap();
    let mut spec = b.spec(&["true"]);
    // No /proc mount: the path resolves into the rootfs.
    let mounts: Vec<_> = spec
        .mounts()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.destination() != Path::new("/proc"))
        .collect();
    spec.set_mounts(Some(mounts));
    let mut linux = spec.linux().clone().unwrap();
    linux.set_masked_paths(None);
    linux.set_readonly_paths(None);
    linux.set_sysctl(Some(
        [("net.ipv4.ip_forward".to_string(), "1".to_string())]
            .into_iter()
            .collect(),
    ));
    spec.set_linux(Some(linux));
    let (builder, _out) = b.builder(&unique("sysfifo"), spec);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run(builder).map_err(|e| e.to_string()));
    });
    let res = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("creation hung on the FIFO");
    let err = res.unwrap_err();
    assert!(err.contains("sysctl"), "{err}");
}

// Fault: a relative hook path ran whatever the caller's working directory held.
#[test]
fn relative_hook_paths_are_refused() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let mut spec = b.spec(&["true"]);
    let relative = oci_spec::runtime::HookBuilder::default()
        .path("bin/evil")
        .build()
        .unwrap();
    spec.set_hooks(Some(
        oci_spec::runtime::HooksBuilder::default()
            .poststart(vec![hook("true", None), relative])
            .build()
            .unwrap(),
    ));
    let (builder, _out) = b.builder(&unique("relhook"), spec);
    let err = builder.create().unwrap_err();
    assert!(
        matches!(&err, Error::InvalidSpec { field: "hooks", value, .. } if value.contains("bin/evil")),
        "{err}"
    );
}

// A create that fails after its cgroup was made leaves neither the cgroup nor the state
// behind: in the plan (a sysctl that would change the host), or in the init (a mount).
/// Appends a mount of a filesystem type no kernel has: the init fails on it after the
/// spec's other mounts were made.
fn add_unmountable_mount(spec: &mut Spec) {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(
        serde_json::from_value(serde_json::json!({
            "destination": "/nowhere", "type": "no-such-filesystem", "source": "none"
        }))
        .unwrap(),
    );
    spec.set_mounts(Some(mounts));
}

#[test]
fn a_failed_create_leaves_no_cgroup_and_no_state() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    for bad_mount in [false, true] {
        let id = unique("failcg");
        let mut spec = b.spec(&["true"]);
        if bad_mount {
            add_unmountable_mount(&mut spec);
        } else {
            let mut linux = spec.linux().clone().unwrap();
            linux.set_sysctl(Some([("kernel.core_pattern".into(), "|/x".into())].into()));
            spec.set_linux(Some(linux));
        }
        let err = b.builder(&id, spec).0.create().unwrap_err();
        assert!(
            matches!(
                (&err, bad_mount),
                (Error::Init { .. }, true) | (Error::InvalidSpec { .. }, false)
            ),
            "{err}"
        );
        for dir in [
            "/sys/fs/cgroup/pids/oci-rs",
            "/sys/fs/cgroup/memory/oci-rs",
            "/sys/fs/cgroup/oci-rs",
        ] {
            let p = Path::new(dir).join(&id);
            assert!(!p.exists(), "{} was left", p.display());
        }
        assert!(matches!(
            Container::load(&b.state, &id),
            Err(Error::NotFound(_))
        ));
    }
}

/// The mount points of this thread's mount namespace under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/thread-self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .map(str::to_owned)
        .collect()
}

#[test]
#[allow(unsafe_code)]
fn a_container_without_a_mount_namespace_shares_the_callers_and_leaves_no_mount() {
    if !root_or_skip() {
        return;
    }
    // On a thread in a private mount namespace of its own, so that nothing reaches the
    // host's even when this fails.
    std::thread::spawn(|| {
        // SAFETY: this thread's own mount namespace (and fs struct); nothing else in this
        // thread relies on the old one.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }.unwrap();
        rustix::mount::mount_change(
            "/",
            rustix::mount::MountPropagationFlags::REC
                | rustix::mount::MountPropagationFlags::PRIVATE,
        )
        .unwrap();
        let ours = std::fs::read_link("/proc/thread-self/ns/mnt").unwrap();
        let b = Bundle::new();
        let rootfs = std::fs::canonicalize(b.rootfs()).unwrap();
        let id = unique("nomnt");
        let mut spec = b.spec(&[
            "sh",
            "-c",
            "readlink /proc/self/ns/mnt; cat /etc/hello; touch /written 2>/dev/null && echo rw; \
             echo $$; sleep 30",
        ]);
        let mut linux = spec.linux().clone().unwrap();
        let namespaces: Vec<_> = linux
            .namespaces()
            .clone()
            .unwrap()
            .into_iter()
            .filter(|n| n.typ() != oci_spec::runtime::LinuxNamespaceType::Mount)
            .collect();
        linux.set_namespaces(Some(namespaces));
        spec.set_linux(Some(linux));
        // A create that fails after some of its mounts were made leaves none of them here.
        let mut bad = spec.clone();
        add_unmountable_mount(&mut bad);
        let err = b.builder(&unique("nomnt-bad"), bad).0.create().unwrap_err();
        assert!(matches!(err, Error::Init { .. }), "{err}");
        assert_eq!(mounts_under(&rootfs), Vec::<String>::new());
        let mut root = spec.root().clone().unwrap();
        root.set_readonly(Some(true));
        spec.set_root(Some(root));
        let (builder, out) = b.builder(&id, spec);
        let mut c = builder.create().unwrap();
        c.start().unwrap();
        let mut out = std::fs::File::from(out);
        let mut text = String::new();
        let mut buf = [0u8; 256];
        while !text.ends_with("1\n") {
            let n = out.read(&mut buf).unwrap();
            assert!(n > 0, "{text}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        // Its mount namespace is ours; its root is the rootfs, read-only; its mounts are here.
        assert!(text.starts_with(&format!("{}\n", ours.display())), "{text}");
        assert!(text.contains("hello from the rootfs"), "{text}");
        assert!(!text.contains("rw\n"), "{text}");
        let left = mounts_under(&rootfs);
        assert!(left.iter().any(|p| p.ends_with("/rootfs/proc")), "{left:?}");
        // The read-only root is the rootfs's bind, not this namespace's `/`.
        assert!(!rustix::fs::statvfs("/")
            .unwrap()
            .f_flag
            .contains(rustix::fs::StatVfsMountFlags::RDONLY));
        // An exec lands in its root too (no mount namespace to join puts it there).
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let mut p = b.spec(&["cat", "/etc/hello"]).process().clone().unwrap();
        p.set_env(Some(vec!["PATH=/bin".into()]));
        let e = c.exec(&p, [None, Some(w), None]).unwrap();
        assert_eq!(e.wait().unwrap(), 0);
        assert_eq!(read_all(r), "hello from the rootfs\n");
        c.kill(libc::SIGKILL).unwrap();
        c.wait().unwrap();
        c.delete(false).unwrap();
        assert_eq!(mounts_under(&rootfs), Vec::<String>::new());
        // Writable again: the read-only bind is gone.
        std::fs::write(rootfs.join("written"), b"").unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn poststart_hooks_run_once_the_process_is_executed() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let id = unique("poststart");
    let comm = b.dir.path().join("comm");
    // A PATH of 40,000 missing directories before /bin (one string under the kernel's 128 KiB)
    // keeps the init trying execve for a while after `start` let it go: a poststart hook that
    // ran before the execve would find this test program's copy at the container's pid (named
    // after this test's thread), not `sleep`.
    let mut spec = b.spec(&["sleep", "5"]);
    let mut p = spec.process().clone().unwrap();
    p.set_env(Some(vec![format!("PATH={}/bin", "/n:".repeat(40_000))]));
    spec.set_process(Some(p));
    spec.set_hooks(Some(
        oci_spec::runtime::HooksBuilder::default()
            .poststart(vec![hook(
                &format!(
                    "pid=$(sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/'); cat /proc/$pid/comm >{}",
                    comm.display()
                ),
                Some(5),
            )])
            .build()
            .unwrap(),
    ));
    let (builder, _out) = b.builder(&id, spec);
    let mut c = builder.create().unwrap();
    c.start().unwrap();
    assert_eq!(std::fs::read_to_string(&comm).unwrap(), "sleep\n");
    c.kill(libc::SIGKILL).unwrap();
    c.wait().unwrap();
    c.delete(false).unwrap();
}

/// The process's view from a cwd: goes up as far as `..` reaches and reads the host's
/// marker file by its absolute path from there. Inside the container's root, `..` stops at
/// `/`, where no such path exists.
fn escape_probe(marker: &Path) -> String {
    format!(
        "readlink /proc/self/cwd; cd ../../../../../../../../../..; cat .{} 2>/dev/null; true",
        marker.display()
    )
}

/// CVE-2024-21626: a cwd of `/proc/self/fd/N` enters whatever the init holds as N. For every
/// N the container either fails to be created, with the cwd step, or runs inside its root;
/// it never reads the host's files. Fails when the init enters its cwd while it still holds a
/// host directory (the host's `/proc`, the rootfs, a namespace) or without the `getcwd` check.
#[test]
fn a_cwd_through_proc_self_fd_never_leaves_the_root() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let secret = format!("host-secret-{}", fastrand_u32());
    let marker = b.dir.path().join("marker");
    std::fs::write(&marker, &secret).unwrap();
    let mut created = 0;
    for n in 3..=40 {
        let mut spec = b.spec(&["sh", "-c", &escape_probe(&marker)]);
        let mut p = spec.process().clone().unwrap();
        p.set_cwd(format!("/proc/self/fd/{n}").into());
        spec.set_process(Some(p));
        let (builder, out) = b.builder(&unique("cwdfd"), spec);
        match builder.create() {
            Ok(mut c) => {
                created += 1;
                c.start().unwrap();
                c.wait().unwrap();
                c.delete(false).unwrap();
                let text = read_all(out);
                assert!(
                    !text.contains(&secret),
                    "fd {n}: escaped to the host: {text}"
                );
                assert!(text.starts_with('/'), "fd {n}: cwd {text}");
            }
            Err(Error::Init { step, .. }) => assert!(
                step.contains("chdir to cwd") || step.contains("outside the container's root"),
                "fd {n}: {step}"
            ),
            Err(e) => panic!("fd {n}: {e}"),
        }
    }
    // The container's own descriptors 0 to 2 are not in the range; none above is open.
    assert_eq!(created, 0);
}

/// The same through exec, which joins a running container from the caller's side (its helper
/// holds the host's `/proc` and the namespaces it joins).
#[test]
fn an_exec_cwd_through_proc_self_fd_never_leaves_the_root() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let secret = format!("host-secret-{}", fastrand_u32());
    let marker = b.dir.path().join("marker");
    std::fs::write(&marker, &secret).unwrap();
    let (builder, _out) = b.builder(&unique("execcwd"), b.spec(&["sleep", "60"]));
    let mut c = builder.create().unwrap();
    c.start().unwrap();
    for n in 3..=40 {
        let mut p = b
            .spec(&["sh", "-c", &escape_probe(&marker)])
            .process()
            .clone()
            .unwrap();
        p.set_cwd(format!("/proc/self/fd/{n}").into());
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        match c.exec(&p, [None, Some(w), None]) {
            Ok(proc) => {
                proc.wait().unwrap();
                let text = read_all(r);
                assert!(
                    !text.contains(&secret),
                    "fd {n}: escaped to the host: {text}"
                );
            }
            Err(Error::Init { step, .. }) => assert!(
                step.contains("chdir to cwd") || step.contains("outside the container's root"),
                "fd {n}: {step}"
            ),
            Err(e) => panic!("fd {n}: {e}"),
        }
    }
    c.kill(libc::SIGKILL).unwrap();
    c.wait().unwrap();
    c.delete(false).unwrap();
}

/// The process starts with default signal dispositions and nothing blocked, whatever the
/// calling program ignores (Rust programs ignore SIGPIPE, as this test's does): `yes | head`
/// ends instead of running for ever on EPIPE.
#[test]
fn the_process_starts_with_default_signals() {
    if !root_or_skip() {
        return;
    }
    let b = Bundle::new();
    let spec = b.spec(&[
        "sh",
        "-c",
        "grep -E '^Sig(Ign|Blk)' /proc/self/status; yes | head -c 3 >/dev/null; echo ended",
    ]);
    let (builder, out) = b.builder(&unique("sig"), spec);
    assert_eq!(run(builder).unwrap(), 0);
    let text = read_all(out);
    assert!(text.contains("SigIgn:\t0000000000000000"), "{text}");
    assert!(text.contains("SigBlk:\t0000000000000000"), "{text}");
    assert!(text.contains("ended"), "{text}");
}

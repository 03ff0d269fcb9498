//! What a container shares besides its network: docker's `--pid`, `--ipc` and `--device`,
//! through the library.

use crate::fixture::{detached, logs, until, Fixture};
use crate::Test;
use oci_rs_runtime::{Containers, NamespaceChoice};

pub const TESTS: &[Test] = &[
    (
        "pid_and_ipc_namespaces_of_the_host_or_another_container",
        pid_and_ipc_namespaces_of_the_host_or_another_container,
    ),
    (
        "a_host_device_is_given_at_its_path_and_nothing_else_is",
        a_host_device_is_given_at_its_path_and_nothing_else_is,
    ),
];

/// Runs `script` to its end with `pid` and `ipc`: its exit code and stdout.
fn run_with(
    f: &Fixture,
    store: &Containers,
    pid: NamespaceChoice,
    ipc: NamespaceChoice,
    script: &str,
) -> (i32, String) {
    let mut req = detached(None, script);
    req.opts.pid = pid;
    req.opts.ipc = ipc;
    let id = f.run(store, req).unwrap();
    let code = store.wait(&id).unwrap();
    let (out, err) = logs(store, &id);
    store.remove(&id, true).unwrap();
    (code, out + &err)
}

fn ns_of_self(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

fn pid_and_ipc_namespaces_of_the_host_or_another_container(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    f.run(
        &store,
        detached(
            Some("first"),
            "echo shared > /dev/shm/mark; echo ready; exec sleep 1000",
        ),
    )
    .unwrap();
    until("first is ready", || logs(&store, "first").0 == "ready\n");
    let first = store.namespace_choice("pid", "container:first").unwrap();
    let NamespaceChoice::Container { pid, .. } = first.clone() else {
        panic!("{first:?}")
    };
    let of_first = |kind: &str| {
        std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
            .unwrap()
            .display()
            .to_string()
    };
    // Another container's pid namespace: its processes.
    let (code, out) = run_with(
        f,
        &store,
        first,
        NamespaceChoice::Private,
        "readlink /proc/self/ns/pid; ps -o args | grep -c '^sleep 1000'; test -e /dev/shm/mark || echo own-shm",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, format!("{}\n1\nown-shm\n", of_first("pid")));
    // Its IPC namespace is refused (it is not shareable), and says why.
    let e = store
        .namespace_choice("ipc", "container:first")
        .unwrap_err();
    assert!(e.to_string().contains("container:first"), "{e}");
    assert!(format!("{e:?}").contains("shareable"), "{e:?}");
    // A shareable one's: its IPC namespace and its /dev/shm (a tmpfs on the host, kept
    // across a restart and unmounted with the container).
    let mut req = detached(
        Some("donor"),
        "test -e /dev/shm/mark || echo shared > /dev/shm/mark; echo ready; exec sleep 1000",
    );
    req.opts.ipc = store.namespace_choice("ipc", "shareable").unwrap();
    f.run(&store, req).unwrap();
    until("donor is ready", || {
        logs(&store, "donor").0.contains("ready")
    });
    let donor = store.namespace_choice("ipc", "container:donor").unwrap();
    let NamespaceChoice::Container { pid: donor_pid, .. } = donor.clone() else {
        panic!("{donor:?}")
    };
    let (code, out) = run_with(
        f,
        &store,
        NamespaceChoice::Private,
        donor,
        "readlink /proc/self/ns/ipc; cat /dev/shm/mark; echo joined > /dev/shm/back",
    );
    assert_eq!(code, 0, "{out}");
    let donor_ipc = std::fs::read_link(format!("/proc/{donor_pid}/ns/ipc")).unwrap();
    assert_eq!(out, format!("{}\nshared\n", donor_ipc.display()));
    let v = store.view("donor").unwrap();
    assert_eq!(v.config.run.ipc.docker_mode(true), "shareable");
    let shm_dir = f.data().join("containers").join(&v.config.id).join("shm");
    let mounted = |p: &std::path::Path| {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&format!(" {} ", p.display()))
    };
    assert!(mounted(&shm_dir), "{}", shm_dir.display());
    let back = || std::fs::read_to_string(shm_dir.join("back")).unwrap_or_default();
    assert_eq!(
        back(),
        "joined\n",
        "the joiner wrote into the donor's /dev/shm"
    );
    store
        .stop("donor", std::time::Duration::from_secs(5))
        .unwrap();
    store.start("donor", false).unwrap();
    until("donor is ready again", || {
        logs(&store, "donor").0.matches("ready").count() == 2
    });
    assert_eq!(back(), "joined\n", "kept across a restart");
    store.remove("donor", true).unwrap();
    assert!(!mounted(&shm_dir), "unmounted with the container");
    // The host's.
    let (code, out) = run_with(
        f,
        &store,
        NamespaceChoice::Host,
        NamespaceChoice::Host,
        "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        format!("{}\n{}\n", ns_of_self("pid"), ns_of_self("ipc"))
    );
    // Its own (the default): neither the host's nor the first's; and `none` has no /dev/shm.
    let (_, out) = run_with(
        f,
        &store,
        NamespaceChoice::Private,
        NamespaceChoice::None,
        "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc; grep -c ' /dev/shm ' /proc/self/mountinfo",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0] != ns_of_self("pid") && lines[0] != of_first("pid"),
        "{out}"
    );
    assert!(
        lines[1] != ns_of_self("ipc") && lines[1] != of_first("ipc"),
        "{out}"
    );
    assert_eq!(lines[2], "0");
    // The host's UTS namespace: its hostname, which a hostname of one's own conflicts with.
    let mut req = detached(None, "readlink /proc/self/ns/uts; hostname");
    req.opts.uts_host = true;
    let (code, out, _) = f.run_to_end(&store, "busybox:test", req).unwrap();
    let host_name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        (code, out),
        (0, format!("{}\n{host_name}\n", ns_of_self("uts")))
    );
    let mut req = detached(None, "true");
    req.opts.uts_host = true;
    req.opts.hostname = Some("mine".into());
    let err = f.run(&store, req).unwrap_err();
    assert!(
        err.to_string().contains("UTS mode") || format!("{err:?}").contains("UTS mode"),
        "{err}"
    );
    // Only a running container's namespaces can be joined, and only docker's words are taken.
    store
        .stop("first", std::time::Duration::from_secs(5))
        .unwrap();
    assert!(store.namespace_choice("pid", "container:first").is_err());
    assert!(store.namespace_choice("pid", "none").is_err());
    assert!(store.namespace_choice("ipc", "elsewhere").is_err());
    let v = store.view("first").unwrap();
    assert_eq!(v.config.run.ipc.docker_mode(true), "private");
    store.remove("first", true).unwrap();
}

fn a_host_device_is_given_at_its_path_and_nothing_else_is(f: &Fixture) {
    let store = Containers::open(&f.data()).unwrap();
    let mut req = detached(
        None,
        "echo written > /dev/given && head -c 4 /dev/given | wc -c && ls /dev/kmsg 2>&1",
    );
    req.opts.devices = vec!["/dev/zero:/dev/given:rw".parse().unwrap()];
    let id = f.run(&store, req).unwrap();
    let code = store.wait(&id).unwrap();
    let (out, err) = logs(&store, &id);
    store.remove(&id, true).unwrap();
    // /dev/zero at /dev/given: writes vanish, reads are zeros; /dev/kmsg (not in docker's
    // default set) is not there.
    assert!(out.starts_with("4\n"), "{out}{err}");
    assert!(out.contains("No such file"), "{out}{err}");
    assert_ne!(code, 0, "ls of /dev/kmsg");
    // Read-only as asked (docker's `:r`): /dev/kmsg is in no default rule, so the device
    // cgroup refuses its opening for writing.
    let mut req = detached(
        None,
        "test -c /dev/k && echo node; echo x > /dev/k 2>/dev/null && echo wrote || echo refused",
    );
    req.opts.devices = vec!["/dev/kmsg:/dev/k:r".parse().unwrap()];
    let id = f.run(&store, req).unwrap();
    store.wait(&id).unwrap();
    let (out, _) = logs(&store, &id);
    store.remove(&id, true).unwrap();
    assert_eq!(out, "node\nrefused\n");
    // Not a device: refused before anything is made.
    let mut req = detached(Some("notdev"), "true");
    req.opts.devices = vec!["/etc/hostname:/dev/x".parse().unwrap()];
    assert!(f.run(&store, req).is_err());
    assert!(store.view("notdev").is_err());
}

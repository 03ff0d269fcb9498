//! Container networking through the `oci` command line, for what only the command line
//! does: `port`, `ps` and `inspect` as docker prints them, bad flags as one-line errors, the
//! `network` verbs, and a rootless user's published port and egress through slirp4netns.
//! The engine behind it (bridges, veths, nftables rules, names, connect, egress, clean-up,
//! CVE-2020-8558) is tested at the library level in oci-rs-runtime's `tests/engine`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

mod common;

const OCI: &str = env!("CARGO_BIN_EXE_oci");
const TOOLS: &[&str] = &["sh", "cat", "echo", "sleep", "httpd", "wget", "true"];

/// True when these tests can run: root, busybox and nft.
fn can_run() -> bool {
    if !common::root_with_busybox() {
        return false;
    }
    if !Path::new("/usr/sbin/nft").exists() {
        eprintln!("skipping: /usr/sbin/nft is missing (scripts/test.sh installs nftables)");
        return false;
    }
    true
}

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
        if let Ok(o) = self.cmd(&["ps", "-a", "-q", "--no-trunc"]).output() {
            for id in String::from_utf8_lossy(&o.stdout).lines() {
                let _ = self.cmd(&["rm", "-f", id]).output();
            }
        }
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
        s.ok(&["import", tar.to_str().unwrap(), "bb:1", "-c", "EXPOSE 80"]);
        s
    }
}

fn sh_ok(cmd: &str) -> String {
    let o: Output = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn published_ports_as_port_ps_and_inspect_print_them() {
    if !can_run() {
        return;
    }
    let s = Store::new();
    let port = common::free_port();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &format!("{port}:80"),
        "bb:1",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/",
    ]);
    assert!(common::http_get(&format!("127.0.0.1:{port}")).starts_with("HTTP/1."));
    assert!(s
        .field("web", "{{.NetworkSettings.IPAddress}}")
        .starts_with("10.89.0."));
    assert_eq!(
        s.ok(&["port", "web"]),
        format!("80/tcp -> 0.0.0.0:{port}\n")
    );
    assert_eq!(s.ok(&["port", "web", "80"]), format!("0.0.0.0:{port}\n"));
    assert!(s.ok(&["ps"]).contains(&format!("0.0.0.0:{port}->80/tcp")));
    assert_eq!(
        s.field("web", "{{json .NetworkSettings.Ports}}"),
        format!(r#"{{"80/tcp":[{{"HostIp":"0.0.0.0","HostPort":"{port}"}}]}}"#)
    );
    // -P: the EXPOSEd port on a free one.
    s.ok(&["run", "-d", "--name", "pa", "-P", "bb:1", "sleep", "30"]);
    let line = s.ok(&["port", "pa"]);
    assert!(line.starts_with("80/tcp -> 0.0.0.0:"), "{line}");
    // The same port again: one line, and nothing left of the second.
    let err = s.fails(&["run", "-d", "-p", &format!("{port}:80"), "bb:1", "true"]);
    assert!(
        err.contains("already in use") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(s.ok(&["ps", "-a", "-q"]).lines().count(), 2);
    s.ok(&["rm", "-f", "web", "pa"]);
}

#[test]
fn bad_port_specs_and_networks_are_one_line_errors() {
    if !can_run() {
        return;
    }
    let s = Store::new();
    for bad in ["0:80", "70000:80", "8080:80/sctp", "a:b", "8000-8001:80-85"] {
        let o = s.oci(&["run", "-d", "-p", bad, "bb:1", "true"]);
        assert_eq!(o.status.code(), Some(125), "{bad}");
        let err = String::from_utf8(o.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{bad}: {err}");
        assert!(err.contains(bad), "{err}");
    }
    assert!(s.ok(&["ps", "-a", "-q"]).is_empty());
    let err = s.fails(&["run", "--network", "no-such-net", "bb:1", "true"]);
    assert!(err.contains("network no-such-net not found"), "{err}");
    // docker's: with the host's network, published ports are dropped with a warning.
    let o = s.oci(&[
        "run",
        "--rm",
        "--network",
        "host",
        "-p",
        "80",
        "bb:1",
        "true",
    ]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("WARNING: Published ports are discarded when using host network mode"),
        "{err}"
    );
    let err = s.fails(&["run", "--network", "none", "-p", "80", "bb:1", "true"]);
    assert!(err.contains("only on a bridge"), "{err}");
    let err = s.fails(&["run", "--hostname", "a_b", "bb:1", "true"]);
    assert!(err.contains("not a valid host name"), "{err}");
    // The network verbs.
    let n = format!("cli{}", std::process::id());
    let _ = s.oci(&["network", "rm", &n]);
    s.ok(&["network", "create", "--subnet", "10.232.0.0/16", &n]);
    let ls = s.ok(&["network", "ls"]);
    assert!(
        ls.contains(&n) && ls.contains("bridge") && ls.contains("host"),
        "{ls}"
    );
    for (args, why) in [
        (
            &["network", "create", "--subnet", "10.232.5.0/24", "x"][..],
            "overlaps network",
        ),
        (
            &["network", "create", "--subnet", "10.232.5.1/24", "x"],
            "host bits",
        ),
        (&["network", "create", &n], "already exists"),
        (
            &["network", "create", "--subnet", "127.0.0.0/8", "x"],
            "loopback",
        ),
    ] {
        let err = s.fails(args);
        assert!(
            err.contains(why) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    s.ok(&[
        "run",
        "-d",
        "--network",
        &n,
        "--name",
        "member",
        "bb:1",
        "sleep",
        "60",
    ]);
    let doc: serde_json::Value = serde_json::from_str(&s.ok(&["network", "inspect", &n])).unwrap();
    assert_eq!(doc[0]["Containers"].as_object().unwrap().len(), 1, "{doc}");
    assert_eq!(
        s.ok(&[
            "network",
            "inspect",
            "-f",
            "{{.Name}} {{len .Containers}}",
            &n
        ]),
        format!("{n} 1\n")
    );
    let err = s.fails(&["network", "rm", &n]);
    assert!(err.contains("in use"), "{err}");
    s.ok(&["rm", "-f", "member"]);
    s.ok(&["network", "rm", &n]);
    assert!(!s.ok(&["network", "ls"]).contains(&n));
}

#[test]
fn rootless_published_port_and_egress_through_slirp4netns() {
    if !can_run() {
        return;
    }
    if !Path::new("/usr/bin/slirp4netns").exists() {
        eprintln!("skipping: slirp4netns is missing (scripts/test.sh installs it)");
        return;
    }
    let Some((uid, gid, _)) = common::rootless_user() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let tar = common::busybox_rootfs_tar(home.path(), TOOLS);
    std::os::unix::fs::chown(home.path(), Some(uid), Some(gid)).unwrap();
    std::os::unix::fs::chown(&tar, Some(uid), Some(gid)).unwrap();
    let data = home.path().join("data");
    let ok = |args: &[&str]| common::ok_as(OCI, (uid, gid), home.path(), &data, args);
    ok(&["import", tar.to_str().unwrap(), "bb:1", "-c", "EXPOSE 80"]);
    let port = common::free_port();
    ok(&[
        "run",
        "-d",
        "--name",
        "rweb",
        "-p",
        &format!("{port}:80"),
        "bb:1",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/",
    ]);
    assert!(common::http_get(&format!("127.0.0.1:{port}")).starts_with("HTTP/1."));
    assert_eq!(ok(&["port", "rweb"]), format!("80/tcp -> 0.0.0.0:{port}\n"));
    // A restart binds the port again although the proxy's last connections are in
    // TIME_WAIT on it.
    ok(&["restart", "-t", "1", "rweb"]);
    assert!(common::http_get(&format!("127.0.0.1:{port}")).starts_with("HTTP/1."));
    // -P as well.
    ok(&[
        "run", "-d", "--name", "rall", "-P", "bb:1", "httpd", "-f", "-p", "80", "-h", "/",
    ]);
    let line = ok(&["port", "rall"]);
    let p = line.trim().rsplit(':').next().unwrap().to_owned();
    assert!(common::http_get(&format!("127.0.0.1:{p}")).starts_with("HTTP/1."));
    // Egress: the host's own address through slirp4netns's gateway.
    let www = home.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), "host page\n").unwrap();
    let hp = common::free_port();
    let mut server = Command::new("/bin/busybox")
        .args(["httpd", "-f", "-p", &format!("0.0.0.0:{hp}"), "-h"])
        .arg(&www)
        .spawn()
        .unwrap();
    let host_ip = sh_ok("ip -4 -o route get 1.1.1.1 | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p'");
    let got = ok(&[
        "run",
        "--rm",
        "bb:1",
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{}:{hp}/index.html", host_ip.trim()),
    ]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(got, "host page\n");
    for n in ["rweb", "rall"] {
        ok(&["rm", "-f", n]);
    }
    // The helpers went with them.
    std::thread::sleep(Duration::from_millis(200));
    // Live ones only: zombies that another tool's helpers left to a pid 1 that does not reap
    // are not ours to judge.
    let left = sh_ok(&format!(
        "ps -o stat=,args= -u {uid} | grep -v '^Z' || true"
    ));
    assert!(!left.contains("slirp4netns"), "{left}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the proxy is gone"
    );
}

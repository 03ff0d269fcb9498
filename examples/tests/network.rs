//! Container networking through the `oci` command line, with real bridges, veths, nftables
//! rules and network namespaces: published ports to a Debian nginx from the host's loopback,
//! its address and a client in another namespace; user networks with names; egress to a
//! server in a namespace that stands in for the internet; rootless slirp4netns with the port
//! proxy; bad input; and clean-up checked in `nft list ruleset` and the host's links.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common;

const OCI: &str = env!("CARGO_BIN_EXE_oci");
const TOOLS: &[&str] = &[
    "sh", "cat", "echo", "sleep", "httpd", "ip", "ping", "nc", "grep", "hostname", "true",
];

/// True when these tests can run: root, busybox, nft and ip (iproute2, used only by the
/// tests to make their client and "internet" namespaces).
fn can_run() -> bool {
    if !common::root_with_busybox() {
        return false;
    }
    for (tool, pkg) in [("/usr/sbin/nft", "nftables"), ("/usr/sbin/ip", "iproute2")] {
        if !Path::new(tool).exists() {
            eprintln!("skipping: {tool} is missing (scripts/test.sh installs {pkg})");
            return false;
        }
    }
    true
}

/// A rootfs tar of Debian with nginx-light, made once by debootstrap and cached under the
/// target directory; `None` (the caller skips) when debootstrap or the mirror is missing.
fn nginx_tar() -> Option<PathBuf> {
    static TAR: OnceLock<Option<PathBuf>> = OnceLock::new();
    TAR.get_or_init(|| {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nginx-light-rootfs.tar");
        if cache.exists() {
            return Some(cache);
        }
        if !Path::new("/usr/sbin/debootstrap").exists() {
            eprintln!("skipping: debootstrap is missing (scripts/test.sh installs it)");
            return None;
        }
        let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let root = work.path().join("root");
        let st = Command::new("/usr/sbin/debootstrap")
            .args(["--variant=minbase", "--include=nginx-light", "bookworm"])
            .arg(&root)
            .arg("http://deb.debian.org/debian")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if !st.success() {
            eprintln!("skipping: debootstrap of nginx-light failed (no Debian mirror?)");
            return None;
        }
        for junk in ["var/cache/apt/archives", "var/lib/apt/lists"] {
            let _ = std::fs::remove_dir_all(root.join(junk));
        }
        let tmp = work.path().join("nginx.tar");
        common::tar_dir(&root, &tmp);
        std::fs::rename(&tmp, &cache).unwrap();
        Some(cache)
    })
    .clone()
}

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
        let s = Self { dir, cli };
        s.ok(&["import", tar.to_str().unwrap(), "bb:1", "-c", "EXPOSE 80"]);
        s
    }

    fn with_nginx(&self) -> bool {
        let Some(tar) = nginx_tar() else {
            return false;
        };
        self.ok(&[
            "import",
            tar.to_str().unwrap(),
            "nginx:light",
            "-c",
            r#"CMD ["nginx","-g","daemon off;"]"#,
            "-c",
            "EXPOSE 80",
        ]);
        true
    }

    fn ip_of(&self, name: &str) -> String {
        self.field(name, "{{.NetworkSettings.IPAddress}}")
    }

    /// Removes every container of the store and checks that none left a veth or a rule.
    fn finish(&self) {
        let ids = self.ok(&["ps", "-a", "-q", "--no-trunc"]);
        let ips: Vec<(String, String)> = ids
            .lines()
            .map(|id| (id.to_owned(), self.ip_of(id)))
            .collect();
        for (id, _) in &ips {
            self.ok(&["rm", "-f", id]);
        }
        for (id, ip) in &ips {
            assert_no_trace(id, ip);
        }
    }
}

fn sh(cmd: &str) -> Output {
    Command::new("sh").arg("-c").arg(cmd).output().unwrap()
}

fn sh_ok(cmd: &str) -> String {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// An HTTP GET to `addr`, retried until something answers (10 s).
fn http_get(addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            write!(s, "GET / HTTP/1.0\r\n\r\n").unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if !out.is_empty() {
                return out;
            }
        }
        assert!(Instant::now() < deadline, "nothing answers on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A network namespace of the test's own, joined to the host by a veth pair: the host end
/// has `.1` of `net`, the namespace end `.2`. Removed on drop.
struct TestNs {
    name: String,
    host_if: String,
}

impl TestNs {
    fn new(tag: &str, net: &str) -> Self {
        let name = format!("ocit-{tag}-{}", std::process::id());
        let host_if = format!("vt{tag}{}", std::process::id() % 100_000);
        sh(&format!(
            "ip netns del {name} 2>/dev/null; ip link del {host_if} 2>/dev/null"
        ));
        sh_ok(&format!(
            "ip netns add {name} && ip link add {host_if} type veth peer name eth0 netns {name} \
             && ip addr add {net}.1/24 dev {host_if} && ip link set {host_if} up \
             && ip -n {name} addr add {net}.2/24 dev eth0 && ip -n {name} link set eth0 up \
             && ip -n {name} link set lo up && ip -n {name} route add default via {net}.1"
        ));
        Self { name, host_if }
    }

    fn exec(&self, cmd: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, "sh", "-c", cmd]);
        c
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        sh(&format!(
            "ip link del {} 2>/dev/null; ip netns del {}",
            self.host_if, self.name
        ));
    }
}

/// Nothing of container `id` is left on the host: no veth named for it and no port rule
/// of its (each carries its short id as a comment). `ip` is for the message.
fn assert_no_trace(id: &str, ip: &str) {
    let links = sh_ok("ip -o link");
    assert!(
        !links.contains(&format!("veth{}", &id[..8])),
        "a veth of {id} is left: {links}"
    );
    let rules = sh_ok("nft list ruleset");
    assert!(
        !rules.contains(&id[..12]),
        "a rule of {id} ({ip}) is left: {rules}"
    );
}

#[test]
fn published_port_reaches_nginx_from_loopback_host_address_and_another_namespace() {
    if !can_run() {
        return;
    }
    let s = Store::new();
    if !s.with_nginx() {
        return;
    }
    let client = TestNs::new("cl", "198.51.100");
    let port = common::free_port();
    let id = s.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &format!("{port}:80"),
        "nginx:light",
    ]);
    let id = id.trim().to_owned();
    let ip = s.ip_of("web");
    assert!(ip.starts_with("10.89.0."), "on the default bridge: {ip}");
    assert!(http_get(&format!("127.0.0.1:{port}")).contains("Welcome to nginx"));
    assert!(http_get(&format!("198.51.100.1:{port}")).contains("Welcome to nginx"));
    // From another host (a namespace): DNAT keeps the client's address.
    let page = String::from_utf8(
        client
            .exec(&format!(
                "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc 198.51.100.1 {port}"
            ))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(page.contains("Welcome to nginx"), "{page}");
    let log = s.ok(&["exec", "web", "cat", "/var/log/nginx/access.log"]);
    assert!(
        log.lines().any(|l| l.starts_with("198.51.100.2 ")),
        "the client's own address in the access log: {log}"
    );
    // port, ps and inspect show it.
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
    // A second container asking for the same port fails cleanly and leaves nothing.
    let before = s.ok(&["ps", "-a", "-q"]);
    let err = s.fails(&[
        "run",
        "-d",
        "--name",
        "web2",
        "-p",
        &format!("{port}:80"),
        "bb:1",
        "sleep",
        "9",
    ]);
    assert!(err.contains("already in use"), "{err}");
    assert_eq!(
        s.ok(&["ps", "-a", "-q"]),
        before,
        "nothing is left of the second"
    );
    // A program of the host holding a port: the same clear error before the start.
    let held = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let hp = held.local_addr().unwrap().port();
    let err = s.fails(&["run", "-d", "-p", &format!("{hp}:80"), "bb:1", "sleep", "9"]);
    assert!(err.contains(&format!("0.0.0.0:{hp}/tcp")), "{err}");
    assert_eq!(s.ok(&["ps", "-a", "-q"]), before);
    // stop takes the rules and the veth away; start brings them back.
    s.ok(&["stop", "-t", "1", "web"]);
    assert_no_trace(&id, &ip);
    s.ok(&["start", "web"]);
    assert!(http_get(&format!("127.0.0.1:{port}")).contains("Welcome to nginx"));
    s.ok(&["rm", "-f", "web"]);
    assert_no_trace(&id, &ip);
    s.finish();
}

#[test]
fn publish_all_maps_every_exposed_port_to_a_free_one() {
    if !can_run() {
        return;
    }
    let s = Store::new();
    s.ok(&[
        "run", "-d", "--name", "pa", "-P", "bb:1", "httpd", "-f", "-p", "80", "-h", "/",
    ]);
    let line = s.ok(&["port", "pa"]);
    let host_port = line
        .trim()
        .strip_prefix("80/tcp -> 0.0.0.0:")
        .unwrap_or_else(|| panic!("{line}"));
    let p: u16 = host_port.parse().unwrap();
    assert!(p > 1024);
    assert!(http_get(&format!("127.0.0.1:{p}")).starts_with("HTTP/1."));
    // A container range to random ports and a fixed range.
    let (a, b) = (common::free_port(), common::free_port());
    let spec = if a + 1 == b {
        format!("{a}-{b}:81-82")
    } else {
        "81-82".to_owned()
    };
    s.ok(&[
        "run", "-d", "--name", "rg", "-p", &spec, "bb:1", "sleep", "30",
    ]);
    assert_eq!(s.ok(&["port", "rg"]).lines().count(), 2);
    s.finish();
}

#[test]
fn udp_ports_and_restarts_keep_their_publishing() {
    if !can_run() {
        return;
    }
    let s = Store::new();
    if s.with_nginx() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        drop(sock);
        // perl-base is in every Debian: a UDP receiver that prints what arrives.
        s.ok(&[
            "run",
            "-d",
            "--name",
            "u",
            "-p",
            &format!("{port}:9999/udp"),
            "nginx:light",
            "perl",
            "-MIO::Socket::INET",
            "-e",
            "$|=1; my $s = IO::Socket::INET->new(LocalPort => 9999, Proto => 'udp') or die; \
             while ($s->recv(my $m, 100)) { print $m }",
        ]);
        assert_eq!(
            s.ok(&["port", "u"]),
            format!("9999/udp -> 0.0.0.0:{port}\n")
        );
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            c.send_to(b"datagram\n", ("127.0.0.1", port)).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            if s.ok(&["logs", "u"]).contains("datagram") {
                break;
            }
            assert!(Instant::now() < deadline, "no datagram arrived");
        }
    }
    // A restart policy brings the container back with its port and a fresh endpoint.
    let hp = common::free_port();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "r",
        "--restart",
        "on-failure:2",
        "-p",
        &format!("{hp}:80"),
        "bb:1",
        "sh",
        "-c",
        "httpd -p 80 -h / ; sleep 1; exit 3",
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.field("r", "{{.RestartCount}}") == "0" {
        assert!(Instant::now() < deadline, "no restart");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(http_get(&format!("127.0.0.1:{hp}")).starts_with("HTTP/1."));
    s.finish();
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
    let err = s.fails(&["run", "--network", "host", "-p", "80", "bb:1", "true"]);
    assert!(err.contains("only on a bridge"), "{err}");
    let n = format!("ovl{}", std::process::id());
    s.ok(&["network", "create", "--subnet", "10.231.0.0/16", &n]);
    let err = s.fails(&["network", "create", "--subnet", "10.231.5.0/24", "x"]);
    assert!(err.contains("overlaps network"), "{err}");
    let err = s.fails(&["network", "create", "--subnet", "10.231.5.1/24", "x"]);
    assert!(err.contains("host bits"), "{err}");
    let err = s.fails(&["network", "create", &n]);
    assert!(err.contains("already exists"), "{err}");
    for (subnet, why) in [
        ("127.0.0.0/8", "loopback"),
        ("127.77.0.0/16", "loopback"),
        ("224.0.0.0/8", "multicast"),
        ("239.5.0.0/16", "multicast"),
    ] {
        let err = s.fails(&["network", "create", "--subnet", subnet, "x"]);
        assert!(err.contains(why), "{subnet}: {err}");
    }
    // A hostname is written into the /etc/hosts of every container on the network: a newline
    // or a blank in it would forge lines or aliases there.
    s.ok(&[
        "run",
        "-d",
        "--network",
        &n,
        "--name",
        "victim",
        "bb:1",
        "sleep",
        "60",
    ]);
    for bad in [
        "x\n10.9.9.9 victim.example",
        "x victim.example",
        "-x",
        "a_b",
    ] {
        let flag = format!("--hostname={bad}");
        let o = s.oci(&["run", "-d", "--network", &n, &flag, "bb:1", "sleep", "60"]);
        assert_eq!(o.status.code(), Some(125), "{bad:?}");
        let err = String::from_utf8(o.stderr).unwrap();
        assert!(err.contains("not a valid host name"), "{bad:?}: {err}");
    }
    let hosts = s.ok(&["exec", "victim", "cat", "/etc/hosts"]);
    assert!(!hosts.contains("victim.example"), "{hosts}");
    s.ok(&["rm", "-f", "victim"]);
    s.ok(&["network", "rm", &n]);
    s.finish();
}

#[test]
fn containers_on_one_network_reach_each_other_by_name_and_not_across_networks() {
    if !can_run() {
        return;
    }
    let s = Store::new();
    let (n1, n2) = (
        format!("front{}", std::process::id()),
        format!("back{}", std::process::id()),
    );
    s.ok(&["network", "create", &n1]);
    s.ok(&["network", "create", &n2]);
    let ls = s.ok(&["network", "ls"]);
    assert!(
        ls.contains(&n1) && ls.contains("bridge") && ls.contains("host"),
        "{ls}"
    );
    for (name, net) in [("a1", &n1), ("a2", &n1), ("b1", &n2)] {
        s.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            net,
            "bb:1",
            "sleep",
            "60",
        ]);
    }
    // A name that is not a DNS label still runs, and is reachable by its id.
    let odd = s.ok(&[
        "run",
        "-d",
        "--name",
        "odd_name",
        "--network",
        &n1,
        "bb:1",
        "sleep",
        "60",
    ]);
    let ping = |from: &str, to: &str| {
        s.oci(&["exec", from, "ping", "-c", "1", "-W", "2", to])
            .status
            .success()
    };
    assert!(ping("a1", "a2"), "by name on one network");
    assert!(
        ping("a2", "a1"),
        "both ways: a1 learnt of a2 when a2 joined"
    );
    assert!(ping("a1", &odd.trim()[..12]), "by short id");
    let b1 = s.ip_of("b1");
    assert!(!ping("a1", &b1), "no route between networks");
    assert!(!ping("a1", "b1"), "and no name");
    // network inspect lists the containers.
    let doc: serde_json::Value = serde_json::from_str(&s.ok(&["network", "inspect", &n1])).unwrap();
    assert_eq!(doc[0]["Containers"].as_object().unwrap().len(), 3, "{doc}");
    // In use: refused.
    let err = s.fails(&["network", "rm", &n1]);
    assert!(err.contains("in use"), "{err}");
    // connect gives a1 a second interface on n2, where b1 is.
    s.ok(&["network", "connect", &n2, "a1"]);
    assert!(ping("a1", "b1"), "after connect");
    assert!(
        ping("a1", "a2"),
        "and still the first network's names: one file holds both"
    );
    assert!(s.ok(&["exec", "a1", "ip", "-o", "addr"]).contains("eth1"));
    s.ok(&["network", "disconnect", &n2, "a1"]);
    assert!(!ping("a1", &b1), "after disconnect");
    // Addresses come back when the containers go.
    let ids: Vec<(String, String)> = ["a1", "a2", "b1", "odd_name"]
        .iter()
        .map(|n| (s.field(n, "{{.Id}}"), s.ip_of(n)))
        .collect();
    for n in ["a1", "a2", "b1", "odd_name"] {
        s.ok(&["rm", "-f", n]);
    }
    for (id, ip) in &ids {
        assert_no_trace(id, ip);
    }
    s.ok(&["network", "rm", &n1, &n2]);
    assert!(!s.ok(&["network", "ls"]).contains(&n1));
}

#[test]
fn egress_reaches_a_server_in_a_namespace_standing_for_the_internet() {
    if !can_run() {
        return;
    }
    let s = Store::new();
    let inet = TestNs::new("in", "203.0.113");
    let www = s.dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), "from the internet\n").unwrap();
    let mut server = inet
        .exec(&format!(
            "exec /bin/busybox httpd -f -v -p 203.0.113.2:8000 -h {}",
            www.display()
        ))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = s.ok(&[
        "run",
        "--rm",
        "bb:1",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc 203.0.113.2 8000 && exit 0; sleep 0.2; done; exit 1",
    ]);
    assert!(o.contains("from the internet"), "{o}");
    let _ = server.kill();
    let mut log = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let _ = server.wait();
    assert!(
        log.contains("203.0.113.1"),
        "the server sees the host's address (masquerade), not the container's: {log}"
    );
    s.finish();
}

#[test]
fn addresses_are_unique_under_concurrent_runs_and_released_after_a_killed_monitor() {
    if !can_run() {
        return;
    }
    let s = Store::new();
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let mut c = s.cmd(&[
                "run",
                "-d",
                "--name",
                &format!("c{i}"),
                "bb:1",
                "sleep",
                "60",
            ]);
            std::thread::spawn(move || c.output().unwrap())
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap().status.success());
    }
    let ips: std::collections::BTreeSet<String> =
        (0..6).map(|i| s.ip_of(&format!("c{i}"))).collect();
    assert_eq!(ips.len(), 6, "six distinct addresses: {ips:?}");
    // A released address is not handed out again at once (stale ARP and conntrack entries).
    let old = s.ip_of("c0");
    s.ok(&["rm", "-f", "c0"]);
    s.ok(&["run", "-d", "--name", "c6", "bb:1", "sleep", "60"]);
    assert_ne!(s.ip_of("c6"), old);
    // The monitor killed with -9, then the container: the next network change releases
    // the address, the veth and the rules.
    let port = common::free_port();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "k",
        "-p",
        &format!("{port}:80"),
        "bb:1",
        "sleep",
        "60",
    ]);
    let id = s.field("k", "{{.Id}}");
    let ip = s.ip_of("k");
    let pid: i32 = s.field("k", "{{.State.Pid}}").parse().unwrap();
    let mon = std::fs::read_to_string(
        s.dir
            .path()
            .join(format!("data/containers/{id}/status.json")),
    )
    .ok()
    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    .and_then(|v| v["monitor_pid"].as_i64())
    .unwrap();
    sh_ok(&format!("kill -9 {mon} && kill -9 {pid}"));
    std::thread::sleep(Duration::from_millis(300));
    s.ok(&["run", "--rm", "bb:1", "true"]);
    assert_no_trace(&id, &ip);
    assert!(!sh_ok("nft list ruleset").contains(&format!("dport {port} ")));
    s.finish();
}

#[test]
fn a_container_cannot_touch_the_host_network() {
    if !can_run() {
        return;
    }
    let s = Store::new();
    let o = s.ok(&["run", "--rm", "bb:1", "sh", "-c", "ip -o link; ip link set eth0 down && echo changed; ip addr add 10.89.0.200/24 dev eth0 && echo added; true"]);
    assert!(
        !o.contains("oci0") && !o.contains("changed") && !o.contains("added"),
        "{o}"
    );
    assert_eq!(
        o.lines().filter(|l| l.contains(": ")).count(),
        2,
        "lo and eth0 only: {o}"
    );
    // With NET_ADMIN it changes its own namespace only.
    let o = s.ok(&[
        "run",
        "--rm",
        "--cap-add",
        "NET_ADMIN",
        "bb:1",
        "sh",
        "-c",
        "ip link set oci0 down 2>&1; ip link set eth0 down && echo down",
    ]);
    assert!(o.contains("down"), "its own eth0, it may: {o}");
    // The bridge is not in its namespace at all, and stays up on the host.
    assert!(o.contains("No such device"), "{o}");
    let br = sh_ok("ip -o link show oci0");
    assert!(br.contains(",UP"), "{br}");
    s.finish();
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
    let Some(nginx) = nginx_tar() else { return };
    let tar = home.path().join("nginx.tar");
    std::fs::copy(&nginx, &tar).unwrap();
    std::os::unix::fs::chown(home.path(), Some(uid), Some(gid)).unwrap();
    std::os::unix::fs::chown(&tar, Some(uid), Some(gid)).unwrap();
    let data = home.path().join("data");
    let ok = |args: &[&str]| common::ok_as(OCI, (uid, gid), home.path(), &data, args);
    ok(&[
        "import",
        tar.to_str().unwrap(),
        "nginx:light",
        "-c",
        r#"CMD ["nginx","-g","daemon off;"]"#,
        "-c",
        "EXPOSE 80",
    ]);
    let port = common::free_port();
    ok(&[
        "run",
        "-d",
        "--name",
        "rweb",
        "-p",
        &format!("{port}:80"),
        "nginx:light",
    ]);
    assert!(http_get(&format!("127.0.0.1:{port}")).contains("Welcome to nginx"));
    assert_eq!(ok(&["port", "rweb"]), format!("80/tcp -> 0.0.0.0:{port}\n"));
    // -P as well.
    ok(&["run", "-d", "--name", "rall", "-P", "nginx:light"]);
    let line = ok(&["port", "rall"]);
    let p = line.trim().rsplit(':').next().unwrap().to_owned();
    assert!(http_get(&format!("127.0.0.1:{p}")).contains("Welcome to nginx"));
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
        "nginx:light",
        "bash",
        "-c",
        &format!(
            "exec 3<>/dev/tcp/{}/{hp} && printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3",
            host_ip.trim()
        ),
    ]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(got.contains("host page"), "{got}");
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

/// Sends one UDP datagram from inside the network namespace of process `pid` as a raw
/// Ethernet frame on its eth0, to the MAC of the gateway `gw` with IP destination `dst`: what
/// a container with docker's default CAP_NET_RAW can do. Python's AF_PACKET socket crafts it.
fn send_crafted_udp(pid: &str, gw: &str, dst: &str, port: u16, payload: &str) {
    const SCRIPT: &str = r#"
import socket, struct, subprocess, sys, time
gw, dst, port, payload = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
for _ in range(100):
    # A datagram to the gateway's discard port makes the kernel resolve its MAC.
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"", (gw, 9))
    neigh = subprocess.run(["ip", "neigh", "show", gw], capture_output=True, text=True).stdout.split()
    if "lladdr" in neigh:
        break
    time.sleep(0.05)
gw_mac = bytes.fromhex(neigh[neigh.index("lladdr") + 1].replace(":", ""))
link = subprocess.run(["ip", "-o", "link", "show", "eth0"], capture_output=True, text=True).stdout.split()
my_mac = bytes.fromhex(link[link.index("link/ether") + 1].replace(":", ""))
addr = subprocess.run(["ip", "-o", "-4", "addr", "show", "eth0"], capture_output=True, text=True).stdout.split()
src = addr[addr.index("inet") + 1].split("/")[0]
udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                  socket.inet_aton(src), socket.inet_aton(dst))
hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
s.send(gw_mac + my_mac + b"\x08\x00" + hdr + udp)
"#;
    let o = Command::new("nsenter")
        .args(["-t", pid, "-n", "python3", "-c", SCRIPT, gw, dst])
        .arg(port.to_string())
        .arg(payload)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "crafting a frame: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// CVE-2020-8558: a frame a container crafts for the gateway's MAC with destination
/// 127.0.0.1 must not reach a service bound to the host's loopback (every bridge has
/// `route_localnet`, for published ports). The same frame to the gateway's own address does
/// arrive, so the probe is known to work; the loopback one is judged once that has come.
#[test]
fn a_container_cannot_reach_the_hosts_loopback_services() {
    if !can_run() {
        return;
    }
    if Command::new("python3").arg("-V").output().is_err() {
        eprintln!("skipping: python3 (which crafts the raw frame) is missing");
        return;
    }
    let s = Store::new();
    let loopback = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let control = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    control
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    loopback.set_nonblocking(true).unwrap();
    for net in [None, Some("ocit-lo")] {
        let mut args = vec!["run", "-d"];
        if let Some(n) = net {
            let _ = s.oci(&["network", "rm", n]);
            s.ok(&["network", "create", n]);
            args.extend(["--network", n]);
        }
        args.extend(["bb:1", "sleep", "60"]);
        let id = s.ok(&args).trim().to_owned();
        let pid = s.field(&id, "{{.State.Pid}}");
        let gw = s.field(&id, "{{.NetworkSettings.Gateway}}");
        let lo_port = loopback.local_addr().unwrap().port();
        send_crafted_udp(&pid, &gw, "127.0.0.1", lo_port, "attack");
        let ctl_port = control.local_addr().unwrap().port();
        send_crafted_udp(&pid, &gw, &gw, ctl_port, "control");
        let mut buf = [0u8; 64];
        let (n, _) = control.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"control");
        // Sent before the control datagram on the same path: given a moment more, it would be
        // here had it been let through.
        std::thread::sleep(Duration::from_millis(300));
        match loopback.recv_from(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("the host's loopback service got {other:?} from a container ({net:?})"),
        }
        s.ok(&["rm", "-f", &id]);
    }
    let _ = s.oci(&["network", "rm", "ocit-lo"]);
    s.finish();
}

/// The host's bridges and `ip oci` table follow one network store: a program with a store of
/// its own (here `oci` pointed elsewhere by `OCI_NETWORKS_DIR`, as an embedder that opened
/// another directory) may not rewrite them while the host's store has running containers.
/// Before, its run rewrote the table from its own records and the published port of the
/// container started from the host's store lost its DNAT rule.
#[test]
fn a_second_network_store_cannot_erase_the_hosts_rules() {
    if !can_run() {
        return;
    }
    let s = Store::new();
    let port = common::free_port();
    let id = s
        .ok(&[
            "run",
            "-d",
            "-p",
            &format!("{port}:80"),
            "bb:1",
            "sleep",
            "60",
        ])
        .trim()
        .to_owned();
    let short = &id[..12];
    assert!(sh_ok("nft list table ip oci").contains(short));
    let other = s.dir.path().join("other-networks");
    let o = s
        .cmd(&["run", "-d", "-p", "80", "bb:1", "sleep", "60"])
        .env("OCI_NETWORKS_DIR", &other)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(err.contains("belong to the store"), "{err}");
    assert!(
        sh_ok("nft list table ip oci").contains(short),
        "the first container's rule is gone"
    );
    s.ok(&["rm", "-f", &id]);
    s.finish();
}

//! Container networking through [`Containers`] and [`Networks`], with real bridges, veths,
//! nftables rules and network namespaces: published ports to a Debian nginx from the host's
//! loopback, its address and a client in another namespace; `publish_all` and ranges; UDP;
//! ports kept across restarts; user networks with names; connect and disconnect; egress to
//! a server in a namespace that stands in for the internet; addresses under concurrent runs
//! and after a killed monitor; what a container can do to the host's network (its links,
//! the host's loopback services, CVE-2020-8558); and a second network store. Clean-up is
//! checked in `nft list ruleset` and the host's links.

use crate::fixture::{detached, logs, read_in, until, Fixture};
use crate::Test;
use oci_rs_runtime::{
    parse_publish, Containers, EngineError, Error, ExecRequest, NetError, NetworkMode, Networks,
    RestartPolicy, RunRequest,
};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const TESTS: &[Test] = &[
    (
        "a_published_port_reaches_nginx_from_loopback_host_address_and_another_namespace",
        a_published_port_reaches_nginx_from_loopback_host_address_and_another_namespace,
    ),
    (
        "publish_all_maps_every_exposed_port_to_a_free_one",
        publish_all_maps_every_exposed_port_to_a_free_one,
    ),
    (
        "udp_ports_and_restarts_keep_their_publishing",
        udp_ports_and_restarts_keep_their_publishing,
    ),
    (
        "static_addresses_are_given_checked_and_kept_across_restarts",
        static_addresses_are_given_checked_and_kept_across_restarts,
    ),
    (
        "an_internal_network_reaches_its_members_and_nothing_else",
        an_internal_network_reaches_its_members_and_nothing_else,
    ),
    (
        "bad_ports_subnets_and_hostnames_are_typed_errors",
        bad_ports_subnets_and_hostnames_are_typed_errors,
    ),
    (
        "containers_on_one_network_reach_each_other_by_name_and_not_across_networks",
        containers_on_one_network_reach_each_other_by_name_and_not_across_networks,
    ),
    (
        "egress_reaches_a_server_in_a_namespace_standing_for_the_internet",
        egress_reaches_a_server_in_a_namespace_standing_for_the_internet,
    ),
    (
        "addresses_are_unique_under_concurrent_runs_and_released_after_a_killed_monitor",
        addresses_are_unique_under_concurrent_runs_and_released_after_a_killed_monitor,
    ),
    (
        "a_container_cannot_touch_the_host_network",
        a_container_cannot_touch_the_host_network,
    ),
    (
        "a_container_cannot_reach_the_hosts_loopback_services",
        a_container_cannot_reach_the_hosts_loopback_services,
    ),
    (
        "a_second_network_store_cannot_erase_the_hosts_rules",
        a_second_network_store_cannot_erase_the_hosts_rules,
    ),
    (
        "ipv6_networks_give_addresses_names_egress_ports_and_keep_isolation",
        ipv6_networks_give_addresses_names_egress_ports_and_keep_isolation,
    ),
];

/// True when these tests can run: nft and ip (iproute2, used only by the tests to make
/// their client and "internet" namespaces).
fn can_run() -> bool {
    for (tool, pkg) in [("/usr/sbin/nft", "nftables"), ("/usr/sbin/ip", "iproute2")] {
        if !Path::new(tool).exists() {
            eprintln!("skipping: {tool} is missing (scripts/test.sh installs {pkg})");
            return false;
        }
    }
    true
}

/// A rootfs tar of Debian with nginx-light, made once by debootstrap and cached under the
/// target directory; `None` (the caller skips that part) when debootstrap or the mirror is
/// missing.
pub fn nginx_tar() -> Option<PathBuf> {
    static TAR: OnceLock<Option<PathBuf>> = OnceLock::new();
    TAR.get_or_init(|| {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nginx-light-rootfs");
        if cache.join("usr/sbin/nginx").exists() {
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
        let _ = std::fs::remove_dir_all(&cache);
        std::fs::rename(&root, &cache).unwrap();
        Some(cache)
    })
    .clone()
}

/// Imports nginx as `nginx:light`; false when it cannot be had.
fn with_nginx(f: &Fixture) -> bool {
    let Some(root) = nginx_tar() else {
        return false;
    };
    f.import(&root, "nginx:light", &[("cmd", ""), ("expose", "80")]);
    true
}

/// Removes every container of the store and checks that none left a veth or a rule.
fn finish(store: &Containers) {
    let ips: Vec<(String, String)> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|v| (v.config.id.clone(), ip_of(store, &v.config.id)))
        .collect();
    for (id, _) in &ips {
        store.remove(id, true).unwrap();
    }
    for (id, ip) in &ips {
        assert_no_trace(id, ip);
    }
}

/// The address of running container `what` on its first network ("" without one).
fn ip_of(store: &Containers, what: &str) -> String {
    store
        .view(what)
        .unwrap()
        .status
        .network
        .and_then(|n| n.endpoints.first().map(|e| e.ip.to_string()))
        .unwrap_or_default()
}

/// A detached request on the default bridge.
fn bridged(store: &Containers, name: Option<&str>, script: &str) -> RunRequest {
    let mut req = detached(name, script);
    store.set_network(&mut req, None).unwrap();
    req
}

fn run_from(f: &Fixture, store: &Containers, image: &str, req: RunRequest) -> String {
    let image = f.image_named(image);
    f.rt.block_on(store.run(&image, req)).unwrap().0
}

/// Runs `script` in container `what`: its exit code.
fn exec(store: &Containers, what: &str, script: &str) -> i32 {
    let req = ExecRequest {
        args: vec!["sh".into(), "-c".into(), script.into()],
        ..ExecRequest::default()
    };
    store.exec(what, &req).unwrap()
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
        let name = format!("ocie-{tag}-{}", std::process::id());
        let host_if = format!("ve{tag}{}", std::process::id() % 100_000);
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

/// Networks a test made, removed when it ends however it ends (a failed test must not
/// leave a subnet that the next run's networks overlap).
struct MadeNetworks(Vec<String>);

impl MadeNetworks {
    fn create(&mut self, nets: &Networks, name: &str, subnet: Option<&str>) {
        let _ = nets.remove(name);
        let subnet = subnet.map(|s| oci_rs_runtime::parse_subnet(s).unwrap());
        nets.create(name, subnet).unwrap();
        self.0.push(name.to_owned());
    }
}

impl Drop for MadeNetworks {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Networks::host().remove(n);
        }
    }
}

/// The network error inside an engine error.
fn net_error(e: &EngineError) -> Option<&NetError> {
    match e {
        EngineError::Runtime(e) => match &**e {
            Error::Network(n) => Some(n),
            _ => None,
        },
        _ => None,
    }
}

fn a_published_port_reaches_nginx_from_loopback_host_address_and_another_namespace(f: &Fixture) {
    if !can_run() || !with_nginx(f) {
        return;
    }
    let store = Containers::open(&f.data()).unwrap();
    let client = TestNs::new("cl", "198.51.100");
    let port = free_port();
    let mut req = bridged(&store, Some("web"), "");
    req.opts.args = vec!["nginx".into(), "-g".into(), "daemon off;".into()];
    req.publish = parse_publish(&format!("{port}:80")).unwrap();
    let id = run_from(f, &store, "nginx:light", req);
    let ip = ip_of(&store, "web");
    assert!(ip.starts_with("10.89.0."), "on the default bridge: {ip}");
    assert!(http_get(&format!("127.0.0.1:{port}")).contains("Welcome to nginx"));
    assert!(http_get(&format!("198.51.100.1:{port}")).contains("Welcome to nginx"));
    // docker-proxy's IPv6 side: on a network with IPv4 only, the host's IPv6 addresses
    // reach the port too (through the monitor's proxy), when the host has IPv6.
    let six = std::net::TcpListener::bind("[::1]:0").is_ok();
    if six {
        assert!(http_get(&format!("[::1]:{port}")).contains("Welcome to nginx"));
    } else {
        eprintln!("skipping [::1]: the host has no IPv6 loopback");
    }
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
    let log = read_in(&store, "web", "var/log/nginx/access.log");
    assert!(
        log.lines().any(|l| l.starts_with("198.51.100.2 ")),
        "the client's own address in the access log: {log}"
    );
    // The published port as the status shows it.
    let ports = store.view("web").unwrap().status.network.unwrap().ports;
    assert_eq!(ports.len(), 1);
    assert_eq!(
        (ports[0].host_port, ports[0].container_port),
        (port, 80),
        "{ports:?}"
    );
    // A second container asking for the same port fails cleanly and leaves nothing.
    let mut second = bridged(&store, Some("web2"), "sleep 9");
    second.publish = parse_publish(&format!("{port}:80")).unwrap();
    let image = f.image();
    let err = f.rt.block_on(store.run(&image, second)).unwrap_err();
    // The monitor binds the ports, and reports why it could not as text.
    let why = oci_rs_runtime::chain(&err);
    assert!(
        why.contains(&format!("0.0.0.0:{port}/tcp: the port is already in use")),
        "{why}"
    );
    assert_eq!(
        store.list().unwrap().len(),
        1,
        "nothing is left of the second"
    );
    // A program of the host holding a port: the same clear error before the start.
    let held = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let hp = held.local_addr().unwrap().port();
    let mut third = bridged(&store, None, "sleep 9");
    third.publish = parse_publish(&format!("{hp}:80")).unwrap();
    let err = f.rt.block_on(store.run(&image, third)).unwrap_err();
    let why = oci_rs_runtime::chain(&err);
    assert!(
        why.contains(&format!("0.0.0.0:{hp}/tcp: the port is already in use")),
        "{why}"
    );
    assert_eq!(store.list().unwrap().len(), 1);
    // stop takes the rules and the veth away; start brings them back.
    store.stop("web", Duration::from_secs(1)).unwrap();
    assert_no_trace(&id, &ip);
    assert!(
        !six || std::net::TcpStream::connect(format!("[::1]:{port}")).is_err(),
        "the IPv6 listener outlived the container"
    );
    store.start("web", false).unwrap();
    assert!(http_get(&format!("127.0.0.1:{port}")).contains("Welcome to nginx"));
    if six {
        assert!(http_get(&format!("[::1]:{port}")).contains("Welcome to nginx"));
        // Disconnected from the network its ports are on, it is not reachable on IPv6 either.
        store
            .disconnect(oci_rs_runtime::DEFAULT_NETWORK, "web")
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(format!("[::1]:{port}")).is_ok() {
            assert!(
                Instant::now() < deadline,
                "the IPv6 proxy outlived the endpoint"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    store.remove("web", true).unwrap();
    assert_no_trace(&id, &ip);
    finish(&store);
}

fn publish_all_maps_every_exposed_port_to_a_free_one(f: &Fixture) {
    if !can_run() {
        return;
    }
    let store = Containers::open(&f.data()).unwrap();
    let root = f.dir.path().join("rootfs");
    f.import(&root, "exposing:1", &[("expose", "80")]);
    let mut req = bridged(&store, Some("pa"), "exec httpd -f -p 80 -h /");
    req.publish_all = true;
    run_from(f, &store, "exposing:1", req);
    let ports = store.view("pa").unwrap().status.network.unwrap().ports;
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(ports[0].container_port, 80);
    assert!(ports[0].host_port > 1024);
    assert!(http_get(&format!("127.0.0.1:{}", ports[0].host_port)).starts_with("HTTP/1."));
    // A container range to random ports and a fixed range.
    let (a, b) = (free_port(), free_port());
    let spec = if a + 1 == b {
        format!("{a}-{b}:81-82")
    } else {
        "81-82".to_owned()
    };
    let mut req = bridged(&store, Some("rg"), "sleep 30");
    req.publish = parse_publish(&spec).unwrap();
    f.run(&store, req).unwrap();
    let ports = store.view("rg").unwrap().status.network.unwrap().ports;
    let mut inside: Vec<u16> = ports.iter().map(|p| p.container_port).collect();
    inside.sort();
    assert_eq!(inside, [81, 82], "{ports:?}");
    finish(&store);
}

fn udp_ports_and_restarts_keep_their_publishing(f: &Fixture) {
    if !can_run() {
        return;
    }
    let store = Containers::open(&f.data()).unwrap();
    if with_nginx(f) {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        drop(sock);
        // perl-base is in every Debian: a UDP receiver that prints what arrives.
        let mut req = bridged(&store, Some("u"), "");
        req.opts.args = vec![
            "perl".into(),
            "-MIO::Socket::INET".into(),
            "-e".into(),
            "$|=1; my $s = IO::Socket::INET->new(LocalPort => 9999, Proto => 'udp') or die; \
             while ($s->recv(my $m, 100)) { print $m }"
                .into(),
        ];
        req.publish = parse_publish(&format!("{port}:9999/udp")).unwrap();
        run_from(f, &store, "nginx:light", req);
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            c.send_to(b"datagram\n", ("127.0.0.1", port)).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            if logs(&store, "u").0.contains("datagram") {
                break;
            }
            assert!(Instant::now() < deadline, "no datagram arrived");
        }
    }
    // A restart policy brings the container back with its port and a fresh endpoint.
    let hp = free_port();
    let mut req = bridged(&store, Some("r"), "httpd -p 80 -h / ; sleep 1; exit 3");
    req.restart = RestartPolicy::OnFailure { max: Some(2) };
    req.publish = parse_publish(&format!("{hp}:80")).unwrap();
    f.run(&store, req).unwrap();
    until("a restart", || {
        store.view("r").unwrap().status.restart_count > 0
    });
    assert!(http_get(&format!("127.0.0.1:{hp}")).starts_with("HTTP/1."));
    finish(&store);
}

fn bad_ports_subnets_and_hostnames_are_typed_errors(f: &Fixture) {
    if !can_run() {
        return;
    }
    let store = Containers::open(&f.data()).unwrap();
    for bad in ["0:80", "70000:80", "8080:80/sctp", "a:b", "8000-8001:80-85"] {
        let err = parse_publish(bad).unwrap_err();
        assert!(matches!(err, NetError::Invalid { .. }), "{bad}: {err:?}");
        assert!(err.to_string().contains(bad), "{err}");
    }
    let mut req = detached(None, "true");
    assert!(matches!(
        store.set_network(&mut req, Some("no-such-net")),
        Err(ref e) if matches!(net_error(e), Some(NetError::NotFound(n)) if n == "no-such-net")
    ));
    // Ports with the host's network are dropped with docker's warning; with none, refused.
    let mut host = detached(None, "true");
    store.set_network(&mut host, Some("host")).unwrap();
    assert_eq!(host.opts.network, NetworkMode::Host);
    host.publish = parse_publish("80").unwrap();
    assert_eq!(host.warnings(), [oci_rs_runtime::PORTS_DISCARDED]);
    let mut none = detached(None, "true");
    store.set_network(&mut none, Some("none")).unwrap();
    none.publish = parse_publish("80").unwrap();
    let err = f.run(&store, none).unwrap_err();
    assert!(err.to_string().contains("only on a bridge"), "{err}");
    let nets = store.networks();
    let n = format!("ovl{}", std::process::id());
    let subnet = |s: &str| Some(oci_rs_runtime::parse_subnet(s).unwrap());
    let mut made = MadeNetworks(Vec::new());
    made.create(&nets, &n, Some("10.231.0.0/16"));
    assert!(matches!(
        nets.create("x", subnet("10.231.5.0/24")),
        Err(NetError::Overlap { .. })
    ));
    assert!(oci_rs_runtime::parse_subnet("10.231.5.1/24")
        .unwrap_err()
        .to_string()
        .contains("host bits"));
    assert!(matches!(nets.create(&n, None), Err(NetError::Exists(_))));
    for (s, why) in [
        ("127.0.0.0/8", "loopback"),
        ("127.77.0.0/16", "loopback"),
        ("224.0.0.0/8", "multicast"),
        ("239.5.0.0/16", "multicast"),
    ] {
        let err = match oci_rs_runtime::parse_subnet(s) {
            Err(e) => e,
            Ok(sn) => nets.create("x", Some(sn)).unwrap_err(),
        };
        assert!(matches!(err, NetError::Invalid { .. }), "{s}: {err:?}");
        assert!(err.to_string().contains(why), "{s}: {err}");
    }
    // A hostname is written into the /etc/hosts of every container on the network: a newline
    // or a blank in it would forge lines or aliases there.
    let mut victim = detached(Some("victim"), "exec sleep 60");
    store.set_network(&mut victim, Some(&n)).unwrap();
    f.run(&store, victim).unwrap();
    for bad in [
        "x\n10.9.9.9 victim.example",
        "x victim.example",
        "-x",
        "a_b",
    ] {
        let mut req = detached(None, "exec sleep 60");
        store.set_network(&mut req, Some(&n)).unwrap();
        req.opts.hostname = Some(bad.into());
        let err = f.run(&store, req).unwrap_err();
        assert!(
            err.to_string().contains("not a valid host name"),
            "{bad:?}: {err}"
        );
    }
    assert_eq!(
        exec(&store, "victim", "grep -q victim.example /etc/hosts"),
        1
    );
    store.remove("victim", true).unwrap();
    nets.remove(&n).unwrap();
    finish(&store);
}

fn containers_on_one_network_reach_each_other_by_name_and_not_across_networks(f: &Fixture) {
    if !can_run() {
        return;
    }
    let store = Containers::open(&f.data()).unwrap();
    let nets = store.networks();
    let (n1, n2) = (
        format!("front{}", std::process::id()),
        format!("back{}", std::process::id()),
    );
    let mut made = MadeNetworks(Vec::new());
    for n in [&n1, &n2] {
        made.create(&nets, n, None);
    }
    let listed: Vec<String> = nets.list().unwrap().into_iter().map(|n| n.name).collect();
    assert!(
        listed.contains(&n1) && listed.iter().any(|n| n == "bridge"),
        "{listed:?}"
    );
    for (name, net) in [("a1", &n1), ("a2", &n1), ("b1", &n2)] {
        let mut req = detached(Some(name), "exec sleep 60");
        store.set_network(&mut req, Some(net)).unwrap();
        f.run(&store, req).unwrap();
    }
    // A name that is not a host name still runs, and is reachable by its id and its name
    // (docker's DNS answers for `odd_name` too).
    let mut req = detached(Some("odd_name"), "exec sleep 60");
    store.set_network(&mut req, Some(&n1)).unwrap();
    let odd = f.run(&store, req).unwrap();
    let ping = |from: &str, to: &str| {
        exec(
            &store,
            from,
            &format!("ping -c 1 -W 2 {to} >/dev/null 2>&1"),
        ) == 0
    };
    assert!(ping("a1", "a2"), "by name on one network");
    assert!(
        ping("a2", "a1"),
        "both ways: a1 learnt of a2 when a2 joined"
    );
    assert!(ping("a1", &odd[..12]), "by short id");
    assert!(ping("a1", "odd_name"), "by a name with '_'");
    let b1 = ip_of(&store, "b1");
    assert!(!ping("a1", &b1), "no route between networks");
    assert!(!ping("a1", "b1"), "and no name");
    // inspect lists the containers.
    let doc = nets.inspect(&n1).unwrap();
    assert_eq!(doc["Containers"].as_object().unwrap().len(), 3, "{doc}");
    // In use: refused.
    assert!(matches!(nets.remove(&n1), Err(NetError::InUse { .. })));
    // connect gives a1 a second interface on n2, where b1 is, and an alias there.
    store.connect(&n2, "a1", &["api".into()]).unwrap();
    assert!(ping("a1", "b1"), "after connect");
    assert!(ping("b1", "api"), "by its alias on the second network");
    assert!(!ping("a2", "api"), "the alias is the second network's only");
    // Aliases are for user-defined networks (docker's rule), as a typed error.
    let mut req = detached(Some("aliased"), "exec sleep 60");
    store.set_network(&mut req, None).unwrap();
    req.aliases.insert("bridge".into(), vec!["x".into()]);
    let err = f.run(&store, req).unwrap_err();
    assert!(matches!(err, EngineError::Network { .. }), "{err:?}");
    assert!(
        ping("a1", "a2"),
        "and still the first network's names: one file holds both"
    );
    assert_eq!(exec(&store, "a1", "ip -o addr | grep -q eth1"), 0);
    store.disconnect(&n2, "a1").unwrap();
    assert!(!ping("a1", &b1), "after disconnect");
    // Addresses come back when the containers go.
    finish(&store);
    nets.remove(&n1).unwrap();
    nets.remove(&n2).unwrap();
    let listed: Vec<String> = nets.list().unwrap().into_iter().map(|n| n.name).collect();
    assert!(!listed.contains(&n1), "{listed:?}");
}

fn egress_reaches_a_server_in_a_namespace_standing_for_the_internet(f: &Fixture) {
    if !can_run() {
        return;
    }
    let store = Containers::open(&f.data()).unwrap();
    let inet = TestNs::new("in", "203.0.113");
    let www = f.dir.path().join("www");
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
    let req = bridged(
        &store,
        None,
        "for i in 1 2 3 4 5; do printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc 203.0.113.2 8000 && exit 0; sleep 0.2; done; exit 1",
    );
    let (code, out, _) = f.run_to_end(&store, "busybox:test", req).unwrap();
    let _ = server.kill();
    let mut log = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let _ = server.wait();
    assert_eq!(code, 0);
    assert!(out.contains("from the internet"), "{out}");
    assert!(
        log.contains("203.0.113.1"),
        "the server sees the host's address (masquerade), not the container's: {log}"
    );
    finish(&store);
}

fn addresses_are_unique_under_concurrent_runs_and_released_after_a_killed_monitor(f: &Fixture) {
    if !can_run() {
        return;
    }
    std::thread::scope(|s| {
        for i in 0..6 {
            s.spawn(move || {
                let store = Containers::open(&f.data()).unwrap();
                let req = bridged(&store, Some(&format!("c{i}")), "exec sleep 60");
                f.run(&store, req).unwrap();
            });
        }
    });
    let store = Containers::open(&f.data()).unwrap();
    let ips: std::collections::BTreeSet<String> =
        (0..6).map(|i| ip_of(&store, &format!("c{i}"))).collect();
    assert_eq!(ips.len(), 6, "six distinct addresses: {ips:?}");
    // A released address is not handed out again at once (stale ARP and conntrack entries).
    let old = ip_of(&store, "c0");
    store.remove("c0", true).unwrap();
    f.run(&store, bridged(&store, Some("c6"), "exec sleep 60"))
        .unwrap();
    assert_ne!(ip_of(&store, "c6"), old);
    // The monitor killed with -9, then the container: the next network change releases
    // the address, the veth and the rules.
    let port = free_port();
    let mut req = bridged(&store, Some("k"), "exec sleep 60");
    req.publish = parse_publish(&format!("{port}:80")).unwrap();
    let id = f.run(&store, req).unwrap();
    let ip = ip_of(&store, "k");
    let status = store.view("k").unwrap().status;
    sh_ok(&format!(
        "kill -9 {} && kill -9 {}",
        status.monitor_pid, status.pid
    ));
    std::thread::sleep(Duration::from_millis(300));
    let (code, _, _) = f
        .run_to_end(&store, "busybox:test", bridged(&store, None, "true"))
        .unwrap();
    assert_eq!(code, 0);
    assert_no_trace(&id, &ip);
    assert!(!sh_ok("nft list ruleset").contains(&format!("dport {port} ")));
    finish(&store);
}

fn a_container_cannot_touch_the_host_network(f: &Fixture) {
    if !can_run() {
        return;
    }
    let store = Containers::open(&f.data()).unwrap();
    let req = bridged(
        &store,
        None,
        "ip -o link; ip link set eth0 down && echo changed; ip addr add 10.89.0.200/24 dev eth0 && echo added; true",
    );
    let (_, out, _) = f.run_to_end(&store, "busybox:test", req).unwrap();
    assert!(
        !out.contains("oci0") && !out.contains("changed") && !out.contains("added"),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.contains(": ")).count(),
        2,
        "lo and eth0 only: {out}"
    );
    // With NET_ADMIN it changes its own namespace only.
    let mut req = bridged(
        &store,
        None,
        "ip link set oci0 down 2>&1; ip link set eth0 down && echo down",
    );
    req.opts.cap_add = vec!["NET_ADMIN".into()];
    let (_, out, _) = f.run_to_end(&store, "busybox:test", req).unwrap();
    assert!(out.contains("down"), "its own eth0, it may: {out}");
    // The bridge is not in its namespace at all, and stays up on the host.
    assert!(out.contains("No such device"), "{out}");
    let br = sh_ok("ip -o link show oci0");
    assert!(br.contains(",UP"), "{br}");
    finish(&store);
}

/// Sends one UDP datagram from inside the network namespace of process `pid` as a raw
/// Ethernet frame on its eth0, to the MAC of the gateway `gw` with IP destination `dst`: what
/// a container with docker's default CAP_NET_RAW can do. Python's AF_PACKET socket crafts it.
fn send_crafted_udp(pid: i32, gw: &str, dst: &str, port: u16, payload: &str) {
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
        .args([
            "-t",
            &pid.to_string(),
            "-n",
            "python3",
            "-c",
            SCRIPT,
            gw,
            dst,
        ])
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
fn a_container_cannot_reach_the_hosts_loopback_services(f: &Fixture) {
    if !can_run() {
        return;
    }
    if Command::new("python3").arg("-V").output().is_err() {
        eprintln!("skipping: python3 (which crafts the raw frame) is missing");
        return;
    }
    let store = Containers::open(&f.data()).unwrap();
    let nets = store.networks();
    let loopback = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let control = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    control
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    loopback.set_nonblocking(true).unwrap();
    let mut made = MadeNetworks(Vec::new());
    for net in [None, Some("ocie-lo")] {
        if let Some(n) = net {
            made.create(&nets, n, None);
        }
        let mut req = detached(None, "exec sleep 60");
        store.set_network(&mut req, net).unwrap();
        let id = f.run(&store, req).unwrap();
        let status = store.view(&id).unwrap().status;
        let gw = status.network.unwrap().endpoints[0].gateway.to_string();
        let lo_port = loopback.local_addr().unwrap().port();
        send_crafted_udp(status.pid, &gw, "127.0.0.1", lo_port, "attack");
        let ctl_port = control.local_addr().unwrap().port();
        send_crafted_udp(status.pid, &gw, &gw, ctl_port, "control");
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
        store.remove(&id, true).unwrap();
    }
    nets.remove("ocie-lo").unwrap();
    finish(&store);
}

/// The host's bridges and `ip oci` table follow one network store: a program with a store of
/// its own (an embedder that opened another directory) may not rewrite them while the host's
/// store has running containers. Before, its attach rewrote the table from its own records
/// and the published port of the container of the host's store lost its DNAT rule.
fn a_second_network_store_cannot_erase_the_hosts_rules(f: &Fixture) {
    if !can_run() {
        return;
    }
    let store = Containers::open(&f.data()).unwrap();
    let port = free_port();
    let mut req = bridged(&store, None, "exec sleep 60");
    req.publish = parse_publish(&format!("{port}:80")).unwrap();
    let id = f.run(&store, req).unwrap();
    let short = &id[..12];
    assert!(sh_ok("nft list table ip oci").contains(short));
    // Another store attaches a process of its own (a container's worth: a new netns).
    let other = Networks::open(&f.dir.path().join("other-networks"));
    let mut sleeper = Command::new("unshare")
        .args(["-n", "sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let req = oci_rs_runtime::NetworkRequest {
        container: "0123456789abcdef".repeat(4),
        name: "intruder".into(),
        hostname: "intruder".into(),
        networks: vec!["bridge".into()],
        ports: parse_publish("80").unwrap(),
        hosts_file: None,
        ..Default::default()
    };
    let refused = other.attach(&req, sleeper.id() as i32);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(
        matches!(refused, Err(NetError::OtherStore { .. })),
        "{:?}",
        refused.map(|_| ())
    );
    assert!(
        sh_ok("nft list table ip oci").contains(short),
        "the first container's rule is gone"
    );
    store.remove(&id, true).unwrap();
    finish(&store);
}

/// `--ip` and compose's `ipv4_address`: the address asked for on a user-defined network,
/// kept at a restart and through `connect`; one in use, outside the subnet, the gateway or on
/// the default bridge is refused with a clear error and leaves the others running.
fn static_addresses_are_given_checked_and_kept_across_restarts(f: &Fixture) {
    if !can_run() {
        return;
    }
    let store = Containers::open(&f.data()).unwrap();
    let nets = store.networks();
    let (n, other) = (
        format!("fixed{}", std::process::id()),
        format!("fixed2{}", std::process::id()),
    );
    let mut made = MadeNetworks(Vec::new());
    made.create(&nets, &n, Some("10.232.7.0/24"));
    made.create(&nets, &other, Some("10.232.8.0/24"));
    let asking = |name: &str, ip: &str| {
        let mut req = detached(Some(name), "exec sleep 60");
        store.set_network(&mut req, Some(&n)).unwrap();
        req.addresses.insert(n.clone(), ip.parse().unwrap());
        req
    };
    let mut req = asking("s1", "10.232.7.50");
    req.macs.insert(n.clone(), "02:42:de:ad:be:ef".into());
    f.run(&store, req).unwrap();
    assert_eq!(ip_of(&store, "s1"), "10.232.7.50");
    assert_eq!(
        exec(
            &store,
            "s1",
            "ip link show eth0 | grep -q 02:42:de:ad:be:ef"
        ),
        0,
        "--mac-address"
    );
    let mut bad_mac = asking("badmac", "10.232.7.60");
    bad_mac.macs.insert(n.clone(), "01:00:5e:00:00:01".into());
    let err = f.run(&store, bad_mac).unwrap_err();
    assert!(err.to_string().contains("multicast"), "{err}");
    assert_eq!(
        exec(&store, "s1", "ip -o addr | grep -q 'inet 10.232.7.50/24'"),
        0
    );
    let doc = store.inspect("s1").unwrap();
    let doc = serde_json::to_value(doc).unwrap();
    assert_eq!(
        doc["NetworkSettings"]["Networks"][&n]["IPAMConfig"]["IPv4Address"],
        "10.232.7.50"
    );
    // Another container is given the next free address, never the one asked for.
    let mut req = detached(Some("s2"), "exec sleep 60");
    store.set_network(&mut req, Some(&n)).unwrap();
    f.run(&store, req).unwrap();
    assert_ne!(ip_of(&store, "s2"), "10.232.7.50");
    for (name, ip, why) in [
        ("dup", "10.232.7.50", "in use"),
        ("outside", "10.232.9.5", "not a free host address"),
        ("gateway", "10.232.7.1", "not a free host address"),
        ("broadcast", "10.232.7.255", "not a free host address"),
    ] {
        let err = f.run(&store, asking(name, ip)).unwrap_err();
        assert!(
            err.to_string().contains(why) || format!("{err:?}").contains(why),
            "{name}: {err}"
        );
    }
    let mut req = detached(Some("default"), "exec sleep 60");
    store.set_network(&mut req, None).unwrap();
    req.addresses
        .insert("bridge".into(), "172.17.0.9".parse().unwrap());
    let err = f.run(&store, req).unwrap_err();
    assert!(
        err.to_string().contains("user defined networks only"),
        "{err}"
    );
    assert_eq!(exec(&store, "s1", "true"), 0, "s1 still runs");
    // Kept across a restart, and given on a second network by connect.
    store.stop("s1", std::time::Duration::from_secs(1)).unwrap();
    store.start("s1", false).unwrap();
    assert_eq!(ip_of(&store, "s1"), "10.232.7.50");
    store
        .connect_with(&other, "s1", &[], &["10.232.8.77".parse().unwrap()])
        .unwrap();
    assert_eq!(
        exec(&store, "s1", "ip -o addr | grep -q 'inet 10.232.8.77/24'"),
        0
    );
    finish(&store);
    nets.remove(&n).unwrap();
    nets.remove(&other).unwrap();
}

/// `network create --internal` (compose's `internal: true`): its containers reach each
/// other, and nothing outside, even one that adds its own default route (the firewall drops
/// what would leave the bridge); a container also on a normal network gets its default route
/// there. `--gateway` is the bridge's address.
fn an_internal_network_reaches_its_members_and_nothing_else(f: &Fixture) {
    if !can_run() {
        return;
    }
    let store = Containers::open(&f.data()).unwrap();
    let nets = store.networks();
    let inet = TestNs::new("it", "203.0.114");
    let (int, ext) = (
        format!("int{}", std::process::id()),
        format!("ext{}", std::process::id()),
    );
    let mut made = MadeNetworks(Vec::new());
    let _ = nets.remove(&int);
    let internal = nets
        .create_with(
            &int,
            &oci_rs_runtime::NetworkOptions {
                internal: true,
                ..Default::default()
            },
        )
        .unwrap();
    made.0.push(int.clone());
    made.create(&nets, &ext, None);
    let doc = nets.inspect(&int).unwrap();
    assert_eq!(doc["Internal"], true);
    // A gateway of one's own: the bridge's address.
    let gw_net = format!("gw{}", std::process::id());
    let _ = nets.remove(&gw_net);
    let subnet = oci_rs_runtime::parse_subnet("10.233.9.0/24").unwrap();
    let with_gw = nets.create_with(
        &gw_net,
        &oci_rs_runtime::NetworkOptions {
            subnet: Some(subnet),
            gateway: Some("10.233.9.254".parse().unwrap()),
            ..Default::default()
        },
    );
    let _ = nets.remove(&gw_net);
    assert_eq!(with_gw.unwrap().gateway.to_string(), "10.233.9.254");
    let on = |name: &str, networks: &[&String], script: &str, admin: bool| {
        let mut req = detached(Some(name), script);
        store.set_network(&mut req, Some(networks[0])).unwrap();
        req.networks = networks.iter().map(|n| n.to_string()).collect();
        if admin {
            req.opts.cap_add = vec!["NET_ADMIN".into()];
        }
        f.run(&store, req).unwrap();
    };
    on("i1", &[&int], "exec sleep 60", true);
    on("i2", &[&int], "exec sleep 60", false);
    // A port published from an internal network is not listened on at the host's IPv6
    // addresses (docker publishes nothing of an internal network's).
    let port = free_port();
    let mut req = detached(Some("ipub"), "exec httpd -f -p 80 -h /");
    store.set_network(&mut req, Some(&int)).unwrap();
    req.publish = parse_publish(&format!("{port}:80")).unwrap();
    f.run(&store, req).unwrap();
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        assert!(
            std::net::TcpStream::connect(format!("[::1]:{port}")).is_err(),
            "an internal network's port on IPv6"
        );
    }
    on(
        "both",
        &[&int, &ext],
        "ip route; ip -o addr; exec sleep 60",
        false,
    );
    assert_eq!(
        exec(&store, "i1", "ping -c 1 -W 2 i2 >/dev/null 2>&1"),
        0,
        "members reach each other"
    );
    assert_eq!(
        exec(&store, "i1", "ip route | grep -q default"),
        1,
        "no default route"
    );
    let www = f.dir.path().join("www-int");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "outside\n").unwrap();
    let mut server = inet
        .exec(&format!(
            "exec /bin/busybox httpd -f -p 203.0.114.2:8000 -h {}",
            www.display()
        ))
        .spawn()
        .unwrap();
    // nc, not wget: busybox-static's wget resolves even a literal address through glibc's
    // NSS, which a static binary cannot load (it crashes).
    let reach = "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 203.0.114.2 8000 | grep -q outside";
    let reached = |who: &str| {
        (0..10).any(|_| {
            let ok = exec(&store, who, reach) == 0;
            if !ok {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            ok
        })
    };
    assert!(
        reached("both"),
        "out through the normal network: {:?}",
        logs(&store, "both")
    );
    let gw = nets.get(&ext).unwrap().gateway;
    assert_eq!(
        exec(
            &store,
            "both",
            &format!("ip route | grep -q 'default via {gw} '")
        ),
        0,
        "the default route is the normal network's"
    );
    assert_ne!(exec(&store, "i1", reach), 0, "no way out without a route");
    // Its own route through the bridge: dropped by the firewall, not routed out.
    assert_eq!(
        exec(
            &store,
            "i1",
            &format!("ip route add default via {}", internal.gateway)
        ),
        0
    );
    assert_ne!(
        exec(&store, "i1", reach),
        0,
        "no way out with a route either"
    );
    let _ = server.kill();
    let _ = server.wait();
    finish(&store);
    assert!(matches!(
        nets.create_with(
            "badgw",
            &oci_rs_runtime::NetworkOptions {
                subnet: Some(oci_rs_runtime::parse_subnet("10.233.6.0/24").unwrap()),
                gateway: Some("10.233.7.1".parse().unwrap()),
                ..Default::default()
            },
        ),
        Err(NetError::Invalid { .. })
    ));
}

/// docker's `--ipv6` networks: each container gets an IPv6 address (the one asked for, or
/// the next free one), its name resolves to it, the IPv6 default route goes out through the
/// host (masqueraded) to a namespace standing for the internet, a published port answers on
/// the host's IPv6 address, and a container of an IPv4-only network that routes IPv6 through
/// its own bridge still cannot reach the IPv6 network (the host forwards IPv6 once a
/// network has it: the isolation rules hold for IPv6 too).
fn ipv6_networks_give_addresses_names_egress_ports_and_keep_isolation(f: &Fixture) {
    if !can_run() {
        return;
    }
    if !Path::new("/proc/sys/net/ipv6").exists() {
        eprintln!("skipping: the kernel has no IPv6");
        return;
    }
    let store = Containers::open(&f.data()).unwrap();
    let nets = store.networks();
    let pid = std::process::id();
    let (six, four) = (format!("six{pid}"), format!("four{pid}"));
    let mut made = MadeNetworks(Vec::new());
    let _ = nets.remove(&six);
    let mut opts = oci_rs_runtime::NetworkOptions {
        ipv6: true,
        ..Default::default()
    };
    let sub = format!("fd71:{:x}::/64", pid % 0xffff);
    opts.set_pools(std::slice::from_ref(&sub), &[]).unwrap();
    let net6 = nets.create_with(&six, &opts).unwrap();
    made.0.push(six.clone());
    made.create(&nets, &four, None);
    let v6 = net6.ipv6.unwrap();
    assert_eq!(v6.cidr(), sub);
    let doc = nets.inspect(&six).unwrap();
    assert_eq!(doc["EnableIPv6"], true, "{doc}");
    assert_eq!(doc["IPAM"]["Config"].as_array().unwrap().len(), 2, "{doc}");
    // An IPv6 subnet without IPv6, and one overlapping another network's, are refused.
    let mut plain = oci_rs_runtime::NetworkOptions::default();
    plain.set_pools(&["fd72::/64".into()], &[]).unwrap();
    assert!(nets.create_with(&format!("x{pid}"), &plain).is_err());
    let mut again = oci_rs_runtime::NetworkOptions {
        ipv6: true,
        ..Default::default()
    };
    again.set_pools(std::slice::from_ref(&sub), &[]).unwrap();
    assert!(matches!(
        nets.create_with(&format!("y{pid}"), &again),
        Err(NetError::Overlap { .. })
    ));
    // A namespace standing for the internet, reached over IPv6 through the host.
    let inet = TestNs::new("s6", "203.0.115");
    let outside = format!("fd73:{:x}::", pid % 0xffff);
    sh_ok(&format!(
        "ip addr add {outside}1/64 dev {} nodad && ip -n {} addr add {outside}2/64 dev eth0 nodad \
         && ip -n {} route add default via {outside}1",
        inet.host_if, inet.name, inet.name
    ));
    let www = f.dir.path().join("www6");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "outside6\n").unwrap();
    let mut server = inet
        .exec(&format!(
            "exec /bin/busybox httpd -f -p [{outside}2]:8000 -h {}",
            www.display()
        ))
        .spawn()
        .unwrap();
    let (port, port4) = (free_port(), free_port());
    let on = |name: &str, net: &str, script: &str, edit: &dyn Fn(&mut RunRequest)| {
        let mut req = detached(Some(name), script);
        store.set_network(&mut req, Some(net)).unwrap();
        edit(&mut req);
        f.run(&store, req).unwrap();
    };
    let asked: std::net::Ipv6Addr = format!("fd71:{:x}::77", pid % 0xffff).parse().unwrap();
    on(
        "s6a",
        &six,
        "mkdir -p /tmp/w && echo six > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w",
        &|r| {
            r.publish = parse_publish(&format!("{port}:80")).unwrap();
            // With the host's address given, IPv4 only (docker's rule).
            r.publish
                .extend(parse_publish(&format!("0.0.0.0:{port4}:80")).unwrap());
        },
    );
    on("s6b", &six, "exec sleep 60", &|r| {
        r.addresses6.insert(six.clone(), asked);
    });
    on("s4", &four, "exec sleep 60", &|r| {
        r.opts.cap_add = vec!["NET_ADMIN".into()];
    });
    let doc = serde_json::to_value(store.inspect("s6b").unwrap()).unwrap();
    let ep = &doc["NetworkSettings"]["Networks"][&six];
    assert_eq!(ep["GlobalIPv6Address"], asked.to_string(), "{ep}");
    assert_eq!(ep["IPv6Gateway"], v6.gateway.to_string(), "{ep}");
    assert_eq!(ep["IPAMConfig"]["IPv6Address"], asked.to_string(), "{ep}");
    let a = serde_json::to_value(store.inspect("s6a").unwrap()).unwrap();
    let a6 = a["NetworkSettings"]["GlobalIPv6Address"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        v6.cidr().starts_with(&a6[..a6.len() - 1]),
        "{a6} in {}",
        v6.cidr()
    );
    // By address and by name, over IPv6.
    assert_eq!(
        exec(&store, "s6b", &format!("ping -6 -c 1 -W 2 {a6} >/dev/null")),
        0
    );
    assert_eq!(exec(&store, "s6b", "ping -6 -c 1 -W 2 s6a >/dev/null"), 0);
    assert_eq!(exec(&store, "s6b", "ip -6 route | grep -q default"), 0);
    // Out through the host.
    let reach = format!(
        "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {outside}2 8000 | grep -q outside6"
    );
    let reached = (0..10).any(|_| {
        let ok = exec(&store, "s6b", &reach) == 0;
        if !ok {
            std::thread::sleep(Duration::from_millis(200));
        }
        ok
    });
    assert!(
        reached,
        "out over IPv6: {}",
        sh_ok("nft list table ip6 oci")
    );
    // The published port on the host's IPv6 address, from the other namespace (the server
    // may still be starting).
    let get = format!(
        "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 2 {outside}1 {port}"
    );
    let mut last = None;
    let served = (0..20).any(|_| {
        let got = inet.exec(&get).output().unwrap();
        let ok = String::from_utf8_lossy(&got.stdout).contains("six");
        if !ok {
            last = Some(got);
            std::thread::sleep(Duration::from_millis(200));
        }
        ok
    });
    assert!(served, "the published port over IPv6: {last:?}");
    let six_rules = sh_ok("nft list table ip6 oci");
    assert!(
        six_rules.contains(&format!("dport {port} "))
            && !six_rules.contains(&format!("dport {port4} ")),
        "{port} on IPv6, {port4} (given 0.0.0.0) not: {six_rules}"
    );
    assert!(
        sh_ok("nft list table ip oci").contains(&format!("dport {port4} ")),
        "{port4} on IPv4"
    );
    // A container of the IPv4-only network routes IPv6 through its bridge: not forwarded.
    let bridge = nets.get(&four).unwrap().bridge;
    let ll = sh_ok(&format!("ip -6 -o addr show dev {bridge} scope link"));
    let ll = ll
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_default()
        .to_owned();
    if ll.is_empty() {
        eprintln!("skipping the isolation part: {bridge} has no link-local IPv6 address");
    } else {
        // A global source address of its own, and the host's route back to it, so that
        // only the isolation rules stand between the two.
        let src = format!("fd74:{:x}::5", pid % 0xffff);
        let routed = format!(
            "ip -6 addr add {src}/64 dev eth0 && ip -6 route add default via {ll} dev eth0 \
             && n=0; while ip -6 addr show dev eth0 | grep -q tentative && test $n -lt 50; \
             do sleep 0.1; n=$((n+1)); done"
        );
        assert_eq!(exec(&store, "s4", &routed), 0);
        sh_ok(&format!("ip -6 route add {src}/128 dev {bridge}"));
        let reached = exec(
            &store,
            "s4",
            &format!("ping -6 -c 1 -W 2 {asked} >/dev/null 2>&1"),
        );
        // Nor anything outside: an IPv4-only network routes no IPv6 at all.
        let out = exec(
            &store,
            "s4",
            &format!(
                "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {outside}2 8000 | grep -q outside6"
            ),
        );
        sh(&format!("ip -6 route del {src}/128 dev {bridge}"));
        assert_ne!(reached, 0, "an IPv4-only network reached the IPv6 one");
        assert_ne!(out, 0, "an IPv4-only network routed IPv6 out of the host");
    }
    let _ = server.kill();
    let _ = server.wait();
    finish(&store);
    let rules = sh_ok("nft list ruleset");
    assert!(!rules.contains(&a6), "{rules}");
}

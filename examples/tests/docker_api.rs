//! `oci system service`: docker's own CLI (the static docker 28 this machine kind has on
//! PATH, used as a client only: no dockerd) and the Python Docker SDK driving containers and
//! images through the Engine API, and hostile requests on its socket.

#![allow(clippy::unwrap_used)]

mod common;

use common::Cli;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OCI: &str = env!("CARGO_BIN_EXE_oci");

/// The docker CLIs here: the static docker 28 this machine kind has on PATH and Debian's
/// docker.io 20.10 (API 1.41), which scripts/test.sh installs; none says why the caller skips.
fn docker_clis() -> Vec<PathBuf> {
    let found: Vec<PathBuf> = ["/usr/local/bin/docker", "/usr/bin/docker"]
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect();
    if found.is_empty() {
        eprintln!("skipping: no docker CLI (/usr/local/bin/docker, or Debian's docker.io)");
    }
    found
}

/// `oci system service` on a socket in a temporary directory, over its own data directory
/// holding a busybox image; stopped when dropped.
struct Service {
    child: Child,
    dir: tempfile::TempDir,
    cli: Cli,
    docker: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        // Containers first: their monitors outlive the service.
        let _ = Command::new(OCI)
            .arg("--data-dir")
            .arg(&self.cli.data)
            .args(["rm", "-f"])
            .args(self.cli.ok(&["ps", "-aq"]).split_whitespace())
            .output();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A tmpfs of its own (start_with), lazily: a monitor may still hold it.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.cli.data)
            .stderr(Stdio::null())
            .status();
    }
}

impl Service {
    fn start(docker: PathBuf) -> Self {
        Self::start_with(docker, None)
    }

    /// With its data directory on a tmpfs of `tmpfs_size` (`1200m`) when given: a small
    /// disk of its own.
    fn start_with(docker: PathBuf, tmpfs_size: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cli = Cli {
            oci: OCI,
            data: dir.path().join("data"),
        };
        if let Some(size) = tmpfs_size {
            std::fs::create_dir_all(&cli.data).unwrap();
            let ok = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(&cli.data)
                .status()
                .unwrap()
                .success();
            assert!(ok, "mounting a tmpfs");
        }
        let tar = common::busybox_rootfs_tar(
            dir.path(),
            &[
                "sh", "echo", "cat", "sleep", "ls", "true", "id", "env", "wget", "httpd",
            ],
        );
        cli.ok(&[
            "import",
            tar.to_str().unwrap(),
            "busybox:latest",
            "--change",
            r#"CMD ["sh"]"#,
        ]);
        let sock = dir.path().join("api.sock");
        let child = Command::new(OCI)
            .arg("--data-dir")
            .arg(&cli.data)
            .args(["system", "service", "--time", "0"])
            .arg(format!("unix://{}", sock.display()))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        common::wait_for("oci system service", 20, || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
        Self {
            child,
            dir,
            cli,
            docker,
        }
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("api.sock")
    }

    fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.docker);
        c.env("DOCKER_HOST", format!("unix://{}", self.sock().display()))
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .args(args);
        c
    }

    /// `docker ARGS`, with `stdin`; (exit code, stdout, stderr).
    fn docker_in(&self, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
        let mut c = self.docker_cmd(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin).unwrap();
        drop(input);
        let o = child.wait_with_output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn docker(&self, args: &[&str]) -> (i32, String, String) {
        self.docker_in(args, b"")
    }

    /// `docker ARGS` must succeed: its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.docker(args);
        assert_eq!(code, 0, "docker {args:?}: {out}{err}");
        out
    }

    /// `docker-compose -p PROJECT ARGS` in `dir` must succeed: its stdout.
    fn compose(&self, dir: &std::path::Path, project: &str, args: &[&str]) -> String {
        let o = Command::new("/usr/bin/docker-compose")
            .current_dir(dir)
            .env("DOCKER_HOST", format!("unix://{}", self.sock().display()))
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .args(["-p", project])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        common::succeeded(&format!("docker-compose {args:?}"), o)
    }

    /// `python3 -c SCRIPT unix://SOCKET`, with `DOCKER_HOST` naming the socket too and `env`
    /// added, within `secs` seconds; it must succeed: its stdout.
    fn python(&self, script: &str, secs: u64, env: &[(&str, &str)]) -> String {
        let sock = format!("unix://{}", self.sock().display());
        let o = Command::new("timeout")
            .arg(secs.to_string())
            .args(["python3", "-W", "ignore", "-c", script, &sock])
            .env("DOCKER_HOST", &sock)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        common::succeeded("python3", o)
    }

    /// One raw HTTP/1.1 request on the socket (the connection closed after it): the
    /// response's status line, headers and body.
    /// The service's resident memory.
    fn rss_kb(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
    }

    fn raw(&self, request: &[u8]) -> String {
        let mut s = std::os::unix::net::UnixStream::connect(self.sock()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // A server that refuses early may close before all of it is written.
        let _ = s.write_all(request);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Whether Python module `module` is here (says why the caller skips when not).
fn python_has(module: &str) -> bool {
    let probe = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output();
    let ok = probe.is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping: the Python module {module} is missing (pip install {module})");
    }
    ok
}

fn service() -> Option<Service> {
    if !common::root_with_busybox() {
        return None;
    }
    Some(Service::start(docker_clis().into_iter().next()?))
}

/// docker's CLI runs, inspects, stops and removes containers through the API as it does
/// against dockerd: output on the right streams, exit codes, states and names.
#[test]
fn the_docker_cli_drives_containers_through_the_engine_api() {
    if !common::root_with_busybox() {
        return;
    }
    for cli in docker_clis() {
        drive_containers(&Service::start(cli));
    }
}

fn drive_containers(s: &Service) {
    let v = s.ok(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Server.Os}}",
    ]);
    assert_eq!(v.trim(), "1.47 linux");
    assert!(s.ok(&["images"]).contains("busybox"));

    // Attached run: stdout and stderr apart, the exit code, --rm.
    let (code, out, err) = s.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo to-out; echo to-err >&2; exit 3",
    ]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (3, "to-out\n", "to-err\n")
    );
    assert_eq!(s.ok(&["ps", "-aq"]), "", "--rm left the container");
    // Input through the hijacked connection.
    let (code, out, _) = s.docker_in(&["run", "--rm", "-i", "busybox", "cat"], b"piped in\n");
    assert_eq!((code, out.as_str()), (0, "piped in\n"));

    // Detached, then the verbs on it.
    let id = s.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--label",
        "tier=front",
        "-e",
        "GREETING=hi",
        "busybox",
        "sh",
        "-c",
        "echo started $GREETING; exec sleep 300",
    ]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let ps = s.ok(&[
        "ps",
        "--format",
        "{{.Names}}|{{.Status}}|{{.Label \"tier\"}}",
    ]);
    assert!(ps.starts_with("web|Up "), "{ps}");
    assert!(ps.trim_end().ends_with("|front"), "{ps}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.ok(&["logs", "web"]).contains("started hi") {
        assert!(Instant::now() < deadline, "no log line");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        s.ok(&["inspect", "-f", "{{.State.Status}} {{.Name}}", "web"])
            .trim(),
        "running /web"
    );
    assert!(s.ok(&["top", "web"]).contains("sleep 300"));
    // With ps options (sent as `ps_args`): the host's ps, this container's rows only.
    let top = s.ok(&["top", "web", "-o", "pid,args"]);
    let lines: Vec<&str> = top.lines().collect();
    assert_eq!(
        lines
            .first()
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["PID", "COMMAND"]),
        "{top}"
    );
    assert!(lines[1..].iter().all(|l| !l.contains("oci")), "{top}");
    assert!(lines[1..].iter().any(|l| l.ends_with("sleep 300")), "{top}");
    // exec: output, exit code, stdin.
    let (code, out, err) = s.docker(&[
        "exec",
        "web",
        "sh",
        "-c",
        "echo $GREETING; echo e >&2; exit 4",
    ]);
    assert_eq!((code, out.as_str(), err.as_str()), (4, "hi\n", "e\n"));
    let (code, out, _) = s.docker_in(&["exec", "-i", "web", "cat"], b"to exec\n");
    assert_eq!((code, out.as_str()), (0, "to exec\n"));
    s.ok(&["pause", "web"]);
    assert_eq!(
        s.ok(&["inspect", "-f", "{{.State.Status}}", "web"]).trim(),
        "paused"
    );
    s.ok(&["unpause", "web"]);
    s.ok(&["rename", "web", "front"]);
    s.ok(&["stop", "-t", "1", "front"]);
    let ps = s.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("front Exited (137)"), "{ps}");
    s.ok(&["start", "front"]);
    assert!(s.ok(&["ps", "--format", "{{.Names}}"]).contains("front"));
    // docker's answers for what is missing, and what is in the way.
    let (code, _, err) = s.docker(&["inspect", "nothing-here"]);
    assert_eq!(code, 1);
    assert!(err.contains("No such object: nothing-here"), "{err}");
    let (code, _, err) = s.docker(&["rm", "front"]);
    assert_ne!(code, 0);
    assert!(err.contains("container is running"), "{err}");
    s.ok(&["rm", "-f", "front"]);
    assert_eq!(s.ok(&["ps", "-aq"]), "");
    // The store is the one `oci` sees.
    s.ok(&["create", "--name", "made", "busybox", "true"]);
    assert!(s.cli.ok(&["ps", "-a"]).contains("made"));
    let (code, out, _) = s.docker(&["start", "-a", "made"]);
    assert_eq!((code, out.as_str()), (0, ""));
    assert!(s.cli.ok(&["ps", "-a"]).contains("Exited (0)"));
}

/// Pulls through the API from a registry (ours), with docker's progress stream, then run,
/// tag and rmi.
#[test]
fn the_docker_cli_pulls_tags_and_removes_images_through_the_engine_api() {
    let Some(s) = service() else { return };
    let storage = s.dir.path().join("registry");
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let _registry = Stopped(
        Command::new(OCI)
            .args(["registry", "serve", "--addr", &addr, "--storage"])
            .arg(&storage)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_for("oci registry serve", 20, || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    let remote = format!("{addr}/tools/busybox:1");
    s.cli.ok(&["tag", "busybox", &remote]);
    s.cli.ok(&["push", &remote]);
    s.cli.ok(&["rmi", &remote]);
    let out = s.ok(&["pull", &remote]);
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    let (code, out, _) = s.docker(&["run", "--rm", &remote, "echo", "pulled"]);
    assert_eq!((code, out.as_str()), (0, "pulled\n"));
    s.ok(&["tag", &remote, "mine:2"]);
    let images = s.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.contains("mine:2"), "{images}");
    let out = s.ok(&["rmi", "mine:2"]);
    assert!(out.contains("Untagged: mine:2"), "{out}");
    let (code, _, err) = s.docker(&["rmi", "nothing:here"]);
    assert_ne!(code, 0);
    assert!(err.contains("No such image: nothing:here"), "{err}");
}

/// A child process killed when dropped (however the test ends).
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Certificates made by `openssl` in `dir`: a CA, a server certificate for 127.0.0.1, a
/// client certificate the CA signed (cert.pem and key.pem, the names `DOCKER_CERT_PATH`
/// reads) and one a second CA signed (rogue.pem, rogue.key). `None` without openssl.
fn client_certificates(dir: &std::path::Path) -> Option<()> {
    let openssl = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    let ca = |name: &str| {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ])
    };
    let signed = |leaf: &str, key: &str, by: &str, ext: &str| {
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            key,
            "-out",
            "leaf.csr",
        ]) && openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            &format!("{by}.pem"),
            "-CAkey",
            &format!("{by}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext,
            "-out",
            leaf,
        ])
    };
    let ok = ca("ca")
        && ca("other-ca")
        && signed("server.pem", "server.key", "ca", "server.ext")
        && signed("cert.pem", "key.pem", "ca", "client.ext")
        && signed("rogue.pem", "rogue.key", "other-ca", "client.ext");
    if !ok {
        eprintln!("skipping: openssl could not make test certificates");
        return None;
    }
    Some(())
}

/// TCP: on loopback in the clear, off loopback only with `--tlsverify`, where docker's CLIs
/// with a certificate the CA signed run containers, and a client without one, with one
/// another CA signed, or speaking plain HTTP gets nothing.
#[test]
fn tcp_on_loopback_or_over_tls_with_client_certificates() {
    let Some(s) = service() else { return };
    let certs = s.dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    if client_certificates(&certs).is_none() {
        return;
    }
    let serve = |args: &[String]| {
        Command::new(OCI)
            .arg("--data-dir")
            .arg(&s.cli.data)
            .args(["system", "service", "--time", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let up = |port: u16| {
        common::wait_for("the TCP service", 20, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    };
    // Off loopback without client certificates: refused, with the reason.
    let o = serve(&["tcp://0.0.0.0:1".into()])
        .wait_with_output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("loopback only"),
        "{err}"
    );
    let c = |f: &str| certs.join(f).display().to_string();
    let o = serve(&["--tlsverify".into(), "tcp://0.0.0.0:1".into()])
        .wait_with_output()
        .unwrap();
    assert!(!o.status.success(), "--tlsverify without certificates");

    // Loopback in the clear.
    let plain = common::free_port();
    let _plain = Stopped(serve(&[format!("tcp://127.0.0.1:{plain}")]));
    up(plain);
    // Any address, over TLS with client certificates.
    let port = common::free_port();
    let _tls = Stopped(serve(&[
        "--tlsverify".into(),
        "--tlscacert".into(),
        c("ca.pem"),
        "--tlscert".into(),
        c("server.pem"),
        "--tlskey".into(),
        c("server.key"),
        format!("tcp://0.0.0.0:{port}"),
    ]));
    up(port);
    let tls_host = format!("tcp://127.0.0.1:{port}");
    for docker in docker_clis() {
        let run = |env: &[(&str, String)], args: &[&str]| {
            let o = Command::new(&docker)
                .env_remove("DOCKER_HOST")
                .env("DOCKER_CONFIG", s.dir.path().join("docker-config"))
                .envs(env.iter().map(|(k, v)| (k, v)))
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr),
            )
        };
        let (ok, out) = run(
            &[("DOCKER_HOST", format!("tcp://127.0.0.1:{plain}"))],
            &["run", "--rm", "busybox", "echo", "plain"],
        );
        assert!(ok && out.contains("plain"), "{docker:?} on loopback: {out}");
        let with = [
            ("DOCKER_HOST", tls_host.clone()),
            ("DOCKER_TLS_VERIFY", "1".into()),
            ("DOCKER_CERT_PATH", certs.display().to_string()),
        ];
        let (ok, out) = run(&with, &["run", "--rm", "busybox", "echo", "over tls"]);
        assert!(ok && out.contains("over tls"), "{docker:?} over TLS: {out}");
        // No client certificate, or one from another CA.
        for args in [
            vec!["--tlsverify".to_owned(), "--tlscacert".into(), c("ca.pem")],
            vec![
                "--tlsverify".into(),
                "--tlscacert".into(),
                c("ca.pem"),
                "--tlscert".into(),
                c("rogue.pem"),
                "--tlskey".into(),
                c("rogue.key"),
            ],
        ] {
            let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
            all.extend(["-H", &tls_host, "run", "--rm", "busybox", "echo", "in"]);
            let (ok, out) = run(&[], &all);
            assert!(
                !ok && !out.contains("in\n"),
                "{docker:?} {args:?} got in: {out}"
            );
        }
    }
    // Plain HTTP to the TLS port gets no answer.
    let mut t = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = t.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut got = Vec::new();
    let _ = t.read_to_end(&mut got);
    assert!(
        !String::from_utf8_lossy(&got).contains("OK"),
        "plain HTTP answered: {}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(s.cli.ok(&["ps", "-aq"]), "", "the --rm containers are gone");
}

/// `--time N`: the service ends once no client has been connected for N seconds, and
/// removes its socket.
#[test]
fn an_idle_service_ends_and_removes_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s/api.sock");
    let mut child = Command::new(OCI)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["system", "service", "--time", "1"])
        .arg(format!("unix://{}", sock.display()))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_for("oci system service", 20, || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o660,
        "the socket is root on the host: owner and group only"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "the idle service did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!sock.exists(), "the socket was left behind");
}

/// The Python Docker SDK (what docker-compose and testcontainers-python are built on) runs
/// a container to its end and reads its output.
#[test]
fn the_python_docker_sdk_runs_a_container() {
    let Some(s) = service() else { return };
    if !python_has("docker") {
        return;
    }
    let script = r#"
import docker, sys
c = docker.DockerClient(base_url=sys.argv[1])
assert c.ping()
out = c.containers.run("busybox", ["sh", "-c", "echo from-sdk"], remove=True)
sys.stdout.write(out.decode())
bg = c.containers.run("busybox", ["sh", "-c", "echo ready; sleep 300"], detach=True, name="sdk")
for line in bg.logs(stream=True, follow=True):
    if b"ready" in line:
        break
code, out = bg.exec_run(["echo", "exec-ok"])
sys.stdout.write(out.decode())
bg.remove(force=True)
"#;
    assert_eq!(s.python(script, 60, &[]), "from-sdk\nexec-ok\n");
}

/// Hostile requests: versions outside the range, a body larger than allowed, names that
/// climb out, unknown endpoints: docker's error JSON, nothing made.
#[test]
fn hostile_requests_get_docker_errors_and_change_nothing() {
    let Some(s) = service() else { return };
    let r = s.raw(b"GET /v1.99/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(
        r.contains("is too new. Maximum supported API version is 1.47"),
        "{r}"
    );
    let r = s.raw(b"GET /v1.12/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(r.contains("is too old"), "{r}");
    let big = vec![b' '; 2 << 20];
    let mut req = format!(
        "POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        big.len()
    )
    .into_bytes();
    req.extend_from_slice(&big);
    let r = s.raw(&req);
    assert!(r.starts_with("HTTP/1.1 413"), "{}", &r[..r.len().min(300)]);
    for path in [
        "/containers/..%2F..%2Fetc/json",
        "/containers/%2E%2E/json",
        "/containers/.names/json",
    ] {
        let r = s
            .raw(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
        assert!(r.starts_with("HTTP/1.1 404"), "{path}: {r}");
        assert!(
            r.contains(r#"{"message":"No such container"#),
            "{path}: {r}"
        );
    }
    let r = s.raw(b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{\"Image\":");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = s.raw(b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 31\r\nConnection: close\r\n\r\n{\"Image\":\"missing-image:never\"}");
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    assert!(r.contains("No such image: missing-image:never"), "{r}");
    // A refusal before the body is read (a `docker cp` into no container, half its archive
    // sent): the answer says the connection closes, so the client does not reuse it.
    let r = s.raw(b"PUT /containers/nothing-here/archive?path=/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nContent-Length: 10240\r\n\r\nabc");
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    assert!(
        r.to_ascii_lowercase().contains("\r\nconnection: close\r\n"),
        "{r}"
    );
    // Raw UTF-8 after a `%` in a path (the HTTP parser lets it through) once panicked the
    // connection's task.
    let r = s.raw(
        "GET /containers/%a\u{e9}/json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".as_bytes(),
    );
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    // A stop timeout past any deadline (once an overflow after the stop signal was sent),
    // to a container that ends on SIGTERM.
    let id = s.ok(&[
        "run",
        "-d",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; sleep 300 & wait",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let r = s.raw(
        format!(
            "POST /containers/{}/stop?t=9223372036854775807 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            id.trim()
        )
        .as_bytes(),
    );
    assert!(r.starts_with("HTTP/1.1 204"), "{r}");
    // A command that is not there: docker's 126/127, and the exec can be inspected.
    let id = s.ok(&["run", "-d", "busybox", "sleep", "300"]);
    let (code, _, _) = s.docker(&["exec", id.trim(), "/no/such/command"]);
    assert!(code == 126 || code == 127, "{code}");
    s.ok(&["rm", "-f", id.trim()]);
    let left = s.ok(&["ps", "-aq"]);
    s.ok(&["rm", "-f", "-v", left.trim()]);
    let r = s.raw(b"GET /nothing/here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    assert_eq!(
        s.cli.ok(&["ps", "-aq"]),
        "",
        "a refused request made a container"
    );
}

/// Networks and volumes through the API: two containers on a user network reach each other
/// by name, a named volume survives its container, and what is in use is refused.
#[test]
fn networks_and_volumes_through_the_engine_api() {
    let Some(s) = service() else { return };
    let net = format!("apinet{}", std::process::id());
    s.ok(&["volume", "create", "keep"]);
    assert!(s.ok(&["volume", "ls"]).contains("keep"));
    s.ok(&["network", "create", &net]);
    assert!(s.ok(&["network", "ls"]).contains(&net));
    s.ok(&[
        "run",
        "-d",
        "--name",
        "server",
        "--network",
        &net,
        "--network-alias",
        "db",
        "-v",
        "keep:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f; exec sleep 300",
    ]);
    let (code, out, err) = s.docker(&[
        "run",
        "--rm",
        "--network",
        &net,
        "busybox",
        "sh",
        "-c",
        "ping -c1 -W5 server >/dev/null && ping -c1 -W5 db >/dev/null && echo reached",
    ]);
    assert_eq!((code, out.as_str()), (0, "reached\n"), "{err}");
    // docker's legacy links: the alias is a name in the linking container only.
    let (code, out, err) = s.docker(&[
        "run",
        "--rm",
        "--network",
        &net,
        "--link",
        "server:sql",
        "busybox",
        "sh",
        "-c",
        "ping -c1 -W5 sql >/dev/null && echo linked",
    ]);
    assert_eq!((code, out.as_str()), (0, "linked\n"), "{err}");
    s.ok(&[
        "create",
        "--name",
        "linker",
        "--network",
        &net,
        "--link",
        "/server:/linker/sql",
        "busybox",
        "cat",
        "/etc/hosts",
    ]);
    assert_eq!(
        s.ok(&["inspect", "-f", "{{json .HostConfig.Links}}", "linker"])
            .trim(),
        r#"["/server:/linker/sql"]"#
    );
    let (_, hosts, _) = s.docker(&[
        "run",
        "--rm",
        "--network",
        &net,
        "busybox",
        "cat",
        "/etc/hosts",
    ]);
    assert!(
        !hosts.contains("sql"),
        "an unlinked container knows the alias: {hosts}"
    );
    let (code, _, err) = s.docker(&["run", "--rm", "--link", "nosuch:x", "busybox", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("Could not get container for nosuch"), "{err}");
    let members = s.ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.Name}}{{end}}",
        &net,
    ]);
    assert_eq!(members.trim(), "server");
    let (code, _, err) = s.docker(&["volume", "rm", "keep"]);
    assert_ne!(code, 0);
    assert!(err.contains("in use"), "{err}");
    s.ok(&["rm", "-f", "server"]);
    let (code, _, err) = s.docker(&["start", "linker"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("Cannot link to a non running container: /server AS /linker/sql"),
        "{err}"
    );
    s.ok(&["rm", "linker"]);
    let (code, out, err) = s.docker(&[
        "run",
        "--rm",
        "-v",
        "keep:/data",
        "busybox",
        "cat",
        "/data/f",
    ]);
    assert_eq!((code, out.as_str()), (0, "kept\n"), "{err}");
    s.ok(&["network", "rm", &net]);
    s.ok(&["volume", "rm", "keep"]);
    // An IPv6 network (EnableIPv6 and a second IPAM pool): addresses, names and --ip6.
    let net6 = format!("apinet6{}", std::process::id());
    let sub = format!("fd75:{:x}::/64", std::process::id() % 0xffff);
    let asked = format!("fd75:{:x}::42", std::process::id() % 0xffff);
    s.ok(&["network", "create", "--ipv6", "--subnet", &sub, &net6]);
    let doc = s.ok(&[
        "network",
        "inspect",
        "-f",
        "{{.EnableIPv6}} {{range .IPAM.Config}}{{.Subnet}} {{end}}",
        &net6,
    ]);
    assert!(doc.starts_with("true ") && doc.contains(&sub), "{doc}");
    s.ok(&[
        "run",
        "-d",
        "--name",
        "six",
        "--network",
        &net6,
        "--ip6",
        &asked,
        "busybox",
        "sleep",
        "300",
    ]);
    assert_eq!(
        s.ok(&[
            "inspect",
            "-f",
            &format!("{{{{.NetworkSettings.Networks.{net6}.GlobalIPv6Address}}}}"),
            "six"
        ])
        .trim(),
        asked
    );
    let (code, out, err) = s.docker(&[
        "run",
        "--rm",
        "--network",
        &net6,
        "busybox",
        "sh",
        "-c",
        "ping -6 -c1 -W5 six >/dev/null && echo reached",
    ]);
    assert_eq!((code, out.as_str()), (0, "reached\n"), "{err}");
    s.ok(&["rm", "-f", "six"]);
    s.ok(&["network", "rm", &net6]);
    assert!(!s.ok(&["volume", "ls"]).contains("keep"));
    assert!(!s.ok(&["network", "ls"]).contains(&net));
}

/// `diff`, `export`, `commit`, `save` and `load` through the API, each checked by what comes
/// out the other end.
#[test]
fn filesystems_and_images_move_through_the_engine_api() {
    let Some(s) = service() else { return };
    s.ok(&[
        "run",
        "-d",
        "--name",
        "c1",
        "busybox",
        "sh",
        "-c",
        "echo made-here > /made; rm /bin/ls; touch /ready; exec sleep 300",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.ok(&["diff", "c1"]).contains("A /ready") {
        assert!(Instant::now() < deadline, "the container did not write");
        std::thread::sleep(Duration::from_millis(50));
    }
    let diff = s.ok(&["diff", "c1"]);
    assert!(
        diff.contains("A /made") && diff.contains("D /bin/ls"),
        "{diff}"
    );
    // export: a tar of the whole filesystem, as tar reads it.
    let tar = s.dir.path().join("c1.tar");
    let (code, _, err) = s.docker(&["export", "-o", tar.to_str().unwrap(), "c1"]);
    assert_eq!(code, 0, "{err}");
    let o = Command::new("tar")
        .arg("-xOf")
        .arg(&tar)
        .arg("made")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "made-here\n");
    // import: the exported tree as an image of its own, with a change.
    let id = s.ok(&[
        "import",
        "-c",
        r#"CMD ["cat", "/made"]"#,
        "-m",
        "exported c1",
        tar.to_str().unwrap(),
        "imported:1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(
        s.ok(&["image", "inspect", "-f", "{{.Comment}}", "imported:1"])
            .trim(),
        "exported c1"
    );
    assert_eq!(s.ok(&["run", "--rm", "imported:1"]), "made-here\n");
    let (code, _, err) = s.docker_in(&["import", "-", "junk:1"], b"not a tar at all");
    assert_ne!(code, 0);
    assert!(!err.is_empty());
    assert!(!s.ok(&["images"]).contains("junk"));
    // update: new limits in the running container's cgroup.
    s.ok(&["update", "--memory", "64m", "--pids-limit", "50", "c1"]);
    assert_eq!(
        s.ok(&[
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
            "c1"
        ])
        .trim(),
        "67108864 50"
    );
    // commit: an image that runs with the change applied.
    let id = s.ok(&[
        "commit",
        "-c",
        r#"CMD ["cat", "/made"]"#,
        "c1",
        "committed:1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let (code, out, _) = s.docker(&["run", "--rm", "committed:1"]);
    assert_eq!((code, out.as_str()), (0, "made-here\n"));
    // Without a name: untagged, run by its id, listed as dangling, and pruned.
    let plain = s.ok(&["commit", "c1"]);
    let plain = plain.trim();
    let (code, out, _) = s.docker(&["run", "--rm", plain, "cat", "/made"]);
    assert_eq!((code, out.as_str()), (0, "made-here\n"));
    let dangling = s.ok(&["images", "-q", "--filter", "dangling=true"]);
    assert_eq!(dangling.trim(), &plain["sha256:".len()..][..12]);
    let out = s.ok(&["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {plain}")), "{out}");
    s.ok(&["rm", "-f", "c1"]);
    // save | load: the round trip gives the image back.
    let saved = s.dir.path().join("saved.tar");
    s.ok(&["save", "-o", saved.to_str().unwrap(), "committed:1"]);
    s.ok(&["rmi", "committed:1"]);
    assert!(!s.ok(&["images"]).contains("committed"));
    let out = s.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert!(out.contains("Loaded image: committed:1"), "{out}");
    let (code, out, _) = s.docker(&["run", "--rm", "committed:1"]);
    assert_eq!((code, out.as_str()), (0, "made-here\n"));
    let nowhere = s.dir.path().join("nothing.tar");
    let (code, _, err) = s.docker(&["save", "-o", nowhere.to_str().unwrap(), "nothing:here"]);
    assert_ne!(code, 0);
    assert!(err.contains("No such image: nothing:here"), "{err}");
}

/// `docker CMD` with its stdio on a new pty, `input` typed once it has had time to make the
/// terminal raw: its exit code and everything it wrote.
fn on_pty(s: &Service, args: &[&str], input: &[u8]) -> (i32, String) {
    common::typed_on_pty(s.docker_cmd(args), input, || true, b"")
}

/// [`on_pty`] for a detach: `command` typed, then, once `done` says the shell ran it, the
/// detach `keys` (see [`common::typed_on_pty`]).
fn detach_on_pty(
    s: &Service,
    args: &[&str],
    command: &[u8],
    done: impl Fn() -> bool,
    keys: &[u8],
) -> (i32, String) {
    common::typed_on_pty(s.docker_cmd(args), command, done, keys)
}

#[test]
fn interactive_terminals_through_the_engine_api() {
    let Some(s) = service() else { return };
    let typed = b"echo tty=$(tty) term=$TERM; exit 3\r";
    let (code, out) = on_pty(&s, &["run", "-it", "--rm", "busybox", "sh"], typed);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("tty=/dev/pts/0 term=xterm"), "{out}");
    s.ok(&["run", "-d", "--name", "t", "busybox", "sleep", "300"]);
    let (code, out) = on_pty(&s, &["exec", "-it", "t", "sh"], typed);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("tty=/dev/pts/") && out.contains("term=xterm"),
        "{out}"
    );
    s.ok(&["rm", "-f", "t"]);
    // Without a terminal the detach keys are input like any other, and a client's end of
    // input ends the container's.
    let (code, out, err) = s.docker_in(
        &["run", "--rm", "-i", "busybox", "sh", "-c", "cat; exit 3"],
        b"a\x10\x11b\n",
    );
    assert_eq!((code, out.as_bytes()), (3, &b"a\x10\x11b\n"[..]), "{err}");
    // Ctrl-P Ctrl-Q detaches docker's client and leaves the container running; so do the
    // keys a client names, on `attach`.
    for cli in docker_clis() {
        let s = Service::start(cli);
        let exists = |f: &str| {
            s.docker(&["exec", "dk", "sh", "-c", &format!("test -e {f}")])
                .0
                == 0
        };
        let (code, out) = detach_on_pty(
            &s,
            &["run", "-it", "--name", "dk", "busybox", "sh"],
            b"touch /one\r",
            || exists("/one"),
            b"\x10\x11",
        );
        assert_eq!(code, 0, "{out}");
        let running = s.ok(&["inspect", "-f", "{{.State.Running}}", "dk"]);
        assert_eq!(running.trim(), "true", "{out}");
        let (code, out) = detach_on_pty(
            &s,
            &["attach", "--detach-keys", "ctrl-x", "dk"],
            b"touch /two\r",
            || exists("/two"),
            b"\x18",
        );
        // docker's `attach` reports the detach as an error of its own.
        assert!(
            code == 0 || out.contains("read escape sequence"),
            "{code} {out}"
        );
        // The service reads the keys too, for clients that leave that to it: it ends the
        // attachment.
        let mut c = std::os::unix::net::UnixStream::connect(s.sock()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(b"POST /v1.41/containers/dk/attach?stream=1&stdin=1&stdout=1&detachKeys=ctrl-x,z HTTP/1.1\r\nHost: x\r\nUpgrade: tcp\r\nConnection: Upgrade\r\n\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        c.write_all(b"touch /three\n\x18z").unwrap();
        let mut got = Vec::new();
        let started = Instant::now();
        let _ = c.read_to_end(&mut got);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the attachment did not end"
        );
        assert_eq!(
            s.ok(&["inspect", "-f", "{{.State.Running}}", "dk"]).trim(),
            "true"
        );
        // What was typed before the keys reaches the shell, which runs it in its time.
        common::wait_for("the typed commands", 20, || {
            s.docker(&[
                "exec",
                "dk",
                "sh",
                "-c",
                "test -f /one && test -f /two && test -f /three",
            ])
            .0 == 0
        });
    }
}

/// `system df` and the prunes through the API.
#[test]
fn disk_use_and_prunes_through_the_engine_api() {
    let Some(s) = service() else { return };
    s.ok(&["run", "--name", "ended", "busybox", "true"]);
    s.ok(&["run", "-d", "--name", "running", "busybox", "sleep", "300"]);
    s.ok(&["volume", "create", "unused"]);
    let df = s.ok(&["system", "df"]);
    assert!(
        df.contains("Images") && df.contains("Local Volumes"),
        "{df}"
    );
    let rows: Vec<&str> = df.lines().filter(|l| l.starts_with("Containers")).collect();
    assert!(
        rows.first()
            .is_some_and(|r| r.split_whitespace().nth(1) == Some("2")),
        "{df}"
    );
    // -v through docker's CLI: the images with their shared bytes and containers, each
    // container's local volumes.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "mounting",
        "-v",
        "dfvol:/data",
        "busybox",
        "sleep",
        "300",
    ]);
    let verbose = s.ok(&["system", "df", "-v"]);
    let image = verbose
        .lines()
        .find(|l| l.starts_with("busybox "))
        .unwrap_or_else(|| panic!("{verbose}"));
    assert_eq!(
        image.split_whitespace().last(),
        Some("3"),
        "three containers of busybox: {verbose}"
    );
    let mounting = verbose
        .lines()
        .find(|l| l.ends_with(" mounting"))
        .unwrap_or_else(|| panic!("{verbose}"));
    let cols: Vec<&str> = mounting
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cols[3], "1", "one local volume: {verbose}");
    s.ok(&["rm", "-f", "mounting"]);
    s.ok(&["volume", "rm", "dfvol"]);
    // Filters of a prune: a labelled exited container is kept by `label!`.
    s.ok(&[
        "run", "--name", "kept", "--label", "keep=1", "busybox", "true",
    ]);
    let out = s.ok(&["container", "prune", "-f", "--filter", "label!=keep"]);
    let names = s.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["kept", "running"], "{out}");
    s.ok(&["rm", "kept"]);
    // An anonymous volume left by a removed container, and labelled named ones: `ls`
    // filters them by label, and a prune takes the anonymous one only unless `-a`, as
    // docker's since API 1.42.
    s.ok(&["run", "--name", "anon", "-v", "/data", "busybox", "true"]);
    s.ok(&["rm", "anon"]);
    s.ok(&["volume", "create", "--label", "team=a", "labelled"]);
    let ls = s.ok(&["volume", "ls", "-q", "--filter", "label=team=a"]);
    assert_eq!(ls.trim(), "labelled");
    let before: Vec<String> = s
        .ok(&["volume", "ls", "-q"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(before.len(), 3, "{before:?}");
    let out = s.ok(&["volume", "prune", "-f"]);
    let after = s.ok(&["volume", "ls", "-q"]);
    let mut after: Vec<&str> = after.lines().collect();
    after.sort();
    assert_eq!(after, ["labelled", "unused"], "{out}");
    s.ok(&["volume", "prune", "-a", "-f", "--filter", "label!=team"]);
    assert_eq!(s.ok(&["volume", "ls", "-q"]).trim(), "labelled");
    s.ok(&["volume", "prune", "-a", "-f"]);
    assert_eq!(s.ok(&["volume", "ls", "-q"]).trim(), "");
    s.ok(&["tag", "busybox", "spare:1"]);
    s.ok(&["rm", "-f", "running"]);
    let out = s.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("spare:1"), "{out}");
    assert_eq!(s.ok(&["images", "-q"]), "");
}

/// `stats --no-stream` through the API: a busy container's CPU, its memory limit, its
/// processes, as docker's CLI computes them from the cgroup's counters.
#[test]
fn stats_through_the_engine_api() {
    let Some(s) = service() else { return };
    s.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    let out = s.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}",
        "busy",
    ]);
    let f: Vec<&str> = out.trim().split('|').collect();
    assert_eq!(f.len(), 4, "{out}");
    assert_eq!(f[0], "busy");
    let cpu: f64 = f[1].trim_end_matches('%').parse().unwrap();
    assert!(cpu > 20.0, "a spinning shell uses a CPU: {out}");
    assert!(f[2].ends_with("/ 64MiB"), "{out}");
    assert_eq!(f[3], "1", "{out}");
    s.ok(&["rm", "-f", "busy"]);
    let (code, _, err) = s.docker(&["stats", "--no-stream", "busy"]);
    assert_ne!(code, 0);
    assert!(err.contains("No such container"), "{err}");
}

/// 1,000 concurrent connections are all answered, the service's memory stays bounded, and a
/// client whose body never ends is cut off at the body deadline.
#[test]
fn many_clients_and_a_body_that_never_ends() {
    let Some(s) = service() else { return };
    let sock = s.sock();
    let conns: Vec<std::os::unix::net::UnixStream> = (0..1000)
        .map(|_| std::os::unix::net::UnixStream::connect(&sock).unwrap())
        .collect();
    let handles: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                c.write_all(
                    b"GET /v1.41/containers/json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                )
                .unwrap();
                let mut out = String::new();
                let _ = c.read_to_string(&mut out);
                out.starts_with("HTTP/1.1 200")
            })
        })
        .collect();
    let answered = handles
        .into_iter()
        .filter_map(|h| h.join().ok())
        .filter(|ok| *ok)
        .count();
    assert_eq!(answered, 1000);
    let rss_kb = s.rss_kb();
    assert!(
        rss_kb < 200 * 1024,
        "the service holds {rss_kb} kB after 1,000 clients"
    );
    // A body announced and never sent: 408 at the deadline, not a task held forever.
    let mut c = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    c.write_all(b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"Im")
        .unwrap();
    let started = Instant::now();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(45));
}

/// `docker cp` both ways through the archive endpoints, into a stopped container too; a
/// link in the container that points at `/` (or climbs with `..`) is resolved inside the
/// container's root, so a copy through it lands in the container and never on the host.
#[test]
fn cp_both_ways_and_links_stay_inside_the_container() {
    let Some(s) = service() else { return };
    let host = s.dir.path().join("cp");
    std::fs::create_dir_all(host.join("tree/sub")).unwrap();
    std::fs::write(host.join("tree/sub/f"), "from the host\n").unwrap();
    let marker = format!("oci-cp-escape-{}", std::process::id());
    std::fs::write(host.join(&marker), "must stay in the container\n").unwrap();
    s.ok(&[
        "run", "-d", "--name", "cp1", "busybox", "sh", "-c",
        "mkdir -p /data && echo inside > /data/x && ln -s / /data/root && ln -s ../../../../.. /data/up && touch /ready && exec sleep 300",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.docker(&["exec", "cp1", "sh", "-c", "test -e /ready"]).0 != 0 {
        assert!(Instant::now() < deadline, "the container did not write");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Out of the container: a file, then a directory.
    let out = host.join("x-out");
    s.ok(&["cp", "cp1:/data/x", out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "inside\n");
    // Into it: a file and a tree.
    s.ok(&["cp", host.join("tree").to_str().unwrap(), "cp1:/data/"]);
    let (_, got, _) = s.docker(&["exec", "cp1", "cat", "/data/tree/sub/f"]);
    assert_eq!(got, "from the host\n");
    // Through links that point out: they resolve in the container's root.
    for via in ["cp1:/data/root/", "cp1:/data/up/"] {
        s.ok(&["cp", host.join(&marker).to_str().unwrap(), via]);
        assert!(
            !std::path::Path::new("/").join(&marker).exists(),
            "a copy through {via} reached the host's /"
        );
    }
    let (code, _, _) = s.docker(&["exec", "cp1", "sh", "-c", &format!("test -f /{marker}")]);
    assert_eq!(
        code, 0,
        "the copy through the links is in the container's /"
    );
    // A hostile archive on PUT: an entry that climbs out of the target directory.
    let escape = format!("oci-put-escape-{}", std::process::id());
    let tar = common::tar_with_file(&format!("../../../../../../../../tmp/{escape}"), b"x");
    let mut req = format!(
        "PUT /containers/cp1/archive?path=/data HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        tar.len()
    )
    .into_bytes();
    req.extend_from_slice(&tar);
    let r = s.raw(&req);
    assert!(r.starts_with("HTTP/1.1 "), "{r}");
    assert!(
        !std::path::Path::new("/tmp").join(&escape).exists(),
        "an archive entry reached the host's /tmp: {r}"
    );
    // A path that climbs with `..` stays in the container's root: the host's /etc/hostname
    // is not what comes back.
    s.ok(&["exec", "cp1", "sh", "-c", "echo container-side > /data/y"]);
    let r = s.raw(b"GET /containers/cp1/archive?path=/../../../../../../data/../../data/y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("container-side"), "{r}");
    let host_name = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let r = s.raw(b"GET /containers/cp1/archive?path=/../../../../../../etc/hostname HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(
        host_name.trim().is_empty()
            || !r.contains(host_name.trim())
            || r.starts_with("HTTP/1.1 404"),
        "the host's /etc/hostname came out: {r}"
    );
    // Owners as dockerd makes them: the archive's (the host file's, as docker's CLI writes
    // them), or with -a (copyUIDGID) the container user's.
    std::os::unix::fs::chown(host.join("tree/sub/f"), Some(1234), Some(1234)).unwrap();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "cpu",
        "-u",
        "4321:4321",
        "busybox",
        "sleep",
        "300",
    ]);
    let f = host.join("tree/sub/f");
    s.ok(&["cp", f.to_str().unwrap(), "cpu:/plain"]);
    s.ok(&["cp", "-a", f.to_str().unwrap(), "cpu:/archived"]);
    let (_, owners, err) = s.docker(&[
        "exec",
        "cpu",
        "busybox",
        "stat",
        "-c",
        "%u:%g",
        "/plain",
        "/archived",
    ]);
    assert_eq!(owners, "1234:1234\n4321:4321\n", "{err}");
    s.ok(&["rm", "-f", "cpu"]);
    let (code, _, err) = s.docker(&["cp", "cp1:/no/such/file", host.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("Could not find the file /no/such/file"),
        "{err}"
    );
    // A set-id program of the container's arrives on the host without its set-id bits,
    // and names that look like layer whiteouts are files, not deletions.
    s.ok(&[
        "exec",
        "cp1",
        "sh",
        "-c",
        "echo '#!/bin/sh' > /data/suid && chmod 6755 /data/suid && echo kept > /data/keep",
    ]);
    let suid = host.join("suid");
    s.ok(&["cp", "cp1:/data/suid", suid.to_str().unwrap()]);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&suid).unwrap().permissions());
    assert_eq!(
        mode & 0o7777,
        0o755,
        "set-id bits crossed onto the host: {mode:o}"
    );
    std::fs::create_dir_all(host.join("wh")).unwrap();
    std::fs::write(host.join("wh/.wh.keep"), "a file\n").unwrap();
    s.ok(&[
        "cp",
        host.join("wh/.wh.keep").to_str().unwrap(),
        "cp1:/data/",
    ]);
    let (_, got, _) = s.docker(&["exec", "cp1", "cat", "/data/keep", "/data/.wh.keep"]);
    assert_eq!(got, "kept\na file\n", "a .wh. name deleted a file");
    // A stopped container's files are there too.
    s.ok(&["stop", "-t", "0", "cp1"]);
    let out2 = host.join("x-stopped");
    s.ok(&["cp", "cp1:/data/x", out2.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&out2).unwrap(), "inside\n");
    s.ok(&["rm", "-f", "cp1"]);
}

/// `docker cp` as docker's daemon answers it past the plain cases: `DIR/.` is a directory's
/// contents (into an existing directory and as a new one); a path under a named volume or a
/// bind reads and writes the volume, which a running container sees (not the snapshot under
/// the mount point); a read-only one refuses a copy in; a link's target is given resolved and
/// absolute, so `cp -L` follows it.
#[test]
fn cp_contents_volumes_and_links_as_docker_s_daemon() {
    let Some(s) = service() else { return };
    let host = s.dir.path().join("cp2");
    std::fs::create_dir_all(&host).unwrap();
    s.ok(&[
        "run", "-d", "--name", "cpv", "-v", "cpvol:/data", "-v", "cpro:/ro:ro", "busybox", "sh",
        "-c",
        "mkdir -p /d/sub && echo a > /d/a && echo b > /d/sub/b && echo invol > /data/f && ln -s ../data/f /lnk && touch /ready && exec sleep 300",
    ]);
    common::wait_for("the container's files", 10, || {
        s.docker(&["exec", "cpv", "sh", "-c", "test -e /ready"]).0 == 0
    });
    let listing = |dir: &Path| {
        let mut v: Vec<String> = walk(dir)
            .into_iter()
            .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
            .collect();
        v.sort();
        v
    };
    // DIR/. into an existing directory, and as a new one: the contents, not DIR.
    let into = host.join("into");
    std::fs::create_dir_all(&into).unwrap();
    s.ok(&["cp", "cpv:/d/.", into.to_str().unwrap()]);
    assert_eq!(listing(&into), ["a", "sub", "sub/b"]);
    let fresh = host.join("fresh");
    s.ok(&["cp", "cpv:/d/.", fresh.to_str().unwrap()]);
    assert_eq!(listing(&fresh), ["a", "sub", "sub/b"]);
    // The volume of a running container, both ways.
    let vol = host.join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    s.ok(&["cp", "cpv:/data", vol.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(vol.join("data/f")).unwrap(),
        "invol\n"
    );
    std::fs::write(host.join("put.txt"), "from the host\n").unwrap();
    s.ok(&["cp", host.join("put.txt").to_str().unwrap(), "cpv:/data/"]);
    assert_eq!(
        s.ok(&["exec", "cpv", "cat", "/data/put.txt"]),
        "from the host\n"
    );
    let (code, _, err) = s.docker(&["cp", host.join("put.txt").to_str().unwrap(), "cpv:/ro/"]);
    assert_ne!(code, 0);
    assert!(err.contains("read-only"), "{err}");
    // A relative link into the volume, followed by the client.
    s.ok(&[
        "cp",
        "-L",
        "cpv:/lnk",
        host.join("followed").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(host.join("followed")).unwrap(),
        "invol\n"
    );
    s.ok(&["rm", "-f", "cpv"]);
    s.ok(&["volume", "rm", "cpvol", "cpro"]);
}

/// Every path under `dir` (not following links).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// docker-compose (Debian's 1.29.2, the Python one) brings a two-service project up
/// through the API, the second once the first's health check passes (`depends_on` with
/// `service_healthy`): a published port answers from the host, one service reaches the other by
/// its service name (a network alias compose asks for), a named volume holds the page, and
/// `ps`, `logs`, `exec` and `down -v` do what they do against dockerd.
#[test]
fn docker_compose_brings_a_project_up_and_down() {
    let Some(s) = service() else { return };
    let compose = PathBuf::from("/usr/bin/docker-compose");
    if !compose.exists() {
        eprintln!("skipping: no docker-compose (Debian's docker-compose package)");
        return;
    }
    let port = common::free_port();
    let project = s.dir.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("docker-compose.yml"),
        format!(
            r#"services:
  web:
    image: busybox
    command: ["sh", "-c", "echo served-from-volume > /www/index.html; echo web ready; exec httpd -f -p 8080 -h /www"]
    ports: ["127.0.0.1:{port}:8080"]
    volumes: ["pages:/www"]
    init: true
    healthcheck:
      test: ["CMD", "wget", "-q", "-O/dev/null", "http://127.0.0.1:8080/index.html"]
      interval: 1s
      retries: 30
  client:
    image: busybox
    command: ["sleep", "300"]
    depends_on:
      web:
        condition: service_healthy
    init: true
volumes:
  pages: {{}}
"#
        ),
    )
    .unwrap();
    // The project's network is on the host's network store: a name of this process's own.
    let name = format!("proj{}", std::process::id());
    let run = |args: &[&str]| s.compose(&project, &name, args);
    // The client waits for web's health check (compose polls State.Health).
    run(&["up", "-d"]);
    let ps = run(&["ps"]);
    for (svc, state) in [("web", "Up (healthy)"), ("client", "Up")] {
        let c = format!("{name}_{svc}_1");
        let line = ps.lines().find(|l| l.starts_with(&c));
        assert!(line.is_some_and(|l| l.contains(state)), "{ps}");
    }
    // The published port, from the host (httpd serves index.html at /).
    let page = common::http_get(&format!("127.0.0.1:{port}"));
    assert!(page.contains("served-from-volume"), "{page}");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    // The other service, by its service name, from inside the project's network.
    let fetched = run(&[
        "exec",
        "-T",
        "client",
        "wget",
        "-q",
        "-O-",
        "http://web:8080/index.html",
    ]);
    assert_eq!(fetched, "served-from-volume\n");
    assert!(run(&["logs", "web"]).contains("web ready"));
    // compose finds its containers by label: so does docker's CLI.
    let web = s.ok(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={name}"),
        "--filter",
        "label=com.docker.compose.service=web",
    ]);
    assert_eq!(web.lines().count(), 1, "{web}");
    let (volume, network) = (format!("{name}_pages"), format!("{name}_default"));
    assert!(s.ok(&["volume", "ls", "-q"]).contains(&volume));
    run(&["down", "-v"]);
    assert_eq!(s.ok(&["ps", "-aq"]), "");
    assert!(!s.ok(&["volume", "ls", "-q"]).contains(&volume));
    assert!(!s.ok(&["network", "ls"]).contains(&network));
}

/// `docker events`: what happened, in order, with docker's attributes, through filters; a
/// stream that follows (the Python SDK waits on it for a container's end, as test suites
/// do); a bad filter is docker's 400.
#[test]
fn events_through_the_engine_api() {
    let Some(s) = service() else { return };
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let (code, _, err) = s.docker(&[
        "run", "--name", "ev1", "--label", "team=a", "busybox", "sh", "-c", "exit 3",
    ]);
    assert_eq!(code, 3, "{err}");
    s.ok(&["rm", "ev1"]);
    s.ok(&["network", "create", "evnet"]);
    s.ok(&["network", "rm", "evnet"]);
    // A second ahead: docker follows until then (a later `until` would wait for it).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let until = (now + 1).to_string();
    let since = t0.to_string();
    let lines = s.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "container=ev1",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.team}}",
    ]);
    let got: Vec<&str> = lines.lines().collect();
    assert_eq!(
        got,
        [
            "container create ev1 a",
            // docker's CLI attaches before it starts.
            "container attach ev1 a",
            "container start ev1 a",
            "container die ev1 a",
            "container destroy ev1 a",
        ],
        "{lines}"
    );
    let died = s.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "event=die",
        "--filter",
        "label=team=a",
        "--format",
        "{{.Actor.Attributes.exitCode}}",
    ]);
    assert_eq!(died, "3\n");
    let nets = s.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=network",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    assert_eq!(nets, "create evnet\ndestroy evnet\n");
    let bad = s.raw(b"GET /v1.41/events?filters=%7B%22colour%22%3A%5B%22red%22%5D%7D HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    // Followed: the SDK's stream sees a container start and die as it happens.
    if !python_has("docker") {
        return;
    }
    let script = r#"
import docker, sys, threading
c = docker.DockerClient(base_url=sys.argv[1])
stream = c.events(decode=True, filters={"container": "ev2"})
threading.Timer(0.5, lambda: c.containers.run("busybox", ["true"], name="ev2", remove=True)).start()
seen = []
for e in stream:
    seen.append(e["Action"])
    if e["Action"] == "destroy":
        break
stream.close()
print(" ".join(seen))
"#;
    assert_eq!(s.python(script, 60, &[]), "create start die destroy\n");
}

/// testcontainers (Python, from PyPI) as a test suite uses it: a container started, a log
/// line waited for, its published port reached, a command run in it, and the container
/// gone at the end. (Its reaper container, Ryuk, is an image from Docker Hub: off, as CI
/// without the internet runs it.)
#[test]
fn testcontainers_starts_waits_and_cleans_up() {
    let Some(s) = service() else { return };
    if !python_has("testcontainers") {
        return;
    }
    let script = r#"
import urllib.request
from testcontainers.core.container import DockerContainer
from testcontainers.core.waiting_utils import wait_for_logs
cmd = ["sh", "-c", "echo booting; mkdir /www; echo page > /www/index.html; echo ready to serve; exec httpd -f -p 8080 -h /www"]
with DockerContainer("busybox").with_command(cmd).with_exposed_ports(8080) as c:
    wait_for_logs(c, "ready to serve", timeout=30)
    url = "http://%s:%s/" % (c.get_container_host_ip(), c.get_exposed_port(8080))
    for _ in range(50):
        try:
            body = urllib.request.urlopen(url, timeout=5).read().decode()
            break
        except OSError:
            import time; time.sleep(0.1)
    print(body.strip())
    code, out = c.exec(["echo", "inside"])
    print(code, out.decode().strip())
"#;
    let out = s.python(script, 90, &[("TESTCONTAINERS_RYUK_DISABLED", "true")]);
    assert_eq!(out, "page\n0 inside\n");
    assert_eq!(s.ok(&["ps", "-aq"]), "", "the container is gone");
}

/// `docker build` (the classic builder's `/build`): a context directory with build
/// arguments and labels, `-q`, a context tar on standard input, a failing step's output and
/// exit code, and docker-compose's `build`; a context whose entries climb out is refused and
/// writes nothing outside.
#[test]
fn build_through_the_engine_api() {
    let Some(s) = service() else { return };
    let ctx = s.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), "hello file\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nARG WHO=nobody\nCOPY hello.txt /hello.txt\nRUN echo \"run for $WHO\" && cat /hello.txt > /copied\nCMD [\"cat\", \"/copied\"]\n",
    )
    .unwrap();
    std::fs::write(
        ctx.join("Dockerfile.bad"),
        "FROM busybox\nRUN echo failing-output; exit 4\n",
    )
    .unwrap();
    let build = |args: &[&str], stdin: &[u8]| {
        let mut c = s.docker_cmd(args);
        c.env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let o = child.wait_with_output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let dir = ctx.to_str().unwrap();
    let (code, out, err) = build(
        &[
            "build",
            "-t",
            "built:1",
            "--build-arg",
            "WHO=api",
            "--label",
            "team=a",
            dir,
        ],
        b"",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("run for api"),
        "RUN's output is streamed: {out}"
    );
    assert!(out.contains("Successfully tagged built:1"), "{out}");
    assert_eq!(s.ok(&["run", "--rm", "built:1"]), "hello file\n");
    assert_eq!(
        s.ok(&["inspect", "-f", "{{.Config.Labels.team}}", "built:1"])
            .trim(),
        "a"
    );
    // Without DOCKER_BUILDKIT, and with no buildx plugin: the service's `/_ping` says it
    // builds with the classic builder (`Builder-Version: 1`), which docker's CLI then uses.
    let o = s
        .docker_cmd(&["build", "-t", "classic:1", dir])
        .env_remove("DOCKER_BUILDKIT")
        .env("HOME", s.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = common::succeeded("docker build without DOCKER_BUILDKIT", o);
    assert!(out.contains("Successfully tagged classic:1"), "{out}");
    // -q: the id alone, the one inspect shows.
    let (code, out, err) = build(&["build", "-q", "-t", "quiet:1", dir], b"");
    assert_eq!(code, 0, "{err}");
    let id = s.ok(&["inspect", "-f", "{{.Id}}", "quiet:1"]);
    assert_eq!(out.trim(), id.trim());
    // A failing step: its output and exit code, docker's failure.
    let bad = ctx.join("Dockerfile.bad");
    let (code, out, err) = build(&["build", "-f", bad.to_str().unwrap(), dir], b"");
    assert_ne!(code, 0);
    assert!(out.contains("failing-output"), "{out}");
    assert!(err.contains("exit code: 4"), "{err}");
    // The context as a tar on standard input.
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&ctx)
        .args(["-cf", "-", "Dockerfile", "hello.txt"])
        .output()
        .unwrap()
        .stdout;
    let (code, out, err) = build(&["build", "-t", "fromtar", "-"], &tar);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(s.ok(&["run", "--rm", "fromtar"]), "hello file\n");
    // A context whose entry climbs out of it: refused, nothing written beside the store.
    // (Two one-file archives end to end, the first's end-of-archive blocks cut.)
    let mut evil = common::tar_with_file("Dockerfile", b"FROM busybox\n");
    evil.truncate(evil.len() - 1024);
    evil.extend(common::tar_with_file("../../escaped-build-file", b"x"));
    let (code, _, err) = build(&["build", "-"], &evil);
    assert_ne!(code, 0);
    assert!(err.contains("unsafe path"), "{err}");
    for d in [
        s.dir.path().to_path_buf(),
        s.cli.data.clone(),
        std::env::temp_dir(),
    ] {
        assert!(!d.join("escaped-build-file").exists(), "{}", d.display());
    }
    // docker-compose's build, with its arguments.
    let compose = PathBuf::from("/usr/bin/docker-compose");
    if !compose.exists() {
        eprintln!("skipping the compose part: no docker-compose");
        return;
    }
    std::fs::write(
        s.dir.path().join("docker-compose.yml"),
        format!(
            "version: \"3.7\"\nservices:\n  app:\n    build:\n      context: {dir}\n      args:\n        WHO: compose\n    image: composed:dev\n"
        ),
    )
    .unwrap();
    let out = s.compose(s.dir.path(), "bproj", &["build"]);
    assert!(out.contains("run for compose"), "{out}");
    assert_eq!(s.ok(&["run", "--rm", "composed:dev"]), "hello file\n");
}

/// docker's HostConfig fields for the kernel and the resolver (Sysctls, Ulimits, ShmSize,
/// GroupAdd, ExtraHosts, Dns, DnsSearch, DnsOptions) reach the container; a sysctl of the
/// host's is refused with docker's 400.
#[test]
fn host_config_kernel_and_resolver_fields_through_the_engine_api() {
    let Some(s) = service() else { return };
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(common::KERNEL_AND_RESOLVER_RUN);
    args.push("busybox");
    args.extend_from_slice(common::KERNEL_AND_RESOLVER_SCRIPT);
    common::check_kernel_and_resolver(&s.ok(&args));
    let (code, _, err) = s.docker(&[
        "run",
        "--rm",
        "--sysctl",
        "kernel.hostname=x",
        "busybox",
        "true",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("sysctl"), "{err}");
}

/// Health checks through docker's CLI: `run --health-*` (failing, then passing once what it
/// looks for appears), `ps` with `(healthy)` and its `health=` filter, `inspect`'s
/// State.Health, the `health_status` events, an image's `HEALTHCHECK` from `docker build`,
/// and `--no-healthcheck` over it.
#[test]
fn health_checks_through_the_engine_api() {
    let Some(s) = service() else { return };
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    s.ok(&[
        "run",
        "-d",
        "--name",
        "hc1",
        "--health-cmd",
        "cat /ready",
        "--health-interval",
        "300ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "300",
    ]);
    let health = |name: &str| {
        s.ok(&["inspect", "--format", "{{.State.Health.Status}}", name])
            .trim()
            .to_owned()
    };
    common::wait_for("unhealthy", 20, || health("hc1") == "unhealthy");
    let log = s.ok(&["inspect", "--format", "{{json .State.Health.Log}}", "hc1"]);
    assert!(
        log.contains(r#""ExitCode":1"#) && log.contains("ready"),
        "{log}"
    );
    s.ok(&["exec", "hc1", "sh", "-c", "echo up > /ready"]);
    common::wait_for("healthy", 20, || health("hc1") == "healthy");
    let ps = s.ok(&[
        "ps",
        "--filter",
        "health=healthy",
        "--format",
        "{{.Names}} {{.Status}}",
    ]);
    assert!(
        ps.starts_with("hc1 Up") && ps.trim_end().ends_with("(healthy)"),
        "{ps}"
    );
    assert_eq!(s.ok(&["ps", "-q", "--filter", "health=unhealthy"]), "");
    let until = (t0 + 60).min(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1,
    );
    let events = s.ok(&[
        "events",
        "--since",
        &t0.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "event=health_status",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    assert_eq!(
        events,
        "health_status: unhealthy hc1\nhealth_status: healthy hc1\n"
    );
    // The image's HEALTHCHECK, as docker's classic builder stores it.
    let ctx = s.dir.path().join("hc-context");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nHEALTHCHECK --interval=300ms --timeout=2s CMD [\"true\"]\n",
    )
    .unwrap();
    let o = s
        .docker_cmd(&["build", "-q", "-t", "hcimg", ctx.to_str().unwrap()])
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s.ok(&["run", "-d", "--name", "hc2", "hcimg", "sleep", "300"]);
    common::wait_for("the image's check", 20, || health("hc2") == "healthy");
    let check = s.ok(&["inspect", "--format", "{{json .Config.Healthcheck}}", "hc2"]);
    assert!(check.contains(r#""Interval":300000000"#), "{check}");
    s.ok(&[
        "run",
        "-d",
        "--name",
        "hc3",
        "--no-healthcheck",
        "hcimg",
        "sleep",
        "300",
    ]);
    let none = s.ok(&[
        "inspect",
        "--format",
        "{{if .State.Health}}checked{{else}}none{{end}}",
        "hc3",
    ]);
    assert_eq!(none, "none\n");
    // A check docker's daemon refuses, refused the same way.
    let (code, _, err) = s.docker(&[
        "run",
        "-d",
        "--health-cmd",
        "true",
        "--health-interval",
        "10us",
        "busybox",
        "true",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("interval"), "{err}");
    s.ok(&["rm", "-f", "hc1", "hc2", "hc3"]);
}

/// `--pid`, `--ipc` and `--device` through docker's CLI (HostConfig's PidMode, IpcMode and
/// Devices): another container's processes, the host's namespaces, a host device at a path
/// of the container's choosing, as `inspect` shows them; an IPC namespace docker would share
/// from another container is refused with the reason.
#[test]
fn pid_ipc_and_devices_through_the_engine_api() {
    let Some(s) = service() else { return };
    s.ok(&["run", "-d", "--name", "donor", "busybox", "sleep", "300"]);
    let out = s.ok(&[
        "run",
        "-d",
        "--name",
        "joiner",
        "--pid",
        "container:donor",
        "--ipc",
        "host",
        "--device",
        "/dev/null:/dev/given:rw",
        "busybox",
        "sleep",
        "300",
    ]);
    assert_eq!(out.trim().len(), 64, "{out}");
    // The donor's sleep is pid 1 of the namespace the joiner sees.
    let cmdline = s.ok(&["exec", "joiner", "cat", "/proc/1/cmdline"]);
    assert_eq!(cmdline, "sleep\u{0}300\u{0}");
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    let ipc = s.ok(&["exec", "joiner", "ls", "-l", "/proc/self/ns/ipc"]);
    assert!(
        ipc.trim_end().ends_with(&host_ipc.display().to_string()),
        "{ipc}"
    );
    let dev = s.ok(&[
        "exec",
        "joiner",
        "sh",
        "-c",
        "echo x > /dev/given && ls -l /dev/given",
    ]);
    assert!(
        dev.starts_with('c') && dev.contains("1,") && dev.contains(" 3 "),
        "{dev}"
    );
    let modes = s.ok(&[
        "inspect", "--format",
        "{{.HostConfig.PidMode}} {{.HostConfig.IpcMode}} {{(index .HostConfig.Devices 0).PathInContainer}}",
        "joiner",
    ]);
    assert_eq!(modes, "container:donor host /dev/given\n");
    // docker's rule: only a shareable donor's IPC namespace (and /dev/shm) can be joined.
    let (code, _, err) = s.docker(&["run", "--rm", "--ipc", "container:donor", "busybox", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("non-shareable IPC"), "{err}");
    s.ok(&[
        "run",
        "-d",
        "--name",
        "shm-donor",
        "--ipc",
        "shareable",
        "busybox",
        "sh",
        "-c",
        "echo from-donor > /dev/shm/m; exec sleep 300",
    ]);
    let mut seen = String::new();
    for _ in 0..50 {
        let (_, out, _) = s.docker(&[
            "run",
            "--rm",
            "--ipc",
            "container:shm-donor",
            "busybox",
            "cat",
            "/dev/shm/m",
        ]);
        seen = out;
        if seen == "from-donor\n" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(seen, "from-donor\n");
    let (code, _, err) = s.docker(&[
        "run",
        "--rm",
        "--device",
        "/etc/hostname",
        "busybox",
        "true",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("not a character or block device"), "{err}");
    s.ok(&["rm", "-f", "joiner", "donor"]);
}

/// Network labels and filters through docker's CLI: `create --label`, `ls --filter` by
/// label, `label!`, type and dangling, `inspect`'s Labels, and `prune --filter`, which
/// removes only what the filters pass (the network store is the host's: every name and
/// label here is this process's own).
#[test]
fn network_labels_and_filters_through_the_engine_api() {
    let Some(s) = service() else { return };
    let pid = std::process::id();
    let (team, keep, drop) = (
        format!("team={pid}"),
        format!("keepme{pid}"),
        format!("dropme{pid}"),
    );
    s.ok(&[
        "network", "create", "--label", &team, "--label", "keep=yes", &keep,
    ]);
    s.ok(&["network", "create", "--label", &team, &drop]);
    let names = |filters: &[&str]| {
        let mut args = vec!["network", "ls", "--format", "{{.Name}}"];
        for f in filters {
            args.extend(["--filter", f]);
        }
        let mut v: Vec<String> = s.ok(&args).lines().map(str::to_owned).collect();
        v.sort();
        v
    };
    assert_eq!(
        names(&[&format!("label={team}")]),
        [drop.as_str(), keep.as_str()]
    );
    assert_eq!(
        names(&[&format!("label={team}"), "label=keep"]),
        [keep.as_str()]
    );
    assert_eq!(
        names(&[&format!("label={team}"), "label!=keep"]),
        [drop.as_str()]
    );
    assert_eq!(names(&["type=builtin"]), ["bridge", "host", "none"]);
    assert!(names(&["dangling=true"]).contains(&drop));
    let labels = s.ok(&["network", "inspect", "--format", "{{json .Labels}}", &keep]);
    assert!(labels.contains(&format!(r#""team":"{pid}""#)), "{labels}");
    let pruned = s.ok(&[
        "network",
        "prune",
        "-f",
        "--filter",
        &format!("label={team}"),
        "--filter",
        "label!=keep",
    ]);
    assert!(
        pruned.contains(&drop) && !pruned.contains(&keep),
        "{pruned}"
    );
    assert_eq!(names(&[&format!("label={team}")]), [keep.as_str()]);
    let (code, _, err) = s.docker(&["network", "ls", "--filter", "colour=red"]);
    assert_ne!(code, 0);
    assert!(err.contains("colour"), "{err}");
    s.ok(&["network", "rm", &keep]);
}

/// Run flags through docker's CLI: `-v /data` an anonymous volume that `--volumes-from`
/// shares and `rm -v` removes,
/// `--stop-timeout` kept and shown, `--cidfile` written (and refused when it exists),
/// `--entrypoint ""` as none.
#[test]
fn anonymous_volumes_stop_timeout_cidfile_and_entrypoint() {
    let Some(s) = service() else { return };
    let cid = s.dir.path().join("cid");
    s.ok(&[
        "run",
        "-d",
        "--name",
        "av",
        "-v",
        "/data",
        "--stop-timeout",
        "1",
        "--cidfile",
        cid.to_str().unwrap(),
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/x; exec sleep 300",
    ]);
    let id = s.ok(&["inspect", "--format", "{{.Id}}", "av"]);
    assert_eq!(std::fs::read_to_string(&cid).unwrap(), id.trim());
    let (code, _, err) = s.docker(&[
        "run",
        "-d",
        "--cidfile",
        cid.to_str().unwrap(),
        "busybox",
        "true",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("cidfile") || err.contains("ID file"), "{err}");
    let vol = s.ok(&["inspect", "--format", "{{(index .Mounts 0).Name}}", "av"]);
    let vol = vol.trim().to_owned();
    assert_eq!(vol.len(), 64, "{vol}");
    assert!(s.ok(&["volume", "ls", "-q"]).contains(&vol));
    assert_eq!(
        s.ok(&["inspect", "--format", "{{.Config.StopTimeout}}", "av"]),
        "1\n"
    );
    // Another container takes its volumes (HostConfig.VolumesFrom).
    common::wait_for("the volume's file", 10, || {
        s.docker(&["exec", "av", "cat", "/data/x"]).1 == "kept\n"
    });
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "--volumes-from",
            "av:ro",
            "busybox",
            "cat",
            "/data/x"
        ]),
        "kept\n"
    );
    s.ok(&["rm", "-f", "-v", "av"]);
    assert!(
        !s.ok(&["volume", "ls", "-q"]).contains(&vol),
        "rm -v keeps {vol}"
    );
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "--entrypoint",
            "",
            "busybox",
            "echo",
            "no-entrypoint"
        ]),
        "no-entrypoint\n"
    );
}

/// docker's `none` log driver: an attached run still shows the output, `logs` says the
/// driver does not support reading, and nothing is kept; a driver not served is refused.
#[test]
fn log_driver_none_through_the_engine_api() {
    let Some(s) = service() else { return };
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "--log-driver",
            "none",
            "busybox",
            "echo",
            "attached"
        ]),
        "attached\n"
    );
    s.ok(&[
        "run",
        "-d",
        "--name",
        "nolog",
        "--log-driver",
        "none",
        "busybox",
        "echo",
        "lost",
    ]);
    s.ok(&["wait", "nolog"]);
    let (code, _, err) = s.docker(&["logs", "nolog"]);
    assert_ne!(code, 0);
    assert!(err.contains("does not support reading"), "{err}");
    assert_eq!(
        s.ok(&[
            "inspect",
            "--format",
            "{{.HostConfig.LogConfig.Type}}",
            "nolog"
        ]),
        "none\n"
    );
    // `--log-opt labels=`: docker's `logs --details` shows the chosen labels before each line.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "detailed",
        "-l",
        "team=core",
        "--log-opt",
        "labels=team",
        "busybox",
        "echo",
        "said",
    ]);
    s.ok(&["wait", "detailed"]);
    assert_eq!(s.ok(&["logs", "--details", "detailed"]), "team=core said\n");
    let (code, _, err) = s.docker(&["run", "--rm", "--log-driver", "syslog", "busybox", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("log driver"), "{err}");
    s.ok(&["rm", "nolog"]);
}

/// `docker login` (the API's `/auth`) against a registry with htpasswd users, then `push`
/// and `pull` with the credentials docker's CLI keeps and sends (`X-Registry-Auth`): a
/// wrong password is refused, and after `logout` the registry refuses the pull.
#[test]
fn login_push_and_pull_with_the_clients_credentials() {
    let Some(s) = service() else { return };
    if !common::have_registry() {
        return;
    }
    let Some(reg) = common::registry_with_user(s.dir.path(), "alice", "s3cret") else {
        return;
    };
    let login = |password: &str| {
        s.docker_in(
            &["login", "-u", "alice", "--password-stdin", &reg.addr],
            password.as_bytes(),
        )
    };
    let (code, _, err) = login("wrong\n");
    assert_ne!(code, 0);
    assert!(err.contains("401") || err.contains("refused"), "{err}");
    let (code, out, err) = login("s3cret\n");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Login Succeeded"), "{out}");
    let image = format!("{}/tools/bb:1", reg.addr);
    s.ok(&["tag", "busybox", &image]);
    let pushed = s.ok(&["push", &image]);
    assert!(pushed.contains("1: digest: sha256:"), "{pushed}");
    s.ok(&["rmi", &image]);
    s.ok(&["pull", &image]);
    assert_eq!(s.ok(&["run", "--rm", &image, "echo", "pulled"]), "pulled\n");
    s.ok(&["logout", &reg.addr]);
    s.ok(&["rmi", &image]);
    let (code, _, err) = s.docker(&["pull", &image]);
    assert_ne!(code, 0);
    assert!(err.contains("unauthorized"), "{err}");
}

/// Clients that follow a quiet container's logs and hang up: the service stops following
/// for them at once (within its poll), not at the container's next output or its end, so a
/// client that comes and goes holds no thread of the service.
#[test]
fn followers_that_hang_up_are_let_go() {
    let Some(s) = service() else { return };
    s.ok(&["run", "-d", "--name", "quiet", "busybox", "sleep", "300"]);
    let threads = || {
        std::fs::read_dir(format!("/proc/{}/task", s.child.id()))
            .unwrap()
            .count()
    };
    let before = threads();
    let followers: Vec<std::os::unix::net::UnixStream> = (0..40)
        .map(|_| {
            let mut c = std::os::unix::net::UnixStream::connect(s.sock()).unwrap();
            c.write_all(
                b"GET /v1.41/containers/quiet/logs?follow=1&stdout=1 HTTP/1.1\r\nHost: x\r\n\r\n",
            )
            .unwrap();
            c
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while threads() < before + 30 {
        assert!(
            Instant::now() < deadline,
            "the follows did not start: {}",
            threads()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(followers);
    // Idle blocking threads of the service's runtime end 10 s after their last task.
    let deadline = Instant::now() + Duration::from_secs(30);
    while threads() > before + 5 {
        assert!(
            Instant::now() < deadline,
            "{} threads still follow for clients that left ({} before)",
            threads(),
            before
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A start of a running container and a stop of a stopped one answer 304, as docker's
/// clients expect; a streamed `stats` sends a reading after another; and an attach whose
/// client never reads holds neither the container (its output goes on to the log) nor
/// the service's memory, which goes on answering others.
#[test]
fn not_modified_streamed_stats_and_an_attach_left_unread() {
    let Some(s) = service() else { return };
    s.ok(&["run", "-d", "--name", "on", "busybox", "sleep", "300"]);
    let status = |r: String| r.lines().next().unwrap_or("").to_owned();
    let post = |path: &str| {
        s.raw(format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
    };
    assert_eq!(
        status(post("/v1.41/containers/on/start")),
        "HTTP/1.1 304 Not Modified"
    );
    // A stream of readings, each with the previous one's CPU figures.
    let mut c = std::os::unix::net::UnixStream::connect(s.sock()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    c.write_all(b"GET /v1.47/containers/on/stats HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let readings = |got: &[u8]| {
        String::from_utf8_lossy(got)
            .matches("\"precpu_stats\"")
            .count()
    };
    while readings(&got) < 3 && Instant::now() < deadline {
        let mut buf = [0u8; 65536];
        if let Ok(n) = c.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert!(
        readings(&got) >= 3,
        "three readings in 15 s: {}",
        String::from_utf8_lossy(&got)
    );
    drop(c);
    s.ok(&["stop", "-t", "0", "on"]);
    assert_eq!(
        status(post("/v1.41/containers/on/stop")),
        "HTTP/1.1 304 Not Modified"
    );

    // 100 MB of output while an attached client reads nothing.
    s.ok(&[
        "create", "--name", "loud", "busybox", "sh", "-c",
        "sleep 1; l=x; for d in 1 2 3 4 5 6 7 8 9 10; do l=$l$l; done; i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo $l; done; echo finished",
    ]);
    let before = s.rss_kb();
    let mut stuck = std::os::unix::net::UnixStream::connect(s.sock()).unwrap();
    stuck
        .write_all(b"POST /v1.41/containers/loud/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: x\r\nUpgrade: tcp\r\nConnection: Upgrade\r\n\r\n")
        .unwrap();
    s.ok(&["start", "loud"]);
    let mut peak = before;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        peak = peak.max(s.rss_kb());
        let state = s.ok(&["inspect", "-f", "{{.State.Status}}", "loud"]);
        if state.trim() == "exited" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the unread attach holds the container: {state}"
        );
        assert_eq!(
            status(s.raw(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")),
            "HTTP/1.1 200 OK"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        peak < before + 64 * 1024,
        "the service grew from {before} kB to {peak} kB for an attach left unread"
    );
    let (_, tail, _) = s.docker(&["logs", "--tail", "1", "loud"]);
    assert_eq!(tail, "finished\n", "the whole output reached the log");
    drop(stuck);
}

/// `docker load` spools its archive beside the store: an archive that would fill the
/// store's disk is refused (507) before it does, and the spool is gone.
#[test]
fn a_load_that_would_fill_the_disk_is_refused() {
    if !common::root_with_busybox() {
        return;
    }
    let Some(docker) = docker_clis().into_iter().next() else {
        return;
    };
    // 1,200 MiB, of which the store keeps 1 GiB free: a 400 MiB upload goes over.
    let s = Service::start_with(docker, Some("1200m"));
    let mut c = std::os::unix::net::UnixStream::connect(s.sock()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let size = 400u64 << 20;
    c.write_all(
        format!(
            "POST /v1.41/images/load HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nContent-Length: {size}\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..(size >> 20) {
        // The service may answer and close before all of it is sent.
        if c.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    assert!(
        out.starts_with("HTTP/1.1 507"),
        "{}",
        &out[..out.len().min(300)]
    );
    let spools: Vec<_> = std::fs::read_dir(&s.cli.data)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".load-"))
        .collect();
    assert!(spools.is_empty(), "the spool is removed");
}

/// benches/api_checks.py, the client checks that benches/compare.sh also runs against
/// podman's service: every one passes against ours.
#[test]
fn the_client_checks_all_pass() {
    let Some(s) = service() else { return };
    if !python_has("docker") {
        return;
    }
    // A busybox with every applet, as the checks use them.
    let root = s.dir.path().join("full");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for a in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if a != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
        }
    }
    let tar = s.dir.path().join("full.tar");
    common::tar_dir(&root, &tar);
    s.cli.ok(&[
        "import",
        tar.to_str().unwrap(),
        "docker.io/chk/bb:1",
        "--change",
        r#"CMD ["sh"]"#,
    ]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/api_checks.py");
    let o = Command::new("timeout")
        .arg("900")
        .arg("python3")
        .arg(&script)
        .arg(format!("unix://{}", s.sock().display()))
        .arg("docker.io/chk/bb:1")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let last = out.lines().last().unwrap_or("");
    let counts: Vec<&str> = last.split_whitespace().collect();
    assert!(
        counts.len() == 4 && counts[0] == "passed" && counts[1] == counts[3],
        "{}{}",
        out.lines()
            .filter(|l| !l.starts_with("ok "))
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&o.stderr)
    );
}

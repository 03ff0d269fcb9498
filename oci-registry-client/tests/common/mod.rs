//! Test harness: a real CNCF distribution registry on a free loopback port (anonymous,
//! htpasswd, or token auth), an in-process hyper server for registry quirks and faults, a
//! JWT token server, and images built from real files.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod server;
pub mod token;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// True when the registry binary is installed; tests print why they skip otherwise.
pub fn have_registry() -> bool {
    if Path::new(REGISTRY_BIN).exists() {
        true
    } else {
        eprintln!("skipping: {REGISTRY_BIN} is not installed (Debian package docker-registry)");
        false
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A running `docker-registry serve` with its own storage; killed on drop.
pub struct Registry {
    child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
}

pub enum Auth {
    None,
    Htpasswd {
        user: String,
        pass: String,
    },
    Token {
        realm: String,
        service: String,
        issuer: String,
        cert: PathBuf,
    },
}

impl Registry {
    pub fn start() -> Self {
        Self::start_with(Auth::None)
    }

    pub fn start_with(auth: Auth) -> Self {
        Self::start_full(auth, None)
    }

    /// With TLS: `tls` is (certificate chain PEM, key PEM).
    pub fn start_full(auth: Auth, tls: Option<(PathBuf, PathBuf)>) -> Self {
        let tls_yaml = match &tls {
            Some((c, k)) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                c.display(),
                k.display()
            ),
            None => String::new(),
        };
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).unwrap();
        let auth_yaml = match &auth {
            Auth::None => String::new(),
            Auth::Htpasswd { user, pass } => {
                let out = Command::new("htpasswd").args(["-Bbn", user, pass]).output().expect("htpasswd (apache2-utils) must be installed");
                assert!(out.status.success(), "htpasswd failed");
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, &out.stdout).unwrap();
                format!("auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n", file.display())
            }
            Auth::Token { realm, service, issuer, cert } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                cert.display()
            ),
        };
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: {addr}\n{tls_yaml}{auth_yaml}",
                storage.display()
            );
            let cfg = dir.path().join("config.yml");
            std::fs::write(&cfg, config).unwrap();
            let log_path = dir.path().join("registry.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start docker-registry");
            if wait_ready(&mut child, &addr) {
                return Registry { child, addr, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("docker-registry did not start: {last_log}");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Files under the storage root whose path contains `needle`.
    pub fn stored(&self, needle: &str) -> Vec<PathBuf> {
        fn walk(p: &Path, needle: &str, out: &mut Vec<PathBuf>) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    let path = e.path();
                    if path.to_string_lossy().contains(needle) {
                        out.push(path.clone());
                    }
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        walk(&path, needle, out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir.path().join("storage"), needle, &mut out);
        out
    }
}

fn wait_ready(child: &mut Child, addr: &str) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            if s.write_all(req.as_bytes()).is_ok() {
                let mut buf = [0u8; 12];
                if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") {
                    return true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gzip tar layer made by `tar` and `gzip` from real files: (compressed bytes, diff id).
pub fn layer_from_files(files: &[&str]) -> (Vec<u8>, String) {
    let tar = Command::new("tar")
        .args(["-c", "--owner=0", "--group=0", "--mtime=@0", "-C", "/"])
        .args(files.iter().map(|f| f.trim_start_matches('/')))
        .output()
        .expect("tar");
    assert!(
        tar.status.success(),
        "tar failed: {}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let diff_id = oci_rs_image::sha256(&tar.stdout).to_string();
    let mut gz = Command::new("gzip")
        .args(["-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = gz.stdin.take().unwrap();
    let data = tar.stdout;
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&data).unwrap();
    });
    let out = gz.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    (out.stdout, diff_id)
}

/// An image: blobs (config and layers) and its manifest.
pub struct TestImage {
    pub blobs: Vec<(oci_spec::image::Descriptor, Vec<u8>)>,
    pub manifest: oci_rs_image::Manifest,
}

pub fn image_from_layers(layers: Vec<(Vec<u8>, String)>) -> TestImage {
    use oci_rs_image::media;
    let diff_ids: Vec<String> = layers.iter().map(|l| l.1.clone()).collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_desc = desc(media::OCI_CONFIG, &config);
    let mut blobs = vec![(config_desc.clone(), config)];
    let mut layer_descs = Vec::new();
    for (bytes, _) in layers {
        let d = desc(media::OCI_LAYER_GZIP, &bytes);
        layer_descs.push(d.clone());
        blobs.push((d, bytes));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": config_desc,
        "layers": layer_descs,
    });
    let manifest = oci_rs_image::Manifest::parse(
        serde_json::to_vec(&manifest).unwrap(),
        Some(media::OCI_MANIFEST),
    )
    .unwrap();
    TestImage { blobs, manifest }
}

pub fn desc(media_type: &str, bytes: &[u8]) -> oci_spec::image::Descriptor {
    oci_rs_image::descriptor(
        media_type.into(),
        oci_rs_image::sha256(bytes),
        bytes.len() as u64,
    )
}

pub fn reader(bytes: Vec<u8>) -> oci_rs_image::BlobReader {
    Box::pin(std::io::Cursor::new(bytes))
}

pub async fn read_all(mut r: oci_rs_image::BlobReader) -> Result<Vec<u8>, oci_rs_image::Error> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    r.read_to_end(&mut out)
        .await
        .map_err(oci_rs_image::Error::from_io)?;
    Ok(out)
}

pub fn fast_retry() -> oci_rs_registry_client::RetryPolicy {
    oci_rs_registry_client::RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(2),
    }
}

/// A CA and a leaf certificate for 127.0.0.1 made by `openssl`: (dir, ca.pem, leaf.pem, leaf.key).
pub fn tls_certificates() -> Option<(tempfile::TempDir, PathBuf, PathBuf, PathBuf)> {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    std::fs::write(
        p("leaf.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ok = run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]) && run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
    ]) && run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "leaf.pem",
    ]);
    if !ok {
        eprintln!("skipping: openssl could not make test certificates");
        return None;
    }
    let (ca, leaf, key) = (p("ca.pem"), p("leaf.pem"), p("leaf.key"));
    Some((dir, ca, leaf, key))
}

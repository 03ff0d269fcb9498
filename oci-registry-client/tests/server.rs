//! Our registry server (feature `server`) over a directory, driven by our client, by raw
//! HTTP where the protocol's corners are the point, and by skopeo.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use oci_rs_image::BlobStore;
use oci_rs_registry_client::server::{DiskStorage, Registry as Server};
use oci_rs_registry_client::*;
use std::path::Path;

/// A registry on a free loopback port over `dir`; dropped, it stops serving.
struct Running {
    addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(dir: &Path, configure: impl FnOnce(Server) -> Server) -> Running {
    start_with(dir, configure, None).await
}

async fn start_with(
    dir: &Path,
    configure: impl FnOnce(Server) -> Server,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> Running {
    let storage = DiskStorage::open(dir).await.unwrap();
    let server = configure(Server::new(storage));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let _ = match tls {
            Some(config) => server.serve_tls(listener, config).await,
            None => server.serve(listener).await,
        };
    });
    Running { addr, task }
}

fn client() -> Client {
    Client::builder().retry(fast_retry()).build().unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `errors[0].code` of a distribution error answer.
async fn code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: serde_json::Value =
        serde_json::from_slice(&r.bytes().await.unwrap_or_default()).unwrap_or_default();
    (
        status,
        v["errors"][0]["code"].as_str().unwrap_or("").to_owned(),
    )
}

/// A GET of `path` exactly as given (no normalisation): status and body.
async fn raw_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Every blob file of the storage.
async fn stored_blobs(dir: &Path) -> Vec<String> {
    let s = DiskStorage::open(dir).await.unwrap();
    let mut v: Vec<String> = s
        .layout()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.to_string())
        .collect();
    v.sort();
    v
}

fn upload_sessions(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("uploads")).unwrap().count()
}

#[tokio::test]
async fn our_client_pushes_pulls_lists_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let reg = start(dir.path(), |s| s).await;
    let repo = Repository::new(&reg.addr, "team/app").unwrap();
    // The generic image copy, both ways, through the transfer traits.
    let dst = RegistryDestination::new(client(), repo.clone());
    let written = oci_rs_image::testing::write_sample(&dst, "1").await;
    let src = RegistrySource::new(client(), repo.clone());
    oci_rs_image::testing::read_sample(&src, "1", &written).await;
    // Tags and the catalog, a page at a time.
    let c = client();
    for t in ["2", "3"] {
        c.push_manifest(&repo, &written, Some(t)).await.unwrap();
    }
    let other = Repository::new(&reg.addr, "team/other").unwrap();
    c.push_manifest(&other, &written, Some("x"))
        .await
        .unwrap_err();
    let tags = c.tags(&repo, Some(1)).await.unwrap();
    assert_eq!(tags, ["1", "2", "3"], "three pages of one");
    let r = http()
        .get(format!("http://{}/v2/team/app/tags/list?n=2", reg.addr))
        .send()
        .await
        .unwrap();
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert!(
        link.contains("last=2") && link.contains("rel=\"next\""),
        "{link}"
    );
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["1", "2"]));
    // The refused push (its blobs are not in team/other) made the repository, empty.
    let catalog = c.catalog(&reg.addr, None).await.unwrap();
    assert_eq!(catalog, ["team/app", "team/other"]);
    // Deleting a tag leaves the manifest; deleting the manifest takes its tags.
    let r = http()
        .delete(format!("http://{}/v2/team/app/manifests/3", reg.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(c.tags(&repo, None).await.unwrap(), ["1", "2"]);
    c.delete_manifest(&repo, written.digest()).await.unwrap();
    assert!(c.tags(&repo, None).await.unwrap().is_empty());
    let (status, code) = code(
        http()
            .get(format!("http://{}/v2/team/app/manifests/1", reg.addr))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "MANIFEST_UNKNOWN"));
}

#[tokio::test]
async fn a_chunked_upload_survives_a_restart_and_wrong_ranges_get_416() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = oci_rs_image::sha256(&data);
    let h = http();
    let location = {
        let reg = start(dir.path(), |s| s).await;
        let r = h
            .post(format!("http://{}/v2/big/blobs/uploads/", reg.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let r = h
            .patch(format!("http://{}{location}", reg.addr))
            .header("Content-Range", "0-999999")
            .body(data[..1_000_000].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(r.headers()["range"], "0-999999");
        location
    };
    // Another process (a replica, a restart) continues the session from the storage.
    let reg = start(dir.path(), |s| s).await;
    let url = format!("http://{}{location}", reg.addr);
    let r = h.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-999999");
    // A chunk that does not start where the upload ends: 416, nothing written.
    let r = h
        .patch(&url)
        .header("Content-Range", "5-10")
        .body(vec![0u8; 6])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["range"], "0-999999");
    let r = h
        .patch(&url)
        .header("Content-Range", "1000000-2999999")
        .body(data[1_000_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // The wrong digest: refused, and the session's bytes are not kept as a blob.
    let wrong = oci_rs_image::sha256(b"something else");
    let r = h.put(format!("{url}?digest={wrong}")).send().await.unwrap();
    assert_eq!(code(r).await, (400, "DIGEST_INVALID".into()));
    assert!(!stored_blobs(dir.path()).await.contains(&wrong.to_string()));
    assert!(!stored_blobs(dir.path()).await.contains(&digest.to_string()));
    // The same upload again, monolithic through the session, with the right digest.
    let r = h
        .post(format!("http://{}/v2/big/blobs/uploads/", reg.addr))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = h
        .put(format!("http://{}{loc}?digest={digest}", reg.addr))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["docker-content-digest"],
        digest.to_string().as_str()
    );
    // Ranges of it.
    let r = h
        .get(format!("http://{}/v2/big/blobs/{digest}", reg.addr))
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 10-19/3000000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[10..20]);
    let r = h
        .get(format!("http://{}/v2/big/blobs/{digest}", reg.addr))
        .header("Range", "bytes=3000000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(upload_sessions(dir.path()), 0);
}

/// A refused request whose body the registry did not read: the answer says `Connection:
/// close`, so that a client does not send its next request on a connection the server then
/// closes (the conformance suite's POST after its out-of-order PATCH saw only an EOF).
#[tokio::test]
async fn a_refusal_that_leaves_the_body_unread_closes_the_connection_and_says_so() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let reg = start(dir.path(), |s| s).await;
    let r = http()
        .post(format!("http://{}/v2/conn/blobs/uploads/", reg.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let mut s = tokio::net::TcpStream::connect(&reg.addr).await.unwrap();
    // Headers of a chunk that does not start at 0, and only part of its body.
    s.write_all(
        format!(
            "PATCH {location} HTTP/1.1\r\nHost: {}\r\nContent-Range: 5-1004\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\nabc",
            reg.addr
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .expect("the server closes the connection after its answer")
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 416"), "{text}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    // A request with its whole body read keeps its connection.
    let r = http()
        .patch(format!("http://{}{location}", reg.addr))
        .header("Content-Range", "0-2")
        .body(b"abc".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.headers().get("connection").is_none());
}

#[tokio::test]
async fn hostile_names_digests_sizes_and_manifests_get_clear_errors_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let reg = start(dir.path(), |s| s.max_blob_size(1 << 20)).await;
    let h = http();
    let base = format!("http://{}", reg.addr);
    let long = "a".repeat(10_000);
    for name in [
        "..",
        "a/../b",
        "%2e%2e",
        "a/%2e%2e/b",
        "UPPER",
        "a//b",
        long.as_str(),
    ] {
        // Sent as written: an HTTP library would normalise the dots away.
        let (status, body) = raw_get(&reg.addr, &format!("/v2/{name}/tags/list")).await;
        assert_eq!(status, 400, "{name}: {body}");
        assert!(body.contains("NAME_INVALID"), "{name}: {body}");
    }
    for d in [
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256:abc",
        "sha999:0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let r = h
            .get(format!("{base}/v2/x/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(code(r).await, (400, "DIGEST_INVALID".into()), "{d}");
    }
    let before = stored_blobs(dir.path()).await;
    // A blob whose bytes do not match its digest.
    let claimed = oci_rs_image::sha256(b"claimed");
    let r = h
        .post(format!("{base}/v2/x/blobs/uploads/?digest={claimed}"))
        .body(b"other bytes".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (400, "DIGEST_INVALID".into()));
    // Larger than the limit, monolithic and chunked.
    let big = vec![7u8; (1 << 20) + 1];
    let big_digest = oci_rs_image::sha256(&big);
    let r = h
        .post(format!("{base}/v2/x/blobs/uploads/?digest={big_digest}"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (413, "SIZE_INVALID".into()));
    let r = h
        .post(format!("{base}/v2/x/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = h
        .patch(format!("{base}{loc}"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (413, "SIZE_INVALID".into()));
    let r = h.get(format!("{base}{loc}")).send().await.unwrap();
    assert_eq!(
        r.headers()["range"],
        "0-0",
        "the chunk over the limit was dropped"
    );
    // A session is for its own repository only.
    let r = h
        .get(format!("{base}{}", loc.replacen("/v2/x/", "/v2/y/", 1)))
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (404, "BLOB_UPLOAD_UNKNOWN".into()));
    // A manifest naming blobs the repository lacks, a huge one, one that is not JSON.
    let missing = oci_rs_image::sha256(b"missing");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": missing.to_string(), "size": 7},
        "layers": [],
    });
    let r = h
        .put(format!("{base}/v2/x/manifests/v1"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (400, "MANIFEST_BLOB_UNKNOWN".into()));
    // A million layers: refused by its size, before anything is parsed or looked up.
    let layer = format!(
        r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{missing}","size":7}}"#
    );
    let huge = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{layer},"layers":[{}]}}"#,
        vec![layer.as_str(); 1_000_000].join(",")
    );
    let r = h
        .put(format!("{base}/v2/x/manifests/v1"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (413, "SIZE_INVALID".into()));
    let r = h
        .put(format!("{base}/v2/x/manifests/v1"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body("blablabla")
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (400, "MANIFEST_INVALID".into()));
    // A manifest pushed by a digest it does not have.
    let r = h
        .put(format!("{base}/v2/x/manifests/{missing}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (400, "DIGEST_INVALID".into()));
    assert_eq!(stored_blobs(dir.path()).await, before, "nothing was stored");
    let r = h
        .get(format!("{base}/v2/x/tags/list"))
        .send()
        .await
        .unwrap();
    let tags: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(tags["tags"], serde_json::json!([]));
}

#[tokio::test]
async fn a_read_only_registry_serves_pulls_and_refuses_pushes() {
    let dir = tempfile::tempdir().unwrap();
    let written = {
        let reg = start(dir.path(), |s| s).await;
        let repo = Repository::new(&reg.addr, "ro").unwrap();
        oci_rs_image::testing::write_sample(&RegistryDestination::new(client(), repo), "1").await
    };
    let reg = start(dir.path(), |s| s.read_only(true)).await;
    let repo = Repository::new(&reg.addr, "ro").unwrap();
    oci_rs_image::testing::read_sample(&RegistrySource::new(client(), repo), "1", &written).await;
    let r = http()
        .post(format!("http://{}/v2/ro/blobs/uploads/", reg.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (405, "UNSUPPORTED".into()));
}

#[tokio::test]
async fn skopeo_copies_to_and_from_it() {
    if !Path::new("/usr/bin/skopeo").exists() {
        eprintln!("skipping: skopeo is missing (scripts/test.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reg = start(dir.path(), |s| s).await;
    let img = image_from_layers(vec![
        layer_from_files(&["/bin/busybox"]),
        layer_from_files(&["/etc/os-release"]),
    ]);
    let repo = Repository::new(&reg.addr, "skopeo/src").unwrap();
    let c = client();
    for (d, b) in &img.blobs {
        c.push_blob(&repo, d, reader(b.clone()), None)
            .await
            .unwrap();
    }
    c.push_manifest(&repo, &img.manifest, Some("v1"))
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let skopeo = |args: &[&str]| {
        let o = std::process::Command::new("skopeo")
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let addr = reg.addr.clone();
    let layout_ref = format!("oci:{}:v1", layout.display());
    let (a, b) = (
        format!("docker://{addr}/skopeo/src:v1"),
        format!("docker://{addr}/skopeo/dst:v1"),
    );
    let out = tokio::task::spawn_blocking(move || {
        skopeo(&["copy", "--src-tls-verify=false", &a, &layout_ref]);
        skopeo(&["copy", "--dest-tls-verify=false", &layout_ref, &b]);
        skopeo(&["inspect", "--tls-verify=false", "--raw", &b])
    })
    .await
    .unwrap();
    let dst = Repository::new(&reg.addr, "skopeo/dst").unwrap();
    let back = c
        .manifest(&dst, &oci_rs_image::ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(back.bytes(), out.as_bytes());
    for child in back.children() {
        let got = read_all(c.blob(&dst, &child).await.unwrap()).await.unwrap();
        assert_eq!(got.len() as u64, child.size());
    }
}

#[tokio::test]
async fn gc_removes_what_nothing_names_and_keeps_a_push_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let reg = start(dir.path(), |s| s).await;
    let c = client();
    let a = Repository::new(&reg.addr, "gc/a").unwrap();
    let b = Repository::new(&reg.addr, "gc/b").unwrap();
    let written =
        oci_rs_image::testing::write_sample(&RegistryDestination::new(c.clone(), a.clone()), "1")
            .await;
    // b gets the same image by mounts and the same manifest.
    for child in written.children() {
        let r = http()
            .post(format!(
                "http://{}/v2/gc/b/blobs/uploads/?mount={}&from=gc/a",
                reg.addr,
                child.digest()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    c.push_manifest(&b, &written, Some("1")).await.unwrap();
    let storage = DiskStorage::open(dir.path()).await.unwrap();
    let all = stored_blobs(dir.path()).await;
    let forget = |repo: &Repository| {
        let (c, repo, written) = (c.clone(), repo.clone(), written.clone());
        async move {
            c.delete_manifest(&repo, written.digest()).await.unwrap();
            for child in written.children() {
                c.delete_blob(&repo, child.digest()).await.unwrap();
            }
        }
    };
    forget(&a).await;
    let report = storage
        .gc(std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(report.removed.is_empty(), "b still names them: {report:?}");
    // A blob written under a lease and not named yet (a push in flight) stays.
    let leased = oci_rs_registry_client::server::RegistryStorage::leased_blobs(&storage)
        .await
        .unwrap();
    let in_flight = oci_rs_image::BlobStoreExt::put_bytes(
        leased.as_ref(),
        bytes::Bytes::from_static(b"in flight"),
    )
    .await
    .unwrap();
    forget(&b).await;
    let report = storage
        .gc(std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    let mut removed: Vec<String> = report.removed.iter().map(|d| d.to_string()).collect();
    removed.sort();
    assert_eq!(removed, all, "the image's blobs and manifest, nothing else");
    assert!(stored_blobs(dir.path())
        .await
        .contains(&in_flight.digest.to_string()));
    drop(leased);
    let report = storage
        .gc(std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(report.removed.len(), 1, "the lease is gone: {report:?}");
    // Abandoned upload sessions.
    let r = http()
        .post(format!("http://{}/v2/gc/a/blobs/uploads/", reg.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(upload_sessions(dir.path()), 1);
    let report = storage.gc(std::time::Duration::ZERO).await.unwrap();
    assert_eq!(report.uploads_removed, 1);
    assert_eq!(upload_sessions(dir.path()), 0);
}

/// An htpasswd file (bcrypt, `htpasswd -B`, cost 4 to keep the test fast) with alice and bob.
fn htpasswd(dir: &Path) -> Option<oci_rs_registry_client::server::Users> {
    if !Path::new("/usr/bin/htpasswd").exists() {
        eprintln!("skipping: htpasswd is missing (apache2-utils; scripts/test.sh installs it)");
        return None;
    }
    let path = dir.join("htpasswd");
    let mut text = String::new();
    for (u, p) in [("alice", "alice-secret"), ("bob", "bob-secret")] {
        let o = std::process::Command::new("htpasswd")
            .args(["-nbB", "-C", "4", u, p])
            .output()
            .unwrap();
        assert!(o.status.success());
        text.push_str(String::from_utf8(o.stdout).unwrap().trim());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    Some(oci_rs_registry_client::server::Users::load_htpasswd(&path).unwrap())
}

/// alice may push and pull everywhere, bob pull only, anonymous pull of public/*.
fn policy() -> oci_rs_registry_client::server::AccessPolicy {
    serde_json::from_value(serde_json::json!({
        "rules": [
            {"repositories": "*", "principals": ["alice"], "actions": ["pull", "push", "delete"]},
            {"repositories": "*", "principals": ["bob"], "actions": ["pull"]},
            {"repositories": "public/*", "principals": ["anonymous"], "actions": ["pull"]}
        ]
    }))
    .unwrap()
}

fn client_as(registry: &str, user: &str, password: &str) -> Client {
    Client::builder()
        .retry(fast_retry())
        .credentials(StaticCredentials::new().with(
            registry,
            Credential::Basic {
                username: user.into(),
                password: password.into(),
            },
        ))
        .build()
        .unwrap()
}

/// The same checks for both schemes: a known user with the right pushes and pulls, a
/// wrong password and a user without the right are refused, anonymous pulls only where
/// allowed, and the catalog shows only what the caller may pull.
async fn access_is_enforced(addr: &str, expect_challenge: &str) {
    let h = http();
    let r = h.get(format!("http://{addr}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with(expect_challenge), "{challenge}");
    let alice = client_as(addr, "alice", "alice-secret");
    for name in ["team/app", "public/site"] {
        let repo = Repository::new(addr, name).unwrap();
        let written = oci_rs_image::testing::write_sample(
            &RegistryDestination::new(alice.clone(), repo.clone()),
            "1",
        )
        .await;
        oci_rs_image::testing::read_sample(
            &RegistrySource::new(alice.clone(), repo),
            "1",
            &written,
        )
        .await;
    }
    let manifest = |c: Client, name: &str| {
        let repo = Repository::new(addr, name).unwrap();
        async move {
            c.manifest(&repo, &oci_rs_image::ManifestRef::Tag("1".into()))
                .await
        }
    };
    // A wrong password.
    let e = manifest(client_as(addr, "alice", "wrong"), "team/app")
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("401") || e.to_string().to_lowercase().contains("unauthorized"),
        "{e}"
    );
    // bob reads, and may not push.
    let bob = client_as(addr, "bob", "bob-secret");
    let m = manifest(bob.clone(), "team/app").await.unwrap();
    let repo = Repository::new(addr, "team/app").unwrap();
    bob.push_manifest(&repo, &m, Some("bob")).await.unwrap_err();
    // Anonymous: public/* only.
    manifest(client(), "public/site").await.unwrap();
    manifest(client(), "team/app").await.unwrap_err();
    let public = Repository::new(addr, "public/site").unwrap();
    client()
        .push_manifest(&public, &m, Some("anon"))
        .await
        .unwrap_err();
    // What alice and bob see in the catalog.
    assert_eq!(
        alice.catalog(addr, None).await.unwrap(),
        ["public/site", "team/app"]
    );
    assert_eq!(
        bob.catalog(addr, None).await.unwrap(),
        ["public/site", "team/app"]
    );
    let tags = alice.tags(&repo, None).await.unwrap();
    assert_eq!(tags, ["1"], "nobody else's push landed");
}

#[tokio::test]
async fn basic_auth_with_htpasswd_and_an_access_policy() {
    let dir = tempfile::tempdir().unwrap();
    let Some(users) = htpasswd(dir.path()) else {
        return;
    };
    let reg = start(&dir.path().join("storage"), |s| {
        s.auth(oci_rs_registry_client::server::Auth::Basic {
            users,
            policy: policy(),
        })
    })
    .await;
    access_is_enforced(&reg.addr, "Basic realm=").await;
    // A known user without the right gets 403, not a new challenge.
    let r = http()
        .delete(format!("http://{}/v2/team/app/manifests/1", reg.addr))
        .basic_auth("bob", Some("bob-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (403, "DENIED".into()));
}

#[tokio::test]
async fn the_token_flow_issues_scoped_tokens_that_the_registry_enforces() {
    let dir = tempfile::tempdir().unwrap();
    let Some(users) = htpasswd(dir.path()) else {
        return;
    };
    let token = oci_rs_registry_client::server::TokenAuth::new(users, policy()).unwrap();
    let reg = start(&dir.path().join("storage"), |s| {
        s.auth(oci_rs_registry_client::server::Auth::Token(token))
    })
    .await;
    access_is_enforced(&reg.addr, "Bearer realm=").await;
    let h = http();
    // bob asks for push and gets pull only; the registry refuses his push with that token.
    let r = h
        .get(format!(
            "http://{}/token?service=oci-rs-registry&scope=repository:team/app:pull,push",
            reg.addr
        ))
        .basic_auth("bob", Some("bob-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let tok = v["token"].as_str().unwrap().to_owned();
    let r = h
        .post(format!("http://{}/v2/team/app/blobs/uploads/", reg.addr))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    let r = h
        .get(format!("http://{}/v2/team/app/tags/list", reg.addr))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A token for another repository does not open this one; a forged one nothing.
    let r = h
        .get(format!("http://{}/v2/other/tags/list", reg.addr))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let forged = format!("{}x", &tok[..tok.len() - 1]);
    let r = h
        .get(format!("http://{}/v2/team/app/tags/list", reg.addr))
        .bearer_auth(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A wrong password gets no token.
    let r = h
        .get(format!(
            "http://{}/token?service=oci-rs-registry&scope=repository:team/app:pull",
            reg.addr
        ))
        .basic_auth("bob", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // skopeo through the token flow.
    if Path::new("/usr/bin/skopeo").exists() {
        let addr = reg.addr.clone();
        let o = tokio::task::spawn_blocking(move || {
            std::process::Command::new("skopeo")
                .args([
                    "inspect",
                    "--tls-verify=false",
                    "--raw",
                    "--creds",
                    "alice:alice-secret",
                ])
                .arg(format!("docker://{addr}/team/app:1"))
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

#[tokio::test]
async fn tls_with_a_certificate_pair_and_no_plain_http() {
    let Some((_certs, ca, leaf, key)) = tls_certificates() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = oci_rs_registry_client::server::tls_config(&leaf, &key).unwrap();
    let reg = start_with(dir.path(), |s| s, Some(config)).await;
    let c = Client::builder()
        .https_registry(&reg.addr)
        .root_certificates_pem(&std::fs::read(&ca).unwrap())
        .unwrap()
        .retry(fast_retry())
        .build()
        .unwrap();
    let repo = Repository::new(&reg.addr, "tls/app").unwrap();
    let written = oci_rs_image::testing::write_sample(
        &RegistryDestination::new(c.clone(), repo.clone()),
        "1",
    )
    .await;
    oci_rs_image::testing::read_sample(&RegistrySource::new(c, repo), "1", &written).await;
    // Plain HTTP to the TLS port gets no answer of the registry.
    let r = http().get(format!("http://{}/v2/", reg.addr)).send().await;
    assert!(r.map(|r| r.status() != 200).unwrap_or(true));
    // A key that is not the certificate's is refused at start.
    let Some((_other, _, _, other_key)) = tls_certificates() else {
        return;
    };
    assert!(oci_rs_registry_client::server::tls_config(&leaf, &other_key).is_err());
    assert!(oci_rs_registry_client::server::tls_config(&leaf, Path::new("/nonexistent")).is_err());
}

#[tokio::test]
async fn a_client_trickling_an_upload_is_cut_off_and_can_resume() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let reg = start(dir.path(), |s| {
        s.min_upload_rate(1024, std::time::Duration::from_millis(500))
    })
    .await;
    let r = http()
        .post(format!("http://{}/v2/slow/blobs/uploads/", reg.addr))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    // One byte every 100 ms, announced as a megabyte.
    let mut s = tokio::net::TcpStream::connect(&reg.addr).await.unwrap();
    s.write_all(
        format!(
            "PATCH {loc} HTTP/1.1\r\nHost: {}\r\nContent-Length: 1048576\r\nContent-Type: application/octet-stream\r\n\r\n",
            reg.addr
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let trickle = async {
        for _ in 0..100 {
            if s.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), trickle).await;
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut answer))
        .await
        .unwrap()
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("BLOB_UPLOAD_INVALID"), "{answer}");
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
    // What arrived is in the session: the client may resume after it.
    let r = http()
        .get(format!("http://{}{loc}", reg.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let range = r.headers()["range"].to_str().unwrap().to_owned();
    let end: u64 = range.trim_start_matches("0-").parse().unwrap();
    assert!(end < 20, "{range}");
}

#[tokio::test]
async fn a_pull_through_cache_fetches_once_verifies_and_outlives_its_upstream() {
    use common::server::{serve, Response};
    let img = image_from_layers(vec![layer_from_files(&["/bin/busybox"])]);
    let manifest = img.manifest.bytes().to_vec();
    let mdigest = img.manifest.digest().to_string();
    let blobs: std::collections::HashMap<String, Vec<u8>> = img
        .blobs
        .iter()
        .map(|(d, b)| (d.digest().to_string(), b.clone()))
        .collect();
    let layer = img.blobs[1].0.digest().to_string();
    // The upstream: a registry that counts what it is asked.
    let upstream = serve(move |req| {
        let path = req.path().to_owned();
        if path == "/v2/" {
            return Response::new(200).json(serde_json::json!({}));
        }
        if path == "/v2/lib/app/manifests/1" || path == format!("/v2/lib/app/manifests/{mdigest}") {
            return Response::new(200)
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .header("Docker-Content-Digest", mdigest.clone())
                .body(manifest.clone());
        }
        if let Some(d) = path.strip_prefix("/v2/lib/app/blobs/") {
            if let Some(b) = blobs.get(d) {
                return Response::new(200).body(b.clone());
            }
        }
        Response::new(404)
            .json(serde_json::json!({"errors": [{"code": "NOT_FOUND", "message": "no"}]}))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let reg = start(dir.path(), |s| {
        s.pull_through(client(), upstream.registry())
    })
    .await;
    let c = client();
    let repo = Repository::new(&reg.addr, "lib/app").unwrap();
    let m = c
        .manifest(&repo, &oci_rs_image::ManifestRef::Tag("1".into()))
        .await
        .unwrap();
    assert_eq!(m.digest(), img.manifest.digest());
    // 20 clients ask for the layer at once: upstream is asked once.
    let h = http();
    let url = format!("http://{}/v2/lib/app/blobs/{layer}", reg.addr);
    let gets = (0..20).map(|_| {
        let (h, url) = (h.clone(), url.clone());
        async move { h.get(url).send().await.unwrap().bytes().await.unwrap() }
    });
    let bodies = futures_util::future::join_all(gets).await;
    assert!(bodies
        .iter()
        .all(|b| b.as_ref() == img.blobs[1].1.as_slice()));
    assert_eq!(upstream.count("GET", &format!("/blobs/{layer}")), 1);
    for child in m.children() {
        let got = read_all(c.blob(&repo, &child).await.unwrap())
            .await
            .unwrap();
        assert_eq!(got.len() as u64, child.size());
    }
    // Pushes are refused.
    let r = h
        .post(format!("http://{}/v2/lib/app/blobs/uploads/", reg.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    // Upstream gone: the cache answers by tag and digest.
    drop(upstream);
    let again = c
        .manifest(&repo, &oci_rs_image::ManifestRef::Tag("1".into()))
        .await
        .unwrap();
    assert_eq!(again.digest(), img.manifest.digest());
    let again = c
        .manifest(
            &repo,
            &oci_rs_image::ManifestRef::Digest(img.manifest.digest().clone()),
        )
        .await
        .unwrap();
    assert_eq!(again.bytes(), img.manifest.bytes());
    // What upstream never had is unknown here too.
    let r = h
        .get(format!("http://{}/v2/lib/app/manifests/2", reg.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_pull_through_cache_keeps_nothing_that_does_not_match_its_digest() {
    use common::server::{serve, Response};
    let good = b"the real layer".to_vec();
    let digest = oci_rs_image::sha256(&good).to_string();
    // An upstream that serves other bytes under that digest.
    let upstream = serve(move |req| {
        if req.path().contains("/blobs/") {
            return Response::new(200).body(b"tampered bytes".to_vec());
        }
        Response::new(200).json(serde_json::json!({}))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let reg = start(dir.path(), |s| {
        s.pull_through(client(), upstream.registry())
    })
    .await;
    let before = stored_blobs(dir.path()).await;
    let r = http()
        .get(format!("http://{}/v2/x/blobs/{digest}", reg.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (404, "BLOB_UNKNOWN".into()));
    assert_eq!(stored_blobs(dir.path()).await, before);
}

/// A local S3 (moto's server, `pip install 'moto[server]'`) on a free port, with a bucket.
#[cfg(feature = "s3")]
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

#[cfg(feature = "s3")]
impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(feature = "s3")]
fn moto(bucket: &str) -> Option<Moto> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("moto_server"))
            .find(|c| c.exists())
    });
    let Some(bin) = found else {
        eprintln!(
            "skipping: moto_server is missing (scripts/test.sh installs moto[server] with pip)"
        );
        return None;
    };
    let port = free_port();
    let child = std::process::Command::new(bin)
        .args(["-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "moto did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = std::process::Command::new("curl")
        .args(["-fs", "-X", "PUT", &format!("{endpoint}/{bucket}")])
        .status()
        .unwrap();
    assert!(status.success());
    Some(Moto { child, endpoint })
}

#[cfg(feature = "s3")]
fn s3_storage(m: &Moto, bucket: &str) -> oci_rs_registry_client::server::S3Storage {
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&m.endpoint)
        .with_allow_http(true)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap();
    oci_rs_registry_client::server::S3Storage::new(std::sync::Arc::new(store), "registry")
}

#[cfg(feature = "s3")]
async fn start_s3(storage: oci_rs_registry_client::server::S3Storage) -> Running {
    let server = Server::new(storage);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let _ = server.serve(listener).await;
    });
    Running { addr, task }
}

/// gc over a bucket while pushes run: what repositories name stays, a blob written under a
/// live lease (a push between its upload and its name) stays, an orphan older than the
/// lease goes; once the lease is dropped, its unnamed blob goes too; an abandoned upload
/// session goes by age.
#[cfg(feature = "s3")]
#[tokio::test]
async fn gc_over_s3_keeps_what_is_named_or_being_pushed() {
    use oci_rs_registry_client::server::RegistryStorage;
    // S3 writes a blob under the digest it must have.
    async fn put(
        store: &dyn oci_rs_image::BlobStore,
        data: &[u8],
    ) -> oci_rs_image::oci_spec::image::Digest {
        let d = oci_rs_image::sha256(data);
        let mut w = store
            .ingest(oci_rs_image::Expected {
                digest: Some(d.clone()),
                size: Some(data.len() as u64),
            })
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut w, data)
            .await
            .unwrap();
        w.commit().await.unwrap();
        d
    }
    let Some(m) = moto("gcbucket") else {
        return;
    };
    let storage = s3_storage(&m, "gcbucket").with_clock_margin(std::time::Duration::ZERO);
    let reg = start_s3(storage.clone()).await;
    let repo = Repository::new(&reg.addr, "team/app").unwrap();
    let written =
        oci_rs_image::testing::write_sample(&RegistryDestination::new(client(), repo.clone()), "1")
            .await;
    let orphan = put(storage.blobs(), b"nobody names me").await;
    let session = http()
        .post(format!("http://{}/v2/team/app/blobs/uploads/", reg.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 202);
    // The bucket's times have a resolution of a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let lease = storage.leased_blobs().await.unwrap();
    let pushing = put(lease.as_ref(), b"being pushed").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let report = storage
        .gc(std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(report.removed, [orphan]);
    assert_eq!(report.uploads_removed, 0, "the session is young");
    let left = storage.blobs().list().await.unwrap();
    assert!(left.contains(&pushing), "the leased blob stays");
    for child in written.children() {
        assert!(left.contains(child.digest()), "a named blob stays");
    }
    assert!(left.contains(written.digest()));
    drop(lease);
    let bucket_leases = || async {
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&m.endpoint)
            .with_allow_http(true)
            .with_bucket_name("gcbucket")
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap();
        use futures_util::TryStreamExt;
        object_store::ObjectStore::list(&store, Some(&"registry/leases".into()))
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .len()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while bucket_leases().await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the lease was not removed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let report = storage.gc(std::time::Duration::ZERO).await.unwrap();
    assert_eq!(report.removed, [pushing]);
    assert_eq!(report.uploads_removed, 1, "the abandoned session");
    oci_rs_image::testing::read_sample(&RegistrySource::new(client(), repo), "1", &written).await;
}

/// The bucket under a registry's storage, for looking at (and planting) its objects.
#[cfg(feature = "s3")]
fn bucket(m: &Moto, bucket: &str) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&m.endpoint)
        .with_allow_http(true)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap()
}

/// A push that names a blob already in the bucket (a cross-repository mount, a manifest
/// naming linked blobs) is not protected by its time, as an upload is. Found under a lease,
/// the blob is pinned, and gc keeps it however old it is until the lease ends; a blob that a
/// running gc has announced it will delete is reported missing instead, so a mount of it
/// starts an upload and a manifest naming it is refused, rather than a name left pointing
/// at nothing.
#[cfg(feature = "s3")]
#[tokio::test]
async fn gc_over_s3_keeps_what_a_push_found_and_a_push_heeds_a_running_gc() {
    use object_store::ObjectStore;
    use oci_rs_registry_client::server::RegistryStorage;
    let Some(m) = moto("pinbucket") else {
        return;
    };
    let storage = s3_storage(&m, "pinbucket").with_clock_margin(std::time::Duration::ZERO);
    let reg = start_s3(storage.clone()).await;
    let base = format!("http://{}", reg.addr);
    let h = http();
    let push = |name: &'static str, data: &'static [u8]| {
        let (h, base) = (h.clone(), base.clone());
        async move {
            let d = oci_rs_image::sha256(data);
            let r = h
                .post(format!("{base}/v2/{name}/blobs/uploads/?digest={d}"))
                .body(data)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            d
        }
    };
    let old = push("team/a", b"an old blob").await;
    let config = push("team/a", b"{}").await;
    let r = h
        .delete(format!("{base}/v2/team/a/blobs/{old}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // The bucket's times have a resolution of a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let lease = storage.leased_blobs().await.unwrap();
    assert_eq!(lease.stat(&old).await.unwrap(), Some(11));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let report = storage
        .gc(std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(report.removed.is_empty(), "a pinned blob stays: {report:?}");
    drop(lease);
    let objects = |under: &'static str| {
        let store = bucket(&m, "pinbucket");
        async move {
            use futures_util::TryStreamExt;
            store
                .list(Some(&under.into()))
                .try_collect::<Vec<_>>()
                .await
                .unwrap()
                .len()
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while objects("registry/pins").await + objects("registry/leases").await > 0 {
        assert!(std::time::Instant::now() < deadline, "the pin stayed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let report = storage
        .gc(std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        report.removed,
        std::slice::from_ref(&old),
        "unpinned, it goes"
    );

    // A gc that has announced `config` (as one that read team/a's names just before a
    // client removed its link would): a mount of it starts an upload, a manifest naming it
    // is refused, and neither leaves a name.
    let marker = object_store::path::Path::from("registry/gc/running");
    bucket(&m, "pinbucket")
        .put(&marker, format!("{old}\n{config}\n").into_bytes().into())
        .await
        .unwrap();
    let mount = || {
        h.post(format!(
            "{base}/v2/team/b/blobs/uploads/?mount={config}&from=team/a"
        ))
        .send()
    };
    assert_eq!(
        mount().await.unwrap().status(),
        202,
        "mounted a doomed blob"
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 2},
        "layers": [],
    });
    let put_manifest = || {
        h.put(format!("{base}/v2/team/a/manifests/v1"))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.to_string())
            .send()
    };
    let r = put_manifest().await.unwrap();
    assert_eq!(code(r).await, (400, "MANIFEST_BLOB_UNKNOWN".into()));
    let r = h
        .head(format!("{base}/v2/team/b/blobs/{config}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // The client uploads what its mount was refused (a new object, which that gc keeps):
    // the manifest then goes through while the gc still runs.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(push("team/c", b"{}").await, config);
    assert_eq!(put_manifest().await.unwrap().status(), 201);
    // Once that gc is gone, a mount goes through too.
    bucket(&m, "pinbucket").delete(&marker).await.unwrap();
    assert_eq!(mount().await.unwrap().status(), 201);
}

/// Two registries over one bucket are one registry: what one stored the other serves, an
/// upload begun on one finishes on the other, and nothing that fails its digest is kept.
#[cfg(feature = "s3")]
#[tokio::test]
async fn two_replicas_over_one_s3_bucket_serve_the_same_content() {
    let Some(m) = moto("replicas") else {
        return;
    };
    let a = start_s3(s3_storage(&m, "replicas")).await;
    let b = start_s3(s3_storage(&m, "replicas")).await;
    let repo_a = Repository::new(&a.addr, "team/app").unwrap();
    let repo_b = Repository::new(&b.addr, "team/app").unwrap();
    let written =
        oci_rs_image::testing::write_sample(&RegistryDestination::new(client(), repo_a), "1").await;
    oci_rs_image::testing::read_sample(&RegistrySource::new(client(), repo_b), "1", &written).await;
    assert_eq!(client().catalog(&b.addr, None).await.unwrap(), ["team/app"]);
    // A chunked upload that fails over from a to b mid-way.
    let data: Vec<u8> = (0..6_000_000u32).map(|i| (i % 253) as u8).collect();
    let digest = oci_rs_image::sha256(&data);
    let h = http();
    let r = h
        .post(format!("http://{}/v2/team/big/blobs/uploads/", a.addr))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = h
        .patch(format!("http://{}{loc}", a.addr))
        .header("Content-Range", "0-2999999")
        .body(data[..3_000_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    drop(a);
    let r = h
        .get(format!("http://{}{loc}", b.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-2999999");
    // The wrong digest first: refused, nothing kept under it.
    let wrong = oci_rs_image::sha256(b"not this");
    let r = h
        .put(format!("http://{}{loc}?digest={wrong}", b.addr))
        .header("Content-Range", "3000000-5999999")
        .body(data[3_000_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (400, "DIGEST_INVALID".into()));
    let blobs = oci_rs_registry_client::server::RegistryStorage::blobs(&s3_storage(&m, "replicas"))
        .list()
        .await
        .unwrap();
    assert!(!blobs.contains(&wrong) && !blobs.contains(&digest));
    // Again, right.
    let r = h
        .post(format!(
            "http://{}/v2/team/big/blobs/uploads/?digest={digest}",
            b.addr
        ))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let got = h
        .get(format!("http://{}/v2/team/big/blobs/{digest}", b.addr))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), data.as_slice());
}

/// Names that are the storage's own words, and annotations that are the registry's own:
/// a repository called `blobs` (or with `index.json` in its name) is a repository like any
/// other and survives a gc; a manifest's annotation cannot make it a referrer; an index
/// must name its manifests with their sizes.
#[tokio::test]
async fn the_storages_own_names_and_annotations_are_not_the_users() {
    let dir = tempfile::tempdir().unwrap();
    let reg = start(dir.path(), |s| s).await;
    let c = client();
    let mut written = Vec::new();
    for name in ["team/blobs", "index.json/x", "team/_layout"] {
        let Ok(repo) = Repository::new(&reg.addr, name) else {
            continue;
        };
        let w = oci_rs_image::testing::write_sample(
            &RegistryDestination::new(c.clone(), repo.clone()),
            "1",
        )
        .await;
        written.push((repo, w));
    }
    assert_eq!(written.len(), 2, "`_layout` is no repository name");
    let storage = DiskStorage::open(dir.path()).await.unwrap();
    let report = storage
        .gc(std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(report.removed.is_empty(), "{report:?}");
    for (repo, w) in &written {
        oci_rs_image::testing::read_sample(&RegistrySource::new(c.clone(), repo.clone()), "1", w)
            .await;
    }
    assert_eq!(
        c.catalog(&reg.addr, None).await.unwrap(),
        ["index.json/x", "team/blobs"]
    );
    // A manifest whose own annotation names a subject is no referrer of it.
    let (repo, w) = &written[0];
    let config = w.as_image().map(|m| m.config().clone()).unwrap();
    let spoof = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [],
        "annotations": {"rs.oci.registry.subject": w.digest().to_string()},
    });
    let r = http()
        .put(format!(
            "http://{}/v2/{}/manifests/spoof",
            reg.addr,
            repo.name()
        ))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(spoof.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http()
        .get(format!(
            "http://{}/v2/{}/referrers/{}",
            reg.addr,
            repo.name(),
            w.digest()
        ))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["manifests"], serde_json::json!([]));
    // An index that gives its manifest a wrong size.
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": w.digest().to_string(), "size": w.bytes().len() + 1}],
    });
    let r = http()
        .put(format!(
            "http://{}/v2/{}/manifests/index",
            reg.addr,
            repo.name()
        ))
        .header("Content-Type", "application/vnd.oci.image.index.v1+json")
        .body(index.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (400, "MANIFEST_UNKNOWN".into()));
}

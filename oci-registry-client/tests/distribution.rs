//! Round trips against the real CNCF distribution registry (`docker-registry`), started on a
//! free loopback port by the harness: anonymous, htpasswd basic auth, and token auth.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use oci_rs_image::{ImageDestination, ImageSource, ManifestRef};
use oci_rs_registry_client::*;
use std::sync::{Arc, Mutex};

fn client() -> Client {
    Client::builder().retry(fast_retry()).build().unwrap()
}

fn small_image() -> TestImage {
    image_from_layers(vec![
        layer_from_files(&["/bin/busybox"]),
        layer_from_files(&["/etc/os-release", "/etc/passwd"]),
    ])
}

async fn push_image(c: &Client, repo: &Repository, img: &TestImage, tag: &str) {
    for (d, b) in &img.blobs {
        c.push_blob(repo, d, reader(b.clone()), None).await.unwrap();
    }
    c.push_manifest(repo, &img.manifest, Some(tag))
        .await
        .unwrap();
}

#[tokio::test]
async fn push_and_pull_round_trip_verified() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start();
    let events: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let ev = events.clone();
    let c = Client::builder()
        .retry(fast_retry())
        .progress(move |p| ev.lock().unwrap().push(p.clone()))
        .build()
        .unwrap();
    let repo = Repository::new(&reg.addr, "test/app").unwrap();
    let img = small_image();
    // Through the ImageDestination trait: blobs first, manifest last.
    let dst = RegistryDestination::new(c.clone(), repo.clone());
    for (d, b) in &img.blobs {
        assert!(!dst.has_blob(d).await.unwrap());
        dst.put_blob(d, reader(b.clone())).await.unwrap();
        assert!(dst.has_blob(d).await.unwrap());
    }
    dst.put_manifest(&img.manifest, Some("v1")).await.unwrap();
    // A second push skips every blob.
    for (d, b) in &img.blobs {
        let o = c
            .push_blob(&repo, d, reader(b.clone()), None)
            .await
            .unwrap();
        assert_eq!(o, PushOutcome::Existed);
    }
    {
        let ev = events.lock().unwrap();
        let layer = &img.blobs[1].0;
        let last = ev
            .iter()
            .rfind(|p| p.digest == *layer.digest() && p.direction == Direction::Upload)
            .unwrap();
        assert_eq!(last.transferred, layer.size());
    }

    // Pull back through ImageSource: same bytes, verified.
    let src = RegistrySource::new(c.clone(), repo.clone());
    assert_eq!(
        src.registry_repository(),
        Some((reg.addr.clone(), "test/app".into()))
    );
    let m = src.manifest(&ManifestRef::Tag("v1".into())).await.unwrap();
    assert_eq!(m.digest(), img.manifest.digest());
    assert_eq!(m.bytes(), img.manifest.bytes());
    let by_digest = c
        .manifest(&repo, &ManifestRef::Digest(m.digest().clone()))
        .await
        .unwrap();
    assert_eq!(by_digest.bytes(), m.bytes());
    let d = c
        .resolve(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(d.digest(), img.manifest.digest());
    assert_eq!(d.size(), img.manifest.size());
    for (desc, bytes) in &img.blobs {
        let got = read_all(src.blob(desc).await.unwrap()).await.unwrap();
        assert_eq!(&got, bytes);
    }
    let ev = events.lock().unwrap().clone();
    assert!(ev
        .iter()
        .any(|p| p.direction == Direction::Download && p.transferred == p.total));

    // Missing things are typed "not found".
    let e = c
        .manifest(&repo, &ManifestRef::Tag("nope".into()))
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let missing = desc(oci_rs_image::media::OCI_LAYER_GZIP, b"not there");
    let Err(e) = c.blob(&repo, &missing).await else {
        panic!("missing blob opened")
    };
    assert!(e.is_not_found(), "{e}");
}

#[tokio::test]
async fn tags_list_and_catalog_paginate_with_n_1() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start();
    let c = client();
    let repo = Repository::new(&reg.addr, "tags/one").unwrap();
    let img = small_image();
    push_image(&c, &repo, &img, "a").await;
    for t in ["b", "c", "d"] {
        c.tag(&repo, img.manifest.digest(), t).await.unwrap();
    }
    // distribution 2.8 ignores `n`/`last` on tags (its catalog paginates, below; tag
    // pagination with Link is shown against the scripted server in tests/quirks.rs).
    let mut paged = c.tags(&repo, Some(1)).await.unwrap();
    paged.sort();
    assert_eq!(paged, vec!["a", "b", "c", "d"]);
    let p = c.tags_page(&repo, Some(1), None).await.unwrap();
    assert!(p.items.contains(&"a".to_string()));
    for r in ["tags/two", "tags/three"] {
        push_image(&c, &Repository::new(&reg.addr, r).unwrap(), &img, "v1").await;
    }
    let first = c.catalog_page(&reg.addr, Some(1), None).await.unwrap();
    assert_eq!(first.items, vec!["tags/one"]);
    assert_eq!(first.next_last.as_deref(), Some("tags/one"));
    let repos = c.catalog(&reg.addr, Some(1)).await.unwrap();
    assert_eq!(repos, vec!["tags/one", "tags/three", "tags/two"]);
}

#[tokio::test]
async fn delete_manifest_and_blob() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start();
    let c = client();
    let repo = Repository::new(&reg.addr, "del/me").unwrap();
    let img = small_image();
    push_image(&c, &repo, &img, "v1").await;
    c.delete_manifest(&repo, img.manifest.digest())
        .await
        .unwrap();
    let e = c
        .manifest(&repo, &ManifestRef::Digest(img.manifest.digest().clone()))
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let layer = &img.blobs[1].0;
    assert!(c.blob_exists(&repo, layer.digest()).await.unwrap());
    c.delete_blob(&repo, layer.digest()).await.unwrap();
    assert!(!c.blob_exists(&repo, layer.digest()).await.unwrap());
    let e = c.delete_blob(&repo, layer.digest()).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

#[tokio::test]
async fn mount_between_repositories_and_fallback_to_upload() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start();
    let c = client();
    let a = Repository::new(&reg.addr, "mount/a").unwrap();
    let b = Repository::new(&reg.addr, "mount/b").unwrap();
    let img = small_image();
    push_image(&c, &a, &img, "v1").await;
    let (layer, bytes) = &img.blobs[1];
    let o = c
        .push_blob(&b, layer, reader(bytes.clone()), Some(&a))
        .await
        .unwrap();
    assert_eq!(o, PushOutcome::Mounted);
    assert!(c.blob_exists(&b, layer.digest()).await.unwrap());
    // Through the trait.
    let dst = RegistryDestination::new(c.clone(), Repository::new(&reg.addr, "mount/c").unwrap());
    assert!(dst
        .mount_blob(layer, &(reg.addr.clone(), "mount/a".into()))
        .await
        .unwrap());
    // A blob the source does not have: the registry opens an upload instead (202).
    let other = b"fresh bytes that only exist here".to_vec();
    let d = desc(oci_rs_image::media::OCI_LAYER_GZIP, &other);
    assert!(!dst
        .mount_blob(&d, &(reg.addr.clone(), "mount/a".into()))
        .await
        .unwrap());
    let o = c
        .push_blob(&b, &d, reader(other.clone()), Some(&a))
        .await
        .unwrap();
    assert_eq!(o, PushOutcome::Uploaded);
    assert_eq!(
        read_all(c.blob(&b, &d).await.unwrap()).await.unwrap(),
        other
    );
}

#[tokio::test]
async fn chunked_upload_of_multi_mb_blob() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start();
    let c = Client::builder()
        .monolithic_limit(1024 * 1024)
        .chunk_size(1024 * 1024 + 7)
        .build()
        .unwrap();
    let repo = Repository::new(&reg.addr, "big/blob").unwrap();
    // Real bytes: the registry binary itself, about 5 MB of it.
    let mut data = std::fs::read(REGISTRY_BIN).unwrap();
    data.truncate(5 * 1024 * 1024 + 123);
    assert!(data.len() > 3 * 1024 * 1024);
    let d = desc("application/octet-stream", &data);
    assert_eq!(
        c.push_blob(&repo, &d, reader(data.clone()), None)
            .await
            .unwrap(),
        PushOutcome::Uploaded
    );
    let got = read_all(c.blob(&repo, &d).await.unwrap()).await.unwrap();
    assert!(got == data, "chunked blob came back different");
}

#[tokio::test]
async fn push_of_wrong_bytes_stores_nothing() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start();
    for chunked in [false, true] {
        let mut b = Client::builder();
        if chunked {
            b = b.monolithic_limit(10).chunk_size(16);
        }
        let c = b.build().unwrap();
        let repo = Repository::new(&reg.addr, "bad/bytes").unwrap();
        let d = desc(
            oci_rs_image::media::OCI_LAYER_GZIP,
            b"the bytes that were promised",
        );
        let e = c
            .push_blob(
                &repo,
                &d,
                reader(b"other bytes than were promised".to_vec()),
                None,
            )
            .await
            .unwrap_err();
        assert!(e.is_integrity(), "chunked={chunked}: {e}");
        assert!(!c.blob_exists(&repo, d.digest()).await.unwrap());
        let hex = d.digest().digest().to_owned();
        assert!(reg.stored(&hex).is_empty(), "registry stored {hex}");
    }
}

#[tokio::test]
async fn referrers_through_tag_schema_fallback() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start();
    let c = client();
    let repo = Repository::new(&reg.addr, "ref/subject").unwrap();
    let img = small_image();
    push_image(&c, &repo, &img, "v1").await;
    assert!(c
        .referrers(&repo, img.manifest.digest(), None)
        .await
        .unwrap()
        .is_empty());
    // An artifact (a "signature") whose subject is the image.
    let sig = b"signature bytes".to_vec();
    let sig_desc = desc("application/vnd.example.sig", &sig);
    let empty = b"{}".to_vec();
    let empty_desc = desc("application/vnd.oci.empty.v1+json", &empty);
    c.push_blob(&repo, &sig_desc, reader(sig), None)
        .await
        .unwrap();
    c.push_blob(&repo, &empty_desc, reader(empty), None)
        .await
        .unwrap();
    let art = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci_rs_image::media::OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": empty_desc,
        "layers": [sig_desc],
        "subject": img.manifest.descriptor(),
        "annotations": {"org.example": "yes"},
    });
    let art = oci_rs_image::Manifest::parse(serde_json::to_vec(&art).unwrap(), None).unwrap();
    c.push_manifest(&repo, &art, None).await.unwrap();
    let refs = c
        .referrers(&repo, img.manifest.digest(), None)
        .await
        .unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].digest(), art.digest());
    assert_eq!(
        refs[0]
            .artifact_type()
            .as_ref()
            .map(|t| t.to_string())
            .as_deref(),
        Some("application/vnd.example.sig")
    );
    assert!(c
        .referrers(&repo, img.manifest.digest(), Some("application/other"))
        .await
        .unwrap()
        .is_empty());
    // Pushing it again does not duplicate the entry.
    c.push_manifest(&repo, &art, None).await.unwrap();
    assert_eq!(
        c.referrers(&repo, img.manifest.digest(), None)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn htpasswd_basic_auth() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start_with(Auth::Htpasswd {
        user: "alice".into(),
        pass: "s3cret-pass".into(),
    });
    let c = Client::builder()
        .credentials(
            StaticCredentials::new().with(&reg.addr, Credential::basic("alice", "s3cret-pass")),
        )
        .build()
        .unwrap();
    let repo = Repository::new(&reg.addr, "private/app").unwrap();
    c.ping(&reg.addr).await.unwrap();
    let img = small_image();
    push_image(&c, &repo, &img, "v1").await;
    let m = c
        .manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(m.digest(), img.manifest.digest());
    for (d, b) in &img.blobs {
        assert_eq!(&read_all(c.blob(&repo, d).await.unwrap()).await.unwrap(), b);
    }
    // The same credentials from a docker config.json (`auth` is base64 of user:password).
    let cfg = format!(
        r#"{{"auths":{{"http://{}":{{"auth":"YWxpY2U6czNjcmV0LXBhc3M="}}}}}}"#,
        reg.addr
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), cfg).unwrap();
    let from_file = Client::builder()
        .credentials(DockerConfig::from_path(&dir.path().join("config.json")).unwrap())
        .build()
        .unwrap();
    let m = from_file
        .manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(m.digest(), img.manifest.digest());
    let anon = client();
    let e = anon
        .manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    let wrong = Client::builder()
        .credentials(StaticCredentials::new().with(&reg.addr, Credential::basic("alice", "wrong")))
        .build()
        .unwrap();
    let e = wrong.ping(&reg.addr).await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    let e = wrong
        .manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    assert!(
        !format!("{e} {e:?}").contains("wrong"),
        "password leaked: {e:?}"
    );
}

#[tokio::test]
async fn token_auth_with_jwt_server() {
    if !have_registry() || !token::have_openssl() {
        eprintln!("skipping: needs docker-registry and openssl");
        return;
    }
    let ts = token::start("bob", "hunter22").await;
    let reg = Registry::start_with(Auth::Token {
        realm: ts.realm(),
        service: token::SERVICE.into(),
        issuer: token::ISSUER.into(),
        cert: ts.cert.clone(),
    });
    let repo = Repository::new(&reg.addr, "tok/app").unwrap();
    let c = Client::builder()
        .credentials(StaticCredentials::new().with(&reg.addr, Credential::basic("bob", "hunter22")))
        .build()
        .unwrap();
    c.ping(&reg.addr).await.unwrap();
    let img = small_image();
    push_image(&c, &repo, &img, "v1").await;
    // Mount needs push on the target and pull on the source in one token.
    let other = Repository::new(&reg.addr, "tok/other").unwrap();
    let (layer, bytes) = &img.blobs[1];
    assert_eq!(
        c.push_blob(&other, layer, reader(bytes.clone()), Some(&repo))
            .await
            .unwrap(),
        PushOutcome::Mounted
    );
    let asked: Vec<Vec<String>> = ts
        .server
        .requests()
        .iter()
        .map(|r| r.query_all("scope"))
        .collect();
    assert!(
        asked.iter().any(
            |s| s.contains(&"repository:tok/other:pull,push".to_string())
                && s.contains(&"repository:tok/app:pull".to_string())
        ),
        "{asked:?}"
    );
    let token_calls = ts.server.requests().len();
    // Cached tokens: pulling with the same scope again asks the token server at most once.
    let m = c
        .manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    c.manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    assert!(ts.server.requests().len() <= token_calls + 1);
    assert_eq!(m.digest(), img.manifest.digest());

    // Anonymous: pull-only tokens; push is refused with a clear error.
    let anon = client();
    let m = anon
        .manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(m.digest(), img.manifest.digest());
    let e = anon
        .push_manifest(&repo, &img.manifest, Some("v2"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Unauthorized { .. }) || e.status() == Some(401),
        "{e}"
    );

    // An identity token goes through the OAuth2 POST.
    let idt = Client::builder()
        .credentials(StaticCredentials::new().with(
            &reg.addr,
            Credential::IdentityToken(token::REFRESH_TOKEN.into()),
        ))
        .build()
        .unwrap();
    idt.push_manifest(&repo, &img.manifest, Some("v3"))
        .await
        .unwrap();
    assert!(ts.server.requests().iter().any(|r| r.method == "POST"));
    // Wrong password: the token server says 401.
    let bad = Client::builder()
        .credentials(StaticCredentials::new().with(&reg.addr, Credential::basic("bob", "nope")))
        .build()
        .unwrap();
    let e = bad
        .manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
}

#[tokio::test]
async fn skopeo_reads_what_we_push_and_we_read_its_docker_schema2() {
    if !have_registry() {
        return;
    }
    if std::process::Command::new("skopeo")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: skopeo is not installed");
        return;
    }
    let reg = Registry::start();
    let c = client();
    let repo = Repository::new(&reg.addr, "interop/oci").unwrap();
    let img = small_image();
    push_image(&c, &repo, &img, "v1").await;
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/interop/oci:v1", reg.addr))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, img.manifest.bytes().to_vec());
    // skopeo converts to Docker schema 2 on its way to another repository.
    let st = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--format",
            "v2s2",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg(format!("docker://{}/interop/oci:v1", reg.addr))
        .arg(format!("docker://{}/interop/docker:v1", reg.addr))
        .status()
        .unwrap();
    assert!(st.success());
    let drepo = Repository::new(&reg.addr, "interop/docker").unwrap();
    let m = c
        .manifest(&drepo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(m.kind(), oci_rs_image::ManifestKind::DockerManifest);
    let d = c
        .resolve(&drepo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(d.digest(), m.digest());
    for child in m.children() {
        let bytes = read_all(c.blob(&drepo, &child).await.unwrap())
            .await
            .unwrap();
        assert_eq!(bytes.len() as u64, child.size());
    }
}

#[tokio::test]
async fn tls_registry_with_private_ca_and_no_plain_http_fallback() {
    if !have_registry() {
        return;
    }
    let Some((_certs, ca, leaf, key)) = tls_certificates() else {
        return;
    };
    let reg = Registry::start_full(Auth::None, Some((leaf, key)));
    let repo = Repository::new(&reg.addr, "tls/app").unwrap();
    let c = Client::builder()
        .https_registry(&reg.addr)
        .root_certificates_pem(&std::fs::read(&ca).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let img = small_image();
    push_image(&c, &repo, &img, "v1").await;
    let m = c
        .manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(m.digest(), img.manifest.digest());
    // Without the CA the certificate is refused; nothing falls back to plain HTTP.
    let untrusting = Client::builder()
        .https_registry(&reg.addr)
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let e = untrusting
        .manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e}");
}

#[tokio::test]
async fn registry_source_and_destination_pass_the_conformance_suite() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start();
    let repo = Repository::new(&reg.addr, "conformance/sample").unwrap();
    let dst = RegistryDestination::new(client(), repo.clone());
    let written = oci_rs_image::testing::write_sample(&dst, "1").await;
    let src = RegistrySource::new(client(), repo);
    oci_rs_image::testing::read_sample(&src, "1", &written).await;
}

//! Registry quirks, faults and hostile answers that the real registry cannot show, played by
//! an in-process hyper server. Each must end in a correct result or a clear error, with
//! nothing unverified stored.

#![allow(clippy::unwrap_used)]

mod common;

use common::server::{serve, Body, Request, Response};
use common::*;
use oci_rs_image::{BlobStore, BlobStoreExt, Expected, ManifestRef, MemoryStore};
use oci_rs_registry_client::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn client() -> Client {
    Client::builder().retry(fast_retry()).build().unwrap()
}

fn blob_data() -> Vec<u8> {
    // Real bytes: the start of the busybox binary.
    let mut d = std::fs::read("/bin/busybox")
        .unwrap_or_else(|_| (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect());
    d.truncate(300_000);
    d
}

fn manifest_bytes() -> Vec<u8> {
    image_from_layers(vec![layer_from_files(&["/etc/os-release"])])
        .manifest
        .bytes()
        .to_vec()
}

#[tokio::test]
async fn upload_without_location_is_a_clear_error() {
    let s = serve(|r: &Request| match r.method.as_str() {
        "HEAD" => Response::new(404),
        "POST" => Response::new(202),
        _ => Response::new(500),
    })
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let d = desc("application/octet-stream", b"abc");
    let e = client()
        .push_blob(&repo, &d, reader(b"abc".to_vec()), None)
        .await
        .unwrap_err();
    match &e {
        Error::InvalidResponse { reason, .. } => assert!(reason.contains("Location"), "{e}"),
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test]
async fn chunked_upload_accepts_201_on_patch_and_honours_min_chunk() {
    let data = blob_data();
    let received: Arc<Mutex<Vec<u8>>> = Arc::default();
    let rec = received.clone();
    let total = data.len();
    let s = serve(move |r: &Request| match (r.method.as_str(), r.path()) {
        ("HEAD", _) => Response::new(404),
        ("POST", "/v2/a/b/blobs/uploads/") => Response::new(202)
            .header("location", "/upload/1?_state=x")
            .header("oci-chunk-min-length", "100000"),
        ("PATCH", p) if p.starts_with("/upload/") => {
            let mut got = rec.lock().unwrap();
            let range = r.header("content-range").unwrap();
            let start: usize = range.split('-').next().unwrap().parse().unwrap();
            assert_eq!(start, got.len(), "Content-Range {range}");
            got.extend_from_slice(&r.body);
            // A quirk: 201 on PATCH, a relative Location, and a Range without "bytes=".
            Response::new(201)
                .header("location", format!("/upload/{}?_state=y", got.len()))
                .header("range", format!("0-{}", got.len() - 1))
        }
        ("PUT", p) if p.starts_with("/upload/") => {
            let got = rec.lock().unwrap();
            if got.len() == total
                && r.query("digest").as_deref() == Some(oci_rs_image::sha256(&got).as_ref())
            {
                Response::new(201)
            } else {
                Response::new(400)
            }
        }
        _ => Response::new(404),
    })
    .await;
    let c = Client::builder()
        .monolithic_limit(1000)
        .chunk_size(1000)
        .build()
        .unwrap();
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let d = desc("application/octet-stream", &data);
    assert_eq!(
        c.push_blob(&repo, &d, reader(data.clone()), None)
            .await
            .unwrap(),
        PushOutcome::Uploaded
    );
    assert!(*received.lock().unwrap() == data);
    let patches: Vec<usize> = s
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.body.len())
        .collect();
    // 300000 bytes in chunks of the registry's 100000-byte minimum.
    assert_eq!(patches, vec![100_000, 100_000, 100_000]);
}

#[tokio::test]
async fn tags_null_and_link_pagination_n_1() {
    let s = serve(|r: &Request| {
        if r.path() != "/v2/a/b/tags/list" {
            return Response::new(404);
        }
        assert_eq!(r.query("n").as_deref(), Some("1"));
        match r.query("last").as_deref() {
            None => Response::new(200)
                .header("link", r#"</v2/a/b/tags/list?n=1&last=a>; rel="next""#)
                .json(serde_json::json!({"name": "a/b", "tags": ["a"]})),
            Some("a") => Response::new(200)
                .header("link", r#"</v2/a/b/tags/list?n=1&last=b>; rel="next""#)
                .json(serde_json::json!({"name": "a/b", "tags": ["b"]})),
            Some("b") => Response::new(200).json(serde_json::json!({"name": "a/b", "tags": null})),
            _ => Response::new(400),
        }
    })
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    assert_eq!(client().tags(&repo, Some(1)).await.unwrap(), vec!["a", "b"]);
    let p = client().tags_page(&repo, Some(1), Some("b")).await.unwrap();
    assert!(p.items.is_empty() && p.next_last.is_none());
}

#[tokio::test]
async fn tags_link_to_another_origin_is_refused() {
    let s = serve(|_r: &Request| {
        Response::new(200)
            .header(
                "link",
                r#"<http://127.0.0.2:1/v2/a/b/tags/list?last=a>; rel="next""#,
            )
            .json(serde_json::json!({"tags": ["a"]}))
    })
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let e = client().tags(&repo, None).await.unwrap_err();
    assert!(matches!(e, Error::RefusedUrl { .. }), "{e}");
}

#[tokio::test]
async fn head_without_content_length_falls_back_to_get() {
    let m = manifest_bytes();
    let m2 = m.clone();
    let s = serve(move |r: &Request| match r.method.as_str() {
        "HEAD" => Response {
            status: 200,
            headers: vec![(
                "content-type".into(),
                oci_rs_image::media::OCI_MANIFEST.into(),
            )],
            body: Body::Unsized,
        },
        "GET" => Response::new(200)
            .header("content-type", oci_rs_image::media::OCI_MANIFEST)
            .body(m2.clone()),
        _ => Response::new(405),
    })
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let d = client()
        .resolve(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(d.digest(), &oci_rs_image::sha256(&m));
    assert_eq!(d.size(), m.len() as u64);
    assert_eq!(s.count("GET", "/manifests/v1"), 1);
}

#[tokio::test]
async fn unauthorized_without_challenge_is_a_clear_error() {
    let s = serve(|_r: &Request| Response::new(401)).await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let e = client()
        .manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap_err();
    match &e {
        Error::Unauthorized { reason, .. } => {
            assert!(reason.contains("without a WWW-Authenticate"), "{e}")
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(s.requests().len(), 1, "a 401 is not retried");
}

fn range_start(r: &Request) -> Option<usize> {
    r.header("range")?
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

#[tokio::test]
async fn blob_resumes_with_range_after_connection_reset() {
    let data = blob_data();
    let d2 = data.clone();
    let s = serve(move |r: &Request| match range_start(r) {
        None => Response {
            status: 200,
            headers: vec![("content-length".into(), d2.len().to_string())],
            body: Body::Abort(d2[..100_000].to_vec().into()),
        },
        Some(n) => Response::new(206)
            .header(
                "content-range",
                format!("bytes {n}-{}/{}", d2.len() - 1, d2.len()),
            )
            .body(d2[n..].to_vec()),
    })
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let d = desc("application/octet-stream", &data);
    let got = read_all(client().blob(&repo, &d).await.unwrap())
        .await
        .unwrap();
    assert!(got == data);
    let ranges: Vec<Option<usize>> = s.requests().iter().map(range_start).collect();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert!(
        ranges[1].is_some_and(|n| n > 0 && n <= 100_000),
        "{ranges:?}"
    );
}

#[tokio::test]
async fn blob_reread_when_registry_ignores_range() {
    let data = blob_data();
    let d2 = data.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let s = serve(move |_r: &Request| {
        if c2.fetch_add(1, Ordering::SeqCst) == 0 {
            Response {
                status: 200,
                headers: vec![("content-length".into(), d2.len().to_string())],
                body: Body::Abort(d2[..50_000].to_vec().into()),
            }
        } else {
            Response::new(200).body(d2.clone())
        }
    })
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let d = desc("application/octet-stream", &data);
    let got = read_all(client().blob(&repo, &d).await.unwrap())
        .await
        .unwrap();
    assert!(got == data);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn truncated_bodies_fail_after_bounded_resumes() {
    let data = blob_data();
    let d2 = data.clone();
    let s = serve(move |_r: &Request| Response {
        status: 200,
        headers: vec![("content-length".into(), d2.len().to_string())],
        body: Body::Abort(d2[..10].to_vec().into()),
    })
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let d = desc("application/octet-stream", &data);
    let c = Client::builder().max_resumes(2).build().unwrap();
    let store = MemoryStore::new();
    let mut r = c.blob(&repo, &d).await.unwrap();
    let e = store
        .put_stream(Expected::descriptor(&d), &mut r)
        .await
        .unwrap_err();
    assert!(!store.contains(d.digest()).await.unwrap(), "{e}");
    assert_eq!(s.requests().len(), 3, "first try and two resumes");
}

/// A blob shorter than its descriptor, served as distribution serves it: the whole (short)
/// body, then 416 for a `Range` that starts at its end. The resume learns there is no more:
/// a size mismatch, not the 416 of a transport failure, after one resume.
#[tokio::test]
async fn a_blob_shorter_than_its_descriptor_is_a_size_mismatch() {
    let data = blob_data();
    let short = data[..data.len() - 1000].to_vec();
    let s = serve(move |r: &Request| match range_start(r) {
        Some(n) if n >= short.len() => Response::new(416),
        Some(n) => Response::new(206)
            .header(
                "content-range",
                format!("bytes {n}-{}/{}", short.len() - 1, short.len()),
            )
            .body(short[n..].to_vec()),
        None => Response::new(200).body(short.clone()),
    })
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let d = desc("application/octet-stream", &data);
    let e = read_all(client().blob(&repo, &d).await.unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, oci_rs_image::Error::SizeMismatch { .. }), "{e}");
    assert_eq!(s.requests().len(), 2, "the read and one resume");
    // Into a store through the unverified stream: refused there, nothing kept.
    let store = MemoryStore::new();
    let src = RegistrySource::new(client(), repo);
    let r = oci_rs_image::ImageSource::blob_unverified(&src, &d)
        .await
        .unwrap();
    let e = oci_rs_image::ImageDestination::put_blob(&store, &d, r)
        .await
        .unwrap_err();
    assert!(e.is_integrity(), "{e}");
    assert!(store.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn wrong_bytes_for_a_digest_are_refused_and_not_stored() {
    let data = blob_data();
    let mut wrong = data.clone();
    wrong[1234] ^= 0xff;
    let s = serve(move |_r: &Request| Response::new(200).body(wrong.clone())).await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let d = desc("application/octet-stream", &data);
    let store = MemoryStore::new();
    let mut r = client().blob(&repo, &d).await.unwrap();
    let e = store
        .put_stream(Expected::descriptor(&d), &mut r)
        .await
        .unwrap_err();
    assert!(
        matches!(e, oci_rs_image::Error::DigestMismatch { .. }),
        "{e}"
    );
    assert!(!store.contains(d.digest()).await.unwrap());
    assert!(store.list().await.unwrap().is_empty());
    // The same through ImageSource.
    let src = RegistrySource::new(client(), repo);
    let e = read_all(oci_rs_image::ImageSource::blob(&src, &d).await.unwrap())
        .await
        .unwrap_err();
    assert!(e.is_integrity(), "{e}");
}

/// Wrong, long and short bodies through the unverified stream that `copy` reads when the
/// destination checks what it stores: the store refuses them and keeps nothing.
#[tokio::test]
async fn unverified_streams_into_stores_are_checked_there() {
    use oci_rs_image::{ImageDestination, ImageSource, OciLayout};
    let data = blob_data();
    let mut wrong = data.clone();
    wrong[1234] ^= 0xff;
    let mut long = data.clone();
    long.extend_from_slice(b"and more");
    for (what, body) in [("wrong", wrong), ("long", long)] {
        let s = serve(move |_r: &Request| Response::new(200).body(body.clone())).await;
        let repo = Repository::new(&s.registry(), "a/b").unwrap();
        let d = desc("application/octet-stream", &data);
        let src = RegistrySource::new(client(), repo);
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path()).await.unwrap();
        let memory = MemoryStore::new();
        for dst in [&layout as &dyn ImageDestination, &memory] {
            assert!(dst.verifies_blobs());
            // A body longer than the descriptor may already be refused by its length.
            let e = match src.blob_unverified(&d).await {
                Ok(r) => dst.put_blob(&d, r).await.unwrap_err(),
                Err(e) => e,
            };
            assert!(e.is_integrity(), "{what}: {e}");
        }
        assert!(!layout.contains(d.digest()).await.unwrap(), "{what}");
        assert!(layout.list().await.unwrap().is_empty(), "{what}");
        assert!(memory.list().await.unwrap().is_empty(), "{what}");
    }
}

#[tokio::test]
async fn manifest_by_digest_with_wrong_bytes_is_refused() {
    let m = manifest_bytes();
    let mut other = m.clone();
    other.push(b' ');
    let s = serve(move |_r: &Request| {
        Response::new(200)
            .header("content-type", oci_rs_image::media::OCI_MANIFEST)
            .body(other.clone())
    })
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let e = client()
        .manifest(&repo, &ManifestRef::Digest(oci_rs_image::sha256(&m)))
        .await
        .unwrap_err();
    assert!(e.is_integrity(), "{e}");
    // By tag, a lying Docker-Content-Digest is caught too.
    let m2 = manifest_bytes();
    let s = serve(move |_r: &Request| {
        Response::new(200)
            .header("content-type", oci_rs_image::media::OCI_MANIFEST)
            .header(
                "docker-content-digest",
                oci_rs_image::sha256(b"something else").to_string(),
            )
            .body(m2.clone())
    })
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let e = client()
        .manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap_err();
    assert!(e.is_integrity(), "{e}");
}

#[tokio::test]
async fn retry_after_429_then_success() {
    let m = manifest_bytes();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let s = serve(move |_r: &Request| {
        if c2.fetch_add(1, Ordering::SeqCst) == 0 {
            Response::new(429).header("retry-after", "1")
        } else {
            Response::new(200)
                .header("content-type", oci_rs_image::media::OCI_MANIFEST)
                .body(m.clone())
        }
    })
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let start = Instant::now();
    client()
        .manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "Retry-After was not honoured"
    );
}

#[tokio::test]
async fn server_error_then_success_is_retried() {
    let m = manifest_bytes();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let s = serve(
        move |_r: &Request| match c2.fetch_add(1, Ordering::SeqCst) {
            0 => Response::new(500),
            1 => Response::new(503),
            _ => Response::new(200)
                .header("content-type", oci_rs_image::media::OCI_MANIFEST)
                .body(m.clone()),
        },
    )
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    client()
        .manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn not_found_is_never_retried() {
    let s = serve(|_r: &Request| {
        Response::new(404).json(serde_json::json!({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}))
    })
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let e = client()
        .manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap_err();
    assert!(e.is_not_found() && !e.can_retry(), "{e}");
    assert_eq!(e.codes(), vec!["MANIFEST_UNKNOWN"]);
    assert_eq!(s.requests().len(), 1);
}

#[tokio::test]
async fn blob_redirect_to_other_origin_gets_no_authorization() {
    let data = blob_data();
    let d2 = data.clone();
    // Blob storage on another port of 127.0.0.1: another origin.
    let storage = serve(move |_r: &Request| Response::new(200).body(d2.clone())).await;
    let target = format!("{}/storage/blob?sig=abc", storage.url());
    let registry = serve(move |r: &Request| {
        if r.header("authorization").as_deref() != Some("Basic dTpw") {
            return Response::new(401).header("www-authenticate", r#"Basic realm="test""#);
        }
        Response::new(307).header("location", target.clone())
    })
    .await;
    let c = Client::builder()
        .credentials(
            StaticCredentials::new().with(&registry.registry(), Credential::basic("u", "p")),
        )
        .build()
        .unwrap();
    let repo = Repository::new(&registry.registry(), "a/b").unwrap();
    let d = desc("application/octet-stream", &data);
    let got = read_all(c.blob(&repo, &d).await.unwrap()).await.unwrap();
    assert!(got == data);
    assert!(registry
        .requests()
        .iter()
        .any(|r| r.header("authorization").is_some()));
    let seen = storage.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        None,
        "credentials leaked to another origin"
    );
}

#[tokio::test]
async fn upload_location_on_other_host_gets_no_authorization() {
    let storage = serve(|r: &Request| match r.method.as_str() {
        "PUT" => Response::new(201),
        _ => Response::new(405),
    })
    .await;
    let loc = format!("{}/upload/xyz", storage.url());
    let registry = serve(move |r: &Request| {
        if r.header("authorization").is_none() {
            return Response::new(401).header("www-authenticate", r#"Basic realm="test""#);
        }
        match r.method.as_str() {
            "HEAD" => Response::new(404),
            "POST" => Response::new(202).header("location", loc.clone()),
            _ => Response::new(405),
        }
    })
    .await;
    let c = Client::builder()
        .credentials(
            StaticCredentials::new().with(&registry.registry(), Credential::basic("u", "p")),
        )
        .build()
        .unwrap();
    let repo = Repository::new(&registry.registry(), "a/b").unwrap();
    let d = desc("application/octet-stream", b"hello");
    c.push_blob(&repo, &d, reader(b"hello".to_vec()), None)
        .await
        .unwrap();
    let seen = storage.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body.as_ref(), b"hello");
    assert_eq!(
        seen[0].header("authorization"),
        None,
        "credentials leaked to another origin"
    );
}

#[tokio::test]
async fn oversized_manifest_is_refused() {
    let big = vec![b' '; 5 * 1024 * 1024];
    for chunked in [false, true] {
        let b2 = big.clone();
        let s = serve(move |_r: &Request| Response {
            status: 200,
            headers: vec![(
                "content-type".into(),
                oci_rs_image::media::OCI_MANIFEST.into(),
            )],
            body: if chunked {
                Body::Chunked(b2.clone().into())
            } else {
                Body::Bytes(b2.clone().into())
            },
        })
        .await;
        let repo = Repository::new(&s.registry(), "a/b").unwrap();
        let e = client()
            .manifest(&repo, &ManifestRef::Tag("v1".into()))
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::TooLarge { limit: 4194304, .. }),
            "chunked={chunked}: {e}"
        );
    }
}

#[tokio::test]
async fn oversized_token_answer_is_refused() {
    let token_server = serve(|_r: &Request| Response {
        status: 200,
        headers: vec![],
        body: Body::Chunked(vec![b'a'; 2 * 1024 * 1024].into()),
    })
    .await;
    let realm = format!("{}/token", token_server.url());
    let s = serve(move |_r: &Request| {
        Response::new(401).header(
            "www-authenticate",
            format!(r#"Bearer realm="{realm}",service="x""#),
        )
    })
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let e = client()
        .manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TooLarge { limit: 1048576, .. }), "{e}");
}

#[tokio::test]
async fn token_realm_with_non_http_scheme_is_refused() {
    for realm in [
        "file:///etc/passwd",
        "ftp://127.0.0.1/token",
        "javascript:alert(1)",
    ] {
        let s = serve(move |_r: &Request| {
            Response::new(401).header(
                "www-authenticate",
                format!(r#"Bearer realm="{realm}",service="x""#),
            )
        })
        .await;
        let repo = Repository::new(&s.registry(), "a/b").unwrap();
        let e = client()
            .manifest(&repo, &ManifestRef::Tag("v1".into()))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::RefusedUrl { .. }), "{realm}: {e}");
    }
}

#[tokio::test]
async fn upload_location_with_non_http_scheme_is_refused() {
    let s = serve(|r: &Request| match r.method.as_str() {
        "HEAD" => Response::new(404),
        "POST" => Response::new(202).header("location", "file:///tmp/evil"),
        _ => Response::new(405),
    })
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let d = desc("application/octet-stream", b"abc");
    let e = client()
        .push_blob(&repo, &d, reader(b"abc".to_vec()), None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RefusedUrl { .. }), "{e}");
}

#[tokio::test]
async fn bearer_token_refreshed_on_new_challenge() {
    let issued = Arc::new(AtomicUsize::new(0));
    let i2 = issued.clone();
    let tokens = serve(move |_r: &Request| {
        let n = i2.fetch_add(1, Ordering::SeqCst) + 1;
        Response::new(200).json(serde_json::json!({"token": format!("tok{n}"), "expires_in": 300}))
    })
    .await;
    let realm = format!("{}/token", tokens.url());
    let m = manifest_bytes();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let s = serve(move |r: &Request| {
        let n = c2.fetch_add(1, Ordering::SeqCst);
        let challenge =
            format!(r#"Bearer realm="{realm}",service="svc",scope="repository:a/b:pull""#);
        let auth = r.header("authorization");
        // tok1 is good for the first pull only; afterwards the registry wants a new token.
        let ok = match auth.as_deref() {
            Some("Bearer tok1") => n <= 1,
            Some("Bearer tok2") => true,
            _ => false,
        };
        if ok {
            Response::new(200)
                .header("content-type", oci_rs_image::media::OCI_MANIFEST)
                .body(m.clone())
        } else {
            Response::new(401).header("www-authenticate", challenge)
        }
    })
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let c = client();
    c.manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(issued.load(Ordering::SeqCst), 1);
    c.manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(issued.load(Ordering::SeqCst), 2);
    let scopes = tokens.requests()[0].query_all("scope");
    assert_eq!(scopes, vec!["repository:a/b:pull"]);
    assert_eq!(
        tokens.requests()[0].query("service").as_deref(),
        Some("svc")
    );
}

#[tokio::test]
async fn mirror_falls_back_to_origin() {
    let m = manifest_bytes();
    let mirror = serve(|_r: &Request| Response::new(404)).await;
    let origin = serve(move |_r: &Request| {
        Response::new(200)
            .header("content-type", oci_rs_image::media::OCI_MANIFEST)
            .body(m.clone())
    })
    .await;
    let c = Client::builder()
        .mirror(&origin.registry(), &mirror.registry())
        .build()
        .unwrap();
    let repo = Repository::new(&origin.registry(), "a/b").unwrap();
    c.manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(mirror.requests().len(), 1);
    assert_eq!(origin.requests().len(), 1);
}

#[tokio::test]
async fn secrets_never_show_in_debug_or_errors() {
    let s =
        serve(|_r: &Request| Response::new(401).header("www-authenticate", r#"Basic realm="x""#))
            .await;
    let creds =
        StaticCredentials::new().with(&s.registry(), Credential::basic("user", "pw-SECRET-1"));
    let c = Client::builder().credentials(creds).build().unwrap();
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let e = c
        .manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap_err();
    let shown = format!("{e} {e:?} {c:?}");
    assert!(
        !shown.contains("pw-SECRET-1") && !shown.contains("dXNlcjpwdy1TRUNSRVQtMQ"),
        "{shown}"
    );
}

#[tokio::test]
async fn slow_body_is_resumed_after_read_timeout() {
    let data = blob_data();
    let d2 = data.clone();
    let s = serve(move |r: &Request| match range_start(r) {
        None => Response {
            status: 200,
            headers: vec![("content-length".into(), d2.len().to_string())],
            body: Body::Stall(d2[..70_000].to_vec().into()),
        },
        Some(n) => Response::new(206)
            .header(
                "content-range",
                format!("bytes {n}-{}/{}", d2.len() - 1, d2.len()),
            )
            .body(d2[n..].to_vec()),
    })
    .await;
    let c = Client::builder()
        .read_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let d = desc("application/octet-stream", &data);
    let got = read_all(c.blob(&repo, &d).await.unwrap()).await.unwrap();
    assert!(got == data);
    assert_eq!(s.requests().len(), 2);
}

#[tokio::test]
async fn failed_patch_continues_from_the_upload_status() {
    let data = blob_data();
    let received: Arc<Mutex<Vec<u8>>> = Arc::default();
    let rec = received.clone();
    let patches = Arc::new(AtomicUsize::new(0));
    let p2 = patches.clone();
    let total = data.len();
    let s = serve(move |r: &Request| match (r.method.as_str(), r.path()) {
        ("HEAD", _) => Response::new(404),
        ("POST", _) => Response::new(202).header("location", "/upload/1"),
        ("GET", "/upload/1") => {
            let got = rec.lock().unwrap().len();
            Response::new(204).header("range", format!("0-{}", got.saturating_sub(1)))
        }
        ("PATCH", "/upload/1") => {
            let mut got = rec.lock().unwrap();
            got.extend_from_slice(&r.body);
            // The second chunk lands, but its answer is a 503.
            if p2.fetch_add(1, Ordering::SeqCst) == 1 {
                return Response::new(503);
            }
            Response::new(202)
                .header("location", "/upload/1")
                .header("range", format!("0-{}", got.len() - 1))
        }
        ("PUT", "/upload/1") => {
            let got = rec.lock().unwrap();
            if got.len() == total
                && r.query("digest").as_deref() == Some(oci_rs_image::sha256(&got).as_ref())
            {
                Response::new(201)
            } else {
                Response::new(400)
            }
        }
        _ => Response::new(404),
    })
    .await;
    let c = Client::builder()
        .retry(fast_retry())
        .monolithic_limit(1000)
        .chunk_size(100_000)
        .build()
        .unwrap();
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let d = desc("application/octet-stream", &data);
    c.push_blob(&repo, &d, reader(data.clone()), None)
        .await
        .unwrap();
    assert!(*received.lock().unwrap() == data);
    assert_eq!(patches.load(Ordering::SeqCst), 3, "no chunk sent twice");
    assert_eq!(s.count("GET", "/upload/1"), 1);
}

#[tokio::test]
async fn downloads_are_bounded_by_the_concurrency_limit() {
    let data = blob_data();
    let d2 = data.clone();
    let s = serve(move |_r: &Request| Response::new(200).body(d2.clone())).await;
    let c = Client::builder()
        .max_concurrent_downloads(1)
        .build()
        .unwrap();
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let d = desc("application/octet-stream", &data);
    let first = c.blob(&repo, &d).await.unwrap();
    // While the first stream is open, a second one waits for its turn.
    let waiting = tokio::time::timeout(Duration::from_millis(200), c.blob(&repo, &d)).await;
    assert!(
        waiting.is_err(),
        "second download started while the first was open"
    );
    assert_eq!(read_all(first).await.unwrap(), data);
    let second = tokio::time::timeout(Duration::from_secs(5), c.blob(&repo, &d))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read_all(second).await.unwrap(), data);
}

#[tokio::test]
async fn lost_answer_to_the_final_put_is_checked_with_head() {
    let stored = Arc::new(AtomicUsize::new(0));
    let s2 = stored.clone();
    let s = serve(move |r: &Request| match r.method.as_str() {
        "HEAD" if s2.load(Ordering::SeqCst) == 0 => Response::new(404),
        "HEAD" => Response::new(200).header("content-length", "5"),
        "POST" => Response::new(202).header("location", "/upload/1"),
        "PUT" => {
            // Committed, but the answer says otherwise.
            s2.store(1, Ordering::SeqCst);
            Response::new(400)
        }
        _ => Response::new(405),
    })
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let d = desc("application/octet-stream", b"hello");
    client()
        .push_blob(&repo, &d, reader(b"hello".to_vec()), None)
        .await
        .unwrap();
    assert_eq!(
        s.count("DELETE", "/upload/1"),
        0,
        "a committed upload is not cancelled"
    );
}

#[tokio::test]
async fn bearer_token_refreshed_on_expiry_without_a_401() {
    let issued = Arc::new(AtomicUsize::new(0));
    let i2 = issued.clone();
    let tokens = serve(move |_r: &Request| {
        let n = i2.fetch_add(1, Ordering::SeqCst) + 1;
        Response::new(200)
            .json(serde_json::json!({"access_token": format!("tok{n}"), "expires_in": 1}))
    })
    .await;
    let realm = format!("{}/token", tokens.url());
    let m = manifest_bytes();
    let s = serve(move |r: &Request| match r.header("authorization") {
        Some(a) if a.starts_with("Bearer tok") => Response::new(200)
            .header("content-type", oci_rs_image::media::OCI_MANIFEST)
            .body(m.clone()),
        _ => Response::new(401).header(
            "www-authenticate",
            format!(r#"Bearer realm="{realm}",service="svc""#),
        ),
    })
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let c = client();
    c.manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    c.manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(issued.load(Ordering::SeqCst), 1, "a live token is reused");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = s.requests().len();
    c.manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(
        issued.load(Ordering::SeqCst),
        2,
        "an expired token is replaced"
    );
    assert_eq!(s.requests().len(), before + 1, "no 401 round trip needed");
    assert_eq!(
        s.requests()
            .last()
            .unwrap()
            .header("authorization")
            .as_deref(),
        Some("Bearer tok2")
    );
}

#[tokio::test]
async fn realm_on_another_origin_gets_basic_only_and_registry_gets_bearer_only() {
    let tokens = serve(|r: &Request| match r.header("authorization").as_deref() {
        Some("Basic dTpw") => {
            Response::new(200).json(serde_json::json!({"token": "registry-token"}))
        }
        _ => Response::new(401),
    })
    .await;
    let realm = format!("{}/token", tokens.url());
    let m = manifest_bytes();
    let s = serve(
        move |r: &Request| match r.header("authorization").as_deref() {
            Some("Bearer registry-token") => Response::new(200)
                .header("content-type", oci_rs_image::media::OCI_MANIFEST)
                .body(m.clone()),
            _ => Response::new(401).header(
                "www-authenticate",
                format!(r#"Bearer realm="{realm}",service="svc""#),
            ),
        },
    )
    .await;
    let c = Client::builder()
        .credentials(StaticCredentials::new().with(&s.registry(), Credential::basic("u", "p")))
        .build()
        .unwrap();
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    c.manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap();
    for r in s.requests() {
        let a = r.header("authorization").unwrap_or_default();
        assert!(!a.starts_with("Basic"), "registry got the password: {a}");
    }
    for r in tokens.requests() {
        let a = r.header("authorization").unwrap_or_default();
        assert!(
            !a.starts_with("Bearer"),
            "token server got the registry token"
        );
    }
}

#[tokio::test]
async fn redirect_loops_end_in_an_error() {
    let s = serve(|r: &Request| Response::new(302).header("location", r.uri.clone())).await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let d = desc("application/octet-stream", b"x");
    let Err(e) = client().blob(&repo, &d).await else {
        panic!("a redirect loop gave a blob")
    };
    assert!(matches!(e, Error::InvalidResponse { .. }), "{e}");
    assert_eq!(s.requests().len(), 11);
}

#[tokio::test]
async fn content_type_contradicting_the_document_is_refused() {
    let m = manifest_bytes();
    let s = serve(move |_r: &Request| {
        Response::new(200)
            .header("content-type", oci_rs_image::media::OCI_INDEX)
            .body(m.clone())
    })
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let e = client()
        .manifest(&repo, &ManifestRef::Tag("v1".into()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Image(_)), "{e}");
}

#[tokio::test]
async fn redirect_from_the_registry_to_a_non_http_scheme_is_refused() {
    let s = serve(|_r: &Request| Response::new(307).header("location", "file:///etc/passwd")).await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let d = desc("application/octet-stream", b"x");
    let Err(e) = client().blob(&repo, &d).await else {
        panic!("followed a file: redirect")
    };
    assert!(matches!(e, Error::RefusedUrl { .. }), "{e}");
}

#[tokio::test]
async fn plain_http_registry_reached_over_tls_says_so() {
    let s = serve(|_: &Request| Response::new(200)).await;
    let c = Client::builder()
        .retry(fast_retry())
        .https_registry(&s.registry())
        .build()
        .unwrap();
    let e = c.ping(&s.registry()).await.unwrap_err();
    assert!(matches!(e, Error::PlainHttpServer { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("server gave an HTTP response to an HTTPS client"),
        "{e}"
    );
}

// Time: a flaky link that keeps making progress, and peers that send one byte a while.

/// The answer to a blob GET honouring `Range: bytes=N-`: 200 or 206 with the length of the
/// rest, its body made by `body` from the rest of `data`.
fn ranged(r: &Request, data: &[u8], body: impl Fn(&[u8]) -> Body) -> Response {
    let n = range_start(r).unwrap_or(0);
    let mut resp = Response {
        status: if n == 0 { 200 } else { 206 },
        headers: vec![("content-length".into(), (data.len() - n).to_string())],
        body: body(&data[n..]),
    };
    if n > 0 {
        resp = resp.header(
            "content-range",
            format!("bytes {n}-{}/{}", data.len() - 1, data.len()),
        );
    }
    resp
}

#[tokio::test]
async fn long_blob_over_a_flaky_link_arrives_while_each_attempt_progresses() {
    let data = blob_data();
    let d2 = data.clone();
    // Every answer breaks after 20 000 bytes: 15 drops for 300 000 bytes, more than the
    // five resumes that used to be the limit however much each attempt brought.
    let s = serve(move |r: &Request| {
        ranged(r, &d2, |rest| {
            Body::Abort(rest[..rest.len().min(20_000)].to_vec().into())
        })
    })
    .await;
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let d = desc("application/octet-stream", &data);
    let got = read_all(client().blob(&repo, &d).await.unwrap())
        .await
        .unwrap();
    assert!(got == data);
    assert!(s.requests().len() >= 15, "{}", s.requests().len());
}

#[tokio::test]
async fn blob_trickling_under_the_minimum_rate_fails_in_bounded_time() {
    let data = blob_data();
    let d2 = data.clone();
    let s = serve(move |r: &Request| {
        ranged(r, &d2, |rest| {
            Body::Drip(rest.to_vec().into(), Duration::from_millis(20))
        })
    })
    .await;
    let c = Client::builder()
        .retry(fast_retry())
        .max_resumes(2)
        .min_blob_rate(10_000, Duration::from_millis(300))
        .build()
        .unwrap();
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let d = desc("application/octet-stream", &data);
    let started = Instant::now();
    let e = read_all(c.blob(&repo, &d).await.unwrap())
        .await
        .unwrap_err();
    let msg = oci_rs_image::chain(&e);
    assert!(msg.contains("bytes/s"), "{msg}");
    assert!(msg.contains(d.digest().digest()), "names the blob: {msg}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.requests().len(), 3, "the first try and two resumes");
}

/// `ADD URL` and `import URL` read a body through `UrlSource::fetch`: a server that drips
/// it (a byte every 20 ms, which no read timeout catches) is cut off by the minimum rate,
/// with an error that names the URL; one that sends at speed is read whole.
#[tokio::test]
async fn a_url_body_trickling_under_the_minimum_rate_fails_in_bounded_time() {
    use oci_rs_image::UrlSource;
    use tokio::io::AsyncReadExt;
    let data = blob_data();
    let d2 = data.clone();
    let s = serve(move |r: &Request| {
        let body = if r.path().ends_with("/slow") {
            Body::Drip(d2.clone().into(), Duration::from_millis(20))
        } else {
            Body::Bytes(d2.clone().into())
        };
        Response {
            status: 200,
            headers: vec![("content-length".into(), d2.len().to_string())],
            body,
        }
    })
    .await;
    let c = Client::builder()
        .min_blob_rate(10_000, Duration::from_millis(300))
        .build()
        .unwrap();
    let mut fast = Vec::new();
    c.fetch(&format!("{}/files/fast", s.url()))
        .await
        .unwrap()
        .read_to_end(&mut fast)
        .await
        .unwrap();
    assert!(fast == data);
    let started = Instant::now();
    let mut slow = Vec::new();
    let e = c
        .fetch(&format!("{}/files/slow", s.url()))
        .await
        .unwrap()
        .read_to_end(&mut slow)
        .await
        .unwrap_err();
    let msg = oci_rs_image::chain(&e);
    assert!(
        msg.contains("bytes/s") && msg.contains("/files/slow"),
        "{msg}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn manifest_trickling_past_the_deadline_fails() {
    let body = manifest_bytes();
    let s = serve(move |_: &Request| Response {
        status: 200,
        headers: vec![
            ("content-length".into(), body.len().to_string()),
            (
                "content-type".into(),
                "application/vnd.oci.image.manifest.v1+json".into(),
            ),
        ],
        body: Body::Drip(body.clone().into(), Duration::from_millis(50)),
    })
    .await;
    let c = Client::builder()
        .retry(fast_retry())
        .request_deadline(Duration::from_millis(500))
        .build()
        .unwrap();
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let started = Instant::now();
    let e = c
        .manifest(&repo, &ManifestRef::Tag("latest".into()))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?} {e}",
        started.elapsed()
    );
    // The error names the registry and the object.
    let msg = oci_rs_image::chain(&e);
    assert!(msg.contains(&s.registry()), "{msg}");
    assert!(msg.contains("a/b") && msg.contains("latest"), "{msg}");
}

#[tokio::test]
async fn a_given_http_client_is_the_one_used() {
    let agents: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = agents.clone();
    let s = serve(move |r: &Request| {
        let ua = r
            .headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        seen.lock().unwrap().push(ua);
        Response::new(404)
    })
    .await;
    let http = reqwest::Client::builder()
        .user_agent("embedder/1.0")
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let c = Client::builder()
        .retry(fast_retry())
        .http_client(http)
        .build()
        .unwrap();
    let repo = Repository::new(&s.registry(), "a/b").unwrap();
    let e = c
        .manifest(&repo, &ManifestRef::Tag("x".into()))
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let agents = agents.lock().unwrap();
    assert!(!agents.is_empty());
    assert!(agents.iter().all(|a| a == "embedder/1.0"), "{agents:?}");
}

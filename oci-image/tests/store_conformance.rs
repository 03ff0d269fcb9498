//! One conformance suite run over every store: the in-memory store and the OCI layout.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use oci_rs_image::oci_spec::image::{Descriptor, MediaType};
use oci_rs_image::{
    descriptor, parse_digest, sha256, BlobStore, BlobStoreExt, Error, Expected, ImageDestination,
    ImageSource, Manifest, ManifestRef, MemoryStore, OciLayout, ReferenceStore,
};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

trait Store: BlobStore + ReferenceStore + ImageSource + ImageDestination + 'static {}
impl<T: BlobStore + ReferenceStore + ImageSource + ImageDestination + 'static> Store for T {}

fn blob_desc(data: &[u8]) -> Descriptor {
    descriptor(MediaType::ImageLayerGzip, sha256(data), data.len() as u64)
}

async fn read_all(store: &dyn BlobStore, desc: &Descriptor) -> Result<Vec<u8>, Error> {
    let mut r = store.open(desc).await?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.map_err(Error::from_io)?;
    Ok(out)
}

async fn roundtrip(store: Arc<dyn Store>) {
    let data = b"some layer bytes".repeat(1000);
    let desc = blob_desc(&data);
    assert!(!store.contains(desc.digest()).await.unwrap());
    assert!(matches!(
        store.open(&desc).await.map(|_| ()),
        Err(Error::BlobNotFound { .. })
    ));
    let info = store.put_bytes(Bytes::from(data.clone())).await.unwrap();
    assert_eq!(&info.digest, desc.digest());
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(
        store.stat(desc.digest()).await.unwrap(),
        Some(data.len() as u64)
    );
    assert_eq!(read_all(&*store, &desc).await.unwrap(), data);
    assert!(BlobStore::list(&*store)
        .await
        .unwrap()
        .contains(desc.digest()));
    // Writing the same blob again is fine.
    store.put_bytes(Bytes::from(data.clone())).await.unwrap();
    assert!(store.delete(desc.digest()).await.unwrap());
    assert!(!store.delete(desc.digest()).await.unwrap());
    assert!(!store.contains(desc.digest()).await.unwrap());
}

async fn wrong_content_leaves_nothing(store: Arc<dyn Store>) {
    let data = b"the real content";
    let desc = blob_desc(data);
    // Wrong bytes of the right size.
    let mut w = store.ingest(Expected::descriptor(&desc)).await.unwrap();
    w.write_all(b"the fake content").await.unwrap();
    let e = w.commit().await.unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    // Short.
    let mut w = store.ingest(Expected::descriptor(&desc)).await.unwrap();
    w.write_all(b"the real").await.unwrap();
    let e = w.commit().await.unwrap_err();
    assert!(matches!(e, Error::SizeMismatch { .. }), "{e}");
    // Overrun fails at the write.
    let mut w = store.ingest(Expected::descriptor(&desc)).await.unwrap();
    let e = w.write_all(b"the real content and more").await.unwrap_err();
    assert!(
        matches!(Error::from_io(e), Error::SizeExceeded { .. }),
        "overrun must be a SizeExceeded"
    );
    drop(w);
    // Dropped without commit.
    let mut w = store.ingest(Expected::descriptor(&desc)).await.unwrap();
    w.write_all(data).await.unwrap();
    drop(w);
    assert!(!store.contains(desc.digest()).await.unwrap());
    assert!(BlobStore::list(&*store).await.unwrap().is_empty());
}

async fn open_checks_descriptor(store: Arc<dyn Store>) {
    let data = b"0123456789";
    store.put_bytes(Bytes::from_static(data)).await.unwrap();
    let mut lying = blob_desc(data);
    lying.set_size(5);
    let e = read_all(&*store, &lying).await.unwrap_err();
    assert!(e.is_integrity(), "{e}");
    let mut longer = blob_desc(data);
    longer.set_size(11);
    let e = read_all(&*store, &longer).await.unwrap_err();
    assert!(e.is_integrity(), "{e}");
}

async fn references(store: Arc<dyn Store>) {
    let m = Manifest::parse(
        &br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#[..],
        None,
    )
    .unwrap();
    store.put_manifest(&m, Some("v1")).await.unwrap();
    store.put_manifest(&m, Some("latest")).await.unwrap();
    assert_eq!(store.resolve("v1").await.unwrap().digest(), m.digest());
    let names: Vec<String> = ReferenceStore::list(&*store)
        .await
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["latest", "v1"]);
    let got = store
        .manifest(&ManifestRef::Tag("latest".into()))
        .await
        .unwrap();
    assert_eq!(got.bytes(), m.bytes());
    let got = store
        .manifest(&ManifestRef::Digest(m.digest().clone()))
        .await
        .unwrap();
    assert_eq!(got.digest(), m.digest());
    assert!(store.remove("v1").await.unwrap());
    assert!(!store.remove("v1").await.unwrap());
    assert!(matches!(
        store.resolve("v1").await,
        Err(Error::ReferenceNotFound { .. })
    ));
    for bad in ["", "../escape", "a b", "x/../../y"] {
        let e = store.set(bad, &m.descriptor()).await.unwrap_err();
        assert!(
            matches!(e, Error::InvalidReferenceName { .. }),
            "{bad:?}: {e}"
        );
    }
}

async fn concurrent_writers(store: Arc<dyn Store>) {
    let data = Bytes::from(vec![7u8; 256 * 1024]);
    let m = Manifest::parse(
        &br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#[..],
        None,
    )
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        let data = data.clone();
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            store.put_bytes(data).await.unwrap();
            store
                .put_manifest(&m, Some(&format!("tag{i}")))
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(ReferenceStore::list(&*store).await.unwrap().len(), 16);
    let desc = blob_desc(&data);
    assert_eq!(read_all(&*store, &desc).await.unwrap(), data);
}

macro_rules! conformance {
    ($($name:ident),*) => {
        mod memory {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(Arc::new(MemoryStore::new())).await; })*
        }
        mod layout {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let dir = tempfile::tempdir().unwrap();
                let store = OciLayout::create(dir.path()).await.unwrap();
                super::$name(Arc::new(store)).await;
                // Whatever happened, no temporary file is left behind and every blob file is
                // named by its content.
                let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .filter(|n| n.starts_with(".ingest-"))
                    .collect();
                assert!(leftovers.is_empty(), "{leftovers:?}");
                for e in std::fs::read_dir(dir.path().join("blobs/sha256")).unwrap() {
                    let e = e.unwrap();
                    let data = std::fs::read(e.path()).unwrap();
                    assert_eq!(sha256(&data).digest(), e.file_name().to_str().unwrap());
                }
            })*
        }
    };
}

conformance!(
    roundtrip,
    wrong_content_leaves_nothing,
    open_checks_descriptor,
    references,
    concurrent_writers
);

#[tokio::test]
async fn hostile_digest_strings_never_reach_a_path() {
    for bad in [
        "sha256:../../x",
        "sha256:/etc/passwd",
        "sha256:ABCDEF",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256:0123",
        "sha256",
    ] {
        assert!(parse_digest(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn layout_detects_a_blob_corrupted_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = OciLayout::create(dir.path()).await.unwrap();
    let data = b"original blob content";
    let info = store.put_bytes(Bytes::from_static(data)).await.unwrap();
    let path = store.blob_path(&info.digest).unwrap();
    std::fs::write(&path, b"tampered blob content").unwrap();
    let e = read_all(&store, &blob_desc(data)).await.unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    std::fs::write(&path, b"original").unwrap();
    let e = read_all(&store, &blob_desc(data)).await.unwrap_err();
    assert!(matches!(e, Error::SizeMismatch { .. }), "{e}");
}

#[tokio::test]
async fn layout_refuses_broken_layout_files() {
    let dir = tempfile::tempdir().unwrap();
    assert!(OciLayout::open(dir.path())
        .await
        .unwrap_err()
        .is_not_found());
    std::fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"2.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("index.json"),
        r#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .unwrap();
    let e = OciLayout::open(dir.path()).await.unwrap_err();
    assert!(matches!(e, Error::InvalidLayout { .. }), "{e}");
    std::fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("index.json"), "not json").unwrap();
    let e = OciLayout::open(dir.path()).await.unwrap_err();
    assert!(matches!(e, Error::InvalidLayout { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_handles_on_one_layout_do_not_lose_tags() {
    let dir = tempfile::tempdir().unwrap();
    let a = OciLayout::create(dir.path()).await.unwrap();
    let b = OciLayout::open(dir.path()).await.unwrap();
    let desc = blob_desc(b"x");
    let mut tasks = Vec::new();
    for i in 0..32 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        let desc = desc.clone();
        tasks.push(tokio::spawn(async move {
            s.set(&format!("t{i}"), &desc).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(ReferenceStore::list(&a).await.unwrap().len(), 32);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 32);
}

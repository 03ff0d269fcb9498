//! Conformance tests for implementations of [`BlobStore`], [`ReferenceStore`],
//! [`ImageDestination`] and [`ImageSource`] (cargo feature `testing`), in the manner of
//! object_store's `integration` module. Each function panics, saying which rule broke, when an
//! implementation breaks a rule the rest of the family relies on. Call them from a test of
//! your own:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use oci_rs_image::{testing, MemoryStore};
//! let store = MemoryStore::new();
//! testing::blob_store(&store).await;
//! testing::reference_store(&store).await;
//! let written = testing::write_sample(&store, "sample:1").await;
//! testing::read_sample(&store, "sample:1", &written).await;
//! # }
//! ```
//!
//! The crate runs them over [`MemoryStore`], [`OciLayout`](crate::OciLayout)
//! and the archive writer and reader; oci-rs-registry-client runs the transfer pair against
//! a real registry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::store::{BlobStore, BlobStoreExt, Expected, ReferenceStore};
use crate::transfer::{ImageDestination, ImageSource, ManifestRef};
use crate::{copy, CopyOptions, ImageBuilder, Manifest, MemoryStore};
use bytes::Bytes;
use oci_spec::image::{Descriptor, MediaType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn descriptor_of(bytes: &[u8]) -> Descriptor {
    crate::manifest::descriptor(
        MediaType::Other("application/octet-stream".into()),
        crate::sha256(bytes),
        bytes.len() as u64,
    )
}

async fn read_all(store: &dyn BlobStore, desc: &Descriptor) -> Vec<u8> {
    let mut r = store
        .open(desc)
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", desc.digest()));
    let mut out = Vec::new();
    r.read_to_end(&mut out)
        .await
        .unwrap_or_else(|e| panic!("reading {}: {e}", desc.digest()));
    out
}

/// Every rule of a [`BlobStore`]: what is written reads back; a blob is visible only whole
/// and verified; a wrong digest or size is an error and leaves nothing; writing twice is
/// harmless; delete, list, stat and `contains` agree; a missing blob is `is_not_found()`.
pub async fn blob_store(store: &dyn BlobStore) {
    let data = b"conformance: a blob\n".to_vec();
    let desc = descriptor_of(&data);
    // Written, then read back whole, by stat, contains, list and read_bytes.
    let info = store.put_bytes(Bytes::from(data.clone())).await.unwrap();
    assert_eq!(info.digest, *desc.digest(), "put_bytes digest");
    assert_eq!(info.size, data.len() as u64, "put_bytes size");
    assert_eq!(
        store.stat(desc.digest()).await.unwrap(),
        Some(data.len() as u64),
        "stat"
    );
    assert!(
        store.contains(desc.digest()).await.unwrap(),
        "contains after put"
    );
    assert!(
        store.list().await.unwrap().contains(desc.digest()),
        "list after put"
    );
    assert_eq!(
        read_all(store, &desc).await,
        data,
        "open reads back what was put"
    );
    assert_eq!(
        store.read_bytes(&desc, 1 << 20).await.unwrap(),
        Bytes::from(data.clone()),
        "read_bytes"
    );
    // Writing the same blob again is harmless.
    store.put_bytes(Bytes::from(data.clone())).await.unwrap();
    assert_eq!(
        read_all(store, &desc).await,
        data,
        "a second put changes nothing"
    );
    // The empty blob is a blob.
    let empty = descriptor_of(b"");
    store.put_bytes(Bytes::new()).await.unwrap();
    assert_eq!(
        store.stat(empty.digest()).await.unwrap(),
        Some(0),
        "the empty blob"
    );

    // A stream whose bytes do not match its expected digest is refused, and nothing of it is
    // visible under that digest.
    let claimed = crate::sha256(b"what the descriptor claims");
    let mut w = store
        .ingest(Expected {
            digest: Some(claimed.clone()),
            size: None,
        })
        .await
        .unwrap();
    let wrote = w.write_all(b"something else").await;
    let committed = match wrote {
        Ok(()) => w.commit().await.is_ok(),
        Err(_) => false,
    };
    assert!(!committed, "a blob with the wrong digest was accepted");
    assert!(
        !store.contains(&claimed).await.unwrap(),
        "a blob with the wrong digest became visible"
    );
    // One that goes over its expected size is refused.
    let small = descriptor_of(b"four");
    let mut w = store.ingest(Expected::descriptor(&small)).await.unwrap();
    let over = match w.write_all(b"four and more").await {
        Ok(()) => w.commit().await.is_ok(),
        Err(_) => false,
    };
    assert!(!over, "a blob over its expected size was accepted");
    assert!(
        !store.contains(small.digest()).await.unwrap(),
        "an oversized blob became visible"
    );
    // One that stops short is refused.
    let mut w = store.ingest(Expected::descriptor(&small)).await.unwrap();
    w.write_all(b"fo").await.unwrap();
    assert!(w.commit().await.is_err(), "a short blob was accepted");
    assert!(
        !store.contains(small.digest()).await.unwrap(),
        "a short blob became visible"
    );

    // Delete, then everything says it is gone; a missing blob is not-found.
    assert!(
        store.delete(desc.digest()).await.unwrap(),
        "delete of a present blob"
    );
    assert!(
        !store.delete(desc.digest()).await.unwrap(),
        "delete of a missing blob"
    );
    assert!(
        !store.contains(desc.digest()).await.unwrap(),
        "contains after delete"
    );
    assert_eq!(
        store.stat(desc.digest()).await.unwrap(),
        None,
        "stat after delete"
    );
    assert!(
        !store.list().await.unwrap().contains(desc.digest()),
        "list after delete"
    );
    match store.open(&desc).await {
        Ok(_) => panic!("open of a deleted blob succeeded"),
        Err(e) => assert!(
            e.is_not_found(),
            "open of a missing blob: {e} is not not-found"
        ),
    }
}

/// Every rule of a [`ReferenceStore`]: set, resolve, list, replace and remove; a missing
/// name is `is_not_found()`.
pub async fn reference_store(store: &dyn ReferenceStore) {
    let a = descriptor_of(b"a");
    let b = descriptor_of(b"b");
    store.set("conformance:1", &a).await.unwrap();
    assert_eq!(
        store.resolve("conformance:1").await.unwrap().digest(),
        a.digest(),
        "resolve after set"
    );
    store.set("conformance:1", &b).await.unwrap();
    assert_eq!(
        store.resolve("conformance:1").await.unwrap().digest(),
        b.digest(),
        "set replaces"
    );
    let listed = store.list().await.unwrap();
    let hits: Vec<_> = listed
        .iter()
        .filter(|(n, _)| n == "conformance:1")
        .collect();
    assert_eq!(hits.len(), 1, "list names a reference once: {listed:?}");
    assert_eq!(hits[0].1.digest(), b.digest(), "list shows the replacement");
    assert!(
        store.remove("conformance:1").await.unwrap(),
        "remove of a present name"
    );
    assert!(
        !store.remove("conformance:1").await.unwrap(),
        "remove of a missing name"
    );
    match store.resolve("conformance:1").await {
        Ok(_) => panic!("resolve of a removed name succeeded"),
        Err(e) => assert!(
            e.is_not_found(),
            "resolve of a missing name: {e} is not not-found"
        ),
    }
}

/// A small image (a config, two layers) in a [`MemoryStore`]: what [`write_sample`] copies.
pub async fn sample_image() -> (MemoryStore, Manifest) {
    let store = MemoryStore::new();
    let mut b = ImageBuilder::new("linux", "amd64").cmd(["sh"]);
    for (i, text) in ["first layer\n", "second layer\n"].iter().enumerate() {
        let tar = one_file_tar(&format!("f{i}"), text.as_bytes());
        b.add_layer_tar(&store, &mut &tar[..], crate::Compression::Gzip, "sample")
            .await
            .unwrap();
    }
    let m = b.build(&store).await.unwrap();
    (store, m)
}

/// A ustar archive holding one regular file.
fn one_file_tar(name: &str, content: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", content.len()).as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

/// Copies [`sample_image`] into `dst` as `tag` (finished, as [`copy()`](crate::copy()) finishes it) and
/// returns its manifest, for [`read_sample`].
pub async fn write_sample(dst: &dyn ImageDestination, tag: &str) -> Manifest {
    let (src, m) = sample_image().await;
    copy(
        &src,
        dst,
        &ManifestRef::Digest(m.digest().clone()),
        &CopyOptions::default().tag(tag.to_owned()),
    )
    .await
    .unwrap_or_else(|e| panic!("copying the sample into the destination: {e}"));
    m
}

/// Reads back what [`write_sample`] wrote, from the source that sees the same content: the
/// manifest by tag and by digest with the same bytes, every blob with the same bytes, a
/// missing blob `is_not_found()`, and a blob asked for with a wrong size or digest never read
/// to the end without an error.
pub async fn read_sample(src: &dyn ImageSource, tag: &str, written: &Manifest) {
    let by_tag = src
        .manifest(&ManifestRef::Tag(tag.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("manifest by tag {tag}: {e}"));
    assert_eq!(by_tag.digest(), written.digest(), "the manifest by tag");
    assert_eq!(
        by_tag.bytes(),
        written.bytes(),
        "the manifest's exact bytes"
    );
    let by_digest = src
        .manifest(&ManifestRef::Digest(written.digest().clone()))
        .await
        .unwrap_or_else(|e| panic!("manifest by digest: {e}"));
    assert_eq!(by_digest.bytes(), written.bytes(), "the manifest by digest");
    let (mem, _) = sample_image().await;
    for child in written.children() {
        let mut r = src
            .blob(&child)
            .await
            .unwrap_or_else(|e| panic!("blob {}: {e}", child.digest()));
        let mut got = Vec::new();
        r.read_to_end(&mut got)
            .await
            .unwrap_or_else(|e| panic!("reading blob {}: {e}", child.digest()));
        let want = mem.read_bytes(&child, u64::MAX).await.unwrap();
        assert_eq!(got, want, "blob {} reads back its bytes", child.digest());
        // Asked for with a size that lies: never a clean read of the whole.
        let mut lying = child.clone();
        lying.set_size(child.size() + 1);
        let clean = match src.blob(&lying).await {
            Ok(mut r) => {
                let mut sink = Vec::new();
                r.read_to_end(&mut sink).await.is_ok()
            }
            Err(_) => false,
        };
        assert!(
            !clean,
            "blob {} read cleanly with a wrong size",
            child.digest()
        );
    }
    let missing = descriptor_of(b"never written by write_sample");
    match src.blob(&missing).await {
        Ok(mut r) => {
            let mut sink = Vec::new();
            assert!(
                r.read_to_end(&mut sink).await.is_err(),
                "a missing blob read cleanly"
            );
        }
        Err(e) => assert!(e.is_not_found(), "a missing blob: {e} is not not-found"),
    }
}

//! The `testing` conformance suite over every store and transfer end of this crate.

use oci_rs_image::{testing, ArchiveFormat, ArchiveSource, ArchiveWriter, MemoryStore, OciLayout};

#[tokio::test]
async fn memory_store_conforms() {
    let s = MemoryStore::new();
    testing::blob_store(&s).await;
    testing::reference_store(&s).await;
    let m = testing::write_sample(&s, "sample:1").await;
    testing::read_sample(&s, "sample:1", &m).await;
}

#[tokio::test]
async fn oci_layout_conforms() {
    let d = tempfile::tempdir().unwrap();
    let s = OciLayout::create(d.path().join("layout")).await.unwrap();
    testing::blob_store(&s).await;
    testing::reference_store(&s).await;
    let m = testing::write_sample(&s, "sample:1").await;
    testing::read_sample(&s, "sample:1", &m).await;
    // A second handle on the same directory sees it all.
    let again = OciLayout::open(d.path().join("layout")).await.unwrap();
    testing::read_sample(&again, "sample:1", &m).await;
}

#[tokio::test]
async fn archives_conform() {
    for format in [ArchiveFormat::Docker, ArchiveFormat::Oci] {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a.tar");
        let w = ArchiveWriter::create(&path, format).await.unwrap();
        let m = testing::write_sample(&w, "example.com/sample:1").await;
        let r = ArchiveSource::open(&path).await.unwrap();
        testing::read_sample(&r, "example.com/sample:1", &m).await;
    }
}

/// A store that says it holds every blob: the suite must catch it.
struct Liar(MemoryStore);

#[async_trait::async_trait]
impl oci_rs_image::BlobStore for Liar {
    async fn open(
        &self,
        desc: &oci_spec::image::Descriptor,
    ) -> oci_rs_image::Result<oci_rs_image::BlobReader> {
        self.0.open(desc).await
    }
    async fn stat(&self, d: &oci_spec::image::Digest) -> oci_rs_image::Result<Option<u64>> {
        self.0.stat(d).await
    }
    async fn ingest(
        &self,
        e: oci_rs_image::Expected,
    ) -> oci_rs_image::Result<Box<dyn oci_rs_image::BlobWriter>> {
        self.0.ingest(e).await
    }
    async fn delete(&self, d: &oci_spec::image::Digest) -> oci_rs_image::Result<bool> {
        self.0.delete(d).await
    }
    async fn list(&self) -> oci_rs_image::Result<Vec<oci_spec::image::Digest>> {
        oci_rs_image::BlobStore::list(&self.0).await
    }
    async fn contains(&self, _: &oci_spec::image::Digest) -> oci_rs_image::Result<bool> {
        Ok(true)
    }
}

#[tokio::test]
async fn the_suite_catches_a_store_that_breaks_a_rule() {
    let r = tokio::spawn(async { testing::blob_store(&Liar(MemoryStore::new())).await }).await;
    let e = r.expect_err("a lying store passed");
    assert!(e.is_panic());
}

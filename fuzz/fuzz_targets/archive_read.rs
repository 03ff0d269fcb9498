//! docker-archive / oci-archive reader: arbitrary bytes as an archive file never panic, and
//! whatever it serves verifies against its descriptor.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oci_rs_image::{ArchiveSource, ImageSource, ManifestRef};
use tokio::io::AsyncReadExt;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("a.tar");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        let Ok(a) = ArchiveSource::open(&path).await else {
            return;
        };
        let mut names = a.tags();
        names.push(String::new());
        for t in names {
            let Ok(m) = a.manifest(&ManifestRef::Tag(t)).await else {
                continue;
            };
            for d in m.children().into_iter().take(8) {
                if d.size() > 1 << 20 {
                    continue;
                }
                if let Ok(mut r) = a.blob(&d).await {
                    let mut buf = Vec::new();
                    if r.read_to_end(&mut buf).await.is_ok() {
                        assert_eq!(buf.len() as u64, d.size());
                        assert_eq!(&oci_rs_image::sha256(&buf), d.digest());
                    }
                }
            }
        }
    });
});

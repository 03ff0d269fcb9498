//! oci-rs-layer hot paths: apply (plain, gzip, zstd) of a generated tree, and diff + compress.
#![allow(missing_docs)] // criterion_group! generates undocumented public functions

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use oci_rs_image::Compression;
use oci_rs_image::{ImageSource, MemoryStore};
use oci_rs_layer::{apply, diff_to_store, export, ApplyOptions, DiffOptions};

/// Scratch space on tmpfs when there is one: a disk's own noise (writeback, discard of the
/// previous iteration's files) would swamp what is measured.
fn scratch() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("tempdir")
    } else {
        tempfile::tempdir().expect("tempdir")
    }
}

fn layers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let src = scratch();
    let bytes = oci_benches::tree(src.path(), 2000).expect("tree");
    let (_, plain) = rt
        .block_on(export(src.path(), Vec::new(), &DiffOptions::default()))
        .expect("export");
    let store = MemoryStore::new();
    let mut g = c.benchmark_group("layer_apply");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    for (name, compression, media) in [
        (
            "plain",
            Compression::None,
            "application/vnd.oci.image.layer.v1.tar",
        ),
        (
            "gzip",
            Compression::Gzip,
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (
            "zstd",
            Compression::Zstd,
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    ] {
        let (desc, _) = rt
            .block_on(oci_rs_image::write_layer(
                &store,
                &mut &plain[..],
                compression,
                false,
            ))
            .expect("layer");
        g.bench_function(name, |b| {
            b.iter(|| {
                let dest = scratch();
                rt.block_on(async {
                    let blob = store.blob(&desc).await.expect("blob");
                    apply(dest.path(), blob, media, &ApplyOptions::default())
                        .await
                        .expect("apply")
                })
            })
        });
    }
    g.finish();

    // A real tree: the kernel's user-space headers (linux-libc-dev, there wherever gcc is),
    // about 800 entries of real text in real directories.
    let real = std::path::Path::new("/usr/include/linux");
    if real.is_dir() {
        let (_, tar) = rt
            .block_on(export(real, Vec::new(), &DiffOptions::default()))
            .expect("export");
        let (desc, _) = rt
            .block_on(oci_rs_image::write_layer(
                &store,
                &mut &tar[..],
                Compression::Gzip,
                false,
            ))
            .expect("layer");
        let mut g = c.benchmark_group("layer_apply_real");
        g.throughput(Throughput::Bytes(tar.len() as u64));
        g.sample_size(10);
        g.bench_function("usr_include_linux_gzip", |b| {
            b.iter(|| {
                let dest = scratch();
                rt.block_on(async {
                    let blob = store.blob(&desc).await.expect("blob");
                    apply(
                        dest.path(),
                        blob,
                        "application/vnd.oci.image.layer.v1.tar+gzip",
                        &ApplyOptions::default(),
                    )
                    .await
                    .expect("apply")
                })
            })
        });
        g.finish();
    } else {
        eprintln!(
            "layer_apply_real skipped: {} is not here (Debian package linux-libc-dev)",
            real.display()
        );
    }

    let upper = scratch();
    oci_benches::tree(upper.path(), 2000).expect("tree");
    for i in (0..2000).step_by(7) {
        let p = upper.path().join(format!("d{:03}/f{}", i / 50, i % 50));
        std::fs::write(p, format!("changed {i}")).expect("write");
    }
    std::fs::remove_dir_all(upper.path().join("d003")).expect("remove");
    let mut g = c.benchmark_group("diff_compress");
    g.sample_size(10);
    for (name, compression) in [("gzip", Compression::Gzip), ("zstd", Compression::Zstd)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let out = MemoryStore::new();
                rt.block_on(diff_to_store(
                    &out,
                    Some(src.path()),
                    upper.path(),
                    false,
                    compression,
                    &DiffOptions::default(),
                ))
                .expect("diff");
                let _ = out.total_size();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, layers);
criterion_main!(benches);

//! oci-rs-image hot paths: hashing, streaming verification, manifest parsing.
#![allow(missing_docs)] // criterion_group! generates undocumented public functions

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use oci_benches::{manifest_json, noise};
use oci_rs_image::{sha256, Manifest, VerifyingReader};
use std::hint::black_box;
use tokio::io::AsyncReadExt;

const SIZE: usize = 64 << 20;

fn digests(c: &mut Criterion) {
    let data = noise(SIZE, 7);
    let expected = sha256(&data);
    let mut g = c.benchmark_group("digest");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(10);
    g.bench_function("sha256_64MiB", |b| b.iter(|| sha256(black_box(&data))));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    g.bench_function("verifying_reader_64MiB", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut r = VerifyingReader::new(&data[..], expected.clone(), Some(SIZE as u64))
                    .expect("reader");
                let mut buf = vec![0u8; 256 << 10];
                while r.read(&mut buf).await.expect("read") > 0 {}
                assert!(r.is_verified());
            })
        })
    });
    g.finish();
}

fn manifests(c: &mut Criterion) {
    let mut g = c.benchmark_group("manifest_parse");
    for layers in [1usize, 10, 100] {
        let json = manifest_json(layers);
        g.throughput(Throughput::Bytes(json.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(layers), &json, |b, json| {
            b.iter(|| Manifest::parse(black_box(json.clone()), None).expect("parse"))
        });
    }
    g.finish();
}

criterion_group!(benches, digests, manifests);
criterion_main!(benches);

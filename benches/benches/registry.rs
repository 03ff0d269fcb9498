//! oci-rs-registry-client hot paths against a real CNCF distribution registry on loopback: pull of
//! a two-layer image into an OCI layout (the registry's own stream, verification, hashing and
//! writing), and push of it back under a new name.
//!
//! Needs `/usr/bin/docker-registry` (Debian package docker-registry); says so and measures
//! nothing without it.
#![allow(missing_docs)] // criterion_group! generates undocumented public functions

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use oci_rs_image::Compression;
use oci_rs_image::{copy, CopyOptions, ImageBuilder, ManifestRef, MemoryStore, OciLayout};
use oci_rs_layer::{diff_to_store, DiffOptions};
use oci_rs_registry_client::{Client, RegistryDestination, RegistrySource, Repository};
use std::process::{Child, Command};

const REGISTRY: &str = "/usr/bin/docker-registry";

/// `docker-registry serve` on a free loopback port, with its storage in a temporary directory;
/// killed on drop.
struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("registry config");
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let addr = format!("127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Registry {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A layer of one file of `len` poorly compressible bytes plus `small` small files.
async fn layer(store: &MemoryStore, b: &mut ImageBuilder, len: usize, small: usize, seed: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("big"), oci_benches::noise(len, seed)).expect("write");
    oci_benches::tree(&dir.path().join("small"), small).expect("tree");
    let (desc, diff_id, _) = diff_to_store(
        store,
        None,
        dir.path(),
        false,
        Compression::Gzip,
        &DiffOptions::default(),
    )
    .await
    .expect("layer");
    b.append_layer(desc, &diff_id, "bench layer");
}

fn registry(c: &mut Criterion) {
    if !std::path::Path::new(REGISTRY).exists() {
        eprintln!("registry benches skipped: {REGISTRY} is not installed (Debian package docker-registry)");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = Registry::start();
    let client = Client::builder()
        .insecure_registry(&registry.addr)
        .build()
        .expect("client");
    let repo = Repository::new(&registry.addr, "bench/pull").expect("repository");
    let (total, tag) = rt.block_on(async {
        let store = MemoryStore::new();
        let mut b = ImageBuilder::new("linux", "amd64");
        layer(&store, &mut b, 24 << 20, 200, 1).await;
        layer(&store, &mut b, 8 << 20, 2000, 2).await;
        let m = b.build(&store).await.expect("image");
        let total: u64 = m
            .as_image()
            .map(|i| i.layers().iter().map(|l| l.size()).sum())
            .unwrap_or(0);
        let opts = CopyOptions {
            tag: Some("1".into()),
            ..CopyOptions::default()
        };
        let dst = RegistryDestination::new(client.clone(), repo.clone());
        copy(
            &store,
            &dst,
            &ManifestRef::Digest(m.digest().clone()),
            &opts,
        )
        .await
        .expect("seed push");
        (total, ManifestRef::Tag("1".into()))
    });

    let mut g = c.benchmark_group("registry");
    g.throughput(Throughput::Bytes(total));
    g.sample_size(10);
    g.bench_function("pull_into_layout", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                let dir = tempfile::tempdir().expect("tempdir");
                let layout = OciLayout::create(dir.path()).await.expect("layout");
                let src = RegistrySource::new(client.clone(), repo.clone());
                copy(&src, &layout, &tag, &CopyOptions::default())
                    .await
                    .expect("pull");
            })
        })
    });
    let seeded = tempfile::tempdir().expect("tempdir");
    let layout = rt.block_on(async {
        let layout = OciLayout::create(seeded.path()).await.expect("layout");
        let src = RegistrySource::new(client.clone(), repo.clone());
        let opts = CopyOptions {
            tag: Some("1".into()),
            ..CopyOptions::default()
        };
        copy(&src, &layout, &tag, &opts).await.expect("pull");
        layout
    });
    let mut n = 0u32;
    g.bench_function("push_from_layout", |bench| {
        bench.iter(|| {
            n += 1;
            let to = Repository::new(&registry.addr, &format!("bench/push{n}")).expect("repo");
            rt.block_on(async {
                let dst = RegistryDestination::new(client.clone(), to);
                copy(&layout, &dst, &tag, &CopyOptions::default())
                    .await
                    .expect("push");
            })
        })
    });
    g.finish();
}

criterion_group!(benches, registry);
criterion_main!(benches);

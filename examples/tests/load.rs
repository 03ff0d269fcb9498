//! Load: many parallel small pulls and a few large ones against the real registry, through one
//! client into one store; open descriptors and memory stay bounded, every blob verifies.

#![allow(clippy::unwrap_used)]

mod common;

use oci_rs_image::Compression;
use oci_rs_image::{copy, CopyOptions, ImageBuilder, ManifestRef, MemoryStore, OciLayout};
use oci_rs_registry_client::{Client, RegistryDestination, RegistrySource, Repository};
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn status_kib(field: &str) -> usize {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A tar with one file of `size` bytes (random when `random`).
fn tar_of(name: &str, size: usize, random: bool) -> Vec<u8> {
    let mut data = vec![0u8; size];
    if random {
        std::fs::File::open("/dev/urandom")
            .unwrap()
            .read_exact(&mut data)
            .unwrap();
    } else {
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
    }
    common::tar_with_file(name, &data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_pulls_stay_bounded() {
    if !common::have_registry() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reg = common::Registry::start();
    let registry = reg.addr.clone();
    let client = Client::builder()
        .max_concurrent_downloads(8)
        .build()
        .unwrap();

    // 40 small images (each its own layer) and 2 large ones (16 MiB incompressible).
    let src = MemoryStore::new();
    let mut names = Vec::new();
    for i in 0..42usize {
        let large = i >= 40;
        let mut b = ImageBuilder::new("linux", "amd64");
        let t = tar_of(
            &format!("f{i}"),
            if large { 16 << 20 } else { 4096 + i },
            large,
        );
        b.add_layer_tar(&src, &mut &t[..], Compression::Gzip, "x")
            .await
            .unwrap();
        let m = b.build(&src).await.unwrap();
        let repo = Repository::new(&registry, &format!("load/img{i}")).unwrap();
        let dst = RegistryDestination::new(client.clone(), repo.clone());
        copy(
            &src,
            &dst,
            &ManifestRef::Digest(m.digest().clone()),
            &CopyOptions::default().tag("1"),
        )
        .await
        .unwrap();
        names.push(repo);
    }
    drop(src);

    let store = OciLayout::create(dir.path().join("store"))
        .await
        .unwrap()
        .with_fsync(false);
    let fds_before = open_fds();
    // Reset the peak-RSS counter, so that VmHWM covers the pulls only.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let rss_before = status_kib("VmHWM:");
    let peak_fds = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak_fds.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(open_fds(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let start = Instant::now();
    let mut tasks = Vec::new();
    // Each image pulled twice at once: 84 pulls in flight.
    for round in 0..2 {
        for (i, repo) in names.iter().enumerate() {
            let (client, store, repo) = (client.clone(), store.clone(), repo.clone());
            tasks.push(tokio::spawn(async move {
                let src = RegistrySource::new(client, repo);
                copy(
                    &src,
                    &store,
                    &ManifestRef::Tag("1".into()),
                    &CopyOptions::default().tag(format!("i{i}r{round}")),
                )
                .await
                .unwrap();
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak_fds.load(Ordering::Relaxed);
    let rss_after = status_kib("VmHWM:");
    eprintln!(
        "load: 84 pulls (80 small, 4 of 16 MiB) in {:.2} s; open fds {fds_before} before, peak {peak}; peak RSS {} MiB before, {} MiB during the pulls",
        elapsed.as_secs_f64(),
        rss_before / 1024,
        rss_after / 1024
    );
    // Downloads are bounded by the client (8), blobs stream to files: descriptors and memory
    // stay small whatever the number of pulls in flight.
    assert!(
        peak < fds_before + 200,
        "descriptors: {fds_before} → {peak}"
    );
    assert!(
        rss_after < rss_before + 200 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    // Every blob once, named by its content.
    for d in oci_rs_image::BlobStore::list(&store).await.unwrap() {
        let data = std::fs::read(store.blob_path(&d).unwrap()).unwrap();
        assert_eq!(oci_rs_image::sha256(&data), d);
    }
    assert_eq!(
        oci_rs_image::ReferenceStore::list(&store)
            .await
            .unwrap()
            .len(),
        84
    );
}

//! Measures pull and push of a two-layer image of about 115 MB against a local CNCF
//! distribution registry, next to `skopeo copy`, and prints peak memory (VmHWM).
//!
//! ```text
//! cargo run --release -p oci-rs-registry-client --example transfer_figures
//! ```
//!
//! Needs `/usr/bin/docker-registry` and `skopeo`. Layers are incompressible bytes written to
//! files first and streamed from disk, so the process never holds a layer in memory.

#![allow(clippy::print_stdout)]

use oci_rs_image::{BlobReader, Hasher};
use oci_rs_registry_client::{Client, Repository};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn write_layer(
    path: &Path,
    size: usize,
    seed: u64,
) -> Result<(oci_spec::image::Digest, u64), BoxError> {
    use std::io::Write;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut h = Hasher::new(&oci_spec::image::DigestAlgorithm::Sha256)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len());
        rng.fill(&mut buf[..n]);
        h.update(&buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n;
    }
    f.flush()?;
    Ok((h.finish(), size as u64))
}

struct Registry(
    std::process::Child,
    #[allow(dead_code)] tempfile::TempDir,
    String,
);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_registry() -> Result<Registry, BoxError> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.path().join("storage").display()
        ),
    )?;
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    for _ in 0..200 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            return Ok(Registry(child, dir, addr));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err("registry did not start".into())
}

async fn file_reader(p: &Path) -> Result<BlobReader, BoxError> {
    Ok(Box::pin(tokio::fs::File::open(p).await?))
}

async fn push(
    c: &Client,
    repo: &Repository,
    blobs: &[(PathBuf, oci_spec::image::Descriptor)],
    manifest: &oci_rs_image::Manifest,
) -> Result<(), BoxError> {
    let mut tasks = Vec::new();
    for (p, d) in blobs {
        let (c, repo, p, d) = (c.clone(), repo.clone(), p.clone(), d.clone());
        tasks.push(tokio::spawn(async move {
            let r = file_reader(&p).await?;
            c.push_blob(&repo, &d, r, None).await?;
            Ok::<_, BoxError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    c.push_manifest(repo, manifest, Some("v1")).await?;
    Ok(())
}

/// Pulls into an OCI layout directory: blobs/sha256/<hex>, verified while streaming.
async fn pull(c: &Client, repo: &Repository, out: &Path) -> Result<(), BoxError> {
    let m = c
        .manifest(repo, &oci_rs_image::ManifestRef::Tag("v1".into()))
        .await?;
    let blobs = out.join("blobs/sha256");
    tokio::fs::create_dir_all(&blobs).await?;
    let mut tasks = Vec::new();
    for d in m.children() {
        let (c, repo, blobs) = (c.clone(), repo.clone(), blobs.clone());
        tasks.push(tokio::spawn(async move {
            let mut r = c.blob(&repo, &d).await?;
            let tmp = blobs.join(format!(".tmp-{}", d.digest().digest()));
            let f = tokio::fs::File::create(&tmp).await?;
            let mut f = tokio::io::BufWriter::with_capacity(1 << 20, f);
            tokio::io::copy_buf(
                &mut tokio::io::BufReader::with_capacity(1 << 20, &mut r),
                &mut f,
            )
            .await?;
            f.flush().await?;
            tokio::fs::rename(&tmp, blobs.join(d.digest().digest())).await?;
            Ok::<_, BoxError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    tokio::fs::write(blobs.join(m.digest().digest()), m.bytes()).await?;
    Ok(())
}

fn skopeo(args: &[&str]) -> Result<Duration, BoxError> {
    let t = Instant::now();
    let st = Command::new("skopeo")
        .args(args)
        .stdout(Stdio::null())
        .status()?;
    if !st.success() {
        return Err(format!("skopeo {args:?} failed").into());
    }
    Ok(t.elapsed())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let reg = start_registry()?;
    let work = tempfile::tempdir()?;
    let mut blobs = Vec::new();
    for (i, size) in [(0u64, 60 * 1024 * 1024), (1, 55 * 1024 * 1024)] {
        let p = work.path().join(format!("layer{i}"));
        let (digest, size) = write_layer(&p, size, i + 1)?;
        blobs.push((
            p,
            oci_rs_image::descriptor(oci_rs_image::media::OCI_LAYER_GZIP.into(), digest, size),
        ));
    }
    let diff: Vec<String> = blobs.iter().map(|b| b.1.digest().to_string()).collect();
    let config = serde_json::to_vec(
        &serde_json::json!({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":diff}}),
    )?;
    let cfg_path = work.path().join("config");
    std::fs::write(&cfg_path, &config)?;
    let cfg_desc = oci_rs_image::descriptor(
        oci_rs_image::media::OCI_CONFIG.into(),
        oci_rs_image::sha256(&config),
        config.len() as u64,
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": oci_rs_image::media::OCI_MANIFEST,
        "config": cfg_desc, "layers": blobs.iter().map(|b| b.1.clone()).collect::<Vec<_>>(),
    });
    let manifest = oci_rs_image::Manifest::parse(serde_json::to_vec(&manifest)?, None)?;
    blobs.push((cfg_path, cfg_desc));
    let total: u64 = blobs.iter().map(|b| b.1.size()).sum();
    println!("image: {} blobs, {:.1} MB", blobs.len(), total as f64 / 1e6);

    let c = Client::builder().build()?;
    let hwm0 = vm_hwm_kib();
    let repo = Repository::new(&reg.2, "bench/ours")?;
    let t = Instant::now();
    push(&c, &repo, &blobs, &manifest).await?;
    let our_push = t.elapsed();

    let out = work.path().join("ours-layout");
    let t = Instant::now();
    pull(&c, &repo, &out).await?;
    let our_pull = t.elapsed();
    let hwm1 = vm_hwm_kib();

    let src = format!("docker://{}/bench/ours:v1", reg.2);
    let layout = format!("oci:{}:v1", work.path().join("skopeo-layout").display());
    let skopeo_pull = skopeo(&["copy", "--quiet", "--src-tls-verify=false", &src, &layout])?;
    // Pushes into fresh registries, so that nobody can mount or skip a blob.
    let reg_b = start_registry()?;
    let dst = format!("docker://{}/bench/skopeo:v1", reg_b.2);
    let skopeo_push = skopeo(&["copy", "--quiet", "--dest-tls-verify=false", &layout, &dst])?;
    let reg_c = start_registry()?;
    let repo2 = Repository::new(&reg_c.2, "bench/ours")?;
    let t = Instant::now();
    push(&c, &repo2, &blobs, &manifest).await?;
    let our_push2 = t.elapsed();

    println!(
        "pull: ours {:.3}s, skopeo {:.3}s, ratio {:.2}",
        our_pull.as_secs_f64(),
        skopeo_pull.as_secs_f64(),
        our_pull.as_secs_f64() / skopeo_pull.as_secs_f64()
    );
    println!(
        "push: ours {:.3}s (registry A) / {:.3}s (fresh registry C), skopeo {:.3}s, ratio {:.2}",
        our_push.as_secs_f64(),
        our_push2.as_secs_f64(),
        skopeo_push.as_secs_f64(),
        our_push2.as_secs_f64() / skopeo_push.as_secs_f64()
    );
    println!(
        "peak RSS (VmHWM): {} KiB before transfers, {} KiB after push+pull",
        hwm0, hwm1
    );
    Ok(())
}

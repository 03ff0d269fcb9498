//! Pull an image and run a command in it, the whole way in one short file:
//!
//! ```text
//! pull_and_run [--data-dir DIR] IMAGE [CMD...]
//! pull_and_run localhost:5000/busybox:1 echo hello
//! ```
//!
//! reference → registry → OCI layout (host platform, verified) → overlay snapshot → runtime spec
//! from the image config (as `docker run` builds it) → namespaces → exit code.

use anyhow::{Context, Result};
use oci_rs_image::{
    copy, CopyOptions, ImageReference, ImageSource, ManifestRef, OciLayout, PlatformFilter,
};
use oci_rs_registry_client::{Client, DockerConfig, RegistrySource, Repository};
use std::path::PathBuf;

fn main() {
    // Before any thread: containers must not reach this program's file (CVE-2019-5736).
    if let Err(e) = oci_rs_runtime::reexec_sealed() {
        eprintln!("pull_and_run: {e}");
        std::process::exit(oci_examples::EXIT_TOOL_FAILURE);
    }
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run()));
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("pull_and_run: {e:#}");
            std::process::exit(oci_examples::EXIT_TOOL_FAILURE);
        }
    }
}

async fn run() -> Result<i32> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut data = PathBuf::from("/var/tmp/pull_and_run");
    if args.first().map(String::as_str) == Some("--data-dir") && args.len() > 1 {
        data = PathBuf::from(args.remove(1));
        args.remove(0);
    }
    let Some(image) = args.first().cloned() else {
        anyhow::bail!("usage: pull_and_run [--data-dir DIR] IMAGE [CMD...]");
    };
    let command = args[1..].to_vec();

    // 1. The reference, with docker's defaults (`busybox` is docker.io/library/busybox:latest).
    let reference = ImageReference::parse(&image)?;
    let (repo, what) = Repository::parse_reference(&image)?;

    // 2. Pull into an OCI layout: the index is resolved to the host's platform, every blob is
    //    verified while it streams, blobs already there are skipped.
    let store = OciLayout::create(data.join("images")).await?;
    let client = Client::builder()
        .credentials(DockerConfig::load_default()?)
        .build()?;
    let source = RegistrySource::new(client, repo);
    let tag = reference.to_string();
    let opts = CopyOptions::default()
        .platforms(PlatformFilter::Host)
        .tag(tag.clone())
        .progress(|e| tracing::debug!(?e, "pull"));
    let pulled = copy(&source, &store, &what, &opts)
        .await
        .context("pulling")?;
    let manifest = store
        .manifest(&ManifestRef::Digest(pulled.manifest.digest().clone()))
        .await?;
    let image_manifest = manifest.as_image().context("not an image")?;
    let config = oci_rs_image::read_config(&store, image_manifest.config()).await?;

    // 3. The filesystem: each layer unpacked once, mounted as overlay lower directories.
    let id = format!("par-{}", std::process::id());
    let snapshots = oci_rs_layer::Snapshotter::new(data.join("snapshots"))?;
    let mount = snapshots.prepare(&id, &store, &manifest, false).await?;

    // 4. The runtime spec, as `docker run` makes it from the image config.
    let run_opts = oci_rs_runtime::RunOptions {
        args: command,
        ..Default::default()
    };
    let spec = oci_rs_runtime::spec_from_image(&config, &mount.rootfs, &run_opts)?;

    // 5. Run it with our stdio; its exit code becomes ours.
    let bundle = data.join("snapshots/containers").join(&id);
    let state = data.join("run");
    let cid = id.clone();
    let code = tokio::task::spawn_blocking(move || {
        oci_rs_runtime::run(
            oci_rs_runtime::ContainerBuilder::new(&cid, spec, bundle).state_root(state),
        )
    })
    .await??;
    snapshots.remove(&id)?;
    Ok(code)
}

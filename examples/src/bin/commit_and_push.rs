//! Run a command that changes files, turn the container's writable layer into a new layer,
//! append it to the image (config, diff_ids, history), tag and push it:
//!
//! ```text
//! commit_and_push [--data-dir DIR] IMAGE NEW_IMAGE CMD...
//! commit_and_push localhost:5000/busybox:1 localhost:5000/busybox:2 sh -c 'echo hi > /hello'
//! ```

// A command-line example prints its result.
#![allow(clippy::print_stdout)]

use anyhow::{Context, Result};
use oci_rs_image::Compression;
use oci_rs_image::{
    copy, CopyOptions, ImageBuilder, ImageSource, ManifestRef, OciLayout, PlatformFilter,
};
use oci_rs_registry_client::{
    Client, DockerConfig, RegistryDestination, RegistrySource, Repository,
};
use std::path::PathBuf;

fn main() -> Result<()> {
    // Before any thread: containers must not reach this program's file (CVE-2019-5736).
    oci_rs_runtime::reexec_sealed()?;
    tokio::runtime::Runtime::new()?.block_on(commit_and_push())
}

async fn commit_and_push() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut data = PathBuf::from("/var/tmp/commit_and_push");
    if args.first().map(String::as_str) == Some("--data-dir") && args.len() > 1 {
        data = PathBuf::from(args.remove(1));
        args.remove(0);
    }
    anyhow::ensure!(
        args.len() >= 3,
        "usage: commit_and_push [--data-dir DIR] IMAGE NEW_IMAGE CMD..."
    );
    let (image, new_image, command) = (args[0].clone(), args[1].clone(), args[2..].to_vec());
    let client = Client::builder()
        .credentials(DockerConfig::load_default()?)
        .build()?;

    // Pull the base image for this machine.
    let store = OciLayout::create(data.join("images")).await?;
    let (repo, what) = Repository::parse_reference(&image)?;
    let src = RegistrySource::new(client.clone(), repo);
    let pulled = copy(
        &src,
        &store,
        &what,
        &CopyOptions::default().platforms(PlatformFilter::Host),
    )
    .await?;
    let base = store
        .manifest(&ManifestRef::Digest(pulled.manifest.digest().clone()))
        .await?;
    let config =
        oci_rs_image::read_config(&store, base.as_image().context("not an image")?.config())
            .await?;

    // Run the command on an overlay snapshot of it.
    let id = format!("cap-{}", std::process::id());
    let snapshots = oci_rs_layer::Snapshotter::new(data.join("snapshots"))?;
    let mount = snapshots.prepare(&id, &store, &base, false).await?;
    let spec = oci_rs_runtime::spec_from_image(
        &config,
        &mount.rootfs,
        &oci_rs_runtime::RunOptions {
            args: command,
            ..Default::default()
        },
    )?;
    let (bundle, state, cid) = (
        data.join("snapshots/containers").join(&id),
        data.join("run"),
        id.clone(),
    );
    let code = tokio::task::spawn_blocking(move || {
        oci_rs_runtime::run(
            oci_rs_runtime::ContainerBuilder::new(&cid, spec, bundle).state_root(state),
        )
    })
    .await??;
    anyhow::ensure!(code == 0, "the command exited with {code}");

    // The container's changes become a layer (DiffID and digest computed while compressing),
    // appended to the base image.
    let (layer, diff_id) = snapshots
        .commit(
            &mount,
            &store,
            &base,
            &store,
            Compression::Gzip,
            &oci_rs_layer::DiffOptions::from_env(),
        )
        .await?;
    snapshots.remove(&id)?;
    let mut builder = ImageBuilder::from_image(&store, &base).await?;
    builder.append_layer(
        layer,
        &diff_id,
        &format!("commit_and_push: {}", args[2..].join(" ")),
    );
    let new = builder.build(&store).await?;

    // Push it (blobs the registry has are skipped) and tag it.
    let (repo, what) = Repository::parse_reference(&new_image)?;
    let dst = RegistryDestination::new(client, repo);
    let pushed = copy(
        &store,
        &dst,
        &ManifestRef::Digest(new.digest().clone()),
        &CopyOptions::default().tag(what.to_string()),
    )
    .await?;
    println!("{new_image}@{}", pushed.manifest.digest());
    Ok(())
}

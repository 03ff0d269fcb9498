//! Run a command that changes files, commit the container's changes as a new image (its
//! layer appended to the base, with history), and push it:
//!
//! ```text
//! commit_and_push [--data-dir DIR] IMAGE NEW_IMAGE CMD...
//! commit_and_push localhost:5000/busybox:1 localhost:5000/busybox:2 sh -c 'echo hi > /hello'
//! ```

// A command-line example prints its result.
#![allow(clippy::print_stdout)]

use oci_rs_image::CopyOptions;
use oci_rs_layer::{CommitOptions, ImageStore};
use oci_rs_runtime::{Containers, NetworkMode, RunImage, RunRequest};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    // A container's monitor is this program again; then containers must not reach its file.
    oci_rs_runtime::serve_if_requested();
    oci_rs_runtime::reexec_sealed()?;
    tokio::runtime::Runtime::new()?.block_on(commit_and_push())
}

async fn commit_and_push() -> Result<(), Error> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut data = std::path::PathBuf::from("/var/tmp/commit_and_push");
    if args.first().map(String::as_str) == Some("--data-dir") && args.len() > 1 {
        data = args.remove(1).into();
        args.remove(0);
    }
    let [image, new_image, command @ ..] = &args[..] else {
        return Err("usage: commit_and_push [--data-dir DIR] IMAGE NEW_IMAGE CMD...".into());
    };
    let (images, containers) = (ImageStore::open(&data).await?, Containers::open(&data)?);
    let client = oci_rs_registry_client::Client::new()?;
    let opts = CopyOptions::default();
    let found = images
        .image_for_run(image, None, Some((&client, &opts)), |_| {})
        .await?;
    let mut req = RunRequest {
        detach: true,
        ..RunRequest::default()
    };
    req.opts.args = command.to_vec();
    req.opts.network = NetworkMode::None;
    let (id, _) = containers
        .run(&RunImage::from_store(&images, found, image), req)
        .await?;
    let code = containers.wait(&id)?;
    if code != 0 {
        return Err(format!("the command exited with {code}").into());
    }
    let how = CommitOptions {
        created_by: Some(format!("commit_and_push: {}", command.join(" "))),
        ..CommitOptions::default()
    };
    containers
        .commit(&images, &id, Some(new_image), &how, false)
        .await?;
    containers.remove(&id, false)?;
    let pushed = images.push(&client, new_image, &opts).await?;
    println!("{new_image}@{}", pushed.digest());
    Ok(())
}

//! A detached container by name: started, its logs read while it runs, stopped with its
//! stop signal, removed; the image pulled first when the store lacks it.
//!
//! ```text
//! run_detached DATA_DIR IMAGE NAME CMD...
//! run_detached /var/tmp/rd localhost:5000/busybox:1 ticker sh -c 'while :; do date; sleep 1; done'
//! ```

// A command-line example prints what it does.
#![allow(clippy::print_stdout)]

use oci_rs_image::CopyOptions;
use oci_rs_layer::ImageStore;
use oci_rs_runtime::{Containers, LogQuery, NetworkMode, RunImage, RunRequest};
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    // A container's monitor is this program again; then containers must not reach its file.
    oci_rs_runtime::serve_if_requested();
    oci_rs_runtime::reexec_sealed()?;
    tokio::runtime::Runtime::new()?.block_on(run_detached())
}

async fn run_detached() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data, image, name, command @ ..] = &args[..] else {
        return Err("usage: run_detached DATA_DIR IMAGE NAME CMD...".into());
    };
    let data = std::path::Path::new(data);
    let (images, containers) = (ImageStore::open(data).await?, Containers::open(data)?);
    let client = oci_rs_registry_client::Client::new()?;
    let pull = CopyOptions::default();
    let found = images
        .image_for_run(image, None, Some((&client, &pull)), |_| {})
        .await?;
    let mut req = RunRequest {
        name: Some(name.clone()),
        detach: true,
        ..RunRequest::default()
    };
    req.opts.args = command.to_vec();
    req.opts.network = NetworkMode::None;
    let (id, _) = containers
        .run(&RunImage::from_store(&images, found, image), req)
        .await?;
    println!("{name} is {id}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The last lines so far, with their times, as `docker logs -t --tail 5 NAME`.
    let query = LogQuery {
        tail: Some(5),
        timestamps: true,
        ..LogQuery::default()
    };
    containers.logs(name, &query, false, &mut |_, line: &[u8]| {
        print!("{}", String::from_utf8_lossy(line));
        Ok(())
    })?;
    let status = containers.stop(name, Duration::from_secs(10))?;
    println!("{name} stopped: exit code {:?}", status.exit_code);
    containers.remove(name, false)?;
    Ok(())
}

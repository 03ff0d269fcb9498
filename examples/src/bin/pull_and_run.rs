//! Pull an image and run a command in it, its output streamed, its exit code ours:
//!
//! ```text
//! pull_and_run [--data-dir DIR] IMAGE [CMD...]
//! pull_and_run localhost:5000/busybox:1 echo hello
//! ```
//!
//! reference → registry → image store (host platform, verified, unpacked as it arrives) →
//! overlay snapshot → the spec `docker run` would make → namespaces → exit code.

use oci_rs_image::CopyOptions;
use oci_rs_layer::ImageStore;
use oci_rs_runtime::{Containers, LogQuery, LogStream, NetworkMode, RunImage, RunRequest};
use std::io::Write;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    // A container's monitor is this program again; then containers must not reach its file.
    oci_rs_runtime::serve_if_requested();
    let code = oci_rs_runtime::reexec_sealed()
        .map_err(Error::from)
        .and_then(|()| tokio::runtime::Runtime::new().map_err(Error::from))
        .and_then(|rt| rt.block_on(pull_and_run()));
    std::process::exit(code.unwrap_or_else(|e| {
        eprintln!("pull_and_run: {}", oci_rs_runtime::chain(&*e));
        125
    }));
}

async fn pull_and_run() -> Result<i32, Error> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut data = std::path::PathBuf::from("/var/tmp/pull_and_run");
    if args.first().map(String::as_str) == Some("--data-dir") && args.len() > 1 {
        data = args.remove(1).into();
        args.remove(0);
    }
    let Some(name) = args.first().cloned() else {
        return Err("usage: pull_and_run [--data-dir DIR] IMAGE [CMD...]".into());
    };
    let images = ImageStore::open(&data).await?;
    let client = oci_rs_registry_client::Client::new()?;
    let pull = (
        &client as &dyn oci_rs_image::Remote,
        &CopyOptions::default(),
    );
    let found = images
        .image_for_run(&name, None, Some(pull), |_| {})
        .await?;
    let containers = Containers::open(&data)?;
    let mut req = RunRequest {
        detach: true,
        ..RunRequest::default()
    };
    req.opts.args = args[1..].to_vec();
    req.opts.network = NetworkMode::None;
    let (id, _) = containers
        .run(&RunImage::from_store(&images, found, &name), req)
        .await?;
    // Its output as it comes, until it ends; then its exit code, and it goes.
    let mut out = |s: LogStream, b: &[u8]| match s {
        LogStream::Stdout => std::io::stdout().write_all(b),
        LogStream::Stderr => std::io::stderr().write_all(b),
    };
    containers.logs(&id, &LogQuery::default(), true, &mut out)?;
    let code = containers.wait(&id)?;
    containers.remove(&id, false)?;
    Ok(code)
}

//! A web server in a container, published on a host port (the default bridge network, NAT
//! by nftables), fetched from the host, then stopped:
//!
//! ```text
//! publish_port DATA_DIR IMAGE HOST_PORT
//! publish_port /var/tmp/pp localhost:5000/busybox:1 8080
//! ```
//!
//! The image needs busybox at `/bin/busybox` (its `httpd` serves the image's `/etc`).

// A command-line example prints what it does.
#![allow(clippy::print_stdout)]

use oci_rs_image::CopyOptions;
use oci_rs_layer::ImageStore;
use oci_rs_runtime::{parse_publish, Containers, NetworkMode, RunImage, RunRequest};
use std::io::{Read, Write};
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    // A container's monitor is this program again; then containers must not reach its file.
    oci_rs_runtime::serve_if_requested();
    oci_rs_runtime::reexec_sealed()?;
    tokio::runtime::Runtime::new()?.block_on(publish())
}

async fn publish() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data, image, port] = &args[..] else {
        return Err("usage: publish_port DATA_DIR IMAGE HOST_PORT".into());
    };
    let data = std::path::Path::new(data);
    let (images, containers) = (ImageStore::open(data).await?, Containers::open(data)?);
    let client = oci_rs_registry_client::Client::new()?;
    let pull = CopyOptions::default();
    let found = images
        .image_for_run(image, None, Some((&client, &pull)), |_| {})
        .await?;
    let mut req = RunRequest {
        detach: true,
        publish: parse_publish(&format!("{port}:80"))?,
        ..RunRequest::default()
    };
    req.opts.args = ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/etc"]
        .map(String::from)
        .to_vec();
    req.opts.network = NetworkMode::Bridge;
    let (id, _) = containers
        .run(&RunImage::from_store(&images, found, image), req)
        .await?;
    let mut answer = String::new();
    for _ in 0..50 {
        if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>()?)) {
            c.write_all(b"GET /hostname HTTP/1.0\r\n\r\n")?;
            c.read_to_string(&mut answer)?;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    print!("{answer}");
    containers.stop(&id, Duration::from_secs(5))?;
    containers.remove(&id, false)?;
    Ok(())
}

//! `docker manifest inspect` and `docker image inspect` for an image in a registry:
//!
//! ```text
//! inspect localhost:5000/busybox:1
//! ```
//!
//! Prints the manifest view (every platform of an index), then the image view of the host's
//! platform, as JSON.

// A command-line example prints its result.
#![allow(clippy::print_stdout)]

use anyhow::{Context, Result};
use oci_rs_image::{
    ImageInspect, ImageReference, ImageSource, ManifestInspect, ManifestRef, PlatformSpec,
};
use oci_rs_registry_client::{Client, DockerConfig, RegistrySource, Repository};

#[tokio::main]
async fn main() -> Result<()> {
    let image = std::env::args().nth(1).context("usage: inspect IMAGE")?;
    let reference = ImageReference::parse(&image)?;
    let (repo, what) = Repository::parse_reference(&image)?;
    let client = Client::builder()
        .credentials(DockerConfig::load_default()?)
        .build()?;
    let src = RegistrySource::new(client, repo);
    let top = src.manifest(&what).await?;
    let view = ManifestInspect::new(&src, &top, &image, true).await?;
    println!("{}", serde_json::to_string_pretty(&view)?);
    // The image for this machine, as `docker image inspect` shows it.
    let m = match top.as_index() {
        Some(index) => {
            let d = oci_rs_image::select_platform(index, &PlatformSpec::host())?;
            src.manifest(&ManifestRef::Digest(d.digest().clone()))
                .await?
        }
        None => top,
    };
    let name = reference.name();
    let tags: Vec<String> = reference.tag().map(str::to_owned).into_iter().collect();
    let img = ImageInspect::new(&src, &m, Some(&name), &tags).await?;
    println!("{}", serde_json::to_string_pretty(&img)?);
    Ok(())
}

//! Copy an image between a registry, an OCI layout and docker-archive / oci-archive files:
//!
//! ```text
//! copy [--all] [--platform os/arch] SRC DST
//!   docker://REF          a registry (loopback registries speak plain HTTP)
//!   oci:DIR[:TAG]         an OCI image layout
//!   docker-archive:FILE[:NAME]   what `docker save` writes and `docker load` reads
//!   oci-archive:FILE[:TAG]       a tar of an OCI layout
//! ```
//!
//! One generic `copy` does every pair; blobs the destination has are skipped.

// A command-line example prints its result.
#![allow(clippy::print_stdout)]

use anyhow::{bail, Result};
use oci_rs_image::{
    copy, ArchiveFormat, ArchiveSource, ArchiveWriter, CopyOptions, ImageDestination, ImageSource,
    ManifestRef, OciLayout, PlatformFilter,
};
use oci_rs_registry_client::{
    Client, DockerConfig, RegistryDestination, RegistrySource, Repository,
};

/// `path[:tag]`, where the path itself has no `:`.
fn split(s: &str) -> (&str, &str) {
    s.split_once(':').unwrap_or((s, ""))
}

fn client() -> Result<Client> {
    Ok(Client::builder()
        .credentials(DockerConfig::load_default()?)
        .build()?)
}

async fn source(spec: &str) -> Result<(Box<dyn ImageSource>, ManifestRef)> {
    Ok(match spec.split_once(':') {
        Some(("docker", r)) => {
            let (repo, what) = Repository::parse_reference(r.trim_start_matches("//"))?;
            (Box::new(RegistrySource::new(client()?, repo)), what)
        }
        Some(("oci", rest)) => {
            let (dir, tag) = split(rest);
            (
                Box::new(OciLayout::open(dir).await?),
                ManifestRef::parse(tag)?,
            )
        }
        Some(("docker-archive" | "oci-archive", rest)) => {
            let (file, tag) = split(rest);
            (
                Box::new(ArchiveSource::open(file).await?),
                ManifestRef::Tag(tag.to_owned()),
            )
        }
        _ => bail!("unknown source {spec:?}"),
    })
}

async fn destination(spec: &str) -> Result<(Box<dyn ImageDestination>, Option<String>)> {
    Ok(match spec.split_once(':') {
        Some(("docker", r)) => {
            let r = r.trim_start_matches("//");
            let (repo, what) = Repository::parse_reference(r)?;
            (
                Box::new(RegistryDestination::new(client()?, repo)),
                Some(what.to_string()),
            )
        }
        Some(("oci", rest)) => {
            let (dir, tag) = split(rest);
            (
                Box::new(OciLayout::create(dir).await?),
                Some(tag).filter(|t| !t.is_empty()).map(str::to_owned),
            )
        }
        Some((kind @ ("docker-archive" | "oci-archive"), rest)) => {
            let (file, tag) = split(rest);
            let format = if kind == "docker-archive" {
                ArchiveFormat::Docker
            } else {
                ArchiveFormat::Oci
            };
            (
                Box::new(ArchiveWriter::create(file, format).await?),
                Some(tag).filter(|t| !t.is_empty()).map(str::to_owned),
            )
        }
        _ => bail!("unknown destination {spec:?}"),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = CopyOptions::default();
    while let Some(a) = args.first().cloned() {
        match a.as_str() {
            "--all" => opts = opts.platforms(PlatformFilter::All),
            "--platform" if args.len() > 1 => {
                opts = opts.platforms(PlatformFilter::One(args[1].parse()?));
                args.remove(0);
            }
            _ => break,
        }
        args.remove(0);
    }
    let [src, dst] = args.as_slice() else {
        bail!("usage: copy [--all] [--platform os/arch] SRC DST");
    };
    let (src, what) = source(src).await?;
    let (dst, tag) = destination(dst).await?;
    if let Some(t) = tag {
        opts = opts.tag(t);
    }
    let r = copy(src.as_ref(), dst.as_ref(), &what, &opts).await?;
    println!(
        "{} ({} blobs copied, {} bytes, {} already there)",
        r.manifest.digest(),
        r.blobs_copied,
        r.bytes_copied,
        r.blobs_skipped
    );
    Ok(())
}

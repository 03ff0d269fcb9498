//! The peer for issue 4's "no slower than the oci-client crate": pulls an image with the
//! oci-client crate into DIR (the manifest, the config and every layer as files named by
//! digest under DIR/blobs/sha256), layers fetched at once as oci-client's own `pull` does, but
//! streamed to files with `pull_blob` rather than held in memory.
//!
//! Built by benches/compare.sh in a scratch cargo project outside the repository; not part of
//! the workspace.
//!
//! Layers are fsynced, as ours and skopeo's `oci:` destination do.
//!
//!   oci-client-pull HOST:PORT/REPO:TAG DIR     (plain HTTP, anonymous)

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::path::{Path, PathBuf};

fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(image), Some(dir)) = (args.next(), args.next()) else {
        return Err("usage: oci-client-pull HOST:PORT/REPO:TAG DIR".into());
    };
    let dir = PathBuf::from(dir);
    tokio::fs::create_dir_all(dir.join("blobs/sha256")).await?;
    let reference: Reference = image.parse()?;
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let (raw, digest) = client
        .pull_manifest_raw(
            &reference,
            &RegistryAuth::Anonymous,
            &[oci_client::manifest::OCI_IMAGE_MEDIA_TYPE],
        )
        .await?;
    let manifest: oci_client::manifest::OciImageManifest = serde_json::from_slice(&raw)?;
    let mut config = tokio::fs::File::create(blob_path(&dir, &manifest.config.digest)).await?;
    client
        .pull_blob(&reference, &manifest.config, &mut config)
        .await?;
    let pulls = manifest.layers.iter().map(|layer| {
        let client = &client;
        let reference = &reference;
        let path = blob_path(&dir, &layer.digest);
        async move {
            let mut file = tokio::fs::File::create(path).await?;
            client.pull_blob(reference, layer, &mut file).await?;
            tokio::io::AsyncWriteExt::flush(&mut file).await?;
            file.sync_all().await?;
            Ok::<_, Box<dyn std::error::Error>>(())
        }
    });
    for r in futures_util::future::join_all(pulls).await {
        r?;
    }
    tokio::fs::write(blob_path(&dir, &digest), &raw).await?;
    Ok(())
}

//! `registry serve`: the distribution API of oci-rs-registry-client's server on a port.

use crate::args::RegistryVerb;
use anyhow::{Context, Result};
use oci_rs_registry_client::server::{DiskStorage, Registry};

pub(crate) async fn registry_verb(verb: RegistryVerb) -> Result<()> {
    match verb {
        RegistryVerb::Serve {
            addr,
            storage,
            read_only,
            max_blob_size,
        } => {
            let disk = DiskStorage::open(&storage)
                .await
                .with_context(|| format!("opening the storage {}", storage.display()))?;
            let mut registry = Registry::new(disk).read_only(read_only);
            if let Some(n) = max_blob_size {
                registry = registry.max_blob_size(n);
            }
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("listening on {addr}"))?;
            eprintln!(
                "serving the registry at http://{} from {}",
                listener.local_addr()?,
                storage.display()
            );
            tokio::select! {
                r = registry.serve(listener) => r.context("serving")?,
                _ = tokio::signal::ctrl_c() => {}
            }
            Ok(())
        }
    }
}

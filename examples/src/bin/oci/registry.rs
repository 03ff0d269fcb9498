//! `registry serve`: the distribution API of oci-rs-registry-client's server on a port.

use crate::args::RegistryVerb;
use anyhow::{bail, Context, Result};
use oci_rs_registry_client::server::{
    tls_config, AccessPolicy, Auth, DiskStorage, Registry, S3Storage, TokenAuth, Users,
};
use oci_rs_registry_client::{Client, DockerConfig};
use std::io::Write;
use std::path::Path;

pub(crate) async fn registry_verb(verb: RegistryVerb) -> Result<()> {
    match verb {
        RegistryVerb::Gc {
            storage,
            uploads_older_than,
        } => {
            let age = std::time::Duration::from_secs(uploads_older_than.saturating_mul(3600));
            let text = storage.to_string_lossy();
            let report = if text.starts_with("s3://") {
                S3Storage::from_url(&text)?.gc(age).await
            } else {
                DiskStorage::open(&storage)
                    .await
                    .with_context(|| format!("opening the storage {}", storage.display()))?
                    .gc(age)
                    .await
            }
            .context("garbage collection")?;
            let mut out = std::io::stdout().lock();
            for d in &report.removed {
                writeln!(out, "deleted {d}")?;
            }
            writeln!(
                out,
                "{} blobs deleted ({} bytes), {} kept, {} abandoned uploads removed",
                report.removed.len(),
                report.bytes_freed,
                report.kept,
                report.uploads_removed
            )?;
            Ok(())
        }
        RegistryVerb::Serve {
            addr,
            storage,
            read_only,
            max_blob_size,
            auth,
            access,
            token_key,
            tls,
            pull_through,
        } => {
            let policy = match &access {
                Some(p) => AccessPolicy::load(p)?,
                None => AccessPolicy::authenticated_all(),
            };
            let auth = match auth.as_deref().map(|a| a.split_once(':')) {
                None => Auth::Open,
                Some(Some(("htpasswd", f))) => Auth::Basic {
                    users: Users::load_htpasswd(Path::new(f))?,
                    policy,
                },
                Some(Some(("token", f))) => {
                    let mut t = TokenAuth::new(Users::load_htpasswd(Path::new(f))?, policy)?;
                    if let Some(k) = &token_key {
                        t = t.with_key_file(k)?;
                    }
                    Auth::Token(t)
                }
                Some(_) => bail!("--auth takes htpasswd:FILE or token:FILE"),
            };
            let text = storage.to_string_lossy();
            let base = if text.starts_with("s3://") {
                Registry::new(S3Storage::from_url(&text)?)
            } else {
                let disk = DiskStorage::open(&storage)
                    .await
                    .with_context(|| format!("opening the storage {}", storage.display()))?;
                Registry::new(disk)
            };
            let mut registry = base.read_only(read_only).auth(auth);
            if let Some(n) = max_blob_size {
                registry = registry.max_blob_size(n);
            }
            if let Some(url) = &pull_through {
                let client = Client::builder().credentials(DockerConfig::load_default()?);
                registry = registry.pull_through_url(url, client)?;
            }
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("listening on {addr}"))?;
            let (scheme, tls) = match tls.as_deref() {
                Some([cert, key]) => ("https", Some(tls_config(cert, key)?)),
                _ => ("http", None),
            };
            eprintln!(
                "serving the registry at {scheme}://{} from {}",
                listener.local_addr()?,
                storage.display()
            );
            let serving = async {
                match tls {
                    Some(config) => registry.serve_tls(listener, config).await,
                    None => registry.serve(listener).await,
                }
            };
            tokio::select! {
                r = serving => r.context("serving")?,
                _ = tokio::signal::ctrl_c() => {}
            }
            Ok(())
        }
    }
}

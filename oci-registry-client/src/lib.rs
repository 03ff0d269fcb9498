//! # oci-rs-registry-client
//!
//! Both ends of the [OCI distribution spec] (v1.1). The client: pull and push manifests and
//! blobs, list tags and repositories, find referrers, delete, with the authentication,
//! retries and safety that real registries need. The server (feature `server`, module
//! [`server`](crate#the-server)): a registry over a storage trait. Built on reqwest (HTTP/2, rustls or
//! native-tls) and tokio: every call
//! needs a tokio runtime, as reqwest does.
//!
//! [OCI distribution spec]: https://github.com/opencontainers/distribution-spec
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use oci_rs_registry_client::{Client, DockerConfig, Repository};
//! use tokio::io::AsyncReadExt;
//!
//! let client = Client::builder()
//!     .credentials(DockerConfig::load_default()?)
//!     .build()?;
//! let (repo, reference) = Repository::parse_reference("docker.io/library/busybox:latest")?;
//! let manifest = client.manifest(&repo, &reference).await?;
//! for child in manifest.children() {
//!     // Each blob is a stream, verified against its descriptor while it is read.
//!     let mut blob = client.blob(&repo, &child).await?;
//!     let mut sink = tokio::io::sink();
//!     tokio::io::copy(&mut blob, &mut sink).await?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! [`RegistrySource`] and [`RegistryDestination`] plug a repository into
//! [`oci_rs_image::ImageSource`] / [`oci_rs_image::ImageDestination`], so the generic image copy
//! pulls into and pushes from any store.
//!
//! ## The server
//!
//! With the cargo feature `server`, `server::Registry` answers the same protocol over a
//! `server::RegistryStorage`: `server::DiskStorage` keeps blobs, repositories and upload
//! sessions in a directory; with the feature `s3`, `server::S3Storage` keeps them in an S3
//! bucket. `oci registry serve` is that, on a port.
//!
//! ## TLS
//!
//! The cargo features choose the TLS library:
//!
//! - `rustls` (default) with the crypto provider `ring` (default) or `aws-lc-rs`; with
//!   `default-features = false, features = ["rustls"]` the program installs its own provider
//!   (`rustls::crypto::CryptoProvider::install_default`) before it builds a client, or
//!   [`ClientBuilder::build`] fails with [`Error::NoCryptoProvider`]. It trusts the
//!   platform's root store (rustls-native-certs) and Mozilla's roots (webpki-roots).
//! - `native-tls`, with `default-features = false`: the platform's library (OpenSSL on
//!   Linux) and its root store. When both are on, rustls is used.
//!
//! Either way [`ClientBuilder::root_certificates_pem`] adds private CAs, and
//! [`ClientBuilder::http_client`] takes a `reqwest::Client` built as the program likes.
//!
//! ## Guarantees
//!
//! - **Verified content.** Manifests keep their exact bytes and are checked against the digest
//!   asked for, or `Docker-Content-Digest` when fetched by tag. Blobs stream through a
//!   verifying reader and are never buffered whole; a download that drops is resumed with
//!   `Range` (a registry that ignores `Range` is re-read from the start, skipping what was
//!   already delivered). Uploads are verified while sent: a mismatch aborts the upload.
//! - **Bounded memory.** Manifests are read up to 4 MiB, token and JSON answers up to 1 MiB,
//!   counted while reading, whatever `Content-Length` says. Chunked uploads hold one chunk.
//! - **Credentials stay home.** Our `Authorization` header is sent only to the registry's
//!   own origin (scheme, host and port): redirects to blob storage, upload `Location`s on
//!   other hosts and `Link` targets never get it. Token realms and `Location`s must be
//!   http(s), and an HTTPS registry may not send us to plain HTTP. Credentials and tokens
//!   never appear in `Debug` output, logs or errors. Plain HTTP is used only for registries
//!   marked insecure and for loopback addresses.
//! - **Retries where safe.** Connection errors, 408, 429 (honouring `Retry-After`, seconds
//!   or HTTP date) and 5xx are retried with exponential backoff and jitter, for idempotent
//!   requests and upload steps that can be repeated; never other 4xx.
//!
//! ## Authentication
//!
//! The challenge from `WWW-Authenticate` decides: bearer tokens (anonymous, or with basic
//! credentials, or the OAuth2 refresh-token POST with a docker `identitytoken`), cached per
//! registry and scope set and refreshed on expiry or a new challenge; or basic auth.
//! Credentials come from a [`CredentialProvider`]: [`DockerConfig`] reads `config.json`
//! (`auths`, `credsStore`, `credHelpers` through `docker-credential-*`), and
//! [`StaticCredentials`] serves fixed ones. `docker.io` is reached at
//! `registry-1.docker.io` and looked up under `https://index.docker.io/v1/`.

// Private modules, one public path per item: everything public is named at the crate root.
mod auth;
mod body;
mod challenge;
mod client;
mod config;
mod credentials;
mod error;
mod listing;
mod progress;
mod pull;
mod push;
mod repository;
mod retry;
mod routes;
mod transfer;

#[cfg(feature = "server")]
pub mod server;

pub use auth::MAX_TOKEN_ANSWER;
pub use challenge::{parse as parse_challenges, AuthChallenge, Challenge, MAX_HEADER_LEN};
pub use client::{Client, ClientBuilder};
pub use config::{MirrorSettings, RegistryConfig, RegistrySettings};
pub use credentials::{
    docker_config_dir, normalize_key, remove_login, save_login, AnonymousProvider, Credential,
    CredentialProvider, DockerConfig, StaticCredentials, StoredIn, DOCKER_HUB_CONFIG_KEY,
};
pub use error::{Error, ErrorKind, RegistryErrorEntry, Result};
pub use listing::{referrers_tag, Page, MAX_JSON_ANSWER};
pub use oci_spec;
pub use progress::{Direction, Progress, ProgressFn};
pub use pull::DOCKER_CONTENT_DIGEST;
pub use push::{PushOutcome, OCI_CHUNK_MIN_LENGTH};
pub use repository::{
    normalize_registry, validate_registry, validate_repository, validate_tag, Repository,
    DOCKER_HUB, DOCKER_HUB_HOST,
};
pub use retry::{parse_retry_after, RetryPolicy};
pub use routes::MirrorUse;
pub use transfer::{RegistryDestination, RegistrySource};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

#[cfg(not(any(feature = "rustls", feature = "native-tls")))]
compile_error!(
    "oci-rs-registry-client needs a TLS library: the `rustls` feature (default) or `native-tls`"
);

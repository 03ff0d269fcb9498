//! A registry repository as an [`ImageSource`] and an [`ImageDestination`], so that the
//! generic copy can pull from and push to registries.

use crate::client::Client;
use crate::repository::Repository;
use async_trait::async_trait;
use oci_rs_image::{BlobReader, ImageDestination, ImageSource, Manifest, ManifestRef};
use oci_spec::image::Descriptor;

/// Reads images from one repository of a registry.
#[derive(Debug, Clone)]
pub struct RegistrySource {
    client: Client,
    repo: Repository,
}

impl RegistrySource {
    /// A source over `repo`.
    pub fn new(client: Client, repo: Repository) -> Self {
        Self { client, repo }
    }

    /// The repository read.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }
}

#[async_trait]
impl ImageSource for RegistrySource {
    async fn manifest(&self, reference: &ManifestRef) -> oci_rs_image::Result<Manifest> {
        self.client
            .manifest(&self.repo, reference)
            .await
            .map_err(crate::Error::into_image)
    }

    async fn blob(&self, desc: &Descriptor) -> oci_rs_image::Result<BlobReader> {
        self.client
            .blob(&self.repo, desc)
            .await
            .map_err(crate::Error::into_image)
    }

    async fn blob_unverified(&self, desc: &Descriptor) -> oci_rs_image::Result<BlobReader> {
        self.client
            .blob_unverified(&self.repo, desc)
            .await
            .map_err(crate::Error::into_image)
    }

    fn registry_repository(&self) -> Option<(String, String)> {
        Some((self.repo.registry().to_owned(), self.repo.name().to_owned()))
    }
}

/// Writes images into one repository of a registry.
#[derive(Debug, Clone)]
pub struct RegistryDestination {
    client: Client,
    repo: Repository,
}

impl RegistryDestination {
    /// A destination over `repo`.
    pub fn new(client: Client, repo: Repository) -> Self {
        Self { client, repo }
    }

    /// The repository written.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }
}

#[async_trait]
impl ImageDestination for RegistryDestination {
    async fn has_blob(&self, desc: &Descriptor) -> oci_rs_image::Result<bool> {
        self.client
            .blob_exists(&self.repo, desc.digest())
            .await
            .map_err(crate::Error::into_image)
    }

    async fn put_blob(&self, desc: &Descriptor, reader: BlobReader) -> oci_rs_image::Result<()> {
        self.client
            .push_blob(&self.repo, desc, reader, None)
            .await
            .map(|_| ())
            .map_err(crate::Error::into_image)
    }

    async fn put_manifest(
        &self,
        manifest: &Manifest,
        tag: Option<&str>,
    ) -> oci_rs_image::Result<()> {
        self.client
            .push_manifest(&self.repo, manifest, tag)
            .await
            .map(|_| ())
            .map_err(crate::Error::into_image)
    }

    async fn mount_blob(
        &self,
        desc: &Descriptor,
        from: &(String, String),
    ) -> oci_rs_image::Result<bool> {
        let Ok(from) = Repository::new(&from.0, &from.1) else {
            return Ok(false);
        };
        if from.registry() != self.repo.registry() {
            return Ok(false);
        }
        self.client
            .mount_blob(&self.repo, desc, &from)
            .await
            .map_err(crate::Error::into_image)
    }
}

/// The repository `reference` names, as an image error when it is not one.
fn repository_of(reference: &oci_rs_image::ImageReference) -> oci_rs_image::Result<Repository> {
    Repository::new(reference.registry(), reference.repository()).map_err(crate::Error::into_image)
}

/// Registries through this client: a reference's registry and repository, for image stores
/// that pull and push by name.
#[async_trait]
impl oci_rs_image::Remote for Client {
    async fn source(
        &self,
        reference: &oci_rs_image::ImageReference,
    ) -> oci_rs_image::Result<Box<dyn ImageSource>> {
        let repo = repository_of(reference)?;
        Ok(Box::new(RegistrySource::new(self.clone(), repo)))
    }

    async fn destination(
        &self,
        reference: &oci_rs_image::ImageReference,
    ) -> oci_rs_image::Result<Box<dyn ImageDestination>> {
        let repo = repository_of(reference)?;
        Ok(Box::new(RegistryDestination::new(self.clone(), repo)))
    }

    /// As the client's registry configuration says ([`crate::RegistryConfig::apply`]).
    fn qualify(&self, name: &str) -> String {
        match &self.inner.short_names {
            Some(c) => c.resolve_short_name(name),
            None => name.to_owned(),
        }
    }

    /// Each search registry's name for a short one, in order
    /// ([`crate::RegistryConfig::short_name_candidates`]).
    fn candidates(&self, name: &str) -> Vec<String> {
        match &self.inner.short_names {
            Some(c) => c.short_name_candidates(name),
            None => vec![name.to_owned()],
        }
    }

    /// Checks the login with `GET /v2/` through the registry's challenge, then returns
    /// this client with these credentials for `registry` (see
    /// [`Client::with_credentials`]).
    async fn login(
        &self,
        registry: &str,
        username: &str,
        password: &str,
    ) -> oci_rs_image::Result<Option<std::sync::Arc<dyn oci_rs_image::Remote>>> {
        let cred = crate::Credential::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        let client = self.with_credentials(std::sync::Arc::new(
            crate::StaticCredentials::new().with(registry, cred),
        ));
        client
            .ping(registry)
            .await
            .map_err(crate::Error::into_image)?;
        Ok(Some(std::sync::Arc::new(client)))
    }
}

/// URLs through this client's HTTP stack (its proxies, TLS roots and timeouts), following
/// at most 10 redirects (http or https only).
#[async_trait]
impl oci_rs_image::UrlSource for Client {
    async fn fetch(
        &self,
        url: &str,
    ) -> oci_rs_image::Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>> {
        let refused = |u: &str, reason: &str| {
            crate::Error::RefusedUrl {
                url: u.to_owned(),
                reason: reason.to_owned(),
            }
            .into_image()
        };
        let mut at = reqwest::Url::parse(url).map_err(|_| refused(url, "not a URL"))?;
        for _ in 0..=10 {
            if !matches!(at.scheme(), "http" | "https") {
                return Err(refused(at.as_str(), "only http and https URLs are fetched"));
            }
            let resp = self
                .inner
                .http
                .get(at.clone())
                .send()
                .await
                .map_err(|e| crate::Error::transport(&at, e).into_image())?;
            if resp.status().is_redirection() {
                let next = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| at.join(l).ok())
                    .ok_or_else(|| refused(at.as_str(), "a redirect without a usable Location"))?;
                at = next;
                continue;
            }
            let resp = resp
                .error_for_status()
                .map_err(|e| crate::Error::transport(&at, e).into_image())?;
            let (rate, window) = self.inner.min_blob_rate;
            let stream = at_least(resp.bytes_stream(), rate, window, at);
            return Ok(Box::new(tokio_util::io::StreamReader::new(stream)));
        }
        Err(refused(url, "more than 10 redirects"))
    }
}

/// `body`, ended with an error naming `url` when it brings fewer than `rate` bytes a second
/// over any `window` (the client's [`crate::ClientBuilder::min_blob_rate`]): a server that
/// sends a byte now and then never trips the read timeout, and would hold a build forever.
fn at_least<S>(
    body: S,
    rate: u64,
    window: std::time::Duration,
    url: reqwest::Url,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Unpin
where
    S: futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
{
    use futures_util::StreamExt;
    struct State<S> {
        body: std::pin::Pin<Box<S>>,
        since: tokio::time::Instant,
        got: u64,
        url: reqwest::Url,
        done: bool,
    }
    let state = State {
        body: Box::pin(body),
        since: tokio::time::Instant::now(),
        got: 0,
        url,
        done: false,
    };
    Box::pin(futures_util::stream::unfold(
        state,
        move |mut st| async move {
            if st.done {
                return None;
            }
            loop {
                let deadline = st.since + window;
                let next = tokio::time::timeout_at(deadline, st.body.next()).await;
                let elapsed = st.since.elapsed();
                if elapsed >= window {
                    if (st.got as f64) < rate as f64 * elapsed.as_secs_f64() {
                        st.done = true;
                        let e = crate::Error::invalid(
                            &st.url,
                            format!(
                                "the body arrived under {rate} bytes/s ({} bytes in {elapsed:.1?})",
                                st.got
                            ),
                        );
                        return Some((Err(std::io::Error::other(e)), st));
                    }
                    st.since = tokio::time::Instant::now();
                    st.got = 0;
                }
                match next {
                    // The window ended without a chunk, but what came in it was enough.
                    Err(_) => continue,
                    Ok(None) => return None,
                    Ok(Some(Ok(chunk))) => {
                        st.got += chunk.len() as u64;
                        return Some((Ok(chunk), st));
                    }
                    Ok(Some(Err(e))) => {
                        st.done = true;
                        let e = crate::Error::transport(&st.url, e);
                        return Some((Err(std::io::Error::other(e)), st));
                    }
                }
            }
        },
    ))
}

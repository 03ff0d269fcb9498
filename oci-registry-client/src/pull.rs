//! Reading from a registry: manifests (GET and HEAD), blobs as verified, resumable streams,
//! and deletes.

use crate::auth::repo_scope;
use crate::body::{error_from, expect_status, read_capped};
use crate::client::{Client, Endpoint, Req};
use crate::error::{Error, Result};
use crate::progress::{Direction, Progress};
use crate::repository::{reference_segment, Repository};
use crate::routes::ReadKind;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use oci_rs_image::media::{essence, MANIFEST_ACCEPT};
use oci_rs_image::{BlobReader, Manifest, ManifestRef, VerifyingReader, MAX_MANIFEST_SIZE};
use oci_spec::image::{Descriptor, Digest, MediaType};
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{Method, Url};
use std::future::Future;
use std::pin::Pin;

/// The header registries use to name a manifest's or blob's digest.
pub const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

pub(crate) fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

type Op<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

impl Client {
    /// Runs a read of `repo` on each mirror that serves `kind` in turn, then on the registry
    /// (or its remapped location), each given the endpoint and the repository's name there,
    /// and returns the first success (or the last endpoint's own error).
    pub(crate) async fn with_mirrors<'a, T>(
        &'a self,
        repo: &Repository,
        kind: ReadKind,
        op: impl Fn(Endpoint, Repository) -> Op<'a, T>,
    ) -> Result<T> {
        let eps = self.read_endpoints(repo, kind)?;
        let n = eps.len();
        let mut last = None;
        for (i, (ep, at)) in eps.into_iter().enumerate() {
            let name = at.to_string();
            match op(ep, at).await {
                Ok(v) => return Ok(v),
                Err(e) if i + 1 < n => {
                    tracing::debug!(mirror = %name, error = %e, "mirror failed, trying the next endpoint");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::InvalidName {
            name: repo.to_string(),
            reason: "no endpoint".into(),
        }))
    }

    /// Checks that the registry speaks the distribution API and accepts our credentials
    /// (`GET /v2/` through the challenge flow), as `docker login` does.
    pub async fn ping(&self, registry: &str) -> Result<()> {
        let ep = self.endpoint(registry)?;
        let url = ep.url("v2/")?;
        expect_status(
            self.send(&ep, Req::new(Method::GET, url, Vec::new()))
                .await?,
            &[200],
        )
        .await?;
        Ok(())
    }

    /// Fetches a manifest or index by tag or digest, with content negotiation over the OCI
    /// and Docker types. The exact bytes are kept; they are verified against the digest asked
    /// for, or against `Docker-Content-Digest` when fetching by tag. Capped at 4 MiB.
    pub async fn manifest(&self, repo: &Repository, reference: &ManifestRef) -> Result<Manifest> {
        self.with_mirrors(repo, ReadKind::of(reference), |ep, at| {
            Box::pin(async move { self.manifest_at(ep, &at, reference).await })
        })
        .await
    }

    async fn manifest_at(
        &self,
        ep: Endpoint,
        repo: &Repository,
        reference: &ManifestRef,
    ) -> Result<Manifest> {
        let url = ep.url(&format!(
            "v2/{}/manifests/{}",
            repo.name(),
            reference_segment(reference)?
        ))?;
        let req = Req::new(Method::GET, url, vec![repo_scope(repo.name(), "pull")])
            .header(ACCEPT, MANIFEST_ACCEPT)?;
        let resp = expect_status(self.send(&ep, req).await?, &[200]).await?;
        let declared =
            header_str(resp.headers(), CONTENT_TYPE.as_str()).map(|c| essence(c).to_owned());
        let header_digest = header_str(resp.headers(), DOCKER_CONTENT_DIGEST).map(str::to_owned);
        let url = resp.url().clone();
        let bytes = read_capped(resp, MAX_MANIFEST_SIZE).await?;
        let declared = declared.filter(|d| d != "text/plain" && d != "application/octet-stream");
        match reference {
            ManifestRef::Digest(d) => Ok(Manifest::parse_expecting(bytes, declared.as_deref(), d)?),
            ManifestRef::Tag(_) => match header_digest {
                Some(h) => {
                    let d = oci_rs_image::parse_digest(&h).map_err(|_| {
                        Error::invalid(&url, format!("invalid Docker-Content-Digest {h:?}"))
                    })?;
                    Ok(Manifest::parse_expecting(bytes, declared.as_deref(), &d)?)
                }
                None => Ok(Manifest::parse(bytes, declared.as_deref())?),
            },
        }
    }

    /// Resolves a tag or digest to a descriptor with a HEAD request; falls back to a GET
    /// when the registry leaves out the digest or the length.
    pub async fn resolve(&self, repo: &Repository, reference: &ManifestRef) -> Result<Descriptor> {
        self.with_mirrors(repo, ReadKind::of(reference), |ep, at| {
            Box::pin(async move { self.resolve_at(ep, &at, reference).await })
        })
        .await
    }

    async fn resolve_at(
        &self,
        ep: Endpoint,
        repo: &Repository,
        reference: &ManifestRef,
    ) -> Result<Descriptor> {
        let url = ep.url(&format!(
            "v2/{}/manifests/{}",
            repo.name(),
            reference_segment(reference)?
        ))?;
        let req = Req::new(Method::HEAD, url, vec![repo_scope(repo.name(), "pull")])
            .header(ACCEPT, MANIFEST_ACCEPT)?;
        let resp = expect_status(self.send(&ep, req).await?, &[200]).await?;
        let h = resp.headers();
        let digest =
            header_str(h, DOCKER_CONTENT_DIGEST).and_then(|d| oci_rs_image::parse_digest(d).ok());
        let size = header_str(h, CONTENT_LENGTH.as_str()).and_then(|l| l.parse::<u64>().ok());
        let media = header_str(h, CONTENT_TYPE.as_str()).map(|c| essence(c).to_owned());
        if let (Some(digest), Some(size), Some(media)) = (digest, size, media) {
            let digest_ok = match reference {
                ManifestRef::Digest(d) => *d == digest,
                ManifestRef::Tag(_) => true,
            };
            if digest_ok
                && size > 0
                && size <= MAX_MANIFEST_SIZE
                && oci_rs_image::ManifestKind::from_media_type(&media).is_some()
            {
                return Ok(oci_rs_image::descriptor(
                    MediaType::from(media.as_str()),
                    digest,
                    size,
                ));
            }
        }
        // Incomplete HEAD answer: fetch the manifest, which is verified.
        Ok(self.manifest_at(ep, repo, reference).await?.descriptor())
    }

    /// The size of a blob the repository has (HEAD's `Content-Length`); `None` when it has
    /// none. The size is the registry's word: reading the blob with it verifies it.
    pub async fn blob_size(&self, repo: &Repository, digest: &Digest) -> Result<Option<u64>> {
        oci_rs_image::check_digest_algorithm(digest)?;
        // A read: each mirror in turn, then the registry; the first that has it answers.
        let eps = self.read_endpoints(repo, ReadKind::Blob)?;
        let n = eps.len();
        for (i, (ep, at)) in eps.into_iter().enumerate() {
            match self.blob_size_at(&ep, &at, digest).await {
                Ok(Some(size)) => return Ok(Some(size)),
                Ok(None) => {}
                Err(e) if i + 1 < n => {
                    tracing::debug!(mirror = %at, error = %e, "mirror failed, trying the next endpoint");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    async fn blob_size_at(
        &self,
        ep: &Endpoint,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        let url = ep.url(&format!("v2/{}/blobs/{digest}", repo.name()))?;
        let resp = self
            .send(
                ep,
                Req::new(Method::HEAD, url, vec![repo_scope(repo.name(), "pull")]),
            )
            .await?;
        match resp.status().as_u16() {
            200 => Ok(resp
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())),
            404 => Ok(None),
            _ => Err(error_from(resp).await),
        }
    }

    /// True when the repository has the blob (HEAD).
    pub async fn blob_exists(&self, repo: &Repository, digest: &Digest) -> Result<bool> {
        let ep = self.endpoint_for(repo)?;
        self.blob_exists_at(&ep, repo, digest).await
    }

    pub(crate) async fn blob_exists_at(
        &self,
        ep: &Endpoint,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<bool> {
        oci_rs_image::check_digest_algorithm(digest)?;
        let url = ep.url(&format!("v2/{}/blobs/{digest}", repo.name()))?;
        let resp = self
            .send(
                ep,
                Req::new(Method::HEAD, url, vec![repo_scope(repo.name(), "pull")]),
            )
            .await?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(error_from(resp).await),
        }
    }

    /// A blob as a stream verified against `desc` (size and digest) while it is read. A
    /// connection that drops mid-blob is resumed with `Range: bytes=N-`; a registry that
    /// ignores `Range` is read again from the start, skipping what was already delivered.
    /// Reading to the end without an error proves the content.
    pub async fn blob(&self, repo: &Repository, desc: &Descriptor) -> Result<BlobReader> {
        self.with_mirrors(repo, ReadKind::Blob, |ep, at| {
            Box::pin(async move { self.blob_at(ep, &at, desc, true).await })
        })
        .await
    }

    /// A blob's bytes, resumed like [`blob`](Self::blob) but not hashed here: for a caller that
    /// checks size and digest itself before keeping anything (a content store's ingest). At
    /// most `size + 1` bytes come through, so an overrun is still seen.
    pub async fn blob_unverified(
        &self,
        repo: &Repository,
        desc: &Descriptor,
    ) -> Result<BlobReader> {
        self.with_mirrors(repo, ReadKind::Blob, |ep, at| {
            Box::pin(async move { self.blob_at(ep, &at, desc, false).await })
        })
        .await
    }

    async fn blob_at(
        &self,
        ep: Endpoint,
        repo: &Repository,
        desc: &Descriptor,
        verify: bool,
    ) -> Result<BlobReader> {
        oci_rs_image::check_digest_algorithm(desc.digest())?;
        let permit = self
            .inner
            .downloads
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::invalid(&ep.base, "client is shutting down"))?;
        let url = ep.url(&format!("v2/{}/blobs/{}", repo.name(), desc.digest()))?;
        let mut state = BlobStream {
            client: self.clone(),
            ep,
            scopes: vec![repo_scope(repo.name(), "pull")],
            url,
            digest: desc.digest().clone(),
            size: desc.size(),
            offset: 0,
            skip: 0,
            body: None,
            resumes: 0,
            opened_at: 0,
            window: (std::time::Instant::now(), 0),
            done: false,
            _permit: permit,
        };
        // Open eagerly so that "not found" and auth errors come from here, typed.
        state.open().await?;
        let stream = futures_util::stream::unfold(state, |mut st| async move {
            let item = st.next_chunk().await?;
            Some((item, st))
        });
        let reader = tokio_util::io::StreamReader::new(Box::pin(stream));
        if verify {
            Ok(Box::pin(VerifyingReader::for_descriptor(reader, desc)?))
        } else {
            Ok(Box::pin(tokio::io::AsyncReadExt::take(
                reader,
                desc.size().saturating_add(1),
            )))
        }
    }

    /// Deletes a manifest by digest.
    pub async fn delete_manifest(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        oci_rs_image::check_digest_algorithm(digest)?;
        let ep = self.endpoint_for(repo)?;
        let url = ep.url(&format!("v2/{}/manifests/{digest}", repo.name()))?;
        let req = Req::new(Method::DELETE, url, vec![repo_scope(repo.name(), "delete")]);
        expect_status(self.send(&ep, req).await?, &[200, 202, 204]).await?;
        Ok(())
    }

    /// Deletes a blob.
    pub async fn delete_blob(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        oci_rs_image::check_digest_algorithm(digest)?;
        let ep = self.endpoint_for(repo)?;
        let url = ep.url(&format!("v2/{}/blobs/{digest}", repo.name()))?;
        let req = Req::new(Method::DELETE, url, vec![repo_scope(repo.name(), "delete")]);
        expect_status(self.send(&ep, req).await?, &[200, 202, 204]).await?;
        Ok(())
    }
}

/// The state of one blob download.
struct BlobStream {
    client: Client,
    ep: Endpoint,
    scopes: Vec<String>,
    url: Url,
    digest: Digest,
    size: u64,
    /// Bytes handed to the reader so far.
    offset: u64,
    /// Bytes to drop from the current body (a restart after `Range` was ignored).
    skip: u64,
    body: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    /// Resumes in a row without progress.
    resumes: u32,
    /// `offset` when the current body was opened.
    opened_at: u64,
    /// Start of the current rate window and `offset` then.
    window: (std::time::Instant, u64),
    done: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

fn to_io(e: Error) -> std::io::Error {
    match e {
        Error::Image(i) => std::io::Error::new(std::io::ErrorKind::InvalidData, i),
        other => std::io::Error::other(other),
    }
}

impl BlobStream {
    /// Whether another resume is allowed: attempts that made progress reset the count of
    /// attempts in a row without it.
    fn may_resume(&mut self) -> bool {
        if self.offset > self.opened_at {
            self.resumes = 0;
        }
        if self.resumes < self.client.inner.max_resumes {
            self.resumes += 1;
            true
        } else {
            false
        }
    }

    fn report_chunk(&self) {
        self.client.report(Progress {
            digest: self.digest.clone(),
            transferred: self.offset,
            total: self.size,
            direction: Direction::Download,
        });
    }

    async fn open(&mut self) -> Result<()> {
        let mut req = Req::new(Method::GET, self.url.clone(), self.scopes.clone());
        // A blob may take long; its floor is the minimum rate, not a deadline.
        req.deadline = false;
        self.opened_at = self.offset;
        self.window = (std::time::Instant::now(), self.offset);
        if self.offset > 0 {
            req = req.header(RANGE, &format!("bytes={}-", self.offset))?;
        }
        let resp = self.client.send(&self.ep, req).await?;
        let status = resp.status().as_u16();
        let url = resp.url().clone();
        self.skip = 0;
        match status {
            200 if self.offset == 0 => {}
            200 => {
                tracing::debug!(digest = %self.digest, offset = self.offset, "registry ignored Range; reading again from the start");
                self.skip = self.offset;
            }
            206 if self.offset > 0 => {
                let range = header_str(resp.headers(), CONTENT_RANGE.as_str()).unwrap_or("");
                let start = range
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split_once('-'))
                    .and_then(|(s, _)| s.trim().parse::<u64>().ok());
                if start != Some(self.offset) {
                    return Err(Error::invalid(
                        &url,
                        format!(
                            "asked for bytes from {}, got Content-Range {range:?}",
                            self.offset
                        ),
                    ));
                }
            }
            416 if self.offset > 0 => {
                // Nothing from `offset` on (distribution's answer to a range at the end):
                // the blob is shorter than its descriptor. The read ends here, and the
                // verifying reader (or the store's check) reports a size mismatch.
                tracing::debug!(digest = %self.digest, offset = self.offset, size = self.size, "registry has no bytes past the offset; the blob is short");
                self.done = true;
                return Ok(());
            }
            404 => {
                let e = error_from(resp).await;
                return Err(if e.is_not_found() {
                    Error::Image(oci_rs_image::Error::BlobNotFound {
                        digest: self.digest.clone(),
                    })
                } else {
                    e
                });
            }
            _ => return Err(error_from(resp).await),
        }
        if let Some(len) = resp.content_length() {
            let expected = self.size - self.offset + self.skip;
            if len > expected {
                return Err(Error::Image(oci_rs_image::Error::SizeExceeded {
                    digest: self.digest.clone(),
                    expected: self.size,
                }));
            }
        }
        self.body = Some(resp.bytes_stream().boxed());
        Ok(())
    }

    async fn next_chunk(&mut self) -> Option<std::io::Result<Bytes>> {
        loop {
            if self.done {
                return None;
            }
            if self.body.is_none() {
                if let Err(e) = self.open().await {
                    self.done = true;
                    return Some(Err(to_io(e)));
                }
            }
            let body = self.body.as_mut()?;
            match body.next().await {
                Some(Ok(mut chunk)) => {
                    if self.skip > 0 {
                        let n = (self.skip as usize).min(chunk.len());
                        self.skip -= n as u64;
                        chunk = chunk.slice(n..);
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    self.offset += chunk.len() as u64;
                    let (rate, window) = self.client.inner.min_blob_rate;
                    let elapsed = self.window.0.elapsed();
                    if elapsed >= window && self.offset < self.size {
                        let got = self.offset - self.window.1;
                        if (got as f64) < rate as f64 * elapsed.as_secs_f64() {
                            // Too slow: this connection is done, and it did not count as
                            // progress. The chunk is kept; the rest is asked for again.
                            tracing::debug!(digest = %self.digest, offset = self.offset, got, ?elapsed, "blob body under the minimum rate, resuming");
                            self.body = None;
                            self.opened_at = self.offset;
                            if !self.may_resume() {
                                self.done = true;
                                return Some(Err(to_io(Error::invalid(
                                    &self.url,
                                    format!(
                                        "blob {} arrived under {rate} bytes/s ({got} bytes in {elapsed:.1?}), {} times in a row",
                                        self.digest,
                                        self.resumes + 1
                                    ),
                                ))));
                            }
                        }
                        self.window = (std::time::Instant::now(), self.offset);
                    }
                    self.report_chunk();
                    return Some(Ok(chunk));
                }
                Some(Err(e)) => {
                    self.body = None;
                    let err = Error::transport(&self.url, e);
                    if self.offset < self.size && self.may_resume() {
                        tracing::debug!(digest = %self.digest, offset = self.offset, error = %err, "blob download dropped, resuming");
                        continue;
                    }
                    self.done = true;
                    return Some(Err(to_io(err)));
                }
                None => {
                    self.body = None;
                    if self.offset < self.size && self.may_resume() {
                        // The body ended early but cleanly: ask for the rest.
                        continue;
                    }
                    // Whatever is missing, the verifying reader reports it.
                    self.done = true;
                    return None;
                }
            }
        }
    }
}

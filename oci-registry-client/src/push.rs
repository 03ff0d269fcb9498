//! Writing to a registry: blobs (HEAD first, cross-repository mount, monolithic or chunked
//! upload), manifests, tags, and the referrers tag-schema fallback.

use crate::auth::repo_scope;
use crate::body::{error_from, expect_status};
use crate::client::{resolve_location, Client, Endpoint, Req, ReqBody};
use crate::error::{Error, Result};
use crate::listing::referrers_tag;
use crate::progress::{Direction, Progress};
use crate::pull::{header_str, DOCKER_CONTENT_DIGEST};
use crate::repository::{validate_tag, Repository};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use oci_rs_image::media::OCI_INDEX;
use oci_rs_image::{BlobReader, Manifest, ManifestKind, ManifestRef, VerifyingReader};
use oci_spec::image::{Descriptor, Digest, ImageIndex, MediaType};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{Method, Url};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncReadExt;

/// The header a registry uses to ask for a minimum PATCH chunk size.
pub const OCI_CHUNK_MIN_LENGTH: &str = "oci-chunk-min-length";

/// What a POST to the uploads endpoint gave.
enum Started {
    /// The blob was mounted from another repository: nothing to upload.
    Mounted,
    /// An upload session at this URL, with the registry's minimum chunk size.
    Session { url: Url, min_chunk: u64 },
}

/// How a blob got into the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// It was there already.
    Existed,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// Uploaded.
    Uploaded,
}

fn push_scopes(repo: &Repository, from: Option<&Repository>) -> Vec<String> {
    let mut s = vec![repo_scope(repo.name(), "pull,push")];
    if let Some(f) = from {
        s.push(repo_scope(f.name(), "pull"));
    }
    s
}

/// The number of bytes an upload `Range: 0-N` answer says the session holds. distribution
/// says `0-0` for both nothing and one byte; before any byte of ours was confirmed
/// (`confirmed` 0) it is read as nothing, so at worst a byte is sent again and refused.
fn parse_range_end(r: &str, confirmed: u64) -> Option<u64> {
    let r = r.trim().trim_start_matches("bytes=");
    let (start, last) = r.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    let last = last.trim().parse::<u64>().ok()?;
    if last == 0 && confirmed == 0 {
        return Some(0);
    }
    last.checked_add(1)
}

impl Client {
    async fn start_upload(
        &self,
        ep: &Endpoint,
        repo: &Repository,
        mount: Option<(&Digest, &Repository)>,
    ) -> Result<Started> {
        let mut url = ep.url(&format!("v2/{}/blobs/uploads/", repo.name()))?;
        if let Some((d, from)) = mount {
            url.query_pairs_mut()
                .append_pair("mount", d.as_ref())
                .append_pair("from", from.name());
        }
        let mut req = Req::new(Method::POST, url, push_scopes(repo, mount.map(|m| m.1)));
        // Starting a session has no effect worth protecting: it can be repeated.
        req.retry = true;
        req = req.header(CONTENT_LENGTH, "0")?;
        let resp = expect_status(self.send(ep, req).await?, &[201, 202]).await?;
        if resp.status().as_u16() == 201 {
            return Ok(Started::Mounted);
        }
        let url = resolve_location(resp.url(), &resp).map_err(|e| match e {
            Error::InvalidResponse { url, .. } => Error::InvalidResponse {
                url,
                reason: "upload session started without a Location header".into(),
            },
            other => other,
        })?;
        let min_chunk = header_str(resp.headers(), OCI_CHUNK_MIN_LENGTH)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        Ok(Started::Session { url, min_chunk })
    }

    async fn cancel_upload(&self, ep: &Endpoint, repo: &Repository, url: Url) {
        let req = Req::new(Method::DELETE, url, push_scopes(repo, None));
        if let Err(e) = self.send(ep, req).await {
            tracing::debug!(error = %e, "cancelling an upload session failed");
        }
    }

    /// Pushes a blob read from `reader`, which must match `desc`: skipped when the
    /// repository has it, mounted from `mount_from` when given and the registry agrees,
    /// else uploaded (one streamed PUT up to the monolithic limit, PATCH chunks above).
    /// The bytes are verified while they are sent; a mismatch aborts the upload, so the
    /// registry stores nothing.
    pub async fn push_blob(
        &self,
        repo: &Repository,
        desc: &Descriptor,
        reader: BlobReader,
        mount_from: Option<&Repository>,
    ) -> Result<PushOutcome> {
        let ep = self.endpoint_for(repo)?;
        let _permit = self
            .inner
            .uploads
            .acquire()
            .await
            .map_err(|_| Error::invalid(&ep.base, "client is shutting down"))?;
        let done = |c: &Client| {
            c.report(Progress {
                digest: desc.digest().clone(),
                transferred: desc.size(),
                total: desc.size(),
                direction: Direction::Upload,
            })
        };
        if self.blob_exists_at(&ep, repo, desc.digest()).await? {
            done(self);
            return Ok(PushOutcome::Existed);
        }
        let mount = mount_from
            .filter(|f| f.registry() == repo.registry() && f.name() != repo.name())
            .map(|f| (desc.digest(), f));
        match self.start_upload(&ep, repo, mount).await? {
            Started::Mounted => {
                done(self);
                Ok(PushOutcome::Mounted)
            }
            Started::Session { url, min_chunk } => {
                self.upload(&ep, repo, url, min_chunk, desc, reader).await?;
                Ok(PushOutcome::Uploaded)
            }
        }
    }

    /// Asks the registry to mount a blob from another repository of the same registry;
    /// `false` when it would not (the session it opened instead is cancelled).
    pub async fn mount_blob(
        &self,
        repo: &Repository,
        desc: &Descriptor,
        from: &Repository,
    ) -> Result<bool> {
        if from.registry() != repo.registry() {
            return Ok(false);
        }
        let ep = self.endpoint_for(repo)?;
        match self
            .start_upload(&ep, repo, Some((desc.digest(), from)))
            .await?
        {
            Started::Mounted => Ok(true),
            Started::Session { url, .. } => {
                self.cancel_upload(&ep, repo, url).await;
                Ok(false)
            }
        }
    }

    async fn upload(
        &self,
        ep: &Endpoint,
        repo: &Repository,
        session: Url,
        min_chunk: u64,
        desc: &Descriptor,
        reader: BlobReader,
    ) -> Result<()> {
        let verifying = VerifyingReader::for_descriptor(reader, desc)?;
        let result = if desc.size() <= self.inner.monolithic_limit {
            self.upload_monolithic(ep, repo, session.clone(), desc, verifying)
                .await
        } else {
            let chunk = self.inner.chunk_size.max(min_chunk);
            self.upload_chunked(ep, repo, session.clone(), chunk, desc, verifying)
                .await
        };
        match result {
            Ok(()) => Ok(()),
            // The answer to the final PUT can be lost after the registry committed the blob.
            Err(e)
                if !e.is_integrity()
                    && self
                        .blob_exists_at(ep, repo, desc.digest())
                        .await
                        .unwrap_or(false) =>
            {
                tracing::debug!(error = %e, digest = %desc.digest(), "upload answer failed but the blob is there");
                Ok(())
            }
            Err(e) => {
                self.cancel_upload(ep, repo, session).await;
                Err(e)
            }
        }
    }

    fn finish_url(mut url: Url, digest: &Digest) -> Url {
        url.query_pairs_mut().append_pair("digest", digest.as_ref());
        url
    }

    fn check_committed(url: &Url, resp: &reqwest::Response, desc: &Descriptor) -> Result<()> {
        if let Some(d) = header_str(resp.headers(), DOCKER_CONTENT_DIGEST) {
            if d != desc.digest().as_ref() {
                return Err(Error::invalid(
                    url,
                    format!("registry stored {d} for {}", desc.digest()),
                ));
            }
        }
        Ok(())
    }

    async fn upload_monolithic(
        &self,
        ep: &Endpoint,
        repo: &Repository,
        session: Url,
        desc: &Descriptor,
        verifying: VerifyingReader<BlobReader>,
    ) -> Result<()> {
        let failure: Arc<Mutex<Option<oci_rs_image::Error>>> = Arc::default();
        let slot = failure.clone();
        let client = self.clone();
        let digest = desc.digest().clone();
        let total = desc.size();
        let mut sent = 0u64;
        let stream = tokio_util::io::ReaderStream::with_capacity(verifying, 256 * 1024).map(
            move |r| match r {
                Ok(b) => {
                    sent += b.len() as u64;
                    client.report(Progress {
                        digest: digest.clone(),
                        transferred: sent,
                        total,
                        direction: Direction::Upload,
                    });
                    Ok(b)
                }
                Err(e) => {
                    let err = oci_rs_image::Error::from_io(e);
                    let msg = crate::error::chain(&err);
                    if let Ok(mut s) = slot.lock() {
                        *s = Some(err);
                    }
                    Err(std::io::Error::other(msg))
                }
            },
        );
        let url = Self::finish_url(session, desc.digest());
        let mut req = Req::new(Method::PUT, url.clone(), push_scopes(repo, None))
            .header(CONTENT_TYPE, "application/octet-stream")?
            .header(CONTENT_LENGTH, &desc.size().to_string())?;
        req.body = ReqBody::Stream(Some(reqwest::Body::wrap_stream(stream)));
        req.retry = false;
        let sent = self.send(ep, req).await;
        // A verification failure explains whatever the transport or registry said.
        if let Some(e) = failure.lock().ok().and_then(|mut s| s.take()) {
            return Err(Error::Image(e));
        }
        let resp = expect_status(sent?, &[201, 204]).await?;
        Self::check_committed(&url, &resp, desc)
    }

    async fn upload_chunked(
        &self,
        ep: &Endpoint,
        repo: &Repository,
        mut session: Url,
        chunk: u64,
        desc: &Descriptor,
        mut verifying: VerifyingReader<BlobReader>,
    ) -> Result<()> {
        let chunk = usize::try_from(chunk)
            .unwrap_or(usize::MAX)
            .min(256 * 1024 * 1024);
        let mut offset = 0u64;
        loop {
            let mut buf = BytesMut::with_capacity(chunk.min(desc.size() as usize + 1));
            while buf.len() < chunk {
                let want = chunk - buf.len();
                let mut limited = (&mut verifying).take(want as u64);
                let n = limited
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| Error::Image(oci_rs_image::Error::from_io(e)))?;
                if n == 0 {
                    break;
                }
            }
            if buf.is_empty() {
                break;
            }
            let data = buf.freeze();
            let end = offset + data.len() as u64; // exclusive
            let mut accepted = offset;
            let mut tries = 0;
            while accepted < end {
                tries += 1;
                if tries > 3 {
                    return Err(Error::invalid(
                        &session,
                        format!("registry keeps refusing bytes from {accepted}"),
                    ));
                }
                let part: Bytes = data.slice((accepted - offset) as usize..);
                let mut req = Req::new(Method::PATCH, session.clone(), push_scopes(repo, None))
                    .header(CONTENT_TYPE, "application/octet-stream")?
                    .header(CONTENT_RANGE, &format!("{accepted}-{}", end - 1))?
                    .header(CONTENT_LENGTH, &part.len().to_string())?;
                req.body = ReqBody::Bytes(part);
                req.retry = false;
                let resp = match self.send(ep, req).await {
                    Ok(r) if matches!(r.status().as_u16(), 201 | 202 | 204) => r,
                    other => {
                        let err = match other {
                            Ok(r) => error_from(r).await,
                            Err(e) => e,
                        };
                        // The chunk may or may not have landed: ask the session.
                        if err.can_retry() {
                            if let Ok((url, got)) = self.upload_status(ep, repo, &session).await {
                                if (offset..=end).contains(&got) {
                                    tracing::debug!(%err, got, "chunk failed; continuing from the session's offset");
                                    session = url;
                                    accepted = got;
                                    continue;
                                }
                            }
                        }
                        return Err(err);
                    }
                };
                if resp.headers().contains_key(reqwest::header::LOCATION) {
                    session = resolve_location(resp.url(), &resp)?;
                }
                accepted = match header_str(resp.headers(), RANGE.as_str()) {
                    Some(r) => {
                        let got = parse_range_end(r, end).ok_or_else(|| {
                            Error::invalid(&session, format!("invalid Range header {r:?}"))
                        })?;
                        if got < offset || got > end {
                            return Err(Error::invalid(
                                &session,
                                format!("registry has {got} bytes, we sent up to {end}"),
                            ));
                        }
                        got
                    }
                    None => end,
                };
            }
            offset = end;
            self.report(Progress {
                digest: desc.digest().clone(),
                transferred: offset,
                total: desc.size(),
                direction: Direction::Upload,
            });
        }
        let url = Self::finish_url(session, desc.digest());
        let req = Req::new(Method::PUT, url.clone(), push_scopes(repo, None))
            .header(CONTENT_LENGTH, "0")?;
        let resp = expect_status(self.send(ep, req).await?, &[201, 204]).await?;
        Self::check_committed(&url, &resp, desc)
    }

    /// The session URL and how many bytes an upload session holds (`GET` on the session).
    async fn upload_status(
        &self,
        ep: &Endpoint,
        repo: &Repository,
        session: &Url,
    ) -> Result<(Url, u64)> {
        let req = Req::new(Method::GET, session.clone(), push_scopes(repo, None));
        let resp = expect_status(self.send(ep, req).await?, &[200, 204]).await?;
        let url = if resp.headers().contains_key(reqwest::header::LOCATION) {
            resolve_location(resp.url(), &resp)?
        } else {
            session.clone()
        };
        let got = match header_str(resp.headers(), RANGE.as_str()) {
            Some(r) => parse_range_end(r, 0)
                .ok_or_else(|| Error::invalid(&url, format!("invalid Range header {r:?}")))?,
            None => 0,
        };
        Ok((url, got))
    }

    /// Pushes a manifest or index (after the blobs or manifests it points at), by tag when
    /// given, else by digest. A manifest with a `subject` is also added to the subject's
    /// referrers tag when the registry does not say it indexed it (`OCI-Subject`).
    pub async fn push_manifest(
        &self,
        repo: &Repository,
        manifest: &Manifest,
        tag: Option<&str>,
    ) -> Result<Digest> {
        let indexed = self.put_manifest_only(repo, manifest, tag).await?;
        let subject = match manifest.body() {
            oci_rs_image::ManifestBody::Image(m) => m.subject().clone(),
            oci_rs_image::ManifestBody::Index(i) => i.subject().clone(),
        };
        if let (Some(subject), false) = (subject, indexed) {
            self.add_to_referrers_tag(repo, &subject, manifest).await?;
        }
        Ok(manifest.digest().clone())
    }

    /// PUTs a manifest; true when the registry says it indexed the subject.
    async fn put_manifest_only(
        &self,
        repo: &Repository,
        manifest: &Manifest,
        tag: Option<&str>,
    ) -> Result<bool> {
        let ep = self.endpoint_for(repo)?;
        let reference = match tag {
            Some(t) => {
                validate_tag(t)?;
                t.to_owned()
            }
            None => manifest.digest().to_string(),
        };
        let url = ep.url(&format!("v2/{}/manifests/{reference}", repo.name()))?;
        let mut req = Req::new(Method::PUT, url.clone(), push_scopes(repo, None))
            .header(CONTENT_TYPE, manifest.media_type())?;
        req.body = ReqBody::Bytes(manifest.bytes().clone());
        let resp = expect_status(self.send(&ep, req).await?, &[200, 201, 202]).await?;
        if let Some(d) = header_str(resp.headers(), DOCKER_CONTENT_DIGEST) {
            if d != manifest.digest().as_ref() {
                return Err(Error::invalid(
                    &url,
                    format!("registry stored {d} for manifest {}", manifest.digest()),
                ));
            }
        }
        Ok(resp.headers().contains_key("oci-subject"))
    }

    async fn add_to_referrers_tag(
        &self,
        repo: &Repository,
        subject: &Descriptor,
        manifest: &Manifest,
    ) -> Result<()> {
        let tag = referrers_tag(subject.digest())?;
        let mut index = match self.manifest(repo, &ManifestRef::Tag(tag.clone())).await {
            Ok(m) => match m.as_index() {
                Some(i) => i.clone(),
                None => {
                    return Err(Error::InvalidName {
                        name: tag,
                        reason: "referrers tag is not an index".into(),
                    })
                }
            },
            Err(e) if e.is_not_found() => {
                let mut i = ImageIndex::default();
                i.set_media_type(Some(MediaType::ImageIndex));
                i.set_manifests(Vec::new());
                i
            }
            Err(e) => return Err(e),
        };
        if index
            .manifests()
            .iter()
            .any(|d| d.digest() == manifest.digest())
        {
            return Ok(());
        }
        let mut desc = manifest.descriptor();
        let (artifact_type, annotations) = match manifest.body() {
            oci_rs_image::ManifestBody::Image(m) => (
                m.artifact_type()
                    .clone()
                    .or_else(|| Some(m.config().media_type().clone())),
                m.annotations().clone(),
            ),
            oci_rs_image::ManifestBody::Index(i) => {
                (i.artifact_type().clone(), i.annotations().clone())
            }
        };
        desc.set_artifact_type(artifact_type);
        desc.set_annotations(annotations);
        let mut manifests = index.manifests().clone();
        manifests.push(desc);
        index.set_manifests(manifests);
        let m = Manifest::from_index(&index, ManifestKind::OciIndex)?;
        debug_assert_eq!(m.media_type(), OCI_INDEX);
        self.put_manifest_only(repo, &m, Some(&tag)).await?;
        Ok(())
    }

    /// Gives an existing manifest another tag.
    pub async fn tag(&self, repo: &Repository, digest: &Digest, tag: &str) -> Result<()> {
        let m = self
            .manifest(repo, &ManifestRef::Digest(digest.clone()))
            .await?;
        self.push_manifest(repo, &m, Some(tag)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_range_answers() {
        assert_eq!(parse_range_end("0-99", 0), Some(100));
        assert_eq!(parse_range_end("bytes=0-99", 50), Some(100));
        assert_eq!(parse_range_end("0-0", 0), Some(0));
        assert_eq!(parse_range_end("0-0", 1), Some(1));
        assert_eq!(parse_range_end("5-9", 0), None);
        assert_eq!(parse_range_end("junk", 0), None);
        assert_eq!(parse_range_end("0-18446744073709551615", 0), None);
    }
}

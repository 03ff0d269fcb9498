//! The server half of the distribution protocol (feature `server`): a registry over a
//! [`RegistryStorage`], served with hyper.
//!
//! It answers the OCI distribution spec v1.1 (pull, push, content discovery, content
//! management) and docker's registry API v2 that clients use: manifests and blobs by digest
//! and tag with `HEAD` and `Range`; monolithic, chunked (`Content-Range`, 416 on a wrong
//! range) and resumable uploads whose state is in the storage; cross-repository mounts; tags
//! with `n`/`last` paging; referrers with `artifactType` filtering; deletes; `_catalog`;
//! docker's error JSON. Every blob is verified against its digest while it streams into the
//! store, and nothing is visible before it is whole and checked; a manifest is stored only
//! when every blob and manifest it names is in its repository.
//!
//! Storage: [`DiskStorage`] (a directory) or, with the feature `s3`, `S3Storage` (an S3
//! bucket through the `object_store` crate, nothing on the local disk, so that several
//! servers over one bucket serve the same content and continue each other's uploads).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use oci_rs_registry_client::server::{DiskStorage, Registry};
//!
//! let storage = DiskStorage::open("/var/lib/registry").await?;
//! let registry = Registry::new(storage);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! registry.serve(listener).await?;
//! # Ok(()) }
//! ```

mod auth;
mod route;
#[cfg(feature = "s3")]
mod s3;
mod storage;

pub use auth::{AccessPolicy, AccessRule, Action, Auth, AuthConfigError, TokenAuth, Users};
pub use route::MAX_NAME;
#[cfg(feature = "s3")]
pub use s3::{S3Storage, S3_GC_MARGIN, S3_LEASE_MAX_AGE};
pub use storage::{Appended, DiskStorage, RegistryGcReport, RegistryStorage, UploadInfo};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE};
use hyper::{Method, Request, Response, StatusCode};
use oci_rs_image::oci_spec::image::{Descriptor, Digest, MediaType};
use oci_rs_image::{Error as StoreError, Expected, ReferenceStore, REF_NAME};
use route::{route, BadPath, Reference, Route};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncRead;

/// A response body: bytes in memory or a stream from the store.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// The annotation under which a repository's manifest entry keeps its subject's digest
/// (for the referrers API).
const SUBJECT: &str = "rs.oci.registry.subject";

/// The largest manifest accepted by default (distribution's limit).
pub const DEFAULT_MAX_MANIFEST: u64 = 4 << 20;

/// A registry: the distribution API over a [`RegistryStorage`].
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

/// A pull-through cache's upstream.
struct Upstream {
    client: crate::Client,
    registry: String,
    #[allow(clippy::type_complexity)]
    inflight: std::sync::Mutex<
        std::collections::HashMap<
            (String, Digest),
            futures_util::future::Shared<
                futures_util::future::BoxFuture<'static, Result<(), Arc<String>>>,
            >,
        >,
    >,
}

#[derive(Clone)]
struct Inner {
    upstream: Option<Arc<Upstream>>,
    /// At least this many bytes of a request body in every window of this length.
    min_rate: (u64, Duration),
    https: bool,
    auth: Auth,
    storage: Arc<dyn RegistryStorage>,
    max_manifest: u64,
    max_blob: u64,
    read_only: bool,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("max_manifest", &self.inner.max_manifest)
            .field("max_blob", &self.inner.max_blob)
            .field("read_only", &self.inner.read_only)
            .finish_non_exhaustive()
    }
}

/// An answer that is an error of the distribution spec: status, code and message.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    detail: Value,
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            detail: Value::Null,
            headers: Vec::new(),
        }
    }

    fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    fn detail(mut self, d: Value) -> Self {
        self.detail = d;
        self
    }

    fn response(self) -> Response<Body> {
        let mut e = json!({"code": self.code, "message": self.message});
        if !self.detail.is_null() {
            e["detail"] = self.detail;
        }
        let body = json!({ "errors": [e] }).to_string();
        let mut r = Response::new(full(body));
        *r.status_mut() = self.status;
        set(&mut r, CONTENT_TYPE, "application/json");
        for (k, v) in &self.headers {
            set(&mut r, *k, v);
        }
        r
    }
}

/// The storage failed: logged, and a 500 that says no more.
fn internal(e: StoreError) -> ApiError {
    tracing::error!(error = %oci_rs_image::chain(&e), "registry storage");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        "the registry's storage failed",
    )
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty() -> Body {
    full(Bytes::new())
}

fn set(r: &mut Response<Body>, name: impl hyper::header::IntoHeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

fn status(s: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = s;
    r
}

/// The request's query parameters (decoded).
fn query(req: &Request<Incoming>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for pair in req.uri().query().unwrap_or("").split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(decode(k), decode(v));
    }
    out
}

/// Every value of a query parameter, and of a form body's.
fn query_values(query: &str, key: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .filter(|(k, _)| decode(k) == key)
        .map(|(_, v)| decode(v))
        .collect()
}

/// Percent-decoding of a query component (`+` is a space).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request body as a reader, cut off when it falls under `min_rate`.
fn body_reader(body: Incoming, min_rate: (u64, Duration)) -> impl AsyncRead + Send + Unpin {
    let stream = http_body_util::BodyStream::new(body)
        .try_filter_map(|frame| std::future::ready(Ok(frame.into_data().ok())))
        .map_err(std::io::Error::other);
    RateFloor {
        inner: tokio_util::io::StreamReader::new(stream),
        min: min_rate.0,
        window: min_rate.1,
        got: 0,
        deadline: Box::pin(tokio::time::sleep(min_rate.1)),
    }
}

/// A reader that fails when fewer than `min` bytes arrive in a `window`.
struct RateFloor<R> {
    inner: R,
    min: u64,
    window: Duration,
    got: u64,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for RateFloor<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.got += (buf.filled().len() - before) as u64;
                if this.got >= this.min {
                    // A new window from here.
                    this.got = 0;
                    let next = tokio::time::Instant::now() + this.window;
                    this.deadline.as_mut().reset(next);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match std::future::Future::poll(this.deadline.as_mut(), cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the body arrives slower than {} bytes per {} s",
                        this.min,
                        this.window.as_secs_f64()
                    ),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// A stream from the store as a response body.
fn stream_body(reader: oci_rs_image::BlobReader) -> Body {
    let s = tokio_util::io::ReaderStream::with_capacity(reader, 256 << 10).map_ok(Frame::data);
    UnsyncBoxBody::new(StreamBody::new(s))
}

/// The name of a blob link in a repository.
fn link(d: &Digest) -> String {
    format!("blob:{d}")
}

/// A `Range: bytes=A-B` header: the first and last byte, checked against `size`.
fn byte_range(h: &str, size: u64) -> Option<(u64, u64)> {
    let spec = h.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (size.checked_sub(n.min(size))?, size.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, size.checked_sub(1)?),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(size.checked_sub(1)?),
        ),
    };
    (start <= end && end < size).then_some((start, end))
}

/// The media types a registry serves as manifests, and whether each is an index.
fn manifest_kind(media_type: &str) -> Option<bool> {
    match media_type {
        "application/vnd.oci.image.manifest.v1+json"
        | "application/vnd.docker.distribution.manifest.v2+json" => Some(false),
        "application/vnd.oci.image.index.v1+json"
        | "application/vnd.docker.distribution.manifest.list.v2+json" => Some(true),
        _ => None,
    }
}

impl Registry {
    /// A registry over `storage`, with the default limits: manifests up to 4 MiB, blobs of
    /// any size, pushes allowed.
    pub fn new(storage: impl RegistryStorage + 'static) -> Self {
        Self {
            inner: Arc::new(Inner {
                upstream: None,
                min_rate: (16 << 10, Duration::from_secs(30)),
                https: false,
                auth: Auth::Open,
                storage: Arc::new(storage),
                max_manifest: DEFAULT_MAX_MANIFEST,
                max_blob: u64::MAX,
                read_only: false,
            }),
        }
    }

    fn with(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        f(Arc::make_mut(&mut self.inner));
        self
    }

    /// Refuses manifests larger than `bytes` (413, `SIZE_INVALID`).
    pub fn max_manifest_size(self, bytes: u64) -> Self {
        self.with(|i| i.max_manifest = bytes)
    }

    /// Refuses blobs larger than `bytes` (413, `SIZE_INVALID`): an upload is stopped when
    /// it passes the limit, and what it sent is dropped.
    pub fn max_blob_size(self, bytes: u64) -> Self {
        self.with(|i| i.max_blob = bytes)
    }

    /// How requests are authenticated and what each may do (default: open).
    pub fn auth(self, auth: Auth) -> Self {
        self.with(|i| i.auth = auth)
    }

    /// Request bodies slower than `bytes` per `window` are cut off (default 16 KiB per 30 s):
    /// a client trickling an upload holds a connection and a task for bounded time. What
    /// arrived of a chunk stays in its session, to be resumed.
    pub fn min_upload_rate(self, bytes: u64, window: Duration) -> Self {
        self.with(|i| i.min_rate = (bytes, window))
    }

    /// A pull-through cache of `registry` (`registry-1.docker.io`, `ghcr.io`,
    /// `127.0.0.1:5000`), reached with `client` (its credentials, TLS and mirrors): what is
    /// asked and not here is fetched, verified, stored and served; tags are asked upstream
    /// each time and answered from the cache when upstream fails. Concurrent requests for one
    /// blob fetch it once. Pushes and deletes are refused (405), as CNCF distribution's proxy
    /// does.
    pub fn pull_through(self, client: crate::Client, registry: impl Into<String>) -> Self {
        let up = Upstream {
            client,
            registry: registry.into(),
            inflight: std::sync::Mutex::new(std::collections::HashMap::new()),
        };
        self.with(|i| {
            i.upstream = Some(Arc::new(up));
            i.read_only = true;
        })
    }

    /// [`Registry::pull_through`] of the registry at `url` (`https://registry-1.docker.io`,
    /// `http://127.0.0.1:5000`; no scheme is https), reached by a client of `client`'s
    /// settings, marked insecure for an `http://` URL.
    pub fn pull_through_url(self, url: &str, client: crate::ClientBuilder) -> crate::Result<Self> {
        let (plain, host) = match url.split_once("://") {
            Some(("http", h)) => (true, h),
            Some(("https", h)) => (false, h),
            Some(_) => {
                return Err(crate::Error::RefusedUrl {
                    url: url.to_owned(),
                    reason: "a pull-through upstream is an http:// or https:// URL".into(),
                })
            }
            None => (false, url),
        };
        let host = host.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(crate::Error::RefusedUrl {
                url: url.to_owned(),
                reason: "a pull-through upstream is a registry's address, without a path".into(),
            });
        }
        let client = match plain {
            true => client.insecure_registry(host),
            false => client,
        };
        Ok(self.pull_through(client.build()?, host))
    }

    /// Serves pulls only: pushes and deletes get 405 (`UNSUPPORTED`).
    pub fn read_only(self, yes: bool) -> Self {
        self.with(|i| i.read_only = yes)
    }

    /// Serves HTTP/1.1 on `listener` until it fails, one task per connection.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, peer) = listener.accept().await?;
            tokio::spawn(self.clone().connection(stream, peer));
        }
    }

    /// [`serve`](Self::serve) over TLS (see [`tls_config`]): a client that does not finish
    /// its handshake in 10 s is dropped.
    pub async fn serve_tls(
        self,
        listener: tokio::net::TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<()> {
        let this = self.with(|i| i.https = true);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        loop {
            let (stream, peer) = listener.accept().await?;
            let (this, acceptor) = (this.clone(), acceptor.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => this.connection(tls, peer).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    }

    async fn connection<S>(self, stream: S, peer: std::net::SocketAddr)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let io = hyper_util::rt::TokioIo::new(stream);
        let svc = hyper::service::service_fn(move |req| {
            let this = self.clone();
            async move { Ok::<_, std::convert::Infallible>(this.handle(req).await) }
        });
        if let Err(e) = hyper::server::conn::http1::Builder::new()
            // A client that sends its headers one byte a minute is dropped.
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .serve_connection(io, svc)
            .await
        {
            tracing::debug!(%peer, error = %e, "connection ended");
        }
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let has_body = req.headers().contains_key(hyper::header::TRANSFER_ENCODING)
            || req
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() != "0");
        let mut r = match self.dispatch(req).await {
            Ok(r) => r,
            Err(e) => e.response(),
        };
        if has_body && (r.status().is_client_error() || r.status().is_server_error()) {
            // A refusal may leave the request's body unread, and hyper then closes the
            // connection after the answer. Said in the answer, so that the client does not
            // send its next request on it (a POST sent there would see only an EOF).
            set(&mut r, hyper::header::CONNECTION, "close");
        }
        if method == Method::HEAD {
            // The headers of GET, no body.
            *r.body_mut() = empty();
        }
        set(&mut r, "Docker-Distribution-API-Version", "registry/2.0");
        tracing::debug!(%method, %path, status = r.status().as_u16(), "request");
        r
    }

    async fn dispatch(&self, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
        if req.uri().path() == "/token" {
            if let Auth::Token(t) = &self.inner.auth {
                return self.token(req, t).await;
            }
        }
        let reading = matches!(*req.method(), Method::GET | Method::HEAD | Method::DELETE);
        let route = route(req.uri().path()).map_err(|e| match e {
            // No manifest can have such a name: unknown, as the spec has it for a pull.
            BadPath::Tag(t) if reading => ApiError::new(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                "manifest unknown",
            )
            .detail(json!({ "reference": t })),
            BadPath::NotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint")
            }
            BadPath::Name(n) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "NAME_INVALID",
                "invalid repository name",
            )
            .detail(json!({ "name": n })),
            BadPath::Tag(t) => ApiError::new(StatusCode::BAD_REQUEST, "TAG_INVALID", "invalid tag")
                .detail(json!({ "tag": t })),
            BadPath::Digest(d) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                "invalid or unsupported digest",
            )
            .detail(json!({ "digest": d })),
        })?;
        let writes = matches!(
            *req.method(),
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        if writes && self.inner.read_only {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "this registry is read-only",
            ));
        }
        let who = self.authorize(&req, &route).await?;
        let m = req.method().clone();
        match (route, m) {
            (Route::Base, Method::GET | Method::HEAD) => {
                let mut r = Response::new(full("{}"));
                set(&mut r, CONTENT_TYPE, "application/json");
                Ok(r)
            }
            (Route::Catalog, Method::GET) => self.catalog(&req, &who).await,
            (Route::Tags(name), Method::GET) => self.tags(&req, &name).await,
            (Route::Manifest(name, r), Method::GET | Method::HEAD) => {
                self.get_manifest(&name, &r).await
            }
            (Route::Manifest(name, r), Method::PUT) => self.put_manifest(req, &name, &r).await,
            (Route::Manifest(name, r), Method::DELETE) => self.delete_manifest(&name, &r).await,
            (Route::Blob(name, d), Method::GET | Method::HEAD) => {
                self.get_blob(&req, &name, &d).await
            }
            (Route::Blob(name, d), Method::DELETE) => self.delete_blob(&name, &d).await,
            (Route::Uploads(name), Method::POST) => self.start_upload(req, &name, &who).await,
            (Route::Upload(name, id), Method::GET) => self.upload_status(&name, &id).await,
            (Route::Upload(name, id), Method::PATCH) => self.patch_upload(req, &name, &id).await,
            (Route::Upload(name, id), Method::PUT) => self.finish_upload(req, &name, &id).await,
            (Route::Upload(name, id), Method::DELETE) => self.cancel_upload(&name, &id).await,
            (Route::Referrers(name, d), Method::GET) => self.referrers(&req, &name, &d).await,
            _ => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "method not allowed here",
            )),
        }
    }

    async fn repo(
        &self,
        name: &str,
        create: bool,
    ) -> Result<Option<Arc<dyn ReferenceStore>>, ApiError> {
        self.inner
            .storage
            .repository(name, create)
            .await
            .map_err(internal)
    }

    async fn existing_repo(
        &self,
        name: &str,
        unknown: ApiError,
    ) -> Result<Arc<dyn ReferenceStore>, ApiError> {
        self.repo(name, false).await?.ok_or(unknown)
    }

    /// `n` and `last` of a listing, and the page of `all` (sorted) they select, with the
    /// `Link` to the next page when there is one.
    fn page(
        req: &Request<Incoming>,
        all: Vec<String>,
        path: &str,
    ) -> Result<(Vec<String>, Option<String>), ApiError> {
        let q = query(req);
        let n = match q.get("n") {
            Some(n) => Some(n.parse::<usize>().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "PAGINATION_NUMBER_INVALID",
                    "invalid n",
                )
            })?),
            None => None,
        };
        let mut items: Vec<String> = match q.get("last") {
            Some(last) => all
                .into_iter()
                .filter(|t| t.as_str() > last.as_str())
                .collect(),
            None => all,
        };
        let mut next = None;
        if let Some(n) = n {
            if items.len() > n {
                items.truncate(n);
                if let Some(last) = items.last() {
                    next = Some(format!("<{path}?n={n}&last={last}>; rel=\"next\""));
                }
            }
        }
        Ok((items, next))
    }

    async fn catalog(
        &self,
        req: &Request<Incoming>,
        who: &Who,
    ) -> Result<Response<Body>, ApiError> {
        let mut all = self.inner.storage.repositories().await.map_err(internal)?;
        // Only what the caller may pull.
        all.retain(|r| who.may(&self.inner.auth, r, Action::Pull));
        let (repos, next) = Self::page(req, all, "/v2/_catalog")?;
        let mut r = Response::new(full(json!({ "repositories": repos }).to_string()));
        set(&mut r, CONTENT_TYPE, "application/json");
        if let Some(l) = next {
            set(&mut r, "Link", &l);
        }
        Ok(r)
    }

    async fn tags(&self, req: &Request<Incoming>, name: &str) -> Result<Response<Body>, ApiError> {
        let repo = self
            .existing_repo(
                name,
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "NAME_UNKNOWN",
                    "repository name not known to registry",
                ),
            )
            .await?;
        let all: Vec<String> = repo
            .list()
            .await
            .map_err(internal)?
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| !n.contains(':'))
            .collect();
        let (tags, next) = Self::page(req, all, &format!("/v2/{name}/tags/list"))?;
        let mut r = Response::new(full(json!({ "name": name, "tags": tags }).to_string()));
        set(&mut r, CONTENT_TYPE, "application/json");
        if let Some(l) = next {
            set(&mut r, "Link", &l);
        }
        Ok(r)
    }

    fn manifest_unknown(r: &Reference) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
        )
        .detail(json!({ "reference": r.to_string() }))
    }

    /// The descriptor of a repository's manifest, by tag or digest.
    async fn find_manifest(&self, name: &str, r: &Reference) -> Result<Descriptor, ApiError> {
        let repo = self.existing_repo(name, Self::manifest_unknown(r)).await?;
        let key = match r {
            Reference::Tag(t) => t.clone(),
            Reference::Digest(d) => d.to_string(),
        };
        match repo.resolve(&key).await {
            Ok(d) => Ok(d),
            Err(StoreError::ReferenceNotFound { .. }) => Err(Self::manifest_unknown(r)),
            Err(e) => Err(internal(e)),
        }
    }

    async fn get_manifest(&self, name: &str, r: &Reference) -> Result<Response<Body>, ApiError> {
        if let Some(up) = &self.inner.upstream {
            self.fetch_manifest(up, name, r).await?;
        }
        let desc = self.find_manifest(name, r).await?;
        let reader = match self.inner.storage.blobs().open(&desc).await {
            Ok(reader) => reader,
            Err(StoreError::BlobNotFound { .. }) => return Err(Self::manifest_unknown(r)),
            Err(e) => return Err(internal(e)),
        };
        let mut resp = Response::new(stream_body(reader));
        set(&mut resp, CONTENT_TYPE, desc.media_type().as_ref());
        set(&mut resp, CONTENT_LENGTH, &desc.size().to_string());
        set(&mut resp, "Docker-Content-Digest", desc.digest().as_ref());
        set(&mut resp, "ETag", &format!("\"{}\"", desc.digest()));
        Ok(resp)
    }

    /// Reads a whole request body, refusing more than `limit` bytes (413).
    async fn read_body(&self, body: Incoming, limit: u64, what: &str) -> Result<Bytes, ApiError> {
        let mut reader = body_reader(body, self.inner.min_rate);
        let mut buf = Vec::new();
        use tokio::io::AsyncReadExt;
        let n = (&mut reader)
            .take(limit.saturating_add(1))
            .read_to_end(&mut buf)
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "UNKNOWN",
                    format!("reading the {what}: {e}"),
                )
            })?;
        if n as u64 > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                format!("the {what} is larger than {limit} bytes"),
            ));
        }
        Ok(buf.into())
    }

    async fn put_manifest(
        &self,
        req: Request<Incoming>,
        name: &str,
        r: &Reference,
    ) -> Result<Response<Body>, ApiError> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_owned());
        let bytes = self
            .read_body(req.into_body(), self.inner.max_manifest, "manifest")
            .await?;
        let invalid = |why: String| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "MANIFEST_INVALID",
                "manifest invalid",
            )
            .detail(json!({ "reason": why }))
        };
        let doc: Value =
            serde_json::from_slice(&bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
        let body_type = doc
            .get("mediaType")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let media_type = match (&content_type, &body_type) {
            (Some(c), Some(b)) if c != b => {
                return Err(invalid(format!("Content-Type {c} but mediaType {b}")));
            }
            (_, Some(b)) => b.clone(),
            (Some(c), None) => c.clone(),
            (None, None) => {
                return Err(invalid(
                    "no media type: neither Content-Type nor mediaType".into(),
                ))
            }
        };
        let Some(is_index) = manifest_kind(&media_type) else {
            return Err(invalid(format!(
                "unsupported manifest media type {media_type}"
            )));
        };
        // The digest: the one asked for, or sha256 of the bytes.
        let digest = match r {
            Reference::Digest(d) => {
                oci_rs_image::verify_bytes(&bytes, d, None).map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "DIGEST_INVALID",
                        "the manifest does not match its digest",
                    )
                    .detail(json!({ "digest": d.to_string() }))
                })?;
                d.clone()
            }
            Reference::Tag(_) => oci_rs_image::sha256(&bytes),
        };
        // Everything it names must be in the repository.
        let repo = self.repo(name, true).await?.ok_or_else(|| {
            internal(StoreError::ReferenceNotFound {
                name: name.to_owned(),
            })
        })?;
        let described = |v: &Value| -> Result<(Digest, u64), ApiError> {
            let d = v
                .get("digest")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("a descriptor without a digest".into()))?;
            let d = oci_rs_image::parse_digest(d)
                .map_err(|e| invalid(format!("descriptor digest: {e}")))?;
            let size = v
                .get("size")
                .and_then(Value::as_u64)
                .ok_or_else(|| invalid("a descriptor without a size".into()))?;
            Ok((d, size))
        };
        let mut needed: Vec<(Digest, u64, bool)> = Vec::new();
        if is_index {
            for m in doc
                .get("manifests")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (d, s) = described(m)?;
                needed.push((d, s, true));
            }
        } else {
            let config = doc
                .get("config")
                .ok_or_else(|| invalid("no config".into()))?;
            let (d, s) = described(config)?;
            needed.push((d, s, false));
            for l in doc
                .get("layers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                // Foreign layers live elsewhere (their urls).
                if l.get("urls")
                    .and_then(Value::as_array)
                    .is_some_and(|u| !u.is_empty())
                {
                    continue;
                }
                let (d, s) = described(l)?;
                needed.push((d, s, false));
            }
        }
        // Each found under a lease (pinned: a garbage collection running now keeps it, or
        // the lease reports it missing), a few at a time.
        let blobs = self.inner.storage.leased_blobs().await.map_err(internal)?;
        let found = |(d, size, manifest): (Digest, u64, bool)| {
            let (repo, blobs) = (repo.clone(), blobs.clone());
            async move {
                let key = if manifest { d.to_string() } else { link(&d) };
                let linked = match repo.resolve(&key).await {
                    Ok(desc) => desc.size() == size,
                    Err(StoreError::ReferenceNotFound { .. }) => false,
                    Err(e) => return Err(internal(e)),
                };
                let present = linked && blobs.stat(&d).await.map_err(internal)? == Some(size);
                Ok::<_, ApiError>((d, manifest, present))
            }
        };
        let mut checks = futures_util::stream::iter(needed)
            .map(found)
            .buffer_unordered(8);
        while let Some((d, manifest, present)) = checks.try_next().await? {
            if !present {
                let code = if manifest {
                    "MANIFEST_UNKNOWN"
                } else {
                    "MANIFEST_BLOB_UNKNOWN"
                };
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    code,
                    "the manifest names content the repository lacks",
                )
                .detail(json!({ "digest": d.to_string() })));
            }
        }
        let subject = match doc.get("subject") {
            Some(s) => Some(described(s)?.0),
            None => None,
        };
        let tag = match r {
            Reference::Tag(t) => Some(t.as_str()),
            Reference::Digest(_) => None,
        };
        self.store_manifest(
            repo.as_ref(),
            &bytes,
            &doc,
            &media_type,
            &digest,
            subject.as_ref(),
            tag,
            blobs.as_ref(),
        )
        .await?;
        let mut resp = status(StatusCode::CREATED);
        set(
            &mut resp,
            LOCATION,
            &format!("/v2/{name}/manifests/{digest}"),
        );
        set(&mut resp, "Docker-Content-Digest", digest.as_ref());
        if let Some(s) = subject {
            set(&mut resp, "OCI-Subject", s.as_ref());
        }
        Ok(resp)
    }

    /// Stores a checked manifest's bytes in `blobs` (leased), then names it (by digest, and
    /// `tag`) in `repo`, with what the referrers API answers: its artifact type, annotations
    /// and subject.
    #[allow(clippy::too_many_arguments)]
    async fn store_manifest(
        &self,
        repo: &dyn ReferenceStore,
        bytes: &[u8],
        doc: &Value,
        media_type: &str,
        digest: &Digest,
        subject: Option<&Digest>,
        tag: Option<&str>,
        blobs: &dyn oci_rs_image::BlobStore,
    ) -> Result<Descriptor, ApiError> {
        let is_index = manifest_kind(media_type) == Some(true);
        // Stored, then named: a reader never sees a name without its bytes. Written under
        // the caller's lease, kept from a garbage collection until the name exists.
        let mut w = blobs
            .ingest(Expected {
                digest: Some(digest.clone()),
                size: Some(bytes.len() as u64),
            })
            .await
            .map_err(internal)?;
        use tokio::io::AsyncWriteExt;
        w.write_all(bytes)
            .await
            .map_err(|e| internal(StoreError::Stream(e)))?;
        w.commit().await.map_err(internal)?;
        let mut desc = Descriptor::new(
            MediaType::from(media_type),
            bytes.len() as u64,
            digest.clone(),
        );
        let artifact_type = doc.get("artifactType").and_then(Value::as_str).or_else(|| {
            (!is_index)
                .then(|| {
                    doc.get("config")
                        .and_then(|c| c.get("mediaType"))
                        .and_then(Value::as_str)
                })
                .flatten()
        });
        if let Some(a) = artifact_type {
            desc.set_artifact_type(Some(MediaType::from(a)));
        }
        let mut ann: std::collections::HashMap<String, String> = doc
            .get("annotations")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        // Ours only: a manifest's own annotation of that name must not pose as a subject.
        ann.remove(SUBJECT);
        if let Some(s) = subject {
            ann.insert(SUBJECT.to_owned(), s.to_string());
        }
        if !ann.is_empty() {
            desc.set_annotations(Some(ann));
        }
        repo.set(digest.as_ref(), &desc).await.map_err(internal)?;
        if let Some(t) = tag {
            repo.set(t, &desc).await.map_err(internal)?;
        }
        Ok(desc)
    }

    /// Pull-through: the manifest `r` of `name` from upstream, stored and named here. A tag
    /// is asked upstream every time (it may move); a digest only when it is not here. An
    /// upstream that fails leaves what is cached to answer.
    async fn fetch_manifest(
        &self,
        up: &Upstream,
        name: &str,
        r: &Reference,
    ) -> Result<(), ApiError> {
        if let Reference::Digest(d) = r {
            if let Some(repo) = self.repo(name, false).await? {
                if repo.resolve(d.as_ref()).await.is_ok() {
                    return Ok(());
                }
            }
        }
        let Ok(repo_up) = crate::Repository::new(&up.registry, name) else {
            return Ok(());
        };
        let mref = match r {
            Reference::Tag(t) => oci_rs_image::ManifestRef::Tag(t.clone()),
            Reference::Digest(d) => oci_rs_image::ManifestRef::Digest(d.clone()),
        };
        let fetched =
            tokio::time::timeout(Duration::from_secs(60), up.client.manifest(&repo_up, &mref))
                .await;
        let m = match fetched {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                tracing::warn!(repository = name, reference = %r, error = %e, "pull-through: upstream manifest");
                return Ok(());
            }
            Err(_) => {
                tracing::warn!(repository = name, reference = %r, "pull-through: upstream manifest timed out");
                return Ok(());
            }
        };
        let bytes = m.bytes().to_vec();
        let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
            return Ok(());
        };
        let media_type = m.media_type().to_string();
        if manifest_kind(&media_type).is_none() {
            return Ok(());
        }
        let subject = doc
            .get("subject")
            .and_then(|s| s.get("digest"))
            .and_then(Value::as_str)
            .and_then(|d| oci_rs_image::parse_digest(d).ok());
        let repo = self.repo(name, true).await?.ok_or_else(|| {
            internal(StoreError::ReferenceNotFound {
                name: name.to_owned(),
            })
        })?;
        let tag = match r {
            Reference::Tag(t) => Some(t.as_str()),
            Reference::Digest(_) => None,
        };
        let blobs = self.inner.storage.leased_blobs().await.map_err(internal)?;
        self.store_manifest(
            repo.as_ref(),
            &bytes,
            &doc,
            &media_type,
            m.digest(),
            subject.as_ref(),
            tag,
            blobs.as_ref(),
        )
        .await?;
        Ok(())
    }

    /// Pull-through: a blob of `name` from upstream into the store, linked in `name`. One
    /// fetch per repository and blob however many clients ask at once; the others wait for
    /// it and are then served from the store.
    async fn fetch_blob(&self, up: &Arc<Upstream>, name: &str, d: &Digest) -> Result<(), ApiError> {
        use futures_util::FutureExt;
        let key = (name.to_owned(), d.clone());
        let shared = {
            let mut inflight = up.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match inflight.get(&key) {
                Some(f) => f.clone(),
                None => {
                    let (this, up2, name2, d2) =
                        (self.clone(), up.clone(), name.to_owned(), d.clone());
                    // A task of its own: it finishes (and lets go of the registry) even when
                    // every client that asked has gone away.
                    let task =
                        tokio::spawn(async move { this.fetch_blob_now(&up2, &name2, &d2).await });
                    let f = async move {
                        task.await
                            .unwrap_or_else(|e| Err(Arc::new(format!("the fetch ended: {e}"))))
                    }
                    .boxed()
                    .shared();
                    inflight.insert(key.clone(), f.clone());
                    f
                }
            }
        };
        let result = shared.clone().await;
        {
            let mut inflight = up.inflight.lock().unwrap_or_else(|e| e.into_inner());
            // Only this fetch's entry: a newer one for the same blob stays.
            if inflight.get(&key).is_some_and(|f| f.ptr_eq(&shared)) {
                inflight.remove(&key);
            }
        }
        if let Err(e) = result {
            tracing::warn!(repository = name, digest = %d, error = %e, "pull-through: upstream blob");
        }
        Ok(())
    }

    async fn fetch_blob_now(
        &self,
        up: &Upstream,
        name: &str,
        d: &Digest,
    ) -> Result<(), Arc<String>> {
        let err = |e: &dyn std::fmt::Display| Arc::new(e.to_string());
        let repo_up = crate::Repository::new(&up.registry, name).map_err(|e| err(&e))?;
        let Some(size) = up
            .client
            .blob_size(&repo_up, d)
            .await
            .map_err(|e| err(&e))?
        else {
            return Ok(());
        };
        if size > self.inner.max_blob {
            return Err(Arc::new(format!(
                "{size} bytes is over the blob size limit"
            )));
        }
        let desc = Descriptor::new(
            MediaType::Other("application/octet-stream".into()),
            size,
            d.clone(),
        );
        // Verified against the digest and size while it streams in.
        let mut reader = up.client.blob(&repo_up, &desc).await.map_err(|e| err(&e))?;
        let blobs = self
            .inner
            .storage
            .leased_blobs()
            .await
            .map_err(|e| err(&e))?;
        let mut w = blobs
            .ingest(Expected {
                digest: Some(d.clone()),
                size: Some(size),
            })
            .await
            .map_err(|e| err(&e))?;
        tokio::io::copy(&mut reader, &mut w)
            .await
            .map_err(|e| err(&e))?;
        w.commit().await.map_err(|e| err(&e))?;
        let repo = self
            .inner
            .storage
            .repository(name, true)
            .await
            .map_err(|e| err(&e))?
            .ok_or_else(|| Arc::new(format!("repository {name}")))?;
        let link_desc = Descriptor::new(
            MediaType::Other("application/octet-stream".into()),
            size,
            d.clone(),
        );
        repo.set(&link(d), &link_desc).await.map_err(|e| err(&e))?;
        Ok(())
    }

    async fn delete_manifest(&self, name: &str, r: &Reference) -> Result<Response<Body>, ApiError> {
        let repo = self.existing_repo(name, Self::manifest_unknown(r)).await?;
        match r {
            Reference::Tag(t) => {
                if !repo.remove(t).await.map_err(internal)? {
                    return Err(Self::manifest_unknown(r));
                }
            }
            Reference::Digest(d) => {
                let key = d.to_string();
                if !repo.remove(&key).await.map_err(internal)? {
                    return Err(Self::manifest_unknown(r));
                }
                // Its tags go with it.
                for (n, desc) in repo.list().await.map_err(internal)? {
                    if !n.contains(':') && desc.digest() == d {
                        repo.remove(&n).await.map_err(internal)?;
                    }
                }
            }
        }
        Ok(status(StatusCode::ACCEPTED))
    }

    fn blob_unknown(d: &Digest) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "blob unknown to registry",
        )
        .detail(json!({ "digest": d.to_string() }))
    }

    /// The size of a blob the repository has (linked and present).
    /// The size of a blob `name` links, found in `blobs` (leased by a mount, which keeps
    /// what it finds from a garbage collection).
    async fn linked_size(
        &self,
        name: &str,
        d: &Digest,
        blobs: &dyn oci_rs_image::BlobStore,
    ) -> Result<Option<u64>, ApiError> {
        let Some(repo) = self.repo(name, false).await? else {
            return Ok(None);
        };
        match repo.resolve(&link(d)).await {
            Ok(_) => {}
            Err(StoreError::ReferenceNotFound { .. }) => return Ok(None),
            Err(e) => return Err(internal(e)),
        }
        blobs.stat(d).await.map_err(internal)
    }

    async fn get_blob(
        &self,
        req: &Request<Incoming>,
        name: &str,
        d: &Digest,
    ) -> Result<Response<Body>, ApiError> {
        let blobs = self.inner.storage.blobs();
        let mut size = self.linked_size(name, d, blobs).await?;
        if size.is_none() {
            if let Some(up) = &self.inner.upstream {
                self.fetch_blob(up, name, d).await?;
                size = self.linked_size(name, d, blobs).await?;
            }
        }
        let size = size.ok_or_else(|| Self::blob_unknown(d))?;
        let range = req.headers().get(RANGE).and_then(|v| v.to_str().ok());
        let mut resp = match range {
            Some(h) if *req.method() == Method::GET => {
                let Some((start, end)) = byte_range(h, size) else {
                    let mut r = ApiError::new(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "BLOB_UNKNOWN",
                        "range not satisfiable",
                    )
                    .response();
                    set(&mut r, "Content-Range", &format!("bytes */{size}"));
                    return Ok(r);
                };
                let reader = self
                    .inner
                    .storage
                    .read_range(d, start, end - start + 1)
                    .await
                    .map_err(internal)?;
                let mut r = Response::new(stream_body(reader));
                *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                set(
                    &mut r,
                    "Content-Range",
                    &format!("bytes {start}-{end}/{size}"),
                );
                set(&mut r, CONTENT_LENGTH, &(end - start + 1).to_string());
                r
            }
            _ => {
                let desc = Descriptor::new(
                    MediaType::Other("application/octet-stream".into()),
                    size,
                    d.clone(),
                );
                // Served as stored, not hashed again: every blob was verified on its way
                // in, and clients verify what they get (as CNCF distribution serves).
                let body = if *req.method() == Method::HEAD {
                    empty()
                } else {
                    stream_body(
                        self.inner
                            .storage
                            .read_range(desc.digest(), 0, desc.size())
                            .await
                            .map_err(internal)?,
                    )
                };
                let mut r = Response::new(body);
                set(&mut r, CONTENT_LENGTH, &size.to_string());
                r
            }
        };
        set(&mut resp, CONTENT_TYPE, "application/octet-stream");
        set(&mut resp, "Accept-Ranges", "bytes");
        set(&mut resp, "Docker-Content-Digest", d.as_ref());
        set(&mut resp, "ETag", &format!("\"{d}\""));
        Ok(resp)
    }

    async fn delete_blob(&self, name: &str, d: &Digest) -> Result<Response<Body>, ApiError> {
        let repo = self.existing_repo(name, Self::blob_unknown(d)).await?;
        if !repo.remove(&link(d)).await.map_err(internal)? {
            return Err(Self::blob_unknown(d));
        }
        // The bytes stay until a garbage collection finds nothing uses them.
        Ok(status(StatusCode::ACCEPTED))
    }

    /// Links a stored blob into a repository.
    async fn link_blob(
        &self,
        repo: &dyn ReferenceStore,
        d: &Digest,
        size: u64,
    ) -> Result<(), ApiError> {
        let desc = Descriptor::new(
            MediaType::Other("application/octet-stream".into()),
            size,
            d.clone(),
        );
        repo.set(&link(d), &desc).await.map_err(internal)
    }

    fn created_blob(name: &str, d: &Digest) -> Response<Body> {
        let mut r = status(StatusCode::CREATED);
        set(&mut r, LOCATION, &format!("/v2/{name}/blobs/{d}"));
        set(&mut r, "Docker-Content-Digest", d.as_ref());
        r
    }

    fn upload_location(r: &mut Response<Body>, name: &str, id: &str, size: u64) {
        set(r, LOCATION, &format!("/v2/{name}/blobs/uploads/{id}"));
        set(r, "Docker-Upload-UUID", id);
        // The last byte received, as docker's "0-N" (an empty upload says 0-0).
        set(r, "Range", &format!("0-{}", size.saturating_sub(1)));
        set(r, CONTENT_LENGTH, "0");
    }

    fn digest_param(q: &BTreeMap<String, String>) -> Result<Option<Digest>, ApiError> {
        q.get("digest")
            .map(|d| {
                oci_rs_image::parse_digest(d).map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "DIGEST_INVALID",
                        "invalid or unsupported digest",
                    )
                    .detail(json!({ "digest": d.chars().take(200).collect::<String>() }))
                })
            })
            .transpose()
    }

    /// Streams a whole blob from a request body into `blobs`, checked against `d`; more
    /// than the size limit is refused before anything is committed.
    async fn put_whole(
        &self,
        body: Incoming,
        d: &Digest,
        blobs: &dyn oci_rs_image::BlobStore,
    ) -> Result<u64, ApiError> {
        let mut reader = body_reader(body, self.inner.min_rate);
        let max = self.inner.max_blob;
        let mut limited = tokio::io::AsyncReadExt::take(&mut reader, max.saturating_add(1));
        let mut w = blobs
            .ingest(Expected {
                digest: Some(d.clone()),
                size: None,
            })
            .await
            .map_err(internal)?;
        // The client's stream failing is the client's error; the store's is ours.
        let mut n = 0u64;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let got = limited.read(&mut buf).await.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "BLOB_UPLOAD_INVALID",
                    format!("reading the body: {e}"),
                )
            })?;
            if got == 0 {
                break;
            }
            n += got as u64;
            if n > max {
                break;
            }
            w.write_all(&buf[..got])
                .await
                .map_err(|e| internal(StoreError::Stream(e)))?;
        }
        if n > max {
            // Dropped uncommitted: nothing becomes visible.
            return Err(Self::too_large(max));
        }
        match w.commit().await {
            Ok(info) => Ok(info.size),
            Err(StoreError::DigestMismatch { .. }) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                "the content does not match the digest",
            )
            .detail(json!({ "digest": d.to_string() }))),
            Err(e) => Err(internal(e)),
        }
    }

    fn too_large(limit: u64) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "SIZE_INVALID",
            format!("blobs are limited to {limit} bytes"),
        )
    }

    async fn start_upload(
        &self,
        req: Request<Incoming>,
        name: &str,
        who: &Who,
    ) -> Result<Response<Body>, ApiError> {
        let q = query(&req);
        let repo = self.repo(name, true).await?.ok_or_else(|| {
            internal(StoreError::ReferenceNotFound {
                name: name.to_owned(),
            })
        })?;
        // A cross-repository mount: linked when the source repository has the blob.
        if let (Some(m), Some(from)) = (q.get("mount"), q.get("from")) {
            if let Ok(d) = oci_rs_image::parse_digest(m) {
                // Mounted only from where the caller may pull; else a new session, as
                // distribution does.
                if route::valid_name(from) && who.may(&self.inner.auth, from, Action::Pull) {
                    let blobs = self.inner.storage.leased_blobs().await.map_err(internal)?;
                    if let Some(size) = self.linked_size(from, &d, blobs.as_ref()).await? {
                        self.link_blob(repo.as_ref(), &d, size).await?;
                        return Ok(Self::created_blob(name, &d));
                    }
                }
            }
        }
        // A monolithic upload: the body is the blob.
        if let Some(d) = Self::digest_param(&q)? {
            let blobs = self.inner.storage.leased_blobs().await.map_err(internal)?;
            let size = self.put_whole(req.into_body(), &d, blobs.as_ref()).await?;
            self.link_blob(repo.as_ref(), &d, size).await?;
            return Ok(Self::created_blob(name, &d));
        }
        let id = self
            .inner
            .storage
            .upload_start(name)
            .await
            .map_err(internal)?;
        let mut r = status(StatusCode::ACCEPTED);
        Self::upload_location(&mut r, name, &id, 0);
        Ok(r)
    }

    fn upload_unknown() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "blob upload unknown to registry",
        )
    }

    async fn session(&self, name: &str, id: &str) -> Result<UploadInfo, ApiError> {
        match self.inner.storage.upload_info(id).await.map_err(internal)? {
            Some(info) if info.repository == name => Ok(info),
            _ => Err(Self::upload_unknown()),
        }
    }

    async fn upload_status(&self, name: &str, id: &str) -> Result<Response<Body>, ApiError> {
        let info = self.session(name, id).await?;
        let mut r = status(StatusCode::NO_CONTENT);
        Self::upload_location(&mut r, name, id, info.size);
        Ok(r)
    }

    /// Appends a request body to a session: at `Content-Range`'s start when given, which
    /// must be the session's size (416 otherwise).
    async fn append(
        &self,
        req: Request<Incoming>,
        name: &str,
        id: &str,
        info: &UploadInfo,
    ) -> Result<u64, ApiError> {
        let range = req
            .headers()
            .get("Content-Range")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let offset = match range {
            Some(h) => {
                let h = h
                    .trim()
                    .trim_start_matches("bytes")
                    .trim_start_matches([' ', '=']);
                let start = h
                    .split_once('-')
                    .and_then(|(a, _)| a.trim().parse::<u64>().ok());
                match start {
                    Some(s) => s,
                    None => {
                        return Err(ApiError::new(
                            StatusCode::RANGE_NOT_SATISFIABLE,
                            "BLOB_UPLOAD_INVALID",
                            "invalid Content-Range",
                        ));
                    }
                }
            }
            None => info.size,
        };
        let mut reader = body_reader(req.into_body(), self.inner.min_rate);
        match self
            .inner
            .storage
            .upload_append(id, offset, &mut reader, self.inner.max_blob)
            .await
        {
            Ok(Appended::Size(n)) => Ok(n),
            Ok(Appended::WrongOffset { size }) => Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UPLOAD_INVALID",
                "the chunk does not start where the upload ends",
            )
            .detail(json!({ "repository": name, "size": size }))),
            Ok(Appended::OverLimit) => Err(Self::too_large(self.inner.max_blob)),
            Ok(Appended::Interrupted { size, error }) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "BLOB_UPLOAD_INVALID",
                format!("the chunk was cut short: {error}"),
            )
            .detail(json!({ "size": size }))),
            Err(e) => Err(internal(e)),
        }
    }

    async fn patch_upload(
        &self,
        req: Request<Incoming>,
        name: &str,
        id: &str,
    ) -> Result<Response<Body>, ApiError> {
        let info = self.session(name, id).await?;
        let size = match self.append(req, name, id, &info).await {
            Ok(n) => n,
            Err(e) if e.status == StatusCode::RANGE_NOT_SATISFIABLE => {
                let mut r = e.response();
                Self::upload_location(&mut r, name, id, info.size);
                *r.body_mut() = empty();
                *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                return Ok(r);
            }
            Err(e) => return Err(e),
        };
        let mut r = status(StatusCode::ACCEPTED);
        Self::upload_location(&mut r, name, id, size);
        Ok(r)
    }

    async fn finish_upload(
        &self,
        req: Request<Incoming>,
        name: &str,
        id: &str,
    ) -> Result<Response<Body>, ApiError> {
        let info = self.session(name, id).await?;
        let q = query(&req);
        let d = Self::digest_param(&q)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                "the digest parameter is missing",
            )
        })?;
        let has_body = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_none_or(|n| n > 0);
        let repo = self.repo(name, true).await?.ok_or_else(|| {
            internal(StoreError::ReferenceNotFound {
                name: name.to_owned(),
            })
        })?;
        if info.size == 0 && has_body && req.headers().get("Content-Range").is_none() {
            // The whole blob in this request: straight into the store.
            let blobs = self.inner.storage.leased_blobs().await.map_err(internal)?;
            let size = self.put_whole(req.into_body(), &d, blobs.as_ref()).await?;
            let _ = self.inner.storage.upload_cancel(id).await;
            self.link_blob(repo.as_ref(), &d, size).await?;
            return Ok(Self::created_blob(name, &d));
        }
        if has_body {
            self.append(req, name, id, &info).await?;
        }
        let blobs = self.inner.storage.leased_blobs().await.map_err(internal)?;
        match self
            .inner
            .storage
            .upload_commit(id, &d, blobs.as_ref())
            .await
        {
            Ok(b) => {
                self.link_blob(repo.as_ref(), &d, b.size).await?;
                Ok(Self::created_blob(name, &d))
            }
            Err(StoreError::DigestMismatch { .. }) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                "the upload does not match the digest",
            )
            .detail(json!({ "digest": d.to_string() }))),
            Err(e) => Err(internal(e)),
        }
    }

    async fn cancel_upload(&self, name: &str, id: &str) -> Result<Response<Body>, ApiError> {
        self.session(name, id).await?;
        self.inner
            .storage
            .upload_cancel(id)
            .await
            .map_err(internal)?;
        Ok(status(StatusCode::NO_CONTENT))
    }

    /// Who sent the request, checked against what its route needs: 401 with the challenge
    /// of the configured scheme, or 403 for a known user without the right.
    async fn authorize(&self, req: &Request<Incoming>, route: &Route) -> Result<Who, ApiError> {
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (repo, action) = match route {
            Route::Base | Route::Catalog => (None, Action::Pull),
            Route::Tags(n) | Route::Referrers(n, _) => (Some(n.as_str()), Action::Pull),
            Route::Manifest(n, _) | Route::Blob(n, _) => (
                Some(n.as_str()),
                match *req.method() {
                    Method::GET | Method::HEAD => Action::Pull,
                    Method::DELETE => Action::Delete,
                    _ => Action::Push,
                },
            ),
            Route::Uploads(n) | Route::Upload(n, _) => (Some(n.as_str()), Action::Push),
        };
        let unauthorized = |challenge: String, message: &str| {
            ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
                .header("WWW-Authenticate", challenge)
        };
        match &self.inner.auth {
            Auth::Open => Ok(Who::default()),
            Auth::Basic { users, policy } => {
                let challenge = "Basic realm=\"oci-rs-registry\"".to_owned();
                let user = match auth::basic_credentials(header) {
                    Some((u, p)) => {
                        // bcrypt is slow on purpose: off the async threads, once per password.
                        let ok = match users.check_cached(&u, &p) {
                            Some(ok) => ok,
                            None => {
                                let (users, u2) = (users.clone(), u.clone());
                                tokio::task::spawn_blocking(move || users.check(&u2, &p))
                                    .await
                                    .unwrap_or(false)
                            }
                        };
                        if !ok {
                            return Err(unauthorized(challenge, "invalid credentials"));
                        }
                        Some(u)
                    }
                    None => None,
                };
                let ok = match repo {
                    // The base endpoint and the catalog want a known user (or any grant).
                    None => user.is_some(),
                    Some(r) => policy.granted(user.as_deref(), r).contains(&action),
                };
                match (ok, &user) {
                    (true, _) => Ok(Who { user, grants: None }),
                    (false, None) => Err(unauthorized(challenge, "authentication required")),
                    (false, Some(_)) => Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "DENIED",
                        "requested access to the resource is denied",
                    )),
                }
            }
            Auth::Token(t) => {
                let grants = header
                    .strip_prefix("Bearer ")
                    .and_then(|tok| t.verify(tok.trim()));
                let ok = match (&grants, repo) {
                    (Some(_), None) => true,
                    (Some(g), Some(r)) => g.repos.get(r).is_some_and(|a| a.contains(&action)),
                    (None, _) => false,
                };
                if ok {
                    return Ok(Who {
                        user: grants.as_ref().map(|g| g.subject.clone()),
                        grants,
                    });
                }
                let host = req
                    .headers()
                    .get(hyper::header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("localhost");
                let scheme = if self.inner.https { "https" } else { "http" };
                let realm = t
                    .realm
                    .clone()
                    .unwrap_or_else(|| format!("{scheme}://{host}/token"));
                let mut challenge = format!("Bearer realm=\"{realm}\",service=\"{}\"", t.service);
                if let Some(r) = repo {
                    let mut want = std::collections::BTreeSet::from([action]);
                    // A push also reads (HEAD before upload), as docker asks.
                    if action == Action::Push {
                        want.insert(Action::Pull);
                    }
                    challenge.push_str(&format!(",scope=\"{}\"", auth::scope(r, &want)));
                }
                if grants.is_some() {
                    challenge.push_str(",error=\"insufficient_scope\"");
                }
                Err(unauthorized(challenge, "authentication required"))
            }
        }
    }

    /// The token endpoint: `GET /token?service=&scope=…` with basic credentials (or none,
    /// for what anonymous requests may do), or `POST /token` with a password grant in a
    /// form. The token grants each scope's actions that the policy gives the user.
    async fn token(
        &self,
        req: Request<Incoming>,
        t: &TokenAuth,
    ) -> Result<Response<Body>, ApiError> {
        let query_text = req.uri().query().unwrap_or("").to_owned();
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let form = if *req.method() == Method::POST {
            let body = self
                .read_body(req.into_body(), 64 << 10, "token request")
                .await?;
            String::from_utf8_lossy(&body).into_owned()
        } else if *req.method() == Method::GET {
            String::new()
        } else {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "GET or POST",
            ));
        };
        let values = |key: &str| {
            let mut v = query_values(&query_text, key);
            v.extend(query_values(&form, key));
            v
        };
        let denied = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "invalid credentials",
            )
            .header(
                "WWW-Authenticate",
                "Basic realm=\"oci-rs-registry\"".to_owned(),
            )
        };
        let creds = header
            .as_deref()
            .and_then(auth::basic_credentials)
            .or_else(|| {
                let (u, p) = (values("username"), values("password"));
                (values("grant_type").first().map(String::as_str) == Some("password"))
                    .then(|| Some((u.first()?.clone(), p.first()?.clone())))
                    .flatten()
            });
        let user = match creds {
            Some((u, p)) => {
                // bcrypt is slow on purpose: off the async threads.
                let users = t.users.clone();
                let (u2, p2) = (u.clone(), p);
                let ok = tokio::task::spawn_blocking(move || users.check(&u2, &p2))
                    .await
                    .unwrap_or(false);
                if !ok {
                    return Err(denied());
                }
                Some(u)
            }
            None => None,
        };
        if let Some(service) = values("service").first() {
            if *service != t.service {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "UNSUPPORTED",
                    "unknown service",
                ));
            }
        }
        let mut access = Vec::new();
        for scope in values("scope")
            .iter()
            .flat_map(|s| s.split(' ').map(str::to_owned).collect::<Vec<_>>())
        {
            let Some((name, asked)) = auth::parse_scope(&scope) else {
                continue;
            };
            if !route::valid_name(&name) {
                continue;
            }
            let granted = t.policy.granted(user.as_deref(), &name);
            let both: std::collections::BTreeSet<Action> =
                asked.intersection(&granted).copied().collect();
            access.push((name, both));
        }
        let (token, issued) = t.issue(user.as_deref().unwrap_or(""), &access);
        let body = json!({
            "token": token,
            "access_token": token,
            "expires_in": t.lifetime.as_secs(),
            "issued_at": oci_rs_image::rfc3339(issued.saturating_mul(1_000_000_000)),
        });
        let mut r = Response::new(full(body.to_string()));
        set(&mut r, CONTENT_TYPE, "application/json");
        Ok(r)
    }

    async fn referrers(
        &self,
        req: &Request<Incoming>,
        name: &str,
        subject: &Digest,
    ) -> Result<Response<Body>, ApiError> {
        let q = query(req);
        let want = q.get("artifactType");
        let mut manifests = Vec::new();
        if let Some(repo) = self.repo(name, false).await? {
            for (n, mut desc) in repo.list().await.map_err(internal)? {
                if !n.contains(':') || n.starts_with("blob:") {
                    continue;
                }
                let mut ann = desc.annotations().clone().unwrap_or_default();
                if ann.get(SUBJECT).map(String::as_str) != Some(subject.as_ref()) {
                    continue;
                }
                if let Some(w) = want {
                    if desc
                        .artifact_type()
                        .as_ref()
                        .map(|a| a.to_string())
                        .as_deref()
                        != Some(w.as_str())
                    {
                        continue;
                    }
                }
                ann.remove(SUBJECT);
                ann.remove(REF_NAME);
                desc.set_annotations((!ann.is_empty()).then_some(ann));
                manifests.push(desc);
            }
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        let mut r = Response::new(full(index.to_string()));
        set(
            &mut r,
            CONTENT_TYPE,
            "application/vnd.oci.image.index.v1+json",
        );
        if want.is_some() {
            set(&mut r, "OCI-Filters-Applied", "artifactType");
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked_against_the_size() {
        assert_eq!(byte_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(byte_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(byte_range("bytes=100-", 100), None);
        assert_eq!(byte_range("bytes=9-1", 100), None);
        assert_eq!(byte_range("bytes=0-0", 0), None);
        assert_eq!(byte_range("items=0-1", 100), None);
    }

    #[test]
    fn query_components_are_decoded() {
        assert_eq!(decode("a%2Fb+c"), "a/b c");
        assert_eq!(decode("%zz%"), "%zz%");
        assert_eq!(decode("sha256%3Aabc"), "sha256:abc");
    }
}

/// Who a request comes from, once authorized.
#[derive(Debug, Default)]
struct Who {
    user: Option<String>,
    grants: Option<auth::Grants>,
}

impl Who {
    /// Whether this caller may do `action` in `repository` (for a second repository than the
    /// route's: a mount's source, the catalog's entries).
    fn may(&self, auth: &Auth, repository: &str, action: Action) -> bool {
        match auth {
            Auth::Open => true,
            Auth::Basic { policy, .. } => policy
                .granted(self.user.as_deref(), repository)
                .contains(&action),
            Auth::Token(t) => match &self.grants {
                Some(g) => {
                    g.repos.get(repository).is_some_and(|a| a.contains(&action))
                        || t.policy
                            .granted(
                                Some(g.subject.as_str()).filter(|s| !s.is_empty()),
                                repository,
                            )
                            .contains(&action)
                }
                None => false,
            },
        }
    }
}

/// Why [`tls_config`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A PEM file could not be read or holds nothing of the kind.
    #[error("cannot read the {what} from {path}")]
    Pem {
        /// The certificate chain or the private key.
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the pair, or has no crypto provider.
    #[error("the certificate and key cannot serve TLS")]
    Rustls(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A TLS configuration for [`Registry::serve_tls`] from a PEM certificate chain (leaf
/// first) and its PEM private key, speaking HTTP/1.1.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    fn pem<'a>(
        what: &'static str,
        path: &'a std::path::Path,
    ) -> impl Fn(rustls::pki_types::pem::Error) -> TlsConfigError + 'a {
        move |source| TlsConfigError::Pem {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(pem("certificate chain", cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem("certificate chain", cert))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem("private key", key))?;
    crate::client::crypto_provider().map_err(|e| TlsConfigError::Rustls(Box::new(e)))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsConfigError::Rustls(Box::new(e)))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

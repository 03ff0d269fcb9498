//! The Docker Engine API (feature `api`): docker's HTTP interface over the crates' stores,
//! so that docker's own CLI, docker-compose, the Docker SDKs and testcontainers drive this
//! engine unchanged (`oci system service`, as `podman system service`).
//!
//! [`EngineApi`] is a thin layer: every request becomes a call on [`Containers`],
//! [`ImageStore`] or a [`Remote`] (pulls), and its answer is docker's JSON. It keeps no
//! state of its own beyond the connections it serves (and which created containers have a
//! client attached, waiting for their start), so `oci` commands and API clients see the
//! same images and containers at the same time, and the service can be started on demand
//! and stopped when idle.
//!
//! Versions: the paths docker's clients send, unversioned or under `/vMAJOR.MINOR/`, from
//! [`MIN_API_VERSION`] (the docker CLI 20.10 of Debian) to [`API_VERSION`], which `/_ping`
//! reports in its `API-Version` header so that newer clients negotiate down to it. Errors
//! are docker's `{"message": ...}` with the status codes its clients branch on (404 for a
//! missing container or image, 409 for a conflict, 304 for a start or stop with nothing to
//! do).
//!
//! **Access to the socket is root on the host**: whoever can talk to it can start a
//! privileged container with the host's root directory mounted. [`bind_unix`] creates it
//! 0660 (its owner and group only), and a TCP listener belongs on loopback; off loopback
//! [`EngineApi::serve_uri_with`] takes it only over TLS with client certificates
//! ([`ApiTls`], feature `api-tls`, as dockerd's `--tlsverify`).
//!
//! ```no_run
//! # async fn demo(remote: std::sync::Arc<dyn oci_rs_image::Remote>) -> Result<(), Box<dyn std::error::Error>> {
//! use oci_rs_runtime::api::{bind_unix, EngineApi};
//! use std::time::Duration;
//!
//! let api = EngineApi::open("/var/lib/my-tool".as_ref(), remote).await?;
//! let listener = bind_unix("/run/my-tool/docker.sock".as_ref())?;
//! // Serves until no client has been connected for 60 seconds.
//! api.serve_unix(listener, Some(Duration::from_secs(60))).await?;
//! # Ok(())
//! # }
//! ```

mod build;
mod containers;
mod exec;
mod images;
mod objects;
mod stream;
mod transfer;

use crate::engine::{Containers, EngineError};
use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use oci_rs_image::Remote;
use oci_rs_layer::ImageStore;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};

/// The newest Engine API version served (docker 27.x's).
pub const API_VERSION: &str = "1.47";
/// The oldest Engine API version served (docker 20.10's).
pub const MIN_API_VERSION: &str = "1.41";

/// docker's `GET /version` document for this engine (`docker version`'s Server part):
/// its version, the API versions it speaks, and the host's OS, architecture and kernel.
pub fn version_document() -> serde_json::Value {
    let kernel = rustix::system::uname();
    let kernel = kernel.release().to_string_lossy().into_owned();
    let arch = oci_rs_image::PlatformSpec::host().architecture;
    serde_json::json!({
        "Platform": { "Name": "oci-rs" },
        "Components": [{
            "Name": "Engine",
            "Version": env!("CARGO_PKG_VERSION"),
            "Details": {
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
                "Arch": arch,
                "KernelVersion": kernel,
            }
        }],
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": arch,
        "KernelVersion": kernel,
        "BuildTime": "",
    })
}

/// The largest JSON request body read (a container's configuration, a tag).
const MAX_JSON_BODY: usize = 1 << 20;
/// How long a client may take to send a request's JSON body.
const BODY_DEADLINE: Duration = Duration::from_secs(30);

/// A response body: whole, or streamed (progress, logs, waits).
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// What can go wrong in setting up the service (requests fail with docker's error JSON
/// instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The container store could not be opened.
    #[error("opening the container store")]
    Containers(#[source] EngineError),
    /// The image store could not be opened.
    #[error("opening the image store")]
    Images(#[source] oci_rs_layer::Error),
    /// An address that is not `unix:///PATH` or a loopback `tcp://ADDR:PORT`.
    #[error("serving the Engine API at {uri}: {reason}")]
    Uri {
        /// The address given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Listening or accepting failed.
    #[error("serving the Engine API at {uri}")]
    Serve {
        /// The address.
        uri: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificates could not be read or used.
    #[cfg(feature = "api-tls")]
    #[error("reading the {what} {path} for the Engine API's TLS")]
    Tls {
        /// The certificate chain, the private key or the clients' CA.
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The socket could not be made.
    #[error("binding the API socket {path}")]
    Bind {
        /// The socket's path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// docker's `EndpointSettings` as create's `NetworkingConfig` and network connect send it:
/// the aliases and the IPv4 address asked for (compose's `ipv4_address`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct EndpointConfig {
    aliases: Option<Vec<String>>,
    mac_address: Option<String>,
    #[serde(rename = "IPAMConfig")]
    ipam_config: Option<EndpointIpam>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct EndpointIpam {
    #[serde(rename = "IPv4Address")]
    ipv4_address: Option<String>,
    #[serde(rename = "IPv6Address")]
    ipv6_address: Option<String>,
}

impl EndpointConfig {
    /// The IPv6 address asked for, if any.
    fn address6(&self) -> Result<Option<std::net::Ipv6Addr>, Fail> {
        match (self.ipam_config.as_ref())
            .and_then(|i| i.ipv6_address.as_deref())
            .filter(|a| !a.is_empty())
        {
            None => Ok(None),
            Some(a) => a
                .parse()
                .map(Some)
                .map_err(|_| Fail::bad(format!("invalid IPv6 address {a:?}"))),
        }
    }

    /// The IPv4 address asked for, if any.
    fn address(&self) -> Result<Option<std::net::Ipv4Addr>, Fail> {
        let Some(ipam) = &self.ipam_config else {
            return Ok(None);
        };
        match ipam.ipv4_address.as_deref().filter(|a| !a.is_empty()) {
            None => Ok(None),
            Some(a) => a
                .parse()
                .map(Some)
                .map_err(|_| Fail::bad(format!("invalid IPv4 address {a:?}"))),
        }
    }
}

/// A failed request: docker's status code and message.
#[derive(Debug)]
struct Fail {
    status: StatusCode,
    message: String,
}

impl Fail {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

/// The message with its causes, as docker's error bodies carry them.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

impl From<EngineError> for Fail {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            // A container whose monitor record is gone is one being removed (`--rm`, a
            // remover in another process): gone, as docker says of it.
            EngineError::NoSuchContainer(_)
            | EngineError::NoSuchPath { .. }
            | EngineError::NoMonitor(_) => StatusCode::NOT_FOUND,
            EngineError::NameInUse { .. }
            | EngineError::WrongState { .. }
            | EngineError::ImageInUse { .. } => StatusCode::CONFLICT,
            EngineError::InvalidName { .. }
            | EngineError::SameName(_)
            | EngineError::AmbiguousContainer(_)
            | EngineError::Network { .. } => StatusCode::BAD_REQUEST,
            EngineError::LogsDisabled(_) => StatusCode::NOT_IMPLEMENTED,
            EngineError::Layer(l) => return Fail::from_layer(l, chain(&e)),
            EngineError::Runtime(r) => match &**r {
                crate::Error::InvalidOption { .. } => StatusCode::BAD_REQUEST,
                crate::Error::Network(n) => net_status(n),
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Fail::new(status, chain(&e))
    }
}

/// docker's status codes for the network store's refusals.
fn net_status(e: &crate::NetError) -> StatusCode {
    use crate::NetError;
    match e {
        NetError::NotFound(_) => StatusCode::NOT_FOUND,
        NetError::Exists(_) | NetError::InUse { .. } => StatusCode::CONFLICT,
        NetError::Invalid { .. } | NetError::Overlap { .. } => StatusCode::BAD_REQUEST,
        NetError::Unsupported(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl Fail {
    fn from_layer(e: &oci_rs_layer::Error, message: String) -> Self {
        let status = match e {
            oci_rs_layer::Error::NoSuchImage(n) => {
                return Fail::not_found(format!("No such image: {n}"))
            }
            oci_rs_layer::Error::ImageInUse { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Fail::new(status, message)
    }
}

impl From<oci_rs_layer::Error> for Fail {
    fn from(e: oci_rs_layer::Error) -> Self {
        let m = chain(&e);
        Fail::from_layer(&e, m)
    }
}

impl From<crate::Error> for Fail {
    fn from(e: crate::Error) -> Self {
        let status = match e {
            crate::Error::InvalidOption { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Fail::new(status, chain(&e))
    }
}

type Reply = Result<Response<Body>, Fail>;

/// docker's Engine API over one data directory's stores; see the [module](self).
pub struct EngineApi {
    images: ImageStore,
    containers: Containers,
    remote: Arc<dyn Remote>,
    /// Where builds' `ADD URL` fetches (none: refused).
    urls: Option<Arc<dyn oci_rs_image::UrlSource>>,
    /// Created containers with a client attached, which start waiting for it.
    attaching: Mutex<HashSet<String>>,
    /// Exec instances by id (docker keeps them in its daemon's memory too).
    execs: Mutex<HashMap<String, Arc<exec::ExecEntry>>>,
    connections: AtomicUsize,
    last_activity: Mutex<Instant>,
}

impl EngineApi {
    /// The API over the stores under `data` (`images/`, `containers/`, `volumes/`,
    /// `snapshots/`, as `oci` keeps them), pulling through `remote`.
    pub async fn open(data: &Path, remote: Arc<dyn Remote>) -> Result<Arc<Self>, ApiError> {
        Self::open_with_urls(data, remote, None).await
    }

    /// [`EngineApi::open`], with `urls` for the `ADD URL` steps of builds (`/build`).
    /// `oci-rs-registry-client`'s `Client` is both a [`Remote`] and a URL source.
    pub async fn open_with_urls(
        data: &Path,
        remote: Arc<dyn Remote>,
        urls: Option<Arc<dyn oci_rs_image::UrlSource>>,
    ) -> Result<Arc<Self>, ApiError> {
        // A short name pulled from one of the remote's search registries is found by it.
        let names = remote.clone();
        let containers = Containers::open(data).map_err(ApiError::Containers)?;
        let images = ImageStore::open(data)
            .await
            .map_err(ApiError::Images)?
            .with_short_names(Arc::new(move |name| names.candidates(name)))
            .with_observer(containers.image_observer());
        Ok(Arc::new(Self {
            images,
            containers,
            remote,
            urls,
            attaching: Mutex::new(HashSet::new()),
            execs: Mutex::new(HashMap::new()),
            connections: AtomicUsize::new(0),
            last_activity: Mutex::new(Instant::now()),
        }))
    }

    /// Serves clients of a unix socket `listener` (see [`bind_unix`]) until no connection
    /// has been open for `idle` (forever when `None`).
    pub async fn serve_unix(
        self: Arc<Self>,
        listener: tokio::net::UnixListener,
        idle: Option<Duration>,
    ) -> std::io::Result<()> {
        self.serve(listener, idle).await
    }

    /// Serves clients of a TCP `listener` (keep it on loopback: see the [module](self)),
    /// until no connection has been open for `idle` (forever when `None`).
    pub async fn serve_tcp(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        idle: Option<Duration>,
    ) -> std::io::Result<()> {
        self.serve(listener, idle).await
    }

    /// Serves at `uri`, as docker's `-H` names it: `unix:///PATH` (made by [`bind_unix`],
    /// removed when the service ends) or `tcp://127.0.0.1:PORT` (loopback only: the API is
    /// root on the host), until no connection has been open for `idle`.
    pub async fn serve_uri(
        self: Arc<Self>,
        uri: &str,
        idle: Option<Duration>,
    ) -> Result<(), ApiError> {
        self.serve_at(uri, idle, None).await
    }

    /// [`serve_uri`](Self::serve_uri), a TCP address over `tls`: one off loopback when `tls`
    /// verifies clients' certificates (dockerd's `--tlsverify`), for only a client with a
    /// certificate its CA signed can reach it then.
    ///
    /// ```no_run
    /// # async fn demo(api: std::sync::Arc<oci_rs_runtime::api::EngineApi>) -> Result<(), Box<dyn std::error::Error>> {
    /// use oci_rs_runtime::api::ApiTls;
    /// let tls = ApiTls::from_files(
    ///     "server.pem".as_ref(),
    ///     "server.key".as_ref(),
    ///     Some("ca.pem".as_ref()),
    /// )?;
    /// api.serve_uri_with("tcp://0.0.0.0:2376", None, &tls).await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "api-tls")]
    pub async fn serve_uri_with(
        self: Arc<Self>,
        uri: &str,
        idle: Option<Duration>,
        tls: &ApiTls,
    ) -> Result<(), ApiError> {
        self.serve_at(uri, idle, Some(tls)).await
    }

    async fn serve_at(
        self: Arc<Self>,
        uri: &str,
        idle: Option<Duration>,
        tls: Option<&ApiTls>,
    ) -> Result<(), ApiError> {
        let bad = |why: &str| ApiError::Uri {
            uri: uri.to_owned(),
            reason: why.to_owned(),
        };
        if let Some(path) = uri.strip_prefix("unix://") {
            if tls.is_some() {
                return Err(bad("TLS is for tcp:// addresses"));
            }
            let path = Path::new(path);
            let listener = bind_unix(path)?;
            let ours = file_id(path);
            tracing::info!(socket = %path.display(), "serving the Engine API");
            let served = self.serve_unix(listener, idle).await;
            // Removed when it is still this service's socket (not one made after it).
            if ours.is_some() && file_id(path) == ours {
                let _ = std::fs::remove_file(path);
            }
            return served.map_err(|source| ApiError::Serve {
                uri: uri.to_owned(),
                source,
            });
        }
        let addr: std::net::SocketAddr = uri
            .strip_prefix("tcp://")
            .ok_or_else(|| bad("give unix:///PATH or tcp://127.0.0.1:PORT"))?
            .parse()
            .map_err(|_| bad("not an address and port"))?;
        if !addr.ip().is_loopback() && !tls.is_some_and(ApiTls::verifies_clients) {
            return Err(bad(
                "the Engine API is root on this host: serve it on loopback only, \
                 or over TLS with client certificates",
            ));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ApiError::Serve {
                uri: uri.to_owned(),
                source,
            })?;
        tracing::info!(%addr, tls = tls.is_some(), "serving the Engine API");
        let served = match tls {
            #[cfg(feature = "api-tls")]
            Some(tls) => self.serve_tls(listener, tls, idle).await,
            #[cfg(not(feature = "api-tls"))]
            Some(never) => match *never {},
            None => self.serve_tcp(listener, idle).await,
        };
        served.map_err(|source| ApiError::Serve {
            uri: uri.to_owned(),
            source,
        })
    }

    /// Serves TLS clients of `listener`, each connection's handshake in its own task (a
    /// client that does not finish it in 10 s is dropped), until no connection has been
    /// open for `idle`.
    #[cfg(feature = "api-tls")]
    async fn serve_tls(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        tls: &ApiTls,
        idle: Option<Duration>,
    ) -> std::io::Result<()> {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
        loop {
            tokio::select! {
                r = listener.accept() => {
                    let (tcp, peer) = r?;
                    let (api, acceptor) = (self.clone(), acceptor.clone());
                    let session = self.open_session();
                    tokio::spawn(async move {
                        let _session = session;
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                            Ok(Ok(io)) => api.spawn_connection(io),
                            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    });
                }
                _ = self.idle_for(idle) => return Ok(()),
            }
        }
    }

    async fn serve<L: Listener>(
        self: Arc<Self>,
        listener: L,
        idle: Option<Duration>,
    ) -> std::io::Result<()> {
        loop {
            tokio::select! {
                r = listener.accept_one() => self.clone().spawn_connection(r?),
                _ = self.idle_for(idle) => return Ok(()),
            }
        }
    }

    /// Resolves once no connection has been open for `idle`; never with `None`.
    async fn idle_for(&self, idle: Option<Duration>) {
        let Some(idle) = idle else {
            return std::future::pending().await;
        };
        loop {
            let since = *self.last_activity.lock().unwrap_or_else(|e| e.into_inner());
            let open = self.connections.load(Ordering::SeqCst);
            if open == 0 && since.elapsed() >= idle {
                return;
            }
            let wait = if open == 0 {
                idle.saturating_sub(since.elapsed())
            } else {
                idle
            };
            tokio::time::sleep(wait.max(Duration::from_millis(100))).await;
        }
    }

    fn touch(&self) {
        *self.last_activity.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Counts an open connection (or a hijacked session) until dropped, for the idle
    /// timeout; dropped on every path out, a panic's too.
    fn open_session(self: &Arc<Self>) -> Session {
        self.connections.fetch_add(1, Ordering::SeqCst);
        self.touch();
        Session(self.clone())
    }

    fn spawn_connection<I>(self: Arc<Self>, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let session = self.open_session();
        tokio::spawn(async move {
            let _session = session;
            let api = self.clone();
            let svc = hyper::service::service_fn(move |req| {
                let api = api.clone();
                async move {
                    api.touch();
                    Ok::<_, std::convert::Infallible>(api.handle(req).await)
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
                .with_upgrades()
                .await
            {
                tracing::debug!(error = %e, "an API connection ended");
            }
        });
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let has_body = req.headers().contains_key(hyper::header::TRANSFER_ENCODING)
            || req
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() != "0");
        let reply = self.route(req).await;
        let mut r = match reply {
            Ok(r) => r,
            Err(f) => {
                tracing::debug!(%method, %path, status = %f.status, message = %f.message, "API request failed");
                json(f.status, &serde_json::json!({ "message": f.message }))
            }
        };
        if has_body && (r.status().is_client_error() || r.status().is_server_error()) {
            // A refusal may leave the body unread, and hyper then closes the connection after
            // the answer: said in it, so that the client sends its next request elsewhere.
            r.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
        }
        r
    }

    async fn route(self: &Arc<Self>, req: Request<Incoming>) -> Reply {
        let (version, path) = split_version(req.uri().path())?;
        let _ = version;
        let segs: Vec<String> = path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let seg: Vec<&str> = segs.iter().map(String::as_str).collect();
        let m = req.method().as_str();
        match (m, seg.as_slice()) {
            ("GET" | "HEAD", ["_ping"]) => Ok(ping(m == "HEAD")),
            ("GET", ["version"]) => Ok(json(StatusCode::OK, &version_document())),
            ("GET", ["info"]) => self.info().await,
            ("GET", ["events"]) => self.events(&req),
            ("POST", ["build"]) => self.build(req).await,
            ("GET", ["containers", "json"]) => self.list_containers(&req).await,
            ("POST", ["containers", "create"]) => self.create_container(req).await,
            ("GET", ["containers", id, "json"]) => self.inspect_container(id),
            ("POST", ["containers", id, "start"]) => self.start_container(id).await,
            ("POST", ["containers", id, "stop"]) => self.stop_container(id, &req).await,
            ("POST", ["containers", id, "restart"]) => self.restart_container(id, &req).await,
            ("POST", ["containers", id, "kill"]) => self.kill_container(id, &req).await,
            ("POST", ["containers", id, "wait"]) => self.wait_container(id, &req).await,
            ("POST", ["containers", id, "attach"]) => {
                let id = id.to_string();
                self.attach_container(&id, req).await
            }
            ("POST", ["containers", id, "resize"]) => self.resize_container(id, &req).await,
            ("GET", ["containers", id, "logs"]) => self.container_logs(id, &req),
            ("GET", ["containers", id, "stats"]) => self.container_stats(id, &req).await,
            ("GET", ["containers", id, "top"]) => self.top_container(id, &query(&req)).await,
            ("POST", ["containers", id, "pause"]) => self.pause_container(id, true).await,
            ("POST", ["containers", id, "unpause"]) => self.pause_container(id, false).await,
            ("POST", ["containers", id, "rename"]) => self.rename_container(id, &req).await,
            ("POST", ["containers", id, "update"]) => {
                let id = id.to_string();
                self.update_container(&id, req).await
            }
            ("POST", ["containers", id, "exec"]) => {
                let id = id.to_string();
                self.create_exec(&id, req).await
            }
            ("POST", ["exec", id, "start"]) => {
                let id = id.to_string();
                self.start_exec(&id, req).await
            }
            ("POST", ["exec", id, "resize"]) => self.resize_exec(id, &req).await,
            ("GET", ["exec", id, "json"]) => self.inspect_exec(id),
            ("DELETE", ["containers", id]) => self.remove_container(id, &req).await,
            ("GET", ["volumes"]) => self.list_volumes(&req).await,
            ("POST", ["volumes", "create"]) => self.create_volume(req).await,
            ("POST", ["volumes", "prune"]) => self.prune_volumes(&req).await,
            ("GET", ["volumes", name]) => self.inspect_volume(name).await,
            ("DELETE", ["volumes", name]) => self.remove_volume(name).await,
            ("GET", ["networks"]) => self.list_networks(&req).await,
            ("POST", ["networks", "create"]) => self.create_network(req).await,
            ("POST", ["networks", "prune"]) => self.prune_networks(&req).await,
            ("GET", ["networks", name]) => self.inspect_network(name).await,
            ("DELETE", ["networks", name]) => self.remove_network(name).await,
            ("POST", ["networks", name, verb @ ("connect" | "disconnect")]) => {
                let (name, connect) = (name.to_string(), *verb == "connect");
                self.connect_network(&name, req, connect).await
            }
            ("GET" | "HEAD", ["containers", id, "archive"]) => {
                self.archive_out(id, &req, m == "HEAD").await
            }
            ("PUT", ["containers", id, "archive"]) => {
                let id = id.to_string();
                self.archive_in(&id, req).await
            }
            ("GET", ["containers", id, "changes"]) => self.container_changes(id).await,
            ("GET", ["containers", id, "export"]) => self.export_container(id),
            ("POST", ["commit"]) => self.commit(&req).await,
            ("GET", ["images", "get"]) => self.save_images(query_all(&req, "names")).await,
            ("POST", ["images", "load"]) => self.load_images(req).await,
            ("GET", ["images", name @ .., "get"]) if !name.is_empty() => {
                self.save_images(vec![name.join("/")]).await
            }
            ("GET", ["images", "json"]) => {
                let q = query(&req);
                on_own_thread(self, move |api| async move { api.list_images(&q).await }).await
            }
            ("POST", ["images", "prune"]) => {
                let q = query(&req);
                on_own_thread(self, move |api| async move { api.prune_images(&q).await }).await
            }
            ("POST", ["containers", "prune"]) => self.prune_containers(&req).await,
            ("GET", ["system", "df"]) => self.system_df().await,
            ("POST", ["images", "create"]) if query(&req).contains_key("fromSrc") => {
                self.import_image(req).await
            }
            ("POST", ["images", "create"]) => self.pull_image(&req),
            ("POST", ["auth"]) => self.check_auth(req).await,
            ("POST", ["images", name @ .., "push"]) if !name.is_empty() => {
                self.push_image(&name.join("/"), &req)
            }
            ("GET", ["images", name @ .., "json"]) => {
                let name = name.join("/");
                on_own_thread(
                    self,
                    move |api| async move { api.inspect_image(&name).await },
                )
                .await
            }
            ("GET", ["images", name @ .., "history"]) => {
                let name = name.join("/");
                on_own_thread(
                    self,
                    move |api| async move { api.image_history(&name).await },
                )
                .await
            }
            ("POST", ["images", name @ .., "tag"]) => {
                let (name, q) = (name.join("/"), query(&req));
                on_own_thread(
                    self,
                    move |api| async move { api.tag_image(&name, &q).await },
                )
                .await
            }
            ("DELETE", ["images", name @ ..]) if !name.is_empty() => {
                let (name, q) = (name.join("/"), query(&req));
                on_own_thread(
                    self,
                    move |api| async move { api.remove_image(&name, &q).await },
                )
                .await
            }
            _ => Err(Fail::not_found(format!(
                "page not found: {m} {path} is not an Engine API endpoint served here"
            ))),
        }
    }

    /// `GET /system/df`: what the images, containers and volumes hold.
    async fn system_df(self: &Arc<Self>) -> Reply {
        let (mut images, du) = on_own_thread(self, |api| async move {
            let images = api
                .image_summaries(&oci_rs_layer::ImageFilter::default())
                .await?;
            Ok((images, api.containers.disk_usage(&api.images).await?))
        })
        .await?;
        // The bytes each image shares with others, and its containers (docker's `df -v`).
        for i in &mut images {
            if let Some(u) = du.image_rows.iter().find(|u| i["Id"] == u.id.as_str()) {
                i["SharedSize"] = u.shared_size.into();
                i["Containers"] = u.containers.into();
            }
        }
        let layers = du.layers_size;
        let (containers, volumes) = self.df_parts(Arc::new(du)).await?;
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({
                "LayersSize": layers,
                "Images": images,
                "Containers": containers,
                "Volumes": volumes,
                "BuildCache": [],
            }),
        ))
    }

    async fn info(self: &Arc<Self>) -> Reply {
        let doc = on_own_thread(self, |api| async move {
            Ok(api.containers.system_info(&api.images).await?)
        })
        .await?;
        Ok(json(StatusCode::OK, &doc))
    }
}

/// An open connection or hijacked session of [`EngineApi::open_session`].
struct Session(Arc<EngineApi>);

impl Drop for Session {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
}

/// TLS for the Engine API on TCP (feature `api-tls`), as dockerd's `--tlscert`, `--tlskey`
/// and, to verify clients, `--tlsverify --tlscacert`. The process's rustls crypto provider
/// is used when one is installed, ring's otherwise.
#[cfg(feature = "api-tls")]
#[derive(Clone)]
pub struct ApiTls {
    config: Arc<rustls::ServerConfig>,
    verifies_clients: bool,
}

#[cfg(feature = "api-tls")]
impl std::fmt::Debug for ApiTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiTls")
            .field("verifies_clients", &self.verifies_clients)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "api-tls")]
impl ApiTls {
    /// The server's PEM certificate chain (leaf first) and PEM private key; with
    /// `client_ca`, a PEM bundle of the CAs whose certificates a client must present.
    pub fn from_files(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, ApiError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        fn fail<E: std::error::Error + Send + Sync + 'static>(
            what: &'static str,
            path: &Path,
        ) -> impl FnOnce(E) -> ApiError + use<E> {
            let path = path.to_owned();
            move |e| ApiError::Tls {
                what,
                path,
                source: Box::new(e),
            }
        }
        let certs =
            |what: &'static str, path: &Path| -> Result<Vec<CertificateDer<'static>>, ApiError> {
                let all = CertificateDer::pem_file_iter(path)
                    .map_err(fail(what, path))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(fail(what, path))?;
                if all.is_empty() {
                    return Err(fail(what, path)(
                        rustls::pki_types::pem::Error::NoItemsFound,
                    ));
                }
                Ok(all)
            };
        let chain = certs("certificate chain", cert)?;
        let private = PrivateKeyDer::from_pem_file(key).map_err(fail("private key", key))?;
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(fail("certificate chain", cert))?;
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in certs("clients' CA", ca)? {
                    roots.add(c).map_err(fail("clients' CA", ca))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(fail("clients' CA", ca))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, private)
            .map_err(fail("certificate chain", cert))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            verifies_clients: client_ca.is_some(),
        })
    }

    /// Whether a client must present a certificate one of the CAs signed.
    pub fn verifies_clients(&self) -> bool {
        self.verifies_clients
    }
}

#[cfg(not(feature = "api-tls"))]
enum ApiTls {}

#[cfg(not(feature = "api-tls"))]
impl ApiTls {
    fn verifies_clients(&self) -> bool {
        match *self {}
    }
}

/// What the accept loop takes connections from.
trait Listener {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept_one(&self) -> impl std::future::Future<Output = std::io::Result<Self::Io>> + Send;
}

impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept_one(&self) -> std::io::Result<Self::Io> {
        Ok(self.accept().await?.0)
    }
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept_one(&self) -> std::io::Result<Self::Io> {
        Ok(self.accept().await?.0)
    }
}

/// Where the service listens when no address is given, as podman's: `/run/oci-rs/oci.sock`
/// for root, `$XDG_RUNTIME_DIR/oci-rs/oci.sock` for another user (`None` without it).
pub fn default_uri() -> Option<String> {
    if rustix::process::geteuid().is_root() {
        return Some("unix:///run/oci-rs/oci.sock".into());
    }
    let run = std::env::var_os("XDG_RUNTIME_DIR").filter(|r| !r.is_empty())?;
    Some(format!(
        "unix://{}/oci-rs/oci.sock",
        Path::new(&run).display()
    ))
}

/// Creates the API's unix socket at `path`, 0660 (its owner and group: access to it is root
/// on the host), replacing a stale socket of a service that is gone; its directory is
/// made when missing. Refuses when another service answers on it.
pub fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, ApiError> {
    let fail = |source| ApiError::Bind {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(fail(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another service answers on this socket",
                )));
            }
            std::fs::remove_file(path).map_err(fail)?;
        }
        Ok(_) => {
            return Err(fail(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    // Made 0600 by the umask's narrowest setting, then opened to the group: never wider.
    // Bound under a name of its own and moved into place once its mode is final, so that no
    // client finds it before.
    // (A short name: a socket's path has a length limit.) Never moved over another
    // service's socket made meanwhile.
    let temp = path.with_file_name(format!(".{}", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let l = tokio::net::UnixListener::bind(&temp);
    rustix::process::umask(old);
    let l = l.map_err(fail)?;
    let placed =
        std::fs::set_permissions(&temp, std::os::unix::fs::PermissionsExt::from_mode(0o660))
            .and_then(|()| {
                rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &temp,
                    rustix::fs::CWD,
                    path,
                    rustix::fs::RenameFlags::NOREPLACE,
                )
                .map_err(|e| match e {
                    rustix::io::Errno::EXIST => std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        "another service made its socket here meanwhile",
                    ),
                    e => e.into(),
                })
            });
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temp);
        return Err(fail(e));
    }
    Ok(l)
}

/// The device and inode of `path`, to remove it later only when it is still the same file.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// `/v1.47/containers/json` → (Some("1.47"), "/containers/json"), refusing versions outside
/// what is served as docker does.
fn split_version(path: &str) -> Result<(Option<&str>, &str), Fail> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok((None, path));
    };
    let (v, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Some(n) = parse_version(v) else {
        return Ok((None, path));
    };
    let max = parse_version(API_VERSION).unwrap_or((1, 47));
    let min = parse_version(MIN_API_VERSION).unwrap_or((1, 41));
    if n > max {
        return Err(Fail::bad(format!(
            "client version {v} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    if n < min {
        return Err(Fail::bad(format!(
            "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    Ok((Some(v), tail))
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn ping(head: bool) -> Response<Body> {
    let body = if head { "" } else { "OK" };
    let mut r = Response::new(full(body.as_bytes().to_vec()));
    let h = r.headers_mut();
    h.insert(
        "API-Version",
        hyper::header::HeaderValue::from_static(API_VERSION),
    );
    h.insert(
        "Docker-Experimental",
        hyper::header::HeaderValue::from_static("false"),
    );
    h.insert("Ostype", hyper::header::HeaderValue::from_static("linux"));
    h.insert(
        "Builder-Version",
        hyper::header::HeaderValue::from_static("1"),
    );
    h.insert(
        "Cache-Control",
        hyper::header::HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(
        "Pragma",
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn json(status: StatusCode, v: &impl serde::Serialize) -> Response<Body> {
    let mut bytes = serde_json::to_vec(v).unwrap_or_default();
    bytes.push(b'\n');
    let mut r = json_lines(full(bytes));
    *r.status_mut() = status;
    r
}

/// A `200 OK` of JSON (one document, or docker's lines of progress, whole or streamed).
fn json_lines(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// A streamed body fed by the returned sender; the stream ends when it is dropped.
fn channel_body(depth: usize) -> (tokio::sync::mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(depth);
    let s = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::io::Error>(Frame::data(b)), rx))
    });
    (tx, UnsyncBoxBody::new(StreamBody::new(s)))
}

/// The request's query parameters (the last of a repeated one).
fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// Every value of the query parameter `key` (`names=a&names=b`).
fn query_all(req: &Request<Incoming>, key: &str) -> Vec<String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
        .filter(|(k, _)| percent_decode(k) == key)
        .map(|(_, v)| percent_decode(&v.replace('+', " ")))
        .filter(|v| !v.is_empty())
        .collect()
}

/// docker's boolean query values: `1`, `true`, `True`.
fn flag(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k)
        .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True" | "TRUE"))
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// docker's `filters` parameter, `{"label":["a=b"],"status":["running"]}` (or the older
/// `{"label":{"a=b":true}}`), as `key=value` pairs.
fn filters(q: &HashMap<String, String>) -> Result<Vec<String>, Fail> {
    let Some(raw) = q.get("filters").filter(|f| !f.is_empty()) else {
        return Ok(Vec::new());
    };
    let v: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| Fail::bad(format!("invalid filter {raw:?}: {e}")))?;
    let Some(map) = v.as_object() else {
        return Err(Fail::bad(format!("invalid filter {raw:?}: not an object")));
    };
    let mut out = Vec::new();
    for (k, vals) in map {
        match vals {
            serde_json::Value::Array(a) => out.extend(
                a.iter()
                    .filter_map(|x| x.as_str())
                    .map(|x| format!("{k}={x}")),
            ),
            serde_json::Value::Object(o) => out.extend(o.keys().map(|x| format!("{k}={x}"))),
            _ => return Err(Fail::bad(format!("invalid filter {raw:?}: {k}"))),
        }
    }
    Ok(out)
}

/// Reads a JSON request body of at most [`MAX_JSON_BODY`] bytes within [`BODY_DEADLINE`];
/// an empty body is the type's default.
async fn read_json<T: serde::de::DeserializeOwned + Default>(
    req: Request<Incoming>,
) -> Result<T, Fail> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_JSON_BODY);
    let bytes = match tokio::time::timeout(BODY_DEADLINE, limited.collect()).await {
        Err(_) => {
            return Err(Fail::new(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time",
            ))
        }
        Ok(Err(e)) => {
            return Err(Fail::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("reading the request body: {e} (at most {MAX_JSON_BODY} bytes)"),
            ))
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| Fail::bad(format!("invalid JSON body: {e}")))
}

/// Runs an image-store call on a blocking thread of its own, driven by the runtime's
/// handle: the stores' futures hold borrows across awaits that the compiler cannot prove
/// `Send` for every lifetime (rust-lang/rust#96865), so they cannot be spawned as tasks.
async fn on_own_thread<T, F, Fut>(api: &Arc<EngineApi>, f: F) -> Result<T, Fail>
where
    T: Send + 'static,
    F: FnOnce(Arc<EngineApi>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, Fail>>,
{
    let handle = tokio::runtime::Handle::current();
    let api = api.clone();
    tokio::task::spawn_blocking(move || handle.block_on(f(api)))
        .await
        .map_err(|e| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// Runs a blocking store call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Fail> + Send + 'static,
) -> Result<T, Fail> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn versions_are_split_and_checked_as_docker_does() {
        assert_eq!(
            split_version("/v1.43/containers/json").unwrap(),
            (Some("1.43"), "/containers/json")
        );
        assert_eq!(split_version("/_ping").unwrap(), (None, "/_ping"));
        assert_eq!(split_version("/volumes").unwrap(), (None, "/volumes"));
        let new = split_version("/v1.50/info").unwrap_err();
        assert_eq!(new.status, StatusCode::BAD_REQUEST);
        assert!(new.message.contains("too new"), "{}", new.message);
        assert!(split_version("/v1.24/info")
            .unwrap_err()
            .message
            .contains("too old"));
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(percent_decode("a%2Fb%3d"), "a/b=");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        // Raw UTF-8 after a `%` (which the HTTP parser lets through) is kept, not split.
        assert_eq!(percent_decode("%a\u{e9}x"), "%a\u{e9}x");
    }
}

//! The client: configuration, endpoints, and the one request path that every operation uses
//! (authentication, retries, redirects).

use crate::auth::{check_realm, fetch_token, normalize_scopes, AuthState};
use crate::challenge::AuthChallenge;
use crate::credentials::{AnonymousProvider, Credential, CredentialProvider};
use crate::error::{redact, retryable_status, Error, Result};
use crate::progress::{Progress, ProgressFn};
use crate::repository::{
    normalize_registry, validate_registry, Repository, DOCKER_HUB, DOCKER_HUB_HOST,
};
use crate::retry::RetryPolicy;
use crate::routes::{MirrorUse, ReadKind, Routes};
use bytes::Bytes;
use reqwest::header::{
    HeaderName, HeaderValue, AUTHORIZATION, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, Url};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Builds a [`Client`].
pub struct ClientBuilder {
    insecure_networks: Vec<(std::net::IpAddr, u8)>,
    https: HashSet<String>,
    pub(crate) short_names: Option<Arc<crate::RegistryConfig>>,
    credentials: Arc<dyn CredentialProvider>,
    routes: Routes,
    retry: RetryPolicy,
    max_downloads: usize,
    max_uploads: usize,
    user_agent: String,
    connect_timeout: Duration,
    read_timeout: Duration,
    progress: Option<ProgressFn>,
    chunk_size: u64,
    monolithic_limit: u64,
    max_resumes: u32,
    roots: Vec<reqwest::Certificate>,
    http: Option<reqwest::Client>,
    request_deadline: Duration,
    min_blob_rate: (u64, Duration),
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            insecure_networks: Vec::new(),
            https: HashSet::new(),
            short_names: None,
            credentials: Arc::new(AnonymousProvider),
            routes: Routes::default(),
            retry: RetryPolicy::default(),
            max_downloads: 4,
            max_uploads: 4,
            user_agent: concat!("oci-registry-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            progress: None,
            chunk_size: 16 * 1024 * 1024,
            monolithic_limit: 128 * 1024 * 1024,
            max_resumes: 5,
            roots: Vec::new(),
            http: None,
            request_deadline: Duration::from_secs(120),
            min_blob_rate: (1024, Duration::from_secs(60)),
        }
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("credentials", &self.credentials)
            .field("routes", &self.routes)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Uses plain HTTP for this registry. `prefix` may also be every subdomain of a domain
    /// (`*.example.com`) or a namespace (`reg.corp/legacy`: reads and writes of its
    /// repositories), as [`mirror`](Self::mirror)'s prefixes match. Loopback registries
    /// (`localhost`, all of 127.0.0.0/8, `[::1]`) use it too unless marked with
    /// [`https_registry`](Self::https_registry).
    pub fn insecure_registry(mut self, prefix: &str) -> Self {
        self.routes.insecure(prefix);
        self
    }

    /// Uses plain HTTP for every registry whose address is in the network `addr/prefix`
    /// (docker's `insecure-registries` given as a CIDR range): a registry named by such an
    /// address, or by a host name that resolves to one (looked up once per client).
    pub fn insecure_network(mut self, addr: std::net::IpAddr, prefix: u8) -> Self {
        self.insecure_networks.push((addr, prefix));
        self
    }

    /// Never contacts this registry (or uses it as a mirror): requests fail with
    /// [`Error::Blocked`](crate::Error::Blocked). `prefix` may also be a namespace
    /// (`docker.io/evil`: reads of repositories under it fail) or every subdomain of a domain
    /// (`*.example.com`); see [`mirror`](Self::mirror) for how prefixes match.
    pub fn blocked_registry(mut self, prefix: &str) -> Self {
        self.routes.block(prefix);
        self
    }

    /// Always uses HTTPS for this registry, even on a loopback address.
    pub fn https_registry(mut self, registry: &str) -> Self {
        self.https.insert(normalize_registry(registry));
        self
    }

    /// Where credentials come from (default: none).
    pub fn credentials(mut self, provider: impl CredentialProvider + 'static) -> Self {
        self.credentials = Arc::new(provider);
        self
    }

    /// Same as [`credentials`](Self::credentials), for a shared provider.
    pub fn credentials_arc(mut self, provider: Arc<dyn CredentialProvider>) -> Self {
        self.credentials = provider;
        self
    }

    /// Adds a mirror for reads of the repositories under `prefix`; mirrors are tried in the
    /// order added, then the registry itself (or its [`remap`](Self::remap) location).
    ///
    /// As `registries.conf`'s `[[registry]]` tables: `prefix` is a registry (`docker.io`), a
    /// namespace (`docker.io/library`, `registry.corp/team`) or every subdomain of a domain
    /// (`*.example.com`), and a repository is governed by the longest prefix it starts with
    /// (whole name components), whose mirrors alone it uses. `location` is a registry with an
    /// optional path, to which the rest of the repository's name is appended: with a mirror
    /// `mirror.corp/hub` of `docker.io`, `docker.io/library/alpine` is read from
    /// `mirror.corp/hub/library/alpine`. Pushes go to the repository itself.
    pub fn mirror(self, prefix: &str, location: &str) -> Self {
        self.mirror_for(prefix, location, MirrorUse::All)
    }

    /// [`mirror`](Self::mirror) serving only some reads (`pull-from-mirror`): by digest only
    /// (a tag is then always resolved at the registry), or manifests by tag only.
    pub fn mirror_for(mut self, prefix: &str, location: &str, reads: MirrorUse) -> Self {
        self.routes.mirror(prefix, location, reads);
        self
    }

    /// Reads of the repositories under `prefix` go to `location` instead, the rest of the
    /// name appended (`registries.conf`'s `location`): with `example.com/foo` remapped to
    /// `internal.corp/bar`, `example.com/foo/app` is read from `internal.corp/bar/app`. The
    /// image keeps its name; pushes go to the name as given.
    pub fn remap(mut self, prefix: &str, location: &str) -> Self {
        self.routes.remap(prefix, location);
        self
    }

    /// The retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Blob downloads running at once (at least 1).
    pub fn max_concurrent_downloads(mut self, n: usize) -> Self {
        self.max_downloads = n.max(1);
        self
    }

    /// Blob uploads running at once (at least 1).
    pub fn max_concurrent_uploads(mut self, n: usize) -> Self {
        self.max_uploads = n.max(1);
        self
    }

    /// The `User-Agent` header.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    /// Time allowed to connect.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Time allowed between two reads of an answer (a stalled blob download then resumes).
    pub fn read_timeout(mut self, d: Duration) -> Self {
        self.read_timeout = d;
        self
    }

    /// A callback told how many bytes of each blob moved.
    pub fn progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// The PATCH chunk size for chunked uploads (raised to the registry's
    /// `OCI-Chunk-Min-Length` when that is larger).
    pub fn chunk_size(mut self, bytes: u64) -> Self {
        self.chunk_size = bytes.max(1);
        self
    }

    /// Blobs up to this size go up in one PUT; larger ones in PATCH chunks.
    pub fn monolithic_limit(mut self, bytes: u64) -> Self {
        self.monolithic_limit = bytes;
        self
    }

    /// How many times in a row a blob download may be resumed with `Range` without making
    /// progress (an attempt that delivered new bytes at the minimum rate resets the count, so
    /// a long blob over a flaky link still arrives).
    pub fn max_resumes(mut self, n: u32) -> Self {
        self.max_resumes = n;
        self
    }

    /// The whole time one request other than a blob transfer may take, answer body included
    /// (manifests, tags, token requests, pings): a server that sends one byte a minute fails
    /// the request then instead of holding it forever. Default 120 s.
    pub fn request_deadline(mut self, d: Duration) -> Self {
        self.request_deadline = d;
        self
    }

    /// The slowest a blob body may arrive: fewer than `bytes_per_second` on average over
    /// `window` ends that connection, which is then resumed and counted as an attempt
    /// without progress (see [`max_resumes`](Self::max_resumes)); so a blob takes at most
    /// about its size over this rate. Default 1 KiB/s over 60 s.
    pub fn min_blob_rate(mut self, bytes_per_second: u64, window: Duration) -> Self {
        self.min_blob_rate = (bytes_per_second, window.max(Duration::from_millis(1)));
        self
    }

    /// Trusts the CA certificates of a PEM bundle as well as the platform's store
    /// (`/etc/ssl/certs` and `SSL_CERT_FILE` on Linux) and, with rustls, Mozilla's roots
    /// (webpki-roots): private registries.
    pub fn root_certificates_pem(mut self, pem: &[u8]) -> Result<Self> {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| Error::Credentials {
            registry: "*".into(),
            reason: format!("invalid PEM certificate bundle: {e}"),
        })?;
        if certs.is_empty() {
            return Err(Error::Credentials {
                registry: "*".into(),
                reason: "the PEM bundle holds no certificate".into(),
            });
        }
        self.roots.extend(certs);
        Ok(self)
    }

    /// Uses this HTTP client (its TLS backend, roots, proxy, pool) instead of building one.
    /// [`ClientBuilder::root_certificates_pem`], the timeouts and the user agent are then the given
    /// client's business. Build it with `redirect(reqwest::redirect::Policy::none())`: this
    /// client follows redirects itself and decides at each hop whether credentials go along
    /// (a client that follows them on its own still works, and reqwest drops the
    /// `Authorization` header on a redirect to another host).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// `docker login`: checks `username` and `password` against `registry` (`GET /v2/`
    /// through its challenge, with this builder's settings and these credentials only), then
    /// stores them where docker keeps them (`$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`, mode 0600, or the credential helper it names). Returns where
    /// they went.
    pub async fn login(
        self,
        registry: &str,
        username: &str,
        password: &str,
    ) -> Result<crate::StoredIn> {
        let cred = Credential::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        let provider = crate::StaticCredentials::new().with(registry, cred);
        self.credentials(provider).build()?.ping(registry).await?;
        let dir = crate::docker_config_dir().ok_or_else(|| Error::Credentials {
            registry: registry.to_owned(),
            reason: "neither DOCKER_CONFIG nor HOME is set".into(),
        })?;
        crate::save_login(&dir, registry, username, password, None).await
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client> {
        let http = match self.http {
            Some(h) => h,
            None => self.build_http()?,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                insecure_networks: self.insecure_networks,
                resolved_insecure: Mutex::new(HashMap::new()),
                https: self.https,
                short_names: self.short_names,
                credentials: self.credentials,
                routes: self.routes,
                retry: self.retry,
                downloads: Arc::new(Semaphore::new(self.max_downloads)),
                uploads: Arc::new(Semaphore::new(self.max_uploads)),
                auth: Mutex::new(HashMap::new()),
                creds: tokio::sync::Mutex::new(HashMap::new()),
                progress: self.progress,
                chunk_size: self.chunk_size,
                monolithic_limit: self.monolithic_limit,
                max_resumes: self.max_resumes,
                request_deadline: self.request_deadline,
                min_blob_rate: self.min_blob_rate,
            }),
        })
    }

    fn build_http(&self) -> Result<reqwest::Client> {
        let mut http = reqwest::Client::builder();
        #[cfg(feature = "rustls")]
        {
            crypto_provider()?;
            http = http.use_rustls_tls();
        }
        #[cfg(all(feature = "native-tls", not(feature = "rustls")))]
        {
            http = http.use_native_tls();
        }
        for c in &self.roots {
            http = http.add_root_certificate(c.clone());
        }
        http.user_agent(self.user_agent.clone())
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            // Redirects are followed by `Client::send`, which decides about credentials.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Transport {
                url: String::new(),
                source: e,
            })
    }
}

/// Makes sure rustls has a crypto provider: aws-lc-rs (feature `aws-lc-rs`) is installed as
/// the process default when none is; `ring` is reqwest's own fallback. With neither feature,
/// the program must have installed one, or the build fails here instead of panicking in
/// reqwest.
#[cfg(feature = "rustls")]
pub(crate) fn crypto_provider() -> Result<()> {
    #[cfg(feature = "aws-lc-rs")]
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may install one first: either way there is one afterwards.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    #[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        return Err(Error::NoCryptoProvider);
    }
    Ok(())
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    insecure_networks: Vec<(std::net::IpAddr, u8)>,
    /// Whether a registry host is in an insecure network, by host, as first looked up.
    resolved_insecure: Mutex<HashMap<String, bool>>,
    https: HashSet<String>,
    pub(crate) short_names: Option<Arc<crate::RegistryConfig>>,
    credentials: Arc<dyn CredentialProvider>,
    routes: Routes,
    pub(crate) retry: RetryPolicy,
    pub(crate) downloads: Arc<Semaphore>,
    pub(crate) uploads: Arc<Semaphore>,
    auth: Mutex<HashMap<String, AuthState>>,
    creds: tokio::sync::Mutex<HashMap<String, Credential>>,
    pub(crate) progress: Option<ProgressFn>,
    pub(crate) chunk_size: u64,
    pub(crate) monolithic_limit: u64,
    pub(crate) max_resumes: u32,
    pub(crate) request_deadline: Duration,
    pub(crate) min_blob_rate: (u64, Duration),
}

/// A distribution-spec client. Cheap to clone; clones share connections and token caches.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl Client {
    /// This client with `credentials` in place of its own: the same HTTP stack, registry
    /// settings, limits and progress, and token caches of its own (a token got with one
    /// login is never used with another).
    pub fn with_credentials(&self, credentials: Arc<dyn CredentialProvider>) -> Client {
        let i = &self.inner;
        Client {
            inner: Arc::new(Inner {
                http: i.http.clone(),
                insecure_networks: i.insecure_networks.clone(),
                resolved_insecure: Mutex::new(HashMap::new()),
                https: i.https.clone(),
                short_names: i.short_names.clone(),
                credentials,
                routes: i.routes.clone(),
                retry: i.retry.clone(),
                downloads: i.downloads.clone(),
                uploads: i.uploads.clone(),
                auth: Mutex::new(HashMap::new()),
                creds: tokio::sync::Mutex::new(HashMap::new()),
                progress: i.progress.clone(),
                chunk_size: i.chunk_size,
                monolithic_limit: i.monolithic_limit,
                max_resumes: i.max_resumes,
                request_deadline: i.request_deadline,
                min_blob_rate: i.min_blob_rate,
            }),
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("credentials", &self.inner.credentials)
            .field("routes", &self.inner.routes)
            .finish_non_exhaustive()
    }
}

/// A registry (or mirror) as reached over the network.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The registry name credentials are looked up with.
    pub(crate) registry: String,
    /// `scheme://host[:port]/`.
    pub(crate) base: Url,
}

impl Endpoint {
    pub(crate) fn url(&self, path: &str) -> Result<Url> {
        self.base.join(path).map_err(|e| Error::InvalidName {
            name: path.to_owned(),
            reason: format!("cannot form a URL: {e}"),
        })
    }
}

/// A request body: bytes can be sent again (retries), a stream only once.
pub(crate) enum ReqBody {
    Empty,
    Bytes(Bytes),
    Stream(Option<reqwest::Body>),
}

/// A request as `Client::send` takes it.
pub(crate) struct Req {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: ReqBody,
    pub(crate) scopes: Vec<String>,
    /// May be sent again after a connection error or a retryable status.
    pub(crate) retry: bool,
    /// Bounded by the client's request deadline (everything but blob transfers).
    pub(crate) deadline: bool,
}

impl Req {
    pub(crate) fn new(method: Method, url: Url, scopes: Vec<String>) -> Self {
        let retry = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE
        );
        Self {
            method,
            url,
            headers: Vec::new(),
            body: ReqBody::Empty,
            scopes,
            retry,
            deadline: true,
        }
    }

    pub(crate) fn header(mut self, name: HeaderName, value: &str) -> Result<Self> {
        let v = HeaderValue::from_str(value).map_err(|_| Error::InvalidName {
            name: value.to_owned(),
            reason: format!("not a valid {name} header value"),
        })?;
        self.headers.push((name, v));
        Ok(self)
    }
}

/// Whether `addr` is in the network `net/prefix` (an IPv4 address is not in an IPv6
/// network, nor the reverse).
fn in_network(addr: std::net::IpAddr, net: std::net::IpAddr, prefix: u8) -> bool {
    use std::net::IpAddr;
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if prefix <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if prefix <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn is_loopback(host: &str) -> bool {
    let h = match host.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && p.bytes().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    if h == "localhost" || h.ends_with(".localhost") {
        return true;
    }
    // All of 127.0.0.0/8 and ::1 (also as an IPv4-mapped address), written any way an
    // address parses.
    let ip = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => a.is_loopback(),
        Ok(std::net::IpAddr::V6(a)) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

impl Client {
    /// A builder with the defaults: anonymous, HTTPS only except loopback, 4 retries.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client with the defaults.
    pub fn new() -> Result<Self> {
        Self::builder().build()
    }

    /// The endpoint of a registry: `docker.io` is served by `registry-1.docker.io`; plain
    /// HTTP only for registries marked insecure and loopback addresses. A blocked registry is
    /// an error.
    pub(crate) fn endpoint(&self, registry: &str) -> Result<Endpoint> {
        validate_registry(registry)?;
        let registry = normalize_registry(registry);
        if self.inner.routes.blocked(&registry) {
            return Err(Error::Blocked { registry });
        }
        let plain = self.inner.routes.plain_http(&registry);
        self.endpoint_with(&registry, plain)
    }

    /// The endpoint for requests about `repo` itself (pushes, tag and referrer lists,
    /// deletes): as [`endpoint`](Self::endpoint), with a blocked or insecure namespace
    /// that `repo` is in taken into account.
    pub(crate) fn endpoint_for(&self, repo: &Repository) -> Result<Endpoint> {
        let reference = repo.to_string();
        if let Some(prefix) = self.inner.routes.blocking(&reference) {
            return Err(Error::Blocked {
                registry: prefix.to_owned(),
            });
        }
        let plain = self.inner.routes.plain_http(&reference);
        self.endpoint_with(repo.registry(), plain)
    }

    /// The endpoint of `registry` (already validated and normalized), plain HTTP when
    /// `plain`, or the host is loopback (unless marked HTTPS), or in an insecure network.
    fn endpoint_with(&self, registry: &str, plain: bool) -> Result<Endpoint> {
        let registry = normalize_registry(registry);
        let host = if registry == DOCKER_HUB {
            DOCKER_HUB_HOST
        } else {
            registry.as_str()
        };
        let plain = plain
            || (is_loopback(host) && !self.inner.https.contains(&registry))
            || self.in_insecure_network(host);
        let scheme = if plain { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{host}/")).map_err(|e| Error::InvalidName {
            name: registry.clone(),
            reason: format!("not a usable host: {e}"),
        })?;
        Ok(Endpoint { registry, base })
    }

    /// Whether `host` (`name[:port]`, `[v6]:port`) is an address in one of the insecure
    /// networks, or a name that resolves to one (as docker decides it; the answer is kept
    /// for the client's life, so a name is looked up once).
    fn in_insecure_network(&self, host: &str) -> bool {
        if self.inner.insecure_networks.is_empty() {
            return false;
        }
        let name = match host.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(rest),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        let mut cache = self
            .inner
            .resolved_insecure
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(known) = cache.get(name) {
            return *known;
        }
        let addrs: Vec<std::net::IpAddr> = match name.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(name, 0u16))
                .map(|a| a.map(|s| s.ip()).collect())
                .unwrap_or_default(),
        };
        let inside = addrs.iter().any(|a| {
            self.inner
                .insecure_networks
                .iter()
                .any(|(net, prefix)| in_network(*a, *net, *prefix))
        });
        cache.insert(name.to_owned(), inside);
        inside
    }

    /// Where a read of `repo` goes, in order: each mirror that serves `kind` (a blocked one
    /// skipped), then the registry or its remapped location, each as an endpoint and the
    /// repository's name there. A blocked registry or namespace gives none.
    pub(crate) fn read_endpoints(
        &self,
        repo: &Repository,
        kind: ReadKind,
    ) -> Result<Vec<(Endpoint, Repository)>> {
        let sources = self.inner.routes.sources(repo, kind)?;
        let mut out = Vec::with_capacity(sources.len());
        for s in sources {
            out.push((self.endpoint_with(s.repo.registry(), s.insecure)?, s.repo));
        }
        Ok(out)
    }

    pub(crate) fn report(&self, p: Progress) {
        if let Some(f) = &self.inner.progress {
            f(&p);
        }
    }

    async fn credential(&self, registry: &str) -> Result<Credential> {
        let mut cache = self.inner.creds.lock().await;
        if let Some(c) = cache.get(registry) {
            return Ok(c.clone());
        }
        let c = self.inner.credentials.credential(registry).await?;
        cache.insert(registry.to_owned(), c.clone());
        Ok(c)
    }

    fn with_state<T>(&self, ep: &Endpoint, f: impl FnOnce(&mut AuthState) -> T) -> T {
        let mut map = self
            .inner
            .auth
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(map
            .entry(ep.base.origin().ascii_serialization())
            .or_default())
    }

    /// The `Authorization` value for a request to `ep` needing `scopes`, when we know the
    /// registry wants one.
    async fn authorization(&self, ep: &Endpoint, scopes: &[String]) -> Result<Option<String>> {
        let scopes = normalize_scopes(scopes);
        let key = scopes.join(" ");
        let (cached, challenge) = self.with_state(ep, |s| {
            (
                s.token_for(&key).map(|t| t.value.clone()),
                s.challenge.clone(),
            )
        });
        if let Some(t) = cached {
            return Ok(Some(format!("Bearer {t}")));
        }
        let Some(challenge) = challenge else {
            return Ok(None);
        };
        let credential = self.credential(&ep.registry).await?;
        match challenge {
            AuthChallenge::Basic { .. } => Ok(credential.basic_header()),
            AuthChallenge::Bearer { realm, service, .. } => {
                if let Credential::RegistryToken(t) = &credential {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let realm = check_realm(&realm, &ep.base)?;
                let token = fetch_token(
                    &self.inner.http,
                    self.inner.request_deadline,
                    &realm,
                    service.as_deref(),
                    &scopes,
                    &credential,
                )
                .await?;
                let value = format!("Bearer {}", token.value);
                self.with_state(ep, |s| s.tokens.insert(key, token));
                Ok(Some(value))
            }
        }
    }

    /// Learns how `ep` authenticates (GET /v2/) before a request whose body cannot be sent
    /// twice.
    async fn ensure_challenge(&self, ep: &Endpoint) -> Result<()> {
        if self.with_state(ep, |s| s.open || s.challenge.is_some()) {
            return Ok(());
        }
        let url = ep.url("v2/")?;
        let resp = self
            .inner
            .http
            .get(url.clone())
            .timeout(self.inner.request_deadline)
            .send()
            .await
            .map_err(|e| Error::transport(&url, e))?;
        if resp.status().as_u16() == 401 {
            if let Some(h) = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|h| h.to_str().ok())
            {
                if let Some(c) = AuthChallenge::from_header(h)? {
                    self.with_state(ep, |s| s.challenge = Some(c));
                }
            }
        } else if resp.status().is_success() {
            self.with_state(ep, |s| s.open = true);
        }
        Ok(())
    }

    /// Sends a request to `ep` (or to a URL it sent us to), with authentication, retries
    /// and redirects. The answer can have any status; callers check it.
    ///
    /// Our `Authorization` header only goes to `ep`'s own origin (scheme, host and port):
    /// redirects and `Location` URLs elsewhere are reached without it.
    pub(crate) async fn send(&self, ep: &Endpoint, mut req: Req) -> Result<reqwest::Response> {
        let origin = ep.base.origin();
        let streaming = matches!(req.body, ReqBody::Stream(_));
        if streaming && req.url.origin() == origin {
            self.ensure_challenge(ep).await?;
        }
        let mut url = req.url.clone();
        let mut scopes = req.scopes.clone();
        let mut auth_rounds = 0u32;
        let mut attempt = 0u32;
        let mut redirects = 0u32;
        let max_attempts = self.inner.retry.max_attempts.max(1);
        loop {
            let same_origin = url.origin() == origin;
            let auth = if same_origin {
                self.authorization(ep, &scopes).await?
            } else {
                None
            };
            let mut rb = self.inner.http.request(req.method.clone(), url.clone());
            if req.deadline && !streaming {
                rb = rb.timeout(self.inner.request_deadline);
            }
            for (k, v) in &req.headers {
                rb = rb.header(k, v);
            }
            if let Some(a) = &auth {
                let mut v = HeaderValue::from_str(a).map_err(|_| Error::Unauthorized {
                    url: redact(&url),
                    reason: "credentials cannot be sent in a header".into(),
                })?;
                v.set_sensitive(true);
                rb = rb.header(AUTHORIZATION, v);
            }
            match &mut req.body {
                ReqBody::Empty => {}
                ReqBody::Bytes(b) => rb = rb.body(b.clone()),
                ReqBody::Stream(s) => match s.take() {
                    Some(b) => rb = rb.body(b),
                    None => {
                        return Err(Error::invalid(
                            &url,
                            "the request had to be repeated but its body was already sent",
                        ))
                    }
                },
            }
            let can_repeat = req.retry && !streaming && attempt + 1 < max_attempts;
            let resp = match rb.send().await {
                Ok(r) => r,
                Err(e) => {
                    let err = Error::transport(&url, e);
                    if can_repeat && err.can_retry() {
                        let d = self.inner.retry.backoff(attempt);
                        tracing::debug!(url = %redact(&url), error = %err, delay = ?d, "retrying");
                        tokio::time::sleep(d).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(err);
                }
            };
            let status = resp.status().as_u16();
            if status == 401 && same_origin {
                let header = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned);
                let Some(header) = header else {
                    return Err(Error::Unauthorized {
                        url: redact(&url),
                        reason: "401 without a WWW-Authenticate challenge".into(),
                    });
                };
                let challenge =
                    AuthChallenge::from_header(&header)?.ok_or_else(|| Error::Unauthorized {
                        url: redact(&url),
                        reason: "the registry offers no authentication scheme we support".into(),
                    })?;
                let refused_basic =
                    auth.is_some() && matches!(challenge, AuthChallenge::Basic { .. });
                if auth_rounds >= 2 || streaming || refused_basic {
                    let codes = crate::body::error_from(resp).await;
                    return Err(Error::Unauthorized {
                        url: redact(&url),
                        reason: format!("credentials refused ({codes})"),
                    });
                }
                if let AuthChallenge::Basic { .. } = challenge {
                    if self.credential(&ep.registry).await?.is_anonymous() {
                        return Err(Error::Unauthorized {
                            url: redact(&url),
                            reason:
                                "the registry wants basic auth and no credentials are configured"
                                    .into(),
                        });
                    }
                }
                if let AuthChallenge::Bearer { scope: Some(s), .. } = &challenge {
                    scopes.push(s.clone());
                }
                let key = normalize_scopes(&scopes).join(" ");
                self.with_state(ep, |s| {
                    s.tokens.remove(&key);
                    s.challenge = Some(challenge);
                });
                auth_rounds += 1;
                continue;
            }
            if matches!(status, 301 | 302 | 303 | 307 | 308)
                && matches!(req.method, Method::GET | Method::HEAD)
            {
                redirects += 1;
                if redirects > 10 {
                    return Err(Error::invalid(&url, "more than 10 redirects"));
                }
                let next = resolve_location(&url, &resp)?;
                if url.scheme() == "https" && next.scheme() == "http" {
                    return Err(Error::RefusedUrl {
                        url: redact(&next),
                        reason: "redirect from HTTPS to plain HTTP".into(),
                    });
                }
                tracing::debug!(from = %redact(&url), to = %next.origin().ascii_serialization(), "following redirect");
                url = next;
                continue;
            }
            if retryable_status(status) && can_repeat {
                let d = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| self.inner.retry.retry_after(v))
                    .unwrap_or_else(|| self.inner.retry.backoff(attempt));
                tracing::debug!(url = %redact(&url), status, delay = ?d, "retrying");
                drop(resp);
                tokio::time::sleep(d).await;
                attempt += 1;
                continue;
            }
            return Ok(resp);
        }
    }
}

/// The `Location` of an answer resolved against the URL asked for; http(s) only.
pub(crate) fn resolve_location(base: &Url, resp: &reqwest::Response) -> Result<Url> {
    let loc = resp
        .headers()
        .get(LOCATION)
        .ok_or_else(|| {
            Error::invalid(base, format!("{} without a Location header", resp.status()))
        })?
        .to_str()
        .map_err(|_| Error::invalid(base, "Location header is not ASCII"))?;
    let next = base.join(loc).map_err(|_| Error::RefusedUrl {
        url: loc.chars().take(200).collect(),
        reason: "not a valid URL".into(),
    })?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(Error::RefusedUrl {
            url: loc.chars().take(200).collect(),
            reason: "Location is not http(s)".into(),
        });
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Built with `--no-default-features --features rustls` (scripts/test.sh does): without a
    // provider, building fails with a typed error instead of reqwest's panic.
    #[cfg(all(feature = "rustls", not(any(feature = "ring", feature = "aws-lc-rs"))))]
    #[test]
    fn rustls_without_a_provider_is_an_error() {
        assert!(matches!(
            Client::builder().build(),
            Err(Error::NoCryptoProvider)
        ));
    }

    // With `aws-lc-rs`, it is the provider in use afterwards.
    #[cfg(feature = "aws-lc-rs")]
    #[test]
    fn aws_lc_rs_is_installed_when_chosen() {
        Client::builder().build().unwrap();
        let p = rustls::crypto::CryptoProvider::get_default().unwrap();
        let aws = rustls::crypto::aws_lc_rs::default_provider();
        assert_eq!(
            format!("{:?}", p.cipher_suites),
            format!("{:?}", aws.cipher_suites)
        );
        assert_eq!(format!("{:?}", p.kx_groups), format!("{:?}", aws.kx_groups));
    }

    #[test]
    fn blocked_registries_are_never_contacted() {
        let c = Client::builder()
            .mirror("docker.io", "blocked.mirror")
            .mirror("docker.io", "good.mirror")
            .blocked_registry("blocked.mirror")
            .blocked_registry("old.corp")
            .build()
            .unwrap();
        let repo = |r: &str| Repository::parse_reference(r).unwrap().0;
        assert!(matches!(
            c.read_endpoints(&repo("old.corp/app"), ReadKind::Tag),
            Err(Error::Blocked { registry }) if registry == "old.corp"
        ));
        // A blocked namespace: reads and writes of its repositories, not its neighbours'.
        let c = Client::builder()
            .blocked_registry("docker.io/evil")
            .build()
            .unwrap();
        assert!(matches!(
            c.endpoint_for(&repo("docker.io/evil/app")),
            Err(Error::Blocked { registry }) if registry == "docker.io/evil"
        ));
        assert!(c.endpoint_for(&repo("docker.io/good/app")).is_ok());
        let c = Client::builder()
            .mirror("docker.io", "blocked.mirror")
            .mirror("docker.io", "good.mirror")
            .blocked_registry("blocked.mirror")
            .blocked_registry("old.corp")
            .build()
            .unwrap();
        let hosts: Vec<String> = c
            .read_endpoints(&repo("alpine"), ReadKind::Tag)
            .unwrap()
            .iter()
            .map(|(e, _)| e.base.to_string())
            .collect();
        assert_eq!(
            hosts,
            ["https://good.mirror/", "https://registry-1.docker.io/"]
        );
    }

    #[test]
    fn endpoints_and_plain_http_rules() {
        let c = Client::builder()
            .insecure_registry("reg.internal:5000")
            .mirror("docker.io", "mirror.example")
            .build()
            .unwrap();
        assert_eq!(
            c.endpoint("docker.io").unwrap().base.as_str(),
            "https://registry-1.docker.io/"
        );
        assert_eq!(
            c.endpoint("localhost:5000").unwrap().base.as_str(),
            "http://localhost:5000/"
        );
        assert_eq!(
            c.endpoint("127.0.0.1:1234").unwrap().base.as_str(),
            "http://127.0.0.1:1234/"
        );
        assert_eq!(c.endpoint("[::1]:80").unwrap().base.scheme(), "http");
        // All of 127.0.0.0/8 is loopback; a name that only starts like it is not.
        for host in ["127.0.0.2:5000", "127.1.2.3", "[::ffff:127.0.0.5]:80"] {
            assert_eq!(c.endpoint(host).unwrap().base.scheme(), "http", "{host}");
        }
        for host in ["128.0.0.1:5000", "127.0.0.1.nip.io", "10.0.0.1"] {
            assert_eq!(c.endpoint(host).unwrap().base.scheme(), "https", "{host}");
        }
        assert_eq!(
            c.endpoint("reg.internal:5000").unwrap().base.scheme(),
            "http"
        );
        assert_eq!(c.endpoint("reg.internal").unwrap().base.scheme(), "https");
        assert_eq!(
            c.endpoint("127.0.0.1.evil.example").unwrap().base.scheme(),
            "https"
        );
        let alpine = Repository::parse_reference("alpine").unwrap().0;
        let eps: Vec<String> = c
            .read_endpoints(&alpine, ReadKind::Digest)
            .unwrap()
            .into_iter()
            .map(|(e, _)| e.base.to_string())
            .collect();
        assert_eq!(
            eps,
            vec!["https://mirror.example/", "https://registry-1.docker.io/"]
        );
        assert!(c.endpoint("bad host").is_err());
    }

    #[test]
    fn insecure_networks_are_plain_http_by_address_and_by_resolved_name() {
        let c = Client::builder()
            .insecure_network("10.0.0.0".parse().unwrap(), 8)
            .insecure_network("fd00::".parse().unwrap(), 8)
            // A loopback name made HTTPS again, to see the name's lookup decide.
            .https_registry("localhost:5000")
            .build()
            .unwrap();
        for host in ["10.1.2.3:5000", "10.255.0.1", "[fd12::1]:5000"] {
            assert_eq!(c.endpoint(host).unwrap().base.scheme(), "http", "{host}");
        }
        for host in ["11.0.0.1", "[fe80::1]:5000", "localhost:5000"] {
            assert_eq!(c.endpoint(host).unwrap().base.scheme(), "https", "{host}");
        }
        let c = Client::builder()
            .insecure_network("127.0.0.0".parse().unwrap(), 8)
            .https_registry("localhost:5000")
            .build()
            .unwrap();
        assert_eq!(
            c.endpoint("localhost:5000").unwrap().base.scheme(),
            "http",
            "localhost resolves into 127.0.0.0/8"
        );
        assert!(!in_network(
            "10.0.0.1".parse().unwrap(),
            "::".parse().unwrap(),
            0
        ));
        assert!(in_network(
            "192.0.2.1".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
            0
        ));
    }
}

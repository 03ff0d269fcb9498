//! Where credentials come from: the docker `config.json`, docker credential helpers, or any
//! [`CredentialProvider`] an embedding program supplies.

use crate::error::{Error, Result};
use async_trait::async_trait;
use base64::Engine;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The key Docker uses for Docker Hub in `config.json` and with credential helpers.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

/// Credentials for one registry. `Debug` never shows a secret.
#[derive(Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Credential {
    /// No credentials: anonymous tokens only.
    #[default]
    Anonymous,
    /// A user name and password (or personal access token).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// An OAuth2 refresh token (docker's `identitytoken`), exchanged with a POST to the realm.
    IdentityToken(String),
    /// A ready registry bearer token, sent as is.
    RegistryToken(String),
}

impl Credential {
    /// Basic credentials.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credential::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    /// True for [`Credential::Anonymous`].
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Credential::Anonymous)
    }

    /// The `Authorization: Basic ...` value, for basic credentials.
    pub(crate) fn basic_header(&self) -> Option<String> {
        match self {
            Credential::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            _ => None,
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Anonymous => f.write_str("Anonymous"),
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Credential::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

/// Supplies credentials for a registry. `registry` is the name as in image references
/// (`docker.io`, `localhost:5000`, `ghcr.io`).
#[async_trait]
pub trait CredentialProvider: Send + Sync + fmt::Debug {
    /// The credentials to use with `registry`; [`Credential::Anonymous`] when there are none.
    async fn credential(&self, registry: &str) -> Result<Credential>;
}

#[async_trait]
impl<T: CredentialProvider + ?Sized> CredentialProvider for std::sync::Arc<T> {
    async fn credential(&self, registry: &str) -> Result<Credential> {
        (**self).credential(registry).await
    }
}

#[async_trait]
impl<T: CredentialProvider + ?Sized> CredentialProvider for Box<T> {
    async fn credential(&self, registry: &str) -> Result<Credential> {
        (**self).credential(registry).await
    }
}

/// No credentials for any registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnonymousProvider;

#[async_trait]
impl CredentialProvider for AnonymousProvider {
    async fn credential(&self, _registry: &str) -> Result<Credential> {
        Ok(Credential::Anonymous)
    }
}

/// Fixed credentials per registry.
#[derive(Debug, Clone, Default)]
pub struct StaticCredentials {
    map: HashMap<String, Credential>,
}

impl StaticCredentials {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds credentials for a registry (normalised as docker does: `index.docker.io` is
    /// `docker.io`).
    pub fn with(mut self, registry: &str, credential: Credential) -> Self {
        self.map.insert(normalize_key(registry), credential);
        self
    }
}

#[async_trait]
impl CredentialProvider for StaticCredentials {
    async fn credential(&self, registry: &str) -> Result<Credential> {
        Ok(self
            .map
            .get(&normalize_key(registry))
            .cloned()
            .unwrap_or_default())
    }
}

/// The registry part of a docker config key: `https://index.docker.io/v1/` becomes
/// `docker.io`, `http://host:5000/v2/` becomes `host:5000`.
pub fn normalize_key(key: &str) -> String {
    let k = key.trim();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        _ => host,
    }
}

#[derive(Clone, Default, serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
    #[serde(default, rename = "registrytoken")]
    registry_token: Option<String>,
}

#[derive(Default, serde::Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

/// Credentials from a docker `config.json`: `auths` entries (`auth` as base64 `user:pass`, or
/// `username`/`password`, `identitytoken`), `credHelpers` per registry and a default
/// `credsStore`, run as `docker-credential-<name> get`.
#[derive(Clone, Default)]
pub struct DockerConfig {
    auths: HashMap<String, AuthEntry>,
    creds_store: Option<String>,
    cred_helpers: HashMap<String, String>,
    helper_dir: Option<PathBuf>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<_> = self.auths.keys().collect();
        keys.sort();
        f.debug_struct("DockerConfig")
            .field("auths", &keys)
            .field("creds_store", &self.creds_store)
            .field("cred_helpers", &self.cred_helpers)
            .finish()
    }
}

impl DockerConfig {
    /// Parses the JSON text of a `config.json`.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        let file: ConfigFile = serde_json::from_slice(json).map_err(|e| Error::Credentials {
            registry: "*".into(),
            reason: format!("invalid docker config JSON: {e}"),
        })?;
        Ok(Self {
            auths: file
                .auths
                .into_iter()
                .map(|(k, v)| (normalize_key(&k), v))
                .collect(),
            creds_store: file.creds_store.filter(|s| !s.is_empty()),
            cred_helpers: file
                .cred_helpers
                .into_iter()
                .map(|(k, v)| (normalize_key(&k), v))
                .collect(),
            helper_dir: None,
        })
    }

    /// Reads a `config.json`; a missing file is an empty configuration.
    pub fn from_path(path: &Path) -> Result<Self> {
        match std::fs::read(path) {
            Ok(b) => Self::from_json(&b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(Error::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Reads `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn load_default() -> Result<Self> {
        let path = if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            PathBuf::from(dir).join("config.json")
        } else if let Some(home) = std::env::var_os("HOME") {
            PathBuf::from(home).join(".docker").join("config.json")
        } else {
            return Ok(Self::default());
        };
        Self::from_path(&path)
    }

    /// Looks for `docker-credential-*` programs in `dir` instead of `$PATH`.
    pub fn with_helper_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.helper_dir = Some(dir.into());
        self
    }

    fn from_entry(registry: &str, e: &AuthEntry) -> Result<Option<Credential>> {
        if let Some(t) = e.identity_token.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::IdentityToken(t.to_owned())));
        }
        if let Some(t) = e.registry_token.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::RegistryToken(t.to_owned())));
        }
        if let Some(auth) = e.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or_else(|| Error::Credentials {
                    registry: registry.to_owned(),
                    reason: "the auth field is not base64 of UTF-8".into(),
                })?;
            let (u, p) = decoded.split_once(':').ok_or_else(|| Error::Credentials {
                registry: registry.to_owned(),
                reason: "the auth field is not user:password".into(),
            })?;
            return Ok(Some(Credential::basic(u, p)));
        }
        if let (Some(u), Some(p)) = (&e.username, &e.password) {
            return Ok(Some(Credential::basic(u.clone(), p.clone())));
        }
        Ok(None)
    }

    async fn run_helper(&self, helper: &str, registry: &str) -> Result<Credential> {
        let fail = |reason: String| Error::Credentials {
            registry: registry.to_owned(),
            reason,
        };
        let program = helper_program(self.helper_dir.as_deref(), helper, registry)?;
        let out = call_helper(&program, "get", server_url(registry).as_bytes(), registry).await?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            if text.to_ascii_lowercase().contains("credentials not found") {
                return Ok(Credential::Anonymous);
            }
            return Err(fail(format!(
                "{} failed with {}: {}",
                program.display(),
                out.status,
                text.trim().chars().take(200).collect::<String>()
            )));
        }
        #[derive(serde::Deserialize)]
        struct HelperAnswer {
            #[serde(rename = "Username", default)]
            username: String,
            #[serde(rename = "Secret", default)]
            secret: String,
        }
        let a: HelperAnswer = serde_json::from_slice(&out.stdout)
            .map_err(|e| fail(format!("{} printed invalid JSON: {e}", program.display())))?;
        Ok(if a.username == "<token>" {
            Credential::IdentityToken(a.secret)
        } else if a.username.is_empty() && a.secret.is_empty() {
            Credential::Anonymous
        } else {
            Credential::basic(a.username, a.secret)
        })
    }
}

/// `docker-credential-HELPER`, in `dir` or on `$PATH`; the name is checked.
fn helper_program(dir: Option<&Path>, helper: &str, registry: &str) -> Result<PathBuf> {
    if helper.is_empty()
        || !helper
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
    {
        return Err(Error::Credentials {
            registry: registry.to_owned(),
            reason: format!("invalid credential helper name {helper:?}"),
        });
    }
    let program = format!("docker-credential-{helper}");
    Ok(match dir {
        Some(d) => d.join(&program),
        None => PathBuf::from(program),
    })
}

/// The server URL a helper is asked about (docker's key for Docker Hub).
fn server_url(registry: &str) -> String {
    if normalize_key(registry) == "docker.io" {
        DOCKER_HUB_CONFIG_KEY.to_owned()
    } else {
        registry.to_owned()
    }
}

/// Runs `program verb` with `input` on its stdin (60 s at most); its output, whatever its
/// exit status.
async fn call_helper(
    program: &Path,
    verb: &str,
    input: &[u8],
    registry: &str,
) -> Result<std::process::Output> {
    let fail = |reason: String| Error::Credentials {
        registry: registry.to_owned(),
        reason,
    };
    let mut child = tokio::process::Command::new(program)
        .arg(verb)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", program.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        match stdin.write_all(input).await {
            Ok(()) => {}
            // A helper that ends without reading its input (an `erase` with nothing to
            // look up) is judged by its exit status, not by the pipe it closed.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => return Err(fail(format!("writing to {}: {e}", program.display()))),
        }
    }
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .map_err(|_| fail(format!("{} timed out", program.display())))?
        .map_err(|e| fail(format!("waiting for {}: {e}", program.display())))
}

/// Where [`save_login`] put a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoredIn {
    /// In the `auths` of this `config.json`.
    ConfigFile(PathBuf),
    /// With this credential helper (`credsStore` or the registry's `credHelpers` entry).
    Helper(String),
}

/// The docker config directory: `$DOCKER_CONFIG`, else `$HOME/.docker`.
pub fn docker_config_dir() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
}

fn read_config_value(path: &Path) -> Result<serde_json::Value> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Credentials {
            registry: "*".into(),
            reason: format!("{} is not JSON: {e}", path.display()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
        Err(source) => Err(Error::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes `config.json` into `dir` (made 0700 when missing) through a 0600 temporary file
/// and a rename; every field it does not know is kept.
fn write_config_value(dir: &Path, config: &serde_json::Value) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    let path = dir.join("config.json");
    let tmp = dir.join(".config.json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    let bytes = serde_json::to_vec_pretty(config).map_err(|e| Error::Credentials {
        registry: "*".into(),
        reason: e.to_string(),
    })?;
    f.write_all(&bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(path)
}

/// The config's key for `registry` (docker's for Docker Hub) and the helper configured for
/// it (its `credHelpers` entry, else `credsStore`).
fn login_target(config: &serde_json::Value, registry: &str) -> (String, Option<String>) {
    let key = server_url(registry);
    let norm = normalize_key(registry);
    let helper = config
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|h| {
            h.iter()
                .find(|(k, _)| normalize_key(k) == norm)
                .and_then(|(_, v)| v.as_str().map(str::to_owned))
        })
        .or_else(|| {
            config
                .get("credsStore")
                .and_then(|s| s.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        });
    (key, helper)
}

/// `docker login`'s storing half: the credential goes to the credential helper that the
/// config in `dir` names for `registry` (`docker-credential-X store`, looked for in
/// `helper_dir` or on `$PATH`), else into its `auths` as base64 `user:password`.
pub async fn save_login(
    dir: &Path,
    registry: &str,
    username: &str,
    password: &str,
    helper_dir: Option<&Path>,
) -> Result<StoredIn> {
    let path = dir.join("config.json");
    let mut config = read_config_value(&path)?;
    if !config.is_object() {
        config = serde_json::json!({});
    }
    let (key, helper) = login_target(&config, registry);
    if !config.get("auths").is_some_and(|a| a.is_object()) {
        config["auths"] = serde_json::json!({});
    }
    if let Some(h) = helper {
        let program = helper_program(helper_dir, &h, registry)?;
        let input = serde_json::json!({"ServerURL": key, "Username": username, "Secret": password});
        let out = call_helper(&program, "store", input.to_string().as_bytes(), registry).await?;
        if !out.status.success() {
            return Err(Error::Credentials {
                registry: registry.to_owned(),
                reason: format!(
                    "{} store failed with {}: {}",
                    program.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        // As docker does: an empty entry says the helper has it; no secret in the file.
        config["auths"][&key] = serde_json::json!({});
        write_config_value(dir, &config)?;
        return Ok(StoredIn::Helper(h));
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    config["auths"][&key] = serde_json::json!({ "auth": auth });
    Ok(StoredIn::ConfigFile(write_config_value(dir, &config)?))
}

/// `docker logout`: removes what [`save_login`] stored for `registry` (from its helper
/// with `erase`, and from `auths`). False when nothing was stored.
pub async fn remove_login(dir: &Path, registry: &str, helper_dir: Option<&Path>) -> Result<bool> {
    let path = dir.join("config.json");
    let mut config = read_config_value(&path)?;
    let (key, helper) = login_target(&config, registry);
    let norm = normalize_key(registry);
    let mut removed = false;
    if let Some(auths) = config.get_mut("auths").and_then(|a| a.as_object_mut()) {
        let keys: Vec<String> = auths
            .keys()
            .filter(|k| normalize_key(k) == norm)
            .cloned()
            .collect();
        for k in keys {
            auths.remove(&k);
            removed = true;
        }
    }
    if let Some(h) = helper {
        let program = helper_program(helper_dir, &h, registry)?;
        let out = call_helper(&program, "erase", key.as_bytes(), registry).await?;
        removed |= out.status.success();
    }
    if removed {
        write_config_value(dir, &config)?;
    }
    Ok(removed)
}

#[async_trait]
impl CredentialProvider for DockerConfig {
    async fn credential(&self, registry: &str) -> Result<Credential> {
        let key = normalize_key(registry);
        if let Some(helper) = self.cred_helpers.get(&key) {
            return self.run_helper(helper, registry).await;
        }
        if let Some(entry) = self.auths.get(&key) {
            if let Some(c) = Self::from_entry(registry, entry)? {
                return Ok(c);
            }
        }
        if let Some(store) = &self.creds_store {
            return self.run_helper(store, registry).await;
        }
        Ok(Credential::Anonymous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn auths_in_every_form() {
        let json = br#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"dXNlcjpwYTpzcw=="},
            "localhost:5000":{"username":"u","password":"p"},
            "http://ghcr.io/v2/":{"identitytoken":"refresh-me"},
            "empty.example":{}
        }}"#;
        let c = DockerConfig::from_json(json).unwrap();
        assert_eq!(
            c.credential("docker.io").await.unwrap(),
            Credential::basic("user", "pa:ss")
        );
        assert_eq!(
            c.credential("registry-1.docker.io").await.unwrap(),
            Credential::basic("user", "pa:ss")
        );
        assert_eq!(
            c.credential("localhost:5000").await.unwrap(),
            Credential::basic("u", "p")
        );
        assert_eq!(
            c.credential("ghcr.io").await.unwrap(),
            Credential::IdentityToken("refresh-me".into())
        );
        assert!(c.credential("empty.example").await.unwrap().is_anonymous());
        assert!(c.credential("other.example").await.unwrap().is_anonymous());
    }

    #[test]
    fn debug_redacts_secrets() {
        let s = format!(
            "{:?} {:?} {:?}",
            Credential::basic("alice", "hunter2"),
            Credential::IdentityToken("tok-secret".into()),
            DockerConfig::from_json(br#"{"auths":{"a":{"auth":"YTpzZWNyZXQ="}}}"#).unwrap()
        );
        assert!(s.contains("alice"));
        assert!(!s.contains("hunter2") && !s.contains("tok-secret") && !s.contains("YTpz"));
    }

    #[test]
    fn refuses_bad_auth_field() {
        let c = DockerConfig::from_json(br#"{"auths":{"r":{"auth":"!!!"}}}"#).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(rt.block_on(c.credential("r")).is_err());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn credential_helpers_protocol() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // A helper that checks it got `get` and the server URL on stdin.
        let script = r#"#!/bin/sh
[ "$1" = get ] || exit 3
read url
case "$url" in
  https://index.docker.io/v1/) echo '{"ServerURL":"x","Username":"hub","Secret":"s1"}' ;;
  tok.example) echo '{"ServerURL":"x","Username":"<token>","Secret":"idt"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"#;
        let p = dir.path().join("docker-credential-test");
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bad = dir.path().join("docker-credential-broken");
        std::fs::write(&bad, "#!/bin/sh\necho oops; exit 2\n").unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755)).unwrap();
        let c = DockerConfig::from_json(
            br#"{"credsStore":"test","credHelpers":{"broken.example":"broken"}}"#,
        )
        .unwrap()
        .with_helper_dir(dir.path());
        assert_eq!(
            c.credential("docker.io").await.unwrap(),
            Credential::basic("hub", "s1")
        );
        assert_eq!(
            c.credential("tok.example").await.unwrap(),
            Credential::IdentityToken("idt".into())
        );
        assert!(c
            .credential("nothing.example")
            .await
            .unwrap()
            .is_anonymous());
        let err = c.credential("broken.example").await.unwrap_err();
        assert!(matches!(err, Error::Credentials { .. }), "{err}");
    }
}

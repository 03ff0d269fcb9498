//! The one error type of this crate.

use std::fmt;
use std::path::PathBuf;

/// One entry of a distribution-spec error body (`{"errors":[{"code":..,"message":..,"detail":..}]}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct RegistryErrorEntry {
    /// The error code (`MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, `DENIED`, ...).
    #[serde(default)]
    pub code: String,
    /// The message the registry gave.
    #[serde(default)]
    pub message: String,
    /// Free-form detail, kept as JSON.
    #[serde(default)]
    pub detail: Option<serde_json::Value>,
}

impl fmt::Display for RegistryErrorEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// Formats the registry error list for the `Registry` variant's message.
struct Codes<'a>(&'a [RegistryErrorEntry]);

impl fmt::Display for Codes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no error body");
        }
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong talking to a registry.
///
/// URLs in errors never carry credentials or tokens: the client never puts secrets in URLs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The registry answered with an error status; `errors` is its distribution-spec body.
    #[error("registry answered {status} for {url}: {}", Codes(errors))]
    Registry {
        /// The HTTP status.
        status: u16,
        /// The URL asked for.
        url: String,
        /// The parsed error body (empty when there was none or it was not JSON).
        errors: Vec<RegistryErrorEntry>,
    },
    /// The request could not be sent or its answer not read (connection, TLS, timeout).
    #[error("transport error for {url}")]
    Transport {
        /// The URL asked for.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// A TLS connection was answered in plain HTTP: the registry speaks HTTP only (mark it
    /// insecure to use it).
    #[error("server gave an HTTP response to an HTTPS client at {url}: the registry speaks plain HTTP (mark it insecure to use it)")]
    PlainHttpServer {
        /// The URL asked for.
        url: String,
    },
    /// rustls has no crypto provider: the `ring` and `aws-lc-rs` features are off and the
    /// program installed none.
    #[cfg(feature = "rustls")]
    #[error("no rustls crypto provider: enable the `ring` or `aws-lc-rs` feature of oci-rs-registry-client, or call rustls::crypto::CryptoProvider::install_default before building a client")]
    NoCryptoProvider,
    /// The registry refused our credentials or gave no way to authenticate.
    #[error("unauthorized at {url}: {reason}")]
    Unauthorized {
        /// The URL asked for.
        url: String,
        /// Why authentication failed.
        reason: String,
    },
    /// A `WWW-Authenticate` header could not be parsed.
    #[error("invalid WWW-Authenticate challenge {header:?}: {reason}")]
    InvalidChallenge {
        /// The header value.
        header: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A token server answered with something unusable.
    #[error("token request to {realm} failed: {reason}")]
    Token {
        /// The token realm.
        realm: String,
        /// What went wrong.
        reason: String,
    },
    /// A URL was refused: one from the registry (token realm, `Location`, `Link`,
    /// redirect), or a pull-through upstream given to the server.
    #[error("refused URL {url:?}: {reason}")]
    RefusedUrl {
        /// The URL.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// An answer was larger than we accept for something read into memory.
    #[error("answer from {url} exceeds the {limit} byte limit")]
    TooLarge {
        /// The URL asked for.
        url: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The registry's answer does not follow the distribution spec.
    #[error("invalid answer from {url}: {reason}")]
    InvalidResponse {
        /// The URL asked for.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A registry or repository name is not valid.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// Credentials could not be obtained (config file, credential helper).
    #[error("credentials for {registry}: {reason}")]
    Credentials {
        /// The registry they were wanted for.
        registry: String,
        /// What went wrong.
        reason: String,
    },
    /// A file (docker config) could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A registry configuration file (`registries.conf`, `daemon.json`) does not read.
    #[error("registry configuration {origin}: {reason}")]
    Config {
        /// The file.
        origin: String,
        /// What is wrong in it.
        reason: String,
    },
    /// The configuration blocks this registry, or the namespace of the repository asked for.
    #[error("{registry} is blocked by the registry configuration")]
    Blocked {
        /// The registry, or the blocked prefix (`docker.io/evil`, `*.example.com`).
        registry: String,
    },
    /// An image-level error: digest or size mismatch, invalid manifest, stream error.
    #[error(transparent)]
    Image(#[from] oci_rs_image::Error),
}

/// What kind of failure an [`Error`] is, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The manifest, blob, tag or repository does not exist.
    NotFound,
    /// Authentication failed or was refused (401), or access denied (403).
    Unauthorized,
    /// Content did not match its digest or size.
    Integrity,
    /// The network failed, or the registry had a temporary problem (408, 429, 5xx).
    Transient,
    /// The registry answered outside the spec, or with a URL or size we refuse.
    Protocol,
    /// A name, reference or credential configuration given to us is invalid.
    InvalidInput,
    /// Anything else the registry refused (other 4xx).
    Rejected,
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        if self.is_not_found() {
            return ErrorKind::NotFound;
        }
        if self.is_integrity() {
            return ErrorKind::Integrity;
        }
        if self.can_retry() {
            return ErrorKind::Transient;
        }
        match self {
            Error::Unauthorized { .. } | Error::Token { .. } => ErrorKind::Unauthorized,
            Error::Registry {
                status: 401 | 403, ..
            } => ErrorKind::Unauthorized,
            Error::Registry { .. } => ErrorKind::Rejected,
            Error::InvalidName { .. }
            | Error::Credentials { .. }
            | Error::Io { .. }
            | Error::Config { .. }
            | Error::Blocked { .. } => ErrorKind::InvalidInput,
            _ => ErrorKind::Protocol,
        }
    }

    /// The HTTP status of a registry error, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Registry { status, .. } => Some(*status),
            Error::Transport { source, .. } => source.status().map(|s| s.as_u16()),
            _ => None,
        }
    }

    /// True when the registry said the object does not exist (404, or a `*_UNKNOWN` code).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Registry { status, errors, .. } => {
                *status == 404
                    || errors.iter().any(|e| {
                        matches!(
                            e.code.as_str(),
                            "MANIFEST_UNKNOWN" | "BLOB_UNKNOWN" | "NAME_UNKNOWN"
                        )
                    })
            }
            Error::Image(e) => e.is_not_found(),
            _ => false,
        }
    }

    /// True when trying the same request again may succeed: connection errors, timeouts,
    /// 408, 429 and 5xx. Never for other 4xx.
    pub fn can_retry(&self) -> bool {
        match self {
            Error::Registry { status, .. } => retryable_status(*status),
            Error::Transport { source, .. } => {
                source.is_connect()
                    || source.is_timeout()
                    || source.is_request()
                    || source.is_body()
                    || source
                        .status()
                        .is_some_and(|s| retryable_status(s.as_u16()))
            }
            Error::Image(oci_rs_image::Error::Stream(_)) => true,
            _ => false,
        }
    }

    /// True when content did not match its digest or size.
    pub fn is_integrity(&self) -> bool {
        matches!(self, Error::Image(e) if e.is_integrity())
    }

    /// The registry error codes (`MANIFEST_UNKNOWN`, ...), empty for other errors.
    pub fn codes(&self) -> Vec<&str> {
        match self {
            Error::Registry { errors, .. } => errors.iter().map(|e| e.code.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    /// Converts into the image crate's error for the transfer traits: image errors come back
    /// as they were (so `is_integrity` still works), others are wrapped.
    pub fn into_image(self) -> oci_rs_image::Error {
        match self {
            Error::Image(e) => e,
            other if other.is_not_found() => oci_rs_image::Error::foreign_not_found(other),
            other if other.can_retry() => oci_rs_image::Error::foreign_transient(other),
            other => oci_rs_image::Error::foreign(other),
        }
    }

    pub(crate) fn transport(url: &reqwest::Url, source: reqwest::Error) -> Self {
        if url.scheme() == "https" && plain_http_reply(&source) {
            return Error::PlainHttpServer { url: redact(url) };
        }
        Error::Transport {
            url: redact(url),
            source: source.without_url(),
        }
    }

    pub(crate) fn invalid(url: &reqwest::Url, reason: impl Into<String>) -> Self {
        Error::InvalidResponse {
            url: redact(url),
            reason: reason.into(),
        }
    }
}

/// Whether a TLS handshake failed because the server answered in plain HTTP: rustls reads
/// the bytes of an HTTP status line as a record of an invalid content type, OpenSSL as a
/// record of a wrong version.
fn plain_http_reply(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if text.contains("InvalidContentType") || text.contains("wrong version number") {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A URL as errors and logs show it: without user info, query or fragment (pre-signed
/// storage URLs and upload states carry secrets there).
pub(crate) fn redact(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        u.set_query(Some("redacted"));
    }
    u.set_fragment(None);
    u.to_string()
}

/// Statuses worth another try: 408, 429 and every 5xx.
pub(crate) fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// Parses a distribution-spec error body; anything else gives an empty list.
pub(crate) fn parse_error_body(body: &[u8]) -> Vec<RegistryErrorEntry> {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Option<Vec<RegistryErrorEntry>>,
    }
    serde_json::from_slice::<Body>(body)
        .ok()
        .and_then(|b| b.errors)
        .unwrap_or_default()
}

pub(crate) use oci_rs_image::chain;

#[cfg(test)]
mod tests {
    #[test]
    fn a_registry_404_is_not_found_through_the_image_error_and_reads_once() {
        let e = super::Error::Registry {
            status: 404,
            url: "http://r/v2/x/manifests/1".into(),
            errors: Vec::new(),
        };
        let text = e.to_string();
        let img = e.into_image();
        assert!(img.is_not_found(), "{img}");
        let whole = super::chain(&img);
        assert_eq!(whole.matches(&text).count(), 1, "{whole}");
    }

    use super::*;

    #[test]
    fn parses_spec_error_body() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        let errors = parse_error_body(body);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].code, "MANIFEST_UNKNOWN");
        let e = Error::Registry {
            status: 404,
            url: "http://r/v2/a/manifests/x".into(),
            errors,
        };
        assert!(e.is_not_found());
        assert!(!e.can_retry());
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let denied = Error::Registry {
            status: 403,
            url: String::new(),
            errors: Vec::new(),
        };
        assert_eq!(denied.kind(), ErrorKind::Unauthorized);
        let busy = Error::Registry {
            status: 503,
            url: String::new(),
            errors: Vec::new(),
        };
        assert_eq!(busy.kind(), ErrorKind::Transient);
        assert!(e.to_string().contains("MANIFEST_UNKNOWN: manifest unknown"));
    }

    #[test]
    fn garbage_error_body_is_empty() {
        assert!(parse_error_body(b"<html>").is_empty());
        assert!(parse_error_body(br#"{"errors":null}"#).is_empty());
    }

    #[test]
    fn urls_in_errors_lose_their_secrets() {
        let u =
            reqwest::Url::parse("https://user:pw@s3.example/blob?X-Amz-Signature=abc#f").unwrap();
        let shown = redact(&u);
        assert_eq!(shown, "https://s3.example/blob?redacted");
    }

    #[test]
    fn retry_classification() {
        for s in [408, 429, 500, 502, 503] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 405, 416] {
            assert!(!retryable_status(s), "{s}");
        }
    }
}

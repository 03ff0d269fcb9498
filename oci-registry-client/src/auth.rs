//! The authentication state per registry origin: the last challenge, cached tokens per scope
//! set, and the token requests themselves (GET with basic auth, or the OAuth2 POST with an
//! identity token).

use crate::body::read_capped;
use crate::challenge::AuthChallenge;
use crate::credentials::Credential;
use crate::error::{Error, Result};
use reqwest::Url;
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// The largest token answer we read.
pub const MAX_TOKEN_ANSWER: u64 = 1024 * 1024;

/// A scope string such as `repository:a/b:pull,push` or `registry:catalog:*`.
pub(crate) fn repo_scope(name: &str, actions: &str) -> String {
    format!("repository:{name}:{actions}")
}

/// The scope set, normalised: the actions per resource merged and sorted, so that
/// `repository:a:push` + `repository:a:pull` is `repository:a:pull,push`.
pub(crate) fn normalize_scopes(scopes: &[String]) -> Vec<String> {
    let mut by_resource: Vec<(String, Vec<String>)> = Vec::new();
    for s in scopes
        .iter()
        .flat_map(|s| s.split(' '))
        .filter(|s| !s.is_empty())
    {
        let (resource, actions) = match s.rsplit_once(':') {
            Some((r, a)) => (r.to_owned(), a),
            None => (s.to_owned(), ""),
        };
        let entry = match by_resource.iter_mut().find(|(r, _)| *r == resource) {
            Some(e) => e,
            None => {
                by_resource.push((resource, Vec::new()));
                let last = by_resource.len() - 1;
                &mut by_resource[last]
            }
        };
        for a in actions.split(',').filter(|a| !a.is_empty()) {
            if !entry.1.iter().any(|x| x == a) {
                entry.1.push(a.to_owned());
            }
        }
    }
    let mut out: Vec<String> = by_resource
        .into_iter()
        .map(|(r, mut a)| {
            a.sort();
            format!("{r}:{}", a.join(","))
        })
        .collect();
    out.sort();
    out
}

/// A bearer token. `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct Token {
    pub(crate) value: String,
    pub(crate) expires: Instant,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

/// What we know about one registry origin.
#[derive(Debug, Default)]
pub(crate) struct AuthState {
    /// The challenge last seen; `None` until a 401 or a ping told us.
    pub(crate) challenge: Option<AuthChallenge>,
    /// True once we know the origin needs no auth (a ping answered 200).
    pub(crate) open: bool,
    /// Tokens per normalised scope set.
    pub(crate) tokens: HashMap<String, Token>,
}

impl AuthState {
    pub(crate) fn token_for(&self, key: &str) -> Option<&Token> {
        self.tokens.get(key).filter(|t| t.expires > Instant::now())
    }
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Checks a realm from a challenge: http(s) only, and no plain HTTP realm for a registry
/// reached over HTTPS (credentials would travel in clear).
pub(crate) fn check_realm(realm: &str, registry_url: &Url) -> Result<Url> {
    let refuse = |reason: &str| Error::RefusedUrl {
        url: realm.chars().take(200).collect(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(realm).map_err(|_| refuse("token realm is not an absolute URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if registry_url.scheme() == "http" => {}
        "http" => return Err(refuse("plain-HTTP token realm for an HTTPS registry")),
        _ => return Err(refuse("token realm is not http(s)")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("token realm carries credentials"));
    }
    Ok(url)
}

/// Asks a token server for a token covering `scopes`.
pub(crate) async fn fetch_token(
    http: &reqwest::Client,
    deadline: std::time::Duration,
    realm: &Url,
    service: Option<&str>,
    scopes: &[String],
    credential: &Credential,
) -> Result<Token> {
    let realm_str = realm.to_string();
    let fail = |reason: String| Error::Token {
        realm: realm_str.clone(),
        reason,
    };
    let request = match credential {
        Credential::IdentityToken(refresh) => {
            let mut form: Vec<(&str, String)> = vec![
                ("grant_type", "refresh_token".into()),
                ("refresh_token", refresh.clone()),
                ("client_id", "oci-registry-client".into()),
            ];
            if let Some(s) = service {
                form.push(("service", s.to_owned()));
            }
            if !scopes.is_empty() {
                form.push(("scope", scopes.join(" ")));
            }
            http.post(realm.clone()).form(&form)
        }
        other => {
            let mut url = realm.clone();
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = service {
                    q.append_pair("service", s);
                }
                for s in scopes {
                    q.append_pair("scope", s);
                }
            }
            let rb = http.get(url);
            match other.basic_header() {
                Some(h) => rb.header(reqwest::header::AUTHORIZATION, h),
                None => rb,
            }
        }
    };
    let resp = request
        .timeout(deadline)
        .send()
        .await
        .map_err(|e| fail(format!("request failed: {}", e.without_url())))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(if status.as_u16() == 401 || status.as_u16() == 403 {
            Error::Unauthorized {
                url: realm_str.clone(),
                reason: format!("token server refused the credentials ({status})"),
            }
        } else {
            fail(format!("token server answered {status}"))
        });
    }
    let body = read_capped(resp, MAX_TOKEN_ANSWER).await?;
    let answer: TokenAnswer =
        serde_json::from_slice(&body).map_err(|e| fail(format!("invalid token JSON: {e}")))?;
    let value = answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| fail("answer has no token".into()))?;
    if !value.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(fail(
            "token contains characters not allowed in a header".into(),
        ));
    }
    // The spec's default lifetime is 60 seconds; refresh a little before expiry.
    let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60).clamp(1, 86_400));
    let expires = Instant::now() + lifetime.mul_f64(0.9);
    Ok(Token { value, expires })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_merge_for_push_and_mount() {
        let s = normalize_scopes(&[
            repo_scope("a", "push"),
            repo_scope("b", "pull"),
            repo_scope("a", "pull"),
            "repository:a:pull".into(),
        ]);
        assert_eq!(s, vec!["repository:a:pull,push", "repository:b:pull"]);
        let s = normalize_scopes(&["registry:catalog:*".into()]);
        assert_eq!(s, vec!["registry:catalog:*"]);
    }

    #[test]
    fn realm_checks() {
        let https = Url::parse("https://r.example/").unwrap();
        let http = Url::parse("http://127.0.0.1:5000/").unwrap();
        assert!(check_realm("https://auth.example/token", &https).is_ok());
        assert!(check_realm("http://auth.example/token", &https).is_err());
        assert!(check_realm("http://127.0.0.1:9/token", &http).is_ok());
        for bad in [
            "file:///etc/passwd",
            "ftp://x/",
            "/relative",
            "https://u:p@x/",
        ] {
            let e = check_realm(bad, &http).unwrap_err();
            assert!(matches!(e, Error::RefusedUrl { .. }), "{bad}");
        }
    }

    #[test]
    fn token_debug_is_redacted() {
        let t = Token {
            value: "secret-token".into(),
            expires: Instant::now(),
        };
        assert!(!format!("{t:?}").contains("secret-token"));
    }
}

//! Who may pull, push or delete where: users from an htpasswd file (bcrypt), an access
//! policy of rules per repository pattern, and either HTTP basic auth or docker's bearer
//! token flow (a token endpoint issuing short-lived scoped tokens, HS256 JWTs).

use base64::Engine;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a request may do in a repository.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Read manifests, blobs, tags and referrers.
    Pull,
    /// Upload blobs and manifests, mount blobs in.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            // docker's "*" is everything.
            _ => None,
        }
    }
}

/// Why an access configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A token key file shorter than a key.
    #[error("{path}: a token key is 32 bytes or more")]
    ShortKey {
        /// The file.
        path: std::path::PathBuf,
    },
    /// A line of an htpasswd file is not `user:bcrypt-hash`.
    #[error(
        "{path} line {line}: not `user:$2y$...` (only bcrypt hashes are accepted: htpasswd -B)"
    )]
    Htpasswd {
        /// The file.
        path: std::path::PathBuf,
        /// The line number.
        line: usize,
    },
    /// The policy file is not the JSON this module reads.
    #[error("{path} is not an access policy")]
    Policy {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Users and their bcrypt password hashes.
#[derive(Clone, Default)]
pub struct Users {
    hashes: HashMap<String, String>,
    /// A real hash of nothing anyone knows, at the file's cost: what an unknown user's
    /// password is checked against, so that timing does not tell which users exist.
    dummy: String,
    /// The sha256 of each user's password last verified: a client that sends its basic
    /// credentials with every request pays bcrypt once.
    verified: std::sync::Arc<std::sync::Mutex<HashMap<String, [u8; 32]>>>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: hashes stay out of logs.
        f.debug_struct("Users")
            .field("names", &self.hashes.keys().collect::<BTreeSet<_>>())
            .finish()
    }
}

impl Users {
    /// Reads an htpasswd file of bcrypt entries (`htpasswd -B`), as CNCF distribution does.
    pub fn load_htpasswd(path: &Path) -> Result<Self, AuthConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut hashes: HashMap<String, String> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some((user, hash))
                    if !user.is_empty()
                        && ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) =>
                {
                    hashes.insert(user.to_owned(), hash.to_owned());
                }
                _ => {
                    return Err(AuthConfigError::Htpasswd {
                        path: path.to_path_buf(),
                        line: i + 1,
                    })
                }
            }
        }
        // The cost of the file's first entry (`$2y$05$...`), else bcrypt's default.
        let cost = hashes
            .values()
            .next()
            .and_then(|h| h.get(4..6))
            .and_then(|c| c.parse().ok())
            .unwrap_or(bcrypt::DEFAULT_COST);
        let mut secret = [0u8; 16];
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            let _ = std::io::Read::read_exact(&mut f, &mut secret);
        }
        let dummy = bcrypt::hash(secret, cost).unwrap_or_default();
        Ok(Self {
            hashes,
            dummy,
            verified: Default::default(),
        })
    }

    /// [`check`](Self::check) answered from the cache of verified passwords, without
    /// bcrypt; `None` when the cache cannot say.
    pub fn check_cached(&self, user: &str, password: &str) -> Option<bool> {
        let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        let cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(user).filter(|d| **d == digest).map(|_| true)
    }

    /// Whether `password` is `user`'s. An unknown user costs a bcrypt check too, so that
    /// timing does not tell which users exist.
    pub fn check(&self, user: &str, password: &str) -> bool {
        if self.check_cached(user, password) == Some(true) {
            return true;
        }
        let ok = match self.hashes.get(user) {
            Some(h) => bcrypt::verify(password, h).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(password, &self.dummy);
                false
            }
        };
        if ok {
            let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
            let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            // Bounded: one entry per user of the file.
            cache.insert(user.to_owned(), digest);
        }
        ok
    }
}

/// One rule of an [`AccessPolicy`]: these principals may do these actions in the
/// repositories matching `repositories`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccessRule {
    /// A repository name, or a pattern ending in `*` (`team/*`, `*`).
    pub repositories: String,
    /// User names, `group:NAME`, `*` (any authenticated user) or `anonymous` (anyone,
    /// known or not).
    pub principals: Vec<String>,
    /// What they may do.
    pub actions: Vec<Action>,
}

/// Who may do what where: the union of the rules that match.
///
/// As JSON (`oci registry serve --access FILE`):
///
/// ```json
/// { "groups": { "ci": ["robot", "builder"] },
///   "rules": [
///     { "repositories": "*", "principals": ["*"], "actions": ["pull"] },
///     { "repositories": "team/*", "principals": ["group:ci", "alice"], "actions": ["pull", "push"] },
///     { "repositories": "public/*", "principals": ["anonymous"], "actions": ["pull"] } ] }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccessPolicy {
    /// Groups and their members.
    #[serde(default)]
    pub groups: HashMap<String, Vec<String>>,
    /// The rules.
    #[serde(default)]
    pub rules: Vec<AccessRule>,
}

impl AccessPolicy {
    /// Every authenticated user may pull, push and delete everywhere; anonymous requests
    /// nothing (CNCF distribution's htpasswd behaviour).
    pub fn authenticated_all() -> Self {
        Self {
            groups: HashMap::new(),
            rules: vec![AccessRule {
                repositories: "*".into(),
                principals: vec!["*".into()],
                actions: vec![Action::Pull, Action::Push, Action::Delete],
            }],
        }
    }

    /// Reads a policy from a JSON file.
    pub fn load(path: &Path) -> Result<Self, AuthConfigError> {
        let bytes = std::fs::read(path).map_err(|source| AuthConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| AuthConfigError::Policy {
            path: path.to_path_buf(),
            source,
        })
    }

    /// What `user` (`None`: anonymous) may do in `repository`.
    pub fn granted(&self, user: Option<&str>, repository: &str) -> BTreeSet<Action> {
        let mut out = BTreeSet::new();
        for rule in &self.rules {
            let matches_repo = match rule.repositories.strip_suffix('*') {
                Some(prefix) => repository.starts_with(prefix),
                None => rule.repositories == repository,
            };
            if !matches_repo {
                continue;
            }
            let applies = rule.principals.iter().any(|p| match (p.as_str(), user) {
                // What anyone may do, a known user may do too.
                ("anonymous", _) => true,
                ("*", Some(_)) => true,
                (p, Some(u)) => match p.strip_prefix("group:") {
                    Some(g) => self.groups.get(g).is_some_and(|m| m.iter().any(|x| x == u)),
                    None => p == u,
                },
                _ => false,
            });
            if applies {
                out.extend(rule.actions.iter().copied());
            }
        }
        out
    }
}

/// How requests are authenticated.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    /// Everyone may do everything (a registry on loopback, a test).
    #[default]
    Open,
    /// HTTP basic auth against `users`, then `policy`.
    Basic {
        /// The users.
        users: Users,
        /// What they may do.
        policy: AccessPolicy,
    },
    /// docker's token flow: `/token` checks basic credentials (or none, for anonymous
    /// grants), and issues a token for the scopes asked that `policy` grants; the registry
    /// answers requests with a valid token for their scope.
    Token(TokenAuth),
}

/// The token flow's settings.
#[derive(Clone)]
pub struct TokenAuth {
    /// The users.
    pub users: Users,
    /// What they may do.
    pub policy: AccessPolicy,
    /// The service name the tokens are for (`aud`), as clients send it back.
    pub service: String,
    /// How long a token is valid.
    pub lifetime: Duration,
    /// The token endpoint's URL as clients reach it (default: this server's `/token`, by
    /// the request's `Host`).
    pub realm: Option<String>,
    key: [u8; 32],
}

impl std::fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuth")
            .field("users", &self.users)
            .field("service", &self.service)
            .field("lifetime", &self.lifetime)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

impl TokenAuth {
    /// Token auth with a signing key of its own (random: tokens end with the process; give
    /// replicas one key with [`TokenAuth::with_key`]), service `oci-rs-registry`, five
    /// minutes per token.
    pub fn new(users: Users, policy: AccessPolicy) -> std::io::Result<Self> {
        let mut key = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut key)?;
        Ok(Self {
            users,
            policy,
            service: "oci-rs-registry".into(),
            lifetime: Duration::from_secs(300),
            realm: None,
            key,
        })
    }

    /// The signing key (shared by replicas behind one name).
    pub fn with_key(mut self, key: [u8; 32]) -> Self {
        self.key = key;
        self
    }

    /// [`TokenAuth::with_key`] of the first 32 bytes of the file `path` (make one with
    /// `head -c 32 /dev/urandom`): replicas given the same file accept each other's tokens.
    pub fn with_key_file(self, path: &Path) -> Result<Self, AuthConfigError> {
        let bytes = std::fs::read(path).map_err(|source| AuthConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let key: [u8; 32] = bytes
            .get(..32)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| AuthConfigError::ShortKey {
                path: path.to_path_buf(),
            })?;
        Ok(self.with_key(key))
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.key, data)
    }

    /// A signed token granting `access` (repository → actions) to `subject`.
    pub(crate) fn issue(
        &self,
        subject: &str,
        access: &[(String, BTreeSet<Action>)],
    ) -> (String, u64) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let access: Vec<serde_json::Value> = access
            .iter()
            .map(|(name, actions)| {
                serde_json::json!({
                    "type": "repository",
                    "name": name,
                    "actions": actions.iter().map(|a| a.name()).collect::<Vec<_>>(),
                })
            })
            .collect();
        let claims = serde_json::json!({
            "iss": self.service,
            "sub": subject,
            "aud": self.service,
            "iat": now,
            "nbf": now.saturating_sub(10),
            "exp": now + self.lifetime.as_secs(),
            "access": access,
        });
        let payload = b64.encode(claims.to_string());
        let signing = format!("{header}.{payload}");
        let sig = b64.encode(self.mac(signing.as_bytes()));
        (format!("{signing}.{sig}"), now)
    }

    /// The grants of a token, when its signature, audience and times check out.
    pub(crate) fn verify(&self, token: &str) -> Option<Grants> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (signing, sig) = token.rsplit_once('.')?;
        let sig = b64.decode(sig).ok()?;
        let want = self.mac(signing.as_bytes());
        // Constant time: every byte compared.
        if sig.len() != want.len()
            || sig
                .iter()
                .zip(want.iter())
                .fold(0u8, |a, (x, y)| a | (x ^ y))
                != 0
        {
            return None;
        }
        let (header, payload) = signing.split_once('.')?;
        let header: serde_json::Value = serde_json::from_slice(&b64.decode(header).ok()?).ok()?;
        if header["alg"] != "HS256" {
            return None;
        }
        let claims: serde_json::Value = serde_json::from_slice(&b64.decode(payload).ok()?).ok()?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        if claims["aud"] != self.service.as_str()
            || claims["exp"].as_u64()? < now
            || claims["nbf"].as_u64().is_some_and(|nbf| nbf > now)
        {
            return None;
        }
        let mut repos = HashMap::new();
        for a in claims["access"].as_array()? {
            if a["type"] != "repository" {
                continue;
            }
            let name = a["name"].as_str()?.to_owned();
            let actions: BTreeSet<Action> = a["actions"]
                .as_array()?
                .iter()
                .filter_map(|x| x.as_str().and_then(Action::parse))
                .collect();
            repos
                .entry(name)
                .or_insert_with(BTreeSet::new)
                .extend(actions);
        }
        Some(Grants {
            subject: claims["sub"].as_str().unwrap_or("").to_owned(),
            repos,
        })
    }
}

/// What a verified token grants.
#[derive(Debug, Clone)]
pub(crate) struct Grants {
    pub subject: String,
    pub repos: HashMap<String, BTreeSet<Action>>,
}

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// A `scope` parameter of the token endpoint: `repository:NAME:ACTIONS`.
pub(crate) fn parse_scope(s: &str) -> Option<(String, BTreeSet<Action>)> {
    let rest = s.strip_prefix("repository:")?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions = actions
        .split(',')
        .flat_map(|a| {
            if a == "*" {
                vec![Action::Pull, Action::Push, Action::Delete]
            } else {
                Action::parse(a).into_iter().collect()
            }
        })
        .collect();
    Some((name.to_owned(), actions))
}

/// The user and password of a `Basic` authorization header.
pub(crate) fn basic_credentials(header: &str) -> Option<(String, String)> {
    let enc = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let dec = base64::engine::general_purpose::STANDARD
        .decode(enc.trim())
        .ok()?;
    let text = String::from_utf8(dec).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// The scope string of a repository and actions, as a challenge names it.
pub(crate) fn scope(repository: &str, actions: &BTreeSet<Action>) -> String {
    let names: Vec<&str> = actions.iter().map(|a| a.name()).collect();
    format!("repository:{repository}:{}", names.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tokens_verify_only_unchanged_unexpired_and_for_this_service() {
        let t = TokenAuth::new(Users::default(), AccessPolicy::default()).unwrap();
        let access = vec![("team/app".to_string(), BTreeSet::from([Action::Pull]))];
        let (token, _) = t.issue("alice", &access);
        let g = t.verify(&token).unwrap();
        assert_eq!(g.subject, "alice");
        assert_eq!(g.repos["team/app"], BTreeSet::from([Action::Pull]));
        // Another key, a changed payload, another service.
        let other = TokenAuth::new(Users::default(), AccessPolicy::default()).unwrap();
        assert!(other.verify(&token).is_none());
        let (h, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let forged = b64.encode(
            serde_json::json!({"aud": "oci-rs-registry", "exp": u64::MAX, "access": [{"type": "repository", "name": "team/app", "actions": ["push"]}]}).to_string(),
        );
        assert!(t.verify(&format!("{h}.{forged}.{sig}")).is_none());
        let mut elsewhere = t.clone();
        elsewhere.service = "elsewhere".into();
        assert!(elsewhere.verify(&token).is_none());
        let mut short = t.clone();
        short.lifetime = Duration::ZERO;
        let (old, _) = short.issue("alice", &access);
        std::thread::sleep(Duration::from_millis(1100));
        assert!(t.verify(&old).is_none(), "expired");
    }

    #[test]
    fn policies_union_their_matching_rules() {
        let p: AccessPolicy = serde_json::from_value(serde_json::json!({
            "groups": {"ci": ["robot"]},
            "rules": [
                {"repositories": "*", "principals": ["*"], "actions": ["pull"]},
                {"repositories": "team/*", "principals": ["group:ci", "alice"], "actions": ["push"]},
                {"repositories": "public/site", "principals": ["anonymous"], "actions": ["pull"]}
            ]
        }))
        .unwrap();
        use Action::*;
        assert_eq!(
            p.granted(Some("robot"), "team/x"),
            BTreeSet::from([Pull, Push])
        );
        assert_eq!(p.granted(Some("bob"), "team/x"), BTreeSet::from([Pull]));
        assert_eq!(p.granted(None, "team/x"), BTreeSet::new());
        assert_eq!(p.granted(None, "public/site"), BTreeSet::from([Pull]));
        assert_eq!(
            p.granted(Some("bob"), "public/site"),
            BTreeSet::from([Pull])
        );
        assert_eq!(p.granted(None, "public/site2"), BTreeSet::new());
        assert_eq!(
            parse_scope("repository:a/b:pull,push"),
            Some(("a/b".into(), BTreeSet::from([Pull, Push])))
        );
        assert_eq!(parse_scope("registry:catalog:*"), None);
    }
}

//! A token server for distribution's `auth: token`: it signs RS256 JWTs with a key and a
//! self-signed certificate that `openssl` generates at test time, and puts the certificate in
//! the `x5c` header so the registry can check it against its `rootcertbundle`.

use super::server::{serve, Request, Response, Server};
use base64::Engine;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub const SERVICE: &str = "test-registry";
pub const ISSUER: &str = "test-issuer";
pub const REFRESH_TOKEN: &str = "test-refresh-token";

pub struct TokenServer {
    pub server: Server,
    pub cert: PathBuf,
    pub dir: tempfile::TempDir,
}

impl TokenServer {
    pub fn realm(&self) -> String {
        format!("{}/token", self.server.url())
    }
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub fn have_openssl() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn sign(key: &PathBuf, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Starts the token server. `user`/`pass` get every action asked for; anonymous callers get
/// `pull` only; a bad password gets 401.
pub async fn start(user: &str, pass: &str) -> TokenServer {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let cert = dir.path().join("cert.pem");
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test-token-issuer",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "openssl req failed");
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(der.status.success());
    let x5c = base64::engine::general_purpose::STANDARD.encode(&der.stdout);
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    );
    let server = serve(move |r: &Request| {
        if r.path() != "/token" {
            return Response::new(404);
        }
        let (scopes, full) = if r.method == "POST" {
            let form: Vec<(String, String)> =
                reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(&r.body)))
                    .unwrap()
                    .query_pairs()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
            let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            if get("grant_type").as_deref() != Some("refresh_token")
                || get("refresh_token").as_deref() != Some(REFRESH_TOKEN)
            {
                return Response::new(401);
            }
            let scopes: Vec<String> = get("scope")
                .unwrap_or_default()
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            (scopes, true)
        } else {
            let full = match r.header("authorization") {
                Some(a) if a == good => true,
                Some(_) => return Response::new(401),
                None => false,
            };
            let u = reqwest::Url::parse(&format!("http://x{}", r.uri)).unwrap();
            let scopes: Vec<String> = u
                .query_pairs()
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v.into_owned())
                .collect();
            (scopes, full)
        };
        let mut access = Vec::new();
        for s in scopes.iter().flat_map(|s| s.split(' ')) {
            let mut parts = s.splitn(3, ':');
            let (Some(t), Some(n), Some(a)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let actions: Vec<&str> = a.split(',').filter(|a| full || *a == "pull").collect();
            access.push(serde_json::json!({"type": t, "name": n, "actions": actions}));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": if full { "user" } else { "" }, "aud": SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{}", fastrand::u64(..)),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            b64url(&serde_json::to_vec(&header).unwrap()),
            b64url(&serde_json::to_vec(&claims).unwrap())
        );
        let sig = sign(&key, signing_input.as_bytes());
        let jwt = format!("{signing_input}.{}", b64url(&sig));
        let field = if r.method == "POST" {
            "access_token"
        } else {
            "token"
        };
        Response::new(200).json(serde_json::json!({field: jwt, "expires_in": 300}))
    })
    .await;
    TokenServer { server, cert, dir }
}

//! `/images/...`: the image store's verbs in docker's JSON, pulls with docker's progress
//! stream.

use super::{channel_body, filters, flag, json, query, EngineApi, Fail, Reply};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use oci_rs_image::{CopyEvent, CopyOptions};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A layer's short id in progress lines, as docker prints it.
fn short(d: &oci_rs_image::oci_spec::image::Digest) -> String {
    d.digest().chars().take(12).collect()
}

/// One line of docker's JSON progress stream.
fn progress_line(v: serde_json::Value) -> Bytes {
    let mut b = serde_json::to_vec(&v).unwrap_or_default();
    b.push(b'\n');
    b.into()
}

/// The progress line of a copy event, if docker shows one for it.
fn event_line(e: &CopyEvent) -> Option<Bytes> {
    let (status, d, detail) = match e {
        CopyEvent::BlobSkipped { digest, .. } => ("Already exists", digest, serde_json::json!({})),
        CopyEvent::BlobStarted { digest, .. } => {
            ("Pulling fs layer", digest, serde_json::json!({}))
        }
        CopyEvent::BlobProgress { digest, done, size } => (
            "Downloading",
            digest,
            serde_json::json!({ "current": done, "total": size }),
        ),
        CopyEvent::BlobDone { digest, .. } => ("Download complete", digest, serde_json::json!({})),
        CopyEvent::LayerExtracting { digest, done, size } => (
            "Extracting",
            digest,
            serde_json::json!({ "current": done, "total": size }),
        ),
        _ => return None,
    };
    Some(progress_line(serde_json::json!({
        "status": status,
        "progressDetail": detail,
        "id": short(d),
    })))
}

impl EngineApi {
    pub(super) async fn list_images(&self, q: &HashMap<String, String>) -> Reply {
        let f = filters(q)?;
        let filter = oci_rs_layer::ImageFilter::parse(None, &f)?;
        Ok(json(StatusCode::OK, &self.image_summaries(&filter).await?))
    }

    /// `POST /images/prune`: dangling images, or with `filters={"dangling":["false"]}`
    /// every image no container was made from.
    pub(super) async fn prune_images(&self, q: &HashMap<String, String>) -> Reply {
        let all = filters(q)?
            .iter()
            .any(|f| matches!(f.as_str(), "dangling=false" | "dangling=0"));
        let pruned = self.images.prune(all).await?;
        let freed = pruned.bytes_freed;
        let deleted: Vec<serde_json::Value> = (pruned.untagged.iter())
            .map(|n| serde_json::json!({ "Untagged": n }))
            .chain((pruned.deleted.iter()).map(|id| serde_json::json!({ "Deleted": id })))
            .collect();
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "ImagesDeleted": deleted, "SpaceReclaimed": freed }),
        ))
    }

    /// docker's image summaries (one per image id, its names and digests gathered), newest
    /// first.
    pub(super) async fn image_summaries(
        &self,
        filter: &oci_rs_layer::ImageFilter,
    ) -> Result<Vec<serde_json::Value>, Fail> {
        let mut by_id: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for row in self.images.list().await? {
            if !filter.matches(&row) {
                continue;
            }
            let e = by_id.entry(row.id.clone()).or_insert_with(|| {
                serde_json::json!({
                    "Id": row.id,
                    "ParentId": "",
                    "RepoTags": [],
                    "RepoDigests": [],
                    "Created": row.created.map_or(0, |c| c / 1_000_000_000),
                    "Size": row.size,
                    "SharedSize": -1,
                    "VirtualSize": row.size,
                    "Labels": {},
                    "Containers": -1,
                })
            });
            if row.tag != "<none>" {
                if let Some(t) = e["RepoTags"].as_array_mut() {
                    t.push(format!("{}:{}", row.repository, row.tag).into());
                }
            }
            if let (Some(d), false) = (e["RepoDigests"].as_array_mut(), row.repository == "<none>")
            {
                let rd = serde_json::Value::from(format!("{}@{}", row.repository, row.digest));
                if !d.contains(&rd) {
                    d.push(rd);
                }
            }
        }
        let mut out: Vec<serde_json::Value> = by_id.into_values().collect();
        out.sort_by_key(|v| std::cmp::Reverse(v["Created"].as_u64().unwrap_or(0)));
        Ok(out)
    }

    /// `POST /images/create?fromImage=NAME&tag=TAG`: a pull, its progress streamed as
    /// docker's JSON lines; a failure after the headers went is an `error` line.
    pub(super) fn pull_image(self: &Arc<Self>, req: &Request<Incoming>) -> Reply {
        let q = query(req);
        let Some(from) = q.get("fromImage").filter(|f| !f.is_empty()) else {
            return Err(Fail::bad("fromImage or fromSrc is required"));
        };
        let name = match q.get("tag").filter(|t| !t.is_empty()) {
            Some(t) if t.contains(':') => format!("{from}@{t}"),
            Some(t) => format!("{from}:{t}"),
            None => from.clone(),
        };
        let mut opts = CopyOptions::default();
        if let Some(p) = q.get("platform").filter(|p| !p.is_empty()) {
            let p = p
                .parse::<oci_rs_image::PlatformSpec>()
                .map_err(|e| Fail::bad(super::chain(&e)))?;
            opts.platforms = oci_rs_image::PlatformFilter::One(p);
        }
        let auth = AuthConfig::of_request(req)?;
        let (tx, body) = channel_body(64);
        let progress = tx.clone();
        opts.progress = Some(Arc::new(move |e: &CopyEvent| {
            if let Some(line) = event_line(e) {
                // Progress is dropped rather than waited for when the client reads slowly.
                let _ = progress.try_send(line);
            }
        }));
        let handle = tokio::runtime::Handle::current();
        let api = self.clone();
        // On a thread of its own: see `on_own_thread`.
        tokio::task::spawn_blocking(move || {
            handle.block_on(async move {
                let (repo, tag) = match name.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
                    Some((r, t)) => (r.to_owned(), t.to_owned()),
                    None => (name.clone(), "latest".to_owned()),
                };
                let _ = tx
                    .send(progress_line(serde_json::json!({
                        "status": format!("Pulling from {repo}"),
                        "id": tag,
                    })))
                    .await;
                let pulled = match api.remote_for(&name, auth).await {
                    Ok(remote) => api
                        .images
                        .pull(remote.as_ref(), &name, &opts, true)
                        .await
                        .map_err(|e| super::chain(&e)),
                    Err(f) => Err(f.message),
                };
                match pulled {
                    Ok(report) => {
                        for l in report.lines() {
                            let _ = tx
                                .send(progress_line(serde_json::json!({ "status": l })))
                                .await;
                        }
                    }
                    Err(m) => {
                        let _ = tx
                            .send(progress_line(serde_json::json!({
                                "errorDetail": { "message": m },
                                "error": m,
                            })))
                            .await;
                    }
                }
            })
        });
        Ok(super::json_lines(body))
    }

    pub(super) async fn inspect_image(&self, name: &str) -> Reply {
        let doc = self.images.inspect(name).await.map_err(no_such_image)?;
        Ok(json(StatusCode::OK, &doc))
    }

    pub(super) async fn image_history(&self, name: &str) -> Reply {
        let rows = self.images.history(name).await.map_err(no_such_image)?;
        let out: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "Id": r.id.clone().unwrap_or_else(|| "<missing>".into()),
                    "Created": r.created.map_or(0, |c| c / 1_000_000_000),
                    "CreatedBy": r.created_by,
                    "Tags": null,
                    "Size": r.size,
                    "Comment": r.comment,
                })
            })
            .collect();
        Ok(json(StatusCode::OK, &out))
    }

    pub(super) async fn tag_image(&self, name: &str, q: &HashMap<String, String>) -> Reply {
        let to = repo_tag(q).ok_or_else(|| Fail::bad("repository name (repo) not specified"))?;
        self.images.tag(name, &to).await.map_err(no_such_image)?;
        Ok(super::empty(StatusCode::CREATED))
    }

    pub(super) async fn remove_image(&self, name: &str, q: &HashMap<String, String>) -> Reply {
        let removed = self
            .containers
            .remove_images(&self.images, &[name.to_owned()], flag(q, "force"))
            .await?;
        let out: Vec<serde_json::Value> = (removed.untagged.iter())
            .map(|n| serde_json::json!({ "Untagged": n }))
            .chain((removed.deleted.iter()).map(|id| serde_json::json!({ "Deleted": id })))
            .collect();
        Ok(json(StatusCode::OK, &out))
    }
}

/// docker's message for an image that is not there.
fn no_such_image(e: oci_rs_layer::Error) -> Fail {
    match e {
        oci_rs_layer::Error::NoSuchImage(n) => Fail::not_found(format!("No such image: {n}")),
        e => Fail::from(e),
    }
}

/// `repo` and `tag` of a query as one reference (`repo:tag`, or `repo` alone); `None`
/// when no repository is given.
pub(super) fn repo_tag(q: &HashMap<String, String>) -> Option<String> {
    let repo = q.get("repo").filter(|r| !r.is_empty())?;
    Some(match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.clone(),
    })
}

/// docker's auth configuration, as a client sends it in `X-Registry-Auth` (base64url JSON)
/// and in the body of `/auth`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct AuthConfig {
    username: String,
    password: String,
    /// `USER:PASSWORD` in base64, for clients that send only that.
    auth: String,
    serveraddress: String,
}

impl AuthConfig {
    /// The client's `X-Registry-Auth`, when it sent one with a user in it.
    pub(super) fn of_request(req: &Request<Incoming>) -> Result<Option<Self>, Fail> {
        let Some(raw) = req.headers().get("x-registry-auth") else {
            return Ok(None);
        };
        let raw = raw
            .to_str()
            .map_err(|_| Fail::bad("X-Registry-Auth: not base64"))?
            .trim();
        if raw.is_empty() {
            return Ok(None);
        }
        use base64::Engine as _;
        let e = &base64::engine::general_purpose::URL_SAFE;
        let bytes = e
            .decode(raw.trim_end_matches('='))
            .or_else(|_| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw.trim_end_matches('='))
            })
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(raw))
            .map_err(|_| Fail::bad("X-Registry-Auth: not base64"))?;
        let a: Self = serde_json::from_slice(&bytes)
            .map_err(|e| Fail::bad(format!("X-Registry-Auth: not docker's JSON: {e}")))?;
        Ok(Some(a.normalized()).filter(|a| !a.username.is_empty()))
    }

    /// `username` and `password` out of `auth` when only that was sent.
    pub(super) fn normalized(mut self) -> Self {
        if self.username.is_empty() && !self.auth.is_empty() {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(self.auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            if let Some((u, p)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                self.username = u.to_owned();
                self.password = p.to_owned();
            }
        }
        self
    }

    /// The registry a `serveraddress` names (`https://index.docker.io/v1/` is Docker Hub's,
    /// `http://host:5000/v2/` is `host:5000`).
    pub(super) fn registry(&self) -> String {
        let s = self.serveraddress.trim();
        let s = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .unwrap_or(s);
        let host = s.split('/').next().unwrap_or(s);
        match host {
            "" | "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
            h => h.to_owned(),
        }
    }
}

impl EngineApi {
    /// The remote to reach `reference`'s registry with: logged in with `auth` when the
    /// client sent credentials (checked there first, as a daemon does), else the service's.
    async fn remote_for(
        &self,
        reference: &str,
        auth: Option<AuthConfig>,
    ) -> Result<Arc<dyn oci_rs_image::Remote>, Fail> {
        let Some(a) = auth else {
            return Ok(self.remote.clone());
        };
        let qualified = self.remote.qualify(reference);
        let registry = oci_rs_image::ImageReference::parse(&qualified)
            .map_err(|e| Fail::bad(super::chain(&e)))?
            .registry()
            .to_owned();
        Ok(self
            .login(&registry, &a)
            .await?
            .unwrap_or_else(|| self.remote.clone()))
    }

    /// [`Remote::login`](oci_rs_image::Remote::login) with `a`'s user and password; a
    /// refusal is docker's 401.
    async fn login(
        &self,
        registry: &str,
        a: &AuthConfig,
    ) -> Result<Option<Arc<dyn oci_rs_image::Remote>>, Fail> {
        self.remote
            .login(registry, &a.username, &a.password)
            .await
            .map_err(|e| {
                Fail::new(
                    StatusCode::UNAUTHORIZED,
                    format!(
                        "login to {registry} as {} failed: {}",
                        a.username,
                        super::chain(&e)
                    ),
                )
            })
    }

    /// `POST /auth`: docker's login check against a registry; nothing is stored (the
    /// client keeps its credentials and sends them with each push and pull).
    pub(super) async fn check_auth(self: &Arc<Self>, req: Request<Incoming>) -> Reply {
        let a: AuthConfig = super::read_json(req).await?;
        let a = a.normalized();
        if a.username.is_empty() {
            return Err(Fail::bad("no username given"));
        }
        let registry = a.registry();
        let api = self.clone();
        super::on_own_thread(self, move |_| async move {
            match api.login(&registry, &a).await? {
                Some(_) => Ok(json(
                    StatusCode::OK,
                    &serde_json::json!({ "Status": "Login Succeeded", "IdentityToken": "" }),
                )),
                None => Err(Fail::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "this engine's registry client takes no credentials",
                )),
            }
        })
        .await
    }

    /// `POST /images/{name}/push?tag=T`: the push, with the client's `X-Registry-Auth`,
    /// as docker's JSON lines; a failure after the headers went is an `error` line.
    pub(super) fn push_image(self: &Arc<Self>, name: &str, req: &Request<Incoming>) -> Reply {
        let q = query(req);
        let reference = match q.get("tag").filter(|t| !t.is_empty()) {
            Some(t) => format!("{name}:{t}"),
            None => name.to_owned(),
        };
        let auth = AuthConfig::of_request(req)?;
        let (tx, body) = channel_body(64);
        let handle = tokio::runtime::Handle::current();
        let api = self.clone();
        // On a thread of its own: see `on_own_thread`.
        tokio::task::spawn_blocking(move || {
            handle.block_on(async move {
                let repo = reference
                    .rsplit_once(':')
                    .filter(|(_, t)| !t.contains('/'))
                    .map_or(reference.as_str(), |(r, _)| r)
                    .to_owned();
                let tag = reference
                    .strip_prefix(&repo)
                    .and_then(|t| t.strip_prefix(':'))
                    .unwrap_or("latest")
                    .to_owned();
                let _ = tx
                    .send(progress_line(serde_json::json!({
                        "status": format!("The push refers to repository [{repo}]"),
                    })))
                    .await;
                let pushed = match api.remote_for(&reference, auth).await {
                    Ok(remote) => api
                        .images
                        .push(remote.as_ref(), &reference, &CopyOptions::default())
                        .await
                        .map_err(|e| super::chain(&e)),
                    Err(f) => Err(f.message),
                };
                let lines = match pushed {
                    Ok(d) => vec![
                        serde_json::json!({
                            "status": format!("{tag}: digest: {} size: {}", d.digest(), d.size()),
                        }),
                        serde_json::json!({
                            "progressDetail": {},
                            "aux": { "Tag": tag, "Digest": d.digest().to_string(), "Size": d.size() },
                        }),
                    ],
                    Err(m) => vec![serde_json::json!({ "errorDetail": { "message": m }, "error": m })],
                };
                for l in lines {
                    let _ = tx.send(progress_line(l)).await;
                }
            })
        });
        Ok(super::json_lines(body))
    }
}

impl EngineApi {
    /// `POST /images/create?fromSrc=-&repo=R&tag=T&changes=...&platform=P&message=M`: `docker import`,
    /// a filesystem tar (the body, or the URL `fromSrc` names) as a one-layer image; the new
    /// image's id as docker's status line.
    pub(super) async fn import_image(self: &Arc<Self>, req: Request<Incoming>) -> Reply {
        let q = query(&req);
        // Without a repository the image is untagged, as docker's.
        let reference = repo_tag(&q);
        let changes = super::query_all(&req, "changes");
        let platform = match q.get("platform").filter(|p| !p.is_empty()) {
            Some(p) => p
                .parse::<oci_rs_image::PlatformSpec>()
                .map_err(|e| Fail::bad(super::chain(&e)))?,
            None => oci_rs_image::PlatformSpec::host(),
        };
        let src = q.get("fromSrc").cloned().unwrap_or_default();
        let message = q.get("message").filter(|m| !m.is_empty()).cloned();
        let (body, feed) = super::transfer::body_pipe(req);
        let api = self.clone();
        let imported = super::on_own_thread(self, move |_| async move {
            let input: Box<dyn tokio::io::AsyncRead + Send + Unpin> = if src == "-" {
                Box::new(body)
            } else if src.starts_with("http://") || src.starts_with("https://") {
                let urls = api
                    .urls
                    .as_ref()
                    .ok_or_else(|| Fail::bad("import from a URL is not served here"))?;
                urls.fetch(&src)
                    .await
                    .map_err(|e| Fail::bad(super::chain(&e)))?
            } else {
                return Err(Fail::bad(format!(
                    "fromSrc {src:?}: - (the body) or an http(s) URL"
                )));
            };
            let d = api
                .images
                .import_with(
                    input,
                    reference.as_deref(),
                    &changes,
                    &platform,
                    message.as_deref(),
                )
                .await?;
            Ok(api.images.image_id(&d).await?)
        })
        .await;
        let id = match imported {
            Ok(id) => id,
            Err(f) => {
                feed.abort();
                return Err(f);
            }
        };
        let mut out = serde_json::to_vec(&serde_json::json!({ "status": id })).unwrap_or_default();
        out.push(b'\n');
        Ok(super::json_lines(super::full(out)))
    }
}

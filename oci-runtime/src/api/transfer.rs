//! What moves whole filesystems and images: `/containers/{id}/changes`, `/export`,
//! `/commit`, `/images/get` (`docker save`) and `/images/load`, streamed both ways.

use super::{blocking, json, query, EngineApi, Fail, Reply};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use oci_rs_image::{ArchiveFormat, ArchiveWriter, CopyOptions};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// How much of a streamed archive waits in memory between its writer and the client.
const PIPE: usize = 256 << 10;
/// What an upload spooled beside the store leaves free on its disk, at least.
const DISK_RESERVE: u64 = 1 << 30;
/// How often (in bytes written) a spool checks the disk's free space.
const SPOOL_CHECK: u64 = 64 << 20;

/// The request's body as a reader, fed by a task that says whether the whole body arrived
/// (a broken upload is an error, whatever of it was read).
pub(super) fn body_pipe(req: Request<Incoming>) -> (DuplexStream, tokio::task::JoinHandle<bool>) {
    let (mut w, r) = tokio::io::duplex(PIPE);
    let mut body = req.into_body();
    let feed = tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Ok(data) = frame.into_data() {
                if w.write_all(&data).await.is_err() {
                    // The reader stopped reading: it has the archive's end (what follows is
                    // padding), or it failed and says so itself. What the client still
                    // sends is read and dropped, a little (DRAIN_BYTES, DRAIN_TIME), so that
                    // it can finish writing and read the answer: a connection closed on
                    // unread data is reset, and the client sees a broken pipe instead.
                    drain(&mut body).await;
                    return true;
                }
            }
        }
        let _ = w.shutdown().await;
        true
    });
    (r, feed)
}

/// At most this much of a request body is read and dropped once its reader has stopped.
const DRAIN_BYTES: u64 = 16 << 20;
/// For at most this long.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and drops the rest of `body`, within [`DRAIN_BYTES`] and [`DRAIN_TIME`].
async fn drain(body: &mut Incoming) {
    let mut dropped = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                dropped += data.len() as u64;
                if dropped > DRAIN_BYTES {
                    break;
                }
            }
        }
    })
    .await;
}

impl EngineApi {
    /// `GET /containers/{id}/changes`: docker's `Kind` 0 changed, 1 added, 2 deleted.
    pub(super) async fn container_changes(self: &Arc<Self>, id: &str) -> Reply {
        let api = self.clone();
        let what = id.to_owned();
        let changes = blocking(move || Ok(api.containers.diff(&what)?)).await?;
        let out: Vec<serde_json::Value> = changes
            .iter()
            .map(|c| {
                let kind = match c.kind {
                    oci_rs_layer::ChangeKind::Changed => 0,
                    oci_rs_layer::ChangeKind::Added => 1,
                    oci_rs_layer::ChangeKind::Deleted => 2,
                };
                serde_json::json!({ "Path": c.path, "Kind": kind })
            })
            .collect();
        Ok(json(StatusCode::OK, &out))
    }

    /// `GET /containers/{id}/export`: its whole filesystem as a tar, streamed.
    pub(super) fn export_container(self: &Arc<Self>, id: &str) -> Reply {
        let id = self.containers.resolve(id)?;
        Ok(
            self.streamed("application/x-tar", move |api, w| async move {
                api.containers.export(&api.images, &id, w).await?;
                Ok(())
            }),
        )
    }

    /// `HEAD` and `GET /containers/{id}/archive?path=P`: the path's stat in docker's
    /// `X-Docker-Container-Path-Stat` header, and for `GET` the path as a tar.
    pub(super) async fn archive_out(
        self: &Arc<Self>,
        id: &str,
        req: &Request<Incoming>,
        head: bool,
    ) -> Reply {
        let q = query(req);
        let path = q
            .get("path")
            .filter(|p| !p.is_empty())
            .cloned()
            .ok_or_else(|| Fail::bad("no path given"))?;
        let api = self.clone();
        let (what, p) = (id.to_owned(), path.clone());
        let stat = blocking(move || Ok(api.containers.stat_path(&what, &p)?)).await?;
        let header = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            serde_json::to_vec(&stat).unwrap_or_default(),
        );
        let mut r = if head {
            super::empty(StatusCode::OK)
        } else {
            let what = id.to_owned();
            self.streamed("application/x-tar", move |api, w| async move {
                api.containers.copy_from(&what, &path, w).await?;
                Ok(())
            })
        };
        r.headers_mut().insert(
            "X-Docker-Container-Path-Stat",
            hyper::header::HeaderValue::from_str(&header)
                .map_err(|e| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
        );
        Ok(r)
    }

    /// `PUT /containers/{id}/archive?path=DIR`: the body, a tar, unpacked into `DIR`,
    /// streamed through a bounded pipe.
    pub(super) async fn archive_in(self: &Arc<Self>, id: &str, req: Request<Incoming>) -> Reply {
        let q = query(&req);
        let dir = q
            .get("path")
            .filter(|p| !p.is_empty())
            .cloned()
            .ok_or_else(|| Fail::bad("no path given"))?;
        // docker's `copyUIDGID` (`docker cp -a`): the container user's; else root's.
        let how = crate::CopyIn {
            copy_uid_gid: q
                .get("copyUIDGID")
                .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True")),
            ..Default::default()
        };
        let (r, feed) = body_pipe(req);
        let what = id.to_owned();
        let done = super::on_own_thread(self, move |api| async move {
            Ok(api.containers.copy_into(&what, &dir, r, how).await?)
        })
        .await;
        let whole = match done {
            Ok(()) => feed.await.unwrap_or(false),
            Err(f) => {
                // Refused (a read-only path, say) while the client may still be sending:
                // the rest of its body is drained (bounded) before the answer.
                let _ = tokio::time::timeout(DRAIN_TIME * 2, feed).await;
                return Err(f);
            }
        };
        if !whole {
            return Err(Fail::bad("the archive was cut short"));
        }
        Ok(super::empty(StatusCode::OK))
    }

    /// `GET /images/get?names=A&names=B` and `GET /images/{name}/get`: `docker save`.
    pub(super) async fn save_images(self: &Arc<Self>, names: Vec<String>) -> Reply {
        if names.is_empty() {
            return Err(Fail::bad("no image names given"));
        }
        for n in &names {
            // Refused before the stream starts, with docker's 404.
            let n = n.clone();
            super::on_own_thread(self, move |api| async move {
                api.images.find(&n).await?;
                Ok(())
            })
            .await?;
        }
        Ok(
            self.streamed("application/x-tar", move |api, w| async move {
                let archive = ArchiveWriter::new(w, ArchiveFormat::Docker);
                api.images
                    .save(&archive, &names, &CopyOptions::default())
                    .await?;
                Ok(())
            }),
        )
    }

    /// `POST /images/load`: the body, a `docker save` archive, spooled to a file beside the
    /// store (an archive is read by offset) and loaded; docker's JSON lines.
    pub(super) async fn load_images(self: &Arc<Self>, req: Request<Incoming>) -> Reply {
        let spool = tempfile::Builder::new()
            .prefix(".load-")
            .tempfile_in(self.containers.data_dir())
            .map_err(|e| {
                Fail::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("spooling the archive: {e}"),
                )
            })?;
        let mut file = tokio::fs::File::from_std(
            spool
                .reopen()
                .map_err(|e| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
        );
        let mut body = req.into_body();
        let mut since_check = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Fail::bad(format!("reading the archive: {e}")))?;
            if let Ok(data) = frame.into_data() {
                file.write_all(&data).await.map_err(|e| {
                    Fail::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("spooling the archive: {e}"),
                    )
                })?;
                // An upload may not fill the store's disk: it stops short of the reserve.
                since_check += data.len() as u64;
                if since_check >= SPOOL_CHECK {
                    since_check = 0;
                    let vfs = rustix::fs::fstatvfs(spool.as_file()).map_err(|e| {
                        Fail::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("spooling the archive: {e}"),
                        )
                    })?;
                    if vfs.f_bavail.saturating_mul(vfs.f_frsize) < DISK_RESERVE {
                        return Err(Fail::new(
                            StatusCode::INSUFFICIENT_STORAGE,
                            format!(
                                "loading: the archive would leave less than {} MiB free on the store's disk",
                                DISK_RESERVE >> 20
                            ),
                        ));
                    }
                }
            }
        }
        file.flush()
            .await
            .map_err(|e| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let path = spool.path().to_owned();
        let loaded = super::on_own_thread(self, move |api| async move {
            Ok(api.images.load(&path, &CopyOptions::default()).await?)
        })
        .await?;
        drop(spool);
        let mut out = Vec::new();
        for l in loaded {
            let line = match l {
                oci_rs_layer::Loaded::Named(n) => format!("Loaded image: {n}\n"),
                oci_rs_layer::Loaded::Id(i) => format!("Loaded image ID: {i}\n"),
            };
            out.extend(
                serde_json::to_vec(&serde_json::json!({ "stream": line })).unwrap_or_default(),
            );
            out.push(b'\n');
        }
        Ok(super::json_lines(super::full(out)))
    }

    /// `POST /commit?container=C&repo=R&tag=T&comment=&author=&pause=&changes=`: the new
    /// image's id (its configuration's digest, docker's image id).
    pub(super) async fn commit(self: &Arc<Self>, req: &Request<Incoming>) -> Reply {
        let q = query(req);
        let container = q
            .get("container")
            .filter(|c| !c.is_empty())
            .cloned()
            .ok_or_else(|| Fail::bad("no container given"))?;
        // Without a repository the image is untagged, as docker's.
        let reference = super::images::repo_tag(&q);
        let how = oci_rs_layer::CommitOptions {
            message: q.get("comment").filter(|c| !c.is_empty()).cloned(),
            author: q.get("author").filter(|a| !a.is_empty()).cloned(),
            changes: q
                .get("changes")
                .map(|c| {
                    c.lines()
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            ..Default::default()
        };
        let pause = q
            .get("pause")
            .is_none_or(|p| !matches!(p.as_str(), "0" | "false"));
        let id = super::on_own_thread(self, move |api| async move {
            let d = api
                .containers
                .commit(&api.images, &container, reference.as_deref(), &how, pause)
                .await?;
            Ok(api.images.image_id(&d).await?)
        })
        .await?;
        Ok(json(StatusCode::CREATED, &serde_json::json!({ "Id": id })))
    }

    /// A response body that `write` fills on a thread of its own (see `on_own_thread`),
    /// through a bounded pipe: a slow client slows the writer, memory stays flat. A failure
    /// after the headers went cuts the stream short.
    fn streamed<F, Fut>(
        self: &Arc<Self>,
        content_type: &'static str,
        write: F,
    ) -> Response<super::Body>
    where
        F: FnOnce(Arc<EngineApi>, DuplexStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), Fail>>,
    {
        let (w, mut r) = tokio::io::duplex(PIPE);
        let (failed_tx, mut failed) = tokio::sync::oneshot::channel::<String>();
        let handle = tokio::runtime::Handle::current();
        let api = self.clone();
        tokio::task::spawn_blocking(move || {
            handle.block_on(async move {
                if let Err(f) = write(api, w).await {
                    tracing::warn!(message = %f.message, "a streamed answer failed");
                    let _ = failed_tx.send(f.message);
                }
            })
        });
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let chunk = match r.read(&mut buf).await {
                    // At the end the writer has said how it went (a dropped sender:
                    // well). Its failure ends the body with an error: the client sees a
                    // broken transfer, never a short archive that looks whole.
                    Ok(0) => match (&mut failed).await {
                        Ok(m) => Err(std::io::Error::other(m)),
                        Err(_) => break,
                    },
                    Ok(n) => Ok(Bytes::copy_from_slice(&buf[..n])),
                    Err(e) => Err(e),
                };
                let last = chunk.is_err();
                if tx.send(chunk).await.is_err() || last {
                    break;
                }
            }
        });
        let s = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|c| (c.map(hyper::body::Frame::data), rx))
        });
        let body =
            http_body_util::combinators::UnsyncBoxBody::new(http_body_util::StreamBody::new(s));
        let mut resp = Response::new(body);
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(content_type),
        );
        resp
    }
}

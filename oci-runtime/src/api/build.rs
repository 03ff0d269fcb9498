//! `POST /build`: docker's classic builder endpoint (what `docker build` with the legacy
//! builder and docker-compose send) over the crate's Dockerfile builder: the body is the
//! context (a tar, plain or compressed, or a Dockerfile alone), the query its options, and
//! the answer docker's JSON lines (`stream`, `aux` with the image id, `error`).

use super::{flag, query, query_all, EngineApi, Fail, Reply};
use crate::{BuildEvent, BuildOptions, BuildSources, StreamedContext};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::Request;
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

/// One of docker's JSON lines.
fn line(v: serde_json::Value) -> Bytes {
    let mut b = serde_json::to_vec(&v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

/// A query parameter holding a JSON object of strings (`buildargs`, `labels`); docker's
/// `null` values (an argument named without a value) are left out.
fn json_map(
    q: &std::collections::HashMap<String, String>,
    key: &str,
) -> Result<BTreeMap<String, String>, Fail> {
    let Some(raw) = q.get(key).filter(|v| !v.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let m: BTreeMap<String, Option<String>> =
        serde_json::from_str(raw).map_err(|e| Fail::bad(format!("invalid {key} {raw:?}: {e}")))?;
    Ok(m.into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
}

impl EngineApi {
    /// `POST /build?t=&dockerfile=&buildargs=&labels=&target=&nocache=&pull=&networkmode=
    /// &platform=&q=`.
    pub(super) async fn build(self: &Arc<Self>, req: Request<Incoming>) -> Reply {
        let q = query(&req);
        if q.get("remote").is_some_and(|r| !r.is_empty()) {
            return Err(Fail::bad(
                "a remote build context is not served: send the context as the body",
            ));
        }
        let mut opts = BuildOptions {
            tags: query_all(&req, "t"),
            build_args: json_map(&q, "buildargs")?,
            labels: json_map(&q, "labels")?,
            target: q.get("target").filter(|t| !t.is_empty()).cloned(),
            no_cache: flag(&q, "nocache"),
            pull: flag(&q, "pull"),
            platform: q.get("platform").filter(|p| !p.is_empty()).cloned(),
            ..BuildOptions::default()
        };
        if let Some(n) = q.get("networkmode").filter(|n| !n.is_empty()) {
            opts.network = n
                .parse()
                .map_err(|e: crate::BuildError| Fail::bad(super::chain(&e)))?;
        }
        let dockerfile = q
            .get("dockerfile")
            .filter(|d| !d.is_empty())
            .cloned()
            .unwrap_or_else(|| "Dockerfile".into());
        let quiet = flag(&q, "q");
        let (body, feed) = super::transfer::body_pipe(req);
        // The context is unpacked beside the store before the answer starts: a bad archive
        // is the request's error.
        let scratch = self.containers.data_dir().to_owned();
        let context = StreamedContext::read(body, &scratch)
            .await
            .map_err(|e| Fail::bad(format!("reading the build context: {}", super::chain(&e))))?;
        if !feed.await.unwrap_or(false) {
            return Err(Fail::bad("the build context was cut short"));
        }
        // RUN steps write into a pipe whose reader sends their output on as `stream` lines,
        // waiting for the client (the steps wait with it); step lines come through a channel
        // without a bound (they are few and small) to the same body.
        let (tx, body) = super::channel_body(16);
        let (run_r, run_w) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| {
                Fail::new(
                    hyper::StatusCode::INTERNAL_SERVER_ERROR,
                    format!("a pipe for the build's output: {e}"),
                )
            })?;
        if !quiet {
            opts.run_output = Some(Arc::new(run_w));
        } else {
            drop(run_w);
        }
        let run_tx = tx.clone();
        let (relayed_tx, relayed) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let _done = relayed_tx;
            let mut f = std::fs::File::from(run_r);
            let mut buf = vec![0u8; 32 << 10];
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if run_tx
                    .blocking_send(line(serde_json::json!({ "stream": text })))
                    .is_err()
                {
                    break;
                }
            }
        });
        let (step_tx, step_rx) = std::sync::mpsc::channel::<Bytes>();
        let step_out = tx.clone();
        let steps = std::thread::spawn(move || {
            for b in step_rx {
                if step_out.blocking_send(b).is_err() {
                    break;
                }
            }
        });
        let handle = tokio::runtime::Handle::current();
        let api = self.clone();
        // On a thread of its own: see `on_own_thread`.
        tokio::task::spawn_blocking(move || {
            let result = handle.block_on(async move {
                let (dir, text, label) = match &context {
                    StreamedContext::Context(dir) => {
                        let file = std::path::Path::new(&dockerfile);
                        let (text, label) = crate::read_dockerfile(dir.path(), Some(file), true)?;
                        opts.dockerignore = crate::read_dockerignore(dir.path(), Some(file), true)?;
                        (Some(dir.path().to_owned()), text, label)
                    }
                    StreamedContext::Dockerfile(text) => {
                        (None, text.clone(), "Dockerfile".to_owned())
                    }
                };
                opts.file_label = label;
                let tags = opts.tags.clone();
                let sources = BuildSources {
                    remote: Some(api.remote.as_ref()),
                    urls: api.urls.as_deref(),
                    pull: oci_rs_image::CopyOptions::default(),
                };
                let events_tx = step_tx;
                let events = Box::new(move |e: BuildEvent<'_>| {
                    let text = match e {
                        BuildEvent::Step {
                            number,
                            instruction,
                        } if !quiet => {
                            // docker's `Step 2/5 : RUN make` from BuildKit's `[2/5] RUN make`.
                            let text = oci_rs_image::printable(instruction);
                            match text.strip_prefix('[').and_then(|t| t.split_once("] ")) {
                                Some((at, what)) => format!("Step {at} : {what}\n"),
                                None => format!("Step {number} : {text}\n"),
                            }
                        }
                        BuildEvent::Cached { .. } if !quiet => " ---> Using cache\n".to_owned(),
                        BuildEvent::Done { elapsed, .. } if !quiet => {
                            format!(" ---> Done in {:.1}s\n", elapsed.as_secs_f64())
                        }
                        BuildEvent::UnusedArg { name } => format!(
                            "[Warning] One or more build-args [{}] were not consumed\n",
                            oci_rs_image::printable(name)
                        ),
                        BuildEvent::FailedOutput { log, .. } => {
                            let mut out = String::new();
                            let _ = log.take(1 << 20).read_to_string(&mut out);
                            out
                        }
                        _ => return,
                    };
                    let _ = events_tx.send(line(serde_json::json!({ "stream": text })));
                });
                let built = crate::build_platforms(
                    &api.images,
                    sources,
                    &text,
                    dir.as_deref(),
                    opts,
                    events,
                )
                .await?;
                Ok::<_, crate::BuildError>((built, tags))
            });
            let lines = match result {
                Ok((built, tags)) => {
                    let id = built.id.to_string();
                    let short = id
                        .trim_start_matches("sha256:")
                        .get(..12)
                        .unwrap_or(&id)
                        .to_owned();
                    let mut l = vec![line(serde_json::json!({ "aux": { "ID": id } }))];
                    if quiet {
                        // All that `docker build -q` prints.
                        l.push(line(serde_json::json!({ "stream": format!("{id}\n") })));
                    } else {
                        l.push(line(serde_json::json!({ "stream": format!("Successfully built {short}\n") })));
                        for t in tags {
                            l.push(line(serde_json::json!({ "stream": format!("Successfully tagged {t}\n") })));
                        }
                    }
                    l
                }
                Err(e) => {
                    let m = super::chain(&e);
                    vec![line(
                        serde_json::json!({ "errorDetail": { "message": m }, "error": m }),
                    )]
                }
            };
            // Everything the build said goes first (its events ended with it): the last
            // lines are the result.
            let _ = steps.join();
            // RUN's output, read to its end: unless a process a step left behind holds the
            // pipe (then the result does not wait for it).
            let _ = relayed.recv_timeout(std::time::Duration::from_secs(2));
            for l in lines {
                if tx.blocking_send(l).is_err() {
                    break;
                }
            }
        });
        Ok(super::json_lines(body))
    }
}

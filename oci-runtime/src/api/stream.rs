//! The streams of `/containers/{id}/attach` (a hijacked connection), `/logs` and
//! `/resize`: the monitor's [`Frame`]s as docker's stream format, which is raw bytes for a
//! container with a terminal and, without one, frames of an 8-byte header (the stream: 1
//! stdout, 2 stderr; three zero bytes; the length, big-endian) and the bytes.

use super::{blocking, channel_body, empty, flag, query, EngineApi, Fail, Reply};
use crate::engine::EngineError;
use crate::{Frame, LogQuery, LogStream};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::Sender;

/// How many output chunks wait for a slow client before the container's monitor is made to
/// wait (it buffers no more than its own limit for that client).
pub(super) const OUTPUT_DEPTH: usize = 64;

/// How long an attach waits for its container to start.
const ATTACH_WAIT: Duration = Duration::from_secs(60);

/// One chunk of output in docker's stream format.
pub(super) fn framed(stream: LogStream, bytes: &[u8], tty: bool) -> Bytes {
    if tty {
        return Bytes::copy_from_slice(bytes);
    }
    let kind = match stream {
        LogStream::Stdout => 1u8,
        LogStream::Stderr => 2u8,
    };
    let mut out = Vec::with_capacity(8 + bytes.len());
    out.extend_from_slice(&[kind, 0, 0, 0]);
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
    out.into()
}

pub(super) fn stream_type(tty: bool) -> HeaderValue {
    HeaderValue::from_static(match tty {
        true => "application/vnd.docker.raw-stream",
        false => "application/vnd.docker.multiplexed-stream",
    })
}

/// The `101 Switching Protocols` of a hijacked attach or exec: the connection is the
/// client's raw stream from here on.
pub(super) fn switching_protocols(tty: bool) -> Reply {
    let mut r = Response::new(super::full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, stream_type(tty));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("tcp"));
    Ok(r)
}

/// A task that writes what is sent on the returned channel to a hijacked connection's
/// write half, and shuts it down once every sender is gone (or the client is).
pub(super) fn hijacked_writer<W>(mut wr: W) -> (Sender<Bytes>, tokio::task::JoinHandle<()>)
where
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(OUTPUT_DEPTH);
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    (tx, writer)
}

/// The `h` and `w` (rows and columns) of a resize request.
pub(super) fn resize_query(req: &Request<Incoming>) -> Result<(u16, u16), Fail> {
    let q = query(req);
    let dim = |k: &str| -> Result<u16, Fail> {
        q.get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Fail::bad(format!("resize: invalid {k}")))
    };
    Ok((dim("h")?, dim("w")?))
}

/// docker's `since`/`until`: seconds since the epoch, with an optional fraction.
fn timestamp(v: &str) -> Result<u64, Fail> {
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: u64 = secs
        .parse()
        .map_err(|_| Fail::bad(format!("invalid timestamp {v:?}")))?;
    let mut nanos = 0u64;
    for (i, c) in frac.chars().take(9).enumerate() {
        let d = c
            .to_digit(10)
            .ok_or_else(|| Fail::bad(format!("invalid timestamp {v:?}")))?;
        nanos += u64::from(d) * 10u64.pow(8 - i as u32);
    }
    Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

impl EngineApi {
    /// `GET /events`: the journal's events from `since` (none of the past without it), then
    /// those to come, until `until` (forever without it), through `filters`; one JSON
    /// object per line.
    pub(super) fn events(self: &Arc<Self>, req: &Request<Incoming>) -> Reply {
        let q = query(req);
        let when = |k: &str| -> Result<Option<u64>, Fail> {
            match q.get(k).filter(|s| !s.is_empty() && *s != "0") {
                Some(s) => Ok(Some(timestamp(s)?)),
                None => Ok(None),
            }
        };
        let (since, until) = (when("since")?, when("until")?);
        let filter = crate::EventFilter::parse(&super::filters(&q)?).map_err(EngineError::from)?;
        let journal = self.containers.journal();
        let (tx, body) = channel_body(OUTPUT_DEPTH);
        tokio::task::spawn_blocking(move || {
            let send = |e: &crate::Event| {
                let mut line = e.docker_json().to_string();
                line.push('\n');
                tx.blocking_send(Bytes::from(line))
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            };
            // Ends when the client has gone, or with the journal's failure.
            if let Err(e) = journal.stream(since, until, &filter, send, || !tx.is_closed()) {
                tracing::debug!(error = %crate::chain(&e), "streaming events ended");
            }
        });
        Ok(super::json_lines(body))
    }

    pub(super) fn container_logs(self: &Arc<Self>, id: &str, req: &Request<Incoming>) -> Reply {
        let q = query(req);
        let v = self.containers.view(id)?;
        if v.config.log.disabled {
            return Err(EngineError::LogsDisabled(v.config.name).into());
        }
        let tty = v.config.run.terminal;
        let (out, err) = (flag(&q, "stdout"), flag(&q, "stderr"));
        if !out && !err {
            return Err(Fail::bad("you must choose at least one stream"));
        }
        let lq = LogQuery {
            since: match q.get("since").filter(|s| !s.is_empty() && *s != "0") {
                Some(s) => Some(timestamp(s)?),
                None => None,
            },
            until: match q.get("until").filter(|s| !s.is_empty() && *s != "0") {
                Some(s) => Some(timestamp(s)?),
                None => None,
            },
            tail: q.get("tail").and_then(|t| t.parse().ok()),
            timestamps: flag(&q, "timestamps"),
            details: flag(&q, "details").then(String::new),
        };
        let follow = flag(&q, "follow");
        let (tx, body) = channel_body(OUTPUT_DEPTH);
        let api = self.clone();
        let id = v.config.id;
        let watch = tx.clone();
        tokio::task::spawn_blocking(move || {
            let present = move || !watch.is_closed();
            let mut emit = |s: LogStream, b: &[u8]| {
                let wanted = match s {
                    LogStream::Stdout => out,
                    LogStream::Stderr => err,
                };
                if !wanted {
                    return Ok(());
                }
                tx.blocking_send(framed(s, b, tty))
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            };
            if let Err(e) = api
                .containers
                .logs_while(&id, &lq, follow, &present, &mut emit)
            {
                tracing::debug!(container = %id, error = %e, "streaming logs ended");
            }
        });
        let mut r = Response::new(body);
        r.headers_mut().insert(CONTENT_TYPE, stream_type(tty));
        Ok(r)
    }

    pub(super) async fn resize_container(
        self: &Arc<Self>,
        id: &str,
        req: &Request<Incoming>,
    ) -> Reply {
        let (h, w) = resize_query(req)?;
        let api = self.clone();
        let what = id.to_owned();
        blocking(move || {
            let v = api.containers.view(&what)?;
            if v.status.state != crate::MonitorState::Running {
                return Err(Fail::new(
                    StatusCode::CONFLICT,
                    format!("cannot resize container {what}: it is not running"),
                ));
            }
            v.monitor.attach()?.send(&Frame::Resize(h, w))?;
            Ok(empty(StatusCode::OK))
        })
        .await
    }

    /// Attaches the client to the container's stdio: on a connection it hijacks (`Upgrade:
    /// tcp`, as docker's clients ask) both ways, else output only in the response body. A
    /// container that has not started yet is attached as it starts, before its process runs,
    /// so that nothing of its output is missed.
    pub(super) async fn attach_container(
        self: &Arc<Self>,
        id: &str,
        mut req: Request<Incoming>,
    ) -> Reply {
        let q = query(&req);
        let v = self.containers.view(id)?;
        let id = v.config.id.clone();
        let tty = v.config.run.terminal;
        let wants = Wants {
            stdin: flag(&q, "stdin") && v.config.interactive,
            stdout: flag(&q, "stdout"),
            stderr: flag(&q, "stderr"),
            tty,
        };
        // docker's: the given keys, else ctrl-p,ctrl-q.
        let keys: crate::DetachKeys = match q.get("detachKeys").filter(|k| !k.is_empty()) {
            Some(k) => k
                .parse()
                .map_err(|e: crate::Error| Fail::new(StatusCode::BAD_REQUEST, crate::chain(&e)))?,
            None => crate::DetachKeys::default(),
        };
        // `logs=1`: what the container wrote so far first; `stream=0`: only that.
        let replay = (
            // With the `none` log driver there is nothing to replay.
            flag(&q, "logs") && !v.config.log.disabled,
            q.get("stream").is_none_or(|_| flag(&q, "stream")),
        );
        if v.status.state != crate::MonitorState::Running && replay.1 {
            self.attaching
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone());
        }
        // The journal's lock is a blocking one: off the runtime's threads.
        let api = self.clone();
        let attached = id.clone();
        blocking(move || {
            api.containers.attached(&attached);
            Ok(())
        })
        .await?;
        let hijack = req.headers().contains_key(UPGRADE);
        if !hijack {
            let (tx, body) = channel_body(OUTPUT_DEPTH);
            let api = self.clone();
            tokio::spawn(async move {
                api.bridge::<tokio::io::Empty>(&id, tx, None, wants, replay)
                    .await
            });
            let mut r = Response::new(body);
            r.headers_mut().insert(CONTENT_TYPE, stream_type(tty));
            return Ok(r);
        }
        let on_upgrade = hyper::upgrade::on(&mut req);
        let api = self.clone();
        let session = self.open_session();
        tokio::spawn(async move {
            let _session = session;
            let io = match on_upgrade.await {
                Ok(u) => hyper_util::rt::TokioIo::new(u),
                Err(e) => {
                    tracing::debug!(container = %id, error = %e, "attach: the upgrade failed");
                    api.forget_attach(&id);
                    return;
                }
            };
            // A log replayed at once can reach the client in the same read as the 101's
            // headers, which Python's http.client then keeps in its buffer, past where the
            // Docker SDK reads the hijacked socket from: the output is lost. A moment first.
            if replay.0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let (rd, wr) = tokio::io::split(io);
            let (tx, writer) = hijacked_writer(wr);
            api.bridge(&id, tx, Some((rd, keys)), wants, replay).await;
            let _ = writer.await;
        });
        switching_protocols(tty)
    }

    fn forget_attach(&self, id: &str) {
        self.attaching
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Connects to the container's monitor (waiting for it to start, while the container
    /// exists and the client listens), then copies output to `out` and `input` to the
    /// container's stdin until the container's process ends.
    /// Copies the container's output to `out` (and `input` to its stdin): with `replay.0`
    /// its log so far first, and with `replay.1` what it writes from now on.
    async fn bridge<R>(
        self: &Arc<Self>,
        id: &str,
        out: Sender<Bytes>,
        input: Option<(R, crate::DetachKeys)>,
        w: Wants,
        replay: (bool, bool),
    ) where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
    {
        let (history, live) = replay;
        if history {
            let api = self.clone();
            let (id, out) = (id.to_owned(), out.clone());
            let _ = tokio::task::spawn_blocking(move || {
                let mut emit = |s: LogStream, b: &[u8]| {
                    let wanted = match s {
                        LogStream::Stdout => w.stdout,
                        LogStream::Stderr => w.stderr,
                    };
                    if !wanted {
                        return Ok(());
                    }
                    out.blocking_send(framed(s, b, w.tty))
                        .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
                };
                api.containers
                    .logs(&id, &LogQuery::default(), false, &mut emit)
            })
            .await;
        }
        if !live {
            self.forget_attach(id);
            return;
        }
        // A container attached to before its start is started by the client within moments
        // (docker's CLI attaches, then starts); one that is not started in this time is
        // given up, as its monitor gives up waiting for a client.
        let deadline = std::time::Instant::now() + ATTACH_WAIT;
        let attach = loop {
            let m = match self.containers.monitor(id) {
                Ok(m) => m,
                Err(_) => break None,
            };
            if let Ok(a) = m.attach() {
                break Some(a);
            }
            if out.is_closed() || std::time::Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        self.forget_attach(id);
        let Some(mut attach) = attach else {
            return;
        };
        let feeder = match (input, w.stdin, attach.try_clone()) {
            (Some((rd, keys)), true, Ok(a)) => {
                // dockerd reads the keys only on a terminal.
                let keys = if w.tty {
                    keys
                } else {
                    crate::DetachKeys::none()
                };
                Some(tokio::spawn(feed_stdin(rd, a, keys, !w.tty)))
            }
            _ => None,
        };
        let copied = tokio::task::spawn_blocking(move || loop {
            let (stream, bytes) = match attach.recv() {
                Ok(Some(Frame::Stdout(b))) => (LogStream::Stdout, b),
                Ok(Some(Frame::Stderr(b))) => (LogStream::Stderr, b),
                Ok(Some(Frame::Error(m))) => (LogStream::Stderr, format!("{m}\n").into_bytes()),
                Ok(Some(Frame::Exit(_))) | Ok(None) | Err(_) => return,
                Ok(Some(_)) => continue,
            };
            let wanted = match stream {
                LogStream::Stdout => w.stdout,
                LogStream::Stderr => w.stderr,
            };
            if wanted && out.blocking_send(framed(stream, &bytes, w.tty)).is_err() {
                return;
            }
        })
        .await;
        if let Err(e) = copied {
            tracing::debug!(container = %id, error = %e, "attach: copying output failed");
        }
        if let Some(f) = feeder {
            f.abort();
        }
    }
}

/// Which streams a client attached to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wants {
    pub(super) stdin: bool,
    pub(super) stdout: bool,
    pub(super) stderr: bool,
    pub(super) tty: bool,
}

/// The client's bytes as the container's stdin; its end of input (a half-close, or the
/// connection's end) closes it with `close_on_eof` (dockerd's rule: not a terminal's, for
/// docker's client leaves by closing the connection when it detaches). `keys` typed end the
/// attachment (the connection to the monitor is shut down, which ends the output's copy
/// too) and leave the container's stdin open.
async fn feed_stdin<R>(
    mut rd: R,
    attach: crate::Attach,
    keys: crate::DetachKeys,
    close_on_eof: bool,
) where
    R: tokio::io::AsyncRead + Unpin,
{
    let (tx, rx) = std::sync::mpsc::sync_channel::<Option<Frame>>(16);
    let sender = tokio::task::spawn_blocking(move || {
        let mut attach = attach;
        for f in rx {
            let Some(f) = f else {
                attach.shutdown();
                return;
            };
            if attach.send(&f).is_err() {
                return;
            }
        }
    });
    let mut scan = keys.scanner();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut frames = Vec::new();
        let mut last = false;
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let held = scan.finish();
                if !held.is_empty() {
                    frames.push(Some(Frame::Stdin(held)));
                }
                // A terminal's stdin stays open, and its output goes on to the client.
                if close_on_eof {
                    frames.push(Some(Frame::CloseStdin));
                }
                last = true;
            }
            Ok(n) => {
                let (bytes, detached) = scan.feed(&buf[..n]);
                if !bytes.is_empty() {
                    frames.push(Some(Frame::Stdin(bytes)));
                }
                if detached {
                    tracing::debug!("attach: the detach keys were read");
                    frames.push(None);
                    last = true;
                }
            }
        }
        let tx = tx.clone();
        let sent =
            tokio::task::spawn_blocking(move || frames.into_iter().try_for_each(|f| tx.send(f)))
                .await;
        if last || !matches!(sent, Ok(Ok(()))) {
            break;
        }
    }
    drop(tx);
    let _ = sender.await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn output_is_framed_as_docker_multiplexes_it() {
        assert_eq!(
            framed(LogStream::Stderr, b"hi", false).as_ref(),
            &[2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']
        );
        assert_eq!(framed(LogStream::Stdout, b"hi", true).as_ref(), b"hi");
    }

    #[test]
    fn timestamps_take_fractions() {
        assert_eq!(timestamp("12").unwrap(), 12_000_000_000);
        assert_eq!(timestamp("12.5").unwrap(), 12_500_000_000);
        assert!(timestamp("x").is_err());
    }
}

//! `/containers/{id}/exec` and `/exec/{id}/...`: a process in a running container, its
//! stdio relayed on a hijacked connection as `attach` relays a container's.

use super::stream::{framed, stream_type, Wants, OUTPUT_DEPTH};
use super::{blocking, empty, json, read_json, EngineApi, Fail, Reply};
use crate::engine::ExecRequest;
use crate::LogStream;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, UPGRADE};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::Sender;

/// How many exec instances are kept; the oldest finished ones go first beyond it.
const MAX_EXECS: usize = 1024;

/// An exec instance: made by `create`, run by `start`, read by `json`.
#[derive(Debug)]
pub(super) struct ExecEntry {
    container: String,
    req: ExecRequest,
    wants: Wants,
    state: Mutex<ExecState>,
}

#[derive(Debug, Default)]
struct ExecState {
    started: bool,
    running: bool,
    pid: i32,
    exit_code: Option<i32>,
    /// The terminal's master while a `tty` exec runs (for resizes).
    terminal: Option<Arc<OwnedFd>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ExecBody {
    attach_stdin: Option<bool>,
    attach_stdout: Option<bool>,
    attach_stderr: Option<bool>,
    tty: Option<bool>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    privileged: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct StartBody {
    detach: Option<bool>,
    /// Rows and columns (docker 23 and later send it).
    console_size: Option<[u16; 2]>,
}

/// What a detached exec, or one whose client left, relays: nothing (its output is read
/// and dropped).
const QUIET: Wants = Wants {
    stdin: false,
    stdout: false,
    stderr: false,
    tty: false,
};

fn winsize(rows: u16, cols: u16) -> rustix::termios::Winsize {
    rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl EngineApi {
    pub(super) async fn create_exec(self: &Arc<Self>, id: &str, req: Request<Incoming>) -> Reply {
        let v = self.containers.view(id)?;
        if v.status.state != crate::MonitorState::Running || v.paused {
            return Err(Fail::new(
                StatusCode::CONFLICT,
                format!("container {} is not running", v.config.id),
            ));
        }
        let b: ExecBody = read_json(req).await?;
        let args = b
            .cmd
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Fail::bad("No exec command specified"))?;
        let tty = b.tty.unwrap_or(false);
        let stdin = b.attach_stdin.unwrap_or(false);
        // TERM for a terminal is the engine's (`Containers::exec_process`).
        let env = b.env.unwrap_or_default();
        let entry = ExecEntry {
            container: v.config.id,
            req: ExecRequest {
                args,
                env,
                workdir: b.working_dir.filter(|w| !w.is_empty()),
                user: b.user.filter(|u| !u.is_empty()),
                interactive: stdin,
                detach: false,
                tty,
                privileged: b.privileged.unwrap_or(false),
            },
            wants: Wants {
                stdin,
                stdout: b.attach_stdout.unwrap_or(false),
                stderr: b.attach_stderr.unwrap_or(false),
                tty,
            },
            state: Mutex::new(ExecState::default()),
        };
        let exec_id = crate::engine::random_hex(32)?;
        let mut execs = self.execs.lock().unwrap_or_else(|e| e.into_inner());
        if execs.len() >= MAX_EXECS {
            let done: Vec<String> = execs
                .iter()
                .filter(|(_, e)| e.state.lock().is_ok_and(|s| s.exit_code.is_some()))
                .map(|(k, _)| k.clone())
                .take(execs.len() + 1 - MAX_EXECS)
                .collect();
            for k in done {
                execs.remove(&k);
            }
            if execs.len() >= MAX_EXECS {
                return Err(Fail::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{MAX_EXECS} exec instances are running"),
                ));
            }
        }
        execs.insert(exec_id.clone(), Arc::new(entry));
        Ok(json(
            StatusCode::CREATED,
            &serde_json::json!({ "Id": exec_id }),
        ))
    }

    fn exec_entry(&self, id: &str) -> Result<Arc<ExecEntry>, Fail> {
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| Fail::not_found(format!("No such exec instance: {id}")))
    }

    pub(super) fn inspect_exec(&self, id: &str) -> Reply {
        let e = self.exec_entry(id)?;
        let s = e.state.lock().unwrap_or_else(|e| e.into_inner());
        let (entrypoint, arguments) = e
            .req
            .args
            .split_first()
            .map_or(("", &[][..]), |(a, b)| (a.as_str(), b));
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({
                "ID": id,
                "Running": s.running,
                "ExitCode": s.exit_code,
                "ProcessConfig": {
                    "tty": e.req.tty,
                    "entrypoint": entrypoint,
                    "arguments": arguments,
                    "privileged": e.req.privileged,
                    "user": e.req.user.clone().unwrap_or_default(),
                },
                "OpenStdin": e.wants.stdin,
                "OpenStderr": e.wants.stderr,
                "OpenStdout": e.wants.stdout,
                "CanRemove": false,
                "ContainerID": e.container,
                "DetachKeys": "",
                "Pid": s.pid,
            }),
        ))
    }

    pub(super) async fn resize_exec(self: &Arc<Self>, id: &str, req: &Request<Incoming>) -> Reply {
        let (h, w) = super::stream::resize_query(req)?;
        let e = self.exec_entry(id)?;
        // As dockerd: a resize that comes before the exec's terminal (a client resizes as
        // soon as its start is sent) waits for it, up to 10 s.
        let deadline = Instant::now() + Duration::from_secs(10);
        let term = loop {
            let (term, waiting) = {
                let st = e.state.lock().unwrap_or_else(|e| e.into_inner());
                let waiting = e.wants.tty && st.exit_code.is_none() && st.terminal.is_none();
                (st.terminal.clone(), waiting)
            };
            if !waiting {
                break term;
            }
            if Instant::now() >= deadline {
                return Err(Fail::new(
                    StatusCode::CONFLICT,
                    format!("exec {id} is not running: no terminal to resize after 10 s"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        if let Some(t) = term {
            rustix::termios::tcsetwinsize(&*t, winsize(h, w)).map_err(|e| {
                Fail::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("resizing exec {id}: {e}"),
                )
            })?;
        }
        Ok(empty(StatusCode::CREATED))
    }

    /// `POST /exec/{id}/start`: detached (nothing relayed), on a hijacked connection, or
    /// with its output in the response body.
    pub(super) async fn start_exec(
        self: &Arc<Self>,
        id: &str,
        mut req: Request<Incoming>,
    ) -> Reply {
        let e = self.exec_entry(id)?;
        {
            let mut s = e.state.lock().unwrap_or_else(|e| e.into_inner());
            if s.started {
                return Err(Fail::new(
                    StatusCode::CONFLICT,
                    format!("exec {id} has already started"),
                ));
            }
            s.started = true;
        }
        let hijack = req.headers().contains_key(UPGRADE);
        let on_upgrade = hijack.then(|| hyper::upgrade::on(&mut req));
        let body: StartBody = match read_json(req).await {
            Ok(b) => b,
            Err(f) => {
                e.state.lock().unwrap_or_else(|e| e.into_inner()).started = false;
                return Err(f);
            }
        };
        let detach = body.detach.unwrap_or(false);
        let tty = e.wants.tty;
        let wants = e.wants;
        let Some(on_upgrade) = on_upgrade.filter(|_| !detach) else {
            let session = self.launch(&e, detach, body.console_size).await?;
            let (tx, body) = super::channel_body(OUTPUT_DEPTH);
            if detach {
                // Its output is read and dropped, and it is waited for (it is this
                // process's child: unreaped, it would keep its container's pid namespace
                // from ending).
                tokio::spawn(async move {
                    relay::<tokio::io::Empty>(e, QUIET, session, tx, None).await
                });
                return Ok(empty(StatusCode::OK));
            }
            tokio::spawn(
                async move { relay::<tokio::io::Empty>(e, wants, session, tx, None).await },
            );
            let mut r = Response::new(body);
            r.headers_mut().insert(CONTENT_TYPE, stream_type(tty));
            return Ok(r);
        };
        // On a hijacked connection the process starts once the connection is the client's,
        // as dockerd does: output written with the 101 would reach clients that read the
        // response through a buffer (docker-py) and be lost there.
        let open = self.open_session();
        let api = self.clone();
        tokio::spawn(async move {
            let _open = open;
            let io = match on_upgrade.await {
                Ok(u) => hyper_util::rt::TokioIo::new(u),
                Err(err) => {
                    tracing::debug!(error = %err, "exec: the upgrade failed");
                    e.state.lock().unwrap_or_else(|e| e.into_inner()).started = false;
                    return;
                }
            };
            let (rd, mut wr) = tokio::io::split(io);
            let session = match api.launch(&e, false, body.console_size).await {
                Ok(s) => s,
                Err(f) => {
                    let msg = format!("{}\n", f.message);
                    let _ = wr
                        .write_all(&framed(LogStream::Stderr, msg.as_bytes(), tty))
                        .await;
                    let _ = wr.shutdown().await;
                    return;
                }
            };
            let (tx, writer) = super::stream::hijacked_writer(wr);
            relay(e, wants, session, tx, Some(rd)).await;
            let _ = writer.await;
        });
        super::stream::switching_protocols(tty)
    }

    /// Starts exec `e`'s process in a task of its own: a client that leaves meanwhile leaves
    /// a process that is still relayed (to nowhere) and waited for, never an unreaped
    /// child. Its pid and terminal are recorded before this returns, so that the client's
    /// first resize finds the terminal.
    async fn launch(
        self: &Arc<Self>,
        e: &Arc<ExecEntry>,
        detach: bool,
        console_size: Option<[u16; 2]>,
    ) -> Result<crate::engine::ExecSession, Fail> {
        let (sent, session) = tokio::sync::oneshot::channel();
        let api = self.clone();
        let entry = e.clone();
        tokio::spawn(async move {
            let e = entry.clone();
            let started = blocking(move || {
                let mut r = entry.req.clone();
                r.interactive &= !detach;
                Ok(api.containers.exec_piped(&entry.container, &r)?)
            })
            .await;
            match started {
                Ok(session) => {
                    {
                        let mut st = e.state.lock().unwrap_or_else(|e| e.into_inner());
                        st.running = true;
                        st.pid = session.process.pid();
                        if e.wants.tty {
                            st.terminal = session.stdout.try_clone().ok().map(Arc::new);
                            if let (Some(t), Some([h, w])) = (&st.terminal, console_size) {
                                let _ = rustix::termios::tcsetwinsize(&**t, winsize(h, w));
                            }
                        }
                    }
                    if let Err(Ok(session)) = sent.send(Ok(session)) {
                        let (tx, _) = super::channel_body(1);
                        relay::<tokio::io::Empty>(e, QUIET, session, tx, None).await;
                    }
                }
                Err(f) => {
                    e.state.lock().unwrap_or_else(|e| e.into_inner()).exit_code = Some(126);
                    let _ = sent.send(Err(f));
                }
            }
        });
        session.await.map_err(|_| {
            Fail::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "an exec's start was lost",
            )
        })?
    }
}

/// Copies the session's output to `out` and `input` to its stdin until its output ends,
/// then records its exit code.
async fn relay<R>(
    e: Arc<ExecEntry>,
    w: Wants,
    s: crate::engine::ExecSession,
    out: Sender<Bytes>,
    input: Option<R>,
) where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let feeder = match (input, s.stdin) {
        (Some(mut rd), Some(fd)) if w.stdin => Some(tokio::spawn(async move {
            let mut f = Some(std::fs::File::from(fd));
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = rd.read(&mut buf).await.unwrap_or(0);
                let Some(mut file) = f.take() else { break };
                if n == 0 {
                    // The client's end of input: the process's stdin closes (a terminal's
                    // stays, as docker leaves it).
                    if w.tty {
                        let _open = file;
                        std::future::pending::<()>().await;
                    }
                    break;
                }
                let chunk = buf[..n].to_vec();
                match tokio::task::spawn_blocking(move || file.write_all(&chunk).map(|_| file))
                    .await
                {
                    Ok(Ok(file)) => f = Some(file),
                    _ => break,
                }
            }
        })),
        _ => None,
    };
    let copy = |fd: OwnedFd, stream: LogStream, wanted: bool, out: Sender<Bytes>| {
        tokio::task::spawn_blocking(move || {
            let mut f = std::fs::File::from(fd);
            let mut buf = vec![0u8; 32 * 1024];
            // A terminal's master reads EIO once the process and its children are gone.
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if wanted && out.blocking_send(framed(stream, &buf[..n], w.tty)).is_err() {
                    break;
                }
            }
        })
    };
    let outs = copy(s.stdout, LogStream::Stdout, w.stdout, out.clone());
    let errs = s
        .stderr
        .map(|fd| copy(fd, LogStream::Stderr, w.stderr, out.clone()));
    // `out` is held until the exit code is recorded: a client reads it (`/exec/ID/json`)
    // as soon as the stream ends.
    let process = s.process;
    let code = tokio::task::spawn_blocking(move || process.wait()).await;
    let _ = outs.await;
    if let Some(errs) = errs {
        let _ = errs.await;
    }
    if let Some(f) = feeder {
        f.abort();
    }
    let mut st = e.state.lock().unwrap_or_else(|e| e.into_inner());
    st.running = false;
    st.terminal = None;
    st.exit_code = Some(match code {
        Ok(Ok(c)) => c,
        _ => 126,
    });
    drop(st);
    drop(out);
}

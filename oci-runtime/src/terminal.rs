//! The calling program's own terminal joined to a container's: what `docker run -it`,
//! `docker attach`, `docker start -ai` and `docker exec -it` do on the client side.
//!
//! [`attach_stdio`] relays this process's standard streams through a container's monitor
//! (output out, input in, the detach keys watched on a terminal, signals forwarded, window
//! sizes passed on); [`exec_stdio`] relays an exec'd process's pty. Both put this process's
//! terminal in raw mode when the container has one and restore it on every path out.
//!
//! ```no_run
//! # async fn demo(m: &oci_rs_runtime::Monitor) -> oci_rs_runtime::Result<()> {
//! use oci_rs_runtime::{attach_stdio, AttachOptions};
//! match attach_stdio(m, &AttachOptions::new(true, true)).await? {
//!     Some(code) => println!("exited with {code}"),
//!     None => println!("detached"),
//! }
//! # Ok(()) }
//! ```

use crate::{DetachKeys, Error, Frame, Monitor, Result};
use std::io::{Read, Write};

/// What [`attach_stdio`] relays, and how.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// Send this process's stdin.
    pub stdin: bool,
    /// Relay the container's stdout.
    pub stdout: bool,
    /// Relay the container's stderr.
    pub stderr: bool,
    /// The container has a terminal: this one goes into raw mode and passes its size on.
    pub tty: bool,
    /// Forward SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 (docker's
    /// `--sig-proxy`).
    pub sig_proxy: bool,
    /// The sequence on stdin that detaches, leaving the container running (read only when
    /// `tty`, as dockerd does: other input passes whole).
    pub detach_keys: DetachKeys,
}

impl AttachOptions {
    /// Everything relayed, with the default detach keys and signals forwarded.
    pub fn new(stdin: bool, tty: bool) -> Self {
        Self {
            stdin,
            stdout: true,
            stderr: true,
            tty,
            sig_proxy: true,
            detach_keys: Default::default(),
        }
    }
}

fn io(op: &'static str, what: &str, e: std::io::Error) -> Error {
    Error::io(op, what, e)
}

/// Attaches this process's stdio to the container's monitor `m` until the container exits
/// or the detach keys are typed: output relayed, stdin sent (with `stdin`), this terminal
/// in raw mode with `tty` (restored on every path out), its size passed on at once and on
/// SIGWINCH, and signals forwarded with `sig_proxy`. The container's exit code, or None
/// when detached (the container goes on, its stdin open).
///
/// Runs in a tokio runtime (signal handlers and a blocking relay thread); stdin is read by
/// a thread of its own, which a detach leaves blocked on its read. With `sig_proxy`, the
/// process's SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are tokio's from then on
/// (tokio never gives a signal back): a long-running program that attaches once no longer
/// ends on them by default, and should leave `sig_proxy` off or handle them itself.
pub async fn attach_stdio(m: &Monitor, o: &AttachOptions) -> Result<Option<i32>> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first: the process may start (and be signalled, or resized) as soon as we
    // connect, and a signal that comes before its handler is lost (SIGWINCH is ignored).
    let kinds = [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::quit(),
        SignalKind::user_defined1(),
        SignalKind::user_defined2(),
    ];
    let mut sigs = Vec::new();
    if o.sig_proxy {
        for k in kinds {
            sigs.push((
                k.as_raw_value(),
                signal(k).map_err(|e| io("install handler for", "signals", e))?,
            ));
        }
    }
    let mut winch = signal(SignalKind::window_change())
        .map_err(|e| io("install handler for", "SIGWINCH", e))?;
    let mut conn = m.attach()?;
    let mut sender = conn.try_clone()?;
    let raw = if o.tty { RawTerminal::enter() } else { None };
    if o.tty {
        if let Some((rows, cols)) = terminal_size() {
            sender.send(&Frame::Resize(rows, cols))?;
        }
    }
    // Only a detach says anything here: the stdin thread ending (its input did) closes the
    // channel, which is no detach.
    let (detached_tx, mut detached) = tokio::sync::mpsc::unbounded_channel::<()>();
    if o.stdin {
        let mut input = sender.try_clone()?;
        let mut scan = match o.tty {
            true => o.detach_keys.scanner(),
            false => DetachKeys::none().scanner(),
        };
        std::thread::spawn(move || {
            let mut buf = [0u8; 32 << 10];
            let mut inp = std::io::stdin().lock();
            loop {
                let (bytes, done) = match inp.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let held = scan.finish();
                        if !held.is_empty() {
                            let _ = input.send(&Frame::Stdin(held));
                        }
                        let _ = input.send(&Frame::CloseStdin);
                        break;
                    }
                    Ok(n) => scan.feed(&buf[..n]),
                };
                if !bytes.is_empty() && input.send(&Frame::Stdin(bytes)).is_err() {
                    break;
                }
                if done {
                    // Said first: the relay sees the connection end as soon as it is shut
                    // down, and must then find the detach, not take it for the monitor
                    // going away. The container's stdin stays open.
                    let _ = detached_tx.send(());
                    input.shutdown();
                    break;
                }
            }
        });
    }
    let (want_out, want_err) = (o.stdout, o.stderr);
    let relay = tokio::task::spawn_blocking(move || -> Result<Option<i32>> {
        let mut out = std::io::stdout();
        let mut err = std::io::stderr();
        loop {
            match conn.recv()? {
                None => return Ok(None),
                Some(Frame::Stdout(b)) if want_out => out
                    .write_all(&b)
                    .and_then(|_| out.flush())
                    .map_err(|e| io("write", "stdout", e))?,
                Some(Frame::Stderr(b)) if want_err => err
                    .write_all(&b)
                    .and_then(|_| err.flush())
                    .map_err(|e| io("write", "stderr", e))?,
                Some(Frame::Exit(code)) => return Ok(Some(code)),
                Some(Frame::Error(reason)) => {
                    return Err(Error::Monitor {
                        id: String::new(),
                        reason,
                    })
                }
                Some(_) => {}
            }
        }
    });
    tokio::pin!(relay);
    let result = loop {
        type Forward<'a> =
            std::pin::Pin<Box<dyn std::future::Future<Output = Option<i32>> + Send + 'a>>;
        let mut futs: Vec<Forward<'_>> = sigs
            .iter_mut()
            .map(|(n, s)| -> Forward<'_> { Box::pin(async move { s.recv().await.map(|_| *n) }) })
            .collect();
        // select_all needs one: without sig_proxy, one that never ends.
        futs.push(Box::pin(std::future::pending()));
        let forwarded = futures_util::future::select_all(futs);
        tokio::select! {
            r = &mut relay => break r.unwrap_or_else(|e| Err(io("relay", "attach", std::io::Error::other(e)))),
            Some(()) = detached.recv() => {
                drop(raw);
                return Ok(None);
            }
            (sig, _, _) = forwarded => {
                if let Some(sig) = sig {
                    let _ = m.kill(sig);
                }
            }
            _ = winch.recv() => {
                if let Some((rows, cols)) = terminal_size() {
                    let _ = sender.send(&Frame::Resize(rows, cols));
                }
            }
        }
    };
    drop(raw);
    match result {
        Ok(Some(code)) => Ok(Some(code)),
        // The monitor went away (or the connection ended under us): what it recorded, or
        // the reconciled status.
        Ok(None) | Err(_) if detached.try_recv().is_ok() => Ok(None),
        Ok(None) => Ok(Some(m.status()?.exit_code.unwrap_or(255))),
        Err(e) => Err(e),
    }
}

/// `exec -t` on container `c`: `process` gets a pty (its master comes back over a console
/// socket in a private directory) that this process relays to its own terminal, in raw
/// mode and restored afterwards, passing the window size on at start and on SIGWINCH;
/// this process's stdin goes to it with `stdin`. The process's exit code.
///
/// Blocks: call it from a thread of its own or `tokio::task::spawn_blocking` (it enters the
/// current runtime, if any, to follow SIGWINCH, which panics on a runtime's async task).
pub fn exec_stdio(
    c: &crate::Container,
    process: &oci_spec::runtime::Process,
    stdin: bool,
) -> Result<i32> {
    let dir = tempfile::Builder::new()
        .prefix("oci-exec-")
        .tempdir()
        .map_err(|e| io("create", "a private directory for the console socket", e))?;
    let path = dir.path().join("console.sock");
    let listener =
        std::os::unix::net::UnixListener::bind(&path).map_err(|e| Error::io("bind", &path, e))?;
    // SIGWINCH handled before the process can start (tokio keeps one that comes before the
    // resizer below listens; without a handler it would be lost).
    let handle = tokio::runtime::Handle::try_current().ok();
    let winch = handle.as_ref().and_then(|h| {
        h.block_on(async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        })
        .ok()
    });
    let p = c.exec_terminal(process, &path)?;
    let (sock, _) = listener
        .accept()
        .map_err(|e| Error::io("accept", &path, e))?;
    let master = std::fs::File::from(crate::receive_terminal(&sock)?);
    let clone = |m: &std::fs::File| m.try_clone().map_err(|e| io("dup", "terminal", e));
    let raw = RawTerminal::enter();
    resize_to_stdin(&master);
    let resizer = match (handle, winch) {
        (Some(h), Some(mut winch)) => {
            let m = clone(&master)?;
            Some(h.spawn(async move {
                while winch.recv().await.is_some() {
                    resize_to_stdin(&m);
                }
            }))
        }
        _ => None,
    };
    if stdin {
        let mut to = clone(&master)?;
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to);
        });
    }
    let mut from = clone(&master)?;
    let output = std::thread::spawn(move || {
        let mut out = std::io::stdout();
        let mut buf = [0u8; 16 << 10];
        // EIO once the last slave descriptor closes: the process has ended.
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                break;
            }
        }
    });
    let code = p.wait()?;
    let _ = output.join();
    if let Some(r) = resizer {
        r.abort();
    }
    drop(raw);
    Ok(code)
}

/// Gives terminal `m` this process's terminal size.
fn resize_to_stdin(m: &std::fs::File) {
    if let Ok(ws) = rustix::termios::tcgetwinsize(std::io::stdin()) {
        let _ = rustix::termios::tcsetwinsize(m, ws);
    }
}

/// This process's terminal size (on stdin) as the runtime spec's `process.consoleSize`;
/// None when stdin is no terminal.
pub fn console_size() -> Option<oci_spec::runtime::Box> {
    let (rows, cols) = terminal_size()?;
    oci_spec::runtime::BoxBuilder::default()
        .height(u64::from(rows))
        .width(u64::from(cols))
        .build()
        .ok()
}

fn terminal_size() -> Option<(u16, u16)> {
    let ws = rustix::termios::tcgetwinsize(std::io::stdin()).ok()?;
    Some((ws.ws_row, ws.ws_col))
}

/// This process's terminal (stdin) in raw mode while it lives; restored when dropped.
struct RawTerminal {
    saved: rustix::termios::Termios,
}

impl RawTerminal {
    fn enter() -> Option<Self> {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

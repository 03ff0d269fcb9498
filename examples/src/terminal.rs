//! The caller's terminal and a container's: `run`/`start -a`/`attach` relayed through the
//! monitor ([`attach`]), `exec -t` relayed from a console socket, raw mode restored on every
//! path out, and window sizes passed on.

use anyhow::{anyhow, bail, Result};
use oci_rs_runtime::Frame;
use oci_rs_runtime::Monitor;
use std::io::{Read, Write};

/// `exec -t`: the process gets a pty (its master comes back over a console socket in a
/// private directory) that this process relays to its own terminal, in raw mode and
/// restored afterwards, passing the window size on at start and on SIGWINCH.
pub fn exec_tty(
    c: &oci_rs_runtime::Container,
    process: &oci_spec::runtime::Process,
    stdin: bool,
) -> Result<i32> {
    let dir = tempfile::Builder::new().prefix("oci-exec-").tempdir()?;
    let path = dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
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
    let (sock, _) = listener.accept()?;
    let master = std::fs::File::from(oci_rs_runtime::receive_terminal(&sock)?);
    let raw = RawTerminal::enter();
    resize_to_stdin(&master);
    let resizer = match (handle, winch) {
        (Some(h), Some(mut winch)) => {
            let m = master.try_clone()?;
            Some(h.spawn(async move {
                while winch.recv().await.is_some() {
                    resize_to_stdin(&m);
                }
            }))
        }
        _ => None,
    };
    if stdin {
        let mut to = master.try_clone()?;
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to);
        });
    }
    let mut from = master.try_clone()?;
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

/// What [`attach`] relays, and how.
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
    /// The sequence on stdin that detaches, leaving the container running.
    pub detach_keys: oci_rs_runtime::DetachKeys,
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

/// Attaches this process's stdio to the container's monitor until the container exits or
/// the detach keys are typed: output relayed, stdin sent (when `stdin`), the host terminal
/// in raw mode with `tty` (restored on every path out), its size passed on and on SIGWINCH,
/// and signals forwarded with `sig_proxy`. Returns the container's exit code, None when
/// detached.
pub async fn attach(m: &Monitor, o: &AttachOptions) -> Result<Option<i32>> {
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
            sigs.push((k.as_raw_value(), signal(k)?));
        }
    }
    let mut winch = signal(SignalKind::window_change())?;
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
        // As dockerd: the keys are read only on a terminal; other input passes whole.
        let mut scan = match o.tty {
            true => o.detach_keys.scanner(),
            false => oci_rs_runtime::DetachKeys::none().scanner(),
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
            match conn.recv() {
                Ok(None) => return Ok(None),
                Ok(Some(Frame::Stdout(b))) if want_out => {
                    out.write_all(&b)?;
                    out.flush()?;
                }
                Ok(Some(Frame::Stderr(b))) if want_err => {
                    err.write_all(&b)?;
                    err.flush()?;
                }
                Ok(Some(Frame::Exit(code))) => return Ok(Some(code)),
                Ok(Some(Frame::Error(e))) => bail!("{e}"),
                Ok(Some(_)) => {}
                Err(e) => return Err(e.into()),
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
        // select_all needs one: without --sig-proxy, one that never ends.
        futs.push(Box::pin(std::future::pending()));
        let forwarded = futures_util::future::select_all(futs);
        tokio::select! {
            r = &mut relay => break r.map_err(|e| anyhow!("attach: {e}"))?,
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

/// This terminal's size as the runtime spec's `process.consoleSize`.
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

/// The host terminal in raw mode while it lives; restored when dropped.
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

/// Asks `label` on the terminal and reads one line from standard input, without echo when
/// `echo` is false (a password); `None` when standard input is not a terminal. The echo
/// comes back however the read ends.
pub fn prompt(label: &str, echo: bool) -> Result<Option<String>> {
    let stdin = std::io::stdin();
    if !rustix::termios::isatty(&stdin) {
        return Ok(None);
    }
    let mut out = std::io::stdout();
    let saved = rustix::termios::tcgetattr(&stdin)?;
    // Echo off before the prompt shows, so nothing typed ahead of it is echoed either.
    if !echo {
        let mut quiet = saved.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet)?;
    }
    write!(out, "{label}")?;
    out.flush()?;
    let mut line = String::new();
    let read = std::io::BufRead::read_line(&mut stdin.lock(), &mut line);
    if !echo {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &saved);
        writeln!(out)?;
    }
    read?;
    Ok(Some(line.trim_end_matches(['\n', '\r']).to_owned()))
}

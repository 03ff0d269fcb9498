//! The userland helpers: slirp4netns for a rootless container's egress, and the port proxy
//! (a rootless container's ports; a rootful one's on the host's IPv6 addresses when its
//! network has IPv4 only).

#![allow(unsafe_code)]

use super::{NetError, PublishedPort};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

type Result<T> = std::result::Result<T, NetError>;

fn tool(reason: impl Into<String>) -> NetError {
    NetError::Tool {
        tool: "slirp4netns",
        reason: reason.into(),
    }
}

/// Starts slirp4netns for the namespaces of `pid` (a created container's init) and waits
/// until it has configured `tap0`. Returns its pidfd and the write end of its exit pipe:
/// when that closes (the monitor detaches or dies) slirp4netns exits.
pub(super) fn slirp4netns(pid: i32) -> Result<(OwnedFd, OwnedFd)> {
    let pipe = || {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| tool(format!("pipe: {e}")))
    };
    let (ready_r, ready_w) = pipe()?;
    let (exit_r, exit_w) = pipe()?;
    // Inheritable copies for the child alone (the caller is single-threaded, see spawn).
    let ready_child = rustix::io::dup(&ready_w).map_err(|e| tool(format!("dup: {e}")))?;
    let exit_child = rustix::io::dup(&exit_r).map_err(|e| tool(format!("dup: {e}")))?;
    let mut child = std::process::Command::new("slirp4netns")
        .arg("--configure")
        .arg("--mtu=65520")
        .arg("--disable-host-loopback")
        .arg(format!("--ready-fd={}", ready_child.as_raw_fd()))
        .arg(format!("--exit-fd={}", exit_child.as_raw_fd()))
        .arg(format!("--userns-path=/proc/{pid}/ns/user"))
        .arg("--netns-type=path")
        .arg(format!("/proc/{pid}/ns/net"))
        .arg("tap0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| tool(format!("{e} (is the slirp4netns package installed?)")))?;
    drop((ready_child, exit_child, ready_w, exit_r));
    let pidfd = rustix::process::Pid::from_child(&child);
    let pidfd = rustix::process::pidfd_open(pidfd, rustix::process::PidfdFlags::empty())
        .map_err(|e| tool(format!("pidfd_open: {e}")))?;
    let mut fds = [rustix::event::PollFd::new(
        &ready_r,
        rustix::event::PollFlags::IN,
    )];
    let _ = rustix::event::poll(
        &mut fds,
        Some(&rustix::event::Timespec {
            tv_sec: 10,
            tv_nsec: 0,
        }),
    );
    let mut byte = [0u8; 1];
    match rustix::io::read(&ready_r, &mut byte) {
        Ok(1) => Ok((pidfd, exit_w)),
        _ => {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let _ = child.wait();
            Err(tool(format!(
                "it ended before the network was ready: {}",
                err.trim()
            )))
        }
    }
}

/// Whether this process has one thread (fork is then safe to follow with anything).
fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.strip_prefix("Threads:").is_some_and(|n| n.trim() == "1"))
    })
}

/// Where the proxy connects its clients.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    /// To 127.0.0.1:PORT inside the network namespace of this pid (rootless, slirp4netns):
    /// the proxy joins its user and network namespaces.
    Inside(i32),
    /// To this address (a container's on a bridge), from the host's namespace: docker-proxy's
    /// IPv6 listener of a port published from an IPv4-only network.
    Address(Ipv4Addr),
}

/// Forks the port proxy: it listens on the bound `listeners` in the host's namespace and
/// connects every client to the container's port as `target` says. Its pidfd and pid. The
/// caller must be single-threaded (the monitor is).
pub(super) fn spawn(
    target: Target,
    listeners: Vec<(OwnedFd, PublishedPort)>,
) -> Result<(OwnedFd, i32)> {
    let proxy = |reason: String| NetError::Tool {
        tool: "the port proxy",
        reason,
    };
    if !single_threaded() {
        return Err(NetError::Unsupported(
            "the rootless port proxy must be started from a single-threaded process (the monitor)"
                .into(),
        ));
    }
    for (fd, p) in &listeners {
        rustix::net::listen(fd, 1024).map_err(|e| NetError::PortInUse {
            addr: SocketAddrV4::new(p.host_ip, p.host_port),
            proto: p.proto,
            source: Some(e.into()),
        })?;
    }
    let open = |pid: i32, ns: &str| {
        let path = format!("/proc/{pid}/ns/{ns}");
        std::fs::File::open(&path).map_err(|e| proxy(format!("open {path}: {e}")))
    };
    // The namespaces to join, and whether the user namespace is this process's already.
    let inside = match target {
        Target::Inside(pid) => {
            let user = open(pid, "user")?;
            let net = open(pid, "net")?;
            let same_user = std::fs::metadata("/proc/self/ns/user")
                .ok()
                .zip(user.metadata().ok())
                .is_some_and(|(a, b)| {
                    use std::os::unix::fs::MetadataExt;
                    a.ino() == b.ino()
                });
            Some((user, net, same_user))
        }
        Target::Address(_) => None,
    };
    let to = match target {
        Target::Inside(_) => Ipv4Addr::LOCALHOST,
        Target::Address(a) => a,
    };
    // SAFETY: this process is single-threaded (checked above), so the child may do anything.
    match unsafe { libc::fork() } {
        -1 => Err(proxy(format!("fork: {}", std::io::Error::last_os_error()))),
        0 => {
            // SAFETY: prctl with an integer argument.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            if let Some((user, net, same_user)) = inside {
                let joined = (same_user
                    || rustix::thread::move_into_link_name_space(
                        user.as_fd(),
                        Some(rustix::thread::LinkNameSpaceType::User),
                    )
                    .is_ok())
                    && rustix::thread::move_into_link_name_space(
                        net.as_fd(),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )
                    .is_ok();
                if !joined {
                    // SAFETY: ends the child at once.
                    unsafe { libc::_exit(1) };
                }
                drop((user, net));
            }
            // Nothing of the monitor's stays open here (its report pipe above all: the
            // program that spawned the monitor reads it to its end).
            let keep: Vec<i32> = listeners.iter().map(|(fd, _)| fd.as_raw_fd()).collect();
            close_all_but(&keep);
            serve(listeners, to);
            // SAFETY: as above.
            unsafe { libc::_exit(0) }
        }
        child => {
            drop(listeners);
            let p = rustix::process::Pid::from_raw(child)
                .ok_or_else(|| proxy("fork returned a bad pid".into()))?;
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
                .map(|fd| (fd, child))
                .map_err(|e| proxy(format!("pidfd_open: {e}")))
        }
    }
}

/// Closes every descriptor from 3 up but `keep`.
fn close_all_but(keep: &[i32]) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2 && !keep.contains(fd))
        .collect();
    for fd in fds {
        // SAFETY: closing descriptors this process owns and will not use again; the
        // directory's own descriptor is among them and already closed, which is harmless.
        unsafe { libc::close(fd) };
    }
}

/// The proxy's life: one accepting thread per listener, one relaying thread per client,
/// connected to the container's port at `to`.
fn serve(listeners: Vec<(OwnedFd, PublishedPort)>, to: Ipv4Addr) {
    let mut threads = Vec::new();
    for (fd, p) in listeners {
        let l = std::net::TcpListener::from(fd);
        threads.push(std::thread::spawn(move || {
            for client in l.incoming() {
                let Ok(client) = client else { continue };
                let port = p.container_port;
                // A relay needs little stack; a small one makes a short connection cheap.
                let _ = std::thread::Builder::new()
                    .stack_size(64 << 10)
                    .spawn(move || connect(client, SocketAddrV4::new(to, port)));
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
}

fn connect(client: TcpStream, to: SocketAddrV4) {
    let Ok(inner) = TcpStream::connect_timeout(&to.into(), Duration::from_secs(10)) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = inner.set_nodelay(true);
    relay(&client, &inner);
}

/// One direction of a relay: bytes spliced from `from` into a pipe, then into `to` (never
/// through user space).
struct Half<'a> {
    from: &'a TcpStream,
    to: &'a TcpStream,
    r: OwnedFd,
    w: OwnedFd,
    /// Bytes in the pipe, not yet written to `to`.
    pending: usize,
    eof: bool,
    shut: bool,
}

impl Half<'_> {
    /// Moves what the pipe holds on to `to`; false on an error.
    fn flush(&mut self) -> bool {
        use rustix::pipe::{splice, SpliceFlags};
        while self.pending > 0 {
            match splice(
                &self.r,
                None,
                self.to,
                None,
                self.pending,
                SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
            ) {
                Ok(0) => return false,
                Ok(m) => self.pending -= m,
                Err(rustix::io::Errno::AGAIN) => return true,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return false,
            }
        }
        if self.eof && !self.shut {
            let _ = self.to.shutdown(std::net::Shutdown::Write);
            self.shut = true;
        }
        true
    }

    /// Reads what `from` has into the pipe; false on an error.
    fn fill(&mut self) -> bool {
        use rustix::pipe::{splice, SpliceFlags};
        match splice(
            self.from,
            None,
            &self.w,
            None,
            1 << 20,
            SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
        ) {
            Ok(0) => self.eof = true,
            Ok(n) => self.pending += n,
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
            Err(_) => return false,
        }
        self.flush()
    }
}

/// Relays both directions of one connection on this thread with poll, until both ends have
/// finished (a half-close is passed on as a shutdown of the other side's writing).
fn relay(client: &TcpStream, inner: &TcpStream) {
    use rustix::event::{poll, PollFd, PollFlags};
    let half = |from, to| {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ok()?;
        // A larger pipe moves more per splice on a bulk stream (the kernel caps it at
        // fs.pipe-max-size; a refusal leaves the default 64 KiB).
        let _ = rustix::pipe::fcntl_setpipe_size(&w, 1 << 20);
        Some(Half {
            from,
            to,
            r,
            w,
            pending: 0,
            eof: false,
            shut: false,
        })
    };
    if client.set_nonblocking(true).is_err() || inner.set_nonblocking(true).is_err() {
        return;
    }
    let (Some(up), Some(down)) = (half(client, inner), half(inner, client)) else {
        return;
    };
    let mut halves = [up, down];
    loop {
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(4);
        let mut what = Vec::with_capacity(4);
        for (i, h) in halves.iter().enumerate() {
            if h.pending > 0 {
                fds.push(PollFd::new(h.to, PollFlags::OUT));
                what.push((i, false));
            } else if !h.eof {
                fds.push(PollFd::new(h.from, PollFlags::IN));
                what.push((i, true));
            }
        }
        if fds.is_empty() {
            return;
        }
        if poll(&mut fds, None).is_err() {
            return;
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        for (k, (i, reading)) in what.into_iter().enumerate() {
            if !ready[k] {
                continue;
            }
            let ok = if reading {
                halves[i].fill()
            } else {
                halves[i].flush()
            };
            if !ok {
                return;
            }
        }
    }
}

//! The rootless helpers: slirp4netns for egress, and the userland port proxy.

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

/// Forks the port proxy: it listens on the bound `listeners` in the host's namespace, then
/// joins the user and network namespaces of `pid` and connects every client to
/// 127.0.0.1:PORT in there. Its pidfd. The caller must be single-threaded (the monitor is).
pub(super) fn spawn(pid: i32, listeners: Vec<(OwnedFd, PublishedPort)>) -> Result<OwnedFd> {
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
    let open = |ns: &str| {
        let path = format!("/proc/{pid}/ns/{ns}");
        std::fs::File::open(&path).map_err(|e| proxy(format!("open {path}: {e}")))
    };
    let user = open("user")?;
    let net = open("net")?;
    let same_user = std::fs::metadata("/proc/self/ns/user")
        .ok()
        .zip(user.metadata().ok())
        .is_some_and(|(a, b)| {
            use std::os::unix::fs::MetadataExt;
            a.ino() == b.ino()
        });
    // SAFETY: this process is single-threaded (checked above), so the child may do anything.
    match unsafe { libc::fork() } {
        -1 => Err(proxy(format!("fork: {}", std::io::Error::last_os_error()))),
        0 => {
            // SAFETY: prctl with an integer argument.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
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
            // Nothing of the monitor's stays open here (its report pipe above all: the
            // program that spawned the monitor reads it to its end).
            let keep: Vec<i32> = listeners.iter().map(|(fd, _)| fd.as_raw_fd()).collect();
            close_all_but(&keep);
            serve(listeners);
            // SAFETY: as above.
            unsafe { libc::_exit(0) }
        }
        child => {
            drop(listeners);
            let p = rustix::process::Pid::from_raw(child)
                .ok_or_else(|| proxy("fork returned a bad pid".into()))?;
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
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

/// The proxy's life: one accepting thread per listener, two splicing threads per client.
fn serve(listeners: Vec<(OwnedFd, PublishedPort)>) {
    let mut threads = Vec::new();
    for (fd, p) in listeners {
        let l = std::net::TcpListener::from(fd);
        threads.push(std::thread::spawn(move || {
            for client in l.incoming() {
                let Ok(client) = client else { continue };
                let port = p.container_port;
                std::thread::spawn(move || connect(client, port));
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
}

fn connect(client: TcpStream, port: u16) {
    let Ok(inner) = TcpStream::connect_timeout(
        &SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into(),
        Duration::from_secs(10),
    ) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = inner.set_nodelay(true);
    let (Ok(c2), Ok(i2)) = (client.try_clone(), inner.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || pump(&client, &i2));
    pump(&inner, &c2);
    let _ = up.join();
}

/// Moves bytes from `from` to `to` through a pipe with splice (no copy to user space);
/// at the end of `from`, shuts down `to`'s writing side.
fn pump(from: &TcpStream, to: &TcpStream) {
    use rustix::pipe::{splice, SpliceFlags};
    let Ok((r, w)) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) else {
        return;
    };
    'outer: loop {
        let n = match splice(from, None, &w, None, 1 << 20, SpliceFlags::MOVE) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut left = n;
        while left > 0 {
            match splice(&r, None, to, None, left, SpliceFlags::MOVE) {
                Ok(0) | Err(_) => break 'outer,
                Ok(m) => left -= m,
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// The largest frame either side accepts (a hostile peer cannot make the other allocate more).
pub const MAX_FRAME: usize = 1 << 20;

/// The attach protocol between a [monitor](crate::Monitor) and a client (`oci run` in the
/// foreground, `attach`, `start -a`): frames of `[kind: u8][length: u32 big-endian][bytes]` on
/// the monitor's unix socket.
///
/// Monitor to client: [`Frame::Stdout`], [`Frame::Stderr`], [`Frame::Exit`] (the exit code,
/// then the monitor closes the connection unless the container restarts) and
/// [`Frame::Error`] (the container could not be created or started). Client to monitor:
/// [`Frame::Stdin`], [`Frame::CloseStdin`] and [`Frame::Resize`].
///
/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bytes for the container's stdin.
    Stdin(Vec<u8>),
    /// Close the container's stdin.
    CloseStdin,
    /// The client's terminal size: rows, columns.
    Resize(u16, u16),
    /// Output on stdout (or the terminal).
    Stdout(Vec<u8>),
    /// Output on stderr.
    Stderr(Vec<u8>),
    /// The container's process ended with this code (128 + n for signal n).
    Exit(i32),
    /// The container could not be created or started.
    Error(String),
}

impl Frame {
    /// The frame's bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, body): (u8, std::borrow::Cow<'_, [u8]>) = match self {
            Frame::Stdin(b) => (0, b.into()),
            Frame::CloseStdin => (1, (&[][..]).into()),
            Frame::Resize(r, c) => {
                let mut v = r.to_be_bytes().to_vec();
                v.extend_from_slice(&c.to_be_bytes());
                (2, v.into())
            }
            Frame::Stdout(b) => (3, b.into()),
            Frame::Stderr(b) => (4, b.into()),
            Frame::Exit(c) => (5, c.to_be_bytes().to_vec().into()),
            Frame::Error(s) => (6, s.as_bytes().into()),
        };
        let mut out = Vec::with_capacity(5 + body.len());
        out.push(kind);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes one frame from the start of `buf`: the frame and the bytes it took, None when
    /// more bytes are needed. A frame over [`MAX_FRAME`] or of an unknown kind is an error.
    pub fn decode(buf: &[u8]) -> std::result::Result<Option<(Frame, usize)>, String> {
        if buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if len > MAX_FRAME {
            return Err(format!("a frame of {len} bytes (at most {MAX_FRAME})"));
        }
        let Some(body) = buf.get(5..5 + len) else {
            return Ok(None);
        };
        let four = || -> std::result::Result<[u8; 4], String> {
            body.try_into()
                .map_err(|_| format!("a {len}-byte frame that needs 4"))
        };
        let f = match buf[0] {
            0 => Frame::Stdin(body.to_vec()),
            1 if len == 0 => Frame::CloseStdin,
            1 => return Err(format!("a {len}-byte frame that must be empty")),
            2 => {
                let b = four()?;
                Frame::Resize(
                    u16::from_be_bytes([b[0], b[1]]),
                    u16::from_be_bytes([b[2], b[3]]),
                )
            }
            3 => Frame::Stdout(body.to_vec()),
            4 => Frame::Stderr(body.to_vec()),
            5 => Frame::Exit(i32::from_be_bytes(four()?)),
            6 => Frame::Error(
                std::str::from_utf8(body)
                    .map_err(|_| "an error frame that is not UTF-8".to_owned())?
                    .to_owned(),
            ),
            k => return Err(format!("unknown frame kind {k}")),
        };
        Ok(Some((f, 5 + len)))
    }
}

/// A client's connection to a monitor.
#[derive(Debug)]
pub struct Attach {
    sock: UnixStream,
    buf: Vec<u8>,
}

impl Attach {
    /// Connects to the monitor whose directory is `dir` (through `/proc/self/fd`, so a long
    /// directory path does not hit the 108-byte limit of socket addresses).
    pub fn connect(dir: &Path) -> Result<Self> {
        let d = std::fs::File::open(dir).map_err(|e| Error::io("open", dir, e))?;
        let addr = format!(
            "/proc/self/fd/{}/{}",
            std::os::fd::AsRawFd::as_raw_fd(&d),
            crate::monitor::ATTACH_SOCKET
        );
        let sock = UnixStream::connect(&addr)
            .map_err(|e| Error::io("connect", dir.join(crate::monitor::ATTACH_SOCKET), e))?;
        Ok(Self {
            sock,
            buf: Vec::new(),
        })
    }

    /// A second handle on the connection, for a thread that sends while another receives.
    pub fn try_clone(&self) -> Result<Self> {
        Ok(Self {
            sock: self
                .sock
                .try_clone()
                .map_err(|e| Error::io("dup", "attach socket", e))?,
            buf: Vec::new(),
        })
    }

    /// Sends a frame.
    pub fn send(&mut self, f: &Frame) -> Result<()> {
        self.sock
            .write_all(&f.encode())
            .map_err(|e| Error::io("write", "attach socket", e))
    }

    /// Ends the connection both ways, for every handle on it: a receive in another thread
    /// returns. The container's stdin stays open (a detach, not an end of input).
    pub fn shutdown(&self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }

    /// Receives the next frame; None when the monitor closed the connection.
    pub fn recv(&mut self) -> Result<Option<Frame>> {
        let mut chunk = [0u8; 64 << 10];
        loop {
            match Frame::decode(&self.buf) {
                Ok(Some((f, n))) => {
                    self.buf.drain(..n);
                    return Ok(Some(f));
                }
                Ok(None) => {}
                Err(reason) => {
                    return Err(Error::State {
                        path: "attach socket".into(),
                        reason,
                    })
                }
            }
            let n = match self.sock.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("read", "attach socket", e)),
            };
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// docker's detach keys (`--detach-keys`, the API's `detachKeys`): a sequence typed on an
/// attached stdin that ends the attachment and leaves the container running. Written as
/// docker writes them, comma-separated: a character, or `ctrl-X` for X in `a`–`z`, `@`,
/// `[`, `\\`, `]`, `^`, `_`. The default is `ctrl-p,ctrl-q`; an empty string never
/// detaches (podman's reading).
///
/// ```
/// use oci_rs_runtime::DetachKeys;
/// let keys: DetachKeys = "ctrl-a,x".parse().unwrap();
/// let mut scan = keys.scanner();
/// // A partial sequence is held back until what follows decides.
/// assert_eq!(scan.feed(b"hi\x01"), (b"hi".to_vec(), false));
/// assert_eq!(scan.feed(b"y"), (b"\x01y".to_vec(), false));
/// assert_eq!(scan.feed(b"\x01x and the rest"), (Vec::new(), true));
/// assert!("ctrl-1".parse::<DetachKeys>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachKeys(Vec<u8>);

impl Default for DetachKeys {
    fn default() -> Self {
        Self(vec![0x10, 0x11])
    }
}

impl std::str::FromStr for DetachKeys {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &'static str| Error::option("detach-keys", s.escape_debug(), why);
        let mut out = Vec::new();
        for key in s.split(',').filter(|k| !s.is_empty() || !k.is_empty()) {
            let byte = match key.strip_prefix("ctrl-") {
                Some(c) if c.len() == 1 => match c.as_bytes()[0] {
                    b @ b'a'..=b'z' => b - b'a' + 1,
                    b'@' => 0,
                    b @ b'['..=b'_' => b - b'[' + 27,
                    _ => return Err(bad("ctrl- takes a-z, @, [, \\, ], ^ or _")),
                },
                _ if key.len() == 1 && key.is_ascii() => key.as_bytes()[0],
                _ => return Err(bad("comma-separated characters or ctrl-X")),
            };
            out.push(byte);
        }
        Ok(Self(out))
    }
}

impl DetachKeys {
    /// No sequence: input that never detaches (what an attachment without a terminal
    /// reads, as dockerd's).
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// A scanner of one attached stdin.
    pub fn scanner(&self) -> DetachScanner {
        DetachScanner {
            keys: self.0.clone(),
            matched: 0,
        }
    }

    /// The sequence's bytes (empty: it never detaches).
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The state of [`DetachKeys`] over one stream of input.
#[derive(Debug, Clone)]
pub struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    /// The bytes of `input` to pass on, and whether the sequence is now complete (what
    /// follows it is dropped). The start of a sequence at the end of `input` is held back
    /// until the next call, or [`finish`](Self::finish).
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.keys.is_empty() {
                out.push(b);
                continue;
            }
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return (out, true);
                }
                continue;
            }
            if self.matched > 0 {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                    continue;
                }
            }
            out.push(b);
        }
        (out, false)
    }

    /// At the end of input: what was held back.
    pub fn finish(&mut self) -> Vec<u8> {
        let held = self.keys[..self.matched].to_vec();
        self.matched = 0;
        held
    }
}

/// Receives the terminal master that an init or exec helper sends on a console socket
/// ([`crate::ContainerBuilder::console_stream`], [`crate::Container::exec_terminal`]).
pub fn receive_terminal(sock: &impl std::os::fd::AsFd) -> Result<std::os::fd::OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 64];
    rustix::net::recvmsg(
        sock.as_fd(),
        &mut [std::io::IoSliceMut::new(&mut name)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| Error::io("recvmsg", "the console socket", e))?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(Error::io(
        "recvmsg",
        "the console socket",
        std::io::Error::other("no terminal was sent"),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Input cut anywhere passes through whole when it holds no complete sequence;
        /// with one, exactly what came before it passes.
        #[test]
        fn detach_scanning_loses_and_adds_nothing(
            input in proptest::collection::vec(prop_oneof![Just(0x10u8), Just(0x11u8), any::<u8>()], 0..200),
            cuts in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let keys = DetachKeys::default();
            let whole = input.windows(2).position(|w| w == [0x10, 0x11]);
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|c| *c <= input.len()).collect();
            cuts.push(0);
            cuts.push(input.len());
            cuts.sort_unstable();
            let mut scan = keys.scanner();
            let mut out = Vec::new();
            let mut detached = false;
            for w in cuts.windows(2) {
                let (passed, done) = scan.feed(&input[w[0]..w[1]]);
                out.extend(passed);
                if done {
                    detached = true;
                    break;
                }
            }
            if !detached {
                out.extend(scan.finish());
            }
            match whole {
                Some(at) => {
                    prop_assert!(detached);
                    prop_assert_eq!(&out[..], &input[..at]);
                }
                None => {
                    prop_assert!(!detached);
                    prop_assert_eq!(out, input);
                }
            }
        }
    }

    #[test]
    fn detach_keys_read_as_docker_writes_them() {
        let k = |s: &str| s.parse::<DetachKeys>().map(|k| k.bytes().to_vec());
        assert_eq!(k("ctrl-p,ctrl-q").unwrap(), [0x10, 0x11]);
        assert_eq!(
            k("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_").unwrap(),
            [0, 27, 28, 29, 30, 31]
        );
        assert_eq!(k("a,ctrl-z").unwrap(), [b'a', 26]);
        assert_eq!(k("").unwrap(), Vec::<u8>::new());
        for bad in ["ctrl-", "ctrl-P", "ab", "a,,b", "ctrl-1", "é"] {
            assert!(k(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn frames_round_trip_and_hostile_ones_are_refused() {
        for f in [
            Frame::Stdin(b"abc".to_vec()),
            Frame::CloseStdin,
            Frame::Resize(24, 80),
            Frame::Stdout(vec![0, 255, 10]),
            Frame::Stderr(Vec::new()),
            Frame::Exit(137),
            Frame::Error("no such file".into()),
        ] {
            let b = f.encode();
            assert_eq!(Frame::decode(&b).unwrap(), Some((f.clone(), b.len())));
            assert_eq!(Frame::decode(&b[..b.len() - 1]).unwrap(), None, "{f:?}");
        }
        assert!(Frame::decode(&[3, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(Frame::decode(&[9, 0, 0, 0, 0]).is_err());
        assert!(Frame::decode(&[5, 0, 0, 0, 1, 7]).is_err());
        // Found by fuzz/monitor_input: a body where none belongs, an error that is not text.
        assert!(Frame::decode(&[1, 0, 0, 0, 6, 255, 0, 0, 0, 0, 0]).is_err());
        assert!(Frame::decode(&[6, 0, 0, 0, 1, 255]).is_err());
    }
}

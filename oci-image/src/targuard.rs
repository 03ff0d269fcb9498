//! The module of [`TarGuard`], whose docs say what it is for (the module is private).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// The default limit on a GNU long name, long link or PAX record: 1 MiB.
pub const MAX_TAR_RECORD: u64 = 1 << 20;

const BLOCK: usize = 512;

#[derive(Debug)]
enum State {
    /// Collecting a header block (`have` bytes of it so far).
    Header { have: usize },
    /// Collecting a GNU sparse extension block.
    Extension { have: usize, size: u64 },
    /// Collecting a PAX body of `size` bytes, then its padding.
    Pax { size: u64 },
    /// Skipping `left` bytes of data and padding.
    Skip { left: u64 },
    /// After the end-of-archive block: everything passes.
    Done,
}

/// Follows a tar stream's structure; see the module docs.
#[derive(Debug)]
struct Scanner {
    state: State,
    block: [u8; BLOCK],
    pax: Vec<u8>,
    /// A `size` from a PAX header, for the next entry.
    size_override: Option<u64>,
    limit: u64,
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A numeric header field: octal (NUL or space terminated) or GNU base-256.
fn number(field: &[u8]) -> io::Result<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return Err(invalid("negative size in tar header".into()));
        }
        let mut x: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            x = x
                .checked_mul(256)
                .and_then(|x| x.checked_add(u64::from(*b)))
                .ok_or_else(|| invalid("tar header size overflows".into()))?;
        }
        return Ok(x);
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| *b != 0 && *b != b' ')
        .collect();
    if text.is_empty() {
        return Ok(0);
    }
    let text =
        std::str::from_utf8(&text).map_err(|_| invalid("tar header size is not octal".into()))?;
    u64::from_str_radix(text, 8)
        .map_err(|_| invalid(format!("tar header size {text:?} is not octal")))
}

/// The `size` record of a PAX body, if any.
fn pax_size(body: &[u8]) -> io::Result<Option<u64>> {
    let mut rest = body;
    let mut size = None;
    // Some writers pad the body with NULs.
    while rest.first().is_some_and(|b| *b != 0) {
        let sp = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| invalid("malformed PAX record".into()))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|l| *l > sp && *l <= rest.len())
            .ok_or_else(|| invalid("malformed PAX record length".into()))?;
        let record = &rest[sp + 1..len];
        if let Some(v) = record.strip_prefix(b"size=") {
            let v = v.strip_suffix(b"\n").unwrap_or(v);
            size = Some(
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| invalid("PAX size is not a number".into()))?,
            );
        }
        rest = &rest[len..];
    }
    Ok(size)
}

impl Scanner {
    fn new(limit: u64) -> Self {
        Self {
            state: State::Header { have: 0 },
            block: [0; BLOCK],
            pax: Vec::new(),
            size_override: None,
            limit,
        }
    }

    /// The state after a complete header block.
    fn header(&mut self) -> io::Result<State> {
        let h = &self.block;
        if h.iter().all(|b| *b == 0) {
            return Ok(State::Done);
        }
        // Bytes that are not a tar header (a stream that is no tar at all) are refused here,
        // as every tar parser refuses them, rather than read as the end of an empty archive.
        let want = number(&h[148..156]).map_err(|_| invalid("not a tar header".into()))?;
        let (mut unsigned, mut signed) = (0u64, 0i64);
        for (i, &b) in h.iter().enumerate() {
            let b = if (148..156).contains(&i) { b' ' } else { b };
            unsigned += u64::from(b);
            signed += i64::from(b as i8);
        }
        if want != unsigned && i64::try_from(want).ok() != Some(signed) {
            return Err(invalid(
                "not a tar header (its checksum does not match)".into(),
            ));
        }
        let kind = h[156];
        let mut size = number(&h[124..136])?;
        let meta = matches!(kind, b'L' | b'K' | b'x' | b'g');
        if meta {
            if size > self.limit {
                let what = match kind {
                    b'L' => "GNU long name",
                    b'K' => "GNU long link",
                    _ => "PAX header",
                };
                return Err(invalid(format!(
                    "tar {what} record of {size} bytes is over the limit of {} bytes",
                    self.limit
                )));
            }
        } else if let Some(s) = self.size_override.take() {
            size = s;
        }
        if kind == b'x' {
            self.pax.clear();
            return Ok(State::Pax { size });
        }
        // An old GNU sparse entry with extension headers before its data.
        if kind == b'S' && h[482] != 0 {
            return Ok(State::Extension { have: 0, size });
        }
        Ok(State::Skip { left: padded(size) })
    }

    /// At the stream's end: fails when it ends inside a header or an entry (a stream cut
    /// short, or bytes that were never a tar).
    fn end(&self) -> io::Result<()> {
        match self.state {
            State::Header { have: 0 } | State::Done => Ok(()),
            State::Header { .. } | State::Extension { .. } => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the tar stream ends inside a header (cut short, or not a tar)",
            )),
            State::Skip { .. } | State::Pax { .. } => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the tar stream ends inside an entry (cut short)",
            )),
        }
    }

    /// Follows `data`; fails on an over-limit record.
    fn feed(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match &mut self.state {
                State::Done => return Ok(()),
                State::Skip { left } => {
                    let n = (*left).min(data.len() as u64) as usize;
                    *left -= n as u64;
                    data = &data[n..];
                    if *left == 0 {
                        self.state = State::Header { have: 0 };
                    }
                }
                State::Header { have } | State::Extension { have, .. } => {
                    let n = (BLOCK - *have).min(data.len());
                    self.block[*have..*have + n].copy_from_slice(&data[..n]);
                    *have += n;
                    data = &data[n..];
                    if *have == BLOCK {
                        self.state = match self.state {
                            State::Extension { size, .. } if self.block[504] != 0 => {
                                State::Extension { have: 0, size }
                            }
                            State::Extension { size, .. } => State::Skip { left: padded(size) },
                            _ => self.header()?,
                        };
                    }
                }
                State::Pax { size } => {
                    let size = *size;
                    let want = (size as usize).saturating_sub(self.pax.len());
                    let n = want.min(data.len());
                    self.pax.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if self.pax.len() as u64 == size {
                        self.size_override = pax_size(&self.pax)?;
                        self.pax = Vec::new();
                        let padding = padded(size) - size;
                        self.state = if padding == 0 {
                            State::Header { have: 0 }
                        } else {
                            State::Skip { left: padding }
                        };
                    }
                }
            }
        }
        Ok(())
    }
}

/// A guard on tar streams: refuses metadata records that claim more than a sane size before
/// any tar parser buffers them.
///
/// A tar parser holds a GNU long name (`L`), long link (`K`) or PAX header (`x`, `g`) in
/// memory whole, since the entry it describes follows it. A few hundred bytes of hostile
/// layer or archive can declare such a record of gigabytes and make the parser allocate and
/// fill that much. [`TarGuard`] sits between the stream and the parser, follows the tar
/// structure as the bytes pass (headers, PAX `size` overrides, GNU sparse extension headers,
/// padding) and fails the read with [`std::io::ErrorKind::InvalidData`] as soon as a header
/// declares a metadata record over the limit ([`MAX_TAR_RECORD`] by default, 1 MiB as Go's
/// `archive/tar`). It holds at most one record's worth (a PAX body, to read its `size`), and
/// passes every byte through unchanged, so hashes over the stream are unaffected.
///
/// An [`AsyncRead`] that passes a tar stream through unchanged and fails it when a metadata
/// record is over the limit (see the module docs).
#[derive(Debug)]
pub struct TarGuard<R> {
    inner: R,
    scanner: Scanner,
}

impl<R> TarGuard<R> {
    /// Guards `inner` with the default limit, [`MAX_TAR_RECORD`].
    pub fn new(inner: R) -> Self {
        Self::with_limit(inner, MAX_TAR_RECORD)
    }

    /// Guards `inner`, refusing records over `limit` bytes.
    pub fn with_limit(inner: R, limit: u64) -> Self {
        Self {
            inner,
            scanner: Scanner::new(limit),
        }
    }

    /// The guarded stream.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The guarded stream, by reference.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for TarGuard<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                let checked = match new.is_empty() && buf.remaining() > 0 {
                    true => this.scanner.end(),
                    false => this.scanner.feed(new),
                };
                if let Err(e) = checked {
                    // The bytes that declared the record never reach the parser.
                    buf.set_filled(before);
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::AsyncReadExt;

    fn header(name: &str, kind: u8, size: u64) -> Vec<u8> {
        let mut h = vec![0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[156] = kind;
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    async fn read_through(data: Vec<u8>, limit: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        // Small reads, so records straddle read boundaries.
        let mut g = TarGuard::with_limit(tokio::io::BufReader::with_capacity(7, &data[..]), limit);
        let mut buf = [0u8; 33];
        loop {
            let n = g.read(&mut buf).await?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn passes_a_tar_unchanged_and_follows_pax_sizes() {
        let mut t = Vec::new();
        // A PAX header whose size record overrides the next header's (0) to 1000 bytes.
        let body = b"13 size=1000\n";
        t.extend(header("pax", b'x', body.len() as u64));
        t.extend(body);
        t.resize(t.len().next_multiple_of(BLOCK), 0);
        t.extend(header("f", b'0', 0));
        // The 1000 bytes of data hold what looks like a long-name header of 4 GiB: data, not
        // a header, so it must pass.
        let mut data = header("fake", b'L', 4 << 30);
        data.resize(1000, 7);
        t.extend(&data);
        t.resize(t.len().next_multiple_of(BLOCK), 0);
        t.extend(vec![0u8; 2 * BLOCK]);
        t.extend(b"trailing padding");
        assert_eq!(read_through(t.clone(), 64).await.unwrap(), t);
    }

    /// Bytes that are no tar (too short for a header, or a block whose checksum is wrong)
    /// and a tar cut inside an entry are refused, not read as an empty or shorter archive.
    #[tokio::test]
    async fn refuses_what_is_no_tar_and_tars_cut_short() {
        let e = read_through(b"not a tar at all".to_vec(), 64)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        let mut junk = vec![b'x'; 2 * BLOCK];
        junk[0] = b'a';
        let e = read_through(junk, 64).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        let mut cut = header("f", b'0', 1000);
        cut.extend(vec![7u8; 100]);
        let e = read_through(cut, 64).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        // An empty stream, and an archive without its end blocks, are tars.
        assert!(read_through(Vec::new(), 64).await.unwrap().is_empty());
        let mut t = header("f", b'0', 3);
        t.extend(b"abc");
        t.resize(2 * BLOCK, 0);
        assert_eq!(read_through(t.clone(), 64).await.unwrap(), t);
    }

    #[tokio::test]
    async fn refuses_records_over_the_limit_before_they_pass() {
        for kind in [b'L', b'K', b'x', b'g'] {
            let mut t = header("ok", b'0', 3);
            t.extend(b"abc");
            t.resize(BLOCK * 2, 0);
            t.extend(header("huge", kind, 4 << 30));
            let err = read_through(t, MAX_TAR_RECORD).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(err.to_string().contains("4294967296 bytes"), "{err}");
        }
        // At the limit: fine.
        let mut t = header("name", b'L', 16);
        t.extend(b"a-long-file-name");
        t.resize(BLOCK * 2, 0);
        assert!(read_through(t, 16).await.is_ok());
    }
}

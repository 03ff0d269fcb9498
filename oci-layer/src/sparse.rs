//! Old GNU sparse files (`S` entries) applied without walking their holes.
//!
//! The tar parser hands a sparse file's content over as one stream, its holes as runs of
//! zeros it makes up: a few kilobytes of layer that declare a hole of a terabyte would keep
//! an apply busy for minutes writing nothing. [`SparseFilter`] sits between the stream and
//! the parser and follows the tar structure (headers, PAX `size` overrides, padding); it
//! takes each `S` header's map (with its extension blocks) for itself and gives the parser a
//! regular entry of the stored bytes only, keyed by where that header is in the stream the
//! parser reads. [`SparseMaps`] then tells the applier where each stored run goes, so that
//! holes cost one `ftruncate`, whatever they claim.
//!
//! The bytes hashed for the DiffID are the layer's own: the filter sits above the hashing
//! reader. Anything the filter does not understand (a bad checksum, a sparse entry with a
//! PAX size, a map that does not add up) passes to the parser unchanged, which then reads it
//! as it always did.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

const BLOCK: usize = 512;

/// The most runs one sparse file may list (each extension block holds 21).
const MAX_RUNS: usize = 1 << 16;

/// Where a sparse file's stored bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SparseMap {
    /// The file's length, holes included.
    pub real_size: u64,
    /// (offset, length) of each stored run, in order; their lengths add up to the entry's
    /// stored size.
    pub runs: Vec<(u64, u64)>,
}

/// The maps of the sparse files the filter rewrote, by the position of their header in the
/// stream the parser reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct SparseMaps(Arc<Mutex<HashMap<u64, SparseMap>>>);

impl SparseMaps {
    /// The map of the entry whose header is at `pos`, taken out.
    pub(crate) fn take(&self, pos: u64) -> Option<SparseMap> {
        self.0.lock().ok()?.remove(&pos)
    }

    fn insert(&self, pos: u64, map: SparseMap) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(pos, map);
        }
    }
}

/// Whether a regular entry's header is one the filter rewrote: it keeps the GNU magic and
/// its `realsize` field, which only sparse entries set.
pub(crate) fn rewritten(header: &[u8; BLOCK]) -> bool {
    &header[257..265] == b"ustar  \0" && number(&header[483..495]).is_ok_and(|n| n > 0)
}

#[derive(Debug)]
enum State {
    /// Collecting a header block.
    Header { have: usize },
    /// Collecting the extension blocks of the sparse header in `held[..BLOCK]`.
    Extension { have: usize, size: u64 },
    /// Passing a PAX body through while reading its `size`.
    Pax { size: u64 },
    /// Passing `left` bytes of data and padding through.
    Data { left: u64 },
    /// Lost the structure: everything passes unchanged.
    Through,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct SparseFilter<R> {
    inner: R,
    state: State,
    block: [u8; BLOCK],
    /// The sparse header and its extension blocks, while they are collected.
    held: Vec<u8>,
    runs: Vec<(u64, u64)>,
    pax: Vec<u8>,
    size_override: Option<u64>,
    /// Bytes given to the parser so far, and those waiting to be.
    out: Vec<u8>,
    out_at: usize,
    emitted: u64,
    read_buf: Vec<u8>,
    maps: SparseMaps,
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64)
}

/// A numeric header field: octal, or GNU base-256.
fn number(field: &[u8]) -> Result<u64, ()> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return Err(());
        }
        let mut x = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            x = x
                .checked_mul(256)
                .and_then(|x| x.checked_add(u64::from(*b)))
                .ok_or(())?;
        }
        return Ok(x);
    }
    let mut x: u64 = 0;
    let mut digits = field.iter().skip_while(|b| **b == b' ').peekable();
    while let Some(&b) = digits.next_if(|b| (b'0'..=b'7').contains(b)) {
        x = x
            .checked_mul(8)
            .and_then(|x| x.checked_add(u64::from(b - b'0')))
            .ok_or(())?;
    }
    match digits.next() {
        None | Some(0) | Some(b' ') => Ok(x),
        Some(_) => Err(()),
    }
}

/// A header's checksum: the sum of its bytes, the checksum field counted as spaces.
pub(crate) fn checksum(h: &[u8]) -> u64 {
    h.iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(*b)
            }
        })
        .sum()
}

/// The `size` record of a PAX body, if it has a readable one.
fn pax_size(body: &[u8]) -> Option<u64> {
    let mut rest = body;
    let mut size = None;
    while rest.first().is_some_and(|b| *b != 0) {
        let sp = rest.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        if len <= sp || len > rest.len() {
            return None;
        }
        if let Some(v) = rest[sp + 1..len].strip_prefix(b"size=") {
            let v = v.strip_suffix(b"\n").unwrap_or(v);
            size = Some(std::str::from_utf8(v).ok()?.parse().ok()?);
        }
        rest = &rest[len..];
    }
    size
}

impl<R> SparseFilter<R> {
    /// Filters `inner`; the maps of the entries it rewrites go to `maps`.
    pub(crate) fn new(inner: R, maps: SparseMaps) -> Self {
        Self {
            inner,
            state: State::Header { have: 0 },
            block: [0; BLOCK],
            held: Vec::new(),
            runs: Vec::new(),
            pax: Vec::new(),
            size_override: None,
            out: Vec::new(),
            out_at: 0,
            emitted: 0,
            read_buf: vec![0; 64 << 10],
            maps,
        }
    }

    /// The stream below, for what follows the parser's end.
    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
        self.emitted += bytes.len() as u64;
    }

    /// Adds the runs of `entries` (offset and length fields of 12 bytes each); false when a
    /// field does not parse or there are too many.
    fn add_runs(&mut self, entries: &[u8]) -> bool {
        for e in entries.chunks_exact(24) {
            let (Ok(off), Ok(len)) = (number(&e[..12]), number(&e[12..])) else {
                return false;
            };
            if e.iter().all(|b| *b == 0) {
                continue;
            }
            if self.runs.len() == MAX_RUNS {
                return false;
            }
            self.runs.push((off, len));
        }
        true
    }

    /// The map of the held sparse header whose entry stores `size` bytes, if it adds up:
    /// runs in order, not overlapping, inside the file, their lengths the stored size.
    fn map(&mut self, size: u64) -> Option<SparseMap> {
        let real_size = number(&self.held[483..495]).ok()?;
        let mut end = 0u64;
        let mut stored = 0u64;
        for &(off, len) in &self.runs {
            if off < end {
                return None;
            }
            end = off.checked_add(len)?;
            stored = stored.checked_add(len)?;
        }
        (end <= real_size && stored == size && real_size > 0).then(|| SparseMap {
            real_size,
            runs: std::mem::take(&mut self.runs),
        })
    }

    /// The held sparse header (and extension blocks) is complete: rewritten as a regular
    /// entry of its stored bytes with its map recorded, or passed on unchanged.
    fn finish_sparse(&mut self, size: u64) {
        match self.map(size) {
            Some(map) => {
                let mut h = [0u8; BLOCK];
                h.copy_from_slice(&self.held[..BLOCK]);
                h[156] = b'0';
                // The map is ours now; `realsize` stays, as the mark of a rewritten entry.
                h[386..483].fill(0);
                h[148..156].copy_from_slice(b"        ");
                let sum = format!("{:06o}\0 ", checksum(&h));
                h[148..156].copy_from_slice(sum.as_bytes());
                self.maps.insert(self.emitted, map);
                self.emit(&h);
            }
            None => {
                let held = std::mem::take(&mut self.held);
                self.emit(&held);
            }
        }
        self.held.clear();
        self.runs.clear();
        self.state = State::Data { left: padded(size) };
    }

    /// The state after the header block in `self.block`.
    fn header(&mut self) {
        let h = self.block;
        if h.iter().all(|b| *b == 0) {
            self.emit(&h);
            self.state = State::Header { have: 0 };
            return;
        }
        let stored_sum = number(&h[148..156]);
        let Ok(size) = number(&h[124..136]) else {
            self.emit(&h);
            self.state = State::Through;
            return;
        };
        if stored_sum != Ok(checksum(&h)) {
            self.emit(&h);
            self.state = State::Through;
            return;
        }
        let kind = h[156];
        if kind == b'x' {
            self.emit(&h);
            self.pax.clear();
            self.state = State::Pax { size };
            return;
        }
        let meta = matches!(kind, b'L' | b'K' | b'g');
        let size = if meta {
            size
        } else {
            self.size_override.take().unwrap_or(size)
        };
        let gnu = &h[257..265] == b"ustar  \0";
        if kind == b'S' && gnu && number(&h[124..136]) == Ok(size) {
            self.held.clear();
            self.held.extend_from_slice(&h);
            self.runs.clear();
            if !self.add_runs(&h[386..482]) {
                self.emit(&h);
                self.held.clear();
                self.state = State::Through;
                return;
            }
            if h[482] != 0 {
                self.state = State::Extension { have: 0, size };
            } else {
                self.finish_sparse(size);
            }
            return;
        }
        self.emit(&h);
        self.state = if kind == b'S' && h[482] != 0 {
            // A sparse entry this filter does not take (a PAX size on it): its extension
            // blocks are for the parser, and where its data starts is no longer known here.
            State::Through
        } else {
            State::Data { left: padded(size) }
        };
    }

    /// Follows `data`, queueing what the parser is to read.
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::Through => {
                    let d = data;
                    self.emit(d);
                    return;
                }
                State::Data { left } => {
                    let n = (*left).min(data.len() as u64) as usize;
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::Header { have: 0 };
                    }
                    let (now, rest) = data.split_at(n);
                    self.emit(now);
                    data = rest;
                }
                State::Header { have } => {
                    let n = (BLOCK - *have).min(data.len());
                    self.block[*have..*have + n].copy_from_slice(&data[..n]);
                    *have += n;
                    data = &data[n..];
                    if *have == BLOCK {
                        self.header();
                    }
                }
                State::Extension { have, size } => {
                    let n = (BLOCK - *have).min(data.len());
                    self.block[*have..*have + n].copy_from_slice(&data[..n]);
                    *have += n;
                    data = &data[n..];
                    if *have == BLOCK {
                        let size = *size;
                        let ext = self.block;
                        self.held.extend_from_slice(&ext);
                        if !self.add_runs(&ext[..504]) {
                            // Too many runs or a bad field: the parser gets it all as it was.
                            let held = std::mem::take(&mut self.held);
                            self.emit(&held);
                            self.runs.clear();
                            self.state = State::Through;
                        } else if ext[504] != 0 {
                            self.state = State::Extension { have: 0, size };
                        } else {
                            self.finish_sparse(size);
                        }
                    }
                }
                State::Pax { size } => {
                    let size = *size;
                    let want = size.saturating_sub(self.pax.len() as u64);
                    let n = (want.min(data.len() as u64)) as usize;
                    // The guard below this filter refuses PAX bodies over 1 MiB.
                    self.pax.extend_from_slice(&data[..n]);
                    let (now, rest) = data.split_at(n);
                    self.emit(now);
                    data = rest;
                    if self.pax.len() as u64 == size {
                        self.size_override = pax_size(&self.pax);
                        self.pax = Vec::new();
                        let padding = padded(size) - size;
                        self.state = if padding == 0 {
                            State::Header { have: 0 }
                        } else {
                            State::Data { left: padding }
                        };
                    }
                }
            }
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for SparseFilter<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_at < this.out.len() {
                let n = (this.out.len() - this.out_at).min(buf.remaining());
                buf.put_slice(&this.out[this.out_at..this.out_at + n]);
                this.out_at += n;
                if this.out_at == this.out.len() {
                    this.out.clear();
                    this.out_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut this.read_buf);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        // The end: whatever is held (a header or a sparse header cut short)
                        // goes as it was, for the parser to judge.
                        let mut held = std::mem::take(&mut this.held);
                        match std::mem::replace(&mut this.state, State::Through) {
                            State::Header { have } | State::Extension { have, .. } => {
                                held.extend_from_slice(&this.block[..have]);
                            }
                            _ => {}
                        }
                        if held.is_empty() {
                            return Poll::Ready(Ok(()));
                        }
                        this.emit(&held);
                        continue;
                    }
                    let chunk = std::mem::take(&mut this.read_buf);
                    this.feed(&chunk[..n]);
                    this.read_buf = chunk;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An old GNU sparse header for `runs` storing `size` bytes of a `real` byte file.
    fn sparse_header(runs: &[(u64, u64)], size: u64, real: u64) -> Vec<u8> {
        let mut h = vec![0u8; BLOCK];
        h[..1].copy_from_slice(b"s");
        h[100..108].copy_from_slice(b"0000644\0");
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[156] = b'S';
        h[257..265].copy_from_slice(b"ustar  \0");
        for (i, (off, len)) in runs.iter().enumerate() {
            let at = 386 + i * 24;
            h[at..at + 12].copy_from_slice(&crate::tarw::numeric(*off));
            h[at + 12..at + 24].copy_from_slice(&crate::tarw::numeric(*len));
        }
        h[483..495].copy_from_slice(&crate::tarw::numeric(real));
        let sum = format!("{:06o}\0 ", checksum(&h));
        h[148..156].copy_from_slice(sum.as_bytes());
        h
    }

    async fn through(data: &[u8]) -> (Vec<u8>, SparseMaps) {
        use tokio::io::AsyncReadExt;
        let maps = SparseMaps::default();
        let mut f = SparseFilter::new(tokio::io::BufReader::with_capacity(7, data), maps.clone());
        let mut out = Vec::new();
        f.read_to_end(&mut out).await.unwrap();
        (out, maps)
    }

    #[tokio::test]
    async fn a_map_that_does_not_add_up_reaches_the_parser_unchanged() {
        for (runs, size, real) in [
            (&[(0u64, 10u64), (5, 10)][..], 20u64, 100u64), // overlapping
            (&[(0, 10)], 20, 100),                          // stores more than it maps
            (&[(90, 20)], 20, 100),                         // past the end
        ] {
            let mut tar = sparse_header(runs, size, real);
            tar.extend_from_slice(&[7u8; BLOCK]);
            tar.extend_from_slice(&[0u8; 2 * BLOCK]);
            let (out, maps) = through(&tar).await;
            assert_eq!(out, tar, "{runs:?}");
            assert!(maps.take(0).is_none());
        }
    }

    #[tokio::test]
    async fn a_sparse_entry_becomes_a_regular_one_with_its_map() {
        let mut tar = sparse_header(&[(0, 3), (1 << 40, 4)], 7, (1 << 40) + 10);
        let mut data = b"abcdefg".to_vec();
        data.resize(BLOCK, 0);
        tar.extend_from_slice(&data);
        tar.extend_from_slice(&[0u8; 2 * BLOCK]);
        let (out, maps) = through(&tar).await;
        assert_eq!(out.len(), tar.len());
        assert_eq!(out[156], b'0');
        assert_eq!(number(&out[148..156]), Ok(checksum(&out[..BLOCK])));
        let mut h = [0u8; BLOCK];
        h.copy_from_slice(&out[..BLOCK]);
        assert!(rewritten(&h));
        assert_eq!(&out[BLOCK..], &tar[BLOCK..]);
        assert_eq!(
            maps.take(0),
            Some(SparseMap {
                real_size: (1 << 40) + 10,
                runs: vec![(0, 3), (1 << 40, 4)]
            })
        );
    }

    #[test]
    fn numbers_parse_as_tar_writes_them() {
        assert_eq!(number(b"00000001750\0"), Ok(1000));
        assert_eq!(number(b"  17 \0"), Ok(15));
        assert_eq!(number(b"\0\0\0"), Ok(0));
        assert_eq!(
            number(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
            Ok(1 << 32)
        );
        assert!(number(b"12x\0").is_err());
        assert!(number(&[0xc0, 0]).is_err());
    }
}

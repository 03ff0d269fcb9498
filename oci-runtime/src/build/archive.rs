//! The archives of a build: what `ADD` unpacks from the context, and what a streamed build
//! context may be. As moby's `DecompressStream` reads them, a tar is plain or compressed
//! with gzip, bzip2, xz or zstd, told by its first bytes, never by a file name.
//!
//! This is the builder's own reader, apart from oci-rs-layer's [`oci_rs_layer::decompress`]:
//! a layer blob is gzip, zstd or plain by its media type (the only ones the OCI image spec
//! lists), and an xz or bzip2 blob must not pass for a layer. gzip and zstd go through that
//! reader here too; bzip2 is async-compression's decoder (the `bzip2` crate on its pure-Rust
//! libbz2-rs-sys backend), xz is lzma-rust2's streaming `XzStream` (pure Rust), driven from
//! [`XzDecoder`] without a thread.

use super::error::Result;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader, ReadBuf};

/// How a stream is compressed, by its first bytes (moby's `DetectCompression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    /// None of the others: maybe a plain tar.
    None,
    /// gzip: `1f 8b 08`.
    Gzip,
    /// bzip2: `BZh`.
    Bzip2,
    /// xz: `fd 37 7a 58 5a 00`.
    Xz,
    /// zstd: a frame's magic `28 b5 2f fd`.
    Zstd,
}

impl Compression {
    /// The compression `head` (a stream's first bytes) shows.
    pub(super) fn of(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b, 0x08]) {
            Self::Gzip
        } else if head.starts_with(b"BZh") {
            Self::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Self::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else {
            Self::None
        }
    }
}

/// The most memory the xz decoder may take for one block (its dictionary): 1 GiB, well
/// above `xz -9e`'s 64 MiB, so a crafted header cannot make one build ask for 4 GiB.
const XZ_MEM_LIMIT_KIB: u32 = 1 << 20;

/// `reader` decompressed as its first bytes tell: gzip (several members too), bzip2 and xz
/// (several streams too), zstd (when oci-rs-layer has its `zstd` feature), or as it is.
pub(super) async fn decompress<'a>(
    reader: impl AsyncRead + Send + Unpin + 'a,
) -> Result<Pin<Box<dyn AsyncRead + Send + 'a>>> {
    let mut buf = BufReader::with_capacity(256 * 1024, reader);
    let head = buf.fill_buf().await?;
    Ok(match Compression::of(head) {
        Compression::Bzip2 => {
            let mut d = async_compression::tokio::bufread::BzDecoder::new(buf);
            d.multiple_members(true);
            Box::pin(d)
        }
        Compression::Xz => Box::pin(XzDecoder::new(buf)),
        // gzip, zstd or plain: oci-rs-layer's reader, which tells them by the same bytes.
        _ => oci_rs_layer::decompress(buf, None).await?,
    })
}

/// Whether the file `f` is an archive `ADD` unpacks, as BuildKit tells one
/// (`isArchivePath`): its bytes, decompressed as their first bytes tell, start with a tar
/// header (a block whose checksum holds). A decoder that fails on them, or a first block
/// that is not a header (an empty tar's zeros too), makes it a file that is copied as it
/// is, whatever its name says: `notes.txt.gz` of text is copied, not unpacked.
pub(super) async fn is_archive(f: std::fs::File) -> bool {
    let Ok(mut r) = decompress(tokio::fs::File::from_std(f)).await else {
        return false;
    };
    let mut block = [0u8; 512];
    r.read_exact(&mut block).await.is_ok() && is_tar_header(&block)
}

/// Whether `block` is a tar header as Go's `archive/tar` takes one: not all zeros, and its
/// checksum field (octal, spaces and NULs around it) the sum of its bytes, unsigned or
/// signed, with that field counted as spaces. Any format (v7, ustar, GNU, PAX) passes.
pub(super) fn is_tar_header(block: &[u8; 512]) -> bool {
    if block.iter().all(|b| *b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text = field
        .iter()
        .map(|&b| b as char)
        .collect::<String>()
        .trim_matches([' ', '\0'])
        .to_owned();
    let want = if text.is_empty() {
        0
    } else {
        match i64::from_str_radix(&text, 8) {
            Ok(v) => v,
            Err(_) => return false,
        }
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    want == unsigned || want == signed
}

/// An xz stream (or several, one after another) decoded as it is read: lzma-rust2's
/// sans-I/O [`lzma_rust2::XzStream`] fed from a buffered reader. Checks are verified; a
/// stream cut short is an error, never a short read taken for the end.
pub(super) struct XzDecoder<R> {
    inner: R,
    stream: lzma_rust2::XzStream,
    done: bool,
}

impl<R> XzDecoder<R> {
    /// A decoder reading the compressed bytes from `inner`.
    pub(super) fn new(inner: R) -> Self {
        Self {
            inner,
            stream: lzma_rust2::XzStream::new_mem_limit(true, XZ_MEM_LIMIT_KIB),
            done: false,
        }
    }
}

impl<R: AsyncBufRead + Unpin> AsyncRead for XzDecoder<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        use lzma_rust2::{Action, Status};
        let this = self.get_mut();
        if this.done || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let input = ready!(Pin::new(&mut this.inner).poll_fill_buf(cx))?;
            let end = input.is_empty();
            let action = if end { Action::Finish } else { Action::Run };
            let out = buf.initialize_unfilled();
            let r = this.stream.process(input, out, action)?;
            Pin::new(&mut this.inner).consume(r.bytes_consumed);
            buf.advance(r.bytes_produced);
            if r.status == Status::StreamEnd {
                this.done = true;
                return Poll::Ready(Ok(()));
            }
            if r.bytes_produced > 0 {
                return Poll::Ready(Ok(()));
            }
            if end && r.bytes_consumed == 0 {
                // Told the input is over, the decoder neither ended nor moved.
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the xz stream ends early",
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn header(name: &str) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[..name.len()].copy_from_slice(name.as_bytes());
        b[100..107].copy_from_slice(b"0000644");
        b[124..135].copy_from_slice(b"00000000000");
        b[156] = b'0';
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        b[148..156].copy_from_slice(b"        ");
        let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
        let text = format!("{sum:06o}\0 ");
        b[148..156].copy_from_slice(text.as_bytes());
        b
    }

    #[test]
    fn a_tar_header_is_told_by_its_checksum() {
        let h = header("a.txt");
        assert!(is_tar_header(&h));
        // A v7 header (no magic) with its checksum right passes too.
        let mut v7 = header("b");
        v7[257..265].fill(0);
        v7[148..156].fill(b' ');
        let sum: u32 = v7.iter().map(|&x| u32::from(x)).sum();
        v7[148..156].copy_from_slice(format!("{sum:07o}\0").as_bytes());
        assert!(is_tar_header(&v7));
        let mut bad = h;
        bad[0] = b'x';
        assert!(!is_tar_header(&bad));
        assert!(!is_tar_header(&[0u8; 512]));
        let mut text = [b'a'; 512];
        text[511] = b'\n';
        assert!(!is_tar_header(&text));
    }

    #[test]
    fn compressions_are_told_by_their_magic_numbers() {
        assert_eq!(Compression::of(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::of(b"BZh91AY&SY"), Compression::Bzip2);
        assert_eq!(
            Compression::of(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Compression::Xz
        );
        assert_eq!(
            Compression::of(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::of(b"plain"), Compression::None);
        assert_eq!(Compression::of(b""), Compression::None);
    }

    /// xz's smallest stream: an empty one (`printf '' | xz | xxd -i`), and the same cut
    /// short, which must fail rather than read as empty.
    #[tokio::test]
    async fn an_xz_stream_decodes_and_a_cut_one_fails() {
        let empty: &[u8] = &[
            0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00, 0x04, 0xe6, 0xd6, 0xb4, 0x46, 0x00, 0x00,
            0x00, 0x00, 0x1c, 0xdf, 0x44, 0x21, 0x1f, 0xb6, 0xf3, 0x7d, 0x01, 0x00, 0x00, 0x00,
            0x00, 0x04, 0x59, 0x5a,
        ];
        let mut out = Vec::new();
        XzDecoder::new(empty).read_to_end(&mut out).await.unwrap();
        assert!(out.is_empty());
        // Two streams one after the other are one output.
        let two = [empty, empty].concat();
        let mut out = Vec::new();
        XzDecoder::new(&two[..])
            .read_to_end(&mut out)
            .await
            .unwrap();
        let mut out = Vec::new();
        let err = XzDecoder::new(&empty[..20])
            .read_to_end(&mut out)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    }
}

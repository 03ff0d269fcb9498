//! A streaming reader that checks size and digest while the bytes pass through.

use crate::digest::Hasher;
use crate::error::{Error, Result};
use oci_spec::image::{Descriptor, Digest};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// Wraps an [`AsyncRead`] and verifies what it yields against an expected digest and size.
///
/// Bytes are passed on as they arrive; the reader fails with an `io::Error` of kind
/// `InvalidData` wrapping [`Error::SizeExceeded`] as soon as the stream goes past the expected
/// size, and at end of stream with [`Error::SizeMismatch`] or [`Error::DigestMismatch`].
/// Use [`Error::from_io`] to get the typed error back. A consumer that reads to EOF without an
/// error has therefore seen exactly the promised bytes; one that stops early has proven nothing.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tokio::io::AsyncReadExt;
/// let data = b"hello world";
/// let digest = oci_rs_image::sha256(data);
/// let mut r = oci_rs_image::VerifyingReader::new(&data[..], digest, Some(11))?;
/// let mut out = Vec::new();
/// r.read_to_end(&mut out).await?;
/// assert!(r.is_verified());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Digest,
    size: Option<u64>,
    read: u64,
    verified: bool,
}

impl<R> VerifyingReader<R> {
    /// Verifies `inner` against `expected` and, when given, `size`.
    pub fn new(inner: R, expected: Digest, size: Option<u64>) -> Result<Self> {
        let hasher = Hasher::for_digest(&expected)?;
        Ok(Self {
            inner,
            hasher: Some(hasher),
            expected,
            size,
            read: 0,
            verified: false,
        })
    }

    /// Verifies `inner` against a descriptor's digest and size.
    pub fn for_descriptor(inner: R, desc: &Descriptor) -> Result<Self> {
        Self::new(inner, desc.digest().clone(), Some(desc.size()))
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// True once end of stream was reached and size and digest matched.
    pub fn is_verified(&self) -> bool {
        self.verified
    }

    /// The digest being checked for.
    pub fn expected(&self) -> &Digest {
        &self.expected
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn finish(&mut self) -> Result<()> {
        let Some(hasher) = self.hasher.take() else {
            return Ok(());
        };
        if let Some(size) = self.size {
            if self.read != size {
                return Err(Error::SizeMismatch {
                    digest: self.expected.clone(),
                    expected: size,
                    actual: self.read,
                });
            }
        }
        let actual = hasher.finish();
        if actual != self.expected {
            return Err(Error::DigestMismatch {
                expected: self.expected.clone(),
                actual,
            });
        }
        self.verified = true;
        Ok(())
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for VerifyingReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.verified {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if new.is_empty() {
                    return Poll::Ready(this.finish().map_err(Error::into_io));
                }
                this.read += new.len() as u64;
                if let Some(size) = this.size {
                    if this.read > size {
                        // Hand out nothing of what went past the promise.
                        buf.set_filled(before);
                        this.hasher = None;
                        return Poll::Ready(Err(Error::SizeExceeded {
                            digest: this.expected.clone(),
                            expected: size,
                        }
                        .into_io()));
                    }
                }
                match this.hasher.as_mut() {
                    Some(h) => h.update(new),
                    None => {
                        // A read after a failure: refuse rather than pass unverified bytes on.
                        buf.set_filled(before);
                        return Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "read after verification failure",
                        )));
                    }
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// Hashes (sha256) and counts what is read through it, for digests computed on the way, such
/// as a layer's DiffID while it is compressed or applied.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: crate::digest::Hasher,
    bytes: u64,
}

impl<R> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: crate::digest::Hasher::default(),
            bytes: 0,
        }
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The digest of what was read, and the reader.
    pub fn finish(self) -> (Digest, R) {
        (self.hasher.finish(), self.inner)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for HashingReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let new = &buf.filled()[before..];
            this.hasher.update(new);
            this.bytes += new.len() as u64;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256;
    use tokio::io::AsyncReadExt;

    async fn read_all(data: &[u8], digest: Digest, size: Option<u64>) -> Result<Vec<u8>> {
        let mut r = VerifyingReader::new(data, digest, size)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.map_err(Error::from_io)?;
        assert!(r.is_verified());
        Ok(out)
    }

    #[tokio::test]
    async fn accepts_exact_content() {
        let out = read_all(b"abc", sha256(b"abc"), Some(3)).await.unwrap();
        assert_eq!(out, b"abc");
        read_all(b"abc", sha256(b"abc"), None).await.unwrap();
    }

    #[tokio::test]
    async fn refuses_truncated_stream() {
        let err = read_all(b"ab", sha256(b"abc"), Some(3)).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::SizeMismatch {
                    expected: 3,
                    actual: 2,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn refuses_overrun_before_eof() {
        let data = vec![7u8; 100_000];
        let err = read_all(&data, sha256(&data[..10]), Some(10))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::SizeExceeded { expected: 10, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn refuses_wrong_bytes_naming_both_digests() {
        let err = read_all(b"abd", sha256(b"abc"), Some(3)).await.unwrap_err();
        match err {
            Error::DigestMismatch { expected, actual } => {
                assert_eq!(expected, sha256(b"abc"));
                assert_eq!(actual, sha256(b"abd"));
            }
            other => panic!("unexpected {other}"),
        }
    }
}

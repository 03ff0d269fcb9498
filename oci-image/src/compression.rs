//! How a layer blob is compressed.

/// How a layer blob is compressed, by media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (one or several members).
    Gzip,
    /// zstd (one or several frames).
    Zstd,
}

impl Compression {
    /// The compression that a blob's first bytes show (gzip and zstd magic numbers).
    pub fn from_magic(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

//! The module of [`parse_digest`], whose docs say what it is for (the module is private).

use crate::error::{Error, Result};
use oci_spec::image::{Digest, DigestAlgorithm};
use sha2::Digest as _;

/// Digests: parsing with validation, hashing (sha256, sha512), and safe path components.
///
/// The digest type itself is [`oci_spec::image::Digest`]; this module adds what is needed to
/// compute one and to use one safely in a file path or URL.
///
/// Parses and validates a digest string.
///
/// Only `sha256` and `sha512` are accepted, with exactly 64 or 128 lowercase hex characters,
/// so the result can be used as a path component or in a URL without further checks.
///
/// ```
/// let d = oci_rs_image::parse_digest(
///     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
/// )?;
/// assert_eq!(d.digest().len(), 64);
/// assert!(oci_rs_image::parse_digest("sha256:../../x").is_err());
/// # Ok::<(), oci_rs_image::Error>(())
/// ```
pub fn parse_digest(s: &str) -> Result<Digest> {
    let d: Digest = s
        .parse()
        .map_err(|e: oci_spec::OciSpecError| Error::InvalidDigest {
            input: s.to_owned(),
            reason: e.to_string(),
        })?;
    check_supported(&d)?;
    Ok(d)
}

/// Checks that a digest (perhaps deserialised from untrusted JSON) uses an algorithm this crate
/// computes. oci-spec already guarantees the hex form of sha256/sha384/sha512.
pub fn check_supported(d: &Digest) -> Result<()> {
    match d.algorithm() {
        DigestAlgorithm::Sha256 | DigestAlgorithm::Sha512 => Ok(()),
        other => Err(Error::UnsupportedAlgorithm {
            algorithm: other.to_string(),
            digest: d.to_string(),
        }),
    }
}

/// The `(algorithm, hex)` pair of a digest, checked to be safe as two path components
/// (`blobs/<alg>/<hex>`) or URL segments.
pub fn path_components(d: &Digest) -> Result<(&'static str, &str)> {
    check_supported(d)?;
    let alg = match d.algorithm() {
        DigestAlgorithm::Sha256 => "sha256",
        _ => "sha512",
    };
    let hex = d.digest();
    // oci-spec checks length and lowercase hex for sha families; check again, cheaply, since a
    // path built from this must never escape its directory.
    if hex.is_empty()
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(Error::InvalidDigest {
            input: d.to_string(),
            reason: "not lowercase hex".into(),
        });
    }
    Ok((alg, hex))
}

/// An incremental hasher for one of the supported algorithms.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 (uses SHA-NI when the CPU has it).
    Sha256(sha2::Sha256),
    /// SHA-512.
    Sha512(sha2::Sha512),
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hasher::Sha256(_) => f.write_str("Hasher(sha256)"),
            Hasher::Sha512(_) => f.write_str("Hasher(sha512)"),
        }
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher::Sha256(sha2::Sha256::new())
    }
}

impl Hasher {
    /// A hasher for the algorithm of `expected`.
    pub fn for_digest(expected: &Digest) -> Result<Self> {
        Self::new(expected.algorithm()).map_err(|_| Error::UnsupportedAlgorithm {
            algorithm: expected.algorithm().to_string(),
            digest: expected.to_string(),
        })
    }

    /// A hasher for `algorithm`.
    pub fn new(algorithm: &DigestAlgorithm) -> Result<Self> {
        match algorithm {
            DigestAlgorithm::Sha256 => Ok(Hasher::Sha256(sha2::Sha256::new())),
            DigestAlgorithm::Sha512 => Ok(Hasher::Sha512(sha2::Sha512::new())),
            other => Err(Error::UnsupportedAlgorithm {
                algorithm: other.to_string(),
                digest: String::new(),
            }),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let (alg, bytes) = match self {
            Hasher::Sha256(h) => ("sha256", h.finalize().to_vec()),
            Hasher::Sha512(h) => ("sha512", h.finalize().to_vec()),
        };
        let s = format!("{alg}:{}", to_hex(&bytes));
        // A hex string of the right length for a known algorithm always parses.
        s.parse()
            .unwrap_or_else(|_| unreachable!("computed digest {s} must parse"))
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0xf) as usize] as char);
    }
    s
}

/// The sha256 digest of `data`.
///
/// ```
/// let d = oci_rs_image::sha256(b"");
/// assert_eq!(d.to_string(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
/// ```
pub fn sha256(data: &[u8]) -> Digest {
    let mut h = Hasher::default();
    h.update(data);
    h.finish()
}

/// The digest of `data` with `algorithm`.
pub fn digest_of(algorithm: &DigestAlgorithm, data: &[u8]) -> Result<Digest> {
    let mut h = Hasher::new(algorithm)?;
    h.update(data);
    Ok(h.finish())
}

/// Checks bytes held in memory against a digest and size.
pub fn verify_bytes(data: &[u8], expected: &Digest, size: Option<u64>) -> Result<()> {
    if let Some(size) = size {
        let actual = data.len() as u64;
        if actual < size {
            return Err(Error::SizeMismatch {
                digest: expected.clone(),
                expected: size,
                actual,
            });
        }
        if actual > size {
            return Err(Error::SizeExceeded {
                digest: expected.clone(),
                expected: size,
            });
        }
    }
    let mut h = Hasher::for_digest(expected)?;
    h.update(data);
    let actual = h.finish();
    if &actual != expected {
        return Err(Error::DigestMismatch {
            expected: expected.clone(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            sha256(b"abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let d = digest_of(&DigestAlgorithm::Sha512, b"abc").unwrap();
        assert!(d.to_string().starts_with("sha512:ddaf35a193617aba"));
    }

    #[test]
    fn hostile_digest_strings_are_refused() {
        for s in [
            "sha256:../../x",
            "sha256:",
            ":abc",
            "sha256",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/..",
            "foo+bar:../etc",
        ] {
            assert!(parse_digest(s).is_err(), "{s} accepted");
        }
    }

    #[test]
    fn verify_bytes_reports_each_failure() {
        let d = sha256(b"hello");
        verify_bytes(b"hello", &d, Some(5)).unwrap();
        assert!(matches!(
            verify_bytes(b"hell", &d, Some(5)),
            Err(Error::SizeMismatch { actual: 4, .. })
        ));
        assert!(matches!(
            verify_bytes(b"hello!", &d, Some(5)),
            Err(Error::SizeExceeded { .. })
        ));
        assert!(matches!(
            verify_bytes(b"jello", &d, Some(5)),
            Err(Error::DigestMismatch { .. })
        ));
    }

    proptest! {
        #[test]
        fn computed_digests_round_trip(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            for alg in [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512] {
                let d = digest_of(&alg, &data).unwrap();
                let again = parse_digest(d.as_ref()).unwrap();
                prop_assert_eq!(&again, &d);
                let (a, hex) = path_components(&d).unwrap();
                prop_assert_eq!(format!("{a}:{hex}"), d.to_string());
            }
        }

        #[test]
        fn parse_never_yields_unsafe_components(s in "\\PC{0,80}") {
            if let Ok(d) = parse_digest(&s) {
                let (_, hex) = path_components(&d).unwrap();
                prop_assert!(!hex.contains('/') && !hex.contains('.'));
            }
        }
    }
}

//! Platforms: the host's, parsing `os/arch[/variant]`, and choosing an index entry the way
//! people expect (x86_64 is amd64, aarch64 is arm64, arm64 means arm64/v8, arm/v7 may fall back
//! to v6 and v5).

use crate::error::{Error, Result};
use oci_spec::image::{Descriptor, ImageIndex, Platform};
use std::fmt;
use std::str::FromStr;

/// A wanted platform, normalised. Build one with [`PlatformSpec::host`] or by parsing
/// `os/arch[/variant]`.
///
/// ```
/// use oci_rs_image::PlatformSpec;
/// let p: PlatformSpec = "linux/aarch64".parse()?;
/// assert_eq!(p.to_string(), "linux/arm64/v8");
/// let p: PlatformSpec = "linux/x86_64".parse()?;
/// assert_eq!(p.to_string(), "linux/amd64");
/// # Ok::<(), oci_rs_image::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlatformSpec {
    /// Operating system (`linux`).
    pub os: String,
    /// Architecture, normalised (`amd64`, `arm64`, `arm`, `386`, ...).
    pub architecture: String,
    /// Variant, normalised (`v8` for arm64, `v7` for arm, ...), if any.
    pub variant: Option<String>,
    /// Required `os.version`, if any.
    pub os_version: Option<String>,
    /// Required `os.features` (all must be present), if any.
    pub os_features: Vec<String>,
    /// Accept lower arm variants (v7 -> v6 -> v5) when the exact one is missing.
    pub arm_fallback: bool,
}

/// Normalises an architecture name and variant as docker and containerd do.
pub fn normalize(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant
        .filter(|v| !v.is_empty())
        .map(|v| v.to_ascii_lowercase());
    match arch.as_str() {
        "x86_64" | "x86-64" | "amd64" => (
            "amd64".into(),
            variant.filter(|v| v != "v1"), // v1 is the baseline, the same as no variant
        ),
        "aarch64" | "arm64" => (
            "arm64".into(),
            Some(match variant.as_deref() {
                None | Some("8") | Some("v8") => "v8".to_owned(),
                Some(v) => v.to_owned(),
            }),
        ),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "arm" => (
            "arm".into(),
            variant.map(|v| match v.as_str() {
                "5" | "6" | "7" | "8" => format!("v{v}"),
                _ => v,
            }),
        ),
        "i386" | "i486" | "i586" | "i686" | "386" => ("386".into(), variant),
        _ => (arch, variant),
    }
}

impl PlatformSpec {
    /// The platform of the running machine.
    pub fn host() -> Self {
        let (architecture, variant) = normalize(std::env::consts::ARCH, None);
        let variant = if architecture == "arm" {
            Some("v7".to_owned())
        } else {
            variant
        };
        Self {
            os: std::env::consts::OS.to_owned(),
            architecture,
            variant,
            os_version: None,
            os_features: Vec::new(),
            arm_fallback: true,
        }
    }

    /// A platform from its parts (normalised).
    pub fn new(os: &str, arch: &str, variant: Option<&str>) -> Self {
        let (architecture, variant) = normalize(arch, variant);
        Self {
            os: os.to_ascii_lowercase(),
            architecture,
            variant,
            os_version: None,
            os_features: Vec::new(),
            arm_fallback: false,
        }
    }

    /// Allows arm fallback to lower variants.
    pub fn with_arm_fallback(mut self, yes: bool) -> Self {
        self.arm_fallback = yes;
        self
    }

    /// How well a candidate matches: `Some(0)` exact, higher is a worse fallback, `None` no match.
    pub fn rank(&self, p: &Platform) -> Option<u32> {
        if p.os().to_string() != self.os {
            return None;
        }
        let (arch, variant) = normalize(&p.architecture().to_string(), p.variant().as_deref());
        if arch != self.architecture {
            return None;
        }
        if let Some(want) = &self.os_version {
            if let Some(have) = p.os_version() {
                if have != want {
                    return None;
                }
            }
        }
        if !self.os_features.is_empty() {
            let have = p.os_features().clone().unwrap_or_default();
            if !self.os_features.iter().all(|f| have.contains(f)) {
                return None;
            }
        }
        match (&self.variant, &variant) {
            (None, _) => Some(0),
            (Some(w), Some(h)) if w == h => Some(0),
            (Some(w), h) if self.architecture == "arm" && self.arm_fallback => {
                let order = ["v8", "v7", "v6", "v5"];
                let wi = order.iter().position(|v| v == w)?;
                let hi = order.iter().position(|v| Some(*v) == h.as_deref())?;
                (hi > wi).then(|| (hi - wi) as u32)
            }
            _ => None,
        }
    }

    /// True when the candidate platform is acceptable.
    pub fn matches(&self, p: &Platform) -> bool {
        self.rank(p).is_some()
    }
}

impl fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for PlatformSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidPlatform {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| {
            p.is_empty()
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        }) {
            return Err(bad(
                "expected os/arch[/variant] of letters, digits, `_`, `-`, `.`",
            ));
        }
        const OSES: [&str; 8] = [
            "linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "illumos", "solaris",
        ];
        match parts.as_slice() {
            // containerd's short forms: `linux` is the host's architecture on that OS,
            // `arm64` (or `aarch64`, `x86_64`, ...) that architecture on linux.
            [one] if OSES.contains(&one.to_ascii_lowercase().as_str()) => {
                let host = Self::host();
                Ok(Self::new(one, &host.architecture, host.variant.as_deref()))
            }
            [arch] => Ok(Self::new("linux", arch, None)),
            [os, arch] => Ok(Self::new(os, arch, None)),
            [os, arch, variant] => Ok(Self::new(os, arch, Some(variant))),
            _ => Err(bad("expected os/arch[/variant]")),
        }
    }
}

/// Formats a platform as `os/arch[/variant]`.
pub fn platform_string(p: &Platform) -> String {
    let mut s = format!("{}/{}", p.os(), p.architecture());
    if let Some(v) = p.variant().as_deref().filter(|v| !v.is_empty()) {
        s.push('/');
        s.push_str(v);
    }
    s
}

/// True for index entries that are not runnable images: attestations and `unknown/unknown`.
pub fn is_attestation(desc: &Descriptor) -> bool {
    let unknown = desc.platform().as_ref().is_some_and(|p| {
        p.os().to_string() == "unknown" || p.architecture().to_string() == "unknown"
    });
    let annotated = desc.annotations().as_ref().is_some_and(|a| {
        a.get("vnd.docker.reference.type")
            .is_some_and(|t| t == "attestation-manifest")
    });
    unknown || annotated
}

/// Chooses the index entry that best matches `wanted`; on a tie the first entry wins.
///
/// Entries without a platform, attestations and `unknown/unknown` entries are never chosen. When
/// nothing matches, the error lists the platforms the index offers.
pub fn select<'a>(index: &'a ImageIndex, wanted: &PlatformSpec) -> Result<&'a Descriptor> {
    let mut best: Option<(u32, &Descriptor)> = None;
    for d in index.manifests() {
        if is_attestation(d) {
            continue;
        }
        let Some(p) = d.platform() else { continue };
        if let Some(rank) = wanted.rank(p) {
            if best.is_none_or(|(r, _)| rank < r) {
                best = Some((rank, d));
            }
        }
    }
    best.map(|(_, d)| d)
        .ok_or_else(|| Error::NoMatchingPlatform {
            wanted: wanted.to_string(),
            available: index
                .manifests()
                .iter()
                .filter(|d| !is_attestation(d))
                .filter_map(|d| d.platform().as_ref().map(platform_string))
                .collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        let entries: Vec<String> = platforms
            .iter()
            .enumerate()
            .map(|(i, (os, arch, v))| {
                let variant = v.map(|v| format!(r#","variant":"{v}""#)).unwrap_or_default();
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{:064x}","size":1,"platform":{{"os":"{os}","architecture":"{arch}"{variant}}}}}"#,
                    i + 1
                )
            })
            .collect();
        serde_json::from_str(&format!(
            r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
            entries.join(",")
        ))
        .unwrap()
    }

    fn pick(idx: &ImageIndex, want: &PlatformSpec) -> Option<u64> {
        select(idx, want)
            .ok()
            .map(|d| u64::from_str_radix(&d.digest().digest()[48..], 16).unwrap())
    }

    #[test]
    fn short_forms_parse_as_containerd_reads_them() {
        let a: PlatformSpec = "arm64".parse().unwrap();
        let b: PlatformSpec = "linux/arm64/v8".parse().unwrap();
        let c: PlatformSpec = "linux/aarch64".parse().unwrap();
        assert_eq!(
            (&a.os, &a.architecture, &a.variant),
            (&b.os, &b.architecture, &b.variant)
        );
        assert_eq!((&a.architecture, &a.variant), (&c.architecture, &c.variant));
        assert_eq!(a.os, "linux");
        let l: PlatformSpec = "linux".parse().unwrap();
        assert_eq!(l.architecture, PlatformSpec::host().architecture);
        assert!("".parse::<PlatformSpec>().is_err());
        assert!("linux/arm64/v8/x".parse::<PlatformSpec>().is_err());
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalize("x86_64", None), ("amd64".into(), None));
        assert_eq!(
            normalize("aarch64", None),
            ("arm64".into(), Some("v8".into()))
        );
        assert_eq!(
            normalize("arm64", Some("8")),
            ("arm64".into(), Some("v8".into()))
        );
        assert_eq!(normalize("armhf", None), ("arm".into(), Some("v7".into())));
        assert_eq!(
            normalize("arm", Some("7")),
            ("arm".into(), Some("v7".into()))
        );
        assert_eq!(normalize("i686", None), ("386".into(), None));
    }

    #[test]
    fn selects_like_docker() {
        let idx = index(&[
            ("linux", "amd64", None),
            ("linux", "arm64", Some("v8")),
            ("linux", "arm", Some("v6")),
            ("linux", "arm", Some("v7")),
            ("unknown", "unknown", None),
        ]);
        assert_eq!(pick(&idx, &"linux/amd64".parse().unwrap()), Some(1));
        assert_eq!(pick(&idx, &"linux/x86_64".parse().unwrap()), Some(1));
        assert_eq!(pick(&idx, &"linux/aarch64".parse().unwrap()), Some(2));
        assert_eq!(pick(&idx, &"linux/arm64/v8".parse().unwrap()), Some(2));
        assert_eq!(pick(&idx, &"linux/arm/v7".parse().unwrap()), Some(4));
        assert_eq!(pick(&idx, &"linux/arm/v6".parse().unwrap()), Some(3));
        // arm64 entry without variant matches arm64/v8.
        let idx2 = index(&[("linux", "arm64", None)]);
        assert_eq!(pick(&idx2, &"linux/arm64/v8".parse().unwrap()), Some(1));
    }

    #[test]
    fn arm_falls_back_only_when_asked() {
        let idx = index(&[("linux", "arm", Some("v5")), ("linux", "arm", Some("v6"))]);
        let strict: PlatformSpec = "linux/arm/v7".parse().unwrap();
        assert!(pick(&idx, &strict).is_none());
        assert_eq!(pick(&idx, &strict.clone().with_arm_fallback(true)), Some(2));
    }

    #[test]
    fn os_version_and_features_are_honoured() {
        let m = crate::Manifest::parse(format!(
            r#"{{"schemaVersion":2,"manifests":[
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{:064x}","size":1,"platform":{{"os":"windows","architecture":"amd64","os.version":"10.0.17763.1"}}}},
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{:064x}","size":1,"platform":{{"os":"windows","architecture":"amd64","os.version":"10.0.20348.1","os.features":["win32k"]}}}}]}}"#,
            1, 2
        ), None)
        .unwrap();
        let idx = m.as_index().unwrap();
        let mut want: PlatformSpec = "windows/amd64".parse().unwrap();
        want.os_version = Some("10.0.20348.1".into());
        assert_eq!(pick(idx, &want), Some(2));
        want.os_version = None;
        want.os_features = vec!["win32k".into()];
        assert_eq!(pick(idx, &want), Some(2));
        want.os_features = vec!["nope".into()];
        assert!(pick(idx, &want).is_none());
    }

    #[test]
    fn no_match_lists_what_is_available() {
        let idx = index(&[
            ("linux", "amd64", None),
            ("linux", "arm", Some("v7")),
            ("unknown", "unknown", None),
        ]);
        let err = select(&idx, &"linux/s390x".parse().unwrap()).unwrap_err();
        match &err {
            Error::NoMatchingPlatform { wanted, available } => {
                assert_eq!(wanted, "linux/s390x");
                assert_eq!(
                    available,
                    &vec!["linux/amd64".to_owned(), "linux/arm/v7".to_owned()]
                );
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("linux/amd64, linux/arm/v7"));
    }

    #[test]
    fn bad_platform_strings() {
        for bad in ["", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(bad.parse::<PlatformSpec>().is_err(), "{bad:?}");
        }
        assert_eq!(PlatformSpec::host().os, std::env::consts::OS);
    }
}

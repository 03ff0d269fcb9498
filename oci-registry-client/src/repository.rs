//! Registry and repository names, validated before they reach a URL, with Docker Hub's
//! naming rules.

use crate::error::{Error, Result};
use oci_rs_image::ManifestRef;
use std::fmt;

/// The registry name Docker Hub images use in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

/// A repository in a registry: `(registry, name)`, both validated.
///
/// The registry is the name from the reference (`docker.io`, `localhost:5000`); the
/// repository name is path components of lowercase letters, digits and separators as the
/// distribution spec allows, so it is safe in a URL path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repository {
    registry: String,
    name: String,
}

impl Repository {
    /// A repository, validated; `docker.io` single-component names get `library/`.
    pub fn new(registry: &str, name: &str) -> Result<Self> {
        validate_registry(registry)?;
        let registry = normalize_registry(registry);
        let name = if registry == DOCKER_HUB && !name.contains('/') {
            format!("library/{name}")
        } else {
            name.to_owned()
        };
        validate_repository(&name)?;
        Ok(Self { registry, name })
    }

    /// Splits an image reference (`localhost:5000/app:1`, `alpine`, `ghcr.io/o/r@sha256:...`)
    /// into the repository and what to fetch from it, with docker's defaults (`docker.io`,
    /// `library/`, `latest`).
    pub fn parse_reference(reference: &str) -> Result<(Self, ManifestRef)> {
        let r = oci_rs_image::ImageReference::parse(reference).map_err(|e| Error::InvalidName {
            name: reference.to_owned(),
            reason: format!("{e}"),
        })?;
        let repo = Self::new(r.registry(), r.repository())?;
        let what = r.manifest_ref();
        Ok((repo, what))
    }

    /// The registry name (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository name (`library/alpine`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.name)
    }
}

/// `index.docker.io` and `registry-1.docker.io` are `docker.io`; names are lowercased.
pub fn normalize_registry(registry: &str) -> String {
    let r = registry.to_ascii_lowercase();
    match r.as_str() {
        "index.docker.io" | DOCKER_HUB_HOST => DOCKER_HUB.to_owned(),
        _ => r,
    }
}

/// A registry name is a host (DNS name, IPv4, or bracketed IPv6) with an optional port.
pub fn validate_registry(registry: &str) -> Result<()> {
    let bad = |reason: &str| Error::InvalidName {
        name: registry.to_owned(),
        reason: reason.to_owned(),
    };
    if registry.is_empty() || registry.len() > 255 {
        return Err(bad("empty or too long registry name"));
    }
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        if h.is_empty()
            || !h
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        {
            return Err(bad("invalid IPv6 address"));
        }
        let port = if after.is_empty() {
            None
        } else {
            Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| bad("text after ']'"))?,
            )
        };
        (None, port)
    } else {
        match registry.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(registry), None),
        }
    };
    if let Some(h) = host {
        if h.is_empty()
            || !h
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-')
            || h.starts_with(['.', '-'])
        {
            return Err(bad("invalid host name"));
        }
    }
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad("invalid port"));
        }
    }
    Ok(())
}

/// Repository names: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn validate_repository(name: &str) -> Result<()> {
    let bad = |reason: &str| Error::InvalidName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() || name.len() > 255 {
        return Err(bad("empty or too long repository name"));
    }
    if !name.split('/').all(oci_rs_image::valid_path_component) {
        return Err(bad(
            "each path component: lowercase letters and digits joined by '.', '_', '__' or '-'",
        ));
    }
    Ok(())
}

/// Tags: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<()> {
    let ok = oci_rs_image::valid_tag(tag);
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            name: tag.to_owned(),
            reason: "not a valid tag".into(),
        })
    }
}

/// The URL path segment for a manifest reference (validated tag or digest).
pub(crate) fn reference_segment(r: &ManifestRef) -> Result<String> {
    match r {
        ManifestRef::Tag(t) => {
            validate_tag(t)?;
            Ok(t.clone())
        }
        ManifestRef::Digest(d) => {
            oci_rs_image::check_digest_algorithm(d)?;
            Ok(d.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_naming() {
        let (r, m) = Repository::parse_reference("alpine").unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.name(), "library/alpine");
        assert_eq!(m, ManifestRef::Tag("latest".into()));
        let r = Repository::new("index.docker.io", "busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox");
        let (r, m) = Repository::parse_reference("localhost:5000/a/b:v1").unwrap();
        assert_eq!((r.registry(), r.name()), ("localhost:5000", "a/b"));
        assert_eq!(m, ManifestRef::Tag("v1".into()));
    }

    #[test]
    fn refuses_path_tricks() {
        for n in [
            "../x", "a//b", "A", "a/", "a/../b", "a%2fb", "a?b", "-a", "a..b", "a___b",
        ] {
            assert!(validate_repository(n).is_err(), "{n}");
        }
        for n in ["a", "a/b", "a-b/c.d", "a__b", "a---b/c_d"] {
            validate_repository(n).unwrap();
        }
        for t in ["../x", "a/b", ".x", "", "a?b"] {
            assert!(validate_tag(t).is_err(), "{t}");
        }
        for r in ["host/x", "a b", "h:xx", ":5000", "[zz]", "h@x"] {
            assert!(validate_registry(r).is_err(), "{r}");
        }
        for r in ["localhost:5000", "127.0.0.1:1", "[::1]:5000", "ghcr.io"] {
            validate_registry(r).unwrap();
        }
    }
}

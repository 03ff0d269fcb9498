//! Image references with docker's normalisation (`busybox` is
//! `docker.io/library/busybox:latest`), on top of [`oci_spec::distribution::Reference`].

use crate::digest::parse_digest;
use crate::error::{Error, Result};
use crate::transfer::ManifestRef;
use oci_spec::distribution::Reference;
use oci_spec::image::Digest;
use std::fmt;
use std::str::FromStr;

/// The registry host docker uses for the `docker.io` name.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// A parsed, normalised image reference: registry, repository, and a tag, a digest or both.
///
/// ```
/// use oci_image::ImageReference;
/// let r: ImageReference = "busybox".parse()?;
/// assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
/// assert_eq!(r.familiar(), "busybox:latest");
/// assert_eq!(r.api_host(), "registry-1.docker.io");
/// let r: ImageReference = "localhost:5000/team/app:v1".parse()?;
/// assert_eq!((r.registry(), r.repository(), r.tag()), ("localhost:5000", "team/app", Some("v1")));
/// # Ok::<(), oci_image::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageReference {
    /// Parses and normalises a reference.
    pub fn parse(input: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidReference {
            input: input.to_owned(),
            reason,
        };
        if input.len() > 4096 {
            return Err(bad("longer than 4096 characters".into()));
        }
        let r: Reference = input.parse().map_err(|e| bad(format!("{e}")))?;
        let repository = r.repository().to_owned();
        if repository.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad("repository name must be lowercase".into()));
        }
        if repository.len() > 255 {
            return Err(bad("repository name longer than 255 characters".into()));
        }
        let digest = r
            .digest()
            .map(|d| parse_digest(d).map_err(|e| bad(e.to_string())))
            .transpose()?;
        let tag = r.tag().map(str::to_owned);
        // A reference by digest only carries no tag; one with neither gets `latest` (oci-spec).
        Ok(Self {
            registry: r.registry().to_owned(),
            repository,
            tag,
            digest,
        })
    }

    /// A reference from its parts (validated by parsing the result).
    pub fn new(registry: &str, repository: &str, tag: Option<&str>) -> Result<Self> {
        let mut s = format!("{registry}/{repository}");
        if let Some(t) = tag {
            s.push(':');
            s.push_str(t);
        }
        Self::parse(&s)
    }

    /// The registry as named (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host to talk HTTP to: `registry-1.docker.io` for `docker.io`, else the registry.
    pub fn api_host(&self) -> &str {
        if self.registry == "docker.io" {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// The repository path (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask a source for: the digest when there is one (it pins the content), else the
    /// tag (`latest` when none was given).
    pub fn manifest_ref(&self) -> ManifestRef {
        match (&self.digest, &self.tag) {
            (Some(d), _) => ManifestRef::Digest(d.clone()),
            (None, Some(t)) => ManifestRef::Tag(t.clone()),
            (None, None) => ManifestRef::Tag("latest".to_owned()),
        }
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Self> {
        Self::new(&self.registry, &self.repository, Some(tag))
    }

    /// The same repository pinned to a digest (the tag is kept).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form docker shows: `busybox:latest`, `user/app:v1`, `localhost:5000/x:y`.
    pub fn familiar(&self) -> String {
        // Dropping `docker.io/` is only safe when the first path component cannot be taken
        // for a registry host (it has no `.` or `:` and is not `localhost`).
        let first = self.repository.split('/').next().unwrap_or("");
        let host_like = first.contains('.') || first.contains(':') || first == "localhost";
        let mut s = if self.registry == "docker.io" && !host_like {
            // `library/` goes only for official images (one component after it): the short
            // form of `library/a/b` would read back as `docker.io/a/b`.
            match self.repository.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest.to_owned(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        };
        push_suffix(&mut s, self.tag.as_deref(), self.digest.as_ref());
        s
    }
}

fn push_suffix(s: &mut String, tag: Option<&str>, digest: Option<&Digest>) {
    if let Some(t) = tag {
        s.push(':');
        s.push_str(t);
    }
    if let Some(d) = digest {
        s.push('@');
        s.push_str(d.as_ref());
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        push_suffix(&mut s, self.tag.as_deref(), self.digest.as_ref());
        f.write_str(&s)
    }
}

impl FromStr for ImageReference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn docker_normalisation() {
        for (input, full) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("user/repo", "docker.io/user/repo:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("localhost/x", "localhost/x:latest"),
            ("registry:5000/a/b:tag", "registry:5000/a/b:tag"),
            ("127.0.0.1:5000/busybox:1", "127.0.0.1:5000/busybox:1"),
        ] {
            let r = ImageReference::parse(input).unwrap();
            assert_eq!(r.to_string(), full, "{input}");
            assert_eq!(ImageReference::parse(full).unwrap(), r);
        }
    }

    #[test]
    fn digests_and_tag_plus_digest() {
        let r = ImageReference::parse(&format!("x@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().as_ref(), D);
        assert_eq!(
            r.manifest_ref(),
            ManifestRef::Digest(parse_digest(D).unwrap())
        );
        assert_eq!(r.familiar(), format!("x@{D}"));
        let r = ImageReference::parse(&format!("x:t@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/x:t@{D}"));
        assert!(matches!(r.manifest_ref(), ManifestRef::Digest(_)));
        assert_eq!(
            r.with_tag("u").unwrap().to_string(),
            "docker.io/library/x:u"
        );
    }

    #[test]
    fn familiar_form_keeps_library_for_nested_names() {
        // Found by the reference_parse fuzz target.
        let r = ImageReference::parse("library/05ibrary/055").unwrap();
        assert_eq!(r.familiar(), "library/05ibrary/055:latest");
        assert_eq!(ImageReference::parse(&r.familiar()).unwrap(), r);
    }

    #[test]
    fn familiar_forms() {
        assert_eq!(
            ImageReference::parse("busybox").unwrap().familiar(),
            "busybox:latest"
        );
        assert_eq!(ImageReference::parse("u/a:v").unwrap().familiar(), "u/a:v");
        assert_eq!(
            ImageReference::parse("localhost:5000/x:y")
                .unwrap()
                .familiar(),
            "localhost:5000/x:y"
        );
    }

    #[test]
    fn hostile_references_are_refused() {
        let long = "a".repeat(300);
        for bad in [
            "",
            " ",
            "a b",
            "Upper/x",
            "a//b",
            "../x",
            "x/..",
            "x@sha256:../../x",
            "x@sha256:abc",
            "x:tag with space",
            "x:-bad",
            long.as_str(),
        ] {
            assert!(ImageReference::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(
            host in prop_oneof![Just("docker.io".to_owned()), Just("localhost:5000".to_owned()), "[a-z]{1,8}\\.[a-z]{2,3}(:[1-9][0-9]{0,3})?"],
            parts in proptest::collection::vec("[a-z0-9]{1,6}([._-][a-z0-9]{1,4})?", 1..4),
            tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        ) {
            let repo = parts.join("/");
            let input = match &tag { Some(t) => format!("{host}/{repo}:{t}"), None => format!("{host}/{repo}") };
            let r = ImageReference::parse(&input).unwrap();
            let again = ImageReference::parse(&r.to_string()).unwrap();
            prop_assert_eq!(&again, &r);
            let fam = ImageReference::parse(&r.familiar()).unwrap();
            prop_assert_eq!(fam, r);
        }
    }
}

//! The module of [`ImageReference`], whose docs say what it is for (the module is private).

use crate::digest::parse_digest;
use crate::error::{Error, Result};
use crate::transfer::ManifestRef;
use oci_spec::image::Digest;
use std::fmt;
use std::str::FromStr;

/// The registry host docker uses for the `docker.io` name.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// Image references with docker's normalisation (`busybox` is
/// `docker.io/library/busybox:latest`).
///
/// The grammar is docker's (distribution/reference), checked by hand rather than with
/// [`oci_spec::distribution::Reference`]: that parser compiles a regular expression on first
/// use (a Unicode `\w` repeated 128 times) which took about 70 ms, paid by every command line
/// that names an image. It accepts the same references (a differential property test below
/// compares the two on generated input), except that tags are ASCII, as docker's are.
///
/// A parsed, normalised image reference: registry, repository, and a tag, a digest or both.
///
/// ```
/// use oci_rs_image::ImageReference;
/// let r: ImageReference = "busybox".parse()?;
/// assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
/// assert_eq!(r.familiar(), "busybox:latest");
/// assert_eq!(r.api_host(), "registry-1.docker.io");
/// let r: ImageReference = "localhost:5000/team/app:v1".parse()?;
/// assert_eq!((r.registry(), r.repository(), r.tag()), ("localhost:5000", "team/app", Some("v1")));
/// # Ok::<(), oci_rs_image::Error>(())
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
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => (rest, Some(d)),
            None => (input, None),
        };
        // A tag follows the last `:` that has no `/` after it (a port's has).
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(bad(format!("invalid tag {t:?}")));
            }
        }
        let digest = digest
            .map(|d| {
                if !valid_digest_syntax(d) {
                    return Err(bad("invalid digest".into()));
                }
                parse_digest(d).map_err(|e| bad(e.to_string()))
            })
            .transpose()?;
        if name.is_empty() {
            return Err(bad("no repository name".into()));
        }
        if name.len() > 255 {
            return Err(bad("repository name longer than 255 characters".into()));
        }
        if !valid_name(name) {
            return Err(bad(
                "not a repository name (lowercase letters, digits and separators, after an optional registry host)"
                    .into(),
            ));
        }
        // docker's split: the first component names a registry when it looks like a host.
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first, path)
            }
            _ => ("docker.io", name),
        };
        let registry = if registry == "index.docker.io" {
            "docker.io"
        } else {
            registry
        };
        let repository = if registry == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        if repository.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad("repository name must be lowercase".into()));
        }
        // The limit holds for the normalised name too, so that what is displayed parses again
        // (a 250-character `name` is `docker.io/library/name`: found by the fuzz target).
        if registry.len() + 1 + repository.len() > 255 {
            return Err(bad(
                "name longer than 255 characters with its registry and library/".into(),
            ));
        }
        // A reference by digest only carries no tag; one with neither gets `latest`.
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some("latest".to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry: registry.to_owned(),
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
        let mut s = self.familiar_name();
        push_suffix(&mut s, self.tag.as_deref(), self.digest.as_ref());
        s
    }

    /// [`ImageReference::familiar`] without tag or digest: docker's REPOSITORY column
    /// (`busybox`, `localhost:5000/x`).
    pub fn familiar_name(&self) -> String {
        // Dropping `docker.io/` is only safe when the first path component cannot be taken
        // for a registry host (it has no `.` or `:` and is not `localhost`).
        let first = self.repository.split('/').next().unwrap_or("");
        let host_like = first.contains('.') || first.contains(':') || first == "localhost";
        if self.registry == "docker.io" && !host_like {
            // `library/` goes only for official images (one component after it): the short
            // form of `library/a/b` would read back as `docker.io/a/b`.
            match self.repository.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest.to_owned(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        }
    }
}

/// A tag by docker's grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b[1..].iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// `ALGORITHM:HEX` with docker's algorithm grammar and at least 32 hex digits (the algorithm
/// and length proper are checked by [`parse_digest`]).
fn valid_digest_syntax(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let alg_ok = alg.split(['-', '_', '+', '.']).all(|part| {
        let b = part.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    });
    alg_ok && hex.len() >= 32 && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

/// One repository path component by docker's grammar: runs of `[a-z0-9]` joined by `.`, `_`,
/// `__` or any run of `-`.
pub fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A registry host: dot-separated labels of letters, digits and inner hyphens, and an
/// optional `:PORT`.
fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    host.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
    })
}

/// docker's `(domain/)?component(/component)*`: either every component is a path component,
/// or the first is a registry host and the rest (at least one) are path components.
fn valid_name(name: &str) -> bool {
    if name.split('/').all(valid_path_component) {
        return true;
    }
    match name.split_once('/') {
        Some((first, rest)) => valid_domain(first) && rest.split('/').all(valid_path_component),
        None => false,
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
    fn long_names_are_refused_when_normalising_makes_them_too_long() {
        // Found by the reference_parse fuzz target: accepted, then its display form refused.
        let name = "a".repeat(250);
        assert!(ImageReference::parse(&name).is_err());
        let fits = "a".repeat(255 - "docker.io/library/".len());
        let r = ImageReference::parse(&fits).unwrap();
        assert_eq!(ImageReference::parse(&r.to_string()).unwrap(), r);
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

    /// What oci-spec's regex-based parser makes of `input`, in our terms (tests only: it is
    /// the reference implementation the hand-written parser is checked against).
    fn oci_spec_view(input: &str) -> Option<(String, String, Option<String>, Option<String>)> {
        let r: oci_spec::distribution::Reference = input.parse().ok()?;
        let repository = r.repository().to_owned();
        if repository.bytes().any(|b| b.is_ascii_uppercase()) || repository.len() > 255 {
            return None;
        }
        let digest = match r.digest() {
            Some(d) => Some(parse_digest(d).ok()?.to_string()),
            None => None,
        };
        Some((
            r.registry().to_owned(),
            repository,
            r.tag().map(str::to_owned),
            digest,
        ))
    }

    fn our_view(input: &str) -> Option<(String, String, Option<String>, Option<String>)> {
        let r = ImageReference::parse(input).ok()?;
        Some((
            r.registry().to_owned(),
            r.repository().to_owned(),
            r.tag().map(str::to_owned),
            r.digest().map(|d| d.to_string()),
        ))
    }

    #[test]
    fn agrees_with_oci_spec_on_edge_cases() {
        for input in [
            "a_b.com/x",
            "User/x",
            "Foo.com/bar",
            "a.b",
            "foo:5000",
            "foo:5000/x",
            "a--b/c__d/e.f",
            "a___b",
            "a-.b",
            "-a",
            "a-",
            "localhost",
            "localhost/x",
            "localhost:5000",
            "index.docker.io/x",
            "docker.io/a/b",
            "x:",
            "x@",
            ":x",
            "/x",
            "x/",
            "host:/x",
            "host:5000:1/x",
            "a.-b.com/x",
            "x:_under",
            "x:.dot",
        ] {
            assert_eq!(our_view(input), oci_spec_view(input), "{input:?}");
        }
        for d in [
            D,
            "sha256:abc",
            "SHA256:e3b0",
            "sha512:e3b0c44298fc1c149afbf4c8996fb924",
        ] {
            let input = format!("x@{d}");
            assert_eq!(our_view(&input), oci_spec_view(&input), "{input:?}");
        }
    }

    proptest! {
        #[test]
        fn agrees_with_oci_spec(input in "[a-zA-Z0-9._:/@-]{0,40}") {
            prop_assert_eq!(our_view(&input), oci_spec_view(&input), "{:?}", input);
        }

        #[test]
        fn agrees_with_oci_spec_on_reference_shapes(
            host in proptest::option::of("[a-zA-Z0-9-]{1,6}(\\.[a-zA-Z0-9-]{1,4}){0,2}(:[0-9]{0,5})?"),
            parts in proptest::collection::vec("[a-z0-9]{0,3}([._-]{0,3}[a-z0-9]{0,3}){0,2}", 1..4),
            tag in proptest::option::of("[A-Za-z0-9_.-]{0,10}"),
            digest in proptest::option::of(Just(D)),
        ) {
            let mut input = String::new();
            if let Some(h) = &host {
                input.push_str(h);
                input.push('/');
            }
            input.push_str(&parts.join("/"));
            if let Some(t) = &tag {
                input.push(':');
                input.push_str(t);
            }
            if let Some(d) = digest {
                input.push('@');
                input.push_str(d);
            }
            prop_assert_eq!(our_view(&input), oci_spec_view(&input), "{:?}", input);
        }

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

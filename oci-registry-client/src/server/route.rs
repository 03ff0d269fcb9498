//! The distribution API's paths: which endpoint a request names, with its repository name,
//! reference or digest validated before anything touches the storage.

use oci_rs_image::oci_spec::image::Digest;
use oci_rs_image::{parse_digest, valid_path_component, valid_tag};

/// The longest repository name accepted (distribution's limit).
pub const MAX_NAME: usize = 255;

/// An endpoint of the distribution API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(String),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(String, Reference),
    /// `/v2/<name>/blobs/<digest>`
    Blob(String, Digest),
    /// `/v2/<name>/blobs/uploads/`
    Uploads(String),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(String, String),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(String, Digest),
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reference {
    Tag(String),
    Digest(Digest),
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => write!(f, "{d}"),
        }
    }
}

/// Why a path names no endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadPath {
    /// No such endpoint.
    NotFound,
    /// The repository name is not one (`NAME_INVALID`).
    Name(String),
    /// The tag is not one (`TAG_INVALID`... distribution answers `MANIFEST_INVALID`).
    Tag(String),
    /// The digest is malformed or of an algorithm not supported (`DIGEST_INVALID`).
    Digest(String),
}

/// Whether `name` is a repository name: slash-separated components of the distribution
/// grammar, at most [`MAX_NAME`] bytes. Escaped forms (`%2e%2e`) never get here: the path
/// is not percent-decoded, and `%` is no name character.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && name.split('/').all(valid_path_component)
}

fn digest(s: &str) -> Result<Digest, BadPath> {
    parse_digest(s).map_err(|_| BadPath::Digest(s.chars().take(200).collect()))
}

/// The endpoint of a request path (without its query).
pub(crate) fn route(path: &str) -> Result<Route, BadPath> {
    let Some(rest) = path.strip_prefix("/v2/") else {
        return if path == "/v2" {
            Ok(Route::Base)
        } else {
            Err(BadPath::NotFound)
        };
    };
    if rest.is_empty() {
        return Ok(Route::Base);
    }
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    // The name is everything before the last endpoint keyword.
    let name_of = |n: &str| -> Result<String, BadPath> {
        if valid_name(n) {
            Ok(n.to_owned())
        } else {
            Err(BadPath::Name(n.chars().take(300).collect()))
        }
    };
    if let Some(n) = rest.strip_suffix("/tags/list") {
        return Ok(Route::Tags(name_of(n)?));
    }
    if let Some(n) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Ok(Route::Uploads(name_of(n)?));
    }
    // The endpoint is the last keyword whose tail is one path component: a repository may
    // itself have `blobs`, `uploads` or `manifests` in its name.
    if let Some((n, id)) = rest.rsplit_once("/blobs/uploads/") {
        if !id.is_empty() && !id.contains('/') {
            return Ok(Route::Upload(name_of(n)?, id.to_owned()));
        }
    }
    if let Some((n, r)) = rest.rsplit_once("/manifests/") {
        if !r.contains('/') {
            let name = name_of(n)?;
            let reference = if r.contains(':') {
                Reference::Digest(digest(r)?)
            } else if valid_tag(r) {
                Reference::Tag(r.to_owned())
            } else {
                return Err(BadPath::Tag(r.chars().take(200).collect()));
            };
            return Ok(Route::Manifest(name, reference));
        }
    }
    if let Some((n, d)) = rest.rsplit_once("/blobs/") {
        if !d.contains('/') {
            return Ok(Route::Blob(name_of(n)?, digest(d)?));
        }
    }
    if let Some((n, d)) = rest.rsplit_once("/referrers/") {
        if !d.contains('/') {
            return Ok(Route::Referrers(name_of(n)?, digest(d)?));
        }
    }
    Err(BadPath::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn endpoints_and_names_with_slashes() {
        assert_eq!(route("/v2/"), Ok(Route::Base));
        assert_eq!(route("/v2"), Ok(Route::Base));
        assert_eq!(route("/v2/_catalog"), Ok(Route::Catalog));
        assert_eq!(
            route("/v2/a/b/c/tags/list"),
            Ok(Route::Tags("a/b/c".into()))
        );
        assert_eq!(
            route("/v2/lib/busybox/manifests/latest"),
            Ok(Route::Manifest(
                "lib/busybox".into(),
                Reference::Tag("latest".into())
            ))
        );
        assert!(matches!(
            route(&format!("/v2/x/manifests/{D}")),
            Ok(Route::Manifest(_, Reference::Digest(_)))
        ));
        assert!(matches!(
            route(&format!("/v2/x/blobs/{D}")),
            Ok(Route::Blob(..))
        ));
        assert_eq!(
            route("/v2/x/y/blobs/uploads/"),
            Ok(Route::Uploads("x/y".into()))
        );
        assert_eq!(
            route("/v2/x/blobs/uploads/abc"),
            Ok(Route::Upload("x".into(), "abc".into()))
        );
        assert!(matches!(
            route(&format!("/v2/x/referrers/{D}")),
            Ok(Route::Referrers(..))
        ));
        // A repository may itself be called "blobs" or "manifests".
        assert_eq!(
            route("/v2/blobs/manifests/manifests/v1"),
            Ok(Route::Manifest(
                "blobs/manifests".into(),
                Reference::Tag("v1".into())
            ))
        );
    }

    #[test]
    fn hostile_names_references_and_digests_are_refused() {
        for bad in [
            "/v2/../etc/tags/list",
            "/v2/a/../b/tags/list",
            "/v2/%2e%2e/tags/list",
            "/v2/UPPER/tags/list",
            "/v2/a//b/tags/list",
            "/v2/-a/tags/list",
            "/v2/a./tags/list",
        ] {
            assert!(matches!(route(bad), Err(BadPath::Name(_))), "{bad}");
        }
        let long = format!("/v2/{}/tags/list", "a".repeat(10_000));
        assert!(matches!(route(&long), Err(BadPath::Name(_))));
        assert!(matches!(
            route("/v2/x/manifests/.bad"),
            Err(BadPath::Tag(_))
        ));
        assert!(matches!(
            route(&format!("/v2/x/manifests/{}", "t".repeat(129))),
            Err(BadPath::Tag(_))
        ));
        for d in [
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:abc",
            "sha256:../../../../etc/passwd",
            "SHA256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
        ] {
            // Refused as a digest, or (with a `/` in it) as no endpoint at all.
            assert!(
                matches!(
                    route(&format!("/v2/x/blobs/{d}")),
                    Err(BadPath::Digest(_) | BadPath::NotFound)
                ),
                "{d}"
            );
        }
        assert_eq!(route("/v1/x"), Err(BadPath::NotFound));
        assert_eq!(route("/v2/x/unknown/y"), Err(BadPath::NotFound));
        // Keywords inside a name: the last one whose tail is one component decides.
        assert_eq!(
            route("/v2/a/blobs/uploads/b/manifests/v1"),
            Ok(Route::Manifest(
                "a/blobs/uploads/b".into(),
                Reference::Tag("v1".into())
            ))
        );
        assert!(matches!(
            route(&format!("/v2/x/manifests/y/blobs/{D}")),
            Ok(Route::Blob(n, _)) if n == "x/manifests/y"
        ));
        assert_eq!(route("/v2/x/blobs/uploads/a/b"), Err(BadPath::NotFound));
    }
}

//! Where a read of a repository goes: the client's mirrors, remapped locations and blocked
//! namespaces, by prefix, as `registries.conf`'s `[[registry]]` tables say (see
//! [`ClientBuilder::mirror`](crate::ClientBuilder::mirror)).
//!
//! A prefix is a registry (`docker.io`), a namespace in one (`docker.io/library`,
//! `registry.corp/team/app`) or every subdomain of a domain (`*.example.com`). A repository
//! is governed by the longest prefix it starts with (continuing with `/`, or ending there);
//! for a wildcard, the length of the host it matched counts. The rest of the repository's
//! name, after the prefix, goes after each location: with `prefix = "example.com/foo"` and
//! `location = "internal.corp/bar"`, `example.com/foo/app` is read from
//! `internal.corp/bar/app`.

use crate::error::{Error, Result};
use crate::repository::{normalize_registry, Repository};

/// Which reads a mirror serves (`registries.conf`'s `pull-from-mirror`, or
/// `mirror-by-digest-only` for all of a table's mirrors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MirrorUse {
    /// Every read.
    #[default]
    All,
    /// Reads by digest only (manifests by digest, blobs): a tag is always resolved at the
    /// registry itself, where it cannot be out of date.
    DigestOnly,
    /// Reads of a manifest by tag only.
    TagOnly,
}

/// What a read asks for, which decides the mirrors that may serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadKind {
    /// A manifest by tag.
    Tag,
    /// A manifest by digest, or a blob.
    Digest,
}

impl ReadKind {
    /// A read of the manifest `r`.
    pub(crate) fn of(r: &oci_rs_image::ManifestRef) -> Self {
        match r {
            oci_rs_image::ManifestRef::Tag(_) => Self::Tag,
            oci_rs_image::ManifestRef::Digest(_) => Self::Digest,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Table {
    /// Where the prefix's repositories are read from; the prefix itself when unset.
    location: Option<String>,
    mirrors: Vec<(String, MirrorUse)>,
    blocked: bool,
}

/// The client's routing table: prefixes and what they say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Routes {
    tables: Vec<(String, Table)>,
}

/// `host[/path]` with its host normalized (`index.docker.io` is `docker.io`) and no trailing
/// `/`.
pub(crate) fn normalize_prefix(prefix: &str) -> String {
    let p = prefix.trim().trim_end_matches('/');
    match p.split_once('/') {
        Some((host, rest)) => format!("{}/{rest}", normalize_registry(host)),
        None => normalize_registry(p),
    }
}

/// How much of `reference` (`host/name`) `prefix` matches, if it matches.
fn matching(reference: &str, prefix: &str) -> Option<usize> {
    if let Some(domain) = prefix.strip_prefix('*') {
        // `*.example.com`: any host under the domain, not the domain itself.
        let host = reference.split('/').next().unwrap_or(reference);
        return (host.len() > domain.len() && host.ends_with(domain)).then_some(host.len());
    }
    let rest = reference.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(prefix.len())
}

impl Routes {
    fn table(&mut self, prefix: &str) -> &mut Table {
        let prefix = normalize_prefix(prefix);
        let at = match self.tables.iter().position(|(p, _)| *p == prefix) {
            Some(i) => i,
            None => {
                self.tables.push((prefix, Table::default()));
                self.tables.len() - 1
            }
        };
        &mut self.tables[at].1
    }

    pub(crate) fn mirror(&mut self, prefix: &str, location: &str, use_: MirrorUse) {
        let location = normalize_prefix(location);
        let t = self.table(prefix);
        if !t.mirrors.iter().any(|(m, _)| *m == location) {
            t.mirrors.push((location, use_));
        }
    }

    pub(crate) fn remap(&mut self, prefix: &str, location: &str) {
        self.table(prefix).location = Some(normalize_prefix(location));
    }

    pub(crate) fn block(&mut self, prefix: &str) {
        self.table(prefix).blocked = true;
    }

    /// The table governing `reference` (`host/name`) and how much of it its prefix covers.
    fn governing(&self, reference: &str) -> Option<(usize, &str, &Table)> {
        self.tables
            .iter()
            .filter_map(|(p, t)| matching(reference, p).map(|n| (n, p.as_str(), t)))
            .max_by_key(|(n, _, _)| *n)
    }

    /// Whether `reference` (`host` or `host/name`) is in a blocked namespace.
    pub(crate) fn blocked(&self, reference: &str) -> bool {
        self.governing(reference).is_some_and(|(_, _, t)| t.blocked)
    }

    /// The repositories a read of `repo` tries, in order: the mirrors that serve `kind`,
    /// then the location (`repo` itself unless remapped). A mirror in a blocked namespace,
    /// or whose rewritten name is not a valid repository, is left out (and said so in the
    /// log); `repo` in a blocked namespace is an error.
    pub(crate) fn sources(&self, repo: &Repository, kind: ReadKind) -> Result<Vec<Repository>> {
        let logical = repo.to_string();
        let Some((n, prefix, table)) = self.governing(&logical) else {
            return Ok(vec![repo.clone()]);
        };
        if table.blocked {
            return Err(Error::Blocked {
                registry: prefix.to_owned(),
            });
        }
        let rest = &logical[n..];
        let physical = |location: &str| -> Result<Repository> {
            let full = format!("{location}{rest}");
            match full.split_once('/') {
                Some((host, name)) => Repository::new(host, name),
                None => Err(Error::InvalidName {
                    name: full.clone(),
                    reason: "a location with no repository name".into(),
                }),
            }
        };
        let mut out = Vec::new();
        for (m, use_) in &table.mirrors {
            let serves = match (use_, kind) {
                (MirrorUse::All, _) => true,
                (MirrorUse::DigestOnly, k) => k == ReadKind::Digest,
                (MirrorUse::TagOnly, k) => k == ReadKind::Tag,
            };
            if !serves {
                continue;
            }
            match physical(m) {
                Ok(r) if self.blocked(&r.to_string()) => {
                    tracing::debug!(mirror = %r, "a mirror in a blocked namespace is skipped");
                }
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(mirror = %m, repository = %logical, error = %e, "mirror skipped")
                }
            }
        }
        match &table.location {
            Some(l) => out.push(physical(l)?),
            None => out.push(repo.clone()),
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn names(r: &Routes, reference: &str, kind: ReadKind) -> Vec<String> {
        let (repo, _) = Repository::parse_reference(reference).unwrap();
        r.sources(&repo, kind)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn the_longest_prefix_decides_and_the_rest_of_the_name_follows_each_location() {
        let mut r = Routes::default();
        r.mirror("docker.io", "mirror.corp", MirrorUse::All);
        r.mirror(
            "docker.io/library",
            "mirror.corp/hub/library",
            MirrorUse::All,
        );
        r.remap("example.com/foo", "internal.corp/bar");
        r.mirror("example.com/foo", "m0.local/mirror-for-foo", MirrorUse::All);
        r.mirror("*.example.net", "cache.corp/net", MirrorUse::DigestOnly);
        r.block("docker.io/evil");
        assert_eq!(
            names(&r, "busybox", ReadKind::Tag),
            [
                "mirror.corp/hub/library/busybox",
                "docker.io/library/busybox"
            ]
        );
        assert_eq!(
            names(&r, "docker.io/team/app", ReadKind::Tag),
            ["mirror.corp/team/app", "docker.io/team/app"]
        );
        assert_eq!(
            names(&r, "example.com/foo/app:1", ReadKind::Tag),
            ["m0.local/mirror-for-foo/app", "internal.corp/bar/app"]
        );
        // A prefix matches whole components only.
        assert_eq!(
            names(&r, "example.com/foobar/app", ReadKind::Tag),
            ["example.com/foobar/app"]
        );
        // A wildcard: every subdomain, not the domain; its mirror only by digest here.
        assert_eq!(
            names(&r, "a.b.example.net/x/y", ReadKind::Digest),
            ["cache.corp/net/x/y", "a.b.example.net/x/y"]
        );
        assert_eq!(
            names(&r, "a.example.net/x", ReadKind::Tag),
            ["a.example.net/x"]
        );
        assert_eq!(
            names(&r, "example.net/x", ReadKind::Digest),
            ["example.net/x"]
        );
        let (evil, _) = Repository::parse_reference("docker.io/evil/app").unwrap();
        assert!(matches!(
            r.sources(&evil, ReadKind::Digest),
            Err(Error::Blocked { .. })
        ));
        assert!(r.blocked("docker.io/evil/app") && !r.blocked("docker.io"));
    }

    #[test]
    fn a_blocked_mirror_is_skipped_and_a_location_without_a_name_is_an_error() {
        let mut r = Routes::default();
        r.mirror("docker.io", "bad.mirror", MirrorUse::All);
        r.mirror("docker.io", "good.mirror", MirrorUse::All);
        r.block("bad.mirror");
        assert_eq!(
            names(&r, "alpine", ReadKind::Digest),
            ["good.mirror/library/alpine", "docker.io/library/alpine"]
        );
        let mut r = Routes::default();
        r.remap("docker.io/library/alpine", "plain.host");
        let (repo, _) = Repository::parse_reference("alpine").unwrap();
        assert!(r.sources(&repo, ReadKind::Tag).is_err());
        r.remap("docker.io/library/alpine", "plain.host/alpine-copy");
        assert_eq!(
            names(&r, "alpine:3", ReadKind::Tag),
            ["plain.host/alpine-copy"]
        );
    }
}

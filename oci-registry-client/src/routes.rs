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
    /// A manifest by digest.
    Digest,
    /// A blob: content-addressed and verified, so any mirror may serve it (a tag-only mirror
    /// serves the blobs of the tags it answers, as podman pulls a whole image from it).
    Blob,
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

/// Where one read goes: a repository (at its registry) and whether it is plain HTTP there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source {
    pub(crate) repo: Repository,
    pub(crate) insecure: bool,
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
    /// Prefixes reached over plain HTTP: kept apart from the tables, so that marking a
    /// registry insecure never makes a table that would govern (and hide a wider prefix's
    /// mirrors, location or block).
    insecure: Vec<String>,
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

/// Whether `prefix` is a wildcard (`*.example.com`): a leading `*.` and no other `*`.
pub(crate) fn is_wildcard(prefix: &str) -> bool {
    prefix
        .strip_prefix("*.")
        .is_some_and(|d| !d.is_empty() && !d.contains(['*', '/', ':', '@']))
}

/// How `prefix` matches `reference` (`host/name`), if it does: its score (the prefix's
/// length, as podman ranks them) and where the rest of the name begins. A wildcard matches
/// every host under its domain (with any port), not the domain itself; any other `*` matches
/// nothing.
fn matching(reference: &str, prefix: &str) -> Option<(usize, usize)> {
    let host = reference.split('/').next().unwrap_or(reference);
    if is_wildcard(prefix) {
        let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let domain = &prefix[1..];
        return (name.len() > domain.len() && name.ends_with(domain))
            .then_some((prefix.len(), host.len()));
    }
    if prefix.contains('*') {
        return None;
    }
    let rest = reference.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some((prefix.len(), prefix.len()))
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

    pub(crate) fn insecure(&mut self, prefix: &str) {
        let prefix = normalize_prefix(prefix);
        if !self.insecure.contains(&prefix) {
            self.insecure.push(prefix);
        }
    }

    /// The table governing `reference` (`host/name`): the longest prefix (the first of
    /// equals), with where the rest of the name begins.
    fn governing(&self, reference: &str) -> Option<(usize, &str, &Table)> {
        let mut best: Option<(usize, usize, &str, &Table)> = None;
        for (p, t) in &self.tables {
            if let Some((score, cut)) = matching(reference, p) {
                if best.is_none_or(|b| score > b.0) {
                    best = Some((score, cut, p.as_str(), t));
                }
            }
        }
        best.map(|(_, cut, p, t)| (cut, p, t))
    }

    /// Whether `reference` (`host` or `host/name`) is in a blocked namespace (its governing
    /// table is blocked).
    pub(crate) fn blocked(&self, reference: &str) -> bool {
        self.blocking(reference).is_some()
    }

    /// The blocked prefix that governs `reference`, if one does.
    pub(crate) fn blocking(&self, reference: &str) -> Option<&str> {
        self.governing(reference)
            .and_then(|(_, p, t)| t.blocked.then_some(p))
    }

    /// Whether `reference` (`host` or `host/name`) is reached over plain HTTP: an insecure
    /// prefix covers it (its registry, a namespace it is in, or its host's domain).
    pub(crate) fn plain_http(&self, reference: &str) -> bool {
        self.insecure
            .iter()
            .any(|p| matching(reference, p).is_some())
    }

    /// The repositories a read of `repo` tries, in order: the mirrors that serve `kind`,
    /// then the location (`repo` itself unless remapped). A mirror in a blocked namespace,
    /// or whose rewritten name is not a valid repository, is left out (and said so in the
    /// log); `repo` in a blocked namespace is an error.
    pub(crate) fn sources(&self, repo: &Repository, kind: ReadKind) -> Result<Vec<Source>> {
        let logical = repo.to_string();
        let Some((n, prefix, table)) = self.governing(&logical) else {
            return Ok(vec![Source {
                repo: repo.clone(),
                insecure: self.plain_http(&logical),
            }]);
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
                (MirrorUse::All, _) | (_, ReadKind::Blob) => true,
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
                Ok(r) => {
                    let insecure = self.plain_http(&r.to_string());
                    out.push(Source { repo: r, insecure });
                }
                Err(e) => {
                    tracing::warn!(mirror = %m, repository = %logical, error = %e, "mirror skipped")
                }
            }
        }
        let primary = match &table.location {
            Some(l) => physical(l)?,
            None => repo.clone(),
        };
        // An insecure namespace's setting goes with it to its location.
        let insecure = self.plain_http(&logical) || self.plain_http(&primary.to_string());
        out.push(Source {
            repo: primary,
            insecure,
        });
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
            .map(|s| s.repo.to_string())
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
    fn wildcards_take_ports_rank_by_length_and_no_other_star_matches() {
        let mut r = Routes::default();
        r.mirror("*.example.com", "wide.mirror", MirrorUse::All);
        r.mirror("*.b.example.com", "narrow.mirror", MirrorUse::All);
        r.insecure("*");
        r.insecure("*xample.org");
        r.block("*.evil.test");
        assert_eq!(
            names(&r, "a.b.example.com:5000/x", ReadKind::Tag),
            ["narrow.mirror/x", "a.b.example.com:5000/x"]
        );
        assert_eq!(
            names(&r, "c.example.com/x", ReadKind::Tag),
            ["wide.mirror/x", "c.example.com/x"]
        );
        assert!(!r.plain_http("registry.corp/x") && !r.plain_http("example.org/x"));
        assert!(!r.plain_http("evilxample.org"));
        assert!(r.blocked("a.evil.test:443/x") && !r.blocked("evil.test/x"));
    }

    #[test]
    fn marking_a_registry_insecure_keeps_a_wider_prefixs_block_and_mirrors() {
        let mut r = Routes::default();
        r.block("*.corp");
        r.mirror("docker.io", "hub.mirror", MirrorUse::All);
        r.insecure("reg.corp");
        r.insecure("docker.io/library");
        assert!(r.blocked("reg.corp/x") && r.plain_http("reg.corp/x"));
        assert_eq!(
            names(&r, "alpine", ReadKind::Tag),
            ["hub.mirror/library/alpine", "docker.io/library/alpine"]
        );
    }

    #[test]
    fn insecure_namespaces_tag_only_mirrors_and_blobs() {
        let mut r = Routes::default();
        r.insecure("reg.corp/old");
        r.mirror("quay.io", "cache.corp/quay", MirrorUse::TagOnly);
        r.insecure("cache.corp");
        let (old, _) = Repository::parse_reference("reg.corp/old/app").unwrap();
        let (new, _) = Repository::parse_reference("reg.corp/new/app").unwrap();
        assert!(r.sources(&old, ReadKind::Tag).unwrap()[0].insecure);
        assert!(!r.sources(&new, ReadKind::Tag).unwrap()[0].insecure);
        assert!(
            !r.plain_http("reg.corp"),
            "a namespace's setting is not its host's"
        );
        let (quay, _) = Repository::parse_reference("quay.io/team/app").unwrap();
        let blob = r.sources(&quay, ReadKind::Blob).unwrap();
        assert_eq!(blob.len(), 2, "a tag-only mirror serves blobs");
        assert!(blob[0].insecure && !blob[1].insecure);
        assert_eq!(r.sources(&quay, ReadKind::Digest).unwrap().len(), 1);
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

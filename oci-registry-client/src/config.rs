//! Where a machine's registries are configured: podman's `registries.conf` (TOML, version 2
//! and the older version 1, with its `registries.conf.d` drop-ins) and docker's
//! `daemon.json` (`registry-mirrors`, `insecure-registries`). [`RegistryConfig`] reads them,
//! and configures a [`ClientBuilder`] from them: mirrors tried before the registry, plain
//! HTTP where a registry is insecure, and blocked registries refused. It also resolves short
//! names (`nginx`) through `[aliases]` and `unqualified-search-registries`.
//!
//! `[[registry]]` tables are taken as podman takes them: a `prefix` that is a registry, a
//! namespace in one (`docker.io/library`) or a domain's subdomains (`*.example.com`), the
//! longest one governing a repository; a `location` that reads the namespace from elsewhere;
//! mirrors with a path; `mirror-by-digest-only` and `pull-from-mirror`; `blocked` and
//! `insecure` (see [`ClientBuilder::mirror`]). What this client cannot do is reported in
//! [`RegistryConfig::ignored`], not dropped in silence: a prefix naming a tag or digest, and
//! a docker `registry-mirrors` URL with a path (which dockerd refuses). daemon.json's
//! insecure networks (`10.0.0.0/8`) are applied to every registry whose address is in them.

use crate::client::ClientBuilder;
use crate::error::{Error, Result};
use crate::routes::MirrorUse;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The largest configuration file read.
const MAX_CONFIG: u64 = 1 << 20;

/// A mirror of a registry or namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSettings {
    /// Where it is: a registry with an optional path (`mirror.corp/hub`).
    pub location: String,
    /// Plain HTTP.
    pub insecure: bool,
    /// The reads it serves (`pull-from-mirror`, `mirror-by-digest-only`).
    pub reads: MirrorUse,
}

/// One `[[registry]]` table's settings (a registry's, a namespace's, a domain's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrySettings {
    /// Where its repositories are read from, when not the prefix itself (`location`).
    pub location: Option<String>,
    /// Mirrors read from before the registry, in order.
    pub mirrors: Vec<MirrorSettings>,
    /// Plain HTTP (to its location).
    pub insecure: bool,
    /// Never contacted.
    pub blocked: bool,
}

/// Registry configuration from podman's and docker's files (see the module).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Settings by prefix: a registry (`docker.io`, `registry.example:5000`), a namespace
    /// (`docker.io/library`) or a domain's subdomains (`*.example.com`).
    pub registries: BTreeMap<String, RegistrySettings>,
    /// `unqualified-search-registries`: where a short name is looked for, in order.
    pub search: Vec<String>,
    /// `[aliases]`: short names and the references they stand for.
    pub aliases: BTreeMap<String, String>,
    /// daemon.json's `insecure-registries` given as networks (`10.0.0.0/8`): every registry
    /// at an address in one, or named by a host that resolves to one, is plain HTTP.
    pub insecure_networks: Vec<(std::net::IpAddr, u8)>,
    /// What was read but cannot be applied by this client, each saying why.
    pub ignored: Vec<String>,
}

impl RegistryConfig {
    /// Reads `registries.conf` text (version 2 or 1); `origin` names it in messages.
    pub fn from_registries_conf(text: &str, origin: &str) -> Result<Self> {
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| Error::Config {
            origin: origin.to_owned(),
            reason: e.message().to_owned(),
        })?;
        let mut c = Self::default();
        let bad = |what: &str| Error::Config {
            origin: origin.to_owned(),
            reason: what.to_owned(),
        };
        // A prefix or location: no scheme, no trailing `/`.
        let place = |v: &str, what: &str| -> Result<String> {
            let v = v.trim().trim_end_matches('/');
            if v.starts_with("http://") || v.starts_with("https://") {
                return Err(bad(&format!("{what} {v:?}: URI schemes are not supported")));
            }
            Ok(v.to_owned())
        };
        let strings = |v: &toml::Value, what: &str| -> Result<Vec<String>> {
            v.as_array()
                .ok_or_else(|| bad(&format!("{what} is not a list")))?
                .iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| bad(&format!("{what} holds a value that is not a string")))
                })
                .collect()
        };
        if let Some(v) = doc.get("unqualified-search-registries") {
            c.search = strings(v, "unqualified-search-registries")?;
        }
        if let Some(a) = doc.get("aliases") {
            let a = a.as_table().ok_or_else(|| bad("aliases is not a table"))?;
            for (k, v) in a {
                let v = v
                    .as_str()
                    .ok_or_else(|| bad(&format!("the alias {k} is not a string")))?;
                c.aliases.insert(k.clone(), v.to_owned());
            }
        }
        if let Some(list) = doc.get("registry") {
            let list = list
                .as_array()
                .ok_or_else(|| bad("registry is not a list of tables"))?;
            for r in list {
                let r = r
                    .as_table()
                    .ok_or_else(|| bad("a registry is not a table"))?;
                let text = |k: &str| r.get(k).and_then(toml::Value::as_str);
                let flag = |k: &str| r.get(k).and_then(toml::Value::as_bool).unwrap_or(false);
                let location = place(text("location").unwrap_or_default(), "location")?;
                let prefix = match text("prefix") {
                    Some(p) => place(p, "prefix")?,
                    None => location.clone(),
                };
                if prefix.is_empty() {
                    return Err(bad("a registry with neither prefix nor location"));
                }
                if prefix.contains('*') && !crate::routes::is_wildcard(&prefix) {
                    return Err(bad(&format!(
                        "wildcarded prefix {prefix:?} is not in the format *.example.com"
                    )));
                }
                if names_tag_or_digest(&prefix) {
                    c.ignored.push(format!(
                        "{origin}: prefix {prefix:?}: a prefix naming a tag or digest is not taken"
                    ));
                    continue;
                }
                let by_digest = flag("mirror-by-digest-only");
                let s = c.registries.entry(prefix.clone()).or_default();
                if !location.is_empty() && location != prefix {
                    s.location = Some(location);
                }
                s.insecure |= flag("insecure");
                s.blocked |= flag("blocked");
                for m in r
                    .get("mirror")
                    .and_then(toml::Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let loc = place(
                        m.get("location")
                            .and_then(toml::Value::as_str)
                            .unwrap_or_default(),
                        "mirror location",
                    )?;
                    if loc.is_empty() {
                        return Err(bad(&format!("a mirror of {prefix} without a location")));
                    }
                    let pull_from = m.get("pull-from-mirror").and_then(toml::Value::as_str);
                    let reads = match (pull_from, by_digest) {
                        (None, false) => MirrorUse::All,
                        (None, true) => MirrorUse::DigestOnly,
                        (Some(_), true) => {
                            return Err(bad(&format!(
                            "{prefix}: mirror-by-digest-only and pull-from-mirror of {loc} at once"
                        )))
                        }
                        (Some("all" | ""), false) => MirrorUse::All,
                        (Some("digest-only"), false) => MirrorUse::DigestOnly,
                        (Some("tag-only"), false) => MirrorUse::TagOnly,
                        (Some(other), false) => {
                            return Err(bad(&format!(
                                "unsupported pull-from-mirror value {other:?} for mirror {loc}"
                            )))
                        }
                    };
                    let insecure = m
                        .get("insecure")
                        .and_then(toml::Value::as_bool)
                        .unwrap_or(false);
                    if !s.mirrors.iter().any(|x| x.location == loc) {
                        s.mirrors.push(MirrorSettings {
                            location: loc,
                            insecure,
                            reads,
                        });
                    }
                }
            }
        }
        // Version 1: [registries.search], [registries.insecure], [registries.block].
        if let Some(v1) = doc.get("registries").and_then(toml::Value::as_table) {
            for (section, field) in [("search", 0), ("insecure", 1), ("block", 2)] {
                let Some(list) = v1
                    .get(section)
                    .and_then(|t| t.get("registries"))
                    .map(|v| strings(v, section))
                    .transpose()?
                else {
                    continue;
                };
                for r in list {
                    match field {
                        0 => c.search.push(r),
                        1 => c.registries.entry(r).or_default().insecure = true,
                        _ => c.registries.entry(r).or_default().blocked = true,
                    }
                }
            }
        }
        Ok(c)
    }

    /// Reads docker's `daemon.json`: `registry-mirrors` (mirrors of Docker Hub) and
    /// `insecure-registries`.
    pub fn from_daemon_json(text: &str, origin: &str) -> Result<Self> {
        let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::Config {
            origin: origin.to_owned(),
            reason: e.to_string(),
        })?;
        let mut c = Self::default();
        let list = |k: &str| -> Vec<String> {
            doc.get(k)
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        };
        for m in list("registry-mirrors") {
            // docker writes them as URLs: `https://mirror.gcr.io`.
            let (insecure, host) = match m.split_once("://") {
                Some(("http", h)) => (true, h),
                Some((_, h)) => (false, h),
                None => (false, m.as_str()),
            };
            let host = host.trim_end_matches('/');
            if is_host(host) {
                c.registries
                    .entry("docker.io".to_owned())
                    .or_default()
                    .mirrors
                    .push(MirrorSettings {
                        location: host.to_owned(),
                        insecure,
                        reads: MirrorUse::All,
                    });
            } else {
                c.ignored.push(format!(
                    "{origin}: mirror {m:?}: a mirror with a path is not taken"
                ));
            }
        }
        for r in list("insecure-registries") {
            match r.split_once('/') {
                Some((addr, prefix)) => {
                    let net = addr.parse::<std::net::IpAddr>().ok().and_then(|a| {
                        let max = if a.is_ipv4() { 32 } else { 128 };
                        prefix
                            .parse::<u8>()
                            .ok()
                            .filter(|p| *p <= max)
                            .map(|p| (a, p))
                    });
                    match net {
                        Some(n) => c.insecure_networks.push(n),
                        None => c.ignored.push(format!(
                            "{origin}: insecure {r:?}: neither a registry nor a network (ADDRESS/PREFIX)"
                        )),
                    }
                }
                None => c.registries.entry(r).or_default().insecure = true,
            }
        }
        Ok(c)
    }

    /// Adds `other`'s settings to these (later files add mirrors and override aliases, as
    /// podman's drop-ins do; a search list given again replaces the earlier one).
    pub fn merge(&mut self, other: Self) {
        for (r, s) in other.registries {
            let mine = self.registries.entry(r).or_default();
            mine.insecure |= s.insecure;
            mine.blocked |= s.blocked;
            if s.location.is_some() {
                mine.location = s.location;
            }
            for m in s.mirrors {
                if !mine.mirrors.iter().any(|x| x.location == m.location) {
                    mine.mirrors.push(m);
                }
            }
        }
        if !other.search.is_empty() {
            self.search = other.search;
        }
        self.aliases.extend(other.aliases);
        for n in other.insecure_networks {
            if !self.insecure_networks.contains(&n) {
                self.insecure_networks.push(n);
            }
        }
        self.ignored.extend(other.ignored);
    }

    /// The machine's configuration, from the files podman and docker read, those present:
    /// `/etc/containers/registries.conf` and its `registries.conf.d/*.conf` (in name
    /// order), the user's `$XDG_CONFIG_HOME/containers/registries.conf` (which replaces
    /// the system's, as podman's does), and `/etc/docker/daemon.json`. `CONTAINERS_REGISTRIES_CONF`
    /// names another `registries.conf`, as podman reads it.
    pub fn load_default() -> Result<Self> {
        let user = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))
            .map(|d| d.join("containers/registries.conf"));
        let main = match std::env::var_os("CONTAINERS_REGISTRIES_CONF") {
            Some(p) => PathBuf::from(p),
            None => match user.filter(|u| u.is_file()) {
                Some(u) => u,
                None => PathBuf::from("/etc/containers/registries.conf"),
            },
        };
        let mut c = Self::default();
        if let Some(text) = read_optional(&main)? {
            c.merge(Self::from_registries_conf(
                &text,
                &main.display().to_string(),
            )?);
        }
        let dropins = main.with_file_name("registries.conf.d");
        if let Ok(rd) = std::fs::read_dir(&dropins) {
            let mut files: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                .collect();
            files.sort();
            for f in files {
                if let Some(text) = read_optional(&f)? {
                    c.merge(Self::from_registries_conf(&text, &f.display().to_string())?);
                }
            }
        }
        let daemon = Path::new("/etc/docker/daemon.json");
        if let Some(text) = read_optional(daemon)? {
            c.merge(Self::from_daemon_json(
                &text,
                &daemon.display().to_string(),
            )?);
        }
        Ok(c)
    }

    /// The reference a name given without a registry stands for: its alias when one says,
    /// else the name in the first search registry (Docker Hub when none is set, as
    /// docker). A name with a registry, or a digest reference, is returned as given.
    pub fn resolve_short_name(&self, name: &str) -> String {
        self.short_name_candidates(name)
            .into_iter()
            .next()
            .unwrap_or_else(|| name.to_owned())
    }

    /// Every reference a name given without a registry may stand for, in the order a pull
    /// tries them: its alias alone when one says, else the name in each search registry
    /// (Docker Hub's name when none is set). A name with a registry is itself alone.
    pub fn short_name_candidates(&self, name: &str) -> Vec<String> {
        let (repo, _) = split_tag(name);
        let first = repo.split('/').next().unwrap_or_default();
        let qualified = repo.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost");
        if qualified {
            return vec![name.to_owned()];
        }
        if let Some(a) = self.aliases.get(repo) {
            let rest = &name[repo.len()..];
            return vec![format!("{a}{rest}")];
        }
        if self.search.is_empty() {
            return vec![name.to_owned()];
        }
        self.search
            .iter()
            .map(|r| match r.as_str() {
                "docker.io" => name.to_owned(),
                r => format!("{r}/{name}"),
            })
            .collect()
    }

    /// [`short_name_candidates`](Self::short_name_candidates) of the machine's
    /// configuration ([`load_default`](Self::load_default)), read when first asked: for an
    /// image store finding short names (`oci_rs_layer::ImageStore::with_short_names`). A
    /// configuration that cannot be read gives no names (a pull says why).
    pub fn default_short_names() -> impl Fn(&str) -> Vec<String> + Send + Sync {
        let config = std::sync::OnceLock::new();
        move |name| match config.get_or_init(|| Self::load_default().ok()) {
            Some(c) => c.short_name_candidates(name),
            None => Vec::new(),
        }
    }

    /// `builder` configured with these settings: each table's mirrors (plain HTTP when
    /// insecure) and location, insecure and blocked registries and namespaces, and short
    /// names (the client's `Remote::qualify`).
    pub fn apply(&self, mut builder: ClientBuilder) -> ClientBuilder {
        builder.short_names = Some(std::sync::Arc::new(self.clone()));
        for (net, prefix) in &self.insecure_networks {
            builder = builder.insecure_network(*net, *prefix);
        }
        let host = |place: &str| place.split('/').next().unwrap_or(place).to_owned();
        for (prefix, s) in &self.registries {
            for m in &s.mirrors {
                builder = builder.mirror_for(prefix, &m.location, m.reads);
                if m.insecure {
                    builder = builder.insecure_registry(&host(&m.location));
                }
            }
            if let Some(l) = &s.location {
                builder = builder.remap(prefix, l);
            }
            if s.insecure {
                // The table's own: its namespace's reads (at its location) and writes.
                builder = builder.insecure_registry(prefix);
            }
            if s.blocked {
                builder = builder.blocked_registry(prefix);
            }
        }
        builder
    }
}

/// Whether a prefix names a tag or digest (`repo:tag`, `repo@sha256:…`): a `:` after its
/// last `/`, or an `@`.
fn names_tag_or_digest(prefix: &str) -> bool {
    prefix.contains('@')
        || prefix
            .rsplit_once('/')
            .is_some_and(|(_, last)| last.contains(':'))
}

/// `name:tag`/`name@digest` split at the tag or digest (a `:` after the last `/`).
fn split_tag(name: &str) -> (&str, &str) {
    if let Some(at) = name.find('@') {
        return name.split_at(at);
    }
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(c) => name.split_at(slash + c),
        None => (name, ""),
    }
}

/// A registry host (`docker.io`, `reg.example:5000`, `[::1]:5000`): no path, no wildcard.
fn is_host(s: &str) -> bool {
    !s.is_empty() && !s.contains('/') && !s.contains('*') && !s.contains(char::is_whitespace)
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    let io = |e: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
        Ok(m) if m.len() > MAX_CONFIG => {
            return Err(Error::Config {
                origin: path.display().to_string(),
                reason: format!("over {MAX_CONFIG} bytes"),
            })
        }
        Ok(_) => {}
    }
    std::fs::read_to_string(path).map(Some).map_err(io)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn registries_conf_version_2_and_1_read_as_podman_reads_them() {
        let text = r#"
unqualified-search-registries = ["registry.corp", "docker.io"]

[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "mirror.corp:5000"
insecure = true
[[registry.mirror]]
location = "mirror.corp/dockerhub"

[[registry]]
location = "old.corp"
blocked = true

[[registry]]
prefix = "*.example.com"
insecure = true

[[registry]]
prefix = "example.com/foo/"
location = "internal.corp/bar"
mirror-by-digest-only = true
[[registry.mirror]]
location = "m0.local/mirror-for-foo"

[[registry]]
prefix = "quay.io/team"
location = "quay.io/team"
[[registry.mirror]]
location = "cache.corp/quay/team"
pull-from-mirror = "tag-only"

[[registry]]
prefix = "docker.io/library/busybox:1.36"
location = "elsewhere.corp/busybox"

[aliases]
"nginx" = "quay.io/corp/nginx"
"#;
        let c = RegistryConfig::from_registries_conf(text, "r.conf").unwrap();
        let mirror = |location: &str, insecure, reads| MirrorSettings {
            location: location.to_owned(),
            insecure,
            reads,
        };
        let hub = &c.registries["docker.io"];
        assert_eq!(
            hub.mirrors,
            [
                mirror("mirror.corp:5000", true, MirrorUse::All),
                mirror("mirror.corp/dockerhub", false, MirrorUse::All)
            ]
        );
        assert_eq!(hub.location, None, "a location equal to its prefix");
        assert!(c.registries["old.corp"].blocked);
        assert!(c.registries["*.example.com"].insecure);
        let foo = &c.registries["example.com/foo"];
        assert_eq!(foo.location.as_deref(), Some("internal.corp/bar"));
        assert_eq!(
            foo.mirrors,
            [mirror(
                "m0.local/mirror-for-foo",
                false,
                MirrorUse::DigestOnly
            )]
        );
        assert_eq!(
            c.registries["quay.io/team"].mirrors,
            [mirror("cache.corp/quay/team", false, MirrorUse::TagOnly)]
        );
        assert_eq!(c.ignored.len(), 1, "the prefix with a tag: {:?}", c.ignored);
        assert_eq!(
            c.resolve_short_name("nginx:1.25"),
            "quay.io/corp/nginx:1.25"
        );
        assert_eq!(c.resolve_short_name("busybox"), "registry.corp/busybox");
        assert_eq!(
            c.short_name_candidates("team/app:1"),
            ["registry.corp/team/app:1", "team/app:1"]
        );
        assert_eq!(
            c.short_name_candidates("nginx"),
            ["quay.io/corp/nginx"],
            "an alias is the only candidate"
        );
        assert_eq!(c.short_name_candidates("quay.io/a/b"), ["quay.io/a/b"]);
        assert_eq!(c.resolve_short_name("quay.io/a/b:1"), "quay.io/a/b:1");
        assert_eq!(c.resolve_short_name("localhost/a"), "localhost/a");
        let v1 = "[registries.search]\nregistries = ['docker.io']\n\
                  [registries.insecure]\nregistries = ['reg:5000']\n\
                  [registries.block]\nregistries = ['bad.io']\n";
        let c = RegistryConfig::from_registries_conf(v1, "v1.conf").unwrap();
        assert!(c.registries["reg:5000"].insecure && c.registries["bad.io"].blocked);
        assert_eq!(c.resolve_short_name("busybox"), "busybox");
        for bad in [
            "registry = 3",
            "unqualified-search-registries = [1]",
            "[[[x",
            "[[registry]]\nprefix = \"*.example.com/x\"",
            "[[registry]]\nprefix = \"*\"\ninsecure = true",
            "[[registry]]\nprefix = \"*example.com\"\nlocation = \"x\"",
            "[[registry]]\nlocation = \"https://reg.corp\"",
            "[[registry]]\nblocked = true",
            "[[registry]]\nlocation = \"r\"\n[[registry.mirror]]\ninsecure = true",
            "[[registry]]\nlocation = \"r\"\n[[registry.mirror]]\nlocation = \"m\"\npull-from-mirror = \"sometimes\"",
            "[[registry]]\nlocation = \"r\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m\"\npull-from-mirror = \"all\"",
        ] {
            let e = RegistryConfig::from_registries_conf(bad, "bad.conf").unwrap_err();
            assert!(e.to_string().contains("bad.conf"), "{e}");
        }
    }

    #[test]
    fn daemon_json_gives_docker_hub_mirrors_and_insecure_registries() {
        let c = RegistryConfig::from_daemon_json(
            r#"{"registry-mirrors": ["https://mirror.gcr.io/", "http://127.0.0.1:5000", "https://m/path"],
                "insecure-registries": ["reg:5000", "10.0.0.0/8"]}"#,
            "daemon.json",
        )
        .unwrap();
        let mirrors: Vec<(&str, bool)> = c.registries["docker.io"]
            .mirrors
            .iter()
            .map(|m| (m.location.as_str(), m.insecure))
            .collect();
        assert_eq!(
            mirrors,
            [("mirror.gcr.io", false), ("127.0.0.1:5000", true)]
        );
        assert!(c.registries["reg:5000"].insecure);
        assert_eq!(
            c.insecure_networks,
            [("10.0.0.0".parse::<std::net::IpAddr>().unwrap(), 8)]
        );
        // The mirror with a path.
        assert_eq!(c.ignored.len(), 1, "{:?}", c.ignored);
        let odd = RegistryConfig::from_daemon_json(
            r#"{"insecure-registries": ["10.0.0.0/33", "x/y"]}"#,
            "daemon.json",
        )
        .unwrap();
        assert!(
            odd.insecure_networks.is_empty() && odd.ignored.len() == 2,
            "{odd:?}"
        );
        let mut a = c.clone();
        a.merge(c);
        assert_eq!(a.registries["docker.io"].mirrors.len(), 2, "merged once");
    }
}

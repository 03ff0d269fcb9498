//! `ADD` of a git repository, as BuildKit takes one: `https://host/repo.git`, `git://…`,
//! `ssh://…` or `git@host:repo.git`, with `#REF[:SUBDIR]` or BuildKit's query form
//! (`?ref=…&subdir=…&checksum=…&keep-git-dir=…&submodules=…`). The commit is fetched
//! shallow by the host's `git` (BuildKit runs git too), its submodules with it, and the tree
//! (without `.git` unless `--keep-git-dir=true`) is what the step copies.
//!
//! `git` runs with an environment of its own: no system or user configuration (no credential
//! helper of the host's user answers for the build), no prompt, `file://` and `ext::`
//! transports refused (a hostile repository's submodule must not read the host's files or
//! run a command), a floor on the transfer rate of http(s), and a time limit on each git
//! command (`kill_on_drop`: the process goes with it).

use super::error::{invalid, BuildError, Context, Result};
use std::path::{Path, PathBuf};

/// The longest one git command of a fetch may take.
const GIT_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// A git source of `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GitSource {
    /// What git fetches from.
    pub remote: String,
    /// A branch, tag or commit (`None`: the remote's HEAD).
    pub reference: Option<String>,
    /// The directory of the repository to copy (`None`: all of it).
    pub subdir: Option<String>,
    /// A commit (or its prefix) the fetched one must be.
    pub checksum: Option<String>,
    /// `keep-git-dir` from the URL.
    pub keep_git_dir: Option<bool>,
    /// Fetch submodules (BuildKit's default: yes).
    pub submodules: bool,
}

impl GitSource {
    /// The git source `src` names, `None` when it is not one (a local path, an http(s) URL
    /// not ending in `.git`), or an error for a git URL that does not read.
    pub(super) fn parse(src: &str) -> Option<Result<Self>> {
        let scp = src.starts_with("git@") && !src.contains("://");
        let scheme = src.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        let is_git = match scheme.as_deref() {
            Some("git" | "ssh") => true,
            Some("http" | "https") => src
                .split(['#', '?'])
                .next()
                .is_some_and(|u| u.ends_with(".git")),
            _ => scp,
        };
        if !is_git {
            return None;
        }
        Some(Self::read(src))
    }

    fn read(src: &str) -> Result<Self> {
        let (rest, fragment) = match src.split_once('#') {
            Some((r, f)) => (r, Some(f)),
            None => (src, None),
        };
        let (remote, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let mut g = Self {
            remote: remote.to_owned(),
            reference: None,
            subdir: None,
            checksum: None,
            keep_git_dir: None,
            submodules: true,
        };
        if let Some(f) = fragment.filter(|f| !f.is_empty()) {
            let (r, sub) = match f.split_once(':') {
                Some((r, s)) => (r, Some(s)),
                None => (f, None),
            };
            g.reference = Some(r.to_owned()).filter(|r| !r.is_empty());
            g.subdir = sub.map(str::to_owned).filter(|s| !s.is_empty());
        }
        for kv in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let flag = |v: &str| match v {
                "" | "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                other => Err(invalid!("{src}: {k}={other}: expected true or false")),
            };
            match k {
                "ref" | "tag" | "branch" => {
                    if g.reference.as_deref().is_some_and(|r| r != v) {
                        return Err(invalid!("{src}: ref conflicts: {v:?}"));
                    }
                    g.reference = Some(v.to_owned());
                }
                "subdir" => g.subdir = Some(v.to_owned()),
                "checksum" | "commit" => g.checksum = Some(v.to_owned()),
                "keep-git-dir" => g.keep_git_dir = Some(flag(v)?),
                "submodules" => g.submodules = flag(v)?,
                other => {
                    return Err(invalid!(
                        "{src}: unknown query {}",
                        oci_rs_image::excerpt(other, 32)
                    ))
                }
            }
        }
        for (what, v) in [("ref", &g.reference), ("subdir", &g.subdir)] {
            // A ref or directory that git or a path could take for an option or a way out.
            if v.as_deref()
                .is_some_and(|v| v.starts_with('-') || v.split('/').any(|c| c == ".."))
            {
                return Err(invalid!("{src}: {what} {v:?} is not taken"));
            }
        }
        Ok(g)
    }

    /// Fetches the commit into `dir` (an empty directory), with the agent `ssh` for `ssh://`
    /// and `git@` remotes; the directory to copy (the tree, or its `subdir`) and the commit.
    pub(super) async fn fetch(
        &self,
        dir: &Path,
        keep_git_dir: bool,
        ssh: Option<&Path>,
    ) -> Result<(PathBuf, String)> {
        let home = dir.join(".home");
        let repo = dir.join("repo");
        std::fs::create_dir_all(&home)?;
        std::fs::create_dir_all(&repo)?;
        let want = self.reference.as_deref().unwrap_or("HEAD");
        self.git(&repo, &home, ssh, &["init", "-q"]).await?;
        self.git(
            &repo,
            &home,
            ssh,
            &["remote", "add", "origin", &self.remote],
        )
        .await?;
        // A commit by its full id is fetched as one too (servers allow it in protocol v2);
        // a branch or tag by name.
        let fetched = self
            .git(
                &repo,
                &home,
                ssh,
                &["fetch", "-q", "--depth", "1", "--no-tags", "origin", want],
            )
            .await;
        if let Err(e) = fetched {
            // An abbreviated commit id cannot be fetched by name: the whole history then.
            if !want.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(e);
            }
            self.git(&repo, &home, ssh, &["fetch", "-q", "--no-tags", "origin"])
                .await?;
        }
        // A commit id is checked out as itself (fetched alone, or with the whole history).
        let target = if self.reference.is_some() && want.bytes().all(|b| b.is_ascii_hexdigit()) {
            want
        } else {
            "FETCH_HEAD"
        };
        self.git(
            &repo,
            &home,
            ssh,
            &["-c", "advice.detachedHead=false", "checkout", "-q", target],
        )
        .await?;
        let commit = self
            .git(&repo, &home, ssh, &["rev-parse", "HEAD"])
            .await?
            .trim()
            .to_owned();
        if let Some(c) = &self.checksum {
            if !commit.starts_with(c.as_str()) || c.is_empty() {
                return Err(invalid!(
                    "{}: checksum mismatch: the commit is {commit}, expected {c}",
                    self.remote
                ));
            }
        }
        if self.submodules && repo.join(".gitmodules").exists() {
            self.git(
                &repo,
                &home,
                ssh,
                &[
                    "submodule",
                    "update",
                    "-q",
                    "--init",
                    "--recursive",
                    "--depth",
                    "1",
                ],
            )
            .await?;
        }
        if keep_git_dir {
            // What says when and how it was fetched goes, and the index is made again with no
            // file times in it: the same commit makes the same `.git` (the step's cache key is
            // what it copies), and git refreshes the index when it is next used.
            let git_dir = repo.join(".git");
            for f in ["FETCH_HEAD", "ORIG_HEAD", "index"] {
                let _ = std::fs::remove_file(git_dir.join(f));
            }
            let _ = std::fs::remove_dir_all(git_dir.join("logs"));
            self.git(&repo, &home, ssh, &["read-tree", "HEAD"]).await?;
        } else {
            remove_git_dirs(&repo)?;
        }
        let root = match &self.subdir {
            Some(s) => {
                // Each component a real directory of the checkout: a link there (`sub ->
                // /etc`, committed by whoever wrote the repository) would make the copy
                // read the host's files.
                let mut at = repo.clone();
                for c in Path::new(s.trim_start_matches('/')).components() {
                    at.push(c);
                    let m = std::fs::symlink_metadata(&at).map_err(|e| BuildError::Failed {
                        what: format!("{}: the subdirectory {s}", self.remote),
                        source: Box::new(e),
                    })?;
                    if !m.is_dir() {
                        return Err(invalid!(
                            "{}: the subdirectory {s} is not a directory of the repository \
                             (a link or a file)",
                            self.remote
                        ));
                    }
                }
                at
            }
            None => repo,
        };
        Ok((root, commit))
    }

    /// Runs `git ARGS` in `repo` with the build's own environment; its standard output.
    async fn git(
        &self,
        repo: &Path,
        home: &Path,
        ssh: Option<&Path>,
        args: &[&str],
    ) -> Result<String> {
        let mut cmd = tokio::process::Command::new("git");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
            .env("GIT_PROTOCOL_FROM_USER", "0")
            .current_dir(repo)
            .args([
                "-c",
                "protocol.file.allow=never",
                "-c",
                "protocol.ext.allow=never",
                "-c",
                "http.lowSpeedLimit=1024",
                "-c",
                "http.lowSpeedTime=60",
                "-c",
                "core.hooksPath=/dev/null",
            ])
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(sock) = ssh {
            cmd.env("SSH_AUTH_SOCK", sock);
        }
        // git:// and ssh:// have no rate floor of their own: a server that stalls (or sends
        // a byte a minute) must not hold the build forever.
        let out = tokio::time::timeout(GIT_TIME_LIMIT, cmd.output())
            .await
            .map_err(|_| {
                invalid!(
                    "git {} of {} took more than {} minutes",
                    args[0],
                    self.remote,
                    GIT_TIME_LIMIT.as_secs() / 60
                )
            })?
            .with_context(|| format!("running git for {}", self.remote))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(BuildError::Failed {
                what: format!("git {} of {}", args[0], self.remote),
                source: oci_rs_image::printable(err.trim()).into_owned().into(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Removes the `.git` of the work tree and of its submodules (files there, directories at
/// the top).
fn remove_git_dirs(dir: &Path) -> Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let t = e.file_type()?;
            if e.file_name() == ".git" {
                if t.is_dir() {
                    std::fs::remove_dir_all(e.path())?;
                } else {
                    std::fs::remove_file(e.path())?;
                }
            } else if t.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn git_sources_read_as_buildkit_reads_them() {
        for local in [
            "src/",
            "https://example.com/file.tar.gz",
            "http://h/x.git.tar",
            "github.com/a/b",
        ] {
            assert!(GitSource::parse(local).is_none(), "{local}");
        }
        let g = GitSource::parse("https://h/r.git#v1.2:sub/dir")
            .unwrap()
            .unwrap();
        assert_eq!(g.remote, "https://h/r.git");
        assert_eq!(g.reference.as_deref(), Some("v1.2"));
        assert_eq!(g.subdir.as_deref(), Some("sub/dir"));
        let g = GitSource::parse("git@github.com:o/r.git").unwrap().unwrap();
        assert_eq!(
            (g.remote.as_str(), g.reference),
            ("git@github.com:o/r.git", None)
        );
        let g = GitSource::parse("git://h/r?ref=main&subdir=x&keep-git-dir=true&submodules=false")
            .unwrap()
            .unwrap();
        assert_eq!(g.reference.as_deref(), Some("main"));
        assert_eq!(g.subdir.as_deref(), Some("x"));
        assert_eq!(g.keep_git_dir, Some(true));
        assert!(!g.submodules);
        for bad in [
            "git://h/r#--upload-pack=x",
            "git://h/r#main:../../etc",
            "git://h/r?color=red",
            "git://h/r?ref=a#b",
        ] {
            assert!(matches!(GitSource::parse(bad), Some(Err(_))), "{bad}");
        }
    }
}

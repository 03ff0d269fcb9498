//! `.dockerignore` with docker's rules, and the glob matching `COPY` sources share.
//!
//! A pattern is cleaned (leading `/` and `./` dropped, `a/../b` resolved), matched with Go's
//! `filepath.Match` per path component (`*`, `?`, `[a-z]`, `[^a]`, `\` escapes) plus `**`
//! for any number of components; a `!` pattern is an exception. Patterns apply in order and
//! the last one that matches a path, or one of its parent directories, decides (docker's
//! `MatchesOrParentMatches`).

/// One pattern of a `.dockerignore`.
#[derive(Debug, Clone)]
struct Pattern {
    parts: Vec<String>,
    exception: bool,
}

/// The rules of a `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

/// `path` cleaned to relative components: `.` and empty parts dropped, `..` pops (never above
/// the root).
pub fn clean_components(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_owned()),
        }
    }
    out
}

impl Ignore {
    /// Reads `.dockerignore` text: one pattern per line, `#` comments, blank lines skipped.
    pub fn parse(text: &str) -> Self {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (exception, p) = match l.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, l),
            };
            let parts = clean_components(p);
            if parts.is_empty() {
                continue;
            }
            patterns.push(Pattern { parts, exception });
        }
        Self { patterns }
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether the context path `rel` (components from the context root) is excluded.
    pub fn excluded(&self, rel: &[&str]) -> bool {
        let mut out = false;
        for p in &self.patterns {
            if out != p.exception {
                continue;
            }
            // The path itself or one of its parents.
            let hit = (1..=rel.len()).any(|n| match_parts(&p.parts, &rel[..n]));
            if hit {
                out = !p.exception;
            }
        }
        out
    }

    /// Whether some exception could re-include a path under the excluded directory `rel`
    /// (so a walk must still enter it).
    pub fn may_reinclude_under(&self, rel: &[&str]) -> bool {
        self.patterns.iter().any(|p| {
            p.exception && {
                // The exception's fixed prefix must agree with `rel` as far as both go.
                p.parts
                    .iter()
                    .zip(rel)
                    .take_while(|(a, _)| a.as_str() != "**")
                    .all(|(a, b)| component_match(a, b))
            }
        })
    }
}

/// Whether the pattern components match the path components (`**` spans any number).
pub fn match_parts(pat: &[String], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| match_parts(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((p, prest)) => component_match(first, p) && match_parts(rest, prest),
            None => false,
        },
    }
}

/// Whether a pattern has glob characters.
pub fn has_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Go's `filepath.Match` for one component (no `/` in either).
pub fn component_match(pat: &str, name: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob(&p, &n)
}

fn glob(p: &[char], n: &[char]) -> bool {
    let Some((&c, prest)) = p.split_first() else {
        return n.is_empty();
    };
    match c {
        '*' => (0..=n.len()).any(|k| glob(prest, &n[k..])),
        '?' => !n.is_empty() && glob(prest, &n[1..]),
        '[' => {
            let Some((&ch, nrest)) = n.split_first() else {
                return false;
            };
            match class(prest, ch) {
                Some((true, after)) => glob(after, nrest),
                _ => false,
            }
        }
        '\\' if !prest.is_empty() => {
            !n.is_empty() && n[0] == prest[0] && glob(&prest[1..], &n[1..])
        }
        c => !n.is_empty() && n[0] == c && glob(prest, &n[1..]),
    }
}

/// A `[...]` class after its `[`: (matched, the pattern after `]`); `None` if malformed.
fn class(p: &[char], ch: char) -> Option<(bool, &[char])> {
    let (negate, mut i) = match p.first() {
        Some('^') | Some('!') => (true, 1),
        _ => (false, 0),
    };
    let mut hit = false;
    let mut first = true;
    loop {
        let c = *p.get(i)?;
        if c == ']' && !first {
            return Some((hit != negate, &p[i + 1..]));
        }
        first = false;
        let lo = if c == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            c
        };
        i += 1;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&c| c != ']') {
            let hi = *p.get(i + 1)?;
            i += 2;
            if lo <= ch && ch <= hi {
                hit = true;
            }
        } else if lo == ch {
            hit = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(rules: &str, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').collect();
        Ignore::parse(rules).excluded(&parts)
    }

    // The examples of docker's .dockerignore reference.
    #[test]
    fn dockerignore_reference_examples() {
        let rules = "# comment\n*/temp*\n*/*/temp*\ntemp?\n";
        assert!(ex(rules, "somedir/temporary.txt"));
        assert!(ex(rules, "somedir/temp"));
        assert!(ex(rules, "somedir/subdir/temporary.txt"));
        assert!(ex(rules, "tempa"));
        assert!(!ex(rules, "tempab"));
        assert!(!ex(rules, "temporary.txt"));
        assert!(ex("**/*.go", "a/b/c.go"));
        assert!(ex("**/*.go", "c.go"));
        assert!(!ex("**/*.go", "c.gox"));
        // Exceptions, and their order.
        assert!(!ex("*.md\n!README.md", "README.md"));
        assert!(ex("*.md\n!README.md", "CHANGES.md"));
        assert!(ex(
            "*.md\n!README*.md\nREADME-secret.md",
            "README-secret.md"
        ));
        assert!(!ex(
            "*.md\nREADME-secret.md\n!README*.md",
            "README-secret.md"
        ));
        // A directory excludes what is under it.
        assert!(ex("build", "build/out/x.o"));
        assert!(ex("/build/", "build/x"));
        assert!(!ex("build", "src/build"));
        assert!(ex("./a/../b", "b/c"));
    }

    #[test]
    fn go_filepath_match_classes_and_escapes() {
        assert!(component_match("[a-c]x", "bx"));
        assert!(!component_match("[^a-c]x", "bx"));
        assert!(component_match("[!a-c]x", "dx"));
        assert!(component_match("\\*", "*"));
        assert!(!component_match("\\*", "a"));
        assert!(component_match("a?c", "abc"));
        assert!(!component_match("[", "["));
        assert!(Ignore::parse("dir\n!dir/keep").may_reinclude_under(&["dir"]));
        assert!(!Ignore::parse("dir\n!other/keep").may_reinclude_under(&["dir"]));
    }
}

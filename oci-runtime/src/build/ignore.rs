//! `.dockerignore` with docker's rules, and the glob matching `COPY` sources share.
//!
//! A pattern is cleaned (leading `/` and `./` dropped, `a/../b` resolved), matched with Go's
//! `filepath.Match` per path component (`*`, `?`, `[a-z]`, `[^a]`, `\` escapes) plus `**`
//! for any number of components (at the end of a pattern, one or more: `dir/**` is what is
//! under `dir`, not `dir`); a `!` pattern is an exception. Patterns apply in order to paths
//! from the context's root, as BuildKit's context transfer applies them while it walks the
//! context (patternmatcher's `MatchesUsingParentResults`): at each entry, a pattern that
//! matched its directory still matches, another is tried on the entry's path when it could
//! change the answer so far, and the last one that matches decides.

use oci_rs_image::wildcard;

/// One pattern of a `.dockerignore`.
#[derive(Debug, Clone)]
struct Pattern {
    parts: Vec<String>,
    exception: bool,
    /// Where its positions start in a [`Matches`]' `at`.
    offset: usize,
}

impl Pattern {
    /// Whether a `**` at `p` may match no component (not the last of several).
    fn skippable(&self, p: usize) -> bool {
        self.parts[p] == "**" && !(p + 1 == self.parts.len() && p > 0)
    }

    /// Adds to `at` (this pattern's positions) what a `**` that matches nothing reaches.
    fn close(&self, at: &mut [bool]) {
        for p in 0..self.parts.len() {
            if at[p] && self.skippable(p) {
                at[p + 1] = true;
            }
        }
    }
}

/// The rules of a `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
    /// Positions of all patterns (each its components and one past them).
    positions: usize,
}

/// Where the patterns stand at one path of the context: what the walk carries from a
/// directory to its entries.
#[derive(Debug, Clone, Default)]
pub struct Matches {
    /// Per pattern, the positions it can be at after the path's components (a pattern
    /// matches the path when it can be at its end).
    at: Vec<bool>,
    /// Per pattern: it matched the path, or a parent where it was tried.
    hit: Vec<bool>,
    excluded: bool,
}

impl Matches {
    /// Whether the path is excluded.
    pub fn excluded(&self) -> bool {
        self.excluded
    }
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
    /// What BuildKit refuses in `.dockerignore` text: an exception with no pattern (a lone
    /// `!`), said as its error says it.
    pub fn refusal(text: &str) -> Option<String> {
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .find(|l| l.trim() == "!")
            .map(|_| "illegal exclusion pattern: \"!\"".to_owned())
    }

    /// Reads `.dockerignore` text: one pattern per line, `#` comments, blank lines skipped.
    pub fn parse(text: &str) -> Self {
        Self::from_patterns(text.lines().filter(|l| !l.trim_start().starts_with('#')))
    }

    /// Patterns given one by one (`COPY --exclude`, `--parents`' pattern), with the rules
    /// of a `.dockerignore`'s lines (a `!` exception, blanks around dropped), no comments.
    pub fn from_patterns<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Self {
        let mut out = Self::default();
        for line in patterns {
            let l = line.trim();
            if l.is_empty() {
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
            let offset = out.positions;
            out.positions += parts.len() + 1;
            out.patterns.push(Pattern {
                parts,
                exception,
                offset,
            });
        }
        out
    }

    /// The state at the context's root (which is never excluded).
    pub fn root(&self) -> Matches {
        let mut at = vec![false; self.positions];
        for p in &self.patterns {
            let mine = &mut at[p.offset..p.offset + p.parts.len() + 1];
            mine[0] = true;
            p.close(mine);
        }
        Matches {
            at,
            hit: vec![false; self.patterns.len()],
            excluded: false,
        }
    }

    /// The state of the entry `name` of a directory whose state is `dir`.
    pub fn enter(&self, dir: &Matches, name: &str) -> Matches {
        let mut at = vec![false; self.positions];
        let mut hit = vec![false; self.patterns.len()];
        let mut excluded = false;
        for (i, p) in self.patterns.iter().enumerate() {
            let n = p.parts.len();
            let range = p.offset..p.offset + n + 1;
            let (before, after) = (&dir.at[range.clone()], &mut at[range]);
            for k in 0..n {
                if !before[k] {
                    continue;
                }
                if p.parts[k] == "**" {
                    // It takes this component, and may stop after it or take more.
                    after[k] = true;
                    after[k + 1] = true;
                } else if component_match(&p.parts[k], name) {
                    after[k + 1] = true;
                }
            }
            p.close(after);
            // Tried only when it could change the answer so far (an exception when excluded,
            // a pattern when not); a match at a parent holds for what is below it.
            let m = dir.hit[i] || (excluded == p.exception && after[n]);
            hit[i] = m;
            if m {
                excluded = !p.exception;
            }
        }
        Matches { at, hit, excluded }
    }

    /// The state of the context path `rel` (components from the context root), entered
    /// from the root.
    pub fn at(&self, rel: &[&str]) -> Matches {
        let mut m = self.root();
        for c in rel {
            m = self.enter(&m, c);
        }
        m
    }

    /// Whether the context path `rel` (components from the context root) is excluded.
    pub fn excluded(&self, rel: &[&str]) -> bool {
        self.at(rel).excluded
    }

    /// Whether a pattern (not an exception) could still match a path under the directory
    /// whose state is `dir`: one that has matched part of the way, or a `**` on it.
    pub fn may_match_under(&self, dir: &Matches) -> bool {
        self.patterns
            .iter()
            .any(|p| !p.exception && dir.at[p.offset..p.offset + p.parts.len()].contains(&true))
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

/// Whether a pattern has glob characters.
pub fn has_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Go's `filepath.Match` for one component (no `/` in either).
pub fn component_match(pat: &str, name: &str) -> bool {
    let n: Vec<char> = name.chars().collect();
    wildcard(&tokens(pat), &n, |t| matches!(t, Tok::Star), Tok::matches)
}

/// One element of a component pattern.
enum Tok {
    Star,
    /// `?`.
    Any,
    Char(char),
    /// `[...]`: negated, and its ranges (a single character is a range of one). A malformed
    /// class is an empty one: it matches nothing, as Go's `Match` fails on it.
    Class(bool, Vec<(char, char)>),
}

impl Tok {
    fn matches(&self, c: &char) -> bool {
        match self {
            Tok::Star | Tok::Any => true,
            Tok::Char(t) => t == c,
            Tok::Class(negate, ranges) => {
                ranges.iter().any(|(lo, hi)| lo <= c && c <= hi) != *negate
            }
        }
    }
}

fn tokens(pat: &str) -> Vec<Tok> {
    let p: Vec<char> = pat.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        let t = match p[i] {
            '*' => Tok::Star,
            '?' => Tok::Any,
            '[' => match class(&p[i + 1..]) {
                Some((t, len)) => {
                    i += len;
                    t
                }
                None => {
                    // Nothing after it matters: the pattern cannot get past it.
                    out.push(Tok::Class(false, Vec::new()));
                    break;
                }
            },
            '\\' if i + 1 < p.len() => {
                i += 1;
                Tok::Char(p[i])
            }
            c => Tok::Char(c),
        };
        out.push(t);
        i += 1;
    }
    out
}

/// A `[...]` class after its `[`: the class and how many characters it takes up to its
/// `]`; `None` if malformed.
fn class(p: &[char]) -> Option<(Tok, usize)> {
    let (negate, mut i) = match p.first() {
        Some('^') | Some('!') => (true, 1),
        _ => (false, 0),
    };
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *p.get(i)?;
        if c == ']' && !first {
            return Some((Tok::Class(negate, ranges), i + 1));
        }
        first = false;
        let lo = if c == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            c
        };
        i += 1;
        match (p.get(i), p.get(i + 1)) {
            (Some('-'), Some(&hi)) if hi != ']' => {
                ranges.push((lo, hi));
                i += 2;
            }
            _ => ranges.push((lo, lo)),
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

    // These took minutes and more when every star tried every split.
    #[test]
    fn adversarial_patterns_match_in_linear_time() {
        let a40 = "a".repeat(40);
        let stars = "*a*a*a*a*a*a*a*a*a*a*a*a*b";
        assert!(!component_match(stars, &a40));
        assert!(component_match(stars, &format!("{a40}b")));
        assert!(component_match("*a*a*a*a*a*a*a*a*a*a*a*a*", &a40));
        assert!(!component_match(
            "*[a-c]*?*[!b]*[^b]*a*?*a*a*a*a*a*a*a*a*[b]",
            &a40
        ));
        assert!(!component_match(&"*a".repeat(40), &"a".repeat(39)));
        assert!(component_match(&"*a".repeat(40), &"a".repeat(80)));
        assert!(!ex(&format!("{stars}\n"), &a40));
        assert!(ex(&format!("{stars}\n"), &format!("{a40}b")));
        // `**` backtracks over components the same way.
        let deep = vec!["a"; 40];
        let globstars = "**/a/".repeat(12) + "**/b";
        assert!(!ex(&globstars, &deep.join("/")));
        assert!(ex(&globstars, &format!("{}/b", deep.join("/"))));
        assert!(ex(&("**/a/".repeat(12) + "**"), &deep.join("/")));
    }

    #[test]
    fn a_pattern_excludes_what_is_below_what_it_matches() {
        let paths: Vec<String> = all_strings(&['a', 'b', '/'], 5)
            .into_iter()
            .filter(|p| p.split('/').all(|c| !c.is_empty()))
            .collect();
        for p in all_strings(&['a', '*', 'b', '/'], 6) {
            let rules = Ignore::parse(&p);
            let Some(pat) = rules.patterns.first() else {
                continue;
            };
            for path in &paths {
                let rel: Vec<&str> = path.split('/').collect();
                let by_parent = (1..=rel.len()).any(|n| brute(&pat.parts, &rel[..n]));
                assert_eq!(rules.excluded(&rel), by_parent, "{p:?} {path:?}");
            }
        }
    }

    /// A pattern's components against a path's, by brute force: `**` spans any number of
    /// components, at least one when it ends a pattern of several (patternmatcher's `dir/**`
    /// is `dir/` and more).
    fn brute(pat: &[String], path: &[&str]) -> bool {
        fn plain(pat: &[String], path: &[&str]) -> bool {
            match pat.split_first() {
                None => path.is_empty(),
                Some((p, rest)) if p == "**" => (0..=path.len()).any(|k| plain(rest, &path[k..])),
                Some((p, rest)) => {
                    !path.is_empty() && component_match(p, path[0]) && plain(rest, &path[1..])
                }
            }
        }
        match pat.split_last() {
            Some((last, head)) if last == "**" && !head.is_empty() => {
                (0..path.len()).any(|k| plain(head, &path[..k]))
            }
            _ => plain(pat, path),
        }
    }

    /// patternmatcher's `MatchesUsingParentResults` as BuildKit's walk calls it from the
    /// root, with every pattern tried on the whole path.
    fn walked(rules: &Ignore, rel: &[&str]) -> bool {
        let mut hit = vec![false; rules.patterns.len()];
        let mut excluded = false;
        for n in 1..=rel.len() {
            excluded = false;
            for (i, p) in rules.patterns.iter().enumerate() {
                let m = hit[i] || (excluded == p.exception && brute(&p.parts, &rel[..n]));
                hit[i] = m;
                if m {
                    excluded = !p.exception;
                }
            }
        }
        excluded
    }

    #[test]
    fn patterns_and_exceptions_apply_as_buildkits_walk_applies_them() {
        let paths: Vec<String> = all_strings(&['a', 'b', '/'], 5)
            .into_iter()
            .filter(|p| p.split('/').all(|c| !c.is_empty()))
            .collect();
        let mut pats: Vec<String> = all_strings(&['a', '*', '/'], 3)
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        pats.extend(["a/**", "**/a", "a/**/a", "*/a/*", "a/a/a"].map(String::from));
        for p in &pats {
            for q in &pats {
                for text in [format!("{p}\n!{q}"), format!("{p}\n!{q}\n{q}/b")] {
                    let rules = Ignore::parse(&text);
                    for path in &paths {
                        let rel: Vec<&str> = path.split('/').collect();
                        assert_eq!(
                            rules.excluded(&rel),
                            walked(&rules, &rel),
                            "{text:?} {path:?}"
                        );
                    }
                }
            }
        }
        // An excluded directory with an exception inside: excluded itself, what the
        // exception names kept, the rest excluded.
        let rules = "subdir\n!subdir/keep\n";
        assert!(ex(rules, "subdir"));
        assert!(!ex(rules, "subdir/keep"));
        assert!(!ex(rules, "subdir/keep/below"));
        assert!(ex(rules, "subdir/drop"));
        assert!(!ex(rules, "other"));
        // `dir/**` is what is under `dir`.
        assert!(!ex("dir/**", "dir"));
        assert!(ex("dir/**", "dir/x"));
        assert!(ex("**", "x"));
        assert!(ex("a/**/b", "a/b"));
        // An exception is tried on the path itself, not on its parents, once the walk is
        // below them: `!d` does not bring back `d/c` excluded by a pattern before it.
        assert!(ex("d/c\n!d", "d/c"));
        assert!(!ex("d/c\n!d", "d/x"));
    }

    /// The matcher as it was (every split at every star): right, but exponential.
    fn backtracking(p: &[char], n: &[char]) -> bool {
        let Some((&c, rest)) = p.split_first() else {
            return n.is_empty();
        };
        match c {
            '*' => (0..=n.len()).any(|k| backtracking(rest, &n[k..])),
            '?' => !n.is_empty() && backtracking(rest, &n[1..]),
            '[' => match (
                n.split_first(),
                n.first().and_then(|&ch| old_class(rest, ch)),
            ) {
                (Some((_, nrest)), Some((true, after))) => backtracking(after, nrest),
                _ => false,
            },
            '\\' if !rest.is_empty() => {
                n.first() == rest.first() && backtracking(&rest[1..], &n[1..])
            }
            c => n.first() == Some(&c) && backtracking(rest, &n[1..]),
        }
    }

    /// Its class after the `[`: (matched, what follows); `None` if malformed.
    fn old_class(p: &[char], ch: char) -> Option<(bool, &[char])> {
        let (negate, mut i) = match p.first() {
            Some('^') | Some('!') => (true, 1),
            _ => (false, 0),
        };
        let (mut hit, mut first) = (false, true);
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
                hit |= lo <= ch && ch <= p[i + 1];
                i += 2;
            } else {
                hit |= lo == ch;
            }
        }
    }

    fn all_strings(alphabet: &[char], max: usize) -> Vec<String> {
        let mut out = vec![String::new()];
        let mut last = out.clone();
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            out.extend(last.iter().cloned());
        }
        out
    }

    // Every short pattern over the special characters against every short name.
    #[test]
    fn the_linear_matcher_agrees_with_the_backtracking_one() {
        let names = all_strings(&['a', 'b', '-', ']'], 3);
        for p in all_strings(&['a', '*', '?', '[', ']', '^', '-', '\\'], 5) {
            let pc: Vec<char> = p.chars().collect();
            for n in &names {
                let nc: Vec<char> = n.chars().collect();
                assert_eq!(
                    component_match(&p, n),
                    backtracking(&pc, &nc),
                    "{p:?} {n:?}"
                );
            }
        }
    }
}

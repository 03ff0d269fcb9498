//! Variable substitution and quoting as the Dockerfile reference defines them (BuildKit's
//! shell lexer): `$V`, `${V}`, `${V:-word}`, `${V-word}`, `${V:+word}`, `${V+word}`,
//! `${V:?msg}`, `${V?msg}`; single quotes are literal, double quotes keep spaces and expand
//! variables, the escape character (`\`, or `` ` `` after `# escape=`) makes the next
//! character literal.

use std::iter::Peekable;
use std::str::Chars;

/// A substitution failure (`${V:?msg}` with V unset, an unterminated `${` or quote).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordError(pub String);

impl std::fmt::Display for WordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WordError {}

/// How deep `${V:-${W:-…}}` may nest. Each level is a recursion; a Dockerfile nesting
/// thousands deep would otherwise overflow the stack and abort the build.
pub const MAX_NESTING: usize = 64;

/// Looks a variable up: `None` when it is not set.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The lexer of one Dockerfile (its escape character).
#[derive(Debug, Clone, Copy)]
pub struct Lex {
    /// The escape character.
    pub escape: char,
}

impl Default for Lex {
    fn default() -> Self {
        Self { escape: '\\' }
    }
}

/// Collects characters into words; `split` is false inside one word (`word`).
struct Out {
    words: Vec<String>,
    cur: String,
    started: bool,
    split: bool,
}

impl Out {
    fn new(split: bool) -> Self {
        Self {
            words: Vec::new(),
            cur: String::new(),
            started: false,
            split,
        }
    }
    fn push(&mut self, c: char) {
        self.cur.push(c);
        self.started = true;
    }
    fn push_str(&mut self, s: &str) {
        self.cur.push_str(s);
        self.started = true;
    }
    /// An expansion's value: split on whitespace when splitting words, as a shell does.
    fn expanded(&mut self, s: &str) {
        if !self.split {
            return self.push_str(s);
        }
        for c in s.chars() {
            if c.is_whitespace() {
                self.end();
            } else {
                self.push(c);
            }
        }
    }
    fn end(&mut self) {
        if self.started {
            self.words.push(std::mem::take(&mut self.cur));
            self.started = false;
        }
    }
}

impl Lex {
    /// `s` as one word: quotes removed, variables expanded, whitespace kept.
    pub fn word(&self, s: &str, env: Lookup<'_>) -> Result<String, WordError> {
        let mut out = Out::new(false);
        let mut it = s.chars().peekable();
        self.run(&mut it, env, &mut out, None, 0)?;
        Ok(out.cur)
    }

    /// `s` as words split at unquoted whitespace (and in expanded values), quotes removed.
    pub fn words(&self, s: &str, env: Lookup<'_>) -> Result<Vec<String>, WordError> {
        let mut out = Out::new(true);
        let mut it = s.chars().peekable();
        self.run(&mut it, env, &mut out, None, 0)?;
        out.end();
        Ok(out.words)
    }

    /// A heredoc's text with variables expanded and `\$` unescaped; quotes and every other
    /// character kept as they are (BuildKit's expansion of an unquoted heredoc).
    pub fn word_keep_quotes(&self, s: &str, env: Lookup<'_>) -> Result<String, WordError> {
        let mut out = String::new();
        let mut it = s.chars().peekable();
        while let Some(c) = it.next() {
            match c {
                c if c == self.escape && it.peek() == Some(&'$') => {
                    it.next();
                    out.push('$');
                }
                '$' => out.push_str(&self.dollar(&mut it, env, 0)?),
                c => out.push(c),
            }
        }
        Ok(out)
    }

    /// `s` split at unquoted whitespace, quotes and escapes kept: the `KEY=VALUE` fields of
    /// `ENV`, `LABEL` and `ARG`, each processed with [`Lex::word`] afterwards.
    pub fn split_raw(&self, s: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut quote: Option<char> = None;
        let mut it = s.chars();
        while let Some(c) = it.next() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => {
                    if !cur.is_empty() {
                        words.push(std::mem::take(&mut cur));
                    }
                }
                (Some('\''), '\'') | (Some('"'), '"') => {
                    quote = None;
                    cur.push(c);
                }
                (None, '\'' | '"') => {
                    quote = Some(c);
                    cur.push(c);
                }
                (q, c) if c == self.escape && q != Some('\'') => {
                    cur.push(c);
                    if let Some(n) = it.next() {
                        cur.push(n);
                    }
                }
                _ => cur.push(c),
            }
        }
        if !cur.is_empty() {
            words.push(cur);
        }
        words
    }

    /// Processes characters until the end, or until an unquoted `stop` (consumed); `depth`
    /// is how many `${` enclose them.
    fn run(
        &self,
        it: &mut Peekable<Chars<'_>>,
        env: Lookup<'_>,
        out: &mut Out,
        stop: Option<char>,
        depth: usize,
    ) -> Result<(), WordError> {
        while let Some(c) = it.next() {
            if Some(c) == stop {
                return Ok(());
            }
            match c {
                c if c == self.escape => match it.next() {
                    Some(n) => out.push(n),
                    None => out.push(c),
                },
                '\'' => {
                    out.started = true;
                    loop {
                        match it.next() {
                            Some('\'') => break,
                            Some(n) => out.push(n),
                            None => return Err(WordError("unterminated single quote".into())),
                        }
                    }
                }
                '"' => {
                    out.started = true;
                    loop {
                        match it.next() {
                            Some('"') => break,
                            Some('$') => {
                                let v = self.dollar(it, env, depth)?;
                                out.push_str(&v);
                            }
                            Some(e) if e == self.escape => match it.peek().copied() {
                                Some(n) if n == '"' || n == '$' || n == self.escape => {
                                    it.next();
                                    out.push(n);
                                }
                                _ => out.push(e),
                            },
                            Some(n) => out.push(n),
                            None => return Err(WordError("unterminated double quote".into())),
                        }
                    }
                }
                '$' => {
                    let v = self.dollar(it, env, depth)?;
                    out.expanded(&v);
                }
                c if out.split && c.is_whitespace() => out.end(),
                c => out.push(c),
            }
        }
        match stop {
            Some(s) => Err(WordError(format!(
                "missing '{s}' in a variable substitution"
            ))),
            None => Ok(()),
        }
    }

    /// After a `$`: a variable's value, or `$` itself when no name follows.
    fn dollar(
        &self,
        it: &mut Peekable<Chars<'_>>,
        env: Lookup<'_>,
        depth: usize,
    ) -> Result<String, WordError> {
        match it.peek().copied() {
            Some('{') => {
                it.next();
                self.braced(it, env, depth + 1)
            }
            Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
                Ok(env(&name_chars(it)).unwrap_or_default())
            }
            _ => Ok("$".into()),
        }
    }

    /// After `${`: the name, an optional modifier with its word, and `}`.
    fn braced(
        &self,
        it: &mut Peekable<Chars<'_>>,
        env: Lookup<'_>,
        depth: usize,
    ) -> Result<String, WordError> {
        if depth > MAX_NESTING {
            return Err(WordError(format!(
                "variable substitution nested deeper than {MAX_NESTING} levels"
            )));
        }
        let name = name_chars(it);
        if name.is_empty() {
            return Err(WordError("a variable name is missing after '${'".into()));
        }
        let colon = it.peek() == Some(&':');
        if colon {
            it.next();
        }
        let op = it.next();
        let value = env(&name);
        let set = match &value {
            Some(v) => !colon || !v.is_empty(),
            None => false,
        };
        match op {
            Some('}') if !colon => Ok(value.unwrap_or_default()),
            Some(op @ ('-' | '+' | '?')) => {
                let mut word = Out::new(false);
                self.run(it, env, &mut word, Some('}'), depth)?;
                Ok(match op {
                    '-' if set => value.unwrap_or_default(),
                    '-' => word.cur,
                    '+' if set => word.cur,
                    '+' => String::new(),
                    _ if set => value.unwrap_or_default(),
                    _ => {
                        let msg = if word.cur.is_empty() {
                            "is not set".to_owned()
                        } else {
                            word.cur
                        };
                        return Err(WordError(format!("{name}: {msg}")));
                    }
                })
            }
            Some(c) => Err(WordError(format!(
                "unsupported modifier '{c}' in ${{{name}...}}"
            ))),
            None => Err(WordError(format!("missing '}}' after ${{{name}"))),
        }
    }
}

/// The variable name at the front of `it` (letters, digits, `_`), consumed.
fn name_chars(it: &mut Peekable<Chars<'_>>) -> String {
    let mut name = String::new();
    while let Some(&c) = it.peek() {
        if c.is_ascii_alphanumeric() || c == '_' {
            name.push(c);
            it.next();
        } else {
            break;
        }
    }
    name
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("a".into()),
            "SP" => Some("x  y".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn w(s: &str) -> String {
        Lex::default().word(s, &env).unwrap()
    }

    // Cases from the Dockerfile reference's "Environment replacement" and BuildKit's
    // lexer tests.
    #[test]
    fn substitutions_follow_the_reference() {
        assert_eq!(w("$A"), "a");
        assert_eq!(w("${A}b"), "ab");
        assert_eq!(w("${B:-def}"), "def");
        assert_eq!(w("${EMPTY:-def}"), "def");
        assert_eq!(w("${EMPTY-def}"), "");
        assert_eq!(w("${A:-def}"), "a");
        assert_eq!(w("${A:+alt}"), "alt");
        assert_eq!(w("${B:+alt}"), "");
        assert_eq!(w("${EMPTY:+alt}"), "");
        assert_eq!(w("${EMPTY+alt}"), "alt");
        assert_eq!(w("${B:-${A}x}"), "ax");
        assert_eq!(w("\\$A"), "$A");
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A b\""), "a b");
        assert_eq!(w("\"\\$A\""), "$A");
        assert_eq!(w("\"a\\b\""), "a\\b");
        assert_eq!(w("$"), "$");
        assert_eq!(w("a$-b"), "a$-b");
        assert_eq!(w("$UNSET."), ".");
        let e = Lex::default().word("${B:?needs B}", &env).unwrap_err();
        assert_eq!(e.to_string(), "B: needs B");
        assert!(Lex::default().word("${A", &env).is_err());
        assert!(Lex::default().word("'open", &env).is_err());
    }

    #[test]
    fn words_split_outside_quotes_and_in_expansions() {
        let l = Lex::default();
        assert_eq!(
            l.words("a \"b c\" $SP d\\ e", &env).unwrap(),
            ["a", "b c", "x", "y", "d e"]
        );
        assert_eq!(l.words("\"\"", &env).unwrap(), [""]);
        assert_eq!(
            l.split_raw("A=\"x y\" B=z\\ w 'c d'"),
            ["A=\"x y\"", "B=z\\ w", "'c d'"]
        );
    }

    fn nested(levels: usize) -> String {
        format!("{}x{}", "${B:-".repeat(levels), "}".repeat(levels))
    }

    // Each level was a recursion: 20,000 of them overflowed the stack (an abort, not an error).
    #[test]
    fn nesting_is_bounded() {
        let l = Lex::default();
        assert_eq!(w(&nested(MAX_NESTING)), "x");
        let want = format!("variable substitution nested deeper than {MAX_NESTING} levels");
        for deep in [nested(20_000), nested(MAX_NESTING + 1)] {
            assert_eq!(l.word(&deep, &env).unwrap_err().to_string(), want);
            assert_eq!(l.words(&deep, &env).unwrap_err().to_string(), want);
            assert_eq!(
                l.word_keep_quotes(&deep, &env).unwrap_err().to_string(),
                want
            );
            let quoted = format!("\"{deep}\"");
            assert_eq!(l.word(&quoted, &env).unwrap_err().to_string(), want);
        }
        // Depth is nesting, not count: side by side is fine.
        assert_eq!(w(&"${B:-y}".repeat(1000)), "y".repeat(1000));
    }

    #[test]
    fn the_escape_directive_changes_the_escape() {
        let l = Lex { escape: '`' };
        assert_eq!(l.word("`$A c:\\dir", &env).unwrap(), "$A c:\\dir");
    }
}

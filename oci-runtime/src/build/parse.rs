//! The Dockerfile grammar: parser directives (`syntax`, `escape`, `check`), comments, line
//! continuations (comment and empty lines inside one are dropped), instructions with their
//! `--flags`, exec (JSON) and shell forms, and heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`) in
//! `RUN`, `COPY` and `ADD`, anywhere in the line as BuildKit reads them.
//!
//! Written by hand: `parse-dockerfile` 0.1.9 reads a heredoc only at the start of `RUN`'s
//! arguments and fails on `RUN cat <<EOF > /f`, a common form. Variable substitution is left
//! to the executor ([`super::words`]): which instructions expand which variables depends on
//! the build's state.

/// A parse error: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ParseError {}

/// Arguments of an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// The JSON (exec) form.
    Exec(Vec<String>),
    /// The shell form: the logical line after the keyword and flags, continuations joined.
    Shell(String),
}

/// A heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// Its delimiter word.
    pub name: String,
    /// Its content, lines ending in `\n` (leading tabs removed for `<<-`).
    pub content: String,
    /// False when the delimiter was quoted: no expansion.
    pub expand: bool,
    /// Tabs stripped (`<<-`).
    pub strip_tabs: bool,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instr {
    /// The line its keyword is on.
    pub line: usize,
    /// The keyword, upper case.
    pub keyword: String,
    /// `--name[=value]` flags, in order.
    pub flags: Vec<(String, Option<String>)>,
    /// The arguments.
    pub args: Args,
    /// Heredocs, in order.
    pub heredocs: Vec<Heredoc>,
}

impl Instr {
    /// The shell-form text, or the exec form as JSON: for messages and history.
    pub fn args_text(&self) -> String {
        match &self.args {
            Args::Shell(s) => s.clone(),
            Args::Exec(v) => serde_json::to_string(v).unwrap_or_default(),
        }
    }

    /// The flags as written, each followed by a blank (`--from=build --link `): for the
    /// history and the progress line.
    pub fn flags_text(&self) -> String {
        self.flags
            .iter()
            .map(|(f, v)| match v {
                Some(v) => format!("--{f}={v} "),
                None => format!("--{f} "),
            })
            .collect()
    }

    /// The value of flag `name` (`None` when absent; `Some("")` for a bare `--name`).
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character (`\` unless `# escape=`).
    pub escape: char,
    /// The `# syntax=` directive, if any (recorded, not acted on: there is one frontend).
    pub syntax: Option<String>,
    /// The instructions.
    pub instrs: Vec<Instr>,
}

/// Every instruction of the reference.
pub const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// The most instructions one Dockerfile may hold (a bound on what a hostile file costs).
pub const MAX_INSTRUCTIONS: usize = 10_000;

fn err(line: usize, column: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        column,
        message: message.into(),
    }
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut escape = '\\';
    let mut syntax = None;
    let mut i = 0;
    // Directives: `# key=value` lines at the very top, before any other line.
    while i < lines.len() {
        let Some(rest) = lines[i].trim_start().strip_prefix('#') else {
            break;
        };
        let Some((k, v)) = rest.split_once('=') else {
            break;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k.contains(char::is_whitespace) {
            break;
        }
        match k.as_str() {
            "escape" => {
                escape = match v {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        let v = oci_rs_image::excerpt(v, 8);
                        return Err(err(i + 1, 1, format!("invalid escape character \"{v}\"")));
                    }
                }
            }
            "syntax" => syntax = Some(v.to_owned()),
            "check" => {}
            _ => break,
        }
        i += 1;
    }
    let mut instrs = Vec::new();
    while i < lines.len() {
        let first = lines[i];
        let trimmed = first.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i;
        // The logical line: continuation lines joined, comments and empty lines inside skipped.
        let mut logical = String::new();
        loop {
            let l = lines[i];
            i += 1;
            let body = l.trim_end();
            match body.strip_suffix(escape) {
                Some(cont) if i < lines.len() => {
                    logical.push_str(cont);
                    while i < lines.len() {
                        let t = lines[i].trim_start();
                        if t.is_empty() || t.starts_with('#') {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    if i >= lines.len() {
                        break;
                    }
                }
                Some(cont) => {
                    logical.push_str(cont);
                    break;
                }
                None => {
                    logical.push_str(l);
                    break;
                }
            }
        }
        let mut instr = instruction(&logical, start + 1)?;
        if matches!(instr.keyword.as_str(), "RUN" | "COPY" | "ADD") {
            for (name, expand, strip_tabs) in heredoc_markers(&logical, escape) {
                let mut content = String::new();
                loop {
                    let Some(l) = lines.get(i) else {
                        return Err(err(
                            start + 1,
                            1,
                            format!(
                                "the heredoc {} is not terminated",
                                oci_rs_image::excerpt(&name, 32)
                            ),
                        ));
                    };
                    i += 1;
                    let l = if strip_tabs {
                        l.trim_start_matches('\t')
                    } else {
                        l
                    };
                    if l == name {
                        break;
                    }
                    content.push_str(l);
                    content.push('\n');
                }
                instr.heredocs.push(Heredoc {
                    name,
                    content,
                    expand,
                    strip_tabs,
                });
            }
        }
        instrs.push(instr);
        if instrs.len() > MAX_INSTRUCTIONS {
            return Err(err(
                start + 1,
                1,
                format!("more than {MAX_INSTRUCTIONS} instructions"),
            ));
        }
    }
    Ok(Dockerfile {
        escape,
        syntax,
        instrs,
    })
}

/// Parses one logical line (also the text after `ONBUILD`).
pub fn instruction(logical: &str, line: usize) -> Result<Instr, ParseError> {
    let lead = logical.len() - logical.trim_start().len();
    let body = logical.trim_start();
    let (word, mut rest) = match body.find(char::is_whitespace) {
        Some(p) => (&body[..p], body[p..].trim_start()),
        None => (body, ""),
    };
    let keyword = word.to_ascii_uppercase();
    if !KEYWORDS.contains(&keyword.as_str()) {
        return Err(err(line, lead + 1, unknown_instruction(word)));
    }
    let mut flags = Vec::new();
    if matches!(
        keyword.as_str(),
        "FROM" | "RUN" | "COPY" | "ADD" | "HEALTHCHECK"
    ) {
        while let Some(f) = rest.strip_prefix("--") {
            let end = f.find(char::is_whitespace).unwrap_or(f.len());
            let flag = &f[..end];
            if flag.is_empty() {
                break;
            }
            let (n, v) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(unquote(v))),
                None => (flag, None),
            };
            flags.push((n.to_ascii_lowercase(), v));
            rest = f[end..].trim_start();
        }
    }
    let json_form = matches!(
        keyword.as_str(),
        "RUN" | "CMD" | "ENTRYPOINT" | "SHELL" | "VOLUME" | "HEALTHCHECK" | "COPY" | "ADD"
    );
    let args = match rest.trim_end() {
        r if json_form && r.starts_with('[') => match serde_json::from_str::<Vec<String>>(r) {
            Ok(v) => Args::Exec(v),
            Err(_) => Args::Shell(r.to_owned()),
        },
        r => Args::Shell(r.to_owned()),
    };
    if keyword == "SHELL" && !matches!(args, Args::Exec(_)) {
        return Err(err(line, lead + 1, "SHELL requires the JSON form"));
    }
    let empty = match &args {
        Args::Shell(s) => s.is_empty(),
        Args::Exec(v) => v.is_empty() && keyword != "CMD" && keyword != "ENTRYPOINT",
    };
    if empty && keyword != "HEALTHCHECK" {
        return Err(err(
            line,
            lead + 1,
            format!("{keyword} requires at least one argument"),
        ));
    }
    Ok(Instr {
        line,
        keyword,
        flags,
        args,
        heredocs: Vec::new(),
    })
}

/// The message for a line whose first word is no instruction. The word is the start of a
/// line of whatever file was read as the Dockerfile (a `/etc/shadow` line has no space before
/// its hash), so only what could be a misspelt keyword is named: its leading letters, digits,
/// `_` and `-`, at most 32 of them; nothing after the first other character is shown.
fn unknown_instruction(word: &str) -> String {
    const SHOWN: usize = 32;
    let end = word
        .char_indices()
        .take(SHOWN)
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        .map(|(i, _)| i)
        .unwrap_or_else(|| {
            word.char_indices()
                .nth(SHOWN)
                .map_or(word.len(), |(i, _)| i)
        });
    let more = if end < word.len() { "…" } else { "" };
    match &word[..end] {
        "" => "unknown instruction (the line does not start with a word)".to_owned(),
        shown => format!("unknown instruction \"{shown}{more}\""),
    }
}

fn unquote(v: &str) -> String {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        v[1..v.len() - 1].to_owned()
    } else {
        v.to_owned()
    }
}

/// The delimiter of a word that is a heredoc marker and nothing else (`<<EOF`, `<<-EOF`,
/// `<<"EOF"`, `<<'EOF'`).
pub fn heredoc_word(word: &str) -> Option<&str> {
    let rest = word.strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let name = match rest.as_bytes().first() {
        Some(&q @ (b'"' | b'\'')) => rest[1..].strip_suffix(char::from(q))?,
        _ => rest,
    };
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(heredoc_name_char);
    ok.then_some(name)
}

/// Whether `c` may be part of a heredoc delimiter: BuildKit takes the rest of the shell word
/// (`COPY <<robots.txt <<humans.txt /dst/` names two files), which here stops at blanks,
/// quotes and the shell's operators (`cat <<EOF;` ends the name at `;`).
fn heredoc_name_char(c: char) -> bool {
    !c.is_whitespace()
        && !matches!(
            c,
            '<' | '>' | ';' | '&' | '|' | '(' | ')' | '"' | '\'' | '`' | '$'
        )
}

/// The heredoc markers of a line, outside quotes: (name, expand, strip tabs).
pub fn heredoc_markers(line: &str, escape: char) -> Vec<(String, bool, bool)> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut k = 0;
    while k < chars.len() {
        let c = chars[k];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == escape => k += 1,
            None if c == '\'' || c == '"' => quote = Some(c),
            // A here-string (`<<<`) is not a heredoc.
            None if c == '<'
                && chars.get(k + 1) == Some(&'<')
                && chars.get(k + 2) == Some(&'<') =>
            {
                k += 3;
                continue;
            }
            None if c == '<'
                && chars.get(k + 1) == Some(&'<')
                && chars.get(k + 2) != Some(&'<') =>
            {
                let mut j = k + 2;
                let strip = chars.get(j) == Some(&'-');
                if strip {
                    j += 1;
                }
                let q = match chars.get(j) {
                    Some(&c @ ('"' | '\'')) => {
                        j += 1;
                        Some(c)
                    }
                    _ => None,
                };
                let s = j;
                while j < chars.len() && heredoc_name_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[s..j].iter().collect();
                let closed = match q {
                    Some(q) => chars.get(j) == Some(&q),
                    None => true,
                };
                if !name.is_empty() && closed && !name.starts_with(|c: char| c.is_ascii_digit()) {
                    out.push((name, q.is_none(), strip));
                    k = if q.is_some() { j + 1 } else { j };
                    continue;
                }
            }
            None => {}
        }
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_unknown_instruction_is_named_by_a_short_token_only() {
        let msg = |text: &str| parse(text).unwrap_err().message;
        assert_eq!(msg("BOGUS x\n"), "unknown instruction \"BOGUS\"");
        // A shadow line has no space before its hash: only the user name is shown.
        let m = msg("root:$6$secrethash:19000:0:99999:7:::\n");
        assert_eq!(m, "unknown instruction \"root…\"");
        let long = format!("{}TAIL more", "A".repeat(40));
        assert_eq!(
            msg(&long),
            format!("unknown instruction \"{}…\"", "A".repeat(32))
        );
        let m = msg("\x1b]0;pwned\x07 x\n");
        assert!(!m.contains('\x1b') && !m.contains("pwned"), "{m}");
        // The other messages that quote the file are bounded and escaped too.
        let m = msg(&format!("# escape=\x1b{}\nFROM a\n", "x".repeat(100)));
        assert!(!m.contains('\x1b') && m.len() < 60, "{m}");
    }

    // Cases from the Dockerfile reference (parser directives, escape, comments, heredocs).
    #[test]
    fn continuations_comments_and_directives() {
        let d = parse(
            "# syntax=docker/dockerfile:1\n# escape=\\\n\nFROM busybox AS b\n# a comment\nRUN echo a \\\n  # inside\n\n  && echo b\nCMD [\"sh\", \"-c\"]\nCMD [not json\n",
        )
        .unwrap();
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(d.instrs.len(), 4);
        assert_eq!(d.instrs[0].args, Args::Shell("busybox AS b".into()));
        assert_eq!(d.instrs[1].args, Args::Shell("echo a   && echo b".into()));
        assert_eq!(d.instrs[1].line, 6);
        assert_eq!(d.instrs[2].args, Args::Exec(vec!["sh".into(), "-c".into()]));
        assert_eq!(d.instrs[3].args, Args::Shell("[not json".into()));
    }

    #[test]
    fn the_escape_directive_makes_backtick_the_continuation() {
        let d = parse("# escape=`\nFROM w\nRUN dir c:\\ `\n  /b\n").unwrap();
        assert_eq!(d.escape, '`');
        assert_eq!(d.instrs[1].args, Args::Shell("dir c:\\   /b".into()));
        // A directive after a comment is a comment.
        let d = parse("# hello\n# escape=`\nFROM w\nRUN a `\n").unwrap();
        assert_eq!(d.escape, '\\');
        assert_eq!(d.instrs[1].args, Args::Shell("a `".into()));
    }

    #[test]
    fn heredocs_anywhere_in_the_line() {
        let d = parse(
            "FROM a\nRUN <<EOF\necho hi\nEOF\nRUN cat <<'X' > /f && cat <<-Y >> /f\n$HOME\nX\n\t\tz\n\tY\nCOPY <<EOT /g\ny\nEOT\nRUN echo '<<NOT' \"<<NO\" a<<<b\n",
        )
        .unwrap();
        let h = &d.instrs[1].heredocs;
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].content, "echo hi\n");
        let h = &d.instrs[2].heredocs;
        assert_eq!(h.len(), 2);
        assert_eq!((h[0].name.as_str(), h[0].expand), ("X", false));
        assert_eq!(h[0].content, "$HOME\n");
        assert_eq!((h[1].content.as_str(), h[1].strip_tabs), ("z\n", true));
        assert_eq!(d.instrs[3].heredocs[0].content, "y\n");
        assert!(d.instrs[4].heredocs.is_empty());
        assert_eq!(heredoc_word("<<-'EOT'"), Some("EOT"));
        assert_eq!(heredoc_word("<<EOF"), Some("EOF"));
        assert_eq!(heredoc_word("<<EOF>f"), None);
        assert_eq!(heredoc_word("<<\"EOF"), None);
        let e = parse("FROM a\nRUN <<EOF\nno end\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn flags_and_errors_name_the_place() {
        let d = parse("FROM --platform=linux/amd64 a\nCOPY --from=b --chown=\"1:2\" --link x y\n")
            .unwrap();
        assert_eq!(d.instrs[0].flag("platform"), Some("linux/amd64"));
        assert_eq!(d.instrs[1].flag("chown"), Some("1:2"));
        assert_eq!(d.instrs[1].flag("link"), Some(""));
        assert_eq!(d.instrs[1].args, Args::Shell("x y".into()));
        let e = parse("FROM a\n  BOGUS x\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
        assert!(e.message.contains("BOGUS"), "{e}");
        let e = parse("FROM a\nRUN\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse("FROM a\nSHELL sh -c\n").is_err());
        // Instruction words are case-insensitive.
        assert_eq!(parse("from a\nrun x\n").unwrap().instrs[1].keyword, "RUN");
    }
}

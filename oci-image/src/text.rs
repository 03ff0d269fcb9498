//! Untrusted text made safe to show: what images and containers carry (history, labels,
//! tags, commands, names, Dockerfile lines) reaches terminals and logs.

/// `s` made safe to print on a terminal: every control character (ESC, CSI, CR, BS, BEL,
/// newline, tab, DEL, the C1 range) and every bidirectional override is written as its Rust
/// escape (`\u{1b}`), so a string an image or a container carries (history, labels, tags,
/// commands, names) cannot move the cursor, retitle the window, clear the screen or reorder
/// what is shown around it. Everything else is kept as it is, backslashes included, so
/// ordinary text reads as it was written. What a program prints of
/// images and containers goes through it (the `oci` command line prints every such string
/// through it).
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Control characters, and the format characters that reorder text (bidi embeddings,
/// overrides and isolates: the "Trojan Source" characters).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// At most `max` characters of `s`, made [`printable`], with `…` when cut: for error
/// messages that name a piece of untrusted text without echoing all of it.
pub fn excerpt(s: &str, max: usize) -> String {
    let cut = s.char_indices().nth(max).map_or(s.len(), |(i, _)| i);
    let mut out = printable(&s[..cut]).into_owned();
    if cut < s.len() {
        out.push('…');
    }
    out
}

/// Whether `name` matches `pat`, where an element for which `star` holds takes any run of
/// elements (none included) and every other one exactly one element it is `one` with.
///
/// Patterns and names are untrusted (a `.dockerignore`, a Dockerfile, a filter), so this
/// must not blow up:
/// trying every split at every star is exponential in the stars (`*a*a*a…*b` against a
/// long name of `a`s). Greedy with the last star as the only point to come back to is
/// enough: a later star can take whatever an earlier one would have taken instead, so an
/// earlier star never needs to grow. At most len(pat) × len(name) steps.
pub fn wildcard<P, N>(
    pat: &[P],
    name: &[N],
    star: impl Fn(&P) -> bool,
    one: impl Fn(&P, &N) -> bool,
) -> bool {
    let (mut p, mut n) = (0, 0);
    // The pattern position after the last star seen, and where in the name its run ends.
    let mut back: Option<(usize, usize)> = None;
    while n < name.len() {
        match pat.get(p) {
            Some(t) if star(t) => {
                p += 1;
                back = Some((p, n));
            }
            Some(t) if one(t, &name[n]) => {
                p += 1;
                n += 1;
            }
            _ => match back {
                Some((bp, bn)) => {
                    (p, n) = (bp, bn + 1);
                    back = Some((bp, bn + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(star)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(printable("plain \\ text é"), "plain \\ text é");
        assert_eq!(
            printable("\x1b]0;pwned\x07\x1b[2J\r\x08\n\t\u{9b}\u{7f}"),
            "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\r\\u{8}\\n\\t\\u{9b}\\u{7f}"
        );
        assert_eq!(printable("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(excerpt("abcdef", 3), "abc…");
        assert_eq!(excerpt("ab\x1b", 3), "ab\\u{1b}");
    }
}

//! The module of [`parse`], whose docs say what it is for (the module is private).

use crate::error::{Error, Result};

/// The longest header we parse.
pub const MAX_HEADER_LEN: usize = 16 * 1024;

/// One challenge: a scheme and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased (`bearer`, `basic`).
    pub scheme: String,
    /// Parameters with lowercased names, in order.
    pub params: Vec<(String, String)>,
    /// A token68 given instead of parameters.
    pub token68: Option<String>,
}

impl Challenge {
    /// The value of a parameter (name compared case-insensitively).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a registry asks for, reduced to the schemes we speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthChallenge {
    /// Basic authentication.
    Basic {
        /// The realm, informative only.
        realm: Option<String>,
    },
    /// A bearer token from a token server.
    Bearer {
        /// Where to get the token.
        realm: String,
        /// The `service` parameter to pass on.
        service: Option<String>,
        /// The scope the registry says it needs (space-separated).
        scope: Option<String>,
        /// The `error` parameter (`invalid_token`, `insufficient_scope`), when given.
        error: Option<String>,
    },
}

impl AuthChallenge {
    /// Picks the challenge we prefer from a header: bearer over basic; `None` when it offers
    /// neither.
    pub fn from_header(header: &str) -> Result<Option<Self>> {
        let all = parse(header)?;
        if let Some(c) = all.iter().find(|c| c.scheme == "bearer") {
            let realm = c.param("realm").ok_or_else(|| Error::InvalidChallenge {
                header: header.to_owned(),
                reason: "bearer challenge without realm".into(),
            })?;
            return Ok(Some(AuthChallenge::Bearer {
                realm: realm.to_owned(),
                service: c.param("service").map(str::to_owned),
                scope: c.param("scope").map(str::to_owned),
                error: c.param("error").map(str::to_owned),
            }));
        }
        if let Some(c) = all.iter().find(|c| c.scheme == "basic") {
            return Ok(Some(AuthChallenge::Basic {
                realm: c.param("realm").map(str::to_owned),
            }));
        }
        Ok(None)
    }
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_token68_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~+/".contains(&c)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    header: &'a str,
}

impl<'a> Parser<'a> {
    fn err(&self, reason: impl Into<String>) -> Error {
        Error::InvalidChallenge {
            header: self.header.chars().take(256).collect(),
            reason: format!("{} at byte {}", reason.into(), self.pos),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn skip_ws_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        // tchar is ASCII, so the slice is valid UTF-8 at both ends.
        std::str::from_utf8(&self.s[start..self.pos]).unwrap_or_default()
    }

    fn quoted(&mut self) -> Result<String> {
        // At the opening quote.
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated quoted string")),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        None => return Err(self.err("escape at end of header")),
                        Some(c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                    }
                }
                Some(c) if c == b'\t' || c >= 0x20 && c != 0x7f => {
                    out.push(c);
                    self.pos += 1;
                }
                Some(_) => return Err(self.err("control character in quoted string")),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("quoted string is not UTF-8"))
    }

    /// At a position after a scheme and whitespace: true when a `name=` parameter starts here.
    fn at_param(&self) -> bool {
        let mut p = self.pos;
        let start = p;
        while self.s.get(p).copied().is_some_and(is_tchar) {
            p += 1;
        }
        if p == start {
            return false;
        }
        while matches!(self.s.get(p), Some(b' ' | b'\t')) {
            p += 1;
        }
        if self.s.get(p) != Some(&b'=') {
            return false;
        }
        // `abc==` followed by the end or a comma is a token68, not a parameter.
        let mut q = p;
        while self.s.get(q) == Some(&b'=') {
            q += 1;
        }
        while matches!(self.s.get(q), Some(b' ' | b'\t')) {
            q += 1;
        }
        let token68_like = self.s[start..p].iter().all(|&c| is_token68_char(c));
        !(token68_like && matches!(self.s.get(q), None | Some(b',')) && q > p + 1)
    }
}

/// A parser for `WWW-Authenticate` headers (RFC 9110 section 11.6.1).
///
/// A header can hold several challenges, each a scheme followed by either a token68 or a
/// comma-separated list of `name=value` parameters whose values may be quoted strings with
/// backslash escapes and commas inside. The parser is total: any input gives either challenges
/// or a typed error, never a panic (it is a fuzz target).
///
/// Parses every challenge in a `WWW-Authenticate` header value.
pub fn parse(header: &str) -> Result<Vec<Challenge>> {
    let mut p = Parser {
        s: header.as_bytes(),
        pos: 0,
        header,
    };
    if header.len() > MAX_HEADER_LEN {
        return Err(p.err("header too long"));
    }
    let mut out = Vec::new();
    loop {
        p.skip_ws_commas();
        if p.peek().is_none() {
            break;
        }
        let scheme = p.token();
        if scheme.is_empty() {
            return Err(p.err("expected an auth scheme"));
        }
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
            token68: None,
        };
        p.skip_ws();
        // A token68 right after the scheme.
        if p.peek().is_some() && p.peek() != Some(b',') && !p.at_param() {
            let start = p.pos;
            while p.peek().is_some_and(is_token68_char) {
                p.pos += 1;
            }
            while p.peek() == Some(b'=') {
                p.pos += 1;
            }
            if p.pos == start {
                return Err(p.err("expected a parameter or token68"));
            }
            challenge.token68 = Some(header[start..p.pos].to_owned());
            p.skip_ws();
            match p.peek() {
                None | Some(b',') => {}
                Some(_) => return Err(p.err("unexpected text after token68")),
            }
            out.push(challenge);
            continue;
        }
        // Parameters, until something that is not `name=` (the next challenge) or the end.
        loop {
            p.skip_ws_commas();
            if p.peek().is_none() || !p.at_param() {
                break;
            }
            let name = p.token().to_ascii_lowercase();
            p.skip_ws();
            p.pos += 1; // the '=' that at_param saw
            p.skip_ws();
            let value = match p.peek() {
                Some(b'"') => p.quoted()?,
                _ => {
                    let v = p.token();
                    if v.is_empty() {
                        return Err(p.err(format!("parameter {name} has no value")));
                    }
                    v.to_owned()
                }
            };
            if challenge.params.len() >= 64 {
                return Err(p.err("too many parameters"));
            }
            challenge.params.push((name, value));
            p.skip_ws();
            match p.peek() {
                None | Some(b',') => {}
                Some(_) => return Err(p.err("expected a comma between parameters")),
            }
        }
        out.push(challenge);
        if out.len() > 32 {
            return Err(p.err("too many challenges"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn docker_hub_bearer() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#;
        let c = AuthChallenge::from_header(h).unwrap().unwrap();
        assert_eq!(
            c,
            AuthChallenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
                error: None,
            }
        );
    }

    #[test]
    fn several_challenges_commas_and_escapes() {
        let h = r#"Basic realm="a, \"quoted\" realm", Bearer realm="https://t/x",scope="repository:a:pull,push repository:b:pull" , error=insufficient_scope, Negotiate abc=="#;
        let all = parse(h).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].scheme, "basic");
        assert_eq!(all[0].param("realm"), Some(r#"a, "quoted" realm"#));
        assert_eq!(all[1].scheme, "bearer");
        assert_eq!(
            all[1].param("scope"),
            Some("repository:a:pull,push repository:b:pull")
        );
        assert_eq!(all[1].param("ERROR"), Some("insufficient_scope"));
        assert_eq!(all[2].token68.as_deref(), Some("abc=="));
        let pick = AuthChallenge::from_header(h).unwrap().unwrap();
        assert!(matches!(pick, AuthChallenge::Bearer { .. }));
    }

    #[test]
    fn basic_alone_and_lowercase_scheme() {
        let c = AuthChallenge::from_header(r#"basic realm="Registry Realm""#)
            .unwrap()
            .unwrap();
        assert_eq!(
            c,
            AuthChallenge::Basic {
                realm: Some("Registry Realm".into())
            }
        );
    }

    #[test]
    fn refuses_broken_headers() {
        for h in [
            r#"Bearer realm="unterminated"#,
            r#"Bearer realm="x" junk"#,
            "Bearer realm=",
            r#"Bearer realm="a\"#,
            "=x",
        ] {
            assert!(parse(h).is_err(), "{h}");
        }
        assert!(AuthChallenge::from_header(r#"Bearer service="x""#).is_err());
    }

    #[test]
    fn unknown_schemes_give_none() {
        assert_eq!(AuthChallenge::from_header("Negotiate").unwrap(), None);
        assert_eq!(AuthChallenge::from_header("").unwrap(), None);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = parse(&s);
            let _ = AuthChallenge::from_header(&s);
        }

        #[test]
        fn quoted_values_round_trip(v in "[ -~]{0,40}") {
            let escaped = v.replace('\\', "\\\\").replace('"', "\\\"");
            let h = format!("Bearer realm=\"{escaped}\", service=x");
            let all = parse(&h).unwrap();
            prop_assert_eq!(all.len(), 1);
            prop_assert_eq!(all[0].param("realm"), Some(v.as_str()));
            prop_assert_eq!(all[0].param("service"), Some("x"));
        }
    }
}

//! docker's `--format`: Go's text/template language (through the `gotmpl` crate) over an
//! object's JSON, with docker's functions (`json`, `join`, `split`, `upper`, `lower`,
//! `title`, `pad`, `truncate`) beside Go's own (`printf`, `len`, `index`, `println`, `eq`, …),
//! and docker's two forms besides a plain template:
//! - `table TEMPLATE`: a header row from the template's fields, then a row per object,
//!   aligned at each `\t` as docker's tabwriter aligns them; `table` alone is the command's
//!   default table;
//! - `json`: each object as one line of JSON.
//!
//! As in docker, `\t` and `\n` written in the template are a tab and a newline, a missing
//! key prints `<no value>`, and `{{.Label "KEY"}}` gives one label of an object whose JSON
//! has its labels as a `Label` map (see [`Format::render`]). What an object's strings hold
//! reaches the terminal through [`oci_rs_image::printable`]: a container cannot send escape
//! sequences through `ps --format`.
//!
//! ```
//! use oci_rs_runtime::format::{Format, PS_HEADERS};
//! let rows = [
//!     serde_json::json!({"ID": "0123456789ab", "Names": "web", "Label": {"tier": "front"}}),
//!     serde_json::json!({"ID": "ba9876543210", "Names": "database-server", "Label": {}}),
//! ];
//! let f = Format::parse(r"table {{.ID}}\t{{.Names}}\t{{.Label `tier`}}", "").unwrap();
//! assert_eq!(
//!     f.render_all(&rows, PS_HEADERS).unwrap(),
//!     "CONTAINER ID   NAMES             LABEL\n\
//!      0123456789ab   web               front\n\
//!      ba9876543210   database-server   \n"
//! );
//! let f = Format::parse("{{.Names | upper}} {{len .ID}}", "").unwrap();
//! assert_eq!(f.render(&rows[0]).unwrap(), "WEB 12");
//! ```

use crate::error::{Error, Result};
use gotmpl::{Template, TemplateError, Value};

/// docker's headers of `ps`'s fields.
pub const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Label", "LABEL"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
];

/// docker's headers of `images`' fields.
pub const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
];

/// docker's headers of `volume ls`'s fields.
pub const VOLUME_HEADERS: &[(&str, &str)] = &[
    ("Name", "VOLUME NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Labels", "LABELS"),
    ("Label", "LABEL"),
    ("Links", "LINKS"),
    ("Size", "SIZE"),
];

/// docker's headers of `network ls`'s fields.
pub const NETWORK_HEADERS: &[(&str, &str)] = &[
    ("ID", "NETWORK ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("IPv6", "IPV6"),
    ("Internal", "INTERNAL"),
    ("Labels", "LABELS"),
    ("Label", "LABEL"),
    ("CreatedAt", "CREATED AT"),
];

/// docker's headers of `stats`' fields.
pub const STATS_HEADERS: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

/// docker's headers of `system df`'s fields.
pub const DF_HEADERS: &[(&str, &str)] = &[
    ("Type", "TYPE"),
    ("TotalCount", "TOTAL"),
    ("Active", "ACTIVE"),
    ("Size", "SIZE"),
    ("Reclaimable", "RECLAIMABLE"),
];

/// The column titles of `system df -v`'s images table.
pub const DF_IMAGE_HEADERS: &[(&str, &str)] = &[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("ID", "IMAGE ID"),
    ("CreatedSince", "CREATED"),
    ("Size", "SIZE"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("Containers", "CONTAINERS"),
];

/// The column titles of `system df -v`'s containers table.
pub const DF_CONTAINER_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Size", "SIZE"),
    ("RunningFor", "CREATED"),
    ("Status", "STATUS"),
    ("Names", "NAMES"),
];

/// The column titles of `system df -v`'s local volumes table.
pub const DF_VOLUME_HEADERS: &[(&str, &str)] = &[
    ("Name", "VOLUME NAME"),
    ("Links", "LINKS"),
    ("Size", "SIZE"),
];

/// The column titles of `system df -v`'s build cache table.
pub const DF_CACHE_HEADERS: &[(&str, &str)] = &[
    ("ID", "CACHE ID"),
    ("CacheType", "CACHE TYPE"),
    ("Size", "SIZE"),
    ("CreatedSince", "CREATED"),
    ("LastUsedSince", "LAST USED"),
    ("UsageCount", "USAGE"),
    ("Shared", "SHARED"),
];

/// docker's headers of `history`'s fields.
pub const HISTORY_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
];

/// The id docker prints for an image: its config digest whole with `no_trunc`, else the
/// first 12 hex digits.
fn image_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        return id.to_owned();
    }
    let hex = id.split_once(':').map_or(id, |(_, h)| h);
    hex.chars().take(12).collect()
}

/// The fields `images --format` knows (docker's names, see [`IMAGE_HEADERS`]) of one row;
/// the id whole with `no_trunc`.
///
/// ```
/// let row = oci_rs_layer::ImageRow {
///     repository: "alpine".into(),
///     tag: "3.20".into(),
///     id: format!("sha256:{}", "ab".repeat(32)),
///     digest: String::new(),
///     size: 7_800_000,
///     compressed_size: 3_600_000,
///     created: None,
///     layers: Vec::new(),
/// };
/// let f = oci_rs_runtime::format::image_fields(&row, false);
/// assert_eq!(f["ID"], "abababababab");
/// assert_eq!(f["Size"], "7.8MB");
/// assert_eq!(f["CreatedSince"], "N/A");
/// ```
pub fn image_fields(r: &oci_rs_layer::ImageRow, no_trunc: bool) -> serde_json::Value {
    serde_json::json!({
        "Repository": r.repository,
        "Tag": r.tag,
        "ID": image_id(&r.id, no_trunc),
        "Digest": r.digest,
        "CreatedSince": r.created.map_or_else(|| "N/A".into(), crate::ago),
        "CreatedAt": r.created.map(crate::docker_time).unwrap_or_default(),
        "Size": crate::human_size(r.size),
        "VirtualSize": crate::human_size(r.size),
        // What docker's CLI shows when the daemon did not count them (without -a or df).
        "Containers": "N/A",
        "SharedSize": "N/A",
        "UniqueSize": "N/A",
    })
}

/// JSON text `raw` indented as Go's `json.Indent(dst, raw, "", indent)` writes it (docker's
/// `manifest inspect` prints a registry's document so): its members in their order, one
/// per line, `": "` after each key, empty objects and arrays kept as `{}` and `[]`. `None`
/// when `raw` is not JSON.
///
/// ```
/// let raw = br#"{"schemaVersion":2,"layers":[],"config":{"size":7}}"#;
/// let text = oci_rs_runtime::format::indent_json(raw, "\t").unwrap();
/// assert_eq!(text, "{\n\t\"schemaVersion\": 2,\n\t\"layers\": [],\n\t\"config\": {\n\t\t\"size\": 7\n\t}\n}");
/// ```
pub fn indent_json(raw: &[u8], indent: &str) -> Option<String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(raw).ok()?;
    let text = std::str::from_utf8(raw).ok()?;
    let mut out = String::with_capacity(text.len() * 2);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(indent);
        }
    };
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            ' ' | '\t' | '\n' | '\r' => {}
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                while chars.next_if(|n| n.is_ascii_whitespace()).is_some() {}
                let close = if c == '{' { '}' } else { ']' };
                out.push(c);
                if chars.next_if_eq(&close).is_some() {
                    out.push(close);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c => out.push(c),
        }
    }
    Some(out)
}

/// The id `history` prints for a row: `<missing>` for the layers below the image's own.
pub fn history_id(r: &oci_rs_layer::HistoryRow, no_trunc: bool) -> String {
    match &r.id {
        Some(i) => image_id(i, no_trunc),
        None => "<missing>".into(),
    }
}

/// The fields `history --format` knows (docker's names, see [`HISTORY_HEADERS`]) of one
/// row, as docker's: without `no_trunc` the command cut to 45 characters (tabs read as
/// spaces); with `human`, ages and sizes in docker's units, else RFC 3339 times and bytes.
///
/// ```
/// let row = oci_rs_layer::HistoryRow {
///     id: None,
///     created: None,
///     created_by: "RUN make".into(),
///     size: 2_000,
///     comment: String::new(),
/// };
/// let f = oci_rs_runtime::format::history_fields(&row, false, true);
/// assert_eq!(f["ID"], "<missing>");
/// assert_eq!(f["Size"], "2kB");
/// ```
pub fn history_fields(
    r: &oci_rs_layer::HistoryRow,
    no_trunc: bool,
    human: bool,
) -> serde_json::Value {
    let by = r.created_by.replace('\t', " ");
    let by = if no_trunc || by.chars().count() <= 45 {
        by
    } else {
        format!("{}…", by.chars().take(44).collect::<String>())
    };
    let since = match (r.created, human) {
        (None, _) => "N/A".to_owned(),
        (Some(t), true) => crate::ago(t),
        // Go's time.RFC3339: whole seconds.
        (Some(t), false) => {
            let full = crate::rfc3339(t);
            match full.split_once('.') {
                Some((secs, _)) => format!("{secs}Z"),
                None => full,
            }
        }
    };
    serde_json::json!({
        "ID": history_id(r, no_trunc),
        "CreatedSince": since,
        "CreatedAt": r.created.map(crate::rfc3339).unwrap_or_default(),
        "CreatedBy": by,
        "Size": if human { crate::human_size(r.size) } else { r.size.to_string() },
        "Comment": r.comment,
    })
}

/// A parsed `--format`.
#[derive(Clone)]
pub struct Format {
    source: String,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Json,
    Plain(Template),
    Table(Template),
}

impl std::fmt::Debug for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Format")
            .field("source", &self.source)
            .field("table", &self.is_table())
            .finish()
    }
}

impl Format {
    /// Parses `source`: `json`, `table` (the command's `default_table`, itself a `table
    /// ...` or a bare template), `table TEMPLATE`, or a template.
    pub fn parse(source: &str, default_table: &str) -> Result<Self> {
        let trimmed = source.trim();
        let kind = if trimmed == "json" {
            Kind::Json
        } else if let Some(rest) = table_body(trimmed) {
            let body = match rest.trim() {
                "" => table_body(default_table.trim()).map_or(default_table, str::trim),
                t => t,
            };
            Kind::Table(compile(source, body)?)
        } else {
            Kind::Plain(compile(source, source)?)
        };
        Ok(Self {
            source: source.to_owned(),
            kind,
        })
    }

    /// Whether it is a `table` (a header row, aligned columns).
    pub fn is_table(&self) -> bool {
        matches!(self.kind, Kind::Table(_))
    }

    /// One object's line (without its newline): the template over `value`, or its JSON.
    pub fn render(&self, value: &serde_json::Value) -> Result<String> {
        match &self.kind {
            Kind::Json => Ok(serde_json::to_string(&without_label(value)).unwrap_or_default()),
            Kind::Plain(t) | Kind::Table(t) => self.execute(t, value),
        }
    }

    /// Every object, a line each (a `table` with its header first and its columns aligned);
    /// `headers` names the header of each field (other fields' headers are their names in
    /// capitals).
    pub fn render_all(
        &self,
        values: &[serde_json::Value],
        headers: &[(&str, &str)],
    ) -> Result<String> {
        let Kind::Table(t) = &self.kind else {
            let mut out = String::new();
            for v in values {
                out.push_str(&self.render(v)?);
                out.push('\n');
            }
            return Ok(out);
        };
        let mut lines = vec![self.execute(t, &header_object(values.first(), headers))?];
        for v in values {
            lines.push(self.execute(t, v)?);
        }
        Ok(align(&lines))
    }

    fn execute(&self, t: &Template, value: &serde_json::Value) -> Result<String> {
        let data = gotmpl::to_value(value).map_err(|e| self.error(e))?;
        let out = t.execute_to_string(&data).map_err(|e| self.error(e))?;
        // Escape sequences from an object's strings are shown, not sent; the template's own
        // tabs and newlines stay.
        Ok(out
            .split('\n')
            .map(|l| {
                l.split('\t')
                    .map(|c| oci_rs_image::printable(c).into_owned())
                    .collect::<Vec<_>>()
                    .join("\t")
            })
            .collect::<Vec<_>>()
            .join("\n"))
    }

    fn error(&self, e: TemplateError) -> Error {
        Error::Template {
            template: oci_rs_image::excerpt(&self.source, 80),
            source: Box::new(e),
        }
    }
}

/// What follows a leading `table` word, if there is one.
fn table_body(s: &str) -> Option<&str> {
    let rest = s.strip_prefix("table")?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then_some(rest)
}

/// The template `body` of `--format` `source`, with docker's functions.
fn compile(source: &str, body: &str) -> Result<Template> {
    let body = body.replace(r"\t", "\t").replace(r"\n", "\n");
    let body = rewrite_label_calls(&body);
    Template::new("format")
        .func("json", |a| {
            let [v] = a else {
                return Err(arity("json", 1, a));
            };
            Ok(Value::String(
                serde_json::to_string(&to_json(v))
                    .unwrap_or_default()
                    .into(),
            ))
        })
        .func("join", |a| match a {
            [Value::List(l), Value::String(sep)] => Ok(Value::String(
                l.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(sep)
                    .into(),
            )),
            [Value::Nil, _] => Ok(Value::String("".into())),
            _ => Err(bad_args("join", "a list and a separator")),
        })
        .func("split", |a| match a {
            [Value::String(s), Value::String(sep)] => Ok(Value::List(
                s.split(&**sep)
                    .map(|p| Value::String(p.into()))
                    .collect::<Vec<_>>()
                    .into(),
            )),
            _ => Err(bad_args("split", "a string and a separator")),
        })
        .func("upper", |a| string_fn("upper", a, |s| s.to_uppercase()))
        .func("lower", |a| string_fn("lower", a, |s| s.to_lowercase()))
        .func("title", |a| string_fn("title", a, title))
        .func("pad", |a| match a {
            [v, before, after] => {
                let n =
                    |x: &Value| count(x).ok_or_else(|| bad_args("pad", "a value and two counts"));
                let (b, f) = (n(before)?, n(after)?);
                Ok(Value::String(
                    format!("{}{}{}", " ".repeat(b), v, " ".repeat(f)).into(),
                ))
            }
            _ => Err(arity("pad", 3, a)),
        })
        .func("truncate", |a| match a {
            [v, n] => {
                let n = count(n).ok_or_else(|| bad_args("truncate", "a value and a length"))?;
                Ok(Value::String(
                    v.to_string().chars().take(n).collect::<String>().into(),
                ))
            }
            _ => Err(arity("truncate", 2, a)),
        })
        .func("label", |a| match a {
            [Value::Map(m), Value::String(k)] => Ok(m
                .get(&**k)
                .cloned()
                .unwrap_or_else(|| Value::String("".into()))),
            // The header row's `Label` is its header.
            [Value::String(h), _] => Ok(Value::String(h.clone())),
            [Value::Nil, _] => Ok(Value::String("".into())),
            _ => Err(bad_args("Label", "a label's name")),
        })
        .max_range_iters(1_000_000)
        .parse(&body)
        .map_err(|e| Error::Template {
            template: oci_rs_image::excerpt(source, 80),
            source: Box::new(e),
        })
}

/// docker's `{{.Label "KEY"}}` is a method call, which Go templates over a map cannot make:
/// `X.Label "KEY"` becomes `label X.Label "KEY"` (outside string literals).
fn rewrite_label_calls(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let close = action_end(after).unwrap_or(after.len());
        out.push_str(&rewrite_action(&after[..close]));
        rest = &after[close..];
    }
    out.push_str(rest);
    out
}

/// The end of the action that `s` starts with (after its `}}`), skipping string literals.
fn action_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 2;
    let mut quote = None;
    while i < b.len() {
        match (quote, b[i]) {
            (Some(q), c) if c == q => quote = None,
            (Some(b'"'), b'\\') => i += 1,
            (Some(_), _) => {}
            (None, c @ (b'"' | b'`' | b'\'')) => quote = Some(c),
            (None, b'}') if b.get(i + 1) == Some(&b'}') => return Some(i + 2),
            _ => {}
        }
        i += 1;
    }
    None
}

fn rewrite_action(action: &str) -> String {
    let mut out = String::with_capacity(action.len() + 8);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut term_start = 0;
    for (i, c) in action.char_indices() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if matches!(c, '"' | '`' | '\'') => quote = Some(c),
            None if c.is_whitespace() || matches!(c, '(' | '|' | '{') => {
                term_start = out.len() + c.len_utf8();
            }
            None if action[i..].starts_with(".Label")
                && action[i + 6..].starts_with(char::is_whitespace) =>
            {
                out.insert_str(term_start, "label ");
            }
            None => {}
        }
        out.push(c);
    }
    out
}

fn string_fn(name: &str, a: &[Value], f: impl Fn(&str) -> String) -> gotmpl::Result<Value> {
    match a {
        [Value::String(s)] => Ok(Value::String(f(s).into())),
        [v] => Ok(Value::String(f(&v.to_string()).into())),
        _ => Err(arity(name, 1, a)),
    }
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

fn count(v: &Value) -> Option<usize> {
    match v {
        Value::Int(n) => usize::try_from(*n).ok(),
        Value::Uint(n) => usize::try_from(*n).ok(),
        _ => None,
    }
    // A count past this would only be a way to exhaust memory.
    .filter(|n| *n <= 4096)
}

fn arity(name: &str, expected: usize, got: &[Value]) -> TemplateError {
    TemplateError::ArgCount {
        name: name.to_owned(),
        expected,
        got: got.len(),
    }
}

fn bad_args(name: &str, expected: &str) -> TemplateError {
    TemplateError::Exec(format!("{name}: expected {expected}"))
}

/// A template value as JSON (docker's `json` function).
fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil | Value::Function(_) => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(n) => J::from(*n),
        Value::Uint(n) => J::from(*n),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::String(s) => J::String(s.to_string()),
        Value::List(l) => J::Array(l.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect()),
    }
}

/// An object's JSON without the `Label` map that only serves `{{.Label "KEY"}}`.
fn without_label(v: &serde_json::Value) -> std::borrow::Cow<'_, serde_json::Value> {
    match v.as_object() {
        Some(m) if m.contains_key("Label") => {
            let mut m = m.clone();
            m.remove("Label");
            std::borrow::Cow::Owned(serde_json::Value::Object(m))
        }
        _ => std::borrow::Cow::Borrowed(v),
    }
}

/// The header row's object: each field of `first` (and each of `headers`) with its header.
fn header_object(first: Option<&serde_json::Value>, headers: &[(&str, &str)]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    if let Some(obj) = first.and_then(|f| f.as_object()) {
        for k in obj.keys() {
            m.insert(k.clone(), k.to_uppercase().into());
        }
    }
    for (k, h) in headers {
        m.insert((*k).to_owned(), (*h).into());
    }
    serde_json::Value::Object(m)
}

/// docker's tabwriter for its tables (minimum width 10, padding 3): see [`tabwriter`].
fn align(lines: &[String]) -> String {
    tabwriter(lines, 10)
}

/// docker's tabwriter with padding 3: each tab-ended cell of `lines` is padded to its
/// column's widest cell plus three, and at least `min_width`; a line's last cell is left as
/// it is. Tables use 10; `docker top` 20.
pub fn tabwriter(lines: &[String], min_width: usize) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for r in &rows {
        for (i, cell) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            let w = cell.chars().count() + 3;
            match widths.get_mut(i) {
                Some(x) => *x = (*x).max(w),
                None => widths.push(w.max(min_width)),
            }
        }
    }
    let mut out = String::new();
    for r in &rows {
        let last = r.len().saturating_sub(1);
        for (i, cell) in r.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn indenting_keeps_strings_order_and_empty_containers() {
        let raw = br#" { "z" : "a{b},[c]:\"d\"" , "a":[ 1 ,{ }, [ ] ,null] } "#;
        let text = indent_json(raw, "  ").unwrap();
        assert_eq!(
            text,
            "{\n  \"z\": \"a{b},[c]:\\\"d\\\"\",\n  \"a\": [\n    1,\n    {},\n    [],\n    null\n  ]\n}"
        );
        // The same document, read back.
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back,
            serde_json::from_slice::<serde_json::Value>(raw).unwrap()
        );
        assert!(indent_json(b"{\"a\":", "\t").is_none());
        assert!(indent_json(b"\xff", "\t").is_none());
    }

    #[test]
    fn go_templates_as_docker_writes_them() {
        let v = json!({
            "Name": "web", "Labels": {"a.b": "1"}, "Ports": ["80/tcp", "443/tcp"],
            "State": {"Running": true}, "Label": {"x": "y"}, "Count": 3,
        });
        let r = |t: &str| Format::parse(t, "").unwrap().render(&v).unwrap();
        assert_eq!(r("{{.Name}}"), "web");
        assert_eq!(r("{{.Missing}}"), "<no value>");
        assert_eq!(r(r#"{{index .Labels "a.b"}}"#), "1");
        assert_eq!(r(r#"{{range .Ports}}[{{.}}]{{end}}"#), "[80/tcp][443/tcp]");
        assert_eq!(r(r#"{{join .Ports ", "}}"#), "80/tcp, 443/tcp");
        assert_eq!(r(r#"{{if .State.Running}}up{{else}}down{{end}}"#), "up");
        assert_eq!(r(r#"{{with .State}}{{.Running}}{{end}}"#), "true");
        assert_eq!(r(r#"{{printf "%s-%d" .Name .Count}}"#), "web-3");
        assert_eq!(r(r#"{{len .Ports}}"#), "2");
        assert_eq!(r(r#"{{split "a:b" ":"}}"#), "[a b]");
        assert_eq!(
            r(r#"{{upper .Name}} {{lower "AB"}} {{title "hello world"}}"#),
            "WEB ab Hello World"
        );
        assert_eq!(r(r#"{{println .Name}}"#), "web\n");
        assert_eq!(r(r#"{{json .State}}"#), r#"{"Running":true}"#);
        assert_eq!(r(r#"{{.Label "x"}}|{{.Label "nope"}}"#), "y|");
        assert_eq!(r(r#"{{pad .Name 1 2}}|{{truncate .Name 2}}"#), " web  |we");
        assert_eq!(r(r"{{.Name}}\t{{.Count}}"), "web\t3");
        assert_eq!(
            r(r#"{{printf "%s" ".Label x"}}"#),
            ".Label x",
            "not in a string"
        );
        let json = Format::parse("json", "").unwrap().render(&v).unwrap();
        assert!(!json.contains("\"Label\""), "{json}");
        assert!(json.contains("\"Count\":3"));
    }

    #[test]
    fn tables_align_as_docker_s_tabwriter() {
        let rows = [
            json!({"ID": "a", "Name": "one"}),
            json!({"ID": "bbbbbbbbbbbbbb", "Name": "two"}),
        ];
        let f = Format::parse(r"table {{.ID}}\t{{.Name}}", "").unwrap();
        assert_eq!(
            f.render_all(&rows, &[("ID", "THE ID")]).unwrap(),
            "THE ID           NAME\na                one\nbbbbbbbbbbbbbb   two\n"
        );
        let f = Format::parse("table", r"table {{.Name}}").unwrap();
        assert_eq!(f.render_all(&rows, &[]).unwrap(), "NAME\none\ntwo\n");
        assert!(!Format::parse("{{.ID}}", "").unwrap().is_table());
        assert!(!Format::parse("tablespoon {{.ID}}", "").unwrap().is_table());
    }

    #[test]
    fn bad_templates_and_hostile_values_are_errors_or_shown_harmlessly() {
        let e = Format::parse("{{.Name", "").unwrap_err();
        assert!(e.to_string().contains("{{.Name"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        let f = Format::parse("{{nosuchfunc .}}", "").unwrap();
        let e = f.render(&json!({})).unwrap_err();
        assert!(std::error::Error::source(&e).is_some(), "{e}");
        // A template that calls itself ends with an error, not a stack overflow.
        let f = Format::parse(
            r#"{{define "a"}}{{template "a" .}}{{end}}{{template "a" .}}"#,
            "",
        )
        .unwrap();
        assert!(f.render(&json!({})).is_err());
        let f = Format::parse("{{pad . 1 100000000}}", "").unwrap();
        assert!(f.render(&json!("x")).is_err());
        // A value's escape sequence is shown, not sent.
        let f = Format::parse("{{.Name}}", "").unwrap();
        assert_eq!(
            f.render(&json!({"Name": "a\u{1b}[2Jb"})).unwrap(),
            "a\\u{1b}[2Jb"
        );
    }
}

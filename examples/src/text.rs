//! How containers read and are written at the command line: docker's durations and STATUS
//! column, `--format` templates, `ps --filter`, and the values of `--memory`, `--log-opt`,
//! `--since` and `--env-file`.

use anyhow::{anyhow, bail, Context, Result};
use oci_rs_image::printable;
use oci_rs_runtime::ContainerView;
use oci_rs_runtime::LogLimits;
use oci_rs_runtime::{MonitorState, MonitorStatus};
use std::path::Path;

/// Evaluates a Go-template-style `--format`: `{{.State.Status}}`, `{{json .Config}}`, text
/// around them kept. Only field access (and `json`) is supported; anything else is an error.
pub fn format_template(template: &str, value: &serde_json::Value) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after
            .find("}}")
            .ok_or_else(|| anyhow!("unclosed {{{{ in format {template:?}"))?;
        let expr = after[..j].trim();
        let (json, path) = match expr.strip_prefix("json ") {
            Some(p) => (true, p.trim()),
            None => (false, expr),
        };
        if !path.starts_with('.') {
            bail!("unsupported format expression {expr:?} (field access like .State.Status only)");
        }
        let mut v = value;
        for field in path[1..].split('.').filter(|f| !f.is_empty()) {
            v = v
                .get(field)
                .ok_or_else(|| anyhow!("template: no field {field:?} in {path}"))?;
        }
        match (json, v) {
            (true, v) => out.push_str(&serde_json::to_string(v)?),
            // A string from an image or a container may hold escape sequences: shown
            // through `printable` like every table; `{{json .X}}` gives the exact value.
            (false, serde_json::Value::String(s)) => out.push_str(&printable(s)),
            (false, serde_json::Value::Null) => out.push_str("<no value>"),
            (false, v) => out.push_str(&v.to_string()),
        }
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `ps` rows after `-a` and `--filter status=...,name=...`.
pub fn filter(
    rows: Vec<ContainerView>,
    all: bool,
    filters: &[String],
) -> Result<Vec<ContainerView>> {
    let mut status = Vec::new();
    let mut names = Vec::new();
    for f in filters {
        match f.split_once('=') {
            Some(("status", s)) => {
                if !["created", "running", "restarting", "exited"].contains(&s) {
                    bail!("invalid filter status={s} (created, running, restarting, exited)");
                }
                status.push(s.to_owned());
            }
            Some(("name", n)) => names.push(n.to_owned()),
            _ => bail!("invalid filter {f:?} (status=, name=)"),
        }
    }
    Ok(rows
        .into_iter()
        .filter(|r| {
            let st = r.status.state.to_string();
            (if status.is_empty() {
                all || r.status.state == MonitorState::Running
                    || r.status.state == MonitorState::Restarting
            } else {
                status.contains(&st)
            }) && (names.is_empty() || names.iter().any(|n| r.config.name.contains(n.as_str())))
        })
        .collect())
}

/// `64m`, `1g`, `512k`, `1024` (bytes), as docker reads `--memory`.
pub fn parse_size(s: &str) -> Result<i64> {
    let lower = s.trim().to_ascii_lowercase();
    let t = lower.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| anyhow!("invalid size {s:?}"))?;
    if !(n.is_finite() && n > 0.0) {
        bail!("invalid size {s:?}");
    }
    Ok((n * mult as f64) as i64)
}

/// `--log-opt max-size=10m`, `max-file=3`.
pub fn parse_log_opts(opts: &[String]) -> Result<LogLimits> {
    let mut l = LogLimits::default();
    for o in opts {
        match o.split_once('=') {
            Some(("max-size", v)) => l.max_size = Some(parse_size(v)? as u64),
            Some(("max-file", v)) => {
                l.max_files = v
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| anyhow!("invalid max-file {v:?}"))?
            }
            _ => bail!("unsupported --log-opt {o:?} (max-size=, max-file=)"),
        }
    }
    if l.max_files > 1 && l.max_size.is_none() {
        bail!("max-file needs max-size");
    }
    Ok(l)
}

/// A `--since`/`--until` value: RFC 3339, Unix seconds, or a duration ago (`10m`, `1h30m`,
/// `45s`); nanoseconds since the epoch.
pub fn parse_time(s: &str) -> Result<u64> {
    if let Some(t) = oci_rs_runtime::parse_rfc3339(s) {
        return Ok(t);
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(secs.saturating_mul(1_000_000_000));
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| anyhow!("invalid time {s:?}"))?;
        num.clear();
        total += n * match ch {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => bail!("invalid time {s:?} (RFC 3339, Unix seconds, or 1h30m)"),
        };
    }
    if !num.is_empty() || total == 0 && s != "0s" {
        bail!("invalid time {s:?} (RFC 3339, Unix seconds, or 1h30m)");
    }
    Ok(oci_rs_runtime::now_ns().saturating_sub(total * 1_000_000_000))
}

/// Reads `KEY=VALUE` lines (`#` comments, blank lines skipped; a bare `KEY` takes this
/// process's value, as docker's `--env-file`).
pub fn read_env_file(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if l.contains('=') {
            out.push(l.to_owned());
        } else if let Ok(v) = std::env::var(l) {
            out.push(format!("{l}={v}"));
        }
    }
    Ok(out)
}

/// docker's "5 seconds ago", "2 minutes ago", "About an hour ago".
pub fn ago(ns: u64) -> String {
    let secs = oci_rs_runtime::now_ns().saturating_sub(ns) / 1_000_000_000;
    format!("{} ago", human_duration(secs))
}

/// docker's units for a duration: "Less than a second", "5 seconds", "About a minute", ...
pub fn human_duration(secs: u64) -> String {
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 48 * 3600 => format!("{} hours", s / 3600),
        s if s < 14 * 86_400 => format!("{} days", s / 86_400),
        s if s < 60 * 86_400 => format!("{} weeks", s / (7 * 86_400)),
        s if s < 2 * 365 * 86_400 => format!("{} months", s / (30 * 86_400)),
        s => format!("{} years", s / (365 * 86_400)),
    }
}

/// The STATUS column of `ps`: "Up 5 seconds", "Exited (0) 2 minutes ago", "Created".
pub fn status_text(s: &MonitorStatus) -> String {
    let now = oci_rs_runtime::now_ns();
    match s.state {
        MonitorState::Created => "Created".into(),
        MonitorState::Running => format!(
            "Up {}",
            human_duration(now.saturating_sub(s.started_at.unwrap_or(now)) / 1_000_000_000)
        ),
        MonitorState::Restarting => format!(
            "Restarting ({}) {}",
            s.exit_code.unwrap_or(0),
            ago(s.finished_at.unwrap_or(now))
        ),
        MonitorState::Exited => format!(
            "Exited ({}) {}",
            s.exit_code.unwrap_or(255),
            ago(s.finished_at.unwrap_or(now))
        ),
    }
}

/// docker's PORTS column: `0.0.0.0:8080->80/tcp, ...`.
pub fn ports_text(s: &MonitorStatus) -> String {
    s.network
        .as_ref()
        .map(|n| {
            n.ports
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// Seconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339_s(secs: u64) -> String {
    oci_rs_runtime::rfc3339(secs.saturating_mul(1_000_000_000))
}

/// `images [REPO[:TAG]] --filter dangling=|reference=`: the rows that pass. A reference
/// pattern matches the familiar `REPO:TAG` (or `REPO` alone) with `*` for any run of
/// characters but `/`, as docker's path.Match.
pub fn image_filter(
    rows: Vec<oci_rs_layer::ImageRow>,
    reference: Option<&str>,
    filters: &[String],
) -> Result<Vec<oci_rs_layer::ImageRow>> {
    let mut patterns: Vec<String> = reference.map(str::to_owned).into_iter().collect();
    let mut dangling = None;
    for f in filters {
        match f.split_once('=') {
            Some(("dangling", v)) => {
                dangling = Some(match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => bail!("invalid filter {f:?}: dangling=true or dangling=false"),
                })
            }
            Some(("reference", v)) => patterns.push(v.to_owned()),
            _ => bail!("unsupported filter {f:?} (dangling=BOOL, reference=PATTERN)"),
        }
    }
    Ok(rows
        .into_iter()
        .filter(|r| dangling.is_none_or(|d| d == (r.tag == "<none>")))
        .filter(|r| {
            patterns.is_empty()
                || patterns.iter().any(|p| {
                    glob(p, &r.repository) || glob(p, &format!("{}:{}", r.repository, r.tag))
                })
        })
        .collect())
}

/// `*` matches any run of characters but `/`; everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    // A `*` never takes a `/`, so the text's `/`s meet the pattern's one to one, in order,
    // and each part between them matches on its own.
    let (p, t): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), text.split('/').collect());
    p.len() == t.len()
        && p.iter().zip(&t).all(|(p, t)| {
            let (p, t): (Vec<char>, Vec<char>) = (p.chars().collect(), t.chars().collect());
            oci_rs_image::wildcard(&p, &t, |c| *c == '*', |a, b| a == b)
        })
}

/// docker's human size (go-units `HumanSize`): decimal units, about three significant
/// digits: `0B`, `999B`, `1.23kB`, `4.4MB`, `115MB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    // %.4g as go-units prints it: up to four significant digits, no trailing zeros.
    let digits = if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let mut t = format!("{v:.*}", digits);
    if t.contains('.') {
        t = t.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{t}{}", UNITS[u])
}

#[cfg(test)]
mod tests {
    #[test]
    fn reference_patterns_match_within_a_component() {
        assert!(super::glob("busy*", "busybox"));
        assert!(super::glob("*:1", "app:1"));
        assert!(!super::glob("*", "library/app"));
        assert!(super::glob("localhost:5000/*:*", "localhost:5000/x:y"));
        assert!(!super::glob("bb", "bb:1"));
        assert!(!super::glob("*/x", "a/b/x"));
        assert!(super::glob("*/*/x", "a/b/x"));
        assert!(super::glob("a*", "a"));
        // Exponential in the stars when each tried every split.
        let a40 = "a".repeat(40);
        assert!(!super::glob("*a*a*a*a*a*a*a*a*a*a*a*a*b", &a40));
        assert!(super::glob("*a*a*a*a*a*a*a*a*a*a*a*a*", &a40));
        assert!(!super::glob(
            "*a*a*a*a*a*a*a*a*a*a*a*a*/b",
            &format!("{a40}/b/")
        ));
    }

    #[test]
    fn sizes_read_as_docker_prints_them() {
        use super::human_size;
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1234), "1.234kB");
        assert_eq!(human_size(4_400_000), "4.4MB");
        assert_eq!(human_size(115_300_000), "115.3MB");
        assert_eq!(human_size(2_000_000_000), "2GB");
    }

    use super::*;

    #[test]
    fn durations_read_as_docker_writes_them() {
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
    }
}

//! docker's option values that are not part of a spec: sizes (`--memory 64m`), log limits
//! (`--log-opt`), `--env-file`, and the times of `logs --since/--until`.

use crate::error::{Error, Result};
use crate::LogLimits;
use std::path::Path;

fn invalid(option: &'static str, value: &str, reason: &'static str) -> Error {
    Error::InvalidOption {
        option,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// `64m`, `1g`, `512k`, `1024` (bytes; a trailing `b` allowed), as docker reads `--memory`
/// and `--log-opt max-size`: powers of 1024.
pub fn parse_size(s: &str) -> Result<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let t = lower.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| invalid("size", s, "a number with k, m or g"))?;
    if !(n.is_finite() && n > 0.0 && n * (mult as f64) < u64::MAX as f64) {
        return Err(invalid("size", s, "a positive size"));
    }
    Ok((n * mult as f64) as u64)
}

impl LogLimits {
    /// docker's `--log-driver` with its `--log-opt`s: `json-file`, `local` and podman's
    /// `k8s-file` (the engine keeps one format, CRI's, for all three; see
    /// [`LogLimits::from_opts`]), or `none` (nothing kept, no options). Other drivers are
    /// refused.
    ///
    /// ```
    /// use oci_rs_runtime::LogLimits;
    /// assert!(LogLimits::for_driver("none", &[]).unwrap().disabled);
    /// assert!(LogLimits::for_driver("local", &["max-size=1m".into()]).is_ok());
    /// assert!(LogLimits::for_driver("syslog", &[]).is_err());
    /// assert!(LogLimits::for_driver("none", &["max-size=1m".into()]).is_err());
    /// ```
    pub fn for_driver(driver: &str, opts: &[String]) -> Result<Self> {
        let mut l = match driver {
            "" | "json-file" | "local" | "k8s-file" => Self::from_opts(opts)?,
            "none" if opts.is_empty() => Self {
                disabled: true,
                ..Self::default()
            },
            "none" => {
                return Err(invalid(
                    "log option",
                    &opts.join(","),
                    "the none log driver takes no options",
                ))
            }
            other => {
                return Err(invalid(
                    "log driver",
                    other,
                    "supported: json-file, local, k8s-file (all kept in CRI's format) and none",
                ))
            }
        };
        let driver = if driver.is_empty() {
            "json-file"
        } else {
            driver
        };
        l.given = Some((driver.to_owned(), given_options(opts)));
        Ok(l)
    }

    /// docker's `--log-opt` values for json-file and local: `max-size=10m`, `max-file=3`
    /// (which needs a max-size), the attributes `logs --details` shows (`labels=a,b`,
    /// `labels-regex=RE`, `env=A,B`, `env-regex=RE`, see [`crate::LogAttributes`]),
    /// `compress=false` and `mode=blocking` (what the engine does: rotated files are kept
    /// as they are, and output is written as it comes). Others are refused: `compress=true`,
    /// `mode=non-blocking`, `max-buffer-size`, `tag`.
    pub fn from_opts(opts: &[String]) -> Result<Self> {
        let mut l = LogLimits::default();
        let list = |v: &str| -> Vec<String> {
            v.split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect()
        };
        for o in opts {
            match o.split_once('=') {
                Some(("max-size", v)) => l.max_size = Some(parse_size(v)?),
                Some(("max-file", v)) => {
                    l.max_files = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| invalid("log option max-file", v, "a count from 1"))?
                }
                Some(("labels", v)) => l.attributes.labels = list(v),
                Some(("env", v)) => l.attributes.env = list(v),
                Some(("labels-regex", v)) => {
                    crate::logs::compile(v, "log option labels-regex")?;
                    l.attributes.labels_regex = Some(v.to_owned());
                }
                Some(("env-regex", v)) => {
                    crate::logs::compile(v, "log option env-regex")?;
                    l.attributes.env_regex = Some(v.to_owned());
                }
                Some(("compress", v)) => match go_bool(v) {
                    Ok(false) => {}
                    Ok(true) => {
                        return Err(invalid(
                            "log option compress",
                            v,
                            "rotated logs are kept uncompressed",
                        ))
                    }
                    Err(_) => return Err(invalid("log option compress", v, "true or false")),
                },
                // Empty: unset, as docker takes it.
                Some(("mode", "blocking" | "")) => {}
                Some(("mode", v)) => {
                    return Err(invalid(
                        "log option mode",
                        v,
                        "output is written as it comes (blocking)",
                    ))
                }
                _ => {
                    return Err(invalid(
                        "log option",
                        o,
                        "max-size, max-file, labels, labels-regex, env, env-regex, compress=false or mode=blocking",
                    ))
                }
            }
        }
        if l.max_files > 1 && l.max_size.is_none() {
            return Err(invalid("log option max-file", "", "it needs max-size"));
        }
        l.given = Some(("json-file".to_owned(), given_options(opts)));
        Ok(l)
    }
}

/// `--log-opt`s as `inspect` shows them: by name, the last of a repeated one.
fn given_options(opts: &[String]) -> std::collections::BTreeMap<String, String> {
    opts.iter()
        .filter_map(|o| o.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Go's `strconv.ParseBool`, as docker reads a boolean option.
fn go_bool(v: &str) -> std::result::Result<bool, ()> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(()),
    }
}

/// A `--since`/`--until` value as docker reads one: RFC 3339, its shorter forms without a
/// zone (`2006-01-02`, `2006-01-02T15`, `2006-01-02T15:04`, `2006-01-02T15:04:05[.999]`,
/// taken as UTC), a date with a zone (`2006-01-02+01:00`), Unix seconds (with a fraction),
/// or a duration before now (`10m`, `1h30m`, `45s`); nanoseconds since the epoch.
///
/// ```
/// let t = oci_rs_runtime::parse_log_time("2026-12-07").unwrap();
/// assert_eq!(t, oci_rs_runtime::parse_log_time("2026-12-07T00:00:00Z").unwrap());
/// assert_eq!(oci_rs_runtime::parse_log_time("1.5").unwrap(), 1_500_000_000);
/// ```
pub fn parse_log_time(s: &str) -> Result<u64> {
    if let Some(t) = crate::parse_rfc3339(s) {
        return Ok(t);
    }
    // docker's zoneless and date-only layouts, completed to RFC 3339.
    // The first ten bytes a date's (ASCII): a split there is on a character boundary.
    let date_like = s.get(..10).is_some_and(|d| {
        d.bytes()
            .enumerate()
            .all(|(i, b)| matches!(i, 4 | 7) && b == b'-' || b.is_ascii_digit())
    });
    if date_like {
        let (date, rest) = s.split_at(10);
        let full = match rest.len() {
            0 => Some(format!("{date}T00:00:00Z")),
            6 if rest.starts_with(['+', '-']) => Some(format!("{date}T00:00:00{rest}")),
            1 if rest == "Z" => Some(format!("{date}T00:00:00Z")),
            3 => Some(format!("{s}:00:00Z")),
            6 => Some(format!("{s}:00Z")),
            _ if rest.len() >= 9 => Some(format!("{s}Z")),
            _ => None,
        };
        if let Some(t) = full.as_deref().and_then(crate::parse_rfc3339) {
            return Ok(t);
        }
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(secs.saturating_mul(1_000_000_000));
    }
    if let Some((whole, frac)) = s.split_once('.') {
        // Digits only (every byte a character), then at most nine of them.
        if !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()) {
            let digits = frac.len().min(9);
            if let (Ok(w), Ok(f)) = (whole.parse::<u64>(), frac[..digits].parse::<u64>()) {
                let f = f * 10u64.pow(9 - digits as u32);
                return Ok(w.saturating_mul(1_000_000_000).saturating_add(f));
            }
        }
    }
    let bad = || {
        invalid(
            "time",
            s,
            "RFC 3339 (or 2006-01-02, 2006-01-02T15:04:05), Unix seconds, or a duration such as 1h30m",
        )
    };
    let mut total: u64 = 0;
    let mut num = String::new();
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit = match ch {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|d| total.checked_add(d))
            .ok_or_else(bad)?;
    }
    if !num.is_empty() || total == 0 && s != "0s" {
        return Err(bad());
    }
    Ok(crate::now_ns().saturating_sub(total.saturating_mul(1_000_000_000)))
}

/// docker's `--env-file`: `KEY=VALUE` lines (`#` comments and blank lines skipped; a bare
/// `KEY` takes this process's value when it has one).
pub fn read_env_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
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

/// The environment `docker run` and `docker exec` send for `--env-file FILE...` and
/// `-e VAR...`: the files' lines first ([`read_env_file`]), then the flags over them; a
/// bare `KEY` (no `=`) takes this process's value, and is left out when it has none.
pub fn env_from_args(
    files: &[impl AsRef<Path>],
    vars: impl IntoIterator<Item = String>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        out.extend(read_env_file(f.as_ref())?);
    }
    for v in vars {
        if v.contains('=') {
            out.push(v);
        } else if let Ok(value) = std::env::var(&v) {
            out.push(format!("{v}={value}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn log_times_refuse_what_is_not_one_without_panicking() {
        for bad in [
            "2026-12-0é",
            "2026-12-0éé",
            "1.12345678é",
            "é.5",
            "1.",
            "2026-12-07T1",
            "x",
        ] {
            assert!(parse_log_time(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_log_time("2026-12-07T10").unwrap(),
            parse_log_time("2026-12-07T10:00:00Z").unwrap()
        );
        assert_eq!(
            parse_log_time("2026-12-07+01:00").unwrap(),
            parse_log_time("2026-12-06T23:00:00Z").unwrap()
        );
    }

    #[test]
    fn env_files_come_first_and_bare_names_take_this_process_value() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("env");
        std::fs::write(&f, "# comment\n\nA=from-file\nB=file\n").unwrap();
        let path = std::env::var("PATH").unwrap();
        let env = env_from_args(
            &[&f],
            ["A=from-flag", "PATH", "OCI_RS_NO_SUCH_VARIABLE_7781"].map(String::from),
        )
        .unwrap();
        assert_eq!(
            env,
            [
                "A=from-file",
                "B=file",
                "A=from-flag",
                &format!("PATH={path}")
            ]
        );
        assert!(env_from_args(&[dir.path().join("missing")], Vec::new()).is_err());
    }

    #[test]
    fn sizes_and_log_options_read_as_docker_reads_them() {
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("512kb").unwrap(), 512 << 10);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        for bad in ["", "m", "-1m", "0", "nan", "1e30g", "12q"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        let l = LogLimits::from_opts(&["max-size=1k".into(), "max-file=3".into()]).unwrap();
        assert_eq!((l.max_size, l.max_files), (Some(1024), 3));
        assert!(LogLimits::from_opts(&["max-file=3".into()]).is_err());
        assert!(LogLimits::from_opts(&["max-file=0".into(), "max-size=1k".into()]).is_err());
        assert!(LogLimits::from_opts(&["mode=non-blocking".into()]).is_err());
        // Booleans as Go reads them; an empty mode is unset.
        for ok in ["compress=F", "compress=0", "compress=False", "mode="] {
            assert!(LogLimits::from_opts(&[ok.into()]).is_ok(), "{ok}");
        }
        for bad in ["compress=T", "compress=1", "compress=yes"] {
            assert!(LogLimits::from_opts(&[bad.into()]).is_err(), "{bad}");
        }
        // docker's default, shown by inspect: json-file without options.
        let d = LogLimits::default().given.unwrap();
        assert_eq!((d.0.as_str(), d.1.len()), ("json-file", 0));
    }

    #[test]
    fn log_times_are_dates_seconds_or_durations_ago() {
        assert_eq!(
            parse_log_time("2000-02-29T00:00:00Z").unwrap(),
            951_782_400_000_000_000
        );
        assert_eq!(
            parse_log_time("951782400").unwrap(),
            951_782_400_000_000_000
        );
        let ago = crate::now_ns() - parse_log_time("1h30m").unwrap();
        assert!(
            (5_399_000_000_000..5_460_000_000_000).contains(&ago),
            "{ago}"
        );
        for bad in ["yesterday", "10x", "h", "99999999999999999999h"] {
            assert!(parse_log_time(bad).is_err(), "{bad}");
        }
    }
}

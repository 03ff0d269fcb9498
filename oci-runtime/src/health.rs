//! Health checks, as docker runs them: a probe command run in the container every interval by
//! its [monitor](crate::Monitor), and the status its results make.

use oci_rs_image::Healthcheck;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The most probe output kept per result (docker's); the rest is dropped, and `...` marks
/// the cut.
pub const MAX_PROBE_OUTPUT: usize = 4096;

/// The most results kept (docker's).
pub const MAX_HEALTH_LOG: usize = 5;

/// A health check ready to run: the probe's argv and its timing, docker's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthProbe {
    /// The command run in the container (with the container's user, environment and
    /// directory).
    pub args: Vec<String>,
    /// Between the end of one probe and the start of the next.
    pub interval: Duration,
    /// How long a probe may run; past it, it is killed and counts as failed.
    pub timeout: Duration,
    /// After each start, failures do not count until this much has passed.
    pub start_period: Duration,
    /// Between probes in the start period, until the first success.
    pub start_interval: Duration,
    /// Failures in a row that make the container unhealthy.
    pub retries: u32,
}

impl HealthProbe {
    /// The probe of `check`: `CMD` runs as is, `CMD-SHELL` through `shell` (the image's
    /// `SHELL`; empty: `/bin/sh -c`). None when it checks nothing (`NONE`, no test, or a kind
    /// docker does not know).
    ///
    /// ```
    /// use oci_rs_image::Healthcheck;
    /// use oci_rs_runtime::HealthProbe;
    /// let check = Healthcheck { test: vec!["CMD-SHELL".into(), "test -e /ready".into()],
    ///     retries: 2, ..Default::default() };
    /// let p = HealthProbe::of(&check, &[]).unwrap();
    /// assert_eq!(p.args, ["/bin/sh", "-c", "test -e /ready"]);
    /// assert_eq!((p.interval.as_secs(), p.retries), (30, 2));
    /// assert!(HealthProbe::of(&Healthcheck { test: vec!["NONE".into()], ..check }, &[]).is_none());
    /// ```
    pub fn of(check: &Healthcheck, shell: &[String]) -> Option<Self> {
        let (kind, rest) = check.test.split_first()?;
        let args = match kind.as_str() {
            "CMD" => rest.to_vec(),
            "CMD-SHELL" => {
                let mut a = match shell.is_empty() {
                    true => vec!["/bin/sh".to_owned(), "-c".to_owned()],
                    false => shell.to_vec(),
                };
                a.push(rest.join(" "));
                a
            }
            _ => return None,
        };
        if args.is_empty() {
            return None;
        }
        let or = |ns: u64, default: u64| Duration::from_nanos(if ns == 0 { default } else { ns });
        Some(Self {
            args,
            interval: or(check.interval, 30_000_000_000),
            timeout: or(check.timeout, 30_000_000_000),
            start_period: Duration::from_nanos(check.start_period),
            start_interval: or(check.start_interval, 5_000_000_000),
            retries: if check.retries == 0 { 3 } else { check.retries },
        })
    }

    /// How long to wait before the next probe, `elapsed` after the container started, in
    /// `status`: the interval, or in the start period the start interval until a success,
    /// and never past the start period's end.
    pub fn next_delay(&self, elapsed: Duration, status: HealthStatus) -> Duration {
        let Some(remaining) = self
            .start_period
            .checked_sub(elapsed)
            .filter(|r| !r.is_zero())
        else {
            return self.interval;
        };
        let wait = match status {
            HealthStatus::Starting => self.start_interval,
            _ => self.interval,
        };
        wait.min(remaining)
    }
}

/// A container's health status (docker's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// No success yet since it started.
    Starting,
    /// The last probe succeeded.
    Healthy,
    /// The last `retries` probes failed (outside the start period).
    Unhealthy,
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        })
    }
}

/// One probe's result, as docker's `State.Health.Log` has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    /// When it started (RFC 3339).
    pub start: String,
    /// When it ended (RFC 3339).
    pub end: String,
    /// Its exit code: 0 healthy, anything else a failure; -1 when it could not run or ran
    /// out of time.
    pub exit_code: i64,
    /// Its output (stdout and stderr), at most [`MAX_PROBE_OUTPUT`] bytes.
    pub output: String,
}

/// A container's health: docker's `State.Health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// The status.
    pub status: HealthStatus,
    /// Failed probes in a row.
    pub failing_streak: u32,
    /// The last [`MAX_HEALTH_LOG`] results, oldest first.
    pub log: Vec<HealthResult>,
}

impl Health {
    /// The health of a container that has just started: `starting`, no failures, and the
    /// results of its runs before (docker keeps them).
    pub fn restarted(before: Option<Health>) -> Self {
        Self {
            status: HealthStatus::Starting,
            failing_streak: 0,
            log: before.map(|h| h.log).unwrap_or_default(),
        }
    }

    /// Takes in probe result `r`, which started `since_start` after the container did:
    /// success makes it healthy; a failure adds to the streak (except while it is still
    /// starting within the start period), and `probe.retries` of them make it unhealthy.
    /// Whether the status changed.
    ///
    /// ```
    /// use oci_rs_image::Healthcheck;
    /// use oci_rs_runtime::{Health, HealthProbe, HealthResult, HealthStatus};
    /// use std::time::Duration;
    /// let check = Healthcheck { test: vec!["CMD".into(), "false".into()], retries: 2,
    ///     ..Default::default() };
    /// let probe = HealthProbe::of(&check, &[]).unwrap();
    /// let fail = || HealthResult { start: String::new(), end: String::new(), exit_code: 1,
    ///     output: String::new() };
    /// let mut h = Health::restarted(None);
    /// assert!(!h.record(fail(), &probe, Duration::from_secs(1)));
    /// assert!(h.record(fail(), &probe, Duration::from_secs(2)));
    /// assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 2));
    /// ```
    pub fn record(&mut self, r: HealthResult, probe: &HealthProbe, since_start: Duration) -> bool {
        let before = self.status;
        if r.exit_code == 0 {
            self.failing_streak = 0;
            self.status = HealthStatus::Healthy;
        } else if self.status != HealthStatus::Starting || since_start >= probe.start_period {
            self.failing_streak += 1;
            if self.failing_streak >= probe.retries {
                self.status = HealthStatus::Unhealthy;
            }
        }
        self.log.push(r);
        if self.log.len() > MAX_HEALTH_LOG {
            self.log.drain(..self.log.len() - MAX_HEALTH_LOG);
        }
        self.status != before
    }
}

/// What a probe printed, as docker keeps it: the first [`MAX_PROBE_OUTPUT`] bytes, `...`
/// after them when there was more.
#[derive(Debug, Default)]
pub(crate) struct ProbeOutput {
    kept: Vec<u8>,
    cut: bool,
}

impl ProbeOutput {
    pub(crate) fn push(&mut self, data: &[u8]) {
        let room = MAX_PROBE_OUTPUT.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&data[..room.min(data.len())]);
        self.cut |= data.len() > room;
    }

    pub(crate) fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.kept).into_owned();
        if self.cut {
            s.push_str("...");
        }
        s
    }
}

/// A duration as Go prints one (docker's messages quote its timeouts so): `30s`, `1.5s`,
/// `500ms`, `1m30s`.
pub(crate) fn go_duration(d: Duration) -> String {
    let trim = |v: f64| {
        let s = format!("{v:.9}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_owned()
    };
    if d < Duration::from_secs(1) {
        return match d.as_nanos() {
            0 => "0s".into(),
            n if n < 1_000 => format!("{n}ns"),
            n if n < 1_000_000 => format!("{}µs", trim(n as f64 / 1e3)),
            n => format!("{}ms", trim(n as f64 / 1e6)),
        };
    }
    let secs = d.as_secs();
    let (h, m) = (secs / 3600, secs / 60 % 60);
    let s = trim((secs % 60) as f64 + f64::from(d.subsec_nanos()) / 1e9);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

/// Go's duration syntax as docker reads HEALTHCHECK and `--health-*` flags: `30s`, `1m30s`,
/// `500ms`, and `0`.
pub(crate) fn parse_duration_ns(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(0);
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(n);
        let v: f64 = num.parse().ok()?;
        let u = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(u);
        let mul = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += v * mul;
        rest = tail;
    }
    Some(total as u64)
}

/// docker's `run --health-*` flags, as given (`None`: not given).
#[derive(Debug, Clone, Default)]
pub struct HealthFlags {
    /// `--health-cmd`: run by the image's shell.
    pub cmd: Option<String>,
    /// `--health-interval` (Go's duration syntax: `30s`, `1m30s`).
    pub interval: Option<String>,
    /// `--health-timeout`.
    pub timeout: Option<String>,
    /// `--health-start-period`.
    pub start_period: Option<String>,
    /// `--health-start-interval`.
    pub start_interval: Option<String>,
    /// `--health-retries`.
    pub retries: Option<u32>,
    /// `--no-healthcheck`: not even the image's check.
    pub none: bool,
}

impl HealthFlags {
    /// The health check these flags ask for, to merge over the image's (see
    /// [`RunOptions::healthcheck`](crate::RunOptions::healthcheck)); None when no flag was
    /// given. Refuses `--no-healthcheck` with another `--health-*` flag, and durations docker
    /// refuses.
    ///
    /// ```
    /// use oci_rs_runtime::HealthFlags;
    /// let f = HealthFlags { cmd: Some("curl -f localhost".into()),
    ///     interval: Some("2s".into()), ..Default::default() };
    /// let h = f.check().unwrap().unwrap();
    /// assert_eq!(h.test, ["CMD-SHELL", "curl -f localhost"]);
    /// assert_eq!(h.interval, 2_000_000_000);
    /// assert!(HealthFlags::default().check().unwrap().is_none());
    /// assert!(HealthFlags { none: true, retries: Some(1), ..Default::default() }.check().is_err());
    /// ```
    pub fn check(&self) -> crate::Result<Option<Healthcheck>> {
        let durations = [
            ("--health-interval", &self.interval),
            ("--health-timeout", &self.timeout),
            ("--health-start-period", &self.start_period),
            ("--health-start-interval", &self.start_interval),
        ];
        let any = self.cmd.is_some()
            || self.retries.is_some()
            || durations.iter().any(|(_, v)| v.is_some());
        if self.none {
            if any {
                return Err(crate::Error::option(
                    "--no-healthcheck",
                    "true",
                    "conflicts with --health-* options",
                ));
            }
            return Ok(Some(Healthcheck {
                test: vec!["NONE".into()],
                ..Default::default()
            }));
        }
        if !any {
            return Ok(None);
        }
        let mut ns = [0u64; 4];
        for (slot, (flag, v)) in ns.iter_mut().zip(durations) {
            if let Some(v) = v {
                *slot = parse_duration_ns(v)
                    .ok_or_else(|| crate::Error::option(flag, v, "not a duration (30s, 1m30s)"))?;
            }
        }
        let h = Healthcheck {
            test: self
                .cmd
                .iter()
                .flat_map(|c| ["CMD-SHELL".to_owned(), c.clone()])
                .collect(),
            interval: ns[0],
            timeout: ns[1],
            start_period: ns[2],
            start_interval: ns[3],
            retries: self.retries.unwrap_or(0),
        };
        h.validate().map_err(|e| {
            crate::Error::option("--health-*", format!("{:?}", h.test), e.to_string())
        })?;
        Ok(Some(h))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn probe(start_period: u64) -> HealthProbe {
        HealthProbe::of(
            &Healthcheck {
                test: vec!["CMD".into(), "x".into()],
                start_period,
                retries: 2,
                ..Default::default()
            },
            &[],
        )
        .unwrap()
    }

    fn result(code: i64) -> HealthResult {
        HealthResult {
            start: String::new(),
            end: String::new(),
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_until_a_success() {
        let p = probe(10_000_000_000);
        let mut h = Health::restarted(None);
        for _ in 0..5 {
            h.record(result(1), &p, Duration::from_secs(1));
        }
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 0));
        assert_eq!(h.log.len(), MAX_HEALTH_LOG);
        assert!(h.record(result(0), &p, Duration::from_secs(2)));
        // Once healthy, a failure counts even in the start period.
        h.record(result(-1), &p, Duration::from_secs(3));
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 1));
        assert!(h.record(result(2), &p, Duration::from_secs(4)));
        assert_eq!(h.status, HealthStatus::Unhealthy);
        // A restart keeps the log, not the status or the streak.
        let again = Health::restarted(Some(h.clone()));
        assert_eq!(
            (again.status, again.failing_streak),
            (HealthStatus::Starting, 0)
        );
        assert_eq!(again.log, h.log);
    }

    #[test]
    fn delays_follow_the_start_period() {
        let p = probe(12_000_000_000);
        let s = Duration::from_secs;
        assert_eq!(p.next_delay(s(0), HealthStatus::Starting), s(5));
        assert_eq!(p.next_delay(s(10), HealthStatus::Starting), s(2));
        assert_eq!(p.next_delay(s(1), HealthStatus::Healthy), s(11));
        assert_eq!(p.next_delay(s(12), HealthStatus::Starting), s(30));
        assert_eq!(probe(0).next_delay(s(0), HealthStatus::Starting), s(30));
    }

    #[test]
    fn output_is_cut_as_docker_cuts_it() {
        let mut o = ProbeOutput::default();
        o.push(b"ok\n");
        assert_eq!(o.text(), "ok\n");
        o.push(&vec![b'x'; MAX_PROBE_OUTPUT]);
        let t = o.text();
        assert_eq!(t.len(), MAX_PROBE_OUTPUT + 3);
        assert!(t.ends_with("x..."));
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(ms(30_000)), "30s");
        assert_eq!(go_duration(ms(1_500)), "1.5s");
        assert_eq!(go_duration(ms(500)), "500ms");
        assert_eq!(go_duration(ms(90_000)), "1m30s");
        assert_eq!(go_duration(ms(3_600_000)), "1h0m0s");
    }
}

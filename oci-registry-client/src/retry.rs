//! Retry policy: exponential backoff with jitter, and `Retry-After`.

use std::time::{Duration, SystemTime};

/// How often and how patiently failed requests are tried again.
///
/// Only idempotent requests (and upload steps whose body can be sent again) are retried, and
/// only after connection errors, timeouts, 408, 429 and 5xx answers.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries in total, the first one included (1 disables retries).
    pub max_attempts: u32,
    /// The delay before the first retry; doubled each time.
    pub base_delay: Duration,
    /// The longest delay, also the cap on a server's `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The delay before retry number `retry` (0 for the first retry): exponential, capped,
    /// with jitter between half and all of it.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX));
        let capped = exp.min(self.max_delay);
        capped.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    /// The delay to wait for a `Retry-After` value (seconds or an HTTP date), capped at
    /// `max_delay`; `None` when the value cannot be parsed.
    pub fn retry_after(&self, value: &str) -> Option<Duration> {
        parse_retry_after(value, SystemTime::now()).map(|d| d.min(self.max_delay))
    }
}

/// Parses `Retry-After`: delay seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(7)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        let p = RetryPolicy {
            max_delay: Duration::from_secs(2),
            ..RetryPolicy::default()
        };
        assert_eq!(p.retry_after("3600"), Some(Duration::from_secs(2)));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for i in 0..40 {
            let d = p.backoff(i);
            assert!(d <= Duration::from_secs(1));
            let full = Duration::from_millis(100)
                .saturating_mul(1 << i.min(20))
                .min(Duration::from_secs(1));
            assert!(d >= full / 2, "{i}: {d:?}");
        }
    }
}

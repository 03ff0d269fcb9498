//! Docker's execution-config fields that the OCI image spec does not define, and that
//! running an image needs: `Healthcheck` and `Shell`.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// How a container's health is probed: docker's `Healthcheck`, in an image's config (from a
/// Dockerfile's `HEALTHCHECK`) or a container's (from `docker run --health-*`). Durations are
/// in nanoseconds, as docker writes them; 0 stands for docker's default.
///
/// ```
/// use oci_rs_image::Healthcheck;
/// let image: Healthcheck = serde_json::from_str(
///     r#"{"Test":["CMD-SHELL","wget -q localhost"],"Interval":30000000000,"Retries":3}"#,
/// ).unwrap();
/// // `docker run --health-interval 5s` over the image's check: the rest is the image's.
/// let flags = Healthcheck { interval: 5_000_000_000, ..Default::default() };
/// let merged = image.merged_under(&flags);
/// assert_eq!(merged.test, ["CMD-SHELL", "wget -q localhost"]);
/// assert_eq!((merged.interval, merged.retries), (5_000_000_000, 3));
/// assert!(!merged.is_disabled());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["CMD", ARG...]` (run as is), `["CMD-SHELL", COMMAND]` (run by the image's shell),
    /// `["NONE"]` (no check, not even the image's); empty: the image's.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub test: Vec<String>,
    /// Between the end of one probe and the start of the next (docker's default 30 s).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub interval: u64,
    /// How long a probe may run before it counts as failed (default 30 s).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub timeout: u64,
    /// A time after each start in which failures do not count (default none).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub start_period: u64,
    /// Between probes during the start period, until the first success (default 5 s).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub start_interval: u64,
    /// Failures in a row that make the container unhealthy (default 3).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero_u32"
    )]
    pub retries: u32,
}

/// `null` as the default, as Go reads it into a zero value (docker-compose sends
/// `"Timeout": null` for a field it leaves unset).
fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

impl Healthcheck {
    /// Whether this check turns health checking off (`NONE`, as `--no-healthcheck` and
    /// `HEALTHCHECK NONE` write it).
    pub fn is_disabled(&self) -> bool {
        self.test.first().is_some_and(|t| t == "NONE")
    }

    /// `over` on top of this check, as docker merges a container's check with its image's:
    /// each field `over` leaves empty or zero is this one's.
    pub fn merged_under(&self, over: &Healthcheck) -> Healthcheck {
        let pick = |o: u64, s: u64| if o == 0 { s } else { o };
        Healthcheck {
            test: match over.test.is_empty() {
                true => self.test.clone(),
                false => over.test.clone(),
            },
            interval: pick(over.interval, self.interval),
            timeout: pick(over.timeout, self.timeout),
            start_period: pick(over.start_period, self.start_period),
            start_interval: pick(over.start_interval, self.start_interval),
            retries: if over.retries == 0 {
                self.retries
            } else {
                over.retries
            },
        }
    }

    /// Checks what docker's daemon checks of a container's health check: a known test kind
    /// with a command, and no interval, timeout or start interval under a millisecond.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::InvalidHealthcheck { reason });
        match self.test.first().map(String::as_str) {
            None | Some("NONE") => {}
            Some("CMD" | "CMD-SHELL") if self.test.len() < 2 => {
                return bad(format!("health check test {:?} has no command", self.test));
            }
            Some("CMD" | "CMD-SHELL") => {}
            Some(other) => {
                return bad(format!(
                    "health check test kind {other:?}: expected CMD, CMD-SHELL or NONE"
                ))
            }
        }
        for (name, v) in [
            ("interval", self.interval),
            ("timeout", self.timeout),
            ("start interval", self.start_interval),
        ] {
            if v != 0 && v < 1_000_000 {
                return bad(format!("health check {name} of {v} ns: at least 1 ms"));
            }
        }
        Ok(())
    }
}

/// The execution-config fields docker adds to an image's config (`config.Healthcheck`,
/// `config.Shell`), which `oci_spec`'s image configuration does not carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerExtras {
    /// The image's health check.
    pub healthcheck: Option<Healthcheck>,
    /// The shell for shell-form commands (`SHELL`); empty: `/bin/sh -c`.
    pub shell: Vec<String>,
}

impl DockerExtras {
    /// The fields from an image config's JSON text.
    ///
    /// ```
    /// let cfg = br#"{"config":{"Shell":["/bin/bash","-c"],"Healthcheck":{"Test":["NONE"]}}}"#;
    /// let x = oci_rs_image::DockerExtras::of_config_json(cfg).unwrap();
    /// assert_eq!(x.shell, ["/bin/bash", "-c"]);
    /// assert!(x.healthcheck.unwrap().is_disabled());
    /// ```
    pub fn of_config_json(bytes: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        struct Doc {
            #[serde(default)]
            config: Option<Exec>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Exec {
            #[serde(default)]
            healthcheck: Option<Healthcheck>,
            #[serde(default)]
            shell: Option<Vec<String>>,
        }
        let doc: Doc = serde_json::from_slice(bytes).map_err(|source| Error::InvalidJson {
            what: "image config",
            source,
        })?;
        let exec = doc.config;
        Ok(Self {
            healthcheck: exec.as_ref().and_then(|e| e.healthcheck.clone()),
            shell: exec.and_then(|e| e.shell).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn checks_validate_as_docker_validates_them() {
        let hc = |test: &[&str], interval| Healthcheck {
            test: test.iter().map(|s| s.to_string()).collect(),
            interval,
            ..Default::default()
        };
        assert!(hc(&["CMD", "true"], 0).validate().is_ok());
        assert!(hc(&["NONE"], 0).validate().is_ok());
        assert!(hc(&[], 0).validate().is_ok());
        assert!(hc(&["CMD"], 0).validate().is_err());
        assert!(hc(&["SHELL", "x"], 0).validate().is_err());
        assert!(hc(&["CMD", "true"], 999_999).validate().is_err());
        assert!(hc(&["CMD", "true"], 1_000_000).validate().is_ok());
    }

    #[test]
    fn a_config_without_the_fields_has_none() {
        let x = DockerExtras::of_config_json(br#"{"architecture":"amd64"}"#).unwrap();
        assert_eq!(x, DockerExtras::default());
        assert!(
            DockerExtras::of_config_json(br#"{"config":{"Healthcheck":{"Interval":-1}}}"#).is_err()
        );
    }
}

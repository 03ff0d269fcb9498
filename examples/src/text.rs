//! How containers and images are written at the command line: docker's durations, STATUS and PORTS columns, and sizes.

use oci_rs_runtime::MonitorStatus;

pub use oci_rs_runtime::{ago, human_duration};

/// The STATUS column of `ps`: "Up 5 seconds", "Exited (0) 2 minutes ago", "Created".
pub fn status_text(s: &MonitorStatus) -> String {
    s.status_text()
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

/// docker's human size (go-units `HumanSize`): decimal units, about three significant
/// digits: `0B`, `999B`, `1.23kB`, `4.4MB`, `115MB`.
pub fn human_size(bytes: u64) -> String {
    scaled(bytes, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB", "EB"])
}

/// docker's memory size (go-units `BytesSize`): binary units, `1.98MiB`, `7.773GiB`.
pub fn binary_size(bytes: u64) -> String {
    scaled(
        bytes,
        1024.0,
        &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"],
    )
}

fn scaled(bytes: u64, base: f64, units: &[&str]) -> String {
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= base && u < units.len() - 1 {
        v /= base;
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
    format!("{t}{}", units[u])
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_as_docker_prints_them() {
        use super::human_size;
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1234), "1.234kB");
        assert_eq!(human_size(4_400_000), "4.4MB");
        assert_eq!(human_size(115_300_000), "115.3MB");
        assert_eq!(human_size(2_000_000_000), "2GB");
        assert_eq!(super::binary_size(2_076_180), "1.98MiB");
        assert_eq!(super::binary_size(512), "512B");
    }
}

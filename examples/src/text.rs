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

pub use oci_rs_runtime::{binary_size, human_size};

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

//! podman drives `oci-runc` through conmon (`podman --runtime`), as it drives crun or runc:
//! create with a pid file and, for `-t`, a console socket; start, state, exec, kill, delete.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;

const RUNC: &str = env!("CARGO_BIN_EXE_oci-runc");

#[test]
fn podman_runs_containers_with_oci_runc() {
    let ready = rustix::process::geteuid().is_root()
        && ["/usr/bin/podman", "/usr/bin/conmon", "/bin/busybox"]
            .iter()
            .all(|p| Path::new(p).exists());
    if !ready {
        eprintln!(
            "skipping: needs root, podman (with conmon) and busybox-static (scripts/test.sh installs them)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tar = common::busybox_rootfs_tar(d, &["sh", "sleep", "echo", "cat", "tty", "tr"]);
    // podman's own state in the temporary directory, not the machine's.
    let podman = |args: &[&str]| -> Output {
        Command::new("podman")
            .arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--runtime",
                RUNC,
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let ok = |o: &Output| {
        assert!(
            o.status.success(),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    ok(&podman(&[
        "import",
        tar.to_str().unwrap(),
        "localhost/oci-rs:1",
    ]));
    // podman asks for RLIMIT_NOFILE 1048576 and RLIMIT_NPROC 32768 by default; raising a hard
    // limit needs CAP_SYS_RESOURCE, which this machine's root lacks (crun fails the same
    // way). Ask for limits under what podman's conmon has.
    let (nofile, nproc) = ("nofile=1024:1024", "nproc=1024:1024");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--network",
            "none",
            "--ulimit",
            nofile,
            "--ulimit",
            nproc,
        ];
        args.extend_from_slice(extra);
        podman(&args)
    };

    // Foreground: output and exit code come back through conmon.
    let o = run(&[
        "--rm",
        "localhost/oci-rs:1",
        "sh",
        "-c",
        "echo hello via podman; exit 4",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "hello via podman",
        "{o:?}"
    );
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A terminal: conmon hands oci-runc a console socket and gets the pty's master back.
    let o = run(&[
        "--rm",
        "-t",
        "localhost/oci-rs:1",
        "sh",
        "-c",
        "tty; exit 3",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("/dev/pts/"),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(3));

    // Detached: exec into it, list, stop, remove.
    ok(&run(&[
        "-d",
        "--name",
        "bg",
        "localhost/oci-rs:1",
        "sleep",
        "60",
    ]));
    let o = podman(&[
        "exec",
        "bg",
        "sh",
        "-c",
        "echo from exec; cat /proc/1/cmdline | tr '\\0' ' '; exit 6",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "from exec\nsleep 60"
    );
    assert_eq!(o.status.code(), Some(6));
    let o = podman(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    let ps = String::from_utf8_lossy(&o.stdout);
    assert!(ps.contains("bg Up"), "{ps}");
    let o = podman(&["inspect", "--format", "{{.OCIRuntime}}", "bg"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), RUNC);
    // sleep as pid 1 ignores SIGTERM: stop ends with SIGKILL after the timeout.
    ok(&podman(&["stop", "-t", "1", "bg"]));
    let o = podman(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.ExitCode}}",
        "bg",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "exited 137");
    ok(&podman(&["rm", "bg"]));
    let o = podman(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(String::from_utf8_lossy(&o.stdout).trim().is_empty());
}

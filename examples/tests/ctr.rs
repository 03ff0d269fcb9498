//! containerd drives `oci-runc` through its runc shim (`ctr run --runc-binary`), as it drives
//! runc: create, start, state, exec, kill, delete, with the shim's pipes and pid files.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;

const OCI: &str = env!("CARGO_BIN_EXE_oci");
const RUNC: &str = env!("CARGO_BIN_EXE_oci-runc");

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: impl Fn() -> bool) {
    for _ in 0..200 {
        if what() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out");
}

#[test]
fn containerd_runs_containers_with_oci_runc() {
    let ready = rustix::process::geteuid().is_root()
        && [
            "/usr/bin/containerd",
            "/usr/bin/ctr",
            "/usr/bin/containerd-shim-runc-v2",
            "/usr/bin/docker-registry",
            "/bin/busybox",
        ]
        .iter()
        .all(|p| Path::new(p).exists());
    if !ready {
        eprintln!("skipping: needs root, containerd, docker-registry and busybox-static (scripts/test.sh installs them)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A registry and a busybox image in it.
    let reg = common::Registry::start();
    let tar = common::busybox_rootfs_tar(d, &["sh", "sleep", "echo"]);
    let image = format!("{}/ctr/busybox:1", reg.addr);
    for args in [
        vec!["import", tar.to_str().unwrap(), &image],
        vec!["push", &image],
    ] {
        assert!(Command::new(OCI)
            .arg("-q")
            .arg("--data-dir")
            .arg(d.join("data"))
            .args(&args)
            .status()
            .unwrap()
            .success());
    }
    // containerd on its own socket and directories.
    let sock = d.join("containerd.sock");
    std::fs::write(
        d.join("containerd.toml"),
        format!("version = 2\nroot = \"{0}/croot\"\nstate = \"{0}/cstate\"\n[grpc]\n  address = \"{1}\"\n", d.display(), sock.display()),
    )
    .unwrap();
    let _containerd = Kill(
        Command::new("containerd")
            .arg("--config")
            .arg(d.join("containerd.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ctr = |args: &[&str]| {
        Command::new("ctr")
            .arg("-a")
            .arg(&sock)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    wait_for(|| ctr(&["version"]).status.success());
    let o = ctr(&["images", "pull", "--plain-http", &image]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Foreground run: output and exit code come back through the shim.
    let o = ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        RUNC,
        &image,
        "fg",
        "sh",
        "-c",
        "echo hello via containerd; exit 4",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "hello via containerd"
    );
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // With a terminal (`script` gives ctr the terminal it wants on its side): the shim hands
    // oci-runc a console socket and gets the pty's master back.
    if Path::new("/usr/bin/script").exists() {
        let cmd = format!(
            "ctr -a {} run -t --rm --runc-binary {RUNC} {image} tty sh -c 'tty; exit 3'",
            sock.display()
        );
        let o = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("/dev/pts/"),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert_eq!(o.status.code(), Some(3));
    }

    // Detached: exec into it, list, kill, remove.
    let o = ctr(&[
        "run",
        "-d",
        "--runc-binary",
        RUNC,
        &image,
        "bg",
        "sleep",
        "30",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "bg",
        "sh",
        "-c",
        "echo from exec; exit 6",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "from exec");
    assert_eq!(o.status.code(), Some(6));
    let ls = String::from_utf8(ctr(&["task", "ls"]).stdout).unwrap();
    assert!(ls.contains("bg") && ls.contains("RUNNING"), "{ls}");
    assert!(ctr(&["task", "kill", "-s", "SIGKILL", "bg"])
        .status
        .success());
    wait_for(|| String::from_utf8_lossy(&ctr(&["task", "ls"]).stdout).contains("STOPPED"));
    assert!(ctr(&["task", "rm", "bg"]).status.success());
    assert!(ctr(&["container", "rm", "bg"]).status.success());
}

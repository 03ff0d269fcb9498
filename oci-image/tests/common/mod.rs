//! Shared test helpers: real layers from real files, and peers (skopeo, umoci) on PATH.

#![allow(clippy::unwrap_used, dead_code)]

use oci_rs_image::Compression;
use oci_rs_image::{BlobStore, ImageBuilder, Manifest};
use std::process::Command;
use tokio_tar::{Builder, EntryType, Header};

/// An uncompressed layer tar holding `/bin/busybox` (the real binary) and symlinks to it,
/// plus `/etc/hello` with `text`.
pub async fn busybox_layer(text: &str) -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox").unwrap_or_else(|_| b"#!/bin/sh\n".to_vec());
    let mut tar = Builder::new_non_terminated(Vec::new());
    for dir in ["bin/", "etc/"] {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        tar.append_data(&mut h, dir, tokio::io::empty())
            .await
            .unwrap();
    }
    let mut h = Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(busybox.len() as u64);
    tar.append_data(&mut h, "bin/busybox", &busybox[..])
        .await
        .unwrap();
    for l in ["sh", "echo", "true", "cat"] {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_link_name("busybox").unwrap();
        tar.append_data(&mut h, format!("bin/{l}"), tokio::io::empty())
            .await
            .unwrap();
    }
    let mut h = Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(text.len() as u64);
    tar.append_data(&mut h, "etc/hello", text.as_bytes())
        .await
        .unwrap();
    tar.finish().await.unwrap();
    tar.into_inner().await.unwrap()
}

/// A busybox image for `arch` in `store`, gzip layer, with a second small layer.
pub async fn busybox_image(store: &dyn BlobStore, arch: &str, docker: bool) -> Manifest {
    let mut b = ImageBuilder::new("linux", arch)
        .docker(docker)
        .entrypoint(["/bin/sh", "-c"])
        .cmd(["echo hello"])
        .env("PATH", "/bin")
        .working_dir("/")
        .label("org.example.arch", arch)
        .expose("8080")
        .created("2026-11-24T00:00:00Z");
    let l1 = busybox_layer(arch).await;
    b.add_layer_tar(store, &mut &l1[..], Compression::Gzip, "ADD busybox /bin/")
        .await
        .unwrap();
    let l2 = small_layer("second").await;
    b.add_layer_tar(store, &mut &l2[..], Compression::Gzip, "ADD second /")
        .await
        .unwrap();
    b.build(store).await.unwrap()
}

/// A tiny layer with one file.
pub async fn small_layer(name: &str) -> Vec<u8> {
    let mut tar = Builder::new_non_terminated(Vec::new());
    let mut h = Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(name.len() as u64);
    tar.append_data(&mut h, name, name.as_bytes())
        .await
        .unwrap();
    tar.finish().await.unwrap();
    tar.into_inner().await.unwrap()
}

/// True when `tool --version` runs; otherwise prints why the caller skips.
pub fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("skipping: {tool} is not installed (scripts/test.sh installs it)");
    }
    ok
}

/// Runs a command, panicking with its output when it fails; returns stdout.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

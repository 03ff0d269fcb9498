//! `pull --unpack` through the `oci` binary killed at any point: the store it leaves
//! verifies, the killed processes' temporary directories are gone, and the next pull
//! completes with the same layers as a fresh store's. What only a killed process shows; the
//! image store's streaming pull and unpack itself (what it unpacks equal to a pull then an
//! unpack, a blob the registry sends wrong leaving no blob and no layer, a load unpacking
//! as it loads) is tested at the library level, against the same registry, in
//! oci-rs-layer's `tests/image_store.rs`.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;

const OCI: &str = env!("CARGO_BIN_EXE_oci");

/// A three-layer image in a registry: busybox, 8 MB of noise, 200 small files and a link.
struct Image {
    _reg: common::Registry,
    dir: tempfile::TempDir,
    name: String,
}

fn cli(data: &Path) -> common::Cli {
    common::Cli {
        oci: OCI,
        data: data.to_owned(),
    }
}

fn image() -> Option<Image> {
    if !common::have_registry() || !common::root_with_busybox() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let reg = common::Registry::start();
    let tar = common::busybox_rootfs_tar(dir.path(), &["sh", "cat", "true", "ls"]);
    let base = format!("{}/pu/base:1", reg.addr);
    let build = cli(&dir.path().join("build"));
    build.ok(&["import", tar.to_str().unwrap(), &base]);
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("small")).unwrap();
    let mut noise = vec![0u8; 8 << 20];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut noise)
        .unwrap();
    std::fs::write(ctx.join("noise"), &noise).unwrap();
    for i in 0..200 {
        std::fs::write(ctx.join("small").join(format!("f{i}")), format!("{i}\n")).unwrap();
    }
    std::os::unix::fs::symlink("f7", ctx.join("small/link")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {base}\nCOPY noise /noise\nCOPY small /small/\n"),
    )
    .unwrap();
    let name = format!("{}/pu/three:1", reg.addr);
    build.ok(&["build", "-t", &name, ctx.to_str().unwrap()]);
    build.ok(&["push", &name]);
    Some(Image {
        _reg: reg,
        dir,
        name,
    })
}

fn layer_dirs(data: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("snapshots/layers"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Asserts that two stores hold the same unpacked layers: the same directories (by digest),
/// with trees equal in mode, owner, bytes and link targets.
fn assert_same_layers(x: &Path, y: &Path) {
    let (xs, ys) = (layer_dirs(x), layer_dirs(y));
    assert_eq!(xs.len(), ys.len(), "{xs:?} {ys:?}");
    for (a, b) in xs.iter().zip(&ys) {
        assert_eq!(a.file_name(), b.file_name());
        assert_eq!(common::tree(a), common::tree(b), "{}", a.display());
    }
}

/// `oci run --rm --network none IMAGE CMD...` in the store `c`: its output.
fn run(c: &common::Cli, image: &str, cmd: &[&str]) -> String {
    let mut args = vec!["run", "--rm", "--network", "none", image];
    args.extend_from_slice(cmd);
    c.ok(&args)
}

fn leftovers(data: &Path) -> Vec<PathBuf> {
    layer_dirs(data)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

#[test]
fn a_killed_pull_unpack_leaves_a_clean_store_and_the_next_one_completes() {
    let Some(img) = image() else { return };
    let data = img.dir.path().join("k");
    let c = cli(&data);
    for ms in [5, 20, 60, 120, 250, 400] {
        let mut child = common::silent(
            Path::new(OCI),
            &["-q".as_ref(), "--data-dir".as_ref(), data.as_os_str()],
        )
        .args(["pull", "--unpack", &img.name])
        .spawn()
        .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
        if data.join("images/index.json").exists() {
            common::verify_layout(&data.join("images"));
        }
    }
    c.ok(&["pull", "--unpack", &img.name]);
    common::verify_layout(&data.join("images"));
    // The killed processes' temporary directories are gone, and every layer directory is
    // whole: the same trees as a fresh store's.
    assert!(leftovers(&data).is_empty(), "{:?}", leftovers(&data));
    let fresh = img.dir.path().join("fresh");
    cli(&fresh).ok(&["pull", "--unpack", &img.name]);
    assert_eq!(layer_dirs(&data).len(), 3);
    assert_same_layers(&data, &fresh);
    let out = run(&c, &img.name, &["cat", "/small/f9"]);
    assert_eq!(out, "9\n");
}

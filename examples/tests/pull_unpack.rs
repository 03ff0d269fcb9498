//! `run` and `pull --unpack` of an image the store does not have: each layer blob is read from
//! the registry once, stored (its digest checked) and unpacked (its DiffID checked) at the
//! same time, layers in parallel. What it unpacks is what a pull followed by an unpack from
//! the store gives; a blob that fails its digest leaves neither a blob nor a layer; a kill at
//! any point leaves a store that verifies and snapshots that the next run completes.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;

const OCI: &str = env!("CARGO_BIN_EXE_oci");

/// A three-layer image in a registry: busybox, 8 MB of noise, 200 small files and a link.
struct Image {
    reg: common::Registry,
    dir: tempfile::TempDir,
    name: String,
    noise: Vec<u8>,
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
        reg,
        dir,
        name,
        noise,
    })
}

fn layer_dirs(data: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("snapshots/layers"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The inode of each layer directory: the same after a run when it unpacked nothing.
fn inodes(data: &Path) -> Vec<u64> {
    layer_dirs(data)
        .iter()
        .map(|d| std::fs::metadata(d).unwrap().ino())
        .collect()
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

/// The layer blobs of the image, largest first: (hex digest, size).
fn layers(img: &Image) -> Vec<(String, u64)> {
    let c = cli(&img.dir.path().join("build"));
    let raw = c.ok(&["manifest", "inspect", &img.name]);
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let mut v: Vec<(String, u64)> = m["Raw"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap()["sha256:".len()..].to_owned(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort_by_key(|l| std::cmp::Reverse(l.1));
    v
}

#[test]
fn run_of_a_new_image_unpacks_what_a_pull_then_an_unpack_gives() {
    let Some(img) = image() else { return };
    // Streaming: `pull --unpack`, then `run` finds every layer unpacked.
    let a = img.dir.path().join("a");
    let ca = cli(&a);
    ca.ok(&["pull", "--unpack", &img.name]);
    common::verify_layout(&a.join("images"));
    let dirs = layer_dirs(&a);
    assert_eq!(dirs.len(), 3, "{dirs:?}");
    let before = inodes(&a);
    let out = run(&ca, &img.name, &["cat", "/small/link"]);
    assert_eq!(out, "7\n");
    assert_eq!(before, inodes(&a), "run unpacked a layer again");

    // `run` of an image not here yet streams too.
    let b = img.dir.path().join("b");
    let cb = cli(&b);
    let out = run(&cb, &img.name, &["ls", "/small"]);
    assert_eq!(out.lines().count(), 201);
    common::verify_layout(&b.join("images"));

    // The other way: a plain pull, then the run unpacks from the store.
    let c = img.dir.path().join("c");
    let cc = cli(&c);
    cc.ok(&["pull", &img.name]);
    assert!(layer_dirs(&c).is_empty());
    run(&cc, &img.name, &["true"]);
    assert_same_layers(&a, &c);
    assert_same_layers(&b, &c);
    let noise = layer_dirs(&a)
        .into_iter()
        .find(|d| d.join("noise").exists())
        .unwrap();
    assert_eq!(std::fs::read(noise.join("noise")).unwrap(), img.noise);
    // The image is in the store as a pull leaves it.
    assert_eq!(
        ca.field(&img.name, "{{.Id}}"),
        cc.field(&img.name, "{{.Id}}")
    );
    assert!(leftovers(&a).is_empty() && leftovers(&b).is_empty());
}

#[test]
fn a_blob_the_registry_sends_wrong_leaves_no_blob_and_no_layer() {
    let Some(img) = image() else { return };
    let layers = layers(&img);
    // The noise layer, served with one byte changed in its middle: the same size, a wrong
    // digest, and a gzip stream that no longer decompresses cleanly.
    let (hex, size) = layers[0].clone();
    let file = img.reg.blob_file(&hex);
    let mut bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes.len() as u64, size);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&file, &bytes).unwrap();
    for verb in [
        vec!["pull", "--unpack", img.name.as_str()],
        vec![
            "run",
            "--rm",
            "--network",
            "none",
            img.name.as_str(),
            "true",
        ],
    ] {
        let data = img.dir.path().join(verb[0]);
        let err = cli(&data).fails(&verb);
        assert!(err.contains("digest"), "{verb:?}: {err}");
        assert!(err.contains(&hex), "{verb:?}: {err}");
        assert!(
            !data.join("images/blobs/sha256").join(&hex).exists(),
            "the wrong blob was stored"
        );
        common::verify_layout(&data.join("images"));
        // No layer made from it, and nothing half-made left.
        assert!(leftovers(&data).is_empty(), "{:?}", leftovers(&data));
        for d in layer_dirs(&data) {
            assert!(!d.join("noise").exists(), "{}", d.display());
        }
        assert!(cli(&data)
            .fails(&["inspect", &img.name])
            .contains("no such image"));
    }
    // Worse: the same tar compressed again. It unpacks cleanly with the right DiffID; only the
    // blob's own size and digest say it is not the blob the manifest names, and the layer
    // unpacked from it must not become visible.
    bytes[mid] ^= 0x55;
    let orig = img.dir.path().join("orig.gz");
    std::fs::write(&orig, &bytes).unwrap();
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -dc < '{}' | gzip -1", orig.display()))
        .output()
        .unwrap();
    assert!(o.status.success() && !o.stdout.is_empty() && o.stdout != bytes);
    std::fs::write(&file, &o.stdout).unwrap();
    let data = img.dir.path().join("recompressed");
    let err = cli(&data).fails(&["pull", "--unpack", &img.name]);
    assert!(err.contains(&hex), "{err}");
    assert!(!data.join("images/blobs/sha256").join(&hex).exists());
    assert!(leftovers(&data).is_empty(), "{:?}", leftovers(&data));
    for d in layer_dirs(&data) {
        assert!(!d.join("noise").exists(), "{}", d.display());
    }
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

#[test]
fn load_unpacks_as_it_loads() {
    let Some(img) = image() else { return };
    let archive = img.dir.path().join("three.tar");
    cli(&img.dir.path().join("build")).ok(&["save", "-o", archive.to_str().unwrap(), &img.name]);
    let data = img.dir.path().join("loaded");
    let c = cli(&data);
    c.ok(&["load", "-i", archive.to_str().unwrap()]);
    common::verify_layout(&data.join("images"));
    let pulled = img.dir.path().join("pulled");
    cli(&pulled).ok(&["pull", "--unpack", &img.name]);
    assert_eq!(layer_dirs(&data).len(), 3);
    assert_same_layers(&data, &pulled);
    let before = inodes(&data);
    let out = run(&c, &img.name, &["cat", "/small/f3"]);
    assert_eq!(out, "3\n");
    assert_eq!(before, inodes(&data), "run unpacked a loaded layer again");
}

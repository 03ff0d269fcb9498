//! Overlay snapshots: layers unpacked once, mounted, committed.

#![allow(clippy::unwrap_used)]

mod common;

use common::{is_root, snapshot, tar, E};
use oci_rs_image::Compression;
use oci_rs_image::{ImageBuilder, Manifest, MemoryStore};
use oci_rs_layer::{apply, ApplyOptions, DiffOptions, MountKind, Snapshotter};
use std::path::Path;

fn base() -> Vec<u8> {
    tar(&[
        E::dir("bin"),
        E::file("bin/sh", b"#!shell").mode(0o755),
        E::dir("etc"),
        E::file("etc/passwd", b"root:x:0:0"),
        E::file("etc/old", b"old"),
        E::dir("var"),
        E::dir("var/cache"),
        E::file("var/cache/a", b"a"),
        E::file("var/cache/b", b"b"),
    ])
}

async fn image(store: &MemoryStore, top: Vec<u8>) -> Manifest {
    let mut b = ImageBuilder::new("linux", "amd64");
    let l = base();
    b.add_layer_tar(store, &mut &l[..], Compression::Gzip, "base")
        .await
        .unwrap();
    b.add_layer_tar(store, &mut &top[..], Compression::Zstd, "top")
        .await
        .unwrap();
    b.build(store).await.unwrap()
}

fn top_a() -> Vec<u8> {
    tar(&[
        E::file("etc/.wh.old", b""),
        E::file("etc/new", b"new"),
        E::dir("var/cache"),
        E::file("var/cache/.wh..wh..opq", b""),
        E::file("var/cache/c", b"c"),
    ])
}

/// Applies every layer of `m` into `dir` the plain way (the reference result).
async fn flat(
    store: &MemoryStore,
    m: &Manifest,
    dir: &Path,
    extra: Option<(&oci_rs_image::oci_spec::image::Descriptor, &MemoryStore)>,
) {
    use oci_rs_image::ImageSource;
    for l in m.as_image().unwrap().layers() {
        let blob = store.blob(l).await.unwrap();
        apply(dir, blob, l.media_type().as_ref(), &ApplyOptions::default())
            .await
            .unwrap();
    }
    if let Some((d, s)) = extra {
        let blob = s.blob(d).await.unwrap();
        apply(dir, blob, d.media_type().as_ref(), &ApplyOptions::default())
            .await
            .unwrap();
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn comparable(dir: &Path) -> std::collections::BTreeMap<String, common::Snap> {
    let mut s = snapshot(dir);
    s.remove("");
    for v in s.values_mut() {
        if v.mode & 0o170000 == 0o040000 {
            v.mtime = 0;
        }
    }
    s
}

async fn prepare_change_commit(force_copy: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    let m = image(&store, top_a()).await;
    let snap = Snapshotter::new(dir.path().join("snap")).unwrap();
    let mount = snap.prepare("c1", &store, &m, force_copy).await.unwrap();
    if !force_copy {
        assert_eq!(mount.kind, MountKind::Overlay);
    } else {
        assert_eq!(mount.kind, MountKind::Copy);
    }
    let rootfs = &mount.rootfs;
    assert_eq!(names(&rootfs.join("etc")), ["new", "passwd"]);
    assert_eq!(names(&rootfs.join("var/cache")), ["c"]);
    // The container changes things.
    std::fs::write(rootfs.join("etc/hostname"), b"box").unwrap();
    std::fs::remove_file(rootfs.join("etc/passwd")).unwrap();
    std::fs::remove_file(rootfs.join("bin/sh")).unwrap();
    let want = comparable(rootfs);
    let out = MemoryStore::new();
    let (layer, diff_id) = snap
        .commit(
            &mount,
            &store,
            &m,
            &out,
            Compression::Gzip,
            &DiffOptions::default(),
        )
        .await
        .unwrap();
    assert!(diff_id.to_string().starts_with("sha256:"));
    // A container store reopens it by id (mounted again once unmounted) and lists it, with
    // the image it came from.
    let info = snap.info("c1").unwrap();
    assert_eq!(info.image, m.digest().to_string());
    assert_eq!(info.kind, mount.kind);
    assert_eq!(snap.list().unwrap(), vec![info]);
    snap.unmount("c1").unwrap();
    let again = Snapshotter::new(dir.path().join("snap"))
        .unwrap()
        .open("c1")
        .unwrap();
    assert_eq!(again.rootfs, mount.rootfs);
    assert_eq!(
        comparable(&again.rootfs),
        want,
        "the same tree, changes included"
    );
    assert!(snap.open("nope").is_err());
    snap.remove("c1").unwrap();
    assert!(snap.list().unwrap().is_empty());
    assert!(!dir.path().join("snap/containers/c1").exists());
    // The image's layers plus the committed one, applied flat, give what the container saw.
    let check = dir.path().join("check");
    std::fs::create_dir(&check).unwrap();
    flat(&store, &m, &check, Some((&layer, &out))).await;
    assert_eq!(comparable(&check), want);
}

#[tokio::test]
async fn overlay_prepare_change_commit() {
    if !is_root() {
        eprintln!("skipping: overlay mounts need root");
        return;
    }
    prepare_change_commit(false).await;
}

#[tokio::test]
async fn copy_fallback_prepare_change_commit() {
    prepare_change_commit(true).await;
}

#[tokio::test]
async fn shared_layers_are_unpacked_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    let a = image(&store, top_a()).await;
    let b = image(&store, tar(&[E::file("other", b"o")])).await;
    let snap = Snapshotter::new(dir.path()).unwrap();
    let ra = snap.unpack(&store, &a).await.unwrap();
    assert_eq!((ra.unpacked, ra.reused), (2, 0));
    let rb = snap.unpack(&store, &b).await.unwrap();
    assert_eq!((rb.unpacked, rb.reused), (1, 1));
    assert_eq!(ra.layers[0], rb.layers[0]);
    // The top layer of a records its whiteouts for overlayfs.
    use std::os::unix::fs::FileTypeExt;
    let wh = std::fs::symlink_metadata(ra.layers[1].join("etc/old"));
    if is_root() {
        assert!(wh.unwrap().file_type().is_char_device());
    } else {
        eprintln!("not root: whiteout device check skipped ({wh:?})");
    }
    // No temporary directory is left.
    let stray: Vec<_> = names(&dir.path().join("layers"))
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[tokio::test]
async fn bad_container_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    let m = image(&store, top_a()).await;
    let snap = Snapshotter::new(dir.path()).unwrap();
    for id in ["../escape", "", ".hidden", "a/b"] {
        assert!(snap.prepare(id, &store, &m, true).await.is_err(), "{id:?}");
    }
    assert!(!dir.path().parent().unwrap().join("escape").exists());
}

#[tokio::test]
async fn flatten_gives_one_layer_with_the_same_tree() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    let m = image(&store, top_a()).await;
    let (layer, diff_id) = oci_rs_layer::flatten(&store, &m, &store, Compression::Gzip, dir.path())
        .await
        .unwrap();
    assert!(diff_id.to_string().starts_with("sha256:"));
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    flat(&store, &m, &a, None).await;
    use oci_rs_image::ImageSource;
    let blob = store.blob(&layer).await.unwrap();
    apply(
        &b,
        blob,
        layer.media_type().as_ref(),
        &ApplyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(comparable(&a), comparable(&b));
    let stray: Vec<_> = names(dir.path())
        .into_iter()
        .filter(|n| n.starts_with(".flatten"))
        .collect();
    assert!(stray.is_empty());
}

/// A rootless export's view is named for its process and removed when dropped; the views an
/// export of a process now gone left are removed when the next one is made.
#[test]
fn export_views_of_dead_processes_are_reaped() {
    let d = tempfile::tempdir().unwrap();
    let snaps = Snapshotter::new(d.path().join("snapshots")).unwrap();
    let ctr = d.path().join("snapshots/containers/c1");
    std::fs::create_dir_all(&ctr).unwrap();
    // pid_max is at most 4194304: no process has this pid.
    let dead = ctr.join(".export-99999999-abc");
    std::fs::create_dir_all(dead.join("etc")).unwrap();
    let view = snaps.export_view("c1").unwrap();
    assert!(!dead.exists(), "the dead export's view is left");
    let name = view
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with(&format!(".export-{}-", std::process::id())),
        "{name}"
    );
    let path = view.path().to_path_buf();
    drop(view);
    assert!(!path.exists());
    assert!(snaps.export_view("../c1").is_err());
}

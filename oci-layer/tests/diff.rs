//! Diffs: applying diff(a, b) onto a copy of a gives b; overlay upper directories; export.

#![allow(clippy::unwrap_used)]

mod common;

use common::{is_root, snapshot, Snap};
use oci_rs_layer::{
    apply_tar, diff, diff_overlay, diff_to_store, export, ApplyOptions, DiffOptions,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const NAMES: [&str; 3] = ["a", "b", "c"];

/// Every candidate path of the small test namespace, parents first.
fn paths() -> Vec<String> {
    let mut out = Vec::new();
    for x in NAMES {
        out.push(x.to_owned());
    }
    for x in NAMES {
        for y in NAMES {
            out.push(format!("{x}/{y}"));
        }
    }
    for x in NAMES {
        for y in NAMES {
            for z in NAMES {
                out.push(format!("{x}/{y}/{z}"));
            }
        }
    }
    out
}

/// What sits at one path: 0 nothing, 1 file, 2 directory, 3 symlink, 4 hard link to the
/// first file; then a mode choice, content, an xattr, an owner.
type Node = (u8, u8, Vec<u8>, bool, bool);

fn node() -> impl Strategy<Value = Node> {
    (
        0u8..5,
        0u8..3,
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
        any::<bool>(),
    )
}

fn tree() -> impl Strategy<Value = Vec<Node>> {
    proptest::collection::vec(node(), paths().len())
}

fn mtime_for(content: &[u8]) -> i64 {
    1_000_000
        + oci_rs_image::sha256(content)
            .digest()
            .bytes()
            .take(6)
            .map(i64::from)
            .sum::<i64>()
}

fn set_mtime(p: &Path, t: i64) {
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: t,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: t,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &ts,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// Builds the tree under `dir`.
fn materialize(dir: &Path, nodes: &[Node]) {
    let mut first_file: Option<std::path::PathBuf> = None;
    let mut dirs = Vec::new();
    for (rel, (kind, mode, content, xattr, owner)) in paths().iter().zip(nodes) {
        let p = dir.join(rel);
        let parent_ok = p.parent().unwrap() == dir
            || std::fs::symlink_metadata(p.parent().unwrap()).is_ok_and(|m| m.is_dir());
        if !parent_ok {
            continue;
        }
        match kind {
            1 => {
                std::fs::write(&p, content).unwrap();
                let m = [0o644, 0o755, 0o600][*mode as usize];
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
                // Empty xattr values cannot travel in PAX records (an empty value unsets).
                if *xattr && !content.is_empty() {
                    rustix::fs::setxattr(&p, "user.test", content, rustix::fs::XattrFlags::empty())
                        .unwrap();
                }
                if *owner && is_root() {
                    std::os::unix::fs::lchown(&p, Some(1000), Some(1001)).unwrap();
                }
                set_mtime(&p, mtime_for(content));
                first_file.get_or_insert(p.clone());
            }
            2 => {
                std::fs::create_dir(&p).unwrap();
                let m = [0o755, 0o700, 0o750][*mode as usize];
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
                if *xattr {
                    rustix::fs::setxattr(&p, "user.dir", b"d", rustix::fs::XattrFlags::empty())
                        .unwrap();
                }
                dirs.push(p);
            }
            3 => {
                let target = String::from_utf8_lossy(&content[..content.len().min(8)])
                    .replace(['\0', '/'], "_");
                std::os::unix::fs::symlink(format!("t{target}"), &p).unwrap();
                set_mtime(&p, 1_000_000);
            }
            4 => {
                if let Some(f) = &first_file {
                    std::fs::hard_link(f, &p).unwrap();
                }
            }
            _ => {}
        }
    }
    for d in dirs.iter().rev() {
        set_mtime(d, 1_000_000);
    }
}

/// A snapshot without directory mtimes (a diff carries a changed directory's entries, not
/// necessarily its mtime).
fn comparable(dir: &Path) -> BTreeMap<String, Snap> {
    let mut s = snapshot(dir);
    s.remove("");
    for (_, v) in s.iter_mut() {
        if v.mode & 0o170000 == 0o040000 {
            v.mtime = 0;
        }
    }
    s
}

async fn tar_of_diff(lower: Option<&Path>, upper: &Path) -> (oci_rs_layer::DiffReport, Vec<u8>) {
    diff(lower, upper, Vec::new(), &DiffOptions::default())
        .await
        .unwrap()
}

fn xattrs_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for rel in paths() {
        let p = dir.join(&rel);
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.file_type().is_symlink() {
            continue;
        }
        for key in ["user.test", "user.dir"] {
            let mut buf = [0u8; 128];
            if let Ok(n) = rustix::fs::getxattr(&p, key, &mut buf[..]) {
                out.insert(format!("{rel} {key}"), buf[..n].to_vec());
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// For random trees a and b, applying diff(a, b) to a copy of a gives b, and diff(a, a)
    /// is empty.
    #[test]
    fn applying_a_diff_reproduces_the_upper_tree(a in tree(), b in tree()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let (pa, pb, pc) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
            for p in [&pa, &pb, &pc] {
                std::fs::create_dir(p).unwrap();
            }
            materialize(&pa, &a);
            materialize(&pb, &b);
            // c = a, through export and apply.
            let (_, full) = tar_of_diff(None, &pa).await;
            apply_tar(&pc, &full[..], &ApplyOptions::default()).await.unwrap();
            assert_eq!(comparable(&pc), comparable(&pa), "export/apply copies a tree");
            let (same, _) = tar_of_diff(Some(&pa), &pc).await;
            assert_eq!((same.changed, same.deleted, same.opaque), (0, 0, 0), "diff of a tree with itself");
            let (_, layer) = tar_of_diff(Some(&pa), &pb).await;
            apply_tar(&pc, &layer[..], &ApplyOptions::default()).await.unwrap();
            assert_eq!(comparable(&pc), comparable(&pb));
            assert_eq!(xattrs_of(&pc), xattrs_of(&pb));
        });
    }
}

#[tokio::test]
async fn diffs_are_reproducible_and_clamped() {
    let dir = tempfile::tempdir().unwrap();
    let (lo, up) = (dir.path().join("lo"), dir.path().join("up"));
    std::fs::create_dir_all(lo.join("etc")).unwrap();
    std::fs::create_dir_all(up.join("etc")).unwrap();
    std::fs::write(lo.join("etc/old"), b"old").unwrap();
    std::fs::write(up.join("etc/new"), b"new").unwrap();
    std::fs::write(up.join("z"), b"z").unwrap();
    let opts = DiffOptions {
        source_date_epoch: Some(1_000),
        ..DiffOptions::default()
    };
    let (r1, t1) = diff(Some(&lo), &up, Vec::new(), &opts).await.unwrap();
    let (_, t2) = diff(Some(&lo), &up, Vec::new(), &opts).await.unwrap();
    assert_eq!(t1, t2);
    assert_eq!((r1.changed, r1.deleted), (2, 1));
    assert_eq!(r1.tar_bytes, t1.len() as u64);
    // Entries in path order, all mtimes clamped.
    let mut ar = tokio_tar::Archive::new(&t1[..]);
    let mut names = Vec::new();
    let mut entries = ar.entries().unwrap();
    use futures_util::StreamExt;
    while let Some(e) = entries.next().await {
        let e = e.unwrap();
        assert!(e.header().mtime().unwrap() <= 1_000);
        names.push(e.path().unwrap().to_string_lossy().into_owned());
    }
    assert_eq!(names, ["etc/.wh.old", "etc/new", "z"]);
}

#[tokio::test]
async fn exported_symlinks_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(dir.path().join("secret"), b"host secret").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), tree.join("link")).unwrap();
    std::os::unix::fs::symlink("/", tree.join("rootlink")).unwrap();
    let (r, tar) = export(&tree, Vec::new(), &DiffOptions::default())
        .await
        .unwrap();
    assert_eq!(r.changed, 2);
    assert!(!tar.windows(11).any(|w| w == b"host secret"));
}

#[tokio::test]
async fn diff_to_store_gives_a_ready_layer() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up");
    std::fs::create_dir(&up).unwrap();
    std::fs::write(up.join("f"), vec![7u8; 100_000]).unwrap();
    let store = oci_rs_image::MemoryStore::new();
    let (desc, diff_id, report) = diff_to_store(
        &store,
        None,
        &up,
        false,
        oci_rs_image::Compression::Gzip,
        &DiffOptions::default(),
    )
    .await
    .unwrap();
    let (_, plain) = export(&up, Vec::new(), &DiffOptions::default())
        .await
        .unwrap();
    assert_eq!(diff_id, oci_rs_image::sha256(&plain));
    assert_eq!(report.changed, 1);
    assert!(desc.size() < 10_000, "compressed");
    use oci_rs_image::BlobStore;
    assert!(store.contains(desc.digest()).await.unwrap());
}

#[tokio::test]
async fn overlay_upper_directories_become_layers() {
    if !is_root() {
        eprintln!("skipping: mounting overlayfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| {
        let p = dir.path().join(n);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let (lower, upper, work, merged) = (d("lower"), d("upper"), d("work"), d("merged"));
    std::fs::create_dir_all(lower.join("keep")).unwrap();
    std::fs::write(lower.join("keep/a"), b"a").unwrap();
    std::fs::write(lower.join("gone"), b"gone").unwrap();
    std::fs::create_dir_all(lower.join("replaced")).unwrap();
    std::fs::write(lower.join("replaced/old1"), b"1").unwrap();
    std::fs::write(lower.join("replaced/old2"), b"2").unwrap();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let data = std::ffi::CString::new(opts).unwrap();
    if let Err(e) = rustix::mount::mount(
        "overlay",
        &merged,
        "overlay",
        rustix::mount::MountFlags::empty(),
        Some(data.as_c_str()),
    ) {
        eprintln!("skipping: overlayfs cannot be mounted here: {e}");
        return;
    }
    std::fs::write(merged.join("keep/b"), b"b").unwrap();
    std::fs::remove_file(merged.join("gone")).unwrap();
    std::fs::remove_dir_all(merged.join("replaced")).unwrap();
    std::fs::create_dir(merged.join("replaced")).unwrap();
    std::fs::write(merged.join("replaced/new"), b"n").unwrap();
    let want = comparable(&merged);
    rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::empty()).unwrap();

    let (r, layer) = diff_overlay(&upper, Vec::new(), &DiffOptions::default())
        .await
        .unwrap();
    assert_eq!(r.deleted, 1);
    assert_eq!(r.opaque, 1);
    let copy = d("copy");
    let (_, base) = export(&lower, Vec::new(), &DiffOptions::default())
        .await
        .unwrap();
    apply_tar(&copy, &base[..], &ApplyOptions::default())
        .await
        .unwrap();
    apply_tar(&copy, &layer[..], &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(comparable(&copy), want);
}

#[tokio::test]
async fn empty_mount_point_files_are_left_out_and_real_changes_kept() {
    let d = tempfile::tempdir().unwrap();
    let up = d.path().join("up");
    std::fs::create_dir_all(up.join("etc")).unwrap();
    std::fs::write(up.join("etc/hosts"), b"").unwrap();
    std::fs::write(up.join("etc/hostname"), b"edited\n").unwrap();
    let opts = DiffOptions {
        mount_points: vec!["etc/hosts".into(), "etc/hostname".into()],
        ..DiffOptions::default()
    };
    let (_, tar) = diff(None, &up, Vec::new(), &opts).await.unwrap();
    let names = tar_names(&tar);
    assert!(!names.iter().any(|n| n.ends_with("etc/hosts")), "{names:?}");
    assert!(
        names.iter().any(|n| n.ends_with("etc/hostname")),
        "{names:?}"
    );
}

fn tar_names(tar: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 512 <= tar.len() && tar[off] != 0 {
        let h = &tar[off..off + 512];
        let name = String::from_utf8_lossy(&h[..100])
            .trim_end_matches('\0')
            .to_owned();
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&h[124..135]).trim_matches(|c: char| c == '\0' || c == ' '),
            8,
        )
        .unwrap_or(0);
        out.push(name);
        off += 512 + size.div_ceil(512) * 512;
    }
    out
}

/// `export` keeps holes: a 4 GiB file with a few bytes of data (no disk used) is written as
/// an old GNU sparse entry of those bytes, not 4 GiB of zeros, and applies back as the same
/// sparse file. Layers (`diff`) stay plain unless asked.
#[tokio::test]
async fn export_keeps_holes_and_apply_restores_them() {
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::MetadataExt;
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let len = 4u64 << 30;
    {
        let mut f = std::fs::File::create(src.join("big")).unwrap();
        f.write_all(b"head").unwrap();
        for k in 1..40u64 {
            f.seek(SeekFrom::Start(k * (len / 40))).unwrap();
            f.write_all(format!("run {k}").as_bytes()).unwrap();
        }
        f.set_len(len).unwrap();
    }
    std::fs::write(src.join("small"), b"not sparse").unwrap();
    let (report, tar) = oci_rs_layer::export(&src, Vec::new(), &DiffOptions::default())
        .await
        .unwrap();
    assert!(tar.len() < 1 << 20, "{} bytes of tar", tar.len());
    assert_eq!(report.tar_bytes, tar.len() as u64);
    let out = d.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    oci_rs_layer::apply_tar(&out, &tar[..], &oci_rs_layer::ApplyOptions::default())
        .await
        .unwrap();
    let m = std::fs::metadata(out.join("big")).unwrap();
    assert_eq!(m.len(), len);
    assert!(
        m.blocks() * 512 < 4 << 20,
        "{} bytes allocated",
        m.blocks() * 512
    );
    let mut f = std::fs::File::open(out.join("big")).unwrap();
    let mut b = [0u8; 6];
    for k in 1..40u64 {
        let want = format!("run {k}");
        f.seek(SeekFrom::Start(k * (len / 40))).unwrap();
        f.read_exact(&mut b[..want.len()]).unwrap();
        assert_eq!(&b[..want.len()], want.as_bytes());
    }
    assert_eq!(std::fs::read(out.join("small")).unwrap(), b"not sparse");
    // GNU tar reads it as the same file.
    if std::process::Command::new("tar")
        .arg("--version")
        .output()
        .is_ok()
    {
        let t = d.path().join("x.tar");
        std::fs::write(&t, &tar).unwrap();
        let gnu = d.path().join("gnu");
        std::fs::create_dir_all(&gnu).unwrap();
        let st = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&t)
            .arg("-C")
            .arg(&gnu)
            .status()
            .unwrap();
        assert!(st.success());
        let g = std::fs::metadata(gnu.join("big")).unwrap();
        assert_eq!(g.len(), len);
        let mut f = std::fs::File::open(gnu.join("big")).unwrap();
        f.seek(SeekFrom::Start(len / 40)).unwrap();
        f.read_exact(&mut b[..5]).unwrap();
        assert_eq!(&b[..5], b"run 1");
    }
}

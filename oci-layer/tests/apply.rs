//! Applying layers: every entry type, whiteouts, ownership modes, and hostile layers that
//! must not touch anything outside the root.

#![allow(clippy::unwrap_used)]

mod common;

use common::{gzip, is_root, snapshot, tar, E};
use oci_rs_layer::{apply, apply_tar, ApplyOptions, Devices, Error, IdRange, Ownership};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use tokio_tar::EntryType;

const GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// A root to apply into, and a sentinel tree beside it that must never change.
struct Sandbox {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir_all(outside.join("dir")).unwrap();
        std::fs::write(outside.join("secret"), b"do not touch").unwrap();
        std::fs::write(outside.join("dir/x"), b"x").unwrap();
        Self {
            _dir: dir,
            root,
            outside,
        }
    }

    fn out(&self) -> &str {
        self.outside.to_str().unwrap()
    }

    /// Applies `entries` as a plain tar and checks the sentinel is unchanged.
    async fn apply(
        &self,
        entries: &[E],
        opts: &ApplyOptions,
    ) -> Result<oci_rs_layer::ApplyReport, Error> {
        let before = snapshot(&self.outside);
        let data = tar(entries);
        let r = apply(&self.root, &data[..], TAR, opts).await;
        assert_eq!(
            snapshot(&self.outside),
            before,
            "the sentinel outside the root changed"
        );
        r
    }
}

fn p(root: &Path, rel: &str) -> PathBuf {
    root.join(rel)
}

#[tokio::test]
async fn applies_every_entry_type_with_metadata() {
    let sb = Sandbox::new();
    let long = format!("deep/{}/file", "n".repeat(150));
    let entries = vec![
        E::dir("bin").mode(0o755).mtime(1_500_000_000),
        E::file("bin/tool", b"#!/bin/sh\n")
            .mode(0o4755)
            .owner(1000, 1001),
        E::dir("tmp").mode(0o1777),
        E::symlink("bin/sh", "tool"),
        E::symlink("abs", "/bin/tool"),
        E::hardlink("bin/tool2", "bin/tool"),
        E::node("fifo", EntryType::Fifo, 0, 0),
        E::node("null", EntryType::Char, 1, 3),
        E::file(&long, b"long name"),
        E::file("xattr", b"x").pax("SCHILY.xattr.user.test", b"value"),
    ];
    let data = tar(&entries);
    let gz = gzip(&data);
    let r = apply(&sb.root, &gz[..], GZ, &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(r.diff_id.unwrap(), oci_rs_image::sha256(&data));
    assert_eq!(r.tar_bytes, data.len() as u64);
    assert_eq!(r.entries, entries.len() as u64);
    let tool = std::fs::symlink_metadata(p(&sb.root, "bin/tool")).unwrap();
    assert_eq!(
        std::fs::read(p(&sb.root, "bin/tool")).unwrap(),
        b"#!/bin/sh\n"
    );
    assert_eq!(tool.mtime(), 1_600_000_000);
    assert_eq!(tool.nlink(), 2);
    let dir = std::fs::metadata(p(&sb.root, "bin")).unwrap();
    assert_eq!(
        dir.mtime(),
        1_500_000_000,
        "directory mtime restored after its contents"
    );
    assert_eq!(dir.mode() & 0o7777, 0o755);
    assert_eq!(
        std::fs::metadata(p(&sb.root, "tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        std::fs::read_link(p(&sb.root, "bin/sh")).unwrap(),
        Path::new("tool")
    );
    assert_eq!(
        std::fs::read_link(p(&sb.root, "abs")).unwrap(),
        Path::new("/bin/tool")
    );
    assert!(std::fs::symlink_metadata(p(&sb.root, "fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(std::fs::read(p(&sb.root, &long)).unwrap(), b"long name");
    let mut v = [0u8; 16];
    let n = rustix::fs::getxattr(p(&sb.root, "xattr"), "user.test", &mut v[..]).unwrap();
    assert_eq!(&v[..n], b"value");
    if is_root() {
        assert_eq!((tool.uid(), tool.gid()), (1000, 1001));
        assert_eq!(tool.mode() & 0o7777, 0o4755, "setuid kept after chown");
        let null = std::fs::symlink_metadata(p(&sb.root, "null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    } else {
        eprintln!("not root: ownership and device checks skipped");
    }
}

#[tokio::test]
async fn zstd_layers_and_magic_checks() {
    let sb = Sandbox::new();
    let data = tar(&[E::file("a", b"zstd content")]);
    let z = zstd_compress(&data);
    let r = apply(
        &sb.root,
        &z[..],
        "application/vnd.oci.image.layer.v1.tar+zstd",
        &ApplyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.diff_id.unwrap(), oci_rs_image::sha256(&data));
    // A plain tar announced as gzip is refused before anything is written.
    let e = apply(&sb.root, &data[..], GZ, &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::CompressionMismatch { .. }), "{e}");
    let e = apply(
        &sb.root,
        &data[..],
        "application/vnd.oci.image.config.v1+json",
        &ApplyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::UnsupportedMediaType(_)), "{e}");
}

fn zstd_compress(data: &[u8]) -> Vec<u8> {
    let rt = tokio::runtime::Handle::current();
    let data = data.to_vec();
    std::thread::spawn(move || {
        rt.block_on(async move {
            use tokio::io::AsyncReadExt;
            let mut enc = async_compression::tokio::bufread::ZstdEncoder::new(&data[..]);
            let mut out = Vec::new();
            enc.read_to_end(&mut out).await.unwrap();
            out
        })
    })
    .join()
    .unwrap()
}

#[tokio::test]
async fn whiteouts_and_opaque_directories() {
    let sb = Sandbox::new();
    let lower = [
        E::dir("a"),
        E::file("a/b", b"b"),
        E::file("a/c", b"c"),
        E::dir("d"),
        E::file("d/old", b"old"),
        E::dir("d/sub"),
        E::file("d/sub/deep", b"deep"),
        E::file("gone", b"g"),
    ];
    sb.apply(&lower, &ApplyOptions::default()).await.unwrap();
    let upper = [
        E::file("a/.wh.b", b""),
        E::dir("d"),
        E::file("d/new", b"new"),
        E::file("d/sub/kept", b"kept"),
        E::file("d/.wh..wh..opq", b""),
        E::file(".wh.gone", b""),
        E::file(".wh.never-there", b""),
        // A whiteout does not hide a file of its own layer.
        E::file("mine", b"mine"),
        E::file(".wh.mine", b""),
    ];
    let r = sb.apply(&upper, &ApplyOptions::default()).await.unwrap();
    assert_eq!(r.opaque_dirs, 1);
    assert!(!p(&sb.root, "a/b").exists());
    assert!(p(&sb.root, "a/c").exists());
    assert!(!p(&sb.root, "gone").exists());
    assert!(p(&sb.root, "mine").exists());
    let mut d: Vec<String> = std::fs::read_dir(p(&sb.root, "d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    d.sort();
    assert_eq!(d, ["new", "sub"], "opaque keeps only this layer's entries");
    let sub: Vec<_> = std::fs::read_dir(p(&sb.root, "d/sub")).unwrap().collect();
    assert_eq!(
        sub.len(),
        1,
        "lower d/sub/deep is gone, this layer's d/sub/kept stays"
    );
}

#[tokio::test]
async fn apply_refuses_dotdot_entries() {
    let sb = Sandbox::new();
    let e = sb
        .apply(
            &[E::file("../outside/secret", b"owned")],
            &ApplyOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Apply { source, .. } if matches!(**source, Error::UnsafePath { .. })),
        "{e}"
    );
    let e = sb
        .apply(
            &[E::file("a/../../outside/secret", b"owned")],
            &ApplyOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(oci_rs_image::chain(&e).contains(".."), "{e}");
    let e = sb
        .apply(&[E::file("x/.wh...", b"")], &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(oci_rs_image::chain(&e).contains("whiteout"), "{e}");
}

#[tokio::test]
async fn absolute_paths_land_inside_the_root() {
    let sb = Sandbox::new();
    let abs = format!("{}/secret", sb.out());
    sb.apply(&[E::file(&abs, b"inside")], &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(sb.root.join(abs.trim_start_matches('/'))).unwrap(),
        b"inside"
    );
}

#[tokio::test]
async fn apply_refuses_symlink_escapes() {
    let sb = Sandbox::new();
    let out = sb.out().to_owned();
    // The root's own mirror of the sentinel's path, so that links resolve to something.
    let mirror = out.trim_start_matches('/').to_owned();
    let mut entries = Vec::new();
    let mut acc = String::new();
    for c in mirror.split('/') {
        acc = if acc.is_empty() {
            c.to_owned()
        } else {
            format!("{acc}/{c}")
        };
        entries.push(E::dir(&acc));
    }
    entries.push(E::dir(&format!("{mirror}/dir")));
    entries.extend([
        E::dir("outside"),
        // Relative, absolute and chained symlinks to the sentinel directory, then writes
        // through them: all resolve inside the root.
        E::symlink("rel", "../../../../../../../../outside"),
        E::file("rel/secret", b"owned"),
        E::symlink("abs", &out),
        E::file("abs/secret", b"owned"),
        E::symlink("chain1", "chain2"),
        E::symlink("chain2", &format!("{out}/dir")),
        E::file("chain1/x", b"owned"),
        // A symlink to the sentinel file, then a file entry of the same name: the symlink is
        // replaced, never written through.
        E::symlink("evil", &format!("{out}/secret")),
        E::file("evil", b"owned"),
        // Metadata through a symlink: a directory entry over a symlink to outside.
        E::symlink("m", &out),
        E::dir("m").mode(0o777),
    ]);
    sb.apply(&entries, &ApplyOptions::default()).await.unwrap();
    assert_eq!(std::fs::read(p(&sb.root, "evil")).unwrap(), b"owned");
    assert!(std::fs::symlink_metadata(p(&sb.root, "m"))
        .unwrap()
        .is_dir());
    // The writes through links went to the root's own copy of those paths.
    assert_eq!(
        std::fs::read(sb.root.join(&mirror).join("secret")).unwrap(),
        b"owned"
    );
    assert_eq!(
        std::fs::read(sb.root.join("outside/secret")).unwrap(),
        b"owned"
    );
    assert_eq!(
        std::fs::read(sb.root.join(&mirror).join("dir/x")).unwrap(),
        b"owned"
    );
    // A link whose in-root target does not exist: an error, and still nothing outside.
    let e = sb
        .apply(
            &[
                E::symlink("dangling", "/nowhere/at/all"),
                E::file("dangling/f", b"x"),
            ],
            &ApplyOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(oci_rs_image::chain(&e).contains("dangling"), "{e}");
}

#[tokio::test]
async fn apply_refuses_hardlinks_out_of_the_root() {
    let sb = Sandbox::new();
    let out = sb.out().to_owned();
    let e = sb
        .apply(
            &[E::hardlink("hl", "../outside/secret")],
            &ApplyOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(oci_rs_image::chain(&e).contains(".."), "{e}");
    // An absolute target resolves inside the root, where it does not exist.
    let e = sb
        .apply(
            &[E::hardlink("hl", &format!("{out}/secret"))],
            &ApplyOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(oci_rs_image::chain(&e).contains("does not exist"), "{e}");
    // Through a symlink to outside.
    let e = sb
        .apply(
            &[E::symlink("l", &out), E::hardlink("hl", "l/secret")],
            &ApplyOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(oci_rs_image::chain(&e).contains("does not exist"), "{e}");
    // A hard link to a symlink links the symlink itself.
    sb.apply(
        &[
            E::symlink("s", &format!("{out}/secret")),
            E::hardlink("hs", "s"),
        ],
        &ApplyOptions::default(),
    )
    .await
    .unwrap();
    assert!(std::fs::symlink_metadata(p(&sb.root, "hs"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[tokio::test]
async fn whiteouts_under_symlinked_directories_stay_inside() {
    let sb = Sandbox::new();
    let out = sb.out().to_owned();
    sb.apply(
        &[
            E::symlink("sl", &out),
            E::file("sl/.wh.secret", b""),
            E::file("sl/dir/.wh..wh..opq", b""),
            E::symlink("rl", "../outside"),
            E::file("rl/.wh.dir", b""),
        ],
        &ApplyOptions::default(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn apply_refuses_unallowed_xattrs() {
    let sb = Sandbox::new();
    let entries = [E::file("f", b"x")
        .pax("SCHILY.xattr.trusted.overlay.opaque", b"y")
        .pax("SCHILY.xattr.security.capability", b"\x01\x00\x00\x02")
        .pax("SCHILY.xattr.user.ok", b"fine")];
    let r = sb.apply(&entries, &ApplyOptions::default()).await.unwrap();
    assert_eq!(
        r.refused_xattrs,
        ["f: trusted.overlay.opaque", "f: security.capability"]
    );
    let mut buf = [0u8; 64];
    assert!(
        rustix::fs::getxattr(p(&sb.root, "f"), "trusted.overlay.opaque", &mut buf[..]).is_err()
    );
    let strict = ApplyOptions {
        fail_on_refused_xattr: true,
        ..Default::default()
    };
    let e = sb.apply(&entries, &strict).await.unwrap_err();
    assert!(
        oci_rs_image::chain(&e).contains("trusted.overlay.opaque"),
        "{e}"
    );
}

#[tokio::test]
async fn apply_refuses_pax_size_disagreeing_with_header() {
    let sb = Sandbox::new();
    let e = sb
        .apply(
            &[E::file("f", b"12345").pax("size", b"3")],
            &ApplyOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(oci_rs_image::chain(&e).contains("PAX size"), "{e}");
}

#[tokio::test]
async fn truncated_corrupt_and_wrong_diff_id_layers_fail() {
    let sb = Sandbox::new();
    let big: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let data = tar(&[E::file("a", b"a"), E::file("big", &big)]);
    let gz = gzip(&data);
    let e = apply(&sb.root, &gz[..gz.len() / 2], GZ, &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Stream { .. } | Error::Apply { .. }),
        "{e}"
    );
    assert!(
        oci_rs_image::chain(&e).contains("entries") || oci_rs_image::chain(&e).contains("entry"),
        "{e}"
    );
    let mut corrupt = gz.clone();
    let mid = corrupt.len() / 2;
    for b in &mut corrupt[mid..mid + 64] {
        *b ^= 0xa5;
    }
    assert!(apply(&sb.root, &corrupt[..], GZ, &ApplyOptions::default())
        .await
        .is_err());
    let garbage = vec![0x42u8; 4096];
    assert!(apply(&sb.root, &garbage[..], TAR, &ApplyOptions::default())
        .await
        .is_err());
    let wrong = ApplyOptions {
        diff_id: Some(oci_rs_image::sha256(b"something else")),
        ..Default::default()
    };
    let e = apply(&sb.root, &gz[..], GZ, &wrong).await.unwrap_err();
    assert!(matches!(e, Error::DiffIdMismatch { .. }), "{e}");
    // With `sync`, the one syncfs at the end runs (and a verified layer still applies).
    let synced = ApplyOptions {
        sync: true,
        ..Default::default()
    };
    let fresh = Sandbox::new();
    apply(&fresh.root, &gz[..], GZ, &synced).await.unwrap();
}

#[tokio::test]
async fn rootless_mode_keeps_ownership_in_an_xattr() {
    let sb = Sandbox::new();
    let opts = ApplyOptions {
        ownership: Ownership::Rootless,
        devices: Devices::Skip,
        ..Default::default()
    };
    let r = sb
        .apply(
            &[
                E::file("owned", b"x").owner(1000, 1000),
                E::file("rootfile", b"x"),
                E::node("dev", EntryType::Char, 1, 3),
            ],
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(r.skipped_devices, ["dev"]);
    let md = std::fs::metadata(p(&sb.root, "owned")).unwrap();
    assert_eq!(
        md.uid(),
        rustix::process::geteuid().as_raw(),
        "no chown in rootless mode"
    );
    let mut buf = [0u8; 16];
    let n = rustix::fs::getxattr(
        p(&sb.root, "owned"),
        "user.rootlesscontainers",
        &mut buf[..],
    )
    .unwrap();
    assert_eq!(&buf[..n], &[0x08, 0xe8, 0x07, 0x10, 0xe8, 0x07]);
    assert!(rustix::fs::getxattr(
        p(&sb.root, "rootfile"),
        "user.rootlesscontainers",
        &mut buf[..]
    )
    .is_err());
}

#[tokio::test]
async fn id_maps_shift_ownership() {
    if !is_root() {
        eprintln!("skipping: chown to mapped ids needs root");
        return;
    }
    let sb = Sandbox::new();
    let opts = ApplyOptions {
        ownership: Ownership::Map {
            uids: vec![IdRange {
                container: 0,
                host: 100_000,
                size: 65536,
            }],
            gids: vec![IdRange {
                container: 0,
                host: 200_000,
                size: 65536,
            }],
        },
        ..Default::default()
    };
    sb.apply(
        &[
            E::file("f", b"x").owner(5, 6),
            E::symlink("l", "f").owner(7, 8),
        ],
        &opts,
    )
    .await
    .unwrap();
    let md = std::fs::metadata(p(&sb.root, "f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (100_005, 200_006));
    let md = std::fs::symlink_metadata(p(&sb.root, "l")).unwrap();
    assert_eq!((md.uid(), md.gid()), (100_007, 200_008));
}

#[tokio::test]
async fn same_tree_as_gnu_tar() {
    if !have_gnu_tar() {
        return;
    }
    let sb = Sandbox::new();
    let entries = [
        E::dir("etc").mtime(1_400_000_000),
        E::file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n").mode(0o644),
        E::file("etc/shadow", b"root:*::::::\n")
            .mode(0o640)
            .owner(0, 42),
        E::dir("usr"),
        E::dir("usr/bin").mode(0o755),
        E::file("usr/bin/su", b"\x7fELF").mode(0o4755),
        E::hardlink("usr/bin/su2", "usr/bin/su"),
        E::symlink("bin", "usr/bin"),
    ];
    let data = tar(&entries);
    apply_tar(&sb.root, &data[..], &ApplyOptions::default())
        .await
        .unwrap();
    let theirs = sb.root.parent().unwrap().join("gnu");
    std::fs::create_dir(&theirs).unwrap();
    let tarfile = sb.root.parent().unwrap().join("l.tar");
    std::fs::write(&tarfile, &data).unwrap();
    let st = std::process::Command::new("tar")
        .args(["--same-owner", "-xpf"])
        .arg(&tarfile)
        .arg("-C")
        .arg(&theirs)
        .status()
        .unwrap();
    assert!(st.success());
    let mut ours = snapshot(&sb.root);
    let mut gnu = snapshot(&theirs);
    // The roots themselves differ (tar leaves its own alone too); compare what is inside.
    ours.remove("");
    gnu.remove("");
    if !is_root() {
        for s in ours.values_mut().chain(gnu.values_mut()) {
            s.uid = 0;
            s.gid = 0;
            s.mode &= !0o6000;
        }
    }
    assert_eq!(ours, gnu);
}

#[tokio::test]
async fn gnu_sparse_files_and_gnu_long_names_from_gnu_tar() {
    if !have_gnu_tar() {
        return;
    }
    let sb = Sandbox::new();
    let src = sb.root.parent().unwrap().join("src");
    let long_dir = src.join("a".repeat(120)).join("b".repeat(120));
    std::fs::create_dir_all(&long_dir).unwrap();
    std::fs::write(long_dir.join("file"), b"deep").unwrap();
    std::os::unix::fs::symlink("x".repeat(150), long_dir.join("longlink")).unwrap();
    // A sparse file: 8 MiB with data at the start, the middle and the end.
    let sparse = src.join("sparse");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(&sparse).unwrap();
        f.write_all(b"head").unwrap();
        f.seek(SeekFrom::Start(4 << 20)).unwrap();
        f.write_all(b"middle").unwrap();
        f.set_len(8 << 20).unwrap();
        f.seek(SeekFrom::Start((8 << 20) - 4)).unwrap();
        f.write_all(b"tail").unwrap();
    }
    let tarfile = sb.root.parent().unwrap().join("gnu.tar");
    let st = std::process::Command::new("tar")
        .args(["--format=gnu", "--sparse", "-cf"])
        .arg(&tarfile)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let data = std::fs::read(&tarfile).unwrap();
    assert!(
        data.len() < 1 << 20,
        "GNU tar wrote the sparse file sparsely"
    );
    let r = apply_tar(&sb.root, &data[..], &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(r.diff_id.unwrap(), oci_rs_image::sha256(&data));
    let rel = long_dir.strip_prefix(&src).unwrap();
    assert_eq!(
        std::fs::read(sb.root.join(rel).join("file")).unwrap(),
        b"deep"
    );
    assert_eq!(
        std::fs::read_link(sb.root.join(rel).join("longlink")).unwrap(),
        Path::new(&"x".repeat(150))
    );
    assert_eq!(
        std::fs::read(sb.root.join("sparse")).unwrap(),
        std::fs::read(&sparse).unwrap()
    );
}

// Resource exhaustion: sizes that lie, records that claim gigabytes, times out of range.

/// Whether GNU tar is here (the tests that compare with it, or write with it, skip and say
/// so when it is not).
fn have_gnu_tar() -> bool {
    let here = std::process::Command::new("tar")
        .arg("--version")
        .output()
        .is_ok();
    if !here {
        eprintln!("skipping: GNU tar is not installed");
    }
    here
}

/// A GNU tar (`--sparse`) of one sparse file `big` of `len` bytes with `data` at its start
/// and at half its length.
fn sparse_tar(dir: &Path, len: u64) -> Option<Vec<u8>> {
    if !have_gnu_tar() {
        return None;
    }
    let src = dir.join("sparse-src");
    std::fs::create_dir_all(&src).unwrap();
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(src.join("big")).unwrap();
        f.write_all(b"data").unwrap();
        f.seek(SeekFrom::Start(len / 2)).unwrap();
        f.write_all(b"half").unwrap();
        f.set_len(len).unwrap();
    }
    let out = dir.join("sparse.tar");
    let st = std::process::Command::new("tar")
        .args(["--format=gnu", "--sparse", "-cf"])
        .arg(&out)
        .arg("-C")
        .arg(&src)
        .arg("big")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_dir_all(&src).unwrap();
    Some(std::fs::read(out).unwrap())
}

#[tokio::test]
async fn sparse_layer_makes_holes_not_zeros() {
    apply_sparse_of(512 << 20).await;
}

/// Applies [`sparse_tar`] of a `len`-byte file: a small layer, its DiffID, the file's length,
/// next to no blocks allocated, its data where it was and zeros in the holes.
async fn apply_sparse_of(len: u64) {
    let sb = Sandbox::new();
    let Some(data) = sparse_tar(sb.root.parent().unwrap(), len) else {
        return;
    };
    assert!(data.len() < 64 << 10, "a small layer: {} bytes", data.len());
    let r = apply_tar(&sb.root, &data[..], &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(r.diff_id.unwrap(), oci_rs_image::sha256(&data));
    let m = std::fs::metadata(sb.root.join("big")).unwrap();
    assert_eq!(m.len(), len);
    assert!(
        m.blocks() * 512 < 1 << 20,
        "{} bytes allocated for a {len}-byte sparse file",
        m.blocks() * 512
    );
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(sb.root.join("big")).unwrap();
    let mut b = [0u8; 4];
    f.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"data");
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    f.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"half");
    f.seek(SeekFrom::Start(len / 4)).unwrap();
    f.read_exact(&mut b).unwrap();
    assert_eq!(b, [0; 4]);
}

#[tokio::test]
async fn layer_declaring_more_than_the_limit_fails_before_writing() {
    let sb = Sandbox::new();
    // 1 TiB and a little: over the default limit, refused at once from the header.
    let Some(data) = sparse_tar(sb.root.parent().unwrap(), (1 << 40) + 4096) else {
        return;
    };
    let started = std::time::Instant::now();
    let err = apply_tar(&sb.root, &data[..], &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Apply { source, .. } if matches!(**source, Error::TooLarge { .. })),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(!sb.root.join("big").exists(), "nothing of it was written");
    // The limit is configurable and counts every file of the layer.
    let opts = ApplyOptions {
        max_bytes: Some(1000),
        ..Default::default()
    };
    let err = sb
        .apply(
            &[E::file("a", &[1u8; 600]), E::file("b", &[2u8; 600])],
            &opts,
        )
        .await
        .unwrap_err();
    assert!(
        oci_rs_image::chain(&err).contains("limit of 1000 bytes"),
        "{err}"
    );
    assert_eq!(std::fs::read(sb.root.join("a")).unwrap(), vec![1u8; 600]);
    assert!(!sb.root.join("b").exists());
}

/// Sets the mtime field of the tar header at `offset` to `field` and fixes its checksum.
fn patch_mtime(data: &mut [u8], offset: usize, field: [u8; 12]) {
    let h = &mut data[offset..offset + 512];
    h[136..148].copy_from_slice(&field);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

#[tokio::test]
async fn pax_times_are_honoured_and_out_of_range_times_clamped() {
    let sb = Sandbox::new();
    let mut data = tar(&[
        E::file("pax", b"x").mtime(5).pax("mtime", b"1234567890.25"),
        E::file("negative", b"y").mtime(7),
        E::file("huge", b"z").mtime(9),
    ]);
    // Blocks: PAX header, its body, "pax" and its data, then "negative" (block 4) and its
    // data, then "huge" (block 6).
    patch_mtime(&mut data, 4 * 512, [0xff; 12]);
    let mut huge = [0u8; 12];
    huge[0] = 0x80;
    huge[4] = 0x7f;
    patch_mtime(&mut data, 6 * 512, huge);
    apply_tar(&sb.root, &data[..], &ApplyOptions::default())
        .await
        .unwrap();
    let m = std::fs::metadata(sb.root.join("pax")).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_234_567_890, 250_000_000));
    // Base-256 -1 is a second before the epoch, not the year 2446.
    assert_eq!(
        std::fs::metadata(sb.root.join("negative")).unwrap().mtime(),
        -1
    );
    assert_eq!(
        std::fs::metadata(sb.root.join("huge")).unwrap().mtime(),
        *oci_rs_layer::MTIME_RANGE.end()
    );
}

#[tokio::test]
async fn layer_with_a_huge_long_name_record_is_refused_before_it_is_buffered() {
    let sb = Sandbox::new();
    // 64 MiB of long name, compressed to a few hundred KiB: the parser held it whole.
    let size = 64usize << 20;
    let mut t = vec![0u8; 512];
    t[..13].copy_from_slice(b"././@LongLink");
    t[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    t[156] = b'L';
    t[148..156].copy_from_slice(b"        ");
    let sum: u32 = t.iter().map(|b| u32::from(*b)).sum();
    t[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    t.resize(512 + size, b'a');
    t.extend(vec![0u8; 1024]);
    let gz = gzip(&t);
    assert!(gz.len() < 1 << 20);
    let err = apply(&sb.root, &gz[..], GZ, &ApplyOptions::default())
        .await
        .unwrap_err();
    let mut text = err.to_string();
    let mut src = std::error::Error::source(&err);
    while let Some(s) = src {
        text += &format!(": {s}");
        src = s.source();
    }
    assert!(text.contains("over the limit of 1048576 bytes"), "{text}");
}

// Depth: a deep path cost O(depth²) (every prefix re-resolved, every ancestor kept as a whole
// path), and deep trees were removed by recursion, a descriptor per level.

#[tokio::test]
async fn deep_paths_with_missing_parents_cost_no_quadratic_time_or_memory() {
    let sb = Sandbox::new();
    // 50 files 2000 directories deep, each under a parent no entry creates: every one
    // made the applier resolve each of its 2000 prefixes from the root, and remember each
    // as a whole path.
    let deep = "a/".repeat(2000);
    let entries: Vec<E> = (0..50)
        .map(|i| E::file(&format!("d{i}/{deep}f"), b"x"))
        .collect();
    let started = std::time::Instant::now();
    sb.apply(&entries, &ApplyOptions::default()).await.unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        std::fs::read(sb.root.join(format!("d49/{deep}f"))).unwrap(),
        b"x"
    );
}

#[tokio::test]
async fn paths_and_link_targets_over_path_max_are_refused() {
    let sb = Sandbox::new();
    let long = format!("{}f", "a/".repeat(2100));
    let err = sb
        .apply(&[E::file(&long, b"x")], &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(oci_rs_image::chain(&err).contains("over 4096"), "{err}");
    let err = sb
        .apply(
            &[E::symlink("l", &"x".repeat(5000))],
            &ApplyOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(oci_rs_image::chain(&err).contains("over 4096"), "{err}");
}

fn open_dir_path(dir: &Path) -> std::os::fd::OwnedFd {
    rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap()
}

/// A chain of `depth` directories named `d` under `dir/top`, made one level at a time.
fn deep_chain(dir: &Path, depth: usize) {
    use rustix::fs::{mkdirat, openat, Mode, OFlags};
    std::fs::create_dir(dir.join("top")).unwrap();
    let mut cur = open_dir_path(&dir.join("top"));
    for _ in 0..depth {
        mkdirat(&cur, "d", Mode::from_raw_mode(0o755)).unwrap();
        cur = openat(&cur, "d", OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
    }
}

/// Removes `dir/top` with the crate's iterative removal (std's recursive one overflows the
/// stack on such a tree).
fn remove_chain(dir: &Path) {
    let parent = open_dir_path(dir);
    oci_rs_layer::remove_all(std::os::fd::AsFd::as_fd(&parent), "top".as_ref()).unwrap();
}

#[test]
fn removal_of_a_tree_deeper_than_stack_and_descriptor_limits() {
    // What a container can make with mkdir and mv: 30 000 levels, more than the
    // descriptor limit here (and than the test thread's stack held in recursion).
    let dir = tempfile::tempdir().unwrap();
    deep_chain(dir.path(), 30_000);
    remove_chain(dir.path());
    assert!(!dir.path().join("top").exists());
}

#[tokio::test]
async fn diff_of_a_tree_too_deep_for_a_layer_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path().join("upper");
    std::fs::create_dir(&upper).unwrap();
    deep_chain(&upper, 30_000);
    for lower in [None, Some(dir.path().join("lower"))] {
        if let Some(l) = &lower {
            std::fs::create_dir_all(l.join("top")).unwrap();
        }
        let err = oci_rs_layer::diff(
            lower.as_deref(),
            &upper,
            tokio::io::sink(),
            &oci_rs_layer::DiffOptions::default(),
        )
        .await
        .unwrap_err();
        assert!(
            oci_rs_image::chain(&err).contains("over 4096 bytes"),
            "{err}"
        );
    }
    let err = oci_rs_layer::diff_overlay(
        &upper,
        tokio::io::sink(),
        &oci_rs_layer::DiffOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        oci_rs_image::chain(&err).contains("over 4096 bytes"),
        "{err}"
    );
    remove_chain(&upper);
}

/// A layer of a few kilobytes whose sparse file declares holes of half a terabyte each (just
/// under the default limit) costs no time and no disk: the holes are never walked as zeros
/// (before, the parser's made-up zeros were read and checked for minutes).
#[tokio::test]
async fn a_terabyte_hole_costs_neither_time_nor_disk() {
    apply_sparse_of((1u64 << 40) - (1 << 20)).await;
}

/// Sparse files whose maps need GNU extension blocks (more than four runs), one of them
/// under a GNU long name, come out byte for byte as GNU tar read them, with the DiffID of
/// the layer's own bytes.
#[tokio::test]
async fn sparse_files_with_extension_blocks_and_long_names() {
    if !have_gnu_tar() {
        return;
    }
    let sb = Sandbox::new();
    let src = sb.root.parent().unwrap().join("many-src");
    let long = "l".repeat(200);
    std::fs::create_dir_all(&src).unwrap();
    for (name, runs) in [("many", 60u64), (long.as_str(), 9), ("few", 2)] {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(src.join(name)).unwrap();
        for i in 0..runs {
            f.seek(SeekFrom::Start(i * (1 << 20) + 4096)).unwrap();
            f.write_all(format!("run {i} of {name}").as_bytes())
                .unwrap();
        }
        f.set_len(runs * (1 << 20) + 12345).unwrap();
    }
    std::fs::write(src.join("plain"), b"after the sparse ones").unwrap();
    let tarfile = sb.root.parent().unwrap().join("many.tar");
    let st = std::process::Command::new("tar")
        .args(["--format=gnu", "--sparse", "-cf"])
        .arg(&tarfile)
        .arg("-C")
        .arg(&src)
        .args(["many", &long, "few", "plain"])
        .status()
        .unwrap();
    assert!(st.success());
    let data = std::fs::read(&tarfile).unwrap();
    let r = apply_tar(&sb.root, &data[..], &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(r.diff_id.unwrap(), oci_rs_image::sha256(&data));
    for name in ["many", long.as_str(), "few", "plain"] {
        assert_eq!(
            std::fs::read(sb.root.join(name)).unwrap(),
            std::fs::read(src.join(name)).unwrap(),
            "{name}"
        );
    }
}

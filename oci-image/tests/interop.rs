//! Interop with the peers: skopeo and umoci read the layouts and archives we write, and we
//! read theirs.

#![allow(clippy::unwrap_used)]

mod common;

use common::{busybox_image, have, run};
use oci_rs_image::{
    copy, ArchiveFormat, ArchiveSource, ArchiveWriter, BlobStore, CopyOptions, ImageDestination,
    ImageSource, ManifestRef, MemoryStore, OciLayout,
};
use tokio::io::AsyncReadExt;

/// Reads every blob of the image `tag` names in `src`, proving each verifies.
async fn read_all_blobs(src: &dyn ImageSource, tag: &str) -> oci_rs_image::Manifest {
    let m = src.manifest(&ManifestRef::Tag(tag.into())).await.unwrap();
    for d in m.children() {
        let mut r = src.blob(&d).await.unwrap();
        let mut n = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let k = r.read(&mut buf).await.unwrap();
            if k == 0 {
                break;
            }
            n += k as u64;
        }
        assert_eq!(n, d.size());
    }
    m
}

#[tokio::test]
async fn skopeo_and_umoci_read_our_layout() {
    if !have("skopeo") || !have("umoci") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path().join("oci")).await.unwrap();
    let m = busybox_image(&layout, "amd64", false).await;
    layout.put_manifest(&m, Some("v1")).await.unwrap();
    let root = dir.path().join("oci");
    let root = root.to_str().unwrap();

    let out = run("skopeo", &["inspect", &format!("oci:{root}:v1")]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["Digest"], m.digest().to_string());
    assert_eq!(j["Architecture"], "amd64");
    assert_eq!(j["Layers"].as_array().unwrap().len(), 2);
    // skopeo's view of the config agrees with ours, DiffIDs included.
    let cfg = run(
        "skopeo",
        &["inspect", "--config", &format!("oci:{root}:v1")],
    );
    let cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    let ours = oci_rs_image::read_config_json(&layout, m.as_image().unwrap().config())
        .await
        .unwrap();
    assert_eq!(cfg["rootfs"], ours["rootfs"]);

    let stat = run(
        "umoci",
        &["stat", "--image", &format!("{root}:v1"), "--json"],
    );
    let stat: serde_json::Value = serde_json::from_str(&stat).unwrap();
    assert_eq!(stat["history"].as_array().unwrap().len(), 2);
    // umoci unpacks it: the busybox binary comes out byte for byte.
    let bundle = dir.path().join("bundle");
    run(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{root}:v1"),
            bundle.to_str().unwrap(),
        ],
    );
    if let Ok(orig) = std::fs::read("/bin/busybox") {
        assert_eq!(
            std::fs::read(bundle.join("rootfs/bin/busybox")).unwrap(),
            orig
        );
    }
}

#[tokio::test]
async fn skopeo_reads_our_archives_and_we_read_its() {
    if !have("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = MemoryStore::new();
    let m = busybox_image(&src, "amd64", true).await;
    src.put_manifest(&m, Some("v1")).await.unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();

    // Our docker-archive into an OCI layout through skopeo, and back.
    let ours = p("ours-docker.tar");
    let w = ArchiveWriter::create(&ours, ArchiveFormat::Docker)
        .await
        .unwrap();
    copy(
        &src,
        &w,
        &ManifestRef::Tag("v1".into()),
        &CopyOptions::default().tag("busybox:v1"),
    )
    .await
    .unwrap();
    let out = run("skopeo", &["inspect", &format!("docker-archive:{ours}")]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["Architecture"], "amd64");
    assert_eq!(j["Layers"].as_array().unwrap().len(), 2);
    let via = p("via-skopeo");
    run(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            &format!("docker-archive:{ours}:busybox:v1"),
            &format!("oci:{via}:x"),
        ],
    );
    let layout = OciLayout::open(&via).await.unwrap();
    let back = read_all_blobs(&layout, "x").await;
    // skopeo recompresses the layers, but the DiffIDs (the filesystem) are the same.
    let cfg_back = oci_rs_image::read_config_json(&layout, back.as_image().unwrap().config())
        .await
        .unwrap();
    let cfg_src = oci_rs_image::read_config_json(&src, m.as_image().unwrap().config())
        .await
        .unwrap();
    assert_eq!(cfg_back["rootfs"], cfg_src["rootfs"]);

    // Our oci-archive, of an OCI image (skopeo 1.9 ignores index.json entries with Docker
    // media types; we keep manifests byte for byte rather than convert them).
    let oci_src = MemoryStore::new();
    let m = busybox_image(&oci_src, "amd64", false).await;
    oci_src.put_manifest(&m, Some("v1")).await.unwrap();
    let oa = p("ours-oci.tar");
    let w = ArchiveWriter::create(&oa, ArchiveFormat::Oci)
        .await
        .unwrap();
    copy(
        &oci_src,
        &w,
        &ManifestRef::Tag("v1".into()),
        &CopyOptions::default().tag("v1"),
    )
    .await
    .unwrap();
    let out = run("skopeo", &["inspect", &format!("oci-archive:{oa}:v1")]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["Digest"], m.digest().to_string());

    // skopeo's docker-archive (legacy layout: <hex>.tar layers, manifest.json) read by us.
    let theirs = p("theirs.tar");
    run(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            &format!("oci:{via}:x"),
            &format!("docker-archive:{theirs}:example.com/tools/busybox:2"),
        ],
    );
    let a = ArchiveSource::open(&theirs).await.unwrap();
    assert_eq!(a.tags(), ["example.com/tools/busybox:2"]);
    let got = read_all_blobs(&a, "example.com/tools/busybox:2").await;
    let cfg_theirs = oci_rs_image::read_config_json(&a, got.as_image().unwrap().config())
        .await
        .unwrap();
    assert_eq!(cfg_theirs["rootfs"], cfg_src["rootfs"]);
    // And copy it into a layout of ours.
    let dst = tempfile::tempdir().unwrap();
    let dst = OciLayout::create(dst.path()).await.unwrap();
    let r = copy(
        &a,
        &dst,
        &ManifestRef::Tag("example.com/tools/busybox:2".into()),
        &CopyOptions::default().tag("loaded"),
    )
    .await
    .unwrap();
    assert_eq!(r.blobs_copied, 3);

    // skopeo's oci-archive.
    let their_oa = p("theirs-oci.tar");
    run(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            &format!("oci:{via}:x"),
            &format!("oci-archive:{their_oa}:y"),
        ],
    );
    let a = ArchiveSource::open(&their_oa).await.unwrap();
    read_all_blobs(&a, "y").await;
}

#[tokio::test]
async fn we_read_umoci_layouts() {
    if !have("umoci") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("umoci");
    let l = layout.to_str().unwrap();
    run("umoci", &["init", "--layout", l]);
    run("umoci", &["new", "--image", &format!("{l}:base")]);
    // Add a real file as a layer through umoci's own unpack/repack.
    let bundle = dir.path().join("bundle");
    run(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{l}:base"),
            bundle.to_str().unwrap(),
        ],
    );
    std::fs::write(bundle.join("rootfs/hello"), b"from umoci").unwrap();
    run(
        "umoci",
        &[
            "repack",
            "--image",
            &format!("{l}:next"),
            bundle.to_str().unwrap(),
        ],
    );
    let ours = OciLayout::open(&layout).await.unwrap();
    let m = read_all_blobs(&ours, "next").await;
    assert_eq!(m.as_image().unwrap().layers().len(), 1);
    let dst = MemoryStore::new();
    copy(
        &ours,
        &dst,
        &ManifestRef::Tag("next".into()),
        &CopyOptions::default().tag("n"),
    )
    .await
    .unwrap();
    for d in m.children() {
        assert!(dst.contains(d.digest()).await.unwrap());
    }
    // Tagging in umoci's layout keeps umoci's tags.
    ours.set("ours", &m.descriptor()).await.unwrap();
    let tags = run("umoci", &["ls", "--layout", l]);
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort();
    assert_eq!(tags, ["base", "next", "ours"]);
}

use oci_rs_image::ReferenceStore as _;

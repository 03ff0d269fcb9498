//! The local image store (`ImageStore`) as a program uses it, without any command line:
//! pulls and pushes through a `Remote` (here a mirror: another OCI layout on disk, which is
//! what a registry holds too), docker's names and ids (an id or a unique prefix in every
//! verb, an ambiguous one refused), history and sizes, rmi and prune that keep what
//! containers were made from, save and load, import with docker's changes, and commit of a
//! container snapshot. Pulls from a real registry (docker-registry, through the registry
//! client) that unpack as they fetch: the same layers as a pull then a snapshot, or a load;
//! a blob sent wrong (a changed byte, or the same tar compressed again, shorter or longer)
//! leaving neither a blob nor a layer. And what a hostile or broken input or another local
//! user meets: `unpack`'s private tree, an oci-archive of bare tags and several platforms,
//! archives of no image or of unnamed ones, a config whose diff_ids do not match its
//! layers, an import stream of several zstd frames.

#![allow(clippy::unwrap_used)]

mod common;

use async_trait::async_trait;
use common::{is_root, tar, E};
use oci_rs_image::{
    Compression, CopyOptions, ImageBuilder, ImageDestination, ImageReference, ImageSource,
    Manifest, OciLayout, ReferenceStore, Remote,
};
use oci_rs_layer::{CommitOptions, Error, ImageStore, Loaded};

/// Images by tag in one OCI layout, for every repository: a registry's content on disk.
struct Mirror(OciLayout);

#[async_trait]
impl Remote for Mirror {
    async fn source(&self, _: &ImageReference) -> oci_rs_image::Result<Box<dyn ImageSource>> {
        Ok(Box::new(self.0.clone()))
    }
    async fn destination(
        &self,
        _: &ImageReference,
    ) -> oci_rs_image::Result<Box<dyn ImageDestination>> {
        Ok(Box::new(self.0.clone()))
    }
}

/// A two-layer image tagged `tag` in `layout`, whose command is `cmd`.
async fn image(layout: &OciLayout, tag: &str, cmd: &str) -> Manifest {
    let arch = oci_rs_image::PlatformSpec::host().architecture;
    let mut b = ImageBuilder::new("linux", &arch).cmd([cmd]);
    let base = tar(&[E::dir("etc"), E::file("etc/motd", b"hello\n")]);
    let top = tar(&[E::file(&format!("{tag}.txt"), cmd.as_bytes())]);
    b.add_layer_tar(layout, &mut &base[..], Compression::Gzip, "ADD base /")
        .await
        .unwrap();
    b.add_layer_tar(layout, &mut &top[..], Compression::Gzip, "COPY top /")
        .await
        .unwrap();
    let m = b.build(layout).await.unwrap();
    ReferenceStore::set(layout, tag, &m.descriptor())
        .await
        .unwrap();
    m
}

async fn fixture() -> (tempfile::TempDir, ImageStore, Mirror) {
    let dir = tempfile::tempdir().unwrap();
    let mirror = OciLayout::create(dir.path().join("mirror")).await.unwrap();
    image(&mirror, "1", "one").await;
    image(&mirror, "2", "two").await;
    let store = ImageStore::open(&dir.path().join("data")).await.unwrap();
    (dir, store, Mirror(mirror))
}

#[tokio::test]
async fn pulls_are_named_by_full_reference_and_report_what_they_fetched() {
    let (_d, store, mirror) = fixture().await;
    let opts = CopyOptions::default();
    let first = store
        .pull(&mirror, "example.org/team/app:1", &opts, false)
        .await
        .unwrap();
    assert!(!first.up_to_date);
    assert_eq!(first.layers.len(), 2);
    assert!(first.layers.iter().all(|(_, fetched)| *fetched));
    let again = store
        .pull(&mirror, "example.org/team/app:1", &opts, false)
        .await
        .unwrap();
    assert!(again.up_to_date);
    assert!(again.layers.iter().all(|(_, fetched)| !*fetched));
    // Image 2 shares its base layer: only its top layer is fetched.
    let two = store
        .pull(&mirror, "example.org/team/app:2", &opts, false)
        .await
        .unwrap();
    let fetched: Vec<bool> = two.layers.iter().map(|(_, f)| *f).collect();
    assert_eq!(fetched, [false, true]);
    assert_eq!(again.lines().last().unwrap(), "example.org/team/app:1");
    let rows = store.list().await.unwrap();
    let names: Vec<String> = rows
        .iter()
        .map(|r| format!("{}:{}", r.repository, r.tag))
        .collect();
    assert_eq!(names, ["example.org/team/app:1", "example.org/team/app:2"]);
    // SIZE is the layers' unpacked bytes (two tars), not their compressed size.
    let base = tar(&[E::dir("etc"), E::file("etc/motd", b"hello\n")]).len() as u64;
    let top = tar(&[E::file("1.txt", b"one")]).len() as u64;
    assert_eq!(rows[0].size, base + top);
    assert!(rows[0].compressed_size < rows[0].size);
}

#[tokio::test]
async fn images_are_found_by_name_id_and_prefix_and_tagged() {
    let (_d, store, mirror) = fixture().await;
    let opts = CopyOptions::default();
    store.pull(&mirror, "app:1", &opts, false).await.unwrap();
    let found = store.find("app:1").await.unwrap();
    assert_eq!(found.names, ["docker.io/library/app:1"]);
    let id = store.list().await.unwrap()[0].id.clone();
    let hex = id.strip_prefix("sha256:").unwrap();
    for name in [id.as_str(), hex, &hex[..12]] {
        let f = store.find(name).await.unwrap();
        assert!(f.by_id, "{name}");
        assert_eq!(f.desc.digest(), found.desc.digest());
    }
    store.tag(&hex[..12], "other/name:x").await.unwrap();
    assert_eq!(store.find("other/name:x").await.unwrap().names.len(), 2);
    assert!(matches!(
        store.find("nothing:here").await,
        Err(Error::NoSuchImage(_))
    ));
    // By id with two names, removal must be forced.
    assert!(matches!(
        store.remove(&[hex[..12].to_owned()], false).await,
        Err(Error::Conflict { .. })
    ));
    let history = store.history("app:1").await.unwrap();
    let made_by: Vec<&str> = history.iter().map(|h| h.created_by.as_str()).collect();
    assert_eq!(made_by, ["COPY top /", "ADD base /"]);
    assert_eq!(history[0].id.as_deref(), Some(id.as_str()));
}

/// docker's image id (the config digest's hex) of the image `name` finds.
async fn id_of(store: &ImageStore, name: &str) -> String {
    let run = store.image_for_run(name, None, None, |_| {}).await.unwrap();
    run.config_digest.digest().to_owned()
}

/// A one-layer image `name` imported from a tar of one file holding `text`.
async fn import_one(store: &ImageStore, name: &str, text: &str) -> Vec<u8> {
    let rootfs = tar(&[E::file("f", text.as_bytes())]);
    store
        .import(&rootfs[..], Some(name), &[r#"CMD ["sh"]"#.to_owned()])
        .await
        .unwrap();
    rootfs
}

#[tokio::test]
async fn an_id_or_a_unique_prefix_names_an_image_in_every_verb() {
    let (d, store, _) = fixture().await;
    // 17 images: two of them share a first hex digit, whatever the digests are.
    let mut ids = Vec::new();
    for i in 0..17 {
        let name = format!("img:{i}");
        import_one(&store, &name, &format!("image {i}\n")).await;
        ids.push(id_of(&store, &name).await);
    }
    let id = &ids[3];
    for prefix in [&id[..12], &id[..], &format!("sha256:{}", &id[..10])] {
        assert_eq!(id_of(&store, prefix).await, *id, "{prefix}");
        let inspect = store.inspect(prefix).await.unwrap();
        assert_eq!(inspect.id, format!("sha256:{id}"), "{prefix}");
    }
    store.tag(&id[..12], "by-id:1").await.unwrap();
    assert_eq!(id_of(&store, "by-id:1").await, *id);
    let history = store.history(&id[..8]).await.unwrap();
    assert_eq!(history[0].id, Some(format!("sha256:{id}")));
    // save by a prefix: the archive holds that image.
    let saved = d.path().join("out.tar");
    let w = oci_rs_image::ArchiveWriter::create(&saved, oci_rs_image::ArchiveFormat::Docker)
        .await
        .unwrap();
    store
        .save(&w, &[id[..12].to_owned()], &CopyOptions::default())
        .await
        .unwrap();
    let other = ImageStore::open(&d.path().join("other")).await.unwrap();
    let loaded = other.load(&saved, &CopyOptions::default()).await.unwrap();
    let [Loaded::Named(name)] = &loaded[..] else {
        panic!("{loaded:?}")
    };
    assert_eq!(id_of(&other, name).await, *id);
    // A shared prefix is ambiguous, and the error names both.
    let (a, b) = (0..17)
        .flat_map(|i| (i + 1..17).map(move |j| (i, j)))
        .find(|&(i, j)| ids[i][..1] == ids[j][..1])
        .unwrap();
    let common_len = ids[a]
        .bytes()
        .zip(ids[b].bytes())
        .take_while(|(x, y)| x == y)
        .count();
    let prefix = &ids[a][..common_len];
    match store.find(prefix).await {
        Err(Error::AmbiguousImage { prefix: p, matches }) => {
            assert_eq!(p, prefix);
            assert!(
                matches.contains(&ids[a][..12]) && matches.contains(&ids[b][..12]),
                "{matches}"
            );
        }
        other => panic!("{prefix} is shared by two images: {other:?}"),
    }
    // rmi by id: refused while it has two names, unless forced, which removes both.
    assert!(matches!(
        store.remove(&[id[..12].to_owned()], false).await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(id_of(&store, "img:3").await, *id, "a refused rmi untagged");
    let removed = store.remove(&[id[..12].to_owned()], true).await.unwrap();
    let mut untagged = removed.untagged;
    untagged.sort();
    assert_eq!(untagged, ["by-id:1", "img:3"]);
    assert_eq!(
        removed.deleted,
        [format!("sha256:{id}")],
        "docker's Deleted: line"
    );
    for name in [&id[..12], "img:3", "by-id:1"] {
        assert!(
            matches!(store.find(name).await, Err(Error::NoSuchImage(_))),
            "{name}"
        );
    }
    assert_eq!(store.list().await.unwrap().len(), 16);
}

#[tokio::test]
async fn history_shows_each_step_newest_first_with_its_id_time_and_size() {
    let (_d, store, mirror) = fixture().await;
    let before = oci_rs_image::now_ns();
    let rootfs = import_one(&store, "img:0", "image 0\n").await;
    let after = oci_rs_image::now_ns();
    let history = store.history("img:0").await.unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    let row = &history[0];
    assert_eq!(
        row.id,
        Some(format!("sha256:{}", id_of(&store, "img:0").await))
    );
    assert_eq!(row.created_by, "imported");
    let created = row.created.unwrap();
    assert!(
        (before..=after).contains(&created),
        "the import's own time: {before} <= {created} <= {after}"
    );
    // The layer's unpacked size (the tar's bytes), not its gzip's.
    assert_eq!(row.size, rootfs.len() as u64);
    assert_eq!(store.list().await.unwrap()[0].size, row.size);
    // Two steps: the newest first, the id on it alone, each with its own layer's size.
    store
        .pull(&mirror, "app:1", &CopyOptions::default(), false)
        .await
        .unwrap();
    let history = store.history("app:1").await.unwrap();
    let rows: Vec<(Option<&str>, &str, u64)> = history
        .iter()
        .map(|h| (h.id.as_deref(), h.created_by.as_str(), h.size))
        .collect();
    let base = tar(&[E::dir("etc"), E::file("etc/motd", b"hello\n")]).len() as u64;
    let top = tar(&[E::file("1.txt", b"one")]).len() as u64;
    let id = format!("sha256:{}", id_of(&store, "app:1").await);
    assert_eq!(
        rows,
        [
            (Some(id.as_str()), "COPY top /", top),
            (None, "ADD base /", base)
        ]
    );
}

#[tokio::test]
async fn image_prune_all_removes_what_no_container_uses() {
    let (_d, store, _) = fixture().await;
    import_one(&store, "img:0", "image 0\n").await;
    import_one(&store, "img:1", "image 1\n").await;
    let layers: Vec<_> = {
        let mut v = Vec::new();
        for name in ["img:0", "img:1"] {
            let run = store.image_for_run(name, None, None, |_| {}).await.unwrap();
            v.extend(run.manifest.as_image().unwrap().layers().clone());
        }
        v
    };
    // A plain prune keeps named images.
    let removed = store.prune(false).await.unwrap();
    assert!(removed.untagged.is_empty(), "{removed:?}");
    assert_eq!(store.list().await.unwrap().len(), 2);
    for l in &layers {
        store.layout().blob(l).await.unwrap();
    }
    // prune -a untags every image no container uses, and frees their blobs.
    let pruned = store.prune(true).await.unwrap();
    assert_eq!(
        pruned.deleted.len(),
        2,
        "each image, its last name gone: {pruned:?}"
    );
    let (mut removed, freed) = (pruned.untagged, pruned.bytes_freed);
    removed.sort();
    assert_eq!(removed, ["img:0", "img:1"]);
    assert!(store.list().await.unwrap().is_empty());
    assert!(freed > 0);
    for l in &layers {
        assert!(store.layout().blob(l).await.is_err(), "{} kept", l.digest());
    }
}

#[tokio::test]
async fn save_and_load_name_each_image_once() {
    let (d, store, _) = fixture().await;
    import_one(&store, "img:0", "image 0\n").await;
    import_one(&store, "img:1", "image 1\n").await;
    let saved = d.path().join("two.tar");
    let w = oci_rs_image::ArchiveWriter::create(&saved, oci_rs_image::ArchiveFormat::Docker)
        .await
        .unwrap();
    store
        .save(
            &w,
            &["img:0".to_owned(), "img:1".to_owned()],
            &CopyOptions::default(),
        )
        .await
        .unwrap();
    let other = ImageStore::open(&d.path().join("other")).await.unwrap();
    let loaded = other.load(&saved, &CopyOptions::default()).await.unwrap();
    // A docker-archive is an oci-archive too here: each image named once all the same.
    assert_eq!(
        loaded,
        [Loaded::Named("img:0".into()), Loaded::Named("img:1".into())]
    );
    for name in ["img:0", "img:1"] {
        assert_eq!(id_of(&other, name).await, id_of(&store, name).await);
    }
    assert_eq!(other.list().await.unwrap().len(), 2);
}

#[tokio::test]
async fn push_writes_the_named_image_to_the_remote() {
    let (_d, store, mirror) = fixture().await;
    let opts = CopyOptions::default();
    store.pull(&mirror, "app:1", &opts, false).await.unwrap();
    store.tag("app:1", "app:pushed").await.unwrap();
    let d = store.push(&mirror, "app:pushed", &opts).await.unwrap();
    let there = ReferenceStore::resolve(&mirror.0, "pushed").await.unwrap();
    assert_eq!(there.digest(), d.digest());
    assert!(matches!(
        store.push(&mirror, "app:absent", &opts).await,
        Err(Error::NoSuchImage(_))
    ));
}

#[tokio::test]
async fn import_applies_changes_and_refuses_what_is_not_a_tar() {
    let (_d, store, _) = fixture().await;
    let rootfs = tar(&[E::dir("bin"), E::file("bin/app", b"#!app").mode(0o755)]);
    let changes = vec![
        r#"CMD ["/bin/app", "--serve"]"#.to_owned(),
        "ENV MODE=prod".to_owned(),
        "WORKDIR /srv".to_owned(),
    ];
    store
        .import(&rootfs[..], Some("local/imported:1"), &changes)
        .await
        .unwrap();
    let run = store
        .image_for_run("local/imported:1", None, None, |_| {})
        .await
        .unwrap();
    let c = run.config.config().clone().unwrap();
    assert_eq!(
        c.cmd().clone().unwrap(),
        ["/bin/app".to_owned(), "--serve".to_owned()]
    );
    assert!(c.env().clone().unwrap().contains(&"MODE=prod".to_owned()));
    assert_eq!(c.working_dir().as_deref(), Some("/srv"));
    assert!(matches!(
        store
            .import(&rootfs[..], Some("local/bad:1"), &["FROB x".to_owned()])
            .await,
        Err(Error::InvalidChange { .. })
    ));
    // docker's `import --platform`: the image is that platform's.
    let arm: oci_rs_image::PlatformSpec = "linux/arm64/v8".parse().unwrap();
    store
        .import_for(&rootfs[..], Some("local/arm:1"), &[], &arm)
        .await
        .unwrap();
    let run = store
        .image_for_run("local/arm:1", Some(&arm), None, |_| {})
        .await
        .unwrap();
    assert_eq!(run.config.architecture().to_string(), "arm64");
    assert_eq!(run.config.variant().as_deref(), Some("v8"));
    let junk = vec![0x42u8; 4096];
    assert!(store
        .import(&junk[..], Some("local/junk:1"), &[])
        .await
        .is_err());
    assert!(store.find("local/junk:1").await.is_err());
    // Not in the store and no remote: a typed error, nothing pulled.
    assert!(matches!(
        store.image_for_run("absent:1", None, None, |_| {}).await,
        Err(Error::NoSuchImage(_))
    ));
}

#[tokio::test]
async fn a_short_name_is_found_under_each_name_the_store_is_given_for_it() {
    let (d, store, mirror) = fixture().await;
    store
        .pull(
            &mirror,
            "example.org/team/app:1",
            &CopyOptions::default(),
            false,
        )
        .await
        .unwrap();
    // As docker: a short name is Docker Hub's, not here.
    assert!(matches!(
        store.find("team/app:1").await,
        Err(Error::NoSuchImage(_))
    ));
    let store = ImageStore::open(&d.path().join("data"))
        .await
        .unwrap()
        .with_short_names(std::sync::Arc::new(|n: &str| {
            vec![format!("elsewhere.org/{n}"), format!("example.org/{n}")]
        }));
    let found = store.find("team/app:1").await.unwrap();
    assert_eq!(
        found.reference.unwrap().to_string(),
        "example.org/team/app:1"
    );
    assert!(!found.by_id);
    assert!(matches!(
        store.find("team/absent:1").await,
        Err(Error::NoSuchImage(_))
    ));
}

#[tokio::test]
async fn an_image_without_a_name_is_untagged_until_tagged_removed_or_pruned() {
    let (_d, store, _) = fixture().await;
    let untagged = |n: u8| tar(&[E::file("f", &[n][..])]);
    let import = |n: u8| {
        let store = &store;
        async move {
            let d = store.import(&untagged(n)[..], None, &[]).await.unwrap();
            (d.clone(), store.image_id(&d).await.unwrap())
        }
    };
    let (first, id) = import(1).await;
    let hex = id.strip_prefix("sha256:").unwrap().to_owned();
    // docker's dangling image: `<none> <none>` in the list, found by its id or a prefix.
    let rows = store.list().await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].repository.as_str(), rows[0].tag.as_str()),
        ("<none>", "<none>")
    );
    assert_eq!(rows[0].id, id);
    let found = store.find(&hex[..12]).await.unwrap();
    assert!(found.by_id && found.reference.is_none() && found.names.is_empty());
    assert_eq!(found.desc.digest(), first.digest());
    store
        .image_for_run(&hex[..12], None, None, |_| {})
        .await
        .unwrap();
    let inspect = store.inspect(&id).await.unwrap();
    assert!(inspect.repo_tags.is_empty() && inspect.repo_digests.is_empty());
    // docker's Size: unpacked, as `images` shows it (not the compressed blobs').
    assert_eq!(inspect.size, store.list().await.unwrap()[0].size);
    assert_ne!(inspect.size, store.list().await.unwrap()[0].compressed_size);
    // Kept by gc, as a named image is.
    store.gc().await.unwrap();
    store.layout().blob(&first).await.unwrap();
    // Tagged, it is listed by its name alone; its last name removed, it goes (docker's rmi).
    store.tag(&hex, "named:1").await.unwrap();
    let rows = store.list().await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].repository, "named");
    store.remove(&["named:1".to_owned()], false).await.unwrap();
    assert!(store.list().await.unwrap().is_empty());
    assert!(matches!(store.find(&hex).await, Err(Error::NoSuchImage(_))));
    assert!(store.layout().blob(&first).await.is_err(), "kept after rmi");
    // rmi by id removes an untagged image.
    let (_, second) = import(2).await;
    store
        .remove(&[second[7..19].to_owned()], false)
        .await
        .unwrap();
    assert!(store.list().await.unwrap().is_empty());
    // prune removes untagged images (by id, docker's `deleted:`) and keeps named ones.
    let (third, third_id) = import(3).await;
    import_one(&store, "kept:1", "kept").await;
    let pruned = store.prune(false).await.unwrap();
    assert_eq!(pruned.deleted, [third_id]);
    assert!(pruned.untagged.is_empty(), "{pruned:?}");
    assert!(pruned.bytes_freed > 0);
    assert!(
        store.layout().blob(&third).await.is_err(),
        "kept after prune"
    );
    let rows = store.list().await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].repository, "kept");
    // An entry whose manifest is gone (a broken store) breaks neither the list nor a
    // lookup by id, and a prune takes it away.
    let ghost = oci_rs_image::oci_spec::image::DescriptorBuilder::default()
        .media_type(oci_rs_image::oci_spec::image::MediaType::ImageManifest)
        .digest(oci_rs_image::parse_digest(&format!("sha256:{}", "ab".repeat(32))).unwrap())
        .size(100u64)
        .build()
        .unwrap();
    store.keep_untagged(&ghost).await.unwrap();
    assert_eq!(store.list().await.unwrap().len(), 1);
    let kept_id = rows[0].id.clone();
    store.find(&kept_id["sha256:".len()..][..12]).await.unwrap();
    let pruned = store.prune(false).await.unwrap();
    assert_eq!(pruned.deleted, [ghost.digest().to_string()]);
}

#[tokio::test]
async fn rmi_and_prune_keep_what_a_container_was_made_from_and_commit_reads_it() {
    if !is_root() {
        eprintln!("skipping: a container snapshot keeps files of other owners: root only");
        return;
    }
    let (_d, store, mirror) = fixture().await;
    let opts = CopyOptions::default();
    store.pull(&mirror, "app:1", &opts, true).await.unwrap();
    let run = store
        .image_for_run("app:1", None, None, |_| {})
        .await
        .unwrap();
    let mount = store
        .snapshots()
        .prepare("c1", store.layout(), &run.manifest, false)
        .await
        .unwrap();
    std::fs::write(mount.rootfs.join("made-here"), b"x").unwrap();
    // One of two names is only untagged (docker's rule), whoever uses the image.
    store.tag("app:1", "app:other").await.unwrap();
    let removed = store
        .remove(&["app:other".to_owned()], false)
        .await
        .unwrap();
    assert_eq!(removed.untagged.len(), 1, "{removed:?}");
    assert!(
        removed.deleted.is_empty(),
        "another name keeps it: {removed:?}"
    );
    match store.remove(&["app:1".to_owned()], false).await {
        Err(Error::ImageInUse { image, container }) => {
            assert_eq!((image.as_str(), container.as_str()), ("app:1", "c1"));
        }
        other => panic!("rmi of a used image: {other:?}"),
    }
    // prune -a leaves it too; forced, it loses its name but not its content.
    let removed = store.prune(true).await.unwrap();
    assert!(removed.untagged.is_empty(), "{removed:?}");
    store.remove(&["app:1".to_owned()], true).await.unwrap();
    // docker's: the image stays, untagged, found by its id.
    let rows = store.list().await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].repository.as_str(), rows[0].tag.as_str()),
        ("<none>", "<none>")
    );
    store.find(&rows[0].id).await.unwrap();
    let how = CommitOptions {
        message: Some("a message".into()),
        changes: vec!["CMD [\"cat\", \"/made-here\"]".into()],
        ..CommitOptions::default()
    };
    // Without a name the commit is untagged, kept while the container uses its base, and
    // found by its id.
    let plain = store.commit("c1", None, &how).await.unwrap();
    let plain_id = store.image_id(&plain).await.unwrap();
    assert!(store
        .list()
        .await
        .unwrap()
        .iter()
        .any(|r| r.id == plain_id && r.tag == "<none>"));
    assert_eq!(store.history(&plain_id).await.unwrap().len(), 3);
    store
        .commit("c1", Some("app:committed"), &how)
        .await
        .unwrap();
    let history = store.history("app:committed").await.unwrap();
    assert_eq!(history[0].created_by, "oci commit c1");
    assert_eq!(history[0].comment, "a message");
    assert_eq!(history.len(), 3);
    let mut tar_out = Vec::new();
    tar_out = store.export("c1", tar_out).await.unwrap();
    assert!(tar_out.windows(9).any(|w| w == b"made-here"));
    store.snapshots().remove("c1").unwrap();
    // The archive round trip: save, then load into a fresh store.
    let saved = _d.path().join("saved.tar");
    let w = oci_rs_image::ArchiveWriter::create(&saved, oci_rs_image::ArchiveFormat::Docker)
        .await
        .unwrap();
    store
        .save(&w, &["app:committed".to_owned()], &opts)
        .await
        .unwrap();
    let other = ImageStore::open(&_d.path().join("other")).await.unwrap();
    let loaded = other.load(&saved, &opts).await.unwrap();
    assert_eq!(loaded, [Loaded::Named("app:committed".into())]);
}

#[tokio::test]
async fn manifest_lists_name_each_platform_and_unpack_applies_the_hosts_image() {
    let (d, store, mirror) = fixture().await;
    let opts = CopyOptions::default();
    store.pull(&mirror, "app:1", &opts, false).await.unwrap();
    store.pull(&mirror, "app:2", &opts, false).await.unwrap();
    let list = store
        .manifest_create("app:list", &["app:1".to_owned()], false)
        .await
        .unwrap();
    // A second create of the same list must amend it.
    assert!(matches!(
        store.manifest_create("app:list", &[], false).await,
        Err(Error::ListExists(_))
    ));
    let amended = store
        .manifest_create("app:list", &["app:2".to_owned()], true)
        .await
        .unwrap();
    assert_ne!(amended.digest(), list.digest());
    store
        .manifest_annotate("app:list", "app:2", None, Some("arm64"), Some("v8"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .manifest_annotate("app:list", "local/other:1", None, None, None)
            .await,
        Err(Error::NoSuchImage(_))
    ));
    let index = store.find("app:list").await.unwrap();
    let m = oci_rs_image::adapter::manifest(store.layout(), &index.desc)
        .await
        .unwrap();
    let platforms: Vec<String> = m
        .as_index()
        .unwrap()
        .manifests()
        .iter()
        .map(|e| {
            let p = e.platform().clone().unwrap();
            format!(
                "{}/{}",
                p.architecture(),
                p.variant().clone().unwrap_or_default()
            )
        })
        .collect();
    let host = oci_rs_image::PlatformSpec::host().architecture;
    assert_eq!(platforms, [format!("{host}/"), "arm64/v8".to_owned()]);
    // unpack: the host's image of the list, into DIR/rootfs under a private DIR.
    let out = d.path().join("unpacked");
    let (layers, _) = store.unpack("app:list", &out, false).await.unwrap();
    assert_eq!(layers, 2);
    assert_eq!(
        std::fs::read_to_string(out.join("rootfs/etc/motd")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("rootfs/1.txt")).unwrap(),
        "one"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}

// What a hostile or broken archive, image or stream, or another local user, meets.

#[tokio::test]
async fn unpacked_tree_is_out_of_other_users_reach_unless_asked() {
    use std::os::unix::fs::PermissionsExt;
    let (d, store, mirror) = fixture().await;
    store
        .pull(&mirror, "app:1", &CopyOptions::default(), false)
        .await
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let target = d.path().join("unpacked");
    store.unpack("app:1", &target, false).await.unwrap();
    assert_eq!(mode(&target), 0o700);
    assert!(target.join("rootfs/etc/motd").is_file());
    // A directory that is there already, open to everyone, is closed before the tree goes in.
    let existing = d.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o755)).unwrap();
    store.unpack("app:1", &existing, false).await.unwrap();
    assert_eq!(mode(&existing), 0o700);
    assert!(existing.join("rootfs/etc/motd").is_file());
    // Asked for: the layers straight into the directory, no private parent.
    let public = d.path().join("public");
    store.unpack("app:1", &public, true).await.unwrap();
    assert!(public.join("etc/motd").is_file());
    assert!(!public.join("rootfs").exists());
}

// Silently wrong: an oci-archive naming its images by bare tags loaded nothing and
// succeeded; a multi-platform one kept only the host's image.

#[tokio::test]
async fn oci_archive_with_bare_tags_and_platforms_loads_what_is_there() {
    use oci_rs_image::oci_spec::image::{ImageIndexBuilder, MediaType, PlatformBuilder};
    use oci_rs_image::{ManifestKind, ManifestRef, MemoryStore, PlatformFilter};
    let dir = tempfile::tempdir().unwrap();
    // Two platforms of one image and an index over them, in an oci-archive whose index
    // names the index by the bare tag "latest" (as umoci and skopeo do).
    let archive = dir.path().join("multi.tar");
    let source = MemoryStore::new();
    let layer = tar(&[E::dir("etc"), E::file("etc/motd", b"hello\n")]);
    let mut descs = Vec::new();
    let mut digests = Vec::new();
    let mut images = Vec::new();
    for arch in ["amd64", "arm64"] {
        let mut b = ImageBuilder::new("linux", arch).cmd(["sh"]);
        b.add_layer_tar(&source, &mut &layer[..], Compression::Gzip, "import")
            .await
            .unwrap();
        let m = b.build(&source).await.unwrap();
        let mut d = m.descriptor();
        d.set_platform(Some(
            PlatformBuilder::default()
                .os("linux")
                .architecture(arch)
                .build()
                .unwrap(),
        ));
        digests.push(m.digest().clone());
        descs.push(d);
        images.push(m);
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(descs)
        .build()
        .unwrap();
    let index = Manifest::from_index(&index, ManifestKind::OciIndex).unwrap();
    source.put_manifest(&index, Some("latest")).await.unwrap();
    let w = oci_rs_image::ArchiveWriter::create(&archive, oci_rs_image::ArchiveFormat::Oci)
        .await
        .unwrap();
    oci_rs_image::copy(
        &source,
        &w,
        &ManifestRef::Tag("latest".into()),
        &CopyOptions::default()
            .platforms(PlatformFilter::All)
            .tag("latest"),
    )
    .await
    .unwrap();
    let store = ImageStore::open(&dir.path().join("data")).await.unwrap();
    let loaded = store.load(&archive, &CopyOptions::default()).await.unwrap();
    // Unnamed (a bare tag says nothing of the repository): the index, by its id.
    assert_eq!(loaded, [Loaded::Id(index.digest().to_string())]);
    // Both platforms' manifests are in the store.
    for d in digests {
        store
            .layout()
            .manifest(&ManifestRef::Digest(d.clone()))
            .await
            .unwrap_or_else(|e| panic!("{d} was not loaded: {e}"));
    }
    // An archive with no image at all is an error, not a silent success: a tar of
    // something else,
    let before = store.list().await.unwrap().len();
    let other = dir.path().join("other.tar");
    std::fs::write(&other, tar(&[E::file("r.tar", b"not an image")])).unwrap();
    match store.load(&other, &CopyOptions::default()).await {
        Err(Error::Image(oci_rs_image::Error::InvalidArchive { .. })) => {}
        other => panic!("loading a tar that is no archive: {other:?}"),
    }
    // and an oci-archive whose index lists nothing.
    let empty = dir.path().join("empty.tar");
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let index = br#"{"schemaVersion":2,"manifests":[]}"#;
    std::fs::write(
        &empty,
        tar(&[E::file("oci-layout", layout), E::file("index.json", index)]),
    )
    .unwrap();
    match store.load(&empty, &CopyOptions::default()).await {
        Err(Error::EmptyArchive(path)) => assert_eq!(path, empty),
        other => panic!("loading an archive of no image: {other:?}"),
    }
    assert_eq!(store.list().await.unwrap().len(), before);
    // An archive that names none of its images: each is loaded, unnamed, by its id.
    let x = dir.path().join("x");
    std::fs::create_dir(&x).unwrap();
    let untar = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap();
    assert!(untar.success());
    let unnamed = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(images.iter().map(|m| m.descriptor()).collect::<Vec<_>>())
        .build()
        .unwrap();
    std::fs::write(x.join("index.json"), serde_json::to_vec(&unnamed).unwrap()).unwrap();
    let unnamed = dir.path().join("unnamed.tar");
    let retar = std::process::Command::new("tar")
        .arg("-C")
        .arg(&x)
        .arg("-cf")
        .arg(&unnamed)
        .arg(".")
        .status()
        .unwrap();
    assert!(retar.success());
    let fresh = ImageStore::open(&dir.path().join("fresh")).await.unwrap();
    let mut loaded = fresh.load(&unnamed, &CopyOptions::default()).await.unwrap();
    loaded.sort();
    let mut ids: Vec<Loaded> = images
        .iter()
        .map(|m| Loaded::Id(m.as_image().unwrap().config().digest().to_string()))
        .collect();
    ids.sort();
    assert_eq!(loaded, ids);
    // Each stays, untagged, as docker's load keeps it: listed, and found by its id after a gc.
    fresh.gc().await.unwrap();
    assert_eq!(fresh.list().await.unwrap().len(), images.len());
    for id in &ids {
        let Loaded::Id(id) = id else { unreachable!() };
        fresh.image_for_run(id, None, None, |_| {}).await.unwrap();
    }
}

#[tokio::test]
async fn unpack_refuses_a_config_with_fewer_diff_ids_than_layers() {
    use oci_rs_image::{BlobStoreExt, ManifestKind, ManifestRef};
    let (d, store, _) = fixture().await;
    let layer = tar(&[E::dir("etc"), E::file("etc/motd", b"hello\n")]);
    let desc = store
        .import(&layer[..], Some("local/good:1"), &[])
        .await
        .unwrap();
    // The same one-layer image whose config lists no diff_id.
    let layout = store.layout();
    let m = layout
        .manifest(&ManifestRef::Digest(desc.digest().clone()))
        .await
        .unwrap();
    let mut img = m.as_image().unwrap().clone();
    let cfg = oci_rs_image::read_config(layout, img.config())
        .await
        .unwrap();
    let mut cfg = serde_json::to_value(&cfg).unwrap();
    cfg["rootfs"]["diff_ids"] = serde_json::json!([]);
    let info = layout
        .put_bytes(serde_json::to_vec(&cfg).unwrap().into())
        .await
        .unwrap();
    let mut c = img.config().clone();
    c.set_digest(info.digest);
    c.set_size(info.size);
    img.set_config(c);
    let bad = Manifest::from_image(&img, ManifestKind::OciManifest).unwrap();
    let name = oci_rs_layer::store_name(&"local/bad:1".parse().unwrap());
    layout.put_manifest(&bad, Some(&name)).await.unwrap();
    let target = d.path().join("bad");
    let err = store
        .unpack("local/bad:1", &target, false)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidImage { .. }), "{err:?}");
    assert!(err.to_string().contains("0 diff_ids for 1 layers"), "{err}");
    // Nothing of the image was applied.
    assert!(!target.join("rootfs/etc").exists());
}

/// `data` compressed by the `zstd` program as one frame.
fn zstd_frame(data: &[u8]) -> Vec<u8> {
    use std::process::{Command, Stdio};
    let mut c = Command::new("zstd")
        .args(["-q", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let data = data.to_vec();
    let w = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data).unwrap());
    let out = c.wait_with_output().unwrap();
    w.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

#[tokio::test]
async fn import_reads_every_zstd_frame_of_a_stream() {
    if std::process::Command::new("zstd")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: zstd is missing (scripts/test.sh installs it)");
        return;
    }
    let (d, store, _) = fixture().await;
    // A program of 256 KiB (bytes that do not compress away) and links to it after it.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let program: Vec<u8> = (0..256 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let tools = ["cat", "grep", "id", "ls", "sh"];
    let mut entries = vec![E::dir("bin"), E::file("bin/busybox", &program).mode(0o755)];
    entries.extend(
        tools
            .iter()
            .map(|t| E::symlink(&format!("bin/{t}"), "busybox")),
    );
    let tar = tar(&entries);
    // Two frames, split inside the program: the second holds its end and every link.
    let (a, b) = tar.split_at(tar.len() / 2);
    let mut zst = zstd_frame(a);
    zst.extend(zstd_frame(b));
    // Read once, as a stream (a pipe's bytes, which nothing can seek in).
    store
        .import(&zst[..], Some("local/zst:1"), &[])
        .await
        .unwrap();
    let out = d.path().join("zst");
    store.unpack("local/zst:1", &out, false).await.unwrap();
    let bin = out.join("rootfs/bin");
    assert!(std::fs::read(bin.join("busybox")).unwrap() == program);
    for t in tools {
        assert_eq!(
            std::fs::read_link(bin.join(t)).unwrap(),
            std::path::Path::new("busybox"),
            "{t}"
        );
    }
}

// Pulls from a real registry (Debian's docker-registry, the CNCF distribution registry)
// through the registry client: each layer blob read once, stored (its digest checked) and
// unpacked (its DiffID checked) in the same pass; what that unpacks is what a pull then a
// snapshot of the image unpacks, and what a load unpacks; a blob the registry sends wrong
// leaves neither a blob nor a layer.

/// `docker-registry serve` on a free loopback port, its storage in a temporary directory;
/// stopped when dropped.
struct Registry {
    child: std::process::Child,
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    addr: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// `None` (saying why) when the registry is not installed.
    fn start() -> Option<Self> {
        const BIN: &str = "/usr/bin/docker-registry";
        if !std::path::Path::new(BIN).exists() {
            eprintln!("skipping: docker-registry is missing (scripts/test.sh installs it)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new(BIN)
            .arg("serve")
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "no registry on {addr}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Some(Self { child, dir, addr })
    }

    /// Where the registry keeps a blob's bytes (distribution's filesystem driver), to make
    /// it serve wrong ones: it does not check them when it reads.
    fn blob_file(&self, hex: &str) -> std::path::PathBuf {
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

/// 1 MiB of words in lines: text whose gzip is smaller the harder the compressor tries.
fn words() -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "layer", "blob", "digest", "tar", "image", "index", "config", "tag", "pull", "push",
        "store", "unpack", "registry", "manifest", "snapshot", "diff",
    ];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::new();
    while out.len() < 1 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % 16) as usize].as_bytes());
        out.push(if x >> 8 & 7 == 0 { b'\n' } else { b' ' });
    }
    out
}

/// A three-layer image in a registry: a base, 8 MiB of noise and 1 MiB of words, 200 small
/// files and a link.
struct Pushed {
    reg: Registry,
    dir: tempfile::TempDir,
    client: oci_rs_registry_client::Client,
    /// `ADDR/pu/three:1`.
    name: String,
    noise: Vec<u8>,
    /// The store it was built in and pushed from.
    build: ImageStore,
}

/// [`Pushed`], or `None` (saying why) when the registry is missing or this is not root (a
/// snapshot of the image keeps files of other owners).
async fn pushed() -> Option<Pushed> {
    if !is_root() {
        eprintln!("skipping: a container snapshot keeps files of other owners: root only");
        return None;
    }
    let reg = Registry::start()?;
    let dir = tempfile::tempdir().unwrap();
    let build = ImageStore::open(&dir.path().join("build")).await.unwrap();
    let mut noise = vec![0u8; 8 << 20];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut noise,
    )
    .unwrap();
    let mut small = vec![E::dir("small")];
    for i in 0..200 {
        small.push(E::file(&format!("small/f{i}"), format!("{i}\n").as_bytes()));
    }
    small.push(E::symlink("small/link", "f7"));
    let layers = [
        (
            tar(&[
                E::dir("etc"),
                E::file("etc/motd", b"hello\n"),
                E::dir("bin"),
                E::file("bin/tool", b"#!tool").mode(0o4755),
            ]),
            "ADD base /",
        ),
        (
            tar(&[E::file("noise", &noise), E::file("words", &words())]),
            "COPY noise words /",
        ),
        (tar(&small), "COPY small /small/"),
    ];
    let arch = oci_rs_image::PlatformSpec::host().architecture;
    let mut b = ImageBuilder::new("linux", &arch).cmd(["sh"]);
    let layout = build.layout();
    for (bytes, how) in &layers {
        b.add_layer_tar(layout, &mut &bytes[..], Compression::Gzip, how)
            .await
            .unwrap();
    }
    let m = b.build(layout).await.unwrap();
    let name = format!("{}/pu/three:1", reg.addr);
    let stored = oci_rs_layer::store_name(&name.parse().unwrap());
    ReferenceStore::set(layout, &stored, &m.descriptor())
        .await
        .unwrap();
    let client = oci_rs_registry_client::Client::builder().build().unwrap();
    build
        .push(&client, &name, &CopyOptions::default())
        .await
        .unwrap();
    Some(Pushed {
        reg,
        dir,
        client,
        name,
        noise,
        build,
    })
}

fn layer_dirs(store: &ImageStore) -> Vec<std::path::PathBuf> {
    let mut v: Vec<std::path::PathBuf> =
        std::fs::read_dir(store.data_dir().join("snapshots/layers"))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
    v.sort();
    v
}

/// The inode of each layer directory: the same after a snapshot that unpacked nothing.
fn inodes(store: &ImageStore) -> Vec<u64> {
    use std::os::unix::fs::MetadataExt;
    layer_dirs(store)
        .iter()
        .map(|d| std::fs::metadata(d).unwrap().ino())
        .collect()
}

/// Temporary directories of unpacks, left in the layers' directory.
fn leftovers(store: &ImageStore) -> Vec<std::path::PathBuf> {
    layer_dirs(store)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

/// Every path of a tree but its root: mode, owner and bytes (a link's target).
fn tree(dir: &std::path::Path) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
    common::snapshot(dir)
        .into_iter()
        .filter(|(path, _)| !path.is_empty())
        .map(|(path, s)| (path, s.mode, s.uid, s.gid, s.content))
        .collect()
}

/// Two stores hold the same unpacked layers: the same directories (by DiffID), with trees
/// equal in mode, owner, bytes and link targets.
fn assert_same_layers(x: &ImageStore, y: &ImageStore) {
    let (xs, ys) = (layer_dirs(x), layer_dirs(y));
    assert_eq!(xs.len(), ys.len(), "{xs:?} {ys:?}");
    for (a, b) in xs.iter().zip(&ys) {
        assert_eq!(a.file_name(), b.file_name());
        assert!(tree(a) == tree(b), "{} differs", a.display());
    }
}

/// Every blob file of the store's layout is named by its content, and index.json parses:
/// temporaries are never blobs.
fn verify_layout(store: &ImageStore) {
    let dir = store.data_dir().join("images");
    let index = std::fs::read(dir.join("index.json")).unwrap();
    let _: serde_json::Value = serde_json::from_slice(&index).unwrap();
    for e in std::fs::read_dir(dir.join("blobs/sha256"))
        .into_iter()
        .flatten()
    {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let bytes = std::fs::read(e.path()).unwrap();
        assert_eq!(
            oci_rs_image::sha256(&bytes).digest(),
            name,
            "a blob does not match its name"
        );
    }
}

/// A container snapshot `id` of the image `name` (what a run mounts): its root filesystem.
async fn snapshot(store: &ImageStore, name: &str, id: &str) -> std::path::PathBuf {
    let run = store.image_for_run(name, None, None, |_| {}).await.unwrap();
    store
        .snapshots()
        .prepare(id, store.layout(), &run.manifest, false)
        .await
        .unwrap()
        .rootfs
}

#[tokio::test]
async fn a_pull_with_unpack_gives_the_layers_a_pull_then_a_snapshot_unpacks() {
    let Some(img) = pushed().await else { return };
    let opts = CopyOptions::default();
    let open = |n: &str| {
        let data = img.dir.path().join(n);
        async move { ImageStore::open(&data).await }
    };
    // Streaming: a pull with unpack, then a snapshot finds every layer unpacked.
    let a = open("a").await.unwrap();
    a.pull(&img.client, &img.name, &opts, true).await.unwrap();
    verify_layout(&a);
    assert_eq!(layer_dirs(&a).len(), 3, "{:?}", layer_dirs(&a));
    let before = inodes(&a);
    let rootfs = snapshot(&a, &img.name, "c1").await;
    assert_eq!(
        std::fs::read_to_string(rootfs.join("small/link")).unwrap(),
        "7\n"
    );
    assert_eq!(before, inodes(&a), "the snapshot unpacked a layer again");

    // The image of a run that is not here yet streams too: pulled and unpacked at once.
    let b = open("b").await.unwrap();
    let mut pulls = Vec::new();
    let run = b
        .image_for_run(&img.name, None, Some((&img.client, &opts)), |r| {
            pulls.push(r.to_string())
        })
        .await
        .unwrap();
    assert_eq!(pulls, std::slice::from_ref(&img.name));
    assert_eq!(layer_dirs(&b).len(), 3, "{:?}", layer_dirs(&b));
    let before = inodes(&b);
    let mount = b
        .snapshots()
        .prepare("c1", b.layout(), &run.manifest, false)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_dir(mount.rootfs.join("small"))
            .unwrap()
            .count(),
        201
    );
    assert_eq!(before, inodes(&b), "the snapshot unpacked a layer again");
    verify_layout(&b);
    // Found now: no second pull.
    b.image_for_run(&img.name, None, Some((&img.client, &opts)), |_| {
        panic!("pulled again")
    })
    .await
    .unwrap();

    // The other way: a plain pull, then the snapshot unpacks from the store.
    let c = open("c").await.unwrap();
    c.pull(&img.client, &img.name, &opts, false).await.unwrap();
    assert!(layer_dirs(&c).is_empty());
    snapshot(&c, &img.name, "c1").await;
    assert_same_layers(&a, &c);
    assert_same_layers(&b, &c);
    let noise = layer_dirs(&a)
        .into_iter()
        .find(|d| d.join("noise").exists())
        .unwrap();
    assert!(std::fs::read(noise.join("noise")).unwrap() == img.noise);
    // The image is in the store as a pull leaves it.
    assert_eq!(a.list().await.unwrap(), c.list().await.unwrap());
    assert_eq!(b.list().await.unwrap(), c.list().await.unwrap());
    for s in [&a, &b, &c] {
        assert!(leftovers(s).is_empty(), "{:?}", leftovers(s));
        s.snapshots().remove("c1").unwrap();
    }
}

/// `e` and its causes, in one line.
fn chain(e: &Error) -> String {
    oci_rs_image::chain(e)
}

/// Whether `e`'s chain holds an integrity error of the image crate (a digest or size that
/// is not the descriptor's).
fn is_integrity(e: &Error) -> bool {
    let mut at: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = at {
        let layer = s
            .downcast_ref::<Error>()
            .or_else(|| s.downcast_ref::<Box<Error>>().map(|b| &**b));
        let image = s.downcast_ref::<oci_rs_image::Error>().or(match layer {
            Some(Error::Image(i)) => Some(i),
            _ => None,
        });
        if image.is_some_and(oci_rs_image::Error::is_integrity) {
            return true;
        }
        at = s.source();
    }
    false
}

#[tokio::test]
async fn a_blob_the_registry_sends_wrong_leaves_no_blob_and_no_layer() {
    let Some(img) = pushed().await else { return };
    let opts = CopyOptions::default();
    // The noise layer (the largest), served with one byte changed in its middle: the same
    // size, a wrong digest, and a gzip stream that no longer decompresses cleanly.
    let run = img
        .build
        .image_for_run(&img.name, None, None, |_| {})
        .await
        .unwrap();
    let noise = run
        .manifest
        .as_image()
        .unwrap()
        .layers()
        .iter()
        .max_by_key(|l| l.size())
        .unwrap()
        .clone();
    let hex = noise.digest().digest().to_owned();
    let file = img.reg.blob_file(&hex);
    let mut bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes.len() as u64, noise.size());
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&file, &bytes).unwrap();
    // Refused alike by a pull with unpack and by the pull of a run's image.
    let nothing_of_it_kept = |store: &ImageStore, what: &str| {
        let blob = store.data_dir().join("images/blobs/sha256").join(&hex);
        assert!(!blob.exists(), "{what}: the wrong blob was stored");
        verify_layout(store);
        // No layer made from it, and nothing half-made left.
        assert!(
            leftovers(store).is_empty(),
            "{what}: {:?}",
            leftovers(store)
        );
        for d in layer_dirs(store) {
            assert!(!d.join("noise").exists(), "{what}: {}", d.display());
        }
    };
    for what in ["pull", "run"] {
        let store = ImageStore::open(&img.dir.path().join(what)).await.unwrap();
        let err = match what {
            "pull" => store
                .pull(&img.client, &img.name, &opts, true)
                .await
                .unwrap_err(),
            _ => store
                .image_for_run(&img.name, None, Some((&img.client, &opts)), |_| {})
                .await
                .unwrap_err(),
        };
        assert!(is_integrity(&err), "{what}: {}", chain(&err));
        assert!(chain(&err).contains(&hex), "{what}: {}", chain(&err));
        nothing_of_it_kept(&store, what);
        assert!(matches!(
            store.find(&img.name).await,
            Err(Error::NoSuchImage(_))
        ));
    }
    // Worse: the same tar compressed again, harder (shorter) and faster (longer) than the
    // builder's default level. Each unpacks cleanly with the right DiffID; only the blob's
    // own size and digest say it is not the blob the manifest names, and the layer unpacked
    // from it must not become visible.
    bytes[mid] ^= 0x55;
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
        &mut plain,
    )
    .unwrap();
    for (what, level) in [("shorter", 9), ("longer", 1)] {
        let mut again = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        std::io::Write::write_all(&mut again, &plain).unwrap();
        let again = again.finish().unwrap();
        let (got, orig) = (again.len(), bytes.len());
        assert!(
            if level == 9 { got < orig } else { got > orig },
            "{what}: {got} bytes for {orig}"
        );
        std::fs::write(&file, &again).unwrap();
        let store = ImageStore::open(&img.dir.path().join(what)).await.unwrap();
        let err = store
            .pull(&img.client, &img.name, &opts, true)
            .await
            .unwrap_err();
        assert!(is_integrity(&err), "{what}: {}", chain(&err));
        assert!(chain(&err).contains(&hex), "{what}: {}", chain(&err));
        nothing_of_it_kept(&store, what);
    }
}

#[tokio::test]
async fn load_unpacks_as_it_loads() {
    let Some(img) = pushed().await else { return };
    let archive = img.dir.path().join("three.tar");
    let w = oci_rs_image::ArchiveWriter::create(&archive, oci_rs_image::ArchiveFormat::Docker)
        .await
        .unwrap();
    img.build
        .save(&w, std::slice::from_ref(&img.name), &CopyOptions::default())
        .await
        .unwrap();
    let loaded = ImageStore::open(&img.dir.path().join("loaded"))
        .await
        .unwrap();
    let names = loaded
        .load(&archive, &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(names, [Loaded::Named(img.name.clone())]);
    verify_layout(&loaded);
    let pulled = ImageStore::open(&img.dir.path().join("pulled"))
        .await
        .unwrap();
    pulled
        .pull(&img.client, &img.name, &CopyOptions::default(), true)
        .await
        .unwrap();
    assert_eq!(layer_dirs(&loaded).len(), 3);
    assert_same_layers(&loaded, &pulled);
    let before = inodes(&loaded);
    let rootfs = snapshot(&loaded, &img.name, "c1").await;
    assert_eq!(
        std::fs::read_to_string(rootfs.join("small/f3")).unwrap(),
        "3\n"
    );
    assert_eq!(
        before,
        inodes(&loaded),
        "the snapshot unpacked a layer again"
    );
    loaded.snapshots().remove("c1").unwrap();
}

/// A name that stands for another platform's image here (a pull for amd64 tagged it) is
/// not run as the platform asked for: with a registry, that platform's image is pulled (as
/// docker does); without one, a typed error names both platforms.
#[tokio::test]
async fn a_name_tagged_for_another_platform_fetches_the_one_asked_for() {
    let Some(reg) = Registry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let seed = ImageStore::open(&dir.path().join("seed")).await.unwrap();
    let rootfs = tar(&[E::dir("bin"), E::file("bin/app", b"#!app").mode(0o755)]);
    let (amd, arm): (oci_rs_image::PlatformSpec, oci_rs_image::PlatformSpec) = (
        "linux/amd64".parse().unwrap(),
        "linux/arm64".parse().unwrap(),
    );
    let list = format!("{}/multi/base:1", reg.addr);
    let (a, b) = (format!("{list}-amd64"), format!("{list}-arm64"));
    seed.import_for(&rootfs[..], Some(&a), &[], &amd)
        .await
        .unwrap();
    seed.import_for(&rootfs[..], Some(&b), &[], &arm)
        .await
        .unwrap();
    seed.manifest_create(&list, &[a, b.clone()], false)
        .await
        .unwrap();
    let client = oci_rs_registry_client::Client::builder().build().unwrap();
    seed.push(&client, &list, &CopyOptions::default())
        .await
        .unwrap();

    let store = ImageStore::open(&dir.path().join("store")).await.unwrap();
    let opts = CopyOptions::default();
    let remote: (&dyn oci_rs_image::Remote, &CopyOptions) = (&client, &opts);
    let first = store
        .image_for_run(&list, Some(&amd), Some(remote), |_| {})
        .await
        .unwrap();
    assert_eq!(first.config.architecture().to_string(), "amd64");
    // Without a registry: refused, naming both.
    let err = store
        .image_for_run(&list, Some(&arm), None, |_| {})
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::WrongPlatform { wanted, found, .. } if wanted.starts_with("linux/arm64") && found == "linux/amd64"),
        "{err}"
    );
    let mut pulled = false;
    let second = store
        .image_for_run(&list, Some(&arm), Some(remote), |_| pulled = true)
        .await
        .unwrap();
    assert!(pulled, "the arm64 image is pulled");
    assert_eq!(second.config.architecture().to_string(), "arm64");
    // A single-platform image of another platform than asked: refused, not run.
    seed.push(&client, &b, &CopyOptions::default())
        .await
        .unwrap();
    let s390x: oci_rs_image::PlatformSpec = "linux/s390x".parse().unwrap();
    let err = store
        .image_for_run(&b, Some(&s390x), Some(remote), |_| {})
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::WrongPlatform { wanted, found, .. } if wanted.starts_with("linux/s390x") && found.starts_with("linux/arm64")),
        "{err}"
    );
}

//! Builds whose steps need the engine's image store and real containers, checked in the
//! image they make: `WORKDIR` as BuildKit makes it, and destinations through links.

use crate::fixture::Fixture;
use crate::Test;
use oci_rs_runtime::{BuildOptions, BuildSources, DockerfileBuild};
use std::os::unix::fs::MetadataExt;

pub const TESTS: &[Test] = &[(
    "workdir_is_made_for_the_user_and_links_are_followed_inside_the_root",
    workdir_is_made_for_the_user_and_links_are_followed_inside_the_root,
)];

/// Builds `dockerfile` with `files` as its context, tagged `tag`; the image unpacked.
fn build(f: &Fixture, dockerfile: &str, files: &[(&str, &str)], tag: &str) -> tempfile::TempDir {
    let context = f
        .dir
        .path()
        .join(format!("context-{}", tag.replace(':', "-")));
    std::fs::create_dir_all(&context).unwrap();
    for (name, text) in files {
        std::fs::write(context.join(name), text).unwrap();
    }
    let opts = BuildOptions {
        tags: vec![tag.into()],
        ..BuildOptions::default()
    };
    let b = DockerfileBuild::new(
        &f.store,
        BuildSources::default(),
        dockerfile,
        Some(&context),
        opts,
        Box::new(|_| {}),
    )
    .unwrap();
    f.rt.block_on(b.build()).unwrap();
    let out = tempfile::tempdir_in(f.dir.path()).unwrap();
    f.rt.block_on(f.store.unpack(tag, out.path(), false))
        .unwrap();
    out
}

/// Issue 31 defects 3, 4 and 10: a `WORKDIR` or a `COPY` destination through a link that
/// dangles (absolute or relative) makes the link's target inside the root; a `WORKDIR` is
/// made owned by the current `USER` (its new parents too), so the next `RUN` as that user
/// can write there; and a `WORKDIR` no step uses is made all the same.
fn workdir_is_made_for_the_user_and_links_are_followed_inside_the_root(f: &Fixture) {
    let dockerfile = "FROM busybox:test\n\
        RUN ln -s /srv/app /app && ln -s ../opt/tool /rel && ln -s /../../../escape /up\n\
        WORKDIR /app/sub\n\
        RUN pwd > /tmp/pwd\n\
        USER 1000:1000\n\
        WORKDIR /tmp/u/work\n\
        RUN echo mine > made-by-user\n\
        USER 0\n\
        WORKDIR /unused/dir\n\
        COPY f /rel/deep/\n\
        COPY f /up/\n";
    let out = build(f, dockerfile, &[("f", "copied\n")], "workdirs:1");
    let root = out.path().join("rootfs");
    assert!(root.join("srv/app/sub").is_dir(), "WORKDIR through /app");
    assert_eq!(
        std::fs::read_to_string(root.join("tmp/pwd")).unwrap(),
        "/srv/app/sub\n",
        "the RUN ran in the link's target"
    );
    for dir in ["tmp/u", "tmp/u/work"] {
        let m = std::fs::metadata(root.join(dir)).unwrap();
        assert_eq!((m.uid(), m.gid()), (1000, 1000), "{dir}");
    }
    assert_eq!(
        std::fs::metadata(root.join("tmp")).unwrap().uid(),
        0,
        "an existing parent keeps its owner"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("tmp/u/work/made-by-user")).unwrap(),
        "mine\n"
    );
    assert!(
        root.join("unused/dir").is_dir(),
        "an unused WORKDIR is made"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("opt/tool/deep/f")).unwrap(),
        "copied\n",
        "a COPY destination through a relative link"
    );
    // A link that climbs above the root lands at the root's top, never outside it.
    assert_eq!(
        std::fs::read_to_string(root.join("escape/f")).unwrap(),
        "copied\n"
    );
    assert!(!f.dir.path().join("escape").exists());
    assert!(!std::path::Path::new("/escape").exists());
    // The image's config says the last WORKDIR; history has a line for each.
    let history = f.rt.block_on(f.store.history("workdirs:1")).unwrap();
    let workdirs = history
        .iter()
        .filter(|h| h.created_by.starts_with("WORKDIR "))
        .count();
    assert_eq!(workdirs, 3, "{history:?}");
}

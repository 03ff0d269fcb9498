//! The image verbs through the `oci` command line, for what only the command line does:
//! `images` columns, flags and human sizes, `history` columns and raw values, the lines
//! `rmi`, `image prune` and `load` print, `info` and `version` (and verbs that only read
//! making no data directory), output to a reader that goes away, errors printed once,
//! `--format` escaping, and a broken docker config ignored by verbs that reach no registry.
//! The image store behind them (ids and prefixes, history, prune, save and load) is tested
//! at the library level in oci-rs-layer's `tests/image_store.rs`, and commit of a running
//! container in oci-rs-runtime's `tests/engine/images.rs`.

#![allow(clippy::unwrap_used)]

use std::path::Path;

mod common;

const OCI: &str = env!("CARGO_BIN_EXE_oci");

/// A store with `n` one-layer images `img:0`..`img:{n-1}`, each with a different file.
fn store_with(dir: &Path, n: usize) -> common::Cli {
    let cli = common::Cli {
        oci: OCI,
        data: dir.join("data"),
    };
    for i in 0..n {
        let root = dir.join(format!("r{i}"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("f"), format!("image {i}\n")).unwrap();
        let tar = dir.join(format!("r{i}.tar"));
        common::tar_dir(&root, &tar);
        cli.ok(&[
            "import",
            tar.to_str().unwrap(),
            &format!("img:{i}"),
            "-c",
            r#"CMD ["sh"]"#,
        ]);
    }
    cli
}

/// `import` prints the image id, as docker does: the id `inspect` shows and finds.
#[test]
fn import_prints_the_image_id() {
    let dir = tempfile::tempdir().unwrap();
    let cli = store_with(dir.path(), 0);
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("f"), "f\n").unwrap();
    let tar = dir.path().join("root.tar");
    common::tar_dir(&root, &tar);
    let printed = cli.ok(&["import", "-m", "from a tar", tar.to_str().unwrap(), "imp:1"]);
    let printed = printed.trim();
    assert_eq!(cli.field("imp:1", "{{.Id}}"), printed);
    assert_eq!(cli.field("imp:1", "{{.Comment}}"), "from a tar");
    assert_eq!(cli.field(printed, "{{.Id}}"), printed);
    // Without a name: untagged, as docker's, listed as `<none>` and removed by a prune.
    std::fs::write(root.join("g"), "g\n").unwrap();
    common::tar_dir(&root, &tar);
    let untagged = cli.ok(&["import", tar.to_str().unwrap()]);
    let untagged = untagged.trim();
    let hex = &untagged["sha256:".len()..];
    assert_eq!(cli.field(&hex[..12], "{{.Id}}"), untagged);
    assert_eq!(cli.field(&hex[..12], "{{json .RepoTags}}"), "[]");
    let listed = cli.ok(&[
        "images",
        "--filter",
        "dangling=true",
        "--format",
        "{{.Repository}} {{.Tag}} {{.ID}}",
    ]);
    assert_eq!(listed.trim(), format!("<none> <none> {}", &hex[..12]));
    let out = cli.ok(&["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {untagged}")), "{out}");
    let listed = cli.ok(&["images", "--format", "{{.Repository}}"]);
    assert_eq!(listed.trim(), "imp");
}

fn id_of(cli: &common::Cli, name: &str) -> String {
    cli.field(name, "{{.Id}}")
        .trim_start_matches("sha256:")
        .to_owned()
}

#[test]
fn images_lists_docker_columns_with_human_sizes_and_times() {
    let dir = tempfile::tempdir().unwrap();
    let cli = store_with(dir.path(), 2);
    cli.ok(&["tag", "img:0", "other/name:v1"]);
    // docker's template fields: what the daemon did not count is N/A; Go's time printed.
    let fields = cli.ok(&[
        "images",
        "img:0",
        "--format",
        "{{.Containers}}|{{.SharedSize}}|{{.UniqueSize}}|{{.VirtualSize}}|{{.Size}}|{{.CreatedAt}}",
    ]);
    let f: Vec<&str> = fields.trim().split('|').collect();
    assert_eq!(f[..3], ["N/A", "N/A", "N/A"], "{fields}");
    assert_eq!(f[3], f[4], "{fields}");
    assert!(f[5].ends_with(" +0000 UTC") && f[5].len() == 29, "{fields}");
    let out = cli.ok(&["images"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|s| !s.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        "{out}"
    );
    let row = out.lines().find(|l| l.starts_with("other/name ")).unwrap();
    assert!(row.contains(" v1 "), "{row}");
    assert!(row.contains(&id_of(&cli, "img:0")[..12]), "{row}");
    assert!(
        row.contains("seconds ago") || row.contains("Less than a second ago"),
        "a real creation time after import: {row}"
    );
    // The unpacked size, as docker's: the layer is GNU tar's 10 KiB record, not its gzip.
    assert!(
        row.trim_end().ends_with(" 10.24kB"),
        "the unpacked size: {row}"
    );
    // -q: each id once (img:0 has two names).
    let q = cli.ok(&["images", "-q"]);
    assert_eq!(q.lines().count(), 2, "{q}");
    assert!(q.lines().all(|l| l.len() == 12));
    assert_eq!(
        cli.ok(&["images", "-q", "--no-trunc"])
            .lines()
            .next()
            .unwrap()
            .len(),
        71
    );
    // Filters, the reference argument, --digests and --format.
    let f = cli.ok(&[
        "images",
        "--filter",
        "reference=other/*",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    assert_eq!(f, "other/name:v1\n");
    assert_eq!(
        cli.ok(&["images", "--format", "{{.Tag}}", "img"])
            .lines()
            .count(),
        2
    );
    assert!(cli
        .ok(&["images", "--filter", "dangling=true", "-q"])
        .is_empty());
    let d = cli.ok(&["images", "--digests"]);
    assert!(
        d.lines().next().unwrap().contains("DIGEST") && d.contains("sha256:"),
        "{d}"
    );
    let err = cli.fails(&["images", "--filter", "colour=red"]);
    assert!(err.contains("unsupported filter"), "{err}");
    // docker's management spellings.
    assert_eq!(cli.ok(&["image", "ls", "-q"]), q);
}

#[test]
fn history_prints_docker_columns_human_sizes_and_raw_times() {
    let dir = tempfile::tempdir().unwrap();
    let cli = store_with(dir.path(), 1);
    let id = id_of(&cli, "img:0");
    let out = cli.ok(&["history", "img:0"]);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    for col in ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"] {
        assert!(header.contains(col), "{header}");
    }
    let row = lines.next().unwrap();
    assert!(row.starts_with(&id[..12]), "{row}");
    assert!(row.contains("imported") && row.contains("ago"), "{row}");
    assert!(
        row.contains(" 10.24kB "),
        "the layer's unpacked size: {row}"
    );
    // Raw values with --human=false.
    let raw = cli.ok(&["history", "--human=false", "img:0"]);
    assert!(
        raw.contains("T") && raw.contains('Z'),
        "an RFC 3339 time: {raw}"
    );
    // -q: the ids alone, the image named by a prefix of its id.
    assert_eq!(cli.ok(&["history", "-q", &id[..8]]).trim(), &id[..12]);
}

#[test]
fn rmi_and_image_prune_print_what_they_untagged_and_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let cli = store_with(dir.path(), 2);
    let id = id_of(&cli, "img:0");
    cli.ok(&["tag", &id[..12], "by-id:1"]);
    let out = cli.ok(&["rmi", "-f", &id[..12]]);
    assert!(
        out.contains("Untagged: img:0") && out.contains("Untagged: by-id:1"),
        "{out}"
    );
    assert!(out.ends_with(&format!("Deleted: sha256:{id}\n")), "{out}");
    let out = cli.ok(&["image", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    let id1 = id_of(&cli, "img:1");
    cli.ok(&["tag", "img:1", "again:1"]);
    let out = cli.ok(&["image", "prune", "-a", "-f"]);
    assert!(
        out.contains("untagged: img:1") && out.contains("untagged: again:1"),
        "{out}"
    );
    // Its last name gone, the image is: one `deleted:` line for it.
    assert_eq!(
        out.matches(&format!("deleted: sha256:{id1}")).count(),
        1,
        "{out}"
    );
    let reclaimed = out.lines().last().unwrap();
    assert!(
        reclaimed.starts_with("Total reclaimed space: ") && !reclaimed.ends_with(": 0B"),
        "{reclaimed}"
    );
}

#[test]
fn load_prints_each_image_once_and_info_and_version_answer() {
    let dir = tempfile::tempdir().unwrap();
    let cli = store_with(dir.path(), 2);
    let tar = dir.path().join("two.tar");
    cli.ok(&["save", "-o", tar.to_str().unwrap(), "img:0", "img:1"]);
    let other = common::Cli {
        oci: OCI,
        data: dir.path().join("other"),
    };
    let out = other.ok(&["load", "-i", tar.to_str().unwrap()]);
    assert_eq!(out, "Loaded image: img:0\nLoaded image: img:1\n");
    let info = cli.ok(&["info"]);
    for line in [
        " Images: 2",
        " Containers: 0",
        " Cgroup Version: ",
        " Data Root: ",
    ] {
        assert!(info.contains(line), "{line}: {info}");
    }
    // version reads nothing, so it makes no data directory.
    let fresh = common::Cli {
        oci: OCI,
        data: dir.path().join("never-made"),
    };
    assert!(fresh.ok(&["version"]).contains(" Version: "));
    // Nor do the verbs that only read: they see an empty store.
    assert_eq!(fresh.ok(&["images", "-q"]), "");
    assert!(fresh.ok(&["ps", "-a"]).starts_with("CONTAINER ID"));
    assert!(fresh
        .fails(&["inspect", "img:0"])
        .contains("No such object: img:0"));
    assert!(fresh
        .fails(&["history", "img:0"])
        .contains("No such image: img:0"));
    assert!(fresh.ok(&["info"]).contains(" Images: 0"));
    assert!(!fresh.data.exists(), "a read made {}", fresh.data.display());
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let cli = store_with(dir.path(), 1);
    // Far more than a pipe holds, so the writer meets the closed pipe.
    let names: Vec<&str> = std::iter::repeat_n("img:0", 400).collect();
    let mut args = vec!["inspect"];
    args.extend(names);
    let mut child = cli
        .cmd(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{o:?}");
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// No clause of an error message appears twice (`what: why: why`), as it did when each
/// wrapping error printed its cause and also returned it from `source()`.
fn assert_reads_once(what: &str, stderr: &str) {
    let line = stderr.trim();
    let clauses: Vec<&str> = line
        .split(": ")
        .map(str::trim)
        .filter(|c| c.len() > 3)
        .collect();
    for (i, c) in clauses.iter().enumerate() {
        assert!(
            !clauses[i + 1..].contains(c),
            "{what}: {c:?} repeats in {line:?}"
        );
    }
}

#[test]
fn errors_the_cli_prints_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let cli = store_with(dir.path(), 1);
    let not_tar = dir.path().join("not.tar");
    std::fs::write(&not_tar, vec![7u8; 4096]).unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "transport",
            vec!["pull".into(), "127.0.0.1:1/nothing/here:1".into()],
        ),
        (
            "missing image",
            vec!["inspect".into(), "nothing:here".into()],
        ),
        (
            "missing archive",
            vec!["load".into(), "-i".into(), "/nonexistent/x.tar".into()],
        ),
        (
            "missing tar",
            vec!["import".into(), "/nonexistent/r.tar".into(), "x:1".into()],
        ),
        ("rmi", vec!["rmi".into(), "nothing:here".into()]),
        (
            "not a tar",
            vec!["import".into(), not_tar.display().to_string(), "x:1".into()],
        ),
        (
            "save into a missing directory",
            vec![
                "save".into(),
                "-o".into(),
                "/nonexistent/dir/out.tar".into(),
                "img:0".into(),
            ],
        ),
        (
            "layer apply onto a file",
            vec![
                "layer".into(),
                "apply".into(),
                file.display().to_string(),
                not_tar.display().to_string(),
            ],
        ),
        (
            "bad platform",
            vec![
                "pull".into(),
                "--platform".into(),
                "a/b/c/d".into(),
                "x".into(),
            ],
        ),
        ("history", vec!["history".into(), "nothing:here".into()]),
        (
            "restart policy",
            vec![
                "run".into(),
                "--restart".into(),
                "sometimes".into(),
                "img:0".into(),
            ],
        ),
        (
            "capability",
            vec![
                "run".into(),
                "--cap-add".into(),
                "NOPE".into(),
                "img:0".into(),
            ],
        ),
        (
            "tmpfs",
            vec!["run".into(), "--tmpfs".into(), "rel".into(), "img:0".into()],
        ),
        (
            "memory",
            vec![
                "run".into(),
                "-m".into(),
                "1k".into(),
                "img:0".into(),
                "true".into(),
            ],
        ),
    ];
    for (what, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = cli.fails(&args);
        assert!(!err.trim().is_empty(), "{what}: no message");
        assert_reads_once(what, &err);
        // A refused option names itself and the value.
        let refused_option = matches!(*what, "restart policy" | "capability" | "tmpfs");
        if let Some(flag) = args.iter().find(|a| refused_option && a.starts_with('-')) {
            let value = args[args.iter().position(|a| a == flag).unwrap() + 1];
            assert!(err.contains(&format!("{value:?}")), "{what}: {err}");
        }
        if *what == "memory" {
            assert!(err.contains("memory limit \"1024 bytes\""), "{err}");
        }
    }
}

/// A label an image carries is its own text: `--format` shows its control characters
/// escaped (no terminal escape sequence), and `{{json}}` gives the exact value.
#[test]
fn format_shows_an_images_escape_sequences_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let cli = common::Cli {
        oci: OCI,
        data: dir.path().join("data"),
    };
    let root = dir.path().join("r");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("f"), "f\n").unwrap();
    let tar = dir.path().join("r.tar");
    common::tar_dir(&root, &tar);
    cli.ok(&[
        "import",
        tar.to_str().unwrap(),
        "esc:1",
        "-c",
        "LABEL x=\x1b]0;pwned\x07\x1b[2J",
    ]);
    let shown = cli.ok(&["inspect", "--format", "{{.Config.Labels.x}}", "esc:1"]);
    assert_eq!(shown.trim_end(), "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J");
    let exact = cli.field("esc:1", "{{json .Config.Labels.x}}");
    assert_eq!(
        serde_json::from_str::<String>(&exact).unwrap(),
        "\x1b]0;pwned\x07\x1b[2J"
    );
    for args in [&["images"][..], &["history", "--no-trunc", "esc:1"]] {
        let out = cli.ok(args);
        assert!(!out.contains('\x1b'), "{args:?}: {out}");
    }
}

/// The registry client (docker's credentials, the TLS roots) is made only by a verb that
/// reaches a registry: a malformed docker config breaks `pull`, never `images`, `ps` or
/// `history`, and they read no certificate.
#[test]
fn verbs_that_reach_no_registry_ignore_a_broken_docker_config() {
    let dir = tempfile::tempdir().unwrap();
    let cli = store_with(dir.path(), 1);
    let config = dir.path().join("docker");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("config.json"), "{not json").unwrap();
    for args in [&["images"][..], &["ps", "-a"], &["history", "img:0"]] {
        let o = cli
            .cmd(args)
            .env("DOCKER_CONFIG", &config)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = cli
        .cmd(&["pull", "127.0.0.1:1/none:1"])
        .env("DOCKER_CONFIG", &config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("docker config"),
        "{err}"
    );
}

/// The machine's registry configuration (podman's `registries.conf`, named here by
/// `CONTAINERS_REGISTRIES_CONF` as podman reads it) reaches the verbs: a short name pulls
/// from the mirror configured for Docker Hub (a real registry; Docker Hub itself is not
/// reachable from CI), an alias names another image, and a blocked registry is refused.
#[test]
fn registries_conf_mirrors_aliases_and_blocked_registries_reach_pull_and_run() {
    if !common::have_registry() {
        return;
    }
    let mirror = common::Registry::start();
    let blocked = common::Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let seed = store_with(dir.path(), 1);
    let on_mirror = format!("{}/library/busybox:latest", mirror.addr);
    seed.ok(&["tag", "img:0", &on_mirror]);
    seed.ok(&["push", &on_mirror]);
    let other = format!("{}/corp/tool:2", mirror.addr);
    seed.ok(&["tag", "img:0", &other]);
    seed.ok(&["push", &other]);
    let conf = dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"{}\"\n\
             insecure = true\n\n[[registry]]\nlocation = \"{}\"\nblocked = true\n\n\
             [aliases]\n\"tool\" = \"{}/corp/tool\"\n",
            mirror.addr, blocked.addr, mirror.addr
        ),
    )
    .unwrap();
    let cli = common::Cli {
        oci: OCI,
        data: dir.path().join("fresh"),
    };
    let run = |args: &[&str]| {
        cli.cmd(args)
            .env("CONTAINERS_REGISTRIES_CONF", &conf)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&["pull", "busybox"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        id_of(&cli, "docker.io/library/busybox:latest"),
        id_of(&seed, "img:0"),
        "docker.io/library/busybox came from the mirror"
    );
    let out = run(&["pull", "tool:2"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(id_of(&cli, &other), id_of(&seed, "img:0"), "the alias");
    let out = run(&["pull", &format!("{}/any/thing:1", blocked.addr)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is blocked by the registry configuration"),
        "{err}"
    );
    // A configuration that does not read is an error naming the file.
    std::fs::write(&conf, "[[registry]\n").unwrap();
    let out = run(&["pull", "busybox"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("registries.conf"),
        "{err}"
    );
}

/// Each verb's `--help` says what that verb does (`logout` showed `login`'s text, and
/// `login` had none).
#[test]
fn login_and_logout_help_say_what_each_does() {
    let help = |verb: &str| {
        let o = std::process::Command::new(OCI)
            .args([verb, "--help"])
            .output()
            .unwrap();
        assert!(o.status.success());
        String::from_utf8(o.stdout).unwrap()
    };
    let login = help("login");
    assert!(
        login.starts_with("Check credentials against a registry"),
        "{login}"
    );
    let logout = help("logout");
    assert!(
        logout.starts_with("Remove the credentials") && !logout.contains("Check credentials"),
        "{logout}"
    );
}

/// What happens to images is in the events journal, as docker's image events: tag, untag,
/// import and delete, with the image's id and the name involved.
#[test]
fn image_changes_are_events() {
    let dir = tempfile::tempdir().unwrap();
    let cli = store_with(dir.path(), 1);
    let id = cli.field("img:0", "{{.Id}}");
    cli.ok(&["tag", "img:0", "again:1"]);
    cli.ok(&["rmi", "again:1", "img:0"]);
    let out = cli.ok(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--filter",
        "type=image",
        "--format",
        "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}",
    ]);
    let want = [
        format!("import {id} img:0"),
        format!("tag {id} again:1"),
        format!("untag {id} again:1"),
        format!("untag {id} img:0"),
        format!("delete {id} <no value>"),
    ];
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got, want, "{out}");
}

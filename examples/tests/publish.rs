//! What `cargo add` users get: the library crates' manifests are complete, and the
//! workspace's `rust-version` is true for the locked dependency graph.

#![allow(clippy::unwrap_used)]

use std::process::Command;

const LIBRARIES: [&str; 4] = [
    "oci-rs-image",
    "oci-rs-layer",
    "oci-rs-registry-client",
    "oci-rs-runtime",
];

fn metadata() -> serde_json::Value {
    let o = Command::new(env!("CARGO"))
        // The Linux graph (these crates are for Linux): offline, nothing to fetch.
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .arg("--filter-platform")
        .arg(format!("{}-unknown-linux-gnu", std::env::consts::ARCH))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn version(v: &str) -> (u64, u64) {
    let mut it = v.split('.').map(|x| x.parse::<u64>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

#[test]
fn rust_version_covers_every_locked_dependency() {
    let m = metadata();
    let packages = m["packages"].as_array().unwrap();
    let by_id: std::collections::HashMap<&str, &serde_json::Value> = packages
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p))
        .collect();
    let nodes: std::collections::HashMap<&str, &serde_json::Value> = m["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let mut todo: Vec<&str> = packages
        .iter()
        .filter(|p| LIBRARIES.contains(&p["name"].as_str().unwrap()))
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(todo.len(), 4);
    let ours = version(by_id[todo[0]]["rust_version"].as_str().unwrap());
    let mut seen = std::collections::HashSet::new();
    let mut needs = Vec::new();
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        if let Some(v) = by_id[id]["rust_version"].as_str() {
            needs.push((version(v), by_id[id]["name"].as_str().unwrap().to_owned()));
        }
        for d in nodes[id]["deps"].as_array().unwrap() {
            // Normal and build dependencies: what a user's build compiles.
            let used = d["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null() || k["kind"] == "build");
            if used {
                todo.push(d["pkg"].as_str().unwrap());
            }
        }
    }
    let (max, who) = needs.iter().max().unwrap();
    assert!(
        ours >= *max,
        "rust-version {ours:?} is older than {who}'s {max:?}: raise it in Cargo.toml"
    );
}

#[test]
fn library_manifests_are_complete() {
    let m = metadata();
    for p in m["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        if !LIBRARIES.contains(&name) {
            continue;
        }
        for field in [
            "description",
            "license",
            "readme",
            "documentation",
            "rust_version",
        ] {
            assert!(p[field].is_string(), "{name} has no {field}");
        }
        assert!(
            p["repository"].is_null(),
            "{name}: no placeholder repository"
        );
        assert!(
            !p["keywords"].as_array().unwrap().is_empty(),
            "{name}: keywords"
        );
        assert!(
            !p["categories"].as_array().unwrap().is_empty(),
            "{name}: categories"
        );
        // The library is named as the package.
        let lib = p["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "lib"))
            .unwrap();
        assert_eq!(lib["name"].as_str().unwrap(), name.replace('-', "_"));
        let dir = std::path::Path::new(p["manifest_path"].as_str().unwrap())
            .parent()
            .unwrap()
            .to_path_buf();
        for f in ["README.md", "LICENSE-APACHE", "LICENSE-MIT"] {
            assert!(dir.join(f).is_file(), "{name}: {f} missing");
        }
    }
}

/// One public path per item: each library's modules are private and its surface is
/// re-exported at the root, apart from the namespaces that are meant as such (oci-rs-image's
/// media type constants and its conformance suite, oci-rs-registry-client's server,
/// oci-rs-runtime's Engine API server and its `--format` templates), and
/// every crate re-exports the `oci_spec`
/// its signatures use.
#[test]
fn libraries_have_one_public_path_per_item() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in [
        "oci-image",
        "oci-layer",
        "oci-registry-client",
        "oci-runtime",
    ] {
        let lib = std::fs::read_to_string(root.join(dir).join("src/lib.rs")).unwrap();
        let public: Vec<&str> = lib
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub mod "))
            .map(|m| m.trim_end_matches(';'))
            .filter(|m| !(dir == "oci-image" && matches!(*m, "media" | "testing")))
            // The server half of the protocol is a namespace of its own (`server::Registry`
            // beside the client's root items), behind its feature.
            .filter(|m| !(dir == "oci-registry-client" && *m == "server"))
            // So is the Docker Engine API server over the engine (`api::EngineApi`).
            .filter(|m| !(dir == "oci-runtime" && *m == "api"))
            // And docker's `--format` (`format::Format` and each list's headers, as
            // `format::PS_HEADERS`), as oci-rs-image's media type constants are.
            .filter(|m| !(dir == "oci-runtime" && *m == "format"))
            .collect();
        assert!(public.is_empty(), "{dir}: public modules {public:?}");
        assert!(
            lib.lines().any(|l| l.trim() == "pub use oci_spec;"),
            "{dir} does not re-export oci_spec"
        );
    }
}

//! The container engine as an embedding program uses it, without any command line: busybox
//! images built into the image store, containers run from them by name, their logs, stop,
//! `rm` clean-up done by the monitor through the library, names, volumes, restart policies,
//! networks and published ports, builds, and what a hostile image or container can reach.
//! Real namespaces, overlay mounts, network devices and firewall rules: root only. Its own
//! `main` (harness = false), because the monitors it spawns are this program executed again.
//!
//! `cargo test --test engine -- WORD` runs the tests whose names contain WORD.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod basics;
mod builds;
mod containers;
mod fixture;
mod health;
mod images;
mod network;
mod sharing;
mod threats;

use fixture::Fixture;
use std::path::Path;

/// A test: its name and its body, given a fresh [`Fixture`].
pub type Test = (&'static str, fn(&Fixture));

fn main() {
    oci_rs_runtime::serve_if_requested();
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: running containers from overlay snapshots needs root");
        return;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: /bin/busybox (busybox-static) is not installed");
        return;
    }
    // This test program runs from its file on disk; sealing is tested in tests/sealed.rs.
    oci_rs_runtime::allow_unsealed();
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let all = [
        basics::TESTS,
        builds::TESTS,
        containers::TESTS,
        health::TESTS,
        images::TESTS,
        network::TESTS,
        sharing::TESTS,
        threats::TESTS,
    ];
    let mut ran = 0;
    for (name, test) in all.iter().flat_map(|t| t.iter()) {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let f = rt.block_on(Fixture::new());
        test(&f);
        eprintln!("test {name} ... ok");
        ran += 1;
    }
    eprintln!("engine: {ran} tests passed");
}

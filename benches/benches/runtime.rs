//! oci-rs-runtime: start-to-exit of `/bin/true` in a busybox rootfs with pid, net, ipc, uts and
//! mount namespaces, through the library. Needs root and busybox-static; says so and measures
//! nothing otherwise.
#![allow(missing_docs)] // criterion_group! generates undocumented public functions

use criterion::{criterion_group, Criterion};
use oci_spec::runtime::{LinuxNamespaceBuilder, LinuxNamespaceType, RootBuilder, Spec};
use std::sync::atomic::{AtomicU64, Ordering};

fn start_to_exit(c: &mut Criterion) {
    if !rustix::process::geteuid().is_root() || !std::path::Path::new("/bin/busybox").exists() {
        eprintln!("runtime bench skipped: needs root and /bin/busybox");
        return;
    }
    let bundle = tempfile::tempdir().expect("tempdir");
    let rootfs = bundle.path().join("rootfs");
    for d in ["bin", "proc", "dev", "sys"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox");
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/true")).expect("symlink");
    let mut spec = Spec::default();
    spec.set_root(Some(
        RootBuilder::default().path("rootfs").build().expect("root"),
    ));
    let mut p = spec.process().clone().expect("process");
    p.set_args(Some(vec!["/bin/true".into()]));
    p.set_terminal(Some(false));
    spec.set_process(Some(p));
    let mut linux = spec.linux().clone().expect("linux");
    linux.set_namespaces(Some(
        [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount,
        ]
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build().expect("ns"))
        .collect(),
    ));
    spec.set_linux(Some(linux));
    let state = bundle.path().join("state");
    let n = AtomicU64::new(0);
    let mut g = c.benchmark_group("runtime");
    g.sample_size(20);
    g.bench_function("start_to_exit_true", |b| {
        b.iter(|| {
            let id = format!("bench{}", n.fetch_add(1, Ordering::Relaxed));
            let code = oci_rs_runtime::run(
                oci_rs_runtime::ContainerBuilder::new(&id, spec.clone(), bundle.path())
                    .state_root(&state),
            )
            .expect("run");
            assert_eq!(code, 0);
        })
    });
    g.finish();
}

criterion_group!(benches, start_to_exit);

/// `criterion_main!` with the sealed re-execution first: what a program embedding the runtime
/// runs (see `oci_rs_runtime::exe`).
fn main() {
    if let Err(e) = oci_rs_runtime::reexec_sealed() {
        eprintln!("runtime bench: {e}");
        std::process::exit(1);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

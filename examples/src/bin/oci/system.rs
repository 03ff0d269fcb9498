//! `version` and `info`.

use crate::args::Verb;
use anyhow::Result;
use oci_examples::images::Images;
use oci_rs_runtime::Containers;
use std::io::Write;
use std::path::Path;

/// `version`: nothing is opened or created.
pub(crate) fn print_version(out: &mut impl Write) -> Result<()> {
    let p = oci_rs_image::PlatformSpec::host();
    writeln!(out, "Client:")?;
    writeln!(out, " Version:           {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(
        out,
        " API version:       none (no daemon: every verb is a library call)"
    )?;
    writeln!(out, " OS/Arch:           {}/{}", p.os, p.architecture)?;
    writeln!(
        out,
        " Runtime:           oci-runtime {} (OCI runtime spec {})",
        env!("CARGO_PKG_VERSION"),
        oci_spec::runtime::VERSION
    )?;
    Ok(())
}

/// The cgroup layout: `2`, `1 (hybrid: v1 controllers, an empty v2 hierarchy)` or `1`.
fn cgroup_version() -> &'static str {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else if Path::new("/sys/fs/cgroup/unified").exists() {
        "1 (hybrid: v1 controllers beside a v2 hierarchy)"
    } else {
        "1"
    }
}

/// `version` and `info` (`images` and `insecure` for what it tells of them).
pub(crate) async fn system_verb(
    images: &Images,
    insecure: &[String],
    dir: &Path,
    verb: Verb,
    mut out: impl Write,
) -> Result<()> {
    match verb {
        Verb::Version => print_version(&mut out)?,
        Verb::Info => {
            let store = Containers::open(dir)?;
            let views = store.list()?;
            let running = views
                .iter()
                .filter(|v| v.status.state == oci_rs_runtime::MonitorState::Running)
                .count();
            let n_images = images.list().await?.len();
            let root = rustix::process::geteuid().is_root();
            let p = oci_rs_image::PlatformSpec::host();
            let uts = rustix::system::uname();
            writeln!(
                out,
                "Client: oci {} (daemonless)",
                env!("CARGO_PKG_VERSION")
            )?;
            writeln!(out, " Containers: {}", views.len())?;
            writeln!(out, "  Running: {running}")?;
            writeln!(out, "  Stopped: {}", views.len() - running)?;
            writeln!(out, " Images: {n_images}")?;
            writeln!(
                out,
                " Storage Driver: {}",
                if root {
                    "overlay (snapshots)"
                } else {
                    "copy (rootless snapshots)"
                }
            )?;
            writeln!(out, " Data Root: {}", dir.display())?;
            writeln!(out, " Cgroup Version: {}", cgroup_version())?;
            writeln!(
                out,
                " Runtime: oci-runtime (in process, monitored by oci-monitor)"
            )?;
            writeln!(
                out,
                " Network: {}",
                if root {
                    format!(
                        "bridge (nftables, netlink), networks under {}",
                        oci_rs_runtime::Networks::host_dir().display()
                    )
                } else {
                    "slirp4netns with a userland port proxy (rootless)".to_owned()
                }
            )?;
            writeln!(out, " Rootless: {}", !root)?;
            writeln!(out, " Kernel Version: {}", uts.release().to_string_lossy())?;
            writeln!(out, " OSType: {}", p.os)?;
            writeln!(out, " Architecture: {}", p.architecture)?;
            writeln!(
                out,
                " CPUs: {}",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            )?;
            writeln!(out, " Insecure Registries:")?;
            writeln!(out, "  127.0.0.0/8 (loopback: always plain HTTP)")?;
            for r in insecure {
                writeln!(out, "  {r}")?;
            }
        }
        _ => anyhow::bail!("not a system verb"),
    }
    Ok(())
}

/// `system service`: the Engine API of the library on a socket, pulling through `images`'
/// registry client.
pub(crate) async fn serve_api(
    images: Images,
    dir: &Path,
    time: u64,
    uri: Option<&str>,
) -> Result<()> {
    let idle = (time > 0).then(|| std::time::Duration::from_secs(time));
    let images = std::sync::Arc::new(images);
    let api =
        oci_rs_runtime::api::EngineApi::open_with_urls(dir, images.clone(), Some(images)).await?;
    let uri = match uri {
        Some(u) => u.to_owned(),
        None => oci_rs_runtime::api::default_uri()
            .ok_or_else(|| anyhow::anyhow!("XDG_RUNTIME_DIR is not set: give a unix:// path"))?,
    };
    api.serve_uri(&uri, idle).await?;
    Ok(())
}

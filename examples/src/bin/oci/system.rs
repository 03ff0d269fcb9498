//! `version` and `info`.

use crate::args::{SystemVerb, Verb};
use anyhow::Result;
use oci_examples::images::Images;
use oci_examples::text;
use oci_rs_runtime::Containers;
use std::io::Write;
use std::path::Path;

/// `version`: nothing is opened or created. With `format`, docker's document: the client
/// and, as the engine is this program, the server's versions.
pub(crate) fn print_version(format: Option<&str>, out: &mut impl Write) -> Result<()> {
    let p = oci_rs_image::PlatformSpec::host();
    if let Some(f) = format {
        let side = serde_json::json!({
            "Version": env!("CARGO_PKG_VERSION"),
            "ApiVersion": oci_rs_runtime::api::API_VERSION,
            "Os": p.os,
            "Arch": p.architecture,
        });
        let server = oci_rs_runtime::api::version_document();
        let doc = serde_json::json!({ "Client": side, "Server": server });
        let f = oci_rs_runtime::format::Format::parse(f, "")?;
        writeln!(out, "{}", f.render(&doc)?)?;
        return Ok(());
    }
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
        Verb::Version { format } => print_version(format.as_deref(), &mut out)?,
        Verb::System {
            verb: SystemVerb::Df { verbose, format },
        } => {
            let store = Containers::open(dir)?;
            let du = store.disk_usage(images).await?;
            if verbose && format.is_none() {
                let rows = store.disk_usage_rows(images, &du).await?;
                write!(out, "{}", rows.render()?)?;
                return Ok(());
            }
            // docker's table by default, aligned as its tabwriter aligns it.
            let f = oci_rs_runtime::format::Format::parse(
                format.as_deref().unwrap_or("table"),
                r"table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
            )?;
            let rows: Vec<serde_json::Value> = [
                ("Images", du.images),
                ("Containers", du.containers),
                ("Local Volumes", du.volumes),
                ("Build Cache", du.build_cache),
            ]
            .iter()
            .map(|(kind, l)| l.df_fields(kind))
            .collect();
            write!(
                out,
                "{}",
                f.render_all(&rows, oci_rs_runtime::format::DF_HEADERS)?
            )?;
        }
        Verb::System {
            verb:
                SystemVerb::Prune {
                    all,
                    volumes,
                    filter,
                    force: _,
                },
        } => {
            let store = Containers::open(dir)?;
            let options = oci_rs_runtime::SystemPruneOptions {
                all_images: all,
                volumes,
                filter: oci_rs_runtime::PruneFilter::parse(&filter)?,
            };
            let r = store.system_prune(images, &options).await?;
            let untagged: Vec<String> = (r.images.untagged.iter())
                .map(|n| format!("untagged: {n}"))
                .chain(r.images.deleted.iter().map(|id| format!("deleted: {id}")))
                .collect();
            for (title, items) in [
                ("Containers", &r.containers.deleted),
                ("Networks", &r.networks),
                ("Volumes", &r.volumes.deleted),
                ("Images", &untagged),
            ] {
                if !items.is_empty() {
                    writeln!(out, "Deleted {title}:")?;
                    for i in items {
                        writeln!(out, "{}", oci_rs_image::printable(i))?;
                    }
                    writeln!(out)?;
                }
            }
            if r.build_cache > 0 {
                writeln!(out, "Deleted build cache objects: {}\n", r.build_cache)?;
            }
            writeln!(
                out,
                "Total reclaimed space: {}",
                text::human_size(r.reclaimed)
            )?;
        }
        Verb::Info { format: Some(f) } => {
            let store = Containers::open(dir)?;
            let doc = store.system_info(images).await?;
            let f = oci_rs_runtime::format::Format::parse(&f, "")?;
            writeln!(out, "{}", f.render(&doc)?)?;
        }
        Verb::Info { format: None } => {
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

/// `system service`: the Engine API of the library on a socket (over `tls` when given),
/// pulling through `images`' registry client.
pub(crate) async fn serve_api(
    images: Images,
    dir: &Path,
    time: u64,
    uri: Option<&str>,
    tls: Option<&oci_rs_runtime::api::ApiTls>,
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
    match tls {
        Some(tls) => api.serve_uri_with(&uri, idle, tls).await?,
        None => api.serve_uri(&uri, idle).await?,
    }
    Ok(())
}

//! `run`: docker's flags as the container store's request, then attached or detached.

use crate::args::RunArgs;
use anyhow::Result;
use oci_examples::images::Images;
use oci_examples::terminal;
use oci_rs_runtime::{parse_mount_arg, parse_volume_arg, MountArg};
use oci_rs_runtime::{Containers, RunImage, RunRequest};
use oci_rs_runtime::{ExtraMount, NetworkMode, RunOptions};
use std::io::Write;
use std::path::Path;

pub(crate) async fn run_container(images: &Images, dir: &Path, a: RunArgs) -> Result<i32> {
    let store = Containers::open(dir)?;
    let rootless = !rustix::process::geteuid().is_root();
    let net_arg = a
        .network
        .clone()
        .unwrap_or_else(|| if rootless { "slirp4netns" } else { "bridge" }.to_owned());
    let (network, join_network, networks) = match net_arg.as_str() {
        "none" => (NetworkMode::None, None, Vec::new()),
        "host" => (NetworkMode::Host, None, Vec::new()),
        "slirp4netns" => (NetworkMode::Slirp, None, Vec::new()),
        other => match other.strip_prefix("container:") {
            Some(name) => (
                NetworkMode::None,
                Some(store.network_namespace(name)?),
                Vec::new(),
            ),
            None if rootless => anyhow::bail!(
                "network {other:?} needs root: a rootless container uses slirp4netns, none or host"
            ),
            None => {
                let n = store.networks().get(other)?;
                (NetworkMode::Bridge, None, vec![n.name])
            }
        },
    };
    let mut publish = Vec::new();
    for p in &a.publish {
        publish.extend(oci_rs_runtime::parse_publish(p)?);
    }
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(oci_rs_runtime::read_env_file(f)?);
    }
    env.extend(a.env);
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    let parsed: Vec<MountArg> = a
        .volume
        .iter()
        .map(|v| parse_volume_arg(v))
        .chain(a.mount.iter().map(|m| parse_mount_arg(m)))
        .collect::<Result<_, _>>()?;
    for m in parsed {
        match m {
            MountArg::Extra(e) => mounts.push(e),
            MountArg::Volume {
                name,
                target,
                readonly,
            } => volumes.push((name, target, readonly)),
        }
    }
    for t in &a.tmpfs {
        mounts.push(ExtraMount::parse_tmpfs(t)?);
    }
    let mut no_new_privileges = false;
    let mut seccomp = oci_rs_runtime::SeccompChoice::Default;
    for o in &a.security_opt {
        match o.as_str() {
            "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true" => {
                no_new_privileges = true
            }
            "seccomp=unconfined" | "seccomp:unconfined" => {
                seccomp = oci_rs_runtime::SeccompChoice::Unconfined
            }
            o if o.starts_with("seccomp=") || o.starts_with("seccomp:") => {
                let file = &o[8..];
                let text = std::fs::read(file)
                    .map_err(|e| anyhow::anyhow!("reading the seccomp profile {file}: {e}"))?;
                let profile = serde_json::from_slice(&text)
                    .map_err(|e| anyhow::anyhow!("the seccomp profile {file}: {e}"))?;
                seccomp = oci_rs_runtime::SeccompChoice::Profile(profile);
            }
            other => anyhow::bail!(
                "unsupported --security-opt {other:?} (no-new-privileges, seccomp=FILE|unconfined)"
            ),
        }
    }
    let mut labels = std::collections::BTreeMap::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_owned(), v.to_owned());
    }
    let opts = RunOptions {
        args: a.args,
        entrypoint: a.entrypoint.map(|e| vec![e]),
        env,
        workdir: a.workdir,
        user: a.user,
        network,
        join_network,
        hostname: a.hostname,
        terminal: a.tty,
        rootless: None,
        mounts,
        read_only: a.read_only,
        memory: a
            .memory
            .as_deref()
            .map(|m| oci_rs_runtime::parse_size(m).map(|b| b as i64))
            .transpose()?,
        cpus: a.cpus,
        pids_limit: a.pids_limit,
        cap_add: a.cap_add,
        cap_drop: a.cap_drop,
        privileged: a.privileged,
        no_new_privileges,
        seccomp,
    };
    if let Some(s) = &a.stop_signal {
        oci_rs_runtime::parse_signal(s)?;
    }
    let found = images
        .image_for_run(&a.image, a.platform.as_deref())
        .await?;
    let image = RunImage::from_store(images, found, &a.image);
    let req = RunRequest {
        opts,
        name: a.name,
        rm: a.rm,
        console_size: (a.tty && !a.detach).then(terminal::console_size).flatten(),
        detach: a.detach,
        interactive: a.interactive,
        restart: a.restart.parse()?,
        log: oci_rs_runtime::LogLimits::from_opts(&a.log_opt)?,
        labels,
        stop_signal: a.stop_signal,
        volumes,
        init: a.init,
        network_mode: net_arg.starts_with("container:").then(|| net_arg.clone()),
        networks,
        publish,
        publish_all: a.publish_all,
    };
    let (id, monitor) = store.run(&image, req).await?;
    if a.detach {
        writeln!(std::io::stdout(), "{id}")?;
        return Ok(0);
    }
    let code = terminal::attach(&monitor, a.interactive, a.tty).await?;
    if a.rm {
        // The monitor removes it; `run --rm` returns once it is gone, as docker's does.
        store.wait_removed(&id, std::time::Duration::from_secs(30));
    }
    Ok(code)
}

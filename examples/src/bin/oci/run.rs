//! `run`: docker's flags as the container store's request, then attached or detached.

use crate::args::RunArgs;
use anyhow::Result;
use oci_examples::images::Images;
use oci_rs_runtime::{parse_mount_arg, parse_volume_arg, MountArg};
use oci_rs_runtime::{Containers, RunImage, RunRequest};
use oci_rs_runtime::{ExtraMount, RunOptions};
use std::io::Write;
use std::path::Path;

/// `run` (`start`) or `create`: the exit code to leave with.
pub(crate) async fn run_container(
    images: &Images,
    dir: &Path,
    a: RunArgs,
    start: bool,
) -> Result<i32> {
    let store = Containers::open(dir)?;
    let mut publish = Vec::new();
    for p in &a.publish {
        publish.extend(oci_rs_runtime::parse_publish(p)?);
    }
    let env = oci_rs_runtime::env_from_args(&a.env_file, a.env)?;
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
    let mut labels = std::collections::BTreeMap::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_owned(), v.to_owned());
    }
    let resources = a.resources.flags()?;
    let mut opts = RunOptions {
        args: a.args,
        entrypoint: a.entrypoint.map(|e| vec![e]),
        env,
        workdir: a.workdir,
        user: a.user,
        hostname: a.hostname,
        terminal: a.tty,
        rootless: None,
        mounts,
        read_only: a.read_only,
        // A run's `--memory 0` (or -1) is no limit, as docker's.
        memory: resources.memory.filter(|m| *m > 0),
        cpus: resources.cpus,
        pids_limit: resources.pids_limit,
        resources: resources.clone(),
        oom_score_adj: a.oom_score_adj,
        cap_add: a.cap_add,
        cap_drop: a.cap_drop,
        privileged: a.privileged,
        sysctls: a
            .sysctl
            .iter()
            .map(|s| oci_rs_runtime::parse_sysctl(s))
            .collect::<Result<_, _>>()?,
        ulimits: a.ulimit,
        shm_size: a
            .shm_size
            .as_deref()
            .map(oci_rs_runtime::parse_size)
            .transpose()?,
        group_add: a.group_add,
        extra_hosts: a.add_host,
        dns: a.dns,
        dns_search: a.dns_search,
        dns_options: a.dns_option,
        healthcheck: oci_rs_runtime::HealthFlags {
            cmd: a.health_cmd,
            interval: a.health_interval,
            timeout: a.health_timeout,
            start_period: a.health_start_period,
            start_interval: a.health_start_interval,
            retries: a.health_retries,
            none: a.no_healthcheck,
        }
        .check()?,
        ..RunOptions::default()
    };
    for o in &a.security_opt {
        opts.security_opt(o)?;
    }
    if let Some(s) = &a.stop_signal {
        oci_rs_runtime::parse_signal(s)?;
    }
    let found = images
        .image_for_run(&a.image, a.platform.as_deref(), a.pull.parse()?)
        .await?;
    let image = RunImage::from_store(images, found, &a.image);
    let mut req = RunRequest {
        opts,
        name: a.name,
        rm: a.rm,
        console_size: (a.tty && !a.detach)
            .then(oci_rs_runtime::console_size)
            .flatten(),
        detach: a.detach,
        interactive: a.interactive,
        restart: a.restart.parse()?,
        log: oci_rs_runtime::LogLimits::for_driver(&a.log_driver, &a.log_opt)?,
        labels,
        stop_signal: a.stop_signal,
        stop_timeout: a.stop_timeout,
        volumes,
        init: a.init || a.init_path.is_some(),
        init_path: a.init_path.clone(),
        publish,
        publish_all: a.publish_all,
        links: a
            .link
            .iter()
            .map(|l| oci_rs_runtime::parse_link(l))
            .collect::<Result<_, _>>()?,
        ..RunRequest::default()
    };
    store.set_network(&mut req, a.network.as_deref())?;
    for w in req.warnings() {
        eprintln!("WARNING: {w}");
    }
    req.opts.pid = store.namespace_choice("pid", a.pid.as_deref().unwrap_or(""))?;
    req.opts.ipc = store.namespace_choice("ipc", a.ipc.as_deref().unwrap_or(""))?;
    req.opts.uts_host = a.uts.is_some();
    for d in &a.device {
        req.opts.devices.push(d.parse()?);
    }
    for from in &a.volumes_from {
        store.add_volumes_from(&mut req, from)?;
    }
    if let Some(net) = req.networks.first() {
        req.aliases.insert(net.clone(), a.network_alias.clone());
        if let Some(mac) = &a.mac_address {
            req.macs.insert(net.clone(), mac.clone());
        }
    }
    // On the first network; on the default bridge (no --network), refused by the engine as
    // docker refuses it.
    let first = req.networks.first().cloned();
    let net = first.unwrap_or_else(|| oci_rs_runtime::DEFAULT_NETWORK.to_owned());
    if let Some(ip) = a.ip {
        req.addresses.insert(net.clone(), ip);
    }
    if let Some(ip) = a.ip6 {
        req.addresses6.insert(net, ip);
    }
    // docker's: made before the container, refused when it exists, removed if the run fails.
    let cidfile = match &a.cidfile {
        Some(path) => Some((
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
                        "container ID file found, make sure the other container isn't running or delete {}",
                        path.display()
                    ),
                    _ => anyhow::Error::new(e).context(format!("creating {}", path.display())),
                })?,
            path,
        )),
        None => None,
    };
    let made = match start {
        true => store.run(&image, req).await,
        false => store.create(&image, req).await,
    };
    let (id, monitor) = match made {
        Ok(made) => made,
        Err(e) => {
            if let Some((_, path)) = &cidfile {
                let _ = std::fs::remove_file(path);
            }
            return Err(e.into());
        }
    };
    if let Some((mut f, _)) = cidfile {
        f.write_all(id.as_bytes())?;
    }
    if a.detach || !start {
        writeln!(std::io::stdout(), "{id}")?;
        return Ok(0);
    }
    let streams: Vec<String> = a.attach.iter().map(|s| s.to_lowercase()).collect();
    let wants = |s: &str| streams.is_empty() || streams.iter().any(|x| x == s);
    let opts = oci_rs_runtime::AttachOptions {
        stdin: a.interactive && wants("stdin"),
        stdout: wants("stdout"),
        stderr: wants("stderr"),
        tty: a.tty,
        sig_proxy: a.sig_proxy && !a.tty,
        detach_keys: a
            .detach_keys
            .as_deref()
            .map(str::parse)
            .transpose()?
            .unwrap_or_default(),
    };
    store.attached(&id);
    let Some(code) = oci_rs_runtime::attach_stdio(&monitor, &opts).await? else {
        // Detached: the container runs on.
        return Ok(0);
    };
    if a.rm {
        // The monitor removes it; `run --rm` returns once it is gone, as docker's does.
        store.wait_removed(&id, std::time::Duration::from_secs(30));
    }
    Ok(code)
}

//! The container verbs (ps, logs, stop, restart, kill, start, wait, attach, exec, rm, top,
//! port, container prune), volumes and networks.

use crate::args::*;
use crate::print_docs;
use anyhow::Result;
use oci_rs_runtime::format::{self, Format};
use oci_rs_runtime::{ContainerFilter, Containers, EngineError, ExecRequest, Volumes};
use std::io::Write;
use std::path::Path;

/// docker's way with several names: each one tried, an error reported for each that fails
/// (the others still done), `done` printed for each that did, and 1 at the end when any
/// failed.
fn each(
    names: Vec<String>,
    out: &mut impl Write,
    mut f: impl FnMut(&str) -> Result<String>,
) -> Result<i32> {
    let mut code = 0;
    for n in names {
        match f(&n) {
            // Nothing to say (`rm -f` of a container that is not there).
            Ok(done) if done.is_empty() => {}
            Ok(done) => writeln!(out, "{done}")?,
            Err(e) => {
                out.flush()?;
                eprintln!("oci: {}", oci_rs_image::printable(&format!("{e:#}")));
                code = 1;
            }
        }
    }
    Ok(code)
}

/// docker's prune report: `Deleted KIND:` and what went, a blank line, the space freed.
fn pruned(out: &mut impl Write, kind: &str, r: &oci_rs_runtime::PruneReport) -> Result<()> {
    if !r.deleted.is_empty() {
        writeln!(out, "Deleted {kind}:")?;
        for n in &r.deleted {
            writeln!(out, "{}", oci_rs_image::printable(n))?;
        }
        writeln!(out)?;
    }
    let space = oci_rs_runtime::human_size(r.space_reclaimed);
    writeln!(out, "Total reclaimed space: {space}")?;
    Ok(())
}

fn network_verb(store: &Containers, verb: NetworkVerb, out: &mut impl Write) -> Result<i32> {
    let nets = store.networks();
    match verb {
        NetworkVerb::Create {
            subnet,
            gateway,
            ipv6,
            internal,
            driver,
            label,
            name,
        } => {
            if driver != "bridge" {
                anyhow::bail!("unsupported network driver {driver:?} (bridge)");
            }
            let mut opts = oci_rs_runtime::NetworkOptions {
                labels: label
                    .iter()
                    .map(|l| l.split_once('=').unwrap_or((l, "")))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                internal,
                ipv6,
                ..Default::default()
            };
            opts.set_pools(&subnet, &gateway)?;
            writeln!(out, "{}", store.create_network(&name, &opts)?.id)?;
        }
        NetworkVerb::Prune { filter, force: _ } => {
            let filter = oci_rs_runtime::NetworkFilter::parse(&filter)?;
            let gone = store.prune_networks(&filter)?;
            // docker's: a heading, and no space figure (a network holds none).
            if !gone.is_empty() {
                writeln!(out, "Deleted Networks:")?;
            }
            for n in gone {
                writeln!(out, "{}", oci_rs_image::printable(&n))?;
            }
        }
        NetworkVerb::Ls {
            ids_only,
            filter,
            format,
        } => {
            let filter = oci_rs_runtime::NetworkFilter::parse(&filter)?;
            let mut rows: Vec<serde_json::Value> = nets
                .list_filtered(&filter)?
                .0
                .iter()
                .map(|n| n.ls_fields())
                .collect();
            rows.extend(
                filter
                    .builtins()
                    .into_iter()
                    .map(oci_rs_runtime::NetworkConfig::builtin_ls_fields),
            );
            let format = match (ids_only, format) {
                (true, _) => "{{.ID}}".to_owned(),
                (false, f) => f.unwrap_or_else(|| "table".into()),
            };
            let f = Format::parse(
                &format,
                r"table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
            )?;
            write!(out, "{}", f.render_all(&rows, format::NETWORK_HEADERS)?)?;
        }
        NetworkVerb::Inspect { format, names } => {
            let docs = names
                .iter()
                .map(|n| nets.inspect(n))
                .collect::<Result<Vec<_>, _>>()?;
            print_docs(&docs, format.as_deref(), out)?;
        }
        NetworkVerb::Rm { names } => {
            return each(names, out, |n| {
                Ok(store.remove_network(n).map(|_| n.to_owned())?)
            });
        }
        NetworkVerb::Connect {
            alias,
            ip,
            ip6,
            network,
            container,
        } => {
            let addresses: Vec<std::net::IpAddr> = (ip.map(Into::into).into_iter())
                .chain(ip6.map(Into::into))
                .collect();
            store.connect_with(&network, &container, &alias, &addresses)?
        }
        NetworkVerb::Disconnect { network, container } => store.disconnect(&network, &container)?,
    }
    Ok(0)
}

pub(crate) async fn container_verb(dir: &Path, v: Verb) -> Result<i32> {
    let store = Containers::open(dir)?;
    let mut out = std::io::stdout().lock();
    match v {
        Verb::Ps {
            all,
            ids_only,
            no_trunc,
            filter,
            format,
            last,
            latest,
            size,
        } => {
            // -n and -l: the newest, of every state.
            let last = if latest { Some(1) } else { last };
            // docker's CLI: a template that shows the size asks for it.
            let size = size || format.as_deref().is_some_and(|f| f.contains(".Size"));
            let filter = ContainerFilter::parse(all || last.is_some(), &filter)?;
            let how = PsOptions {
                ids_only,
                no_trunc,
                last,
                size,
            };
            // The ids alone need no image store; anything else names images as `run` found
            // them (registries.conf's search registries too).
            let (views, sizes) = if ids_only && format.is_none() {
                (store.list()?, None)
            } else {
                let images = oci_examples::images::Images::open_store(dir).await?;
                let sizes = match size {
                    true => Some(store.sizes(&images).await?),
                    false => None,
                };
                (store.list_with_images(&images).await?, sizes)
            };
            ps(views, &filter, &how, sizes.as_ref(), format, &mut out)?;
        }
        Verb::Events {
            since,
            until,
            filter,
            format,
        } => {
            let time =
                |t: &Option<String>| t.as_deref().map(oci_rs_runtime::parse_log_time).transpose();
            let (since, until) = (time(&since)?, time(&until)?);
            let filter = oci_rs_runtime::EventFilter::parse(&filter)?;
            let format = format.map(|f| Format::parse(&f, "")).transpose()?;
            let print = |e: &oci_rs_runtime::Event| {
                let line = match &format {
                    None => e.docker_line(),
                    Some(f) => f
                        .render(&e.template_fields())
                        .map_err(std::io::Error::other)?,
                };
                writeln!(out, "{line}")?;
                out.flush()
            };
            store
                .journal()
                .stream(since, until, &filter, print, || true)?;
        }
        Verb::Logs {
            follow,
            tail,
            since,
            until,
            timestamps,
            details,
            container,
        } => {
            let q = oci_rs_runtime::LogQuery {
                since: since
                    .as_deref()
                    .map(oci_rs_runtime::parse_log_time)
                    .transpose()?,
                until: until
                    .as_deref()
                    .map(oci_rs_runtime::parse_log_time)
                    .transpose()?,
                tail: match tail.as_str() {
                    "all" => None,
                    n => Some(
                        n.parse()
                            .map_err(|_| anyhow::anyhow!("invalid --tail {n:?}"))?,
                    ),
                },
                timestamps,
                details: details.then(String::new),
            };
            drop(out);
            let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
            store.logs(&container, &q, follow, &mut |s, b| {
                let w: &mut dyn Write = match s {
                    oci_rs_runtime::LogStream::Stdout => &mut stdout,
                    oci_rs_runtime::LogStream::Stderr => &mut stderr,
                };
                w.write_all(b)?;
                w.flush()
            })?;
        }
        Verb::Stop { time, containers } => {
            let timeout = time.map(std::time::Duration::from_secs);
            return each(containers, &mut out, |c| {
                store.stop_within(c, timeout)?;
                Ok(c.to_owned())
            });
        }
        Verb::Restart { time, containers } => {
            let timeout = time.map(std::time::Duration::from_secs);
            return each(containers, &mut out, |c| {
                store.restart(c, timeout)?;
                Ok(c.to_owned())
            });
        }
        Verb::Kill { signal, containers } => {
            let sig = oci_rs_runtime::parse_signal(&signal)?;
            return each(containers, &mut out, |c| {
                store.kill(c, sig)?;
                Ok(c.to_owned())
            });
        }
        Verb::Start {
            attach,
            interactive,
            detach_keys,
            sig_proxy,
            containers,
        } => {
            if attach && containers.len() > 1 {
                anyhow::bail!("you cannot start and attach multiple containers at once");
            }
            for c in containers {
                let m = store.start_unless_running(&c, attach)?;
                if attach {
                    store.attached(&c);
                    drop(out);
                    let tty = store.view(&c)?.config.run.terminal;
                    let opts = oci_rs_runtime::AttachOptions {
                        sig_proxy: sig_proxy && !tty,
                        detach_keys: detach_keys
                            .as_deref()
                            .map(str::parse)
                            .transpose()?
                            .unwrap_or_default(),
                        ..oci_rs_runtime::AttachOptions::new(interactive, tty)
                    };
                    return Ok(oci_rs_runtime::attach_stdio(&m, &opts).await?.unwrap_or(0));
                }
                writeln!(out, "{c}")?;
            }
        }
        Verb::Wait { containers } => {
            return each(containers, &mut out, |c| Ok(store.wait(c)?.to_string()));
        }
        Verb::Attach {
            no_stdin,
            detach_keys,
            sig_proxy,
            container,
        } => {
            let (v, m) = store.attachable(&container)?;
            store.attached(&container);
            drop(out);
            let tty = v.config.run.terminal;
            let opts = oci_rs_runtime::AttachOptions {
                // With a terminal, ^C reaches the container as a byte.
                sig_proxy: sig_proxy && !tty,
                detach_keys: detach_keys
                    .as_deref()
                    .map(str::parse)
                    .transpose()?
                    .unwrap_or_default(),
                ..oci_rs_runtime::AttachOptions::new(!no_stdin && v.config.interactive, tty)
            };
            return Ok(oci_rs_runtime::attach_stdio(&m, &opts).await?.unwrap_or(0));
        }
        Verb::Exec {
            detach,
            interactive,
            tty,
            env,
            env_file,
            workdir,
            user,
            privileged,
            container,
            args,
        } => {
            drop(out);
            let req = ExecRequest {
                args,
                env: oci_rs_runtime::env_from_args(&env_file, env)?,
                workdir,
                user,
                interactive,
                detach,
                tty,
                privileged,
            };
            // Blocking: the process is waited for (and a terminal relayed) on this thread.
            return tokio::task::spawn_blocking(move || -> Result<i32> {
                if !tty {
                    return Ok(store.exec(&container, &req)?);
                }
                let (c, mut process) = store.exec_process(&container, &req)?;
                process.set_console_size(oci_rs_runtime::console_size());
                Ok(oci_rs_runtime::exec_stdio(&c, &process, interactive)?)
            })
            .await
            .map_err(|e| anyhow::anyhow!("exec: {e}"))?;
        }
        Verb::Rename { container, name } => store.rename(&container, &name)?,
        Verb::Pause { containers } => {
            return each(containers, &mut out, |c| {
                store.pause(c)?;
                Ok(c.to_owned())
            });
        }
        Verb::Unpause { containers } => {
            return each(containers, &mut out, |c| {
                store.unpause(c)?;
                Ok(c.to_owned())
            });
        }
        Verb::Update {
            restart,
            resources,
            containers,
        } => {
            let flags = resources.flags()?;
            let any = flags != oci_rs_runtime::ResourceFlags::default();
            let r = oci_rs_runtime::resources_of(&flags)?;
            let restart = restart.as_deref().map(str::parse).transpose()?;
            return each(containers, &mut out, |c| {
                if any || restart.is_none() {
                    store.update(c, &r)?;
                }
                if let Some(policy) = restart {
                    store.set_restart(c, policy)?;
                }
                Ok(c.to_owned())
            });
        }
        Verb::Diff { container } => {
            for c in store.diff(&container)? {
                let path = oci_rs_image::printable(&c.path);
                writeln!(out, "{} {path}", c.kind.letter())?;
            }
        }
        Verb::Rm {
            force,
            volumes,
            containers,
        } => {
            return each(containers, &mut out, |c| {
                let removed = match volumes {
                    true => store.remove_with_volumes(c, force),
                    false => store.remove(c, force),
                };
                match removed {
                    Ok(_) => Ok(c.to_owned()),
                    // docker's CLI: with -f, a container that is not there is no error.
                    Err(EngineError::NoSuchContainer(_)) if force => Ok(String::new()),
                    Err(e) => Err(e.into()),
                }
            });
        }
        Verb::Volume { verb } => return volume_verb(&store, dir, verb, out),
        Verb::Network { verb } => return network_verb(&store, verb, &mut out),
        Verb::Port { container, port } => {
            let v = store.view(&container)?;
            let ports = v.status.network.map(|n| n.ports).unwrap_or_default();
            let want = port.map(|p| {
                if p.contains('/') {
                    p
                } else {
                    format!("{p}/tcp")
                }
            });
            let mut any = false;
            for p in ports {
                let key = format!("{}/{}", p.container_port, p.proto);
                if want.as_ref().is_none_or(|w| *w == key) {
                    any = true;
                    if want.is_some() {
                        writeln!(out, "{}:{}", p.host_ip, p.host_port)?;
                    } else {
                        writeln!(out, "{key} -> {}:{}", p.host_ip, p.host_port)?;
                    }
                }
            }
            if let (Some(w), false) = (want, any) {
                anyhow::bail!("no public port '{w}' published for {container}");
            }
        }
        Verb::Container {
            verb: ContainerVerb::Prune { filter, force: _ },
        } => {
            let gone = store.prune_filtered(&oci_rs_runtime::PruneFilter::parse(&filter)?)?;
            pruned(&mut out, "Containers", &gone)?;
        }
        Verb::Stats {
            all,
            no_trunc,
            no_stream,
            format,
            containers,
        } => {
            let how = StatsOptions {
                all,
                no_trunc,
                no_stream,
            };
            stats(&store, &how, format, containers, &mut out)?
        }
        Verb::Top {
            container,
            ps_options,
        } => {
            // ps's columns, aligned as docker's tabwriter (minimum width 20). Any process
            // in the container sets its own argv: no escape sequence from it reaches the
            // terminal.
            let table = store.top_ps(&container, &ps_options)?;
            let lines: Vec<String> = std::iter::once(&table.titles)
                .chain(&table.processes)
                .map(|row| {
                    row.iter()
                        .map(|c| oci_rs_image::printable(c).replace('\t', " "))
                        .collect::<Vec<_>>()
                        .join("\t")
                })
                .collect();
            write!(out, "{}", format::tabwriter(&lines, 20))?;
        }
        _ => anyhow::bail!("not a container verb"),
    }
    Ok(0)
}

/// docker's default `ps` table, for `--format table`.
const PS_TABLE: &str = r"table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

/// How `ps` prints.
struct PsOptions {
    ids_only: bool,
    no_trunc: bool,
    last: Option<usize>,
    size: bool,
}

/// `ps [-a] [-q] [--no-trunc] [-n N] [-l] [-s] [--filter ...] [--format ...]`.
fn ps(
    views: Vec<oci_rs_runtime::ContainerView>,
    filter: &ContainerFilter,
    how: &PsOptions,
    sizes: Option<&std::collections::BTreeMap<String, (u64, u64)>>,
    format: Option<String>,
    out: &mut impl Write,
) -> Result<()> {
    let (ids_only, no_trunc) = (how.ids_only, how.no_trunc);
    let rows: Vec<_> = views
        .into_iter()
        .filter(|r| filter.matches(r))
        .take(how.last.unwrap_or(usize::MAX))
        .collect();
    if ids_only && format.is_none() {
        for r in rows {
            let id = if no_trunc {
                &r.config.id[..]
            } else {
                &r.config.id[..12]
            };
            writeln!(out, "{id}")?;
        }
        return Ok(());
    }
    // docker's default is its table, aligned as its tabwriter aligns it; -s adds SIZE.
    let default = match how.size {
        true => format!("{PS_TABLE}\t{{{{.Size}}}}"),
        false => PS_TABLE.to_owned(),
    };
    let f = Format::parse(format.as_deref().unwrap_or("table"), &default)?;
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            let mut v = r.ps_fields_truncated(!no_trunc);
            // docker's: what the container wrote, and that with its image.
            if let Some((rw, all)) = sizes.and_then(|s| s.get(&r.config.id)) {
                v["Size"] = format!(
                    "{} (virtual {})",
                    oci_rs_runtime::human_size(*rw),
                    oci_rs_runtime::human_size(*all)
                )
                .into();
            }
            v
        })
        .collect();
    write!(out, "{}", f.render_all(&rows, format::PS_HEADERS)?)?;
    Ok(())
}

/// `stats`: a table of docker's columns a second (one with `no_stream`), each reading set
/// against the one before for the CPU share. Named containers must run; unnamed, every
/// running one (one that ends meanwhile leaves the table).
/// How `stats` reads and prints.
struct StatsOptions {
    all: bool,
    no_trunc: bool,
    no_stream: bool,
}

fn stats(
    store: &Containers,
    how: &StatsOptions,
    format: Option<String>,
    names: Vec<String>,
    out: &mut impl Write,
) -> Result<()> {
    let no_stream = how.no_stream;
    let f = Format::parse(
        format.as_deref().unwrap_or("table"),
        r"table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}",
    )?;
    // The first table at once (CPU as the average since each container started), then
    // one a second from the readings' differences.
    let mut before: Vec<oci_rs_runtime::ContainerStats> = Vec::new();
    // On a terminal, each table replaces the last, as docker's (clear, then home).
    let redraw = !no_stream && std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        let (rows, now) = store.stats_rows(&names, how.all, &before)?;
        if redraw {
            write!(out, "\x1b[2J\x1b[H")?;
        }
        let rows: Vec<serde_json::Value> =
            rows.iter().map(|r| r.fields_with(how.no_trunc)).collect();
        write!(out, "{}", f.render_all(&rows, format::STATS_HEADERS)?)?;
        out.flush()?;
        if no_stream {
            return Ok(());
        }
        before = now;
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// `volume create|ls|inspect|rm` (a volume a container uses is kept).
fn volume_verb(
    store: &Containers,
    dir: &Path,
    verb: VolumeVerb,
    mut out: std::io::StdoutLock<'static>,
) -> Result<i32> {
    let vols = Volumes::open(dir)?;
    match verb {
        VolumeVerb::Create { label, opt, name } => {
            let pairs = |v: &[String]| {
                v.iter()
                    .map(|l| {
                        let (k, v) = l.split_once('=').unwrap_or((l, ""));
                        (k.to_owned(), v.to_owned())
                    })
                    .collect()
            };
            vols.create_with(&name, pairs(&label), pairs(&opt))?;
            writeln!(out, "{name}")?;
        }
        VolumeVerb::Ls {
            names_only,
            filter,
            format,
        } => {
            let filter = oci_rs_runtime::VolumeFilter::parse(&filter)?;
            let rows: Vec<serde_json::Value> = store
                .list_volumes(&filter)?
                .iter()
                .map(|v| v.ls_fields())
                .collect();
            let format = match (names_only, format) {
                (true, _) => "{{.Name}}".to_owned(),
                (false, f) => f.unwrap_or_else(|| "table".into()),
            };
            let f = Format::parse(&format, r"table {{.Driver}}\t{{.Name}}")?;
            write!(out, "{}", f.render_all(&rows, format::VOLUME_HEADERS)?)?;
        }
        VolumeVerb::Inspect { format, names } => {
            let infos = names
                .iter()
                .map(|n| vols.inspect(n))
                .collect::<Result<Vec<_>, _>>()?;
            print_docs(&infos, format.as_deref(), &mut out)?;
        }
        VolumeVerb::Prune {
            all,
            mut filter,
            force: _,
        } => {
            if all {
                filter.push("all=true".into());
            }
            let gone = store.prune_volumes(&oci_rs_runtime::VolumeFilter::parse(&filter)?)?;
            pruned(&mut out, "Volumes", &gone)?;
        }
        VolumeVerb::Rm { force, names } => {
            return each(names, &mut out, |n| {
                match vols.remove(n, &store.volume_users(n)) {
                    Err(oci_rs_runtime::EngineError::NoSuchVolume(_)) if force => {}
                    r => r?,
                }
                Ok(n.to_owned())
            });
        }
    }
    Ok(0)
}

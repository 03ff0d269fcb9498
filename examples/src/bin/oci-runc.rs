//! `oci-runc`: a runc-compatible command line over `oci-rs-runtime`.
//!
//! ```text
//! oci-runc spec                                  # writes a default config.json
//! oci-runc run --bundle DIR ID                   # create + start + wait, exit with its code
//! oci-runc create --bundle DIR [--pid-file F] ID && oci-runc start ID
//! oci-runc state ID | oci-runc list | oci-runc ps ID
//! oci-runc kill [--all] ID [SIGNAL] | oci-runc delete [--force] ID
//! oci-runc exec [--detach] [--pid-file F] [--process process.json] ID [CMD...]
//! oci-runc pause ID | oci-runc resume ID | oci-runc update [--resources FILE|-] ID
//! oci-runc ps [--format json] ID [ps arguments] | oci-runc features
//! ```
//!
//! Exit status is 1 on errors (as runc), the container's status for `run`.
//! `--systemd-cgroup` is accepted and ignored: cgroups are always managed through the file
//! system (cgroupfs), whatever the flag says. `--console-socket` receives the terminal's master
//! for `terminal: true`, as with runc.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use oci_rs_runtime::{Container, ContainerBuilder};
use oci_spec::runtime::Spec;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "oci-runc",
    version,
    about = "A runc-compatible runtime over oci-runtime"
)]
struct Cli {
    /// State directory.
    #[arg(long, global = true, default_value = "/run/oci-runc")]
    root: PathBuf,
    /// Log file (errors are also written to stderr).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    log_format: String,
    /// More logging.
    #[arg(long, global = true)]
    debug: bool,
    /// Accepted for compatibility; cgroups are managed through cgroupfs either way.
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Accepted for compatibility (true, false or auto): rootless is what the caller is.
    /// Before the verb, as containerd passes it (`spec --rootless` is the spec's own).
    #[arg(long = "rootless", num_args = 0..=1, default_missing_value = "true")]
    rootless_mode: Option<String>,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Create a container (its init waits for `start`).
    Create {
        /// The bundle directory (config.json and the rootfs).
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        /// Write the init's pid here.
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        /// A unix socket to send the terminal's master to (for `terminal: true`).
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        /// chroot instead of pivot_root.
        #[arg(long = "no-pivot")]
        no_pivot: bool,
        /// Accepted: no session keyring is made either way.
        #[arg(long = "no-new-keyring")]
        no_new_keyring: bool,
        /// Descriptors above stderr to pass on (only 0 is supported).
        #[arg(long = "preserve-fds", default_value_t = 0)]
        preserve_fds: u32,
        /// The container id.
        id: String,
    },
    /// Start a created container.
    Start {
        /// The container id.
        id: String,
    },
    /// Print a container's state as JSON.
    State {
        /// The container id.
        id: String,
    },
    /// Send a signal (default SIGTERM) to a container's init, or every process with --all.
    Kill {
        /// Every process of the container.
        #[arg(long, short)]
        all: bool,
        /// The container id.
        id: String,
        /// The signal: a name (`KILL`, `SIGKILL`) or a number.
        signal: Option<String>,
    },
    /// Delete a container (kill it first with --force).
    Delete {
        /// Kill a running container.
        #[arg(long, short)]
        force: bool,
        /// The container id.
        id: String,
    },
    /// Create, start and wait for a container.
    Run {
        /// The bundle directory.
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        /// Write the init's pid here.
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        /// Do not wait for the container.
        #[arg(long, short)]
        detach: bool,
        /// chroot instead of pivot_root.
        #[arg(long = "no-pivot")]
        no_pivot: bool,
        /// A unix socket to send the terminal's master to.
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        /// The container id.
        id: String,
    },
    /// Run a new process in a running container.
    Exec {
        /// A process.json.
        #[arg(long, short)]
        process: Option<PathBuf>,
        /// Do not wait: print nothing, write the pid file, leave the process running.
        #[arg(long, short)]
        detach: bool,
        /// Write the process's pid here.
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        /// A unix socket to send the terminal's master to.
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        /// Allocate a terminal (with --console-socket).
        #[arg(long, short)]
        tty: bool,
        /// Extra environment variables.
        #[arg(long = "env", short)]
        env: Vec<String>,
        /// Working directory.
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// The container id.
        id: String,
        /// The command.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List containers.
    List {
        /// table or json.
        #[arg(long, short, default_value = "table")]
        format: String,
    },
    /// Write a default config.json in the bundle.
    Spec {
        /// The bundle directory.
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        /// A rootless spec (user namespace mapping the caller).
        #[arg(long)]
        rootless: bool,
    },
    /// Print what this runtime supports, as JSON.
    Features,
    /// List the processes of a container: their pids, or with `ps` arguments after the id,
    /// the host's `ps` lines of the container's processes.
    Ps {
        /// table or json.
        #[arg(long, short, default_value = "table")]
        format: String,
        /// The container id.
        id: String,
        /// Arguments for `ps` (table format only).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Suspend every process of a container (the cgroup freezer).
    Pause {
        /// The container id.
        id: String,
    },
    /// Resume a paused container.
    Resume {
        /// The container id.
        id: String,
    },
    /// Change a container's resource limits.
    Update {
        /// A JSON file of linux.resources (`-`: standard input), as containerd sends.
        #[arg(long, short)]
        resources: Option<PathBuf>,
        /// Memory limit in bytes.
        #[arg(long, short = 'm')]
        memory: Option<i64>,
        /// Memory plus swap limit in bytes (-1: unlimited).
        #[arg(long = "memory-swap")]
        memory_swap: Option<i64>,
        /// Memory soft limit in bytes.
        #[arg(long = "memory-reservation")]
        memory_reservation: Option<i64>,
        /// CPU shares (relative weight).
        #[arg(long = "cpu-shares")]
        cpu_shares: Option<u64>,
        /// CPU CFS quota in microseconds per period.
        #[arg(long = "cpu-quota")]
        cpu_quota: Option<i64>,
        /// CPU CFS period in microseconds.
        #[arg(long = "cpu-period")]
        cpu_period: Option<u64>,
        /// CPUs the container may use (`0-3`, `0,1`).
        #[arg(long = "cpuset-cpus")]
        cpuset_cpus: Option<String>,
        /// Memory nodes the container may use.
        #[arg(long = "cpuset-mems")]
        cpuset_mems: Option<String>,
        /// Maximum number of processes (0 or -1: unlimited).
        #[arg(long = "pids-limit")]
        pids_limit: Option<i64>,
        /// The container id.
        id: String,
    },
}

/// The resources an `update` asks for: the `--resources` document, with each flag given
/// set over it.
#[allow(clippy::too_many_arguments)]
fn update_resources(
    file: Option<&Path>,
    memory: Option<i64>,
    memory_swap: Option<i64>,
    memory_reservation: Option<i64>,
    cpu_shares: Option<u64>,
    cpu_quota: Option<i64>,
    cpu_period: Option<u64>,
    cpuset_cpus: Option<String>,
    cpuset_mems: Option<String>,
    pids_limit: Option<i64>,
) -> Result<oci_spec::runtime::LinuxResources> {
    use oci_spec::runtime::{LinuxPids, LinuxResources};
    let mut r: LinuxResources = match file {
        None => LinuxResources::default(),
        Some(f) => {
            let bytes = if f == Path::new("-") {
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut b)
                    .context("reading the resources from standard input")?;
                b
            } else {
                std::fs::read(f).with_context(|| format!("reading {}", f.display()))?
            };
            serde_json::from_slice(&bytes).context("the resources are not linux.resources JSON")?
        }
    };
    if memory.is_some() || memory_swap.is_some() || memory_reservation.is_some() {
        let mut m = r.memory().unwrap_or_default();
        if let Some(v) = memory {
            m.set_limit(Some(v));
        }
        if let Some(v) = memory_swap {
            m.set_swap(Some(v));
        }
        if let Some(v) = memory_reservation {
            m.set_reservation(Some(v));
        }
        r.set_memory(Some(m));
    }
    if cpu_shares.is_some()
        || cpu_quota.is_some()
        || cpu_period.is_some()
        || cpuset_cpus.is_some()
        || cpuset_mems.is_some()
    {
        let mut c = r.cpu().clone().unwrap_or_default();
        if let Some(v) = cpu_shares {
            c.set_shares(Some(v));
        }
        if let Some(v) = cpu_quota {
            c.set_quota(Some(v));
        }
        if let Some(v) = cpu_period {
            c.set_period(Some(v));
        }
        if let Some(v) = cpuset_cpus {
            c.set_cpus(Some(v));
        }
        if let Some(v) = cpuset_mems {
            c.set_mems(Some(v));
        }
        r.set_cpu(Some(c));
    }
    if let Some(v) = pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(v);
        r.set_pids(Some(p));
    }
    Ok(r)
}

fn signal(s: Option<&str>) -> Result<i32> {
    Ok(s.map_or(Ok(libc::SIGTERM), oci_rs_runtime::parse_signal)?)
}

fn load_spec(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    Spec::load(&path).with_context(|| format!("loading {}", path.display()))
}

fn builder(
    root: &Path,
    bundle: &Path,
    id: &str,
    no_pivot: bool,
    console: Option<&PathBuf>,
) -> Result<ContainerBuilder> {
    let bundle =
        std::fs::canonicalize(bundle).with_context(|| format!("bundle {}", bundle.display()))?;
    let spec = load_spec(&bundle)?;
    let mut b = ContainerBuilder::new(id, spec, &bundle)
        .state_root(root)
        .no_pivot(no_pivot);
    if let Some(c) = console {
        b = b.console_socket(c);
    }
    Ok(b)
}

fn write_pid(file: Option<&PathBuf>, pid: i32) -> Result<()> {
    if let Some(f) = file {
        std::fs::write(f, pid.to_string()).with_context(|| format!("writing {}", f.display()))?;
    }
    Ok(())
}

fn main_inner(cli: Cli) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    match cli.verb {
        Verb::Create {
            bundle,
            pid_file,
            console_socket,
            no_pivot,
            no_new_keyring: _,
            preserve_fds,
            id,
        } => {
            if preserve_fds > 0 {
                bail!("--preserve-fds {preserve_fds}: passing extra descriptors is not supported");
            }
            let c =
                builder(&cli.root, &bundle, &id, no_pivot, console_socket.as_ref())?.create()?;
            write_pid(pid_file.as_ref(), c.pid())?;
        }
        Verb::Start { id } => Container::load(&cli.root, &id)?.start()?,
        Verb::State { id } => {
            let c = Container::load(&cli.root, &id)?;
            let mut state = serde_json::to_value(c.state())?;
            // runc's word for a frozen container, which the runtime spec's states lack.
            if c.status() == oci_rs_runtime::Status::Paused {
                state["status"] = "paused".into();
            }
            serde_json::to_writer_pretty(&mut out, &state)?;
            writeln!(out)?;
        }
        Verb::Kill {
            all,
            id,
            signal: sig,
        } => {
            let c = Container::load(&cli.root, &id)?;
            let s = signal(sig.as_deref())?;
            if all {
                c.kill_all(s)?
            } else {
                c.kill(s)?
            }
        }
        Verb::Delete { force, id } => match Container::load(&cli.root, &id) {
            Ok(c) => c.delete(force)?,
            Err(oci_rs_runtime::Error::NotFound(_)) if force => {}
            Err(e) => return Err(e.into()),
        },
        Verb::Run {
            bundle,
            pid_file,
            detach,
            no_pivot,
            console_socket,
            id,
        } => {
            let mut c =
                builder(&cli.root, &bundle, &id, no_pivot, console_socket.as_ref())?.create()?;
            write_pid(pid_file.as_ref(), c.pid())?;
            if let Err(e) = c.start() {
                let _ = Container::load(&cli.root, &id).map(|c| c.delete(true));
                return Err(e.into());
            }
            if detach {
                return Ok(0);
            }
            let code = c.wait()?;
            c.delete(true)?;
            return Ok(code);
        }
        Verb::Exec {
            process,
            detach,
            pid_file,
            console_socket,
            tty,
            env,
            cwd,
            id,
            args,
        } => {
            if tty && console_socket.is_none() {
                bail!("--tty needs --console-socket");
            }
            let c = Container::load(&cli.root, &id)?;
            let p: oci_spec::runtime::Process = match process {
                Some(f) => serde_json::from_slice(
                    &std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?,
                )
                .with_context(|| format!("{} is not a process", f.display()))?,
                None => {
                    if args.is_empty() {
                        bail!("exec needs --process FILE or a command");
                    }
                    // The container's own process settings, with these arguments.
                    let spec = load_spec(&c.state().bundle().clone())?;
                    let mut p = spec
                        .process()
                        .clone()
                        .context("the container's config has no process")?;
                    p.set_args(Some(args));
                    p.set_terminal(Some(tty));
                    p
                }
            };
            let mut p = p;
            if !env.is_empty() {
                let mut all = p.env().clone().unwrap_or_default();
                all.extend(env);
                p.set_env(Some(all));
            }
            if let Some(cwd) = cwd {
                p.set_cwd(cwd);
            }
            let running = match &console_socket {
                Some(sock) => c.exec_terminal(&p, sock)?,
                None => c.exec(&p, [None, None, None])?,
            };
            write_pid(pid_file.as_ref(), running.pid())?;
            if detach {
                return Ok(0);
            }
            return Ok(running.wait()?);
        }
        Verb::List { format } => {
            let list = Container::list(&cli.root)?;
            if format == "json" {
                let states: Vec<_> = list.iter().map(|c| c.state()).collect();
                serde_json::to_writer(&mut out, &states)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{:<24} {:<8} {:<10} BUNDLE", "ID", "PID", "STATUS")?;
                for c in list {
                    let st = c.state();
                    writeln!(
                        out,
                        "{:<24} {:<8} {:<10} {}",
                        c.id(),
                        st.pid().unwrap_or(0),
                        c.status(),
                        st.bundle().display()
                    )?;
                }
            }
        }
        Verb::Spec { bundle, rootless } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("File {} exists. Remove it first", path.display());
            }
            let spec = if rootless {
                Spec::rootless(
                    rustix::process::getuid().as_raw(),
                    rustix::process::getgid().as_raw(),
                )
            } else {
                Spec::default()
            };
            // As runc's template since CVE-2022-29162: no inheritable or ambient capabilities
            // (oci-spec's defaults fill both).
            let mut spec = spec;
            if let Some(mut p) = spec.process().clone() {
                if let Some(mut c) = p.capabilities().clone() {
                    c.set_inheritable(None);
                    c.set_ambient(None);
                    p.set_capabilities(Some(c));
                }
                spec.set_process(Some(p));
            }
            spec.save(&path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Verb::Features => {
            let f = serde_json::json!({
                "ociVersionMin": "1.0.0",
                "ociVersionMax": "1.2.0",
                "hooks": ["prestart", "createRuntime", "poststart", "poststop"],
                "mountOptions": ["ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "bind", "rbind",
                    "private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable",
                    "noatime", "nodiratime", "relatime", "strictatime", "sync"],
                "linux": {
                    "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
                    "cgroup": {"v1": true, "v2": true, "systemd": false},
                    "seccomp": {"enabled": true, "actions": ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_LOG", "SCMP_ACT_ALLOW"], "operators": ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"]},
                    "apparmor": {"enabled": false},
                    "selinux": {"enabled": false}
                }
            });
            serde_json::to_writer_pretty(&mut out, &f)?;
            writeln!(out)?;
        }
        Verb::Pause { id } => Container::load(&cli.root, &id)?.pause()?,
        Verb::Resume { id } => Container::load(&cli.root, &id)?.resume()?,
        Verb::Update {
            resources,
            memory,
            memory_swap,
            memory_reservation,
            cpu_shares,
            cpu_quota,
            cpu_period,
            cpuset_cpus,
            cpuset_mems,
            pids_limit,
            id,
        } => {
            let c = Container::load(&cli.root, &id)?;
            let r = update_resources(
                resources.as_deref(),
                memory,
                memory_swap,
                memory_reservation,
                cpu_shares,
                cpu_quota,
                cpu_period,
                cpuset_cpus,
                cpuset_mems,
                pids_limit,
            )?;
            c.update(&r)?;
        }
        Verb::Ps {
            format,
            id,
            ps_args,
        } => {
            let c = Container::load(&cli.root, &id)?;
            let pids = c
                .cgroup()
                .map(|g| g.pids())
                .unwrap_or_else(|| vec![c.pid()]);
            if format == "json" {
                if !ps_args.is_empty() {
                    bail!("ps arguments need the table format");
                }
                serde_json::to_writer(&mut out, &pids)?;
                writeln!(out)?;
            } else if !ps_args.is_empty() {
                // As runc: the host's ps with these arguments, its header and the lines of
                // the container's pids.
                let ps = std::process::Command::new("ps")
                    .args(&ps_args)
                    .output()
                    .context("running ps")?;
                if !ps.status.success() {
                    bail!(
                        "ps {}: {}",
                        ps_args.join(" "),
                        String::from_utf8_lossy(&ps.stderr).trim()
                    );
                }
                let text = String::from_utf8_lossy(&ps.stdout);
                let mut lines = text.lines();
                let header = lines.next().unwrap_or_default();
                let column = header
                    .split_whitespace()
                    .position(|h| h == "PID")
                    .context("ps printed no PID column")?;
                writeln!(out, "{header}")?;
                for line in lines {
                    let pid = line
                        .split_whitespace()
                        .nth(column)
                        .and_then(|p| p.parse().ok());
                    if pid.is_some_and(|p: i32| pids.contains(&p)) {
                        writeln!(out, "{line}")?;
                    }
                }
            } else {
                writeln!(out, "PID")?;
                for p in pids {
                    writeln!(out, "{p}")?;
                }
            }
        }
    }
    Ok(0)
}

fn log_error(cli_log: Option<&PathBuf>, json: bool, msg: &str) {
    let line = if json {
        serde_json::json!({"level": "error", "msg": msg}).to_string()
    } else {
        format!("level=error msg={msg:?}")
    };
    if let Some(p) = cli_log {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            let _ = writeln!(f, "{line}");
        }
    }
    eprintln!("{line}");
}

fn main() {
    let cli = Cli::parse();
    let log = cli.log.clone();
    let json = cli.log_format == "json";
    if cli.debug {
        eprintln!("oci-runc: root {}", cli.root.display());
    }
    let _ = (cli.systemd_cgroup, &cli.rootless_mode);
    // The verbs that start processes in a container (start, when it runs startContainer
    // hooks there) first re-execute from a sealed view of it, so that a container cannot
    // reach this program's file through /proc/self/exe (CVE-2019-5736). The others stay a
    // plain start, which saves an execve on every start of Kubernetes' pods.
    let seal = match &cli.verb {
        Verb::Create { .. } | Verb::Run { .. } | Verb::Exec { .. } => true,
        Verb::Start { id } => {
            Container::load(&cli.root, id).map_or(true, |c| c.has_start_container_hooks())
        }
        _ => false,
    };
    if seal {
        if let Err(e) = oci_rs_runtime::reexec_sealed() {
            log_error(log.as_ref(), json, &e.to_string());
            std::process::exit(1);
        }
    }
    match main_inner(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            log_error(log.as_ref(), json, &format!("{e:#}"));
            std::process::exit(1);
        }
    }
}

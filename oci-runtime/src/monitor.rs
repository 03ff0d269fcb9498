#![allow(unsafe_code)]

use crate::container::{private_dir, proc_start_time, write_atomic, Container, ContainerBuilder};
use crate::error::{Error, Result};
use crate::logs::{LogLimits, LogStream, LogWriter};
use crate::now_ns;
use crate::Frame;
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The environment variable that makes [`serve_if_requested`] run a monitor.
const ENV: &str = "_OCI_RUNTIME_MONITOR";
/// The descriptor on which a starting monitor reports to the program that spawned it.
const READY_FD: i32 = 3;
/// The attach socket's name in the monitor directory.
pub const ATTACH_SOCKET: &str = "attach.sock";
/// The log file's name in the monitor directory.
pub const LOG_FILE: &str = "ctr.log";
const CONFIG_FILE: &str = "monitor.json";
pub(crate) const STATUS_FILE: &str = "status.json";
const STOP_FILE: &str = "stop-requested";
/// A restart is under way: the monitor that sees the process end leaves a `--rm`
/// container in place for the next one.
const KEEP_FILE: &str = "keep-on-exit";

/// The longest wait between two restarts (docker's).
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

/// When a container is started again after it exits (docker's `--restart`). Restarts back off
/// as docker's do: 100 ms before the first, doubled each time up to a minute, reset once a run
/// has lasted 10 s; meanwhile the state is [`MonitorState::Restarting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never.
    #[default]
    No,
    /// When it exits with a code other than 0, at most `max` times (None: no limit).
    OnFailure {
        /// The most restarts.
        max: Option<u32>,
    },
    /// Always, unless stopped with [`Monitor::stop`].
    Always,
    /// As `Always`; the difference (after a reboot) is the caller's to honour.
    UnlessStopped,
}

impl std::str::FromStr for RestartPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::option(
                "restart policy",
                s,
                "expected no, on-failure[:N], always or unless-stopped",
            )
        };
        Ok(match s.split_once(':') {
            None => match s {
                "no" | "" => Self::No,
                "on-failure" => Self::OnFailure { max: None },
                "always" => Self::Always,
                "unless-stopped" => Self::UnlessStopped,
                _ => return Err(bad()),
            },
            Some(("on-failure", n)) => Self::OnFailure {
                max: Some(n.parse().map_err(|_| bad())?),
            },
            Some(_) => return Err(bad()),
        })
    }
}

/// What a monitor runs and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorConfig {
    /// The container id (the runtime's).
    pub id: String,
    /// The runtime spec.
    pub spec: Spec,
    /// The bundle directory (relative paths in the spec are relative to it).
    pub bundle: PathBuf,
    /// The runtime's state root.
    pub state_root: PathBuf,
    /// The monitor's own directory (config, status, log, attach socket): created 0700.
    pub dir: PathBuf,
    /// The log's size cap.
    pub log: LogLimits,
    /// When to start the container again.
    pub restart: RestartPolicy,
    /// Run when the container has ended for good (argv; empty: nothing). `/proc/self/exe`
    /// names the monitor's program, which is the program that spawned it.
    pub exit_command: Vec<String>,
    /// Remove the container from the [container store](crate::Containers) under
    /// this data directory when it has ended for good (`run --rm`), in the monitor itself:
    /// the program that spawned it needs no verb for it.
    #[cfg(feature = "engine")]
    #[serde(default)]
    pub remove_from: Option<PathBuf>,
    /// Give the container a stdin pipe fed by attached clients (`-i`), instead of /dev/null.
    pub stdin: bool,
    /// Start the process only once a client has attached, so it misses no output
    /// (`run` in the foreground).
    pub attach_first: bool,
    /// Keep a tiny reaper as the container's pid 1 (`--init`, see
    /// [`ContainerBuilder::reaper`]).
    #[serde(default)]
    pub init: bool,
    /// The network to set up before each start (and undo after each exit).
    #[cfg(feature = "network")]
    #[serde(default)]
    pub network: Option<crate::NetworkPlan>,
    /// Where the monitor records the container's `start`, `die` and `health_status` events
    /// (see [`crate::Journal`]); none when `None`.
    #[serde(default)]
    pub events: Option<crate::EventSink>,
    /// The health check it runs in the container while it runs (not while it is paused),
    /// recorded in [`MonitorStatus::health`].
    #[serde(default)]
    pub health: Option<crate::HealthProbe>,
    /// Whether the spawning program accepted running unsealed ([`crate::allow_unsealed`]).
    #[serde(default)]
    unsealed: bool,
}

impl MonitorConfig {
    /// The configuration a monitor was spawned with, from its directory (`monitor.json`).
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::State {
            path: path.clone(),
            reason: e.to_string(),
        })
    }

    /// Writes this configuration into its directory (`monitor.json`, replaced whole), where
    /// the next [`Monitor::spawn`] of the container reads it back.
    pub(crate) fn write(&self) -> Result<()> {
        let bytes = serde_json::to_vec(self).map_err(|e| Error::State {
            path: self.dir.join(CONFIG_FILE),
            reason: e.to_string(),
        })?;
        write_atomic(&self.dir, CONFIG_FILE, &bytes)
    }

    /// A monitor for container `id` with the defaults: no restart, no exit command, no
    /// stdin, logs without a cap.
    pub fn new(id: &str, spec: Spec, bundle: &Path, state_root: &Path, dir: &Path) -> Self {
        Self {
            id: id.to_owned(),
            spec,
            bundle: bundle.to_owned(),
            state_root: state_root.to_owned(),
            dir: dir.to_owned(),
            log: LogLimits::default(),
            restart: RestartPolicy::No,
            exit_command: Vec::new(),
            #[cfg(feature = "engine")]
            remove_from: None,
            stdin: false,
            attach_first: false,
            init: false,
            #[cfg(feature = "network")]
            network: None,
            events: None,
            health: None,
            unsealed: false,
        }
    }
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MonitorState {
    /// Set up, not started.
    Created,
    /// Its process runs.
    Running,
    /// Exited, and will be started again.
    Restarting,
    /// Exited for good (or its monitor is gone and it no longer runs).
    Exited,
}

impl std::fmt::Display for MonitorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MonitorState::Created => "created",
            MonitorState::Running => "running",
            MonitorState::Restarting => "restarting",
            MonitorState::Exited => "exited",
        })
    }
}

/// `last`, the status of a container that has since been removed (by its `--rm` monitor).
fn removed(mut last: MonitorStatus) -> MonitorStatus {
    last.state = MonitorState::Exited;
    last.pid = 0;
    last.monitor_alive = false;
    last
}

/// What a monitor records, as [`Monitor::status`] reconciles it with the process table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorStatus {
    /// The state.
    pub state: MonitorState,
    /// The container's init (0 before it exists).
    pub pid: i32,
    /// The monitor's pid.
    pub monitor_pid: i32,
    monitor_start: u64,
    /// When the process last started (nanoseconds since the epoch).
    pub started_at: Option<u64>,
    /// When it last ended.
    pub finished_at: Option<u64>,
    /// How it last ended: its exit code, 128 + n for signal n, 125 when it could not be
    /// created or started, 255 when its monitor died and the code is lost.
    pub exit_code: Option<i32>,
    /// How often it was restarted.
    pub restart_count: u32,
    /// Why it could not be created or started.
    pub error: Option<String>,
    /// Its network while it runs: addresses and published ports.
    #[cfg(feature = "network")]
    #[serde(default)]
    pub network: Option<crate::NetworkAttachment>,
    /// Its health, when it has a health check: reset to starting at each start, kept after
    /// it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::Health>,
    /// Whether the monitor still runs.
    #[serde(skip)]
    pub monitor_alive: bool,
}

impl MonitorStatus {
    /// docker's STATUS text of a container in this state: "Up 5 seconds", "Exited (0) 2
    /// minutes ago", "Restarting (1) 3 seconds ago", "Created" (`ps`, and the Engine API's
    /// container list).
    pub fn status_text(&self) -> String {
        let now = now_ns();
        match self.state {
            MonitorState::Created => "Created".into(),
            MonitorState::Running => {
                let up = human_duration(
                    now.saturating_sub(self.started_at.unwrap_or(now)) / 1_000_000_000,
                );
                match self.health.as_ref().map(|h| h.status) {
                    None => format!("Up {up}"),
                    Some(crate::HealthStatus::Starting) => format!("Up {up} (health: starting)"),
                    Some(h) => format!("Up {up} ({h})"),
                }
            }
            MonitorState::Restarting => format!(
                "Restarting ({}) {}",
                self.exit_code.unwrap_or(0),
                ago(self.finished_at.unwrap_or(now))
            ),
            MonitorState::Exited => format!(
                "Exited ({}) {}",
                self.exit_code.unwrap_or(255),
                ago(self.finished_at.unwrap_or(now))
            ),
        }
    }
}

/// docker's "5 seconds ago", "2 minutes ago", "About an hour ago" for a time in nanoseconds
/// since the epoch.
pub fn ago(ns: u64) -> String {
    let secs = now_ns().saturating_sub(ns) / 1_000_000_000;
    format!("{} ago", human_duration(secs))
}

/// docker's units for a duration (go-units `HumanDuration`): "Less than a second",
/// "5 seconds", "About a minute", "3 hours", ...
pub fn human_duration(secs: u64) -> String {
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 48 * 3600 => format!("{} hours", s / 3600),
        s if s < 14 * 86_400 => format!("{} days", s / 86_400),
        s if s < 60 * 86_400 => format!("{} weeks", s / (7 * 86_400)),
        s if s < 2 * 365 * 86_400 => format!("{} months", s / (30 * 86_400)),
        s => format!("{} years", s / (365 * 86_400)),
    }
}

/// docker's human size (go-units `HumanSize`): decimal units, about four significant
/// digits: `0B`, `999B`, `1.234kB`, `4.4MB`, `115.3MB`.
///
/// ```
/// assert_eq!(oci_rs_runtime::human_size(4_400_000), "4.4MB");
/// ```
pub fn human_size(bytes: u64) -> String {
    scaled(bytes, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB", "EB"])
}

/// docker's memory size (go-units `BytesSize`): binary units, `1.98MiB`, `7.773GiB`.
///
/// ```
/// assert_eq!(oci_rs_runtime::binary_size(2_076_180), "1.98MiB");
/// ```
pub fn binary_size(bytes: u64) -> String {
    scaled(
        bytes,
        1024.0,
        &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"],
    )
}

fn scaled(bytes: u64, base: f64, units: &[&str]) -> String {
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= base && u < units.len() - 1 {
        v /= base;
        u += 1;
    }
    // %.4g as go-units prints it: up to four significant digits, no trailing zeros.
    let digits = if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let mut t = format!("{v:.*}", digits);
    if t.contains('.') {
        t = t.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{t}{}", units[u])
}

/// The container monitor: what keeps a container's stdio, logs and exit status after the
/// program that started it has gone (containerd's shim and podman's conmon sit here).
///
/// [`Monitor::spawn`] starts one per container, detached: the calling program is executed
/// again through `/proc/self/exe` (so the monitor runs the sealed view of [`crate::reexec_sealed`]) with
/// an environment variable that [`serve_if_requested`], called first thing in `main`, turns
/// into the monitor's loop. That process makes a new session and forks once more (the double
/// fork: it is nobody's child and has no terminal), becomes a child subreaper, and then:
///
/// - creates and starts the container with its stdout and stderr on pipes (or a terminal,
///   whose master it holds), and its stdin on a pipe when asked;
/// - writes every byte of output to the container's log ([`crate::LogWriter`], CRI format) and to
///   attached clients ([`crate::Frame`]), and feeds their input to stdin;
/// - records the state, pid, start and finish times, exit code and restart count in
///   `status.json`, written to a temporary file and renamed, so another process always reads
///   a whole record ([`Monitor::status`]);
/// - on exit, deletes the runtime state, restarts the container as its [`RestartPolicy`]
///   says (with docker's doubling back-off from 100 ms), and at the end runs the exit command
///   (`--rm` cleanup, like conmon's `--exit-command`) before it ends.
///
/// It survives the program that started it exiting or being killed. A monitor that is itself
/// killed is noticed by [`Monitor::status`]: its pid and start time no longer match, and the
/// container's own runtime state (the init's pid with its start time) then says whether the
/// container still runs, so a reused pid is never mistaken for it.
///
/// The monitor is single-threaded and allocates nothing per byte of output beyond one read
/// buffer and the log line, so its resident memory stays flat (see benches/RESULTS.md).
///
/// Why a re-executed program and not a `fork` of the caller: the caller may be
/// multi-threaded (tokio), and a forked copy of such a program may only make
/// async-signal-safe calls until it executes something. A separate helper binary would have
/// to be found and kept in step; the calling program is already there, already sealed.
///
/// A handle on a container's monitor (its directory).
#[derive(Debug, Clone)]
pub struct Monitor {
    dir: PathBuf,
    id: String,
    state_root: PathBuf,
}

fn alive(pid: i32, start: u64) -> bool {
    pid > 0 && proc_start_time(pid).is_some_and(|(s, st)| s == start && st != 'Z' && st != 'X')
}

impl Monitor {
    /// Starts a detached monitor for `cfg` and returns once the container's process has
    /// started (or, with `attach_first`, once it is created and waits for a client): the
    /// handle and the init's pid. Fails with the container's creation error when it could
    /// not be created or started.
    pub fn spawn(mut cfg: MonitorConfig) -> Result<(Monitor, i32)> {
        crate::exe::check()?;
        crate::container::validate_id(&cfg.id)?;
        cfg.unsealed = !crate::is_sealed();
        private_dir(&cfg.dir)?;
        cfg.write()?;
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| Error::io("pipe", &cfg.dir, e))?;
        let errlog = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(cfg.dir.join("monitor.err"))
            .map_err(|e| Error::io("open", cfg.dir.join("monitor.err"), e))?;
        let mut cmd = std::process::Command::new("/proc/self/exe");
        std::os::unix::process::CommandExt::arg0(&mut cmd, "oci-monitor");
        cmd.arg(&cfg.id)
            .env(ENV, &cfg.dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(errlog);
        let w_raw = w.as_raw_fd();
        // SAFETY: between fork and exec the closure makes only async-signal-safe calls
        // (dup2, fcntl, setsid) on descriptors that are open in the child.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                if libc::dup2(w_raw, READY_FD) < 0
                    || libc::fcntl(READY_FD, libc::F_SETFD, 0) < 0
                    || libc::setsid() < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut first = cmd
            .spawn()
            .map_err(|e| Error::io("spawn", "the monitor (/proc/self/exe)", e))?;
        drop(w);
        // The first stage forks the monitor and exits at once.
        let _ = first.wait();
        let mut report = String::new();
        std::fs::File::from(r)
            .take(1 << 16)
            .read_to_string(&mut report)
            .map_err(|e| Error::io("read", "the monitor's report", e))?;
        let m = Monitor {
            dir: cfg.dir.clone(),
            id: cfg.id.clone(),
            state_root: cfg.state_root.clone(),
        };
        match serde_json::from_str::<Ready>(report.trim()) {
            Ok(Ready { pid: Some(pid), .. }) => Ok((m, pid)),
            Ok(Ready { error: Some(e), .. }) => Err(Error::Monitor {
                id: cfg.id,
                reason: e,
            }),
            _ => Err(Error::Monitor {
                id: cfg.id,
                reason: format!(
                    "the monitor ended without reporting (see {})",
                    cfg.dir.join("monitor.err").display()
                ),
            }),
        }
    }

    /// Records `cfg` as a container that is created and not started (docker's `create`):
    /// its directory, configuration and a `created` status with no monitor. Nothing runs
    /// until a later [`Monitor::spawn`] with the same directory. [`Monitor::status`] shows
    /// it as created for as long as no monitor has been spawned.
    pub fn prepare(mut cfg: MonitorConfig) -> Result<Monitor> {
        crate::container::validate_id(&cfg.id)?;
        cfg.unsealed = !crate::is_sealed();
        private_dir(&cfg.dir)?;
        cfg.write()?;
        let status = MonitorStatus {
            state: MonitorState::Created,
            pid: 0,
            monitor_pid: 0,
            monitor_start: 0,
            started_at: None,
            finished_at: None,
            exit_code: None,
            restart_count: 0,
            error: None,
            #[cfg(feature = "network")]
            network: None,
            health: None,
            monitor_alive: false,
        };
        let bytes = serde_json::to_vec(&status).map_err(|e| Error::State {
            path: cfg.dir.join(STATUS_FILE),
            reason: e.to_string(),
        })?;
        write_atomic(&cfg.dir, STATUS_FILE, &bytes)?;
        Ok(Monitor {
            dir: cfg.dir,
            id: cfg.id,
            state_root: cfg.state_root,
        })
    }

    /// The monitor of the container whose monitor directory is `dir`.
    pub fn open(dir: &Path) -> Result<Monitor> {
        let cfg = MonitorConfig::read(dir)?;
        Ok(Monitor {
            dir: dir.to_owned(),
            id: cfg.id,
            state_root: cfg.state_root,
        })
    }

    /// The monitor's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The container's log file (rotated ones are `ctr.log.1`, ...).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    /// The status, reconciled with the process table: when the monitor is gone, the
    /// container runs only if its init (by pid and start time) still does.
    pub fn status(&self) -> Result<MonitorStatus> {
        let path = self.dir.join(STATUS_FILE);
        let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        let mut s: MonitorStatus = serde_json::from_slice(&bytes).map_err(|e| Error::State {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        s.monitor_alive = alive(s.monitor_pid, s.monitor_start);
        // Prepared and never spawned: created, with nothing to reconcile.
        let never_spawned = s.monitor_pid == 0 && s.state == MonitorState::Created;
        if !s.monitor_alive && !never_spawned && s.state != MonitorState::Exited {
            let runs = Container::load(&self.state_root, &self.id).is_ok_and(|c| {
                matches!(c.status(), crate::Status::Running | crate::Status::Paused)
            });
            if !runs {
                s.state = MonitorState::Exited;
                s.exit_code.get_or_insert(255);
                s.finished_at.get_or_insert_with(now_ns);
            }
        }
        Ok(s)
    }

    /// The runtime's view of the container, while it exists.
    pub fn container(&self) -> Result<Container> {
        Container::load(&self.state_root, &self.id)
    }

    /// Sends `signal` to the container's init.
    pub fn kill(&self, signal: i32) -> Result<()> {
        self.container()?.kill(signal)
    }

    /// Stops the container: no restart follows; `signal` to its init, then SIGKILL to all
    /// its processes after `timeout`. Returns the status once it has exited.
    ///
    /// A container whose monitor removes it as it ends (`--rm`) may go at any point of this:
    /// that is a stop too, and the last status read is returned as exited.
    pub fn stop(&self, signal: i32, timeout: Duration) -> Result<MonitorStatus> {
        let before = self.status()?;
        // Created and never started (no monitor was ever spawned): nothing runs to stop.
        if before.state == MonitorState::Created && before.monitor_pid == 0 {
            return Ok(before);
        }
        if let Err(e) = write_atomic(&self.dir, STOP_FILE, b"") {
            if !self.dir.join(STATUS_FILE).exists() {
                return Ok(removed(before));
            }
            return Err(e);
        }
        if let Ok(c) = self.container() {
            if c.status() != crate::Status::Stopped {
                let _ = c.kill(signal);
                let deadline = Instant::now() + timeout;
                while Instant::now() < deadline && c.status() != crate::Status::Stopped {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if c.status() != crate::Status::Stopped {
                    let _ = c.kill_all(libc::SIGKILL);
                    let _ = c.kill(libc::SIGKILL);
                }
            }
        }
        self.wait_exited_from(Some(before), Duration::from_secs(30))
    }

    /// Waits until the container has exited for good (not restarting), its monitor has
    /// recorded it (or is gone), and returns the status.
    ///
    /// A container whose monitor removes it when it ends (`--rm`) may be gone by the time
    /// its status is read: that is an exit too, and the last status seen is returned as
    /// exited (an error only when none was ever read).
    pub fn wait_exited(&self, timeout: Duration) -> Result<MonitorStatus> {
        self.wait_exited_from(None, timeout)
    }

    /// [`Monitor::wait_exited`], knowing `last`, a status read before.
    fn wait_exited_from(
        &self,
        mut last: Option<MonitorStatus>,
        timeout: Duration,
    ) -> Result<MonitorStatus> {
        let deadline = Instant::now() + timeout;
        let mut delay = Duration::from_millis(2);
        loop {
            let s = match (self.status(), last.take()) {
                (Ok(s), _) => s,
                (Err(Error::Io { ref source, .. }), Some(prev))
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    return Ok(removed(prev));
                }
                (Err(e), _) => return Err(e),
            };
            if s.state == MonitorState::Exited || Instant::now() > deadline {
                return Ok(s);
            }
            last = Some(s.clone());
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }

    /// Whether a stop was asked for since the container last started.
    pub fn stop_requested(&self) -> bool {
        self.dir.join(STOP_FILE).exists()
    }

    /// Says that the container is being restarted (docker's `restart`): when its process
    /// ends, its monitor does not remove a container run with `rm`; the next monitor
    /// forgets this as it starts.
    pub fn keep_on_exit(&self) -> Result<()> {
        write_atomic(&self.dir, KEEP_FILE, b"")
    }

    /// Asks the monitor of a stopped container whose monitor is gone to go again: clears
    /// the stop request, so a new monitor with this directory restarts as its policy says.
    pub fn clear_stop(&self) {
        let _ = std::fs::remove_file(self.dir.join(STOP_FILE));
    }

    /// Connects to the monitor's attach socket.
    pub fn attach(&self) -> Result<crate::Attach> {
        crate::Attach::connect(&self.dir)
    }
}

#[derive(Serialize, Deserialize, Default)]
struct Ready {
    pid: Option<i32>,
    error: Option<String>,
}

/// Runs the monitor loop and exits when this process was started by [`Monitor::spawn`];
/// returns at once otherwise. Call it first in `main` (before [`crate::reexec_sealed`]
/// and before any thread starts) in every program that spawns monitors.
pub fn serve_if_requested() {
    let Some(dir) = std::env::var_os(ENV) else {
        return;
    };
    // SAFETY: called first in main, while the process has one thread.
    unsafe { std::env::remove_var(ENV) };
    // The double fork's second half: the first stage exits, the monitor is nobody's child.
    // SAFETY: fork in a single-threaded process; the parent only calls _exit.
    match unsafe { libc::fork() } {
        0 => {}
        -1 => std::process::exit(125),
        _ => unsafe { libc::_exit(0) },
    }
    // Nothing the spawning program left open (a make jobserver, a test harness's pipes)
    // stays open for the monitor's life.
    // SAFETY: close_range closes descriptors above the report pipe; none is in use here.
    unsafe { libc::syscall(libc::SYS_close_range, READY_FD as u32 + 1, u32::MAX, 0u32) };
    // SAFETY: READY_FD was put there by Monitor::spawn for this process alone.
    let ready = unsafe { OwnedFd::from_raw_fd(READY_FD) };
    let _ = rustix::io::fcntl_setfd(&ready, rustix::io::FdFlags::CLOEXEC);
    // SAFETY: ignoring SIGPIPE: a client that goes away is an EPIPE, not our death.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let code = match Serve::new(Path::new(&dir), ready) {
        Ok(mut s) => s.run(),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "oci-monitor: {e}");
            125
        }
    };
    std::process::exit(code);
}

struct Client {
    sock: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
}

/// A client that does not read falls behind; past this much queued output it is dropped
/// (the log keeps everything), so it can never stall the container.
const CLIENT_BACKLOG: usize = 8 << 20;

struct Serve {
    cfg: MonitorConfig,
    ready: Option<OwnedFd>,
    status: MonitorStatus,
    log: LogWriter,
    listener: UnixListener,
    clients: Vec<Client>,
    stdin: Option<OwnedFd>,
    terminal: Option<OwnedFd>,
    /// The health probe running now.
    probe: Option<Probe>,
    /// When the next health probe is due (None: no health check).
    next_probe: Option<Instant>,
    /// The volumes' `mount` events of this run were recorded (its `unmount` ones are due).
    volumes_mounted: bool,
}

/// A health probe that runs: the process, its output pipe, and when it must be done by.
struct Probe {
    pid: i32,
    output: OwnedFd,
    /// Whether its output may still bring more (not yet at its end).
    open: bool,
    text: crate::health::ProbeOutput,
    started: u64,
    deadline: Instant,
}

impl Serve {
    fn new(dir: &Path, ready: OwnedFd) -> Result<Self> {
        let cfg = MonitorConfig::read(dir)?;
        if cfg.unsealed {
            crate::allow_unsealed();
        }
        let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
        let _ = std::fs::remove_file(dir.join(STOP_FILE));
        let _ = std::fs::remove_file(dir.join(KEEP_FILE));
        let d = std::fs::File::open(dir).map_err(|e| Error::io("open", dir, e))?;
        let _ = std::fs::remove_file(dir.join(ATTACH_SOCKET));
        let addr = format!("/proc/self/fd/{}/{ATTACH_SOCKET}", d.as_raw_fd());
        let listener =
            UnixListener::bind(&addr).map_err(|e| Error::io("bind", dir.join(ATTACH_SOCKET), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("fcntl", dir.join(ATTACH_SOCKET), e))?;
        let log = LogWriter::open(&dir.join(LOG_FILE), cfg.log.clone())?;
        let me = rustix::process::getpid().as_raw_nonzero().get();
        let status = MonitorStatus {
            state: MonitorState::Created,
            pid: 0,
            monitor_pid: me,
            monitor_start: proc_start_time(me).map_or(0, |s| s.0),
            started_at: None,
            finished_at: None,
            exit_code: None,
            restart_count: 0,
            error: None,
            #[cfg(feature = "network")]
            network: None,
            // The results of its runs before, which docker keeps.
            health: std::fs::read(dir.join(STATUS_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice::<MonitorStatus>(&b).ok())
                .and_then(|s| s.health),
            monitor_alive: true,
        };
        Ok(Self {
            cfg,
            ready: Some(ready),
            status,
            log,
            listener,
            clients: Vec::new(),
            stdin: None,
            terminal: None,
            probe: None,
            next_probe: None,
            volumes_mounted: false,
        })
    }

    fn save(&self) {
        if let Ok(b) = serde_json::to_vec(&self.status) {
            if let Err(e) = write_atomic(&self.cfg.dir, STATUS_FILE, &b) {
                let _ = writeln!(std::io::stderr(), "oci-monitor: {e}");
            }
        }
    }

    fn report(&mut self, r: &Ready) {
        if let Some(fd) = self.ready.take() {
            let line = serde_json::to_string(r).unwrap_or_default();
            let _ = rustix::io::write(&fd, line.as_bytes());
        }
    }

    /// The whole life: runs, restarts, the exit command. Returns the monitor's exit code.
    fn run(&mut self) -> i32 {
        self.save();
        let mut delay = Duration::from_millis(100);
        loop {
            let code = match self.once() {
                Ok(code) => code,
                Err(e) => {
                    let msg = crate::error::chain(&e);
                    self.status.error = Some(msg.clone());
                    self.broadcast(&Frame::Error(msg.clone()));
                    self.report(&Ready {
                        pid: None,
                        error: Some(msg),
                    });
                    125
                }
            };
            self.status.exit_code = Some(code);
            self.status.finished_at = Some(now_ns());
            self.status.pid = 0;
            self.event("die", Some(code));
            if std::mem::take(&mut self.volumes_mounted) {
                self.volume_events("unmount");
            }
            // The policy as it is now: `update --restart` may have changed it meanwhile.
            if let Ok(now) = MonitorConfig::read(&self.cfg.dir) {
                self.cfg.restart = now.restart;
            }
            let again = !self.cfg.dir.join(STOP_FILE).exists()
                && self.status.error.is_none()
                && match self.cfg.restart {
                    RestartPolicy::No => false,
                    RestartPolicy::OnFailure { max } => {
                        code != 0 && max.is_none_or(|m| self.status.restart_count < m)
                    }
                    RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
                };
            self.broadcast(&Frame::Exit(code));
            if !again {
                self.status.state = MonitorState::Exited;
                self.save();
                break;
            }
            // docker's back-off: 100 ms before the first restart, doubled at each one up to a
            // minute, back to 100 ms once a run has lasted 10 s.
            let ran = self
                .status
                .started_at
                .map_or(0, |s| now_ns().saturating_sub(s));
            if ran > 10_000_000_000 {
                delay = Duration::from_millis(100);
            }
            self.status.state = MonitorState::Restarting;
            self.save();
            if !self.back_off(Instant::now() + delay) {
                // Stopped while waiting: no restart.
                self.status.state = MonitorState::Exited;
                self.save();
                break;
            }
            delay = (delay * 2).min(MAX_RESTART_DELAY);
            self.status.restart_count += 1;
        }
        self.flush_clients(Instant::now() + Duration::from_secs(2));
        self.clients.clear();
        let _ = std::fs::remove_file(self.cfg.dir.join(ATTACH_SOCKET));
        #[cfg(feature = "engine")]
        if let Some(data) = self
            .cfg
            .remove_from
            .as_ref()
            .filter(|_| !self.cfg.dir.join(KEEP_FILE).exists())
        {
            let removed = crate::Containers::open(data)
                .and_then(|store| store.remove_with_volumes(&self.cfg.id, true));
            if let Err(e) = removed {
                tracing::warn!(container = %self.cfg.id, error = %crate::chain(&e), "removing the container after it ended");
            }
        }
        if let Some((prog, args)) = self.cfg.exit_command.split_first() {
            let _ = std::process::Command::new(prog)
                .args(args)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .status();
        }
        0
    }

    /// Records the container's event `action` (best effort: a journal that cannot be
    /// written costs the container nothing).
    fn event(&self, action: &str, exit_code: Option<i32>) {
        let Some(sink) = &self.cfg.events else { return };
        let mut e = crate::Event::new("container", action, &self.cfg.id).with_all(&sink.attributes);
        if let Some(code) = exit_code {
            e = e.with("exitCode", code.to_string());
        }
        if let Err(err) = crate::Journal::open(&sink.journal).record(&e) {
            tracing::warn!(container = %self.cfg.id, error = %crate::chain(&err), "recording an event");
        }
    }

    /// Records a volume event `action` (`mount` before a run starts, `unmount` after it has
    /// ended) for each of the container's named volumes, with docker's attributes.
    fn volume_events(&self, action: &str) {
        let Some(sink) = &self.cfg.events else { return };
        let journal = crate::Journal::open(&sink.journal);
        for (name, destination, readonly) in &sink.volumes {
            let mut e = crate::Event::new("volume", action, name)
                .with("driver", "local")
                .with("container", &self.cfg.id);
            if action == "mount" {
                e = e
                    .with("destination", destination)
                    .with("read/write", (!readonly).to_string())
                    .with("propagation", "");
            }
            if let Err(err) = journal.record(&e) {
                tracing::warn!(volume = %name, error = %crate::chain(&err), "recording an event");
            }
        }
    }

    /// One run of the container: create, start, relay until it exits; its exit code.
    fn once(&mut self) -> Result<i32> {
        let cfg = &self.cfg;
        let terminal = cfg
            .spec
            .process()
            .as_ref()
            .is_some_and(|p| p.terminal().unwrap_or(false));
        let mut b = ContainerBuilder::new(&cfg.id, cfg.spec.clone(), &cfg.bundle)
            .state_root(&cfg.state_root)
            .reaper(cfg.init);
        #[cfg(feature = "network")]
        {
            b = b.readable_namespaces(matches!(
                cfg.network,
                Some(crate::NetworkPlan::Slirp { .. })
            ));
        }
        let mut outputs: Vec<(OwnedFd, LogStream)> = Vec::new();
        let mut console = None;
        if terminal {
            let (a, z) = rustix::net::socketpair(
                rustix::net::AddressFamily::UNIX,
                rustix::net::SocketType::STREAM,
                rustix::net::SocketFlags::CLOEXEC,
                None,
            )
            .map_err(|e| Error::io("socketpair", &cfg.dir, e))?;
            b = b.console_stream(z);
            console = Some(a);
        } else {
            let pipe = || {
                rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                    .map_err(|e| Error::io("pipe", &self.cfg.dir, e))
            };
            let (or, ow) = pipe()?;
            let (er, ew) = pipe()?;
            b = b.stdout(ow).stderr(ew);
            outputs.push((or, LogStream::Stdout));
            outputs.push((er, LogStream::Stderr));
            if cfg.stdin {
                let (ir, iw) = pipe()?;
                b = b.stdin(ir);
                self.stdin = Some(iw);
            } else {
                let null = rustix::fs::open(
                    "/dev/null",
                    rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map_err(|e| Error::io("open", "/dev/null", e))?;
                b = b.stdin(null);
            }
        }
        let mut c = b.create()?;
        if let Some(sock) = console {
            let master = crate::receive_terminal(&sock)?;
            let dup = rustix::io::fcntl_dupfd_cloexec(&master, 3)
                .map_err(|e| Error::io("dup", "the terminal", e))?;
            outputs.push((dup, LogStream::Stdout));
            if cfg.stdin {
                self.stdin = Some(
                    rustix::io::fcntl_dupfd_cloexec(&master, 3)
                        .map_err(|e| Error::io("dup", "the terminal", e))?,
                );
            }
            self.terminal = Some(master);
        }
        #[cfg(feature = "network")]
        let net = match &self.cfg.network {
            None => None,
            Some(plan) => match crate::attach_network(plan, c.pid()) {
                Ok(a) => Some(a),
                Err(e) => {
                    let _ = c.delete(true);
                    return Err(e.into());
                }
            },
        };
        #[cfg(feature = "network")]
        {
            self.status.network = net.as_ref().map(|a| a.attachment.clone());
        }
        let first = self.ready.is_some();
        if first && self.cfg.attach_first {
            self.report(&Ready {
                pid: Some(c.pid()),
                error: None,
            });
            self.wait_for_client(Duration::from_secs(60));
        }
        if let Err(e) = c.start() {
            let _ = Container::load(&self.cfg.state_root, &self.cfg.id).map(|c| c.delete(true));
            #[cfg(feature = "network")]
            if let Some(n) = net {
                n.detach();
            }
            return Err(e);
        }
        self.status.state = MonitorState::Running;
        self.status.pid = c.pid();
        self.status.started_at = Some(now_ns());
        self.status.error = None;
        if let Some(p) = &self.cfg.health {
            self.status.health = Some(crate::Health::restarted(self.status.health.take()));
            self.next_probe =
                Some(Instant::now() + p.next_delay(Duration::ZERO, crate::HealthStatus::Starting));
        }
        self.save();
        self.volume_events("mount");
        self.volumes_mounted = true;
        self.event("start", None);
        self.report(&Ready {
            pid: Some(c.pid()),
            error: None,
        });
        let code = self.relay(&mut outputs, c.pid());
        self.end_probe();
        self.stdin = None;
        self.terminal = None;
        let _ = c.delete(true);
        #[cfg(feature = "network")]
        if let Some(n) = net {
            n.detach();
            self.status.network = None;
        }
        Ok(code)
    }

    fn wait_for_client(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.clients.is_empty() && Instant::now() < deadline {
            let mut fds = [rustix::event::PollFd::new(
                &self.listener,
                rustix::event::PollFlags::IN,
            )];
            let _ = rustix::event::poll(
                &mut fds,
                Some(&rustix::event::Timespec {
                    tv_sec: 0,
                    tv_nsec: 100_000_000,
                }),
            );
            self.accept();
        }
    }

    fn accept(&mut self) {
        while let Ok((sock, _)) = self.listener.accept() {
            if sock.set_nonblocking(true).is_ok() {
                self.clients.push(Client {
                    sock,
                    inbuf: Vec::new(),
                    outbuf: Vec::new(),
                });
            }
        }
    }

    fn broadcast(&mut self, f: &Frame) {
        let bytes = f.encode();
        for c in &mut self.clients {
            c.outbuf.extend_from_slice(&bytes);
        }
        self.clients.retain(|c| c.outbuf.len() <= CLIENT_BACKLOG);
        for c in &mut self.clients {
            flush(c);
        }
    }

    /// Waits out a restart delay until `until`, flushing attach clients' output, and looking
    /// for a stop request every 50 ms; false when one came (then no restart follows).
    fn back_off(&mut self, until: Instant) -> bool {
        loop {
            if self.cfg.dir.join(STOP_FILE).exists() {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            let step = Duration::from_millis(50).min(until - now);
            self.flush_clients(now + step);
            std::thread::sleep(step.saturating_sub(now.elapsed()));
        }
    }

    fn flush_clients(&mut self, until: Instant) {
        while Instant::now() < until && self.clients.iter().any(|c| !c.outbuf.is_empty()) {
            for c in &mut self.clients {
                if !flush(c) {
                    c.outbuf.clear();
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Relays output and input until the init has exited and the outputs are closed (or a
    /// second has passed since the exit: a process that escaped with the pipe holds it open).
    fn relay(&mut self, outputs: &mut Vec<(OwnedFd, LogStream)>, pid: i32) -> i32 {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let pidfd = rustix::process::Pid::from_raw(pid).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        let mut code = None;
        let mut exited_at: Option<Instant> = None;
        let mut buf = vec![0u8; 64 << 10];
        // Once the program that spawned us has gone (its pages are then ours alone).
        let mut shed_at = Some(Instant::now() + Duration::from_secs(1));
        loop {
            if shed_at.is_some_and(|t| Instant::now() > t) {
                shed_setup_memory();
                shed_at = None;
            }
            if code.is_some()
                && (outputs.is_empty()
                    || exited_at.is_some_and(|t| t.elapsed() > Duration::from_secs(1)))
            {
                break;
            }
            let mut fds: Vec<PollFd<'_>> = Vec::new();
            for (fd, _) in outputs.iter() {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            let n_out = fds.len();
            fds.push(PollFd::new(&self.listener, PollFlags::IN));
            for c in &self.clients {
                let mut f = PollFlags::IN;
                if !c.outbuf.is_empty() {
                    f |= PollFlags::OUT;
                }
                fds.push(PollFd::new(&c.sock, f));
            }
            let pid_slot = match (&pidfd, code) {
                (Some(p), None) => {
                    fds.push(PollFd::new(p, PollFlags::IN));
                    Some(fds.len() - 1)
                }
                _ => None,
            };
            let probe_slot = match &self.probe {
                Some(p) if p.open => {
                    fds.push(PollFd::new(&p.output, PollFlags::IN));
                    Some(fds.len() - 1)
                }
                _ => None,
            };
            // Up to 250 ms, less when a health probe is due or out of time sooner (none is
            // started once the container has exited).
            let due = match (&self.probe, code) {
                (_, Some(_)) => None,
                (Some(p), None) => Some(p.deadline),
                (None, None) => self.next_probe,
            };
            let wait = due.map_or(Duration::from_millis(250), |t| {
                t.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(250))
            });
            let _ = poll(
                &mut fds,
                Some(&Timespec {
                    tv_sec: 0,
                    tv_nsec: i64::from(wait.subsec_nanos()),
                }),
            );
            let ready: Vec<PollFlags> = fds.iter().map(|f| f.revents()).collect();
            drop(fds);
            // Output first, so nothing is lost when the process ends right after writing.
            let mut closed = Vec::new();
            for (i, r) in ready.iter().take(n_out).enumerate() {
                if r.is_empty() {
                    continue;
                }
                let (fd, stream) = &outputs[i];
                match rustix::io::read(fd, &mut buf) {
                    Ok(0) | Err(rustix::io::Errno::IO) => closed.push(i),
                    Ok(n) => {
                        self.log.write(*stream, &buf[..n]);
                        let f = match stream {
                            LogStream::Stdout => Frame::Stdout(buf[..n].to_vec()),
                            LogStream::Stderr => Frame::Stderr(buf[..n].to_vec()),
                        };
                        self.broadcast(&f);
                    }
                    Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                    Err(_) => closed.push(i),
                }
            }
            for i in closed.into_iter().rev() {
                outputs.remove(i);
            }
            if ready.get(n_out).is_some_and(|r| !r.is_empty()) {
                self.accept();
            }
            if probe_slot.is_some_and(|i| !ready[i].is_empty()) {
                self.read_probe();
            }
            let n_clients = ready.len()
                - n_out
                - 1
                - usize::from(pid_slot.is_some())
                - usize::from(probe_slot.is_some());
            let mut gone = Vec::new();
            for i in 0..n_clients.min(self.clients.len()) {
                let r = ready[n_out + 1 + i];
                if r.intersects(PollFlags::OUT) && !flush(&mut self.clients[i]) {
                    gone.push(i);
                    continue;
                }
                if r.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR)
                    && !self.client_input(i)
                {
                    gone.push(i);
                }
            }
            gone.dedup();
            for i in gone.into_iter().rev() {
                self.clients.remove(i);
            }
            // Reap: the init (its code) and any orphan that was reparented to us.
            // Any child (wait(2), pid -1): a terminal's init has a session of its own, so
            // waitpid(None), which is pid 0 (this process group), would not see it.
            while let Ok(Some((p, st))) =
                rustix::process::wait(rustix::process::WaitOptions::NOHANG)
            {
                let ended = st
                    .exit_status()
                    .or_else(|| st.terminating_signal().map(|s| 128 + s));
                if p.as_raw_nonzero().get() == pid {
                    code = ended;
                    exited_at = Some(Instant::now());
                } else if self
                    .probe
                    .as_ref()
                    .is_some_and(|x| x.pid == p.as_raw_nonzero().get())
                {
                    self.finish_probe(ended.map_or(-1, i64::from), None);
                }
            }
            if code.is_none() {
                self.health_tick();
            }
            if let (Some(slot), None) = (pid_slot, code) {
                // The pidfd says it exited, yet it was not ours to reap: its code is lost.
                if !ready[slot].is_empty() {
                    code = Some(255);
                    exited_at = Some(Instant::now());
                }
            }
        }
        code.unwrap_or(255)
    }

    /// The health check's schedule: starts a probe when one is due, ends one that has run
    /// out of time (as docker: killed, exit code -1).
    fn health_tick(&mut self) {
        let Some(hp) = self.cfg.health.clone() else {
            return;
        };
        let now = Instant::now();
        match &self.probe {
            Some(p) if now >= p.deadline => {
                if let Some(pid) = rustix::process::Pid::from_raw(p.pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                let msg = format!(
                    "Health check exceeded timeout ({})",
                    crate::health::go_duration(hp.timeout)
                );
                self.finish_probe(-1, Some(msg));
            }
            Some(_) => {}
            None if self.next_probe.is_some_and(|t| now >= t) => {
                let started = now_ns();
                match self.spawn_probe(&hp) {
                    Ok(Some((pid, output))) => {
                        self.probe = Some(Probe {
                            pid,
                            output,
                            open: true,
                            text: Default::default(),
                            started,
                            deadline: Instant::now() + hp.timeout,
                        })
                    }
                    // Paused: docker probes nothing until it is unpaused.
                    Ok(None) => self.next_probe = Some(now + hp.interval),
                    Err(e) => self.record_health(started, -1, crate::error::chain(&e)),
                }
            }
            None => {}
        }
    }

    /// Starts `hp`'s command in the container, as its own process (user, environment,
    /// directory, capabilities), stdin /dev/null, stdout and stderr into one pipe: its pid
    /// and the pipe's read end. None when the container is paused.
    fn spawn_probe(&self, hp: &crate::HealthProbe) -> Result<Option<(i32, OwnedFd)>> {
        let c = Container::load(&self.cfg.state_root, &self.cfg.id)?;
        if c.status() == crate::Status::Paused {
            return Ok(None);
        }
        let mut process = self.cfg.spec.process().clone().ok_or_else(|| {
            Error::spec(
                "process",
                "",
                "a health check runs as the container's process",
            )
        })?;
        process.set_args(Some(hp.args.clone()));
        process.set_terminal(Some(false));
        process.set_console_size(None);
        let io = |e: rustix::io::Errno| {
            Error::io("pipe", "a health probe's output", std::io::Error::from(e))
        };
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(io)?;
        // Only the monitor's end: the probe writes as to any pipe.
        rustix::fs::fcntl_setfl(&r, rustix::fs::OFlags::NONBLOCK).map_err(io)?;
        let w2 = rustix::io::fcntl_dupfd_cloexec(&w, 3).map_err(io)?;
        let null = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| Error::io("open", "/dev/null", std::io::Error::from(e)))?;
        let p = c.exec(&process, [Some(null), Some(w), Some(w2)])?;
        Ok(Some((p.pid(), r)))
    }

    /// Takes what the running probe wrote (what a pipe holds now, a bounded amount: a probe
    /// that writes without end cannot hold the monitor).
    fn read_probe(&mut self) {
        let Some(p) = &mut self.probe else { return };
        let mut buf = [0u8; 16 << 10];
        for _ in 0..16 {
            match rustix::io::read(&p.output, &mut buf) {
                Ok(0) => {
                    p.open = false;
                    break;
                }
                Ok(n) => p.text.push(&buf[..n]),
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => break,
                Err(_) => {
                    p.open = false;
                    break;
                }
            }
        }
    }

    /// Records the running probe's result: `exit_code`, its output, `message` before it.
    fn finish_probe(&mut self, exit_code: i64, message: Option<String>) {
        self.read_probe();
        let Some(p) = self.probe.take() else { return };
        let out = p.text.text();
        let output = match message {
            Some(m) if out.is_empty() => m,
            Some(m) => format!("{m}: {out}"),
            None => out,
        };
        self.record_health(p.started, exit_code, output);
    }

    /// Records a probe's result in the status (and, when it changes the health status, the
    /// `health_status: STATUS` event), and schedules the next probe.
    fn record_health(&mut self, started: u64, exit_code: i64, output: String) {
        let (Some(hp), Some(h)) = (self.cfg.health.clone(), self.status.health.as_mut()) else {
            return;
        };
        let up = self.status.started_at.unwrap_or(started);
        let r = crate::HealthResult {
            start: crate::rfc3339(started),
            end: crate::rfc3339(now_ns()),
            exit_code,
            output,
        };
        let changed = h.record(r, &hp, Duration::from_nanos(started.saturating_sub(up)));
        let status = h.status;
        let elapsed = Duration::from_nanos(now_ns().saturating_sub(up));
        self.next_probe = Some(Instant::now() + hp.next_delay(elapsed, status));
        self.save();
        if changed {
            self.event(&format!("health_status: {status}"), None);
        }
    }

    /// Ends health checking when the container has ended: a probe still running is killed
    /// (it is reaped with the container's other leftovers).
    fn end_probe(&mut self) {
        if let Some(p) = self.probe.take() {
            if let Some(pid) = rustix::process::Pid::from_raw(p.pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        self.next_probe = None;
    }

    /// Reads what client `i` sent; false when it is gone or misbehaves.
    fn client_input(&mut self, i: usize) -> bool {
        let mut chunk = [0u8; 16 << 10];
        let c = &mut self.clients[i];
        match c.sock.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => c.inbuf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
        loop {
            let c = &mut self.clients[i];
            match Frame::decode(&c.inbuf) {
                Ok(Some((f, n))) => {
                    c.inbuf.drain(..n);
                    match f {
                        Frame::Stdin(data) => {
                            if let Some(w) = &self.stdin {
                                // A blocking write: the container reads its stdin, or the
                                // client that feeds it waits (as with a pipe).
                                if write_all(w, &data).is_err() {
                                    self.stdin = None;
                                }
                            }
                        }
                        Frame::CloseStdin => {
                            if self.terminal.is_some() {
                                // A terminal has no end of input: send ^D as a terminal would.
                                if let Some(w) = &self.stdin {
                                    let _ = write_all(w, &[4]);
                                }
                            } else {
                                self.stdin = None;
                            }
                        }
                        Frame::Resize(rows, cols) => {
                            if let Some(t) = &self.terminal {
                                let ws = rustix::termios::Winsize {
                                    ws_row: rows,
                                    ws_col: cols,
                                    ws_xpixel: 0,
                                    ws_ypixel: 0,
                                };
                                let _ = rustix::termios::tcsetwinsize(t, ws);
                            }
                        }
                        _ => return false,
                    }
                }
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Gives back what setting the container up used and relaying will not: freed heap to the
/// system, and the clean file pages of the program and its libraries (the runtime's set-up
/// code, mostly) to the page cache, so an idle monitor's resident set is what it touches while
/// it relays. Pages it needs again fault back in.
fn shed_setup_memory() {
    // SAFETY: malloc_trim only returns free heap memory to the system.
    unsafe { libc::malloc_trim(0) };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let path = f.nth(3).unwrap_or("");
        // Private, not writable, backed by a file: program text and read-only data.
        if !path.starts_with('/') || perms.as_bytes().get(1) != Some(&b'-') {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        // SAFETY: MADV_PAGEOUT on a whole mapping of this process only drops clean pages,
        // which the kernel reads back on the next access; it changes no contents.
        unsafe { libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_PAGEOUT) };
    }
}

fn write_all(fd: &OwnedFd, mut data: &[u8]) -> rustix::io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes what a client can take now; false when it is gone.
fn flush(c: &mut Client) -> bool {
    while !c.outbuf.is_empty() {
        match c.sock.write(&c.outbuf) {
            Ok(0) => return false,
            Ok(n) => {
                c.outbuf.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_read_as_docker_writes_them() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(20 * 86_400), "2 weeks");
    }

    #[test]
    fn restart_policies_parse_as_docker_spells_them() {
        assert_eq!("no".parse::<RestartPolicy>().unwrap(), RestartPolicy::No);
        assert_eq!(
            "on-failure:2".parse::<RestartPolicy>().unwrap(),
            RestartPolicy::OnFailure { max: Some(2) }
        );
        assert_eq!(
            "on-failure".parse::<RestartPolicy>().unwrap(),
            RestartPolicy::OnFailure { max: None }
        );
        assert_eq!(
            "always".parse::<RestartPolicy>().unwrap(),
            RestartPolicy::Always
        );
        for bad in ["sometimes", "on-failure:x", "always:2"] {
            assert!(bad.parse::<RestartPolicy>().is_err(), "{bad}");
        }
    }
}

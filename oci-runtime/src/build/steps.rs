//! The steps that change files: `RUN` in a container on the step's snapshot, `COPY` and
//! `ADD` through [`super::context`], each ending in [`DockerfileBuild::commit_step`].

use super::context::{Plan, Select, Tree};
use super::error::{BuildError, Context, Result};
use super::{sha, BuildEvent, BuildNetwork, DockerfileBuild, Owner, State};
use oci_rs_image::oci_spec::image::{Descriptor, Digest};
use oci_rs_image::Compression;
use oci_rs_layer::{Mount, MountKind, Snapshotter};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The files the runtime binds over, which a step's layer leaves out (as docker's commit).
const MOUNT_POINTS: [&str; 3] = crate::ETC_MOUNT_POINTS;

/// A snapshot removed when dropped, however the step ends.
struct Scratch {
    snaps: Snapshotter,
    id: String,
    mount: Mount,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = self.snaps.remove(&self.id) {
            tracing::warn!(id = %self.id, error = %e, "removing a build snapshot");
        }
    }
}

impl DockerfileBuild<'_> {
    fn snapshots(&self) -> Result<Snapshotter> {
        Ok(Snapshotter::new(self.data.join("snapshots"))?)
    }

    /// Removes the step snapshots of builds whose process is gone (killed mid-step): their
    /// ids carry the pid.
    pub(super) fn reap_stale_snapshots(&self) -> Result<()> {
        let snaps = self.snapshots()?;
        let dir = self.data.join("snapshots/containers");
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("build-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            let alive = rustix::process::Pid::from_raw(pid)
                .is_some_and(|p| rustix::process::test_kill_process(p).is_ok());
            if !alive {
                tracing::info!(snapshot = %name, "removing a step snapshot of a build that is gone");
                // Its RUN's container, if one was running: killed and deleted first.
                if let Ok(c) = crate::Container::load(&self.data.join("run"), &name) {
                    if let Err(e) = c.delete(true) {
                        tracing::warn!(container = %name, error = %e, "deleting a stale build container");
                    }
                }
                if let Err(e) = snaps.remove(&name) {
                    tracing::warn!(snapshot = %name, error = %e, "removing a stale build snapshot");
                }
            }
        }
        Ok(())
    }

    async fn scratch(&self, stack: &[(Descriptor, Digest)], what: &str) -> Result<Scratch> {
        let snaps = self.snapshots()?;
        let id = format!("build-{}-{}", std::process::id(), crate::random_hex(8)?);
        let mount = snaps
            .prepare_layers(&id, self.images.layout(), stack, what, false)
            .await
            .with_context(|| format!("preparing the filesystem of {what}"))?;
        Ok(Scratch { snaps, id, mount })
    }

    /// `RUN`.
    pub(super) async fn run(
        &mut self,
        mut s: State,
        i: &super::Instr,
        started: Instant,
    ) -> Result<State> {
        self.check_flags(i, &["network", "mount", "security"])?;
        let mut run_mounts = Vec::new();
        {
            let look = |n: &str| s.lookup(n);
            for (name, value) in &i.flags {
                if name != "mount" {
                    continue;
                }
                let raw = value.as_deref().unwrap_or("");
                // As BuildKit: a stage or image named through a variable is refused.
                let from = raw.split(',').find_map(|p| p.strip_prefix("from="));
                if from.is_some_and(|f| f.find('$').is_some_and(|k| k + 1 != f.len())) {
                    return Err(self.at(
                        i,
                        "'from' doesn't support variable expansion, define alias stage instead",
                    ));
                }
                let v = self.lex.word(raw, &look).map_err(|e| self.wrap(i, e))?;
                let m = super::mounts::RunMount::parse(&v)
                    .map_err(|e| self.at(i, format!("--mount={v}: {e}")))?;
                run_mounts.push(m);
            }
        }
        super::mounts::number_ssh_targets(&mut run_mounts);
        let (bind_key, binds) = self.bind_sources(i, &run_mounts).await?;
        let network = match i.flag("network") {
            None | Some("default") => self.opts.network,
            Some("none") => BuildNetwork::None,
            Some("host") => {
                if self.opts.network != BuildNetwork::Host
                    && !self.opts.allow.contains(&super::Entitlement::NetworkHost)
                {
                    return Err(self.at(
                        i,
                        "--network=host needs the network.host entitlement (--allow network.host)",
                    ));
                }
                BuildNetwork::Host
            }
            Some(n) => return Err(self.at(i, format!("--network={n}: use default, none or host"))),
        };
        let insecure = match i.flag("security") {
            None | Some("sandbox") => false,
            Some("insecure") => {
                if !self
                    .opts
                    .allow
                    .contains(&super::Entitlement::SecurityInsecure)
                {
                    return Err(self.at(
                        i,
                        "--security=insecure needs the security.insecure entitlement \
                         (--allow security.insecure)",
                    ));
                }
                true
            }
            Some(v) => {
                let v = oci_rs_image::excerpt(v, 32);
                return Err(self.at(i, format!("--security={v}: use sandbox or insecure")));
            }
        };
        let argv = self.run_argv(i, &s);
        let process = argv.join(" ");
        // Build args reach RUN's environment (not the image's) unless an ENV shadows them.
        let mut env: Vec<String> = s
            .args
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
            .filter(|(k, _)| s.env_value(k).is_none())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.sort();
        let hist = match &i.args {
            super::Args::Exec(v) if i.heredocs.is_empty() => format!("RUN {}", v.join(" ")),
            _ => format!("RUN {}", argv.join(" ")),
        };
        let heredocs: String = i
            .heredocs
            .iter()
            .map(|h| format!("{}\0{}\0", h.name, h.content))
            .collect();
        let key = sha(&[
            &s.key,
            "RUN",
            &serde_json::to_string(&argv)?,
            &heredocs,
            &env.join("\0"),
            match network {
                BuildNetwork::Host => "host",
                BuildNetwork::None => "none",
                BuildNetwork::Default => "default",
            },
            &run_mounts
                .iter()
                .map(super::mounts::RunMount::key)
                .collect::<Vec<_>>()
                .join("\0"),
            &bind_key,
            // An insecure step is another step than the sandboxed one.
            if insecure { "security=insecure" } else { "" },
        ]);
        if self.take_cached(&mut s, &key, started).await? {
            return Ok(s);
        }
        foreign_arch_runs(s.config()).map_err(|e| self.at(i, e))?;
        let stack = s.stack()?;
        let scratch = self
            .scratch(&stack, &format!("RUN at line {}", i.line))
            .await?;
        self.make_workdir(&s, &scratch.mount.rootfs)?;
        // A root without /etc gets one from the runtime for the files it binds there: made
        // for the step only, it is removed with them after (BuildKit leaves none either).
        let etc_made = std::fs::symlink_metadata(scratch.mount.rootfs.join("etc")).is_err();
        let etc = scratch
            .mount
            .rootfs
            .parent()
            .unwrap_or(Path::new("/"))
            .join("etc-files");
        oci_rs_layer::private_dir(&etc)?;
        let rootless = !rustix::process::geteuid().is_root();
        let net = match network {
            BuildNetwork::None => crate::NetworkMode::None,
            BuildNetwork::Host => crate::NetworkMode::Host,
            // Rootless: slirp4netns, as for a rootless container.
            BuildNetwork::Default if rootless => crate::NetworkMode::Slirp,
            BuildNetwork::Default => crate::NetworkMode::Bridge,
        };
        let hostname = "buildkitsandbox";
        let mut mounts = crate::etc_files(&etc, hostname, net)?;
        if let Some(script) = argv.first().and_then(|a| a.strip_prefix("/dev/pipes/")) {
            if let Some(h) = i.heredocs.iter().find(|h| h.name == script) {
                let f = etc.join(format!("pipe-{script}"));
                std::fs::write(&f, &h.content)?;
                std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
                mounts.push(crate::ExtraMount::Bind {
                    source: f,
                    target: format!("/dev/pipes/{script}"),
                    readonly: true,
                });
            }
        }
        let prepared = super::mounts::prepare(
            &run_mounts,
            &self.data,
            &etc,
            &scratch.mount.rootfs,
            &self.opts.secrets,
            &self.opts.ssh,
        )
        .map_err(|e| self.wrap(i, e))?;
        mounts.extend(prepared.mounts.iter().cloned());
        env.extend(prepared.env.iter().cloned());
        let (mut bind_keep, mut bind_temps) = (Vec::new(), Vec::new());
        mounts.extend(
            self.bind_mounts(i, binds, &mut bind_keep, &mut bind_temps)
                .await?,
        );
        let mut opts = crate::RunOptions {
            args: argv,
            entrypoint: Some(Vec::new()),
            env,
            network: net,
            hostname: Some(hostname.into()),
            mounts,
            privileged: insecure,
            ..Default::default()
        };
        if !rustix::process::geteuid().is_root() {
            opts.rootless = Some(crate::Rootless::current());
        }
        let config: oci_rs_image::oci_spec::image::ImageConfiguration =
            serde_json::from_value(s.config().clone()).context("reading the stage's config")?;
        let spec = crate::spec_from_image(&config, &scratch.mount.rootfs, &opts)
            .map_err(|e| self.wrap(i, e))?;
        let quiet_log = match &self.opts.run_output {
            Some(_) => None,
            None => Some(tempfile::tempfile_in(&self.data).context("creating a step log")?),
        };
        let out: std::os::fd::OwnedFd = match (&quiet_log, &self.opts.run_output) {
            (Some(f), _) => f.try_clone()?.into(),
            (None, Some(fd)) => fd.try_clone()?,
            (None, None) => std::fs::File::open("/dev/null")?.into(),
        };
        let err = out.try_clone()?;
        let bundle = scratch
            .mount
            .rootfs
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        let cid = scratch.id.clone();
        let state_root = self.data.join("run");
        // The step's network, attached between create and start as a container's monitor
        // attaches it, and taken down when it ends.
        let plan = match net {
            crate::NetworkMode::Bridge => Some(crate::NetworkPlan::Bridge {
                store: crate::Networks::host_dir(),
                request: crate::NetworkRequest {
                    container: cid.clone(),
                    name: cid.clone(),
                    hostname: hostname.into(),
                    networks: vec!["bridge".into()],
                    ports: Vec::new(),
                    hosts_file: None,
                    ..Default::default()
                },
            }),
            crate::NetworkMode::Slirp => Some(crate::NetworkPlan::Slirp { ports: Vec::new() }),
            _ => None,
        };
        let code = tokio::task::spawn_blocking(move || {
            let null = std::fs::File::open("/dev/null")?;
            // slirp4netns joins the namespaces of the created init, which a rootless caller
            // can open only when the init stays dumpable until it executes the step.
            let slirp = matches!(plan, Some(crate::NetworkPlan::Slirp { .. }));
            let mut c = crate::ContainerBuilder::new(&cid, spec, bundle)
                .readable_namespaces(slirp)
                .state_root(state_root)
                .stdin(null.into())
                .stdout(out)
                .stderr(err)
                .create()?;
            let attached = match plan.as_ref().map(|p| crate::attach_network(p, c.pid())) {
                Some(Err(e)) => {
                    let _ = c.delete(true);
                    return Err(BuildError::from(crate::Error::from(e)));
                }
                Some(Ok(a)) => Some(a),
                None => None,
            };
            let ran = c.start().and_then(|()| c.wait());
            let deleted = c.delete(true);
            if let Some(a) = attached {
                a.detach();
            }
            let code = ran?;
            deleted?;
            Ok(code)
        })
        .await
        .map_err(|e| BuildError::Failed {
            what: "the RUN step's task".into(),
            source: Box::new(e),
        })??;
        if code != 0 {
            if let Some(mut log) = quiet_log {
                use std::io::Seek;
                log.rewind()?;
                let number = self.step;
                (self.events)(BuildEvent::FailedOutput {
                    number,
                    log: &mut log,
                });
            }
            return Err(BuildError::RunFailed {
                place: self.place(i),
                process,
                code,
            });
        }
        super::mounts::remove_stubs(&scratch.mount.rootfs, &prepared.stubs);
        if etc_made {
            let stubs: Vec<PathBuf> = MOUNT_POINTS
                .iter()
                .map(PathBuf::from)
                .chain([PathBuf::from("etc")])
                .collect();
            super::mounts::remove_stubs(&scratch.mount.rootfs, &stubs);
        }
        drop((prepared, bind_keep, bind_temps));
        let s = self.commit_step(s, scratch, &stack, &hist, key).await?;
        self.ran += 1;
        self.done(started, false);
        Ok(s)
    }

    /// What `RUN` executes: the exec form, or the shell form through `SHELL`; a line that is
    /// only a heredoc runs the heredoc as the script, otherwise the heredocs follow the line
    /// and the shell reads them itself (BuildKit's two cases).
    fn run_argv(&self, i: &super::Instr, s: &State) -> Vec<String> {
        if i.heredocs.is_empty() {
            return self.command(i, s);
        }
        let super::Args::Shell(line) = &i.args else {
            return self.command(i, s);
        };
        let only = i.heredocs.len() == 1
            && super::parse::heredoc_word(line.trim()) == Some(i.heredocs[0].name.as_str());
        let mut argv = s.shell();
        if only && i.heredocs[0].content.starts_with("#!") {
            // A script with its own interpreter runs as a file (BuildKit's /dev/pipes).
            return vec![format!("/dev/pipes/{}", i.heredocs[0].name)];
        }
        if only {
            argv.push(i.heredocs[0].content.clone());
        } else {
            let mut script = line.clone();
            script.push('\n');
            for h in &i.heredocs {
                script.push_str(&h.content);
                script.push_str(&h.name);
                script.push('\n');
            }
            argv.push(script);
        }
        argv
    }

    /// `WORKDIR`: the image's working directory, made with its missing parents (through
    /// links, inside the root) and the directories it made owned by the current `USER`, as
    /// BuildKit makes it, so that the next step can write there; a layer when it did not
    /// exist, a history line only when it did.
    pub(super) async fn workdir(
        &mut self,
        mut s: State,
        i: &super::Instr,
        full: String,
        started: Instant,
    ) -> Result<State> {
        let user = s.user();
        let hist = format!("WORKDIR {full}");
        s.image = s.image.working_dir(&full);
        let key = sha(&[super::CACHE_VERSION, &s.key, &hist, &user]);
        if self.take_cached(&mut s, &key, started).await? {
            return Ok(s);
        }
        let stack = s.stack()?;
        let scratch = self
            .scratch(&stack, &format!("WORKDIR at line {}", i.line))
            .await?;
        let rootfs = scratch.mount.rootfs.clone();
        let comps = super::ignore::clean_components(&full);
        let root = oci_rs_layer::Root::open(&rootfs)?;
        let prefix = |k: usize| comps[..k].iter().collect::<PathBuf>();
        // The deepest directory there is; what lies below it is made here.
        let have = (0..=comps.len())
            .rev()
            .find(|&k| root.open_dir(&prefix(k)).is_ok())
            .unwrap_or(0);
        if have < comps.len() {
            root.mkdir_all_through_links(&prefix(comps.len()))
                .map_err(|e| self.wrap(i, e))?;
            if !user.is_empty() {
                let (uid, gid, _) =
                    crate::resolve_user(&rootfs, &user).map_err(|e| self.wrap(i, e))?;
                for k in have + 1..=comps.len() {
                    let dir = root.open_dir(&prefix(k)).map_err(|e| self.wrap(i, e))?;
                    rustix::fs::chownat(
                        &dir,
                        "",
                        Some(rustix::process::Uid::from_raw(uid)),
                        Some(rustix::process::Gid::from_raw(gid)),
                        rustix::fs::AtFlags::EMPTY_PATH,
                    )
                    .map_err(|e| {
                        self.wrap(
                            i,
                            BuildError::Failed {
                                what: format!("giving the WORKDIR {full} to {user}"),
                                source: Box::new(std::io::Error::from(e)),
                            },
                        )
                    })?;
                }
            }
        }
        let s = self.commit_step(s, scratch, &stack, &hist, key).await?;
        self.ran += 1;
        self.done(started, false);
        Ok(s)
    }

    /// Creates the `WORKDIR` inside the step's root filesystem (resolved inside it).
    fn make_workdir(&self, s: &State, rootfs: &Path) -> Result<()> {
        let w = s.workdir();
        let rel: PathBuf = super::ignore::clean_components(&w).iter().collect();
        if rel.as_os_str().is_empty() {
            return Ok(());
        }
        let root = oci_rs_layer::Root::open(rootfs)?;
        root.mkdir_all_through_links(&rel)
            .with_context(|| format!("creating the WORKDIR {w}"))?;
        Ok(())
    }

    /// The step's changes as its layer (none when nothing changed: an `empty_layer` history
    /// line), the upper directory kept as that layer's unpacked directory, the state cached.
    async fn commit_step(
        &self,
        mut s: State,
        scratch: Scratch,
        stack: &[(Descriptor, Digest)],
        hist: &str,
        key: String,
    ) -> Result<State> {
        let store = self.images.layout().leased()?;
        let mut opts = oci_rs_layer::DiffOptions::from_env();
        opts.mount_points = MOUNT_POINTS.map(PathBuf::from).to_vec();
        let (desc, diff_id, report) = scratch
            .snaps
            .commit_layers(
                &scratch.mount,
                &store,
                stack,
                &store,
                Compression::Gzip,
                &opts,
            )
            .await?;
        let empty = report.changed + report.deleted + report.opaque == 0;
        let mut b = s.image.clone().created(&oci_rs_layer::creation_time());
        if empty {
            b.history_note(hist);
        } else {
            if scratch.mount.kind == MountKind::Overlay {
                scratch.snaps.unmount(&scratch.id)?;
                // The bind targets the runtime made are not part of the layer.
                for p in MOUNT_POINTS {
                    let f = scratch.mount.upper.join(p);
                    if std::fs::symlink_metadata(&f).is_ok_and(|m| m.is_file() && m.len() == 0) {
                        let _ = std::fs::remove_file(&f);
                    }
                }
                scratch.snaps.adopt_upper(&scratch.id, &diff_id)?;
            }
            b.append_layer(desc, &diff_id, hist);
        }
        drop(scratch);
        self.cache_put(&s.key, &key, &b)?;
        s.image = b;
        s.key = key;
        Ok(s)
    }

    /// `COPY` and `ADD`.
    pub(super) async fn copy(
        &mut self,
        mut s: State,
        i: &super::Instr,
        started: Instant,
    ) -> Result<State> {
        let add = i.keyword == "ADD";
        if add {
            self.check_flags(
                i,
                &[
                    "chown",
                    "chmod",
                    "checksum",
                    "link",
                    "keep-git-dir",
                    "exclude",
                ],
            )?;
        } else {
            self.check_flags(i, &["from", "chown", "chmod", "link", "exclude", "parents"])?;
        }
        let select = self.select(i)?;
        let look = |n: &str| s.lookup(n);
        // The JSON form (for names with blanks) is not split; each element is expanded.
        // Counted as written, then each word expanded (BuildKit's order): `COPY f $empty`
        // copies into the WORKDIR.
        let raw = match &i.args {
            super::Args::Exec(v) => v.clone(),
            super::Args::Shell(t) => self.lex.split_raw(t).into_iter().collect(),
        };
        if raw.len() < 2 {
            return Err(self.at(i, "needs at least one source and a destination"));
        }
        let mut words = raw
            .iter()
            .map(|w| self.lex.word(w, &look))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.wrap(i, e))?;
        let dest_raw = match words.pop().unwrap_or_default() {
            d if d.is_empty() => ".".to_owned(),
            d => d,
        };
        let dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{dest_raw}", s.workdir().trim_end_matches('/'))
        };
        // `--parents` copies into the destination as into a directory.
        let dest_is_dir =
            dest_raw.ends_with('/') || dest_raw == "." || words.len() > 1 || select.parents;
        let chown = match i.flag("chown") {
            Some(c) => Some(self.lex.word(c, &look).map_err(|e| self.wrap(i, e))?),
            None => None,
        };
        let mode = match i.flag("chmod") {
            Some(m) => {
                let m = self.lex.word(m, &look).map_err(|e| self.wrap(i, e))?;
                Some(
                    u32::from_str_radix(&m, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| self.at(i, format!("--chmod={m}: not an octal mode")))?,
                )
            }
            None => None,
        };
        let owner = Owner {
            ids: chown.as_deref().and_then(numeric_ids),
            mode,
        };
        // The trees the sources come from, kept open (and mounted) until the write is done.
        let mut keep: Vec<Scratch> = Vec::new();
        let mut temps: Vec<tempfile::TempDir> = Vec::new();
        let mut plan = Plan::default();
        // BuildKit refuses a variable in `--from` (it names stages before any is built).
        let from = match i.flag("from") {
            Some(f) if self.lex.word(f, &|_| None).ok().as_deref() != Some(f) => {
                return Err(self.at(
                    i,
                    "variable expansion is not supported for --from, define a new stage with \
                     FROM using ARG from global scope as a workaround",
                ))
            }
            Some(f) => Some(f.to_owned()),
            None => None,
        };
        let checksum = match i.flag("checksum") {
            Some(c) => Some(self.lex.word(c, &look).map_err(|e| self.wrap(i, e))?),
            None => None,
        };
        if let Some(c) = &checksum {
            let url = |p: &String| {
                p.starts_with("http://")
                    || p.starts_with("https://")
                    || super::git::GitSource::parse(p).is_some()
            };
            if words.len() != 1 {
                return Err(self.at(i, "checksum can't be specified for multiple sources"));
            }
            if !words.iter().all(url) {
                let c = oci_rs_image::excerpt(c, 80);
                return Err(self.at(
                    i,
                    format!("--checksum={c}: checksum requires HTTP(S) or Git sources"),
                ));
            }
        }
        let mut heredoc_srcs = Vec::new();
        let mut paths = Vec::new();
        for w in &words {
            match super::parse::heredoc_word(w) {
                Some(name) if i.heredocs.iter().any(|h| h.name == name) => {
                    heredoc_srcs.push(name.to_owned())
                }
                _ => paths.push(w.clone()),
            }
        }
        if !heredoc_srcs.is_empty() {
            let dir = tempfile::tempdir_in(&self.data)?;
            for h in &i.heredocs {
                let text = if h.expand {
                    self.lex
                        .word_keep_quotes(&h.content, &look)
                        .map_err(|e| self.wrap(i, e))?
                } else {
                    h.content.clone()
                };
                let p = dir.path().join(&h.name);
                std::fs::write(&p, text)?;
                std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
            }
            let t = Tree::context(dir.path(), Default::default())?;
            plan.append(t.plan(&heredoc_srcs, &dest, dest_is_dir, &owner)?);
            temps.push(dir);
        }
        let mut digest_extra = String::new();
        if !paths.is_empty() {
            if let Some(f) = &from {
                let tree = self.tree_of_from(f, i, &mut keep).await?;
                plan.append(
                    tree.plan_with(&paths, &dest, dest_is_dir, &owner, &select)
                        .map_err(|e| self.wrap(i, e))?,
                );
            } else {
                let mut local = Vec::new();
                for p in &paths {
                    let git = if add {
                        super::git::GitSource::parse(p)
                    } else {
                        None
                    };
                    if let Some(g) = git {
                        let (dir, root) = self.clone_git(i, g, checksum.as_deref()).await?;
                        let t = Tree::context(&root, Default::default())?;
                        plan.append(t.plan(&[".".to_owned()], &dest, true, &owner)?);
                        temps.push(dir);
                    } else if add && (p.starts_with("http://") || p.starts_with("https://")) {
                        let (dir, name) = self.download(i, p, checksum.as_deref()).await?;
                        let t = Tree::context(dir.path(), Default::default())?;
                        plan.append(t.plan(&[name], &dest, dest_is_dir, &owner)?);
                        temps.push(dir);
                    } else {
                        local.push(p.clone());
                    }
                }
                if !local.is_empty() {
                    let Some(ctx) = &self.context else {
                        return Err(self.at(i, "there is no build context to copy from"));
                    };
                    let tree = Tree::context(ctx, self.ignore.clone())?;
                    for p in &local {
                        let one = tree
                            .plan_with(std::slice::from_ref(p), &dest, dest_is_dir, &owner, &select)
                            .map_err(|e| self.wrap(i, e))?;
                        // Boxed: the step's future stays small (stages nest).
                        let archive = if add {
                            Box::pin(one.single_archive()).await
                        } else {
                            None
                        };
                        match archive {
                            Some(archive) => {
                                // ADD of a local archive: its contents, unpacked, into dest.
                                let dir = tempfile::tempdir_in(&self.data)?;
                                let f = tokio::fs::File::open(&archive).await?;
                                digest_extra.push_str(&one.digest()?);
                                // Its compression (gzip, bzip2, xz, zstd or none) from its
                                // first bytes.
                                let unpacked = async {
                                    let tar = super::archive::decompress(f).await?;
                                    let opts = oci_rs_layer::ApplyOptions::default();
                                    oci_rs_layer::apply_tar(dir.path(), tar, &opts).await?;
                                    Ok::<_, BuildError>(())
                                };
                                Box::pin(unpacked).await.map_err(|e| {
                                    self.wrap(
                                        i,
                                        BuildError::Failed {
                                            what: format!("unpacking {p}"),
                                            source: Box::new(e),
                                        },
                                    )
                                })?;
                                let t = Tree::filesystem(dir.path(), p)?;
                                plan.append(t.plan(&[".".into()], &dest, true, &owner)?);
                                temps.push(dir);
                            }
                            None => plan.append(one),
                        }
                    }
                }
            }
        }
        let flags = serde_json::to_string(&i.flags)?;
        let digest = plan.digest()?;
        // What the step copies, apart from where it starts from: the link key's part.
        let key_text = sha(&[
            &i.keyword,
            &flags,
            &serde_json::to_string(&words)?,
            &dest_raw,
            &dest,
            &digest,
            &digest_extra,
        ]);
        let key = sha(&[&s.key, &key_text]);
        let flag_text = i.flags_text();
        let hist = format!(
            "{} {flag_text}{}",
            i.keyword,
            i.args_text().lines().next().unwrap_or("")
        );
        if self.take_cached(&mut s, &key, started).await? {
            return Ok(s);
        }
        let stack = s.stack()?;
        let scratch = self
            .scratch(&stack, &format!("{} at line {}", i.keyword, i.line))
            .await?;
        self.make_workdir(&s, &scratch.mount.rootfs)?;
        let rootfs = scratch.mount.rootfs.clone();
        let root = oci_rs_layer::Root::open(&rootfs)?;
        let dest_rel: PathBuf = super::ignore::clean_components(&dest).iter().collect();
        // What `rel` is in the root, if anything: looked at, never made (Root::parent_of
        // makes missing parents).
        let kind = |rel: &Path| -> Option<rustix::fs::FileType> {
            let name = rel.file_name()?;
            let dir = root.open_dir(rel.parent().unwrap_or(Path::new(""))).ok()?;
            oci_rs_layer::kind_at(&dir, name).ok().flatten()
        };
        let is_link = |rel: &Path| kind(rel) == Some(rustix::fs::FileType::Symlink);
        // A destination under a link (dangling, or to a directory not made yet): its parent
        // made through the link, inside the root, as BuildKit makes it. Without a link on
        // the way, the copy makes the missing parents itself (with its owner and mode).
        if let Some(parent) = dest_rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            let through_link = parent
                .ancestors()
                .any(|a| !a.as_os_str().is_empty() && is_link(a));
            if through_link && root.open_dir(parent).is_err() {
                root.mkdir_all_through_links(parent)
                    .map_err(|e| self.wrap(i, e))?;
            }
        }
        // A destination directory that is itself a dangling link: its target made.
        let dest_is_link = !dest_rel.as_os_str().is_empty() && is_link(&dest_rel);
        if dest_is_dir && dest_is_link && root.open_dir(&dest_rel).is_err() {
            root.mkdir_all_through_links(&dest_rel)
                .map_err(|e| self.wrap(i, e))?;
        }
        // A single source onto a directory that exists goes inside it.
        if !dest_is_dir
            && plan.entries.len() == 1
            && !dest_rel.as_os_str().is_empty()
            && root.open_dir(&dest_rel).is_ok()
        {
            plan.move_into_dir(&dest);
        }
        if let Some(c) = &chown {
            if owner.ids.is_none() {
                // A user by name without a group takes the user's primary group (BuildKit's
                // rule); a number alone is also the group (numeric_ids, above).
                let (uid, gid, _) = crate::resolve_user(&rootfs, c).map_err(|e| self.wrap(i, e))?;
                plan.set_owner(u64::from(uid), u64::from(gid));
            }
        }
        // Missing, and not a link (a link, dangling or not, is followed inside the rootfs as
        // docker follows it, never replaced).
        let missing = !dest_rel.as_os_str().is_empty()
            && root.open_dir(&dest_rel).is_err()
            && kind(&dest_rel).is_none();
        {
            // The directories the copy makes (the destination, its missing parents) take the
            // `--chown` owner and the `--chmod` mode, as BuildKit makes them.
            let owner = match &chown {
                Some(_) => plan.owner_of_first().unwrap_or((0, 0)),
                None => (0, 0),
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let exists = |p: &str| {
                let p = Path::new(p);
                root.open_dir(p).is_ok() || kind(p).is_some()
            };
            plan.create_missing_dirs(missing.then_some(dest.as_str()), exists, owner, mode, now);
        }
        // The same files onto the same destination make the same layer whatever else the
        // parent holds (BuildKit's `--link`, taken whenever it is sound): reuse it.
        let link_key = link_signature(&root, &plan, &dest)?.map(|sig| {
            let owner = plan
                .owner_of_first()
                .map(|(u, g)| format!("{u}:{g}"))
                .unwrap_or_default();
            sha(&[super::CACHE_VERSION, "link", &key_text, &sig, &owner])
        });
        if let Some(lk) = &link_key {
            if let Some((desc, diff_id)) = self.link_get(lk).await {
                drop(scratch);
                let mut b = s.image.clone().created(&oci_rs_layer::creation_time());
                b.append_layer(desc, &diff_id, &hist);
                self.cache_put(&s.key, &key, &b)?;
                s.image = b;
                s.key = key;
                self.ran += 1;
                self.done(started, false);
                return Ok(s);
            }
        }
        let epoch = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.trim().parse().ok());
        plan.write(&rootfs, epoch)
            .await
            .map_err(|e| self.wrap(i, e))?;
        drop(keep);
        drop(temps);
        let layers_before = s.image.layers().len();
        let s = self.commit_step(s, scratch, &stack, &hist, key).await?;
        if let (Some(lk), true) = (&link_key, s.image.layers().len() > layers_before) {
            if let (Some(desc), Some(diff_id)) =
                (s.image.layers().last(), s.image.diff_ids().last())
            {
                self.link_put(lk, desc, diff_id)?;
            }
        }
        self.ran += 1;
        self.done(started, false);
        Ok(s)
    }

    /// `--exclude=PATTERN` (repeatable; taken as written, not expanded, as BuildKit takes
    /// them) and `--parents[=true|false]` of a `COPY` or `ADD`.
    fn select(&self, i: &super::Instr) -> Result<Select> {
        let mut exclude = Vec::new();
        for (name, value) in &i.flags {
            if name == "exclude" {
                match value.as_deref() {
                    Some(v) if !v.trim().is_empty() => exclude.push(v),
                    _ => return Err(self.at(i, "--exclude needs a pattern")),
                }
            }
        }
        let parents = match i.flag("parents") {
            None => false,
            Some(v) if v.is_empty() || v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                let v = oci_rs_image::excerpt(v, 32);
                return Err(self.at(i, format!("--parents={v}: expected true or false")));
            }
        };
        Ok(Select {
            exclude: super::ignore::Ignore::from_patterns(exclude),
            parents,
        })
    }

    /// A layer a `COPY` made before from the same files onto the same destination.
    async fn link_get(&self, key: &str) -> Option<(Descriptor, Digest)> {
        if self.opts.no_cache {
            return None;
        }
        let e = self.images.cache_get(&format!("link-{key}"))?;
        let desc = e.layers.first()?.clone();
        let diff_id = oci_rs_image::parse_digest(e.config.as_str()?).ok()?;
        use oci_rs_image::BlobStore;
        self.images
            .layout()
            .contains(desc.digest())
            .await
            .ok()?
            .then_some((desc, diff_id))
    }

    fn link_put(&self, key: &str, desc: &Descriptor, diff_id: &str) -> Result<()> {
        let entry = oci_rs_layer::CacheEntry {
            config: serde_json::Value::String(diff_id.to_owned()),
            layers: vec![desc.clone()],
        };
        Ok(self.images.cache_put(&format!("link-{key}"), &entry)?)
    }

    /// The tree of `--from=NAME`: an earlier stage, or an image.
    async fn tree_of_from(
        &mut self,
        from: &str,
        i: &super::Instr,
        keep: &mut Vec<Scratch>,
    ) -> Result<Tree> {
        let stack = self.stack_of_from(from, i).await?;
        let sc = self.scratch(&stack, &format!("--from={from}")).await?;
        let tree = Tree::filesystem(&sc.mount.rootfs, &format!("--from={from}"))?;
        keep.push(sc);
        Ok(tree)
    }

    /// The layers of `--from=NAME`: a stage of this build (built first) or an image.
    async fn stack_of_from(
        &mut self,
        from: &str,
        i: &super::Instr,
    ) -> Result<Vec<(Descriptor, Digest)>> {
        Ok(match self.stage_index(from) {
            Some(idx) => {
                let st = Box::pin(self.stage(idx)).await?;
                st.stack()?
            }
            None => {
                let m = self
                    .base_image(from, self.opts.platform.as_deref())
                    .await
                    .map_err(|e| self.wrap(i, e))?;
                Snapshotter::image_stack(self.images.layout(), &m).await?
            }
        })
    }

    /// `RUN --mount=type=bind`s, before the step's cache key: what each adds to the key
    /// (the digest of what the context gives, or the layers of `from`), and what it needs
    /// to be made ready.
    async fn bind_sources(
        &mut self,
        i: &super::Instr,
        mounts: &[super::mounts::RunMount],
    ) -> Result<(String, Vec<BindSource>)> {
        let mut key = String::new();
        let mut out = Vec::new();
        for m in mounts {
            let super::mounts::RunMount::Bind {
                target,
                source,
                from,
                rw,
            } = m
            else {
                continue;
            };
            match from {
                None => {
                    let Some(ctx) = &self.context else {
                        return Err(self.at(
                            i,
                            "a bind mount of the context, and there is no build context",
                        ));
                    };
                    let tree = Tree::context(ctx, self.ignore.clone())?;
                    let plan = tree
                        .plan(std::slice::from_ref(source), "/b", true, &Owner::default())
                        .map_err(|e| self.wrap(i, e))?;
                    key.push_str(&plan.digest()?);
                    let is_dir = oci_rs_layer::Root::open(ctx)?
                        .open_dir(Path::new(source))
                        .is_ok();
                    out.push(BindSource::Context {
                        plan,
                        is_dir,
                        source: source.clone(),
                        target: target.clone(),
                        rw: *rw,
                    });
                }
                Some(f) => {
                    let stack = self.stack_of_from(f, i).await?;
                    for (_, diff_id) in &stack {
                        key.push_str(diff_id.as_ref());
                    }
                    key.push_str(source);
                    out.push(BindSource::From {
                        from: f.clone(),
                        stack,
                        source: source.clone(),
                        target: target.clone(),
                        rw: *rw,
                    });
                }
            }
        }
        Ok((key, out))
    }

    /// Makes the bind mounts of [`Self::bind_sources`] ready: a filtered copy of the
    /// context's part, or the other stage's filesystem (read-only in place, or a copy for
    /// `rw`). What must live until the step ends goes into `keep` and `temps`.
    async fn bind_mounts(
        &self,
        i: &super::Instr,
        binds: Vec<BindSource>,
        keep: &mut Vec<Scratch>,
        temps: &mut Vec<tempfile::TempDir>,
    ) -> Result<Vec<crate::ExtraMount>> {
        let mut out = Vec::new();
        for b in binds {
            let copy_of = |tmp: &tempfile::TempDir, is_dir: bool, source: &str| {
                let base = tmp.path().join("b");
                if is_dir {
                    base
                } else {
                    base.join(Path::new(source).file_name().unwrap_or_default())
                }
            };
            match b {
                BindSource::Context {
                    plan,
                    is_dir,
                    source,
                    target,
                    rw,
                } => {
                    let tmp = tempfile::tempdir_in(&self.data)?;
                    plan.write(tmp.path(), None)
                        .await
                        .map_err(|e| self.wrap(i, e))?;
                    out.push(crate::ExtraMount::Bind {
                        source: copy_of(&tmp, is_dir, &source),
                        target,
                        readonly: !rw,
                    });
                    temps.push(tmp);
                }
                BindSource::From {
                    from,
                    stack,
                    source,
                    target,
                    rw,
                } => {
                    let sc = self
                        .scratch(&stack, &format!("--mount from={from}"))
                        .await?;
                    let root = oci_rs_layer::Root::open(&sc.mount.rootfs)?;
                    let is_dir = root.open_dir(Path::new(&source)).is_ok();
                    let path = if rw {
                        let tree =
                            Tree::filesystem(&sc.mount.rootfs, &format!("--mount from={from}"))?;
                        let plan = tree
                            .plan(std::slice::from_ref(&source), "/b", true, &Owner::default())
                            .map_err(|e| self.wrap(i, e))?;
                        let tmp = tempfile::tempdir_in(&self.data)?;
                        plan.write(tmp.path(), None)
                            .await
                            .map_err(|e| self.wrap(i, e))?;
                        let p = copy_of(&tmp, is_dir, &source);
                        temps.push(tmp);
                        p
                    } else {
                        // Resolved inside the stage's root (no link there leads out), then
                        // named by where it really is.
                        let fd = root
                            .resolve(Path::new(&source), rustix::fs::OFlags::PATH)
                            .map_err(|e| self.wrap(i, e))?;
                        std::fs::read_link(format!(
                            "/proc/self/fd/{}",
                            std::os::fd::AsRawFd::as_raw_fd(&fd)
                        ))?
                    };
                    out.push(crate::ExtraMount::Bind {
                        source: path,
                        target,
                        readonly: !rw,
                    });
                    keep.push(sc);
                }
            }
        }
        Ok(out)
    }

    /// `ADD` of a git repository: its commit fetched into a scratch directory (returned, to
    /// keep), and the directory to copy. `--keep-git-dir` and `--checksum` of the step agree
    /// with the URL's own, as BuildKit requires.
    async fn clone_git(
        &self,
        i: &super::Instr,
        g: Result<super::git::GitSource>,
        checksum: Option<&str>,
    ) -> Result<(tempfile::TempDir, PathBuf)> {
        let mut g = g.map_err(|e| self.wrap(i, e))?;
        let flag = match i.flag("keep-git-dir") {
            None => None,
            Some("" | "true") => Some(true),
            Some("false") => Some(false),
            Some(v) => {
                let v = oci_rs_image::excerpt(v, 32);
                return Err(self.at(i, format!("--keep-git-dir={v}: expected true or false")));
            }
        };
        if let (Some(a), Some(b)) = (flag, g.keep_git_dir) {
            if a != b {
                return Err(self.at(i, "inconsistent keep-git-dir configuration"));
            }
        }
        if let Some(c) = checksum {
            if g.checksum.as_deref().is_some_and(|u| u != c) {
                return Err(self.at(i, format!("checksum mismatch {c:?} != {:?}", g.checksum)));
            }
            g.checksum = Some(c.to_owned());
        }
        let keep = flag.or(g.keep_git_dir).unwrap_or(false);
        let dir = tempfile::tempdir_in(&self.data)?;
        let ssh = self.opts.ssh.get("default").map(|s| s.socket());
        let (root, commit) = g
            .fetch(dir.path(), keep, ssh)
            .await
            .map_err(|e| self.wrap(i, e))?;
        tracing::debug!(remote = %g.remote, %commit, "ADD of a git repository");
        Ok((dir, root))
    }

    /// `ADD URL`: fetched into a scratch directory, checked against `--checksum` when the
    /// step has one (BuildKit fetches without one too; the content's hash keys the cache).
    async fn download(
        &self,
        i: &super::Instr,
        url: &str,
        checksum: Option<&str>,
    ) -> Result<(tempfile::TempDir, String)> {
        let want = match checksum {
            None => None,
            Some(want) => Some(
                want.strip_prefix("sha256:")
                    .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .ok_or_else(|| {
                        self.at(
                            i,
                            format!("--checksum={want}: expected sha256:<64 hex digits>"),
                        )
                    })?
                    .to_ascii_lowercase(),
            ),
        };
        let name = url
            .split(['?', '#'])
            .next()
            .and_then(|u| u.rsplit('/').next())
            .filter(|n| !n.is_empty() && *n != "." && *n != "..")
            .unwrap_or("download")
            .to_owned();
        let dir = tempfile::tempdir_in(&self.data)?;
        let path = dir.path().join(&name);
        let Some(urls) = self.sources.urls else {
            return Err(self.at(i, "fetching a URL needs a URL source (BuildSources::urls)"));
        };
        let fetched = async {
            let mut body = urls.fetch(url).await?;
            let mut f = tokio::fs::File::create(&path).await?;
            let mut h = <sha2::Sha256 as sha2::Digest>::new();
            let mut buf = vec![0u8; 256 << 10];
            loop {
                let n = tokio::io::AsyncReadExt::read(&mut body, &mut buf).await?;
                if n == 0 {
                    break;
                }
                sha2::Digest::update(&mut h, &buf[..n]);
                tokio::io::AsyncWriteExt::write_all(&mut f, &buf[..n]).await?;
            }
            tokio::io::AsyncWriteExt::flush(&mut f).await?;
            Ok::<_, BuildError>(h)
        };
        let h = fetched.await.map_err(|e| {
            self.wrap(
                i,
                BuildError::Failed {
                    what: format!("fetching {url}"),
                    source: Box::new(e),
                },
            )
        })?;
        let got = format!("{:x}", sha2::Digest::finalize(h));
        if let Some(want) = want.filter(|w| *w != got) {
            return Err(self.at(
                i,
                format!("{url}: checksum sha256:{got}, expected sha256:{want}"),
            ));
        }
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        Ok((dir, name))
    }
}

/// `uid[:gid]` as numbers (a bare uid is also the gid, as docker's `--chown`).
fn numeric_ids(c: &str) -> Option<(u64, u64)> {
    match c.split_once(':') {
        Some((u, g)) => Some((u.parse().ok()?, g.parse().ok()?)),
        None => {
            let u: u64 = c.parse().ok()?;
            Some((u, u))
        }
    }
}

/// What decides a `COPY`'s layer besides its files, when that is all: the destination's
/// ancestors (each a real directory with its mode and owner, or missing), and no copied path
/// already in the parent (a file there would be replaced, a link there followed). `None`
/// when the layer could depend on more of the parent.
fn link_signature(root: &oci_rs_layer::Root, plan: &Plan, dest: &str) -> Result<Option<String>> {
    use std::fmt::Write as _;
    let comps = super::ignore::clean_components(dest);
    let mut sig = String::new();
    let mut exists = true;
    for k in 0..=comps.len() {
        if !exists {
            let _ = write!(sig, "{k}:missing;");
            continue;
        }
        let st = if k == 0 {
            rustix::fs::fstat(root.fd())?
        } else {
            let parent: PathBuf = comps[..k - 1].iter().collect();
            let dir = root.open_dir(&parent)?;
            match rustix::fs::statat(
                &dir,
                comps[k - 1].as_str(),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            ) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT) => {
                    exists = false;
                    let _ = write!(sig, "{k}:missing;");
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        };
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
            return Ok(None);
        }
        let _ = write!(sig, "{k}:{:o}:{}:{};", st.st_mode, st.st_uid, st.st_gid);
    }
    if exists {
        // The destination is there: none of the copied paths may be.
        let base = comps.join("/");
        let mut dirs: std::collections::HashMap<Vec<u8>, Option<std::os::fd::OwnedFd>> =
            std::collections::HashMap::new();
        for e in &plan.entries {
            let p = &e.header.path;
            if *p == base.as_bytes() {
                continue;
            }
            let (parent, name) = match p.iter().rposition(|&b| b == b'/') {
                Some(n) => (p[..n].to_vec(), &p[n + 1..]),
                None => (Vec::new(), &p[..]),
            };
            let fd = dirs.entry(parent.clone()).or_insert_with(|| {
                let rel = PathBuf::from(String::from_utf8_lossy(&parent).into_owned());
                root.open_dir(&rel).ok()
            });
            let Some(fd) = fd else { continue };
            let name = std::ffi::OsStr::from_bytes(name);
            if oci_rs_layer::kind_at(&*fd, name)?.is_some() {
                return Ok(None);
            }
        }
    }
    Ok(Some(sig))
}

/// A `RUN --mount=type=bind` between its cache key and its mount.
enum BindSource {
    Context {
        plan: super::context::Plan,
        is_dir: bool,
        source: String,
        target: String,
        rw: bool,
    },
    From {
        from: String,
        stack: Vec<(Descriptor, Digest)>,
        source: String,
        target: String,
        rw: bool,
    },
}

/// Whether this host can run the programs of a stage whose config is `config`: its own
/// architecture, or one the kernel hands to an emulator (binfmt_misc, as Debian's
/// qemu-user-static registers it). Otherwise a clear refusal rather than "exec format error".
fn foreign_arch_runs(config: &serde_json::Value) -> std::result::Result<(), String> {
    let arch = config
        .get("architecture")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let host = oci_rs_image::PlatformSpec::host().architecture;
    if arch.is_empty() || arch == host || (host == "amd64" && arch == "386") {
        return Ok(());
    }
    let qemu = match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i386",
        "arm" => "arm",
        other => other,
    };
    let handler = std::path::Path::new("/proc/sys/fs/binfmt_misc").join(format!("qemu-{qemu}"));
    match std::fs::read_to_string(&handler) {
        Ok(h) => binfmt_handler_refusal(&h).map_or(Ok(()), |why| {
            Err(format!(
                "a RUN for {arch} on this {host} host needs the kernel's binfmt_misc handler {}, \
                 and it {why}",
                handler.display()
            ))
        }),
        Err(_) => Err(format!(
            "a RUN for {arch} on this {host} host needs the kernel's binfmt_misc handler {} \
             (Debian's qemu-user-static registers it), and it is not there",
            handler.display()
        )),
    }
}

/// Why the binfmt_misc handler whose file reads `text` (`enabled`, `interpreter ...`,
/// `flags: ...`) cannot run a build's programs, if it cannot: it must be enabled, and have
/// the `F` flag (fix binary: the kernel opens the interpreter once, at registration), since
/// without it the interpreter's path is looked up in the container's root, which has no qemu,
/// and the RUN fails with a bare "no such file or directory".
fn binfmt_handler_refusal(text: &str) -> Option<String> {
    if text.lines().next() != Some("enabled") {
        return Some("is disabled (`echo 1 >` it enables it)".to_owned());
    }
    let flags = text
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(str::trim)
        .unwrap_or_default();
    if flags.contains('F') {
        return None;
    }
    Some(format!(
        "lacks the F (fix binary) flag (its flags: \"{flags}\"): without it the kernel looks \
         for the interpreter inside the build's root filesystem, which has none; register it \
         again with F (`echo -1 >` the handler, then write its line with flags F, as in \
         Debian's /usr/lib/binfmt.d/, to /proc/sys/fs/binfmt_misc/register)"
    ))
}

#[cfg(test)]
mod tests {
    use super::binfmt_handler_refusal;

    const QEMU: &str = "interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\noffset 0\n\
        magic 7f454c460201010000000000000000000200b700\n\
        mask ffffffffffffff00fffffffffffffffffeffffff\n";

    #[test]
    fn a_binfmt_handler_runs_build_programs_only_enabled_and_with_the_f_flag() {
        assert_eq!(
            binfmt_handler_refusal(&format!("enabled\n{QEMU}flags: POF\n")),
            None
        );
        assert_eq!(
            binfmt_handler_refusal(&format!("enabled\n{QEMU}flags: F\n")),
            None
        );
        let why = binfmt_handler_refusal(&format!("enabled\n{QEMU}flags: P\n")).unwrap();
        assert!(
            why.contains("lacks the F") && why.contains("\"P\""),
            "{why}"
        );
        let why = binfmt_handler_refusal(&format!("enabled\n{QEMU}flags: \n")).unwrap();
        assert!(why.contains("lacks the F") && why.contains("\"\""), "{why}");
        let why = binfmt_handler_refusal(&format!("enabled\n{QEMU}")).unwrap();
        assert!(why.contains("lacks the F"), "{why}");
        let why = binfmt_handler_refusal(&format!("disabled\n{QEMU}flags: POF\n")).unwrap();
        assert!(why.contains("disabled"), "{why}");
        assert!(binfmt_handler_refusal("").unwrap().contains("disabled"));
    }
}

//! Hooks: the checks of their paths, the createContainer hooks handed to the init, and the
//! runtime-side hooks (createRuntime, prestart, poststart, poststop) run with the state on
//! stdin and their timeouts.

use crate::error::{Error, Result};
use crate::plan::cstr;
use oci_spec::runtime::{Hook, Spec, State};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The runtime spec requires absolute hook paths: a relative one would run whatever the
/// caller's working directory holds.
pub(crate) fn hook_paths_are_absolute(spec: &Spec) -> Result<()> {
    let Some(h) = spec.hooks() else {
        return Ok(());
    };
    #[allow(deprecated)]
    let lists = [
        h.prestart(),
        h.create_runtime(),
        h.create_container(),
        h.start_container(),
        h.poststart(),
        h.poststop(),
    ];
    for hook in lists.into_iter().flatten().flatten() {
        if !hook.path().is_absolute() {
            return Err(Error::spec(
                "hooks",
                hook.path().display(),
                "the path is not absolute",
            ));
        }
    }
    Ok(())
}

/// The spec's createContainer hooks, prepared for the init.
pub(crate) fn create_container_hooks(hooks: &[Hook]) -> Result<Vec<crate::init::HookStep>> {
    hooks
        .iter()
        .map(|h| {
            let path = cstr(h.path().as_os_str().as_encoded_bytes(), "hooks[].path")?;
            let mut argv = h
                .args()
                .iter()
                .flatten()
                .map(|a| cstr(a.as_str(), "hooks[].args"))
                .collect::<Result<Vec<_>>>()?;
            if argv.is_empty() {
                argv.push(path.clone());
            }
            let env = h
                .env()
                .iter()
                .flatten()
                .map(|e| cstr(e.as_str(), "hooks[].env"))
                .collect::<Result<Vec<_>>>()?;
            Ok(crate::init::HookStep {
                path,
                argv: crate::init::ExecStrings::new(argv),
                env: crate::init::ExecStrings::new(env),
                timeout: hook_timeout(h),
            })
        })
        .collect()
}

/// A hook's timeout (at least a second, as runc rounds it).
pub(crate) fn hook_timeout(h: &Hook) -> Option<Duration> {
    h.timeout().map(|t| Duration::from_secs(t.max(1) as u64))
}

/// Makes the errors of one hook.
pub(crate) fn hook_error<'a>(kind: &'static str, path: &'a Path) -> impl Fn(String) -> Error + 'a {
    move |reason| Error::Hook {
        kind,
        path: path.to_path_buf(),
        reason,
    }
}

/// The state document hooks read on stdin.
pub(crate) fn hook_state(kind: &'static str, state: &State) -> Result<Vec<u8>> {
    serde_json::to_vec(state).map_err(|e| Error::Hook {
        kind,
        path: PathBuf::new(),
        reason: e.to_string(),
    })
}

/// Runs poststart or poststop hooks: as the runtime spec says, one that fails is logged as a
/// warning and the others, and the lifecycle, go on as if it had succeeded.
pub(crate) fn run_hooks_warning(kind: &'static str, hooks: &[Hook], state: &State) {
    for h in hooks {
        if let Err(e) = run_hooks(kind, std::slice::from_ref(h), state) {
            tracing::warn!(error = %crate::chain(&e), "{kind} hook failed; going on, as the runtime spec says");
        }
    }
}

/// Runs hooks in order with the state on stdin; the first failure stops them.
pub fn run_hooks(kind: &'static str, hooks: &[Hook], state: &State) -> Result<()> {
    let json = hook_state(kind, state)?;
    for h in hooks {
        let path = h.path().clone();
        let herr = hook_error(kind, &path);
        let args = h.args().clone().unwrap_or_default();
        let mut cmd = std::process::Command::new(&path);
        if args.len() > 1 {
            cmd.args(&args[1..]);
        }
        if let Some(a0) = args.first() {
            use std::os::unix::process::CommandExt;
            cmd.arg0(a0);
        }
        cmd.env_clear();
        for e in h.env().iter().flatten() {
            if let Some((k, v)) = e.split_once('=') {
                cmd.env(k, v);
            }
        }
        cmd.stdin(std::process::Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| herr(e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            // A hook that ignores its stdin may close it early: not an error.
            let _ = stdin.write_all(&json);
        }
        let deadline = hook_timeout(h).map(|t| Instant::now() + t);
        loop {
            match child.try_wait().map_err(|e| herr(e.to_string()))? {
                Some(st) if st.success() => break,
                Some(st) => return Err(herr(format!("exited with {st}"))),
                None => {
                    if deadline.is_some_and(|d| Instant::now() > d) {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(herr("timed out".into()));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    Ok(())
}

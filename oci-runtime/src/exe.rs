//! Keeping the calling program's executable out of a container's reach (the CVE-2019-5736
//! class).
//!
//! The init and the exec helper are clones of the calling program: until their `execve`,
//! `/proc/PID/exe` names the program's file, and a container whose command is a script
//! starting `#!/proc/self/exe` (or an ELF whose interpreter is `/proc/self/exe`) makes the
//! kernel run that file inside the container, as the container's user, with the container's
//! libraries and `LD_PRELOAD`. Code running there opens `/proc/self/exe`, keeps the
//! descriptor, and writes through it once the program exits: the next run of the host's
//! runtime is the attacker's.
//!
//! [`reexec_sealed`], called first thing in `main`, re-executes the program from a copy in
//! memory (`memfd_create`) sealed against every write, growth, shrink and mode change. Every
//! init, exec helper and in-container hook then descends from a file no one can change, and
//! `/proc/self/exe` inside a container reaches only that copy. [`ContainerBuilder::create`]
//! and [`Container::exec`] refuse to run from an unsealed program
//! ([`Error::UnsealedExe`]) unless the program said it accepts the risk with
//! [`allow_unsealed`] (test programs, trusted images).
//!
//! Why once per program and not per container: the init is a `clone3` child running a plan
//! prepared in memory (see the crate docs), not a helper binary, so what it executes is
//! whatever the calling process executes. Re-executing a helper per container would mean a
//! second entry point in every embedding program and a serialized plan; sealing the program
//! once costs one copy of it at start (about 2 ms for the 5 MB `oci-runc`, measured with
//! `benches/compare.sh runtime`) and nothing per container. runc, crun and youki seal the same
//! way.
//!
//! [`ContainerBuilder::create`]: crate::ContainerBuilder::create
//! [`Container::exec`]: crate::Container::exec

#![allow(unsafe_code)]

use crate::error::{Error, Result};
use rustix::fs::{MemfdFlags, Mode, OFlags, SealFlags};
use rustix::io::Errno;
use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Set in the environment of the re-executed program so that a copy that does not come out
/// sealed fails instead of re-executing forever. Removed again at once.
const GUARD: &str = "_OCI_RUNTIME_SEALED_REEXEC";

/// The seals every copy gets; `F_SEAL_EXEC` (Linux 6.3) is added where the kernel has it.
const SEALS: SealFlags = SealFlags::SEAL
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::WRITE);

static ALLOW_UNSEALED: AtomicBool = AtomicBool::new(false);
static SEALED: OnceLock<bool> = OnceLock::new();

/// Whether this process runs from a sealed in-memory copy (cached: the executable changes only
/// with `execve`, which starts a new image).
pub fn is_sealed() -> bool {
    *SEALED.get_or_init(|| exe_sealed().unwrap_or(false))
}

fn exe_sealed() -> std::result::Result<bool, Errno> {
    let exe = rustix::fs::open("/proc/self/exe", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    match rustix::fs::fcntl_get_seals(&exe) {
        Ok(seals) => Ok(seals.contains(SEALS)),
        // Not a memfd: a file on disk.
        Err(Errno::INVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Accepts running containers from an unsealed program (this process only): for test
/// programs and trusted images. Without it, or [`reexec_sealed`], creating a container or
/// executing in one fails with [`Error::UnsealedExe`].
pub fn allow_unsealed() {
    ALLOW_UNSEALED.store(true, Ordering::Relaxed);
}

/// Fails unless the program is sealed or accepted running unsealed.
pub(crate) fn check() -> Result<()> {
    if is_sealed() || ALLOW_UNSEALED.load(Ordering::Relaxed) {
        Ok(())
    } else {
        Err(Error::UnsealedExe)
    }
}

/// Re-executes the calling program from a sealed in-memory copy of itself, with the same
/// arguments and environment, unless it already runs from one. Call it first in `main`, before
/// any thread starts (an `execve` ends every other thread) and before anything the program
/// would not want done twice.
///
/// Returns `Ok(())` in the sealed program. Fails, without re-executing, when the copy cannot be
/// made or executed (for instance `vm.memfd_noexec = 2`), and in the re-executed program if the
/// copy did not come out sealed.
///
/// ```no_run
/// fn main() -> Result<(), oci_runtime::Error> {
///     oci_runtime::exe::reexec_sealed()?;
///     // ... create and run containers ...
///     Ok(())
/// }
/// ```
pub fn reexec_sealed() -> Result<()> {
    let reexecuted = std::env::var_os(GUARD).is_some();
    if reexecuted {
        std::env::remove_var(GUARD);
    }
    if is_sealed() {
        return Ok(());
    }
    if reexecuted {
        return Err(Error::io(
            "seal",
            "/proc/self/exe",
            std::io::Error::other("the re-executed program is still not sealed"),
        ));
    }
    let copy = sealed_copy().map_err(|e| Error::io("seal a copy of", "/proc/self/exe", e))?;
    let argv = std::env::args_os()
        .map(c_string)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut envp = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            c_string(kv)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    envp.push(c_string(OsString::from(format!("{GUARD}=1")))?);
    let argv_ptrs = null_terminated(&argv);
    let envp_ptrs = null_terminated(&envp);
    tracing::debug!("re-executing from a sealed copy");
    // SAFETY: both arrays are null-terminated and point into CStrings that outlive the call;
    // fexecve returns only on failure.
    unsafe { libc::fexecve(copy.as_raw_fd(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    Err(Error::io(
        "execute the sealed copy of",
        "/proc/self/exe",
        std::io::Error::last_os_error(),
    ))
}

/// Copies the running executable into a new memfd and seals it.
fn sealed_copy() -> std::io::Result<OwnedFd> {
    let mut src = std::fs::File::open("/proc/self/exe")?;
    let base = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // MFD_EXEC (Linux 6.3) asks for an executable memfd explicitly where the kernel's
    // memfd_noexec policy knows the difference; older kernels refuse the flag.
    let fd = match rustix::fs::memfd_create("oci-runtime-sealed", base | MemfdFlags::EXEC) {
        Err(Errno::INVAL) => rustix::fs::memfd_create("oci-runtime-sealed", base)?,
        other => other?,
    };
    let mut dst = std::fs::File::from(fd);
    std::io::copy(&mut src, &mut dst)?;
    let fd = OwnedFd::from(dst);
    match rustix::fs::fcntl_add_seals(&fd, SEALS | SealFlags::EXEC) {
        Err(Errno::INVAL) => rustix::fs::fcntl_add_seals(&fd, SEALS)?,
        other => other?,
    }
    Ok(fd)
}

fn c_string(s: OsString) -> Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        Error::io(
            "re-execute",
            "/proc/self/exe",
            std::io::Error::other("an argument or variable holds a NUL byte"),
        )
    })
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

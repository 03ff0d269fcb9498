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

/// Whether this process runs from a view of its file that cannot be written through: a sealed
/// memfd copy or a file on a read-only overlay mount (cached: the executable changes only with
/// `execve`, which starts a new image).
pub fn is_sealed() -> bool {
    *SEALED.get_or_init(|| exe_sealed().unwrap_or(false))
}

/// `OVERLAYFS_SUPER_MAGIC` (linux/magic.h).
const OVERLAYFS_MAGIC: u64 = 0x794c_7630;

fn exe_sealed() -> std::result::Result<bool, Errno> {
    let exe = rustix::fs::open(
        "/proc/self/exe",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    match rustix::fs::fcntl_get_seals(&exe) {
        Ok(seals) => return Ok(seals.contains(SEALS)),
        // Not a memfd.
        Err(Errno::INVAL) => {}
        Err(e) => return Err(e),
    }
    // A read-only overlay mount (what `overlay_view` makes): writes fail with EROFS.
    let fs = rustix::fs::fstatfs(&exe)?;
    let vfs = rustix::fs::fstatvfs(&exe)?;
    Ok(fs.f_type as u64 == OVERLAYFS_MAGIC
        && vfs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
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

/// [`reexec_sealed`], then `main`: the one line for a program that would use
/// `#[tokio::main]`, whose runtime starts its threads before the body runs, too late to
/// re-execute. The runtime is built inside, after the re-execution:
///
/// ```no_run
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     oci_rs_runtime::sealed_main(|| tokio::runtime::Runtime::new()?.block_on(run()))
/// }
///
/// async fn run() -> Result<(), Box<dyn std::error::Error>> {
///     // ... pull, unpack, create and run containers ...
///     Ok(())
/// }
/// ```
pub fn sealed_main<T, E: From<Error>>(
    main: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    reexec_sealed()?;
    main()
}

/// Keeping the calling program's executable out of a container's reach (the CVE-2019-5736
/// class).
///
/// The init and the exec helper are clones of the calling program: until their `execve`,
/// `/proc/PID/exe` names the program's file, and a container whose command is a script
/// starting `#!/proc/self/exe` (or an ELF whose interpreter is `/proc/self/exe`) makes the
/// kernel run that file inside the container, as the container's user, with the container's
/// libraries and `LD_PRELOAD`. Code running there opens `/proc/self/exe`, keeps the
/// descriptor, and writes through it once the program exits: the next run of the host's
/// runtime is the attacker's.
///
/// [`reexec_sealed`], called first thing in `main`, re-executes the program from a view of its
/// file that nothing can write through:
///
/// - as root (`CAP_SYS_ADMIN`), the file opened through a detached overlay mount of its
///   directory with no upper layer, which the kernel keeps read-only (`EROFS`) and which is
///   in no mount namespace, so no container can remount it. Nothing is copied (runc 1.2 does
///   the same);
/// - otherwise (rootless), a copy in memory (`memfd_create`) sealed against writes, growth,
///   shrinking, further seals and (Linux 6.3+) mode changes (crun and youki do this).
///
/// Every init, exec helper and in-container hook then descends from that view, and
/// `/proc/self/exe` inside a container reaches only it. [`ContainerBuilder::create`] and
/// [`Container::exec`] refuse to run from an unsealed program ([`Error::UnsealedExe`]) unless
/// the program said it accepts the risk with [`allow_unsealed`] (test programs, trusted
/// images).
///
/// Why once per program and not per container: the init is a `clone3` child running a plan
/// prepared in memory (see the crate docs), not a helper binary, so what it executes is
/// whatever the calling process executes. Re-executing a helper per container would need a
/// second entry point in every embedding program and a serialized plan. Sealing the program
/// costs one `execve` at start and nothing per container. Measured on the 23.5 MB release
/// `oci-runc` (a loop of 300 `oci-runc start nothere`, which seals, against `state nothere`,
/// which does not): 1.8 ms more per run through the overlay, 16 ms through the memfd copy
/// (copying the file is the cost).
///
/// [`ContainerBuilder::create`]: crate::ContainerBuilder::create
/// [`Container::exec`]: crate::Container::exec
///
/// Re-executes the calling program, with the same arguments and environment, from a view of
/// its file that nothing can write through (a read-only overlay as root, a sealed memfd copy
/// otherwise; see the module docs), unless it already runs from one. Call it first in `main`, before
/// any thread starts (an `execve` ends every other thread) and before anything the program
/// would not want done twice.
///
/// Afterwards `/proc/self/exe`, and so `std::env::current_exe()`, names the sealed view
/// (`/NAME` on a detached overlay, or `/memfd:oci-runtime-sealed (deleted)`), not the path on
/// disk: a program that finds files next to its binary should go by `argv[0]` or its
/// configuration.
///
/// Returns `Ok(())` in the sealed program. Fails, without re-executing, when the copy cannot be
/// made or executed (for instance `vm.memfd_noexec = 2`), and in the re-executed program if the
/// copy did not come out sealed.
///
/// ```no_run
/// fn main() -> Result<(), oci_rs_runtime::Error> {
///     oci_rs_runtime::reexec_sealed()?;
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
    let view = sealed_view().map_err(|e| Error::io("seal a view of", "/proc/self/exe", e))?;
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
    tracing::debug!("re-executing from a sealed view");
    // SAFETY: both arrays are null-terminated and point into CStrings that outlive the call;
    // fexecve returns only on failure.
    unsafe { libc::fexecve(view.as_raw_fd(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    Err(Error::io(
        "execute the sealed view of",
        "/proc/self/exe",
        std::io::Error::last_os_error(),
    ))
}

/// A read-only view of the running executable that no one can write through: a read-only
/// overlay of its directory where the caller may mount (root), else a sealed memfd copy.
fn sealed_view() -> std::io::Result<OwnedFd> {
    match overlay_view() {
        Ok(fd) => Ok(fd),
        Err(e) => {
            tracing::debug!("no overlay view of the executable ({e}): copying it into a memfd");
            memfd_copy()
        }
    }
}

/// Opens the executable through a detached overlay mount whose layers are its directory and
/// an empty tmpfs, with no upper layer: the kernel makes such an overlay read-only, so a write
/// through `/proc/PID/exe` fails with `EROFS`; the mount is in no namespace, so no container
/// can remount it. Nothing is copied and the page cache is shared (runc 1.2 does the same).
/// Needs `CAP_SYS_ADMIN`, and the path must still name the running file.
fn overlay_view() -> std::io::Result<OwnedFd> {
    use rustix::mount::{
        fsconfig_create, fsconfig_set_string, fsmount, fsopen, FsMountFlags, FsOpenFlags,
        MountAttrFlags,
    };
    let path = std::fs::read_link("/proc/self/exe")?;
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::other("the executable has no directory"));
    };
    let running = rustix::fs::stat("/proc/self/exe")?;
    let named = rustix::fs::stat(&path)?;
    if (running.st_dev, running.st_ino) != (named.st_dev, named.st_ino) {
        return Err(std::io::Error::other(
            "the executable's path names another file now",
        ));
    }
    let attrs = MountAttrFlags::MOUNT_ATTR_RDONLY | MountAttrFlags::MOUNT_ATTR_NODEV;
    // An overlay without an upper layer needs two lower ones: the second is an empty tmpfs.
    let tmpfs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)?;
    fsconfig_create(&tmpfs)?;
    let empty = fsmount(&tmpfs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)?;
    let overlay = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    // `lowerdir+` (Linux 6.8) takes one layer per call, so no path needs escaping.
    fsconfig_set_string(&overlay, "lowerdir+", dir)?;
    fsconfig_set_string(
        &overlay,
        "lowerdir+",
        format!("/proc/self/fd/{}", empty.as_raw_fd()),
    )?;
    fsconfig_create(&overlay)?;
    let mnt = fsmount(&overlay, FsMountFlags::FSMOUNT_CLOEXEC, attrs)?;
    let file = rustix::fs::openat(
        &mnt,
        name,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    let seen = rustix::fs::fstat(&file)?;
    if (seen.st_size, seen.st_mtime, seen.st_mtime_nsec)
        != (running.st_size, running.st_mtime, running.st_mtime_nsec)
    {
        return Err(std::io::Error::other("the overlay shows another file"));
    }
    Ok(file)
}

/// Copies the running executable into a new memfd and seals it.
fn memfd_copy() -> std::io::Result<OwnedFd> {
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

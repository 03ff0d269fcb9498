//! Phases 2 and 3: the root filesystem built in the runtime's view, then entered.

use super::*;

/// Phase 2: the root filesystem, still in the runtime's view: the root prepared (propagation,
/// the rootfs bound onto itself), then the mounts, devices and /dev links made inside it
/// through `openat2(RESOLVE_IN_ROOT)`, and the createContainer hooks. Returns the root.
pub(super) fn build_rootfs(plan: &Plan) -> OwnedFd {
    if plan.private_root {
        check!(
            plan,
            Step::Propagation,
            rustix::mount::mount(c"none", c"/", c"", plan.propagation, None)
        );
        if let Some(parent) = &plan.root_parent {
            check!(
                plan,
                Step::Propagation,
                rustix::mount::mount(
                    c"none",
                    parent.as_c_str(),
                    c"",
                    MountFlags::from_bits_retain(libc::MS_PRIVATE as _),
                    None
                )
            );
        }
    }
    // The rootfs bound onto itself: a mount to pivot into, or to make read-only without
    // touching the caller's `/` when there is no mount namespace of its own.
    check!(
        plan,
        Step::BindRoot,
        rustix::mount::mount_bind_recursive(plan.rootfs.as_c_str(), plan.rootfs.as_c_str())
    );
    let root = check!(
        plan,
        Step::OpenRoot,
        rustix::fs::open(
            plan.rootfs.as_c_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty()
        )
    );
    for (i, m) in plan.mounts.iter().enumerate() {
        CURRENT.store(i as u32, std::sync::atomic::Ordering::Relaxed);
        do_mount(plan, root.as_fd(), m);
    }
    for (i, d) in plan.devices.iter().enumerate() {
        CURRENT.store(i as u32, std::sync::atomic::Ordering::Relaxed);
        do_device(plan, root.as_fd(), d);
    }
    CURRENT.store(u32::MAX, std::sync::atomic::Ordering::Relaxed);
    for (target, link) in &plan.symlinks {
        match rustix::fs::symlinkat(target.as_c_str(), &root, link.as_c_str()) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => fail(plan, Step::Symlink, e),
        }
    }
    // The working directory, when the image and the mounts do not have it (runc's rule).
    if let Err(e) = make_prefixes(root.as_fd(), &plan.cwd_dirs, false) {
        fail(plan, Step::Cwd, e);
    }
    if !plan.create_container.is_empty() {
        create_container_hooks(plan);
    }
    root
}

/// Phase 3: entering it: pivot_root (or chroot with `no_pivot`), the old root detached,
/// and a shared or unbindable propagation set on `/`.
pub(super) fn enter_root(plan: &Plan, root: &OwnedFd) {
    // Enter the root.
    check!(plan, Step::PivotRoot, rustix::process::fchdir(root));
    if plan.pivot {
        // The old root, held to be detached from: after pivot_root(".", ".") it is stacked
        // on the new one, and "." (the cwd's mount) is still the new root.
        let old_root = check!(
            plan,
            Step::PivotRoot,
            rustix::fs::open(
                c"/",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty()
            )
        );
        check!(
            plan,
            Step::PivotRoot,
            rustix::process::pivot_root(c".", c".")
        );
        check!(plan, Step::PivotRoot, rustix::process::fchdir(&old_root));
        drop(old_root);
        // Its mounts become slaves first, so that detaching them propagates nothing to the
        // host's (with a shared set-up propagation they are the host's peers), as runc does.
        check!(
            plan,
            Step::PivotRoot,
            rustix::mount::mount(
                c"none",
                c".",
                c"",
                MountFlags::from_bits_retain((libc::MS_SLAVE | libc::MS_REC) as _),
                None
            )
        );
        check!(
            plan,
            Step::PivotRoot,
            rustix::mount::unmount(c".", rustix::mount::UnmountFlags::DETACH)
        );
    } else {
        check!(plan, Step::PivotRoot, rustix::process::chroot(c"."));
    }
    check!(plan, Step::PivotRoot, rustix::process::chdir(c"/"));
    if let Some(p) = plan.root_propagation {
        check!(
            plan,
            Step::Propagation,
            rustix::mount::mount(c"none", c"/", c"", p, None)
        );
    }
}

/// Phase 3 of an exec helper into a container that shares the caller's mount namespace:
/// a chroot into its rootfs (its init's root), as its init did.
pub(super) fn exec_chroot(plan: &Plan) {
    check!(
        plan,
        Step::PivotRoot,
        rustix::process::chroot(plan.rootfs.as_c_str())
    );
    check!(plan, Step::PivotRoot, rustix::process::chdir(c"/"));
}

/// A fixed-size path buffer: `/proc/self/fd/N` without allocating.
pub(super) struct FdPath {
    buf: [u8; 40],
}

impl FdPath {
    fn new(fd: RawFd) -> Self {
        let mut buf = [0u8; 40];
        let prefix = b"/proc/self/fd/";
        buf[..prefix.len()].copy_from_slice(prefix);
        let mut digits = [0u8; 12];
        let mut n = fd.max(0) as u32;
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..len {
            buf[prefix.len() + i] = digits[len - 1 - i];
        }
        Self { buf }
    }

    fn as_cstr(&self) -> &CStr {
        // The buffer always ends in zeros: the prefix and at most 10 digits fill 24 of 40.
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"/")
    }
}

pub(super) fn open_in_root(
    root: BorrowedFd<'_>,
    rel: &CStr,
    flags: OFlags,
) -> Result<OwnedFd, Errno> {
    crate::resolve::open_in_root(root, rel, flags)
}

/// Makes each missing directory of `prefixes` (relative paths, each with its last
/// component, outermost first), resolved inside the root; the last one a file when `file`.
fn make_prefixes(
    root: BorrowedFd<'_>,
    prefixes: &[(CString, CString)],
    file: bool,
) -> Result<(), Errno> {
    let n = prefixes.len();
    for (i, (prefix, name)) in prefixes.iter().enumerate() {
        if open_in_root(root, prefix, OFlags::PATH).is_ok() {
            continue;
        }
        let parent = if i == 0 {
            open_in_root(root, c".", OFlags::PATH | OFlags::DIRECTORY)?
        } else {
            open_in_root(root, &prefixes[i - 1].0, OFlags::PATH | OFlags::DIRECTORY)?
        };
        if i + 1 == n && file {
            match rustix::fs::openat(
                &parent,
                name.as_c_str(),
                OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            ) {
                Ok(_) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e),
            }
        } else {
            match rustix::fs::mkdirat(&parent, name.as_c_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

pub(super) fn ensure_target(root: BorrowedFd<'_>, m: &MountStep) -> Result<OwnedFd, Errno> {
    make_prefixes(root, &m.prefixes, m.file)?;
    match m.prefixes.last() {
        Some((rel, _)) => open_in_root(root, rel, OFlags::PATH),
        None => open_in_root(root, c".", OFlags::PATH),
    }
}

pub(super) fn do_mount(plan: &Plan, root: BorrowedFd<'_>, m: &MountStep) {
    let target = check!(plan, Step::MountTarget, ensure_target(root, m));
    let path = FdPath::new(target.as_raw_fd());
    check!(
        plan,
        Step::Mount,
        rustix::mount::mount(
            m.source.as_deref().unwrap_or(c"none"),
            path.as_cstr(),
            m.fstype.as_deref().unwrap_or(c""),
            m.flags,
            m.data.as_deref(),
        )
    );
    drop(target);
    if m.remount.is_some() || m.propagation.is_some() {
        // Reopen: the old descriptor is the directory under the new mount.
        let last = m.prefixes.last().map(|p| p.0.as_c_str()).unwrap_or(c".");
        let mounted = check!(
            plan,
            Step::MountTarget,
            open_in_root(root, last, OFlags::PATH)
        );
        let path = FdPath::new(mounted.as_raw_fd());
        if let Some(flags) = m.remount {
            check!(
                plan,
                Step::Remount,
                rustix::mount::mount_remount(path.as_cstr(), MountFlags::BIND | flags, c"")
            );
        }
        if let Some(p) = m.propagation {
            check!(
                plan,
                Step::Propagation,
                rustix::mount::mount(c"none", path.as_cstr(), c"", p, None)
            );
        }
    }
}

pub(super) fn do_device(plan: &Plan, root: BorrowedFd<'_>, d: &DeviceStep) {
    check!(plan, Step::Device, make_prefixes(root, &d.dirs, false));
    let parent = check!(
        plan,
        Step::Device,
        open_in_root(root, &d.parent, OFlags::PATH | OFlags::DIRECTORY)
    );
    if d.bind {
        match rustix::fs::openat(
            &parent,
            d.name.as_c_str(),
            OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        ) {
            Ok(_) | Err(Errno::EXIST) => {}
            Err(e) => fail(plan, Step::Device, e),
        }
        let target = check!(
            plan,
            Step::Device,
            rustix::fs::openat(
                &parent,
                d.name.as_c_str(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty()
            )
        );
        let path = FdPath::new(target.as_raw_fd());
        check!(
            plan,
            Step::Device,
            rustix::mount::mount_bind(d.host.as_c_str(), path.as_cstr())
        );
    } else {
        match rustix::fs::mknodat(
            &parent,
            d.name.as_c_str(),
            d.kind,
            Mode::from_raw_mode(d.mode & 0o777),
            d.dev,
        ) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let _ =
                    rustix::fs::unlinkat(&parent, d.name.as_c_str(), rustix::fs::AtFlags::empty());
                check!(
                    plan,
                    Step::Device,
                    rustix::fs::mknodat(
                        &parent,
                        d.name.as_c_str(),
                        d.kind,
                        Mode::from_raw_mode(d.mode & 0o777),
                        d.dev
                    )
                );
            }
            Err(e) => fail(plan, Step::Device, e),
        }
        check!(
            plan,
            Step::Device,
            rustix::fs::chownat(
                &parent,
                d.name.as_c_str(),
                Some(rustix::fs::Uid::from_raw(d.uid)),
                Some(rustix::fs::Gid::from_raw(d.gid)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW
            )
        );
        // The mode as the spec gives it: mknod applied the umask.
        check!(
            plan,
            Step::Device,
            rustix::fs::chmodat(
                &parent,
                d.name.as_c_str(),
                Mode::from_raw_mode(d.mode & 0o777),
                rustix::fs::AtFlags::empty()
            )
        );
    }
}

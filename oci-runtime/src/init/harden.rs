//! Phase 4: hardening inside the new root.

use super::*;

/// Phase 4: hardening, inside: hostname and domainname, the loopback, sysctls, then the
/// masked and read-only paths and a read-only root.
pub(super) fn harden(plan: &Plan) {
    // Sysctls before the masked and read-only paths (as runc): /proc/sys is usually one of
    // the read-only ones.
    if let Some(h) = &plan.hostname {
        check!(
            plan,
            Step::Hostname,
            rustix::system::sethostname(h.as_bytes())
        );
    }
    if let Some(d) = &plan.domainname {
        check!(
            plan,
            Step::Hostname,
            rustix::system::setdomainname(d.as_bytes())
        );
    }
    if plan.loopback_up {
        check!(plan, Step::Loopback, loopback_up());
    }
    if !plan.sysctl.is_empty() {
        // Through the container's /proc, checked to be a procfs, and beneath it without
        // links or mount crossings, non-blocking: a rootfs without /proc mounted, a symlink
        // planted under it (the CVE-2025-52881 class) or a FIFO in its place must not turn a
        // sysctl into a write to some file, or a hang.
        let proc = check!(
            plan,
            Step::Sysctl,
            rustix::fs::open(
                c"/proc",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty()
            )
        );
        let fs = check!(plan, Step::Sysctl, rustix::fs::fstatfs(&proc));
        if fs.f_type != rustix::fs::PROC_SUPER_MAGIC {
            fail(plan, Step::Sysctl, Errno::XDEV);
        }
        for (path, value) in &plan.sysctl {
            let fd = check!(
                plan,
                Step::Sysctl,
                rustix::fs::openat2(
                    &proc,
                    path.as_c_str(),
                    OFlags::WRONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    rustix::fs::ResolveFlags::BENEATH
                        | rustix::fs::ResolveFlags::NO_SYMLINKS
                        | rustix::fs::ResolveFlags::NO_MAGICLINKS
                        | rustix::fs::ResolveFlags::NO_XDEV
                )
            );
            check!(plan, Step::Sysctl, rustix::io::write(&fd, value.as_bytes()));
        }
    }
    if !plan.masked.is_empty() {
        let null = null_device(plan);
        for p in &plan.masked {
            mask(plan, &null, p);
        }
    }
    for p in &plan.readonly_paths {
        match rustix::mount::mount_bind_recursive(p.as_c_str(), p.as_c_str()) {
            Ok(()) => check!(
                plan,
                Step::ReadonlyPath,
                rustix::mount::mount_remount(
                    p.as_c_str(),
                    MountFlags::BIND
                        | MountFlags::RDONLY
                        | MountFlags::NOSUID
                        | MountFlags::NODEV
                        | MountFlags::NOEXEC,
                    c""
                )
            ),
            Err(Errno::NOENT) => {}
            Err(e) => fail(plan, Step::ReadonlyPath, e),
        }
    }
    if plan.readonly_root {
        let flags = match rustix::fs::statvfs(c"/") {
            Ok(s) => {
                let mut f = MountFlags::empty();
                let st = s.f_flag;
                if st.contains(rustix::fs::StatVfsMountFlags::NOSUID) {
                    f |= MountFlags::NOSUID;
                }
                if st.contains(rustix::fs::StatVfsMountFlags::NODEV) {
                    f |= MountFlags::NODEV;
                }
                if st.contains(rustix::fs::StatVfsMountFlags::NOEXEC) {
                    f |= MountFlags::NOEXEC;
                }
                f
            }
            Err(e) => fail(plan, Step::ReadonlyRoot, e),
        };
        check!(
            plan,
            Step::ReadonlyRoot,
            rustix::mount::mount_remount(c"/", MountFlags::BIND | MountFlags::RDONLY | flags, c"")
        );
    }
}

/// The source of every masked file: the /dev/null made in the rootfs, checked through a
/// descriptor to be the null device (1:3), so that a /dev/null replaced by something else (a
/// symlink to a procfs file: the CVE-2025-31133 class) is never bound over a masked path.
pub(super) fn null_device(plan: &Plan) -> OwnedFd {
    let fd = check!(
        plan,
        Step::Masked,
        rustix::fs::open(
            c"/dev/null",
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty()
        )
    );
    let st = check!(plan, Step::Masked, rustix::fs::fstat(&fd));
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::CharacterDevice
        || st.st_rdev != rustix::fs::makedev(1, 3)
    {
        fail(plan, Step::Masked, Errno::NODEV);
    }
    fd
}

/// Masks `path`: a read-only tmpfs over a directory, the checked `null` bound from its
/// descriptor over anything else; nothing for a path that does not exist.
pub(super) fn mask(plan: &Plan, null: &OwnedFd, path: &CStr) {
    match rustix::fs::stat(path) {
        Ok(st)
            if rustix::fs::FileType::from_raw_mode(st.st_mode)
                == rustix::fs::FileType::Directory =>
        {
            check!(
                plan,
                Step::Masked,
                rustix::mount::mount(c"tmpfs", path, c"tmpfs", MountFlags::RDONLY, None)
            );
        }
        Ok(_) => {
            use rustix::mount::{MoveMountFlags, OpenTreeFlags};
            let tree = check!(
                plan,
                Step::Masked,
                rustix::mount::open_tree(
                    null,
                    c"",
                    OpenTreeFlags::OPEN_TREE_CLONE
                        | OpenTreeFlags::OPEN_TREE_CLOEXEC
                        | OpenTreeFlags::AT_EMPTY_PATH
                )
            );
            check!(
                plan,
                Step::Masked,
                rustix::mount::move_mount(
                    &tree,
                    c"",
                    rustix::fs::CWD,
                    path,
                    MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_SYMLINKS
                )
            );
        }
        Err(Errno::NOENT) => {}
        Err(e) => fail(plan, Step::Masked, e),
    }
}

/// `struct ifreq` with the flags member of its union (40 bytes on Linux).
#[repr(C)]
pub(super) struct IfreqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// `ip link set lo up` through the ioctls (a system call each, nothing allocated).
pub(super) fn loopback_up() -> Result<(), Errno> {
    let sock = rustix::net::socket_with(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    let mut req = IfreqFlags {
        name: [0; 16],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write a struct ifreq, which `req` is
    // laid out as (name, then the flags member of the union, padded to its size).
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO));
        }
        req.flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO));
        }
    }
    Ok(())
}

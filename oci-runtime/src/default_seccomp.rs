use crate::error::{Error, Result};
use oci_spec::runtime::{
    Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

/// The namespace flags `clone` may not carry without `CAP_SYS_ADMIN` (docker's mask).
const CLONE_NAMESPACES: u64 = 0x7E02_0000;

/// (capability that lifts the refusal, system calls refused without it).
const REFUSED: &[(Option<Capability>, &[&str])] = &[
    (
        Some(Capability::SysAdmin),
        &[
            "mount",
            "umount2",
            "unshare",
            "setns",
            "pivot_root",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "name_to_handle_at",
            "open_by_handle_at",
            "quotactl",
            "quotactl_fd",
            "lookup_dcookie",
            "fanotify_init",
            "swapon",
            "swapoff",
            "sysfs",
            "_sysctl",
            "ustat",
        ],
    ),
    (
        Some(Capability::SysPtrace),
        &["ptrace", "process_vm_readv", "process_vm_writev", "kcmp"],
    ),
    (
        Some(Capability::SysModule),
        &[
            "init_module",
            "finit_module",
            "delete_module",
            "create_module",
            "query_module",
            "get_kernel_syms",
        ],
    ),
    (
        Some(Capability::SysTime),
        &["settimeofday", "clock_settime", "clock_adjtime"],
    ),
    (
        Some(Capability::SysBoot),
        &["reboot", "kexec_load", "kexec_file_load"],
    ),
    (Some(Capability::SysPacct), &["acct"]),
    (
        Some(Capability::SysNice),
        &["mbind", "set_mempolicy", "get_mempolicy", "move_pages"],
    ),
    (Some(Capability::SysRawio), &["ioperm", "iopl"]),
    (Some(Capability::Syslog), &["syslog"]),
    (Some(Capability::Bpf), &["bpf"]),
    (Some(Capability::Perfmon), &["perf_event_open"]),
    (
        None,
        &[
            "add_key",
            "request_key",
            "keyctl",
            "uselib",
            "userfaultfd",
            "nfsservctl",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
        ],
    ),
];

fn rule(names: &[&str], action: LinuxSeccompAction, errno: u32) -> Result<LinuxSyscall> {
    LinuxSyscallBuilder::default()
        .names(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
        .action(action)
        .errno_ret(errno)
        .build()
        .map_err(|source| Error::Build {
            what: "default seccomp profile",
            source,
        })
}

/// Docker's default seccomp profile, for the capabilities a container has.
///
/// Docker's profile is an allow-list whose effect, for a container with docker's default
/// capabilities, is to refuse the system calls below with EPERM: kernel modules, kexec and
/// reboot, mounts and namespaces (`mount`, `umount2`, `unshare`, `setns`, the new mount
/// API), keyrings, `bpf`, `perf_event_open`, `ptrace` and cross-process memory access,
/// clock setting, swap, quotas, accounting, NUMA policy, `userfaultfd`, `io_uring`, and
/// `clone`/`clone3` with namespace flags (`clone3` fails with ENOSYS, so C libraries fall
/// back to `clone`, whose flags the filter can see). A capability given with `--cap-add`
/// lifts the refusals that docker ties to it (`SYS_ADMIN`: mounts and namespaces,
/// `SYS_PTRACE`, `SYS_MODULE`, `SYS_TIME`, `SYS_BOOT`, `SYS_PACCT`, `SYS_NICE`, `SYS_RAWIO`,
/// `SYSLOG`, `BPF`, `PERFMON`).
///
/// We write it as a deny-list over a default of allow, which our linear BPF program runs in
/// about 60 comparisons instead of docker's 350: the same calls are refused, but a system
/// call newer than this list is allowed where docker's allow-list would refuse it.
///
/// Docker's default profile for a container whose bounding set is `caps`.
pub fn docker_default_seccomp(caps: &Capabilities) -> Result<LinuxSeccomp> {
    let eperm = libc::EPERM as u32;
    let mut rules = Vec::new();
    for (cap, names) in REFUSED {
        if cap.is_some_and(|c| caps.contains(&c)) {
            continue;
        }
        rules.push(rule(names, LinuxSeccompAction::ScmpActErrno, eperm)?);
    }
    if !caps.contains(&Capability::SysAdmin) {
        // clone3 passes its flags in memory, out of the filter's sight: ENOSYS makes C
        // libraries fall back to clone, whose flags are checked: allowed without namespace
        // flags, refused with them.
        rules.push(rule(
            &["clone3"],
            LinuxSeccompAction::ScmpActErrno,
            libc::ENOSYS as u32,
        )?);
        let no_ns = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(CLONE_NAMESPACES)
            .value_two(0u64)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()
            .map_err(|source| Error::Build {
                what: "default seccomp profile",
                source,
            })?;
        let mut allow = rule(&["clone"], LinuxSeccompAction::ScmpActAllow, 0)?;
        allow.set_args(Some(vec![no_ns]));
        allow.set_errno_ret(None);
        rules.push(allow);
        rules.push(rule(&["clone"], LinuxSeccompAction::ScmpActErrno, eperm)?);
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .syscalls(rules)
        .build()
        .map_err(|source| Error::Build {
            what: "default seccomp profile",
            source,
        })
}

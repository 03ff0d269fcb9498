//! # oci-rs-runtime
//!
//! A Linux namespace container runtime as a library, following the OCI runtime spec: give it
//! an `oci_spec::runtime::Spec` and a root filesystem, and [`ContainerBuilder::create`] sets
//! up the container's init in new namespaces (mount, pid, uts, ipc, net, user, cgroup, time),
//! with the spec's mounts resolved inside the rootfs, default devices, `pivot_root`, masked
//! and read-only paths, hostname, sysctls, rlimits, capabilities, `no_new_privs`, user, and
//! cgroup limits (v1 or v2); [`Container::start`] lets it `execve`.
//!
//! The spec usually comes from an image: [`spec_from_image`] makes the one
//! `docker run` would (docker's capabilities, seccomp profile, devices and mounts):
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use oci_rs_runtime::{spec_from_image, NetworkMode, RunOptions};
//!
//! let config: oci_spec::image::ImageConfiguration = serde_json::from_str(
//!     r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
//!         "config":{"Env":["PATH=/bin"],"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"]}}"#,
//! )?;
//! let opts = RunOptions {
//!     network: NetworkMode::None,
//!     memory: Some(64 << 20),
//!     ..RunOptions::default()
//! };
//! let spec = spec_from_image(&config, "/var/lib/c1/rootfs".as_ref(), &opts)?;
//! let process = spec.process().as_ref().unwrap();
//! assert_eq!(process.args().as_deref(), Some(&["/bin/sh".into(), "-c".into(), "echo hi".into()][..]));
//! // Then: ContainerBuilder::new("c1", spec, "/var/lib/c1").create()?.start()?, or run().
//! # Ok(())
//! # }
//! ```
//!
//! Device access is always enforced by the kernel: deny everything, then the spec's
//! `linux.resources.devices` rules, then the default devices and the spec's `linux.devices`
//! (see [`device_rules`]), through the v1 devices controller or a v2 cgroup device (eBPF)
//! program. A device node shipped in an image, or made with `CAP_MKNOD`, opens nothing else;
//! a root container whose rules cannot be enforced is not created.
//!
//! ## Design
//!
//! The init is a `clone3` child that runs a plan computed beforehand with system calls only
//! (see the `init` module for why: no helper binary to find, safe in
//! multi-threaded programs). Mount targets are opened with `openat2(RESOLVE_IN_ROOT)` and
//! mounted through `/proc/self/fd/N`, so a symlink in the rootfs can never redirect a mount
//! outside it (the CVE-2021-30465 class). Every descriptor is close-on-exec and the init marks
//! all above stderr close-on-exec right before `execve` (CVE-2024-21626); right after the clone it
//! closes every descriptor it inherited but does not use, so a created container waiting for
//! `start` holds none of the embedding program's files, sockets or pipes. State lives in
//! `STATE_ROOT/ID/state.json` with an exec fifo, as runc does, so another process can start,
//! query, signal or delete a created container.
//!
//! A spec without a mount namespace (the spec lets a container inherit the runtime's) runs as
//! runc and crun run it: its mounts are made in the caller's mount namespace under the
//! rootfs, whose bind onto itself is entered by `chroot`, and nothing is pivoted, detached or
//! made private in the caller's namespace. `delete` (run in that same mount namespace) or a
//! create that fails detaches those mounts; `exec` chroots into the rootfs. A warning says that a process with
//! `CAP_SYS_CHROOT` can leave such a root.
//!
//! Where things are, for a reader of the source: `container/` holds one module per verb
//! (`create`, `start`, `state`, `signal`, `exec`, `delete`) and the guards that undo a failed
//! create; `plan.rs` turns a spec into the init's plan (pure, unit-tested); `init/` is the
//! child after the clone, whose `child_main` lists its phases in order (wait for the go,
//! namespaces, rootfs, root, hardening, privileges, console and stdio, the wait for `start`,
//! `execve`), one file per phase group, with the parent's side (`spawn`, `report`) beside it.
//!
//! The program's own file is kept out of containers' reach (CVE-2019-5736): call
//! [`reexec_sealed`] first in `main`, and the program runs from a sealed in-memory copy
//! that `/proc/self/exe` in a container can reach but not change. Creating a container or
//! executing in one from an unsealed program fails unless it called [`allow_unsealed`].
//!
//! Before it drops to the container's user and capabilities, the init (and an exec's
//! helper) makes itself non-dumpable (unless a caller without CAP_SYS_PTRACE has startContainer
//! hooks to run in it): until its `execve` it is a copy
//! of the calling program's memory, and another container sharing its pid namespace must not
//! read it. Joining a pid namespace by path takes effect for children only, so the init is
//! cloned from a short-lived thread that joined it; it stays the caller's child. Rootless, a
//! container that joins a user namespace (and a pid namespace in it) is cloned by an
//! intermediate process that joined them first, as runc's nsexec does, as a sibling
//! (`CLONE_PARENT`): it is still the caller's child, and its new namespaces belong to the
//! joined user namespace.
//!
//! [`spec_from_image`] turns an image configuration and `docker run` options into
//! the spec docker would give the container.
//!
//! [`Monitor`] keeps a detached container's stdio, [logs](LogWriter) and exit status
//! after the program that started it is gone, restarts it by policy and lets clients
//! [attach](Frame).
//!
//! [`Container::exec`] runs more processes in a running container (its namespaces, cgroup).
//!
//! Terminals go through a console socket as with runc, and `linux.seccomp` is compiled to BPF
//! by [`compile_seccomp`] (x86_64 and aarch64).
//!
//! A time namespace is unshared by the init rather than created by `clone3`, so that it can
//! write `linux.timeOffsets` (monotonic, boottime) before anything is inside; the process
//! enters it at `execve`, and `exec` joins it.
//!
//! Rootless: as root, id maps are written directly; without root, a single mapping of the
//! caller's own uid and gid is written directly after denying `setgroups` (which the init then
//! skips when there are no additional groups), and anything more goes through the setuid
//! helpers `newuidmap`/`newgidmap` (ranges from /etc/subuid and /etc/subgid). A cgroup that
//! cannot be created without root (not delegated) is left out rather than failing the
//! container.
//!
//! Hooks: createRuntime (and the deprecated prestart), poststart and poststop run in the
//! runtime's namespaces; createContainer hooks are forked by the init after the mounts and
//! before `pivot_root` (in the container's namespaces, their path still resolving in the
//! runtime's tree), with the state ("creating", the init's pid) sent down the sync pipe;
//! startContainer hooks run at `start` inside the container (its namespaces and cgroup, path
//! resolved there) before its process, through the same machinery as `exec`. Every hook gets
//! the state on stdin and its timeout; a failing or late hook fails the operation (a
//! failing startContainer hook stops the container), except poststart and poststop hooks,
//! whose failures are warnings after which the lifecycle goes on, as the spec says.
//!
//! Not yet: seccomp on architectures other than x86_64 and aarch64, and its
//! `SCMP_ACT_NOTIFY` action.

mod attach;
#[cfg(feature = "engine")]
mod build;
mod cgroup;
mod container;
mod default_seccomp;
mod devices;
#[cfg(feature = "engine")]
mod engine;
mod error;
mod exe;
mod hooks;
mod idmap;
mod image_spec;
mod init;
mod logs;
mod monitor;
#[cfg(feature = "network")]
mod network;
mod pidfd;
mod plan;
mod seccomp;
mod syscalls_aarch64;
mod syscalls_x86_64;

pub use attach::{receive_terminal, Attach, Frame, MAX_FRAME};
#[cfg(feature = "engine")]
pub use build::{
    read_context_file, read_dockerfile, BuildError, BuildEvent, BuildEvents, BuildNetwork,
    BuildOptions, BuildSources, Built, DockerfileBuild, MAX_DOCKERFILE,
};
pub use cgroup::Cgroup;
pub use container::{
    parse_signal, run, run_hooks, validate_id, Container, ContainerBuilder, ExecProcess, Status,
};
pub use default_seccomp::docker_default_seccomp;
pub use devices::{device_rules, DeviceRule, DEFAULT_ALLOWED};
#[cfg(feature = "engine")]
pub use engine::{
    parse_mount_arg, parse_volume_arg, random_hex, ContainerConfig, ContainerInspect,
    ContainerView, Containers, EngineError, EngineResult, ExecRequest, InspectState, MountArg,
    ProcessRow, RunImage, RunRequest, VolumeInfo, Volumes,
};
pub use error::{chain, Error, Result};
pub use exe::{allow_unsealed, is_sealed, reexec_sealed, sealed_main};
pub use image_spec::{
    capability_set, docker_device_rules, etc_files, is_valid_hostname, parse_capability,
    resolve_user, set_env, spec_from_image, ExtraMount, NetworkMode, Rootless, RunOptions,
    SeccompChoice, DEFAULT_CAPABILITIES,
};
pub use logs::{
    follow_logs, log_files, parse_log_record, read_logs, LogLimits, LogQuery, LogRecord, LogStream,
    LogWriter,
};
pub use monitor::{
    serve_if_requested, Monitor, MonitorConfig, MonitorState, MonitorStatus, RestartPolicy,
    ATTACH_SOCKET, LOG_FILE,
};
#[cfg(feature = "network")]
pub use network::{
    attach_network, parse_publish, parse_subnet, AttachedNetwork, Endpoint, NetError,
    NetworkAttachment, NetworkConfig, NetworkPlan, NetworkRequest, Networks, PortMapping, Proto,
    PublishedPort, DEFAULT_NETWORK, HOST_NETWORKS_DIR,
};
pub use oci_rs_image::{now_ns, parse_rfc3339, rfc3339};
pub use oci_spec;
pub use seccomp::{compile_seccomp, SockFilter};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

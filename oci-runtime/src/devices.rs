//! Device access control: which device nodes a container may create (`mknod`), read and
//! write, enforced by the kernel through the devices cgroup.
//!
//! A device node is only a name for a (type, major, minor) triple; whoever can open one with
//! that triple reaches the device, whatever the node's path. A node shipped in an image, or
//! made by a process with `CAP_MKNOD`, would otherwise open the host's disks. So the runtime
//! always starts from *deny everything*, allows the default devices every container gets
//! Then the spec's `linux.resources.devices` rules apply in order, the last matching rule
//! deciding; after them, as runc orders them, the default devices every container gets
//! (`/dev/null`, `zero`, `full`, `random`, `urandom`, `tty`, `console`, `ptmx`, the pty
//! slaves, and `mknod` of any node, which opening still refuses) and the spec's
//! `linux.devices` (each read, write and mknod) are allowed.
//!
//! On cgroup v1 the rules are written to the `devices` controller (`devices.deny a`, then
//! each rule); on cgroup v2 they become a `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to
//! the container's cgroup. As root a container whose rules cannot be enforced is refused. A
//! rootless container (no writable cgroup) runs without them: it cannot create device nodes
//! and reaches only the devices its user could open on the host.

// The bpf(2) system call has no wrapper in rustix: this module makes it through libc, in the
// two functions below, each with its SAFETY note.
#![allow(unsafe_code)]

use crate::error::{Error, Result};
use oci_spec::runtime::{Linux, LinuxDeviceType};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Access bits, as the kernel's `BPF_DEVCG_ACC_*`.
const MKNOD: u8 = 1;
const READ: u8 = 2;
const WRITE: u8 = 4;
const ALL: u8 = MKNOD | READ | WRITE;

/// One device rule: allow or deny `access` to devices of `kind` with `major:minor`
/// (`None` matches any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    /// Allow (true) or deny.
    pub allow: bool,
    /// `Some('c')` or `Some('b')`; `None` for every type.
    pub kind: Option<char>,
    /// The major number, `None` for any.
    pub major: Option<u32>,
    /// The minor number, `None` for any.
    pub minor: Option<u32>,
    /// Bits of mknod (1), read (2), write (4).
    pub access: u8,
}

impl DeviceRule {
    const fn char(major: u32, minor: Option<u32>) -> Self {
        DeviceRule {
            allow: true,
            kind: Some('c'),
            major: Some(major),
            minor,
            access: ALL,
        }
    }

    /// The rule as a spec's `linux.resources.devices` entry.
    pub fn to_spec(&self) -> oci_spec::runtime::LinuxDeviceCgroup {
        let mut r = oci_spec::runtime::LinuxDeviceCgroup::default();
        r.set_allow(self.allow);
        r.set_typ(match self.kind {
            Some('b') => Some(LinuxDeviceType::B),
            Some(_) => Some(LinuxDeviceType::C),
            None => Some(LinuxDeviceType::A),
        });
        r.set_major(self.major.map(i64::from));
        r.set_minor(self.minor.map(i64::from));
        r.set_access(Some(access(self.access)));
        r
    }

    /// The rule in the devices cgroup v1 syntax (`c 1:3 rwm`, `a`).
    pub fn v1(&self) -> String {
        let Some(kind) = self.kind else {
            if self.major.is_none() && self.minor.is_none() && self.access == ALL {
                return "a".into();
            }
            return format!(
                "a {}:{} {}",
                num(self.major),
                num(self.minor),
                access(self.access)
            );
        };
        format!(
            "{kind} {}:{} {}",
            num(self.major),
            num(self.minor),
            access(self.access)
        )
    }
}

fn num(n: Option<u32>) -> String {
    n.map_or_else(|| "*".to_owned(), |n| n.to_string())
}

fn access(a: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')] {
        if a & bit != 0 {
            s.push(c);
        }
    }
    s
}

/// The devices every container may use, as runc and docker allow them.
pub const DEFAULT_ALLOWED: [DeviceRule; 11] = [
    // mknod of any node; opening it is still decided by the rules.
    DeviceRule {
        allow: true,
        kind: Some('c'),
        major: None,
        minor: None,
        access: MKNOD,
    },
    DeviceRule {
        allow: true,
        kind: Some('b'),
        major: None,
        minor: None,
        access: MKNOD,
    },
    DeviceRule::char(1, Some(3)), // null
    DeviceRule::char(1, Some(5)), // zero
    DeviceRule::char(1, Some(7)), // full
    DeviceRule::char(1, Some(8)), // random
    DeviceRule::char(1, Some(9)), // urandom
    DeviceRule::char(5, Some(0)), // tty
    DeviceRule::char(5, Some(1)), // console
    DeviceRule::char(5, Some(2)), // ptmx
    DeviceRule::char(136, None),  // pty slaves
];

fn id(v: Option<i64>, what: &'static str) -> Result<Option<u32>> {
    match v {
        None | Some(-1) => Ok(None),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| Error::spec(what, n, "not a device number")),
    }
}

/// The complete device rule list for a container, in the order it is enforced (the last
/// matching rule decides): deny everything, the spec's `linux.resources.devices` rules, then
/// allow [`DEFAULT_ALLOWED`] and each of the spec's `linux.devices`, as runc orders them. Invalid types,
/// numbers or access strings are refused. Root containers always get these rules (v1:
/// the devices controller; v2: a cgroup device program) or are not created.
pub fn device_rules(linux: Option<&Linux>) -> Result<Vec<DeviceRule>> {
    let mut out = vec![DeviceRule {
        allow: false,
        kind: None,
        major: None,
        minor: None,
        access: ALL,
    }];
    let spec_rules = linux
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.devices().as_ref());
    for r in spec_rules.into_iter().flatten() {
        let kind = match r.typ() {
            None | Some(LinuxDeviceType::A) => None,
            Some(LinuxDeviceType::B) => Some('b'),
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => Some('c'),
            Some(LinuxDeviceType::P) => {
                return Err(Error::spec(
                    "linux.resources.devices[].type",
                    "p",
                    "a fifo is not a device",
                ));
            }
        };
        let mut bits = 0;
        for c in r.access().as_deref().unwrap_or("rwm").chars() {
            bits |= match c {
                'r' => READ,
                'w' => WRITE,
                'm' => MKNOD,
                _ => {
                    return Err(Error::spec(
                        "linux.resources.devices[].access",
                        r.access().as_deref().unwrap_or_default(),
                        "only r, w and m",
                    ))
                }
            };
        }
        if bits == 0 {
            bits = ALL;
        }
        out.push(DeviceRule {
            allow: r.allow(),
            kind,
            major: id(r.major(), "linux.resources.devices[].major")?,
            minor: id(r.minor(), "linux.resources.devices[].minor")?,
            access: bits,
        });
    }
    // After the spec's rules, as runc: a deny-all there does not take the defaults away.
    out.extend(DEFAULT_ALLOWED);
    for d in linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        let kind = match d.typ() {
            LinuxDeviceType::B => 'b',
            LinuxDeviceType::C | LinuxDeviceType::U => 'c',
            // A fifo is not a device: nothing to allow.
            LinuxDeviceType::P => continue,
            LinuxDeviceType::A => {
                return Err(Error::spec(
                    "linux.devices[].type",
                    format!("a ({})", d.path().display()),
                    "not a node type",
                ))
            }
        };
        let (major, minor) = (id(Some(d.major()), "major")?, id(Some(d.minor()), "minor")?);
        // A spec rule for exactly this device decides its access (docker's `--device
        // HOST:CTR:r` is read-only): allowing all of it here would override that.
        let decided = out[1..].iter().any(|r| {
            r.kind == Some(kind) && r.major == major && r.minor == minor && major.is_some()
        });
        if !decided {
            out.push(DeviceRule {
                allow: true,
                kind: Some(kind),
                major,
                minor,
                access: ALL,
            });
        }
    }
    Ok(out)
}

/// Writes `rules` into a v1 devices cgroup directory: `devices.deny a` first, then each rule
/// into `devices.allow` or `devices.deny`.
pub(crate) fn apply_v1(dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    let write = |file: &str, v: &str| {
        let p = dir.join(file);
        std::fs::write(&p, v).map_err(|source| Error::Cgroup { path: p, source })
    };
    write("devices.deny", "a")?;
    for r in rules {
        // The deny-all start is written above; a later "deny a" is written again.
        write(
            if r.allow {
                "devices.allow"
            } else {
                "devices.deny"
            },
            &r.v1(),
        )?;
    }
    Ok(())
}

/// One eBPF instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Insn {
    code: u8,
    dst: u8,
    src: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.dst & 0xf) | (self.src << 4);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

// Opcodes (linux/bpf.h, bpf_common.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JMP32_JNE_K: u8 = 0x56; // BPF_JMP32 | BPF_JNE | BPF_K
const JMP32_JEQ_K: u8 = 0x16; // BPF_JMP32 | BPF_JEQ | BPF_K
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        dst,
        src,
        off,
        imm,
    }
}

/// The cgroup v2 device program for `rules`: the last matching rule decides, nothing
/// matching is denied. The context (`struct bpf_cgroup_dev_ctx`) is `access_type` (type in the
/// low 16 bits: 1 block, 2 char; access in the high 16), `major`, `minor`.
fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        ins(LDX_MEM_W, 2, 1, 0, 0),
        ins(ALU32_AND_K, 2, 0, 0, 0xffff),
        ins(LDX_MEM_W, 3, 1, 0, 0),
        ins(ALU32_RSH_K, 3, 0, 0, 16),
        ins(LDX_MEM_W, 4, 1, 4, 0),
        ins(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        // Conditions, each jumping past this rule's block when it does not hold.
        let mut conds: Vec<Insn> = Vec::new();
        if let Some(k) = r.kind {
            conds.push(ins(JMP32_JNE_K, 2, 0, 0, if k == 'b' { 1 } else { 2 }));
        }
        if r.access != ALL {
            conds.push(ins(ALU32_MOV_X, 6, 3, 0, 0));
            if r.allow {
                // Allowed only when every requested bit is in the rule.
                conds.push(ins(ALU32_AND_K, 6, 0, 0, i32::from(!r.access & ALL)));
                conds.push(ins(JMP32_JNE_K, 6, 0, 0, 0));
            } else {
                // Denied when any requested bit is in the rule.
                conds.push(ins(ALU32_AND_K, 6, 0, 0, i32::from(r.access)));
                conds.push(ins(JMP32_JEQ_K, 6, 0, 0, 0));
            }
        }
        if let Some(m) = r.major {
            conds.push(ins(JMP32_JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = r.minor {
            conds.push(ins(JMP32_JNE_K, 5, 0, 0, m as i32));
        }
        let unconditional = conds.is_empty();
        let len = conds.len() + 2;
        for (i, mut c) in conds.into_iter().enumerate() {
            if c.code == JMP32_JNE_K || c.code == JMP32_JEQ_K {
                c.off = (len - i - 1) as i16;
            }
            p.push(c);
        }
        p.push(ins(ALU64_MOV_K, 0, 0, 0, i32::from(r.allow)));
        p.push(ins(JMP_EXIT, 0, 0, 0, 0));
        if unconditional {
            // Every earlier rule is shadowed (and the verifier refuses dead code).
            return p;
        }
    }
    p.push(ins(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(ins(JMP_EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<i64> {
    // SAFETY: `attr` is a zeroed, 128-byte `union bpf_attr` prefix that lives across the call
    // and whose pointer fields (set by the callers) point at buffers that outlive it; the
    // kernel reads at most the size given.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Loads the device program for `rules` and attaches it to the v2 cgroup `dir`.
pub(crate) fn apply_v2(dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    let code: Vec<u8> = program(rules).into_iter().flat_map(Insn::bytes).collect();
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 64 * 1024];
    let load = |with_log: bool, log: &mut Vec<u8>| {
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&BPF_PROG_TYPE_CGROUP_DEVICE.to_ne_bytes());
        attr[4..8].copy_from_slice(&((code.len() / 8) as u32).to_ne_bytes());
        attr[8..16].copy_from_slice(&(code.as_ptr() as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        if with_log {
            attr[24..28].copy_from_slice(&1u32.to_ne_bytes());
            attr[28..32].copy_from_slice(&(log.len() as u32).to_ne_bytes());
            attr[32..40].copy_from_slice(&(log.as_mut_ptr() as u64).to_ne_bytes());
        }
        attr[48..56].copy_from_slice(b"oci_dev\0");
        bpf(BPF_PROG_LOAD, &mut attr)
    };
    let prog = match load(false, &mut log) {
        Ok(fd) => fd,
        Err(first) => {
            let verifier = load(true, &mut log).err().map(|_| {
                let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                String::from_utf8_lossy(&log[..end]).into_owned()
            });
            tracing::debug!(log = ?verifier, "device program refused");
            return Err(Error::Cgroup {
                path: dir.to_path_buf(),
                source: std::io::Error::new(
                    first.kind(),
                    format!("loading the device program: {first}"),
                ),
            });
        }
    };
    // SAFETY: a successful BPF_PROG_LOAD returns a new descriptor that nothing else owns.
    let prog = unsafe { OwnedFd::from_raw_fd(prog as i32) };
    let cg = rustix::fs::open(
        dir,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::Cgroup {
        path: dir.to_path_buf(),
        source: e.into(),
    })?;
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(cg.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(prog.as_raw_fd() as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&BPF_CGROUP_DEVICE.to_ne_bytes());
    attr[12..16].copy_from_slice(&BPF_F_ALLOW_MULTI.to_ne_bytes());
    // The attachment holds the program for as long as the cgroup exists.
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| Error::Cgroup {
        path: dir.to_path_buf(),
        source: std::io::Error::new(e.kind(), format!("attaching the device program: {e}")),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn spec_rules_follow_deny_all_and_defaults_come_last() {
        let linux: Linux = serde_json::from_str(
            r#"{"devices":[{"path":"/dev/fuse","type":"c","major":10,"minor":229}],
                "resources":{"devices":[{"allow":false,"type":"c","major":1,"minor":3,"access":"w"}]}}"#,
        )
        .unwrap();
        let r = device_rules(Some(&linux)).unwrap();
        assert_eq!(r[0].v1(), "a");
        assert!(!r[0].allow);
        assert!(r.iter().any(|x| x.v1() == "c 1:9 rwm" && x.allow));
        assert!(r.iter().any(|x| x.v1() == "c 136:* rwm" && x.allow));
        assert!(r.iter().any(|x| x.v1() == "c 10:229 rwm" && x.allow));
        assert_eq!((r[1].v1(), r[1].allow), ("c 1:3 w".to_owned(), false));
        assert_eq!(r.last().unwrap().v1(), "c 10:229 rwm");
    }

    #[test]
    fn a_spec_rule_for_a_device_decides_its_access() {
        // docker's `--device /dev/kmsg:/dev/k:r`: the node, and a rule allowing reads only.
        let linux: Linux = serde_json::from_str(
            r#"{"devices":[{"path":"/dev/k","type":"c","major":1,"minor":11}],
                "resources":{"devices":[{"allow":true,"type":"c","major":1,"minor":11,"access":"r"}]}}"#,
        )
        .unwrap();
        let r = device_rules(Some(&linux)).unwrap();
        let kmsg: Vec<_> = r.iter().filter(|x| x.v1().starts_with("c 1:11 ")).collect();
        assert_eq!(kmsg.len(), 1, "{r:?}");
        assert_eq!(kmsg[0].v1(), "c 1:11 r");
    }

    #[test]
    fn rules_round_trip_through_the_spec() {
        let mut linux = Linux::default();
        let spec_rules: Vec<_> = DEFAULT_ALLOWED.iter().map(DeviceRule::to_spec).collect();
        linux.set_resources(Some(
            oci_spec::runtime::LinuxResourcesBuilder::default()
                .devices(spec_rules)
                .build()
                .unwrap(),
        ));
        linux.set_devices(None);
        let r = device_rules(Some(&linux)).unwrap();
        assert_eq!(&r[1..=DEFAULT_ALLOWED.len()], &DEFAULT_ALLOWED[..]);
    }

    #[test]
    fn invalid_rules_are_refused() {
        for bad in [
            r#"{"resources":{"devices":[{"allow":true,"access":"rwx"}]}}"#,
            r#"{"resources":{"devices":[{"allow":true,"type":"c","major":-7}]}}"#,
            r#"{"resources":{"devices":[{"allow":true,"type":"p"}]}}"#,
        ] {
            let linux: Linux = serde_json::from_str(bad).unwrap();
            assert!(device_rules(Some(&linux)).is_err(), "{bad}");
        }
    }

    #[test]
    fn program_stops_at_an_unconditional_rule_and_jumps_stay_in_their_block() {
        let all = device_rules(None).unwrap();
        let p = program(&all);
        // The first rule (deny all) is unconditional: it ends the program, no dead code.
        assert_eq!(p.last().unwrap().code, JMP_EXIT);
        assert_eq!(p[p.len() - 2].imm, 0);
        for (i, insn) in p.iter().enumerate() {
            if insn.code == JMP32_JNE_K || insn.code == JMP32_JEQ_K {
                let target = i as i64 + 1 + i64::from(insn.off);
                assert!(target > i as i64 && (target as usize) < p.len());
                // Every jump lands just after an exit: the start of the next rule's block.
                assert_eq!(p[target as usize - 1].code, JMP_EXIT);
            }
        }
        let mut allow_all = all.clone();
        allow_all.push(DeviceRule {
            allow: true,
            kind: None,
            major: None,
            minor: None,
            access: ALL,
        });
        let p = program(&allow_all);
        assert_eq!(p.len(), 6 + 2, "allow-all shadows every earlier rule");
        assert_eq!(p[6].imm, 1);
    }
}

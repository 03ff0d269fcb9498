use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

/// One BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JGT_K: u16 = 0x25;
const BPF_JGE_K: u16 = 0x35;
const BPF_AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const BPF_RET_K: u16 = 0x06;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The architectures whose system call numbers the compiler knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// The architecture this crate is built for, when the compiler knows it.
    pub(crate) const HOST: Option<Arch> = if cfg!(target_arch = "x86_64") {
        Some(Arch::X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(Arch::Aarch64)
    } else {
        None
    };

    /// Its `AUDIT_ARCH_*`, what the kernel puts in `seccomp_data.arch`.
    fn audit(self) -> u32 {
        match self {
            Arch::X86_64 => AUDIT_ARCH_X86_64,
            Arch::Aarch64 => AUDIT_ARCH_AARCH64,
        }
    }

    /// A system call's number by name, `None` where this architecture has no such call.
    fn number(self, name: &str) -> Option<u32> {
        let table = match self {
            Arch::X86_64 => crate::syscalls_x86_64::SYSCALLS,
            Arch::Aarch64 => crate::syscalls_aarch64::SYSCALLS,
        };
        // Each table is sorted by name (a unit test checks it).
        table
            .binary_search_by(|(n, _)| n.cmp(&name))
            .ok()
            .map(|i| table[i].1)
    }
}
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0x0000_0000;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<u32> {
    let errno = errno.unwrap_or(libc::EPERM as u32) & 0xffff;
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => RET_ERRNO | errno,
        LinuxSeccompAction::ScmpActTrace => RET_TRACE | errno,
        LinuxSeccompAction::ScmpActLog => RET_LOG,
        LinuxSeccompAction::ScmpActAllow => RET_ALLOW,
        other => {
            return Err(Error::spec(
                "linux.seccomp",
                format!("{other:?}"),
                "action not supported",
            ))
        }
    })
}

/// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
fn arg_lo(i: usize) -> u32 {
    16 + 8 * i as u32
}
fn arg_hi(i: usize) -> u32 {
    arg_lo(i) + 4
}

/// Instructions that fall through when the condition holds and jump to `fail` (an offset
/// counted from the end of this sequence) when it does not.
fn condition(
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: u64,
) -> Vec<SockFilter> {
    let (hi, lo) = ((value >> 32) as u32, value as u32);
    // Each sequence is built with placeholders: PASS = fall through to after it, FAIL = jump
    // past the rest of the rule; both resolved by `resolve` below.
    use LinuxSeccompOperator as Op;
    match op {
        Op::ScmpCmpEq => vec![
            stmt(BPF_LD_W_ABS, arg_hi(index)),
            jump(BPF_JEQ_K, hi, 0, FAIL),
            stmt(BPF_LD_W_ABS, arg_lo(index)),
            jump(BPF_JEQ_K, lo, 0, FAIL),
        ],
        Op::ScmpCmpNe => vec![
            stmt(BPF_LD_W_ABS, arg_hi(index)),
            jump(BPF_JEQ_K, hi, 0, PASS),
            stmt(BPF_LD_W_ABS, arg_lo(index)),
            jump(BPF_JEQ_K, lo, FAIL, 0),
        ],
        Op::ScmpCmpMaskedEq => {
            let (mhi, mlo) = ((value >> 32) as u32, value as u32);
            let (vhi, vlo) = ((value_two >> 32) as u32, value_two as u32);
            vec![
                stmt(BPF_LD_W_ABS, arg_hi(index)),
                stmt(BPF_AND_K, mhi),
                jump(BPF_JEQ_K, vhi, 0, FAIL),
                stmt(BPF_LD_W_ABS, arg_lo(index)),
                stmt(BPF_AND_K, mlo),
                jump(BPF_JEQ_K, vlo, 0, FAIL),
            ]
        }
        // arg > v: hi > vhi, or hi == vhi and lo > vlo (unsigned, as libseccomp).
        Op::ScmpCmpGt | Op::ScmpCmpGe => {
            let last = if op == Op::ScmpCmpGt {
                BPF_JGT_K
            } else {
                BPF_JGE_K
            };
            vec![
                stmt(BPF_LD_W_ABS, arg_hi(index)),
                jump(BPF_JGT_K, hi, PASS, 0),
                jump(BPF_JEQ_K, hi, 0, FAIL),
                stmt(BPF_LD_W_ABS, arg_lo(index)),
                jump(last, lo, 0, FAIL),
            ]
        }
        // arg < v is not (arg >= v); arg <= v is not (arg > v).
        Op::ScmpCmpLt | Op::ScmpCmpLe => {
            let last = if op == Op::ScmpCmpLt {
                BPF_JGE_K
            } else {
                BPF_JGT_K
            };
            vec![
                stmt(BPF_LD_W_ABS, arg_hi(index)),
                jump(BPF_JGT_K, hi, FAIL, 0),
                jump(BPF_JEQ_K, hi, 0, PASS),
                stmt(BPF_LD_W_ABS, arg_lo(index)),
                jump(last, lo, FAIL, 0),
            ]
        }
    }
}

/// Placeholder jump targets inside a condition sequence.
const PASS: u8 = 0xfe;
const FAIL: u8 = 0xff;

/// Replaces PASS/FAIL in `seq` (placed at the end of `out`'s future contents) with real
/// offsets: PASS to just after the sequence, FAIL to `fail_at` (absolute index).
fn resolve(seq: Vec<SockFilter>, start: usize, fail_at: usize) -> Result<Vec<SockFilter>> {
    let end = start + seq.len();
    let off = |from: usize, to: usize| -> Result<u8> {
        u8::try_from(to - from - 1).map_err(|_| {
            Error::spec(
                "linux.seccomp.syscalls",
                "",
                "a rule is too long for a BPF jump",
            )
        })
    };
    seq.into_iter()
        .enumerate()
        .map(|(i, mut f)| {
            let at = start + i;
            for j in [&mut f.jt, &mut f.jf] {
                *j = match *j {
                    PASS => off(at, end)?,
                    FAIL => off(at, fail_at)?,
                    n => n,
                };
            }
            Ok(f)
        })
        .collect()
}

/// Seccomp: the spec's `linux.seccomp` compiled to a classic BPF program, in the parent, and
/// installed by the init with one system call.
///
/// A small compiler of our own rather than libseccomp (a C library to link) or a crate: the
/// profile language of the runtime spec maps directly onto a linear program: check the
/// architecture, then one block per rule (system call number, then its argument conditions,
/// all of which must hold), first match wins, else the default action. 64-bit argument
/// comparisons are done on the two 32-bit halves. x86_64 and aarch64 (each with its own
/// system call table and audit architecture); other architectures refuse a spec with seccomp
/// rather than run without it.
///
/// Compiles a profile. System call names this architecture does not have are skipped, as
/// libseccomp does.
pub fn compile_seccomp(profile: &LinuxSeccomp) -> Result<Vec<SockFilter>> {
    let Some(arch) = Arch::HOST else {
        return Err(Error::spec(
            "linux.seccomp",
            "",
            format!("not supported on {} yet", std::env::consts::ARCH),
        ));
    };
    compile_for(profile, arch)
}

/// [`compile_seccomp`] for `arch` (the tests compile for both on either).
pub(crate) fn compile_for(profile: &LinuxSeccomp, arch: Arch) -> Result<Vec<SockFilter>> {
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut prog = vec![
        // Another architecture's system call numbers mean other calls: refuse them.
        stmt(BPF_LD_W_ABS, ARCH),
        jump(BPF_JEQ_K, arch.audit(), 1, 0),
        stmt(BPF_RET_K, RET_KILL_PROCESS),
    ];
    if arch == Arch::X86_64 {
        // x32 calls share the architecture but not the numbers: refuse them too, or a
        // deny list could be walked around through them.
        prog.extend([
            stmt(BPF_LD_W_ABS, NR),
            jump(BPF_JGE_K, X32_SYSCALL_BIT, 0, 1),
            stmt(BPF_RET_K, RET_KILL_PROCESS),
        ]);
    }
    for rule in profile.syscalls().iter().flatten() {
        let ret = action(rule.action(), rule.errno_ret())?;
        let args = rule.args().clone().unwrap_or_default();
        for name in rule.names() {
            let Some(nr) = arch.number(name) else {
                tracing::debug!(syscall = %name, "unknown system call in the seccomp profile, skipped");
                continue;
            };
            let mut body = Vec::new();
            for a in &args {
                if a.index() > 5 {
                    return Err(Error::spec(
                        "linux.seccomp.syscalls[].args[].index",
                        a.index(),
                        "above 5",
                    ));
                }
                body.push(condition(
                    a.index(),
                    a.op(),
                    a.value(),
                    a.value_two().unwrap_or(0),
                ));
            }
            // ld nr; jeq nr ? body : next rule; body...; ret action
            let start = prog.len();
            let body_len: usize = body.iter().map(Vec::len).sum();
            let block_end = start + 2 + body_len + 1; // index of the next rule
            prog.push(stmt(BPF_LD_W_ABS, NR));
            let skip = u8::try_from(body_len + 1).map_err(|_| {
                Error::spec(
                    "linux.seccomp.syscalls",
                    "",
                    "a rule is too long for a BPF jump",
                )
            })?;
            prog.push(jump(BPF_JEQ_K, nr, 0, skip));
            for seq in body {
                let at = prog.len();
                prog.extend(resolve(seq, at, block_end)?);
            }
            prog.push(stmt(BPF_RET_K, ret));
        }
    }
    prog.push(stmt(BPF_RET_K, default));
    if prog.len() > 4096 {
        return Err(Error::spec(
            "linux.seccomp",
            "",
            format!(
                "its BPF program of {} instructions is over 4096",
                prog.len()
            ),
        ));
    }
    Ok(prog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Runs a program on (nr, arch, args) as the kernel would.
    fn eval(prog: &[SockFilter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let f = prog[pc];
            match f.code {
                BPF_LD_W_ABS => {
                    let k = f.k as usize;
                    acc = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                }
                BPF_AND_K => acc &= f.k,
                BPF_RET_K => return f.k,
                BPF_JEQ_K | BPF_JGT_K | BPF_JGE_K => {
                    let t = match f.code {
                        BPF_JEQ_K => acc == f.k,
                        BPF_JGT_K => acc > f.k,
                        _ => acc >= f.k,
                    };
                    pc += usize::from(if t { f.jt } else { f.jf });
                }
                other => panic!("unexpected instruction {other:#x}"),
            }
            pc += 1;
        }
    }

    fn op_strategy() -> impl Strategy<Value = LinuxSeccompOperator> {
        prop_oneof![
            Just(LinuxSeccompOperator::ScmpCmpEq),
            Just(LinuxSeccompOperator::ScmpCmpNe),
            Just(LinuxSeccompOperator::ScmpCmpLt),
            Just(LinuxSeccompOperator::ScmpCmpLe),
            Just(LinuxSeccompOperator::ScmpCmpGt),
            Just(LinuxSeccompOperator::ScmpCmpGe),
            Just(LinuxSeccompOperator::ScmpCmpMaskedEq),
        ]
    }

    /// Values near each other in both halves, so that equal halves happen often.
    fn value() -> impl Strategy<Value = u64> {
        (0u64..4, 0u64..4, any::<u64>(), any::<bool>()).prop_map(|(hi, lo, r, random)| {
            if random {
                r
            } else {
                (hi << 32) | lo
            }
        })
    }

    proptest! {
        #[test]
        fn compiled_conditions_agree_with_the_spec(op in op_strategy(), v in value(), v2 in value(), arg in value(), index in 0usize..6) {
            let profile: LinuxSeccomp = serde_json::from_value(serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                    "args": [{"index": index, "value": v, "valueTwo": v2, "op": op}]}]
            })).unwrap();
            let prog = compile_for(&profile, Arch::X86_64).unwrap();
            let mut args = [0u64; 6];
            args[index] = arg;
            let want = match op {
                LinuxSeccompOperator::ScmpCmpEq => arg == v,
                LinuxSeccompOperator::ScmpCmpNe => arg != v,
                LinuxSeccompOperator::ScmpCmpLt => arg < v,
                LinuxSeccompOperator::ScmpCmpLe => arg <= v,
                LinuxSeccompOperator::ScmpCmpGt => arg > v,
                LinuxSeccompOperator::ScmpCmpGe => arg >= v,
                LinuxSeccompOperator::ScmpCmpMaskedEq => arg & v == v2,
            };
            let got = eval(&prog, 62, AUDIT_ARCH_X86_64, args);
            prop_assert_eq!(got == (RET_ERRNO | 1), want, "op {:?} v {:#x} v2 {:#x} arg {:#x}", op, v, v2, arg);
            // Other calls meet the default; other architectures and x32 calls are killed.
            prop_assert_eq!(eval(&prog, 0, AUDIT_ARCH_X86_64, args), RET_ALLOW);
            prop_assert_eq!(eval(&prog, 62, 0x4000_0003, args), RET_KILL_PROCESS);
            prop_assert_eq!(eval(&prog, 62 | X32_SYSCALL_BIT, AUDIT_ARCH_X86_64, args), RET_KILL_PROCESS);

            // The same profile for aarch64: kill is 129 there, and x86_64's numbers are
            // another architecture's.
            let prog = compile_for(&profile, Arch::Aarch64).unwrap();
            let got = eval(&prog, 129, AUDIT_ARCH_AARCH64, args);
            prop_assert_eq!(got == (RET_ERRNO | 1), want, "aarch64: op {:?} v {:#x} v2 {:#x} arg {:#x}", op, v, v2, arg);
            prop_assert_eq!(eval(&prog, 62, AUDIT_ARCH_AARCH64, args), RET_ALLOW);
            prop_assert_eq!(eval(&prog, 129, AUDIT_ARCH_X86_64, args), RET_KILL_PROCESS);
            // No x32 rule on aarch64: a number with bit 30 set is only an unknown call.
            prop_assert_eq!(eval(&prog, 129 | X32_SYSCALL_BIT, AUDIT_ARCH_AARCH64, args), RET_ALLOW);
        }

        #[test]
        fn each_architecture_numbers_calls_by_its_own_table(pick in 0usize..1000) {
            // A name both tables have, denied: each program matches its own number only.
            let common: Vec<&str> = crate::syscalls_aarch64::SYSCALLS
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| Arch::X86_64.number(n).is_some())
                .collect();
            let name = common[pick % common.len()];
            let profile: LinuxSeccomp = serde_json::from_value(serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
            })).unwrap();
            for (arch, audit) in [(Arch::X86_64, AUDIT_ARCH_X86_64), (Arch::Aarch64, AUDIT_ARCH_AARCH64)] {
                let prog = compile_for(&profile, arch).unwrap();
                let nr = arch.number(name).unwrap();
                prop_assert_eq!(eval(&prog, nr, audit, [0; 6]), RET_ERRNO | 38, "{} on {:?}", name, arch);
                let other = if nr == 0 { 1 } else { nr - 1 };
                if arch.number_is(other, name) {
                    continue;
                }
                prop_assert_eq!(eval(&prog, other, audit, [0; 6]), RET_ALLOW, "{} on {:?}", name, arch);
            }
        }
    }

    impl Arch {
        fn number_is(self, nr: u32, name: &str) -> bool {
            self.number(name) == Some(nr)
        }
    }

    #[test]
    fn the_tables_hold_what_each_architecture_has() {
        assert_eq!(Arch::Aarch64.number("openat"), Some(56));
        assert_eq!(Arch::X86_64.number("openat"), Some(257));
        assert_eq!(Arch::Aarch64.number("clone3"), Some(435));
        // Legacy calls aarch64 never had.
        for name in ["open", "fork", "stat", "arch_prctl", "epoll_wait"] {
            assert!(Arch::X86_64.number(name).is_some(), "{name}");
            assert_eq!(Arch::Aarch64.number(name), None, "{name}");
        }
        for t in [
            crate::syscalls_x86_64::SYSCALLS,
            crate::syscalls_aarch64::SYSCALLS,
        ] {
            assert!(
                t.windows(2).all(|w| w[0].0 < w[1].0),
                "sorted, no duplicates"
            );
        }
        // A profile naming only calls this architecture lacks compiles to the prologue and
        // the default.
        let profile: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["open", "fork"], "action": "SCMP_ACT_KILL_PROCESS"}]
        }))
        .unwrap();
        assert_eq!(compile_for(&profile, Arch::Aarch64).unwrap().len(), 4);
    }
}

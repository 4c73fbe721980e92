//! OCI `linux.seccomp` → classic BPF with `seccompiler`, compiled in the runtime before the
//! container is built and installed by the executor: right before execve with
//! `noNewPrivileges: true`, before the capability drop otherwise (`crate::executor` says why).
//! What the runtime itself still calls once the filter is in is listed in [`AFTER_FILTER_BEFORE_DROP`]
//! and [`AFTER_FILTER_BEFORE_EXEC`]; `create` refuses a profile that denies one of them.
//!
//! seccompiler takes one match action per filter, so a profile with several actions becomes a
//! stack of filters. The kernel runs every filter and keeps the most restrictive result, so:
//! filter 1 says "default action, except every syscall named by any rule (with that rule's
//! argument conditions) is allowed"; then one filter per (action, errno) group says "that action
//! when the rule matches, allow otherwise". A syscall matched by a rule gets the rule's action;
//! anything else gets the default.
//!
//! Every x86 ABI the profile lists is filtered, as libseccomp does: x86_64, i386
//! (`SCMP_ARCH_X86`, `int 0x80` and 32-bit binaries; `seccomp_data.arch` is AUDIT_ARCH_I386) and
//! x32 (`SCMP_ARCH_X32`: AUDIT_ARCH_X86_64 with bit 30 set in the syscall number). Each ABI
//! numbers syscalls its own way (tables generated from the kernel headers:
//! [`crate::syscall_table`], [`crate::syscall_table_i386`], [`crate::syscall_table_x32`]), so
//! every stacked filter holds one section per ABI, compiled with that ABI's numbers (one `JEQ`
//! per syscall without conditions, seccompiler for the rest), behind a small arch dispatch emitted here ([`Abi`], `dispatch`); sections that do
//! not fit the kernel's 4096-instruction limit together go in one program per ABI. An ABI the
//! profile does not list is killed (libseccomp's default bad-arch action); an empty
//! `architectures` means x86_64 only. This kernel lacks CONFIG_X86_X32_ABI: an x32 call the
//! profile allows still fails with ENOSYS, but the profile's denials apply first.

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
    LinuxSyscall,
};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use crate::{syscall_table, syscall_table_i386, syscall_table_x32};

/// Why a seccomp profile could not be compiled or installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error(
        "linux.seccomp: action {0} is not supported by pea-runtime (no seccomp agent support)"
    )]
    UnsupportedAction(String),
    #[error(
        "linux.seccomp.architectures: {0:?} lists none of the ABIs this machine runs \
         (SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32)"
    )]
    Arch(Vec<String>),
    #[error("linux.seccomp: syscall {name}: argument index {index} is out of range 0..=5")]
    ArgIndex { name: String, index: usize },
    #[error("linux.seccomp: rule for {names:?} has no syscall names")]
    EmptyNames { names: Vec<String> },
    #[error("linux.seccomp: {0}")]
    Compile(String),
    #[error("installing the seccomp filter failed: {0}")]
    Install(std::io::Error),
    #[error(
        "installing the seccomp filter without no_new_privs needs CAP_SYS_ADMIN, which the \
         container process does not have (is it in a user namespace it does not own?): set \
         process.noNewPrivileges to true"
    )]
    NeedsNoNewPrivs,
    #[error(
        "linux.seccomp: the profile gives {action:?} to {syscall}, which the runtime still calls \
         after installing the filter ({when}): {remedy}"
    )]
    DeniesRuntimePath {
        syscall: &'static str,
        action: LinuxSeccompAction,
        when: &'static str,
        remedy: &'static str,
    },
}

/// What the container init still calls after the filter went in before the capability drop
/// (`noNewPrivileges` false), in order, with representative arguments (libcontainer 0.7.0's
/// path, confirmed with `strace -f`): reading and resetting capabilities, dropping the bounding
/// set one capability at a time and setting the ambient set, chdir to process.cwd and checking
/// it, telling the runtime "ready" over its socket, waiting for `start` on the notify socket,
/// then the executor's signal reset and execve. Memory management and `write` (logging) too.
/// runc's list in the same order is similar: a profile that denies one fails under runc as well.
pub const AFTER_FILTER_BEFORE_DROP: &[(&str, [u64; 6])] = &[
    ("capget", [0; 6]),
    ("capset", [0; 6]),
    ("prctl", [libc::PR_CAPBSET_READ as u64, 0, 0, 0, 0, 0]),
    ("prctl", [libc::PR_CAPBSET_DROP as u64, 21, 0, 0, 0, 0]),
    ("prctl", [libc::PR_CAP_AMBIENT as u64, 4, 0, 0, 0, 0]),
    ("chdir", [0; 6]),
    ("getcwd", [0; 6]),
    ("openat", [0; 6]),
    ("read", [0; 6]),
    ("write", [2, 0, 0, 0, 0, 0]),
    ("close", [0; 6]),
    ("newfstatat", [0; 6]),
    ("statx", [0; 6]),
    ("sendmsg", [0; 6]),
    ("recvfrom", [0; 6]),
    ("recvmsg", [0; 6]),
    (
        "socket",
        [
            libc::AF_UNIX as u64,
            libc::SOCK_STREAM as u64 | libc::SOCK_CLOEXEC as u64,
            0,
            0,
            0,
            0,
        ],
    ),
    ("bind", [0; 6]),
    ("listen", [0; 6]),
    ("accept4", [0; 6]),
    ("mmap", [0; 6]),
    ("munmap", [0; 6]),
    ("brk", [0; 6]),
    ("rt_sigprocmask", [0; 6]),
    ("rt_sigaction", [0; 6]),
    ("execve", [0; 6]),
];

/// What runs after the filter when it goes in right before execve (`noNewPrivileges: true`).
pub const AFTER_FILTER_BEFORE_EXEC: &[(&str, [u64; 6])] = &[("execve", [0; 6])];

/// How restrictive an action is, as the kernel ranks filter results (higher wins).
fn severity(a: LinuxSeccompAction) -> u8 {
    match a {
        LinuxSeccompAction::ScmpActKillProcess => 7,
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => 6,
        LinuxSeccompAction::ScmpActTrap => 5,
        LinuxSeccompAction::ScmpActErrno => 4,
        LinuxSeccompAction::ScmpActNotify => 3,
        LinuxSeccompAction::ScmpActTrace => 2,
        LinuxSeccompAction::ScmpActLog => 1,
        LinuxSeccompAction::ScmpActAllow => 0,
    }
}

/// What the installed filters do with syscall `name` called with `args`: the most restrictive
/// action of the rules that match (name and every argument condition), else the default. This
/// is the semantics [`compile`] gives the kernel.
pub fn verdict(profile: &LinuxSeccomp, name: &str, args: &[u64; 6]) -> LinuxSeccompAction {
    let matches = |sc: &LinuxSyscall| {
        sc.names().iter().any(|n| n == name)
            && sc.args().iter().flatten().all(|a| {
                let Some(&v) = args.get(a.index()) else {
                    return false;
                };
                match a.op() {
                    LinuxSeccompOperator::ScmpCmpNe => v != a.value(),
                    LinuxSeccompOperator::ScmpCmpLt => v < a.value(),
                    LinuxSeccompOperator::ScmpCmpLe => v <= a.value(),
                    LinuxSeccompOperator::ScmpCmpEq => v == a.value(),
                    LinuxSeccompOperator::ScmpCmpGe => v >= a.value(),
                    LinuxSeccompOperator::ScmpCmpGt => v > a.value(),
                    LinuxSeccompOperator::ScmpCmpMaskedEq => {
                        v & a.value() == a.value_two().unwrap_or(0)
                    }
                }
            })
    };
    profile
        .syscalls()
        .iter()
        .flatten()
        .filter(|sc| matches(sc))
        .map(|sc| sc.action())
        .max_by_key(|a| severity(*a))
        .unwrap_or(profile.default_action())
}

/// Refuses a profile that would stop the runtime's own path after the filter is installed.
pub fn check_runtime_path(
    profile: &LinuxSeccomp,
    order: crate::executor::SeccompOrder,
) -> Result<(), SeccompError> {
    use crate::executor::SeccompOrder;
    let (calls, when, remedy) = match order {
        SeccompOrder::BeforeCapabilityDrop => (
            AFTER_FILTER_BEFORE_DROP,
            "noNewPrivileges is false, so the filter goes in before capabilities are dropped",
            "allow it, or set process.noNewPrivileges to true (the filter then goes in right \
             before execve)",
        ),
        SeccompOrder::BeforeExec => (
            AFTER_FILTER_BEFORE_EXEC,
            "noNewPrivileges is true, so the filter goes in right before execve",
            "allow it: without execve the container cannot start",
        ),
    };
    for (name, args) in calls {
        let action = verdict(profile, name, args);
        if !matches!(
            action,
            LinuxSeccompAction::ScmpActAllow | LinuxSeccompAction::ScmpActLog
        ) {
            return Err(SeccompError::DeniesRuntimePath {
                syscall: name,
                action,
                when,
                remedy,
            });
        }
    }
    Ok(())
}

/// Compiled filters plus the flags to install them with.
#[derive(Debug, Clone, Default)]
pub struct CompiledSeccomp {
    /// Installed in order; the last one has the highest precedence among equal actions.
    pub programs: Vec<BpfProgram>,
    /// SECCOMP_FILTER_FLAG_* bits.
    pub flags: u32,
    /// Syscall names the x86_64 kernel headers do not know (skipped, as runc does).
    pub unknown_names: Vec<String>,
}

const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1;
const SECCOMP_FILTER_FLAG_LOG: u32 = 2;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: u32 = 4;
const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: u32 = 32;

/// `AUDIT_ARCH_X86_64`: what `seccomp_data.arch` says for both the x86_64 and the x32 ABI.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386`: `int 0x80` and 32-bit processes.
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// x32 syscall numbers carry this bit (`__X32_SYSCALL_BIT`).
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// The kernel's per-program limit (`BPF_MAXINSNS`).
const BPF_MAXINSNS: usize = 4096;
/// What a syscall of an ABI the profile does not list gets: libseccomp's default bad-arch
/// action, and what seccompiler's own arch check did.
const RET_BAD_ARCH: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// The x86 syscall ABIs a profile can list, each with its own numbers (libseccomp's
/// SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Abi {
    X86_64,
    I386,
    X32,
}

impl Abi {
    /// The number of `name` in this ABI, from the tables generated from the kernel headers.
    pub fn number(self, name: &str) -> Option<i64> {
        match self {
            Abi::X86_64 => syscall_table::number(name),
            Abi::I386 => syscall_table_i386::number(name),
            Abi::X32 => syscall_table_x32::number(name),
        }
    }
}

/// The ABIs the profile's `architectures` list: none or an empty list means the native one, as
/// libseccomp does; architectures of other machines are ignored (their filters could never
/// match here), but a list with no x86 ABI at all is refused.
pub fn abis(profile: &LinuxSeccomp) -> Result<Vec<Abi>, SeccompError> {
    let Some(arches) = profile.architectures().as_ref().filter(|a| !a.is_empty()) else {
        return Ok(vec![Abi::X86_64]);
    };
    let mut out: Vec<Abi> = arches
        .iter()
        .filter_map(|a| match a {
            Arch::ScmpArchX86_64 | Arch::ScmpArchNative => Some(Abi::X86_64),
            Arch::ScmpArchX86 => Some(Abi::I386),
            Arch::ScmpArchX32 => Some(Abi::X32),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(SeccompError::Arch(
            arches.iter().map(|a| format!("{a:?}")).collect(),
        ));
    }
    Ok(out)
}

/// One stacked filter: an action and the syscalls (with conditions) it applies to.
type Group = (
    SeccompAction,
    BTreeMap<i64, Vec<SeccompRule>>,
    std::collections::BTreeSet<i64>,
);

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<SeccompAction, SeccompError> {
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActErrno => {
            SeccompAction::Errno(errno.unwrap_or(libc::EPERM as u32))
        }
        LinuxSeccompAction::ScmpActTrace => {
            SeccompAction::Trace(errno.unwrap_or(libc::EPERM as u32))
        }
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::UnsupportedAction("SCMP_ACT_NOTIFY".into()))
        }
    })
}

fn conditions(sc: &LinuxSyscall, name: &str) -> Result<Vec<SeccompCondition>, SeccompError> {
    let mut out = Vec::new();
    for arg in sc.args().iter().flatten() {
        if arg.index() > 5 {
            return Err(SeccompError::ArgIndex {
                name: name.into(),
                index: arg.index(),
            });
        }
        let (op, value) = match arg.op() {
            LinuxSeccompOperator::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
            LinuxSeccompOperator::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
            LinuxSeccompOperator::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
            LinuxSeccompOperator::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
            LinuxSeccompOperator::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
            LinuxSeccompOperator::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
            // libseccomp: (arg & value) == valueTwo
            LinuxSeccompOperator::ScmpCmpMaskedEq => (
                SeccompCmpOp::MaskedEq(arg.value()),
                arg.value_two().unwrap_or(0),
            ),
        };
        out.push(
            SeccompCondition::new(arg.index() as u8, SeccompCmpArgLen::Qword, op, value)
                .map_err(|e| SeccompError::Compile(format!("syscall {name}: {e}")))?,
        );
    }
    Ok(out)
}

/// Adds a rule for `nr` to `map`: no conditions means "always", which absorbs conditional rules.
fn add_rule(
    map: &mut BTreeMap<i64, Vec<SeccompRule>>,
    unconditional: &mut std::collections::BTreeSet<i64>,
    nr: i64,
    conds: Vec<SeccompCondition>,
) -> Result<(), SeccompError> {
    if unconditional.contains(&nr) {
        return Ok(());
    }
    if conds.is_empty() {
        unconditional.insert(nr);
        map.insert(nr, Vec::new());
        return Ok(());
    }
    let rule = SeccompRule::new(conds).map_err(|e| SeccompError::Compile(e.to_string()))?;
    map.entry(nr).or_default().push(rule);
    Ok(())
}

/// The instructions seccompiler puts first: load the arch, continue if it is x86_64, else kill.
fn seccompiler_arch_check() -> [sock_filter; 3] {
    [
        sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 4,
        },
        sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 1,
            jf: 0,
            k: AUDIT_ARCH_X86_64,
        },
        ret(libc::SECCOMP_RET_KILL_PROCESS),
    ]
}

fn ret(k: u32) -> sock_filter {
    sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

/// Syscalls per run of `JEQ`s that share one return (a conditional jump reaches 255 ahead).
const DENSE_RUN: usize = 200;

/// One ABI's part of a filter, with that ABI's numbers: `matched` for the syscalls in `rules`
/// (under their conditions), `mismatch` otherwise. Syscalls without conditions — nearly all of a
/// profile — get one `JEQ` each to a return shared by a run of them (seccompiler spends ≈ 4.5
/// instructions on each, and the kernel's verifier and JIT cost grows with the length: the three
/// ABIs of an allow-list profile now fit one program); syscalls with argument conditions go
/// through seccompiler. Every path ends in a return and every jump is relative and forward, so
/// the section can sit anywhere after the dispatch in [`assemble`].
fn build(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<Vec<sock_filter>, SeccompError> {
    let (always, conditional): (BTreeMap<_, _>, BTreeMap<_, _>) =
        rules.into_iter().partition(|(_, r)| r.is_empty());
    let mut prog = vec![sock_filter {
        code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let nrs: Vec<u32> = always.keys().map(|&nr| nr as u32).collect();
    for run in nrs.chunks(DENSE_RUN) {
        let k = run.len();
        for (i, &nr) in run.iter().enumerate() {
            prog.push(sock_filter {
                code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                // to the shared return after this run's `JA`
                jt: (k - i) as u8,
                jf: 0,
                k: nr,
            });
        }
        prog.push(sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JA) as u16,
            jt: 0,
            jf: 0,
            k: 1,
        });
        prog.push(ret(u32::from(matched.clone())));
    }
    // The conditional rules (seccompiler reloads nr itself), else the mismatch action.
    prog.extend(build_seccompiler(conditional, mismatch, matched)?);
    Ok(prog)
}

/// seccompiler's program for `rules`, without its leading arch check.
fn build_seccompiler(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<Vec<sock_filter>, SeccompError> {
    let filter = SeccompFilter::new(rules, mismatch, matched, TargetArch::x86_64)
        .map_err(|e| SeccompError::Compile(e.to_string()))?;
    let mut prog =
        BpfProgram::try_from(filter).map_err(|e| SeccompError::Compile(e.to_string()))?;
    if prog.len() < 4 || prog[..3] != seccompiler_arch_check() {
        return Err(SeccompError::Compile(
            "seccompiler's program does not start with the arch check pea-runtime expects".into(),
        ));
    }
    prog.drain(..3);
    Ok(prog)
}

/// One slot's sections, one per ABI that has rules there.
type Sections = Vec<(Abi, Vec<sock_filter>)>;

/// Which stacked filter an ABI's section belongs to (the same order for every ABI).
#[derive(Debug, Clone, PartialEq)]
enum Slot {
    /// The default action, with every named syscall let through.
    Base,
    /// One non-allow action for the syscalls its rules match, allow otherwise.
    Group(SeccompAction),
    /// What the profile says about `seccomp` itself, installed last.
    SeccompSelf,
}

/// Compiles an OCI profile: for every stacked filter, one section per listed ABI behind an
/// arch dispatch (see [`assemble`]).
pub fn compile(profile: &LinuxSeccomp) -> Result<CompiledSeccomp, SeccompError> {
    let abis = abis(profile)?;
    let mut flags = 0;
    for f in profile.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            }
        };
    }
    let unknown_names = profile
        .syscalls()
        .iter()
        .flatten()
        .flat_map(|sc| sc.names())
        .filter(|n| syscall_table::number(n).is_none())
        .cloned()
        .collect();
    // Every ABI's sections, by slot; slots in the order of their first appearance.
    let mut slots: Vec<(Slot, Sections)> = Vec::new();
    for &abi in &abis {
        for (slot, section) in compile_abi(profile, abi)? {
            match slots.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, sections)) => sections.push((abi, section)),
                None => slots.push((slot, vec![(abi, section)])),
            }
        }
    }
    // Base first and seccomp's own verdict last, whatever ABI brought them in.
    slots.sort_by_key(|(s, _)| match s {
        Slot::Base => 0,
        Slot::Group(_) => 1,
        Slot::SeccompSelf => 2,
    });
    let mut programs = Vec::new();
    for (_, sections) in slots {
        programs.extend(assemble(&sections, &abis)?);
    }
    Ok(CompiledSeccomp {
        programs,
        flags,
        unknown_names,
    })
}

/// One ABI's sections, by slot, with that ABI's syscall numbers. Names the ABI lacks are
/// skipped, as libseccomp does.
fn compile_abi(
    profile: &LinuxSeccomp,
    abi: Abi,
) -> Result<Vec<(Slot, Vec<sock_filter>)>, SeccompError> {
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    // filter 1: default, with every named syscall (under its conditions) let through.
    let mut named: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut named_uncond = Default::default();
    // one group per distinct non-default-equivalent action
    let mut groups: Vec<Group> = Vec::new();
    // Rules for `seccomp` itself are kept apart: a filter that denies it installed early would
    // block installing the filters after it, so its verdict goes into the last filter.
    let nr_seccomp = abi.number("seccomp").expect("every x86 ABI has seccomp");
    let mut seccomp_allow: Vec<Vec<SeccompCondition>> = Vec::new();
    let mut seccomp_deny: Vec<(SeccompAction, Vec<SeccompCondition>)> = Vec::new();
    for sc in profile.syscalls().iter().flatten() {
        if sc.names().is_empty() {
            return Err(SeccompError::EmptyNames {
                names: sc.names().clone(),
            });
        }
        let act = action(sc.action(), sc.errno_ret())?;
        for name in sc.names() {
            let Some(nr) = abi.number(name) else {
                continue;
            };
            let conds = conditions(sc, name)?;
            if nr == nr_seccomp {
                if act == SeccompAction::Allow {
                    seccomp_allow.push(conds);
                } else {
                    seccomp_deny.push((act.clone(), conds));
                }
                continue;
            }
            add_rule(&mut named, &mut named_uncond, nr, conds.clone())?;
            if act == SeccompAction::Allow {
                continue;
            }
            let idx = match groups.iter().position(|(a, _, _)| *a == act) {
                Some(i) => i,
                None => {
                    groups.push((act.clone(), BTreeMap::new(), Default::default()));
                    groups.len() - 1
                }
            };
            let (_, map, uncond) = &mut groups[idx];
            add_rule(map, uncond, nr, conds)?;
        }
    }
    // Earlier filters always let `seccomp` through.
    add_rule(&mut named, &mut named_uncond, nr_seccomp, Vec::new())?;
    let mut out = Vec::new();
    if default != SeccompAction::Allow {
        out.push((
            Slot::Base,
            build(named, default.clone(), SeccompAction::Allow)?,
        ));
    }
    for (act, map, _) in groups {
        if map.is_empty() {
            continue;
        }
        out.push((
            Slot::Group(act.clone()),
            build(map, SeccompAction::Allow, act)?,
        ));
    }
    if let Some(last) = seccomp_filter(nr_seccomp, &default, seccomp_allow, seccomp_deny)? {
        out.push((Slot::SeccompSelf, last));
    }
    Ok(out)
}

/// Puts one slot's per-ABI sections behind an arch dispatch, in one program when they fit the
/// kernel's 4096-instruction limit, else one program per ABI. The dispatch (libseccomp's
/// layout): `seccomp_data.arch` x86_64 → x32 if `nr` carries the x32 bit, else x86_64;
/// i386 → i386; anything else → kill. An ABI the profile lists whose section sits in another
/// program (or has none, the rules naming nothing it knows) is allowed here: the kernel keeps
/// the most restrictive result of all filters, so that other program decides. An ABI the
/// profile does not list is killed in every program.
fn assemble(
    sections: &[(Abi, Vec<sock_filter>)],
    listed: &[Abi],
) -> Result<Vec<BpfProgram>, SeccompError> {
    const HEADER: usize = 9;
    let total: usize = HEADER + sections.iter().map(|(_, s)| s.len()).sum::<usize>();
    if total <= BPF_MAXINSNS {
        return Ok(vec![dispatch(sections, listed)]);
    }
    sections
        .iter()
        .map(|one| {
            let prog = dispatch(std::slice::from_ref(one), listed);
            if prog.len() > BPF_MAXINSNS {
                return Err(SeccompError::Compile(format!(
                    "the {:?} filter has {} instructions, more than the kernel's {BPF_MAXINSNS}",
                    one.0,
                    prog.len()
                )));
            }
            Ok(prog)
        })
        .collect()
}

fn dispatch(sections: &[(Abi, Vec<sock_filter>)], listed: &[Abi]) -> BpfProgram {
    let ld = |k: u32| sock_filter {
        code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |op: u32, k: u32, jt: u8, jf: u8| sock_filter {
        code: (libc::BPF_JMP | op | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    // Where each section starts, counted from the end of the 9-instruction header.
    let mut starts = Vec::new();
    let mut at = 0u32;
    for (abi, s) in sections {
        starts.push((*abi, at));
        at += s.len() as u32;
    }
    // The instruction at header index `pc` that sends `abi` on: a jump to its section, allow
    // (listed, judged elsewhere) or kill (not listed).
    let outcome = |abi: Abi, pc: u32| match starts.iter().find(|(a, _)| *a == abi) {
        Some((_, start)) => sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JA) as u16,
            jt: 0,
            jf: 0,
            k: 9 + start - (pc + 1),
        },
        None if listed.contains(&abi) => ret(libc::SECCOMP_RET_ALLOW),
        None => ret(RET_BAD_ARCH),
    };
    let mut prog = vec![
        ld(4),                                        // 0: arch
        jump(libc::BPF_JEQ, AUDIT_ARCH_X86_64, 0, 4), // 1: → 2, else → 6
        ld(0),                                        // 2: nr
        jump(libc::BPF_JGE, X32_SYSCALL_BIT, 0, 1),   // 3: → 4 (x32), else → 5
        outcome(Abi::X32, 4),                         // 4
        outcome(Abi::X86_64, 5),                      // 5
        jump(libc::BPF_JEQ, AUDIT_ARCH_I386, 0, 1),   // 6: → 7, else → 8
        outcome(Abi::I386, 7),                        // 7
        ret(RET_BAD_ARCH),                            // 8: another machine's ABI
    ];
    for (_, s) in sections {
        prog.extend_from_slice(s);
    }
    prog
}

/// The last filter: what the profile says about `seccomp` itself, in one filter. Mixes that need
/// two different non-allow verdicts for it are refused rather than installed wrongly.
fn seccomp_filter(
    nr: i64,
    default: &SeccompAction,
    allow: Vec<Vec<SeccompCondition>>,
    deny: Vec<(SeccompAction, Vec<SeccompCondition>)>,
) -> Result<Option<Vec<sock_filter>>, SeccompError> {
    let unsupported = || {
        SeccompError::Compile(
            "rules for the seccomp syscall itself that need more than one verdict are not \
             supported"
                .into(),
        )
    };
    let allow_always = allow.iter().any(|c| c.is_empty());
    let denied_by_default = *default != SeccompAction::Allow && !allow_always;
    if denied_by_default && !allow.is_empty() {
        return Err(unsupported());
    }
    let mut actions: Vec<&SeccompAction> = deny.iter().map(|(a, _)| a).collect();
    actions.dedup();
    if denied_by_default {
        // Every deny rule must agree with the default, then seccomp is simply denied.
        if actions.iter().any(|a| *a != default) {
            return Err(unsupported());
        }
        let rules = BTreeMap::from([(nr, Vec::new())]);
        return build(rules, SeccompAction::Allow, default.clone()).map(Some);
    }
    match actions.as_slice() {
        [] => Ok(None),
        [one] => {
            let act = (*one).clone();
            let mut rules = BTreeMap::new();
            let mut uncond = Default::default();
            for (_, conds) in deny {
                add_rule(&mut rules, &mut uncond, nr, conds)?;
            }
            build(rules, SeccompAction::Allow, act).map(Some)
        }
        _ => Err(unsupported()),
    }
}

/// Installs the filters in the calling thread, in the container process: with no_new_privs
/// right before execve, without it before the capability drop (it needs CAP_SYS_ADMIN then).
///
/// Async-signal-safe enough for a post-fork single-threaded child: no allocation.
pub fn install(compiled: &CompiledSeccomp, no_new_privs: bool) -> Result<(), SeccompError> {
    if no_new_privs {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        if rc != 0 {
            return Err(SeccompError::Install(std::io::Error::last_os_error()));
        }
    }
    for prog in &compiled.programs {
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            // sock_filter in seccompiler and libc have the same C layout (u16, u8, u8, u32).
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: fprog points to a live, correctly sized BPF program for the duration of the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                compiled.flags as libc::c_ulong,
                &fprog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EACCES) && !no_new_privs {
                return Err(SeccompError::NeedsNoNewPrivs);
            }
            return Err(SeccompError::Install(err));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn errno_default_with_allow_list() {
        // seccomp not allowed: its denial goes into a last filter so the base can be installed
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","write","no_such"],"action":"SCMP_ACT_ALLOW"}]}"#,
        );
        let c = compile(&p).unwrap();
        assert_eq!(c.programs.len(), 2);
        assert_eq!(c.unknown_names, vec!["no_such".to_string()]);
        // seccomp allowed: one filter
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","seccomp"],"action":"SCMP_ACT_ALLOW"}]}"#,
        );
        assert_eq!(compile(&p).unwrap().programs.len(), 1);
        // two different verdicts for seccomp itself: refused
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["seccomp"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#,
        );
        assert!(compile(&p).is_err());
    }

    #[test]
    fn mixed_actions_stack_filters() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG"],"syscalls":[
                {"names":["unshare"],"action":"SCMP_ACT_ERRNO","errnoRet":1},
                {"names":["keyctl"],"action":"SCMP_ACT_ERRNO","errnoRet":38},
                {"names":["personality"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        let c = compile(&p).unwrap();
        // default allow: no base filter; EPERM group and ENOSYS group
        assert_eq!(c.programs.len(), 2);
        assert_eq!(c.flags, SECCOMP_FILTER_FLAG_LOG);
    }

    #[test]
    fn notify_and_foreign_arch_are_refused() {
        let p = profile(r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#);
        assert!(matches!(
            compile(&p),
            Err(SeccompError::UnsupportedAction(_))
        ));
        let p =
            profile(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_AARCH64"]}"#);
        assert!(matches!(compile(&p), Err(SeccompError::Arch(_))));
    }

    /// How a test child makes a syscall.
    #[derive(Clone, Copy)]
    enum Call {
        /// The x86_64 `syscall` instruction (an x32 call is the x32 number, bit 30 set).
        Native(i64, u64),
        /// `int 0x80`: the i386 ABI, as a 32-bit process would make it.
        I386(u32, u32),
    }

    /// Makes an i386 syscall from this 64-bit process; returns 0 or the errno.
    fn int80(nr: u32, arg0: u32) -> i64 {
        let ret: u64;
        // SAFETY: `int 0x80` enters the kernel's ia32 entry with eax = nr, ebx/ecx/edx = args;
        // rbx cannot be an asm operand, so arg0 is swapped into it and back. The kernel clobbers
        // r8-r11 on this path (declared), returns in eax, and touches no memory of ours for the
        // calls the tests make (getpid, getuid, getppid, umask: no pointer arguments).
        unsafe {
            std::arch::asm!(
                "xchg {b}, rbx",
                "int 0x80",
                "xchg {b}, rbx",
                b = inout(reg) u64::from(arg0) => _,
                inlateout("rax") u64::from(nr) => ret,
                in("rcx") 0u64,
                in("rdx") 0u64,
                out("r8") _,
                out("r9") _,
                out("r10") _,
                out("r11") _,
            );
        }
        let r = ret as u32 as i32;
        if r < 0 {
            -(r as i64)
        } else {
            0
        }
    }

    /// Installs `profile` in a forked child, makes `calls` there and returns what each returned
    /// (0 or the errno) and the child's wait status. The child only makes raw syscalls (it was
    /// forked from a multi-threaded test process).
    fn run_calls(profile: &str, calls: &[Call]) -> (Vec<i64>, i32) {
        let compiled = compile(&serde_json::from_str(profile).unwrap()).unwrap();
        let mut fds = [0; 2];
        // SAFETY: pipe writes two fds into our array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child below only makes raw syscalls on memory prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: raw syscalls only; results go through the pipe; _exit never returns.
            unsafe {
                if install(&compiled, true).is_err() {
                    libc::_exit(99);
                }
                for &call in calls {
                    let v: i64 = match call {
                        Call::Native(nr, arg0) => {
                            if libc::syscall(nr, arg0, 0, 0, 0, 0) < 0 {
                                *libc::__errno_location() as i64
                            } else {
                                0
                            }
                        }
                        Call::I386(nr, arg0) => int80(nr, arg0),
                    };
                    libc::write(fds[1], &v as *const i64 as *const libc::c_void, 8);
                }
                libc::_exit(0);
            }
        }
        // SAFETY: closing our copy of the write end; reading into a local buffer.
        unsafe { libc::close(fds[1]) };
        let mut out = Vec::new();
        loop {
            let mut v: i64 = 0;
            // SAFETY: reading exactly 8 bytes into v.
            let n = unsafe { libc::read(fds[0], &mut v as *mut i64 as *mut libc::c_void, 8) };
            if n != 8 {
                break;
            }
            out.push(v);
        }
        let mut status = 0;
        // SAFETY: reaping the child we forked; closing our read end.
        unsafe {
            libc::waitpid(pid, &mut status, 0);
            libc::close(fds[0]);
        }
        (out, status)
    }

    /// [`run_calls`] with x86_64 calls (nr, arg0), for a child that must exit normally.
    fn run_under(profile: &str, calls: &[(i64, u64)]) -> Vec<i64> {
        let calls: Vec<Call> = calls.iter().map(|&(nr, a)| Call::Native(nr, a)).collect();
        let (out, status) = run_calls(profile, &calls);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status:#x}"
        );
        out
    }

    fn nr(abi: Abi, name: &str) -> i64 {
        abi.number(name).unwrap()
    }

    /// Whether this kernel runs x32 binaries (CONFIG_X86_X32_ABI): without it an x32 call the
    /// filters allow still fails with ENOSYS.
    fn x32_enosys() -> i64 {
        // SAFETY: getpid with the x32 bit: no arguments, no memory.
        let r = unsafe { libc::syscall(nr(Abi::X32, "getpid")) };
        if r < 0 {
            std::io::Error::last_os_error().raw_os_error().unwrap() as i64
        } else {
            0
        }
    }

    #[test]
    fn i386_and_x32_calls_get_the_profile_actions_when_listed() {
        let i386 = |name| Call::I386(nr(Abi::I386, name) as u32, 0);
        let x32 = |name| Call::Native(nr(Abi::X32, name), 0);
        let native = |name| Call::Native(nr(Abi::X86_64, name), 0);
        // CONFIG_X86_X32_ABI is off on this host's kernel: an allowed x32 call gets ENOSYS.
        let allowed_x32 = x32_enosys();

        // Docker's shape: deny-list on a default allow, all three ABIs listed.
        let deny_list = r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
            "syscalls":[{"names":["getuid","getppid"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#;
        let (got, status) = run_calls(
            deny_list,
            &[
                native("getuid"),
                i386("getuid"),
                x32("getuid"),
                i386("getppid"),
                i386("getpid"),
                x32("getpid"),
            ],
        );
        assert!(libc::WIFEXITED(status), "child status {status:#x}");
        assert_eq!(got, vec![13, 13, 13, 13, 0, allowed_x32]);

        // Allow-list on a default errno, all three ABIs listed.
        let allow_list = r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":40,
            "architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
            "syscalls":[{"names":["getpid","write","exit_group","exit","read"],"action":"SCMP_ACT_ALLOW"},
                        {"names":["umask"],"action":"SCMP_ACT_ERRNO","errnoRet":22}]}"#;
        let (got, status) = run_calls(
            allow_list,
            &[
                i386("getpid"),
                i386("getppid"),
                Call::I386(nr(Abi::I386, "umask") as u32, 0o22),
                x32("getpid"),
                x32("getppid"),
                native("getppid"),
            ],
        );
        assert!(libc::WIFEXITED(status), "child status {status:#x}");
        assert_eq!(got, vec![0, 40, 22, allowed_x32, 40, 40]);
        assert_ne!(allowed_x32, 40, "allowed and denied x32 calls must differ");
    }

    #[test]
    fn abis_the_profile_does_not_list_are_killed() {
        let only_native = r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["getuid"],"action":"SCMP_ACT_ERRNO"}]}"#;
        for call in [
            Call::I386(nr(Abi::I386, "getpid") as u32, 0),
            Call::Native(nr(Abi::X32, "getpid"), 0),
        ] {
            let (got, status) = run_calls(
                only_native,
                &[Call::Native(nr(Abi::X86_64, "getuid"), 0), call],
            );
            assert_eq!(got, vec![1]);
            assert!(
                libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
                "child status {status:#x}"
            );
        }
        // i386 listed without x86_64: native calls are killed, i386 ones filtered.
        let only_i386 = r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86"],
            "syscalls":[{"names":["getuid"],"action":"SCMP_ACT_ERRNO"}]}"#;
        let (got, status) = run_calls(
            only_i386,
            &[
                Call::I386(nr(Abi::I386, "getuid") as u32, 0),
                Call::Native(nr(Abi::X86_64, "getpid"), 0),
            ],
        );
        // the result of the first call cannot be written (write is a native call): killed there
        assert!(got.is_empty(), "{got:?}");
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
            "child status {status:#x}"
        );
    }

    #[test]
    fn big_profiles_split_per_abi_under_the_kernel_limit() {
        let names: Vec<&str> = syscall_table::SYSCALLS.iter().map(|(n, _)| *n).collect();
        let names = serde_json::to_string(&names).unwrap();
        // every x86_64 name allowed without conditions: dense, the three ABIs fit one program
        let p = profile(&format!(
            r#"{{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
                "syscalls":[{{"names":{names},"action":"SCMP_ACT_ALLOW"}}]}}"#
        ));
        let c = compile(&p).unwrap();
        assert_eq!(c.programs.len(), 1);
        assert!(c.programs[0].len() <= BPF_MAXINSNS);
        // every name (but seccomp, see seccomp_filter) with an argument condition: too big
        // together, one program per ABI
        let names: Vec<&str> = syscall_table::SYSCALLS
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| *n != "seccomp")
            .collect();
        let names = serde_json::to_string(&names).unwrap();
        let p = profile(&format!(
            r#"{{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
                "syscalls":[{{"names":{names},"action":"SCMP_ACT_ALLOW","args":[{{"index":0,"value":1,"op":"SCMP_CMP_NE"}}]}}]}}"#
        ));
        let c = compile(&p).unwrap();
        // the base filter per ABI, then the default's verdict on seccomp itself
        assert_eq!(c.programs.len(), 4);
        assert!(c.programs.iter().all(|p| p.len() <= BPF_MAXINSNS));
        // a small one stays one program
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
                "syscalls":[{"names":["unshare"],"action":"SCMP_ACT_ERRNO"}]}"#,
        );
        assert_eq!(compile(&p).unwrap().programs.len(), 1);
    }

    #[test]
    fn long_allow_lists_span_several_dense_runs() {
        // every x86_64 syscall but getppid and umask allowed: more than one run of JEQs
        let names: Vec<&str> = syscall_table::SYSCALLS
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| *n != "getppid" && *n != "umask")
            .collect();
        assert!(names.len() > DENSE_RUN);
        let got = run_under(
            &format!(
                r#"{{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":40,
                    "syscalls":[{{"names":{},"action":"SCMP_ACT_ALLOW"}}]}}"#,
                serde_json::to_string(&names).unwrap()
            ),
            &[
                (libc::SYS_getppid, 0),
                (libc::SYS_getpid, 0),
                (libc::SYS_umask, 0o22),
                (libc::SYS_getuid, 0),
                (libc::SYS_gettid, 0),
            ],
        );
        assert_eq!(got, vec![40, 0, 40, 0, 0]);
    }

    #[test]
    fn kernel_applies_stacked_filters_as_the_profile_says() {
        let (getpid, getppid, getuid, umask, personality, prctl) = (
            libc::SYS_getpid,
            libc::SYS_getppid,
            libc::SYS_getuid,
            libc::SYS_umask,
            libc::SYS_personality,
            libc::SYS_prctl,
        );
        // default EPERM; allow-list; one ENOSYS rule; a LOG rule (more permissive than the
        // default, so the base filter must let it through); personality only for safe args.
        let got = run_under(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["getpid","write","exit_group","exit","read"],"action":"SCMP_ACT_ALLOW"},
                {"names":["getppid"],"action":"SCMP_ACT_ERRNO","errnoRet":38},
                {"names":["umask"],"action":"SCMP_ACT_LOG"},
                {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":4294967295,"op":"SCMP_CMP_EQ"}]},
                {"names":["prctl"],"action":"SCMP_ACT_ERRNO","errnoRet":22,"args":[{"index":0,"value":255,"valueTwo":3,"op":"SCMP_CMP_MASKED_EQ"}]},
                {"names":["prctl"],"action":"SCMP_ACT_ALLOW"}]}"#,
            &[
                (getpid, 0),
                (getppid, 0),
                (getuid, 0),
                (umask, 0o22),
                (personality, 0xffff_ffff),
                (personality, 0x0040000),
                (prctl, 3), // PR_GET_DUMPABLE: masked match -> EINVAL
                (prctl, libc::PR_GET_NO_NEW_PRIVS as u64), // allowed
                // SECCOMP_GET_ACTION_AVAIL with a NULL pointer: EFAULT if allowed, EPERM here
                (libc::SYS_seccomp, 2),
            ],
        );
        assert_eq!(got, vec![0, 38, 1, 0, 0, 1, 22, 0, 1]);

        // default ALLOW with a deny rule: everything else passes.
        let got = run_under(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["getuid"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
            &[(getuid, 0), (getpid, 0)],
        );
        assert_eq!(got, vec![13, 0]);
    }

    #[test]
    fn verdicts_follow_the_most_restrictive_matching_rule() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["prctl","capset"],"action":"SCMP_ACT_ALLOW"},
                {"names":["prctl"],"action":"SCMP_ACT_KILL","args":[{"index":0,"value":24,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        assert_eq!(
            verdict(&p, "capset", &[0; 6]),
            LinuxSeccompAction::ScmpActAllow
        );
        assert_eq!(
            verdict(&p, "prctl", &[23, 0, 0, 0, 0, 0]),
            LinuxSeccompAction::ScmpActAllow
        );
        assert_eq!(
            verdict(&p, "prctl", &[24, 0, 0, 0, 0, 0]),
            LinuxSeccompAction::ScmpActKill
        );
        assert_eq!(
            verdict(&p, "mkdir", &[0; 6]),
            LinuxSeccompAction::ScmpActErrno
        );
    }

    #[test]
    fn the_runtime_path_after_the_filter_is_checked_per_order() {
        use crate::executor::SeccompOrder;
        // Denies capset: fatal before the capability drop, harmless right before execve.
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["capset"],"action":"SCMP_ACT_ERRNO"}]}"#,
        );
        let e = check_runtime_path(&p, SeccompOrder::BeforeCapabilityDrop).unwrap_err();
        assert!(e.to_string().contains("capset"), "{e}");
        check_runtime_path(&p, SeccompOrder::BeforeExec).unwrap();
        // An allow-list default (docker's shape) that allows the path passes both.
        let mut names: Vec<&str> = AFTER_FILTER_BEFORE_DROP.iter().map(|(n, _)| *n).collect();
        names.dedup();
        let p = profile(&format!(
            r#"{{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{{"names":{},"action":"SCMP_ACT_ALLOW"}}]}}"#,
            serde_json::to_string(&names).unwrap()
        ));
        check_runtime_path(&p, SeccompOrder::BeforeCapabilityDrop).unwrap();
        check_runtime_path(&p, SeccompOrder::BeforeExec).unwrap();
        let p = profile(r#"{"defaultAction":"SCMP_ACT_KILL_PROCESS"}"#);
        let e = check_runtime_path(&p, SeccompOrder::BeforeExec).unwrap_err();
        assert!(e.to_string().contains("execve"), "{e}");
    }

    #[test]
    fn bad_arg_index_names_the_syscall() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mount"],"action":"SCMP_ACT_ERRNO","args":[{"index":7,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        let e = compile(&p).unwrap_err().to_string();
        assert!(e.contains("mount") && e.contains('7'), "{e}");
    }
}

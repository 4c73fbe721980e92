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

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
    LinuxSyscall,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::syscall_table;

/// Why a seccomp profile could not be compiled or installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error(
        "linux.seccomp: action {0} is not supported by pea-runtime (no seccomp agent support)"
    )]
    UnsupportedAction(String),
    #[error("linux.seccomp: architectures {0:?} do not include x86_64, the only architecture pea-runtime filters")]
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
    /// Syscall names the kernel headers do not know (skipped, as libseccomp does for other arches).
    pub unknown_names: Vec<String>,
}

const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1;
const SECCOMP_FILTER_FLAG_LOG: u32 = 2;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: u32 = 4;
const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: u32 = 32;

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

fn build(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, SeccompError> {
    let filter = SeccompFilter::new(rules, mismatch, matched, TargetArch::x86_64)
        .map_err(|e| SeccompError::Compile(e.to_string()))?;
    BpfProgram::try_from(filter).map_err(|e| SeccompError::Compile(e.to_string()))
}

/// Compiles an OCI profile.
pub fn compile(profile: &LinuxSeccomp) -> Result<CompiledSeccomp, SeccompError> {
    if let Some(arches) = profile.architectures() {
        let native = arches
            .iter()
            .any(|a| matches!(a, Arch::ScmpArchX86_64 | Arch::ScmpArchNative));
        if !arches.is_empty() && !native {
            return Err(SeccompError::Arch(
                arches.iter().map(|a| format!("{a:?}")).collect(),
            ));
        }
    }
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
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut unknown_names = Vec::new();

    // filter 1: default, with every named syscall (under its conditions) let through.
    let mut named: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut named_uncond = Default::default();
    // one group per distinct non-default-equivalent action
    let mut groups: Vec<Group> = Vec::new();
    // Rules for `seccomp` itself are kept apart: a filter that denies it installed early would
    // block installing the filters after it, so its verdict goes into the last filter.
    let nr_seccomp = syscall_table::number("seccomp").expect("x86_64 has seccomp");
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
            let Some(nr) = syscall_table::number(name) else {
                unknown_names.push(name.clone());
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
    let mut programs = Vec::new();
    if default != SeccompAction::Allow {
        programs.push(build(named, default.clone(), SeccompAction::Allow)?);
    }
    for (act, map, _) in groups {
        if map.is_empty() {
            continue;
        }
        programs.push(build(map, SeccompAction::Allow, act)?);
    }
    if let Some(last) = seccomp_filter(nr_seccomp, &default, seccomp_allow, seccomp_deny)? {
        programs.push(last);
    }
    Ok(CompiledSeccomp {
        programs,
        flags,
        unknown_names,
    })
}

/// The last filter: what the profile says about `seccomp` itself, in one filter. Mixes that need
/// two different non-allow verdicts for it are refused rather than installed wrongly.
fn seccomp_filter(
    nr: i64,
    default: &SeccompAction,
    allow: Vec<Vec<SeccompCondition>>,
    deny: Vec<(SeccompAction, Vec<SeccompCondition>)>,
) -> Result<Option<BpfProgram>, SeccompError> {
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

    /// Installs `profile` in a forked child, runs `calls` (nr, arg0) there and returns what each
    /// returned: 0 or the errno. The child only makes raw syscalls (it was forked from a
    /// multi-threaded test process).
    fn run_under(profile: &str, calls: &[(i64, u64)]) -> Vec<i64> {
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
                for &(nr, arg0) in calls {
                    let r = libc::syscall(nr, arg0, 0, 0, 0, 0);
                    let v: i64 = if r < 0 {
                        *libc::__errno_location() as i64
                    } else {
                        0
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
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status:#x}"
        );
        out
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

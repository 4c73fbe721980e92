//! OCI `linux.seccomp` → classic BPF with `seccompiler`, compiled in the runtime before the
//! container is built and installed by the executor as the very last step before execve.
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
         container process does not have: set process.noNewPrivileges to true"
    )]
    NeedsNoNewPrivs,
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
    let mut programs = Vec::new();
    if default != SeccompAction::Allow {
        programs.push(build(named, default, SeccompAction::Allow)?);
    }
    for (act, map, _) in groups {
        if map.is_empty() {
            continue;
        }
        programs.push(build(map, SeccompAction::Allow, act)?);
    }
    Ok(CompiledSeccomp {
        programs,
        flags,
        unknown_names,
    })
}

/// Installs the filters in the calling thread. Called in the container process right before
/// execve, after capabilities were dropped: without no_new_privs this needs CAP_SYS_ADMIN.
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
    fn errno_default_with_allow_list_is_one_filter() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","write","no_such"],"action":"SCMP_ACT_ALLOW"}]}"#,
        );
        let c = compile(&p).unwrap();
        assert_eq!(c.programs.len(), 1);
        assert_eq!(c.unknown_names, vec!["no_such".to_string()]);
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

    #[test]
    fn bad_arg_index_names_the_syscall() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mount"],"action":"SCMP_ACT_ERRNO","args":[{"index":7,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        let e = compile(&p).unwrap_err().to_string();
        assert!(e.contains("mount") && e.contains('7'), "{e}");
    }
}

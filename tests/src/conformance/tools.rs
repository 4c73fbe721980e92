//! The conformance part: configs real tools generate, run through each runtime, for both
//! `noNewPrivileges` values.
//!
//! - `runc spec` plus a Docker-style default seccomp profile (pea-shim's RuntimeDefault, which
//!   lists x86_64, x86 and x32), the process args and `noNewPrivileges` set;
//! - podman 4.3's own default (`podman --runtime <runtime> run --rootfs`), with `--ulimit`
//!   overrides because this host lacks CAP_SYS_RESOURCE, and `--security-opt no-new-privileges`
//!   for the true variant; the runtime is reached through a wrapper that keeps a copy of the
//!   config.json podman wrote, so the checks compare against what podman asked for;
//! - the spec containerd's CRI makes for a RuntimeDefault pod container without
//!   `allowPrivilegeEscalation: false` (noNewPrivileges false; the CRI's default capabilities;
//!   the default profile): generated with pea-shim's own CRI translation
//!   (`pea_shim::oci::container_spec`, modelled on containerd 1.7's), the closest equivalent
//!   that runs here — the pod's namespace paths (there is no pause container) are replaced by
//!   fresh namespaces and the cgroup parent by a test one. The true variant sets the CRI's
//!   `no_new_privs`.
//!
//! Each case runs two containers: one as the config's user that reads CapEff/CapPrm/CapBnd/
//! CapAmb, NoNewPrivs and Seccomp from /proc/self/status and makes two syscalls the profile
//! denies (`unshare(CLONE_NEWUSER)`, which succeeds without a filter, and `keyctl`), natively
//! and through the i386 ABI (`int 0x80`, when the profile lists SCMP_ARCH_X86), expecting the
//! profile's errno; and one as uid 1000 that runs a setuid-root copy of the probe (Debian's busybox drops a
//! setuid root for `id`):
//! euid 0 when `noNewPrivileges` is false, 1000 when it is true.
//!
//! The host-forbidden cases (`runc spec` plus one setting this host cannot apply) record each
//! runtime's error.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_cri::v1 as cri;
use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxHugepageLimitBuilder, LinuxNetworkBuilder, LinuxSeccomp,
    LinuxSeccompAction, LinuxSeccompOperator, Spec, UserBuilder,
};

use super::{CheckResult, Outcome, Report};
use crate::fixtures::busybox::write_busybox_rootfs;
use crate::runtime_cli::{run_with_timeout, unique_id, Runtime};

/// The script of the first container: `key=value` lines. The i386 calls run in a second probe
/// process: after an allowed `unshare(CLONE_NEWUSER)` the probe sits in a user namespace without
/// id mappings, where a second one fails with EPERM whatever the filter says.
const STATUS_SCRIPT: &str = "grep -E '^(Cap(Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status | tr -d ' \\t' | tr ':' '='; /probe unshare keyctl; /probe unshare-i386 keyctl-i386";
/// The second container, as uid 1000: the setuid-root probe prints its effective uid.
const SETUID_SCRIPT: &str = "/usr/local/bin/suid-probe euid";

/// Which tool made the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    RuncSpec,
    Podman,
    ContainerdCri,
}

/// Every case, in report order: (name, tool, noNewPrivileges).
pub const CASES: &[(&str, Tool, bool)] = &[
    (
        "runc spec + docker-style profile, noNewPrivileges false",
        Tool::RuncSpec,
        false,
    ),
    (
        "runc spec + docker-style profile, noNewPrivileges true",
        Tool::RuncSpec,
        true,
    ),
    (
        "podman run (defaults), noNewPrivileges false",
        Tool::Podman,
        false,
    ),
    (
        "podman run --security-opt no-new-privileges",
        Tool::Podman,
        true,
    ),
    (
        "CRI RuntimeDefault pod container, allowPrivilegeEscalation unset",
        Tool::ContainerdCri,
        false,
    ),
    (
        "CRI RuntimeDefault pod container, no_new_privs",
        Tool::ContainerdCri,
        true,
    ),
];

/// Settings this host cannot apply (`runc spec` plus one of them).
pub const HOST_FORBIDS: &[&str] = &[
    "host forbids: CAP_SYS_RESOURCE (not in the bounding set)",
    "host forbids: net_cls classID (no net_cls hierarchy)",
    "host forbids: blkio weight (no blkio.weight)",
    "host forbids: hugetlb limit (hugetlb only on cgroup2)",
];

/// Is `o` a host-forbidden outcome (the runtime refused)? Rendered as such in the table.
pub fn host_forbidden(name: &str) -> bool {
    name.starts_with("host forbids:")
}

struct ToolCtx<'a> {
    rt: &'a Runtime,
    work: &'a Path,
    probe: &'a Path,
}

/// Runs every case (and the host-forbidden ones) against one runtime.
pub fn run_tool_cases(name: &str, runtime_bin: &Path, global_args: &[String]) -> Report {
    let mut rt = Runtime::new(runtime_bin);
    rt.global_args = global_args.to_vec();
    rt.timeout = Duration::from_secs(60);
    let work = tempfile::Builder::new()
        .prefix("pea-conformance-")
        .tempdir()
        .expect("work dir");
    let probe = super::probe::build_probe(work.path());
    let mut results = Vec::new();
    for &(case, tool, nnp) in CASES {
        let outcome = match &probe {
            Err(e) => Outcome::Fail(format!("probe binary unavailable: {e}")),
            Ok(p) => {
                let ctx = ToolCtx {
                    rt: &rt,
                    work: work.path(),
                    probe: p,
                };
                run_case(&ctx, tool, nnp)
            }
        };
        results.push(CheckResult {
            name: case,
            outcome,
        });
    }
    for (i, &case) in HOST_FORBIDS.iter().enumerate() {
        let outcome = match &probe {
            Err(e) => Outcome::Fail(format!("probe binary unavailable: {e}")),
            Ok(p) => {
                let ctx = ToolCtx {
                    rt: &rt,
                    work: work.path(),
                    probe: p,
                };
                forbidden_case(&ctx, i)
            }
        };
        results.push(CheckResult {
            name: case,
            outcome,
        });
    }
    Report {
        runtime: name.to_string(),
        results,
    }
}

/// A busybox rootfs with the probe at /probe and a setuid-root copy of it at
/// /usr/local/bin/suid-probe. (Not a setuid busybox: Debian's busybox is built with
/// FEATURE_SUID and drops a setuid root for every applet that does not need it, `id` included.)
fn rootfs(dir: &Path, probe: &Path) -> Result<PathBuf, String> {
    let root = dir.join("rootfs");
    write_busybox_rootfs(&root, "conformance").map_err(|e| e.to_string())?;
    std::fs::copy(probe, root.join("probe")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(root.join("usr/local/bin")).map_err(|e| e.to_string())?;
    let id = root.join("usr/local/bin/suid-probe");
    std::fs::copy(probe, &id).map_err(|e| e.to_string())?;
    std::os::unix::fs::chown(&id, Some(0), Some(0)).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o4755))
        .map_err(|e| e.to_string())?;
    Ok(root)
}

fn run_case(ctx: &ToolCtx, tool: Tool, nnp: bool) -> Outcome {
    let dir = ctx.work.join(unique_id("case"));
    let root = match rootfs(&dir, ctx.probe) {
        Ok(r) => r,
        Err(e) => return Outcome::Fail(format!("rootfs: {e}")),
    };
    let outs = match tool {
        Tool::RuncSpec | Tool::ContainerdCri => {
            let mut outs = Vec::new();
            for (script, uid) in [(STATUS_SCRIPT, None), (SETUID_SCRIPT, Some(1000))] {
                let spec = match tool {
                    Tool::RuncSpec => runc_spec(&dir, &root, script, nnp, uid),
                    _ => cri_spec(&root, script, nnp, uid),
                };
                let spec = match spec {
                    Ok(s) => s,
                    Err(e) => return Outcome::Fail(format!("config: {e}")),
                };
                match run_bundle(ctx, &dir, &spec) {
                    Ok(out) => outs.push((spec, out)),
                    Err(o) => return o,
                }
            }
            outs
        }
        Tool::Podman => match podman_pair(ctx, &dir, &root, nnp) {
            Ok(o) => o,
            Err(o) => return o,
        },
    };
    let _ = std::fs::remove_dir_all(&dir);
    check(&outs, nnp)
}

/// Checks the two containers' output against the config each ran.
fn check(outs: &[(Spec, String)], nnp: bool) -> Outcome {
    let [(spec, status), (_, setuid)] = outs else {
        return Outcome::Fail(format!("{} containers ran, want 2", outs.len()));
    };
    let m = super::kv(status);
    let caps = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().clone())
        .unwrap_or_default();
    let mask = super::checks::cap_mask;
    let is_root = spec
        .process()
        .as_ref()
        .map(|p| p.user().uid() == 0)
        .unwrap_or(true);
    let amb = mask(caps.ambient()) & mask(caps.inheritable()) & mask(caps.permitted());
    // A non-root process keeps only its ambient set across execve.
    let (eff, prm) = if is_root {
        (mask(caps.effective()), mask(caps.permitted()))
    } else {
        (amb, amb)
    };
    for (key, want) in [
        ("CapBnd", mask(caps.bounding())),
        ("CapEff", eff),
        ("CapPrm", prm),
        ("CapAmb", amb),
    ] {
        let got = m.get(key).and_then(|v| u64::from_str_radix(v, 16).ok());
        if got != Some(want) {
            return Outcome::Fail(format!("{key} {:?}, want {want:016x}", m.get(key)));
        }
    }
    let want_nnp = if nnp { "1" } else { "0" };
    if m.get("NoNewPrivs").map(String::as_str) != Some(want_nnp) {
        return Outcome::Fail(format!(
            "NoNewPrivs {:?}, want {want_nnp}",
            m.get("NoNewPrivs")
        ));
    }
    if m.get("Seccomp").map(String::as_str) != Some("2") {
        return Outcome::Fail(format!("Seccomp {:?}, want 2", m.get("Seccomp")));
    }
    let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Outcome::Fail("the config has no seccomp profile".into());
    };
    // The same calls through the i386 ABI (`int 0x80`) when the profile lists SCMP_ARCH_X86.
    let lists_x86 = profile
        .architectures()
        .iter()
        .flatten()
        .any(|a| *a == oci_spec::runtime::Arch::ScmpArchX86);
    let newuser = nix::sched::CloneFlags::CLONE_NEWUSER.bits() as u64;
    for (call, key, args) in [
        ("unshare", "unshare", [newuser, 0, 0, 0, 0, 0]),
        ("keyctl", "keyctl", [0, (-3i64) as u64, 0, 0, 0, 0]),
        ("keyctl", "keyctl-i386", [0, (-3i64) as u64, 0, 0, 0, 0]),
        ("unshare", "unshare-i386", [newuser, 0, 0, 0, 0, 0]),
    ] {
        if key.ends_with("-i386") && !lists_x86 {
            continue;
        }
        let want = expected_errno(profile, call, &args).to_string();
        if m.get(key) != Some(&want) {
            return Outcome::Fail(format!(
                "{key}: errno {:?}, the profile says {want}",
                m.get(key)
            ));
        }
    }
    let euid = super::kv(setuid).get("euid").cloned();
    let want_euid = if nnp { "1000" } else { "0" };
    if euid.as_deref() != Some(want_euid) {
        return Outcome::Fail(format!(
            "setuid-root binary as uid 1000: euid {euid:?}, want {want_euid}"
        ));
    }
    Outcome::Pass
}

/// The errno the profile gives `name(args)` (0 when allowed): the most restrictive matching
/// rule, else the default, as the kernel applies the stacked filters.
pub fn expected_errno(profile: &LinuxSeccomp, name: &str, args: &[u64; 6]) -> i64 {
    let rank = |a: LinuxSeccompAction| match a {
        LinuxSeccompAction::ScmpActAllow => 0,
        LinuxSeccompAction::ScmpActLog => 1,
        LinuxSeccompAction::ScmpActTrace => 2,
        LinuxSeccompAction::ScmpActNotify => 3,
        LinuxSeccompAction::ScmpActErrno => 4,
        LinuxSeccompAction::ScmpActTrap => 5,
        _ => 6,
    };
    let matched = profile
        .syscalls()
        .iter()
        .flatten()
        .filter(|sc| sc.names().iter().any(|n| n == name))
        .filter(|sc| {
            sc.args().iter().flatten().all(|a| {
                let v = args[a.index().min(5)];
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
        })
        .max_by_key(|sc| rank(sc.action()));
    let (action, errno) = match matched {
        Some(sc) => (sc.action(), sc.errno_ret()),
        None => (profile.default_action(), profile.default_errno_ret()),
    };
    match action {
        LinuxSeccompAction::ScmpActAllow | LinuxSeccompAction::ScmpActLog => 0,
        _ => i64::from(errno.unwrap_or(nix::errno::Errno::EPERM as u32)),
    }
}

/// `runc spec`'s config with the rootfs, args, a Docker-style profile and noNewPrivileges set.
fn runc_spec(
    dir: &Path,
    root: &Path,
    script: &str,
    nnp: bool,
    uid: Option<u32>,
) -> Result<Spec, String> {
    let gen = dir.join("runc-spec");
    std::fs::create_dir_all(&gen).map_err(|e| e.to_string())?;
    let runc = crate::privileged::which("runc").ok_or("runc is not installed")?;
    let o = Command::new(runc)
        .arg("spec")
        .current_dir(&gen)
        .output()
        .map_err(|e| format!("runc spec: {e}"))?;
    if !o.status.success() {
        return Err(format!("runc spec: {}", String::from_utf8_lossy(&o.stderr)));
    }
    let mut spec = Spec::load(gen.join("config.json")).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&gen);
    let mut r = spec.root().clone().unwrap_or_default();
    r.set_path(root.to_path_buf());
    r.set_readonly(Some(false));
    spec.set_root(Some(r));
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_terminal(Some(false));
    p.set_args(Some(vec!["sh".into(), "-c".into(), script.into()]));
    p.set_no_new_privileges(Some(nnp));
    if let Some(uid) = uid {
        p.set_user(UserBuilder::default().uid(uid).gid(uid).build().unwrap());
    }
    spec.set_process(Some(p));
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_seccomp(Some(pea_shim::oci::runtime_default_profile()));
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// The spec pea-shim's CRI translation makes for a RuntimeDefault container (see the module doc).
fn cri_spec(root: &Path, script: &str, nnp: bool, uid: Option<u32>) -> Result<Spec, String> {
    let sandbox = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "conformance".into(),
            uid: "conformance-uid".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "conformance".into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Pod as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), script.into()],
        linux: Some(cri::LinuxContainerConfig {
            resources: None,
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: sandbox
                    .linux
                    .as_ref()
                    .and_then(|l| l.security_context.as_ref())
                    .and_then(|s| s.namespace_options.clone()),
                seccomp: Some(cri::SecurityProfile {
                    profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                    localhost_ref: String::new(),
                }),
                no_new_privs: nnp,
                run_as_user: uid.map(|u| cri::Int64Value { value: u.into() }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let image: oci_spec::image::ImageConfiguration = serde_json::from_value(serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"]
        }
    }))
    .map_err(|e| e.to_string())?;
    let files = pea_shim::oci::PodFiles::default();
    let id = unique_id("cri");
    let mut spec = pea_shim::oci::container_spec(&pea_shim::oci::ContainerSpecInput {
        id: &id,
        sandbox_id: "conformance-sandbox",
        config: &config,
        sandbox: &sandbox,
        image: &image,
        rootfs: root,
        sandbox_pid: std::process::id() as i32,
        target_pid: None,
        cgroups_path: format!("/pea-conformance/{id}"),
        files: &files,
        seccomp_profile_root: Path::new("/nonexistent"),
    })
    .map_err(|e| e.to_string())?;
    // No pause container: fresh namespaces instead of the pod's.
    let mut linux = spec.linux().clone().unwrap_or_default();
    if let Some(ns) = linux.namespaces().clone() {
        let ns = ns
            .into_iter()
            .map(|mut n| {
                n.set_path(None);
                n
            })
            .collect();
        linux.set_namespaces(Some(ns));
    }
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// Saves `spec` as the bundle's config.json and runs it in the foreground.
fn run_bundle(ctx: &ToolCtx, dir: &Path, spec: &Spec) -> Result<String, Outcome> {
    spec.save(dir.join("config.json"))
        .map_err(|e| Outcome::Fail(e.to_string()))?;
    let id = unique_id("conf");
    let out = run_with_timeout(
        ctx.rt
            .command(["run", "--bundle", dir.to_str().unwrap_or_default(), &id]),
        None,
        Duration::from_secs(60),
    );
    let mut del = ctx.rt.command(["delete", "--force", &id]);
    del.stdout(Stdio::null()).stderr(Stdio::null());
    let _ = del.status();
    remove_cgroup_tree("pea-conformance");
    if out.code == Some(0) {
        Ok(out.stdout)
    } else {
        Err(Outcome::RuntimeError(format!(
            "exit {:?}: {}",
            out.code,
            out.stderr.trim()
        )))
    }
}

/// Removes the (empty) cgroup tree `name` at the top of each v1 hierarchy.
fn remove_cgroup_tree(name: &str) {
    for e in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let top = e.path().join(name);
        if !top.is_dir() {
            continue;
        }
        let mut dirs = vec![top];
        let mut i = 0;
        while i < dirs.len() {
            for c in std::fs::read_dir(&dirs[i]).into_iter().flatten().flatten() {
                if c.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    dirs.push(c.path());
                }
            }
            i += 1;
        }
        for d in dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The two containers through `podman --runtime` (a wrapper that keeps podman's config.json).
fn podman_pair(
    ctx: &ToolCtx,
    dir: &Path,
    root: &Path,
    nnp: bool,
) -> Result<Vec<(Spec, String)>, Outcome> {
    let Some(podman) = crate::privileged::which("podman") else {
        return Err(Outcome::Fail("podman is not installed".into()));
    };
    // podman refuses a runroot longer than 50 characters: a short store dir of its own.
    let store_dir = match tempfile::Builder::new()
        .prefix("pcf")
        .tempdir_in("/var/tmp")
    {
        Ok(d) => d,
        Err(e) => return Err(Outcome::Fail(format!("podman store: {e}"))),
    };
    let store = store_dir.path().to_path_buf();
    let capture = dir.join("captured.json");
    // Named like the runtime: podman picks some behaviour by the runtime's name.
    let base = ctx
        .rt
        .bin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "runtime".into());
    let wrap_dir = dir.join("wrap");
    std::fs::create_dir_all(&wrap_dir).map_err(|e| Outcome::Fail(e.to_string()))?;
    let wrapper = wrap_dir.join(&base);
    let script = format!(
        "#!/bin/sh\n# keeps the config podman hands to the runtime\nprev=\nfor a in \"$@\"; do\n  \
         if [ \"$prev\" = --bundle ] || [ \"$prev\" = -b ]; then cp \"$a/config.json\" '{}'; fi\n  \
         prev=$a\ndone\nexec '{}' {} \"$@\"\n",
        capture.display(),
        ctx.rt.bin.display(),
        ctx.rt.global_args.join(" ")
    );
    std::fs::write(&wrapper, script).map_err(|e| Outcome::Fail(e.to_string()))?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Outcome::Fail(e.to_string()))?;
    let parent = format!("pea-conformance-podman-{}", std::process::id());
    let cgroup_parent = format!("/{parent}");
    let rootfs = root.display().to_string();
    let mut outs = Vec::new();
    for (script, user) in [(STATUS_SCRIPT, None), (SETUID_SCRIPT, Some("1000:1000"))] {
        let _ = std::fs::remove_file(&capture);
        let mut cmd = Command::new(&podman);
        cmd.arg("--root")
            .arg(store.join("root"))
            .arg("--runroot")
            .arg(store.join("runroot"))
            .arg("--tmpdir")
            .arg(store.join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--runtime",
            ])
            .arg(&wrapper)
            .args(["run", "--rm", "--network", "none", "--cgroup-parent"])
            .arg(&cgroup_parent)
            // This host lacks CAP_SYS_RESOURCE: podman's default 1048576 hard limits fail.
            .args(["--ulimit", "nofile=1024:4096", "--ulimit", "nproc=1024:4096"])
            .stdin(Stdio::null());
        if nnp {
            cmd.args(["--security-opt", "no-new-privileges"]);
        }
        if let Some(u) = user {
            cmd.args(["--user", u]);
        }
        cmd.args(["--rootfs", &rootfs, "/bin/sh", "-c", script]);
        let out = run_with_timeout(cmd, None, Duration::from_secs(120));
        // conmon and the `podman container cleanup` it starts outlive `podman run` a little,
        // in the cgroup parent: wait for them before the store goes.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            remove_cgroup_tree(&parent);
            let left = std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.path().join(&parent).exists());
            if !left || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if out.code != Some(0) {
            remove_podman_store(&store);
            return Err(Outcome::RuntimeError(format!(
                "podman exit {:?}: {}",
                out.code,
                last_lines(&out.stderr, 2)
            )));
        }
        let spec = Spec::load(&capture)
            .map_err(|e| Outcome::Fail(format!("podman's config.json was not captured: {e}")))?;
        outs.push((spec, out.stdout));
    }
    remove_podman_store(&store);
    Ok(outs)
}

/// Unmounts what podman left mounted under its store (vfs: nothing, but its runroot may hold
/// shm mounts), then the store goes with its temp dir.
fn remove_podman_store(store: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut under: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(store.to_str().unwrap_or("\0")))
        .collect();
    under.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in under {
        let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.trim().lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" ")
}

/// `runc spec` plus one setting the host cannot apply: the runtime's error is the result.
fn forbidden_case(ctx: &ToolCtx, which: usize) -> Outcome {
    let dir = ctx.work.join(unique_id("forbidden"));
    let root = match rootfs(&dir, ctx.probe) {
        Ok(r) => r,
        Err(e) => return Outcome::Fail(format!("rootfs: {e}")),
    };
    let mut spec = match runc_spec(&dir, &root, "true", false, None) {
        Ok(s) => s,
        Err(e) => return Outcome::Fail(format!("config: {e}")),
    };
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut res = linux.resources().clone().unwrap_or_default();
    match which {
        0 => {
            let mut p = spec.process().clone().unwrap_or_default();
            let mut caps = p.capabilities().clone().unwrap_or_default();
            let add = |s: &Option<std::collections::HashSet<oci_spec::runtime::Capability>>| {
                let mut s = s.clone().unwrap_or_default();
                s.insert(oci_spec::runtime::Capability::SysResource);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
            p.set_capabilities(Some(caps));
            spec.set_process(Some(p));
        }
        1 => {
            res.set_network(Some(
                LinuxNetworkBuilder::default()
                    .class_id(0x0010_0001u32)
                    .build()
                    .unwrap(),
            ));
        }
        2 => {
            res.set_block_io(Some(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .build()
                    .unwrap(),
            ));
        }
        _ => {
            res.set_hugepage_limits(Some(vec![LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(4 * 1024 * 1024i64)
                .build()
                .unwrap()]));
        }
    }
    linux.set_resources(Some(res));
    linux.set_cgroups_path(Some(PathBuf::from(format!(
        "/pea-conformance/{}",
        unique_id("f")
    ))));
    spec.set_linux(Some(linux));
    let out = run_bundle(ctx, &dir, &spec);
    let _ = std::fs::remove_dir_all(&dir);
    match out {
        Ok(_) => Outcome::Fail("started: the setting was not applied, or silently ignored".into()),
        Err(Outcome::RuntimeError(e)) => Outcome::RuntimeError(e),
        Err(o) => o,
    }
}

/// One Markdown table, a column per runtime; host-forbidden rows give each runtime's error.
pub fn side_by_side(reports: &[Report]) -> String {
    let mut out = String::from("| case |");
    for r in reports {
        out.push_str(&format!(" {} |", r.runtime));
    }
    out.push_str("\n|---|");
    for _ in reports {
        out.push_str("---|");
    }
    out.push('\n');
    let Some(first) = reports.first() else {
        return out;
    };
    let by_name: Vec<HashMap<&str, &Outcome>> = reports
        .iter()
        .map(|r| r.results.iter().map(|c| (c.name, &c.outcome)).collect())
        .collect();
    for row in &first.results {
        out.push_str(&format!("| {} |", row.name));
        for m in &by_name {
            let cell = match m.get(row.name) {
                None => "–".to_string(),
                Some(Outcome::Pass) => "pass".into(),
                Some(Outcome::Fail(d)) => format!("FAIL: {}", short(d)),
                Some(Outcome::RuntimeError(d)) if host_forbidden(row.name) => {
                    format!("refused: {}", short(d))
                }
                Some(Outcome::RuntimeError(d)) => format!("ERROR: {}", short(d)),
            };
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    out
}

fn short(d: &str) -> String {
    let d = d.replace('|', "\\|").replace('\n', " ");
    let d = d.trim();
    if d.chars().count() > 140 {
        // The end of a runtime's error says what failed.
        let tail: String = d
            .chars()
            .rev()
            .take(140)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    } else {
        d.to_string()
    }
}

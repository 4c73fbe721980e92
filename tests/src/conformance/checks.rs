//! The checks. Each builds a bundle, runs it through the runtime under test, and compares what
//! the container reports (and what the host sees) with what the spec asked for.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::{
    Capability, LinuxCpu, LinuxIdMappingBuilder, LinuxMemory, LinuxNamespaceType, LinuxPids,
    LinuxResources, MountBuilder, PosixRlimitBuilder, PosixRlimitType, Spec,
};

use super::{kv, Ctx, Outcome};
use crate::fixtures::bundle::set_namespace;
use crate::fixtures::Bundle;

pub const ALL: &[(&str, super::CheckFn)] = &[
    ("pid namespace", pid_ns),
    ("mount namespace", mount_ns),
    ("uts namespace + hostname/domainname", uts_ns),
    ("ipc namespace", ipc_ns),
    ("network namespace", net_ns),
    ("user namespace", user_ns),
    ("cgroup namespace", cgroup_ns),
    ("time namespace", time_ns),
    ("join net/ipc/uts by path (pod)", join_pod),
    ("capabilities", capabilities),
    ("no_new_privs", no_new_privs),
    ("seccomp default profile", seccomp_default),
    ("masked paths", masked_paths),
    ("readonly paths", readonly_paths),
    ("readonly rootfs", readonly_rootfs),
    ("devices", devices),
    ("memory limit -> OOM kill", memory_oom),
    ("pids limit contains fork bomb", pids_limit),
    ("cpu quota throttles", cpu_quota),
    ("rlimits", rlimits),
    ("uid/gid/additional gids", ids),
    ("sysctls", sysctls),
    ("mount propagation (rslave)", propagation),
    ("no host leaks via /proc, /sys", host_leaks),
];

fn fail(msg: impl Into<String>) -> Outcome {
    Outcome::Fail(msg.into())
}

macro_rules! tryo {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Outcome::from_err(e),
        }
    };
}

trait IntoOutcome {
    fn into_outcome(self) -> Outcome;
}
impl IntoOutcome for Outcome {
    fn into_outcome(self) -> Outcome {
        self
    }
}
impl IntoOutcome for String {
    fn into_outcome(self) -> Outcome {
        Outcome::Fail(self)
    }
}
impl Outcome {
    fn from_err(e: impl IntoOutcome) -> Outcome {
        e.into_outcome()
    }
}

fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn save(b: &Bundle) -> Result<(), String> {
    b.save().map_err(|e| e.to_string())
}

fn edit(b: &mut Bundle, f: impl FnOnce(&mut Spec)) -> Result<(), String> {
    f(&mut b.spec);
    save(b)
}

fn set_resources(spec: &mut Spec, f: impl FnOnce(&mut LinuxResources)) {
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut r = linux.resources().clone().unwrap_or_default();
    f(&mut r);
    linux.set_resources(Some(r));
    spec.set_linux(Some(linux));
}

fn add_caps(spec: &mut Spec, extra: &[Capability]) {
    let mut p = spec.process().clone().unwrap_or_default();
    let mut c = p.capabilities().clone().unwrap_or_default();
    let add = |s: Option<HashSet<Capability>>| {
        let mut s = s.unwrap_or_default();
        s.extend(extra.iter().copied());
        Some(s)
    };
    c.set_bounding(add(c.bounding().clone()));
    c.set_effective(add(c.effective().clone()));
    c.set_permitted(add(c.permitted().clone()));
    p.set_capabilities(Some(c));
    spec.set_process(Some(p));
}

const NS_SCRIPT: &str =
    "for n in pid mnt uts ipc net user cgroup time; do echo $n=$(readlink /proc/self/ns/$n); done";

fn ns_differs(ctx: &Ctx, name: &str, kind: &str, extra: &str) -> Outcome {
    let b = tryo!(ctx.bundle(name, &format!("{NS_SCRIPT}; {extra}")));
    let out = tryo!(ctx.run(&b));
    let m = kv(&out);
    let inside = m.get(kind).cloned().unwrap_or_default();
    if inside.is_empty() {
        return fail(format!("no {kind} ns link inside"));
    }
    if inside == host_ns(kind) {
        return fail(format!("{kind} namespace is the host's ({inside})"));
    }
    Outcome::Pass
}

fn pid_ns(ctx: &Ctx) -> Outcome {
    let b = tryo!(ctx.bundle(
        "pid",
        &format!("{NS_SCRIPT}; echo self=$$; echo procs=$(ls /proc | grep -c '^[0-9]')")
    ));
    let m = kv(&tryo!(ctx.run(&b)));
    if m.get("pid") == Some(&host_ns("pid")) {
        return fail("pid namespace is the host's");
    }
    if m.get("self").map(String::as_str) != Some("1") {
        return fail(format!("init is pid {:?}, want 1", m.get("self")));
    }
    let procs: usize = m.get("procs").and_then(|v| v.parse().ok()).unwrap_or(999);
    if procs > 4 {
        return fail(format!("{procs} pids visible in /proc"));
    }
    Outcome::Pass
}

fn mount_ns(ctx: &Ctx) -> Outcome {
    let o = ns_differs(ctx, "mnt", "mnt", "true");
    if !o.passed() {
        return o;
    }
    // The host must not see the container's mounts.
    let b = tryo!(ctx.bundle("mnt2", "grep -c . /proc/self/mountinfo"));
    tryo!(ctx.run(&b));
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if host.contains(&b.rootfs.display().to_string()) {
        return fail("container rootfs mounts visible on the host after the run");
    }
    Outcome::Pass
}

fn uts_ns(ctx: &Ctx) -> Outcome {
    let mut b = tryo!(ctx.bundle(
        "uts",
        &format!(
            "{NS_SCRIPT}; echo host=$(hostname); echo domain=$(cat /proc/sys/kernel/domainname)"
        )
    ));
    tryo!(edit(&mut b, |s| {
        s.set_domainname(Some("pea.test".into()));
    }));
    let m = kv(&tryo!(ctx.run(&b)));
    if m.get("uts") == Some(&host_ns("uts")) {
        return fail("uts namespace is the host's");
    }
    if m.get("host").map(String::as_str) != Some("pea-iso") {
        return fail(format!("hostname {:?}, want pea-iso", m.get("host")));
    }
    if m.get("domain").map(String::as_str) != Some("pea.test") {
        return fail(format!("domainname {:?}, want pea.test", m.get("domain")));
    }
    Outcome::Pass
}

fn ipc_ns(ctx: &Ctx) -> Outcome {
    ns_differs(ctx, "ipc", "ipc", "true")
}

fn net_ns(ctx: &Ctx) -> Outcome {
    let b = tryo!(ctx.bundle(
        "net",
        &format!("{NS_SCRIPT}; echo links=$(ls /sys/class/net | tr '\\n' ' ')")
    ));
    let m = kv(&tryo!(ctx.run(&b)));
    if m.get("net") == Some(&host_ns("net")) {
        return fail("network namespace is the host's");
    }
    if m.get("links").map(|s| s.trim()) != Some("lo") {
        return fail(format!("links {:?}, want only lo", m.get("links")));
    }
    Outcome::Pass
}

fn user_ns(ctx: &Ctx) -> Outcome {
    let mut b = tryo!(ctx.bundle(
        "user",
        &format!("{NS_SCRIPT}; echo map=$(cat /proc/self/uid_map | tr -s ' '); echo gmap=$(cat /proc/self/gid_map | tr -s ' '); echo uid=$(id -u)")
    ));
    tryo!(edit(&mut b, |s| {
        set_namespace(s, LinuxNamespaceType::User, None);
        let map = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(100000u32)
            .size(65536u32)
            .build()
            .expect("mapping");
        let mut linux = s.linux().clone().unwrap_or_default();
        linux.set_uid_mappings(Some(vec![map]));
        linux.set_gid_mappings(Some(vec![map]));
        s.set_linux(Some(linux));
        // cgroup v1 cannot be mounted from inside a user namespace
        let mounts = s
            .mounts()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.typ().as_deref() != Some("cgroup"))
            .collect();
        s.set_mounts(Some(mounts));
    }));
    let m = kv(&tryo!(ctx.run(&b)));
    if m.get("user") == Some(&host_ns("user")) {
        return fail("user namespace is the host's");
    }
    if m.get("map").map(|s| s.trim()) != Some("0 100000 65536") {
        return fail(format!("uid_map {:?}", m.get("map")));
    }
    if m.get("gmap").map(|s| s.trim()) != Some("0 100000 65536") {
        return fail(format!("gid_map {:?}", m.get("gmap")));
    }
    if m.get("uid").map(String::as_str) != Some("0") {
        return fail(format!("uid inside {:?}, want 0", m.get("uid")));
    }
    Outcome::Pass
}

fn cgroup_ns(ctx: &Ctx) -> Outcome {
    let mut b = tryo!(ctx.bundle(
        "cgroupns",
        &format!(
            "{NS_SCRIPT}; echo nonroot=$(grep -v ':/$' /proc/self/cgroup | grep -v '^0::' | wc -l)"
        )
    ));
    tryo!(edit(&mut b, |s| set_namespace(
        s,
        LinuxNamespaceType::Cgroup,
        None
    )));
    let m = kv(&tryo!(ctx.run(&b)));
    if m.get("cgroup") == Some(&host_ns("cgroup")) {
        return fail("cgroup namespace is the host's");
    }
    if m.get("nonroot").map(String::as_str) != Some("0") {
        return fail(format!(
            "{:?} /proc/self/cgroup lines are not at the namespace root",
            m.get("nonroot")
        ));
    }
    Outcome::Pass
}

fn time_ns(ctx: &Ctx) -> Outcome {
    let mut b = tryo!(ctx.bundle(
        "time",
        &format!("{NS_SCRIPT}; echo up=$(cut -d. -f1 /proc/uptime)")
    ));
    let mut v: serde_json::Value = tryo!(serde_json::to_value(&b.spec).map_err(|e| e.to_string()));
    v["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(serde_json::json!({"type": "time"}));
    v["linux"]["timeOffsets"] = serde_json::json!({
        "boottime": {"secs": 864000, "nanosecs": 0},
        "monotonic": {"secs": 864000, "nanosecs": 0}
    });
    tryo!(std::fs::write(b.config_path(), v.to_string()).map_err(|e| e.to_string()));
    b.spec = tryo!(serde_json::from_value(v).map_err(|e| e.to_string()));
    let m = kv(&tryo!(ctx.run(&b)));
    if m.get("time") == Some(&host_ns("time")) {
        return fail("time namespace is the host's");
    }
    let up: u64 = m.get("up").and_then(|v| v.parse().ok()).unwrap_or(0);
    if up < 864000 {
        return fail(format!(
            "uptime {up}s: boottime offset of 864000s not applied"
        ));
    }
    Outcome::Pass
}

fn join_pod(ctx: &Ctx) -> Outcome {
    let sandbox = tryo!(ctx.bundle("pod-sandbox", "sleep 120"));
    let id = crate::runtime_cli::unique_id("pod");
    let o = ctx.rt.run([
        "run",
        "--detach",
        "--bundle",
        sandbox.dir.to_str().unwrap_or_default(),
        &id,
    ]);
    if !o.success() {
        return Outcome::RuntimeError(o.stderr);
    }
    let result = (|| -> Outcome {
        let st = ctx.rt.run(["state", &id]);
        let pid = serde_json::from_str::<serde_json::Value>(&st.stdout)
            .ok()
            .and_then(|v| v["pid"].as_i64())
            .unwrap_or(0);
        if pid <= 0 {
            return fail(format!("sandbox state has no pid: {}", st.stdout));
        }
        let sb = |k: &str| {
            std::fs::read_link(format!("/proc/{pid}/ns/{k}"))
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let mut b = tryo!(ctx.bundle("pod-member", &format!("{NS_SCRIPT}; echo host=$(hostname)")));
        tryo!(edit(&mut b, |s| {
            for (t, k) in [
                (LinuxNamespaceType::Network, "net"),
                (LinuxNamespaceType::Ipc, "ipc"),
                (LinuxNamespaceType::Uts, "uts"),
            ] {
                set_namespace(s, t, Some(format!("/proc/{pid}/ns/{k}")));
            }
            s.set_hostname(None);
        }));
        let m = kv(&tryo!(ctx.run(&b)));
        for k in ["net", "ipc", "uts"] {
            if m.get(k) != Some(&sb(k)) {
                return fail(format!(
                    "{k} ns {:?} is not the sandbox's {}",
                    m.get(k),
                    sb(k)
                ));
            }
        }
        for k in ["pid", "mnt"] {
            if m.get(k) == Some(&sb(k)) || m.get(k) == Some(&host_ns(k)) {
                return fail(format!("{k} ns is shared, want private"));
            }
        }
        if m.get("host").map(String::as_str) != Some("pea-iso") {
            return fail(format!("hostname {:?}, want the sandbox's", m.get("host")));
        }
        Outcome::Pass
    })();
    let _ = ctx.rt.run(["delete", "--force", &id]);
    result
}

pub(super) fn cap_mask(set: &Option<HashSet<Capability>>) -> u64 {
    set.iter()
        .flatten()
        .filter_map(|c| serde_json::to_value(c).ok())
        .filter_map(|v| v.as_str().map(str::to_string))
        .filter_map(|n| cap_number(&n))
        .fold(0, |m, i| m | (1u64 << i))
}

/// The kernel bit of `CAP_NAME` (pea-shim's table; names without the prefix do not count here).
fn cap_number(name: &str) -> Option<u32> {
    name.strip_prefix("CAP_")?;
    pea_shim::oci::capability_bit(name)
}

fn capabilities(ctx: &Ctx) -> Outcome {
    let mut b = tryo!(ctx.bundle(
        "caps",
        "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status | tr -d ':\\t' | sed 's/Cap\\(...\\)/\\1=/'"
    ));
    // A set with more than the default, so "everything" or "nothing" cannot pass by accident.
    tryo!(edit(&mut b, |s| add_caps(
        s,
        &[Capability::Chown, Capability::NetRaw]
    )));
    let m = kv(&tryo!(ctx.run(&b)));
    let caps = b
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().clone())
        .unwrap_or_default();
    for (key, want) in [
        ("Bnd", cap_mask(caps.bounding())),
        ("Eff", cap_mask(caps.effective())),
        ("Prm", cap_mask(caps.permitted())),
    ] {
        let got = m.get(key).and_then(|v| u64::from_str_radix(v, 16).ok());
        if got != Some(want) {
            return fail(format!("Cap{key} {:?}, want {want:016x}", m.get(key)));
        }
    }
    // Ambient caps are raised only when also permitted and inheritable (kernel rule).
    let amb_want =
        cap_mask(caps.ambient()) & cap_mask(caps.inheritable()) & cap_mask(caps.permitted());
    let amb = m.get("Amb").and_then(|v| u64::from_str_radix(v, 16).ok());
    if amb != Some(amb_want) {
        return fail(format!("CapAmb {:?}, want {amb_want:016x}", m.get("Amb")));
    }
    Outcome::Pass
}

fn no_new_privs(ctx: &Ctx) -> Outcome {
    for (want, name) in [(true, "nnp1"), (false, "nnp0")] {
        let mut b = tryo!(ctx.bundle(
            name,
            "grep NoNewPrivs /proc/self/status | tr -d ' \\t' | tr ':' '='"
        ));
        tryo!(edit(&mut b, |s| {
            let mut p = s.process().clone().unwrap_or_default();
            p.set_no_new_privileges(Some(want));
            s.set_process(Some(p));
        }));
        let m = kv(&tryo!(ctx.run(&b)));
        let got = m.get("NoNewPrivs").map(String::as_str);
        if got != Some(if want { "1" } else { "0" }) {
            return fail(format!("noNewPrivileges={want}: NoNewPrivs {got:?}"));
        }
    }
    Outcome::Pass
}

fn seccomp_default(ctx: &Ctx) -> Outcome {
    let mut b = tryo!(ctx.bundle(
        "seccomp",
        "/probe unshare keyctl ptrace mount getpid personality-query personality-addr-no-randomize; grep -E '^Seccomp:' /proc/self/status | tr -d ' \\t' | tr ':' '='"
    ));
    tryo!(edit(&mut b, |s| {
        // CAP_SYS_ADMIN, so unshare and mount would succeed without the filter.
        add_caps(s, &[Capability::SysAdmin]);
        let mut linux = s.linux().clone().unwrap_or_default();
        linux.set_seccomp(Some(pea_shim::oci::runtime_default_profile()));
        s.set_linux(Some(linux));
    }));
    let m = kv(&tryo!(ctx.run(&b)));
    for (k, want) in [
        ("unshare", "1"),
        ("keyctl", "38"),
        ("ptrace", "1"),
        ("mount", "1"),
        ("getpid", "0"),
        ("personality-query", "0"),
        ("personality-addr-no-randomize", "1"),
        ("Seccomp", "2"),
    ] {
        if m.get(k).map(String::as_str) != Some(want) {
            return fail(format!("{k}: got {:?}, want {want}", m.get(k)));
        }
    }
    Outcome::Pass
}

fn masked_paths(ctx: &Ctx) -> Outcome {
    // Only the spec's masked paths this kernel has (no kcore or sched_debug on some kernels).
    let b0 = tryo!(ctx.bundle("masked", "true"));
    let masked: Vec<String> = b0
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .collect();
    if masked.is_empty() {
        return fail("none of the spec's masked paths exist on this host");
    }
    let script: String = masked
        .iter()
        .map(|p| {
            format!(
                "if [ -d {p} ]; then echo {p}=$(ls -A {p} | wc -l); else echo {p}=$(wc -c < {p}); fi; "
            )
        })
        .collect();
    let b = tryo!(ctx.bundle("masked2", &script));
    let m = kv(&tryo!(ctx.run(&b)));
    for p in &masked {
        if m.get(p).map(String::as_str) != Some("0") {
            return fail(format!(
                "{p}: {:?} bytes/entries visible, want masked",
                m.get(p)
            ));
        }
    }
    Outcome::Pass
}

fn readonly_paths(ctx: &Ctx) -> Outcome {
    let candidates = [
        "/proc/sys/kernel/domainname",
        "/proc/sysrq-trigger",
        "/proc/irq/default_smp_affinity",
    ];
    let present: Vec<&str> = candidates
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .collect();
    let script: String = present
        .iter()
        .map(|p| format!("if (echo x > {p}) 2>/tmp/err; then echo {p}=writable; else echo {p}=$(grep -c 'Read-only' /tmp/err); fi; "))
        .collect();
    let b = tryo!(ctx.bundle("ropaths", &script));
    let m = kv(&tryo!(ctx.run(&b)));
    for p in present {
        if m.get(p).map(String::as_str) != Some("1") {
            return fail(format!("{p}: {:?}, want a read-only failure", m.get(p)));
        }
    }
    Outcome::Pass
}

fn readonly_rootfs(ctx: &Ctx) -> Outcome {
    let mut b = tryo!(ctx.bundle(
        "rorootfs",
        "if touch /newfile 2>/tmp/err; then echo root=writable; else echo root=ro; fi; if touch /dev/shm/x; then echo shm=ok; fi"
    ));
    tryo!(edit(&mut b, |s| {
        let mut r = s.root().clone().unwrap_or_default();
        r.set_readonly(Some(true));
        s.set_root(Some(r));
    }));
    let m = kv(&tryo!(ctx.run(&b)));
    if m.get("root").map(String::as_str) != Some("ro") {
        return fail(format!("rootfs {:?}", m.get("root")));
    }
    if b.rootfs.join("newfile").exists() {
        return fail("file created in the readonly rootfs");
    }
    if m.get("shm").map(String::as_str) != Some("ok") {
        return fail("/dev/shm not writable under a readonly rootfs");
    }
    Outcome::Pass
}

fn devices(ctx: &Ctx) -> Outcome {
    let mut b = tryo!(ctx.bundle(
        "devices",
        "echo dev=$(ls /dev | tr '\\n' ' '); if mknod /tmp/sda b 8 0 2>/dev/null; then echo blk=made; if head -c 1 /tmp/sda >/dev/null 2>&1; then echo blkread=ok; else echo blkread=denied; fi; else echo blk=denied; fi; if mknod /tmp/null2 c 1 3 2>/dev/null && echo hi > /tmp/null2; then echo null=ok; else echo null=denied; fi"
    ));
    tryo!(edit(&mut b, |s| add_caps(s, &[Capability::Mknod])));
    let m = kv(&tryo!(ctx.run(&b)));
    let allowed: HashSet<&str> = [
        "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx", "pts", "shm",
        "mqueue", "fd", "stdin", "stdout", "stderr", "core",
    ]
    .into_iter()
    .collect();
    let dev = m.get("dev").cloned().unwrap_or_default();
    let extra: Vec<&str> = dev
        .split_whitespace()
        .filter(|d| !allowed.contains(d))
        .collect();
    if !extra.is_empty() {
        return fail(format!("unexpected devices in /dev: {extra:?}"));
    }
    // The device cgroup must refuse a block device (creating or opening it).
    let blk_denied = m.get("blk").map(String::as_str) == Some("denied")
        || m.get("blkread").map(String::as_str) == Some("denied");
    if !blk_denied {
        return fail("block device 8:0 could be created and read: device cgroup does not deny it");
    }
    if m.get("null").map(String::as_str) != Some("ok") {
        return fail("an allowed device (c 1:3) could not be created/written");
    }
    Outcome::Pass
}

fn memory_oom(ctx: &Ctx) -> Outcome {
    let mut b = tryo!(ctx.bundle(
        "oom",
        "head -c 300000000 /dev/zero | sort > /dev/null; echo rc=$?; echo oom=$(grep '^oom_kill ' /sys/fs/cgroup/memory/memory.oom_control | cut -d' ' -f2)"
    ));
    tryo!(edit(&mut b, |s| {
        set_resources(s, |r| {
            let mut m = LinuxMemory::default();
            m.set_limit(Some(32 << 20));
            m.set_swap(Some(32 << 20));
            r.set_memory(Some(m));
        })
    }));
    let m = kv(&tryo!(ctx.run(&b)));
    if m.get("rc").map(String::as_str) != Some("137") {
        return fail(format!(
            "memory hog exit {:?}, want 137 (SIGKILL)",
            m.get("rc")
        ));
    }
    let oom: u64 = m.get("oom").and_then(|v| v.parse().ok()).unwrap_or(0);
    if oom < 1 {
        return fail(format!(
            "memory.oom_control oom_kill {:?}, want >= 1",
            m.get("oom")
        ));
    }
    Outcome::Pass
}

fn pids_limit(ctx: &Ctx) -> Outcome {
    // The bomb runs in a child shell (a failed fork aborts busybox sh); the count afterwards
    // uses builtins only, since no fork is possible while the bomb's children hold every pid.
    let mut b = tryo!(ctx.bundle(
        "pids",
        "sh -c 'while true; do sleep 30 & done' 2>/dev/null; n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo n=$n; read max < /sys/fs/cgroup/pids/pids.max; echo max=$max"
    ));
    tryo!(edit(&mut b, |s| {
        set_resources(s, |r| {
            let mut p = LinuxPids::default();
            p.set_limit(20);
            r.set_pids(Some(p));
        })
    }));
    let m = kv(&tryo!(ctx.run(&b)));
    let n: u64 = m.get("n").and_then(|v| v.parse().ok()).unwrap_or(999);
    if !(10..=20).contains(&n) {
        return fail(format!(
            "{n} processes alive with pids.max=20 (max file: {:?})",
            m.get("max")
        ));
    }
    Outcome::Pass
}

fn cpu_quota(ctx: &Ctx) -> Outcome {
    let mut b = tryo!(ctx.bundle(
        "cpu",
        "end=$(( $(date +%s) + 2 )); while [ $(date +%s) -lt $end ]; do :; done; grep nr_throttled /sys/fs/cgroup/cpu/cpu.stat | tr ' ' '='"
    ));
    tryo!(edit(&mut b, |s| {
        set_resources(s, |r| {
            let mut c = LinuxCpu::default();
            c.set_quota(Some(10000));
            c.set_period(Some(100000));
            r.set_cpu(Some(c));
        })
    }));
    let start = Instant::now();
    let m = kv(&tryo!(ctx.run(&b)));
    let thr: u64 = m
        .get("nr_throttled")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if thr == 0 {
        return fail(format!(
            "nr_throttled {:?} after {:?} of busy loop",
            m.get("nr_throttled"),
            start.elapsed()
        ));
    }
    Outcome::Pass
}

fn rlimits(ctx: &Ctx) -> Outcome {
    let mut b = tryo!(ctx.bundle(
        "rlimits",
        "grep 'Max open files' /proc/self/limits | tr -s ' ' | cut -d' ' -f4,5 | tr ' ' '/' | sed 's/^/nofile=/'; grep 'Max processes' /proc/self/limits | tr -s ' ' | cut -d' ' -f3,4 | tr ' ' '/' | sed 's/^/nproc=/'"
    ));
    tryo!(edit(&mut b, |s| {
        let mut p = s.process().clone().unwrap_or_default();
        p.set_rlimits(Some(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(123u64)
                .hard(456u64)
                .build()
                .expect("rlimit"),
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNproc)
                .soft(77u64)
                .hard(88u64)
                .build()
                .expect("rlimit"),
        ]));
        s.set_process(Some(p));
    }));
    let m = kv(&tryo!(ctx.run(&b)));
    if m.get("nofile").map(String::as_str) != Some("123/456") {
        return fail(format!("nofile {:?}, want 123/456", m.get("nofile")));
    }
    if m.get("nproc").map(String::as_str) != Some("77/88") {
        return fail(format!("nproc {:?}, want 77/88", m.get("nproc")));
    }
    Outcome::Pass
}

fn ids(ctx: &Ctx) -> Outcome {
    let mut b = tryo!(ctx.bundle(
        "ids",
        "grep -E '^(Uid|Gid|Groups):' /proc/self/status | tr -s '\\t ' ' ' | sed 's/: */=/'"
    ));
    tryo!(edit(&mut b, |s| {
        let mut p = s.process().clone().unwrap_or_default();
        let mut u = p.user().clone();
        u.set_uid(1000);
        u.set_gid(1001);
        u.set_additional_gids(Some(vec![2000, 3000]));
        p.set_user(u);
        s.set_process(Some(p));
    }));
    let m = kv(&tryo!(ctx.run(&b)));
    if m.get("Uid").map(|s| s.trim()) != Some("1000 1000 1000 1000") {
        return fail(format!("Uid {:?}", m.get("Uid")));
    }
    if m.get("Gid").map(|s| s.trim()) != Some("1001 1001 1001 1001") {
        return fail(format!("Gid {:?}", m.get("Gid")));
    }
    let groups: HashSet<&str> = m
        .get("Groups")
        .map(|g| g.split_whitespace().collect())
        .unwrap_or_default();
    if !groups.contains("2000") || !groups.contains("3000") || groups.contains("0") {
        return fail(format!(
            "Groups {:?}, want 2000 and 3000, not 0",
            m.get("Groups")
        ));
    }
    Outcome::Pass
}

fn sysctls(ctx: &Ctx) -> Outcome {
    let host_before =
        std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap_or_default();
    let mut b = tryo!(ctx.bundle(
        "sysctl",
        "echo fwd=$(cat /proc/sys/net/ipv4/ip_forward); echo shm=$(cat /proc/sys/kernel/shm_rmid_forced)"
    ));
    tryo!(edit(&mut b, |s| {
        let mut linux = s.linux().clone().unwrap_or_default();
        linux.set_sysctl(Some(
            [
                ("net.ipv4.ip_forward".to_string(), "1".to_string()),
                ("kernel.shm_rmid_forced".to_string(), "1".to_string()),
            ]
            .into_iter()
            .collect(),
        ));
        s.set_linux(Some(linux));
    }));
    let m = kv(&tryo!(ctx.run(&b)));
    if m.get("fwd").map(String::as_str) != Some("1")
        || m.get("shm").map(String::as_str) != Some("1")
    {
        return fail(format!(
            "sysctls inside: ip_forward {:?}, shm_rmid_forced {:?}",
            m.get("fwd"),
            m.get("shm")
        ));
    }
    let host_after =
        std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap_or_default();
    if host_after != host_before {
        return fail("host kernel.shm_rmid_forced changed");
    }
    Outcome::Pass
}

fn propagation(ctx: &Ctx) -> Outcome {
    let shared = ctx.work.join("propagation-src");
    let sub = shared.join("sub");
    tryo!(std::fs::create_dir_all(&sub).map_err(|e| e.to_string()));
    // The source must be a shared mount for the slave to receive anything.
    let run = |args: &[&str]| {
        std::process::Command::new(args[0])
            .args(&args[1..])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let s = shared.display().to_string();
    let subs = sub.display().to_string();
    if !(run(&["mount", "--bind", &s, &s]) && run(&["mount", "--make-shared", &s])) {
        let _ = run(&["umount", &s]);
        return fail("could not make the test's shared source mount");
    }
    let mut b = match ctx.bundle(
        "propagation",
        "touch /shared/ready; i=0; while [ $i -lt 200 ] && [ ! -e /shared/sub/flag ]; do sleep 0.05; i=$((i+1)); done; if [ -e /shared/sub/flag ]; then echo seen=yes; else echo seen=no; fi; mount -t tmpfs none /shared/inner 2>/dev/null; echo done=1",
    ) {
        Ok(b) => b,
        Err(e) => {
            let _ = run(&["umount", &s]);
            return fail(e);
        }
    };
    std::fs::create_dir_all(shared.join("inner")).ok();
    let ready = shared.join("ready");
    let _ = std::fs::remove_file(&ready);
    let e = edit(&mut b, |sp| {
        add_caps(sp, &[Capability::SysAdmin]);
        let mut mounts = sp.mounts().clone().unwrap_or_default();
        mounts.push(
            MountBuilder::default()
                .destination("/shared")
                .typ("bind")
                .source(shared.clone())
                .options(vec!["rbind".to_string(), "rslave".to_string()])
                .build()
                .expect("mount"),
        );
        sp.set_mounts(Some(mounts));
    });
    if let Err(e) = e {
        let _ = run(&["umount", &s]);
        return fail(e);
    }
    let handle = {
        let cmd_ctx_rt = ctx.rt.command([
            "run",
            "--bundle",
            b.dir.to_str().unwrap_or_default(),
            &crate::runtime_cli::unique_id("prop"),
        ]);
        std::thread::spawn(move || {
            crate::runtime_cli::run_with_timeout(cmd_ctx_rt, None, Duration::from_secs(60))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mounted = run(&["mount", "-t", "tmpfs", "pea-prop", &subs]);
    if mounted {
        let _ = std::fs::write(sub.join("flag"), "1");
    }
    let out = handle.join().expect("run thread");
    let inner_leaked = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .contains(&shared.join("inner").display().to_string());
    let _ = run(&["umount", "-l", &subs]);
    let _ = run(&["umount", "-l", &s]);
    if !out.success() {
        return Outcome::RuntimeError(out.stderr);
    }
    let m = kv(&out.stdout);
    if !mounted {
        return fail("host could not mount under the shared source");
    }
    if m.get("seen").map(String::as_str) != Some("yes") {
        return fail("a host mount did not propagate into the rslave bind mount");
    }
    if inner_leaked {
        return fail("a mount made in the container propagated to the host");
    }
    Outcome::Pass
}

fn host_leaks(ctx: &Ctx) -> Outcome {
    let me = std::process::id();
    let b = tryo!(ctx.bundle(
        "leaks",
        &format!(
            "echo hostname=$(cat /proc/sys/kernel/hostname); \
             if [ -e /proc/{me} ]; then echo hostpid=visible; else echo hostpid=hidden; fi; \
             if touch /sys/kernel/pea-x 2>/dev/null; then echo sys=writable; else echo sys=ro; fi; \
             if mkdir /sys/fs/cgroup/pids/pea-leak-probe 2>/dev/null; then rmdir /sys/fs/cgroup/pids/pea-leak-probe; echo cg=writable; else echo cg=ro; fi; \
             if echo 1000 > /sys/fs/cgroup/pids/pids.max 2>/dev/null; then echo cglimit=writable; else echo cglimit=ro; fi"
        )
    ));
    let m = kv(&tryo!(ctx.run(&b)));
    if me != 1 && m.get("hostpid").map(String::as_str) != Some("hidden") {
        return fail("the test runner's pid is visible in the container's /proc");
    }
    if m.get("sys").map(String::as_str) != Some("ro") {
        return fail("/sys is writable");
    }
    if m.get("cg").map(String::as_str) != Some("ro")
        || m.get("cglimit").map(String::as_str) != Some("ro")
    {
        return fail(format!(
            "/sys/fs/cgroup is writable from the container (mkdir: {:?}, pids.max: {:?})",
            m.get("cg"),
            m.get("cglimit")
        ));
    }
    if m.get("hostname").map(String::as_str) != Some("pea-iso") {
        return fail("host hostname visible");
    }
    let _ = Path::new("/");
    Outcome::Pass
}

//! Bad input to pea-runtime: each case gets an error naming the problem and leaves nothing
//! behind (state dir, cgroup, process, pid file).

use std::path::Path;

use oci_spec::runtime::{
    Capability, LinuxNamespaceBuilder, LinuxNamespaceType, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType,
};
use pea_tests::fixtures::{Bundle, BundleBuilder};
use pea_tests::privileged::require_root;
use pea_tests::runtime_cli::{assert_no_leftovers, unique_id, unique_sleep, Runtime};

fn bundle(dir: &Path, args: &[&str]) -> Bundle {
    BundleBuilder::busybox(dir)
        .args(args.iter().copied())
        .build()
        .expect("bundle")
}

/// `create` must fail with `needle` in the message and leave nothing behind.
fn create_fails(rt: &Runtime, bun: &Bundle, needle: &str) {
    let id = unique_id("bad");
    let pid_file = bun.dir.join("bad.pid");
    let o = rt.run([
        "create",
        "--bundle",
        bun.dir.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ]);
    let o = o.fails_with(needle);
    assert_eq!(o.code, Some(1));
    assert!(!pid_file.exists(), "pid file left behind");
    assert_no_leftovers(rt, &id, None);
}

#[test]
fn malformed_and_semantically_invalid_config() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let bun = bundle(tmp.path(), &["true"]);

    std::fs::write(bun.config_path(), "{ not json").unwrap();
    create_fails(&rt, &bun, "invalid config.json");

    let mut b2 = bun.clone();
    b2.spec.set_version("2.0.0".into());
    b2.save().unwrap();
    create_fails(&rt, &b2, "ociVersion \"2.0.0\" is not supported");

    let mut b3 = bun.clone();
    let mut p = b3.spec.process().clone().unwrap();
    p.set_args(Some(vec![]));
    b3.spec.set_process(Some(p));
    b3.save().unwrap();
    create_fails(&rt, &b3, "process.args must not be empty");

    let mut b4 = bun.clone();
    let mut p = b4.spec.process().clone().unwrap();
    p.set_cwd("relative".into());
    b4.spec.set_process(Some(p));
    b4.save().unwrap();
    create_fails(&rt, &b4, "process.cwd relative must be an absolute path");

    // unknown namespace type: rejected while parsing, naming the value
    let mut v: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&bun.spec).unwrap()).unwrap();
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "bogus"}));
    std::fs::write(bun.config_path(), v.to_string()).unwrap();
    create_fails(&rt, &bun, "bogus");

    let mut b5 = bun.clone();
    let mut linux = b5.spec.linux().clone().unwrap();
    let mut ns = linux.namespaces().clone().unwrap();
    ns.push(
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Pid)
            .build()
            .unwrap(),
    );
    linux.set_namespaces(Some(ns));
    b5.spec.set_linux(Some(linux));
    b5.save().unwrap();
    create_fails(&rt, &b5, "listed twice");

    let mut b6 = bun.clone();
    let mut linux = b6.spec.linux().clone().unwrap();
    let mut ns = linux.namespaces().clone().unwrap();
    ns.retain(|n| n.typ() != LinuxNamespaceType::Network);
    ns.push(
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Network)
            .path("/proc/self/ns/nonexistent")
            .build()
            .unwrap(),
    );
    linux.set_namespaces(Some(ns));
    b6.spec.set_linux(Some(linux));
    b6.save().unwrap();
    create_fails(
        &rt,
        &b6,
        "namespace path /proc/self/ns/nonexistent does not exist",
    );

    let b7 = bundle(&tmp.path().join("missing-bundle-dir-parent/x"), &["true"]);
    std::fs::remove_file(b7.config_path()).unwrap();
    create_fails(&rt, &b7, "config.json: No such file or directory");
}

#[test]
fn missing_rootfs() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let bun = bundle(tmp.path(), &["true"]);
    std::fs::remove_dir_all(&bun.rootfs).unwrap();
    create_fails(&rt, &bun, "root.path");
}

#[test]
fn bad_and_duplicate_ids() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique_sleep();
    let bun = bundle(tmp.path(), &["sleep", &marker]);
    for bad in ["a/b", "..", "../escape", ".", "has space"] {
        rt.run(["create", "--bundle", bun.dir.to_str().unwrap(), bad])
            .fails_with("invalid container id");
        rt.run(["state", bad]).fails_with("invalid container id");
    }
    assert!(rt.ids().is_empty(), "{:?}", rt.ids());
    assert!(!rt.root.parent().unwrap().join("escape").exists());

    let id = unique_id("dup");
    rt.run(["create", "--bundle", bun.dir.to_str().unwrap(), &id])
        .ok();
    let pid = rt.state(&id)["pid"].clone();
    rt.run(["create", "--bundle", bun.dir.to_str().unwrap(), &id])
        .fails_with("container with id exists");
    // the first container is untouched
    assert_eq!(rt.status(&id), "created");
    assert_eq!(rt.state(&id)["pid"], pid);
    rt.run(["delete", &id]).ok();
    assert_no_leftovers(&rt, &id, Some(&marker));
}

#[test]
fn mount_destination_escaping_through_a_symlink() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let mut bun = bundle(tmp.path(), &["true"]);
    std::os::unix::fs::symlink("../../../../../../../etc", bun.rootfs.join("evil")).unwrap();
    let mut mounts = bun.spec.mounts().clone().unwrap();
    mounts.push(
        MountBuilder::default()
            .destination("/evil/pea-escape")
            .typ("tmpfs")
            .source("tmpfs")
            .build()
            .unwrap(),
    );
    bun.spec.set_mounts(Some(mounts));
    bun.save().unwrap();
    create_fails(
        &rt,
        &bun,
        "escapes the rootfs through symlink evil -> ../../../../../../../etc",
    );
    assert!(!Path::new("/etc/pea-escape").exists());
}

#[test]
fn requests_the_kernel_refuses_name_the_setting() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let base = bundle(tmp.path(), &["true"]);

    let mut b = base.clone();
    let mut p = b.spec.process().clone().unwrap();
    p.set_oom_score_adj(Some(-500));
    b.spec.set_process(Some(p));
    b.save().unwrap();
    create_fails(&rt, &b, "process.oomScoreAdj -500");
    create_fails(&rt, &b, "CAP_SYS_RESOURCE");

    let mut b = base.clone();
    let mut p = b.spec.process().clone().unwrap();
    p.set_rlimits(Some(vec![PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(1024u64)
        .hard(1_048_576u64)
        .build()
        .unwrap()]));
    b.spec.set_process(Some(p));
    b.save().unwrap();
    create_fails(&rt, &b, "process.rlimits RLIMIT_NOFILE");

    let mut b = base.clone();
    let mut p = b.spec.process().clone().unwrap();
    let mut caps = p.capabilities().clone().unwrap();
    let mut eff = caps.effective().clone().unwrap();
    eff.insert(Capability::SysResource);
    caps.set_effective(Some(eff));
    p.set_capabilities(Some(caps));
    b.spec.set_process(Some(p));
    b.save().unwrap();
    create_fails(&rt, &b, "process.capabilities.effective: CAP_SYS_RESOURCE");

    let mut b = base.clone();
    let mut linux = b.spec.linux().clone().unwrap();
    let res: oci_spec::runtime::LinuxResources =
        serde_json::from_str(r#"{"hugepageLimits":[{"pageSize":"2MB","limit":2097152}]}"#).unwrap();
    linux.set_resources(Some(res));
    b.spec.set_linux(Some(linux));
    b.save().unwrap();
    create_fails(&rt, &b, "hugepageLimits");
}

#[test]
fn failures_inside_the_container_leave_nothing_behind() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();

    // The executable is looked up in the container: reported by create, synchronously.
    let b = bundle(&tmp.path().join("a"), &["no-such-program"]);
    create_fails(&rt, &b, "executable file not found in $PATH");

    // A mount the kernel refuses, after namespaces and cgroups exist.
    let mut b = bundle(&tmp.path().join("b"), &["true"]);
    let mut mounts = b.spec.mounts().clone().unwrap();
    mounts.push(
        MountBuilder::default()
            .destination("/mnt/x")
            .typ("no-such-fs-type")
            .source("none")
            .build()
            .unwrap(),
    );
    b.spec.set_mounts(Some(mounts));
    b.save().unwrap();
    create_fails(&rt, &b, "create container");

    // Same through `run`: the exit code is 1 and nothing stays.
    let id = unique_id("runbad");
    let o = rt.run(["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert_no_leftovers(&rt, &id, None);
    assert!(rt.ids().is_empty());
}

#[test]
fn seccomp_profiles_that_cannot_be_compiled_are_rejected() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let base = bundle(tmp.path(), &["true"]);
    let mut v: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&base.spec).unwrap()).unwrap();
    v["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"});
    std::fs::write(base.config_path(), v.to_string()).unwrap();
    create_fails(&rt, &base, "SCMP_ACT_NOTIFY");
    v["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]});
    std::fs::write(base.config_path(), v.to_string()).unwrap();
    create_fails(&rt, &base, "argument index 9");
    v["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_NOPE"});
    std::fs::write(base.config_path(), v.to_string()).unwrap();
    create_fails(&rt, &base, "SCMP_ACT_NOPE");
}

/// With `noNewPrivileges` false the filter goes in before the capability drop (runc's order):
/// the profile acts, no_new_privs stays off, and the capability sets end as the config says.
/// A profile that denies a syscall the runtime still makes after the filter is refused at
/// `create`, naming the syscall, with nothing left behind.
#[test]
fn seccomp_without_no_new_privs_is_installed_before_the_capability_drop() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let base = bundle(
        tmp.path(),
        &[
            "sh",
            "-c",
            "grep -E '^(Seccomp|NoNewPrivs|CapEff|CapBnd):' /proc/self/status; mkdir /tmp/denied",
        ],
    );
    let mut v: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&base.spec).unwrap()).unwrap();
    v["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]});
    v["process"]["noNewPrivileges"] = serde_json::json!(false);
    // CAP_CHOWN and CAP_KILL only: CAP_SYS_ADMIN must be gone once the container runs.
    let caps = serde_json::json!(["CAP_CHOWN", "CAP_KILL"]);
    for set in ["bounding", "effective", "permitted", "inheritable"] {
        v["process"]["capabilities"][set] = caps.clone();
    }
    v["process"]["capabilities"]["ambient"] = serde_json::json!([]);
    std::fs::write(base.config_path(), v.to_string()).unwrap();
    let o = rt.run([
        "run",
        "--bundle",
        base.dir.to_str().unwrap(),
        &unique_id("nnpoff"),
    ]);
    let out = format!("{}{}", o.stdout, o.stderr);
    assert!(out.contains("Seccomp:\t2"), "filter not in force: {out}");
    assert!(
        out.contains("NoNewPrivs:\t0"),
        "no_new_privs was set: {out}"
    );
    // CAP_CHOWN (0) and CAP_KILL (5): 0x21
    assert!(out.contains("CapEff:\t0000000000000021"), "{out}");
    assert!(out.contains("CapBnd:\t0000000000000021"), "{out}");
    assert!(
        out.contains("Function not implemented"),
        "errno 38 not applied: {out}"
    );
    assert_ne!(o.code, Some(0), "mkdir should have failed: {out}");

    // The runtime drops capabilities after the filter: a profile denying capset is refused.
    v["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["capset"], "action": "SCMP_ACT_ERRNO"}]});
    std::fs::write(base.config_path(), v.to_string()).unwrap();
    create_fails(&rt, &base, "capset");
    // ... and so is a kill action on the bounding-set drop, matched by its argument.
    v["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["prctl"], "action": "SCMP_ACT_KILL",
                      "args": [{"index": 0, "value": 24, "op": "SCMP_CMP_EQ"}]}]});
    std::fs::write(base.config_path(), v.to_string()).unwrap();
    create_fails(&rt, &base, "prctl");
    // With no_new_privs the filter goes in right before execve, so capset may be denied...
    v["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["capset"], "action": "SCMP_ACT_ERRNO"}]});
    v["process"]["noNewPrivileges"] = serde_json::json!(true);
    std::fs::write(base.config_path(), v.to_string()).unwrap();
    let o = rt.run([
        "run",
        "--bundle",
        base.dir.to_str().unwrap(),
        &unique_id("nnpon"),
    ]);
    assert!(o.stdout.contains("NoNewPrivs:\t1"), "{o:?}");
    // ... but execve may not, in either order.
    v["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["execve"], "action": "SCMP_ACT_ERRNO"}]});
    std::fs::write(base.config_path(), v.to_string()).unwrap();
    create_fails(&rt, &base, "execve");
}

#[test]
fn operations_on_missing_or_wrong_state_containers() {
    require_root();
    let rt = Runtime::pea();
    for verb in ["start", "state", "kill", "pause", "resume", "ps", "events"] {
        rt.run([verb, "missing-container"])
            .fails_with("container \"missing-container\" does not exist");
    }
    rt.run(["exec", "missing-container", "true"])
        .fails_with("does not exist");
    rt.run(["delete", "--force", "missing-container"]).ok();
    rt.run(["list"]).ok();
}

#[test]
fn child_failures_name_their_cause_when_logging_to_a_file() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let mut b = bundle(tmp.path(), &["true"]);
    let mut mounts = b.spec.mounts().clone().unwrap();
    mounts.push(
        MountBuilder::default()
            .destination("/mnt/x")
            .typ("no-such-fs-type")
            .source("none")
            .build()
            .unwrap(),
    );
    b.spec.set_mounts(Some(mounts));
    b.save().unwrap();
    let log = tmp.path().join("log.json");
    let id = unique_id("cause");
    let o = rt.run([
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        &id,
    ]);
    // The flattened libcontainer error plus the cause the container process logged, errno included.
    let o = o.fails_with("cause: failed to mount");
    assert!(o.stderr.contains("ENODEV"), "{}", o.stderr);
    assert_no_leftovers(&rt, &id, None);
}

//! `features`: what this runtime supports, in the shape of runc's `features` JSON.

use crate::error::Result;

pub fn run() -> Result<i32> {
    let caps: Vec<String> = {
        let mut v: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
        v.sort();
        v
    };
    let v = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": oci_spec::runtime::VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["async","atime","bind","defaults","dev","diratime","dirsync","exec","iversion",
            "lazytime","loud","mand","noatime","nodev","nodiratime","noexec","noiversion","nolazytime",
            "nomand","norelatime","nostrictatime","nosuid","nosymfollow","private","ratime","rbind",
            "rdev","rdiratime","relatime","remount","rexec","rnoatime","rnodev","rnodiratime","rnoexec",
            "rnorelatime","rnostrictatime","rnosuid","rnosymfollow","ro","rprivate","rrelatime","rro",
            "rrw","rshared","rslave","rstrictatime","rsuid","rsymfollow","runbindable","rw","shared",
            "silent","slave","strictatime","suid","symfollow","sync","unbindable"],
        "linux": {
            "namespaces": ["cgroup","ipc","mount","network","pid","time","user","uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW","SCMP_ACT_ERRNO","SCMP_ACT_KILL","SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD","SCMP_ACT_LOG","SCMP_ACT_TRACE","SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ","SCMP_CMP_GE","SCMP_CMP_GT","SCMP_CMP_LE","SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ","SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86_64"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                               "SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                                   "SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            "org.opencontainers.runtime-spec.features.libcontainer.version": "0.7.0",
            "io.github.pea.runtime.seccomp.backend": "seccompiler"
        }
    });
    println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    Ok(0)
}

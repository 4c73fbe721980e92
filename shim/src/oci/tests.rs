//! Golden files for representative configs (`UPDATE_GOLDEN=1 cargo test -p pea-shim oci`
//! rewrites them) and one test per error path.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capability, LinuxDeviceBuilder, LinuxDeviceType, LinuxNamespaceType, LinuxSeccompAction, Spec,
};

use super::*;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/oci/testdata")
}

fn rootfs() -> PathBuf {
    testdata().join("rootfs")
}

fn seccomp_root() -> PathBuf {
    testdata().join("seccomp")
}

/// A host like this one: no CAP_SYS_RESOURCE in the bounding set; any oom_score_adj allowed
/// (the clamp has its own test); two fake devices for privileged containers.
fn host() -> Host {
    let mut bounding = security::all_caps();
    bounding.remove(&Capability::SysResource);
    let dev = |path: &str, typ, major, minor| {
        LinuxDeviceBuilder::default()
            .path(path)
            .typ(typ)
            .major(major)
            .minor(minor)
            .file_mode(0o666u32)
            .uid(0u32)
            .gid(0u32)
            .build()
            .unwrap()
    };
    Host {
        hostname: "node-1".into(),
        bounding,
        oom_score_adj_floor: None,
        devices: Some(vec![
            dev("/dev/null", LinuxDeviceType::C, 1, 3),
            dev("/dev/vda", LinuxDeviceType::B, 253, 0),
        ]),
    }
}

fn golden(name: &str, spec: &Spec) {
    let root = testdata();
    let text = canonical_json(spec).replace(root.to_str().unwrap(), "$TESTDATA");
    let path = root.join(format!("{name}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if want != text {
        let first = want
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(text.lines().count()));
        panic!(
            "{name}: the spec differs from {} from line {} on:\n want: {:?}\n  got: {:?}\n\
             (UPDATE_GOLDEN=1 rewrites the golden file)",
            path.display(),
            first + 1,
            want.lines().nth(first),
            text.lines().nth(first),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures

fn image(json: serde_json::Value) -> ImageConfiguration {
    let mut v = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
    });
    v["config"] = json;
    serde_json::from_value(v).unwrap()
}

fn busybox() -> ImageConfiguration {
    image(serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"],
    }))
}

fn pause() -> ImageConfiguration {
    image(serde_json::json!({"Entrypoint": ["/pause"]}))
}

fn sandbox_config() -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "web-0".into(),
            uid: "0b3c6a3e-uid".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "web-0".into(),
        log_directory: "/var/log/pods/default_web-0_0b3c6a3e-uid".into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: "/kubepods/besteffort/pod0b3c6a3e".into(),
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
    }
}

fn container_config() -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: "sha256:1111".into(),
            user_specified_image: "127.0.0.1:5000/busybox:1.36".into(),
            ..Default::default()
        }),
        log_path: "app/0.log".into(),
        linux: Some(cri::LinuxContainerConfig {
            resources: None,
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Pod as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

fn sc(c: &mut cri::ContainerConfig) -> &mut cri::LinuxContainerSecurityContext {
    c.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

fn sb_sc(s: &mut cri::PodSandboxConfig) -> &mut cri::LinuxSandboxSecurityContext {
    s.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

fn pod_files() -> PodFiles {
    PodFiles {
        resolv_conf: Some("/run/pea/shim/sb1/resolv.conf".into()),
        hostname: Some("/run/pea/shim/sb1/hostname".into()),
        hosts: Some("/run/pea/shim/sb1/hosts".into()),
        shm: Some("/run/pea/shim/sb1/shm".into()),
    }
}

fn build_container(
    config: &cri::ContainerConfig,
    sandbox: &cri::PodSandboxConfig,
    img: &ImageConfiguration,
    files: &PodFiles,
) -> Result<Spec, OciError> {
    build_container_on(config, sandbox, img, files, None, &host())
}

fn build_container_on(
    config: &cri::ContainerConfig,
    sandbox: &cri::PodSandboxConfig,
    img: &ImageConfiguration,
    files: &PodFiles,
    target_pid: Option<i32>,
    host: &Host,
) -> Result<Spec, OciError> {
    let root = rootfs();
    let sroot = seccomp_root();
    container_spec_on(
        &ContainerSpecInput {
            id: "c0ffee",
            sandbox_id: "sb1",
            config,
            sandbox,
            image: img,
            rootfs: &root,
            sandbox_pid: 4242,
            target_pid,
            cgroups_path: "/kubepods/besteffort/pod0b3c6a3e/c0ffee".into(),
            files,
            seccomp_profile_root: &sroot,
        },
        host,
    )
}

fn build_sandbox(
    config: &cri::PodSandboxConfig,
    netns: Option<&Path>,
    files: &PodFiles,
) -> Result<Spec, OciError> {
    build_sandbox_on(config, netns, files, &host())
}

fn build_sandbox_on(
    config: &cri::PodSandboxConfig,
    netns: Option<&Path>,
    files: &PodFiles,
    host: &Host,
) -> Result<Spec, OciError> {
    let root = rootfs();
    let sroot = seccomp_root();
    let img = pause();
    sandbox_spec_on(
        &SandboxSpecInput {
            id: "sb1",
            config,
            image: &img,
            rootfs: &root,
            netns,
            userns: crate::userns::mapping(config).map(|_| Path::new("/run/pea/shim/userns/sb1")),
            cgroups_path: "/kubepods/besteffort/pod0b3c6a3e/sb1".into(),
            files,
            seccomp_profile_root: &sroot,
        },
        host,
    )
}

fn container(c: &cri::ContainerConfig) -> Spec {
    build_container(c, &sandbox_config(), &busybox(), &PodFiles::default()).unwrap()
}

fn container_err(c: &cri::ContainerConfig) -> OciError {
    match build_container(c, &sandbox_config(), &busybox(), &PodFiles::default()) {
        Ok(_) => panic!("the config translated, want an error"),
        Err(e) => e,
    }
}

/// The error's field, asserting its kind.
fn field_of(e: &OciError, want_unsupported: bool) -> String {
    match (e, want_unsupported) {
        (OciError::Invalid { field, .. }, false) => field.clone(),
        (OciError::Unsupported { field, .. }, true) => field.clone(),
        other => panic!("unexpected error {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Golden files: containers

#[test]
fn golden_container_plain() {
    golden("container_plain", &container(&container_config()));
}

#[test]
fn golden_container_args_env_workdir() {
    let img = image(serde_json::json!({
        "Env": ["PATH=/bin", "FOO=image", "BAR=image"],
        "Entrypoint": ["/entry", "--flag"],
        "Cmd": ["default-arg"],
        "WorkingDir": "/srv",
    }));
    let mut c = container_config();
    c.args = vec!["x".into(), "y".into()];
    c.envs = vec![
        cri::KeyValue {
            key: "FOO".into(),
            value: "cri".into(),
        },
        cri::KeyValue {
            key: "NEW".into(),
            value: "1".into(),
        },
        cri::KeyValue {
            key: "FOO".into(),
            value: "last".into(),
        },
    ];
    c.tty = true;
    c.stdin = true;
    let spec = build_container(&c, &sandbox_config(), &img, &PodFiles::default()).unwrap();
    golden("container_args_env_workdir", &spec);
}

#[test]
fn golden_container_user_by_name() {
    let mut c = container_config();
    sc(&mut c).run_as_username = "app".into();
    sc(&mut c).supplemental_groups = vec![1234, 10];
    golden("container_user_by_name", &container(&c));
}

#[test]
fn golden_container_privileged() {
    let mut sb = sandbox_config();
    sb_sc(&mut sb).privileged = true;
    let mut c = container_config();
    sc(&mut c).privileged = true;
    sc(&mut c).masked_paths = vec!["/proc/kcore".into()];
    sc(&mut c).seccomp = Some(cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    c.devices = vec![cri::Device {
        container_path: "/dev/zero2".into(),
        host_path: "/dev/zero".into(),
        permissions: "rw".into(),
    }];
    let spec = build_container(&c, &sb, &busybox(), &PodFiles::default()).unwrap();
    golden("container_privileged", &spec);
}

#[test]
fn golden_container_caps_add_all_drop_some() {
    let mut c = container_config();
    sc(&mut c).capabilities = Some(cri::Capability {
        add_capabilities: vec!["ALL".into()],
        drop_capabilities: vec!["CHOWN".into(), "cap_net_raw".into()],
        add_ambient_capabilities: vec![],
    });
    golden("container_caps_add_all_drop_some", &container(&c));
}

#[test]
fn golden_container_caps_drop_all_add_some() {
    let mut c = container_config();
    sc(&mut c).capabilities = Some(cri::Capability {
        add_capabilities: vec!["NET_ADMIN".into(), "CAP_SYS_TIME".into()],
        drop_capabilities: vec!["all".into()],
        add_ambient_capabilities: vec!["NET_BIND_SERVICE".into()],
    });
    golden("container_caps_drop_all_add_some", &container(&c));
}

#[test]
fn golden_container_readonly_masked_files() {
    let mut c = container_config();
    let s = sc(&mut c);
    s.readonly_rootfs = true;
    s.no_new_privs = true;
    s.masked_paths = vec!["/proc/kcore".into(), "/proc/keys".into()];
    s.readonly_paths = vec!["/proc/sys".into()];
    let spec = build_container(&c, &sandbox_config(), &busybox(), &pod_files()).unwrap();
    golden("container_readonly_masked_files", &spec);
}

#[test]
fn golden_container_mounts() {
    let mut c = container_config();
    let m = |host: &str, dest: &str, ro: bool, rro: bool, p: cri::MountPropagation| cri::Mount {
        container_path: dest.into(),
        host_path: host.into(),
        readonly: ro,
        recursive_read_only: rro,
        propagation: p as i32,
        ..Default::default()
    };
    c.mounts = vec![
        m(
            "/var/lib/kubelet/pods/u/volumes/data/inner",
            "/data/inner",
            false,
            false,
            cri::MountPropagation::PropagationPrivate,
        ),
        m(
            "/var/lib/kubelet/pods/u/volumes/data",
            "/data",
            false,
            false,
            cri::MountPropagation::PropagationHostToContainer,
        ),
        m(
            "/var/lib/kubelet/pods/u/volumes/shared",
            "/shared",
            false,
            false,
            cri::MountPropagation::PropagationBidirectional,
        ),
        m(
            "/var/lib/kubelet/pods/u/volumes/config",
            "/etc/config",
            true,
            true,
            cri::MountPropagation::PropagationPrivate,
        ),
        m(
            "/var/lib/kubelet/pods/u/etc-hosts",
            "/etc/hosts",
            true,
            false,
            cri::MountPropagation::PropagationPrivate,
        ),
        cri::Mount {
            container_path: "/models".into(),
            image: Some(cri::ImageSpec {
                image: "sha256:2222".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let spec = build_container(&c, &sandbox_config(), &busybox(), &pod_files()).unwrap();
    golden("container_mounts", &spec);
}

#[test]
fn golden_container_devices() {
    let mut c = container_config();
    c.devices = vec![
        cri::Device {
            container_path: "/dev/xnull".into(),
            host_path: "/dev/null".into(),
            permissions: "rw".into(),
        },
        cri::Device {
            container_path: "/dev/zero".into(),
            host_path: "/dev/zero".into(),
            permissions: "rwm".into(),
        },
    ];
    golden("container_devices", &container(&c));
}

#[test]
fn golden_container_resources() {
    let mut c = container_config();
    c.linux.as_mut().unwrap().resources = Some(cri::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 256 << 20,
        oom_score_adj: 1000,
        cpuset_cpus: "0-1".into(),
        cpuset_mems: "0".into(),
        hugepage_limits: vec![cri::HugepageLimit {
            page_size: "2MB".into(),
            limit: 0,
        }],
        unified: HashMap::from([("memory.high".into(), "200000000".into())]),
        memory_swap_limit_in_bytes: 0,
    });
    golden("container_resources", &container(&c));
}

#[test]
fn golden_container_seccomp_runtime_default() {
    let mut c = container_config();
    sc(&mut c).seccomp = Some(cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    sc(&mut c).capabilities = Some(cri::Capability {
        add_capabilities: vec!["SYS_ADMIN".into()],
        ..Default::default()
    });
    golden("container_seccomp_runtime_default", &container(&c));
}

#[test]
fn golden_container_seccomp_localhost() {
    let mut c = container_config();
    sc(&mut c).seccomp = Some(cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::Localhost as i32,
        localhost_ref: "profile.json".into(),
    });
    golden("container_seccomp_localhost", &container(&c));
}

#[test]
fn golden_container_seccomp_unconfined_legacy() {
    let mut c = container_config();
    #[allow(deprecated)]
    {
        sc(&mut c).seccomp_profile_path = "unconfined".into();
    }
    golden("container_seccomp_unconfined_legacy", &container(&c));
}

#[test]
fn golden_container_pod_pid() {
    let mut sb = sandbox_config();
    sb_sc(&mut sb)
        .namespace_options
        .get_or_insert_with(Default::default)
        .pid = cri::NamespaceMode::Pod as i32;
    let mut c = container_config();
    sc(&mut c)
        .namespace_options
        .get_or_insert_with(Default::default)
        .pid = cri::NamespaceMode::Pod as i32;
    let spec = build_container(&c, &sb, &busybox(), &pod_files()).unwrap();
    golden("container_pod_pid", &spec);
}

#[test]
fn golden_container_host_namespaces() {
    let mut sb = sandbox_config();
    sb.hostname = String::new();
    let ns = sb_sc(&mut sb)
        .namespace_options
        .get_or_insert_with(Default::default);
    ns.network = cri::NamespaceMode::Node as i32;
    ns.ipc = cri::NamespaceMode::Node as i32;
    ns.pid = cri::NamespaceMode::Node as i32;
    let mut c = container_config();
    let cns = sc(&mut c)
        .namespace_options
        .get_or_insert_with(Default::default);
    cns.network = cri::NamespaceMode::Node as i32;
    cns.ipc = cri::NamespaceMode::Node as i32;
    cns.pid = cri::NamespaceMode::Node as i32;
    let files = PodFiles {
        shm: None,
        ..pod_files()
    };
    let spec = build_container(&c, &sb, &busybox(), &files).unwrap();
    golden("container_host_namespaces", &spec);
}

// ---------------------------------------------------------------------------------------------
// Golden files: sandboxes

#[test]
fn golden_sandbox_plain() {
    let spec = build_sandbox(
        &sandbox_config(),
        Some(Path::new("/run/netns/pea-sb1")),
        &PodFiles::default(),
    )
    .unwrap();
    golden("sandbox_plain", &spec);
}

#[test]
fn golden_sandbox_host_namespaces() {
    let mut sb = sandbox_config();
    sb.hostname = String::new();
    let ns = sb_sc(&mut sb)
        .namespace_options
        .get_or_insert_with(Default::default);
    ns.network = cri::NamespaceMode::Node as i32;
    ns.ipc = cri::NamespaceMode::Node as i32;
    ns.pid = cri::NamespaceMode::Node as i32;
    let spec = build_sandbox(&sb, None, &PodFiles::default()).unwrap();
    golden("sandbox_host_namespaces", &spec);
}

#[test]
fn golden_sandbox_sysctls_dns_user_seccomp() {
    let mut sb = sandbox_config();
    sb.dns_config = Some(cri::DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["default.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    let linux = sb.linux.as_mut().unwrap();
    linux.sysctls = HashMap::from([
        ("net.ipv4.ip_unprivileged_port_start".into(), "0".into()),
        ("kernel/shm_rmid_forced".into(), "1".into()),
        ("net.core.somaxconn".into(), "1024".into()),
    ]);
    linux.resources = Some(cri::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 200_000,
        cpu_shares: 2048,
        memory_limit_in_bytes: 1 << 30,
        ..Default::default()
    });
    let s = sb_sc(&mut sb);
    s.run_as_user = Some(cri::Int64Value { value: 65535 });
    s.run_as_group = Some(cri::Int64Value { value: 65535 });
    s.supplemental_groups = vec![2000];
    s.seccomp = Some(cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    let spec = build_sandbox(&sb, Some(Path::new("/run/netns/pea-sb1")), &pod_files()).unwrap();
    golden("sandbox_sysctls_dns_user_seccomp", &spec);
}

// ---------------------------------------------------------------------------------------------
// Behaviour without golden files

fn args_of(spec: &Spec) -> Vec<String> {
    spec.process().as_ref().unwrap().args().clone().unwrap()
}

#[test]
fn command_and_args_follow_kubernetes_rules() {
    let img = image(serde_json::json!({"Entrypoint": ["/ep"], "Cmd": ["c1", "c2"]}));
    let run = |cmd: &[&str], args: &[&str]| {
        let mut c = container_config();
        c.command = cmd.iter().map(|s| s.to_string()).collect();
        c.args = args.iter().map(|s| s.to_string()).collect();
        args_of(&build_container(&c, &sandbox_config(), &img, &PodFiles::default()).unwrap())
    };
    assert_eq!(run(&[], &[]), ["/ep", "c1", "c2"]);
    assert_eq!(run(&["/bin/x"], &[]), ["/bin/x"]);
    assert_eq!(run(&[], &["a"]), ["/ep", "a"]);
    assert_eq!(run(&["/bin/x"], &["a", "b"]), ["/bin/x", "a", "b"]);
}

#[test]
fn image_user_forms_resolve_against_the_rootfs() {
    let run = |user: &str| {
        let img = image(serde_json::json!({"User": user, "Cmd": ["sh"]}));
        let spec = build_container(
            &container_config(),
            &sandbox_config(),
            &img,
            &PodFiles::default(),
        )
        .unwrap();
        let u = spec.process().as_ref().unwrap().user().clone();
        (u.uid(), u.gid(), u.additional_gids().clone().unwrap())
    };
    assert_eq!(run("app"), (1000, 1000, vec![1000, 10, 29]));
    assert_eq!(run("1000"), (1000, 1000, vec![1000, 10, 29]));
    assert_eq!(run("1000:50"), (1000, 50, vec![50, 10, 29]));
    assert_eq!(run("app:staff"), (1000, 50, vec![50, 10, 29]));
    // A uid /etc/passwd does not know: gid 0, no groups.
    assert_eq!(run("4321"), (4321, 0, vec![0]));
    assert_eq!(run("4321:4321"), (4321, 4321, vec![4321]));
    // No user anywhere: root, with root's groups.
    assert_eq!(run(""), (0, 0, vec![0, 10]));
}

#[test]
fn strict_supplemental_groups_skip_etc_group() {
    let mut c = container_config();
    sc(&mut c).run_as_user = Some(cri::Int64Value { value: 1000 });
    sc(&mut c).supplemental_groups = vec![3000];
    sc(&mut c).supplemental_groups_policy = cri::SupplementalGroupsPolicy::Strict as i32;
    let spec = container(&c);
    let u = spec.process().as_ref().unwrap().user().clone();
    assert_eq!((u.uid(), u.gid()), (1000, 1000));
    assert_eq!(u.additional_gids().clone().unwrap(), vec![1000, 3000]);
}

#[test]
fn etc_passwd_symlinks_resolve_inside_the_rootfs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("real")).unwrap();
    std::fs::write(root.join("real/passwd"), "inside:x:777:778::/:/bin/sh\n").unwrap();
    // Absolute and escaping links both stay under the rootfs.
    std::os::unix::fs::symlink("/../../real/passwd", root.join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc/shadow-nope", root.join("etc/group"))
        .unwrap();
    let r = user::resolve(&root, Some(("inside", None)), "f").unwrap();
    assert_eq!((r.uid, r.gid), (777, 778));
    assert_eq!(
        user::path_in_root(&root, "/etc/group").unwrap(),
        None,
        "a link out of the root resolves inside it (and is absent there)"
    );
}

#[test]
fn pid_namespace_modes() {
    let pid_ns = |mode: cri::NamespaceMode, target: Option<i32>| {
        let mut c = container_config();
        sc(&mut c)
            .namespace_options
            .get_or_insert_with(Default::default)
            .pid = mode as i32;
        let spec = build_container_on(
            &c,
            &sandbox_config(),
            &busybox(),
            &PodFiles::default(),
            target,
            &host(),
        )
        .unwrap();
        spec.linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .clone()
            .unwrap()
            .into_iter()
            .find(|n| n.typ() == LinuxNamespaceType::Pid)
            .map(|n| n.path().clone())
    };
    assert_eq!(pid_ns(cri::NamespaceMode::Container, None), Some(None));
    assert_eq!(
        pid_ns(cri::NamespaceMode::Pod, None),
        Some(Some("/proc/4242/ns/pid".into()))
    );
    assert_eq!(pid_ns(cri::NamespaceMode::Node, None), None);
    assert_eq!(
        pid_ns(cri::NamespaceMode::Target, Some(99)),
        Some(Some("/proc/99/ns/pid".into()))
    );
}

#[test]
fn oom_score_adj_is_clamped_to_the_floor() {
    let mut h = host();
    h.oom_score_adj_floor = Some(0);
    let sb = build_sandbox_on(&sandbox_config(), None, &PodFiles::default(), &h).unwrap();
    assert_eq!(sb.process().as_ref().unwrap().oom_score_adj(), Some(0));
    let mut c = container_config();
    c.linux.as_mut().unwrap().resources = Some(cri::LinuxContainerResources {
        oom_score_adj: -997,
        ..Default::default()
    });
    let spec = build_container_on(
        &c,
        &sandbox_config(),
        &busybox(),
        &PodFiles::default(),
        None,
        &h,
    )
    .unwrap();
    assert_eq!(spec.process().as_ref().unwrap().oom_score_adj(), Some(0));
    c.linux
        .as_mut()
        .unwrap()
        .resources
        .as_mut()
        .unwrap()
        .oom_score_adj = 500;
    let spec = build_container_on(
        &c,
        &sandbox_config(),
        &busybox(),
        &PodFiles::default(),
        None,
        &h,
    )
    .unwrap();
    assert_eq!(spec.process().as_ref().unwrap().oom_score_adj(), Some(500));
}

#[test]
fn runtime_default_profile_gates_syscalls_by_capability() {
    let allowed = |p: &oci_spec::runtime::LinuxSeccomp, name: &str| {
        p.syscalls().iter().flatten().any(|s| {
            s.action() == LinuxSeccompAction::ScmpActAllow
                && s.args().is_none()
                && s.names().iter().any(|n| n == name)
        })
    };
    let base = runtime_default_profile();
    for name in ["read", "getpid", "execve", "clone"] {
        assert!(allowed(&base, name), "{name} should be allowed");
    }
    for name in [
        "mount",
        "unshare",
        "ptrace",
        "keyctl",
        "clone3",
        "bpf",
        "io_uring_setup",
    ] {
        assert!(!allowed(&base, name), "{name} should not be allowed");
    }
    let admin = runtime_default_profile_for(&HashSet::from([Capability::SysAdmin]));
    for name in ["mount", "unshare", "setns", "clone3"] {
        assert!(
            allowed(&admin, name),
            "{name} should be allowed with CAP_SYS_ADMIN"
        );
    }
    assert!(!allowed(&admin, "ptrace"));
    let has_clone3_enosys = |p: &oci_spec::runtime::LinuxSeccomp| {
        p.syscalls()
            .iter()
            .flatten()
            .any(|s| s.names() == &["clone3".to_string()] && s.errno_ret() == Some(38))
    };
    assert!(has_clone3_enosys(&base));
    assert!(!has_clone3_enosys(&admin));
}

#[test]
fn a_localhost_profile_may_be_absolute() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.json");
    std::fs::write(
        &p,
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
    )
    .unwrap();
    let mut c = container_config();
    #[allow(deprecated)]
    {
        sc(&mut c).seccomp_profile_path = format!("localhost/{}", p.display());
    }
    let spec = container(&c);
    let s = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
    assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
}

#[test]
fn canonical_json_is_stable() {
    let c = container_config();
    let a = canonical_json(&container(&c));
    for _ in 0..5 {
        assert_eq!(a, canonical_json(&container(&c)));
    }
}

#[test]
fn probed_host_has_sane_facts() {
    let h = Host::probe();
    assert!(h.bounding.contains(&Capability::Chown), "{:?}", h.bounding);
}

// ---------------------------------------------------------------------------------------------
// Error paths

#[test]
fn mount_host_path_must_be_absolute_and_clean() {
    for bad in ["relative/dir", "/var/lib/../../etc", ""] {
        let mut c = container_config();
        c.mounts = vec![
            cri::Mount {
                container_path: "/ok".into(),
                host_path: "/tmp".into(),
                ..Default::default()
            },
            cri::Mount {
                container_path: "/data".into(),
                host_path: bad.into(),
                ..Default::default()
            },
        ];
        assert_eq!(
            field_of(&container_err(&c), false),
            "mounts[1].host_path",
            "{bad:?}"
        );
    }
}

#[test]
fn mount_container_path_must_be_absolute() {
    let mut c = container_config();
    c.mounts = vec![cri::Mount {
        container_path: "data".into(),
        host_path: "/tmp".into(),
        ..Default::default()
    }];
    assert_eq!(
        field_of(&container_err(&c), false),
        "mounts[0].container_path"
    );
}

#[test]
fn recursive_read_only_needs_readonly_and_private() {
    let mut c = container_config();
    c.mounts = vec![cri::Mount {
        container_path: "/data".into(),
        host_path: "/tmp".into(),
        recursive_read_only: true,
        ..Default::default()
    }];
    assert_eq!(
        field_of(&container_err(&c), false),
        "mounts[0].recursive_read_only"
    );
    c.mounts[0].readonly = true;
    c.mounts[0].propagation = cri::MountPropagation::PropagationHostToContainer as i32;
    let e = container_err(&c);
    assert_eq!(field_of(&e, false), "mounts[0].recursive_read_only");
    assert!(
        e.to_string().contains("PROPAGATION_HOST_TO_CONTAINER"),
        "{e}"
    );
}

#[test]
fn unknown_capability_names_its_index() {
    let mut c = container_config();
    sc(&mut c).capabilities = Some(cri::Capability {
        add_capabilities: vec!["NET_ADMIN".into(), "CAP_FOO".into()],
        ..Default::default()
    });
    let e = container_err(&c);
    assert_eq!(
        e.to_string(),
        "linux.security_context.capabilities.add_capabilities[1]: unknown capability \"CAP_FOO\""
    );
    let mut c = container_config();
    sc(&mut c).capabilities = Some(cri::Capability {
        drop_capabilities: vec!["bogus".into()],
        ..Default::default()
    });
    assert_eq!(
        field_of(&container_err(&c), false),
        "linux.security_context.capabilities.drop_capabilities[0]"
    );
}

#[test]
fn a_capability_outside_the_bounding_set_is_refused() {
    let mut c = container_config();
    sc(&mut c).capabilities = Some(cri::Capability {
        add_capabilities: vec!["SYS_RESOURCE".into()],
        ..Default::default()
    });
    assert_eq!(
        field_of(&container_err(&c), true),
        "linux.security_context.capabilities.add_capabilities[0]"
    );
    // "ALL" quietly means what the host has.
    sc(&mut c).capabilities = Some(cri::Capability {
        add_capabilities: vec!["ALL".into()],
        ..Default::default()
    });
    let spec = container(&c);
    let caps = spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    assert!(!caps
        .bounding()
        .as_ref()
        .unwrap()
        .contains(&Capability::SysResource));
    assert!(caps
        .bounding()
        .as_ref()
        .unwrap()
        .contains(&Capability::SysAdmin));
}

#[test]
fn ambient_all_is_refused() {
    let mut c = container_config();
    sc(&mut c).capabilities = Some(cri::Capability {
        add_ambient_capabilities: vec!["ALL".into()],
        ..Default::default()
    });
    assert_eq!(
        field_of(&container_err(&c), false),
        "linux.security_context.capabilities.add_ambient_capabilities[0]"
    );
}

#[test]
fn device_errors_name_the_field() {
    let dev = |host: &str, dest: &str, perms: &str| cri::Device {
        container_path: dest.into(),
        host_path: host.into(),
        permissions: perms.into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, "x").unwrap();
    let cases = [
        (dev("/dev/null", "/dev/n", "rwx"), "devices[0].permissions"),
        (dev("/dev/null", "/dev/n", ""), "devices[0].permissions"),
        (dev("dev/null", "/dev/n", "rw"), "devices[0].host_path"),
        (dev("/dev/null", "dev/n", "rw"), "devices[0].container_path"),
        (
            dev("/dev/does-not-exist-pea", "/dev/n", "rw"),
            "devices[0].host_path",
        ),
        (
            dev(file.to_str().unwrap(), "/dev/n", "rw"),
            "devices[0].host_path",
        ),
    ];
    for (d, field) in cases {
        let mut c = container_config();
        c.devices = vec![d.clone()];
        assert_eq!(field_of(&container_err(&c), false), field, "{d:?}");
    }
}

#[test]
fn user_errors_name_the_field() {
    let mut c = container_config();
    sc(&mut c).run_as_group = Some(cri::Int64Value { value: 5 });
    assert_eq!(
        field_of(&container_err(&c), false),
        "linux.security_context.run_as_group"
    );

    let mut c = container_config();
    sc(&mut c).run_as_username = "ghost".into();
    let e = container_err(&c);
    assert_eq!(
        field_of(&e, false),
        "linux.security_context.run_as_username"
    );
    assert!(e.to_string().contains("ghost"), "{e}");

    let mut c = container_config();
    sc(&mut c).run_as_username = "app".into();
    sc(&mut c).run_as_user = Some(cri::Int64Value { value: 1 });
    assert_eq!(
        field_of(&container_err(&c), false),
        "linux.security_context.run_as_username"
    );

    let mut c = container_config();
    sc(&mut c).run_as_user = Some(cri::Int64Value { value: -1 });
    assert_eq!(
        field_of(&container_err(&c), false),
        "linux.security_context.run_as_user"
    );

    let mut c = container_config();
    sc(&mut c).supplemental_groups = vec![1, -5];
    assert_eq!(
        field_of(&container_err(&c), false),
        "linux.security_context.supplemental_groups[1]"
    );

    let img = image(serde_json::json!({"User": "app:nogroup-here", "Cmd": ["sh"]}));
    let e = build_container(
        &container_config(),
        &sandbox_config(),
        &img,
        &PodFiles::default(),
    )
    .unwrap_err();
    assert_eq!(field_of(&e, false), "image.config.user");

    let mut sb = sandbox_config();
    sb_sc(&mut sb).run_as_group = Some(cri::Int64Value { value: 5 });
    let e = build_sandbox(&sb, None, &PodFiles::default()).unwrap_err();
    assert_eq!(field_of(&e, false), "linux.security_context.run_as_group");
}

#[test]
fn privileged_container_needs_a_privileged_sandbox() {
    let mut c = container_config();
    sc(&mut c).privileged = true;
    assert_eq!(
        field_of(&container_err(&c), false),
        "linux.security_context.privileged"
    );
}

#[test]
fn seccomp_errors_name_the_field() {
    use cri::security_profile::ProfileType;
    let with = |t: ProfileType, r: &str| {
        let mut c = container_config();
        sc(&mut c).seccomp = Some(cri::SecurityProfile {
            profile_type: t as i32,
            localhost_ref: r.into(),
        });
        container_err(&c)
    };
    let e = with(ProfileType::Localhost, "../../etc/passwd");
    assert_eq!(
        field_of(&e, false),
        "linux.security_context.seccomp.localhost_ref"
    );
    let e = with(
        ProfileType::Localhost,
        "/var/lib/kubelet/seccomp/../../../etc/x",
    );
    assert_eq!(
        field_of(&e, false),
        "linux.security_context.seccomp.localhost_ref"
    );
    let e = with(ProfileType::Localhost, "");
    assert_eq!(
        field_of(&e, false),
        "linux.security_context.seccomp.localhost_ref"
    );
    let e = with(ProfileType::RuntimeDefault, "profile.json");
    assert_eq!(
        field_of(&e, false),
        "linux.security_context.seccomp.localhost_ref"
    );
    match with(ProfileType::Localhost, "missing.json") {
        OciError::Io { path, .. } => assert_eq!(path, seccomp_root().join("missing.json")),
        other => panic!("unexpected {other:?}"),
    }
    // Not a profile.
    let e = with(ProfileType::Localhost, "../rootfs/etc/passwd");
    assert_eq!(
        field_of(&e, false),
        "linux.security_context.seccomp.localhost_ref"
    );

    let mut c = container_config();
    #[allow(deprecated)]
    {
        sc(&mut c).seccomp_profile_path = "bogus/profile".into();
    }
    assert_eq!(
        field_of(&container_err(&c), false),
        "linux.security_context.seccomp_profile_path"
    );
}

#[test]
fn a_file_that_is_not_a_profile_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.json"), "{\"defaultAction\": 7}").unwrap();
    std::fs::write(dir.path().join("text.json"), "not json").unwrap();
    for name in ["bad.json", "text.json"] {
        let mut c = container_config();
        sc(&mut c).seccomp = Some(cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::Localhost as i32,
            localhost_ref: dir.path().join(name).to_string_lossy().into_owned(),
        });
        let e = container_err(&c);
        assert_eq!(
            field_of(&e, false),
            "linux.security_context.seccomp.localhost_ref",
            "{name}"
        );
    }
}

#[test]
fn apparmor_profiles_are_unsupported_here() {
    let mut c = container_config();
    sc(&mut c).apparmor = Some(cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::Localhost as i32,
        localhost_ref: "k8s-apparmor-example".into(),
    });
    assert_eq!(
        field_of(&container_err(&c), true),
        "linux.security_context.apparmor"
    );

    let mut c = container_config();
    #[allow(deprecated)]
    {
        sc(&mut c).apparmor_profile = "localhost/k8s".into();
    }
    assert_eq!(
        field_of(&container_err(&c), true),
        "linux.security_context.apparmor_profile"
    );

    // RuntimeDefault and unconfined are fine.
    let mut c = container_config();
    sc(&mut c).apparmor = Some(cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    container(&c);
}

#[test]
fn sysctl_errors_name_the_key() {
    let with = |key: &str, host_net: bool, host_ipc: bool| {
        let mut sb = sandbox_config();
        sb.linux.as_mut().unwrap().sysctls = HashMap::from([(key.to_string(), "1".to_string())]);
        let ns = sb_sc(&mut sb)
            .namespace_options
            .get_or_insert_with(Default::default);
        if host_net {
            ns.network = cri::NamespaceMode::Node as i32;
        }
        if host_ipc {
            ns.ipc = cri::NamespaceMode::Node as i32;
        }
        build_sandbox(&sb, None, &PodFiles::default())
    };
    let e = with("net.ipv4.ip_forward", true, false).unwrap_err();
    assert_eq!(
        field_of(&e, false),
        "linux.sysctls[\"net.ipv4.ip_forward\"]"
    );
    let e = with("kernel.shmmax", false, true).unwrap_err();
    assert_eq!(field_of(&e, false), "linux.sysctls[\"kernel.shmmax\"]");
    let e = with("vm.swappiness", false, false).unwrap_err();
    assert_eq!(field_of(&e, true), "linux.sysctls[\"vm.swappiness\"]");
    assert!(with("net.ipv4.ip_forward", false, true).is_ok());
    assert!(with("kernel.shmmax", true, false).is_ok());
}

#[test]
fn process_errors_name_the_field() {
    let img = image(serde_json::json!({"Env": ["PATH=/bin"]}));
    let e = build_container(
        &container_config(),
        &sandbox_config(),
        &img,
        &PodFiles::default(),
    )
    .unwrap_err();
    assert_eq!(field_of(&e, false), "command");

    let mut c = container_config();
    c.working_dir = "relative".into();
    assert_eq!(field_of(&container_err(&c), false), "working_dir");

    let mut c = container_config();
    c.envs = vec![
        cri::KeyValue {
            key: "OK".into(),
            value: "1".into(),
        },
        cri::KeyValue {
            key: "A=B".into(),
            value: "1".into(),
        },
    ];
    assert_eq!(field_of(&container_err(&c), false), "envs[1].key");

    let root = rootfs();
    let sroot = seccomp_root();
    let sb = sandbox_config();
    let files = PodFiles::default();
    let e = sandbox_spec_on(
        &SandboxSpecInput {
            id: "sb1",
            config: &sb,
            image: &img,
            rootfs: &root,
            netns: None,
            userns: None,
            cgroups_path: String::new(),
            files: &files,
            seccomp_profile_root: &sroot,
        },
        &host(),
    )
    .unwrap_err();
    assert_eq!(field_of(&e, false), "image.config");
}

#[test]
fn target_pid_mode_needs_the_target() {
    let mut c = container_config();
    let ns = sc(&mut c)
        .namespace_options
        .get_or_insert_with(Default::default);
    ns.pid = cri::NamespaceMode::Target as i32;
    ns.target_id = "abc".into();
    let e = container_err(&c);
    assert_eq!(
        field_of(&e, false),
        "linux.security_context.namespace_options.target_id"
    );
}

#[test]
fn resource_errors_name_the_field() {
    let with = |f: &dyn Fn(&mut cri::LinuxContainerResources)| {
        let mut r = cri::LinuxContainerResources::default();
        f(&mut r);
        let mut c = container_config();
        c.linux.as_mut().unwrap().resources = Some(r);
        field_of(&container_err(&c), false)
    };
    assert_eq!(with(&|r| r.cpu_period = -1), "linux.resources.cpu_period");
    assert_eq!(with(&|r| r.cpu_quota = -5), "linux.resources.cpu_quota");
    assert_eq!(with(&|r| r.cpu_shares = -2), "linux.resources.cpu_shares");
    assert_eq!(
        with(&|r| r.memory_limit_in_bytes = -1),
        "linux.resources.memory_limit_in_bytes"
    );
    assert_eq!(
        with(&|r| {
            r.memory_limit_in_bytes = 1000;
            r.memory_swap_limit_in_bytes = 10;
        }),
        "linux.resources.memory_swap_limit_in_bytes"
    );
    assert_eq!(
        with(&|r| r.oom_score_adj = 1001),
        "linux.resources.oom_score_adj"
    );
    assert_eq!(
        with(&|r| {
            r.hugepage_limits = vec![cri::HugepageLimit {
                page_size: "2M".into(),
                limit: 1,
            }]
        }),
        "linux.resources.hugepage_limits[0].page_size"
    );
    assert_eq!(
        with(&|r| r.unified = HashMap::from([("../x".into(), "1".into())])),
        "linux.resources.unified[\"../x\"]"
    );
}

#[test]
fn a_user_namespace_pod_joins_its_namespace_by_path_with_the_mapping() {
    let mut sb = sandbox_config();
    let range = |host_id| cri::IdMapping {
        host_id,
        container_id: 0,
        length: 65_536,
    };
    sb.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .userns_options = Some(cri::UserNamespace {
        mode: cri::NamespaceMode::Pod as i32,
        uids: vec![range(131_072)],
        gids: vec![range(196_608)],
    });
    let user_ns = |spec: &Spec| {
        let linux = spec.linux().as_ref().unwrap();
        let ns = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::User)
            .map(|n| n.path().clone());
        let maps = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
            m.as_ref()
                .unwrap()
                .iter()
                .map(|m| (m.container_id(), m.host_id(), m.size()))
                .collect::<Vec<_>>()
        };
        (ns, maps(linux.uid_mappings()), maps(linux.gid_mappings()))
    };
    let pinned = Path::new("/run/netns/sb1");
    let pause = build_sandbox(&sb, Some(pinned), &PodFiles::default()).unwrap();
    assert_eq!(
        user_ns(&pause),
        (
            Some(Some(PathBuf::from("/run/pea/shim/userns/sb1"))),
            vec![(0, 131_072, 65_536)],
            vec![(0, 196_608, 65_536)]
        )
    );
    let c = build_container(&container_config(), &sb, &busybox(), &PodFiles::default()).unwrap();
    assert_eq!(
        user_ns(&c),
        (
            Some(Some(PathBuf::from("/proc/4242/ns/user"))),
            vec![(0, 131_072, 65_536)],
            vec![(0, 196_608, 65_536)]
        )
    );
    // Without userns_options: no user namespace, no mappings.
    let plain = build_container(
        &container_config(),
        &sandbox_config(),
        &busybox(),
        &PodFiles::default(),
    )
    .unwrap();
    let linux = plain.linux().as_ref().unwrap();
    assert!(linux.uid_mappings().is_none());
    assert!(!linux
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User));
}

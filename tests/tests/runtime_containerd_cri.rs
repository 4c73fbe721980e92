//! containerd 1.6's own CRI plugin driving pea-runtime as its runc binary: a RuntimeDefault pod
//! container that leaves allowPrivilegeEscalation unset (so containerd asks for
//! noNewPrivileges false) runs with containerd's default seccomp profile in force and
//! no_new_privs off — the config pea-runtime used to refuse.

use std::time::Duration;

use k8s_cri::v1 as cri;
use pea_tests::containerd_cri::{Containerd, Images};
use pea_tests::cri_client::connect;
use pea_tests::privileged::require_root;
use pea_tests::runtime_cli::pea_runtime_binary;
use pea_tests::shim_node::container_pid;

#[test]
fn containerd_cri_runs_a_runtime_default_container_through_pea_runtime() {
    require_root();
    let images = Images::build().unwrap();
    let ctd = Containerd::start(&images, Some(&pea_runtime_binary())).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = rt.block_on(async {
        let mut c = connect(&ctd.socket).await?;
        c.images
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: ctd.spec.busybox.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?;
        let logs = ctd.spec.logs.join("rtdefault");
        std::fs::create_dir_all(&logs)?;
        let pod = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "rtdefault".into(),
                uid: "rtdefault-uid".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            log_directory: logs.display().to_string(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!("/{}/rtdefault", ctd.spec.cgroup_root),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(container_pid()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod_id = tokio::time::timeout(
            Duration::from_secs(120),
            c.runtime.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod.clone()),
                runtime_handler: String::new(),
            }),
        )
        .await??
        .into_inner()
        .pod_sandbox_id;
        let ctr = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: ctd.spec.busybox.clone(),
                ..Default::default()
            }),
            command: vec!["/bin/sh".into(), "-c".into(), "exec sleep 3600".into()],
            log_path: "c/0.log".into(),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(container_pid()),
                    seccomp: Some(cri::SecurityProfile {
                        profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                        localhost_ref: String::new(),
                    }),
                    // allowPrivilegeEscalation unset: the kubelet sends no_new_privs false.
                    no_new_privs: false,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = c
            .runtime
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod_id.clone(),
                config: Some(ctr),
                sandbox_config: Some(pod),
            })
            .await?
            .into_inner()
            .container_id;
        c.runtime
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await?;
        let out = c
            .runtime
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.clone(),
                cmd: vec![
                    "grep".into(),
                    "-E".into(),
                    "^(Seccomp|NoNewPrivs):".into(),
                    "/proc/self/status".into(),
                ],
                timeout: 30,
            })
            .await?
            .into_inner();
        let status = String::from_utf8_lossy(&out.stdout).to_string();
        // pea-runtime's own record in the runtime root proves which runtime containerd drove.
        let record = ctd.runtime_root().join("k8s.io").join(&id).join("pea.json");
        let driven_by_pea = record.exists();
        c.runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod_id.clone(),
            })
            .await?;
        c.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod_id,
            })
            .await?;
        anyhow::Ok((status, driven_by_pea, record))
    });
    let log = ctd.log_tail();
    let (status, driven_by_pea, record) =
        outcome.unwrap_or_else(|e| panic!("{e:#}\ncontainerd log:\n{log}"));
    assert!(
        driven_by_pea,
        "{} missing: containerd did not use pea-runtime",
        record.display()
    );
    assert!(
        status.contains("Seccomp:\t2"),
        "filter not in force: {status}"
    );
    assert!(
        status.contains("NoNewPrivs:\t0"),
        "no_new_privs was set: {status}"
    );
}

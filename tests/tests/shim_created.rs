//! Created-but-not-started containers: CreateContainer makes only the rootfs, the bundle and the
//! record (no pea-monitor, no runtime state, as containerd's CRI plugin defers the task to
//! StartContainer), and every RPC copes with a container that has no process: status, list
//! filters, exec/attach refused, stop a no-op, resources stored and applied at start, remove
//! leaving nothing, pod stop/remove, a failed start marked Exited/StartError, a second start
//! refused, and a restarted shim knowing them.

use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use pea_tests::cri_client::Cri;
use pea_tests::shim_node::ShimNode;
use tonic::Code;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn run_pod(c: &mut Cri, config: &cri::PodSandboxConfig) -> String {
    c.runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id
}

async fn create(
    c: &mut Cri,
    pod: &str,
    pod_config: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> String {
    c.runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id
}

async fn start(c: &mut Cri, id: &str) -> Result<(), tonic::Status> {
    c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: id.into(),
        })
        .await
        .map(|_| ())
}

/// The status and the verbose info's JSON.
async fn status(c: &mut Cri, id: &str) -> (cri::ContainerStatus, serde_json::Value) {
    let r = c
        .runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info = serde_json::from_str(&r.info["info"]).unwrap();
    (r.status.unwrap(), info)
}

async fn ids_in_state(c: &mut Cri, state: cri::ContainerState) -> Vec<String> {
    c.runtime
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                state: Some(cri::ContainerStateValue {
                    state: state as i32,
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// Processes whose command line names container `id` (its pea-monitor, a runtime call).
fn processes_of(id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if e.file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            .is_none()
        {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(id) {
            out.push(cmd);
        }
    }
    out
}

const CREATED: cri::ContainerState = cri::ContainerState::ContainerCreated;
const RUNNING: cri::ContainerState = cri::ContainerState::ContainerRunning;
const EXITED: cri::ContainerState = cri::ContainerState::ContainerExited;

#[test]
fn a_created_container_has_no_process_and_every_rpc_copes_with_that() {
    let mut node = ShimNode::new().unwrap();
    node.start_shim().unwrap();
    rt().block_on(async {
        let mut c = node.cri().await.unwrap();
        node.pull(&mut c, &node.busybox).await.unwrap();
        let pod_config = node.pod("created");
        let pod = run_pod(&mut c, &pod_config).await;
        let a = create(
            &mut c,
            &pod,
            &pod_config,
            node.container("a", "exec sleep 3600"),
        )
        .await;

        // Status: CREATED, no pid, no start time; nothing runs for it, the runtime has no state.
        let (s, info) = status(&mut c, &a).await;
        assert_eq!(s.state, CREATED as i32);
        assert_eq!((s.started_at, s.finished_at, s.exit_code), (0, 0, 0));
        assert!(s.created_at > 0);
        assert!(
            info["pid"].is_null() && info["monitorPid"].is_null(),
            "{info}"
        );
        assert_eq!(processes_of(&a), Vec::<String>::new());
        assert!(!node.path("runtime").join(&a).exists());
        assert!(node
            .path("state/bundles")
            .join(&a)
            .join("config.json")
            .exists());

        // ListContainers' state filter.
        assert_eq!(ids_in_state(&mut c, CREATED).await, vec![a.clone()]);
        assert_eq!(ids_in_state(&mut c, RUNNING).await, Vec::<String>::new());

        // ExecSync, Exec, Attach, ReopenContainerLog: the container is not running.
        let e = c
            .runtime
            .exec_sync(cri::ExecSyncRequest {
                container_id: a.clone(),
                cmd: vec!["true".into()],
                timeout: 5,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("not running"), "{e:?}");
        let e = c
            .runtime
            .exec(cri::ExecRequest {
                container_id: a.clone(),
                cmd: vec!["true".into()],
                stdout: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(e.message().contains("not running"), "{e:?}");
        let e = c
            .runtime
            .attach(cri::AttachRequest {
                container_id: a.clone(),
                stdout: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(e.message().contains("not running"), "{e:?}");
        let e = c
            .runtime
            .reopen_container_log(cri::ReopenContainerLogRequest {
                container_id: a.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

        // Stats of a container without a cgroup yet answer (no CPU or memory figures).
        c.runtime
            .container_stats(cri::ContainerStatsRequest {
                container_id: a.clone(),
            })
            .await
            .unwrap();

        // StopContainer: nothing to stop, success, still Created (containerd does the same).
        c.runtime
            .stop_container(cri::StopContainerRequest {
                container_id: a.clone(),
                timeout: 5,
            })
            .await
            .unwrap();
        assert_eq!(status(&mut c, &a).await.0.state, CREATED as i32);

        // UpdateContainerResources: stored, reported, and applied when it starts.
        let limit = 96 << 20;
        c.runtime
            .update_container_resources(cri::UpdateContainerResourcesRequest {
                container_id: a.clone(),
                linux: Some(cri::LinuxContainerResources {
                    memory_limit_in_bytes: limit,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        let (s, _) = status(&mut c, &a).await;
        let reported = s.resources.and_then(|r| r.linux).unwrap();
        assert_eq!(reported.memory_limit_in_bytes, limit);
        start(&mut c, &a).await.unwrap();
        let (s, info) = status(&mut c, &a).await;
        assert_eq!(s.state, RUNNING as i32);
        assert!(s.started_at >= s.created_at);
        let pid = info["pid"].as_i64().unwrap();
        assert!(info["monitorPid"].as_i64().is_some(), "{info}");
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let mem = cgroups
            .lines()
            .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
            .expect("a v1 memory cgroup");
        let applied =
            std::fs::read_to_string(format!("/sys/fs/cgroup/memory{mem}/memory.limit_in_bytes"))
                .unwrap();
        assert_eq!(applied.trim(), limit.to_string());

        // A second start is an error and changes nothing.
        let e = start(&mut c, &a).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert_eq!(status(&mut c, &a).await.0.state, RUNNING as i32);

        // RemoveContainer of a Created one: bundle, rootfs, layer and record gone.
        let b = create(
            &mut c,
            &pod,
            &pod_config,
            node.container("b", "exec sleep 3600"),
        )
        .await;
        c.runtime
            .remove_container(cri::RemoveContainerRequest {
                container_id: b.clone(),
            })
            .await
            .unwrap();
        let e = c
            .runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: b.clone(),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        assert!(!node.path("state/bundles").join(&b).exists());
        assert!(!node.path("root/containers").join(&b).exists());
        assert!(!node
            .path("state/containers")
            .join(format!("{b}.json"))
            .exists());

        // A pod stopped and removed with a Created container in it (the running one first, at
        // once: as its PID 1, sleep ignores SIGTERM and would take the pod's grace).
        c.runtime
            .stop_container(cri::StopContainerRequest {
                container_id: a.clone(),
                timeout: 0,
            })
            .await
            .unwrap();
        let d = create(
            &mut c,
            &pod,
            &pod_config,
            node.container("d", "exec sleep 3600"),
        )
        .await;
        c.runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .unwrap();
        assert_eq!(status(&mut c, &d).await.0.state, CREATED as i32);
        assert_eq!(status(&mut c, &a).await.0.state, EXITED as i32);
        // Starting it in a stopped pod fails, as in containerd, and marks it Exited.
        let e = start(&mut c, &d).await.unwrap_err();
        assert!(e.message().contains("not ready"), "{e:?}");
        let (s, _) = status(&mut c, &d).await;
        assert_eq!(
            (s.state, s.exit_code, s.reason.as_str()),
            (EXITED as i32, 128, "StartError")
        );
        c.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .unwrap();
        assert_eq!(node.leftovers(), Vec::<String>::new());
    });
    node.teardown().unwrap();
    assert_eq!(node.leftovers(), Vec::<String>::new());
}

#[test]
fn a_failed_start_leaves_the_container_exited_with_start_error_and_nothing_running() {
    let mut node = ShimNode::new().unwrap();
    node.start_shim().unwrap();
    rt().block_on(async {
        let mut c = node.cri().await.unwrap();
        node.pull(&mut c, &node.busybox).await.unwrap();
        let pod_config = node.pod("failing");
        let pod = run_pod(&mut c, &pod_config).await;
        let before = node.leftovers();
        let mut bad = node.container("bad", "true");
        bad.command = vec!["/no/such/program".into()];
        let id = create(&mut c, &pod, &pod_config, bad).await;
        let e = start(&mut c, &id).await.unwrap_err();
        assert!(e.message().contains("/no/such/program"), "{e:?}");
        let (s, info) = status(&mut c, &id).await;
        assert_eq!(
            (s.state, s.exit_code, s.reason.as_str()),
            (EXITED as i32, 128, "StartError")
        );
        assert!(s.message.contains("/no/such/program"), "{s:?}");
        assert!(s.finished_at > 0);
        assert!(info["pid"].is_null(), "{info}");
        // No monitor, no runtime state, no cgroup left by the failed start.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !processes_of(&id).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(processes_of(&id), Vec::<String>::new());
        assert!(!node.path("runtime").join(&id).exists());
        assert!(
            !node.cgroups().iter().any(|g| g.ends_with(&id)),
            "{:?}",
            node.cgroups()
        );
        // Started again: refused, it is no longer Created.
        let e = start(&mut c, &id).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        c.runtime
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
        assert_eq!(node.leftovers(), before);
    });
    node.teardown().unwrap();
    assert_eq!(node.leftovers(), Vec::<String>::new());
}

#[test]
fn a_restarted_shim_knows_created_containers_and_starts_them() {
    let mut node = ShimNode::new().unwrap();
    node.start_shim().unwrap();
    let (pod, id) = rt().block_on(async {
        let mut c = node.cri().await.unwrap();
        node.pull(&mut c, &node.busybox).await.unwrap();
        let pod_config = node.pod("restart");
        let pod = run_pod(&mut c, &pod_config).await;
        let id = create(
            &mut c,
            &pod,
            &pod_config,
            node.container("c", "echo started; exec sleep 3600"),
        )
        .await;
        (pod, id)
    });
    node.kill_shim();
    node.start_shim().unwrap();
    rt().block_on(async {
        let mut c = node.cri().await.unwrap();
        let (s, info) = status(&mut c, &id).await;
        assert_eq!(s.state, CREATED as i32);
        assert!(info["pid"].is_null(), "{info}");
        assert_eq!(ids_in_state(&mut c, CREATED).await, vec![id.clone()]);
        start(&mut c, &id).await.unwrap();
        assert_eq!(status(&mut c, &id).await.0.state, RUNNING as i32);
        let r = c
            .runtime
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.clone(),
                cmd: vec!["echo".into(), "inside".into()],
                timeout: 10,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "inside");
        c.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .unwrap();
    });
    node.teardown().unwrap();
    assert_eq!(node.leftovers(), Vec::<String>::new());
}

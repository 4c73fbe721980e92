//! pea-shim through a real CRI client (k8s-cri's generated client over the unix socket), on a
//! node the test builds in a network namespace, pulling from a real registry on that node:
//! runtime info, images, pod sandboxes with CNI, containers with logs and exec, idempotence,
//! bad input leaving nothing behind, and containers outliving a killed shim.

use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use pea_tests::cri_client::Cri;
use pea_tests::shim_node::{ShimNode, POD_SUBNET};
use tonic::Code;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn pull(c: &mut Cri, image: &str) -> String {
    c.images
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        })
        .await
        .unwrap()
        .into_inner()
        .image_ref
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
) -> Result<String, tonic::Status> {
    c.runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
        .map(|r| r.into_inner().container_id)
}

async fn start(c: &mut Cri, id: &str) {
    c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: id.into(),
        })
        .await
        .unwrap();
}

async fn status(c: &mut Cri, id: &str) -> cri::ContainerStatus {
    c.runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
}

async fn exec(c: &mut Cri, id: &str, cmd: &[&str]) -> cri::ExecSyncResponse {
    c.runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn wait_exited(c: &mut Cri, id: &str) -> cri::ContainerStatus {
    let start = Instant::now();
    loop {
        let s = status(c, id).await;
        if s.state == cri::ContainerState::ContainerExited as i32 {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "container {id} never exited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn out(r: &cri::ExecSyncResponse) -> String {
    String::from_utf8_lossy(&r.stdout).trim().to_string()
}

#[test]
fn runtime_and_network_status_version_and_images() {
    let mut node = ShimNode::new().unwrap();
    node.start_shim().unwrap();
    rt().block_on(async {
        let mut c = node.cri().await.unwrap();
        let v = c
            .runtime
            .version(cri::VersionRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (v.runtime_name.as_str(), v.runtime_api_version.as_str()),
            ("pea", "v1")
        );
        let s = c
            .runtime
            .status(cri::StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
        let conds = s.status.unwrap().conditions;
        assert!(conds.iter().all(|c| c.status), "{conds:?}");
        let rc = c
            .runtime
            .runtime_config(cri::RuntimeConfigRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            rc.linux.unwrap().cgroup_driver,
            cri::CgroupDriver::Cgroupfs as i32
        );

        // Images: pull by tag, status by tag/id/digest, list, remove all names, idempotent.
        let absent = c
            .images
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: node.busybox.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(absent.image.is_none());
        let id = pull(&mut c, &node.busybox).await;
        assert!(id.starts_with("sha256:"), "{id}");
        for key in [node.busybox.clone(), id.clone()] {
            let img = c
                .images
                .image_status(cri::ImageStatusRequest {
                    image: Some(cri::ImageSpec {
                        image: key.clone(),
                        ..Default::default()
                    }),
                    verbose: true,
                })
                .await
                .unwrap()
                .into_inner();
            let img_ = img.image.unwrap_or_else(|| panic!("no image for {key}"));
            assert_eq!(img_.id, id);
            assert!(
                img_.repo_tags.contains(&node.busybox),
                "{:?}",
                img_.repo_tags
            );
            assert!(img_.repo_digests.iter().any(|d| d.contains("@sha256:")));
            assert!(img_.size > 0);
            // the digest form finds it too
            let by_digest = img_.repo_digests[0].clone();
            let again = c
                .images
                .image_status(cri::ImageStatusRequest {
                    image: Some(cri::ImageSpec {
                        image: by_digest,
                        ..Default::default()
                    }),
                    verbose: false,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(again.image.unwrap().id, id);
        }
        let list = c
            .images
            .list_images(cri::ListImagesRequest { filter: None })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.images.len(), 1);
        let fs = c
            .images
            .image_fs_info(cri::ImageFsInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(fs.image_filesystems[0].used_bytes.as_ref().unwrap().value > 0);
        let missing = c
            .images
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: format!("{}/library/nope:v1", node.registry.host()),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
        for _ in 0..2 {
            c.images
                .remove_image(cri::RemoveImageRequest {
                    image: Some(cri::ImageSpec {
                        image: id.clone(),
                        ..Default::default()
                    }),
                })
                .await
                .unwrap();
        }
        let list = c
            .images
            .list_images(cri::ListImagesRequest { filter: None })
            .await
            .unwrap()
            .into_inner();
        assert!(list.images.is_empty());
    });
    std::fs::remove_file(node.path("net.d/10-pea.conflist")).unwrap();
    rt().block_on(async {
        let mut c = node.cri().await.unwrap();
        let s = c
            .runtime
            .status(cri::StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
        let net = s
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.r#type == "NetworkReady")
            .unwrap();
        assert!(!net.status);
        assert_eq!(net.reason, "NetworkPluginNotReady");
    });
}

#[test]
fn a_pod_with_two_containers_logs_execs_stops_and_leaves_nothing() {
    let mut node = ShimNode::new().unwrap();
    node.start_shim().unwrap();
    rt().block_on(async {
        let mut c = node.cri().await.unwrap();
        pull(&mut c, &node.busybox).await;
        let pod_config = node.pod("web");
        let pod = run_pod(&mut c, &pod_config).await;
        let ps = c
            .runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(ps.state, cri::PodSandboxState::SandboxReady as i32);
        let ip = ps.network.unwrap().ip;
        let subnet: ipnet::Ipv4Net = POD_SUBNET.parse().unwrap();
        assert!(
            subnet.contains(&ip.parse::<std::net::Ipv4Addr>().unwrap()),
            "{ip}"
        );

        let a = create(
            &mut c,
            &pod,
            &pod_config,
            node.container("a", "echo hello-out; echo hello-err >&2; exec sleep 3600"),
        )
        .await
        .unwrap();
        let b = create(
            &mut c,
            &pod,
            &pod_config,
            node.container("b", "exec sleep 3600"),
        )
        .await
        .unwrap();
        assert_eq!(
            status(&mut c, &a).await.state,
            cri::ContainerState::ContainerCreated as i32
        );
        start(&mut c, &a).await;
        start(&mut c, &b).await;
        let s = status(&mut c, &a).await;
        assert_eq!(s.state, cri::ContainerState::ContainerRunning as i32);
        assert!(s.started_at > 0);

        // Shared NET, IPC and UTS; own PID and mount namespaces.
        let ns = |r: &cri::ExecSyncResponse| out(r);
        for kind in ["net", "ipc", "uts"] {
            let x = exec(&mut c, &a, &["readlink", &format!("/proc/self/ns/{kind}")]).await;
            let y = exec(&mut c, &b, &["readlink", &format!("/proc/self/ns/{kind}")]).await;
            assert_eq!(ns(&x), ns(&y), "{kind} not shared");
        }
        for kind in ["pid", "mnt"] {
            let x = exec(&mut c, &a, &["readlink", &format!("/proc/self/ns/{kind}")]).await;
            let y = exec(&mut c, &b, &["readlink", &format!("/proc/self/ns/{kind}")]).await;
            assert_ne!(ns(&x), ns(&y), "{kind} shared");
        }
        assert_eq!(out(&exec(&mut c, &a, &["hostname"]).await), "web");
        let resolv = out(&exec(&mut c, &a, &["cat", "/etc/resolv.conf"]).await);
        assert!(
            resolv.contains("nameserver 10.96.0.10") && resolv.contains("ndots:5"),
            "{resolv}"
        );
        let addr = out(&exec(&mut c, &b, &["ip", "-4", "-o", "addr", "show", "eth0"]).await);
        assert!(addr.contains(&ip), "{addr}");
        let r = exec(&mut c, &a, &["sh", "-c", "echo to-err >&2; exit 7"]).await;
        assert_eq!(
            (r.exit_code, String::from_utf8_lossy(&r.stderr).trim()),
            (7, "to-err")
        );

        // The CRI log: "<time> stdout|stderr F <line>".
        let log_path = s.log_path.clone();
        let start_t = Instant::now();
        let log = loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if log.lines().count() >= 2 || start_t.elapsed() > Duration::from_secs(10) {
                break log;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            log.lines().any(|l| l.ends_with(" stdout F hello-out")),
            "{log}"
        );
        assert!(
            log.lines().any(|l| l.ends_with(" stderr F hello-err")),
            "{log}"
        );

        let listed = c
            .runtime
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    pod_sandbox_id: pod.clone(),
                    state: Some(cri::ContainerStateValue {
                        state: cri::ContainerState::ContainerRunning as i32,
                    }),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(listed.len(), 2);

        // Stop: SIGTERM is ignored by sleep as PID 1, so SIGKILL after the timeout: 137.
        c.runtime
            .stop_container(cri::StopContainerRequest {
                container_id: a.clone(),
                timeout: 1,
            })
            .await
            .unwrap();
        let s = status(&mut c, &a).await;
        assert_eq!(s.state, cri::ContainerState::ContainerExited as i32);
        assert_eq!((s.exit_code, s.reason.as_str()), (137, "Error"));
        // Idempotent stop and remove; unknown ids are fine too.
        for id in [a.clone(), "0123456789abcdef".into()] {
            c.runtime
                .stop_container(cri::StopContainerRequest {
                    container_id: id.clone(),
                    timeout: 0,
                })
                .await
                .unwrap();
        }
        c.runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .unwrap();
        let s = status(&mut c, &b).await;
        assert_eq!(s.state, cri::ContainerState::ContainerExited as i32);
        for _ in 0..2 {
            c.runtime
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: pod.clone(),
                })
                .await
                .unwrap();
        }
        let e = c
            .runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: a.clone(),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    });
    node.teardown().unwrap();
    assert_eq!(node.leftovers(), Vec::<String>::new());
}

#[test]
fn exit_codes_names_reserved_and_bad_input_leave_nothing_behind() {
    let mut node = ShimNode::new().unwrap();
    node.start_shim().unwrap();
    rt().block_on(async {
        let mut c = node.cri().await.unwrap();
        pull(&mut c, &node.busybox).await;
        let pod_config = node.pod("jobs");
        let pod = run_pod(&mut c, &pod_config).await;

        // A second sandbox with the same metadata: the name is reserved.
        let e = c
            .runtime
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod_config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");

        let done = create(&mut c, &pod, &pod_config, node.container("done", "exit 3"))
            .await
            .unwrap();
        start(&mut c, &done).await;
        let s = wait_exited(&mut c, &done).await;
        assert_eq!((s.exit_code, s.reason.as_str()), (3, "Error"));
        assert!(s.finished_at >= s.started_at);
        let e = create(&mut c, &pod, &pod_config, node.container("done", "true"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists);

        // Hostile log path, unknown image, unknown sandbox: clear errors, nothing made.
        let before = node.leftovers();
        let mut bad = node.container("evil", "true");
        bad.log_path = "../../../../etc/evil.log".into();
        let e = create(&mut c, &pod, &pod_config, bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("log_path"), "{e:?}");
        let mut bad = node.container("noimage", "true");
        bad.image = Some(cri::ImageSpec {
            image: format!("{}/library/absent:v9", node.registry.host()),
            ..Default::default()
        });
        let e = create(&mut c, &pod, &pod_config, bad).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        let e = create(
            &mut c,
            "ffffffffffff",
            &pod_config,
            node.container("x", "true"),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let mut bad_pod = node.pod("bad");
        bad_pod.linux.as_mut().unwrap().cgroup_parent = "/../../escape".into();
        let e = c
            .runtime
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(bad_pod),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);

        // User namespaces: malformed mappings are InvalidArgument naming what is wrong (the
        // working case is shim_userns.rs); mounts asking for their own idmapping are refused
        // rather than mounted without it.
        let userns = |uids: Vec<cri::IdMapping>| {
            let mut p = node.pod("userns");
            let ns = p
                .linux
                .as_mut()
                .unwrap()
                .security_context
                .as_mut()
                .unwrap()
                .namespace_options
                .as_mut()
                .unwrap();
            ns.userns_options = Some(cri::UserNamespace {
                mode: cri::NamespaceMode::Pod as i32,
                gids: uids.clone(),
                uids,
            });
            p
        };
        let range = |host_id, length| cri::IdMapping {
            host_id,
            container_id: 0,
            length,
        };
        for (uids, needle) in [
            (vec![range(0, 65_536)], "host_id 0"),
            (vec![range(131_072, 1000)], "length 1000"),
            (
                vec![range(131_072, 65_536), range(150_000, 10)],
                "ranges overlap",
            ),
            (vec![], "needs a mapping"),
        ] {
            let e = c
                .runtime
                .run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(userns(uids)),
                    runtime_handler: String::new(),
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
            assert!(e.message().contains("userns_options"), "{e:?}");
            assert!(e.message().contains(needle), "{needle:?}: {e:?}");
        }
        let mut idmapped = node.container("idmapped", "true");
        idmapped.mounts.push(cri::Mount {
            container_path: "/data".into(),
            host_path: node.path("logs").display().to_string(),
            uid_mappings: vec![range(131_072, 65_536)],
            gid_mappings: vec![range(131_072, 65_536)],
            ..Default::default()
        });
        let e = create(&mut c, &pod, &pod_config, idmapped)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("mounts[0].uid_mappings"), "{e:?}");

        // CheckpointContainer: Unimplemented with what `criu check` says on this host now.
        let e = c
            .runtime
            .checkpoint_container(cri::CheckpointContainerRequest {
                container_id: done.clone(),
                location: node.path("checkpoint.tar").display().to_string(),
                timeout: 10,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
        match std::process::Command::new("criu").arg("check").output() {
            Err(_) => assert!(e.message().contains("not installed"), "{e:?}"),
            Ok(o) if o.status.success() => assert!(e.message().contains("passes"), "{e:?}"),
            Ok(o) => {
                let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
                let first = stderr.lines().next().unwrap_or_default().trim().to_string();
                assert!(e.message().contains("`criu check` failed"), "{e:?}");
                assert!(e.message().contains(&first), "{first:?} not in {e:?}");
            }
        }
        assert!(!node.path("checkpoint.tar").exists());
        let e = c
            .runtime
            .checkpoint_container(cri::CheckpointContainerRequest {
                container_id: "ffffffffffff".into(),
                location: node.path("checkpoint.tar").display().to_string(),
                timeout: 10,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        assert_eq!(node.leftovers(), before);
    });
    node.teardown().unwrap();
    assert_eq!(node.leftovers(), Vec::<String>::new());
}

#[test]
fn containers_outlive_a_killed_shim_and_a_restarted_one_knows_them() {
    let mut node = ShimNode::new().unwrap();
    node.start_shim().unwrap();
    let (pod, id, log_path) = rt().block_on(async {
        let mut c = node.cri().await.unwrap();
        pull(&mut c, &node.busybox).await;
        let pod_config = node.pod("durable");
        let pod = run_pod(&mut c, &pod_config).await;
        let id = create(
            &mut c,
            &pod,
            &pod_config,
            node.container(
                "ticker",
                "i=0; while [ $i -lt 40 ]; do echo tick-$i; i=$((i+1)); sleep 0.1; done; exit 5",
            ),
        )
        .await
        .unwrap();
        start(&mut c, &id).await;
        let log = status(&mut c, &id).await.log_path;
        (pod, id, log)
    });
    node.kill_shim();
    // The container keeps running and logging with no shim at all.
    std::thread::sleep(Duration::from_millis(1500));
    let lines_then = std::fs::read_to_string(&log_path).unwrap().lines().count();
    assert!(lines_then >= 5, "{lines_then} lines");
    node.start_shim().unwrap();
    rt().block_on(async {
        let mut c = node.cri().await.unwrap();
        let pods = c
            .runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].id, pod);
        assert_eq!(pods[0].state, cri::PodSandboxState::SandboxReady as i32);
        let s = wait_exited(&mut c, &id).await;
        assert_eq!(s.exit_code, 5);
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(log.contains("stdout F tick-39"), "{log}");
    });
    node.teardown().unwrap();
    assert_eq!(node.leftovers(), Vec::<String>::new());
}

#[test]
fn a_container_whose_monitor_was_killed_is_reported_exited_unknown_not_running_forever() {
    let mut node = ShimNode::new().unwrap();
    node.start_shim().unwrap();
    rt().block_on(async {
        let mut c = node.cri().await.unwrap();
        pull(&mut c, &node.busybox).await;
        let pod_config = node.pod("orphan");
        let pod = run_pod(&mut c, &pod_config).await;
        let id = create(
            &mut c,
            &pod,
            &pod_config,
            node.container("c", "exec sleep 3600"),
        )
        .await
        .unwrap();
        start(&mut c, &id).await;
        let info = c
            .runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner()
            .info;
        let v: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
        let (pid, monitor) = (
            v["pid"].as_i64().unwrap(),
            v["monitorPid"].as_i64().unwrap(),
        );
        for p in [monitor, pid] {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
        }
        let start_t = Instant::now();
        let s = loop {
            let s = status(&mut c, &id).await;
            if s.state == cri::ContainerState::ContainerExited as i32 {
                break s;
            }
            assert!(
                start_t.elapsed() < Duration::from_secs(20),
                "still {:?}",
                s.state
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!((s.exit_code, s.reason.as_str()), (255, "Unknown"));
    });
    node.teardown().unwrap();
    assert_eq!(node.leftovers(), Vec::<String>::new());
}

/// A net.* sysctl may name the interface CNI makes (the runtime writes it inside the pod's
/// namespace): it is there for the pod's containers. pea-shim runs CNI ADD first for such a pod
/// (otherwise beside the pause container's setup); this checks the result, not the order: with
/// the two overlapped it passed too here (two runs), the runtime being slower than CNI.
#[test]
fn a_net_sysctl_of_the_cni_interface_is_applied_after_cni_made_it() {
    let mut node = ShimNode::new().unwrap();
    node.start_shim().unwrap();
    rt().block_on(async {
        let mut c = node.cri().await.unwrap();
        pull(&mut c, &node.busybox).await;
        let mut pod_config = node.pod("sysctl");
        pod_config
            .linux
            .get_or_insert_with(Default::default)
            .sysctls
            .insert("net.ipv4.conf.eth0.arp_ignore".into(), "2".into());
        let pod = run_pod(&mut c, &pod_config).await;
        let a = create(
            &mut c,
            &pod,
            &pod_config,
            node.container("a", "exec sleep 3600"),
        )
        .await
        .unwrap();
        start(&mut c, &a).await;
        let r = exec(
            &mut c,
            &a,
            &["cat", "/proc/sys/net/ipv4/conf/eth0/arp_ignore"],
        )
        .await;
        assert_eq!(out(&r).trim(), "2", "{r:?}");
        c.runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .unwrap();
        c.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            })
            .await
            .unwrap();
    });
    node.teardown().unwrap();
    assert_eq!(node.leftovers(), Vec::<String>::new());
}

//! pea-shim's user-namespace pods (`hostUsers: false`: userns_options mode POD with the
//! kubelet's one 65536-id range) with the real k8s-cri client: the pod's processes are root
//! inside and an unprivileged range outside; the image's files are the pod root's (idmapped
//! layers); a volume file the pod writes belongs to the mapped host uid; host-root-only files
//! and device nodes stay out of reach; exec joins the namespace; nothing is left after removal.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use k8s_cri::v1 as cri;
use pea_tests::shim_node::ShimNode;

/// 37 × 65536: a range the kubelet's allocator could hand out (multiples of 65536 above 0).
const HOST_ID: u32 = 37 * 65_536;

async fn exec(c: &mut pea_tests::cri_client::Cri, id: &str, script: &str) -> (i32, String, String) {
    let r = c
        .runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout: 30,
        })
        .await
        .unwrap_or_else(|e| panic!("ExecSync {script}: {e:?}"))
        .into_inner();
    (
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    )
}

async fn ok(c: &mut pea_tests::cri_client::Cri, id: &str, script: &str) -> String {
    let (code, out, err) = exec(c, id, script).await;
    assert_eq!(code, 0, "{script}: {out} {err}");
    out
}

/// The uid owning `/proc/<pid>` on the host.
fn host_uid_of(pid: i64) -> u32 {
    std::fs::metadata(format!("/proc/{pid}")).unwrap().uid()
}

#[test]
fn a_user_namespace_pod_is_root_inside_and_unprivileged_outside() {
    let mut node = ShimNode::new().unwrap();
    // An emptyDir-like volume (the kubelet makes them 0777) and a host directory holding a
    // file only the host's root may read.
    let data = node.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let secret = node.path("secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("key"), "host root only").unwrap();
    std::fs::set_permissions(secret.join("key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    node.start_shim().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = node.cri().await.unwrap();
        let features = c
            .runtime
            .status(cri::StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner()
            .runtime_handlers;
        assert!(
            features[0].features.as_ref().unwrap().user_namespaces,
            "{features:?}"
        );

        let mut pod = node.pod("userns");
        let range = cri::IdMapping {
            host_id: HOST_ID,
            container_id: 0,
            length: 65_536,
        };
        pod.linux
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
            uids: vec![range],
            gids: vec![range],
        });
        let mut config = node.container("app", "exec sleep 3600");
        for (host, inside) in [(&data, "/data"), (&secret, "/secret")] {
            config.mounts.push(cri::Mount {
                container_path: inside.into(),
                host_path: host.display().to_string(),
                ..Default::default()
            });
        }
        node.pull(&mut c, &node.busybox).await.unwrap();
        let running = node.start_pod(&mut c, pod, vec![config]).await.unwrap();
        let (pod, id) = (running.id.clone(), running.containers[0].clone());

        // Root inside, with the kubelet's mapping.
        let ids = ok(&mut c, &id, "id -u; id -g").await;
        assert_eq!(
            ids.split_whitespace().collect::<Vec<_>>(),
            ["0", "0"],
            "{ids}"
        );
        for file in ["uid_map", "gid_map"] {
            let map = ok(&mut c, &id, &format!("cat /proc/self/{file}")).await;
            assert_eq!(
                map.split_whitespace().collect::<Vec<_>>(),
                ["0", &HOST_ID.to_string(), "65536"],
                "{file}: {map}"
            );
        }
        // The image's files are the pod root's, and its root file system is writable by it.
        let owner = ok(
            &mut c,
            &id,
            "stat -c '%u %g' /bin/busybox /etc; touch /made-here && echo made",
        )
        .await;
        assert_eq!(
            owner.split_whitespace().collect::<Vec<_>>(),
            ["0", "0", "0", "0", "made"]
        );

        // Outside, the container's processes are the range's first uid, not root.
        let status = c
            .runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
        let pid = info["pid"].as_i64().expect("the container's pid");
        assert_eq!(host_uid_of(pid), HOST_ID);
        let sandbox = c
            .runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        let info: serde_json::Value = serde_json::from_str(&sandbox.info["info"]).unwrap();
        assert_eq!(host_uid_of(info["pid"].as_i64().unwrap()), HOST_ID);

        // A file the pod's root writes into the volume belongs to the mapped host uid.
        ok(&mut c, &id, "echo from-the-pod > /data/written").await;
        let meta = std::fs::metadata(data.join("written")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (HOST_ID, HOST_ID));

        // Host-root things fail: reading a host root-only file, making a device node.
        let (code, _, err) = exec(&mut c, &id, "cat /secret/key").await;
        assert_ne!(code, 0);
        assert!(err.contains("Permission denied"), "{err}");
        let (code, _, err) = exec(&mut c, &id, "mknod /tmp/mem c 1 1").await;
        assert_ne!(code, 0, "mknod of /dev/mem's node worked: {err}");

        // The pod still has its network: an IP from CNI in its own namespace.
        assert!(!sandbox.status.unwrap().network.unwrap().ip.is_empty());

        for r in [
            c.runtime
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: pod.clone(),
                })
                .await
                .map(|_| ()),
            c.runtime
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: pod.clone(),
                })
                .await
                .map(|_| ()),
        ] {
            r.unwrap();
        }
        let left = node.leftovers();
        assert!(left.is_empty(), "left behind: {left:?}");
    });
    drop(rt);
    node.teardown().unwrap();
    let left = node.leftovers();
    assert!(left.is_empty(), "left behind: {left:?}");
}

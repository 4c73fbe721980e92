//! pea-kubelet driving containerd 1.6's CRI plugin (with runc) instead of pea-shim, on the same
//! kind of node: the real pea-control, pea-cni's network, a loopback registry and real kubectl,
//! all inside a network namespace the test made. `kubectl logs` and `kubectl exec` go through
//! pea-control and the kubelet's server to containerd's own streaming server.

use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use pea_tests::kubelet_node::{KubeletNode, NodeOptions, Runtime};
use pea_tests::shim_node::POD_SUBNET;
use serde_json::Value;

fn condition(p: &Value, t: &str) -> Option<String> {
    p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
        .and_then(|c| c["status"].as_str().map(str::to_string))
}

fn containerd_node(name: &str) -> KubeletNode {
    containerd_node_with(name, "")
}

/// The node with `extra` appended to the kubelet's config (YAML lines).
fn containerd_node_with(name: &str, extra: &str) -> KubeletNode {
    let mut n = KubeletNode::with(
        name,
        &NodeOptions {
            runtime: Runtime::Containerd,
            ..Default::default()
        },
    )
    .expect("node with containerd");
    let mut cfg = std::fs::read_to_string(&n.kubelet_config).expect("config");
    cfg.push_str(&extra.replace("NODE_DIR", &n.dir.path().display().to_string()));
    std::fs::write(&n.kubelet_config, cfg).expect("config");
    n.start_kubelet().expect("kubelet");
    let start = Instant::now();
    loop {
        if let Some(node) = n.get_json(&["node", name]) {
            if condition(&node, "Ready").as_deref() == Some("True") {
                let v = node["status"]["nodeInfo"]["containerRuntimeVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                assert!(v.starts_with("containerd://1.6"), "{v}");
                return n;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "node not Ready in 30 s:\n{}\n--- containerd:\n{}",
            n.kubelet_log(),
            n.runtime_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What containerd's CRI still knows: (sandboxes, containers).
fn cri_state(n: &KubeletNode) -> (usize, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut c = pea_tests::cri_client::connect(n.cri_socket())
            .await
            .expect("cri");
        let pods = c
            .runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .expect("list pods")
            .into_inner()
            .items
            .len();
        let ctrs = c
            .runtime
            .list_containers(cri::ListContainersRequest { filter: None })
            .await
            .expect("list containers")
            .into_inner()
            .containers
            .len();
        (pods, ctrs)
    })
}

#[test]
fn kubelet_on_containerd_runs_a_pod_with_logs_exec_restarts_and_graceful_delete() {
    let n = containerd_node("ctd-a");
    n.ok(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=greeting=hello",
    ]);
    let img = &n.image;
    n.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: c
    image: {img}
    command: [sh, -c, 'echo started $GREETING $(cat /etc/cfg/greeting); sleep 1; trap "exit 0" TERM; touch /tmp/ready; while true; do sleep 1; done']
    env:
    - {{name: GREETING, valueFrom: {{configMapKeyRef: {{name: cfg, key: greeting}}}}}}
    - {{name: PLAIN, value: plain}}
    readinessProbe:
      exec: {{command: [cat, /tmp/ready]}}
      periodSeconds: 1
    volumeMounts: [{{name: cfg, mountPath: /etc/cfg}}]
  volumes:
  - {{name: cfg, configMap: {{name: cfg}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: crash}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: c, image: {img}, command: [sh, -c, 'echo oops; exit 3']}}
"#
    ));
    let p = n.wait_pod("web", Duration::from_secs(60), |p| {
        condition(p, "Ready").as_deref() == Some("True")
    });
    assert_eq!(p["status"]["phase"], "Running");
    let mut uids = vec![p["metadata"]["uid"].as_str().unwrap().to_string()];
    let ip = p["status"]["podIP"].as_str().expect("podIP");
    assert!(
        ip.starts_with(&POD_SUBNET[..POD_SUBNET.rfind('.').unwrap()]),
        "{ip}: pea-cni's network, through containerd"
    );
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["ready"], true);
    assert!(
        cs["containerID"]
            .as_str()
            .unwrap_or_default()
            .starts_with("containerd://"),
        "{cs}"
    );

    // containerd's streaming server, through pea-control and the kubelet's server.
    let out = n.ok(&["exec", "web", "--", "sh", "-c", "echo $PLAIN; hostname"]);
    assert_eq!(out, "plain\nweb\n");
    let out = n.kubectl_stdin(
        &["exec", "-i", "web", "--", "sh", "-c", "cat; exit 4"],
        Some("piped\n"),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped\n");
    assert_eq!(
        out.status.code(),
        Some(4),
        "kubectl exec passes the exit code"
    );
    let log = n.ok(&["logs", "web"]);
    assert!(log.contains("started hello hello"), "{log}");

    // The crashing container restarts with a back-off between its runs.
    let p = n.wait_pod("crash", Duration::from_secs(45), |p| {
        p["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(0)
            >= 2
    });
    uids.push(p["metadata"]["uid"].as_str().unwrap().to_string());
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3, "{cs}");
    let waiting = n.wait_pod("crash", Duration::from_secs(30), |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    assert_eq!(waiting["status"]["phase"], "Running");
    let log = n.ok(&["logs", "crash", "--previous"]);
    assert_eq!(log, "oops\n");

    // Graceful deletion: SIGTERM ends the loop; then containerd knows nothing of either pod.
    n.ok(&[
        "delete",
        "pod",
        "web",
        "crash",
        "--wait=true",
        "--timeout=60s",
    ]);
    n.wait_gone("web", Duration::from_secs(30));
    n.wait_gone("crash", Duration::from_secs(30));
    let start = Instant::now();
    while cri_state(&n) != (0, 0) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "containerd still has {:?}",
            cri_state(&n)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        !n.node.path("kubelet").join("pods").exists()
            || std::fs::read_dir(n.node.path("kubelet").join("pods"))
                .unwrap()
                .next()
                .is_none(),
        "pod dirs removed"
    );
    let cg = n.node.cgroups();
    for uid in &uids {
        assert!(
            !cg.iter().any(|c| c.contains(uid.as_str())),
            "pod cgroup of {uid} removed: {cg:?}"
        );
    }
}

fn running_containers(n: &KubeletNode, pod: &str) -> Vec<String> {
    n.cri_containers("io.kubernetes.pod.name", pod)
        .into_iter()
        .filter(|(_, s)| *s == cri::ContainerState::ContainerRunning as i32)
        .map(|(id, _)| id)
        .collect()
}

/// The static pod and liveness scenarios of kubelet_static.rs and kubelet_probes.rs, on
/// containerd: a manifest runs as NAME-NODENAME with a mirror pod (made again when deleted,
/// the container untouched), a removed manifest stops it in containerd; an exec liveness probe
/// (CRI ExecSync in containerd) that starts failing restarts the container.
#[test]
fn kubelet_on_containerd_runs_static_pods_and_restarts_on_failed_liveness() {
    let n = containerd_node_with(
        "ctd-s",
        "staticPodPath: NODE_DIR/manifests\nfileCheckFrequency: 1s\n",
    );
    let dir = n.dir.path().join("manifests");
    std::fs::create_dir_all(&dir).expect("manifest dir");
    let img = n.image.clone();
    let tmp = dir.join(".web.yaml.tmp");
    std::fs::write(
        &tmp,
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec:\n  \
             terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {img}\n    \
             command: [sh, -c, 'echo static; exec sleep 3600']\n"
        ),
    )
    .expect("manifest");
    std::fs::rename(&tmp, dir.join("web.yaml")).expect("manifest");
    let p = n.wait_pod("web-ctd-s", Duration::from_secs(60), |p| {
        p["status"]["phase"] == "Running"
    });
    let ann = &p["metadata"]["annotations"];
    assert_eq!(ann["kubernetes.io/config.source"], "file", "{ann}");
    assert_eq!(
        ann["kubernetes.io/config.mirror"],
        ann["kubernetes.io/config.hash"]
    );
    assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert!(p["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap_or_default()
        .starts_with("containerd://"));
    n.wait_until("the static pod's log", Duration::from_secs(60), || {
        n.ok(&["logs", "web-ctd-s"]).contains("static")
    });
    let first = running_containers(&n, "web-ctd-s");
    assert_eq!(first.len(), 1, "{first:?}");
    let old_uid = p["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    n.ok(&["delete", "pod", "web-ctd-s", "--wait=false"]);
    n.wait_pod("web-ctd-s", Duration::from_secs(60), |p| {
        p["metadata"]["uid"].as_str() != Some(old_uid.as_str())
            && p["metadata"]["deletionTimestamp"].is_null()
            && p["status"]["phase"] == "Running"
    });
    assert_eq!(running_containers(&n, "web-ctd-s"), first);

    // Liveness through containerd's ExecSync: healthy for a few seconds, then failing.
    n.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: live}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {img}
    command: [sh, -c, 'touch /tmp/alive; sleep 3; rm /tmp/alive; exec sleep 3600']
    livenessProbe:
      exec: {{command: [test, -e, /tmp/alive]}}
      periodSeconds: 1
      failureThreshold: 2
"#
    ));
    let p = n.wait_pod("live", Duration::from_secs(50), |p| {
        p["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(0)
            >= 1
    });
    assert!(p["status"]["containerStatuses"][0]["lastState"]["terminated"].is_object());
    let ev = n.events("live");
    assert!(
        ev.iter()
            .any(|(r, m)| r == "Unhealthy" && m.starts_with("Liveness probe failed")),
        "{ev:?}"
    );

    // The removed manifest stops the static pod in containerd and deletes its mirror.
    std::fs::remove_file(dir.join("web.yaml")).expect("remove");
    n.wait_gone("web-ctd-s", Duration::from_secs(60));
    n.wait_until(
        "the static pod's containers gone",
        Duration::from_secs(60),
        || {
            n.cri_containers("io.kubernetes.pod.name", "web-ctd-s")
                .is_empty()
        },
    );
}

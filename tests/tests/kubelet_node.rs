//! pea-kubelet on one real node: pea-shim (CRI), pea-cni, the real pea-control (API server,
//! scheduler, controllers) and real kubectl 1.32, all inside a network namespace the test made.
//! Pods are created with kubectl and scheduled by pea-control's scheduler; the kubelet runs
//! them through CRI and reports them back.

use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use pea_tests::kubelet_node::KubeletNode;
use pea_tests::shim_node::POD_SUBNET;
use serde_json::Value;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn condition(p: &Value, t: &str) -> Option<String> {
    p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
        .and_then(|c| c["status"].as_str().map(str::to_string))
}

fn node_ready(n: &KubeletNode) {
    let start = Instant::now();
    loop {
        if let Some(node) = n.get_json(&["node", &n.name]) {
            if condition(&node, "Ready").as_deref() == Some("True") {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "node not Ready in 30 s:\n{}",
            n.kubelet_log()
                .lines()
                .filter(|l| !l.starts_with(' '))
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn container_id(p: &Value, i: usize) -> String {
    p["status"]["containerStatuses"][i]["containerID"]
        .as_str()
        .and_then(|s| s.split_once("://"))
        .map(|(_, id)| id.to_string())
        .expect("containerID")
}

fn pod_sandboxes(n: &KubeletNode) -> usize {
    rt().block_on(async {
        let mut c = pea_tests::cri_client::connect(&n.node.socket)
            .await
            .expect("cri");
        c.runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .expect("list")
            .into_inner()
            .items
            .len()
    })
}

#[test]
fn node_registers_and_runs_a_pod_with_volumes_env_probes_then_deletes_it_gracefully() {
    let mut n = KubeletNode::new("node-a").expect("node");
    n.start_kubelet().expect("kubelet");
    node_ready(&n);
    let node = n.get_json(&["node", "node-a"]).expect("node");
    assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.32.0");
    assert!(node["status"]["nodeInfo"]["containerRuntimeVersion"]
        .as_str()
        .unwrap()
        .contains("://"));
    assert_eq!(node["status"]["capacity"]["pods"], "20");
    assert!(node["status"]["addresses"][0]["address"].as_str().is_some());
    // The node's lease, renewed by the kubelet.
    let lease = n
        .get_json(&["lease", "-n", "kube-node-lease", "node-a"])
        .expect("lease");
    assert_eq!(lease["spec"]["holderIdentity"], "node-a");

    let hostdir = n.host_dir("prestop");
    n.ok(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=greeting=hello",
    ]);
    n.ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "--from-literal=pw=hunter2",
    ]);
    n.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: main
    image: {image}
    command: [sh, -c, 'echo started $GREETING $(cat /etc/cfg/greeting) $PW; touch /tmp/ready; while true; do sleep 1; done']
    env:
    - {{name: GREETING, valueFrom: {{configMapKeyRef: {{name: cfg, key: greeting}}}}}}
    - {{name: PW, valueFrom: {{secretKeyRef: {{name: s, key: pw}}}}}}
    - {{name: MY_POD, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    readinessProbe:
      exec: {{command: [cat, /tmp/ready]}}
      periodSeconds: 1
    lifecycle:
      preStop:
        exec: {{command: [sh, -c, 'echo bye > /host/prestop']}}
    volumeMounts:
    - {{name: cfg, mountPath: /etc/cfg}}
    - {{name: sec, mountPath: /etc/sec}}
    - {{name: scratch, mountPath: /scratch}}
    - {{name: info, mountPath: /etc/info}}
    - {{name: host, mountPath: /host}}
  volumes:
  - {{name: cfg, configMap: {{name: cfg}}}}
  - {{name: sec, secret: {{secretName: s}}}}
  - {{name: scratch, emptyDir: {{medium: Memory, sizeLimit: 16Mi}}}}
  - {{name: info, downwardAPI: {{items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]}}}}
  - {{name: host, hostPath: {{path: {host}, type: Directory}}}}
"#,
        image = n.node.busybox,
        host = hostdir.display()
    ));
    let p = n.wait_pod("web", Duration::from_secs(60), |p| {
        condition(p, "Ready").as_deref() == Some("True")
    });
    assert_eq!(p["spec"]["nodeName"], "node-a", "scheduled by pea-control");
    assert_eq!(p["status"]["phase"], "Running");
    let ip = p["status"]["podIP"].as_str().expect("podIP");
    assert!(
        ip.starts_with(&POD_SUBNET[..POD_SUBNET.rfind('.').unwrap()]),
        "{ip}"
    );
    assert_eq!(p["status"]["qosClass"], "BestEffort");
    assert_eq!(condition(&p, "PodScheduled").as_deref(), Some("True"));
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["restartCount"], 0);
    assert!(
        cs["imageID"].as_str().unwrap().starts_with("sha256:")
            || !cs["imageID"].as_str().unwrap().is_empty()
    );
    // In the pod, through kubectl → pea-control → the kubelet's server → pea-shim's streams.
    let out = n.ok(&["exec", "web", "--", "sh", "-c", "echo $MY_POD; cat /etc/sec/pw; cat /etc/info/labels; mount | grep -c ' /scratch type tmpfs'; cat /etc/hosts"]);
    assert!(out.starts_with("web\nhunter2app=\"web\"\n1\n"), "{out}");
    assert!(out.contains(&format!("{ip}\tweb")), "{out}");
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
    // The container's log, written through CRI, read back by kubectl through the kubelet.
    let uid = p["metadata"]["uid"].as_str().unwrap();
    let log = n.ok(&["logs", "web"]);
    assert!(log.contains("started hello hello hunter2"), "{log}");
    let log = n.ok(&["logs", "web", "--timestamps", "--tail=1"]);
    assert!(log.starts_with("20") && log.contains("started"), "{log}");

    // A configmap update reaches the running pod's volume (atomic ..data swap).
    let yaml = n.ok(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=greeting=updated",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    let out = n.kubectl_stdin(&["apply", "-f", "-"], Some(&yaml));
    assert!(out.status.success());
    let start = Instant::now();
    loop {
        let out = n.ok(&["exec", "web", "--", "cat", "/etc/cfg/greeting"]);
        if out == "updated" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "configmap update not seen: {out}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Graceful deletion: preStop runs, then the pod is gone and nothing of it is left.
    let started = Instant::now();
    n.ok(&["delete", "pod", "web", "--wait=true", "--timeout=60s"]);
    n.wait_gone("web", Duration::from_secs(30));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        std::fs::read_to_string(hostdir.join("prestop")).unwrap_or_default(),
        "bye\n",
        "preStop ran"
    );
    assert_eq!(pod_sandboxes(&n), 0, "the sandbox is removed");
    assert!(
        !n.node.path("kubelet").join("pods").join(uid).exists(),
        "pod dir removed"
    );
    let cg = n.node.cgroups();
    assert!(
        !cg.iter().any(|c| c.contains(uid)),
        "pod cgroup removed: {cg:?}"
    );
    assert!(n.kubelet_exited().is_none(), "kubelet still running");
}

#[test]
fn restarts_backoff_init_containers_liveness_and_termination_messages() {
    let mut n = KubeletNode::new("node-b").expect("node");
    n.start_kubelet().expect("kubelet");
    node_ready(&n);
    let img = n.node.busybox.clone();
    n.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: crash}}
spec:
  containers:
  - {{name: c, image: {img}, command: [sh, -c, 'echo oops; exit 3']}}
---
apiVersion: v1
kind: Pod
metadata: {{name: init}}
spec:
  restartPolicy: Never
  initContainers:
  - {{name: i1, image: {img}, command: [sh, -c, 'echo a > /work/f'], volumeMounts: [{{name: w, mountPath: /work}}]}}
  - {{name: i2, image: {img}, command: [sh, -c, 'echo b >> /work/f'], volumeMounts: [{{name: w, mountPath: /work}}]}}
  containers:
  - {{name: main, image: {img}, command: [sh, -c, 'cat /work/f | tr "\n" " "'], volumeMounts: [{{name: w, mountPath: /work}}]}}
  volumes: [{{name: w, emptyDir: {{}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: live}}
spec:
  containers:
  - name: c
    image: {img}
    command: [sh, -c, 'touch /tmp/alive; sleep 2; rm /tmp/alive; while true; do sleep 1; done']
    livenessProbe:
      exec: {{command: [test, -f, /tmp/alive]}}
      periodSeconds: 1
      failureThreshold: 1
  terminationGracePeriodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {{name: fail}}
spec:
  restartPolicy: Never
  containers:
  - {{name: c, image: {img}, command: [sh, -c, 'echo boom > /dev/termination-log; exit 1']}}
---
apiVersion: v1
kind: Pod
metadata: {{name: oom}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: {img}
    command: [sh, -c, 'x=$(head -c 128m /dev/zero | tr "\\0" a); echo survived']
    resources: {{limits: {{memory: 16Mi}}}}
"#
    ));
    // Over its memory limit: killed by the kernel, reported as kube does.
    let p = n.wait_pod("oom", Duration::from_secs(60), |p| {
        p["status"]["phase"] == "Failed"
    });
    let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{t}");
    assert_eq!(t["exitCode"], 137);
    assert_eq!(p["status"]["qosClass"], "Burstable");
    // restartPolicy Never, exit 1: Failed, with the termination message.
    let p = n.wait_pod("fail", Duration::from_secs(60), |p| {
        p["status"]["phase"] == "Failed"
    });
    let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 1);
    assert_eq!(t["reason"], "Error");
    assert_eq!(t["message"], "boom\n");

    // Init containers ran in order, then the main container saw their work.
    let p = n.wait_pod("init", Duration::from_secs(60), |p| {
        p["status"]["phase"] == "Succeeded"
    });
    assert_eq!(condition(&p, "Initialized").as_deref(), Some("True"));
    let inits = p["status"]["initContainerStatuses"]
        .as_array()
        .expect("init statuses");
    assert_eq!(inits.len(), 2);
    for s in inits {
        assert_eq!(s["state"]["terminated"]["reason"], "Completed", "{s}");
    }
    let uid = p["metadata"]["uid"].as_str().unwrap();
    let log = std::fs::read_to_string(
        n.node
            .path("logs")
            .join(format!("default_init_{uid}"))
            .join("main/0.log"),
    )
    .unwrap();
    assert!(log.contains("a b"), "{log}");

    // Always + crashing: restarted, then CrashLoopBackOff with the previous exit in lastState.
    let p = n.wait_pod("crash", Duration::from_secs(60), |p| {
        let cs = &p["status"]["containerStatuses"][0];
        cs["restartCount"].as_i64().unwrap_or(0) >= 1
            && cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3);
    assert_eq!(p["status"]["phase"], "Running");
    assert!(
        cs["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .contains("back-off 10s"),
        "{cs}"
    );

    // A failing liveness probe restarts the container.
    let p = n.wait_pod("live", Duration::from_secs(60), |p| {
        p["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(0)
            >= 1
    });
    assert!(p["status"]["containerStatuses"][0]["lastState"]["terminated"].is_object());
    let ev = n.events("live");
    assert!(
        ev.iter()
            .any(|(r, m)| r == "Unhealthy" && m.contains("Liveness")),
        "{ev:?}"
    );
    assert!(ev.iter().any(|(r, _)| r == "Killing"), "{ev:?}");
}

#[test]
fn kubelet_restart_adopts_running_containers() {
    let mut n = KubeletNode::new("node-c").expect("node");
    n.start_kubelet().expect("kubelet");
    node_ready(&n);
    n.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: keep}}\nspec:\n  containers:\n  - {{name: c, image: {}, command: [sleep, '3600']}}\n",
        n.node.busybox
    ));
    let p = n.wait_pod("keep", Duration::from_secs(60), |p| {
        condition(p, "Ready").as_deref() == Some("True")
    });
    let cid = container_id(&p, 0);
    n.kill_kubelet();
    n.start_kubelet().expect("kubelet again");
    // Give the new kubelet several syncs.
    std::thread::sleep(Duration::from_secs(4));
    let p = n.wait_pod("keep", Duration::from_secs(30), |p| {
        condition(p, "Ready").as_deref() == Some("True")
    });
    assert_eq!(
        container_id(&p, 0),
        cid,
        "the same container, not a restart"
    );
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(pod_sandboxes(&n), 1);
    // A pod deleted while the kubelet is down is cleaned up when it comes back.
    n.kill_kubelet();
    n.ok(&[
        "delete",
        "pod",
        "keep",
        "--grace-period=0",
        "--force",
        "--wait=false",
    ]);
    n.start_kubelet().expect("kubelet again");
    let start = Instant::now();
    while pod_sandboxes(&n) != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "orphaned sandbox not removed:\n{}",
            pea_tests::kubelet_node::tail(&n.kubelet_log(), 40)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn pods_the_node_cannot_run_get_a_reason_and_leave_nothing() {
    let mut n = KubeletNode::new("node-d").expect("node");
    n.start_kubelet().expect("kubelet");
    node_ready(&n);
    let img = n.node.busybox.clone();
    let registry = n.node.registry.host();
    n.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: nfs}}
spec:
  containers: [{{name: c, image: {img}, command: [sleep, '60']}}]
  volumes: [{{name: share, nfs: {{server: 10.0.0.1, path: /}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: procsys}}
spec:
  containers: [{{name: c, image: {img}, command: [sleep, '60'], volumeMounts: [{{name: p, mountPath: /x}}]}}]
  volumes: [{{name: p, hostPath: {{path: /proc/sys}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: noimage}}
spec:
  containers: [{{name: c, image: '{registry}/library/nope:v1'}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: nocm}}
spec:
  containers:
  - name: c
    image: {img}
    env: [{{name: X, valueFrom: {{configMapKeyRef: {{name: missing, key: k}}}}}}]
"#
    ));
    let start = Instant::now();
    loop {
        let ev = n.events("nfs");
        if ev
            .iter()
            .any(|(r, m)| r == "FailedMount" && m.contains("\"nfs\" is not supported"))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no FailedMount event: {ev:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let waiting = |name: &str, reason: &'static str, text: &'static str| {
        let p = n.wait_pod(name, Duration::from_secs(60), |p| {
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == reason
        });
        let msg = p["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(msg.contains(text), "{name}: {msg}");
    };
    waiting(
        "procsys",
        "CreateContainerConfigError",
        "may only be mounted readOnly",
    );
    waiting(
        "nocm",
        "CreateContainerConfigError",
        "configmap \"missing\" not found",
    );
    let p = n.wait_pod("noimage", Duration::from_secs(60), |p| {
        matches!(
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].as_str(),
            Some("ErrImagePull") | Some("ImagePullBackOff")
        )
    });
    assert_eq!(p["status"]["phase"], "Pending");
    n.delete_all_pods();
    assert_eq!(pod_sandboxes(&n), 0);
    let pods_dir = n.node.path("kubelet").join("pods");
    let left: Vec<_> = std::fs::read_dir(&pods_dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "pod dirs left: {left:?}");
}

#[test]
fn host_network_http_probes_sidecars_and_active_deadlines() {
    let mut n = KubeletNode::new("node-e").expect("node");
    n.start_kubelet().expect("kubelet");
    node_ready(&n);
    let img = n.node.busybox.clone();
    n.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hostnet}}
spec:
  hostNetwork: true
  containers:
  - name: web
    image: {img}
    command: [sh, -c, 'mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 18080 -h /www']
    readinessProbe: {{httpGet: {{path: /index.html, port: 18080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: sidecar}}
spec:
  initContainers:
  - name: side
    image: {img}
    restartPolicy: Always
    command: [sh, -c, 'while true; do date > /shared/tick; sleep 1; done']
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  containers:
  - name: main
    image: {img}
    command: [sh, -c, 'while [ ! -f /shared/tick ]; do sleep 0.2; done; echo saw tick; exec sleep 3600']
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  volumes: [{{name: shared, emptyDir: {{}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: deadline}}
spec:
  activeDeadlineSeconds: 3
  terminationGracePeriodSeconds: 1
  containers: [{{name: c, image: {img}, command: [sleep, '3600']}}]
"#
    ));
    // hostNetwork: the pod has the node's address, and an httpGet probe reaches it there.
    let p = n.wait_pod("hostnet", Duration::from_secs(60), |p| {
        condition(p, "Ready").as_deref() == Some("True")
    });
    assert_eq!(
        p["status"]["podIP"], p["status"]["hostIP"],
        "{}",
        p["status"]
    );
    // A restartable init container (sidecar) keeps running beside the main container.
    let p = n.wait_pod("sidecar", Duration::from_secs(60), |p| {
        p["status"]["phase"] == "Running"
            && p["status"]["initContainerStatuses"][0]["state"]["running"].is_object()
            && p["status"]["containerStatuses"][0]["state"]["running"].is_object()
    });
    assert_eq!(condition(&p, "Initialized").as_deref(), Some("True"));
    let start = Instant::now();
    while !n
        .ok(&["logs", "sidecar", "-c", "main"])
        .contains("saw tick")
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "main never saw the sidecar's file"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // activeDeadlineSeconds: the pod fails with DeadlineExceeded and its containers stop.
    let p = n.wait_pod("deadline", Duration::from_secs(60), |p| {
        p["status"]["phase"] == "Failed"
    });
    assert_eq!(p["status"]["reason"], "DeadlineExceeded");
    assert!(
        p["status"]["containerStatuses"][0]["state"]["terminated"].is_object(),
        "{}",
        p["status"]
    );
}

/// Polls `f` for up to 60 s; panics with `what` and the kubelet's log tail.
fn wait_until(n: &KubeletNode, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: not within 60 s\n--- kubelet log tail:\n{}\n--- control log tail:\n{}",
            pea_tests::kubelet_node::tail(&n.kubelet_log(), 40),
            pea_tests::kubelet_node::tail(&n.control_log(), 40)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn persistent_volume_claims_keep_data_across_pods_and_are_cleaned_up() {
    let mut n = KubeletNode::new("node-a").expect("node");
    n.start_kubelet().expect("kubelet");
    node_ready(&n);
    // A local-path class whose volumes go under the test's directory; its cleanup pods run
    // the node's busybox.
    let base = n.host_dir("storage");
    n.apply(&format!(
        r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: node-local}}
provisioner: pea.dev/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
parameters: {{basePath: {base}, helperImage: {image}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data}}
spec:
  storageClassName: node-local
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 16Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: writer}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    command: [sh, -c, 'echo kept-by-the-volume > /data/f; while true; do sleep 1; done']
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes: [{{name: data, persistentVolumeClaim: {{claimName: data}}}}]
"#,
        base = base.display(),
        image = n.image,
    ));
    // Scheduled → the claim learns the node → provisioned there → bound → mounted.
    n.wait_pod("writer", Duration::from_secs(60), |p| {
        p["status"]["phase"] == "Running"
    });
    let pvc = n.get_json(&["pvc", "data"]).expect("pvc");
    assert_eq!(pvc["status"]["phase"], "Bound");
    let pv = pvc["spec"]["volumeName"].as_str().unwrap().to_string();
    let dir = base.join(&pv);
    wait_until(&n, "the file on the node", || {
        std::fs::read_to_string(dir.join("f")).ok().as_deref() == Some("kept-by-the-volume\n")
    });
    n.ok(&["delete", "pod", "writer"]);
    n.wait_gone("writer", Duration::from_secs(60));
    assert!(dir.join("f").exists(), "the data outlives its pod");

    // A new pod (read-only) sees the data; it cannot write.
    n.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: reader}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    command: [sh, -c, 'while true; do sleep 1; done']
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes: [{{name: data, persistentVolumeClaim: {{claimName: data, readOnly: true}}}}]
"#,
        image = n.image,
    ));
    n.wait_pod("reader", Duration::from_secs(60), |p| {
        p["status"]["phase"] == "Running"
    });
    let out = n.ok(&[
        "exec",
        "reader",
        "--",
        "sh",
        "-c",
        "cat /data/f; touch /data/g 2>/dev/null && echo wrote || echo read-only",
    ]);
    assert_eq!(out, "kept-by-the-volume\nread-only\n");

    // A pod whose claim is not bound yet waits in ContainerCreating (FailedMount), then starts
    // once an administrator's volume binds it.
    let manual = n.host_dir("manual");
    n.apply(&format!(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: later}}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: early}}
spec:
  nodeName: node-a
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    command: [sh, -c, 'touch /v/started; while true; do sleep 1; done']
    volumeMounts: [{{name: v, mountPath: /v}}]
  volumes: [{{name: v, persistentVolumeClaim: {{claimName: later}}}}]
"#,
        image = n.image,
    ));
    wait_until(&n, "FailedMount for the unbound claim", || {
        n.events("early")
            .iter()
            .any(|(r, m)| r == "FailedMount" && m.contains("PVC default/later has non-bound phase"))
    });
    let p = n.get_json(&["pod", "early"]).expect("pod");
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "ContainerCreating",
        "{}",
        p["status"]
    );
    n.apply(&format!(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata: {{name: manual-1}}
spec:
  storageClassName: manual
  capacity: {{storage: 1Mi}}
  accessModes: [ReadWriteOnce]
  hostPath: {{path: {path}, type: DirectoryOrCreate}}
"#,
        path = manual.join("vol").display()
    ));
    n.wait_pod("early", Duration::from_secs(60), |p| {
        p["status"]["phase"] == "Running"
    });
    wait_until(&n, "the manual volume used", || {
        manual.join("vol").join("started").exists()
    });

    // Reclaim Delete: a cleanup pod removes the directory on the node, then the volume goes.
    n.ok(&["delete", "pod", "reader"]);
    n.wait_gone("reader", Duration::from_secs(60));
    n.ok(&["delete", "pvc", "data"]);
    wait_until(&n, "provisioned volume deleted", || {
        n.get_json(&["pv", &pv]).is_none()
    });
    assert!(
        !dir.exists(),
        "{} removed by the cleanup pod",
        dir.display()
    );
    assert!(base.exists(), "only the volume's directory goes");
}

//! Storage against a real pea-control, driven by the real kubectl 1.32: PersistentVolume /
//! PersistentVolumeClaim binding (smallest fit, selectors, claimRef pre-binding, reclaim Retain
//! and Delete), the local-path provisioner behind the default StorageClass, and the scheduler's
//! VolumeBinding on "hollow" nodes (Node objects written by the test; the test also plays the
//! kubelet for the provisioner's cleanup pod). The scheduler and the controllers run as their
//! own processes (`pea-control scheduler|controllers --kubeconfig F`).
//!
//! Needs the pea-control binary (`cargo build -p pea-control`, or `PEA_CONTROL_BIN`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pea_tests::control::{Backend, ControlPlane, Kubectl};
use serde_json::{json, Value};

/// Bound of every wait; generous because the machine has 2 shared cores.
const WAIT: u64 = 60;

/// A `pea-control scheduler|controllers` process, killed (by its pid) when dropped.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn start(kubeconfig: &Path, dir: &Path, role: &str, args: &[&str], config: Value) -> Self {
        let bin = pea_tests::bins::workspace_binary("pea-control", "PEA_CONTROL_BIN");
        let cfg = dir.join(format!("{role}.json"));
        std::fs::write(&cfg, config.to_string()).expect("write config");
        let log = dir.join(format!("{role}.log"));
        let child = Command::new(bin)
            .args([role, "--kubeconfig"])
            .arg(kubeconfig)
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .env("RUST_LOG", "info,pea_scheduler=debug,pea_controllers=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start pea-control");
        Process { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Cluster {
    k: Kubectl,
    dir: tempfile::TempDir,
    controllers: Process,
    scheduler: Option<Process>,
    // Last: the API server outlives its clients.
    _cp: ControlPlane,
}

impl Cluster {
    fn start(with_scheduler: bool) -> Self {
        let cp = ControlPlane::start(Backend::Embedded).expect("pea-control");
        let dir = tempfile::Builder::new()
            .prefix("pea-storage-test-")
            .tempdir()
            .expect("temp dir");
        let controllers = Process::start(
            &cp.kubeconfig,
            dir.path(),
            "controllers",
            &[
                "--controllers",
                "persistentvolume-binder,local-path-provisioner,pvc-protection",
            ],
            json!({"leaderElect": false,
                "localPathDir": dir.path().join("storage").to_str().unwrap()}),
        );
        let scheduler = with_scheduler.then(|| {
            Process::start(
                &cp.kubeconfig,
                dir.path(),
                "scheduler",
                &[],
                json!({"leaderElect": false}),
            )
        });
        Cluster {
            k: cp.kubectl(),
            dir,
            controllers,
            scheduler,
            _cp: cp,
        }
    }

    fn logs(&self) -> String {
        format!(
            "controllers log:\n{}\nscheduler log:\n{}",
            tail(&self.controllers.log()),
            self.scheduler
                .as_ref()
                .map(|s| tail(&s.log()))
                .unwrap_or_default()
        )
    }

    fn create(&self, obj: Value) {
        self.k.ok_stdin(&["create", "-f", "-"], &obj.to_string());
    }

    fn get(&self, args: &[&str]) -> Option<Value> {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend(["-o", "json"]);
        let out = self.k.run(&a);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// Waits until `get args` satisfies `pred`; panics with the object and the logs.
    fn wait(&self, what: &str, args: &[&str], pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(WAIT);
        loop {
            let v = self.get(args);
            if let Some(v) = v.as_ref().filter(|v| pred(v)) {
                return v.clone();
            }
            if Instant::now() > deadline {
                panic!("{what}: not within {WAIT} s: {v:#?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_gone(&self, what: &str, args: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(WAIT);
        while self.get(args).is_some() {
            if Instant::now() > deadline {
                panic!("{what}: still there after {WAIT} s\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn events(&self, name: &str, reason: &str) -> Vec<String> {
        let list = self.get(&["events", "-A"]).unwrap_or(json!({}));
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["involvedObject"]["name"] == name && e["reason"] == reason)
            .filter_map(|e| e["message"].as_str().map(str::to_string))
            .collect()
    }

    fn wait_event(&self, name: &str, reason: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(WAIT);
        loop {
            if let Some(m) = self.events(name, reason).pop() {
                return m;
            }
            if Instant::now() > deadline {
                panic!(
                    "no {reason} event for {name} within {WAIT} s\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn phase(v: &Value) -> &str {
    v["status"]["phase"].as_str().unwrap_or("")
}

fn host_path_pv(name: &str, size: &str, modes: &[&str], policy: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": labels},
        "spec": {"capacity": {"storage": size}, "accessModes": modes,
            "persistentVolumeReclaimPolicy": policy, "storageClassName": "manual",
            "hostPath": {"path": format!("/tmp/pea-storage-test/{name}")}}})
}

fn claim(name: &str, size: &str, class: Option<&str>, extra: Value) -> Value {
    let mut spec = json!({"accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}}});
    if let Some(c) = class {
        spec["storageClassName"] = json!(c);
    }
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

#[test]
fn claims_bind_the_smallest_fitting_volume_and_volumes_are_reclaimed() {
    let c = Cluster::start(false);
    let k = &c.k;
    c.create(host_path_pv(
        "pv-1g",
        "1Gi",
        &["ReadWriteOnce"],
        "Retain",
        json!({}),
    ));
    c.create(host_path_pv(
        "pv-5g",
        "5Gi",
        &["ReadWriteOnce"],
        "Retain",
        json!({}),
    ));
    c.create(host_path_pv(
        "pv-20g",
        "20Gi",
        &["ReadWriteOnce"],
        "Retain",
        json!({}),
    ));
    c.create(host_path_pv(
        "pv-5g-rox",
        "5Gi",
        &["ReadOnlyMany"],
        "Retain",
        json!({}),
    ));
    c.create(host_path_pv(
        "pv-fast",
        "10Gi",
        &["ReadWriteOnce", "ReadWriteMany"],
        "Delete",
        json!({"tier": "fast"}),
    ));
    // Defaults as kube-apiserver fills them; an unbound volume becomes Available.
    for name in ["pv-5g", "pv-20g", "pv-5g-rox", "pv-fast"] {
        c.wait("volume available", &["pv", name], |v| {
            phase(v) == "Available"
        });
    }
    let pv = c.wait("pv-1g available", &["pv", "pv-1g"], |v| {
        phase(v) == "Available"
    });
    assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pv["spec"]["hostPath"]["type"], "");

    // 2Gi of ReadWriteOnce: the smallest volume big enough is pv-5g (not pv-20g, not the
    // ReadOnlyMany one, not the selected-only pv-fast which is bigger).
    c.create(claim("small", "2Gi", Some("manual"), json!({})));
    let pvc = c.wait("small bound", &["pvc", "small"], |v| phase(v) == "Bound");
    assert_eq!(pvc["spec"]["volumeName"], "pv-5g");
    assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pvc["status"]["capacity"]["storage"], "5Gi");
    assert_eq!(pvc["status"]["accessModes"], json!(["ReadWriteOnce"]));
    let ann = &pvc["metadata"]["annotations"];
    assert_eq!(ann["pv.kubernetes.io/bind-completed"], "yes");
    assert_eq!(ann["pv.kubernetes.io/bound-by-controller"], "yes");
    let pv = c.wait("pv-5g bound", &["pv", "pv-5g"], |v| phase(v) == "Bound");
    assert_eq!(pv["spec"]["claimRef"]["name"], "small");
    assert_eq!(pv["spec"]["claimRef"]["uid"], pvc["metadata"]["uid"]);
    assert_eq!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"],
        "yes"
    );

    // A selector picks among the labelled volumes only.
    c.create(claim(
        "fast",
        "1Gi",
        Some("manual"),
        json!({"selector": {"matchLabels": {"tier": "fast"}}}),
    ));
    let fast = c.wait("fast bound", &["pvc", "fast"], |v| phase(v) == "Bound");
    assert_eq!(fast["spec"]["volumeName"], "pv-fast");

    // A volume pre-bound to a claim by claimRef is the one it gets, whatever fits better.
    let mut pre = host_path_pv("pv-pre", "50Gi", &["ReadWriteOnce"], "Retain", json!({}));
    pre["spec"]["claimRef"] = json!({"namespace": "default", "name": "mine"});
    c.create(pre);
    c.create(claim("mine", "1Gi", Some("manual"), json!({})));
    let mine = c.wait("mine bound", &["pvc", "mine"], |v| phase(v) == "Bound");
    assert_eq!(mine["spec"]["volumeName"], "pv-pre");
    let pv = c.wait("pv-pre bound", &["pv", "pv-pre"], |v| phase(v) == "Bound");
    assert!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"].is_null(),
        "the user chose this binding: {pv}"
    );

    // Nothing fits: the claim stays Pending (and says why).
    c.create(claim("huge", "1Ti", Some("manual"), json!({})));
    assert!(c
        .wait_event("huge", "ProvisioningFailed")
        .contains("storageclass.storage.k8s.io \"manual\" not found"));
    assert_eq!(phase(&c.get(&["pvc", "huge"]).unwrap()), "Pending");

    // kubectl's columns, as kube-apiserver prints them.
    let table = k.ok(&["get", "pv", "pv-5g"]);
    assert!(
        table.contains("NAME")
            && table.contains("CAPACITY")
            && table.contains("RECLAIM POLICY")
            && table.contains("default/small"),
        "{table}"
    );
    let pvcs = k.ok(&["get", "pvc", "small"]);
    assert!(
        pvcs.contains("Bound") && pvcs.contains("pv-5g") && pvcs.contains("RWO"),
        "{pvcs}"
    );

    // Reclaim: Retain keeps the volume Released; Delete deletes it.
    k.ok(&["delete", "pvc", "small"]);
    let pv = c.wait("pv-5g released", &["pv", "pv-5g"], |v| {
        phase(v) == "Released"
    });
    assert_eq!(
        pv["spec"]["claimRef"]["name"], "small",
        "kept for the admin"
    );
    k.ok(&["delete", "pvc", "fast"]);
    c.wait_gone("pv-fast deleted (reclaim Delete)", &["pv", "pv-fast"]);
    // A released volume is not handed to a new claim with the same name.
    c.create(claim("small", "2Gi", Some("manual"), json!({})));
    let again = c.wait("small bound again", &["pvc", "small"], |v| {
        phase(v) == "Bound"
    });
    assert_eq!(again["spec"]["volumeName"], "pv-20g");
}

/// Creates a hollow Node: labels, Ready, room for pods.
fn hollow_node(k: &Kubectl, name: &str) {
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}});
    k.ok_stdin(&["create", "-f", "-"], &node.to_string());
    let resources = json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
    let status = json!({"status": {"capacity": resources, "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "hollow node", "lastHeartbeatTime": "2026-01-01T00:00:00Z",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    k.ok(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
}

fn pod_with_claims(name: &str, claims: &[&str], extra: Value) -> Value {
    let volumes: Vec<Value> = claims
        .iter()
        .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
        .collect();
    let mut spec = json!({"terminationGracePeriodSeconds": 0,
        "containers": [{"name": "c", "image": "busybox:1.36"}], "volumes": volumes});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
        "spec": spec})
}

fn failed_scheduling(c: &Cluster, pod: &str) -> String {
    c.wait_event(pod, "FailedScheduling")
}

#[test]
fn the_default_class_provisions_local_volumes_where_the_pod_is_scheduled() {
    let c = Cluster::start(true);
    let k = &c.k;
    hollow_node(k, "n1");
    hollow_node(k, "n2");

    // The default class exists, and a claim naming no class gets it.
    let sc = c.wait("default class", &["sc", "local-path"], |_| true);
    assert_eq!(sc["provisioner"], "pea.dev/local-path");
    assert_eq!(sc["volumeBindingMode"], "WaitForFirstConsumer");
    assert_eq!(sc["reclaimPolicy"], "Delete");
    let classes = k.ok(&["get", "sc"]);
    assert!(classes.contains("local-path (default)"), "{classes}");
    c.create(claim("data", "1Gi", None, json!({})));
    let pvc = c.get(&["pvc", "data"]).unwrap();
    assert_eq!(pvc["spec"]["storageClassName"], "local-path");
    // WaitForFirstConsumer: nothing happens until a pod uses it.
    assert!(c
        .wait_event("data", "WaitForFirstConsumer")
        .contains("waiting for first consumer"));
    assert_eq!(phase(&pvc), "Pending");
    assert!(c.get(&["pv"]).unwrap()["items"]
        .as_array()
        .unwrap()
        .is_empty());

    // The first pod picks the node; the volume is made there and bound.
    c.create(pod_with_claims("writer", &["data"], json!({})));
    let pod = c.wait("writer scheduled", &["pod", "writer"], |p| {
        p["spec"]["nodeName"].is_string()
    });
    let node = pod["spec"]["nodeName"].as_str().unwrap().to_string();
    let other = if node == "n1" { "n2" } else { "n1" };
    let pvc = c.wait("data bound", &["pvc", "data"], |v| phase(v) == "Bound");
    assert_eq!(
        pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
        node.as_str()
    );
    assert_eq!(
        pvc["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"],
        "pea.dev/local-path"
    );
    let pv_name = pvc["spec"]["volumeName"].as_str().unwrap().to_string();
    assert_eq!(
        pv_name,
        format!("pvc-{}", pvc["metadata"]["uid"].as_str().unwrap())
    );
    let pv = c.get(&["pv", &pv_name]).unwrap();
    let base = c.dir.path().join("storage");
    assert_eq!(
        pv["spec"]["hostPath"],
        json!({"path": base.join(&pv_name).to_str().unwrap(), "type": "DirectoryOrCreate"})
    );
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
            ["values"],
        json!([node])
    );
    assert_eq!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
        "pea.dev/local-path"
    );
    assert!(c
        .wait_event("data", "ProvisioningSucceeded")
        .contains(&pv_name));

    // Every later pod of the claim goes to the volume's node; one that must go elsewhere
    // cannot be placed.
    for i in 0..3 {
        c.create(pod_with_claims(
            &format!("reader-{i}"),
            &["data"],
            json!({}),
        ));
    }
    for i in 0..3 {
        let p = c.wait("reader scheduled", &["pod", &format!("reader-{i}")], |p| {
            p["spec"]["nodeName"].is_string()
        });
        assert_eq!(p["spec"]["nodeName"], node.as_str());
    }
    c.create(pod_with_claims(
        "elsewhere",
        &["data"],
        json!({"nodeSelector": {"kubernetes.io/hostname": other}}),
    ));
    let msg = failed_scheduling(&c, "elsewhere");
    assert!(
        msg.starts_with("0/2 nodes are available:")
            && msg.contains("1 node(s) had volume node affinity conflict")
            && msg.contains("1 node(s) didn't match Pod's node affinity/selector"),
        "{msg}"
    );

    // An Immediate class claim nobody binds keeps its pod pending; a missing claim too.
    c.create(
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "now"}, "provisioner": "example.com/absent"}),
    );
    c.create(claim("immediate", "1Gi", Some("now"), json!({})));
    c.create(pod_with_claims("waits", &["immediate"], json!({})));
    let msg = failed_scheduling(&c, "waits");
    assert!(
        msg.contains("pod has unbound immediate PersistentVolumeClaims"),
        "{msg}"
    );
    c.create(pod_with_claims("orphan", &["nope"], json!({})));
    let msg = failed_scheduling(&c, "orphan");
    assert!(
        msg.contains("persistentvolumeclaim \"nope\" not found"),
        "{msg}"
    );
    // Once a volume for the Immediate claim exists, its pod goes where the volume is.
    let mut local = json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "disk-on-other"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "now", "local": {"path": "/mnt/disk"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [other]}]}]}}}});
    local["spec"]["persistentVolumeReclaimPolicy"] = json!("Retain");
    c.create(local);
    c.wait("immediate bound", &["pvc", "immediate"], |v| {
        phase(v) == "Bound"
    });
    let p = c.wait("waits scheduled", &["pod", "waits"], |p| {
        p["spec"]["nodeName"].is_string()
    });
    assert_eq!(p["spec"]["nodeName"], other);

    // Reclaim Delete of a provisioned volume: a cleanup pod on its node removes the directory
    // (the test plays that node's kubelet), then the volume goes.
    for p in ["writer", "reader-0", "reader-1", "reader-2", "elsewhere"] {
        k.ok(&["delete", "pod", p, "--grace-period=0", "--force"]);
    }
    k.ok(&["delete", "pvc", "data"]);
    let helper = format!("delete-{pv_name}");
    let pod = c.wait(
        "cleanup pod",
        &["pod", "-n", "kube-system", &helper],
        |_| true,
    );
    assert_eq!(pod["spec"]["nodeName"], node.as_str());
    assert_eq!(
        pod["spec"]["containers"][0]["command"],
        json!(["rm", "-rf", format!("/data/{pv_name}")])
    );
    assert_eq!(
        pod["spec"]["volumes"][0]["hostPath"]["path"],
        base.to_str().unwrap()
    );
    assert_eq!(
        phase(&c.get(&["pv", &pv_name]).unwrap()),
        "Released",
        "kept until its data is gone"
    );
    k.ok(&[
        "patch",
        "pod",
        "-n",
        "kube-system",
        &helper,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Succeeded"}}"#,
    ]);
    c.wait_gone("provisioned volume deleted", &["pv", &pv_name]);
    c.wait_gone(
        "cleanup pod deleted",
        &["pod", "-n", "kube-system", &helper],
    );
}

//! pea-scheduler (`pea-control scheduler --kubeconfig F`, a separate process) against a real
//! pea-control, driven by the real kubectl 1.32, on "hollow" nodes: Node objects with
//! capacity, labels, taints and a Ready condition written by the test (no kubelet).
//! Placements are asserted; waits are bounded in time and never part of an assertion.
//!
//! Needs the pea-control binary (`cargo build -p pea-control`, or `PEA_CONTROL_BIN`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pea_tests::control::{Backend, ControlPlane, Kubectl};
use serde_json::{json, Value};

/// A `pea-control scheduler` process, killed (by its pid) when dropped.
pub(super) struct SchedulerProcess {
    child: Child,
    log: PathBuf,
}

impl SchedulerProcess {
    pub(super) fn start(kubeconfig: &Path, dir: &Path, name: &str, config: Value) -> Self {
        Self::start_with_args(kubeconfig, dir, name, config, &[])
    }

    /// [`SchedulerProcess::start`] with more of `pea-control scheduler`'s flags.
    pub(super) fn start_with_args(
        kubeconfig: &Path,
        dir: &Path,
        name: &str,
        config: Value,
        args: &[&str],
    ) -> Self {
        let bin = pea_tests::bins::workspace_binary("pea-control", "PEA_CONTROL_BIN");
        let cfg = dir.join(format!("{name}.json"));
        std::fs::write(&cfg, config.to_string()).expect("write scheduler config");
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(bin)
            .args(["scheduler", "--kubeconfig"])
            .arg(kubeconfig)
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .env("RUST_LOG", "info,pea_scheduler=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("scheduler log"))
            .spawn()
            .expect("start pea-control scheduler");
        SchedulerProcess { child, log }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SchedulerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` for up to `secs`; returns its last value.
pub(super) fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Creates a hollow Node: labels, taints, capacity = allocatable, Ready.
pub(super) fn hollow_node(
    k: &Kubectl,
    name: &str,
    cpu: &str,
    memory: &str,
    labels: Value,
    taints: Value,
) {
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints}});
    k.ok_stdin(&["create", "-f", "-"], &node.to_string());
    let resources = json!({"cpu": cpu, "memory": memory, "pods": "110"});
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

pub(super) fn create_pod(k: &Kubectl, name: &str, spec: Value) {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "busybox:1.36"}]);
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec});
    k.ok_stdin(&["create", "-f", "-"], &pod.to_string());
}

/// PriorityClasses by name and value (kube's Priority admission resolves pods' classes).
fn priority_classes(k: &Kubectl, classes: &[(&str, i32)]) {
    for (class, value) in classes {
        k.ok(&[
            "create",
            "priorityclass",
            class,
            &format!("--value={value}"),
        ]);
    }
}

pub(super) fn cpu_spec(cpu: &str) -> Value {
    json!({"terminationGracePeriodSeconds": 0, "containers": [{"name": "c", "image": "busybox:1.36",
        "resources": {"requests": {"cpu": cpu}}}]})
}

pub(super) fn get_pod(k: &Kubectl, name: &str) -> Value {
    serde_json::from_str(&k.ok(&["get", "pod", name, "-o", "json"])).expect("pod json")
}

pub(super) fn node_of(k: &Kubectl, name: &str) -> Option<String> {
    get_pod(k, name)["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

pub(super) fn wait_bound(k: &Kubectl, name: &str, s: &SchedulerProcess) -> String {
    wait_for(30, || node_of(k, name)).unwrap_or_else(|| {
        panic!(
            "pod {name} not bound within 30 s: {}\nscheduler log:\n{}",
            get_pod(k, name)["status"],
            s.log()
        )
    })
}

/// The messages of FailedScheduling events about `pod`.
fn failed_scheduling(k: &Kubectl, pod: &str) -> Vec<String> {
    let list: Value =
        serde_json::from_str(&k.ok(&["get", "events", "-o", "json"])).expect("events json");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == pod && e["reason"] == "FailedScheduling")
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

fn pod_scheduled_condition(k: &Kubectl, name: &str) -> Option<Value> {
    get_pod(k, name)["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .cloned()
}

pub(super) fn cluster() -> (ControlPlane, tempfile::TempDir) {
    let cp = ControlPlane::start(Backend::Embedded).expect("pea-control");
    let dir = tempfile::Builder::new()
        .prefix("pea-scheduler-test-")
        .tempdir()
        .expect("temp dir");
    (cp, dir)
}

#[test]
fn places_pods_by_resources_taints_and_affinity_and_reports_failures() {
    let (cp, dir) = cluster();
    let k = cp.kubectl();
    hollow_node(
        &k,
        "small",
        "1",
        "2Gi",
        json!({"kubernetes.io/hostname": "small"}),
        json!([]),
    );
    hollow_node(
        &k,
        "big",
        "8",
        "16Gi",
        json!({"kubernetes.io/hostname": "big"}),
        json!([]),
    );
    hollow_node(&k, "ssd", "4", "8Gi", json!({"disk": "ssd"}), json!([]));
    hollow_node(
        &k,
        "gpu",
        "8",
        "16Gi",
        json!({"accelerator": "gpu"}),
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
    );
    let s = SchedulerProcess::start(
        &cp.kubeconfig,
        dir.path(),
        "sched",
        json!({"leaderElect": false}),
    );

    // Only "big" has 6 free cpus and no taint.
    create_pod(&k, "big-1", cpu_spec("6"));
    assert_eq!(wait_bound(&k, "big-1", &s), "big");
    // nodeSelector.
    let mut sel = cpu_spec("100m");
    sel["nodeSelector"] = json!({"disk": "ssd"});
    create_pod(&k, "on-ssd", sel);
    assert_eq!(wait_bound(&k, "on-ssd", &s), "ssd");
    // Toleration + required node affinity: the tainted node, and only it.
    let mut gpu = cpu_spec("1");
    gpu["tolerations"] =
        json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
    gpu["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "accelerator", "operator": "In", "values": ["gpu"]}]}]}}});
    create_pod(&k, "on-gpu", gpu);
    assert_eq!(wait_bound(&k, "on-gpu", &s), "gpu");
    // Preferred affinity picks among equals: "ssd" matches, the others don't (gpu is tainted).
    let mut pref = cpu_spec("100m");
    pref["affinity"] = json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}});
    create_pod(&k, "prefers-ssd", pref);
    assert_eq!(wait_bound(&k, "prefers-ssd", &s), "ssd");

    // Another scheduler's pod is left alone.
    let mut other = cpu_spec("100m");
    other["schedulerName"] = json!("other-scheduler");
    create_pod(&k, "not-ours", other);

    // 6 more cpus: "big" has only 2 left, the rest are too small or tainted. Same priority as
    // big-1, so preemption finds no victims on "big".
    create_pod(&k, "big-2", cpu_spec("6"));
    let want = "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient cpu. preemption: 0/4 nodes are available: 1 No preemption victims found for incoming pod, 3 Preemption is not helpful for scheduling.";
    let events = wait_for(30, || {
        let e = failed_scheduling(&k, "big-2");
        (!e.is_empty()).then_some(e)
    })
    .unwrap_or_else(|| panic!("no FailedScheduling event for big-2\n{}", s.log()));
    assert_eq!(events[0], want);
    let cond = wait_for(30, || pod_scheduled_condition(&k, "big-2"))
        .unwrap_or_else(|| panic!("no PodScheduled condition on big-2\n{}", s.log()));
    assert_eq!(cond["status"], "False", "{cond}");
    assert_eq!(cond["reason"], "Unschedulable", "{cond}");
    assert_eq!(cond["message"], want, "{cond}");
    assert_eq!(node_of(&k, "big-2"), None);

    // A node with room appears: the pod leaves the unschedulable pool and binds there.
    hollow_node(&k, "huge", "32", "64Gi", json!({}), json!([]));
    assert_eq!(wait_bound(&k, "big-2", &s), "huge");

    // A binding was recorded as kube does.
    let list: Value = serde_json::from_str(&k.ok(&["get", "events", "-o", "json"])).unwrap();
    let scheduled: Vec<&Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["involvedObject"]["name"] == "big-1" && e["reason"] == "Scheduled")
        .collect();
    assert_eq!(
        scheduled.first().map(|e| e["message"].clone()),
        Some(json!("Successfully assigned default/big-1 to big")),
        "{list}"
    );
    assert_eq!(
        node_of(&k, "not-ours"),
        None,
        "another scheduler's pod was bound"
    );
}

#[test]
fn cordoned_nodes_host_ports_and_preemption() {
    let (cp, dir) = cluster();
    let k = cp.kubectl();
    hollow_node(&k, "a", "4", "8Gi", json!({}), json!([]));
    hollow_node(&k, "b", "4", "8Gi", json!({}), json!([]));
    k.ok(&["cordon", "b"]);
    let s = SchedulerProcess::start(
        &cp.kubeconfig,
        dir.path(),
        "sched",
        json!({"leaderElect": false}),
    );

    let mut web = cpu_spec("1");
    web["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 8080}]);
    create_pod(&k, "web-1", web.clone());
    assert_eq!(wait_bound(&k, "web-1", &s), "a", "b is cordoned");
    // Same host port: "a" has it taken, "b" is cordoned.
    create_pod(&k, "web-2", web);
    let events = wait_for(30, || {
        let e = failed_scheduling(&k, "web-2");
        (!e.is_empty()).then_some(e)
    })
    .unwrap_or_else(|| panic!("no FailedScheduling for web-2\n{}", s.log()));
    assert_eq!(
        events[0],
        "0/2 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, 1 node(s) were unschedulable. preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
    );
    // Uncordoning is a node update: web-2 goes to b.
    k.ok(&["uncordon", "b"]);
    assert_eq!(wait_bound(&k, "web-2", &s), "b");

    // Fill "a" (1 cpu used by web-1) with a low-priority 3-cpu pod and "b" with a
    // high-priority one; a 2-cpu pod of middle priority must preempt the low one on "a".
    // Priority comes from PriorityClasses, as kube's Priority admission requires.
    priority_classes(&k, &[("low", 1), ("high", 1000), ("mid", 100)]);
    let mut low = cpu_spec("3");
    low["priorityClassName"] = json!("low");
    low["nodeName"] = json!("a");
    create_pod(&k, "low", low);
    let mut high = cpu_spec("3");
    high["priorityClassName"] = json!("high");
    high["nodeName"] = json!("b");
    create_pod(&k, "high", high);
    let mut mid = cpu_spec("2");
    mid["priorityClassName"] = json!("mid");
    create_pod(&k, "mid", mid);
    assert_eq!(wait_bound(&k, "mid", &s), "a");
    let gone = wait_for(30, || {
        let out = k.run(&["get", "pod", "low"]);
        (!out.status.success()).then_some(())
    });
    assert!(gone.is_some(), "the victim was not deleted");
    assert_eq!(node_of(&k, "high"), Some("b".into()));
}

#[test]
fn leader_election_hands_over_when_the_leader_dies() {
    let (cp, dir) = cluster();
    let k = cp.kubectl();
    hollow_node(&k, "n1", "4", "8Gi", json!({}), json!([]));
    // Short lease timings keep the test quick; the logic is the same as with 15/10/2.
    let cfg = |id: &str| json!({"identity": id, "leaseDurationSecs": 4, "renewDeadlineSecs": 3, "retryPeriodSecs": 1});
    let mut a = SchedulerProcess::start(&cp.kubeconfig, dir.path(), "a", cfg("sched-a"));
    let holder = |k: &Kubectl| -> Option<(String, i64)> {
        let out = k.run(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            "kube-scheduler",
            "-o",
            "json",
        ]);
        if !out.status.success() {
            return None;
        }
        let l: Value = serde_json::from_slice(&out.stdout).ok()?;
        Some((
            l["spec"]["holderIdentity"].as_str()?.to_string(),
            l["spec"]["leaseTransitions"].as_i64().unwrap_or(0),
        ))
    };
    let (first, transitions) =
        wait_for(30, || holder(&k)).unwrap_or_else(|| panic!("no lease taken\n{}", a.log()));
    assert_eq!(first, "sched-a");
    let b = SchedulerProcess::start(&cp.kubeconfig, dir.path(), "b", cfg("sched-b"));
    create_pod(&k, "p1", cpu_spec("100m"));
    assert_eq!(wait_bound(&k, "p1", &a), "n1");
    assert_eq!(
        holder(&k).map(|h| h.0),
        Some("sched-a".into()),
        "b took a live lease"
    );

    a.kill();
    let (next, later) = wait_for(60, || holder(&k).filter(|h| h.0 == "sched-b"))
        .unwrap_or_else(|| panic!("b never took over\n{}", b.log()));
    assert_eq!(next, "sched-b");
    assert_eq!(later, transitions + 1);
    create_pod(&k, "p2", cpu_spec("100m"));
    assert_eq!(wait_bound(&k, "p2", &b), "n1");
    assert!(b.log().contains("acquired leadership"), "{}", b.log());
}

#[test]
fn required_pod_anti_affinity_spreads_replicas() {
    let (cp, dir) = cluster();
    let k = cp.kubectl();
    for n in ["h1", "h2"] {
        hollow_node(
            &k,
            n,
            "4",
            "8Gi",
            json!({"kubernetes.io/hostname": n}),
            json!([]),
        );
    }
    let s = SchedulerProcess::start(
        &cp.kubeconfig,
        dir.path(),
        "sched",
        json!({"leaderElect": false}),
    );
    let replica = || {
        let mut spec = cpu_spec("100m");
        spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}});
        spec
    };
    let labelled = |name: &str| {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}}, "spec": replica()});
        k.ok_stdin(&["create", "-f", "-"], &pod.to_string());
    };
    labelled("web-0");
    let first = wait_bound(&k, "web-0", &s);
    labelled("web-1");
    let second = wait_bound(&k, "web-1", &s);
    assert_ne!(first, second, "two replicas on one host");
    labelled("web-2");
    let events = wait_for(30, || {
        let e = failed_scheduling(&k, "web-2");
        (!e.is_empty()).then_some(e)
    })
    .unwrap_or_else(|| panic!("no FailedScheduling for web-2\n{}", s.log()));
    assert_eq!(
        events[0],
        "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
    );
    // Deleting a replica frees its host.
    k.ok(&["delete", "pod", "web-0", "--grace-period=0", "--force"]);
    assert_eq!(wait_bound(&k, "web-2", &s), first);
}

#[test]
fn hard_topology_spread_balances_zones_and_waits_when_skew_would_break() {
    let (cp, dir) = cluster();
    let k = cp.kubectl();
    for (n, zone) in [("za1", "a"), ("za2", "a"), ("zb1", "b")] {
        hollow_node(
            &k,
            n,
            "4",
            "8Gi",
            json!({"kubernetes.io/hostname": n, "topology.kubernetes.io/zone": zone}),
            json!([]),
        );
    }
    let s = SchedulerProcess::start(
        &cp.kubeconfig,
        dir.path(),
        "sched",
        json!({"leaderElect": false}),
    );
    let replica = |name: &str| {
        let mut spec = cpu_spec("100m");
        spec["topologySpreadConstraints"] = json!([{"maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "spread"}}}]);
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "spread"}}, "spec": spec});
        k.ok_stdin(&["create", "-f", "-"], &pod.to_string());
    };
    let zone_of = |node: &str| if node.starts_with("za") { "a" } else { "b" };
    let mut per_zone = std::collections::BTreeMap::new();
    for i in 0..4 {
        let name = format!("s{i}");
        replica(&name);
        *per_zone
            .entry(zone_of(&wait_bound(&k, &name, &s)))
            .or_insert(0) += 1;
    }
    assert_eq!(per_zone, [("a", 2), ("b", 2)].into(), "zones unbalanced");
    // Zone b's only node cordoned: one more pod fits zone a (3 - 2 = 1 skew), the next does
    // not (4 - 2 = 2) and waits with kube's reasons until zone b is back.
    k.ok(&[
        "patch",
        "node",
        "zb1",
        "-p",
        r#"{"spec":{"unschedulable":true}}"#,
    ]);
    replica("s4");
    assert_eq!(zone_of(&wait_bound(&k, "s4", &s)), "a");
    replica("s5");
    let events = wait_for(30, || {
        let e = failed_scheduling(&k, "s5");
        (!e.is_empty()).then_some(e)
    })
    .unwrap_or_else(|| panic!("no FailedScheduling for s5\n{}", s.log()));
    assert!(
        events[0].starts_with(
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't match pod topology spread constraints."
        ),
        "{events:?}"
    );
    k.ok(&[
        "patch",
        "node",
        "zb1",
        "-p",
        r#"{"spec":{"unschedulable":false}}"#,
    ]);
    assert_eq!(wait_bound(&k, "s5", &s), "zb1");
}

#[test]
fn pods_a_service_selects_are_spread_by_the_system_default_constraints() {
    let (cp, dir) = cluster();
    let k = cp.kubectl();
    // Least-allocated scoring alone sends every small pod to "big".
    hollow_node(
        &k,
        "big",
        "64",
        "128Gi",
        json!({"kubernetes.io/hostname": "big"}),
        json!([]),
    );
    hollow_node(
        &k,
        "small",
        "2",
        "4Gi",
        json!({"kubernetes.io/hostname": "small"}),
        json!([]),
    );
    let s = SchedulerProcess::start(
        &cp.kubeconfig,
        dir.path(),
        "sched",
        json!({"leaderElect": false}),
    );
    let placed = |app: &str| -> Vec<String> {
        (0..6)
            .map(|i| {
                let name = format!("{app}-{i}");
                let pod = json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "labels": {"app": app}},
                    "spec": {"terminationGracePeriodSeconds": 0,
                        "containers": [{"name": "c", "image": "busybox:1.36"}]}});
                k.ok_stdin(&["create", "-f", "-"], &pod.to_string());
                // One at a time: each placement sees the ones before.
                wait_bound(&k, &name, &s)
            })
            .collect()
    };
    let lonely = placed("lonely");
    assert!(
        lonely.iter().all(|n| n == "big"),
        "no Service selects them: {lonely:?}"
    );
    // A Service selecting the pods: kube's default hostname spread (maxSkew 3, ScheduleAnyway,
    // weight 2) outweighs least-allocated, so "small" gets some of them.
    k.ok_stdin(
        &["create", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
        .to_string(),
    );
    let web = wait_for(30, || {
        // The scheduler's Service informer may trail the create: retry on a fresh set.
        let attempt = placed("web");
        if attempt.iter().any(|n| n == "small") {
            Some(attempt)
        } else {
            for i in 0..6 {
                k.ok(&[
                    "delete",
                    "pod",
                    &format!("web-{i}"),
                    "--grace-period=0",
                    "--force",
                ]);
            }
            None
        }
    })
    .expect("the web pods were never spread to \"small\"");
    let on_small = web.iter().filter(|n| *n == "small").count();
    assert!((2..=4).contains(&on_small), "{web:?}");
}

#[test]
fn preemption_spares_pods_whose_disruption_budget_allows_no_eviction() {
    let (cp, dir) = cluster();
    let k = cp.kubectl();
    hollow_node(&k, "a", "4", "8Gi", json!({}), json!([]));
    hollow_node(&k, "b", "4", "8Gi", json!({}), json!([]));
    priority_classes(&k, &[("lowest", 1), ("low", 50), ("mid", 100)]);
    // The budget is written first, its status by hand (no disruption controller runs here): no
    // eviction allowed for app=guarded.
    k.ok(&[
        "create",
        "poddisruptionbudget",
        "guarded",
        "--selector=app=guarded",
        "--min-available=1",
    ]);
    let status = json!({"status": {"disruptionsAllowed": 0, "currentHealthy": 1,
        "desiredHealthy": 1, "expectedPods": 1, "observedGeneration": 1}});
    k.ok(&[
        "patch",
        "pdb",
        "guarded",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
    // Without the budget kube would preempt on "a": its victim has the lower priority.
    for (name, node, class) in [("guarded", "a", "lowest"), ("free", "b", "low")] {
        let mut spec = cpu_spec("3");
        spec["priorityClassName"] = json!(class);
        spec["nodeName"] = json!(node);
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}}, "spec": spec});
        k.ok_stdin(&["create", "-f", "-"], &pod.to_string());
    }
    let s = SchedulerProcess::start(
        &cp.kubeconfig,
        dir.path(),
        "sched",
        json!({"leaderElect": false}),
    );
    let mut mid = cpu_spec("2");
    mid["priorityClassName"] = json!("mid");
    create_pod(&k, "mid", mid);
    assert_eq!(
        wait_bound(&k, "mid", &s),
        "b",
        "the node whose victim breaks no budget wins"
    );
    let gone = wait_for(30, || {
        (!k.run(&["get", "pod", "free"]).status.success()).then_some(())
    });
    assert!(gone.is_some(), "the victim on b was not deleted");
    assert_eq!(
        node_of(&k, "guarded"),
        Some("a".into()),
        "the guarded pod stays"
    );
}

#[test]
fn required_affinity_finds_pods_in_namespaces_chosen_by_their_labels() {
    let (cp, dir) = cluster();
    let k = cp.kubectl();
    for n in ["a", "b"] {
        hollow_node(
            &k,
            n,
            "4",
            "8Gi",
            json!({"kubernetes.io/hostname": n}),
            json!([]),
        );
    }
    k.ok(&["create", "namespace", "team-a"]);
    k.ok(&["label", "namespace", "team-a", "team=a"]);
    let cache = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "cache", "namespace": "team-a", "labels": {"app": "cache"}},
        "spec": {"nodeName": "b", "containers": [{"name": "c", "image": "busybox:1.36"}]}});
    k.ok_stdin(&["create", "-f", "-"], &cache.to_string());
    let s = SchedulerProcess::start(
        &cp.kubeconfig,
        dir.path(),
        "sched",
        json!({"leaderElect": false}),
    );
    // In "default", next to app=cache pods of the namespaces labelled team=a: only "b" has one.
    // Without the namespace selector the term would look in "default" alone and find nothing.
    let term = json!({"labelSelector": {"matchLabels": {"app": "cache"}},
        "namespaceSelector": {"matchLabels": {"team": "a"}},
        "topologyKey": "kubernetes.io/hostname"});
    create_pod(
        &k,
        "app",
        json!({"terminationGracePeriodSeconds": 0,
            "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}},
            "containers": [{"name": "c", "image": "busybox:1.36"}]}),
    );
    assert_eq!(wait_bound(&k, "app", &s), "b");
}

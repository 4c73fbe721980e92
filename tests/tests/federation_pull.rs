//! Karmada's pull mode against real API servers and the real kubectl 1.32: one Push member
//! (pea-federation dials it) and one Pull member (never dialled: `pea-federation agent` runs as
//! its own process beside it, applies the Works written for it and renews its lease). Members
//! are pea-controls with the deployment and replicaset controllers and a hollow kubelet, as in
//! `federation.rs`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pea_tests::bins::workspace_binary;
use pea_tests::federation::{eventually, path, Federation, Member, WAIT};
use serde_json::{json, Value};

fn replicas(d: &Value) -> i64 {
    d["spec"]["replicas"].as_i64().unwrap_or(-1)
}

const POLICIES: &str = r#"{"apiVersion": "v1", "kind": "List", "items": [
 {"apiVersion": "policy.karmada.io/v1alpha1", "kind": "PropagationPolicy",
  "metadata": {"name": "web", "namespace": "default"},
  "spec": {"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
      {"apiVersion": "apps/v1", "kind": "Deployment", "name": "refused"}],
    "placement": {"clusterAffinity": {"clusterNames": ["push1", "pull1"]},
      "replicaScheduling": {"replicaSchedulingType": "Divided", "replicaDivisionPreference": "Weighted",
        "weightPreference": {"staticWeightList": [
          {"targetCluster": {"clusterNames": ["push1"]}, "weight": 2},
          {"targetCluster": {"clusterNames": ["pull1"]}, "weight": 1}]}}}}},
 {"apiVersion": "policy.karmada.io/v1alpha1", "kind": "OverridePolicy",
  "metadata": {"name": "refused-on-pull1", "namespace": "default"},
  "spec": {"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "refused"}],
    "overrideRules": [{"targetCluster": {"clusterNames": ["pull1"]},
      "overriders": {"plaintext": [{"path": "/spec/replicas", "operator": "replace", "value": -1}]}}]}}
]}"#;

fn deployment(name: &str) -> String {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
      "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
      "spec": {"replicas": 3, "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
          "spec": {"containers": [{"name": "c", "image": "registry.local/busybox:1"}]}}}})
    .to_string()
}

/// Runs `pea-federation agent` with `args` expecting it to fail: its stderr (it must exit within
/// [`WAIT`], non-zero).
fn agent_fails(args: &[&str]) -> String {
    let mut child = Command::new(workspace_binary("pea-federation", "PEA_FEDERATION"))
        .arg("agent")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pea-federation agent");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("agent {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    assert!(!status.success(), "agent {args:?} succeeded: {err}");
    err
}

fn cluster_ready(fed: &Federation, name: &str) -> Option<Value> {
    let c = fed.get(&["cluster", name])?;
    (c["status"]["conditions"][0]["status"] == "True").then_some(c)
}

#[test]
fn a_pull_member_converges_through_works_and_its_lease_drives_failover_and_return() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Failover after 3 s not Ready; a Pull cluster's lease is stale after 3 s.
    let fed = Federation::start_with(Duration::from_secs(3), Duration::from_secs(3));
    let push = Member::start("push1", dir.path());
    let pull = Member::start("pull1", dir.path());
    fed.join(&push, &[]);
    fed.join_pull("pull1", &[]);
    let fast = [
        "--cluster-lease-duration-seconds",
        "2",
        "--cluster-lease-renew-interval-fraction",
        "0.25",
        "--cluster-status-update-seconds",
        "1",
    ];
    let mut agent = fed.spawn_agent(&pull, &dir.path().join("agent.log"), &fast);

    // Both Ready, with their modes, as `kubectl get clusters` prints them.
    eventually("push1 Push True and pull1 Pull True", || {
        agent.assert_running();
        let out = fed.k.ok(&["get", "clusters"]);
        let row = |n: &str, mode: &str| {
            out.lines().any(|l| {
                l.starts_with(n) && l.contains(&format!(" {mode} ")) && l.contains(" True ")
            })
        };
        (row("push1", "Push") && row("pull1", "Pull")).then_some(())
    });
    let lease = fed
        .get(&["lease", "-n", "karmada-cluster", "pull1"])
        .expect("the agent's lease");
    assert_eq!(lease["spec"]["holderIdentity"], "pull1");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 2);
    let c = fed.get(&["cluster", "pull1"]).unwrap();
    assert!(
        c["status"]["resourceSummary"]["allocatable"].is_object(),
        "the agent reports the summary: {c}"
    );

    fed.k.ok_stdin(&["apply", "-f", "-"], POLICIES);
    fed.k.ok_stdin(&["apply", "-f", "-"], &deployment("web"));
    fed.k
        .ok_stdin(&["apply", "-f", "-"], &deployment("refused"));

    // 2:1, the Pull member's share applied by its agent from a Work.
    eventually("web 2 on push1", || {
        push.deployment("web").filter(|d| replicas(d) == 2)
    });
    let uid = fed.get(&["deployment", "web"]).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let d = eventually("web 1 on pull1", || {
        agent.assert_running();
        pull.deployment("web").filter(|d| replicas(d) == 1)
    });
    assert_eq!(
        d["metadata"]["labels"]["federation.pea.dev/template-uid"],
        uid.as_str()
    );
    assert_eq!(d["metadata"]["labels"]["karmada.io/managed"], "true");
    let out = pull.k.ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "json",
        "--show-managed-fields",
    ]);
    let d: Value = serde_json::from_str(&out).expect("deployment json");
    assert!(
        d["metadata"]["managedFields"]
            .as_array()
            .expect("managedFields")
            .iter()
            .any(|f| f["manager"] == "pea-federation" && f["operation"] == "Apply"),
        "the agent applies with push mode's field manager: {d}"
    );
    let work = eventually("web's Work applied", || {
        fed.get(&["works", "-n", "karmada-es-pull1", "deployment.default.web"])
            .filter(|w| w["status"]["conditions"][0]["status"] == "True")
    });
    assert_eq!(
        work["spec"]["workload"]["manifests"][0]["spec"]["replicas"],
        1
    );
    assert_eq!(
        work["metadata"]["finalizers"],
        json!(["karmada.io/execution-controller"])
    );
    let out = fed.k.ok(&["get", "works", "-n", "karmada-es-pull1"]);
    assert!(
        out.contains("WORKLOAD-KIND")
            && out.lines().any(|l| l.starts_with("deployment.default.web ")
                && l.contains(" Deployment ")
                && l.contains(" True ")),
        "{out}"
    );

    // Status summed over both (the Pull member's from its Work's manifestStatuses).
    eventually("readyReplicas 3 on the federation", || {
        let d = fed.get(&["deployment", "web"])?;
        (d["status"]["readyReplicas"] == 3 && d["status"]["availableReplicas"] == 3).then_some(())
    });

    // What the Pull member refuses is reported on its Work, naming the member and the field;
    // the Push member holds its share of the same template.
    let w = eventually("refused's Work failed", || {
        fed.get(&[
            "works",
            "-n",
            "karmada-es-pull1",
            "deployment.default.refused",
        ])
        .filter(|w| w["status"]["conditions"][0]["status"] == "False")
    });
    let msg = w["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("member pull1") && msg.contains("spec.replicas"),
        "{msg}"
    );
    assert!(pull.deployment("refused").is_none());
    eventually("refused 2 on push1", || {
        push.deployment("refused").filter(|d| replicas(d) == 2)
    });
    let rb = eventually("binding names the refusing Pull member", || {
        fed.get(&["resourcebindings", "refused-deployment"])
            .filter(|rb| {
                rb["status"]["conditions"][1]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("member pull1"))
            })
    });
    assert_eq!(rb["status"]["conditions"][1]["status"], "False", "{rb}");

    // Drift in the Pull member is corrected by its agent.
    pull.k
        .ok(&["scale", "deployment", "web", "--replicas", "5"]);
    eventually("pull1 back at 1", || {
        pull.deployment("web").filter(|d| replicas(d) == 1)
    });

    // The agent dies: its lease runs out, the cluster is Unknown, and its share moves.
    drop(agent);
    let c = eventually("pull1 not Ready for its lease", || {
        let c = fed.get(&["cluster", "pull1"])?;
        (c["status"]["conditions"][0]["reason"] == "ClusterStatusUnknown").then_some(c)
    });
    assert_eq!(c["status"]["conditions"][0]["status"], "Unknown");
    let msg = c["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("member pull1") && msg.contains("lease karmada-cluster/pull1"),
        "{msg}"
    );
    eventually("push1 takes pull1's share", || {
        push.deployment("web").filter(|d| replicas(d) == 3)
    });
    let rb = eventually("binding moves the share", || {
        fed.get(&["resourcebindings", "web-deployment"])
            .filter(|rb| {
                rb["spec"]["clusters"]
                    == json!([{"name": "pull1", "replicas": 0}, {"name": "push1", "replicas": 3}])
            })
    });
    assert_eq!(rb["status"]["conditions"][1]["status"], "False", "{rb}");

    // The agent is back: Ready again, the share returns, the Push member's surplus goes.
    let agent = fed.spawn_agent(&pull, &dir.path().join("agent2.log"), &fast);
    eventually("pull1 Ready again", || cluster_ready(&fed, "pull1"));
    eventually("push1 back at 2", || {
        push.deployment("web").filter(|d| replicas(d) == 2)
    });
    eventually("pull1 at 1", || {
        pull.deployment("web").filter(|d| replicas(d) == 1)
    });

    // The template goes: gone from both members, its Work released by the agent.
    fed.k.ok(&["delete", "deployment", "web", "--timeout=40s"]);
    assert!(pull.deployment("web").is_none(), "web left in pull1");
    assert!(push.deployment("web").is_none(), "web left in push1");
    assert!(fed
        .get(&["works", "-n", "karmada-es-pull1", "deployment.default.web"])
        .is_none());
    fed.k
        .ok(&["delete", "deployment", "refused", "--timeout=40s"]);
    assert!(push.deployment("refused").is_none());

    // Unjoined with its agent gone: the Cluster and its lease go.
    drop(agent);
    pea_tests::federation::pea(&[
        "federation",
        "unjoin",
        "pull1",
        "--kubeconfig",
        path(&fed.cp.kubeconfig),
    ]);
    assert!(fed.get(&["cluster", "pull1"]).is_none());
    assert!(fed
        .get(&["lease", "-n", "karmada-cluster", "pull1"])
        .is_none());
}

#[test]
fn the_agent_refuses_wrong_credentials_an_unknown_cluster_and_a_push_cluster_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fed = Federation::plane();
    let member = Member::start("m1", dir.path());
    let fed_kc = path(&fed.cp.kubeconfig);
    let member_kc = path(&member.kubeconfig);

    // A kubeconfig for the federation API whose token it refuses.
    let ca = fed.cp.running().pki.ca.cert_pem.clone();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let bad = dir.path().join("bad.kubeconfig");
    let kc = json!({"apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "fed", "cluster": {"server": format!("https://{}", fed.cp.addr),
            "certificate-authority": path(&ca_file)}}],
        "users": [{"name": "u", "user": {"token": "not-a-valid-token"}}],
        "contexts": [{"name": "c", "context": {"cluster": "fed", "user": "u"}}],
        "current-context": "c"});
    std::fs::write(&bad, kc.to_string()).unwrap();
    let err = agent_fails(&[
        "--kubeconfig",
        path(&bad),
        "--cluster-kubeconfig",
        member_kc,
        "--cluster-name",
        "m1",
    ]);
    assert!(
        err.contains("refused the credentials of") && err.contains("bad.kubeconfig"),
        "{err}"
    );

    let err = agent_fails(&[
        "--kubeconfig",
        fed_kc,
        "--cluster-kubeconfig",
        member_kc,
        "--cluster-name",
        "nope",
    ]);
    assert!(err.contains("cluster nope is not joined"), "{err}");

    // Push needs the member's kubeconfig (pea-federation dials it); the CLI says so.
    let out = Command::new(workspace_binary("pea", "PEA_CLI"))
        .args(["federation", "join", "m1", "--kubeconfig", fed_kc])
        .env("HOME", dir.path())
        .output()
        .expect("run pea");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("member m1: --cluster-kubeconfig is required for --sync-mode Push"),
        "{err}"
    );

    fed.join(&member, &[]);
    let err = agent_fails(&[
        "--kubeconfig",
        fed_kc,
        "--cluster-kubeconfig",
        member_kc,
        "--cluster-name",
        "m1",
    ]);
    assert!(err.contains("cluster m1 has spec.syncMode Push"), "{err}");

    // --register makes its own Pull cluster (no `pea federation join`).
    let mut agent = fed.spawn_agent_named(
        &member,
        "self-registered",
        &dir.path().join("agent.log"),
        &["--register"],
    );
    let c = eventually("the registered cluster Ready", || {
        agent.assert_running();
        cluster_ready(&fed, "self-registered")
    });
    assert_eq!(c["spec"]["syncMode"], "Pull");
    let out = fed.k.ok(&["get", "clusters"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("self-registered") && l.contains(" Pull ")),
        "{out}"
    );
    drop(agent);
}

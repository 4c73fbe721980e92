//! pea-federation against real API servers, driven by the real kubectl 1.32: three members (each
//! a pea-control with the deployment and replicaset controllers and a hollow kubelet that marks
//! pods Ready without containers) and a federation API (a pea-control with no controllers, the
//! CRDs installed by `pea federation init`, members added by `pea federation join`). Each member is
//! reached through a loopback relay the test can cut, which is how a member becomes unreachable.

use std::time::{Duration, Instant};

use pea_tests::federation::{eventually, path, pea, Federation, Member, WAIT};
use serde_json::{json, Value};

fn replicas_and_image(d: &Value) -> (i64, String) {
    (
        d["spec"]["replicas"].as_i64().unwrap_or(-1),
        d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

const DEPLOYMENT: &str = r#"{"apiVersion": "apps/v1", "kind": "Deployment",
  "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
  "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
    "template": {"metadata": {"labels": {"app": "web"}},
      "spec": {"containers": [{"name": "web", "image": "registry.local/busybox:1"}]}}}}"#;

const POLICIES: &str = r#"{"apiVersion": "v1", "kind": "List", "items": [
 {"apiVersion": "policy.karmada.io/v1alpha1", "kind": "PropagationPolicy",
  "metadata": {"name": "web", "namespace": "default"},
  "spec": {"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}],
    "placement": {"clusterAffinity": {"clusterNames": ["m1", "m2"]},
      "replicaScheduling": {"replicaSchedulingType": "Divided", "replicaDivisionPreference": "Weighted",
        "weightPreference": {"staticWeightList": [
          {"targetCluster": {"clusterNames": ["m1"]}, "weight": 2},
          {"targetCluster": {"clusterNames": ["m2"]}, "weight": 1}]}}}}},
 {"apiVersion": "policy.karmada.io/v1alpha1", "kind": "ClusterPropagationPolicy",
  "metadata": {"name": "everything-everywhere"},
  "spec": {"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment"}, {"apiVersion": "v1", "kind": "ConfigMap",
      "labelSelector": {"matchLabels": {"spread": "all"}}}],
    "placement": {"clusterAffinity": {"labelSelector": {"matchLabels": {"site": "lab"}}}}}},
 {"apiVersion": "policy.karmada.io/v1alpha1", "kind": "OverridePolicy",
  "metadata": {"name": "m2-image", "namespace": "default"},
  "spec": {"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}],
    "overrideRules": [{"targetCluster": {"clusterNames": ["m2"]},
      "overriders": {"imageOverrider": [{"component": "Tag", "operator": "replace", "value": "2"}],
        "labelsOverrider": [{"operator": "add", "value": {"site-override": "m2"}}]}}]}}
]}"#;

#[test]
fn a_divided_deployment_lands_by_weight_fails_over_comes_back_and_is_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fed = Federation::start(Duration::from_secs(3));
    let mut members: Vec<Member> = ["m1", "m2", "m3"]
        .iter()
        .map(|n| Member::start(n, dir.path()))
        .collect();
    for m in &members {
        fed.join(m, &["site=lab"]);
    }
    // Every member Ready, as `kubectl get clusters` prints it.
    eventually("three Ready clusters", || {
        let out = fed.k.ok(&["get", "clusters"]);
        (out.lines()
            .filter(|l| l.contains(" Push ") && l.contains(" True "))
            .count()
            == 3)
            .then_some(())
    });

    fed.k.ok_stdin(&["apply", "-f", "-"], POLICIES);
    fed.k.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    fed.k.ok_stdin(&["apply", "-f", "-"], r#"{"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "shared", "namespace": "default", "labels": {"spread": "all"}}, "data": {"k": "v"}}"#);

    // 2:1 by weight (the named PropagationPolicy beats the cluster-wide one), image override on m2.
    let m1 = eventually("web 2 replicas on m1", || {
        members[0]
            .deployment("web")
            .filter(|d| replicas_and_image(d).0 == 2)
    });
    assert_eq!(replicas_and_image(&m1).1, "registry.local/busybox:1");
    let uid = fed.get(&["deployment", "web"]).expect("template")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        m1["metadata"]["labels"]["federation.pea.dev/template-uid"],
        uid.as_str()
    );
    assert_eq!(m1["metadata"]["labels"]["karmada.io/managed"], "true");
    let m2 = eventually("web 1 replica on m2", || {
        members[1]
            .deployment("web")
            .filter(|d| replicas_and_image(d).0 == 1)
    });
    assert_eq!(replicas_and_image(&m2).1, "registry.local/busybox:2");
    assert_eq!(m2["metadata"]["labels"]["site-override"], "m2");
    assert!(
        members[2].deployment("web").is_none(),
        "m3 is outside the placement"
    );
    // The ConfigMap the cluster-wide policy selects by label is on all three.
    for m in &members {
        eventually("configmap on every member", || {
            m.k.run(&["get", "configmap", "shared"])
                .status
                .success()
                .then_some(())
        });
    }

    // Status summed on the federation; per-member status in the binding.
    eventually("readyReplicas 3 on the federation", || {
        let d = fed.get(&["deployment", "web"])?;
        (d["status"]["readyReplicas"] == 3
            && d["status"]["replicas"] == 3
            && d["status"]["availableReplicas"] == 3)
            .then_some(())
    });
    let out = fed.k.ok(&["get", "deployment", "web"]);
    assert!(
        out.contains("3/3"),
        "kubectl get deploy on the federation: {out}"
    );
    let rb = eventually("binding with both members", || {
        fed.get(&["resourcebindings", "web-deployment"])
            .filter(|rb| {
                rb["status"]["aggregatedStatus"]
                    .as_array()
                    .is_some_and(|a| a.len() == 2)
            })
    });
    assert_eq!(
        rb["spec"]["clusters"],
        json!([{"name": "m1", "replicas": 2}, {"name": "m2", "replicas": 1}])
    );
    assert_eq!(rb["status"]["conditions"][1]["status"], "True", "{rb}");
    let events = fed.k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web",
        "-o",
        "json",
    ]);
    assert!(events.contains("PropagationPolicy default/web wins over ClusterPropagationPolicy everything-everywhere"), "{events}");

    // Drift in a member is corrected.
    members[0]
        .k
        .ok(&["scale", "deployment", "web", "--replicas", "5"]);
    eventually("m1 back at 2", || {
        members[0]
            .deployment("web")
            .filter(|d| replicas_and_image(d).0 == 2)
    });

    // m2 unreachable: Ready False naming it; after the toleration its share moves to m1.
    let rt = members[1].rt.take().expect("runtime");
    members[1].relay.cut();
    eventually("m2 not Ready", || {
        let c = fed.get(&["cluster", "m2"])?;
        let cond = &c["status"]["conditions"][0];
        (cond["status"] == "False"
            && cond["reason"] == "ClusterNotReachable"
            && cond["message"].as_str()?.contains("member m2"))
        .then_some(())
    });
    eventually("m1 takes m2's share", || {
        members[0]
            .deployment("web")
            .filter(|d| replicas_and_image(d).0 == 3)
    });
    let rb = eventually("binding names the unreachable member", || {
        fed.get(&["resourcebindings", "web-deployment"])
            .filter(|rb| rb["status"]["conditions"][1]["status"] == "False")
    });
    assert!(
        rb["status"]["conditions"][1]["message"]
            .as_str()
            .unwrap()
            .contains("member m2"),
        "{rb}"
    );
    assert_eq!(
        rb["spec"]["clusters"],
        json!([{"name": "m1", "replicas": 3}, {"name": "m2", "replicas": 0}])
    );

    // m2 back: its share returns and m1's surplus is removed.
    members[1].relay.restore(&rt);
    members[1].rt = Some(rt);
    eventually("m1 back at 2 after m2 returns", || {
        members[0]
            .deployment("web")
            .filter(|d| replicas_and_image(d).0 == 2)
    });
    eventually("m2 at 1", || {
        members[1]
            .deployment("web")
            .filter(|d| replicas_and_image(d).0 == 1)
    });
    eventually("m2 Ready again", || {
        let c = fed.get(&["cluster", "m2"])?;
        (c["status"]["conditions"][0]["status"] == "True").then_some(())
    });

    // The template goes: member objects go, then the template and its binding.
    fed.k.ok(&["delete", "deployment", "web", "--timeout=40s"]);
    for m in &members[..2] {
        assert!(
            m.deployment("web").is_none(),
            "{}: web still there after the template was deleted",
            m.name
        );
    }
    assert!(fed.get(&["resourcebindings", "web-deployment"]).is_none());
    fed.k
        .ok(&["delete", "configmap", "shared", "--timeout=40s"]);
    for m in &members {
        assert!(
            !m.k.run(&["get", "configmap", "shared"]).status.success(),
            "{}: configmap left",
            m.name
        );
    }
    drop(members);
}

#[test]
fn wrong_credentials_and_invalid_overrides_are_reported_by_member_and_field_while_others_converge()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let fed = Federation::start(Duration::from_secs(300));
    let members: Vec<Member> = ["m1", "m2"]
        .iter()
        .map(|n| Member::start(n, dir.path()))
        .collect();
    for m in &members {
        fed.join(m, &[]);
    }
    // A member whose Secret holds Karmada's token + caBundle, with a token the member refuses.
    let ca = members[0].cp.running().pki.ca.cert_pem.clone();
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "bad", "namespace": "karmada-cluster"},
        "stringData": {"token": "not-a-valid-token", "caBundle": ca}});
    fed.k.ok_stdin(&["apply", "-f", "-"], &secret.to_string());
    let cluster = json!({"apiVersion": "cluster.karmada.io/v1alpha1", "kind": "Cluster",
        "metadata": {"name": "bad"},
        "spec": {"apiEndpoint": format!("https://127.0.0.1:{}", members[0].relay.port), "syncMode": "Push",
            "secretRef": {"namespace": "karmada-cluster", "name": "bad"}}});
    fed.k.ok_stdin(&["apply", "-f", "-"], &cluster.to_string());
    let c = eventually("bad not Ready for its credentials", || {
        let c = fed.get(&["cluster", "bad"])?;
        (c["status"]["conditions"][0]["reason"] == "ClusterCredentialsInvalid").then_some(c)
    });
    let msg = c["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("member bad") && msg.contains("secretRef"),
        "{msg}"
    );

    fed.k.ok_stdin(&["apply", "-f", "-"], r#"{"apiVersion": "v1", "kind": "List", "items": [
      {"apiVersion": "policy.karmada.io/v1alpha1", "kind": "ClusterPropagationPolicy",
       "metadata": {"name": "all"},
       "spec": {"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment"}],
         "placement": {"replicaScheduling": {"replicaSchedulingType": "Duplicated"}}}},
      {"apiVersion": "policy.karmada.io/v1alpha1", "kind": "OverridePolicy",
       "metadata": {"name": "broken", "namespace": "default"},
       "spec": {"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment"}],
         "overrideRules": [{"targetCluster": {"clusterNames": ["m1"]},
           "overriders": {"plaintext": [{"path": "/spec/replicas", "operator": "replace", "value": -1}]}}]}}]}"#);
    fed.k.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);

    // m2 converges regardless of m1's invalid override and the refused member.
    eventually("web on m2", || {
        members[1]
            .deployment("web")
            .filter(|d| replicas_and_image(d).0 == 3)
    });
    let rb = eventually("binding reports both failures", || {
        fed.get(&["resourcebindings", "web-deployment"])
            .filter(|rb| {
                let m = rb["status"]["conditions"][1]["message"]
                    .as_str()
                    .unwrap_or("");
                m.contains("member m1") && m.contains("member bad")
            })
    });
    let m = rb["status"]["conditions"][1]["message"].as_str().unwrap();
    assert_eq!(rb["status"]["conditions"][1]["status"], "False");
    assert!(
        m.contains("spec.replicas"),
        "the member's refusal names the field: {m}"
    );
    assert!(
        members[0].deployment("web").is_none(),
        "m1 refused the invalid object"
    );
    let events = fed.k.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=ApplyFailed",
        "-o",
        "json",
    ]);
    assert!(
        events.contains("member m1") && events.contains("spec.replicas"),
        "{events}"
    );

    // Fixing the override lets m1 converge too.
    fed.k.ok(&["delete", "overridepolicy", "broken"]);
    eventually("web on m1 after the fix", || {
        members[0]
            .deployment("web")
            .filter(|d| replicas_and_image(d).0 == 3)
    });
    let status = pea(&[
        "federation",
        "status",
        "--kubeconfig",
        path(&fed.cp.kubeconfig),
    ]);
    assert!(
        status.contains("web-deployment") && status.contains("bad"),
        "{status}"
    );
    pea(&[
        "federation",
        "unjoin",
        "bad",
        "--kubeconfig",
        path(&fed.cp.kubeconfig),
    ]);
    assert!(!fed
        .k
        .run(&["get", "secret", "-n", "karmada-cluster", "bad"])
        .status
        .success());
    fed.k.ok(&["delete", "deployment", "web", "--timeout=40s"]);
    for m in &members {
        assert!(m.deployment("web").is_none(), "{}: web left", m.name);
    }
}

/// Whether the member holds ClusterRole `name`.
fn has_clusterrole(m: &Member, name: &str) -> bool {
    m.k.run(&["get", "clusterrole", name]).status.success()
}

#[test]
fn cluster_scoped_templates_cluster_overrides_taints_and_spread_constraints() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Full passes every 60 s (the fixture's default) and waits of at most 40 s: every step
    // below is driven by watch events.
    let fed = Federation::start(Duration::from_secs(300));
    let members: Vec<Member> = ["m1", "m2"]
        .iter()
        .map(|n| Member::start(n, dir.path()))
        .collect();
    for m in &members {
        fed.join(m, &["site=lab"]);
    }
    eventually("two Ready clusters", || {
        let out = fed.k.ok(&["get", "clusters"]);
        (out.lines().filter(|l| l.contains(" True ")).count() == 2).then_some(())
    });
    fed.k.ok_stdin(&["apply", "-f", "-"], r#"{"apiVersion": "v1", "kind": "List", "items": [
      {"apiVersion": "policy.karmada.io/v1alpha1", "kind": "ClusterPropagationPolicy",
       "metadata": {"name": "roles"},
       "spec": {"resourceSelectors": [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "name": "reader"}],
         "placement": {}}},
      {"apiVersion": "policy.karmada.io/v1alpha1", "kind": "ClusterPropagationPolicy",
       "metadata": {"name": "spread"},
       "spec": {"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment"}],
         "placement": {"spreadConstraints": [{"spreadByField": "cluster", "maxGroups": 1, "minGroups": 1}],
           "replicaScheduling": {"replicaSchedulingType": "Divided", "replicaDivisionPreference": "Weighted",
             "weightPreference": {"staticWeightList": [
               {"targetCluster": {"clusterNames": ["m1"]}, "weight": 1},
               {"targetCluster": {"clusterNames": ["m2"]}, "weight": 2}]}}}}},
      {"apiVersion": "policy.karmada.io/v1alpha1", "kind": "ClusterOverridePolicy",
       "metadata": {"name": "fleet"},
       "spec": {"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment"}],
         "overrideRules": [{"overriders": {
           "labelsOverrider": [{"operator": "add", "value": {"fleet": "all"}}],
           "annotationsOverrider": [{"operator": "add", "value": {"tier": "cluster"}}]}}]}},
      {"apiVersion": "policy.karmada.io/v1alpha1", "kind": "OverridePolicy",
       "metadata": {"name": "tier", "namespace": "default"},
       "spec": {"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}],
         "overrideRules": [{"targetCluster": {"clusterNames": ["m2"]}, "overriders": {
           "annotationsOverrider": [{"operator": "replace", "value": {"tier": "namespaced"}}]}}]}}]}"#);
    fed.k.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    fed.k.ok_stdin(&["apply", "-f", "-"], r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "reader"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}"#);

    // spreadConstraints maxGroups 1: only the heavier m2 gets web, with all 3 replicas; the
    // ClusterOverridePolicy applies first, the OverridePolicy after it (it wins on m2).
    let web = eventually("web with 3 replicas on m2", || {
        members[1]
            .deployment("web")
            .filter(|d| replicas_and_image(d).0 == 3)
    });
    assert_eq!(web["metadata"]["labels"]["fleet"], "all", "{web}");
    assert_eq!(
        web["metadata"]["annotations"]["tier"], "namespaced",
        "{web}"
    );
    assert!(
        members[0].deployment("web").is_none(),
        "maxGroups 1 keeps web off m1"
    );
    eventually("readyReplicas 3 on the federation", || {
        let d = fed.get(&["deployment", "web"])?;
        (d["status"]["readyReplicas"] == 3).then_some(())
    });

    // A cluster-scoped template: on both members, bound by a ClusterResourceBinding.
    for m in &members {
        eventually("reader on every member", || {
            has_clusterrole(m, "reader").then_some(())
        });
    }
    let crb = eventually("ClusterResourceBinding reader-clusterrole", || {
        fed.get(&["clusterresourcebindings", "reader-clusterrole"])
            .filter(|b| b["status"]["conditions"][1]["status"] == "True")
    });
    assert_eq!(
        crb["spec"]["clusters"],
        json!([{"name": "m1"}, {"name": "m2"}]),
        "{crb}"
    );
    let out = fed.k.ok(&["get", "clusterresourcebindings"]);
    assert!(
        out.contains("reader-clusterrole") && out.contains("ClusterRole"),
        "{out}"
    );

    // A NoExecute taint on m1 that the policy does not tolerate: reader leaves m1.
    fed.k.ok(&[
        "patch",
        "cluster",
        "m1",
        "--type",
        "merge",
        "-p",
        r#"{"spec": {"taints": [{"key": "maintenance", "value": "disk", "effect": "NoExecute"}]}}"#,
    ]);
    eventually("reader gone from the tainted m1", || {
        (!has_clusterrole(&members[0], "reader")).then_some(())
    });
    assert!(has_clusterrole(&members[1], "reader"), "m2 keeps reader");
    eventually("binding without m1", || {
        fed.get(&["clusterresourcebindings", "reader-clusterrole"])
            .filter(|b| b["spec"]["clusters"] == json!([{"name": "m2"}]))
    });
    // A toleration brings it back.
    fed.k.ok(&["patch", "clusterpropagationpolicy", "roles", "--type", "merge", "-p",
        r#"{"spec": {"placement": {"clusterTolerations": [{"key": "maintenance", "operator": "Exists", "effect": "NoExecute"}]}}}"#]);
    eventually("reader back on m1 once tolerated", || {
        has_clusterrole(&members[0], "reader").then_some(())
    });
    // A spread constraint no placement can meet is reported, naming the field.
    fed.k.ok(&["patch", "clusterpropagationpolicy", "spread", "--type", "merge", "-p",
        r#"{"spec": {"placement": {"spreadConstraints": [{"spreadByField": "cluster", "minGroups": 3}]}}}"#]);
    let rb = eventually("binding names the unmet spread constraint", || {
        fed.get(&["resourcebindings", "web-deployment"])
            .filter(|rb| rb["status"]["conditions"][0]["status"] == "False")
    });
    let msg = rb["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("spreadConstraints[0]") && msg.contains("minGroups 3"),
        "{msg}"
    );

    // Deleting the cluster-scoped template removes it from the members and its binding.
    fed.k
        .ok(&["delete", "clusterrole", "reader", "--timeout=40s"]);
    for m in &members {
        assert!(!has_clusterrole(m, "reader"), "{}: reader left", m.name);
    }
    assert!(fed
        .get(&["clusterresourcebindings", "reader-clusterrole"])
        .is_none());
    fed.k.ok(&["delete", "deployment", "web", "--timeout=40s"]);
    for m in &members {
        assert!(m.deployment("web").is_none(), "{}: web left", m.name);
    }
}

/// The order bench-federation uses: members joined first, then pea-federation started as its
/// own program (the real binary, not the library in-process), then a ClusterPropagationPolicy
/// without clusterAffinity dividing Deployments across every member.
#[test]
fn the_standalone_binary_started_after_members_joined_propagates_and_sums_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fed = Federation::plane();
    let members: Vec<Member> = ["m1", "m2"]
        .iter()
        .map(|n| Member::start(n, dir.path()))
        .collect();
    for m in &members {
        fed.join(m, &[]);
    }
    let mut ctl = fed.spawn_controller(
        &dir.path().join("pea-federation.log"),
        "pea_federation=debug",
        &["--resync-seconds", "0.5", "--member-timeout-seconds", "2"],
    );
    let ready = || {
        let out = fed.k.ok(&["get", "clusters"]);
        (out.lines().filter(|l| l.contains(" True ")).count() == 2).then_some(())
    };
    let deadline = Instant::now() + WAIT;
    while ready().is_none() {
        ctl.assert_running();
        assert!(
            Instant::now() < deadline,
            "members not Ready:\n{}",
            ctl.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    fed.k.ok_stdin(&["apply", "-f", "-"], r#"{"apiVersion": "policy.karmada.io/v1alpha1", "kind": "ClusterPropagationPolicy",
        "metadata": {"name": "bench"},
        "spec": {"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment"}],
          "placement": {"replicaScheduling": {"replicaSchedulingType": "Divided", "replicaDivisionPreference": "Weighted"}}}}"#);
    fed.k.ok_stdin(
        &["apply", "-f", "-"],
        &DEPLOYMENT.replace("\"replicas\": 3", "\"replicas\": 2"),
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let on_members = members
            .iter()
            .filter(|m| {
                m.deployment("web")
                    .is_some_and(|d| replicas_and_image(&d).0 == 1)
            })
            .count();
        let summed = fed
            .get(&["deployment", "web"])
            .is_some_and(|d| d["status"]["readyReplicas"] == 2);
        if on_members == 2 && summed {
            break;
        }
        ctl.assert_running();
        assert!(
            Instant::now() < deadline,
            "web on {on_members}/2 members, summed: {summed}; pea-federation's log:\n{}",
            ctl.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    fed.k.ok(&["delete", "deployment", "web", "--timeout=40s"]);
    for m in &members {
        assert!(m.deployment("web").is_none(), "{}: web left", m.name);
    }
    drop(ctl);
}

/// A Deployment `name` with `replicas` pods requesting `requests` (a JSON resource list).
fn deployment_requesting(name: &str, replicas: i64, requests: Value) -> String {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
      "metadata": {"name": name, "namespace": "default"},
      "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
          "spec": {"containers": [{"name": "c", "image": "registry.local/busybox:1",
            "resources": {"requests": requests}}]}}}})
    .to_string()
}

fn replicas_on(m: &Member, name: &str) -> Option<i64> {
    m.deployment(name).map(|d| replicas_and_image(&d).0)
}

#[test]
fn replicas_divided_by_capacity_aggregated_and_spread_by_region() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fed = Federation::start(Duration::from_secs(300));
    let members: Vec<Member> = ["m1", "m2", "m3"]
        .iter()
        .map(|n| Member::start(n, dir.path()))
        .collect();
    // m1 fits four 1-CPU pods, m2 two, m3 none (half a CPU); memory 8:4:2 GiB.
    for (m, cpu, mem) in [
        (&members[0], "4", "8Gi"),
        (&members[1], "2", "4Gi"),
        (&members[2], "500m", "2Gi"),
    ] {
        m.set_node(&format!("{}-node", m.name), cpu, mem);
        fed.join(m, &[]);
    }
    // Karmada's resourceSummary on each Cluster, from the member's Nodes and Pods.
    for (name, cpu) in [("m1", "4"), ("m2", "2"), ("m3", "500m")] {
        eventually("resourceSummary on the cluster", || {
            let c = fed.get(&["cluster", name])?;
            let s = &c["status"]["resourceSummary"];
            (s["allocatable"]["cpu"] == cpu && s["allocatable"]["pods"] == "110").then_some(())
        });
    }

    fed.k.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "List", "items": [
 {"apiVersion": "policy.karmada.io/v1alpha1", "kind": "PropagationPolicy",
  "metadata": {"name": "by-capacity", "namespace": "default"},
  "spec": {"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "dyn"}],
    "placement": {"replicaScheduling": {"replicaSchedulingType": "Divided",
      "replicaDivisionPreference": "Weighted", "weightPreference": {"dynamicWeight": "AvailableReplicas"}}}}},
 {"apiVersion": "policy.karmada.io/v1alpha1", "kind": "PropagationPolicy",
  "metadata": {"name": "packed", "namespace": "default"},
  "spec": {"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "agg"}],
    "placement": {"replicaScheduling": {"replicaSchedulingType": "Divided",
      "replicaDivisionPreference": "Aggregated"}}}}]}"#,
    );
    // dynamicWeight AvailableReplicas: 6 one-CPU replicas as 4:2, none on m3.
    fed.k.ok_stdin(
        &["apply", "-f", "-"],
        &deployment_requesting("dyn", 6, json!({"cpu": "1"})),
    );
    eventually("dyn 4 on m1", || {
        (replicas_on(&members[0], "dyn") == Some(4)).then_some(())
    });
    eventually("dyn 2 on m2", || {
        (replicas_on(&members[1], "dyn") == Some(2)).then_some(())
    });
    let rb = eventually("dyn's binding", || {
        fed.get(&["resourcebindings", "dyn-deployment"])
            .filter(|rb| rb["status"]["conditions"][0]["status"] == "True")
    });
    assert_eq!(
        rb["spec"]["clusters"],
        json!([{"name": "m1", "replicas": 4}, {"name": "m2", "replicas": 2}]),
        "{rb}"
    );
    assert_eq!(replicas_on(&members[2], "dyn"), None, "m3 fits none");
    eventually("dyn 6/6 on the federation", || {
        let d = fed.get(&["deployment", "dyn"])?;
        (d["status"]["readyReplicas"] == 6).then_some(())
    });

    // Aggregated: 10 one-GiB replicas need m1 (8) and m2 (4), not m3: 10*8/12 = 6 (+1), 10*4/12 = 3.
    fed.k.ok_stdin(
        &["apply", "-f", "-"],
        &deployment_requesting("agg", 10, json!({"memory": "1Gi"})),
    );
    eventually("agg 7 on m1", || {
        (replicas_on(&members[0], "agg") == Some(7)).then_some(())
    });
    eventually("agg 3 on m2", || {
        (replicas_on(&members[1], "agg") == Some(3)).then_some(())
    });
    assert_eq!(replicas_on(&members[2], "agg"), None, "aggregated skips m3");

    // The members' CPUs are taken by dyn's pods (allocated when bound to the node, allocating
    // while not): one more replica fits nowhere — the binding says so and the members keep
    // their share.
    for (name, cpus) in [("m1", 4), ("m2", 2)] {
        eventually("the summary counts dyn's pods", || {
            let c = fed.get(&["cluster", name])?;
            let s = &c["status"]["resourceSummary"];
            let cpu = |l: &str| {
                s[l]["cpu"]
                    .as_str()
                    .and_then(|q| q.parse::<i64>().ok())
                    .unwrap_or(0)
            };
            (cpu("allocated") + cpu("allocating") == cpus).then_some(())
        });
    }
    fed.k.ok(&["scale", "deployment", "dyn", "--replicas", "7"]);
    let rb = eventually("dyn unschedulable", || {
        fed.get(&["resourcebindings", "dyn-deployment"])
            .filter(|rb| rb["status"]["conditions"][0]["status"] == "False")
    });
    let msg = rb["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("clusters resources are not enough to schedule, max 0 replicas are support")
            && msg.contains("m3 fits 0"),
        "{rb}"
    );
    assert_eq!(
        rb["spec"]["clusters"],
        json!([{"name": "m1", "replicas": 4}, {"name": "m2", "replicas": 2}]),
        "the binding keeps the division the members hold: {rb}"
    );
    // m3 grows to 2 CPUs: only the new replica goes there; m1 and m2 keep theirs.
    members[2].set_node("m3-node", "2", "2Gi");
    eventually("dyn 1 on m3", || {
        (replicas_on(&members[2], "dyn") == Some(1)).then_some(())
    });
    assert_eq!(replicas_on(&members[0], "dyn"), Some(4));
    assert_eq!(replicas_on(&members[1], "dyn"), Some(2));

    // Spread by region: m1 and m2 in east, m3 in west; two regions means one member of each.
    for (name, region) in [("m1", "east"), ("m2", "east"), ("m3", "west")] {
        fed.k.ok(&[
            "patch",
            "cluster",
            name,
            "--type=merge",
            "-p",
            &json!({"spec": {"region": region}}).to_string(),
        ]);
    }
    let out = fed.k.ok(&["get", "clusters", "-o", "wide"]);
    assert!(out.contains("REGION") && out.contains("west"), "{out}");
    fed.k.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "List", "items": [
 {"apiVersion": "policy.karmada.io/v1alpha1", "kind": "PropagationPolicy",
  "metadata": {"name": "two-regions", "namespace": "default"},
  "spec": {"resourceSelectors": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "regional"}],
    "placement": {"spreadConstraints": [
      {"spreadByField": "region", "minGroups": 2, "maxGroups": 2},
      {"spreadByField": "cluster", "maxGroups": 2}]}}},
 {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "regional", "namespace": "default"},
  "data": {"k": "v"}}]}"#,
    );
    let has_cm = |m: &Member| m.k.run(&["get", "configmap", "regional"]).status.success();
    eventually("regional on m1 and m3", || {
        (has_cm(&members[0]) && has_cm(&members[2])).then_some(())
    });
    assert!(!has_cm(&members[1]), "one member per region");
    // Three regions cannot be had: the policy's error names the constraint.
    fed.k.ok(&[
        "patch",
        "propagationpolicy",
        "two-regions",
        "--type=json",
        "-p",
        r#"[{"op": "replace", "path": "/spec/placement/spreadConstraints/0/minGroups", "value": 3},
            {"op": "replace", "path": "/spec/placement/spreadConstraints/0/maxGroups", "value": 3}]"#,
    ]);
    let rb = eventually("regional unschedulable", || {
        fed.get(&["resourcebindings", "regional-configmap"])
            .filter(|rb| rb["status"]["conditions"][0]["status"] == "False")
    });
    assert!(
        rb["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains(
            "minGroups 3 but the schedulable member clusters of the placement are in 2 region(s)"
        ),
        "{rb}"
    );
    drop(members);
}

//! `--admission-control-config-file` with the real kubectl (1.32): a PodSecurity plugin
//! configuration sets the cluster-wide default policy (namespaces without labels enforce
//! baseline) and exempts a namespace, a user and a runtime class, as kube-apiserver does; a
//! label on an exempt namespace warns that it is ignored; bad files stop the server with an
//! error naming the file and the field.

use pea_tests::control::{Backend, ControlPlane};
use serde_json::json;

const CONFIG: &str = "apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults:
      enforce: baseline
      enforce-version: latest
      warn: restricted
    exemptions:
      usernames: [ops]
      runtimeClasses: [kata]
      namespaces: [free]
";

fn privileged_pod(name: &str, runtime_class: Option<&str>) -> String {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox",
        "securityContext": {"privileged": true}}]});
    if let Some(rc) = runtime_class {
        spec["runtimeClassName"] = json!(rc);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}).to_string()
}

#[test]
fn pod_security_defaults_and_exemptions_come_from_the_admission_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admission.yaml");
    std::fs::write(&file, CONFIG).unwrap();
    let cp = ControlPlane::start_with(Backend::Embedded, |c| {
        c.admission_control_config_file = Some(file.clone())
    })
    .unwrap();
    let k = cp.kubectl();
    k.ok(&["create", "namespace", "plain"]);
    k.ok(&["create", "namespace", "free"]);

    // No labels: the configured default (baseline) is enforced.
    let err = k.fails_stdin(
        &["create", "-n", "plain", "-f", "-"],
        &privileged_pod("priv", None),
    );
    assert!(
        err.contains(r#"pods "priv" is forbidden: violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#),
        "{err}"
    );
    // A compliant-for-baseline pod passes, with the default warn level's warning.
    let plain = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let out = k.stdin_output(&["create", "-n", "plain", "-f", "-"], &plain.to_string());
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(r#"Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false"#),
        "{stderr}"
    );

    // The exempt namespace takes any pod, silently.
    let out = k.stdin_output(
        &["create", "-n", "free", "-f", "-"],
        &privileged_pod("priv", None),
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The exempt runtime class, in a namespace that is not exempt.
    k.ok_stdin(
        &["create", "-n", "plain", "-f", "-"],
        &privileged_pod("kata", Some("kata")),
    );
    // The exempt user (a cluster admin by group, so RBAC lets it create pods).
    let ops =
        pea_tests::control::Kubectl::new(&cp.kubeconfig_for("ops", &["system:masters"]).unwrap());
    ops.ok_stdin(
        &["create", "-n", "plain", "-f", "-"],
        &privileged_pod("by-ops", None),
    );
    // Another admin is not exempt.
    let dev =
        pea_tests::control::Kubectl::new(&cp.kubeconfig_for("dev", &["system:masters"]).unwrap());
    let err = dev.fails_stdin(
        &["create", "-n", "plain", "-f", "-"],
        &privileged_pod("by-dev", None),
    );
    assert!(
        err.contains("violates PodSecurity \"baseline:latest\""),
        "{err}"
    );

    // Labelling the exempt namespace is allowed, with kube's warning that it is ignored.
    let out = k.run(&[
        "label",
        "namespace",
        "free",
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(r#"Warning: namespace "free" is exempt from Pod Security, and the policy (enforce=restricted:latest) will be ignored"#),
        "{stderr}"
    );
    k.ok_stdin(
        &["create", "-n", "free", "-f", "-"],
        &privileged_pod("still", None),
    );
}

#[test]
fn bad_admission_configurations_stop_the_server_with_kube_errors() {
    let dir = tempfile::tempdir().unwrap();
    let start = |text: &str| -> String {
        let file = dir.path().join("admission.yaml");
        std::fs::write(&file, text).unwrap();
        match ControlPlane::start_with(Backend::Embedded, |c| {
            c.admission_control_config_file = Some(file.clone())
        }) {
            Ok(_) => panic!("pea-control started with {text}"),
            Err(e) => format!("{e:#}"),
        }
    };
    let err = start(&CONFIG.replace("enforce: baseline", "enforce: strict"));
    assert!(
        err.contains(r#"couldn't init admission plugin "PodSecurity": defaults.enforce: Invalid value: "strict": must be one of privileged, baseline, restricted"#),
        "{err}"
    );
    let err = start(&CONFIG.replace("namespaces: [free]", "namespaces: [free, free]"));
    assert!(
        err.contains(r#"exemptions.namespaces[1]: Duplicate value: "free""#),
        "{err}"
    );
    let err = start(&CONFIG.replace("kind: AdmissionConfiguration", "kind: Config"));
    assert!(err.contains(r#"kind "Config""#), "{err}");
    let missing = dir.path().join("missing.yaml");
    let err = match ControlPlane::start_with(Backend::Embedded, |c| {
        c.admission_control_config_file = Some(missing.clone())
    }) {
        Ok(_) => panic!("pea-control started without its admission configuration"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("unable to read admission control configuration from"),
        "{err}"
    );
}

//! The service-account token on a real node: pea-control's admission gives a pod the
//! projected `kube-api-access-*` volume, pea-kubelet fills it through a TokenRequest bound to
//! the pod (with the cluster CA and the namespace), the container reads it at
//! /var/run/secrets/kubernetes.io/serviceaccount, and the token authenticates from the host as
//! the pod's service account — until the pod is gone.

use std::time::{Duration, Instant};

use pea_tests::kubelet_node::KubeletNode;
use serde_json::Value;

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn node_ready(n: &KubeletNode) {
    let start = Instant::now();
    loop {
        let ready = n.get_json(&["node", &n.name]).is_some_and(|node| {
            node["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if ready {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "node not Ready in 30 s:\n{}",
            pea_tests::kubelet_node::tail(&n.kubelet_log(), 40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `kubectl --token T auth whoami -o json` with a kubeconfig that has no credentials.
fn whoami(n: &KubeletNode, anon: &str, token: &str) -> std::process::Output {
    n.kubectl(&[
        "--kubeconfig",
        anon,
        "--token",
        token,
        "auth",
        "whoami",
        "-o",
        "json",
    ])
}

#[test]
fn a_pod_reads_its_projected_token_and_it_authenticates_as_its_service_account() {
    let mut n = KubeletNode::new("sa-node").expect("node");
    n.start_kubelet().expect("kubelet");
    node_ready(&n);
    n.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: tok}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    command: [sh, -c, 'while true; do sleep 1; done']
"#,
        image = n.image
    ));
    let pod = n.wait_pod("tok", Duration::from_secs(60), |p| {
        p["status"]["phase"] == "Running"
    });
    assert_eq!(pod["spec"]["serviceAccountName"], "default");
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();

    let token = n.ok(&["exec", "tok", "--", "cat", &format!("{SA_DIR}/token")]);
    let namespace = n.ok(&["exec", "tok", "--", "cat", &format!("{SA_DIR}/namespace")]);
    let ca = n.ok(&["exec", "tok", "--", "cat", &format!("{SA_DIR}/ca.crt")]);
    assert_eq!(namespace, "default");
    let cluster_ca = std::fs::read_to_string(n.dir.path().join("ca.crt")).unwrap();
    assert_eq!(ca.trim(), cluster_ca.trim());
    // kubelet's atomic writer layout, read-only in the container.
    let listing = n.ok(&["exec", "tok", "--", "ls", "-la", SA_DIR]);
    assert!(listing.contains("..data ->"), "{listing}");
    let out = n.kubectl(&["exec", "tok", "--", "touch", &format!("{SA_DIR}/x")]);
    assert!(!out.status.success(), "the token volume is writable");

    // The token, presented from the host, is the pod's service account on this node.
    let anon = n.dir.path().join("anon.kubeconfig");
    std::fs::write(
        &anon,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: pea\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority: {}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: pea\n  context: {{cluster: pea, user: u}}\ncurrent-context: pea\n",
            pea_tests::kubelet_node::API_PORT,
            n.dir.path().join("ca.crt").display()
        ),
    )
    .unwrap();
    let anon = anon.to_str().unwrap();
    let out = whoami(&n, anon, token.trim());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let who: Value = serde_json::from_slice(&out.stdout).unwrap();
    let user = &who["status"]["userInfo"];
    assert_eq!(user["username"], "system:serviceaccount:default:default");
    let extra = &user["extra"];
    assert_eq!(extra["authentication.kubernetes.io/pod-name"][0], "tok");
    assert_eq!(
        extra["authentication.kubernetes.io/pod-uid"][0],
        uid.as_str()
    );
    assert_eq!(
        extra["authentication.kubernetes.io/node-name"][0],
        "sa-node"
    );

    // Once the pod is gone, so is its token: at once for a new look-up, within kube's 10 s
    // token cache for one the server has just accepted (as above).
    n.ok(&["delete", "pod", "tok", "--wait=false"]);
    n.wait_gone("tok", Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let out = whoami(&n, anon, token.trim());
        if !out.status.success() {
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deleted pod's token is still accepted 12 s later (the cache TTL is 10 s)"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

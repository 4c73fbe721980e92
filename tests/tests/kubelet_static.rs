//! pea-kubelet's static pods on one real node (pea-shim, pea-control, kubectl 1.32): manifests
//! in `staticPodPath` (checked every second here, `fileCheckFrequency: 1s`) run as
//! `NAME-NODENAME` with mirror pods in the API (config annotations, owned by the Node); a
//! deleted mirror comes back while the pod keeps running, a changed manifest replaces the pod,
//! a removed one stops it and deletes the mirror, and a static pod runs on with the API server
//! down and is stopped without it when its manifest goes.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use pea_tests::kubelet_node::{tail, KubeletNode};
use serde_json::Value;

/// (id, state) of the containers CRI has for pods named `name` (in `default`).
fn containers_named(n: &KubeletNode, name: &str) -> Vec<(String, i32)> {
    n.cri_containers("io.kubernetes.pod.name", name)
}

fn running(list: &[(String, i32)]) -> Vec<String> {
    list.iter()
        .filter(|(_, s)| *s == cri::ContainerState::ContainerRunning as i32)
        .map(|(id, _)| id.clone())
        .collect()
}

/// Polls `f` for up to 60 s; panics with `what` and the kubelet's log tail.
fn wait_until(n: &KubeletNode, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: not within 60 s\n--- kubelet log tail:\n{}",
            tail(&n.kubelet_log(), 40)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn manifest(dir: &Path, file: &str, name: &str, image: &str, word: &str) {
    // Written aside and renamed in, so a check never reads half a file.
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{tier: static}}\n\
         spec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {image}\n    \
         command: [sh, -c, 'echo {word}; exec sleep 3600']\n"
    );
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).expect("manifest");
    std::fs::rename(&tmp, dir.join(file)).expect("manifest");
}

fn annotation<'a>(p: &'a Value, key: &str) -> &'a str {
    p["metadata"]["annotations"][key].as_str().unwrap_or("")
}

#[test]
fn static_pods_run_from_manifests_with_mirror_pods_and_without_the_api() {
    let mut n = KubeletNode::new("node-static").expect("node");
    let dir = n.dir.path().join("manifests");
    std::fs::create_dir(&dir).expect("manifest dir");
    let mut cfg = std::fs::read_to_string(&n.kubelet_config).expect("config");
    cfg.push_str(&format!(
        "staticPodPath: {}\nfileCheckFrequency: 1s\n",
        dir.display()
    ));
    std::fs::write(&n.kubelet_config, cfg).expect("config");
    let img = n.image.clone();
    manifest(&dir, "web.yaml", "web", &img, "one");
    manifest(&dir, "extra.yaml", "extra", &img, "extra");
    // Hidden files are not manifests.
    manifest(&dir, ".hidden.yaml", "hidden", &img, "hidden");
    n.start_kubelet().expect("kubelet");

    // The mirror pod: NAME-NODENAME, Running, annotated, owned by the Node.
    let p = n.wait_pod("web-node-static", Duration::from_secs(60), |p| {
        p["status"]["phase"] == "Running"
    });
    let hash = annotation(&p, "kubernetes.io/config.hash").to_string();
    assert_eq!(hash.len(), 32, "{}", p["metadata"]);
    assert_eq!(annotation(&p, "kubernetes.io/config.mirror"), hash);
    assert_eq!(annotation(&p, "kubernetes.io/config.source"), "file");
    assert_eq!(p["metadata"]["labels"]["tier"], "static");
    assert_eq!(p["spec"]["nodeName"], "node-static");
    let node = n.get_json(&["node", "node-static"]).expect("node");
    let owner = &p["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Node", "{}", p["metadata"]);
    assert_eq!(owner["name"], "node-static");
    assert_eq!(owner["uid"], node["metadata"]["uid"]);
    assert_eq!(owner["controller"], true);
    assert_ne!(p["metadata"]["uid"].as_str(), Some(hash.as_str()));
    assert!(n.ok(&["logs", "web-node-static"]).contains("one"));
    n.wait_pod("extra-node-static", Duration::from_secs(60), |p| {
        p["status"]["phase"] == "Running"
    });
    assert!(n.get_json(&["pod", "hidden-node-static"]).is_none());
    assert!(containers_named(&n, "hidden-node-static").is_empty());
    let first = running(&containers_named(&n, "web-node-static"));
    assert_eq!(first.len(), 1, "{first:?}");

    // A deleted mirror pod is made again; the static pod itself keeps running.
    let old_uid = p["metadata"]["uid"].as_str().unwrap_or("").to_string();
    n.ok(&["delete", "pod", "web-node-static", "--wait=false"]);
    let p = n.wait_pod("web-node-static", Duration::from_secs(60), |p| {
        p["metadata"]["uid"].as_str() != Some(old_uid.as_str())
            && p["metadata"]["deletionTimestamp"].is_null()
            && p["status"]["phase"] == "Running"
    });
    assert_eq!(annotation(&p, "kubernetes.io/config.mirror"), hash);
    assert_eq!(running(&containers_named(&n, "web-node-static")), first);

    // A changed manifest replaces the pod: a new hash, a new container.
    manifest(&dir, "web.yaml", "web", &img, "two");
    let p = n.wait_pod("web-node-static", Duration::from_secs(60), |p| {
        let h = annotation(p, "kubernetes.io/config.mirror");
        !h.is_empty() && h != hash && p["status"]["phase"] == "Running"
    });
    assert_eq!(
        annotation(&p, "kubernetes.io/config.hash"),
        annotation(&p, "kubernetes.io/config.mirror")
    );
    wait_until(&n, "the old container replaced", || {
        let now = running(&containers_named(&n, "web-node-static"));
        now.len() == 1 && now != first
    });
    wait_until(&n, "the new container's log", || {
        n.ok(&["logs", "web-node-static"]).contains("two")
    });

    // A removed manifest stops the pod and deletes its mirror.
    std::fs::remove_file(dir.join("extra.yaml")).expect("remove");
    n.wait_gone("extra-node-static", Duration::from_secs(60));
    wait_until(&n, "extra's containers gone", || {
        containers_named(&n, "extra-node-static").is_empty()
    });

    // With the API server down the static pod runs on, and its manifest still rules it.
    let before = running(&containers_named(&n, "web-node-static"));
    n.stop_control();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(running(&containers_named(&n, "web-node-static")), before);
    assert!(n.kubelet_exited().is_none(), "the kubelet runs on");
    std::fs::remove_file(dir.join("web.yaml")).expect("remove");
    wait_until(&n, "web's containers gone without the API", || {
        containers_named(&n, "web-node-static").is_empty()
    });
}

//! The cluster add-ons as workloads of the cluster, as kubeadm and k3s deploy CoreDNS and their
//! ingress controller: ServiceAccounts, Deployments and the `kube-dns` Service applied through
//! the API, run by node 0's kubelet from an image of this build's binaries (`pea/addons`, built
//! by `pea-fixture image programs` and pushed to the cluster's registry). The kubelet restarts
//! them when they die, `kubectl logs -n kube-system` reads them, and they reach the API in-cluster
//! (the `kubernetes` Service, their ServiceAccount tokens).
//!
//! Both use the host network of node 0, as ingress-nginx's bare-metal `hostNetwork` mode does:
//! the cluster's "outside" (the underlay namespace) reaches the Ingress on node 0's address, and
//! Prometheus there scrapes both at node 0's address. pea-proxy and pea-flanneld stay in every
//! node's pea-agent (k3s embeds both in its agent; they program the node itself).

use serde_json::{json, Value};

use crate::cluster::{Cluster, CLUSTER_DNS};
use crate::prometheus::{DNS_METRICS_PORT, INGRESS_METRICS_PORT};

/// The add-ons' namespace and ServiceAccounts: the ones identities.rs binds their roles to.
pub use crate::identities::{ADDON_NAMESPACE as NAMESPACE, DNS_ACCOUNT, INGRESS_ACCOUNT};
/// The image's repository in the cluster's registry; its tag is this build's version.
pub const IMAGE_REPO: &str = "pea/addons";
pub const IMAGE_TAG: &str = env!("CARGO_PKG_VERSION");
/// The programs in the image, from the directory `pea up` takes its binaries from.
pub const PROGRAMS: [&str; 2] = ["pea-dns", "pea-ingress"];

/// `REGISTRY/pea/addons:VERSION`.
pub fn image(c: &Cluster) -> String {
    format!("{}/{IMAGE_REPO}:{IMAGE_TAG}", c.registry())
}

fn account(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount",
           "metadata": {"name": name, "namespace": NAMESPACE,
                        "labels": {"app.kubernetes.io/managed-by": "pea"}}})
}

/// A one-replica Deployment on node 0's host network. Recreate: a second pod could not bind
/// the same host ports during a rolling update.
fn deployment(c: &Cluster, name: &str, labels: Value, account: &str, container: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
      "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
      "spec": {
        "replicas": 1,
        "strategy": {"type": "Recreate"},
        "selector": {"matchLabels": labels},
        "template": {
          "metadata": {"labels": labels},
          "spec": {
            "serviceAccountName": account,
            "hostNetwork": true,
            // The node's resolver, not the cluster DNS (pea-dns would ask itself).
            "dnsPolicy": "Default",
            "nodeSelector": {"kubernetes.io/hostname": c.node_name(0)},
            "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
            "terminationGracePeriodSeconds": 5,
            "containers": [container]
          }
        }
      }
    })
}

fn probe(path: &str, port: u16, period: u32, failures: u32) -> Value {
    json!({"httpGet": {"path": path, "port": port},
           "periodSeconds": period, "failureThreshold": failures})
}

/// pea-dns behind `kube-system/kube-dns` at the clusterDNS IP. Without an upstream resolver:
/// the node namespaces have none, so names outside cluster.local are refused.
pub fn dns(c: &Cluster) -> Value {
    let ip0 = c.node_ip(0);
    let labels = json!({"k8s-app": "kube-dns"});
    let container = json!({
        "name": "pea-dns",
        "image": image(c),
        "imagePullPolicy": "IfNotPresent",
        "command": ["/usr/local/bin/pea-dns",
                    "--listen", format!("{ip0}:53"),
                    "--http-listen", format!("{ip0}:{DNS_METRICS_PORT}")],
        "env": [{"name": "RUST_LOG", "value": "info"}],
        "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                  {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": DNS_METRICS_PORT, "protocol": "TCP"}],
        // CoreDNS's: ready once the cluster state is synced, alive while it serves.
        "readinessProbe": probe("/ready", DNS_METRICS_PORT, 1, 3),
        "livenessProbe": probe("/health", DNS_METRICS_PORT, 10, 5),
    });
    json!({"apiVersion": "v1", "kind": "List", "items": [
        account(DNS_ACCOUNT),
        deployment(c, "pea-dns", labels.clone(), DNS_ACCOUNT, container),
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": NAMESPACE, "labels": labels},
         "spec": {"clusterIP": CLUSTER_DNS, "selector": labels, "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            {"name": "metrics", "port": DNS_METRICS_PORT, "protocol": "TCP",
             "targetPort": DNS_METRICS_PORT}]}}
    ]})
}

/// pea-ingress on node 0's ports 80 and 443, and its IngressClass `pea`, the cluster's default
/// (`kubectl create ingress` without `--class` works).
pub fn ingress(c: &Cluster) -> Value {
    let ip0 = c.node_ip(0);
    let labels = json!({"app.kubernetes.io/name": "pea-ingress"});
    let container = json!({
        "name": "pea-ingress",
        "image": image(c),
        "imagePullPolicy": "IfNotPresent",
        "command": ["/usr/local/bin/pea-ingress",
                    "--http-listen", format!("{ip0}:80"),
                    "--https-listen", format!("{ip0}:443"),
                    "--metrics-listen", format!("{ip0}:{INGRESS_METRICS_PORT}"),
                    "--publish-address", ip0],
        "env": [{"name": "RUST_LOG", "value": "info"}],
        "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"},
                  {"name": "https", "containerPort": 443, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": INGRESS_METRICS_PORT, "protocol": "TCP"}],
        "readinessProbe": probe("/healthz", INGRESS_METRICS_PORT, 1, 3),
        "livenessProbe": probe("/healthz", INGRESS_METRICS_PORT, 10, 5),
    });
    json!({"apiVersion": "v1", "kind": "List", "items": [
        account(INGRESS_ACCOUNT),
        deployment(c, "pea-ingress", labels, INGRESS_ACCOUNT, container),
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
         "metadata": {"name": "pea",
                      "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
         "spec": {"controller": "pea.dev/ingress"}}
    ]})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        Cluster::new("t", 2).unwrap()
    }

    #[test]
    fn add_ons_run_on_node_0_as_their_accounts_from_this_builds_image() {
        let c = cluster();
        for (list, account) in [(dns(&c), DNS_ACCOUNT), (ingress(&c), INGRESS_ACCOUNT)] {
            let items = list["items"].as_array().unwrap();
            let d = items.iter().find(|i| i["kind"] == "Deployment").unwrap();
            let pod = &d["spec"]["template"]["spec"];
            assert_eq!(pod["serviceAccountName"], account);
            assert_eq!(pod["hostNetwork"], true);
            assert_eq!(
                pod["nodeSelector"]["kubernetes.io/hostname"],
                c.node_name(0)
            );
            assert_eq!(
                pod["containers"][0]["image"],
                format!("{}/pea/addons:{IMAGE_TAG}", c.registry())
            );
            assert_eq!(
                d["spec"]["selector"]["matchLabels"],
                d["spec"]["template"]["metadata"]["labels"]
            );
        }
        let svc = &dns(&c)["items"][2];
        assert_eq!(svc["spec"]["clusterIP"], CLUSTER_DNS);
        assert_eq!(svc["spec"]["selector"]["k8s-app"], "kube-dns");
    }
}

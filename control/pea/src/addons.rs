//! The cluster add-ons, pea-dns (cluster DNS behind `kube-system/kube-dns` at the clusterDNS IP)
//! and pea-ingress (the `pea` IngressClass), in the two forms pea deploys them:
//!
//! - as workloads of the cluster, as kubeadm and k3s deploy CoreDNS and their ingress
//!   controller: ServiceAccounts, Deployments and the Service applied through the API, run by
//!   one node's kubelet from an image of this build's binaries (`pea/addons`, built by
//!   `pea-fixture image programs`). `pea up` does this on node 0 from its registry, and so does
//!   `pea install --role control-plane --addons-image REF` on its host. The kubelet restarts
//!   them when they die, `kubectl logs -n kube-system` reads them, and they reach the API
//!   in-cluster (the `kubernetes` Service, their ServiceAccount tokens);
//! - as host services of a control plane installed without an image to run them from (no
//!   registry: a bare-metal or Vagrant host): systemd units next to pea-proxy's, under their
//!   own client certificates, with the `kube-dns` Service pointed at the host by an
//!   EndpointSlice of its own (a Service without a selector, as kube's docs describe for
//!   backends outside the cluster).
//!
//! Both use the host network of their node, as ingress-nginx's bare-metal `hostNetwork` mode
//! does: the cluster's "outside" reaches the Ingress on that node's address, and Prometheus
//! scrapes both there. pea-proxy and pea-flanneld stay in every node's agent or host units
//! (k3s embeds both in its agent; they program the node itself).

use std::net::{IpAddr, SocketAddr};

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
/// The IngressClass the add-on serves, the cluster's default.
pub const INGRESS_CLASS: &str = "pea";
/// `app.kubernetes.io/managed-by` of what `pea install` applies for the host-service form.
const MANAGED_BY: &str = "pea-install";

/// Where the add-ons run: one node, on its host network, from one image.
#[derive(Debug, Clone)]
pub struct Placement {
    pub node_name: String,
    pub node_ip: IpAddr,
    pub image: String,
}

impl Placement {
    /// `pea up`'s: node 0, `REGISTRY/pea/addons:VERSION` from the cluster's registry.
    pub fn node0(c: &Cluster) -> Self {
        Placement {
            node_name: c.node_name(0),
            node_ip: c
                .node_ip(0)
                .parse()
                .expect("pea up's node addresses are IPv4"),
            image: format!("{}/{IMAGE_REPO}:{IMAGE_TAG}", c.registry()),
        }
    }
}

fn at(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// pea-dns's flags on a node's address (the pod's command and the host unit's ExecStart).
/// Without an upstream resolver: names outside cluster.local are refused.
pub fn dns_args(ip: IpAddr) -> Vec<String> {
    vec![
        "--listen".into(),
        at(ip, 53),
        "--http-listen".into(),
        at(ip, DNS_METRICS_PORT),
    ]
}

/// pea-ingress's flags on a node's address: HTTP, HTTPS and metrics there, and that address
/// published in the Ingresses' status.
pub fn ingress_args(ip: IpAddr) -> Vec<String> {
    vec![
        "--http-listen".into(),
        at(ip, 80),
        "--https-listen".into(),
        at(ip, 443),
        "--metrics-listen".into(),
        at(ip, INGRESS_METRICS_PORT),
        "--publish-address".into(),
        ip.to_string(),
    ]
}

fn account(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount",
           "metadata": {"name": name, "namespace": NAMESPACE,
                        "labels": {"app.kubernetes.io/managed-by": "pea"}}})
}

fn dns_labels() -> Value {
    json!({"k8s-app": "kube-dns"})
}

const DNS_PORTS: [(&str, u16, &str); 3] = [
    ("dns", 53, "UDP"),
    ("dns-tcp", 53, "TCP"),
    ("metrics", DNS_METRICS_PORT, "TCP"),
];

/// `kube-system/kube-dns` at the clusterDNS IP: over the pods `selector` picks, or (None) over
/// the EndpointSlice the host-service form writes.
fn dns_service(selector: Option<Value>) -> Value {
    let ports: Vec<Value> = DNS_PORTS
        .iter()
        .map(|(name, port, proto)| {
            json!({"name": name, "port": port, "protocol": proto, "targetPort": port})
        })
        .collect();
    let mut spec = json!({"clusterIP": CLUSTER_DNS, "ports": ports});
    if let Some(s) = selector {
        spec["selector"] = s;
    }
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "kube-dns", "namespace": NAMESPACE, "labels": dns_labels()},
           "spec": spec})
}

/// The `pea` IngressClass, the cluster's default (`kubectl create ingress` without `--class`
/// works).
fn ingress_class() -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
           "metadata": {"name": INGRESS_CLASS,
                        "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
           "spec": {"controller": "pea.dev/ingress"}})
}

/// A one-replica Deployment on node 0's host network. Recreate: a second pod could not bind
/// the same host ports during a rolling update.
fn deployment(p: &Placement, name: &str, labels: Value, account: &str, container: Value) -> Value {
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
            "nodeSelector": {"kubernetes.io/hostname": p.node_name},
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

/// pea-dns behind `kube-system/kube-dns` at the clusterDNS IP, as a Deployment on `p`.
pub fn dns(p: &Placement) -> Value {
    let labels = dns_labels();
    let mut command = vec!["/usr/local/bin/pea-dns".to_string()];
    command.extend(dns_args(p.node_ip));
    let ports: Vec<Value> = DNS_PORTS
        .iter()
        .map(|(name, port, proto)| json!({"name": name, "containerPort": port, "protocol": proto}))
        .collect();
    let container = json!({
        "name": "pea-dns",
        "image": p.image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": [{"name": "RUST_LOG", "value": "info"}],
        "ports": ports,
        // CoreDNS's: ready once the cluster state is synced, alive while it serves.
        "readinessProbe": probe("/ready", DNS_METRICS_PORT, 1, 3),
        "livenessProbe": probe("/health", DNS_METRICS_PORT, 10, 5),
    });
    json!({"apiVersion": "v1", "kind": "List", "items": [
        account(DNS_ACCOUNT),
        deployment(p, "pea-dns", labels.clone(), DNS_ACCOUNT, container),
        dns_service(Some(labels)),
    ]})
}

/// pea-ingress on `p`'s ports 80 and 443 as a Deployment, and its IngressClass.
pub fn ingress(p: &Placement) -> Value {
    let labels = json!({"app.kubernetes.io/name": "pea-ingress"});
    let mut command = vec!["/usr/local/bin/pea-ingress".to_string()];
    command.extend(ingress_args(p.node_ip));
    let container = json!({
        "name": "pea-ingress",
        "image": p.image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": [{"name": "RUST_LOG", "value": "info"}],
        "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"},
                  {"name": "https", "containerPort": 443, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": INGRESS_METRICS_PORT, "protocol": "TCP"}],
        "readinessProbe": probe("/healthz", INGRESS_METRICS_PORT, 1, 3),
        "livenessProbe": probe("/healthz", INGRESS_METRICS_PORT, 10, 5),
    });
    json!({"apiVersion": "v1", "kind": "List", "items": [
        account(INGRESS_ACCOUNT),
        deployment(p, "pea-ingress", labels, INGRESS_ACCOUNT, container),
        ingress_class(),
    ]})
}

/// What the API needs when the add-ons are host services on `ip`: `kube-dns` without a
/// selector and its EndpointSlice naming `ip` (kube's EndpointSlice controller leaves slices
/// another manager labels alone), and the IngressClass.
pub fn host_service_objects(ip: IpAddr) -> Value {
    let ports: Vec<Value> = DNS_PORTS
        .iter()
        .map(|(name, port, proto)| json!({"name": name, "port": port, "protocol": proto}))
        .collect();
    let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    json!({"apiVersion": "v1", "kind": "List", "items": [
        dns_service(None),
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "kube-dns-host", "namespace": NAMESPACE,
                      "labels": {"kubernetes.io/service-name": "kube-dns",
                                 "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
                                 "app.kubernetes.io/managed-by": MANAGED_BY}},
         "addressType": family,
         "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
         "ports": ports},
        ingress_class(),
    ]})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement() -> Placement {
        Placement::node0(&Cluster::new("t", 2).unwrap())
    }

    #[test]
    fn add_ons_run_on_their_node_as_their_accounts_from_the_image() {
        let p = placement();
        assert_eq!(
            p.image,
            format!(
                "{}/pea/addons:{IMAGE_TAG}",
                Cluster::new("t", 2).unwrap().registry()
            )
        );
        for (list, account) in [(dns(&p), DNS_ACCOUNT), (ingress(&p), INGRESS_ACCOUNT)] {
            let items = list["items"].as_array().unwrap();
            let d = items.iter().find(|i| i["kind"] == "Deployment").unwrap();
            let pod = &d["spec"]["template"]["spec"];
            assert_eq!(pod["serviceAccountName"], account);
            assert_eq!(pod["hostNetwork"], true);
            assert_eq!(pod["nodeSelector"]["kubernetes.io/hostname"], p.node_name);
            assert_eq!(pod["containers"][0]["image"], p.image);
            assert_eq!(
                d["spec"]["selector"]["matchLabels"],
                d["spec"]["template"]["metadata"]["labels"]
            );
        }
        let svc = &dns(&p)["items"][2];
        assert_eq!(svc["spec"]["clusterIP"], CLUSTER_DNS);
        assert_eq!(svc["spec"]["selector"]["k8s-app"], "kube-dns");
    }

    #[test]
    fn the_pods_and_the_host_units_get_the_same_flags() {
        let p = placement();
        let cmd = &dns(&p)["items"][1]["spec"]["template"]["spec"]["containers"][0]["command"];
        let args: Vec<&str> = cmd.as_array().unwrap()[1..]
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(args, dns_args(p.node_ip));
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(dns_args(v6)[1], "[fd00::1]:53");
        assert_eq!(ingress_args(v6).last().unwrap(), "fd00::1");
    }

    #[test]
    fn the_host_service_form_points_kube_dns_at_the_host() {
        let v = host_service_objects("10.0.0.1".parse().unwrap());
        let items = v["items"].as_array().unwrap();
        let svc = &items[0];
        assert_eq!(svc["spec"]["clusterIP"], CLUSTER_DNS);
        assert!(svc["spec"].get("selector").is_none());
        let slice = &items[1];
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "kube-dns"
        );
        assert_eq!(slice["endpoints"][0]["addresses"][0], "10.0.0.1");
        assert_eq!(slice["addressType"], "IPv4");
        // Every Service port has its slice port, by name.
        for port in svc["spec"]["ports"].as_array().unwrap() {
            assert!(slice["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == port["name"] && p["port"] == port["targetPort"]));
        }
        assert_eq!(items[2]["kind"], "IngressClass");
    }
}

//! Golden files of the generated transactions (`UPDATE_GOLDEN=1 cargo test -p pea-proxy`
//! rewrites them): the proxier runs against a recording `nft` (a script that saves each
//! transaction), so these show exactly what a sync sends. The privileged tests in
//! tests/tests/proxy.rs apply the same generator for real.

use std::{path::PathBuf, sync::Arc};

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use serde_json::{json, Value};

use crate::{
    model::{Family, ServiceKey},
    nft::Nft,
    proxier::{Change, Proxier, ProxyConfig},
};

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn golden(name: &str, text: &str) {
    let path = testdata().join(format!("{name}.nft"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if want != text {
        let first = want
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(text.lines().count()));
        panic!(
            "{name}: the transaction differs from {} from line {} on:\n want: {:?}\n  got: {:?}\n\
             (UPDATE_GOLDEN=1 rewrites the golden file)",
            path.display(),
            first + 1,
            want.lines().nth(first),
            text.lines().nth(first),
        );
    }
}

/// A proxier whose `nft` records every transaction into a directory.
struct Recorder {
    dir: tempfile::TempDir,
    proxier: Proxier,
}

impl Recorder {
    fn new(families: Vec<Family>, nodeport_cidrs: Option<Vec<ipnet::IpNet>>) -> Self {
        Self::with_node_ips(families, nodeport_cidrs, Vec::new())
    }

    fn with_node_ips(
        families: Vec<Family>,
        nodeport_cidrs: Option<Vec<ipnet::IpNet>>,
        node_ips: Vec<std::net::IpAddr>,
    ) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("nft");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nn=$(ls {d}/tx | wc -l)\ncat > {d}/tx/$n\n",
                d = dir.path().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(dir.path().join("tx")).unwrap();
        let proxier = Proxier::new(ProxyConfig {
            hostname: "node1".into(),
            cluster_cidrs: vec![
                "10.244.0.0/16".parse().unwrap(),
                "fd00:10:244::/56".parse().unwrap(),
            ],
            nodeport_cidrs,
            node_ips,
            families,
            nodeport_primary: false,
            zone: None,
            nft: Nft {
                program: script.display().to_string(),
            },
            conntrack: None,
            // The recording nft sees element-only changes too (as text).
            netlink_elements: false,
        });
        Recorder { dir, proxier }
    }

    /// Syncs and returns the transactions written, joined.
    fn sync(&mut self, changes: &[Change], full: bool) -> String {
        let txdir = self.dir.path().join("tx");
        let before = std::fs::read_dir(&txdir).unwrap().count();
        self.proxier.sync(changes, full).unwrap();
        let after = std::fs::read_dir(&txdir).unwrap().count();
        (before..after)
            .map(|i| std::fs::read_to_string(txdir.join(i.to_string())).unwrap())
            .collect::<Vec<_>>()
            .join("# --- next family ---\n")
    }
}

fn service(ns: &str, name: &str, spec: Value, status: Value) -> Arc<Service> {
    Arc::new(
        serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name},
            "spec": spec, "status": status}))
        .unwrap(),
    )
}

fn slice(ns: &str, svc: &str, family: &str, port: Value, eps: Value) -> Arc<EndpointSlice> {
    Arc::new(
        serde_json::from_value(
            json!({"metadata": {"namespace": ns, "name": format!("{svc}-{family}"),
            "labels": {"kubernetes.io/service-name": svc}},
            "addressType": family, "ports": [port], "endpoints": eps}),
        )
        .unwrap(),
    )
}

fn change(svc: &Arc<Service>, slices: Vec<Arc<EndpointSlice>>) -> Change {
    Change {
        key: ServiceKey {
            namespace: svc.metadata.namespace.clone().unwrap(),
            name: svc.metadata.name.clone().unwrap(),
        },
        service: Some(svc.clone()),
        slices,
    }
}

fn ep(ip: &str, node: &str) -> Value {
    json!({"addresses": [ip], "conditions": {"ready": true}, "nodeName": node})
}

#[test]
fn clusterip_then_one_endpoint_change_then_delete() {
    let mut r = Recorder::new(vec![Family::V4], None);
    let svc = service(
        "default",
        "web",
        json!({"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        json!({}),
    );
    let port = json!({"name": "http", "port": 8080, "protocol": "TCP"});
    let s1 = slice(
        "default",
        "web",
        "IPv4",
        port.clone(),
        json!([ep("10.244.1.2", "node1"), ep("10.244.2.2", "node2")]),
    );
    golden(
        "clusterip-initial",
        &r.sync(&[change(&svc, vec![s1])], false),
    );
    // One endpoint replaced: only elements change (the data map's ranges, the hairpin set), no
    // chain or rule: this is the batch the proxier sends over netlink (as text here, since the
    // recording nft is not a kernel).
    let s2 = slice(
        "default",
        "web",
        "IPv4",
        port,
        json!([ep("10.244.1.2", "node1"), ep("10.244.2.3", "node2")]),
    );
    golden(
        "clusterip-endpoint-change",
        &r.sync(&[change(&svc, vec![s2.clone()])], false),
    );
    // Nothing changed: no transaction at all.
    assert_eq!(r.sync(&[change(&svc, vec![s2])], false), "");
    // All endpoints gone: reject.
    golden(
        "clusterip-no-endpoints",
        &r.sync(&[change(&svc, vec![])], false),
    );
    // The Service gone.
    let gone = Change {
        service: None,
        ..change(&svc, vec![])
    };
    golden("clusterip-deleted", &r.sync(&[gone], false));
}

#[test]
fn every_feature_dual_stack() {
    let mut r = Recorder::new(
        vec![Family::V4, Family::V6],
        Some(vec!["127.0.0.0/8".parse().unwrap()]),
    );
    let lb = service(
        "shop",
        "front",
        json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.20", "fd00:96::20"],
            "ipFamilies": ["IPv4", "IPv6"], "externalIPs": ["192.0.2.7"],
            "externalTrafficPolicy": "Local", "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]}),
        json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]}}),
    );
    let v4 = slice(
        "shop",
        "front",
        "IPv4",
        json!({"name": "http", "port": 8080}),
        json!([ep("10.244.1.5", "node1"), ep("10.244.2.5", "node2"),
            {"addresses": ["10.244.1.6"], "conditions": {"ready": false, "serving": true, "terminating": true}, "nodeName": "node1"}]),
    );
    let v6 = slice(
        "shop",
        "front",
        "IPv6",
        json!({"name": "http", "port": 8080}),
        json!([ep("fd00:10:244:1::5", "node1")]),
    );
    let dns = slice(
        "shop",
        "front-dns",
        "IPv4",
        json!({"name": "dns", "port": 5353, "protocol": "UDP"}),
        json!([ep("10.244.2.9", "node2")]),
    );
    let local = service(
        "shop",
        "cache",
        json!({"clusterIP": "10.96.0.30", "internalTrafficPolicy": "Local",
            "ports": [{"port": 6379}, {"name": "bad", "port": 1, "protocol": "ICMP"}]}),
        json!({}),
    );
    let cache = slice(
        "shop",
        "cache",
        "IPv4",
        json!({"port": 6379}),
        json!([ep("10.244.2.7", "node2")]),
    );
    let mut front_slices = vec![v4, v6];
    // The dns slice is labelled for front too.
    front_slices.push(dns);
    golden(
        "every-feature-dual-stack",
        &r.sync(
            &[change(&lb, front_slices), change(&local, vec![cache])],
            true,
        ),
    );
    assert_eq!(r.proxier.problems(), 1, "the ICMP port is reported");
}

#[test]
fn a_second_service_claiming_a_nodeport_is_left_out_until_the_first_goes() {
    let mut r = Recorder::new(vec![Family::V4], None);
    let a = service(
        "a",
        "one",
        json!({"type": "NodePort", "clusterIP": "10.96.1.1",
        "ports": [{"port": 80, "nodePort": 30000}]}),
        json!({}),
    );
    let b = service(
        "b",
        "two",
        json!({"type": "NodePort", "clusterIP": "10.96.1.2",
        "ports": [{"port": 80, "nodePort": 30000}]}),
        json!({}),
    );
    let text = r.sync(&[change(&a, vec![]), change(&b, vec![])], false);
    assert_eq!(text.matches("tcp . 30000").count(), 1, "{text}");
    assert_eq!(r.proxier.problems(), 1);
    let gone = Change {
        service: None,
        ..change(&a, vec![])
    };
    golden("nodeport-claim-moves", &r.sync(&[gone], false));
}

#[test]
fn load_balancer_source_ranges_firewall_the_lb_ips_only() {
    let mut r = Recorder::new(vec![Family::V4, Family::V6], None);
    let ep4 = |svc: &str| {
        slice(
            "edge",
            svc,
            "IPv4",
            json!({"name": "http", "port": 8080}),
            json!([ep("10.244.1.5", "node1")]),
        )
    };
    // The field: one range per family, and an entry that is no CIDR (reported, left out).
    let field = service(
        "edge",
        "field",
        json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.40", "fd00:96::40"],
            "ipFamilies": ["IPv4", "IPv6"], "externalIPs": ["192.0.2.40"],
            "loadBalancerSourceRanges": ["203.0.113.0/24", "198.18.0.1/15", "2001:db8::/32", "nonsense"],
            "ports": [{"name": "http", "port": 80, "nodePort": 30040}]}),
        json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.40"}, {"ip": "2001:db8:1::40"}]}}),
    );
    // The annotation, when the field is empty; IPv4 ranges only on a dual-stack LB: the IPv6 LB
    // IP is closed to everyone.
    let annotated: Arc<Service> = Arc::new(
        serde_json::from_value(json!({"metadata": {"namespace": "edge", "name": "annotated",
            "annotations": {"service.beta.kubernetes.io/load-balancer-source-ranges": " 203.0.113.7/32 , 192.0.2.0/28"}},
            "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.41", "fd00:96::41"],
                "ipFamilies": ["IPv4", "IPv6"], "ports": [{"name": "http", "port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.41"}, {"ip": "2001:db8:1::41"}]}}}))
        .unwrap(),
    );
    // No ranges: no firewall.
    let open = service(
        "edge",
        "open",
        json!({"type": "LoadBalancer", "clusterIP": "10.96.0.42",
            "ports": [{"name": "http", "port": 80}]}),
        json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.42"}]}}),
    );
    let text = r.sync(
        &[
            change(&field, vec![ep4("field")]),
            change(&annotated, vec![ep4("annotated")]),
            change(&open, vec![ep4("open")]),
        ],
        true,
    );
    assert!(
        !text.contains("198.51.100.42 . tcp . 80 : goto firewall"),
        "{text}"
    );
    assert!(
        !text.contains("192.0.2.40 . tcp . 80 : goto firewall"),
        "externalIPs are not firewalled: {text}"
    );
    golden("load-balancer-source-ranges", &text);
    assert_eq!(
        r.proxier.problems(),
        1,
        "the entry that is no CIDR is reported"
    );
}

#[test]
fn source_ranges_containing_the_node_let_the_lb_ips_through() {
    // The node is 203.0.113.9 and fd00:1::9: the IPv4 range contains it, no IPv6 range does.
    let mut r = Recorder::with_node_ips(
        vec![Family::V4, Family::V6],
        None,
        vec!["203.0.113.9".parse().unwrap(), "fd00:1::9".parse().unwrap()],
    );
    let svc = service(
        "edge",
        "lb",
        json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.50", "fd00:96::50"],
            "ipFamilies": ["IPv4", "IPv6"],
            "loadBalancerSourceRanges": ["203.0.113.0/24", "2001:db8::/32"],
            "ports": [{"name": "http", "port": 80}]}),
        json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.50"}, {"ip": "2001:db8:1::50"}]}}),
    );
    let text = r.sync(&[change(&svc, vec![])], true);
    assert!(
        text.contains("ip saddr != { 203.0.113.0/24, 198.51.100.50 } drop"),
        "the IPv4 LB IP is an allowed source: {text}"
    );
    assert!(
        text.contains("ip6 saddr != { 2001:db8::/32 } drop"),
        "no IPv6 range contains the node: the IPv6 LB IP is not added: {text}"
    );
}

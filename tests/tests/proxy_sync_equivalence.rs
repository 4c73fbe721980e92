//! pea-proxy's incremental syncs leave the kernel with exactly the ruleset a full sync of the
//! same Services writes: one proxier follows a series of changes with incremental syncs in one
//! network namespace, and after every step a fresh proxier writes the whole state into a second
//! namespace; `nft -j list table` of both (handles dropped, chains, sets and elements put in
//! name order, rule order kept) must be equal. The series covers an endpoint replaced, a
//! Service scaled past the cascade limit (one vmap) and back, affinity, Local policies,
//! NodePorts, externalIPs, LoadBalancer source ranges, a Service without endpoints, endpoints
//! going to zero and coming back, a Local Service losing its local endpoint, Services added and
//! deleted (plain, with a firewall chain, with affinity in both families), in both families; it
//! ends with a periodic full (flush) sync of the first proxier. Steps that only remove or change
//! elements (endpoint changes, removals, endpoints going to zero) must go to the kernel as one
//! netlink batch, without nft.

use std::{collections::BTreeMap, sync::Arc};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use pea_proxy::{
    model::{Family, ServiceKey},
    nft::Nft,
    proxier::{Change, Proxier, ProxyConfig},
    ruleset::CASCADE_MAX_ENDPOINTS,
};
use pea_tests::{
    netlab::Netns,
    privileged::{require_program, require_root},
};
use serde_json::{json, Value};

fn proxier() -> Proxier {
    Proxier::new(ProxyConfig {
        hostname: "node1".into(),
        cluster_cidrs: vec![
            "10.244.0.0/16".parse().expect("cidr"),
            "fd00:10:244::/56".parse().expect("cidr"),
        ],
        nodeport_cidrs: None,
        node_ips: vec!["192.168.1.10".parse().expect("ip")],
        nodeport_primary: false,
        zone: None,
        families: vec![Family::V4, Family::V6],
        nft: Nft::default(),
        conntrack: None,
        netlink_elements: true,
    })
}

fn service(name: &str, spec: Value, status: Value) -> Arc<Service> {
    Arc::new(
        serde_json::from_value(json!({"metadata": {"namespace": "eq", "name": name},
            "spec": spec, "status": status}))
        .expect("service"),
    )
}

fn slice(
    svc: &str,
    suffix: &str,
    family: &str,
    port: Value,
    eps: Vec<Value>,
) -> Arc<EndpointSlice> {
    Arc::new(
        serde_json::from_value(
            json!({"metadata": {"namespace": "eq", "name": format!("{svc}-{suffix}"),
            "labels": {"kubernetes.io/service-name": svc}},
            "addressType": family, "ports": [port], "endpoints": eps}),
        )
        .expect("slice"),
    )
}

fn ep(ip: &str, node: &str) -> Value {
    json!({"addresses": [ip], "conditions": {"ready": true}, "nodeName": node})
}

fn change(svc: &Arc<Service>, slices: Vec<Arc<EndpointSlice>>) -> Change {
    Change {
        key: ServiceKey {
            namespace: "eq".into(),
            name: svc.metadata.name.clone().expect("name"),
        },
        service: Some(svc.clone()),
        slices,
    }
}

fn gone(name: &str) -> Change {
    Change {
        key: ServiceKey {
            namespace: "eq".into(),
            name: name.into(),
        },
        service: None,
        slices: Vec::new(),
    }
}

fn web(n: usize, first: usize) -> Change {
    let svc = service(
        "web",
        json!({"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]}),
        json!({}),
    );
    let eps = (first..first + n)
        .map(|i| ep(&format!("10.244.{}.{}", 1 + i / 200, 2 + i % 200), "node2"))
        .collect();
    let s = slice(
        "web",
        "a",
        "IPv4",
        json!({"name": "http", "port": 8080}),
        eps,
    );
    change(&svc, vec![s])
}

fn front(timeout: u32, v4_eps: Vec<Value>) -> Change {
    let svc = service(
        "front",
        json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.20", "fd00:96::20"],
            "ipFamilies": ["IPv4", "IPv6"], "externalIPs": ["192.0.2.7"],
            "externalTrafficPolicy": "Local", "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": timeout}},
            "ports": [{"name": "http", "port": 80, "nodePort": 30080},
                {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]}),
        json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]}}),
    );
    let v4 = slice(
        "front",
        "v4",
        "IPv4",
        json!({"name": "http", "port": 8080}),
        v4_eps,
    );
    let v6 = slice(
        "front",
        "v6",
        "IPv6",
        json!({"name": "http", "port": 8080}),
        vec![
            ep("fd00:10:244:1::5", "node1"),
            ep("fd00:10:244:2::5", "node2"),
        ],
    );
    let dns = slice(
        "front",
        "dns",
        "IPv4",
        json!({"name": "dns", "port": 5353, "protocol": "UDP"}),
        vec![ep("10.244.2.9", "node2")],
    );
    change(&svc, vec![v4, v6, dns])
}

fn cache(eps: Vec<Value>) -> Change {
    let svc = service(
        "cache",
        json!({"clusterIP": "10.96.0.30", "internalTrafficPolicy": "Local", "ports": [{"port": 6379}]}),
        json!({}),
    );
    let s = slice("cache", "a", "IPv4", json!({"port": 6379}), eps);
    change(&svc, vec![s])
}

fn guarded(ranges: &[&str]) -> Change {
    let svc = service(
        "guarded",
        json!({"type": "LoadBalancer", "clusterIP": "10.96.0.40",
            "loadBalancerSourceRanges": ranges,
            "ports": [{"name": "https", "port": 443, "nodePort": 30443}]}),
        json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.2"}]}}),
    );
    let s = slice(
        "guarded",
        "a",
        "IPv4",
        json!({"name": "https", "port": 8443}),
        vec![ep("10.244.1.8", "node1")],
    );
    change(&svc, vec![s])
}

/// An IPv6-only UDP Service with two endpoints from `first` on (its data map is in `ip6`).
fn web6(first: usize) -> Change {
    let svc = service(
        "web6",
        json!({"clusterIP": "fd00:96::60", "clusterIPs": ["fd00:96::60"], "ipFamilies": ["IPv6"],
            "ports": [{"name": "d", "port": 53, "protocol": "UDP"}]}),
        json!({}),
    );
    let eps = (first..first + 2)
        .map(|i| ep(&format!("fd00:10:244:2::{:x}", 2 + i), "node2"))
        .collect();
    let s = slice(
        "web6",
        "a",
        "IPv6",
        json!({"name": "d", "port": 5353, "protocol": "UDP"}),
        eps,
    );
    change(&svc, vec![s])
}

fn late(eps: Vec<Value>) -> Change {
    let svc = service(
        "late",
        json!({"clusterIP": "10.96.0.50", "ports": [{"name": "u", "port": 9000, "protocol": "UDP"}]}),
        json!({}),
    );
    let s = slice(
        "late",
        "a",
        "IPv4",
        json!({"name": "u", "port": 9000, "protocol": "UDP"}),
        eps,
    );
    change(&svc, vec![s])
}

/// Sorts the arrays nft lists in kernel order that carries no meaning (a set's or an inline
/// map's elements) and drops handles, which differ between two kernels' tables.
fn normalize(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.remove("handle");
            for (k, x) in o.iter_mut() {
                normalize(x);
                if k == "elem" || k == "set" {
                    if let Value::Array(a) = x {
                        a.sort_by_key(|e| e.to_string());
                    }
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

/// `nft -j list table <family> pea-proxy`, as object kind → name → listing, with each chain's
/// rules in order.
fn table(ns: &Netns, family: &str) -> Result<BTreeMap<String, Value>> {
    let out = ns.exec(&["nft", "-j", "list", "table", family, "pea-proxy"])?;
    if !out.status.success() {
        bail!(
            "nft list table {family} pea-proxy in {}: {}",
            ns.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut v: Value = serde_json::from_slice(&out.stdout).context("nft -j output")?;
    normalize(&mut v);
    let mut objects = BTreeMap::new();
    let mut rules: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for item in v["nftables"].as_array().context("nftables array")? {
        let Some((kind, body)) = item.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        match kind.as_str() {
            "metainfo" => {}
            "rule" => rules
                .entry(body["chain"].as_str().unwrap_or_default().to_string())
                .or_default()
                .push(body["expr"].clone()),
            _ => {
                let name = body["name"].as_str().unwrap_or_default();
                objects.insert(format!("{kind} {name}"), body.clone());
            }
        }
    }
    for (chain, r) in rules {
        objects.insert(format!("rules of {chain}"), Value::Array(r));
    }
    Ok(objects)
}

fn assert_same(step: &str, inc: &Netns, full: &Netns) -> Result<()> {
    for family in ["ip", "ip6"] {
        let a = table(inc, family)?;
        let b = table(full, family)?;
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        let diff: Vec<String> = keys
            .into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| {
                format!(
                    "{k}:\n  incremental: {:?}\n  full:        {:?}",
                    a.get(k),
                    b.get(k)
                )
            })
            .collect();
        if !diff.is_empty() {
            bail!(
                "{step}: {family} table after incremental syncs differs from a full sync in {} places:\n{}",
                diff.len(),
                diff.join("\n")
            );
        }
    }
    Ok(())
}

#[test]
fn incremental_syncs_leave_the_ruleset_a_full_sync_writes() -> Result<()> {
    require_root();
    require_program("nft");
    let inc = Netns::new("proxyeq-inc")?;
    let full = Netns::new("proxyeq-full")?;
    let mut state: BTreeMap<String, Change> = BTreeMap::new();
    let mut p = Some(proxier());
    // (step, changes, whether they must go as a netlink batch alone)
    let steps: Vec<(&str, Vec<Change>, bool)> = vec![
        (
            "initial",
            vec![
                web(2, 0),
                front(
                    60,
                    vec![ep("10.244.1.5", "node1"), ep("10.244.2.5", "node2")],
                ),
                cache(vec![ep("10.244.1.7", "node1"), ep("10.244.2.7", "node2")]),
                guarded(&["203.0.113.0/24"]),
                web6(0),
            ],
            false,
        ),
        ("one web endpoint replaced", vec![web(2, 1)], true),
        (
            "one web6 endpoint replaced (IPv6, UDP)",
            vec![web6(1)],
            true,
        ),
        (
            "web scaled past the cascade limit",
            vec![web(CASCADE_MAX_ENDPOINTS + 4, 0)],
            true,
        ),
        ("web scaled back to 3", vec![web(3, 5)], true),
        (
            "front: affinity timeout changed, its local endpoint gone",
            vec![front(90, vec![ep("10.244.2.5", "node2")])],
            false,
        ),
        (
            "cache (internal Local) loses its local endpoint: drop",
            vec![cache(vec![ep("10.244.2.7", "node2")])],
            true,
        ),
        (
            "cache deleted, a Service without endpoints added",
            vec![gone("cache"), late(Vec::new())],
            true,
        ),
        (
            "late gets endpoints, guarded's ranges change",
            vec![
                late(vec![ep("10.244.1.9", "node1"), ep("10.244.2.9", "node2")]),
                guarded(&["203.0.113.0/24", "192.168.1.0/24"]),
            ],
            false,
        ),
        ("web loses every endpoint", vec![web(0, 0)], true),
        (
            "guarded deleted (firewall chain, LoadBalancer IP, NodePort)",
            vec![gone("guarded")],
            true,
        ),
        (
            "front deleted (affinity chains and sets, both families)",
            vec![gone("front")],
            true,
        ),
        ("web6 deleted (IPv6 only)", vec![gone("web6")], true),
        ("web gets endpoints again", vec![web(2, 0)], false),
    ];
    for (step, changes, netlink_only) in steps {
        for c in &changes {
            if c.service.is_some() {
                state.insert(c.key.name.clone(), c.clone());
            } else {
                state.remove(&c.key.name);
            }
        }
        let mut proxier_inc = p.take().expect("proxier");
        let report;
        (proxier_inc, report) = inc.run_in(move || {
            let r = proxier_inc.sync(&changes, false)?;
            Ok((proxier_inc, r))
        })?;
        p = Some(proxier_inc);
        if netlink_only && (!report.lines.is_empty() || report.netlink.is_empty()) {
            bail!(
                "{step}: expected a netlink batch only, got nft lines {:?}, netlink {:?}",
                report.lines,
                report.netlink
            );
        }
        let all: Vec<Change> = state.values().cloned().collect();
        full.run_in(move || {
            proxier().sync(&all, false)?;
            Ok(())
        })?;
        assert_same(step, &inc, &full)?;
    }
    // The periodic resync (flush mode) of the incremental proxier changes nothing either.
    let all: Vec<Change> = state.values().cloned().collect();
    let mut proxier_inc = p.take().expect("proxier");
    inc.run_in(move || {
        proxier_inc.sync(&all, true)?;
        Ok(())
    })?;
    assert_same("periodic full resync", &inc, &full)?;
    Ok(())
}

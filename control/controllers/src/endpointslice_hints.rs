//! Topology hints of the EndpointSlice controller (kube's `pkg/controller/endpointslice/
//! topologycache` and `trafficdist`): every endpoint gets the `zone` of its pod's node, and
//! `hints.forZones` when the Service asks for them.
//!
//! - Annotation `service.kubernetes.io/topology-mode: Auto` (or the deprecated
//!   `service.kubernetes.io/topology-aware-hints`): kube's proportional allocation. Each zone
//!   should serve a share of the ready endpoints equal to its share of the allocatable CPU of
//!   the ready, non-control-plane nodes; endpoints start hinted for their own zone and zones
//!   over their maximum (desired + 20 % overload) give endpoints to zones under their minimum.
//!   No hints at all (kube's fallback) when the node information is insufficient (a node
//!   without zone or CPU, fewer than two zones), when there are fewer ready endpoints than
//!   zones, when the minimums cannot be met, or when a ready endpoint has no zone.
//! - Otherwise `spec.trafficDistribution: PreferClose`: each ready endpoint is hinted for its
//!   own zone (an endpoint without a zone gets none, so proxies ignore the hints).
//! - Otherwise no hints.
//!
//! Pure functions over the controller's desired endpoints; the controller calls [`apply`]
//! after computing them, so changed hints reach the slices through its normal reconcile.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointHints, ForZone};

use crate::endpointslice::Desired;
use crate::hpa_calc::quantity_milli;
use crate::informer::{Cache, Change};
use crate::queue::Queue;

pub const TOPOLOGY_MODE_ANNOTATION: &str = "service.kubernetes.io/topology-mode";
pub const DEPRECATED_HINTS_ANNOTATION: &str = "service.kubernetes.io/topology-aware-hints";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// kube's topologycache `OverloadThreshold`: a zone may get 20 % more than its CPU share.
const OVERLOAD_THRESHOLD: f64 = 0.2;

/// kube's `hintsEnabled`: the topology-mode annotation (else the deprecated one) is `Auto`.
pub fn auto_mode(svc: &Service) -> bool {
    let a = svc.metadata.annotations.as_ref();
    let v = a
        .and_then(|a| a.get(TOPOLOGY_MODE_ANNOTATION))
        .or_else(|| a.and_then(|a| a.get(DEPRECATED_HINTS_ANNOTATION)));
    matches!(v.map(String::as_str), Some("Auto" | "auto"))
}

fn prefer_close(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.traffic_distribution.as_deref())
        == Some("PreferClose")
}

fn ready(e: &Endpoint) -> bool {
    e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
}

fn node_ready(n: &Node) -> bool {
    n.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn zone_of(n: &Node) -> Option<&str> {
    n.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(ZONE_LABEL))
        .map(String::as_str)
        .filter(|z| !z.is_empty())
}

/// Each zone's share of the allocatable CPU of the ready nodes (kube's `SetNodes`), or why
/// hints cannot be given.
pub fn cpu_ratios(nodes: &[Arc<Node>]) -> Result<BTreeMap<String, f64>, &'static str> {
    let mut by_zone: BTreeMap<String, i64> = BTreeMap::new();
    for n in nodes {
        let labels = n.metadata.labels.as_ref();
        let control_plane = labels.is_some_and(|l| {
            l.contains_key("node-role.kubernetes.io/control-plane")
                || l.contains_key("node-role.kubernetes.io/master")
        });
        if control_plane || !node_ready(n) {
            continue;
        }
        let cpu = n
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get("cpu"))
            .and_then(|q| quantity_milli(&q.0))
            .unwrap_or(0);
        let Some(zone) = zone_of(n) else {
            return Err("Insufficient Node information: allocatable CPU or zone not specified on one or more nodes");
        };
        if cpu <= 0 {
            return Err("Insufficient Node information: allocatable CPU or zone not specified on one or more nodes");
        }
        *by_zone.entry(zone.to_string()).or_default() += cpu;
    }
    let total: i64 = by_zone.values().sum();
    if total == 0 {
        return Err("Insufficient Node information: allocatable CPU or zone not specified on one or more nodes");
    }
    if by_zone.len() < 2 {
        return Err("Nodes only ready in one zone");
    }
    Ok(by_zone
        .into_iter()
        .map(|(z, c)| (z, c as f64 / total as f64))
        .collect())
}

#[derive(Debug, Clone, Copy)]
struct Allocation {
    minimum: usize,
    maximum: usize,
}

/// kube's `getAllocations`: per zone the least and most endpoints it should be hinted.
fn allocations(
    ratios: &BTreeMap<String, f64>,
    endpoints: usize,
) -> Result<BTreeMap<String, Allocation>, String> {
    if ratios.len() > endpoints {
        return Err(format!(
            "Insufficient number of endpoints ({endpoints} endpoints, {} zones)",
            ratios.len()
        ));
    }
    let mut out = BTreeMap::new();
    let mut min_total = 0;
    for (zone, ratio) in ratios {
        let desired = ratio * endpoints as f64;
        let minimum = (desired * (1.0 / (1.0 + OVERLOAD_THRESHOLD))).ceil() as usize;
        min_total += minimum;
        if min_total > endpoints {
            return Err(format!(
                "Unable to allocate minimum required endpoints to each zone without exceeding overload threshold ({endpoints} endpoints, {} zones)",
                ratios.len()
            ));
        }
        out.insert(
            zone.clone(),
            Allocation {
                minimum,
                maximum: 0,
            },
        );
    }
    for a in out.values_mut() {
        a.maximum = a.minimum + endpoints - min_total;
    }
    Ok(out)
}

fn hint(zone: &str) -> Option<EndpointHints> {
    Some(EndpointHints {
        for_zones: Some(vec![ForZone {
            name: zone.to_string(),
        }]),
    })
}

/// Sets every endpoint's `zone` from its node and its hints as the Service asks (see the
/// module comment). Returns why Auto mode gave no hints, for the log, when it did not.
pub fn apply(svc: &Service, want: &mut Desired, nodes: &[Arc<Node>]) -> Option<String> {
    let zones: BTreeMap<&str, &str> = nodes
        .iter()
        .filter_map(|n| Some((n.metadata.name.as_deref()?, zone_of(n)?)))
        .collect();
    for e in want.values_mut().flat_map(|(_, eps)| eps.values_mut()) {
        e.zone = e
            .node_name
            .as_deref()
            .and_then(|n| zones.get(n))
            .map(|z| z.to_string());
        e.hints = None;
    }
    if auto_mode(svc) {
        return auto_hints(want, nodes).err();
    }
    if prefer_close(svc) {
        for e in want
            .values_mut()
            .flat_map(|(_, eps)| eps.values_mut())
            .filter(|e| ready(e))
        {
            e.hints = e.zone.as_deref().and_then(hint);
        }
    }
    None
}

/// kube's `AddHints`: own zone first, then redistribution from giving to receiving zones. On
/// any failure every hint is removed and the reason returned.
fn auto_hints(want: &mut Desired, nodes: &[Arc<Node>]) -> Result<(), String> {
    let ratios = cpu_ratios(nodes).map_err(str::to_string)?;
    let ready_count = want
        .values()
        .flat_map(|(_, eps)| eps.values())
        .filter(|e| ready(e))
        .count();
    let alloc = allocations(&ratios, ready_count)?;
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    let mut clear = false;
    for e in want.values_mut().flat_map(|(_, eps)| eps.values_mut()) {
        if !ready(e) {
            continue;
        }
        let Some(zone) = e.zone.clone() else {
            clear = true;
            break;
        };
        *per_zone.entry(zone.clone()).or_default() += 1;
        e.hints = hint(&zone);
    }
    if clear {
        clear_hints(want);
        return Err("One or more endpoints do not have a zone specified".into());
    }
    // Giving zones hold more than their maximum; receiving ones fewer than their minimum.
    let mut giving: BTreeMap<String, usize> = BTreeMap::new();
    let mut receiving: BTreeMap<String, usize> = BTreeMap::new();
    for (zone, a) in &alloc {
        let have = per_zone.get(zone).copied().unwrap_or(0);
        if have < a.minimum {
            receiving.insert(zone.clone(), a.minimum - have);
        } else if have > a.maximum {
            giving.insert(zone.clone(), have - a.maximum);
        }
    }
    for e in want.values_mut().flat_map(|(_, eps)| eps.values_mut()) {
        if giving.is_empty() || receiving.is_empty() {
            break;
        }
        if !ready(e) {
            continue;
        }
        let Some(from) = e.zone.clone().filter(|z| giving.contains_key(z)) else {
            continue;
        };
        // The zone that needs the most (ties: the first by name, for stable output).
        let to = receiving
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(z, _)| z.clone())
            .expect("receiving is not empty");
        e.hints = hint(&to);
        *per_zone.entry(from.clone()).or_default() -= 1;
        *per_zone.entry(to.clone()).or_default() += 1;
        for (map, zone) in [(&mut giving, &from), (&mut receiving, &to)] {
            let left = map.get_mut(zone).expect("zone present");
            *left -= 1;
            if *left == 0 {
                map.remove(zone);
            }
        }
    }
    // A zone with ready nodes but no endpoint hinted for it would make its proxies ignore
    // the hints anyway (none matches their zone); pea removes them all, as kube does when
    // no hint could be allocated, so every proxy agrees.
    if alloc
        .keys()
        .any(|z| per_zone.get(z).copied().unwrap_or(0) == 0)
    {
        clear_hints(want);
        return Err("No hints allocated for one or more zones".into());
    }
    Ok(())
}

fn clear_hints(want: &mut Desired) {
    for e in want.values_mut().flat_map(|(_, eps)| eps.values_mut()) {
        e.hints = None;
    }
}

/// What of a Node the hints depend on.
fn topology_of(n: &Node) -> (Option<&str>, bool, Option<String>, bool) {
    let cpu = n
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get("cpu"))
        .map(|q| q.0.clone());
    let control_plane = n.metadata.labels.as_ref().is_some_and(|l| {
        l.contains_key("node-role.kubernetes.io/control-plane")
            || l.contains_key("node-role.kubernetes.io/master")
    });
    (zone_of(n), node_ready(n), cpu, control_plane)
}

/// A Node informer handler: when a node comes, goes or changes its zone, readiness or CPU,
/// the Services whose hints depend on nodes are synced again (kube's
/// `checkNodeTopologyDistribution`). Heartbeats change none of these and queue nothing.
pub fn node_handler(
    services: Arc<Cache<Service>>,
    queue: Arc<Queue>,
) -> impl Fn(&Change<Node>) + Send + Sync + 'static {
    move |ch| {
        if let Change::Updated { old, new } = ch {
            if topology_of(old) == topology_of(new) {
                return;
            }
        }
        for s in services.list() {
            if auto_mode(&s) || prefer_close(&s) {
                queue.add(crate::key(
                    s.metadata.namespace.as_deref().unwrap_or_default(),
                    s.metadata.name.as_deref().unwrap_or_default(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, zone: Option<&str>, cpu: &str) -> Arc<Node> {
        let mut labels = serde_json::Map::new();
        if let Some(z) = zone {
            labels.insert(ZONE_LABEL.into(), json!(z));
        }
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": labels},
                "status": {"allocatable": {"cpu": cpu},
                    "conditions": [{"type": "Ready", "status": "True"}]}
            }))
            .unwrap(),
        )
    }

    fn svc(annotations: serde_json::Value, td: Option<&str>) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "s", "namespace": "d",
            "annotations": annotations}, "spec": {"trafficDistribution": td}}))
        .unwrap()
    }

    /// Desired endpoints, one per (node, ready).
    fn want(eps: &[(&str, bool)]) -> Desired {
        let mut m = BTreeMap::new();
        for (i, (node, ready)) in eps.iter().enumerate() {
            let e: Endpoint = serde_json::from_value(json!({
                "addresses": [format!("10.0.0.{}", i + 1)], "nodeName": node,
                "conditions": {"ready": ready}}))
            .unwrap();
            m.insert(format!("{i:03}"), e);
        }
        BTreeMap::from([(Vec::new(), (None, m))])
    }

    fn hints(d: &Desired) -> Vec<String> {
        d.values()
            .flat_map(|(_, eps)| eps.values())
            .map(|e| {
                e.hints
                    .as_ref()
                    .and_then(|h| h.for_zones.as_ref())
                    .map(|z| {
                        z.iter()
                            .map(|z| z.name.clone())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_else(|| "-".into())
            })
            .collect()
    }

    #[test]
    fn auto_allocates_by_zone_cpu_and_redistributes() {
        // Zone a has 3 of 4 cores but only 1 of 4 endpoints: b gives one to a.
        let nodes = [node("n1", Some("a"), "3"), node("n2", Some("b"), "1000m")];
        let s = svc(json!({TOPOLOGY_MODE_ANNOTATION: "Auto"}), None);
        let mut d = want(&[("n1", true), ("n2", true), ("n2", true), ("n2", true)]);
        assert_eq!(apply(&s, &mut d, &nodes), None);
        let h = hints(&d);
        assert_eq!(h.iter().filter(|z| *z == "a").count(), 3, "{h:?}");
        assert_eq!(h.iter().filter(|z| *z == "b").count(), 1, "{h:?}");
        // Zones are filled in from the nodes either way.
        assert!(d
            .values()
            .flat_map(|(_, eps)| eps.values())
            .all(|e| e.zone.is_some()));
        // Balanced: everyone keeps its own zone; not-ready endpoints get no hint.
        let nodes = [node("n1", Some("a"), "2"), node("n2", Some("b"), "2")];
        let mut d = want(&[("n1", true), ("n2", true), ("n1", false)]);
        assert_eq!(apply(&s, &mut d, &nodes), None);
        assert_eq!(hints(&d), ["a", "b", "-"]);
    }

    #[test]
    fn auto_falls_back_to_no_hints() {
        let s = svc(json!({DEPRECATED_HINTS_ANNOTATION: "auto"}), None);
        let two = [node("n1", Some("a"), "2"), node("n2", Some("b"), "2")];
        // Fewer endpoints than zones.
        let mut d = want(&[("n1", true)]);
        let why = apply(&s, &mut d, &two).unwrap();
        assert!(
            why.contains("Insufficient number of endpoints (1 endpoints, 2 zones)"),
            "{why}"
        );
        assert_eq!(hints(&d), ["-"]);
        // One zone only; a node without a zone label.
        let one = [node("n1", Some("a"), "2"), node("n2", Some("a"), "2")];
        let mut d = want(&[("n1", true), ("n2", true)]);
        assert_eq!(
            apply(&s, &mut d, &one).unwrap(),
            "Nodes only ready in one zone"
        );
        let unlabelled = [node("n1", Some("a"), "2"), node("n2", None, "2")];
        assert!(apply(&s, &mut d, &unlabelled)
            .unwrap()
            .starts_with("Insufficient Node"));
        // An endpoint on a node the controller does not know has no zone.
        let mut d = want(&[("n1", true), ("n1", true), ("n2", true), ("n9", true)]);
        assert!(apply(&s, &mut d, &two)
            .unwrap()
            .contains("do not have a zone"));
        assert_eq!(hints(&d), ["-", "-", "-", "-"]);
        // Every endpoint in zone a: b gets none after redistribution is impossible.
        let mut d = want(&[("n1", true), ("n1", true)]);
        let nodes = [node("n1", Some("a"), "1"), node("n2", Some("b"), "1")];
        let why = apply(&s, &mut d, &nodes);
        assert_eq!(hints(&d).iter().filter(|h| *h == "b").count(), 1, "{why:?}");
    }

    #[test]
    fn prefer_close_hints_own_zone_and_no_mode_clears() {
        let nodes = [node("n1", Some("a"), "2"), node("n2", Some("b"), "2")];
        let mut d = want(&[("n1", true), ("n2", true), ("n9", true)]);
        assert_eq!(
            apply(&svc(json!({}), Some("PreferClose")), &mut d, &nodes),
            None
        );
        assert_eq!(hints(&d), ["a", "b", "-"]);
        // Neither the annotation nor trafficDistribution: the hints go.
        assert_eq!(apply(&svc(json!({}), None), &mut d, &nodes), None);
        assert_eq!(hints(&d), ["-", "-", "-"]);
    }
}

//! Placement: which members a template goes to and how many replicas each gets — cluster
//! affinity, then the members' taints against the policy's clusterTolerations, then
//! spreadConstraints (by cluster, and by region or zone groups with Karmada's minGroups /
//! maxGroups), then replicas Duplicated, Divided by static weight, or Divided by each member's
//! available capacity (`dynamicWeight: AvailableReplicas`, and `Aggregated`, which packs them
//! into as few members as fit them) — see [`crate::capacity`] for the estimate.
//!
//! Placement is recomputed from the current members on every reconcile, so a `NoSchedule` taint
//! removes a template from a member just as `NoExecute` does. Division by capacity is the
//! exception that needs memory, as in Karmada: it starts from the previous division (the
//! binding's spec.clusters) and only changes it when the replica count or the set of
//! schedulable members changed — scaling up places only the new replicas by what is free now,
//! scaling down shrinks each member in proportion to what it holds — so replicas do not move
//! each time the members' pods change their free capacity.

use std::collections::{BTreeMap, HashSet};

use crate::capacity::{self, Resources, Summary};
use crate::policy::{Placement, SpreadConstraint, Taint};

/// A member as placement sees it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// The Cluster's spec.taints.
    pub taints: &'a [Taint],
    /// False when the member has been not Ready for longer than the failover toleration: it
    /// keeps no Divided replicas (they move to the others).
    pub schedulable: bool,
    /// The Cluster's spec.region ("" when unset).
    pub region: &'a str,
    /// The Cluster's spec.zones (or its single spec.zone).
    pub zones: &'a [String],
    /// The Cluster's status.resourceSummary, once collected.
    pub summary: Option<&'a Summary>,
}

/// Per member: `None` for a template without replicas or Duplicated (the template's count is
/// kept), `Some(n)` for its Divided share.
pub type Decision = BTreeMap<String, Option<i64>>;

/// What is being placed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// The template's spec.replicas, when the kind has them.
    pub replicas: Option<i64>,
    /// Per-replica resource requests (the pod template's), for division by capacity.
    pub requirements: Option<&'a Resources>,
    /// The previous division by capacity (member → replicas), from the binding.
    pub previous: Option<&'a BTreeMap<String, i64>>,
}

/// How Divided replicas are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Division {
    StaticWeight,
    /// `dynamicWeight: AvailableReplicas`: in proportion to what each member fits.
    AvailableReplicas,
    /// `replicaDivisionPreference: Aggregated`: as few members as fit them.
    Aggregated,
}

/// Whether `placement` divides replicas by the members' capacity (the caller then supplies the
/// previous division and the per-replica requests).
pub fn divides_by_capacity(placement: &Placement) -> bool {
    matches!(
        division(placement),
        Ok((true, Division::AvailableReplicas | Division::Aggregated))
    )
}

fn division(placement: &Placement) -> Result<(bool, Division), String> {
    let rs = placement.replica_scheduling.clone().unwrap_or_default();
    let divided = rs.replica_scheduling_type.as_deref() == Some("Divided");
    let dynamic = rs.weight_preference.and_then(|p| p.dynamic_weight);
    let d = match (rs.replica_division_preference.as_deref(), dynamic.as_deref()) {
        (Some("Aggregated"), _) => Division::Aggregated,
        (None | Some("Weighted"), Some("AvailableReplicas")) => Division::AvailableReplicas,
        (None | Some("Weighted"), Some(d)) => {
            return Err(format!(
                "placement.replicaScheduling.weightPreference.dynamicWeight {d:?} is not defined (only AvailableReplicas)"
            ))
        }
        (None | Some("Weighted"), None) => Division::StaticWeight,
        (Some(p), _) => {
            return Err(format!(
                "placement.replicaScheduling.replicaDivisionPreference {p:?} is not defined (only Weighted or Aggregated)"
            ))
        }
    };
    Ok((divided, d))
}

/// The spread constraints by field, validated (Karmada's webhook rules).
struct Spread<'p> {
    cluster: Option<&'p SpreadConstraint>,
    /// `(field, constraint)` for region or zone.
    group: Option<(&'static str, &'p SpreadConstraint, usize)>,
}

fn spread(placement: &Placement) -> Result<Spread<'_>, String> {
    let mut s = Spread {
        cluster: None,
        group: None,
    };
    for (i, sc) in placement.spread_constraints.iter().enumerate() {
        let at = format!("placement.spreadConstraints[{i}]");
        if let Some(l) = &sc.spread_by_label {
            return Err(format!(
                "{at}.spreadByLabel {l:?} is not implemented (only spreadByField cluster, region or zone)"
            ));
        }
        if sc.min_groups < 0 || sc.max_groups < 0 {
            return Err(format!(
                "{at}: minGroups and maxGroups must not be negative"
            ));
        }
        if sc.max_groups > 0 && sc.min_groups > sc.max_groups {
            return Err(format!(
                "{at}: minGroups {} is greater than maxGroups {}",
                sc.min_groups, sc.max_groups
            ));
        }
        let field = match sc.spread_by_field.as_deref() {
            Some("cluster") => {
                s.cluster = Some(sc);
                continue;
            }
            Some("region") => "region",
            Some("zone") => "zone",
            Some(f) => {
                return Err(format!(
                    "{at}.spreadByField {f:?} is not implemented (only cluster, region or zone)"
                ))
            }
            None => return Err(format!("{at}: spreadByField or spreadByLabel is required")),
        };
        if let Some((other, _, _)) = s.group {
            return Err(format!(
                "{at}: spreadByField {field} together with {other} is not implemented (one of region or zone)"
            ));
        }
        s.group = Some((field, sc, i));
    }
    if s.group.is_some() && s.cluster.is_none() {
        return Err("placement.spreadConstraints: the cluster spread constraint must be enabled in one of the constraints in case of SpreadByField is enabled".into());
    }
    Ok(s)
}

/// Chooses members for a template under `placement`. Errors name what cannot be placed.
pub fn place(
    placement: &Placement,
    members: &[Candidate<'_>],
    req: &Request<'_>,
) -> Result<Decision, String> {
    let replicas = req.replicas;
    let affinity = placement.cluster_affinity.clone().unwrap_or_default();
    let chosen: Vec<&Candidate<'_>> = members
        .iter()
        .filter(|m| affinity.matches(m.name, m.labels))
        .collect();
    if chosen.is_empty() {
        return Err("no member cluster matches placement.clusterAffinity".into());
    }
    let untolerated = |m: &Candidate<'_>| -> Vec<String> {
        m.taints
            .iter()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .filter(|t| {
                !placement
                    .cluster_tolerations
                    .iter()
                    .any(|tol| tol.tolerates(t))
            })
            .map(|t| match &t.value {
                Some(v) => format!("{}={v}:{}", t.key, t.effect),
                None => format!("{}:{}", t.key, t.effect),
            })
            .collect()
    };
    let (mut chosen, tainted): (Vec<&Candidate<'_>>, Vec<&Candidate<'_>>) =
        chosen.into_iter().partition(|m| untolerated(m).is_empty());
    if chosen.is_empty() {
        let which: Vec<String> = tainted
            .iter()
            .map(|m| format!("{} ({})", m.name, untolerated(m).join(", ")))
            .collect();
        return Err(format!(
            "every member cluster matching placement.clusterAffinity has a taint placement.clusterTolerations does not tolerate: {}",
            which.join("; ")
        ));
    }
    let (divided, how) = division(placement)?;
    let rs = placement.replica_scheduling.clone().unwrap_or_default();
    let weights = rs
        .weight_preference
        .clone()
        .unwrap_or_default()
        .static_weight_list;
    let weight_of = |m: &Candidate<'_>| -> i64 {
        if weights.is_empty() {
            return 1;
        }
        weights
            .iter()
            .filter(|w| w.target_cluster.matches(m.name, m.labels))
            .map(|w| w.weight.max(0))
            .max()
            .unwrap_or(0)
    };
    let by_capacity = divided && how != Division::StaticWeight && replicas.is_some();
    let previous = |m: &Candidate<'_>| -> i64 {
        req.previous
            .and_then(|p| p.get(m.name).copied())
            .unwrap_or(0)
    };
    let available = |m: &Candidate<'_>| capacity::max_replicas(m.summary, req.requirements);
    // How members rank within the spread constraints: what they fit (plus what they already
    // hold, as Karmada counts it) when dividing by capacity, else the static weight.
    let score = |m: &Candidate<'_>| -> i64 {
        if by_capacity {
            available(m).saturating_add(previous(m))
        } else {
            weight_of(m)
        }
    };
    let sp = spread(placement)?;
    if sp.cluster.is_some() || sp.group.is_some() {
        // Schedulable members first, then the higher score, then the name.
        chosen.sort_by(|a, b| {
            (!a.schedulable, -score(a), a.name).cmp(&(!b.schedulable, -score(b), b.name))
        });
    }
    if let Some((field, gsc, i)) = sp.group {
        let csc = sp.cluster.expect("checked by spread()");
        let group_replicas = replicas.filter(|_| by_capacity);
        chosen = select_by_group(&chosen, field, gsc, i, csc, group_replicas, &score)?;
    } else if let Some(sc) = sp.cluster {
        if sc.max_groups > 0 {
            chosen.truncate(sc.max_groups as usize);
        }
        let live = chosen.iter().filter(|m| m.schedulable).count() as i64;
        if live < sc.min_groups {
            let i = placement
                .spread_constraints
                .iter()
                .position(|c| std::ptr::eq(c, sc))
                .unwrap_or(0);
            return Err(format!(
                "placement.spreadConstraints[{i}]: minGroups {} but only {live} schedulable member cluster(s) match the placement",
                sc.min_groups
            ));
        }
    }
    let Some(total) = replicas.filter(|_| divided) else {
        return Ok(chosen.iter().map(|m| (m.name.to_string(), None)).collect());
    };
    if how != Division::StaticWeight {
        let live: Vec<(&str, i64)> = chosen
            .iter()
            .filter(|m| m.schedulable)
            .map(|m| (m.name, available(m)))
            .collect();
        let prev: BTreeMap<String, i64> = req.previous.cloned().unwrap_or_default();
        return divide_by_capacity(&live, total, how == Division::Aggregated, &prev);
    }
    let mut out: Decision = chosen
        .iter()
        .map(|m| (m.name.to_string(), Some(0)))
        .collect();
    let live: Vec<(&str, i64)> = chosen
        .iter()
        .filter(|m| m.schedulable)
        .map(|m| (m.name, weight_of(m)))
        .filter(|(_, w)| *w > 0)
        .collect();
    let sum: i64 = live.iter().map(|(_, w)| w).sum();
    if sum == 0 {
        if total == 0 {
            return Ok(out);
        }
        return Err(
            "no schedulable member cluster with a positive static weight for the divided replicas"
                .into(),
        );
    }
    // Largest remainder: floors first, the rest one each by remainder, then weight, then name.
    let mut rest = total;
    let mut remainders = Vec::new();
    for (name, w) in &live {
        let share = total * w / sum;
        rest -= share;
        out.insert(name.to_string(), Some(share));
        remainders.push((total * w % sum, *w, *name));
    }
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(b.2)));
    for (_, _, name) in remainders.iter().cycle().take(rest.max(0) as usize) {
        if let Some(Some(n)) = out.get_mut(*name) {
            *n += 1;
        }
    }
    Ok(out)
}

/// Karmada's selection by region (here also by zone): the groups of schedulable members, scored
/// by how many of the replicas their members fit (Divided by capacity) or by how many members
/// they have; the fewest best-scored groups (at least minGroups, at most maxGroups) whose members
/// reach the cluster constraint's minGroups; then the best member of each chosen group, then the
/// best of the rest up to the cluster constraint's maxGroups.
fn select_by_group<'c, 'a>(
    chosen: &[&'c Candidate<'a>],
    field: &str,
    gsc: &SpreadConstraint,
    i: usize,
    csc: &SpreadConstraint,
    replicas: Option<i64>,
    score: &dyn Fn(&Candidate<'_>) -> i64,
) -> Result<Vec<&'c Candidate<'a>>, String> {
    let at = format!("placement.spreadConstraints[{i}] ({field})");
    let mut groups: BTreeMap<&str, Vec<&'c Candidate<'a>>> = BTreeMap::new();
    for m in chosen.iter().filter(|m| m.schedulable) {
        let keys: Vec<&str> = match field {
            "region" => vec![m.region],
            _ => m.zones.iter().map(String::as_str).collect(),
        };
        for k in keys.into_iter().filter(|k| !k.is_empty()) {
            groups.entry(k).or_default().push(m);
        }
    }
    if (groups.len() as i64) < gsc.min_groups.max(1) {
        return Err(format!(
            "{at}: minGroups {} but the schedulable member clusters of the placement are in {} {field}(s)",
            gsc.min_groups.max(1),
            groups.len()
        ));
    }
    // Karmada's group score: with replicas divided by capacity, how much of a per-group share
    // (replicas / minGroups + 1) its members fit; else how many members it has.
    let group_score = |ms: &[&Candidate<'_>]| -> i64 {
        let Some(total) = replicas else {
            return ms.len() as i64;
        };
        let min = gsc.min_groups.max(1);
        let target = (total - total % min) / min + 1;
        let mut sum = 0i64;
        for m in ms {
            sum = sum.saturating_add(score(m));
            if sum >= target {
                break;
            }
        }
        sum.min(target)
    };
    let mut ranked: Vec<(i64, &str, &Vec<&'c Candidate<'a>>)> = groups
        .iter()
        .map(|(k, ms)| (group_score(ms), *k, ms))
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let most = if gsc.max_groups > 0 {
        (gsc.max_groups as usize).min(ranked.len())
    } else {
        ranked.len()
    };
    let least = (gsc.min_groups.max(1) as usize).min(most);
    let mut picked = None;
    for n in least..=most {
        let members: HashSet<&str> = ranked[..n]
            .iter()
            .flat_map(|(_, _, ms)| ms.iter().map(|m| m.name))
            .collect();
        if members.len() as i64 >= csc.min_groups {
            picked = Some(n);
            break;
        }
    }
    let Some(n) = picked else {
        return Err(format!(
            "{at}: no {most} {field}(s) hold the {} member clusters the cluster spread constraint's minGroups asks for",
            csc.min_groups
        ));
    };
    let mut out: Vec<&'c Candidate<'a>> = Vec::new();
    let mut rest: Vec<&'c Candidate<'a>> = Vec::new();
    for (_, _, ms) in &ranked[..n] {
        for (j, m) in ms.iter().enumerate() {
            if out.iter().chain(&rest).any(|o| o.name == m.name) {
                continue;
            }
            if j == 0 {
                out.push(m);
            } else {
                rest.push(m);
            }
        }
    }
    rest.sort_by(|a, b| (-score(a), a.name).cmp(&(-score(b), b.name)));
    let want = if csc.max_groups > 0 {
        (csc.max_groups as usize).max(out.len())
    } else {
        usize::MAX
    };
    for m in rest {
        if out.len() >= want {
            break;
        }
        out.push(m);
    }
    if (out.len() as i64) < csc.min_groups {
        return Err(format!(
            "{at}: the chosen {field}(s) hold {} member cluster(s), fewer than the cluster spread constraint's minGroups {}",
            out.len(),
            csc.min_groups
        ));
    }
    Ok(out)
}

/// Karmada's division by available replicas: keep the previous division when the count is
/// unchanged; scale down in proportion to what each member holds; scale up by placing only the
/// new replicas, in proportion to what each member fits (AvailableReplicas) or into as few
/// members as fit them, those already holding some first (Aggregated).
fn divide_by_capacity(
    live: &[(&str, i64)],
    total: i64,
    aggregated: bool,
    previous: &BTreeMap<String, i64>,
) -> Result<Decision, String> {
    let scheduled: Vec<(&str, i64)> = live
        .iter()
        .filter_map(|(n, _)| Some((*n, *previous.get(*n)?)))
        .filter(|(_, r)| *r > 0)
        .collect();
    let assigned: i64 = scheduled.iter().map(|(_, r)| r).sum();
    let mut out: BTreeMap<String, i64> =
        scheduled.iter().map(|(n, r)| (n.to_string(), *r)).collect();
    if assigned > total {
        let mut list = scheduled.clone();
        list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        out = divide_by_available(&list, total, aggregated, &HashSet::new())?;
    } else if assigned < total {
        let mut list: Vec<(&str, i64)> = live.to_vec();
        list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let prefer: HashSet<&str> = scheduled.iter().map(|(n, _)| *n).collect();
        for (n, r) in divide_by_available(&list, total - assigned, aggregated, &prefer)? {
            *out.entry(n).or_default() += r;
        }
    }
    Ok(out
        .into_iter()
        .filter(|(_, r)| *r > 0)
        .map(|(n, r)| (n, Some(r)))
        .collect())
}

/// Splits `n` replicas over `list` (member, replicas it fits; sorted best first) in proportion
/// to what each fits, the remainder one each in list order; Aggregated first cuts the list to
/// the shortest prefix (members in `prefer` moved first) that fits them all.
fn divide_by_available(
    list: &[(&str, i64)],
    n: i64,
    aggregated: bool,
    prefer: &HashSet<&str>,
) -> Result<BTreeMap<String, i64>, String> {
    let max: i64 = list.iter().map(|(_, a)| a).sum();
    if max < n {
        let fits: Vec<String> = list.iter().map(|(m, a)| format!("{m} fits {a}")).collect();
        return Err(format!(
            "clusters resources are not enough to schedule, max {max} replicas are support ({}; {n} needed)",
            fits.join(", ")
        ));
    }
    let mut list = list.to_vec();
    let mut sum = max;
    if aggregated {
        list.sort_by_key(|(m, _)| !prefer.contains(m));
        let mut acc = 0;
        let mut k = 0;
        for (_, a) in &list {
            k += 1;
            acc += a;
            if acc >= n {
                break;
            }
        }
        list.truncate(k);
        sum = acc;
    }
    let mut out = BTreeMap::new();
    if sum == 0 {
        return Ok(out);
    }
    let mut given = 0;
    for (m, a) in &list {
        let share = a * n / sum;
        given += share;
        out.insert(m.to_string(), share);
    }
    let rest = (n - given) as usize;
    let size = list.len();
    for (j, (m, _)) in list.iter().enumerate() {
        let extra = rest / size + usize::from(j < rest % size);
        *out.get_mut(*m).expect("inserted") += extra as i64;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(replicas: Option<i64>) -> Request<'static> {
        Request {
            replicas,
            ..Default::default()
        }
    }

    #[test]
    fn divided_by_static_weight_and_failed_over() {
        let none = BTreeMap::new();
        let mut ms = vec![
            Candidate {
                name: "m1",
                labels: &none,
                taints: &[],
                schedulable: true,
                region: "",
                zones: &[],
                summary: None,
            },
            Candidate {
                name: "m2",
                labels: &none,
                taints: &[],
                schedulable: true,
                region: "",
                zones: &[],
                summary: None,
            },
            Candidate {
                name: "m3",
                labels: &none,
                taints: &[],
                schedulable: true,
                region: "",
                zones: &[],
                summary: None,
            },
        ];
        let p: Placement = serde_json::from_value(json!({
            "clusterAffinity": {"clusterNames": ["m1", "m2"]},
            "replicaScheduling": {"replicaSchedulingType": "Divided", "replicaDivisionPreference": "Weighted",
              "weightPreference": {"staticWeightList": [
                {"targetCluster": {"clusterNames": ["m1"]}, "weight": 2},
                {"targetCluster": {"clusterNames": ["m2"]}, "weight": 1}]}}
        }))
        .unwrap();
        let d = place(&p, &ms, &req(Some(3))).unwrap();
        assert_eq!(
            d,
            BTreeMap::from([("m1".into(), Some(2)), ("m2".into(), Some(1))])
        );
        let d = place(&p, &ms, &req(Some(4))).unwrap();
        assert_eq!(
            d,
            BTreeMap::from([("m1".into(), Some(3)), ("m2".into(), Some(1))])
        );
        ms[1].schedulable = false;
        let d = place(&p, &ms, &req(Some(3))).unwrap();
        assert_eq!(
            d,
            BTreeMap::from([("m1".into(), Some(3)), ("m2".into(), Some(0))])
        );
        ms[0].schedulable = false;
        assert!(place(&p, &ms, &req(Some(3)))
            .unwrap_err()
            .contains("no schedulable"));
        let dup: Placement = serde_json::from_value(json!({})).unwrap();
        assert_eq!(place(&dup, &ms, &req(Some(3))).unwrap().len(), 3);
    }

    #[test]
    fn taints_tolerations_and_spread_by_cluster() {
        let none = BTreeMap::new();
        let taints = vec![Taint {
            key: "site".into(),
            value: Some("down".into()),
            effect: "NoSchedule".into(),
        }];
        let ms = vec![
            Candidate {
                name: "m1",
                labels: &none,
                taints: &taints,
                schedulable: true,
                region: "",
                zones: &[],
                summary: None,
            },
            Candidate {
                name: "m2",
                labels: &none,
                taints: &[],
                schedulable: true,
                region: "",
                zones: &[],
                summary: None,
            },
            Candidate {
                name: "m3",
                labels: &none,
                taints: &[],
                schedulable: true,
                region: "",
                zones: &[],
                summary: None,
            },
        ];
        let p: Placement = serde_json::from_value(json!({})).unwrap();
        let d = place(&p, &ms, &req(None)).unwrap();
        assert_eq!(d.keys().collect::<Vec<_>>(), ["m2", "m3"]);
        let p: Placement = serde_json::from_value(json!({"clusterTolerations": [
            {"key": "site", "operator": "Equal", "value": "down", "effect": "NoSchedule"}]}))
        .unwrap();
        assert_eq!(place(&p, &ms, &req(None)).unwrap().len(), 3);
        let p: Placement = serde_json::from_value(json!({"clusterTolerations": [
            {"key": "site", "operator": "Equal", "value": "up"}]}))
        .unwrap();
        assert_eq!(place(&p, &ms, &req(None)).unwrap().len(), 2);
        let p: Placement =
            serde_json::from_value(json!({"clusterAffinity": {"clusterNames": ["m1"]}})).unwrap();
        let e = place(&p, &ms, &req(None)).unwrap_err();
        assert!(e.contains("m1 (site=down:NoSchedule)"), "{e}");

        let p: Placement = serde_json::from_value(json!({
            "clusterTolerations": [{"operator": "Exists"}],
            "spreadConstraints": [{"spreadByField": "cluster", "maxGroups": 2, "minGroups": 2}],
            "replicaScheduling": {"replicaSchedulingType": "Divided",
              "weightPreference": {"staticWeightList": [
                {"targetCluster": {"clusterNames": ["m3"]}, "weight": 3},
                {"targetCluster": {"clusterNames": ["m1", "m2"]}, "weight": 1}]}}}))
        .unwrap();
        let d = place(&p, &ms, &req(Some(4))).unwrap();
        assert_eq!(
            d,
            BTreeMap::from([("m1".into(), Some(1)), ("m3".into(), Some(3))])
        );
        let p: Placement = serde_json::from_value(json!({
            "spreadConstraints": [{"spreadByField": "cluster", "minGroups": 3}]}))
        .unwrap();
        assert!(place(&p, &ms, &req(None))
            .unwrap_err()
            .contains("minGroups 3"));
        let p: Placement = serde_json::from_value(json!({
            "spreadConstraints": [{"spreadByField": "region", "maxGroups": 1}]}))
        .unwrap();
        assert!(place(&p, &ms, &req(None))
            .unwrap_err()
            .contains("the cluster spread constraint must be enabled"));
        let p: Placement = serde_json::from_value(json!({
            "spreadConstraints": [{"spreadByField": "provider"}]}))
        .unwrap();
        assert!(place(&p, &ms, &req(None))
            .unwrap_err()
            .contains("not implemented"));
    }

    fn summary(cpu: &str) -> Summary {
        crate::capacity::summarize(
            &[json!({"status": {"allocatable": {"cpu": cpu, "pods": "110"}}})],
            &[],
        )
    }

    #[test]
    fn divided_by_available_replicas_and_aggregated() {
        let none = BTreeMap::new();
        let sums = [summary("4"), summary("2"), summary("500m")];
        let ms: Vec<Candidate<'_>> = ["m1", "m2", "m3"]
            .iter()
            .zip(&sums)
            .map(|(n, s)| Candidate {
                name: n,
                labels: &none,
                taints: &[],
                schedulable: true,
                region: "",
                zones: &[],
                summary: Some(s),
            })
            .collect();
        let one_cpu = Resources::from([("cpu".into(), 1000)]);
        let dynamic: Placement = serde_json::from_value(json!({
            "replicaScheduling": {"replicaSchedulingType": "Divided", "replicaDivisionPreference": "Weighted",
              "weightPreference": {"dynamicWeight": "AvailableReplicas"}}}))
        .unwrap();
        let fresh = |n| Request {
            replicas: Some(n),
            requirements: Some(&one_cpu),
            previous: None,
        };
        // m1 fits 4, m2 2, m3 none (half a CPU): 4:2:0, and m3 is left out.
        let d = place(&dynamic, &ms, &fresh(6)).unwrap();
        assert_eq!(
            d,
            BTreeMap::from([("m1".into(), Some(4)), ("m2".into(), Some(2))])
        );
        let d = place(&dynamic, &ms, &fresh(3)).unwrap();
        assert_eq!(
            d,
            BTreeMap::from([("m1".into(), Some(2)), ("m2".into(), Some(1))])
        );
        let e = place(&dynamic, &ms, &fresh(7)).unwrap_err();
        assert!(
            e.contains("max 6 replicas") && e.contains("m3 fits 0"),
            "{e}"
        );
        // A previous division is kept while the count is unchanged, whatever is free now.
        let prev = BTreeMap::from([("m1".to_string(), 1), ("m2".to_string(), 2)]);
        let keep = Request {
            previous: Some(&prev),
            ..fresh(3)
        };
        assert_eq!(
            place(&dynamic, &ms, &keep).unwrap(),
            BTreeMap::from([("m1".into(), Some(1)), ("m2".into(), Some(2))])
        );
        // Scaling up places only the new replicas (by what is free); down shrinks in proportion.
        let up = Request {
            previous: Some(&prev),
            ..fresh(6)
        };
        assert_eq!(
            place(&dynamic, &ms, &up).unwrap(),
            BTreeMap::from([("m1".into(), Some(3)), ("m2".into(), Some(3))])
        );
        let down = Request {
            previous: Some(&prev),
            ..fresh(1)
        };
        assert_eq!(
            place(&dynamic, &ms, &down).unwrap(),
            BTreeMap::from([("m2".into(), Some(1))])
        );
        // An unschedulable member's replicas are placed again on the others.
        let mut gone = ms.clone();
        gone[1].schedulable = false;
        assert_eq!(
            place(&dynamic, &gone, &keep).unwrap(),
            BTreeMap::from([("m1".into(), Some(3))])
        );

        let aggregated: Placement = serde_json::from_value(json!({
            "replicaScheduling": {"replicaSchedulingType": "Divided", "replicaDivisionPreference": "Aggregated"}}))
        .unwrap();
        assert_eq!(
            place(&aggregated, &ms, &fresh(3)).unwrap(),
            BTreeMap::from([("m1".into(), Some(3))])
        );
        // 5 need m1 and m2: 4*5/6 = 3, 2*5/6 = 1, the remainder to m1.
        assert_eq!(
            place(&aggregated, &ms, &fresh(5)).unwrap(),
            BTreeMap::from([("m1".into(), Some(4)), ("m2".into(), Some(1))])
        );
        // Scaling up fills the members already holding replicas first.
        let held = BTreeMap::from([("m2".to_string(), 1)]);
        let up = Request {
            previous: Some(&held),
            ..fresh(3)
        };
        assert_eq!(
            place(&aggregated, &ms, &up).unwrap(),
            BTreeMap::from([("m2".into(), Some(3))])
        );
        let bad: Placement = serde_json::from_value(json!({
            "replicaScheduling": {"replicaSchedulingType": "Divided", "weightPreference": {"dynamicWeight": "Cpu"}}}))
        .unwrap();
        assert!(place(&bad, &ms, &fresh(1))
            .unwrap_err()
            .contains("dynamicWeight \"Cpu\""));
        assert!(divides_by_capacity(&aggregated) && divides_by_capacity(&dynamic));
    }

    #[test]
    fn spread_by_region_and_zone() {
        let none = BTreeMap::new();
        let zones = [
            vec!["a1".to_string()],
            vec!["a2".to_string()],
            vec!["b1".to_string()],
            vec![],
        ];
        let sums = [summary("1"), summary("8"), summary("2"), summary("8")];
        let regions = ["east", "east", "west", ""];
        let ms: Vec<Candidate<'_>> = ["e1", "e2", "w1", "x1"]
            .iter()
            .enumerate()
            .map(|(i, n)| Candidate {
                name: n,
                labels: &none,
                taints: &[],
                schedulable: true,
                region: regions[i],
                zones: &zones[i],
                summary: Some(&sums[i]),
            })
            .collect();
        let names = |d: Decision| d.into_keys().collect::<Vec<_>>();
        // Duplicated, one region: the region with more members, its best member only.
        let p: Placement = serde_json::from_value(json!({"spreadConstraints": [
            {"spreadByField": "region", "maxGroups": 1, "minGroups": 1},
            {"spreadByField": "cluster", "maxGroups": 1}]}))
        .unwrap();
        assert_eq!(names(place(&p, &ms, &req(None)).unwrap()), ["e1"]);
        // Two regions: one member from each (members without a region are never chosen).
        let p: Placement = serde_json::from_value(json!({"spreadConstraints": [
            {"spreadByField": "region", "minGroups": 2, "maxGroups": 2},
            {"spreadByField": "cluster", "minGroups": 2, "maxGroups": 2}]}))
        .unwrap();
        assert_eq!(names(place(&p, &ms, &req(None)).unwrap()), ["e1", "w1"]);
        let p: Placement = serde_json::from_value(json!({"spreadConstraints": [
            {"spreadByField": "region", "minGroups": 3},
            {"spreadByField": "cluster"}]}))
        .unwrap();
        let e = place(&p, &ms, &req(None)).unwrap_err();
        assert!(
            e.contains("minGroups 3") && e.contains("2 region(s)"),
            "{e}"
        );
        // Cluster minGroups 3 cannot be met by one region: a second one is added.
        let p: Placement = serde_json::from_value(json!({"spreadConstraints": [
            {"spreadByField": "region", "minGroups": 1, "maxGroups": 2},
            {"spreadByField": "cluster", "minGroups": 3}]}))
        .unwrap();
        assert_eq!(
            names(place(&p, &ms, &req(None)).unwrap()),
            ["e1", "e2", "w1"]
        );
        // Divided by capacity within one region: east fits more, and its members share by capacity.
        let one_cpu = Resources::from([("cpu".into(), 1000)]);
        let p: Placement = serde_json::from_value(json!({
            "spreadConstraints": [{"spreadByField": "region", "maxGroups": 1},
              {"spreadByField": "cluster", "maxGroups": 2}],
            "replicaScheduling": {"replicaSchedulingType": "Divided",
              "weightPreference": {"dynamicWeight": "AvailableReplicas"}}}))
        .unwrap();
        let r = Request {
            replicas: Some(9),
            requirements: Some(&one_cpu),
            previous: None,
        };
        assert_eq!(
            place(&p, &ms, &r).unwrap(),
            BTreeMap::from([("e1".into(), Some(1)), ("e2".into(), Some(8))])
        );
        // By zone: two zones, best member of each.
        let p: Placement = serde_json::from_value(json!({"spreadConstraints": [
            {"spreadByField": "zone", "minGroups": 2, "maxGroups": 2},
            {"spreadByField": "cluster", "maxGroups": 2}]}))
        .unwrap();
        assert_eq!(names(place(&p, &ms, &req(None)).unwrap()).len(), 2);
        let p: Placement = serde_json::from_value(json!({"spreadConstraints": [
            {"spreadByField": "zone"}, {"spreadByField": "region"}, {"spreadByField": "cluster"}]}))
        .unwrap();
        assert!(place(&p, &ms, &req(None))
            .unwrap_err()
            .contains("together with zone"));
    }
}

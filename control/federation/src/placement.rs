//! Placement: which members a template goes to and how many replicas each gets — cluster
//! affinity, then the members' taints against the policy's clusterTolerations, then
//! spreadConstraints by cluster (maxGroups/minGroups), then replicas Duplicated or Divided by
//! static weight.
//!
//! Placement is recomputed from the current members on every reconcile (no earlier decision is
//! kept), so a `NoSchedule` taint removes a template from a member just as `NoExecute` does.

use std::collections::BTreeMap;

use crate::policy::{Placement, Taint};

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
}

/// Per member: `None` for a template without replicas or Duplicated (the template's count is
/// kept), `Some(n)` for its Divided share.
pub type Decision = BTreeMap<String, Option<i64>>;

/// Chooses members for a template with `replicas` (when the kind has them) under `placement`.
/// Errors name what cannot be placed.
pub fn place(
    placement: &Placement,
    members: &[Candidate<'_>],
    replicas: Option<i64>,
) -> Result<Decision, String> {
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
    let rs = placement.replica_scheduling.clone().unwrap_or_default();
    let divided = rs.replica_scheduling_type.as_deref() == Some("Divided");
    let preference = rs.weight_preference.clone().unwrap_or_default();
    if let Some(d) = &preference.dynamic_weight {
        return Err(format!(
            "placement.replicaScheduling.weightPreference.dynamicWeight {d:?} is not implemented (only staticWeightList)"
        ));
    }
    let weights = preference.static_weight_list;
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
    for (i, sc) in placement.spread_constraints.iter().enumerate() {
        let at = format!("placement.spreadConstraints[{i}]");
        if let Some(l) = &sc.spread_by_label {
            return Err(format!(
                "{at}.spreadByLabel {l:?} is not implemented (only spreadByField: cluster)"
            ));
        }
        match sc.spread_by_field.as_deref() {
            Some("cluster") => {}
            Some(f) => {
                return Err(format!(
                    "{at}.spreadByField {f:?} is not implemented (only cluster)"
                ))
            }
            None => return Err(format!("{at}: spreadByField or spreadByLabel is required")),
        }
        if sc.max_groups > 0 && sc.min_groups > sc.max_groups {
            return Err(format!(
                "{at}: minGroups {} is greater than maxGroups {}",
                sc.min_groups, sc.max_groups
            ));
        }
        // Schedulable members first, then the heavier static weight, then the name.
        chosen.sort_by(|a, b| {
            (!a.schedulable, -weight_of(a), a.name).cmp(&(!b.schedulable, -weight_of(b), b.name))
        });
        if sc.max_groups > 0 {
            chosen.truncate(sc.max_groups as usize);
        }
        let live = chosen.iter().filter(|m| m.schedulable).count() as i64;
        if live < sc.min_groups {
            return Err(format!(
                "{at}: minGroups {} but only {live} schedulable member cluster(s) match the placement",
                sc.min_groups
            ));
        }
    }
    let Some(total) = replicas.filter(|_| divided) else {
        return Ok(chosen.iter().map(|m| (m.name.to_string(), None)).collect());
    };
    if let Some(p) = rs.replica_division_preference.as_deref() {
        if p != "Weighted" {
            return Err(format!(
                "placement.replicaScheduling.replicaDivisionPreference {p:?} is not implemented (only Weighted)"
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn divided_by_static_weight_and_failed_over() {
        let none = BTreeMap::new();
        let mut ms = vec![
            Candidate {
                name: "m1",
                labels: &none,
                taints: &[],
                schedulable: true,
            },
            Candidate {
                name: "m2",
                labels: &none,
                taints: &[],
                schedulable: true,
            },
            Candidate {
                name: "m3",
                labels: &none,
                taints: &[],
                schedulable: true,
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
        let d = place(&p, &ms, Some(3)).unwrap();
        assert_eq!(
            d,
            BTreeMap::from([("m1".into(), Some(2)), ("m2".into(), Some(1))])
        );
        let d = place(&p, &ms, Some(4)).unwrap();
        assert_eq!(
            d,
            BTreeMap::from([("m1".into(), Some(3)), ("m2".into(), Some(1))])
        );
        ms[1].schedulable = false;
        let d = place(&p, &ms, Some(3)).unwrap();
        assert_eq!(
            d,
            BTreeMap::from([("m1".into(), Some(3)), ("m2".into(), Some(0))])
        );
        ms[0].schedulable = false;
        assert!(place(&p, &ms, Some(3))
            .unwrap_err()
            .contains("no schedulable"));
        let dup: Placement = serde_json::from_value(json!({})).unwrap();
        assert_eq!(place(&dup, &ms, Some(3)).unwrap().len(), 3);
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
            },
            Candidate {
                name: "m2",
                labels: &none,
                taints: &[],
                schedulable: true,
            },
            Candidate {
                name: "m3",
                labels: &none,
                taints: &[],
                schedulable: true,
            },
        ];
        let p: Placement = serde_json::from_value(json!({})).unwrap();
        let d = place(&p, &ms, None).unwrap();
        assert_eq!(d.keys().collect::<Vec<_>>(), ["m2", "m3"]);
        let p: Placement = serde_json::from_value(json!({"clusterTolerations": [
            {"key": "site", "operator": "Equal", "value": "down", "effect": "NoSchedule"}]}))
        .unwrap();
        assert_eq!(place(&p, &ms, None).unwrap().len(), 3);
        let p: Placement = serde_json::from_value(json!({"clusterTolerations": [
            {"key": "site", "operator": "Equal", "value": "up"}]}))
        .unwrap();
        assert_eq!(place(&p, &ms, None).unwrap().len(), 2);
        let p: Placement =
            serde_json::from_value(json!({"clusterAffinity": {"clusterNames": ["m1"]}})).unwrap();
        let e = place(&p, &ms, None).unwrap_err();
        assert!(e.contains("m1 (site=down:NoSchedule)"), "{e}");

        let p: Placement = serde_json::from_value(json!({
            "clusterTolerations": [{"operator": "Exists"}],
            "spreadConstraints": [{"spreadByField": "cluster", "maxGroups": 2, "minGroups": 2}],
            "replicaScheduling": {"replicaSchedulingType": "Divided",
              "weightPreference": {"staticWeightList": [
                {"targetCluster": {"clusterNames": ["m3"]}, "weight": 3},
                {"targetCluster": {"clusterNames": ["m1", "m2"]}, "weight": 1}]}}}))
        .unwrap();
        let d = place(&p, &ms, Some(4)).unwrap();
        assert_eq!(
            d,
            BTreeMap::from([("m1".into(), Some(1)), ("m3".into(), Some(3))])
        );
        let p: Placement = serde_json::from_value(json!({
            "spreadConstraints": [{"spreadByField": "cluster", "minGroups": 3}]}))
        .unwrap();
        assert!(place(&p, &ms, None).unwrap_err().contains("minGroups 3"));
        let p: Placement = serde_json::from_value(json!({
            "spreadConstraints": [{"spreadByField": "region", "maxGroups": 1}]}))
        .unwrap();
        assert!(place(&p, &ms, None)
            .unwrap_err()
            .contains("not implemented"));
    }
}

//! Placement: which members a template goes to and how many replicas each gets.

use std::collections::BTreeMap;

use crate::policy::Placement;

/// A member as placement sees it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
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
    let rs = placement.replica_scheduling.clone().unwrap_or_default();
    let divided = rs.replica_scheduling_type.as_deref() == Some("Divided");
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
    let weights = rs.weight_preference.unwrap_or_default().static_weight_list;
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
                schedulable: true,
            },
            Candidate {
                name: "m2",
                labels: &none,
                schedulable: true,
            },
            Candidate {
                name: "m3",
                labels: &none,
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
}

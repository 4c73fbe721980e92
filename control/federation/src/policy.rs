//! PropagationPolicy / ClusterPropagationPolicy: which templates they select and, when several
//! select one template, which wins — Karmada's rules: a namespaced PropagationPolicy beats a
//! ClusterPropagationPolicy; then the higher explicit `spec.priority`; then the more specific
//! selector (by name > by label selector > by apiVersion/kind only); then the name, alphabetically.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;

use crate::selector;

/// One `resourceSelectors` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSelector {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub label_selector: Option<LabelSelector>,
}

/// `clusterAffinity` (also the target of static weights and override rules).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterAffinity {
    #[serde(default)]
    pub cluster_names: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub label_selector: Option<LabelSelector>,
}

impl ClusterAffinity {
    /// Whether the member `name` with `labels` is chosen; an empty affinity chooses every member.
    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.exclude.iter().any(|n| n == name) {
            return false;
        }
        if !self.cluster_names.is_empty() && !self.cluster_names.iter().any(|n| n == name) {
            return false;
        }
        self.label_selector
            .as_ref()
            .is_none_or(|s| selector::matches(s, labels))
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StaticWeight {
    pub target_cluster: ClusterAffinity,
    pub weight: i64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WeightPreference {
    #[serde(default)]
    pub static_weight_list: Vec<StaticWeight>,
    /// Karmada's `AvailableReplicas`; not built (refused by name rather than ignored).
    #[serde(default)]
    pub dynamic_weight: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaScheduling {
    /// `Duplicated` (every member gets spec.replicas) or `Divided`.
    #[serde(default)]
    pub replica_scheduling_type: Option<String>,
    /// `Weighted` (static weights) or `Aggregated`; only Weighted is built.
    #[serde(default)]
    pub replica_division_preference: Option<String>,
    #[serde(default)]
    pub weight_preference: Option<WeightPreference>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    #[serde(default)]
    pub cluster_affinity: Option<ClusterAffinity>,
    #[serde(default)]
    pub cluster_tolerations: Vec<Toleration>,
    #[serde(default)]
    pub spread_constraints: Vec<SpreadConstraint>,
    #[serde(default)]
    pub replica_scheduling: Option<ReplicaScheduling>,
}

/// A Cluster's `spec.taints` entry (core/v1 Taint's shape).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Taint {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// A `placement.clusterTolerations` entry (core/v1 Toleration's shape and matching rules).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Toleration {
    #[serde(default)]
    pub key: Option<String>,
    /// `Equal` (the default) or `Exists`.
    #[serde(default)]
    pub operator: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub effect: Option<String>,
}

impl Toleration {
    /// Kubernetes' rule: an empty effect matches every effect, an empty key with `Exists`
    /// matches every taint, `Equal` compares values.
    pub fn tolerates(&self, t: &Taint) -> bool {
        if self
            .effect
            .as_deref()
            .is_some_and(|e| !e.is_empty() && e != t.effect)
        {
            return false;
        }
        let key = self.key.as_deref().unwrap_or("");
        match self.operator.as_deref().unwrap_or("Equal") {
            "Exists" => key.is_empty() || key == t.key,
            _ => {
                key == t.key
                    && self.value.as_deref().unwrap_or("") == t.value.as_deref().unwrap_or("")
            }
        }
    }
}

/// A `placement.spreadConstraints` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SpreadConstraint {
    /// `cluster`, `region`, `zone` or `provider`; only `cluster` is built.
    #[serde(default)]
    pub spread_by_field: Option<String>,
    #[serde(default)]
    pub spread_by_label: Option<String>,
    #[serde(default)]
    pub max_groups: i64,
    #[serde(default)]
    pub min_groups: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    #[serde(default)]
    pub priority: i64,
    pub resource_selectors: Vec<ResourceSelector>,
    #[serde(default)]
    pub placement: Placement,
}

/// A propagation policy of either scope.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `Some` for a PropagationPolicy (it selects only templates of its namespace).
    pub namespace: Option<String>,
    pub name: String,
    pub spec: PolicySpec,
}

/// A template's identity as selectors see it.
#[derive(Debug, Clone, Copy)]
pub struct TemplateRef<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// Karmada's implicit priority of the best selector of `selectors` matching `t`:
/// 3 by name, 2 by label selector, 1 by apiVersion/kind only; `None` when none matches.
pub fn implicit_priority(
    selectors: &[ResourceSelector],
    scope_namespace: Option<&str>,
    t: &TemplateRef<'_>,
) -> Option<u8> {
    if scope_namespace.is_some() && scope_namespace != t.namespace {
        return None;
    }
    selectors
        .iter()
        .filter_map(|s| {
            if s.api_version != t.api_version || s.kind != t.kind {
                return None;
            }
            if s.namespace
                .as_deref()
                .is_some_and(|n| Some(n) != t.namespace)
            {
                return None;
            }
            if let Some(name) = &s.name {
                return (name == t.name).then_some(3);
            }
            if let Some(sel) = &s.label_selector {
                return selector::matches(sel, t.labels).then_some(2);
            }
            Some(1)
        })
        .max()
}

/// Sort key of a matching policy: namespaced, explicit priority, implicit priority, name.
type Rank<'a> = (bool, i64, u8, std::cmp::Reverse<&'a str>);

/// The winning policy for `t` among `policies`, and the names of the others that matched.
pub fn winner<'p>(
    policies: &'p [Policy],
    t: &TemplateRef<'_>,
) -> Option<(&'p Policy, Vec<String>)> {
    let mut matched: Vec<(&Policy, Rank<'_>)> = policies
        .iter()
        .filter_map(|p| {
            let implicit =
                implicit_priority(&p.spec.resource_selectors, p.namespace.as_deref(), t)?;
            Some((
                p,
                (
                    p.namespace.is_some(),
                    p.spec.priority,
                    implicit,
                    std::cmp::Reverse(p.name.as_str()),
                ),
            ))
        })
        .collect();
    matched.sort_by(|a, b| b.1.cmp(&a.1));
    let (first, _) = *matched.first()?;
    let others = matched[1..].iter().map(|(p, _)| display(p)).collect();
    Some((first, others))
}

/// `PropagationPolicy ns/name` or `ClusterPropagationPolicy name`.
pub fn display(p: &Policy) -> String {
    match &p.namespace {
        Some(ns) => format!("PropagationPolicy {ns}/{}", p.name),
        None => format!("ClusterPropagationPolicy {}", p.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(ns: Option<&str>, name: &str, spec: serde_json::Value) -> Policy {
        Policy {
            namespace: ns.map(str::to_string),
            name: name.into(),
            spec: serde_json::from_value(spec).unwrap(),
        }
    }

    #[test]
    fn the_most_specific_policy_wins() {
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let t = TemplateRef {
            api_version: "apps/v1",
            kind: "Deployment",
            namespace: Some("default"),
            name: "web",
            labels: &labels,
        };
        let by_kind =
            json!({"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment"}]});
        let by_label = json!({"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment",
            "labelSelector": {"matchLabels": {"app": "web"}}}]});
        let by_name = json!({"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}]});
        let ps = vec![
            policy(Some("default"), "a-kind", by_kind.clone()),
            policy(Some("default"), "b-name", by_name.clone()),
            policy(Some("default"), "c-label", by_label),
            policy(None, "cluster-name", by_name),
            policy(Some("other"), "z", by_kind),
        ];
        let (w, others) = winner(&ps, &t).unwrap();
        assert_eq!(w.name, "b-name");
        assert_eq!(others.len(), 3, "{others:?}");
        // An explicit priority beats specificity; a PropagationPolicy beats a cluster-wide one.
        let mut ps2 = ps.clone();
        ps2[0].spec.priority = 5;
        ps2[3].spec.priority = 100;
        assert_eq!(winner(&ps2, &t).unwrap().0.name, "a-kind");
        // Ties go to the alphabetically first name.
        let ps3 = vec![
            ps[1].clone(),
            policy(
                Some("default"),
                "a-name",
                json!({"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}]}),
            ),
        ];
        assert_eq!(winner(&ps3, &t).unwrap().0.name, "a-name");
    }
}

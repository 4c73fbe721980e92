//! RBAC policy rules and kube's arithmetic on them: whether a rule allows a request
//! (`RuleAllows`), whether rules cover others (`Covers` over `BreakdownRule`), and how missing
//! rules are compacted and printed (`CompactRules`, `CompactString`) in escalation refusals.

use serde::{Deserialize, Serialize};

use crate::authz::Attributes;

/// rbac.authorization.k8s.io/v1 PolicyRule.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Rule {
    pub verbs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    #[serde(rename = "nonResourceURLs", skip_serializing_if = "Vec::is_empty")]
    pub non_resource_urls: Vec<String>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn has(set: &[String], s: &str) -> bool {
    set.iter().any(|x| x == s)
}

fn has_all(set: &[String], want: &[String]) -> bool {
    want.iter().all(|w| has(set, w))
}

impl Rule {
    pub fn resource(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Self {
        Self {
            verbs: strings(verbs),
            api_groups: strings(groups),
            resources: strings(resources),
            ..Self::default()
        }
    }

    pub fn non_resource(verbs: &[&str], urls: &[&str]) -> Self {
        Self {
            verbs: strings(verbs),
            non_resource_urls: strings(urls),
            ..Self::default()
        }
    }

    pub fn with_names(mut self, names: &[&str]) -> Self {
        self.resource_names = strings(names);
        self
    }

    /// Parses a JSON list of rules; malformed entries are skipped (validation refuses them on
    /// writes, so only hand-edited store contents can hold them).
    pub fn parse_list(v: Option<&serde_json::Value>) -> Vec<Rule> {
        v.and_then(serde_json::Value::as_array)
            .map(|a| a.iter().filter_map(|r| Rule::deserialize(r).ok()).collect())
            .unwrap_or_default()
    }

    /// kube's `RuleAllows`.
    pub fn allows(&self, a: &Attributes) -> bool {
        if !self.verbs.iter().any(|v| v == "*" || *v == a.verb) {
            return false;
        }
        if !a.resource_request {
            return self.non_resource_urls.iter().any(|u| {
                u == "*"
                    || *u == a.path
                    || u.strip_suffix('*')
                        .is_some_and(|prefix| a.path.starts_with(prefix.trim_end_matches('*')))
            });
        }
        if !self
            .api_groups
            .iter()
            .any(|g| g == "*" || *g == a.api_group)
        {
            return false;
        }
        let resource_ok = self.resources.iter().any(|r| {
            if r == "*" {
                return true;
            }
            if a.subresource.is_empty() {
                return *r == a.resource;
            }
            // `pods/log`, or `*/log` for that subresource of every resource.
            r.split_once('/')
                .is_some_and(|(res, sub)| sub == a.subresource && (res == a.resource || res == "*"))
        });
        resource_ok && (self.resource_names.is_empty() || has(&self.resource_names, &a.name))
    }

    /// kube's `BreakdownRule`: one verb, one group, one resource, one name per rule.
    pub fn breakdown(&self) -> Vec<Rule> {
        let mut out = Vec::new();
        for g in &self.api_groups {
            for r in &self.resources {
                for v in &self.verbs {
                    let base = Rule {
                        verbs: vec![v.clone()],
                        api_groups: vec![g.clone()],
                        resources: vec![r.clone()],
                        ..Rule::default()
                    };
                    if self.resource_names.is_empty() {
                        out.push(base);
                    } else {
                        for n in &self.resource_names {
                            let mut sub = base.clone();
                            sub.resource_names = vec![n.clone()];
                            out.push(sub);
                        }
                    }
                }
            }
        }
        for u in &self.non_resource_urls {
            for v in &self.verbs {
                out.push(Rule {
                    verbs: vec![v.clone()],
                    non_resource_urls: vec![u.clone()],
                    ..Rule::default()
                });
            }
        }
        out
    }

    /// kube's `ruleCovers`: whether this (owner) rule covers a broken-down rule.
    fn covers(&self, sub: &Rule) -> bool {
        let verbs = has(&self.verbs, "*") || has_all(&self.verbs, &sub.verbs);
        let groups = has(&self.api_groups, "*") || has_all(&self.api_groups, &sub.api_groups);
        let resources = has(&self.resources, "*")
            || has_all(&self.resources, &sub.resources)
            || sub.resources.iter().all(|path| {
                has(&self.resources, path)
                    || path
                        .split_once('/')
                        .is_some_and(|(_, s)| has(&self.resources, &format!("*/{s}")))
            });
        let urls = sub.non_resource_urls.iter().all(|path| {
            self.non_resource_urls.iter().any(|owner| {
                owner == path
                    || owner
                        .strip_suffix('*')
                        .is_some_and(|p| path.starts_with(p.trim_end_matches('*')))
            })
        });
        let names = if sub.resource_names.is_empty() {
            self.resource_names.is_empty()
        } else {
            self.resource_names.is_empty() || has_all(&self.resource_names, &sub.resource_names)
        };
        verbs && groups && resources && names && urls
    }

    /// kube's `CompactString`: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`.
    pub fn compact_string(&self) -> String {
        let q = |v: &[String]| {
            format!(
                "[{}]",
                v.iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        };
        let mut parts = Vec::new();
        if !self.api_groups.is_empty() {
            parts.push(format!("APIGroups:{}", q(&self.api_groups)));
        }
        if !self.resources.is_empty() {
            parts.push(format!("Resources:{}", q(&self.resources)));
        }
        if !self.non_resource_urls.is_empty() {
            parts.push(format!("NonResourceURLs:{}", q(&self.non_resource_urls)));
        }
        if !self.resource_names.is_empty() {
            parts.push(format!("ResourceNames:{}", q(&self.resource_names)));
        }
        if !self.verbs.is_empty() {
            parts.push(format!("Verbs:{}", q(&self.verbs)));
        }
        format!("{{{}}}", parts.join(", "))
    }
}

/// kube's `Covers`: whether `owner` holds every permission in `servant`, and the atomic rules
/// it lacks.
pub fn covers(owner: &[Rule], servant: &[Rule]) -> (bool, Vec<Rule>) {
    let missing: Vec<Rule> = servant
        .iter()
        .flat_map(Rule::breakdown)
        .filter(|sub| !owner.iter().any(|o| o.covers(sub)))
        .collect();
    (missing.is_empty(), missing)
}

/// kube's `CompactRules`: rules for one group and resource (and at most one name) that differ
/// only in their verb are merged.
pub fn compact(rules: &[Rule]) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    let mut simple: Vec<Rule> = Vec::new();
    for r in rules {
        let is_simple = r.resource_names.len() <= 1
            && r.non_resource_urls.is_empty()
            && r.api_groups.len() == 1
            && r.resources.len() == 1;
        if !is_simple {
            out.push(r.clone());
            continue;
        }
        match simple.iter_mut().find(|s| {
            s.api_groups == r.api_groups
                && s.resources == r.resources
                && s.resource_names == r.resource_names
        }) {
            Some(s) => s.verbs.extend(r.verbs.iter().cloned()),
            None => simple.push(r.clone()),
        }
    }
    out.extend(simple);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn rules_match_verbs_groups_resources_and_names() {
        let r = Rule::resource(&["get", "list"], &[""], &["pods", "pods/log"]);
        assert!(r.allows(&res("get", "", "pods", "", "web")));
        assert!(r.allows(&res("get", "", "pods", "log", "web")));
        assert!(!r.allows(&res("get", "", "pods", "exec", "web")));
        assert!(!r.allows(&res("create", "", "pods", "", "")));
        assert!(!r.allows(&res("get", "apps", "pods", "", "")));
        // A rule for pods does not reach its subresources.
        let pods = Rule::resource(&["*"], &["*"], &["pods"]);
        assert!(!pods.allows(&res("get", "", "pods", "status", "p")));
        assert!(pods.allows(&res("delete", "x.io", "pods", "", "p")));
        let any_status = Rule::resource(&["get"], &[""], &["*/status"]);
        assert!(any_status.allows(&res("get", "", "nodes", "status", "n")));
        assert!(!any_status.allows(&res("get", "", "nodes", "", "n")));
        let named = Rule::resource(&["get", "update"], &["coordination.k8s.io"], &["leases"])
            .with_names(&["kube-scheduler"]);
        assert!(named.allows(&res(
            "update",
            "coordination.k8s.io",
            "leases",
            "",
            "kube-scheduler"
        )));
        assert!(!named.allows(&res("update", "coordination.k8s.io", "leases", "", "other")));
        // A create has no name, so a named rule never allows it.
        assert!(!named.allows(&res("get", "coordination.k8s.io", "leases", "", "")));
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_star_suffix() {
        let r = Rule::non_resource(&["get"], &["/healthz", "/apis/*", "/version/"]);
        let path = |p: &str| Attributes::non_resource("GET", p);
        assert!(r.allows(&path("/healthz")));
        assert!(!r.allows(&path("/healthz/etcd")));
        assert!(r.allows(&path("/apis/apps/v1")));
        assert!(r.allows(&path("/apis/")));
        assert!(!r.allows(&path("/apis")));
        assert!(r.allows(&path("/version/")));
        assert!(!r.allows(&Attributes::non_resource("POST", "/healthz")));
        // Resource rules never grant paths and the other way round.
        assert!(!Rule::resource(&["*"], &["*"], &["*"]).allows(&path("/metrics")));
        assert!(!Rule::non_resource(&["*"], &["*"]).allows(&res("get", "", "pods", "", "")));
        assert!(Rule::non_resource(&["*"], &["*"]).allows(&path("/metrics")));
    }

    #[test]
    fn coverage_breaks_rules_down_and_reports_what_is_missing() {
        let owner = vec![
            Rule::resource(&["get", "list", "watch"], &[""], &["pods", "configmaps"]),
            Rule::resource(&["*"], &["apps"], &["deployments"]).with_names(&["web"]),
            Rule::resource(&["get"], &[""], &["*/status"]),
            Rule::non_resource(&["get"], &["/healthz/*"]),
        ];
        assert!(covers(&owner, &[Rule::resource(&["get"], &[""], &["pods"])]).0);
        assert!(covers(&owner, &[Rule::resource(&["get"], &[""], &["pods/status"])]).0);
        assert!(covers(&owner, &[Rule::non_resource(&["get"], &["/healthz/etcd"])]).0);
        assert!(
            covers(
                &owner,
                &[Rule::resource(&["update"], &["apps"], &["deployments"]).with_names(&["web"])]
            )
            .0
        );
        // The same verb on every deployment is more than one named deployment.
        let (ok, missing) = covers(
            &owner,
            &[Rule::resource(&["update"], &["apps"], &["deployments"])],
        );
        assert!(!ok);
        assert_eq!(
            missing,
            [Rule::resource(&["update"], &["apps"], &["deployments"])]
        );
        let (ok, missing) = covers(
            &owner,
            &[Rule::resource(
                &["get", "create", "delete"],
                &[""],
                &["pods", "secrets"],
            )],
        );
        assert!(!ok);
        let mut text: Vec<String> = compact(&missing).iter().map(Rule::compact_string).collect();
        text.sort();
        assert_eq!(
            text,
            [
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["create" "delete"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "create" "delete"]}"#,
            ]
        );
        // A star verb is covered only by a star verb.
        assert!(!covers(&owner, &[Rule::resource(&["*"], &[""], &["pods"])]).0);
        assert!(
            covers(
                &[Rule::resource(&["*"], &["*"], &["*"])],
                &[Rule::resource(&["*"], &[""], &["pods"])]
            )
            .0
        );
    }

    #[test]
    fn rules_round_trip_kube_json() {
        let v = serde_json::json!([
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "resourceNames": ["a"]},
            {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
            "garbage"
        ]);
        let rules = Rule::parse_list(Some(&v));
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1], Rule::non_resource(&["get"], &["/healthz"]));
        assert_eq!(
            serde_json::to_value(&rules[1]).unwrap(),
            serde_json::json!({"verbs": ["get"], "nonResourceURLs": ["/healthz"]})
        );
    }
}

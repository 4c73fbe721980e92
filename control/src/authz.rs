//! The authorizer chain, as kube-apiserver's `--authorization-mode=Node,RBAC`: members of
//! `system:masters` may do anything (kube's privileged-group authorizer), then the node
//! authorizer ([`crate::node_authz`], a graph of the nodes' pods and what they use) allows what
//! a node identity may do, then RBAC ([`crate::rbac`]) decides from Roles, ClusterRoles and
//! their bindings. A refusal is kube's 403 `Status` with its exact wording and the reasons of
//! the authorizers that had no opinion, and is logged (who, verb, what).

use std::sync::Arc;

use crate::auth::{User, ADMIN_GROUP};
use crate::node_authz::populator::NodeGraph;
use crate::node_authz::Verdict;
use crate::rbac::index::RbacIndex;
use crate::rbac::rules::Rule;
use crate::request::{Query, RequestInfo};
use crate::status::ApiError;

/// What is being asked, as kube's `authorizer.Attributes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    /// A request for a resource; otherwise for the non-resource `path`.
    pub resource_request: bool,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub path: String,
}

impl Attributes {
    /// A resource request, as kube's RequestInfo sees it: a namespace's own path names it as
    /// the namespace too (so a RoleBinding in `ns` can grant `get namespace ns`), and a list or
    /// watch with the field selector `metadata.name=X` is authorized for the name `X`.
    pub fn from_info(info: &RequestInfo, query: &Query) -> Self {
        let mut namespace = info.namespace.clone().unwrap_or_default();
        let mut name = info.name.clone().unwrap_or_default();
        if info.resource == "namespaces" && info.api_group.is_empty() && namespace.is_empty() {
            namespace = name.clone();
        }
        if name.is_empty() && matches!(info.verb.as_str(), "list" | "watch") {
            if let Some(sel) = query.get("fieldSelector") {
                let exact = sel.split(',').find_map(|term| {
                    let term = term.trim();
                    term.strip_prefix("metadata.name==")
                        .or_else(|| term.strip_prefix("metadata.name="))
                });
                if let Some(n) = exact
                    .map(str::trim)
                    .filter(|n| !n.is_empty() && !n.contains(['/', '%']) && *n != "." && *n != "..")
                {
                    name = n.to_string();
                }
            }
        }
        Self {
            verb: info.verb.clone(),
            resource_request: true,
            api_group: info.api_group.clone(),
            api_version: info.api_version.clone(),
            resource: info.resource.clone(),
            subresource: info.subresource.clone().unwrap_or_default(),
            namespace,
            name,
            path: String::new(),
        }
    }

    /// A request for a path that is not a resource (`/healthz`, `/version`, `/apis/...`); the
    /// verb is the lower-cased HTTP method (`get` for HEAD too), as kube's RequestInfo.
    pub fn non_resource(method: &str, path: &str) -> Self {
        let verb = match method {
            "GET" | "HEAD" => "get".to_string(),
            other => other.to_ascii_lowercase(),
        };
        Self {
            verb,
            resource_request: false,
            path: path.to_string(),
            ..Self::default()
        }
    }

    /// A resource request built from its parts (reviews, impersonation, escalation checks).
    pub fn resource(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        let (resource, subresource) = match resource.split_once('/') {
            Some((r, s)) => (r, s),
            None => (resource, ""),
        };
        Self {
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            api_version: "*".into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
            path: String::new(),
        }
    }

    /// `pods` or `pods/log`: how RBAC rules name what is asked for.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// kube's `forbiddenMessage`: what the user may not do.
    pub fn forbidden_message(&self, user: &str) -> String {
        if !self.resource_request {
            return format!("User {user:?} cannot {} path {:?}", self.verb, self.path);
        }
        let resource = self.combined_resource();
        if self.namespace.is_empty() {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
                self.verb, self.api_group
            )
        } else {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
                self.verb, self.api_group, self.namespace
            )
        }
    }

    /// kube's `ForbiddenStatusError`: the 403 for this request, with the authorizer's reason.
    pub fn forbidden(&self, user: &str, reason: &str) -> ApiError {
        let mut message = self.forbidden_message(user);
        if !reason.is_empty() {
            message = format!("{message}: {reason}");
        }
        ApiError::Forbidden {
            group: self.api_group.clone(),
            resource: self.resource.clone(),
            name: self.name.clone(),
            message,
        }
    }
}

/// What the node authorizer needs beyond the attributes, for requests through the API.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeFacts<'a> {
    /// A create's name, taken from its body (the request names none).
    pub created_name: Option<&'a str>,
    /// What [`crate::node_authz::Facts::bound_node`] says.
    pub bound_node: Option<&'a str>,
}

/// A decision and kube's reason for it (the RBAC binding that allowed it, or why not).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

impl Decision {
    fn allow(reason: impl Into<String>) -> Self {
        Self {
            allowed: true,
            reason: reason.into(),
        }
    }
}

/// Which authorizers run (kube's `--authorization-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    pub node: bool,
    pub rbac: bool,
    pub always_allow: bool,
}

impl Default for Mode {
    fn default() -> Self {
        Self {
            node: true,
            rbac: true,
            always_allow: false,
        }
    }
}

impl Mode {
    /// Parses kube's comma-separated list (`Node,RBAC`, `RBAC`, `AlwaysAllow`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut m = Self {
            node: false,
            rbac: false,
            always_allow: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "Node" => m.node = true,
                "RBAC" => m.rbac = true,
                "AlwaysAllow" => m.always_allow = true,
                other => {
                    return Err(format!(
                        "authorization mode {other:?} is not supported (Node, RBAC, AlwaysAllow)"
                    ))
                }
            }
        }
        if !(m.node || m.rbac || m.always_allow) {
            return Err("at least one authorization mode is needed".into());
        }
        Ok(m)
    }
}

/// Rules a user holds in a namespace, as SelfSubjectRulesReview reports them.
#[derive(Debug, Clone, Default)]
pub struct RulesFor {
    pub rules: Vec<Rule>,
    pub incomplete: bool,
    pub errors: Vec<String>,
}

/// The chain of authorizers.
#[derive(Debug)]
pub struct Authorizer {
    pub mode: Mode,
    pub rbac: Arc<RbacIndex>,
    /// The node authorizer's graph.
    pub nodes: Arc<NodeGraph>,
}

impl Authorizer {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            rbac: Arc::new(RbacIndex::default()),
            nodes: Arc::new(NodeGraph::default()),
        }
    }

    /// Decides `attrs` for `user`.
    pub fn authorize(
        &self,
        user: &User,
        attrs: &Attributes,
        node_facts: NodeFacts<'_>,
    ) -> Decision {
        if self.mode.always_allow || user.groups.iter().any(|g| g == ADMIN_GROUP) {
            return Decision::allow("");
        }
        // kube's union authorizer: the reasons of those with no opinion join the refusal.
        let mut reasons = Vec::new();
        if let Some(node) = crate::auth::node_name(user).filter(|_| self.mode.node) {
            let verdict = if node.is_empty() {
                Verdict::NoOpinion(format!("unknown node for user {:?}", user.name))
            } else if attrs.name.is_empty() && node_facts.created_name.is_some() {
                let mut named = attrs.clone();
                named.name = node_facts.created_name.unwrap_or_default().to_string();
                self.decide_node(node, &named, node_facts)
            } else {
                self.decide_node(node, attrs, node_facts)
            };
            match verdict {
                Verdict::Allow => return Decision::allow(""),
                Verdict::NoOpinion(r) if !r.is_empty() => reasons.push(r),
                Verdict::NoOpinion(_) => {}
            }
        }
        if self.mode.rbac {
            let d = self.rbac.snapshot().authorize(user, attrs);
            if d.allowed {
                return d;
            }
            if !d.reason.is_empty() {
                reasons.push(d.reason);
            }
        }
        Decision {
            allowed: false,
            reason: reasons.join("\n"),
        }
    }

    fn decide_node(&self, node: &str, attrs: &Attributes, facts: NodeFacts<'_>) -> Verdict {
        let graph = self.nodes.read();
        crate::node_authz::authorize(
            &graph,
            node,
            attrs,
            crate::node_authz::Facts {
                bound_node: facts.bound_node,
            },
        )
    }

    /// Every rule `user` holds in `namespace` (kube's union of rule resolvers).
    pub fn rules_for(&self, user: &User, namespace: &str) -> RulesFor {
        let mut out = RulesFor::default();
        if self.mode.always_allow || user.groups.iter().any(|g| g == ADMIN_GROUP) {
            out.rules.push(Rule::resource(&["*"], &["*"], &["*"]));
            out.rules.push(Rule::non_resource(&["*"], &["*"]));
        }
        if self.mode.node && crate::auth::node_name(user).is_some() {
            out.incomplete = true;
            out.errors
                .push("node authorizer does not support user rule resolution".into());
        }
        if self.mode.rbac {
            let (rules, errors) = self.rbac.snapshot().rules_for(user, namespace);
            out.rules.extend(rules);
            out.errors.extend(errors);
        }
        out
    }
}

/// kube's `utilerrors.NewAggregate(...).Error()`: one message alone, several in brackets.
pub fn aggregate(errors: &[String]) -> String {
    let mut seen: Vec<&String> = Vec::new();
    for e in errors {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    match seen.as_slice() {
        [] => String::new(),
        [one] => (*one).clone(),
        many => format!(
            "[{}]",
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(verb: &str, resource: &str, ns: Option<&str>, name: Option<&str>) -> RequestInfo {
        RequestInfo {
            verb: verb.into(),
            api_group: String::new(),
            api_version: "v1".into(),
            resource: resource.into(),
            subresource: None,
            namespace: ns.map(Into::into),
            name: name.map(Into::into),
            proxy_path: None,
        }
    }

    #[test]
    fn refusals_read_like_kube() {
        let a = Attributes::from_info(&info("list", "pods", Some("y"), None), &Query::default());
        assert_eq!(
            a.forbidden("x", "").to_string(),
            r#"pods is forbidden: User "x" cannot list resource "pods" in API group "" in the namespace "y""#
        );
        let a = Attributes::from_info(&info("get", "nodes", None, Some("n1")), &Query::default());
        assert_eq!(
            a.forbidden("x", "").to_string(),
            r#"nodes "n1" is forbidden: User "x" cannot get resource "nodes" in API group "" at the cluster scope"#
        );
        let a = Attributes::non_resource("GET", "/metrics");
        assert_eq!(
            a.forbidden("x", "").to_string(),
            r#"forbidden: User "x" cannot get path "/metrics""#
        );
        let mut d = Attributes::resource("get", "apps", "deployments/scale", "d", "web");
        d.subresource = "scale".into();
        assert_eq!(
            d.forbidden("x", "RBAC: role.rbac.authorization.k8s.io \"r\" not found").to_string(),
            "deployments.apps \"web\" is forbidden: User \"x\" cannot get resource \"deployments/scale\" in API group \"apps\" in the namespace \"d\": RBAC: role.rbac.authorization.k8s.io \"r\" not found"
        );
    }

    #[test]
    fn a_namespace_is_its_own_namespace_and_field_selectors_name_objects() {
        let a = Attributes::from_info(
            &info("get", "namespaces", None, Some("team")),
            &Query::default(),
        );
        assert_eq!((a.namespace.as_str(), a.name.as_str()), ("team", "team"));
        let a = Attributes::from_info(
            &info("watch", "pods", Some("d"), None),
            &Query::parse(Some("fieldSelector=metadata.name%3Dweb&watch=1")),
        );
        assert_eq!(a.name, "web");
        let a = Attributes::from_info(
            &info("list", "pods", Some("d"), None),
            &Query::parse(Some(
                "fieldSelector=spec.nodeName%3Dn,metadata.name%3D%3Dweb",
            )),
        );
        assert_eq!(a.name, "web");
        let a = Attributes::from_info(
            &info("list", "pods", Some("d"), None),
            &Query::parse(Some("fieldSelector=metadata.name!%3Dweb")),
        );
        assert_eq!(a.name, "");
    }

    #[test]
    fn modes_parse_like_kube_flags() {
        assert_eq!(Mode::parse("Node,RBAC").unwrap(), Mode::default());
        assert!(Mode::parse("AlwaysAllow").unwrap().always_allow);
        assert!(Mode::parse("ABAC").is_err());
        assert!(Mode::parse("").is_err());
        assert_eq!(aggregate(&["a".into(), "b".into(), "a".into()]), "[a, b]");
        assert_eq!(aggregate(&["a".into()]), "a");
    }
}

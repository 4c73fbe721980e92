//! Authentication (client certificates signed by our CA, bearer tokens from the token file) and
//! the node authorizer (a node may only touch its own objects), the first link of the
//! authorizer chain in [`crate::authz`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::request::RequestInfo;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    /// The token file's uid, or an impersonated one; empty for certificates.
    pub uid: String,
    /// Extra attributes (only impersonation sets them).
    pub extra: BTreeMap<String, Vec<String>>,
}

pub const ADMIN_GROUP: &str = "system:masters";
pub const NODES_GROUP: &str = "system:nodes";
const NODE_PREFIX: &str = "system:node:";
/// Every authenticated request's group, and every unauthenticated one's.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// Service account user names: `system:serviceaccount:NAMESPACE:NAME`.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

impl User {
    /// The user of a request that presented no credentials (kube's anonymous user).
    pub fn anonymous() -> Self {
        Self {
            name: ANONYMOUS_USER.into(),
            groups: vec![UNAUTHENTICATED_GROUP.into()],
            ..Self::default()
        }
    }

    /// The user an authenticator vouched for, with the groups kube adds: a service account's
    /// `system:serviceaccounts` and `system:serviceaccounts:NS`, and `system:authenticated`.
    pub fn authenticated(mut self) -> Self {
        if let Some((ns, _)) = split_service_account(&self.name) {
            for g in [
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{ns}"),
            ] {
                if !self.groups.contains(&g) {
                    self.groups.push(g);
                }
            }
        }
        if !self
            .groups
            .iter()
            .any(|g| g == AUTHENTICATED_GROUP || g == UNAUTHENTICATED_GROUP)
        {
            self.groups.push(AUTHENTICATED_GROUP.into());
        }
        self
    }

    pub fn is_anonymous(&self) -> bool {
        self.name == ANONYMOUS_USER
    }
}

/// `system:serviceaccount:NS:NAME` → (NS, NAME), as kube's `serviceaccount.SplitUsername`.
pub fn split_service_account(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("reading token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {path} line {line}: {reason}")]
    TokenLine {
        path: PathBuf,
        line: usize,
        reason: &'static str,
    },
}

/// Static bearer tokens: `token,user,uid[,"group1,group2"]` per line, like kube-apiserver's
/// `--token-auth-file`.
#[derive(Debug, Default, Clone)]
pub struct Tokens {
    by_token: HashMap<String, User>,
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::TokenFile {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, AuthError> {
        let mut by_token = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason| AuthError::TokenLine {
                path: path.to_path_buf(),
                line: n + 1,
                reason,
            };
            let mut parts = line.splitn(4, ',');
            let token = parts
                .next()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| bad("empty token"))?;
            let user = parts
                .next()
                .filter(|u| !u.is_empty())
                .ok_or_else(|| bad("missing user"))?;
            let uid = parts.next().ok_or_else(|| bad("missing uid"))?;
            let groups = parts
                .next()
                .map(|g| {
                    g.trim_matches('"')
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            by_token.insert(
                token.to_string(),
                User {
                    name: user.to_string(),
                    groups,
                    uid: uid.to_string(),
                    extra: BTreeMap::new(),
                },
            );
        }
        Ok(Self { by_token })
    }

    pub fn lookup(&self, token: &str) -> Option<&User> {
        self.by_token.get(token)
    }
}

/// The user named by a verified client certificate: CN is the name, O the groups.
pub fn user_from_cert(der: &[u8]) -> Option<User> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(User {
        name,
        groups,
        ..User::default()
    })
}

/// Decides whether `user` may do what `info` asks. `bound_node` is, for pod status writes, the
/// node the pod is bound to (looked up by the caller only for node identities).
pub fn authorize(user: &User, info: &RequestInfo, bound_node: Option<&str>) -> bool {
    if user.groups.iter().any(|g| g == ADMIN_GROUP) {
        return true;
    }
    let Some(node) = user
        .name
        .strip_prefix(NODE_PREFIX)
        .filter(|_| user.groups.iter().any(|g| g == NODES_GROUP))
    else {
        return false;
    };
    if info.is_kubelet_subresource() {
        // Logs, exec, attach, port-forward and node proxy reach into workloads through a
        // kubelet: kube's system:node role grants none of them, so a node (even for its own
        // pods) is refused, whatever the verb.
        return false;
    }
    if info.is_read() {
        // Nodes read what they run (kube's node authorizer narrows this further with a graph).
        return true;
    }
    let name = info.name.as_deref();
    match (
        info.api_group.as_str(),
        info.resource.as_str(),
        info.subresource.as_deref(),
    ) {
        // For creates the caller fills `name` from the body, so a node creates only itself.
        ("", "nodes", None | Some("status")) => name == Some(node),
        ("coordination.k8s.io", "leases", None) => {
            info.namespace.as_deref() == Some("kube-node-lease") && name == Some(node)
        }
        ("", "pods", Some("status")) => bound_node == Some(node),
        // kube's system:node role may evict (create pods/eviction), here only its own pods.
        ("", "pods", Some("eviction")) => info.verb == "create" && bound_node == Some(node),
        // The kubelet's final delete (grace 0) of a pod it has terminated, and its mirror
        // pods (kube's NodeRestriction: a node creates only mirror pods bound to itself;
        // `bound_node` of a create is the body's nodeName, and only for a mirror pod).
        ("", "pods", None) if matches!(info.verb.as_str(), "delete" | "create") => {
            bound_node == Some(node)
        }
        // A token for the service account of a pod bound to this node, bound to that pod
        // (kube's node authorizer and NodeRestriction): `bound_node` is that pod's node.
        ("", "serviceaccounts", Some("token")) => info.verb == "create" && bound_node == Some(node),
        ("", "events", None) | ("events.k8s.io", "events", None) => {
            matches!(info.verb.as_str(), "create" | "update" | "patch")
        }
        // kube's node rules: a kubelet asks for its renewed client and its serving
        // certificates itself (reads are allowed above); what it may get signed is the
        // approver's and signer's business, as in kube.
        ("certificates.k8s.io", "certificatesigningrequests", None) => info.verb == "create",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(
        verb: &str,
        group: &str,
        resource: &str,
        ns: Option<&str>,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> RequestInfo {
        RequestInfo {
            verb: verb.into(),
            api_group: group.into(),
            api_version: "v1".into(),
            resource: resource.into(),
            subresource: sub.map(Into::into),
            namespace: ns.map(Into::into),
            name: name.map(Into::into),
            proxy_path: None,
        }
    }

    #[test]
    fn node_may_only_write_its_own_objects() {
        let n1 = User {
            name: "system:node:n1".into(),
            groups: vec![NODES_GROUP.into()],
            ..User::default()
        };
        assert!(authorize(
            &n1,
            &info("update", "", "nodes", None, Some("n1"), Some("status")),
            None
        ));
        assert!(!authorize(
            &n1,
            &info("update", "", "nodes", None, Some("n2"), Some("status")),
            None
        ));
        assert!(!authorize(
            &n1,
            &info("delete", "", "pods", Some("default"), Some("p"), None),
            None
        ));
        assert!(authorize(
            &n1,
            &info("delete", "", "pods", Some("default"), Some("p"), None),
            Some("n1")
        ));
        assert!(!authorize(
            &n1,
            &info("delete", "", "pods", Some("default"), Some("p"), None),
            Some("n2")
        ));
        // Mirror pods: created only bound to itself (the caller passes a mirror's nodeName).
        let create = info("create", "", "pods", Some("default"), Some("p-n1"), None);
        assert!(authorize(&n1, &create, Some("n1")));
        assert!(!authorize(&n1, &create, Some("n2")));
        assert!(!authorize(&n1, &create, None), "not a mirror pod");
        assert!(authorize(
            &n1,
            &info(
                "patch",
                "",
                "pods",
                Some("default"),
                Some("p"),
                Some("status")
            ),
            Some("n1")
        ));
        assert!(!authorize(
            &n1,
            &info(
                "patch",
                "",
                "pods",
                Some("default"),
                Some("p"),
                Some("status")
            ),
            Some("n2")
        ));
        assert!(authorize(
            &n1,
            &info(
                "update",
                "coordination.k8s.io",
                "leases",
                Some("kube-node-lease"),
                Some("n1"),
                None
            ),
            None
        ));
        assert!(!authorize(
            &n1,
            &info("create", "", "configmaps", Some("default"), None, None),
            None
        ));
        // The kubelet reads the claims its pods mount and their volumes (never writes them).
        assert!(authorize(
            &n1,
            &info(
                "get",
                "",
                "persistentvolumeclaims",
                Some("default"),
                Some("c"),
                None
            ),
            None
        ));
        assert!(authorize(
            &n1,
            &info("get", "", "persistentvolumes", None, Some("pvc-1"), None),
            None
        ));
        assert!(!authorize(
            &n1,
            &info("update", "", "persistentvolumes", None, Some("pvc-1"), None),
            None
        ));
        // No node reaches into pods through the kubelet subresources, its own included.
        for (verb, sub) in [
            ("create", "exec"),
            ("create", "attach"),
            ("create", "portforward"),
            ("get", "log"),
        ] {
            assert!(!authorize(
                &n1,
                &info(verb, "", "pods", Some("default"), Some("p"), Some(sub)),
                Some("n1")
            ));
        }
        assert!(!authorize(
            &n1,
            &info("get", "", "nodes", None, Some("n1"), Some("proxy")),
            None
        ));
        // Tokens only for the service accounts of pods bound here (the caller resolved the
        // TokenRequest's bound pod to its node).
        let token = info(
            "create",
            "",
            "serviceaccounts",
            Some("default"),
            Some("default"),
            Some("token"),
        );
        assert!(authorize(&n1, &token, Some("n1")));
        assert!(!authorize(&n1, &token, Some("n2")));
        assert!(!authorize(&n1, &token, None));
        let plain = User {
            name: "system:node:n1".into(),
            groups: vec![],
            ..User::default()
        };
        assert!(!authorize(
            &plain,
            &info("get", "", "pods", Some("default"), None, None),
            None
        ));
    }

    #[test]
    fn authenticated_users_get_kube_groups() {
        let u = User {
            name: "system:serviceaccount:team:bot".into(),
            ..User::default()
        }
        .authenticated();
        assert_eq!(
            u.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:team",
                AUTHENTICATED_GROUP
            ]
        );
        let admin = User {
            name: "admin".into(),
            groups: vec![ADMIN_GROUP.into(), AUTHENTICATED_GROUP.into()],
            ..User::default()
        };
        assert_eq!(admin.clone().authenticated(), admin);
        assert_eq!(split_service_account("system:serviceaccount:a:b:c"), None);
        assert_eq!(
            split_service_account("system:serviceaccount:a:b"),
            Some(("a", "b"))
        );
        assert!(User::anonymous().is_anonymous());
    }

    #[test]
    fn token_file_parses_groups() {
        let t = Tokens::parse(
            "abc,alice,1,\"system:masters,dev\"\n# c\nxyz,bob,2\n",
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(t.lookup("abc").unwrap().groups, ["system:masters", "dev"]);
        assert!(t.lookup("xyz").unwrap().groups.is_empty());
        assert!(t.lookup("nope").is_none());
        assert!(Tokens::parse(",x,1", Path::new("t")).is_err());
    }
}

//! Authentication (client certificates signed by our CA, bearer tokens from the token file) and
//! who is a node (the node authorizer is [`crate::node_authz`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

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

/// The node a node identity speaks for: `NAME` of a `system:node:NAME` in `system:nodes`
/// (kube's default node identifier); `None` for anyone else.
pub fn node_name(user: &User) -> Option<&str> {
    user.name
        .strip_prefix(NODE_PREFIX)
        .filter(|_| user.groups.iter().any(|g| g == NODES_GROUP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_identities_need_the_nodes_group() {
        let n1 = User {
            name: "system:node:n1".into(),
            groups: vec![NODES_GROUP.into()],
            ..User::default()
        };
        assert_eq!(node_name(&n1), Some("n1"));
        let plain = User {
            groups: vec![],
            ..n1
        };
        assert_eq!(node_name(&plain), None);
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

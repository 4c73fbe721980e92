//! Impersonation (`Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid`,
//! `Impersonate-Extra-*`; `kubectl --as/--as-group/--as-uid`), as kube's impersonation filter:
//! every requested attribute needs the `impersonate` verb on it (users, groups,
//! serviceaccounts, authentication.k8s.io uids and userextras/KEY), and the request then runs
//! as the impersonated user.

use std::collections::BTreeMap;

use crate::auth::{
    split_service_account, User, ANONYMOUS_USER, AUTHENTICATED_GROUP, UNAUTHENTICATED_GROUP,
};
use crate::authz::{Attributes, Authorizer, NodeFacts};
use crate::status::ApiError;

/// What the impersonation headers ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Impersonation {
    pub user: String,
    pub groups: Vec<String>,
    pub uid: String,
    /// (key, value) pairs, keys lower-cased and unescaped.
    pub extra: Vec<(String, String)>,
}

/// kube's `unescapeExtraKey`: `%XX` escapes decoded (a malformed one leaves the key as sent).
fn unescape(key: &str) -> String {
    let b = key.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                None => return key.to_string(),
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| key.to_string())
}

impl Impersonation {
    /// Reads the headers; `None` when none is present.
    pub fn from_headers(headers: &hyper::HeaderMap) -> Option<Self> {
        let mut imp = Impersonation::default();
        let value = |v: &hyper::header::HeaderValue| v.to_str().ok().map(str::to_string);
        if let Some(u) = headers.get("impersonate-user").and_then(value) {
            imp.user = u;
        }
        for g in headers.get_all("impersonate-group") {
            if let Some(g) = value(g) {
                imp.groups.push(g);
            }
        }
        if let Some(u) = headers.get("impersonate-uid").and_then(value) {
            imp.uid = u;
        }
        for (name, v) in headers {
            if let Some(key) = name.as_str().strip_prefix("impersonate-extra-") {
                if let Some(v) = value(v) {
                    imp.extra.push((unescape(key), v));
                }
            }
        }
        (imp != Impersonation::default()).then_some(imp)
    }

    /// The user `requestor` acts as, once every impersonated attribute is authorized.
    pub fn apply(&self, authz: &Authorizer, requestor: &User) -> Result<User, ApiError> {
        if self.user.is_empty() {
            return Err(ApiError::Internal(format!(
                "requested impersonation of groups {:?}, uid {:?} or extras without impersonating a user",
                self.groups, self.uid
            )));
        }
        let mut checks = Vec::new();
        let mut groups: Vec<String> = Vec::new();
        match split_service_account(&self.user) {
            Some((ns, name)) => {
                checks.push(Attributes::resource(
                    "impersonate",
                    "",
                    "serviceaccounts",
                    ns,
                    name,
                ));
                if self.groups.is_empty() {
                    groups.push("system:serviceaccounts".into());
                    groups.push(format!("system:serviceaccounts:{ns}"));
                }
            }
            None => checks.push(Attributes::resource(
                "impersonate",
                "",
                "users",
                "",
                &self.user,
            )),
        }
        for g in &self.groups {
            checks.push(Attributes::resource("impersonate", "", "groups", "", g));
            groups.push(g.clone());
        }
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in &self.extra {
            let mut a =
                Attributes::resource("impersonate", "authentication.k8s.io", "userextras", "", v);
            a.subresource = k.clone();
            checks.push(a);
            extra.entry(k.clone()).or_default().push(v.clone());
        }
        if !self.uid.is_empty() {
            checks.push(Attributes::resource(
                "impersonate",
                "authentication.k8s.io",
                "uids",
                "",
                &self.uid,
            ));
        }
        for a in &checks {
            let d = authz.authorize(requestor, a, NodeFacts::default());
            if !d.allowed {
                tracing::info!(
                    user = %requestor.name,
                    verb = "impersonate",
                    resource = %a.combined_resource(),
                    name = %a.name,
                    "impersonation refused"
                );
                return Err(a.forbidden(&requestor.name, &d.reason));
            }
        }
        if self.user != ANONYMOUS_USER {
            if !groups
                .iter()
                .any(|g| g == AUTHENTICATED_GROUP || g == UNAUTHENTICATED_GROUP)
            {
                groups.push(AUTHENTICATED_GROUP.into());
            }
        } else if !groups.iter().any(|g| g == UNAUTHENTICATED_GROUP) {
            groups.push(UNAUTHENTICATED_GROUP.into());
        }
        tracing::debug!(user = %requestor.name, as_user = %self.user, "impersonating");
        Ok(User {
            name: self.user.clone(),
            groups,
            uid: self.uid.clone(),
            extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_with_escaped_extra_keys() {
        let mut h = hyper::HeaderMap::new();
        h.insert("impersonate-user", "jane".parse().unwrap());
        h.append("impersonate-group", "a".parse().unwrap());
        h.append("impersonate-group", "b".parse().unwrap());
        h.insert("impersonate-extra-scopes%2fx", "s1".parse().unwrap());
        let imp = Impersonation::from_headers(&h).unwrap();
        assert_eq!(imp.user, "jane");
        assert_eq!(imp.groups, ["a", "b"]);
        assert_eq!(imp.extra, [("scopes/x".to_string(), "s1".to_string())]);
        assert_eq!(Impersonation::from_headers(&hyper::HeaderMap::new()), None);
    }

    #[test]
    fn impersonation_needs_the_verb_on_every_attribute() {
        let authz = Authorizer::new(crate::authz::Mode::default());
        let admin = User {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
            ..User::default()
        };
        let sa = Impersonation {
            user: "system:serviceaccount:team:bot".into(),
            ..Impersonation::default()
        };
        let u = sa.apply(&authz, &admin).unwrap();
        assert_eq!(
            u.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:team",
                AUTHENTICATED_GROUP
            ]
        );
        let bob = User {
            name: "bob".into(),
            groups: vec![AUTHENTICATED_GROUP.into()],
            ..User::default()
        };
        let err = Impersonation {
            user: "jane".into(),
            ..Impersonation::default()
        }
        .apply(&authz, &bob)
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"users "jane" is forbidden: User "bob" cannot impersonate resource "users" in API group "" at the cluster scope"#
        );
        let err = sa.apply(&authz, &bob).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"serviceaccounts "bot" is forbidden: User "bob" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "team""#
        );
    }
}

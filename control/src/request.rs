//! Request routing: what a URL path and method ask for, like kube-apiserver's RequestInfo.

use std::collections::HashMap;

/// A resource request: verb, group, version, resource, namespace, name, subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl RequestInfo {
    pub fn is_read(&self) -> bool {
        matches!(self.verb.as_str(), "get" | "list" | "watch")
    }
}

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`
    ResourceList {
        group: String,
        version: String,
    },
    Resource(RequestInfo),
    Version,
    Health(String),
    Metrics,
    OpenApi(String),
}

/// Query parameters (last value wins).
#[derive(Debug, Default, Clone)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("1" | "true" | "True"))
    }
}

/// Maps `method` + `path` (+ whether `?watch` is set) to a route; `None` if nothing is there.
pub fn route(method: &str, path: &str, watch: bool) -> Option<Route> {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    match parts.as_slice() {
        ["version"] => return Some(Route::Version),
        ["healthz" | "readyz" | "livez", ..] => return Some(Route::Health(parts[0].to_string())),
        ["metrics"] => return Some(Route::Metrics),
        ["openapi", ..] => return Some(Route::OpenApi(path.to_string())),
        ["api"] => return Some(Route::CoreVersions),
        ["apis"] => return Some(Route::Groups),
        ["apis", g] => return Some(Route::Group(g.to_string())),
        ["api", v] => {
            return Some(Route::ResourceList {
                group: String::new(),
                version: v.to_string(),
            })
        }
        ["apis", g, v] => {
            return Some(Route::ResourceList {
                group: g.to_string(),
                version: v.to_string(),
            })
        }
        _ => {}
    }
    let (group, version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return None,
    };
    // The legacy `/watch/` path prefix.
    let (rest, watch) = match rest {
        ["watch", r @ ..] => (r, true),
        r => (r, watch),
    };
    let (namespace, rest) = match rest {
        // `namespaces/<name>/status` and `/finalize` are subresources of the namespace itself.
        ["namespaces", ns, r @ ..]
            if !(r.is_empty() || r.len() == 1 && matches!(r[0], "status" | "finalize")) =>
        {
            (Some(ns.to_string()), r)
        }
        r => (None, r),
    };
    let (resource, name, subresource) = match rest {
        [r] => (r.to_string(), None, None),
        [r, n] => (r.to_string(), Some(n.to_string()), None),
        [r, n, s] => (r.to_string(), Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    let verb = match (method, name.is_some()) {
        ("GET" | "HEAD", true) if watch => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) if watch => "watch",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unsupported",
    };
    Some(Route::Resource(RequestInfo {
        verb: verb.into(),
        api_group: group,
        api_version: version,
        resource,
        subresource,
        namespace,
        name,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(method: &str, path: &str) -> RequestInfo {
        match route(method, path, false) {
            Some(Route::Resource(r)) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths_map_to_request_info() {
        let r = res("GET", "/api/v1/namespaces/default/pods/web");
        assert_eq!(
            (r.verb.as_str(), r.namespace.as_deref(), r.name.as_deref()),
            ("get", Some("default"), Some("web"))
        );
        let r = res("GET", "/api/v1/namespaces/kube-system");
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref(), r.namespace),
            ("namespaces", Some("kube-system"), None)
        );
        let r = res("PUT", "/api/v1/namespaces/ns1/status");
        assert_eq!(
            (
                r.resource.as_str(),
                r.name.as_deref(),
                r.subresource.as_deref()
            ),
            ("namespaces", Some("ns1"), Some("status"))
        );
        let r = res("PATCH", "/apis/apps/v1/namespaces/d/deployments/x/scale");
        assert_eq!(
            (
                r.api_group.as_str(),
                r.verb.as_str(),
                r.subresource.as_deref()
            ),
            ("apps", "patch", Some("scale"))
        );
        let r = res("GET", "/api/v1/watch/namespaces/d/pods");
        assert_eq!(r.verb, "watch");
        assert_eq!(res("GET", "/api/v1/pods").verb, "list");
        assert_eq!(
            res("DELETE", "/api/v1/namespaces/d/pods").verb,
            "deletecollection"
        );
        assert_eq!(
            route("GET", "/apis/apps/v1", false),
            Some(Route::ResourceList {
                group: "apps".into(),
                version: "v1".into()
            })
        );
        assert_eq!(route("GET", "/nothing/here", false), None);
    }
}

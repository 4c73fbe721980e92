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
    /// For `.../proxy/<rest>`: the path after `proxy` (with its leading `/`), as kube-apiserver
    /// passes it on to the node.
    pub proxy_path: Option<String>,
}

impl RequestInfo {
    pub fn is_read(&self) -> bool {
        matches!(self.verb.as_str(), "get" | "list" | "watch")
    }

    /// Whether this is a subresource served by a kubelet (pods/log, pods/exec, pods/attach,
    /// pods/portforward, nodes/proxy): pea-control relays it instead of reading the store.
    pub fn is_kubelet_subresource(&self) -> bool {
        matches!(
            (
                self.api_group.as_str(),
                self.resource.as_str(),
                self.subresource.as_deref()
            ),
            ("", "pods", Some("log" | "exec" | "attach" | "portforward"))
                | ("", "nodes", Some("proxy"))
        )
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
    /// `/.well-known/openid-configuration`: service-account issuer discovery.
    OidcConfiguration,
    /// `/openid/v1/jwks`: the service-account verification keys.
    OidcJwks,
}

/// Query parameters (last value wins in [`Query::get`]; [`Query::all`] sees repeats).
#[derive(Debug, Default, Clone)]
pub struct Query(HashMap<String, String>, Vec<(String, String)>);

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(q.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Self(pairs.iter().cloned().collect(), pairs)
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// These parameters with `k` set to `v` (every earlier value of it replaced).
    pub fn with(&self, k: &str, v: &str) -> Self {
        let mut pairs: Vec<(String, String)> =
            self.1.iter().filter(|(key, _)| key != k).cloned().collect();
        pairs.push((k.to_string(), v.to_string()));
        Self(pairs.iter().cloned().collect(), pairs)
    }

    /// The parameters re-encoded in their original order (passed on by node proxy).
    pub fn encoded(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.1 {
            q.append_pair(k, v);
        }
        q.finish()
    }

    /// Every value of a repeated parameter, in order (exec's `command`).
    pub fn all(&self, k: &str) -> Vec<&str> {
        self.1
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
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
        [".well-known", "openid-configuration"] => return Some(Route::OidcConfiguration),
        ["openid", "v1", "jwks"] => return Some(Route::OidcJwks),
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
    let (resource, name, subresource, proxy_path) = match rest {
        [r] => (r.to_string(), None, None, None),
        [r, n] => (r.to_string(), Some(n.to_string()), None, None),
        [r, n, s] => (
            r.to_string(),
            Some(n.to_string()),
            Some(s.to_string()),
            None,
        ),
        // `<resource>/<name>/proxy/<anything>`: the rest is the path on the target (kept with
        // its trailing slash, which matters to the server behind).
        [r, n, "proxy", ..] => {
            let marker = format!("/{r}/{n}/proxy/");
            let tail = path.find(&marker).map(|i| &path[i + marker.len() - 1..]);
            (
                r.to_string(),
                Some(n.to_string()),
                Some("proxy".to_string()),
                tail.map(str::to_string),
            )
        }
        _ => return None,
    };
    // exec, attach and portforward are `create` whatever the method: kubectl 1.32 opens them
    // with a WebSocket GET, and kube-apiserver (AuthorizePodWebsocketUpgradeCreatePermission)
    // authorizes that GET as create, so `get pods` alone never grants a shell.
    if resource == "pods"
        && matches!(
            subresource.as_deref(),
            Some("exec" | "attach" | "portforward")
        )
        && matches!(method, "GET" | "POST")
    {
        return Some(Route::Resource(RequestInfo {
            verb: "create".into(),
            api_group: group,
            api_version: version,
            resource,
            subresource,
            namespace,
            name,
            proxy_path,
        }));
    }
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
        proxy_path,
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

    #[test]
    fn kubelet_subresources_route_with_kube_verbs() {
        // A WebSocket exec is a GET, authorized as create.
        let r = res("GET", "/api/v1/namespaces/d/pods/web/exec");
        assert_eq!(
            (r.verb.as_str(), r.subresource.as_deref()),
            ("create", Some("exec"))
        );
        assert!(r.is_kubelet_subresource());
        assert_eq!(
            res("POST", "/api/v1/namespaces/d/pods/web/portforward").verb,
            "create"
        );
        let r = res("GET", "/api/v1/namespaces/d/pods/web/log");
        assert_eq!(
            (r.verb.as_str(), r.subresource.as_deref()),
            ("get", Some("log"))
        );
        // Node proxy keeps the rest of the path, trailing slash included.
        let r = res("GET", "/api/v1/nodes/n1/proxy/stats/summary");
        assert_eq!(
            (
                r.verb.as_str(),
                r.name.as_deref(),
                r.subresource.as_deref(),
                r.proxy_path.as_deref()
            ),
            ("get", Some("n1"), Some("proxy"), Some("/stats/summary"))
        );
        assert_eq!(
            res("GET", "/api/v1/nodes/n1/proxy/logs/")
                .proxy_path
                .as_deref(),
            Some("/logs/")
        );
        let r = res("GET", "/api/v1/nodes/n1/proxy");
        assert_eq!(
            (r.subresource.as_deref(), r.proxy_path),
            (Some("proxy"), None)
        );
        assert_eq!(res("POST", "/api/v1/nodes/n1/proxy/x").verb, "create");
        assert!(!res("GET", "/api/v1/namespaces/d/pods/web/status").is_kubelet_subresource());
    }
}

//! The request pipeline between HTTP and the store: authentication result in, routing,
//! authorization, then one verb handler (`verbs/`), and errors out as `Status` at one boundary.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::FutureExt;
use pea_control_store::Store;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::auth::User;
use crate::authz::{Attributes, NodeFacts};
use crate::discovery;
use crate::metrics::Metrics;
use crate::objects;
use crate::request::{route, Query, RequestInfo, Route};
use crate::resources::{ResourceDef, Resources};
use crate::status::ApiError;
use crate::verbs;

/// Injected wall clock (tests may pin time).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Largest accepted request body (kube-apiserver's limit is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Shared server state.
pub struct Api {
    pub store: Arc<dyn Store>,
    /// The watch-fed caches admission reads (kube's informers).
    pub informers: crate::admission::informers::Informers,
    /// What `--admission-control-config-file` configured.
    pub admission: crate::admission::plugin_config::AdmissionSettings,
    pub resources: Resources,
    pub clock: Clock,
    pub metrics: Metrics,
    /// host:port clients should use (discovery's serverAddressByClientCIDRs).
    pub server_address: String,
    /// How often watches with allowWatchBookmarks get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Generated OpenAPI v3 documents by group-version path.
    pub openapi_cache: std::sync::Mutex<std::collections::HashMap<String, Value>>,
    /// Shared per-resource watch sources.
    pub watch_cache: crate::watch_cache::WatchCache,
    /// Where Service cluster IPs come from.
    pub service_cidr: crate::ipalloc::ServiceCidr,
    /// Where Service node ports come from.
    pub node_port_range: crate::portalloc::PortRange,
    /// The authorizer chain (Node, RBAC) and its RBAC index.
    pub authz: crate::authz::Authorizer,
    /// The kubelets' resource metrics (metrics.k8s.io), filled by the scraper.
    pub resource_metrics: Arc<crate::resource_metrics::ResourceMetrics>,
    /// Service-account token keys and settings (`None`: TokenRequest is not served and JWTs
    /// are not accepted).
    pub service_accounts: Option<Arc<crate::serviceaccount::ServiceAccounts>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("store", &self.store).finish()
    }
}

/// What a handler answers.
#[derive(Debug)]
pub enum Reply {
    Json {
        code: u16,
        body: Value,
        content_type: &'static str,
        warnings: Vec<String>,
    },
    Text {
        code: u16,
        body: String,
        content_type: &'static str,
    },
    /// A binary body (the protobuf OpenAPI v2 document).
    Bytes {
        code: u16,
        body: Bytes,
        content_type: &'static str,
    },
    /// A watch: newline-delimited JSON events until the sender closes.
    Stream(mpsc::Receiver<Bytes>),
    /// Relay the request to a kubelet (pods/log, exec, attach, portforward, nodes/proxy): the
    /// HTTP front does it, since it holds the connection an upgrade takes over.
    Kubelet(crate::kubelet_proxy::KubeletRequest),
}

impl Reply {
    pub fn json(code: u16, body: Value) -> Self {
        Reply::Json {
            code,
            body,
            content_type: "application/json",
            warnings: Vec::new(),
        }
    }
}

/// An incoming request, as the pipeline sees it.
#[derive(Debug)]
pub struct Incoming<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub accept: &'a str,
    pub content_type: &'a str,
    pub user_agent: &'a str,
    pub body: Bytes,
    /// The authenticated user; `None` for a request without credentials.
    pub user: Option<User>,
    /// What the `Impersonate-*` headers ask for.
    pub impersonate: Option<crate::rbac::impersonation::Impersonation>,
}

/// Everything a verb handler needs.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub api: &'a Arc<Api>,
    pub info: &'a RequestInfo,
    pub def: &'a ResourceDef,
    pub query: &'a Query,
    pub accept: &'a str,
    pub content_type: &'a str,
    pub user_agent: &'a str,
    pub body: Bytes,
    pub user: &'a User,
}

impl Ctx<'_> {
    pub fn namespace(&self) -> Option<&str> {
        if self.def.namespaced {
            self.info.namespace.as_deref()
        } else {
            None
        }
    }

    /// The object name from the path; 405 without one.
    pub fn name(&self) -> Result<&str, ApiError> {
        self.info.name.as_deref().ok_or_else(|| {
            ApiError::MethodNotAllowed(format!("{} needs an object name", self.info.verb))
        })
    }

    pub fn key(&self, name: &str) -> String {
        self.def.key(self.namespace(), name)
    }

    pub fn not_found(&self, name: &str) -> ApiError {
        ApiError::NotFound {
            group: self.def.group.into(),
            resource: self.def.plural.into(),
            name: name.into(),
        }
    }

    pub fn store_err(
        &self,
        name: &str,
    ) -> impl FnOnce(pea_control_store::StoreError) -> ApiError + '_ {
        let name = name.to_string();
        move |e| ApiError::from_store(e, self.def.group, self.def.plural, &name)
    }

    pub fn dry_run(&self) -> bool {
        self.query.get("dryRun") == Some("All")
    }

    pub fn now(&self) -> SystemTime {
        (self.api.clock)()
    }

    /// Reads the current object (404 when absent).
    pub async fn current(&self, name: &str) -> Result<(Value, i64), ApiError> {
        let key = self.key(name);
        let (kv, _) = self
            .api
            .store
            .get(&key)
            .await
            .map_err(self.store_err(name))?;
        let kv = kv.ok_or_else(|| self.not_found(name))?;
        let mut obj = [objects::decode(&kv)?];
        crate::crd::read_view(self.api, self.def, &mut obj).await?;
        let [obj] = obj;
        Ok((obj, kv.mod_revision))
    }

    /// Renders one object as the client asked (a Table for kubectl get, else the object).
    pub fn render_one(&self, obj: Value, code: u16) -> Reply {
        if crate::table::wants_table(self.accept) && self.info.subresource.is_none() {
            let include = self.query.get("includeObject").unwrap_or("Metadata");
            let rv = objects::meta_str(&obj, "resourceVersion").map(str::to_string);
            return Reply::json(
                code,
                crate::table::table_for(self.def, &[obj], rv, None, self.now(), include),
            );
        }
        Reply::json(code, obj)
    }
}

impl Api {
    /// Handles one request end to end; never panics on client input.
    pub async fn handle(self: &Arc<Self>, req: Incoming<'_>) -> (Reply, String, String) {
        let query = Query::parse(req.query);
        let routed = route(req.method, req.path, query.flag("watch"));
        let (verb, resource, key) = match &routed {
            // Only served resources label metrics: paths are client data.
            Some(Route::Resource(i)) => (
                i.verb.clone(),
                self.resources
                    .lookup(&i.api_group, &i.api_version, &i.resource)
                    .map(|d| d.plural.to_string())
                    .unwrap_or_default(),
                format!(
                    "{}/{}",
                    i.namespace.as_deref().unwrap_or(""),
                    i.name.as_deref().unwrap_or("")
                ),
            ),
            _ => (req.method.to_lowercase(), String::new(), String::new()),
        };
        let span = tracing::debug_span!(
            "request",
            verb = %verb,
            resource = %resource,
            object = %key,
            user = req.user.as_ref().map(|u| u.name.as_str()).unwrap_or("")
        );
        // Defence in depth: a bug that panics on some request answers that request with a 500
        // Status instead of taking the connection (and every stream on it) down.
        let result = AssertUnwindSafe(self.dispatch(&req, routed, &query).instrument(span.clone()))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let _enter = span.enter();
                tracing::error!(method = req.method, path = req.path, panic = %what, "request handler panicked");
                Err(ApiError::Internal(
                    "the server could not handle this request".into(),
                ))
            });
        let reply = match result {
            Ok(r) => r,
            Err(e) => {
                let _enter = span.enter();
                if e.code() >= 500 {
                    tracing::warn!(method = req.method, path = req.path, error = %e, "request failed");
                } else {
                    tracing::debug!(code = e.code(), error = %e, "request refused");
                }
                Reply::json(e.code(), e.to_status())
            }
        };
        (reply, verb, resource)
    }

    async fn dispatch(
        self: &Arc<Self>,
        req: &Incoming<'_>,
        routed: Option<Route>,
        query: &Query,
    ) -> Result<Reply, ApiError> {
        // Who asks: the authenticated user, kube's anonymous user for a request without
        // credentials (which RBAC lets read the health endpoints and /version, and which gets
        // 401 for anything else), or whom either may impersonate.
        let anonymous = req.user.is_none();
        let authenticated = req.user.clone().unwrap_or_else(User::anonymous);
        let user = match &req.impersonate {
            Some(imp) => match imp.apply(&self.authz, &authenticated) {
                Ok(u) => u,
                Err(_) if anonymous => return Err(ApiError::Unauthorized),
                Err(e) => return Err(e),
            },
            None => authenticated,
        };
        let user = &user;
        // Like kube-apiserver, authorization comes before routing: anything that is not a
        // resource is a path to authorize (a 404 only for those allowed to look).
        if let Some(Route::Resource(info)) = &routed {
            return self.resource(req, info, query, user, anonymous).await;
        }
        self.check(
            user,
            anonymous,
            &Attributes::non_resource(req.method, req.path),
            NodeFacts::default(),
        )?;
        let routed = routed.ok_or_else(|| ApiError::NoRoute {
            path: req.path.into(),
        })?;
        match routed {
            Route::Health(which) => {
                let ok = self.store.current_revision().await.is_ok();
                Ok(Reply::Text {
                    code: if ok { 200 } else { 500 },
                    body: if ok {
                        "ok".into()
                    } else {
                        format!("[-]etcd failed: {which}")
                    },
                    content_type: "text/plain; charset=utf-8",
                })
            }
            Route::Version => Ok(Reply::json(200, discovery::version())),
            Route::Metrics => Ok(Reply::Text {
                code: 200,
                body: self.metrics.render(),
                content_type: "text/plain; version=0.0.4",
            }),
            Route::CoreVersions if discovery::wants_aggregated(req.accept) => Ok(Reply::Json {
                code: 200,
                body: discovery::aggregated(&self.resources, true),
                content_type: discovery::AGGREGATED_CONTENT_TYPE,
                warnings: vec![],
            }),
            Route::Groups if discovery::wants_aggregated(req.accept) => Ok(Reply::Json {
                code: 200,
                body: discovery::aggregated(&self.resources, false),
                content_type: discovery::AGGREGATED_CONTENT_TYPE,
                warnings: vec![],
            }),
            Route::CoreVersions => Ok(Reply::json(
                200,
                discovery::core_versions(&self.server_address),
            )),
            Route::Groups => Ok(Reply::json(200, discovery::groups(&self.resources))),
            Route::Group(g) => discovery::group(&self.resources, &g)
                .map(|v| Reply::json(200, v))
                .ok_or(ApiError::NoRoute {
                    path: req.path.into(),
                }),
            Route::ResourceList { group, version } => {
                discovery::resource_list(&self.resources, &group, &version)
                    .map(|v| Reply::json(200, v))
                    .ok_or(ApiError::NoRoute {
                        path: req.path.into(),
                    })
            }
            Route::OpenApi(path) => self.openapi(&path, req.accept),
            oidc @ (Route::OidcConfiguration | Route::OidcJwks) => {
                let sa = self.service_accounts.as_deref().ok_or(ApiError::NoRoute {
                    path: req.path.into(),
                })?;
                Ok(match oidc {
                    Route::OidcJwks => Reply::Json {
                        code: 200,
                        body: crate::serviceaccount::oidc::jwks(sa),
                        content_type: crate::serviceaccount::oidc::JWKS_CONTENT_TYPE,
                        warnings: vec![],
                    },
                    _ => Reply::json(
                        200,
                        crate::serviceaccount::oidc::configuration(sa, &self.server_address),
                    ),
                })
            }
            Route::Resource(_) => unreachable!("handled above"),
        }
    }

    /// Runs the authorizer chain; a refusal is logged (who, verb, what) and becomes kube's
    /// 403, or 401 for a request that presented no credentials.
    pub fn check(
        &self,
        user: &User,
        anonymous: bool,
        attrs: &Attributes,
        node: NodeFacts<'_>,
    ) -> Result<(), ApiError> {
        let d = self.authz.authorize(user, attrs, node);
        if d.allowed {
            return Ok(());
        }
        tracing::info!(
            user = %user.name,
            groups = ?user.groups,
            verb = %attrs.verb,
            resource = %if attrs.resource_request { attrs.combined_resource() } else { String::new() },
            group = %attrs.api_group,
            namespace = %attrs.namespace,
            name = %attrs.name,
            path = %attrs.path,
            reason = %d.reason,
            "request forbidden"
        );
        if anonymous {
            return Err(ApiError::Unauthorized);
        }
        Err(attrs.forbidden(&user.name, &d.reason))
    }

    /// What the node authorizer looks at beyond the request: for a node's pod status writes
    /// and deletes, the node the pod is bound to; for its creates, the name in the body.
    async fn node_facts(
        &self,
        ctx: &Ctx<'_>,
        info: &RequestInfo,
    ) -> (Option<String>, Option<String>) {
        let bound_node = if info.resource == "pods"
            && (info.subresource.is_some() || info.verb == "delete")
        {
            match info.name.as_deref() {
                Some(n) => ctx.current(n).await.ok().and_then(|(p, _)| {
                    p.pointer("/spec/nodeName")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                }),
                None => None,
            }
        } else if info.resource == "pods" && info.verb == "create" {
            // Nodes create only mirror pods (kubernetes.io/config.mirror) of themselves.
            verbs::body_object(ctx).ok().and_then(|b| {
                b.pointer("/metadata/annotations/kubernetes.io~1config.mirror")
                    .and(b.pointer("/spec/nodeName"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
        } else if info.resource == "serviceaccounts" && info.subresource.as_deref() == Some("token")
        {
            crate::serviceaccount::token_request::bound_pod_node(ctx).await
        } else {
            None
        };
        // A create names its object in the body (JSON or protobuf, as the verb decodes it).
        let created = (info.verb == "create" && info.name.is_none())
            .then(|| {
                verbs::body_object(ctx).ok().and_then(|b| {
                    b.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
            })
            .flatten();
        (bound_node, created)
    }

    async fn resource(
        self: &Arc<Self>,
        req: &Incoming<'_>,
        info: &RequestInfo,
        query: &Query,
        user: &User,
        anonymous: bool,
    ) -> Result<Reply, ApiError> {
        let found = self
            .resources
            .lookup(&info.api_group, &info.api_version, &info.resource)
            .filter(|def| {
                info.subresource
                    .as_deref()
                    .is_none_or(|sub| def.has_subresource(sub))
                    && (def.namespaced || info.namespace.is_none())
            });
        let attrs = Attributes::from_info(info, query);
        // The node authorizer looks at the object (only for node identities, only for served
        // resources); everyone else is decided from the request alone.
        let (bound_node, created_name) = match &found {
            Some(def) if user.groups.iter().any(|g| g == crate::auth::NODES_GROUP) => {
                let ctx = Ctx {
                    api: self,
                    info,
                    def,
                    query,
                    accept: req.accept,
                    content_type: req.content_type,
                    user_agent: req.user_agent,
                    body: req.body.clone(),
                    user,
                };
                self.node_facts(&ctx, info).await
            }
            _ => (None, None),
        };
        self.check(
            user,
            anonymous,
            &attrs,
            NodeFacts {
                created_name: created_name.as_deref(),
                bound_node: bound_node.as_deref(),
            },
        )?;
        if info.api_group == crate::resource_metrics::GROUP {
            return crate::resource_metrics::serve::handle(self, info, query).await;
        }
        let def = found.ok_or_else(|| ApiError::NoRoute {
            path: req.path.into(),
        })?;
        let def = &def;
        let ctx = Ctx {
            api: self,
            info,
            def,
            query,
            accept: req.accept,
            content_type: req.content_type,
            user_agent: req.user_agent,
            body: req.body.clone(),
            user,
        };
        if crate::rbac::review::is_review_group(def.group) {
            return crate::rbac::review::handle(&ctx).await;
        }
        if let Some(storage) = verbs::converted::storage_def(&self.resources, def) {
            verbs::check_options(&ctx)?;
            return verbs::converted::handle(&ctx, storage).await;
        }
        if info.is_kubelet_subresource() {
            return match info.subresource.as_deref() {
                Some("log") => verbs::log::handle(&ctx).await,
                Some("exec") => verbs::exec::handle(&ctx).await,
                Some("attach") => verbs::attach::handle(&ctx).await,
                Some("portforward") => verbs::portforward::handle(&ctx).await,
                _ => verbs::node_proxy::handle(&ctx).await,
            };
        }
        verbs::check_options(&ctx)?;
        let result = match info.verb.as_str() {
            "get" => verbs::get::handle(&ctx).await,
            "list" => verbs::list::handle(&ctx).await,
            "watch" => verbs::watch::handle(&ctx).await,
            "create" => verbs::create::handle(&ctx).await,
            "update" => verbs::update::handle(&ctx).await,
            "patch" => verbs::patch::handle(&ctx).await,
            "delete" => verbs::delete::handle(&ctx).await,
            "deletecollection" => verbs::delete_collection::handle(&ctx).await,
            other => Err(ApiError::MethodNotAllowed(format!("{other} {}", req.path))),
        };
        if def.group == crate::rbac::GROUP && !info.is_read() {
            if let Ok(reply) = &result {
                self.sync_rbac(&ctx, reply).await;
            }
        }
        // Admission's caches see a write of theirs before the reply goes out, so the writer's
        // next request is admitted by it (read-your-writes); so does the node graph (a pod
        // just bound authorizes its node's next request).
        if !info.is_read() && !ctx.dry_run() {
            if let Ok(reply) = &result {
                self.sync_informer(&ctx, reply).await;
                self.sync_node_graph(&ctx, reply).await;
            }
        }
        // A CRD change takes effect before the reply: the writer's next request sees it.
        if def.group == crate::crd::GROUP && !info.is_read() && result.is_ok() && !ctx.dry_run() {
            crate::crd::controller::reconcile(self).await;
        }
        result
    }

    /// After a write of an RBAC object, the authorizer sees it before the reply goes out: the
    /// writer's next request is decided by it (the watch would follow a moment later).
    async fn sync_rbac(&self, ctx: &Ctx<'_>, reply: &Reply) {
        let index = &self.authz.rbac;
        let name = written_name(ctx, reply);
        match name {
            Some(n) => index.sync_key(self.store.as_ref(), &ctx.key(&n)).await,
            None => {
                if let Err(e) = index.resync(self.store.as_ref()).await {
                    tracing::warn!(error = %e, "re-listing RBAC objects failed");
                }
            }
        }
    }

    /// After a write of a pod (its binding, status or eviction included) or a persistent
    /// volume, the node graph re-reads it.
    async fn sync_node_graph(&self, ctx: &Ctx<'_>, reply: &Reply) {
        let prefix = ctx.def.prefix(None);
        if !crate::node_authz::populator::NodeGraph::follows(&prefix) {
            return;
        }
        let name = written_name(ctx, reply);
        let graph = &self.authz.nodes;
        match name {
            Some(n) => graph.sync_key(self.store.as_ref(), &ctx.key(&n)).await,
            None => {
                if let Err(e) = graph.resync(self.store.as_ref(), &prefix).await {
                    tracing::warn!(error = %e, "re-listing the node graph failed");
                }
            }
        }
    }

    /// After a write of an object admission caches, the cache re-reads it.
    async fn sync_informer(&self, ctx: &Ctx<'_>, reply: &Reply) {
        let prefix = ctx.def.prefix(None);
        if !self.informers.caches(&prefix) {
            return;
        }
        let name = written_name(ctx, reply);
        let key = name.map(|n| ctx.key(&n));
        self.informers
            .written(self.store.as_ref(), &prefix, key.as_deref())
            .await;
    }

    fn openapi(&self, path: &str, accept: &str) -> Result<Reply, ApiError> {
        let rest = path.trim_matches('/');
        if rest == "openapi/v2" {
            let format = crate::openapi_v2::negotiate(accept)?;
            let mut cache = self
                .openapi_cache
                .lock()
                .map_err(|_| ApiError::Internal("openapi cache poisoned".into()))?;
            let doc = cache
                .entry("/v2".into())
                .or_insert_with(|| crate::openapi_v2::document(&self.resources));
            return Ok(match format {
                crate::openapi_v2::Format::Json => Reply::json(200, doc.clone()),
                crate::openapi_v2::Format::Protobuf => Reply::Bytes {
                    code: 200,
                    body: Bytes::from(crate::openapi_v2_pb::encode(doc)),
                    content_type: crate::openapi_v2::PROTOBUF_CONTENT_TYPE,
                },
            });
        }
        if rest == "openapi/v3" {
            return Ok(Reply::json(200, crate::openapi::root(&self.resources)));
        }
        if let Some(gv) = rest.strip_prefix("openapi/v3/") {
            let mut cache = self
                .openapi_cache
                .lock()
                .map_err(|_| ApiError::Internal("openapi cache poisoned".into()))?;
            if let Some(doc) = cache.get(gv) {
                return Ok(Reply::json(200, doc.clone()));
            }
            let doc = crate::openapi::document(&self.resources, gv)
                .ok_or_else(|| ApiError::NoRoute { path: path.into() })?;
            cache.insert(gv.to_string(), doc.clone());
            return Ok(Reply::json(200, doc));
        }
        Err(ApiError::NotImplemented(format!(
            "{path}: only /openapi/v2 and /openapi/v3 are served"
        )))
    }

    /// Creates the namespaces every cluster starts with, if missing.
    pub async fn ensure_default_namespaces(&self) -> Result<(), ApiError> {
        let def = self
            .resources
            .find("", "v1", "namespaces")
            .ok_or_else(|| ApiError::Internal("namespaces not served".into()))?;
        for ns in verbs::delete::IMMORTAL_NAMESPACES {
            let mut obj = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "uid": objects::new_uid(),
                    "creationTimestamp": objects::rfc3339((self.clock)()),
                    "labels": {"kubernetes.io/metadata.name": ns}},
            });
            crate::defaults::apply("Namespace", &mut obj);
            match self
                .store
                .create(&def.key(None, ns), objects::encode(&obj))
                .await
            {
                Ok(_) | Err(pea_control_store::StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(ApiError::from_store(e, "", "namespaces", ns)),
            }
        }
        Ok(())
    }
}

/// The name of the object a request wrote: the request's own, or a create's from its reply.
fn written_name(ctx: &Ctx<'_>, reply: &Reply) -> Option<String> {
    match (&ctx.info.name, reply) {
        (Some(n), _) => Some(n.clone()),
        (None, Reply::Json { body, .. }) if ctx.info.verb == "create" => {
            objects::meta_str(body, "name").map(str::to_string)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use pea_control_store::{KeyValue, ListOptions, ListResult, Revision, StoreError, Watch};

    use super::*;

    /// A store whose reads panic: stands in for any bug a request could hit.
    #[derive(Debug)]
    struct PanickingStore;

    #[async_trait::async_trait]
    impl Store for PanickingStore {
        async fn create(&self, _: &str, _: Vec<u8>) -> Result<KeyValue, StoreError> {
            Err(StoreError::Closed)
        }
        async fn update(&self, _: &str, _: Vec<u8>, _: Revision) -> Result<KeyValue, StoreError> {
            Err(StoreError::Closed)
        }
        async fn delete(&self, _: &str, _: Option<Revision>) -> Result<KeyValue, StoreError> {
            Err(StoreError::Closed)
        }
        async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision), StoreError> {
            panic!("injected panic reading {key}")
        }
        async fn list(&self, _: &str, _: &ListOptions) -> Result<ListResult, StoreError> {
            Err(StoreError::Closed)
        }
        async fn current_revision(&self) -> Result<Revision, StoreError> {
            Err(StoreError::Closed)
        }
        async fn watch(&self, _: &str, _: Revision) -> Result<Watch, StoreError> {
            Err(StoreError::Closed)
        }
        async fn compact(&self, _: Revision) -> Result<(), StoreError> {
            Err(StoreError::Closed)
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_status() {
        let api = Arc::new(Api {
            store: Arc::new(PanickingStore),
            informers: crate::admission::informers::Informers::new(&Resources::builtin()),
            admission: Default::default(),
            resources: Resources::builtin(),
            clock: Arc::new(SystemTime::now),
            metrics: Metrics::default(),
            server_address: "127.0.0.1:6443".into(),
            bookmark_interval: Duration::from_secs(60),
            openapi_cache: Default::default(),
            watch_cache: Default::default(),
            service_cidr: crate::ipalloc::ServiceCidr::parse("10.96.0.0/12").unwrap(),
            node_port_range: crate::portalloc::PortRange::default(),
            authz: crate::authz::Authorizer::new(crate::authz::Mode::default()),
            resource_metrics: Default::default(),
            service_accounts: None,
        });
        let (reply, verb, resource) = api
            .handle(Incoming {
                method: "GET",
                path: "/api/v1/namespaces/default/configmaps/c",
                query: None,
                accept: "application/json",
                content_type: "",
                user_agent: "",
                body: Bytes::new(),
                user: Some(User {
                    name: "admin".into(),
                    groups: vec![crate::auth::ADMIN_GROUP.into()],
                    ..User::default()
                }),
                impersonate: None,
            })
            .await;
        assert_eq!((verb.as_str(), resource.as_str()), ("get", "configmaps"));
        let Reply::Json { code, body, .. } = reply else {
            panic!("not a JSON reply: {reply:?}");
        };
        assert_eq!(code, 500);
        assert_eq!(body["reason"], "InternalError");
        assert_eq!(body["kind"], "Status");
    }
}

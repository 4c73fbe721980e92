//! kube's CEL authorizer library (k8s.io/apiserver/pkg/cel/library/authz.go), the
//! `authorizer` variable of ValidatingAdmissionPolicy expressions:
//! `authorizer.group(g).resource(r).subresource(s).namespace(ns).name(n).check(verb)`,
//! `authorizer.path(p).check(verb)`, `authorizer.serviceAccount(ns, name)` (the same checks
//! for that service account), `authorizer.requestResource` (the request's own resource) and
//! the decision's `allowed()`, `reason()`, `errored()` and `error()`. Checks run the server's
//! authorizer chain (Node, RBAC) for the requesting user, as kube's do.

use std::sync::Arc;

use cel::extractors::This;
use cel::objects::Opaque;
use cel::{ExecutionError, FunctionContext, ResolveResult, Value};

use crate::auth::User;
use crate::authz::{Attributes, Authorizer, NodeFacts};

/// The authorizer chain and whom it checks for.
#[derive(Debug, Clone)]
pub struct Authz {
    chain: Arc<Authorizer>,
    user: Arc<User>,
}

impl PartialEq for Authz {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.chain, &other.chain) && self.user == other.user
    }
}
impl Eq for Authz {}

impl Opaque for Authz {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.Authorizer"
    }
}

/// `authorizer.path(p)`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathCheck {
    authz: Authz,
    path: String,
}

impl Opaque for PathCheck {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.PathCheck"
    }
}

/// `authorizer.group(g)`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupCheck {
    authz: Authz,
    group: String,
}

impl Opaque for GroupCheck {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.GroupCheck"
    }
}

/// `...resource(r)` with the optional parts set so far.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ResourceCheck {
    authz: Authz,
    group: String,
    resource: String,
    subresource: String,
    namespace: String,
    name: String,
}

impl Opaque for ResourceCheck {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.ResourceCheck"
    }
}

/// What `check(verb)` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decision {
    allowed: bool,
    reason: String,
    error: String,
}

impl Opaque for Decision {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.Decision"
    }
}

impl Authz {
    /// The `authorizer` variable for a request by `user`. The chain is a cheap copy of the
    /// server's (its RBAC index is shared).
    pub fn new(authorizer: &Authorizer, user: &User) -> Self {
        Self {
            chain: Arc::new(Authorizer {
                mode: authorizer.mode,
                rbac: authorizer.rbac.clone(),
                nodes: authorizer.nodes.clone(),
            }),
            user: Arc::new(user.clone()),
        }
    }

    pub fn value(&self) -> Value {
        Value::Opaque(Arc::new(self.clone()))
    }

    /// `authorizer.requestResource`: the request's own group, resource, subresource,
    /// namespace and name.
    pub fn request_resource(
        &self,
        group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> Value {
        Value::Opaque(Arc::new(ResourceCheck {
            authz: self.clone(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
        }))
    }

    fn decide(&self, attrs: &Attributes) -> Value {
        let d = self
            .chain
            .authorize(&self.user, attrs, NodeFacts::default());
        Value::Opaque(Arc::new(Decision {
            allowed: d.allowed,
            reason: d.reason,
            error: String::new(),
        }))
    }
}

fn this<T: Opaque + Clone>(ftx: &FunctionContext, v: &Value) -> Result<T, ExecutionError> {
    match v {
        Value::Opaque(o) => o.downcast_ref::<T>().cloned(),
        _ => None,
    }
    .ok_or_else(|| ftx.error(format!("no such overload: {}({v:?})", ftx.name)))
}

fn opaque<T: Opaque>(v: T) -> ResolveResult {
    Ok(Value::Opaque(Arc::new(v)))
}

pub fn path(ftx: &FunctionContext, This(a): This<Value>, path: Arc<String>) -> ResolveResult {
    let authz = this::<Authz>(ftx, &a)?;
    opaque(PathCheck {
        authz,
        path: path.to_string(),
    })
}

pub fn group(ftx: &FunctionContext, This(a): This<Value>, group: Arc<String>) -> ResolveResult {
    let authz = this::<Authz>(ftx, &a)?;
    opaque(GroupCheck {
        authz,
        group: group.to_string(),
    })
}

/// `authorizer.serviceAccount(ns, name)`: kube's `serviceaccount.UserInfo` (the account's
/// user and its two groups).
pub fn service_account(
    ftx: &FunctionContext,
    This(a): This<Value>,
    ns: Arc<String>,
    name: Arc<String>,
) -> ResolveResult {
    let authz = this::<Authz>(ftx, &a)?;
    let user = User {
        name: format!("{}{ns}:{name}", crate::auth::SERVICE_ACCOUNT_PREFIX),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
        ],
        ..User::default()
    };
    opaque(Authz {
        chain: authz.chain,
        user: Arc::new(user),
    })
}

pub fn resource(ftx: &FunctionContext, This(g): This<Value>, r: Arc<String>) -> ResolveResult {
    let g = this::<GroupCheck>(ftx, &g)?;
    opaque(ResourceCheck {
        authz: g.authz,
        group: g.group,
        resource: r.to_string(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
    })
}

fn with(ftx: &FunctionContext, r: &Value, set: impl FnOnce(&mut ResourceCheck)) -> ResolveResult {
    let mut r = this::<ResourceCheck>(ftx, r)?;
    set(&mut r);
    opaque(r)
}

pub fn subresource(ftx: &FunctionContext, This(r): This<Value>, s: Arc<String>) -> ResolveResult {
    with(ftx, &r, |r| r.subresource = s.to_string())
}

pub fn namespace(ftx: &FunctionContext, This(r): This<Value>, s: Arc<String>) -> ResolveResult {
    with(ftx, &r, |r| r.namespace = s.to_string())
}

pub fn name(ftx: &FunctionContext, This(r): This<Value>, s: Arc<String>) -> ResolveResult {
    with(ftx, &r, |r| r.name = s.to_string())
}

/// `check(verb)` on a path or a resource.
pub fn check(ftx: &FunctionContext, This(c): This<Value>, verb: Arc<String>) -> ResolveResult {
    if let Ok(p) = this::<PathCheck>(ftx, &c) {
        let mut attrs = Attributes::non_resource("GET", &p.path);
        attrs.verb = verb.to_string();
        return Ok(p.authz.decide(&attrs));
    }
    let r = this::<ResourceCheck>(ftx, &c)?;
    let mut attrs = Attributes::resource(&verb, &r.group, &r.resource, &r.namespace, &r.name);
    attrs.subresource = r.subresource.clone();
    Ok(r.authz.decide(&attrs))
}

fn decision(ftx: &FunctionContext, v: &Value) -> Result<Decision, ExecutionError> {
    this::<Decision>(ftx, v)
}

pub fn allowed(ftx: &FunctionContext, This(d): This<Value>) -> ResolveResult {
    Ok(Value::Bool(decision(ftx, &d)?.allowed))
}

pub fn reason(ftx: &FunctionContext, This(d): This<Value>) -> ResolveResult {
    Ok(Value::String(Arc::new(decision(ftx, &d)?.reason)))
}

/// pea's authorizers decide from memory and do not fail: never errored.
pub fn errored(ftx: &FunctionContext, This(d): This<Value>) -> ResolveResult {
    Ok(Value::Bool(!decision(ftx, &d)?.error.is_empty()))
}

pub fn error(ftx: &FunctionContext, This(d): This<Value>) -> ResolveResult {
    Ok(Value::String(Arc::new(decision(ftx, &d)?.error)))
}

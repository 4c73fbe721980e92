//! Admission: what a write passes after authorization and before the store, in kube-apiserver's
//! order:
//!
//! ```text
//! in-tree mutating (defaults, service_alloc, storage::admit_claim, … — calls in verbs/)
//!   → mutate(): mutating webhooks, in order, re-invoked once when IfNeeded
//!   → validation (verbs::validate, semantic checks)
//!   → in-tree validating (rbac::escalation, NamespaceLifecycle, … — calls in verbs/)
//!   → validate(): PodSecurity, then ValidatingAdmissionPolicies (policy/), then validating
//!     webhooks in parallel
//!   → store write
//! ```
//!
//! The verbs call [`mutate`] and [`validate`] once each per write (create, update incl. the
//! status and scale subresources, patch, apply), [`delete`] once per deleted object, and
//! [`connect`] for pods/exec, attach and portforward. Every entry point takes the request's
//! [`Ctx`] and builds the [`Attributes`] the plugins see.

pub(crate) mod client;
pub mod config;
pub mod informers;
pub mod plugin_config;
pub mod pod_security;
pub mod policy;
mod review;
pub mod rules;
pub(crate) mod webhooks;

use serde_json::{json, Value};

use crate::api::Ctx;
use crate::auth::User;
use crate::status::ApiError;

/// kube's admission operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// What admission sees of one request (kube's `admission.Attributes`).
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    pub operation: Operation,
    pub group: String,
    pub version: String,
    /// e.g. `pods`.
    pub resource: String,
    /// e.g. `status`; empty for the main resource.
    pub subresource: String,
    /// The kind of the object admission sees (`Scale` for scale, `PodExecOptions` for exec).
    pub kind: (String, String, String),
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    pub user: &'a User,
    pub dry_run: bool,
    /// CreateOptions, UpdateOptions, PatchOptions, DeleteOptions or the connect options.
    pub options: Value,
    /// Whether the resource is namespaced (rules' `scope`).
    pub namespaced: bool,
}

impl<'a> Attributes<'a> {
    /// The attributes of a request handled by `ctx`, for the object `name`.
    pub fn of(ctx: &'a Ctx<'_>, operation: Operation, name: &str) -> Self {
        let def = ctx.def;
        let subresource = ctx.info.subresource.clone().unwrap_or_default();
        let kind = match (subresource.as_str(), operation) {
            ("scale", _) => ("autoscaling", "v1", "Scale"),
            ("exec", Operation::Connect) => ("", "v1", "PodExecOptions"),
            ("attach", Operation::Connect) => ("", "v1", "PodAttachOptions"),
            ("portforward", Operation::Connect) => ("", "v1", "PodPortForwardOptions"),
            _ => (def.group, def.version, def.kind),
        };
        let dry_run = ctx.dry_run();
        let options = match operation {
            Operation::Create => options_object("CreateOptions", ctx, dry_run),
            Operation::Update if ctx.info.verb == "patch" => {
                let mut o = options_object("PatchOptions", ctx, dry_run);
                if ctx.query.flag("force") {
                    o["force"] = json!(true);
                }
                o
            }
            Operation::Update => options_object("UpdateOptions", ctx, dry_run),
            Operation::Delete => options_object("DeleteOptions", ctx, dry_run),
            Operation::Connect => json!({"kind": kind.2, "apiVersion": "v1"}),
        };
        Attributes {
            operation,
            group: def.group.into(),
            version: def.version.into(),
            resource: def.plural.into(),
            subresource,
            kind: (kind.0.into(), kind.1.into(), kind.2.into()),
            namespace: ctx.namespace().unwrap_or("").into(),
            name: name.into(),
            user: ctx.user,
            dry_run,
            options,
            namespaced: def.namespaced,
        }
    }
}

/// `CreateOptions` and friends as kube fills AdmissionRequest.options.
fn options_object(kind: &str, ctx: &Ctx<'_>, dry_run: bool) -> Value {
    let mut o = json!({"kind": kind, "apiVersion": "meta.k8s.io/v1"});
    if dry_run {
        o["dryRun"] = json!(["All"]);
    }
    if kind != "DeleteOptions" {
        if let Some(m) = ctx.query.get("fieldManager") {
            o["fieldManager"] = json!(m);
        }
    }
    o
}

/// The mutating phase after the in-tree mutating steps: mutating webhooks change `obj` (for the
/// scale subresource, the Scale view of it). Returns their warnings.
pub async fn mutate(
    ctx: &Ctx<'_>,
    op: Operation,
    old: Option<&Value>,
    obj: &mut Value,
) -> Result<Vec<String>, ApiError> {
    let attrs = Attributes::of(ctx, op, crate::objects::name_of(obj));
    if attrs.subresource == "scale" {
        // Webhooks see (and patch) an autoscaling/v1 Scale; only its replicas go back.
        let old_view = old.map(crate::verbs::get::scale_of);
        let mut view = crate::verbs::get::scale_of(obj);
        let warnings = webhooks::mutate(ctx.api, &attrs, old_view.as_ref(), &mut view).await?;
        if let Some(r) = view.pointer("/spec/replicas") {
            obj["spec"]["replicas"] = r.clone();
        }
        return Ok(warnings);
    }
    webhooks::mutate(ctx.api, &attrs, old, obj).await
}

/// The validating phase after validation and the in-tree validating steps: PodSecurity, then
/// validating webhooks. Returns their warnings.
pub async fn validate(
    ctx: &Ctx<'_>,
    op: Operation,
    old: Option<&Value>,
    obj: &Value,
) -> Result<Vec<String>, ApiError> {
    if matches!(op, Operation::Create | Operation::Update) {
        crate::crd::check_rules(ctx.def, old, obj)?;
    }
    let attrs = Attributes::of(ctx, op, crate::objects::name_of(obj));
    // NodeRestriction's checks of a node's writes to its own Node (and its status).
    if let Some(node) = crate::auth::node_name(ctx.user) {
        if attrs.group.is_empty() && attrs.resource == "nodes" {
            crate::node_authz::node_object::admit(node, op, old, obj)?;
        }
        if attrs.group.is_empty()
            && attrs.resource == "pods"
            && attrs.subresource.is_empty()
            && op == Operation::Create
        {
            crate::node_authz::mirror_pod::admit_create(ctx.api, node, obj).await?;
        }
    }
    let mut warnings = pod_security::admit(ctx.api, &attrs, old, obj).await?;
    if attrs.subresource == "scale" {
        let old_view = old.map(crate::verbs::get::scale_of);
        let view = crate::verbs::get::scale_of(obj);
        warnings.extend(policy::validate(ctx.api, &attrs, old_view.as_ref(), Some(&view)).await?);
        warnings.extend(webhooks::validate(ctx.api, &attrs, old_view.as_ref(), Some(&view)).await?);
    } else {
        warnings.extend(policy::validate(ctx.api, &attrs, old, Some(obj)).await?);
        warnings.extend(webhooks::validate(ctx.api, &attrs, old, Some(obj)).await?);
    }
    Ok(warnings)
}

/// A DELETE of `old`: mutating webhooks (which may deny but not patch), then validating ones.
/// `dry_run` covers `dryRun` given in DeleteOptions' body as well as the query.
pub async fn delete(ctx: &Ctx<'_>, old: &Value, dry_run: bool) -> Result<Vec<String>, ApiError> {
    if ctx.info.subresource.as_deref() == Some("eviction") {
        // kube admits an eviction as a CREATE of pods/eviction; the pod's removal that follows
        // is not admitted again (and pea does not admit the eviction itself yet).
        return Ok(Vec::new());
    }
    let mut attrs = Attributes::of(ctx, Operation::Delete, crate::objects::name_of(old));
    attrs.dry_run |= dry_run;
    if attrs.dry_run {
        attrs.options["dryRun"] = json!(["All"]);
    }
    let mut warnings = webhooks::call_mutating_read_only(ctx.api, &attrs, Some(old), None).await?;
    warnings.extend(policy::validate(ctx.api, &attrs, Some(old), None).await?);
    warnings.extend(webhooks::validate(ctx.api, &attrs, Some(old), None).await?);
    Ok(warnings)
}

/// A CONNECT (pods/exec, attach, portforward): webhooks see the connect options as the object.
pub async fn connect(ctx: &Ctx<'_>, name: &str) -> Result<Vec<String>, ApiError> {
    let mut attrs = Attributes::of(ctx, Operation::Connect, name);
    let mut options = attrs.options.clone();
    for flag in ["stdin", "stdout", "stderr", "tty"] {
        if ctx.query.flag(flag) {
            options[flag] = json!(true);
        }
    }
    if let Some(c) = ctx.query.get("container") {
        options["container"] = json!(c);
    }
    let command = ctx.query.all("command");
    if !command.is_empty() {
        options["command"] = json!(command);
    }
    let ports = crate::verbs::portforward::ports(ctx)?;
    if !ports.is_empty() {
        options["ports"] = json!(ports);
    }
    attrs.options = options.clone();
    let mut warnings =
        webhooks::call_mutating_read_only(ctx.api, &attrs, None, Some(&options)).await?;
    warnings.extend(webhooks::validate(ctx.api, &attrs, None, Some(&options)).await?);
    Ok(warnings)
}

//! CustomResourceDefinitions: apiextensions.k8s.io/v1 objects validated as kube does
//! ([`definition`]), a controller that accepts their names and keeps the live table of custom
//! resources ([`controller`]), and what serving those resources needs: structural schemas
//! ([`schema`]), printer columns ([`columns`]), the scale subresource ([`scale`]) and OpenAPI
//! ([`openapi`]).
//!
//! The live table is an `Arc` behind an `RwLock`: a request clones the `Arc` under a read lock;
//! only the controller (serialized by its own lock) swaps in a new table. Custom resources are
//! [`ResourceDef`]s like the built-ins, whose `&'static str` names come from a bounded,
//! deduplicating interner.

pub mod columns;
pub mod controller;
pub mod conversion;
pub mod definition;
pub mod openapi;
pub mod rules;
pub mod scale;
pub mod schema;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;

use crate::api::Api;
use crate::resources::ResourceDef;
use crate::status::ApiError;

pub const GROUP: &str = "apiextensions.k8s.io";
/// Held by every CRD until its objects are deleted.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
/// How many CustomResourceDefinitions may exist.
pub const MAX_CRDS: usize = 500;
/// How many bytes of names (groups, kinds, plurals, versions, ...) may be interned since start.
pub const MAX_INTERNED_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error("the custom resource name table is full ({MAX_INTERNED_BYTES} bytes of names interned since start); restart pea-control to compact it")]
    InternerFull,
}

/// What serving one version of a custom resource needs beyond [`ResourceDef`].
#[derive(Debug)]
pub struct CustomResource {
    /// The CRD's name (`crontabs.stable.example.com`).
    pub crd_name: String,
    /// The version objects are stored as.
    pub storage_version: &'static str,
    pub schema: schema::Schema,
    /// The version's `openAPIV3Schema` as written (published for `kubectl explain`).
    pub raw_schema: Value,
    pub columns: Vec<columns::Column>,
    pub scale: Option<scale::ScalePaths>,
    pub has_defaults: bool,
    /// Whether the schema carries `x-kubernetes-validations` (see [`rules`]).
    pub has_rules: bool,
    /// The CRD's resourceVersion: OpenAPI hashes change with it.
    pub revision: i64,
    /// The conversion webhook (strategy `Webhook`); `None` converts by rewriting apiVersion.
    pub conversion: Option<conversion::Webhook>,
}

/// The served custom resources at one moment.
#[derive(Debug, Default)]
pub struct Table {
    /// One entry per served version, preferred version first within a CRD.
    pub served: Vec<ResourceDef>,
    /// One entry per CRD (its storage version): what garbage collection walks.
    pub stored: Vec<ResourceDef>,
    /// Fingerprint of the CRDs the table was built from ((key, revision) pairs).
    pub built_from: Vec<(String, i64)>,
}

#[derive(Debug, Default)]
struct Interner {
    strings: HashSet<&'static str>,
    lists: HashMap<Vec<&'static str>, &'static [&'static str]>,
    bytes: usize,
}

/// The live custom resource table, shared by every request.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    table: Arc<RwLock<Arc<Table>>>,
    interner: Arc<Mutex<Interner>>,
    /// Serializes controller passes.
    pub(crate) reconcile: Arc<tokio::sync::Mutex<()>>,
    /// CRDs whose objects are being deleted right now.
    pub(crate) cleaning: Arc<Mutex<HashSet<String>>>,
}

impl Registry {
    pub fn snapshot(&self) -> Arc<Table> {
        match self.table.read() {
            Ok(t) => t.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<ResourceDef> {
        self.snapshot()
            .served
            .iter()
            .find(|d| d.group == group && d.version == version && d.plural == plural)
            .cloned()
    }

    pub(crate) fn replace(&self, table: Table) {
        let mut t = match self.table.write() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        *t = Arc::new(table);
    }

    pub(crate) fn intern(&self, s: &str) -> Result<&'static str, CrdError> {
        let mut i = self.interner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = i.strings.get(s) {
            return Ok(found);
        }
        if i.bytes + s.len() > MAX_INTERNED_BYTES {
            return Err(CrdError::InternerFull);
        }
        i.bytes += s.len();
        let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
        i.strings.insert(leaked);
        Ok(leaked)
    }

    pub(crate) fn intern_list(
        &self,
        items: &[String],
    ) -> Result<&'static [&'static str], CrdError> {
        let mut names = Vec::with_capacity(items.len());
        for s in items {
            names.push(self.intern(s)?);
        }
        let mut i = self.interner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = i.lists.get(&names) {
            return Ok(found);
        }
        let cost = names.len() * std::mem::size_of::<&str>();
        if i.bytes + cost > MAX_INTERNED_BYTES {
            return Err(CrdError::InternerFull);
        }
        i.bytes += cost;
        let leaked: &'static [&'static str] = Box::leak(names.clone().into_boxed_slice());
        i.lists.insert(names, leaked);
        Ok(leaked)
    }
}

/// Custom resources have no typed k8s-openapi struct: their schema is checked by [`admit`].
pub(crate) fn untyped(_: &Value) -> Result<Vec<String>, String> {
    Ok(Vec::new())
}

/// Defaults, prunes and validates a custom object being written; returns the pruned fields
/// (reported like unknown fields of built-ins: a warning, or an error under Strict).
pub fn admit(
    def: &ResourceDef,
    custom: &CustomResource,
    obj: &mut Value,
) -> Result<Vec<String>, ApiError> {
    let mut pruned = Vec::new();
    schema::prune(&custom.schema, obj, "", true, &mut pruned);
    schema::apply_defaults(&custom.schema, obj);
    let mut causes = Vec::new();
    schema::validate(&custom.schema, obj, &mut causes);
    // The root's metadata is the server's to check (verbs::validate did).
    causes.retain(|(f, _)| f != "metadata" && !f.starts_with("metadata."));
    if !causes.is_empty() {
        return Err(ApiError::Invalid {
            group: def.group.into(),
            kind: def.kind.into(),
            name: crate::objects::name_of(obj).into(),
            causes,
        });
    }
    Ok(pruned)
}

/// Runs the CRD's validation rules (`x-kubernetes-validations`) on a create (`old` is `None`)
/// or update of `obj`; kube runs them with the schema validation, before validating admission.
pub fn check_rules(def: &ResourceDef, old: Option<&Value>, obj: &Value) -> Result<(), ApiError> {
    let Some(custom) = def.custom.as_deref().filter(|c| c.has_rules) else {
        return Ok(());
    };
    let causes = rules::check(&custom.schema, obj, old);
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::Invalid {
        group: def.group.into(),
        kind: def.kind.into(),
        name: crate::objects::name_of(obj).into(),
        causes,
    })
}

/// Stored custom objects as the requested version reads them: through the CRD's conversion
/// webhook when it has one (one review for all of `objs`), then [`view`].
pub async fn read_view(api: &Api, def: &ResourceDef, objs: &mut [Value]) -> Result<(), ApiError> {
    if conversion::uses_webhook(def) {
        conversion::convert(api, def, objs, &def.api_version()).await?;
    }
    for obj in objs.iter_mut() {
        view(def, obj);
    }
    Ok(())
}

/// How a stored custom object reads at the requested version: its apiVersion says that version
/// (conversion `None`, or already converted by [`read_view`]), and defaults apply (kube
/// defaults on read from storage too).
pub fn view(def: &ResourceDef, obj: &mut Value) {
    let Some(custom) = &def.custom else {
        return;
    };
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(def.api_version()));
    }
    if custom.has_defaults {
        schema::apply_defaults(&custom.schema, obj);
    }
}

/// The bytes to store for `obj`: custom objects are stored as their storage version, converted
/// by the CRD's webhook when it has one.
pub async fn stored_bytes(api: &Api, def: &ResourceDef, obj: &Value) -> Result<Vec<u8>, ApiError> {
    if let Some(c) = def.custom.as_ref().filter(|c| c.conversion.is_some()) {
        if c.storage_version != def.version {
            let mut one = [obj.clone()];
            let storage = format!("{}/{}", def.group, c.storage_version);
            conversion::convert(api, def, &mut one, &storage).await?;
            let [stored] = one;
            return Ok(crate::objects::encode(&stored));
        }
    }
    Ok(stored_bytes_plain(def, obj))
}

fn stored_bytes_plain(def: &ResourceDef, obj: &Value) -> Vec<u8> {
    match &def.custom {
        Some(c) if c.storage_version != def.version => {
            let mut copy = obj.clone();
            copy["apiVersion"] = Value::String(format!("{}/{}", def.group, c.storage_version));
            crate::objects::encode(&copy)
        }
        _ => crate::objects::encode(obj),
    }
}

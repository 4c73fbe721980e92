//! The in-memory RBAC index: every Role, ClusterRole, RoleBinding and ClusterRoleBinding, kept
//! from a list and a watch of the store (kube's informers), plus a direct re-read of an object
//! right after this server wrote it (so a client that creates a binding is authorized by it on
//! its next request). Authorization reads an immutable [`Snapshot`] in which bindings are
//! grouped by subject and their roles' rules already resolved, rebuilt lazily after changes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use pea_control_store::{EventKind, KeyValue, Revision, Store, StoreError};
use serde_json::Value;
use tokio::sync::{watch, Notify};

use crate::auth::User;
use crate::authz::{aggregate, Attributes, Decision};
use crate::rbac::rules::Rule;

/// Where the four RBAC kinds live in the store.
pub const PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

/// A binding's roleRef.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRef {
    pub kind: String,
    pub name: String,
}

/// One subject of a binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

impl Subject {
    fn parse(v: &Value) -> Option<Self> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Some(Self {
            kind: s("kind"),
            name: s("name"),
            namespace: s("namespace"),
        })
    }

    /// kube's `describeSubject`.
    fn describe(&self, binding_namespace: &str) -> String {
        if self.kind == "ServiceAccount" {
            let ns = if self.namespace.is_empty() {
                binding_namespace
            } else {
                &self.namespace
            };
            return format!("{} {:?}", self.kind, format!("{}/{ns}", self.name));
        }
        format!("{} {:?}", self.kind, self.name)
    }
}

/// A ClusterRole as the index keeps it.
#[derive(Debug, Clone)]
pub struct ClusterRole {
    pub name: String,
    pub rules: Arc<[Rule]>,
    pub labels: Option<Value>,
    /// `aggregationRule.clusterRoleSelectors`, when the role is aggregated.
    pub selectors: Option<Vec<Value>>,
}

#[derive(Debug, Clone)]
enum Object {
    Role {
        namespace: String,
        name: String,
        rules: Arc<[Rule]>,
    },
    ClusterRole(ClusterRole),
    RoleBinding {
        namespace: String,
        name: String,
        role_ref: RoleRef,
        subjects: Vec<Subject>,
    },
    ClusterRoleBinding {
        name: String,
        role_ref: RoleRef,
        subjects: Vec<Subject>,
    },
}

fn parse(key: &str, value: &[u8]) -> Option<Object> {
    let rest = key.strip_prefix(PREFIX)?;
    let (plural, rest) = rest.split_once('/')?;
    let obj: Value = serde_json::from_slice(value).ok()?;
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let namespace = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| rest.split_once('/').map(|(ns, _)| ns.to_string()))
        .unwrap_or_default();
    let role_ref = || RoleRef {
        kind: obj
            .pointer("/roleRef/kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        name: obj
            .pointer("/roleRef/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    };
    let subjects = || {
        obj.get("subjects")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Subject::parse).collect())
            .unwrap_or_default()
    };
    Some(match plural {
        "roles" => Object::Role {
            namespace,
            name,
            rules: Rule::parse_list(obj.get("rules")).into(),
        },
        "clusterroles" => Object::ClusterRole(ClusterRole {
            name,
            rules: Rule::parse_list(obj.get("rules")).into(),
            labels: obj.pointer("/metadata/labels").cloned(),
            selectors: obj
                .pointer("/aggregationRule/clusterRoleSelectors")
                .and_then(Value::as_array)
                .cloned(),
        }),
        "rolebindings" => Object::RoleBinding {
            namespace,
            name,
            role_ref: role_ref(),
            subjects: subjects(),
        },
        "clusterrolebindings" => Object::ClusterRoleBinding {
            name,
            role_ref: role_ref(),
            subjects: subjects(),
        },
        _ => return None,
    })
}

/// The store's objects as last seen, with the revision each was seen at.
#[derive(Debug, Default)]
struct Raw {
    objects: HashMap<String, (Revision, Object)>,
    /// Keys known deleted, and the revision they were known deleted at (so a late event from
    /// before the deletion does not bring them back).
    tombstones: HashMap<String, Revision>,
}

impl Raw {
    fn known(&self, key: &str) -> Revision {
        let live = self.objects.get(key).map_or(0, |(r, _)| *r);
        live.max(self.tombstones.get(key).copied().unwrap_or(0))
    }

    /// Applies what the store said about `key` at `rev`: its value, or that it is gone.
    /// Returns whether anything changed.
    fn apply(&mut self, key: &str, rev: Revision, value: Option<&[u8]>) -> bool {
        if rev <= self.known(key) {
            return false;
        }
        match value.and_then(|v| parse(key, v)) {
            Some(obj) => {
                self.tombstones.remove(key);
                self.objects.insert(key.to_string(), (rev, obj));
            }
            None => {
                self.objects.remove(key);
                self.tombstones.insert(key.to_string(), rev);
            }
        }
        true
    }
}

/// The index. Cheap to read: [`RbacIndex::snapshot`] hands out an `Arc` of the current state.
#[derive(Debug, Default)]
pub struct RbacIndex {
    raw: Mutex<Raw>,
    /// Bumped, with `raw` locked, by every change to it.
    generation: AtomicU64,
    /// The last snapshot and the generation it was built from.
    current: RwLock<(u64, Arc<Snapshot>)>,
    /// Woken on every change to a ClusterRole (the aggregator listens).
    pub cluster_roles_changed: Notify,
}

impl RbacIndex {
    /// The current state, rebuilt first if anything changed since the last one.
    ///
    /// A reader never gets a snapshot older than the changes made before it asked: while one
    /// request rebuilds, the others wait for that build instead of taking the previous one
    /// (with a single dirty flag, 32 clients arriving after a RoleBinding write saw it cleared
    /// by the first and were refused by the stale snapshot).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        let want = self.generation.load(Ordering::Acquire);
        if let Some(snap) = self.built_since(want) {
            return snap;
        }
        let raw = self.raw.lock().unwrap_or_else(|p| p.into_inner());
        // With `raw` locked no change can land, so this is the generation `raw` holds.
        let now = self.generation.load(Ordering::Acquire);
        if let Some(snap) = self.built_since(now) {
            return snap;
        }
        let snap = Arc::new(Snapshot::build(&raw));
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = (now, snap.clone());
        snap
    }

    fn built_since(&self, generation: u64) -> Option<Arc<Snapshot>> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        (current.0 >= generation).then(|| current.1.clone())
    }

    /// Called with `raw` locked, after a change to it.
    fn changed(&self, cluster_role: bool) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if cluster_role {
            self.cluster_roles_changed.notify_one();
        }
    }

    fn apply(&self, key: &str, rev: Revision, value: Option<&[u8]>) {
        let mut raw = self.raw.lock().unwrap_or_else(|p| p.into_inner());
        if raw.apply(key, rev, value) {
            self.changed(key.starts_with(&format!("{PREFIX}clusterroles/")));
        }
    }

    /// Re-reads one key this server just wrote, so the write authorizes the next request.
    pub async fn sync_key(&self, store: &dyn Store, key: &str) {
        match store.get(key).await {
            Ok((Some(kv), _)) => self.apply(key, kv.mod_revision, Some(&kv.value)),
            Ok((None, rev)) => self.apply(key, rev, None),
            Err(e) => tracing::warn!(%key, error = %e, "re-reading an RBAC object failed"),
        }
    }

    /// Lists everything and reconciles the index with it; returns the list's revision.
    pub async fn resync(&self, store: &dyn Store) -> Result<Revision, StoreError> {
        let list = store.list(PREFIX, &Default::default()).await?;
        let rev = list.revision;
        let mut cluster_role = false;
        let mut changed = false;
        {
            let mut raw = self.raw.lock().unwrap_or_else(|p| p.into_inner());
            let listed: HashSet<&str> = list.items.iter().map(|kv| kv.key.as_str()).collect();
            let gone: Vec<String> = raw
                .objects
                .keys()
                .filter(|k| !listed.contains(k.as_str()))
                .cloned()
                .collect();
            for key in gone {
                if raw.apply(&key, rev, None) {
                    changed = true;
                    cluster_role |= key.starts_with(&format!("{PREFIX}clusterroles/"));
                }
            }
            for KeyValue {
                key,
                value,
                mod_revision,
                ..
            } in &list.items
            {
                if raw.apply(key, *mod_revision, Some(value)) {
                    changed = true;
                    cluster_role |= key.starts_with(&format!("{PREFIX}clusterroles/"));
                }
            }
            raw.tombstones.retain(|_, r| *r > rev);
            if changed {
                self.changed(cluster_role);
            }
        }
        Ok(rev)
    }

    /// Keeps the index current from a store watch until `stop`; re-lists after compaction or
    /// a broken watch.
    pub async fn run(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        mut after: Revision,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let mut w = match store.watch(PREFIX, after).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "RBAC watch failed; re-listing");
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    after = match self.resync(store.as_ref()).await {
                        Ok(r) => r,
                        Err(_) => after,
                    };
                    continue;
                }
            };
            loop {
                let ev = tokio::select! {
                    _ = stop.changed() => return,
                    ev = w.next() => ev,
                };
                match ev {
                    Some(Ok(ev)) => {
                        let rev = ev.revision();
                        let value = (ev.kind == EventKind::Put).then_some(ev.kv.value.as_slice());
                        self.apply(&ev.kv.key, rev, value);
                        after = rev;
                        let mut raw = self.raw.lock().unwrap_or_else(|p| p.into_inner());
                        if !raw.tombstones.is_empty() {
                            raw.tombstones.retain(|_, r| *r > rev);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::info!(error = %e, "RBAC watch ended; re-listing");
                        break;
                    }
                    None => break,
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            match self.resync(store.as_ref()).await {
                Ok(r) => after = r,
                Err(e) => tracing::warn!(error = %e, "RBAC re-list failed"),
            }
        }
    }
}

/// A binding, with its role's rules resolved (or why they could not be).
#[derive(Debug)]
struct Grant {
    binding: String,
    /// The RoleBinding's namespace; empty for a ClusterRoleBinding.
    namespace: String,
    role_ref: RoleRef,
    subjects: Vec<Subject>,
    rules: Result<Arc<[Rule]>, String>,
}

impl Grant {
    /// kube's `clusterRoleBindingDescriber` / `roleBindingDescriber`.
    fn describe(&self, subject: usize) -> String {
        let subject = self.subjects[subject].describe(&self.namespace);
        if self.namespace.is_empty() {
            format!(
                "ClusterRoleBinding {:?} of {} {:?} to {subject}",
                self.binding, self.role_ref.kind, self.role_ref.name
            )
        } else {
            format!(
                "RoleBinding {:?} of {} {:?} to {subject}",
                format!("{}/{}", self.binding, self.namespace),
                self.role_ref.kind,
                self.role_ref.name
            )
        }
    }
}

/// Bindings by the subject they name: (binding, index of the subject in it).
#[derive(Debug, Default)]
struct BySubject {
    users: HashMap<String, Vec<(Arc<Grant>, usize)>>,
    groups: HashMap<String, Vec<(Arc<Grant>, usize)>>,
    /// Service accounts by their user name (`system:serviceaccount:NS:NAME`).
    service_accounts: HashMap<String, Vec<(Arc<Grant>, usize)>>,
}

impl BySubject {
    fn add(&mut self, grant: &Arc<Grant>) {
        for (i, s) in grant.subjects.iter().enumerate() {
            let (map, key) = match s.kind.as_str() {
                "User" => (&mut self.users, s.name.clone()),
                "Group" => (&mut self.groups, s.name.clone()),
                "ServiceAccount" => {
                    let ns = if s.namespace.is_empty() {
                        &grant.namespace
                    } else {
                        &s.namespace
                    };
                    if ns.is_empty() {
                        continue;
                    }
                    (
                        &mut self.service_accounts,
                        format!("system:serviceaccount:{ns}:{}", s.name),
                    )
                }
                _ => continue,
            };
            let list = map.entry(key).or_default();
            // A binding that names the user twice applies once.
            if !list.iter().any(|(g, _)| Arc::ptr_eq(g, grant)) {
                list.push((grant.clone(), i));
            }
        }
    }

    /// The bindings that apply to `user`, each once.
    fn matching<'a>(&'a self, user: &User, out: &mut Vec<&'a (Arc<Grant>, usize)>) {
        let start = out.len();
        let mut push = |list: Option<&'a Vec<(Arc<Grant>, usize)>>| {
            for g in list.into_iter().flatten() {
                if !out[start..].iter().any(|(o, _)| Arc::ptr_eq(o, &g.0)) {
                    out.push(g);
                }
            }
        };
        push(self.users.get(&user.name));
        if user.name.starts_with("system:serviceaccount:") {
            push(self.service_accounts.get(&user.name));
        }
        for g in &user.groups {
            push(self.groups.get(g));
        }
    }

    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty() && self.service_accounts.is_empty()
    }
}

/// An immutable view of all RBAC objects, indexed for authorization.
#[derive(Debug, Default)]
pub struct Snapshot {
    roles: HashMap<(String, String), Arc<[Rule]>>,
    cluster_roles: HashMap<String, ClusterRole>,
    cluster: BySubject,
    namespaced: HashMap<String, BySubject>,
}

fn not_found(kind: &str, name: &str) -> String {
    format!("{kind}.rbac.authorization.k8s.io {name:?} not found")
}

impl Snapshot {
    fn build(raw: &Raw) -> Self {
        let mut s = Snapshot::default();
        for (_, obj) in raw.objects.values() {
            match obj {
                Object::Role {
                    namespace,
                    name,
                    rules,
                } => {
                    s.roles
                        .insert((namespace.clone(), name.clone()), rules.clone());
                }
                Object::ClusterRole(cr) => {
                    s.cluster_roles.insert(cr.name.clone(), cr.clone());
                }
                _ => {}
            }
        }
        // Deterministic order (by namespace and name) for the reasons reviews report.
        let mut bindings: Vec<&Object> = raw
            .objects
            .values()
            .map(|(_, o)| o)
            .filter(|o| {
                matches!(
                    o,
                    Object::RoleBinding { .. } | Object::ClusterRoleBinding { .. }
                )
            })
            .collect();
        let sort_key = |o: &&Object| match o {
            Object::RoleBinding {
                namespace, name, ..
            } => (namespace.clone(), name.clone()),
            Object::ClusterRoleBinding { name, .. } => (String::new(), name.clone()),
            _ => Default::default(),
        };
        bindings.sort_by_key(sort_key);
        for b in bindings {
            match b {
                Object::ClusterRoleBinding {
                    name,
                    role_ref,
                    subjects,
                } => {
                    let rules = if role_ref.kind == "ClusterRole" {
                        s.cluster_role_rules(&role_ref.name)
                    } else {
                        Err(format!(
                            "unsupported role reference kind: {:?}",
                            role_ref.kind
                        ))
                    };
                    let g = Arc::new(Grant {
                        binding: name.clone(),
                        namespace: String::new(),
                        role_ref: role_ref.clone(),
                        subjects: subjects.clone(),
                        rules,
                    });
                    s.cluster.add(&g);
                }
                Object::RoleBinding {
                    namespace,
                    name,
                    role_ref,
                    subjects,
                } => {
                    let rules = s.role_ref_rules(&role_ref.kind, &role_ref.name, namespace);
                    let g = Arc::new(Grant {
                        binding: name.clone(),
                        namespace: namespace.clone(),
                        role_ref: role_ref.clone(),
                        subjects: subjects.clone(),
                        rules,
                    });
                    s.namespaced.entry(namespace.clone()).or_default().add(&g);
                }
                _ => {}
            }
        }
        s.namespaced.retain(|_, b| !b.is_empty());
        s
    }

    fn cluster_role_rules(&self, name: &str) -> Result<Arc<[Rule]>, String> {
        self.cluster_roles
            .get(name)
            .map(|c| c.rules.clone())
            .ok_or_else(|| not_found("clusterrole", name))
    }

    /// kube's `GetRoleReferenceRules`: the rules a roleRef in `namespace` grants.
    pub fn role_ref_rules(
        &self,
        kind: &str,
        name: &str,
        namespace: &str,
    ) -> Result<Arc<[Rule]>, String> {
        match kind {
            "Role" => self
                .roles
                .get(&(namespace.to_string(), name.to_string()))
                .cloned()
                .ok_or_else(|| not_found("role", name)),
            "ClusterRole" => self.cluster_role_rules(name),
            other => Err(format!("unsupported role reference kind: {other:?}")),
        }
    }

    /// Every ClusterRole (the aggregator reads them).
    pub fn cluster_roles(&self) -> impl Iterator<Item = &ClusterRole> {
        self.cluster_roles.values()
    }

    fn grants<'a>(&'a self, user: &User, namespace: &str) -> Vec<&'a (Arc<Grant>, usize)> {
        let mut out = Vec::new();
        self.cluster.matching(user, &mut out);
        if !namespace.is_empty() {
            if let Some(ns) = self.namespaced.get(namespace) {
                ns.matching(user, &mut out);
            }
        }
        out
    }

    /// kube's RBAC authorizer: allowed by the first rule that matches, with the binding that
    /// held it as the reason; otherwise no opinion, with the bindings that could not be
    /// resolved as the reason.
    pub fn authorize(&self, user: &User, a: &Attributes) -> Decision {
        let mut errors = Vec::new();
        for (grant, subject) in self.grants(user, &a.namespace) {
            match &grant.rules {
                Ok(rules) => {
                    if rules.iter().any(|r| r.allows(a)) {
                        return Decision {
                            allowed: true,
                            reason: format!("RBAC: allowed by {}", grant.describe(*subject)),
                        };
                    }
                }
                Err(e) => errors.push(e.clone()),
            }
        }
        Decision {
            allowed: false,
            reason: if errors.is_empty() {
                String::new()
            } else {
                format!("RBAC: {}", aggregate(&errors))
            },
        }
    }

    /// kube's `RulesFor`: every rule `user` holds in `namespace` (cluster-wide ones included),
    /// and the bindings that could not be resolved.
    pub fn rules_for(&self, user: &User, namespace: &str) -> (Vec<Rule>, Vec<String>) {
        let (mut rules, mut errors) = (Vec::new(), Vec::new());
        for (grant, _) in self.grants(user, namespace) {
            match &grant.rules {
                Ok(r) => rules.extend(r.iter().cloned()),
                Err(e) => errors.push(e.clone()),
            }
        }
        (rules, errors)
    }
}

/// A snapshot of the given objects (key below [`PREFIX`], object), for tests.
#[cfg(test)]
pub(crate) fn snapshot_of(objects: &[(&str, Value)]) -> Snapshot {
    let mut raw = Raw::default();
    for (i, (key, obj)) in objects.iter().enumerate() {
        raw.apply(
            &format!("{PREFIX}{key}"),
            i as Revision + 1,
            Some(&serde_json::to_vec(obj).unwrap_or_default()),
        );
    }
    Snapshot::build(&raw)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn put(raw: &mut Raw, rev: Revision, key: &str, obj: Value) {
        raw.apply(
            &format!("{PREFIX}{key}"),
            rev,
            Some(&serde_json::to_vec(&obj).unwrap()),
        );
    }

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..User::default()
        }
    }

    fn sample() -> Raw {
        let mut raw = Raw::default();
        put(
            &mut raw,
            1,
            "clusterroles/view",
            json!({"metadata": {"name": "view"},
            "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}]}),
        );
        put(
            &mut raw,
            2,
            "roles/team/writer",
            json!({"metadata": {"name": "writer", "namespace": "team"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}]}),
        );
        put(
            &mut raw,
            3,
            "clusterrolebindings/viewers",
            json!({"metadata": {"name": "viewers"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "Group", "name": "viewers"}]}),
        );
        put(
            &mut raw,
            4,
            "rolebindings/team/writers",
            json!({"metadata": {"name": "writers", "namespace": "team"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "writer"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "bot"}]}),
        );
        put(
            &mut raw,
            5,
            "rolebindings/team/broken",
            json!({"metadata": {"name": "broken", "namespace": "team"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "missing"},
            "subjects": [{"kind": "User", "name": "carol"}]}),
        );
        raw
    }

    #[test]
    fn bindings_grant_their_roles_to_their_subjects() {
        let s = Snapshot::build(&sample());
        let a = Attributes::resource("list", "", "pods", "team", "");
        let bob = user("bob", &["viewers", "system:authenticated"]);
        let d = s.authorize(&bob, &a);
        assert!(d.allowed);
        assert_eq!(
            d.reason,
            r#"RBAC: allowed by ClusterRoleBinding "viewers" of ClusterRole "view" to Group "viewers""#
        );
        assert!(
            s.authorize(&bob, &Attributes::resource("get", "", "pods/log", "x", "p"))
                .allowed
        );
        assert!(
            !s.authorize(&bob, &Attributes::resource("delete", "", "pods", "x", "p"))
                .allowed
        );
        // A Role binds only in its namespace.
        let alice = user("alice", &[]);
        let create = Attributes::resource("create", "", "configmaps", "team", "");
        let d = s.authorize(&alice, &create);
        assert_eq!(
            d.reason,
            r#"RBAC: allowed by RoleBinding "writers/team" of Role "writer" to User "alice""#
        );
        assert!(
            !s.authorize(
                &alice,
                &Attributes::resource("create", "", "configmaps", "other", "")
            )
            .allowed
        );
        // A service account subject without a namespace is the binding's namespace's.
        let bot = user(
            "system:serviceaccount:team:bot",
            &["system:serviceaccounts"],
        );
        let d = s.authorize(&bot, &create);
        assert_eq!(
            d.reason,
            r#"RBAC: allowed by RoleBinding "writers/team" of Role "writer" to ServiceAccount "bot/team""#
        );
        // A binding to a missing role is the reason for a refusal.
        let carol = user("carol", &[]);
        let d = s.authorize(&carol, &create);
        assert!(!d.allowed);
        assert_eq!(
            d.reason,
            r#"RBAC: role.rbac.authorization.k8s.io "missing" not found"#
        );
        let (rules, errors) = s.rules_for(&alice, "team");
        assert_eq!(rules.len(), 1);
        assert!(errors.is_empty());
    }

    #[test]
    fn late_events_do_not_undo_newer_state() {
        let mut raw = sample();
        let key = format!("{PREFIX}rolebindings/team/writers");
        // Deleted at 10 (seen by a direct re-read), then the watch delivers the older put.
        assert!(raw.apply(&key, 10, None));
        assert!(!raw.apply(&key, 4, Some(b"{}")));
        assert!(!raw.objects.contains_key(&key));
        let s = Snapshot::build(&raw);
        assert!(
            !s.authorize(
                &user("alice", &[]),
                &Attributes::resource("create", "", "configmaps", "team", "")
            )
            .allowed
        );
        // A newer create brings it back.
        assert!(raw.apply(
            &key,
            11,
            Some(&serde_json::to_vec(&json!({"metadata": {"name": "writers", "namespace": "team"},
                "roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "alice"}]})).unwrap())
        ));
        let s = Snapshot::build(&raw);
        assert!(
            s.authorize(
                &user("alice", &[]),
                &Attributes::resource("get", "", "pods", "team", "p")
            )
            .allowed
        );
    }

    #[tokio::test]
    async fn the_index_follows_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            pea_control_store::sqlite::SqliteStore::open(dir.path().join("s.db")).unwrap(),
        );
        let index = Arc::new(RbacIndex::default());
        let rev = index.resync(store.as_ref()).await.unwrap();
        let (stop_tx, stop) = watch::channel(false);
        tokio::spawn(index.clone().run(store.clone(), rev, stop));
        let crb = json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "User", "name": "u"}]});
        let cr = json!({"metadata": {"name": "cluster-admin"}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]});
        store
            .create(
                &format!("{PREFIX}clusterroles/cluster-admin"),
                serde_json::to_vec(&cr).unwrap(),
            )
            .await
            .unwrap();
        store
            .create(
                &format!("{PREFIX}clusterrolebindings/b"),
                serde_json::to_vec(&crb).unwrap(),
            )
            .await
            .unwrap();
        let a = Attributes::resource("delete", "apps", "deployments", "x", "y");
        let u = user("u", &[]);
        let mut allowed = false;
        for _ in 0..100 {
            if index.snapshot().authorize(&u, &a).allowed {
                allowed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(allowed, "the watch never delivered the binding");
        // A direct re-read after a delete takes effect at once.
        store
            .delete(&format!("{PREFIX}clusterrolebindings/b"), None)
            .await
            .unwrap();
        index
            .sync_key(store.as_ref(), &format!("{PREFIX}clusterrolebindings/b"))
            .await;
        assert!(!index.snapshot().authorize(&u, &a).allowed);
        let _ = stop_tx.send(true);
    }
}

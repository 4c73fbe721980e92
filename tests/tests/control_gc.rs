//! The garbage collector's sweep with real kubectl: dependents of owners that vanished behind
//! the server's back (deleted in the store, a restart mid-cascade, a uid mismatch) are collected
//! at startup and periodically; foreground and orphan deletions cut short by a restart are
//! finished; allocation records a vanished Service leaked are freed — embedded and etcd.

use std::time::{Duration, Instant};

use pea_tests::control::{Backend, ControlPlane, Kubectl};
use serde_json::{json, Value};

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn uid(k: &Kubectl, name: &str) -> String {
    k.ok(&["get", "cm", name, "-o", "jsonpath={.metadata.uid}"])
}

/// A ConfigMap owned by `owners` (name, uid); `extra` goes into metadata.
fn dependent(name: &str, owners: &[(&str, &str)], extra: &str) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{extra}  ownerReferences:\n"
    );
    for (n, u) in owners {
        s.push_str(&format!(
            "  - apiVersion: v1\n    kind: ConfigMap\n    name: {n}\n    uid: {u}\n    blockOwnerDeletion: true\n"
        ));
    }
    s
}

fn exists(k: &Kubectl, name: &str) -> bool {
    k.run(&["get", "cm", name]).status.success()
}

fn cm_key(cp: &ControlPlane, name: &str) -> String {
    let api = cp.api();
    let def = api.resources.find("", "v1", "configmaps").unwrap();
    def.key(Some("default"), name)
}

/// Deletes an object in the store directly: no cascade runs.
fn delete_in_store(cp: &ControlPlane, key: &str) {
    let api = cp.api();
    cp.block_on(api.store.delete(key, None)).unwrap();
}

/// Rewrites a stored object in place (as a crash after a partial write would leave it).
fn edit_in_store(cp: &ControlPlane, key: &str, f: impl FnOnce(&mut Value)) {
    let api = cp.api();
    let (kv, _) = cp.block_on(api.store.get(key)).unwrap();
    let kv = kv.unwrap();
    let mut obj: Value = serde_json::from_slice(&kv.value).unwrap();
    f(&mut obj);
    cp.block_on(
        api.store
            .update(key, serde_json::to_vec(&obj).unwrap(), kv.mod_revision),
    )
    .unwrap();
}

fn owners_of(k: &Kubectl, name: &str) -> String {
    k.ok(&[
        "get",
        "cm",
        name,
        "-o",
        "jsonpath={.metadata.ownerReferences[*].name}",
    ])
}

fn collected_at_restart(backend: Backend) {
    // Startup sweeps only: what disappears, disappears because of the restart.
    let mut cp = ControlPlane::start_with(backend, |c| c.gc_sweep_interval_secs = 0).unwrap();
    let k = cp.kubectl();
    k.ok(&["create", "cm", "owner"]);
    k.ok(&["create", "cm", "alive"]);
    let (owner, alive) = (uid(&k, "owner"), uid(&k, "alive"));
    for d in ["dep1", "dep2"] {
        k.ok_stdin(
            &["create", "-f", "-"],
            &dependent(d, &[("owner", &owner)], ""),
        );
    }
    k.ok_stdin(
        &["create", "-f", "-"],
        &dependent("shared", &[("owner", &owner), ("alive", &alive)], ""),
    );
    // Names a live object, but another uid: its owner is gone.
    k.ok_stdin(
        &["create", "-f", "-"],
        &dependent("mismatch", &[("alive", "0000-not-the-uid")], ""),
    );
    // A kind the server does not know is never a reason to delete.
    k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: foreign\n  ownerReferences:\n  - {apiVersion: example.com/v1, kind: Widget, name: w, uid: '1234'}\n",
    );
    // A background cascade cut short by the restart: many dependents, restart at once.
    k.ok(&["create", "cm", "big"]);
    let big = uid(&k, "big");
    let mut many = String::new();
    for i in 0..30 {
        many.push_str(&dependent(&format!("big-{i}"), &[("big", &big)], ""));
        many.push_str("---\n");
    }
    k.ok_stdin(&["create", "-f", "-"], &many);

    delete_in_store(&cp, &cm_key(&cp, "owner"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        exists(&k, "dep1") && exists(&k, "mismatch"),
        "nothing swept yet"
    );
    k.ok(&["delete", "cm", "big", "--wait=false"]);
    cp.restart().unwrap();
    let k = cp.kubectl();
    eventually("dependents of gone owners collected", || {
        let out = k.ok(&["get", "cm", "-o", "name"]);
        !out.contains("dep1")
            && !out.contains("dep2")
            && !out.contains("mismatch")
            && !out.contains("big-")
    });
    assert!(exists(&k, "shared") && exists(&k, "foreign") && exists(&k, "alive"));
    eventually("the gone owner's reference removed", || {
        owners_of(&k, "shared") == "alive"
    });
    assert_eq!(owners_of(&k, "foreign"), "w");
}

#[test]
fn dependents_of_gone_owners_are_collected_at_restart_embedded() {
    collected_at_restart(Backend::Embedded);
}

#[test]
fn dependents_of_gone_owners_are_collected_at_restart_etcd() {
    collected_at_restart(Backend::Etcd);
}

fn deletions_resume(backend: Backend) {
    let mut cp = ControlPlane::start_with(backend, |c| c.gc_sweep_interval_secs = 1).unwrap();
    let k = cp.kubectl();
    // Foreground: one dependent is held by its own finalizer while the server restarts.
    k.ok(&["create", "cm", "fg"]);
    let fg = uid(&k, "fg");
    k.ok_stdin(
        &["create", "-f", "-"],
        &dependent("held", &[("fg", &fg)], "  finalizers: [example.com/hold]\n"),
    );
    k.ok_stdin(
        &["create", "-f", "-"],
        &dependent("plain", &[("fg", &fg)], ""),
    );
    // Held too, but without blockOwnerDeletion: deleted, yet the owner does not wait for it.
    k.ok_stdin(
        &["create", "-f", "-"],
        &dependent(
            "nonblock",
            &[("fg", &fg)],
            "  finalizers: [example.com/hold]\n",
        )
        .replace("blockOwnerDeletion: true", "blockOwnerDeletion: false"),
    );
    k.ok(&["delete", "cm", "fg", "--cascade=foreground", "--wait=false"]);
    eventually("the free dependent gone first", || !exists(&k, "plain"));
    let fins = k.ok(&["get", "cm", "fg", "-o", "jsonpath={.metadata.finalizers}"]);
    assert!(fins.contains("foregroundDeletion"), "{fins}");
    assert!(!k
        .ok(&[
            "get",
            "cm",
            "held",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}"
        ])
        .is_empty());
    cp.restart().unwrap();
    let k = cp.kubectl();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(exists(&k, "fg"), "the owner waits for its held dependent");
    k.ok(&[
        "patch",
        "cm",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    eventually("the foreground owner finished by the sweep", || {
        !exists(&k, "fg") && !exists(&k, "held")
    });
    assert!(!k
        .ok(&[
            "get",
            "cm",
            "nonblock",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}"
        ])
        .is_empty());
    k.ok(&[
        "patch",
        "cm",
        "nonblock",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    eventually("the non-blocking dependent gone", || {
        !exists(&k, "nonblock")
    });

    // Blocking dependents are deleted in the foreground too: a held grandchild holds the chain.
    k.ok(&["create", "cm", "top"]);
    let top = uid(&k, "top");
    k.ok_stdin(
        &["create", "-f", "-"],
        &dependent("mid", &[("top", &top)], ""),
    );
    let mid = uid(&k, "mid");
    k.ok_stdin(
        &["create", "-f", "-"],
        &dependent(
            "leaf",
            &[("mid", &mid)],
            "  finalizers: [example.com/hold]\n",
        ),
    );
    k.ok(&[
        "delete",
        "cm",
        "top",
        "--cascade=foreground",
        "--wait=false",
    ]);
    eventually("the middle object in foreground deletion", || {
        k.ok(&["get", "cm", "mid", "-o", "jsonpath={.metadata.finalizers}"])
            .contains("foregroundDeletion")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(exists(&k, "top") && exists(&k, "mid"), "held by the leaf");
    k.ok(&[
        "patch",
        "cm",
        "leaf",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    eventually("the chain gone leaf first", || {
        !exists(&k, "top") && !exists(&k, "mid") && !exists(&k, "leaf")
    });

    // Orphan: the owner was marked (orphan finalizer) but the server stopped before unlinking.
    k.ok(&["create", "cm", "orph"]);
    let orph = uid(&k, "orph");
    k.ok_stdin(
        &["create", "-f", "-"],
        &dependent("kept", &[("orph", &orph)], ""),
    );
    edit_in_store(&cp, &cm_key(&cp, "orph"), |o| {
        o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        o["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        o["metadata"]["finalizers"] = json!(["orphan"]);
    });
    eventually("the orphaning owner finished by the sweep", || {
        !exists(&k, "orph")
    });
    assert!(exists(&k, "kept"), "an orphan is never collected");
    assert_eq!(owners_of(&k, "kept"), "");

    // Orphan through kubectl: the dependent stays, unlinked.
    k.ok(&["create", "cm", "orph2"]);
    let orph2 = uid(&k, "orph2");
    k.ok_stdin(
        &["create", "-f", "-"],
        &dependent("kept2", &[("orph2", &orph2)], ""),
    );
    k.ok(&["delete", "cm", "orph2", "--cascade=orphan"]);
    assert!(!exists(&k, "orph2"));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(exists(&k, "kept2"));
    assert_eq!(owners_of(&k, "kept2"), "");

    // Periodic sweep, no restart: an owner deleted in the store takes its dependents along.
    k.ok(&["create", "cm", "late"]);
    let late = uid(&k, "late");
    k.ok_stdin(
        &["create", "-f", "-"],
        &dependent("late-dep", &[("late", &late)], ""),
    );
    delete_in_store(&cp, &cm_key(&cp, "late"));
    eventually("the periodic sweep collects", || !exists(&k, "late-dep"));
}

#[test]
fn foreground_and_orphan_deletions_resume_after_restart_embedded() {
    deletions_resume(Backend::Embedded);
}

#[test]
fn foreground_and_orphan_deletions_resume_after_restart_etcd() {
    deletions_resume(Backend::Etcd);
}

#[test]
fn leaked_service_allocations_are_freed_by_the_sweep() {
    let cp = ControlPlane::start_with(Backend::Embedded, |c| {
        c.gc_sweep_interval_secs = 1;
        c.service_node_port_range = "30200-30200".into();
    })
    .unwrap();
    let k = cp.kubectl();
    let svc = |name: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: NodePort\n  ports:\n  - port: 80\n")
    };
    k.ok_stdin(&["create", "-f", "-"], &svc("a"));
    let api = cp.api();
    let def = api.resources.find("", "v1", "services").unwrap();
    // The Service vanishes without its release (a crash between the two).
    delete_in_store(&cp, &def.key(Some("default"), "a"));
    let out = k.stdin_output(&["create", "-f", "-"], &svc("b"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("range is full"),
        "{out:?}"
    );
    let records = |prefix: &str| cp.allocations(prefix).len();
    eventually("leaked records freed", || {
        records("/registry/ranges/servicenodeports/") == 0
            && records("/registry/ranges/serviceips/") == 0
    });
    k.ok_stdin(&["create", "-f", "-"], &svc("b"));
    assert_eq!(
        k.ok(&[
            "get",
            "svc",
            "b",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}"
        ]),
        "30200"
    );
    // Records of live Services are never touched.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(records("/registry/ranges/servicenodeports/"), 1);
    assert_eq!(records("/registry/ranges/serviceips/"), 1);
}

/// Two Deployments d1 and d2 and a ConfigMap `shared` owned by both (`d1_extra` is added to d1's
/// ownerReference, e.g. `, blockOwnerDeletion: true`).
fn shared_by_two_deployments(k: &Kubectl, d1_extra: &str) {
    for d in ["d1", "d2"] {
        k.ok(&["create", "deployment", d, "--image=busybox"]);
    }
    let duid = |d: &str| k.ok(&["get", "deploy", d, "-o", "jsonpath={.metadata.uid}"]);
    let (u1, u2) = (duid("d1"), duid("d2"));
    k.ok_stdin(
        &["create", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n  ownerReferences:\n  - {{apiVersion: apps/v1, kind: Deployment, name: d1, uid: {u1}{d1_extra}}}\n  - {{apiVersion: apps/v1, kind: Deployment, name: d2, uid: {u2}}}\n"
        ),
    );
}

/// Like kube's garbage collector, a background cascade deletes a dependent only when all its
/// owners are gone; beside a live owner it just loses the reference to the deleted one.
#[test]
fn background_cascade_keeps_dependents_with_live_owners() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    shared_by_two_deployments(&k, "");
    k.ok(&["delete", "deployment", "d1", "--cascade=background"]);
    eventually("the reference to d1 to go", || {
        owners_of(&k, "shared") == "d2"
    });
    assert!(exists(&k, "shared"));
    // With the last owner gone the dependent goes too.
    k.ok(&["delete", "deployment", "d2", "--cascade=background"]);
    eventually("the dependent to be collected", || !exists(&k, "shared"));
}

/// In a foreground deletion too, a dependent with another live owner is not deleted: it loses
/// the reference to the deleted owner, which then goes.
#[test]
fn foreground_cascade_keeps_dependents_with_live_owners() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    shared_by_two_deployments(&k, ", blockOwnerDeletion: true");
    k.ok(&[
        "delete",
        "deployment",
        "d1",
        "--cascade=foreground",
        "--wait=false",
    ]);
    eventually("the foreground deletion of d1 to finish", || {
        !k.run(&["get", "deploy", "d1"]).status.success()
    });
    assert_eq!(owners_of(&k, "shared"), "d2");
}

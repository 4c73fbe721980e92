//! RBAC with the real kubectl (1.32): bootstrap roles, refusals in kube's words, `kubectl auth
//! can-i` agreeing with what requests do, `kubectl create role|rolebinding|clusterrole|
//! clusterrolebinding`, escalation prevention, impersonation and `kubectl auth whoami`.

use std::time::{Duration, Instant};

use pea_tests::control::{Backend, ControlPlane, Kubectl};

fn user(cp: &ControlPlane, name: &str, groups: &[&str]) -> Kubectl {
    Kubectl::new(&cp.kubeconfig_for(name, groups).unwrap())
}

/// `kubectl auth can-i ...`: true for "yes" (exit 0), false for "no" (exit 1).
fn can_i(k: &Kubectl, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let out = k.run(&all);
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match out.status.code() {
        Some(0) => {
            assert_eq!(stdout, "yes", "{args:?}");
            true
        }
        Some(1) => {
            assert!(
                stdout.starts_with("no"),
                "{args:?}: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            false
        }
        _ => panic!("can-i {args:?}: {out:?}"),
    }
}

/// Polls `f` for up to 10 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn setup_team(admin: &Kubectl) {
    admin.ok(&["create", "namespace", "team"]);
    admin.ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "team",
        "--from-literal=a=b",
    ]);
    admin.ok(&[
        "create",
        "secret",
        "generic",
        "token",
        "-n",
        "team",
        "--from-literal=t=x",
    ]);
}

#[test]
fn a_view_user_reads_is_refused_writes_in_kube_words_and_can_i_agrees() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let admin = cp.kubectl();
    setup_team(&admin);
    admin.ok(&[
        "create",
        "rolebinding",
        "bob-view",
        "--clusterrole=view",
        "--user=bob",
        "-n",
        "team",
    ]);
    let bob = user(&cp, "bob", &["dev"]);

    // Reads that view grants.
    assert!(bob
        .ok(&["get", "configmaps", "-n", "team", "-o", "name"])
        .contains("configmap/settings"));
    bob.ok(&["get", "pods", "-n", "team"]);
    bob.ok(&["get", "namespace", "team"]);

    // Writes, secrets, other namespaces and cluster-scoped resources are refused in kube's words.
    let err = bob.fails(&[
        "create",
        "configmap",
        "x",
        "-n",
        "team",
        "--from-literal=a=b",
    ]);
    assert!(
        err.contains(r#"configmaps is forbidden: User "bob" cannot create resource "configmaps" in API group "" in the namespace "team""#),
        "{err}"
    );
    let err = bob.fails_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: team}\n",
    );
    assert!(
        err.contains(r#"Error from server (Forbidden): error when creating "STDIN": configmaps is forbidden: User "bob" cannot create resource "configmaps" in API group "" in the namespace "team""#),
        "{err}"
    );
    let err = bob.fails(&["delete", "configmap", "settings", "-n", "team"]);
    assert!(
        err.contains(r#"configmaps "settings" is forbidden: User "bob" cannot delete resource "configmaps" in API group "" in the namespace "team""#),
        "{err}"
    );
    let err = bob.fails(&["get", "secret", "token", "-n", "team"]);
    assert!(
        err.contains(r#"secrets "token" is forbidden: User "bob" cannot get resource "secrets" in API group "" in the namespace "team""#),
        "{err}"
    );
    let err = bob.fails(&["get", "pods", "-n", "default"]);
    assert!(
        err.contains(r#"pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "default""#),
        "{err}"
    );
    let err = bob.fails(&["get", "nodes"]);
    assert!(
        err.contains(r#"nodes is forbidden: User "bob" cannot list resource "nodes" in API group "" at the cluster scope"#),
        "{err}"
    );
    admin.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "-n",
        "team",
    ]);
    bob.ok(&["get", "deployment", "web", "-n", "team"]);
    let err = bob.fails(&["scale", "deployment", "web", "--replicas=2", "-n", "team"]);
    assert!(
        err.contains(r#"deployments.apps "web" is forbidden: User "bob" cannot"#)
            && err.contains(
                r#"resource "deployments/scale" in API group "apps" in the namespace "team""#
            ),
        "{err}"
    );
    let err = bob.fails(&["get", "--raw", "/metrics"]);
    assert!(
        err.contains(r#"forbidden: User "bob" cannot get path "/metrics""#),
        "{err}"
    );
    // Discovery and the public endpoints stay open to every authenticated user.
    bob.ok(&["get", "--raw", "/version"]);
    bob.ok(&["api-resources"]);

    // can-i answers what the requests above did.
    let matrix: &[(&[&str], bool)] = &[
        (&["list", "pods", "-n", "team"], true),
        (&["get", "configmaps", "-n", "team"], true),
        (&["watch", "deployments.apps", "-n", "team"], true),
        (&["get", "pods", "--subresource=log", "-n", "team"], true),
        (
            &["get", "pods/web", "--subresource=log", "-n", "team"],
            true,
        ),
        (&["get", "namespace/team"], false),
        (&["create", "configmaps", "-n", "team"], false),
        (&["delete", "configmap/settings", "-n", "team"], false),
        (&["get", "secrets", "-n", "team"], false),
        (&["list", "pods", "-n", "default"], false),
        (&["list", "nodes"], false),
        (
            &["create", "pods", "--subresource=exec", "-n", "team"],
            false,
        ),
        (&["get", "/metrics"], false),
        (&["get", "/version"], true),
        (
            &["create", "selfsubjectaccessreviews.authorization.k8s.io"],
            true,
        ),
    ];
    for (args, want) in matrix {
        assert_eq!(can_i(&bob, args), *want, "bob can-i {args:?}");
    }
    // `get namespace team` is a request in namespace team (kube's RequestInfo), which the
    // RoleBinding covers even though can-i without -n asks at the cluster scope.
    assert!(can_i(&bob, &["get", "namespace/team", "-n", "team"]));
    // The admin can do anything; --list shows what bob holds in the namespace.
    assert!(can_i(&admin, &["delete", "nodes"]));
    assert!(can_i(&admin, &["*", "*"]));
    let list = bob.ok(&["auth", "can-i", "--list", "-n", "team"]);
    assert!(
        list.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{list}"
    );
    let pods_line = list
        .lines()
        .find(|l| l.starts_with("pods ") || l.starts_with("pods\t"))
        .unwrap_or_else(|| panic!("no pods line: {list}"));
    assert!(pods_line.contains("[get list watch]"), "{pods_line}");
    assert!(list.contains("/version"), "{list}");
    let admin_list = admin.ok(&["auth", "can-i", "--list"]);
    assert!(admin_list.contains("*.*"), "{admin_list}");

    // who am I
    let who = bob.ok(&["auth", "whoami"]);
    assert!(who.contains("Username") && who.contains("bob"), "{who}");
    assert!(who.contains("[dev system:authenticated]"), "{who}");
    let who = admin.ok(&["auth", "whoami", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&who).unwrap();
    assert_eq!(v["kind"], "SelfSubjectReview");
    assert_eq!(
        v["status"]["userInfo"]["groups"],
        serde_json::json!(["system:masters", "system:authenticated"])
    );

    // A SubjectAccessReview asks for someone else (the admin may; bob may not).
    let sar = "apiVersion: authorization.k8s.io/v1\nkind: SubjectAccessReview\nspec:\n  user: bob\n  groups: [dev]\n  resourceAttributes: {verb: list, resource: pods, namespace: team}\n";
    let out = admin.ok_stdin(&["create", "-f", "-", "-o", "json"], sar);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"]["allowed"], true, "{v}");
    assert_eq!(
        v["status"]["reason"],
        r#"RBAC: allowed by RoleBinding "bob-view/team" of ClusterRole "view" to User "bob""#
    );
    let err = bob.fails_stdin(&["create", "-f", "-"], sar);
    assert!(
        err.contains(r#"User "bob" cannot create resource "subjectaccessreviews" in API group "authorization.k8s.io" at the cluster scope"#),
        "{err}"
    );
}

#[test]
fn kubectl_create_role_and_bindings_grant_and_deleting_them_revokes() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let admin = cp.kubectl();
    setup_team(&admin);
    let carol = user(&cp, "carol", &[]);
    let err = carol.fails(&[
        "create",
        "configmap",
        "mine",
        "-n",
        "team",
        "--from-literal=a=b",
    ]);
    assert!(
        err.contains(r#"User "carol" cannot create resource "configmaps""#),
        "{err}"
    );
    assert!(!can_i(&carol, &["create", "configmaps", "-n", "team"]));

    admin.ok(&[
        "create",
        "role",
        "cm-writer",
        "--verb=create,get,list",
        "--resource=configmaps",
        "-n",
        "team",
    ]);
    admin.ok(&[
        "create",
        "rolebinding",
        "carol-cm",
        "--role=cm-writer",
        "--user=carol",
        "-n",
        "team",
    ]);
    // The grant applies to the very next request.
    carol.ok(&[
        "create",
        "configmap",
        "mine",
        "-n",
        "team",
        "--from-literal=a=b",
    ]);
    assert!(can_i(&carol, &["create", "configmaps", "-n", "team"]));
    assert!(!can_i(&carol, &["delete", "configmaps", "-n", "team"]));
    let role = admin.ok(&["get", "role", "cm-writer", "-n", "team", "-o", "json"]);
    let role: serde_json::Value = serde_json::from_str(&role).unwrap();
    assert_eq!(
        role["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "list"]}])
    );
    let table = admin.ok(&["get", "rolebinding", "-n", "team", "-o", "wide"]);
    assert!(
        table.contains("ROLE") && table.contains("Role/cm-writer") && table.contains("carol"),
        "{table}"
    );
    let table = admin.ok(&["get", "roles", "-n", "team"]);
    assert!(
        table.contains("CREATED AT") && table.contains("cm-writer"),
        "{table}"
    );

    // Cluster-wide: a ClusterRole for nodes, bound by a ClusterRoleBinding to a group.
    admin.ok(&[
        "create",
        "clusterrole",
        "node-reader",
        "--verb=get,list,watch",
        "--resource=nodes",
    ]);
    admin.ok(&[
        "create",
        "clusterrolebinding",
        "ops-nodes",
        "--clusterrole=node-reader",
        "--group=ops",
    ]);
    let olga = user(&cp, "olga", &["ops"]);
    olga.ok(&["get", "nodes"]);
    assert!(can_i(&olga, &["list", "nodes"]));
    assert!(!can_i(&olga, &["delete", "nodes"]));
    // A ClusterRole bound in one namespace grants there only.
    admin.ok(&[
        "create",
        "clusterrole",
        "log-reader",
        "--verb=get",
        "--resource=pods/log",
    ]);
    admin.ok(&[
        "create",
        "rolebinding",
        "olga-logs",
        "--clusterrole=log-reader",
        "--group=ops",
        "-n",
        "team",
    ]);
    assert!(can_i(
        &olga,
        &["get", "pods", "--subresource=log", "-n", "team"]
    ));
    assert!(!can_i(
        &olga,
        &["get", "pods", "--subresource=log", "-n", "default"]
    ));
    assert!(!can_i(&olga, &["get", "pods", "-n", "team"]));
    // resourceNames narrow a rule to named objects.
    admin.ok(&[
        "create",
        "role",
        "one-cm",
        "--verb=get,update",
        "--resource=configmaps",
        "--resource-name=settings",
        "-n",
        "team",
    ]);
    admin.ok(&[
        "create",
        "rolebinding",
        "olga-one",
        "--role=one-cm",
        "--user=olga",
        "-n",
        "team",
    ]);
    olga.ok(&["get", "configmap", "settings", "-n", "team"]);
    let err = olga.fails(&["get", "configmap", "mine", "-n", "team"]);
    assert!(
        err.contains(
            r#"configmaps "mine" is forbidden: User "olga" cannot get resource "configmaps""#
        ),
        "{err}"
    );
    // Deleting a binding revokes at once.
    admin.ok(&["delete", "rolebinding", "carol-cm", "-n", "team"]);
    let err = carol.fails(&["get", "configmap", "mine", "-n", "team"]);
    assert!(err.contains("Forbidden"), "{err}");
    admin.ok(&["delete", "clusterrolebinding", "ops-nodes"]);
    assert!(!can_i(&olga, &["list", "nodes"]));

    // A binding to a role that does not exist grants nothing and says so.
    admin.ok(&[
        "create",
        "rolebinding",
        "dangling",
        "--role=nope",
        "--user=carol",
        "-n",
        "team",
    ]);
    let err = carol.fails(&["get", "configmap", "mine", "-n", "team"]);
    assert!(
        err.contains(r#": RBAC: role.rbac.authorization.k8s.io "nope" not found"#),
        "{err}"
    );
    // Invalid rules and roleRef changes are refused like kube-apiserver does.
    let bad = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: bad, namespace: team}\nrules:\n- apiGroups: ['']\n  resources: [pods]\n  verbs: []\n";
    let err = admin.fails_stdin(&["create", "-f", "-"], bad);
    assert!(
        err.contains("rules[0].verbs: Required value: verbs must contain at least one value"),
        "{err}"
    );
    let err = admin.fails(&[
        "patch",
        "rolebinding",
        "olga-one",
        "-n",
        "team",
        "--type=merge",
        "-p",
        r#"{"roleRef":{"name":"cm-writer"}}"#,
    ]);
    assert!(err.contains("cannot change roleRef"), "{err}");
}

#[test]
fn escalation_is_refused_unless_held_bound_or_escalate() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let admin = cp.kubectl();
    setup_team(&admin);
    // dana administers namespace team (the aggregated admin role: roles and rolebindings).
    admin.ok(&[
        "create",
        "rolebinding",
        "dana-admin",
        "--clusterrole=admin",
        "--user=dana",
        "-n",
        "team",
    ]);
    let dana = user(&cp, "dana", &[]);

    // What she holds she may grant.
    dana.ok(&[
        "create",
        "role",
        "cm-reader",
        "--verb=get,list",
        "--resource=configmaps",
        "-n",
        "team",
    ]);
    dana.ok(&[
        "create",
        "rolebinding",
        "erin-cm",
        "--role=cm-reader",
        "--user=erin",
        "-n",
        "team",
    ]);
    dana.ok(&[
        "create",
        "rolebinding",
        "erin-view",
        "--clusterrole=view",
        "--user=erin",
        "-n",
        "team",
    ]);
    user(&cp, "erin", &[]).ok(&["get", "configmap", "settings", "-n", "team"]);

    // What she does not hold she may not.
    let err = dana.fails(&[
        "create",
        "role",
        "node-reader",
        "--verb=get",
        "--resource=nodes",
        "-n",
        "team",
    ]);
    assert!(
        err.contains("Error from server (Forbidden): roles.rbac.authorization.k8s.io \"node-reader\" is forbidden: user \"dana\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"nodes\"], Verbs:[\"get\"]}"),
        "{err}"
    );
    let err = dana.fails(&[
        "create",
        "rolebinding",
        "erin-root",
        "--clusterrole=cluster-admin",
        "--user=erin",
        "-n",
        "team",
    ]);
    assert!(
        err.contains("rolebindings.rbac.authorization.k8s.io \"erin-root\" is forbidden: user \"dana\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}\n{NonResourceURLs:[\"*\"], Verbs:[\"*\"]}"),
        "{err}"
    );
    // Editing an existing role into more than she holds is an escalation too.
    let err = dana.fails(&["patch", "role", "cm-reader", "-n", "team", "--type=json", "-p", r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["nodes"],"verbs":["list"]}}]"#]);
    assert!(
        err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    // Another namespace is not hers at all.
    let err = dana.fails(&[
        "create",
        "role",
        "x",
        "--verb=get",
        "--resource=pods",
        "-n",
        "default",
    ]);
    assert!(err.contains(r#"User "dana" cannot create resource "roles" in API group "rbac.authorization.k8s.io" in the namespace "default""#), "{err}");
    // Cluster roles are beyond her, and so is the aggregation rule for a cluster admin's peer.
    let err = dana.fails(&[
        "create",
        "clusterrole",
        "x",
        "--verb=get",
        "--resource=pods",
    ]);
    assert!(
        err.contains("cannot create resource \"clusterroles\""),
        "{err}"
    );

    // `escalate` on roles lets her write any role; `bind` on a ClusterRole lets her bind it.
    admin.ok(&[
        "create",
        "role",
        "escalator",
        "--verb=escalate",
        "--resource=roles.rbac.authorization.k8s.io",
        "-n",
        "team",
    ]);
    admin.ok(&[
        "create",
        "rolebinding",
        "dana-escalate",
        "--role=escalator",
        "--user=dana",
        "-n",
        "team",
    ]);
    dana.ok(&[
        "create",
        "role",
        "node-reader",
        "--verb=get",
        "--resource=nodes",
        "-n",
        "team",
    ]);
    admin.ok(&[
        "create",
        "clusterrole",
        "binder",
        "--verb=bind",
        "--resource=clusterroles.rbac.authorization.k8s.io",
        "--resource-name=cluster-admin",
    ]);
    admin.ok(&[
        "create",
        "rolebinding",
        "dana-bind",
        "--clusterrole=binder",
        "--user=dana",
        "-n",
        "team",
    ]);
    dana.ok(&[
        "create",
        "rolebinding",
        "erin-root",
        "--clusterrole=cluster-admin",
        "--user=erin",
        "-n",
        "team",
    ]);
    // ...only the one she may bind.
    let err = dana.fails(&[
        "create",
        "rolebinding",
        "erin-node",
        "--clusterrole=system:node",
        "--user=erin",
        "-n",
        "team",
    ]);
    assert!(
        err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );

    // Aggregation takes cluster-admin powers.
    admin.ok(&[
        "create",
        "clusterrole",
        "cr-writer",
        "--verb=create,update,patch,get",
        "--resource=clusterroles.rbac.authorization.k8s.io",
    ]);
    admin.ok(&[
        "create",
        "clusterrolebinding",
        "dana-cr",
        "--clusterrole=cr-writer",
        "--user=dana",
    ]);
    let agg = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: gather}\naggregationRule:\n  clusterRoleSelectors:\n  - matchLabels: {gather: 'yes'}\n";
    let err = dana.fails_stdin(&["create", "-f", "-"], agg);
    assert!(
        err.contains(r#"clusterroles.rbac.authorization.k8s.io "gather" is forbidden: must have cluster-admin privileges to use the aggregationRule"#),
        "{err}"
    );
    admin.ok_stdin(&["create", "-f", "-"], agg);
}

#[test]
fn impersonation_needs_the_impersonate_verb() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let admin = cp.kubectl();
    setup_team(&admin);
    admin.ok(&[
        "create",
        "rolebinding",
        "carol-edit",
        "--clusterrole=edit",
        "--user=carol",
        "-n",
        "team",
    ]);
    let bob = user(&cp, "bob", &[]);
    // kubectl reads discovery first; a cached copy (as any user of the cluster has) lets the
    // refusal of the request itself come back with its message.
    bob.ok(&["api-resources"]);
    let err = bob.fails(&["get", "configmaps", "-n", "team", "--as=carol"]);
    assert!(
        err.contains(r#"Error from server (Forbidden): users "carol" is forbidden: User "bob" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        "{err}"
    );
    admin.ok(&[
        "create",
        "clusterrole",
        "impersonate-carol",
        "--verb=impersonate",
        "--resource=users",
        "--resource-name=carol",
    ]);
    admin.ok(&[
        "create",
        "clusterrolebinding",
        "bob-as-carol",
        "--clusterrole=impersonate-carol",
        "--user=bob",
    ]);
    // Now bob acts as carol, with carol's permissions (not his own, not more).
    assert!(bob
        .ok(&[
            "get",
            "configmaps",
            "-n",
            "team",
            "--as=carol",
            "-o",
            "name"
        ])
        .contains("settings"));
    bob.ok(&[
        "create",
        "configmap",
        "by-carol",
        "-n",
        "team",
        "--from-literal=a=b",
        "--as=carol",
    ]);
    let err = bob.fails(&["get", "nodes", "--as=carol"]);
    assert!(
        err.contains(r#"nodes is forbidden: User "carol" cannot list resource "nodes""#),
        "{err}"
    );
    let who = bob.ok(&["auth", "whoami", "--as=carol"]);
    assert!(
        who.contains("carol") && who.contains("[system:authenticated]"),
        "{who}"
    );
    assert!(can_i(
        &bob,
        &["create", "configmaps", "-n", "team", "--as=carol"]
    ));
    // Each impersonated attribute needs its own grant: a group, another user.
    let err = bob.fails(&[
        "get",
        "configmaps",
        "-n",
        "team",
        "--as=carol",
        "--as-group=admins",
    ]);
    assert!(
        err.contains(r#"groups "admins" is forbidden: User "bob" cannot impersonate resource "groups" in API group "" at the cluster scope"#),
        "{err}"
    );
    let err = bob.fails(&["get", "configmaps", "-n", "team", "--as=dave"]);
    assert!(err.contains(r#"users "dave" is forbidden"#), "{err}");
    // The admin impersonates a service account: it gets the service account groups.
    let who = admin.ok(&[
        "auth",
        "whoami",
        "--as=system:serviceaccount:team:bot",
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&who).unwrap();
    assert_eq!(
        v["status"]["userInfo"]["groups"],
        serde_json::json!([
            "system:serviceaccounts",
            "system:serviceaccounts:team",
            "system:authenticated"
        ])
    );
    admin.ok(&[
        "create",
        "rolebinding",
        "bot-view",
        "--clusterrole=view",
        "--serviceaccount=team:bot",
        "-n",
        "team",
    ]);
    admin.ok(&[
        "get",
        "pods",
        "-n",
        "team",
        "--as=system:serviceaccount:team:bot",
    ]);
    let err = admin.fails(&[
        "get",
        "secrets",
        "-n",
        "team",
        "--as=system:serviceaccount:team:bot",
    ]);
    assert!(
        err.contains(r#"User "system:serviceaccount:team:bot" cannot list resource "secrets""#),
        "{err}"
    );
    // A service account certificate gets the same groups as kube's token authenticator gives.
    let bot = user(&cp, "system:serviceaccount:team:bot", &[]);
    bot.ok(&["get", "pods", "-n", "team"]);
    admin.ok(&[
        "create",
        "clusterrolebinding",
        "all-sa-nodes",
        "--clusterrole=system:node-proxier",
        "--group=system:serviceaccounts:team",
    ]);
    bot.ok(&["get", "nodes"]);
}

#[test]
fn bootstrap_roles_are_served_reconciled_and_aggregated() {
    let mut cp = ControlPlane::start(Backend::Embedded).unwrap();
    let admin = cp.kubectl();
    let names = admin.ok(&["get", "clusterroles", "-o", "name"]);
    for r in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:basic-user",
        "system:discovery",
        "system:public-info-viewer",
        "system:kube-scheduler",
        "system:kube-controller-manager",
        "system:node-proxier",
        "system:monitoring",
        "system:aggregate-to-view",
    ] {
        assert!(
            names.contains(&format!("clusterrole.rbac.authorization.k8s.io/{r}\n")),
            "{r}: {names}"
        );
    }
    let bindings = admin.ok(&["get", "clusterrolebindings", "-o", "wide"]);
    assert!(
        bindings.contains("ClusterRole/cluster-admin") && bindings.contains("system:masters"),
        "{bindings}"
    );
    // view is aggregated from system:aggregate-to-view, edit holds view's rules too.
    let view: serde_json::Value =
        serde_json::from_str(&admin.ok(&["get", "clusterrole", "view", "-o", "json"])).unwrap();
    assert_eq!(
        view["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"],
        "true"
    );
    assert!(
        view["rules"].as_array().is_some_and(|r| r.len() > 5),
        "{view}"
    );
    let edit = admin.ok(&["get", "clusterrole", "edit", "-o", "json"]);
    assert!(
        edit.contains("\"pods/log\"") && edit.contains("\"secrets\""),
        "{edit}"
    );
    // A new ClusterRole labelled for aggregation joins view (and so edit and admin).
    admin.ok_stdin(&["create", "-f", "-"], "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: widgets-view\n  labels: {rbac.authorization.k8s.io/aggregate-to-view: 'true'}\nrules:\n- apiGroups: [example.com]\n  resources: [widgets]\n  verbs: [get, list]\n");
    for role in ["view", "edit", "admin"] {
        eventually(&format!("{role} to aggregate widgets"), || {
            admin
                .ok(&["get", "clusterrole", role, "-o", "json"])
                .contains("widgets")
        });
    }

    // Administrators' edits: extra rules stay, removed bootstrap rules come back, and
    // autoupdate=false protects a role entirely.
    admin.ok(&["patch", "clusterrole", "system:basic-user", "--type=json", "-p", r#"[{"op":"replace","path":"/rules","value":[{"apiGroups":[""],"resources":["configmaps"],"verbs":["get"]}]}]"#]);
    admin.ok(&[
        "annotate",
        "clusterrole",
        "system:kube-dns",
        "--overwrite",
        "rbac.authorization.kubernetes.io/autoupdate=false",
    ]);
    admin.ok(&[
        "patch",
        "clusterrole",
        "system:kube-dns",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/rules","value":[]}]"#,
    ]);
    admin.ok(&["delete", "clusterrolebinding", "system:discovery"]);
    cp.restart().unwrap();
    let admin = cp.kubectl();
    let basic = admin.ok(&["get", "clusterrole", "system:basic-user", "-o", "json"]);
    assert!(
        basic.contains("configmaps")
            && basic.contains("selfsubjectaccessreviews")
            && basic.contains("selfsubjectreviews"),
        "{basic}"
    );
    let dns: serde_json::Value =
        serde_json::from_str(&admin.ok(&["get", "clusterrole", "system:kube-dns", "-o", "json"]))
            .unwrap();
    assert_eq!(dns["rules"], serde_json::json!([]), "{dns}");
    admin.ok(&["get", "clusterrolebinding", "system:discovery"]);
    // Discovery works for any authenticated user after the restart.
    user(&cp, "someone", &[]).ok(&["api-resources"]);
}

#[test]
fn non_resource_paths_and_anonymous_requests() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    pea_tests::privileged::require_program("curl");
    let ca = cp.data_dir.join("pki/ca.crt");
    let curl = |path: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
                ca.to_str().unwrap(),
                &format!("https://{}{path}", cp.addr),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // system:public-info-viewer lets anyone read health and version; everything else needs
    // credentials.
    for p in ["/healthz", "/livez", "/readyz", "/version"] {
        assert_eq!(curl(p), "200", "{p}");
    }
    for p in [
        "/api",
        "/apis",
        "/metrics",
        "/openapi/v2",
        "/api/v1/namespaces",
        "/nothing",
    ] {
        assert_eq!(curl(p), "401", "{p}");
    }
    let admin = cp.kubectl();
    let bob = user(&cp, "bob", &[]);
    let err = bob.fails(&["get", "--raw", "/metrics"]);
    assert!(
        err.contains(r#"User "bob" cannot get path "/metrics""#),
        "{err}"
    );
    let err = bob.fails(&["get", "--raw", "/healthz/etcd"]);
    assert!(
        err.contains(r#"User "bob" cannot get path "/healthz/etcd""#),
        "{err}"
    );
    // system:monitoring grants /metrics and the health details.
    let mon = user(&cp, "prom", &["system:monitoring"]);
    assert!(mon.ok(&["get", "--raw", "/metrics"]).contains("# TYPE"));
    // A non-resource rule with a * suffix.
    admin.ok(&[
        "create",
        "clusterrole",
        "health-reader",
        "--verb=get",
        "--non-resource-url=/healthz/*",
    ]);
    admin.ok(&[
        "create",
        "clusterrolebinding",
        "bob-health",
        "--clusterrole=health-reader",
        "--user=bob",
    ]);
    bob.ok(&["get", "--raw", "/healthz/etcd"]);
    assert!(can_i(&bob, &["get", "/healthz/anything"]));
    assert!(!can_i(&bob, &["post", "/healthz/anything"]));
}

#[test]
fn nodes_keep_the_node_authorizer_and_gain_rbac_grants() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let admin = cp.kubectl();
    let n1 = user(&cp, "system:node:n1", &["system:nodes"]);
    n1.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n",
    );
    let err = n1.fails(&["create", "configmap", "x", "--from-literal=a=b"]);
    assert!(err.contains(r#"User "system:node:n1" cannot create resource "configmaps" in API group "" in the namespace "default""#), "{err}");
    // Nodes answer can-i like anyone (their review is by the whole chain).
    assert!(can_i(&n1, &["get", "nodes"]));
    assert!(!can_i(&n1, &["create", "configmaps"]));
    let list = n1.run(&["auth", "can-i", "--list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("selfsubjectaccessreviews"));
    // RBAC grants to system:nodes come on top of the node authorizer.
    admin.ok(&[
        "create",
        "clusterrole",
        "cm-creator",
        "--verb=create",
        "--resource=configmaps",
    ]);
    admin.ok(&[
        "create",
        "clusterrolebinding",
        "nodes-cm",
        "--clusterrole=cm-creator",
        "--group=system:nodes",
    ]);
    n1.ok(&["create", "configmap", "x", "--from-literal=a=b"]);
}

#[test]
fn the_scheduler_runs_as_system_kube_scheduler_with_its_bootstrap_role() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let admin = cp.kubectl();
    // What pea-control's main does for its in-process scheduler.
    let kubeconfig = cp
        .running()
        .component_kubeconfig("scheduler.kubeconfig", "system:kube-scheduler", &[])
        .unwrap();
    let sched = Kubectl::new(&kubeconfig);
    let who = sched.ok(&["auth", "whoami"]);
    assert!(who.contains("system:kube-scheduler"), "{who}");
    let err = sched.fails(&["get", "secrets", "-A"]);
    assert!(
        err.contains(r#"User "system:kube-scheduler" cannot list resource "secrets""#),
        "{err}"
    );
    // The spawned scheduler's handle is what the block returns: it is aborted at the end.
    #[allow(clippy::async_yields_async)]
    let task = cp.block_on(async {
        let client = pea_scheduler::client_from_kubeconfig(&kubeconfig)
            .await
            .unwrap();
        tokio::spawn(pea_scheduler::run(
            client,
            pea_scheduler::SchedulerConfig::default(),
        ))
    });
    admin.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n",
    );
    let status = serde_json::json!({"status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "hollow",
            "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    admin.ok(&[
        "patch",
        "node",
        "n1",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
    admin.ok(&["run", "fits", "--image=busybox:1.36"]);
    admin.ok(&["run", "too-big", "--image=busybox:1.36", "--overrides",
        r#"{"spec":{"containers":[{"name":"too-big","image":"busybox:1.36","resources":{"requests":{"cpu":"100"}}}]}}"#]);
    // Binding, the Unschedulable condition (pods/status), events and its Lease all work
    // under the role.
    eventually("the pod to be bound", || {
        admin.ok(&["get", "pod", "fits", "-o", "jsonpath={.spec.nodeName}"]) == "n1"
    });
    eventually("the Unschedulable condition", || {
        admin.ok(&[
            "get",
            "pod",
            "too-big",
            "-o",
            "jsonpath={.status.conditions[0].reason}",
        ]) == "Unschedulable"
    });
    eventually("the Scheduled event", || {
        admin
            .ok(&["get", "events", "-o", "jsonpath={.items[*].reason}"])
            .contains("Scheduled")
    });
    assert!(admin
        .ok(&[
            "get",
            "lease",
            "kube-scheduler",
            "-n",
            "kube-system",
            "-o",
            "name"
        ])
        .contains("kube-scheduler"));
    task.abort();
}

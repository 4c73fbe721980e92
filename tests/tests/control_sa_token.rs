//! Service-account tokens with the real kubectl (1.32): `kubectl create token` (TokenRequest)
//! and the token as a bearer credential (`kubectl --token ... auth whoami`), RBAC applying to
//! the service account, refusals (tampered, expired, wrong audience, deleted bound pod or
//! service account), bound-object tokens, OIDC discovery, the node authorizer's rule for
//! tokens, and the ServiceAccount admission plugin.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use pea_control::serviceaccount::claims::Claims;
use pea_tests::control::{Backend, ControlPlane, Kubectl};
use serde_json::Value;

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

fn b64url(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn payload(token: &str) -> Value {
    serde_json::from_slice(&b64url(token.split('.').nth(1).unwrap())).unwrap()
}

/// `kubectl --token T ...` with a kubeconfig that has no credentials of its own.
fn with_token(anon: &Kubectl, token: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--token", token];
    all.extend_from_slice(args);
    anon.run(&all)
}

fn whoami(anon: &Kubectl, token: &str) -> Value {
    let out = with_token(anon, token, &["auth", "whoami", "-o", "json"]);
    assert!(
        out.status.success(),
        "whoami: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["status"]["userInfo"].clone()
}

fn refused(anon: &Kubectl, token: &str, why: &str) {
    let out = with_token(anon, token, &["auth", "whoami"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{why}: token accepted");
    assert!(err.contains("Unauthorized"), "{why}: {err}");
}

/// A deletion ends a token within the 10 s kube caches successful token checks for (the
/// token was used just before, so its success may be cached): refused by 12 s.
fn refused_within_cache_ttl(anon: &Kubectl, token: &str, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let out = with_token(anon, token, &["auth", "whoami"]);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("Unauthorized"), "{why}: {err}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{why}: still accepted 12 s after the deletion (the cache TTL is 10 s)"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn sa_uid(admin: &Kubectl, ns: &str, name: &str) -> String {
    admin.ok(&[
        "get",
        "sa",
        name,
        "-n",
        ns,
        "-o",
        "jsonpath={.metadata.uid}",
    ])
}

#[test]
fn create_token_authenticates_as_the_service_account_and_refusals_are_401() {
    let cp = ControlPlane::start_with(Backend::Embedded, |c| {
        c.service_accounts.max_token_expiration_secs = 7200;
        c.disable_admission_plugins.clear();
    })
    .unwrap();
    let admin = cp.kubectl();
    let anon = Kubectl::new(&cp.anonymous_kubeconfig().unwrap());
    admin.ok(&["create", "namespace", "team"]);
    admin.ok(&["create", "serviceaccount", "bot", "-n", "team"]);
    let uid = sa_uid(&admin, "team", "bot");

    // A token for the service account, and who it says the bearer is.
    let token = admin.ok(&["create", "token", "bot", "-n", "team"]);
    let token = token.trim();
    let claims = payload(token);
    assert_eq!(
        claims["iss"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(claims["sub"], "system:serviceaccount:team:bot");
    assert_eq!(
        claims["aud"][0],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    assert_eq!(
        claims["kubernetes.io"]["serviceaccount"]["uid"],
        uid.as_str()
    );
    let who = whoami(&anon, token);
    assert_eq!(who["username"], "system:serviceaccount:team:bot");
    assert_eq!(who["uid"], uid.as_str());
    assert_eq!(
        who["groups"],
        serde_json::json!([
            "system:serviceaccounts",
            "system:serviceaccounts:team",
            "system:authenticated"
        ])
    );
    let credential = who["extra"]["authentication.kubernetes.io/credential-id"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        credential,
        format!("JTI={}", claims["jti"].as_str().unwrap())
    );

    // RBAC applies to it: nothing until a binding names the service account.
    let out = with_token(&anon, token, &["get", "configmaps", "-n", "team"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"User "system:serviceaccount:team:bot" cannot list resource "configmaps""#),
        "{err}"
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
    eventually("the binding to apply", || {
        with_token(&anon, token, &["get", "configmaps", "-n", "team"])
            .status
            .success()
    });

    // OIDC discovery: allowed to service accounts, its keys verify the token's kid.
    let out = with_token(
        &anon,
        token,
        &["get", "--raw", "/.well-known/openid-configuration"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conf: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(conf["issuer"], claims["iss"]);
    assert!(conf["jwks_uri"]
        .as_str()
        .unwrap()
        .ends_with("/openid/v1/jwks"));
    assert_eq!(conf["id_token_signing_alg_values_supported"][0], "ES256");
    let out = with_token(&anon, token, &["get", "--raw", "/openid/v1/jwks"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jwks: Value = serde_json::from_slice(&out.stdout).unwrap();
    let header: Value = serde_json::from_slice(&b64url(token.split('.').next().unwrap())).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert!(!anon
        .run(&["get", "--raw", "/openid/v1/jwks"])
        .status
        .success());

    // Tampered: the payload of another account under the same signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let mut forged = claims.clone();
    forged["sub"] = "system:serviceaccount:kube-system:admin".into();
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&forged).unwrap());
    refused(&anon, &parts.join("."), "tampered payload");
    let mut sig = token.to_string();
    let last = sig.pop().unwrap();
    sig.push(if last == 'A' { 'B' } else { 'A' });
    refused(&anon, &sig, "tampered signature");

    // Expired: the same claims, signed by the server's key, two minutes past their end
    // (beyond the one-minute leeway).
    let sa = cp.api().service_accounts.clone().unwrap();
    let mut old: Claims = serde_json::from_value(claims.clone()).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    old.iat = now - 4000;
    old.nbf = now - 4000;
    old.exp = now - 120;
    let expired = pea_control::serviceaccount::jwt::sign(&sa.signing, &old).unwrap();
    refused(&anon, &expired, "expired");
    // Not yet valid.
    let mut early = old.clone();
    early.nbf = now + 600;
    early.iat = now;
    early.exp = now + 4000;
    refused(
        &anon,
        &pea_control::serviceaccount::jwt::sign(&sa.signing, &early).unwrap(),
        "not valid yet",
    );

    // Wrong audience.
    let other = admin.ok(&[
        "create",
        "token",
        "bot",
        "-n",
        "team",
        "--audience",
        "vault",
    ]);
    assert_eq!(payload(other.trim())["aud"][0], "vault");
    refused(&anon, other.trim(), "wrong audience");

    // Durations: capped by the max expiration, refused under ten minutes.
    let long = admin.ok(&["create", "token", "bot", "-n", "team", "--duration", "48h"]);
    let c = payload(long.trim());
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        7200
    );
    let err = admin.fails(&["create", "token", "bot", "-n", "team", "--duration", "5m"]);
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );
    let err = admin.fails(&["create", "token", "ghost", "-n", "team"]);
    assert!(
        err.contains(r#"serviceaccounts "ghost" not found"#),
        "{err}"
    );

    // A deleted service account's tokens stop working.
    admin.ok(&["create", "serviceaccount", "temp", "-n", "team"]);
    let temp = admin.ok(&["create", "token", "temp", "-n", "team"]);
    assert_eq!(
        whoami(&anon, temp.trim())["username"],
        "system:serviceaccount:team:temp"
    );
    admin.ok(&["delete", "serviceaccount", "temp", "-n", "team"]);
    refused_within_cache_ttl(&anon, temp.trim(), "deleted service account");
    // ... also when one of the same name comes back (another uid).
    admin.ok(&["create", "serviceaccount", "temp", "-n", "team"]);
    refused(&anon, temp.trim(), "recreated service account");
}

#[test]
fn bound_tokens_follow_their_pod_and_nodes_get_tokens_only_for_their_pods() {
    let cp = ControlPlane::start_with(Backend::Embedded, |c| c.disable_admission_plugins.clear())
        .unwrap();
    let admin = cp.kubectl();
    let anon = Kubectl::new(&cp.anonymous_kubeconfig().unwrap());
    admin.ok(&["create", "namespace", "team"]);
    admin.ok(&["create", "serviceaccount", "bot", "-n", "team"]);
    let pod = |name: &str, node: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: team}}\nspec:\n  serviceAccountName: bot\n  nodeName: {node}\n  containers: [{{name: c, image: busybox}}]\n"
        )
    };
    admin.ok_stdin(&["create", "-f", "-"], &pod("p1", "n1"));
    admin.ok_stdin(&["create", "-f", "-"], &pod("p2", "n2"));
    let p1_uid = admin.ok(&[
        "get",
        "pod",
        "p1",
        "-n",
        "team",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);

    let bound = admin.ok(&[
        "create",
        "token",
        "bot",
        "-n",
        "team",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "p1",
    ]);
    let bound = bound.trim();
    assert_eq!(
        payload(bound)["kubernetes.io"]["pod"]["uid"],
        p1_uid.as_str()
    );
    let who = whoami(&anon, bound);
    assert_eq!(
        who["extra"]["authentication.kubernetes.io/pod-name"][0],
        "p1"
    );
    assert_eq!(
        who["extra"]["authentication.kubernetes.io/pod-uid"][0],
        p1_uid.as_str()
    );
    // A wrong uid, a missing pod, an unsupported kind.
    let err = admin.fails(&[
        "create",
        "token",
        "bot",
        "-n",
        "team",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "p1",
        "--bound-object-uid",
        "00000000-0000-0000-0000-000000000000",
    ]);
    assert!(err.contains("does not match the UID in record"), "{err}");
    let err = admin.fails(&[
        "create",
        "token",
        "bot",
        "-n",
        "team",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "nope",
    ]);
    assert!(err.contains(r#"pods "nope" not found"#), "{err}");

    // The node authorizer: n1 may get a token for p1's service account bound to p1, not to
    // p2 (on n2), and not an unbound one.
    let n1 = Kubectl::new(
        &cp.kubeconfig_for("system:node:n1", &["system:nodes"])
            .unwrap(),
    );
    let for_pod = |k: &Kubectl, pod: &str| {
        k.run(&[
            "create",
            "token",
            "bot",
            "-n",
            "team",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            pod,
        ])
    };
    assert!(for_pod(&n1, "p1").status.success());
    let out = for_pod(&n1, "p2");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forbidden"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = n1.fails(&["create", "token", "bot", "-n", "team"]);
    assert!(err.contains("forbidden"), "{err}");

    // Deleting the pod ends its tokens.
    admin.ok(&[
        "delete",
        "pod",
        "p1",
        "-n",
        "team",
        "--grace-period=0",
        "--force",
    ]);
    eventually("the pod to go", || {
        !admin
            .run(&["get", "pod", "p1", "-n", "team"])
            .status
            .success()
    });
    refused_within_cache_ttl(&anon, bound, "deleted bound pod");
}

fn pod_json(admin: &Kubectl, ns: &str, name: &str) -> Value {
    serde_json::from_str(&admin.ok(&["get", "pod", name, "-n", ns, "-o", "json"])).unwrap()
}

#[test]
fn pod_admission_mounts_the_token_volume_and_refuses_missing_service_accounts() {
    let cp = ControlPlane::start_with(Backend::Embedded, |c| c.disable_admission_plugins.clear())
        .unwrap();
    let admin = cp.kubectl();
    admin.ok(&["create", "namespace", "adm"]);
    let pod = |name: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: adm}}\nspec:\n{extra}  initContainers: [{{name: i, image: busybox}}]\n  containers: [{{name: c, image: busybox}}, {{name: d, image: busybox, volumeMounts: [{{name: own, mountPath: /var/run/secrets/kubernetes.io/serviceaccount}}]}}]\n  volumes: [{{name: own, emptyDir: {{}}}}]\n"
        )
    };
    // No `default` service account yet (no controller runs here): kube's refusal.
    let err = admin.fails_stdin(&["create", "-f", "-"], &pod("p0", ""));
    assert!(
        err.contains(r#"pods "p0" is forbidden: error looking up service account adm/default: serviceaccount "default" not found"#),
        "{err}"
    );
    let err = admin.fails_stdin(
        &["create", "-f", "-"],
        &pod("p0", "  serviceAccountName: ghost\n"),
    );
    assert!(err.contains("adm/ghost"), "{err}");
    assert!(admin.run(&["get", "pod", "p0", "-n", "adm"]).status.code() != Some(0));

    admin.ok(&["create", "serviceaccount", "default", "-n", "adm"]);
    admin.ok_stdin(&["create", "-f", "-"], &pod("p1", ""));
    let p = pod_json(&admin, "adm", "p1");
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    let vols = p["spec"]["volumes"].as_array().unwrap();
    let token_vol = vols
        .iter()
        .find(|v| v["name"].as_str().unwrap().starts_with("kube-api-access-"))
        .expect("a kube-api-access volume");
    let vname = token_vol["name"].as_str().unwrap();
    assert_eq!(vname.len(), "kube-api-access-".len() + 5);
    let sources = &token_vol["projected"]["sources"];
    assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
    assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
    assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
    assert_eq!(
        sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    for (list, i) in [("initContainers", 0), ("containers", 0)] {
        let mounts = &p["spec"][list][i]["volumeMounts"];
        assert_eq!(mounts[0]["name"], vname, "{list}");
        assert_eq!(mounts[0]["readOnly"], true);
        assert_eq!(
            mounts[0]["mountPath"],
            "/var/run/secrets/kubernetes.io/serviceaccount"
        );
    }
    // A container with its own mount at that path keeps it alone.
    assert_eq!(
        p["spec"]["containers"][1]["volumeMounts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Server-side apply creates go through the plugin too.
    admin.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: ssa, namespace: adm}\nspec:\n  containers: [{name: c, image: busybox}]\n",
    );
    let p = pod_json(&admin, "adm", "ssa");
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    assert!(p["spec"]["volumes"][0]["name"]
        .as_str()
        .unwrap()
        .starts_with("kube-api-access-"));

    // automountServiceAccountToken: the pod's setting over the service account's.
    admin.ok_stdin(
        &["create", "-f", "-"],
        &pod("p2", "  automountServiceAccountToken: false\n"),
    );
    let p = pod_json(&admin, "adm", "p2");
    assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
    admin.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: quiet, namespace: adm}\nautomountServiceAccountToken: false\n",
    );
    admin.ok_stdin(
        &["create", "-f", "-"],
        &pod("p3", "  serviceAccountName: quiet\n"),
    );
    assert_eq!(
        pod_json(&admin, "adm", "p3")["spec"]["volumes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    admin.ok_stdin(
        &["create", "-f", "-"],
        &pod(
            "p4",
            "  serviceAccountName: quiet\n  automountServiceAccountToken: true\n",
        ),
    );
    assert_eq!(
        pod_json(&admin, "adm", "p4")["spec"]["volumes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Mirror pods are left alone (and may not name a service account).
    let mirror = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: m\n  namespace: adm\n  annotations: {kubernetes.io/config.mirror: abc}\nspec:\n  containers: [{name: c, image: busybox}]\n";
    admin.ok_stdin(&["create", "-f", "-"], mirror);
    let m = pod_json(&admin, "adm", "m");
    assert!(
        m["spec"]
            .get("volumes")
            .is_none_or(|v| v.as_array().unwrap().is_empty()),
        "{m}"
    );
    let err = admin.fails_stdin(
        &["create", "-f", "-"],
        &mirror
            .replace("name: m\n", "name: m2\n")
            .replace("spec:\n", "spec:\n  serviceAccountName: default\n"),
    );
    assert!(
        err.contains("a mirror pod may not reference service accounts"),
        "{err}"
    );
}

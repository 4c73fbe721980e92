//! Legacy Secret-based service-account tokens with the real kubectl 1.32: a Secret of type
//! `kubernetes.io/service-account-token` annotated with its account gets `token`, `ca.crt` and
//! `namespace` from pea-controllers' serviceaccount-token controller (signed with
//! pea-control's service-account key); the token authenticates as the account while the
//! Secret exists; a Secret for a missing account, and an account's Secrets when it is
//! deleted, are removed.

use std::time::{Duration, Instant};

use base64::Engine;
use pea_controllers::ControllersConfig;
use pea_tests::control::{Backend, ControlPlane, Kubectl};
use serde_json::Value;

/// Controllers on their own runtime; stopped on drop.
struct Controllers(Option<tokio::runtime::Runtime>);

impl Drop for Controllers {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// Only the serviceaccount-token controller (it runs whenever a key is given) with pea-control's
/// own service-account key and CA.
fn controllers(cp: &ControlPlane) -> Controllers {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("controllers runtime");
    let config = ControllersConfig {
        // Only the tokens controller: nothing else writes the Secrets this test watches.
        controllers: vec!["serviceaccount-token".into()],
        leader_elect: false,
        root_ca_pem: Some(cp.running().pki.ca.cert_pem.clone()),
        service_account_private_key_file: Some(cp.running().pki.dir.join("sa.key")),
        ..ControllersConfig::default()
    };
    let kubeconfig = cp.kubeconfig.clone();
    rt.spawn(async move {
        let clients = pea_controllers::clients_from_kubeconfig(&kubeconfig, false)
            .await
            .expect("clients");
        if let Err(e) = pea_controllers::run(clients, config).await {
            panic!("controllers stopped: {e}");
        }
    });
    Controllers(Some(rt))
}

/// Polls `f` for up to 20 s.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn secret_json(k: &Kubectl, name: &str) -> Option<Value> {
    let out = k.run(&["get", "secret", name, "-n", "team", "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn data(secret: &Value, key: &str) -> Option<String> {
    let raw = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .unwrap();
    Some(String::from_utf8(bytes).unwrap())
}

fn token_secret(name: &str, account: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: team\n  annotations:\n    kubernetes.io/service-account.name: {account}\ntype: kubernetes.io/service-account-token\n"
    )
}

fn whoami(anon: &Kubectl, token: &str) -> std::process::Output {
    anon.run(&["--token", token, "auth", "whoami", "-o", "json"])
}

#[test]
fn secret_based_tokens_are_filled_in_and_authenticate_while_the_secret_exists() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let admin = cp.kubectl();
    let anon = Kubectl::new(&cp.anonymous_kubeconfig().unwrap());
    let _controllers = controllers(&cp);
    admin.ok(&["create", "namespace", "team"]);
    admin.ok(&["create", "serviceaccount", "bot", "-n", "team"]);
    let uid = admin.ok(&[
        "get",
        "sa",
        "bot",
        "-n",
        "team",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    admin.ok(&[
        "create",
        "role",
        "pod-reader",
        "-n",
        "team",
        "--verb=get,list",
        "--resource=pods",
    ]);
    admin.ok(&[
        "create",
        "rolebinding",
        "bot-reads",
        "-n",
        "team",
        "--role=pod-reader",
        "--serviceaccount=team:bot",
    ]);

    admin.ok_stdin(&["apply", "-f", "-"], &token_secret("bot-token", "bot"));
    let secret = eventually("the token to be filled in", || {
        secret_json(&admin, "bot-token").filter(|s| data(s, "token").is_some())
    });
    let token = data(&secret, "token").unwrap();
    assert_eq!(data(&secret, "namespace").as_deref(), Some("team"));
    assert_eq!(
        data(&secret, "ca.crt").as_deref(),
        Some(cp.running().pki.ca.cert_pem.as_str())
    );
    assert_eq!(
        secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"],
        uid.as_str()
    );
    // kube's legacy claims.
    let payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["iss"], "kubernetes/serviceaccount");
    assert_eq!(payload["sub"], "system:serviceaccount:team:bot");
    assert_eq!(
        payload["kubernetes.io/serviceaccount/secret.name"],
        "bot-token"
    );
    assert_eq!(
        payload["kubernetes.io/serviceaccount/service-account.uid"],
        uid.as_str()
    );
    assert!(payload.get("exp").is_none(), "legacy tokens do not expire");

    // The token authenticates as the account and is authorized as it.
    let out = whoami(&anon, &token);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let who: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        who["status"]["userInfo"]["username"],
        "system:serviceaccount:team:bot"
    );
    assert!(who["status"]["userInfo"]["groups"]
        .as_array()
        .unwrap()
        .contains(&"system:serviceaccounts:team".into()));
    anon.ok(&["--token", &token, "get", "pods", "-n", "team"]);
    let e = anon.fails(&["--token", &token, "get", "secrets", "-n", "team"]);
    assert!(
        e.contains(r#"User "system:serviceaccount:team:bot" cannot list resource "secrets""#),
        "{e}"
    );

    // A token that is not the Secret's copy (same claims, another signature) is refused.
    let mut forged = token.clone();
    forged.push('A');
    let out = whoami(&anon, &forged);
    assert!(!out.status.success());

    // A Secret for an account that does not exist is removed by the controller.
    admin.ok_stdin(&["apply", "-f", "-"], &token_secret("ghost-token", "ghost"));
    eventually("the ghost's secret to go", || {
        secret_json(&admin, "ghost-token").is_none().then_some(())
    });

    // Deleting the Secret ends the token (within the 10 s the success may be cached).
    admin.ok(&["delete", "secret", "bot-token", "-n", "team"]);
    eventually("the token to be refused", || {
        let out = whoami(&anon, &token);
        (!out.status.success()).then(|| {
            assert!(String::from_utf8_lossy(&out.stderr).contains("Unauthorized"));
        })
    });

    // A new Secret gets a new token; deleting the account removes its Secrets.
    admin.ok_stdin(&["apply", "-f", "-"], &token_secret("bot-token-2", "bot"));
    eventually("the second token", || {
        secret_json(&admin, "bot-token-2").filter(|s| data(s, "token").is_some())
    });
    admin.ok(&["delete", "serviceaccount", "bot", "-n", "team"]);
    eventually("the account's secret to go", || {
        secret_json(&admin, "bot-token-2").is_none().then_some(())
    });
}

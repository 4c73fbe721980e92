//! Registry auth against real docker-registry: Bearer tokens from a token server (challenge →
//! token → retry, with scopes) and Basic auth from htpasswd; missing or wrong credentials give
//! errors that say so.

use pea_images::auth::Credentials;
use pea_images::NoProgress;
use pea_tests::fixtures::busybox::build_busybox_image;
use pea_tests::fixtures::registry::RegistryOptions;
use pea_tests::fixtures::{OciLayout, Registry};
use pea_tests::images::token_server::TokenServer;
use pea_tests::images::{client_config, open_store, push_with_creds, write_htpasswd};
use pea_tests::privileged::require_program;
use std::sync::atomic::Ordering;

fn creds(host: &str, user: &str, pass: &str) -> pea_images::ClientConfig {
    let mut cfg = client_config(&[host.to_string()]);
    cfg.credentials.insert(
        host.to_string(),
        Credentials::parse(&format!("{user}:{pass}")).unwrap(),
    );
    cfg
}

#[test]
fn bearer_token_auth_challenge_token_retry() {
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let tokens = TokenServer::start(tmp.path(), &[("alice", "wonderland")]).unwrap();
    let registry = Registry::start_with(&RegistryOptions {
        auth_yaml: Some(tokens.auth_yaml()),
        ..Default::default()
    })
    .unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    let info = build_busybox_image(&layout, "v1").unwrap();
    let host = registry.host();
    push_with_creds(
        &host,
        &layout.skopeo_ref("v1"),
        "team/bb:v1",
        "alice:wonderland",
    )
    .unwrap();
    let image = format!("{host}/team/bb:v1");

    // Anonymous: the token grants nothing, the registry refuses.
    let store = open_store(
        &tmp.path().join("s1"),
        client_config(std::slice::from_ref(&host)),
    );
    let err = store.pull(&image, &NoProgress).unwrap_err().to_string();
    assert!(
        err.contains("unauthorized") && err.contains("no credentials configured"),
        "{err}"
    );

    // Wrong password: the token server refuses.
    let store = open_store(&tmp.path().join("s2"), creds(&host, "alice", "nope"));
    let err = store.pull(&image, &NoProgress).unwrap_err().to_string();
    assert!(
        err.contains("token server") && err.contains("credentials refused"),
        "{err}"
    );
    assert!(tokens.refused.load(Ordering::SeqCst) >= 1);

    // Right password: one token for the repository scope, reused for every request.
    let before = tokens.issued.load(Ordering::SeqCst);
    let store = open_store(&tmp.path().join("s3"), creds(&host, "alice", "wonderland"));
    let report = store.pull(&image, &NoProgress).unwrap();
    assert_eq!(report.manifest_digest.to_string(), info.manifest_digest);
    assert_eq!(tokens.issued.load(Ordering::SeqCst) - before, 1);
    assert!(store.list().unwrap().len() == 1);
}

#[test]
fn basic_auth_from_htpasswd() {
    require_program("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let htpasswd = tmp.path().join("htpasswd");
    write_htpasswd(&htpasswd, "bob", "builder").unwrap();
    let registry = Registry::start_with(&RegistryOptions {
        htpasswd: Some(htpasswd),
        ..Default::default()
    })
    .unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout")).unwrap();
    build_busybox_image(&layout, "v1").unwrap();
    let host = registry.host();
    push_with_creds(&host, &layout.skopeo_ref("v1"), "bb:v1", "bob:builder").unwrap();
    let image = format!("{host}/bb:v1");

    let store = open_store(
        &tmp.path().join("s1"),
        client_config(std::slice::from_ref(&host)),
    );
    let err = store.pull(&image, &NoProgress).unwrap_err().to_string();
    assert!(
        err.contains("wants Basic credentials and none are configured"),
        "{err}"
    );
    let store = open_store(&tmp.path().join("s2"), creds(&host, "bob", "wrong"));
    let err = store.pull(&image, &NoProgress).unwrap_err().to_string();
    assert!(
        err.contains("credentials for") && err.contains("were refused"),
        "{err}"
    );
    let store = open_store(&tmp.path().join("s3"), creds(&host, "bob", "builder"));
    store.pull(&image, &NoProgress).unwrap();
}

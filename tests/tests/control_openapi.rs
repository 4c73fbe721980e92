//! `/openapi/v2` with real kubectl and curl: the swagger 2.0 JSON document (definitions from
//! the same k8s-openapi schemas as v3, tagged with x-kubernetes-group-version-kind), its
//! protobuf form read by kubectl's v2 explain, and 406 for clients taking neither.

use std::process::Command;

use pea_tests::control::{Backend, ControlPlane};
use serde_json::Value;

const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// GET /openapi/v2 with an Accept header: (status, body).
fn curl(cp: &ControlPlane, accept: &str) -> (u16, Vec<u8>) {
    pea_tests::privileged::require_program("curl");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cp.running().pki.ca.cert_pem).unwrap();
    let body = dir.path().join("body");
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&ca)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}", "-H"])
        .arg(format!(
            "Authorization: Bearer {}",
            cp.running().admin_token
        ))
        .arg("-H")
        .arg(format!("Accept: {accept}"))
        .arg(format!("https://{}/openapi/v2", cp.addr))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let code = String::from_utf8_lossy(&out.stdout).parse().unwrap();
    (code, std::fs::read(&body).unwrap())
}

#[test]
fn openapi_v2_is_served_as_json_and_refuses_protobuf_only_clients() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    let doc: Value = serde_json::from_str(&k.ok(&["get", "--raw", "/openapi/v2"])).unwrap();
    assert_eq!(doc["swagger"], "2.0");
    let defs = &doc["definitions"];
    for (name, kind) in [
        ("io.k8s.api.core.v1.Pod", "Pod"),
        ("io.k8s.api.apps.v1.Deployment", "Deployment"),
        ("io.k8s.api.batch.v1.CronJob", "CronJob"),
        ("io.k8s.api.core.v1.Service", "Service"),
    ] {
        assert_eq!(
            defs[name]["x-kubernetes-group-version-kind"][0]["kind"], kind,
            "{name}"
        );
    }
    assert_eq!(
        defs["io.k8s.api.core.v1.ServicePort"]["properties"]["nodePort"]["type"],
        "integer"
    );
    assert_eq!(
        doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["get"]["x-kubernetes-action"],
        "get"
    );
    assert!(!String::from_utf8_lossy(&serde_json::to_vec(&doc).unwrap())
        .contains("#/components/schemas/"));

    // The client's first acceptable type wins; neither JSON nor protobuf is 406.
    let (code, body) = curl(&cp, &format!("application/json, {PROTOBUF}"));
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["swagger"],
        "2.0"
    );
    let (code, body) = curl(&cp, PROTOBUF);
    assert_eq!(code, 200);
    // gnostic Document field 1 (swagger) comes first: tag 0x0a, length 3, "2.0".
    assert_eq!(
        &body[..5],
        b"\x0a\x032.0",
        "{:?}",
        &body[..16.min(body.len())]
    );
    let (code, body) = curl(&cp, "text/html");
    assert_eq!(code, 406);
    let status: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status["reason"], "NotAcceptable");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("served as application/json or application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
        "{status}"
    );

    // kubectl 1.32 reads v2 as protobuf (its v2 explain); the rest of it uses v3.
    let out = k.ok(&[
        "explain",
        "--output=plaintext-openapiv2",
        "pods.spec.containers.ports",
    ]);
    assert!(out.contains("RESOURCE: ports <[]Object>"), "{out}");
    assert!(out.contains("containerPort\t<integer> -required-"), "{out}");
    let out = k.ok(&[
        "explain",
        "--output=plaintext-openapiv2",
        "services.spec.ports.targetPort",
    ]);
    assert!(out.contains("FIELD:    targetPort <string>"), "{out}");
    let out = k.ok(&[
        "explain",
        "--output=plaintext-openapiv2",
        "deployments",
        "--recursive",
    ]);
    assert!(out.contains("VERSION:  apps/v1"), "{out}");
    assert!(out.contains("maxUnavailable\t<string>"), "{out}");
    let out = k.ok(&["explain", "pods.spec.restartPolicy"]);
    assert!(out.contains("FIELD: restartPolicy <string>"), "{out}");
    let out = k.ok_stdin(
        &["apply", "--validate=true", "--dry-run=server", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: v\ndata: {a: b}\n",
    );
    assert!(
        out.contains("configmap/v created (server dry run)"),
        "{out}"
    );
    let out = k.stdin_output(
        &["apply", "--validate=true", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: v\nbogus: 1\n",
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bogus"),
        "{out:?}"
    );
}

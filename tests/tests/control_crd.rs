//! CustomResourceDefinitions with the real kubectl 1.32: a CRD shaped like an operator's
//! (two versions, printer columns, status and scale subresources, defaults, patterns, bounds)
//! is applied; its objects are validated, defaulted, pruned, scaled, explained, served again
//! after a restart and deleted with the CRD. Hostile and clashing CRDs are refused.

use std::time::{Duration, Instant};

use pea_tests::control::{Backend, ControlPlane, Kubectl};

const CRONTAB_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
    categories: [all]
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
    subresources:
      status: {}
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: CronTab runs an image on a schedule.
        properties:
          spec:
            type: object
            description: The desired schedule.
            required: [cronSpec]
            properties:
              cronSpec:
                type: string
                description: A cron expression.
                pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'
              image:
                type: string
                maxLength: 64
              replicas:
                type: integer
                description: How many copies run at once.
                minimum: 1
                maximum: 10
                default: 1
              mode:
                type: string
                enum: [Fast, Slow]
                default: Slow
          status:
            type: object
            properties:
              replicas:
                type: integer
              selector:
                type: string
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
"#;

fn crontab(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: {name}\nspec:\n  cronSpec: \"*/5 * * * *\"\n  image: busybox{extra}\n"
    )
}

/// Polls `f` for up to 20 s.
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

fn condition(k: &Kubectl, crd: &str, ty: &str, field: &str) -> String {
    k.ok(&[
        "get",
        "crd",
        crd,
        "-o",
        &format!("jsonpath={{.status.conditions[?(@.type==\"{ty}\")].{field}}}"),
    ])
}

#[test]
fn operator_shaped_crd_is_served_validated_defaulted_pruned_scaled_and_explained() {
    let mut cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    k.ok_stdin(&["apply", "-f", "-"], CRONTAB_CRD);
    let crd = "crontabs.stable.example.com";
    assert_eq!(condition(&k, crd, "Established", "status"), "True");
    assert_eq!(condition(&k, crd, "NamesAccepted", "reason"), "NoConflicts");
    assert_eq!(
        k.ok(&["get", "crd", crd, "-o", "jsonpath={.status.storedVersions}"]),
        r#"["v1"]"#
    );
    assert_eq!(
        k.ok(&["get", "crd", crd, "-o", "jsonpath={.metadata.finalizers}"]),
        r#"["customresourcecleanup.apiextensions.k8s.io"]"#
    );

    // kubectl's default (strict) field validation refuses unknown fields...
    let strict = k.fails_stdin(&["apply", "-f", "-"], &crontab("nightly", "\n  bogus: 1"));
    assert!(strict.contains("unknown field \"spec.bogus\""), "{strict}");
    // ...and with --validate=warn they are pruned with a warning; defaults fill the rest.
    let out = k.stdin_output(
        &["apply", "--validate=warn", "-f", "-"],
        &crontab("nightly", "\n  bogus: 1"),
    );
    assert!(out.status.success(), "{out:?}");
    let warn = String::from_utf8_lossy(&out.stderr);
    // (kubectl shows the server's Warning header with single quotes.)
    assert!(warn.contains("unknown field \"spec.bogus\""), "{warn}");
    let spec = k.ok(&["get", "crontab", "nightly", "-o", "jsonpath={.spec}"]);
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    assert_eq!(spec["replicas"], 1, "{spec}");
    assert_eq!(spec["mode"], "Slow", "{spec}");
    assert!(spec.get("bogus").is_none(), "{spec}");

    // Refused with kube's wording.
    let bad = k.fails_stdin(
        &["apply", "-f", "-"],
        &crontab("bad", "\n  replicas: 20\n  mode: Medium"),
    );
    assert!(bad.contains("The CronTab \"bad\" is invalid"), "{bad}");
    assert!(
        bad.contains("spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10"),
        "{bad}"
    );
    assert!(
        bad.contains(
            "spec.mode: Unsupported value: \"Medium\": supported values: \"Fast\", \"Slow\""
        ),
        "{bad}"
    );
    let bad = k.fails_stdin(
        &["apply", "-f", "-"],
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: nocron\nspec:\n  image: x\n",
    );
    assert!(bad.contains("spec.cronSpec: Required value"), "{bad}");

    // Printer columns, short name, category all.
    let table = k.ok(&["get", "ct"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SPEC", "REPLICAS", "AGE"], "{table}");
    assert!(
        table.contains("nightly") && table.contains("*/5 * * * *"),
        "{table}"
    );
    let all = k.ok(&["get", "all"]);
    assert!(all.contains("crontab.stable.example.com/nightly"), "{all}");

    // Scale subresource; spec changes bump generation; /status ignores spec.
    k.ok(&["scale", "crontab", "nightly", "--replicas=3"]);
    assert_eq!(
        k.ok(&[
            "get",
            "crontab",
            "nightly",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation}"
        ]),
        "3 2"
    );
    let over = k.fails(&["scale", "crontab", "nightly", "--replicas=11"]);
    assert!(
        over.contains("should be less than or equal to 10"),
        "{over}"
    );
    k.ok(&[
        "patch",
        "crontab",
        "nightly",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":3,"selector":"app=nightly"},"spec":{"replicas":7}}"#,
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "crontab",
            "nightly",
            "-o",
            "jsonpath={.spec.replicas} {.status.replicas} {.metadata.generation}"
        ]),
        "3 3 2"
    );
    // The main resource does not write status where the subresource exists.
    k.ok(&[
        "patch",
        "crontab",
        "nightly",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":9}}"#,
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "crontab",
            "nightly",
            "-o",
            "jsonpath={.status.replicas}"
        ]),
        "3"
    );
    let smp = k.fails(&[
        "patch",
        "crontab",
        "nightly",
        "--type=strategic",
        "-p",
        r#"{"spec":{"image":"x"}}"#,
    ]);
    assert!(
        smp.contains("the body of the request was in an unknown format"),
        "{smp}"
    );

    // The other served version reads the same object (conversion None).
    assert_eq!(
        k.ok(&[
            "get",
            "crontabs.v1beta1.stable.example.com",
            "nightly",
            "-o",
            "jsonpath={.apiVersion} {.spec.replicas}"
        ]),
        "stable.example.com/v1beta1 3"
    );

    // Explain reads the published OpenAPI v3 schema.
    let explain = k.ok(&["explain", "crontab.spec"]);
    assert!(explain.contains("KIND:       CronTab"), "{explain}");
    assert!(
        explain.contains("replicas") && explain.contains("How many copies run at once."),
        "{explain}"
    );

    // Served again after a restart.
    cp.restart().unwrap();
    let k = cp.kubectl();
    assert_eq!(
        k.ok(&[
            "get",
            "crontab",
            "nightly",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "3"
    );

    // Server-side apply and deletecollection.
    k.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &crontab("weekly", "\n  mode: Fast"),
    );
    assert_eq!(
        k.ok(&[
            "get",
            "crontab",
            "weekly",
            "-o",
            "jsonpath={.spec.mode} {.spec.replicas}"
        ]),
        "Fast 1"
    );
    k.ok(&["delete", "crontabs", "--all"]);
    assert_eq!(k.ok(&["get", "crontabs", "-o", "name"]), "");

    // Deleting the CRD deletes its objects first, then the CRD; the resource is gone.
    k.ok_stdin(&["apply", "-f", "-"], &crontab("hourly", ""));
    k.ok(&["delete", "crd", crd, "--timeout=30s"]);
    eventually("the CRD to be gone", || {
        !k.run(&["get", "crd", crd]).status.success()
    });
    let api = cp.api();
    let left = cp
        .block_on(api.store.list(
            "/registry/stable.example.com/crontabs/",
            &Default::default(),
        ))
        .unwrap();
    assert!(left.items.is_empty(), "objects left: {}", left.items.len());
    // kubectl may still resolve the name from its discovery cache: then the server's 404.
    let gone = k.fails(&["get", "crontabs"]);
    assert!(
        gone.contains("the server doesn't have a resource type \"crontabs\"")
            || gone.contains("the server could not find the requested resource"),
        "{gone}"
    );
}

fn crd_yaml(group: &str, plural: &str, kind: &str, schema: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {plural}.{group}\nspec:\n  group: {group}\n  scope: Cluster\n  names:\n    plural: {plural}\n    kind: {kind}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n{schema}"
    )
}

const OBJECT: &str = "        type: object\n";

#[test]
fn bad_clashing_and_hostile_crds_are_refused_with_a_reason() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    // metadata.name must be plural.group.
    let wrong = crd_yaml("example.com", "widgets", "Widget", OBJECT)
        .replace("name: widgets.example.com", "name: gadgets.example.com");
    let e = k.fails_stdin(&["apply", "-f", "-"], &wrong);
    assert!(
        e.contains("metadata.name: Invalid value: \"gadgets.example.com\": must be spec.names.plural+\".\"+spec.group"),
        "{e}"
    );
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &crd_yaml("nodot", "widgets", "Widget", OBJECT),
    );
    assert!(
        e.contains("should be a domain with at least one dot"),
        "{e}"
    );
    let two = crd_yaml("example.com", "widgets", "Widget", OBJECT).replace(
        "    storage: true\n",
        "    storage: true\n  - name: v2\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n",
    );
    let e = k.fails_stdin(&["apply", "-f", "-"], &two);
    assert!(
        e.contains("must have exactly one version marked as storage version"),
        "{e}"
    );

    // A kind clashing with a built-in: stored, but names not accepted and not served.
    k.ok_stdin(
        &["apply", "-f", "-"],
        &crd_yaml("example.com", "pods", "Pod", OBJECT),
    );
    assert_eq!(
        condition(&k, "pods.example.com", "NamesAccepted", "status"),
        "False"
    );
    assert_eq!(
        condition(&k, "pods.example.com", "NamesAccepted", "reason"),
        "NameConflict"
    );
    assert_eq!(
        condition(&k, "pods.example.com", "Established", "status"),
        "False"
    );
    let e = k.fails(&["get", "pods.example.com"]);
    assert!(e.contains("doesn't have a resource type"), "{e}");
    // A second CRD taking the first one's singular name in the same group.
    k.ok_stdin(
        &["apply", "-f", "-"],
        &crd_yaml("example.com", "widgets", "Widget", OBJECT),
    );
    let clash = crd_yaml("example.com", "widgetz", "Widgetz", OBJECT).replace(
        "    kind: Widgetz\n",
        "    kind: Widgetz\n    singular: widgets\n",
    );
    k.ok_stdin(&["apply", "-f", "-"], &clash);
    assert_eq!(
        condition(&k, "widgetz.example.com", "NamesAccepted", "message"),
        "\"widgets\" is already in use"
    );
    k.ok(&["get", "widgets"]);

    // Hostile schemas: deep nesting, huge enums, unbounded regexes, CEL rules that don't compile.
    let mut deep = String::from("{type: string}");
    for _ in 0..40 {
        deep = format!("{{type: object, properties: {{a: {deep}}}}}");
    }
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &crd_yaml("example.com", "deeps", "Deep", &format!("        {deep}\n")),
    );
    assert!(e.contains("nests more than 32 levels"), "{e}");
    let values: Vec<String> = (0..3000).map(|i| format!("v{i}")).collect();
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &crd_yaml(
            "example.com",
            "enums",
            "Enum",
            &format!(
                "        type: object\n        properties:\n          a: {{type: string, enum: [{}]}}\n",
                values.join(",")
            ),
        ),
    );
    assert!(e.contains("more than 2048 enum values"), "{e}");
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &crd_yaml(
            "example.com",
            "regexes",
            "Regex",
            "        type: object\n        properties:\n          a: {type: string, pattern: '(a{1000}){1000}'}\n",
        ),
    );
    assert!(e.contains("must be a valid regular expression"), "{e}");
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &crd_yaml(
            "example.com",
            "cels",
            "Cel",
            "        type: object\n        x-kubernetes-validations:\n        - rule: \"self.a >\"\n",
        ),
    );
    assert!(
        e.contains("x-kubernetes-validations[0].rule: Invalid value: \"self.a >\": compilation failed: ERROR: <input>:1:"),
        "{e}"
    );
    // None of the refused CRDs was stored or served.
    let names = k.ok(&["get", "crd", "-o", "name"]);
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        [
            "customresourcedefinition.apiextensions.k8s.io/pods.example.com",
            "customresourcedefinition.apiextensions.k8s.io/widgets.example.com",
            "customresourcedefinition.apiextensions.k8s.io/widgetz.example.com",
        ]
    );
}

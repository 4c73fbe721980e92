//! CEL in pea-control with the real kubectl 1.32: CRD validation rules
//! (`x-kubernetes-validations`: rule, message, messageExpression, reason, fieldPath, transition
//! rules with `oldSelf`), refused rules at CRD create, and the runtime cost limit.

use pea_tests::control::{Backend, ControlPlane, Kubectl};

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "self.minReplicas <= self.replicas"
              message: "replicas should be greater than or equal to minReplicas"
            - rule: "self.replicas <= self.maxReplicas"
              messageExpression: "'replicas ' + string(self.replicas) + ' exceeds maxReplicas ' + string(self.maxReplicas)"
            - rule: "!has(self.image) || self.image.lowerAscii() == self.image"
              fieldPath: ".image"
              reason: FieldValueForbidden
              message: "image must be lower case"
            - rule: "self.tags.all(t, t.matches('^[a-z]+$')) && self.tags.exists_one(t, t == 'prod') || size(self.tags) == 0"
            properties:
              minReplicas: {type: integer}
              replicas: {type: integer}
              maxReplicas: {type: integer}
              image: {type: string}
              tags: {type: array, items: {type: string}, default: []}
              mode:
                type: string
                x-kubernetes-validations:
                - rule: "self == oldSelf"
                  message: "mode is immutable"
              numbers: {type: array, items: {type: integer}}
"#;

fn crontab(name: &str, spec: &str) -> String {
    format!("apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

fn setup() -> (ControlPlane, Kubectl) {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    k.ok_stdin(&["apply", "-f", "-"], CRD);
    (cp, k)
}

#[test]
fn crd_validation_rules_refuse_violations_with_kubes_wording() {
    let (_cp, k) = setup();
    let good = "  minReplicas: 1\n  replicas: 2\n  maxReplicas: 3\n  image: busybox\n  tags: [prod, web]\n  mode: fast\n";
    k.ok_stdin(&["apply", "-f", "-"], &crontab("good", good));

    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &crontab("low", "  minReplicas: 3\n  replicas: 2\n  maxReplicas: 5\n"),
    );
    assert!(
        e.contains("The CronTab \"low\" is invalid: spec: Invalid value: \"object\": replicas should be greater than or equal to minReplicas"),
        "{e}"
    );
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &crontab(
            "high",
            "  minReplicas: 1\n  replicas: 9\n  maxReplicas: 5\n",
        ),
    );
    assert!(
        e.contains("spec: Invalid value: \"object\": replicas 9 exceeds maxReplicas 5"),
        "{e}"
    );
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &crontab(
            "upper",
            "  minReplicas: 1\n  replicas: 1\n  maxReplicas: 5\n  image: BusyBox\n",
        ),
    );
    assert!(
        e.contains("spec.image: Forbidden: image must be lower case"),
        "{e}"
    );
    // No message: kube's "failed rule: <rule>".
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &crontab(
            "tags",
            "  minReplicas: 1\n  replicas: 1\n  maxReplicas: 5\n  tags: [Prod]\n",
        ),
    );
    assert!(
        e.contains(
            "spec: Invalid value: \"object\": failed rule: self.tags.all(t, t.matches('^[a-z]+$'))"
        ),
        "{e}"
    );
    // Several violations are all reported.
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &crontab(
            "both",
            "  minReplicas: 4\n  replicas: 3\n  maxReplicas: 2\n",
        ),
    );
    assert!(
        e.contains("replicas should be greater than or equal to minReplicas"),
        "{e}"
    );
    assert!(e.contains("replicas 3 exceeds maxReplicas 2"), "{e}");
    assert!(k.fails(&["get", "crontab", "low"]).contains("NotFound"));

    // Transition rule: only on update, with oldSelf the stored value.
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &crontab("good", &good.replace("mode: fast", "mode: slow")),
    );
    assert!(
        e.contains("spec.mode: Invalid value: \"string\": mode is immutable"),
        "{e}"
    );
    k.ok_stdin(
        &["apply", "-f", "-"],
        &crontab("good", &good.replace("replicas: 2", "replicas: 3")),
    );
    assert_eq!(
        k.ok(&["get", "crontab", "good", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );
    // Rules run on updates too.
    let e = k.fails(&[
        "patch",
        "crontab",
        "good",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":7}}"#,
    ]);
    assert!(e.contains("replicas 7 exceeds maxReplicas 3"), "{e}");
}

#[test]
fn bad_rules_are_refused_at_crd_create_and_hostile_ones_are_bounded() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    let with_rule = |rule: &str| {
        CRD.replace(
            "            - rule: \"self.minReplicas <= self.replicas\"",
            &format!("            - rule: {rule}\n            - rule: \"self.minReplicas <= self.replicas\""),
        )
    };
    let e = k.fails_stdin(&["apply", "-f", "-"], &with_rule("\"self.replicas <\""));
    assert!(e.contains("x-kubernetes-validations[0].rule: Invalid value: \"self.replicas <\": compilation failed: ERROR: <input>:1:"), "{e}");
    let e = k.fails_stdin(&["apply", "-f", "-"], &with_rule("\"other.replicas > 1\""));
    assert!(e.contains("compilation failed: ERROR: <input>:1:1: undeclared reference to 'other' (in container '')"), "{e}");
    let deep = format!("\"{}true{}\"", "(".repeat(500), ")".repeat(500));
    let e = k.fails_stdin(&["apply", "-f", "-"], &with_rule(&deep));
    assert!(
        e.contains("compilation failed") && e.contains("nests more than"),
        "{e}"
    );
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &CRD.replace("reason: FieldValueForbidden", "reason: Bogus"),
    );
    assert!(e.contains("reason: Unsupported value: \"Bogus\""), "{e}");
    assert!(k
        .fails(&["get", "crd", "crontabs.stable.example.com"])
        .contains("NotFound"));

    // A cubic rule over a large list stops at the cost limit with kube's wording, promptly.
    k.ok_stdin(
        &["apply", "-f", "-"],
        &with_rule("\"!has(self.numbers) || self.numbers.all(x, self.numbers.all(y, self.numbers.all(z, x + y + z >= 0)))\""),
    );
    let numbers: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    let spec = format!(
        "  minReplicas: 1\n  replicas: 1\n  maxReplicas: 1\n  numbers: [{}]\n",
        numbers.join(", ")
    );
    let started = std::time::Instant::now();
    let e = k.fails_stdin(&["apply", "-f", "-"], &crontab("costly", &spec));
    assert!(
        e.contains("call cost exceeds limit for rule")
            && e.contains("operation cancelled: actual cost limit exceeded"),
        "{e}"
    );
    eprintln!("costly rule refused in {:?}", started.elapsed());
    // The same rule over a short list passes.
    k.ok_stdin(
        &["apply", "-f", "-"],
        &crontab(
            "cheap",
            "  minReplicas: 1\n  replicas: 1\n  maxReplicas: 1\n  numbers: [1, 2, 3]\n",
        ),
    );
}

const POLICY: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: replica-limit
spec:
  failurePolicy: Fail
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - apiGroups: [apps]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [deployments]
  matchConditions:
  - name: not-exempt
    expression: "!has(object.metadata.labels) || !('exempt' in object.metadata.labels)"
  variables:
  - name: limit
    expression: "int(params.data.maxReplicas)"
  validations:
  - expression: "object.spec.replicas <= variables.limit"
    messageExpression: "'replicas ' + string(object.spec.replicas) + ' is more than ' + string(variables.limit) + ' in ' + namespaceObject.metadata.name"
    reason: Forbidden
  - expression: "object.metadata.name.startsWith('web')"
    message: "deployment names must start with web"
"#;

const BINDING: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: replica-limit-binding
spec:
  policyName: replica-limit
  validationActions: [ACTIONS]
  paramRef:
    name: limits
    parameterNotFoundAction: Deny
  matchResources:
    namespaceSelector:
      matchLabels: {policy: "on"}
"#;

fn deployment(name: &str, replicas: u32, labels: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: team\n  labels: {{app: web{labels}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers: [{{name: c, image: busybox}}]\n"
    )
}

#[test]
fn validating_admission_policy_denies_warns_and_uses_params() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    assert!(k
        .ok(&["api-resources", "--api-group=admissionregistration.k8s.io"])
        .contains("validatingadmissionpolicybindings"));
    k.ok(&["create", "namespace", "team"]);
    k.ok(&["label", "namespace", "team", "policy=on"]);
    k.ok(&["create", "namespace", "other"]);

    // Bad policies are refused with kube's wording.
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &POLICY.replace(
            "object.spec.replicas <= variables.limit",
            "object.spec.replicas <=",
        ),
    );
    assert!(e.contains("spec.validations[0].expression: Invalid value: \"object.spec.replicas <=\": compilation failed: ERROR: <input>:1:"), "{e}");
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &BINDING.replace("ACTIONS", "Deny, Warn"),
    );
    assert!(e.contains("must not contain both Deny and Warn"), "{e}");

    k.ok_stdin(&["apply", "-f", "-"], POLICY);
    k.ok_stdin(&["apply", "-f", "-"], &BINDING.replace("ACTIONS", "Deny"));

    // No params object yet: parameterNotFoundAction Deny.
    let e = k.fails_stdin(&["apply", "-f", "-"], &deployment("web", 2, ""));
    assert!(e.contains("ValidatingAdmissionPolicy 'replica-limit' with binding 'replica-limit-binding' denied request: failed to configure binding: no params found"), "{e}");
    k.ok(&[
        "create",
        "configmap",
        "limits",
        "-n",
        "team",
        "--from-literal=maxReplicas=3",
    ]);

    k.ok_stdin(&["apply", "-f", "-"], &deployment("web", 2, ""));
    let e = k.fails_stdin(&["apply", "-f", "-"], &deployment("web-big", 5, ""));
    assert!(
        e.contains("ValidatingAdmissionPolicy 'replica-limit' with binding 'replica-limit-binding' denied request: replicas 5 is more than 3 in team"),
        "{e}"
    );
    assert!(e.contains("Forbidden") || e.contains("forbidden"), "{e}");
    let e = k.fails_stdin(&["apply", "-f", "-"], &deployment("api", 1, ""));
    assert!(
        e.contains("denied request: deployment names must start with web"),
        "{e}"
    );
    // Updates are checked too (a patch of the deployment; kube's rule `deployments` does not
    // select the scale subresource, so `kubectl scale` is not this policy's business).
    let e = k.fails(&[
        "patch",
        "deployment",
        "web",
        "-n",
        "team",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":9}}"#,
    ]);
    assert!(
        e.contains("denied request: replicas 9 is more than 3 in team"),
        "{e}"
    );
    k.ok(&["scale", "deployment", "web", "-n", "team", "--replicas=9"]);
    // matchConditions exempt; the binding's namespaceSelector scopes it.
    k.ok_stdin(
        &["apply", "-f", "-"],
        &deployment("big-exempt", 8, ", exempt: \"yes\""),
    );
    k.ok_stdin(
        &["apply", "-f", "-"],
        &deployment("big", 8, "").replace("namespace: team", "namespace: other"),
    );

    // Warn instead of Deny: admitted with kube's warning.
    k.ok_stdin(&["apply", "-f", "-"], &BINDING.replace("ACTIONS", "Warn"));
    let out = k.stdin_output(&["apply", "-f", "-"], &deployment("web-warned", 6, ""));
    assert!(out.status.success(), "{out:?}");
    let warn = String::from_utf8_lossy(&out.stderr);
    assert!(
        warn.contains("Validation failed for ValidatingAdmissionPolicy 'replica-limit' with binding 'replica-limit-binding': replicas 6 is more than 3 in team"),
        "{warn}"
    );
}

const AUTHZ_POLICY: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: guarded
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: [v1]
      operations: [CREATE]
      resources: [configmaps]
  validations:
  - expression: "!has(object.metadata.labels) || !('sensitive' in object.metadata.labels) || authorizer.requestResource.check('approve').allowed()"
    message: "only approvers may create sensitive config maps"
    reason: Forbidden
  - expression: "object.metadata.name != 'probe-sa' || authorizer.serviceAccount(object.metadata.namespace, 'bot').group('').resource('secrets').namespace(object.metadata.namespace).check('list').allowed()"
    message: "bot cannot list secrets"
  - expression: "object.metadata.name != 'probe-path' || authorizer.path('/metrics').check('get').allowed()"
    message: "needs /metrics"
  - expression: "object.metadata.name != 'probe-sub' || authorizer.group('apps').resource('deployments').subresource('scale').namespace('team').name('web').check('update').allowed()"
    message: "cannot scale web"
  - expression: "object.metadata.name != 'probe-format' || !format.dns1035Label().validate(object.data.id).hasValue()"
    messageExpression: "'bad id: ' + format.dns1035Label().validate(object.data.id).value()[0]"
  auditAnnotations:
  - key: requester
    valueExpression: "object.metadata.name == 'probe-audit' ? string(1 / (size(object.metadata.name) - 11)) : 'created by ' + request.userInfo.username"
  - key: nothing
    valueExpression: "null"
"#;

const AUTHZ_BINDING: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: guarded-binding
spec:
  policyName: guarded
  validationActions: [Deny]
"#;

/// The `authorizer` variable checks the requester (and a named service account) with the
/// server's RBAC, `auditAnnotations` are validated and evaluated, and the format library
/// runs in policies — all through the real kubectl.
#[test]
fn validating_admission_policy_authorizer_audit_annotations_and_format() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let admin = cp.kubectl();
    admin.ok(&["create", "namespace", "team"]);
    admin.ok(&[
        "create",
        "role",
        "cm-writer",
        "-n",
        "team",
        "--verb=create,get,list",
        "--resource=configmaps",
    ]);
    admin.ok(&[
        "create",
        "rolebinding",
        "dev-cm",
        "-n",
        "team",
        "--role=cm-writer",
        "--user=dev",
    ]);
    let dev = Kubectl::new(&cp.kubeconfig_for("dev", &[]).unwrap());
    let cm = |k: &Kubectl, name: &str, extra: &[&str]| {
        let mut args = vec!["create", "configmap", name, "-n", "team"];
        args.extend_from_slice(extra);
        k.run(&args)
    };
    let err = |o: std::process::Output| String::from_utf8_lossy(&o.stderr).to_string();

    // Audit annotation keys: qualified names with the policy's prefix, unique.
    let e = admin.fails_stdin(
        &["apply", "-f", "-"],
        &AUTHZ_POLICY.replace("key: requester", "key: bad key!"),
    );
    assert!(
        e.contains(r#"spec.auditAnnotations[0].key: Invalid value: "guarded/bad key!""#),
        "{e}"
    );
    let e = admin.fails_stdin(
        &["apply", "-f", "-"],
        &AUTHZ_POLICY.replace("key: nothing", "key: requester"),
    );
    assert!(
        e.contains(r#"spec.auditAnnotations[1].key: Duplicate value: "requester""#),
        "{e}"
    );
    admin.ok_stdin(&["apply", "-f", "-"], AUTHZ_POLICY);
    admin.ok_stdin(&["apply", "-f", "-"], AUTHZ_BINDING);

    // The requester's own rights: `approve` on config maps (a custom verb) is needed for a
    // sensitive one.
    let out = cm(&dev, "plain", &[]);
    assert!(out.status.success(), "{}", err(out));
    let labelled = |name: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: team\n  labels: {{sensitive: \"yes\"}}\n")
    };
    let e = dev.fails_stdin(&["create", "-f", "-"], &labelled("s1"));
    assert!(
        e.contains("ValidatingAdmissionPolicy 'guarded' with binding 'guarded-binding' denied request: only approvers may create sensitive config maps"),
        "{e}"
    );
    admin.ok(&[
        "create",
        "role",
        "cm-approver",
        "-n",
        "team",
        "--verb=approve",
        "--resource=configmaps",
    ]);
    admin.ok(&[
        "create",
        "rolebinding",
        "dev-approve",
        "-n",
        "team",
        "--role=cm-approver",
        "--user=dev",
    ]);
    dev.ok_stdin(&["create", "-f", "-"], &labelled("s1"));

    // serviceAccount(ns, name) checks that account, not the requester (the admin here).
    admin.ok(&["create", "serviceaccount", "bot", "-n", "team"]);
    let e = err(cm(&admin, "probe-sa", &[]));
    assert!(e.contains("denied request: bot cannot list secrets"), "{e}");
    admin.ok(&[
        "create",
        "role",
        "secret-lister",
        "-n",
        "team",
        "--verb=list",
        "--resource=secrets",
    ]);
    admin.ok(&[
        "create",
        "rolebinding",
        "bot-secrets",
        "-n",
        "team",
        "--role=secret-lister",
        "--serviceaccount=team:bot",
    ]);
    let out = cm(&admin, "probe-sa", &[]);
    assert!(out.status.success(), "{}", err(out));

    // path(...) is a non-resource check; subresource(...) a scoped resource one.
    let e = err(cm(&dev, "probe-path", &[]));
    assert!(e.contains("denied request: needs /metrics"), "{e}");
    let out = cm(&admin, "probe-path", &[]);
    assert!(out.status.success(), "{}", err(out));
    let e = err(cm(&dev, "probe-sub", &[]));
    assert!(e.contains("denied request: cannot scale web"), "{e}");
    admin.ok(&[
        "create",
        "role",
        "scaler",
        "-n",
        "team",
        "--verb=update",
        "--resource=deployments.apps/scale",
        "--resource-name=web",
    ]);
    admin.ok(&[
        "create",
        "rolebinding",
        "dev-scaler",
        "-n",
        "team",
        "--role=scaler",
        "--user=dev",
    ]);
    let out = cm(&dev, "probe-sub", &[]);
    assert!(out.status.success(), "{}", err(out));

    // The format library, with kube's message.
    let e = err(cm(&dev, "probe-format", &["--from-literal=id=1abc"]));
    assert!(
        e.contains("denied request: bad id: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character"),
        "{e}"
    );
    let out = cm(&dev, "probe-format", &["--from-literal=id=abc-1"]);
    assert!(out.status.success(), "{}", err(out));

    // Audit annotations are evaluated on every matched request: one that fails to evaluate
    // fails the request under failurePolicy Fail.
    let e = err(cm(&dev, "probe-audit", &[]));
    assert!(
        e.contains("ValidatingAdmissionPolicy 'guarded' with binding 'guarded-binding' denied request: valueExpression")
            && e.contains("resulted in error"),
        "{e}"
    );
}

#[test]
fn webhook_match_conditions_are_compiled_and_checked() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    // A webhook that would fail every call (nothing listens) but whose matchConditions never
    // match except for one label: other requests pass, that one fails the closed way.
    let hook = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: conditional
webhooks:
- name: conditional.example.com
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 2
  clientConfig:
    url: https://127.0.0.1:1/validate
  rules:
  - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}
  matchConditions:
  - name: only-checked
    expression: "has(object.metadata.labels) && object.metadata.labels.check == 'yes' && request.operation == 'CREATE'"
"#;
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &hook.replace("request.operation == 'CREATE'", "request.operation =="),
    );
    assert!(
        e.contains("webhooks[0].matchConditions[0].expression: Invalid value:")
            && e.contains("compilation failed"),
        "{e}"
    );
    k.ok_stdin(&["apply", "-f", "-"], hook);
    k.ok(&["create", "configmap", "plain", "--from-literal=a=b"]);
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: checked\n  labels: {check: \"yes\"}\n",
    );
    assert!(
        e.contains("failed calling webhook \"conditional.example.com\""),
        "{e}"
    );
}

const NET_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: endpoints.net.example.com
spec:
  group: net.example.com
  scope: Namespaced
  names: {plural: endpoints, singular: endpoint, kind: Endpoint}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "isURL(self.url) && url(self.url).getScheme() == 'https'"
              message: "url must be an https URL"
            - rule: "cidr(self.subnet).containsIP(self.address)"
              messageExpression: "'address ' + self.address + ' is outside ' + self.subnet"
            - rule: "!ip(self.address).isLoopback()"
              message: "address must not be loopback"
            - rule: "quantity(self.memory).isLessThan(quantity('2Gi'))"
              message: "memory must be below 2Gi"
            properties:
              url: {type: string}
              subnet: {type: string}
              address: {type: string}
              memory:
                x-kubernetes-int-or-string: true
                anyOf: [{type: integer}, {type: string, pattern: '^[0-9]+(Mi|Gi)$'}]
"#;

#[test]
fn kube_url_ip_cidr_and_quantity_functions_in_crd_rules() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    k.ok_stdin(&["apply", "-f", "-"], NET_CRD);
    let ep = |name: &str, url: &str, subnet: &str, address: &str, memory: &str| {
        format!(
            "apiVersion: net.example.com/v1\nkind: Endpoint\nmetadata:\n  name: {name}\nspec:\n  url: {url}\n  subnet: {subnet}\n  address: {address}\n  memory: {memory}\n"
        )
    };
    k.ok_stdin(
        &["apply", "-f", "-"],
        &ep(
            "good",
            "https://svc.example:8443/x?y=1",
            "10.0.0.0/8",
            "10.2.3.4",
            "512Mi",
        ),
    );
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &ep(
            "http",
            "http://svc.example/",
            "10.0.0.0/8",
            "10.2.3.4",
            "1Gi",
        ),
    );
    assert!(
        e.contains("spec: Invalid value: \"object\": url must be an https URL"),
        "{e}"
    );
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &ep(
            "outside",
            "https://a.example/",
            "10.0.0.0/8",
            "192.168.1.1",
            "1Gi",
        ),
    );
    assert!(
        e.contains("address 192.168.1.1 is outside 10.0.0.0/8"),
        "{e}"
    );
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &ep(
            "loop",
            "https://a.example/",
            "127.0.0.0/8",
            "127.0.0.1",
            "1Gi",
        ),
    );
    assert!(e.contains("address must not be loopback"), "{e}");
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &ep("big", "https://a.example/", "10.0.0.0/8", "10.0.0.1", "4Gi"),
    );
    assert!(e.contains("memory must be below 2Gi"), "{e}");
    // The schema's anyOf: neither an integer nor a matching string.
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &ep("odd", "https://a.example/", "10.0.0.0/8", "10.0.0.1", "1GB"),
    );
    assert!(
        e.contains("spec.memory: Invalid value: \"\": \"spec.memory\" must validate at least one schema (anyOf)"),
        "{e}"
    );
    // A function error (not an IP) is reported against the rule, the object refused.
    let e = k.fails_stdin(
        &["apply", "-f", "-"],
        &ep("notip", "https://a.example/", "10.0.0.0/8", "nope", "1Gi"),
    );
    assert!(
        e.contains("IP Address \\\"nope\\\" parse error")
            || e.contains("IP Address \"nope\" parse error"),
        "{e}"
    );
    assert!(k.fails(&["get", "endpoint", "notip"]).contains("NotFound"));
}

//! Review of pea-control as a user drives it: the real kubectl (1.32) printing the listed kinds.

use pea_tests::control::{Backend, ControlPlane};

const OBJECTS: &str = r#"apiVersion: batch/v1
kind: CronJob
metadata: {name: cj}
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: h}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 5
  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ing}
spec:
  rules: [{host: a.example.com, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: svc, port: {number: 80}}}}]}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc-abc, labels: {kubernetes.io/service-name: svc}}
addressType: IPv4
endpoints: [{addresses: [10.0.0.1], conditions: {ready: true}}]
ports: [{name: http, port: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Event
metadata: {name: ev1}
involvedObject: {kind: Pod, name: p1, namespace: default}
reason: Started
message: hello
type: Normal
count: 1
source: {component: kubelet, host: n1}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: c, image: busybox}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ds}
spec:
  selector: {matchLabels: {app: ds}}
  template:
    metadata: {labels: {app: ds}}
    spec: {containers: [{name: c, image: busybox}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: j}
spec:
  template:
    spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: svc}
subsets: [{addresses: [{ip: 10.0.0.1}], ports: [{port: 8080}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: busybox}]}
---
apiVersion: v1
kind: Service
metadata: {name: svc}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: p1}
spec: {nodeName: n1, containers: [{name: c, image: busybox}]}
"#;

/// The header line and the first row, split on runs of 2+ spaces like kubectl's tabwriter.
fn header_and_row(table: &str, cell: &str) -> (Vec<String>, Vec<String>) {
    let split = |l: &str| -> Vec<String> {
        l.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut lines = table.lines();
    let header = split(lines.next().unwrap_or_default());
    // The first row with `cell`: a namespace also holds what the cluster made (`kubernetes`).
    let row = lines
        .map(split)
        .find(|r| r.iter().any(|c| c == cell))
        .unwrap_or_default();
    (header, row)
}

#[test]
fn kubectl_get_prints_kube_apiserver_columns_for_listed_kinds() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    k.ok_stdin(&["create", "-f", "-"], OBJECTS);
    for (args, header, row) in [
        (
            &["get", "events"][..],
            "LAST SEEN,TYPE,REASON,OBJECT,MESSAGE",
            &["Normal", "Started", "pod/p1", "hello"][..],
        ),
        (
            &["get", "events", "-o", "wide"][..],
            "LAST SEEN,TYPE,REASON,OBJECT,SUBOBJECT,SOURCE,MESSAGE,FIRST SEEN,COUNT,NAME",
            &["kubelet, n1", "ev1"][..],
        ),
        (
            &["get", "endpointslices"][..],
            "NAME,ADDRESSTYPE,PORTS,ENDPOINTS,AGE",
            &["svc-abc", "IPv4", "8080", "10.0.0.1"][..],
        ),
        (
            &["get", "hpa"][..],
            "NAME,REFERENCE,TARGETS,MINPODS,MAXPODS,REPLICAS,AGE",
            &["h", "Deployment/web", "cpu: <unknown>/50%", "1", "5", "0"][..],
        ),
        (
            &["get", "ingress"][..],
            "NAME,CLASS,HOSTS,ADDRESS,PORTS,AGE",
            &["ing", "<none>", "a.example.com", "80"][..],
        ),
        (
            &["get", "cronjobs", "-o", "wide"][..],
            "NAME,SCHEDULE,TIMEZONE,SUSPEND,ACTIVE,LAST SCHEDULE,AGE,CONTAINERS,IMAGES,SELECTOR",
            &["cj", "*/5 * * * *", "False", "<none>", "busybox"][..],
        ),
        (
            &["get", "statefulsets", "-o", "wide"][..],
            "NAME,READY,AGE,CONTAINERS,IMAGES",
            &["db", "0/1", "c", "busybox"][..],
        ),
        (
            &["get", "daemonsets"][..],
            "NAME,DESIRED,CURRENT,READY,UP-TO-DATE,AVAILABLE,NODE SELECTOR,AGE",
            &["ds", "<none>"][..],
        ),
        (
            &["get", "jobs"][..],
            "NAME,STATUS,COMPLETIONS,DURATION,AGE",
            &["j", "Running", "0/1"][..],
        ),
        (
            &["get", "deployments", "-o", "wide"][..],
            "NAME,READY,UP-TO-DATE,AVAILABLE,AGE,CONTAINERS,IMAGES,SELECTOR",
            &["web", "0/1", "c", "busybox", "app=web"][..],
        ),
        (
            &["get", "services", "-o", "wide"][..],
            "NAME,TYPE,CLUSTER-IP,EXTERNAL-IP,PORT(S),AGE,SELECTOR",
            &["svc", "ClusterIP", "<none>", "80/TCP", "app=web"][..],
        ),
        (
            &["get", "pods", "-o", "wide"][..],
            "NAME,READY,STATUS,RESTARTS,AGE,IP,NODE,NOMINATED NODE,READINESS GATES",
            &["p1", "0/1", "Pending", "n1", "<none>"][..],
        ),
        (
            &["get", "endpoints"][..],
            "NAME,ENDPOINTS,AGE",
            &["svc", "10.0.0.1:8080"][..],
        ),
    ] {
        let out = k.ok(args);
        let (h, r) = header_and_row(&out, row[0]);
        assert_eq!(h.join(","), header, "{args:?}:\n{out}");
        for cell in row {
            assert!(
                r.iter().any(|c| c == cell),
                "{args:?}: no cell {cell:?}:\n{out}"
            );
        }
    }
}

const APPLIED_DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: d5}
spec:
  replicas: 4
  selector: {matchLabels: {app: d5}}
  template:
    metadata: {labels: {app: d5}}
    spec: {containers: [{name: busybox, image: busybox}]}
";

/// kube-apiserver records the creator's fields, so server-side apply of a different value for a
/// field `kubectl create` set is a conflict until forced.
#[test]
fn created_fields_are_owned_so_server_side_apply_conflicts() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    k.ok(&["create", "deployment", "d5", "--image=busybox"]);
    let managers = k.ok(&[
        "get",
        "deployment",
        "d5",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert_eq!(managers, "kubectl-create");
    let conflict = k.stdin_output(&["apply", "--server-side", "-f", "-"], APPLIED_DEPLOYMENT);
    let err = String::from_utf8_lossy(&conflict.stderr);
    assert!(!conflict.status.success(), "{conflict:?}");
    assert!(
        err.contains("conflict with \"kubectl-create\"") && err.contains(".spec.replicas"),
        "{err}"
    );
    k.ok_stdin(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        APPLIED_DEPLOYMENT,
    );
    let replicas = k.ok(&["get", "deployment", "d5", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(replicas, "4");
    // A configmap created by kubectl create is owned the same way.
    k.ok(&["create", "configmap", "c1", "--from-literal=a=b"]);
    let fields = k.ok(&[
        "get",
        "configmap",
        "c1",
        "-o",
        "jsonpath={.metadata.managedFields[0].fieldsV1}",
    ]);
    assert!(fields.contains("f:a"), "{fields}");
}

/// Objects kube-apiserver refuses beyond the typed schema get a 422 naming each field.
#[test]
fn semantically_invalid_objects_are_refused_with_field_causes() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    for (body, fields) in [
        (
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"bad1"},"spec":{"replicas":-3,"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"x":"y"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}"#,
            &["spec.replicas", "spec.template.metadata.labels"][..],
        ),
        (
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bad2"},"spec":{"containers":[]}}"#,
            &["spec.containers"][..],
        ),
        (
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bad3"},"spec":{"containers":[{"name":"Bad_Name","ports":[{"containerPort":70000}]}]}}"#,
            &[
                "spec.containers[0].name",
                "spec.containers[0].image",
                "spec.containers[0].ports[0].containerPort",
            ][..],
        ),
        (
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"bad4"},"spec":{"ports":[{"port":70000}]}}"#,
            &["spec.ports[0].port"][..],
        ),
        (
            r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"bad5"},"spec":{"template":{"spec":{"restartPolicy":"Always","containers":[{"name":"c","image":"i"}]}}}}"#,
            &["spec.template.spec.restartPolicy"][..],
        ),
        (
            r#"{"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler","metadata":{"name":"bad6"},"spec":{"scaleTargetRef":{"kind":"Deployment","name":"d"},"minReplicas":3,"maxReplicas":2}}"#,
            &["spec.maxReplicas"][..],
        ),
    ] {
        let out = k.stdin_output(&["create", "-f", "-"], body);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{body}: {out:?}");
        assert!(err.contains("is invalid"), "{body}: {err}");
        for f in fields {
            assert!(err.contains(f), "{body}: no {f}: {err}");
        }
    }
    let err = k.fails(&[
        "create",
        "cronjob",
        "c",
        "--image=busybox",
        "--schedule=garbage",
    ]);
    assert!(
        err.contains("spec.schedule") && err.contains("garbage"),
        "{err}"
    );
    // Nothing invalid was stored; valid ones still are.
    for (kind, name) in [("deployment", "bad1"), ("pod", "bad3"), ("service", "bad4")] {
        assert!(
            k.fails(&["get", kind, name]).contains("NotFound"),
            "{kind}/{name}"
        );
    }
    k.ok(&[
        "create",
        "cronjob",
        "c",
        "--image=busybox",
        "--schedule=*/5 * * * *",
    ]);
    k.ok(&["create", "deployment", "d", "--image=busybox"]);
    k.ok(&["create", "job", "j", "--image=busybox"]);
    k.ok(&["create", "service", "clusterip", "s", "--tcp=80:8080"]);
}

const BOUND_POD: &str = "apiVersion: v1
kind: Pod
metadata: {name: bound}
spec: {nodeName: n1, containers: [{name: c, image: busybox}]}
";

/// A bound pod in graceful deletion waits for its kubelet: writes meanwhile (a status update,
/// a label) keep it, and only a delete with grace 0 removes it.
#[test]
fn terminating_pod_survives_updates_until_deleted_with_grace_zero() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    k.ok_stdin(&["create", "-f", "-"], BOUND_POD);
    k.ok(&["delete", "pod", "bound", "--wait=false"]);
    // Dated at its deadline, creation + the default 30 s grace (a little slack for the run).
    let times = k.ok(&[
        "get",
        "pod",
        "bound",
        "-o",
        "jsonpath={.metadata.creationTimestamp} {.metadata.deletionTimestamp}",
    ]);
    let (created, deleted) = times.split_once(' ').unwrap();
    let parse = |s: &str| pea_control::objects::parse_time(s).unwrap();
    let ahead = parse(deleted).duration_since(parse(created)).unwrap();
    assert!(ahead.as_secs() >= 29, "{times}");
    k.ok(&[
        "patch",
        "pod",
        "bound",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running"}}"#,
    ]);
    k.ok(&["label", "pod", "bound", "seen=yes"]);
    let pods = k.ok(&["get", "pods"]);
    assert!(
        pods.contains("bound") && pods.contains("Terminating"),
        "{pods}"
    );
    k.ok(&["delete", "pod", "bound", "--grace-period=0", "--force"]);
    assert!(k.fails(&["get", "pod", "bound"]).contains("NotFound"));
}

/// Updates may not change what kube-apiserver keeps immutable: a pod's spec beyond images (its
/// node above all), a workload's selector, a Job's template.
#[test]
fn updates_to_immutable_fields_are_refused() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    k.ok_stdin(&["create", "-f", "-"], BOUND_POD);
    let err = k.fails(&[
        "patch",
        "pod",
        "bound",
        "--type=merge",
        "-p",
        r#"{"spec":{"nodeName":"other"}}"#,
    ]);
    assert!(err.contains("pod updates may not change fields"), "{err}");
    k.ok(&["set", "image", "pod/bound", "c=busybox:1.37"]);
    k.ok(&["label", "pod", "bound", "x=y"]);
    let node = k.ok(&["get", "pod", "bound", "-o", "jsonpath={.spec.nodeName}"]);
    assert_eq!(node, "n1");
    k.ok(&["create", "deployment", "d", "--image=busybox"]);
    let err = k.fails(&[
        "patch",
        "deployment",
        "d",
        "--type=merge",
        "-p",
        r#"{"spec":{"selector":{"matchLabels":{"app":"d","x":"y"}},"template":{"metadata":{"labels":{"app":"d","x":"y"}}}}}"#,
    ]);
    assert!(
        err.contains("spec.selector") && err.contains("field is immutable"),
        "{err}"
    );
    k.ok(&["scale", "deployment", "d", "--replicas=3"]);
    k.ok(&["set", "image", "deployment/d", "busybox=busybox:1.37"]);
    k.ok(&["create", "job", "j", "--image=busybox"]);
    let err = k.fails(&["set", "image", "job/j", "j=busybox:1.37"]);
    assert!(
        err.contains("spec.template") && err.contains("field is immutable"),
        "{err}"
    );
}

/// Polls `f` (up to 20 s) until it holds; a wait for background work, not a timing check.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// Like kube-apiserver: the namespaces every cluster has may not be deleted, and a terminating
/// namespace goes only after its contents are deleted (the `kubernetes` spec finalizer) and
/// no metadata finalizer holds it.
#[test]
fn namespaces_are_protected_and_wait_for_their_finalizers() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let err = k.fails(&["delete", "namespace", ns]);
        assert!(
            err.contains(&format!(
                "namespaces \"{ns}\" is forbidden: this namespace may not be deleted"
            )),
            "{err}"
        );
    }
    k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: held, finalizers: [example.com/hold]}\n",
    );
    k.ok(&["create", "configmap", "c", "-n", "held"]);
    k.ok(&["delete", "namespace", "held", "--wait=false"]);
    let spec_finalizers = || {
        k.ok(&[
            "get",
            "namespace",
            "held",
            "-o",
            "jsonpath={.spec.finalizers[*]}",
        ])
    };
    eventually("the namespace's contents to be deleted", || {
        spec_finalizers().is_empty()
    });
    assert!(k
        .fails(&["get", "cm", "c", "-n", "held"])
        .contains("NotFound"));
    // Still there, terminating, until its own finalizer goes.
    assert_eq!(
        k.ok(&["get", "namespace", "held", "-o", "jsonpath={.status.phase}"]),
        "Terminating"
    );
    k.ok(&[
        "patch",
        "namespace",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    eventually("the namespace to go", || {
        k.run(&["get", "namespace", "held"])
            .status
            .success()
            .eq(&false)
    });
}

/// The admin kubeconfig the server writes works as written on a listen address other than
/// 127.0.0.1 (the serving certificate names it). Over plain HTTP it carries the admin token,
/// which clients that send credentials over HTTP can use (kubectl's clientcmd reads credentials
/// only for TLS servers, so kubectl itself cannot authenticate there).
#[test]
fn admin_kubeconfig_works_on_other_listen_addresses_and_plain_http() {
    use std::io::{Read, Write};
    let cp = ControlPlane::start_with(Backend::Embedded, |c| {
        c.listen = "127.0.0.2:0".parse().unwrap()
    })
    .unwrap();
    assert_eq!(cp.addr.ip().to_string(), "127.0.0.2");
    assert!(cp
        .kubectl()
        .ok(&["get", "namespaces"])
        .contains("kube-system"));
    drop(cp);
    let cp = ControlPlane::start_with(Backend::Embedded, |c| c.insecure_http = true).unwrap();
    let config = std::fs::read_to_string(&cp.kubeconfig).unwrap();
    assert!(config.contains("server: http://"), "{config}");
    let token = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .unwrap_or_else(|| panic!("no token: {config}"));
    assert_eq!(token, cp.running().admin_token);
    let get = |auth: &str| {
        let mut s = std::net::TcpStream::connect(cp.addr).unwrap();
        write!(
            s,
            "GET /api/v1/namespaces HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\n\r\n",
            cp.addr
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    };
    let resp = get(&format!("Authorization: Bearer {token}\r\n"));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("kube-system"), "{resp}");
    assert!(get("").starts_with("HTTP/1.1 401"));
}

//! kubectl's protobuf bodies (`kubectl create deployment|job|cronjob|service|ingress|...` send
//! `application/vnd.kubernetes.protobuf`): what pea-control stores must hold every field of
//! kubectl's own client-side rendering of the same command (`--dry-run=client -o json`), and
//! must equal what the same object sent as JSON stores, so only server-set fields and defaults
//! are added. Bodies with fields the decoder does not know are refused and store nothing.

use pea_tests::control::{Backend, ControlPlane, Kubectl};
use pea_tests::control_client::{tls_connector, ApiClient};
use serde_json::Value;

/// Every value in `expected` (nulls aside) is in `actual` at the same place; lists match in
/// length and element by element.
fn assert_subset(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                if v.is_null() {
                    continue;
                }
                let p = format!("{path}.{k}");
                let got = a
                    .get(k)
                    .unwrap_or_else(|| panic!("{p} missing from the stored object: {actual}"));
                assert_subset(v, got, &p);
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "{path}: {expected} vs {actual}");
            for (i, (x, y)) in e.iter().zip(a).enumerate() {
                assert_subset(x, y, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(expected, actual, "{path}"),
    }
}

/// Drops the fields the server sets per object (identity, time, version, allocated addresses
/// and ports unless kubectl asked for them), so two creations of one object compare equal.
fn normalise(mut v: Value, expected: &Value) -> Value {
    // A Job's generated selector and template labels carry its uid.
    fn replace_uid(v: &mut Value, uid: &str) {
        match v {
            Value::String(s) if s == uid => *s = "<uid>".into(),
            Value::Array(a) => a.iter_mut().for_each(|x| replace_uid(x, uid)),
            Value::Object(m) => m.values_mut().for_each(|x| replace_uid(x, uid)),
            _ => {}
        }
    }
    if let Some(uid) = v["metadata"]["uid"].as_str().map(str::to_owned) {
        replace_uid(&mut v["spec"], &uid);
    }
    if let Some(meta) = v["metadata"].as_object_mut() {
        for f in [
            "uid",
            "creationTimestamp",
            "resourceVersion",
            "managedFields",
        ] {
            meta.remove(f);
        }
    }
    if v["kind"] == "Service" {
        let spec = &expected["spec"];
        if let Some(s) = v["spec"].as_object_mut() {
            if spec.get("clusterIP").is_none() {
                s.remove("clusterIP");
                s.remove("clusterIPs");
            }
            if spec.get("healthCheckNodePort").is_none() {
                s.remove("healthCheckNodePort");
            }
        }
        if let Some(ports) = v["spec"]["ports"].as_array_mut() {
            for (i, p) in ports.iter_mut().enumerate() {
                if spec["ports"][i].get("nodePort").is_none() {
                    p.as_object_mut().unwrap().remove("nodePort");
                }
            }
        }
    }
    v
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Runs `kubectl create <args>` for real (checking that the body went as protobuf) and compares
/// the stored object with kubectl's rendering and with the same object created from JSON.
fn check(k: &Kubectl, resource: &str, name: &str, args: &[&str]) {
    // Flags go before a `--` command.
    fn with<'a>(args: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        let at = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        [&["create"], &args[..at], extra, &args[at..]].concat()
    }
    let expected = json(&k.ok(&with(args, &["--dry-run=client", "-o", "json"])));

    let out = k.run(&with(args, &["-v=8"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kubectl create {args:?}: {stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "kubectl create {args:?} did not send protobuf: {stderr}"
    );
    let stored = json(&k.ok(&["get", resource, name, "-o", "json"]));
    assert_subset(&expected, &stored, resource);

    // The same object as JSON, after the protobuf one is gone (node ports are exclusive).
    k.ok(&["delete", resource, name, "--wait"]);
    k.ok_stdin(&["create", "-f", "-"], &expected.to_string());
    let via_json = json(&k.ok(&["get", resource, name, "-o", "json"]));
    assert_eq!(
        normalise(stored, &expected),
        normalise(via_json, &expected),
        "{resource}/{name}: stored from protobuf vs from JSON"
    );
}

#[test]
fn kubectl_create_generators_store_what_kubectl_renders() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("blob");
    std::fs::write(&bin, [0u8, 159, 146, 150, 255]).unwrap();
    let from_file = format!("--from-file=blob={}", bin.display());
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "deployment",
            "d1",
            &[
                "deployment",
                "d1",
                "--image=busybox:1.36",
                "--port=80",
                "--replicas=3",
            ],
        ),
        (
            "deployment",
            "d2",
            &[
                "deployment",
                "d2",
                "--image=busybox:1.36",
                "--image=nginx:1.25",
            ],
        ),
        // replicas is a pointer: an explicit 0 must survive.
        (
            "deployment",
            "d3",
            &[
                "deployment",
                "d3",
                "--image=busybox:1.36",
                "--replicas=0",
                "--",
                "sleep",
                "3600",
            ],
        ),
        (
            "job",
            "j1",
            &["job", "j1", "--image=busybox:1.36", "--", "sleep", "1"],
        ),
        (
            "cronjob",
            "c1",
            &[
                "cronjob",
                "c1",
                "--image=busybox:1.36",
                "--schedule=*/5 * * * *",
                "--restart=OnFailure",
                "--",
                "date",
            ],
        ),
        // A job instantiated from the cron job: owner references and annotations.
        ("job", "j2", &["job", "j2", "--from=cronjob/c1"]),
        (
            "service",
            "s1",
            &[
                "service",
                "clusterip",
                "s1",
                "--tcp=5678:8080",
                "--tcp=53:dns",
            ],
        ),
        (
            "service",
            "s2",
            &["service", "clusterip", "s2", "--clusterip=None"],
        ),
        (
            "service",
            "s3",
            &[
                "service",
                "nodeport",
                "s3",
                "--tcp=80:8080",
                "--node-port=30080",
            ],
        ),
        (
            "service",
            "s4",
            &["service", "loadbalancer", "s4", "--tcp=80:http"],
        ),
        (
            "service",
            "s5",
            &[
                "service",
                "externalname",
                "s5",
                "--external-name=example.com",
            ],
        ),
        (
            "ingress",
            "i1",
            &[
                "ingress",
                "i1",
                "--rule=foo.com/bar=svc1:8080,tls=my-cert",
                "--class=nginx",
                "--default-backend=svc2:http",
                "--annotation=a=b",
            ],
        ),
        ("ingress", "i2", &["ingress", "i2", "--rule=/*=svc3:web"]),
        ("configmap", "cm", &["configmap", "cm", &from_file]),
        (
            "secret",
            "reg",
            &[
                "secret",
                "docker-registry",
                "reg",
                "--docker-server=r.example",
                "--docker-username=u",
                "--docker-password=p",
            ],
        ),
    ];
    for (resource, name, args) in cases {
        check(&k, resource, name, args);
    }
    // Spot checks of the special types as kubectl reads them back.
    assert_eq!(
        k.ok(&["get", "deploy", "d3", "-o", "jsonpath={.spec.replicas}"]),
        "0"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "svc",
            "s1",
            "-o",
            "jsonpath={.spec.ports[0].targetPort}/{.spec.ports[1].targetPort}"
        ]),
        "8080/dns"
    );
    assert_eq!(
        k.ok(&["get", "svc", "s2", "-o", "jsonpath={.spec.clusterIP}"]),
        "None"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "cj",
            "c1",
            "-o",
            "jsonpath={.spec.schedule}|{.spec.jobTemplate.spec.template.spec.containers[0].command}"
        ]),
        "*/5 * * * *|[\"date\"]"
    );
    assert_eq!(
        k.ok(&["get", "cm", "cm", "-o", "jsonpath={.binaryData.blob}"]),
        "AJ+Slv8="
    );
}

/// A cron job whose template uses nearly every PodSpec/Container/JobSpec field kubectl 1.32
/// knows, with pointer fields set to their zero values (which must survive). Non-pointer zero
/// values are left out: Go drops them when it re-encodes, so they could not round-trip.
const RICH_CRONJOB: &str = r#"apiVersion: batch/v1
kind: CronJob
metadata:
  name: rich
spec:
  schedule: "0 3 * * *"
  timeZone: Etc/UTC
  startingDeadlineSeconds: 0
  concurrencyPolicy: Forbid
  suspend: false
  successfulJobsHistoryLimit: 0
  failedJobsHistoryLimit: 2
  jobTemplate:
    metadata:
      labels: {tier: batch}
      annotations: {note: "x"}
    spec:
      parallelism: 2
      completions: 4
      activeDeadlineSeconds: 600
      backoffLimitPerIndex: 0
      maxFailedIndexes: 1
      ttlSecondsAfterFinished: 0
      completionMode: Indexed
      suspend: false
      podReplacementPolicy: Failed
      podFailurePolicy:
        rules:
        - action: FailIndex
          onExitCodes: {containerName: main, operator: In, values: [1, 2, 42]}
        - action: Ignore
          onPodConditions: [{type: DisruptionTarget, status: "True"}]
      successPolicy:
        rules: [{succeededIndexes: "0-2", succeededCount: 1}]
      template:
        metadata:
          labels: {tier: batch, app: rich}
          annotations: {a: b}
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 0
          activeDeadlineSeconds: 300
          dnsPolicy: ClusterFirstWithHostNet
          nodeSelector: {disk: ssd}
          serviceAccountName: robot
          automountServiceAccountToken: false
          hostNetwork: true
          hostPID: true
          hostIPC: true
          shareProcessNamespace: false
          hostname: h1
          subdomain: sub
          schedulerName: default-scheduler
          priorityClassName: high
          priority: 0
          runtimeClassName: runc
          enableServiceLinks: false
          preemptionPolicy: Never
          setHostnameAsFQDN: false
          hostUsers: true
          overhead: {cpu: 250m, memory: 120Mi}
          os: {name: linux}
          imagePullSecrets: [{name: regcred}]
          readinessGates: [{conditionType: example.com/ready}]
          schedulingGates: [{name: example.com/gate}]
          hostAliases: [{ip: 10.1.2.3, hostnames: [a.local, b.local]}]
          dnsConfig:
            nameservers: [1.1.1.1]
            searches: [ns1.svc.cluster.local]
            options: [{name: ndots, value: "2"}, {name: edns0}]
          securityContext:
            runAsUser: 1000
            runAsGroup: 0
            runAsNonRoot: false
            supplementalGroups: [4, 5]
            fsGroup: 2000
            fsGroupChangePolicy: OnRootMismatch
            sysctls: [{name: net.core.somaxconn, value: "1024"}]
            seLinuxOptions: {level: "s0:c123,c456"}
            seccompProfile: {type: RuntimeDefault}
            appArmorProfile: {type: Localhost, localhostProfile: prof}
          tolerations:
          - {key: k, operator: Equal, value: v, effect: NoExecute, tolerationSeconds: 0}
          - {operator: Exists}
          affinity:
            nodeAffinity:
              requiredDuringSchedulingIgnoredDuringExecution:
                nodeSelectorTerms:
                - matchExpressions: [{key: zone, operator: In, values: [a, b]}]
                  matchFields: [{key: metadata.name, operator: NotIn, values: [n1]}]
              preferredDuringSchedulingIgnoredDuringExecution:
              - weight: 1
                preference:
                  matchExpressions: [{key: gpu, operator: Exists}]
            podAffinity:
              requiredDuringSchedulingIgnoredDuringExecution:
              - labelSelector: {matchLabels: {app: db}}
                topologyKey: kubernetes.io/hostname
                namespaces: [default]
            podAntiAffinity:
              preferredDuringSchedulingIgnoredDuringExecution:
              - weight: 100
                podAffinityTerm:
                  labelSelector:
                    matchExpressions: [{key: app, operator: In, values: [rich]}]
                  namespaceSelector: {}
                  topologyKey: zone
                  matchLabelKeys: [pod-template-hash]
          topologySpreadConstraints:
          - maxSkew: 1
            topologyKey: zone
            whenUnsatisfiable: DoNotSchedule
            labelSelector: {matchLabels: {app: rich}}
            minDomains: 2
            nodeAffinityPolicy: Honor
            nodeTaintsPolicy: Ignore
            matchLabelKeys: [pod-template-hash]
          volumes:
          - name: hp
            hostPath: {path: /data, type: DirectoryOrCreate}
          - name: ed
            emptyDir: {medium: Memory, sizeLimit: 64Mi}
          - name: ed2
            emptyDir: {}
          - name: sec
            secret:
              secretName: s
              defaultMode: 0400
              optional: false
              items: [{key: k, path: p, mode: 0}]
          - name: cm
            configMap: {name: c, items: [{key: a, path: b}], optional: true}
          - name: nfs
            nfs: {server: nfs.local, path: /exports, readOnly: true}
          - name: pvc
            persistentVolumeClaim: {claimName: claim}
          - name: dapi
            downwardAPI:
              defaultMode: 420
              items:
              - path: labels
                fieldRef: {fieldPath: metadata.labels}
              - path: cpu
                resourceFieldRef: {containerName: main, resource: limits.cpu, divisor: 1m}
          - name: proj
            projected:
              defaultMode: 292
              sources:
              - serviceAccountToken: {audience: api, expirationSeconds: 3600, path: token}
              - configMap: {name: c, items: [{key: a, path: a}]}
              - secret: {name: s, optional: true}
              - downwardAPI: {items: [{path: name, fieldRef: {apiVersion: v1, fieldPath: metadata.name}}]}
          - name: csi
            csi: {driver: csi.example.com, readOnly: true, fsType: ext4, volumeAttributes: {size: 1Gi}, nodePublishSecretRef: {name: s}}
          initContainers:
          - name: sidecar
            image: busybox:1.36
            restartPolicy: Always
            command: [sleep, infinity]
          containers:
          - name: main
            image: busybox:1.36
            command: [/bin/sh, -c]
            args: ["echo hi; sleep 1"]
            workingDir: /work
            imagePullPolicy: IfNotPresent
            terminationMessagePath: /dev/termination-log
            terminationMessagePolicy: FallbackToLogsOnError
            stdin: true
            stdinOnce: true
            tty: true
            ports:
            - {name: http, containerPort: 8080, hostPort: 80, protocol: TCP, hostIP: 127.0.0.1}
            - {containerPort: 9090, protocol: UDP}
            envFrom:
            - prefix: CM_
              configMapRef: {name: c, optional: false}
            - secretRef: {name: s}
            env:
            - {name: PLAIN, value: v}
            - name: NODE
              valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
            - name: LIM
              valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: "0"}}
            - name: CMK
              valueFrom: {configMapKeyRef: {name: c, key: a, optional: true}}
            - name: SK
              valueFrom: {secretKeyRef: {name: s, key: k}}
            resources:
              limits: {cpu: "1", memory: 128Mi, ephemeral-storage: 1Gi}
              requests: {cpu: 500m, memory: 64Mi}
            resizePolicy:
            - {resourceName: cpu, restartPolicy: NotRequired}
            volumeMounts:
            - {name: hp, mountPath: /data, readOnly: true, mountPropagation: HostToContainer}
            - {name: ed, mountPath: /cache, subPath: x}
            - {name: sec, mountPath: /sec, subPathExpr: "$(NODE)"}
            - {name: nfs, mountPath: /nfs, readOnly: true, recursiveReadOnly: Enabled}
            volumeDevices:
            - {name: pvc, devicePath: /dev/xvda}
            livenessProbe:
              httpGet:
                path: /healthz
                port: http
                host: 127.0.0.1
                scheme: HTTPS
                httpHeaders: [{name: X-A, value: b}]
              initialDelaySeconds: 3
              periodSeconds: 5
              timeoutSeconds: 2
              successThreshold: 1
              failureThreshold: 4
              terminationGracePeriodSeconds: 0
            readinessProbe:
              tcpSocket: {port: 8080}
            startupProbe:
              grpc: {port: 9090, service: health}
            lifecycle:
              postStart:
                exec: {command: [touch, /tmp/started]}
              preStop:
                sleep: {seconds: 0}
            securityContext:
              capabilities: {add: [NET_ADMIN], drop: [ALL]}
              privileged: false
              runAsUser: 0
              runAsGroup: 0
              runAsNonRoot: false
              readOnlyRootFilesystem: true
              allowPrivilegeEscalation: false
              procMount: Default
              seLinuxOptions: {user: u, role: r, type: t, level: l}
              seccompProfile: {type: Localhost, localhostProfile: p.json}
              windowsOptions: {runAsUserName: admin}
          - name: second
            image: busybox:1.36
            readinessProbe:
              exec: {command: ["true"]}
            lifecycle:
              preStop:
                httpGet: {port: 80, path: /stop}
              postStart:
                tcpSocket: {port: 81}
"#;

#[test]
fn reencoded_pod_templates_keep_every_field() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    k.ok_stdin(&["create", "-f", "-"], RICH_CRONJOB);
    // kubectl reads the cron job and sends its whole job template back as a protobuf Job.
    check(&k, "job", "rj", &["job", "rj", "--from=cronjob/rich"]);

    // `kubectl debug --copy-to` reads a pod and sends it back as a protobuf Pod with one more
    // container: everything else must come back unchanged.
    let cj = json(&k.ok(&["get", "cronjob", "rich", "-o", "json"]));
    let template = &cj["spec"]["jobTemplate"]["spec"]["template"];
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "richpod", "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    });
    // The template names PriorityClass "high" (value 0, never preempting): Priority admission
    // refuses a pod naming a class that does not exist or disagreeing with it.
    k.ok(&[
        "create",
        "priorityclass",
        "high",
        "--value=0",
        "--preemption-policy=Never",
    ]);
    k.ok_stdin(&["create", "-f", "-"], &pod.to_string());
    let out = k.run(&[
        "debug",
        "richpod",
        "--copy-to=richcopy",
        "--image=busybox:1.36",
        "--container=dbg",
        "-v=8",
        "--",
        "sleep",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl debug: {stderr}");
    assert!(
        stderr.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "kubectl debug did not send protobuf: {stderr}"
    );
    let original = json(&k.ok(&["get", "pod", "richpod", "-o", "json"]));
    let mut copy = json(&k.ok(&["get", "pod", "richcopy", "-o", "json"]));
    let containers = copy["spec"]["containers"].as_array_mut().unwrap();
    let dbg = containers.pop().unwrap();
    assert_eq!(dbg["name"], "dbg");
    assert_eq!(dbg["command"], serde_json::json!(["sleep", "1"]));
    assert_eq!(original["spec"], copy["spec"]);
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn field(n: u64, payload: &[u8]) -> Vec<u8> {
    [
        varint((n << 3) | 2),
        varint(payload.len() as u64),
        payload.to_vec(),
    ]
    .concat()
}

/// A `k8s\0` envelope around an apps/v1 Deployment named `name` whose one container also
/// carries `extra` (raw Container fields).
fn deployment(name: &str, extra: &[u8]) -> Vec<u8> {
    let container = [field(1, b"c"), field(2, b"busybox:1.36"), extra.to_vec()].concat();
    let labels = field(11, &[field(1, b"app"), field(2, b"x")].concat());
    let template = [field(1, &labels), field(2, &field(2, &container))].concat();
    let selector = field(1, &[field(1, b"app"), field(2, b"x")].concat());
    let spec = [field(2, &selector), field(3, &template)].concat();
    let raw = [field(1, &field(1, name.as_bytes())), field(2, &spec)].concat();
    let type_meta = [field(1, b"apps/v1"), field(2, b"Deployment")].concat();
    [b"k8s\0".to_vec(), field(1, &type_meta), field(2, &raw)].concat()
}

#[test]
fn protobuf_bodies_with_unknown_fields_are_refused_and_store_nothing() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let connector = tls_connector(&cp.running().pki.ca.cert_pem).unwrap();
    let mut c = cp
        .block_on(ApiClient::connect(
            cp.addr,
            &connector,
            &cp.running().admin_token,
        ))
        .unwrap();
    const PB: &str = "application/vnd.kubernetes.protobuf";
    let path = "/apis/apps/v1/namespaces/default/deployments";
    let mut post = |body: Vec<u8>| {
        let (code, body) = cp
            .block_on(c.call_typed("POST", path, PB, Some(body)))
            .unwrap();
        (code, json(&String::from_utf8_lossy(&body)))
    };
    // The hand-built body is accepted as it stands: the encoding below is right.
    let (code, ok) = post(deployment("good", &[]));
    assert_eq!(code, 201, "{ok}");
    assert_eq!(
        ok["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.36"
    );

    // Field 99 of Container does not exist: 415 naming the message and the field.
    let (code, st) = post(deployment("bad", &field(99, b"x")));
    assert_eq!(code, 415, "{st}");
    assert_eq!(st["kind"], "Status");
    let msg = st["message"].as_str().unwrap();
    assert!(
        msg.contains("spec.template.spec.containers[0]: protobuf field 99 of Container"),
        "{msg}"
    );
    // A field we know but do not decode is refused by name.
    let (code, st) = post(deployment("bad", &field(25, b"")));
    assert_eq!(code, 415, "{st}");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("field 25 (restartPolicyRules) of Container"),
        "{st}"
    );
    // Broken bytes: 400.
    let mut truncated = deployment("bad", &[]);
    truncated.pop();
    let (code, st) = post(truncated);
    assert_eq!(code, 400, "{st}");
    assert!(
        st["message"].as_str().unwrap().contains("malformed"),
        "{st}"
    );

    let k = cp.kubectl();
    assert!(k.fails(&["get", "deploy", "bad"]).contains("NotFound"));
    assert_eq!(
        k.ok(&["get", "deploy", "-o", "jsonpath={.items[*].metadata.name}"]),
        "good"
    );
}

fn num(n: u64, v: u64) -> Vec<u8> {
    [varint(n << 3), varint(v)].concat()
}

#[test]
fn protobuf_leases_keep_microsecond_times() {
    // What a client-go node heartbeat sends (kubectl has no command that creates leases).
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let connector = tls_connector(&cp.running().pki.ca.cert_pem).unwrap();
    let mut c = cp
        .block_on(ApiClient::connect(
            cp.addr,
            &connector,
            &cp.running().admin_token,
        ))
        .unwrap();
    let spec = [
        field(1, b"node-a"),
        num(2, 40),
        field(3, &[num(1, 1_700_000_000), num(2, 5_000)].concat()),
        field(4, &[num(1, 1_700_000_100), num(2, 123_456_789)].concat()),
        num(5, 0),
    ]
    .concat();
    let raw = [field(1, &field(1, b"node-a")), field(2, &spec)].concat();
    let type_meta = [field(1, b"coordination.k8s.io/v1"), field(2, b"Lease")].concat();
    let body = [b"k8s\0".to_vec(), field(1, &type_meta), field(2, &raw)].concat();
    let (code, resp) = cp
        .block_on(c.call_typed(
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            "application/vnd.kubernetes.protobuf",
            Some(body),
        ))
        .unwrap();
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&resp));
    let k = cp.kubectl();
    let got = json(&k.ok(&[
        "get",
        "lease",
        "node-a",
        "-n",
        "kube-node-lease",
        "-o",
        "json",
    ]));
    assert_eq!(
        got["spec"],
        serde_json::json!({"holderIdentity": "node-a", "leaseDurationSeconds": 40,
            "acquireTime": "2023-11-14T22:13:20.000005Z",
            "renewTime": "2023-11-14T22:15:00.123456Z", "leaseTransitions": 0})
    );
}

/// A kubelet (client-go, protobuf) registers its Node and creates its Lease as a node identity.
#[test]
fn node_identities_create_their_node_and_lease_in_protobuf() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let pki = &cp.running().pki;
    let pair = pki
        .issue_client("system:node:node-a", &["system:nodes"])
        .unwrap();
    let connector = pea_tests::control_client::tls_connector_with_cert(
        &pki.ca.cert_pem,
        &pair.cert_pem,
        &pair.key_pem,
    )
    .unwrap();
    let mut c = cp
        .block_on(ApiClient::connect(cp.addr, &connector, ""))
        .unwrap();
    const PB: &str = "application/vnd.kubernetes.protobuf";
    let envelope = |api_version: &str, kind: &str, raw: Vec<u8>| {
        let type_meta = [field(1, api_version.as_bytes()), field(2, kind.as_bytes())].concat();
        [b"k8s\0".to_vec(), field(1, &type_meta), field(2, &raw)].concat()
    };
    let mut post = |path: &str, body: Vec<u8>| {
        let (code, body) = cp
            .block_on(c.call_typed("POST", path, PB, Some(body)))
            .unwrap();
        (code, String::from_utf8_lossy(&body).into_owned())
    };
    let node = |name: &str| envelope("v1", "Node", field(1, &field(1, name.as_bytes())));
    let lease = |name: &str| {
        let raw = [
            field(1, &field(1, name.as_bytes())),
            field(2, &[field(1, name.as_bytes()), num(2, 40)].concat()),
        ]
        .concat();
        envelope("coordination.k8s.io/v1", "Lease", raw)
    };
    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
    let (code, body) = post("/api/v1/nodes", node("node-a"));
    assert_eq!(code, 201, "{body}");
    let (code, body) = post(leases, lease("node-a"));
    assert_eq!(code, 201, "{body}");
    // Another node's objects stay out of reach, whatever the encoding.
    let (code, body) = post("/api/v1/nodes", node("node-b"));
    assert_eq!(code, 403, "{body}");
    let (code, body) = post(leases, lease("node-b"));
    assert_eq!(code, 403, "{body}");
    assert!(
        json(&body)["message"]
            .as_str()
            .unwrap()
            .contains(r#"User "system:node:node-a" cannot create resource "leases""#),
        "{body}"
    );
    let k = cp.kubectl();
    assert_eq!(
        k.ok(&["get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"]),
        "node-a"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            "-o",
            "jsonpath={.items[*].spec.holderIdentity}"
        ]),
        "node-a"
    );
}

#[test]
fn kubectl_drain_sends_protobuf_delete_options() {
    // drain deletes through the typed client: DeleteOptions travel as protobuf, and
    // gracePeriodSeconds=0 (a pointer zero) must arrive, or the bound pods would wait for a
    // kubelet to finish their graceful deletion.
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    k.ok_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}"#,
    );
    for p in ["a", "b"] {
        k.ok_stdin(
            &["create", "-f", "-"],
            &format!(
                r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{p}"}},
                  "spec": {{"nodeName": "n1", "containers": [{{"name": "c", "image": "busybox:1.36"}}]}}}}"#
            ),
        );
    }
    let out = k.run(&[
        "drain",
        "n1",
        "--force",
        "--grace-period=0",
        "--disable-eviction",
        "--timeout=20s",
        "-v=8",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl drain: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let protobuf_deletes = lines
        .iter()
        .enumerate()
        .filter(|(i, l)| {
            l.contains("DELETE https://")
                && lines[i + 1..]
                    .iter()
                    .take(4)
                    .any(|h| h.contains("Content-Type: application/vnd.kubernetes.protobuf"))
        })
        .count();
    assert_eq!(protobuf_deletes, 2, "drain's deletes: {stderr}");
    assert_eq!(k.ok(&["get", "pods", "-o", "name"]), "");
    assert_eq!(
        k.ok(&["get", "node", "n1", "-o", "jsonpath={.spec.unschedulable}"]),
        "true"
    );
}

//! Service node ports with real kubectl: allocation from the range, uniqueness, user-chosen
//! ports, 422s with Kubernetes' messages, carry-over on update/apply/patch, release on delete,
//! failed create and type change, health check ports, range configuration and restarts — on
//! the embedded store and on etcd.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use pea_tests::control::{Backend, ControlPlane, Kubectl};

const PORTS: &str = "/registry/ranges/servicenodeports/";
const IPS: &str = "/registry/ranges/serviceips/";

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

/// Allocation records under `prefix`, as items.
fn records(cp: &ControlPlane, prefix: &str) -> BTreeSet<String> {
    cp.allocations(prefix)
}

/// A Service manifest; `ports` are (name, port, nodePort or 0).
fn service(name: &str, kind: &str, ports: &[(&str, u16, u16)], extra: &str) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: {kind}\n  selector: {{app: web}}\n{extra}  ports:\n"
    );
    for (n, port, node) in ports {
        s.push_str(&format!("  - name: {n}\n    port: {port}\n"));
        if *node != 0 {
            s.push_str(&format!("    nodePort: {node}\n"));
        }
    }
    s
}

fn node_ports(k: &Kubectl, name: &str) -> Vec<u16> {
    k.ok(&[
        "get",
        "svc",
        name,
        "-o",
        "jsonpath={range .spec.ports[*]}{.nodePort}{\" \"}{end}",
    ])
    .split_whitespace()
    .map(|p| p.parse().unwrap())
    .collect()
}

fn stderr_of(k: &Kubectl, args: &[&str], input: &str) -> String {
    let out = k.stdin_output(args, input);
    assert!(!out.status.success(), "{args:?} unexpectedly succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn allocation_lifecycle(backend: Backend) {
    let cp = ControlPlane::start(backend).unwrap();
    let k = cp.kubectl();
    let web = service("web", "NodePort", &[("http", 80, 0), ("https", 443, 0)], "");
    k.ok_stdin(&["create", "-f", "-"], &web);
    let ports = node_ports(&k, "web");
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert!(
        ports.iter().all(|p| (30000..=32767).contains(p)),
        "{ports:?}"
    );
    assert_ne!(ports[0], ports[1]);
    let held: BTreeSet<String> = ports.iter().map(u16::to_string).collect();
    assert_eq!(records(&cp, PORTS), held);
    assert!(k
        .ok(&["get", "svc", "web"])
        .contains(&format!("80:{}/TCP", ports[0])));

    // Taken, out of range, on a ClusterIP: 422 with kube's words, and nothing left behind.
    let ips_before = records(&cp, IPS);
    let taken = service("dup", "NodePort", &[("a", 80, ports[0])], "");
    let err = stderr_of(&k, &["create", "-f", "-"], &taken);
    assert!(
        err.contains(&format!(
            "spec.ports[0].nodePort: Invalid value: {}: provided port is already allocated",
            ports[0]
        )),
        "{err}"
    );
    let err = stderr_of(
        &k,
        &["create", "-f", "-"],
        &service("low", "NodePort", &[("a", 80, 80)], ""),
    );
    assert!(
        err.contains(
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        ),
        "{err}"
    );
    let err = stderr_of(
        &k,
        &["create", "-f", "-"],
        &service("cip", "ClusterIP", &[("a", 80, 30555)], ""),
    );
    assert!(
        err.contains("may not be used when `type` is 'ClusterIP'"),
        "{err}"
    );
    // The second port clashes after the first was reserved: the first goes back too.
    let free = (30000..=32767).find(|p| !ports.contains(p)).unwrap();
    let half = service(
        "half",
        "NodePort",
        &[("a", 80, free), ("b", 81, ports[1])],
        "",
    );
    let err = stderr_of(&k, &["create", "-f", "-"], &half);
    assert!(err.contains("provided port is already allocated"), "{err}");
    assert_eq!(records(&cp, PORTS), held, "a failed create leaves no port");
    // Dry runs check the same without reserving anything.
    let err = stderr_of(&k, &["create", "--dry-run=server", "-f", "-"], &taken);
    assert!(err.contains("provided port is already allocated"), "{err}");
    let free_one = service("dry", "NodePort", &[("a", 80, free)], "");
    k.ok_stdin(&["create", "--dry-run=server", "-f", "-"], &free_one);
    let err = k.fails(&[
        "patch",
        "svc",
        "web",
        "--dry-run=server",
        "--type=json",
        "-p",
        &format!(
            r#"[{{"op":"replace","path":"/spec/ports/0/nodePort","value":{}}}]"#,
            ports[1]
        ),
    ]);
    assert!(err.contains("Duplicate value"), "{err}");
    assert_eq!(
        records(&cp, IPS),
        ips_before,
        "a failed create leaves no address"
    );
    assert!(k
        .run(&["get", "svc", "dup", "half", "low", "cip", "dry"])
        .stdout
        .is_empty());

    // Updates keep the ports: client-side apply without nodePorts, label, merge patch, replace.
    k.ok_stdin(&["apply", "-f", "-"], &web);
    k.ok_stdin(
        &["apply", "-f", "-"],
        &web.replace("  name: web\n", "  name: web\n  labels: {tier: front}\n"),
    );
    k.ok(&["label", "svc", "web", "x=y"]);
    k.ok(&[
        "patch",
        "svc",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"sessionAffinity":"ClientIP"}}"#,
    ]);
    assert_eq!(node_ports(&k, "web"), ports);
    let json = k.ok(&["get", "svc", "web", "-o", "json"]);
    k.ok_stdin(&["replace", "-f", "-"], &json);
    assert_eq!(node_ports(&k, "web"), ports);
    assert_eq!(records(&cp, PORTS), held);

    // A user-chosen free port is taken as given; changing a port frees the old one.
    k.ok(&[
        "patch",
        "svc",
        "web",
        "--type=json",
        "-p",
        &format!(r#"[{{"op":"replace","path":"/spec/ports/0/nodePort","value":{free}}}]"#),
    ]);
    assert_eq!(node_ports(&k, "web"), vec![free, ports[1]]);
    let held: BTreeSet<String> = [free, ports[1]].iter().map(u16::to_string).collect();
    assert_eq!(records(&cp, PORTS), held);

    // Back to ClusterIP: the ports go; to NodePort again: new ones.
    k.ok(&[
        "patch",
        "svc",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ]);
    assert!(node_ports(&k, "web").is_empty());
    assert!(records(&cp, PORTS).is_empty());
    k.ok(&[
        "patch",
        "svc",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"type":"NodePort"}}"#,
    ]);
    let again = node_ports(&k, "web");
    assert_eq!(again.len(), 2);
    assert_eq!(records(&cp, PORTS).len(), 2);

    // LoadBalancer with externalTrafficPolicy Local also holds a health check port.
    let lb = service(
        "lb",
        "LoadBalancer",
        &[("a", 80, 0)],
        "  externalTrafficPolicy: Local\n",
    );
    k.ok_stdin(&["create", "-f", "-"], &lb);
    let hc: u16 = k
        .ok(&[
            "get",
            "svc",
            "lb",
            "-o",
            "jsonpath={.spec.healthCheckNodePort}",
        ])
        .parse()
        .unwrap();
    let lb_ports = node_ports(&k, "lb");
    assert!((30000..=32767).contains(&hc) && !lb_ports.contains(&hc));
    assert_eq!(records(&cp, PORTS).len(), 4);
    let err = k.fails(&[
        "patch",
        "svc",
        "web",
        "--dry-run=server",
        "--type=json",
        "-p",
        &format!(r#"[{{"op":"replace","path":"/spec/ports/0/nodePort","value":{hc}}}]"#),
    ]);
    assert!(err.contains("provided port is already allocated"), "{err}");
    assert_eq!(node_ports(&k, "web"), again);
    let err = k.fails(&[
        "patch",
        "svc",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"healthCheckNodePort":31999}}"#,
    ]);
    assert!(
        err.contains("may only be set when `type` is 'LoadBalancer'"),
        "{err}"
    );

    // Server-side apply creates get their ports (and cluster IP) too.
    k.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &service("ssa", "NodePort", &[("a", 80, 0)], ""),
    );
    assert_eq!(node_ports(&k, "ssa").len(), 1);
    assert!(!k
        .ok(&["get", "svc", "ssa", "-o", "jsonpath={.spec.clusterIP}"])
        .is_empty());
    k.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &service(
            "ssa",
            "NodePort",
            &[("a", 80, 0)],
            "  sessionAffinity: ClientIP\n",
        ),
    );
    assert_eq!(records(&cp, PORTS).len(), 5);

    // Deleting frees everything.
    k.ok(&["delete", "svc", "web", "lb", "ssa"]);
    eventually("node ports released", || records(&cp, PORTS).is_empty());
    eventually("cluster IPs released", || records(&cp, IPS).is_empty());
    k.ok_stdin(
        &["create", "-f", "-"],
        &service("reuse", "NodePort", &[("a", 80, ports[0])], ""),
    );
    assert_eq!(node_ports(&k, "reuse"), vec![ports[0]]);

    // `kubectl create service nodeport` (a protobuf body) gets the same treatment.
    k.ok(&["create", "service", "nodeport", "cli", "--tcp=8080:80"]);
    let cli = node_ports(&k, "cli");
    assert!(cli.len() == 1 && cli[0] != ports[0], "{cli:?}");
    let err = k.fails(&[
        "create",
        "service",
        "nodeport",
        "cli2",
        "--tcp=8080:80",
        &format!("--node-port={}", ports[0]),
    ]);
    assert!(err.contains("provided port is already allocated"), "{err}");
}

#[test]
fn node_ports_are_allocated_unique_and_released_embedded() {
    allocation_lifecycle(Backend::Embedded);
}

#[test]
fn node_ports_are_allocated_unique_and_released_etcd() {
    allocation_lifecycle(Backend::Etcd);
}

fn small_range_survives_restart(backend: Backend) {
    let mut cp = ControlPlane::start_with(backend, |c| {
        c.service_node_port_range = "30100-30102".into();
    })
    .unwrap();
    let k = cp.kubectl();
    let err = stderr_of(
        &k,
        &["create", "-f", "-"],
        &service("out", "NodePort", &[("a", 80, 30000)], ""),
    );
    assert!(
        err.contains("The range of valid ports is 30100-30102"),
        "{err}"
    );
    k.ok_stdin(
        &["create", "-f", "-"],
        &service("a", "NodePort", &[("p1", 80, 0), ("p2", 81, 0)], ""),
    );
    let first = node_ports(&k, "a");
    let err = stderr_of(
        &k,
        &["create", "-f", "-"],
        &service("b", "NodePort", &[("p1", 80, 0), ("p2", 81, 0)], ""),
    );
    assert!(
        err.contains("failed to allocate a nodePort: range is full"),
        "{err}"
    );
    assert_eq!(records(&cp, PORTS).len(), 2, "the full range left nothing");
    cp.restart().unwrap();
    let k = cp.kubectl();
    assert_eq!(node_ports(&k, "a"), first, "ports kept across the restart");
    k.ok_stdin(
        &["create", "-f", "-"],
        &service("c", "NodePort", &[("p1", 80, 0)], ""),
    );
    let last = node_ports(&k, "c");
    let all: BTreeSet<u16> = first.iter().chain(&last).copied().collect();
    assert_eq!(all, (30100..=30102).collect(), "no port handed out twice");
    let err = stderr_of(
        &k,
        &["create", "-f", "-"],
        &service("d", "NodePort", &[("p1", 80, 0)], ""),
    );
    assert!(err.contains("range is full"), "{err}");
    k.ok(&["delete", "svc", "c"]);
    eventually("the port released", || records(&cp, PORTS).len() == 2);
    k.ok_stdin(
        &["create", "-f", "-"],
        &service("d", "NodePort", &[("p1", 80, 0)], ""),
    );
    assert_eq!(node_ports(&k, "d"), last);
}

#[test]
fn node_port_range_is_configurable_and_survives_restart_embedded() {
    small_range_survives_restart(Backend::Embedded);
}

#[test]
fn node_port_range_is_configurable_and_survives_restart_etcd() {
    small_range_survives_restart(Backend::Etcd);
}

/// kube-apiserver's `default/kubernetes`: the range's first address, 443 → the secure port, and
/// endpoints from every live API server's lease; deleted, it comes back, and an expired lease
/// (a server gone without saying so) leaves the endpoints.
#[test]
fn the_kubernetes_service_points_at_every_live_api_server() {
    let cp = ControlPlane::start_with(Backend::Embedded, |c| {
        c.advertise_address = Some("10.1.2.3".parse().unwrap());
    })
    .unwrap();
    let k = cp.kubectl();
    let port = cp.running().addr.port().to_string();
    let get = |what: &str, path: &str| {
        k.ok(&["get", what, "kubernetes", "-o", &format!("jsonpath={path}")])
    };
    assert_eq!(get("svc", "{.spec.clusterIP}"), "10.96.0.1");
    // In-cluster clients check the serving certificate against that IP or the Service's names.
    let cert = cp.data_dir.join("pki/apiserver.crt");
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let sans = String::from_utf8_lossy(&out.stdout);
    for name in [
        "IP Address:10.96.0.1",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
    ] {
        assert!(
            sans.split(", ").any(|s| s.trim() == name),
            "{name} missing from the serving certificate: {sans}"
        );
    }
    assert_eq!(
        get(
            "svc",
            "{.spec.ports[0].name} {.spec.ports[0].port} {.spec.ports[0].targetPort}"
        ),
        format!("https 443 {port}")
    );
    assert_eq!(
        get(
            "endpoints",
            "{.subsets[0].addresses[*].ip}:{.subsets[0].ports[0].port}"
        ),
        format!("10.1.2.3:{port}")
    );
    assert_eq!(
        get(
            "endpointslice",
            "{.endpoints[*].addresses[0]} {.metadata.labels.kubernetes\\.io/service-name}"
        ),
        "10.1.2.3 kubernetes"
    );
    // Another server's live lease and a stale one, then the Service deleted.
    let api = cp.api();
    let far = (std::time::SystemTime::now() + Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (ip, expires) in [("10.1.2.4", far), ("10.1.2.9", 1)] {
        cp.block_on(api.store.create(
            &format!("/registry/masterleases/{ip}"),
            expires.to_string().into_bytes(),
        ))
        .unwrap();
    }
    k.ok(&["delete", "svc", "kubernetes"]);
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let ips = k
            .run(&[
                "get",
                "endpoints",
                "kubernetes",
                "-o",
                "jsonpath={.subsets[0].addresses[*].ip}",
            ])
            .stdout;
        let svc = k.run(&[
            "get",
            "svc",
            "kubernetes",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ]);
        if String::from_utf8_lossy(&ips) == "10.1.2.3 10.1.2.4"
            && String::from_utf8_lossy(&svc.stdout) == "10.96.0.1"
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "endpoints {:?}, service {svc:?}",
            String::from_utf8_lossy(&ips)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let stale = cp.block_on(api.store.get("/registry/masterleases/10.1.2.9"));
    assert!(stale.unwrap().0.is_none(), "the expired lease is deleted");
}

/// A server on loopback (no `--advertise-address`) keeps the Service but lists no endpoint: a
/// loopback address means nothing inside a pod.
#[test]
fn a_loopback_api_server_advertises_no_endpoint() {
    let cp = ControlPlane::start(Backend::Embedded).unwrap();
    let k = cp.kubectl();
    assert_eq!(
        k.ok(&[
            "get",
            "svc",
            "kubernetes",
            "-o",
            "jsonpath={.spec.clusterIP}"
        ]),
        "10.96.0.1"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={.subsets}"
        ]),
        ""
    );
}

//! `pea up --nodes 2` → a Deployment of two busybox httpd replicas, one per node (required pod
//! anti-affinity) → both Running on different node subnets, one pod fetching a page from the
//! other over the VXLAN overlay through `kubectl exec` (pea-control → kubelet → pea-shim), and
//! the same through the Service's name (pea-dns + pea-proxy) and through an Ingress from the
//! underlay (pea-ingress) → `pea down` leaves nothing of the
//! cluster behind. kubectl runs on the host with a fresh HOME, through the kubeconfig `pea up`
//! printed (the loopback forwarder).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pea_tests::bins::workspace_binary;
use pea_tests::cluster::{
    down_leaves_nothing, pea, pids, programs_in_node, require_cluster_programs, Down, Kubectl,
};
use pea_tests::leakguard::Snapshot;
use pea_tests::netlab::random_suffix;
use pea_tests::privileged::{require_program, require_root};
use serde_json::Value;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: web}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: web
        image: 172.30.0.1:5000/library/busybox:v1
        command: ["/bin/sh", "-c", "echo hello from $(hostname) > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: pea
  rules:
  - host: web.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;

#[test]
fn pea_up_two_nodes_runs_a_deployment_across_the_overlay_and_pea_down_leaves_nothing() {
    require_root();
    require_cluster_programs(&["curl"]);
    let name = format!("t{}", random_suffix(3));
    let before = Snapshot::take().expect("snapshot");
    let guard = Down(name.clone());

    let start = Instant::now();
    let out = pea(&["up", "--nodes", "2", "--name", &name]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pea up failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "pea up --nodes 2: all nodes Ready in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let kubeconfig = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pea up: export KUBECONFIG="))
        .expect("pea up prints the KUBECONFIG")
        .to_string();
    assert!(
        stdout.contains(&format!("{name}-0")) && stdout.contains(&format!("{name}-1")),
        "{stdout}"
    );
    let k = Kubectl::new(kubeconfig.into());

    // A second up finds the cluster up and changes nothing.
    let again = pea(&["up", "--nodes", "2", "--name", &name]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains("is already up"));
    let status = pea(&["status", "--name", &name]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    let shown = String::from_utf8_lossy(&status.stdout);
    for addon in ["pea-dns", "pea-ingress"] {
        assert!(
            shown.contains(&format!("deployment/{addon:<13} available (1/1)")),
            "{shown}"
        );
    }

    let applied = k.run(&["apply", "-f", "-"], Some(DEPLOYMENT));
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let mut pods: Vec<(String, String, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let v: Value =
            serde_json::from_str(&k.ok(&["get", "pods", "-l", "app=web", "-o", "json"])).unwrap();
        pods = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string())
            .map(|p| {
                (
                    p["metadata"]["name"].as_str().unwrap().to_string(),
                    p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                    p["status"]["podIP"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        if pods.len() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        pods.len(),
        2,
        "two Running pods: {}",
        k.ok(&["get", "pods", "-o", "wide"])
    );
    let (a, b) = (&pods[0], &pods[1]);
    assert_ne!(a.1, b.1, "one pod per node: {pods:?}");
    let subnet = |ip: &str| ip.rsplit_once('.').unwrap().0.to_string();
    assert_ne!(
        subnet(&a.2),
        subnet(&b.2),
        "pods on different node subnets: {pods:?}"
    );

    // Pod a → pod b's IP on the other node, over VXLAN; kubectl exec goes through pea-control,
    // a's kubelet and its pea-shim. (No `wget -T`: it crashes the fixture's static busybox.)
    let page = k.ok(&[
        "exec",
        &a.0,
        "--",
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{}:8080/", b.2),
    ]);
    assert_eq!(page.trim(), format!("hello from {}", b.0));
    let page = k.ok(&[
        "exec",
        &b.0,
        "--",
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{}:8080/", a.2),
    ]);
    assert_eq!(page.trim(), format!("hello from {}", a.0));
    // The Service by name: pea-dns at the clusterDNS IP, pea-proxy's DNAT to either pod.
    web_by_name(&k, &a.0, "http://web/ from a pod");

    kubernetes_service_reaches_the_api(&name, &k, &a.0);

    // The Ingress from outside the nodes: the cluster's underlay namespace, through pea-ingress
    // on node 0's address.
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let out = Command::new("timeout")
            .args([
                "10",
                "ip",
                "netns",
                "exec",
                &format!("pea-{name}"),
                "busybox",
                "wget",
            ])
            .args([
                "-q",
                "-O",
                "-",
                "--header",
                "Host: web.example",
                "http://172.30.0.10:80/",
            ])
            .output()
            .unwrap();
        seen = String::from_utf8_lossy(&out.stdout).into_owned();
        if seen.starts_with("hello from web-") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        seen.starts_with("hello from web-"),
        "the Ingress from the underlay: {seen:?}"
    );

    addons_are_pods_the_kubelet_restarts(&name, &k, &a.0);

    a_killed_agent_is_started_again_by_pea_supervise(&name, &k);

    let run_dir = PathBuf::from("/run/pea").join(&name);
    let started = pids(&run_dir);
    // The registry, pea-control, the loopback forwarder and one pea-agent per node.
    assert!(started.len() >= 5, "pid files: {started:?}");
    addons_run_as_themselves(&name, &run_dir, &started, &k);
    down_leaves_nothing(&name, &before, guard, &started);
}

/// `default/kubernetes` as in-cluster clients use it: the pod's KUBERNETES_SERVICE_HOST, a TCP
/// connection by DNS name from the pod through pea-proxy, and from node 1 itself (its default
/// route lets the ClusterIP be routed before the DNAT) the API answering the pod's
/// service-account token over HTTPS as that account.
fn kubernetes_service_reaches_the_api(name: &str, k: &Kubectl, pod: &str) {
    let env = k.ok(&["exec", pod, "--", "env"]);
    assert!(env.contains("KUBERNETES_SERVICE_HOST=10.96.0.1"), "{env}");
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && !seen.contains("connected") {
        let out = k.run(
            &[
                "exec",
                pod,
                "--",
                "sh",
                "-c",
                "nc -w 5 kubernetes.default.svc.cluster.local 443 </dev/null && echo connected",
            ],
            None,
        );
        seen = String::from_utf8_lossy(&out.stdout).into_owned();
        if !seen.contains("connected") {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    assert!(
        seen.contains("connected"),
        "kubernetes.default:443 from a pod: {seen:?}"
    );
    let token = k.ok(&[
        "exec",
        pod,
        "--",
        "cat",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
    ]);
    let out = Command::new("timeout")
        .args([
            "20",
            "ip",
            "netns",
            "exec",
            &format!("pea-{name}-1"),
            "curl",
        ])
        .args(["-sk", "-m", "10", "-H"])
        .arg(format!("Authorization: Bearer {}", token.trim()))
        .arg("https://10.96.0.1/api/v1/namespaces/default/pods")
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains(r#"User \"system:serviceaccount:default:default\" cannot list"#),
        "the API through 10.96.0.1 from node 1, as the pod's account: {body} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 20: every add-on runs under its own least-privilege identity. No process of the
/// cluster has the admin's kubeconfig on its command line; each add-on names its own (0600);
/// each identity may do what its program calls and gets kube's 403 beyond (asked with `kubectl
/// auth can-i --as`, and once with the identity's own credentials).
/// pea-dns and pea-ingress are Deployments of kube-system on node 0, running as their
/// ServiceAccounts (their in-cluster clients reach the API through the `kubernetes` Service):
/// `kubectl logs` reads them, and a killed pea-dns is restarted by the kubelet and answers again.
fn addons_are_pods_the_kubelet_restarts(name: &str, k: &Kubectl, client_pod: &str) {
    let node0 = format!("{name}-0");
    for (selector, account) in [
        ("k8s-app=kube-dns", "pea-dns"),
        ("app.kubernetes.io/name=pea-ingress", "pea-ingress"),
    ] {
        let got = k.ok(&[
            "-n",
            "kube-system",
            "get",
            "pods",
            "-l",
            selector,
            "-o",
            "jsonpath={.items[0].spec.serviceAccountName} {.items[0].spec.nodeName} {.items[0].status.phase}",
        ]);
        assert_eq!(got, format!("{account} {node0} Running"), "{selector}");
        let logs = k.ok(&["-n", "kube-system", "logs", &format!("deploy/{account}")]);
        assert!(!logs.trim().is_empty(), "kubectl logs deploy/{account}");
    }
    // The pea-dns process: the one in node 0's network namespace.
    let dns_pid = *programs_in_node(&node0, &["/usr/local/bin/pea-dns"])
        .first()
        .expect("the pea-dns container's process in node 0's namespace");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dns_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let restarted = || {
        k.ok(&[
            "-n",
            "kube-system",
            "get",
            "pods",
            "-l",
            "k8s-app=kube-dns",
            "-o",
            "jsonpath={.items[0].status.containerStatuses[0].restartCount} {.items[0].status.containerStatuses[0].ready}",
        ])
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut state = restarted();
    while state != "1 true" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        state = restarted();
    }
    assert_eq!(state, "1 true", "pea-dns killed: restartCount and ready");
    web_by_name(k, client_pod, "http://web/ after pea-dns was restarted");
}

/// `http://web/` from `pod` answers from a web pod within 20 s (the name through pea-dns).
fn web_by_name(k: &Kubectl, pod: &str, what: &str) {
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && !seen.starts_with("hello from web-") {
        let out = k.run(
            &["exec", pod, "--", "wget", "-q", "-O", "-", "http://web:80/"],
            None,
        );
        seen = String::from_utf8_lossy(&out.stdout).into_owned();
        if !seen.starts_with("hello from web-") {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    assert!(seen.starts_with("hello from web-"), "{what}: {seen:?}");
}

/// kill -9 of node 1's pea-agent: `pea supervise` starts it again (a new pid), the node is
/// Ready again and `pea status` counts the restart.
fn a_killed_agent_is_started_again_by_pea_supervise(name: &str, k: &Kubectl) {
    let pid_file = PathBuf::from(format!("/run/pea/{name}/{name}-1-agent.pid"));
    let read = || -> u32 {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    };
    let old = read();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 of node 1's pea-agent");
    let end = Instant::now() + Duration::from_secs(15);
    let mut new = old;
    while Instant::now() < end && (new == old || !Path::new(&format!("/proc/{new}")).exists()) {
        std::thread::sleep(Duration::from_millis(100));
        new = read();
    }
    let log = std::fs::read_to_string(format!("/var/lib/pea/clusters/{name}/logs/supervise.log"))
        .unwrap_or_default();
    assert!(
        new != old && Path::new(&format!("/proc/{new}")).exists(),
        "node 1's pea-agent (pid {old}) was not started again; pea supervise's log:\n{log}"
    );
    // Started again in its node's UTS namespace too. The pid is nsenter's until it has joined
    // the namespaces and exec'd the agent, so the host's name may show for a moment.
    let want = format!("{name}-1");
    let end = Instant::now() + Duration::from_secs(15);
    let mut host = uts_hostname(new);
    while host != want && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        host = uts_hostname(new);
    }
    assert_eq!(host, want);
    let ready = k.run(
        &[
            "wait",
            "--for=condition=Ready",
            &format!("node/{name}-1"),
            "--timeout=60s",
        ],
        None,
    );
    assert!(
        ready.status.success(),
        "node 1 not Ready after its agent's restart: {}",
        String::from_utf8_lossy(&ready.stderr)
    );
    let status = pea(&["status", "--name", name]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status
            .lines()
            .any(|l| l.contains(&format!("{name}-1-agent"))
                && l.contains("running")
                && l.contains("restarted 1 time(s)")),
        "pea status: {status}"
    );
}

fn agent_pid(run_dir: &Path, name: &str, node: usize) -> u32 {
    std::fs::read_to_string(run_dir.join(format!("{name}-{node}-agent.pid")))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The hostname in process `pid`'s UTS namespace.
fn uts_hostname(pid: u32) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--uts=/proc/{pid}/ns/uts"))
        .arg("hostname")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn addons_run_as_themselves(name: &str, run_dir: &Path, started: &[u32], k: &Kubectl) {
    let cmdline = |pid: u32| {
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
            .replace('\0', " ")
    };
    for &p in started {
        let cmd = cmdline(p);
        assert!(!cmd.contains("admin.kubeconfig"), "process {p}: {cmd}");
    }
    // Each node's agent, and pea-dns (a hostNetwork pod: the shim's UTS namespace, as on a real
    // node), see the node's name as their hostname; the host's own stays.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    use std::os::unix::fs::MetadataExt;
    let node0_net = std::fs::metadata(format!("/run/netns/pea-{name}-0"))
        .unwrap()
        .ino();
    let pea_dns = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|&p| {
            cmdline(p).starts_with("/usr/local/bin/pea-dns ")
                && std::fs::metadata(format!("/proc/{p}/ns/net"))
                    .is_ok_and(|m| m.ino() == node0_net)
        })
        .expect("this cluster's pea-dns process");
    for (node, pid) in [
        (0, agent_pid(run_dir, name, 0)),
        (1, agent_pid(run_dir, name, 1)),
        (0, pea_dns),
    ] {
        assert_eq!(
            uts_hostname(pid),
            format!("{name}-{node}"),
            "process {pid}: {}",
            cmdline(pid)
        );
    }
    assert_ne!(host.trim(), format!("{name}-0"));
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host
    );
    let state = PathBuf::from("/var/lib/pea/clusters").join(name);
    // Each node's pea-agent passes pea-proxy and pea-flanneld their own kubeconfigs.
    for (node, flag, kubeconfig) in [
        (0, "--proxy-arg=kubeconfig", "proxy.kubeconfig"),
        (1, "--proxy-arg=kubeconfig", "proxy.kubeconfig"),
        (1, "--flanneld-arg=kubeconfig-file", "flanneld.kubeconfig"),
    ] {
        let pid_file = format!("{name}-{node}-agent");
        let kubeconfig = state.join(format!("{name}-{node}/{kubeconfig}"));
        let pid: u32 = std::fs::read_to_string(run_dir.join(format!("{pid_file}.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let cmd = cmdline(pid);
        assert!(
            cmd.contains(&format!(" {flag}={} ", kubeconfig.display())),
            "{pid_file}: {cmd}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kubeconfig).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", kubeconfig.display());
    }
    let can = |user: &str, verb: &str, what: &str| {
        let (resource, sub) = what.split_once('/').unwrap_or((what, ""));
        let mut args = vec!["auth", "can-i", verb, resource, "--as", user, "-A"];
        let sub = format!("--subresource={sub}");
        if sub.len() > "--subresource=".len() {
            args.push(&sub);
        }
        let out = k.run(&args, None);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    // (user, what it may do, what it may not), each a (verb, resource[/subresource]).
    type Checks<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, Checks, Checks); 4] = [
        (
            "system:kube-proxy",
            &[
                ("watch", "services"),
                ("list", "endpointslices.discovery.k8s.io"),
                ("watch", "nodes"),
                ("create", "events"),
            ],
            &[("list", "secrets"), ("patch", "nodes"), ("create", "pods")],
        ),
        (
            "system:pea-flanneld",
            &[
                ("watch", "nodes"),
                ("get", "nodes"),
                ("patch", "nodes/status"),
            ],
            &[
                ("list", "pods"),
                ("list", "secrets"),
                ("delete", "nodes"),
                ("patch", "nodes"),
            ],
        ),
        (
            "system:serviceaccount:kube-system:pea-dns",
            &[
                ("watch", "namespaces"),
                ("watch", "services"),
                ("watch", "endpointslices.discovery.k8s.io"),
            ],
            &[
                ("list", "secrets"),
                ("list", "pods"),
                ("create", "services"),
            ],
        ),
        (
            "system:serviceaccount:kube-system:pea-ingress",
            &[
                ("watch", "ingresses.networking.k8s.io"),
                ("list", "ingressclasses.networking.k8s.io"),
                ("patch", "ingresses.networking.k8s.io/status"),
                ("watch", "secrets"),
                ("create", "events"),
            ],
            &[
                ("update", "ingresses.networking.k8s.io"),
                ("list", "configmaps"),
                ("create", "pods"),
            ],
        ),
    ];
    for (user, allowed, refused) in cases {
        for (verb, what) in allowed {
            assert!(can(user, verb, what), "{user} may {verb} {what}");
        }
        for (verb, what) in refused {
            assert!(!can(user, verb, what), "{user} may not {verb} {what}");
        }
    }
    // With the proxy's own credentials (the API listens inside node 0's namespace).
    let cache = tempfile::tempdir().unwrap();
    let proxy_kc = state.join(format!("{name}-0/proxy.kubeconfig"));
    let own = |args: &[&str]| {
        Command::new("timeout")
            .args([
                "30",
                "ip",
                "netns",
                "exec",
                &format!("pea-{name}-0"),
                "kubectl",
            ])
            .arg("--kubeconfig")
            .arg(&proxy_kc)
            .arg("--cache-dir")
            .arg(cache.path())
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap()
    };
    let out = own(&["get", "services", "-A", "-o", "name"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("service/web"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = own(&["get", "secrets", "-A"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(
                "User \"system:kube-proxy\" cannot list resource \"secrets\" in API group \"\" at the cluster scope"
            ),
        "{err}"
    );
}

#[test]
fn bad_arguments_are_named_and_leave_nothing() {
    require_root();
    for (args, want) in [
        (&["up", "--nodes", "0", "--name", "tbad"][..], "--nodes 0"),
        (&["up", "--nodes", "21", "--name", "tbad"][..], "--nodes 21"),
        (
            &["up", "--name", "Bad_Name"][..],
            "cluster name \"Bad_Name\"",
        ),
        (&["down", "--name", "../etc"][..], "cluster name \"../etc\""),
    ] {
        let out = pea(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "pea {args:?}: {err}"
        );
    }
    assert!(!Path::new("/run/netns/pea-tbad").exists());
    assert!(!Path::new("/var/lib/pea/clusters/tbad").exists());
    let out = pea(&["status", "--name", "tnone"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "status of a cluster that is not up"
    );
    let out = pea(&["down", "--name", "tnone"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("no cluster tnone")
    );
}

#[test]
fn a_failed_step_is_named_and_up_removes_what_it_made() {
    require_root();
    for p in [
        "docker-registry",
        "skopeo",
        "nsenter",
        "setsid",
        "busybox",
        "kubectl",
    ] {
        require_program(p);
    }
    // The real programs, but a pea-control that exits at once.
    let real = workspace_binary("pea-control", "PEA_CONTROL");
    let bins = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(real.parent().unwrap()).unwrap().flatten() {
        let n = e.file_name();
        if n.to_string_lossy().starts_with("pea-") && e.path().is_file() {
            std::os::unix::fs::symlink(e.path(), bins.path().join(&n)).unwrap();
        }
    }
    let fake = bins.path().join("pea-control");
    std::fs::remove_file(&fake).unwrap();
    std::fs::write(
        &fake,
        "#!/bin/sh\necho pea-control: refusing to start >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let name = format!("t{}", random_suffix(3));
    let _guard = Down(name.clone());
    let out = Command::new(workspace_binary("pea", "PEA_CLI"))
        .args(["up", "--nodes", "2", "--name", &name])
        .env("PEA_BIN_DIR", bins.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "pea up with a failing pea-control succeeded"
    );
    assert!(err.contains("FAILED at step: pea-control on"), "{err}");
    assert!(
        err.contains("refusing to start"),
        "the program's log is shown: {err}"
    );
    assert!(
        !Path::new(&format!("/run/netns/pea-{name}")).exists(),
        "{err}"
    );
    assert!(!Path::new(&format!("/run/netns/pea-{name}-0")).exists());
    assert!(!Path::new("/var/lib/pea/clusters").join(&name).exists());
    assert!(!Path::new("/run/pea").join(&name).exists());
}

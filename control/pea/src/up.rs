//! `pea up`: the underlay, the registry with the pause and busybox images, pea-control on node 0,
//! the host's loopback way to the API, then every node's agent (pea-shim, pea-kubelet,
//! pea-flanneld and pea-proxy in one pea-agent process, as k3s's agent), and cluster DNS; it
//! waits for every node Ready. A failed step is named, and what was made so far
//! is removed again.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::addons;
use crate::cluster::{Cluster, API_PORT, BRIDGE, CLUSTER_CIDR, CLUSTER_DNS, UNDERLAY};
use crate::identities;
use crate::proc::{self, ip, run, spawn, wait_for};

const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Pulling the add-ons' image from the local registry and starting them takes seconds.
const ADDON_TIMEOUT: Duration = Duration::from_secs(120);

pub fn up(c: &Cluster, etcd: bool) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("pea up makes network namespaces and runs containers: run it as root");
    }
    if c.run_dir().join("up").exists() {
        let down: Vec<String> = c
            .services()
            .into_iter()
            .filter(|s| !proc::read_pid(&c.pid_file(s)).is_some_and(proc::alive))
            .filter(|s| c.pid_file(s).exists())
            .collect();
        if !down.is_empty() {
            bail!(
                "cluster {} is up but not whole ({} not running): `pea down --name {}` first",
                c.name,
                down.join(", "),
                c.name
            );
        }
        println!("pea up: cluster {} is already up", c.name);
        return finish(c);
    }
    if c.state_dir().exists() || c.netns_file(None).exists() {
        bail!(
            "cluster {} is partly there (an earlier up failed or is running): `pea down --name {}` first",
            c.name,
            c.name
        );
    }
    let start = Instant::now();
    let mut steps = Steps::default();
    let result = build(c, etcd, &mut steps);
    if let Err(e) = result {
        eprintln!(
            "pea up: FAILED at step: {} — removing what was made",
            steps.current
        );
        if let Err(d) = crate::down::down_quiet(c) {
            eprintln!("pea up: cleanup after the failure: {d:#}");
        }
        return Err(e.context(format!("step {:?}", steps.current)));
    }
    std::fs::write(c.run_dir().join("up"), "")?;
    supervisor(c)?;
    println!(
        "pea up: cluster {} with {} node(s) Ready in {:.1} s",
        c.name,
        c.nodes,
        start.elapsed().as_secs_f64()
    );
    finish(c)
}

#[derive(Default)]
struct Steps {
    current: String,
    started: Option<Instant>,
}

impl Steps {
    fn step(&mut self, what: impl Into<String>) {
        if let Some(s) = self.started {
            println!("pea up:   ({:.1} s)", s.elapsed().as_secs_f64());
        }
        self.current = what.into();
        self.started = Some(Instant::now());
        println!("pea up: {}", self.current);
    }
}

fn build(c: &Cluster, etcd: bool, s: &mut Steps) -> Result<()> {
    s.step("checking programs");
    for p in [
        "ip",
        "nsenter",
        "setsid",
        "docker-registry",
        "skopeo",
        "kubectl",
        "busybox",
    ] {
        if run("sh", &["-c", &format!("command -v {p}")]).is_err() {
            bail!("{p} is not installed (tests/scripts/prereqs.sh installs it)");
        }
    }
    for b in [
        "pea-control",
        "pea-agent",
        "pea-runtime",
        "pea-monitor",
        "pea-cni",
        "pea-dns",
        "pea-ingress",
        "pea-fixture",
        "pea-crictl",
    ] {
        if !c.binary(b).is_file() {
            bail!(
                "{} not found: build the workspace (cargo build --release)",
                c.binary(b).display()
            );
        }
    }
    for d in [c.state_dir().join("logs"), c.run_dir()] {
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    }

    s.step(format!(
        "underlay: namespace {} with bridge {BRIDGE} {UNDERLAY}.0/24",
        c.netns(None)
    ));
    let cl = c.netns(None);
    run("ip", &["netns", "add", &cl])?;
    ip(&cl, &["link", "set", "lo", "up"])?;
    ip(&cl, &["link", "add", BRIDGE, "type", "bridge"])?;
    ip(
        &cl,
        &[
            "addr",
            "add",
            &format!("{}/24", c.bridge_ip()),
            "dev",
            BRIDGE,
        ],
    )?;
    ip(&cl, &["link", "set", BRIDGE, "up"])?;
    for i in 0..c.nodes {
        let ns = c.netns(Some(i));
        s.step(format!(
            "node {}: namespace {ns}, eth0 {}",
            c.node_name(i),
            c.node_ip(i)
        ));
        run("ip", &["netns", "add", &ns])?;
        let port = format!("n{i}");
        ip(
            &cl,
            &[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        ip(&cl, &["link", "set", &port, "master", BRIDGE, "up"])?;
        ip(
            &ns,
            &[
                "addr",
                "add",
                &format!("{}/24", c.node_ip(i)),
                "dev",
                "eth0",
            ],
        )?;
        ip(&ns, &["link", "set", "eth0", "up"])?;
        ip(&ns, &["link", "set", "lo", "up"])?;
        // A default route, as every host has: the kernel routes a locally made packet before
        // pea-proxy's DNAT, so without one a Service IP is "unreachable" from the node itself.
        ip(&ns, &["route", "add", "default", "via", &c.bridge_ip()])?;
        // The node routes its pods' traffic (as any Kubernetes node host does).
        run(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
        )?;
        for d in [
            "net.d", "ipam", "root", "state", "runtime", "logs", "kubelet",
        ] {
            std::fs::create_dir_all(c.node_dir(i).join(d))?;
        }
        std::fs::create_dir_all(c.run_dir().join(c.node_name(i)))?;
    }

    s.step(format!(
        "image registry on {} with pause, busybox and the add-ons ({})",
        c.registry(),
        addons::PROGRAMS.join(", ")
    ));
    registry(c)?;

    if etcd {
        s.step(format!(
            "etcd: 3 members on {}'s loopback ({})",
            c.node_name(0),
            crate::etcd::endpoints()
        ));
        crate::etcd::start(c)?;
    }

    s.step(format!(
        "pea-control on {} ({}, store: {})",
        c.node_name(0),
        c.api_url(),
        if etcd { "etcd" } else { "embedded" }
    ));
    control(c, etcd)?;

    s.step("the add-ons' ClusterRoles and bindings (their own identities, not the admin's)");
    kubectl_in_cluster(
        c,
        &["apply", "-f", "-"],
        Some(&identities::rbac().to_string()),
    )?;

    s.step("the API on the host's loopback (pea forward)");
    forwarder(c)?;

    for i in 0..c.nodes {
        s.step(format!(
            "node {}: pea-agent (pea-shim, pea-kubelet, pea-flanneld, pea-proxy)",
            c.node_name(i)
        ));
        node(c, i)?;
    }

    s.step(format!(
        "Prometheus scrape configuration {}",
        crate::prometheus::config_file(c).display()
    ));
    crate::prometheus::write(c)?;

    s.step(format!("waiting for {} node(s) Ready", c.nodes));
    let ok = wait_for(READY_TIMEOUT, || ready_nodes(c) >= c.nodes);
    if !ok {
        bail!(
            "{} of {} nodes Ready after {READY_TIMEOUT:?}; agent log of {}:\n{}",
            ready_nodes(c),
            c.nodes,
            c.node_name(0),
            proc::tail(&c.log_file(&format!("{}-agent", c.node_name(0))), 20)
        );
    }
    s.step(format!(
        "cluster DNS: Deployment kube-system/pea-dns on {} behind Service kube-system/kube-dns {CLUSTER_DNS}",
        c.node_name(0)
    ));
    kubectl_in_cluster(
        c,
        &["apply", "-f", "-"],
        Some(&addons::dns(&addons::Placement::node0(c)).to_string()),
    )?;
    s.step(format!(
        "ingress: Deployment kube-system/pea-ingress on {}:80 and :443",
        c.node_ip(0)
    ));
    kubectl_in_cluster(
        c,
        &["apply", "-f", "-"],
        Some(&addons::ingress(&addons::Placement::node0(c)).to_string()),
    )?;
    for d in ["pea-dns", "pea-ingress"] {
        s.step(format!(
            "waiting for Deployment kube-system/{d} to be available"
        ));
        rollout(c, d)?;
    }
    s.step("done");
    Ok(())
}

/// Waits for an add-on's Deployment to roll out; on failure, says what its pod shows.
fn rollout(c: &Cluster, name: &str) -> Result<()> {
    let wait = kubectl_in_cluster(
        c,
        &[
            "-n",
            addons::NAMESPACE,
            "rollout",
            "status",
            &format!("deployment/{name}"),
            &format!("--timeout={}s", ADDON_TIMEOUT.as_secs()),
        ],
        None,
    );
    if let Err(e) = wait {
        let pods = kubectl_in_cluster(
            c,
            &["-n", addons::NAMESPACE, "get", "pods", "-o", "wide"],
            None,
        )
        .unwrap_or_default();
        bail!(
            "Deployment {}/{name} not available after {ADDON_TIMEOUT:?}: {e:#}\n{pods}agent log of {}:\n{}",
            addons::NAMESPACE,
            c.node_name(0),
            proc::tail(&c.log_file(&format!("{}-agent", c.node_name(0))), 20)
        );
    }
    Ok(())
}

fn netns_path(c: &Cluster, node: Option<usize>) -> std::path::PathBuf {
    c.netns_file(node)
}

fn bin(c: &Cluster, name: &str) -> String {
    c.binary(name).display().to_string()
}

fn registry(c: &Cluster) -> Result<()> {
    let data = c.state_dir().join("registry");
    std::fs::create_dir_all(&data)?;
    let conf = c.state_dir().join("registry.yml");
    std::fs::write(
        &conf,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {}\n",
            data.display(),
            c.registry()
        ),
    )?;
    spawn(
        Some(&netns_path(c, None)),
        None,
        &[
            "docker-registry".into(),
            "serve".into(),
            conf.display().to_string(),
        ],
        &[],
        &c.log_file("registry"),
        &c.pid_file("registry"),
    )?;
    let cl = c.netns(None);
    let url = format!("http://{}/v2/", c.registry());
    if !wait_for(Duration::from_secs(20), || {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &cl,
                "busybox",
                "wget",
                "-q",
                "-O",
                "/dev/null",
                &url,
            ],
        )
        .is_ok()
    }) {
        bail!(
            "docker-registry not answering on {url}: {}",
            proc::tail(&c.log_file("registry"), 10)
        );
    }
    let images = c.state_dir().join("images");
    // The add-ons' image holds this build's pea-dns and pea-ingress (with their libraries).
    let programs: Vec<String> = addons::PROGRAMS
        .iter()
        .flat_map(|p| ["--bin".to_string(), bin(c, p)])
        .collect();
    let addons_repo = format!("{}:{}", addons::IMAGE_REPO, addons::IMAGE_TAG);
    for (kind, tag, repo, extra) in [
        ("busybox", "v1", "library/busybox:v1", &[][..]),
        ("pause", "3.10", "pea/pause:3.10", &[][..]),
        ("programs", addons::IMAGE_TAG, &addons_repo, &programs[..]),
    ] {
        let layout = images.join(kind);
        let mut args = vec![
            "image".to_string(),
            kind.into(),
            "--layout".into(),
            layout.display().to_string(),
            "--tag".into(),
            tag.into(),
        ];
        args.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&bin(c, "pea-fixture"), &args)?;
        run(
            "ip",
            &[
                "netns",
                "exec",
                &cl,
                "skopeo",
                "--insecure-policy",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                &format!("oci:{}:{tag}", layout.display()),
                &format!("docker://{}/{repo}", c.registry()),
            ],
        )?;
    }
    std::fs::remove_dir_all(&images)?;
    Ok(())
}

/// kubectl as the cluster admin inside node 0 (the API's own namespace).
pub fn kubectl_in_cluster(c: &Cluster, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let kc = c.control_dir().join("admin.kubeconfig");
    crate::kubectl::kubectl_in(Some(&c.netns(Some(0))), &kc, args, stdin)
}

fn control(c: &Cluster, etcd: bool) -> Result<()> {
    let mut args = vec![
        bin(c, "pea-control"),
        "--data-dir".into(),
        c.control_dir().display().to_string(),
        "--listen".into(),
        format!("{}:{API_PORT}", c.node_ip(0)),
        "--cluster-cidr".into(),
        CLUSTER_CIDR.into(),
    ];
    if etcd {
        args.extend(["--etcd".into(), crate::etcd::endpoints()]);
    }
    let pid = spawn(
        Some(&netns_path(c, Some(0))),
        None,
        &args,
        &[("RUST_LOG", "info")],
        &c.log_file("control"),
        &c.pid_file("control"),
    )?;
    let admin = c.control_dir().join("admin.kubeconfig");
    proc::wait_started(
        "pea-control",
        pid,
        &c.log_file("control"),
        Duration::from_secs(30),
        || admin.exists() && kubectl_in_cluster(c, &["get", "--raw", "/readyz"], None).is_ok(),
    )?;
    Ok(())
}

/// `pea supervise`: from now on a process of the cluster that dies is started again.
fn supervisor(c: &Cluster) -> Result<()> {
    let me = std::env::current_exe()?.display().to_string();
    let log = c.log_file(crate::supervise::SERVICE);
    let pid = spawn(
        None,
        None,
        &[me, "supervise".into(), "--name".into(), c.name.clone()],
        &[],
        &log,
        &c.pid_file(crate::supervise::SERVICE),
    )?;
    proc::wait_started("pea supervise", pid, &log, Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("pea supervise: watching"))
    })
}

fn forwarder(c: &Cluster) -> Result<()> {
    let port_file = c.run_dir().join("api.port");
    let me = std::env::current_exe()?.display().to_string();
    spawn(
        None,
        None,
        &[
            me,
            "forward".into(),
            "--netns".into(),
            c.netns_file(Some(0)).display().to_string(),
            "--to".into(),
            format!("{}:{API_PORT}", c.node_ip(0)),
            "--port-file".into(),
            port_file.display().to_string(),
        ],
        &[],
        &c.log_file("forward"),
        &c.pid_file("forward"),
    )?;
    if !wait_for(Duration::from_secs(10), || port_file.exists()) {
        bail!(
            "pea forward did not start: {}",
            proc::tail(&c.log_file("forward"), 10)
        );
    }
    let port = std::fs::read_to_string(&port_file)?;
    let admin = std::fs::read_to_string(c.control_dir().join("admin.kubeconfig"))?;
    let host = admin
        .lines()
        .map(|l| match l.trim_start().strip_prefix("server:") {
            Some(_) => format!("    server: https://127.0.0.1:{}", port.trim()),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    write_private(&c.host_kubeconfig(), &(host + "\n"))?;
    let kc = c.host_kubeconfig().display().to_string();
    if !wait_for(Duration::from_secs(10), || {
        run("kubectl", &["--kubeconfig", &kc, "get", "--raw", "/readyz"]).is_ok()
    }) {
        bail!("the API is not reachable through 127.0.0.1:{}", port.trim());
    }
    Ok(())
}

pub fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn node(c: &Cluster, i: usize) -> Result<()> {
    let name = c.node_name(i);
    let dir = c.node_dir(i);
    let ns = netns_path(c, Some(i));
    let p = |f: &str| dir.join(f).display().to_string();
    // The node's own identity (system:node:NAME), as kubeadm's TLS bootstrap would issue it.
    run(
        &bin(c, "pea-control"),
        &[
            "kubeconfig",
            "--data-dir",
            &c.control_dir().display().to_string(),
            "--user",
            &format!("system:node:{name}"),
            "--group",
            "system:nodes",
            "--server",
            &c.api_url(),
            "--out",
            &p("node.kubeconfig"),
            "--client-ca-out",
            &p("ca.crt"),
        ],
    )?;
    let proxy_kc = issue(c, &identities::PROXY, &dir)?;
    let flanneld_kc = issue(c, &identities::FLANNELD, &dir)?;
    std::fs::write(
        dir.join("net.d/10-pea.conflist"),
        serde_json::to_vec_pretty(&serde_json::json!({
            "cniVersion": "1.1.0", "name": "pea", "plugins": [{
                "type": "pea-cni", "subnetFile": p("subnet.env"),
                "ipam": {"dataDir": p("ipam")}
            }]
        }))?,
    )?;
    std::fs::write(
        dir.join("flanneld.json"),
        serde_json::to_vec(&serde_json::json!({
            "network": CLUSTER_CIDR, "iface": "eth0", "subnetFile": p("subnet.env")
        }))?,
    )?;
    std::fs::write(
        dir.join("resolv.conf"),
        format!("nameserver {CLUSTER_DNS}\n"),
    )?;
    let socket = c.shim_socket(i);
    // Every node shares the host's disk: disk-based eviction is off, as kind does for its
    // nodes, or a host with less than 10 % free would refuse every pod on every node.
    std::fs::write(
        dir.join("kubelet.yaml"),
        format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             cgroupRoot: /{}\nclusterDNS: [{CLUSTER_DNS}]\nclusterDomain: cluster.local\n\
             resolvConf: {}\npodLogsDir: {}\ncontainerRuntimeEndpoint: unix://{}\n\
             address: {}\nport: 10250\nnodeStatusUpdateFrequency: 2s\nmaxPods: 110\n\
             rotateCertificates: true\n\
             evictionHard: {{memory.available: 100Mi, nodefs.available: '0%', nodefs.inodesFree: '0%', imagefs.available: '0%'}}\n\
             authentication:\n  x509:\n    clientCAFile: {}\n",
            c.cgroup_root(i),
            p("resolv.conf"),
            p("logs"),
            socket.display(),
            c.node_ip(i),
            p("ca.crt"),
        ),
    )?;
    // One pea-agent per node runs the node's four programs in one process (k3s's agent):
    // each gets exactly the flags it would get alone, through `--<program>-arg`.
    let agent_args = |flag: &str, args: Vec<(&str, String)>| -> Vec<String> {
        args.into_iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    format!("{flag}={k}")
                } else {
                    format!("{flag}={k}={v}")
                }
            })
            .collect()
    };
    let mut argv = vec![bin(c, "pea-agent")];
    argv.extend(agent_args(
        "--shim-arg",
        vec![
            ("socket", socket.display().to_string()),
            ("root", p("root")),
            ("state", p("state")),
            ("runtime", bin(c, "pea-runtime")),
            ("runtime-root", p("runtime")),
            ("monitor", bin(c, "pea-monitor")),
            ("cni-conf-dir", p("net.d")),
            ("cni-bin-dir", format!("{}:/usr/lib/cni", c.bin.display())),
            ("insecure-registry", c.registry()),
            ("pause-image", format!("{}/pea/pause:3.10", c.registry())),
            (
                "metrics-address",
                format!("{}:{}", c.node_ip(i), crate::prometheus::SHIM_METRICS_PORT),
            ),
        ],
    ));
    argv.extend(agent_args(
        "--kubelet-arg",
        vec![
            ("config", p("kubelet.yaml")),
            ("kubeconfig", p("node.kubeconfig")),
            ("hostname-override", name.clone()),
            ("node-ip", c.node_ip(i)),
            ("root-dir", p("kubelet")),
        ],
    ));
    argv.extend(agent_args(
        "--flanneld-arg",
        vec![
            ("config", p("flanneld.json")),
            ("kube-subnet-mgr", String::new()),
            ("kubeconfig-file", flanneld_kc),
            ("node-name", name.clone()),
            (
                "metrics-listen",
                format!(
                    "{}:{}",
                    c.node_ip(i),
                    crate::prometheus::FLANNELD_METRICS_PORT
                ),
            ),
        ],
    ));
    argv.extend(agent_args(
        "--proxy-arg",
        vec![
            ("kubeconfig", proxy_kc),
            ("hostname-override", name.clone()),
            ("cluster-cidr", CLUSTER_CIDR.into()),
            (
                "metrics-bind-address",
                format!("{}:{}", c.node_ip(i), crate::prometheus::PROXY_METRICS_PORT),
            ),
        ],
    ));
    let log = c.log_file(&format!("{name}-agent"));
    let agent = spawn(
        Some(&ns),
        Some(&uts(c, i)?),
        &argv,
        &[("RUST_LOG", "info,libcgroups=error")],
        &log,
        &c.pid_file(&format!("{name}-agent")),
    )?;
    proc::wait_started(
        &format!("pea-agent on {name}"),
        agent,
        &log,
        Duration::from_secs(20),
        || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
    )?;
    Ok(())
}

/// Node i's UTS namespace, pinned by a bind mount on a file as `ip netns` pins network
/// namespaces (`pea down` unmounts it with the run directory): its hostname is the node's
/// name, as a machine's is, so the node agent and the hostNetwork pods (they share the shim's
/// UTS namespace, as on a real node) see `pea-0`, not the build host's name. Made once; an
/// existing one is kept (`pea up` twice).
fn uts(c: &Cluster, i: usize) -> Result<std::path::PathBuf> {
    let f = c.uts_file(i);
    if proc::is_namespace_file(&f) {
        return Ok(f);
    }
    std::fs::write(&f, "").with_context(|| format!("creating {}", f.display()))?;
    run(
        "unshare",
        &[
            &format!("--uts={}", f.display()),
            "hostname",
            &c.node_name(i),
        ],
    )
    .with_context(|| format!("making {}'s UTS namespace", c.node_name(i)))?;
    Ok(f)
}

/// Mints `id`'s kubeconfig (0600) into `dir` and returns its path.
fn issue(c: &Cluster, id: &identities::Identity, dir: &Path) -> Result<String> {
    let out = dir.join(id.file).display().to_string();
    let args = identities::issue_args(
        &c.control_dir().display().to_string(),
        id,
        &c.api_url(),
        &out,
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&bin(c, "pea-control"), &args)
        .with_context(|| format!("issuing {}'s identity {}", id.component, id.user))?;
    Ok(out)
}

fn ready_nodes(c: &Cluster) -> usize {
    let Ok(out) = kubectl_in_cluster(c, &["get", "nodes", "-o", "json"], None) else {
        return 0;
    };
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| {
            n["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|cnd| cnd["type"] == "Ready" && cnd["status"] == "True")
        })
        .count()
}

/// The closing lines: where the kubeconfig is and the nodes as the host's kubectl sees them.
fn finish(c: &Cluster) -> Result<()> {
    let kc = c.host_kubeconfig().display().to_string();
    let nodes = run(
        "kubectl",
        &["--kubeconfig", &kc, "get", "nodes", "-o", "wide"],
    )
    .context("kubectl get nodes through the host's loopback")?;
    print!("{nodes}");
    println!("pea up: export KUBECONFIG={kc}");
    Ok(())
}

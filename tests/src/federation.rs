//! pea-federation fixtures: member clusters (a pea-control with the deployment and replicaset
//! controllers and a hollow kubelet that marks pods Ready without containers — or, for
//! benchmarks at scale, only a hollow status writer for Deployments — reached through a
//! loopback relay the caller can cut) and the federation plane (a pea-control with the CRDs of
//! `pea federation init`, members added with `pea federation join`, and optionally the
//! pea-federation controller in-process). Used by `tests/tests/federation.rs` and
//! `bench-federation`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use crate::bins::workspace_binary;
use crate::control::{Backend, ControlPlane, Kubectl};

/// Bound of every wait; generous because the machine has 2 shared cores.
pub const WAIT: Duration = Duration::from_secs(40);

/// Polls `f` until it returns Some, for at most [`WAIT`].
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A TCP relay 127.0.0.1:port → target that can be cut (connections reset, port closed) and
/// restored on the same port.
#[derive(Debug)]
pub struct Relay {
    pub port: u16,
    target: std::net::SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    pub fn start(rt: &tokio::runtime::Runtime, target: std::net::SocketAddr) -> Self {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind relay");
        let port = listener.local_addr().expect("addr").port();
        let mut r = Self {
            port,
            target,
            task: None,
        };
        r.serve(rt, listener);
        r
    }

    fn serve(&mut self, rt: &tokio::runtime::Runtime, listener: tokio::net::TcpListener) {
        let target = self.target;
        self.task = Some(rt.spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut a, _)) = listener.accept().await else {
                    break;
                };
                conns.spawn(async move {
                    if let Ok(mut b) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                    }
                });
            }
        }));
    }

    /// Closes the port and every relayed connection (the JoinSet is dropped with the task).
    pub fn cut(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    pub fn restore(&mut self, rt: &tokio::runtime::Runtime) {
        let deadline = Instant::now() + WAIT;
        let listener = loop {
            match rt.block_on(tokio::net::TcpListener::bind(("127.0.0.1", self.port))) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("rebind relay port {}: {e}", self.port),
            }
        };
        self.serve(rt, listener);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}

/// A member cluster: pea-control, its controllers, a hollow kubelet, and the relay in front.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    // Kept alive for the member's lifetime (dropped after the runtime that uses it).
    pub cp: ControlPlane,
    pub k: Kubectl,
    pub relay: Relay,
    /// Kubeconfig through the relay (what the federation is given).
    pub kubeconfig: PathBuf,
    pub rt: Option<tokio::runtime::Runtime>,
}

/// What runs the workloads a member is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workloads {
    /// The deployment and replicaset controllers and a hollow kubelet: ReplicaSets and Pods
    /// are created and the pods marked Running and Ready (no containers).
    Controllers,
    /// No controllers: each Deployment's status is written at once as all of its replicas
    /// ready (one status write per Deployment generation, no ReplicaSets, no Pods) — what
    /// the federation sees of a member that runs its workloads, at a fraction of the cost.
    HollowStatus,
}

impl Member {
    pub fn start(name: &str, dir: &Path) -> Self {
        Self::start_with(name, dir, Workloads::Controllers)
    }

    pub fn start_with(name: &str, dir: &Path, workloads: Workloads) -> Self {
        let cp = ControlPlane::start(Backend::Embedded).expect("member pea-control");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("member runtime");
        let relay = Relay::start(&rt, cp.addr);
        let admin = cp
            .kubeconfig_for("federation", &["system:masters"])
            .expect("kubeconfig");
        let text = std::fs::read_to_string(&admin)
            .expect("read kubeconfig")
            .replace(
                &format!("https://{}", cp.addr),
                &format!("https://127.0.0.1:{}", relay.port),
            );
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&kubeconfig, text).expect("write kubeconfig");
        let direct = cp.kubeconfig.clone();
        rt.spawn(async move {
            let client = pea_controllers::client_from_kubeconfig(&direct)
                .await
                .expect("client");
            if workloads == Workloads::HollowStatus {
                hollow_deployment_status(client).await;
                return;
            }
            let mut config = pea_controllers::ControllersConfig::default();
            config.set_controllers("deployment,replicaset");
            let controllers = tokio::spawn({
                let client = client.clone();
                async move {
                    if let Err(e) = pea_controllers::run(client, config).await {
                        panic!("controllers stopped: {e}");
                    }
                }
            });
            hollow_kubelet(client).await;
            controllers.abort();
        });
        let k = cp.kubectl();
        Self {
            name: name.into(),
            cp,
            k,
            relay,
            kubeconfig,
            rt: Some(rt),
        }
    }

    /// A Node object with `cpu` and `memory` allocatable (no kubelet behind it: its status is
    /// what the federation's resource summary reads), or its allocatable changed.
    pub fn set_node(&self, name: &str, cpu: &str, memory: &str) {
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
        self.k.ok_stdin(&["apply", "-f", "-"], &node.to_string());
        let list = json!({"cpu": cpu, "memory": memory, "pods": "110"});
        let status = json!({"status": {"capacity": list, "allocatable": list}});
        self.k.ok(&[
            "patch",
            "node",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ]);
    }

    pub fn deployment(&self, name: &str) -> Option<Value> {
        let out = self.k.run(&["get", "deployment", name, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("deployment json"))
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.relay.cut();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// Marks every pod of the member Running and Ready (no containers run), forever: a watch on
/// the pods, each one not Ready patched when its event arrives (no polling, so a member with
/// many pods costs nothing while they are quiet).
pub async fn hollow_kubelet(client: kube::Client) {
    let mut n = 0u32;
    on_each_object(Api::<Pod>::all(client.clone()), |p| {
        let client = client.clone();
        let wanted = !is_ready(&p) && p.metadata.deletion_timestamp.is_none();
        n += u32::from(wanted);
        let n = n;
        async move {
            if !wanted {
                return;
            }
            let ip = format!("10.246.{}.{}", n / 250 % 250, n % 250 + 1);
            let now = k8s_openapi::chrono::Utc::now()
                .to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true);
            let patch = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
            let ns = p.namespace().unwrap_or_default();
            let _ = Api::<Pod>::namespaced(client, &ns)
                .patch_status(&p.name_any(), &PatchParams::default(), &Patch::Merge(patch))
                .await;
        }
    })
    .await;
}

/// Calls `f` with every object the watch of `api` lists or sees change, one at a time, forever.
async fn on_each_object<K, F, Fut>(api: Api<K>, mut f: F)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    F: FnMut(K) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => f(o).await,
            Ok(_) => {}
            // The watcher relists by itself; don't spin while the server is away.
            Err(_) => tokio::time::sleep(Duration::from_millis(150)).await,
        }
    }
}

/// Writes every Deployment's status as all of `spec.replicas` ready once per generation, forever
/// ([`Workloads::HollowStatus`]).
pub async fn hollow_deployment_status(client: kube::Client) {
    on_each_object(Api::<Deployment>::all(client.clone()), |d| {
        let client = client.clone();
        async move { deployment_all_ready(client, d).await }
    })
    .await;
}

/// Writes `d`'s status as all of its replicas ready, unless it already says so for its
/// generation.
async fn deployment_all_ready(client: kube::Client, d: Deployment) {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let generation = d.metadata.generation.unwrap_or(0);
    let status = d.status.clone().unwrap_or_default();
    if status.observed_generation == Some(generation)
        && status.ready_replicas.unwrap_or(0) == replicas
    {
        return;
    }
    let patch = json!({"status": {"observedGeneration": generation, "replicas": replicas,
        "readyReplicas": replicas, "availableReplicas": replicas, "updatedReplicas": replicas}});
    let ns = d.namespace().unwrap_or_default();
    let _ = Api::<Deployment>::namespaced(client, &ns)
        .patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await;
}

pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The federation plane: pea-control (no controllers) plus pea-federation in-process.
#[derive(Debug)]
pub struct Federation {
    pub cp: ControlPlane,
    pub k: Kubectl,
    rt: Option<tokio::runtime::Runtime>,
}

impl Federation {
    /// The federation API with its kinds installed, and no controller.
    pub fn plane() -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let cp = ControlPlane::start(Backend::Embedded).expect("federation pea-control");
        let k = cp.kubectl();
        let out = pea(&["federation", "init", "--kubeconfig", path(&cp.kubeconfig)]);
        assert!(out.contains("federation API ready"), "{out}");
        Self { cp, k, rt: None }
    }

    /// The federation API plus pea-federation in-process (resync 500 ms, member timeout 2 s).
    pub fn start(toleration: Duration) -> Self {
        Self::start_with(toleration, pea_federation::Config::default().lease_grace)
    }

    /// As [`Federation::start`], with `lease_grace` for Pull clusters' leases.
    pub fn start_with(toleration: Duration, lease_grace: Duration) -> Self {
        let mut f = Self::plane();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("federation runtime");
        let kc = f.cp.kubeconfig.clone();
        rt.spawn(async move {
            let client = pea_federation::client_from_kubeconfig(&kc)
                .await
                .expect("client");
            let config = pea_federation::Config {
                resync: Duration::from_millis(500),
                failover_toleration: toleration,
                member_timeout: Duration::from_secs(2),
                summary_interval: Duration::from_secs(1),
                lease_grace,
                ..Default::default()
            };
            if let Err(e) = pea_federation::run(client, config).await {
                panic!("pea-federation stopped: {e}");
            }
        });
        f.rt = Some(rt);
        f
    }

    pub fn join(&self, m: &Member, labels: &[&str]) {
        let mut args = vec![
            "federation",
            "join",
            &m.name,
            "--kubeconfig",
            path(&self.cp.kubeconfig),
            "--cluster-kubeconfig",
            path(&m.kubeconfig),
        ];
        for l in labels {
            args.extend(["--label", l]);
        }
        let out = pea(&args);
        assert!(out.contains(&format!("cluster {} joined", m.name)), "{out}");
    }

    /// `pea federation join NAME --sync-mode Pull`: the Cluster only (its agent dials out).
    pub fn join_pull(&self, name: &str, labels: &[&str]) {
        let mut args = vec![
            "federation",
            "join",
            name,
            "--kubeconfig",
            path(&self.cp.kubeconfig),
            "--sync-mode",
            "Pull",
        ];
        for l in labels {
            args.extend(["--label", l]);
        }
        let out = pea(&args);
        assert!(
            out.contains(&format!("cluster {name} joined (pull mode")),
            "{out}"
        );
    }

    pub fn get(&self, what: &[&str]) -> Option<Value> {
        let mut args = vec!["get"];
        args.extend(what);
        args.extend(["-o", "json"]);
        let out = self.k.run(&args);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("json"))
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// pea-federation run as its own program (the real binary, `$PEA_FEDERATION` or the one built
/// beside the tests), its stdout and stderr (where it logs) kept in `log`; killed on drop.
#[derive(Debug)]
pub struct ControllerProcess {
    child: std::process::Child,
    pub log: PathBuf,
}

impl ControllerProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far (for a failure message).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log when the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("pea-federation exited ({status}):\n{}", self.log_text());
        }
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Federation {
    /// Starts the pea-federation binary against this federation API with `args` added, logging
    /// at `filter` (RUST_LOG's syntax) into `log`.
    pub fn spawn_controller(&self, log: &Path, filter: &str, args: &[&str]) -> ControllerProcess {
        let out = std::fs::File::create(log).expect("create pea-federation log");
        let err = out.try_clone().expect("clone log file");
        let child = Command::new(workspace_binary("pea-federation", "PEA_FEDERATION"))
            .args(["--kubeconfig", path(&self.cp.kubeconfig)])
            .args(args)
            .env("RUST_LOG", filter)
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start pea-federation");
        ControllerProcess {
            child,
            log: log.to_path_buf(),
        }
    }
}

impl Federation {
    /// Starts `pea-federation agent` for member `m` (a Pull cluster named `m.name`) against
    /// this federation API with `args` added, logging into `log`.
    pub fn spawn_agent(&self, m: &Member, log: &Path, args: &[&str]) -> ControllerProcess {
        self.spawn_agent_named(m, &m.name, log, args)
    }

    /// As [`Federation::spawn_agent`], for the Cluster `name` (with `--register`, one the agent
    /// makes itself).
    pub fn spawn_agent_named(
        &self,
        m: &Member,
        name: &str,
        log: &Path,
        args: &[&str],
    ) -> ControllerProcess {
        let out = std::fs::File::create(log).expect("create agent log");
        let err = out.try_clone().expect("clone log file");
        let child = Command::new(workspace_binary("pea-federation", "PEA_FEDERATION"))
            .args(["agent", "--kubeconfig", path(&self.cp.kubeconfig)])
            .args(["--cluster-kubeconfig", path(&m.kubeconfig)])
            .args(["--cluster-name", name])
            .args(args)
            .env("RUST_LOG", "pea_federation=debug")
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start pea-federation agent");
        ControllerProcess {
            child,
            log: log.to_path_buf(),
        }
    }
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs the `pea` CLI; returns stdout, panics with stderr on failure.
pub fn pea(args: &[&str]) -> String {
    let out = Command::new(workspace_binary("pea", "PEA_CLI"))
        .args(args)
        .env("HOME", std::env::temp_dir())
        .output()
        .expect("run pea");
    assert!(
        out.status.success(),
        "pea {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

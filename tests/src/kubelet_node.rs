//! One whole node for pea-kubelet tests: a network namespace with pea-shim (see [`ShimNode`]:
//! registry, busybox and pause images, pea-cni), the real `pea-control` binary (API server,
//! scheduler, controllers) listening on the node's loopback, and pea-kubelet registered as the
//! node with its own `system:node:NAME` credentials. kubectl runs inside the namespace with a
//! fresh HOME. Dropping it deletes the pods through the API (the kubelet tears them down), then
//! stops the kubelet, the shim and the API server; ShimNode's drop checks what is left.
//!
//! With [`Runtime::Containerd`] the same node runs containerd 1.6's CRI plugin (with runc)
//! instead of pea-shim: in the node's namespace, with its CNI network and cgroup root, pulling
//! from its registry (busybox built with symlinked applets, see [`Images`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::bins::workspace_binary;
use crate::containerd_cri::{Containerd, Images, JoinNode};
use crate::fixtures::registry::in_netns;
use crate::shim_node::ShimNode;

pub const API_PORT: u16 = 6443;
pub const KUBELET_PORT: u16 = 10250;

/// The CRI runtime the node's kubelet drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    PeaShim,
    /// containerd 1.6's CRI plugin with runc.
    Containerd,
}

/// How the node is made.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub runtime: Runtime,
    pub max_pods: u32,
    /// The kubelet's `RUST_LOG` (benchmarks turn debug logging off).
    pub kubelet_log_filter: String,
    /// pea-shim's `RUST_LOG`.
    pub shim_log_filter: String,
    /// Extra pea-control flags (e.g. `--metric-resolution 2s`).
    pub control_args: Vec<String>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            runtime: Runtime::PeaShim,
            max_pods: 20,
            kubelet_log_filter: "pea_kubelet=debug,libcgroups=error,info".into(),
            shim_log_filter: "pea_shim=debug,info".into(),
            control_args: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub struct KubeletNode {
    kubelet: Option<Child>,
    control: Option<Child>,
    control_args: Vec<String>,
    pub name: String,
    pub dir: tempfile::TempDir,
    pub admin: PathBuf,
    pub node_kubeconfig: PathBuf,
    pub kubelet_config: PathBuf,
    home: tempfile::TempDir,
    /// The busybox image pods of this node run (per runtime, see [`Images`]).
    pub image: String,
    pub runtime: Runtime,
    kubelet_log_filter: String,
    /// Extra flags `start_kubelet` passes (e.g. pea's --container-gc-period).
    pub kubelet_args: Vec<String>,
    /// The kubelet's --root-dir (the node's `kubelet` dir unless a test gives it another
    /// filesystem, e.g. a small tmpfs for disk eviction).
    pub root_dir: PathBuf,
    /// containerd, when it is the runtime; dropped before the node it lives in.
    pub containerd: Option<Containerd>,
    // Last: the shim node (netns, shim, registry) outlives everything above.
    pub node: ShimNode,
}

impl KubeletNode {
    /// The node with pea-control and pea-shim running (the kubelet is started by `start_kubelet`).
    pub fn new(name: &str) -> Result<Self> {
        Self::with(name, &NodeOptions::default())
    }

    /// The node with pea-control and the chosen CRI runtime running.
    pub fn with(name: &str, opts: &NodeOptions) -> Result<Self> {
        let mut node = ShimNode::new()?;
        let (containerd, image) = match opts.runtime {
            Runtime::PeaShim => {
                node.log_filter = opts.shim_log_filter.clone();
                node.start_shim()?;
                (None, node.busybox.clone())
            }
            Runtime::Containerd => {
                let images = Images::build()?;
                let (busybox, pause) = images.push(&node.registry)?;
                let pea_cni_dir = workspace_binary("pea-cni", "PEA_CNI_BIN")
                    .parent()
                    .expect("bin dir")
                    .to_path_buf();
                let ctd = Containerd::join(
                    &JoinNode {
                        netns: node.netns.path(),
                        registry_host: node.registry.host(),
                        pause,
                        busybox: busybox.clone(),
                        cni_conf_dir: node.path("net.d"),
                        cni_bin_dirs: vec![pea_cni_dir, PathBuf::from("/usr/lib/cni")],
                        cgroup_root: node.cgroup_root.clone(),
                    },
                    None,
                )?;
                (Some(ctd), busybox)
            }
        };
        let dir = tempfile::Builder::new().prefix("pea-kubelet-").tempdir()?;
        let data = dir.path().join("control");
        let control = spawn_control(&node.netns.path(), dir.path(), &opts.control_args)?;
        let admin = data.join("admin.kubeconfig");
        let root_dir = node.path("kubelet");
        let me = Self {
            kubelet: None,
            control: Some(control),
            control_args: opts.control_args.clone(),
            name: name.to_string(),
            admin: admin.clone(),
            node_kubeconfig: dir.path().join("node.kubeconfig"),
            kubelet_config: dir.path().join("kubelet.yaml"),
            home: tempfile::tempdir()?,
            image,
            runtime: opts.runtime,
            kubelet_log_filter: opts.kubelet_log_filter.clone(),
            kubelet_args: Vec::new(),
            root_dir,
            containerd,
            dir,
            node,
        };
        let start = Instant::now();
        while !(admin.exists() && me.kubectl(&["get", "--raw", "/readyz"]).status.success()) {
            if start.elapsed() > Duration::from_secs(30) {
                bail!("pea-control not ready after 30 s: {}", me.control_log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = Command::new(workspace_binary("pea-control", "PEA_CONTROL"))
            .args(["kubeconfig", "--data-dir"])
            .arg(&data)
            .args([
                "--user",
                &format!("system:node:{name}"),
                "--group",
                "system:nodes",
            ])
            .args(["--server", &format!("https://127.0.0.1:{API_PORT}")])
            .arg("--out")
            .arg(&me.node_kubeconfig)
            .arg("--client-ca-out")
            .arg(me.dir.path().join("ca.crt"))
            .output()?;
        if !out.status.success() {
            bail!(
                "pea-control kubeconfig: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let resolv = me.dir.path().join("resolv.conf");
        std::fs::write(&resolv, "nameserver 127.0.0.53\nsearch example.test\n")?;
        // evictionHard: kubelet's default disk thresholds (10 %/15 % free) would put a node on
        // a nearly full shared CI disk under DiskPressure, refusing every pod; tests that want
        // pressure set their own line.
        let config = format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             cgroupRoot: /{}\nclusterDNS: [10.96.0.10]\nclusterDomain: cluster.local\n\
             resolvConf: {}\npodLogsDir: {}\ncontainerRuntimeEndpoint: unix://{}\n\
             port: {KUBELET_PORT}\nnodeStatusUpdateFrequency: 2s\nmaxPods: {}\n\
             evictionHard: {{memory.available: 100Mi, nodefs.available: 100Mi, imagefs.available: 100Mi}}\n\
             authentication:\n  x509:\n    clientCAFile: {}\n",
            me.node.cgroup_root,
            resolv.display(),
            me.node.path("logs").display(),
            me.cri_socket().display(),
            opts.max_pods,
            me.dir.path().join("ca.crt").display(),
        );
        std::fs::write(&me.kubelet_config, config)?;
        Ok(me)
    }

    pub fn start_kubelet(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("kubelet.log"))?;
        let mut cmd = Command::new(workspace_binary("pea-kubelet", "PEA_KUBELET"));
        cmd.arg("--config")
            .arg(&self.kubelet_config)
            .arg("--kubeconfig")
            .arg(&self.node_kubeconfig)
            .args(["--hostname-override", &self.name])
            .arg("--root-dir")
            .arg(&self.root_dir)
            .args(&self.kubelet_args)
            .env("RUST_LOG", &self.kubelet_log_filter)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = in_netns(Some(&self.node.netns.path()), || cmd.spawn())
            .context("starting pea-kubelet")?;
        self.kubelet = Some(child);
        Ok(())
    }

    /// The CRI socket the kubelet talks to.
    pub fn cri_socket(&self) -> &Path {
        match &self.containerd {
            Some(c) => &c.socket,
            None => &self.node.socket,
        }
    }

    /// The runtime's log (pea-shim's or containerd's tail).
    pub fn runtime_log(&self) -> String {
        match &self.containerd {
            Some(c) => c.log_tail(),
            None => tail(&self.node.log(), 30),
        }
    }

    pub fn kubelet_pid(&self) -> Option<u32> {
        self.kubelet.as_ref().map(Child::id)
    }

    /// SIGKILL (a crash): the pods keep running.
    pub fn kill_kubelet(&mut self) {
        if let Some(mut c) = self.kubelet.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn kubelet_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.kubelet
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn kubelet_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kubelet.log")).unwrap_or_default()
    }

    pub fn control_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("control.log")).unwrap_or_default()
    }

    /// kubectl (admin) inside the node's network namespace.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.node.netns.path().display()))
            .arg("kubectl")
            .arg("--kubeconfig")
            .arg(&self.admin)
            .args(args)
            .env("HOME", self.home.path())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn kubectl");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("kubectl output")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n--- kubelet log tail:\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&self.kubelet_log(), 40)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    pub fn apply(&self, yaml: &str) {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], Some(yaml));
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn get_json(&self, args: &[&str]) -> Option<Value> {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl(&a);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Polls the pod until `pred` holds (or fails with the pod and the kubelet's log).
    pub fn wait_pod(&self, name: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        let mut last = Value::Null;
        while start.elapsed() < timeout {
            if let Some(p) = self.get_json(&["pod", name]) {
                if pred(&p) {
                    return p;
                }
                last = p;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "pod {name} did not reach the expected state in {timeout:?}:\n{}\n--- kubelet log tail:\n{}",
            serde_json::to_string_pretty(&last).unwrap_or_default(),
            tail(&self.kubelet_log(), 60)
        );
    }

    /// Polls `f` until it holds, for up to `timeout`; panics with `what` and the kubelet's log.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < timeout,
                "{what}: not within {timeout:?}\n--- kubelet log tail:\n{}",
                tail(&self.kubelet_log(), 40)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn wait_gone(&self, name: &str, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let out = self.kubectl(&["get", "pod", name, "-o", "name"]);
            if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound") {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "pod {name} still there after {timeout:?}\n--- kubelet log tail:\n{}",
            tail(&self.kubelet_log(), 60)
        );
    }

    /// The pod's events' reasons and messages.
    pub fn events(&self, pod: &str) -> Vec<(String, String)> {
        let sel = format!("involvedObject.name={pod}");
        self.get_json(&["events", "--field-selector", &sel])
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|e| {
                (
                    e["reason"].as_str().unwrap_or("").to_string(),
                    e["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// A path on the node for hostPath volumes of a test.
    pub fn host_dir(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("host").join(name);
        std::fs::create_dir_all(&p).expect("host dir");
        p
    }

    /// Deletes every pod through the API and waits until the kubelet removed them.
    pub fn delete_all_pods(&self) {
        let _ = self.kubectl(&[
            "delete",
            "pods",
            "--all",
            "--all-namespaces",
            "--wait=false",
        ]);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            let left = self
                .get_json(&["pods", "--all-namespaces"])
                .and_then(|v| v["items"].as_array().map(Vec::len))
                .unwrap_or(0);
            if left == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        eprintln!("pods still there after 60 s; the shim node's teardown removes them");
    }

    pub fn stop_control(&mut self) {
        if let Some(mut c) = self.control.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl KubeletNode {
    /// (id, state) of the containers CRI lists whose `label` is `value`, e.g.
    /// `io.kubernetes.pod.name` or `io.kubernetes.pod.uid`.
    pub fn cri_containers(&self, label: &str, value: &str) -> Vec<(String, i32)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut c = crate::cri_client::connect(self.cri_socket())
                .await
                .expect("cri");
            c.runtime
                .list_containers(k8s_cri::v1::ListContainersRequest { filter: None })
                .await
                .expect("list")
                .into_inner()
                .containers
                .into_iter()
                .filter(|c| c.labels.get(label).map(String::as_str) == Some(value))
                .map(|c| (c.id, c.state))
                .collect()
        })
    }
}

/// pea-control on the node's loopback with its data under `dir`, logging to `dir/control.log`.
fn spawn_control(netns: &Path, dir: &Path, args: &[String]) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("control.log"))?;
    let mut cmd = Command::new(workspace_binary("pea-control", "PEA_CONTROL"));
    cmd.arg("--data-dir")
        .arg(dir.join("control"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{API_PORT}"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    in_netns(Some(netns), || cmd.spawn()).context("starting pea-control")
}

impl KubeletNode {
    /// Stops pea-control and starts it again on the same data and flags: every client's
    /// connection is cut, so each reconnects with the credentials it holds now.
    pub fn restart_control(&mut self) -> Result<()> {
        self.stop_control();
        self.control = Some(spawn_control(
            &self.node.netns.path(),
            self.dir.path(),
            &self.control_args,
        )?);
        let start = Instant::now();
        while !self.kubectl(&["get", "--raw", "/readyz"]).status.success() {
            if start.elapsed() > Duration::from_secs(30) {
                bail!(
                    "pea-control not ready after a restart: {}",
                    self.control_log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

impl Drop for KubeletNode {
    fn drop(&mut self) {
        if self.kubelet.is_some() && self.control.is_some() {
            self.delete_all_pods();
        }
        self.kill_kubelet();
        self.stop_control();
        // The shim node's drop removes what is left through CRI and checks mounts; the QoS
        // cgroups the kubelet made live under the node's cgroup root, removed with it.
    }
}

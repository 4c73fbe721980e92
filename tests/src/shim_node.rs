//! One node for pea-shim tests: a network namespace the test made (so CNI's bridge, veths and
//! nft tables never touch the machine's own), a docker-registry listening on that node's
//! 127.0.0.1 with the busybox and pause images, and pea-shim (with pea-monitor, pea-runtime and
//! pea-cni) serving CRI on a socket in a temp dir. Dropping it removes every pod and container
//! through CRI, stops the shim, and then makes sure nothing is left (runtime state, mounts).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_cri::v1 as cri;

use crate::bins::workspace_binary;
use crate::cri_client::{connect, Cri};
use crate::fixtures::busybox::build_busybox_image;
use crate::fixtures::pause::build_pause_image;
use crate::fixtures::registry::{in_netns, Registry, RegistryOptions};
use crate::fixtures::OciLayout;
use crate::netlab::Netns;

/// The pod subnet pea-cni hands out on a test node.
pub const POD_SUBNET: &str = "10.233.7.0/24";

/// A pod `ShimNode::start_pod` ran, with the config it ran with and its started containers.
#[derive(Debug, Clone)]
pub struct RunningPod {
    pub id: String,
    pub config: cri::PodSandboxConfig,
    pub containers: Vec<String>,
}

#[derive(Debug)]
pub struct ShimNode {
    // Field order is drop order: the shim's state goes before the namespace it lives in.
    shim: Option<Child>,
    pub registry: Registry,
    pub dir: tempfile::TempDir,
    pub netns: Netns,
    pub socket: PathBuf,
    /// `<registry>/library/busybox:v1` and `<registry>/pea/pause:3.10`.
    pub busybox: String,
    pub pause: String,
    /// Every pod's cgroup parent lives under `/<cgroup_root>` (removed on drop).
    pub cgroup_root: String,
    /// The shim's `RUST_LOG` (benchmarks turn debug logging off).
    pub log_filter: String,
    /// Extra flags `start_shim` passes (e.g. `--image-gc-policy learned`).
    pub shim_args: Vec<String>,
}

impl ShimNode {
    /// A node with a CNI config; `start_shim` runs the shim.
    pub fn new() -> Result<Self> {
        crate::privileged::require_root();
        let netns = Netns::new("shim")?;
        let dir = tempfile::Builder::new().prefix("pea-shim-").tempdir()?;
        let layout = OciLayout::create(&dir.path().join("layout"))?;
        build_busybox_image(&layout, "v1")?;
        build_pause_image(&layout, "3.10")?;
        let registry = Registry::start_with(&RegistryOptions {
            netns: Some(netns.path()),
            ..Default::default()
        })?;
        registry.push(&layout.skopeo_ref("v1"), "library/busybox:v1")?;
        registry.push(&layout.skopeo_ref("3.10"), "pea/pause:3.10")?;
        let host = registry.host();
        let d = dir.path();
        for sub in ["net.d", "ipam", "root", "state", "runtime", "logs"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "pea-shim-test",
            "plugins": [
                {"type": "pea-cni", "bridge": "cni0", "isGateway": true, "ipMasq": false,
                 "ipam": {"type": "host-local", "subnet": POD_SUBNET, "dataDir": d.join("ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        std::fs::write(
            d.join("net.d/10-pea.conflist"),
            serde_json::to_vec_pretty(&conflist)?,
        )?;
        Ok(Self {
            shim: None,
            socket: d.join("cri.sock"),
            busybox: format!("{host}/library/busybox:v1"),
            cgroup_root: format!("pea-test-{}", crate::netlab::random_suffix(4)),
            pause: format!("{host}/pea/pause:3.10"),
            log_filter: "pea_shim=debug,info".into(),
            shim_args: Vec::new(),
            registry,
            dir,
            netns,
        })
    }

    pub fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// Replaces the node's CNI network with `plugins` (a conflist named `name`), e.g. the
    /// reference bridge plugin instead of pea-cni. `ipam_data_dir()` is where leases belong.
    pub fn set_cni_plugins(&self, name: &str, plugins: Vec<serde_json::Value>) -> Result<()> {
        let conflist = serde_json::json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins});
        std::fs::write(
            self.path("net.d/10-pea.conflist"),
            serde_json::to_vec_pretty(&conflist)?,
        )?;
        Ok(())
    }

    /// The IPAM `dataDir` of the node's CNI network (checked by `leftovers`).
    pub fn ipam_data_dir(&self) -> PathBuf {
        self.path("ipam")
    }

    /// The running shim's pid.
    pub fn shim_pid(&self) -> Option<u32> {
        self.shim.as_ref().map(Child::id)
    }

    /// Starts pea-shim in the node's network namespace and waits for its socket.
    pub fn start_shim(&mut self) -> Result<()> {
        let shim = workspace_binary("pea-shim", "PEA_SHIM");
        let cni_dir = workspace_binary("pea-cni", "PEA_CNI_BIN")
            .parent()
            .expect("bin dir")
            .to_path_buf();
        let d = self.dir.path().to_path_buf();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("shim.log"))?;
        let mut cmd = Command::new(shim);
        cmd.arg("--socket")
            .arg(&self.socket)
            .arg("--root")
            .arg(d.join("root"))
            .arg("--state")
            .arg(d.join("state"))
            .arg("--runtime")
            .arg(workspace_binary("pea-runtime", "PEA_RUNTIME"))
            .arg("--runtime-root")
            .arg(d.join("runtime"))
            .arg("--monitor")
            .arg(workspace_binary("pea-monitor", "PEA_MONITOR"))
            .arg("--cni-conf-dir")
            .arg(d.join("net.d"))
            .arg("--cni-bin-dir")
            .arg(format!("{}:/usr/lib/cni", cni_dir.display()))
            .arg("--insecure-registry")
            .arg(self.registry.host())
            .arg("--pause-image")
            .arg(&self.pause)
            .args(&self.shim_args)
            .env("RUST_LOG", &self.log_filter)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child =
            in_netns(Some(&self.netns.path()), || cmd.spawn()).context("starting pea-shim")?;
        self.shim = Some(child);
        let start = Instant::now();
        // A killed shim leaves its socket file: wait until the new one answers.
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            if let Some(Ok(Some(st))) = self.shim.as_mut().map(|c| c.try_wait()) {
                bail!("pea-shim exited ({st}): {}", self.log());
            }
            if start.elapsed() > Duration::from_secs(20) {
                bail!("pea-shim socket not there after 20 s: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("shim.log")).unwrap_or_default()
    }

    /// SIGKILLs the shim (its containers stay with their monitors).
    pub fn kill_shim(&mut self) {
        if let Some(mut c) = self.shim.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: a clean shutdown.
    pub fn stop_shim(&mut self) {
        if let Some(mut c) = self.shim.take() {
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

    pub async fn cri(&self) -> Result<Cri> {
        connect(&self.socket).await
    }

    /// A pod config like the kubelet's, logging under this node's log dir.
    pub fn pod(&self, name: &str) -> cri::PodSandboxConfig {
        let uid = format!("uid-{name}-{}", crate::netlab::random_suffix(3));
        let logs = self.path("logs").join(&uid);
        std::fs::create_dir_all(&logs).expect("pod log dir");
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid,
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: logs.display().to_string(),
            dns_config: Some(cri::DnsConfig {
                servers: vec!["10.96.0.10".into()],
                searches: vec!["default.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!(
                    "/{}/{name}-{}",
                    self.cgroup_root,
                    crate::netlab::random_suffix(3)
                ),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(container_pid()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            labels: [("app".to_string(), name.to_string())].into(),
            ..Default::default()
        }
    }

    /// A busybox container running `args` through `sh -c`.
    pub fn container(&self, name: &str, script: &str) -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: self.busybox.clone(),
                ..Default::default()
            }),
            command: vec!["/bin/sh".into(), "-c".into(), script.into()],
            log_path: format!("{name}/0.log"),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(container_pid()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Pulls `image` through CRI; returns its image ref.
    pub async fn pull(&self, c: &mut Cri, image: &str) -> Result<String> {
        Ok(c.images
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                auth: None,
                sandbox_config: None,
            })
            .await
            .with_context(|| format!("PullImage {image}"))?
            .into_inner()
            .image_ref)
    }

    /// RunPodSandbox with `pod`, then CreateContainer and StartContainer for each of
    /// `containers` in order (their images already pulled). Errors name the step.
    pub async fn start_pod(
        &self,
        c: &mut Cri,
        pod: cri::PodSandboxConfig,
        containers: Vec<cri::ContainerConfig>,
    ) -> Result<RunningPod> {
        let id = c
            .runtime
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod.clone()),
                runtime_handler: String::new(),
            })
            .await
            .context("RunPodSandbox")?
            .into_inner()
            .pod_sandbox_id;
        let mut ids = Vec::new();
        for config in containers {
            let container = c
                .runtime
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: id.clone(),
                    config: Some(config),
                    sandbox_config: Some(pod.clone()),
                })
                .await
                .with_context(|| format!("CreateContainer in {id}"))?
                .into_inner()
                .container_id;
            c.runtime
                .start_container(cri::StartContainerRequest {
                    container_id: container.clone(),
                })
                .await
                .with_context(|| format!("StartContainer {container}"))?;
            ids.push(container);
        }
        Ok(RunningPod {
            id,
            config: pod,
            containers: ids,
        })
    }

    /// The common set-up: pull `config`'s image, run a pod named `pod_name` (`pod`) and start
    /// the one container in it.
    pub async fn run_container(
        &self,
        c: &mut Cri,
        pod_name: &str,
        config: cri::ContainerConfig,
    ) -> Result<RunningPod> {
        let image = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .context("the container config names no image")?;
        self.pull(c, &image).await?;
        self.start_pod(c, self.pod(pod_name), vec![config]).await
    }

    /// Removes every pod through CRI (when the shim runs), then stops the shim.
    pub fn teardown(&mut self) -> Result<()> {
        if self.shim.is_some() {
            let socket = self.socket.clone();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let mut c = connect(&socket).await?;
                let pods = c
                    .runtime
                    .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                    .await?
                    .into_inner()
                    .items;
                for p in pods {
                    c.runtime
                        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                            pod_sandbox_id: p.id,
                        })
                        .await?;
                }
                anyhow::Ok(())
            })?;
        }
        self.stop_shim();
        Ok(())
    }

    /// What pea-shim's state dirs still hold: runtime containers, netns, bundles, records.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in [
            "runtime",
            "state/netns",
            "state/userns",
            "state/bundles",
            "state/sandboxes",
            "state/containers",
            "state/pods",
            "root/containers",
        ] {
            if let Ok(rd) = std::fs::read_dir(self.path(sub)) {
                for e in rd.flatten() {
                    out.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
                }
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let root = self.dir.path().display().to_string();
        out.extend(
            mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|m| m.starts_with(&root))
                .map(|m| format!("mount {m}")),
        );
        // libcni's result cache: one file per attachment, removed by DEL.
        if let Ok(rd) = std::fs::read_dir(self.path("root/cni-cache/results")) {
            out.extend(
                rd.flatten()
                    .map(|e| format!("cni-cache {}", e.file_name().to_string_lossy())),
            );
        }
        out.extend(self.leftover_leases());
        out.extend(self.leftover_links());
        out.extend(
            self.cgroups()
                .into_iter()
                .filter(|c| c.matches('/').count() >= 3)
                .map(|c| format!("cgroup {c}")),
        );
        out.extend(
            self.processes(Duration::from_secs(3))
                .into_iter()
                .map(|(pid, cmd)| format!("process {pid} {cmd}")),
        );
        out
    }

    /// IPAM leases still held: files named by an address in pea-cni's `dataDir` (host-local's
    /// layout, `<dataDir>/<network>/<ip>`); its lock and `last_reserved_ip.*` files are state,
    /// not leases.
    pub fn leftover_leases(&self) -> Vec<String> {
        let mut out = Vec::new();
        for net in std::fs::read_dir(self.path("ipam"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in std::fs::read_dir(net.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = f.file_name().to_string_lossy().to_string();
                if name.parse::<std::net::IpAddr>().is_ok() {
                    out.push(format!(
                        "lease {}/{name}",
                        net.file_name().to_string_lossy()
                    ));
                }
            }
        }
        out
    }

    /// Links in the node's namespace besides `lo` and the CNI bridge `cni0` (the bridge is the
    /// network's, made by the first ADD and kept, as the reference bridge plugin does): pods'
    /// host-side veths.
    pub fn leftover_links(&self) -> Vec<String> {
        match self.netns.links() {
            Ok(links) => links
                .into_iter()
                .filter(|l| l != "lo" && l != "cni0")
                .map(|l| format!("link {l}"))
                .collect(),
            Err(e) => vec![format!("links of {}: {e:#}", self.netns.name)],
        }
    }

    /// Every cgroup below `/<cgroup_root>` in every hierarchy, as `<hierarchy>/<cgroup_root>/...`
    /// (the root itself not included). Depth 1 below the root are pod cgroup parents (the
    /// kubelet's on a real node; see `remove_pod_cgroup`), deeper ones the runtime's sandbox and
    /// container cgroups.
    pub fn cgroups(&self) -> Vec<String> {
        let mut out = Vec::new();
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let top = h.path().join(&self.cgroup_root);
            if !top.is_dir() {
                continue;
            }
            let mut dirs = vec![top.clone()];
            let mut i = 0;
            while i < dirs.len() {
                if let Ok(sub) = std::fs::read_dir(&dirs[i]) {
                    dirs.extend(sub.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
                }
                i += 1;
            }
            let base = Path::new("/sys/fs/cgroup");
            out.extend(
                dirs.iter()
                    .skip(1)
                    .filter_map(|d| d.strip_prefix(base).ok())
                    .map(|d| d.display().to_string()),
            );
        }
        out.sort();
        out
    }

    /// What the kubelet does once a pod is removed: deletes the pod's cgroup parent (as given in
    /// `PodSandboxConfig.linux.cgroup_parent`) in every hierarchy. Fails, naming the cgroup, when
    /// it still holds a cgroup or a process (the runtime left something).
    pub fn remove_pod_cgroup(&self, parent: &str) -> Result<()> {
        let rel = parent.trim_start_matches('/');
        let mut errors = Vec::new();
        for h in std::fs::read_dir("/sys/fs/cgroup")?.flatten() {
            let d = h.path().join(rel);
            match std::fs::remove_dir(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => errors.push(format!("{}: {e}", d.display())),
            }
        }
        if !errors.is_empty() {
            bail!("removing pod cgroup {parent}: {}", errors.join("; "));
        }
        Ok(())
    }

    /// Processes this node's runtime keeps, besides the shim itself: any whose command line
    /// names the node's dir (pea-monitor, pea-runtime, CNI plugins are given paths under it) or
    /// whose cgroup is under `/<cgroup_root>` (pause and container processes). Waits up to
    /// `grace` for exiting ones to go (a monitor exits just after writing its exit file): returns
    /// once two looks 100 ms apart agree.
    pub fn processes(&self, grace: Duration) -> Vec<(i32, String)> {
        let start = Instant::now();
        let mut found = self.processes_now();
        while !found.is_empty() && start.elapsed() < grace {
            std::thread::sleep(Duration::from_millis(100));
            let again = self.processes_now();
            if again == found {
                break;
            }
            found = again;
        }
        found
    }

    fn processes_now(&self) -> Vec<(i32, String)> {
        let shim_pid = self.shim.as_ref().map(|c| c.id() as i32);
        let me = std::process::id() as i32;
        let root = self.dir.path().display().to_string();
        let cgroup = format!("/{}/", self.cgroup_root);
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if Some(pid) == shim_pid || pid == me {
                continue;
            }
            // Zombies have an empty cmdline: they are exiting, not kept.
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if cmdline.is_empty() {
                continue;
            }
            let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let in_cgroup = std::fs::read_to_string(e.path().join("cgroup"))
                .is_ok_and(|c| c.lines().any(|l| l.contains(&cgroup)));
            if cmd.contains(&root) || in_cgroup {
                out.push((pid, cmd.trim().to_string()));
            }
        }
        out
    }
}

/// What the kubelet sends for a pod without shareProcessNamespace: pod network and IPC, a PID
/// namespace per container (CRI's zero value, POD, would share it).
pub fn container_pid() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Pod as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// Removes whatever a failed test left: runtime containers, mounts under `dir`.
fn force_clean(dir: &Path) {
    let runtime = workspace_binary("pea-runtime", "PEA_RUNTIME");
    if let Ok(rd) = std::fs::read_dir(dir.join("runtime")) {
        for e in rd.flatten() {
            let _ = Command::new(&runtime)
                .arg("--root")
                .arg(dir.join("runtime"))
                .args(["delete", "--force"])
                .arg(e.file_name())
                .output();
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let root = dir.display().to_string();
    let mut targets: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(&root))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        let _ = nix::mount::umount2(t, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Removes `/<name>` and everything below it in every cgroup hierarchy (deepest first): the
/// pod cgroup parents the runtime made (the kubelet owns them on a real node).
pub fn remove_cgroup_tree(name: &str) {
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in rd.flatten() {
        let top = h.path().join(name);
        if !top.is_dir() {
            continue;
        }
        let mut dirs = vec![top.clone()];
        let mut i = 0;
        while i < dirs.len() {
            if let Ok(sub) = std::fs::read_dir(&dirs[i]) {
                dirs.extend(sub.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
            i += 1;
        }
        for d in dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

impl Drop for ShimNode {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("shim node teardown: {e:#}");
        }
        self.kill_shim();
        force_clean(self.dir.path());
        remove_cgroup_tree(&self.cgroup_root);
        // pea-cni's pods are gone with their netns; its bridge and tables go with the node's.
    }
}

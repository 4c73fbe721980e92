//! bench-cri: pea-shim + pea-runtime against containerd 1.6 (Debian's, with its CRI plugin) +
//! runc, side by side in one run, both driven through the same CRI client
//! (`pea_tests::cri_client`) with the same pod and container configs.
//!
//! Each runtime runs in a network namespace made here (its "node"), pulls the same images (same
//! digests, pushed from one OCI layout) from its own docker-registry on that node's 127.0.0.1,
//! and wires pods with a one-plugin CNI conflist of the same shape (bridge `cni0`, gateway, no
//! masquerade, host-local /24): containerd with Debian's reference `bridge` + `host-local`
//! (plus the `loopback` plugin it runs itself), pea-shim with pea-cni; a third subject runs
//! pea-shim with containerd's exact plugins, to separate the runtime's share from the CNI
//! plugin's.
//!
//! Measured (medians, p90 and ratios through `pea_tests::bench`; nothing asserted):
//! - cold pod start: RunPodSandbox + CreateContainer + StartContainer of one busybox container,
//!   images already pulled;
//! - pod teardown: StopPodSandbox + RemovePodSandbox (the container exits on SIGTERM at once;
//!   containerd SIGKILLs it, pea sends SIGTERM first);
//! - `--concurrent` pods started at once (wall time), and torn down at once;
//! - memory of the processes each runtime keeps per running pod (pea: pea-monitor per container +
//!   pause; containerd: containerd-shim-runc-v2 + pause), as VmRSS and as Pss/USS from
//!   /proc/<pid>/smaps_rollup while the concurrent pods run.
//!
//! Every loop is bounded in count and in time (`--time-limit`); every CRI call has a timeout.
//! Everything is removed on exit, failures included (Drop guards): pods, containers, netns,
//! cgroups, mounts, registries, the daemons.
//!
//! Run (as root): `cargo build --release -p pea-shim -p pea-monitor -p pea-runtime -p pea-cni
//! -p pea-tests --bin bench-cri && target/release/bench-cri [--runs 50] [--concurrent 50]`

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use k8s_cri::v1 as cri;
use pea_tests::bench::{fmt_duration, table, Samples};
use pea_tests::cri_client::{connect, Cri};
use pea_tests::fixtures::busybox::{write_busybox_tree, DEFAULT_PATH};
use pea_tests::fixtures::layer::TreeSink;
use pea_tests::fixtures::layout::ImageDefaults;
use pea_tests::fixtures::pause::build_pause_image;
use pea_tests::fixtures::registry::{in_netns, Registry, RegistryOptions};
use pea_tests::fixtures::{FixtureError, OciLayout};
use pea_tests::netlab::{random_suffix, Netns};
use pea_tests::privileged::{require_program, require_root};
use pea_tests::shim_node::{container_pid, remove_cgroup_tree, ShimNode};
use serde_json::json;

#[derive(Debug, Parser)]
struct Args {
    /// Cold start + teardown cycles per subject (50: the whole bench takes about a minute here).
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Pods started at once in the concurrency scenario (and measured for memory).
    #[arg(long, default_value_t = 50)]
    concurrent: usize,
    /// Rounds of the concurrency scenario per subject.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Skip the third subject (pea-shim with containerd's bridge + host-local plugins).
    #[arg(long)]
    no_same_cni: bool,
    /// pea-shim with debug logging (as the tests run it), to find where its time goes.
    #[arg(long)]
    shim_debug: bool,
    /// Give up (with what was measured so far) after this many seconds.
    #[arg(long, default_value_t = 900)]
    time_limit: u64,
}

const CONTAINERD: &str = "containerd + runc";
const PEA: &str = "pea-shim + pea-runtime";
const PEA_BRIDGE: &str = "pea-shim + pea-runtime, bridge + host-local";
/// Any single CRI call.
const OP_TIMEOUT: Duration = Duration::from_secs(120);
/// Exits at once on SIGTERM (a shell as PID 1 with a trap; `wait` is interrupted by it).
const SCRIPT: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

/// What a subject's pods are made of.
#[derive(Debug, Clone)]
struct PodSpec {
    busybox: String,
    pause: String,
    /// Pod log directories go below this.
    logs: PathBuf,
    /// Pod cgroup parents are `/<cgroup_root>/<pod>`.
    cgroup_root: String,
}

/// containerd 1.6 with its CRI plugin, in a network namespace of its own, with its own root,
/// state, socket, runc root, CNI config and registry; everything removed on drop.
struct Containerd {
    child: Option<Child>,
    socket: PathBuf,
    spec: PodSpec,
    // Dropped after `Drop::drop` ran: registry, then the dir, then the namespace.
    _registry: Registry,
    dir: tempfile::TempDir,
    _netns: Netns,
}

/// The images both runtimes run, built once into one OCI layout and pushed to every node's
/// registry (same digests everywhere): busybox (tag `bench`) and pea's pause (tag `3.10`).
///
/// The busybox applets are symlinks to /bin/busybox here, not the fixture's hard links: the
/// fixture writes hard-link entries with mode 0644 in their tar headers, and containerd (like
/// Docker) applies a hard link's header mode to the shared inode, which leaves /bin/busybox
/// non-executable ("exec: /bin/sh: permission denied"); pea-images ignores that mode.
struct Images {
    _dir: tempfile::TempDir,
    layout: OciLayout,
}

impl Images {
    fn build() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("pea-bench-images-")
            .tempdir()?;
        let layout = OciLayout::create(&dir.path().join("layout"))?;
        let mut w = layout.layer_writer(6)?;
        write_busybox_tree(&mut SymlinkApplets(&mut w), "bench")?;
        let layer = layout.commit_layer(w.finish()?)?;
        layout.add_image(
            "bench",
            &[layer],
            &ImageDefaults {
                cmd: Some(vec!["sh".into()]),
                env: vec![DEFAULT_PATH.into()],
                ..Default::default()
            },
        )?;
        build_pause_image(&layout, "3.10")?;
        Ok(Self { _dir: dir, layout })
    }

    /// Pushes both; returns (busybox, pause) references on that registry.
    fn push(&self, registry: &Registry) -> Result<(String, String)> {
        registry.push(&self.layout.skopeo_ref("bench"), "library/busybox:bench")?;
        registry.push(&self.layout.skopeo_ref("3.10"), "pea/pause:3.10")?;
        let host = registry.host();
        Ok((
            format!("{host}/library/busybox:bench"),
            format!("{host}/pea/pause:3.10"),
        ))
    }
}

/// Writes hard links as absolute symlinks to their target.
struct SymlinkApplets<'a, S>(&'a mut S);

impl<S: TreeSink> TreeSink for SymlinkApplets<'_, S> {
    fn dir(&mut self, path: &str, mode: u32) -> Result<(), FixtureError> {
        self.0.dir(path, mode)
    }
    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<(), FixtureError> {
        self.0.file(path, mode, data)
    }
    fn hardlink(&mut self, path: &str, target: &str) -> Result<(), FixtureError> {
        self.0.symlink(path, &format!("/{target}"))
    }
    fn symlink(&mut self, path: &str, target: &str) -> Result<(), FixtureError> {
        self.0.symlink(path, target)
    }
}

impl Containerd {
    fn start(images: &Images) -> Result<Self> {
        let bin = require_program("containerd");
        require_program("containerd-shim-runc-v2");
        let runc = require_program("runc");
        let netns = Netns::new("bctd")?;
        let dir = tempfile::Builder::new()
            .prefix("pea-bench-ctd-")
            .tempdir()?;
        let registry = Registry::start_with(&RegistryOptions {
            netns: Some(netns.path()),
            ..Default::default()
        })?;
        let (busybox, pause) = images.push(&registry)?;
        let host = registry.host();
        let d = dir.path();
        for sub in ["net.d", "ipam", "logs", "opt", "runc"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        let hosts = d.join("certs.d").join(&host);
        std::fs::create_dir_all(&hosts)?;
        std::fs::write(
            hosts.join("hosts.toml"),
            format!(
                "server = \"http://{host}\"\n\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        )?;
        let conflist = json!({
            "cniVersion": "1.0.0",
            "name": "bench",
            "plugins": [bridge_plugin("10.233.9.0/24", &d.join("ipam"))]
        });
        std::fs::write(
            d.join("net.d/10-bench.conflist"),
            serde_json::to_vec_pretty(&conflist)?,
        )?;
        let dd = d.display();
        // restrict_oom_score_adj: the sandbox's -998 needs CAP_SYS_RESOURCE, which this host
        // lacks (pea clamps the same way).
        let config = format!(
            r#"version = 2
root = "{dd}/root"
state = "{dd}/state"

[grpc]
  address = "{dd}/containerd.sock"

[ttrpc]
  address = "{dd}/containerd.sock.ttrpc"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{dd}/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{pause}"
    netns_mounts_under_state_dir = true
    restrict_oom_score_adj = true
    disable_apparmor = true
    enable_selinux = false
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "{runc}"
          Root = "{dd}/runc"
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "{dd}/net.d"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "{dd}/certs.d"
"#,
            runc = runc.display()
        );
        std::fs::write(d.join("config.toml"), config)?;
        let log = std::fs::File::create(d.join("containerd.log"))?;
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = in_netns(Some(&netns.path()), || cmd.spawn()).context("starting containerd")?;
        let mut ctd = Containerd {
            child: Some(child),
            socket: d.join("containerd.sock"),
            spec: PodSpec {
                busybox,
                pause,
                logs: d.join("logs"),
                cgroup_root: format!("pea-bench-ctd-{}", random_suffix(3)),
            },
            _registry: registry,
            dir,
            _netns: netns,
        };
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(&ctd.socket).is_err() {
            if let Some(Ok(Some(st))) = ctd.child.as_mut().map(|c| c.try_wait()) {
                bail!("containerd exited ({st}): {}", ctd.log_tail());
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!("containerd socket not there after 30 s: {}", ctd.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(ctd)
    }

    fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// containerd-shim-runc-v2 processes serving this containerd.
    fn shims(&self) -> Vec<i32> {
        let sock = self.socket.display().to_string();
        pids_where(|_, comm, cmd| comm.starts_with("containerd-shim") && cmd.contains(&sock))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Pods first, through CRI, while containerd runs.
        if self.child.is_some() {
            if let Err(e) = remove_all_pods(&self.socket) {
                eprintln!("containerd teardown: {e:#}");
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let start = Instant::now();
            while !matches!(c.try_wait(), Ok(Some(_))) && start.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // Whatever a failure left: runc containers, their shims, mounts, cgroups.
        let root = self.dir.path().join("runc");
        if let Ok(out) = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["list", "-q"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "--force", id])
                    .output();
            }
        }
        for pid in self.shims() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        unmount_below(self.dir.path());
        remove_cgroup_tree(&self.spec.cgroup_root);
    }
}

fn bridge_plugin(subnet: &str, data_dir: &Path) -> serde_json::Value {
    json!({"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
           "ipam": {"type": "host-local", "subnet": subnet, "dataDir": data_dir}})
}

/// Lazily unmounts every mount at or below `dir`, deepest first.
fn unmount_below(dir: &Path) {
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

/// Stops and removes every pod a CRI runtime lists (bounded per call).
fn remove_all_pods(socket: &Path) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut c = connect(socket).await?;
        let pods = bounded(
            "ListPodSandbox",
            c.runtime
                .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
        )
        .await?
        .items;
        for p in pods {
            bounded(
                "StopPodSandbox",
                c.runtime.stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: p.id.clone(),
                }),
            )
            .await?;
            bounded(
                "RemovePodSandbox",
                c.runtime.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: p.id,
                }),
            )
            .await?;
        }
        anyhow::Ok(())
    })
}

/// A CRI call with `OP_TIMEOUT`.
async fn bounded<T>(
    what: &str,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(OP_TIMEOUT, call).await {
        Err(_) => bail!("{what}: no answer in {} s", OP_TIMEOUT.as_secs()),
        Ok(Err(s)) => bail!("{what}: {} {}", s.code(), s.message()),
        Ok(Ok(r)) => Ok(r.into_inner()),
    }
}

/// The runtime under test.
enum Backend {
    Pea(Box<ShimNode>),
    Containerd(Box<Containerd>),
}

struct Subject {
    label: &'static str,
    backend: Backend,
    spec: PodSpec,
}

impl Subject {
    fn socket(&self) -> PathBuf {
        match &self.backend {
            Backend::Pea(n) => n.socket.clone(),
            Backend::Containerd(c) => c.socket.clone(),
        }
    }

    /// The pids of the processes the runtime keeps per pod, by kind.
    fn per_pod_processes(&self) -> BTreeMap<&'static str, Vec<i32>> {
        let mut m = BTreeMap::new();
        let cg = format!("/{}/", self.spec.cgroup_root);
        m.insert(
            "pause",
            pids_where(|pid, comm, _| comm == "pause" && in_cgroup(pid, &cg)),
        );
        match &self.backend {
            Backend::Pea(n) => {
                let dir = n.dir.path().display().to_string();
                m.insert(
                    "pea-monitor",
                    pids_where(|_, comm, cmd| comm == "pea-monitor" && cmd.contains(&dir)),
                );
            }
            Backend::Containerd(c) => {
                m.insert("containerd-shim-runc-v2", c.shims());
            }
        }
        m
    }

    /// The node-wide daemon (not per pod).
    fn daemon_pid(&self) -> Option<i32> {
        match &self.backend {
            Backend::Pea(n) => n.shim_pid().map(|p| p as i32),
            Backend::Containerd(c) => c.child.as_ref().map(|c| c.id() as i32),
        }
    }
}

fn pea_subject(
    label: &'static str,
    images: &Images,
    same_cni: bool,
    debug: bool,
) -> Result<Subject> {
    let mut node = ShimNode::new()?;
    let (busybox, pause) = images.push(&node.registry)?;
    node.pause = pause.clone();
    node.log_filter = if debug {
        "pea_shim=debug,info".into()
    } else {
        "warn".into()
    };
    let plugin = if same_cni {
        bridge_plugin("10.233.8.0/24", &node.ipam_data_dir())
    } else {
        json!({"type": "pea-cni", "bridge": "cni0", "isGateway": true, "ipMasq": false,
               "ipam": {"type": "host-local", "subnet": "10.233.7.0/24",
                        "dataDir": node.ipam_data_dir()}})
    };
    node.set_cni_plugins("bench", vec![plugin])?;
    node.start_shim()?;
    let spec = PodSpec {
        busybox,
        pause,
        logs: node.path("logs"),
        cgroup_root: node.cgroup_root.clone(),
    };
    Ok(Subject {
        label,
        backend: Backend::Pea(Box::new(node)),
        spec,
    })
}

/// Whether an ELF64 executable has no program interpreter (PT_INTERP), i.e. is static.
fn is_static(path: &Path) -> bool {
    let Ok(b) = std::fs::read(path) else {
        return false;
    };
    let u = |at: usize, n: usize| -> Option<u64> {
        let s = b.get(at..at + n)?;
        Some(
            s.iter()
                .rev()
                .fold(0u64, |acc, x| (acc << 8) | u64::from(*x)),
        )
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u(0x20, 8), u(0x36, 2), u(0x38, 2)) else {
        return false;
    };
    !(0..phnum).any(|i| u((phoff + i * phentsize) as usize, 4) == Some(3))
}

/// Every pid whose (pid, comm, cmdline) matches.
fn pids_where(f: impl Fn(i32, &str, &str) -> bool) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if f(pid, comm.trim(), &cmd) {
            out.push(pid);
        }
    }
    out
}

fn in_cgroup(pid: i32, needle: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .is_ok_and(|c| c.lines().any(|l| l.contains(needle)))
}

/// VmRSS, Pss and USS (Private_Clean + Private_Dirty) of one process, in KiB.
#[derive(Debug, Default, Clone, Copy)]
struct Mem {
    rss: u64,
    pss: u64,
    uss: u64,
}

impl std::ops::AddAssign for Mem {
    fn add_assign(&mut self, o: Mem) {
        self.rss += o.rss;
        self.pss += o.pss;
        self.uss += o.uss;
    }
}

fn kib_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mem_of(pid: i32) -> Mem {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    Mem {
        rss: kib_field(&status, "VmRSS:"),
        pss: kib_field(&rollup, "Pss:"),
        uss: kib_field(&rollup, "Private_Clean:") + kib_field(&rollup, "Private_Dirty:"),
    }
}

fn mib(kib: f64) -> String {
    if kib >= 1024.0 {
        format!("{:.2} MiB", kib / 1024.0)
    } else {
        format!("{kib:.0} KiB")
    }
}

/// A pod the bench started.
#[derive(Debug, Clone)]
struct Pod {
    id: String,
    cgroup_parent: String,
}

fn pod_config(spec: &PodSpec, name: &str) -> Result<cri::PodSandboxConfig> {
    let uid = format!("uid-{name}-{}", random_suffix(3));
    let logs = spec.logs.join(&uid);
    // The kubelet makes the pod's log dir and each container's.
    std::fs::create_dir_all(logs.join("app"))?;
    Ok(cri::PodSandboxConfig {
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
            cgroup_parent: format!("/{}/{name}-{}", spec.cgroup_root, random_suffix(3)),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(container_pid()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        labels: [("app".to_string(), name.to_string())].into(),
        ..Default::default()
    })
}

fn container_config(spec: &PodSpec) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: spec.busybox.clone(),
            ..Default::default()
        }),
        command: vec!["/bin/sh".into(), "-c".into(), SCRIPT.into()],
        log_path: "app/0.log".into(),
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

/// RunPodSandbox + CreateContainer + StartContainer; the time covers the three calls only.
async fn start_pod(c: &mut Cri, spec: &PodSpec, name: &str) -> Result<(Pod, Duration)> {
    let config = pod_config(spec, name)?;
    let cgroup_parent = config
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .unwrap_or_default();
    let t0 = Instant::now();
    let id = bounded(
        "RunPodSandbox",
        c.runtime.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        }),
    )
    .await?
    .pod_sandbox_id;
    let pod = Pod { id, cgroup_parent };
    let started = async {
        let cid = bounded(
            "CreateContainer",
            c.runtime.create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.id.clone(),
                config: Some(container_config(spec)),
                sandbox_config: Some(config),
            }),
        )
        .await?
        .container_id;
        bounded(
            "StartContainer",
            c.runtime
                .start_container(cri::StartContainerRequest { container_id: cid }),
        )
        .await?;
        anyhow::Ok(())
    }
    .await;
    let took = t0.elapsed();
    if let Err(e) = started {
        // Leave nothing: the pod goes, then the error is reported.
        let _ = teardown_pod(c, &pod).await;
        return Err(e);
    }
    Ok((pod, took))
}

/// StopPodSandbox + RemovePodSandbox, timed; then (untimed) the pod cgroup parent goes, as the
/// kubelet removes it.
async fn teardown_pod(c: &mut Cri, pod: &Pod) -> Result<Duration> {
    let t0 = Instant::now();
    bounded(
        "StopPodSandbox",
        c.runtime.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        }),
    )
    .await?;
    bounded(
        "RemovePodSandbox",
        c.runtime.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        }),
    )
    .await?;
    let took = t0.elapsed();
    remove_cgroup_parent(&pod.cgroup_parent);
    Ok(took)
}

fn remove_cgroup_parent(parent: &str) {
    let rel = parent.trim_start_matches('/');
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::remove_dir(h.path().join(rel));
    }
}

async fn pull(c: &mut Cri, image: &str) -> Result<()> {
    bounded(
        "PullImage",
        c.images.pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    )
    .await
    .with_context(|| format!("pulling {image}"))?;
    Ok(())
}

/// Waits until the runtime reports RuntimeReady and NetworkReady.
async fn ready(c: &mut Cri, label: &str) -> Result<()> {
    let start = Instant::now();
    loop {
        let s = bounded(
            "Status",
            c.runtime.status(cri::StatusRequest { verbose: false }),
        )
        .await?;
        let conds = s.status.map(|s| s.conditions).unwrap_or_default();
        if conds.len() >= 2 && conds.iter().all(|c| c.status) {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("{label} not ready after 30 s: {conds:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Per subject: samples for each scenario, and memory per pod.
struct Results {
    start: Samples,
    teardown: Samples,
    conc_start: Samples,
    conc_teardown: Samples,
    memory: Option<MemReport>,
}

struct MemReport {
    pods: usize,
    /// Per kind: process count and summed memory.
    kinds: BTreeMap<&'static str, (usize, Mem)>,
    daemon: Mem,
}

/// Starts `n` pods at once, measures memory while they run (when asked), then removes them all
/// at once. Returns (start wall, teardown wall, memory); pods that started are always removed.
async fn concurrent_round(
    s: &Subject,
    c: &Cri,
    n: usize,
    round: usize,
    measure: bool,
) -> Result<(Duration, Duration, Option<MemReport>)> {
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let mut c = c.clone();
            let spec = s.spec.clone();
            tokio::spawn(async move { start_pod(&mut c, &spec, &format!("conc{round}-{i}")).await })
        })
        .collect();
    let mut pods = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok((p, _))) => pods.push(p),
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let start_wall = t0.elapsed();
    let memory = if measure && errors.is_empty() {
        // Let the last containers finish exec'ing before reading their memory.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut kinds = BTreeMap::new();
        for (kind, pids) in s.per_pod_processes() {
            let mut sum = Mem::default();
            for p in &pids {
                sum += mem_of(*p);
            }
            kinds.insert(kind, (pids.len(), sum));
        }
        Some(MemReport {
            pods: pods.len(),
            kinds,
            daemon: s.daemon_pid().map(mem_of).unwrap_or_default(),
        })
    } else {
        None
    };
    let t1 = Instant::now();
    let tasks: Vec<_> = pods
        .into_iter()
        .map(|p| {
            let mut c = c.clone();
            tokio::spawn(async move { teardown_pod(&mut c, &p).await })
        })
        .collect();
    for t in tasks {
        match t.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => errors.push(format!("teardown: {e:#}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let teardown_wall = t1.elapsed();
    if !errors.is_empty() {
        bail!(
            "{}: {} of {n} concurrent pods failed: {}",
            s.label,
            errors.len(),
            errors[0]
        );
    }
    Ok((start_wall, teardown_wall, memory))
}

async fn measure(subjects: &[Subject], args: &Args, deadline: Instant) -> Result<Vec<Results>> {
    let mut clients = Vec::new();
    for s in subjects {
        let mut c = connect(&s.socket()).await?;
        ready(&mut c, s.label).await?;
        pull(&mut c, &s.spec.busybox).await?;
        pull(&mut c, &s.spec.pause).await?;
        clients.push(c);
    }
    let mut results: Vec<Results> = subjects
        .iter()
        .map(|s| Results {
            start: Samples::new(s.label),
            teardown: Samples::new(s.label),
            conc_start: Samples::new(s.label),
            conc_teardown: Samples::new(s.label),
            memory: None,
        })
        .collect();
    // Warm-up (page cache, the bridge, first-pod work), untimed.
    for (s, c) in subjects.iter().zip(clients.iter_mut()) {
        for i in 0..2 {
            let (p, _) = start_pod(c, &s.spec, &format!("warm-{i}")).await?;
            teardown_pod(c, &p).await?;
        }
    }
    eprintln!("cold start + teardown, {} runs…", args.runs);
    // Interleaved, so drift in the machine's load hits every subject alike.
    'runs: for i in 0..args.runs {
        for (k, (s, c)) in subjects.iter().zip(clients.iter_mut()).enumerate() {
            if Instant::now() > deadline {
                break 'runs;
            }
            let (p, took) = start_pod(c, &s.spec, &format!("cold-{i}")).await?;
            results[k].start.push(took);
            let took = teardown_pod(c, &p).await?;
            results[k].teardown.push(took);
        }
    }
    eprintln!("{} pods at once, {} rounds…", args.concurrent, args.rounds);
    'rounds: for r in 0..args.rounds {
        for (k, (s, c)) in subjects.iter().zip(clients.iter()).enumerate() {
            if Instant::now() > deadline {
                break 'rounds;
            }
            let (st, td, mem) = concurrent_round(s, c, args.concurrent, r, r == 0).await?;
            results[k].conc_start.push(st);
            results[k].conc_teardown.push(td);
            if mem.is_some() {
                results[k].memory = mem;
            }
        }
    }
    Ok(results)
}

fn print_memory(subjects: &[Subject], results: &[Results]) {
    println!("### Memory of the processes kept per running pod\n");
    println!(
        "Measured with every pod of the concurrency scenario running. VmRSS counts every resident \
         page, shared ones (libc, the binary's text) in full in each process; Pss divides shared \
         pages among the processes mapping them; USS is the process's private pages only.\n"
    );
    println!("| subject | pods | processes per pod | VmRSS per pod | Pss per pod | USS per pod |");
    println!("|---|---|---|---|---|---|");
    for (s, r) in subjects.iter().zip(results) {
        let Some(m) = &r.memory else {
            println!("| {} | – | – | – | – | – |", s.label);
            continue;
        };
        let mut total = Mem::default();
        let mut kinds = Vec::new();
        for (kind, (count, sum)) in &m.kinds {
            total += *sum;
            kinds.push(format!(
                "{kind} ×{:.1}",
                *count as f64 / m.pods.max(1) as f64
            ));
        }
        let per = |v: u64| mib(v as f64 / m.pods.max(1) as f64);
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            s.label,
            m.pods,
            kinds.join(" + "),
            per(total.rss),
            per(total.pss),
            per(total.uss)
        );
    }
    println!("\n| process | subject | count | VmRSS each | Pss each | USS each |");
    println!("|---|---|---|---|---|---|");
    for (s, r) in subjects.iter().zip(results) {
        let Some(m) = &r.memory else { continue };
        for (kind, (count, sum)) in &m.kinds {
            let each = |v: u64| mib(v as f64 / (*count).max(1) as f64);
            println!(
                "| {kind} | {} | {count} | {} | {} | {} |",
                s.label,
                each(sum.rss),
                each(sum.pss),
                each(sum.uss)
            );
        }
        let daemon = match s.backend {
            Backend::Pea(_) => "pea-shim (node-wide)",
            Backend::Containerd(_) => "containerd (node-wide)",
        };
        println!(
            "| {daemon} | {} | 1 | {} | {} | {} |",
            s.label,
            mib(m.daemon.rss as f64),
            mib(m.daemon.pss as f64),
            mib(m.daemon.uss as f64)
        );
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    require_root();
    let deadline = Instant::now() + Duration::from_secs(args.time_limit);
    let began = Instant::now();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let ctd_version = Command::new("containerd")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let runc_version = Command::new("runc")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default();

    // pea-monitor as shipped: the static build (see shim/monitor/Cargo.toml), when it exists.
    if std::env::var_os("PEA_MONITOR").is_none() {
        let exe = std::env::current_exe()?;
        if let Some(target) = exe.parent().and_then(Path::parent) {
            let profile = exe.parent().and_then(Path::file_name).unwrap_or_default();
            let stat = target
                .join("x86_64-unknown-linux-gnu")
                .join(profile)
                .join("pea-monitor");
            if stat.is_file() {
                std::env::set_var("PEA_MONITOR", &stat);
            }
        }
    }
    let monitor = pea_tests::bins::workspace_binary("pea-monitor", "PEA_MONITOR");
    let monitor_kind = if is_static(&monitor) {
        "static"
    } else {
        "dynamic"
    };
    eprintln!("setting up the nodes (registries, daemons)…");
    // Drop order on any exit (reverse of creation): containerd, then the pea nodes.
    let images = Images::build()?;
    let mut subjects = vec![pea_subject(PEA, &images, false, args.shim_debug)?];
    if !args.no_same_cni {
        subjects.push(pea_subject(PEA_BRIDGE, &images, true, args.shim_debug)?);
    }
    let ctd = Containerd::start(&images)?;
    let spec = ctd.spec.clone();
    subjects.push(Subject {
        label: CONTAINERD,
        backend: Backend::Containerd(Box::new(ctd)),
        spec,
    });
    eprintln!("set up in {:.1} s", began.elapsed().as_secs_f64());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let results = rt.block_on(measure(&subjects, &args, deadline));
    drop(rt);
    let results = match results {
        Ok(r) => r,
        Err(e) => {
            for s in &subjects {
                if let Backend::Pea(n) = &s.backend {
                    let log = n.log();
                    let lines: Vec<&str> = log.lines().collect();
                    eprintln!(
                        "--- {} log tail:\n{}",
                        s.label,
                        lines[lines.len().saturating_sub(20)..].join("\n")
                    );
                }
                if let Backend::Containerd(c) = &s.backend {
                    eprintln!("--- containerd log tail:\n{}", c.log_tail());
                }
            }
            return Err(e);
        }
    };

    println!("## pea-shim + pea-runtime vs containerd 1.6 + runc (`bench-cri`)\n");
    println!(
        "{date}, load average at start {}; {ctd_version}; {runc_version}; one busybox container per pod; \
         pea-shim logging at {}; {} ({monitor_kind}).\n",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        if args.shim_debug { "debug" } else { "warn" },
        monitor.display()
    );
    let pick =
        |f: fn(&Results) -> &Samples| results.iter().map(|r| f(r).clone()).collect::<Vec<_>>();
    print!(
        "{}",
        table(
            "Cold pod start: RunPodSandbox + CreateContainer + StartContainer",
            &pick(|r| &r.start),
            CONTAINERD
        )
    );
    println!();
    print!(
        "{}",
        table(
            "Pod teardown: StopPodSandbox + RemovePodSandbox",
            &pick(|r| &r.teardown),
            CONTAINERD
        )
    );
    println!();
    print!(
        "{}",
        table(
            &format!("{} pods started at once (wall time)", args.concurrent),
            &pick(|r| &r.conc_start),
            CONTAINERD
        )
    );
    println!();
    print!(
        "{}",
        table(
            &format!("{} pods torn down at once (wall time)", args.concurrent),
            &pick(|r| &r.conc_teardown),
            CONTAINERD
        )
    );
    println!();
    print_memory(&subjects, &results);
    if Instant::now() > deadline {
        println!("\n(time limit reached: fewer samples than asked)");
    }
    eprintln!(
        "measured in {:.1} s; cleaning up…",
        began.elapsed().as_secs_f64()
    );
    let mut leftovers = Vec::new();
    while let Some(s) = subjects.pop() {
        match s.backend {
            Backend::Pea(mut node) => {
                node.teardown()?;
                leftovers.extend(
                    node.leftovers()
                        .into_iter()
                        .map(|l| format!("{}: {l}", s.label)),
                );
            }
            Backend::Containerd(c) => drop(c),
        }
    }
    if !leftovers.is_empty() {
        eprintln!("pea left behind: {leftovers:?}");
    }
    eprintln!("done in {}", fmt_duration(began.elapsed()));
    Ok(())
}

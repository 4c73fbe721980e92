//! containerd 1.6 with its CRI plugin as a test and benchmark subject: in a network namespace
//! of its own, with its own root, state, socket, runc root, CNI config and a docker-registry on
//! that namespace's loopback; the OCI runtime is runc or any drop-in (pea-runtime). Everything
//! is removed on drop. Used by bench-cri and by the tests that drive containerd's CRI.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_cri::v1 as cri;
use serde_json::json;

use crate::cri_client::connect;
use crate::fixtures::busybox::{write_busybox_tree, DEFAULT_PATH};
use crate::fixtures::layer::TreeSink;
use crate::fixtures::layout::ImageDefaults;
use crate::fixtures::pause::build_pause_image;
use crate::fixtures::registry::{in_netns, Registry, RegistryOptions};
use crate::fixtures::{FixtureError, OciLayout};
use crate::netlab::{random_suffix, Netns};
use crate::privileged::require_program;
use crate::shim_node::remove_cgroup_tree;

/// Any single CRI call.
pub const OP_TIMEOUT: Duration = Duration::from_secs(120);

/// What a subject's pods are made of.
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub busybox: String,
    pub pause: String,
    /// Pod log directories go below this.
    pub logs: PathBuf,
    /// Pod cgroup parents are `/<cgroup_root>/<pod>`.
    pub cgroup_root: String,
}

/// containerd 1.6 with its CRI plugin, in a network namespace of its own, with its own root,
/// state, socket, runc root, CNI config and registry; everything removed on drop.
#[derive(Debug)]
pub struct Containerd {
    child: Option<Child>,
    pub socket: PathBuf,
    pub spec: PodSpec,
    // Dropped after `Drop::drop` ran: registry, then the dir, then the namespace (none of
    // the two when containerd joined a node another fixture owns).
    _registry: Option<Registry>,
    dir: tempfile::TempDir,
    _netns: Option<Netns>,
}

/// A node containerd joins instead of making its own (a kubelet node): its network namespace,
/// registry, CNI network and cgroup root belong to the caller.
#[derive(Debug, Clone)]
pub struct JoinNode {
    pub netns: PathBuf,
    /// `host:port` of the node's loopback http registry, allowed in containerd's hosts config.
    pub registry_host: String,
    pub pause: String,
    pub busybox: String,
    /// The node's CNI conf dir (its conflist is used as is).
    pub cni_conf_dir: PathBuf,
    /// Plugin dirs, searched in order; containerd 1.6 takes one, so they are merged into one
    /// dir of symlinks (first one wins).
    pub cni_bin_dirs: Vec<PathBuf>,
    pub cgroup_root: String,
}

/// The images both runtimes run, built once into one OCI layout and pushed to every node's
/// registry (same digests everywhere): busybox (tag `bench`) and pea's pause (tag `3.10`).
///
/// The busybox applets are symlinks to /bin/busybox here, not the fixture's hard links: the
/// fixture writes hard-link entries with mode 0644 in their tar headers, and containerd (like
/// Docker) applies a hard link's header mode to the shared inode, which leaves /bin/busybox
/// non-executable ("exec: /bin/sh: permission denied"); pea-images ignores that mode.
#[derive(Debug)]
pub struct Images {
    _dir: tempfile::TempDir,
    layout: OciLayout,
}

impl Images {
    pub fn build() -> Result<Self> {
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
    pub fn push(&self, registry: &Registry) -> Result<(String, String)> {
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
    pub fn start(images: &Images, runtime: Option<&Path>) -> Result<Self> {
        let netns = Netns::new("bctd")?;
        let registry = Registry::start_with(&RegistryOptions {
            netns: Some(netns.path()),
            ..Default::default()
        })?;
        let (busybox, pause) = images.push(&registry)?;
        let dir = tempfile::Builder::new()
            .prefix("pea-bench-ctd-")
            .tempdir()?;
        let d = dir.path();
        for sub in ["net.d", "ipam"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        let conflist = json!({
            "cniVersion": "1.0.0",
            "name": "bench",
            "plugins": [bridge_plugin("10.233.9.0/24", &d.join("ipam"))]
        });
        std::fs::write(
            d.join("net.d/10-bench.conflist"),
            serde_json::to_vec_pretty(&conflist)?,
        )?;
        let node = JoinNode {
            netns: netns.path(),
            registry_host: registry.host(),
            pause,
            busybox,
            cni_conf_dir: d.join("net.d"),
            cni_bin_dirs: vec![PathBuf::from("/usr/lib/cni")],
            cgroup_root: format!("pea-bench-ctd-{}", random_suffix(3)),
        };
        let mut ctd = Self::launch(dir, &node, runtime)?;
        ctd._registry = Some(registry);
        ctd._netns = Some(netns);
        Ok(ctd)
    }

    /// containerd joining `node`: in its network namespace, pulling from its registry, with its
    /// CNI network; root, state, socket and runc root of its own (removed on drop).
    pub fn join(node: &JoinNode, runtime: Option<&Path>) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("pea-node-ctd-").tempdir()?;
        Self::launch(dir, node, runtime)
    }

    fn launch(dir: tempfile::TempDir, node: &JoinNode, runtime: Option<&Path>) -> Result<Self> {
        let bin = require_program("containerd");
        require_program("containerd-shim-runc-v2");
        // The OCI runtime containerd's runc shim drives: runc, or pea-runtime as a drop-in.
        let runc = match runtime {
            Some(r) => r.to_path_buf(),
            None => require_program("runc"),
        };
        let host = node.registry_host.clone();
        let pause = node.pause.clone();
        let d = dir.path();
        for sub in ["logs", "opt", "runc", "cni-bin"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        // One plugin dir: symlinks to every plugin of the node's dirs, the first dir winning.
        for src in &node.cni_bin_dirs {
            for e in std::fs::read_dir(src)
                .with_context(|| format!("CNI bin dir {}", src.display()))?
                .flatten()
            {
                let link = d.join("cni-bin").join(e.file_name());
                if !link.exists() {
                    std::os::unix::fs::symlink(e.path(), &link)?;
                }
            }
        }
        let hosts = d.join("certs.d").join(&host);
        std::fs::create_dir_all(&hosts)?;
        std::fs::write(
            hosts.join("hosts.toml"),
            format!(
                "server = \"http://{host}\"\n\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        )?;
        let dd = d.display();
        let cni_conf = node.cni_conf_dir.display();
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
      bin_dir = "{dd}/cni-bin"
      conf_dir = "{cni_conf}"
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
        let child = in_netns(Some(&node.netns), || cmd.spawn()).context("starting containerd")?;
        let mut ctd = Containerd {
            child: Some(child),
            socket: d.join("containerd.sock"),
            spec: PodSpec {
                busybox: node.busybox.clone(),
                pause,
                logs: d.join("logs"),
                cgroup_root: node.cgroup_root.clone(),
            },
            _registry: None,
            dir,
            _netns: None,
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

    /// containerd's own pid, while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// The OCI runtime's state dir (its `--root`): `<root>/k8s.io/<container id>/`.
    pub fn runtime_root(&self) -> PathBuf {
        self.dir.path().join("runc")
    }

    pub fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// containerd-shim-runc-v2 processes serving this containerd.
    pub fn shims(&self) -> Vec<i32> {
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

pub fn bridge_plugin(subnet: &str, data_dir: &Path) -> serde_json::Value {
    json!({"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
           "ipam": {"type": "host-local", "subnet": subnet, "dataDir": data_dir}})
}

/// Lazily unmounts every mount at or below `dir`, deepest first.
pub fn unmount_below(dir: &Path) {
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
pub fn remove_all_pods(socket: &Path) -> Result<()> {
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
pub async fn bounded<T>(
    what: &str,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(OP_TIMEOUT, call).await {
        Err(_) => bail!("{what}: no answer in {} s", OP_TIMEOUT.as_secs()),
        Ok(Err(s)) => bail!("{what}: {} {}", s.code(), s.message()),
        Ok(Ok(r)) => Ok(r.into_inner()),
    }
}
/// Every pid whose (pid, comm, cmdline) matches.
pub fn pids_where(f: impl Fn(i32, &str, &str) -> bool) -> Vec<i32> {
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

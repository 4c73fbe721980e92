//! A pea-control API server for tests: started in-process on its own tokio runtime, on a free
//! loopback port with a temporary data dir, on the embedded store or a real etcd; plus a
//! `kubectl` runner with a fresh HOME per instance (kubectl caches discovery there).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;

use anyhow::{Context, Result};
use pea_control::server::{start, Config, Running};

use crate::control_etcd::Etcd;

/// Which store the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Etcd,
}

/// A running API server; stopped (with its etcd) on drop.
#[derive(Debug)]
pub struct ControlPlane {
    rt: Option<tokio::runtime::Runtime>,
    running: Option<Running>,
    pub kubeconfig: PathBuf,
    pub addr: std::net::SocketAddr,
    pub data_dir: PathBuf,
    config: Config,
    _dir: tempfile::TempDir,
    _etcd: Option<Etcd>,
}

impl ControlPlane {
    pub fn start(backend: Backend) -> Result<Self> {
        Self::start_with(backend, |_| {})
    }

    /// Starts with a config adjusted by `tweak` (data dir and listen address are preset).
    pub fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("pea-control-").tempdir()?;
        let etcd = match backend {
            Backend::Etcd => Some(Etcd::start()?),
            Backend::Embedded => None,
        };
        let mut config = Config {
            data_dir: dir.path().join("data"),
            listen: "127.0.0.1:0".parse()?,
            etcd: etcd.as_ref().map(|e| e.url().to_string()),
            // No controllers run here, so no `default` service accounts appear: pods would be
            // refused (tests of that admission plugin turn it back on).
            disable_admission_plugins: vec!["ServiceAccount".into()],
            ..Config::default()
        };
        tweak(&mut config);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let running = rt
            .block_on(start(config.clone()))
            .context("start pea-control")?;
        Ok(Self {
            kubeconfig: running.kubeconfig.clone(),
            addr: running.addr,
            data_dir: config.data_dir.clone(),
            config,
            running: Some(running),
            rt: Some(rt),
            _dir: dir,
            _etcd: etcd,
        })
    }

    /// Stops the server and starts it again on the same data dir and store (new port; the
    /// kubeconfig path stays). Background work of the old server (cascades) is cut short.
    pub fn restart(&mut self) -> Result<()> {
        if let (Some(rt), Some(running)) = (self.rt.as_ref(), self.running.take()) {
            rt.block_on(running.shutdown());
        }
        // Dropping the runtime ends every task of the old server and closes its store.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
        self.rt = Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?,
        );
        let rt = self.rt.as_ref().expect("runtime");
        let running = rt
            .block_on(start(self.config.clone()))
            .context("restart pea-control")?;
        self.kubeconfig = running.kubeconfig.clone();
        self.addr = running.addr;
        self.running = Some(running);
        Ok(())
    }

    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(&self.kubeconfig)
    }

    /// The server's state (store, resources) for direct checks.
    pub fn api(&self) -> Arc<pea_control::api::Api> {
        self.running.as_ref().expect("running").api.clone()
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    /// Runs a future on the server's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.as_ref().expect("runtime").block_on(f)
    }

    /// The allocation records under `prefix` (e.g. `/registry/ranges/serviceips/`), as items,
    /// but those of the `default/kubernetes` Service the server makes for itself.
    pub fn allocations(&self, prefix: &str) -> std::collections::BTreeSet<String> {
        let api = self.api();
        self.block_on(api.store.list(prefix, &Default::default()))
            .expect("listing allocation records")
            .items
            .into_iter()
            .filter(|kv| kv.value != b"default/kubernetes")
            .map(|kv| kv.key[prefix.len()..].to_string())
            .collect()
    }

    /// Writes a kubeconfig for a client certificate of `user` in `groups`.
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> Result<PathBuf> {
        use base64::Engine;
        let pki = &self.running().pki;
        let pair = pki.issue_client(user, groups)?;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let path = self
            ._dir
            .path()
            .join(format!("{}.kubeconfig", user.replace(':', "_")));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: pea\n  cluster:\n    server: https://{}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: pea\n  context: {{cluster: pea, user: u}}\ncurrent-context: pea\n",
                self.addr,
                b64(&pki.ca.cert_pem),
                b64(&pair.cert_pem),
                b64(&pair.key_pem)
            ),
        )?;
        Ok(path)
    }

    /// A kubeconfig that trusts the server but presents no credentials.
    pub fn anonymous_kubeconfig(&self) -> Result<PathBuf> {
        use base64::Engine;
        let path = self._dir.path().join("anonymous.kubeconfig");
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.running().pki.ca.cert_pem);
        std::fs::write(
            &path,
            format!("apiVersion: v1\nkind: Config\nclusters:\n- name: pea\n  cluster:\n    server: https://{}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: pea\n  context: {{cluster: pea, user: u}}\ncurrent-context: pea\n", self.addr),
        )?;
        Ok(path)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let (Some(rt), Some(running)) = (self.rt.as_ref(), self.running.take()) {
            rt.block_on(running.shutdown());
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
}

/// Runs the real kubectl with its own HOME and a given kubeconfig.
#[derive(Debug)]
pub struct Kubectl {
    home: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Kubectl {
    pub fn new(kubeconfig: &Path) -> Self {
        crate::privileged::require_program("kubectl");
        Self {
            home: tempfile::Builder::new()
                .prefix("pea-kubectl-home-")
                .tempdir()
                .expect("temp HOME"),
            kubeconfig: kubeconfig.to_path_buf(),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.args(args)
            .env("HOME", self.home.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run kubectl")
    }

    /// Runs and returns stdout; panics with stderr on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs, expects failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs with `input` on stdin and returns the whole output, success or not.
    pub fn stdin_output(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("kubectl output")
    }

    /// Runs with `input` on stdin (e.g. `create -f -`); returns stdout, panics on failure.
    pub fn ok_stdin(&self, args: &[&str], input: &str) -> String {
        let out = self.stdin_output(args, input);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs with `input` on stdin, expects failure, returns stderr.
    pub fn fails_stdin(&self, args: &[&str], input: &str) -> String {
        let out = self.stdin_output(args, input);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Starts a long-running kubectl (e.g. `get -w`) with piped stdout.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl")
    }
}

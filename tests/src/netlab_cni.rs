//! A small CNI runtime for tests, with libcni's semantics: a conflist runs plugin by plugin with
//! `prevResult` chaining and capability-filtered `runtimeConfig`; DEL runs in reverse with the
//! cached result; CHECK passes the cached result; GC and STATUS go to every plugin. Plugins run
//! inside the node's namespace through `nsenter --net` (as a runtime on that node would run them).

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Mutex, OnceLock},
};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// Directory holding Debian's reference plugins.
pub const DEBIAN_CNI_DIR: &str = "/usr/lib/cni";

/// The pea-cni binary: `$PEA_CNI_BIN`, else built once (release) into target/cni.
pub fn pea_cni_dir() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    if let Some(p) = std::env::var_os("PEA_CNI_BIN") {
        return Ok(PathBuf::from(p)
            .parent()
            .ok_or_else(|| anyhow!("PEA_CNI_BIN has no directory"))?
            .to_path_buf());
    }
    BUILT
        .get_or_init(|| build_pea_cni().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn build_pea_cni() -> Result<PathBuf> {
    let root = crate::fixtures::pause::workspace_root();
    let target_dir = root.join("target/cni");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // A separate target dir: an outer `cargo test` holds the main one's lock.
    let out = Command::new(&cargo)
        .current_dir(&root)
        .args(["build", "--quiet", "--release", "-p", "pea-cni"])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .context("running cargo")?;
    if !out.status.success() {
        bail!("building pea-cni: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(target_dir.join("release"))
}

/// The outcome of one plugin call that failed: the spec's error object.
#[derive(Debug, Clone)]
pub struct PluginError {
    pub plugin: String,
    pub code: u64,
    pub msg: String,
    pub raw: String,
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} failed with code {}: {} ({})",
            self.plugin, self.code, self.msg, self.raw
        )
    }
}
impl std::error::Error for PluginError {}

/// Runs one plugin binary in `node_netns` with the CNI environment and `conf` on stdin.
pub fn invoke(
    plugin_dirs: &[PathBuf],
    node_netns: &Path,
    kind: &str,
    command: &str,
    env: &[(&str, &str)],
    conf: &Value,
) -> Result<Option<Value>> {
    let bin = plugin_dirs
        .iter()
        .map(|d| d.join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("plugin {kind:?} not found in {plugin_dirs:?}"))?;
    let cni_path = std::env::join_paths(plugin_dirs)?;
    // An empty `node_netns` runs the plugin in the caller's own namespace (a caller that has
    // entered the node's namespace itself, as the benchmark does, to time the plugin alone).
    let mut cmd = if node_netns.as_os_str().is_empty() {
        Command::new(&bin)
    } else {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", node_netns.display())).arg(&bin);
        c
    };
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().context("spawning nsenter")?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(conf.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        let v: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        return Err(PluginError {
            plugin: format!("{kind} {command}"),
            code: v["code"].as_u64().unwrap_or(0),
            msg: v["msg"].as_str().unwrap_or("").to_string(),
            raw: format!(
                "stdout={stdout} stderr={}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
        .into());
    }
    if stdout.is_empty() {
        return Ok(None);
    }
    Ok(Some(serde_json::from_str(&stdout).with_context(|| {
        format!("{kind} {command} printed {stdout}")
    })?))
}

/// One attachment: a container's interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

/// A network configuration list and the cached results of its attachments.
#[derive(Debug)]
pub struct ConfList {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<Value>,
    pub plugin_dirs: Vec<PathBuf>,
    pub node_netns: PathBuf,
    cache: Mutex<BTreeMap<Attachment, (String, Value)>>,
}

impl ConfList {
    pub fn new(
        name: &str,
        cni_version: &str,
        plugins: Vec<Value>,
        plugin_dirs: Vec<PathBuf>,
        node_netns: PathBuf,
    ) -> Self {
        ConfList {
            name: name.into(),
            cni_version: cni_version.into(),
            plugins,
            plugin_dirs,
            node_netns,
            cache: Mutex::new(BTreeMap::new()),
        }
    }

    fn plugin_conf(&self, plugin: &Value, prev: Option<&Value>, runtime: &Value) -> Value {
        let mut c = plugin.clone();
        c["name"] = json!(self.name);
        c["cniVersion"] = json!(self.cni_version);
        if let Some(p) = prev {
            c["prevResult"] = p.clone();
        }
        // libcni passes only the runtimeConfig keys a plugin declares as capabilities.
        if let Some(caps) = plugin.get("capabilities").and_then(Value::as_object) {
            let mut rc = serde_json::Map::new();
            for (k, on) in caps {
                if on.as_bool() == Some(true) {
                    if let Some(v) = runtime.get(k) {
                        rc.insert(k.clone(), v.clone());
                    }
                }
            }
            if !rc.is_empty() {
                c["runtimeConfig"] = Value::Object(rc);
            }
        }
        c
    }

    fn env<'a>(id: &'a str, netns: &'a str, ifname: &'a str) -> Vec<(&'static str, &'a str)> {
        vec![
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", ifname),
            ("CNI_ARGS", "IgnoreUnknown=1"),
        ]
    }

    /// ADD through the list; caches and returns the final result.
    pub fn add(&self, id: &str, netns: &Path, ifname: &str, runtime: &Value) -> Result<Value> {
        let ns = netns.display().to_string();
        let mut prev: Option<Value> = None;
        for p in &self.plugins {
            let kind = p["type"]
                .as_str()
                .ok_or_else(|| anyhow!("plugin without type"))?;
            let conf = self.plugin_conf(p, prev.as_ref(), runtime);
            let out = invoke(
                &self.plugin_dirs,
                &self.node_netns,
                kind,
                "ADD",
                &Self::env(id, &ns, ifname),
                &conf,
            )?;
            prev = Some(out.ok_or_else(|| anyhow!("{kind} ADD printed no result"))?);
        }
        let result = prev.ok_or_else(|| anyhow!("empty conflist"))?;
        self.cache.lock().unwrap().insert(
            Attachment {
                container_id: id.into(),
                ifname: ifname.into(),
            },
            (ns, result.clone()),
        );
        Ok(result)
    }

    /// DEL in reverse order with the cached result (netns may be "" when it is gone).
    pub fn del(&self, id: &str, netns: &str, ifname: &str, runtime: &Value) -> Result<()> {
        let key = Attachment {
            container_id: id.into(),
            ifname: ifname.into(),
        };
        let cached = self.cache.lock().unwrap().get(&key).map(|(_, r)| r.clone());
        for p in self.plugins.iter().rev() {
            let kind = p["type"]
                .as_str()
                .ok_or_else(|| anyhow!("plugin without type"))?;
            let conf = self.plugin_conf(p, cached.as_ref(), runtime);
            invoke(
                &self.plugin_dirs,
                &self.node_netns,
                kind,
                "DEL",
                &Self::env(id, netns, ifname),
                &conf,
            )?;
        }
        self.cache.lock().unwrap().remove(&key);
        Ok(())
    }

    /// CHECK through the list with the cached result.
    pub fn check(&self, id: &str, ifname: &str, runtime: &Value) -> Result<()> {
        let key = Attachment {
            container_id: id.into(),
            ifname: ifname.into(),
        };
        let (ns, cached) = self
            .cache
            .lock()
            .unwrap()
            .get(&key)
            .cloned()
            .ok_or_else(|| anyhow!("no cached result for {id}/{ifname}"))?;
        for p in &self.plugins {
            let kind = p["type"]
                .as_str()
                .ok_or_else(|| anyhow!("plugin without type"))?;
            let conf = self.plugin_conf(p, Some(&cached), runtime);
            invoke(
                &self.plugin_dirs,
                &self.node_netns,
                kind,
                "CHECK",
                &Self::env(id, &ns, ifname),
                &conf,
            )?;
        }
        Ok(())
    }

    /// GC on every plugin with the given valid attachments (spec 1.1).
    pub fn gc(&self, valid: &[Attachment]) -> Result<()> {
        let list: Vec<Value> = valid
            .iter()
            .map(|a| json!({"containerID": a.container_id, "ifname": a.ifname}))
            .collect();
        for p in &self.plugins {
            let kind = p["type"]
                .as_str()
                .ok_or_else(|| anyhow!("plugin without type"))?;
            let mut conf = self.plugin_conf(p, None, &Value::Null);
            conf["cni.dev/valid-attachments"] = Value::Array(list.clone());
            invoke(&self.plugin_dirs, &self.node_netns, kind, "GC", &[], &conf)?;
        }
        Ok(())
    }

    /// Forgets cached results (as a runtime that lost its cache would).
    pub fn forget(&self, id: &str, ifname: &str) {
        self.cache.lock().unwrap().remove(&Attachment {
            container_id: id.into(),
            ifname: ifname.into(),
        });
    }
}

/// The first non-loopback IPv4 address (without prefix) of a result.
pub fn result_ip(result: &Value) -> Option<String> {
    result["ips"].as_array()?.iter().find_map(|ip| {
        let a = ip["address"].as_str()?;
        let ip = a.split('/').next().unwrap_or(a);
        (!a.contains(':') && !ip.starts_with("127.")).then(|| ip.to_string())
    })
}

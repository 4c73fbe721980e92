//! The CNI side of a sandbox, with libcni's semantics: the first valid network configuration in
//! the conf dir (files sorted by name; `.conflist`, or a single-plugin `.conf`/`.json` wrapped as
//! a list), plugins run in order for ADD with each result passed on as `prevResult`, and in
//! reverse for DEL. The ADD result, the config bytes and the capability args are cached, so DEL
//! runs with the configuration ADD used (even after the conf dir changed) and works without the
//! network namespace. Capability args (`portMappings`, `dns`, ...) reach only the plugins that
//! declare them in `capabilities`, under `runtimeConfig`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;

/// Why a CNI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("no network config found in {0}")]
    NoConfig(PathBuf),
    #[error("{path}: {detail}")]
    BadConfig { path: PathBuf, detail: String },
    #[error("plugin {plugin:?} not found in {dirs}")]
    PluginNotFound { plugin: String, dirs: String },
    #[error("plugin {plugin} {command}: {message}")]
    Plugin {
        plugin: String,
        command: &'static str,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A network configuration list, with the bytes it was read from (cached for DEL).
#[derive(Debug, Clone)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<Map<String, Value>>,
    pub bytes: Vec<u8>,
    pub source: PathBuf,
}

impl NetworkList {
    pub fn parse(bytes: &[u8], source: &Path) -> Result<Self, CniError> {
        let bad = |detail: String| CniError::BadConfig {
            path: source.to_path_buf(),
            detail,
        };
        let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        let is_list = obj.contains_key("plugins");
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("\"name\" is missing".into()))?
            .to_string();
        let cni_version = obj
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("0.4.0")
            .to_string();
        let plugins = if is_list {
            obj["plugins"]
                .as_array()
                .ok_or_else(|| bad("\"plugins\" is not a list".into()))?
                .iter()
                .map(|p| {
                    p.as_object()
                        .filter(|o| o.get("type").and_then(Value::as_str).is_some())
                        .cloned()
                        .ok_or_else(|| bad("a plugin has no \"type\"".into()))
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            if obj.get("type").and_then(Value::as_str).is_none() {
                return Err(bad("\"type\" is missing".into()));
            }
            vec![obj.clone()]
        };
        if plugins.is_empty() {
            return Err(bad("\"plugins\" is empty".into()));
        }
        let bytes = if is_list {
            bytes.to_vec()
        } else {
            serde_json::to_vec(&json!({"cniVersion": cni_version, "name": name, "plugins": [obj]}))
                .expect("json")
        };
        Ok(Self {
            name,
            cni_version,
            plugins,
            bytes,
            source: source.to_path_buf(),
        })
    }

    /// The first valid configuration in `dir`, as libcni and containerd pick it.
    pub fn load_default(dir: &Path) -> Result<Self, CniError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| CniError::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x == "conflist" || x == "conf" || x == "json")
            })
            .collect();
        files.sort();
        for f in files {
            match std::fs::read(&f) {
                Ok(b) => match Self::parse(&b, &f) {
                    Ok(l) => return Ok(l),
                    Err(e) => tracing::warn!(error = %e, "skipping CNI config"),
                },
                Err(e) => tracing::warn!(path = %f.display(), error = %e, "skipping CNI config"),
            }
        }
        Err(CniError::NoConfig(dir.to_path_buf()))
    }
}

/// Who a network attachment is for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    pub container_id: String,
    /// Empty when the namespace is gone (DEL only).
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS` (`K8S_POD_NAMESPACE=...;...`).
    pub args: Vec<(String, String)>,
    /// Capability args by name (`portMappings`, `dns`, ...).
    pub capability_args: Map<String, Value>,
}

/// What ADD leaves for DEL (libcni's `cniCacheV1` fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CacheEntry {
    kind: String,
    container_id: String,
    config: Vec<u8>,
    if_name: String,
    network_name: String,
    cni_args: Vec<(String, String)>,
    capability_args: Map<String, Value>,
    result: Value,
}

/// Runs plugins from `bin_dirs`, caching results in `cache_dir`.
#[derive(Debug, Clone)]
pub struct Cni {
    pub bin_dirs: Vec<PathBuf>,
    pub cache_dir: PathBuf,
}

impl Cni {
    fn cache_path(&self, network: &str, att: &Attachment) -> PathBuf {
        self.cache_dir
            .join("results")
            .join(format!("{network}-{}-{}", att.container_id, att.ifname))
    }

    fn find(&self, plugin: &str) -> Result<PathBuf, CniError> {
        if plugin.contains('/') || plugin.starts_with('.') {
            return Err(CniError::PluginNotFound {
                plugin: plugin.into(),
                dirs: "(a plugin type is a file name, not a path)".into(),
            });
        }
        self.bin_dirs
            .iter()
            .map(|d| d.join(plugin))
            .find(|p| p.is_file())
            .ok_or_else(|| CniError::PluginNotFound {
                plugin: plugin.into(),
                dirs: self
                    .bin_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":"),
            })
    }

    /// ADD on every plugin of `list`; on a failure the plugins already added are deleted again.
    pub async fn add(&self, list: &NetworkList, att: &Attachment) -> Result<Value, CniError> {
        let mut prev: Option<Value> = None;
        for (i, plugin) in list.plugins.iter().enumerate() {
            let conf = plugin_conf(list, plugin, prev.as_ref(), &att.capability_args);
            match self.exec(plugin, "ADD", &conf, att).await {
                Ok(out) => prev = Some(out),
                Err(e) => {
                    // Undo what was added, newest first, as libcni leaves to the caller.
                    for p in list.plugins[..=i].iter().rev() {
                        let conf = plugin_conf(list, p, prev.as_ref(), &att.capability_args);
                        if let Err(de) = self.exec(p, "DEL", &conf, att).await {
                            tracing::warn!(error = %de, "CNI DEL after a failed ADD");
                        }
                    }
                    return Err(e);
                }
            }
        }
        let result = prev.unwrap_or(Value::Null);
        let entry = CacheEntry {
            kind: "cniCacheV1".into(),
            container_id: att.container_id.clone(),
            config: list.bytes.clone(),
            if_name: att.ifname.clone(),
            network_name: list.name.clone(),
            cni_args: att.args.clone(),
            capability_args: att.capability_args.clone(),
            result: result.clone(),
        };
        let path = self.cache_path(&list.name, att);
        write_cache(&path, &entry)?;
        Ok(result)
    }

    /// DEL on every plugin, newest first, with the cached config and result when ADD left one.
    /// Idempotent: a DEL with nothing cached runs against `current` (if any) and succeeds when
    /// the plugins do.
    pub async fn del(
        &self,
        network: Option<&str>,
        current: Option<&NetworkList>,
        att: &Attachment,
    ) -> Result<(), CniError> {
        let name = network.or(current.map(|l| l.name.as_str()));
        let cached = name
            .map(|n| self.cache_path(n, att))
            .and_then(|p| std::fs::read(&p).ok().map(|b| (p, b)))
            .and_then(|(p, b)| {
                serde_json::from_slice::<CacheEntry>(&b)
                    .ok()
                    .map(|e| (p, e))
            });
        let (list, prev, caps, cache_path) = match cached {
            Some((p, e)) => (
                NetworkList::parse(&e.config, &p)?,
                Some(e.result),
                e.capability_args,
                Some(p),
            ),
            None => match current {
                Some(l) => (l.clone(), None, att.capability_args.clone(), None),
                None => return Ok(()),
            },
        };
        let mut errors = Vec::new();
        for plugin in list.plugins.iter().rev() {
            let conf = plugin_conf(&list, plugin, prev.as_ref(), &caps);
            if let Err(e) = self.exec(plugin, "DEL", &conf, att).await {
                errors.push(e.to_string());
            }
        }
        if !errors.is_empty() {
            return Err(CniError::Plugin {
                plugin: list.name.clone(),
                command: "DEL",
                message: errors.join("; "),
            });
        }
        if let Some(p) = cache_path {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }

    async fn exec(
        &self,
        plugin: &Map<String, Value>,
        command: &'static str,
        conf: &Value,
        att: &Attachment,
    ) -> Result<Value, CniError> {
        let ty = plugin["type"]
            .as_str()
            .expect("checked by parse")
            .to_string();
        let bin = self.find(&ty)?;
        let path = std::env::join_paths(&self.bin_dirs).unwrap_or_default();
        let args = att
            .args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        let mut child = tokio::process::Command::new(&bin)
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &att.container_id)
            .env("CNI_NETNS", &att.netns)
            .env("CNI_IFNAME", &att.ifname)
            .env("CNI_ARGS", args)
            .env("CNI_PATH", path)
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| CniError::Io {
                path: bin.clone(),
                source,
            })?;
        let input = serde_json::to_vec(conf).expect("json");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&input).await;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|source| CniError::Io { path: bin, source })?;
        let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
        if !out.status.success() {
            let message = parsed
                .as_ref()
                .and_then(|v| {
                    let msg = v.get("msg")?.as_str()?;
                    let details = v.get("details").and_then(Value::as_str).unwrap_or("");
                    Some(if details.is_empty() {
                        msg.to_string()
                    } else {
                        format!("{msg}: {details}")
                    })
                })
                .unwrap_or_else(|| {
                    format!(
                        "{}: {}{}",
                        out.status,
                        String::from_utf8_lossy(&out.stdout).trim(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    )
                });
            return Err(CniError::Plugin {
                plugin: ty,
                command,
                message,
            });
        }
        Ok(parsed.unwrap_or(Value::Null))
    }
}

fn write_cache(path: &Path, entry: &CacheEntry) -> Result<(), CniError> {
    let io = |source| CniError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path.parent().expect("cache dir")).map_err(io)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(entry).expect("json")).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// One plugin's stdin (libcni's buildOneConfig): the plugin's own keys plus the list's name and
/// version, `prevResult`, and `runtimeConfig` for the capabilities it declares.
fn plugin_conf(
    list: &NetworkList,
    plugin: &Map<String, Value>,
    prev: Option<&Value>,
    capability_args: &Map<String, Value>,
) -> Value {
    let mut conf = plugin.clone();
    conf.insert("name".into(), Value::String(list.name.clone()));
    conf.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
    if let Some(p) = prev.filter(|p| !p.is_null()) {
        conf.insert("prevResult".into(), p.clone());
    }
    let mut rc = Map::new();
    if let Some(caps) = plugin.get("capabilities").and_then(Value::as_object) {
        for (k, on) in caps {
            if on.as_bool() == Some(true) {
                if let Some(v) = capability_args.get(k) {
                    rc.insert(k.clone(), v.clone());
                }
            }
        }
    }
    if !rc.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(rc));
    }
    Value::Object(conf)
}

/// The addresses (without prefix length) a result gives the sandbox, IPv4 first as the kubelet
/// wants the primary IP to be.
pub fn result_ips(result: &Value) -> Vec<String> {
    let mut ips: Vec<String> = result
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.get("address").and_then(Value::as_str))
        .filter_map(|a| a.split('/').next().map(str::to_string))
        .collect();
    ips.sort_by_key(|a| a.contains(':'));
    ips.dedup();
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_plugin_confs_become_lists_and_capabilities_are_filtered() {
        let l = NetworkList::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#,
            Path::new("x.conf"),
        )
        .unwrap();
        assert_eq!(l.plugins.len(), 1);
        let v: Value = serde_json::from_slice(&l.bytes).unwrap();
        assert_eq!(v["plugins"][0]["type"], "bridge");

        let l = NetworkList::parse(
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
            Path::new("x.conflist"),
        )
        .unwrap();
        let mut caps = Map::new();
        caps.insert("portMappings".into(), json!([{"hostPort": 80}]));
        caps.insert("dns".into(), json!({"servers": ["1.1.1.1"]}));
        let a = plugin_conf(&l, &l.plugins[0], None, &caps);
        assert!(a.get("runtimeConfig").is_none());
        assert_eq!(a["name"], "n");
        let prev = json!({"ips": [{"address": "10.1.0.5/24"}]});
        let p = plugin_conf(&l, &l.plugins[1], Some(&prev), &caps);
        assert_eq!(p["runtimeConfig"]["portMappings"][0]["hostPort"], 80);
        assert!(p["runtimeConfig"].get("dns").is_none());
        assert_eq!(p["prevResult"], prev);
        assert!(NetworkList::parse(br#"{"name":"n","plugins":[]}"#, Path::new("x")).is_err());
        assert!(NetworkList::parse(br#"{"type":"x"}"#, Path::new("x")).is_err());
    }

    #[test]
    fn result_ips_put_ipv4_first() {
        let r = json!({"ips": [{"address": "fd00::5/64"}, {"address": "10.1.0.5/24"}]});
        assert_eq!(result_ips(&r), vec!["10.1.0.5", "fd00::5"]);
    }
}

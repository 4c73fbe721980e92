//! kube's ServiceAccount admission plugin for new pods
//! (plugin/pkg/admission/serviceaccount): the pod runs as `default` unless it names a service
//! account, which must exist; unless automounting is off (the pod's
//! `automountServiceAccountToken` over the service account's), a projected
//! `kube-api-access-<random>` volume (a bound token, the cluster CA, the namespace) is mounted
//! read-only at /var/run/secrets/kubernetes.io/serviceaccount in every container and init
//! container that has nothing mounted there. Mirror pods are left alone, and may not name a
//! service account.

use serde_json::{json, Value};

use crate::api::Api;
use crate::status::ApiError;

/// The plugin's name for `--disable-admission-plugins`.
pub const PLUGIN: &str = "ServiceAccount";
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// kube looks the `default` account up this many times (its controller creates it right
/// after the namespace), 100–200 ms apart, before refusing the pod.
const DEFAULT_ATTEMPTS: u32 = 10;
pub const VOLUME_PREFIX: &str = "kube-api-access-";
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// kube's `WarnOnlyBoundTokenExpirationSeconds`: 1 h + 7 s, so tokens can be told apart.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

fn forbidden(pod: &str, message: String) -> ApiError {
    ApiError::Forbidden {
        group: String::new(),
        resource: "pods".into(),
        name: pod.into(),
        message,
    }
}

/// The create pipeline's hook: pods only.
pub async fn admit(ctx: &crate::api::Ctx<'_>, obj: &mut Value) -> Result<(), ApiError> {
    if !ctx
        .api
        .service_accounts
        .as_ref()
        .is_some_and(|sa| sa.admission)
    {
        return Ok(());
    }
    match (ctx.def.kind, ctx.namespace()) {
        ("Pod", Some(ns)) if ctx.def.group.is_empty() => admit_pod(ctx.api, ns, obj).await,
        _ => Ok(()),
    }
}

/// Admits a pod being created in `ns`.
pub async fn admit_pod(api: &Api, ns: &str, pod: &mut Value) -> Result<(), ApiError> {
    let name = crate::objects::meta_str(pod, "name")
        .unwrap_or("")
        .to_string();
    let mirror = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(MIRROR_ANNOTATION))
        .is_some();
    let spec = pod
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| ApiError::BadRequest("a pod needs a spec".into()))?;
    let named = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if mirror {
        if named.is_some() {
            return Err(forbidden(
                &name,
                "a mirror pod may not reference service accounts".into(),
            ));
        }
        return Ok(());
    }
    let sa_name = named.unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_string());
    spec.insert("serviceAccountName".into(), json!(sa_name));
    // The deprecated alias kube still fills.
    spec.insert("serviceAccount".into(), json!(sa_name));
    let attempts = if sa_name == DEFAULT_SERVICE_ACCOUNT {
        DEFAULT_ATTEMPTS
    } else {
        1
    };
    let mut sa = None;
    for attempt in 0..attempts {
        if attempt > 0 {
            let mut jitter = [0u8; 1];
            crate::objects::random_bytes(&mut jitter);
            let ms = 100 + u64::from(jitter[0]) * 100 / 255;
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        sa = cached_account(api, ns, &sa_name).await?;
        if sa.is_some() {
            break;
        }
    }
    let sa = sa.ok_or_else(|| {
            forbidden(
                &name,
                format!(
                    "error looking up service account {ns}/{sa_name}: serviceaccount \"{sa_name}\" not found"
                ),
            )
        })?;
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            sa.get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        })
        .unwrap_or(true);
    if automount {
        mount_token(spec, &crate::objects::name_suffix());
    }
    Ok(())
}

/// The service account `ns/name` from admission's cache (a miss is read from the store).
async fn cached_account(api: &Api, ns: &str, name: &str) -> Result<Option<Value>, ApiError> {
    let def = api
        .resources
        .find("", "v1", "serviceaccounts")
        .ok_or_else(|| ApiError::Internal("serviceaccounts not served".into()))?;
    let cached = api
        .informers
        .service_accounts
        .get(api.store.as_ref(), &def.key(Some(ns), name))
        .await?;
    Ok(cached.map(|c| c.obj.clone()))
}

/// Adds the token volume (named `kube-api-access-<suffix>` unless one exists) and its mount.
fn mount_token(spec: &mut serde_json::Map<String, Value>, suffix: &str) {
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .filter_map(|v| v.get("name").and_then(Value::as_str))
                .find(|n| n.starts_with(VOLUME_PREFIX))
                .map(str::to_string)
        });
    let volume = existing
        .clone()
        .unwrap_or_else(|| format!("{VOLUME_PREFIX}{suffix}"));
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            if mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(MOUNT_PATH))
            {
                continue;
            }
            mounts.push(json!({"name": volume, "readOnly": true, "mountPath": MOUNT_PATH}));
            needed = true;
        }
    }
    if needed && existing.is_none() {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if let Some(v) = volumes.as_array_mut() {
            v.push(json!({
                "name": volume,
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                    ],
                },
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_in_every_container_without_a_mount_there() {
        let mut pod = json!({
            "initContainers": [{"name": "i"}],
            "containers": [
                {"name": "a", "volumeMounts": [{"name": "x", "mountPath": "/data"}]},
                {"name": "b", "volumeMounts": [{"name": "own", "mountPath": MOUNT_PATH}]},
            ],
        });
        let spec = pod.as_object_mut().unwrap();
        mount_token(spec, "abcde");
        let vols = pod["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 1);
        assert_eq!(vols[0]["name"], "kube-api-access-abcde");
        assert_eq!(
            vols[0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        assert_eq!(
            pod["initContainers"][0]["volumeMounts"][0]["mountPath"],
            MOUNT_PATH
        );
        assert_eq!(pod["containers"][0]["volumeMounts"][1]["readOnly"], true);
        assert_eq!(
            pod["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn reuses_an_existing_token_volume_and_adds_none_when_unneeded() {
        let mut pod = json!({
            "volumes": [{"name": "kube-api-access-zzzzz", "projected": {"sources": []}}],
            "containers": [{"name": "a"}],
        });
        mount_token(pod.as_object_mut().unwrap(), "abcde");
        assert_eq!(pod["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(
            pod["containers"][0]["volumeMounts"][0]["name"],
            "kube-api-access-zzzzz"
        );
        let mut pod = json!({"containers": [{"name": "a", "volumeMounts": [{"name": "o", "mountPath": MOUNT_PATH}]}]});
        mount_token(pod.as_object_mut().unwrap(), "abcde");
        assert!(pod.get("volumes").is_none());
    }
}

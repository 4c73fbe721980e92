//! Local ephemeral storage limits (kubelet's localStorageEviction, on while
//! localStorageCapacityIsolation is): every round, before any threshold is looked at, each
//! evictable pod is checked in kubelet's order — an emptyDir over its `sizeLimit`, then the
//! pod's whole ephemeral storage over the sum of its containers' `ephemeral-storage` limits,
//! then a container's logs (plus its writable layer when images and containers share nodefs)
//! over its own limit — and every pod over one is evicted at once, with kubelet's messages.
//! A round that evicts this way does not go on to the thresholds.

use std::collections::HashMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::candidates::{self, Stats};
use super::usage::du;
use crate::pods::Shared;

/// kubelet's immediateEvictionGracePeriodSeconds: what a pod over a limit gets to stop.
pub const GRACE_SECONDS: i64 = 1;

/// How a quantity was written (kube's Format): the sum of several is printed the way the
/// first of them was, as resource.Quantity.Add keeps the receiver's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    BinarySI,
    DecimalSI,
    DecimalExponent,
}

impl Format {
    pub fn of(written: &str) -> Self {
        let w = written.trim();
        if w.ends_with('i') {
            Format::BinarySI
        } else if w.rfind(['e', 'E']).is_some_and(|i| {
            i + 1 < w.len()
                && w[i + 1..]
                    .trim_start_matches(['+', '-'])
                    .chars()
                    .all(|c| c.is_ascii_digit())
        }) {
            Format::DecimalExponent
        } else {
            Format::DecimalSI
        }
    }
}

/// A whole number of bytes as resource.Quantity.String() prints it in `format`: binary-SI
/// ("6Mi", "1500"), decimal-SI ("6M", "1500k"), decimal exponent ("6e6"). As kube, a
/// binary-SI amount below 1024 is printed decimal-SI ("1k").
pub fn canonical(v: u64, format: Format) -> String {
    match format {
        Format::BinarySI if v >= 1024 => super::rank::quantity(v, true),
        Format::BinarySI | Format::DecimalSI => super::rank::quantity(v, false),
        Format::DecimalExponent => {
            let (mut m, mut e) = (v, 0);
            while m != 0 && m % 1000 == 0 {
                m /= 1000;
                e += 3;
            }
            if e == 0 {
                m.to_string()
            } else {
                format!("{m}e{e}")
            }
        }
    }
}

/// A resource amount with the format it prints in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Amount {
    value: u64,
    format: Format,
}

fn limit(c: &Container) -> Option<(Amount, String)> {
    let q = c
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("ephemeral-storage"))?;
    let value = crate::quantity::parse_bytes(&q.0)?;
    Some((
        Amount {
            value,
            format: Format::of(&q.0),
        },
        q.0.clone(),
    ))
}

fn add(sum: &mut Option<Amount>, a: Option<Amount>) {
    match (sum.as_mut(), a) {
        (Some(s), Some(a)) => s.value += a.value,
        (None, Some(a)) => *sum = Some(a),
        _ => {}
    }
}

fn max(list: &mut Option<Amount>, a: Option<Amount>) {
    if let Some(a) = a {
        if list.is_none_or(|l| a.value > l.value) {
            *list = Some(a);
        }
    }
}

/// The pod's ephemeral-storage limit as kube's resource helper PodLimits sums it: regular and
/// restartable init (sidecar) containers add up, a plain init container counts as the
/// largest of it (plus the sidecars started before it) and that sum; overhead is added
/// when there is a limit. None when no container sets one.
pub fn pod_limit(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let lim = |c: &Container| limit(c).map(|(a, _)| a);
    let mut limits: Option<Amount> = None;
    for c in &spec.containers {
        add(&mut limits, lim(c));
    }
    let mut restartable: Option<Amount> = None;
    let mut init: Option<Amount> = None;
    for c in spec.init_containers.iter().flatten() {
        let this = if c.restart_policy.as_deref() == Some("Always") {
            add(&mut limits, lim(c));
            add(&mut restartable, lim(c));
            restartable
        } else {
            let mut tmp = None;
            add(&mut tmp, lim(c));
            add(&mut tmp, restartable);
            tmp
        };
        max(&mut init, this);
    }
    max(&mut limits, init);
    let mut limits = limits?;
    if let Some(o) = spec
        .overhead
        .as_ref()
        .and_then(|o| o.get("ephemeral-storage"))
        .and_then(|q| crate::quantity::parse_bytes(&q.0))
    {
        limits.value += o;
    }
    Some(canonical(limits.value, limits.format))
}

/// What one pod uses of local storage, as kubelet's summary reports it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PodUsage {
    /// Bytes per volume name (emptyDir, configMap: what a sizeLimit is checked against).
    pub volumes: HashMap<String, u64>,
    /// Per container (by name): (logs, writable layer) bytes.
    pub containers: Vec<(String, u64, u64)>,
    /// kubelet's podStats.EphemeralStorage: writable layers, logs, local ephemeral volumes
    /// (emptyDir on disk, configMap), the pod's own log files and its etc-hosts.
    pub total: u64,
}

/// Measures pod `p` (its containers' figures from CRI, `stats`).
pub fn measure(s: &Shared, p: &Pod, stats: &HashMap<(String, String), Stats>) -> PodUsage {
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let spec = p.spec.clone().unwrap_or_default();
    let log_dir = crate::podconfig::pod_log_dir(&s.ctx, p);
    let mut out = PodUsage::default();
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
    {
        let Some(st) = stats.get(&(uid.clone(), c.name.clone())) else {
            continue;
        };
        let (logs, _) = du(&log_dir.join(&c.name));
        out.total += logs + st.rootfs_bytes;
        out.containers.push((c.name.clone(), logs, st.rootfs_bytes));
    }
    // Files directly in the pod's log directory (kubelet's pod log stats).
    for e in std::fs::read_dir(&log_dir).into_iter().flatten().flatten() {
        if let Ok(m) = e.metadata() {
            if m.is_file() {
                out.total += std::os::unix::fs::MetadataExt::blocks(&m) * 512;
            }
        }
    }
    let pod_dir = crate::volumes::pod_dir(&s.ctx.root_dir, &uid);
    out.total += du(&pod_dir.join("etc-hosts")).0;
    let base = pod_dir.join("volumes");
    for v in spec.volumes.iter().flatten() {
        let (dir, ephemeral) = if let Some(e) = &v.empty_dir {
            (
                base.join("kubernetes.io~empty-dir").join(&v.name),
                e.medium.as_deref().unwrap_or("").is_empty(),
            )
        } else if v.config_map.is_some() {
            (base.join("kubernetes.io~configmap").join(&v.name), true)
        } else {
            continue;
        };
        let used = volume_bytes(&dir);
        if ephemeral {
            out.total += used;
        }
        out.volumes.insert(v.name.clone(), used);
    }
    out
}

/// A volume's usage, as kubelet's MetricsDu (the directory's allocated bytes, its own
/// filesystem only: a tmpfs emptyDir counts what its tmpfs holds).
fn volume_bytes(dir: &Path) -> u64 {
    du(dir).0
}

/// kubelet's emptyDirLimitEviction, podEphemeralStorageLimitEviction and
/// containerEphemeralStorageLimitEviction, in that order: the message for the first limit
/// pod `p` is over, if any.
pub fn violation(p: &Pod, u: &PodUsage, dedicated_imagefs: bool) -> Option<String> {
    let spec = p.spec.as_ref()?;
    for v in spec.volumes.iter().flatten() {
        let Some(size) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) else {
            continue;
        };
        let Some(limit) = crate::quantity::parse_bytes(&size.0).filter(|l| *l > 0) else {
            continue;
        };
        if u.volumes.get(&v.name).is_some_and(|used| *used > limit) {
            return Some(format!(
                "Usage of EmptyDir volume {:?} exceeds the limit {:?}. ",
                v.name, size.0
            ));
        }
    }
    if let Some(limit) = pod_limit(p) {
        if u.total > crate::quantity::parse_bytes(&limit).unwrap_or(u64::MAX) {
            return Some(format!(
                "Pod ephemeral local storage usage exceeds the total limit of containers {limit}. "
            ));
        }
    }
    let limits: HashMap<&str, (Amount, String)> = spec
        .containers
        .iter()
        .filter_map(|c| limit(c).map(|l| (c.name.as_str(), l)))
        .filter(|(_, (a, _))| a.value != 0)
        .collect();
    for (name, logs, rootfs) in &u.containers {
        let used = logs + if dedicated_imagefs { 0 } else { *rootfs };
        if let Some((a, written)) = limits.get(name.as_str()) {
            if a.value < used {
                return Some(format!(
                    "Container {name} exceeded its local ephemeral storage limit {written:?}. "
                ));
            }
        }
    }
    None
}

/// The pods over a local storage limit now, each with kubelet's message.
pub async fn check(
    s: &Shared,
    dedicated_imagefs: bool,
) -> Result<Vec<(String, String)>, tonic::Status> {
    let pods: Vec<Pod> = s
        .pods
        .read()
        .expect("pods")
        .values()
        .filter(|p| candidates::evictable(p))
        .cloned()
        .collect();
    if pods.is_empty() {
        return Ok(Vec::new());
    }
    let stats = candidates::container_stats(s).await?;
    let mut out = Vec::new();
    for p in &pods {
        let usage = measure(s, p, &stats);
        if let Some(m) = violation(p, &usage, dedicated_imagefs) {
            out.push((p.metadata.uid.clone().unwrap_or_default(), m));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": "p", "uid": "u"}, "spec": v}),
        )
        .unwrap()
    }

    fn c(name: &str, lim: Option<&str>) -> serde_json::Value {
        let mut c = serde_json::json!({"name": name, "image": "x"});
        if let Some(l) = lim {
            c["resources"] = serde_json::json!({"limits": {"ephemeral-storage": l}});
        }
        c
    }

    #[test]
    fn quantities_print_as_kube_canonicalizes_them() {
        assert_eq!(canonical(6 << 20, Format::BinarySI), "6Mi");
        assert_eq!(canonical(1536 * 1024, Format::BinarySI), "1536Ki");
        assert_eq!(canonical(1500, Format::BinarySI), "1500");
        assert_eq!(canonical(1000, Format::BinarySI), "1k");
        assert_eq!(canonical(6_000_000, Format::DecimalSI), "6M");
        assert_eq!(canonical(1_500_000, Format::DecimalSI), "1500k");
        assert_eq!(canonical(6_000_000, Format::DecimalExponent), "6e6");
        assert_eq!(Format::of("3Mi"), Format::BinarySI);
        assert_eq!(Format::of("3M"), Format::DecimalSI);
        assert_eq!(Format::of("3E"), Format::DecimalSI);
        assert_eq!(Format::of("3e6"), Format::DecimalExponent);
    }

    #[test]
    fn pod_limits_sum_containers_and_take_the_largest_init_container() {
        let p = pod(
            serde_json::json!({"containers": [c("a", Some("3Mi")), c("b", Some("3Mi")), c("n", None)]}),
        );
        assert_eq!(pod_limit(&p).as_deref(), Some("6Mi"));
        // Format of the first: decimal.
        let p = pod(serde_json::json!({"containers": [c("a", Some("3M")), c("b", Some("3Mi"))]}));
        assert_eq!(
            pod_limit(&p).as_deref(),
            Some(format!("{}", 3_000_000 + (3 << 20))).as_deref()
        );
        // A plain init container larger than the containers' sum sets the limit.
        let p = pod(serde_json::json!({
            "initContainers": [c("i", Some("10Mi"))],
            "containers": [c("a", Some("3Mi"))]
        }));
        assert_eq!(pod_limit(&p).as_deref(), Some("10Mi"));
        // A sidecar adds to the containers.
        let mut side = c("s", Some("1Mi"));
        side["restartPolicy"] = "Always".into();
        let p =
            pod(serde_json::json!({"initContainers": [side], "containers": [c("a", Some("3Mi"))]}));
        assert_eq!(pod_limit(&p).as_deref(), Some("4Mi"));
        let p = pod(serde_json::json!({"containers": [c("a", None)]}));
        assert_eq!(pod_limit(&p), None);
    }

    #[test]
    fn violations_in_kubelets_order_with_its_messages() {
        let mut a = c("app", Some("4Mi"));
        a["resources"]["limits"]["ephemeral-storage"] = "4Mi".into();
        let p = pod(serde_json::json!({
            "containers": [a, c("side", Some("4Mi"))],
            "volumes": [
                {"name": "data", "emptyDir": {"sizeLimit": "2Mi"}},
                {"name": "free", "emptyDir": {}}
            ]
        }));
        let mut u = PodUsage {
            volumes: [("data".to_string(), 1 << 20), ("free".to_string(), 5 << 20)].into(),
            containers: vec![("app".into(), 1 << 20, 1 << 20), ("side".into(), 0, 0)],
            total: 7 << 20,
        };
        assert_eq!(violation(&p, &u, false), None, "within every limit");
        u.containers[0].2 = 4 << 20;
        assert_eq!(
            violation(&p, &u, false).as_deref(),
            Some("Container app exceeded its local ephemeral storage limit \"4Mi\". ")
        );
        // With a dedicated imagefs the writable layer is not the container's local storage.
        assert_eq!(violation(&p, &u, true), None);
        u.total = 9 << 20;
        assert_eq!(
            violation(&p, &u, false).as_deref(),
            Some("Pod ephemeral local storage usage exceeds the total limit of containers 8Mi. ")
        );
        u.volumes.insert("data".into(), 3 << 20);
        assert_eq!(
            violation(&p, &u, false).as_deref(),
            Some("Usage of EmptyDir volume \"data\" exceeds the limit \"2Mi\". ")
        );
    }
}

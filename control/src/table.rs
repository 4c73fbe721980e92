//! Server-side printing: `meta.k8s.io/v1` Table responses for `kubectl get`, per kind.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::objects::{meta_str, parse_time};

/// Whether the Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let p = part.replace(' ', "");
        p.contains("as=Table")
            && p.contains("g=meta.k8s.io")
            && (p.contains("v=v1;") || p.ends_with("v=v1"))
    })
}

/// Human duration as kubectl prints ages (k8s.io/apimachinery duration.HumanDuration).
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        return if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = m / 60;
    if h < 8 {
        return if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    let days = h / 24;
    if h < 192 {
        return if h % 24 == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{}h", h % 24)
        };
    }
    if days < 365 * 2 {
        return format!("{days}d");
    }
    format!("{}y", days / 365)
}

fn age(obj: &Value, now: SystemTime) -> String {
    meta_str(obj, "creationTimestamp")
        .and_then(parse_time)
        .map(|t| human_duration(now.duration_since(t).unwrap_or_default()))
        .unwrap_or_else(|| "<unknown>".into())
}

fn col(name: &str, ty: &str, priority: u32, description: &str) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

fn s(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn or_none(x: String) -> String {
    if x.is_empty() {
        "<none>".into()
    } else {
        x
    }
}

fn count(v: Option<&Value>) -> usize {
    match v {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

/// Column definitions for `kind`.
pub fn columns(kind: &str) -> Vec<Value> {
    let name = col(
        "Name",
        "string",
        0,
        "Name must be unique within a namespace.",
    );
    let age = col("Age", "string", 0, "CreationTimestamp is a timestamp representing the server time when this object was created.");
    let wide = workload_wide();
    match kind {
        "Pod" => vec![
            name,
            col("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
            col("Status", "string", 0, "The aggregate status of the containers in this pod."),
            col("Restarts", "string", 0, "The number of times the containers in this pod have been restarted."),
            age,
            col("IP", "string", 1, "IP address allocated to the pod."),
            col("Node", "string", 1, "Name of the Node this pod is bound to."),
            col("Nominated Node", "string", 1, "Name of the node that is nominated for this pod."),
            col("Readiness Gates", "string", 1, "Pod readiness gates."),
        ],
        "Namespace" => vec![name, col("Status", "string", 0, "The status of the namespace"), age],
        "Node" => vec![
            name,
            col("Status", "string", 0, "The status of the node"),
            col("Roles", "string", 0, "The roles of the node"),
            age,
            col("Version", "string", 0, "Kubelet Version reported by the node."),
            col("Internal-IP", "string", 1, "List of internal IPs."),
            col("External-IP", "string", 1, "List of external IPs."),
            col("OS-Image", "string", 1, "OS Image reported by the node from /etc/os-release."),
            col("Kernel-Version", "string", 1, "Kernel Version reported by the node."),
            col("Container-Runtime", "string", 1, "ContainerRuntime Version reported by the node."),
        ],
        "ConfigMap" => vec![name, col("Data", "string", 0, "Number of data items"), age],
        "Secret" => vec![name, col("Type", "string", 0, "The type of the secret"), col("Data", "string", 0, "Number of data items"), age],
        "Deployment" => vec![
            name,
            col("Ready", "string", 0, "Number of ready replicas"),
            col("Up-to-date", "string", 0, "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            col("Available", "string", 0, "Total number of available pods."),
            age,
            wide[0].clone(),
            wide[1].clone(),
            wide[2].clone(),
        ],
        "ReplicaSet" | "ReplicationController" => vec![
            name,
            col("Desired", "string", 0, "Number of desired pods."),
            col("Current", "string", 0, "Number of actual pods."),
            col("Ready", "string", 0, "Number of ready pods."),
            age,
            wide[0].clone(),
            wide[1].clone(),
            wide[2].clone(),
        ],
        "Service" => vec![
            name,
            col("Type", "string", 0, "The type of the service."),
            col("Cluster-IP", "string", 0, "IP address of the service."),
            col("External-IP", "string", 0, "External IP addresses."),
            col("Port(s)", "string", 0, "Ports the service exposes."),
            age,
            col("Selector", "string", 1, "Route service traffic to pods with label keys and values matching this selector."),
        ],
        "ServiceAccount" => vec![name, col("Secrets", "string", 0, "Number of secrets"), age],
        "Lease" => vec![name, col("Holder", "string", 0, "The holder of the lease"), age],
        "CertificateSigningRequest" => crate::certificates::table::columns(name, age),
        _ => more_columns(kind, name, age),
    }
}

/// Container names, images and the selector: the wide columns of workload kinds.
fn workload_wide() -> [Value; 3] {
    [
        col(
            "Containers",
            "string",
            1,
            "Names of each container in the template.",
        ),
        col(
            "Images",
            "string",
            1,
            "Images referenced by each container in the template.",
        ),
        col("Selector", "string", 1, "Label selector for pods."),
    ]
}

/// Columns of the kinds kube-apiserver prints beyond the core set (pkg/printers/internalversion).
fn more_columns(kind: &str, name: Value, age: Value) -> Vec<Value> {
    let mut cols = match kind {
        "Role" | "ClusterRole" => {
            return vec![
                name,
                col("Created At", "date", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."),
            ]
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            return vec![
                name,
                col("Role", "string", 0, "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace."),
                age,
                col("Users", "string", 1, "Users in the roleBinding"),
                col("Groups", "string", 1, "Groups in the roleBinding"),
                col("ServiceAccounts", "string", 1, "ServiceAccounts in the roleBinding"),
            ]
        }
        "Event" => {
            let mut name = name;
            name["priority"] = json!(1);
            return vec![
                col("Last Seen", "string", 0, "The time at which the most recent occurrence of this event was recorded."),
                col("Type", "string", 0, "Type of this event (Normal, Warning), new types could be added in the future"),
                col("Reason", "string", 0, "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
                col("Object", "string", 0, "The object that this event is about."),
                col("Subobject", "string", 1, "The field of the object this event is about."),
                col("Source", "string", 1, "The component reporting this event."),
                col("Message", "string", 0, "A human-readable description of the status of this operation."),
                col("First Seen", "string", 1, "The time at which the event was first recorded."),
                col("Count", "string", 1, "The number of times this event has occurred."),
                name,
            ];
        }
        "Endpoints" => vec![name, col("Endpoints", "string", 0, "Endpoints of the service")],
        "EndpointSlice" => vec![
            name,
            col("AddressType", "string", 0, "Type of address carried by this EndpointSlice."),
            col("Ports", "string", 0, "Ports of this EndpointSlice."),
            col("Endpoints", "string", 0, "Addresses of the endpoints in this EndpointSlice."),
        ],
        "HorizontalPodAutoscaler" => vec![
            name,
            col("Reference", "string", 0, "Reference to the scaled resource."),
            col("Targets", "string", 0, "Current and target metric values."),
            col("MinPods", "string", 0, "Lower limit for the number of pods."),
            col("MaxPods", "string", 0, "Upper limit for the number of pods."),
            col("Replicas", "string", 0, "Current number of replicas."),
        ],
        "Ingress" => vec![
            name,
            col("Class", "string", 0, "The name of the IngressClass resource."),
            col("Hosts", "string", 0, "Hosts that incoming requests are matched against."),
            col("Address", "string", 0, "Address is a list containing ingress points for the load-balancer"),
            col("Ports", "string", 0, "Ports of TLS configurations that open"),
        ],
        "IngressClass" => vec![
            name,
            col("Controller", "string", 0, "Controller that is responsible for handling this class"),
            col("Parameters", "string", 0, "A reference to a resource with additional parameters"),
        ],
        "CronJob" => vec![
            name,
            col("Schedule", "string", 0, "The schedule in Cron format."),
            col("Timezone", "string", 0, "The time zone name for the given schedule."),
            col("Suspend", "boolean", 0, "Whether subsequent executions are suspended."),
            col("Active", "integer", 0, "Number of currently running jobs."),
            col("Last Schedule", "string", 0, "Last time the job was successfully scheduled."),
        ],
        "StatefulSet" => vec![name, col("Ready", "string", 0, "Number of the pod with ready state")],
        "PodDisruptionBudget" => vec![
            name,
            col("Min Available", "string", 0, "The minimum number of pods that must be available."),
            col("Max Unavailable", "string", 0, "The maximum number of pods that may be unavailable."),
            col("Allowed Disruptions", "integer", 0, "Calculated number of pods that may be disrupted at this time."),
        ],
        "DaemonSet" => vec![
            name,
            col("Desired", "integer", 0, "The total number of nodes that should be running the daemon pod."),
            col("Current", "integer", 0, "The number of nodes that are running at least 1 daemon pod."),
            col("Ready", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
            col("Up-to-date", "integer", 0, "The total number of nodes that are running updated daemon pod"),
            col("Available", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."),
            col("Node Selector", "string", 0, "NodeSelector is a selector which must be true for the pod to fit on a node."),
        ],
        "PersistentVolume" => vec![
            name,
            col("Capacity", "string", 0, "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity"),
            col("Access Modes", "string", 0, "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes"),
            col("Reclaim Policy", "string", 0, "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming"),
            col("Status", "string", 0, "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase"),
            col("Claim", "string", 0, "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding"),
            col("StorageClass", "string", 0, "StorageClass of the pv"),
            col("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pv"),
            col("Reason", "string", 0, "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
        ],
        "PersistentVolumeClaim" => vec![
            name,
            col("Status", "string", 0, "phase represents the current phase of PersistentVolumeClaim."),
            col("Volume", "string", 0, "volumeName is the binding reference to the PersistentVolume backing this claim."),
            col("Capacity", "string", 0, "capacity represents the actual resources of the underlying volume."),
            col("Access Modes", "string", 0, "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1"),
            col("StorageClass", "string", 0, "StorageClass of the pvc"),
            col("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pvc"),
        ],
        "StorageClass" => vec![
            name,
            col("Provisioner", "string", 0, "provisioner indicates the type of the provisioner."),
            col("ReclaimPolicy", "string", 0, "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete."),
            col("VolumeBindingMode", "string", 0, "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature."),
            col("AllowVolumeExpansion", "string", 0, "allowVolumeExpansion shows whether the storage class allow volume expand."),
        ],
        "Job" => vec![
            name,
            col("Status", "string", 0, "Status of the job."),
            col("Completions", "string", 0, "The desired number of successfully finished pods the job should be run with."),
            col("Duration", "string", 0, "Time required to complete the job."),
        ],
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => vec![
            name,
            col("Webhooks", "integer", 0, "Webhooks indicates the number of webhooks in the configuration"),
        ],
        "PriorityClass" => vec![
            name,
            col("Value", "integer", 0, "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec."),
            col("Global-Default", "boolean", 0, "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority."),
        ],
        _ => vec![name],
    };
    cols.push(age);
    if kind == "PriorityClass" {
        cols.push(col("PreemptionPolicy", "string", 0, "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset."));
    }
    if kind == "ResourceQuota" {
        cols.push(col(
            "Request",
            "string",
            0,
            "Request represents a minimum amount of cpu/memory that a container may consume.",
        ));
        cols.push(col("Limit", "string", 0, "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."));
    }
    if matches!(kind, "PersistentVolume" | "PersistentVolumeClaim") {
        cols.push(col("VolumeMode", "string", 1, "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec."));
    }
    if matches!(kind, "CronJob" | "StatefulSet" | "DaemonSet" | "Job") {
        cols.extend(workload_wide());
        if kind == "StatefulSet" {
            cols.pop();
        }
    }
    cols
}

fn unknown_if_empty(x: String) -> String {
    if x.is_empty() {
        "<unknown>".into()
    } else {
        x
    }
}

/// `ready/total` of the pod's readiness gates (conditions of those types that are True).
fn readiness_gates(obj: &Value) -> String {
    let gates = arr(obj, "/spec/readinessGates");
    if gates.is_empty() {
        return "<none>".into();
    }
    let ready = gates
        .iter()
        .filter(|g| has_condition(obj, &s(g.get("conditionType"))))
        .count();
    format!("{ready}/{}", gates.len())
}

/// The node's first address of `ty`.
fn node_address(obj: &Value, ty: &str) -> String {
    arr(obj, "/status/addresses")
        .iter()
        .find(|a| a["type"] == ty)
        .map(|a| s(a.get("address")))
        .unwrap_or_else(|| "<none>".into())
}

/// The Service "External-IP" cell (kubectl's getServiceExternalIP).
fn service_external_ip(obj: &Value) -> String {
    let external: Vec<String> = arr(obj, "/spec/externalIPs")
        .iter()
        .map(|v| s(Some(v)))
        .collect();
    match s(obj.pointer("/spec/type")).as_str() {
        "" | "ClusterIP" | "NodePort" => or_none(external.join(",")),
        "LoadBalancer" => {
            let mut ips: Vec<String> = arr(obj, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| {
                    i.get("ip")
                        .or_else(|| i.get("hostname"))
                        .and_then(Value::as_str)
                })
                .map(str::to_string)
                .collect();
            ips.extend(external);
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => s(obj.pointer("/spec/externalName")),
        _ => "<unknown>".into(),
    }
}

/// kubectl's `listWithMoreString`: at most three entries, then "+ N more...".
fn list_with_more(items: Vec<String>, empty: &str) -> String {
    const MAX: usize = 3;
    let n = items.len();
    let mut out = items.into_iter().take(MAX).collect::<Vec<_>>().join(",");
    if n > MAX {
        out.push_str(&format!(" + {} more...", n - MAX));
    }
    if out.is_empty() {
        empty.into()
    } else {
        out
    }
}

fn arr<'a>(obj: &'a Value, ptr: &str) -> &'a [Value] {
    obj.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn int(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// A label map or selector as `k=v,k2=v2` (labels.FormatLabels / metav1.FormatLabelSelector).
fn format_labels(m: Option<&Value>) -> String {
    let parts: Vec<String> = m
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", s(Some(v))))
                .collect()
        })
        .unwrap_or_default();
    or_none(parts.join(","))
}

fn format_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "<none>".into();
    };
    let mut parts: Vec<String> = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", s(Some(v))))
                .collect()
        })
        .unwrap_or_default();
    for e in arr(sel, "/matchExpressions") {
        let key = s(e.get("key"));
        let values: Vec<String> = arr(e, "/values").iter().map(|v| s(Some(v))).collect();
        parts.push(match s(e.get("operator")).as_str() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key,
            "DoesNotExist" => format!("!{key}"),
            op => format!("{key} {op}"),
        });
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

/// Containers, images and selector cells of a pod template at `tpl`.
fn workload_wide_cells(obj: &Value, tpl: &str, selector: Option<&Value>) -> [Value; 3] {
    let containers = arr(obj, &format!("{tpl}/spec/containers"));
    let names: Vec<String> = containers.iter().map(|c| s(c.get("name"))).collect();
    let images: Vec<String> = containers.iter().map(|c| s(c.get("image"))).collect();
    [
        json!(names.join(",")),
        json!(images.join(",")),
        json!(format_selector(selector)),
    ]
}

fn since(obj: &Value, ptr: &str, now: SystemTime) -> Option<String> {
    obj.pointer(ptr)
        .and_then(Value::as_str)
        .and_then(parse_time)
        .map(|t| human_duration(now.duration_since(t).unwrap_or_default()))
}

fn has_condition(obj: &Value, ty: &str) -> bool {
    arr(obj, "/status/conditions")
        .iter()
        .any(|c| c["type"] == ty && c["status"] == "True")
}

fn more_cells(kind: &str, obj: &Value, name: Value, a: Value, now: SystemTime) -> Vec<Value> {
    let mut cells = match kind {
        "Role" | "ClusterRole" => {
            return vec![name, json!(s(obj.pointer("/metadata/creationTimestamp")))];
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let of = |k: &str| -> String {
                arr(obj, "/subjects")
                    .iter()
                    .filter(|x| x["kind"] == k)
                    .map(|x| {
                        let n = s(x.get("name"));
                        if k == "ServiceAccount" {
                            format!("{}/{n}", s(x.get("namespace")))
                        } else {
                            n
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return vec![
                name,
                json!(format!(
                    "{}/{}",
                    s(obj.pointer("/roleRef/kind")),
                    s(obj.pointer("/roleRef/name"))
                )),
                a,
                json!(of("User")),
                json!(of("Group")),
                json!(of("ServiceAccount")),
            ];
        }
        "Event" => {
            let first = since(obj, "/firstTimestamp", now)
                .or_else(|| since(obj, "/eventTime", now))
                .unwrap_or_else(|| "<unknown>".into());
            let mut last = since(obj, "/lastTimestamp", now).unwrap_or_else(|| first.clone());
            let mut n = int(obj, "/count");
            if obj.get("series").is_some_and(|v| !v.is_null()) {
                last = since(obj, "/series/lastObservedTime", now)
                    .unwrap_or_else(|| "<unknown>".into());
                n = int(obj, "/series/count");
            } else if n == 0 {
                n = 1;
            }
            let kind_l = s(obj.pointer("/involvedObject/kind")).to_lowercase();
            let target = match s(obj.pointer("/involvedObject/name")) {
                n if n.is_empty() => kind_l,
                n => format!("{kind_l}/{n}"),
            };
            let mut component = s(obj.pointer("/source/component"));
            if component.is_empty() {
                component = s(obj.get("reportingComponent"));
            }
            let host = s(obj.pointer("/source/host"));
            let source = match (component.is_empty(), host.is_empty()) {
                (_, true) => component,
                (true, false) => host,
                (false, false) => format!("{component}, {host}"),
            };
            return vec![
                json!(last),
                json!(s(obj.get("type"))),
                json!(s(obj.get("reason"))),
                json!(target),
                json!(s(obj.pointer("/involvedObject/fieldPath"))),
                json!(source),
                json!(s(obj.get("message")).trim()),
                json!(first),
                json!(n),
                name,
            ];
        }
        "Endpoints" => {
            let mut eps = Vec::new();
            for sub in arr(obj, "/subsets") {
                let ports = arr(sub, "/ports");
                for addr in arr(sub, "/addresses") {
                    let ip = s(addr.get("ip"));
                    if ports.is_empty() {
                        eps.push(ip.clone());
                    }
                    for p in ports {
                        eps.push(format!("{ip}:{}", s(p.get("port"))));
                    }
                }
            }
            vec![name, json!(list_with_more(eps, "<none>"))]
        }
        "EndpointSlice" => {
            let ports = arr(obj, "/ports")
                .iter()
                .map(|p| match (p.get("port"), p.get("name")) {
                    (Some(v @ Value::Number(_)), _) => s(Some(v)),
                    (_, Some(Value::String(n))) => n.clone(),
                    _ => "*".into(),
                })
                .collect();
            let addrs = arr(obj, "/endpoints")
                .iter()
                .flat_map(|e| arr(e, "/addresses").iter().map(|a| s(Some(a))))
                .collect();
            vec![
                name,
                json!(s(obj.get("addressType"))),
                json!(list_with_more(ports, "<unset>")),
                json!(list_with_more(addrs, "<unset>")),
            ]
        }
        "HorizontalPodAutoscaler" => {
            let r = obj.pointer("/spec/scaleTargetRef");
            let reference = format!(
                "{}/{}",
                s(r.and_then(|r| r.get("kind"))),
                s(r.and_then(|r| r.get("name")))
            );
            let min = obj
                .pointer("/spec/minReplicas")
                .and_then(Value::as_i64)
                .map(|m| m.to_string())
                .unwrap_or_else(|| "<unset>".into());
            vec![
                name,
                json!(reference),
                json!(hpa_targets(obj)),
                json!(min),
                json!(int(obj, "/spec/maxReplicas")),
                json!(int(obj, "/status/currentReplicas")),
            ]
        }
        "Ingress" => {
            let hosts = arr(obj, "/spec/rules")
                .iter()
                .filter_map(|r| r.get("host").and_then(Value::as_str))
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .collect();
            let lb: Vec<String> = arr(obj, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| {
                    i.get("ip")
                        .or_else(|| i.get("hostname"))
                        .and_then(Value::as_str)
                })
                .map(str::to_string)
                .collect();
            let ports = if arr(obj, "/spec/tls").is_empty() {
                "80"
            } else {
                "80, 443"
            };
            vec![
                name,
                json!(or_none(s(obj.pointer("/spec/ingressClassName")))),
                json!(list_with_more(hosts, "*")),
                json!(lb.join(",")),
                json!(ports),
            ]
        }
        "IngressClass" => {
            // kube's printIngressClass: Kind[.apiGroup]/name.
            let parameters = obj
                .pointer("/spec/parameters")
                .filter(|p| p.is_object())
                .map(|p| {
                    let group = p.get("apiGroup").and_then(Value::as_str);
                    format!(
                        "{}{}/{}",
                        s(p.get("kind")),
                        group.map(|g| format!(".{g}")).unwrap_or_default(),
                        s(p.get("name"))
                    )
                });
            vec![
                name,
                json!(s(obj.pointer("/spec/controller"))),
                json!(parameters.unwrap_or_else(|| "<none>".into())),
            ]
        }
        "CronJob" => vec![
            name,
            json!(s(obj.pointer("/spec/schedule"))),
            json!(or_none(s(obj.pointer("/spec/timeZone")))),
            json!(
                match obj.pointer("/spec/suspend").and_then(Value::as_bool) {
                    Some(true) => "True",
                    Some(false) => "False",
                    None => "<unset>",
                }
            ),
            json!(arr(obj, "/status/active").len()),
            json!(since(obj, "/status/lastScheduleTime", now).unwrap_or_else(|| "<none>".into())),
        ],
        "PodDisruptionBudget" => {
            // kubectl's printer: the int-or-string as written, "N/A" when unset.
            let field = |f: &str| match obj.pointer(&format!("/spec/{f}")) {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(p)) => p.clone(),
                _ => "N/A".to_string(),
            };
            vec![
                name,
                json!(field("minAvailable")),
                json!(field("maxUnavailable")),
                json!(int(obj, "/status/disruptionsAllowed")),
            ]
        }
        "StatefulSet" => vec![
            name,
            json!(format!(
                "{}/{}",
                int(obj, "/status/readyReplicas"),
                obj.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
            )),
        ],
        "DaemonSet" => vec![
            name,
            json!(int(obj, "/status/desiredNumberScheduled")),
            json!(int(obj, "/status/currentNumberScheduled")),
            json!(int(obj, "/status/numberReady")),
            json!(int(obj, "/status/updatedNumberScheduled")),
            json!(int(obj, "/status/numberAvailable")),
            json!(format_labels(
                obj.pointer("/spec/template/spec/nodeSelector")
            )),
        ],
        "Job" => {
            let status = if has_condition(obj, "Complete") {
                "Complete"
            } else if has_condition(obj, "Failed") {
                "Failed"
            } else if obj.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating"
            } else if has_condition(obj, "Suspended") {
                "Suspended"
            } else if has_condition(obj, "FailureTarget") {
                "FailureTarget"
            } else if has_condition(obj, "SuccessCriteriaMet") {
                "SuccessCriteriaMet"
            } else {
                "Running"
            };
            let succeeded = int(obj, "/status/succeeded");
            let completions = match obj.pointer("/spec/completions").and_then(Value::as_i64) {
                Some(c) => format!("{succeeded}/{c}"),
                None => match obj.pointer("/spec/parallelism").and_then(Value::as_i64) {
                    Some(p) if p > 1 => format!("{succeeded}/1 of {p}"),
                    _ => format!("{succeeded}/1"),
                },
            };
            let start = obj
                .pointer("/status/startTime")
                .and_then(Value::as_str)
                .and_then(parse_time);
            let end = obj
                .pointer("/status/completionTime")
                .and_then(Value::as_str)
                .and_then(parse_time)
                .unwrap_or(now);
            let duration = start
                .map(|st| human_duration(end.duration_since(st).unwrap_or_default()))
                .unwrap_or_default();
            vec![name, json!(status), json!(completions), json!(duration)]
        }
        "PersistentVolume" => {
            let claim = obj
                .pointer("/spec/claimRef")
                .map(|r| format!("{}/{}", s(r.get("namespace")), s(r.get("name"))))
                .unwrap_or_default();
            vec![
                name,
                json!(s(obj.pointer("/spec/capacity/storage"))),
                json!(access_modes(arr(obj, "/spec/accessModes"))),
                json!(s(obj.pointer("/spec/persistentVolumeReclaimPolicy"))),
                json!(storage_phase(obj)),
                json!(claim),
                json!(storage_class_of(obj)),
                json!(unset_if_absent(
                    obj.pointer("/spec/volumeAttributesClassName")
                )),
                json!(s(obj.pointer("/status/reason"))),
            ]
        }
        "PersistentVolumeClaim" => {
            let bound = !s(obj.pointer("/spec/volumeName")).is_empty();
            let (capacity, modes) = if bound {
                (
                    s(obj.pointer("/status/capacity/storage")),
                    access_modes(arr(obj, "/status/accessModes")),
                )
            } else {
                (String::new(), String::new())
            };
            vec![
                name,
                json!(storage_phase(obj)),
                json!(s(obj.pointer("/spec/volumeName"))),
                json!(capacity),
                json!(modes),
                json!(storage_class_of(obj)),
                json!(unset_if_absent(
                    obj.pointer("/spec/volumeAttributesClassName")
                )),
            ]
        }
        "StorageClass" => {
            let mut shown = s(obj.pointer("/metadata/name"));
            if crate::storage::is_default_class(obj) {
                shown.push_str(" (default)");
            }
            let or = |ptr: &str, d: &str| {
                let v = s(obj.pointer(ptr));
                if v.is_empty() {
                    d.to_string()
                } else {
                    v
                }
            };
            vec![
                json!(shown),
                json!(s(obj.pointer("/provisioner"))),
                json!(or("/reclaimPolicy", "Delete")),
                json!(or("/volumeBindingMode", "Immediate")),
                json!(obj
                    .pointer("/allowVolumeExpansion")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)),
            ]
        }
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
            vec![name, json!(arr(obj, "/webhooks").len())]
        }
        "PriorityClass" => vec![
            name,
            json!(obj.get("value").and_then(Value::as_i64).unwrap_or(0)),
            json!(obj
                .get("globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
        ],
        _ => vec![name],
    };
    cells.push(a);
    if kind == "PriorityClass" {
        cells.push(json!(s(obj.get("preemptionPolicy"))));
    }
    if kind == "ResourceQuota" {
        // kube's printResourceQuota: "used/hard" per resource, limits.* apart.
        let (mut requests, mut limits) = (Vec::new(), Vec::new());
        let hard = obj.pointer("/status/hard").and_then(Value::as_object);
        for (k, h) in hard.into_iter().flatten() {
            let used = obj.pointer(&format!(
                "/status/used/{}",
                k.replace('~', "~0").replace('/', "~1")
            ));
            let cell = format!("{k}: {}/{}", s(used), s(Some(h)));
            if k.starts_with("limits") {
                limits.push(cell);
            } else {
                requests.push(cell);
            }
        }
        cells.push(json!(requests.join(", ")));
        cells.push(json!(limits.join(", ")));
    }
    if matches!(kind, "PersistentVolume" | "PersistentVolumeClaim") {
        cells.push(json!(unset_if_absent(obj.pointer("/spec/volumeMode"))));
    }
    match kind {
        "CronJob" => cells.extend(workload_wide_cells(
            obj,
            "/spec/jobTemplate/spec/template",
            obj.pointer("/spec/jobTemplate/spec/selector"),
        )),
        "StatefulSet" => {
            let [c, i, _] = workload_wide_cells(obj, "/spec/template", None);
            cells.extend([c, i]);
        }
        "DaemonSet" | "Job" => cells.extend(workload_wide_cells(
            obj,
            "/spec/template",
            obj.pointer("/spec/selector"),
        )),
        _ => {}
    }
    cells
}

/// Access modes as kubectl abbreviates them, in kube's fixed order (GetAccessModesAsString).
fn access_modes(modes: &[Value]) -> String {
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| modes.iter().any(|x| x == m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// A volume's or claim's phase, or Terminating once deleted.
fn storage_phase(obj: &Value) -> String {
    if obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        "Terminating".into()
    } else {
        s(obj.pointer("/status/phase"))
    }
}

/// The class of a volume or claim: the beta annotation wins over the field, as kube's helpers.
fn storage_class_of(obj: &Value) -> String {
    match obj.pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class") {
        Some(Value::String(c)) => c.clone(),
        _ => s(obj.pointer("/spec/storageClassName")),
    }
}

fn unset_if_absent(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(x)) => x.clone(),
        _ => "<unset>".into(),
    }
}

/// The HPA "Targets" cell: `<metric>: <current>/<target>` per metric (kubectl's formatHPAMetrics).
fn hpa_targets(obj: &Value) -> String {
    let specs = arr(obj, "/spec/metrics");
    if specs.is_empty() {
        return "<none>".into();
    }
    let current = arr(obj, "/status/currentMetrics");
    let mut list = Vec::new();
    for (i, m) in specs.iter().enumerate() {
        let ty = s(m.get("type"));
        let cur = current.get(i);
        let entry = match ty.as_str() {
            "Resource" | "ContainerResource" => {
                let key = if ty == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let rname = s(m.pointer(&format!("/{key}/name")));
                let target = m.pointer(&format!("/{key}/target"));
                let util = target.and_then(|t| t.get("averageUtilization"));
                let cur_v = cur.and_then(|c| c.pointer(&format!("/{key}/current")));
                if let Some(u) = util {
                    let c = cur_v
                        .and_then(|c| c.get("averageUtilization"))
                        .map(|c| format!("{}%", s(Some(c))))
                        .unwrap_or_else(|| "<unknown>".into());
                    format!("{rname}: {c}/{}%", s(Some(u)))
                } else {
                    let c = cur_v
                        .and_then(|c| c.get("averageValue"))
                        .map(|c| s(Some(c)))
                        .unwrap_or_else(|| "<unknown>".into());
                    let t = s(target.and_then(|t| t.get("averageValue")));
                    format!("{rname}: {c}/{t}")
                }
            }
            _ => {
                let key = match ty.as_str() {
                    "Pods" => "pods",
                    "Object" => "object",
                    _ => "external",
                };
                let target = m.pointer(&format!("/{key}/target"));
                let t = target
                    .and_then(|t| t.get("averageValue").or_else(|| t.get("value")))
                    .map(|v| s(Some(v)))
                    .unwrap_or_default();
                let cur_v = cur
                    .and_then(|c| c.pointer(&format!("/{key}/current")))
                    .and_then(|c| c.get("averageValue").or_else(|| c.get("value")))
                    .map(|v| s(Some(v)))
                    .unwrap_or_else(|| "<unknown>".into());
                let avg = target.and_then(|t| t.get("averageValue")).is_some() && ty != "Pods";
                format!("{cur_v}/{t}{}", if avg { " (avg)" } else { "" })
            }
        };
        list.push(entry);
    }
    let n = list.len();
    // kubectl shows two metrics, then "+ N more...".
    let mut out = list.into_iter().take(2).collect::<Vec<_>>().join(", ");
    if n > 2 {
        out.push_str(&format!(" + {} more...", n - 2));
    }
    out
}

/// One row's cells for `obj` of `kind`.
pub fn cells(kind: &str, obj: &Value, now: SystemTime) -> Vec<Value> {
    let name = json!(meta_str(obj, "name").unwrap_or(""));
    let a = json!(age(obj, now));
    match kind {
        "Pod" => {
            let total = count(obj.pointer("/spec/containers"));
            let statuses = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array);
            let ready = statuses
                .map(|c| c.iter().filter(|c| c["ready"] == json!(true)).count())
                .unwrap_or(0);
            let restarts: i64 = statuses
                .map(|c| c.iter().filter_map(|c| c["restartCount"].as_i64()).sum())
                .unwrap_or(0);
            let mut status = s(obj.pointer("/status/phase"));
            if let Some(r) = obj.pointer("/status/reason").and_then(Value::as_str) {
                status = r.to_string();
            }
            if obj.pointer("/metadata/deletionTimestamp").is_some() {
                status = "Terminating".into();
            }
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(status),
                json!(restarts.to_string()),
                a,
                json!(or_none(s(obj.pointer("/status/podIP")))),
                json!(or_none(s(obj.pointer("/spec/nodeName")))),
                json!(or_none(s(obj.pointer("/status/nominatedNodeName")))),
                json!(readiness_gates(obj)),
            ]
        }
        "Namespace" => vec![name, json!(s(obj.pointer("/status/phase"))), a],
        "Node" => {
            let ready = obj
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .map(|c| {
                    if c["status"] == "True" {
                        "Ready"
                    } else {
                        "NotReady"
                    }
                })
                .unwrap_or("Unknown");
            // kubectl's printer marks a cordoned node.
            let ready = if obj.pointer("/spec/unschedulable") == Some(&json!(true)) {
                format!("{ready},SchedulingDisabled")
            } else {
                ready.to_string()
            };
            let roles: Vec<String> = obj
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|l| {
                    l.keys()
                        .filter_map(|k| {
                            k.strip_prefix("node-role.kubernetes.io/")
                                .map(str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default();
            vec![
                name,
                json!(ready),
                json!(or_none(roles.join(","))),
                a,
                json!(s(obj.pointer("/status/nodeInfo/kubeletVersion"))),
                json!(node_address(obj, "InternalIP")),
                json!(node_address(obj, "ExternalIP")),
                json!(unknown_if_empty(s(obj.pointer("/status/nodeInfo/osImage")))),
                json!(unknown_if_empty(s(
                    obj.pointer("/status/nodeInfo/kernelVersion")
                ))),
                json!(unknown_if_empty(s(
                    obj.pointer("/status/nodeInfo/containerRuntimeVersion")
                ))),
            ]
        }
        "ConfigMap" => vec![
            name,
            json!(count(obj.get("data")) + count(obj.get("binaryData"))),
            a,
        ],
        "Secret" => vec![
            name,
            json!(s(obj.get("type"))),
            json!(count(obj.get("data"))),
            a,
        ],
        "Deployment" => {
            let want = obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let ready = obj
                .pointer("/status/readyReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            vec![
                name,
                json!(format!("{ready}/{want}")),
                json!(obj
                    .pointer("/status/updatedReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)),
                json!(obj
                    .pointer("/status/availableReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)),
                a,
            ]
            .into_iter()
            .chain(workload_wide_cells(
                obj,
                "/spec/template",
                obj.pointer("/spec/selector"),
            ))
            .collect()
        }
        "ReplicaSet" | "ReplicationController" => {
            // A ReplicationController's selector is a plain label map.
            let rc_selector = obj
                .pointer("/spec/selector")
                .filter(|_| kind == "ReplicationController")
                .map(|m| json!({ "matchLabels": m }));
            vec![
                name,
                json!(obj
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)),
                json!(obj
                    .pointer("/status/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)),
                json!(obj
                    .pointer("/status/readyReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)),
                a,
            ]
            .into_iter()
            .chain(workload_wide_cells(
                obj,
                "/spec/template",
                rc_selector.as_ref().or(obj.pointer("/spec/selector")),
            ))
            .collect()
        }
        "Service" => {
            let ports: Vec<String> = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| match p.get("nodePort").and_then(Value::as_i64) {
                            // kubectl's printer: port:nodePort/protocol.
                            Some(n) if n != 0 => {
                                format!("{}:{n}/{}", s(p.get("port")), s(p.get("protocol")))
                            }
                            _ => format!("{}/{}", s(p.get("port")), s(p.get("protocol"))),
                        })
                        .collect()
                })
                .unwrap_or_default();
            vec![
                name,
                json!(s(obj.pointer("/spec/type"))),
                json!(or_none(s(obj.pointer("/spec/clusterIP")))),
                json!(service_external_ip(obj)),
                json!(or_none(ports.join(","))),
                a,
                json!(format_labels(obj.pointer("/spec/selector"))),
            ]
        }
        "ServiceAccount" => vec![name, json!(count(obj.get("secrets"))), a],
        "Lease" => vec![name, json!(s(obj.pointer("/spec/holderIdentity"))), a],
        "CertificateSigningRequest" => crate::certificates::table::cells(obj, name, a),
        _ => more_cells(kind, obj, name, a, now),
    }
}

/// The row for one object, carrying its metadata as a PartialObjectMetadata (or the object).
pub fn row(kind: &str, obj: &Value, now: SystemTime, include_object: &str) -> Value {
    row_with(cells(kind, obj, now), obj, include_object)
}

/// A row of `cells` for `obj`, with the object as `includeObject` asks.
pub fn row_with(cells: Vec<Value>, obj: &Value, include_object: &str) -> Value {
    let object = match include_object {
        "None" => Value::Null,
        "Object" => obj.clone(),
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
        }),
    };
    json!({"cells": cells, "object": object})
}

/// A Table of `columns` and `rows` (list metadata: resourceVersion and continue).
pub fn assemble(
    columns: Vec<Value>,
    rows: Vec<Value>,
    rv: Option<String>,
    cont: Option<String>,
) -> Value {
    let mut meta = json!({});
    if let Some(rv) = rv {
        meta["resourceVersion"] = json!(rv);
    }
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// The Table for objects of `def`: a custom resource's printer columns, else the kind's.
pub fn table_for(
    def: &crate::resources::ResourceDef,
    objs: &[Value],
    rv: Option<String>,
    cont: Option<String>,
    now: SystemTime,
    include_object: &str,
) -> Value {
    if def.custom.is_some() {
        return crate::crd::columns::table(def, objs, rv, cont, now, include_object);
    }
    table(def.kind, objs, rv, cont, now, include_object)
}

/// A Table for a list (or a single object, or one watch event).
pub fn table(
    kind: &str,
    objs: &[Value],
    rv: Option<String>,
    cont: Option<String>,
    now: SystemTime,
    include_object: &str,
) -> Value {
    let rows = objs
        .iter()
        .map(|o| row(kind, o, now, include_object))
        .collect();
    assemble(columns(kind), rows, rv, cont)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(Duration::from_secs(5)), "5s");
        assert_eq!(human_duration(Duration::from_secs(150)), "2m30s");
        assert_eq!(human_duration(Duration::from_secs(3600)), "60m");
        assert_eq!(human_duration(Duration::from_secs(5 * 3600 + 60)), "5h1m");
        assert_eq!(human_duration(Duration::from_secs(3 * 86400)), "3d");
    }

    #[test]
    fn table_accept_detection() {
        assert!(wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"));
        assert!(!wants_table("application/json"));
    }

    fn names(kind: &str) -> Vec<String> {
        columns(kind)
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_uppercase())
            .collect()
    }

    #[test]
    fn listed_kinds_have_kube_apiserver_columns() {
        let now = SystemTime::now();
        for (kind, cols) in [
            ("Event", "LAST SEEN,TYPE,REASON,OBJECT,SUBOBJECT,SOURCE,MESSAGE,FIRST SEEN,COUNT,NAME"),
            ("Endpoints", "NAME,ENDPOINTS,AGE"),
            ("EndpointSlice", "NAME,ADDRESSTYPE,PORTS,ENDPOINTS,AGE"),
            ("HorizontalPodAutoscaler", "NAME,REFERENCE,TARGETS,MINPODS,MAXPODS,REPLICAS,AGE"),
            ("Ingress", "NAME,CLASS,HOSTS,ADDRESS,PORTS,AGE"),
            ("PersistentVolume", "NAME,CAPACITY,ACCESS MODES,RECLAIM POLICY,STATUS,CLAIM,STORAGECLASS,VOLUMEATTRIBUTESCLASS,REASON,AGE,VOLUMEMODE"),
            ("PersistentVolumeClaim", "NAME,STATUS,VOLUME,CAPACITY,ACCESS MODES,STORAGECLASS,VOLUMEATTRIBUTESCLASS,AGE,VOLUMEMODE"),
            ("StorageClass", "NAME,PROVISIONER,RECLAIMPOLICY,VOLUMEBINDINGMODE,ALLOWVOLUMEEXPANSION,AGE"),
            ("ValidatingWebhookConfiguration", "NAME,WEBHOOKS,AGE"),
            ("CronJob", "NAME,SCHEDULE,TIMEZONE,SUSPEND,ACTIVE,LAST SCHEDULE,AGE,CONTAINERS,IMAGES,SELECTOR"),
            ("StatefulSet", "NAME,READY,AGE,CONTAINERS,IMAGES"),
            ("PodDisruptionBudget", "NAME,MIN AVAILABLE,MAX UNAVAILABLE,ALLOWED DISRUPTIONS,AGE"),
            ("DaemonSet", "NAME,DESIRED,CURRENT,READY,UP-TO-DATE,AVAILABLE,NODE SELECTOR,AGE,CONTAINERS,IMAGES,SELECTOR"),
            ("Job", "NAME,STATUS,COMPLETIONS,DURATION,AGE,CONTAINERS,IMAGES,SELECTOR"),
            ("Pod", "NAME,READY,STATUS,RESTARTS,AGE,IP,NODE,NOMINATED NODE,READINESS GATES"),
            ("Node", "NAME,STATUS,ROLES,AGE,VERSION,INTERNAL-IP,EXTERNAL-IP,OS-IMAGE,KERNEL-VERSION,CONTAINER-RUNTIME"),
            ("Deployment", "NAME,READY,UP-TO-DATE,AVAILABLE,AGE,CONTAINERS,IMAGES,SELECTOR"),
            ("ReplicaSet", "NAME,DESIRED,CURRENT,READY,AGE,CONTAINERS,IMAGES,SELECTOR"),
            ("ReplicationController", "NAME,DESIRED,CURRENT,READY,AGE,CONTAINERS,IMAGES,SELECTOR"),
            ("Service", "NAME,TYPE,CLUSTER-IP,EXTERNAL-IP,PORT(S),AGE,SELECTOR"),
        ] {
            assert_eq!(names(kind).join(","), cols, "{kind}");
            // Every row has one cell per column, even for an empty object.
            assert_eq!(cells(kind, &json!({}), now).len(), columns(kind).len(), "{kind}");
        }
    }

    #[test]
    fn event_hpa_ingress_endpointslice_cells() {
        let now = SystemTime::now();
        let ev = json!({"metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "p1"},
            "reason": "Started", "type": "Normal", "message": " hi ", "source": {"component": "kubelet", "host": "n1"}});
        let c = cells("Event", &ev, now);
        assert_eq!(c[0], "<unknown>");
        assert_eq!(c[3], "pod/p1");
        assert_eq!(c[5], "kubelet, n1");
        assert_eq!(c[6], "hi");
        assert_eq!(c[8], 1);
        let hpa = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}});
        let c = cells("HorizontalPodAutoscaler", &hpa, now);
        assert_eq!(c[1], "Deployment/web");
        assert_eq!(c[2], "cpu: <unknown>/50%");
        assert_eq!(c[3], "1");
        let ing = json!({"spec": {"rules": [{"host": "a"}, {"host": "b"}, {"host": "c"}, {"host": "d"}], "tls": [{}]}});
        let c = cells("Ingress", &ing, now);
        assert_eq!(c[1], "<none>");
        assert_eq!(c[2], "a,b,c + 1 more...");
        assert_eq!(c[4], "80, 443");
        let es = json!({"addressType": "IPv4", "ports": [{"port": 8080}], "endpoints": [{"addresses": ["10.0.0.1"]}]});
        let c = cells("EndpointSlice", &es, now);
        assert_eq!(c[2], "8080");
        assert_eq!(c[3], "10.0.0.1");
        let job = json!({"spec": {"completions": 3, "selector": {"matchLabels": {"a": "b"}},
            "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}, "status": {"succeeded": 1}});
        let svc = json!({"spec": {"type": "LoadBalancer", "selector": {"app": "web"}}});
        let c = cells("Service", &svc, now);
        assert_eq!(c[3], "<pending>");
        assert_eq!(c[6], "app=web");
        let c = cells("Job", &job, now);
        assert_eq!(c[1], "Running");
        assert_eq!(c[2], "1/3");
        assert_eq!(c[5], "c");
        assert_eq!(c[7], "a=b");
    }

    #[test]
    fn pod_row() {
        let p = json!({"metadata": {"name": "web"}, "spec": {"containers": [{}, {}], "nodeName": "n1"},
            "status": {"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 2}, {"ready": false, "restartCount": 1}]}});
        let c = cells("Pod", &p, SystemTime::now());
        assert_eq!(c[1], "1/2");
        assert_eq!(c[2], "Running");
        assert_eq!(c[3], "3");
        assert_eq!(c[6], "n1");
    }
}

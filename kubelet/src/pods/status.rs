//! The pod's status from what CRI reports (kubelet's `generateAPIPodStatus` and `getPhase`):
//! phase, conditions, container statuses with state / lastState / restartCount, IPs, QoS.

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::podconfig::qos;

/// What the worker saw of one pod in this sync.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    pub sandbox_ready: bool,
    pub pod_ips: Vec<String>,
    /// Container statuses by container name, newest attempt first.
    pub containers: HashMap<String, Vec<cri::ContainerStatus>>,
    /// Why a container has no running instance now (ContainerCreating, CrashLoopBackOff, ...).
    pub waiting: HashMap<String, (String, String)>,
    /// Readiness and startup results of the current instances.
    pub ready: HashMap<String, bool>,
    pub started: HashMap<String, bool>,
    pub initialized: bool,
    /// Termination messages by container id.
    pub messages: HashMap<String, String>,
}

fn time_ns(ns: i64) -> Option<Time> {
    (ns > 0).then(|| Time(chrono::DateTime::from_timestamp_nanos(ns)))
}

fn terminated(
    s: &cri::ContainerStatus,
    cid: &str,
    msg: Option<&String>,
) -> ContainerStateTerminated {
    let reason = if !s.reason.is_empty() {
        s.reason.clone()
    } else if s.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    ContainerStateTerminated {
        exit_code: s.exit_code,
        reason: Some(reason),
        message: msg
            .cloned()
            .or_else(|| (!s.message.is_empty()).then(|| s.message.clone())),
        started_at: time_ns(s.started_at),
        finished_at: time_ns(s.finished_at),
        container_id: Some(cid.to_string()),
        signal: None,
    }
}

fn container_status(c: &Container, obs: &Observed, runtime: &str) -> ContainerStatus {
    let history = obs
        .containers
        .get(&c.name)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let cid = |s: &cri::ContainerStatus| format!("{runtime}://{}", s.id);
    let restart_count = history
        .first()
        .and_then(|s| s.metadata.as_ref())
        .map_or(0, |m| m.attempt as i32);
    let mut st = ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        restart_count,
        ..Default::default()
    };
    let waiting = obs.waiting.get(&c.name);
    let (current, previous) = match history.first() {
        // A new instance is on its way: the newest one is history.
        Some(s) if waiting.is_some() && s.state() == cri::ContainerState::ContainerExited => {
            (None, Some(s))
        }
        Some(s) => (Some(s), history.get(1)),
        None => (None, None),
    };
    if let Some(s) = current {
        st.container_id = Some(cid(s));
        st.image_id = s.image_ref.clone();
        if let Some(img) = s
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .filter(|i| !i.is_empty())
        {
            st.image = c.image.clone().unwrap_or(img);
        }
        st.state = Some(match s.state() {
            cri::ContainerState::ContainerRunning => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: time_ns(s.started_at),
                }),
                ..Default::default()
            },
            cri::ContainerState::ContainerExited => ContainerState {
                terminated: Some(terminated(s, &cid(s), obs.messages.get(&s.id))),
                ..Default::default()
            },
            _ => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("ContainerCreating".into()),
                    message: None,
                }),
                ..Default::default()
            },
        });
        let running = s.state() == cri::ContainerState::ContainerRunning;
        st.started = Some(running && obs.started.get(&c.name).copied().unwrap_or(true));
        st.ready = running && obs.ready.get(&c.name).copied().unwrap_or(true);
    } else {
        let (reason, message) = waiting
            .cloned()
            .unwrap_or_else(|| ("ContainerCreating".into(), String::new()));
        st.state = Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason),
                message: (!message.is_empty()).then_some(message),
            }),
            ..Default::default()
        });
        st.started = Some(false);
    }
    if let Some(p) = previous {
        if p.state() == cri::ContainerState::ContainerExited {
            st.last_state = Some(ContainerState {
                terminated: Some(terminated(p, &cid(p), obs.messages.get(&p.id))),
                ..Default::default()
            });
            if st.image_id.is_empty() {
                st.image_id = p.image_ref.clone();
            }
        }
    }
    st
}

/// kubelet's `getPhase` over the regular containers.
fn phase(
    pod: &Pod,
    statuses: &[ContainerStatus],
    initialized: bool,
    init_failed: bool,
) -> &'static str {
    if init_failed {
        return "Failed";
    }
    if !initialized {
        return "Pending";
    }
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into());
    let (mut pending, mut running, mut stopped, mut succeeded, mut failed) = (0, 0, 0, 0, 0);
    for s in statuses {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            } else {
                failed += 1;
            }
        } else if s
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .is_some()
        {
            // Waiting to restart: it ran before.
            stopped += 1;
            let code = s
                .last_state
                .as_ref()
                .and_then(|l| l.terminated.as_ref())
                .map_or(0, |t| t.exit_code);
            if code == 0 {
                succeeded += 1;
            } else {
                failed += 1;
            }
        } else {
            pending += 1;
        }
    }
    if pending > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match policy.as_str() {
            "Always" => "Running",
            "OnFailure" if failed > 0 => "Running",
            _ if failed > 0 => "Failed",
            _ if succeeded == stopped => "Succeeded",
            _ => "Running",
        }
    } else {
        "Pending"
    }
}

fn condition(type_: &str, ok: bool, reason: Option<&str>, old: Option<&PodStatus>) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    // The transition time moves only when the status changes.
    let last = old
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(chrono::Utc::now()));
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        last_transition_time: Some(last),
        reason: reason.filter(|_| !ok).map(str::to_string),
        ..Default::default()
    }
}

#[derive(Debug)]
pub struct StatusInput<'a> {
    pub pod: &'a Pod,
    pub obs: &'a Observed,
    pub runtime: &'a str,
    pub host_ips: &'a [String],
    /// An init container failed under restartPolicy Never: the pod failed.
    pub init_failed: bool,
}

pub fn pod_status(i: &StatusInput) -> PodStatus {
    let pod = i.pod;
    let old = pod.status.as_ref();
    let spec = pod.spec.clone().unwrap_or_default();
    let statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, i.obs, i.runtime))
        .collect();
    let init_statuses: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            let mut s = container_status(c, i.obs, i.runtime);
            if s.state
                .as_ref()
                .and_then(|st| st.waiting.as_ref())
                .is_some()
                && i.obs.initialized
            {
                // Finished init containers whose records were collected still count as done.
                s.state = Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 0,
                        reason: Some("Completed".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            s
        })
        .collect();
    let phase = phase(pod, &statuses, i.obs.initialized, i.init_failed);
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s.ready);
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let mut conditions = vec![
        condition("PodReadyToStartContainers", i.obs.sandbox_ready, None, old),
        condition(
            "Initialized",
            i.obs.initialized,
            Some("ContainersNotInitialized"),
            old,
        ),
        condition(
            "ContainersReady",
            all_ready && !terminal,
            Some(if terminal {
                "PodCompleted"
            } else {
                "ContainersNotReady"
            }),
            old,
        ),
        condition(
            "Ready",
            all_ready && !terminal,
            Some(if terminal {
                "PodCompleted"
            } else {
                "ContainersNotReady"
            }),
            old,
        ),
    ];
    // Conditions others own (PodScheduled, DisruptionTarget, readiness gates) are kept.
    for c in old.and_then(|s| s.conditions.clone()).into_iter().flatten() {
        if !conditions.iter().any(|x| x.type_ == c.type_) {
            conditions.push(c);
        }
    }
    conditions.sort_by_key(|c| match c.type_.as_str() {
        "PodReadyToStartContainers" => 0,
        "Initialized" => 1,
        "Ready" => 2,
        "ContainersReady" => 3,
        "PodScheduled" => 4,
        _ => 5,
    });
    let pod_ips = if terminal {
        Vec::new()
    } else {
        i.obs.pod_ips.clone()
    };
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        container_statuses: Some(statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        host_ip: i.host_ips.first().cloned(),
        host_ips: Some(
            i.host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect(),
        ),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: Some(pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        qos_class: Some(qos::of(pod).as_str().into()),
        start_time: old
            .and_then(|s| s.start_time.clone())
            .or_else(|| Some(Time(chrono::Utc::now()))),
        ..Default::default()
    }
}

/// Status equality that ignores nothing but is cheap: compared as JSON.
pub fn same(a: &PodStatus, b: &PodStatus) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(policy: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "a", "image": "busybox"}]},
            "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}
        }))
        .unwrap()
    }

    fn exited(id: &str, attempt: u32, code: i32) -> cri::ContainerStatus {
        cri::ContainerStatus {
            id: id.into(),
            metadata: Some(cri::ContainerMetadata {
                name: "a".into(),
                attempt,
            }),
            state: cri::ContainerState::ContainerExited as i32,
            exit_code: code,
            finished_at: 1_700_000_000_000_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn phases_and_conditions() {
        let mut obs = Observed {
            sandbox_ready: true,
            initialized: true,
            pod_ips: vec!["10.0.0.2".into()],
            ..Default::default()
        };
        obs.containers.insert("a".into(), vec![exited("c1", 0, 0)]);
        let p = pod("Never");
        let st = pod_status(&StatusInput {
            pod: &p,
            obs: &obs,
            runtime: "pea",
            host_ips: &["192.168.1.2".into()],
            init_failed: false,
        });
        assert_eq!(st.phase.as_deref(), Some("Succeeded"));
        let cs = &st.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.container_id.as_deref(), Some("pea://c1"));
        assert_eq!(
            cs.state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("Completed")
        );
        assert!(st
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .any(|c| c.type_ == "PodScheduled"));
        assert!(st.pod_ip.is_none(), "a finished pod reports no IP");

        // Always: a crashed container waiting in backoff keeps the pod Running, with lastState.
        obs.containers
            .insert("a".into(), vec![exited("c2", 1, 2), exited("c1", 0, 0)]);
        obs.waiting.insert(
            "a".into(),
            ("CrashLoopBackOff".into(), "back-off 10s".into()),
        );
        let p = pod("Always");
        let st = pod_status(&StatusInput {
            pod: &p,
            obs: &obs,
            runtime: "pea",
            host_ips: &[],
            init_failed: false,
        });
        assert_eq!(st.phase.as_deref(), Some("Running"));
        let cs = &st.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.restart_count, 1);
        assert_eq!(
            cs.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("CrashLoopBackOff")
        );
        assert_eq!(
            cs.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            2
        );
        let p = pod("Never");
        obs.waiting.clear();
        obs.containers.insert("a".into(), vec![exited("c2", 0, 1)]);
        let st = pod_status(&StatusInput {
            pod: &p,
            obs: &obs,
            runtime: "pea",
            host_ips: &[],
            init_failed: false,
        });
        assert_eq!(st.phase.as_deref(), Some("Failed"));
    }
}

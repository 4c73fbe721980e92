//! kubelet's eviction ranking and messages. Memory and disk (rankMemoryPressure,
//! rankDiskPressureFunc): pods using more than they request first, then lower priority, then
//! larger usage above requests. PIDs (rankPIDPressure): lower priority, then more tasks.

use super::Signal;

/// One container's use of the resource being reclaimed, for the eviction message.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerUse {
    pub name: String,
    pub usage: u64,
    pub request: u64,
    /// The request as written in the pod ("0" when none).
    pub written: String,
}

/// One pod as the ranking sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub uid: String,
    pub priority: i32,
    /// The pod's use of the resource ranked by (bytes, inodes or tasks).
    pub usage: u64,
    /// The pod's request of it (memory or ephemeral-storage; 0 for inodes and pids).
    pub request: u64,
    pub containers: Vec<ContainerUse>,
    /// The pod's terminationGracePeriodSeconds (a soft eviction's grace is at most this).
    pub grace_seconds: Option<i64>,
}

/// Orders `pods` for eviction on `signal`: the first is evicted.
pub fn rank(signal: Signal, pods: &mut [Candidate]) {
    if signal == Signal::PidAvailable {
        pods.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.usage.cmp(&a.usage)));
        return;
    }
    pods.sort_by(|a, b| {
        let exceeds = |p: &Candidate| p.usage > p.request;
        let over = |p: &Candidate| p.usage as i128 - p.request as i128;
        exceeds(b)
            .cmp(&exceeds(a))
            .then(a.priority.cmp(&b.priority))
            .then_with(|| over(b).cmp(&over(a)))
    });
}

/// An amount as Kubernetes prints a quantity: binary-SI for bytes ("1536Ki", "100Mi"),
/// decimal-SI for counts ("4193k", "1000001").
pub fn quantity(v: u64, bytes: bool) -> String {
    if v == 0 {
        return "0".into();
    }
    let (base, suffixes): (u64, &[&str]) = if bytes {
        (1024, &["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])
    } else {
        (1000, &["", "k", "M", "G", "T", "P", "E"])
    };
    let mut v = v;
    let mut i = 0;
    while v % base == 0 && i < suffixes.len() - 1 {
        v /= base;
        i += 1;
    }
    format!("{v}{}", suffixes[i])
}

/// kubelet's evictionMessage: the resource, the threshold and what was available, and for
/// memory and ephemeral storage each container using more than it requests.
pub fn message(signal: Signal, threshold: &str, available: u64, pod: &Candidate) -> String {
    let resource = signal.resource();
    let mut m = format!(
        "The node was low on resource: {resource}. Threshold quantity: {threshold}, available: {}. ",
        quantity(available, signal.is_bytes())
    );
    if matches!(resource, "memory" | "ephemeral-storage") {
        for c in &pod.containers {
            if c.usage > c.request {
                m.push_str(&format!(
                    "Container {} was using {}, request is {}, has larger consumption of {resource}. ",
                    c.name,
                    quantity(c.usage, true),
                    c.written
                ));
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, priority: i32, usage: u64, request: u64) -> Candidate {
        Candidate {
            uid: uid.into(),
            priority,
            usage,
            request,
            containers: vec![ContainerUse {
                name: "c".into(),
                usage,
                request,
                written: quantity(request, true),
            }],
            grace_seconds: None,
        }
    }

    fn order(signal: Signal, mut pods: Vec<Candidate>) -> Vec<String> {
        rank(signal, &mut pods);
        pods.into_iter().map(|p| p.uid).collect()
    }

    #[test]
    fn memory_and_disk_rank_over_requests_then_priority_then_usage() {
        let pods = vec![
            pod("within-requests", 0, 10 << 20, 100 << 20),
            pod("over-high-priority", 1000, 50 << 20, 10 << 20),
            pod("over-low-priority-small", 0, 20 << 20, 10 << 20),
            pod("over-low-priority-large", 0, 90 << 20, 10 << 20),
        ];
        let want = [
            "over-low-priority-large",
            "over-low-priority-small",
            "over-high-priority",
            "within-requests",
        ];
        assert_eq!(order(Signal::MemoryAvailable, pods.clone()), want);
        assert_eq!(order(Signal::NodefsAvailable, pods), want);
    }

    #[test]
    fn pids_rank_by_priority_then_tasks() {
        let pods = vec![
            pod("high-many", 100, 500, 0),
            pod("low-few", 0, 2, 0),
            pod("low-many", 0, 50, 0),
        ];
        assert_eq!(
            order(Signal::PidAvailable, pods),
            ["low-many", "low-few", "high-many"]
        );
    }

    #[test]
    fn messages_and_quantities_as_kubelet() {
        assert_eq!(quantity(0, true), "0");
        assert_eq!(quantity(1536 * 1024, true), "1536Ki");
        assert_eq!(quantity(100 << 20, true), "100Mi");
        assert_eq!(quantity(1000, true), "1000");
        assert_eq!(quantity(4_193_000, false), "4193k");
        assert_eq!(quantity(4_193_001, false), "4193001");
        let mut p = pod("u", 0, 2 << 20, 1024);
        p.containers[0].name = "app".into();
        p.containers[0].written = "1Ki".into();
        p.containers.push(ContainerUse {
            name: "side".into(),
            usage: 1024,
            request: 10 << 20,
            written: "10Mi".into(),
        });
        assert_eq!(
            message(Signal::MemoryAvailable, "100Mi", 50 << 20, &p),
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. \
             Container app was using 2Mi, request is 1Ki, has larger consumption of memory. "
        );
        assert_eq!(
            message(Signal::NodefsAvailable, "32Mi", 20 << 20, &p),
            "The node was low on resource: ephemeral-storage. Threshold quantity: 32Mi, available: 20Mi. \
             Container app was using 2Mi, request is 1Ki, has larger consumption of ephemeral-storage. "
        );
        assert_eq!(
            message(Signal::PidAvailable, "4Mi", 4_193_000, &p),
            "The node was low on resource: pids. Threshold quantity: 4Mi, available: 4193k. "
        );
    }
}

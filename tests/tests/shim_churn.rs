//! Pod churn through pea-shim leaks nothing: many RunPodSandbox + CreateContainer +
//! StartContainer / StopPodSandbox + RemovePodSandbox cycles of a one-container busybox pod on a
//! node the test builds (network namespace, local registry; see `pea_tests::shim_node`), then
//! nothing of any pod is left: runtime containers, netns pins, bundles, records, pod dirs,
//! writable layers, CNI cache entries, IPAM leases, host veths, mounts, cgroups, processes.
//!
//! `PEA_SHIM_CHURN_CYCLES` overrides the cycle count (default 200). The loop is bounded in time
//! as well: past `TIME_LIMIT` it fails saying how far it got (nothing about speed is asserted
//! otherwise).

use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use pea_tests::cri_client::Cri;
use pea_tests::shim_node::ShimNode;

const DEFAULT_CYCLES: usize = 200;
const TIME_LIMIT: Duration = Duration::from_secs(600);

/// Exits at once on SIGTERM (a shell as PID 1 with a trap; `wait` is interrupted by it), so
/// StopPodSandbox never waits out its grace period.
const SCRIPT: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

fn cycles() -> usize {
    std::env::var("PEA_SHIM_CHURN_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CYCLES)
}

/// One pod's whole life; returns its cgroup parent (the kubelet's to remove).
async fn cycle(c: &mut Cri, node: &ShimNode, i: usize) -> Result<String, String> {
    let config = node.pod(&format!("churn-{i}"));
    let parent = config
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .unwrap_or_default();
    let pod = node
        .start_pod(c, config, vec![node.container("app", SCRIPT)])
        .await
        .map_err(|e| format!("{e:#}"))?
        .id;
    c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .map_err(|e| format!("StopPodSandbox {pod}: {e:?}"))?;
    c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .map_err(|e| format!("RemovePodSandbox {pod}: {e:?}"))?;
    Ok(parent)
}

#[test]
fn pod_create_remove_cycles_leak_nothing() {
    let n = cycles();
    let mut node = ShimNode::new().unwrap();
    node.start_shim().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let result: Result<(), String> = rt.block_on(async {
        let mut c = node.cri().await.map_err(|e| format!("{e:#}"))?;
        node.pull(&mut c, &node.busybox)
            .await
            .map_err(|e| format!("{e:#}"))?;
        for i in 0..n {
            if started.elapsed() > TIME_LIMIT {
                return Err(format!(
                    "only {i} of {n} pod cycles done in {} s: giving up (the churn is bounded in \
                     time; set PEA_SHIM_CHURN_CYCLES lower on a slow machine)",
                    TIME_LIMIT.as_secs()
                ));
            }
            let parent = cycle(&mut c, &node, i)
                .await
                .map_err(|e| format!("cycle {i}: {e}"))?;
            // As the kubelet does once the pod is gone; fails if a cgroup or process remains.
            node.remove_pod_cgroup(&parent)
                .map_err(|e| format!("cycle {i}: {e:#}"))?;
        }
        let pods = c
            .runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .map_err(|e| format!("ListPodSandbox: {e:?}"))?
            .into_inner()
            .items;
        let containers = c
            .runtime
            .list_containers(cri::ListContainersRequest { filter: None })
            .await
            .map_err(|e| format!("ListContainers: {e:?}"))?
            .into_inner()
            .containers;
        if !pods.is_empty() || !containers.is_empty() {
            return Err(format!(
                "the shim still lists {} pods and {} containers",
                pods.len(),
                containers.len()
            ));
        }
        Ok(())
    });
    let elapsed = started.elapsed();
    if let Err(e) = result {
        panic!("{e}\nshim log tail:\n{}", tail(&node.log(), 40));
    }
    eprintln!(
        "{n} pod cycles in {:.1} s ({:.0} ms per cycle)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e3 / n.max(1) as f64
    );

    // With the shim still running: every pod is gone and nothing of them remains.
    let mut left = node.leftovers();
    left.extend(node.cgroups().into_iter().map(|c| format!("cgroup {c}")));
    assert_eq!(left, Vec::<String>::new(), "left behind after {n} pods");
    node.teardown().unwrap();
    assert_eq!(node.leftovers(), Vec::<String>::new());
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

//! NodePorts: the pod's host ports must be free on the node (per protocol and address; a
//! wildcard address conflicts with every address).

use crate::cache::ClusterState;
use crate::framework::{Code, CycleState, FilterPlugin, Status};
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "NodePorts";
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

#[derive(Debug, Default)]
pub struct NodePorts;

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, pod: &PodInfo, _: &ClusterState, _: &mut CycleState) -> Status {
        if pod.host_ports.is_empty() {
            // kube's Skip: no host port, no conflict anywhere.
            return Status::skip(NAME);
        }
        Status::success()
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Status {
        if pod.host_ports.iter().any(|hp| node.port_conflicts(hp)) {
            // Resolvable: preempting the pod holding the port frees it.
            Status::new(Code::Unschedulable, NAME, REASON)
        } else {
            Status::success()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::testutil::{node, pod};

    #[test]
    fn host_port_conflicts() {
        let mut n = node("n", json!({}));
        let mut holder = pod(
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
        );
        holder.uid = "holder".into();
        n.add_pod(Arc::new(holder));
        let cs = CycleState::default();
        let same = pod(
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 81, "hostPort": 8080, "hostIP": "127.0.0.1"}]}]}),
        );
        assert_eq!(
            NodePorts.filter(&same, &n, &cs),
            Status::new(Code::Unschedulable, NAME, REASON)
        );
        let udp = pod(
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 81, "hostPort": 8080, "protocol": "UDP"}]}]}),
        );
        assert!(NodePorts.filter(&udp, &n, &cs).is_success());
        let none = pod(json!({"containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]}));
        assert!(
            NodePorts.filter(&none, &n, &cs).is_success(),
            "no hostPort, no conflict"
        );
    }
}

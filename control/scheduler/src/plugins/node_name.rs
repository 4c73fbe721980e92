//! NodeName: a pod that names a node (`spec.nodeName`) fits only that node.

use crate::framework::{Code, CycleState, FilterPlugin, Status};
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "NodeName";
pub const REASON: &str = "node(s) didn't match the requested node name";

#[derive(Debug, Default)]
pub struct NodeName;

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Status {
        match pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(want) if !want.is_empty() && want != node.name => {
                Status::new(Code::UnschedulableAndUnresolvable, NAME, REASON)
            }
            _ => Status::success(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testutil::{node, pod};

    #[test]
    fn only_the_named_node_fits() {
        let p = pod(json!({"nodeName": "a"}));
        let cs = CycleState::default();
        assert!(NodeName.filter(&p, &node("a", json!({})), &cs).is_success());
        assert_eq!(
            NodeName.filter(&p, &node("b", json!({})), &cs).reasons,
            vec![REASON]
        );
        assert!(NodeName
            .filter(&pod(json!({})), &node("b", json!({})), &cs)
            .is_success());
    }
}

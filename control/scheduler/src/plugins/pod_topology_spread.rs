//! PodTopologySpread is not implemented yet. Pods whose constraints are hard
//! (`whenUnsatisfiable: DoNotSchedule`) are refused in PreFilter with a message saying so,
//! rather than placed in a way that may break the spread they require. Soft constraints
//! (ScheduleAnyway) are preferences: they are not scored yet.

use crate::cache::ClusterState;
use crate::framework::{Code, CycleState, FilterPlugin, Status};
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "PodTopologySpread";
pub const NOT_IMPLEMENTED: &str =
    "pod topology spread constraints with whenUnsatisfiable=DoNotSchedule are not implemented by pea-scheduler";

#[derive(Debug, Default)]
pub struct PodTopologySpread;

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, pod: &PodInfo, _: &ClusterState, _: &mut CycleState) -> Status {
        let hard = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.when_unsatisfiable == "DoNotSchedule"));
        if hard {
            Status::new(Code::UnschedulableAndUnresolvable, NAME, NOT_IMPLEMENTED)
        } else {
            Status::success()
        }
    }

    fn filter(&self, _: &PodInfo, _: &NodeInfo, _: &CycleState) -> Status {
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testutil::pod;

    #[test]
    fn hard_constraints_are_refused_as_not_implemented() {
        let c = ClusterState::default();
        let hard = pod(
            json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]}),
        );
        let st = PodTopologySpread.pre_filter(&hard, &c, &mut CycleState::default());
        assert_eq!(st.reasons, vec![NOT_IMPLEMENTED]);
        let soft = pod(
            json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}]}),
        );
        assert!(PodTopologySpread
            .pre_filter(&soft, &c, &mut CycleState::default())
            .is_success());
    }
}

//! A pod's QoS class (Guaranteed, Burstable, BestEffort), as kube's `GetPodQOS`.

use k8s_openapi::api::core::v1::Pod;

use crate::quantity;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    pub fn as_str(self) -> &'static str {
        match self {
            Qos::Guaranteed => "Guaranteed",
            Qos::Burstable => "Burstable",
            Qos::BestEffort => "BestEffort",
        }
    }
}

pub fn of(pod: &Pod) -> Qos {
    let Some(spec) = pod.spec.as_ref() else {
        return Qos::BestEffort;
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
    {
        let r = c.resources.as_ref();
        let req = r.and_then(|r| r.requests.as_ref());
        let lim = r.and_then(|r| r.limits.as_ref());
        for res in ["cpu", "memory"] {
            let rq = req
                .and_then(|m| m.get(res))
                .and_then(|q| quantity::parse(&q.0));
            let lm = lim
                .and_then(|m| m.get(res))
                .and_then(|q| quantity::parse(&q.0));
            if rq.is_some_and(|v| v > 0.0) || lm.is_some_and(|v| v > 0.0) {
                any = true;
            }
            // A request defaults to its limit; Guaranteed needs limits equal to requests.
            match (rq.or(lm), lm) {
                (Some(a), Some(b)) if a == b => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        Qos::BestEffort
    } else if guaranteed {
        Qos::Guaranteed
    } else {
        Qos::Burstable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(res: serde_json::Value) -> Pod {
        serde_json::from_value(
            serde_json::json!({"spec": {"containers": [{"name": "c", "resources": res}]}}),
        )
        .unwrap()
    }

    #[test]
    fn classes() {
        assert_eq!(of(&pod(serde_json::json!({}))), Qos::BestEffort);
        assert_eq!(
            of(&pod(
                serde_json::json!({"limits": {"cpu": "1", "memory": "1Gi"}})
            )),
            Qos::Guaranteed
        );
        assert_eq!(
            of(&pod(serde_json::json!({"requests": {"cpu": "100m"}}))),
            Qos::Burstable
        );
    }
}

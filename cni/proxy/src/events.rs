//! Warning Events on Services pea-proxy cannot fully serve (a port with an unknown protocol, an
//! address or source range that does not parse, a NodePort or IP already claimed by another
//! Service, a slice endpoint that is no usable address), so `kubectl describe service` shows
//! what the log says, as kube-proxy's event recorder does for the objects it skips. Posted
//! once per new problem (the proxier reports each problem the first sync it appears in).

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::proxier::ServiceProblem;

/// The `source.component` / `reportingComponent` of our Events.
pub const COMPONENT: &str = "pea-proxy";
/// The reason of every such Event: kube-proxy's recorder names its reasons `KubeProxy...`
/// (`KubeProxyIncorrectIPVersion`); pea-proxy has one for all the input it leaves out.
pub const REASON_INVALID: &str = "KubeProxyInvalidService";
/// kube caps an Event's message at 1 KiB.
const MAX_MESSAGE: usize = 1024;

/// The Event for `problem`, reported by the proxy on node `host`.
pub fn event(problem: &ServiceProblem, host: &str, now: Time) -> Event {
    let ServiceProblem { key, uid, message } = problem;
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", key.name)),
            namespace: Some(key.namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            namespace: Some(key.namespace.clone()),
            name: Some(key.name.clone()),
            uid: uid.clone(),
            ..Default::default()
        },
        reason: Some(REASON_INVALID.into()),
        message: Some(message.chars().take(MAX_MESSAGE).collect()),
        type_: Some("Warning".into()),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: (!host.is_empty()).then(|| host.to_string()),
        }),
        reporting_component: Some(COMPONENT.into()),
        reporting_instance: Some(format!("{COMPONENT}-{host}")),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    }
}

/// Posts one Warning Event per problem; a failure to post is logged, never retried (the log
/// line stays the record).
pub async fn post(client: &Client, host: &str, problems: &[ServiceProblem]) {
    for p in problems {
        let now = Time(k8s_openapi::chrono::Utc::now());
        let ev = event(p, host, now);
        if let Err(e) = Api::<Event>::namespaced(client.clone(), &p.key.namespace)
            .create(&PostParams::default(), &ev)
            .await
        {
            tracing::warn!(service = %p.key, error = %e, "post event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServiceKey;

    #[test]
    fn events_name_the_service_and_are_bounded() {
        let p = ServiceProblem {
            key: ServiceKey {
                namespace: "ns".into(),
                name: "web".into(),
            },
            uid: Some("u1".into()),
            message: format!("service ns/web: {}", "x".repeat(5000)),
        };
        let ev = event(&p, "node1", Time(k8s_openapi::chrono::Utc::now()));
        assert_eq!(ev.involved_object.kind.as_deref(), Some("Service"));
        assert_eq!(ev.involved_object.uid.as_deref(), Some("u1"));
        assert_eq!(ev.type_.as_deref(), Some("Warning"));
        assert_eq!(ev.reason.as_deref(), Some(REASON_INVALID));
        assert_eq!(ev.message.unwrap().chars().count(), MAX_MESSAGE);
        assert_eq!(ev.source.unwrap().host.as_deref(), Some("node1"));
    }
}

//! Warning Events on the Ingresses whose configuration has a problem (an invalid host, an
//! unknown Service or port, a missing or bad TLS Secret), so `kubectl describe ingress` shows
//! what the log says. Posted once per new problem, like the log line; reason `Sync`, as
//! ingress-nginx and ingress-gce use for configuration they cannot apply.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use tracing::warn;

/// The `source.component` of our Events.
pub const COMPONENT: &str = "pea-ingress";
/// The Event reason for configuration pea-ingress cannot apply.
pub const REASON: &str = "Sync";

/// `ingress <ns>/<name>: <message>` → (ns, name, message).
pub fn split_problem(problem: &str) -> Option<(&str, &str, &str)> {
    let rest = problem.strip_prefix("ingress ")?;
    let (object, message) = rest.split_once(": ")?;
    let (ns, name) = object.split_once('/')?;
    Some((ns, name, message))
}

/// Posts a Warning Event for `problem` on its Ingress (problems naming no Ingress, or an Ingress
/// that is gone, post nothing). A failure to post is logged, never retried.
pub async fn post(client: &Client, store: &Store<Ingress>, problem: &str) {
    let Some((ns, name, message)) = split_problem(problem) else {
        return;
    };
    let Some(ing) = store.get(&ObjectRef::new(name).within(ns)) else {
        return;
    };
    let now = Time(k8s_openapi::chrono::Utc::now());
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}.")),
            namespace: Some(ns.to_string()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("networking.k8s.io/v1".into()),
            kind: Some("Ingress".into()),
            namespace: Some(ns.to_string()),
            name: Some(name.to_string()),
            uid: ing.metadata.uid.clone(),
            resource_version: ing.metadata.resource_version.clone(),
            ..Default::default()
        },
        reason: Some(REASON.into()),
        // kube caps an Event's message at 1 KiB.
        message: Some(message.chars().take(1024).collect()),
        type_: Some("Warning".into()),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: None,
        }),
        reporting_component: Some(COMPONENT.into()),
        reporting_instance: Some(COMPONENT.into()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    };
    if let Err(e) = Api::<Event>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &event)
        .await
    {
        warn!(ingress = %format!("{ns}/{name}"), error = %e, "post event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_their_ingress() {
        assert_eq!(
            split_problem("ingress ns/web: service ns/x not found"),
            Some(("ns", "web", "service ns/x not found"))
        );
        assert_eq!(split_problem("watch failed: x"), None);
    }
}

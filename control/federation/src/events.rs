//! core/v1 Events on the federation API, each emitted once per distinct message so a problem
//! that persists across passes is not repeated every pass.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Event;
use kube::{Api, Client};
use serde_json::{json, Value};

/// Emits Events about federation objects, deduplicated by (object uid, reason).
#[derive(Debug, Default)]
pub struct Recorder {
    last: Mutex<HashMap<(String, String), String>>,
}

impl Recorder {
    /// Records `reason`/`message` on `obj` (a Warning unless `normal`) unless it was the last
    /// message for that object, reason and `topic` (e.g. the member it is about).
    pub async fn record(
        &self,
        fed: &Client,
        obj: &Value,
        normal: bool,
        reason: &str,
        topic: &str,
        message: &str,
    ) {
        let uid = obj["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key = (uid.clone(), format!("{reason}/{topic}"));
        {
            let mut last = self.last.lock().expect("recorder lock");
            if last.get(&key).map(String::as_str) == Some(message) {
                return;
            }
            last.insert(key, message.to_string());
        }
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default");
        let now = k8s_openapi::chrono::Utc::now()
            .to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let ev = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{name}.{nanos:x}"), "namespace": ns},
            "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": name,
                "namespace": obj["metadata"]["namespace"], "uid": uid},
            "reason": reason, "message": message, "type": if normal { "Normal" } else { "Warning" },
            "source": {"component": crate::FIELD_MANAGER},
            "reportingComponent": crate::FIELD_MANAGER,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        let api: Api<Event> = Api::namespaced(fed.clone(), ns);
        match serde_json::from_value::<Event>(ev) {
            Ok(ev) => {
                if let Err(e) = api.create(&Default::default(), &ev).await {
                    tracing::warn!(%reason, "event not recorded: {e}");
                }
            }
            Err(e) => tracing::warn!("event not built: {e}"),
        }
    }

    /// Forgets the last message for (`uid`, `reason`, `topic`) so the next one is recorded again.
    pub fn clear(&self, uid: &str, reason: &str, topic: &str) {
        self.last
            .lock()
            .expect("recorder lock")
            .remove(&(uid.to_string(), format!("{reason}/{topic}")));
    }
}

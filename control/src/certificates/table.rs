//! `kubectl get csr` columns, as kube's printCertificateSigningRequest: name, age, signer,
//! requestor, requested duration and the condition (`Approved,Issued`, `Denied`, `Pending`).

use serde_json::{json, Value};

fn col(name: &str, description: &str) -> Value {
    json!({"name": name, "type": "string", "format": "", "description": description, "priority": 0})
}

pub fn columns(name: Value, age: Value) -> Vec<Value> {
    vec![
        name,
        age,
        col(
            "SignerName",
            "The name of the signer that will sign the request.",
        ),
        col("Requestor", "The user who created the request."),
        col(
            "RequestedDuration",
            "The requested validity of the issued certificate.",
        ),
        col(
            "Condition",
            "The state of the request: Approved, Denied, Failed, Issued or Pending.",
        ),
    ]
}

/// kube's `extractCSRStatus`: the Approved/Denied/Failed conditions, `Issued` once a
/// certificate is there, `Pending` without any.
pub fn condition(obj: &Value) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(t @ ("Approved" | "Denied" | "Failed")) = c.get("type").and_then(Value::as_str)
        {
            out.push(t);
        }
    }
    let issued = obj
        .pointer("/status/certificate")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty());
    if issued {
        out.push("Issued");
    }
    if out.is_empty() {
        "Pending".into()
    } else {
        out.join(",")
    }
}

pub fn cells(obj: &Value, name: Value, age: Value) -> Vec<Value> {
    let text = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let duration = obj
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_u64)
        .map(|s| crate::table::human_duration(std::time::Duration::from_secs(s)))
        .unwrap_or_else(|| "<none>".into());
    vec![
        name,
        age,
        json!(text("/spec/signerName")),
        json!(text("/spec/username")),
        json!(duration),
        json!(condition(obj)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_reads_like_kubectl() {
        assert_eq!(condition(&json!({})), "Pending");
        assert_eq!(
            condition(
                &json!({"status": {"conditions": [{"type": "Approved"}], "certificate": "eA=="}})
            ),
            "Approved,Issued"
        );
        assert_eq!(
            condition(&json!({"status": {"conditions": [{"type": "Denied"}]}})),
            "Denied"
        );
    }
}

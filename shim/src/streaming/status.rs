//! What goes on the error channel (3) when an exec or attach ends: a `metav1.Status` as JSON,
//! as the kubelet's v4/v5 remotecommand server writes it. A non-zero exit is a Failure with
//! reason `NonZeroExitCode` and the code in `details.causes[{reason: ExitCode}]`, which kubectl
//! turns into its own exit code.

use serde_json::{json, Value};

pub fn success() -> Value {
    json!({"metadata": {}, "status": "Success"})
}

/// The status of a process that exited with `code` (0 is Success).
pub fn exit(code: i32, cmd: &[String]) -> Value {
    if code == 0 {
        return success();
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command {cmd:?}, exit code {code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// A failure that is not an exit code (the runtime could not start the process, ...).
pub fn internal(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "code": 500,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_become_kubectl_s_causes() {
        assert_eq!(exit(0, &[]), success());
        let s = exit(3, &["sh".into(), "-c".into(), "exit 3".into()]);
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert!(s["message"].as_str().unwrap().contains("exit code 3"));
    }
}

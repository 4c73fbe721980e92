//! Per-controller identities (kube-controller-manager's --use-service-account-credentials):
//! the real pea-control binary with its in-process controllers, driven by the real kubectl.
//! The controller manager runs as `system:kube-controller-manager`, which may not create pods;
//! the ReplicaSet controller's writes arrive as
//! `system:serviceaccount:kube-system:replicaset-controller`: with its ClusterRoleBinding gone
//! it is refused (403, logged with that user name) while the Job controller, under its own
//! identity, keeps creating pods; with the binding back, the ReplicaSet catches up.
//! Its events are written under that identity too (as kube's per-controller event
//! broadcasters): with `events` taken out of its ClusterRole it still creates pods but its
//! SuccessfulCreate events are refused by its name, though the manager's own identity may
//! write events, while the Job controller's events keep coming.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pea_tests::bins::workspace_binary;
use pea_tests::control::Kubectl;

const RS_SA: &str = "system:serviceaccount:kube-system:replicaset-controller";

/// pea-control, killed (by its pid) and reaped when dropped.
struct Control(Child);

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn eventually(secs: u64, what: &str, log: &Path, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "timed out waiting for {what}; pea-control log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// pea-control's log without its ANSI colour sequences.
fn plain_log(log: &Path) -> String {
    let raw = std::fs::read_to_string(log).unwrap_or_default();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn pods(k: &Kubectl, selector: &str) -> usize {
    k.ok(&["get", "pods", "-l", selector, "-o", "name"])
        .lines()
        .count()
}

const REPLICASET: &str = r#"{"apiVersion": "apps/v1", "kind": "ReplicaSet",
 "metadata": {"name": "web"},
 "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
  "template": {"metadata": {"labels": {"app": "web"}},
   "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}"#;

const JOB: &str = r#"{"apiVersion": "batch/v1", "kind": "Job",
 "metadata": {"name": "once"},
 "spec": {"template": {"metadata": {"labels": {"app": "once"}},
  "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}"#;

#[test]
fn controllers_write_as_their_own_service_accounts() {
    let dir = tempfile::Builder::new()
        .prefix("pea-controller-identity-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("pea-control.log");
    let child = Command::new(workspace_binary("pea-control", "PEA_CONTROL_BIN"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--disable-dashboard"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start pea-control");
    let _control = Control(child);
    let kubeconfig = data.join("admin.kubeconfig");
    eventually(30, "pea-control to serve", &log, || {
        kubeconfig.is_file()
            && Kubectl::new(&kubeconfig)
                .run(&["get", "--raw", "/readyz"])
                .status
                .success()
    });
    let k = Kubectl::new(&kubeconfig);

    // The bootstrap policy: a role per controller, bound to its ServiceAccount; the manager's
    // own identity cannot write pods, the ReplicaSet controller's can, the Endpoints
    // controller's cannot.
    let binding = k.ok(&[
        "get",
        "clusterrolebinding",
        "system:controller:replicaset-controller",
        "-o",
        "jsonpath={.roleRef.name} {.subjects[0].kind} {.subjects[0].namespace}/{.subjects[0].name}",
    ]);
    assert_eq!(
        binding,
        "system:controller:replicaset-controller ServiceAccount kube-system/replicaset-controller"
    );
    let can = |user: &str, verb: &str, what: &str| {
        k.run(&["auth", "can-i", verb, what, "--as", user])
            .stdout
            .starts_with(b"yes")
    };
    assert!(!can("system:kube-controller-manager", "create", "pods"));
    assert!(can(RS_SA, "create", "pods"));
    assert!(!can(
        "system:serviceaccount:kube-system:endpoint-controller",
        "create",
        "pods"
    ));
    k.ok(&[
        "get",
        "role",
        "-n",
        "kube-public",
        "system:controller:bootstrap-signer",
    ]);

    // The manager made the controllers' ServiceAccounts in kube-system and acts through them.
    eventually(30, "the controllers' ServiceAccounts", &log, || {
        let sas = k.ok(&["get", "serviceaccounts", "-n", "kube-system", "-o", "name"]);
        [
            "replicaset-controller",
            "job-controller",
            "node-controller",
            "certificate-controller",
        ]
        .iter()
        .all(|sa| sas.contains(&format!("serviceaccount/{sa}\n")))
    });
    eventually(30, "the default ServiceAccount", &log, || {
        k.run(&["get", "serviceaccount", "default"])
            .status
            .success()
    });
    k.ok_stdin(&["apply", "-f", "-"], REPLICASET);
    eventually(30, "the ReplicaSet's two pods", &log, || {
        pods(&k, "app=web") == 2
    });

    // Without its binding the ReplicaSet controller is refused, by its own name.
    k.ok(&[
        "delete",
        "clusterrolebinding",
        "system:controller:replicaset-controller",
    ]);
    eventually(10, "the RBAC index to drop the binding", &log, || {
        !can(RS_SA, "create", "pods")
    });
    k.ok(&["scale", "replicaset", "web", "--replicas=3"]);
    // The API server logs the refusal with the user it refused. (kube's FailedCreate event
    // carrying it cannot be written: the controller writes its events as itself, and that is
    // refused too.)
    let refusal = format!("user={RS_SA} ");
    eventually(30, "the ReplicaSet controller's 403", &log, || {
        plain_log(&log).lines().any(|l| {
            l.contains("request forbidden")
                && l.contains(&refusal)
                && l.contains("verb=create resource=pods ")
        })
    });
    assert_eq!(pods(&k, "app=web"), 2);

    // Other controllers act under their own identities and keep working.
    k.ok_stdin(&["apply", "-f", "-"], JOB);
    eventually(30, "the Job's pod", &log, || pods(&k, "app=once") == 1);
    // The in-process scheduler's metrics follow the API server's in /metrics; with no node
    // the pods wait in its unschedulable pool.
    eventually(30, "the scheduler's metrics in /metrics", &log, || {
        let m = k.ok(&["get", "--raw", "/metrics"]);
        m.contains("scheduler_schedule_attempts_total{result=\"unschedulable\",profile=\"default-scheduler\"} ")
            && m.contains("scheduler_pending_pods{queue=\"unschedulable\"} ")
    });
    assert_eq!(pods(&k, "app=web"), 2);

    // The binding back (as an administrator would restore it): the ReplicaSet catches up.
    k.ok(&[
        "create",
        "clusterrolebinding",
        "system:controller:replicaset-controller",
        "--clusterrole=system:controller:replicaset-controller",
        "--serviceaccount=kube-system:replicaset-controller",
    ]);
    k.ok(&["scale", "replicaset", "web", "--replicas=4"]);
    eventually(30, "the ReplicaSet's four pods", &log, || {
        pods(&k, "app=web") == 4
    });

    // Events: one SuccessfulCreate per pod made, reported by the ReplicaSet controller.
    let created = || {
        k.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web,reason=SuccessfulCreate",
            "-o",
            "jsonpath={range .items[*]}{.reportingComponent}{\"\\n\"}{end}",
        ])
    };
    eventually(
        30,
        "four SuccessfulCreate events of the ReplicaSet",
        &log,
        || created().lines().count() == 4,
    );
    assert!(created().lines().all(|l| l == "replicaset-controller"));

    // Take `events` out of the ReplicaSet controller's role. The manager's identity may still
    // write events, so events that still appeared would be written by the manager.
    let role: serde_json::Value = serde_json::from_str(&k.ok(&[
        "get",
        "clusterrole",
        "system:controller:replicaset-controller",
        "-o",
        "json",
    ]))
    .unwrap();
    let mut stripped = role.clone();
    let rules = stripped["rules"].as_array_mut().unwrap();
    let before = rules.len();
    rules.retain(|r| !r["resources"].to_string().contains("\"events\""));
    assert_eq!(rules.len() + 1, before, "one events rule in {role}");
    k.ok_stdin(&["replace", "-f", "-"], &stripped.to_string());
    eventually(10, "the RBAC index to drop the events rule", &log, || {
        !can(RS_SA, "create", "events")
    });
    assert!(can(RS_SA, "create", "pods"));
    assert!(can("system:kube-controller-manager", "create", "events"));

    // The ReplicaSet still works; its event is refused, by its own name.
    k.ok(&["scale", "replicaset", "web", "--replicas=5"]);
    eventually(30, "the ReplicaSet's fifth pod", &log, || {
        pods(&k, "app=web") == 5
    });
    let event_refusal = format!("User \"{RS_SA}\" cannot create resource \"events\"");
    eventually(
        30,
        "the refusal of the ReplicaSet controller's event",
        &log,
        || plain_log(&log).contains(&event_refusal),
    );
    // The Job controller's events, written after it by the same writer, still arrive.
    k.ok_stdin(&["apply", "-f", "-"], &JOB.replace("once", "twice"));
    eventually(30, "the second Job's SuccessfulCreate event", &log, || {
        k.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=twice,reason=SuccessfulCreate",
            "-o",
            "name",
        ])
        .lines()
        .count()
            == 1
    });
    assert_eq!(created().lines().count(), 4, "no event for the fifth pod");
}

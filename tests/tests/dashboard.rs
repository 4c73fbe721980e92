//! pea-dashboard in a real browser (Debian's headless Chromium, driven through chromedriver with the
//! W3C WebDriver protocol spoken directly) against a real `pea-control` process that serves it at `/dashboard/` (and once
//! against the standalone `pea-dashboard` binary). Objects are made with the real kubectl 1.32;
//! the Deployment's pods are "hollow" (a Node object without a kubelet: they are scheduled but
//! never run). Screenshots go to a temporary directory, or to the directory named by
//! PEA_DASHBOARD_SCREENSHOTS (`PEA_DASHBOARD_SCREENSHOTS=docs/dashboard` refreshes the README's),
//! so a test run never rewrites tracked files.
//!
//! Needs the pea-control and pea-dashboard binaries (`cargo build -p pea-control -p
//! pea-dashboard`, or PEA_CONTROL_BIN / PEA_DASHBOARD_BIN) and `chromium` + `chromium-driver`
//! (tests/scripts/prereqs.sh).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pea_tests::bins::workspace_binary;
use pea_tests::control::Kubectl;
use pea_tests::fixtures::pause::workspace_root;
use pea_tests::fixtures::registry::free_port;
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "dashboard-admin-token-0123456789abcdef";
const VIEWER_TOKEN: &str = "dashboard-viewer-token-0123456789abcdef";
const HOSTILE: &str = "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">";

/// A child process killed (by its pid) and reaped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a program whose first stdout line is `<prefix> <address> ...`; returns the address.
fn start_announcing(mut cmd: Command, prefix: &str, log: &Path) -> (Proc, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let proc = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("no announcement; log:\n{}", read(log)));
    let addr = line
        .strip_prefix(prefix)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}; log:\n{}", read(log)))
        .to_string();
    (proc, addr)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Polls `f` for up to `secs`.
fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

/// The W3C WebDriver element key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver on a free loopback port with one headless Chromium session of a fresh profile,
/// spoken to with the W3C WebDriver protocol (JSON over HTTP) directly.
struct Browser {
    agent: ureq::Agent,
    session: String,
    _driver: Proc,
    _profile: tempfile::TempDir,
}

/// A client certificate for the browser: a PKCS#12 file (no password) it presents to
/// `origin` without asking.
struct ClientCert<'a> {
    p12: &'a Path,
    origin: &'a str,
}

impl Browser {
    fn start(dir: &Path) -> Self {
        Self::start_with(dir, None)
    }

    /// With `cert`: Chromium on Linux reads client certificates from the NSS database in
    /// `$HOME/.pki/nssdb` (made here, in the profile's directory, with NSS's certutil and
    /// pk12util), and headless it can answer a certificate request only through the
    /// "auto-select certificate" content setting (the AutoSelectCertificateForUrls policy's
    /// per-profile form), written into the fresh profile's Preferences before start.
    fn start_with(dir: &Path, cert: Option<ClientCert>) -> Self {
        let port = free_port().expect("free port");
        let log = dir.join("chromedriver.log");
        let profile = tempfile::Builder::new()
            .prefix("pea-chromium-")
            .tempdir()
            .expect("profile dir");
        let mut driver = Command::new("chromedriver");
        if let Some(c) = cert {
            let home = profile.path().join("home");
            let nssdb = home.join(".pki/nssdb");
            std::fs::create_dir_all(&nssdb).expect("nss db dir");
            let db = format!("sql:{}", nssdb.display());
            let run = |cmd: &mut Command| {
                let out = cmd.output().unwrap_or_else(|e| {
                    panic!("{cmd:?}: {e} (apt-get install libnss3-tools openssl)")
                });
                assert!(out.status.success(), "{cmd:?}: {out:?}");
            };
            run(Command::new("certutil").args(["-N", "-d", &db, "--empty-password"]));
            run(Command::new("pk12util")
                .arg("-i")
                .arg(c.p12)
                .args(["-d", &db, "-W", ""]));
            std::fs::create_dir_all(profile.path().join("Default")).expect("profile Default");
            let prefs = json!({"profile": {"content_settings": {"exceptions": {
                "auto_select_certificate": {
                    format!("{},*", c.origin): {"setting": {"filters": [{}]}}
                }
            }}}});
            std::fs::write(
                profile.path().join("Default/Preferences"),
                prefs.to_string(),
            )
            .expect("Preferences");
            driver.env("HOME", &home);
        }
        let driver = Proc(
            driver
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log"))
                .spawn()
                .expect("chromedriver (apt-get install chromium-driver)"),
        );
        eventually(20, "chromedriver to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // pea-control's serving certificate is issued by its own CA.
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--window-size=1360,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let base = format!("http://127.0.0.1:{port}");
        let (code, v) = send(&agent, "POST", &format!("{base}/session"), Some(&caps));
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("new session: {code} {v}; chromedriver log:\n{}", read(&log)))
            .to_string();
        Browser {
            agent,
            session: format!("{base}/session/{session}"),
            _driver: driver,
            _profile: profile,
        }
    }

    /// One WebDriver command; panics on an error answer.
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (code, v) = send(
            &self.agent,
            method,
            &format!("{}{path}", self.session),
            body.as_ref(),
        );
        assert!(code == 200, "WebDriver {method} {path}: {code} {v}");
        v["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})));
    }

    fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Runs `body` as an async script; it calls `done(value)`.
    fn js_async(&self, body: &str) -> Value {
        let script = format!("const done = arguments[arguments.length - 1]; {body}");
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        let v = self.cmd(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
            .collect()
    }

    fn find(&self, css: &str) -> String {
        self.find_all(css).into_iter().next().unwrap_or_else(|| {
            panic!(
                "{css} not found on {}; page:\n{}",
                self.url(),
                self.source()
            )
        })
    }

    /// The element's text. The dashboard re-renders its tables as watch events arrive, so an
    /// element found a moment ago can be replaced before it is read ("stale element
    /// reference"): then it is found again, a bounded number of times.
    fn text(&self, css: &str) -> String {
        for _ in 0..5 {
            let id = self.find(css);
            let (code, v) = send(
                &self.agent,
                "GET",
                &format!("{}/element/{id}/text", self.session),
                None,
            );
            if code == 404 && v["value"]["error"] == "stale element reference" {
                continue;
            }
            assert!(code == 200, "WebDriver GET text of {css}: {code} {v}");
            return v["value"].as_str().unwrap_or_default().to_string();
        }
        panic!("{css} went stale five times in a row on {}", self.url());
    }

    fn exists(&self, css: &str) -> bool {
        !self.find_all(css).is_empty()
    }

    /// Clicks something that loads a new page (a link, a form's button) and waits for that page.
    fn click(&self, css: &str) {
        self.js("window.peaOldPage = true;");
        // A live page may swap its main part between finding and clicking: find again.
        for attempt in 0.. {
            let id = self.find(css);
            let (code, v) = send(
                &self.agent,
                "POST",
                &format!("{}/element/{id}/click", self.session),
                Some(&json!({})),
            );
            if code == 200 {
                break;
            }
            let stale = swapped(&v);
            assert!(stale && attempt < 5, "WebDriver click {css}: {code} {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
        eventually(15, &format!("the page after clicking {css}"), || {
            self.js("return window.peaOldPage === undefined && document.readyState === 'complete'")
                == json!(true)
        });
    }

    fn type_into(&self, css: &str, text: &str) {
        // As in `click`: a live page may swap its main part under the element; find again.
        for attempt in 0.. {
            let id = self.find(css);
            let mut stale = false;
            for (what, body) in [("clear", json!({})), ("value", json!({"text": text}))] {
                let (code, v) = send(
                    &self.agent,
                    "POST",
                    &format!("{}/element/{id}/{what}", self.session),
                    Some(&body),
                );
                if code != 200 {
                    stale = swapped(&v);
                    assert!(stale && attempt < 5, "WebDriver {what} {css}: {code} {v}");
                    std::thread::sleep(Duration::from_millis(100));
                    break;
                }
            }
            if !stale {
                return;
            }
        }
    }

    /// Types `text` into the focused element with WebDriver key actions ('\n' is Enter).
    fn keys(&self, text: &str) {
        let mut actions = Vec::new();
        for ch in text.chars() {
            let key = if ch == '\n' {
                "\u{E007}".to_string()
            } else {
                ch.to_string()
            };
            actions.push(json!({"type": "keyDown", "value": key}));
            actions.push(json!({"type": "keyUp", "value": key}));
        }
        self.cmd(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
    }

    /// Waits until the script `cond` (an expression) is true in the page.
    fn wait_js(&self, secs: u64, cond: &str) {
        let script = format!("return !!({cond})");
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.js(&script) == json!(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let shown = self.js("return document.body.innerText");
        panic!(
            "timed out waiting for {cond}; the page shows:\n{}",
            shown.as_str().unwrap_or_default()
        );
    }

    fn login(&self, base: &str, token: &str) {
        self.goto(&format!("{base}/dashboard/"));
        assert!(
            self.url().ends_with("/dashboard/login"),
            "not sent to the login page: {}",
            self.url()
        );
        self.type_into("#token", token);
        self.click("#login");
        assert!(
            self.url().ends_with("/dashboard/"),
            "login did not land on the overview: {} {}",
            self.url(),
            self.source()
        );
    }

    fn screenshot(&self, name: &str) {
        use base64::Engine;
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        let dir = match std::env::var_os("PEA_DASHBOARD_SCREENSHOTS") {
            Some(d) => workspace_root().join(d),
            None => std::env::temp_dir().join("pea-dashboard-screenshots"),
        };
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }
}

/// One HTTP request to chromedriver: (status, JSON answer).
fn send(agent: &ureq::Agent, method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    let resp = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        ("DELETE", _) => agent.delete(url).call(),
        (_, b) => agent
            .post(url)
            .header("content-type", "application/json")
            .send(b.map(Value::to_string).unwrap_or_else(|| "{}".into())),
    };
    let mut resp = resp.unwrap_or_else(|e| panic!("WebDriver {method} {url}: {e}"));
    let code = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap_or_else(|e| panic!("WebDriver {method} {url}: reading the answer: {e}"));
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A WebSocket upgrade request to the dashboard (TLS not verified: pea-control's own CA) with
/// a session cookie, an Origin and offered subprotocols; (status, body) of a refusal.
fn ws_probe(url: &str, cookie: &str, origin: &str, protocols: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        )
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .header("cookie", format!("pea_session={cookie}"))
        .header("origin", origin)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-protocol", protocols)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let code = resp.status().as_u16();
    (code, resp.body_mut().read_to_string().unwrap_or_default())
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = send(&self.agent, "DELETE", &self.session, None);
    }
}

/// Two Running pods guarded by a budget that allows no disruption, and a DaemonSet.
const DRAIN_OBJECTS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: guarded}
spec:
  replicas: 2
  selector: {matchLabels: {app: guarded}}
  template:
    metadata: {labels: {app: guarded}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: main, image: IMAGE, command: [sleep, "3600"], resources: {requests: {cpu: 10m, memory: 8Mi}, limits: {memory: 16Mi}}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: guarded}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: guarded}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: agent, image: IMAGE, command: [sleep, "3600"], resources: {requests: {cpu: 10m, memory: 8Mi}, limits: {memory: 16Mi}}}
"#;

/// The viewer may read pods (and their logs) in default, nothing else: no pods/exec.
const VIEWER_ROLE: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader}
rules:
- {apiGroups: [""], resources: [pods, pods/log], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: viewer-reads-pods}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: viewer}
"#;

const OBJECTS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: front}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: "nginx:1.27", ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: hunter2-not-shown}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: "<b>fast</b>"}
"#;

/// A Node object with capacity and a Ready condition and no kubelet behind it.
fn hollow_node(k: &Kubectl, name: &str) {
    k.ok_stdin(
        &["create", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}).to_string(),
    );
    let res = json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
    let status = json!({"status": {"capacity": res, "allocatable": res, "conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "hollow node",
         "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    k.ok(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
}

fn replicas(k: &Kubectl) -> String {
    k.ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.replicas}",
    ])
}

#[test]
fn dashboard_in_a_browser_against_pea_control() {
    let dir = tempfile::Builder::new()
        .prefix("pea-dashboard-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // kube-apiserver's token file format; pea-control keeps an existing one.
    std::fs::write(
        data.join("tokens.csv"),
        format!("{ADMIN_TOKEN},admin,admin,\"system:masters\"\n{VIEWER_TOKEN},viewer,viewer\n"),
    )
    .unwrap();
    let mut cmd = Command::new(workspace_binary("pea-control", "PEA_CONTROL_BIN"));
    cmd.arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"]);
    let log = dir.path().join("pea-control.log");
    let (_control, addr) = start_announcing(cmd, "pea-control listening on ", &log);
    let base = format!("https://{addr}");
    let k = Kubectl::new(&data.join("admin.kubeconfig"));
    hollow_node(&k, "node-a");
    k.ok_stdin(&["apply", "-f", "-"], OBJECTS);
    k.ok_stdin(&["apply", "-f", "-"], VIEWER_ROLE);
    eventually(30, "the Deployment's two pods", || {
        k.ok(&["get", "pods", "-l", "app=web", "-o", "name"])
            .lines()
            .count()
            == 2
    });

    let b = Browser::start(dir.path());

    // Logging in with a wrong token is refused by the API server (401), shown on the form.
    // This browser has no client certificate: the certificate login says so.
    b.goto(&format!("{base}/dashboard/login"));
    assert!(b.exists("#cert-login-none") && !b.exists("#cert-login"));
    b.type_into("#token", "not-a-token");
    b.click("#login");
    assert!(b.text("#login-error").contains("401"), "{}", b.source());

    // Admin: overview with the node, its capacity and the pods by phase.
    b.login(&base, ADMIN_TOKEN);
    let nodes = b.text("#nodes");
    assert!(
        nodes.contains("node-a") && nodes.contains("Ready") && nodes.contains("4 / 4"),
        "{nodes}"
    );
    // A node without a kubelet has no metrics: its usage cells say so, no number is made up.
    assert!(
        nodes.contains("CPU used") && nodes.contains("Memory used"),
        "{nodes}"
    );
    assert_eq!(b.text("#nodes .cpu-used"), "–");
    assert!(
        b.text("#phases").contains("Pending"),
        "{}",
        b.text("#phases")
    );
    b.screenshot("overview");

    // Workloads in default: the Deployment, its ReplicaSet and both pods.
    b.goto(&format!("{base}/dashboard/workloads?ns=default"));
    let deployments = b.text("#deployments");
    assert!(deployments.contains("web"), "{deployments}");
    let pods = b.text("#pods");
    assert_eq!(pods.matches("web-").count(), 2, "{pods}");
    assert!(
        b.text("#replicasets").contains("web-"),
        "{}",
        b.text("#replicasets")
    );
    // Live: the page watches; a pod made with kubectl appears in place, without a reload.
    b.wait_js(
        15,
        "document.body.getAttribute('data-live-state') === 'open'",
    );
    b.js("window.peaSamePage = true;");
    k.ok(&[
        "run",
        "live-pod",
        "--image=busybox:live",
        "--labels=app=live",
    ]);
    b.wait_js(
        20,
        "document.getElementById('pods').textContent.includes('live-pod')",
    );
    assert_eq!(
        b.js("return window.peaSamePage === true"),
        json!(true),
        "the page was reloaded instead of updated"
    );
    assert!(b.text("#live").contains("Live"), "{}", b.text("#live"));
    // Search narrows every list by name.
    b.goto(&format!("{base}/dashboard/workloads?ns=default&q=nomatch"));
    assert!(!b.text("#pods").contains("web-"));
    b.goto(&format!("{base}/dashboard/workloads?ns=default"));
    b.screenshot("workloads");

    // The Deployment's page (a deep link): a hostile annotation added while it is open
    // arrives through the live stream as text; nothing ran.
    b.goto(&format!("{base}/dashboard/ns/default/deployments/web"));
    b.wait_js(
        15,
        "document.body.getAttribute('data-live-state') === 'open'",
    );
    k.ok(&["annotate", "deployment", "web", &format!("evil={HOSTILE}")]);
    b.wait_js(
        20,
        "document.getElementById('annotations').textContent.includes('window.pwned=1')",
    );
    let annotations = b.text("#annotations");
    assert!(annotations.contains(HOSTILE), "{annotations}");
    let injected = b.js(
        "return [document.scripts.length, typeof window.pwned, document.querySelectorAll('#annotations img, #annotations script').length]",
    );
    assert_eq!(
        injected,
        json!([1, "undefined", 0]),
        "markup from the annotation became elements"
    );
    assert!(b
        .source()
        .contains("&lt;script&gt;window.pwned=1&lt;/script&gt;"));
    assert_eq!(b.text("#pods").matches("web-").count(), 2);
    b.screenshot("deployment");

    // Scale from the UI; kubectl agrees, and the controllers make the third pod.
    b.type_into("#replicas", "3");
    b.click("#scale");
    assert!(b.text("#flash").contains("Scaled"), "{}", b.source());
    assert_eq!(replicas(&k), "3");
    eventually(30, "a third pod", || {
        k.ok(&["get", "pods", "-l", "app=web", "-o", "name"])
            .lines()
            .count()
            == 3
    });

    // A POST without the CSRF token, from the logged-in page itself, is refused (403) and
    // changes nothing.
    let status = b.js_async(
        "fetch('/dashboard/ns/default/deployments/web/scale', {method: 'POST', body: new URLSearchParams({replicas: '7'})}).then(r => done(r.status))",
    );
    assert_eq!(status, json!(403));
    assert_eq!(replicas(&k), "3");

    // YAML view, then an edit through server-side apply.
    b.click("#yaml-link");
    let yaml = b.text("#yaml");
    assert!(
        yaml.contains("kind: Deployment") && yaml.contains("replicas: 3"),
        "{yaml}"
    );
    assert!(!yaml.contains("managedFields"), "{yaml}");
    b.screenshot("yaml");
    b.js("const t = document.getElementById('yaml-text'); t.value = t.value.replace('replicas: 3', 'replicas: 4').replace('tier: front', 'tier: edited');");
    b.click("#apply");
    assert!(b.text("#flash").contains("Applied"), "{}", b.source());
    assert_eq!(replicas(&k), "4");
    assert_eq!(
        k.ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.metadata.labels.tier}"
        ]),
        "edited"
    );
    let managers = k.ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
        "--show-managed-fields",
    ]);
    assert!(managers.contains("pea-dashboard"), "{managers}");

    // Restart rollout: the pod template gains kubectl's restartedAt annotation.
    b.goto(&format!("{base}/dashboard/ns/default/deployments/web"));
    b.click("#restart");
    assert!(
        b.text("#flash").contains("Rollout restart requested"),
        "{}",
        b.source()
    );
    let restarted = k.ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}",
    ]);
    assert!(
        restarted.starts_with("20") && restarted.ends_with('Z'),
        "{restarted:?}"
    );

    // Secrets: hidden until asked. ConfigMap values are escaped text.
    b.goto(&format!("{base}/dashboard/ns/default/secrets/creds"));
    assert!(!b.source().contains("hunter2-not-shown"));
    assert!(
        b.text("#data").contains("hidden (17 bytes)"),
        "{}",
        b.text("#data")
    );
    b.click("#reveal");
    assert!(b.text("#data").contains("hunter2-not-shown"));
    b.goto(&format!("{base}/dashboard/ns/default/secrets/creds/yaml"));
    assert!(
        !b.source().contains("aHVudGVy"),
        "the YAML view shows the secret's data"
    );
    b.goto(&format!("{base}/dashboard/ns/default/configmaps/settings"));
    assert!(b.text("#data").contains("<b>fast</b>"));
    assert!(!b.exists("#data b"));
    b.goto(&format!("{base}/dashboard/network?ns=default"));
    assert!(
        b.text("#services").contains("80/TCP"),
        "{}",
        b.text("#services")
    );

    // Cordon the node from the overview; kubectl agrees; uncordon.
    b.goto(&format!("{base}/dashboard/"));
    b.click("#nodes form button");
    assert!(b.text("#flash").contains("cordoned"));
    assert_eq!(
        k.ok(&[
            "get",
            "node",
            "node-a",
            "-o",
            "jsonpath={.spec.unschedulable}"
        ]),
        "true"
    );
    b.click("#nodes form button");
    assert_eq!(
        k.ok(&[
            "get",
            "node",
            "node-a",
            "-o",
            "jsonpath={.spec.unschedulable}"
        ]),
        ""
    );

    // A pod's page: containers, conditions, and logs (a hollow pod has none: the error shows).
    let pod = k.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    b.goto(&format!("{base}/dashboard/ns/default/pods/{pod}"));
    assert!(b.text("#containers").contains("nginx:1.27"));
    b.screenshot("pod");
    b.click("#logs-link");
    assert!(b.source().contains("Logs of pod"), "{}", b.source());

    k.ok(&["run", "target-pod", "--image=busybox:target"]);

    // Delete with confirmation.
    b.goto(&format!("{base}/dashboard/ns/default/deployments/web"));
    b.click("#delete-link");
    assert!(b.source().contains("Delete Deployment default/web?"));
    b.screenshot("delete");
    b.click("#confirm-delete");
    assert!(b.text("#flash").contains("Deleted"));
    let gone = k.run(&["get", "deployment", "web"]);
    assert!(!gone.status.success() && String::from_utf8_lossy(&gone.stderr).contains("NotFound"));

    // A user the API server does not authorize: every read shows the 403, and so does a write.
    b.click("#logout");
    assert!(b.url().ends_with("/dashboard/login"));
    b.goto(&format!("{base}/dashboard/workloads"));
    assert!(
        b.url().ends_with("/dashboard/login"),
        "still logged in after logout"
    );
    b.login(&base, VIEWER_TOKEN);
    assert!(
        b.text("#nodes .error").contains("403 Forbidden"),
        "{}",
        b.source()
    );
    b.goto(&format!("{base}/dashboard/workloads?ns=default"));
    assert!(b.text("#deployments .error").contains("403 Forbidden"));
    assert!(
        b.text("#pods").contains("target-pod"),
        "{}",
        b.text("#pods")
    );
    b.screenshot("forbidden");
    // The viewer may read the pod but not exec into it: the terminal shows kube's 403.
    b.goto(&format!(
        "{base}/dashboard/ns/default/pods/live-pod/terminal"
    ));
    b.wait_js(
        15,
        "document.getElementById('term').getAttribute('data-state') === 'refused'",
    );
    let state = b.text("#term-state");
    assert!(state.contains("403 Forbidden"), "{state}");
    // A terminal's WebSocket upgrade with the session's cookie but from another origin, or
    // without the CSRF subprotocol, is refused before anything is opened.
    let cookie = b.cmd("GET", "/cookie/pea_session", None)["value"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let csrf = b.js("return document.getElementById('term').getAttribute('data-csrf')");
    let csrf = csrf.as_str().unwrap_or_default();
    let exec = format!("{base}/dashboard/ns/default/pods/target-pod/exec");
    let good = format!("pea.terminal, csrf.{csrf}");
    let (code, text) = ws_probe(&exec, &cookie, "https://evil.example", &good);
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("own pages"), "{text}");
    let (code, text) = ws_probe(&exec, &cookie, &base, "pea.terminal");
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("CSRF"), "{text}");
    let refused = b.js_async(
        "const csrf = document.querySelector('input[name=csrf]').value; fetch('/dashboard/nodes/node-a/cordon', {method: 'POST', body: new URLSearchParams({csrf, unschedulable: 'true'})}).then(async r => done([r.status, await r.text()]))",
    );
    assert_eq!(refused[0], json!(403), "{refused}");
    assert!(
        refused[1].as_str().unwrap_or("").contains("403 Forbidden"),
        "{refused}"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "node",
            "node-a",
            "-o",
            "jsonpath={.spec.unschedulable}"
        ]),
        ""
    );

    // The standalone binary against the same API server, over plain HTTP on loopback.
    let mut cmd = Command::new(workspace_binary("pea-dashboard", "PEA_DASHBOARD_BIN"));
    cmd.arg("--kubeconfig")
        .arg(data.join("admin.kubeconfig"))
        .args(["--listen", "127.0.0.1:0"]);
    let dlog = dir.path().join("pea-dashboard.log");
    let (_dashboard, url) = start_announcing(cmd, "pea-dashboard listening on ", &dlog);
    let standalone = url.trim_end_matches("/dashboard/").to_string();
    // Plain HTTP: no client certificate can come, and the login page says where it can.
    b.goto(&format!("{standalone}/dashboard/login"));
    assert!(
        b.text("#cert-login-unavailable")
            .contains("not available here"),
        "{}",
        b.source()
    );
    b.login(&standalone, ADMIN_TOKEN);
    assert!(b.text("#nodes").contains("node-a"));
    // Neither server logged a token.
    for l in [&log, &dlog] {
        let text = read(l);
        assert!(
            !text.contains(ADMIN_TOKEN) && !text.contains(VIEWER_TOKEN),
            "a token in {}",
            l.display()
        );
    }
}

/// Forwards 127.0.0.1:PORT of the test's network namespace to 127.0.0.1:`target` inside
/// `netns` (each connection made from a thread that entered it), so the browser reaches a
/// pea-control that listens only on a node's loopback. Stops accepting when dropped.
struct Forward {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Forward {
    fn start(netns: &Path, target: u16) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind forwarder");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let netns = netns.to_path_buf();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let (client, _) = match listener.accept() {
                    Ok(c) => c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    Err(_) => break,
                };
                let _ = client.set_nonblocking(false);
                let server = pea_tests::fixtures::registry::in_netns(Some(&netns), || {
                    std::net::TcpStream::connect(("127.0.0.1", target))
                });
                let Ok(server) = server else { continue };
                for (mut from, mut to) in [
                    (
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Forward { port, stop }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A pod that says one line at start and then one line whenever /tmp/say holds one.
const TALKER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: talker, labels: {app: talker}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: IMAGE
    command: [sh, -c, 'echo talker-started; while true; do if [ -f /tmp/say ]; then cat /tmp/say; rm /tmp/say; fi; sleep 0.2; done']
    resources: {requests: {cpu: 50m, memory: 16Mi}, limits: {cpu: 200m, memory: 32Mi}}
"#;

#[test]
fn dashboard_follows_logs_and_opens_a_terminal_on_a_real_node() {
    pea_tests::privileged::require_root();
    let opts = pea_tests::kubelet_node::NodeOptions {
        control_args: vec!["--metric-resolution".into(), "2s".into()],
        kubelet_log_filter: "info".into(),
        shim_log_filter: "info".into(),
        ..Default::default()
    };
    let mut n = pea_tests::kubelet_node::KubeletNode::with("dash-node", &opts).expect("node");
    n.start_kubelet().expect("kubelet");
    n.apply(&TALKER.replace("IMAGE", &n.image));
    n.wait_pod("talker", Duration::from_secs(60), |p| {
        p["status"]["phase"] == "Running"
    });
    let token = read(&n.dir.path().join("control/tokens.csv"))
        .split(',')
        .next()
        .unwrap_or_default()
        .to_string();
    let fwd = Forward::start(&n.node.netns.path(), pea_tests::kubelet_node::API_PORT);
    let base = format!("https://127.0.0.1:{}", fwd.port);
    let dir = tempfile::Builder::new()
        .prefix("pea-dashboard-node-")
        .tempdir()
        .unwrap();
    let b = Browser::start(dir.path());
    b.login(&base, &token);

    // Follow the log: the start line (from the tail), then a line written after the page
    // opened, streamed without a reload.
    b.goto(&format!(
        "{base}/dashboard/ns/default/pods/talker/logs?tailLines=100&timestamps=1"
    ));
    b.wait_js(
        20,
        "document.getElementById('log').textContent.includes('talker-started')",
    );
    assert!(
        b.text("#log-state").contains("Following"),
        "{}",
        b.text("#log-state")
    );
    b.js("window.peaSamePage = true;");
    n.ok(&[
        "exec",
        "talker",
        "--",
        "sh",
        "-c",
        "echo written-after-open > /tmp/say",
    ]);
    b.wait_js(
        20,
        "document.getElementById('log').textContent.includes('written-after-open')",
    );
    assert_eq!(b.js("return window.peaSamePage === true"), json!(true));
    // Timestamps were asked for: each line starts with one (RFC 3339).
    let first = b.js("return document.querySelector('#log .line').textContent");
    assert!(
        first
            .as_str()
            .is_some_and(|l| l.starts_with("20") && l.contains('T')),
        "{first}"
    );
    b.screenshot("logs");

    // Charts: the pod's and the node's CPU and memory from metrics.k8s.io, sampled while the
    // page is open (pea-control scrapes the kubelet every 2 s here).
    b.goto(&format!("{base}/dashboard/ns/default/pods/talker"));
    b.wait_js(
        45,
        "[...document.querySelectorAll('#metrics svg.spark')].filter(s => +s.getAttribute('data-points') >= 2).length === 2",
    );
    let mem = b.text("#memory-now");
    assert!(mem.ends_with("Mi") && !mem.starts_with("0.0"), "{mem}");
    assert!(b.text("#cpu-now").ends_with('m'), "{}", b.text("#cpu-now"));
    let points = b.js("return document.querySelector('#metrics polyline').getAttribute('points').split(' ').length");
    assert!(points.as_u64().is_some_and(|p| p >= 2), "{points}");
    b.screenshot("pod-metrics");
    b.goto(&format!("{base}/dashboard/nodes/dash-node"));
    b.wait_js(20, "document.querySelector('#metrics svg.spark') !== null");
    assert!(
        b.text("#memory-now").ends_with("Mi"),
        "{}",
        b.text("#metrics")
    );
    // The overview: the node's usage (share of allocatable) beside allocatable / capacity.
    b.goto(&format!("{base}/dashboard/"));
    let cpu = b.text("#nodes .cpu-used");
    let mem = b.text("#nodes .memory-used");
    assert!(cpu.contains("m (") && cpu.ends_with("%)"), "{cpu}");
    assert!(mem.contains("Mi (") && mem.ends_with("%)"), "{mem}");
    b.screenshot("overview-usage");

    // The terminal: a shell in the container, a command typed, its output drawn.
    b.goto(&format!("{base}/dashboard/ns/default/pods/talker/terminal"));
    b.wait_js(
        20,
        "document.getElementById('term').getAttribute('data-state') === 'connected'",
    );
    b.js("document.getElementById('term').focus()");
    b.keys("echo $((6*7))-from-the-terminal\n");
    b.wait_js(
        20,
        "document.getElementById('term').textContent.includes('42-from-the-terminal')",
    );
    // What the shell writes to its stdout through the terminal reaches the followed log too.
    b.keys("echo typed-in-terminal > /tmp/say\n");
    b.screenshot("terminal");
    b.keys("exit 3\n");
    b.wait_js(
        20,
        "document.getElementById('term').getAttribute('data-state') === 'exited'",
    );
    assert_eq!(
        b.js("return document.getElementById('term').getAttribute('data-exit')"),
        json!("3")
    );
    let logs = n.ok(&["logs", "talker"]);
    assert!(logs.contains("typed-in-terminal"), "{logs}");

    // Drain the node from its page: cordoned, the DaemonSet's pod skipped, the bare pod
    // evicted, the guarded pods refused by their budget (429, retried with backoff) until the
    // budget is deleted.
    n.apply(&DRAIN_OBJECTS.replace("IMAGE", &n.image));
    let running = |label: &str, count: usize| {
        let out = n.ok(&[
            "get",
            "pods",
            "-l",
            label,
            "-o",
            "jsonpath={.items[*].status.containerStatuses[0].ready}",
        ]);
        out.split_whitespace().filter(|r| *r == "true").count() == count
    };
    eventually(90, "the guarded pods and the agent ready", || {
        running("app=guarded", 2) && running("app=agent", 1)
    });
    eventually(30, "the budget's status", || {
        n.ok(&[
            "get",
            "pdb",
            "guarded",
            "-o",
            "jsonpath={.status.currentHealthy}",
        ]) == "2"
    });
    b.goto(&format!("{base}/dashboard/nodes/dash-node"));
    b.click("#drain-link");
    b.click("#confirm-drain");
    assert!(
        b.url().ends_with("/dashboard/nodes/dash-node/drain"),
        "{}",
        b.url()
    );
    b.wait_js(
        30,
        "document.getElementById('drain-log').textContent.includes('retrying in 2 s')",
    );
    let drained = b.text("#drain-log");
    assert!(drained.contains("node dash-node cordoned"), "{drained}");
    assert!(drained.contains("DaemonSet pod, skipped"), "{drained}");
    assert!(drained.contains("429 Too Many Requests"), "{drained}");
    assert!(
        !drained.contains("drained:"),
        "evicted despite the budget: {drained}"
    );
    b.screenshot("drain");
    n.ok(&["delete", "pdb", "guarded"]);
    b.wait_js(
        60,
        "document.querySelector('#drain[data-finished=true]') !== null",
    );
    let drained = b.text("#drain-log");
    assert!(drained.contains("drained: 3 pods evicted"), "{drained}");
    assert!(drained.contains("default/talker: evicted"), "{drained}");
    assert_eq!(
        n.ok(&[
            "get",
            "node",
            "dash-node",
            "-o",
            "jsonpath={.spec.unschedulable}"
        ]),
        "true"
    );
    drop(b);
    drop(fwd);
}

/// What the certificate user may do: read Deployments and pods in default (bound to the
/// certificate's O, so the group has to reach the authorizer), nothing else.
const CERT_VIEWER_ROLE: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: workload-reader}
rules:
- {apiGroups: [apps], resources: [deployments, replicasets], verbs: [get, list, watch]}
- {apiGroups: [""], resources: [pods, events], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: viewers-read-workloads}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: workload-reader}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: viewers}
"#;

/// The client-certificate login: the browser holds a certificate for CN=alice/O=viewers issued
/// by pea-control's CA (`pea-control kubeconfig`), pea-control's TLS listener verifies it, the
/// login page offers it, and the session acts as alice: her group's Role lets her read the
/// Deployment, and a scale is refused by the API server (403 naming alice, shown), with
/// kubectl seeing nothing changed. The session cookie without the certificate is worth nothing.
#[test]
fn dashboard_logs_in_with_a_client_certificate() {
    use base64::Engine;
    let dir = tempfile::Builder::new()
        .prefix("pea-dashboard-cert-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let control = workspace_binary("pea-control", "PEA_CONTROL_BIN");
    let mut cmd = Command::new(&control);
    cmd.arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"]);
    let log = dir.path().join("pea-control.log");
    let (_control, addr) = start_announcing(cmd, "pea-control listening on ", &log);
    let base = format!("https://{addr}");
    let k = Kubectl::new(&data.join("admin.kubeconfig"));
    hollow_node(&k, "node-c");
    k.ok_stdin(&["apply", "-f", "-"], OBJECTS);
    k.ok_stdin(&["apply", "-f", "-"], CERT_VIEWER_ROLE);
    eventually(30, "the Deployment's two pods", || {
        k.ok(&["get", "pods", "-l", "app=web", "-o", "name"])
            .lines()
            .count()
            == 2
    });

    // alice's certificate, as an administrator hands it out, turned into a PKCS#12 file.
    let kc = dir.path().join("alice.kubeconfig");
    let out = Command::new(&control)
        .arg("kubeconfig")
        .arg("--data-dir")
        .arg(&data)
        .args(["--user", "alice", "--group", "viewers", "--server", &base])
        .arg("--out")
        .arg(&kc)
        .output()
        .expect("pea-control kubeconfig");
    assert!(out.status.success(), "{out:?}");
    let alice = Kubectl::new(&kc);
    alice.ok(&["get", "deployment", "web"]);
    let pem = |key: &str| {
        let b64 = alice.ok(&[
            "config",
            "view",
            "--raw",
            "-o",
            &format!("jsonpath={{.users[0].user.{key}}}"),
        ]);
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .expect("base64")
    };
    let (crt, key, p12) = (
        dir.path().join("alice.crt"),
        dir.path().join("alice.key"),
        dir.path().join("alice.p12"),
    );
    std::fs::write(&crt, pem("client-certificate-data")).unwrap();
    std::fs::write(&key, pem("client-key-data")).unwrap();
    let out = Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:", "-in"])
        .arg(&crt)
        .arg("-inkey")
        .arg(&key)
        .arg("-out")
        .arg(&p12)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{out:?}");

    let b = Browser::start_with(
        dir.path(),
        Some(ClientCert {
            p12: &p12,
            origin: &base,
        }),
    );
    b.goto(&format!("{base}/dashboard/"));
    assert!(b.url().ends_with("/dashboard/login"), "{}", b.url());
    assert_eq!(b.text("#cert-subject"), "CN=alice/O=viewers");
    b.screenshot("certificate-login");
    b.click("#cert-login");
    assert!(b.url().ends_with("/dashboard/"), "{}", b.source());
    // As alice: nodes are not hers to list (403 shown), her Deployment is.
    let nodes = b.text("#nodes .error");
    assert!(
        nodes.contains("403 Forbidden") && nodes.contains("alice"),
        "{nodes}"
    );
    b.goto(&format!("{base}/dashboard/ns/default/deployments/web"));
    assert!(b.text("h1").contains("web"), "{}", b.source());
    b.type_into("#replicas", "5");
    b.click("#scale");
    let refusal = b.text(".error");
    assert!(
        refusal.contains("403 Forbidden") && refusal.contains("alice"),
        "{refusal}"
    );
    b.screenshot("certificate-forbidden");
    assert_eq!(
        replicas(&k),
        "2",
        "the refused scale changed the Deployment"
    );

    // The session's cookie on a connection without the certificate: back to the login page.
    let cookie = b.cmd("GET", "/cookie/pea_session", None)["value"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!cookie.is_empty());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(20)))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        )
        .build()
        .into();
    let resp = agent
        .get(format!("{base}/dashboard/ns/default/deployments/web"))
        .header("cookie", format!("pea_session={cookie}"))
        .call()
        .expect("GET without the certificate");
    assert_eq!(resp.status().as_u16(), 303);
    let to = resp
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default();
    assert!(to.ends_with("/dashboard/login"), "{to}");
    // The browser, with its certificate, is still logged in.
    b.goto(&format!("{base}/dashboard/ns/default/deployments/web"));
    assert!(b.url().ends_with("/deployments/web"), "{}", b.url());
    drop(b);
}

/// Whether a WebDriver error means the live page swapped the element out between finding and
/// using it: gone ("stale element reference") or, mid-swap, present but not yet usable ("element
/// not interactable", seen under load on 2026-12-07). Either way: find it again.
fn swapped(v: &Value) -> bool {
    matches!(
        v["value"]["error"].as_str(),
        Some("stale element reference" | "element not interactable")
    )
}

//! bench-control: pod creates/s (1 and 32 clients), a 10 000-pod list and watch event latency
//! with 100 watchers, on pea-control's embedded store and on etcd, beside etcd's own raw write
//! rate (and the raw embedded store) measured in the same run. Bounded in count and time;
//! prints Markdown tables; also custom resource (CronTab) creates vs pod creates in one server.
//! Usage: bench-control [--creates N] [--list-size N] [--watchers N] [--authz-only] [--crd-only]
//! [--no-admission-caches] (`--authz-only --crd-only`: both comparisons, nothing else)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::BodyExt;
use pea_control_store::{sqlite::SqliteStore, Store};
use pea_tests::bench::{fmt_duration, table, Samples};
use pea_tests::control::{Backend, ControlPlane};
use pea_tests::control_client::{tls_connector, tls_connector_with_cert, ApiClient};
use pea_tests::control_etcd::Etcd;

#[derive(Debug, Parser)]
struct Args {
    /// Creates per phase (split across clients in the 32-client phase).
    #[arg(long, default_value_t = 3200)]
    creates: usize,
    /// Pods in the namespace for the list measurement.
    #[arg(long, default_value_t = 10_000)]
    list_size: usize,
    /// Concurrent watchers.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Events each watcher should see.
    #[arg(long, default_value_t = 200)]
    watch_events: usize,
    /// Roles and as many RoleBindings in the store for the authorization comparison.
    #[arg(long, default_value_t = 1000)]
    authz_fill: usize,
    /// Run only the authorization comparison (RBAC vs AlwaysAllow).
    #[arg(long)]
    authz_only: bool,
    /// Run only the custom resource comparison (CronTab creates vs pod creates).
    #[arg(long)]
    crd_only: bool,
    /// Admission reads its configuration objects from the store on every write instead of
    /// its watch-fed caches, in the main phases (the before/after comparison of issue 20).
    #[arg(long)]
    no_admission_caches: bool,
}

/// Throughput of one phase.
#[derive(Debug)]
struct Rate {
    subject: String,
    clients: usize,
    ops: usize,
    elapsed: Duration,
}

impl Rate {
    fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

fn rate_table(title: &str, rows: &[Rate], anchor: &str) -> String {
    let anchor_rate = rows.iter().find(|r| r.subject == anchor).map(Rate::per_sec);
    let mut out = format!("### {title}\n\n| subject | clients | ops | elapsed | ops/s | ratio to {anchor} |\n|---|---|---|---|---|---|\n");
    for r in rows {
        let ratio = anchor_rate
            .map(|a| format!("{:.2}×", r.per_sec() / a))
            .unwrap_or_else(|| "–".into());
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {} |\n",
            r.subject,
            r.clients,
            r.ops,
            fmt_duration(r.elapsed),
            r.per_sec(),
            ratio
        ));
    }
    out
}

fn pod_body(name: &str) -> Vec<u8> {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}
    })
    .to_string()
    .into_bytes()
}

const DEADLINE: Duration = Duration::from_secs(60);

/// `total` requests across `clients` connections made with `connector` (a user's client
/// certificate): pod creates (`get` false) or gets of one pod. The phase rate.
async fn requests_as(
    cp: &ControlPlane,
    connector: &tokio_rustls::TlsConnector,
    subject: &str,
    get: bool,
    total: usize,
    clients: usize,
) -> Result<Rate> {
    let mut connected = Vec::with_capacity(clients);
    for _ in 0..clients {
        connected.push(ApiClient::connect(cp.addr, connector, "").await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, mut client) in connected.into_iter().enumerate() {
        let n = total / clients;
        let subject = subject.to_string();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            for i in 0..n {
                if started.elapsed() > DEADLINE {
                    break;
                }
                let (code, body) = if get {
                    client
                        .call("GET", "/api/v1/namespaces/default/pods/authz-target", None)
                        .await?
                } else {
                    let name = format!("authz-{}-{c}-{i}", subject.replace(' ', "-"));
                    client
                        .call(
                            "POST",
                            "/api/v1/namespaces/default/pods",
                            Some(pod_body(&name)),
                        )
                        .await?
                };
                if code != 200 && code != 201 {
                    bail!("{subject}: {code}: {}", String::from_utf8_lossy(&body));
                }
                done += 1;
            }
            Ok::<_, anyhow::Error>(done)
        }));
    }
    let mut ops = 0;
    for t in tasks {
        ops += t.await??;
    }
    Ok(Rate {
        subject: subject.into(),
        clients,
        ops,
        elapsed: started.elapsed(),
    })
}

/// Pod creates and gets by a non-admin user (`bench`), on a server with RBAC on and `fill`
/// Roles and RoleBindings for other users beside the one that grants it, and on one with
/// authorization off (AlwaysAllow), same run, alternating.
fn authz_comparison(rt: &tokio::runtime::Runtime, fill: usize, total: usize) -> Result<Vec<Rate>> {
    let rbac = ControlPlane::start(Backend::Embedded)?;
    let off = ControlPlane::start_with(Backend::Embedded, |c| {
        c.authorization_mode = "AlwaysAllow".into()
    })?;
    let mut rows = Vec::new();
    rt.block_on(async {
        for cp in [&rbac, &off] {
            let admin = tls_connector(&cp.running().pki.ca.cert_pem)?;
            let mut a = ApiClient::connect(cp.addr, &admin, &cp.running().admin_token).await?;
            let (code, body) = a
                .call("POST", "/api/v1/namespaces/default/pods", Some(pod_body("authz-target")))
                .await?;
            if code != 201 {
                bail!("target pod: {code}: {}", String::from_utf8_lossy(&body));
            }
        }
        let admin = tls_connector(&rbac.running().pki.ca.cert_pem)?;
        let mut a = ApiClient::connect(rbac.addr, &admin, &rbac.running().admin_token).await?;
        let rbac_path = "/apis/rbac.authorization.k8s.io/v1/namespaces/default";
        let rule = serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get"]}]);
        for i in 0..=fill {
            // The last pair is the bench user's; the others name other users.
            let (name, who) = if i == fill {
                ("bench".to_string(), "bench".to_string())
            } else {
                (format!("filler-{i}"), format!("user-{i}"))
            };
            let role = serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": name}, "rules": rule});
            let binding = serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": who}]});
            for (kind, obj) in [("roles", role), ("rolebindings", binding)] {
                let (code, body) = a
                    .call("POST", &format!("{rbac_path}/{kind}"), Some(obj.to_string().into_bytes()))
                    .await?;
                if code != 201 {
                    bail!("{kind} {name}: {code}: {}", String::from_utf8_lossy(&body));
                }
            }
        }
        let user = |cp: &ControlPlane| -> Result<tokio_rustls::TlsConnector> {
            let pki = &cp.running().pki;
            let pair = pki.issue_client("bench", &["bench-group"])?;
            tls_connector_with_cert(&pki.ca.cert_pem, &pair.cert_pem, &pair.key_pem)
        };
        let (on, off_c) = (user(&rbac)?, user(&off)?);
        let on_label = format!("RBAC on ({fill} Roles + {fill} RoleBindings)");
        for round in 0..2 {
            for get in [false, true] {
                let what = if get { "gets" } else { "creates" };
                let mut r = requests_as(&off, &off_c, &format!("off {what} {round}"), get, total, 32).await?;
                r.subject = format!("AlwaysAllow, pod {what}");
                rows.push(r);
                let mut r = requests_as(&rbac, &on, &format!("on {what} {round}"), get, total, 32).await?;
                r.subject = format!("{on_label}, pod {what}");
                rows.push(r);
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(rows)
}

/// `total` pod creates across `clients` connections; per-request latencies and the phase rate.
async fn creates(
    cp: &ControlPlane,
    subject: &str,
    prefix: &str,
    total: usize,
    clients: usize,
) -> Result<(Samples, Rate)> {
    creates_at(cp, subject, prefix, POD_PATH, pod_body, total, clients).await
}

const POD_PATH: &str = "/api/v1/namespaces/default/pods";
const CRONTAB_PATH: &str = "/apis/stable.example.com/v1/namespaces/default/crontabs";

/// A CRD shaped like an operator's: a structural schema with defaults, a pattern, bounds and
/// an enum, status and scale subresources, printer columns.
fn crontab_crd() -> Vec<u8> {
    serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {"group": "stable.example.com", "scope": "Namespaced",
            "names": {"plural": "crontabs", "kind": "CronTab", "shortNames": ["ct"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                    "statusReplicasPath": ".status.replicas"}},
                "additionalPrinterColumns": [{"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"}],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["cronSpec"], "properties": {
                        "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                        "image": {"type": "string", "maxLength": 64},
                        "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                        "mode": {"type": "string", "enum": ["Fast", "Slow"], "default": "Slow"}}},
                    "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}}}]}
    })
    .to_string()
    .into_bytes()
}

fn crontab_body(name: &str) -> Vec<u8> {
    serde_json::json!({
        "apiVersion": "stable.example.com/v1", "kind": "CronTab",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"cronSpec": "*/5 * * * *", "image": "busybox:1.36"}
    })
    .to_string()
    .into_bytes()
}

/// Custom resource creates vs pod creates on one embedded-store server, 32 clients, two
/// alternating rounds each.
fn crd_comparison(rt: &tokio::runtime::Runtime, total: usize) -> Result<Vec<Rate>> {
    let cp = ControlPlane::start(Backend::Embedded).context("start control plane")?;
    rt.block_on(async {
        let connector = tls_connector(&cp.running().pki.ca.cert_pem)?;
        let mut c = ApiClient::connect(cp.addr, &connector, &cp.running().admin_token).await?;
        let (code, body) = c
            .call(
                "POST",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                Some(crontab_crd()),
            )
            .await?;
        if code != 201 {
            bail!(
                "creating the CRD returned {code}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let mut rows = Vec::new();
        for round in 0..2 {
            let (_, r) = creates_at(
                &cp,
                "pod creates",
                &format!("p{round}"),
                POD_PATH,
                pod_body,
                total,
                32,
            )
            .await?;
            rows.push(r);
            let (_, r) = creates_at(
                &cp,
                "CronTab creates",
                &format!("c{round}"),
                CRONTAB_PATH,
                crontab_body,
                total,
                32,
            )
            .await?;
            rows.push(r);
        }
        Ok(rows)
    })
}

fn crd_table(rows: &[Rate]) -> String {
    let rate = |what: &str| {
        let picked: Vec<&Rate> = rows.iter().filter(|r| r.subject == what).collect();
        picked.iter().map(|r| r.ops as f64).sum::<f64>()
            / picked.iter().map(|r| r.elapsed.as_secs_f64()).sum::<f64>()
    };
    let mut out = rate_table(
        "Custom resource creates/s vs pod creates/s, 32 clients, embedded store (2 rounds each, alternating)",
        &rows.iter().map(|r| Rate { subject: r.subject.clone(), clients: r.clients, ops: r.ops, elapsed: r.elapsed }).collect::<Vec<_>>(),
        "pod creates",
    );
    out.push_str(&format!(
        "\nCronTab creates / pod creates, both rounds: {:.2}× (target ≥ 0.9×)\n",
        rate("CronTab creates") / rate("pod creates")
    ));
    out
}

/// `total` creates of `body(name)` at `path` across `clients` connections.
async fn creates_at(
    cp: &ControlPlane,
    subject: &str,
    prefix: &str,
    path: &'static str,
    body: fn(&str) -> Vec<u8>,
    total: usize,
    clients: usize,
) -> Result<(Samples, Rate)> {
    let connector = tls_connector(&cp.running().pki.ca.cert_pem)?;
    let token = cp.running().admin_token.clone();
    // Connections (TCP + TLS handshakes) are opened before the clock starts, as the etcd anchor's
    // client is: the phase measures creates over kept-alive connections, like kube clients do.
    let mut connected = Vec::with_capacity(clients);
    for _ in 0..clients {
        connected.push(ApiClient::connect(cp.addr, &connector, &token).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, mut client) in connected.into_iter().enumerate() {
        let prefix = format!("{prefix}-{c}");
        let n = total / clients;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                if started.elapsed() > DEADLINE {
                    break;
                }
                let t = Instant::now();
                let (code, body) = client
                    .call("POST", path, Some(body(&format!("{prefix}-{i}"))))
                    .await?;
                if code != 201 {
                    bail!("create returned {code}: {}", String::from_utf8_lossy(&body));
                }
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut samples = Samples::new(subject);
    for t in tasks {
        for d in t.await?? {
            samples.push(d);
        }
    }
    let elapsed = started.elapsed();
    let ops = samples.durations.len();
    Ok((
        samples,
        Rate {
            subject: subject.into(),
            clients,
            ops,
            elapsed,
        },
    ))
}

async fn list_pods(cp: &ControlPlane, subject: &str, rounds: usize) -> Result<(Samples, usize)> {
    let connector = tls_connector(&cp.running().pki.ca.cert_pem)?;
    let mut client = ApiClient::connect(cp.addr, &connector, &cp.running().admin_token).await?;
    let mut s = Samples::new(subject);
    let mut count = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let (code, body) = client
            .call("GET", "/api/v1/namespaces/default/pods", None)
            .await?;
        s.push(t.elapsed());
        if code != 200 {
            bail!("list returned {code}: {}", String::from_utf8_lossy(&body));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        count = v["items"].as_array().map(Vec::len).unwrap_or(0);
    }
    Ok((s, count))
}

/// `watchers` watches from the current revision; `events` creates; latency from sending the
/// create to each watcher reading its ADDED event.
async fn watch_latency(
    cp: &ControlPlane,
    subject: &str,
    watchers: usize,
    events: usize,
) -> Result<Samples> {
    let connector = tls_connector(&cp.running().pki.ca.cert_pem)?;
    let token = cp.running().admin_token.clone();
    let mut c = ApiClient::connect(cp.addr, &connector, &token).await?;
    let (_, body) = c
        .call("GET", "/api/v1/namespaces/default/pods?limit=1", None)
        .await?;
    let rv = serde_json::from_slice::<serde_json::Value>(&body)?["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let mut w = ApiClient::connect(cp.addr, &connector, &token).await?;
        let resp = w
            .send("GET", &format!("/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}&labelSelector=app%3Dwatch&timeoutSeconds=60"), None)
            .await?;
        let (sent, latencies) = (sent.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let mut body = resp.into_body();
            let mut buf = Vec::new();
            let mut seen = 0;
            while seen < events {
                let Some(frame) = body.frame().await else {
                    break;
                };
                let Ok(frame) = frame else { break };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                let now = Instant::now();
                buf.extend_from_slice(&data);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let Ok(ev) = serde_json::from_slice::<serde_json::Value>(&line) else {
                        continue;
                    };
                    if let Some(name) = ev["object"]["metadata"]["name"].as_str() {
                        if let Some(t) = sent.lock().unwrap().get(name) {
                            latencies.lock().unwrap().push(now - *t);
                        }
                        seen += 1;
                    }
                }
            }
            Bytes::new()
        }));
    }
    // Let every watch register before the first write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..events {
        let name = format!("watch-{i}");
        let body = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "watch"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
        sent.lock().unwrap().insert(name.clone(), Instant::now());
        let (code, _) = c
            .call(
                "POST",
                "/api/v1/namespaces/default/pods",
                Some(body.to_string().into_bytes()),
            )
            .await?;
        if code != 201 {
            bail!("watch create returned {code}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    let mut s = Samples::new(subject);
    s.durations = latencies.lock().unwrap().clone();
    s.note = Some(format!("{watchers} watchers × {events} events"));
    Ok(s)
}

/// Raw store writes: `total` creates over `writers` tasks on one store.
async fn raw_writes(
    store: Arc<dyn Store>,
    subject: &str,
    prefix: &str,
    total: usize,
    writers: usize,
) -> Result<(Samples, Rate)> {
    let started = Instant::now();
    let value = pod_body("raw");
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, value, prefix) = (store.clone(), value.clone(), prefix.to_string());
        let n = total / writers;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                if started.elapsed() > DEADLINE {
                    break;
                }
                let t = Instant::now();
                store
                    .create(&format!("/raw/{prefix}/{w}/{i}"), value.clone())
                    .await?;
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut s = Samples::new(subject);
    for t in tasks {
        for d in t.await?? {
            s.push(d);
        }
    }
    let rate = Rate {
        subject: subject.into(),
        clients: writers,
        ops: s.durations.len(),
        elapsed: started.elapsed(),
    };
    Ok((s, rate))
}

/// etcd's own write rate: plain puts through its client, no transaction.
async fn etcd_puts(
    endpoint: &str,
    subject: &str,
    total: usize,
    writers: usize,
) -> Result<(Samples, Rate)> {
    let client = etcd_client::Client::connect([endpoint], None).await?;
    let started = Instant::now();
    let value = pod_body("raw");
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (mut kv, value) = (client.kv_client(), value.clone());
        let n = total / writers;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                if started.elapsed() > DEADLINE {
                    break;
                }
                let t = Instant::now();
                kv.put(format!("/etcdraw/{writers}/{w}/{i}"), value.clone(), None)
                    .await?;
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut s = Samples::new(subject);
    for t in tasks {
        for d in t.await?? {
            s.push(d);
        }
    }
    let rate = Rate {
        subject: subject.into(),
        clients: writers,
        ops: s.durations.len(),
        elapsed: started.elapsed(),
    };
    Ok((s, rate))
}

/// One GC sweep over everything stored (about `list_size` pods), 3 rounds, beside its floor:
/// listing every resource prefix from the same store.
fn gc_sweep(cp: &ControlPlane, label: &str) -> Result<Vec<Samples>> {
    let api = cp.api();
    let objects = cp.block_on(async {
        let mut n = 0;
        for def in api.resources.all() {
            n += api
                .store
                .list(&def.prefix(None), &Default::default())
                .await?
                .items
                .len();
        }
        Ok::<_, anyhow::Error>(n)
    })?;
    let mut sweep = Samples::new(label);
    sweep.note = Some(format!("{objects} objects"));
    let mut list = Samples::new(format!("{label}: list every resource"));
    for _ in 0..3 {
        let t = Instant::now();
        cp.block_on(async {
            for def in api.resources.all() {
                api.store
                    .list(&def.prefix(None), &Default::default())
                    .await?;
            }
            Ok::<_, anyhow::Error>(())
        })?;
        list.push(t.elapsed());
        let t = Instant::now();
        cp.block_on(pea_control::gc_sweep::Sweeper::default().sweep(&api));
        sweep.push(t.elapsed());
    }
    Ok(vec![list, sweep])
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (mut seq_lat, mut par_lat, mut list_lat, mut watch_lat) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut seq_rate, mut par_rate) = (Vec::new(), Vec::new());
    let mut sweep_lat = Vec::new();
    // Both flags: the two issue-20 comparisons in one run, nothing else.
    let authz_rows = if args.crd_only && !args.authz_only {
        Vec::new()
    } else {
        authz_comparison(&rt, args.authz_fill, args.creates)?
    };
    let authz_table = |rows: &[Rate]| {
        let mut out = String::new();
        for what in ["creates", "gets"] {
            let picked: Vec<&Rate> = rows.iter().filter(|r| r.subject.ends_with(what)).collect();
            let anchor = format!("AlwaysAllow, pod {what}");
            let sum = |on: bool| -> f64 {
                let rs: Vec<&&Rate> = picked
                    .iter()
                    .filter(|r| (r.subject == anchor) != on)
                    .collect();
                rs.iter().map(|r| r.ops as f64).sum::<f64>()
                    / rs.iter().map(|r| r.elapsed.as_secs_f64()).sum::<f64>()
            };
            out.push_str(&rate_table(
                &format!("Authorization: pod {what}/s, 32 clients, a non-admin user (2 rounds each, alternating)"),
                &picked.iter().map(|r| Rate { subject: r.subject.clone(), clients: r.clients, ops: r.ops, elapsed: r.elapsed }).collect::<Vec<_>>(),
                &anchor,
            ));
            out.push_str(&format!(
                "\nRBAC on / AlwaysAllow, pod {what}, both rounds: {:.2}×\n\n",
                sum(true) / sum(false)
            ));
        }
        out
    };
    if args.authz_only && !args.crd_only {
        println!("{}", authz_table(&authz_rows));
        return Ok(());
    }
    let crd_rows = crd_comparison(&rt, args.creates)?;
    if args.crd_only {
        if args.authz_only {
            println!("{}", authz_table(&authz_rows));
        }
        println!("{}", crd_table(&crd_rows));
        return Ok(());
    }

    // Anchors first: the raw embedded store, then etcd's own puts (etcd runs only for its phase,
    // so its background fsyncs do not slow the other subjects).
    rt.block_on(async {
        let dir = tempfile::tempdir()?;
        let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("raw.db"))?);
        let (s, r) = raw_writes(
            sqlite.clone(),
            "sqlite store create (raw)",
            "seq",
            args.creates / 4,
            1,
        )
        .await?;
        seq_lat.push(s);
        seq_rate.push(r);
        let (s, r) =
            raw_writes(sqlite, "sqlite store create (raw)", "par", args.creates, 32).await?;
        par_lat.push(s);
        par_rate.push(r);
        Ok::<_, anyhow::Error>(())
    })?;
    let etcd = Etcd::start()?;
    rt.block_on(async {
        let (s, r) = etcd_puts(etcd.url(), "etcd put (raw)", args.creates / 4, 1).await?;
        seq_lat.push(s);
        seq_rate.push(r);
        let (s, r) = etcd_puts(etcd.url(), "etcd put (raw)", args.creates, 32).await?;
        par_lat.push(s);
        par_rate.push(r);
        Ok::<_, anyhow::Error>(())
    })?;
    drop(etcd);

    for (backend, label) in [
        (Backend::Embedded, "pea-control embedded"),
        (Backend::Etcd, "pea-control etcd"),
    ] {
        let cp =
            ControlPlane::start_with(backend, |c| c.admission_caches = !args.no_admission_caches)
                .context("start control plane")?;
        rt.block_on(async {
            let (s, r) = creates(&cp, label, "seq", args.creates / 4, 1).await?;
            seq_lat.push(s);
            seq_rate.push(r);
            let (s, r) = creates(&cp, label, "par", args.creates, 32).await?;
            par_lat.push(s);
            par_rate.push(r);
            let have = args.creates / 4 + args.creates;
            if args.list_size > have {
                creates(&cp, "fill", "fill", args.list_size - have, 32).await?;
            }
            let (mut s, count) = list_pods(&cp, label, 5).await?;
            s.note = Some(format!("{count} pods, JSON"));
            list_lat.push(s);
            watch_lat.push(watch_latency(&cp, label, args.watchers, args.watch_events).await?);
            Ok::<_, anyhow::Error>(())
        })?;
        sweep_lat.extend(gc_sweep(&cp, label)?);
        drop(cp);
    }

    println!(
        "{}",
        rate_table("Pod creates/s, 1 client", &seq_rate, "etcd put (raw)")
    );
    println!(
        "{}",
        table("Pod create latency, 1 client", &seq_lat, "etcd put (raw)")
    );
    println!(
        "{}",
        rate_table("Pod creates/s, 32 clients", &par_rate, "etcd put (raw)")
    );
    println!(
        "{}",
        table("Pod create latency, 32 clients", &par_lat, "etcd put (raw)")
    );
    println!(
        "{}",
        table(
            "List all pods in a namespace",
            &list_lat,
            "pea-control etcd"
        )
    );
    println!(
        "{}",
        table(
            "Watch event latency (create sent → event read)",
            &watch_lat,
            "pea-control etcd"
        )
    );
    println!(
        "{}",
        table(
            "Garbage collector sweep over the whole store (anchor: listing every resource)",
            &sweep_lat,
            "pea-control etcd: list every resource"
        )
    );
    println!("{}", authz_table(&authz_rows));
    println!("{}", crd_table(&crd_rows));
    for s in &watch_lat {
        println!(
            "{}: watch p50 {} p99 {} ({} events)",
            s.subject,
            s.quantile(0.5).map(fmt_duration).unwrap_or_default(),
            s.quantile(0.99).map(fmt_duration).unwrap_or_default(),
            s.durations.len()
        );
    }
    Ok(())
}

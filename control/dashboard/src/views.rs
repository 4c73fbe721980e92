//! The pages and the actions. GET handlers read through the user's client and render HTML;
//! POST handlers (CSRF already checked) write and redirect back (post/redirect/get), or show
//! the API server's refusal with its status code.

use std::collections::HashMap;
use std::fmt::Write;

use base64::Engine;
use serde_json::{json, Value};

use crate::api::{self, Api, ApiError, Kind};
use crate::html::{age, badge, bars, chips, dl, esc, int, link, s, seg, table, text};
use crate::metrics;

/// What a handler needs from the request.
pub struct Ctx<'a> {
    pub base: &'a str,
    pub api: &'a Api,
    pub csrf: &'a str,
    /// The session's CPU/memory samples (see [`crate::metrics`]).
    pub samples: &'a std::sync::Mutex<crate::metrics::History>,
    /// The session's node drains (see [`crate::drain`]).
    pub drains: &'a crate::drain::Drains,
    /// The path after the prefix.
    pub path: String,
    pub query: HashMap<String, String>,
    pub form: HashMap<String, String>,
    /// Only the main part is wanted (the script's refresh).
    pub fragment: bool,
}

impl Ctx<'_> {
    fn q(&self, k: &str) -> &str {
        self.query.get(k).map(String::as_str).unwrap_or("")
    }

    /// The namespace filter ("" = all).
    fn ns(&self) -> Option<&str> {
        Some(self.q("ns")).filter(|n| !n.is_empty())
    }

    fn csrf_field(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
            esc(self.csrf)
        )
    }

    fn with_ns(&self, path: &str) -> String {
        match self.ns() {
            Some(ns) => format!("{}{path}?ns={}", self.base, seg(ns)),
            None => format!("{}{path}", self.base),
        }
    }
}

/// A rendered page.
pub struct Page {
    pub status: u16,
    pub title: String,
    pub body: String,
    /// Kept current through watch (see [`crate::live`]): lists and object pages, not forms.
    pub live: bool,
}

pub enum Out {
    Page(Page),
    Redirect(String),
    Text(u16, String),
}

fn page(title: impl Into<String>, body: String) -> Out {
    Out::Page(Page {
        status: 200,
        title: title.into(),
        body,
        live: true,
    })
}

/// One line for a refusal shown by the script (a terminal, a followed log).
pub fn error_line(e: &ApiError) -> String {
    format!("{} {} — {}", e.code, reason_phrase(e.code), e.message)
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        410 => "Gone",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// An error box: the API server's status code and message, escaped.
fn err_box(e: &ApiError) -> String {
    let extra = if e.code == 403 {
        " The API server does not allow your user this; the dashboard never asks with more rights than yours."
    } else {
        ""
    };
    format!(
        "<div class=\"error\" data-code=\"{code}\"><strong>{code} {phrase}</strong> — {msg}{extra}</div>",
        code = e.code,
        phrase = reason_phrase(e.code),
        msg = esc(&e.message),
        extra = esc(extra)
    )
}

fn error_page(title: &str, e: &ApiError, back: Option<&str>) -> Out {
    let back = back
        .map(|b| format!("<p>{}</p>", link(b, "Back")))
        .unwrap_or_default();
    Out::Page(Page {
        status: e.code,
        title: title.into(),
        body: format!("<h1>{}</h1>{}{back}", esc(title), err_box(e)),
        live: false,
    })
}

/// The whole HTML document around a page.
pub async fn layout(c: &Ctx<'_>, p: &Page) -> String {
    let b = esc(c.base);
    let ns_control = match c.api.list(&api::NAMESPACES.path(None, None)).await {
        Ok(list) => {
            let mut o = String::from("<select name=\"ns\" id=\"ns\" data-autosubmit><option value=\"\">All namespaces</option>");
            for n in &list {
                let name = s(n, "/metadata/name");
                let sel = if c.ns() == Some(name) {
                    " selected"
                } else {
                    ""
                };
                let _ = write!(o, "<option value=\"{0}\"{sel}>{0}</option>", esc(name));
            }
            o.push_str("</select>");
            o
        }
        Err(_) => format!(
            "<input name=\"ns\" id=\"ns\" placeholder=\"namespace\" value=\"{}\">",
            esc(c.q("ns"))
        ),
    };
    let list_views = ["/", "/workloads", "/network", "/config"];
    let action = if list_views.contains(&c.path.as_str()) {
        format!("{}{}", c.base, c.path)
    } else {
        format!("{}/workloads", c.base)
    };
    let nav = [
        ("/", "Overview"),
        ("/workloads", "Workloads"),
        ("/network", "Network"),
        ("/config", "Config"),
    ]
    .iter()
    .map(|(path, label)| {
        let cur = if c.path == *path {
            " class=\"current\""
        } else {
            ""
        };
        format!("<a href=\"{}\"{cur}>{}</a>", esc(&c.with_ns(path)), label)
    })
    .collect::<String>();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title} · pea dashboard</title><link rel=\"stylesheet\" href=\"{b}/static/style.css\"><script src=\"{b}/static/app.js\" defer></script></head><body><header><a class=\"brand\" href=\"{b}/\">pea</a><nav>{nav}</nav><form class=\"filter\" method=\"get\" action=\"{action}\">{ns_control}<input type=\"search\" name=\"q\" id=\"q\" placeholder=\"Search names\" value=\"{q}\"><button type=\"submit\">Filter</button></form><form class=\"logout\" method=\"post\" action=\"{b}/logout\">{csrf}<button type=\"submit\" id=\"logout\">Log out</button></form></header><main id=\"main\"{live}>{body}</main><footer><span id=\"live\" class=\"muted\"></span></footer></body></html>",
        title = esc(&p.title),
        action = esc(&action),
        q = esc(c.q("q")),
        csrf = c.csrf_field(),
        live = live_attr(c, p),
        body = p.body,
    )
}

/// ` data-live="URL"`: where the script subscribes to the page's changes (nothing when the
/// page is not live).
fn live_attr(c: &Ctx, p: &Page) -> String {
    let segs: Vec<&str> = c.path.split('/').filter(|s| !s.is_empty()).collect();
    if !p.live || p.status != 200 || crate::live::watches(&segs, &c.query).is_empty() {
        return String::new();
    }
    let mut page = c.path.clone();
    if !c.query.is_empty() {
        let mut q = form_urlencoded::Serializer::new(String::new());
        let mut keys: Vec<&String> = c.query.keys().collect();
        keys.sort();
        for k in keys {
            q.append_pair(k, &c.query[k]);
        }
        page.push('?');
        page.push_str(&q.finish());
    }
    let url = format!(
        "{}/live?{}",
        c.base,
        form_urlencoded::Serializer::new(String::new())
            .append_pair("page", &page)
            .finish()
    );
    format!(" data-live=\"{}\"", esc(&url))
}

fn flash(c: &Ctx) -> String {
    let msg = match c.q("done") {
        "scaled" => "Scaled.",
        "restarted" => "Rollout restart requested.",
        "applied" => "Applied (server-side apply, field manager pea-dashboard).",
        "deleted" => "Deleted.",
        "cordoned" => "Node cordoned.",
        "uncordoned" => "Node uncordoned.",
        _ => return String::new(),
    };
    format!("<p class=\"flash\" id=\"flash\">{msg}</p>")
}

fn matches_q(c: &Ctx, o: &Value) -> bool {
    let q = c.q("q").to_ascii_lowercase();
    q.is_empty() || s(o, "/metadata/name").to_ascii_lowercase().contains(&q)
}

/// Link to an object's page, with its name as label.
fn obj_link(c: &Ctx, kind: Kind, o: &Value) -> String {
    let name = s(o, "/metadata/name");
    link(&kind.link(c.base, s(o, "/metadata/namespace"), name), name)
}

fn conditions(o: &Value) -> String {
    let rows: Vec<Vec<String>> = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|cnd| {
            vec![
                esc(s(cnd, "/type")),
                badge(s(cnd, "/status")),
                esc(s(cnd, "/reason")),
                esc(s(cnd, "/message")),
                esc(&age(Some(s(cnd, "/lastTransitionTime"))
                    .filter(|t| !t.is_empty())
                    .unwrap_or(s(cnd, "/lastHeartbeatTime")))),
            ]
        })
        .collect();
    table(
        &["Type", "Status", "Reason", "Message", "Age"],
        &rows,
        "No conditions.",
    )
}

/// kubectl's pod status word.
fn pod_status(p: &Value) -> String {
    if !s(p, "/metadata/deletionTimestamp").is_empty() {
        return "Terminating".into();
    }
    for cs in p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let w = s(cs, "/state/waiting/reason");
        if !w.is_empty() {
            return w.into();
        }
        let t = s(cs, "/state/terminated/reason");
        if !t.is_empty() {
            return t.into();
        }
    }
    let phase = s(p, "/status/phase");
    if phase.is_empty() {
        "Pending".into()
    } else {
        phase.into()
    }
}

fn pod_ready(p: &Value) -> String {
    let total = p
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c["ready"] == json!(true))
        .count();
    format!("{ready}/{total}")
}

fn restarts(p: &Value) -> i64 {
    p.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| int(c, "/restartCount"))
        .sum()
}

fn created(o: &Value) -> String {
    esc(&age(s(o, "/metadata/creationTimestamp")))
}

/// One table row per object of a workload kind.
fn workload_rows(c: &Ctx, kind: Kind, items: &[Value]) -> Rows {
    let ns = |o: &Value| esc(s(o, "/metadata/namespace"));
    let headers: Vec<&'static str> = match kind.plural {
        "deployments" => vec![
            "Name",
            "Namespace",
            "Ready",
            "Up-to-date",
            "Available",
            "Age",
        ],
        "replicasets" => vec!["Name", "Namespace", "Desired", "Current", "Ready", "Age"],
        "statefulsets" => vec!["Name", "Namespace", "Ready", "Age"],
        "daemonsets" => vec!["Name", "Namespace", "Desired", "Current", "Ready", "Age"],
        "jobs" => vec!["Name", "Namespace", "Completions", "Status", "Age"],
        "cronjobs" => vec![
            "Name",
            "Namespace",
            "Schedule",
            "Suspend",
            "Active",
            "Last schedule",
            "Age",
        ],
        _ => vec![
            "Name",
            "Namespace",
            "Ready",
            "Status",
            "Restarts",
            "Node",
            "Age",
        ],
    };
    let rows = items
        .iter()
        .filter(|o| matches_q(c, o))
        .map(|o| {
            let name = obj_link(c, kind, o);
            match kind.plural {
                "deployments" => vec![
                    name,
                    ns(o),
                    format!(
                        "{}/{}",
                        int(o, "/status/readyReplicas"),
                        int(o, "/spec/replicas")
                    ),
                    int(o, "/status/updatedReplicas").to_string(),
                    int(o, "/status/availableReplicas").to_string(),
                    created(o),
                ],
                "replicasets" => vec![
                    name,
                    ns(o),
                    int(o, "/spec/replicas").to_string(),
                    int(o, "/status/replicas").to_string(),
                    int(o, "/status/readyReplicas").to_string(),
                    created(o),
                ],
                "statefulsets" => vec![
                    name,
                    ns(o),
                    format!(
                        "{}/{}",
                        int(o, "/status/readyReplicas"),
                        int(o, "/spec/replicas")
                    ),
                    created(o),
                ],
                "daemonsets" => vec![
                    name,
                    ns(o),
                    int(o, "/status/desiredNumberScheduled").to_string(),
                    int(o, "/status/currentNumberScheduled").to_string(),
                    int(o, "/status/numberReady").to_string(),
                    created(o),
                ],
                "jobs" => {
                    let done = o
                        .pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .find(|cnd| s(cnd, "/status") == "True")
                        .map(|cnd| s(cnd, "/type").to_string())
                        .unwrap_or_else(|| "Running".into());
                    vec![
                        name,
                        ns(o),
                        format!(
                            "{}/{}",
                            int(o, "/status/succeeded"),
                            o.pointer("/spec/completions")
                                .and_then(Value::as_i64)
                                .unwrap_or(1)
                        ),
                        badge(&done),
                        created(o),
                    ]
                }
                "cronjobs" => vec![
                    name,
                    ns(o),
                    esc(s(o, "/spec/schedule")),
                    esc(&text(o, "/spec/suspend")),
                    o.pointer("/status/active")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len)
                        .to_string(),
                    esc(&age(s(o, "/status/lastScheduleTime"))),
                    created(o),
                ],
                _ => {
                    let node = s(o, "/spec/nodeName");
                    vec![
                        name,
                        ns(o),
                        pod_ready(o),
                        badge(&pod_status(o)),
                        restarts(o).to_string(),
                        if node.is_empty() {
                            "<span class=\"muted\">unscheduled</span>".into()
                        } else {
                            link(&api::NODES.link(c.base, "", node), node)
                        },
                        created(o),
                    ]
                }
            }
        })
        .collect();
    (headers, rows)
}

/// A section listing one kind (its own error box when the list is refused).
/// Headers and rows of a list section.
type Rows = (Vec<&'static str>, Vec<Vec<String>>);

async fn kind_section(
    c: &Ctx<'_>,
    kind: Kind,
    rows_for: fn(&Ctx, Kind, &[Value]) -> Rows,
) -> String {
    let body = match c.api.list(&kind.path(c.ns(), None)).await {
        Ok(items) => {
            let (h, rows) = rows_for(c, kind, &items);
            table(&h, &rows, &format!("No {}.", kind.title))
        }
        Err(e) => err_box(&e),
    };
    format!(
        "<section id=\"{}\"><h2>{}</h2>{body}</section>",
        kind.plural, kind.title
    )
}

fn quantity_pair(o: &Value, key: &str) -> String {
    let cap = text(o, &format!("/status/capacity/{key}"));
    let alloc = text(o, &format!("/status/allocatable/{key}"));
    esc(&format!("{alloc} / {cap}"))
}

fn node_rows(
    c: &Ctx,
    nodes: &[Value],
    usage: &HashMap<String, metrics::Sample>,
) -> Vec<Vec<String>> {
    nodes
        .iter()
        .filter(|n| matches_q(c, n))
        .map(|n| {
            let name = s(n, "/metadata/name");
            let ready = n
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|cnd| s(cnd, "/type") == "Ready")
                .map(|cnd| {
                    if s(cnd, "/status") == "True" {
                        "Ready"
                    } else {
                        "NotReady"
                    }
                })
                .unwrap_or("Unknown");
            let mut status = badge(ready);
            let cordoned = n.pointer("/spec/unschedulable") == Some(&json!(true));
            if cordoned {
                status.push(' ');
                status.push_str(&badge("SchedulingDisabled"));
            }
            let other: Vec<String> = n
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|cnd| s(cnd, "/type") != "Ready" && s(cnd, "/status") == "True")
                .map(|cnd| esc(s(cnd, "/type")))
                .collect();
            let used = usage.get(name).copied();
            vec![
                link(&api::NODES.link(c.base, "", name), name),
                status,
                format!(
                    "<span class=\"cpu-used\">{}</span>",
                    metrics::used_cell(used, &text(n, "/status/allocatable/cpu"), true)
                ),
                quantity_pair(n, "cpu"),
                format!(
                    "<span class=\"memory-used\">{}</span>",
                    metrics::used_cell(used, &text(n, "/status/allocatable/memory"), false)
                ),
                quantity_pair(n, "memory"),
                quantity_pair(n, "pods"),
                if other.is_empty() {
                    "<span class=\"muted\">none</span>".into()
                } else {
                    other.join(", ")
                },
                cordon_form(c, name, cordoned),
            ]
        })
        .collect()
}

fn cordon_form(c: &Ctx, node: &str, cordoned: bool) -> String {
    format!(
        "<form method=\"post\" class=\"inline\" action=\"{}/cordon\">{}<input type=\"hidden\" name=\"unschedulable\" value=\"{}\"><button type=\"submit\" class=\"small\">{}</button></form>",
        esc(&api::NODES.link(c.base, "", node)),
        c.csrf_field(),
        !cordoned,
        if cordoned { "Uncordon" } else { "Cordon" }
    )
}

fn event_time(e: &Value) -> &str {
    for p in [
        "/lastTimestamp",
        "/eventTime",
        "/firstTimestamp",
        "/metadata/creationTimestamp",
    ] {
        let t = s(e, p);
        if !t.is_empty() {
            return t;
        }
    }
    ""
}

fn events_table(c: &Ctx, mut events: Vec<Value>, limit: usize, show_object: bool) -> String {
    events.sort_by(|a, b| event_time(b).cmp(event_time(a)));
    let rows: Vec<Vec<String>> = events
        .iter()
        .take(limit)
        .map(|e| {
            let mut r = vec![esc(&age(event_time(e))), badge(s(e, "/type"))];
            if show_object {
                let kind = s(e, "/involvedObject/kind");
                let name = s(e, "/involvedObject/name");
                let ns = s(e, "/involvedObject/namespace");
                let label = format!("{}/{name}", kind.to_ascii_lowercase());
                r.push(
                    match api::ALL.iter().find(|k| k.kind == kind && !name.is_empty()) {
                        Some(k) => link(&k.link(c.base, ns, name), &label),
                        None => esc(&label),
                    },
                );
            }
            r.push(esc(s(e, "/reason")));
            r.push(esc(s(e, "/message")));
            let count = int(e, "/count");
            r.push(if count > 1 {
                count.to_string()
            } else {
                String::new()
            });
            r
        })
        .collect();
    let headers: &[&str] = if show_object {
        &["Age", "Type", "Object", "Reason", "Message", "Count"]
    } else {
        &["Age", "Type", "Reason", "Message", "Count"]
    };
    table(headers, &rows, "No events.")
}

async fn overview(c: &Ctx<'_>) -> Out {
    let paths = [
        api::NODES.path(None, None),
        api::PODS.path(c.ns(), None),
        api::EVENTS.path(c.ns(), None),
        api::NAMESPACES.path(None, None),
    ];
    let (nodes, pods, events, namespaces, usage) = tokio::join!(
        c.api.list(&paths[0]),
        c.api.list(&paths[1]),
        c.api.list(&paths[2]),
        c.api.list(&paths[3]),
        metrics::node_usage(c.api),
    );
    let mut body = String::from("<h1>Cluster overview</h1>");
    body.push_str(&flash(c));
    body.push_str("<section id=\"nodes\"><h2>Nodes</h2>");
    match nodes {
        Ok(n) => {
            let (usage, why) = match usage {
                Ok(u) => (u, None),
                Err(e) => (HashMap::new(), Some(e)),
            };
            body.push_str(&table(
                &[
                    "Name",
                    "Status",
                    "CPU used",
                    "CPU alloc / cap",
                    "Memory used",
                    "Memory alloc / cap",
                    "Pods alloc / cap",
                    "Other conditions",
                    "",
                ],
                &node_rows(c, &n, &usage),
                "No nodes.",
            ));
            // Usage is the latest metrics.k8s.io sample (% of allocatable); say why there is none.
            if let Some(e) = why {
                let _ = write!(
                    body,
                    "<p class=\"muted\" id=\"usage-missing\">No usage: {}</p>",
                    esc(&error_line(&e))
                );
            }
        }
        Err(e) => body.push_str(&err_box(&e)),
    }
    body.push_str("</section><div class=\"cols\"><section id=\"phases\"><h2>Pods by phase</h2>");
    match pods {
        Ok(p) => {
            let mut counts: Vec<(String, i64)> =
                ["Running", "Pending", "Succeeded", "Failed", "Unknown"]
                    .iter()
                    .map(|ph| (ph.to_string(), 0))
                    .collect();
            for pod in &p {
                let ph = match s(pod, "/status/phase") {
                    "" => "Pending",
                    x => x,
                };
                match counts.iter_mut().find(|(k, _)| k == ph) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((ph.to_string(), 1)),
                }
            }
            let _ = write!(body, "<p>{} pods</p>{}", p.len(), bars(&counts));
        }
        Err(e) => body.push_str(&err_box(&e)),
    }
    body.push_str("</section><section id=\"namespaces\"><h2>Namespaces</h2>");
    match namespaces {
        Ok(list) => {
            body.push_str("<ul class=\"plain\">");
            for n in &list {
                let name = s(n, "/metadata/name");
                let _ = write!(
                    body,
                    "<li>{} {}</li>",
                    link(&format!("{}/workloads?ns={}", c.base, seg(name)), name),
                    badge(s(n, "/status/phase"))
                );
            }
            body.push_str("</ul>");
        }
        Err(e) => body.push_str(&err_box(&e)),
    }
    body.push_str("</section></div><section id=\"warnings\"><h2>Recent warning events</h2>");
    match events {
        Ok(ev) => {
            let warnings: Vec<Value> = ev
                .into_iter()
                .filter(|e| s(e, "/type") == "Warning")
                .collect();
            body.push_str(&events_table(c, warnings, 15, true));
        }
        Err(e) => body.push_str(&err_box(&e)),
    }
    body.push_str("</section>");
    page("Overview", body)
}

async fn workloads(c: &Ctx<'_>) -> Out {
    let kinds: Vec<Kind> = match api::WORKLOADS.iter().find(|k| k.plural == c.q("kind")) {
        Some(k) => vec![*k],
        None => api::WORKLOADS.to_vec(),
    };
    let sections =
        futures_util::future::join_all(kinds.iter().map(|k| kind_section(c, *k, workload_rows)))
            .await;
    let scope = c
        .ns()
        .map(|n| format!(" in {}", esc(n)))
        .unwrap_or_default();
    page(
        "Workloads",
        format!("<h1>Workloads{scope}</h1>{}{}", flash(c), sections.concat()),
    )
}

fn network_rows(c: &Ctx, kind: Kind, items: &[Value]) -> Rows {
    let rows = items
        .iter()
        .filter(|o| matches_q(c, o))
        .map(|o| {
            let name = obj_link(c, kind, o);
            let ns = esc(s(o, "/metadata/namespace"));
            match kind.plural {
                "services" => vec![
                    name,
                    ns,
                    esc(s(o, "/spec/type")),
                    esc(s(o, "/spec/clusterIP")),
                    esc(&service_ports(o)),
                    chips(o.pointer("/spec/selector")),
                    created(o),
                ],
                "ingresses" => vec![
                    name,
                    ns,
                    esc(s(o, "/spec/ingressClassName")),
                    esc(&o
                        .pointer("/spec/rules")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|r| s(r, "/host").to_string())
                        .collect::<Vec<_>>()
                        .join(", ")),
                    created(o),
                ],
                _ => vec![name, ns, esc(&endpoint_addresses(o)), created(o)],
            }
        })
        .collect();
    let headers = match kind.plural {
        "services" => vec![
            "Name",
            "Namespace",
            "Type",
            "Cluster IP",
            "Ports",
            "Selector",
            "Age",
        ],
        "ingresses" => vec!["Name", "Namespace", "Class", "Hosts", "Age"],
        _ => vec!["Name", "Namespace", "Endpoints", "Age"],
    };
    (headers, rows)
}

fn service_ports(o: &Value) -> String {
    o.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let node = match int(p, "/nodePort") {
                0 => String::new(),
                n => format!(":{n}"),
            };
            format!("{}{node}/{}", int(p, "/port"), s(p, "/protocol"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn endpoint_addresses(o: &Value) -> String {
    let mut out = Vec::new();
    for subset in o
        .pointer("/subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ports: Vec<i64> = subset
            .pointer("/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| int(p, "/port"))
            .collect();
        for a in subset
            .pointer("/addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for p in &ports {
                out.push(format!("{}:{p}", s(a, "/ip")));
            }
        }
    }
    if out.is_empty() {
        "<none>".into()
    } else {
        out.join(", ")
    }
}

async fn network(c: &Ctx<'_>) -> Out {
    let sections = futures_util::future::join_all(
        [api::SERVICES, api::INGRESSES, api::ENDPOINTS]
            .into_iter()
            .map(|k| kind_section(c, k, network_rows)),
    )
    .await;
    page(
        "Network",
        format!(
            "<h1>Services, Ingresses, Endpoints</h1>{}{}",
            flash(c),
            sections.concat()
        ),
    )
}

fn config_rows(c: &Ctx, kind: Kind, items: &[Value]) -> Rows {
    let rows = items
        .iter()
        .filter(|o| matches_q(c, o))
        .map(|o| {
            let keys = o
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())
                + o.get("binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len());
            let mut r = vec![obj_link(c, kind, o), esc(s(o, "/metadata/namespace"))];
            if kind.plural == "secrets" {
                r.push(esc(s(o, "/type")));
            }
            r.push(keys.to_string());
            r.push(created(o));
            r
        })
        .collect();
    let headers = if kind.plural == "secrets" {
        vec!["Name", "Namespace", "Type", "Keys", "Age"]
    } else {
        vec!["Name", "Namespace", "Keys", "Age"]
    };
    (headers, rows)
}

async fn config(c: &Ctx<'_>) -> Out {
    let sections = futures_util::future::join_all(
        [api::CONFIGMAPS, api::SECRETS]
            .into_iter()
            .map(|k| kind_section(c, k, config_rows)),
    )
    .await;
    page("Config", format!("<h1>ConfigMaps and Secrets</h1>{}{}<p class=\"muted\">Secret values are shown only on a Secret's page, when asked.</p>", flash(c), sections.concat()))
}

/// Buttons at the top of an object page.
fn actions(c: &Ctx, kind: Kind, ns: &str, name: &str) -> String {
    let base = kind.link(c.base, ns, name);
    let mut out = String::from("<div class=\"actions\">");
    let _ = write!(
        out,
        "<a class=\"button\" id=\"yaml-link\" href=\"{}/yaml\">YAML</a>",
        esc(&base)
    );
    if kind == api::PODS {
        let _ = write!(
            out,
            "<a class=\"button\" id=\"logs-link\" href=\"{0}/logs\">Logs</a><a class=\"button\" id=\"terminal-link\" href=\"{0}/terminal\">Terminal</a>",
            esc(&base)
        );
    }
    if kind == api::NODES {
        let _ = write!(
            out,
            "<a class=\"button\" id=\"drain-link\" href=\"{}/drain\">Drain</a>",
            esc(&base)
        );
    }
    if [api::DEPLOYMENTS, api::STATEFULSETS, api::DAEMONSETS].contains(&kind) {
        let _ = write!(
            out,
            "<form method=\"post\" class=\"inline\" action=\"{}/restart\">{}<button type=\"submit\" id=\"restart\">Restart rollout</button></form>",
            esc(&base),
            c.csrf_field()
        );
    }
    let _ = write!(
        out,
        "<a class=\"button danger\" id=\"delete-link\" href=\"{}/delete\">Delete</a></div>",
        esc(&base)
    );
    out
}

fn scale_form(c: &Ctx, kind: Kind, o: &Value) -> String {
    let base = kind.link(c.base, s(o, "/metadata/namespace"), s(o, "/metadata/name"));
    format!(
        "<form method=\"post\" class=\"inline scale\" action=\"{}/scale\">{}<label for=\"replicas\">Replicas</label> <input type=\"number\" min=\"0\" max=\"10000\" id=\"replicas\" name=\"replicas\" value=\"{}\"><button type=\"submit\" id=\"scale\">Scale</button></form>",
        esc(&base),
        c.csrf_field(),
        int(o, "/spec/replicas")
    )
}

/// kubectl's copy of the applied object: for a Secret it holds the values in clear.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn metadata(o: &Value, hide_last_applied: bool) -> String {
    let annotations: Vec<Vec<String>> = o
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            if hide_last_applied && k == LAST_APPLIED {
                return vec![
                    esc(k),
                    "<span class=\"muted\">hidden (holds the values)</span>".into(),
                ];
            }
            vec![
                esc(k),
                format!(
                    "<pre class=\"value\">{}</pre>",
                    esc(v.as_str().unwrap_or_default())
                ),
            ]
        })
        .collect();
    let owners = o
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|r| format!("{}/{}", s(r, "/kind"), s(r, "/name")))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "<section id=\"metadata\"><h2>Metadata</h2>{}<h3>Labels</h3><p class=\"labels\">{}</p><h3>Annotations</h3><div id=\"annotations\">{}</div></section>",
        dl(&[
            ("Namespace", s(o, "/metadata/namespace").to_string()),
            ("UID", s(o, "/metadata/uid").to_string()),
            ("Created", format!("{} ({} ago)", s(o, "/metadata/creationTimestamp"), age(s(o, "/metadata/creationTimestamp")))),
            ("Owners", owners),
        ]),
        chips(o.pointer("/metadata/labels")),
        table(&["Key", "Value"], &annotations, "No annotations."),
    )
}

/// `a=b,c=d` from a matchLabels map (None without one).
fn selector(o: &Value) -> Option<String> {
    let m = o.pointer("/spec/selector/matchLabels").or_else(|| {
        // Services select with a plain map.
        o.pointer("/spec/selector")
            .filter(|v| v.get("matchLabels").is_none() && v.is_object())
    })?;
    let m = m.as_object()?;
    if m.is_empty() {
        return None;
    }
    Some(
        m.iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
    )
}

async fn pods_section(c: &Ctx<'_>, ns: &str, query: &str, title: &str) -> String {
    let path = format!("{}?{query}", api::PODS.path(Some(ns), None));
    let body = match c.api.list(&path).await {
        Ok(items) => {
            let (h, rows) = workload_rows(c, api::PODS, &items);
            table(&h, &rows, "No pods.")
        }
        Err(e) => err_box(&e),
    };
    format!(
        "<section id=\"pods\"><h2>{}</h2>{body}</section>",
        esc(title)
    )
}

/// The pods bound to a node, all namespaces.
async fn node_pods(c: &Ctx<'_>, node: &str) -> String {
    let path = format!(
        "{}?fieldSelector={}",
        api::PODS.path(None, None),
        seg(&format!("spec.nodeName={node}"))
    );
    let inner = match c.api.list(&path).await {
        Ok(items) => {
            let (h, rows) = workload_rows(c, api::PODS, &items);
            table(&h, &rows, "No pods.")
        }
        Err(e) => err_box(&e),
    };
    format!("<section id=\"pods\"><h2>Pods on this node</h2>{inner}</section>")
}

/// A node's drain: a confirmation form, or the progress of the drain this session started
/// (kept current by the live stream), and the pods still on the node.
async fn drain_page(c: &Ctx<'_>, node: &str) -> Out {
    let link_ = api::NODES.link(c.base, "", node);
    let progress = crate::drain::progress(c.drains, node);
    let head = match &progress {
        None => format!(
            "<p>Draining cordons <strong>{n}</strong>, then evicts each of its pods through the eviction API, so PodDisruptionBudgets are respected (a refusal is retried with backoff for up to {t} s). DaemonSet and mirror pods stay.</p><form method=\"post\" action=\"{a}\">{csrf}<button type=\"submit\" class=\"danger\" id=\"confirm-drain\">Drain</button> {cancel}</form>",
            n = esc(node),
            t = crate::drain::DRAIN_TIMEOUT.as_secs(),
            a = esc(&format!("{link_}/drain")),
            csrf = c.csrf_field(),
            cancel = link(&link_, "Cancel"),
        ),
        Some(p) => {
            let mut o = format!(
                "<section id=\"drain\" data-finished=\"{}\"><h2>{}</h2><ol id=\"drain-log\">",
                p.finished,
                if p.finished { "Drain finished" } else { "Draining…" }
            );
            for l in &p.lines {
                let _ = write!(o, "<li>{}</li>", esc(l));
            }
            o.push_str("</ol></section>");
            o
        }
    };
    Out::Page(Page {
        status: 200,
        title: format!("Drain node {node}"),
        body: format!(
            "<p class=\"crumbs\">{}</p><h1>Drain node {}</h1>{head}{}",
            link(&link_, &format!("Node {node}")),
            esc(node),
            node_pods(c, node).await
        ),
        live: true,
    })
}

async fn object_events(c: &Ctx<'_>, kind: Kind, ns: &str, name: &str) -> String {
    let path = api::EVENTS.path(if kind.namespaced { Some(ns) } else { None }, None);
    let body = match c.api.list(&path).await {
        Ok(ev) => {
            let mine: Vec<Value> = ev
                .into_iter()
                .filter(|e| {
                    s(e, "/involvedObject/name") == name
                        && s(e, "/involvedObject/kind") == kind.kind
                })
                .collect();
            events_table(c, mine, 50, false)
        }
        Err(e) => err_box(&e),
    };
    format!("<section id=\"events\"><h2>Events</h2>{body}</section>")
}

fn pod_details(c: &Ctx, o: &Value) -> String {
    let statuses: Vec<&Value> = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let base = api::PODS.link(c.base, s(o, "/metadata/namespace"), s(o, "/metadata/name"));
    let mut rows = Vec::new();
    for (list, kind) in [("/spec/initContainers", "init"), ("/spec/containers", "")] {
        for ct in o
            .pointer(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = s(ct, "/name");
            let st = statuses.iter().find(|x| s(x, "/name") == name);
            let state = st
                .and_then(|x| x.get("state"))
                .and_then(Value::as_object)
                .and_then(|m| m.iter().next())
                .map(|(k, v)| {
                    let r = s(v, "/reason");
                    if r.is_empty() {
                        k.clone()
                    } else {
                        format!("{k}: {r}")
                    }
                })
                .unwrap_or_else(|| "not started".into());
            rows.push(vec![
                format!(
                    "{}{}",
                    esc(name),
                    if kind.is_empty() {
                        String::new()
                    } else {
                        " <span class=\"muted\">(init)</span>".into()
                    }
                ),
                esc(s(ct, "/image")),
                badge(if st.map(|x| x["ready"] == json!(true)).unwrap_or(false) {
                    "True"
                } else {
                    "False"
                }),
                st.map(|x| int(x, "/restartCount")).unwrap_or(0).to_string(),
                esc(&state),
                link(&format!("{base}/logs?container={}", seg(name)), "logs"),
            ]);
        }
    }
    format!(
        "<section id=\"status\"><h2>Status</h2>{}</section><section id=\"containers\"><h2>Containers</h2>{}</section><section id=\"conditions\"><h2>Conditions</h2>{}</section>",
        dl(&[
            ("Status", pod_status(o)),
            ("Ready", pod_ready(o)),
            ("Restarts", restarts(o).to_string()),
            ("Node", s(o, "/spec/nodeName").to_string()),
            ("Pod IP", s(o, "/status/podIP").to_string()),
            ("QoS class", s(o, "/status/qosClass").to_string()),
            ("Service account", s(o, "/spec/serviceAccountName").to_string()),
        ]),
        table(&["Name", "Image", "Ready", "Restarts", "State", ""], &rows, "No containers."),
        conditions(o),
    )
}

fn workload_summary(kind: Kind, o: &Value) -> String {
    let pairs: Vec<(&str, String)> = match kind.plural {
        "deployments" | "statefulsets" | "replicasets" => vec![
            ("Desired", int(o, "/spec/replicas").to_string()),
            ("Current", int(o, "/status/replicas").to_string()),
            ("Up-to-date", int(o, "/status/updatedReplicas").to_string()),
            ("Ready", int(o, "/status/readyReplicas").to_string()),
            ("Available", int(o, "/status/availableReplicas").to_string()),
            ("Strategy", text(o, "/spec/strategy/type")),
            ("Images", images(o)),
        ],
        "daemonsets" => vec![
            (
                "Desired",
                int(o, "/status/desiredNumberScheduled").to_string(),
            ),
            (
                "Current",
                int(o, "/status/currentNumberScheduled").to_string(),
            ),
            ("Ready", int(o, "/status/numberReady").to_string()),
            ("Images", images(o)),
        ],
        "jobs" => vec![
            ("Completions", text(o, "/spec/completions")),
            ("Parallelism", text(o, "/spec/parallelism")),
            ("Active", int(o, "/status/active").to_string()),
            ("Succeeded", int(o, "/status/succeeded").to_string()),
            ("Failed", int(o, "/status/failed").to_string()),
            ("Images", images(o)),
        ],
        "cronjobs" => vec![
            ("Schedule", text(o, "/spec/schedule")),
            ("Suspend", text(o, "/spec/suspend")),
            ("Last schedule", text(o, "/status/lastScheduleTime")),
            ("Images", {
                let inner = o
                    .pointer("/spec/jobTemplate")
                    .cloned()
                    .unwrap_or(Value::Null);
                images(&inner)
            }),
        ],
        _ => return String::new(),
    };
    format!(
        "<section id=\"status\"><h2>Status</h2>{}</section>",
        dl(&pairs)
    )
}

fn images(o: &Value) -> String {
    o.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| s(c, "/image").to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn node_details(c: &Ctx, o: &Value) -> String {
    let keys = ["cpu", "memory", "pods", "ephemeral-storage"];
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                esc(k),
                esc(&text(o, &format!("/status/capacity/{k}"))),
                esc(&text(o, &format!("/status/allocatable/{k}"))),
            ]
        })
        .collect();
    let addresses = o
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| format!("{}={}", s(a, "/type"), s(a, "/address")))
        .collect::<Vec<_>>()
        .join(", ");
    let taints = o
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| format!("{}={}:{}", s(t, "/key"), s(t, "/value"), s(t, "/effect")))
        .collect::<Vec<_>>()
        .join(", ");
    let cordoned = o.pointer("/spec/unschedulable") == Some(&json!(true));
    format!(
        "<section id=\"status\"><h2>Node</h2>{}<p>{}</p></section><section id=\"resources\"><h2>Capacity and allocatable</h2>{}<p class=\"muted\">Usage: see CPU and memory below.</p></section><section id=\"conditions\"><h2>Conditions</h2>{}</section>",
        dl(&[
            ("Schedulable", if cordoned { "no (cordoned)".into() } else { "yes".to_string() }),
            ("Addresses", addresses),
            ("Taints", taints),
            ("Pod CIDR", s(o, "/spec/podCIDR").to_string()),
            ("Kubelet", s(o, "/status/nodeInfo/kubeletVersion").to_string()),
            ("OS image", s(o, "/status/nodeInfo/osImage").to_string()),
        ]),
        cordon_form(c, s(o, "/metadata/name"), cordoned),
        table(&["Resource", "Capacity", "Allocatable"], &rows, ""),
        conditions(o),
    )
}

fn data_section(c: &Ctx, kind: Kind, o: &Value) -> String {
    let secret = kind == api::SECRETS;
    let reveal = secret && c.q("reveal") == "1";
    let mut rows = Vec::new();
    for field in ["data", "binaryData"] {
        for (k, v) in o
            .get(field)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let raw = v.as_str().unwrap_or_default();
            let shown = if !secret && field == "data" {
                format!("<pre class=\"value\">{}</pre>", esc(raw))
            } else {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(raw)
                    .unwrap_or_default();
                if secret && !reveal {
                    format!(
                        "<span class=\"muted hidden-value\">hidden ({} bytes)</span>",
                        bytes.len()
                    )
                } else {
                    match String::from_utf8(bytes.clone()) {
                        Ok(t) => format!("<pre class=\"value secret-value\">{}</pre>", esc(&t)),
                        Err(_) => format!(
                            "<span class=\"muted\">{} bytes of binary data</span>",
                            bytes.len()
                        ),
                    }
                }
            };
            rows.push(vec![esc(k), shown]);
        }
    }
    let toggle = if !secret {
        String::new()
    } else if reveal {
        format!(
            "<p>{}</p>",
            link(
                &kind.link(c.base, s(o, "/metadata/namespace"), s(o, "/metadata/name")),
                "Hide values"
            )
        )
    } else {
        format!(
            "<p><a class=\"button\" id=\"reveal\" href=\"{}?reveal=1\">Show values</a></p>",
            esc(&kind.link(c.base, s(o, "/metadata/namespace"), s(o, "/metadata/name")))
        )
    };
    format!(
        "<section id=\"data\"><h2>Data</h2>{}{toggle}{}</section>",
        if secret {
            dl(&[("Type", s(o, "/type").to_string())])
        } else {
            String::new()
        },
        table(&["Key", "Value"], &rows, "No data.")
    )
}

fn service_details(o: &Value) -> String {
    let rows: Vec<Vec<String>> = o
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                esc(s(p, "/name")),
                int(p, "/port").to_string(),
                esc(&text(p, "/targetPort")),
                esc(&text(p, "/nodePort")),
                esc(s(p, "/protocol")),
            ]
        })
        .collect();
    format!(
        "<section id=\"status\"><h2>Service</h2>{}<h3>Selector</h3><p>{}</p><h3>Ports</h3>{}</section>",
        dl(&[
            ("Type", s(o, "/spec/type").to_string()),
            ("Cluster IP", s(o, "/spec/clusterIP").to_string()),
            ("External IPs", text(o, "/spec/externalIPs")),
            ("Session affinity", s(o, "/spec/sessionAffinity").to_string()),
        ]),
        chips(o.pointer("/spec/selector")),
        table(&["Name", "Port", "Target", "Node port", "Protocol"], &rows, "No ports."),
    )
}

fn ingress_details(o: &Value) -> String {
    let mut rows = Vec::new();
    for r in o
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for p in r
            .pointer("/http/paths")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let port = match p.pointer("/backend/service/port/number") {
                Some(n) => n.to_string(),
                None => s(p, "/backend/service/port/name").to_string(),
            };
            rows.push(vec![
                esc(s(r, "/host")),
                esc(s(p, "/path")),
                esc(s(p, "/pathType")),
                esc(&format!("{}:{port}", s(p, "/backend/service/name"))),
            ]);
        }
    }
    format!(
        "<section id=\"status\"><h2>Ingress</h2>{}{}</section>",
        dl(&[("Class", s(o, "/spec/ingressClassName").to_string())]),
        table(
            &["Host", "Path", "Path type", "Backend"],
            &rows,
            "No rules."
        )
    )
}

async fn object_page(c: &Ctx<'_>, kind: Kind, ns: &str, name: &str) -> Out {
    let title = format!("{} {}", kind.kind, name);
    let o = match c.api.get(&kind.path(Some(ns), Some(name))).await {
        Ok(o) => o,
        Err(e) => return error_page(&title, &e, Some(&c.with_ns("/workloads"))),
    };
    let crumbs = if kind.namespaced {
        format!(
            "<p class=\"crumbs\">{} / {} / {}</p>",
            link(&format!("{}/workloads?ns={}", c.base, seg(ns)), ns),
            esc(kind.title),
            esc(name)
        )
    } else {
        format!(
            "<p class=\"crumbs\">{} / {}</p>",
            esc(kind.title),
            esc(name)
        )
    };
    let mut body = format!(
        "{crumbs}<h1><span class=\"kind\">{}</span> {}</h1>{}{}",
        esc(kind.kind),
        esc(name),
        flash(c),
        actions(c, kind, ns, name)
    );
    match kind.plural {
        "deployments" | "statefulsets" | "replicasets" => {
            body.push_str(&scale_form(c, kind, &o));
            body.push_str(&workload_summary(kind, &o));
            body.push_str(&format!(
                "<section id=\"conditions\"><h2>Conditions</h2>{}</section>",
                conditions(&o)
            ));
        }
        "daemonsets" | "jobs" | "cronjobs" => {
            body.push_str(&workload_summary(kind, &o));
            body.push_str(&format!(
                "<section id=\"conditions\"><h2>Conditions</h2>{}</section>",
                conditions(&o)
            ));
        }
        "pods" => {
            body.push_str(&pod_details(c, &o));
            body.push_str(&crate::metrics::section(c.api, c.samples, Some(ns), name).await);
        }
        "nodes" => {
            body.push_str(&crate::metrics::section(c.api, c.samples, None, name).await);
            body.push_str(&node_details(c, &o));
        }
        "services" => body.push_str(&service_details(&o)),
        "ingresses" => body.push_str(&ingress_details(&o)),
        "configmaps" | "secrets" => body.push_str(&data_section(c, kind, &o)),
        "endpoints" => body.push_str(&format!(
            "<section id=\"status\"><h2>Endpoints</h2><p>{}</p></section>",
            esc(&endpoint_addresses(&o))
        )),
        "namespaces" => body.push_str(&format!(
            "<section id=\"status\"><h2>Namespace</h2>{}<p>{}</p></section>",
            dl(&[("Phase", s(&o, "/status/phase").to_string())]),
            link(
                &format!("{}/workloads?ns={}", c.base, seg(name)),
                "Workloads in this namespace"
            )
        )),
        _ => {}
    }
    if kind.plural != "pods" && kind.plural != "cronjobs" {
        if let Some(sel) = selector(&o).filter(|_| kind.namespaced) {
            body.push_str(
                &pods_section(c, ns, &format!("labelSelector={}", seg(&sel)), "Pods").await,
            );
        }
    }
    if kind == api::NODES {
        body.push_str(&node_pods(c, name).await);
    }
    body.push_str(&metadata(&o, kind == api::SECRETS && c.q("reveal") != "1"));
    if kind != api::EVENTS {
        body.push_str(&object_events(c, kind, ns, name).await);
    }
    page(title, body)
}

/// The object as YAML, without managedFields; Secrets' values redacted unless asked.
fn to_yaml(kind: Kind, mut o: Value, reveal: bool) -> String {
    if let Some(m) = o.pointer_mut("/metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    if kind == api::SECRETS && !reveal {
        if let Some(a) = o.pointer_mut(&format!(
            "/metadata/annotations/{}",
            LAST_APPLIED.replace('/', "~1")
        )) {
            *a = json!("<hidden>");
        }
        for f in ["data", "stringData"] {
            if let Some(m) = o.get_mut(f).and_then(Value::as_object_mut) {
                for v in m.values_mut() {
                    *v = json!("<hidden>");
                }
            }
        }
    }
    serde_yaml::to_string(&o).unwrap_or_else(|e| format!("# cannot render: {e}"))
}

async fn yaml_page(c: &Ctx<'_>, kind: Kind, ns: &str, name: &str) -> Out {
    let title = format!("{} {} · YAML", kind.kind, name);
    let o = match c.api.get(&kind.path(Some(ns), Some(name))).await {
        Ok(o) => o,
        Err(e) => return error_page(&title, &e, None),
    };
    let reveal = c.q("reveal") == "1";
    let yaml = to_yaml(kind, o, reveal);
    let back = kind.link(c.base, ns, name);
    let editable = kind != api::SECRETS || reveal;
    let form = if editable {
        format!(
            "<h2>Edit</h2><form method=\"post\" action=\"{}/yaml\" class=\"yaml-edit\">{}<textarea name=\"yaml\" id=\"yaml-text\" rows=\"30\" spellcheck=\"false\">{}</textarea><p><button type=\"submit\" id=\"apply\">Apply</button> <span class=\"muted\">Server-side apply as field manager <code>pea-dashboard</code> (forced): the fields you send become yours.</span></p></form>",
            esc(&back),
            c.csrf_field(),
            esc(&yaml)
        )
    } else {
        format!(
            "<p class=\"muted\">Values are hidden. {}</p>",
            link(&format!("{back}/yaml?reveal=1"), "Show and edit")
        )
    };
    Out::Page(Page {
        status: 200,
        title: title.clone(),
        body: format!(
            "<p class=\"crumbs\">{}</p><h1>{}</h1><pre class=\"yaml\" id=\"yaml\">{}</pre>{form}",
            link(&back, &format!("{} {}", kind.kind, name)),
            esc(&title),
            esc(&yaml)
        ),
        live: false,
    })
}

/// The pod's container names (init containers first).
fn container_names(pod: &Value) -> Vec<String> {
    ["/spec/initContainers", "/spec/containers"]
        .iter()
        .flat_map(|p| {
            pod.pointer(p)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .map(|ct| s(&ct, "/name").to_string())
        .collect()
}

/// A `<select name=container>` of the pod's containers, `chosen` selected.
fn container_select(containers: &[String], chosen: &str) -> String {
    let mut o = String::from("<select name=\"container\" id=\"container\">");
    for ct in containers {
        let sel = if ct == chosen { " selected" } else { "" };
        let _ = write!(o, "<option value=\"{0}\"{sel}>{0}</option>", esc(ct));
    }
    o.push_str("</select>");
    o
}

/// Logs: the chosen options as a form; the script follows the log (`…/follow`, Server-Sent
/// Events) and appends lines as text, keeping the last few thousand.
async fn logs_page(c: &Ctx<'_>, ns: &str, name: &str) -> Out {
    let title = format!("Logs of pod {name}");
    let pod = match c.api.get(&api::PODS.path(Some(ns), Some(name))).await {
        Ok(o) => o,
        Err(e) => return error_page(&title, &e, None),
    };
    let containers = container_names(&pod);
    let chosen = match c.q("container") {
        "" => containers.last().cloned().unwrap_or_default(),
        x => x.to_string(),
    };
    let base = api::PODS.link(c.base, ns, name);
    let mut query = c.query.clone();
    query.insert("container".into(), chosen.clone());
    // Checked here too, so a bad value is refused with the page rather than in the stream.
    if let Err(e) = crate::follow::log_path(ns, name, &query, true) {
        return Out::Page(Page {
            status: 400,
            title: title.clone(),
            body: format!(
                "<h1>{}</h1><div class=\"error\">{}</div>",
                esc(&title),
                esc(&e)
            ),
            live: false,
        });
    }
    let tail = match c.q("tailLines") {
        "" => "500",
        t => t,
    };
    let checked = |k: &str| {
        if matches!(c.q(k), "1" | "true" | "on") {
            " checked"
        } else {
            ""
        }
    };
    let mut follow = form_urlencoded::Serializer::new(String::new());
    follow.append_pair("container", &chosen);
    follow.append_pair("tailLines", tail);
    for k in ["timestamps", "previous"] {
        if !checked(k).is_empty() {
            follow.append_pair(k, "1");
        }
    }
    let stream_url = format!("{base}/follow?{}", follow.finish());
    Out::Page(Page {
        status: 200,
        title: title.clone(),
        body: format!(
            "<p class=\"crumbs\">{pod_link}</p><h1>{t}</h1><form method=\"get\" class=\"logopts\" action=\"{action}\"><label>Container {select}</label><label>Last <input type=\"number\" name=\"tailLines\" id=\"tailLines\" min=\"0\" max=\"{max}\" value=\"{tail}\"> lines</label><label><input type=\"checkbox\" name=\"timestamps\" value=\"1\" id=\"timestamps\"{ts}> timestamps</label><label><input type=\"checkbox\" name=\"previous\" value=\"1\" id=\"previous\"{prev}> previous instance</label><button type=\"submit\" id=\"follow\">Follow</button></form><pre class=\"log\" id=\"log\" data-follow=\"{url}\" data-max-lines=\"5000\"></pre><p class=\"muted\" id=\"log-state\">Connecting…</p>",
            pod_link = link(&base, &format!("Pod {name}")),
            t = esc(&title),
            action = esc(&format!("{base}/logs")),
            select = container_select(&containers, &chosen),
            max = crate::follow::MAX_TAIL,
            tail = esc(tail),
            ts = checked("timestamps"),
            prev = checked("previous"),
            url = esc(&stream_url),
        ),
        live: false,
    })
}

/// A terminal in the pod: the script opens the `…/exec` WebSocket and draws what comes back.
async fn terminal_page(c: &Ctx<'_>, ns: &str, name: &str) -> Out {
    let title = format!("Terminal in pod {name}");
    let pod = match c.api.get(&api::PODS.path(Some(ns), Some(name))).await {
        Ok(o) => o,
        Err(e) => return error_page(&title, &e, None),
    };
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|ct| s(ct, "/name").to_string())
        .collect();
    let chosen = match c.q("container") {
        "" => containers.first().cloned().unwrap_or_default(),
        x => x.to_string(),
    };
    let command = match c.q("command") {
        "" => "sh",
        x => x,
    };
    let base = api::PODS.link(c.base, ns, name);
    let mut ws = form_urlencoded::Serializer::new(String::new());
    ws.append_pair("container", &chosen);
    ws.append_pair("command", command);
    let ws_path = format!("{base}/exec?{}", ws.finish());
    Out::Page(Page {
        status: 200,
        title: title.clone(),
        body: format!(
            "<p class=\"crumbs\">{pod_link}</p><h1>{t}</h1><form method=\"get\" class=\"logopts\" action=\"{action}\"><label>Container {select}</label><label>Command <input name=\"command\" id=\"command\" value=\"{cmd}\"></label><button type=\"submit\" id=\"reconnect\">Connect</button></form><div class=\"term\" id=\"term\" tabindex=\"0\" data-exec=\"{ws}\" data-csrf=\"{csrf}\" data-rows=\"24\" data-cols=\"100\"></div><p class=\"muted\" id=\"term-state\">Connecting…</p><script src=\"{b}/static/term.js\" defer></script>",
            pod_link = link(&base, &format!("Pod {name}")),
            t = esc(&title),
            action = esc(&format!("{base}/terminal")),
            select = container_select(&containers, &chosen),
            cmd = esc(command),
            ws = esc(&ws_path),
            csrf = esc(c.csrf),
            b = esc(c.base),
        ),
        live: false,
    })
}

fn delete_confirm(c: &Ctx, kind: Kind, ns: &str, name: &str) -> Out {
    let base = kind.link(c.base, ns, name);
    let what = if kind.namespaced {
        format!("{} {ns}/{name}", kind.kind)
    } else {
        format!("{} {name}", kind.kind)
    };
    Out::Page(Page {
        status: 200,
        title: format!("Delete {what}"),
        body: format!(
            "<h1>Delete {}?</h1><p>This deletes <strong>{}</strong> and, in the background, what it owns. It cannot be undone.</p><form method=\"post\" action=\"{}/delete\">{}<button type=\"submit\" class=\"danger\" id=\"confirm-delete\">Delete</button> {}</form>",
            esc(&what),
            esc(&what),
            esc(&base),
            c.csrf_field(),
            link(&base, "Cancel")
        ),
        live: false,
    })
}

/// Splits `/ns/NS/PLURAL/NAME[/ACTION]` and `/PLURAL/NAME[/ACTION]` (cluster-scoped).
pub fn object_route<'a>(segs: &[&'a str]) -> Option<(Kind, &'a str, &'a str, &'a str)> {
    match segs {
        ["ns", ns, plural, name, rest @ ..] if rest.len() <= 1 => {
            let kind = api::by_plural(plural).filter(|k| k.namespaced)?;
            Some((kind, ns, name, rest.first().copied().unwrap_or("")))
        }
        [plural, name, rest @ ..] if rest.len() <= 1 => {
            let kind = api::by_plural(plural).filter(|k| !k.namespaced)?;
            Some((kind, "", name, rest.first().copied().unwrap_or("")))
        }
        _ => None,
    }
}

pub async fn get(c: &Ctx<'_>, segs: &[&str]) -> Out {
    match segs {
        [] => overview(c).await,
        ["workloads"] => workloads(c).await,
        ["network"] => network(c).await,
        ["config"] => config(c).await,
        _ => match object_route(segs) {
            Some((kind, ns, name, "")) => object_page(c, kind, ns, name).await,
            Some((kind, ns, name, "yaml")) => yaml_page(c, kind, ns, name).await,
            Some((kind, ns, name, "delete")) => delete_confirm(c, kind, ns, name),
            Some((kind, ns, name, "logs")) if kind == api::PODS => logs_page(c, ns, name).await,
            Some((kind, _, name, "drain")) if kind == api::NODES => drain_page(c, name).await,
            Some((kind, ns, name, "terminal")) if kind == api::PODS => {
                terminal_page(c, ns, name).await
            }
            _ => Out::Text(404, "no such page".into()),
        },
    }
}

/// After a write: back to the object page with a message (or to a list after a delete).
fn done(c: &Ctx, kind: Kind, ns: &str, name: &str, what: &str) -> Out {
    Out::Redirect(format!("{}?done={what}", kind.link(c.base, ns, name)))
}

fn refused(c: &Ctx, kind: Kind, ns: &str, name: &str, action: &str, e: &ApiError) -> Out {
    tracing::info!(
        code = e.code,
        action,
        kind = kind.plural,
        "the API server refused a dashboard action"
    );
    error_page(
        &format!("Could not {action} {} {name}", kind.kind),
        e,
        Some(&kind.link(c.base, ns, name)),
    )
}

pub async fn post(c: &Ctx<'_>, segs: &[&str]) -> Out {
    let Some((kind, ns, name, action)) = object_route(segs) else {
        return Out::Text(404, "no such action".into());
    };
    let path = kind.path(Some(ns), Some(name));
    match action {
        "scale" if [api::DEPLOYMENTS, api::STATEFULSETS, api::REPLICASETS].contains(&kind) => {
            let Some(n) = c
                .form
                .get("replicas")
                .and_then(|r| r.trim().parse::<u32>().ok())
                .filter(|n| *n <= 10_000)
            else {
                return Out::Text(
                    400,
                    "replicas must be a whole number from 0 to 10000".into(),
                );
            };
            match c
                .api
                .merge_patch(&path, &json!({"spec": {"replicas": n}}))
                .await
            {
                Ok(()) => done(c, kind, ns, name, "scaled"),
                Err(e) => refused(c, kind, ns, name, "scale", &e),
            }
        }
        "restart" if [api::DEPLOYMENTS, api::STATEFULSETS, api::DAEMONSETS].contains(&kind) => {
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}});
            match c.api.merge_patch(&path, &patch).await {
                Ok(()) => done(c, kind, ns, name, "restarted"),
                Err(e) => refused(c, kind, ns, name, "restart", &e),
            }
        }
        "cordon" if kind == api::NODES => {
            let on = c.form.get("unschedulable").map(String::as_str) == Some("true");
            let patch =
                json!({"spec": {"unschedulable": if on { json!(true) } else { Value::Null }}});
            match c.api.merge_patch(&path, &patch).await {
                Ok(()) => Out::Redirect(format!(
                    "{}/?done={}",
                    c.base,
                    if on { "cordoned" } else { "uncordoned" }
                )),
                Err(e) => refused(
                    c,
                    kind,
                    ns,
                    name,
                    if on { "cordon" } else { "uncordon" },
                    &e,
                ),
            }
        }
        "drain" if kind == api::NODES => {
            let back = format!("{}/drain", kind.link(c.base, ns, name));
            match crate::drain::start(c.drains, c.api.clone(), name) {
                Ok(()) => Out::Redirect(back),
                Err(e) => Out::Page(Page {
                    status: 409,
                    title: format!("Drain node {name}"),
                    body: format!(
                        "<h1>Drain node {}</h1><div class=\"error\">{}</div><p>{}</p>",
                        esc(name),
                        esc(&e),
                        link(&back, "Back")
                    ),
                    live: false,
                }),
            }
        }
        "delete" => match c.api.delete(&path).await {
            Ok(()) => {
                let list = match kind.plural {
                    "services" | "ingresses" | "endpoints" => "/network",
                    "configmaps" | "secrets" => "/config",
                    "nodes" | "namespaces" => "/",
                    _ => "/workloads",
                };
                Out::Redirect(if kind.namespaced {
                    format!("{}{list}?ns={}&done=deleted", c.base, seg(ns))
                } else {
                    format!("{}{list}?done=deleted", c.base)
                })
            }
            Err(e) => refused(c, kind, ns, name, "delete", &e),
        },
        "yaml" => {
            let text = c.form.get("yaml").map(String::as_str).unwrap_or("");
            let mut o: Value = match serde_yaml::from_str(text) {
                Ok(v @ Value::Object(_)) => v,
                Ok(_) => return Out::Text(400, "the YAML is not an object".into()),
                Err(e) => return Out::Text(400, format!("the YAML does not parse: {e}")),
            };
            let body_ns = s(&o, "/metadata/namespace");
            if s(&o, "/kind") != kind.kind
                || s(&o, "/metadata/name") != name
                || (kind.namespaced && !body_ns.is_empty() && body_ns != ns)
            {
                return Out::Text(400, format!("the YAML must stay {} {name}", kind.kind));
            }
            // As `kubectl apply --server-side`: no managedFields, no resourceVersion (the
            // controllers bump it while the user edits; apply merges by field ownership), and
            // no status (a subresource of its own).
            if let Some(m) = o.pointer_mut("/metadata").and_then(Value::as_object_mut) {
                m.remove("managedFields");
                m.remove("resourceVersion");
            }
            if let Some(m) = o.as_object_mut() {
                m.remove("status");
            }
            match c.api.apply(&path, &o).await {
                Ok(()) => done(c, kind, ns, name, "applied"),
                Err(e) => refused(c, kind, ns, name, "apply", &e),
            }
        }
        _ => Out::Text(404, "no such action".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let (k, ns, name, act) = object_route(&["ns", "default", "deployments", "web"]).unwrap();
        assert_eq!((k, ns, name, act), (api::DEPLOYMENTS, "default", "web", ""));
        let (k, _, name, act) = object_route(&["nodes", "n1", "cordon"]).unwrap();
        assert_eq!((k, name, act), (api::NODES, "n1", "cordon"));
        assert!(
            object_route(&["deployments", "web"]).is_none(),
            "namespaced kinds need /ns/"
        );
        assert!(object_route(&["ns", "default", "nodes", "n1"]).is_none());
        assert!(object_route(&["ns", "default", "bogus", "x"]).is_none());
    }

    #[test]
    fn secret_yaml_is_redacted_until_asked() {
        let o = json!({"kind": "Secret", "metadata": {"name": "s", "managedFields": [{}],
            "annotations": {LAST_APPLIED: "{\"stringData\":{\"k\":\"secret\"}}"}},
            "data": {"k": "c2VjcmV0"}});
        let y = to_yaml(api::SECRETS, o.clone(), false);
        assert!(
            !y.contains("stringData"),
            "kubectl's last-applied copy shows the value: {y}"
        );
        assert!(
            !y.contains("c2VjcmV0") && y.contains("<hidden>") && !y.contains("managedFields"),
            "{y}"
        );
        assert!(to_yaml(api::SECRETS, o, true).contains("c2VjcmV0"));
    }

    #[test]
    fn pod_status_words() {
        let p = json!({"status": {"phase": "Pending", "containerStatuses": [{"name": "c", "ready": false, "state": {"waiting": {"reason": "ContainerCreating"}}}]}, "spec": {"containers": [{"name": "c"}]}});
        assert_eq!(pod_status(&p), "ContainerCreating");
        assert_eq!(pod_ready(&p), "0/1");
        assert_eq!(pod_status(&json!({})), "Pending");
    }
}

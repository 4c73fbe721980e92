//! The crate layering rules of DESIGN.md, checked against `cargo metadata`.
//!
//! A crate's layer is its top-level folder. Within a layer crates may depend on each other; across
//! layers only these edges are allowed:
//!
//! | from      | may depend on                                                          |
//! |-----------|------------------------------------------------------------------------|
//! | runtime/  | nothing of ours                                                        |
//! | cni/      | the API crates of control/                                             |
//! | shim/     | the types crates of runtime/ and cni/                                  |
//! | kubelet/  | the types crates of shim/, the API crates of control/                  |
//! | control/  | nothing outside control/                                               |
//! | tests/    | anything                                                               |
//! | common/   | nothing of ours outside common/                                        |
//!
//! common/ holds small leaf crates every layer may use (e.g. `pea-godur`, Go's duration
//! syntax, which kubelet, shim and proxy flags all take): they depend on no other crate of
//! ours, so using one reaches past no layer.
//!
//! A *types crate* is named `*-types`; an *API crate* of control/ is named `*-api`, `*-types` or
//! `*-client`. Inside control/, the API clients (the scheduler, the controllers) may not depend on
//! the API server or its store (`pea-control`, `pea-control-store`): they talk to the API only;
//! pea-dns, pea-ingress, pea-dashboard and pea-federation are such clients too. Nothing but tests/ may depend on tests/. Every kind of dependency counts (normal,
//! build, dev). Separately, the OCI runtime library (`libcontainer`) may only be linked into
//! runtime/ and tests/: the shim runs `pea-runtime` as a program, never in its tokio process.
//!
//! Inside cni/, the node programs (`pea-cni` with pea-flanneld, `pea-proxy`) are separate programs
//! beside each other: neither links the other (pea-proxy reaches the cluster through the API and
//! the kernel only; the masquerade mark it shares with pea-cni is a documented constant).
//! The `pea` CLI (`pea-cli`, control/pea) links no workspace crate: it runs the programs.
//!
//! The node agent (`pea-agent`, kubelet/agent) is k3s's agent: the node's programs — pea-shim,
//! pea-kubelet, pea-flanneld (in pea-cni) and pea-proxy — linked into one process, so their code
//! is mapped once. It may link exactly those four crates (their `cli` modules), and nothing may
//! link it; the programs keep talking to each other through their interfaces only (CRI socket,
//! the API), which the rules above keep true of their crates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

/// A top-level folder of the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    Runtime,
    Shim,
    Kubelet,
    Cni,
    Control,
    Tests,
    /// Shared leaf crates (common/): anyone may depend on them, they on nothing of ours.
    Common,
}

impl Layer {
    pub fn from_folder(folder: &str) -> Option<Self> {
        Some(match folder {
            "runtime" => Layer::Runtime,
            "shim" => Layer::Shim,
            "kubelet" => Layer::Kubelet,
            "cni" => Layer::Cni,
            "control" => Layer::Control,
            "tests" => Layer::Tests,
            "common" => Layer::Common,
            _ => return None,
        })
    }
}

/// A workspace crate and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub layer: Layer,
}

impl Member {
    fn is_types(&self) -> bool {
        self.name.ends_with("-types")
    }

    fn is_api(&self) -> bool {
        self.layer == Layer::Control
            && ["-api", "-types", "-client"]
                .iter()
                .any(|s| self.name.ends_with(s))
    }
}

/// The API server's crates inside control/.
const CONTROL_SERVER: &[&str] = &["pea-control", "pea-control-store"];
/// control/ crates that are clients of the API (like kube-scheduler and
/// kube-controller-manager): never linked to the server's internals.
const CONTROL_CLIENTS: &[&str] = &[
    "pea-scheduler",
    "pea-controllers",
    "pea-dns",
    "pea-ingress",
    "pea-dashboard",
    // the federation controller: a client of the federation API and of its members' APIs
    "pea-federation",
];

/// cni/ crates that are node programs of their own: none may depend on another.
const CNI_PROGRAMS: &[&str] = &["pea-cni", "pea-proxy"];

/// The `pea` CLI (control/pea): it starts the programs and talks to their interfaces only, so
/// it links no workspace crate at all.
const PROGRAM_DRIVERS: &[&str] = &["pea-cli"];

/// The node agent (kubelet/agent) and the node programs it runs in its one process.
const NODE_AGENTS: &[&str] = &["pea-agent"];
const NODE_PROGRAMS: &[&str] = &["pea-shim", "pea-kubelet", "pea-cni", "pea-proxy"];

/// Whether `from` may depend on `to` (both workspace crates).
pub fn allowed(from: &Member, to: &Member) -> bool {
    if NODE_AGENTS.contains(&to.name.as_str()) {
        return from.layer == Layer::Tests;
    }
    if NODE_AGENTS.contains(&from.name.as_str()) {
        return NODE_PROGRAMS.contains(&to.name.as_str()) || to.layer == Layer::Common;
    }
    if PROGRAM_DRIVERS.contains(&from.name.as_str()) {
        return false;
    }
    if from.layer == Layer::Cni
        && to.layer == Layer::Cni
        && from.name != to.name
        && CNI_PROGRAMS.contains(&from.name.as_str())
        && CNI_PROGRAMS.contains(&to.name.as_str())
    {
        return false;
    }
    if from.layer == Layer::Control
        && to.layer == Layer::Control
        && CONTROL_CLIENTS.contains(&from.name.as_str())
        && CONTROL_SERVER.contains(&to.name.as_str())
    {
        return false;
    }
    if from.layer == to.layer || from.layer == Layer::Tests {
        return true;
    }
    match (from.layer, to.layer) {
        (_, Layer::Tests) => false,
        (_, Layer::Common) => true,
        (Layer::Cni, Layer::Control) => to.is_api(),
        (Layer::Shim, Layer::Runtime | Layer::Cni) => to.is_types(),
        (Layer::Kubelet, Layer::Shim) => to.is_types(),
        (Layer::Kubelet, Layer::Control) => to.is_api(),
        _ => false,
    }
}

/// External crates that only some layers may link (transitively, normal dependencies).
const RESTRICTED: &[(&str, &[Layer])] = &[("libcontainer", &[Layer::Runtime, Layer::Tests])];

/// Checks `cargo metadata --format-version 1` output; returns one line per violation.
pub fn check(metadata: &Value) -> Result<Vec<String>, String> {
    let root = metadata["workspace_root"]
        .as_str()
        .ok_or("metadata has no workspace_root")?;
    let member_ids: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .ok_or("metadata has no workspace_members")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let packages = metadata["packages"]
        .as_array()
        .ok_or("metadata has no packages")?;

    let mut violations = Vec::new();
    let mut members: BTreeMap<String, Member> = BTreeMap::new();
    let mut id_to_name: BTreeMap<&str, &str> = BTreeMap::new();
    for p in packages {
        let (Some(id), Some(name)) = (p["id"].as_str(), p["name"].as_str()) else {
            continue;
        };
        id_to_name.insert(id, name);
        if !member_ids.contains(id) {
            continue;
        }
        let manifest = p["manifest_path"].as_str().unwrap_or_default();
        let rel = Path::new(manifest)
            .strip_prefix(root)
            .map_err(|_| format!("{name}: {manifest} is outside {root}"))?;
        let folder = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default();
        match Layer::from_folder(folder) {
            Some(layer) if rel.components().count() > 1 => {
                members.insert(
                    name.to_string(),
                    Member {
                        name: name.to_string(),
                        layer,
                    },
                );
            }
            _ => violations.push(format!(
                "{name}: lives in {}, not under one of runtime/ shim/ kubelet/ cni/ control/ tests/ common/",
                rel.display()
            )),
        }
    }

    for p in packages {
        let Some(name) = p["name"].as_str() else {
            continue;
        };
        let Some(from) = members.get(name) else {
            continue;
        };
        for dep in p["dependencies"].as_array().into_iter().flatten() {
            let Some(dep_name) = dep["name"].as_str() else {
                continue;
            };
            if let Some(to) = members.get(dep_name) {
                if !allowed(from, to) {
                    let kind = dep["kind"].as_str().unwrap_or("normal");
                    violations.push(format!(
                        "{name} ({:?}) depends on {dep_name} ({:?}) [{kind}]: not allowed by the layering in DESIGN.md",
                        from.layer, to.layer
                    ));
                }
            }
        }
    }

    // Transitive normal dependencies from the resolve graph.
    if let Some(nodes) = metadata["resolve"]["nodes"].as_array() {
        let graph: BTreeMap<&str, Vec<&str>> = nodes
            .iter()
            .filter_map(|n| {
                let id = n["id"].as_str()?;
                let deps =
                    n["deps"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|d| {
                            d["dep_kinds"].as_array().into_iter().flatten().any(|k| {
                                k["kind"].is_null() || k["kind"].as_str() == Some("normal")
                            })
                        })
                        .filter_map(|d| d["pkg"].as_str())
                        .collect();
                Some((id, deps))
            })
            .collect();
        for id in &member_ids {
            let Some(member) = id_to_name.get(id).and_then(|n| members.get(*n)) else {
                continue;
            };
            let mut seen = BTreeSet::new();
            let mut stack = vec![*id];
            while let Some(cur) = stack.pop() {
                for next in graph.get(cur).into_iter().flatten() {
                    if seen.insert(*next) {
                        stack.push(next);
                    }
                }
            }
            for (krate, layers) in RESTRICTED {
                let linked = seen
                    .iter()
                    .any(|d| id_to_name.get(d).copied() == Some(*krate));
                if linked && !layers.contains(&member.layer) {
                    violations.push(format!(
                        "{} ({:?}) links {krate}, which only {layers:?} may link",
                        member.name, member.layer
                    ));
                }
            }
        }
    }
    Ok(violations)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn m(name: &str, layer: Layer) -> Member {
        Member {
            name: name.into(),
            layer,
        }
    }

    #[test]
    fn rules() {
        let runtime = m("pea-runtime", Layer::Runtime);
        let runtime_types = m("pea-runtime-types", Layer::Runtime);
        let shim = m("pea-shim", Layer::Shim);
        let cri_types = m("pea-cri-types", Layer::Shim);
        let kubelet = m("pea-kubelet", Layer::Kubelet);
        let cni = m("pea-cni", Layer::Cni);
        let api = m("pea-api", Layer::Control);
        let server = m("pea-control", Layer::Control);
        let tests = m("pea-tests", Layer::Tests);

        assert!(!allowed(&shim, &runtime), "shim links the runtime library");
        assert!(allowed(&shim, &runtime_types));
        assert!(!allowed(&runtime, &api));
        assert!(allowed(&cni, &api));
        assert!(!allowed(&cni, &server));
        assert!(allowed(&kubelet, &cri_types));
        assert!(!allowed(&kubelet, &shim));
        assert!(allowed(&kubelet, &api));
        assert!(!allowed(&server, &cni));
        assert!(!allowed(&server, &tests));
        assert!(allowed(&tests, &server));
        assert!(allowed(&server, &api));
        let scheduler = m("pea-scheduler", Layer::Control);
        let controllers = m("pea-controllers", Layer::Control);
        let store = m("pea-control-store", Layer::Control);
        assert!(
            !allowed(&scheduler, &server),
            "scheduler links the API server"
        );
        assert!(!allowed(&scheduler, &store), "scheduler links the store");
        assert!(!allowed(&controllers, &server));
        assert!(!allowed(&controllers, &store));
        assert!(allowed(&scheduler, &api));
        for client in ["pea-dns", "pea-ingress", "pea-dashboard"] {
            let c = m(client, Layer::Control);
            assert!(!allowed(&c, &server), "{client} links the API server");
            assert!(!allowed(&c, &store), "{client} links the store");
            assert!(allowed(&c, &api));
        }
        assert!(
            allowed(&server, &scheduler),
            "the server may run the scheduler in-process"
        );
        assert!(
            allowed(&server, &m("pea-dashboard", Layer::Control)),
            "the server may mount the dashboard"
        );
        let proxy = m("pea-proxy", Layer::Cni);
        assert!(allowed(&proxy, &api), "pea-proxy is an API client");
        assert!(!allowed(&proxy, &server), "pea-proxy links the API server");
        assert!(!allowed(&proxy, &store), "pea-proxy links the store");
        assert!(!allowed(&proxy, &cni), "pea-proxy links pea-cni");
        assert!(!allowed(&cni, &proxy), "pea-cni links pea-proxy");
        assert!(allowed(&tests, &proxy));
        let cli = m("pea-cli", Layer::Control);
        for to in [&api, &server, &scheduler, &kubelet, &cni, &proxy] {
            assert!(!allowed(&cli, to), "pea-cli links {}", to.name);
        }
        let godur = m("pea-godur", Layer::Common);
        for from in [&runtime, &shim, &kubelet, &cni, &proxy, &server, &tests] {
            assert!(
                allowed(from, &godur),
                "{} may use a common/ crate",
                from.name
            );
        }
        for to in [&runtime_types, &cri_types, &api, &kubelet] {
            assert!(!allowed(&godur, to), "a common/ crate links {}", to.name);
        }
    }

    #[test]
    fn the_node_agent_links_the_node_programs_and_nothing_links_it() {
        let agent = m("pea-agent", Layer::Kubelet);
        for to in [
            m("pea-shim", Layer::Shim),
            m("pea-kubelet", Layer::Kubelet),
            m("pea-cni", Layer::Cni),
            m("pea-proxy", Layer::Cni),
        ] {
            assert!(allowed(&agent, &to), "pea-agent may link {}", to.name);
        }
        for to in [
            m("pea-runtime", Layer::Runtime),
            m("pea-control", Layer::Control),
            m("pea-dns", Layer::Control),
        ] {
            assert!(!allowed(&agent, &to), "pea-agent links {}", to.name);
        }
        for from in [
            m("pea-kubelet", Layer::Kubelet),
            m("pea-cli", Layer::Control),
            m("pea-shim", Layer::Shim),
        ] {
            assert!(!allowed(&from, &agent), "{} links pea-agent", from.name);
        }
        assert!(allowed(&m("pea-tests", Layer::Tests), &agent));
    }

    fn package(name: &str, folder: &str, deps: &[&str]) -> Value {
        json!({
            "id": format!("{name} 0.1.0 (path+file:///ws/{folder})"),
            "name": name,
            "manifest_path": format!("/ws/{folder}/Cargo.toml"),
            "dependencies": deps.iter().map(|d| json!({"name": d, "kind": null})).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn check_reports_forbidden_edges_and_restricted_links() {
        let pkgs = [
            package("pea-shim", "shim", &["pea-runtime"]),
            package("pea-runtime", "runtime", &["libcontainer"]),
            package("pea-kubelet", "kubelet", &[]),
            package("stray", "tools", &[]),
        ];
        let id = |n: &str| pkgs.iter().find(|p| p["name"] == n).unwrap()["id"].clone();
        let lc = json!({"id": "libcontainer 0.7.0", "name": "libcontainer", "manifest_path": "/reg/libcontainer/Cargo.toml", "dependencies": []});
        let metadata = json!({
            "workspace_root": "/ws",
            "workspace_members": [id("pea-shim"), id("pea-runtime"), id("pea-kubelet"), id("stray")],
            "packages": pkgs.iter().cloned().chain([lc]).collect::<Vec<_>>(),
            "resolve": {"nodes": [
                {"id": id("pea-shim"), "deps": [{"pkg": id("pea-runtime"), "dep_kinds": [{"kind": null}]}]},
                {"id": id("pea-runtime"), "deps": [{"pkg": "libcontainer 0.7.0", "dep_kinds": [{"kind": null}]}]},
                {"id": id("pea-kubelet"), "deps": []},
                {"id": "libcontainer 0.7.0", "deps": []},
            ]},
        });
        let v = check(&metadata).unwrap();
        assert_eq!(v.len(), 3, "{v:#?}");
        assert!(v
            .iter()
            .any(|l| l.starts_with("stray: lives in tools/Cargo.toml")));
        assert!(v
            .iter()
            .any(|l| l.starts_with("pea-shim (Shim) depends on pea-runtime")));
        assert!(v
            .iter()
            .any(|l| l.starts_with("pea-shim (Shim) links libcontainer")));
    }
}

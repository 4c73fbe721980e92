//! The pod's resolver configuration from dnsPolicy, as kubelet's `dns.go`: ClusterFirst uses the
//! cluster DNS and search path (falling back to Default when no cluster DNS is configured),
//! Default copies the node's resolv.conf, None takes only dnsConfig; dnsConfig merges on top.

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;

/// What the node's resolv.conf says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostResolv {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl HostResolv {
    pub fn parse(text: &str) -> Self {
        let mut r = HostResolv::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut f = line.split_whitespace();
            match f.next() {
                Some("nameserver") => r.servers.extend(f.next().map(str::to_string)),
                Some("search") | Some("domain") => {
                    r.searches = f.map(str::to_string).collect();
                }
                Some("options") => r.options.extend(f.map(str::to_string)),
                _ => {}
            }
        }
        r
    }
}

/// kubelet limits: 6 search domains (glibc before 2.26) would be 6; kube allows 32 since 1.28.
const MAX_SEARCHES: usize = 32;
const MAX_SERVERS: usize = 3;

pub fn dns_config(
    pod: &Pod,
    cluster_dns: &[String],
    cluster_domain: &str,
    host: &HostResolv,
) -> cri::DnsConfig {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.clone())
        .unwrap_or_else(|| "ClusterFirst".into());
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let cluster_first = match policy.as_str() {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let mut cfg = match policy.as_str() {
        "None" => cri::DnsConfig::default(),
        _ if cluster_first && !cluster_dns.is_empty() => {
            let mut searches = vec![
                format!("{ns}.svc.{cluster_domain}"),
                format!("svc.{cluster_domain}"),
                cluster_domain.to_string(),
            ];
            searches.extend(host.searches.iter().cloned());
            cri::DnsConfig {
                servers: cluster_dns.to_vec(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        // Default, and ClusterFirst without a cluster DNS (kubelet falls back and warns).
        _ => cri::DnsConfig {
            servers: host.servers.clone(),
            searches: host.searches.clone(),
            options: host.options.clone(),
        },
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        for s in extra.nameservers.iter().flatten() {
            if !cfg.servers.contains(s) {
                cfg.servers.push(s.clone());
            }
        }
        for s in extra.searches.iter().flatten() {
            if !cfg.searches.contains(s) {
                cfg.searches.push(s.clone());
            }
        }
        for o in extra.options.iter().flatten() {
            let Some(name) = o.name.as_deref() else {
                continue;
            };
            cfg.options.retain(|x| x.split(':').next() != Some(name));
            cfg.options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            });
        }
    }
    cfg.servers.truncate(MAX_SERVERS);
    cfg.searches.truncate(MAX_SEARCHES);
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(policy: Option<&str>, host_net: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "web"},
            "spec": {"containers": [], "dnsPolicy": policy, "hostNetwork": host_net}
        }))
        .unwrap()
    }

    #[test]
    fn policies() {
        let host = HostResolv::parse("nameserver 1.1.1.1\nsearch lan\noptions edns0\n");
        let dns = ["10.96.0.10".to_string()];
        let c = dns_config(&pod(None, false), &dns, "cluster.local", &host);
        assert_eq!(c.servers, ["10.96.0.10"]);
        assert_eq!(
            c.searches,
            [
                "web.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "lan"
            ]
        );
        assert_eq!(c.options, ["ndots:5"]);
        // hostNetwork + ClusterFirst behaves as Default.
        let c = dns_config(&pod(None, true), &dns, "cluster.local", &host);
        assert_eq!(c.servers, ["1.1.1.1"]);
        let c = dns_config(
            &pod(Some("ClusterFirstWithHostNet"), true),
            &dns,
            "cluster.local",
            &host,
        );
        assert_eq!(c.servers, ["10.96.0.10"]);
        let c = dns_config(&pod(Some("None"), false), &dns, "cluster.local", &host);
        assert!(c.servers.is_empty());
        // No cluster DNS configured: ClusterFirst falls back to the host's.
        let c = dns_config(&pod(None, false), &[], "cluster.local", &host);
        assert_eq!(c.servers, ["1.1.1.1"]);
    }
}

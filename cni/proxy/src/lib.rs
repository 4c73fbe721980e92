//! pea-proxy: kube-proxy's nftables mode for pea's nodes. A client of the Kubernetes API only
//! (Services and EndpointSlices through kube-rs watchers); it programs one nftables table per
//! family (`ip pea-proxy`, `ip6 pea-proxy`): a full sync is one `nft -f -` transaction, an
//! incremental one an `nft -f -` text that only adds (skipped when there is nothing to add)
//! followed by one nfnetlink batch of element changes and deletions.
//!
//! Layers, from the API to the kernel: [`watch`] (caches and what changed) → [`model`] (checked
//! service ports and endpoints) → [`ruleset`] (chains, sets, map elements per Service) →
//! [`transaction`] (the nft text and the netlink batch of one sync) → [`nft`] and
//! [`nft_netlink`] (sending them); [`proxier`] ties them
//! together, [`conntrack`] flushes stale UDP flows, [`node`] reads this node's IPs and zone from its Node, [`events`] posts Warning Events on Services
//! with bad input, [`metrics`] serves `/metrics` and `/healthz`, and [`health_check`] the
//! health check node ports of `externalTrafficPolicy: Local` load balancers.

pub mod claims;
pub mod cli;
pub mod conntrack;
pub mod events;
pub mod health_check;
pub mod metrics;
pub mod model;
pub mod nft;
pub mod nft_netlink;
pub mod node;
pub mod proxier;
pub mod ruleset;
pub mod run;
pub mod transaction;
pub mod watch;

#[cfg(test)]
mod golden_tests;

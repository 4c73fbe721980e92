//! pea-images: the image side of pea's CRI shim.
//!
//! - [`reference`], [`manifest`], [`hosts`], [`auth`], [`client`]: a small streaming client for
//!   OCI registries (mirrors like containerd's hosts.toml, Basic and Bearer auth, retries, Range
//!   resume).
//! - [`store`], [`pull`], [`unpack`]: content store by digest, overlay snapshots by ChainID,
//!   one streaming pass per layer, crash repair.
//! - [`rootfs`]: a container rootfs as an overlay mount of a snapshot chain.
//! - [`gc`]: image GC: the kubelet's policy, layer-aware variants and two policies that decide
//!   per layer from the node's use history (GDSF and learned).
//! - [`sim`]: a GC tuning simulator (traces of four kinds, a node recording format, policy
//!   comparison, threshold recommendation, SVG plots).

pub mod auth;
pub mod client;
pub mod clock;
pub mod digest;
pub mod fsutil;
pub mod gc;
pub mod hosts;
pub mod manifest;
pub mod pull;
pub mod reference;
pub mod rootfs;
pub mod sim;
pub mod store;
pub mod unpack;
mod usage;

pub use client::{Client, ClientConfig};
pub use digest::Digest;
pub use pull::{LayerAction, NoProgress, PullError, PullObserver, PullReport};
pub use reference::Reference;
pub use store::{ImageRecord, Store, StoreError, StoreOptions};

//! pea-control: a Kubernetes-compatible API server over a revisioned store
//! ([`pea_control_store`]): embedded SQLite by default, or etcd v3.
//!
//! Request flow: [`server`] (TLS, authentication, body limits) → [`api::Api::handle`] (routing,
//! authorization) → one handler per verb in [`verbs`] → the store. Errors become a Kubernetes
//! `Status` in exactly one place ([`status::ApiError::to_status`]).

pub mod admission;
pub mod api;
pub mod auth;
pub mod authz;
pub mod cel;
pub mod certificates;
pub mod crd;
pub mod defaults;
pub mod discovery;
pub mod events_v1;
pub mod gc;
pub mod gc_sweep;
pub mod hpa_conversion;
pub mod ingressclass;
pub mod inuse_protection;
pub mod ipalloc;
pub mod job_validation;
pub mod kubeconfig;
pub mod kubelet_proxy;
pub mod kubernetes_service;
pub mod limitranger;
pub mod managed;
pub mod metrics;
pub mod metrics_listener;
pub mod node_authz;
pub mod objects;
pub mod openapi;
pub mod openapi_v2;
pub mod openapi_v2_pb;
pub mod pki;
pub mod portalloc;
pub mod priority;
pub mod protobuf;
pub mod qos;
pub mod quota_admission;
pub mod ranges;
pub mod rbac;
pub mod request;
pub mod resource_metrics;
pub mod resources;
pub mod selectors;
pub mod semantic;
pub mod server;
pub mod service_alloc;
pub mod serviceaccount;
pub mod status;
pub mod storage;
pub mod table;
pub mod validation;
pub mod verbs;
pub mod watch_cache;

//! Integration test binary `control`: pea-control: the API server, store, scheduler, controllers, dashboard and federation.
//!
//! The test files are modules of a few binaries instead of a binary each: every binary
//! carries the line tables of all the code it links, and ~85 of them filled a CI disk.
//! nextest still runs each test in a process of its own. A new file is declared here
//! (`meta` checks that every file is), and picked with `-E 'test(/^FILE::/)'`.

mod control_admission;
mod control_admission_config;
mod control_api;
mod control_cel;
mod control_controller_identity;
mod control_controllers;
mod control_crash;
mod control_crd;
mod control_crd_conversion;
mod control_daemonset;
mod control_drain;
mod control_event_repeats;
mod control_events_v1;
mod control_gc;
mod control_hpa;
mod control_job_backoff;
mod control_job_events;
mod control_job_metrics;
mod control_jobs;
mod control_kubectl;
mod control_kubelet_proxy;
mod control_node_authz;
mod control_openapi;
mod control_protobuf;
mod control_quota;
mod control_rbac;
mod control_review;
mod control_sa_token;
mod control_scheduler;
mod control_scheduler_events;
mod control_scheduler_metrics;
mod control_serviceaccount_legacy;
mod control_services;
mod control_statefulset;
mod control_storage;
mod control_store;
mod dashboard;
mod federation;
mod federation_pull;

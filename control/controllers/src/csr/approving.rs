//! `csrapproving` (kube's pkg/controller/certificates/approver/sarapprove.go): a pending
//! kubelet client CSR is approved when a SubjectAccessReview for its requestor allows `create`
//! on `certificatesigningrequests/selfnodeclient` (the requestor is the node the certificate
//! names: a renewal) or `certificatesigningrequests/nodeclient` (a new node, e.g. a bootstrap
//! token bound by kubeadm's `kubeadm:node-autoapprove-bootstrap`). pea adds one rule
//! ([`super::addon_client`]): a node's `kubernetes.io/kube-apiserver-client` CSR for one of its
//! add-ons' users is approved when a SubjectAccessReview allows the node `create` on
//! `certificatesigningrequests/selfaddonclient` (pea's bootstrap policy grants it to
//! `system:nodes`), any other from a node denied. Other CSRs wait for a person
//! (`kubectl certificate approve|deny`).
//!
//! A CSR a rule recognizes but the review does not allow is left pending and retried with the
//! queue's backoff, as kube's controller does (its `IgnorableError`): granting the permission
//! later approves it without the requestor asking again.

use std::sync::Arc;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use tracing::Instrument;

use super::addon_client::{self, Verdict};
use super::{
    check_kubelet_client, has_condition, parse_request, subject, CLIENT_SIGNER,
    KUBELET_CLIENT_SIGNER,
};
use crate::informer::{Cache, Change};
use crate::queue::{run_workers, Queue, Requeue};
use crate::{Clock, Informers};

#[derive(Debug, thiserror::Error)]
pub enum ApprovingError {
    #[error("csr {name}: {what}: {source}")]
    Api {
        name: String,
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    /// kube's message for a recognized CSR whose requestor the review does not allow.
    #[error("recognized csr {name:?} as {tried:?} but subject access review was not approved for {user:?}: left pending")]
    NotAllowed {
        name: String,
        tried: Vec<&'static str>,
        user: String,
    },
}

pub struct CsrApprover {
    client: Client,
    clock: Clock,
    csrs: Arc<Cache<CertificateSigningRequest>>,
    queue: Arc<Queue>,
}

impl std::fmt::Debug for CsrApprover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsrApprover").finish_non_exhaustive()
    }
}

fn not_allowed(csr: &CertificateSigningRequest, tried: Vec<&'static str>) -> ApprovingError {
    ApprovingError::NotAllowed {
        name: csr.name_any(),
        tried,
        user: csr.spec.username.clone().unwrap_or_default(),
    }
}

impl CsrApprover {
    pub fn register(informers: &Informers, client: Client, clock: Clock) -> Arc<Self> {
        let informer = &informers.certificatesigningrequests;
        let c = Arc::new(Self {
            client,
            clock,
            csrs: informer.cache(),
            queue: Queue::new(),
        });
        let q = c.queue.clone();
        informer.add_handler(move |ch| {
            if let Change::Added(csr) | Change::Updated { new: csr, .. } = ch {
                q.add(csr.name_any());
            }
        });
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.csrs.wait_synced().await;
        let q = self.queue.clone();
        run_workers(q, workers, "csrapproving", move |name| {
            let c = self.clone();
            async move {
                let span = tracing::debug_span!("approve_csr", csr = %name);
                c.sync(&name).instrument(span).await
            }
        })
        .await;
    }

    async fn sync(&self, name: &str) -> Result<Requeue, ApprovingError> {
        let Some(csr) = self.csrs.get("", name) else {
            return Ok(Requeue::default());
        };
        if has_condition(&csr, "Approved") || has_condition(&csr, "Denied") {
            return Ok(Requeue::default());
        }
        if csr.spec.signer_name == CLIENT_SIGNER {
            match addon_client::review(&csr) {
                Verdict::NotOurs => {}
                Verdict::Approve(message) => {
                    if !self.allowed(&csr, addon_client::SUBRESOURCE).await? {
                        return Err(not_allowed(&csr, vec![addon_client::SUBRESOURCE]));
                    }
                    self.decide(&csr, "Approved", "AutoApproved", message)
                        .await?;
                    tracing::info!(csr = %name, via = addon_client::SUBRESOURCE, "auto-approved an add-on client certificate for a node");
                }
                Verdict::Deny(message) => {
                    tracing::warn!(csr = %name, requestor = ?csr.spec.username, %message, "denied a node's client certificate request");
                    self.decide(&csr, "Denied", "AddOnIdentityRefused", message)
                        .await?;
                }
            }
            return Ok(Requeue::default());
        }
        if csr.spec.signer_name != KUBELET_CLIENT_SIGNER {
            return Ok(Requeue::default());
        }
        let Ok(req) = parse_request(&csr) else {
            return Ok(Requeue::default()); // the signer marks it failed
        };
        let usages = csr.spec.usages.clone().unwrap_or_default();
        if check_kubelet_client(&req, &usages).is_err() {
            return Ok(Requeue::default());
        }
        let (cn, _) = subject(&req);
        let mut subresources = Vec::new();
        if csr.spec.username.as_deref() == Some(cn.as_str()) {
            subresources.push("selfnodeclient");
        }
        subresources.push("nodeclient");
        for sub in subresources.iter().copied() {
            if self.allowed(&csr, sub).await? {
                self.decide(
                    &csr,
                    "Approved",
                    "AutoApproved",
                    "Auto approving kubelet client certificate after SubjectAccessReview.".into(),
                )
                .await?;
                tracing::info!(csr = %name, via = sub, "auto-approved kubelet client certificate");
                return Ok(Requeue::default());
            }
        }
        Err(not_allowed(&csr, subresources))
    }

    async fn allowed(
        &self,
        csr: &CertificateSigningRequest,
        subresource: &str,
    ) -> Result<bool, ApprovingError> {
        let spec = &csr.spec;
        let sar = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: spec.username.clone(),
                groups: spec.groups.clone(),
                uid: spec.uid.clone(),
                extra: spec.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    group: Some("certificates.k8s.io".into()),
                    resource: Some("certificatesigningrequests".into()),
                    subresource: Some(subresource.into()),
                    verb: Some("create".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviewed = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &sar)
            .await
            .map_err(|source| ApprovingError::Api {
                name: csr.name_any(),
                what: "reviewing access",
                source,
            })?;
        Ok(reviewed.status.is_some_and(|s| s.allowed))
    }

    /// Adds the `kind` (Approved or Denied) condition through the approval subresource.
    async fn decide(
        &self,
        csr: &CertificateSigningRequest,
        kind: &str,
        reason: &str,
        message: String,
    ) -> Result<(), ApprovingError> {
        let mut next = csr.clone();
        let now = Time(self.clock.now());
        next.status
            .get_or_insert_with(CertificateSigningRequestStatus::default)
            .conditions
            .get_or_insert_with(Vec::new)
            .push(CertificateSigningRequestCondition {
                type_: kind.into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(message),
                last_update_time: Some(now.clone()),
                last_transition_time: Some(now),
            });
        let body = serde_json::to_vec(&next).unwrap_or_default();
        let name = csr.name_any();
        Api::<CertificateSigningRequest>::all(self.client.clone())
            .replace_subresource("approval", &name, &PostParams::default(), body)
            .await
            .map_err(|source| ApprovingError::Api {
                name: name.clone(),
                what: "deciding",
                source,
            })?;
        Ok(())
    }
}

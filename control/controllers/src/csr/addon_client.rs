//! pea's add-on client rule for `csrapproving`: a node (a requestor authenticated as
//! `system:node:NAME` in `system:nodes`) may get a `kubernetes.io/kube-apiserver-client`
//! certificate for its host add-ons' own users — `system:kube-proxy` (pea-proxy) and
//! `system:pea-flanneld` — and nothing else.
//!
//! kube's csrapproving auto-approves only kubelet client CSRs; kubeadm gives kube-proxy and
//! flannel their identities as DaemonSet ServiceAccount tokens, which every node running those
//! pods holds. pea runs them as host processes, so a joined worker asks for them as k3s's agent
//! asks its server for `client-kube-proxy.crt` with the node's credentials. What a node gains
//! is exactly what each kubeadm node already holds in those pods' tokens, no more:
//! - the subject must be one CN from [`ADDON_USERS`] and nothing else: no organization (so no
//!   group, never `system:masters` or `system:nodes`), no other attribute;
//! - no subject alternative names; usages among digital signature, key encipherment and client
//!   auth, with client auth (a client certificate, never a serving one);
//! - only a node may ask: the requestor fields are set by the API server from the
//!   authenticated user, never from the body.
//!
//! A node's CSR of that signer that breaks a rule is denied with the reason, so nothing is
//! signed and the node's operator sees why; anyone else's waits for a person, as in kube.
//!
//! One that keeps the rules is approved only if a SubjectAccessReview allows the node `create`
//! on `certificatesigningrequests/`[`SUBRESOURCE`] (as kube gates node client CSRs on
//! `nodeclient`/`selfnodeclient`): pea-control's bootstrap policy binds the ClusterRole
//! `pea:certificates.k8s.io:certificatesigningrequests:selfaddonclient` to `system:nodes`, so
//! an administrator narrows the rule to some nodes, or switches it off, through RBAC. Without
//! the permission the CSR is left pending, as kube leaves a kubelet's.

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use super::{parse_request, CLIENT_SIGNER};

/// The `certificatesigningrequests` subresource a node must be allowed to `create` (group
/// `certificates.k8s.io`) for this rule to approve its request: its own add-ons' client
/// certificates, in the style of kube's `selfnodeclient`.
pub const SUBRESOURCE: &str = "selfaddonclient";

/// The users a node may get client certificates for (pea-proxy's, pea-flanneld's).
pub const ADDON_USERS: &[&str] = &["system:kube-proxy", "system:pea-flanneld"];

const NODES_GROUP: &str = "system:nodes";
const NODE_PREFIX: &str = "system:node:";

/// What the rule says about one CSR.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not a node's request of the client signer: the rule has no say.
    NotOurs,
    /// Approve, with the condition's message.
    Approve(String),
    /// Deny, with the condition's message.
    Deny(String),
}

/// The rule applied to `csr` (the controller skips decided ones before asking).
pub fn review(csr: &CertificateSigningRequest) -> Verdict {
    let spec = &csr.spec;
    if spec.signer_name != CLIENT_SIGNER {
        return Verdict::NotOurs;
    }
    let user = spec.username.as_deref().unwrap_or_default();
    let is_node = user
        .strip_prefix(NODE_PREFIX)
        .is_some_and(|n| !n.is_empty())
        && spec
            .groups
            .as_ref()
            .is_some_and(|g| g.iter().any(|g| g == NODES_GROUP));
    if !is_node {
        return Verdict::NotOurs;
    }
    match check(csr) {
        Ok(cn) => Verdict::Approve(format!(
            "Auto approving {cn}'s client certificate requested by node {user}."
        )),
        Err(why) => Verdict::Deny(format!(
            "A node may get a kube-apiserver-client certificate only for an add-on user ({}) with no organization, no subject alternative names and client auth usage: {why}.",
            ADDON_USERS.join(", ")
        )),
    }
}

/// The add-on user the request names, or why it may not be signed for a node.
fn check(csr: &CertificateSigningRequest) -> Result<String, String> {
    let req = parse_request(csr)?;
    let mut cn = None;
    for (kind, value) in req.params.distinguished_name.iter() {
        match kind {
            rcgen::DnType::CommonName if cn.is_none() => {
                cn = Some(super::dn_text(value).unwrap_or_default())
            }
            rcgen::DnType::CommonName => return Err("more than one common name".into()),
            rcgen::DnType::OrganizationName => {
                return Err(format!(
                    "subject organization {:?} would be a group",
                    super::dn_text(value).unwrap_or_default()
                ))
            }
            other => return Err(format!("subject attribute {other:?} is not allowed")),
        }
    }
    let cn = cn.ok_or("the subject has no common name")?;
    if !ADDON_USERS.contains(&cn.as_str()) {
        return Err(format!("subject common name {cn:?} is not an add-on user"));
    }
    if !req.params.subject_alt_names.is_empty() {
        return Err("subject alternative names are not allowed".into());
    }
    let usages = csr.spec.usages.clone().unwrap_or_default();
    let allowed = ["digital signature", "key encipherment", "client auth"];
    if let Some(u) = usages.iter().find(|u| !allowed.contains(&u.as_str())) {
        return Err(format!("usage {u:?} is not allowed"));
    }
    if !usages.iter().any(|u| u == "client auth") {
        return Err("missing required usage \"client auth\"".into());
    }
    Ok(cn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec;
    use k8s_openapi::ByteString;

    fn request(dn: &[(rcgen::DnType, &str)], sans: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let mut name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            name.push(t.clone(), *v);
        }
        p.distinguished_name = name;
        p.serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap()
            .into_bytes()
    }

    fn csr(
        user: &str,
        groups: &[&str],
        signer: &str,
        req: Vec<u8>,
        usages: &[&str],
    ) -> CertificateSigningRequest {
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                request: ByteString(req),
                signer_name: signer.into(),
                username: Some(user.into()),
                groups: Some(groups.iter().map(|g| g.to_string()).collect()),
                usages: Some(usages.iter().map(|u| u.to_string()).collect()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    const CN: rcgen::DnType = rcgen::DnType::CommonName;
    const O: rcgen::DnType = rcgen::DnType::OrganizationName;
    const NODE: (&str, &[&str]) = ("system:node:w1", &["system:nodes", "system:authenticated"]);
    const CLIENT: &[&str] = &["digital signature", "key encipherment", "client auth"];

    fn by_node(dn: &[(rcgen::DnType, &str)], sans: &[&str], usages: &[&str]) -> Verdict {
        review(&csr(
            NODE.0,
            NODE.1,
            CLIENT_SIGNER,
            request(dn, sans),
            usages,
        ))
    }

    #[test]
    fn a_node_gets_its_add_ons_users_and_nothing_else() {
        for user in ADDON_USERS {
            assert!(
                matches!(by_node(&[(CN, user)], &[], CLIENT), Verdict::Approve(m) if m.contains(user)),
                "{user}"
            );
        }
        let deny = |v: Verdict, what: &str| match v {
            Verdict::Deny(m) => assert!(m.contains(what), "{m}"),
            other => panic!("{what}: {other:?}"),
        };
        deny(
            by_node(&[(CN, "admin")], &[], CLIENT),
            "\"admin\" is not an add-on user",
        );
        deny(
            by_node(&[(CN, "system:node:w2")], &[], CLIENT),
            "not an add-on user",
        );
        deny(
            by_node(
                &[(O, "system:masters"), (CN, "system:kube-proxy")],
                &[],
                CLIENT,
            ),
            "organization \"system:masters\" would be a group",
        );
        deny(
            by_node(
                &[(CN, "system:kube-proxy"), (O, "system:nodes")],
                &[],
                CLIENT,
            ),
            "organization",
        );
        deny(
            by_node(&[(CN, "system:kube-proxy")], &["proxy.example"], CLIENT),
            "subject alternative names",
        );
        deny(
            by_node(
                &[(CN, "system:kube-proxy")],
                &[],
                &["digital signature", "server auth"],
            ),
            "usage \"server auth\"",
        );
        deny(
            by_node(&[(CN, "system:kube-proxy")], &[], &["digital signature"]),
            "client auth",
        );
        deny(by_node(&[], &[], CLIENT), "no common name");
    }

    #[test]
    fn requests_of_others_or_other_signers_are_not_this_rules_business() {
        let req = || request(&[(CN, "system:kube-proxy")], &[]);
        // A person's request waits for a person, even for an add-on user.
        assert_eq!(
            review(&csr("alice", &["dev"], CLIENT_SIGNER, req(), CLIENT)),
            Verdict::NotOurs
        );
        // The node's name alone is not enough: the group comes from its certificate too.
        assert_eq!(
            review(&csr(
                "system:node:w1",
                &["system:authenticated"],
                CLIENT_SIGNER,
                req(),
                CLIENT
            )),
            Verdict::NotOurs
        );
        assert_eq!(
            review(&csr(
                "system:node:",
                &["system:nodes"],
                CLIENT_SIGNER,
                req(),
                CLIENT
            )),
            Verdict::NotOurs
        );
        assert_eq!(
            review(&csr(
                NODE.0,
                NODE.1,
                super::super::KUBELET_CLIENT_SIGNER,
                req(),
                CLIENT
            )),
            Verdict::NotOurs
        );
    }
}

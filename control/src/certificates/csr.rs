//! CertificateSigningRequest as kube-apiserver serves it (pkg/registry/certificates and
//! pkg/apis/certificates/validation, Kubernetes 1.32):
//! - create: the requestor (`spec.username`, `uid`, `groups`, `extra`) is the authenticated
//!   user, never the body's; status starts empty.
//! - validation: `spec.request` is one PEM `CERTIFICATE REQUEST` whose signature verifies,
//!   `signerName` is `domain/path` (not the v1beta1-only legacy signer), `usages` are kube's key
//!   usages without repeats, `expirationSeconds` ≥ 600; conditions are unique, Approved and
//!   Denied exclusive, a certificate only on an approved request and parseable PEM.
//! - updates: the main resource keeps spec and status; `/approval` changes only the conditions
//!   (an Approved or Denied condition is never removed); `/status` everything but Approved and
//!   Denied; once issued, the certificate never changes.
//! - admission: CertificateApproval (`approve` on the signer), CertificateSigning (`sign` on
//!   the signer) and CertificateSubjectRestriction (no `system:masters` through the client
//!   signer).

use base64::Engine;
use serde_json::{json, Value};

use super::{CLIENT_SIGNER, LEGACY_UNKNOWN_SIGNER};
use crate::api::Ctx;
use crate::auth::User;
use crate::authz::{Attributes, NodeFacts};
use crate::semantic::Cause;
use crate::status::ApiError;

pub const KIND: &str = "CertificateSigningRequest";
const GROUP: &str = "certificates.k8s.io";

/// kube's `certificates.KeyUsage` values.
pub const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// Fills the requestor from the authenticated user and clears the status of a new request.
pub fn prepare_new(user: &User, obj: &mut Value) {
    if !obj.get("spec").is_some_and(Value::is_object) {
        return; // validation reports the missing spec
    }
    let spec = &mut obj["spec"];
    spec["username"] = json!(user.name);
    spec["groups"] = json!(user.groups);
    match user.uid.as_str() {
        "" => {
            if let Some(m) = spec.as_object_mut() {
                m.remove("uid");
            }
        }
        uid => spec["uid"] = json!(uid),
    }
    if user.extra.is_empty() {
        if let Some(m) = spec.as_object_mut() {
            m.remove("extra");
        }
    } else {
        spec["extra"] = json!(user.extra);
    }
    obj["status"] = json!({});
}

/// The PEM request of `spec.request` (base64 of PEM in JSON), decoded.
pub fn request_pem(obj: &Value) -> Result<String, String> {
    let b64 = obj
        .pointer("/spec/request")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("Required value")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("Invalid value: not base64: {e}"))?;
    String::from_utf8(raw).map_err(|_| "Invalid value: not a PEM block".to_string())
}

/// Parses and verifies a PEM certificate request: exactly one `CERTIFICATE REQUEST` block.
pub fn parse_request(pem: &str) -> Result<rcgen::CertificateSigningRequestParams, String> {
    let blocks = pem.matches("-----BEGIN ").count();
    if blocks != 1 || !pem.contains("-----BEGIN CERTIFICATE REQUEST-----") {
        return Err("Invalid value: must contain one PEM block of type CERTIFICATE REQUEST".into());
    }
    rcgen::CertificateSigningRequestParams::from_pem(pem).map_err(|e| format!("Invalid value: {e}"))
}

fn conditions(obj: &Value) -> Vec<&Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default()
}

fn has_condition(obj: &Value, kind: &str) -> bool {
    conditions(obj)
        .iter()
        .any(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

pub fn is_approved(obj: &Value) -> bool {
    has_condition(obj, "Approved")
}

pub fn is_denied(obj: &Value) -> bool {
    has_condition(obj, "Denied")
}

/// kube's ValidateSignerName: `domain/path`, the domain a DNS subdomain.
fn signer_problem(signer: &str) -> Option<String> {
    let Some((domain, path)) = signer.split_once('/') else {
        return Some(format!(
            "Invalid value: {signer:?}: must be a fully qualified domain and path of the form 'example.com/signer-name'"
        ));
    };
    if !crate::validation::is_dns_subdomain(domain) {
        return Some(format!(
            "Invalid value: {signer:?}: the domain {domain:?} must be a valid DNS subdomain"
        ));
    }
    if path.is_empty()
        || path.len() > 253
        || !path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '/'))
    {
        return Some(format!(
            "Invalid value: {signer:?}: the path {path:?} must consist of alphanumeric characters, '-', '_', '.' or '/'"
        ));
    }
    if signer == LEGACY_UNKNOWN_SIGNER {
        return Some(format!(
            "Invalid value: {signer:?}: the legacy signerName is not allowed via this API version"
        ));
    }
    None
}

/// Every problem of a CertificateSigningRequest (empty when valid).
pub fn check(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let mut push = |f: &str, m: String| out.push((f.to_string(), m));
    let parsed = match request_pem(obj) {
        Ok(pem) => match parse_request(&pem) {
            Ok(p) => Some(p),
            Err(e) => {
                push("spec.request", e);
                None
            }
        },
        Err(e) => {
            push("spec.request", e);
            None
        }
    };
    match obj.pointer("/spec/signerName").and_then(Value::as_str) {
        None | Some("") => push("spec.signerName", "Required value".into()),
        Some(s) => {
            if let Some(p) = signer_problem(s) {
                push("spec.signerName", p);
            }
            // CertificateSubjectRestriction: no admin identities through the client signer.
            if s == CLIENT_SIGNER {
                if let Some(p) = &parsed {
                    let masters = p.params.distinguished_name.iter().any(|(t, v)| {
                        *t == rcgen::DnType::OrganizationName
                            && dn_string(v).as_deref() == Some(crate::auth::ADMIN_GROUP)
                    });
                    if masters {
                        push("spec.signerName", format!("Forbidden: use of {CLIENT_SIGNER} signer with system:masters group is not allowed"));
                    }
                }
            }
        }
    }
    match obj.pointer("/spec/usages").and_then(Value::as_array) {
        None => push("spec.usages", "Required value".into()),
        Some(u) if u.is_empty() => push("spec.usages", "Required value".into()),
        Some(u) => {
            let mut seen = Vec::new();
            for (i, v) in u.iter().enumerate() {
                let s = v.as_str().unwrap_or("");
                if !USAGES.contains(&s) {
                    push(
                        &format!("spec.usages[{i}]"),
                        format!(
                            "Unsupported value: {s:?}: supported values: {}",
                            USAGES
                                .iter()
                                .map(|u| format!("{u:?}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                } else if seen.contains(&s) {
                    push(
                        &format!("spec.usages[{i}]"),
                        format!("Duplicate value: {s:?}"),
                    );
                }
                seen.push(s);
            }
        }
    }
    if let Some(e) = obj.pointer("/spec/expirationSeconds") {
        if e.as_i64().is_none_or(|s| s < 600) {
            push(
                "spec.expirationSeconds",
                format!("Invalid value: {e}: may not specify a duration less than 600 seconds (10 minutes)"),
            );
        }
    }
    let conds = conditions(obj);
    let mut seen: Vec<&str> = Vec::new();
    for (i, c) in conds.iter().enumerate() {
        let t = c.get("type").and_then(Value::as_str).unwrap_or("");
        let status = c.get("status").and_then(Value::as_str).unwrap_or("");
        let field = format!("status.conditions[{i}]");
        if t.is_empty() {
            push(&format!("{field}.type"), "Required value".into());
            continue;
        }
        if matches!(t, "Approved" | "Denied" | "Failed") {
            if seen.contains(&t) {
                push(&format!("{field}.type"), format!("Duplicate value: {t:?}"));
            }
            if t != "Failed" && status != "True" {
                push(
                    &format!("{field}.status"),
                    format!("Unsupported value: {status:?}: supported values: \"True\""),
                );
            }
        }
        if !matches!(status, "True" | "False" | "Unknown") {
            push(&format!("{field}.status"), format!("Unsupported value: {status:?}: supported values: \"False\", \"True\", \"Unknown\""));
        }
        seen.push(t);
    }
    if seen.contains(&"Approved") && seen.contains(&"Denied") {
        push(
            "status.conditions",
            "Invalid value: Approved and Denied conditions are mutually exclusive".into(),
        );
    }
    if let Some(cert) = obj
        .pointer("/status/certificate")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        if !seen.contains(&"Approved") || seen.contains(&"Denied") || seen.contains(&"Failed") {
            push("status.certificate", "Forbidden: certificate can only be set when the request is approved, and not denied or failed".into());
        }
        if let Err(e) = certificate_blocks(cert) {
            push("status.certificate", e);
        }
    }
    out
}

/// The text of a DN value.
pub fn dn_string(v: &rcgen::DnValue) -> Option<String> {
    match v {
        rcgen::DnValue::Utf8String(s) => Some(s.clone()),
        rcgen::DnValue::PrintableString(s) => Some(s.as_str().to_string()),
        rcgen::DnValue::Ia5String(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// `status.certificate` (base64 of PEM): one or more parseable CERTIFICATE blocks.
fn certificate_blocks(b64: &str) -> Result<(), String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("Invalid value: not base64: {e}"))?;
    let mut rest = raw.as_slice();
    let mut n = 0;
    while let Ok((r, pem)) = x509_parser::pem::parse_x509_pem(rest) {
        if pem.label != "CERTIFICATE" || pem.parse_x509().is_err() {
            return Err("Invalid value: must contain only valid PEM CERTIFICATE blocks".into());
        }
        n += 1;
        rest = r;
        if rest.iter().all(u8::is_ascii_whitespace) {
            break;
        }
    }
    if n == 0 {
        return Err("Invalid value: must contain at least one PEM CERTIFICATE block".into());
    }
    Ok(())
}

/// Fields an update may not change: an Approved or Denied condition stays, a certificate once
/// issued stays.
pub fn check_update(old: &Value, new: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    for t in ["Approved", "Denied"] {
        if has_condition(old, t) && !has_condition(new, t) {
            out.push((
                "status.conditions".into(),
                format!("Forbidden: updates may not remove a condition of type {t:?}"),
            ));
        }
    }
    let cert = |o: &Value| {
        o.pointer("/status/certificate")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    if let Some(c) = cert(old) {
        if cert(new).as_deref() != Some(c.as_str()) {
            out.push((
                "status.certificate".into(),
                "Forbidden: updates may not modify existing certificate content".into(),
            ));
        }
    }
    out
}

/// Sets the timestamps a client left out of its conditions (kube's populateConditionTimestamps).
fn stamp_conditions(obj: &mut Value, now: &str) {
    if let Some(cs) = obj
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    {
        for c in cs {
            for f in ["lastUpdateTime", "lastTransitionTime"] {
                if c.get(f).is_none_or(Value::is_null) {
                    c[f] = json!(now);
                }
            }
        }
    }
}

/// PUT to the main resource: spec and status are the stored ones.
pub fn merge_main(current: &Value, mut incoming: Value) -> Value {
    for f in ["spec", "status"] {
        match current.get(f) {
            Some(v) => incoming[f] = v.clone(),
            None => {
                if let Some(m) = incoming.as_object_mut() {
                    m.remove(f);
                }
            }
        }
    }
    incoming
}

/// PUT to `/approval`: only the conditions change.
pub fn merge_approval(current: &Value, incoming: &Value, now: &str) -> Value {
    let mut out = current.clone();
    if !out.get("status").is_some_and(Value::is_object) {
        out["status"] = json!({});
    }
    out["status"]["conditions"] = incoming
        .pointer("/status/conditions")
        .cloned()
        .unwrap_or(json!([]));
    stamp_conditions(&mut out, now);
    out
}

/// PUT to `/status`: everything but the Approved and Denied conditions, which stay as stored.
pub fn merge_status(current: &Value, incoming: &Value, now: &str) -> Value {
    let mut out = current.clone();
    let mut status = incoming.get("status").cloned().unwrap_or(json!({}));
    let approval: Vec<Value> = conditions(current)
        .into_iter()
        .filter(|c| {
            matches!(
                c.get("type").and_then(Value::as_str),
                Some("Approved" | "Denied")
            )
        })
        .cloned()
        .collect();
    let conds: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter(|c| {
                    !matches!(
                        c.get("type").and_then(Value::as_str),
                        Some("Approved" | "Denied")
                    )
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let conds: Vec<Value> = approval.into_iter().chain(conds).collect();
    if let Some(m) = status.as_object_mut() {
        if conds.is_empty() {
            m.remove("conditions");
        } else {
            m.insert("conditions".into(), json!(conds));
        }
    }
    out["status"] = status;
    stamp_conditions(&mut out, now);
    out
}

/// CertificateApproval and CertificateSigning admission: approving or denying needs `approve`,
/// issuing a certificate `sign`, on the request's signer (`signers` in certificates.k8s.io,
/// named by the signer or by `domain/*`).
/// Also refuses what [`check_update`] finds, and on the subresources (which the generic
/// validation skips) what [`check`] finds.
pub fn admit_update(ctx: &Ctx<'_>, current: &Value, new: &Value) -> Result<(), ApiError> {
    let mut causes = check_update(current, new);
    if ctx.info.subresource.is_some() {
        causes.extend(check(new));
    }
    if !causes.is_empty() {
        return Err(ApiError::Invalid {
            group: GROUP.into(),
            kind: KIND.into(),
            name: crate::objects::name_of(current).into(),
            causes,
        });
    }
    let signer = current
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let verb = match ctx.info.subresource.as_deref() {
        Some("approval") if conditions(current) != conditions(new) => "approve",
        Some("status")
            if current.pointer("/status/certificate") != new.pointer("/status/certificate") =>
        {
            "sign"
        }
        _ => return Ok(()),
    };
    if may(ctx, verb, signer) {
        return Ok(());
    }
    let name = crate::objects::name_of(current).to_string();
    Err(ApiError::Forbidden {
        group: GROUP.into(),
        resource: "certificatesigningrequests".into(),
        name: name.clone(),
        message: format!("user not permitted to {verb} requests with signerName {signer:?}"),
    })
}

fn may(ctx: &Ctx<'_>, verb: &str, signer: &str) -> bool {
    let wildcard = signer
        .split_once('/')
        .map(|(domain, _)| format!("{domain}/*"));
    std::iter::once(signer.to_string())
        .chain(wildcard)
        .any(|name| {
            let attrs = Attributes::resource(verb, GROUP, "signers", "", &name);
            ctx.api
                .authz
                .authorize(ctx.user, &attrs, NodeFacts::default())
                .allowed
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(cn: &str, orgs: &[&str]) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        for o in orgs {
            dn.push(rcgen::DnType::OrganizationName, *o);
        }
        dn.push(rcgen::DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn obj(pem: &str, signer: &str, usages: Value) -> Value {
        json!({"spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(pem),
            "signerName": signer, "usages": usages}})
    }

    #[test]
    fn validation_follows_kube() {
        let pem = csr("system:node:n1", &["system:nodes"]);
        let good = obj(
            &pem,
            super::super::KUBELET_CLIENT_SIGNER,
            json!(["digital signature", "client auth"]),
        );
        assert!(check(&good).is_empty(), "{:?}", check(&good));
        let fields = |o: &Value| check(o).into_iter().map(|(f, _)| f).collect::<Vec<_>>();
        assert_eq!(
            fields(&obj("junk", "example.com/x", json!(["client auth"]))),
            ["spec.request"]
        );
        assert_eq!(
            fields(&obj(&pem, "noslash", json!(["client auth"]))),
            ["spec.signerName"]
        );
        assert_eq!(
            fields(&obj(&pem, LEGACY_UNKNOWN_SIGNER, json!(["client auth"]))),
            ["spec.signerName"]
        );
        assert_eq!(
            fields(&obj(&pem, "example.com/x", json!([]))),
            ["spec.usages"]
        );
        assert_eq!(
            fields(&obj(
                &pem,
                "example.com/x",
                json!(["client auth", "client auth"])
            )),
            ["spec.usages[1]"]
        );
        assert_eq!(
            fields(&obj(&pem, "example.com/x", json!(["flying"]))),
            ["spec.usages[0]"]
        );
        let admin = csr("root", &["system:masters"]);
        assert_eq!(
            fields(&obj(&admin, CLIENT_SIGNER, json!(["client auth"]))),
            ["spec.signerName"]
        );
        let mut short = good.clone();
        short["spec"]["expirationSeconds"] = json!(599);
        assert_eq!(fields(&short), ["spec.expirationSeconds"]);
        let mut both = good.clone();
        both["status"] = json!({"conditions": [
            {"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]});
        assert_eq!(fields(&both), ["status.conditions"]);
        let mut unapproved_cert = good.clone();
        unapproved_cert["status"] = json!({"certificate": "eA=="});
        assert_eq!(
            fields(&unapproved_cert),
            ["status.certificate", "status.certificate"]
        );
    }

    #[test]
    fn subresources_change_only_their_part() {
        let current = json!({"spec": {"signerName": "a/b"}, "status": {"conditions": [
            {"type": "Approved", "status": "True", "lastUpdateTime": "t0", "lastTransitionTime": "t0"}]}});
        // /status cannot drop or add approval conditions.
        let s = merge_status(
            &current,
            &json!({"status": {"certificate": "Y", "conditions": [
            {"type": "Denied", "status": "True"}, {"type": "Failed", "status": "True"}]}}),
            "t1",
        );
        let types: Vec<_> = conditions(&s)
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["Approved", "Failed"]);
        assert_eq!(s["status"]["certificate"], "Y");
        assert_eq!(s["status"]["conditions"][1]["lastUpdateTime"], "t1");
        // /approval changes conditions only; removing Approved is refused by check_update.
        let a = merge_approval(
            &current,
            &json!({"spec": {"signerName": "x/y"}, "status": {"conditions": []}}),
            "t1",
        );
        assert_eq!(a["spec"]["signerName"], "a/b");
        assert_eq!(check_update(&current, &a).len(), 1);
        // The main resource keeps spec and status.
        let m = merge_main(
            &current,
            json!({"metadata": {"labels": {"a": "b"}}, "spec": {"signerName": "x/y"}}),
        );
        assert_eq!(m["spec"], current["spec"]);
        assert_eq!(m["status"], current["status"]);
    }

    #[test]
    fn requestor_is_the_authenticated_user() {
        let mut o = json!({"spec": {"username": "forged", "groups": ["system:masters"]}, "status": {"certificate": "x"}});
        let user = User {
            name: "system:bootstrap:abcdef".into(),
            groups: vec!["system:bootstrappers".into()],
            ..User::default()
        };
        prepare_new(&user, &mut o);
        assert_eq!(o["spec"]["username"], "system:bootstrap:abcdef");
        assert_eq!(o["spec"]["groups"], json!(["system:bootstrappers"]));
        assert_eq!(o["status"], json!({}));
    }
}

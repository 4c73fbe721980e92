//! Service cluster IPs: allocated from the service CIDR on create, recorded in the store as one
//! key per address (`/registry/ranges/serviceips/<ip>`, created only if absent, so two API
//! servers on one etcd never hand out the same address; records as in `ranges.rs`), released
//! when the Service goes.

use std::net::Ipv4Addr;

use pea_control_store::{Store, StoreError};
use serde_json::{json, Value};

use crate::status::ApiError;

pub const KEY_PREFIX: &str = "/registry/ranges/serviceips/";
/// Random probes before a range is declared full.
const ATTEMPTS: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid service CIDR {0:?}: want an IPv4 a.b.c.d/n with n between 8 and 30")]
pub struct CidrError(pub String);

/// An IPv4 service range such as 10.96.0.0/12.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCidr {
    base: u32,
    bits: u8,
}

impl ServiceCidr {
    pub fn parse(s: &str) -> Result<Self, CidrError> {
        let err = || CidrError(s.to_string());
        let (ip, bits) = s.split_once('/').ok_or_else(err)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| err())?;
        let bits: u8 = bits.parse().map_err(|_| err())?;
        if !(8..=30).contains(&bits) {
            return Err(err());
        }
        let mask = u32::MAX << (32 - bits);
        Ok(Self {
            base: u32::from(ip) & mask,
            bits,
        })
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.bits)
    }

    /// The range's first host address: the `default/kubernetes` Service's, as kube's.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// Usable host addresses exclude the network and broadcast addresses.
    pub fn contains_host(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        v > self.base && v < self.base + self.size() - 1
    }
}

fn key(ip: Ipv4Addr) -> String {
    format!("{KEY_PREFIX}{ip}")
}

fn invalid(name: &str, msg: String) -> ApiError {
    ApiError::Invalid {
        group: String::new(),
        kind: "Service".into(),
        name: name.into(),
        causes: vec![("spec.clusterIP".into(), msg)],
    }
}

/// Reserves an address for the Service `obj` (its `spec.clusterIP`, or a free one) and writes it
/// into the object. Returns the reserved address, `None` for headless and ExternalName services.
pub async fn assign(
    store: &dyn Store,
    cidr: ServiceCidr,
    obj: &mut Value,
) -> Result<Option<Ipv4Addr>, ApiError> {
    let name = crate::objects::name_of(obj).to_string();
    if obj.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName") {
        return Ok(None);
    }
    let owner = format!(
        "{}/{name}",
        crate::objects::meta_str(obj, "namespace").unwrap_or("")
    );
    let requested = obj
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if requested == "None" {
        obj["spec"]["clusterIPs"] = json!(["None"]);
        return Ok(None);
    }
    let ip = if requested.is_empty() {
        let mut found = None;
        for _ in 0..ATTEMPTS {
            let mut r = [0u8; 4];
            crate::objects::random_bytes(&mut r);
            let offset = 1 + u32::from_le_bytes(r) % (cidr.size() - 2);
            let ip = Ipv4Addr::from(cidr.base + offset);
            match crate::ranges::reserve(store, KEY_PREFIX, &ip.to_string(), &owner).await {
                Ok(true) => {
                    found = Some(ip);
                    break;
                }
                Ok(false) => continue,
                Err(e) => return Err(ApiError::Internal(format!("allocating a cluster IP: {e}"))),
            }
        }
        found.ok_or_else(|| {
            invalid(
                &name,
                "Internal error: failed to allocate a serviceIP: range is full".into(),
            )
        })?
    } else {
        let ip: Ipv4Addr = requested.parse().map_err(|_| {
            invalid(
                &name,
                format!("Invalid value: {requested:?}: must be a valid IP address or \"None\""),
            )
        })?;
        if !cidr.contains_host(ip) {
            return Err(invalid(
                &name,
                format!("Invalid value: {requested:?}: provided IP is not in the valid range"),
            ));
        }
        match crate::ranges::reserve(store, KEY_PREFIX, &ip.to_string(), &owner).await {
            Ok(true) => ip,
            Ok(false) => {
                return Err(invalid(
                    &name,
                    format!("Invalid value: {requested:?}: provided IP is already allocated"),
                ))
            }
            Err(e) => {
                return Err(ApiError::Internal(format!(
                    "allocating cluster IP {ip}: {e}"
                )))
            }
        }
    };
    obj["spec"]["clusterIP"] = json!(ip.to_string());
    obj["spec"]["clusterIPs"] = json!([ip.to_string()]);
    obj["spec"]["ipFamilies"] = json!(["IPv4"]);
    obj["spec"]["ipFamilyPolicy"] = json!("SingleStack");
    Ok(Some(ip))
}

/// Frees an address reserved by [`assign`].
pub async fn release(store: &dyn Store, ip: Ipv4Addr) {
    match store.delete(&key(ip), None).await {
        Ok(_) | Err(StoreError::NotFound { .. }) => {}
        Err(e) => tracing::warn!(%ip, error = %e, "releasing a cluster IP failed"),
    }
}

/// Frees the address of a deleted object if it is a Service that had one.
pub async fn release_for(store: &dyn Store, kind: &str, obj: &Value) {
    if kind != "Service" {
        return;
    }
    if let Some(ip) = obj
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
    {
        release(store, ip).await;
    }
}

/// An update keeps the cluster IP: omitted means unchanged, a different value is refused.
pub fn keep_on_update(current: &Value, new: &mut Value) -> Result<(), ApiError> {
    let Some(cur) = current.pointer("/spec/clusterIP").cloned() else {
        return Ok(());
    };
    match new.pointer("/spec/clusterIP") {
        None => {
            if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("clusterIP".into(), cur);
                if let Some(ips) = current.pointer("/spec/clusterIPs") {
                    spec.entry("clusterIPs").or_insert(ips.clone());
                }
            }
            Ok(())
        }
        Some(v) if *v == cur || v.as_str() == Some("") => {
            new["spec"]["clusterIP"] = cur;
            Ok(())
        }
        Some(v) => Err(invalid(
            crate::objects::name_of(current),
            format!("Invalid value: {v}: field is immutable"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing_and_bounds() {
        let c = ServiceCidr::parse("10.96.0.0/12").unwrap();
        assert!(c.contains_host("10.96.0.1".parse().unwrap()));
        assert!(c.contains_host("10.111.255.254".parse().unwrap()));
        assert!(!c.contains_host("10.96.0.0".parse().unwrap()));
        assert!(!c.contains_host("10.111.255.255".parse().unwrap()));
        assert!(!c.contains_host("10.112.0.1".parse().unwrap()));
        assert!(ServiceCidr::parse("10.0.0.0/31").is_err());
        assert!(ServiceCidr::parse("nope").is_err());
    }

    #[test]
    fn updates_keep_the_cluster_ip() {
        let cur = json!({"metadata": {"name": "s"}, "spec": {"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"]}});
        let mut new = json!({"spec": {"ports": []}});
        keep_on_update(&cur, &mut new).unwrap();
        assert_eq!(new["spec"]["clusterIP"], "10.96.0.5");
        let mut changed = json!({"spec": {"clusterIP": "10.96.0.6"}});
        assert!(keep_on_update(&cur, &mut changed).is_err());
    }
}

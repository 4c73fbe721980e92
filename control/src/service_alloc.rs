//! What a Service holds outside its own object: a cluster IP ([`crate::ipalloc`]) and node
//! ports ([`crate::portalloc`]). Taken before the object is written, given back when the write
//! fails or the Service goes, so a failed request leaves nothing behind.

use std::net::Ipv4Addr;

use pea_control_store::Store;
use serde_json::Value;

use crate::api::Api;
use crate::status::ApiError;

/// Allocations made for a Service that is about to be written.
#[derive(Debug, Default)]
pub struct Held {
    ip: Option<Ipv4Addr>,
    ports: Vec<u16>,
}

impl Held {
    /// Gives everything back (the write that needed it failed).
    pub async fn release(&self, store: &dyn Store, obj: &Value) {
        if let Some(ip) = self.ip {
            crate::ipalloc::release(store, ip).await;
        }
        crate::portalloc::release_reserved(store, obj, &self.ports).await;
    }
}

/// Checks a new Service's node ports against its type and the range (no store access; dry runs
/// too).
pub fn prepare_new(api: &Api, kind: &str, obj: &mut Value) -> Result<(), ApiError> {
    if kind != "Service" {
        return Ok(());
    }
    crate::portalloc::prepare(api.node_port_range, None, obj)
}

/// Allocates a new Service's cluster IP and node ports; on error nothing stays allocated.
pub async fn allocate_new(api: &Api, kind: &str, obj: &mut Value) -> Result<Held, ApiError> {
    if kind != "Service" {
        return Ok(Held::default());
    }
    let store = api.store.as_ref();
    let ip = crate::ipalloc::assign(store, api.service_cidr, obj).await?;
    match crate::portalloc::reserve(store, api.node_port_range, None, obj).await {
        Ok(ports) => Ok(Held { ip, ports }),
        Err(e) => {
            if let Some(ip) = ip {
                crate::ipalloc::release(store, ip).await;
            }
            Err(e)
        }
    }
}

/// Frees everything a deleted object held if it is a Service.
pub async fn release_for(store: &dyn Store, kind: &str, obj: &Value) {
    if kind != "Service" {
        return;
    }
    crate::ipalloc::release_for(store, kind, obj).await;
    crate::portalloc::release_all(store, obj).await;
}

//! Which interface the overlay runs over, as flannel picks it: `iface` names it or gives one of
//! its IPv4 addresses; without it, the interface of the IPv4 default route. The public IP (the
//! VTEP address other nodes send to) is `publicIP`, else the address `iface` gave, else the
//! uplink's first IPv4 address.

use std::net::Ipv4Addr;

use rtnetlink::{packet_route::link::LinkMessage, Handle};

use crate::link::{self, LinkError};

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("uplink {0} not found (iface)")]
    NoSuchLink(String),
    #[error("no interface holds {0} (iface)")]
    NoLinkWithAddress(Ipv4Addr),
    #[error(
        "no iface configured and no IPv4 default route to take it from: set iface (an interface \
         name or one of its addresses) in the config or --iface"
    )]
    NoDefaultRoute,
    #[error("uplink {0} has no IPv4 address; set publicIP")]
    NoPublicIp(String),
    #[error(transparent)]
    Link(#[from] LinkError),
}

/// The uplink and the public IP to use on it.
#[derive(Debug)]
pub struct Uplink {
    pub link: LinkMessage,
    pub name: String,
    pub public_ip: Ipv4Addr,
}

pub async fn resolve(
    h: &Handle,
    iface: Option<&str>,
    public_ip: Option<Ipv4Addr>,
) -> Result<Uplink, UplinkError> {
    let (link, given_ip) = match iface {
        Some(i) => match i.parse::<Ipv4Addr>() {
            Ok(ip) => (holding(h, ip).await?, Some(ip)),
            Err(_) => (
                link::get(h, i)
                    .await?
                    .ok_or_else(|| UplinkError::NoSuchLink(i.to_string()))?,
                None,
            ),
        },
        None => {
            let oif = link::default_route_oif(h)
                .await?
                .ok_or(UplinkError::NoDefaultRoute)?;
            let link = link::list(h)
                .await?
                .into_iter()
                .find(|l| l.header.index == oif)
                .ok_or_else(|| UplinkError::NoSuchLink(format!("index {oif}")))?;
            (link, None)
        }
    };
    let name = link::name_of(&link).unwrap_or("?").to_string();
    let public_ip = match public_ip.or(given_ip) {
        Some(ip) => ip,
        None => link::addrs(h, link.header.index)
            .await?
            .first()
            .map(|(ip, _)| *ip)
            .ok_or_else(|| UplinkError::NoPublicIp(name.clone()))?,
    };
    Ok(Uplink {
        link,
        name,
        public_ip,
    })
}

/// The link one of whose IPv4 addresses is `ip`.
async fn holding(h: &Handle, ip: Ipv4Addr) -> Result<LinkMessage, UplinkError> {
    for l in link::list(h).await? {
        if link::addrs(h, l.header.index)
            .await?
            .iter()
            .any(|(a, _)| *a == ip)
        {
            return Ok(l);
        }
    }
    Err(UplinkError::NoLinkWithAddress(ip))
}

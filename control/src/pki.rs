//! The server's certificates: a CA, the serving certificate, the admin client certificate and
//! the client certificate pea-control shows kubelets (kubeadm's `apiserver-kubelet-client`),
//! generated on first start under `<data-dir>/pki` and reused afterwards. Keys are 0600 and every
//! file is written atomically (temp, fsync, rename).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generating {what}: {source}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },
}

/// A PEM certificate and its PEM private key.
#[derive(Clone)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertPair")
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The loaded PKI.
#[derive(Debug)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca: CertPair,
    pub serving: CertPair,
    pub admin: CertPair,
    /// What pea-control presents to kubelets for logs/exec/attach/port-forward/node proxy.
    pub kubelet_client: CertPair,
}

/// The kubelet client certificate's subject, as kubeadm issues it (`system:masters`, so a
/// kubelet that only admits admins admits the API server).
pub const KUBELET_CLIENT_CN: &str = "kube-apiserver-kubelet-client";

/// Writes `data` to `path` atomically with `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
    }
    Ok(())
}

fn gen_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Generate {
        what: what.to_string(),
        source,
    }
}

fn name(cn: &str, orgs: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for o in orgs {
        dn.push(DnType::OrganizationName, *o);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

impl Pki {
    /// Loads the PKI under `dir`, creating whatever is missing. `hosts` are the serving
    /// certificate's names and IPs (127.0.0.1 and localhost are always included).
    pub fn load_or_create(dir: &Path, hosts: &[String]) -> Result<Self, PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        let ca = match read_pair(dir, "ca")? {
            Some(ca) => ca,
            None => {
                let key = KeyPair::generate().map_err(gen_err("ca key"))?;
                let mut params = CertificateParams::default();
                params.distinguished_name = name("pea-control-ca", &[]);
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
                let cert = params
                    .self_signed(&key)
                    .map_err(gen_err("ca certificate"))?;
                let pair = CertPair {
                    cert_pem: cert.pem(),
                    key_pem: key.serialize_pem(),
                };
                write_pair(dir, "ca", &pair)?;
                pair
            }
        };
        let mut names: Vec<String> = vec!["127.0.0.1".into(), "localhost".into()];
        for h in hosts {
            if !names.contains(h) {
                names.push(h.clone());
            }
        }
        let serving = match read_pair(dir, "apiserver")? {
            // Reissued when it does not name every host (e.g. a new --listen address).
            Some(p) if covers(&p.cert_pem, &names) => p,
            _ => {
                let pair = issue(&ca, "pea-apiserver", &[], &names, true)?;
                write_pair(dir, "apiserver", &pair)?;
                pair
            }
        };
        let admin = match read_pair(dir, "admin")? {
            Some(p) => p,
            None => {
                let pair = issue(&ca, "pea-admin", &["system:masters"], &[], false)?;
                write_pair(dir, "admin", &pair)?;
                pair
            }
        };
        let kubelet_client = match read_pair(dir, "apiserver-kubelet-client")? {
            Some(p) => p,
            None => {
                let pair = issue(&ca, KUBELET_CLIENT_CN, &["system:masters"], &[], false)?;
                write_pair(dir, "apiserver-kubelet-client", &pair)?;
                pair
            }
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            ca,
            serving,
            admin,
            kubelet_client,
        })
    }

    /// A client certificate for `user` in `groups`, signed by the CA (e.g. a node's identity:
    /// `system:node:<name>` in `system:nodes`).
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<CertPair, PkiError> {
        issue(&self.ca, user, groups, &[], false)
    }
}

/// Whether the certificate in `cert_pem` names every one of `names` (IPs and DNS names) in
/// its subject alternative names; false for anything unreadable.
fn covers(cert_pem: &str, names: &[String]) -> bool {
    use x509_parser::extensions::GeneralName;
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()) else {
        return false;
    };
    let Ok(cert) = pem.parse_x509() else {
        return false;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let mut have: Vec<String> = Vec::new();
    for n in &san.value.general_names {
        match n {
            GeneralName::DNSName(d) => have.push(d.to_string()),
            GeneralName::IPAddress(b) => {
                let ip = match b.len() {
                    4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                    16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                    _ => None,
                };
                if let Some(ip) = ip {
                    have.push(ip.to_string());
                }
            }
            _ => {}
        }
    }
    names.iter().all(|n| {
        let n = n
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.to_string())
            .unwrap_or_else(|_| n.clone());
        have.contains(&n)
    })
}

/// Issues a certificate signed by `ca`.
fn issue(
    ca: &CertPair,
    cn: &str,
    orgs: &[&str],
    sans: &[String],
    server: bool,
) -> Result<CertPair, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(gen_err("ca key"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(gen_err("ca issuer"))?;
    let key = KeyPair::generate().map_err(gen_err(cn))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn, orgs);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    for s in sans {
        let san = match s.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(s.clone().try_into().map_err(gen_err(s))?),
        };
        params.subject_alt_names.push(san);
    }
    let cert = params.signed_by(&key, &issuer).map_err(gen_err(cn))?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn read_pair(dir: &Path, stem: &str) -> Result<Option<CertPair>, PkiError> {
    let (c, k) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    if !c.exists() || !k.exists() {
        return Ok(None);
    }
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| PkiError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    Ok(Some(CertPair {
        cert_pem: read(&c)?,
        key_pem: read(&k)?,
    }))
}

fn write_pair(dir: &Path, stem: &str, pair: &CertPair) -> Result<(), PkiError> {
    write_atomic(
        &dir.join(format!("{stem}.key")),
        pair.key_pem.as_bytes(),
        0o600,
    )?;
    write_atomic(
        &dir.join(format!("{stem}.crt")),
        pair.cert_pem.as_bytes(),
        0o644,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_certificate_is_reissued_for_new_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let first = Pki::load_or_create(dir.path(), &[]).unwrap();
        assert!(covers(
            &first.serving.cert_pem,
            &["127.0.0.1".into(), "localhost".into()]
        ));
        assert!(!covers(&first.serving.cert_pem, &["192.0.2.7".into()]));
        // Same hosts: the same certificate.
        let again = Pki::load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(again.serving.cert_pem, first.serving.cert_pem);
        // A new listen IP: a new serving certificate naming it, from the same CA.
        let moved = Pki::load_or_create(dir.path(), &["192.0.2.7".into()]).unwrap();
        assert_ne!(moved.serving.cert_pem, first.serving.cert_pem);
        assert_eq!(moved.ca.cert_pem, first.ca.cert_pem);
        assert!(covers(
            &moved.serving.cert_pem,
            &["192.0.2.7".into(), "127.0.0.1".into(), "localhost".into()]
        ));
        // The kubelet client certificate is kubeadm's: kept across starts, an admin identity.
        assert_eq!(moved.kubelet_client.cert_pem, first.kubelet_client.cert_pem);
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(first.kubelet_client.cert_pem.as_bytes()).unwrap();
        let user = crate::auth::user_from_cert(&pem.contents).unwrap();
        assert_eq!(user.name, KUBELET_CLIENT_CN);
        assert_eq!(user.groups, ["system:masters"]);
        assert!(dir.path().join("apiserver-kubelet-client.key").exists());
    }
}

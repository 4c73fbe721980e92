//! Certificates on disk as kubelet's file store keeps them (client-go util/certificate
//! `NewFileStore`): each pair is written once as `<prefix>-<YYYY-MM-DD-HH-MM-SS>.pem`
//! (certificate then key, 0600), and `<prefix>-current.pem` is a symlink to the newest one,
//! replaced by rename so a reader never sees a half-written pair.

use std::path::{Path, PathBuf};

use super::CertificateError;

/// The kubelet's client certificate (its API identity `system:node:NAME`).
pub const CLIENT: &str = "kubelet-client";
/// The kubelet's serving certificate (its HTTPS server).
pub const SERVER: &str = "kubelet-server";

/// A certificate (PEM, the leaf first) with its key and validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
    pub not_before: chrono::DateTime<chrono::Utc>,
    pub not_after: chrono::DateTime<chrono::Utc>,
}

impl Pair {
    /// Parses the first certificate's validity; `Err` says what is wrong.
    pub fn new(cert_pem: String, key_pem: String) -> Result<Self, String> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| format!("no PEM certificate: {e}"))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| format!("parsing the certificate: {e}"))?;
        let at = |t: x509_parser::time::ASN1Time| {
            chrono::DateTime::from_timestamp(t.timestamp(), 0)
                .ok_or_else(|| "certificate time out of range".to_string())
        };
        let (not_before, not_after) = (
            at(cert.validity().not_before)?,
            at(cert.validity().not_after)?,
        );
        if !key_pem.contains("PRIVATE KEY-----") {
            return Err("no PEM private key".into());
        }
        Ok(Self {
            cert_pem,
            key_pem,
            not_before,
            not_after,
        })
    }

    /// Splits a combined file (certificates and a key in any order).
    pub fn from_combined(text: &str) -> Result<Self, String> {
        let (mut certs, mut key) = (String::new(), String::new());
        for block in pem_blocks(text) {
            if block.starts_with("-----BEGIN CERTIFICATE-----") {
                certs.push_str(block);
                certs.push('\n');
            } else if block.contains("PRIVATE KEY-----") {
                key.push_str(block);
                key.push('\n');
            }
        }
        Self::new(certs, key)
    }

    pub fn expired(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        now >= self.not_after
    }
}

/// The `-----BEGIN X-----` … `-----END X-----` blocks of a PEM text.
fn pem_blocks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let from = &rest[start..];
        let Some(end) = from.find("-----END ") else {
            break;
        };
        let tail = &from[end + 9..];
        let Some(close) = tail.find("-----") else {
            break;
        };
        let len = end + 9 + close + 5;
        out.push(&from[..len]);
        rest = &from[len..];
    }
    out
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    prefix: &'static str,
}

impl Store {
    pub fn new(dir: &Path, prefix: &'static str) -> Self {
        Self {
            dir: dir.to_path_buf(),
            prefix,
        }
    }

    /// `<dir>/<prefix>-current.pem`.
    pub fn current_path(&self) -> PathBuf {
        self.dir.join(format!("{}-current.pem", self.prefix))
    }

    /// The current pair; `None` when there is none yet.
    pub fn current(&self) -> Result<Option<Pair>, CertificateError> {
        let path = self.current_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CertificateError::Read {
                    path,
                    message: e.to_string(),
                })
            }
        };
        Pair::from_combined(&text)
            .map(Some)
            .map_err(|message| CertificateError::Read { path, message })
    }

    /// Writes `pair` as the newest file and points the symlink at it; returns the file.
    pub fn update(&self, pair: &Pair) -> Result<PathBuf, CertificateError> {
        let stamp = chrono::Utc::now().format("%Y-%m-%d-%H-%M-%S");
        let file = self.dir.join(format!("{}-{stamp}.pem", self.prefix));
        let mut body = pair.cert_pem.trim_end().to_string();
        body.push('\n');
        body.push_str(pair.key_pem.trim_end());
        body.push('\n');
        write_private(&file, body.as_bytes())?;
        let current = self.current_path();
        let link_tmp = self
            .dir
            .join(format!("{}-current.pem.tmp-link", self.prefix));
        let _ = std::fs::remove_file(&link_tmp);
        std::os::unix::fs::symlink(&file, &link_tmp)
            .and_then(|()| std::fs::rename(&link_tmp, &current))
            .map_err(|source| CertificateError::Write {
                path: current,
                source,
            })?;
        Ok(file)
    }
}

/// Writes `data` to `path` (mode 0600) through a temporary file and a rename.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), CertificateError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| CertificateError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(cn: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec![cn.to_string()]).unwrap();
        p.not_before = rcgen::date_time_ymd(2026, 1, 1);
        p.not_after = rcgen::date_time_ymd(2027, 1, 1);
        (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn update_writes_a_stamped_file_and_swaps_the_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), CLIENT);
        assert!(store.current().unwrap().is_none());
        let (c, k) = self_signed("a");
        let pair = Pair::new(c, k).unwrap();
        assert_eq!(pair.not_before.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        let file = store.update(&pair).unwrap();
        assert!(file
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("kubelet-client-20"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_link(store.current_path()).unwrap(), file);
        let back = store.current().unwrap().unwrap();
        assert_eq!(back.not_after, pair.not_after);
        assert!(
            back.cert_pem.contains("BEGIN CERTIFICATE") && back.key_pem.contains("PRIVATE KEY")
        );
    }

    #[test]
    fn a_file_without_a_key_or_certificate_is_refused() {
        let (c, k) = self_signed("b");
        assert!(Pair::from_combined(&c).is_err());
        assert!(Pair::from_combined(&k).is_err());
        assert!(Pair::from_combined(&format!("{k}{c}")).is_ok());
    }
}

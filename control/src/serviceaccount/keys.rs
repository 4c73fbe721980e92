//! The service-account signing key and the public keys tokens are verified with, as
//! kube-apiserver's `--service-account-signing-key-file` and `--service-account-key-file`:
//! generated on first start (ECDSA P-256, written as `sa.key`/`sa.pub` in the PKI dir, as
//! kubeadm names them) or loaded from PEM (PKCS#8, SEC1 or PKCS#1 private keys; SPKI public
//! keys). Each key's id is kube's: base64url(sha256(SPKI DER)).

use std::path::{Path, PathBuf};

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};

use crate::pki::write_atomic;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading service-account key {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("service-account key {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("writing service-account key: {0}")]
    Write(#[from] crate::pki::PkiError),
    #[error("generating the service-account signing key failed")]
    Generate,
}

/// JWS algorithms pea signs and verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Es256,
    Rs256,
}

impl Alg {
    pub fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
        }
    }
}

enum Signer {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// The private key tokens are signed with.
pub struct SigningKey {
    signer: Signer,
    pub public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid)
            .finish()
    }
}

/// A key tokens are verified with.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub alg: Alg,
    pub kid: String,
    /// What ring verifies with: the uncompressed EC point, or the PKCS#1 RSA public key.
    material: Vec<u8>,
    /// The key as a JWK (for /openid/v1/jwks).
    pub jwk: Value,
    /// SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// DER length octets.
fn der_len(n: usize) -> Vec<u8> {
    match n {
        0..=0x7f => vec![n as u8],
        0x80..=0xff => vec![0x81, n as u8],
        _ => vec![0x82, (n >> 8) as u8, n as u8],
    }
}

fn der(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(body.len()));
    out.extend_from_slice(body);
    out
}

/// AlgorithmIdentifier { id-ecPublicKey, prime256v1 }.
const EC_P256_ALG: &[u8] = &[
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07,
];
/// AlgorithmIdentifier { rsaEncryption, NULL }.
const RSA_ALG: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_RSA: &str = "1.2.840.113549.1.1.1";

fn spki_of(alg: &[u8], key: &[u8]) -> Vec<u8> {
    let mut bits = vec![0u8];
    bits.extend_from_slice(key);
    let mut body = alg.to_vec();
    body.extend(der(0x03, &bits));
    der(0x30, &body)
}

impl PublicKey {
    /// Parses a SubjectPublicKeyInfo (EC P-256 or RSA).
    pub fn from_spki(spki: &[u8]) -> Result<Self, String> {
        use x509_parser::prelude::FromDer;
        use x509_parser::public_key::PublicKey as Parsed;
        let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki)
            .map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
        let oid = info.algorithm.algorithm.to_id_string();
        let kid = b64url(ring::digest::digest(&ring::digest::SHA256, spki).as_ref());
        let material = info.subject_public_key.data.to_vec();
        match (oid.as_str(), info.parsed()) {
            (OID_EC, Ok(Parsed::EC(point))) => {
                let curve = info
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string())
                    .unwrap_or_default();
                let point = point.data();
                if curve != OID_P256 || point.len() != 65 || point[0] != 4 {
                    return Err("only P-256 EC keys are supported".into());
                }
                Ok(Self {
                    alg: Alg::Es256,
                    jwk: json!({"use": "sig", "kty": "EC", "kid": kid, "crv": "P-256",
                        "alg": "ES256", "x": b64url(&point[1..33]), "y": b64url(&point[33..])}),
                    kid,
                    material,
                    spki: spki.to_vec(),
                })
            }
            (OID_RSA, Ok(Parsed::RSA(rsa))) => {
                let strip = |b: &[u8]| {
                    let skip = b.iter().take_while(|x| **x == 0).count();
                    b[skip..].to_vec()
                };
                let n = strip(rsa.modulus);
                if n.len() < 256 {
                    return Err("RSA keys must have at least 2048 bits".into());
                }
                Ok(Self {
                    alg: Alg::Rs256,
                    jwk: json!({"use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256",
                        "n": b64url(&n), "e": b64url(&strip(rsa.exponent))}),
                    kid,
                    material,
                    spki: spki.to_vec(),
                })
            }
            _ => Err(format!(
                "unsupported public key algorithm {oid} (EC P-256 or RSA)"
            )),
        }
    }

    /// Checks `sig` over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let alg: &dyn signature::VerificationAlgorithm = match self.alg {
            Alg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        };
        signature::UnparsedPublicKey::new(alg, &self.material)
            .verify(msg, sig)
            .is_ok()
    }

    pub fn pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.spki);
        let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
            out.push('\n');
        }
        out.push_str("-----END PUBLIC KEY-----\n");
        out
    }
}

impl SigningKey {
    /// Reads a PEM private key; `path` names it in errors.
    pub fn from_pem(pem: &[u8], path: &Path) -> Result<Self, KeyError> {
        let invalid = |reason: String| KeyError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let key = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| invalid(format!("no PEM private key: {e}")))?;
        let rng = SystemRandom::new();
        let ec = |pkcs8: &[u8]| {
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
        };
        let signer = match &key {
            PrivateKeyDer::Pkcs8(k) => match ec(k.secret_pkcs8_der()) {
                Ok(pair) => Signer::Ec(pair),
                Err(_) => Signer::Rsa(
                    RsaKeyPair::from_pkcs8(k.secret_pkcs8_der())
                        .map_err(|e| invalid(format!("neither an EC P-256 nor an RSA key: {e}")))?,
                ),
            },
            PrivateKeyDer::Sec1(k) => {
                // ring reads EC keys only as PKCS#8: wrap the SEC1 ECPrivateKey in one.
                let mut body = vec![0x02, 0x01, 0x00];
                body.extend_from_slice(EC_P256_ALG);
                body.extend(der(0x04, k.secret_sec1_der()));
                Signer::Ec(
                    ec(&der(0x30, &body))
                        .map_err(|e| invalid(format!("not an EC P-256 key: {e}")))?,
                )
            }
            PrivateKeyDer::Pkcs1(k) => Signer::Rsa(
                RsaKeyPair::from_der(k.secret_pkcs1_der())
                    .map_err(|e| invalid(format!("not an RSA key: {e}")))?,
            ),
            _ => return Err(invalid("unsupported private key format".into())),
        };
        let spki = match &signer {
            Signer::Ec(p) => spki_of(EC_P256_ALG, p.public_key().as_ref()),
            Signer::Rsa(p) => spki_of(RSA_ALG, p.public_key().as_ref()),
        };
        let public = PublicKey::from_spki(&spki).map_err(invalid)?;
        Ok(Self { signer, public })
    }

    /// Loads the key at `path`, generating an ECDSA P-256 key there (0600, with its public
    /// key beside it as `<stem>.pub`) when the file does not exist.
    pub fn load_or_generate(path: &Path) -> Result<Self, KeyError> {
        if !path.exists() {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| KeyError::Generate)?;
            let pem =
                tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec());
            let text = pem_block("PRIVATE KEY", pem.secret_pkcs8_der());
            let key = Self::from_pem(text.as_bytes(), path)?;
            write_atomic(path, text.as_bytes(), 0o600)?;
            write_atomic(
                &path.with_extension("pub"),
                key.public.pem().as_bytes(),
                0o644,
            )?;
            tracing::info!(path = %path.display(), kid = %key.public.kid, "generated the service-account signing key");
            return Ok(key);
        }
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_pem(&pem, path)
    }

    /// Signs `msg` (the JWS signing input).
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Ec(p) => p
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Generate),
            Signer::Rsa(p) => {
                let mut sig = vec![0u8; p.public().modulus_len()];
                p.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(|_| KeyError::Generate)?;
                Ok(sig)
            }
        }
    }
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Reads every public key of a `--service-account-key-file`: PUBLIC KEY blocks, or the
/// public half of a private key (kube accepts both).
pub fn load_public_keys(path: &Path) -> Result<Vec<PublicKey>, KeyError> {
    let pem = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |reason: String| KeyError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let mut keys = Vec::new();
    for spki in SubjectPublicKeyInfoDer::pem_slice_iter(&pem) {
        let spki = spki.map_err(|e| invalid(format!("bad PEM: {e}")))?;
        keys.push(PublicKey::from_spki(spki.as_ref()).map_err(invalid)?);
    }
    if keys.is_empty() {
        keys.push(SigningKey::from_pem(&pem, path)?.public);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_signs_what_its_public_key_and_pub_file_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sa.key");
        let key = SigningKey::load_or_generate(&path).unwrap();
        let sig = key.sign(b"hello").unwrap();
        assert!(key.public.verify(b"hello", &sig));
        assert!(!key.public.verify(b"hellO", &sig));
        let again = SigningKey::load_or_generate(&path).unwrap();
        assert_eq!(again.public.kid, key.public.kid);
        let pubs = load_public_keys(&dir.path().join("sa.pub")).unwrap();
        assert_eq!(pubs.len(), 1);
        assert_eq!(pubs[0].kid, key.public.kid);
        assert_eq!(pubs[0].jwk["crv"], "P-256");
        assert!(pubs[0].verify(b"hello", &sig));
        // The private key file also serves as a key file (its public half).
        assert_eq!(load_public_keys(&path).unwrap()[0].kid, key.public.kid);
    }

    #[test]
    fn rejects_garbage_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        std::fs::write(&path, "not a key").unwrap();
        let e = SigningKey::load_or_generate(&path).unwrap_err().to_string();
        assert!(e.contains("bad.key"), "{e}");
        assert!(load_public_keys(&path).is_err());
    }
}

//! Glue between CRI's image messages and pea-images' store: the CRI `Image` of a record, the
//! image config a container starts from, and per-pull credentials.

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use oci_spec::image::ImageConfiguration;
use pea_images::{ImageRecord, Reference};

use crate::error::ShimError;
use crate::Shim;

impl Shim {
    /// The image `key` names (name, id or digest), if present.
    pub fn find_image(&self, key: &str) -> Result<Option<ImageRecord>, ShimError> {
        match self.images.find(key) {
            Ok(r) => Ok(Some(r)),
            Err(pea_images::StoreError::NotFound(_)) => self.find_by_repo_digest(key),
            Err(pea_images::StoreError::Reference(e)) => {
                Err(ShimError::invalid(format!("image {key:?}: {e}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `repo@sha256:<manifest>` (a RepoDigest, as the kubelet passes it back): the image of
    /// that repository whose manifest has that digest, whatever tag it was pulled by.
    fn find_by_repo_digest(&self, key: &str) -> Result<Option<ImageRecord>, ShimError> {
        let Ok(want) = Reference::parse(key) else {
            return Ok(None);
        };
        let Some(digest) = want.digest.as_ref() else {
            return Ok(None);
        };
        Ok(self.images.list()?.into_iter().find(|rec| {
            rec.manifest_digest == *digest
                && rec.names.iter().any(|n| {
                    Reference::parse(n).is_ok_and(|r| {
                        r.registry == want.registry && r.repository == want.repository
                    })
                })
        }))
    }

    /// The image's OCI config (entrypoint, env, user, ...).
    pub fn image_config(&self, rec: &ImageRecord) -> Result<ImageConfiguration, ShimError> {
        let p = self.images.blob_path(&rec.id);
        let bytes = std::fs::read(&p).map_err(ShimError::io(&p))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ShimError::Internal(format!("image {}: unparsable config: {e}", rec.id)))
    }

    /// The CRI view of an image record.
    pub fn cri_image(&self, rec: &ImageRecord) -> Result<cri::Image, ShimError> {
        let mut repo_tags = Vec::new();
        let mut repo_digests = Vec::new();
        for n in &rec.names {
            match Reference::parse(n) {
                Ok(r) if r.digest.is_some() => repo_digests.push(n.clone()),
                Ok(r) => {
                    repo_tags.push(n.clone());
                    let d = r.with_digest(rec.manifest_digest.clone());
                    repo_digests.push(format!("{}@{}", d.name(), rec.manifest_digest));
                }
                Err(_) => repo_tags.push(n.clone()),
            }
        }
        repo_digests.sort();
        repo_digests.dedup();
        let config = self.image_config(rec)?;
        let user = config
            .config()
            .as_ref()
            .and_then(|c| c.user().clone())
            .unwrap_or_default();
        // CRI: uid when the image's user is numeric, else the username.
        let name = user.split(':').next().unwrap_or("");
        let (uid, username) = match name.parse::<i64>() {
            Ok(n) => (Some(cri::Int64Value { value: n }), String::new()),
            Err(_) if name.is_empty() => (Some(cri::Int64Value { value: 0 }), String::new()),
            Err(_) => (None, name.to_string()),
        };
        Ok(cri::Image {
            id: rec.id.to_string(),
            repo_tags,
            repo_digests,
            size: self.images.image_size(rec)?,
            uid,
            username,
            spec: Some(cri::ImageSpec {
                image: rec.id.to_string(),
                annotations: HashMap::new(),
                user_specified_image: String::new(),
                runtime_handler: String::new(),
            }),
            pinned: rec.pinned,
        })
    }
}

/// `user:password` credentials from a CRI AuthConfig (username/password or the base64 `auth`);
/// identity and registry tokens are refused as not implemented rather than ignored.
pub fn credentials(
    auth: &cri::AuthConfig,
) -> Result<Option<pea_images::auth::Credentials>, ShimError> {
    use base64::Engine as _;
    if !auth.identity_token.is_empty() || !auth.registry_token.is_empty() {
        return Err(ShimError::Unimplemented(
            "auth.identity_token / auth.registry_token: token-based registry auth is not \
             implemented in pea-shim; pass username and password"
                .into(),
        ));
    }
    if !auth.username.is_empty() {
        return Ok(Some(pea_images::auth::Credentials {
            username: auth.username.clone(),
            password: auth.password.clone(),
        }));
    }
    if !auth.auth.is_empty() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.auth.trim())
            .map_err(|e| ShimError::invalid(format!("auth.auth: not base64: {e}")))?;
        let s = String::from_utf8(raw)
            .map_err(|_| ShimError::invalid("auth.auth: not UTF-8 user:password"))?;
        return pea_images::auth::Credentials::parse(&s)
            .map(Some)
            .ok_or_else(|| ShimError::invalid("auth.auth: want base64 of user:password"));
    }
    Ok(None)
}

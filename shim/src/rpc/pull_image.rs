//! PullImage: pea-images pulls (registry mirrors from hosts.toml, plain HTTP for insecure
//! registries, Range resume); credentials from the request apply to that pull only.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use pea_images::{NoProgress, Reference};

use crate::error::ShimError;
use crate::Shim;

impl Shim {
    pub async fn pull_image(
        self: &Arc<Self>,
        r: cri::PullImageRequest,
    ) -> Result<cri::PullImageResponse, ShimError> {
        let image = r.image.map(|i| i.image).unwrap_or_default();
        if image.is_empty() {
            return Err(ShimError::invalid("image.image: empty image reference"));
        }
        let reference = Reference::parse(&image)
            .map_err(|e| ShimError::invalid(format!("image.image: {e}")))?;
        let creds = match r.auth.as_ref() {
            Some(a) => crate::images::credentials(a)?,
            None => None,
        };
        let shim = self.clone();
        let want = image.clone();
        let report = tokio::task::spawn_blocking(move || {
            let store_with_creds;
            let store = match creds {
                None => &*shim.images,
                Some(c) => {
                    // A client of its own, so these credentials serve only this pull.
                    let mut cfg = crate::shim::images_client_config(&shim.cfg);
                    let mut by_host = HashMap::new();
                    by_host.insert(reference.registry.clone(), c.clone());
                    // Mirrors from hosts.toml are contacted under their own host names.
                    if let Ok(eps) =
                        pea_images::Client::new(cfg.clone()).endpoints(&reference.registry)
                    {
                        for ep in eps {
                            let host = ep.base.split_once("://").map_or(&*ep.base, |(_, h)| h);
                            by_host.insert(host.to_string(), c.clone());
                        }
                    }
                    cfg.credentials = by_host;
                    store_with_creds = pea_images::Store::open(
                        &shim.cfg.images_root(),
                        pea_images::Client::new(cfg),
                        pea_images::StoreOptions::default(),
                    )?
                    .0;
                    &store_with_creds
                }
            };
            store
                .pull(&want, &NoProgress)
                .map_err(|source| ShimError::Pull {
                    reference: want.clone(),
                    source: Box::new(source),
                })
        })
        .await
        .map_err(|e| ShimError::Internal(format!("pull task: {e}")))??;
        if self.is_pause_image(&image) {
            self.images.set_pinned(&report.image_id.to_string(), true)?;
        }
        Ok(cri::PullImageResponse {
            image_ref: report.image_id.to_string(),
        })
    }

    pub fn is_pause_image(&self, name: &str) -> bool {
        let norm = |s: &str| Reference::parse(s).map(|r| r.to_string()).ok();
        name == self.cfg.pause_image
            || norm(name).is_some() && norm(name) == norm(&self.cfg.pause_image)
    }
}

//! ImageStatus: the image, or no image (not an error) when it is absent, as CRI says.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::Shim;

impl Shim {
    pub async fn image_status(
        &self,
        r: cri::ImageStatusRequest,
    ) -> Result<cri::ImageStatusResponse, ShimError> {
        let key = r.image.map(|i| i.image).unwrap_or_default();
        if key.is_empty() {
            return Err(ShimError::invalid("image.image: empty image reference"));
        }
        let Some(rec) = self.find_image(&key)? else {
            return Ok(cri::ImageStatusResponse::default());
        };
        let mut info = HashMap::new();
        if r.verbose {
            let config = self.image_config(&rec)?;
            info.insert(
                "info".into(),
                serde_json::json!({
                    "id": rec.id.to_string(),
                    "names": rec.names,
                    "manifestDigest": rec.manifest_digest.to_string(),
                    "layers": rec.layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>(),
                    "imageSpec": config,
                })
                .to_string(),
            );
        }
        Ok(cri::ImageStatusResponse {
            image: Some(self.cri_image(&rec)?),
            info,
        })
    }
}

//! RemoveImage: the image with all its names; content no other image shares is pruned. An
//! absent image is not an error (CRI's idempotence); one a container uses is refused.

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::Shim;

impl Shim {
    pub async fn remove_image(
        &self,
        r: cri::RemoveImageRequest,
    ) -> Result<cri::RemoveImageResponse, ShimError> {
        let key = r.image.map(|i| i.image).unwrap_or_default();
        if key.is_empty() {
            return Err(ShimError::invalid("image.image: empty image reference"));
        }
        let Some(rec) = self.find_image(&key)? else {
            return Ok(cri::RemoveImageResponse {});
        };
        let id = rec.id.to_string();
        if let Some(c) = self.containers().into_iter().find(|c| c.image_id == id) {
            return Err(ShimError::FailedPrecondition(format!(
                "image {key:?} ({id}) is in use by container {}",
                c.id
            )));
        }
        match self.images.remove(&id) {
            Ok(_) | Err(pea_images::StoreError::NotFound(_)) => Ok(cri::RemoveImageResponse {}),
            Err(e) => Err(e.into()),
        }
    }
}

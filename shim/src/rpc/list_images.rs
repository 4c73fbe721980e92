//! ListImages, optionally filtered to the image a reference names.

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::Shim;

impl Shim {
    pub async fn list_images(
        &self,
        r: cri::ListImagesRequest,
    ) -> Result<cri::ListImagesResponse, ShimError> {
        let filter = r
            .filter
            .and_then(|f| f.image)
            .map(|i| i.image)
            .filter(|i| !i.is_empty());
        let records = match filter {
            Some(key) => self.find_image(&key)?.into_iter().collect(),
            None => self.images.list()?,
        };
        let images = records
            .iter()
            .map(|rec| self.cri_image(rec))
            .collect::<Result<_, _>>()?;
        Ok(cri::ListImagesResponse { images })
    }
}

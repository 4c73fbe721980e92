//! GetContainerEvents: a stream of container created/started/stopped/deleted events (what the
//! kubelet's evented PLEG subscribes to). A slow subscriber that falls behind gets an error
//! and re-subscribes, as with containerd.

use std::pin::Pin;

use k8s_cri::v1 as cri;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use crate::error::ShimError;
use crate::Shim;

type Events = Pin<
    Box<dyn tokio_stream::Stream<Item = Result<cri::ContainerEventResponse, tonic::Status>> + Send>,
>;

impl Shim {
    pub async fn get_container_events(
        &self,
        _r: cri::GetEventsRequest,
    ) -> Result<Events, ShimError> {
        let rx = self.events.subscribe();
        let s = BroadcastStream::new(rx).map(|e| {
            e.map_err(|lag| {
                tonic::Status::resource_exhausted(format!("event stream fell behind: {lag}"))
            })
        });
        Ok(Box::pin(s))
    }
}

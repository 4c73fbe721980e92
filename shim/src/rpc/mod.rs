//! The gRPC surface: `CriService` implements CRI's RuntimeService and ImageService by handing
//! each RPC to its own file (`impl Shim { async fn <rpc>(...) }`). `call` is the one place that
//! logs a call with its ids and turns a `ShimError` into a `tonic::Status`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::error::ShimError;
use crate::Shim;

mod attach;
mod cadvisor_metrics;
mod checkpoint_container;
mod container_stats;
mod container_status;
mod create_container;
mod exec;
mod exec_sync;
mod get_container_events;
mod image_fs_info;
mod image_status;
mod list_container_stats;
mod list_containers;
mod list_images;
mod list_metric_descriptors;
mod list_pod_sandbox;
mod list_pod_sandbox_metrics;
mod list_pod_sandbox_stats;
mod pod_sandbox_stats;
mod pod_sandbox_status;
mod port_forward;
mod pull_image;
mod remove_container;
mod remove_image;
mod remove_pod_sandbox;
mod reopen_container_log;
mod run_pod_sandbox;
mod runtime_config;
mod start_container;
mod status;
mod stop_container;
mod stop_pod_sandbox;
mod update_container_resources;
mod version;

pub use metrics::Metrics;
mod metrics;

/// Logs one RPC (name, ids, outcome, duration), counts it, and converts its error.
async fn call<T, F>(shim: &Shim, rpc: &'static str, id: &str, fut: F) -> Result<Response<T>, Status>
where
    F: Future<Output = Result<T, ShimError>>,
{
    let span = tracing::info_span!("cri", rpc, id);
    let start = Instant::now();
    let out = fut.instrument(span.clone()).await;
    let elapsed = start.elapsed();
    let _e = span.enter();
    match &out {
        Ok(_) => tracing::debug!(ms = elapsed.as_secs_f64() * 1e3, "ok"),
        Err(e) => tracing::warn!(
            ms = elapsed.as_secs_f64() * 1e3,
            code = ?e.code(),
            error = %e,
            "failed"
        ),
    }
    shim.metrics.observe(rpc, out.is_ok(), elapsed);
    out.map(Response::new).map_err(Status::from)
}

/// The CRI services over one `Shim`.
#[derive(Debug, Clone)]
pub struct CriService(pub Arc<Shim>);

/// One trait method per RPC, written out in the shape `#[async_trait]` gives the trait's
/// methods (async_trait does not look inside macro invocations).
macro_rules! rpcs {
    ($($name:literal $method:ident($req:ty) -> $resp:ty, $id:expr;)*) => {
        $(
            fn $method<'life0, 'async_trait>(
                &'life0 self,
                r: Request<$req>,
            ) -> Pin<Box<dyn Future<Output = Result<Response<$resp>, Status>> + Send + 'async_trait>>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(async move {
                    let r = r.into_inner();
                    #[allow(clippy::redundant_closure_call)]
                    let id: String = ($id)(&r);
                    call(&self.0, $name, &id, self.0.$method(r)).await
                })
            }
        )*
    };
}

type EventStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RuntimeService for CriService {
    rpcs! {
        "Version" version(cri::VersionRequest) -> cri::VersionResponse, |_: &_| String::new();
        "RunPodSandbox" run_pod_sandbox(cri::RunPodSandboxRequest) -> cri::RunPodSandboxResponse,
            |r: &cri::RunPodSandboxRequest| r.config.as_ref().and_then(|c| c.metadata.as_ref())
                .map(|m| format!("{}/{}", m.namespace, m.name)).unwrap_or_default();
        "StopPodSandbox" stop_pod_sandbox(cri::StopPodSandboxRequest) -> cri::StopPodSandboxResponse,
            |r: &cri::StopPodSandboxRequest| r.pod_sandbox_id.clone();
        "RemovePodSandbox" remove_pod_sandbox(cri::RemovePodSandboxRequest) -> cri::RemovePodSandboxResponse,
            |r: &cri::RemovePodSandboxRequest| r.pod_sandbox_id.clone();
        "PodSandboxStatus" pod_sandbox_status(cri::PodSandboxStatusRequest) -> cri::PodSandboxStatusResponse,
            |r: &cri::PodSandboxStatusRequest| r.pod_sandbox_id.clone();
        "ListPodSandbox" list_pod_sandbox(cri::ListPodSandboxRequest) -> cri::ListPodSandboxResponse,
            |_: &_| String::new();
        "CreateContainer" create_container(cri::CreateContainerRequest) -> cri::CreateContainerResponse,
            |r: &cri::CreateContainerRequest| r.pod_sandbox_id.clone();
        "StartContainer" start_container(cri::StartContainerRequest) -> cri::StartContainerResponse,
            |r: &cri::StartContainerRequest| r.container_id.clone();
        "StopContainer" stop_container(cri::StopContainerRequest) -> cri::StopContainerResponse,
            |r: &cri::StopContainerRequest| r.container_id.clone();
        "RemoveContainer" remove_container(cri::RemoveContainerRequest) -> cri::RemoveContainerResponse,
            |r: &cri::RemoveContainerRequest| r.container_id.clone();
        "ListContainers" list_containers(cri::ListContainersRequest) -> cri::ListContainersResponse,
            |_: &_| String::new();
        "ContainerStatus" container_status(cri::ContainerStatusRequest) -> cri::ContainerStatusResponse,
            |r: &cri::ContainerStatusRequest| r.container_id.clone();
        "UpdateContainerResources" update_container_resources(cri::UpdateContainerResourcesRequest)
            -> cri::UpdateContainerResourcesResponse,
            |r: &cri::UpdateContainerResourcesRequest| r.container_id.clone();
        "ReopenContainerLog" reopen_container_log(cri::ReopenContainerLogRequest) -> cri::ReopenContainerLogResponse,
            |r: &cri::ReopenContainerLogRequest| r.container_id.clone();
        "ExecSync" exec_sync(cri::ExecSyncRequest) -> cri::ExecSyncResponse,
            |r: &cri::ExecSyncRequest| r.container_id.clone();
        "Exec" exec(cri::ExecRequest) -> cri::ExecResponse, |r: &cri::ExecRequest| r.container_id.clone();
        "Attach" attach(cri::AttachRequest) -> cri::AttachResponse, |r: &cri::AttachRequest| r.container_id.clone();
        "PortForward" port_forward(cri::PortForwardRequest) -> cri::PortForwardResponse,
            |r: &cri::PortForwardRequest| r.pod_sandbox_id.clone();
        "ContainerStats" container_stats(cri::ContainerStatsRequest) -> cri::ContainerStatsResponse,
            |r: &cri::ContainerStatsRequest| r.container_id.clone();
        "ListContainerStats" list_container_stats(cri::ListContainerStatsRequest) -> cri::ListContainerStatsResponse,
            |_: &_| String::new();
        "PodSandboxStats" pod_sandbox_stats(cri::PodSandboxStatsRequest) -> cri::PodSandboxStatsResponse,
            |r: &cri::PodSandboxStatsRequest| r.pod_sandbox_id.clone();
        "ListPodSandboxStats" list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest) -> cri::ListPodSandboxStatsResponse,
            |_: &_| String::new();
        "UpdateRuntimeConfig" update_runtime_config(cri::UpdateRuntimeConfigRequest) -> cri::UpdateRuntimeConfigResponse,
            |_: &_| String::new();
        "Status" status(cri::StatusRequest) -> cri::StatusResponse, |_: &_| String::new();
        "CheckpointContainer" checkpoint_container(cri::CheckpointContainerRequest) -> cri::CheckpointContainerResponse,
            |r: &cri::CheckpointContainerRequest| r.container_id.clone();
        "ListMetricDescriptors" list_metric_descriptors(cri::ListMetricDescriptorsRequest)
            -> cri::ListMetricDescriptorsResponse, |_: &_| String::new();
        "ListPodSandboxMetrics" list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest)
            -> cri::ListPodSandboxMetricsResponse, |_: &_| String::new();
        "RuntimeConfig" runtime_config(cri::RuntimeConfigRequest) -> cri::RuntimeConfigResponse, |_: &_| String::new();
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        r: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        let r = r.into_inner();
        call(
            &self.0,
            "GetContainerEvents",
            "",
            self.0.get_container_events(r),
        )
        .await
    }
}

#[tonic::async_trait]
impl ImageService for CriService {
    rpcs! {
        "ListImages" list_images(cri::ListImagesRequest) -> cri::ListImagesResponse, |_: &_| String::new();
        "ImageStatus" image_status(cri::ImageStatusRequest) -> cri::ImageStatusResponse,
            |r: &cri::ImageStatusRequest| r.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        "PullImage" pull_image(cri::PullImageRequest) -> cri::PullImageResponse,
            |r: &cri::PullImageRequest| r.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        "RemoveImage" remove_image(cri::RemoveImageRequest) -> cri::RemoveImageResponse,
            |r: &cri::RemoveImageRequest| r.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        "ImageFsInfo" image_fs_info(cri::ImageFsInfoRequest) -> cri::ImageFsInfoResponse, |_: &_| String::new();
    }
}

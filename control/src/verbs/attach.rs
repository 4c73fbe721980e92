//! pods/<name>/attach: relayed to the node's kubelet `/attach/<ns>/<pod>/<container>` like exec
//! (same container choice, stdio flags, upgrade splice), without a command.

use crate::api::{Ctx, Reply};
use crate::status::ApiError;

pub async fn handle(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    crate::verbs::exec::stream_request(ctx, "attach").await
}

//! DELETE on a collection: deletes every object matching the selectors, one by one.

use crate::api::{Ctx, Reply};
use crate::objects;
use crate::status::ApiError;
use crate::verbs::delete::{delete_one, options};
use crate::verbs::list::selectors;

pub async fn handle(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    if ctx.def.namespaced && ctx.namespace().is_none() {
        return Err(ApiError::MethodNotAllowed(format!(
            "deleting all {} across namespaces is not supported; name a namespace",
            ctx.def.plural
        )));
    }
    let (labels, fields) = selectors(ctx)?;
    let opts = options(ctx)?;
    let page = ctx
        .api
        .store
        .list(&ctx.def.prefix(ctx.namespace()), &Default::default())
        .await
        .map_err(|e| ApiError::from_store(e, ctx.def.group, ctx.def.plural, ""))?;
    let mut deleted = Vec::new();
    for kv in &page.items {
        let obj = objects::decode(kv)?;
        if !(labels.matches(&obj) && fields.matches(&obj)) {
            continue;
        }
        let name = objects::name_of(&obj).to_string();
        match delete_one(ctx, &name, &opts).await {
            Ok(o) => deleted.push(o),
            // Gone meanwhile: someone else deleted it.
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Reply::json(
        200,
        objects::list_object(
            &ctx.def.api_version(),
            &ctx.def.list_kind(),
            deleted,
            page.revision,
            None,
        ),
    ))
}

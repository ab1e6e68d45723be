#![recursion_limit = "256"]
//! Daily: compare every payment changed in the last day with its provider,
//! report the differences (one report item per run), and correct only what
//! the provider's own answer proves.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // Provider calls end before the invocation does: a run short of time
    // counts the rest as unanswered and still stores its report.
    shared::api::jobs::run_scheduled("job-reconcile", |services, _| async move {
        shared::api::reconcile::reconcile(&services, time::OffsetDateTime::now_utc()).await
    })
    .await
}

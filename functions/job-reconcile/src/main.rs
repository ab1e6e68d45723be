#![recursion_limit = "256"]
//! Daily: compare every payment changed in the last day with its provider,
//! report the differences (one report item per run), and correct only what
//! the provider's own answer proves.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::services::Services;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let mut services = Services::from_env().await?;
    // A daily job: one slow provider must not eat the run.
    services.settings.http = shared::providers::transport::HttpPolicy::background();
    let services = &services;
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            // Provider calls end before the invocation does: a run short of
            // time counts the rest as unanswered and still stores its report.
            let run = shared::api::reconcile::reconcile(services, time::OffsetDateTime::now_utc());
            let report = shared::deadline::within(event.context.deadline, run).await?;
            Ok::<_, Error>(serde_json::to_value(report)?)
        },
    ))
    .await
}

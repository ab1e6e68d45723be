#![recursion_limit = "256"]
//! Every 5 minutes: expire unpaid payments past their expiry (after asking
//! the provider) and queue again top-ups whose message was lost.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::services::Services;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let mut services = Services::from_env().await?;
    // Shorter provider calls than the API's: one slow provider must not
    // eat the run.
    services.settings.http = shared::providers::transport::HttpPolicy::background();
    let services = &services;
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            // Stop starting provider calls well before Lambda's deadline.
            let deadline = shared::api::jobs::deadline(event.context.deadline);
            let run = shared::api::jobs::sweep_until(
                services,
                time::OffsetDateTime::now_utc(),
                deadline,
                100,
            );
            let report = shared::deadline::within(event.context.deadline, run).await?;
            Ok::<_, Error>(serde_json::to_value(report)?)
        },
    ))
    .await
}

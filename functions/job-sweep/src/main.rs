#![recursion_limit = "256"]
//! Every 5 minutes: expire unpaid payments past their expiry (after asking
//! the provider) and queue again top-ups whose message was lost.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::services::Services;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let services = &Services::from_env().await?;
    run(service_fn(
        move |_: LambdaEvent<serde_json::Value>| async move {
            let report =
                shared::api::jobs::sweep(services, time::OffsetDateTime::now_utc()).await?;
            Ok::<_, Error>(serde_json::to_value(report)?)
        },
    ))
    .await
}

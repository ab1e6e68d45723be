#![recursion_limit = "256"]
//! Events to merchants: new events from the table's stream, retries from
//! the events queue; each delivered, signed, at least once.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;
use shared::services::Services;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let services = &Services::from_env().await?;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let work = shared::api::events_worker::handle(services, event.payload);
        Ok::<Value, Error>(shared::deadline::within(event.context.deadline, work).await)
    }))
    .await
}

#![recursion_limit = "256"]
//! A merchant's webhook endpoints (`/v1/webhook-endpoints...`) and event
//! log (`/v1/events...`).

use lambda_http::{run, service_fn, Error, Request};
use shared::services::Services;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let services = &Services::from_env().await?;
    run(service_fn(move |req: Request| {
        let deadline = shared::deadline::of_request(&req);
        shared::deadline::within(deadline, async move {
            Ok::<_, Error>(shared::api::events::handle(services, req).await)
        })
    }))
    .await
}

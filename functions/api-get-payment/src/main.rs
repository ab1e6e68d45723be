#![recursion_limit = "256"]
//! GET /v1/payments/{id} and GET /v1/payments?reference=: read, asking the provider first while pending.

use lambda_http::{run, service_fn, Error, Request};
use shared::services::Services;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let services = &Services::from_env().await?;
    run(service_fn(move |req: Request| {
        let deadline = shared::deadline::of_request(&req);
        shared::deadline::within(deadline, async move {
            Ok::<_, Error>(shared::api::payments::read(services, req).await)
        })
    }))
    .await
}

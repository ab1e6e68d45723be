#![recursion_limit = "256"]
//! GET /pay/{token} and GET /pay/{token}/status: the payer's page and the
//! state it polls. No API key: the unguessable token is the payer's key.

use lambda_http::{run, service_fn, Error, Request};
use shared::services::Services;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let services = &Services::from_env().await?;
    run(service_fn(move |req: Request| {
        let deadline = shared::deadline::of_request(&req);
        shared::deadline::within(deadline, async move {
            Ok::<_, Error>(shared::api::pay_page::handle(services, req).await)
        })
    }))
    .await
}

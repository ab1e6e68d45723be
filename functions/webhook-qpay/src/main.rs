#![recursion_limit = "256"]
//! GET and POST /webhooks/qpay: QPay callbacks (our payment id in the
//! query), confirmed with payment/check; the answer is `SUCCESS`.

use lambda_http::{run, service_fn, Error, Request};
use shared::payment::Provider;
use shared::services::Services;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let services = &Services::from_env().await?;
    run(service_fn(move |req: Request| {
        let deadline = shared::deadline::of_request(&req);
        shared::deadline::within(deadline, async move {
            Ok::<_, Error>(shared::api::webhooks::handle(services, Provider::Qpay, req).await)
        })
    }))
    .await
}

#![recursion_limit = "256"]
//! SQS: move completed deposits to the casino, exactly once, reporting
//! failures per message.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::services::Services;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let services = &Services::from_env().await?;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let now = time::OffsetDateTime::now_utc();
        // Casino calls end before the invocation does (a batch of one).
        let work = shared::api::worker::handle(services, event.payload, now);
        Ok::<SqsBatchResponse, Error>(shared::deadline::within(event.context.deadline, work).await)
    }))
    .await
}

#![recursion_limit = "256"]
//! Every 5 minutes: expire unpaid payments past their expiry (after asking
//! the provider) and queue again top-ups whose message was lost.

use shared::api::jobs;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    jobs::run_scheduled("job-sweep", |services, deadline_ms| async move {
        // Stop starting provider calls well before Lambda's deadline.
        let stop = jobs::deadline(deadline_ms);
        jobs::sweep_until(&services, time::OffsetDateTime::now_utc(), stop, 100).await
    })
    .await
}

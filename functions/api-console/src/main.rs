//! GET /console: the console for merchants and operators, one page
//! compiled in. No API key to load it and no AWS call: the page asks for a
//! key and reads everything from the API with it.

use lambda_http::{run, service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    run(service_fn(|req: Request| async move {
        Ok::<_, Error>(shared::api::console::handle(req).await)
    }))
    .await
}

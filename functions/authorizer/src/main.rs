#![recursion_limit = "256"]
//! The HTTP API's Lambda authorizer: a bearer API key, hashed, compared in
//! constant time with the hashes in Secrets Manager.

use aws_lambda_events::event::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::api::authorizer::{authorize, ApiKeys, KEYS_TTL_SECONDS};
use shared::secrets::SecretsCache;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let sdk = shared::environment::aws().await;
    let secrets = &SecretsCache::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        std::time::Duration::from_secs(KEYS_TTL_SECONDS),
    );
    let prefix = &std::env::var("PAYGATE_SECRET_PREFIX").unwrap_or_else(|_| "paygate/".into());
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2CustomAuthorizerV2Request>| async move {
            // Cached KEYS_TTL_SECONDS: a revoked key stops working within a minute.
            let keys = ApiKeys::load(secrets, prefix).await?;
            Ok::<ApiGatewayV2CustomAuthorizerSimpleResponse, Error>(authorize(
                &keys,
                &event.payload,
            ))
        },
    ))
    .await
}

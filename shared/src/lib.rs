//! paygate's shared library: what every Lambda function has in common.
//!
//! - [`money`]: exact amounts in minor units.
//! - [`ids`]: validated identifiers.
//! - [`payment`]: the payment record and its state machine.
//! - [`providers`]: provider clients over retrying HTTP.
//! - [`store`]: DynamoDB, every write conditional.
//! - [`secrets`]: Secrets Manager with a cache, values redacted.
//! - [`queue`]: SQS top-up messages.
//! - [`refunds`]: refunds, exactly once at the provider.
//! - [`config`]: environment and AWS SDK configuration.
//! - [`deadline`]: the invocation's deadline, bounding provider calls.

pub mod api;
pub mod deadline;
pub mod digest;
pub mod environment;
pub mod events;
pub mod flow;
pub mod ids;
pub mod money;
pub mod payment;
pub mod provider_health;
pub mod providers;
pub mod queue;
pub mod refunds;
pub mod responses;
pub mod secrets;
pub mod services;
pub mod store;
pub mod telemetry;

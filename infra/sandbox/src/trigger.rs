//! `POST /_sandbox/trigger` `{"provider", "event", "payment_id"}`: what a
//! payment provider's CLI trigger does, for one of our payments. The
//! sandbox finds the provider's record by the reference paygate gave it
//! (our payment id) and plays the event as that provider would:
//!
//! - `paid`, `failed`, `expired`: the provider's record moves to that state
//!   and the provider's callback goes out (or none, where that provider
//!   sends none for the event; the report says so).
//! - `duplicate`: paid, and the same callback delivered twice.
//! - `out-of-order`: paid, the final callback first, then one that claims
//!   an earlier state (or, for a signed provider, a later contradicting
//!   event), as a provider's retry queue can deliver them.
//!
//! The answer lists each delivery and the HTTP status paygate answered.

use std::sync::Arc;

use serde::Deserialize;

use crate::kit::SandboxProvider;
pub use crate::kit::{Delivery, Event, Played, Report, TriggerError};

/// Providers the trigger knows, by the name paygate's API uses.
pub const PROVIDERS: [&str; 6] = [
    "directpay",
    "paygram",
    "toyyibpay",
    "qpay",
    "epayment",
    "payment_engine",
];

#[derive(Debug, Deserialize)]
pub struct Trigger {
    pub provider: String,
    pub event: Event,
    pub payment_id: String,
}

/// Runs one trigger through the providers' table.
pub async fn run(providers: &[Arc<dyn SandboxProvider>], t: &Trigger) -> Played {
    let provider = providers
        .iter()
        .find(|p| p.name() == t.provider || p.aliases().contains(&t.provider.as_str()))
        .ok_or(TriggerError::UnknownProvider)?;
    provider
        .clone()
        .trigger(t.event, t.payment_id.clone())
        .await
}

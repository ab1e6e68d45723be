//! The casino top-up worker's SQS batch: each message is one top-up;
//! failures are reported per message (partial batch response), so a good
//! message is never retried because of a bad neighbour.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use time::OffsetDateTime;

use crate::flow::{process_topup, Books, TopUpResult};
use crate::queue::TopUpMessage;
use crate::services::Services;

/// Processes a batch at `now`.
pub async fn handle(services: &Services, event: SqsEvent, now: OffsetDateTime) -> SqsBatchResponse {
    let mut failures = Vec::new();
    let casino = services.casino().await;
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let message = match record.body.as_deref().map(TopUpMessage::parse) {
            Some(Ok(m)) => m,
            other => {
                // A message that can never be read is dropped, loudly: retrying
                // cannot fix it.
                tracing::error!(message_id = %id, error = ?other.map(|r| r.err()), "unreadable top-up message dropped");
                continue;
            }
        };
        let casino = match &casino {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "casino client unavailable");
                failures.push(id);
                continue;
            }
        };
        match process_topup(Books::of(services), casino, &message, now).await {
            Ok(TopUpResult::Settled) => {}
            Ok(TopUpResult::Retry(why)) => {
                tracing::warn!(message_id = %id, payment_id = %message.payment_id, why, "top-up will be retried");
                failures.push(id);
            }
            Err(e) => {
                tracing::error!(message_id = %id, payment_id = %message.payment_id, error = %e, "top-up failed on storage");
                failures.push(id);
            }
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    response
}

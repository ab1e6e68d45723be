//! SQS messages that ask the top-up worker to move a completed deposit to
//! the casino. The message only names the payment: the top-up record in
//! DynamoDB is the truth, so a duplicate or stale message is harmless.

use serde::{Deserialize, Serialize};

use crate::ids::PaymentId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopUpMessage {
    pub payment_id: PaymentId,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("SQS request failed: {0}")]
    Sqs(String),
    #[error("message body is not a top-up message: {0}")]
    Malformed(String),
}

impl TopUpMessage {
    /// Reads a message body as the worker receives it.
    pub fn parse(body: &str) -> Result<TopUpMessage, QueueError> {
        serde_json::from_str(body).map_err(|e| QueueError::Malformed(e.to_string()))
    }
}

/// The top-up queue. Build once per process.
#[derive(Debug, Clone)]
pub struct TopUpQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl TopUpQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> TopUpQueue {
        TopUpQueue {
            client,
            url: url.into(),
        }
    }

    /// Reads the queue URL from `PAYGATE_TOPUP_QUEUE_URL`.
    pub fn from_env(
        client: aws_sdk_sqs::Client,
    ) -> Result<TopUpQueue, crate::environment::ConfigError> {
        Ok(TopUpQueue::new(
            client,
            crate::environment::required("PAYGATE_TOPUP_QUEUE_URL")?,
        ))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The SQS client, for the function's other queue (events' retries).
    pub fn sqs(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }

    /// Sends the message; returns SQS's message id.
    pub async fn send(&self, message: &TopUpMessage) -> Result<String, QueueError> {
        let body =
            serde_json::to_string(message).map_err(|e| QueueError::Malformed(e.to_string()))?;
        let out = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| {
                QueueError::Sqs(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
            })?;
        Ok(out.message_id.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_bad_bodies_are_typed_errors() {
        let m = TopUpMessage {
            payment_id: PaymentId::generate(),
        };
        let body = serde_json::to_string(&m).unwrap();
        assert_eq!(TopUpMessage::parse(&body).unwrap(), m);
        for bad in ["", "{}", r#"{"payment_id":"nope"}"#, "[1]"] {
            assert!(matches!(
                TopUpMessage::parse(bad),
                Err(QueueError::Malformed(_))
            ));
        }
    }
}

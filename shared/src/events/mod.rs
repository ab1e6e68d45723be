//! Events to the merchant (API.md, "Events to the merchant"): what changed,
//! told to the merchant's webhook endpoints, signed as Standard Webhooks
//! specifies, at least once.
//!
//! An event is written in the same DynamoDB transaction as the change it
//! reports (the store's transitions put it), so there is no change without
//! its event and no event without its change; a duplicate callback that
//! changes nothing makes none. The table's stream hands each new event to
//! `worker-events`, which fans it out to the merchant's endpoints and
//! delivers it (decision 56).

pub mod deliver;
pub mod signature;
pub mod target;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{EventId, MerchantId, PaymentId};
use crate::payment::{Payment, PaymentStatus};

/// What an event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "payment.completed")]
    PaymentCompleted,
    #[serde(rename = "payment.failed")]
    PaymentFailed,
    #[serde(rename = "payment.expired")]
    PaymentExpired,
    #[serde(rename = "payment.cancelled")]
    PaymentCancelled,
    #[serde(rename = "payment.needs_review")]
    PaymentNeedsReview,
    #[serde(rename = "payment.refunded")]
    PaymentRefunded,
    #[serde(rename = "payment.partially_refunded")]
    PaymentPartiallyRefunded,
    #[serde(rename = "refund.pending")]
    RefundPending,
    #[serde(rename = "refund.succeeded")]
    RefundSucceeded,
    #[serde(rename = "refund.failed")]
    RefundFailed,
    #[serde(rename = "topup.sent")]
    TopUpSent,
    #[serde(rename = "topup.unknown")]
    TopUpUnknown,
    #[serde(rename = "topup.failed")]
    TopUpFailed,
}

impl EventType {
    pub const ALL: [EventType; 13] = [
        EventType::PaymentCompleted,
        EventType::PaymentFailed,
        EventType::PaymentExpired,
        EventType::PaymentCancelled,
        EventType::PaymentNeedsReview,
        EventType::PaymentRefunded,
        EventType::PaymentPartiallyRefunded,
        EventType::RefundPending,
        EventType::RefundSucceeded,
        EventType::RefundFailed,
        EventType::TopUpSent,
        EventType::TopUpUnknown,
        EventType::TopUpFailed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::PaymentCompleted => "payment.completed",
            EventType::PaymentFailed => "payment.failed",
            EventType::PaymentExpired => "payment.expired",
            EventType::PaymentCancelled => "payment.cancelled",
            EventType::PaymentNeedsReview => "payment.needs_review",
            EventType::PaymentRefunded => "payment.refunded",
            EventType::PaymentPartiallyRefunded => "payment.partially_refunded",
            EventType::RefundPending => "refund.pending",
            EventType::RefundSucceeded => "refund.succeeded",
            EventType::RefundFailed => "refund.failed",
            EventType::TopUpSent => "topup.sent",
            EventType::TopUpUnknown => "topup.unknown",
            EventType::TopUpFailed => "topup.failed",
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The event a payment's move to `status` makes, if any (a payment
    /// back to pending, which only a person's decision could do, makes
    /// none).
    pub fn of_payment(status: PaymentStatus) -> Option<EventType> {
        Some(match status {
            PaymentStatus::Pending => return None,
            PaymentStatus::Completed => EventType::PaymentCompleted,
            PaymentStatus::Failed => EventType::PaymentFailed,
            PaymentStatus::Expired => EventType::PaymentExpired,
            PaymentStatus::Cancelled => EventType::PaymentCancelled,
            PaymentStatus::NeedsReview => EventType::PaymentNeedsReview,
            PaymentStatus::Refunded => EventType::PaymentRefunded,
            PaymentStatus::PartiallyRefunded => EventType::PaymentPartiallyRefunded,
        })
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an endpoint subscribes to: one type (`payment.completed`), every
/// type of a group (`refund.*`), or everything (`*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subscription(String);

impl Subscription {
    pub fn matches(&self, kind: EventType) -> bool {
        let text = kind.as_str();
        match self.0.strip_suffix('*') {
            Some("") => true,
            Some(group) => text.starts_with(group),
            None => self.0 == text,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Subscription {
    type Error = String;
    fn try_from(s: String) -> Result<Subscription, String> {
        let known = s == "*"
            || EventType::parse(&s).is_some()
            || s.strip_suffix(".*").is_some_and(|group| {
                EventType::ALL
                    .iter()
                    .any(|t| t.as_str().split('.').next() == Some(group))
            });
        if known {
            Ok(Subscription(s))
        } else {
            Err(format!(
                "{s:?} is not an event type, a group (payment.*, refund.*, topup.*) or *"
            ))
        }
    }
}

impl From<Subscription> for String {
    fn from(s: Subscription) -> String {
        s.0
    }
}

/// Whether `events` (an endpoint's subscriptions; none is all) take `kind`.
pub fn subscribed(events: &[Subscription], kind: EventType) -> bool {
    events.is_empty() || events.iter().any(|s| s.matches(kind))
}

/// One event, as it is stored and sent. `body` is the JSON every delivery
/// sends, byte for byte: `{"id", "type", "created_at", "data"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub kind: EventType,
    pub merchant: MerchantId,
    pub payment_id: PaymentId,
    pub created_at: OffsetDateTime,
    pub body: String,
}

#[derive(Serialize)]
struct Body<'a, T: Serialize> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    data: &'a T,
}

impl Event {
    /// A new event about `payment_id`, whose `data` is `data`.
    pub fn new<T: Serialize>(
        kind: EventType,
        merchant: MerchantId,
        payment_id: PaymentId,
        at: OffsetDateTime,
        data: &T,
    ) -> Result<Event, serde_json::Error> {
        let id = EventId::generate();
        let body = serde_json::to_string(&Body {
            id: id.to_string(),
            kind: kind.as_str(),
            created_at: at,
            data,
        })?;
        Ok(Event {
            id,
            kind,
            merchant,
            payment_id,
            created_at: at,
            body,
        })
    }

    /// The event a payment's change makes: the payment as the API shows it
    /// to its merchant after the change (without its refunds and the
    /// history kept apart, which GET adds), or `None` where the change
    /// makes no event.
    pub fn of_payment(
        next: &Payment,
        at: OffsetDateTime,
    ) -> Option<Result<Event, serde_json::Error>> {
        let kind = EventType::of_payment(next.status)?;
        let view = crate::api::PaymentView::of(next, None);
        Some(Event::new(
            kind,
            next.merchant_id.clone(),
            next.id,
            at,
            &view,
        ))
    }
}

/// A refund as its events show it.
#[derive(Serialize)]
struct RefundData<'a> {
    id: String,
    payment_id: String,
    amount: i64,
    currency: crate::money::Currency,
    status: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_code: Option<&'a str>,
}

/// A casino top-up as its events show it.
#[derive(Serialize)]
struct TopUpData<'a> {
    payment_id: String,
    status: &'static str,
    amount: i64,
    currency: crate::money::Currency,
    casino_transaction_id: Option<&'a str>,
    attempts: u32,
    last_error: Option<&'a str>,
}

impl Event {
    /// The event of a refund of `payment` reaching `status` (`pending` when
    /// it is reserved and sent, then `succeeded` or `failed`).
    pub fn of_refund(
        payment: &Payment,
        refund: &crate::store::Refund,
        status: crate::store::RefundStatus,
        at: OffsetDateTime,
    ) -> Result<Event, serde_json::Error> {
        use crate::store::RefundStatus;
        let kind = match status {
            RefundStatus::Pending => EventType::RefundPending,
            RefundStatus::Succeeded => EventType::RefundSucceeded,
            RefundStatus::Failed => EventType::RefundFailed,
        };
        let data = RefundData {
            id: format!("ref_{}", refund.refund_id),
            payment_id: payment.id.to_string(),
            amount: refund.amount.minor(),
            currency: refund.amount.currency(),
            status: status.as_str(),
            created_at: refund.created_at,
            failure_code: refund
                .provider_code
                .as_deref()
                .filter(|_| status == RefundStatus::Failed),
        };
        Event::new(kind, payment.merchant_id.clone(), payment.id, at, &data)
    }

    /// The event of a top-up reaching `status` (`done` is `topup.sent`,
    /// `unknown` and `failed` wait for a person); `None` for the others.
    pub fn of_topup(
        topup: &crate::store::TopUp,
        status: crate::store::TopUpStatus,
        casino_transaction_id: Option<&str>,
        error: Option<&str>,
        at: OffsetDateTime,
    ) -> Option<Result<Event, serde_json::Error>> {
        use crate::store::TopUpStatus;
        let (kind, shown) = match status {
            TopUpStatus::Done => (EventType::TopUpSent, "sent"),
            TopUpStatus::Unknown => (EventType::TopUpUnknown, "unknown"),
            TopUpStatus::Failed => (EventType::TopUpFailed, "failed"),
            _ => return None,
        };
        let data = TopUpData {
            payment_id: topup.payment_id.to_string(),
            status: shown,
            amount: topup.amount.minor(),
            currency: topup.amount.currency(),
            casino_transaction_id,
            attempts: topup.attempts,
            last_error: error,
        };
        Some(Event::new(
            kind,
            topup.merchant_id.clone(),
            topup.payment_id,
            at,
            &data,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(s: &str) -> Subscription {
        Subscription::try_from(s.to_string()).unwrap()
    }

    #[test]
    fn subscriptions_name_a_type_a_group_or_everything() {
        assert!(sub("payment.completed").matches(EventType::PaymentCompleted));
        assert!(!sub("payment.completed").matches(EventType::PaymentFailed));
        assert!(sub("refund.*").matches(EventType::RefundFailed));
        assert!(!sub("refund.*").matches(EventType::PaymentRefunded));
        assert!(sub("*").matches(EventType::TopUpSent));
        assert!(subscribed(&[], EventType::TopUpSent));
        for bad in [
            "payment",
            "payments.*",
            "payment.done",
            "",
            "*.completed",
            "refund.**",
        ] {
            assert!(Subscription::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_type_reads_back_and_each_final_status_has_one() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert_eq!(EventType::of_payment(PaymentStatus::Pending), None);
        assert_eq!(
            EventType::of_payment(PaymentStatus::Completed),
            Some(EventType::PaymentCompleted)
        );
    }

    #[test]
    fn the_body_is_the_event_as_api_md_shows_it() {
        let at = time::macros::datetime!(2026-12-05 10:00:00 UTC);
        let e = Event::new(
            EventType::RefundSucceeded,
            "m_1".parse().unwrap(),
            PaymentId::generate(),
            at,
            &serde_json::json!({"id": "ref_1"}),
        )
        .unwrap();
        let body: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(body["id"], e.id.to_string());
        assert!(body["id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(body["type"], "refund.succeeded");
        assert_eq!(body["created_at"], "2026-12-05T10:00:00Z");
        assert_eq!(body["data"]["id"], "ref_1");
    }
}

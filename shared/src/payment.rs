//! The payment record and its state machine.
//!
//! [`PaymentStatus::can_move_to`] reads one table, [`TRANSITIONS`]; every
//! writer (API, webhook, poll, sweep) asks it, and the store makes the same
//! check part of its conditional write. Nothing moves back to `pending`, and
//! terminal states stay terminal. Money that really arrived is never ignored:
//! a confirmed payment after `expired` completes the payment (a late payment),
//! and one after `failed` or `cancelled` goes to `needs_review` for a person,
//! who accepts it (`completed`) or rejects it (`failed`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{
    CasinoUsername, MerchantId, MerchantReference, PageToken, PaymentId, ProviderReference,
    WalletUserId,
};
use crate::money::Money;

/// The gateways a payment can go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Directpay,
    Paygram,
    Toyyibpay,
    Qpay,
    Epayment,
    PaymentEngine,
}

impl Provider {
    pub const ALL: [Provider; 6] = [
        Provider::Directpay,
        Provider::Paygram,
        Provider::Toyyibpay,
        Provider::Qpay,
        Provider::Epayment,
        Provider::PaymentEngine,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Provider::Directpay => "directpay",
            Provider::Paygram => "paygram",
            Provider::Toyyibpay => "toyyibpay",
            Provider::Qpay => "qpay",
            Provider::Epayment => "epayment",
            Provider::PaymentEngine => "payment_engine",
        }
    }
}

/// How a provider can refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundSupport {
    None,
    /// Only the whole payment.
    Full,
    /// Any part of it, from `minimum` minor units.
    Partial {
        minimum: i64,
    },
}

/// What a provider lets a merchant do after creating a payment
/// (PROVIDERS.md): the support table of the refund and cancel routes, in
/// each provider's description (`providers::registry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operations {
    pub cancel: bool,
    pub refund: RefundSupport,
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider {0:?}")]
pub struct UnknownProvider(String);

impl FromStr for Provider {
    type Err = UnknownProvider;
    fn from_str(s: &str) -> Result<Provider, UnknownProvider> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProvider(s.chars().take(40).collect()))
    }
}

/// Where a payment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Completed,
    Failed,
    Expired,
    Cancelled,
    Refunded,
    PartiallyRefunded,
    NeedsReview,
}

use PaymentStatus::*;

/// Every allowed move, and no other. `PartiallyRefunded -> PartiallyRefunded`
/// is a second partial refund; every other repeat of a state is a duplicate.
pub const TRANSITIONS: &[(PaymentStatus, &[PaymentStatus])] = &[
    (
        Pending,
        &[Completed, Failed, Expired, Cancelled, NeedsReview],
    ),
    // A late payment: the provider confirms money after we gave up waiting.
    (Expired, &[Completed, NeedsReview]),
    // The provider said it failed, or we cancelled, and then money arrived
    // anyway: contradictory, so a person looks at it.
    (Failed, &[NeedsReview]),
    (Cancelled, &[NeedsReview]),
    (Completed, &[PartiallyRefunded, Refunded]),
    (PartiallyRefunded, &[PartiallyRefunded, Refunded]),
    (Refunded, &[]),
    // Resolved by a person (an operator accepts or rejects it); no automatic
    // flow moves it (`flow::target` asks for nothing from here).
    (NeedsReview, &[Completed, Failed]),
];

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 8] = [
        Pending,
        Completed,
        Failed,
        Expired,
        Cancelled,
        Refunded,
        PartiallyRefunded,
        NeedsReview,
    ];

    /// The states this one may move to.
    pub fn next_states(self) -> &'static [PaymentStatus] {
        TRANSITIONS
            .iter()
            .find(|(from, _)| *from == self)
            .map_or(&[], |(_, to)| to)
    }

    pub fn can_move_to(self, to: PaymentStatus) -> bool {
        self.next_states().contains(&to)
    }

    /// No automatic flow moves a payment out of this state.
    pub fn is_terminal(self) -> bool {
        self.next_states().is_empty()
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Pending => "pending",
            Completed => "completed",
            Failed => "failed",
            Expired => "expired",
            Cancelled => "cancelled",
            Refunded => "refunded",
            PartiallyRefunded => "partially_refunded",
            NeedsReview => "needs_review",
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What caused a status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeSource {
    Api,
    Webhook,
    Poll,
    Sweep,
    Reconcile,
    /// A person, through an operator route (the entry names them).
    Operator,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub status: PaymentStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub source: ChangeSource,
    /// The operator, for a change an operator made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The operator's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The operator's action (`accept`, `reject`, `mark_not_refunded`,
    /// `mark_sent`, ...). An entry with an action may repeat the status: a
    /// decision on a refund or top-up that moves no status is noted too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

impl HistoryEntry {
    /// `at` as stored (RFC 3339).
    pub fn at_text(&self) -> String {
        self.at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// What the payer needs to pay: a page, a QR code, or widget parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    /// paygate's own page for the payer (`<public base>/pay/<token>`): one
    /// link a merchant can send, whatever the provider.
    #[serde(default)]
    pub page_url: Option<String>,
    pub url: Option<String>,
    pub qr_text: Option<String>,
    pub qr_image: Option<String>,
    pub widget: Option<serde_json::Map<String, serde_json::Value>>,
    /// Apps that open the payment directly on a phone (QPay's bank apps).
    #[serde(default)]
    pub links: Vec<AppLink>,
}

/// A bank or wallet app's deep link for the payment, as the provider named it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppLink {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub logo: Option<String>,
    pub link: String,
}

/// One payment, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub id: PaymentId,
    pub merchant_id: MerchantId,
    pub provider: Provider,
    pub amount: Money,
    pub reference: MerchantReference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub customer: Customer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet_user_id: Option<WalletUserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub casino_username: Option<CasinoUsername>,
    pub status: PaymentStatus,
    /// Bumped by every status change; the store's writes are conditional on it.
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_reference: Option<ProviderReference>,
    /// The provider's own last word on the payment ("PAID", "2", "CHARGE").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_status: Option<String>,
    #[serde(default)]
    pub checkout: Checkout,
    /// The token of the payer's page (`checkout.page_url`), where it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_token: Option<PageToken>,
    /// What the provider confirmed was paid, recorded when the payment went
    /// to review (a short or overpaid payment, or money after a failure).
    /// An operator's accept credits this amount; refunds are bounded by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_amount: Option<Money>,
    /// Refunded so far, in the payment's currency.
    pub refunded_amount: Money,
    /// Refunds reserved and sent to the provider but not yet confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_pending: Option<Money>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When we last asked the provider about this payment.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub provider_checked_at: Option<OffsetDateTime>,
    /// Sweep checks that got no answer from the provider (each pushes the
    /// next check further out).
    #[serde(default)]
    pub sweep_misses: u32,
    /// Since when the provider has kept refusing to describe the payment
    /// past its expiry (the operators' queue lists it as stale).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub stale_since: Option<OffsetDateTime>,
    /// The provider's latest refusal to describe it, for the operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_error: Option<String>,
    /// The first [`HISTORY_INLINE`] entries of the payment's history; the
    /// rest are items of their own (`history_apart` of them, in order), so
    /// a payment with thousands of partial refunds stays far below
    /// DynamoDB's 400 KB item limit.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    #[serde(default)]
    pub history_apart: u32,
}

/// How many history entries a payment item carries itself.
pub const HISTORY_INLINE: usize = 100;

/// How long after a payment's expiry its payer's page still shows the
/// outcome (a payer who paid at the last minute sees it complete); then
/// the link is gone.
pub const PAGE_AFTER_EXPIRY: time::Duration = time::Duration::hours(24);

/// The parts of a new payment the caller chooses; the rest starts fixed.
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub id: PaymentId,
    pub merchant_id: MerchantId,
    pub provider: Provider,
    pub amount: Money,
    pub reference: MerchantReference,
    pub description: Option<String>,
    pub customer: Customer,
    pub return_url: Option<String>,
    pub method: Option<String>,
    pub wallet_user_id: Option<WalletUserId>,
    pub casino_username: Option<CasinoUsername>,
    pub provider_reference: Option<ProviderReference>,
    pub checkout: Checkout,
    pub page_token: Option<PageToken>,
    pub expires_at: OffsetDateTime,
}

#[cfg(test)]
impl Payment {
    /// A pending payment of `amount` at `provider`, for unit tests.
    pub(crate) fn sample(provider: Provider, amount: Money) -> Payment {
        let now = OffsetDateTime::now_utc();
        Payment::new(
            NewPayment {
                id: PaymentId::generate(),
                merchant_id: "m_sample".parse().expect("a valid merchant id"),
                provider,
                amount,
                reference: "ORD-SAMPLE".parse().expect("a valid reference"),
                description: None,
                customer: Customer::default(),
                return_url: None,
                method: None,
                wallet_user_id: None,
                casino_username: None,
                provider_reference: None,
                checkout: Checkout::default(),
                page_token: None,
                expires_at: now,
            },
            ChangeSource::Api,
            now,
        )
    }
}

impl Payment {
    /// A new pending payment at `now`, version 1.
    pub fn new(new: NewPayment, source: ChangeSource, now: OffsetDateTime) -> Payment {
        Payment {
            id: new.id,
            merchant_id: new.merchant_id,
            provider: new.provider,
            amount: new.amount,
            refunded_amount: Money::zero(new.amount.currency()),
            confirmed_amount: None,
            refund_pending: None,
            reference: new.reference,
            description: new.description,
            customer: new.customer,
            return_url: new.return_url,
            method: new.method,
            wallet_user_id: new.wallet_user_id,
            casino_username: new.casino_username,
            status: Pending,
            version: 1,
            provider_reference: new.provider_reference,
            provider_status: None,
            checkout: new.checkout,
            page_token: new.page_token,
            expires_at: new.expires_at,
            created_at: now,
            updated_at: now,
            provider_checked_at: None,
            sweep_misses: 0,
            stale_since: None,
            last_check_error: None,
            history_apart: 0,
            history: vec![HistoryEntry {
                status: Pending,
                at: now,
                source,
                by: None,
                reason: None,
                action: None,
            }],
        }
    }

    /// What was paid: the provider's confirmed amount where one was
    /// recorded (an accepted review), the payment's amount otherwise.
    pub fn paid(&self) -> Money {
        self.confirmed_amount.unwrap_or(self.amount)
    }

    /// Refunds reserved but not yet confirmed (zero when none).
    pub fn refund_pending(&self) -> Money {
        self.refund_pending
            .unwrap_or(Money::zero(self.amount.currency()))
    }

    /// What is left to refund: what was paid less what was refunded and
    /// what is being refunded.
    pub fn refundable(&self) -> Money {
        // Reservations never exceed the amount (the store's refund writes are
        // conditional on the version the check was made on); a failure here
        // is a corrupted record, and nothing more can be refunded from it.
        self.paid()
            .checked_sub(self.refunded_amount)
            .and_then(|rest| rest.checked_sub(self.refund_pending()))
            .unwrap_or(Money::zero(self.amount.currency()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The transition table written out again, pair by pair, as the design
    /// states it. The exhaustive test compares the code against this list.
    const EXPECTED: &[(PaymentStatus, PaymentStatus)] = &[
        (Pending, Completed),
        (Pending, Failed),
        (Pending, Expired),
        (Pending, Cancelled),
        (Pending, NeedsReview),
        (Expired, Completed),
        (Expired, NeedsReview),
        (Failed, NeedsReview),
        (Cancelled, NeedsReview),
        (Completed, PartiallyRefunded),
        (Completed, Refunded),
        (PartiallyRefunded, PartiallyRefunded),
        (PartiallyRefunded, Refunded),
        (NeedsReview, Completed),
        (NeedsReview, Failed),
    ];

    #[test]
    fn every_pair_of_states_matches_the_design() {
        let expected: HashSet<_> = EXPECTED.iter().copied().collect();
        let mut checked = 0;
        for from in PaymentStatus::ALL {
            for to in PaymentStatus::ALL {
                assert_eq!(
                    from.can_move_to(to),
                    expected.contains(&(from, to)),
                    "{from} -> {to}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 64);
        // Every state has a row, so none is terminal by omission.
        for s in PaymentStatus::ALL {
            assert!(TRANSITIONS.iter().any(|(from, _)| *from == s), "{s}");
        }
    }

    #[test]
    fn nothing_moves_back_to_pending() {
        for from in PaymentStatus::ALL {
            assert!(!from.can_move_to(Pending), "{from} -> pending");
        }
    }

    #[test]
    fn late_payment_after_expiry_completes() {
        assert!(Expired.can_move_to(Completed));
    }

    #[test]
    fn late_failure_or_pending_after_completion_changes_nothing() {
        for late in [Pending, Failed, Expired, Cancelled] {
            assert!(!Completed.can_move_to(late));
        }
        assert!(Refunded.is_terminal());
        assert!(Failed.can_move_to(NeedsReview) && !Failed.can_move_to(Completed));
    }

    #[test]
    fn provider_and_status_names_round_trip() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>(), Ok(p));
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
        assert!("stripe".parse::<Provider>().is_err());
        for s in PaymentStatus::ALL {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
    }
}

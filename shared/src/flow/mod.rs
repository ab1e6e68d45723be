//! The money flows: applying a provider's confirmed answer to a payment
//! (completion with wallet credit and casino top-up, failure, expiry), and
//! moving a completed deposit on to the casino.
//!
//! Callbacks, polls and sweeps all end in [`apply_confirmation`]: only the
//! provider's own answer moves a payment, and only through one conditional
//! transaction.
//!
//! `settle` decides and applies what a provider's answer means for a
//! payment (and what an operator's review decides); `topup` moves a
//! completed deposit on to the casino, exactly once.

mod settle;
mod topup;

pub use settle::*;
pub use topup::*;

use crate::queue::TopUpQueue;
use crate::services::Services;
use crate::store::Store;

/// What the flows write through: the table, and the queue casino top-ups
/// go on. A flow that asks a provider is handed its gateway; none takes
/// the whole of [`Services`].
#[derive(Clone, Copy)]
pub struct Books<'a> {
    pub store: &'a Store,
    pub queue: &'a TopUpQueue,
}

impl<'a> Books<'a> {
    /// The table and the queue of a process's services.
    pub fn of(services: &'a Services) -> Books<'a> {
        Books {
            store: &services.store,
            queue: &services.queue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use crate::money::Money;
    use crate::payment::Provider;
    use crate::payment::{Payment, PaymentStatus};
    use crate::providers::Confirmation;
    use crate::store::TopUp;
    use time::OffsetDateTime;

    fn pending(amount: i64) -> Payment {
        Payment::sample(
            Provider::Directpay,
            Money::new(amount, Currency::Php).unwrap(),
        )
    }

    fn paid(amount: Option<i64>) -> Confirmation {
        Confirmation {
            status: PaymentStatus::Completed,
            amount: amount.map(|a| Money::new(a, Currency::Php).unwrap()),
            provider_status: "SUCCESS".into(),
        }
    }

    #[test]
    fn a_completion_without_an_amount_is_never_credited_blindly() {
        let p = pending(10_000);
        assert_eq!(
            target(&p, &paid(Some(10_000))),
            Some(PaymentStatus::Completed)
        );
        assert_eq!(target(&p, &paid(None)), Some(PaymentStatus::NeedsReview));
        assert_eq!(
            target(&p, &paid(Some(9_999))),
            Some(PaymentStatus::NeedsReview)
        );
        let mut done = p.clone();
        done.status = PaymentStatus::Completed;
        assert_eq!(target(&done, &paid(None)), None, "nothing to move");
    }

    #[test]
    fn no_provider_answer_moves_a_payment_out_of_review() {
        // Only an operator's accept or reject does (decide_review).
        let mut p = pending(10_000);
        p.status = PaymentStatus::NeedsReview;
        for status in PaymentStatus::ALL {
            for amount in [None, Some(10_000), Some(9_000)] {
                let c = Confirmation {
                    status,
                    amount: amount.map(|a| Money::new(a, Currency::Php).unwrap()),
                    provider_status: "X".into(),
                };
                assert_eq!(target(&p, &c), None, "{status} {amount:?}");
            }
        }
    }

    #[test]
    fn an_accepted_amount_is_what_matches_afterwards() {
        let mut p = pending(10_000);
        assert!(amount_matches(
            &p,
            Money::new(10_000, Currency::Php).unwrap()
        ));
        p.confirmed_amount = Some(Money::new(9_000, Currency::Php).unwrap());
        assert!(amount_matches(
            &p,
            Money::new(9_000, Currency::Php).unwrap()
        ));
        assert!(!amount_matches(
            &p,
            Money::new(10_000, Currency::Php).unwrap()
        ));
    }

    #[test]
    fn a_failing_top_up_is_given_up_only_after_its_attempts_and_window() {
        let p = pending(10_000);
        let queued_at = OffsetDateTime::now_utc();
        let mut t = TopUp::queued(
            p.id,
            p.merchant_id.clone(),
            "u_1".parse().unwrap(),
            "player1".parse().unwrap(),
            p.amount,
            queued_at,
        );
        t.attempts = MAX_TOPUP_ATTEMPTS;
        let window = time::Duration::minutes(TOPUP_RETRY_WINDOW_MINUTES);
        assert!(!gives_up(&t, queued_at + time::Duration::hours(1)));
        assert!(gives_up(&t, queued_at + window));
        t.attempts = MAX_TOPUP_ATTEMPTS - 1;
        assert!(!gives_up(&t, queued_at + window * 3));
    }

    #[test]
    fn a_provider_refund_moves_nothing() {
        let mut p = pending(10_000);
        let refunded = Confirmation {
            status: PaymentStatus::Refunded,
            amount: None,
            provider_status: "REFUNDED".into(),
        };
        assert_eq!(target(&p, &refunded), None);
        p.status = PaymentStatus::Completed;
        assert_eq!(target(&p, &refunded), None);
    }
}

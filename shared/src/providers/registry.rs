//! What paygate knows about each provider beyond its client: one
//! [`Description`] per provider folder (its `DESCRIPTION`), and one
//! registry, [`describe`], that the rest of the code reads instead of
//! switching on the provider. Adding a provider is one folder with its
//! description and one line here (docs/adding-a-provider.md has the whole
//! checklist; `shared/tests/registry.rs` checks it for every provider).

use crate::payment::Provider;
use crate::providers::description::Description;

/// The registry: every provider's description.
pub const fn describe(provider: Provider) -> &'static Description {
    match provider {
        Provider::Directpay => &super::directpay::DESCRIPTION,
        Provider::Paygram => &super::paygram::DESCRIPTION,
        Provider::Toyyibpay => &super::toyyibpay::DESCRIPTION,
        Provider::Qpay => &super::qpay::DESCRIPTION,
        Provider::Epayment => &super::epayment::DESCRIPTION,
        Provider::PaymentEngine => &super::payment_engine::DESCRIPTION,
    }
}

/// Every provider's description, in [`Provider::ALL`]'s order.
pub fn all() -> impl Iterator<Item = &'static Description> {
    Provider::ALL.into_iter().map(describe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use crate::providers::description::{CallbackAnswer, PayerPage};

    #[test]
    fn every_description_is_its_own_providers() {
        for p in Provider::ALL {
            assert_eq!(describe(p).provider, p);
        }
    }

    #[test]
    fn json_answers_are_json_objects() {
        for d in all() {
            if let CallbackAnswer::Json(text) = d.callback_answer {
                let v: serde_json::Value = serde_json::from_str(text).unwrap();
                assert!(v.is_object(), "{:?}", d.provider);
            }
        }
    }

    #[test]
    fn routes_and_secrets_are_unique_and_plain() {
        let mut routes: Vec<_> = all().map(|d| d.route).collect();
        let mut secrets: Vec<_> = all().map(|d| d.secret).collect();
        for s in routes.iter().chain(&secrets) {
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{s}"
            );
        }
        routes.sort();
        routes.dedup();
        secrets.sort();
        secrets.dedup();
        assert_eq!((routes.len(), secrets.len()), (6, 6));
    }

    #[test]
    fn every_payer_page_offers_a_way_to_pay() {
        for d in all() {
            let page = d.payer_page;
            assert!(!page.title.is_empty(), "{:?}", d.provider);
            assert!(
                page.qr.is_some()
                    || page.link.is_some()
                    || page.widget
                    || page.instructions.is_some(),
                "{:?}'s payer page offers nothing",
                d.provider
            );
        }
    }

    #[test]
    fn a_description_says_only_what_differs_from_the_plainest() {
        let plain = Description::of(Provider::Qpay, &[Currency::Mnt])
            .named("x")
            .answering(CallbackAnswer::Text("ok"))
            .paid_on(PayerPage::titled("t").link("l"))
            .built(
                describe(Provider::Qpay).gateway,
                describe(Provider::Qpay).webhooks,
            );
        assert!(!plain.operations.cancel && !plain.needs_sequence && !plain.needs_contact);
        assert_eq!((plain.amount_tolerance, plain.minimum_amount), (0, 0));
        assert_eq!((plain.secret, plain.route), ("x", "x"));
        assert_eq!(
            plain.payable_after_expiry,
            crate::providers::description::PAYABLE_AFTER_EXPIRY
        );
        let q = describe(Provider::Qpay);
        assert!(q.operations.cancel);
        assert_eq!(q.operations.refund, crate::payment::RefundSupport::Full);
    }

    #[test]
    fn every_provider_takes_a_currency() {
        for d in all() {
            assert!(!d.currencies.is_empty(), "{:?}", d.provider);
            assert!(d.amount_tolerance >= 0);
        }
    }
}

//! How a provider describes itself to the rest of paygate: its
//! [`Description`] (written with [`Description::of`] in its folder's
//! `mod.rs`), the payer page it asks for, and what its client and callback
//! parser are built from. The registry (`registry.rs`) maps each
//! `Provider` to its description; provider folders import this module,
//! never the registry, so no import runs back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::money::Currency;
use crate::payment::{Operations, Provider};
use crate::providers::transport::HttpPolicy;
use crate::providers::{Gateway, ProviderError, WebhookSource};
use crate::secrets::SecretsCache;
use crate::store::Store;

/// What a provider's client and callback parser are built from: the
/// secrets (cached), the deployment's secret prefix, the HTTP policy and
/// the table.
pub struct Connect<'a> {
    pub secrets: &'a SecretsCache,
    pub secret_prefix: &'a str,
    /// The name of the secret holding the settings of what is built.
    pub secret: &'static str,
    pub policy: HttpPolicy,
    pub store: &'a Store,
}

impl Connect<'_> {
    /// The settings of what is built: the JSON secret `<prefix><secret>`.
    pub async fn config<T: DeserializeOwned>(&self) -> Result<T, ProviderError> {
        let name = self.secret;
        self.secrets
            .get_json(&format!("{}{name}", self.secret_prefix))
            .await
            .map_err(|e| ProviderError::Unreachable {
                provider: name,
                reason: e.to_string(),
            })
    }
}

/// A client or a callback parser being built.
pub type Connecting<'a, T> =
    Pin<Box<dyn Future<Output = Result<Arc<T>, ProviderError>> + Send + 'a>>;

/// How a provider's outbound client is built.
pub type BuildGateway = for<'a> fn(&'a Connect<'a>) -> Connecting<'a, dyn Gateway>;

/// How a provider's callback parser is built.
pub type BuildWebhooks = for<'a> fn(&'a Connect<'a>) -> Connecting<'a, dyn WebhookSource>;

/// What a provider expects back for a callback it may stop sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackAnswer {
    /// A JSON body (the text of a JSON object).
    Json(&'static str),
    /// A plain-text body.
    Text(&'static str),
}

/// What a payer page tells the payer, by the payment's method.
pub type Instructions = fn(Option<&str>) -> Vec<&'static str>;

/// What a payer page's QR code carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrOf {
    /// The provider's QR payload (`checkout.qr_text`).
    QrText,
    /// The provider's checkout URL, for a phone to open.
    CheckoutUrl,
}

/// How paygate's page for the payer (`/pay/<token>`) shows a payment with
/// a provider: its heading and which of the provider's ways to pay it
/// offers.
#[derive(Debug, Clone, Copy)]
pub struct PayerPage {
    pub title: &'static str,
    /// A QR code of this, with the hint beside it.
    pub qr: Option<(QrOf, &'static str)>,
    /// A link to the provider's own page (its checkout URL), with this label.
    pub link: Option<&'static str>,
    /// The bank apps the provider named for the payment.
    pub apps: bool,
    /// The provider's payment widget.
    pub widget: bool,
    /// What to tell the payer, by the payment's method.
    pub instructions: Option<Instructions>,
}

impl PayerPage {
    /// A page with this heading and nothing else yet.
    pub const fn titled(title: &'static str) -> PayerPage {
        PayerPage {
            title,
            qr: None,
            link: None,
            apps: false,
            widget: false,
            instructions: None,
        }
    }

    /// With a QR code of `of` and `hint` beside it.
    pub const fn qr(self, of: QrOf, hint: &'static str) -> PayerPage {
        PayerPage {
            qr: Some((of, hint)),
            ..self
        }
    }

    /// With a link to the provider's page labelled `label`.
    pub const fn link(self, label: &'static str) -> PayerPage {
        PayerPage {
            link: Some(label),
            ..self
        }
    }

    /// With the bank apps the provider named.
    pub const fn apps(self) -> PayerPage {
        PayerPage { apps: true, ..self }
    }

    /// With the provider's payment widget.
    pub const fn widget(self) -> PayerPage {
        PayerPage {
            widget: true,
            ..self
        }
    }

    /// With what `instructions` tells the payer for the payment's method.
    pub const fn instructions(
        self,
        instructions: fn(Option<&str>) -> Vec<&'static str>,
    ) -> PayerPage {
        PayerPage {
            instructions: Some(instructions),
            ..self
        }
    }
}

/// How long a provider no source bounds may still take money for a payment
/// paygate expired without closing it at the provider.
pub const PAYABLE_AFTER_EXPIRY: time::Duration = time::Duration::days(7);

/// One provider, described.
#[derive(Debug, Clone, Copy)]
pub struct Description {
    pub provider: Provider,
    /// The currencies a payment with it may be in.
    pub currencies: &'static [Currency],
    /// What a merchant may do after the create (PROVIDERS.md): the support
    /// table of the refund and cancel routes.
    pub operations: Operations,
    /// How far a reported amount may be from the payment's and still count
    /// as the same money, in minor units.
    pub amount_tolerance: i64,
    /// Whether a create needs a number from the provider's sequence in the
    /// table (a provider reference we allocate).
    pub needs_sequence: bool,
    /// Whether a create needs the customer's e-mail and phone.
    pub needs_contact: bool,
    /// The smallest payment it takes, in minor units (0: any positive).
    pub minimum_amount: i64,
    /// How long after a payment's expiry the provider may still take money
    /// for it, when paygate expired it without closing it at the provider:
    /// the slow re-check lane watches it this long (decision 46).
    pub payable_after_expiry: time::Duration,
    /// The longest `expires_in` a merchant may ask for a payment with it.
    pub longest_expiry: time::Duration,
    /// Its secret's name in Secrets Manager, after the deployment's prefix.
    pub secret: &'static str,
    /// The path segment of its callback route: `/webhooks/<route>`.
    pub route: &'static str,
    /// The answer to an accepted callback.
    pub callback_answer: CallbackAnswer,
    /// A callback about a payment paygate knows gets `callback_answer`
    /// whatever became of it (the provider forbids any other answer):
    /// what the callback could not settle (a confirmation that failed or
    /// was throttled) the sweep and the merchant's GET settle.
    pub answers_always: bool,
    /// How the payer's page shows a payment with it.
    pub payer_page: PayerPage,
    /// Builds its outbound client.
    pub gateway: BuildGateway,
    /// Builds its callback parser.
    pub webhooks: BuildWebhooks,
}

impl Description {
    /// Starts the description of `provider`, taking `currencies`: the
    /// plainest provider (no cancel, no refund, exact amounts, no sequence,
    /// no contact needed, any positive amount). The description goes on to
    /// say what differs and ends with how its client and parser are built
    /// ([`Describing::built`]).
    pub const fn of(provider: Provider, currencies: &'static [Currency]) -> Describing {
        Describing {
            provider,
            currencies,
            operations: Operations {
                cancel: false,
                refund: crate::payment::RefundSupport::None,
            },
            amount_tolerance: 0,
            needs_sequence: false,
            needs_contact: false,
            minimum_amount: 0,
            payable_after_expiry: PAYABLE_AFTER_EXPIRY,
            longest_expiry: PAYABLE_AFTER_EXPIRY,
            name: "",
            callback_answer: None,
            answers_always: false,
            payer_page: None,
        }
    }
}

/// A [`Description`] being written. Its name, callback answer and payer
/// page must be said before it is built: a description without them does
/// not compile.
#[derive(Debug, Clone, Copy)]
pub struct Describing {
    provider: Provider,
    currencies: &'static [Currency],
    operations: Operations,
    amount_tolerance: i64,
    needs_sequence: bool,
    needs_contact: bool,
    minimum_amount: i64,
    payable_after_expiry: time::Duration,
    longest_expiry: time::Duration,
    name: &'static str,
    callback_answer: Option<CallbackAnswer>,
    answers_always: bool,
    payer_page: Option<PayerPage>,
}

impl Describing {
    /// Its name in deployments: its secret's (after the prefix) and its
    /// callback route's (`/webhooks/<name>`).
    pub const fn named(self, name: &'static str) -> Describing {
        Describing { name, ..self }
    }

    /// The answer to an accepted callback.
    pub const fn answering(self, answer: CallbackAnswer) -> Describing {
        Describing {
            callback_answer: Some(answer),
            ..self
        }
    }

    /// The answer to every callback about a payment paygate knows, the
    /// provider forbidding any other: a callback it could not settle is
    /// answered all the same, and the sweep and the merchant's GET settle
    /// the payment instead of the provider's retry.
    pub const fn answering_always(self, answer: CallbackAnswer) -> Describing {
        Describing {
            callback_answer: Some(answer),
            answers_always: true,
            ..self
        }
    }

    /// How the payer's page shows a payment with it.
    pub const fn paid_on(self, page: PayerPage) -> Describing {
        Describing {
            payer_page: Some(page),
            ..self
        }
    }

    /// A merchant may cancel an unpaid payment.
    pub const fn cancels(self) -> Describing {
        let operations = Operations {
            cancel: true,
            ..self.operations
        };
        Describing { operations, ..self }
    }

    /// A merchant may refund a paid payment, so far.
    pub const fn refunds(self, refund: crate::payment::RefundSupport) -> Describing {
        let operations = Operations {
            refund,
            ..self.operations
        };
        Describing { operations, ..self }
    }

    /// A reported amount this far (minor units) from the payment's is
    /// still the same money.
    pub const fn tolerating(self, amount_tolerance: i64) -> Describing {
        Describing {
            amount_tolerance,
            ..self
        }
    }

    /// A create needs a number from the provider's sequence in the table.
    pub const fn sequenced(self) -> Describing {
        Describing {
            needs_sequence: true,
            ..self
        }
    }

    /// A create needs the customer's e-mail and phone.
    pub const fn needing_contact(self) -> Describing {
        Describing {
            needs_contact: true,
            ..self
        }
    }

    /// The smallest payment it takes, in minor units.
    pub const fn from_amount(self, minimum_amount: i64) -> Describing {
        Describing {
            minimum_amount,
            ..self
        }
    }

    /// Money may still arrive this long after the payment's expiry when it
    /// was not closed at the provider (the default is a week).
    pub const fn payable_for(self, payable_after_expiry: time::Duration) -> Describing {
        Describing {
            payable_after_expiry,
            ..self
        }
    }

    /// A merchant may ask for a payment to expire at most this long after
    /// its create (the default is a week).
    pub const fn expiring_within(self, longest_expiry: time::Duration) -> Describing {
        Describing {
            longest_expiry,
            ..self
        }
    }

    /// The description, with how its client and callback parser are built.
    pub const fn built(self, gateway: BuildGateway, webhooks: BuildWebhooks) -> Description {
        assert!(!self.name.is_empty(), "a provider is named");
        let Some(callback_answer) = self.callback_answer else {
            panic!("a provider's callback answer is said");
        };
        let Some(payer_page) = self.payer_page else {
            panic!("a provider's payer page is said");
        };
        Description {
            provider: self.provider,
            currencies: self.currencies,
            operations: self.operations,
            amount_tolerance: self.amount_tolerance,
            needs_sequence: self.needs_sequence,
            needs_contact: self.needs_contact,
            minimum_amount: self.minimum_amount,
            payable_after_expiry: self.payable_after_expiry,
            longest_expiry: self.longest_expiry,
            secret: self.name,
            route: self.name,
            callback_answer,
            answers_always: self.answers_always,
            payer_page,
            gateway,
            webhooks,
        }
    }
}

/// The client of a provider built from its settings and the HTTP policy.
pub fn client<'a, C, G>(
    c: &'a Connect<'a>,
    new: fn(C, HttpPolicy) -> Result<G, ProviderError>,
) -> Connecting<'a, dyn Gateway>
where
    C: DeserializeOwned + Send + 'a,
    G: Gateway + 'static,
{
    Box::pin(async move {
        let client = new(c.config().await?, c.policy.clone())?;
        Ok(Arc::new(client) as Arc<dyn Gateway>)
    })
}

/// The callback parser of a provider built from its settings.
pub fn parser<'a, C, W>(
    c: &'a Connect<'a>,
    new: fn(C) -> Result<W, ProviderError>,
) -> Connecting<'a, dyn WebhookSource>
where
    C: DeserializeOwned + Send + 'a,
    W: WebhookSource + 'static,
{
    Box::pin(async move {
        let parser = new(c.config().await?)?;
        Ok(Arc::new(parser) as Arc<dyn WebhookSource>)
    })
}

/// A built client or parser, as a [`Connecting`] that is already done.
pub fn built<'a, T: ?Sized + 'a>(value: Arc<T>) -> Connecting<'a, T>
where
    Arc<T>: Send,
{
    Box::pin(std::future::ready(Ok(value)))
}

//! Identifiers that arrive from outside (URLs, bodies, headers, provider
//! callbacks). Each is a newtype whose only constructor validates, so a value
//! of the type is known good wherever it travels, and storage keys built from
//! it cannot be ambiguous.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} characters")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} contains characters that are not allowed")]
    InvalidCharacters { kind: &'static str },
    #[error("{kind} is not of the form {form}")]
    Malformed {
        kind: &'static str,
        form: &'static str,
    },
}

fn check(
    kind: &'static str,
    value: &str,
    max: usize,
    allowed: impl Fn(u8) -> bool,
) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > max {
        return Err(IdError::TooLong { kind, max });
    }
    if !value.bytes().all(allowed) {
        return Err(IdError::InvalidCharacters { kind });
    }
    Ok(())
}

/// Letters, digits and `_ - .`: safe in URLs, logs and storage keys.
fn word_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// Printable ASCII without space (0x21..=0x7E).
fn visible_ascii(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr, $allowed:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                check($kind, s, $max, $allowed)?;
                Ok($name(s.to_string()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                check($kind, &s, $max, $allowed)?;
                Ok($name(s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// The merchant a payment belongs to (from the API key's authorizer context).
    MerchantId,
    "merchant id",
    64,
    word_char
);
string_id!(
    /// A wallet owner, chosen by the merchant (`u_123`).
    WalletUserId,
    "wallet user id",
    64,
    word_char
);
string_id!(
    /// A 747 Casino player name.
    CasinoUsername,
    "casino username",
    64,
    word_char
);
string_id!(
    /// The merchant's own id for a payment (`ORD-2025-0001`); unique per merchant.
    MerchantReference,
    "reference",
    64,
    visible_ascii
);
string_id!(
    /// The value of an `Idempotency-Key` header: 1–255 visible ASCII characters.
    IdempotencyKey,
    "Idempotency-Key",
    255,
    visible_ascii
);
string_id!(
    /// A provider's id for a payment (bill code, invoice id, transaction id).
    ProviderReference,
    "provider reference",
    128,
    visible_ascii
);

/// An id made of a prefix and a ULID (`pay_01J...`): unique, sortable by
/// creation time, one canonical spelling (upper case, at most 128 bits).
macro_rules! ulid_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(ulid::Ulid);

        impl $name {
            const PREFIX: &'static str = $prefix;

            pub fn generate() -> $name {
                $name(ulid::Ulid::new())
            }

            /// The bare ULID, for providers whose reference fields are too
            /// short for the prefix or refuse `_`.
            pub fn ulid(self) -> ulid::Ulid {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<$name, IdError> {
                const FORM: &str = concat!($prefix, " followed by 26 characters");
                if s.is_empty() {
                    return Err(IdError::Empty { kind: $kind });
                }
                let rest = s.strip_prefix(Self::PREFIX).ok_or(IdError::Malformed {
                    kind: $kind,
                    form: FORM,
                })?;
                if rest.len() != ulid::ULID_LEN {
                    return Err(IdError::Malformed { kind: $kind, form: FORM });
                }
                // Canonical upper case only, so one thing has one spelling.
                if !rest
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
                {
                    return Err(IdError::InvalidCharacters { kind: $kind });
                }
                let id = ulid::Ulid::from_string(rest)
                    .map_err(|_| IdError::InvalidCharacters { kind: $kind })?;
                // A first character above 7 overflows 128 bits; refuse rather
                // than let two spellings name one thing.
                if id.to_string() != rest {
                    return Err(IdError::Malformed { kind: $kind, form: FORM });
                }
                Ok($name(id))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<$name, IdError> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", Self::PREFIX, self.0)
            }
        }
    };
}

ulid_id!(
    /// `pay_` followed by a ULID: a payment.
    PaymentId,
    "pay_",
    "payment id"
);
ulid_id!(
    /// `evt_` followed by a ULID: an event told to a merchant; the
    /// `webhook-id` of each of its deliveries.
    EventId,
    "evt_",
    "event id"
);
ulid_id!(
    /// `we_` followed by a ULID: a merchant's webhook endpoint.
    EndpointId,
    "we_",
    "webhook endpoint id"
);

/// `N` bytes from the operating system's random source, base64url without
/// padding; `None` where it gives none.
pub fn random_base64url<const N: usize>() -> Option<String> {
    use base64::Engine;
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The payer's link to a payment's page (`/pay/<token>`): the payment id's
/// ULID (26 characters) then 24 bytes from the operating system's random
/// source, base64url without padding (32 characters). The random part makes
/// it unguessable; the ULID lets the page read its payment with one read
/// (the payment keeps the whole token and both must match). Tokens of the
/// earlier form (the 32 random characters alone, found through a `PAGE#`
/// link item) are still read. The only thing a payer's browser holds; kept
/// out of logs (`Debug` shows none of it).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PageToken(String);

impl PageToken {
    /// The random part's length, and the whole of an earlier token.
    pub const RANDOM_LEN: usize = 32;
    /// A token: the payment's ULID and the random part.
    pub const LEN: usize = ulid::ULID_LEN + Self::RANDOM_LEN;

    /// A fresh token for a payment, or `None` where the operating system
    /// gives no randomness (the payment is then created without a page).
    pub fn generate_for(payment: PaymentId) -> Option<PageToken> {
        random_base64url::<24>().map(|random| PageToken(format!("{}{random}", payment.ulid())))
    }

    /// The payment the token names in its own text; `None` for a token of
    /// the earlier form, whose payment only its link item names.
    pub fn payment_id(&self) -> Option<PaymentId> {
        let ulid = self
            .0
            .get(..ulid::ULID_LEN)
            .filter(|_| self.0.len() == Self::LEN)?;
        format!("{}{ulid}", PaymentId::PREFIX).parse().ok()
    }

    /// Whether `other` is this token, compared in constant time (a page
    /// token is a bearer secret).
    pub fn matches(&self, other: &PageToken) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PageToken {
    type Err = IdError;
    fn from_str(s: &str) -> Result<PageToken, IdError> {
        const KIND: &str = "page token";
        const FORM: &str = "a payment's ULID and 32 characters of base64url";
        if s.len() != Self::LEN && s.len() != Self::RANDOM_LEN {
            return Err(IdError::Malformed {
                kind: KIND,
                form: FORM,
            });
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return Err(IdError::InvalidCharacters { kind: KIND });
        }
        let token = PageToken(s.to_string());
        if s.len() == Self::LEN && token.payment_id().is_none() {
            return Err(IdError::Malformed {
                kind: KIND,
                form: FORM,
            });
        }
        Ok(token)
    }
}

impl TryFrom<String> for PageToken {
    type Error = IdError;
    fn try_from(s: String) -> Result<PageToken, IdError> {
        s.parse()
    }
}

impl From<PageToken> for String {
    fn from(t: PageToken) -> String {
        t.0
    }
}

impl fmt::Display for PageToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PageToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PageToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn payment_ids_round_trip_and_sort_by_creation() {
        let a = PaymentId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = PaymentId::generate();
        assert!(a.to_string() < b.to_string());
        assert_eq!(a.to_string().parse::<PaymentId>(), Ok(a));
        assert!(a.to_string().starts_with("pay_"));
    }

    #[test]
    fn bad_payment_ids_are_typed_errors() {
        for bad in [
            "",
            "pay_",
            "01J0000000000000000000000",
            "pay_01j00000000000000000000000",
            "pay_01J0000000000000000000000",
            "pay_01J00000000000000000000000X",
            "PAY_01J00000000000000000000000",
            "pay_8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "pay_01J000000000000000000000#0",
        ] {
            assert!(bad.parse::<PaymentId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn string_ids_validate() {
        assert!("u_123".parse::<WalletUserId>().is_ok());
        assert_eq!(
            "".parse::<WalletUserId>(),
            Err(IdError::Empty {
                kind: "wallet user id"
            })
        );
        assert!(matches!(
            "a#b".parse::<WalletUserId>(),
            Err(IdError::InvalidCharacters { .. })
        ));
        assert!(matches!(
            "x".repeat(65).parse::<CasinoUsername>(),
            Err(IdError::TooLong { max: 64, .. })
        ));
        assert!("ORD-2025/0001#a".parse::<MerchantReference>().is_ok());
        assert!("ORD 1".parse::<MerchantReference>().is_err());
        assert!("k".repeat(255).parse::<IdempotencyKey>().is_ok());
        assert!("k".repeat(256).parse::<IdempotencyKey>().is_err());
        assert!("key\u{e9}".parse::<IdempotencyKey>().is_err());
        assert!(serde_json::from_str::<WalletUserId>(r#""bad id""#).is_err());
    }

    #[test]
    fn page_tokens_are_fresh_url_safe_name_their_payment_and_are_hidden_from_debug() {
        let id = PaymentId::generate();
        let a = PageToken::generate_for(id).expect("randomness");
        let b = PageToken::generate_for(id).expect("randomness");
        assert_ne!(a, b);
        assert!(!a.matches(&b));
        assert!(a.matches(&a.clone()));
        assert_eq!(a.as_str().len(), PageToken::LEN);
        assert_eq!(a.payment_id(), Some(id));
        assert_eq!(a.as_str().parse::<PageToken>(), Ok(a.clone()));
        assert!(!format!("{a:?}").contains(a.as_str()));
        // The earlier form: random only, its payment named by its link.
        let earlier: PageToken = "SamplePageToken00000000000000001".parse().unwrap();
        assert_eq!(earlier.payment_id(), None);
        let ulid = id.ulid().to_string();
        for bad in [
            "".to_string(),
            "short".to_string(),
            "a".repeat(33),
            format!("{}/", "a".repeat(31)),
            // The right length, but no payment's ULID in front.
            "a".repeat(PageToken::LEN),
            format!("{}{}", ulid.to_lowercase(), "a".repeat(32)),
            format!("{ulid}{}/", "a".repeat(31)),
            format!("{ulid}{}", "a".repeat(31)),
        ] {
            assert!(bad.parse::<PageToken>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn no_input_panics(s in "\\PC{0,300}") {
            let _ = s.parse::<PaymentId>();
            let _ = s.parse::<IdempotencyKey>();
            let _ = s.parse::<MerchantReference>();
            let _ = s.parse::<WalletUserId>();
            let _ = s.parse::<PageToken>();
        }
    }
}

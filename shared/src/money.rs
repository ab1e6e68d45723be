//! Exact money: integer minor units with a currency that knows its exponent.
//!
//! Nothing here touches floating point. Providers send major-unit amounts as
//! strings ("1.00", "100") or JSON numbers (`12.22`); both are read from their
//! text by [`Money::from_major_str`] or the [`MajorAmount`] serde wrapper, and
//! written back with [`Money::to_major_string`]. Each provider module converts
//! in exactly one place by calling these.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Every currency paygate moves. The exponent is the number of minor-unit
/// digits: PHP 2 (centavos), USDT 6 (micro-tether).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Currency {
    Php,
    Myr,
    Mnt,
    Kzt,
    Usd,
    Phpt,
    Usdt,
}

impl Currency {
    pub const ALL: [Currency; 7] = [
        Currency::Php,
        Currency::Myr,
        Currency::Mnt,
        Currency::Kzt,
        Currency::Usd,
        Currency::Phpt,
        Currency::Usdt,
    ];

    /// Minor-unit digits.
    pub const fn exponent(self) -> u32 {
        match self {
            Currency::Php
            | Currency::Myr
            | Currency::Mnt
            | Currency::Kzt
            | Currency::Usd
            | Currency::Phpt => 2,
            Currency::Usdt => 6,
        }
    }

    /// The upper-case code of the API ("PHP", "USDT").
    pub const fn code(self) -> &'static str {
        match self {
            Currency::Php => "PHP",
            Currency::Myr => "MYR",
            Currency::Mnt => "MNT",
            Currency::Kzt => "KZT",
            Currency::Usd => "USD",
            Currency::Phpt => "PHPT",
            Currency::Usdt => "USDT",
        }
    }

    /// Providers are not consistent about case ("php", "Php"); the merchant
    /// API is (see [`FromStr`], which only takes the upper-case code).
    pub fn from_code_ignore_case(code: &str) -> Result<Currency, MoneyError> {
        Currency::ALL
            .into_iter()
            .find(|c| c.code().eq_ignore_ascii_case(code))
            .ok_or_else(|| MoneyError::UnknownCurrency(printable(code)))
    }

    /// 10^exponent: the number of minor units in one major unit.
    const fn scale(self) -> i64 {
        10_i64.pow(self.exponent())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(code: &str) -> Result<Currency, MoneyError> {
        Currency::ALL
            .into_iter()
            .find(|c| c.code() == code)
            .ok_or_else(|| MoneyError::UnknownCurrency(printable(code)))
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(code: String) -> Result<Currency, MoneyError> {
        code.parse()
    }
}

impl From<Currency> for &'static str {
    fn from(c: Currency) -> &'static str {
        c.code()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why an amount could not be made into [`Money`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency {0:?}")]
    UnknownCurrency(String),
    #[error("amount must not be negative")]
    Negative,
    #[error("amount {amount:?} has more decimal places than {currency} allows ({exponent})")]
    OverPrecise {
        amount: String,
        currency: Currency,
        exponent: u32,
    },
    #[error("amount is too large")]
    Overflow,
    #[error("{0:?} is not a decimal amount")]
    Malformed(String),
    #[error("currencies differ: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
}

/// An amount of money: non-negative integer minor units in one currency.
///
/// Debits and credits are kinds of ledger entry, never negative amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "MoneyFields")]
pub struct Money {
    amount: i64,
    currency: Currency,
}

/// Money as it arrives through serde, checked by [`Money::new`].
#[derive(Deserialize)]
struct MoneyFields {
    amount: i64,
    currency: Currency,
}

impl TryFrom<MoneyFields> for Money {
    type Error = MoneyError;
    fn try_from(f: MoneyFields) -> Result<Money, MoneyError> {
        Money::new(f.amount, f.currency)
    }
}

impl Money {
    /// `minor` units of `currency`; negative amounts are refused.
    pub fn new(minor: i64, currency: Currency) -> Result<Money, MoneyError> {
        if minor < 0 {
            return Err(MoneyError::Negative);
        }
        Ok(Money {
            amount: minor,
            currency,
        })
    }

    pub const fn zero(currency: Currency) -> Money {
        Money {
            amount: 0,
            currency,
        }
    }

    /// Minor units.
    pub const fn minor(self) -> i64 {
        self.amount
    }

    pub const fn currency(self) -> Currency {
        self.currency
    }

    pub const fn is_zero(self) -> bool {
        self.amount == 0
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let sum = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Money::new(sum, self.currency)
    }

    /// `self - other`; a result below zero is [`MoneyError::Negative`].
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let diff = self
            .amount
            .checked_sub(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Money::new(diff, self.currency)
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }

    /// Parse a major-unit decimal as providers send it: `"1"`, `"1.5"`,
    /// `"1.50"`, `"12.220000"`, and JSON number text such as `"1.2E+3"`.
    /// Digits beyond the currency's exponent must be zeros; a sign, spaces,
    /// thousands separators or anything else is refused.
    pub fn from_major_str(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        let malformed = || MoneyError::Malformed(printable(text));
        if text.starts_with('-') {
            // "-0" is still a negative sign from a provider: refuse it plainly.
            return Err(MoneyError::Negative);
        }
        let (mantissa, exp10) = match text.find(['e', 'E']) {
            Some(at) => {
                let exp: i32 = text[at + 1..].parse().map_err(|_| malformed())?;
                (&text[..at], exp)
            }
            None => (text, 0),
        };
        let (int_part, frac_part) = match mantissa.split_once('.') {
            Some((i, f)) => (i, f),
            None => (mantissa, ""),
        };
        let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int_part.is_empty()
            || !digits_ok(int_part)
            || !digits_ok(frac_part)
            || (mantissa.contains('.') && frac_part.is_empty())
        {
            return Err(malformed());
        }
        // value = digits * 10^(exp10 - frac_len); in minor units that is
        // digits * 10^(exponent + exp10 - frac_len).
        let digits = format!("{int_part}{frac_part}");
        let shift = i64::from(currency.exponent()) + i64::from(exp10) - frac_part.len() as i64;
        let digits = digits.trim_start_matches('0');
        if digits.is_empty() {
            return Money::new(0, currency);
        }
        let (kept, dropped) = if shift >= 0 {
            (digits, "")
        } else {
            let cut = usize::try_from(-shift).map_err(|_| MoneyError::Overflow)?;
            if cut >= digits.len() {
                ("", digits)
            } else {
                digits.split_at(digits.len() - cut)
            }
        };
        if dropped.bytes().any(|b| b != b'0') {
            return Err(MoneyError::OverPrecise {
                amount: printable(text),
                currency,
                exponent: currency.exponent(),
            });
        }
        let mut minor: i64 = if kept.is_empty() {
            0
        } else if kept.len() > 19 {
            return Err(MoneyError::Overflow);
        } else {
            kept.parse().map_err(|_| MoneyError::Overflow)?
        };
        if shift > 0 {
            let factor = u32::try_from(shift)
                .ok()
                .and_then(|s| 10_i64.checked_pow(s))
                .ok_or(MoneyError::Overflow)?;
            minor = minor.checked_mul(factor).ok_or(MoneyError::Overflow)?;
        }
        Money::new(minor, currency)
    }

    /// The amount in major units with exactly the currency's exponent of
    /// decimals: `"99.90"` for 9990 MYR, `"1.500000"` for 1500000 USDT.
    pub fn to_major_string(self) -> String {
        let scale = self.currency.scale();
        let exponent = self.currency.exponent() as usize;
        format!(
            "{}.{:0exponent$}",
            self.amount / scale,
            self.amount % scale,
            exponent = exponent
        )
    }

    /// Like [`Money::to_major_string`] without trailing zeros in the fraction
    /// (`"100"`, `"12.5"`), for providers that expect the shortest form.
    pub fn to_major_string_trimmed(self) -> String {
        let full = self.to_major_string();
        let trimmed = full.trim_end_matches('0').trim_end_matches('.');
        trimmed.to_string()
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_major_string(), self.currency)
    }
}

/// A major-unit amount as a provider sent it, kept as text: deserialises from
/// a JSON number (read from its literal text, never through floating point) or from a
/// string. Convert with [`MajorAmount::to_money`] once the currency is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MajorAmount(String);

impl MajorAmount {
    pub fn new(text: impl Into<String>) -> MajorAmount {
        MajorAmount(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn to_money(&self, currency: Currency) -> Result<Money, MoneyError> {
        Money::from_major_str(self.0.trim(), currency)
    }
}

impl<'de> Deserialize<'de> for MajorAmount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MajorAmount, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        let text = raw.get();
        if text.starts_with('"') {
            let s: String = serde_json::from_str(text).map_err(serde::de::Error::custom)?;
            Ok(MajorAmount(s))
        } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            Ok(MajorAmount(text.to_string()))
        } else {
            Err(serde::de::Error::custom(
                "expected an amount as a number or a string",
            ))
        }
    }
}

/// Outside text in an error message: cut short and stripped of control
/// characters, so an error never carries a whole request body.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn php(minor: i64) -> Money {
        Money::new(minor, Currency::Php).unwrap()
    }

    #[test]
    fn exponents_follow_the_design() {
        for c in Currency::ALL {
            let want = if c == Currency::Usdt { 6 } else { 2 };
            assert_eq!(c.exponent(), want, "{c}");
        }
    }

    #[test]
    fn parses_provider_amounts_exactly() {
        let cases = [
            ("1.00", Currency::Myr, 100),
            ("100", Currency::Php, 10_000),
            ("12.22", Currency::Php, 1222),
            ("12.2", Currency::Php, 1220),
            ("0.01", Currency::Php, 1),
            ("12.220000", Currency::Php, 1222),
            ("1.5", Currency::Usdt, 1_500_000),
            ("0.000001", Currency::Usdt, 1),
            ("1.2E+3", Currency::Kzt, 120_000),
            ("125e-2", Currency::Mnt, 125),
            ("0", Currency::Usd, 0),
            ("007.10", Currency::Usd, 710),
        ];
        for (text, cur, minor) in cases {
            assert_eq!(
                Money::from_major_str(text, cur),
                Ok(Money::new(minor, cur).unwrap()),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_bad_amounts_with_typed_errors() {
        assert_eq!(
            Money::from_major_str("-1.00", Currency::Php),
            Err(MoneyError::Negative)
        );
        assert!(matches!(
            Money::from_major_str("12.225", Currency::Php),
            Err(MoneyError::OverPrecise { exponent: 2, .. })
        ));
        assert!(matches!(
            Money::from_major_str("0.0000001", Currency::Usdt),
            Err(MoneyError::OverPrecise { .. })
        ));
        assert_eq!(
            Money::from_major_str("92233720368547758.08", Currency::Php),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::from_major_str("1e400", Currency::Php),
            Err(MoneyError::Overflow)
        );
        assert!(matches!(
            Money::from_major_str("1e-400", Currency::Php),
            Err(MoneyError::OverPrecise { .. })
        ));
        for bad in [
            "", ".", "1.", ".5", "1,000.00", " 1", "1 ", "+1", "abc", "1.2.3", "1e", "0x10", "NaN",
            "١٢",
        ] {
            assert!(
                matches!(
                    Money::from_major_str(bad, Currency::Php),
                    Err(MoneyError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(Money::new(-1, Currency::Php), Err(MoneyError::Negative));
        assert!(matches!(
            "EUR".parse::<Currency>(),
            Err(MoneyError::UnknownCurrency(_))
        ));
        assert!("php".parse::<Currency>().is_err());
        assert_eq!(Currency::from_code_ignore_case("php"), Ok(Currency::Php));
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(php(5).checked_add(php(7)), Ok(php(12)));
        assert_eq!(php(5).checked_sub(php(7)), Err(MoneyError::Negative));
        assert_eq!(php(i64::MAX).checked_add(php(1)), Err(MoneyError::Overflow));
        let usdt = Money::new(1, Currency::Usdt).unwrap();
        assert_eq!(
            php(1).checked_add(usdt),
            Err(MoneyError::CurrencyMismatch(Currency::Php, Currency::Usdt))
        );
    }

    #[test]
    fn formats_major_units() {
        assert_eq!(
            Money::new(9990, Currency::Myr).unwrap().to_major_string(),
            "99.90"
        );
        assert_eq!(
            Money::new(5, Currency::Php).unwrap().to_major_string(),
            "0.05"
        );
        assert_eq!(
            Money::new(1_500_000, Currency::Usdt)
                .unwrap()
                .to_major_string(),
            "1.500000"
        );
        assert_eq!(php(10_000).to_major_string_trimmed(), "100");
        assert_eq!(php(1250).to_major_string_trimmed(), "12.5");
        assert_eq!(php(0).to_major_string_trimmed(), "0");
        assert_eq!(php(i64::MAX).to_major_string(), "92233720368547758.07");
    }

    #[test]
    fn major_amount_reads_json_numbers_from_their_text() {
        #[derive(Deserialize)]
        struct Callback {
            amount: MajorAmount,
        }
        let n: Callback = serde_json::from_str(r#"{"amount": 12.22}"#).unwrap();
        assert_eq!(n.amount.as_str(), "12.22");
        assert_eq!(n.amount.to_money(Currency::Php), Ok(php(1222)));
        // 0.1 + 0.2 style values that f64 cannot hold stay exact.
        let n: Callback = serde_json::from_str(r#"{"amount": 90071992547409.93}"#).unwrap();
        assert_eq!(
            n.amount.to_money(Currency::Php),
            Ok(php(9_007_199_254_740_993))
        );
        let s: Callback = serde_json::from_str(r#"{"amount": "100"}"#).unwrap();
        assert_eq!(s.amount.to_money(Currency::Php), Ok(php(10_000)));
        assert!(serde_json::from_str::<Callback>(r#"{"amount": true}"#).is_err());
        assert!(serde_json::from_str::<Callback>(r#"{"amount": null}"#).is_err());
    }

    #[test]
    fn serde_uses_codes_and_minor_units() {
        let json = serde_json::to_string(&php(9990)).unwrap();
        assert_eq!(json, r#"{"amount":9990,"currency":"PHP"}"#);
        assert!(serde_json::from_str::<Money>(r#"{"amount":1,"currency":"EUR"}"#).is_err());
        // A negative amount cannot arrive through serde either.
        let negative = serde_json::from_str::<Money>(r#"{"amount":-1,"currency":"PHP"}"#);
        assert!(negative.unwrap_err().to_string().contains("negative"));
        assert!(serde_json::from_str::<Money>(r#"{"amount":1.5,"currency":"PHP"}"#).is_err());
        assert_eq!(
            serde_json::from_str::<Currency>(r#""USDT""#).unwrap(),
            Currency::Usdt
        );
    }

    fn any_currency() -> impl Strategy<Value = Currency> {
        proptest::sample::select(Currency::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(minor in 0..=i64::MAX, currency in any_currency()) {
            let m = Money::new(minor, currency).unwrap();
            prop_assert_eq!(Money::from_major_str(&m.to_major_string(), currency), Ok(m));
            prop_assert_eq!(Money::from_major_str(&m.to_major_string_trimmed(), currency), Ok(m));
        }

        #[test]
        fn parse_then_format_is_canonical(int in 0u64..1_000_000_000, frac in 0u32..1_000_000, zeros in 0usize..4, currency in any_currency()) {
            let exp = currency.exponent() as usize;
            let frac = frac % 10u32.pow(exp as u32);
            let text = format!("{int}.{frac:0exp$}{}", "0".repeat(zeros));
            let m = Money::from_major_str(&text, currency).unwrap();
            prop_assert_eq!(m.to_major_string(), format!("{int}.{frac:0exp$}"));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,30}", currency in any_currency()) {
            let _ = Money::from_major_str(&text, currency);
        }
    }
}

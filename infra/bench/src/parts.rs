//! Which write buys which guarantee: every write unit the billing endpoint
//! adds up (proxy.rs, transactions.rs) is attributed to the kind of item it
//! wrote, told by the item's keys (docs/storage.md), and to the index entry
//! it wrote, if any: `payment`, `payment in GSI3`, `ledger entry in LSI1`.
//! A flow's parts add up to its write units.

use std::collections::BTreeMap;

use serde_json::Value;

/// Write units by part (`<item kind>` or `<item kind> in <index>`).
pub type Parts = BTreeMap<String, f64>;

/// The kind of the item under `pk`/`sk` (docs/storage.md's table).
pub fn kind(pk: &str, sk: &str) -> &'static str {
    let prefix = pk.split('#').next().unwrap_or_default();
    match (prefix, sk) {
        ("PAY", "PAY") => "payment",
        ("PAY", "TOPUP") => "top-up",
        ("PAY", s) if s.starts_with("REFUND#") => "refund",
        ("PAY", s) if s.starts_with("HIST#") => "history entry",
        ("PAY", s) if s.starts_with("DIFF#") => "kept difference",
        ("MREF", _) => "reference claim",
        ("PAGE", _) => "page link",
        ("IDEM", _) => "idempotency record",
        ("EVT", _) => "webhook delivery record",
        ("WAL", s) if s.starts_with("BAL#") => "wallet balance",
        ("WAL", s) if s.starts_with("ENT#") => "ledger entry",
        ("EVENT", "EVENT") => "event",
        ("EVENT", s) if s.starts_with("DLV#") => "event delivery",
        ("MERCHANT", s) if s.starts_with("ENDPOINT#") => "webhook endpoint",
        ("MERCHANT", "ENDPOINTS") => "endpoint count",
        ("SESSION", _) => "provider login",
        ("HEALTH", _) => "provider health",
        ("RECON", _) => "reconcile run",
        ("JOB", _) => "job lease",
        ("SETTING", _) => "setting",
        ("TWIN", _) => "twin item",
        _ => "other",
    }
}

/// A write of one index's entries for an item of `kind`, or of the item
/// itself (`index` none).
pub fn label(kind: &str, index: Option<&str>) -> String {
    match index {
        Some(index) => format!("{kind} in {index}"),
        None => kind.to_string(),
    }
}

fn text<'a>(item: &'a Value, name: &str) -> &'a str {
    item[name]["S"].as_str().unwrap_or_default()
}

/// The kind of the item one write names: its `Key`, or the `Item` it puts.
/// An update of a payment that only claims a question to the provider
/// (`check_ms_<slot>`, decision 28) is a `confirmation claim`.
pub fn written(body: &Value) -> &'static str {
    let keys = if body["Key"].is_object() {
        &body["Key"]
    } else {
        &body["Item"]
    };
    let found = kind(text(keys, "pk"), text(keys, "sk"));
    let expression = body["UpdateExpression"].as_str();
    let names_a_claim = body["ExpressionAttributeNames"]
        .as_object()
        .is_some_and(|names| {
            names
                .values()
                .any(|n| n.as_str().is_some_and(|n| n.starts_with("check_ms_")))
        });
    let claims = expression
        .is_some_and(|e| (names_a_claim || e.contains("check_ms_")) && !e.contains("REMOVE"));
    if found == "payment" && claims {
        return "confirmation claim";
    }
    found
}

/// What a part buys, in one phrase (docs/performance.md's bill by item).
pub fn guarantee(part: &str) -> &'static str {
    match part {
        "payment" => "the payment, changed only from the state and version read: a late or repeated change writes nothing",
        "payment in GSI1" => "a callback that carries only the provider's reference finds its payment",
        "payment in GSI2" => "the sweep finds every pending payment by its next check, without a scan; settling takes it out",
        "payment in GSI3" => "the daily reconcile finds every payment changed that day, without a scan",
        "payment in GSI5" => "a merchant lists its payments by creation time (decision 57)",
        "confirmation claim" => "a flood of unsigned callbacks asks the provider once per payment and window (decision 28)",
        "idempotency record" => "a retried create answers the same and never makes a second payment",
        "reference claim" => "one payment per merchant reference",
        "page link" => "the payer's page finds its payment by an unguessable token",
        "webhook delivery record" => "a provider's repeated delivery is recognised as one",
        "ledger entry" => "the credit or debit exists once per payment and purpose",
        "ledger entry in LSI1" => "a wallet's entries by time, strongly consistent",
        "wallet balance" => "the balance moves only with its entry, in the same transaction",
        "event" => "the merchant is told of exactly the changes that commit (the change's own transaction)",
        "event in GSI2" => "an event the stream lost is fanned out by the sweep",
        "event in GSI4" => "the merchant's event log by time, filtered by type and payment",
        "event delivery" => "each endpoint gets each event, retried with one id, its attempts logged",
        "event delivery in GSI2" => "a due retry is found by the sweep",
        "top-up" => "the casino is topped up once per payment, queued with the credit",
        "top-up in GSI2" => "an unfinished top-up is retried by the sweep",
        "provider health" => "the status page's view of the provider",
        "provider login" => "one provider login shared by every process (decision 41)",
        _ => "",
    }
}

/// Adds `more` to `parts`.
pub fn add(parts: &mut Parts, more: &Parts) {
    for (part, units) in more {
        *parts.entry(part.clone()).or_default() += units;
    }
}

/// What of `parts` only a deposit that goes on to the casino writes: the
/// top-up queued with the credit, and its index entry.
pub fn casino_only(parts: &Parts) -> f64 {
    parts
        .iter()
        .filter(|(part, _)| part.as_str() == "top-up" || part.starts_with("top-up in "))
        .map(|(_, units)| units)
        .sum()
}

/// The sum of `parts`.
pub fn total(parts: &Parts) -> f64 {
    parts.values().sum()
}

/// The flows of a deposit whose writes docs/performance.md breaks down.
pub const BROKEN_DOWN: [&str; 4] = [
    "create",
    "completing callback",
    "casino top-up",
    "event delivery",
];

/// The table of what each flow's writes buy: `flows` are (name, parts,
/// write units billed); a flow whose parts do not add up to its units is
/// an error (every unit must be attributed).
pub fn table(flows: &[(&str, &Parts, f64)]) -> Result<String, String> {
    let mut out = String::from(
        "\nWhat each write of a deposit buys (warm flows; write units by the item or index entry written, told by its keys, docs/storage.md):\n\n\
         | flow | item written | WRU | what it buys |\n|---|---|---|---|\n",
    );
    for (flow, parts, units) in flows {
        if (total(parts) - units).abs() > 1e-9 {
            return Err(format!(
                "{flow}: its parts add up to {} write units, not {units}",
                total(parts)
            ));
        }
        let mut rows: Vec<(&String, &f64)> = parts.iter().collect();
        rows.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
        for (part, u) in rows {
            out.push_str(&format!(
                "| {flow} | {part} | {u} | {} |\n",
                guarantee(part)
            ));
        }
        out.push_str(&format!("| **{flow}** | | **{units}** | |\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_are_told_apart_by_their_keys() {
        let cases = [
            ("PAY#01J", "PAY", "payment"),
            ("PAY#01J", "TOPUP", "top-up"),
            ("PAY#01J", "REFUND#01K", "refund"),
            ("PAY#01J", "HIST#00000100", "history entry"),
            ("PAY#01J", "DIFF#amount-ab", "kept difference"),
            ("MREF#m1#order-1", "MREF", "reference claim"),
            ("PAGE#tok", "PAGE", "page link"),
            ("IDEM#m1#create#k", "IDEM", "idempotency record"),
            ("EVT#directpay#abc", "EVT", "webhook delivery record"),
            ("WAL#m1#u1", "BAL#MYR", "wallet balance"),
            ("WAL#m1#u1", "ENT#01J#deposit", "ledger entry"),
            ("EVENT#m1#evt_1", "EVENT", "event"),
            ("EVENT#m1#evt_1", "DLV#ep_1", "event delivery"),
            ("MERCHANT#m1", "ENDPOINT#ep_1", "webhook endpoint"),
            ("MERCHANT#m1", "ENDPOINTS", "endpoint count"),
            ("SESSION#directpay", "SESSION", "provider login"),
            ("HEALTH#qpay", "HEALTH", "provider health"),
            ("TWIN#1", "PAY", "twin item"),
            ("NOPE", "x", "other"),
        ];
        for (pk, sk, expected) in cases {
            assert_eq!(kind(pk, sk), expected, "{pk} {sk}");
        }
    }

    #[test]
    fn a_payment_update_that_only_claims_a_question_is_the_confirmation_claim() {
        let key = json!({"pk": {"S": "PAY#01J"}, "sk": {"S": "PAY"}});
        let claim = json!({"Key": key, "UpdateExpression": "SET #slot = :now",
            "ExpressionAttributeNames": {"#slot": "check_ms_completed"}});
        assert_eq!(written(&claim), "confirmation claim");
        let poll = json!({"Key": key, "UpdateExpression": "SET #slot = :now, provider_checked_at = :at",
            "ExpressionAttributeNames": {"#slot": "check_ms_poll"}});
        assert_eq!(written(&poll), "confirmation claim");
        // A transition that drops the claims is a write of the payment.
        let settle = json!({"Key": key,
            "UpdateExpression": "SET #s = :to REMOVE check_ms_completed, check_ms_poll"});
        assert_eq!(written(&settle), "payment");
        let put = json!({"Item": {"pk": {"S": "WAL#m#u"}, "sk": {"S": "ENT#p#deposit"}, "amount": {"N": "1"}}});
        assert_eq!(written(&put), "ledger entry");
    }

    #[test]
    fn every_part_of_a_deposit_says_what_it_buys() {
        for part in [
            "payment",
            "payment in GSI1",
            "payment in GSI2",
            "payment in GSI3",
            "payment in GSI5",
            "confirmation claim",
            "idempotency record",
            "reference claim",
            "page link",
            "ledger entry",
            "ledger entry in LSI1",
            "wallet balance",
            "event",
            "event in GSI2",
            "event in GSI4",
            "event delivery",
            "event delivery in GSI2",
            "top-up",
            "top-up in GSI2",
        ] {
            assert!(!guarantee(part).is_empty(), "{part}");
        }
        assert_eq!(label("event", Some("GSI4")), "event in GSI4");
    }

    #[test]
    fn the_table_refuses_parts_that_do_not_add_up() {
        let parts: Parts = [
            ("payment".to_string(), 2.0),
            ("payment in GSI3".to_string(), 4.0),
        ]
        .into();
        let table = table(&[("completing callback", &parts, 6.0)]).unwrap_or_default();
        assert!(table.contains("| completing callback | payment in GSI3 | 4 | the daily reconcile"));
        assert!(table.contains("| **completing callback** | | **6** | |"));
        assert!(super::table(&[("completing callback", &parts, 7.0)]).is_err());
    }
}

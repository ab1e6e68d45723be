//! The AWS bill for 1,000,000 completed deposits, from the measured
//! durations and AWS calls, with every price and assumption in one table.
//! A deposit: one create, the payer's page and its polls (paygate's only;
//! the seed-style twin has no page), one completing callback, two
//! duplicate callbacks, the merchant's event (paygate's only), and a
//! casino top-up for a stated share of deposits.

use std::collections::BTreeMap;

use serde::Serialize;

/// List prices, us-east-1, as AWS published them in 2025 (change here and
/// rerun): Lambda arm64 per GB-second and per request, HTTP API per
/// request, DynamoDB on-demand per write and read request unit, SQS per
/// request, Secrets Manager per API call.
pub const LAMBDA_ARM_GB_SECOND: f64 = 0.000_013_333_4;
pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
pub const HTTP_API_REQUEST: f64 = 1.00 / 1e6;
pub const DYNAMODB_WRU: f64 = 0.625 / 1e6;
pub const DYNAMODB_RRU: f64 = 0.125 / 1e6;
pub const SQS_REQUEST: f64 = 0.40 / 1e6;
pub const SECRETS_CALL: f64 = 0.05 / 10_000.0;

/// Share of deposits that go on to the casino.
pub const CASINO_SHARE: f64 = 0.5;
/// A provider round trip in AWS (the sandbox answers in well under a
/// millisecond on loopback): added to the billed duration of each call.
pub const PROVIDER_MS: f64 = 150.0;
/// Invocations per cold start (each cold start fetches its secrets).
pub const INVOCATIONS_PER_COLD_START: f64 = 1_000.0;
/// The SQS event source's own calls per message (receive and delete).
pub const SQS_POLLER_CALLS_PER_MESSAGE: f64 = 2.0;

/// How long a payer's page is open, polling, before the payment completes.
pub const PAYER_SECONDS: u32 = 60;
/// A status poll asks the provider at most once per this many seconds per
/// payment (`POLL_INTERVAL` in shared/src/api/payments.rs).
pub const POLL_ASKS_EVERY_SECONDS: u32 = 10;

/// The polls of a payer's page open `seconds` before its payment completes,
/// on the page's schedule (shared/templates/pay.html: the first after 3 s,
/// each wait half as long again, at most 30 s), the last one seeing the
/// final state; and how many of them ask the provider (the pending ones at
/// most once per `POLL_ASKS_EVERY_SECONDS`).
pub fn page_polls(seconds: u32) -> (u32, u32) {
    let (mut polls, mut asks) = (0, 0);
    let (mut at, mut delay, mut asked) = (0u64, 3000u64, None::<u64>);
    loop {
        at += delay;
        polls += 1;
        if at > u64::from(seconds) * 1000 {
            return (polls, asks);
        }
        if asked.is_none_or(|a| at - a > u64::from(POLL_ASKS_EVERY_SECONDS) * 1000) {
            asks += 1;
            asked = Some(at);
        }
        delay = (delay * 3).div_ceil(2).min(30_000);
    }
}

/// One flow's counted calls, and the request units DynamoDB billed them
/// (proxy.rs).
pub struct Flow {
    pub name: String,
    pub calls: BTreeMap<String, u32>,
    pub read_units: f64,
    pub write_units: f64,
    /// Of `write_units`, those only a deposit that goes on to the casino
    /// writes (the queued top-up and its index entry: the bench's
    /// payments are all for the casino, a deposit's share is
    /// [`CASINO_SHARE`]).
    pub casino_write_units: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Line {
    pub item: String,
    pub quantity: String,
    pub dollars: f64,
}

/// One part of a deposit (a flow, times how often a deposit has it), and
/// what it costs per deposit.
#[derive(Debug, Default, Serialize)]
pub struct Part {
    pub flow: String,
    pub per_deposit: f64,
    pub dynamodb_calls: f64,
    pub read_units: f64,
    pub write_units: f64,
    /// Everything this part costs, per million deposits.
    pub dollars: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Estimate {
    pub lines: Vec<Line>,
    pub parts: Vec<Part>,
    pub total: f64,
}

fn count(calls: &BTreeMap<String, u32>, prefix: &str) -> f64 {
    calls
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, n)| f64::from(*n))
        .sum()
}

/// Which measured functions make a deposit: the create's and the
/// callback's, whose flows the bench names `<flows>create`,
/// `<flows>completing callback` and `<flows>duplicate callback` (`flows`
/// is "" for paygate, "twin " for the Node twin); the casino top-up is
/// paygate's worker for both. `page`: the payer page's function, whose
/// flows are `payer page`, `payer poll (asks the provider)`, `payer poll
/// (asks the provider again)` and `payer poll`.
pub struct Recipe<'a> {
    pub create: &'a str,
    pub callback: &'a str,
    pub page: Option<&'a str>,
    /// The function that tells the merchant (its flow `event delivery`).
    pub events: Option<&'a str>,
    pub flows: &'a str,
}

/// `functions`: (name, memory MB, warm p50 ms).
pub fn estimate(functions: &[(String, u32, f64)], flows: &[Flow], recipe: &Recipe<'_>) -> Estimate {
    let million = 1e6;
    let p50 = |f: &str| {
        functions
            .iter()
            .find(|(n, _, _)| n == f)
            .map_or((128, 0.0), |(_, m, ms)| (*m, *ms))
    };
    let none = Flow {
        name: String::new(),
        calls: BTreeMap::new(),
        read_units: 0.0,
        write_units: 0.0,
        casino_write_units: 0.0,
    };
    let flow = |f: &str| flows.iter().find(|x| x.name == f).unwrap_or(&none);
    let named = |flow: &str| format!("{}{flow}", recipe.flows);
    // (function and flow, invocations per deposit, provider calls per invocation)
    let mut parts = vec![
        ((recipe.create, named("create")), 1.0, 1.0),
        ((recipe.callback, named("completing callback")), 1.0, 1.0),
        ((recipe.callback, named("duplicate callback")), 2.0, 0.0),
        (
            ("worker-casino-topup", "casino top-up".to_string()),
            CASINO_SHARE,
            2.0,
        ),
    ];
    if let Some(events) = recipe.events {
        // One delivery per completed deposit; the merchant's answer is
        // billed like a provider's round trip.
        parts.push(((events, "event delivery".to_string()), 1.0, 1.0));
    }
    let (polls, asks) = page_polls(PAYER_SECONDS);
    if let Some(page) = recipe.page {
        parts.push(((page, "payer page".to_string()), 1.0, 0.0));
        // The first question writes the provider's answer; the later ones
        // hear the same and write only their claim.
        parts.push((
            (page, "payer poll (asks the provider)".to_string()),
            f64::from(asks.min(1)),
            1.0,
        ));
        parts.push((
            (page, "payer poll (asks the provider again)".to_string()),
            f64::from(asks.saturating_sub(1)),
            1.0,
        ));
        parts.push((
            (page, "payer poll".to_string()),
            f64::from(polls - asks),
            0.0,
        ));
    }
    let mut gb_seconds = 0.0;
    let mut invocations = 0.0;
    let mut rru = 0.0;
    let mut wru = 0.0;
    let mut sqs = 0.0;
    let mut shares = Vec::new();
    for ((function, flow_name), per_deposit, provider_calls) in &parts {
        let (per_deposit, provider_calls) = (*per_deposit, *provider_calls);
        let (memory, ms) = p50(function);
        let billed_ms = (ms + provider_calls * PROVIDER_MS).ceil();
        let compute = per_deposit * million * f64::from(memory) / 1024.0 * billed_ms / 1000.0;
        gb_seconds += compute;
        invocations += per_deposit * million;
        let measured = flow(flow_name);
        // What only a casino deposit writes, for the share that makes it
        // (the top-up's own flow is already counted at that share).
        let casino_only = if function == &"worker-casino-topup" {
            0.0
        } else {
            measured.casino_write_units
        };
        let w = measured.write_units - (1.0 - CASINO_SHARE) * casino_only;
        let r = measured.read_units;
        rru += per_deposit * million * r;
        wru += per_deposit * million * w;
        let sends = count(&measured.calls, "sqs ");
        sqs += per_deposit * million * sends;
        shares.push(Part {
            flow: flow_name.clone(),
            per_deposit,
            dynamodb_calls: per_deposit * count(&measured.calls, "dynamodb "),
            read_units: per_deposit * r,
            write_units: per_deposit * w,
            dollars: per_deposit
                * million
                * (f64::from(memory) / 1024.0 * billed_ms / 1000.0 * LAMBDA_ARM_GB_SECOND
                    + LAMBDA_REQUEST
                    + r * DYNAMODB_RRU
                    + w * DYNAMODB_WRU
                    + sends * SQS_REQUEST),
        });
    }
    sqs += CASINO_SHARE * million * SQS_POLLER_CALLS_PER_MESSAGE;
    let page_requests = if recipe.page.is_some() {
        1.0 + f64::from(polls)
    } else {
        0.0
    };
    let http = (4.0 + page_requests) * million;
    // Each cold start reads its function's secrets once (two on average).
    let secrets = invocations / INVOCATIONS_PER_COLD_START * 2.0;
    let m = |units: f64, unit: &str| format!("{:.2} M{unit}", units / million);
    let writes = "DynamoDB writes (each item by its size, as DynamoDB bills it)";
    let lines = vec![
        line(
            "Lambda compute (arm64)",
            format!("{gb_seconds:.0} GB-s"),
            gb_seconds,
            LAMBDA_ARM_GB_SECOND,
        ),
        line(
            "Lambda requests",
            m(invocations, ""),
            invocations,
            LAMBDA_REQUEST,
        ),
        line(
            "HTTP API requests (create, three callbacks, the payer's page and polls)",
            m(http, ""),
            http,
            HTTP_API_REQUEST,
        ),
        line(writes, m(wru, " WRU"), wru, DYNAMODB_WRU),
        line("DynamoDB reads", m(rru, " RRU"), rru, DYNAMODB_RRU),
        line(
            "SQS (sends, and the event source's receive and delete)",
            m(sqs, ""),
            sqs,
            SQS_REQUEST,
        ),
        line(
            "Secrets Manager (after caching)",
            format!("{secrets:.0} calls"),
            secrets,
            SECRETS_CALL,
        ),
    ];
    let total = lines.iter().map(|l| l.dollars).sum::<f64>();
    Estimate {
        lines,
        parts: shares,
        total: (total * 100.0).round() / 100.0,
    }
}

/// One line of the bill: `units` at `price` each (to the cent), shown as
/// `quantity`.
fn line(item: &str, quantity: String, units: f64, price: f64) -> Line {
    Line {
        item: item.to_string(),
        quantity,
        dollars: (units * price * 100.0).round() / 100.0,
    }
}

/// A deposit, flow by flow: paygate's DynamoDB calls, units and dollars
/// beside the twin's, and the ratio of the whole.
fn parts_table(rust: &Estimate, node: &Estimate) -> String {
    let mut out = String::from(
        "A deposit flow by flow (per deposit: calls to DynamoDB, its read and write request units; USD per million deposits \
         for Lambda, DynamoDB and SQS sends, without the HTTP API and Secrets Manager):\n\n\
         | flow | times | paygate calls | paygate RRU | paygate WRU | paygate USD | twin calls | twin RRU | twin WRU | twin USD |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let cells = |p: Option<&Part>| match p {
        Some(p) => format!(
            "{:.1} | {:.1} | {:.1} | {:.2}",
            p.dynamodb_calls, p.read_units, p.write_units, p.dollars
        ),
        None => "- | - | - | -".to_string(),
    };
    for part in &rust.parts {
        let twin = node
            .parts
            .iter()
            .find(|n| n.flow.strip_prefix("twin ").unwrap_or(&n.flow) == part.flow);
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            part.flow,
            part.per_deposit,
            cells(Some(part)),
            cells(twin)
        ));
    }
    let sum = |e: &Estimate| Part {
        flow: String::new(),
        per_deposit: 1.0,
        dynamodb_calls: e.parts.iter().map(|p| p.dynamodb_calls).sum(),
        read_units: e.parts.iter().map(|p| p.read_units).sum(),
        write_units: e.parts.iter().map(|p| p.write_units).sum(),
        dollars: e.parts.iter().map(|p| p.dollars).sum(),
    };
    let (r, n) = (sum(rust), sum(node));
    out.push_str(&format!(
        "| **a deposit** | | {} | {} |\n\n",
        cells(Some(&r)),
        cells(Some(&n))
    ));
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    out.push_str(&format!(
        "A whole deposit, paygate against the twin: {:.2} times the write units, {:.2} times the DynamoDB calls, \
         {:.2} times the dollars of the bill below ({:.2} against {:.2} USD per million).\n\n",
        ratio(r.write_units, n.write_units),
        ratio(r.dynamodb_calls, n.dynamodb_calls),
        ratio(rust.total, node.total),
        rust.total,
        node.total
    ));
    out
}

/// paygate's estimate beside the Node twin's, line by line.
pub fn table(rust: &Estimate, node: &Estimate, node_memory: u32) -> String {
    let (polls, asks) = page_polls(PAYER_SECONDS);
    let mut out = format!(
        "What 1,000,000 completed deposits cost on AWS (a create, a completing callback, two duplicates; a casino top-up for half of them; \
         for paygate, the payer's page and its {polls} polls over {PAYER_SECONDS} s, {asks} of which ask the provider, and the merchant's event delivered), \
         paygate beside the seed-style Node 20 twin (`infra/bench/node-twin`, at {node_memory} MB; it has no worker, so its top-ups are paygate's, \
         and no payer page):\n\n\
         | item | paygate quantity | paygate USD | Node twin quantity | Node twin USD |\n|---|---|---|---|---|\n",
    );
    for (r, n) in rust.lines.iter().zip(&node.lines) {
        out.push_str(&format!(
            "| {} | {} | {:.2} | {} | {:.2} |\n",
            r.item, r.quantity, r.dollars, n.quantity, n.dollars
        ));
    }
    out.push_str(&format!(
        "| **total** | | **{:.2}** | | **{:.2}** |\n\n",
        rust.total, node.total
    ));
    out.push_str(&parts_table(rust, node));
    out.push_str(&format!(
        "Assumptions: us-east-1 list prices (Lambda arm64 ${LAMBDA_ARM_GB_SECOND} per GB-s and $0.20 per million requests, \
         HTTP API $1.00 per million, DynamoDB on-demand $0.625 per million WRU and $0.125 per million RRU, SQS $0.40 per million, \
         Secrets Manager $0.05 per 10,000 calls); billed durations are the measured warm p50s plus {PROVIDER_MS} ms per provider call \
         (the sandbox answers on loopback; a real provider does not); DynamoDB's request units are those DynamoDB Local reported for each \
         call (`ReturnConsumedCapacity: INDEXES`: each item by its own size, 1 KB per write unit and 4 KB per read unit, an update by \
         the larger of the item before and after, a transaction's items twice, an index's writes when its keys change), a write refused \
         by its condition one unit; one cold start per \
         {INVOCATIONS_PER_COLD_START} invocations; the SQS event source makes {SQS_POLLER_CALLS_PER_MESSAGE} calls per message. \
         Storage, logs and data transfer are not included.\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(name: &str, calls: &[(&str, u32)], read_units: f64, write_units: f64) -> Flow {
        Flow {
            name: name.into(),
            calls: calls.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            read_units,
            write_units,
            casino_write_units: 0.0,
        }
    }

    /// A deposit of a create, its callbacks and the top-up, nothing else.
    const BARE: Recipe<'static> = Recipe {
        create: "c",
        callback: "w",
        page: None,
        events: None,
        flows: "",
    };

    fn writes_of(e: &Estimate) -> Option<&str> {
        e.lines
            .iter()
            .find(|l| l.item.starts_with("DynamoDB writes"))
            .map(|l| l.quantity.as_str())
    }

    #[test]
    fn a_deposit_is_billed_the_units_its_flows_consumed_times_their_share() {
        let flows = vec![
            flow("create", &[("dynamodb TransactWriteItems", 1)], 0.0, 6.0),
            flow("completing callback", &[("dynamodb GetItem", 1)], 1.0, 8.0),
            flow("duplicate callback", &[("dynamodb GetItem", 1)], 0.5, 0.0),
            flow("casino top-up", &[], 0.0, 4.0),
        ];
        let e = estimate(&[], &flows, &BARE);
        // 6 + 8 + half of 4 write units, 1 + 2 x 0.5 read units, per deposit.
        assert_eq!(writes_of(&e), Some("16.00 M WRU"));
        let reads = e.lines.iter().find(|l| l.item == "DynamoDB reads");
        assert_eq!(reads.map(|l| l.quantity.as_str()), Some("2.00 M RRU"));
        let duplicate = e.parts.iter().find(|p| p.flow == "duplicate callback");
        assert_eq!(
            duplicate.map(|p| (p.dynamodb_calls, p.read_units)),
            Some((2.0, 1.0))
        );
        let table = parts_table(&e, &e);
        assert!(table.contains("1.00 times the write units"), "{table}");
    }

    #[test]
    fn what_only_a_casino_deposit_writes_is_billed_at_the_casinos_share() {
        let mut callback = flow("completing callback", &[("dynamodb GetItem", 1)], 1.0, 8.0);
        callback.casino_write_units = 4.0;
        // The top-up's own writes are all the casino's, at its share once.
        let mut topup = flow("casino top-up", &[], 0.0, 4.0);
        topup.casino_write_units = 4.0;
        let flows = vec![
            flow("create", &[("dynamodb TransactWriteItems", 1)], 0.0, 6.0),
            callback,
            topup,
        ];
        let e = estimate(&[], &flows, &BARE);
        // 6 + (8 - half of 4) + half of 4.
        assert_eq!(writes_of(&e), Some("14.00 M WRU"));
        let callback = e.parts.iter().find(|p| p.flow == "completing callback");
        assert_eq!(callback.map(|p| p.write_units), Some(6.0));
    }

    #[test]
    fn a_page_polls_on_its_backoff_and_asks_at_most_every_ten_seconds() {
        // Polls at 3, 7.5, 14.25, 24.375 and 39.5625 s; 62.34 s sees the end.
        assert_eq!(page_polls(60), (6, 4));
        // Only the first poll, which sees the end.
        assert_eq!(page_polls(2), (1, 0));
        // Every 30 s once backed off: ten minutes is 24 polls, not 200.
        assert_eq!(page_polls(600).0, 24);
    }
}

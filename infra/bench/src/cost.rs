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

/// One flow's counted calls.
pub struct Flow {
    pub name: String,
    pub calls: BTreeMap<String, u32>,
    pub items_written: Vec<usize>,
    pub transaction_items: u32,
}

#[derive(Debug, Default, Serialize)]
pub struct Line {
    pub item: String,
    pub quantity: String,
    pub dollars: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Estimate {
    pub lines: Vec<Line>,
    pub total: f64,
}

/// Request units of one flow's DynamoDB calls: reads are strongly
/// consistent and under 4 KB (1 RRU), writes are billed on the largest item
/// the run wrote, each item of a transaction twice.
fn units(flow: &Flow, item_kb: f64) -> (f64, f64) {
    let mut rru = 0.0;
    let mut wru = 2.0 * f64::from(flow.transaction_items) * item_kb;
    for (op, n) in &flow.calls {
        let n = f64::from(*n);
        match op.as_str() {
            "dynamodb GetItem" | "dynamodb Query" | "dynamodb BatchGetItem" => rru += n,
            "dynamodb PutItem" | "dynamodb UpdateItem" | "dynamodb DeleteItem" => {
                wru += n * item_kb
            }
            _ => {}
        }
    }
    (rru, wru)
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
/// flows are `payer page`, `payer poll (asks the provider)` and `payer poll`.
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
        items_written: vec![],
        transaction_items: 0,
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
        parts.push((
            (page, "payer poll (asks the provider)".to_string()),
            f64::from(asks),
            1.0,
        ));
        parts.push((
            (page, "payer poll".to_string()),
            f64::from(polls - asks),
            0.0,
        ));
    }
    // The largest item this recipe's own flows wrote.
    let largest = parts
        .iter()
        .flat_map(|((_, f), _, _)| flow(f).items_written.iter().copied())
        .max()
        .unwrap_or(1024);
    let item_kb = (largest as f64 / 1024.0).ceil().max(1.0);
    let mut gb_seconds = 0.0;
    let mut invocations = 0.0;
    let mut rru = 0.0;
    let mut wru = 0.0;
    let mut sqs = 0.0;
    for ((function, flow_name), per_deposit, provider_calls) in &parts {
        let (per_deposit, provider_calls) = (*per_deposit, *provider_calls);
        let (memory, ms) = p50(function);
        let billed_ms = (ms + provider_calls * PROVIDER_MS).ceil();
        gb_seconds += per_deposit * million * f64::from(memory) / 1024.0 * billed_ms / 1000.0;
        invocations += per_deposit * million;
        let measured = flow(flow_name);
        let (r, w) = units(measured, item_kb);
        rru += per_deposit * million * r;
        wru += per_deposit * million * w;
        sqs += per_deposit * million * count(&measured.calls, "sqs ");
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
    let writes = format!(
        "DynamoDB writes (every item billed as {item_kb:.0} KB, the largest written: an upper bound)"
    );
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
        line(&writes, m(wru, " WRU"), wru, DYNAMODB_WRU),
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
    out.push_str(&format!(
        "Assumptions: us-east-1 list prices (Lambda arm64 ${LAMBDA_ARM_GB_SECOND} per GB-s and $0.20 per million requests, \
         HTTP API $1.00 per million, DynamoDB on-demand $0.625 per million WRU and $0.125 per million RRU, SQS $0.40 per million, \
         Secrets Manager $0.05 per 10,000 calls); billed durations are the measured warm p50s plus {PROVIDER_MS} ms per provider call \
         (the sandbox answers on loopback; a real provider does not); reads are strongly consistent items under 4 KB; writes are \
         billed on the largest item written, each item of a transaction twice; one cold start per \
         {INVOCATIONS_PER_COLD_START} invocations; the SQS event source makes {SQS_POLLER_CALLS_PER_MESSAGE} calls per message. \
         Storage, logs and data transfer are not included.\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_item_costs_twice_a_write_and_reads_one_unit() {
        let flow = Flow {
            name: "x".into(),
            calls: [
                ("dynamodb GetItem".to_string(), 2),
                ("dynamodb UpdateItem".to_string(), 1),
            ]
            .into(),
            items_written: vec![],
            transaction_items: 3,
        };
        // 3 items x 2 x 2 KB + 1 update x 2 KB; 2 reads.
        assert_eq!(units(&flow, 2.0), (2.0, 14.0));
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

//! The IAM check in front of DynamoDB Local and moto (devstack::iam),
//! counting on the wire every AWS call it lets through, by service and
//! operation (`dynamodb GetItem`), with the sizes of the items written.
//! Every function signs as itself (runtime.rs), so a call outside its
//! policy in template.yaml is refused here as AWS would refuse it.
//!
//! In front of that check, a second endpoint bills each DynamoDB call as
//! DynamoDB does: it asks for `ReturnConsumedCapacity: INDEXES` on every
//! call that takes it and adds up the capacity units DynamoDB Local
//! reports (the table's and each index's). For single-item calls DynamoDB
//! Local sizes items by AWS's rules (a test in this crate checks it against
//! the documented examples: 1 KB write units, 4 KB read units, an update
//! billed by the larger of the item before and after, an index written only
//! when its keys or projected attributes are); for a transaction it does
//! not (items of equal size count once), so transactions are billed here
//! from their items' images (transactions.rs, each item twice); see
//! <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html>
//! and
//! <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html>.
//! A write refused by its condition reports nothing, though AWS bills it
//! (the existing item's size, at least one unit): each is billed one unit
//! (two per item of a cancelled transaction), a lower bound.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use devstack::iam::{Call, Guard, Policies, Refusal};
use serde_json::Value;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Tally {
    /// Calls by `service operation`.
    pub calls: BTreeMap<String, u32>,
    /// The size of each item written (PutItem and transaction puts), in
    /// bytes as DynamoDB counts them.
    pub items_written: Vec<usize>,
    /// Items in transactions (puts, updates, condition checks).
    pub transaction_items: u32,
    /// DynamoDB's read request units, as it reported them.
    pub read_units: f64,
    /// DynamoDB's write request units, as it reported them (the indexes'
    /// included), and the writes its condition refused (billed as above).
    pub write_units: f64,
    /// Of `write_units`, the indexes'.
    pub index_write_units: f64,
    /// `write_units` by what they wrote (parts.rs): they add up to it.
    pub write_parts: crate::parts::Parts,
    /// The time this endpoint spent reading a transaction's items before
    /// and after it (its own billing, which no function meets in AWS): when
    /// each pause ended, and how long it was. An invocation's time leaves
    /// out the pauses that ended before its answer.
    #[serde(skip)]
    pub billing_pauses: Vec<(std::time::Instant, std::time::Duration)>,
    /// When each DynamoDB call was sent on and answered (this endpoint's
    /// own billing reads left out): how long a function waited on
    /// DynamoDB, calls side by side counted once (common::overlapped).
    #[serde(skip)]
    pub dynamodb_spans: Vec<(std::time::Instant, std::time::Instant)>,
}

impl Tally {
    /// The billing pauses that ended by `by`.
    pub fn paused_by(&self, by: std::time::Instant) -> std::time::Duration {
        self.billing_pauses
            .iter()
            .filter(|(ended, _)| *ended <= by)
            .map(|(_, took)| *took)
            .sum()
    }
}

/// The running check and its count.
pub struct Counting {
    /// Every service's endpoint for the functions (the billing endpoint,
    /// in front of the check).
    pub url: String,
    guard: Guard,
    tally: Arc<Mutex<Tally>>,
}

struct Front {
    guard: String,
    client: reqwest::Client,
    tally: Arc<Mutex<Tally>>,
    /// DynamoDB Local itself, for the images of a transaction's items.
    direct: crate::transactions::Direct,
}

impl Counting {
    /// In front of `dynamodb` (DynamoDB Local) and `moto`, holding each
    /// function to `policies`.
    pub async fn start(policies: Policies, dynamodb: &str, moto: &str) -> Result<Counting, String> {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let counted = tally.clone();
        let observer = Arc::new(move |call: &Call, body: &[u8]| {
            count(&mut sandbox::kit::lock(&counted), call, body);
        });
        let guard = Guard::start(policies, dynamodb, moto, Some(observer)).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let url = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let front = Arc::new(Front {
            guard: guard.url.clone(),
            client: reqwest::Client::new(),
            tally: tally.clone(),
            direct: crate::transactions::Direct::new(dynamodb),
        });
        let app = axum::Router::new().fallback(bill).with_state(front);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Counting { url, guard, tally })
    }

    /// What was counted since the last take.
    pub fn take(&self) -> Tally {
        std::mem::take(&mut *sandbox::kit::lock(&self.tally))
    }

    /// Every call refused so far.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.guard.refusals()
    }
}

/// DynamoDB's operations that take `ReturnConsumedCapacity`, and whether
/// each writes.
fn capacity_kind(operation: &str) -> Option<bool> {
    match operation {
        "GetItem" | "Query" | "Scan" | "BatchGetItem" | "TransactGetItems" => Some(false),
        "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems" => {
            Some(true)
        }
        _ => None,
    }
}

/// Forwards a call to the IAM check; a DynamoDB call asks for its consumed
/// capacity, which is added to the tally.
async fn bill(State(front): State<Arc<Front>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let operation = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("DynamoDB_20120810."))
        .map(str::to_string);
    let writes = operation.as_deref().and_then(capacity_kind);
    let body = match writes {
        Some(_) => ask_capacity(&body),
        None => body.to_vec(),
    };
    // A transaction: its items' tables and images before it commits.
    let transaction = match operation.as_deref() {
        Some("TransactWriteItems") => {
            let started = std::time::Instant::now();
            let before = before_transaction(&front.direct, &body).await;
            pause(&front, started);
            Some(before)
        }
        _ => None,
    };
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut out = front
        .client
        .request(parts.method.clone(), format!("{}{path}", front.guard));
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            out = out.header(name, value);
        }
    }
    let sent = &body;
    let forwarded = std::time::Instant::now();
    match out.body(body.clone()).send().await {
        Ok(r) => {
            let status = r.status();
            let headers = r.headers().clone();
            let bytes = r.bytes().await.unwrap_or_default();
            if operation.is_some() {
                sandbox::kit::lock(&front.tally)
                    .dynamodb_spans
                    .push((forwarded, std::time::Instant::now()));
            }
            if let (Some(writes), Ok(answer)) = (writes, serde_json::from_slice::<Value>(&bytes)) {
                let mut units = billed(writes, status.is_success(), sent, &answer);
                if let (Some((tables, actions, before)), true) = (&transaction, status.is_success())
                {
                    let started = std::time::Instant::now();
                    let after = front.direct.images(actions).await;
                    pause(&front, started);
                    units = transaction_units(tables, actions, before, &after);
                }
                let mut tally = sandbox::kit::lock(&front.tally);
                tally.read_units += units.read;
                tally.write_units += units.write;
                tally.index_write_units += units.index_write;
                crate::parts::add(&mut tally.write_parts, &units.parts);
            }
            let mut response = (status, bytes).into_response();
            for (name, value) in &headers {
                if name != "content-length" && name != "transfer-encoding" {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            response
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// Records a billing pause that began at `started` and ends now.
fn pause(front: &Front, started: std::time::Instant) {
    let ended = std::time::Instant::now();
    sandbox::kit::lock(&front.tally)
        .billing_pauses
        .push((ended, ended - started));
}

type Before = (
    std::collections::HashMap<String, crate::transactions::Table>,
    Vec<crate::transactions::Action>,
    Vec<Value>,
);

/// A transaction's tables, actions, and its items as they are before it.
async fn before_transaction(direct: &crate::transactions::Direct, body: &[u8]) -> Before {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut tables = std::collections::HashMap::new();
    for t in request["TransactItems"].as_array().into_iter().flatten() {
        let name = t
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|b| b["TableName"].as_str());
        if let Some(name) = name {
            if !tables.contains_key(name) {
                tables.insert(name.to_string(), direct.table(name).await);
            }
        }
    }
    let actions = crate::transactions::actions(&request, |t| {
        tables.get(t).map(|x| x.keys.clone()).unwrap_or_default()
    });
    let before = direct.images(&actions).await;
    (tables, actions, before)
}

/// The request with `ReturnConsumedCapacity: INDEXES` (left as it is if
/// it asks already or is not JSON).
fn ask_capacity(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut request)) => {
            request
                .entry("ReturnConsumedCapacity")
                .or_insert_with(|| Value::String("INDEXES".into()));
            serde_json::to_vec(&request).unwrap_or_else(|_| body.to_vec())
        }
        _ => body.to_vec(),
    }
}

/// What one call is billed.
#[derive(Debug, Default, PartialEq)]
struct Units {
    read: f64,
    write: f64,
    index_write: f64,
    /// `write` by what it wrote.
    parts: crate::parts::Parts,
}

/// A committed transaction's units, from its items' images before and
/// after (transactions.rs), by what each action wrote.
fn transaction_units(
    tables: &std::collections::HashMap<String, crate::transactions::Table>,
    actions: &[crate::transactions::Action],
    before: &[Value],
    after: &[Value],
) -> Units {
    let mut units = Units::default();
    for (a, (b, c)) in actions.iter().zip(before.iter().zip(after)) {
        let table = tables.get(&a.table).cloned().unwrap_or_default();
        let key = |name: &str| a.key[name]["S"].as_str().unwrap_or_default().to_string();
        let kind = crate::parts::kind(&key("pk"), &key("sk"));
        for (index, u) in crate::transactions::action_parts(&table, a, b, c) {
            units.write += u;
            if index.is_some() {
                units.index_write += u;
            }
            *units
                .parts
                .entry(crate::parts::label(kind, index.as_deref()))
                .or_default() += u;
        }
    }
    units
}

/// The kinds of the items a write request names, one per item (a
/// transaction's actions in order).
fn kinds(request: &Value) -> Vec<&'static str> {
    match request["TransactItems"].as_array() {
        Some(items) => items
            .iter()
            .map(|t| {
                t.as_object()
                    .and_then(|o| o.values().next())
                    .map_or("other", crate::parts::written)
            })
            .collect(),
        None => vec![crate::parts::written(request)],
    }
}

/// The units of one answered call: those DynamoDB reported, or for a
/// write its condition refused, one unit per item (transactions twice).
fn billed(writes: bool, ok: bool, request: &[u8], answer: &Value) -> Units {
    if !ok {
        let kind = answer["__type"].as_str().unwrap_or_default();
        if !writes {
            return Units::default();
        }
        let request: Value = serde_json::from_slice(request).unwrap_or(Value::Null);
        let each = if kind.ends_with("ConditionalCheckFailedException") {
            1.0
        } else if kind.ends_with("TransactionCanceledException") {
            2.0
        } else {
            0.0
        };
        let mut units = Units::default();
        if each > 0.0 {
            for k in kinds(&request) {
                units.write += each;
                *units
                    .parts
                    .entry(format!("{} (refused)", crate::parts::label(k, None)))
                    .or_default() += each;
            }
        }
        return units;
    }
    let consumed: Vec<&Value> = match &answer["ConsumedCapacity"] {
        Value::Array(all) => all.iter().collect(),
        Value::Null => vec![],
        one => vec![one],
    };
    let request: Value = serde_json::from_slice(request).unwrap_or(Value::Null);
    // A single-item write names one item; a batch's units are the
    // batch's.
    let kind = match request.get("RequestItems") {
        Some(_) => "batch write",
        None => crate::parts::written(&request),
    };
    let mut units = Units::default();
    for c in consumed {
        let total = c["CapacityUnits"].as_f64().unwrap_or(0.0);
        let indexes: Vec<(&String, f64)> = ["GlobalSecondaryIndexes", "LocalSecondaryIndexes"]
            .iter()
            .filter_map(|k| c[*k].as_object())
            .flatten()
            .map(|(name, i)| (name, i["CapacityUnits"].as_f64().unwrap_or(0.0)))
            .collect();
        let index_total: f64 = indexes.iter().map(|(_, u)| u).sum();
        if writes {
            units.write += total;
            units.index_write += index_total;
            *units
                .parts
                .entry(crate::parts::label(kind, None))
                .or_default() += total - index_total;
            for (name, u) in indexes {
                *units
                    .parts
                    .entry(crate::parts::label(kind, Some(name)))
                    .or_default() += u;
            }
        } else {
            units.read += total;
        }
    }
    units.parts.retain(|_, u| *u != 0.0);
    units
}

fn count(tally: &mut Tally, call: &Call, body: &[u8]) {
    let op = call.label();
    *tally.calls.entry(op.clone()).or_default() += 1;
    tally.items_written.extend(written_items(&op, body));
    if op == "dynamodb TransactWriteItems" {
        tally.transaction_items += call.body["TransactItems"]
            .as_array()
            .map_or(0, |a| a.len() as u32);
    }
}

/// An attribute value's size as DynamoDB bills it: names and values in
/// UTF-8 bytes, numbers about one byte per two digits plus one, containers
/// three bytes plus one per element plus their elements.
fn value_size(v: &Value) -> usize {
    let Some(obj) = v.as_object() else { return 0 };
    let Some((kind, inner)) = obj.iter().next() else {
        return 0;
    };
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        "N" => inner
            .as_str()
            .map_or(0, |n| n.trim_start_matches('-').len().div_ceil(2) + 1),
        "B" => inner.as_str().map_or(0, |b| b.len() * 3 / 4),
        "BOOL" | "NULL" => 1,
        "M" => {
            3 + inner.as_object().map_or(0, |m| {
                m.iter().map(|(k, v)| 1 + k.len() + value_size(v)).sum()
            })
        }
        "L" => {
            3 + inner
                .as_array()
                .map_or(0, |l| l.iter().map(|v| 1 + value_size(v)).sum())
        }
        "SS" | "NS" | "BS" => inner.as_array().map_or(0, |l| {
            l.iter().map(|v| v.as_str().map_or(0, str::len)).sum()
        }),
        _ => 0,
    }
}

pub(crate) fn item_size(item: &Value) -> usize {
    item.as_object()
        .map_or(0, |m| m.iter().map(|(k, v)| k.len() + value_size(v)).sum())
}

fn written_items(op: &str, body: &[u8]) -> Vec<usize> {
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return vec![];
    };
    match op {
        "dynamodb PutItem" => vec![item_size(&json["Item"])],
        "dynamodb TransactWriteItems" => json["TransactItems"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|t| t.get("Put").is_some())
                    .map(|t| item_size(&t["Put"]["Item"]))
                    .collect()
            })
            .unwrap_or_default(),
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_invocation_leaves_out_only_the_billing_pauses_that_ended_before_its_answer() {
        let start = std::time::Instant::now();
        let ms = std::time::Duration::from_millis;
        let tally = Tally {
            billing_pauses: vec![
                (start + ms(5), ms(3)),
                (start + ms(9), ms(2)),
                (start + ms(20), ms(7)),
            ],
            ..Tally::default()
        };
        assert_eq!(tally.paused_by(start + ms(10)), ms(5));
        assert_eq!(tally.paused_by(start + ms(20)), ms(12));
        assert_eq!(tally.paused_by(start), ms(0));
    }

    use super::*;

    #[test]
    fn item_sizes_follow_dynamodbs_rules() {
        let item =
            serde_json::json!({"pk": {"S": "PAY#1"}, "n": {"N": "12345"}, "ok": {"BOOL": true}});
        // pk 2 + 5, n 1 + 4, ok 2 + 1
        assert_eq!(item_size(&item), 15);
        let call = Call::read(None, b"Action=SendMessage&QueueUrl=x");
        assert_eq!(call.label(), "sqs SendMessage");
        // A map: 3 bytes, plus 1 per element, plus the elements.
        let nested = serde_json::json!({"m": {"M": {"k": {"S": "v"}}}});
        assert_eq!(item_size(&nested), 1 + 3 + 1 + 1 + 1);
    }

    #[test]
    fn a_call_asks_for_its_capacity_and_is_billed_what_dynamodb_reports() {
        let asked: Value =
            serde_json::from_slice(&ask_capacity(br#"{"TableName":"t"}"#)).unwrap_or_default();
        assert_eq!(asked["ReturnConsumedCapacity"], "INDEXES");
        let kept: Value = serde_json::from_slice(&ask_capacity(
            br#"{"TableName":"t","ReturnConsumedCapacity":"TOTAL"}"#,
        ))
        .unwrap_or_default();
        assert_eq!(kept["ReturnConsumedCapacity"], "TOTAL");

        let put = serde_json::json!({"ConsumedCapacity": {"CapacityUnits": 3.0,
            "Table": {"CapacityUnits": 2.0}, "GlobalSecondaryIndexes": {"GSI1": {"CapacityUnits": 1.0}}}});
        let request = br#"{"TableName":"t","Item":{"pk":{"S":"PAY#1"},"sk":{"S":"PAY"}}}"#;
        assert_eq!(
            billed(true, true, request, &put),
            Units {
                read: 0.0,
                write: 3.0,
                index_write: 1.0,
                parts: [
                    ("payment".to_string(), 2.0),
                    ("payment in GSI1".to_string(), 1.0)
                ]
                .into()
            }
        );
        let transaction = serde_json::json!({"ConsumedCapacity": [
            {"TableName": "a", "CapacityUnits": 6.0}, {"TableName": "b", "CapacityUnits": 2.0}]});
        assert_eq!(billed(true, true, b"{}", &transaction).write, 8.0);
        let read = serde_json::json!({"ConsumedCapacity": {"CapacityUnits": 0.5}});
        assert_eq!(billed(false, true, b"{}", &read).read, 0.5);
        // Refused by its condition: at least a unit, a transaction's items twice.
        let refused = serde_json::json!({"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"});
        assert_eq!(billed(true, false, b"{}", &refused).write, 1.0);
        let cancelled = serde_json::json!({"__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException"});
        assert_eq!(
            billed(true, false, br#"{"TransactItems":[{},{},{}]}"#, &cancelled).write,
            6.0
        );
        // Each refused item is its own part.
        let refused_parts = billed(
            true,
            false,
            br#"{"TransactItems":[{"Put":{"Item":{"pk":{"S":"MREF#m#r"},"sk":{"S":"MREF"}}}},
                {"Update":{"Key":{"pk":{"S":"PAY#1"},"sk":{"S":"PAY"}}}}]}"#,
            &cancelled,
        );
        assert_eq!(
            refused_parts.parts,
            [
                ("reference claim (refused)".to_string(), 2.0),
                ("payment (refused)".to_string(), 2.0)
            ]
            .into()
        );
        // A read refused, or another error: nothing.
        assert_eq!(billed(false, false, b"{}", &refused), Units::default());
    }

    #[test]
    fn a_transactions_units_are_its_items_parts_and_add_up() {
        use crate::transactions::{Action, Index, Projection, Table};
        let table = Table {
            keys: vec!["pk".into(), "sk".into()],
            indexes: vec![
                Index {
                    name: "GSI3".into(),
                    keys: vec!["gsi3pk".into()],
                    projection: Projection::KeysOnly,
                },
                Index {
                    name: "LSI1".into(),
                    keys: vec!["pk".into(), "lsi1sk".into()],
                    projection: Projection::All,
                },
            ],
        };
        let action = |pk: &str, sk: &str| Action {
            table: "t".into(),
            key: serde_json::json!({"pk": {"S": pk}, "sk": {"S": sk}}),
            check_only: false,
        };
        let actions = [action("PAY#1", "PAY"), action("WAL#m#u", "ENT#1#deposit")];
        let before = [
            serde_json::json!({"pk": {"S": "PAY#1"}, "sk": {"S": "PAY"}, "gsi3pk": {"S": "CHANGED#1"}}),
            Value::Null,
        ];
        let after = [
            serde_json::json!({"pk": {"S": "PAY#1"}, "sk": {"S": "PAY"}, "gsi3pk": {"S": "CHANGED#2"}}),
            serde_json::json!({"pk": {"S": "WAL#m#u"}, "sk": {"S": "ENT#1#deposit"}, "lsi1sk": {"S": "ENT#5"}}),
        ];
        let tables = [("t".to_string(), table)].into();
        let units = transaction_units(&tables, &actions, &before, &after);
        assert_eq!(
            units.parts,
            [
                ("payment".to_string(), 2.0),
                ("payment in GSI3".to_string(), 4.0),
                ("ledger entry".to_string(), 2.0),
                ("ledger entry in LSI1".to_string(), 2.0),
            ]
            .into()
        );
        assert_eq!(units.write, crate::parts::total(&units.parts));
        assert_eq!(units.write, 10.0);
        assert_eq!(units.index_write, 6.0);
    }

    /// DynamoDB Local's consumed capacity follows AWS's documented rules
    /// (read-write-operations.html, CapacityUnitCalculations.html), so the
    /// bench may bill what it reports: checked through the billing
    /// endpoint itself.
    #[tokio::test]
    async fn dynamodb_local_bills_by_awss_item_size_rules() {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, AttributeValue as A, BillingMode, GlobalSecondaryIndex,
            KeySchemaElement, KeyType, Projection, ProjectionType, ScalarAttributeType,
            TransactWriteItem, Update,
        };
        let template = std::fs::read_to_string(crate::common::root().join("template.yaml"))
            .expect("template.yaml");
        let policies = Policies::from_template(&template, &devstack::iam::LocalNames::dev())
            .expect("policies");
        let stack = devstack::LocalStack::connect().await;
        let counting = Counting::start(
            policies,
            &devstack::LocalStack::dynamodb_url(),
            &devstack::LocalStack::sqs_url(),
        )
        .await
        .expect("the billing endpoint");
        let db = devstack::LocalStack::as_function("local", &counting.url)
            .await
            .dynamodb;
        let table = format!("capacity-{}", ulid::Ulid::new());
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        stack
            .dynamodb
            .create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk").expect("pk"))
            .attribute_definitions(attribute("g").expect("g"))
            .key_schema(key("pk", KeyType::Hash).expect("key"))
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name("keys")
                    .key_schema(key("g", KeyType::Hash).expect("key"))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::KeysOnly)
                            .build(),
                    )
                    .build()
                    .expect("index"),
            )
            .send()
            .await
            .expect("table");
        // An item of `size` bytes: "pk" + id (3 bytes) and "x" + a string.
        let item = |id: &str, size: usize| {
            [
                ("pk".to_string(), A::S(id.into())),
                ("x".to_string(), A::S("y".repeat(size - 3 - 1))),
            ]
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>()
        };
        let units = || {
            let t = counting.take();
            // Every unit is attributed to what it wrote (parts.rs).
            assert_eq!(crate::parts::total(&t.write_parts), t.write_units);
            (t.read_units, t.write_units, t.index_write_units)
        };
        let put = |item| db.put_item().table_name(&table).set_item(Some(item)).send();

        // 1 KB write units: 1,024 bytes is one, 1,025 two.
        put(item("a", 1024)).await.expect("put");
        assert_eq!(units(), (0.0, 1.0, 0.0));
        put(item("b", 1025)).await.expect("put");
        assert_eq!(units(), (0.0, 2.0, 0.0));
        // An update is billed by the larger of the item before and after.
        let set = |id: &str, value: &str| {
            db.update_item()
                .table_name(&table)
                .key("pk", A::S(id.into()))
                .update_expression("SET x = :v")
                .expression_attribute_values(":v", A::S(value.into()))
                .send()
        };
        set("b", "small").await.expect("update");
        assert_eq!(units(), (0.0, 2.0, 0.0));
        // 4 KB read units, strongly consistent; eventually consistent half.
        let get = |id: &str, consistent| {
            db.get_item()
                .table_name(&table)
                .key("pk", A::S(id.into()))
                .consistent_read(consistent)
                .send()
        };
        put(item("r", 4096)).await.expect("put");
        let _ = units();
        get("r", true).await.expect("get");
        assert_eq!(units(), (1.0, 0.0, 0.0));
        put(item("r", 4097)).await.expect("put");
        let _ = units();
        get("r", true).await.expect("get");
        assert_eq!(units(), (2.0, 0.0, 0.0));
        get("r", false).await.expect("get");
        assert_eq!(units(), (1.0, 0.0, 0.0));
        // A transaction's items twice: 2 x (1 + 2).
        let put_of = |item| {
            TransactWriteItem::builder()
                .put(
                    aws_sdk_dynamodb::types::Put::builder()
                        .table_name(&table)
                        .set_item(Some(item))
                        .build()
                        .expect("put"),
                )
                .build()
        };
        db.transact_write_items()
            .transact_items(put_of(item("c", 100)))
            .transact_items(
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&table)
                            .key("pk", A::S("a".into()))
                            .update_expression("SET x = :v")
                            .expression_attribute_values(":v", A::S("y".repeat(1500)))
                            .build()
                            .expect("update"),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("transaction");
        assert_eq!(units(), (0.0, 6.0, 0.0));
        // Items of equal size, each twice: DynamoDB Local reports these three
        // as 2 units, AWS bills 6; the endpoint bills them from their images.
        db.transact_write_items()
            .transact_items(put_of(item("t1", 100)))
            .transact_items(put_of(item("t2", 100)))
            .transact_items(put_of(item("t3", 100)))
            .send()
            .await
            .expect("transaction");
        assert_eq!(units(), (0.0, 6.0, 0.0));
        // In a transaction, an index entry is a write too, twice.
        let mut indexed = item("t4", 100);
        indexed.insert("g".into(), A::S("four".into()));
        db.transact_write_items()
            .transact_items(put_of(indexed))
            .send()
            .await
            .expect("transaction");
        assert_eq!(units(), (0.0, 4.0, 2.0));
        // A keys-only index is written when its key is, not otherwise:
        // one unit for a new entry, two for a changed key (out and in).
        let mut indexed = item("i", 100);
        indexed.insert("g".into(), A::S("one".into()));
        put(indexed).await.expect("put");
        assert_eq!(units(), (0.0, 2.0, 1.0));
        set("i", "other").await.expect("update");
        assert_eq!(units(), (0.0, 1.0, 0.0));
        db.update_item()
            .table_name(&table)
            .key("pk", A::S("i".into()))
            .update_expression("SET g = :g")
            .expression_attribute_values(":g", A::S("two".into()))
            .send()
            .await
            .expect("update");
        assert_eq!(units(), (0.0, 3.0, 2.0));
        // Refused by its condition: reported as nothing, billed a unit.
        let refused = db
            .put_item()
            .table_name(&table)
            .set_item(Some(item("a", 10)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        assert!(refused.is_err());
        assert_eq!(units(), (0.0, 1.0, 0.0));
        let _ = stack
            .dynamodb
            .delete_table()
            .table_name(&table)
            .send()
            .await;
    }
}

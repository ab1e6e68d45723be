//! The IAM check in front of DynamoDB Local and moto (devstack::iam),
//! counting on the wire every AWS call it lets through, by service and
//! operation (`dynamodb GetItem`), with the sizes of the items written.
//! Every function signs as itself (runtime.rs), so a call outside its
//! policy in template.yaml is refused here as AWS would refuse it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

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
}

/// The running check and its count.
pub struct Counting {
    /// Every service's endpoint for the functions.
    pub url: String,
    guard: Guard,
    tally: Arc<Mutex<Tally>>,
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
        Ok(Counting {
            url: guard.url.clone(),
            guard,
            tally,
        })
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
/// three bytes plus their elements.
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
            3 + inner
                .as_object()
                .map_or(0, |m| m.iter().map(|(k, v)| k.len() + value_size(v)).sum())
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

fn item_size(item: &Value) -> usize {
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
    use super::*;

    #[test]
    fn item_sizes_follow_dynamodbs_rules() {
        let item =
            serde_json::json!({"pk": {"S": "PAY#1"}, "n": {"N": "12345"}, "ok": {"BOOL": true}});
        // pk 2 + 5, n 1 + 4, ok 2 + 1
        assert_eq!(item_size(&item), 15);
        let call = Call::read(None, b"Action=SendMessage&QueueUrl=x");
        assert_eq!(call.label(), "sqs SendMessage");
    }
}

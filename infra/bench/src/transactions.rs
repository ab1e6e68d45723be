//! What a `TransactWriteItems` is billed, worked out by the billing
//! endpoint itself: DynamoDB Local reports wrong units for a transaction
//! (items of equal size are counted once: three 100-byte puts come back as
//! 2 units where AWS bills 6), while its units for single-item calls follow
//! AWS's rules (proxy.rs). Each item of the transaction is read before and
//! after it commits (uncounted, straight from DynamoDB Local) and billed
//! as AWS documents: twice the write units of the larger of its two
//! images, 1 KB a unit (a condition check: twice the read units of the item
//! it checks, 4 KB a unit); each index the write touches (its key appears,
//! goes, changes, or a projected attribute changes) one write of its entry,
//! two when its key changes, likewise twice.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::proxy::item_size;

/// An index of a table: its key attributes and what it projects.
#[derive(Debug, Clone, PartialEq)]
pub struct Index {
    pub name: String,
    pub keys: Vec<String>,
    pub projection: Projection,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    KeysOnly,
    Include(Vec<String>),
    All,
}

/// A table's key attributes and its indexes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub keys: Vec<String>,
    pub indexes: Vec<Index>,
}

impl Table {
    /// From a `DescribeTable` answer.
    pub fn described(answer: &Value) -> Table {
        let keys = |schema: &Value| -> Vec<String> {
            schema
                .as_array()
                .map(|k| {
                    k.iter()
                        .filter_map(|e| e["AttributeName"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let table = &answer["Table"];
        let indexes = ["GlobalSecondaryIndexes", "LocalSecondaryIndexes"]
            .iter()
            .filter_map(|k| table[*k].as_array())
            .flatten()
            .map(|i| Index {
                name: i["IndexName"].as_str().unwrap_or_default().to_string(),
                keys: keys(&i["KeySchema"]),
                projection: match i["Projection"]["ProjectionType"].as_str() {
                    Some("ALL") => Projection::All,
                    Some("INCLUDE") => Projection::Include(
                        i["Projection"]["NonKeyAttributes"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|n| n.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    ),
                    _ => Projection::KeysOnly,
                },
            })
            .collect();
        Table {
            keys: keys(&table["KeySchema"]),
            indexes,
        }
    }
}

/// One action of a transaction: its table, key, and whether it only
/// checks a condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub table: String,
    pub key: Value,
    pub check_only: bool,
}

/// The actions of a `TransactWriteItems` request, keyed by `keys(table)`.
pub fn actions(request: &Value, keys: impl Fn(&str) -> Vec<String>) -> Vec<Action> {
    let Some(items) = request["TransactItems"].as_array() else {
        return vec![];
    };
    items
        .iter()
        .filter_map(|t| {
            let (kind, body) = t.as_object()?.iter().next()?;
            let table = body["TableName"].as_str()?.to_string();
            let key = match kind.as_str() {
                "Put" => {
                    let item = &body["Item"];
                    let key: serde_json::Map<String, Value> = keys(&table)
                        .into_iter()
                        .filter_map(|k| item.get(&k).map(|v| (k, v.clone())))
                        .collect();
                    Value::Object(key)
                }
                _ => body["Key"].clone(),
            };
            Some(Action {
                table,
                key,
                check_only: kind == "ConditionCheck",
            })
        })
        .collect()
}

fn units(bytes: usize, per: usize) -> f64 {
    (bytes.max(1).div_ceil(per)) as f64
}

/// The (table, index) write units of one transaction action whose item
/// was `before` and is `after` (`Value::Null` where there was none).
#[cfg(test)]
pub fn action_units(table: &Table, action: &Action, before: &Value, after: &Value) -> (f64, f64) {
    let parts = action_parts(table, action, before, after);
    let index: f64 = parts
        .iter()
        .filter(|(i, _)| i.is_some())
        .map(|(_, u)| u)
        .sum();
    (parts.iter().map(|(_, u)| u).sum(), index)
}

/// [`action_units`] part by part: the item's own units (index `None`),
/// then each index written, by name.
pub fn action_parts(
    table: &Table,
    action: &Action,
    before: &Value,
    after: &Value,
) -> Vec<(Option<String>, f64)> {
    let size = |v: &Value| if v.is_object() { item_size(v) } else { 0 };
    if action.check_only {
        return vec![(None, 2.0 * units(size(before), 4096))];
    }
    let mut parts = vec![(None, 2.0 * units(size(before).max(size(after)), 1024))];
    for index in &table.indexes {
        let key = |v: &Value| -> Option<Vec<Value>> {
            index.keys.iter().map(|k| v.get(k).cloned()).collect()
        };
        let projected = |v: &Value| -> Value {
            let Some(m) = v.as_object() else {
                return Value::Null;
            };
            let mut entry: serde_json::Map<String, Value> = m
                .iter()
                .filter(|(k, _)| {
                    table.keys.contains(k)
                        || index.keys.contains(k)
                        || match &index.projection {
                            Projection::KeysOnly => false,
                            Projection::Include(names) => names.contains(k),
                            Projection::All => true,
                        }
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            entry.retain(|_, v| !v.is_null());
            Value::Object(entry)
        };
        let entry_units = |v: &Value| units(item_size(&projected(v)), 1024);
        let written = match (key(before), key(after)) {
            (None, None) => 0.0,
            (Some(_), None) => entry_units(before),
            (None, Some(_)) => entry_units(after),
            (Some(a), Some(b)) if a != b => entry_units(before) + entry_units(after),
            (Some(_), Some(_)) if projected(before) != projected(after) => entry_units(after),
            (Some(_), Some(_)) => 0.0,
        };
        if written > 0.0 {
            parts.push((Some(index.name.clone()), 2.0 * written));
        }
    }
    parts
}

/// DynamoDB Local, asked directly (nothing counted, no policy).
pub struct Direct {
    url: String,
    client: reqwest::Client,
    tables: tokio::sync::Mutex<HashMap<String, Table>>,
}

impl Direct {
    pub fn new(url: &str) -> Direct {
        Direct {
            url: url.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            tables: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    async fn call(&self, operation: &str, body: Value) -> Value {
        let sent = self
            .client
            .post(&self.url)
            .header("x-amz-target", format!("DynamoDB_20120810.{operation}"))
            .header("content-type", "application/x-amz-json-1.0")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await;
        match sent {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    pub async fn table(&self, name: &str) -> Table {
        let mut tables = self.tables.lock().await;
        if let Some(t) = tables.get(name) {
            return t.clone();
        }
        let t = Table::described(&self.call("DescribeTable", json!({"TableName": name})).await);
        tables.insert(name.to_string(), t.clone());
        t
    }

    /// The item under `action`'s key, or null.
    pub async fn item(&self, action: &Action) -> Value {
        let answer = self
            .call(
                "GetItem",
                json!({"TableName": action.table, "Key": action.key, "ConsistentRead": true}),
            )
            .await;
        answer.get("Item").cloned().unwrap_or(Value::Null)
    }

    /// The images of every action's item now.
    pub async fn images(&self, actions: &[Action]) -> Vec<Value> {
        let mut images = Vec::with_capacity(actions.len());
        for a in actions {
            images.push(self.item(a).await);
        }
        images
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_only(keys: &[&str]) -> Index {
        Index {
            name: "G".into(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            projection: Projection::KeysOnly,
        }
    }

    #[test]
    fn each_item_of_a_transaction_is_billed_twice_by_its_larger_image() {
        let table = Table {
            keys: vec!["pk".into()],
            indexes: vec![keys_only(&["g"])],
        };
        let put = Action {
            table: "t".into(),
            key: json!({"pk": {"S": "a"}}),
            check_only: false,
        };
        let small = json!({"pk": {"S": "a"}, "x": {"S": "y"}});
        let big = json!({"pk": {"S": "a"}, "x": {"S": "y".repeat(1500)}});
        // A new small item: 2 x 1; an update shrinking a 1.5 KB item: 2 x 2.
        assert_eq!(action_units(&table, &put, &Value::Null, &small), (2.0, 0.0));
        assert_eq!(action_units(&table, &put, &big, &small), (4.0, 0.0));
        // The index: written when its key appears (1), changes (2), goes (1),
        // not when an attribute it does not project changes.
        let keyed = |g: &str, x: &str| json!({"pk": {"S": "a"}, "g": {"S": g}, "x": {"S": x}});
        assert_eq!(
            action_units(&table, &put, &small, &keyed("1", "y")),
            (4.0, 2.0)
        );
        assert_eq!(
            action_units(&table, &put, &keyed("1", "y"), &keyed("2", "y")),
            (6.0, 4.0)
        );
        assert_eq!(
            action_units(&table, &put, &keyed("1", "y"), &small),
            (4.0, 2.0)
        );
        assert_eq!(
            action_units(&table, &put, &keyed("1", "y"), &keyed("1", "z")),
            (2.0, 0.0)
        );
        // An index projecting `x` is written when `x` changes.
        let include = Table {
            keys: vec!["pk".into()],
            indexes: vec![Index {
                name: "G".into(),
                keys: vec!["g".into()],
                projection: Projection::Include(vec!["x".into()]),
            }],
        };
        assert_eq!(
            action_units(&include, &put, &keyed("1", "y"), &keyed("1", "z")),
            (4.0, 2.0)
        );
        // A condition check: twice the read units of the item it checks.
        let check = Action {
            check_only: true,
            ..put
        };
        assert_eq!(action_units(&table, &check, &big, &big), (2.0, 0.0));
    }

    #[test]
    fn a_transaction_actions_parts_name_its_indexes_and_add_up() {
        let table = Table {
            keys: vec!["pk".into()],
            indexes: vec![
                keys_only(&["g"]),
                Index {
                    name: "L".into(),
                    keys: vec!["pk".into(), "l".into()],
                    projection: Projection::All,
                },
            ],
        };
        let put = Action {
            table: "t".into(),
            key: json!({"pk": {"S": "a"}}),
            check_only: false,
        };
        let before = json!({"pk": {"S": "a"}, "g": {"S": "1"}, "l": {"S": "x"}});
        let after = json!({"pk": {"S": "a"}, "g": {"S": "2"}, "l": {"S": "x"}, "y": {"S": "z"}});
        let parts = action_parts(&table, &put, &before, &after);
        // The item twice, the keys-only entry moved (two writes, twice), the
        // ALL entry rewritten with the new attribute (once, twice).
        assert_eq!(
            parts,
            vec![
                (None, 2.0),
                (Some("G".into()), 4.0),
                (Some("L".into()), 2.0)
            ]
        );
        let sum: f64 = parts.iter().map(|(_, u)| u).sum();
        assert_eq!(action_units(&table, &put, &before, &after), (sum, 6.0));
    }

    #[test]
    fn a_transactions_actions_are_keyed_by_their_tables_keys() {
        let request = json!({"TransactItems": [
            {"Put": {"TableName": "t", "Item": {"pk": {"S": "a"}, "sk": {"S": "b"}, "x": {"N": "1"}}}},
            {"Update": {"TableName": "t", "Key": {"pk": {"S": "c"}, "sk": {"S": "d"}}}},
            {"ConditionCheck": {"TableName": "t", "Key": {"pk": {"S": "e"}, "sk": {"S": "f"}}}}
        ]});
        let found = actions(&request, |_| vec!["pk".into(), "sk".into()]);
        assert_eq!(found.len(), 3);
        assert_eq!(found[0].key, json!({"pk": {"S": "a"}, "sk": {"S": "b"}}));
        assert!(!found[1].check_only && found[2].check_only);
    }

    #[test]
    fn a_table_is_read_from_its_description() {
        let answer = json!({"Table": {
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            "GlobalSecondaryIndexes": [{"IndexName": "G", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["type"]}}],
            "LocalSecondaryIndexes": [{"IndexName": "L", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "l", "KeyType": "RANGE"}], "Projection": {"ProjectionType": "ALL"}}]
        }});
        let t = Table::described(&answer);
        assert_eq!(t.keys, vec!["pk", "sk"]);
        assert_eq!(
            t.indexes[0].projection,
            Projection::Include(vec!["type".into()])
        );
        assert_eq!(t.indexes[1].projection, Projection::All);
    }
}

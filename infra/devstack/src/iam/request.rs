//! What a request to DynamoDB, SQS or Secrets Manager asks IAM: the
//! service, the operation, and each action on each resource, as the
//! service authorises it (a transaction's items each by their own action,
//! a batch by the batch action on each table).

use serde_json::Value;

use super::policy::{Check, LocalNames};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    DynamoDb,
    /// SQS over AWS JSON 1.0 (`X-Amz-Target: AmazonSQS.*`).
    SqsJson,
    /// SQS over the query protocol (`Action=...` form bodies).
    SqsQuery,
    SecretsManager,
    Unknown,
}

impl Service {
    /// The name the bench's tally uses (`dynamodb`, `sqs`, ...).
    pub fn short(self) -> &'static str {
        match self {
            Service::DynamoDb => "dynamodb",
            Service::SqsJson | Service::SqsQuery => "sqs",
            Service::SecretsManager => "secretsmanager",
            Service::Unknown => "?",
        }
    }
}

/// A request as the check reads it.
#[derive(Debug, Clone)]
pub struct Call {
    pub service: Service,
    /// `GetItem`, `SendMessage`, `GetSecretValue`.
    pub operation: String,
    /// The JSON body (JSON protocols), or the form's fields as a JSON
    /// object (the query protocol).
    pub body: Value,
}

impl Call {
    /// Reads the service and operation from `X-Amz-Target` or the form's
    /// `Action`.
    pub fn read(target: Option<&str>, body: &[u8]) -> Call {
        if let Some(target) = target {
            let (prefix, op) = target.split_once('.').unwrap_or(("", target));
            let service = match prefix {
                p if p.starts_with("DynamoDB") => Service::DynamoDb,
                "AmazonSQS" => Service::SqsJson,
                "secretsmanager" => Service::SecretsManager,
                _ => Service::Unknown,
            };
            return Call {
                service,
                operation: op.to_string(),
                body: serde_json::from_slice(body).unwrap_or(Value::Null),
            };
        }
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
        let action = fields
            .iter()
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.clone());
        let object = fields
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect::<serde_json::Map<_, _>>();
        match action {
            Some(op) => Call {
                service: Service::SqsQuery,
                operation: op,
                body: Value::Object(object),
            },
            None => Call {
                service: Service::Unknown,
                operation: "?".into(),
                body: Value::Object(object),
            },
        }
    }

    /// `dynamodb GetItem`, as the bench counts calls.
    pub fn label(&self) -> String {
        format!("{} {}", self.service.short(), self.operation)
    }
}

/// A resource a check needs, before a secret's full ARN is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    Ready(Check),
    /// `secretsmanager:<action>` on the secret named or ARN'd by the id;
    /// its ARN (with the random suffix) is looked up.
    Secret {
        action: String,
        secret_id: String,
    },
}

/// The checks a call needs, in the order the service would make them.
/// `path` is the request's path (the query protocol may name the queue
/// there).
pub fn checks(
    call: &Call,
    path: &str,
    names: &LocalNames,
    partition_key: &dyn Fn(&str) -> Option<String>,
) -> Vec<Wanted> {
    let op = call.operation.as_str();
    let body = &call.body;
    match call.service {
        Service::DynamoDb => dynamodb(op, body, names, partition_key),
        Service::SqsJson | Service::SqsQuery => {
            let action = match op {
                "SendMessageBatch" => "SendMessage",
                "DeleteMessageBatch" => "DeleteMessage",
                "ChangeMessageVisibilityBatch" => "ChangeMessageVisibility",
                other => other,
            };
            let queue = str_field(body, "QueueUrl")
                .and_then(queue_name_of_url)
                .or_else(|| str_field(body, "QueueName").map(str::to_string))
                .or_else(|| queue_name_of_url(path));
            let resource = match queue {
                Some(q) => names.queue_arn(&q),
                None => "*".to_string(),
            };
            vec![ready(format!("sqs:{action}"), resource, None)]
        }
        Service::SecretsManager => match str_field(body, "SecretId") {
            Some(id) => vec![Wanted::Secret {
                action: format!("secretsmanager:{op}"),
                secret_id: id.to_string(),
            }],
            None => vec![ready(format!("secretsmanager:{op}"), "*".into(), None)],
        },
        Service::Unknown => vec![ready(format!("unknown:{op}"), "*".into(), None)],
    }
}

fn ready(action: String, resource: String, leading_keys: Option<Vec<String>>) -> Wanted {
    Wanted::Ready(Check {
        action,
        resource,
        leading_keys,
    })
}

fn str_field<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str)
}

/// `http://host/123456789012/name` (moto's and AWS's queue URLs) to `name`.
fn queue_name_of_url(url: &str) -> Option<String> {
    let path = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p));
    let parts: Vec<&str> = path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match parts.as_slice() {
        [_, name] => Some(name.to_string()),
        _ => None,
    }
}

/// A table given by name or ARN, as its name.
fn table_name(v: &str) -> &str {
    v.rsplit_once(":table/").map_or(v, |(_, t)| t)
}

fn dynamodb(
    op: &str,
    body: &Value,
    names: &LocalNames,
    partition_key: &dyn Fn(&str) -> Option<String>,
) -> Vec<Wanted> {
    let key_of = |table: &str, item: &Value| -> Vec<String> {
        partition_key(table)
            .and_then(|pk| item.get(pk.as_str()).and_then(scalar))
            .into_iter()
            .collect()
    };
    let on_table = |action: &str, table: &str, keys: Option<Vec<String>>| {
        ready(format!("dynamodb:{action}"), names.table_arn(table), keys)
    };
    match op {
        "GetItem" | "PutItem" | "UpdateItem" | "DeleteItem" => {
            let Some(table) = str_field(body, "TableName").map(table_name) else {
                return vec![ready(format!("dynamodb:{op}"), "*".into(), None)];
            };
            let item = if op == "PutItem" {
                &body["Item"]
            } else {
                &body["Key"]
            };
            vec![on_table(op, table, Some(key_of(table, item)))]
        }
        "Query" | "Scan" => {
            let Some(table) = str_field(body, "TableName").map(table_name) else {
                return vec![ready(format!("dynamodb:{op}"), "*".into(), None)];
            };
            let resource = match str_field(body, "IndexName") {
                Some(index) => format!("{}/index/{index}", names.table_arn(table)),
                None => names.table_arn(table),
            };
            let keys = if op == "Query" && body.get("IndexName").is_none() {
                partition_key(table).map(|pk| query_partition_values(body, &pk))
            } else {
                None
            };
            vec![ready(format!("dynamodb:{op}"), resource, keys)]
        }
        "BatchGetItem" | "BatchWriteItem" => {
            let Some(tables) = body.get("RequestItems").and_then(Value::as_object) else {
                return vec![];
            };
            tables
                .iter()
                .map(|(t, request)| {
                    let t = table_name(t);
                    let items: Vec<&Value> = if op == "BatchGetItem" {
                        request["Keys"].as_array().into_iter().flatten().collect()
                    } else {
                        request
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|w| {
                                w.get("PutRequest")
                                    .map(|p| &p["Item"])
                                    .or_else(|| w.get("DeleteRequest").map(|d| &d["Key"]))
                            })
                            .collect()
                    };
                    let keys = items.into_iter().flat_map(|i| key_of(t, i)).collect();
                    on_table(op, t, Some(keys))
                })
                .collect()
        }
        "TransactWriteItems" | "TransactGetItems" => body["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|element| {
                let (kind, inner) = element.as_object()?.iter().next()?;
                let action = match kind.as_str() {
                    "Put" => "PutItem",
                    "Update" => "UpdateItem",
                    "Delete" => "DeleteItem",
                    "ConditionCheck" => "ConditionCheckItem",
                    "Get" => "GetItem",
                    _ => return None,
                };
                let table = table_name(str_field(inner, "TableName")?);
                let item = if kind == "Put" {
                    &inner["Item"]
                } else {
                    &inner["Key"]
                };
                Some(on_table(action, table, Some(key_of(table, item))))
            })
            .collect(),
        _ => match str_field(body, "TableName").map(table_name) {
            Some(table) => vec![on_table(op, table, None)],
            None => vec![ready(format!("dynamodb:{op}"), "*".into(), None)],
        },
    }
}

/// A string or number attribute value's text.
fn scalar(v: &Value) -> Option<String> {
    v.get("S")
        .or_else(|| v.get("N"))
        .or_else(|| v.get("B"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The partition key values a table query's `KeyConditionExpression` names
/// (`pk = :p` or `#k = :p`). A query always names one; where it cannot be
/// read here, the expression stands in for it, which no key pattern of a
/// policy matches (the check fails closed).
fn query_partition_values(body: &Value, pk: &str) -> Vec<String> {
    let expr = str_field(body, "KeyConditionExpression").unwrap_or_default();
    let found = named_partition_values(body, expr, pk);
    if found.is_empty() {
        return vec![format!("(unread key condition: {expr})")];
    }
    found
}

fn named_partition_values(body: &Value, expr: &str, pk: &str) -> Vec<String> {
    let names = &body["ExpressionAttributeNames"];
    let values = &body["ExpressionAttributeValues"];
    let mut out = Vec::new();
    for clause in expr.split(" AND ").flat_map(|c| c.split(" and ")) {
        let Some((left, right)) = clause.split_once('=') else {
            continue;
        };
        let left = left.trim().trim_start_matches('(');
        let right = right.trim().trim_end_matches(')');
        let attribute = if left.starts_with('#') {
            str_field(names, left).unwrap_or(left)
        } else {
            left
        };
        if attribute == pk {
            if let Some(v) = values.get(right).and_then(scalar) {
                out.push(v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pk(_: &str) -> Option<String> {
        Some("pk".into())
    }

    fn run(target: &str, body: Value) -> Vec<Wanted> {
        let names = LocalNames::dev();
        let call = Call::read(Some(target), body.to_string().as_bytes());
        checks(&call, "/", &names, &pk)
    }

    fn check(action: &str, resource: &str, keys: Option<&[&str]>) -> Wanted {
        Wanted::Ready(Check {
            action: action.into(),
            resource: resource.into(),
            leading_keys: keys.map(|k| k.iter().map(|s| s.to_string()).collect()),
        })
    }

    const T: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/paygate-local";

    #[test]
    fn dynamodb_actions_and_resources() {
        assert_eq!(
            run(
                "DynamoDB_20120810.Query",
                json!({"TableName": "paygate-local", "IndexName": "GSI2",
                       "KeyConditionExpression": "gsi2pk = :p"})
            ),
            [check("dynamodb:Query", &format!("{T}/index/GSI2"), None)]
        );
        assert_eq!(
            run(
                "DynamoDB_20120810.Query",
                json!({"TableName": "paygate-local", "KeyConditionExpression": "#k = :p AND begins_with(sk, :s)",
                       "ExpressionAttributeNames": {"#k": "pk"},
                       "ExpressionAttributeValues": {":p": {"S": "PAY#1"}, ":s": {"S": "REFUND#"}}})
            ),
            [check("dynamodb:Query", T, Some(&["PAY#1"]))]
        );
        assert_eq!(
            run(
                "DynamoDB_20120810.Query",
                json!({"TableName": "paygate-local", "KeyConditionExpression": "pk IN (:a)"})
            ),
            [check(
                "dynamodb:Query",
                T,
                Some(&["(unread key condition: pk IN (:a))"])
            )]
        );
        assert_eq!(
            run(
                "DynamoDB_20120810.UpdateItem",
                json!({"TableName": "paygate-local", "Key": {"pk": {"S": "HEALTH#x"}, "sk": {"S": "H"}}})
            ),
            [check("dynamodb:UpdateItem", T, Some(&["HEALTH#x"]))]
        );
        assert_eq!(
            run(
                "DynamoDB_20120810.TransactWriteItems",
                json!({"TransactItems": [
                    {"Put": {"TableName": "paygate-local", "Item": {"pk": {"S": "A"}}}},
                    {"Update": {"TableName": "paygate-local", "Key": {"pk": {"S": "B"}}}},
                    {"ConditionCheck": {"TableName": "paygate-local", "Key": {"pk": {"S": "C"}}}},
                    {"Delete": {"TableName": T, "Key": {"pk": {"S": "D"}}}}]})
            ),
            [
                check("dynamodb:PutItem", T, Some(&["A"])),
                check("dynamodb:UpdateItem", T, Some(&["B"])),
                check("dynamodb:ConditionCheckItem", T, Some(&["C"])),
                check("dynamodb:DeleteItem", T, Some(&["D"])),
            ]
        );
        assert_eq!(
            run(
                "DynamoDB_20120810.BatchGetItem",
                json!({"RequestItems": {"paygate-local": {"Keys": [{"pk": {"S": "H#1"}}, {"pk": {"S": "H#2"}}]}}})
            ),
            [check("dynamodb:BatchGetItem", T, Some(&["H#1", "H#2"]))]
        );
    }

    #[test]
    fn sqs_in_both_protocols_and_secrets() {
        let q = "arn:aws:sqs:us-east-1:123456789012:paygate-topups";
        assert_eq!(
            run(
                "AmazonSQS.SendMessageBatch",
                json!({"QueueUrl": "http://127.0.0.1:4566/123456789012/paygate-topups"})
            ),
            [check("sqs:SendMessage", q, None)]
        );
        let names = LocalNames::dev();
        let call = Call::read(
            None,
            b"Action=ReceiveMessage&QueueUrl=http%3A%2F%2F127.0.0.1%3A4566%2F123456789012%2Fpaygate-topups",
        );
        assert_eq!(call.label(), "sqs ReceiveMessage");
        assert_eq!(
            checks(&call, "/", &names, &pk),
            [check("sqs:ReceiveMessage", q, None)]
        );
        assert_eq!(
            run(
                "secretsmanager.GetSecretValue",
                json!({"SecretId": "paygate/casino"})
            ),
            [Wanted::Secret {
                action: "secretsmanager:GetSecretValue".into(),
                secret_id: "paygate/casino".into()
            }]
        );
    }
}

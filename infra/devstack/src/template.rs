//! Reads the DynamoDB table and SQS queues out of `template.yaml`, so the
//! local stack is built from the same definitions as the deployed one.
//!
//! Only the properties DynamoDB Local and moto act on are read: keys,
//! indexes, TTL, queue timeouts and redrive policies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template.yaml is not YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template.yaml: {0}")]
    Shape(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyElement {
    pub attribute: String,
    /// HASH or RANGE.
    pub key_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDef {
    pub name: String,
    pub key_schema: Vec<KeyElement>,
    /// ALL, KEYS_ONLY or INCLUDE.
    pub projection: String,
    /// The attributes an INCLUDE projection adds.
    pub non_key_attributes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    pub logical_id: String,
    /// Attribute name to type (S, N, B).
    pub attributes: BTreeMap<String, String>,
    pub key_schema: Vec<KeyElement>,
    pub global_indexes: Vec<IndexDef>,
    pub local_indexes: Vec<IndexDef>,
    pub ttl_attribute: Option<String>,
    /// The stream's view type (KEYS_ONLY, NEW_IMAGE, ...), where the table
    /// has a stream.
    pub stream_view_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDef {
    pub logical_id: String,
    /// Queue attributes as SQS names them (VisibilityTimeout, ...), as text.
    pub attributes: BTreeMap<String, String>,
    /// The dead-letter queue's logical id and maxReceiveCount.
    pub redrive: Option<(String, u32)>,
}

/// An HTTP API route of a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDef {
    pub method: String,
    /// `/v1/payments/{id}`.
    pub path: String,
    /// `Auth: {Authorizer: NONE}` on the event.
    pub public: bool,
}

/// A function and how it is triggered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionDef {
    pub logical_id: String,
    /// The cargo binary (`Metadata.BuildProperties.Binary`).
    pub binary: String,
    pub routes: Vec<RouteDef>,
    /// Logical ids of the queues that trigger it.
    pub queues: Vec<String>,
    /// Schedule expressions (`rate(5 minutes)`) that trigger it.
    pub schedules: Vec<String>,
    /// The table streams that trigger it.
    pub streams: Vec<StreamSourceDef>,
}

/// A DynamoDB stream event source of a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSourceDef {
    /// The logical id of the table whose stream it reads.
    pub table: String,
    /// Records per invocation.
    pub batch_size: usize,
    /// The `FilterCriteria` patterns (JSON); a record goes to the function
    /// if it matches any (or if there are none).
    pub filters: Vec<serde_json::Value>,
}

/// The parts of the template the local stack builds.
#[derive(Debug, Clone)]
pub struct Template {
    pub tables: Vec<TableDef>,
    pub queues: Vec<QueueDef>,
    pub functions: Vec<FunctionDef>,
    /// The binary of the HTTP API's default Lambda authorizer.
    pub authorizer: Option<String>,
}

/// The repository's `template.yaml`.
pub fn default_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml")
}

impl Template {
    pub fn load(path: &Path) -> Result<Template, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Template::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let doc: Value = serde_yaml::from_str(text)?;
        let resources = doc
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| shape("no Resources"))?;
        let mut tables = Vec::new();
        let mut queues = Vec::new();
        let mut functions = Vec::new();
        let mut authorizer_id = None;
        for (id, resource) in resources {
            let id = id
                .as_str()
                .ok_or_else(|| shape("resource id is not a string"))?;
            let props = resource.get("Properties").unwrap_or(&Value::Null);
            match resource.get("Type").and_then(Value::as_str) {
                Some("AWS::DynamoDB::Table") => tables.push(table(id, props)?),
                Some("AWS::SQS::Queue") => queues.push(queue(id, props)?),
                Some("AWS::Serverless::Function") => functions.push(function(id, resource)?),
                Some("AWS::Serverless::HttpApi") => authorizer_id = default_authorizer(props),
                _ => {}
            }
        }
        let authorizer = match authorizer_id {
            Some(id) => Some(
                functions
                    .iter()
                    .find(|f| f.logical_id == id)
                    .map(|f| f.binary.clone())
                    .ok_or_else(|| shape(format!("authorizer function {id} not found")))?,
            ),
            None => None,
        };
        Ok(Template {
            tables,
            queues,
            functions,
            authorizer,
        })
    }

    pub fn table(&self, logical_id: &str) -> Option<&TableDef> {
        self.tables.iter().find(|t| t.logical_id == logical_id)
    }

    pub fn queue(&self, logical_id: &str) -> Option<&QueueDef> {
        self.queues.iter().find(|q| q.logical_id == logical_id)
    }
}

fn shape(msg: impl Into<String>) -> TemplateError {
    TemplateError::Shape(msg.into())
}

fn text(v: &Value, field: &str) -> Result<String, TemplateError> {
    match v.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        _ => Err(shape(format!("{field} missing or not a scalar"))),
    }
}

fn list<'a>(v: &'a Value, field: &str) -> &'a [Value] {
    v.get(field)
        .and_then(Value::as_sequence)
        .map_or(&[], Vec::as_slice)
}

fn key_schema(v: &Value) -> Result<Vec<KeyElement>, TemplateError> {
    list(v, "KeySchema")
        .iter()
        .map(|k| {
            Ok(KeyElement {
                attribute: text(k, "AttributeName")?,
                key_type: text(k, "KeyType")?,
            })
        })
        .collect()
}

fn indexes(v: &Value, field: &str) -> Result<Vec<IndexDef>, TemplateError> {
    list(v, field)
        .iter()
        .map(|i| {
            Ok(IndexDef {
                name: text(i, "IndexName")?,
                key_schema: key_schema(i)?,
                projection: i
                    .get("Projection")
                    .map(|p| text(p, "ProjectionType"))
                    .transpose()?
                    .unwrap_or_else(|| "ALL".into()),
                non_key_attributes: i
                    .get("Projection")
                    .map(|p| list(p, "NonKeyAttributes"))
                    .unwrap_or_default()
                    .iter()
                    .map(|a| {
                        a.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| shape("NonKeyAttributes: not a name"))
                    })
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

fn table(id: &str, props: &Value) -> Result<TableDef, TemplateError> {
    let attributes = list(props, "AttributeDefinitions")
        .iter()
        .map(|a| Ok((text(a, "AttributeName")?, text(a, "AttributeType")?)))
        .collect::<Result<_, TemplateError>>()?;
    let ttl_attribute = match props.get("TimeToLiveSpecification") {
        Some(ttl) if text(ttl, "Enabled")? == "true" => Some(text(ttl, "AttributeName")?),
        _ => None,
    };
    Ok(TableDef {
        logical_id: id.to_string(),
        attributes,
        key_schema: key_schema(props)?,
        global_indexes: indexes(props, "GlobalSecondaryIndexes")?,
        local_indexes: indexes(props, "LocalSecondaryIndexes")?,
        ttl_attribute,
        stream_view_type: props
            .get("StreamSpecification")
            .map(|s| text(s, "StreamViewType"))
            .transpose()?,
    })
}

fn queue(id: &str, props: &Value) -> Result<QueueDef, TemplateError> {
    let mut attributes = BTreeMap::new();
    for name in [
        "VisibilityTimeout",
        "MessageRetentionPeriod",
        "DelaySeconds",
        "ReceiveMessageWaitTimeSeconds",
        "MaximumMessageSize",
    ] {
        if props.get(name).is_some() {
            attributes.insert(name.to_string(), text(props, name)?);
        }
    }
    let redrive = match props.get("RedrivePolicy") {
        Some(policy) => {
            let target = policy
                .get("deadLetterTargetArn")
                .ok_or_else(|| shape(format!("{id}: RedrivePolicy without deadLetterTargetArn")))?;
            let max: u32 = text(policy, "maxReceiveCount")?
                .parse()
                .map_err(|_| shape(format!("{id}: maxReceiveCount is not a number")))?;
            Some((get_att_target(target)?, max))
        }
        None => None,
    };
    Ok(QueueDef {
        logical_id: id.to_string(),
        attributes,
        redrive,
    })
}

fn function(id: &str, resource: &Value) -> Result<FunctionDef, TemplateError> {
    let binary = resource
        .get("Metadata")
        .and_then(|m| m.get("BuildProperties"))
        .map(|b| text(b, "Binary"))
        .transpose()?
        .ok_or_else(|| shape(format!("{id}: no Metadata.BuildProperties.Binary")))?;
    let mut routes = Vec::new();
    let mut queues = Vec::new();
    let mut schedules = Vec::new();
    let mut streams = Vec::new();
    let events = resource
        .get("Properties")
        .and_then(|p| p.get("Events"))
        .and_then(Value::as_mapping);
    for (_, event) in events.into_iter().flatten() {
        let props = event.get("Properties").unwrap_or(&Value::Null);
        match event.get("Type").and_then(Value::as_str) {
            Some("HttpApi") => routes.push(RouteDef {
                method: text(props, "Method")?.to_ascii_uppercase(),
                path: text(props, "Path")?,
                public: props
                    .get("Auth")
                    .and_then(|a| a.get("Authorizer"))
                    .and_then(Value::as_str)
                    == Some("NONE"),
            }),
            Some("Schedule") | Some("ScheduleV2") => schedules
                .push(text(props, "Schedule").or_else(|_| text(props, "ScheduleExpression"))?),
            Some("SQS") => {
                let queue = props
                    .get("Queue")
                    .ok_or_else(|| shape(format!("{id}: SQS event without Queue")))?;
                queues.push(get_att_target(queue)?);
            }
            Some("DynamoDB") => {
                let stream = props
                    .get("Stream")
                    .ok_or_else(|| shape(format!("{id}: DynamoDB event without Stream")))?;
                let filters = props
                    .get("FilterCriteria")
                    .map(|f| list(f, "Filters"))
                    .unwrap_or_default()
                    .iter()
                    .map(|f| {
                        serde_json::from_str(&text(f, "Pattern")?)
                            .map_err(|e| shape(format!("{id}: a filter pattern is not JSON: {e}")))
                    })
                    .collect::<Result<_, _>>()?;
                streams.push(StreamSourceDef {
                    table: get_att_target(stream)?,
                    batch_size: text(props, "BatchSize")
                        .ok()
                        .and_then(|b| b.parse().ok())
                        .unwrap_or(100),
                    filters,
                });
            }
            _ => {}
        }
    }
    Ok(FunctionDef {
        logical_id: id.to_string(),
        binary,
        routes,
        queues,
        schedules,
        streams,
    })
}

/// The logical id of the HTTP API's default authorizer function.
fn default_authorizer(props: &Value) -> Option<String> {
    let auth = props.get("Auth")?;
    let name = auth.get("DefaultAuthorizer")?.as_str()?;
    let arn = auth.get("Authorizers")?.get(name)?.get("FunctionArn")?;
    get_att_target(arn).ok()
}

/// The logical id in `!GetAtt Id.Arn` or `{"Fn::GetAtt": [Id, Arn]}`.
fn get_att_target(v: &Value) -> Result<String, TemplateError> {
    let bad = || shape("expected a GetAtt of a resource's Arn or StreamArn");
    match v {
        Value::Tagged(t) if t.tag == "!GetAtt" => match &t.value {
            Value::String(s) => s
                .strip_suffix(".Arn")
                .or_else(|| s.strip_suffix(".StreamArn"))
                .map(str::to_string)
                .ok_or_else(bad),
            Value::Sequence(parts) => parts
                .first()
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(bad),
            _ => Err(bad()),
        },
        Value::Mapping(m) => m
            .get("Fn::GetAtt")
            .and_then(Value::as_sequence)
            .and_then(|parts| parts.first())
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_repository_template() {
        let t = Template::load(&default_path()).unwrap();
        let table = t.table("PaymentsTable").unwrap();
        assert_eq!(table.key_schema.len(), 2);
        assert_eq!(table.ttl_attribute.as_deref(), Some("purge_at"));
        let main = t.queue("TopUpQueue").unwrap();
        assert_eq!(main.redrive, Some(("TopUpDeadLetterQueue".into(), 60)));
        assert!(t.queue("TopUpDeadLetterQueue").unwrap().redrive.is_none());
        assert_eq!(t.authorizer.as_deref(), Some("authorizer"));
        let worker = t
            .functions
            .iter()
            .find(|f| f.binary == "worker-casino-topup")
            .unwrap();
        assert_eq!(worker.queues, ["TopUpQueue"]);
        let hook = t
            .functions
            .iter()
            .find(|f| f.binary == "webhook-paygram")
            .unwrap();
        assert_eq!(
            hook.routes,
            [RouteDef {
                method: "POST".into(),
                path: "/webhooks/paygram/{secret}".into(),
                public: true
            }]
        );
    }

    #[test]
    fn long_form_get_att_is_understood() {
        let t = Template::parse(
            r#"
Resources:
  Q:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 30
      RedrivePolicy:
        deadLetterTargetArn: {"Fn::GetAtt": [D, Arn]}
        maxReceiveCount: 3
  D:
    Type: AWS::SQS::Queue
"#,
        )
        .unwrap();
        assert_eq!(t.queue("Q").unwrap().redrive, Some(("D".into(), 3)));
        assert_eq!(t.queue("Q").unwrap().attributes["VisibilityTimeout"], "30");
    }
}

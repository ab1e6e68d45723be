//! paygate's local AWS stack, with no Docker and no AWS account.
//!
//! DynamoDB Local and moto (SQS, Secrets Manager) are installed and started
//! by `infra/local/stack.sh`; this crate creates in them what
//! `template.yaml` declares (the table, the queues) plus sample secrets,
//! and gives tests clients that reach them and tables of their own.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    LocalSecondaryIndex, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

pub mod api_gateway;
pub mod iam;
pub mod streams;
pub mod template;

/// The YAML reader template.yaml is read with, for tests that read more of it.
pub use serde_yaml;
pub use template::{QueueDef, TableDef, Template};

/// Where the local services listen unless the environment says otherwise.
pub const DEFAULT_DYNAMODB: &str = "http://127.0.0.1:8000";
pub const DEFAULT_MOTO: &str = "http://127.0.0.1:4566";
pub const REGION: &str = "us-east-1";

/// Local names of the template's resources.
pub const TABLE: &str = "paygate-local";
pub const TOPUP_QUEUE: &str = "paygate-topups";
pub const TOPUP_DLQ: &str = "paygate-topups-dlq";
pub const EVENTS_QUEUE: &str = "paygate-events";
pub const EVENTS_DLQ: &str = "paygate-events-dlq";

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    #[error("{service}: {message}")]
    Aws {
        service: &'static str,
        message: String,
    },
    #[error("{0}")]
    Other(String),
}

fn dynamo_err<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_sdk_dynamodb::error::SdkError<E, R>,
) -> StackError {
    StackError::Aws {
        service: "dynamodb",
        message: aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string(),
    }
}

fn sqs_err<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_sdk_sqs::error::SdkError<E, R>,
) -> StackError {
    StackError::Aws {
        service: "sqs",
        message: aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
    }
}

fn secrets_err<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_sdk_secretsmanager::error::SdkError<E, R>,
) -> StackError {
    StackError::Aws {
        service: "secretsmanager",
        message: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
    }
}

/// Clients for the local stack.
#[derive(Debug, Clone)]
pub struct LocalStack {
    pub config: aws_config::SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

fn endpoint(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

impl LocalStack {
    /// Clients with dummy credentials, pointed at the endpoints in
    /// `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SQS` and
    /// `AWS_ENDPOINT_URL_SECRETS_MANAGER`, or at the default local ports.
    pub async fn connect() -> LocalStack {
        LocalStack::signing_as(
            "local",
            &LocalStack::dynamodb_url(),
            &LocalStack::sqs_url(),
            &LocalStack::secrets_url(),
        )
        .await
    }

    /// Clients whose calls are signed by `function` (its access key id) and
    /// sent to `endpoint`: the IAM check ([`iam::Guard`]) in front of the
    /// stack, as that function's own clients.
    pub async fn as_function(function: &str, endpoint: &str) -> LocalStack {
        LocalStack::signing_as(function, endpoint, endpoint, endpoint).await
    }

    /// DynamoDB Local's URL (`AWS_ENDPOINT_URL_DYNAMODB` or the default).
    pub fn dynamodb_url() -> String {
        endpoint("AWS_ENDPOINT_URL_DYNAMODB", DEFAULT_DYNAMODB)
    }

    /// moto's SQS URL (`AWS_ENDPOINT_URL_SQS` or the default).
    pub fn sqs_url() -> String {
        endpoint("AWS_ENDPOINT_URL_SQS", DEFAULT_MOTO)
    }

    /// moto's Secrets Manager URL.
    pub fn secrets_url() -> String {
        endpoint("AWS_ENDPOINT_URL_SECRETS_MANAGER", DEFAULT_MOTO)
    }

    async fn signing_as(key: &str, dynamodb: &str, sqs: &str, secrets: &str) -> LocalStack {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                key,
                "local",
                None,
                None,
                "paygate-local",
            ))
            .load()
            .await;
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&config)
                .endpoint_url(dynamodb)
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&config)
                .endpoint_url(sqs)
                .build(),
        );
        let secrets = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(&config)
                .endpoint_url(secrets)
                .build(),
        );
        LocalStack {
            config,
            dynamodb,
            sqs,
            secrets,
        }
    }

    /// Creates the table `name` as `def` describes, with TTL; an existing
    /// table is left as it is.
    pub async fn create_table(&self, name: &str, def: &TableDef) -> Result<(), StackError> {
        let attributes = def
            .attributes
            .iter()
            .map(|(name, ty)| {
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::from(ty.as_str()))
                    .build()
                    .map_err(|e| StackError::Other(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let keys = |schema: &[template::KeyElement]| {
            schema
                .iter()
                .map(|k| {
                    KeySchemaElement::builder()
                        .attribute_name(&k.attribute)
                        .key_type(KeyType::from(k.key_type.as_str()))
                        .build()
                        .map_err(|e| StackError::Other(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let projection = |i: &template::IndexDef| {
            Projection::builder()
                .projection_type(ProjectionType::from(i.projection.as_str()))
                .set_non_key_attributes(
                    (!i.non_key_attributes.is_empty()).then(|| i.non_key_attributes.clone()),
                )
                .build()
        };
        let mut request = self
            .dynamodb
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(attributes))
            .set_key_schema(Some(keys(&def.key_schema)?));
        if let Some(view) = &def.stream_view_type {
            request = request.stream_specification(
                aws_sdk_dynamodb::types::StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::from(view.as_str()))
                    .build()
                    .map_err(|e| StackError::Other(e.to_string()))?,
            );
        }
        for gsi in &def.global_indexes {
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(&gsi.name)
                    .set_key_schema(Some(keys(&gsi.key_schema)?))
                    .projection(projection(gsi))
                    .build()
                    .map_err(|e| StackError::Other(e.to_string()))?,
            );
        }
        for lsi in &def.local_indexes {
            request = request.local_secondary_indexes(
                LocalSecondaryIndex::builder()
                    .index_name(&lsi.name)
                    .set_key_schema(Some(keys(&lsi.key_schema)?))
                    .projection(projection(lsi))
                    .build()
                    .map_err(|e| StackError::Other(e.to_string()))?,
            );
        }
        match request.send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) =>
            {
                return Ok(())
            }
            Err(e) => return Err(dynamo_err(e)),
        }
        if let Some(attr) = &def.ttl_attribute {
            self.dynamodb
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(attr)
                        .enabled(true)
                        .build()
                        .map_err(|e| StackError::Other(e.to_string()))?,
                )
                .send()
                .await
                .map_err(dynamo_err)?;
        }
        Ok(())
    }

    /// A new table with a unique name, defined like the template's
    /// `PaymentsTable`: each test gets its own, so tests can count items.
    pub async fn fresh_table(&self) -> Result<String, StackError> {
        let template = Template::load(&template::default_path())?;
        let def = template
            .table("PaymentsTable")
            .ok_or_else(|| StackError::Other("template has no PaymentsTable".into()))?;
        let name = format!("test-{}", ulid::Ulid::new().to_string().to_lowercase());
        self.create_table(&name, def).await?;
        Ok(name)
    }

    /// Creates the template's queues under `names` (logical id to local
    /// name), dead-letter queues first; returns logical id to queue URL.
    pub async fn create_queues(
        &self,
        template: &Template,
        names: &BTreeMap<String, String>,
    ) -> Result<HashMap<String, String>, StackError> {
        let mut urls = HashMap::new();
        let mut arns = HashMap::new();
        // Dead-letter queues (targets of a redrive) go first.
        let mut order: Vec<&QueueDef> = template.queues.iter().collect();
        order.sort_by_key(|q| q.redrive.is_some());
        for q in order {
            let name = names
                .get(&q.logical_id)
                .ok_or_else(|| StackError::Other(format!("no local name for {}", q.logical_id)))?;
            let mut request = self.sqs.create_queue().queue_name(name);
            for (k, v) in &q.attributes {
                request = request.attributes(QueueAttributeName::from(k.as_str()), v);
            }
            if let Some((dlq, max)) = &q.redrive {
                let arn: &String = arns.get(dlq).ok_or_else(|| {
                    StackError::Other(format!("{}: dead-letter queue {dlq} unknown", q.logical_id))
                })?;
                let policy = serde_json::json!({
                    "deadLetterTargetArn": arn,
                    "maxReceiveCount": max,
                });
                request = request.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
            }
            let url = request
                .send()
                .await
                .map_err(sqs_err)?
                .queue_url
                .ok_or_else(|| StackError::Other("create_queue returned no URL".into()))?;
            let arn = self
                .sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .map_err(sqs_err)?
                .attributes
                .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
                .ok_or_else(|| StackError::Other("queue has no ARN".into()))?;
            arns.insert(q.logical_id.clone(), arn);
            urls.insert(q.logical_id.clone(), url);
        }
        Ok(urls)
    }

    /// Creates or updates one secret.
    pub async fn put_secret(&self, name: &str, value: &str) -> Result<(), StackError> {
        match self
            .secrets
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_exists_exception()) =>
            {
                self.secrets
                    .put_secret_value()
                    .secret_id(name)
                    .secret_string(value)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(secrets_err)
            }
            Err(e) => Err(secrets_err(e)),
        }
    }

    /// Every `*.json` file of `dir` as a secret named `paygate/<file stem>`.
    pub async fn put_secrets_from(&self, dir: &Path) -> Result<Vec<String>, StackError> {
        let mut names = Vec::new();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| StackError::Other(format!("{}: {e}", dir.display())))?;
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let value = std::fs::read_to_string(&path)
                .map_err(|e| StackError::Other(format!("{}: {e}", path.display())))?;
            serde_json::from_str::<serde_json::Value>(&value)
                .map_err(|e| StackError::Other(format!("{}: not JSON: {e}", path.display())))?;
            let name = format!("paygate/{stem}");
            self.put_secret(&name, &value).await?;
            names.push(name);
        }
        Ok(names)
    }
}

/// What [`bootstrap`] created.
#[derive(Debug, Clone)]
pub struct Bootstrapped {
    pub table: String,
    pub topup_queue_url: String,
    pub topup_dlq_url: String,
    pub events_queue_url: String,
    pub secrets: Vec<String>,
}

/// Creates the template's table and queues under their local names, and the
/// sample secrets of `secrets_dir`. Safe to run again.
pub async fn bootstrap(
    stack: &LocalStack,
    template: &Template,
    secrets_dir: &Path,
) -> Result<Bootstrapped, StackError> {
    let table = template
        .table("PaymentsTable")
        .ok_or_else(|| StackError::Other("template has no PaymentsTable".into()))?;
    stack.create_table(TABLE, table).await?;
    let names = BTreeMap::from([
        ("TopUpQueue".to_string(), TOPUP_QUEUE.to_string()),
        ("TopUpDeadLetterQueue".to_string(), TOPUP_DLQ.to_string()),
        ("EventsQueue".to_string(), EVENTS_QUEUE.to_string()),
        ("EventsDeadLetterQueue".to_string(), EVENTS_DLQ.to_string()),
    ]);
    let urls = stack.create_queues(template, &names).await?;
    let secrets = stack.put_secrets_from(secrets_dir).await?;
    let url = |id: &str| {
        urls.get(id)
            .cloned()
            .ok_or_else(|| StackError::Other(format!("{id} was not created")))
    };
    Ok(Bootstrapped {
        table: TABLE.to_string(),
        topup_queue_url: url("TopUpQueue")?,
        topup_dlq_url: url("TopUpDeadLetterQueue")?,
        events_queue_url: url("EventsQueue")?,
        secrets,
    })
}

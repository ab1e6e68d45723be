//! The local stack is built from template.yaml: bootstrap it and compare what
//! DynamoDB Local and moto report with the template, read here on its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use aws_sdk_sqs::types::QueueAttributeName;
use devstack::{template::default_path, LocalStack, Template};
use serde_yaml::Value;

fn raw_template() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(default_path()).unwrap()).unwrap()
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// (index name, [(attribute, key type)], projection).
type IndexShape = (String, Vec<(String, String)>, String);

fn described_shape(
    name: Option<&str>,
    keys: &[aws_sdk_dynamodb::types::KeySchemaElement],
    projection: Option<&aws_sdk_dynamodb::types::Projection>,
) -> IndexShape {
    (
        name.unwrap().to_string(),
        keys.iter()
            .map(|k| {
                (
                    k.attribute_name().to_string(),
                    k.key_type().as_str().to_string(),
                )
            })
            .collect(),
        projection
            .unwrap()
            .projection_type()
            .unwrap()
            .as_str()
            .to_string(),
    )
}

/// The indexes of the raw YAML.
fn yaml_indexes(props: &Value, field: &str) -> BTreeSet<IndexShape> {
    props[field]
        .as_sequence()
        .map(|seq| {
            seq.iter()
                .map(|i| {
                    let keys = i["KeySchema"]
                        .as_sequence()
                        .unwrap()
                        .iter()
                        .map(|k| (s(&k["AttributeName"]), s(&k["KeyType"])))
                        .collect();
                    (
                        s(&i["IndexName"]),
                        keys,
                        s(&i["Projection"]["ProjectionType"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn bootstrap_creates_the_table_the_template_declares() {
    let stack = LocalStack::connect().await;
    let table = stack.fresh_table().await.unwrap();
    let raw = raw_template();
    let props = &raw["Resources"]["PaymentsTable"]["Properties"];

    let described = stack
        .dynamodb
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();

    let attrs: BTreeMap<String, String> = described
        .attribute_definitions()
        .iter()
        .map(|a| {
            (
                a.attribute_name().to_string(),
                a.attribute_type().as_str().to_string(),
            )
        })
        .collect();
    let yaml_attrs: BTreeMap<String, String> = props["AttributeDefinitions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| (s(&a["AttributeName"]), s(&a["AttributeType"])))
        .collect();
    assert_eq!(attrs, yaml_attrs);

    let keys: Vec<(String, String)> = described
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_string(),
                k.key_type().as_str().to_string(),
            )
        })
        .collect();
    let yaml_keys: Vec<(String, String)> = props["KeySchema"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| (s(&k["AttributeName"]), s(&k["KeyType"])))
        .collect();
    assert_eq!(keys, yaml_keys);

    let gsis: BTreeSet<_> = described
        .global_secondary_indexes()
        .iter()
        .map(|i| described_shape(i.index_name(), i.key_schema(), i.projection()))
        .collect();
    assert_eq!(gsis, yaml_indexes(props, "GlobalSecondaryIndexes"));

    let lsis: BTreeSet<_> = described
        .local_secondary_indexes()
        .iter()
        .map(|i| described_shape(i.index_name(), i.key_schema(), i.projection()))
        .collect();
    assert_eq!(lsis, yaml_indexes(props, "LocalSecondaryIndexes"));

    let ttl = stack
        .dynamodb
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .unwrap()
        .time_to_live_description
        .unwrap();
    assert_eq!(
        ttl.attribute_name(),
        Some(s(&props["TimeToLiveSpecification"]["AttributeName"]).as_str())
    );
    assert_eq!(
        ttl.time_to_live_status().map(|s| s.as_str()),
        Some("ENABLED")
    );
}

#[tokio::test]
async fn bootstrap_creates_the_queues_the_template_declares() {
    let stack = LocalStack::connect().await;
    let template = Template::load(&default_path()).unwrap();
    let suffix = ulid::Ulid::new().to_string().to_lowercase();
    let names: BTreeMap<String, String> = template
        .queues
        .iter()
        .map(|q| {
            (
                q.logical_id.clone(),
                format!("{}-{suffix}", q.logical_id.to_lowercase()),
            )
        })
        .collect();
    let urls = stack.create_queues(&template, &names).await.unwrap();
    let raw = raw_template();
    let resources = raw["Resources"].as_mapping().unwrap();
    let mut checked = 0;
    for (id, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::SQS::Queue") {
            continue;
        }
        let id = id.as_str().unwrap();
        let props = &resource["Properties"];
        let attrs = stack
            .sqs
            .get_queue_attributes()
            .queue_url(&urls[id])
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap();
        for name in ["VisibilityTimeout", "MessageRetentionPeriod"] {
            if !props[name].is_null() {
                assert_eq!(
                    attrs.get(&QueueAttributeName::from(name)),
                    Some(&s(&props[name])),
                    "{id}.{name}"
                );
            }
        }
        let redrive = &props["RedrivePolicy"];
        if redrive.is_null() {
            assert!(
                !attrs.contains_key(&QueueAttributeName::RedrivePolicy),
                "{id}"
            );
        } else {
            let policy: serde_json::Value =
                serde_json::from_str(&attrs[&QueueAttributeName::RedrivePolicy]).unwrap();
            assert_eq!(
                policy["maxReceiveCount"].to_string(),
                s(&redrive["maxReceiveCount"])
            );
            let Value::Tagged(target) = &redrive["deadLetterTargetArn"] else {
                panic!("{id}: expected !GetAtt")
            };
            let dlq = s(&target.value).trim_end_matches(".Arn").to_string();
            let dlq_arn = stack
                .sqs
                .get_queue_attributes()
                .queue_url(&urls[&dlq])
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .unwrap()
                .attributes
                .unwrap()[&QueueAttributeName::QueueArn]
                .clone();
            assert_eq!(policy["deadLetterTargetArn"], dlq_arn, "{id}");
        }
        checked += 1;
    }
    assert_eq!(
        checked, 2,
        "the template declares the top-up queue and its DLQ"
    );
}

#[test]
fn sam_validate_lint_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let sam = root.join(".local/venv/bin/sam");
    assert!(
        sam.exists(),
        "aws-sam-cli is not installed in .local/venv: run `make test` (it installs it)"
    );
    let out = std::process::Command::new(sam)
        .args(["validate", "--lint", "--region", "us-east-1", "--template"])
        .arg(root.join("template.yaml"))
        .env("SAM_CLI_TELEMETRY", "0")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sam validate --lint failed:\n{text}");
    assert!(text.contains("is a valid SAM Template"), "{text}");
}

/// Every function crate is a template resource built from its own binary,
/// with a sample event, and the other way round.
#[test]
fn functions_template_and_events_are_in_step() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let template = Template::load(&default_path()).unwrap();
    let mut in_template: Vec<String> = template
        .functions
        .iter()
        .map(|f| f.binary.clone())
        .collect();
    in_template.sort();
    let mut crates: Vec<String> = std::fs::read_dir(root.join("functions"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    crates.sort();
    assert_eq!(in_template, crates, "functions/ and template.yaml disagree");
    for name in &crates {
        let event = root.join("events").join(format!("{name}.json"));
        assert!(event.exists(), "no sample event for {name}");
        let text =
            std::fs::read_to_string(root.join("functions").join(name).join("src/main.rs")).unwrap();
        assert!(
            text.lines().count() < 40,
            "{name}'s main.rs should stay thin; handler logic belongs in shared"
        );
    }
    // Every function that is not the authorizer or a queue worker has a route.
    for f in &template.functions {
        let triggered = !f.routes.is_empty()
            || !f.queues.is_empty()
            || !f.schedules.is_empty()
            || template.authorizer.as_deref() == Some(&f.binary);
        assert!(triggered, "{} has no trigger", f.binary);
    }
}

/// What operating paygate needs from the template: every function's logs
/// kept for a bounded time, every route throttled, and an alarm on each
/// metric that means money or callbacks are going wrong, each one a metric
/// the code really emits.
#[test]
fn logs_throttling_and_alarms_are_declared() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let raw = raw_template();
    let resources = raw["Resources"].as_mapping().unwrap();
    let of_type = |t: &str| -> Vec<(String, Value)> {
        resources
            .iter()
            .filter(|(_, r)| r["Type"].as_str() == Some(t))
            .map(|(k, r)| (s(k), r.clone()))
            .collect()
    };

    let log_groups: BTreeSet<String> = of_type("AWS::Logs::LogGroup")
        .iter()
        .map(|(_, r)| {
            assert!(
                !r["Properties"]["RetentionInDays"].is_null(),
                "a log group without retention: {r:?}"
            );
            // `!Sub /aws/lambda/${Function}`
            let name = format!("{:?}", r["Properties"]["LogGroupName"]);
            let start = name.find("${").expect("named after its function") + 2;
            let end = name[start..].find('}').unwrap() + start;
            name[start..end].to_string()
        })
        .collect();
    let functions: BTreeSet<String> = of_type("AWS::Serverless::Function")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        log_groups, functions,
        "every function has its own log group"
    );

    let api = &of_type("AWS::Serverless::HttpApi")[0].1;
    let throttle = &api["Properties"]["DefaultRouteSettings"];
    assert!(!throttle["ThrottlingRateLimit"].is_null());
    assert!(!throttle["ThrottlingBurstLimit"].is_null());

    let telemetry = std::fs::read_to_string(root.join("shared/src/telemetry.rs")).unwrap();
    let alarmed: BTreeSet<String> = of_type("AWS::CloudWatch::Alarm")
        .iter()
        .map(|(name, r)| {
            let p = &r["Properties"];
            assert!(!p["AlarmActions"].is_null(), "{name} notifies no one");
            let metric = s(&p["MetricName"]);
            if s(&p["Namespace"]) == "paygate" {
                assert!(
                    telemetry.contains(&format!("(\"{metric}\", \"Count\"")),
                    "{name} watches {metric}, which nothing emits"
                );
                assert!(
                    p["Dimensions"].is_null(),
                    "{name}: the code publishes it without dimensions"
                );
            }
            metric
        })
        .collect();
    for metric in [
        "ApproximateNumberOfMessagesVisible",
        "WebhooksRejected",
        "TopUpFailures",
        "TopUpsUnknown",
        "RefundsUnknown",
        "ProviderErrors",
        "ReconcileDifferences",
    ] {
        assert!(alarmed.contains(metric), "no alarm on {metric}");
    }
}

/// openapi.yaml describes exactly the routes template.yaml deploys, and
/// says which need no API key exactly where the template opens them.
#[test]
fn openapi_and_template_routes_are_the_same() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let spec: Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("openapi.yaml")).unwrap()).unwrap();
    assert_eq!(s(&spec["openapi"]), "3.1.0");
    let template = Template::load(&default_path()).unwrap();
    let deployed: BTreeMap<(String, String), bool> = template
        .functions
        .iter()
        .flat_map(|f| f.routes.iter())
        .map(|r| ((r.method.to_uppercase(), r.path.clone()), r.public))
        .collect();
    let default_secured = spec["security"]
        .as_sequence()
        .is_some_and(|s| !s.is_empty());
    let mut documented = BTreeMap::new();
    for (path, item) in spec["paths"].as_mapping().unwrap() {
        for (method, op) in item.as_mapping().unwrap() {
            let method = s(method);
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let public = match op.get("security") {
                Some(sec) => sec.as_sequence().is_some_and(|s| s.is_empty()),
                None => !default_secured,
            };
            documented.insert((method.to_uppercase(), s(path)), public);
        }
    }
    let only_deployed: Vec<_> = deployed
        .keys()
        .filter(|k| !documented.contains_key(*k))
        .collect();
    let only_documented: Vec<_> = documented
        .keys()
        .filter(|k| !deployed.contains_key(*k))
        .collect();
    assert!(
        only_deployed.is_empty(),
        "routes missing from openapi.yaml: {only_deployed:?}"
    );
    assert!(
        only_documented.is_empty(),
        "routes openapi.yaml has but template.yaml does not: {only_documented:?}"
    );
    for (route, public) in &deployed {
        assert_eq!(
            documented[route], *public,
            "{route:?}: the template and the spec disagree on whether it needs an API key"
        );
    }
}

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
        checked, 4,
        "the template declares the top-up and events queues and their DLQs"
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
        .filter(|(_, r)| format!("{:?}", r["Properties"]["LogGroupName"]).contains("/aws/lambda/"))
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
    // Every webhook route has a budget of its own.
    let routes = &api["Properties"]["RouteSettings"];
    let mut webhooks = 0;
    let mut payer_routes = 0;
    for (_, f) in of_type("AWS::Serverless::Function") {
        for (_, e) in f["Properties"]["Events"].as_mapping().into_iter().flatten() {
            let path = e["Properties"]["Path"].as_str().unwrap_or_default();
            if path.is_empty() {
                continue;
            }
            let key = format!("{} {path}", s(&e["Properties"]["Method"]).to_uppercase());
            let own = format!("{:?}", routes[key.as_str()]);
            // The payers' pages poll; their budget is their own too, so
            // open pages never crowd out creates and refunds.
            if path.starts_with("/pay/") {
                payer_routes += 1;
                assert!(
                    own.contains("PayerRateLimit") && own.contains("PayerBurstLimit"),
                    "{key}: {own}"
                );
            }
            if !path.starts_with("/webhooks/") {
                continue;
            }
            webhooks += 1;
            assert!(
                own.contains("WebhookRateLimit") && own.contains("WebhookBurstLimit"),
                "{key}: {own}"
            );
        }
    }
    assert!(webhooks >= 7, "{webhooks}");
    assert_eq!(payer_routes, 2, "GET /pay/{{token}} and its status");
    // Access logs name the route, never the path (a secret rides in one).
    let access = &api["Properties"]["AccessLogSettings"];
    let format = s(&access["Format"]);
    for field in [
        "$context.routeKey",
        "$context.requestId",
        "$context.status",
        "$context.responseLatency",
        "$context.authorizer.error",
    ] {
        assert!(format.contains(field), "access log without {field}");
    }
    assert!(!format.contains("$context.path") && !format.contains("$context.rawPath"));
    let access_logs = format!("{:?}", access["DestinationArn"]);
    assert!(access_logs.contains("HttpApiAccessLogs"), "{access_logs}");
    assert!(!raw["Resources"]["HttpApiAccessLogs"]["Properties"]["RetentionInDays"].is_null());

    let telemetry = std::fs::read_to_string(root.join("shared/src/telemetry.rs")).unwrap();
    // (namespace, metric) of every alarm, plain or metric math, and the
    // dimension values (functions, queues) each metric is watched for.
    let mut alarmed: BTreeSet<(String, String)> = BTreeSet::new();
    let mut watched: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, r) in of_type("AWS::CloudWatch::Alarm") {
        let p = &r["Properties"];
        assert!(!p["AlarmActions"].is_null(), "{name} notifies no one");
        let stats: Vec<Value> = match p["Metrics"].as_sequence() {
            Some(queries) => queries
                .iter()
                .filter(|q| !q["MetricStat"].is_null())
                .map(|q| q["MetricStat"]["Metric"].clone())
                .collect(),
            None => vec![p.clone()],
        };
        assert!(!stats.is_empty(), "{name} watches nothing");
        for m in stats {
            let (namespace, metric) = (s(&m["Namespace"]), s(&m["MetricName"]));
            if namespace == "paygate" {
                assert!(
                    telemetry.contains(&format!("\"{metric}\",")),
                    "{name} watches {metric}, which nothing emits"
                );
                assert!(
                    m["Dimensions"].is_null(),
                    "{name}: the code publishes it without dimensions"
                );
            }
            for d in m["Dimensions"].as_sequence().into_iter().flatten() {
                watched
                    .entry(metric.clone())
                    .or_default()
                    .insert(format!("{:?}", d["Value"]));
            }
            alarmed.insert((namespace, metric));
        }
    }
    for (namespace, metric) in [
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
        ("AWS/ApiGateway", "5xx"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        ("paygate", "WebhooksRejected"),
        ("paygate", "TopUpFailures"),
        ("paygate", "TopUpsUnknown"),
        ("paygate", "RefundsUnknown"),
        ("paygate", "ProviderErrors"),
        ("paygate", "ReconcileDifferences"),
        ("paygate", "ReconcileChecked"),
        ("paygate", "ReconcileBehindSeconds"),
        ("paygate", "PaymentsNeedingReview"),
        ("paygate", "PaymentsInReview"),
        ("paygate", "PaymentsStale"),
        ("paygate", "TopUpsGivenUp"),
        ("paygate", "TopUpsUnknownNow"),
        ("paygate", "EventDeliveriesFailed"),
    ] {
        assert!(
            alarmed.contains(&(namespace.to_string(), metric.to_string())),
            "no alarm on {namespace} {metric}"
        );
    }
    // Errors and throttles of the worker, every webhook and the
    // authorizer; errors of both scheduled jobs.
    let functions_with = |metric: &str| -> BTreeSet<String> {
        watched
            .get(metric)
            .into_iter()
            .flatten()
            .filter_map(|v| {
                functions
                    .iter()
                    .find(|f| v.contains(&format!("\"{f}\"")))
                    .cloned()
            })
            .collect()
    };
    let mut must: BTreeSet<String> = functions
        .iter()
        .filter(|f| f.starts_with("Webhook") || f.starts_with("Worker"))
        .cloned()
        .collect();
    must.insert("AuthorizerFunction".into());
    assert!(must.len() >= 8, "{must:?}");
    let throttled = functions_with("Throttles");
    assert!(
        must.is_subset(&throttled),
        "throttles unwatched: {must:?} vs {throttled:?}"
    );
    must.insert("JobSweepFunction".into());
    must.insert("JobReconcileFunction".into());
    let errored = functions_with("Errors");
    assert!(
        must.is_subset(&errored),
        "errors unwatched: {must:?} vs {errored:?}"
    );

    let alarm_on = |metric: &str| {
        of_type("AWS::CloudWatch::Alarm")
            .into_iter()
            .find(|(_, r)| r["Properties"]["MetricName"].as_str() == Some(metric))
            .map(|(_, r)| r["Properties"].clone())
            .unwrap()
    };
    // Reconcile not running is itself an alarm: no data breaches it.
    assert_eq!(
        s(&alarm_on("ReconcileChecked")["TreatMissingData"]),
        "breaching"
    );
    // The gauges keep their state between sweeps: ALARM while work waits.
    for gauge in [
        "TopUpsGivenUp",
        "TopUpsUnknownNow",
        "PaymentsInReview",
        "PaymentsStale",
    ] {
        assert_eq!(
            s(&alarm_on(gauge)["TreatMissingData"]),
            "missing",
            "{gauge}"
        );
        assert_eq!(s(&alarm_on(gauge)["Statistic"]), "Maximum", "{gauge}");
    }
}

/// Alarms reach a person: the topic is encrypted with a key of our own
/// whose policy lets CloudWatch publish (the AWS-managed SNS key cannot),
/// and an e-mail address is required, not an empty default.
#[test]
fn alarms_reach_a_person() {
    let raw = raw_template();
    let resources = raw["Resources"].as_mapping().unwrap();
    let topic = &raw["Resources"]["AlarmTopic"]["Properties"];
    let key = format!("{:?}", topic["KmsMasterKeyId"]);
    assert!(!key.contains("alias/aws/sns"), "{key}");
    assert!(
        key.contains("AlarmKey"),
        "the topic uses the stack's key: {key}"
    );
    let policy = format!(
        "{:?}",
        raw["Resources"]["AlarmKey"]["Properties"]["KeyPolicy"]
    );
    assert!(policy.contains("cloudwatch.amazonaws.com"), "{policy}");
    assert!(policy.contains("kms:GenerateDataKey"), "{policy}");
    assert!(policy.contains("kms:Decrypt"), "{policy}");
    let email = &raw["Parameters"]["AlarmEmail"];
    assert!(email["Default"].is_null(), "AlarmEmail must be required");
    assert!(!email["AllowedPattern"].is_null());
    let subscription = format!("{:?}", topic["Subscription"]);
    assert!(
        subscription.contains("AlarmEmail") && !subscription.contains("If"),
        "{subscription}"
    );
    // Every alarm notifies that topic, when it fires and when it clears.
    for (name, r) in resources {
        if r["Type"].as_str() != Some("AWS::CloudWatch::Alarm") {
            continue;
        }
        for field in ["AlarmActions", "OKActions"] {
            let actions = format!("{:?}", r["Properties"][field]);
            assert!(
                actions.contains("AlarmTopic"),
                "{name:?} {field}: {actions}"
            );
        }
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

/// Each function reads only the secrets it uses: the API keys only the
/// authorizer, the casino's credentials only the functions that call the
/// casino, a webhook one secret (its own provider's: which one, the
/// provider registry says in shared's provider_grants test); none reads
/// `paygate/*`. The providers' secrets are those the webhooks read, so a
/// new provider needs no edit here.
#[test]
fn each_function_reads_only_its_own_secrets() {
    let raw = raw_template();
    let readable = |function: &str| -> BTreeSet<String> {
        let policies = format!("{:?}", raw["Resources"][function]["Properties"]["Policies"]);
        assert!(
            !policies.contains("secret:paygate/*"),
            "{function} reads every secret"
        );
        let mut names = BTreeSet::new();
        let mut rest = policies.as_str();
        while let Some(at) = rest.find("secret:paygate/") {
            rest = &rest[at + "secret:paygate/".len()..];
            let end = rest.find("-*").expect("a secret ARN ends in -*");
            names.insert(rest[..end].to_string());
        }
        names
    };
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    let webhooks: Vec<String> = raw["Resources"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(s)
        .filter(|k| k.starts_with("Webhook") && k.ends_with("Function"))
        .collect();
    assert!(webhooks.len() >= 6, "{webhooks:?}");
    let mut gateways = BTreeSet::new();
    for function in &webhooks {
        let own = readable(function);
        assert_eq!(own.len(), 1, "{function} reads {own:?}, not one secret");
        gateways.extend(own);
    }
    assert_eq!(
        gateways.len(),
        webhooks.len(),
        "two webhooks share a secret"
    );
    assert!(!gateways.contains("casino") && !gateways.contains("api-keys"));
    let mut with_casino = gateways.clone();
    with_casino.insert("casino".to_string());
    assert_eq!(readable("AuthorizerFunction"), set(&["api-keys"]));
    for f in [
        "ApiCreatePaymentFunction",
        "ApiGetPaymentFunction",
        "ApiPayPageFunction",
        "ApiCancelPaymentFunction",
        "ApiRefundPaymentFunction",
        "JobSweepFunction",
        "JobReconcileFunction",
    ] {
        assert_eq!(readable(f), gateways, "{f}");
    }
    assert_eq!(readable("ApiOpsFunction"), with_casino);
    assert_eq!(readable("ApiCasinoUserFunction"), set(&["casino"]));
    assert_eq!(readable("WorkerCasinoTopupFunction"), set(&["casino"]));
    assert_eq!(readable("ApiWalletFunction"), set(&[]));
    assert_eq!(readable("ApiHealthFunction"), set(&[]));
}

/// A revoked API key stops working within a minute: API Gateway's cache of
/// an authorizer answer and the authorizer's cache of the keys, together.
#[test]
fn a_revoked_key_stops_working_within_a_minute() {
    let raw = raw_template();
    let identity = &raw["Resources"]["HttpApi"]["Properties"]["Auth"]["Authorizers"]
        ["ApiKeyAuthorizer"]["Identity"];
    let gateway: u64 = s(&identity["ReauthorizeEvery"]).parse().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let code = std::fs::read_to_string(root.join("shared/src/api/authorizer.rs")).unwrap();
    let line = code
        .lines()
        .find(|l| l.starts_with("pub const KEYS_TTL_SECONDS: u64 = "))
        .expect("the authorizer's key cache is a constant");
    let own: u64 = line
        .trim_start_matches("pub const KEYS_TTL_SECONDS: u64 = ")
        .trim_end_matches(';')
        .parse()
        .unwrap();
    assert!(gateway + own <= 60, "{gateway} s + {own} s");
    let main = std::fs::read_to_string(root.join("functions/authorizer/src/main.rs")).unwrap();
    assert!(main.contains("KEYS_TTL_SECONDS"), "the authorizer uses it");
}

/// Scheduled jobs cannot overlap or be retried into overlapping: one slot
/// each, no automatic retry of a failed run.
#[test]
fn scheduled_jobs_run_one_at_a_time_without_retries() {
    let raw = raw_template();
    for job in ["JobSweepFunction", "JobReconcileFunction"] {
        let p = &raw["Resources"][job]["Properties"];
        // Reserved concurrency only where the operator asks for it (the
        // table's job lease keeps runs apart): none by default.
        let Value::Tagged(reserved) = &p["ReservedConcurrentExecutions"] else {
            panic!("{job}: reserved concurrency is not conditional");
        };
        assert_eq!(reserved.tag, "!If", "{job}");
        assert_eq!(s(&reserved.value[0]), "ReserveJobsConcurrency", "{job}");
        assert_eq!(
            s(&raw["Parameters"]["JobsReservedConcurrency"]["Default"]),
            "0"
        );
        assert_eq!(
            s(&p["EventInvokeConfig"]["MaximumRetryAttempts"]),
            "0",
            "{job}"
        );
        let age: u64 = s(&p["EventInvokeConfig"]["MaximumEventAgeInSeconds"])
            .parse()
            .unwrap();
        let timeout: u64 = s(&p["Timeout"]).parse().unwrap();
        assert!(
            age >= timeout,
            "{job}: a waiting run outlives the running one"
        );
    }
}

/// The callback URLs handed to providers resolve: their origin is the
/// custom domain the stack itself puts on the HTTP API.
#[test]
fn callback_urls_use_the_stacks_own_domain() {
    let raw = raw_template();
    assert!(
        raw["Parameters"]["PublicBaseUrl"].is_null(),
        "no free-text origin"
    );
    for p in ["ApiDomainName", "CertificateArn"] {
        assert!(raw["Parameters"][p]["Default"].is_null(), "{p} is required");
        assert!(
            !raw["Parameters"][p]["AllowedPattern"].is_null(),
            "{p} is checked"
        );
    }
    let domain = &raw["Resources"]["HttpApi"]["Properties"]["Domain"];
    assert!(format!("{:?}", domain["DomainName"]).contains("ApiDomainName"));
    assert!(format!("{:?}", domain["CertificateArn"]).contains("CertificateArn"));
    let base = format!(
        "{:?}",
        raw["Globals"]["Function"]["Environment"]["Variables"]["PAYGATE_PUBLIC_BASE_URL"]
    );
    assert!(base.contains("https://${ApiDomainName}"), "{base}");
}

/// A `pub const NAME: T = value;` of paygate's code, as a number.
fn code_constant(file: &str, name: &str) -> i64 {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let code = std::fs::read_to_string(root.join(file)).unwrap();
    let line = code
        .lines()
        .find(|l| l.starts_with(&format!("pub const {name}: ")))
        .unwrap_or_else(|| panic!("{name} in {file}"));
    line.rsplit('=')
        .next()
        .unwrap()
        .trim()
        .trim_end_matches(';')
        .replace('_', "")
        .parse()
        .unwrap()
}

/// Timeouts nest: every function ends well before reconcile reads the hour
/// its changes were stamped in, API functions end before API Gateway gives up, webhooks
/// answer within about 10 s, and the worker's timeout, its top-up lease,
/// the queue's visibility and its receive count fit together so a live
/// worker never outlives its lease and an hour-long casino outage is
/// waited out. Every function that calls providers bounds them by its
/// invocation's deadline.
#[test]
fn timeouts_nest() {
    let raw = raw_template();
    let global: i64 = s(&raw["Globals"]["Function"]["Timeout"]).parse().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for (name, f) in raw["Resources"].as_mapping().unwrap() {
        if f["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = s(name);
        let timeout: i64 = f["Properties"]["Timeout"].as_i64().unwrap_or(global);
        let events: Vec<&Value> = f["Properties"]["Events"]
            .as_mapping()
            .into_iter()
            .flatten()
            .map(|(_, e)| e)
            .collect();
        let http = events.iter().any(|e| e["Type"].as_str() == Some("HttpApi"));
        let webhook = events.iter().any(|e| {
            e["Properties"]["Path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/webhooks/"))
        });
        // Reconcile reads an hour of changes once every change stamped in
        // it has committed: a function may take its time until its timeout.
        let margin = code_constant("shared/src/api/reconcile.rs", "SETTLE_MARGIN_MINUTES") * 60;
        assert!(
            timeout + 60 <= margin,
            "{name}: {timeout} s, reconcile waits {margin} s after an hour ends"
        );
        if webhook {
            assert!(timeout <= 10, "{name}: {timeout} s");
        } else if http {
            assert!(timeout <= 28, "{name}: {timeout} s, API Gateway waits 30");
        }
        if http || name.starts_with("Worker") {
            let binary = s(&f["Metadata"]["BuildProperties"]["Binary"]);
            let main =
                std::fs::read_to_string(root.join(format!("functions/{binary}/src/main.rs")))
                    .unwrap();
            // The authorizer reads keys only; the console serves its one
            // page and calls nothing.
            let calls_providers = !matches!(binary.as_str(), "authorizer" | "api-console");
            if binary == "api-console" {
                assert!(
                    f["Properties"]["Policies"].is_null(),
                    "api-console calls nothing and has no policy"
                );
            }
            assert!(
                !calls_providers || main.contains("shared::deadline::within"),
                "{binary} does not bound its provider calls by its deadline"
            );
        }
    }

    let worker = &raw["Resources"]["WorkerCasinoTopupFunction"]["Properties"];
    let timeout: i64 = s(&worker["Timeout"]).parse().unwrap();
    let source = &worker["Events"]["TopUps"]["Properties"];
    assert_eq!(s(&source["BatchSize"]), "1");
    assert!(!source["ScalingConfig"]["MaximumConcurrency"].is_null());
    let queue = &raw["Resources"]["TopUpQueue"]["Properties"];
    let visibility: i64 = s(&queue["VisibilityTimeout"]).parse().unwrap();
    let receives: i64 = s(&queue["RedrivePolicy"]["maxReceiveCount"])
        .parse()
        .unwrap();
    let lease = code_constant("shared/src/services.rs", "TOPUP_LEASE_SECONDS");
    let window = code_constant("shared/src/flow/topup.rs", "TOPUP_RETRY_WINDOW_MINUTES") * 60;
    assert!(timeout < lease, "worker {timeout} s, lease {lease} s");
    assert!(
        lease < visibility,
        "lease {lease} s, visibility {visibility} s"
    );
    assert!(visibility >= 6 * timeout, "visibility {visibility} s");
    assert!(
        receives * visibility > window,
        "the DLQ would take it before the retry window ends"
    );
    assert!(window >= 3600, "an hour's outage is waited out");
}

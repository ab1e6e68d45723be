//! A new provider cannot forget a grant: the provider registry walked
//! against template.yaml, its policies evaluated by the local IAM check
//! (devstack::iam). Every function that reads one provider's secret (it
//! builds providers' clients) may read every provider's; a provider's
//! webhook function may read its own secret and no other provider's; every
//! webhook route has its throttle, its log group and its place in the
//! webhook alarm.

use devstack::iam::{Check, Decision, LocalNames, Policies};
use devstack::serde_yaml::Value;
use shared::providers::registry;

fn text() -> String {
    std::fs::read_to_string(devstack::template::default_path()).unwrap()
}

/// Whether `function` may read the deployed secret `paygate/<secret>`
/// (its ARN with Secrets Manager's six random characters).
fn may_read(p: &Policies, function: &str, secret: &str) -> bool {
    let check = Check {
        action: "secretsmanager:GetSecretValue".into(),
        resource: p.names.secret_arn(&format!("paygate/{secret}-Ab12Cd")),
        leading_keys: None,
    };
    p.decide(function, &check) == Decision::Allowed
}

fn webhook(route: &str) -> String {
    format!("webhook-{route}")
}

#[test]
fn a_function_that_reads_one_providers_secret_reads_every_providers() {
    let p = Policies::from_template(&text(), &LocalNames::dev()).unwrap();
    let providers: Vec<_> = registry::all().collect();
    for function in p.functions() {
        let own = providers.iter().find(|d| webhook(d.route) == function);
        let readable: Vec<&str> = providers
            .iter()
            .filter(|d| may_read(&p, function, d.secret))
            .map(|d| d.secret)
            .collect();
        match own {
            Some(d) => assert_eq!(
                readable,
                [d.secret],
                "{function} reads its own provider's secret and no other"
            ),
            None => assert!(
                readable.is_empty() || readable.len() == providers.len(),
                "{function} reads {readable:?}: a function that builds providers' clients \
                 needs every provider's secret in template.yaml"
            ),
        }
    }
    // The functions that build every provider's client: the merchant API's,
    // the payer's page, the operators' and both jobs.
    for function in [
        "api-create-payment",
        "api-get-payment",
        "api-pay-page",
        "api-cancel-payment",
        "api-refund-payment",
        "api-ops",
        "job-sweep",
        "job-reconcile",
    ] {
        for d in &providers {
            assert!(may_read(&p, function, d.secret), "{function}: {}", d.secret);
        }
    }
}

#[test]
fn every_webhook_route_has_its_throttle_log_group_and_alarm() {
    let raw: Value = devstack::serde_yaml::from_str(&text()).unwrap();
    let template = devstack::Template::parse(&text()).unwrap();
    let resources = &raw["Resources"];
    let api = resources
        .as_mapping()
        .unwrap()
        .values()
        .find(|r| r["Type"].as_str() == Some("AWS::Serverless::HttpApi"))
        .expect("the HTTP API");
    let settings = &api["Properties"]["RouteSettings"];
    let alarm = format!("{:?}", resources["WebhookErrorsAlarm"]);
    for d in registry::all() {
        let binary = webhook(d.route);
        let f = template
            .functions
            .iter()
            .find(|f| f.binary == binary)
            .unwrap_or_else(|| panic!("template.yaml has no {binary}"));
        assert!(!f.routes.is_empty(), "{binary} has no route");
        for r in &f.routes {
            let key = format!("{} {}", r.method, r.path);
            let own = &settings[key.as_str()];
            assert!(
                format!("{own:?}").contains("WebhookRateLimit"),
                "RouteSettings has no webhook throttle for {key}"
            );
        }
        let logs = &resources[format!("{}Logs", f.logical_id).as_str()];
        assert_eq!(
            logs["Type"].as_str(),
            Some("AWS::Logs::LogGroup"),
            "{binary}'s log group"
        );
        assert!(
            format!("{:?}", logs["Properties"]["LogGroupName"]).contains(&f.logical_id),
            "{binary}'s log group names it"
        );
        let named = format!("String(\"{}\")", f.logical_id);
        assert!(
            alarm.matches(&named).count() >= 2,
            "WebhookErrorsAlarm watches {binary}'s errors and throttles"
        );
    }
}

//! The sandbox's command line against a running sandbox: faults are added
//! and cleared, calls counted, a trigger plays the provider's event, and a
//! wrong command says what is wrong and exits non-zero.

use std::process::{Command, Output};

async fn cli(url: String, args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_sandbox"))
            .args(&args)
            .env("PAYGATE_SANDBOX_URL", url)
            .output()
            .expect("the sandbox binary runs")
    })
    .await
    .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn token_status(url: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/qpay/v2/auth/token"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_added_counted_and_cleared() {
    let s = sandbox::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = s.url();
    let o = cli(
        url.clone(),
        &[
            "faults",
            "/qpay/v2/auth",
            "fail",
            "--count",
            "2",
            "--status",
            "503",
        ],
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(token_status(&url).await, 503);
    assert_eq!(token_status(&url).await, 503);
    // Without credentials the real answer is 401: the fault is used up.
    assert_eq!(token_status(&url).await, 401);

    let o = cli(url.clone(), &["calls", "/qpay/v2/auth"]).await;
    assert!(o.status.success(), "{}", text(&o));
    let calls: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(calls["calls"], 3);

    cli(url.clone(), &["faults", "/qpay", "fail", "--count", "5"]).await;
    assert_eq!(token_status(&url).await, 500);
    let o = cli(url.clone(), &["faults", "clear"]).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(token_status(&url).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_plays_the_event_for_our_payment_id() {
    let s = sandbox::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let payment = "pay_01JG0000000000000000000042";
    s.state.directpay.transactions.lock().unwrap().insert(
        "DP42".into(),
        sandbox::directpay::Transaction {
            amount: "250.00".into(),
            status: "PENDING".into(),
            reference: payment.into(),
            // Nobody listens here: the delivery is reported as unanswered.
            webhook: "http://127.0.0.1:9/webhooks/directpay".into(),
            redirect_url: String::new(),
        },
    );
    let o = cli(s.url(), &["trigger", "directpay", "duplicate", payment]).await;
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["provider_reference"], "DP42");
    assert_eq!(report["deliveries"].as_array().unwrap().len(), 2);
    assert_eq!(report["deliveries"][0]["answer"], 0);
    assert_eq!(
        s.state.directpay.transactions.lock().unwrap()["DP42"].status,
        "SUCCESS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_commands_fail_with_a_reason() {
    let s = sandbox::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = s.url();
    for (args, says) in [
        (
            vec!["trigger", "stripe", "paid", "pay_x"],
            "unknown provider",
        ),
        (
            vec!["trigger", "qpay", "refunded", "pay_x"],
            "unknown event",
        ),
        (
            vec!["trigger", "qpay", "paid", "pay_01JG0000000000000000000099"],
            "404",
        ),
        (vec!["faults", "/qpay", "explode"], "unknown fault"),
        (
            vec!["faults", "/qpay", "fail", "--count", "two"],
            "whole number",
        ),
        (vec!["bogus"], "usage"),
    ] {
        let o = cli(url.clone(), &args).await;
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
    }
    let o = cli("http://127.0.0.1:9".into(), &["calls", "/qpay"]).await;
    assert!(!o.status.success());
    assert!(text(&o).contains("no sandbox at"), "{}", text(&o));
}

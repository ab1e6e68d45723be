//! Provider logins are shared by every instance through the table: eight
//! cold instances asking about payments at once make no login where one
//! is stored, and when the provider refuses the stored login, exactly one
//! instance logs in again and the rest take its login.

mod common;

use common::cases::{cases, create, trigger};
use common::harness::Harness;
use shared::ids::PaymentId;

/// The providers with a login, and the sandbox paths a login takes.
const LOGINS: [(&str, &str, &str); 4] = [
    (
        "directpay",
        "/directpay/api/create/login",
        "/_sandbox/directpay/expire-tokens",
    ),
    ("qpay", "/qpay/v2/auth/", "/_sandbox/qpay/expire-tokens"),
    (
        "payment_engine",
        "/payment-engine/api/v1/auth/",
        "/_sandbox/payment-engine/expire-tokens",
    ),
    (
        "epayment",
        "/epayment/oauth/",
        "/_sandbox/epayment/expire-tokens",
    ),
];

/// Eight cold instances each ask the provider about the payment at once.
async fn eight_instances_ask(h: &Harness, provider: &str, id: PaymentId) {
    let payment = h.store().payment(id).await.unwrap().unwrap();
    let asks = (0..8).map(|_| {
        let services = h.cold_instance();
        let payment = payment.clone();
        async move {
            let gateway = services.gateway(payment.provider).await.unwrap();
            gateway.status(&payment).await
        }
    });
    for answer in futures_join_all(asks).await {
        assert!(answer.is_ok(), "{provider}: {answer:?}");
    }
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_share_one_login_per_provider_and_replace_a_refused_one_once() {
    let h = Harness::start().await;
    for (provider, login_path, expire) in LOGINS {
        let case = cases()
            .into_iter()
            .find(|c| c.provider == provider)
            .unwrap();
        // The first instance (the API's) logs in and stores its login; the
        // payment is paid, so every provider has a status to tell.
        let id = create(&h, &case, "u_logins").await;
        let (answer, report) = trigger(&h, provider, "paid", id).await;
        assert_eq!(answer, 200, "{report}");
        let before = h.sandbox.state.calls(login_path);
        assert!(before >= 1, "{provider}: the create logged in");

        eight_instances_ask(&h, provider, id).await;
        assert_eq!(
            h.sandbox.state.calls(login_path),
            before,
            "{provider}: eight cold instances used the stored login"
        );

        // The provider forgets every token: one instance logs in again.
        let r = h
            .http
            .post(format!("{}{expire}", h.sandbox.url()))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{provider}: {expire}");
        eight_instances_ask(&h, provider, id).await;
        assert_eq!(
            h.sandbox.state.calls(login_path),
            before + 1,
            "{provider}: one login replaced the refused one for everyone"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stored_login_is_never_in_a_log_and_only_in_its_item() {
    let h = Harness::start().await;
    let case = cases().into_iter().find(|c| c.provider == "qpay").unwrap();
    create(&h, &case, "u_logins").await;
    let stored = h
        .store()
        .session("qpay")
        .await
        .unwrap()
        .expect("a stored login");
    assert!(format!("{stored:?}").contains("[redacted]"));
    // What the sandbox issued is what is stored, behind the redaction.
    let issued = h.sandbox.state.issued_credentials();
    assert!(issued
        .iter()
        .any(|c| stored.value.expose().contains(c.as_str())));
}

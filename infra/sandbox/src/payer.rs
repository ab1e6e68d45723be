//! The pages a payer sees at a provider: the page each provider's checkout
//! URL points to (ToyyibPay's bill, QPay's short link, Paygram's pay link,
//! DirectPay's link) and the card form of the Halyk widget stand-in. Each
//! has three buttons that do what `trigger` does for the payment: pay,
//! fail, or abandon (nothing happens, the payer goes back). The buttons
//! post to `POST /_sandbox/payer/{provider}/{payment_id}` (in `trigger`),
//! which plays the event and sends the payer on to `back`, where the
//! provider would.
//!
//! Rendering only: this module imports no provider, so no provider's page
//! depends on another's.

use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};

/// `http://<host>` of the request: links the sandbox hands out point back
/// to itself, on whatever address its caller reached it.
pub fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'[' | b']'))
        })
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// Text for HTML (element content and quoted attributes).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Where each button sends the payer after the provider has done its part
/// (`None`: a page that says so, to close).
#[derive(Debug, Default, Clone)]
pub struct Back {
    pub paid: Option<String>,
    pub failed: Option<String>,
    pub abandoned: Option<String>,
}

/// One provider's payer page.
pub struct Page<'a> {
    /// The provider's name in the trigger (`toyyibpay`).
    pub provider: &'a str,
    /// What the payer reads at the top ("FPX: choose your bank").
    pub title: &'a str,
    /// The amount as the provider shows it ("RM 99.90").
    pub amount: &'a str,
    /// paygate's payment id, as the provider's record holds it.
    pub payment_id: &'a str,
    pub back: Back,
}

fn button(
    provider: &str,
    payment_id: &str,
    event: &str,
    label: &str,
    back: Option<&str>,
) -> String {
    format!(
        "<form method=\"post\" action=\"/_sandbox/payer/{p}/{id}\">\
         <input type=\"hidden\" name=\"event\" value=\"{event}\">\
         <input type=\"hidden\" name=\"back\" value=\"{back}\">\
         <button id=\"sandbox-{event}\" type=\"submit\">{label}</button></form>",
        p = escape(provider),
        id = escape(payment_id),
        back = escape(back.unwrap_or_default()),
    )
}

const STYLE: &str = "body{font:16px/1.4 system-ui,sans-serif;max-width:26rem;margin:2rem auto;padding:0 1rem}\
button{display:block;width:100%;padding:.8rem;margin:.5rem 0;font-size:1rem;border-radius:6px;border:1px solid #888}\
#sandbox-paid{background:#137333;color:#fff;border:0}.note{color:#666;font-size:.85rem}";

/// A whole page around `body`.
fn shell(title: &str, body: &str) -> Response {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    ))
    .into_response()
}

/// The page, with its three buttons.
pub fn page(p: Page<'_>) -> Response {
    let buttons: String = [
        ("paid", "Pay", &p.back.paid),
        ("failed", "Decline (the payment fails)", &p.back.failed),
        ("abandon", "Cancel and go back", &p.back.abandoned),
    ]
    .into_iter()
    .map(|(event, label, back)| button(p.provider, p.payment_id, event, label, back.as_deref()))
    .collect();
    let body = format!(
        "<p class=\"note\">paygate sandbox: {provider}</p><h1>{title}</h1>\
         <p id=\"sandbox-amount\">{amount}</p>{buttons}",
        title = escape(p.title),
        provider = escape(p.provider),
        amount = escape(p.amount),
    );
    shell(p.title, &body)
}

/// What a payer sees after a button, where the provider sends them nowhere.
pub fn done(what: &str) -> Response {
    let body = format!(
        "<p class=\"note\">paygate sandbox</p><h1 id=\"sandbox-done\">{}</h1>\
         <p>You can close this page and go back to the shop.</p>",
        escape(what)
    );
    shell("Done", &body)
}

/// A page for a record the provider does not have.
pub fn unknown() -> Response {
    (
        axum::http::StatusCode::NOT_FOUND,
        Html("<!doctype html><title>Not found</title><h1>No such payment</h1>"),
    )
        .into_response()
}

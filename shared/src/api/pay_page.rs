//! The payer's page: `GET /pay/{token}` and `GET /pay/{token}/status`, no
//! API key. One link a merchant sends a payer, whatever the provider: the
//! QR drawn here from `qr_text` (DirectPay, QPay, and Paygram's link for a
//! desktop payer), the provider's page as a button (ToyyibPay's FPX bill,
//! Paygram, DirectPay), the bank's card widget (epayment.kz), or what a
//! Payment Engine transfer needs. The page follows the payment through the
//! status route and sends the payer to the merchant's `return_url` once it
//! is paid. Nothing personal is shown or answered: the amount, the
//! merchant's reference and description, and the state.

use askama::Template;
use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use time::OffsetDateTime;

use crate::ids::PageToken;
use crate::money::{Currency, Money};
use crate::payment::{AppLink, Payment, PaymentStatus, PAGE_AFTER_EXPIRY};
use crate::providers::description::QrOf;
use crate::providers::registry::describe;
use crate::responses::{self, ApiError};
use crate::services::Services;

/// What the payer is told: the page's sections, and the status route's
/// `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PayerState {
    /// Waiting for the payer (and before the payment's expiry).
    Pending,
    /// Paid (a later refund does not change what the payer did).
    Paid,
    Failed,
    Cancelled,
    /// Expired, or pending past its expiry (the sweep expires it soon).
    Expired,
    /// Money arrived that a person must check (`needs_review`).
    Checking,
}

impl PayerState {
    pub fn of(payment: &Payment, now: OffsetDateTime) -> PayerState {
        match payment.status {
            PaymentStatus::Pending if now < payment.expires_at => PayerState::Pending,
            PaymentStatus::Pending | PaymentStatus::Expired => PayerState::Expired,
            PaymentStatus::Completed
            | PaymentStatus::Refunded
            | PaymentStatus::PartiallyRefunded => PayerState::Paid,
            PaymentStatus::Failed => PayerState::Failed,
            PaymentStatus::Cancelled => PayerState::Cancelled,
            PaymentStatus::NeedsReview => PayerState::Checking,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            PayerState::Pending => "pending",
            PayerState::Paid => "paid",
            PayerState::Failed => "failed",
            PayerState::Cancelled => "cancelled",
            PayerState::Expired => "expired",
            PayerState::Checking => "checking",
        }
    }
}

/// An amount as a payer reads it, exactly from minor units: digits grouped
/// by thousands, the currency's decimals (USDT's six only where they are
/// not zeros), its symbol where one is common.
pub fn display_amount(money: Money) -> String {
    let text = money.to_major_string();
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let fraction = fraction.trim_end_matches('0');
    let fraction = format!("{fraction:0<2}");
    let number = format!("{grouped}.{fraction}");
    match money.currency() {
        Currency::Php => format!("₱{number}"),
        Currency::Myr => format!("RM {number}"),
        Currency::Mnt => format!("₮{number}"),
        Currency::Kzt => format!("₸{number}"),
        Currency::Usd => format!("${number}"),
        other => format!("{number} {}", other.code()),
    }
}

/// A QR code of `text` as inline SVG (no image host, sharp at any size).
pub fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build();
    // The renderer starts with an XML declaration, which HTML does not take.
    let start = svg.find("<svg")?;
    Some(svg[start..].to_string())
}

#[derive(Debug)]
struct WidgetView {
    script: String,
    params: String,
}

#[derive(Template)]
#[template(path = "pay.html")]
struct PageView {
    title: String,
    amount: String,
    reference: String,
    description: Option<String>,
    state: &'static str,
    status_url: String,
    return_url: Option<String>,
    qr_svg: Option<String>,
    qr_hint: &'static str,
    apps: Vec<AppLink>,
    pay_url: Option<String>,
    pay_label: &'static str,
    widget: Option<WidgetView>,
    instructions: Vec<&'static str>,
    expires_at: String,
    seconds_left: i64,
    minutes_left: i64,
    nonce: String,
}

impl PageView {
    fn of(payment: &Payment, token: &PageToken, now: OffsetDateTime, nonce: String) -> PageView {
        let checkout = &payment.checkout;
        let state = PayerState::of(payment, now);
        let seconds_left = (payment.expires_at - now).whole_seconds().max(0);
        let mut view = PageView {
            title: "Payment".into(),
            amount: display_amount(payment.amount),
            reference: payment.reference.to_string(),
            description: payment.description.clone(),
            state: state.as_str(),
            status_url: format!("/pay/{token}/status"),
            return_url: payment.return_url.clone(),
            qr_svg: None,
            qr_hint: "",
            apps: vec![],
            pay_url: None,
            pay_label: "",
            widget: None,
            instructions: vec![],
            expires_at: payment
                .expires_at
                .format(time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute]"
                ))
                .unwrap_or_default(),
            seconds_left,
            minutes_left: (seconds_left + 59) / 60,
            nonce,
        };
        let page = describe(payment.provider).payer_page;
        view.title = page.title.into();
        if let Some((of, hint)) = page.qr {
            let qr = match of {
                QrOf::QrText => checkout.qr_text.as_deref(),
                QrOf::CheckoutUrl => checkout.url.as_deref(),
            };
            view.qr_svg = qr.and_then(qr_svg);
            view.qr_hint = hint;
        }
        if let Some(label) = page.link {
            view.pay_url = web_link(checkout.url.as_deref());
            view.pay_label = label;
        }
        if page.apps {
            view.apps = app_links(&checkout.links);
        }
        if page.widget {
            view.widget = checkout.widget.as_ref().and_then(widget_view);
        }
        if let Some(instructions) = page.instructions {
            view.instructions = instructions(payment.method.as_deref());
        }
        view
    }
}

/// A provider's page for the payer, only as an http(s) URL: what a
/// provider sends is not trusted into an `href`.
fn web_link(url: Option<&str>) -> Option<String> {
    let url = url?;
    let parsed = url::Url::parse(url).ok()?;
    matches!(parsed.scheme(), "https" | "http").then(|| url.to_string())
}

/// Bank-app links as a provider named them, without the schemes a browser
/// would run or read locally; logos only from http(s) origins.
fn app_links(links: &[AppLink]) -> Vec<AppLink> {
    links
        .iter()
        .filter(|l| {
            url::Url::parse(&l.link).is_ok_and(|u| {
                !matches!(
                    u.scheme(),
                    "javascript" | "data" | "vbscript" | "file" | "blob"
                )
            })
        })
        .map(|l| AppLink {
            logo: l.logo.as_deref().and_then(|u| web_link(Some(u))),
            ..l.clone()
        })
        .collect()
}

/// The widget's script and the parameters `halyk.pay` takes (the seed's
/// `paymentObject`: the bearer string kept for merchants is not the
/// widget's and stays out).
fn widget_view(widget: &serde_json::Map<String, serde_json::Value>) -> Option<WidgetView> {
    let script = widget.get("script")?.as_str()?.to_string();
    let mut params = widget.clone();
    params.remove("script");
    params.remove("auth_bearer");
    Some(WidgetView {
        script,
        params: serde_json::Value::Object(params).to_string(),
    })
}

/// The origin (`scheme://host[:port]`) of an absolute http(s) URL.
fn origin(text: &str) -> Option<String> {
    let url = url::Url::parse(text).ok()?;
    matches!(url.scheme(), "https" | "http")
        .then(|| url.origin().ascii_serialization())
        .filter(|o| o != "null")
}

/// The page's Content-Security-Policy: scripts and styles of this response
/// only (by nonce), the bank widget's origin for its script, form and
/// frames, images from paygate and the origins of the app logos the
/// provider named; no framing of the page by anyone.
fn content_security_policy(payment: &Payment, nonce: Option<&str>) -> String {
    let widget = payment
        .checkout
        .widget
        .as_ref()
        .and_then(|w| w.get("script"))
        .and_then(|s| s.as_str())
        .and_then(origin);
    let mut logos: Vec<String> = payment
        .checkout
        .links
        .iter()
        .filter_map(|l| l.logo.as_deref().and_then(origin))
        .collect();
    logos.sort();
    logos.dedup();
    let w = widget.map(|o| format!(" {o}")).unwrap_or_default();
    let images: String = logos.iter().map(|o| format!(" {o}")).collect();
    // Without a nonce nothing inline runs or styles the page.
    let own = nonce.map_or_else(|| "'none'".to_string(), |n| format!("'nonce-{n}'"));
    format!(
        "default-src 'none'; script-src {own}{w}; style-src {own}{w}; \
         img-src 'self' data:{images}{w}; connect-src 'self'{w}; frame-src{frames}; \
         form-action 'self'{w}; base-uri 'none'; frame-ancestors 'none'",
        frames = if w.is_empty() {
            " 'none'".to_string()
        } else {
            w.clone()
        },
    )
}

/// The headers every answer of the page carries: not cached, not framed,
/// no referrer (the link is the payer's key), no type sniffing.
fn guarded(mut response: Response<Body>, csp: Option<&str>) -> Response<Body> {
    use lambda_http::http::header;
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, max-age=0"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let csp = csp.unwrap_or(
        "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    if let Ok(v) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

pub(crate) fn html(status: StatusCode, body: String, csp: Option<&str>) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        lambda_http::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    guarded(response, csp)
}

/// The style of the pages without a payment, allowed by its hash.
const PLAIN_STYLE: &str =
    "body{font:16px/1.45 system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#16202a}";

/// A page without a payment: a link that never was, or one past its time.
fn plain_page(status: StatusCode, heading: &str, text: &str) -> Response<Body> {
    use base64::Engine;
    use sha2::Digest;
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{heading}</title>\
         <style>{PLAIN_STYLE}</style></head><body><h1>{heading}</h1><p>{text}</p></body></html>"
    );
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(PLAIN_STYLE));
    let csp = format!(
        "default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    html(status, body, Some(&csp))
}

fn gone() -> Response<Body> {
    plain_page(
        StatusCode::NOT_FOUND,
        "This payment link is not valid",
        "It may have expired. Ask the shop for a new payment link.",
    )
}

/// Why a token names no payment to show.
enum Lookup {
    Found(Box<Payment>, PageToken),
    Gone,
    Failed(crate::store::StoreError),
}

async fn lookup(services: &Services, req: &Request, now: OffsetDateTime) -> Lookup {
    let Some(token) = req
        .path_parameters()
        .first("token")
        .and_then(|t| t.parse::<PageToken>().ok())
    else {
        return Lookup::Gone;
    };
    match services.store.payment_by_page(&token).await {
        Ok(Some(p)) if now <= p.expires_at + PAGE_AFTER_EXPIRY => Lookup::Found(Box::new(p), token),
        Ok(_) => Lookup::Gone,
        Err(e) => Lookup::Failed(e),
    }
}

/// A nonce for the page's own script and style: fresh per answer. Without
/// randomness there is none, and the page goes without its script and
/// style (the QR and links still show) rather than with a guessable nonce.
fn nonce() -> Option<String> {
    crate::ids::random_base64url::<18>()
}

/// `GET /pay/{token}`.
/// `api-pay-page`'s two routes: the page, and the state it polls.
pub async fn handle(services: &Services, req: Request) -> Response<Body> {
    if req.uri().path().ends_with("/status") {
        status(services, req).await
    } else {
        page(services, req).await
    }
}

pub async fn page(services: &Services, req: Request) -> Response<Body> {
    use tracing::Instrument;
    let request_id = responses::request_id(&req);
    let span = super::request_span("pay_page", &request_id);
    page_inner(services, &req).instrument(span).await
}

async fn page_inner(services: &Services, req: &Request) -> Response<Body> {
    let now = OffsetDateTime::now_utc();
    let response = match lookup(services, req, now).await {
        Lookup::Found(payment, token) => {
            super::note_payment(&payment);
            let nonce = nonce();
            let csp = content_security_policy(&payment, nonce.as_deref());
            match PageView::of(&payment, &token, now, nonce.unwrap_or_default()).render() {
                Ok(body) => html(StatusCode::OK, body, Some(&csp)),
                Err(e) => {
                    tracing::error!(error = %e, "the payer's page did not render");
                    unavailable()
                }
            }
        }
        Lookup::Gone => gone(),
        Lookup::Failed(e) => {
            tracing::error!(error = %e, "could not read the payer's page");
            unavailable()
        }
    };
    tracing::info!(status = response.status().as_u16(), "answered");
    response
}

fn unavailable() -> Response<Body> {
    plain_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Please try again",
        "This page could not be shown just now. Reload it in a moment; nothing was paid twice.",
    )
}

/// The status route's answer: the state and the time left, nothing else.
#[derive(Debug, Serialize)]
pub struct PageStatus {
    pub state: PayerState,
    pub seconds_left: i64,
}

/// `GET /pay/{token}/status`: asks the provider first while the payment is
/// pending (at most every 10 seconds, however many pages poll).
pub async fn status(services: &Services, req: Request) -> Response<Body> {
    let request_id = responses::request_id(&req);
    let now = OffsetDateTime::now_utc();
    let result = match lookup(services, &req, now).await {
        Lookup::Found(payment, _) => {
            let payment = super::payments::refresh(services, *payment).await;
            let now = OffsetDateTime::now_utc();
            Ok(responses::json(
                StatusCode::OK,
                &PageStatus {
                    state: PayerState::of(&payment, now),
                    seconds_left: (payment.expires_at - now).whole_seconds().max(0),
                },
            ))
        }
        Lookup::Gone => Err(ApiError::not_found(
            "payment_link_not_found",
            "no payment has this link, or it expired",
        )),
        Lookup::Failed(e) => Err(ApiError::internal(&e)),
    };
    let response = super::handled("pay_status", &request_id, async { result }).await;
    guarded(response, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payment::Provider;

    #[test]
    fn amounts_are_exact_grouped_and_marked() {
        let m = |minor, c| display_amount(Money::new(minor, c).expect("valid"));
        assert_eq!(m(150_000, Currency::Php), "₱1,500.00");
        assert_eq!(m(9_990, Currency::Myr), "RM 99.90");
        assert_eq!(m(12_345_678_901, Currency::Mnt), "₮123,456,789.01");
        assert_eq!(m(5, Currency::Kzt), "₸0.05");
        assert_eq!(m(100, Currency::Usd), "$1.00");
        assert_eq!(m(50_000_000, Currency::Usdt), "50.00 USDT");
        assert_eq!(m(1_234_567, Currency::Usdt), "1.234567 USDT");
        assert_eq!(m(100_000, Currency::Phpt), "1,000.00 PHPT");
    }

    #[test]
    fn the_payer_is_told_the_state_not_the_status() {
        let now = OffsetDateTime::now_utc();
        let mut p = Payment::sample(
            Provider::Qpay,
            Money::new(100, Currency::Mnt).expect("valid"),
        );
        p.expires_at = now + time::Duration::minutes(5);
        assert_eq!(PayerState::of(&p, now), PayerState::Pending);
        assert_eq!(
            PayerState::of(&p, now + time::Duration::minutes(6)),
            PayerState::Expired
        );
        for (status, state) in [
            (PaymentStatus::Completed, PayerState::Paid),
            (PaymentStatus::PartiallyRefunded, PayerState::Paid),
            (PaymentStatus::Refunded, PayerState::Paid),
            (PaymentStatus::Failed, PayerState::Failed),
            (PaymentStatus::Cancelled, PayerState::Cancelled),
            (PaymentStatus::Expired, PayerState::Expired),
            (PaymentStatus::NeedsReview, PayerState::Checking),
        ] {
            p.status = status;
            assert_eq!(PayerState::of(&p, now), state, "{status}");
        }
    }

    #[test]
    fn the_qr_is_inline_svg() {
        let svg = qr_svg("00020101021228560011ph.ppmi.p2m").expect("encodes");
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.contains("viewBox") || svg.contains("width"));
    }

    #[test]
    fn the_policy_names_only_paygate_the_widget_and_the_logos() {
        let mut p = Payment::sample(
            Provider::Epayment,
            Money::new(100, Currency::Kzt).expect("valid"),
        );
        let mut w = serde_json::Map::new();
        w.insert(
            "script".into(),
            "https://epay.homebank.kz/payform/payment-api.js".into(),
        );
        p.checkout.widget = Some(w);
        let csp = content_security_policy(&p, Some("abc"));
        assert!(
            csp.contains("script-src 'nonce-abc' https://epay.homebank.kz;"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        let mut q = Payment::sample(
            Provider::Qpay,
            Money::new(100, Currency::Mnt).expect("valid"),
        );
        q.checkout.links = vec![
            AppLink {
                name: "Khan bank".into(),
                logo: Some("https://qpay.mn/q/logo/khanbank.png".into()),
                link: "khanbank://q".into(),
                ..AppLink::default()
            },
            AppLink {
                name: "State bank".into(),
                logo: Some("https://qpay.mn/q/logo/statebank.png".into()),
                link: "statebank://q".into(),
                ..AppLink::default()
            },
        ];
        let csp = content_security_policy(&q, Some("n"));
        assert!(
            csp.contains("img-src 'self' data: https://qpay.mn;"),
            "{csp}"
        );
        assert!(csp.contains("script-src 'nonce-n';"), "{csp}");
        assert!(csp.contains("frame-src 'none'"), "{csp}");
        let none = content_security_policy(&q, None);
        assert!(none.contains("script-src 'none';"), "{none}");
    }

    #[test]
    fn provider_links_reach_an_href_only_when_harmless() {
        assert_eq!(
            web_link(Some("https://dev.toyyibpay.com/abc")).as_deref(),
            Some("https://dev.toyyibpay.com/abc")
        );
        for bad in [
            "javascript:alert(1)",
            "data:text/html,x",
            "not a url",
            "file:///etc/passwd",
        ] {
            assert_eq!(web_link(Some(bad)), None, "{bad}");
        }
        let link = |link: &str, logo: &str| AppLink {
            name: "Bank".into(),
            link: link.into(),
            logo: Some(logo.into()),
            ..AppLink::default()
        };
        let kept = app_links(&[
            link(
                "khanbank://q?qPay_QRcode=1",
                "https://qpay.mn/q/logo/khanbank.png",
            ),
            link("javascript:alert(1)", "https://qpay.mn/x.png"),
            link("JavaScript:alert(1)", "https://qpay.mn/x.png"),
            link("statebank://q", "javascript:alert(1)"),
        ]);
        assert_eq!(kept.len(), 2);
        assert_eq!(
            kept[0].logo.as_deref(),
            Some("https://qpay.mn/q/logo/khanbank.png")
        );
        assert_eq!(kept[1].logo, None, "a logo that is not http(s) is dropped");
    }

    #[test]
    fn the_widget_gets_its_parameters_without_the_bearer_string() {
        let mut w = serde_json::Map::new();
        w.insert("script".into(), "https://x.example/payment-api.js".into());
        w.insert("invoiceId".into(), "000001".into());
        w.insert("auth_bearer".into(), "Bearer t".into());
        let view = widget_view(&w).expect("a widget");
        assert_eq!(view.script, "https://x.example/payment-api.js");
        assert_eq!(view.params, r#"{"invoiceId":"000001"}"#);
    }
}

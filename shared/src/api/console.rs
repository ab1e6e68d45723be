//! `GET /console`: the console for merchants and operators, one page
//! compiled into the binary (`shared/console/`), no API key to load it.
//! The page asks for a key and keeps it in the tab (`sessionStorage`);
//! everything it shows comes from the API, through the authorizer, with
//! that key (decision 57).
//!
//! Its Content-Security-Policy lets only this answer's own script and
//! style run (by a fresh nonce), talk only to its own origin, never be
//! framed, and, through Trusted Types, never parse a string as HTML: the
//! page builds every element with the DOM and puts what merchants wrote
//! in as text.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

use crate::responses;

const PAGE: &str = include_str!("../../console/console.html");
const STYLE: &str = include_str!("../../console/console.css");
const SCRIPT: &str = include_str!("../../console/console.js");

/// The policy of a page whose script and style carry `nonce`.
fn content_security_policy(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"
    )
}

/// The page with its script and style, each under `nonce`.
fn render(nonce: &str) -> String {
    PAGE.replace("%STYLE%", STYLE)
        .replace("%SCRIPT%", SCRIPT)
        .replace("%NONCE%", nonce)
}

/// `api-console`'s route.
pub async fn handle(req: Request) -> Response<Body> {
    let request_id = responses::request_id(&req);
    super::handled("console", &request_id, async {
        // Without randomness there is no nonce, and without one nothing of
        // the page would run: say so rather than guess one.
        let nonce = crate::ids::random_base64url::<18>()
            .ok_or_else(|| responses::ApiError::internal(&"no randomness for the page's nonce"))?;
        let csp = content_security_policy(&nonce);
        Ok(super::pay_page::html(
            StatusCode::OK,
            render(&nonce),
            Some(&csp),
        ))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_whole_and_its_script_cannot_end_early() {
        let page = render("N0nce");
        assert!(
            !page.contains("%NONCE%") && !page.contains("%STYLE%") && !page.contains("%SCRIPT%")
        );
        assert!(page.contains(r#"<script nonce="N0nce">"#));
        assert!(page.contains(r#"<style nonce="N0nce">"#));
        // Inlined: its own closing tag would end it.
        assert!(!SCRIPT.to_ascii_lowercase().contains("</script"));
        assert!(!STYLE.to_ascii_lowercase().contains("</style"));
        // Nothing from elsewhere, and no HTML parsed from strings.
        for text in [PAGE, STYLE, SCRIPT] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(sink), "{sink}");
        }
        assert!(!SCRIPT.contains("localStorage") && !SCRIPT.contains("document.cookie"));
    }

    #[test]
    fn the_policy_allows_only_this_answers_own_code() {
        let csp = content_security_policy("abc");
        assert!(csp.contains("script-src 'nonce-abc';"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(csp.contains("require-trusted-types-for 'script'"));
        assert!(!csp.contains("unsafe"));
    }
}

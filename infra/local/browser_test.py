#!/usr/bin/env python3
"""The payer's journey in a real browser (Debian's Chromium, driven by
Playwright), against a running `make dev`.

For every provider: a payment created through the API with a return_url,
its `checkout.page_url` opened at phone and desktop width (screenshots in
.local/screenshots), the amount and reference read off the page, the QR
decoded from the screenshot and compared with the API's `qr_text` byte for
byte, then the payer's way through the sandbox's own provider page (the
link, the FPX bill, the bank's card widget, a phone that scanned the QR),
paid there; the page turns to success and lands on return_url, and the API
shows the payment completed exactly once. Then one payment that fails and
one that expires while its page is open, the page's polling backing off
and stopping at a final state, the page without JavaScript, and no Content-Security-
Policy violation anywhere.

Run by infra/local/browser.sh (from api-test.sh, so by `make test`).
Exits non-zero with a reason on the first thing that is not as it should be.
"""

import http.server
import io
import json
import os
import sys
import threading
import urllib.error
import urllib.request
import uuid

import zxingcpp
from PIL import Image
from playwright.sync_api import sync_playwright

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
API = "http://" + os.environ.get("PAYGATE_GATEWAY_ADDR", "127.0.0.1:3000")
SANDBOX = "http://" + os.environ.get("PAYGATE_SANDBOX_ADDR", "127.0.0.1:8900")
KEY = "pk_local_paygate_dev_key"
SHOTS = os.path.join(ROOT, ".local", "screenshots")
CHROMIUM = os.environ.get("PAYGATE_CHROMIUM", "/usr/bin/chromium")
# As the machine's notes say: no sandbox as root, and nothing that reaches
# out to Google's hosts from a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
RUN = uuid.uuid4().hex[:8]

# provider, request, what the page shows as the amount, how the payer pays.
CASES = [
    ("directpay", {"amount": 150000, "currency": "PHP"}, "₱1,500.00", "link"),
    ("paygram", {"amount": 5000000, "currency": "USDT"}, "5.00 USDT", "phone"),
    ("toyyibpay", {"amount": 9990, "currency": "MYR", "method": "fpx", "description": "Browser test",
                   "customer": {"name": "Aisyah", "email": "a@example.com", "phone": "+60123456789"}},
     "RM 99.90", "link"),
    ("qpay", {"amount": 150000, "currency": "MNT"}, "₮1,500.00", "phone"),
    ("epayment", {"amount": 500000, "currency": "KZT"}, "₸5,000.00", "widget"),
    ("payment_engine", {"amount": 1250, "currency": "USD", "method": "RTP"}, "$12.50", "bank"),
]


def fail(message):
    print(f"browser-test: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def say(message):
    print(f"browser-test: {message}", flush=True)


def call(method, url, body=None, key=True):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {KEY}")
        if method == "POST":
            request.add_header("Idempotency-Key", uuid.uuid4().hex)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


class Shop(http.server.BaseHTTPRequestHandler):
    """The merchant's return_url: a page that says thanks."""

    def do_GET(self):
        body = b"<!doctype html><title>Shop</title><h1 id='thanks'>Thanks for your order</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def create(provider, request, return_url):
    body = {"provider": provider, "reference": f"ORD-WEB-{RUN}-{uuid.uuid4().hex[:6]}", "return_url": return_url,
            "wallet_user_id": f"u_web_{RUN}", **request}
    status, payment = call("POST", f"{API}/v1/payments", body)
    if status != 201:
        fail(f"{provider}: create answered {status}: {payment}")
    if not (payment["checkout"].get("page_url") or "").startswith(f"{API}/pay/"):
        fail(f"{provider}: no page_url in {payment['checkout']}")
    return payment


def payment(pid):
    status, body = call("GET", f"{API}/v1/payments/{pid}")
    if status != 200:
        fail(f"GET {pid}: {status} {body}")
    return body


def decode_qr(locator, provider):
    png = locator.screenshot()
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)).convert("L"))
    if not found:
        fail(f"{provider}: no QR code could be read off the page")
    return found[0].bytes


def watch_csp(page, violations):
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)


def open_page(browser, url, shape, violations, provider=None, label=None):
    context = browser.new_context(**shape)
    page = context.new_page()
    watch_csp(page, violations)
    response = page.goto(url)
    if response is None or response.status != 200:
        fail(f"{url}: {response.status if response else 'no answer'}")
    if provider:
        page.wait_for_selector("#amount")
        page.screenshot(path=os.path.join(SHOTS, f"{provider}-{label}.png"), full_page=True)
    return context, page


def journey(browser, provider, request, amount, how, shop, violations):
    return_url = f"{shop}/thanks/{provider}"
    created = create(provider, request, return_url)
    pid, checkout = created["id"], created["checkout"]
    desktop, dpage = open_page(browser, checkout["page_url"], DESKTOP, violations, provider, "desktop")
    # What the payer sees.
    if dpage.inner_text("#amount").strip() != amount:
        fail(f"{provider}: the page shows {dpage.inner_text('#amount')!r}, not {amount!r}")
    if dpage.inner_text("#reference").strip() != created["reference"]:
        fail(f"{provider}: the page shows another reference")
    if provider in ("directpay", "qpay", "paygram"):
        expected = checkout["url"] if provider == "paygram" else checkout["qr_text"]
        decoded = decode_qr(dpage.locator("#qr svg"), provider)
        if decoded != expected.encode():
            fail(f"{provider}: the QR says {decoded!r}, the API {expected!r}")
    desktop.close()

    phone, page = open_page(browser, checkout["page_url"], PHONE, violations, provider, "phone")
    if provider == "qpay" and page.locator("#apps a").count() < 1:
        fail("qpay: no bank apps on a phone")
    # The payer pays, the provider's way.
    if how == "link":
        page.click("#pay-link")
        page.wait_for_selector("#sandbox-paid")
        page.screenshot(path=os.path.join(SHOTS, f"{provider}-provider-page.png"))
        page.click("#sandbox-paid")
    elif how == "widget":
        page.wait_for_function("!!(window.halyk && window.halyk.pay)")
        page.click("#pay-card")
        page.wait_for_selector("#halyk-widget #sandbox-paid")
        page.screenshot(path=os.path.join(SHOTS, f"{provider}-widget.png"))
        page.click("#halyk-widget #sandbox-paid")
    elif how == "phone":
        # A second device that scanned the QR (or followed the link).
        other = phone.new_page()
        other.goto(checkout["url"])
        other.screenshot(path=os.path.join(SHOTS, f"{provider}-provider-page.png"))
        other.click("#sandbox-paid")
        other.wait_for_selector("#sandbox-done")
        other.close()
    else:
        # The payer approves the transfer at the bank; the Payment Engine settles it.
        status, report = call("POST", f"{SANDBOX}/_sandbox/trigger",
                              {"provider": provider, "event": "paid", "payment_id": pid}, key=False)
        if status != 200:
            fail(f"{provider}: the sandbox's trigger answered {status}: {report}")
    page.wait_for_url(return_url, timeout=60_000)
    if page.inner_text("#thanks") != "Thanks for your order":
        fail(f"{provider}: did not land on return_url")
    phone.close()
    after = payment(pid)
    completions = [h for h in after["history"] if h["status"] == "completed"]
    if after["status"] != "completed" or len(completions) != 1:
        fail(f"{provider}: {after['status']} with {len(completions)} completions")
    qr = "QR decoded equal, " if provider in ("directpay", "qpay", "paygram") else ""
    say(f"{provider}: amount and reference shown, {qr}paid the provider's way, landed on return_url, completed once")


def failed_and_expired(browser, shop, violations):
    # Declined at GCash: back on the page, which says so.
    created = create("directpay", {"amount": 20000, "currency": "PHP"}, f"{shop}/thanks/declined")
    context, page = open_page(browser, created["checkout"]["page_url"], PHONE, violations)
    page.click("#pay-link")
    page.click("#sandbox-failed")
    page.wait_for_selector("#failed", state="visible", timeout=30_000)
    page.screenshot(path=os.path.join(SHOTS, "failed-phone.png"))
    if page.url.startswith(f"{shop}/"):
        fail("a failed payment sent the payer to return_url")
    context.close()
    if payment(created["id"])["status"] != "failed":
        fail("the declined payment is not failed")
    say("directpay declined: the page says the payment did not go through")

    # Expired at DirectPay (it says EXPIRED) while the page is open: the
    # page turns to expired by itself.
    created = create("directpay", {"amount": 10000, "currency": "PHP"}, f"{shop}/thanks/expired")
    context, page = open_page(browser, created["checkout"]["page_url"], PHONE, violations)
    status, report = call("POST", f"{SANDBOX}/_sandbox/trigger",
                          {"provider": "directpay", "event": "expired", "payment_id": created["id"]}, key=False)
    if status != 200:
        fail(f"directpay expired: the sandbox's trigger answered {status}: {report}")
    page.wait_for_selector("#expired", state="visible", timeout=30_000)
    page.screenshot(path=os.path.join(SHOTS, "expired-phone.png"))
    context.close()
    if payment(created["id"])["status"] != "expired":
        fail("the expired payment is not expired")
    say("directpay expired: the open page says so")


# What the page's script does to count its polls: each status request's time
# on the page's (fake) clock, and whether one is still being answered.
COUNT_POLLS = """(() => {
  const real = window.fetch;
  window.__polls = [];
  window.__busy = 0;
  window.fetch = function (url) {
    if (String(url).endsWith("/status")) { window.__polls.push(Date.now()); }
    window.__busy += 1;
    return real.apply(this, arguments)
      .then(function (r) { return r.clone().text().then(function () { return r; }); })
      .finally(function () { window.__busy -= 1; });
  };
})();"""


def expected_gaps(count):
    """The page's schedule: 3 s, then each wait half as long again, at most 30 s."""
    gaps, delay = [], 3000
    for _ in range(count):
        gaps.append(delay)
        delay = min(30000, round(delay * 1.5))
    return gaps


def polling_backs_off(browser, shop, violations):
    """An open page asks at 3 s, then backs off to every 30 s, and asks
    nothing more once the payment is final (cancelled here), on the page's
    own clock, stepped by the test."""
    created = create("qpay", {"amount": 10000, "currency": "MNT"}, f"{shop}/thanks/backoff")
    context = browser.new_context(**PHONE)
    context.add_init_script(COUNT_POLLS)
    page = context.new_page()
    watch_csp(page, violations)
    page.clock.install()
    page.goto(created["checkout"]["page_url"])
    page.wait_for_selector("#amount")
    opened = page.evaluate("Date.now()") + 100
    page.clock.pause_at(opened / 1000)  # Python takes seconds

    def run(ms):
        """Steps the page's clock by half seconds; after each, lets a poll that
        went out be answered (in real time) before the clock moves on."""
        for _ in range(ms // 500):
            page.clock.run_for(500)
            page.wait_for_timeout(5)
            while page.evaluate("window.__busy") > 0:
                page.wait_for_timeout(10)
            page.wait_for_timeout(5)

    run(6 * 60 * 1000)
    polls = page.evaluate("window.__polls")
    gaps = [b - a for a, b in zip([opened] + polls, polls)]
    want = expected_gaps(len(gaps))
    if not 10 <= len(gaps) <= 20:
        fail(f"the page polled {len(gaps)} times in 6 minutes: {gaps}")
    for got, expected in zip(gaps, want):
        if not expected - 500 <= got <= expected + 1000:
            fail(f"the page polled after {gaps}, not after {want}")

    status, body = call("POST", f"{API}/v1/payments/{created['id']}/cancel", {"reason": "backoff test"})
    if status != 200:
        fail(f"cancel answered {status}: {body}")
    run(31 * 1000)
    if not page.locator("#cancelled").is_visible():
        fail("the page does not show the cancelled payment within 30 s")
    seen = len(page.evaluate("window.__polls"))
    run(5 * 60 * 1000)
    after = len(page.evaluate("window.__polls")) - seen
    if after:
        fail(f"the page polled {after} more times after the payment was cancelled")
    context.close()
    say(f"polling: {len(gaps)} polls in 6 minutes ({', '.join(str(g // 1000) for g in gaps[:8])} s...), "
        "none after the payment was cancelled")


def without_script(browser, shop, violations):
    created = create("qpay", {"amount": 10000, "currency": "MNT"}, f"{shop}/thanks/noscript")
    context = browser.new_context(java_script_enabled=False, **PHONE)
    page = context.new_page()
    page.goto(created["checkout"]["page_url"])
    if not page.locator("#qr svg").is_visible() or not page.locator("#pay-link").is_visible():
        fail("without JavaScript the QR or the link is not shown")
    context.close()
    say("without JavaScript: the QR and the link are shown")


def main():
    os.makedirs(SHOTS, exist_ok=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Shop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    shop = f"http://127.0.0.1:{server.server_address[1]}"
    violations = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for provider, request, amount, how in CASES:
                journey(browser, provider, request, amount, how, shop, violations)
            failed_and_expired(browser, shop, violations)
            polling_backs_off(browser, shop, violations)
            without_script(browser, shop, violations)
        finally:
            browser.close()
    server.shutdown()
    if violations:
        fail(f"Content-Security-Policy violations: {violations[:5]}")
    say(f"ok; screenshots in {os.path.relpath(SHOTS, ROOT)}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The console (`GET /console`) in a real browser (Debian's Chromium, driven
by Playwright), against a running `make dev`, walked as people would.

As a merchant: signs in with the key, finds yesterday's and today's
payments by status, provider and day (yesterday's is a copy of a paid
payment written into the table with yesterday's time), opens the paid one,
refunds part of it and sees the refund and the new status; exports the
day's payments as CSV and checks every row against the API's listing; finds
a payment whose reference and description are HTML and sees them as text,
with nothing run. As an operator: accepts a payment in review with a
reason and sees it leave the queue; reads provider health and balances.
Throughout: no Content-Security-Policy or Trusted Types violation, no
console error, no dialog. Phone and desktop screenshots in
.local/screenshots (console-*.png).

Run by infra/local/browser.sh (from api-test.sh, so by `make test`).
Exits non-zero with a reason on the first thing that is not as it should be.
"""

import csv
import datetime
import io
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from zoneinfo import ZoneInfo

from playwright.sync_api import sync_playwright

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
API = "http://" + os.environ.get("PAYGATE_GATEWAY_ADDR", "127.0.0.1:3000")
SANDBOX = "http://" + os.environ.get("PAYGATE_SANDBOX_ADDR", "127.0.0.1:8900")
DYNAMODB = "http://127.0.0.1:" + os.environ.get("PAYGATE_DYNAMODB_PORT", "8000")
TABLE = os.environ.get("PAYGATE_TABLE", "paygate-local")
KEY = os.environ.get("PAYGATE_CONSOLE_MERCHANT_KEY", "pk_local_paygate_dev_key")
OPERATOR_KEY = os.environ.get("PAYGATE_CONSOLE_OPERATOR_KEY", "ok_local_paygate_operator_key")
SHOTS = os.path.join(ROOT, ".local", "screenshots")
CHROMIUM = os.environ.get("PAYGATE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# The viewer is in Kuala Lumpur: days and times are theirs, UTC on hover.
ZONE = "Asia/Kuala_Lumpur"
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True, "timezone_id": ZONE, "accept_downloads": True}
DESKTOP = {"viewport": {"width": 1280, "height": 860}, "timezone_id": ZONE, "accept_downloads": True}
RUN = uuid.uuid4().hex[:8]
XSS_REFERENCE = f'"><script>alert(1)</script>{RUN}'
XSS_DESCRIPTION = "<img src=x onerror=alert(1)>"


def fail(message):
    print(f"console-test: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def say(message):
    print(f"console-test: {message}", flush=True)


def call(method, path, body=None, key=KEY):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(API + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {key}")
    if method == "POST":
        request.add_header("Idempotency-Key", uuid.uuid4().hex)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def control(path, body):
    request = urllib.request.Request(SANDBOX + path, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


def until(what, check, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    fail(f"timed out waiting for {what}")


def create(provider, amount, currency, reference, **extra):
    body = {"provider": provider, "amount": amount, "currency": currency, "reference": reference, **extra}
    status, p = call("POST", "/v1/payments", body)
    if status != 201:
        fail(f"create {reference}: {status} {p}")
    return p


def get(pid):
    status, p = call("GET", f"/v1/payments/{pid}")
    if status != 200:
        fail(f"GET {pid}: {status} {p}")
    return p


def ddb(operation, body):
    """DynamoDB Local's API (it checks no signature)."""
    request = urllib.request.Request(DYNAMODB + "/", data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/x-amz-json-1.0")
    request.add_header("X-Amz-Target", f"DynamoDB_20120810.{operation}")
    request.add_header("X-Amz-Date", "20260101T000000Z")
    request.add_header("Authorization", "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/"
                                        "aws4_request, SignedHeaders=host;x-amz-date, Signature=00")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def ulid(ms):
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    n = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    out = ""
    for _ in range(26):
        out = alphabet[n & 31] + out
        n >>= 5
    return out


def seed_yesterday(paid):
    """A copy of the paid payment made at noon yesterday (the viewer's day),
    written into make dev's table: the API makes payments only now. Out of
    every other index (no provider reference, sweep or reconcile key), so
    nothing but the listing ever reads it."""
    item = ddb("GetItem", {"TableName": TABLE, "ConsistentRead": True,
                           "Key": {"pk": {"S": f"PAY#{paid['id']}"}, "sk": {"S": "PAY"}}})["Item"]
    yesterday = datetime.datetime.now(ZoneInfo(ZONE)).date() - datetime.timedelta(days=1)
    at = datetime.datetime.combine(yesterday, datetime.time(12), ZoneInfo(ZONE))
    ms = int(at.timestamp() * 1000)
    pid = "pay_" + ulid(ms)
    text = at.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name in ["gsi1pk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk", "page_token"]:
        item.pop(name, None)
    item.update({"pk": {"S": f"PAY#{pid}"}, "id": {"S": pid}, "reference": {"S": f"ORD-CON-{RUN}-yesterday"},
                 "created_at": {"S": text}, "updated_at": {"S": text}, "gsi5sk": {"S": f"{ms:015d}"}})
    ddb("PutItem", {"TableName": TABLE, "Item": item})
    return pid


def setup():
    """This run's payments: a paid epayment.kz one (partial refunds), two
    pending QPay ones, one whose reference and description are HTML, and a
    short ToyyibPay one in review."""
    paid = create("epayment", 500000, "KZT", f"ORD-CON-{RUN}-paid", return_url="https://shop.example.com/done")
    control("/_sandbox/trigger", {"provider": "epayment", "event": "paid", "payment_id": paid["id"]})
    until("the epayment.kz payment completing", lambda: get(paid["id"])["status"] == "completed")
    before = seed_yesterday(paid)
    pending = [create("qpay", 150000 + i, "MNT", f"ORD-CON-{RUN}-q{i}") for i in range(2)]
    xss = create("qpay", 1000, "MNT", XSS_REFERENCE, description=XSS_DESCRIPTION)
    short = create("toyyibpay", 9990, "MYR", f"ORD-CON-{RUN}-short",
                   customer={"email": "a@example.com", "phone": "+60123456789"})
    control(f"/_sandbox/toyyibpay/bills/{short['provider_reference']}/attempt", {"status": 1, "amount_sen": 9900})
    until("the short payment reaching review", lambda: get(short["id"])["status"] == "needs_review")
    return paid, pending, xss, short, before


class Watch:
    """What a page must never do: break its policy, log an error, run a
    dialog (the XSS payloads would call alert)."""

    def __init__(self):
        self.problems = []

    def attach(self, page):
        page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}")
                if m.type == "error" or "Content Security Policy" in m.text or "Trusted Type" in m.text else None)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))

        def dialog(d):
            self.problems.append(f"dialog: {d.message}")
            d.dismiss()
        page.on("dialog", dialog)
        return page

    def check(self, where):
        if self.problems:
            fail(f"{where}: " + "; ".join(self.problems))


def sign_in(page, key, role):
    page.goto(f"{API}/console")
    page.fill("#key", key)
    page.select_option("#role", role)
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#signout:not([hidden])")


def shot(page, name):
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SHOTS, f"console-{name}.png"), full_page=True)


def rows(page):
    page.wait_for_selector("#page-info >> text=/^Page/")
    return page.eval_on_selector_all("#payment-rows tr[data-id]", "rs => rs.map(r => r.dataset.id)")


def search(page, status="", provider="", day_from="", day_to="", reference=""):
    page.select_option("#f-status", status)
    page.select_option("#f-provider", provider)
    page.fill("#f-from", day_from)
    page.fill("#f-to", day_to)
    page.fill("#f-reference", reference)
    page.evaluate("document.querySelector('#page-info').textContent = ''")
    page.click("#search")
    return rows(page)


def listing(day):
    """Every payment of the viewer's `day`, as the API lists it."""
    zone = ZoneInfo(ZONE)
    start = datetime.datetime.combine(day, datetime.time(), zone)
    end = start + datetime.timedelta(days=1)
    q = urllib.parse.urlencode({"created_from": start.isoformat(), "created_to": end.isoformat(), "limit": 100})
    found, cursor = [], None
    while True:
        status, page = call("GET", f"/v1/payments?{q}" + (f"&cursor={cursor}" if cursor else ""))
        if status != 200:
            fail(f"listing: {status} {page}")
        found += page["data"]
        cursor = page["next_cursor"]
        if not cursor:
            return found


def major(minor, currency):
    digits = 6 if currency == "USDT" else 2
    text = str(minor).rjust(digits + 1, "0")
    return f"{text[:-digits]}.{text[-digits:]}"


def merchant(browser, paid, pending, xss, before, watch):
    today = datetime.datetime.now(ZoneInfo(ZONE)).date()
    yesterday = today - datetime.timedelta(days=1)
    page = watch.attach(browser.new_context(**DESKTOP).new_page())
    sign_in(page, KEY, "merchant")
    page.wait_for_selector("#filters")

    # Today's completed epayment.kz payments: the paid one, not the pending.
    found = search(page, "completed", "epayment", today.isoformat(), today.isoformat())
    if paid["id"] not in found or any(p["id"] in found for p in pending):
        fail(f"today's completed epayment.kz payments: {found}")
    found = search(page, "pending", "qpay", today.isoformat(), today.isoformat())
    if not all(p["id"] in found for p in pending) or paid["id"] in found:
        fail(f"today's pending QPay payments: {found}")
    # Yesterday's payment, and none of today's.
    todays = [paid["id"], xss["id"]] + [p["id"] for p in pending]
    found = search(page, "", "", yesterday.isoformat(), yesterday.isoformat())
    if before not in found or any(pid in found for pid in todays):
        fail(f"yesterday's payments: {found}")
    found = search(page, "completed", "", today.isoformat(), today.isoformat())
    if before in found or paid["id"] not in found:
        fail(f"today's completed payments: {found}")
    # Yesterday and today together, newest first.
    found = search(page, "completed", "epayment", yesterday.isoformat(), today.isoformat())
    if not all(pid in found for pid in [paid["id"], before]) or found.index(before) < found.index(paid["id"]):
        fail(f"yesterday-to-today: {found}")
    shot(page, "payments-desktop")

    # Open the paid one, refund part of it.
    search(page, "completed", "epayment", today.isoformat(), today.isoformat())
    page.click(f"#payment-rows tr[data-id='{paid['id']}'] a")
    page.wait_for_selector("#d-amount")
    if page.text_content("#d-amount") != "5,000.00 KZT":
        fail(f"the amount reads {page.text_content('#d-amount')!r}")
    page.fill("#refund-amount", "1500")
    page.fill("#refund-reason", "one item returned")
    page.click("#refund")
    page.wait_for_selector("#d-refunds tbody tr")
    page.wait_for_selector(".notice.ok")
    shown = page.eval_on_selector(".card .badge", "b => b.dataset.status")
    after = get(paid["id"])
    if after["status"] != "partially_refunded" or shown != "partially_refunded" or after["refunded_amount"] != 150000:
        fail(f"after the refund: page {shown}, API {after['status']} {after['refunded_amount']}")
    refund_rows = page.eval_on_selector_all("#d-refunds tbody tr", "rs => rs.map(r => r.textContent)")
    if len(refund_rows) != 1 or "1,500.00 KZT" not in refund_rows[0]:
        fail(f"the refund shown: {refund_rows}")
    if page.text_content("#d-refunded") != "1,500.00 KZT":
        fail(f"refunded reads {page.text_content('#d-refunded')!r}")
    history = page.eval_on_selector_all("#d-history li .badge", "bs => bs.map(b => b.dataset.status)")
    if history[-1:] != ["partially_refunded"]:
        fail(f"the timeline: {history}")
    title = page.get_attribute("#d-history li time", "title") or ""
    if not title.endswith(" UTC"):
        fail(f"a time's hover should say UTC: {title!r}")
    shot(page, "payment-desktop")

    # The day's payments as CSV, every row as the API lists it.
    page.goto(f"{API}/console#/payments")
    page.wait_for_selector("#filters")
    search(page, "", "", today.isoformat(), today.isoformat())
    with page.expect_download() as download:
        page.click("#export")
    text = open(download.value.path(), encoding="utf-8").read()
    exported = list(csv.DictReader(io.StringIO(text)))
    api_rows = listing(today)
    want = {p["id"]: p for p in api_rows}
    if [r["id"] for r in exported] != [p["id"] for p in api_rows]:
        fail(f"the CSV's ids differ from the API's: {len(exported)} rows against {len(api_rows)}")
    ours = {paid["id"], xss["id"]} | {p["id"] for p in pending}
    for r in exported:
        p = want[r["id"]]
        expected = {"created_at": p["created_at"], "reference": p["reference"], "provider": p["provider"],
                    "amount": major(p["amount"], p["currency"]), "currency": p["currency"]}
        # Others' payments may move on (a sweep expires them) between the
        # two reads; this run's stand still.
        if r["id"] in ours:
            expected.update({"status": p["status"], "updated_at": p["updated_at"],
                             "refunded_amount": major(p["refunded_amount"], p["currency"])})
        got = {k: r[k] for k in expected}
        if got != expected:
            fail(f"CSV row {r['id']}: {got} against the API's {expected}")
        datetime.datetime.fromisoformat(r["created_at"].replace("Z", "+00:00"))
    if not any(r["id"] == paid["id"] and r["amount"] == "5000.00" and r["refunded_amount"] == "1500.00"
               for r in exported):
        fail("the CSV should hold the refunded payment in major units")
    say(f"merchant: filters, a part refund and a CSV of {len(exported)} rows matching the API")

    # An endpoint (of a type this run never makes): its secret once, a
    # rotation's new one, then disabled.
    page.click("#nav a[data-nav=webhooks]")
    page.fill("#wh-url", f"http://127.0.0.1:9/console-{RUN}")
    page.fill("#wh-events", "topup.failed")
    page.fill("#wh-description", f"console {RUN}")
    page.click("#wh-add")
    page.wait_for_selector("#wh-secret .secret")
    first = page.text_content("#wh-secret .secret")
    row = f"#wh-rows tr:has-text('console-{RUN}')"
    page.wait_for_selector(row)
    page.click(f"{row} button:has-text('Rotate secret')")
    page.wait_for_selector(f"#wh-secret .secret:not(:text-is('{first}'))")
    second = page.text_content("#wh-secret .secret")
    page.click(f"{row} button:has-text('Disable')")
    page.wait_for_selector(f"{row} .badge[data-status=disabled]")
    status, endpoints = call("GET", "/v1/webhook-endpoints")
    mine = [e for e in endpoints["data"] if e["url"].endswith(f"console-{RUN}")]
    if not (first.startswith("whsec_") and second.startswith("whsec_") and first != second) \
            or len(mine) != 1 or mine[0]["status"] != "disabled" or "secret" in mine[0]:
        fail(f"webhook endpoint: {first[:8]}… {second[:8]}… {mine}")
    say("merchant: an endpoint added (secret shown once), rotated and disabled")

    # HTML in a reference and a description is text.
    page.click("#nav a[data-nav=payments]")
    page.wait_for_selector("#filters")
    rows(page)
    search(page, reference=XSS_REFERENCE)
    cell = page.text_content(f"#payment-rows tr[data-id='{xss['id']}'] td.ref")
    if cell != XSS_REFERENCE:
        fail(f"the reference cell reads {cell!r}")
    page.click(f"#payment-rows tr[data-id='{xss['id']}'] a")
    page.wait_for_selector("#d-description")
    if page.text_content("#d-description") != XSS_DESCRIPTION or page.text_content("#d-reference") != XSS_REFERENCE:
        fail("the description and reference should read as written")
    if page.locator("img").count() or page.locator("main script").count():
        fail("merchant text became elements")
    page.wait_for_timeout(300)
    shot(page, "xss-desktop")
    watch.check("merchant walk")
    say("merchant: HTML in a reference and a description shown as text, nothing run")

    # A phone.
    phone = watch.attach(browser.new_context(**PHONE).new_page())
    sign_in(phone, KEY, "merchant")
    phone.wait_for_selector("#filters")
    rows(phone)
    shot(phone, "payments-phone")
    phone.goto(f"{API}/console#/payment/{paid['id']}")
    phone.wait_for_selector("#d-amount")
    shot(phone, "payment-phone")
    watch.check("merchant on a phone")


def operator(browser, short, watch):
    page = watch.attach(browser.new_context(**DESKTOP).new_page())
    sign_in(page, OPERATOR_KEY, "operator")
    page.wait_for_selector("#queue")
    item = f"#queue li[data-payment='{short['id']}'][data-kind='payment_review']"
    page.wait_for_selector(item)
    shot(page, "queue-desktop")
    # No reason, no decision.
    page.click(f"{item} button[data-action=accept]")
    page.wait_for_selector(".notice:not(.ok)")
    if get(short["id"])["status"] != "needs_review":
        fail("an accept without a reason went through")
    page.fill(f"{item} .q-reason", "payer paid RM 99.00 (ToyyibPay portal)")
    page.click(f"{item} button[data-action=accept]")
    page.wait_for_selector(".notice.ok")
    page.wait_for_selector(item, state="detached")
    p = get(short["id"])
    last = p["history"][-1]
    if p["status"] != "completed" or last.get("action") != "accept" or "ToyyibPay portal" not in (last.get("reason") or ""):
        fail(f"after the accept: {p['status']} {last}")
    say("operator: accepted a payment in review with a reason; it left the queue")
    page.click("#nav a[data-nav=health]")
    page.wait_for_selector("#health tbody tr")
    page.click("#nav a[data-nav=balances]")
    page.wait_for_selector("#balances")
    shot(page, "balances-desktop")
    phone = watch.attach(browser.new_context(**PHONE).new_page())
    sign_in(phone, OPERATOR_KEY, "operator")
    phone.wait_for_selector("#queue li")
    shot(phone, "queue-phone")
    watch.check("operator walk")


def main():
    paid, pending, xss, short, before = setup()
    watch = Watch()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            merchant(browser, paid, pending, xss, before, watch)
            operator(browser, short, watch)
        finally:
            browser.close()
    watch.check("the console")
    say("passed: no policy violation, no console error, no dialog")


if __name__ == "__main__":
    main()

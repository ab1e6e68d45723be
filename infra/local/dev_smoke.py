#!/usr/bin/env python3
"""The README's walk-through, against a running `make dev`, by a machine.

Every provider: a payment created through the API, paid (and paid again)
with the sandbox's command line, completed by its webhook; the DirectPay one
goes on to the casino through SQS and the worker. Then a race: payments of
every provider paid at the provider with no callback, then their callbacks
fired concurrently (duplicates and late, earlier-state ones) at functions
running several instances each (make dev's PAYGATE_FUNCTION_CONCURRENCY),
and the money checked: one completion and one credit per payment, one
casino transfer per top-up, every wallet's balance equal to its entries.
Then README's "Operating it" case with the operators' command line: a
short ToyyibPay payment goes to review, an operator accepts it at the paid
amount (twice: the second replays), and the wallet shows that amount once.
Then the health endpoint, and the scheduled jobs' answers in the gateway's
log. Exits non-zero with a reason on the first thing that is not as it
should be.

Run by infra/local/api-test.sh (so by `make test`); by hand:
    python3 infra/local/dev_smoke.py
"""

import json
import os
from concurrent.futures import ThreadPoolExecutor
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
API = "http://" + os.environ.get("PAYGATE_GATEWAY_ADDR", "127.0.0.1:3000")
SANDBOX = "http://" + os.environ.get("PAYGATE_SANDBOX_ADDR", "127.0.0.1:8900")
KEY = "pk_local_paygate_dev_key"
GATEWAY_LOG = os.path.join(ROOT, ".local", "log", "gateway.log")
SANDBOX_CLI = os.path.join(ROOT, "target", "debug", "sandbox")
OPS_CLI = os.path.join(ROOT, "target", "debug", "ops")
OPERATOR_KEY = "ok_local_paygate_operator_key"

RUN = uuid.uuid4().hex[:10]
PROVIDERS = [
    ("directpay", {"amount": 150000, "currency": "PHP", "casino": {"username": "player1"}}),
    ("paygram", {"amount": 5000000, "currency": "USDT"}),
    ("toyyibpay", {"amount": 9990, "currency": "MYR", "method": "fpx", "description": "Smoke",
                   "customer": {"name": "Aisyah", "email": "a@example.com", "phone": "+60123456789"}}),
    ("qpay", {"amount": 150000, "currency": "MNT"}),
    ("epayment", {"amount": 500000, "currency": "KZT", "return_url": "https://shop.example.com/done"}),
    ("payment_engine", {"amount": 1250, "currency": "USD", "method": "RTP"}),
]


def fail(message):
    print(f"dev-smoke: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def call(method, path, body=None, key=True, idempotency=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(API + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {KEY}")
    if idempotency:
        request.add_header("Idempotency-Key", idempotency)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def until(what, check, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    fail(f"{what} did not happen within {seconds} s")


def sandbox(*args):
    out = subprocess.run([SANDBOX_CLI, *args], capture_output=True, text=True,
                         env={**os.environ, "PAYGATE_SANDBOX_URL": SANDBOX})
    if out.returncode != 0:
        fail(f"sandbox {' '.join(args)}: {out.stderr.strip()}")
    return json.loads(out.stdout)


def control(path, body):
    """A sandbox control call; its JSON answer."""
    request = urllib.request.Request(SANDBOX + path, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        fail(f"sandbox {path}: {e.code} {e.read().decode(errors='replace')}")


# How each provider is paid without a callback, and which callbacks then race:
# (pay path, pay body, [(callback path, body)...]) with {ref} the provider's reference.
RACES = {
    "directpay": ("/_sandbox/directpay/transactions/{ref}/status", {"status": "SUCCESS", "callback": "none"},
                  [("/_sandbox/directpay/transactions/{ref}/callback", {})] * 6
                  + [("/_sandbox/directpay/transactions/{ref}/callback", {"status": "PENDING"})] * 2),
    "paygram": ("/_sandbox/paygram/invoices/{ref}/status", {"status": 2, "callback": "none"},
                [("/_sandbox/paygram/invoices/{ref}/callback", {})] * 6),
    "toyyibpay": ("/_sandbox/toyyibpay/bills/{ref}/attempt", {"status": 1, "callback": "none"},
                  [("/_sandbox/toyyibpay/bills/{ref}/callback", {})] * 6
                  + [("/_sandbox/toyyibpay/bills/{ref}/callback", {"status": 2})] * 2),
    "qpay": ("/_sandbox/qpay/invoices/{ref}/pay", {"type": "CARD", "callback": "none"},
             [("/_sandbox/qpay/invoices/{ref}/callback", {})] * 6),
    # The bank pays as often as it is told; each payment of the invoice calls back.
    "epayment": (None, None, [("/_sandbox/epayment/invoices/{ref}/pay", {"status": "CHARGE"})] * 6),
    # Signed events: the same event delivered concurrently, and fresh ones.
    "payment_engine": (None, None,
                       [("/_sandbox/payment-engine/transactions/{ref}/settle",
                         {"status": "COMPLETED", "event_id": "evt_race_{ref}"})] * 4
                       + [("/_sandbox/payment-engine/transactions/{ref}/settle", {"status": "COMPLETED"})] * 2),
}


def ops(*args):
    """The operators' command line against make dev; its JSON answer(s)."""
    out = subprocess.run([OPS_CLI, *args], capture_output=True, text=True,
                         env={**os.environ, "PAYGATE_URL": API, "PAYGATE_OPERATOR_KEY": OPERATOR_KEY})
    if out.returncode != 0:
        fail(f"ops {' '.join(args)}: {out.stderr.strip()}")
    if args[0] == "queue":
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    return json.loads(out.stdout)


def operating_it():
    """README's "Operating it", by the operators' command line."""
    user = f"u_smoke_review_{RUN}"
    body = {"provider": "toyyibpay", "amount": 9990, "currency": "MYR", "wallet_user_id": user,
            "reference": f"SMOKE-review-{RUN}",
            "customer": {"email": "a@example.com", "phone": "+60123456789"}}
    status, created = call("POST", "/v1/payments", body, idempotency=f"smoke-review-{RUN}")
    if status != 201:
        fail(f"create the short payment: {status} {created}")
    pid = created["id"]
    control(f"/_sandbox/toyyibpay/bills/{created['provider_reference']}/attempt",
            {"status": 1, "amount_sen": 9900})

    def in_review():
        status, p = call("GET", f"/v1/payments/{pid}")
        return p if status == 200 and p["status"] == "needs_review" else None
    p = until("the short payment reaching review", in_review)
    if p.get("confirmed_amount") != 9900:
        fail(f"the review should record ToyyibPay's 9900: {p}")
    listed = [i for i in ops("queue", "--kind", "payment_review") if i["payment_id"] == pid]
    if len(listed) != 1 or listed[0]["actions"] != ["accept", "reject"]:
        fail(f"ops queue should list the payment once with its actions: {listed}")
    for _ in range(2):
        accepted = ops("accept", pid, "--reason", "payer paid RM 99.00 (ToyyibPay portal)")
        if accepted["status"] != "completed" or accepted["history"][-1]["action"] != "accept":
            fail(f"ops accept: {accepted}")
    entries, balances = wallet_entries(user)
    credits = [e for e in entries if e["kind"] == "credit"]
    if balances != [{"currency": "MYR", "amount": 9900}] or len(credits) != 1:
        fail(f"the wallet should show 9900 once: {balances} {entries}")
    if any(i["payment_id"] == pid for i in ops("queue")):
        fail("an accepted payment should leave the queue")
    print(f"dev-smoke: operating it: {pid} short, in review, accepted by ops at 9900, credited once")


def wallet_entries(user):
    """Every entry of the wallet, through its cursor, and its balances."""
    entries, cursor, balances = [], None, None
    while True:
        path = f"/v1/wallets/{user}" + (f"?cursor={cursor}" if cursor else "")
        status, page = call("GET", path)
        if status != 200:
            fail(f"wallet {user}: {status} {page}")
        balances = page["balances"]
        entries += page["entries"]
        cursor = page["next_cursor"]
        if not cursor:
            return entries, balances


def race():
    created = []
    for provider, extra in PROVIDERS:
        for n in range(2):
            user = f"u_race_{provider}_{n}_{RUN}"
            body = {"provider": provider, "reference": f"RACE-{provider}-{n}-{RUN}",
                    "wallet_user_id": user, **extra}
            status, p = call("POST", "/v1/payments", body, idempotency=f"race-{provider}-{n}-{RUN}")
            if status != 201:
                fail(f"race create {provider}: {status} {p}")
            pay_path, pay_body, callbacks = RACES[provider]
            ref = p["provider_reference"]
            if pay_path:
                control(pay_path.format(ref=ref), pay_body)
            created.append((provider, p, user, extra, ref, callbacks))
    shots = []
    for provider, p, user, extra, ref, callbacks in created:
        for path, body in callbacks:
            body = {k: (v.format(ref=ref) if isinstance(v, str) else v) for k, v in body.items()}
            shots.append((provider, path.format(ref=ref), body))
    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(lambda s: (s[0], control(s[1], s[2]).get("delivered")), shots))
    odd = [a for a in answers if a[1] not in (200, 503)]
    if odd:
        fail(f"race: callbacks answered other than 200 or 503: {odd}")
    print(f"dev-smoke: race: {len(shots)} concurrent callbacks for {len(created)} payments")

    for provider, p, user, extra, ref, _ in created:
        pid = p["id"]

        def settled():
            status, got = call("GET", f"/v1/payments/{pid}")
            if status != 200 or got["status"] != "completed":
                return None
            if "casino" in extra and got.get("topup", {}).get("status") != "done":
                return None
            return got
        got = until(f"race: {provider} {pid} completing", settled)
        completions = [h for h in got["history"] if h["status"] == "completed"]
        if len(completions) != 1:
            fail(f"race: {pid} completed {len(completions)} times: {got['history']}")
        entries, balances = wallet_entries(user)
        credits = [e for e in entries if e["kind"] == "credit" and e["payment_id"] == pid]
        if len(credits) != 1 or credits[0]["amount"] != extra["amount"]:
            fail(f"race: {pid} credited {credits}, expected one credit of {extra['amount']}")
        net = {}
        for e in entries:
            net[e["currency"]] = net.get(e["currency"], 0) + (e["amount"] if e["kind"] == "credit" else -e["amount"])
        held = {b["currency"]: b["amount"] for b in balances}
        if held != net:
            fail(f"race: {user} balances {held} differ from its entries {net}")
        if "casino" in extra:
            nonce = "paygate-" + pid.removeprefix("pay_")
            with urllib.request.urlopen(SANDBOX + "/_sandbox/casino/transfers", timeout=30) as r:
                transfers = [t for t in json.loads(r.read()) if t["nonce"] == nonce]
            if len(transfers) != 1:
                fail(f"race: {pid} reached the casino {len(transfers)} times")
    print("dev-smoke: race: one completion, one credit, one casino transfer each; balances equal entries")


def main():
    payments = {}
    for provider, extra in PROVIDERS:
        user = f"u_smoke_{provider}_{RUN}"
        body = {"provider": provider, "reference": f"SMOKE-{provider}-{RUN}", "wallet_user_id": user, **extra}
        status, created = call("POST", "/v1/payments", body, idempotency=f"smoke-{provider}-{RUN}")
        if status != 201:
            fail(f"create {provider}: {status} {created}")
        report = sandbox("trigger", provider, "duplicate", created["id"])
        answers = [d["answer"] for d in report["deliveries"]]
        if answers != [200, 200]:
            fail(f"{provider}: the webhook answered {answers}: {report}")
        payments[provider] = (created["id"], user, extra)
        print(f"dev-smoke: {provider}: {created['id']} paid twice, answered {answers}")

    for provider, (pid, user, extra) in payments.items():
        def completed():
            status, p = call("GET", f"/v1/payments/{pid}")
            return p if status == 200 and p["status"] == "completed" else None
        p = until(f"{provider} completing", completed)
        status, wallet = call("GET", f"/v1/wallets/{user}")
        credits = [e for e in wallet["entries"] if e["kind"] == "credit"]
        if len(credits) != 1 or credits[0]["amount"] != extra["amount"]:
            fail(f"{provider}: credited {credits}, expected one credit of {extra['amount']}")

    # The casino top-up went through SQS and the worker, once.
    pid, user, extra = payments["directpay"]

    def topped_up():
        status, p = call("GET", f"/v1/payments/{pid}")
        return p if p.get("topup", {}).get("status") == "done" else None
    p = until("the casino top-up", topped_up)
    status, wallet = call("GET", f"/v1/wallets/{user}")
    if wallet["balances"] != [{"currency": "PHP", "amount": 0}]:
        fail(f"the wallet should be empty after the top-up: {wallet['balances']}")
    print(f"dev-smoke: casino top-up done ({p['topup']['casino_transaction_id']}), wallet back to 0")

    race()
    operating_it()

    status, health = call("GET", "/v1/health", key=False)
    if status != 200 or health["status"] != "ok":
        fail(f"health: {status} {health}")
    unseen = [name for name in ("directpay", "casino") if not health["providers"][name]["last_success"]]
    if unseen:
        fail(f"health never saw a success from {unseen}: {health}")
    print("dev-smoke: health ok")

    def scheduled():
        try:
            with open(GATEWAY_LOG) as log:
                text = log.read()
        except OSError:
            return None
        ran = {job for job in ("job-sweep", "job-reconcile") if f"schedule {job}: {{" in text}
        return ran if len(ran) == 2 else None
    until("both scheduled jobs answering", scheduled, seconds=90)
    print("dev-smoke: job-sweep and job-reconcile ran on their local schedule")
    print("dev-smoke: ok")


if __name__ == "__main__":
    main()

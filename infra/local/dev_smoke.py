#!/usr/bin/env python3
"""The README's walk-through, against a running `make dev`, by a machine.

Every provider: a payment created through the API, paid (and paid again)
with the sandbox's command line, completed by its webhook; the DirectPay one
goes on to the casino through SQS and the worker. Then the wallet, the
health endpoint, and the scheduled jobs' answers in the gateway's log.
Exits non-zero with a reason on the first thing that is not as it should be.

Run by infra/local/api-test.sh (so by `make test`); by hand:
    python3 infra/local/dev_smoke.py
"""

import json
import os
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

#!/usr/bin/env python3
"""Events to the merchant, end to end, against a running `make dev`, checked
with the official Standard Webhooks library (`standardwebhooks` on PyPI,
pinned in requirements-api-test.txt).

A loopback receiver is registered as an endpoint; a DirectPay payment is
paid through the sandbox; the receiver gets `payment.completed`, which the
library verifies with the endpoint's secret. The secret is rotated: the
next delivery carries two signatures, and the library verifies it with the
old secret and with the new one. A receiver that refuses the first attempt
gets the event again with the same `webhook-id`. The log shows each
delivered. `sandbox listen` prints an event as it arrives, checked. Exits non-zero with a reason on the first thing that is not as
it should be.

Run by infra/local/api-test.sh (so by `make test`), with the schemathesis
virtualenv's Python (it holds the library).
"""

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
import urllib.error
import urllib.request
import uuid

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

API = "http://" + os.environ.get("PAYGATE_GATEWAY_ADDR", "127.0.0.1:3000")
SANDBOX = "http://" + os.environ.get("PAYGATE_SANDBOX_ADDR", "127.0.0.1:8900")
KEY = "pk_local_paygate_dev_key"
RUN = uuid.uuid4().hex[:8]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SANDBOX_CLI = os.path.join(ROOT, "target", "debug", "sandbox")


def fail(message):
    print(f"events-e2e: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def say(message):
    print(f"events-e2e: {message}", flush=True)


def call(method, path, body=None, key=True, base=API):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {KEY}")
        if method == "POST":
            request.add_header("Idempotency-Key", uuid.uuid4().hex)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


class Receiver(http.server.BaseHTTPRequestHandler):
    """Records every delivery; `/refuse-once` answers 500 the first time."""

    got = []
    refused = set()
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with Receiver.lock:
            Receiver.got.append((self.path, dict(self.headers), body))
            refuse = self.path == "/refuse-once" and self.path not in Receiver.refused
            if refuse:
                Receiver.refused.add(self.path)
        self.send_response(500 if refuse else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def deliveries(path, payment_id):
    """What `path` received about `payment_id`: (headers, body bytes)."""
    out = []
    with Receiver.lock:
        for p, headers, body in Receiver.got:
            if p == path and json.loads(body)["data"].get("id") == payment_id:
                out.append(({k.lower(): v for k, v in headers.items()}, body))
    return out


def wait_for(path, payment_id, count, seconds=90):
    deadline = time.time() + seconds
    while time.time() < deadline:
        got = deliveries(path, payment_id)
        if len(got) >= count:
            return got
        time.sleep(0.5)
    fail(f"{path}: {len(deliveries(path, payment_id))} deliveries about {payment_id} in {seconds} s, not {count}")


def endpoint(base, path, events):
    status, body = call("POST", "/v1/webhook-endpoints",
                        {"url": base + path, "events": events, "description": f"e2e {RUN}"})
    if status != 201:
        fail(f"creating an endpoint answered {status}: {body}")
    return body


STORM = {"directpay": {"amount": 10000, "currency": "PHP"},
         "qpay": {"amount": 10000, "currency": "MNT"}}


def paid_payment(provider="directpay", events=("paid",)):
    status, payment = call("POST", "/v1/payments", {
        "provider": provider, **STORM[provider],
        "reference": f"ORD-EVT-{RUN}-{uuid.uuid4().hex[:8]}", "wallet_user_id": f"u_evt_{RUN}"})
    if status != 201:
        fail(f"create answered {status}: {payment}")
    for event in events:
        status, report = call("POST", "/_sandbox/trigger",
                              {"provider": provider, "event": event, "payment_id": payment["id"]},
                              key=False, base=SANDBOX)
        if status != 200:
            fail(f"the sandbox's trigger answered {status}: {report}")
    return payment["id"]


def storm(base, created, size=100):
    """`size` payments, each paid with a duplicate callback and then with
    callbacks out of order, eight at a time: each payment.completed arrives
    once, verified by the library."""
    ep = endpoint(base, "/storm", ["payment.completed"])
    created.append(ep["id"])
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: paid_payment(["directpay", "qpay"][i % 2],
                                                   ("duplicate", "out-of-order")), range(size)))
    deadline = time.time() + 120
    while True:
        with Receiver.lock:
            got = [(h, b) for p, h, b in Receiver.got if p == "/storm"]
        if len(got) >= size or time.time() > deadline:
            break
        time.sleep(0.5)
    time.sleep(2)  # anything more would come now
    with Receiver.lock:
        got = [({k.lower(): v for k, v in h.items()}, b) for p, h, b in Receiver.got if p == "/storm"]
    per_payment = {}
    for headers, body in got:
        event = verify(ep["secret"], headers, body, "a storm's delivery")
        per_payment.setdefault(event["data"]["id"], set()).add(event["id"])
    missing = [i for i in ids if i not in per_payment]
    twice = {k: v for k, v in per_payment.items() if len(v) > 1}
    if missing or twice or len(got) != size:
        fail(f"storm: {len(got)} deliveries for {size} payments; missing {missing[:3]}, told twice {list(twice)[:3]}")
    say(f"storm: {size} payments with duplicate and out-of-order callbacks, each payment.completed once, verified")


def verify(secret, headers, body, what):
    try:
        event = Webhook(secret).verify(body, {
            "webhook-id": headers["webhook-id"],
            "webhook-timestamp": headers["webhook-timestamp"],
            "webhook-signature": headers["webhook-signature"]})
    except WebhookVerificationError as e:
        fail(f"{what}: the Standard Webhooks library refused the delivery: {e}")
    if event["id"] != headers["webhook-id"]:
        fail(f"{what}: webhook-id {headers['webhook-id']} is not the event's id {event['id']}")
    return event


def listen():
    """`sandbox listen` registers its own endpoint and prints each event,
    its signature checked; Ctrl-C removes the endpoint."""
    env = dict(os.environ, PAYGATE_API_URL=API, PAYGATE_API_KEY=KEY)
    cli = subprocess.Popen([SANDBOX_CLI, "listen", "payment.completed"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(cli.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.time() + 30
        while not any("listening on" in l for l in lines):
            if time.time() > deadline or cli.poll() is not None:
                fail(f"sandbox listen did not start: {lines}")
            time.sleep(0.2)
        paid = paid_payment()
        deadline = time.time() + 90
        while not any(paid in l for l in lines):
            if time.time() > deadline:
                fail(f"sandbox listen printed nothing about {paid}: {lines}")
            time.sleep(0.5)
        line = next(l for l in lines if paid in l)
        if "payment.completed" not in line or "signature ok" not in line:
            fail(f"sandbox listen printed {line!r}")
    finally:
        cli.send_signal(signal.SIGINT)
        try:
            cli.wait(timeout=10)
        except subprocess.TimeoutExpired:
            cli.kill()
    reader.join(timeout=5)
    if not any("removed" in l for l in lines):
        fail(f"sandbox listen did not remove its endpoint: {lines}")
    say("sandbox listen printed the event, its signature checked, and removed its endpoint")


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    created = []
    try:
        ok = endpoint(base, "/ok", ["payment.completed"])
        created.append(ok["id"])
        first = paid_payment()
        headers, body = wait_for("/ok", first, 1)[0]
        event = verify(ok["secret"], headers, body, "first delivery")
        if event["type"] != "payment.completed" or event["data"]["status"] != "completed":
            fail(f"the event is {event['type']} with status {event['data'].get('status')}")
        say("payment.completed delivered and verified by the standardwebhooks library")

        status, rotated = call("POST", f"/v1/webhook-endpoints/{ok['id']}/rotate-secret", {})
        if status != 200:
            fail(f"rotate-secret answered {status}: {rotated}")
        second = paid_payment()
        headers, body = wait_for("/ok", second, 1)[0]
        if len(headers["webhook-signature"].split(" ")) != 2:
            fail(f"after a rotation: {headers['webhook-signature']!r} is not two signatures")
        verify(ok["secret"], headers, body, "after rotation, the old secret")
        verify(rotated["secret"], headers, body, "after rotation, the new secret")
        say("during a rotation both the old and the new secret verify")

        flaky = endpoint(base, "/refuse-once", ["payment.*"])
        created.append(flaky["id"])
        third = paid_payment()
        got = wait_for("/refuse-once", third, 2)
        ids = {h["webhook-id"] for h, _ in got}
        if len(ids) != 1:
            fail(f"a retry came with another webhook-id: {ids}")
        for h, b in got:
            verify(flaky["secret"], h, b, "a retried delivery")
        status, log = call("GET", f"/v1/events?payment_id={third}")
        if status != 200 or log["data"][0]["deliveries"][0]["status"] != "delivered":
            fail(f"the log: {status} {log}")
        say("a refused delivery came again with the same webhook-id; the log shows it delivered")
        storm(base, created)
        listen()
    finally:
        for we in created:
            call("DELETE", f"/v1/webhook-endpoints/{we}")
        server.shutdown()
    say("ok")


if __name__ == "__main__":
    main()

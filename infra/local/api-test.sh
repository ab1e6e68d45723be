#!/usr/bin/env bash
# make api-test: the running system, end to end.
#   Starts `make dev` (infra/local/dev.sh) in the background with its
#   schedules every 5 seconds, waits for it, then
#   1. dev_smoke.py: every provider paid through the sandbox's command line
#      and completed by its webhook, a casino top-up through SQS and the
#      worker, the health endpoint, both scheduled jobs answering;
#      then events_e2e.py: events delivered to a loopback endpoint and
#      verified by the Standard Webhooks library, through a rotation and a
#      retry; then browser.sh: every provider's payer page in headless Chromium
#      (installed from Debian's packages the first time), paid through the
#      sandbox's provider pages, and the console walked as a merchant and an
#      operator;
#   2. schemathesis (pinned, installed into .local/schemathesis) with a
#      fixed seed and a bounded number of examples per operation: fails on
#      any 5xx, any status, content type or body openapi.yaml does not allow;
#   3. schemathesis again on the operator routes with the operator key;
#   4. no function's AWS call refused by the IAM check (.local/log/iam.log);
#   and stops everything it started.
#   PAYGATE_API_TEST_EXAMPLES (default 25) and PAYGATE_API_TEST_SEED
#   (default 20261123) change the run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.local/schemathesis"
requirements="$root/infra/local/requirements-api-test.txt"
logs="$root/.local/log"
api_addr="${PAYGATE_GATEWAY_ADDR:-127.0.0.1:3000}"
examples="${PAYGATE_API_TEST_EXAMPLES:-25}"
seed="${PAYGATE_API_TEST_SEED:-20261123}"

say() { printf 'paygate-api-test: %s\n' "$*" >&2; }
# 0 when the URL answers 2xx (python3 rather than curl: it is always here).
answers() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)' "$1" 2>/dev/null
}

mkdir -p "$logs"
if ! cmp -s "$requirements" "$venv/.installed" 2>/dev/null; then
  say "installing schemathesis into .local/schemathesis"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/.installed"
fi

if answers "http://$api_addr/v1/health"; then
  say "something already answers on $api_addr; stop it (or set PAYGATE_GATEWAY_ADDR)"
  exit 1
fi

# dev.sh in a session of its own, so stopping it stops everything it runs.
export PAYGATE_SCHEDULE_SECONDS="${PAYGATE_SCHEDULE_SECONDS:-5}"
setsid "$root/infra/local/dev.sh" >"$logs/api-test-dev.log" 2>&1 &
dev=$!
stop() {
  kill -TERM "$dev" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$dev" 2>/dev/null || break; sleep 0.2; done
  kill -TERM -- "-$dev" 2>/dev/null || true
  wait "$dev" 2>/dev/null || true
}
trap stop EXIT

say "starting make dev (log: .local/log/api-test-dev.log)"
for _ in $(seq 1 900); do
  if grep -q 'paygate is running' "$logs/api-test-dev.log" 2>/dev/null; then break; fi
  if ! kill -0 "$dev" 2>/dev/null; then
    tail -20 "$logs/api-test-dev.log" >&2
    say "make dev stopped before it was ready"
    exit 1
  fi
  sleep 1
done
# The Lambda emulator starts a function on its first call: wait for one.
ready=no
for _ in $(seq 1 120); do
  if answers "http://$api_addr/v1/health"; then ready=yes; break; fi
  sleep 1
done
[ "$ready" = yes ] || { say "make dev is not answering on $api_addr"; exit 1; }

python3 "$root/infra/local/dev_smoke.py"
"$venv/bin/python" "$root/infra/local/events_e2e.py"
"$root/infra/local/browser.sh"

say "schemathesis: $examples examples per operation, seed $seed"
# From inside .local: schemathesis (hypothesis) writes caches into its
# working directory, and a file appearing in the workspace makes
# `cargo lambda watch` restart every function, dropping the request in flight.
cd "$venv"
"$venv/bin/st" run "$root/openapi.yaml" \
  --url "http://$api_addr" \
  --header "Authorization: Bearer pk_local_paygate_dev_key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$examples" \
  --seed "$seed" \
  --workers 1 \
  --generation-database none \
  --request-timeout 30 \
  --report junit --report-junit-path "$logs/api-test.junit.xml"

# The operator routes again, with make dev's operator key (above, with the
# merchant key, they may only refuse).
say "schemathesis: the operator routes with the operator's key"
"$venv/bin/st" run "$root/openapi.yaml" \
  --url "http://$api_addr" \
  --header "Authorization: Bearer ok_local_paygate_operator_key" \
  --include-path-regex '^/v1/ops/' \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "$examples" \
  --seed "$seed" \
  --workers 1 \
  --generation-database none \
  --request-timeout 30 \
  --report junit --report-junit-path "$logs/api-test-ops.junit.xml"

# Every function's AWS calls went through the IAM check (make dev's
# `devstack iam`): a refusal anywhere, a scheduled job's included, fails the
# run, since AWS would refuse the same call.
if grep -q 'refused' "$logs/iam.log" 2>/dev/null; then
  grep 'refused' "$logs/iam.log" | sort | uniq -c >&2
  say "calls outside their function's policy in template.yaml (above)"
  exit 1
fi
say "no call outside its function's policy"

#!/usr/bin/env bash
# make dev: the whole of paygate on this machine, in the foreground.
#   DynamoDB Local + moto (stack.sh) behind the IAM check (`devstack iam`:
#   each function signs as itself and is held to its policy in
#   template.yaml), the provider sandbox, every function under
#   `cargo lambda watch`, and a gateway that serves template.yaml's routes
#   and feeds the top-up queue to the worker. Ctrl-C stops it all.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
stack="$root/infra/local/stack.sh"
run="$root/.local/run"
logs="$root/.local/log"
api_addr="${PAYGATE_GATEWAY_ADDR:-127.0.0.1:3000}"
lambda_port="${PAYGATE_LAMBDA_PORT:-9000}"
sandbox_addr="${PAYGATE_SANDBOX_ADDR:-127.0.0.1:8900}"
iam_addr="${PAYGATE_IAM_ADDR:-127.0.0.1:4580}"
paygram_secret="local-paygram-callback-secret"

say() { printf 'paygate-dev: %s\n' "$*" >&2; }

started_stack=no
# Capture first: with pipefail, `status | grep -q` can fail on SIGPIPE.
stack_status="$("$stack" status)"
if [[ "$stack_status" != *"dynamodb: running"* || "$stack_status" != *"moto: running"* ]]; then
  started_stack=yes
fi
"$stack" up >/dev/null
eval "$("$stack" env)"
set -a; . "$run/bootstrap.env"; set +a
export PAYGATE_PUBLIC_BASE_URL="http://$api_addr" PAYGATE_SECRET_PREFIX="paygate/"
# The local stack's namespace (template.yaml's Namespace parameter).
export PAYGATE_NAMESPACE="${PAYGATE_NAMESPACE:-0}"

pids=()
# On Ctrl-C (or TERM) everything started here stops, the stack too when it
# was not running before.
cleanup() {
  trap '' INT TERM
  trap - EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$started_stack" = yes ]; then "$stack" down; fi
  say "stopped"
}
trap cleanup INT TERM EXIT

say "building the functions, the sandbox and the gateway (first time: a few minutes)"
(cd "$root" && cargo build --quiet --workspace --bins)

# The IAM check: every function's AWS calls go through it.
PAYGATE_IAM_ADDR="$iam_addr" "$root/target/debug/devstack" iam >"$logs/iam.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  grep -q 'paygate IAM check on' "$logs/iam.log" 2>/dev/null && break
  sleep 0.2
done

# The functions' environment, as template.yaml's Globals give it in AWS;
# the access key id is each function's own (as-function.sh).
cat >"$run/functions.env" <<ENV
AWS_REGION=$AWS_REGION
AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
AWS_ENDPOINT_URL_DYNAMODB=http://$iam_addr
AWS_ENDPOINT_URL_SQS=http://$iam_addr
AWS_ENDPOINT_URL_SECRETS_MANAGER=http://$iam_addr
PAYGATE_TABLE=$PAYGATE_TABLE
PAYGATE_TOPUP_QUEUE_URL=$PAYGATE_TOPUP_QUEUE_URL
PAYGATE_EVENTS_QUEUE_URL=$PAYGATE_EVENTS_QUEUE_URL
PAYGATE_EVENT_RETRY_SECONDS=${PAYGATE_EVENT_RETRY_SECONDS:-2,4,8,15,30,60,60}
PAYGATE_PUBLIC_BASE_URL=$PAYGATE_PUBLIC_BASE_URL
PAYGATE_SECRET_PREFIX=$PAYGATE_SECRET_PREFIX
PAYGATE_NAMESPACE=$PAYGATE_NAMESPACE
RUST_LOG=info
ENV

PAYGATE_SANDBOX_ADDR="$sandbox_addr" \
PAYGATE_SANDBOX_PAYGRAM_CALLBACK_URL="http://$api_addr/webhooks/paygram/$paygram_secret" \
PAYGATE_SANDBOX_PAYMENT_ENGINE_WEBHOOK_URL="http://$api_addr/webhooks/payment-engine" \
  "$root/target/debug/sandbox" >"$logs/sandbox.log" 2>&1 &
pids+=($!)

# Several instances of each function at once, as Lambda runs them, so two
# callbacks for one payment can race across processes here too. Each runs
# through as-function.sh, which gives it its own access key id.
host="$(rustc -vV | sed -n 's/^host: //p')"
runner_var="CARGO_TARGET_$(printf '%s' "$host" | tr 'a-z-' 'A-Z_')_RUNNER"
(cd "$root" && export "$runner_var=$root/infra/local/as-function.sh" \
  && PATH="$root/.local/venv/bin:$PATH" cargo lambda watch --quiet \
  -A 127.0.0.1 -P "$lambda_port" --concurrency "${PAYGATE_FUNCTION_CONCURRENCY:-4}" \
  --env-file "$run/functions.env") >"$logs/functions.log" 2>&1 &
pids+=($!)

PAYGATE_LAMBDA_URL="http://127.0.0.1:$lambda_port" PAYGATE_GATEWAY_ADDR="$api_addr" \
  "$root/target/debug/devstack" gateway >"$logs/gateway.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do
  grep -q 'paygate API on' "$logs/gateway.log" 2>/dev/null && break
  sleep 0.2
done
# The Lambda emulator takes a moment to listen; the routes work from then.
for _ in $(seq 1 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$lambda_port") 2>/dev/null && break
  sleep 0.2
done

cat <<MSG

paygate is running.

  API (template.yaml's routes)  http://$api_addr
$(sed -n 's/^  /    /p' "$logs/gateway.log")
  API key (local only)          pk_local_paygate_dev_key
  Provider sandbox              http://$sandbox_addr   (controls under /_sandbox/)
  Lambda emulator               http://127.0.0.1:$lambda_port (cargo lambda watch)
  DynamoDB Local                $AWS_ENDPOINT_URL_DYNAMODB   table $PAYGATE_TABLE
  moto (SQS, Secrets Manager)   $AWS_ENDPOINT_URL_SQS
  IAM check (functions' AWS)    http://$iam_addr   (template.yaml's Policies; refusals in iam.log)
  Logs                          .local/log/{functions,gateway,sandbox,iam}.log

Drive a provider:  cargo run -q -p sandbox -- trigger <provider> <paid|failed|expired|duplicate|out-of-order> <payment id>
Inject a fault:    cargo run -q -p sandbox -- faults <path prefix> <fail|delay|hang> [--count N] [--status S]
The README walks through a deposit per provider. Ctrl-C stops everything.
MSG

wait -n "${pids[@]}" || true
say "a process stopped (see .local/log); stopping the rest"

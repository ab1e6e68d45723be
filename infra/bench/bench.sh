#!/usr/bin/env bash
# make bench: release builds of the measured functions and of the bench,
# then the bench under the local stack (started here if it is not running,
# stopped after). Slow, and never part of make test: it reports, it does
# not judge. PAYGATE_BENCH_WARM (default 30) sets the warm invocations.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
say() { printf 'paygate-bench: %s\n' "$*" >&2; }

if (exec 3<>/dev/tcp/127.0.0.1/8900) 2>/dev/null; then
  say "something answers on 127.0.0.1:8900 (make dev?); stop it first: the bench runs its own sandbox there"
  exit 1
fi

# The Node twin's dependencies (pinned in its package-lock.json).
twin="$root/.local/bench-node"
mkdir -p "$twin"
cp "$root/infra/bench/node-twin/index.mjs" "$twin/"
if ! cmp -s "$root/infra/bench/node-twin/package-lock.json" "$twin/package-lock.json"; then
  say "installing the Node twin's AWS SDK into .local/bench-node"
  cp "$root/infra/bench/node-twin/package.json" "$root/infra/bench/node-twin/package-lock.json" "$twin/"
  (cd "$twin" && npm ci --no-audit --no-fund --loglevel=error)
fi

functions=(api-create-payment webhook-directpay worker-casino-topup api-get-payment api-pay-page api-health)
say "release builds of ${functions[*]} and the bench (first time: several minutes)"
(cd "$root" && cargo build --release --locked --quiet $(printf -- '-p %s ' "${functions[@]}") -p bench)

"$root/infra/local/stack.sh" run "$root/target/release/bench"

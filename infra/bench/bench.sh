#!/usr/bin/env bash
# make bench: release builds of the measured functions and of the bench,
# then the bench under the local stack (started here if it is not running,
# stopped after). Slow, and never part of make test: it reports times and
# never judges them (a broken money invariant stops it, though).
# PAYGATE_BENCH_WARM (default 30) sets the warm invocations;
# PAYGATE_BENCH_STORM (default 50) the storm's payments per provider,
# PAYGATE_BENCH_IN_FLIGHT (default 12) how many at once and
# PAYGATE_BENCH_INSTANCES (default 4) the processes per function.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
say() { printf 'paygate-bench: %s\n' "$*" >&2; }

for port in 8900 3000; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    say "something answers on 127.0.0.1:$port (make dev?); stop it first: the bench runs its own sandbox and gateway there"
    exit 1
  fi
done

# The Node twin's dependencies (pinned in its package-lock.json).
twin="$root/.local/bench-node"
mkdir -p "$twin"
cp "$root/infra/bench/node-twin/index.mjs" "$twin/"
if ! cmp -s "$root/infra/bench/node-twin/package-lock.json" "$twin/package-lock.json"; then
  say "installing the Node twin's AWS SDK into .local/bench-node"
  cp "$root/infra/bench/node-twin/package.json" "$root/infra/bench/node-twin/package-lock.json" "$twin/"
  (cd "$twin" && npm ci --no-audit --no-fund --loglevel=error)
fi

# Every function: the storm runs the whole system behind the gateway.
functions=()
for dir in "$root"/functions/*/; do
  [ -f "$dir/Cargo.toml" ] && functions+=("$(basename "$dir")")
done
say "release builds of ${#functions[@]} functions and the bench (first time: 15 minutes or more on 2 cores)"
(cd "$root" && cargo build --release --locked --quiet $(printf -- '-p %s ' "${functions[@]}") -p bench)

"$root/infra/local/stack.sh" run "$root/target/release/bench"

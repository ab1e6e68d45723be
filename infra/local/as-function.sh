#!/usr/bin/env bash
# cargo's target runner for make dev's `cargo lambda watch` (set through
# CARGO_TARGET_<host>_RUNNER by dev.sh): each function signs its AWS calls
# as itself, its access key id its binary's name, so the local IAM check
# (`devstack iam`) holds it to its own policy in template.yaml.
set -euo pipefail
AWS_ACCESS_KEY_ID="$(basename "$1")"
export AWS_ACCESS_KEY_ID
exec "$@"

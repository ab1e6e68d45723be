#!/usr/bin/env bash
# The payer's pages and the console in a real browser, against a running `make dev`:
#   installs Debian's Chromium the first time (apt-get; as root, or with
#   sudo), the pinned Playwright and QR decoder into .local/browser, then
#   runs infra/local/browser_test.py (the payers' pages), then
#   infra/local/console_test.py (the console, as a merchant and an operator).
#   Screenshots land in .local/screenshots.
#   Run by infra/local/api-test.sh (so by `make test`).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.local/browser"
requirements="$root/infra/local/requirements-browser.txt"
logs="$root/.local/log"
chromium="${PAYGATE_CHROMIUM:-/usr/bin/chromium}"

say() { printf 'paygate-browser: %s\n' "$*" >&2; }
mkdir -p "$logs"

if [ ! -x "$chromium" ]; then
  say "installing Debian's chromium (apt-get; log: .local/log/apt.log)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { say "chromium is missing and this user cannot install it: apt-get install chromium"; exit 1; }
    sudo="sudo -n"
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! $sudo apt-get install -y --no-install-recommends chromium >"$logs/apt.log" 2>&1; then
    # Package lists may be missing or stale on a fresh machine.
    $sudo apt-get update >>"$logs/apt.log" 2>&1
    $sudo apt-get install -y --no-install-recommends chromium >>"$logs/apt.log" 2>&1 \
      || { tail -20 "$logs/apt.log" >&2; say "apt-get install chromium failed"; exit 1; }
  fi
fi

if ! cmp -s "$requirements" "$venv/.installed" 2>/dev/null; then
  say "installing playwright and zxing-cpp into .local/browser"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/.installed"
fi

PAYGATE_CHROMIUM="$chromium" "$venv/bin/python" "$root/infra/local/browser_test.py"
PAYGATE_CHROMIUM="$chromium" "$venv/bin/python" "$root/infra/local/console_test.py"

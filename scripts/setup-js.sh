#!/usr/bin/env bash
# Debian packages the js target needs, installed only when missing (idempotent):
#   nodejs + npm  runs the Node harness (targets/js/harness.mjs); its npm packages are installed
#                 by deploykit itself on first use (npm ci into ~/.cache/deploykit/js-<lockhash>)
#   chromium      the headless browser check (driven by playwright-core; no browser download)
# Skip the browser check instead with --js-backends cpu,wasm (or [js] backends in --config).
set -euo pipefail

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ -x /usr/bin/chromium ] || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-js: node $(node --version), npm $(npm --version 2>/dev/null), $(/usr/bin/chromium --version 2>/dev/null) already installed"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup-js: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"

#!/usr/bin/env bash
# Install (if needed) and run every test, slow ones included. Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m "not slow"` for the quick loop.
# Installs what the tests need: the pinned Python stack (.venv), Node.js + npm and Chromium for the
# js target, and the services the docker tests use (started on loopback only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-js.sh
bash scripts/setup-docker.sh
# serving: the contract tests build FROM the cached STAND-IN (tensorflow/serving cannot be pulled here)
export DEPLOYKIT_SERVING_BASE_IMAGE="${DEPLOYKIT_SERVING_BASE_IMAGE:-$(.venv/bin/python -m tests.serving_standin)}"
exec .venv/bin/python -m pytest "$@"

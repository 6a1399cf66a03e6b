#!/usr/bin/env bash
# Install (if needed) and run every test, slow ones included. Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m "not slow"` for the quick loop.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"

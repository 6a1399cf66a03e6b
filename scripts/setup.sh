#!/usr/bin/env bash
# Install deploykit and its pinned stack (requirements.lock) into ./.venv. Safe to re-run: it
# does nothing when the lock and pyproject.toml have not changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "deploykit needs Python 3.11 (set PYTHON=...)")'

# bubblewrap: the sandbox model files from elsewhere are loaded and converted in (deploykit/sandbox.py)
if ! command -v bwrap >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "[setup] installing bubblewrap (Debian) ..." >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq bubblewrap >/dev/null
fi

stamp=.venv/.deploykit-installed
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
echo "[setup] installing the pinned stack into .venv (about a minute, ~3 GB) ..." >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip==24.3.1
.venv/bin/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[test]'
.venv/bin/python -m pip check >&2
echo "$want" > "$stamp"
echo "[setup] done: .venv/bin/deploykit" >&2

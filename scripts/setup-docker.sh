#!/usr/bin/env bash
# Docker for the serving target's tests (idempotent; run as root, as CI does):
#   - installs Debian's docker.io, docker-registry and debootstrap if missing;
#   - starts dockerd (unix socket only, no iptables, no bridge: containers use --network host)
#     with its log in /tmp/deploykit-dockerd.log, and waits until `docker info` answers;
#   - starts a real local registry (Debian's docker-registry, no auth) on 127.0.0.1:5000 with
#     its own config (/tmp/deploykit-registry/config.yml), log in /tmp/deploykit-registry.log.
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
    echo "[setup-docker] installing ${need[*]} ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    echo "[setup-docker] starting dockerd (log: /tmp/deploykit-dockerd.log) ..." >&2
    nohup dockerd --iptables=false --bridge=none -H unix:///var/run/docker.sock \
        >/tmp/deploykit-dockerd.log 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { echo "[setup-docker] dockerd did not answer within 60 s; see /tmp/deploykit-dockerd.log" >&2; exit 1; }
fi

registry_up() { python3 - <<'EOF'
import sys, urllib.request
try:
    urllib.request.urlopen("http://127.0.0.1:5000/v2/", timeout=2)
except Exception:
    sys.exit(1)
EOF
}

if ! registry_up; then
    conf=/tmp/deploykit-registry/config.yml
    mkdir -p /tmp/deploykit-registry/data
    cat > "$conf" <<'EOF'
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: /tmp/deploykit-registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
EOF
    echo "[setup-docker] starting docker-registry on 127.0.0.1:5000 (log: /tmp/deploykit-registry.log) ..." >&2
    nohup docker-registry serve "$conf" >/tmp/deploykit-registry.log 2>&1 </dev/null &
    for _ in $(seq 1 30); do
        registry_up && break
        sleep 1
    done
    registry_up || { echo "[setup-docker] the registry did not answer within 30 s; see /tmp/deploykit-registry.log" >&2; exit 1; }
fi
echo "[setup-docker] docker and the local registry (127.0.0.1:5000) are up" >&2

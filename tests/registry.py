"""A real OCI registry for publish tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1.

Started with our own config file in a temp folder, on a free port, optionally with htpasswd basic
auth (bcrypt hashes, made with the `bcrypt` package). Installed with apt when missing (CI machines
are fresh). Always stopped in `finally`; its log is shown when it does not come up.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

BINARY = "/usr/bin/docker-registry"


def ensure_installed() -> str:
    if not Path(BINARY).exists():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "docker-registry"], check=True, capture_output=True, env=env)
        # Debian starts the packaged service on :5000 with its own config: tests use their own instance
        subprocess.run(["systemctl", "stop", "docker-registry"], capture_output=True)
    return BINARY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    username: str | None
    password: str | None

    def ref(self, repo: str, tag: str) -> str:
        return f"oci+http://{self.host}/{repo}:{tag}"

    def env(self) -> dict[str, str]:
        if not self.username:
            return {}
        return {"DEPLOYKIT_REGISTRY_USERNAME": self.username, "DEPLOYKIT_REGISTRY_PASSWORD": self.password}


@contextlib.contextmanager
def running_registry(workdir: Path, *, auth: bool = False):
    binary = ensure_installed()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    user = password = None
    auth_block = ""
    if auth:
        import bcrypt

        user, password = "ci-publisher", "s3cret-for-tests"
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
        (workdir / "htpasswd").write_text(f"{user}:{hashed}\n")
        auth_block = f"auth:\n  htpasswd:\n    realm: deploykit-tests\n    path: {workdir / 'htpasswd'}\n"
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {workdir / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth_block}"
    )
    log = open(workdir / "registry.log", "wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                code = requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code
                if code in (200, 401):
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not start: {(workdir / 'registry.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield Registry(f"127.0.0.1:{port}", user, password)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(workdir / "data", ignore_errors=True)

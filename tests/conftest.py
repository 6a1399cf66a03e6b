"""Shared fixtures. Tests call `deploykit.build` in-process (one TensorFlow import for the whole
session) unless they test the CLI itself, which runs as a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# These machines have no GPU: skip TensorFlow's CUDA probing in the tests and their child processes
# (deploykit itself leaves GPUs visible to its users).
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

# Short latency runs: tests check that figures are measured and recorded, not how fast they are
# (speed goals live in benchmarks/).
FAST = {"latency": {"warmup": 2, "iterations": 20, "max_seconds": 1.0}, "example_epochs": 3}
NO_LATENCY = {"latency": {"enabled": False}, "example_epochs": 3}
# The same short latency runs as a --config file, for builds through the CLI.
FAST_TOML = """example_epochs = 2
[latency]
warmup = 2
iterations = 20
max_seconds = 1.0
"""


@pytest.fixture
def fast():
    return dict(FAST)


@pytest.fixture
def no_latency():
    return dict(NO_LATENCY)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real `deploykit` CLI in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "deploykit", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def keras():
    from deploykit.tfenv import tf_keras

    return tf_keras()


@pytest.fixture(scope="session")
def tf():
    from deploykit.tfenv import tensorflow

    return tensorflow()


# ---- Docker ------------------------------------------------------------------------------------
class Containers:
    """deploykit's containers on the daemon that were not there when a module started: another suite's on
    a shared daemon (or a killed build's, until a build sweeps it) are not this module's to count."""

    def __init__(self, c) -> None:
        from deploykit.targets.serving import container as ctr

        self.c, self._ctr = c, ctr
        self.before = set(ctr.leftover_containers(c))

    def left(self) -> list[str]:
        return sorted(set(self._ctr.leftover_containers(self.c)) - self.before)


@pytest.fixture(scope="module")
def containers():
    """A Docker client (fails loudly, exit-4 error, when no daemon runs: CI starts one) and, at the end,
    the assertion that no container this module started is left behind."""
    from deploykit.targets.serving import container as ctr

    seen = Containers(ctr.client())
    yield seen
    assert seen.left() == [], "containers left behind"


@pytest.fixture(scope="module")
def docker_client(containers):
    return containers.c


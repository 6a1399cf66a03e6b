"""Helpers for the reliability tests (tests/test_reliability_*.py): the common criterion every failure
case must meet, checked on the real CLI in a child process.

Common criterion: the documented exit code; exactly one `deploykit: error:` line on stderr naming
the file or field and the problem (no traceback); with `--json`, an error object with a stable code;
the output folder absent or byte-identical to before; no staging folder, temporary file or child
process left behind.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .conftest import ROOT


class Workspace:
    """A folder to run the CLI in: a previous output `out`, its own TMPDIR to catch leftovers."""

    def __init__(self, root: Path, previous: bool = True):
        self.root = root
        self.tmp = root / "tmpdir"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.out = root / "out"
        if previous:
            write_previous_output(self.out)
        self.before = snapshot(self.out)

    def env(self, **extra: str) -> dict:
        return {"TMPDIR": str(self.tmp), "PYTHONPATH": str(ROOT), **extra}

    def cli(self, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "deploykit", *args], cwd=self.root, capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, **self.env(), **(env or {})}, stdin=subprocess.DEVNULL)

    def popen(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "deploykit", *args], cwd=self.root, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, **self.env(), **(env or {})},
                                stdin=subprocess.DEVNULL)

    def assert_untouched(self) -> None:
        assert snapshot(self.out) == self.before, "the previous output changed"
        assert_no_leftovers(self.root, self.tmp)


def write_previous_output(out: Path) -> None:
    """A small previous deploykit output (what a failed build must leave byte-identical)."""
    (out / "tflite").mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps({"deploykit_version": "0.0-previous"}))
    (out / "tflite" / "model_float32.tflite").write_bytes(b"previous artifact")


def snapshot(folder: Path) -> dict[str, bytes] | None:
    if not folder.exists():
        return None
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_no_leftovers(root: Path, tmp: Path | None = None) -> None:
    stale = [p.name for p in root.iterdir() if any(k in p.name for k in (".staging-", ".old-", ".tmp-"))]
    assert not stale, f"left behind: {stale}"
    if tmp is not None:
        assert not list(tmp.iterdir()), f"temporary files left behind: {[p.name for p in tmp.iterdir()]}"


def assert_failure(proc: subprocess.CompletedProcess, exit_code: int, code: str, *names: str, as_json: bool = True) -> str:
    """The documented exit code, one error line naming `names`, and the stable `--json` code.
    Returns the error line."""
    assert proc.returncode == exit_code, f"exit {proc.returncode}, expected {exit_code}:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("deploykit: error:")]
    assert len(errors) == 1, f"expected one error line:\n{proc.stderr[-3000:]}"
    for name in names:
        assert name in errors[0], f"{name!r} not named in {errors[0]!r}"
    if as_json:
        body = json.loads(proc.stdout)["error"]
        assert body["code"] == code and body["exit_code"] == exit_code, body
    return errors[0]


def children_of(pid: int) -> list[int]:
    """Processes still running that deploykit (pid) started as runtimes (they carry its pid)."""
    found = []
    marker = f"DEPLOYKIT_PARENT_PID={pid}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_no_children(pid: int, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in children_of(pid) if not _zombie(p)]
        if not alive:
            return []
        time.sleep(0.2)
    return alive


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


class Listener:
    """A TCP listener on 127.0.0.1 that records every connection (for "nothing was contacted")."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections: list = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while True:
            try:
                conn, addr = self.sock.accept()
            except OSError:
                return
            self.connections.append(addr)
            conn.close()

    def close(self):
        self.sock.close()


class FileCanary:
    """A file whose reading is detectable: its access time is set far before its modification time,
    so any read updates it (Linux `relatime` updates atime when it is older than mtime)."""

    def __init__(self, path: Path, data: bytes = b"canary\n"):
        self.path = path
        path.write_bytes(data)
        self.arm()

    def arm(self) -> None:
        os.utime(self.path, (0, time.time()))

    @property
    def read(self) -> bool:
        return os.stat(self.path).st_atime > 0

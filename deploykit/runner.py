"""Run a runtime harness in a child process and read back its JSON result.

Native runtimes can crash (a bad flatbuffer, a kernel bug). In a child process a crash becomes a
clear error for one artifact instead of a dead CLI.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path


def run_child(cmd: list[str], request: dict, work: Path, *, timeout: float, label: str, env: dict | None = None) -> dict:
    token = uuid.uuid4().hex[:8]
    req_path = work / f"{token}.request.json"
    resp_path = work / f"{token}.response.json"
    req_path.write_text(json.dumps({**request, "response": str(resp_path)}))
    child_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.run(
            cmd + [str(req_path)], capture_output=True, text=True, timeout=timeout, env=child_env, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"{label}: runtime did not finish within {timeout:.0f} s"}
    except FileNotFoundError as exc:
        return {"ok": False, "error": f"{label}: cannot start runtime ({exc})"}
    if resp_path.exists():
        try:
            result = json.loads(resp_path.read_text())
        except json.JSONDecodeError:
            result = None
        if result is not None:
            return result
    tail = _tail(proc.stderr)
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        return {"ok": False, "error": f"{label}: runtime crashed ({name}){tail}"}
    return {"ok": False, "error": f"{label}: runtime exited with code {proc.returncode}{tail}"}


def _tail(stderr: str, lines: int = 3) -> str:
    useful = [ln for ln in (stderr or "").strip().splitlines() if ln.strip()]
    return (": " + " | ".join(useful[-lines:])[:500]) if useful else ""

"""Run a runtime harness in a child process and read back its JSON result.

Native runtimes can crash (a bad flatbuffer, a kernel bug). In a child process a crash becomes a
clear error for one artifact instead of a dead CLI.

Children never outlive the build: they start under util-linux's `setpriv --pdeathsig KILL` (the
kernel kills them when deploykit dies, even by SIGKILL; a busy Node loop cannot check for itself),
each harness also learns the CLI's pid (`DEPLOYKIT_PARENT_PID`), and an interrupted CLI calls
`stop()`, which kills the running children and refuses new ones, so queued jobs end at once.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()
_stopping = threading.Event()


def stop() -> None:
    """Kill every running harness child and refuse to start new ones (the build is interrupted)."""
    _stopping.set()
    with _live_lock:
        for proc in list(_live):
            _kill_tree(proc)


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill `proc` and every process under it, and wait for them: a sandboxed worker runs under
    bubblewrap, and killing bwrap alone leaves its child alive (writing files) for a moment."""
    try:
        import psutil

        tree = psutil.Process(proc.pid).children(recursive=True)
    except Exception:  # noqa: BLE001 - already gone, or psutil unavailable
        tree = []
    for p in tree:
        try:
            p.kill()
        except Exception:  # noqa: BLE001 - gone meanwhile
            pass
    try:
        proc.kill()
    except OSError:
        pass
    if tree:
        psutil.wait_procs(tree, timeout=5)


def map_jobs(fn: Callable, items: Iterable, jobs: int) -> list:
    """`fn` over `items`, `jobs` side by side, in order. On an error or an interrupt, jobs that have
    not started are cancelled instead of run (ThreadPoolExecutor's `with` would run them all)."""
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        return list(pool.map(fn, items))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)


def run_child(cmd: list[str], request: dict, work: Path, *, timeout: float, label: str, env: dict | None = None,
              memory_mb: int | None = None) -> dict:
    """Run `cmd REQUEST.json` and return the JSON it wrote to `request["response"]`, or
    {"ok": False, "error": ...} when it crashed, hung past `timeout` or (with `memory_mb`) its
    process tree's resident memory went past the cap."""
    token = uuid.uuid4().hex[:8]
    work = Path(work).resolve()  # absolute: a sandboxed child starts in another folder
    req_path = work / f"{token}.request.json"
    resp_path = work / f"{token}.response.json"
    req_path.write_text(json.dumps({**request, "response": str(resp_path)}))
    child_env = {**os.environ, **(env or {}), "DEPLOYKIT_PARENT_PID": str(os.getpid())}
    setpriv = shutil.which("setpriv")
    if setpriv:  # the death signal survives exec; this thread waits for the child, so it is the parent
        cmd = [setpriv, "--pdeathsig", "KILL", "--", *cmd]
    with _live_lock:
        if _stopping.is_set():
            return {"ok": False, "error": f"{label}: not started (interrupted)"}
        try:
            proc = subprocess.Popen(cmd + [str(req_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=child_env, stdin=subprocess.DEVNULL)
        except OSError as exc:
            return {"ok": False, "error": f"{label}: cannot start runtime ({exc})"}
        _live.add(proc)
    over_memory = _watch_memory(proc, memory_mb) if memory_mb else None
    try:
        _stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        proc.communicate()
        return {"ok": False, "error": f"{label}: runtime did not finish within {timeout:.0f} s"}
    finally:
        with _live_lock:
            _live.discard(proc)
        if proc.poll() is None:  # interrupted while waiting (KeyboardInterrupt in this thread)
            _kill_tree(proc)
            proc.wait()
    if _stopping.is_set():
        return {"ok": False, "error": f"{label}: stopped (interrupted)"}
    if over_memory is not None and over_memory.is_set():
        return {"ok": False, "error": f"{label}: ran out of memory (more than {memory_mb} MB resident; killed)"}
    if resp_path.exists():
        try:
            result = json.loads(resp_path.read_text())
        except json.JSONDecodeError:
            result = None
        if result is not None:
            return result
    tail = _tail(stderr)
    crashed = _signal_name(proc.returncode)
    if crashed:
        return {"ok": False, "error": f"{label}: runtime crashed ({crashed}){tail}"}
    return {"ok": False, "error": f"{label}: runtime exited with code {proc.returncode}{tail}"}


def _watch_memory(proc: subprocess.Popen, cap_mb: int) -> threading.Event:
    """Poll the resident memory of `proc` and its children; kill them all past `cap_mb`."""
    import psutil

    tripped = threading.Event()

    def watch():
        try:
            root = psutil.Process(proc.pid)
            while proc.poll() is None:
                tree = [root, *root.children(recursive=True)]
                rss = 0
                for p in tree:
                    try:
                        rss += p.memory_info().rss
                    except psutil.Error:
                        pass
                if rss > cap_mb * 2**20:
                    tripped.set()
                    for p in reversed(tree):
                        try:
                            p.kill()
                        except psutil.Error:
                            pass
                    return
                time.sleep(0.2)
        except psutil.Error:
            return

    threading.Thread(target=watch, daemon=True, name=f"memory-watch-{proc.pid}").start()
    return tripped


def _signal_name(returncode: int) -> str | None:
    """The signal that ended a child: -N from Popen, or 128+N from a launcher that exits with its
    child's status (bubblewrap, a shell)."""
    number = -returncode if returncode < 0 else returncode - 128 if 128 < returncode < 128 + 65 else None
    try:
        return signal.Signals(number).name if number else None
    except ValueError:
        return None


# TensorFlow's native log lines (glog, and its timestamped C++ logging): noise in an error message
_NATIVE_LOG = re.compile(r"^[IWEF]\d{4} |^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] |^WARNING: All log messages before absl")


def _tail(stderr: str, lines: int = 3) -> str:
    useful = [ln for ln in (stderr or "").strip().splitlines() if ln.strip() and not _NATIVE_LOG.match(ln)]
    return (": " + " | ".join(useful[-lines:])[:500]) if useful else ""

"""Interrupted builds, two builds into one folder, and a file system that cannot take the build.

Real CLI builds in child processes, timed by their progress lines on stderr. Already covered
elsewhere (not repeated): SIGINT/SIGTERM while the bundled example trains (test_output.py), a lock
held by a live process and a killed OutputFolder's leftovers (test_output.py), exit 75 against a
held lock (test_cli.py).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from .reliability import Workspace, assert_failure, assert_no_leftovers, snapshot, wait_no_children

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")]

# Latency long enough that the validate stage has a runtime child running when the signal lands:
# a floor no model reaches in 4 s, so each artifact's sampling runs into its time cap (the adaptive
# stop would otherwise end it within a second).
SLOW_VALIDATION = textwrap.dedent("""
    quantize = ["float32", "int8"]
    [latency]
    warmup = 2
    iterations = 10000000
    min_iterations = 10000000
    max_seconds = 4.0
    """)
STAGES = {  # stage: (progress line that starts it, seconds to wait after it)
    "load": ("load model", 1.0),
    "convert": ("convert 2 artifact(s) ...", 0.0),
    "validate": ("validate 2 artifact(s): parity and latency ...", 2.0),
}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from . import models

    return models.dense(tmp_path_factory.mktemp("interrupt") / "dense.keras")


def start_build(ws: Workspace, model: Path, *extra: str) -> subprocess.Popen:
    (ws.root / "dk.toml").write_text(SLOW_VALIDATION)
    return ws.popen("build", "--model", str(model), "--config", "dk.toml", "--out", "out", *extra)


def wait_for(proc: subprocess.Popen, line: str, timeout: float = 120) -> list[str]:
    seen = []
    deadline = time.monotonic() + timeout
    for got in proc.stderr:
        seen.append(got)
        if line in got:
            return seen
        assert time.monotonic() < deadline, f"no {line!r} within {timeout} s:\n{''.join(seen)[-3000:]}"
    raise AssertionError(f"build ended before {line!r}:\n{''.join(seen)[-3000:]}")


def interrupt(ws: Workspace, model: Path, stage: str, sig: signal.Signals) -> tuple[int, str, float, int]:
    proc = start_build(ws, model)
    line, delay = STAGES[stage]
    wait_for(proc, line)
    time.sleep(delay)
    assert proc.poll() is None, "the build finished before the signal"
    proc.send_signal(sig)
    t0 = time.monotonic()
    rest = proc.stderr.read()
    code = proc.wait(timeout=120)
    return code, rest, time.monotonic() - t0, proc.pid


@pytest.mark.parametrize("stage, sig, code", [("convert", signal.SIGTERM, 143), ("validate", signal.SIGINT, 130)],
                         ids=["SIGTERM during conversion", "SIGINT during validation"])
def test_interrupted_build_keeps_previous_output_and_leaves_nothing(model, tmp_path, stage, sig, code):
    ws = Workspace(tmp_path)
    got, rest, seconds, pid = interrupt(ws, model, stage, sig)
    assert got == code, rest[-3000:]
    assert "output folder was left unchanged" in rest and "Traceback" not in rest
    assert seconds < 20, f"took {seconds:.1f} s to stop"  # running children are killed, queued jobs cancelled
    assert wait_no_children(pid) == [], "a runtime child outlived the build"
    ws.assert_untouched()


def test_killed_builds_leave_previous_output_and_the_next_build_cleans_up(model, tmp_path):
    ws = Workspace(tmp_path)
    for stage in STAGES:
        got, rest, _, pid = interrupt(ws, model, stage, signal.SIGKILL)
        assert got == -signal.SIGKILL
        assert wait_no_children(pid) == [], f"a runtime child outlived the killed build ({stage})"
        assert snapshot(ws.out) == ws.before, f"previous output changed by a build killed during {stage}"
    assert list(tmp_path.glob(".out.staging-*")), "expected the killed builds' staging folders"
    proc = ws.cli("build", "--model", str(model), "--out", "out", "--quantize", "float32", "--no-latency", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((ws.out / "manifest.json").read_text())["passed"] is True
    assert_no_leftovers(tmp_path, ws.tmp)  # staging and temporary files of the killed builds are gone


# ---- concurrency ------------------------------------------------------------------------------
def test_second_build_into_the_same_folder_exits_75_quickly_and_the_first_proceeds(model, tmp_path):
    ws = Workspace(tmp_path)
    first = ws.popen("build", "--model", str(model), "--out", "out", "--quantize", "float32", "--no-latency")
    wait_for(first, "load model")  # the lock is taken before the model loads
    t0 = time.monotonic()
    second = ws.cli("build", "--model", str(model), "--out", "out", "--quantize", "float32", "--no-latency", "--json")
    seconds = time.monotonic() - t0
    assert_failure(second, 75, "output_locked", str(ws.out), "another build")
    assert seconds < 15, f"the locked-out build took {seconds:.1f} s"  # it never imports TensorFlow
    rest = first.stderr.read()
    assert first.wait(timeout=300) == 0, rest[-3000:]
    assert json.loads((ws.out / "manifest.json").read_text())["passed"] is True
    assert_no_leftovers(tmp_path)


# ---- resources: read-only and full file systems ----------------------------------------------------
@pytest.fixture
def tmpfs(tmp_path):
    """A 2 MiB tmpfs (needs root, as in CI); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def _fill(mnt: Path, leave_kib: int) -> None:
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(mnt / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave_kib * 1024))


@pytest.mark.parametrize("leave_kib", [0, 16], ids=["full at the first write", "full while saving the SavedModel"])
def test_full_disk_is_a_clear_error_and_keeps_previous_output(model, tmp_path, tmpfs, leave_kib):
    ws = Workspace(tmp_path)
    out = tmpfs / "out"
    from .reliability import write_previous_output

    write_previous_output(out)
    before = snapshot(out)
    _fill(tmpfs, leave_kib)
    proc = ws.cli("build", "--model", str(model), "--out", str(out), "--quantize", "float32", "--no-latency", "--json")
    line = assert_failure(proc, 2, "output_unwritable", str(out))
    assert "no space left" in line.lower()
    assert snapshot(out) == before
    assert sorted(p.name for p in tmpfs.iterdir()) == ["filler", "out"]


def test_read_only_file_system_is_a_clear_error(model, tmp_path, tmpfs):
    ws = Workspace(tmp_path)
    out = tmpfs / "out"
    from .reliability import write_previous_output

    write_previous_output(out)
    before = snapshot(out)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    proc = ws.cli("build", "--model", str(model), "--out", str(out), "--quantize", "float32", "--no-latency", "--json")
    assert_failure(proc, 2, "output_unwritable", str(out), "Read-only file system")
    assert snapshot(out) == before

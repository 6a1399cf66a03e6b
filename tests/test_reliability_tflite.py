"""Corrupted and mutated .tflite artifacts reaching `deploykit validate OUT`, and a fuzz run of the
validation runtime (LiteRT) on 1,000 mutated flatbuffers.

A swapped or corrupted artifact is caught by the checksums (exit 2). If the manifest was rewritten to
match, the artifact is run in its runtime, in a child process, and fails as that artifact's error
(exit 3): the CLI never dies, a native crash in the child is reported as one.

The fuzz run uses the harness's batch mode (one LiteRT import, a forked child per file, so a crash or
a hang stays with its file): about 20 ms per file instead of about 1 s for a fresh process.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import deploykit
from deploykit.runner import run_child
from deploykit.targets import harness_path

from .conftest import NO_LATENCY
from .reliability import Workspace, assert_failure, snapshot, wait_no_children

pytestmark = pytest.mark.slow  # builds a real artifact once for the module

FUZZ_FILES = 1000
ARTIFACT = "tflite/model_float32.tflite"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A real float32 build of a small dense model: the artifact to corrupt and its manifest."""
    from . import models

    d = tmp_path_factory.mktemp("tflite-corrupt")
    model = models.dense(d / "dense.keras")
    out = d / "out"
    deploykit.build(model=str(model), out=str(out), quantize=("float32",), **NO_LATENCY)
    return out


def mutate(base: bytes, rng: random.Random, kind: int) -> bytes:
    b = bytearray(base)
    if kind == 0:  # a few random bytes
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 1:  # truncated
        b = b[: rng.randrange(len(b))]
    elif kind == 2:  # one aligned 32-bit field set to an extreme (offsets, sizes, indices)
        at = rng.randrange(0, len(b) - 4, 4)
        b[at : at + 4] = rng.choice([b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff"])
    elif kind == 3:  # a random run of bytes
        at, n = rng.randrange(len(b)), rng.randint(1, 64)
        b[at : at + n] = rng.randbytes(n)
    else:  # single bit flips
        for _ in range(rng.randint(1, 2)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def run_batch(models: list[Path], inputs: Path, work: Path, per_model: float = 10.0, timeout: float = 600) -> dict:
    request = {"mode": "batch", "models": [str(m) for m in models], "inputs": str(inputs), "timeout_per_model": per_model}
    return run_child([sys.executable, str(harness_path("tflite", "harness.py"))], request, work, timeout=timeout,
                     label="tflite/batch")


# ---- fuzz --------------------------------------------------------------------------------------
def test_runtime_survives_1000_mutated_flatbuffers(built, tmp_path):
    base = (built / ARTIFACT).read_bytes()
    rng = random.Random(20261123)
    files = []
    for i in range(FUZZ_FILES):
        path = tmp_path / f"m{i:04d}.tflite"
        path.write_bytes(mutate(base, rng, i % 5))
        files.append(path)
    result = run_batch(files, built / "validation" / "inputs.npz", tmp_path)
    assert result.get("ok"), result
    results = result["results"]
    assert [r["model"] for r in results] == [str(f) for f in files], "a result per file, in order"
    for r in results:
        assert isinstance(r["ok"], bool)
        if not r["ok"]:
            assert r["error"].strip() and len(r["error"]) <= 500, r
    verdicts = Counter("ok" if r["ok"] else r["error"].split(":")[0] for r in results)
    print(f"\nfuzz verdicts over {FUZZ_FILES} files: {dict(verdicts.most_common())}")
    assert verdicts["ok"] < FUZZ_FILES and sum(verdicts.values()) == FUZZ_FILES  # mutations did break models
    assert wait_no_children(os.getpid()) == [], "runtime children left running"


def test_batch_isolates_a_crash_and_a_hang(built, tmp_path):
    """Two models that never finish loading (FIFOs): the test kills the first one's child with SIGSEGV
    (a native crash), the second hits the per-model deadline; the good model after them still runs."""
    crash, hang = tmp_path / "crash.tflite", tmp_path / "hang.tflite"
    os.mkfifo(crash)
    os.mkfifo(hang)

    def segfault_the_reader():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for pid in _pids_opening(crash):
                os.kill(pid, signal.SIGSEGV)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=segfault_the_reader, daemon=True)
    killer.start()
    result = run_batch([crash, hang, built / ARTIFACT], built / "validation" / "inputs.npz", tmp_path, per_model=3)
    killer.join()
    assert result.get("ok"), result
    crashed, hung, good = result["results"]
    assert crashed["ok"] is False and crashed["error"] == "runtime crashed (SIGSEGV)", crashed
    assert hung["ok"] is False and "did not finish within 3 s" in hung["error"], hung
    assert good["ok"] is True and good["finite"] is True, good


def _pids_opening(path: Path) -> list[int]:
    """Forked harness children blocked opening a FIFO (`path` is the only FIFO a batch opens first)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            if b"harness.py" not in cmd:
                continue
            if (entry / "wchan").read_text() in ("fifo_open", "wait_for_partner", "pipe_wait"):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if b"harness.py" in Path(f"/proc/{ppid}/cmdline").read_bytes():
                    pids.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def test_runner_turns_a_crashed_child_into_an_error(tmp_path):
    code = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    result = run_child([sys.executable, "-c", code], {}, tmp_path, timeout=60, label="tflite/float32")
    assert result == {"ok": False, "error": "tflite/float32: runtime crashed (SIGSEGV)"}


# ---- deploykit validate on corrupted artifacts ------------------------------------------------------
def _copy(built: Path, ws_root: Path) -> Path:
    out = ws_root / "out"
    shutil.copytree(built, out)
    return out


def _rewrite_manifest(out: Path, rel: str) -> None:
    """What an attacker or a broken copy step would do: make the checksums agree with the swap."""
    doc = json.loads((out / "manifest.json").read_text())
    data = (out / rel).read_bytes()
    doc["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    for a in doc["artifacts"]:
        if a["path"] == rel:
            a["sha256"], a["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (out / "manifest.json").write_text(json.dumps(doc, indent=2))


def _corruptions(built: Path) -> dict[str, bytes]:
    base = (built / ARTIFACT).read_bytes()
    rng = random.Random(7)
    return {
        "empty": b"",
        "truncated": base[: len(base) // 2],
        "flipped header": base[:4] + bytes(b ^ 0xFF for b in base[4:8]) + base[8:],
        "a .keras archive renamed .tflite": b"PK\x03\x04" + rng.randbytes(200),
        "an HDF5 file renamed .tflite": b"\x89HDF\r\n\x1a\n" + rng.randbytes(200),
        "random bytes": rng.randbytes(len(base)),
        "a buffer offset pushed out of range": mutate(base, random.Random(3), 2),
    }


@pytest.mark.parametrize("case", ["empty", "truncated", "random bytes"])
def test_swapped_artifact_is_caught_by_checksums(built, tmp_path, case):
    ws = Workspace(tmp_path, previous=False)
    out = _copy(built, tmp_path)
    (out / ARTIFACT).write_bytes(_corruptions(built)[case])
    ws.before = snapshot(out)
    proc = ws.cli("validate", "out", "--json")
    assert_failure(proc, 2, "bad_input", ARTIFACT, "checksum does not match")
    ws.assert_untouched()


@pytest.mark.parametrize("case", ["empty", "truncated", "flipped header", "a .keras archive renamed .tflite",
                                  "an HDF5 file renamed .tflite", "random bytes", "a buffer offset pushed out of range"])
def test_corrupted_artifact_with_a_matching_manifest_fails_in_its_runtime(built, tmp_path, case):
    ws = Workspace(tmp_path, previous=False)
    out = _copy(built, tmp_path)
    (out / ARTIFACT).write_bytes(_corruptions(built)[case])
    _rewrite_manifest(out, ARTIFACT)
    ws.before = snapshot(out)
    proc = ws.cli("validate", "out", "--json")
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("deploykit: error:")]
    assert len(errors) == 1 and "1 budget failure" in errors[0], proc.stderr[-3000:]
    assert "tflite/float32: " in proc.stderr
    body = json.loads(proc.stdout)
    assert body["error"]["code"] == "budget_failed"
    [failure] = body["error"]["details"]["failures"]
    assert failure.startswith("tflite/float32: ") and len(failure) < 700, failure
    ws.assert_untouched()


@pytest.mark.parametrize("case, says", [
    ("no manifest", "no manifest"),
    ("manifest is not JSON", "not valid JSON"),
    ("manifest misses a field", "does not match the manifest schema"),
    ("a listed file is missing", "missing"),
])
def test_broken_output_folder_is_bad_input(built, tmp_path, case, says):
    ws = Workspace(tmp_path, previous=False)
    out = _copy(built, tmp_path)
    manifest = out / "manifest.json"
    if case == "no manifest":
        manifest.unlink()
    elif case == "manifest is not JSON":
        manifest.write_text(manifest.read_text()[:100])
    elif case == "manifest misses a field":
        doc = json.loads(manifest.read_text())
        del doc["artifacts"]
        manifest.write_text(json.dumps(doc))
    else:
        (out / ARTIFACT).unlink()
    ws.before = snapshot(out)
    proc = ws.cli("validate", "out", "--json")
    assert_failure(proc, 2, "bad_input", "out", says)
    ws.assert_untouched()


def test_artifact_replaced_by_a_folder_is_bad_input(built, tmp_path):
    """An artifact replaced by a folder (a broken copy step): validation reports it, no traceback."""
    ws = Workspace(tmp_path, previous=False)
    out = _copy(built, tmp_path)
    (out / ARTIFACT).unlink()
    (out / ARTIFACT).mkdir()
    proc = ws.cli("validate", "out", "--json")
    assert_failure(proc, 2, "bad_input", ARTIFACT)

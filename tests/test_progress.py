"""Progress as people and CI logs see it: what runs and what finished during validation (per
artifact and backend), and the lines that are noise (epoch beginnings, the same line from every
worker, notes and warnings about things the build did not do)."""
from __future__ import annotations

import io
import json
import re

import pytest

from deploykit.config import LatencySettings
from deploykit.progress import Reporter, RichReporter
from deploykit.records import ArtifactRecord
from deploykit.targets.base import Artifact
from deploykit.validation import judge

from . import models
from .conftest import FAST_TOML, run_cli
from .test_judge import CONTRACT, TwoBackends, _reference

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# ------------------------------------------------------------------------- the Reporter (fast)

def test_plain_lines_one_per_finished_job_and_backend():
    out = io.StringIO()
    rep = Reporter(stream=out)
    with rep.tasks("parity", 2) as log:
        log.started("tflite/float32")
        log.started("js/float32")
        assert out.getvalue() == "", "a started job prints nothing in CI: only what finished"
        log.finished("tflite/float32", True, "pass", 0.42)
        log.finished("js/float32", False, "fail: [wasm] output 'y': cosine = 0.5", 3.0,
                     {"cpu": (True, "pass"), "wasm": (False, "fail: output 'y': cosine = 0.5")})
    assert out.getvalue().splitlines() == [
        "[deploykit]   parity tflite/float32: pass (0.4 s)",
        "[deploykit]   parity js/float32: fail: [wasm] output 'y': cosine = 0.5 (3.0 s)",
        "[deploykit]   parity js/float32 [cpu]: pass",
        "[deploykit]   parity js/float32 [wasm]: fail: output 'y': cosine = 0.5",
    ]
    quiet = io.StringIO()
    with Reporter(stream=quiet, quiet=True).tasks("parity", 1) as log:
        log.finished("tflite/float32", True, "pass", 0.1)
    assert quiet.getvalue() == ""


def test_terminal_shows_a_bar_with_the_running_jobs_and_keeps_the_finished_ones():
    from rich.console import Console

    buf = io.StringIO()
    rep = RichReporter(console=Console(file=buf, force_terminal=True, width=100, color_system=None))
    with rep.step("validate 2 artifact(s): parity"):
        with rep.tasks("parity", 2) as log:
            log.started("tflite/float32")
            log.started("tflite/int8")
            running = ANSI.sub("", buf.getvalue())
            assert "parity: tflite/float32, tflite/int8" in running and "0/2" in running
            log.finished("tflite/float32", True, "pass", 0.5)
            half = ANSI.sub("", buf.getvalue())
            after = half[half.index("✓ parity tflite/float32: pass (0.5 s)"):]
            assert "parity: tflite/int8 " in after and "1/2" in after and "━" in after, "the bar counts finished jobs"
            log.finished("tflite/int8", False, "fail: output 'digit': cosine = 0.9", 0.7)
    screen = ANSI.sub("", buf.getvalue())
    assert "✓ parity tflite/float32: pass (0.5 s)" in screen
    assert "✗ parity tflite/int8: fail: output 'digit': cosine = 0.9 (0.7 s)" in screen
    assert "✓ validate 2 artifact(s): parity" in screen
    # markup-looking text is shown as written (rich would swallow "[wasm]" as a style tag)
    rep.info("note: [wasm] and [optimize] stay")
    assert "[wasm] and [optimize] stay" in ANSI.sub("", buf.getvalue())


def test_detail_lines_only_for_a_task_log():
    console, log = io.StringIO(), io.StringIO()
    Reporter(stream=console).detail("epoch 1/3 begin")
    Reporter(stream=log, details=True).detail("epoch 1/3 begin")
    assert console.getvalue() == "" and log.getvalue() == "[deploykit:detail] epoch 1/3 begin\n"


def test_judge_reports_each_artifact_phase_and_backend(tmp_path):
    ref = _reference()["probs"]
    wrong = ref.copy()
    wrong[:5, 2] -= 0.03  # flips the top-1 of five rows on backend b
    target = TwoBackends({"a": ref.copy(), "b": wrong})
    record = ArtifactRecord(Artifact("twob", "float32", tmp_path / "art"), tmp_path / "in.npz",
                            dict(TwoBackends.default_budgets["float32"]), 10)
    out = io.StringIO()
    judge.judge([record], {"twob": target}, CONTRACT, _reference(), measure=True, settings=LatencySettings(),
                work=tmp_path, rep=Reporter(stream=out))
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"\[deploykit\]   parity twob/float32: fail: \[b\] output 'probs': top1_agreement = 0\.875, "
                        r"budget >= 0\.99 \(\d+\.\d s\)", lines[0]), lines
    assert lines[1].startswith("[deploykit]   parity twob/float32 [a]: pass, max_abs_rel ")
    assert lines[2] == ("[deploykit]   parity twob/float32 [b]: fail: output 'probs': top1_agreement = 0.875, "
                        "budget >= 0.99")
    assert re.fullmatch(r"\[deploykit\]   latency twob/float32: p50 1\.000 ms, p99 1\.\d+ ms \(\d+\.\d s\)",
                        lines[3]), lines
    assert len(lines) == 4


# ------------------------------------------------------------ multi-worker console lines (fast)

def test_local_job_console_shows_the_chief_and_problems_once():
    from deploykit.fit.launcher import _Console, chief_of

    assert chief_of(["worker-0", "worker-1"]) == "worker-0"
    assert chief_of(["chief", "ps-0", "worker-0"]) == "chief"
    out = io.StringIO()
    console = _Console(out, "worker-0")
    for task in ("worker-0", "worker-1"):
        console.line(task, "[deploykit] epoch 1/2 end loss=0.5000 (1.0 s)")
        console.line(task, "[deploykit:detail] epoch 2/2 begin")
        console.line(task, "[deploykit] warning: the same warning")
        console.line(task, "I0000 00:00:1 grpc_server_lib.cc:12] started")
    console.line("worker-1", "[deploykit] warning: only worker 1 says this")
    assert out.getvalue().splitlines() == [
        "[worker-0] [deploykit] epoch 1/2 end loss=0.5000 (1.0 s)",
        "[worker-0] [deploykit] warning: the same warning",
        "[worker-1] [deploykit] warning: only worker 1 says this",
    ]
    assert _Console(None, "worker-0").line("worker-0", "x") is None  # --quiet: nothing at all


# ------------------------------------------------------------------ real builds through the CLI

@pytest.mark.slow
def test_build_in_ci_prints_a_line_per_finished_artifact(tmp_path):
    (tmp_path / "dk.toml").write_text(FAST_TOML)
    proc = run_cli("build", "--config", "dk.toml", "--quantize", "float32,int8", "--out", "out", cwd=tmp_path,
                   env={"CI": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = proc.stderr
    step = "validate 2 artifact(s): parity and latency"
    validate = err[err.index(f"{step} ..."):err.index(f"{step} ok")]
    for variant in ("float32", "int8"):
        assert re.search(rf"^\[deploykit\]   parity tflite/{variant}: pass, max_abs_rel \S+ \(\d+\.\d s\)$",
                         validate, re.M), err
        assert re.search(rf"^\[deploykit\]   latency tflite/{variant}: p50 \d+\.\d+ ms, p99 \d+\.\d+ ms \(\d+\.\d s\)$",
                         validate, re.M), err
    assert len([ln for ln in validate.splitlines() if ln.startswith("[deploykit]   ")]) == 4
    assert "epoch" not in err  # the bundled example trains quietly in its worker
    assert "optimize stage" not in err and "calibration" not in err  # nothing asked that they concern


@pytest.mark.slow
def test_random_data_warnings_name_calibration_only_for_calibrated_variants(tmp_path):
    """A SavedModel without --data: the parity data are random (said on stderr and kept in the
    manifest); int8 calibration advice only when int8/int16x8 is built; the optimize stage's note
    (a SavedModel cannot be pruned) only when the build asked to optimize."""
    from deploykit.modelwork import RANDOM_DATA_WARNING

    models.module_saved_model(tmp_path / "affine")
    proc = run_cli("build", "--model", "affine", "--quantize", "float32", "--no-latency", "--out", "out", "--json",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning: no --data given: parity inputs are generated" in proc.stderr
    assert "calibration" not in proc.stderr
    assert "optimize stage" not in proc.stderr
    manifest = json.loads(proc.stdout)
    assert RANDOM_DATA_WARNING in manifest["data"]["warnings"]  # the manifest keeps the whole warning
    assert manifest["source"]["optimizable"] is False and "optimize stage" in manifest["source"]["note"]

    calibrated = run_cli("build", "--model", "affine", "--quantize", "int8", "--no-latency", "--out", "out8",
                         cwd=tmp_path)
    assert "int8/int16x8 calibration on random data gives poor accuracy" in calibrated.stderr, calibrated.stderr[-3000:]


@pytest.mark.slow
def test_local_job_prints_the_chief_once_and_keeps_every_task_log(tmp_path):
    (tmp_path / "mw.toml").write_text('[train]\nstrategy = "multi_worker"\nepochs = 2\nsteps_per_epoch = 10\n'
                                      'batch_size = 64\nseed = 0\n')
    proc = run_cli("train", "--config", "mw.toml", "--out", "run", "--local-workers", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = proc.stderr
    assert "begin" not in err, "epoch beginnings are noise on the console"
    assert not re.search(r"^\[worker-1\]", err, re.M), "worker 1 prints what worker 0 prints"
    assert len(re.findall(r"^\[worker-0\] \[deploykit\] epoch 2/2 end ", err, re.M)) == 1
    assert "showing worker-0's log" in err and str(tmp_path / "run" / "logs") in err
    for task in ("worker-0", "worker-1"):  # the logs keep everything, beginnings included
        log = (tmp_path / "run" / "logs" / f"{task}.log").read_text()
        assert "epoch 2/2 begin" in log and "epoch 2/2 end" in log, log[-2000:]

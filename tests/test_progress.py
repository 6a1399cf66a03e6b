"""Progress as people and CI logs see it: what runs and what finished during validation (per
artifact and backend)."""
from __future__ import annotations

import io
import re
import textwrap

import pytest

from deploykit.config import LatencySettings
from deploykit.progress import Reporter, RichReporter
from deploykit.records import ArtifactRecord
from deploykit.targets.base import Artifact
from deploykit.validation import judge

from .conftest import run_cli
from .test_judge import CONTRACT, TwoBackends, _reference

FAST_TOML = textwrap.dedent(
    """
    example_epochs = 2
    [latency]
    warmup = 2
    iterations = 20
    max_seconds = 1.0
    """
)
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

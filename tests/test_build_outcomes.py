"""What a build leaves behind and which variants it requires (README: Parity and budgets).

A failed build is kept beside the output in OUT.failed (never published); with the default
variants a quantized variant that misses its budget is rejected, not fatal; asked-for variants are
required; --budget overrides one budget from the command line.
"""
from __future__ import annotations

import json
import textwrap

import pytest

from deploykit.config import budget_flags
from deploykit.errors import BadInputError

from .conftest import run_cli

FAST_TOML = textwrap.dedent("""
    example_epochs = 2
    [latency]
    enabled = false
    """)


def errors(proc) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("deploykit: error:")]


def test_budget_flags_merge_over_the_file_and_expand_wildcards():
    merged = budget_flags(["*.float32.max_abs_rel=1e-4", "tflite.*.bytes=50000", "tflite.int8.cosine=0.98"],
                          {"tflite": {"int8": {"cosine": 0.995, "top1_agreement": 0.97}}})
    assert merged["tflite"]["int8"] == {"cosine": 0.98, "top1_agreement": 0.97, "bytes": 50000.0}
    assert merged["js"]["float32"] == {"max_abs_rel": 1e-4}
    assert merged["serving"]["float32"] == {"max_abs_rel": 1e-4}
    assert set(merged["tflite"]) == {"float32", "float16", "dynamic", "int8", "int16x8"}
    for bad, words in [("tflite.int8.cosine", "TARGET.VARIANT.METRIC=VALUE"), ("tflite.int8.cosine=high", "not a number"),
                       ("tpu.int8.cosine=1", "unknown target"), ("js.int8.cosine=1", "no variant 'int8'")]:
        with pytest.raises(BadInputError, match=words):
            budget_flags([bad])


def test_a_target_without_any_asked_variant_is_an_error_and_missing_ones_are_noted(tmp_path):
    proc = run_cli("build", "--target", "tflite", "--target", "js", "--quantize", "int8", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "js has none of these variants (its variants: float32, float16, uint16, uint8)" in errors(proc)[0]
    alone = run_cli("build", "--target", "js", "--quantize", "int8", "--out", str(tmp_path / "out"))
    assert alone.returncode == 2 and "unknown variant(s) int8" in errors(alone)[0]


@pytest.mark.slow
def test_a_failed_build_is_kept_in_out_failed_and_cannot_be_published(tmp_path):
    (tmp_path / "dk.toml").write_text(FAST_TOML)
    args = ("build", "--config", "dk.toml", "--quantize", "float32", "--budget", "tflite.float32.max_abs=0",
            "--out", "out")
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr[-2000:]
    [line] = errors(proc)
    failed = tmp_path / "out.failed"
    assert f"the failed build is in {failed}" in line
    assert not (tmp_path / "out").exists()
    doc = json.loads((failed / "manifest.json").read_text())
    assert doc["passed"] is False and doc["config"]["settings"]["budgets"]["tflite"]["float32"]["max_abs"] == 0.0
    assert (failed / "tflite" / "model_float32.tflite").is_file() and (failed / "report.md").is_file()
    assert run_cli("validate", "out.failed", cwd=tmp_path).returncode == 3  # checksums hold; the budget still fails

    published = run_cli("publish", "out.failed", "--to", str(tmp_path / "shelf"), cwd=tmp_path)
    assert published.returncode == 3 and "refusing to publish: validation did not pass for tflite/float32" in errors(published)[0]
    assert not (tmp_path / "shelf").exists()

    again = run_cli(*args, cwd=tmp_path)  # the next failed build replaces it
    assert again.returncode == 3
    assert json.loads((failed / "manifest.json").read_text())["created_at"] != doc["created_at"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dk.toml", "out.failed"]


@pytest.mark.slow
def test_default_variants_that_miss_their_budget_are_rejected_not_fatal(tmp_path):
    (tmp_path / "dk.toml").write_text(FAST_TOML)
    proc = run_cli("build", "--config", "dk.toml", "--budget", "tflite.int8.cosine=1.01", "--json", "--out", "out",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert [a["variant"] for a in doc["artifacts"]] == ["float32", "float16", "dynamic", "int16x8"]
    [rejected] = doc["rejected"]
    assert rejected["variant"] == "int8" and "not required" in rejected["reason"]
    assert any("cosine" in f["message"] for f in rejected["failures"])
    assert not (tmp_path / "out" / "tflite" / "model_int8.tflite").exists()
    assert "tflite/int8: rejected" in proc.stderr
    assert "tflite/int8" in (tmp_path / "out" / "report.md").read_text()

    asked = run_cli("build", "--config", "dk.toml", "--quantize", "float32,int8", "--budget", "tflite.int8.cosine=1.01",
                    "--out", "out2", cwd=tmp_path)
    assert asked.returncode == 3  # asked for: required
    assert "tflite/int8: output 'digit': cosine" in asked.stderr


@pytest.mark.slow
def test_variants_the_preflight_converted_are_written_by_the_intake_worker(tmp_path):
    # float32 is the preflight's own conversion (tflite's flatbuffer, the js bundle, the serving
    # repository): the intake worker writes it out instead of a convert worker importing TensorFlow
    # again. A variant that needs a conversion of its own still gets its own worker (a converter
    # crash then fails only that artifact: test_families' GRU int8 crash).
    from . import models

    model = models.dense(tmp_path / "dense.keras")
    proc = run_cli("build", "--model", str(model), "--target", "tflite,serving", "--quantize", "float32,float16",
                   "--no-container", "--no-latency", "--json", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    where = {(a["target"], a["variant"]): a["details"]["converted_in"] for a in json.loads(proc.stdout)["artifacts"]}
    assert where == {("tflite", "float32"): "intake worker", ("tflite", "float16"): "own worker",
                     ("serving", "float32"): "intake worker"}

"""Model families through the TFLite target: convolutional (all five variants, int8 on real digits),
recurrent (LSTM/GRU need the fixed-shape fallback to lower to builtin ops), attention, and models
that need TensorFlow ops outside the TFLite builtins (Select TF ops / Flex).

Real models, real conversion, validation in the real runtime: no mocks.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import deploykit
from deploykit.errors import BudgetError, UnsupportedOpsError
from deploykit.targets.js import retrace

from . import models
from .conftest import FAST, NO_LATENCY, run_cli

pytestmark = [
    pytest.mark.slow,
    # the int8 calibration inside the converter uses the deprecated tf.lite.Interpreter
    pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated"),
]

ALL_VARIANTS = ["float32", "float16", "dynamic", "int8", "int16x8"]


def build(model, out: Path, *, quantize=("float32",), data=None, settings=NO_LATENCY, **kw) -> dict:
    return deploykit.build(model=str(model), data=None if data is None else str(data), out=str(out),
                           quantize=quantize, **{**settings, **kw})


def build_or_failure(model, out: Path, **kw) -> tuple[dict, BudgetError | None]:
    """The manifest either way: a failed build still reports what it converted and measured."""
    try:
        return build(model, out, **kw), None
    except BudgetError as exc:
        assert exc.manifest is not None
        return exc.manifest, exc


@pytest.fixture(scope="module")
def fam(tmp_path_factory):
    d = tmp_path_factory.mktemp("families")
    images, _ = models.digits(300)
    seqs, _ = models.sequences(96, 8, 3, seed=2)
    tokens, _ = models.sequences(96, 6, 8, seed=3)
    np.savez(d / "digits.npz", image=images)
    np.savez(d / "seq.npz", seq=seqs)
    np.savez(d / "tokens.npz", tokens=tokens)
    return SimpleNamespace(
        dir=d,
        digits=d / "digits.npz",
        seq=d / "seq.npz",
        tokens=d / "tokens.npz",
        cnn=models.cnn(d / "cnn.keras"),
        lstm=models.recurrent(d / "lstm.keras", "lstm"),
        gru=models.recurrent(d / "gru.keras", "gru"),
        gru_k3=models.recurrent(d / "gru_k3.keras", "gru", keras="keras3"),
        attention=models.attention(d / "attention.keras", epochs=40),
        attention_k3=models.attention(d / "attention_k3.keras", keras="keras3"),
    )


# ---- convolutional -------------------------------------------------------------------------------
def test_cnn_all_five_variants_pass_on_digits(fam, tmp_path):
    out = tmp_path / "out"
    doc = build(fam.cnn, out, quantize=None, data=fam.digits, settings=FAST)

    assert doc["passed"] is True
    assert doc["targets"]["tflite"]["conversion_path"] == "saved_model"
    arts = {a["variant"]: a for a in doc["artifacts"]}
    assert list(arts) == ALL_VARIANTS
    assert doc["data"]["rows"] == 300 and doc["data"]["calibration_rows"] == 200
    for variant, a in arts.items():
        assert a["passed"] is True, (variant, a["failures"])
        assert (out / a["path"]).is_file()
        metrics = a["parity"]["outputs"]["probs"]
        assert a["parity"]["samples"] == 300
        assert metrics["top1_agreement"] >= 0.99
        assert a["latency"]["p50_ms"] > 0 and a["latency"]["p99_ms"] >= a["latency"]["p50_ms"]
        assert a["details"]["calibration_rows"] == (200 if variant in ("int8", "int16x8") else 0)
    assert arts["int8"]["details"]["io_dtype"] == "int8"
    assert arts["float32"]["parity"]["outputs"]["probs"]["max_abs_rel"] <= 1e-5
    # quantized weights are smaller on disk: 4 bytes -> 2 (float16) -> 1 (int8, dynamic)
    size = {v: a["bytes"] for v, a in arts.items()}
    assert size["float16"] < size["float32"]
    assert size["int8"] < 0.6 * size["float32"] and size["dynamic"] < 0.6 * size["float32"]
    assert arts["int8"]["size_ratio_to_float32"] == pytest.approx(size["int8"] / size["float32"])


# ---- recurrent -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lstm_build(fam, tmp_path_factory):
    return build_or_failure(fam.lstm, tmp_path_factory.mktemp("lstm") / "out", data=fam.seq)


def test_lstm_lowers_to_builtins_with_fixed_shapes(lstm_build):
    doc, _ = lstm_build
    assert doc["targets"]["tflite"] == {
        "conversion_path": "fixed_shape", "needs_flex": False, "select_tf_ops": [], "fixed_shapes": {"seq": [1, 8, 3]},
        "notes": ["input shapes fixed to convert to builtin ops (recurrent layers need static shapes): "
                  "seq (None, 8, 3) -> (1, 8, 3); the artifact accepts only these shapes"]}
    [a] = doc["artifacts"]
    assert a["details"]["conversion_path"] == "fixed_shape" and a["details"]["needs_flex"] is False
    assert a["parity"]["runtime"] == "litert"
    assert set(a["parity"]["outputs"]) == {"out"}


def test_lstm_float32_parity_passes(lstm_build):
    # The fused UNIDIRECTIONAL_SEQUENCE_LSTM keeps its state in variable tensors between invocations:
    # the harness resets them before each row, or every row after the first starts from the last.
    doc, error = lstm_build
    assert error is None, str(error)
    assert doc["artifacts"][0]["parity"]["outputs"]["out"]["max_abs_rel"] <= 1e-5


@pytest.mark.node
def test_lstm_runs_in_every_tfjs_backend_unrolled(fam, tmp_path):
    # The LSTM's while loop made the TF.js graph model dynamic (executeAsync only) and its fused
    # ops were kernels wasm lacks (_FusedMatMul with a rank-3 bias). With fixed time steps the js
    # preflight re-traces it unrolled (targets/js/retrace.py): no control flow, every backend.
    doc = build(fam.lstm, tmp_path / "out", data=fam.seq, targets=("js",))
    [a] = doc["artifacts"]
    assert doc["passed"] is True and a["parity"]["samples"] == 96
    control_flow = {"Enter", "Exit", "Merge", "Switch", "LoopCond", "NextIteration", "While", "StatelessWhile"}
    assert not control_flow & set(doc["targets"]["js"]["ops"]), doc["targets"]["js"]["ops"]
    assert {"op": "While", "nodes": 1, "into": retrace.UNROLLED} in doc["targets"]["js"]["rewrites"]
    assert {"cpu", "wasm"} <= set(a["parity"]["backends"])


@pytest.mark.node
def test_open_length_lstm_keeps_its_loop_in_tfjs_and_its_dimension(fam, tmp_path):
    # An open sequence length cannot be unrolled: the bundle keeps the loop (executeAsync) and the
    # open dimension; the fixed-shape TFLite artifact says on stderr what it fixed.
    models.open_length_lstm(tmp_path / "open.keras")
    proc = run_cli("build", "--model", str(tmp_path / "open.keras"), "--data", str(fam.seq), "--target", "tflite,js",
                   "--quantize", "float32", "--no-latency", "--json", "--out", str(tmp_path / "out"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert "note: tflite: input shapes fixed" in proc.stderr and "seq (None, None, 3) -> (1, 8, 3)" in proc.stderr
    assert {"Enter", "Exit"} <= set(doc["targets"]["js"]["ops"])
    js = next(a for a in doc["artifacts"] if a["target"] == "js")
    assert js["passed"] is True and {"cpu", "wasm"} <= set(js["parity"]["backends"])


def test_gru_lowers_to_builtins_with_fixed_shapes_and_passes(fam, tmp_path):
    doc = build(fam.gru, tmp_path / "out", data=fam.seq, quantize=("float32", "dynamic"))
    assert doc["passed"] is True
    assert doc["targets"]["tflite"]["conversion_path"] == "fixed_shape"
    assert doc["targets"]["tflite"]["fixed_shapes"] == {"seq": [1, 8, 3]}
    for a in doc["artifacts"]:
        assert a["passed"] is True and a["details"]["conversion_path"] == "fixed_shape"
        assert a["parity"]["samples"] == 96
    assert doc["artifacts"][0]["parity"]["outputs"]["out"]["max_abs_rel"] <= 1e-5


def test_keras3_gru_lowers_with_fixed_shapes_and_passes(fam, tmp_path):
    # The fixed-shape converter once got a Keras 3 model whose variables it could not see: the
    # artifact kept READ_VARIABLE ops that failed in LiteRT.
    doc = build(fam.gru_k3, tmp_path / "out", data=fam.seq)
    assert doc["passed"] is True
    assert doc["source"]["keras"] == "keras3"
    assert doc["artifacts"][0]["details"]["conversion_path"] == "fixed_shape"
    assert doc["artifacts"][0]["parity"]["outputs"]["out"]["max_abs_rel"] <= 1e-5


def test_gru_parallel_fixed_shape_conversions(fam, tmp_path):
    # Once a thread race on one shared fixed-shape tf.function (artifacts without a signature, or a
    # segfault); each conversion now runs in a worker process of its own.
    proc = run_cli("build", "--model", str(fam.gru), "--data", str(fam.seq), "--quantize", "float16,dynamic",
                   "--jobs", "2", "--no-latency", "--quiet", "--out", str(tmp_path / "out"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_gru_int8_crash_fails_those_artifacts_not_the_build(fam, tmp_path):
    # TensorFlow 2.19's converter segfaults calibrating a fixed-shape GRU for int8 and int16x8
    # (calibrator._feed_tensors). The crash ends that conversion's worker: those artifacts fail
    # (exit 3, one error line each), the others are still converted and validated.
    out = tmp_path / "out"
    proc = run_cli("build", "--model", str(fam.gru), "--data", str(fam.seq), "--quantize", "float16,int8,int16x8",
                   "--no-latency", "--json", "--out", str(out), timeout=300)
    assert proc.returncode == 3, proc.stderr[-2000:]
    error_lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("deploykit: error:")]
    assert len(error_lines) == 1
    failed = [ln.strip() for ln in proc.stderr.splitlines() if "conversion failed" in ln and ln.startswith("  ")]
    assert [ln.split(":")[0] for ln in failed] == ["tflite/int8", "tflite/int16x8"], proc.stderr[-2000:]
    assert all("crashed (SIGSEGV)" in ln for ln in failed)
    arts = {a["variant"]: a for a in json.loads(proc.stdout)["manifest"]["artifacts"]}
    assert arts["float16"]["passed"] is True and arts["float16"]["parity"]["samples"] == 96
    for variant in ("int8", "int16x8"):
        assert arts[variant]["path"] is None and arts[variant]["failures"][0]["kind"] == "conversion"
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["out.failed"]  # no leftovers
    kept = json.loads((tmp_path / "out.failed" / "manifest.json").read_text())
    assert kept["passed"] is False and (tmp_path / "out.failed" / "tflite" / "model_float16.tflite").is_file()


# ---- attention -----------------------------------------------------------------------------------
def test_attention_float32_and_int8_pass_on_realistic_data(fam, tmp_path):
    doc = build(fam.attention, tmp_path / "out", data=fam.tokens, quantize=("float32", "int8"))
    assert doc["passed"] is True
    assert doc["targets"]["tflite"]["needs_flex"] is False
    f32, i8 = doc["artifacts"]
    assert f32["parity"]["outputs"]["probs"]["max_abs_rel"] <= 1e-5
    assert i8["details"]["io_dtype"] == "int8" and i8["details"]["calibration_rows"] == 96
    assert i8["parity"]["outputs"]["probs"]["cosine"] >= 0.99
    assert i8["parity"]["outputs"]["probs"]["top1_agreement"] >= 0.99


def test_keras3_attention_passes(fam, tmp_path):
    doc = build(fam.attention_k3, tmp_path / "out", data=fam.tokens, quantize=("float32", "float16"))
    assert doc["passed"] is True and doc["source"]["keras"] == "keras3"
    assert doc["targets"]["tflite"]["needs_flex"] is False
    assert all(set(a["parity"]["outputs"]) == {"probs"} for a in doc["artifacts"])


# ---- Select TF ops (Flex) ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def det(tmp_path_factory):
    d = tmp_path_factory.mktemp("flex")
    rng = np.random.default_rng(4)
    mats = (rng.standard_normal((32, 3, 3)) + 2 * np.eye(3)).astype(np.float32)
    np.savez(d / "mats.npz", m=mats)
    return SimpleNamespace(model=models.determinant_saved_model(d / "det"), data=d / "mats.npz")


def test_non_builtin_op_is_refused_naming_it(det, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UnsupportedOpsError) as info:
        build(det.model, out, data=det.data)
    exc = info.value
    assert exc.exit_code == 2 and exc.code == "unsupported_ops"
    assert str(det.model) in exc.message and "MatrixDeterminant" in exc.message
    assert "--allow-select-tf-ops" in exc.message and "\n" not in exc.message
    assert exc.details == {"ops": ["FlexMatrixDeterminant"]}
    assert not out.exists()


def test_select_tf_ops_build_records_flex_and_validates_with_tensorflow(det, tmp_path):
    out = tmp_path / "out"
    doc = build(det.model, out, data=det.data, allow_select_tf_ops=True)
    assert doc["passed"] is True
    assert doc["targets"]["tflite"]["needs_flex"] is True
    assert doc["targets"]["tflite"]["select_tf_ops"] == ["FlexMatrixDeterminant"]
    [a] = doc["artifacts"]
    assert a["details"]["needs_flex"] is True and a["details"]["select_tf_ops"] == ["FlexMatrixDeterminant"]
    # LiteRT has no Flex delegate; TensorFlow's interpreter does
    assert a["parity"]["runtime"] == "tensorflow.lite"
    assert a["parity"]["samples"] == 32
    assert a["parity"]["outputs"]["det"]["max_abs_rel"] <= 1e-5
    assert (out / a["path"]).is_file()

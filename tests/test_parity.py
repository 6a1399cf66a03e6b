"""The parity metrics and budget checks, on hand-made arrays."""
import numpy as np
import pytest

from deploykit.contract import IOContract, TensorInfo
from deploykit.errors import BadInputError
from deploykit.validation import parity

CONTRACT = IOContract(
    inputs=(TensorInfo("x", "float32", (None, 4)),),
    outputs=(TensorInfo("probs", "float32", (None, 3)), TensorInfo("score", "float32", (None, 1))),
)


def _ref():
    rng = np.random.default_rng(0)
    probs = rng.random((50, 3)).astype(np.float32)
    return {"probs": probs / probs.sum(1, keepdims=True), "score": rng.standard_normal((50, 1)).astype(np.float32)}


def test_identical_outputs_pass_with_perfect_metrics():
    ref = _ref()
    metrics, failures = parity.compare(CONTRACT, ref, {k: v.copy() for k, v in ref.items()}, {"max_abs": 0.0})
    assert failures == []
    assert metrics["probs"]["max_abs"] == 0.0 and metrics["probs"]["cosine"] == pytest.approx(1.0)
    assert metrics["probs"]["top1_agreement"] == 1.0
    assert "top1_agreement" not in metrics["score"]  # (batch, 1) is not classification-shaped


def test_every_failure_is_reported_names_then_shapes_then_values():
    ref = _ref()
    cand = {"probs": ref["probs"][:, ::-1].copy(), "extra": ref["score"]}  # score missing, probs permuted
    metrics, failures = parity.compare(CONTRACT, ref, cand, {"max_abs_rel": 1e-5, "top1_agreement": 0.99})
    kinds = [f.kind for f in failures]
    assert kinds[:2] == ["name", "name"]
    assert {f.output for f in failures if f.kind == "name"} == {"score", "extra"}
    value = [f for f in failures if f.kind == "value"]
    assert {f.metric for f in value} == {"max_abs_rel", "top1_agreement"}
    assert all(f.output == "probs" and f.value is not None and f.budget is not None for f in value)
    assert "top1_agreement" in value[-1].message and ">= 0.99" in value[-1].message


def test_shape_mismatch_is_reported_and_values_skipped():
    ref = _ref()
    cand = {"probs": ref["probs"][:10], "score": ref["score"]}
    metrics, failures = parity.compare(CONTRACT, ref, cand, {"max_abs": 1.0})
    assert [f.kind for f in failures] == ["shape"]
    assert "probs" not in metrics and "score" in metrics


def test_nan_output_fails_every_budget():
    ref = _ref()
    cand = {"probs": np.full_like(ref["probs"], np.nan), "score": ref["score"]}
    _, failures = parity.compare(CONTRACT, ref, cand, {"cosine": 0.5})
    assert [(f.output, f.metric) for f in failures] == [("probs", "cosine")]


def test_relative_error_scales_with_the_output():
    ref = {"probs": np.full((4, 3), 1000.0), "score": np.zeros((4, 1))}
    cand = {"probs": ref["probs"] + 0.5, "score": ref["score"]}
    metrics, _ = parity.compare(CONTRACT, ref, cand, {})
    assert metrics["probs"]["max_abs"] == pytest.approx(0.5)
    assert metrics["probs"]["max_abs_rel"] == pytest.approx(0.0005)


def test_artifact_budgets_on_size_and_latency():
    failures = parity.check_artifact_budgets({"bytes": 2_000, "p99_ms": 3.0, "p50_ms": None}, {"bytes": 1_000, "p99_ms": 5.0, "p50_ms": 1.0})
    assert [(f.kind, f.metric) for f in failures] == [("size", "bytes")]


def test_unknown_budget_metric_is_bad_input():
    with pytest.raises(BadInputError, match="budgets.tflite.int8: unknown budget metric"):
        parity.check_budget_names({"accuracy": 0.9}, "budgets.tflite.int8")


def test_reference_with_nan_is_refused_and_constant_output_warned():
    with pytest.raises(BadInputError, match="m.keras: the model's output 'probs' holds 2 NaN"):
        parity.check_reference({"probs": np.array([[np.nan, 1.0], [np.inf, 0.0]])}, "m.keras")
    warnings = parity.check_reference({"probs": np.ones((5, 3)), "score": np.arange(5.0)[:, None]}, "m.keras")
    assert len(warnings) == 1 and "'probs' is identical for every parity row" in warnings[0]

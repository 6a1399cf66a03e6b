"""Generic validation over a runtime with several backends: every backend goes through the same
comparison, so a failure on any of them fails the artifact, even when another backend is the one
farthest from the reference by max_abs_rel (the old "worst backend" pick missed exactly that)."""
from __future__ import annotations

import numpy as np

from deploykit.config import LatencySettings
from deploykit.contract import IOContract, TensorInfo
from deploykit.records import ArtifactRecord
from deploykit.targets.base import Artifact, Target
from deploykit.validation import judge

CONTRACT = IOContract(inputs=(TensorInfo("x", "float32", (None, 4)),), outputs=(TensorInfo("probs", "float32", (None, 3)),))


def _reference(rows=40):
    rng = np.random.default_rng(1)
    p = rng.random((rows, 3)).astype(np.float32)
    p[:, 2] = p[:, :2].max(axis=1) + 0.02  # class 2 wins every row, by a small margin
    return {"probs": p}


class TwoBackends(Target):
    """A runtime whose backends each return crafted outputs (a test double of a multi-backend runtime)."""

    name, summary, runtime, variants = "twob", "test", "twob", ("float32",)
    default_budgets = {"float32": {"max_abs_rel": 0.2, "top1_agreement": 0.99}}

    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs

    def prepare(self, *a):
        return {}

    def convert(self, *a):
        raise NotImplementedError

    def run(self, request, work):
        if request.mode == "latency":
            return {"ok": True, "timings_ms": [1.0, 1.1, 0.9], "runtime": "twob", "runtime_version": "1"}
        for name, out in self.outputs.items():
            np.savez(request.outputs_for(name), probs=out)
        return {"ok": True, "backends": list(self.outputs), "runtime": "twob[a,b]", "runtime_version": "1"}


def _judge(outputs, tmp_path):
    ref = _reference()
    target = TwoBackends(outputs)
    record = ArtifactRecord(Artifact("twob", "float32", tmp_path / "art"), tmp_path / "in.npz",
                            dict(TwoBackends.default_budgets["float32"]), 10)
    judge.judge([record], {"twob": target}, CONTRACT, ref, measure=True, settings=LatencySettings(), work=tmp_path)
    return record


def test_a_failure_on_the_backend_that_is_not_the_farthest_is_reported(tmp_path):
    ref = _reference()["probs"]
    far_but_right = ref + 0.15 * np.abs(ref).max()  # max_abs_rel 0.15: within budget, argmax kept
    near_but_wrong = ref.copy()
    near_but_wrong[:5, 2] -= 0.03  # five rows lose class 2: a small error that flips the top-1
    record = _judge({"a": far_but_right, "b": near_but_wrong}, tmp_path)
    assert not record.passed
    assert [f["message"] for f in record.failures] == [
        "[b] output 'probs': top1_agreement = 0.875, budget >= 0.99"]
    backends = record.parity.backends
    assert backends["a"].passed and not backends["b"].passed
    assert backends["a"].outputs["probs"]["max_abs_rel"] > backends["b"].outputs["probs"]["max_abs_rel"]
    worst = record.parity.outputs["probs"]  # each metric's worst value over the backends
    assert worst["max_abs_rel"] == backends["a"].outputs["probs"]["max_abs_rel"]
    assert worst["top1_agreement"] == 0.875
    doc = record.parity.to_json()
    assert set(doc["backends"]) == {"a", "b"} and doc["passed"] is False
    assert record.latency["p50_ms"] == 1.0  # latency still measured for the unfaithful artifact


def test_every_backend_passing_passes_and_one_backend_keeps_the_plain_shape(tmp_path):
    ref = _reference()["probs"]
    record = _judge({"a": ref.copy(), "b": ref * 1.01}, tmp_path)
    assert record.passed and record.failures == []
    single = _judge({"only": ref.copy()}, tmp_path)
    assert single.passed and "backends" not in single.parity.to_json()

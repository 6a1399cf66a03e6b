"""Every model family through every target: validated in each target's real runtime, or refused in
the preflight (exit 2, naming the ops) where that is allowed (string inputs on TF.js, and on TFLite
without --allow-select-tf-ops). Never a false failure: each artifact passes its default budgets.

The families are in tests/families.py. CI builds the lighter ones (one of each family, Keras 3 and
tf_keras, two applications networks counted with test_families' MobileNet-sized CNNs);
`DEPLOYKIT_FAMILIES=all` adds the heavy ones (EfficientNetB0, ResNet50, DenseNet121, the other
flavour of each family). benchmarks/families.py prints the same matrix with bytes, p50 and margins.
"""
from __future__ import annotations

import os

import pytest

import deploykit
from deploykit.errors import UnsupportedOpsError

from .families import FAMILIES, Family

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")]

TARGETS = ("tflite", "js", "serving")
FULL = os.environ.get("DEPLOYKIT_FAMILIES") == "all"
CHOSEN = [f for f in FAMILIES if FULL or not f.heavy]


def _build(model, data, out, targets, **settings) -> dict:
    return deploykit.build(model, data, targets=list(targets), quantize="float32", latency=False, out=out, **settings)


@pytest.mark.parametrize("family", CHOSEN, ids=[f.name for f in CHOSEN])
def test_family_validates_on_every_target_or_is_refused_in_the_preflight(family: Family, tmp_path):
    model, data = family.build(tmp_path)
    built = [t for t in TARGETS if t not in family.refused]
    # the serving container (REST) where its JSON encodings matter; in process otherwise (CI time:
    # benchmarks/families.py runs every family with the container)
    doc = _build(model, data, tmp_path / "out", built, container=family.container or FULL)

    assert doc["passed"] is True
    by_target = {a["target"]: a for a in doc["artifacts"]}
    assert sorted(by_target) == sorted(built)
    for target, a in by_target.items():
        assert a["passed"] is True, (target, a["failures"])
        backends = a["parity"].get("backends") or {"": a["parity"]}
        assert backends, target
        for name, b in backends.items():  # every backend compared, every output within its budget
            assert set(b["outputs"]) == {o["name"] for o in doc["contract"]["outputs"]}, (target, name)
    if "js" in by_target:
        assert set(by_target["js"]["parity"]["backends"]) >= {"cpu", "wasm"}

    for target in family.refused:  # refused before any conversion, naming what it cannot run
        with pytest.raises(UnsupportedOpsError) as refused:
            _build(model, data, tmp_path / f"refused-{target}", [target])
        assert refused.value.exit_code == 2
        assert "string" in refused.value.message or "ops" in refused.value.message, refused.value.message
        assert not (tmp_path / f"refused-{target}").exists()
    if "tflite" in family.refused:  # ... and with the Flex delegate it validates
        flex = _build(model, data, tmp_path / "flex", ["tflite"], allow_select_tf_ops=True)
        assert flex["passed"] is True and flex["artifacts"][0]["details"]["needs_flex"]


def test_js_rewrites_are_recorded_for_the_families_that_need_them(tmp_path):
    """A Keras 3 stacked LSTM is unrolled and a tf_keras encoder has its Einsum and LayerNorm
    rewritten: the manifest says what was done, and parity on wasm proves it."""
    by_name = {f.name: f for f in FAMILIES}
    for name, expected in (("lstm_sequential_k3", {"While"}), ("transformer_tf_keras", {"Einsum", "FusedBatchNormV3"})):
        model, data = by_name[name].build(tmp_path)
        doc = _build(model, data, tmp_path / f"out-{name}", ["js"])
        js = doc["artifacts"][0]
        assert expected <= {r["op"] for r in js["details"]["rewrites"]}, js["details"]["rewrites"]
        assert not {"Einsum", "Enter", "Exit"} & set(js["details"]["ops"])
        assert js["parity"]["backends"]["wasm"]["passed"] is True

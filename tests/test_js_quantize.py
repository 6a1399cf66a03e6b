"""deploykit.targets.js_quantize: quantized TF.js bundles re-written from the float32 bundle are the
bundles the tensorflowjs converter writes (same shard bytes, same model.json)."""
from __future__ import annotations

import json
import os

import pytest

from deploykit.targets.js.quantize import can_requantize, requantize
from deploykit.targets.js.target import QUANTIZATION

pytestmark = pytest.mark.slow
SHARD = 16 * 1024  # small shards: even the uint8 weights (30 KB) span several files


@pytest.fixture(scope="module")
def converted(tmp_path_factory, keras):
    """A SavedModel (conv + dense, int32 and float32 weights) and the converter's bundle per variant."""
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    from tensorflowjs.converters.tf_saved_model_conversion_v2 import convert_tf_saved_model

    root = tmp_path_factory.mktemp("jsq")
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 3), name="image")
    h = keras.layers.Flatten()(keras.layers.Conv2D(8, 3, activation="relu")(x))
    y = keras.layers.Dense(100, activation="relu")(h)
    model = keras.Model(x, keras.layers.Dense(10, activation="softmax", name="probs")(y))
    model.save(str(root / "sm"), save_format="tf")
    bundles = {}
    for variant, dtype_map in QUANTIZATION.items():
        bundles[variant] = root / f"conv-{variant}"
        convert_tf_saved_model(str(root / "sm"), str(bundles[variant]), signature_def="serving_default",
                               quantization_dtype_map=dtype_map, weight_shard_size_bytes=SHARD,
                               use_structured_outputs_names=True)
    return root, bundles


@pytest.mark.parametrize("variant", ["float16", "uint16", "uint8"])
def test_requantized_bundle_is_the_converters(converted, variant):
    root, bundles = converted
    assert can_requantize(bundles["float32"])
    ours = root / f"ours-{variant}"
    requantize(bundles["float32"], ours, QUANTIZATION[variant], SHARD)
    theirs = bundles[variant]
    names = sorted(p.name for p in theirs.iterdir())
    assert names == sorted(p.name for p in ours.iterdir())
    assert len([n for n in names if n.endswith(".bin")]) > 1  # several shards were compared
    for name in names:
        if name != "model.json":
            assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
    mine, ref = json.loads((ours / "model.json").read_text()), json.loads((theirs / "model.json").read_text())
    mine.pop("convertedBy"), ref.pop("convertedBy")
    assert mine == ref


def test_quantized_or_odd_bundles_are_converted_instead(converted, tmp_path):
    _root, bundles = converted
    assert not can_requantize(bundles["uint8"])  # already quantized: no float32 values to start from
    assert not can_requantize(tmp_path)  # no model.json
    (tmp_path / "model.json").write_text(json.dumps({"format": "layers-model", "weightsManifest": []}))
    assert not can_requantize(tmp_path)

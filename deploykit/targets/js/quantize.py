"""TF.js weight-quantized variants (float16, uint16, uint8) from the float32 bundle, without a
second conversion.

The tensorflowjs converter quantizes weights only in its very last step (`write_weights` with a
`quantization_dtype_map`); the graph, its optimizations and the weight values before that step are
the same for every variant. Re-running the converter per variant repeats the SavedModel load,
freeze and Grappler passes (measured on MobileNetV2 here: 21 to 41 s per variant on a loaded
2-core machine). Reading the float32 bundle's weights back and writing them again with the same
map takes 0.1 to 0.3 s and gives byte-identical shards and the same model.json
(tests/test_js_quantize.py checks both against the converter).

Only plain bundles are re-quantized: float32/int32/bool weights, none already quantized. Anything
else (e.g. string tables) makes `can_requantize` false and the caller converts as before.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping

PLAIN_DTYPES = {"float32", "int32", "bool"}


def can_requantize(bundle: Path) -> bool:
    """True when `bundle` is a float32 graph-model bundle whose weights can be read back as is."""
    try:
        doc = json.loads((bundle / "model.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if doc.get("format") != "graph-model":
        return False
    entries = [w for group in doc.get("weightsManifest") or [] for w in group.get("weights") or []]
    return all(w.get("dtype") in PLAIN_DTYPES and "quantization" not in w for w in entries)


def _skip_empty(dtype_map: Mapping[str, str], groups) -> dict:
    """`{dtype: "*"}` as the names of the non-empty weights: tensorflowjs's quantizer takes the
    min and max of each weight and fails on a zero-size one (seen in a transformer), which then
    stays float32 as the runtime expects. The patterns are fnmatch's, so names are escaped."""
    names = [e["name"] for group in groups for e in group if getattr(e["data"], "size", 1) > 0]
    if all(len(e["data"].shape) == 0 or e["data"].size > 0 for group in groups for e in group):
        return dict(dtype_map)  # nothing empty: the converter's own map, byte for byte
    escaped = [re.sub(r"([*?\[])", r"[\1]", n) for n in names]
    return {dtype: escaped if pattern == "*" else pattern for dtype, pattern in dtype_map.items()}


def requantize(src: Path, dest: Path, dtype_map: Mapping[str, str] | None, shard_bytes: int) -> None:
    """Write into `dest` the bundle the converter would write from the same model with
    `quantization_dtype_map=dtype_map`, starting from the float32 bundle `src`."""
    from tensorflowjs import read_weights, write_weights

    doc = json.loads((src / "model.json").read_text())
    groups = read_weights.read_weights(doc["weightsManifest"], str(src))
    dest.mkdir(parents=True)
    doc["weightsManifest"] = write_weights.write_weights(
        groups, str(dest), shard_size_bytes=shard_bytes, write_manifest=False,
        quantization_dtype_map=_skip_empty(dtype_map, groups) if dtype_map else None,
    )
    with open(dest / "model.json", "w") as fh:  # as the converter writes it
        json.dump(doc, fh)

"""Measure what an optimization bought: sparsity and unique values of the stripped weights, raw and
gzip sizes.

Everything here is measured, never taken from the settings: the requested sparsity is not reported
as the reached one.
"""
from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np

KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings", "recurrent_kernel")


def _kernels(layer) -> list:
    """The layer's kernel-like weights (a QAT wrapper lists the wrapped layer's kernel among its own)."""
    found = []
    for w in layer.weights:
        base = w.name.split("/")[-1].split(":")[0]
        if base in KERNEL_NAMES:
            found.append(w)
    return found


def _layer_name(layer) -> str:
    inner = getattr(layer, "layer", None)
    return inner.name if inner is not None else layer.name


def sparsity(keras_model, layers: list[str] | None = None) -> dict:
    """Fraction of exact zeros per layer's kernels, and overall over `layers` (default: all kernels)."""
    per_layer, zeros, total = {}, 0, 0
    for layer in keras_model.layers:
        kernels = _kernels(layer)
        if not kernels:
            continue
        name = _layer_name(layer)
        values = np.concatenate([np.asarray(k.numpy()).ravel() for k in kernels])
        z = int(values.size - np.count_nonzero(values))
        per_layer[name] = round(z / values.size, 6)
        if layers is None or name in layers:
            zeros, total = zeros + z, total + values.size
    return {"overall": round(zeros / total, 6) if total else 0.0, "weights_counted": total, "layers": per_layer}


def all_weights_sparsity(keras_model) -> float:
    values = [np.asarray(w.numpy()).ravel() for w in keras_model.weights if w.dtype.is_floating]
    flat = np.concatenate(values) if values else np.zeros(0)
    return round(float(1 - np.count_nonzero(flat) / flat.size), 6) if flat.size else 0.0


def unique_weights(keras_model, layers: list[str]) -> dict[str, int]:
    """Distinct values per kernel of each clustered layer."""
    counts = {}
    for layer in keras_model.layers:
        name = _layer_name(layer)
        if name in layers:
            for k in _kernels(layer):
                counts[f"{name}/{k.name.split('/')[-1].split(':')[0]}"] = int(np.unique(k.numpy()).size)
    return counts


def gzip_bytes(path: Path) -> int:
    """Bytes after gzip -9: of a file, or the sum over a bundle folder's files."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return sum(len(gzip.compress(p.read_bytes(), compresslevel=9, mtime=0)) for p in files)


def raw_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def keras_sizes(keras_model, dest: Path) -> dict:
    """Raw and gzip size of the model saved as HDF5 without optimizer state (as in tfmot's tutorials)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "HDF5 is a legacy format"
        keras_model.save(str(dest), include_optimizer=False, save_format="h5")
    return {"file": dest.name, "bytes": raw_bytes(dest), "gzip_bytes": gzip_bytes(dest)}

"""Parity and calibration data: read from a user's `.npz`, checked against the I/O contract, or
generated from the contract when the user gives none."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deploykit.arrays import read_npz
from deploykit.contract import IOContract, TensorInfo
from deploykit.errors import BadInputError

GENERATED_ROWS = 64
DYNAMIC_DIM_DEFAULT = 16  # length used for a dynamic non-batch dimension when generating data


def load_npz(path: str | Path, contract: IOContract) -> dict[str, np.ndarray]:
    p = Path(path)
    arrays = read_npz(p)  # headers checked before anything is allocated; no pickle
    chosen = _match_names(p, arrays, contract)  # input name -> npz key
    checked = {t.name: _check_array(p, chosen[t.name], arrays[chosen[t.name]], t) for t in contract.inputs}
    rows = {len(a) for a in checked.values()}
    if len(rows) != 1:
        raise BadInputError(f"{p}: arrays have different numbers of rows ({sorted(rows)})")
    return checked


def _match_names(p: Path, arrays: dict, contract: IOContract) -> dict[str, str]:
    names = contract.input_names
    if len(names) == 1:
        name = names[0]
        if name in arrays:
            return {name: name}
        if len(arrays) == 1:
            return {name: next(iter(arrays))}
        raise BadInputError(
            f"{p}: holds {', '.join(sorted(arrays))}; none is named '{name}' (the model's input)"
        )
    missing = [n for n in names if n not in arrays]
    if missing:
        raise BadInputError(f"{p}: missing array(s) for input(s) {', '.join(missing)} (has: {', '.join(sorted(arrays))})")
    return {n: n for n in names}


def _check_array(p: Path, key: str, array: np.ndarray, t: TensorInfo) -> np.ndarray:
    where = f"{p}[{key}]"
    if array.ndim != len(t.shape):
        raise BadInputError(f"{where}: has shape {array.shape}, input '{t.name}' expects {_fmt(t.shape)}")
    for got, want in zip(array.shape[1:], t.shape[1:]):
        if want is not None and got != want:
            raise BadInputError(f"{where}: has shape {array.shape}, input '{t.name}' expects {_fmt(t.shape)}")
    if len(array) == 0:
        raise BadInputError(f"{where}: has no rows")
    if t.dtype == "string":  # tf.string: text (numpy U) or bytes (numpy S); object arrays never load
        if array.dtype.kind not in "US":
            raise BadInputError(f"{where}: dtype {array.dtype} cannot feed string input '{t.name}' "
                                "(save text as a numpy string array: dtype U or S)")
        return np.ascontiguousarray(array)
    want = np.dtype(t.dtype)
    if np.issubdtype(want, np.floating):
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise BadInputError(f"{where}: dtype {array.dtype} cannot feed {t.dtype} input '{t.name}'")
        with np.errstate(over="ignore"):
            cast = array.astype(want, copy=False)
        bad = int(np.size(cast) - np.count_nonzero(np.isfinite(cast)))  # after the cast: 1e300 -> inf
        if bad:
            raise BadInputError(f"{where}: holds {bad} NaN or Inf value(s) (as {t.dtype})")
        return np.ascontiguousarray(cast)
    if np.issubdtype(want, np.integer):
        if not np.issubdtype(array.dtype, np.integer):
            raise BadInputError(f"{where}: dtype {array.dtype} cannot feed integer input '{t.name}' ({t.dtype})")
        info = np.iinfo(want)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise BadInputError(f"{where}: values outside the range of {t.dtype} input '{t.name}'")
    elif array.dtype != want:
        raise BadInputError(f"{where}: dtype {array.dtype}, input '{t.name}' expects {t.dtype}")
    return np.ascontiguousarray(array.astype(want, copy=False))


def _fmt(shape) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def generate(contract: IOContract, rows: int = GENERATED_ROWS, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs made from the signature: standard normal floats, small non-negative integers."""
    rng = np.random.default_rng(seed)
    data = {}
    for t in contract.inputs:
        shape = (rows,) + tuple(DYNAMIC_DIM_DEFAULT if d is None else d for d in t.sample_shape)
        if t.dtype == "string":
            raise BadInputError(f"input '{t.name}' takes strings: random values cannot stand for text; pass "
                                "--data FILE.npz with a numpy string array for it (dtype U or S)")
        dtype = np.dtype(t.dtype)
        if np.issubdtype(dtype, np.floating):
            data[t.name] = rng.standard_normal(shape).astype(dtype)
        elif np.issubdtype(dtype, np.integer):
            data[t.name] = rng.integers(0, 2, size=shape).astype(dtype)
        elif dtype == np.bool_:
            data[t.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise BadInputError(f"input '{t.name}': cannot generate data of dtype {t.dtype}; pass --data")
    return data


def take(data: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    return {k: v[:rows] for k, v in data.items()}

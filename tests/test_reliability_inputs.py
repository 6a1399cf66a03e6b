"""Bad inputs through the real CLI, held to the common criterion (tests/reliability.py): exit code, one
error line naming the file or field, the `--json` error code, the previous output byte-identical, no
staging folder or temporary file left.

Already covered in-process by test_intake.py (not repeated here): every bad model file below and a
dozen bad `.npz` shapes (missing names, wrong feature shape or rank, float data for an int input,
int64 beyond int32, NaN, Inf, float64 beyond float32, strings, object arrays, row counts, no rows),
each checked for exit 2, one line and no output. Corrupted `.tflite` artifacts reaching
`deploykit validate` are in test_reliability_tflite.py.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from .reliability import Workspace, assert_failure

pytestmark = pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    from . import models

    d = tmp_path_factory.mktemp("bad-inputs")
    return SimpleNamespace(
        keras=models.dense(d / "dense.keras"), h5=models.dense(d / "dense.h5"),
        saved_model=models.module_saved_model(d / "saved_model"), tflite=models.tflite_file(d / "model.tflite"),
        nan_model=_nan_model(d / "nan.keras"),
    )


def _nan_model(path: Path) -> Path:
    """A model whose outputs are NaN for every input (a NaN bias, as a diverged training leaves)."""
    from deploykit.tfenv import tf_keras

    k = tf_keras()
    x = k.Input((4,), name="x")
    dense = k.layers.Dense(3, name="y")
    model = k.Model(x, dense(x))
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel, np.full_like(bias, np.nan)])
    model.save(path)
    return path


def _bad_model(src, root: Path, case: str) -> Path:
    kb, hb = src.keras.read_bytes(), src.h5.read_bytes()
    files = {
        "missing .keras": ("absent.keras", None),
        "empty .keras": ("empty.keras", b""),
        "truncated .keras": ("truncated.keras", kb[: len(kb) // 3]),
        ".keras that is HDF5": ("mislabelled.keras", hb),
        "empty .h5": ("empty.h5", b""),
        "truncated .h5": ("truncated.h5", hb[: len(hb) // 3]),
        ".h5 that is a zip": ("mislabelled.h5", kb),
        ".tflite as the model": ("model.tflite", src.tflite.read_bytes()),
        ".tflite renamed .keras": ("tflite.keras", src.tflite.read_bytes()),
    }
    if case in files:
        name, data = files[case]
        path = root / name
        if data is not None:
            path.write_bytes(data)
        return path
    path = root / "saved_model"
    shutil.copytree(src.saved_model, path)
    pb = path / "saved_model.pb"
    if case == "SavedModel without saved_model.pb":
        pb.unlink()
    elif case == "SavedModel with empty saved_model.pb":
        pb.write_bytes(b"")
    elif case == "SavedModel with truncated saved_model.pb":
        pb.write_bytes(pb.read_bytes()[:300])
    return path


BAD_MODELS = {
    "missing .keras": "no such file",
    "empty .keras": "empty",
    "truncated .keras": "truncated or corrupt",
    ".keras that is HDF5": "HDF5",
    "empty .h5": "empty",
    "truncated .h5": "truncated or corrupt",
    ".h5 that is a zip": "zip archive",
    ".tflite as the model": "TFLite flatbuffer",
    ".tflite renamed .keras": "not a .keras file",
    "SavedModel without saved_model.pb": "not a SavedModel",
    "SavedModel with empty saved_model.pb": "empty",
    "SavedModel with truncated saved_model.pb": "unreadable SavedModel",  # the only one that loads TensorFlow
}


@pytest.mark.parametrize("case", BAD_MODELS)
def test_bad_model_file(src, tmp_path, case):
    ws = Workspace(tmp_path)
    model = _bad_model(src, tmp_path, case)
    proc = ws.cli("build", "--model", str(model), "--out", "out", "--no-latency", "--json")
    assert_failure(proc, 2, "bad_input", str(model), BAD_MODELS[case])
    ws.assert_untouched()


@pytest.mark.parametrize("case, says", [
    ("missing input name", "none is named 'x'"),
    ("NaN", "NaN or Inf"),
])
def test_bad_data_file(src, tmp_path, case, says):
    ws = Workspace(tmp_path)
    data = tmp_path / "data.npz"
    rows = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    if case == "NaN":
        rows[3, 2] = np.nan
        np.savez(data, x=rows)
    else:
        np.savez(data, a=rows, b=rows)
    proc = ws.cli("build", "--model", str(src.keras), "--data", str(data), "--out", "out", "--no-latency", "--json")
    assert_failure(proc, 2, "bad_input", str(data), says)
    ws.assert_untouched()


def test_model_whose_outputs_are_nan(src, tmp_path):
    ws = Workspace(tmp_path)
    proc = ws.cli("build", "--model", str(src.nan_model), "--out", "out", "--no-latency", "--json")
    assert_failure(proc, 2, "bad_input", str(src.nan_model), "output 'y'", "NaN or Inf")
    ws.assert_untouched()


# ---- missing runtimes for the js target -------------------------------------------------------------
def test_js_target_without_node_names_what_to_install(tmp_path):
    ws = Workspace(tmp_path)
    bare = tmp_path / "bin"
    bare.mkdir()
    proc = ws.cli("build", "--target", "js", "--out", "out", "--json", env={"PATH": str(bare)})
    assert_failure(proc, 4, "missing_runtime", "Node.js", "apt-get install -y nodejs")
    ws.assert_untouched()


@pytest.mark.node  # Node is found first; then Chromium is missing
def test_js_target_without_chromium_names_what_to_install(tmp_path):
    ws = Workspace(tmp_path)
    proc = ws.cli("build", "--target", "js", "--out", "out", "--json", env={"DEPLOYKIT_CHROMIUM": "/nonexistent"})
    assert_failure(proc, 4, "missing_runtime", "/nonexistent", "apt-get install -y chromium")
    ws.assert_untouched()

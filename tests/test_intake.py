"""Model intake: every input format builds and validates in LiteRT; names survive; bad files and bad
data fail with exit 2 and one line naming the file; models that carry code are refused (exit 5).

Real models, real conversion, the real LiteRT runtime: no mocks.
"""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import deploykit
from deploykit.digests import file_sha256
from deploykit.errors import BadInputError, DeployKitError, SecurityError

from . import models
from .conftest import NO_LATENCY

pytestmark = pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")


def build(model, out: Path, *, quantize=("float32",), data=None, **settings) -> dict:
    return deploykit.build(model=str(model), data=None if data is None else str(data), out=str(out),
                           quantize=quantize, **{**NO_LATENCY, **settings})


def fails(error: type[DeployKitError], model, out: Path, **kw) -> DeployKitError:
    with pytest.raises(error) as info:
        build(model, out, **kw)
    return info.value


def assert_nothing_written(out: Path) -> None:
    assert not out.exists(), f"{out} was created by a failed build"
    assert not list(out.parent.glob(f".{out.name}.staging-*")), "staging folder left behind"


def assert_bad_input(exc: DeployKitError, names: str, out: Path) -> None:
    assert isinstance(exc, BadInputError)
    assert exc.exit_code == 2
    assert "\n" not in exc.message, f"message is not one line: {exc.message!r}"
    assert names in exc.message, f"{names!r} not named in {exc.message!r}"
    assert_nothing_written(out)


def save_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def tflite_signature(path: Path) -> tuple[list[str], list[str]]:
    """Input and output names of the artifact's serving signature, read from the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(path.read_bytes(), 0)
    assert model.SignatureDefsLength() == 1
    sig = model.SignatureDefs(0)
    return ([sig.Inputs(i).Name().decode() for i in range(sig.InputsLength())],
            [sig.Outputs(i).Name().decode() for i in range(sig.OutputsLength())])


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    d = tmp_path_factory.mktemp("intake-models")
    return SimpleNamespace(
        dir=d,
        tfk_keras=models.dense(d / "dense.keras"),
        tfk_h5=models.dense(d / "dense.h5"),
        k3_keras=models.dense(d / "dense_k3.keras", keras="keras3"),
        tfk_saved_model=models.tf_keras_saved_model(d / "keras_saved_model"),
        module_saved_model=models.module_saved_model(d / "module_saved_model"),
        no_default=models.module_saved_model(d / "no_default", signature="predict"),
        tfk_multi=models.multi_io(d / "multi.keras"),
        k3_multi=models.multi_io(d / "multi_k3.keras", keras="keras3"),
        int_input=models.int_input(d / "int_input.keras"),
    )


@pytest.fixture(scope="module")
def tflite_model(tmp_path_factory):
    return models.tflite_file(tmp_path_factory.mktemp("tflite") / "model.tflite")


# ---- 1. every input format ---------------------------------------------------------------------
FORMATS = {
    # name: (fixture attribute, kind, keras, optimizable)
    "tf_keras .keras": ("tfk_keras", "keras_zip", "tf_keras", True),
    "tf_keras .h5": ("tfk_h5", "h5", "tf_keras", True),
    "keras3 .keras": ("k3_keras", "keras_zip", "keras3", False),
    "tf_keras SavedModel": ("tfk_saved_model", "saved_model", "tf_keras", False),
    "tf.Module SavedModel": ("module_saved_model", "saved_model", None, False),
}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_builds_and_passes_in_litert(src, tmp_path, fmt):
    attr, kind, keras, optimizable = FORMATS[fmt]
    path = getattr(src, attr)
    out = tmp_path / "out"
    doc = build(path, out)

    assert doc["passed"] is True
    s = doc["source"]
    assert (s["kind"], s["keras"], s["optimizable"], s["location"]) == (kind, keras, optimizable, str(path))
    assert len(s["sha256"]) == 64
    if path.is_file():
        assert s["sha256"] == file_sha256(path)
    assert ("note" in s) is (not optimizable)
    assert [(t["name"], t["shape"]) for t in doc["contract"]["inputs"]] == [("x", [None, 4])]
    assert [(t["name"], t["shape"]) for t in doc["contract"]["outputs"]] == [("y", [None, 3])]
    assert doc["data"]["origin"] == "generated" and doc["data"]["warnings"]

    [artifact] = doc["artifacts"]
    assert artifact["variant"] == "float32" and artifact["passed"] is True
    assert artifact["details"]["conversion_path"] == "saved_model"
    assert artifact["details"]["needs_flex"] is False
    parity = artifact["parity"]
    assert parity["runtime"] == "litert"
    assert parity["samples"] == doc["data"]["parity_rows"] > 0
    assert set(parity["outputs"]) == {"y"}
    assert parity["outputs"]["y"]["max_abs_rel"] <= 1e-5
    assert (out / "manifest.json").is_file()
    assert (out / artifact["path"]).is_file()
    assert tflite_signature(out / artifact["path"]) == (["x"], ["y"])


@pytest.mark.slow
def test_keras3_file_is_read_with_keras3_and_flagged_not_optimizable(src, tmp_path):
    doc = build(src.k3_keras, tmp_path / "out")
    assert doc["source"]["keras"] == "keras3"
    assert doc["source"]["optimizable"] is False
    assert "tf_keras" in doc["source"]["note"]
    # Weights really made it into the artifact (a Keras 3 model once converted with uninitialized
    # weights: outputs like 1e+36).
    metrics = doc["artifacts"][0]["parity"]["outputs"]["y"]
    assert metrics["max_abs_rel"] <= 1e-5 and metrics["cosine"] > 0.99999


MODULE_SOURCE = '''
from deploykit.tfenv import tf_keras


def make():
    keras = tf_keras()
    x = keras.Input((4,), name="features")
    return keras.Model(x, keras.layers.Dense(2, name="logits")(x))


def not_a_model():
    return 42
'''


@pytest.fixture
def mymod(tmp_path, monkeypatch):
    """`mymod.py` in a fresh working folder; sys.path and sys.modules are restored afterwards."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "mymod.py").write_text(MODULE_SOURCE)
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "path", list(sys.path))
    sys.modules.pop("mymod", None)
    yield work
    sys.modules.pop("mymod", None)


@pytest.mark.slow
def test_module_function_from_working_folder_builds(mymod, tmp_path):
    doc = build("mymod:make", tmp_path / "out")
    assert doc["passed"] is True
    assert doc["source"]["kind"] == "callable" and doc["source"]["location"] == "mymod:make"
    assert doc["source"]["keras"] == "tf_keras" and doc["source"]["optimizable"] is True
    assert [t["name"] for t in doc["contract"]["inputs"]] == ["features"]
    assert list(doc["artifacts"][0]["parity"]["outputs"]) == ["logits"]


@pytest.mark.parametrize("spec, says", [
    ("nosuchmod_dk:make", "cannot import module 'nosuchmod_dk'"),
    ("mymod:missing", "has no function 'missing'"),
    ("mymod:not_a_model", "expected a tf_keras.Model"),
])
def test_module_function_errors_name_the_spec(mymod, tmp_path, spec, says):
    out = tmp_path / "out"
    exc = fails(BadInputError, spec, out)
    assert_bad_input(exc, spec, out)
    assert says in exc.message


# ---- 2. multi-input / multi-output -----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("keras", ["tf_keras", "keras3"])
def test_multi_io_keeps_names_and_checks_every_output(src, tmp_path, keras):
    model = src.tfk_multi if keras == "tf_keras" else src.k3_multi
    data = save_npz(tmp_path / "data.npz", **models.multi_io_data(rows=24))
    out = tmp_path / "out"
    doc = build(model, out, data=data, quantize=("float32", "float16"))

    assert doc["passed"] is True
    assert {t["name"]: t["shape"] for t in doc["contract"]["inputs"]} == {"a": [None, 4], "b": [None, 2]}
    assert {t["name"]: t["shape"] for t in doc["contract"]["outputs"]} == {"score": [None, 1], "probs": [None, 3]}
    assert doc["data"]["origin"] == "file" and doc["data"]["sha256"] == file_sha256(data)
    assert doc["data"]["rows"] == 24 and doc["data"]["warnings"] == []

    assert [a["variant"] for a in doc["artifacts"]] == ["float32", "float16"]
    for artifact in doc["artifacts"]:
        assert artifact["passed"] is True
        assert set(artifact["parity"]["outputs"]) == set(models.MULTI_OUTPUTS)
        for metrics in artifact["parity"]["outputs"].values():
            assert {"max_abs", "max_abs_rel", "cosine"} <= set(metrics)
        assert "top1_agreement" in artifact["parity"]["outputs"]["probs"]  # (batch, classes) output
        assert "top1_agreement" not in artifact["parity"]["outputs"]["score"]  # (batch, 1): regression
        ins, outs = tflite_signature(out / artifact["path"])
        assert sorted(ins) == ["a", "b"] and sorted(outs) == ["probs", "score"]
    with np.load(out / "validation" / "inputs.npz") as npz:
        assert sorted(npz.files) == ["a", "b"] and len(npz["a"]) == 24
    with np.load(out / "validation" / "reference.npz") as npz:
        assert sorted(npz.files) == ["probs", "score"] and npz["probs"].shape == (24, 3)


@pytest.mark.slow
def test_single_input_model_accepts_npz_with_any_single_key(src, tmp_path):
    rows = np.random.default_rng(3).standard_normal((10, 4)).astype(np.float32)
    data = save_npz(tmp_path / "data.npz", whatever=rows)
    out = tmp_path / "out"
    doc = build(src.tfk_keras, out, data=data)
    assert doc["passed"] is True
    assert doc["data"]["origin"] == "file" and doc["data"]["rows"] == 10
    assert doc["artifacts"][0]["parity"]["samples"] == 10
    with np.load(out / "validation" / "inputs.npz") as npz:
        assert npz.files == ["x"]
        np.testing.assert_array_equal(npz["x"], rows)


# ---- 5. bad model files ------------------------------------------------------------------------
def _cut(data: bytes, start: int, stop: int) -> bytes:
    return data[:start] + data[stop:]


def _flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0xFF
    return bytes(b)


def _make_bad(src, request, d: Path, case: str) -> Path:
    kb, hb = src.tfk_keras.read_bytes(), src.tfk_h5.read_bytes()
    tfl = request.getfixturevalue("tflite_model").read_bytes() if "tflite" in case else b""
    files = {
        "missing file": ("absent.keras", None),
        "empty .keras": ("empty.keras", b""),
        "empty .h5": ("empty.h5", b""),
        "truncated .keras": ("truncated.keras", kb[: len(kb) // 2]),
        ".keras with bytes cut from the middle": ("holed.keras", _cut(kb, 3000, 3100)),
        ".keras with a flipped byte": ("flipped.keras", _flip(kb, 2000)),
        "truncated .h5": ("truncated.h5", hb[: len(hb) // 2]),
        ".h5 truncated by a few bytes": ("short.h5", hb[:-100]),
        ".h5 that is a zip": ("zip.h5", kb),
        ".keras that is HDF5": ("hdf5.keras", hb),
        ".tflite as model": ("model.tflite", tfl),
        ".tflite renamed .keras": ("tflite.keras", tfl),
        "unknown format": ("model.bin", b"\x00\x01 not a model at all"),
    }
    if case in files:
        name, data = files[case]
        path = d / name
        if data is not None:
            path.write_bytes(data)
        return path
    import shutil

    path = d / "saved_model"
    if case == "folder that is not a SavedModel":
        path.mkdir()
        (path / "notes.txt").write_text("hello")
    else:
        shutil.copytree(src.module_saved_model, path)
        pb = path / "saved_model.pb"
        if case == "SavedModel with empty saved_model.pb":
            pb.write_bytes(b"")
        elif case == "SavedModel with truncated saved_model.pb":
            pb.write_bytes(pb.read_bytes()[:500])
        elif case == "SavedModel without its variables":
            shutil.rmtree(path / "variables")
        else:
            raise AssertionError(case)
    return path


BAD_MODELS = {
    "missing file": "no such file",
    "empty .keras": "empty",
    "empty .h5": "empty",
    "truncated .keras": "truncated or corrupt",
    ".keras with bytes cut from the middle": "corrupt",
    ".keras with a flipped byte": "bad CRC",
    "truncated .h5": "truncated or corrupt",
    ".h5 truncated by a few bytes": "truncated or corrupt",
    ".h5 that is a zip": "zip archive",
    ".keras that is HDF5": "HDF5",
    ".tflite as model": "TFLite flatbuffer",
    ".tflite renamed .keras": "not a .keras file",
    "unknown format": "unknown model format",
    "folder that is not a SavedModel": "not a SavedModel",
    "SavedModel with empty saved_model.pb": "empty",
    "SavedModel with truncated saved_model.pb": "unreadable SavedModel",
    "SavedModel without its variables": "unreadable SavedModel",
}


@pytest.mark.parametrize("case", [
    pytest.param(c, marks=pytest.mark.slow) if "tflite" in c else c for c in BAD_MODELS  # converts one
])
def test_bad_model_file_exits_2_naming_it(src, request, tmp_path, case):
    path = _make_bad(src, request, tmp_path, case)
    out = tmp_path / "out"
    exc = fails(BadInputError, path, out)
    assert_bad_input(exc, str(path), out)
    assert BAD_MODELS[case] in exc.message


def test_hdf5_weights_only_file_is_refused(tmp_path):
    from deploykit.tfenv import tf_keras

    k = tf_keras()
    x = k.Input((4,), name="x")
    path = tmp_path / "weights.h5"
    k.Model(x, k.layers.Dense(2)(x)).save_weights(str(path))
    out = tmp_path / "out"
    exc = fails(BadInputError, path, out)
    assert_bad_input(exc, str(path), out)
    assert "no model config" in exc.message


def test_saved_model_without_serving_default_names_what_it_has(src, tmp_path):
    out = tmp_path / "out"
    exc = fails(BadInputError, src.no_default, out)
    assert_bad_input(exc, str(src.no_default), out)
    assert "serving_default" in exc.message and "predict" in exc.message


# ---- 5. bad --data ---------------------------------------------------------------------------
def _bad_data(case: str) -> dict:
    good = models.int_input_data(rows=16)
    ids, vals = good["ids"], good["vals"]
    return {
        "missing input name": {"ids": ids},
        "wrong feature shape": {"ids": ids, "vals": vals[:, :2]},
        "wrong rank": {"ids": ids, "vals": vals[..., None]},
        "float data for an int input": {"ids": ids.astype(np.float32), "vals": vals},
        "int64 ids beyond int32": {"ids": ids.astype(np.int64) + 2**40, "vals": vals},
        "NaN": {"ids": ids, "vals": np.where(vals > 0, np.nan, vals).astype(np.float32)},
        "Inf": {"ids": ids, "vals": np.full_like(vals, np.inf)},
        "float64 beyond float32": {"ids": ids, "vals": np.full(vals.shape, 1e300)},
        "strings": {"ids": ids, "vals": np.full(vals.shape, "a")},
        "object array (pickle)": {"ids": ids, "vals": np.array([{"x": 1}] * 16, dtype=object)},
        "different row counts": {"ids": ids, "vals": vals[:8]},
        "no rows": {"ids": ids[:0], "vals": vals[:0]},
    }[case]


BAD_DATA = {
    "missing input name": "missing array(s) for input(s) vals",
    "wrong feature shape": "input 'vals' expects (?, 3)",
    "wrong rank": "input 'vals' expects (?, 3)",
    "float data for an int input": "cannot feed integer input 'ids'",
    "int64 ids beyond int32": "outside the range of int32",
    "NaN": "NaN or Inf",
    "Inf": "NaN or Inf",
    "float64 beyond float32": "NaN or Inf",
    "strings": "cannot feed float32 input 'vals'",
    "object array (pickle)": "allow_pickle=False",
    "different row counts": "different numbers of rows",
    "no rows": "no rows",
}


@pytest.mark.parametrize("case", BAD_DATA)
def test_bad_npz_exits_2_naming_file_and_input(src, tmp_path, case):
    data = save_npz(tmp_path / "data.npz", **_bad_data(case))
    out = tmp_path / "out"
    exc = fails(BadInputError, src.int_input, out, data=data)
    assert_bad_input(exc, str(data), out)
    assert BAD_DATA[case] in exc.message


@pytest.mark.parametrize("case, says", [
    ("absent", "no such data file"),
    ("not a zip", "unreadable .npz"),
    ("no array named after the input", "none is named 'x'"),
])
def test_unusable_npz_file_for_single_input_model(src, tmp_path, case, says):
    data = tmp_path / "data.npz"
    if case == "not a zip":
        data.write_bytes(b"these are not arrays")
    elif case != "absent":
        rows = np.zeros((4, 4), np.float32)
        save_npz(data, first=rows, second=rows)
    out = tmp_path / "out"
    exc = fails(BadInputError, src.tfk_keras, out, data=data)
    assert_bad_input(exc, str(data), out)
    assert says in exc.message


# ---- 6. security: models that carry code ---------------------------------------------------------
LAMBDA_MODELS = {"tf_keras .keras": ("tf_keras", "keras"), "tf_keras .h5": ("tf_keras", "h5"),
                 "keras3 .keras": ("keras3", "keras")}


@pytest.fixture(scope="module")
def lambdas(tmp_path_factory):
    d = tmp_path_factory.mktemp("lambda-models")
    made = {}
    for case, (keras, ext) in LAMBDA_MODELS.items():
        stem = f"{keras}_{ext}"
        canary = d / f"{stem}.canary"
        made[case] = (models.lambda_canary(d / f"{stem}.{ext}", canary, keras=keras), canary)
    return made


@pytest.mark.parametrize("case", LAMBDA_MODELS)
def test_lambda_layer_is_refused_without_running_it(lambdas, tmp_path, case):
    path, canary = lambdas[case]
    canary.unlink(missing_ok=True)
    out = tmp_path / "out"
    exc = fails(SecurityError, path, out)
    assert exc.exit_code == 5 and exc.code == "refused_by_policy"
    assert str(path) in exc.message and "\n" not in exc.message
    assert "--allow-unsafe-deserialization" in exc.message
    assert any("layer 'evil'" in f and "Lambda" in f for f in exc.details["findings"])
    assert not canary.exists(), "the Lambda's code ran although the model was refused"
    assert_nothing_written(out)


@pytest.mark.slow
@pytest.mark.parametrize("case", LAMBDA_MODELS)
def test_lambda_layer_builds_when_allowed(lambdas, tmp_path, case):
    """Allowed and trusted (--trust-model: no sandbox), the Lambda's code runs on this machine."""
    path, canary = lambdas[case]
    canary.unlink(missing_ok=True)
    doc = build(path, tmp_path / "out", allow_unsafe_deserialization=True, trust_model=True)
    assert doc["passed"] is True
    assert canary.exists(), "the canary did not fire: it could not have caught code running"
    allowed = doc["source"]["policy_findings_allowed"]
    assert any("'evil'" in f and "Lambda" in f for f in allowed)
    assert doc["config"]["settings"]["allow_unsafe_deserialization"] is True
    assert doc["isolation"]["sandbox"] is None


@pytest.mark.slow
def test_lambda_layer_allowed_but_not_trusted_runs_only_in_the_sandbox(lambdas, tmp_path):
    """Allowed without --trust-model, the same model builds, but its code runs in the sandbox: the
    canary it writes lands in the worker's private /tmp, never on this machine."""
    path, canary = lambdas["tf_keras .keras"]
    canary.unlink(missing_ok=True)
    doc = build(path, tmp_path / "out", allow_unsafe_deserialization=True)
    assert doc["passed"] is True and doc["isolation"]["sandbox"] == "bubblewrap"
    assert not canary.exists()


@pytest.fixture
def canary_module(tmp_path, monkeypatch):
    """An importable module that touches a canary when imported and looks like a layers module."""
    folder = tmp_path / "pkgs"
    folder.mkdir()
    canary = tmp_path / "module.canary"
    (folder / "dk_canary_layers.py").write_text(
        f"import pathlib\npathlib.Path({str(canary)!r}).touch()\nfrom tf_keras.layers import Dense\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("dk_canary_layers", None)
    yield canary
    sys.modules.pop("dk_canary_layers", None)


@pytest.mark.parametrize("attr", ["tfk_keras", "k3_keras"])
def test_config_naming_an_arbitrary_module_is_refused(src, tmp_path, canary_module, attr):
    path = models.with_layer_module(getattr(src, attr), tmp_path / "edited.keras", "Dense", "dk_canary_layers")
    out = tmp_path / "out"
    exc = fails(SecurityError, path, out)
    assert exc.exit_code == 5
    assert str(path) in exc.message and "names module 'dk_canary_layers'" in exc.message
    assert "dk_canary_layers" not in sys.modules
    assert not canary_module.exists()
    assert_nothing_written(out)


@pytest.mark.slow
def test_config_naming_a_module_builds_when_allowed_and_is_recorded(src, tmp_path, canary_module):
    path = models.with_layer_module(src.tfk_keras, tmp_path / "edited.keras", "Dense", "dk_canary_layers")
    doc = build(path, tmp_path / "out", allow_unsafe_deserialization=True)
    assert doc["passed"] is True
    assert "layer 'y' names module 'dk_canary_layers'" in doc["source"]["policy_findings_allowed"]


def test_saved_model_graph_that_reads_files_is_refused(tmp_path):
    path = models.read_file_saved_model(tmp_path / "reader", target=tmp_path / "secret.txt")
    out = tmp_path / "out"
    exc = fails(SecurityError, path, out)
    assert exc.exit_code == 5
    assert str(path) in exc.message and "ReadFile" in exc.message
    assert_nothing_written(out)

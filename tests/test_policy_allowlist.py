"""The security policy's allow-lists (deploykit/intake/allowlist.py) are real: every Keras class resolves
in a listed module of tf_keras or Keras 3, every function in a listed function module, every op is a
registered TensorFlow op, every TensorFlow function an exported symbol.

Model files whose structure reaches outside the model are refused before anything reads them
(exit 5, whatever --allow-unsafe-deserialization says), and what is read before parsing is bounded:

- a symbolic link anywhere in a SavedModel folder (an asset linking another file, whose content
  would be read and copied into the artifacts);
- an HDF5 member of a .keras archive (the weights) with an external link, like a top-level .h5;
- a config.json (or metadata.json) member over its cap: bad input (exit 2), refused without reading it;
- a damaged compressed member: bad input (exit 2), not a crash.
"""
from __future__ import annotations

import importlib
import inspect
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import deploykit
from deploykit.errors import BadInputError, SecurityError
from deploykit.intake import allowlist as allow
from deploykit.intake.sniff import CONFIG_MAX_BYTES, sniff

from . import models
from .conftest import NO_LATENCY
from .reliability import FileCanary

pytestmark = pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")

def build(model, out: Path, **settings) -> dict:
    return deploykit.build(model=str(model), out=str(out), quantize=("float32",), **{**NO_LATENCY, **settings})


def refused(model: Path, tmp_path: Path, *says: str) -> SecurityError:
    """The build is refused with exit 5, one line naming the file, and writes nothing."""
    out = tmp_path / "out"
    with pytest.raises(SecurityError) as info:
        build(model, out)
    exc = info.value
    assert exc.exit_code == 5 and exc.code == "refused_by_policy"
    assert str(model) in exc.message and "\n" not in exc.message, exc.message
    findings = exc.details.get("findings", [exc.message]) if isinstance(exc.details, dict) else [exc.message]
    for said in says:
        assert any(said in f for f in findings + [exc.message]), (said, findings)
    assert not out.exists() and not list(tmp_path.glob(".out.staging-*"))
    return exc


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    d = tmp_path_factory.mktemp("plain")
    return SimpleNamespace(tfk_keras=models.dense(d / "dense.keras"), module=models.module_saved_model(d / "module"))


# ---- 1. the lists are real ------------------------------------------------------------------------
def _resolve_modules(names) -> dict[str, list]:
    """Each listed module name, as tf_keras and Keras 3 resolve it: a `keras.*` name is a Keras 3
    module and (tf_keras maps "keras." to "tf_keras.") a tf_keras one."""
    found = {}
    for name in sorted(names):
        mods = []
        for candidate in (name, "tf_" + name if name.startswith("keras") else None):
            if candidate is None:
                continue
            try:
                mods.append(importlib.import_module(candidate))
            except ImportError:
                pass
        found[name] = mods
    return found


def test_every_keras_class_and_module_on_the_list_exists():
    from deploykit.tfenv import keras3, tf_keras

    tf_keras(), keras3()
    modules = _resolve_modules(allow.KERAS_MODULES)
    assert not [m for m, mods in modules.items() if not mods], "modules neither tf_keras nor Keras 3 has"
    where = {}
    for mod in (m for mods in modules.values() for m in mods):
        for name, obj in vars(mod).items():
            if inspect.isclass(obj):
                where.setdefault(name, obj)
    missing = sorted(allow.KERAS_CLASSES - set(where))
    assert not missing, f"not a class of any listed module: {missing}"
    assert not allow.KERAS_CLASSES & set(allow.REFUSED_CLASSES)
    assert {"Lambda", "TFSMLayer", "KerasLayer", "TorchModuleWrapper", "Layer"}.isdisjoint(allow.KERAS_CLASSES)


def test_every_function_and_tensorflow_name_on_the_list_exists():
    from tensorflow.python.framework import op_def_registry, type_spec_registry
    from tensorflow.python.saved_model import registration
    from tensorflow.python.util import tf_export

    from deploykit.tfenv import tensorflow

    tf = tensorflow()
    modules = [m for mods in _resolve_modules(allow.FUNCTION_MODULES - {"builtins"}).values() for m in mods]
    functions = {n for m in modules for n, f in vars(m).items() if inspect.isfunction(f)}
    assert not sorted(allow.FUNCTIONS - functions)
    ops = allow.GRAPH_OPS | allow.SAVER_OPS
    assert not sorted(op for op in ops if op_def_registry.get(op) is None), "not registered TensorFlow ops"
    assert not sorted(n for n in allow.TF_FUNCTIONS if not callable(tf_export.get_symbol_from_name(n)))
    assert not sorted(a for a in allow.KERAS_TENSOR_ATTRIBUTES if not hasattr(tf.RaggedTensor, a) and not hasattr(tf.SparseTensor, a))
    assert all(hasattr(tf.RaggedTensor, m) for m in allow.RAGGED_CLASS_METHODS)
    assert all(registration.get_registered_class(n) is not None for n in allow.REGISTERED_OBJECTS)
    assert all(type_spec_registry.lookup(n) for n in allow.TYPE_SPEC_REGISTRY_NAMES)
    # file, print, Python, dataset, process and network ops stay off the list
    for op in ("ReadFile", "WriteFile", "MatchingFiles", "DeleteFile", "PyFunc", "EagerPyFunc", "PrintV2", "Print",
               "ImmutableConst", "InitializeTableFromTextFileV2", "TFRecordDataset", "WriteSummary", "Abort",
               "RemoteCall", "FixedUnigramCandidateSampler", "DecodeProtoV2", "DebugIdentityV2", "SaveV2", "RestoreV2"):
        assert op not in allow.GRAPH_OPS, op
    for fn in ("io.write_file", "print", "py_function", "numpy_function", "load_library", "io.gfile.copy",
               "keras.applications.imagenet_utils.decode_predictions", "random.fixed_unigram_candidate_sampler"):
        assert fn not in allow.TF_FUNCTIONS, fn


# ---- structure that reaches outside the model ------------------------------------------------
def _secret(tmp_path: Path) -> FileCanary:
    return FileCanary(tmp_path / "secret.txt", b"top secret: 7f3a9c1e\n")


def _holding(root: Path, data: bytes, skip: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and p != skip and data in p.read_bytes()]


def test_saved_model_asset_that_is_a_symlink(tmp_path):
    model = models.asset_saved_model(tmp_path / "asset_sm")
    secret = _secret(tmp_path)
    asset = model / "assets" / "asset_sm-vocab.txt"
    asset.unlink()
    asset.symlink_to(secret.path)
    secret.arm()
    refused(model, tmp_path, "symbolic link")
    assert not secret.read, "the linked file was read"
    assert _holding(tmp_path, secret.path.read_bytes(), skip=secret.path) == []


@pytest.mark.parametrize("deflate", [False, True], ids=["stored", "deflated"])
def test_hdf5_member_of_a_keras_archive_linking_another_file(plain, tmp_path, deflate):
    import h5py

    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as fh:
        fh["data"] = np.arange(10.0)
    canary = FileCanary(secret, secret.read_bytes())
    model = models.linked_weights_keras(plain.tfk_keras, tmp_path / "linked.keras", secret, deflate=deflate)
    canary.arm()
    refused(model, tmp_path, "model.weights.h5", "external link", str(secret))
    assert not canary.read


def test_oversized_config_member_is_bad_input_without_reading_it(plain, tmp_path):
    model = models.oversized_config_keras(plain.tfk_keras, tmp_path / "big.keras", CONFIG_MAX_BYTES + 1)
    out = tmp_path / "out"
    started = time.perf_counter()
    with pytest.raises(BadInputError) as info:
        build(model, out)
    assert time.perf_counter() - started < 5
    assert info.value.exit_code == 2 and str(model) in info.value.message and "config.json" in info.value.message
    assert not out.exists()


def test_oversized_metadata_member_is_bad_input(plain, tmp_path):
    big = models._rewrite_keras(plain.tfk_keras, tmp_path / "meta.keras",
                                members={"metadata.json": b'{"keras_version": "2.19.0"}' + b" " * (2 << 20)})
    with pytest.raises(BadInputError, match="metadata.json"):
        sniff(str(big))


def test_corrupt_deflated_member_is_bad_input(plain, tmp_path):
    """zlib's own error (not zipfile's) for a damaged compressed member is exit 2, not a crash."""
    model = models._rewrite_keras(plain.tfk_keras, tmp_path / "deflated.keras", deflate=True)
    data = bytearray(model.read_bytes())
    with zipfile.ZipFile(model) as zf:
        info = zf.getinfo("model.weights.h5")
    start = info.header_offset + 30 + len(info.filename) + 40
    data[start:start + 50] = bytes(b ^ 0x5A for b in data[start:start + 50])
    model.write_bytes(bytes(data))
    with pytest.raises(BadInputError, match="corrupt .keras archive"):
        sniff(str(model))

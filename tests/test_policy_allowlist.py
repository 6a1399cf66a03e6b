"""The security policy is an allow-list (deploykit/intake/allowlist.py), checked before anything loads
the model.

- Every name on the lists is real: each Keras class resolves in a listed module of tf_keras or
  Keras 3, each function in a listed function module, each op is a registered TensorFlow op, each
  TensorFlow function an exported symbol.
- Hostile files are refused (exit 5) and their payload never runs. Each payload is real: the `slow`
  twin of each test loads the same file without deploykit (tf_keras, tf.saved_model.load) and
  sees its canary appear; the canary lives in tmp_path.
- Standard models still pass: tf_keras/Keras 3 applications, recurrent and attention models,
  Keras 3 Sequential and functional files, inline-vocabulary lookups, tf.Module SavedModels
  (tf.Example parsing, strings and tables, TF1 graphs and savers).
"""
from __future__ import annotations

import importlib
import inspect
import json
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import deploykit
from deploykit.errors import BadInputError, SecurityError
from deploykit.intake import allowlist as allow
from deploykit.intake import policy
from deploykit.intake.sniff import CONFIG_MAX_BYTES, sniff

from . import models
from .conftest import NO_LATENCY
from .reliability import FileCanary, Listener

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


def vet(path: Path, allow_unsafe: bool = False) -> list[str]:
    return policy.vet(sniff(str(path)), allow_unsafe)


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


# ---- 2. hostile Keras configs (no TensorFlow needed: the config alone is judged) -------------------
def _dense_config() -> dict:
    init = {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": None}, "registered_name": None}
    return {"module": "keras", "class_name": "Sequential", "registered_name": None, "config": {"name": "seq", "layers": [
        {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
         "config": {"batch_input_shape": [None, 4], "dtype": "float32", "name": "x"}},
        {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
         "config": {"name": "hidden", "units": 8, "activation": "relu", "kernel_initializer": init}},
    ]}}


def _hidden(config: dict) -> dict:
    return config["config"]["layers"][1]


FN = {"module": "builtins", "class_name": "function", "registered_name": "function"}
CONFIG_CASES = {
    # name: (edit of the Dense layer entry, what a finding says)
    "initializer naming os.system": (
        lambda l: l["config"].update(kernel_initializer={**FN, "module": "os", "config": "system"}), "names module 'os'"),
    "initializer naming eval through builtins": (
        lambda l: l["config"].update(kernel_initializer={**FN, "config": "eval"}), "names function 'eval'"),
    "function deep in a nested value": (
        lambda l: l["config"].update(extra={"a": [{"b": {**FN, "module": "subprocess", "config": "run"}}]}),
        "names module 'subprocess'"),
    "marshalled code under an unknown key": (
        lambda l: l["config"].update(residual_fn=["4wEAAAAAAAAAAAAAAAIAAAADAAAA8wwAAACXAHwAZAF6AAAAUwApAk7pAQAA", None, None]),
        "marshalled Python code"),
    "__lambda__ as an activation": (
        lambda l: l["config"].update(activation={"class_name": "__lambda__", "config": {"value": ["x", None, None]}}),
        "carries Python code"),
    "activation string outside the list": (lambda l: l["config"].update(activation="softmax_v2 or eval"), "names activation"),
    "cell wrapper class": (lambda l: l.update(class_name="ResidualWrapper", module=None), "ResidualWrapper"),
    "TFOpLambda calling io.write_file": (
        lambda l: l.update(class_name="TFOpLambda", module="tf_keras.src.layers.core.tf_op_layer",
                           config={"name": "hidden", "function": "io.write_file"}), "io.write_file"),
    "ClassMethod on another class": (
        lambda l: l.update(class_name="ClassMethod", module="tf_keras.src.layers.core.tf_op_layer",
                           config={"name": "hidden", "cls_symbol": "io.gfile.GFile", "method_name": "__call__"}),
        "io.gfile.GFile.__call__"),
    "InstanceMethod reaching out of the tensor": (
        lambda l: l.update(class_name="InstanceMethod", config={"name": "hidden", "attr_name": "__class__"}),
        "tensor attribute '__class__'"),
    "type spec of another class": (
        lambda l: l["config"].update(spec={"class_name": "__typespec__", "spec_name": "DatasetSpec",
                                            "module": "tensorflow.python.data.ops.dataset_ops", "registered_name": None,
                                            "config": []}), "DatasetSpec"),
    "TensorFlow module as a layer module": (lambda l: l.update(module="tensorflow.python.ops.io_ops"),
                                            "names module 'tensorflow.python.ops.io_ops'"),
    "registered custom object": (lambda l: l.update(registered_name="evil_pkg>Dense"), "names custom object"),
    "vocabulary file": (lambda l: l.update(class_name="StringLookup", config={"name": "hidden", "vocabulary": "/etc/passwd"}),
                        "reads '/etc/passwd' (vocabulary)"),
    "class_name that is not a string": (lambda l: l.update(class_name=["Dense"]), "not a string"),
    "unhashable registered name": (lambda l: l.update(registered_name={"a": 1}), "names custom object"),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_config_outside_the_allow_list_is_a_finding(case):
    edit, says = CONFIG_CASES[case]
    config = _dense_config()
    assert policy.config_findings(config) == []
    edit(_hidden(config))
    findings = policy.config_findings(config)
    assert any(says in f for f in findings), findings


def test_deeply_nested_config_is_bad_input():
    config = _dense_config()
    node = _hidden(config)["config"]
    for _ in range(300):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(BadInputError, match="nests deeper"):
        policy.config_findings(config)


# ---- 3. hostile files, refused before anything loads them ------------------------------------------
def test_serialized_function_under_an_unusual_key(tmp_path):
    canary = tmp_path / "residual.canary"
    model = models.residual_wrapper_h5(tmp_path / "residual.h5", canary)
    refused(model, tmp_path, "ResidualWrapper", "marshalled Python code")
    assert not canary.exists()


@pytest.mark.slow
def test_serialized_function_under_an_unusual_key_runs_without_deploykit(tmp_path):
    from deploykit.tfenv import tf_keras

    canary = tmp_path / "residual.canary"
    model = models.residual_wrapper_h5(tmp_path / "residual.h5", canary)
    tf_keras().models.load_model(str(model), compile=False)
    assert canary.exists(), "the payload did not run: the canary could not have caught it"


@pytest.fixture
def no_network(tmp_path, monkeypatch):
    """HOME in tmp_path (tf_keras' ~/.keras) and every proxy pointed at a local listener."""
    listener = Listener()
    home = tmp_path / "home"
    (home / ".keras").mkdir(parents=True)  # writable, or tf_keras falls back to /tmp/.keras
    monkeypatch.setenv("HOME", str(home))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, listener.url)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    yield SimpleNamespace(listener=listener, canary=home / ".keras" / "models")
    listener.close()


def test_tensorflow_function_run_while_rebuilding(tmp_path, no_network):
    model = models.decode_predictions_keras(tmp_path / "decode.keras")
    refused(model, tmp_path, "keras.applications.imagenet_utils.decode_predictions")
    assert not no_network.canary.exists() and no_network.listener.connections == []


@pytest.mark.slow
def test_tensorflow_function_run_while_rebuilding_runs_without_deploykit(tmp_path, no_network):
    from deploykit.tfenv import tf_keras

    model = models.decode_predictions_keras(tmp_path / "decode.keras")
    with pytest.raises(Exception, match="URL fetch failure"):
        tf_keras().models.load_model(str(model), compile=False)
    assert no_network.canary.is_dir(), "the payload did not run"
    assert no_network.listener.connections, "the payload did not try the network"


def test_weights_member_that_needs_pickle(tmp_path):
    canary = tmp_path / "pickle.canary"
    model = models.pickled_weights_keras(tmp_path / "pickle.keras", canary)
    refused(model, tmp_path, "model.weights.npz", "holds Python objects")
    assert not canary.exists()


@pytest.mark.slow
def test_weights_member_that_needs_pickle_runs_without_deploykit(tmp_path):
    from deploykit.tfenv import tf_keras

    canary = tmp_path / "pickle.canary"
    model = models.pickled_weights_keras(tmp_path / "pickle.keras", canary)
    with pytest.raises(Exception):  # noqa: B017 - tf_keras' own npz reader fails after unpickling
        tf_keras().models.load_model(str(model), compile=False)
    assert canary.exists(), "the payload did not run"


@pytest.mark.parametrize("content, says", [
    (b"\x80\x04K\x01.", "not an .npz archive"),  # a bare pickle: np.load(allow_pickle=True) would load it
    ("object npy", "holds Python objects"),
])
def test_npz_weights_without_arrays_or_with_objects(plain, tmp_path, content, says):
    import io

    if content == "object npy":
        buf = io.BytesIO()
        np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        content = buf.getvalue()
    model = models._rewrite_keras(plain.tfk_keras, tmp_path / "m.keras", members={"model.weights.npz": content})
    findings = vet(model, allow_unsafe=True)
    assert any(says in f for f in findings), findings


def test_saved_model_initializer_writing_a_file(tmp_path):
    canary = tmp_path / "init.canary"
    model = models.initializer_saved_model(tmp_path / "init_sm", canary)
    refused(model, tmp_path, "graph uses op WriteFile in function '__inference__initializer")
    assert not canary.exists()


@pytest.mark.slow
def test_saved_model_initializer_writing_a_file_loads_when_allowed(tmp_path):
    from deploykit.intake import loader

    canary = tmp_path / "init.canary"
    model = models.initializer_saved_model(tmp_path / "init_sm", canary)
    loaded = loader.load(sniff(str(model)), allow_unsafe=True)
    assert canary.exists(), "the payload did not run: the canary could not have caught it"
    assert any("WriteFile" in f for f in loaded.findings)  # what the manifest lists as allowed


def test_saved_model_side_function_writing_a_file(tmp_path):
    canary = tmp_path / "side.canary"
    model = models.side_function_saved_model(tmp_path / "side_sm", canary)
    refused(model, tmp_path, "graph uses op WriteFile")
    assert not canary.exists()


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


def test_saved_model_asset_leaving_the_folder(tmp_path):
    from tensorflow.core.protobuf import saved_model_pb2

    model = models.asset_saved_model(tmp_path / "asset_sm")
    secret = _secret(tmp_path)
    proto = saved_model_pb2.SavedModel.FromString((model / "saved_model.pb").read_bytes())
    proto.meta_graphs[0].asset_file_def[0].filename = "../../secret.txt"
    (model / "saved_model.pb").write_bytes(proto.SerializeToString())
    secret.arm()
    refused(model, tmp_path, "lies outside the SavedModel's assets folder")
    assert not secret.read


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


# ---- 4. the saver subgraph -------------------------------------------------------------------------
def _edit_saved_model(src: Path, dest: Path, edit) -> Path:
    from tensorflow.core.protobuf import saved_model_pb2

    shutil.copytree(src, dest)
    proto = saved_model_pb2.SavedModel.FromString((dest / "saved_model.pb").read_bytes())
    edit(proto.meta_graphs[0])
    (dest / "saved_model.pb").write_bytes(proto.SerializeToString())
    return dest


def _function(meta_graph, prefix: str):
    return next(f for f in meta_graph.graph_def.library.function if f.signature.name.startswith(prefix))


def _restore_elsewhere(meta_graph):
    """The restore function reads a checkpoint named by a constant instead of its file_prefix."""
    fn = _function(meta_graph, "__inference__traced_restore")
    const = fn.node_def.add(name="elsewhere", op="Const")
    const.attr["dtype"].type = 7  # DT_STRING
    const.attr["value"].tensor.dtype = 7
    const.attr["value"].tensor.string_val.append(b"/etc/elsewhere")
    next(n for n in fn.node_def if n.op == "RestoreV2").input[0] = "elsewhere:output:0"


def _serving_calls_the_saver(meta_graph):
    """serving_default's node calls the traced save function."""
    save = _function(meta_graph, "__inference__traced_save").signature.name
    node = next(n for n in meta_graph.graph_def.node if n.name == "StatefulPartitionedCall")
    node.attr["f"].func.name = save


def _file_op_as_a_function_name(meta_graph):
    """A call whose function attribute names an op (TensorFlow runs it as that op)."""
    node = next(n for n in meta_graph.graph_def.node if n.name == "StatefulPartitionedCall")
    node.attr["f"].func.name = "WriteFile"


@pytest.mark.parametrize("edit, says", [
    (_restore_elsewhere, "not built from the saver's filename (constant '/etc/elsewhere')"),
    (_serving_calls_the_saver, "uses op SaveV2 outside the saver"),
    (_file_op_as_a_function_name, "graph uses op WriteFile in the graph"),
], ids=["restore reads another file", "serving calls the saver", "op named as a function"])
def test_saver_ops_outside_the_saver_are_refused(plain, tmp_path, edit, says):
    assert vet(plain.module) == []
    model = _edit_saved_model(plain.module, tmp_path / "edited", edit)
    refused(model, tmp_path, says)


# ---- 5. standard models still pass -------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("keras, name, kwargs", [
    ("tf_keras", "MobileNetV2", {}),
    ("tf_keras", "ResNet50", {}),
    ("tf_keras", "EfficientNetB0", {}),
    ("tf_keras", "MobileNetV3Small", {}),
    ("tf_keras", "ConvNeXtTiny", {}),
    ("tf_keras", "InceptionResNetV2", {}),
    ("keras3", "MobileNetV2", {}),
    ("keras3", "ConvNeXtTiny", {}),
])
def test_application_configs_pass(keras, name, kwargs):
    from deploykit.tfenv import keras3, tf_keras

    if keras == "tf_keras":
        from tf_keras.src.saving import serialization_lib

        model = getattr(tf_keras().applications, name)(weights=None, **kwargs)
        config = serialization_lib.serialize_keras_object(model)
        legacy = json.loads(model.to_json())  # what model.save("x.h5") writes
        assert policy.config_findings(legacy) == []
    else:
        model = getattr(keras3().applications, name)(weights=None, **kwargs)
        config = keras3().saving.serialize_keras_object(model)
    assert policy.config_findings(json.loads(json.dumps(config))) == []


def _layer_models(k):
    L = k.layers
    seq = k.Input((8, 3), name="seq")
    tokens = k.Input((6, 8), name="tokens")
    text = k.Input((1,), dtype="string", name="text")
    attention = L.LayerNormalization()(L.MultiHeadAttention(num_heads=2, key_dim=4)(tokens, tokens) + tokens)
    return {
        "lstm": k.Model(seq, L.Dense(2)(L.LSTM(4)(seq))),
        "gru": k.Model(seq, L.Dense(2)(L.GRU(4)(seq))),
        "bidirectional": k.Model(seq, L.Bidirectional(L.LSTM(4))(seq)),
        "attention": k.Model(tokens, L.Dense(3, activation="softmax")(L.GlobalAveragePooling1D()(attention))),
        "string_lookup": k.Model(text, L.CategoryEncoding(6, output_mode="one_hot")(
            L.StringLookup(vocabulary=["a", "b", "c", "d"])(text))),
        "sequential": k.Sequential([k.Input((4,)), L.Dense(8, activation="gelu"), L.Dropout(0.1), L.Dense(2)]),
    }


@pytest.mark.parametrize("keras, fmt", [("tf_keras", "keras"), ("tf_keras", "h5"), ("keras3", "keras")])
def test_layer_family_models_pass(tmp_path, keras, fmt):
    from deploykit.tfenv import keras3, tf_keras

    k = tf_keras() if keras == "tf_keras" else keras3()
    for name, model in _layer_models(k).items():
        model.compile(optimizer="adam", loss="mse", metrics=["mae"])
        path = tmp_path / f"{name}.{fmt}"
        model.save(path)
        assert vet(path) == [], name


@pytest.mark.parametrize("make", [
    models.module_saved_model, models.parse_example_saved_model, models.string_lookup_saved_model,
    models.tf1_saved_model, models.tf_keras_saved_model,
], ids=["tf.Module", "tf.Example parsing", "strings and a table", "TF1 graph and saver", "tf_keras SavedModel"])
def test_saved_models_pass(tmp_path, make, tf):
    model = make(tmp_path / "model")
    assert vet(model) == []
    # deploykit parses with TensorBoard's copy of the protos: the same message as TensorFlow's own parser
    from tensorflow.core.protobuf import saved_model_pb2

    theirs = saved_model_pb2.SavedModel.FromString((model / "saved_model.pb").read_bytes())
    ours = policy.read_saved_model(model)
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)


def _short(full_name: str) -> str:
    for package in ("tensorflow.", "tensorboard.", "deploykit.intake.", "google.protobuf."):
        if full_name.startswith(package):
            return full_name[len(package):]
    raise AssertionError(f"unexpected package: {full_name}")


def _fields(descriptor, seen=None) -> dict:
    """{message name (without package): sorted (field, number, type, label, message type)} for a message and every
    message it contains."""
    seen = {} if seen is None else seen
    name = _short(descriptor.full_name)
    if name in seen:
        return seen
    seen[name] = sorted((f.name, f.number, f.type, f.label, _short(f.message_type.full_name) if f.message_type
                         else None) for f in descriptor.fields)
    for f in descriptor.fields:
        if f.message_type is not None:
            _fields(f.message_type, seen)
    return seen


def test_the_saved_model_parser_knows_every_field_tensorflow_does(tf):
    """The vet reads saved_model.pb with TensorBoard's copy of MetaGraphDef (no TensorFlow import in the
    `deploykit` process): at the pinned versions its messages are TensorFlow's, field for field, so a
    function or op reference cannot hide in a field the vet's parser does not know."""
    from tensorflow.core.protobuf import saved_model_pb2

    assert _fields(policy._saved_model_class().DESCRIPTOR) == _fields(saved_model_pb2.SavedModel.DESCRIPTOR)


def test_vetting_a_saved_model_does_not_import_tensorflow(plain):
    code = ("import sys; from deploykit.intake import policy; from deploykit.intake.sniff import sniff; "
            f"print(policy.vet(sniff({str(plain.module)!r}), False), "
            "sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["[]", "[]"], proc.stdout


def test_oversized_metadata_member_is_bad_input(plain, tmp_path):
    big = models._rewrite_keras(plain.tfk_keras, tmp_path / "meta.keras",
                                members={"metadata.json": b'{"keras_version": "2.19.0"}' + b" " * (2 << 20)})
    with pytest.raises(BadInputError, match="metadata.json"):
        sniff(str(big))


def test_model_config_in_an_hdf5_member_is_vetted(plain, tmp_path):
    """A whole HDF5 model saved into an archive: its config is vetted like the archive's own."""
    canary = tmp_path / "lambda.canary"
    inner = models.lambda_canary(tmp_path / "inner.h5", canary)
    model = models._rewrite_keras(plain.tfk_keras, tmp_path / "nested.keras", members={"inner.h5": inner.read_bytes()})
    refused(model, tmp_path, "archive member 'inner.h5': layer 'evil' is a Lambda")
    assert not canary.exists()


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

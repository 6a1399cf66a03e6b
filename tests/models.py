"""Small model factories for the intake and family tests.

Each factory builds a tiny model, writes it where it is told and returns the path. Models are
real (tf_keras, Keras 3, plain tf.Module SavedModels) and small enough to convert in about a
second. TensorFlow is imported inside the functions, so collecting the tests stays cheap.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from deploykit.tfenv import keras3, tensorflow, tf_keras

# The two-input, two-output model used by the multi-I/O tests (tf_keras and Keras 3 alike).
MULTI_INPUTS = {"a": (4,), "b": (2,)}
MULTI_OUTPUTS = ("score", "probs")


def _lib(keras: str):
    return tf_keras() if keras == "tf_keras" else keras3()


# ---- single-input dense models -------------------------------------------------------------
def dense(path: Path, keras: str = "tf_keras") -> Path:
    """x (4,) -> y (3,): the smallest model that exercises the whole pipeline."""
    k = _lib(keras)
    x = k.Input((4,), name="x")
    h = k.layers.Dense(8, activation="relu", name="hidden")(x)
    k.Model(x, k.layers.Dense(3, name="y")(h)).save(path)
    return path


def tf_keras_saved_model(folder: Path) -> Path:
    k = tf_keras()
    x = k.Input((4,), name="x")
    k.Model(x, k.layers.Dense(3, name="y")(x)).save(str(folder), save_format="tf")
    return folder


def _affine_module():
    """A plain tf.Module (no Keras): y = x @ w + b, served by a tf.function."""
    tf = tensorflow()

    class Affine(tf.Module):
        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(1)
            self.w = tf.Variable(rng.standard_normal((4, 3)).astype(np.float32))
            self.b = tf.Variable(np.arange(3, dtype=np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.matmul(x, self.w) + self.b}

    return Affine()


def module_saved_model(folder: Path, signature: str = "serving_default") -> Path:
    tf = tensorflow()
    module = _affine_module()
    tf.saved_model.save(module, str(folder), signatures={signature: module.serve})
    return folder


def determinant_saved_model(folder: Path) -> Path:
    """A tf.Module whose op (MatrixDeterminant) has no TFLite builtin, even with fixed shapes."""
    tf = tensorflow()

    class Det(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3, 3], tf.float32, name="m")])
        def serve(self, m):
            return {"det": tf.linalg.det(m)}

    module = Det()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


def read_file_saved_model(folder: Path, target: Path) -> Path:
    """A SavedModel whose graph reads a file (ReadFile): refused by the security policy."""
    tf = tensorflow()

    class Reader(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            n = tf.cast(tf.strings.length(tf.io.read_file(str(target))), tf.float32)
            return {"y": x + n}

    module = Reader()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


def tflite_file(path: Path) -> Path:
    """A real TFLite flatbuffer (to pass where a model is expected)."""
    tf = tensorflow()
    k = tf_keras()
    x = k.Input((4,), name="x")
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(k.Model(x, k.layers.Dense(2)(x))).convert())
    return path


# ---- multi-input / multi-output ------------------------------------------------------------
def multi_io(path: Path, keras: str = "tf_keras") -> Path:
    """Named dict inputs {a, b} and named dict outputs {score, probs}."""
    k = _lib(keras)
    inputs = {name: k.Input(shape, name=name) for name, shape in MULTI_INPUTS.items()}
    h = k.layers.Concatenate()([inputs["a"], inputs["b"]])
    h = k.layers.Dense(8, activation="tanh")(h)
    outputs = {
        "score": k.layers.Dense(1, name="score_head")(h),
        "probs": k.layers.Dense(3, activation="softmax", name="probs_head")(h),
    }
    k.Model(inputs, outputs).save(path)
    return path


def multi_io_data(rows: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal((rows,) + shape).astype(np.float32) for name, shape in MULTI_INPUTS.items()}


def int_input(path: Path) -> Path:
    """ids: int32 (5,) through an Embedding, plus vals: float32 (3,)."""
    k = tf_keras()
    ids = k.Input((5,), dtype="int32", name="ids")
    vals = k.Input((3,), name="vals")
    h = k.layers.GlobalAveragePooling1D()(k.layers.Embedding(10, 4)(ids))
    out = k.layers.Dense(2, name="out")(k.layers.Concatenate()([h, vals]))
    k.Model({"ids": ids, "vals": vals}, {"out": out}).save(path)
    return path


def int_input_data(rows: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"ids": rng.integers(0, 10, (rows, 5)).astype(np.int32),
            "vals": rng.standard_normal((rows, 3)).astype(np.float32)}


# ---- model families ------------------------------------------------------------------------
def digits(rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (no download): images (N, 8, 8, 1) in [0, 1], labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    return (x[:rows], d.target[:rows]) if rows else (x, d.target)


def cnn(path: Path, epochs: int = 15) -> Path:
    """Conv2D/BatchNorm/pooling classifier on digits, trained until its outputs are confident
    (an untrained or 3-epoch model has many near-ties that int8 rounding flips)."""
    k = tf_keras()
    k.utils.set_random_seed(0)
    x = k.Input((8, 8, 1), name="image")
    h = k.layers.Conv2D(8, 3, padding="same")(x)
    h = k.layers.BatchNormalization()(h)
    h = k.layers.ReLU()(h)
    h = k.layers.MaxPooling2D()(h)
    h = k.layers.Conv2D(16, 3, activation="relu")(h)
    h = k.layers.Flatten()(h)
    h = k.layers.Dense(32, activation="relu")(h)
    model = k.Model(x, k.layers.Dense(10, activation="softmax", name="probs")(h))
    images, labels = digits()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=epochs, batch_size=64, verbose=0)
    model.save(path)
    return path


def recurrent(path: Path, cell: str, keras: str = "tf_keras") -> Path:
    """seq (8 steps, 3 features) -> LSTM or GRU(6) -> Dense(2)."""
    k = _lib(keras)
    layer = {"lstm": k.layers.LSTM, "gru": k.layers.GRU}[cell]
    x = k.Input((8, 3), name="seq")
    k.Model(x, k.layers.Dense(2, name="out")(layer(6)(x))).save(path)
    return path


def open_length_lstm(path: Path, keras: str = "keras3") -> Path:
    """seq (any number of steps, 3 features) -> LSTM(6) -> Dense(2)."""
    k = _lib(keras)
    x = k.Input((None, 3), name="seq")
    k.Model(x, k.layers.Dense(2, name="out")(k.layers.LSTM(6)(x))).save(path)
    return path


def sequences(rows: int, steps: int, features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Real-ish sequences: noisy sine waves whose frequency, amplitude and offset give the class
    (0, 1 or 2), separable enough that a trained model is confident (int8 then flips no top-1)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, rows)
    t = np.linspace(0, 2 * np.pi, steps)[None, :, None]
    c = labels[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, (rows, 1, features))
    x = (1 + 0.5 * c) * np.sin((c + 1) * t + phase) + 0.8 * c + 0.1 * rng.standard_normal((rows, steps, features))
    return x.astype(np.float32), labels


def attention(path: Path, keras: str = "tf_keras", epochs: int = 0) -> Path:
    """tokens (6, 8) -> MultiHeadAttention + residual + LayerNormalization -> pooled softmax(3)."""
    k = _lib(keras)
    k.utils.set_random_seed(0)
    x = k.Input((6, 8), name="tokens")
    h = k.layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    h = k.layers.LayerNormalization()(h + x)
    h = k.layers.GlobalAveragePooling1D()(h)
    model = k.Model(x, k.layers.Dense(3, activation="softmax", name="probs")(h))
    if epochs:
        data, labels = sequences(384, 6, 8, seed=1)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(data, labels, epochs=epochs, batch_size=32, verbose=0)
    model.save(path)
    return path


# ---- models that carry code ----------------------------------------------------------------
def lambda_canary(path: Path, canary: Path, keras: str = "tf_keras") -> Path:
    """A model with a Lambda layer whose function touches `canary` when it runs.

    Building the model runs the function once; the canary is removed before returning, so it exists
    afterwards only if something deserialized and ran the Lambda.
    """
    k = _lib(keras)
    fn = eval(f"lambda t: (__import__('pathlib').Path({str(canary)!r}).touch(), t)[1]")  # noqa: S307
    x = k.Input((4,), name="x")
    h = k.layers.Lambda(fn, name="evil")(x)
    k.Model(x, k.layers.Dense(2, name="y")(h)).save(path)
    canary.unlink(missing_ok=True)
    return path


def with_layer_module(src: Path, dest: Path, layer_class: str, module: str) -> Path:
    """Copy a .keras archive, rewriting the config so `layer_class` layers name `module`."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "config.json":
                config = json.loads(data)
                for layer in config["config"]["layers"]:
                    if layer["class_name"] == layer_class:
                        layer["module"] = module
                data = json.dumps(config).encode()
            zout.writestr(info, data)
    return dest


# ---- hostile models for the allow-list policy (tests/test_policy_allowlist.py) ----------------
# Each carries a real payload: loaded without deploykit (tf_keras, tf.saved_model.load), it creates
# or reads the canary it is given. deploykit must refuse it before any of it runs.
def _rewrite_keras(src: Path, dest: Path, edit_config=None, members: dict | None = None, drop=(),
                   deflate: bool = False) -> Path:
    """Copy a .keras archive, editing config.json (`edit_config(dict) -> dict`) and replacing members
    (`members[name](bytes) -> bytes`, or bytes for a new member); `deflate` compresses every member
    (Keras stores them)."""
    members = dict(members or {})
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = zin.read(info.filename)
            if deflate:
                info = zipfile.ZipInfo(info.filename, info.date_time)
                info.compress_type = zipfile.ZIP_DEFLATED
            if info.filename == "config.json" and edit_config is not None:
                data = json.dumps(edit_config(json.loads(data))).encode()
            change = members.pop(info.filename, None)
            if change is not None:
                data = change(data) if callable(change) else change
            zout.writestr(info, data)
        for name, data in members.items():
            zout.writestr(name, data)
    return dest


def residual_wrapper_h5(path: Path, canary: Path) -> Path:
    """A tf_keras .h5 whose RNN cell is wrapped in a ResidualWrapper: its `residual_fn` (a key no
    Lambda has) holds marshalled bytecode that tf_keras' HDF5 loader (no safe mode) unmarshals and
    runs while it rebuilds the model, touching `canary`."""
    import h5py
    from tf_keras.src.utils import generic_utils

    k = tf_keras()
    x = k.Input((5, 4), name="x")
    k.Model(x, k.layers.Dense(2, name="y")(k.layers.RNN(k.layers.SimpleRNNCell(4), name="hidden")(x))).save(path)
    fn = eval(f"lambda i, o: (__import__('pathlib').Path({str(canary)!r}).touch(), o)[1]")  # noqa: S307
    with h5py.File(path, "r+") as fh:
        config = json.loads(fh.attrs["model_config"])
        for layer in config["config"]["layers"]:
            if layer["config"]["name"] == "hidden":
                cell = layer["config"]["cell"]
                layer["config"]["cell"] = {"class_name": "ResidualWrapper", "config": {
                    "cell": cell, "residual_fn": generic_utils.func_dump(fn), "residual_fn_type": "lambda",
                    "residual_fn_module": None}}
        fh.attrs["model_config"] = json.dumps(config)
    return path


def decode_predictions_keras(path: Path) -> Path:
    """A tf_keras .keras whose layer 'hidden' is a TFOpLambda calling
    `keras.applications.imagenet_utils.decode_predictions` (a TensorFlow API function, not a tensor
    function): rebuilding the model calls it, and it creates ~/.keras/models and fetches the
    ImageNet class index over the network (through any proxy in the environment)."""
    k = tf_keras()
    x = k.Input((1000,), name="x")
    src = path.with_name(path.stem + "-plain.keras")
    k.Model(x, k.layers.Dense(3, name="y")(k.layers.Dense(1000, name="hidden")(x))).save(src)

    def edit(config):
        for layer in config["config"]["layers"]:
            if layer["config"]["name"] == "hidden":
                layer.update(class_name="TFOpLambda", module="tf_keras.src.layers.core.tf_op_layer",
                             registered_name="TFOpLambda", inbound_nodes=[["x", 0, 0, {"top": 1}]])
                layer["config"] = {"name": "hidden", "trainable": True, "dtype": "float32",
                                   "function": "keras.applications.imagenet_utils.decode_predictions"}
        return config

    return _rewrite_keras(src, path, edit_config=edit)


class _OpenOnUnpickle:
    """Unpickling this creates the file (pickle calls open(path, "w"))."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def pickled_weights_keras(path: Path, canary: Path) -> Path:
    """A tf_keras .keras whose weights are `model.weights.npz` (tf_keras' NpzIOStore, which np.loads
    with allow_pickle=True) holding an object array whose unpickling creates `canary`."""
    import io

    from tf_keras.src.saving import saving_lib

    k = tf_keras()
    x = k.Input((4,), name="x")
    src = path.with_name(path.stem + "-npz.keras")
    saving_lib.save_model(k.Model(x, k.layers.Dense(3, name="y")(x)), str(src), weights_format="npz")

    def evil(data: bytes) -> bytes:
        arrays = dict(np.load(io.BytesIO(data), allow_pickle=True))
        arrays["__root__"] = np.array(_OpenOnUnpickle(str(canary)), dtype=object)
        out = io.BytesIO()
        np.savez(out, **arrays)
        return out.getvalue()

    return _rewrite_keras(src, path, members={"model.weights.npz": evil})


def linked_weights_keras(src: Path, dest: Path, secret: Path, deflate: bool = False) -> Path:
    """Copy a .keras archive, adding to its HDF5 weights an external link to `secret`."""
    import h5py

    work = dest.with_suffix(".weights.h5")
    with zipfile.ZipFile(src) as zf:
        work.write_bytes(zf.read("model.weights.h5"))
    with h5py.File(work, "r+") as fh:
        fh["leak"] = h5py.ExternalLink(str(secret), "/data")
    return _rewrite_keras(src, dest, members={"model.weights.h5": work.read_bytes()}, deflate=deflate)


def oversized_config_keras(src: Path, dest: Path, size: int) -> Path:
    """Copy a .keras archive with a config.json of `size` bytes (spaces after the JSON, deflated,
    written in chunks so the test never holds it in memory)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename != "config.json":
                zout.writestr(info.filename, data)
                continue
            with zout.open("config.json", "w", force_zip64=True) as fh:
                fh.write(data)
                left, chunk = size - len(data), b" " * (1 << 20)
                while left > 0:
                    fh.write(chunk[: min(left, len(chunk))])
                    left -= len(chunk)
    return dest


def initializer_saved_model(folder: Path, canary: Path) -> Path:
    """A tf.Module SavedModel with a resource whose initializer (not `serving_default`) writes
    `canary` with tf.io.write_file; tf.saved_model.load runs initializers while loading."""
    tf = tensorflow()

    class Table(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):
            return tf.raw_ops.HashTableV2(key_dtype=tf.string, value_dtype=tf.int64)

        def _initialize(self):
            tf.io.write_file(str(canary), "written by a SavedModel initializer")

    class Model(tf.Module):
        def __init__(self):
            super().__init__()
            self.table = Table()

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            n = tf.raw_ops.LookupTableSizeV2(table_handle=self.table.resource_handle)
            return {"y": x + tf.cast(n, tf.float32)}

    module = Model()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


def side_function_saved_model(folder: Path, canary: Path) -> Path:
    """A clean `serving_default` beside another saved function that writes `canary`."""
    tf = tensorflow()
    module = _affine_module()

    def cleanup():
        tf.io.write_file(str(canary), "written by a side function")
        return tf.constant(0)

    module.cleanup = tf.function(cleanup, input_signature=[])
    module.cleanup.get_concrete_function()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


def asset_saved_model(folder: Path, asset_text: str = "a\nb\nc\n") -> Path:
    """A tf.Module SavedModel with an asset file (assets/vocab.txt) that its serving function names;
    re-exporting the loaded model copies the asset."""
    tf = tensorflow()
    source = folder.parent / f"{folder.name}-vocab.txt"
    source.write_text(asset_text)

    class WithAsset(tf.Module):
        def __init__(self):
            super().__init__()
            self.vocab = tf.saved_model.Asset(str(source))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": x + tf.cast(tf.strings.length(self.vocab.asset_path), tf.float32)}

    module = WithAsset()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    source.unlink()
    return folder


# ---- benign models the policy must accept --------------------------------------------------------
def parse_example_saved_model(folder: Path) -> Path:
    """A tf.Module whose signature parses serialized tf.Example protos (ParseExampleV2)."""
    tf = tensorflow()

    class Parse(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(np.ones((3, 2), np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            f = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([3], tf.float32),
                                               "tag": tf.io.VarLenFeature(tf.string)})
            return {"y": f["x"] @ self.w, "tags": tf.strings.length(tf.sparse.to_dense(f["tag"], default_value=""))}

    module = Parse()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


def string_lookup_saved_model(folder: Path) -> Path:
    """A tf.Module with string inputs: split words, look them up in a table built from tensors."""
    tf = tensorflow()

    class Words(tf.Module):
        def __init__(self):
            super().__init__()
            init = tf.lookup.KeyValueTensorInitializer(tf.constant(["the", "cat", "sat"]), tf.constant([1, 2, 3], tf.int64))
            self.table = tf.lookup.StaticHashTable(init, default_value=0)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            words = tf.strings.split(tf.strings.lower(text))
            return {"ids": self.table.lookup(words).to_tensor()}

    module = Words()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


def tf1_saved_model(folder: Path) -> Path:
    """A TF1-style SavedModel (graph, Saver, main op initializing a table): its saver is graph nodes."""
    tf = tensorflow()
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w = tf.compat.v1.get_variable("w", [4, 3])
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(tf.constant(["a"]), tf.constant([1], tf.int64)), -1)
        y = tf.matmul(x, w) + tf.cast(table.lookup(tf.constant("a")), tf.float32)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            session.run(tf.compat.v1.tables_initializer())
            builder = tf.compat.v1.saved_model.Builder(str(folder))
            builder.add_meta_graph_and_variables(
                session, ["serve"], main_op=tf.compat.v1.tables_initializer(),
                signature_def_map={"serving_default": tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})})
            builder.save()
    return folder

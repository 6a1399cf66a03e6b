"""Hostile models, refused under the default policy (exit 5) before any of their content runs.

Each shape is a real model file (tf_keras, Keras 3, HDF5) edited the way an attacker would, built
with the real CLI. Every test checks the common criterion (tests/reliability.py), that a canary
file was neither written nor read, and that a TCP listener on 127.0.0.1 saw no connection.

Already covered elsewhere (not repeated): in-process refusal of Lambda layers and of a config naming
a module (test_intake.py), a SavedModel graph reading files (test_intake.py), and builds that pass
once `--allow-unsafe-deserialization` is given (test_intake.py).
"""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from .reliability import FileCanary, Listener, Workspace, assert_failure

pytestmark = pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")


@pytest.fixture(scope="module")
def listener():
    server = Listener()
    yield server
    server.close()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, listener):
    """The plain models to edit, a module that would fire if imported, and Lambda models whose code
    touches a canary and connects to the listener."""
    from . import models

    d = tmp_path_factory.mktemp("hostile")
    code_canary = d / "code-ran.canary"
    pkgs = d / "pkgs"  # on the CLI's PYTHONPATH: importing any of these runs attacker code
    pkgs.mkdir()
    payload = (f"import pathlib, socket\npathlib.Path({str(code_canary)!r}).touch()\n"
               f"try:\n    socket.create_connection(('127.0.0.1', {listener.port}), timeout=2).close()\n"
               "except OSError:\n    pass\n"
               "from tf_keras.layers import Dense\nfrom tf_keras.activations import relu\n")
    for name in ("dk_hostile_layers", "tf_keras_hostile"):  # the second passes a prefix-only check
        (pkgs / f"{name}.py").write_text(payload)
    fn = eval(  # noqa: S307 - the attacker's Lambda: touch the canary, call home
        f"lambda t: (__import__('pathlib').Path({str(code_canary)!r}).touch(), "
        f"__import__('socket').create_connection(('127.0.0.1', {listener.port}), timeout=2).close(), t)[2]"
    )
    lambdas = {}
    for keras, ext in (("tf_keras", "keras"), ("tf_keras", "h5"), ("keras3", "keras")):
        k = models._lib(keras)
        x = k.Input((4,), name="x")
        path = d / f"lambda_{keras}.{ext}"
        k.Model(x, k.layers.Dense(2, name="y")(k.layers.Lambda(fn, name="evil")(x))).save(path)
        lambdas[f"{keras} .{ext}"] = path
    ns = SimpleNamespace(
        dir=d, pkgs=pkgs, code_canary=code_canary, lambdas=lambdas,
        tfk_keras=models.dense(d / "dense.keras"), tfk_h5=models.dense(d / "dense.h5"),
        k3_keras=models.dense(d / "dense_k3.keras", keras="keras3"),
    )
    code_canary.unlink(missing_ok=True)
    listener.connections.clear()
    return ns


@pytest.fixture
def ws(tmp_path, hostile, listener):
    hostile.code_canary.unlink(missing_ok=True)
    listener.connections.clear()
    return Workspace(tmp_path)


def refused(ws: Workspace, hostile, listener, model: Path, *says: str, canaries=()) -> str:
    proc = ws.cli("build", "--model", str(model), "--out", "out", "--no-latency", "--json",
                  env={"PYTHONPATH": f"{ws.env()['PYTHONPATH']}:{hostile.pkgs}"})
    line = assert_failure(proc, 5, "refused_by_policy", str(model), "refused")
    findings = json.loads(proc.stdout)["error"].get("details", {}).get("findings", [line])
    for said in says:  # the line shows the first finding; --json lists them all
        assert any(said in f for f in findings), (said, findings)
    assert not hostile.code_canary.exists(), "attacker code ran"
    assert listener.connections == [], "something connected to the listener"
    for canary in canaries:
        assert not canary.read, f"{canary.path} was read"
    ws.assert_untouched()
    return line


# ---- editing helpers ---------------------------------------------------------------------------
def edit_layer(src: Path, dest: Path, edit) -> Path:
    """Copy a .keras or .h5 model, applying `edit` to the config entry of its layer 'hidden'."""
    def apply(config: dict) -> dict:
        for layer in config["config"]["layers"]:
            if layer["config"]["name"] == "hidden":
                edit(layer)
        return config

    if src.suffix == ".h5":
        import h5py

        shutil.copy(src, dest)
        with h5py.File(dest, "r+") as fh:
            fh.attrs["model_config"] = json.dumps(apply(json.loads(fh.attrs["model_config"])))
        return dest
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "config.json":
                data = json.dumps(apply(json.loads(data))).encode()
            zout.writestr(info, data)
    return dest


def replace_with(class_name: str, module: str, **config):
    def edit(layer):
        layer.update(class_name=class_name, module=module, registered_name=None)
        layer["config"] = {"name": "hidden", **config}
    return edit


# ---- 1. code-carrying layers --------------------------------------------------------------------
@pytest.mark.parametrize("case", ["tf_keras .keras", "tf_keras .h5", "keras3 .keras"])
def test_lambda_layer(ws, hostile, listener, case):
    line = refused(ws, hostile, listener, hostile.lambdas[case], "Python code")
    assert "--allow-unsafe-deserialization" in line


# ---- 2. configs naming arbitrary modules or functions ---------------------------------------------
MODULE_CASES = {
    # name: (source attribute, edit, what the message names)
    "layer class from another module (.keras)": ("tfk_keras", lambda l: l.update(module="dk_hostile_layers"),
                                                 "names module 'dk_hostile_layers'"),
    "layer class from another module (.h5)": ("tfk_h5", lambda l: l.update(module="dk_hostile_layers"),
                                              "names module 'dk_hostile_layers'"),
    "layer class from another module (Keras 3)": ("k3_keras", lambda l: l.update(module="dk_hostile_layers"),
                                                  "names module 'dk_hostile_layers'"),
    "activation function from another module": (
        "tfk_keras", lambda l: l["config"].update(activation={"module": "dk_hostile_layers", "class_name": "function",
                                                              "config": "relu", "registered_name": None}),
        "names module 'dk_hostile_layers'"),
    "os.system as the activation": (
        "tfk_keras", lambda l: l["config"].update(activation={"module": "os", "class_name": "function",
                                                              "config": "system", "registered_name": None}),
        "names module 'os'"),
    # tf_keras imports any module a function config names; 'tf_keras_hostile' starts with 'tf_keras'
    "module that only starts like tf_keras": (
        "tfk_keras", lambda l: l["config"].update(activation={"module": "tf_keras_hostile", "class_name": "function",
                                                              "config": "relu", "registered_name": None}),
        "names module 'tf_keras_hostile'"),
    "custom registered object": (
        "tfk_keras", lambda l: l.update(registered_name="dk_hostile_layers>Dense"),
        "names custom object 'dk_hostile_layers>Dense'"),
}


@pytest.mark.parametrize("case", MODULE_CASES)
def test_config_naming_modules_or_functions(ws, hostile, listener, case):
    attr, edit, says = MODULE_CASES[case]
    src = getattr(hostile, attr)
    model = edit_layer(src, ws.root / f"edited{src.suffix}", edit)
    refused(ws, hostile, listener, model, says)


# ---- 3. layers that read files or fetch URLs while the model loads ---------------------------------
@pytest.mark.parametrize("attr", ["tfk_keras", "tfk_h5", "k3_keras"])
def test_lookup_layer_reading_a_vocabulary_file(ws, hostile, listener, attr):
    canary = FileCanary(ws.root / "vocabulary.txt", b"a\nb\nc\n")
    src = getattr(hostile, attr)
    model = edit_layer(src, ws.root / f"lookup{src.suffix}",
                       replace_with("StringLookup", "keras.layers", vocabulary=str(canary.path)))
    refused(ws, hostile, listener, model, "reads", "vocabulary", canaries=[canary])


@pytest.mark.parametrize("attr", ["tfk_keras", "tfk_h5"])
def test_hub_layer_fetching_a_url(ws, hostile, listener, attr):
    """tensorflow_hub is installed (tensorflowjs pulls it) and its name starts with 'tensorflow'."""
    src = getattr(hostile, attr)
    model = edit_layer(src, ws.root / f"hub{src.suffix}",
                       replace_with("KerasLayer", "tensorflow_hub.keras_layer", handle=f"{listener.url}/model.tar.gz"))
    refused(ws, hostile, listener, model, "127.0.0.1")


def test_vocabulary_url(ws, hostile, listener):
    model = edit_layer(hostile.tfk_keras, ws.root / "url.keras",
                       replace_with("StringLookup", "keras.layers", vocabulary=f"{listener.url}/vocab.txt"))
    refused(ws, hostile, listener, model, "127.0.0.1")


def test_keras3_layer_loading_an_external_saved_model(ws, hostile, listener):
    folder = ws.root / "elsewhere"
    folder.mkdir()
    canary = FileCanary(folder / "saved_model.pb")
    model = edit_layer(hostile.k3_keras, ws.root / "tfsm.keras",
                       replace_with("TFSMLayer", "keras.layers", filepath=str(folder), call_endpoint="serve"))
    refused(ws, hostile, listener, model, "TFSMLayer", canaries=[canary])


# ---- 4. HDF5 weight files pointing at other files -------------------------------------------------
def _secret(root: Path) -> FileCanary:
    import h5py

    path = root / "secret.h5"
    with h5py.File(path, "w") as fh:
        fh["data"] = np.arange(10.0)
    return FileCanary(path, path.read_bytes())


def _external_link(fh, secret):
    import h5py

    fh["model_weights"]["leak"] = h5py.ExternalLink(str(secret), "/data")


def _virtual_dataset(fh, secret):
    import h5py

    layout = h5py.VirtualLayout(shape=(10,), dtype="f8")
    layout[:] = h5py.VirtualSource(str(secret), "data", shape=(10,))
    fh["model_weights"].create_virtual_dataset("leak", layout)


def _external_storage(fh, secret):
    fh["model_weights"].create_dataset("leak", shape=(10,), dtype="f8", external=[(str(secret), 0, 80)])


@pytest.mark.parametrize("make, says", [
    (_external_link, "external link"), (_virtual_dataset, "virtual dataset"), (_external_storage, "external file"),
], ids=["external link", "virtual dataset", "external storage"])
def test_h5_weights_pointing_at_other_files(ws, hostile, listener, make, says):
    import h5py

    secret = _secret(ws.root)
    model = ws.root / "linked.h5"
    shutil.copy(hostile.tfk_h5, model)
    with h5py.File(model, "r+") as fh:
        make(fh, secret.path)
    secret.arm()
    refused(ws, hostile, listener, model, says, str(secret.path), canaries=[secret])

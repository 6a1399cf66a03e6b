"""The TF.js target in its real runtimes: @tensorflow/tfjs 4.22 in Node (cpu, wasm backends) and
in headless Chromium (wasm, webgl backends; Debian's chromium, see scripts/setup-js.sh).

The target-independent checks (every variant passes, manifest, validate, budgets) run for "js" in
test_target_contract.py; these cover what is specific to TF.js bundles."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import deploykit
from deploykit import parity
from deploykit.config import LatencySettings
from deploykit.contract import IOContract
from deploykit.errors import SecurityError, UnsupportedOpsError
from deploykit.runner import run_child
from deploykit.sniff import file_sha256
from deploykit.targets import Artifact, RunRequest, harness_path
from deploykit.targets.js import JSTarget, bundle_problems, ensure_modules, node_binary, write_tensors

from .conftest import NO_LATENCY, run_cli

pytestmark = pytest.mark.node

VARIANTS = JSTarget.variants
NODE_BACKENDS = ["cpu", "wasm"]
BROWSER_BACKENDS = [pytest.param(b, marks=pytest.mark.browser) for b in ("chromium-wasm", "chromium-webgl")]


# ---- models (importable as `tests.test_js:NAME` by the loader) ---------------------------------
def two_in_two_out(dict_outputs: bool = True):
    from deploykit.tfenv import tf_keras

    keras = tf_keras()
    image = keras.Input((6, 6, 1), name="image")
    meta = keras.Input((3,), name="meta")
    x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(image))
    x = keras.layers.Concatenate()([x, keras.layers.Dense(4, activation="relu")(meta)])
    score = keras.layers.Dense(5, activation="softmax", name="score")(x)
    embedding = keras.layers.Dense(7, name="embedding")(x)
    # TF.js 4.22 cannot read the dict form of `output_layers` that Keras writes for dict outputs
    # ("Object is not iterable"): layers bundles need list outputs.
    return keras.Model([image, meta], {"score": score, "embedding": embedding} if dict_outputs else [score, embedding])


def lgamma_model():
    """A model whose graph needs Lgamma, which TF.js does not implement."""
    from deploykit.tfenv import tensorflow, tf_keras

    tf, keras = tensorflow(), tf_keras()

    class LGamma(keras.layers.Layer):
        def call(self, x):
            return tf.math.lgamma(tf.nn.softplus(x) + 1.0)

    inp = keras.Input((4,), name="x")
    return keras.Model(inp, keras.layers.Dense(2, name="y")(LGamma()(inp)))


# ---- one build of the bundled example with every variant, shared by several tests ----------------
@pytest.fixture(scope="module")
def example(tmp_path_factory):
    out = tmp_path_factory.mktemp("js") / "out"
    doc = deploykit.build(targets=("js",), out=str(out), **NO_LATENCY)
    return out, doc


def _entry(doc, variant):
    return next(a for a in doc["artifacts"] if a["variant"] == variant)


def _run(out: Path, entry: dict, backend: str, mode: str, work: Path) -> dict:
    """Run one artifact on one backend through the target's own `run`."""
    artifact = Artifact("js", entry["variant"], out / entry["path"], {**entry["details"], "backends": [backend]})
    request = RunRequest(artifact, out / "validation" / "inputs.npz", work / f"{entry['variant']}-{backend}.npz", mode,
                         LatencySettings(warmup=2, iterations=20, max_seconds=1.0))
    return JSTarget().run(request, work)


@pytest.mark.slow
@pytest.mark.parametrize("backend", NODE_BACKENDS + BROWSER_BACKENDS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_passes_its_budget_on_each_backend(example, variant, backend, tmp_path):
    out, doc = example
    entry = _entry(doc, variant)
    result = _run(out, entry, backend, "parity", tmp_path)
    assert result["ok"], result
    assert result["runtime"] == f"tfjs[{backend}]"
    assert result["backend"] == backend and result["runtime_version"] == "4.22.0"
    with np.load(out / "validation" / "reference.npz") as npz:
        reference = {k: npz[k] for k in npz.files}
    with np.load(tmp_path / f"{variant}-{backend}.npz") as npz:
        candidate = {k: npz[k] for k in npz.files}
    metrics, failures = parity.compare(IOContract.from_json(doc["contract"]), reference, candidate,
                                       JSTarget.default_budgets[variant])
    assert failures == [], failures
    if variant == "float32":
        assert all(m["max_abs_rel"] <= 1e-4 for m in metrics.values())
    lat = _run(out, entry, backend, "latency", tmp_path)
    assert lat["ok"] and lat["backends"][backend]["timings_ms"] and lat["load_ms"] > 0
    assert lat["first_inference_ms"] > 0 and lat["peak_rss_mb"] > 0


@pytest.mark.slow
@pytest.mark.browser
def test_default_build_checks_every_backend_including_the_browser(example):
    _, doc = example
    for a in doc["artifacts"]:
        assert a["details"]["backends"] == ["cpu", "wasm", "chromium-wasm"]
        assert a["parity"]["runtime"] == "tfjs[cpu,wasm,chromium-wasm]"


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_weights_are_quantized_as_asked(example, variant):
    out, doc = example
    entry = _entry(doc, variant)
    model_json = json.loads((out / entry["path"] / "model.json").read_text())
    weights = [w for group in model_json["weightsManifest"] for w in group["weights"]]
    quantized = {w.get("quantization", {}).get("dtype") for w in weights if w["dtype"] == "float32"}
    assert quantized == ({None} if variant == "float32" else {variant})
    assert entry["details"]["weight_dtype"] == variant
    if variant != "float32":
        assert entry["bytes"] < _entry(doc, "float32")["bytes"]


@pytest.mark.slow
def test_multi_input_multi_output_keeps_names(tmp_path, keras):
    path = tmp_path / "two.keras"
    two_in_two_out().save(path)
    doc = deploykit.build(model=str(path), targets=("js",), quantize=("float32",), out=str(tmp_path / "out"),
                          **NO_LATENCY)
    a = doc["artifacts"][0]
    assert a["passed"], a["failures"]
    signature = json.loads((tmp_path / "out" / a["path"] / "model.json").read_text())["signature"]
    assert sorted(signature["inputs"]) == ["image", "meta"]
    assert sorted(signature["outputs"]) == ["embedding", "score"]
    assert set(a["parity"]["outputs"]) == {"embedding", "score"}
    assert all(m["max_abs_rel"] <= 1e-4 for m in a["parity"]["outputs"].values())


@pytest.mark.slow
def test_small_shards_give_several_files_and_still_pass(tmp_path, monkeypatch):
    """Also: the browser check skipped (Node backends only)."""
    monkeypatch.setenv("DEPLOYKIT_JS_SHARD_BYTES", "16384")
    monkeypatch.setenv("DEPLOYKIT_JS_BACKENDS", "cpu,wasm")
    doc = deploykit.build(targets=("js",), quantize=("float32",), out=str(tmp_path / "out"), **NO_LATENCY)
    a = doc["artifacts"][0]
    shards = sorted((tmp_path / "out" / a["path"]).glob("*.bin"))
    assert a["passed"] and a["details"]["weight_shard_bytes"] == 16384
    assert a["details"]["backends"] == ["cpu", "wasm"]
    assert len(shards) == a["details"]["shards"] >= 3
    assert all(p.stat().st_size <= 16384 for p in shards)
    assert deploykit.validate(tmp_path / "out")["passed"]


@pytest.mark.slow
def test_op_preflight_refuses_ops_tfjs_lacks(tmp_path):
    with pytest.raises(UnsupportedOpsError, match="Lgamma") as info:
        deploykit.build(model="tests.test_js:lgamma_model", targets=("js",), out=str(tmp_path / "out"), **NO_LATENCY)
    assert "Lgamma" in info.value.details["ops"]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_op_preflight_is_exit_2_on_the_cli(tmp_path):
    proc = run_cli("build", "--model", "tests.test_js:lgamma_model", "--target", "js", "--out", "out", "--no-latency",
                   cwd=tmp_path, env={"PYTHONPATH": str(Path(__file__).parent.parent)})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Lgamma" in proc.stderr and "TF.js" in proc.stderr


def test_missing_node_is_exit_4(tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    proc = run_cli("build", "--target", "js", "--out", "out", cwd=tmp_path, env={"PATH": str(bare)})
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "Node.js" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_missing_chromium_is_exit_4_with_the_install_command(tmp_path):
    proc = run_cli("build", "--target", "js", "--out", "out", cwd=tmp_path,
                   env={"DEPLOYKIT_CHROMIUM": str(tmp_path / "no-chromium")})
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "apt-get install -y chromium" in proc.stderr and "DEPLOYKIT_JS_BACKENDS=cpu,wasm" in proc.stderr
    assert not (tmp_path / "out").exists()


# ---- bundle safety ----------------------------------------------------------------------------
UNSAFE = ["../x.bin", "/etc/passwd", "sub/../../x.bin", "..\\x.bin", "file:///etc/passwd"]


def _with_path(bundle: Path, bad: str) -> None:
    doc = json.loads((bundle / "model.json").read_text())
    doc["weightsManifest"][0]["paths"][0] = bad
    (bundle / "model.json").write_text(json.dumps(doc))


@pytest.mark.slow
@pytest.mark.parametrize("bad,backend", [(b, "cpu") for b in UNSAFE] +
                         [pytest.param("../x.bin", "chromium-wasm", marks=pytest.mark.browser)])
def test_harness_loader_refuses_paths_outside_the_bundle(example, bad, backend, tmp_path):
    out, doc = example
    bundle = tmp_path / "bundle"
    shutil.copytree(out / _entry(doc, "float32")["path"], bundle)
    (tmp_path / "x.bin").write_bytes((next(bundle.glob("*.bin"))).read_bytes())  # a tempting target exists
    _with_path(bundle, bad)
    assert bundle_problems(bundle)
    inputs = write_tensors(tmp_path / "inputs", {"pixels": np.zeros((1, 8, 8, 1), np.float32)})
    payload = {"bundle": str(bundle / "model.json"), "inputs": str(inputs), "outputs": str(tmp_path / "o"),
               "mode": "parity", "backends": [backend], "modules": str(ensure_modules(harness_path("js", "harness.mjs").parent))}
    result = run_child([node_binary(), str(harness_path("js", "harness.mjs"))], payload, tmp_path, timeout=120, label="js")
    assert result["ok"] is False and "unsafe weight path" in result["error"], result


@pytest.mark.slow
def test_validate_refuses_a_bundle_whose_weights_escape(example, tmp_path):
    out, doc = example
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    entry = _entry(doc, "float32")
    _with_path(copy / entry["path"], "../../validation/inputs.npz")
    manifest = json.loads((copy / "manifest.json").read_text())
    rel = f"{entry['path']}/model.json"
    manifest["files"][rel]["sha256"] = file_sha256(copy / rel)  # a consistent, but malicious, build
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SecurityError, match="escapes the bundle folder"):
        deploykit.validate(copy)
    proc = run_cli("validate", str(copy))
    assert proc.returncode == 5 and "escapes the bundle folder" in proc.stderr, proc.stderr[-2000:]


def test_registry_lists_js_without_importing_tensorflow():
    code = "import sys, deploykit.targets as t; t.target_class('js').describe(); print('tensorflow' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "False", proc.stderr[-2000:]


@pytest.mark.slow
def test_wheel_ships_the_harness_and_installs_npm_dependencies_on_first_use(tmp_path):
    """From a wheel, in another folder, with an empty npm cache: `npm ci` runs once, says so, and
    the bundle is validated with the shipped harness."""
    import site
    import zipfile

    from .conftest import ROOT

    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)], check=True)
    wheel = next(dist.glob("deploykit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for f in ("harness.mjs", "browser.mjs", "package.json", "package-lock.json"):
        assert f"deploykit/_targets/js/{f}" in names
    assert not [n for n in names if "node_modules" in n]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "deps.pth").write_text("\n".join(p for p in site.getsitepackages() if "site-packages" in p) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    args = [str(venv / "bin" / "deploykit"), "build", "--target", "js", "--quantize", "float32", "--no-latency", "--out", "out"]
    proc = subprocess.run(args, cwd=elsewhere, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "installing the TF.js harness dependencies" in proc.stderr
    assert list((tmp_path / "cache" / "deploykit").glob("js-*/node_modules/@tensorflow/tfjs"))
    assert (elsewhere / "out" / "js" / "float32" / "model.json").exists()


def test_auto_quantize_picks_the_smallest_passing_variant():
    from deploykit.targets.js import quantization_notes, smallest_passing

    entries = [{"target": "js", "variant": v, "bytes": b, "passed": ok}
               for v, b, ok in [("float32", 100, True), ("float16", 55, True), ("uint16", 56, True), ("uint8", 33, False)]]
    entries.append({"target": "tflite", "variant": "int8", "bytes": 10, "passed": True})
    assert smallest_passing(entries)["variant"] == "float16"
    assert quantization_notes(entries) == ["js/uint8 failed its budget (weight quantization can wreck accuracy); "
                                           "js/float16 passed (55 bytes)"]
    assert smallest_passing(entries[3:4]) is None


@pytest.mark.slow
@pytest.mark.browser
def test_layers_model_on_request_keeps_names_and_passes_every_backend(tmp_path, monkeypatch, keras):
    monkeypatch.setenv("DEPLOYKIT_JS_FORMAT", "layers")
    path = tmp_path / "two.keras"
    two_in_two_out(dict_outputs=False).save(path)
    doc = deploykit.build(model=str(path), targets=("js",), quantize=("float32", "uint8"), out=str(tmp_path / "out"),
                          **NO_LATENCY)
    for a in doc["artifacts"]:
        assert a["passed"], a["failures"]
        assert a["details"]["format"] == "layers-model" and a["parity"]["runtime"] == "tfjs[cpu,wasm,chromium-wasm]"
        model_json = json.loads((tmp_path / "out" / a["path"] / "model.json").read_text())
        assert model_json["format"] == "layers-model"
        assert set(a["parity"]["outputs"]) == {"embedding", "score"}
    f32 = doc["artifacts"][0]["parity"]["outputs"]
    assert all(m["max_abs_rel"] <= 1e-4 for m in f32.values())


@pytest.mark.slow
def test_layers_model_with_dict_outputs_is_refused_clearly(tmp_path, monkeypatch, keras):
    from deploykit.errors import BadInputError

    monkeypatch.setenv("DEPLOYKIT_JS_FORMAT", "layers")
    path = tmp_path / "two.keras"
    two_in_two_out().save(path)
    with pytest.raises(BadInputError, match="dict outputs"):
        deploykit.build(model=str(path), targets=("js",), out=str(tmp_path / "out"), **NO_LATENCY)

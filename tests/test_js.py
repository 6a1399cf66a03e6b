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
from deploykit.config import LatencySettings
from deploykit.contract import IOContract
from deploykit.digests import file_sha256
from deploykit.errors import SecurityError, UnsupportedOpsError
from deploykit.runner import run_child
from deploykit.targets import Artifact, RunRequest, harness_path
from deploykit.targets.js.node import bundle_problems, ensure_modules, node_binary, write_tensors
from deploykit.targets.js.target import JSTarget
from deploykit.validation import parity

from .conftest import NO_LATENCY, run_cli

pytestmark = pytest.mark.node

VARIANTS = JSTarget.variants
NODE_BACKENDS = ["cpu", "wasm"]
BROWSER_BACKENDS = [pytest.param(b, marks=pytest.mark.browser) for b in ("chromium-wasm", "chromium-webgl")]


# ---- models (importable as `tests.test_js:NAME` by the loader) ---------------------------------
def two_in_two_out(dict_outputs: bool = True):
    from deploykit.tfenv import tf_keras

    keras = tf_keras()
    keras.utils.set_random_seed(0)  # the same weights every run: quantized variants' parity is reproducible
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


def rewritable_model():
    """A model whose graph needs ops TF.js lacks but that deploykit rewrites exactly: Softsign (a
    Keras activation), Erfc, Xlogy, Xlog1py, Xdivy and MulNoNan (the relu makes exact zeros, so
    the x == 0 branches run)."""
    from deploykit.tfenv import tensorflow, tf_keras

    tf, keras = tensorflow(), tf_keras()

    class Special(keras.layers.Layer):
        def call(self, x):
            a, b = tf.nn.relu(x), tf.nn.softplus(x) + 0.5
            return tf.concat([tf.math.erfc(x), tf.math.xlogy(a, b), tf.math.xlog1py(a, b), tf.math.xdivy(a, b),
                              tf.math.multiply_no_nan(b, a)], axis=-1)

    inp = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(6, activation="softsign")(inp)
    return keras.Model(inp, keras.layers.Dense(3, name="y")(Special()(hidden)))


def small_mobilenetv2():
    """tf_keras MobileNetV2 (weights=None, alpha 0.35, 96x96x3: the full 224x224 model is slow on the
    tfjs cpu backend), seeded, with each BatchNormalization's moving statistics set from one
    training-mode pass over random images: as built, its activations vanish and the softmax is
    1/1000 for every input, which would make parity vacuous."""
    from deploykit.tfenv import tf_keras

    keras = tf_keras()
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), alpha=0.35)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(np.random.default_rng(1).uniform(-1, 1, (16, 96, 96, 3)).astype(np.float32), training=True)
    for layer, momentum in zip(norms, saved):
        layer.momentum = momentum
    return model


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
    request = RunRequest(artifact, out / "validation" / "inputs.npz", work / entry["variant"], mode,
                         LatencySettings(warmup=2, iterations=20, max_seconds=1.0))
    return JSTarget().run(request, work)


# The example build already validated every variant on cpu, wasm and chromium-wasm (judged on the
# worst backend); here each backend runs alone (its own figures), and every variant on WebGL.
EACH_BACKEND = ([("float32", b) for b in NODE_BACKENDS] + [pytest.param("float32", b.values[0], marks=b.marks)
                for b in BROWSER_BACKENDS] + [pytest.param(v, "chromium-webgl", marks=pytest.mark.browser)
                for v in VARIANTS[1:]])


@pytest.mark.slow
@pytest.mark.parametrize("variant,backend", EACH_BACKEND)
def test_each_variant_passes_its_budget_on_each_backend(example, variant, backend, tmp_path):
    out, doc = example
    entry = _entry(doc, variant)
    result = _run(out, entry, backend, "parity", tmp_path)
    assert result["ok"], result
    assert result["runtime"] == f"tfjs[{backend}]"
    assert result["backend"] == backend and result["runtime_version"] == "4.22.0"
    with np.load(out / "validation" / "reference.npz") as npz:
        reference = {k: npz[k] for k in npz.files}
    with np.load(tmp_path / f"{variant}.{backend}.npz") as npz:  # RunRequest.outputs_for(backend)
        candidate = {k: npz[k] for k in npz.files}
    metrics, failures = parity.compare(IOContract.from_json(doc["contract"]), reference, candidate,
                                       JSTarget.default_budgets[variant])
    assert failures == [], failures
    if variant == "float32":
        assert all(m["max_abs_rel"] <= 1e-4 for m in metrics.values())
    lat = _run(out, entry, backend, "latency", tmp_path)
    assert lat["ok"] and lat["backends"][backend]["timings_ms"] and lat["load_ms"] > 0
    assert lat["first_inference_ms"] > 0 and lat["peak_rss_mb"] > 0


def test_latency_is_timed_where_a_deployment_runs():
    from deploykit.targets.js.target import latency_backends

    assert latency_backends(["cpu", "wasm", "chromium-wasm"]) == ["wasm", "chromium-wasm"]
    assert latency_backends(["cpu"]) == ["cpu"]  # the only backend asked for: timed
    assert latency_backends(["wasm", "chromium-webgl"]) == ["wasm", "chromium-webgl"]


@pytest.mark.slow
def test_cpu_is_checked_for_parity_but_not_timed(example, tmp_path):
    out, doc = example
    entry = _entry(doc, "float32")
    artifact = Artifact("js", "float32", out / entry["path"], {**entry["details"], "backends": ["cpu", "wasm"]})
    lat = LatencySettings(warmup=2, iterations=20, max_seconds=1.0)
    request = RunRequest(artifact, out / "validation" / "inputs.npz", tmp_path / "p", "parity", lat)
    parity_run = JSTarget().run(request, tmp_path)
    assert parity_run["ok"] and parity_run["backends"] == ["cpu", "wasm"] and set(parity_run["seconds"]) == {"cpu", "wasm"}
    # cpu's rows were split over processes (one per core): put back together in row order, they are wasm's rows
    with np.load(request.outputs_for("cpu")) as cpu, np.load(request.outputs_for("wasm")) as wasm, \
            np.load(out / "validation" / "inputs.npz") as inputs:
        rows = len(next(iter(inputs.values())))
        assert parity_run["rows"] == rows and set(cpu.files) == set(wasm.files)
        for k in cpu.files:
            assert cpu[k].shape[0] == rows and np.allclose(cpu[k], wasm[k], rtol=1e-4, atol=1e-5), k
    timed = JSTarget().run(RunRequest(artifact, out / "validation" / "inputs.npz", tmp_path / "l", "latency", lat),
                           tmp_path)
    assert timed["ok"] and set(timed["backends"]) == {"wasm"} and timed["backend"] == "wasm"
    assert timed["stopped"] == "iteration cap" and len(timed["timings_ms"]) == 20


def test_cpu_parity_rows_are_cut_in_order_into_one_part_per_core():
    from deploykit.targets.js.target import _row_parts, cpu_parity_processes

    rows = {"x": np.arange(7)[:, None], "y": np.arange(7) * 10}
    parts = _row_parts(rows, 3)
    assert [p["x"].ravel().tolist() for p in parts] == [[0, 1], [2, 3, 4], [5, 6]]
    assert [p["y"].tolist() for p in parts] == [[0, 10], [20, 30, 40], [50, 60]]
    assert cpu_parity_processes({"x": np.zeros((1, 3))}) == 1  # never more processes than rows
    assert cpu_parity_processes(rows) == min(7, len(os.sched_getaffinity(0)))


@pytest.mark.slow
@pytest.mark.browser
def test_default_build_checks_every_backend_including_the_browser(example):
    _, doc = example
    for a in doc["artifacts"]:
        assert a["details"]["backends"] == ["cpu", "wasm", "chromium-wasm"]
        assert a["parity"]["runtime"] == "tfjs[cpu,wasm,chromium-wasm]"
        assert a["details"]["format"] == "graph-model" and a["details"]["rewrites"] == []
    # parity is judged on the backend farthest from the reference: every backend is within 1e-4
    assert all(m["max_abs"] <= 1e-4 for m in _entry(doc, "float32")["parity"]["outputs"].values())


# ---- done-when: float32 graph and layers bundles of the example and of MobileNetV2, every backend ----
@pytest.fixture(scope="module", params=[("example", "layers"), ("mobilenetv2", "graph"), ("mobilenetv2", "layers")],
                ids=lambda p: "-".join(p))
def float32_bundle(request, tmp_path_factory):
    """(the example's graph bundle is the `example` fixture's float32 variant)"""
    name, fmt = request.param
    model = None if name == "example" else "tests.test_js:small_mobilenetv2"
    doc = deploykit.build(model=model, targets=("js",), out=str(tmp_path_factory.mktemp(name) / "out"),
                          js={"format": fmt, "quantize": ("float32",)}, parity_samples=8, **NO_LATENCY)
    return fmt, doc


@pytest.mark.slow
@pytest.mark.browser
def test_float32_bundles_pass_parity_on_cpu_and_wasm_in_node_and_in_chromium(float32_bundle):
    fmt, doc = float32_bundle
    a, = doc["artifacts"]
    assert a["passed"], a["failures"]
    assert a["details"]["format"] == f"{fmt}-model"
    assert a["parity"]["runtime"] == "tfjs[cpu,wasm,chromium-wasm]" and a["parity"]["samples"] >= 8
    assert all(m["max_abs"] <= 1e-4 for m in a["parity"]["outputs"].values()), a["parity"]["outputs"]


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
def test_small_shards_give_several_files_and_still_pass(tmp_path):
    """Also: the browser check skipped (Node backends only), settings from a [js] table."""
    config = tmp_path / "deploykit.toml"
    config.write_text('[js]\nshard_bytes = 16384\nbackends = ["cpu", "wasm"]\nquantize = ["float32"]\n')
    doc = deploykit.build(targets=("js",), out=str(tmp_path / "out"), config=str(config), **NO_LATENCY)
    a, = doc["artifacts"]
    assert doc["config"]["settings"]["js"]["shard_bytes"] == 16384
    shards = sorted((tmp_path / "out" / a["path"]).glob("*.bin"))
    assert a["passed"] and a["details"]["weight_shard_bytes"] == 16384
    assert a["details"]["backends"] == ["cpu", "wasm"]
    assert len(shards) == a["details"]["shards"] >= 3
    assert all(p.stat().st_size <= 16384 for p in shards)
    assert deploykit.validate(tmp_path / "out")["passed"]


def test_batch_norm_folding_is_upstreams_byte_for_byte(tf, keras, tmp_path):
    """batchnorm.fold_batch_norms (vectorized) against tensorflowjs's own (one Python step per weight) on
    the graph the converter hands it, with each pattern it folds: Conv2D, Conv2D + bias,
    DepthwiseConv2dNative (multiplier 2), and a batch norm it must leave alone (after a ReLU)."""
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")  # as the js target sets it (its import needs IPython)
    from tensorflowjs.converters import fold_batch_norms as upstream
    from tensorflowjs.converters.tf_saved_model_conversion_v2 import convert_tf_saved_model

    from deploykit.targets.js import batchnorm

    L = keras.layers
    x = inputs = keras.Input((9, 9, 3))
    x = L.BatchNormalization()(L.Conv2D(4, 3, use_bias=False)(x))
    x = L.BatchNormalization(epsilon=1e-5)(L.Conv2D(5, 3, use_bias=True)(x))
    x = L.BatchNormalization()(L.DepthwiseConv2D(3, depth_multiplier=2, use_bias=False)(x))
    x = L.BatchNormalization()(L.ReLU()(x))
    model = keras.Model(inputs, L.Dense(6)(L.Flatten()(x)))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):  # moving statistics far from 0 and 1
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.normal(1, 0.3, gamma.shape), rng.normal(0, 0.5, beta.shape),
                               rng.normal(0, 0.5, mean.shape), rng.uniform(0.2, 3.0, var.shape)])
    model.save(str(tmp_path / "saved_model"), save_format="tf")
    handed, real = [], upstream.fold_batch_norms
    # what it is given (a copy: upstream's edits its input)
    upstream.fold_batch_norms = lambda graph_def: handed.append(graph_def.SerializeToString()) or real(graph_def)
    try:
        convert_tf_saved_model(str(tmp_path / "saved_model"), str(tmp_path / "js"))
    finally:
        upstream.fold_batch_norms = real
    graph_def = tf.compat.v1.GraphDef.FromString(handed[0])
    assert sum(n.op == "FusedBatchNormV3" for n in graph_def.node) == 4

    ours = batchnorm.fold_batch_norms(graph_def)
    assert graph_def == tf.compat.v1.GraphDef.FromString(handed[0])  # ours leaves its input as it was
    theirs = upstream.fold_batch_norms(graph_def)
    assert sum(n.op == "FusedBatchNormV3" for n in ours.node) == 1  # the ReLU's is not a convolution's
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)


def test_the_converter_uses_the_intakes_loaded_saved_model_instead_of_loading_it_again(tf, tmp_path):
    """rewrite.applied_to_frozen_graph hands the converter the object already loaded for that folder (and
    only for it), and puts the converter's own loader back afterwards."""
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as conversion

    from deploykit.targets.js import rewrite

    original, already = conversion._load_model, object()
    with rewrite.applied_to_frozen_graph({}, (tmp_path / "source", already)):
        assert conversion._load_model(str(tmp_path / "source"), ["serve"]) is already
        with pytest.raises(OSError):  # another folder: loaded as upstream does (here: none there)
            conversion._load_model(str(tmp_path / "elsewhere"), ["serve"])
    assert conversion._load_model is original


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


@pytest.mark.slow
def test_ops_with_an_exact_rewrite_are_rewritten_and_proven_by_parity(tmp_path):
    doc = deploykit.build(model="tests.test_js:rewritable_model", targets=("js",), out=str(tmp_path / "out"),
                          js={"quantize": ("float32",), "backends": ("cpu", "wasm")}, **NO_LATENCY)
    rewrites = doc["targets"]["js"]["rewrites"]
    assert {r["op"]: r["nodes"] for r in rewrites} == dict.fromkeys(
        ["Erfc", "MulNoNan", "Softsign", "Xdivy", "Xlog1py", "Xlogy"], 1)
    a, = doc["artifacts"]
    assert a["passed"], a["failures"]
    assert a["details"]["rewrites"] == rewrites
    assert all(m["max_abs_rel"] <= 1e-4 for m in a["parity"]["outputs"].values())
    nodes = json.loads((tmp_path / "out" / a["path"] / "model.json").read_text())["modelTopology"]["node"]
    assert not {n["op"] for n in nodes} & {r["op"] for r in rewrites}


def test_rewrite_rules_are_only_for_ops_tfjs_lacks_or_gets_wrong():
    """Each rule must be needed: its op is missing from the op lists tensorflowjs ships, or (a rule
    marked lacking=False, e.g. FusedBatchNormV3 with is_training) TF.js has the op and computes these
    nodes wrongly, so the rule applies to those nodes only."""
    import importlib.util

    from deploykit.targets.js.rewrite import RULES

    folder = Path(importlib.util.find_spec("tensorflowjs").submodule_search_locations[0]) / "op_list"
    supported = {op["tfOpName"] for f in folder.glob("*.json") for op in json.loads(f.read_text())}
    assert len(supported) > 100 and "Erf" in supported and "SelectV2" in supported
    lacking = {op for op, rule in RULES.items() if rule.lacking}
    assert not lacking & supported
    assert set(RULES) - lacking == {"FusedBatchNormV3"} <= supported


# ---- quantization: which variant passed, and --js-quantize auto ---------------------------------
TIGHT_UINT8 = '[budgets.js.uint8]\nmax_abs_rel = 1e-9\n'  # a budget uint8 weights cannot meet


@pytest.mark.slow
def test_a_failing_quantized_variant_says_so_and_names_the_variant_that_passed(tmp_path):
    (tmp_path / "tight.toml").write_text(TIGHT_UINT8)
    proc = run_cli("build", "--model", "tests.test_js:two_in_two_out", "--target", "js", "--js-quantize", "float16,uint8",
                   "--js-backends", "cpu", "--config", "tight.toml", "--out", "out", "--no-latency", "--json",
                   cwd=tmp_path, env={"PYTHONPATH": str(Path(__file__).parent.parent)})
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "js/uint8: output 'score': max_abs_rel" in proc.stderr
    assert "js/uint8 failed its budget (weight quantization can wreck accuracy); js/float16 passed" in proc.stderr
    assert "--js-quantize auto" in proc.stderr
    assert json.loads(proc.stdout)["error"]["details"]["notes"]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_auto_quantize_keeps_only_the_smallest_variant_that_passes(tmp_path):
    (tmp_path / "tight.toml").write_text(TIGHT_UINT8 + '[js]\nquantize = "auto"\nbackends = ["cpu"]\n')
    out = tmp_path / "out"
    doc = deploykit.build(model="tests.test_js:two_in_two_out", targets=("js",), out=str(out),
                          config=str(tmp_path / "tight.toml"), **NO_LATENCY)
    auto = doc["targets"]["js"]["quantize_auto"]
    a, = doc["artifacts"]
    assert a["passed"] and a["variant"] == auto["selected"] != "uint8" and a["bytes"] == auto["bytes"]
    rejected = {r["variant"]: r for r in auto["rejected"]}
    assert set(rejected) == set(VARIANTS) - {a["variant"]}
    assert rejected["uint8"]["passed"] is False and rejected["uint8"]["reason"] == "failed its budget"
    assert rejected["uint8"]["failures"][0]["metric"] == "max_abs_rel"
    for r in rejected.values():
        if r["passed"]:
            assert r["bytes"] > a["bytes"] and "larger than" in r["reason"]
    assert [p.name for p in (out / "js").iterdir()] == [a["variant"]]
    assert a["size_ratio_to_float32"] < 1.0
    assert deploykit.validate(out)["passed"]


def test_js_settings_are_build_settings_in_the_config_hash():
    from deploykit.config import make_config

    base = make_config()
    assert base.js.backends == ("cpu", "wasm", "chromium-wasm") and base.js.format == "graph"
    assert make_config(js={"shard_bytes": 8192}).config_hash() != base.config_hash()
    assert make_config(js={"quantize": "auto"}).js.auto and not base.js.auto
    assert make_config(js={"backends": "cpu, wasm"}).js.backends == ("cpu", "wasm")


@pytest.mark.parametrize("args,named", [
    (["--js-quantize", "int8"], "js.quantize: unknown variant(s) int8"),
    (["--js-backends", "cpu,gpu"], "js.backends: unknown backend(s) gpu"),
    (["--js-shard-bytes", "10"], "js.shard_bytes"),
    (["--js-format", "saved"], "--js-format"),
    (["--config", "bad.toml"], "unknown [js] setting(s) shard_size"),
])
def test_bad_js_settings_are_exit_2_naming_the_setting(tmp_path, args, named):
    (tmp_path / "bad.toml").write_text("[js]\nshard_size = 1024\n")
    proc = run_cli("build", "--target", "js", "--out", "out", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert named in proc.stderr
    assert not (tmp_path / "out").exists()


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
    assert "apt-get install -y chromium" in proc.stderr and "--js-backends cpu,wasm" in proc.stderr
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
    for f in ("harness.mjs", "browser.mjs", "sampling.mjs", "package.json", "package-lock.json"):
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
    from deploykit.targets.js.select import quantization_notes, smallest_passing

    entries = [{"target": "js", "variant": v, "bytes": b, "passed": ok}
               for v, b, ok in [("float32", 100, True), ("float16", 55, True), ("uint16", 56, True), ("uint8", 33, False)]]
    entries.append({"target": "tflite", "variant": "int8", "bytes": 10, "passed": True})
    assert smallest_passing(entries)["variant"] == "float16"
    assert quantization_notes(entries) == ["js/uint8 failed its budget (weight quantization can wreck accuracy); "
                                           "js/float16 passed (55 bytes); --js-quantize auto keeps the smallest "
                                           "variant that passes"]
    assert smallest_passing(entries[3:4]) is None
    entries[0]["passed"] = False  # a float32 failure is not a quantization problem
    assert len(quantization_notes(entries)) == 1


@pytest.mark.slow
@pytest.mark.browser
def test_layers_model_on_request_keeps_names_and_passes_every_backend(tmp_path, keras):
    path = tmp_path / "two.keras"
    two_in_two_out(dict_outputs=False).save(path)
    doc = deploykit.build(model=str(path), targets=("js",), out=str(tmp_path / "out"),
                          js={"format": "layers", "quantize": ("float32", "uint8")}, **NO_LATENCY)
    for a in doc["artifacts"]:
        assert a["passed"], a["failures"]
        assert a["details"]["format"] == "layers-model" and a["parity"]["runtime"] == "tfjs[cpu,wasm,chromium-wasm]"
        model_json = json.loads((tmp_path / "out" / a["path"] / "model.json").read_text())
        assert model_json["format"] == "layers-model"
        assert set(a["parity"]["outputs"]) == {"embedding", "score"}
    f32 = doc["artifacts"][0]["parity"]["outputs"]
    assert all(m["max_abs_rel"] <= 1e-4 for m in f32.values())


@pytest.mark.slow
def test_layers_model_with_dict_outputs_is_refused_clearly(tmp_path, keras):
    from deploykit.errors import BadInputError

    path = tmp_path / "two.keras"
    two_in_two_out().save(path)
    with pytest.raises(BadInputError, match="dict outputs"):
        deploykit.build(model=str(path), targets=("js",), out=str(tmp_path / "out"), js={"format": "layers"}, **NO_LATENCY)

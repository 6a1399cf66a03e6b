"""The Python API (`deploykit.api`): real signatures with the CLI's names, only DeployKitError for bad
arguments, in-memory tf_keras / Keras 3 models and numpy arrays as inputs, and the README's example,
extracted and run so it cannot go stale.

Fast tests replace `pipeline.run` to see the settings a call produces; the slow ones build tflite."""
from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import deploykit
from deploykit import pipeline
from deploykit.errors import BadInputError, DeployKitError, MissingRuntimeError, SecurityError

README = Path(__file__).resolve().parent.parent / "README.md"
BUILD_KEYWORDS = ["model", "data", "target", "targets", "quantize", "out", "config", "latency", "budget", "budgets",
                  "jobs", "parity_samples", "trust_model", "allow_unsafe_deserialization", "train_config", "prune",
                  "qat", "cluster", "quiet"]


# ---- signatures and docs -----------------------------------------------------------------------------
def test_build_has_a_real_signature_with_the_documented_keywords():
    params = inspect.signature(deploykit.build).parameters
    assert [p for p in params if p != "settings"] == BUILD_KEYWORDS
    assert params["settings"].kind is inspect.Parameter.VAR_KEYWORD
    assert params["latency"].default is True and params["quiet"].default is True
    assert all(params[p].kind is inspect.Parameter.KEYWORD_ONLY for p in BUILD_KEYWORDS[2:])


@pytest.mark.parametrize("function, names", [
    (deploykit.validate, ["out", "latency", "jobs"]),
    (deploykit.train, ["config", "out", "local_workers", "max_restarts", "strategy", "epochs", "emit_k8s", "quiet",
                       "overrides"]),
    (deploykit.report, ["out", "baseline", "dest", "config", "max_size_increase", "max_latency_ratio",
                        "latency_noise_ms", "max_parity_ratio", "max_agreement_drop", "summary"]),
    (deploykit.publish, ["out", "to", "force"]),
    (deploykit.build, [*BUILD_KEYWORDS, "settings"]),
])
def test_every_function_is_typed_and_documented(function, names):
    sig = inspect.signature(function)
    assert list(sig.parameters) == names
    assert not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in sig.parameters.values())
    assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values())
    assert sig.return_annotation is not inspect.Signature.empty
    doc = inspect.getdoc(function)
    for section in ("Args:", "Returns:", "Raises:"):
        assert section in doc, (function.__name__, section)
    for name in names:
        assert re.search(rf"\b{name}\b", doc), f"{function.__name__}: {name} is not documented"
    assert re.search(r"(BadInputError|BudgetError)", doc.split("Raises:")[1])


def test_the_package_exports_the_api():
    from deploykit.fit.api import DEFAULT_RUN_DIR

    assert {"build", "validate", "train", "report", "publish", "Report", "DeployKitError"} <= set(deploykit.__all__)
    assert all(hasattr(deploykit, name) for name in deploykit.__all__)
    assert inspect.signature(deploykit.train).parameters["out"].default == DEFAULT_RUN_DIR


def test_importing_deploykit_and_refusing_arguments_import_no_tensorflow():
    code = (
        "import sys, deploykit\n"
        "try:\n    deploykit.build(bogus=1)\nexcept deploykit.errors.BadInputError:\n    pass\n"
        "heavy = [m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


# ---- bad arguments: DeployKitError, never TypeError or AttributeError -------------------------------
BAD_CALLS = {
    "model=42": lambda t: deploykit.build(model=42),
    "model=object()": lambda t: deploykit.build(model=object()),
    "bogus=1": lambda t: deploykit.build(bogus=1),
    "quantize=3": lambda t: deploykit.build(quantize=3),
    "target=3": lambda t: deploykit.build(target=3),
    "target and targets": lambda t: deploykit.build(target="tflite", targets="tflite"),
    "latency='no'": lambda t: deploykit.build(latency="no"),
    "latency and no_latency": lambda t: deploykit.build(latency=False, no_latency=True),
    "latency={bogus}": lambda t: deploykit.build(latency={"bogus": 1}),
    "budget without value": lambda t: deploykit.build(budget="tflite.int8.cosine"),
    "budget not a number": lambda t: deploykit.build(budget=["tflite.int8.cosine=high"]),
    "budget table of numbers": lambda t: deploykit.build(budgets={"tflite": 0.9}),
    "budget=5": lambda t: deploykit.build(budget=5),
    "budget unknown variant": lambda t: deploykit.build(budgets={"tflite": {"uint3": {"cosine": 0.9}}}),
    "data=42": lambda t: deploykit.build(data=42),
    "data={}": lambda t: deploykit.build(data={}),
    "data object array": lambda t: deploykit.build(data=np.array([{"a": 1}], dtype=object)),
    "data dict object array": lambda t: deploykit.build(data={"text": np.array(["a", None], dtype=object)}),
    "data ragged": lambda t: deploykit.build(data={"x": [[1.0], [1.0, 2.0]]}),
    "data key 3": lambda t: deploykit.build(data={3: np.zeros((2, 2))}),
    "out=3": lambda t: deploykit.build(out=3),
    "config=5": lambda t: deploykit.build(config=5),
    "config missing": lambda t: deploykit.build(config=t / "none.toml"),
    "jobs='2'": lambda t: deploykit.build(jobs="2"),
    "trust_model='yes'": lambda t: deploykit.build(trust_model="yes"),
    "quiet=None": lambda t: deploykit.build(quiet=None),
    "no_container='x'": lambda t: deploykit.build(no_container="x"),
    "js_format='bogus'": lambda t: deploykit.build(js_format="bogus"),
    "js=3": lambda t: deploykit.build(js=3),
    "optimize=3 with prune": lambda t: deploykit.build(prune=0.5, optimize=3),
    "validate(42)": lambda t: deploykit.validate(42),
    "validate(no build)": lambda t: deploykit.validate(t),
    "validate(latency='x')": lambda t: deploykit.validate(t, latency="x"),
    "validate(jobs=0)": lambda t: deploykit.validate(t, jobs=0),
    "report(None)": lambda t: deploykit.report(None),
    "report(no build)": lambda t: deploykit.report(t),
    "report(max_size_increase='x')": lambda t: deploykit.report(t, max_size_increase="x"),
    "publish(to=5)": lambda t: deploykit.publish(t, 5),
    "publish(no build)": lambda t: deploykit.publish(t, t / "dest"),
    "train(local_workers='2')": lambda t: deploykit.train(local_workers="2"),
    "train(bogus=1)": lambda t: deploykit.train(bogus=1),
    "train(config=3)": lambda t: deploykit.train(config=3),
    "train(strategy='fast')": lambda t: deploykit.train(strategy="fast", emit_k8s=t / "k8s"),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_arguments_raise_deploykit_errors(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a call that wrongly went through would build there, not in the checkout
    monkeypatch.setattr(pipeline, "run", lambda *a, **k: pytest.fail(f"{case}: reached the build"))
    with pytest.raises(DeployKitError) as info:
        BAD_CALLS[case](tmp_path)
    assert info.value.exit_code == 2, info.value.message


def test_an_unknown_keyword_is_named_with_the_known_ones():
    with pytest.raises(BadInputError) as info:
        deploykit.build(bogus=1, no_such_thing=2)
    message = info.value.message
    assert message.startswith("unknown setting(s) bogus, no_such_thing (known: model, data, target, targets, ")
    for name in ("latency", "budget", "calibration_samples", "no_latency", "js_format", "no_container", "base_image"):
        assert re.search(rf"\b{name}\b", message), name


# ---- keywords: the CLI's names reach the same settings -------------------------------------------
@pytest.fixture
def captured(monkeypatch, tmp_path):
    """`deploykit.build` up to the pipeline: the BuildConfig and names it would run with."""
    from deploykit.arrays import read_npz

    calls = []

    def fake_run(cfg, rep, *, named=None):
        named = dict(named or {})
        calls.append(SimpleNamespace(cfg=cfg, named=named, files={k: Path(getattr(cfg, k)).is_file() for k in named},
                                     arrays=read_npz(cfg.data) if "data" in named else None))
        return {"fake": True}

    monkeypatch.setattr(pipeline, "run", fake_run)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    def call(*args, **kwargs):
        assert deploykit.build(*args, **kwargs) == {"fake": True}
        return calls[-1]

    return call


def test_target_and_quantize_take_a_string_or_a_list(captured):
    assert captured(target="tflite").cfg.targets == ("tflite",)
    assert captured(target="tflite,js").cfg.targets == ("tflite", "js")
    assert captured(targets=["tflite", "serving"]).cfg.targets == ("tflite", "serving")
    assert captured(quantize="float32,int8").cfg.quantize == ("float32", "int8")
    assert captured(quantize=["float16"]).cfg.quantize == ("float16",)


def test_latency_false_is_the_cli_no_latency(captured):
    assert captured(latency=False).cfg.latency.enabled is False
    assert captured(no_latency=True).cfg.latency.enabled is False
    assert captured().cfg.latency.enabled is True
    table = captured(latency={"iterations": 5, "warmup": 1}).cfg.latency
    assert (table.enabled, table.iterations, table.warmup) == (True, 5, 1)


def test_budgets_take_cli_strings_or_a_table_merged_over_the_config_file(captured, tmp_path):
    assert captured(budget="tflite.int8.cosine=0.98").cfg.budgets == {"tflite": {"int8": {"cosine": 0.98}}}
    assert captured(budgets={"tflite": {"int8": {"cosine": 0.97}}}).cfg.budgets == {"tflite": {"int8": {"cosine": 0.97}}}
    every = captured(budget=["*.float32.max_abs_rel=1e-4"]).cfg.budgets
    assert every["tflite"]["float32"] == {"max_abs_rel": 1e-4} and every["js"]["float32"] == {"max_abs_rel": 1e-4}
    (tmp_path / "s.toml").write_text("[budgets.tflite.int8]\ntop1_agreement = 0.9\ncosine = 0.5\n")
    merged = captured(config=tmp_path / "s.toml", budgets={"tflite": {"int8": {"cosine": 0.98}}}).cfg.budgets
    assert merged == {"tflite": {"int8": {"top1_agreement": 0.9, "cosine": 0.98}}}


def test_target_flags_keep_their_cli_names(captured):
    cfg = captured(js_format="layers", js_backends="cpu,wasm", no_container=True, base_image="example/serving:1").cfg
    assert cfg.js.format == "layers" and cfg.js.backends == ("cpu", "wasm")
    assert cfg.serving.container is False and cfg.serving.base_image == "example/serving:1"
    assert captured(no_container=False).cfg.serving.container is True
    assert captured(js={"shard_bytes": 1024}, js_format="layers").cfg.js.shard_bytes == 1024


def test_other_keywords_are_the_cli_flags_and_settings(captured, tmp_path):
    got = captured(tmp_path / "m.keras", tmp_path / "d.npz", out=tmp_path / "o", jobs=1, parity_samples=10, seed=3,
                   trust_model=True, allow_unsafe_deserialization=True, prune=0.5, optimize={"epochs": 1})
    cfg = got.cfg
    assert (cfg.model, cfg.data, cfg.out) == (str(tmp_path / "m.keras"), str(tmp_path / "d.npz"), str(tmp_path / "o"))
    assert (cfg.jobs, cfg.parity_samples, cfg.seed, cfg.trust_model, cfg.allow_unsafe_deserialization) == (1, 10, 3, True, True)
    assert (cfg.optimize.prune, cfg.optimize.epochs) == (0.5, 1)
    assert got.named == {}  # files are recorded as given


# ---- objects instead of files ---------------------------------------------------------------------
def _fake_model(module: str, save=None):
    """An object that looks like a Keras model by its classes' module, as a real one would."""
    base = type("Model", (), {"__module__": module})
    return type("Functional", (base,), {"name": "fake", "save": save or (lambda self, p: Path(p).write_bytes(b"PK"))})()


def test_numpy_arrays_are_saved_for_the_build_and_removed(captured, tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    got = captured(data=x)
    assert got.files == {"data": True} and got.named == {"data": "in-memory array"}
    assert list(got.arrays) == ["x"] and np.array_equal(got.arrays["x"], x)  # one array: any key will do
    texts = captured(data={"text": np.array(["a", "b"]), "ids": [1, 2]})
    assert texts.named == {"data": "in-memory arrays (text, ids)"}
    assert texts.arrays["text"].dtype.kind == "U" and texts.arrays["ids"].tolist() == [1, 2]
    assert os.listdir(tmp_path / "tmp") == []  # the private folder is gone


@pytest.mark.parametrize("module, library", [("tf_keras.src.engine.training", "tf_keras"),
                                             ("keras.src.models.model", "keras3")])
def test_an_in_memory_model_is_saved_and_trusted(captured, tmp_path, monkeypatch, module, library):
    got = captured(_fake_model(module))
    assert got.named == {"model": f"in-memory {library} model 'fake'"} and got.files == {"model": True}
    assert got.cfg.model.endswith("model.keras") and got.cfg.trust_model is True
    # trusted: no sandbox needed, so a machine without bubblewrap does not refuse it
    monkeypatch.setattr(pipeline.sandbox, "require", lambda what: pytest.fail("the sandbox was consulted"))
    assert pipeline.sandboxing(got.cfg, SimpleNamespace(kind="keras_zip", location=got.cfg.model)) is False
    assert captured(_fake_model(module), trust_model=False).cfg.trust_model is False  # asked for: sandboxed
    assert os.listdir(tmp_path / "tmp") == []


def test_errors_name_the_in_memory_objects_not_their_temporary_files(captured, tmp_path, monkeypatch):
    def refuse(cfg, rep, *, named=None):
        raise MissingRuntimeError(f"{cfg.model}: refusing; {cfg.data}[x]: bad shape")

    monkeypatch.setattr(pipeline, "run", refuse)
    with pytest.raises(MissingRuntimeError) as info:
        deploykit.build(_fake_model("tf_keras.src.engine.training"), np.zeros((2, 4)), trust_model=False)
    assert info.value.message == "in-memory tf_keras model 'fake': refusing; in-memory array[x]: bad shape"
    assert os.listdir(tmp_path / "tmp") == []


def test_a_model_that_cannot_be_saved_is_bad_input(captured, tmp_path):
    def fails(self, path):
        raise NotImplementedError("subclassed models need get_config")

    with pytest.raises(BadInputError, match="in-memory tf_keras model cannot be saved as .keras .subclassed models"):
        captured(_fake_model("tf_keras.src.engine.training", save=fails))
    assert os.listdir(tmp_path / "tmp") == []


def test_a_real_lambda_model_is_refused_by_its_name(keras, tmp_path, monkeypatch):
    """The allow-list still applies to what an in-memory model saves; the message names the model."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    x = keras.Input((4,), name="x")
    model = keras.Model(x, keras.layers.Lambda(lambda t: t * 2, name="double")(x), name="doubler")
    with pytest.raises(SecurityError) as info:
        deploykit.build(model, out=str(tmp_path / "out"))
    assert info.value.message.startswith("in-memory tf_keras model 'doubler': refused: layer 'double'")
    assert os.listdir(tmp_path) == []


# ---- real builds: the README's example, and Keras 3 with named arrays -------------------------------
def readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Python API section holds one python example"
    return blocks[0]


@pytest.fixture(scope="module")
def readme_build(tmp_path_factory):
    """Run the README's example as written, in a folder of its own (it writes `tiny-out` there)."""
    from deploykit.tfenv import tensorflow

    tensorflow()  # as every test does: TensorFlow first imported with TF_USE_LEGACY_KERAS=1
    folder = tmp_path_factory.mktemp("readme")
    (folder / "tmp").mkdir()
    cwd, tempdir = os.getcwd(), tempfile.tempdir
    os.chdir(folder)
    tempfile.tempdir = str(folder / "tmp")
    try:
        namespace: dict = {"__name__": "__readme__"}
        exec(compile(readme_example(), f"{README}:Python API", "exec"), namespace)  # noqa: S102
    finally:
        os.chdir(cwd)
        tempfile.tempdir = tempdir
    return folder, namespace


@pytest.mark.slow
def test_the_readme_example_builds_an_in_memory_model_from_arrays(readme_build):
    from deploykit import manifest as manifest_mod

    folder, ns = readme_build
    doc = ns["manifest"]
    manifest_mod.check(doc)
    assert doc["passed"] and [a["variant"] for a in doc["artifacts"]] == ["float32", "float16"]
    assert doc["source"]["kind"] == "in_memory" and doc["source"]["location"] == "in-memory tf_keras model 'tiny'"
    assert doc["data"]["origin"] == "in_memory" and doc["data"]["rows"] == 64
    assert doc["config"]["settings"]["model"] == "in-memory tf_keras model 'tiny'"
    assert doc["config"]["settings"]["latency"]["enabled"] is False
    assert doc["isolation"]["trusted_model"] is True
    assert all(a["latency"] is None for a in doc["artifacts"])
    assert manifest_mod.read(folder / "tiny-out")["source"] == doc["source"]
    assert os.listdir(folder / "tmp") == []  # the saved model and arrays are removed


@pytest.mark.slow
def test_validate_report_and_publish_return_their_results(readme_build):
    folder, _ = readme_build
    out = folder / "tiny-out"
    checked = deploykit.validate(out)
    assert checked["passed"] and {a["variant"] for a in checked["artifacts"]} == {"float32", "float16"}
    made = deploykit.report(out)
    assert made.folder == out and made.html.is_file() and made.md.is_file() and made.json.is_file()
    assert made.document["build"]["source"]["kind"] == "in_memory"
    published = deploykit.publish(out, folder / "published")
    assert published["status"] == "published" and (folder / "published" / "SHA256SUMS").is_file()
    assert deploykit.publish(out, folder / "published")["status"] == "unchanged"


@pytest.mark.slow
def test_a_keras3_model_with_a_dict_of_arrays(tmp_path, monkeypatch):
    from deploykit.tfenv import keras3

    keras = keras3()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    a, b = keras.Input((4,), name="a"), keras.Input((2,), name="b")
    model = keras.Model({"a": a, "b": b}, keras.layers.Dense(3, name="y")(keras.layers.Concatenate()([a, b])), name="k3")
    rng = np.random.default_rng(0)
    data = {"a": rng.normal(size=(16, 4)).astype("float32"), "b": rng.normal(size=(16, 2)).astype("float32")}
    doc = deploykit.build(model, data, targets=["tflite"], quantize="float32", latency=False, out=tmp_path / "out")
    assert doc["passed"] and doc["source"]["keras"] == "keras3" and doc["source"]["kind"] == "in_memory"
    assert [t["name"] for t in doc["contract"]["inputs"]] == ["a", "b"]
    assert doc["data"]["path"] == "in-memory arrays (a, b)"
    assert sorted(os.listdir(tmp_path)) == ["out"]

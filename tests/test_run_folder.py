"""A `deploykit train` run folder as a build input (README: Fit stage, Export).

The chief of a run writes `RUN/validation.npz` (the validation inputs by model input name) and
records it in `metrics.json`; `deploykit build --model RUN` (or `--model RUN/model.keras`) takes the
run's model and that validation split as parity and calibration data, and the manifest records the
run. An older run folder without the file builds with generated data and a warning; a malformed or
hostile `metrics.json`, and a folder that is neither a SavedModel nor a run folder, are exit 2.

Real training and builds are `slow`; the export of each dataset kind and the hostile folders are fast.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deploykit.errors import BadInputError, SecurityError

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
RANDOM = "random values"  # in both the generated-data warnings (modelwork.RANDOM_DATA_WARNING and the run folder's)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(DATA), str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploykit", *args], capture_output=True, text=True, timeout=timeout,
                          env=_env(), stdin=subprocess.DEVNULL, cwd=ROOT)


def digit_datasets():
    """A `module:function` dataset: the digits as (train, valid) tf.data.Datasets keyed by input name."""
    from deploykit.intake.example import digits
    from deploykit.tfenv import tensorflow

    tf = tensorflow()
    x, y, xv, yv = digits(0)
    return (tf.data.Dataset.from_tensor_slices(({"pixels": x}, y)).batch(32),
            tf.data.Dataset.from_tensor_slices(({"pixels": xv}, yv)).batch(32))


# ---------------------------------------------------------------- the run writes its validation split

@pytest.mark.parametrize("kind", ["example", "npz", "npz capped", "tfrecord", "module:function"])
def test_every_dataset_kind_exports_its_validation_inputs(tmp_path, kind):
    from deploykit.arrays import read_npz
    from deploykit.digests import file_sha256
    from deploykit.fit.config import make_train_config
    from deploykit.fit.export import export_validation
    from deploykit.fit.trainer import build_model
    from deploykit.intake.example import digits

    settings: dict = {}
    rows = 1797 - int(1797 * 0.8)  # the digits' validation split
    if kind.startswith("npz"):
        x, y, xv, yv = digits(0)
        np.savez(tmp_path / "d.npz", x=np.concatenate([x, xv]), y=np.concatenate([y, yv]))
        settings = {"dataset": str(tmp_path / "d.npz")}
        if kind == "npz capped":
            settings["export_validation_rows"], rows = 100, 100
    elif kind == "tfrecord":
        from tests.test_fit import TFRECORD_FEATURES, _digits_tfrecords

        settings = {"dataset": _digits_tfrecords(tmp_path), "features": TFRECORD_FEATURES}
        rows = len(range(0, 1437, 5))  # every 5th record held out
    elif kind == "module:function":
        settings = {"dataset": "tests.test_run_folder:digit_datasets"}
    cfg = make_train_config(settings)
    record = export_validation(cfg, build_model(cfg), tmp_path)
    arrays = read_npz(tmp_path / "validation.npz")  # the build's own safe reader: no pickle
    assert list(arrays) == ["pixels"] and arrays["pixels"].shape == (rows, 8, 8, 1)
    assert arrays["pixels"].dtype == np.float32
    assert record == {"path": str(tmp_path / "validation.npz"), "rows": rows,
                      "sha256": file_sha256(tmp_path / "validation.npz"), "inputs": ["pixels"]}
    assert not list(tmp_path.glob("*.partial"))


def test_string_inputs_are_saved_as_bytes_and_nul_endings_are_not_written(tmp_path, monkeypatch):
    import deploykit.fit.data as fit_data
    from deploykit.arrays import read_npz
    from deploykit.fit.config import make_train_config
    from deploykit.fit.export import export_validation

    text = np.array([b"a b", b"c", b""], dtype=object)  # what tf.string features come back as
    monkeypatch.setattr(fit_data, "validation_inputs", lambda cfg, model, rows: {"text": text})
    record = export_validation(make_train_config({}), None, tmp_path)
    assert record["rows"] == 3 and read_npz(tmp_path / "validation.npz")["text"].tolist() == [b"a b", b"c", b""]
    monkeypatch.setattr(fit_data, "validation_inputs", lambda cfg, model, rows: {"text": np.array([b"x\0"], dtype=object)})
    record = export_validation(make_train_config({}), None, tmp_path)
    assert record["path"] is None and "NUL" in record["reason"]
    assert not (tmp_path / "validation.npz").exists()  # not the previous call's rows either


def test_export_validation_rows_must_not_be_negative():
    from deploykit.fit.config import make_train_config

    with pytest.raises(BadInputError, match=r"^export_validation_rows:"):
        make_train_config({"export_validation_rows": -1})


# ---------------------------------------------------------------- train -> build, for real (slow)

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished single-process run of the bundled example (strategy none: the quickest)."""
    from deploykit.fit import train

    out = tmp_path_factory.mktemp("run") / "RUN"
    m = train(None, out=out, strategy="none", epochs=2, tensorboard=False)
    assert m["artifacts"]["validation"]["rows"] == 360 and (out / "validation.npz").is_file()
    return out


@pytest.mark.slow
def test_train_with_local_workers_then_build_the_run_folder(tmp_path):
    """The README walk-through (Fit stage, Building a run), with 2 epochs instead of 5:
    `deploykit train --local-workers 2 --out RUN`, then `deploykit build --model RUN --target tflite
    --quantize float32,int8`: int8 calibrates on the run's validation split and passes."""
    run = tmp_path / "RUN"
    r = _cli("train", "--local-workers", "2", "--epochs", "2", "--out", str(run), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads(r.stdout)
    assert metrics["strategy"] == "multi_worker" and metrics["replicas"] == 2
    assert metrics["artifacts"]["validation"]["rows"] == 360 and (run / "validation.npz").is_file()
    out = tmp_path / "out"
    r = _cli("build", "--model", str(run), "--target", "tflite", "--quantize", "float32,int8", "--no-latency",
             "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert doc["passed"] and {a["variant"] for a in doc["artifacts"]} == {"float32", "int8"}
    assert doc["source"]["kind"] == "keras_zip" and doc["source"]["location"] == str(run / "model.keras")
    data = doc["data"]
    assert data["origin"] == "training" and data["path"] == str(run / "validation.npz")
    assert data["rows"] == 360 and data["calibration_rows"] == 200 and data["warnings"] == []
    assert RANDOM not in r.stderr and "validation split" in r.stderr
    t = doc["training"]
    assert t["run_folder"] == str(run) and t["strategy"] == "multi_worker" and t["replicas"] == 2
    assert t["epochs_completed"] == 2 and "accuracy" in t["final_validation"]
    assert t["validation"]["rows"] == 360 and t["validation"]["sha256"] == data["sha256"]
    assert json.loads((out / "manifest.json").read_text())["training"]["run_folder"] == str(run)


@pytest.mark.slow
def test_model_file_of_a_run_folder_uses_its_validation_split(run_dir, tmp_path):
    import deploykit

    doc = deploykit.build(model=str(run_dir / "model.keras"), target="tflite", quantize="float32,int8",
                          out=str(tmp_path / "out"), latency=False)
    assert doc["passed"] and doc["data"]["origin"] == "training"
    assert doc["data"]["path"] == str(run_dir / "validation.npz") and doc["data"]["calibration_rows"] == 200
    assert not any(RANDOM in w for w in doc["data"]["warnings"])
    assert doc["training"]["run_folder"] == str(run_dir) and doc["training"]["strategy"] == "none"


@pytest.mark.slow
def test_data_flag_wins_over_the_run_split_and_the_run_is_still_recorded(run_dir, tmp_path):
    import deploykit
    from deploykit.intake.example import digits

    _, _, xv, _ = digits(5)
    np.savez(tmp_path / "mine.npz", pixels=xv[:50])
    doc = deploykit.build(model=str(run_dir), data=str(tmp_path / "mine.npz"), target="tflite", quantize="float32",
                          out=str(tmp_path / "out"), latency=False)
    assert doc["data"]["origin"] == "file" and doc["data"]["path"] == str(tmp_path / "mine.npz")
    assert doc["data"]["rows"] == 50
    assert doc["training"]["run_folder"] == str(run_dir) and doc["training"]["validation"] is None


@pytest.mark.slow
def test_old_run_folder_without_validation_npz_warns_and_builds(run_dir, tmp_path):
    """A run trained by an older deploykit: no validation.npz, no artifacts.validation."""
    import deploykit

    old = tmp_path / "OLD"
    old.mkdir()
    shutil.copy2(run_dir / "model.keras", old / "model.keras")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    del metrics["artifacts"]["validation"]
    (old / "metrics.json").write_text(json.dumps(metrics))
    doc = deploykit.build(model=str(old), target="tflite", quantize="float32", out=str(tmp_path / "out"),
                          latency=False)
    assert doc["passed"] and doc["data"]["origin"] == "generated"
    warning = doc["data"]["warnings"][0]
    assert str(old) in warning and "older deploykit" in warning
    assert "deploykit train" in warning and "--data" in warning  # how to fix it
    assert doc["training"]["run_folder"] == str(old) and doc["training"]["validation"] is None


# ---------------------------------------------------------------- hostile and foreign folders (fast)

GOOD_METRICS = {"strategy": "none", "replicas": 1, "epochs_completed": 1, "final_validation": {"accuracy": 0.9},
                "artifacts": {"validation": {"path": "RUN/validation.npz", "rows": 4, "sha256": "0" * 64}}}


def _fake_run(tmp_path: Path, metrics) -> Path:
    """A run folder whose model is never reached: resolution must stop first."""
    run = tmp_path / "RUN"
    run.mkdir()
    (run / "model.keras").write_bytes(b"PK\x03\x04 not really a model")
    if isinstance(metrics, bytes):
        (run / "metrics.json").write_bytes(metrics)
    elif metrics is not None:
        (run / "metrics.json").write_text(json.dumps(metrics))
    return run


HOSTILE = {
    "not JSON": (b"{not json", "not valid JSON"),
    "not UTF-8": (b"\xff\xfe{}", "not valid JSON"),
    "empty": (b"", "not valid JSON"),
    "nested too deeply": (b"[" * 200_000, "not valid JSON"),
    "a list": (b"[1, 2]", "expected a JSON object"),
    "missing fields": ({"accuracy": 0.9}, "strategy: missing"),
    "unknown strategy": ({**GOOD_METRICS, "strategy": "warp"}, "strategy: expected one of"),
    "replicas as text": ({**GOOD_METRICS, "replicas": "two"}, "replicas: expected a whole number"),
    "replicas as bool": ({**GOOD_METRICS, "replicas": True}, "replicas: expected a whole number"),
    "final_validation a list": ({**GOOD_METRICS, "final_validation": [0.9]}, "final_validation: expected a table"),
    "final_validation text": ({**GOOD_METRICS, "final_validation": {"accuracy": "high"}}, "final_validation:"),
    "artifacts a string": ({**GOOD_METRICS, "artifacts": "all"}, "artifacts: expected a table"),
    "validation rows negative": ({**GOOD_METRICS, "artifacts": {"validation": {"path": None, "rows": -1}}},
                                 "artifacts.validation.rows:"),
    "validation sha256 forged": ({**GOOD_METRICS, "artifacts": {"validation": {"path": "x", "rows": 1, "sha256": "../x"}}},
                                 "artifacts.validation.sha256:"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_metrics_json_is_exit_2_naming_the_file(tmp_path, case):
    import deploykit

    content, fragment = HOSTILE[case]
    run = _fake_run(tmp_path, content)
    with pytest.raises(BadInputError) as info:
        deploykit.build(model=str(run), target="tflite", out=str(tmp_path / "out"), latency=False)
    assert info.value.exit_code == 2
    assert info.value.message.startswith(str(run / "metrics.json")) and fragment in info.value.message, info.value.message
    assert not (tmp_path / "out").exists()


def test_huge_metrics_json_is_refused_before_it_is_read(tmp_path):
    from deploykit.intake import run as runs

    run = _fake_run(tmp_path, None)
    with (run / "metrics.json").open("wb") as fh:
        fh.truncate(runs.METRICS_MAX_BYTES + 1)  # sparse: nothing written, nothing to read
    with pytest.raises(BadInputError, match=r"bytes, more than a run's metrics.json can be") as info:
        runs.resolve(str(run), None)
    assert info.value.message.startswith(str(run / "metrics.json"))


def test_metrics_json_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    from deploykit.intake import run as runs

    run = _fake_run(tmp_path, None)
    os.mkfifo(run / "metrics.json")
    with pytest.raises(BadInputError, match="not a regular file"):
        runs.resolve(str(run), None)


def test_hostile_metrics_json_from_the_command_line(tmp_path):
    run = _fake_run(tmp_path, b"\x00\x01garbage")
    r = _cli("build", "--model", str(run), "--target", "tflite", "--out", str(tmp_path / "out"), "--json", timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    message = json.loads(r.stdout)["error"]["message"]
    assert message.startswith(str(run / "metrics.json")) and "not valid JSON" in message


@pytest.mark.parametrize("contents", [["notes.txt"], ["model.keras"]])
def test_folder_that_is_neither_a_saved_model_nor_a_run_folder_is_exit_2(tmp_path, contents):
    folder = tmp_path / "stuff"
    folder.mkdir()
    for name in contents:
        (folder / name).write_text("x")
    r = _cli("build", "--model", str(folder), "--target", "tflite", "--out", str(tmp_path / "out"), "--json", timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    message = json.loads(r.stdout)["error"]["message"]
    assert message.startswith(str(folder)) and "not a SavedModel" in message
    assert "run folder" in message and "metrics.json" in message
    if "model.keras" in contents:  # the model file it holds can be built directly
        assert f"--model {folder / 'model.keras'}" in message
    assert not (tmp_path / "out").exists()


def test_run_folder_without_model_keras_is_exit_2(tmp_path):
    from deploykit.intake import run as runs

    run = _fake_run(tmp_path, GOOD_METRICS)
    (run / "model.keras").unlink()
    with pytest.raises(BadInputError, match=r"run folder has no model.keras") as info:
        runs.resolve(str(run), None)
    assert info.value.message.startswith(str(run))


@pytest.mark.parametrize("name", ["model.keras", "validation.npz", "metrics.json"])
def test_symbolic_links_in_a_run_folder_are_refused(tmp_path, name):
    import deploykit

    run = _fake_run(tmp_path, GOOD_METRICS)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes((run / name).read_bytes() if (run / name).exists() else b"PK")
    (run / name).unlink(missing_ok=True)
    (run / name).symlink_to(elsewhere)
    with pytest.raises(SecurityError, match="symbolic link") as info:
        deploykit.build(model=str(run), target="tflite", out=str(tmp_path / "out"), latency=False)
    assert info.value.exit_code == 5 and str(run / name) in info.value.message


def test_validation_npz_that_is_not_the_runs_is_exit_2(tmp_path):
    import deploykit

    run = _fake_run(tmp_path, GOOD_METRICS)  # records sha256 000...0
    np.savez(run / "validation.npz", pixels=np.zeros((4, 8, 8, 1), np.float32))
    with pytest.raises(BadInputError, match="does not match the sha256") as info:
        deploykit.build(model=str(run), target="tflite", out=str(tmp_path / "out"), latency=False)
    assert info.value.message.startswith(str(run / "validation.npz")) and "--data" in info.value.message


def test_model_file_beside_a_foreign_metrics_json_builds_as_before(tmp_path):
    """`--model DIR/model.keras` where DIR holds some other tool's metrics.json: not a run folder,
    and not an error of its own; the model file is checked as any model file is."""
    import deploykit
    from deploykit.intake import run as runs

    run = _fake_run(tmp_path, {"accuracy": 0.93, "tool": "someone else's"})
    assert runs.resolve(str(run / "model.keras"), None) is None
    with pytest.raises(BadInputError) as info:
        deploykit.build(model=str(run / "model.keras"), target="tflite", out=str(tmp_path / "out"), latency=False)
    assert info.value.message.startswith(str(run / "model.keras"))  # the model's own problem, as today


def test_resolution_needs_no_tensorflow(tmp_path):
    """`--model RUN` is resolved in the build's own process, which never imports TensorFlow."""
    run = _fake_run(tmp_path, GOOD_METRICS)
    (run / "validation.npz").write_bytes(b"x")
    code = ("import sys, json; from deploykit.intake import run as runs\n"
            f"r = runs.resolve({str(run)!r}, None)\n"
            "print(json.dumps([str(r.model), str(r.data), 'tensorflow' in sys.modules]))")
    sha = __import__("hashlib").sha256(b"x").hexdigest()
    metrics = {**GOOD_METRICS, "artifacts": {"validation": {"path": "x", "rows": 4, "sha256": sha}}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [str(run / "model.keras"), str(run / "validation.npz"), False]


def test_optional_facts_are_kept_only_when_they_check_out(tmp_path):
    """A diverged run's NaN loss is kept (written as null); optional facts of the wrong type or too
    deep never reach the manifest; a huge integer is no crash."""
    from deploykit.intake import run as runs

    deep: list = []
    for _ in range(50):
        deep = [deep]
    metrics = {**GOOD_METRICS, "final_validation": {"loss": float("nan"), "accuracy": 0.1},
               "wall_time_s": 10 ** 400, "fit_time_s": "fast", "config": {"x": deep},
               "history": [{"epoch": 1, "loss": 1.0}, "two"], "num_workers": 2}
    run = _fake_run(tmp_path, None)
    (run / "metrics.json").write_text(json.dumps(metrics))
    r = runs.resolve(str(run), None)
    assert r.data is None and "older deploykit" not in r.warning and "it is missing" in r.warning
    assert r.record["num_workers"] == 2 and r.record["wall_time_s"] == 10 ** 400
    assert "fit_time_s" not in r.record and "config" not in r.record and "history" not in r.record
    assert r.record["final_validation"]["accuracy"] == 0.1

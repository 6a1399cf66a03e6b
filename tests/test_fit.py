"""The distributed fit stage, for real: strategies in-process and as local processes on 127.0.0.1,
a worker killed mid-run and recovered from the backup, bad configs, exported signatures, and the
emitted Kubeflow TFJob manifests checked against the vendored CRD schema.

Training tests are `slow` (about 2 to 3 minutes in all on 2 cores); config and manifest tests are fast.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deploykit.errors import BadInputError

DATA = Path(__file__).resolve().parent / "data"
ROOT = Path(__file__).resolve().parent.parent
# The fault test and its uninterrupted twin: 3 epochs of 40 steps of 64 digits on 2 workers.
MW_SETTINGS = {"strategy": "multi_worker", "epochs": 3, "steps_per_epoch": 40, "batch_size": 64, "seed": 0}


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(DATA), str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _train_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploykit", "train", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env(), stdin=subprocess.DEVNULL, cwd=ROOT)


def _toml(path: Path, settings: dict) -> Path:
    lines = ["[train]"]
    for k, v in settings.items():
        lines.append(f"{k} = {json.dumps(v)}")
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- config (fast, no TensorFlow)

def test_config_reads_toml_and_yaml(tmp_path):
    from deploykit.fit.config import load_train_config

    t = load_train_config(_toml(tmp_path / "t.toml", {"epochs": 3, "strategy": "one_device", "metrics": ["accuracy"]}))
    (tmp_path / "t.yaml").write_text("train:\n  epochs: 3\n  strategy: one_device\n  metrics: [accuracy]\n")
    y = load_train_config(tmp_path / "t.yaml")
    assert t == y and t.epochs == 3 and t.strategy == "one_device" and not t.backup_enabled
    assert load_train_config(None, strategy="multi_worker").backup_enabled  # on by default for multi-worker


@pytest.mark.parametrize("settings, field", [
    ({"strategy": "hogwild"}, "strategy"),
    ({"epochs": 0}, "epochs"),
    ({"epochs": "three"}, "epochs"),
    ({"batch_size": True}, "batch_size"),
    ({"model": "not a builder"}, "model"),
    ({"dataset": "missing.npz"}, "dataset"),
    ({"optimizer": "adamax9"}, "optimizer"),
    ({"shard_policy": "random"}, "shard_policy"),
    ({"learning_rate_typo": 1}, "learning_rate_typo"),
])
def test_bad_fields_name_the_field(tmp_path, settings, field):
    from deploykit.fit.config import load_train_config

    with pytest.raises(BadInputError) as err:
        load_train_config(_toml(tmp_path / "bad.toml", settings))
    assert field in err.value.message and err.value.exit_code == 2


def test_unknown_strategy_is_exit_2_from_the_command(tmp_path):
    r = _train_cli("--config", str(_toml(tmp_path / "bad.toml", {"strategy": "hogwild"})), "--out", str(tmp_path / "run"), "--json")
    assert r.returncode == 2, r.stderr
    assert "strategy" in json.loads(r.stdout)["error"]["message"]


# ---------------------------------------------------------------- TFJob manifests (fast)

@pytest.mark.parametrize("strategy, replica_types", [("multi_worker", {"Worker"}), ("parameter_server", {"Chief", "PS", "Worker"})])
def test_emitted_tfjob_validates_against_the_crd_schema(tmp_path, strategy, replica_types):
    import jsonschema
    import yaml

    from deploykit.fit import train

    result = train(None, out="run1", emit_k8s=tmp_path / "k8s", local_workers=3, strategy=strategy)
    docs = list(yaml.safe_load_all(Path(result["manifests"][0]).read_text()))
    assert json.loads(Path(result["manifests"][1]).read_text()) == docs
    schema = json.loads((DATA / "tfjob-crd-schema.json").read_text())
    tfjob = [d for d in docs if d["kind"] == "TFJob"]
    assert len(tfjob) == 1
    jsonschema.validate(tfjob[0], schema)
    specs = tfjob[0]["spec"]["tfReplicaSpecs"]
    assert set(specs) == replica_types and specs["Worker"]["replicas"] == 3
    container = specs["Worker"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["deploykit", "train"] and container["image"] == result["image"]
    settings = json.loads(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["train.json"])
    assert settings["strategy"] == strategy
    # the schema is not a rubber stamp
    broken = json.loads(json.dumps(tfjob[0]))
    broken["spec"]["tfReplicaSpecs"]["Workers"] = broken["spec"]["tfReplicaSpecs"].pop("Worker")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


# ---------------------------------------------------------------- training (slow)

@pytest.mark.slow
def test_mirrored_in_process_trains_and_exports_the_training_signature(tmp_path, tf, keras):
    import numpy as np

    from deploykit.fit import train
    from deploykit.intake.example import digits

    m = train(None, out=tmp_path / "run", epochs=3)
    assert m["strategy"] == "mirrored" and m["replicas"] >= 1 and m["epochs_completed"] == 3
    assert m["final_validation"]["accuracy"] > 0.8
    assert m["examples_per_sec"] > 0 and m["wall_time_s"] > m["fit_time_s"] > 0
    assert [h["epoch"] for h in m["history"]] == [1, 2, 3]
    assert m["optimizer_iterations"] == 3 * m["steps_per_epoch"]
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["final_validation"] == m["final_validation"]
    assert list((tmp_path / "run" / "checkpoints").glob("best*")), "best checkpoint not written"
    assert (tmp_path / "run" / "tensorboard").is_dir()
    sig = m["artifacts"]["signature"]
    assert sig["inputs"] == {"pixels": {"dtype": "float32", "shape": [None, 8, 8, 1]}}
    assert sig["outputs"] == {"digit": {"dtype": "float32", "shape": [None, 10]}}
    # the SavedModel serves what model.keras predicts
    _, _, x_valid, _ = digits(0)
    served = tf.saved_model.load(str(tmp_path / "run" / "saved_model")).signatures["serving_default"](
        pixels=tf.constant(x_valid[:16]))["digit"].numpy()
    reference = keras.models.load_model(tmp_path / "run" / "model.keras").predict(x_valid[:16], verbose=0)
    np.testing.assert_allclose(served, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["none", "one_device"])
def test_npz_dataset_with_single_process_strategies(tmp_path, strategy):
    import numpy as np

    from deploykit.fit import train
    from deploykit.intake.example import digits

    x, y, _, _ = digits(1)
    np.savez(tmp_path / "digits.npz", x=x, y=y)
    cfg = _toml(tmp_path / "t.toml", {"dataset": "digits.npz", "strategy": strategy, "epochs": 2, "batch_size": 32})
    m = train(cfg, out=tmp_path / "run")  # the npz path resolves against the config file's folder
    assert m["strategy"] == strategy and m["replicas"] == 1 and m["epochs_completed"] == 2
    assert m["steps_per_epoch"] == int(len(x) * 0.8) // 32
    np.savez(tmp_path / "bad.npz", features=x, y=y)
    with pytest.raises(BadInputError, match=r"^dataset: .*'x' and 'y'"):
        train(_toml(tmp_path / "b.toml", {"dataset": "bad.npz", "strategy": strategy}), out=tmp_path / "run2")


@pytest.mark.slow
@pytest.mark.parametrize("settings, field, fragment", [
    ({"model": "no_such_module:build"}, "model", "cannot import"),
    ({"model": "fitmods:raising_builder"}, "model", "blew up on purpose"),
    ({"model": "fitmods:not_a_model"}, "model", "not a tf_keras Model"),
    ({"dataset": "fitmods:mismatched_dataset"}, "dataset", "shape"),
])
def test_bad_builders_and_datasets_are_exit_2(tmp_path, settings, field, fragment):
    r = _train_cli("--config", str(_toml(tmp_path / "bad.toml", {"epochs": 1, **settings})),
                   "--out", str(tmp_path / "run"), "--json")
    assert r.returncode == 2, r.stderr[-2000:]
    message = json.loads(r.stdout)["error"]["message"]
    assert message.startswith(f"{field}:") and fragment in message, message


def _when_logged(log: Path, text: str, proc, action) -> None:
    """Run `action()` once `text` is in a task's log (RUN/logs/NAME.log keeps every line of the task,
    epoch beginnings included; the console shows only the chief's lines, and no beginnings)."""
    while proc.poll() is None:
        if log.exists() and text in log.read_text(errors="replace").split("--- attempt ")[-1]:
            action()
            return
        time.sleep(0.05)


@pytest.fixture(scope="module")
def mw_baseline(tmp_path_factory):
    """An uninterrupted 2-worker run: the multi-worker test and the fault test's reference."""
    from deploykit.fit import train

    out = tmp_path_factory.mktemp("mw") / "run"
    return out, train(None, out=out, local_workers=2, **MW_SETTINGS)


@pytest.mark.slow
def test_multi_worker_with_two_local_processes(mw_baseline):
    out, m = mw_baseline
    assert m["strategy"] == "multi_worker" and m["replicas"] == 2 and m["num_workers"] == 2
    assert m["per_replica_batch_size"] == 32 and m["shard_policy"] == "data"
    assert m["epochs_completed"] == 3 and not m["resumed"] and m["launcher"]["restarts"] == 0
    assert m["optimizer_iterations"] == 3 * 40
    assert m["final_validation"]["accuracy"] > 0.9
    logs = {p.name: p.read_text() for p in (out / "logs").glob("*.log")}
    assert set(logs) == {"worker-0.log", "worker-1.log"}
    assert all("epoch 3/3 end" in text for text in logs.values())
    assert (out / "saved_model").is_dir() and (out / "model.keras").is_file()


@pytest.mark.slow
def test_killed_worker_is_restarted_and_the_run_resumes_from_the_backup(tmp_path, mw_baseline):
    _, baseline = mw_baseline
    out = tmp_path / "run"
    cfg = _toml(tmp_path / "mw.toml", MW_SETTINGS)
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploykit", "train", "--config", str(cfg), "--out", str(out),
         "--local-workers", "2", "--max-restarts", "1", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    killed: dict = {}
    lines: list[str] = []

    def watch():
        for line in proc.stderr:
            lines.append(line)

    def kill():
        pid = json.loads((out / "workers.json").read_text())["pids"]["worker-1"]
        time.sleep(0.3)  # mid-epoch, not at its edge
        os.kill(pid, signal.SIGKILL)
        killed["pid"] = pid

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    threading.Thread(target=_when_logged, args=(out / "logs" / "worker-1.log", "epoch 2/3 begin", proc, kill),
                     daemon=True).start()
    stdout = proc.stdout.read()
    proc.wait(300)
    watcher.join(10)
    log = "".join(lines)
    assert killed, "worker-1 never reached epoch 2:\n" + log[-3000:]
    assert proc.returncode == 0, log[-3000:]
    m = json.loads(stdout)
    assert m["launcher"]["restarts"] == 1
    failure = m["launcher"]["failures"][0]
    assert failure["task"] == "worker-1" and failure["pid"] == killed["pid"] and "SIGKILL" in failure["status"]
    assert f"worker-1 (pid {killed['pid']}) died: killed by SIGKILL" in log
    # resumed, not restarted: the second attempt starts at epoch 2 and the counters continue
    assert m["resumed"] and m["first_epoch_this_run"] == 2
    assert "resumed from backup at epoch 2/3" in log
    assert m["epochs_completed"] == 3 and [h["epoch"] for h in m["history"]] == [1, 2, 3]
    assert m["optimizer_iterations"] == baseline["optimizer_iterations"] == 3 * 40
    assert abs(m["final_validation"]["accuracy"] - baseline["final_validation"]["accuracy"]) <= 0.01


@pytest.mark.slow
def test_dead_worker_without_restarts_fails_clearly(tmp_path):
    cfg = _toml(tmp_path / "mw.toml", {**MW_SETTINGS, "epochs": 2})
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploykit", "train", "--config", str(cfg), "--out", str(out), "--local-workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    threading.Thread(target=_when_logged, args=(out / "logs" / "worker-0.log", "epoch 1/2 begin", proc, lambda: os.kill(
        json.loads((out / "workers.json").read_text())["pids"]["worker-0"], signal.SIGKILL)), daemon=True).start()
    lines = list(proc.stderr)
    proc.wait(120)
    log = "".join(lines)
    assert proc.returncode == 1, log[-3000:]
    assert "worker-0 (pid" in log and "killed by SIGKILL" in log and "--max-restarts" in log


@pytest.mark.slow
def test_parameter_server_one_chief_one_ps_two_workers(tmp_path):
    from deploykit.fit import train

    m = train(None, out=tmp_path / "run", local_workers=2, strategy="parameter_server", epochs=2, steps_per_epoch=20)
    assert m["strategy"] == "parameter_server" and m["num_workers"] == 2
    assert m["optimizer_iterations"] == 2 * 20 and m["epochs_completed"] == 2
    assert m["final_validation"]["accuracy"] > 0.5
    assert {p.name for p in (tmp_path / "run" / "logs").glob("*.log")} == {"chief.log", "ps-0.log", "worker-0.log", "worker-1.log"}
    assert m["artifacts"]["signature"]["inputs"] == {"pixels": {"dtype": "float32", "shape": [None, 8, 8, 1]}}
    # the coordinator (the chief) writes the validation split for `deploykit build --model RUN`
    assert m["artifacts"]["validation"]["rows"] == 360 and (tmp_path / "run" / "validation.npz").is_file()


# ---------------------------------------------------------------- the fit stage feeding a build

@pytest.mark.slow
def test_build_with_train_config_trains_then_builds(tmp_path):
    """`deploykit build --train-config`: the trained model is built, its validation rows are the
    parity data, and the run's metrics and model ship in the output and the manifest."""
    import numpy as np

    import deploykit
    from deploykit.intake.example import digits

    x, y, _, _ = digits(2)
    np.savez(tmp_path / "digits.npz", x=x, y=y)
    cfg = _toml(tmp_path / "t.toml", {"dataset": "digits.npz", "strategy": "one_device", "epochs": 2,
                                      "batch_size": 32, "tensorboard": False})
    out = tmp_path / "out"
    doc = deploykit.build(train_config=str(cfg), targets=("tflite",), quantize=("float32",), out=str(out),
                          latency={"enabled": False})
    assert doc["passed"] and doc["source"]["kind"] == "training" and doc["source"]["optimizable"]
    assert doc["data"]["origin"] == "training" and doc["data"]["parity_rows"] == len(x) - int(len(x) * 0.8)
    t = doc["training"]
    assert t["strategy"] == "one_device" and t["epochs_completed"] == 2 and "accuracy" in t["final_validation"]
    assert json.loads((out / "training" / "metrics.json").read_text())["epochs_completed"] == 2
    assert (out / "training" / "model.keras").is_file()


def test_build_refuses_model_and_train_config_together(tmp_path):
    import deploykit
    from deploykit.errors import BadInputError as Bad

    with pytest.raises(Bad, match="--model and --train-config"):
        deploykit.build(model="x.keras", train_config="t.toml", out=str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_build_with_a_multi_process_strategy_points_to_deploykit_train(tmp_path):
    cfg = _toml(tmp_path / "t.toml", {"strategy": "multi_worker", "epochs": 1})
    r = subprocess.run([sys.executable, "-m", "deploykit", "build", "--train-config", str(cfg), "--out",
                        str(tmp_path / "o"), "--json"], capture_output=True, text=True, env=_env(), timeout=300,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "--local-workers" in json.loads(r.stdout)["error"]["message"]
    assert not (tmp_path / "o").exists()


def _digits_tfrecords(folder: Path, files: int = 2) -> str:
    """The digits as serialized tf.Examples in `files` TFRecord files; returns their glob."""

    from deploykit.intake.example import digits
    from deploykit.tfenv import tensorflow

    tf = tensorflow()
    x, y, _, _ = digits(3)
    for f in range(files):
        with tf.io.TFRecordWriter(str(folder / f"digits-{f}.tfrecord")) as writer:
            for i in range(f, len(x), files):
                example = tf.train.Example(features=tf.train.Features(feature={
                    "pixels": tf.train.Feature(float_list=tf.train.FloatList(value=x[i].reshape(-1))),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(y[i])])),
                }))
                writer.write(example.SerializeToString())
    return str(folder / "digits-*.tfrecord")


TFRECORD_FEATURES = {"pixels": {"shape": [8, 8, 1], "dtype": "float32"}, "label": {"shape": [], "dtype": "int64"}}


@pytest.mark.slow
def test_tfrecord_files_with_a_feature_spec(tmp_path):
    from deploykit.fit import train
    from deploykit.fit.config import make_train_config

    pattern = _digits_tfrecords(tmp_path)
    cfg = make_train_config({"dataset": pattern, "features": TFRECORD_FEATURES, "strategy": "one_device",
                             "epochs": 3, "batch_size": 32, "tensorboard": False, "shard_policy": "file"})
    m = train(cfg, out=tmp_path / "run")
    rows = len(range(0, 1437)) - len(range(0, 1437, 5))  # every 5th record (validation_split 0.2) held out
    assert m["steps_per_epoch"] == rows // 32 and m["epochs_completed"] == 3
    assert m["final_validation"]["accuracy"] > 0.8


@pytest.mark.parametrize("settings, field", [
    ({"features": None}, "features"),
    ({"features": {**TFRECORD_FEATURES, "pixels": {"shape": [8, 8, 1], "dtype": "float64"}}}, "features.pixels.dtype"),
    ({"features": {**TFRECORD_FEATURES, "pixels": {"shape": [8, -1], "dtype": "float32"}}}, "features.pixels.shape"),
    ({"label": "target"}, "label"),
    ({"dataset": "nothing-*.tfrecord"}, "dataset"),
])
def test_bad_tfrecord_settings_name_the_field(tmp_path, settings, field):
    from deploykit.fit.config import make_train_config

    (tmp_path / "a.tfrecord").write_bytes(b"")
    base = {"dataset": str(tmp_path / "*.tfrecord"), "features": TFRECORD_FEATURES}
    with pytest.raises(BadInputError, match=rf"^{field}:"):
        make_train_config({**base, **settings}, base=tmp_path)

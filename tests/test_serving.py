"""The serving target end to end: model repository, image (Docker Engine API), hardened container,
parity over REST (row and columnar) and gRPC (Predict on tensors and on serialized tf.Examples),
the served metadata against the manifest's contract (a tampered contract fails `deploykit validate`),
latency and the load stage (1/4/16/64 clients over REST and gRPC, batching off and on; a failing level
is exit 3), push to a real local registry and pull back by digest, cleanup of every
container, atomic versions under a polling server, and the missing-daemon error.
(tests/test_serving_grpc.py: the gRPC API itself, against the stand-in and the real server.)

The base image is the STAND-IN (tests/serving_standin), pushed to the local registry and pinned by
digest, because tensorflow/serving cannot be pulled here. Needs scripts/setup-docker.sh (dockerd and
the registry on 127.0.0.1:5000); CI runs it from scripts/test.sh.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

import deploykit
from deploykit.targets.serving import container as ctr
from deploykit.targets.serving import repo as serving_repo
from deploykit.targets.serving.target import EXAMPLES_SIGNATURE, serialize_examples

from . import models
from .conftest import FAST, NO_LATENCY, ROOT, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.docker]
REGISTRY = "127.0.0.1:5000"


@pytest.fixture(scope="module")
def pinned_base(docker_client):
    """The stand-in image pushed to the local registry, referenced by digest (NAME@sha256:...)."""
    from .serving_standin import ensure_image

    tag = ensure_image()
    name, version = ctr.split_tag(tag)
    remote = f"{REGISTRY}/{name}"
    docker_client.images.get(tag).tag(remote, version)
    digest = ctr.push(docker_client, f"{remote}:{version}")
    return f"{remote}@{digest}"


@pytest.fixture(scope="module")
def example(tmp_path_factory, pinned_base):
    out = tmp_path_factory.mktemp("serving") / "out"
    push = f"{REGISTRY}/deploykit-test/digits:{uuid.uuid4().hex[:8]}"
    doc = deploykit.build(targets=("serving",), out=str(out), base_image=pinned_base, push=push, **FAST)
    yield out, doc, doc["artifacts"][0]
    _remove_image(doc)


OVERLOAD_TOML = """[latency]
warmup = 2
iterations = 20
max_seconds = 1.0
[serving]
load_batching = ["off"]
load_seconds = 0.25
"""


@pytest.fixture(scope="module")
def multi(tmp_path_factory, pinned_base, docker_client):
    """A multi-input, multi-output model built through the CLI FROM the stand-in with its overload
    TEST DOUBLE on (STANDIN_OVERLOAD_ABOVE=1: UNAVAILABLE to a request that arrives while another is
    in flight), with a load stage of 1 and 8 clients (batching off) and a load budget no server meets. Parity (sequential
    requests) passes on every backend; the load stage fails the build: exit 3, the failed build in
    OUT.failed. Yields (out.failed, manifest, artifact, the finished CLI process)."""
    folder = tmp_path_factory.mktemp("serving-multi")
    model = models.multi_io(folder / "multi.keras")
    np.savez(folder / "multi.npz", **models.multi_io_data(48))
    (folder / "overloaded").mkdir()
    (folder / "overloaded" / "Dockerfile").write_text(f"FROM {pinned_base}\nENV STANDIN_OVERLOAD_ABOVE=1\n")
    base, _ = docker_client.images.build(path=str(folder / "overloaded"), rm=True, forcerm=True,
                                         tag=f"deploykit-test/standin-overloaded:{uuid.uuid4().hex[:8]}")
    (folder / "overload.toml").write_text(OVERLOAD_TOML)
    proc = run_cli("build", "--model", str(model), "--data", str(folder / "multi.npz"), "--target", "serving",
                   "--out", str(folder / "out"), "--base-image", base.tags[0], "--config", str(folder / "overload.toml"),
                   "--load-levels", "1,8", "--budget", "serving.float32.load_p99_ms=0.001", "--json")
    failed = folder / "out.failed"
    doc = json.loads((failed / "manifest.json").read_text()) if (failed / "manifest.json").is_file() else None
    try:
        assert doc is not None, proc.stderr
        yield failed, doc, doc["artifacts"][0], proc
    finally:
        if doc is not None:
            _remove_image(doc)
        docker_client.images.remove(base.id, force=True)


def _remove_image(doc: dict) -> None:
    """The test images go (every tag); the cached stand-in base stays."""
    import docker

    c = ctr.client()
    image = doc["artifacts"][0]["details"]["image"]
    try:
        for tag in c.images.get(image["id"]).tags:
            c.images.remove(tag)
        c.images.remove(image["id"], force=True)
    except docker.errors.ImageNotFound:
        pass


PARITY_RUNTIME = "tf-serving[in-process,rest-row,rest-columnar,grpc,grpc-example]"


def test_example_passes_in_process_over_rest_and_over_grpc(example):
    _, doc, a = example
    assert doc["passed"] and a["passed"] and a["failures"] == []
    assert a["parity"]["runtime"] == PARITY_RUNTIME
    checks = a["details"]["checks"]
    # every backend judged: gRPC Predict on serving_default, and on tf_example (a predict-method signature)
    assert set(checks) == {"in-process", "rest-row", "rest-columnar", "grpc", "grpc-example"}
    for name, c in checks.items():
        assert c["max_abs_rel"] <= 1e-5, name
    assert set(a["parity"]["backends"]) == set(checks)
    assert a["parity"]["samples"] == doc["data"]["parity_rows"] > 0
    assert a["details"]["container"]["tf_example_method"] == "tensorflow/serving/predict"
    assert a["details"]["contract"] == doc["contract"]  # what the served metadata was checked against


def test_latency_and_load_through_the_container(example):
    """Sequential REST latency, then the load stage: 1/4/16/64 clients over REST and gRPC, in the
    container and in a second one started with --enable_batching (the stand-in's batcher)."""
    _, doc, a = example
    lat = a["latency"]
    assert lat["runtime"] == a["parity"]["runtime"] == PARITY_RUNTIME  # the same runtime; timed over REST
    assert a["details"]["container"]["network"] in ("host", "bridge")
    assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
    assert lat["load_ms"] > 0 and lat["first_inference_ms"] > 0 and lat["peak_rss_mb"] > 0
    load = lat["load"]
    assert load["plan"]["levels"] == [1, 4, 16, 64] and load["plan"]["batching"] == ["off", "on"]
    assert a["details"]["load_plan"] == doc["targets"]["serving"]["load_plan"]  # what `deploykit validate` repeats
    assert [(lv["api"], lv["batching"], lv["clients"]) for lv in load["levels"]] == [
        (api, batching, n) for batching in ("off", "on") for api in ("rest", "grpc") for n in (1, 4, 16, 64)]
    for lv in load["levels"]:
        assert lv["errors"] == 0 and lv["first_error"] is None, lv
        assert 0 < lv["requests"] <= load["plan"]["requests"] and lv["throughput_per_s"] > 0
        assert 0 < lv["p50_ms"] <= lv["p90_ms"] <= lv["p99_ms"] <= lv["max_ms"]
        assert lv["seconds"] < load["plan"]["seconds"] + 5  # bounded


def test_a_load_level_that_fails_is_exit_3(multi):
    """The overloaded server (see `multi`): the 8-client levels fail with errors over each API, every
    level breaks the load budget; exit 3, one line per failing level naming api, batching and level;
    parity passed, and the levels are in the failed build's manifest."""
    _, doc, a, proc = multi
    assert proc.returncode == 3, proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert error["code"] == "budget_failed" and error["exit_code"] == 3
    lines = error["message"].splitlines()
    for api, first in (("rest", "HTTP 503: "), ("grpc", "gRPC UNAVAILABLE: stand-in overload double")):
        failed = [ln for ln in lines if f"serving/float32: load {api}, batching off, 8 clients: " in ln
                  and "requests failed" in ln]
        assert len(failed) == 1 and f"(first: {first}" in failed[0], lines
        over = [ln for ln in lines if f"serving/float32: load {api}, batching off, 1 client: p99_ms = " in ln]
        assert len(over) == 1 and over[0].endswith("budget load_p99_ms <= 0.001"), lines
    assert doc["passed"] is False and a["passed"] is False and a["parity"]["passed"] is True
    assert {f["kind"] for f in a["failures"]} == {"load"}
    levels = {(lv["api"], lv["clients"]): lv for lv in a["latency"]["load"]["levels"]}
    assert sorted(levels) == [("grpc", 1), ("grpc", 8), ("rest", 1), ("rest", 8)]
    assert levels["rest", 1]["errors"] == levels["grpc", 1]["errors"] == 0  # multi-input rows, multi-output answers
    assert levels["rest", 8]["errors"] > 0 and levels["grpc", 8]["errors"] > 0
    assert a["budget"]["load_p99_ms"] == 0.001


def test_validate_fails_when_the_served_metadata_differs_from_the_contract(example, tmp_path):
    """A contract the repository does not serve (tampered here): GetModelStatus still says AVAILABLE,
    but gRPC GetModelMetadata and REST /metadata describe other dtypes and shapes, so the serving
    artifact fails (exit 3), naming each difference."""
    out, doc, _ = example
    copy = tmp_path / "out"
    shutil.copytree(out, copy, symlinks=True)
    manifest = json.loads((copy / "manifest.json").read_text())
    details = manifest["artifacts"][0]["details"]
    contract = details["contract"]
    output, inp = contract["outputs"][0], contract["inputs"][0]
    output["dtype"] = "int32"
    inp["shape"][1] = 9
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2))
    with pytest.raises(deploykit.errors.BudgetError) as caught:
        deploykit.validate(str(copy))
    message = str(caught.value)
    assert "serving/float32: the running server does not describe the manifest's contract" in message
    for api in ("gRPC GetModelMetadata", "REST /metadata"):
        assert (f"{api}: signature 'serving_default' output '{output['name']}' has dtype DT_FLOAT, "
                "the contract says DT_INT32") in message
        assert (f"{api}: signature 'serving_default' input '{inp['name']}' has shape [-1, 8, 8, 1], "
                "the contract says [-1, 9, 8, 1]") in message
        assert f"{api}: signature 'tf_example' output '{output['name']}' has dtype DT_FLOAT" in message
    assert caught.value.exit_code == 3


def test_repository_layout_config_and_warmup(example):
    out, _, a = example
    root = out / a["path"]
    name, version = a["details"]["model_name"], a["details"]["model_version"]
    assert name == "digits_cnn" and version == 1
    versions = [p.name for p in (root / "models" / name).iterdir()]
    assert versions == ["1"], "only the integer version folder (no staging leftovers)"
    config = (root / "models.config").read_text()
    assert f'name: "{name}"' in config and f'base_path: "/models/{name}"' in config
    assert "model_version_policy { latest { num_versions: 1 } }" in config
    assert "max_batch_size" in (root / "batching_parameters.txt").read_text()
    logs = serving_repo.read_warmup(root / "models" / name / "1" / "assets.extra" / serving_repo.WARMUP_FILE)
    assert len(logs) == a["details"]["warmup_requests"] > 0
    request = logs[0].predict_log.request
    assert request.model_spec.name == name and request.model_spec.signature_name == "serving_default"
    assert sorted(request.inputs) == sorted(a["details"]["inputs"]) == ["pixels"]
    assert set(a["details"]["signatures"]) == {"serving_default", EXAMPLES_SIGNATURE}


def test_dockerfile_and_image_labels(example, docker_client, pinned_base):
    out, _, a = example
    text = (out / a["path"] / "Dockerfile").read_text()
    assert text.splitlines()[2] == f"FROM {pinned_base}"
    assert "USER 10001:10001" in text and "AVAILABLE" in text and "HEALTHCHECK" in text
    image = a["details"]["image"]
    assert image["base_image"] == pinned_base and image["base_digest"] == pinned_base.split("@")[1]
    attrs = docker_client.images.get(image["id"]).attrs
    labels = attrs["Config"]["Labels"]
    assert labels["org.deploykit.model.sha256"] == a["details"]["model_sha256"]
    assert labels["org.opencontainers.image.version"] == "1"
    for key in ("org.opencontainers.image.source", "org.opencontainers.image.revision"):
        assert labels[key]
    assert attrs["Config"]["User"] == "10001:10001"
    assert "AVAILABLE" in " ".join(attrs["Config"]["Healthcheck"]["Test"])


def test_container_ran_hardened(example):
    _, _, a = example
    c = a["details"]["container"]
    assert c["user"] == "10001:10001" and c["read_only_rootfs"] is True
    assert c["cap_drop"] == ["ALL"] and "no-new-privileges" in c["security_opt"]


def test_pushed_image_pulls_back_by_digest(example, docker_client):
    _, _, a = example
    image = a["details"]["image"]
    assert image["pushed"] and image["repo_digest"].startswith(f"{REGISTRY}/deploykit-test/digits@sha256:")
    docker_client.images.remove(image["pushed"])  # drop the tag, then fetch from the registry by digest
    pulled = docker_client.images.pull(image["repo_digest"])
    assert pulled.id == image["id"]


def test_push_stream_error_fails(docker_client, example):
    _, _, a = example
    docker_client.images.get(a["details"]["image"]["id"]).tag("127.0.0.1:5999/nowhere/x", "t")  # nothing listens
    try:
        with pytest.raises(ctr.ContainerError, match="push 127.0.0.1:5999/nowhere/x:t failed"):
            ctr.push(docker_client, "127.0.0.1:5999/nowhere/x:t")
    finally:
        docker_client.images.remove("127.0.0.1:5999/nowhere/x:t")


def test_multi_input_multi_output_over_rest_and_grpc(multi):
    out, doc, a, _ = multi
    assert a["parity"]["passed"] and not [f for f in a["failures"] if f["kind"] != "load"]  # only its load stage failed
    assert set(a["parity"]["outputs"]) == {"score", "probs"}
    assert a["parity"]["runtime"] == PARITY_RUNTIME
    assert set(a["details"]["checks"]) == {"in-process", "rest-row", "rest-columnar", "grpc", "grpc-example"}
    for c in a["details"]["checks"].values():
        assert c["max_abs_rel"] <= 1e-5


def test_tf_example_signature_matches_serving_default(multi, tf):
    out, _, a, _ = multi
    loaded = tf.saved_model.load(str(out / a["path"] / "models" / a["details"]["model_name"] / "1"))
    data = models.multi_io_data(8, seed=3)
    direct = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in data.items()})
    parsed = loaded.signatures[EXAMPLES_SIGNATURE](examples=tf.constant(serialize_examples(data)))
    for k in ("score", "probs"):
        np.testing.assert_allclose(parsed[k].numpy(), direct[k].numpy(), rtol=1e-6)


def test_healthcheck_needs_available_and_container_is_hardened(example, docker_client):
    _, _, a = example
    image, name = a["details"]["image"]["id"], a["details"]["model_name"]
    with ctr.serving(docker_client, image, name, label="test-health") as running:
        top = running.container.top(ps_args="-o pid,uid,comm")
        column = top["Titles"].index("UID")
        uids = {line[column] for line in top["Processes"]}
        assert uids == {"10001"}, top
        wrote = running.container.exec_run(["/bin/bash", "-c", "echo x > /models/x"])
        assert wrote.exit_code != 0  # read-only root filesystem
        deadline = time.time() + 60
        while time.time() < deadline:
            running.container.reload()
            health = running.container.attrs["State"].get("Health", {}).get("Status")
            if health in ("healthy", "unhealthy"):
                break
            time.sleep(1)
        assert health == "healthy"
        probe = running.container.exec_run(running.container.attrs["Config"]["Healthcheck"]["Test"][1:],
                                           environment={"MODEL_NAME": "no_such_model"})
        assert probe.exit_code != 0, "the health check must fail when the model is not AVAILABLE"


def test_containers_are_removed_when_a_check_fails(example, docker_client, containers, capfd):
    _, _, a = example
    image, name = a["details"]["image"]["id"], a["details"]["model_name"]
    with pytest.raises(RuntimeError, match="check failed"):
        with ctr.serving(docker_client, image, name, label="test-fail"):
            raise RuntimeError("check failed")
    assert containers.left() == []
    assert "container deploykit-test-fail" in capfd.readouterr().err  # its logs were printed
    with pytest.raises(ctr.ContainerError, match="not AVAILABLE within"):
        with ctr.serving(docker_client, image, "no_such_model", deadline=8, label="test-deadline"):
            pass
    assert containers.left() == []


def test_a_killed_builds_containers_are_removed_by_the_next_one(example, docker_client, capfd):
    """A build killed with SIGKILL cannot remove its container: the next container start removes the
    containers whose owner process is gone, and keeps a live owner's and another machine's."""
    _, _, a = example
    image, name = a["details"]["image"]["id"], a["details"]["model_name"]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead_owner = ctr.owner(child.pid)
    child.kill()
    child.wait()
    owners = {"dead": dead_owner, "live": ctr.owner(), "elsewhere": "another-machine-boot-id:4026531836/1/1"}
    made = {k: docker_client.containers.create(image, name=f"deploykit-test-{k}-{uuid.uuid4().hex[:8]}",
                                               labels={ctr.LABEL: f"test-{k}", ctr.OWNER_LABEL: v})
            for k, v in owners.items()}
    try:
        with ctr.serving(docker_client, image, name, label="test-sweep"):
            left = {x.name for x in docker_client.containers.list(all=True, filters={"label": ctr.LABEL})}
        assert made["dead"].name not in left
        assert made["live"].name in left and made["elsewhere"].name in left
        assert f"left by a build that is gone: {made['dead'].name}" in capfd.readouterr().err
    finally:
        for x in made.values():
            with contextlib.suppress(Exception):
                x.remove(force=True)


def test_missing_daemon_is_exit_4(tmp_path):
    out = tmp_path / "out"
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    proc = run_cli("build", "--target", "serving", "--out", str(out), "--no-latency", env=env)
    assert proc.returncode == 4, proc.stderr
    line = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1]
    assert "Docker daemon" in line and "no-daemon.sock" in line and "--no-container" in line
    assert not out.exists()
    # --no-container: the in-process check alone, no daemon needed; it and its latency run in the
    # intake worker right after the repository is written (no TensorFlow worker of their own)
    config = _epochs(tmp_path)
    config.write_text(config.read_text() + "[latency]\nwarmup = 2\niterations = 20\n")
    proc = run_cli("build", "--target", "serving", "--out", str(out), "--no-container", "--json",
                   "--config", str(config), env=env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    a = doc["artifacts"][0]
    assert a["parity"]["runtime"] == "tf-serving[in-process]" and "image" not in a["details"]
    assert a["latency"]["runtime"] == "tf-serving[in-process]" and a["latency"]["iterations"] == 20
    assert a["latency"]["stopped"] == "iteration cap"
    assert "intake.check_serving_float32" in doc["timings"] and "validate.parity.serving/float32" in doc["timings"]
    assert "latency serving/float32: p50" in proc.stderr and "(measured in the load step)" in proc.stderr
    assert (out / "serving" / "Dockerfile").is_file()


def _epochs(tmp_path: Path) -> Path:
    path = tmp_path / "fast.toml"
    path.write_text(f"example_epochs = {NO_LATENCY['example_epochs']}\n")
    return path


# ---- atomic versions under a polling server -------------------------------------------------------
def _status(url: str) -> list[dict]:
    import requests

    try:
        return requests.get(url, timeout=2).json().get("model_version_status", [])
    except Exception:  # noqa: BLE001 - not up yet
        return []


def _wait(url: str, version: int, deadline: float = 60) -> list[dict]:
    end = time.time() + deadline
    while time.time() < end:
        status = _status(url)
        if any(s["version"] == str(version) and s["state"] in ("AVAILABLE", "END") for s in status):
            return status
        time.sleep(0.1)
    raise AssertionError(f"version {version} never settled: {status}")


def test_polling_server_never_sees_a_partial_version(example, tmp_path):
    """The stand-in server polls every 50 ms (TF Serving's loader behaves the same: integer folders
    only). Versions written by write_version always load; a naive copy into an integer folder is
    caught half-written, which shows the check can fail."""
    out, _, a = example
    saved = out / a["path"] / "models" / a["details"]["model_name"] / "1"
    base = tmp_path / "repo" / "m"
    serving_repo.write_version(base, 1, saved)
    port = ctr.free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "serving_standin" / "tensorflow_model_server_standin.py"),
         "--port=0", f"--rest_api_port={port}", "--rest_api_bind_address=127.0.0.1", "--model_name=m",
         f"--model_base_path={base}", "--file_system_poll_wait_seconds=0.05"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/v1/models/m"
    try:
        _wait(url, 1)
        for version in (2, 3, 4):
            serving_repo.write_version(base, version, saved)
            status = _wait(url, version)
            assert {s["version"]: s["state"] for s in status}[str(version)] == "AVAILABLE", status
        assert all(s["status"]["error_code"] == "OK" for s in _status(url)), _status(url)
        # negative control: copying file by file into "5" exposes a partial version
        (base / "5").mkdir()
        time.sleep(0.3)
        shutil.copytree(saved, base / "5", dirs_exist_ok=True)
        status = {s["version"]: s for s in _wait(url, 5)}
        assert status["5"]["state"] == "END" and status["5"]["status"]["error_code"] != "OK"
    finally:
        server.terminate()
        server.wait(timeout=10)

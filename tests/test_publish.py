"""`deploykit publish`: to a folder and to a real local OCI registry (Debian's docker-registry on
127.0.0.1, without and with htpasswd basic auth); plus the GitHub workflow template's deploykit
steps, run locally with the same environment variables."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploykit import manifest as manifest_mod

from .conftest import FAST, ROOT, run_cli
from .registry import running_registry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    import deploykit

    out = tmp_path_factory.mktemp("publish") / "out"
    deploykit.build(targets=("tflite",), quantize=("float32", "int8"), out=str(out), **FAST)
    return out


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    with running_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    with running_registry(tmp_path_factory.mktemp("registry-auth"), auth=True) as reg:
        yield reg


def _rewrite(out: Path, edit) -> None:
    """Edit a build's manifest and keep its file table consistent (a stand-in for another build)."""
    doc = manifest_mod.read(out)
    edit(doc)
    doc["files"] = manifest_mod.file_table(out)
    manifest_mod.write(out, doc)


def _other_content(built: Path, tmp_path: Path) -> Path:
    """The same version rebuilt with different bytes in one artifact."""
    out = tmp_path / "other"
    shutil.copytree(built, out)
    path = out / "tflite" / "model_int8.tflite"
    path.write_bytes(path.read_bytes() + b"\0")

    def edit(doc):
        a = doc["artifacts"][1]
        a["sha256"], a["bytes"] = manifest_mod.artifact_digest(path)

    _rewrite(out, edit)
    return out


def _pull(reg, tag: str, dest: Path) -> tuple[dict, list[Path]]:
    """Pull with a separate oras client: (OCI manifest, files)."""
    import oras.client

    client = oras.client.OrasClient(hostname=reg.host, insecure=True, auth_backend="basic" if reg.username else "token")
    if reg.username:
        client.auth.set_basic_auth(reg.username, reg.password)
    reference = f"{reg.host}/digits:{tag}"
    return client.get_manifest(reference), [Path(p) for p in client.pull(target=reference, outdir=str(dest))]


# -- folder ------------------------------------------------------------------------------------------

def test_publish_to_a_folder_verifies_and_refuses_other_content(built, tmp_path):
    dest = tmp_path / "releases" / "v1"
    proc = run_cli("publish", str(built), "--to", str(dest), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "published"
    check = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=dest, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "tflite/model_int8.tflite: OK" in check.stdout and "manifest.json: OK" in check.stdout
    assert run_cli("validate", str(dest)).returncode == 0  # the copy is a complete, valid build
    assert not list(dest.parent.glob(".v1.*"))  # no staging left over

    proc = run_cli("publish", str(built), "--to", str(dest), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["status"] == "unchanged"

    other = _other_content(built, tmp_path)
    before = (dest / "SHA256SUMS").read_text()
    proc = run_cli("publish", str(other), "--to", str(dest))
    assert proc.returncode == 6 and "--force" in proc.stderr
    assert (dest / "SHA256SUMS").read_text() == before
    proc = run_cli("publish", str(other), "--to", str(dest), "--force")
    assert proc.returncode == 0, proc.stderr
    assert (dest / "tflite" / "model_int8.tflite").read_bytes() == (other / "tflite" / "model_int8.tflite").read_bytes()


def test_publish_does_not_import_tensorflow(built, tmp_path):
    code = (
        "import sys\nfrom deploykit.cli import main\n"
        f"sys.argv = ['deploykit', 'publish', {str(built)!r}, '--to', {str(tmp_path / 'dest')!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = [m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "dest" / "SHA256SUMS").is_file()


def test_publish_refuses_unproven_and_changed_builds(built, tmp_path):
    failed = tmp_path / "failed"
    shutil.copytree(built, failed)

    def fail_int8(doc):
        a = doc["artifacts"][1]
        a["passed"] = a["parity"]["passed"] = False
        a["failures"] = [{"kind": "value", "message": "digit: cosine 0.5 < 0.99"}]
        doc["passed"] = False

    _rewrite(failed, fail_int8)
    proc = run_cli("publish", str(failed), "--to", str(tmp_path / "dest"))
    assert proc.returncode == 3
    assert "validation did not pass for tflite/int8" in proc.stderr and "float32" not in proc.stderr
    assert not (tmp_path / "dest").exists()

    changed = tmp_path / "changed"
    shutil.copytree(built, changed)
    (changed / "tflite" / "model_float32.tflite").write_bytes(b"not the validated model")
    proc = run_cli("publish", str(changed), "--to", str(tmp_path / "dest"))
    assert proc.returncode == 2 and "model_float32.tflite: checksum does not match" in proc.stderr
    assert not (tmp_path / "dest").exists()

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("not a deploykit publication")
    proc = run_cli("publish", str(built), "--to", str(precious), "--force")
    assert proc.returncode == 2 and "not a deploykit publication" in proc.stderr
    assert (precious / "notes.txt").read_text() == "not a deploykit publication"

    proc = run_cli("publish", str(built), "--to", "oci://Bad Ref")
    assert proc.returncode == 2 and "oci://HOST[:PORT]/REPO:TAG" in proc.stderr


# -- OCI registry -------------------------------------------------------------------------------------

def test_publish_to_a_registry_pushes_annotated_artifacts(built, registry, tmp_path):
    proc = run_cli("publish", str(built), "--to", registry.ref("digits", "v1"), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert [p["artifact"] for p in result["pushed"]] == ["tflite/float32", "tflite/int8"]
    assert any("no serving artifact" in n for n in result["notes"])

    doc = manifest_mod.read(built)
    int8 = doc["artifacts"][1]
    oci, files = _pull(registry, "v1-tflite-int8", tmp_path / "int8")
    ann = oci["annotations"]
    assert ann["io.deploykit.sha256"] == int8["sha256"] and ann["io.deploykit.variant"] == "int8"
    assert ann["io.deploykit.parity.passed"] == "true" and ann["org.opencontainers.image.version"] == "v1"
    assert "digit:max_abs_rel=" in ann["io.deploykit.parity.outputs"] and float(ann["io.deploykit.latency.p50_ms"]) > 0
    assert oci["layers"][0]["mediaType"] == "application/vnd.deploykit.tflite.v1"
    assert [f.name for f in files] == ["model_int8.tflite"]
    assert manifest_mod.artifact_digest(files[0])[0] == int8["sha256"]

    oci, files = _pull(registry, "v1", tmp_path / "meta")
    assert {f.name for f in files} >= {"manifest.json", "SHA256SUMS", "report.json", "report.html"}
    assert json.loads((tmp_path / "meta" / "manifest.json").read_text())["artifacts"][1]["sha256"] == int8["sha256"]
    assert oci["annotations"]["io.deploykit.artifacts"] == "tflite/float32,tflite/int8"


def test_registry_republish_same_is_ok_other_content_needs_force(built, registry, tmp_path):
    assert run_cli("publish", str(built), "--to", registry.ref("digits", "v2")).returncode == 0
    assert run_cli("publish", str(built), "--to", registry.ref("digits", "v2")).returncode == 0
    other = _other_content(built, tmp_path)
    proc = run_cli("publish", str(other), "--to", registry.ref("digits", "v2"))
    assert proc.returncode == 6 and "already published with different content" in proc.stderr
    old = manifest_mod.read(built)["artifacts"][1]["sha256"]
    assert _pull(registry, "v2-tflite-int8", tmp_path / "a")[0]["annotations"]["io.deploykit.sha256"] == old
    proc = run_cli("publish", str(other), "--to", registry.ref("digits", "v2"), "--force")
    assert proc.returncode == 0, proc.stderr
    oci, files = _pull(registry, "v2-tflite-int8", tmp_path / "b")
    new = manifest_mod.read(other)["artifacts"][1]["sha256"]
    assert oci["annotations"]["io.deploykit.sha256"] == new == manifest_mod.artifact_digest(files[0])[0] != old


def test_bundle_folders_round_trip_through_the_registry(built, registry, tmp_path):
    """A TF.js-style bundle (model.json + shards in a folder; stand-in bytes, no Node build here)
    goes as one tar+gzip layer and comes back with the same tree digest."""
    out = tmp_path / "with-bundle"
    shutil.copytree(built, out)
    bundle = out / "js" / "uint8"
    bundle.mkdir(parents=True)
    (bundle / "model.json").write_text('{"format": "graph-model", "weightsManifest": []}')
    (bundle / "group1-shard1of1.bin").write_bytes(bytes(range(256)) * 8)

    def add_bundle(doc):
        a = json.loads(json.dumps(doc["artifacts"][0]))
        a["sha256"], a["bytes"] = manifest_mod.artifact_digest(bundle)
        a.update(target="js", variant="uint8", path="js/uint8")
        doc["artifacts"].append(a)

    _rewrite(out, add_bundle)
    proc = run_cli("publish", str(out), "--to", registry.ref("digits", "v4"))
    assert proc.returncode == 0, proc.stderr
    oci, files = _pull(registry, "v4-js-uint8", tmp_path / "pulled")
    assert oci["layers"][0]["mediaType"].endswith("tar+gzip") and [f.name for f in files] == ["uint8"]
    assert manifest_mod.artifact_digest(files[0])[0] == manifest_mod.read(out)["artifacts"][-1]["sha256"]
    assert oci["annotations"]["io.deploykit.target"] == "js"


def test_registry_with_basic_auth(built, auth_registry, tmp_path):
    ref = auth_registry.ref("digits", "v1")
    proc = run_cli("publish", str(built), "--to", ref)
    assert proc.returncode == 2 and "DEPLOYKIT_REGISTRY_USERNAME" in proc.stderr
    proc = run_cli("publish", str(built), "--to", ref, env={**auth_registry.env(), "DEPLOYKIT_REGISTRY_PASSWORD": "wrong"})
    assert proc.returncode == 2 and "refused the credentials" in proc.stderr
    proc = run_cli("publish", str(built), "--to", ref, env=auth_registry.env())
    assert proc.returncode == 0, proc.stderr
    oci, files = _pull(auth_registry, "v1-tflite-float32", tmp_path / "f32")
    assert manifest_mod.artifact_digest(files[0])[0] == manifest_mod.read(built)["artifacts"][0]["sha256"]


def test_unreachable_registry_is_exit_4(built):
    from .registry import free_port

    proc = run_cli("publish", str(built), "--to", f"oci+http://127.0.0.1:{free_port()}/digits:v1", timeout=60)
    assert proc.returncode == 4 and "registry not reachable" in proc.stderr


# -- the workflow template ------------------------------------------------------------------------------

def test_workflow_template_steps_run_locally(registry, tmp_path):
    """Run every `run:` step of docs/github-workflow.yml that calls deploykit, in order, with the
    workflow's env block and the variables GitHub sets on a tag push (GITHUB_STEP_SUMMARY etc.)."""
    wf = yaml.safe_load((ROOT / "docs" / "github-workflow.yml").read_text())
    job = wf["jobs"]["build"]
    steps = [s for s in job["steps"]
             if any(ln.strip().startswith("deploykit ") for ln in s.get("run", "").splitlines())]
    assert [s["name"] for s in steps] == ["Build and validate", "Report into the job summary", "Publish (tags only)"]
    assert "refs/tags/" in steps[-1]["if"]

    (tmp_path / "deploykit.toml").write_text(
        'targets = ["tflite"]\nquantize = ["float32", "int8"]\nexample_epochs = 3\n'
        "[latency]\nwarmup = 2\niterations = 20\nmax_seconds = 1.0\n")
    summary = tmp_path / "summary.md"
    summary.touch()
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, **wf["env"], "PATH": f"{venv_bin}:{os.environ['PATH']}", "GITHUB_ACTIONS": "true", "CI": "true",
           "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_REF": "refs/tags/v1.0.0", "GITHUB_REF_NAME": "v1.0.0",
           "GITHUB_WORKSPACE": str(tmp_path), "PUBLISH_REPO": f"oci+http://{registry.host}/digits"}
    for step in steps:
        step_env = {k: ("" if "${{" in str(v) else str(v)) for k, v in (step.get("env") or {}).items()}
        proc = subprocess.run(["bash", "-eo", "pipefail", "-c", step["run"]], cwd=tmp_path, env={**env, **step_env},
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"step {step['name']!r} failed:\n{proc.stderr[-3000:]}"
    out = tmp_path / wf["env"]["DEPLOYKIT_OUT"]
    assert "tflite/int8" in summary.read_text() and (out / "report.html").is_file()
    oci, _ = _pull(registry, "v1.0.0-tflite-int8", tmp_path / "pulled")
    assert oci["annotations"]["io.deploykit.sha256"] == manifest_mod.read(out)["artifacts"][1]["sha256"]


# -- the serving image ------------------------------------------------------------------------------------

@pytest.mark.docker
def test_serving_image_is_pushed_by_digest(built, registry, tmp_path):
    """The serving target's manifest entry is a stand-in here (an artifact folder plus a tiny image
    imported locally: no base image can be pulled), so publish's docker path runs for real."""
    import io
    import tarfile

    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"needs a Docker daemon (see docker/README.md): {exc}")
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        payload = f"deploykit publish test {tmp_path}".encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    tag = f"deploykit-publish-standin:{os.getpid()}"
    client.api.import_image_from_data(data.getvalue(), repository=tag.split(":")[0], tag=tag.split(":")[1])
    image = client.images.get(tag)
    out = tmp_path / "with-serving"
    shutil.copytree(built, out)
    (out / "serving").mkdir()
    (out / "serving" / "README").write_text("stand-in for the serving model repository\n")

    def add_serving(doc):
        a = json.loads(json.dumps(doc["artifacts"][0]))
        a.update(target="serving", variant="float32", path="serving", bytes=42,
                 sha256=manifest_mod.artifact_digest(out / "serving")[0], details={"image": {"tag": tag, "id": image.id}})
        doc["artifacts"].append(a)

    _rewrite(out, add_serving)
    try:
        proc = run_cli("publish", str(out), "--to", registry.ref("digits", "v3"), "--json")
        assert proc.returncode == 0, proc.stderr
        pushed = {p["artifact"]: p for p in json.loads(proc.stdout)["pushed"]}
        ref = pushed["serving/float32"]["reference"]
        assert ref.startswith(f"{registry.host}/digits@sha256:") and pushed["serving/float32"]["image_id"] == image.id
        manifest = subprocess.run(["curl", "-sf", "-H", "Accept: application/vnd.docker.distribution.manifest.v2+json",
                                   f"http://{registry.host}/v2/digits/manifests/v3-serving"], capture_output=True, text=True)
        assert manifest.returncode == 0 and image.id.split(":")[1] in manifest.stdout  # config digest = image id

        # another image under the same version is refused unless --force
        def other_image(doc):
            doc["artifacts"][-1]["details"]["image"]["id"] = "sha256:" + "0" * 64

        _rewrite(out, other_image)
        proc = run_cli("publish", str(out), "--to", registry.ref("digits", "v3"))
        assert proc.returncode == 6 and "v3-serving" in proc.stderr
    finally:
        client.images.remove(image.id, force=True)  # every tag of the stand-in image

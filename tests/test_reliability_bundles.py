"""Hostile bundles and archives, and reproducible builds.

- Archives: deploykit's only archive intake is the `.keras` zip (every other input is a file or a
  folder); members with `..`, absolute paths or symbolic links are refused (exit 5) before Keras
  reads the archive. No other archive intake (tar, zip of a SavedModel) exists, and none is
  warranted: CI jobs unpack with their own tools.
- Output folders given to `deploykit validate`: a manifest naming paths that leave the folder, or
  artifacts/shards that are symbolic links to files elsewhere, are refused (exit 5), even when the
  checksums agree. TF.js `model.json` weight paths that escape the bundle are covered by test_js.py.
- Reproducibility: two builds (separate processes) from the same model, data and settings give
  byte-identical TFLite artifacts and TF.js bundles; the manifests differ only in the fields the
  README lists as volatile (`created_at`, `timings`, `memory`, `*_seconds`, and the checksums of the
  `report.*` files, which show those times).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from .reliability import Workspace, assert_failure, snapshot

pytestmark = pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")

VOLATILE = {"created_at", "timings", "memory"}  # plus every key ending in "_seconds"
REPORTS = ("report.",)  # the human-readable reports show those times too


# ---- .keras archive members ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    from . import models

    return models.dense(tmp_path_factory.mktemp("archives") / "dense.keras")


@pytest.mark.parametrize("member, link, says", [
    ("../evil.txt", False, "leaves the archive"),
    ("assets/../../evil.txt", False, "leaves the archive"),
    ("/tmp/evil.txt", False, "absolute path"),
    ("C:/evil.txt", False, "absolute path"),
    ("assets/passwd", True, "symbolic link"),
])
def test_keras_archive_member_escaping_is_refused(dense, tmp_path, member, link, says):
    ws = Workspace(tmp_path)
    model = tmp_path / "hostile.keras"
    shutil.copy(dense, model)
    with zipfile.ZipFile(model, "a") as zf:
        info = zipfile.ZipInfo(member)
        if link:
            info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd" if link else "written outside")
    proc = ws.cli("build", "--model", str(model), "--out", "out", "--no-latency", "--json")
    assert_failure(proc, 5, "refused_by_policy", str(model), says)
    assert not (tmp_path.parent / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()
    ws.assert_untouched()


# ---- two builds of the same inputs ---------------------------------------------------------------
@pytest.fixture(scope="module")
def twice(tmp_path_factory):
    """Two CLI builds (tflite + js, Node cpu backend) of the same model, data and settings."""
    from . import models

    d = tmp_path_factory.mktemp("twice")
    model = models.dense(d / "dense.keras")
    np.savez(d / "data.npz", x=np.random.default_rng(1).standard_normal((32, 4)).astype(np.float32))
    # an untrained model: quantized variants are judged on reproducibility here, not accuracy
    (d / "dk.toml").write_text("[budgets.tflite.int8]\ntop1_agreement = 0.0\ncosine = 0.0\n"
                               "[budgets.tflite.dynamic]\ntop1_agreement = 0.0\ncosine = 0.0\nmax_abs_rel = 1.0\n"
                               "[budgets.js.uint8]\ntop1_agreement = 0.0\ncosine = 0.0\nmax_abs_rel = 1.0\n")
    docs = []
    for name in ("a", "b"):
        ws = Workspace(d / name, previous=False)
        proc = ws.cli("build", "--model", str(model), "--data", str(d / "data.npz"), "--config", str(d / "dk.toml"),
                      "--target", "tflite",
                      "--target", "js", "--quantize", "float32,float16,dynamic,int8,uint8", "--out", "out",
                      "--js-backends", "cpu", "--no-latency", "--json", timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        docs.append((ws.out, json.loads(proc.stdout)))
    return docs


@pytest.mark.slow
@pytest.mark.node
def test_tflite_artifacts_and_js_bundles_are_byte_identical(twice):
    (out_a, doc_a), (out_b, doc_b) = twice
    kinds = {a["target"] for a in doc_a["artifacts"]}
    assert kinds == {"tflite", "js"}
    for a, b in zip(doc_a["artifacts"], doc_b["artifacts"]):
        assert (a["target"], a["variant"], a["path"]) == (b["target"], b["variant"], b["path"])
        assert a["sha256"] == b["sha256"], f"{a['target']}/{a['variant']} differs between two builds"
    assert snapshot(out_a) .keys() == snapshot(out_b).keys()
    different = [rel for rel, data in snapshot(out_a).items() if snapshot(out_b)[rel] != data]
    assert [rel for rel in different if not rel.startswith(REPORTS)] == ["manifest.json"], different


@pytest.mark.slow
@pytest.mark.node
def test_manifests_differ_only_in_documented_volatile_fields(twice):
    (_, doc_a), (_, doc_b) = twice
    assert _stable(doc_a) == _stable(doc_b)
    assert doc_a["created_at"] and doc_a["timings"] and doc_a["memory"]  # the volatile fields exist and are what differs


def _stable(node):
    if isinstance(node, dict):
        return {k: _stable(v) for k, v in node.items()
                if k not in VOLATILE and not k.endswith("_seconds") and not k.startswith(REPORTS)}
    if isinstance(node, list):
        return [_stable(v) for v in node]
    return node


# ---- validate on output folders pointing elsewhere -----------------------------------------------
def _entry(doc: dict, target: str, variant: str) -> dict:
    return next(a for a in doc["artifacts"] if a["target"] == target and a["variant"] == variant)


@pytest.mark.slow
@pytest.mark.node
@pytest.mark.parametrize("case", ["tflite artifact is a symlink", "js shard is a symlink",
                                  "artifact folder is a symlink", "manifest path leaves the folder"])
def test_validate_refuses_files_outside_the_output_folder(twice, tmp_path, case):
    (built, doc) = twice[0]
    ws = Workspace(tmp_path, previous=False)
    out = ws.out
    shutil.copytree(built, out)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    manifest = json.loads((out / "manifest.json").read_text())
    if case == "tflite artifact is a symlink":  # same bytes elsewhere: the checksums even agree
        rel = _entry(doc, "tflite", "float32")["path"]
        shutil.move(out / rel, outside / "model.tflite")
        os.symlink(outside / "model.tflite", out / rel)
        says = rel
    elif case == "js shard is a symlink":
        bundle = out / _entry(doc, "js", "float32")["path"]
        shard = next(bundle.glob("*.bin"))
        shutil.move(shard, outside / shard.name)
        os.symlink(outside / shard.name, shard)
        says = shard.name
    elif case == "artifact folder is a symlink":
        shutil.move(out / "tflite", outside / "tflite")
        os.symlink(outside / "tflite", out / "tflite")
        says = "tflite"
    else:
        entry = next(a for a in manifest["artifacts"] if a["target"] == "tflite" and a["variant"] == "float32")
        shutil.copy(out / entry["path"], tmp_path / "outside.tflite")
        data = (tmp_path / "outside.tflite").read_bytes()
        entry["path"] = "../outside.tflite"
        manifest["files"]["../outside.tflite"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
        says = "../outside.tflite"
    ws.before = snapshot(out)
    proc = ws.cli("validate", "out", "--json")
    assert_failure(proc, 5, "refused_by_policy", says)
    ws.assert_untouched()

"""A target from another package: registered through a `deploykit.targets` entry point (a
dist-info folder on PYTHONPATH, as `pip install` would leave it), then listed, offered as build
options, built, validated and re-validated by the real CLI, with no change inside deploykit."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import run_cli

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def plugin_env(tmp_path):
    dist = tmp_path / "site" / "deploykit_numpy_target-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: deploykit-numpy-target\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[deploykit.targets]\nnumpy = numpy_target.target:NumpyTarget\n")
    return {"PYTHONPATH": f"{tmp_path / 'site'}:{TESTS}"}


def test_an_entry_point_target_is_listed_and_offers_its_options(plugin_env, tmp_path):
    listed = run_cli("targets", "--json", env=plugin_env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = [t["name"] for t in json.loads(listed.stdout)["targets"]]
    assert names[-1] == "numpy" and {"tflite", "js", "serving"} <= set(names)
    helped = run_cli("build", "--help", env=plugin_env, cwd=tmp_path)
    assert "--numpy-threads N" in helped.stdout
    bare = run_cli("targets", "--json", cwd=tmp_path)  # not installed: not there
    assert "numpy" not in [t["name"] for t in json.loads(bare.stdout)["targets"]]


@pytest.mark.slow
def test_an_entry_point_target_builds_and_validates_through_the_cli(plugin_env, tmp_path):
    (tmp_path / "dk.toml").write_text("example_epochs = 2\n")
    proc = run_cli("build", "--target", "numpy", "--numpy-threads", "3", "--out", "out", "--json", "--no-latency",
                   "--config", "dk.toml", env=plugin_env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert [a["variant"] for a in doc["artifacts"]] == ["float32", "float16"]
    assert all(a["passed"] and a["parity"]["runtime"] == "numpy" for a in doc["artifacts"])
    assert doc["config"]["settings"]["numpy"] == {"threads": 3}
    assert doc["targets"]["numpy"] == {"layers": 7, "threads": 3}
    again = run_cli("validate", "out", "--json", env=plugin_env, cwd=tmp_path)
    assert again.returncode == 0 and json.loads(again.stdout)["passed"], again.stderr[-2000:]


def test_a_broken_plugin_fails_only_the_builds_that_name_it(tmp_path):
    dist = tmp_path / "site" / "deploykit_broken_target-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: deploykit-broken-target\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[deploykit.targets]\nbroken = no_such_package.target:Gone\n")
    env = {"PYTHONPATH": str(tmp_path / "site")}
    listed = run_cli("targets", "--json", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [t["name"] for t in json.loads(listed.stdout)["targets"]] == ["tflite", "js", "serving"]
    assert "target 'broken': its entry point no_such_package.target:Gone" in listed.stderr
    assert run_cli("build", "--help", env=env, cwd=tmp_path).returncode == 0
    named = run_cli("build", "--target", "broken", "--out", "out", env=env, cwd=tmp_path)
    assert named.returncode == 4, named.stderr[-2000:]
    lines = [ln for ln in named.stderr.splitlines() if ln.startswith("deploykit: error:")]
    assert len(lines) == 1 and "no_such_package.target:Gone" in lines[0] and "ModuleNotFoundError" in lines[0]
    assert not (tmp_path / "out").exists()

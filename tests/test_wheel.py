"""The package works when installed as a wheel into another venv and run from another folder."""
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT


@pytest.mark.slow
def test_wheel_installs_and_builds_from_another_directory(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)], check=True)
    wheel = next(dist.glob("deploykit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "deploykit/_targets/tflite/harness.py" in names, "the runtime harness must ship in the wheel"
    assert "deploykit/schema/manifest.schema.json" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # Reuse this environment's pinned dependencies (a second 3 GB install would prove nothing more),
    # but install deploykit itself only from the wheel.
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    deps = [p for p in site.getsitepackages() if "site-packages" in p]
    Path(purelib, "deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "dk.toml").write_text("example_epochs = 2\nquantize = ['float32', 'int8']\n[latency]\niterations = 20\nwarmup = 2\n")
    proc = subprocess.run([str(venv / "bin" / "deploykit"), "build", "--config", "dk.toml", "--out", "out"],
                          cwd=elsewhere, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    where = subprocess.run([str(py), "-c", "import deploykit; print(deploykit.__file__)"], cwd=elsewhere,
                           capture_output=True, text=True, check=True).stdout
    assert str(venv) in where, "deploykit must come from the wheel, not the source tree"
    assert (elsewhere / "out" / "tflite" / "model_int8.tflite").exists()

"""The output folder: lock, staging, all-or-nothing swap. No TensorFlow needed."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from deploykit.errors import BadInputError, LockedError
from deploykit.output import OutputFolder


def _previous_build(out):
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"deploykit_version": "0"}))
    (out / "model.tflite").write_bytes(b"old")


def test_commit_replaces_previous_output(tmp_path):
    out = tmp_path / "out"
    _previous_build(out)
    with OutputFolder(out) as folder:
        (folder.staging / "manifest.json").write_text(json.dumps({"deploykit_version": "1"}))
        assert (out / "model.tflite").read_bytes() == b"old"  # untouched until commit
        folder.commit()
    assert json.loads((out / "manifest.json").read_text())["deploykit_version"] == "1"
    assert not (out / "model.tflite").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failure_before_commit_leaves_previous_output_and_no_staging(tmp_path):
    out = tmp_path / "out"
    _previous_build(out)
    with pytest.raises(RuntimeError):
        with OutputFolder(out) as folder:
            (folder.staging / "half-written.tflite").write_bytes(b"partial")
            raise RuntimeError("conversion failed")
    assert (out / "model.tflite").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_refuses_to_replace_a_folder_that_is_not_a_deploykit_output(tmp_path):
    out = tmp_path / "mywork"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(BadInputError, match="not a deploykit output"):
        with OutputFolder(out):
            pass
    assert (out / "thesis.tex").read_text() == "precious"


def test_refuses_a_file_in_place_of_the_folder(tmp_path):
    out = tmp_path / "out"
    out.write_text("x")
    with pytest.raises(BadInputError, match="not a folder"):
        with OutputFolder(out):
            pass


def test_second_build_into_same_folder_is_locked_out(tmp_path):
    out = tmp_path / "out"
    with OutputFolder(out):
        with pytest.raises(LockedError) as info:
            with OutputFolder(out):
                pass
        assert info.value.exit_code == 75


def test_leftovers_of_a_killed_build_are_cleaned_and_its_lock_recovered(tmp_path):
    out = tmp_path / "out"
    code = (
        "import sys, time; from deploykit.output import OutputFolder\n"
        f"f = OutputFolder({str(out)!r}).__enter__()\n"
        "(f.staging / 'partial.tflite').write_bytes(b'x'); print('ready', flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    with pytest.raises(LockedError):
        OutputFolder(out).__enter__()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert list(tmp_path.glob(".out.staging-*")), "the killed build left its staging folder"
    with OutputFolder(out) as folder:
        assert [p.name for p in tmp_path.glob(".out.staging-*")] == [folder.staging.name]
        folder.commit()
    assert out.is_dir() and not list(tmp_path.glob(".out.staging-*"))


def test_unwritable_parent_is_bad_input(tmp_path):
    if os.geteuid() == 0:
        parent = tmp_path / "file"
        parent.write_text("x")
        out = parent / "out"  # a path under a regular file cannot be created, even by root
    else:
        parent = tmp_path / "ro"
        parent.mkdir(mode=0o500)
        out = parent / "out"
    with pytest.raises(BadInputError, match="cannot write here"):
        with OutputFolder(out):
            pass


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_cli_build_keeps_previous_output_and_leaves_nothing(tmp_path, sig, code):
    out = tmp_path / "out"
    _previous_build(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = subprocess.Popen([sys.executable, "-m", "deploykit", "build", "--out", "out", "--no-latency"],
                            cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # interrupt mid-build, once staging exists and TensorFlow is working
        if "train the bundled example" in line:
            break
    time.sleep(1.0)
    proc.send_signal(sig)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == code, rest
    assert "output folder was left unchanged" in rest
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

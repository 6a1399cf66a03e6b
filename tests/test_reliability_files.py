"""Hostile and broken `.npz` files, click's own usage errors, and lock files: each is exit 2 (or
75) with one `deploykit: error:` line, and nothing is allocated, written or left behind."""
from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from deploykit.arrays import read_npz
from deploykit.errors import BadInputError

from .reliability import Workspace, assert_failure


def _forged(path: Path, shape: tuple, dtype: str = "<f4", payload: bytes = b"\0" * 64) -> Path:
    """An .npz whose one member's header declares `shape` but holds only `payload`."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (64 - (10 + len(header) + 1) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", member)
    return path


def test_a_npy_named_npz_is_named_as_such(tmp_path):
    np.save(tmp_path / "data.npy", np.zeros((4, 4), np.float32))
    (tmp_path / "data.npy").rename(tmp_path / "data.npz")
    with pytest.raises(BadInputError, match=r"data.npz: is a single .npy array, not an .npz archive"):
        read_npz(tmp_path / "data.npz")


def test_a_header_declaring_a_huge_array_is_refused_before_allocating(tmp_path):
    path = _forged(tmp_path / "huge.npz", (10**12, 1000))  # 4 exabytes declared, 64 bytes present
    with pytest.raises(BadInputError, match=r"huge.npz\[x\]: header declares 4,000,000,000,000,000 bytes"):
        read_npz(path)


def test_a_member_declaring_more_than_memory_allows_is_refused(tmp_path, monkeypatch):
    import deploykit.arrays as arrays

    np.savez(tmp_path / "big.npz", x=np.zeros((256, 256), np.float32))  # 256 KiB, all present
    monkeypatch.setattr(arrays, "memory_limit", lambda: 64 * 1024)
    with pytest.raises(BadInputError, match="more than deploykit reads from one file"):
        read_npz(tmp_path / "big.npz")


@pytest.mark.parametrize("case, says", [
    ("object array", "holds Python objects"),
    ("truncated", "not a readable .npz"),
    ("not a zip", "unreadable .npz .no zip signature."),
    ("empty", "file is empty"),
    ("no arrays", "holds no arrays"),
])
def test_broken_npz_files(tmp_path, case, says):
    path = tmp_path / "bad.npz"
    if case == "object array":
        np.savez(path, x=np.array([{"a": 1}], dtype=object))
    elif case == "truncated":
        np.savez(path, x=np.ones((64, 64), np.float32))
        path.write_bytes(path.read_bytes()[:5000])
    elif case == "not a zip":
        path.write_text("x,y\n1,2\n")
    elif case == "empty":
        path.write_bytes(b"")
    else:
        with zipfile.ZipFile(path, "w"):
            pass
    with pytest.raises(BadInputError, match=says):
        read_npz(path)


def test_a_good_npz_reads_back(tmp_path):
    np.savez(tmp_path / "ok.npz", x=np.arange(12, dtype=np.float32).reshape(3, 4), s=np.array(["a", "bc", "d"]))
    got = read_npz(tmp_path / "ok.npz")
    assert got["x"].shape == (3, 4) and list(got["s"]) == ["a", "bc", "d"]


def test_a_forged_data_file_through_the_cli(tmp_path):
    from . import models

    ws = Workspace(tmp_path)
    model = models.dense(tmp_path / "dense.keras")
    data = _forged(tmp_path / "data.npz", (10**9, 4))
    proc = ws.cli("build", "--model", str(model), "--data", str(data), "--out", "out", "--no-latency", "--json")
    assert_failure(proc, 2, "bad_input", str(data), "header declares 16,000,000,000 bytes")
    ws.assert_untouched()


@pytest.mark.parametrize("argv, says", [
    (["build", "--jobs", "abc"], "Invalid value for '--jobs': 'abc' is not a valid integer"),
    (["build", "--no-such-flag"], "No such option '--no-such-flag'"),
    (["nosuch"], "No such command 'nosuch'"),
])
def test_click_usage_errors_end_like_every_other_error(tmp_path, argv, says):
    ws = Workspace(tmp_path)
    proc = ws.cli(*argv, "--json")
    line = assert_failure(proc, 2, "bad_input", says)
    assert proc.stderr.rstrip().splitlines()[-1] == line
    ws.assert_untouched()


def test_builds_leave_no_lock_files_behind(tmp_path):
    from deploykit.output import OutputFolder

    for name in ("a", "b", "c"):
        with OutputFolder(tmp_path / name) as folder:
            folder.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]


@pytest.mark.slow
def test_validate_refuses_tampered_validation_data(tmp_path):
    """A build whose validation/*.npz was replaced (checksums updated to match): exit 2 naming the file."""
    from deploykit.digests import file_sha256

    from .conftest import run_cli

    (tmp_path / "dk.toml").write_text("example_epochs = 2\nquantize = ['float32']\n[latency]\nenabled = false\n")
    built = run_cli("build", "--config", "dk.toml", "--out", "out", cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    for rel, arrays in [("validation/reference.npz", {"digit": np.zeros((3, 5), np.float32)}),  # wrong shape
                        ("validation/inputs.npz", {"other": np.zeros((3, 8, 8, 1), np.float32)})]:  # wrong name
        victim = tmp_path / "out" / rel
        original = victim.read_bytes()
        np.savez(victim, **arrays)
        victim.rename(victim.with_suffix(".npz"))  # np.savez kept the name
        doc = dict(manifest, files={**manifest["files"], rel: {**manifest["files"][rel], "sha256": file_sha256(victim),
                                                              "bytes": victim.stat().st_size}})
        (tmp_path / "out" / "manifest.json").write_text(json.dumps(doc))
        proc = run_cli("validate", "out", "--json", cwd=tmp_path)
        assert_failure(proc, 2, "bad_input", rel)
        victim.write_bytes(original)
    (tmp_path / "out" / "manifest.json").write_text(json.dumps(manifest))
    assert run_cli("validate", "out", cwd=tmp_path).returncode == 0

"""The TF.js target's Node runtime: the `node` and Chromium binaries, the pinned npm packages of the
harness (installed once into a cache), the raw tensor files the harness reads and writes, and the
safety check of a bundle's weight paths before any runtime opens it. No TensorFlow here."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Mapping

import numpy as np

from deploykit.errors import BadInputError, MissingRuntimeError

_NPM_LOCK = threading.Lock()

NODE_HINT = "install Node.js 18 or newer (Debian: apt-get install -y nodejs npm)"


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise MissingRuntimeError(f"the js target needs Node.js, which is not on PATH: {NODE_HINT}")
    return node


def chromium_binary() -> str:
    path = os.environ.get("DEPLOYKIT_CHROMIUM", "/usr/bin/chromium")
    if not Path(path).is_file():
        raise MissingRuntimeError(
            f"the js target's browser check needs headless Chromium at {path}: install it with "
            "`apt-get install -y chromium` (or bash scripts/setup-js.sh), or skip the browser check "
            "with --js-backends cpu,wasm"
        )
    return path


def ensure_modules(harness_dir: Path) -> Path:
    """The folder holding the harness's pinned node_modules: ~/.cache/deploykit/js-<lockhash>,
    filled once with `npm ci` from the shipped package-lock.json."""
    lock = (harness_dir / "package-lock.json").read_bytes()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deploykit"
    cache = base / f"js-{hashlib.sha256(lock).hexdigest()[:16]}"
    if (cache / ".complete").exists():
        return cache
    with _NPM_LOCK:  # one install per process; the final rename makes it atomic across processes
        if (cache / ".complete").exists():
            return cache
        npm = shutil.which("npm")
        if npm is None:
            raise MissingRuntimeError(f"the js target needs npm to install its pinned TF.js packages: {NODE_HINT}")
        print(f"deploykit: installing the TF.js harness dependencies (@tensorflow/tfjs 4.22, wasm backend) "
              f"into {cache} (once)", file=sys.stderr)
        base.mkdir(parents=True, exist_ok=True)
        staging = base / f".{cache.name}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name in ("package.json", "package-lock.json"):
            shutil.copy(harness_dir / name, staging / name)
        proc = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=staging, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
        if proc.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])[:500]
            raise MissingRuntimeError(f"npm ci for the TF.js harness failed in {staging}: {tail}")
        (staging / ".complete").write_text("ok\n")
        try:
            staging.rename(cache)
        except OSError:  # another process finished first
            shutil.rmtree(staging, ignore_errors=True)
    return cache


NODE_DTYPES = {"float32": "float32", "float64": "float32", "float16": "float32", "int32": "int32",
               "int64": "int32", "int16": "int32", "int8": "int32", "uint8": "int32", "bool": "bool"}


def write_tensors(prefix: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Raw little-endian tensors for the harness: PREFIX.json (index) and PREFIX.bin."""
    index, offset = {}, 0
    with open(f"{prefix}.bin", "wb") as fh:
        for name, array in arrays.items():
            dtype = NODE_DTYPES.get(array.dtype.name)
            if dtype is None:
                raise BadInputError(f"input '{name}': dtype {array.dtype} has no TF.js equivalent")
            wire = "uint8" if dtype == "bool" else "<f4" if dtype == "float32" else "<i4"
            raw = np.ascontiguousarray(array, dtype=wire).tobytes()
            index[name] = {"dtype": dtype, "shape": list(array.shape), "offset": offset, "length": len(raw)}
            fh.write(raw)
            offset += len(raw)
    path = Path(f"{prefix}.json")
    path.write_text(json.dumps(index))
    return path


def read_tensors(index_path: Path) -> dict[str, np.ndarray]:
    index = json.loads(index_path.read_text())
    raw = index_path.with_suffix(".bin").read_bytes()
    return {name: np.frombuffer(raw, dtype="<f4", count=t["length"] // 4, offset=t["offset"]).reshape(t["shape"])
            for name, t in index.items()}


def bundle_problems(bundle: Path) -> list[str]:
    """Weight paths in model.json that are absolute or escape the bundle folder (or a missing file)."""
    model_json = bundle / "model.json"
    try:
        doc = json.loads(model_json.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return [f"not a readable model.json ({exc})"]
    root, problems = bundle.resolve(), []
    for group in doc.get("weightsManifest") or []:
        for p in group.get("paths") or []:
            if not isinstance(p, str) or not p or "\\" in p or "\0" in p or ":" in p or p.startswith("/"):
                problems.append(f"weight path {p!r} is not a relative path inside the bundle folder")
            elif ".." in p.split("/") or not (root / p).resolve().is_relative_to(root):
                problems.append(f"weight path {p!r} escapes the bundle folder")
            elif not (root / p).is_file():
                problems.append(f"weight shard {p!r} is missing")
    return problems

"""TF.js target: a graph-model bundle converted from the canonical SavedModel, validated in Node.

Conversion uses the tensorflowjs converter in-process (the float32 bundle doubles as the op
preflight: ops TF.js lacks are refused with exit 2 naming them). Quantized variants quantize the
weights only (`quantization_dtype_map`); activations stay float32 in every runtime.

Backends are part of the artifact's runtime: each variant is one artifact (one bundle folder),
and validating it runs the bundle on every backend in `details["backends"]`: by default cpu and
wasm in Node, and wasm in headless Chromium (the page served from 127.0.0.1, driven by
playwright-core). The artifact is judged by its worst backend: parity returns the outputs of the backend
farthest from the reference, latency the timings of the slowest backend; the figures of every
backend are kept under "backends" in the harness result.

Settings come from `BuildConfig.js` (`[js]` in the config file, `--js-*` flags): format (graph, the
default, or layers: a tf_keras model saved with tensorflowjs's Keras converter), shard_bytes,
backends ("cpu,wasm" skips the browser check; "chromium-webgl" adds WebGL) and quantize (a list of
variants, or auto: see `auto_select`). DEPLOYKIT_CHROMIUM (default /usr/bin/chromium) stays an
environment variable: it says where this machine keeps the browser, not what to build.

Preflight rewrites (`js_rewrite.py`): ops TF.js lacks but that have an exact expression in ops it has
are rewritten in the frozen graph before conversion; parity then proves the rewritten bundle.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import BadInputError, MissingRuntimeError, SecurityError, UnsupportedOpsError
from ..runner import run_child
from . import harness_path, js_quantize, js_rewrite
from .base import Artifact, RunRequest, Target

QUANTIZATION = {"float32": None, "float16": {"float16": "*"}, "uint16": {"uint16": "*"}, "uint8": {"uint8": "*"}}
BACKENDS = ("cpu", "wasm", "chromium-wasm", "chromium-webgl")  # chromium-*: the headless browser check
_CONVERTER_LOCK = threading.Lock()  # the converter builds TF graphs in global state: one at a time
_NPM_LOCK = threading.Lock()


class JSTarget(Target):
    name = "js"
    summary = "TF.js graph model (weight shards), validated with @tensorflow/tfjs in Node (cpu, wasm)"
    runtime = "tfjs"
    variants = ("float32", "float16", "uint16", "uint8")
    # Measured on the bundled example (digits CNN, 360 rows), worst backend, max_abs_rel: float32
    # 6.6e-7, float16 5.2e-4, uint16 7.4e-5, uint8 1.2e-2 (top-1 agreement 1.0 for all). The
    # budgets leave an order of magnitude of headroom for other models.
    default_budgets = {
        "float32": {"max_abs_rel": 1e-4},
        "float16": {"max_abs_rel": 1e-2, "cosine": 0.9999, "top1_agreement": 0.99},
        "uint16": {"max_abs_rel": 1e-3, "cosine": 0.9999, "top1_agreement": 0.99},
        "uint8": {"max_abs_rel": 0.1, "cosine": 0.99, "top1_agreement": 0.98},
    }

    def __init__(self) -> None:
        self.plan: dict = {}
        self._saved_model: Path | None = None
        self._probe: Path | None = None  # the preflight's float32 bundle, reused by convert
        self._settings = None  # BuildConfig.js; None in `deploykit validate` (run() checks Chromium)

    def configure(self, config) -> None:
        self._settings = config.js

    def check_runtime(self) -> None:
        node_binary()  # raises MissingRuntimeError naming what to install
        if self._settings is not None and any(b.startswith("chromium-") for b in self._settings.backends):
            chromium_binary()

    # ---- preflight -------------------------------------------------------------------------
    def prepare(self, model, saved_model, data, config, work) -> dict:
        settings = config.js
        self._saved_model, self._keras = saved_model, model.keras_model
        self._format = settings.format
        if self._format == "layers":
            _check_layers_names(model)
        self._backends = list(settings.backends)
        self._shard_bytes = settings.shard_bytes
        self._rewrites: dict[str, int] = {}
        probe = work / "js-preflight"
        started = time.perf_counter()
        try:
            self._convert(probe, None)
        except ValueError as exc:
            ops = unsupported_ops(str(exc))
            if ops is None:
                raise
            raise UnsupportedOpsError(
                f"{model.source.location}: needs TensorFlow ops the TF.js runtime does not support and that have "
                f"no exact rewrite: {', '.join(ops)}", details={"ops": ops, "rewritable": sorted(js_rewrite.RULES)},
            ) from None
        self._probe, self._probe_seconds = probe, time.perf_counter() - started
        doc = json.loads((probe / "model.json").read_text())
        self.plan = {
            "format": f"{self._format}-model",
            "conversion_path": "saved_model" if self._format == "graph" else "keras_model",
            "backends": list(self._backends),
            "weight_shard_bytes": self._shard_bytes,
            "signature": {k: sorted(doc.get("signature", {}).get(k, {})) for k in ("inputs", "outputs")},
            "ops": sorted({n["op"] for n in doc["modelTopology"].get("node", [])} - {"Const", "Placeholder"}),
            "rewrites": [{"op": op, "nodes": n, "into": js_rewrite.RULES[op].formula}
                         for op, n in sorted(self._rewrites.items())],
        }
        missing = set(model.contract.input_names) - set(self.plan["signature"]["inputs"])
        missing |= set(model.contract.output_names) - set(self.plan["signature"]["outputs"])
        if missing:
            raise BadInputError(f"{model.source.location}: the TF.js model.json signature lost the name(s) "
                                f"{', '.join(sorted(missing))}", details={"missing_names": sorted(missing)})
        return dict(self.plan)

    def _convert(self, dest: Path, dtype_map) -> None:
        from ..tfenv import tensorflow

        tensorflow()  # sets up the one TensorFlow (legacy Keras) before tensorflowjs imports it
        # tensorflowjs imports tensorflow_decision_forests, whose welcome message imports IPython
        # whenever stdout is not a terminal (pytest, CI): IPython is not a dependency.
        os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
        from tensorflowjs.converters.tf_saved_model_conversion_v2 import convert_tf_saved_model

        with _CONVERTER_LOCK, js_rewrite.applied_to_frozen_graph(self._rewrites):
            convert_tf_saved_model(
                str(self._saved_model), str(dest), signature_def="serving_default",
                quantization_dtype_map=dtype_map, weight_shard_size_bytes=self._shard_bytes,
                use_structured_outputs_names=True,
            )

    def _convert_layers(self, dest: Path, dtype_map) -> None:
        from tensorflowjs.converters.keras_h5_conversion import save_keras_model

        with _CONVERTER_LOCK, warnings.catch_warnings():
            # the converter saves an HDF5 copy internally; Keras warns that HDF5 is legacy
            warnings.filterwarnings("ignore", message=r".*saving your model as an HDF5 file")
            save_keras_model(self._keras, str(dest), quantization_dtype_map=dtype_map,
                             weight_shard_size_bytes=self._shard_bytes)

    # ---- conversion ------------------------------------------------------------------------
    def convert(self, variant: str, dest: Path, calibration: Mapping, config) -> Artifact:
        bundle = dest / variant
        started = time.perf_counter()
        if self._format == "layers":
            self._convert_layers(bundle, QUANTIZATION[variant])
            seconds = time.perf_counter() - started
        elif variant == "float32" and self._probe is not None:
            shutil.copytree(self._probe, bundle)
            seconds = self._probe_seconds
        elif self._probe is not None and js_quantize.can_requantize(self._probe):
            # same bytes as a conversion with this quantization map, without re-converting: js_quantize.py
            js_quantize.requantize(self._probe, bundle, QUANTIZATION[variant], self._shard_bytes)
            seconds = time.perf_counter() - started
        else:
            self._convert(bundle, QUANTIZATION[variant])
            seconds = time.perf_counter() - started
        canonical_model_json(bundle)
        shards = sorted(p.name for p in bundle.iterdir() if p.suffix == ".bin")
        details = {
            **self.plan,
            "weight_dtype": variant,
            "model_json": "model.json",
            "shards": len(shards),
            "convert_seconds": round(seconds, 3),
        }
        return Artifact(self.name, variant, bundle, details)

    # ---- runtime ---------------------------------------------------------------------------
    def run(self, request: RunRequest, work: Path) -> dict:
        bundle = Path(request.artifact.path)
        problems = bundle_problems(bundle)
        if problems:
            raise SecurityError(f"{bundle / 'model.json'}: {problems[0]}", details={"problems": problems})
        names = list(request.artifact.details.get("backends") or BACKENDS)
        modules = ensure_modules(harness_path("js", "package-lock.json").parent)
        tag = f"{request.artifact.variant}-{os.getpid()}-{threading.get_ident()}"
        with np.load(request.inputs, allow_pickle=False) as npz:
            inputs_index = write_tensors(work / f"js-{tag}.inputs", {k: npz[k] for k in npz.files})
        lat = request.latency
        payload = {
            "bundle": str(bundle / "model.json"), "inputs": str(inputs_index), "modules": str(modules),
            "outputs": str(work / f"js-{tag}.outputs"), "mode": request.mode, "threads": lat.threads,
            "warmup": lat.warmup, "iterations": lat.iterations, "max_seconds": lat.max_seconds,
        }
        if any(n.startswith("chromium-") for n in names):
            payload["chromium"] = chromium_binary()
        cmd = [node_binary(), str(harness_path("js", "harness.mjs"))]
        label = f"js/{request.artifact.variant}"
        if request.mode == "parity":
            result = run_child(cmd, {**payload, "backends": names}, work, timeout=600, label=label)
            return _worst_parity(result, names, request) if result.get("ok") else result
        per_backend = {}
        for name in names:  # one process per backend: clean load time and memory figures
            result = run_child(cmd, {**payload, "backends": [name]}, work,
                               timeout=lat.max_seconds * 4 + 120, label=f"{label}/{name}")
            if not result.get("ok"):
                return {**result, "error": f"{name} backend: {result.get('error')}"}
            per_backend[name] = result["backends"][name]
        slowest = max(names, key=lambda n: float(np.median(per_backend[n]["timings_ms"])))
        return {**per_backend[slowest], "ok": True, "backend": slowest, "backends": per_backend,
                "runtime": _runtime(names), "runtime_version": result["runtime_version"]}


def _runtime(names: list[str]) -> str:
    return f"tfjs[{','.join(names)}]"


def _worst_parity(result: dict, names: list[str], request: RunRequest) -> dict:
    """Write the outputs of the backend farthest from the reference to request.outputs, so the
    generic budget check judges the worst backend. The reference sits beside the inputs
    (validation/reference.npz) in a build and in `deploykit validate`."""
    from .. import parity

    outputs = {n: read_tensors(Path(result["backends"][n]["outputs"])) for n in names}
    reference_path = Path(request.inputs).with_name("reference.npz")
    errors = {}
    if reference_path.exists():
        with np.load(reference_path, allow_pickle=False) as npz:
            reference = {k: npz[k] for k in npz.files}
        for n in names:
            errors[n] = max(
                parity.output_metrics(reference[k], y.astype(reference[k].dtype))["max_abs_rel"]
                if k in reference and reference[k].shape == y.shape else float("inf")
                for k, y in outputs[n].items()
            )
    worst = max(names, key=lambda n: errors.get(n, 0.0))
    np.savez(request.outputs, **outputs[worst])
    return {"ok": True, "rows": result["backends"][worst]["rows"], "backend": worst,
            "backends": {n: {"max_abs_rel": errors.get(n), "load_ms": result["backends"][n]["load_ms"]} for n in names},
            "runtime": _runtime(names), "runtime_version": result["runtime_version"]}


def _check_layers_names(model) -> None:
    """A layers model answers with Keras's own input and output names: they must be the contract's."""
    keras = model.keras_model
    if keras is None:
        raise BadInputError(f"{model.source.location}: a TF.js layers model needs a tf_keras model "
                            "(.keras/.h5 saved with tf_keras, or module:function); use the graph format")
    if isinstance(keras.get_config().get("output_layers"), dict):  # TF.js: "Object is not iterable"
        raise BadInputError(f"{model.source.location}: TF.js layers models cannot read dict outputs; "
                            "return a list of outputs, or use the graph format")
    got = (list(keras.input_names), list(keras.output_names))
    want = (model.contract.input_names, model.contract.output_names)
    if [sorted(x) for x in got] != [sorted(x) for x in want]:
        raise BadInputError(f"{model.source.location}: Keras names {got} differ from the model's signature {want}; "
                            "a layers model would lose them: use the graph format")


def smallest_passing(artifacts: list[dict]) -> dict | None:
    """For `--js-quantize auto`: the smallest js entry that passed its budgets, if any. Entries are
    manifest entries or build records (an "artifact" instead of "target"/"variant")."""
    passed = [a for a in artifacts if _key(a)[0] == "js" and a["passed"]]
    return min(passed, key=lambda a: a["bytes"]) if passed else None


def quantization_notes(artifacts: list[dict]) -> list[str]:
    """One line per quantized js variant that failed, naming the smallest variant that passed."""
    best = smallest_passing(artifacts)
    fallback = (f"js/{_key(best)[1]} passed ({best['bytes']:,} bytes); --js-quantize auto keeps the smallest "
                "variant that passes" if best else "no js variant passed")
    return [f"js/{_key(a)[1]} failed its budget (weight quantization can wreck accuracy); {fallback}"
            for a in artifacts if _key(a)[0] == "js" and _key(a)[1] != "float32" and not a["passed"]]


def auto_select(records: list[dict]) -> dict:
    """`--js-quantize auto`: every js variant was built and validated; keep the smallest that passed.

    Marks the other js records `dropped` (the pipeline removes their folders and leaves them out of
    the manifest's artifacts) and returns the facts the manifest records: the selected variant and,
    for each rejected variant, why (failed its budget, with the failures, or passed but larger).
    When none passed nothing is dropped, so the build fails naming every failure."""
    js = [r for r in records if r["artifact"].target == "js"]
    best = smallest_passing(js)
    if best is None:
        return {"selected": None, "reason": "no js variant passed its budget", "rejected": []}
    chosen = best["artifact"].variant
    rejected = []
    for r in js:
        if r is best:
            continue
        r["dropped"] = True
        v = r["artifact"].variant
        reason = (f"passed, but {r['bytes']:,} bytes is larger than js/{chosen} ({best['bytes']:,} bytes)"
                  if r["passed"] else "failed its budget")
        rejected.append({"variant": v, "bytes": r["bytes"], "passed": r["passed"], "reason": reason,
                         "failures": list(r["failures"])})
    return {"selected": chosen, "bytes": best["bytes"],
            "reason": f"the smallest of {len(js)} js variant(s) that passed its budget", "rejected": rejected}


def _key(entry: dict) -> tuple[str, str]:
    a = entry.get("artifact")
    return (a.target, a.variant) if a is not None else (entry["target"], entry["variant"])


def unsupported_ops(message: str) -> list[str] | None:
    """The op names in the converter's 'Unsupported Ops in the model ...' error, else None."""
    if not message.startswith("Unsupported Ops"):
        return None
    return sorted({op.strip() for op in message.split("\n", 1)[-1].split(",") if op.strip()})


# ---- Node runtime: the binary, the npm cache, raw tensor files, bundle safety -------------------
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


def canonical_model_json(bundle: Path) -> None:
    """Sort every graph node's `attr` map in model.json. The converter writes these protobuf maps in
    an order that varies between runs, so two builds of one model gave different bundles; TF.js looks
    attributes up by name, so the order carries no meaning."""
    path = bundle / "model.json"
    doc = json.loads(path.read_text())
    if doc.get("format") != "graph-model":
        return

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("attr"), dict):
                node["attr"] = dict(sorted(node["attr"].items()))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc.get("modelTopology"))
    path.write_text(json.dumps(doc))


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

"""TF.js target: a graph-model bundle converted from the canonical SavedModel, validated in Node.

Conversion uses the tensorflowjs converter in-process (the float32 bundle doubles as the op
preflight: ops TF.js lacks are refused with exit 2 naming them). Quantized variants quantize the
weights only (`quantization_dtype_map`); activations stay float32 in every runtime.

Backends are part of the artifact's runtime: each variant is one artifact (one bundle folder),
and validating it runs the bundle on every backend in `details["backends"]`: by default cpu and
wasm in Node, and wasm in headless Chromium (the page served from 127.0.0.1, driven by
playwright-core). In parity mode every backend's outputs are written (`RunRequest.outputs_for`) and
the generic validation judges each one. Latency is measured where a deployment runs (every backend
but `cpu`, the pure-JavaScript reference kernels: `latency_backends`) and is the slowest of those,
with the figures of every timed backend kept under "backends" in the harness result.

Settings (`settings.py`: `[js]` in the config file, `--js-*` flags, `cfg.js` in code): format
(graph, the default, or layers: a tf_keras model saved with tensorflowjs's Keras converter),
shard_bytes, backends ("cpu,wasm" skips the browser check; "chromium-webgl" adds WebGL) and
quantize (a list of variants, or auto: `select.py`, run by `after_validation`). DEPLOYKIT_CHROMIUM
(default /usr/bin/chromium) stays an environment variable: it says where this machine keeps the
browser, not what to build.

Preflight rewrites (`rewrite.py`): ops TF.js lacks but that have an exact expression in ops it has
are rewritten in the frozen graph before conversion; parity then proves the rewritten bundle.
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np

from deploykit.errors import BadInputError, SecurityError, UnsupportedOpsError
from deploykit.runner import map_jobs, run_child
from deploykit.targets import harness_path
from deploykit.targets.base import Artifact, RunRequest, Target
from deploykit.targets.js import quantize as js_quantize
from deploykit.targets.js import retrace, select
from deploykit.targets.js import rewrite as js_rewrite
from deploykit.targets.js import settings as js_settings
from deploykit.targets.js.node import (
    bundle_problems,
    chromium_binary,
    ensure_modules,
    node_binary,
    read_tensors,
    write_tensors,
)

QUANTIZATION = {"float32": None, "float16": {"float16": "*"}, "uint16": {"uint16": "*"}, "uint8": {"uint8": "*"}}
BACKENDS = js_settings.BACKENDS
CONTROL_FLOW = {"Enter", "Exit", "LoopCond", "NextIteration", "While", "StatelessWhile"}
_CONVERTER_LOCK = threading.Lock()  # the converter builds TF graphs in global state: one at a time


class JSTarget(Target):
    name = "js"
    summary = "TF.js graph model (weight shards), validated with @tensorflow/tfjs in Node (cpu, wasm)"
    runtime = "tfjs"
    variants = js_settings.VARIANTS
    settings_class = js_settings.JSSettings
    options = js_settings.OPTIONS
    # Measured on the bundled example (digits CNN, 360 rows), worst backend, max_abs_rel: float32
    # 6.6e-7, float16 5.2e-4, uint16 7.4e-5, uint8 1.2e-2 (top-1 agreement 1.0 for all). The
    # budgets leave an order of magnitude of headroom for other models.
    default_budgets = {
        "float32": {"max_abs_rel": 1e-4},
        "float16": {"max_abs_rel": 1e-2, "cosine": 0.9999, "top1_agreement": 0.99},
        "uint16": {"max_abs_rel": 1e-3, "cosine": 0.9999, "top1_agreement": 0.99},
        "uint8": {"max_abs_rel": 0.1, "cosine": 0.99, "top1_agreement": 0.98},
    }

    def __init__(self, settings=None) -> None:
        super().__init__(settings)
        self._saved_model: Path | None = None
        self._keras = None  # the tf_keras model (layers format), or a handle that loads it
        self._format = self.settings.format
        self._shard_bytes = self.settings.shard_bytes
        self._rewrites: dict[str, int] = {}
        self._probe: Path | None = None  # the preflight's float32 bundle, reused by convert
        self._probe_seconds = 0.0
        self._requantized: dict = {}  # variant -> (bundle made by prepare, seconds)
        # LoadedModel.loaded_copy: (a SavedModel source's folder, the intake's tf.saved_model.load of it); the
        # converter's own load of that folder (seconds, hundreds of MB for an applications network) is skipped
        self._in_memory: tuple[Path, object] | None = None

    @classmethod
    def check_settings(cls, settings) -> None:
        js_settings.check(settings)

    def check_runtime(self, config=None) -> None:
        node_binary()  # raises MissingRuntimeError naming what to install
        if config is not None and any(b.startswith("chromium-") for b in self.settings.backends):
            chromium_binary()  # in `deploykit validate` (no config) run() checks it per artifact

    # ---- hooks -----------------------------------------------------------------------------
    def plan_variants(self, asked):
        if self.settings.quantize is not None:  # --js-quantize LIST|auto (auto alone: every variant)
            asked = tuple(v for v in self.settings.quantize if v != "auto") or None
        return super().plan_variants(asked)

    def asked_variants(self):
        if self.settings.quantize is None or self.settings.auto:  # auto: the hook picks among the variants
            return None
        return tuple(self.settings.quantize)

    def after_validation(self, records, rep):
        if not self.settings.auto:
            return None
        facts = select.auto_select(records)  # keep the smallest js variant that passed
        rep.info(f"--js-quantize auto: {facts['selected'] or 'no js variant passed'}")
        return {"quantize_auto": facts}

    def failure_notes(self, records):
        return [f"note: {n}" for n in select.quantization_notes([r for r in records if not r.rejected])]

    # ---- preflight -------------------------------------------------------------------------
    def prepare(self, model, saved_model, data, config, work) -> dict:
        settings = self.settings
        self._saved_model, self._keras = saved_model, model.keras_model
        self._in_memory = model.loaded_copy(saved_model)  # a SavedModel source read as it is
        strings = [t.name for t in model.contract.inputs if t.dtype == "string"]
        if strings:  # refused here, in the preflight (exit 2), not as a runtime failure after conversion
            raise UnsupportedOpsError(
                f"{model.source.location}: the TF.js target cannot feed string input(s) {', '.join(strings)} "
                "(TF.js runs string preprocessing only partly); build tflite (--allow-select-tf-ops) or serving",
                details={"string_inputs": strings})
        if self._format == "layers":
            _check_layers_names(model)
        probe = work / "js-preflight"
        started = time.perf_counter()
        self._probe_convert(model, probe)
        doc = json.loads((probe / "model.json").read_text())
        retraced = []
        if self._format == "graph" and _ops(doc) & ({"Einsum"} | CONTROL_FLOW):
            retraced = self._retrace(model, work, probe, doc)
            if retraced:
                doc = json.loads((probe / "model.json").read_text())
        self._probe, self._probe_seconds = probe, time.perf_counter() - started
        self.plan = {
            "format": f"{self._format}-model",
            "conversion_path": "saved_model" if self._format == "graph" else "keras_model",
            "backends": list(settings.backends),
            "weight_shard_bytes": self._shard_bytes,
            "signature": {k: sorted(doc.get("signature", {}).get(k, {})) for k in ("inputs", "outputs")},
            "ops": sorted({n["op"] for n in doc["modelTopology"].get("node", [])} - {"Const", "Placeholder"}),
            "rewrites": [{"op": op, "nodes": n, "into": js_rewrite.formula(op)}
                         for op, n in sorted(self._rewrites.items())],
        }
        self.plan["rewrites"] += retraced
        missing = set(model.contract.input_names) - set(self.plan["signature"]["inputs"])
        missing |= set(model.contract.output_names) - set(self.plan["signature"]["outputs"])
        if missing:
            raise BadInputError(f"{model.source.location}: the TF.js model.json signature lost the name(s) "
                                f"{', '.join(sorted(missing))}", details={"missing_names": sorted(missing)})
        # The weight-quantized variants are a re-write of the float32 bundle's weights (numpy, 0.1 to
        # 0.3 s each: quantize.py): done here, where tensorflowjs is already imported, instead of
        # in each convert worker (importing it costs a worker 5 to 10 s).
        self._requantized = {}
        if self._format == "graph" and js_quantize.can_requantize(probe):
            for variant in self.plan_variants(config.quantize):
                if variant != "float32":
                    t0 = time.perf_counter()
                    js_quantize.requantize(probe, work / f"js-{variant}", QUANTIZATION[variant], self._shard_bytes)
                    self._requantized[variant] = (work / f"js-{variant}", time.perf_counter() - t0)
        return dict(self.plan)

    def _probe_convert(self, model, probe: Path) -> None:
        """The float32 conversion of the preflight; ops TF.js lacks and no rule rewrites: exit 2, named."""
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

    def _retrace(self, model, work: Path, probe: Path, doc: dict) -> list[dict]:
        """Convert from a SavedModel of the same Keras model traced for TF.js (retrace.py): loops
        unrolled where the time steps are fixed, einsum as matrix products. Returns the rewrites
        made ([] when none applies: a SavedModel source, an open sequence length)."""
        from deploykit.intake import loader

        keras_model, ops = model.keras_object, _ops(doc)
        if keras_model is None:
            return []
        rewrites = []
        made = retrace.unrolled(keras_model) if ops & CONTROL_FLOW else None
        if made is not None:
            keras_model, count = made
            rewrites.append({"op": "While", "nodes": count, "into": retrace.UNROLLED})
        if "Einsum" in ops:
            rewrites.append({"op": "Einsum", "nodes": _nodes(doc, "Einsum"), "into": retrace.EINSUM})
        if not rewrites:
            return []
        traced = loader.from_keras_object(model.source, keras_model)
        if traced.contract != model.contract:  # names or shapes changed: keep the original graph
            return []
        try:
            with retrace.einsum_as_matmuls():
                self._saved_model = traced.export_saved_model(work / "js-retraced" / "saved_model")
        except ValueError:  # Keras could not trace the copy: keep the original graph
            return []
        shutil.rmtree(probe)
        self._probe_convert(model, probe)
        return rewrites

    def converted_in_preflight(self, variant: str) -> bool:
        if self._format != "graph":
            return False
        return (variant == "float32" and self._probe is not None) or variant in self._requantized

    def plan_state(self) -> dict:
        return {"plan": dict(self.plan), "saved_model": str(self._saved_model), "probe_seconds": self._probe_seconds,
                "requantized": {v: seconds for v, (_, seconds) in self._requantized.items()}}

    def resume(self, state, work, model) -> None:
        super().resume(state, work, model)
        self._saved_model, self._keras = Path(state["saved_model"]), model
        self._probe, self._probe_seconds = work / "js-preflight", state["probe_seconds"]
        self._requantized = {v: (work / f"js-{v}", seconds) for v, seconds in state.get("requantized", {}).items()}

    def _convert(self, dest: Path, dtype_map) -> None:
        from deploykit.tfenv import tensorflow

        tensorflow()  # sets up the one TensorFlow (legacy Keras) before tensorflowjs imports it
        # tensorflowjs imports tensorflow_decision_forests, whose welcome message imports IPython
        # whenever stdout is not a terminal (pytest, CI): IPython is not a dependency.
        os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
        from tensorflowjs.converters.tf_saved_model_conversion_v2 import convert_tf_saved_model

        # the hook hands over the loaded copy only for its folder (not for a retraced export)
        with _CONVERTER_LOCK, js_rewrite.applied_to_frozen_graph(self._rewrites, self._in_memory):
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
            keras = self._keras.get().keras_model if hasattr(self._keras, "get") else self._keras
            save_keras_model(keras, str(dest), quantization_dtype_map=dtype_map,
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
        elif variant in self._requantized:  # made by prepare from the float32 bundle
            made, seconds = self._requantized[variant]
            shutil.copytree(made, bundle)
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
            rows = {k: npz[k] for k in npz.files}
        inputs_index = write_tensors(work / f"js-{tag}.inputs", rows)
        lat = request.latency
        payload = {
            "bundle": str(bundle / "model.json"), "inputs": str(inputs_index), "modules": str(modules),
            "outputs": str(work / f"js-{tag}.outputs"), "mode": request.mode, "threads": lat.threads,
            "warmup": lat.warmup, **lat.sampling(),
        }
        if any(n.startswith("chromium-") for n in names):
            payload["chromium"] = chromium_binary()
        cmd = [node_binary(), str(harness_path("js", "harness.mjs"))]
        label = f"js/{request.artifact.variant}"
        if request.mode == "parity":
            return self._parity(request, cmd, payload, names, rows, work / f"js-{tag}", label)
        per_backend = {}
        timed = latency_backends(names)
        for name in timed:  # one process per backend: clean load time and memory figures
            result = run_child(cmd, {**payload, "backends": [name]}, work,
                               timeout=lat.max_seconds * 4 + 120, label=f"{label}/{name}")
            if not result.get("ok"):
                return {**result, "error": f"{name} backend: {result.get('error')}"}
            per_backend[name] = result["backends"][name]
        slowest = max(timed, key=lambda n: float(np.median(per_backend[n]["timings_ms"])))
        return {**per_backend[slowest], "ok": True, "backend": slowest, "backends": per_backend,
                "runtime": _runtime(names), "runtime_version": result["runtime_version"]}

    def _parity(self, request: RunRequest, cmd: list[str], payload: dict, names: list[str], rows: dict, prefix: Path,
                label: str) -> dict:
        """Every backend's outputs on the parity rows: the others in one harness process and, beside it, the
        slow pure-JavaScript `cpu` backend with its rows split over processes of their own (one per core)."""
        others = [n for n in names if n != "cpu"]
        jobs = [{**payload, "backends": others}] if others else []
        if "cpu" in names:
            for i, part in enumerate(_row_parts(rows, cpu_parity_processes(rows))):
                jobs.append({**payload, "backends": ["cpu"], "outputs": f"{payload['outputs']}.part{i}",
                             "inputs": str(write_tensors(Path(f"{prefix}.inputs.part{i}"), part))})
        results = map_jobs(lambda job: run_child(cmd, job, prefix.parent, timeout=600, label=label), jobs, len(jobs))
        failed = next((r for r in results if not r.get("ok")), None)
        if failed is not None:
            return failed
        backends = {n: facts for r in results for n, facts in r["backends"].items() if n != "cpu"}
        outputs = {n: read_tensors(Path(backends[n]["outputs"])) for n in others}
        if "cpu" in names:  # the parts, in row order (map_jobs keeps the order of its jobs)
            parts = [r["backends"]["cpu"] for r in results if "cpu" in r["backends"]]
            part_outputs = [read_tensors(Path(p["outputs"])) for p in parts]
            outputs["cpu"] = {k: np.concatenate([o[k] for o in part_outputs]) for k in part_outputs[0]}
            backends["cpu"] = {"rows": sum(p["rows"] for p in parts), "load_ms": max(p["load_ms"] for p in parts),
                               "seconds": max((p.get("seconds") or 0) for p in parts)}
        for n in names:  # one .npz of outputs per backend: the generic check judges each
            np.savez(request.outputs_for(n), **outputs[n])
        return {"ok": True, "rows": backends[names[0]]["rows"], "backends": names,
                "backend": names[0] if len(names) == 1 else None,
                "load_ms": {n: backends[n]["load_ms"] for n in names},
                "seconds": {n: backends[n].get("seconds") for n in names},
                "runtime": _runtime(names), "runtime_version": results[0]["runtime_version"]}


def cpu_parity_processes(rows: dict[str, np.ndarray]) -> int:
    """How many processes share the `cpu` backend's parity rows: one per core this process may use, at
    most one per row (the pure-JavaScript kernels run on one core; ResNet50 takes 7 s a row)."""
    n = len(next(iter(rows.values()))) if rows else 0
    return max(1, min(len(os.sched_getaffinity(0)), n))


def _row_parts(rows: dict[str, np.ndarray], parts: int) -> list[dict[str, np.ndarray]]:
    """`rows` cut into `parts` consecutive slices of (nearly) equal size, in order."""
    n = len(next(iter(rows.values())))
    bounds = np.linspace(0, n, parts + 1).round().astype(int)
    return [{k: v[a:b] for k, v in rows.items()} for a, b in zip(bounds[:-1], bounds[1:])]


def latency_backends(names: list[str]) -> list[str]:
    """Where latency is measured: the backends a deployment runs on. `cpu` (TF.js's pure-JavaScript
    kernels, the reference implementation) is checked for parity only; it is timed only when it is
    the only backend asked for (README: TF.js target)."""
    return [n for n in names if n != "cpu"] or list(names)


def _runtime(names: list[str]) -> str:
    return f"tfjs[{','.join(names)}]"


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


def _all_nodes(doc: dict) -> list[dict]:
    """The nodes of a graph model.json: its main graph's and its functions'."""
    topology = doc["modelTopology"]
    return [*topology.get("node", []), *(n for fn in topology.get("library", {}).get("function", [])
                                         for n in fn.get("nodeDef", []))]


def _ops(doc: dict) -> set[str]:
    return {n["op"] for n in _all_nodes(doc)}


def _nodes(doc: dict, op: str) -> int:
    return sum(n["op"] == op for n in _all_nodes(doc))


def unsupported_ops(message: str) -> list[str] | None:
    """The op names in the converter's 'Unsupported Ops in the model ...' error, else None."""
    if not message.startswith("Unsupported Ops"):
        return None
    return sorted({op.strip() for op in message.split("\n", 1)[-1].split(",") if op.strip()})


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



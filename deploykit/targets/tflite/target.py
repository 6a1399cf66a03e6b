"""TFLite target: convert with the TFLite converter, validate in the LiteRT interpreter.

Conversion path: the canonical SavedModel (dynamic batch) first. If that needs ops beyond the
TFLite builtins, retry from the model with fixed shapes (batch 1), which lets the converter lower
recurrent layers to builtin ops. If ops are still missing, refuse with exit 2 naming them, unless
`--allow-select-tf-ops` (then the artifact needs the Flex delegate, and the manifest says so).
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import Mapping

from deploykit import sandbox
from deploykit.errors import MissingRuntimeError, UnsupportedOpsError
from deploykit.runner import run_child
from deploykit.targets import harness_path
from deploykit.targets.base import Artifact, RunRequest, Target
from deploykit.targets.tflite import settings as tflite_settings
from deploykit.targets.tflite.preflight import flex_ops, representative, rows
from deploykit.tfenv import tensorflow

# Each conversion runs in a worker process of its own (deploykit.modelwork.convert): the converter's
# global state (the source type it passes through a class attribute, a shared fixed-shape
# tf.function) is never shared between two conversions, and a converter crash ends one worker.

FULL_INTEGER = ("int8", "int16x8")
_LOAD_LOCK = threading.RLock()  # _one_load_per_folder swaps a module global of the converter (it nests)
BACKEND = "litert"  # the one backend: the LiteRT interpreter (CPU kernels, XNNPACK for float)


class TFLiteTarget(Target):
    name = "tflite"
    summary = "TFLite flatbuffer, validated in the LiteRT interpreter"
    runtime = "litert"
    default = True  # `deploykit build` with no --target builds TFLite
    variants = ("float32", "float16", "dynamic", "int8", "int16x8")
    artifact_media_type = "application/vnd.deploykit.tflite.v1"  # one OCI layer per .tflite file
    settings_class = tflite_settings.TFLiteSettings
    top_level_settings = ("allow_select_tf_ops",)  # build(allow_select_tf_ops=True), as before [tflite]
    options = tflite_settings.OPTIONS
    default_budgets = {
        "float32": {"max_abs_rel": 1e-5},
        "float16": {"max_abs_rel": 1e-2, "cosine": 0.9999, "top1_agreement": 0.99},
        "dynamic": {"max_abs_rel": 0.1, "cosine": 0.99, "top1_agreement": 0.98},
        "int8": {"cosine": 0.99, "top1_agreement": 0.99},
        "int16x8": {"max_abs_rel": 0.05, "cosine": 0.999, "top1_agreement": 0.99},
    }

    def __init__(self, settings=None) -> None:
        super().__init__(settings)
        self._model = None  # a LoadedModel (prepare) or a ModelHandle (convert worker)
        self._saved_model: Path | None = None
        self._fixed_fn = None
        self._sample_shapes: dict = {}
        self._inputs: list[tuple[str, str]] = []  # (name, dtype) of the model's inputs
        self._probe: bytes | None = None  # the preflight's float32 flatbuffer, reused if it has no Flex ops
        self._probe_seconds = 0.0
        self._loaded: dict[Path, object] = {}  # SavedModel folder -> tf.saved_model.load of it (_one_load_per_folder)

    def check_runtime(self, config=None) -> None:
        """The harness runs with this Python: import the runtime the way it will (in a child: the
        build process loads no native runtime)."""
        import subprocess

        proc = subprocess.run([sys.executable, "-c", "import ai_edge_litert.interpreter"], capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            reason = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            raise MissingRuntimeError(
                f"the LiteRT runtime cannot be imported ({reason}); install it: pip install ai-edge-litert==2.3.0"
            )

    # ---- preflight -------------------------------------------------------------------------
    def prepare(self, model, saved_model, data, config, work) -> dict:
        self._model, self._saved_model = model, saved_model
        self._inputs = [(t.name, t.dtype) for t in model.contract.inputs]
        self._sample_shapes = {k: list(v.shape[1:]) for k, v in data.items()}
        if (copy := model.loaded_copy(saved_model)) is not None:  # a SavedModel source read as it is: loaded already
            self._loaded[copy[0]] = copy[1]
        started = time.perf_counter()
        with _one_load_per_folder(self._loaded):
            flatbuffer = self._converter("saved_model", select=True).convert()
        self._probe_seconds = time.perf_counter() - started
        flex = flex_ops(flatbuffer)
        path = "saved_model"
        if flex:
            try:
                fixed = self._converter("fixed_shape", select=True).convert()
            except Exception:  # noqa: BLE001 - a failed fallback leaves the first answer standing
                fixed = None
            if fixed is not None and not flex_ops(fixed):
                path, flex, flatbuffer = "fixed_shape", [], fixed
        if flex and not self.settings.allow_select_tf_ops:
            names = ", ".join(op.removeprefix("Flex") for op in flex)
            raise UnsupportedOpsError(
                f"{model.source.location}: needs TensorFlow ops outside the TFLite builtins: {names} "
                "(pass --allow-select-tf-ops to ship them with the Flex delegate)",
                details={"ops": flex},
            )
        self.plan = {"conversion_path": path, "needs_flex": bool(flex), "select_tf_ops": flex}
        if path == "fixed_shape":  # say what the artifact no longer accepts (the pipeline prints notes)
            fixed = {t.name: [1, *self._sample_shapes[t.name]] for t in model.contract.inputs}
            opened = {t.name: list(t.shape) for t in model.contract.inputs}
            self.plan["fixed_shapes"] = fixed
            self.plan["notes"] = [
                "input shapes fixed to convert to builtin ops (recurrent layers need static shapes): "
                + ", ".join(f"{n} {_dims(opened[n])} -> {_dims(fixed[n])}" for n in fixed)
                + "; the artifact accepts only these shapes"]
        (work / "probe.tflite").write_bytes(flatbuffer)
        self._probe = flatbuffer  # the float32 artifact (convert writes it out)
        return dict(self.plan)

    def converted_in_preflight(self, variant: str) -> bool:
        return variant == "float32" and self._probe is not None  # the preflight's flatbuffer

    def plan_state(self) -> dict:
        return {"plan": dict(self.plan), "saved_model": str(self._saved_model), "inputs": self._inputs,
                "sample_shapes": self._sample_shapes, "probe_seconds": self._probe_seconds}

    def resume(self, state, work, model) -> None:
        super().resume(state, work, model)
        self._model, self._saved_model = model, Path(state["saved_model"])
        self._inputs = [tuple(t) for t in state["inputs"]]
        self._sample_shapes = state["sample_shapes"]
        self._probe, self._probe_seconds = (work / "probe.tflite").read_bytes(), state["probe_seconds"]

    def _converter(self, path: str, *, select: bool):
        tf = tensorflow()
        if path == "saved_model":
            with _one_load_per_folder(self._loaded):
                conv = tf.lite.TFLiteConverter.from_saved_model(str(self._saved_model), signature_keys=["serving_default"])
        else:  # the model itself, traced with batch 1 (a convert worker loads it here)
            model = self._model.get() if hasattr(self._model, "get") else self._model
            if self._fixed_fn is None:
                self._fixed_fn = model.serving_function(batch=1, sample_shapes=self._sample_shapes)
            conv = tf.lite.TFLiteConverter.from_concrete_functions([self._fixed_fn.get_concrete_function()], model.trackable)
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if select:
            ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
        conv.target_spec.supported_ops = ops
        return conv

    # ---- conversion ------------------------------------------------------------------------
    def convert(self, variant: str, dest: Path, calibration: Mapping, config) -> Artifact:
        if variant == "float32" and self._probe is not None:  # converted during preflight
            return self._write(variant, dest, self._probe, self._probe_seconds, "float32", calibration)
        tf = tensorflow()
        conv = self._converter(self.plan["conversion_path"], select=self.plan["needs_flex"])
        extra = [tf.lite.OpsSet.SELECT_TF_OPS] if self.plan["needs_flex"] else []
        io_dtype = "float32"
        if variant == "float16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif variant == "dynamic":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        elif variant in FULL_INTEGER:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = representative(calibration, [n for n, _ in self._inputs],
                                                          by_name=self.plan["conversion_path"] == "saved_model")
            if variant == "int8":
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] + extra
                if all(dtype.startswith("float") for _, dtype in self._inputs):
                    conv.inference_input_type = tf.int8
                    conv.inference_output_type = tf.int8
                    io_dtype = "int8"
            else:
                conv.target_spec.supported_ops = [
                    tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                    tf.lite.OpsSet.TFLITE_BUILTINS,  # float fallback for ops without a 16x8 kernel
                ] + extra
        started = time.perf_counter()
        with _one_load_per_folder(self._loaded):
            flatbuffer = conv.convert()
        return self._write(variant, dest, flatbuffer, time.perf_counter() - started, io_dtype, calibration)

    def _write(self, variant, dest: Path, flatbuffer: bytes, seconds: float, io_dtype: str, calibration) -> Artifact:
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / f"model_{variant}.tflite"
        path.write_bytes(flatbuffer)
        details = {
            **self.plan,
            "io_dtype": io_dtype,
            "convert_seconds": round(seconds, 3),
            "calibration_rows": rows(calibration) if variant in FULL_INTEGER else 0,
        }
        return Artifact(self.name, variant, path, details)

    # ---- runtime ---------------------------------------------------------------------------
    def run(self, request: RunRequest, work: Path) -> dict:
        lat = request.latency
        payload = {  # absolute paths: the sandboxed harness starts in its scratch folder
            "model": str(Path(request.artifact.path).resolve()),
            "inputs": str(Path(request.inputs).resolve()),
            "outputs": str(request.outputs_for(BACKEND).resolve()),
            "mode": request.mode,
            "flex": bool(request.artifact.details.get("needs_flex")),
            "threads": lat.threads,
            "warmup": lat.warmup,
            **lat.sampling(),
        }
        label = f"tflite/{request.artifact.variant}"
        timeout = 600 if request.mode == "parity" else lat.max_seconds * 4 + 120
        cmd = [sys.executable, str(harness_path("tflite", "harness.py"))]
        if self.sandboxed:  # the flatbuffer came from someone's model: no network, no files but its own
            cmd = sandbox.command(cmd, reads=[request.artifact.path, request.inputs], scratch=work)
        result = run_child(cmd, payload, work, timeout=timeout, label=label)
        if result.get("ok") and request.mode == "parity":
            result["backends"] = [BACKEND]
        return result


def _dims(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


@contextlib.contextmanager
def _one_load_per_folder(loaded: dict):
    """While converting: TFLite's SavedModel path loads the folder with tf.saved_model.load twice, once in
    from_saved_model (for its signatures) and once in convert() (for debug info), besides its own C++
    import that the conversion uses. For a Keras-saved network each load rebuilds every layer's functions
    (MobileNetV2: 3-4 s each, most of the conversion). Here each folder is loaded once; `loaded` holds
    the folders already loaded (a SavedModel source's, by the intake) and keeps the ones loaded here."""
    from tensorflow.lite.python import lite

    original = lite._load

    def load(saved_model_dir, tags=None):
        key = Path(saved_model_dir)
        if key not in loaded:
            loaded[key] = original(saved_model_dir, tags)
        return loaded[key]

    with _LOAD_LOCK:
        lite._load = load
        try:
            yield
        finally:
            lite._load = original


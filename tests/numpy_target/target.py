"""The numpy target: a folder with `layers.json` and `weights.npz`, evaluated by `runtime.py`."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploykit.errors import UnsupportedOpsError
from deploykit.runner import run_child
from deploykit.targets.base import Artifact, Option, RunRequest, Target

SUPPORTED = {"InputLayer", "Conv2D", "MaxPooling2D", "Flatten", "Dense"}
RUNTIME = Path(__file__).with_name("runtime.py")


@dataclass(frozen=True)
class NumpySettings:
    threads: int = 1  # recorded only: numpy's einsum runs on one core here


class NumpyTarget(Target):
    name = "numpy"
    summary = "numpy evaluation of simple Keras CNNs (a test-only plugin target)"
    runtime = "numpy"
    variants = ("float32", "float16")
    default_budgets = {
        "float32": {"max_abs_rel": 1e-5},
        "float16": {"max_abs_rel": 1e-2, "cosine": 0.9999, "top1_agreement": 0.99},
    }
    settings_class = NumpySettings
    options = (Option("--numpy-threads", "threads", "numpy: threads recorded in the manifest.", metavar="N", type=int),)

    def prepare(self, model, saved_model, data, config, work) -> dict:
        keras = model.keras_model
        names = [type(layer).__name__ for layer in keras.layers] if keras is not None else ["(not a tf_keras model)"]
        missing = sorted(set(names) - SUPPORTED)
        if missing:
            raise UnsupportedOpsError(f"{model.source.location}: the numpy target cannot run {', '.join(missing)}")
        self._layers = []
        self._weights = {}
        for i, layer in enumerate(keras.layers):
            cfg = layer.get_config()
            spec = {"kind": type(layer).__name__, "activation": cfg.get("activation", "linear"),
                    "padding": cfg.get("padding", "valid")}
            for j, w in enumerate(layer.get_weights()):
                self._weights[f"{i}_{j}"] = w
            spec["weights"] = [f"{i}_{j}" for j in range(len(layer.get_weights()))]
            self._layers.append(spec)
        self._names = (model.contract.input_names[0], model.contract.output_names[0])
        np.savez(work / "weights.npz", **self._weights)  # convert runs in another process: see resume
        return {"layers": len(self._layers), "threads": self.settings.threads}

    def plan_state(self) -> dict:
        return {"layers": self._layers, "names": list(self._names)}

    def resume(self, state, work, model) -> None:
        self._layers, self._names = state["layers"], tuple(state["names"])
        with np.load(work / "weights.npz", allow_pickle=False) as npz:
            self._weights = {k: npz[k] for k in npz.files}

    def convert(self, variant, dest, calibration, config) -> Artifact:
        folder = dest / variant
        folder.mkdir(parents=True)
        dtype = np.float16 if variant == "float16" else np.float32
        doc = {"layers": self._layers, "input": self._names[0], "output": self._names[1]}
        (folder / "layers.json").write_text(json.dumps(doc, sort_keys=True))
        np.savez(folder / "weights.npz", **{k: v.astype(dtype) for k, v in self._weights.items()})
        return Artifact(self.name, variant, folder, {"weight_dtype": variant})

    def run(self, request: RunRequest, work: Path) -> dict:
        lat = request.latency
        payload = {"artifact": str(request.artifact.path), "inputs": str(request.inputs), "mode": request.mode,
                   "outputs": str(request.outputs_for(self.runtime)), "warmup": lat.warmup,
                   "iterations": lat.iterations, "max_seconds": lat.max_seconds}
        result = run_child([sys.executable, str(RUNTIME)], payload, work, timeout=300, label=f"numpy/{request.artifact.variant}")
        if result.get("ok") and request.mode == "parity":
            result["backends"] = [self.runtime]
        return result

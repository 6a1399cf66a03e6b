"""Registry of deployment targets.

Listing targets must not import TensorFlow: target modules import it inside their methods only,
so reading the class attributes here is cheap.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import BadInputError
from .base import Artifact, RunRequest, Target

# name -> "module:Class". Later targets (js, serving) register here.
REGISTRY = {
    "tflite": "deploykit.targets.tflite:TFLiteTarget",
    "js": "deploykit.targets.js:JSTarget",
    "serving": "deploykit.targets.serving:ServingTarget",
}


def target_class(name: str) -> type[Target]:
    try:
        spec = REGISTRY[name]
    except KeyError:
        raise BadInputError(f"unknown target '{name}' (available: {', '.join(REGISTRY)})") from None
    module, cls = spec.split(":")
    return getattr(importlib.import_module(module), cls)


def resolve(names: tuple[str, ...]) -> list[str]:
    if not names or "all" in names:
        return list(REGISTRY)
    for name in names:
        target_class(name)
    return list(dict.fromkeys(names))


def harness_path(target: str, filename: str) -> Path:
    """Where the code that runs inside a target's runtime lives.

    In a wheel it is shipped as `deploykit/_targets/`; in a source checkout it is `targets/`.
    """
    package = Path(__file__).resolve().parent.parent
    for root in (package / "_targets", package.parent / "targets"):
        candidate = root / target / filename
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"harness {target}/{filename} not found under {package}")


__all__ = ["Artifact", "RunRequest", "Target", "REGISTRY", "target_class", "resolve", "harness_path"]

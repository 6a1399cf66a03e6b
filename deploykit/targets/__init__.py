"""Registry of deployment targets.

A target is one folder here (`deploykit/targets/<name>/`, its `Target` class in `target.py`) and
one line in `BUILTIN`. A target from another package registers itself with an entry point in the
`deploykit.targets` group (`name = "package.module:Class"` in its pyproject's
`[project.entry-points."deploykit.targets"]`), the way pytest takes plugins.

Listing targets must not import TensorFlow: target modules import it inside their methods only,
so reading the class attributes here is cheap.
"""
from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path

from deploykit.errors import BadInputError
from deploykit.targets.base import Artifact, Option, RunRequest, Target

# name -> "module:Class"
BUILTIN = {
    "tflite": "deploykit.targets.tflite.target:TFLiteTarget",
    "js": "deploykit.targets.js.target:JSTarget",
    "serving": "deploykit.targets.serving.target:ServingTarget",
}
ENTRY_POINT_GROUP = "deploykit.targets"


def _registry() -> dict[str, str]:
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)  # a plugin cannot replace a built-in target
    return found


REGISTRY = _registry()


@lru_cache(maxsize=None)
def target_class(name: str) -> type[Target]:
    try:
        spec = REGISTRY[name]
    except KeyError:
        raise BadInputError(f"unknown target '{name}' (available: {', '.join(REGISTRY)})") from None
    module, cls = spec.split(":")
    found = getattr(importlib.import_module(module), cls)
    if not (isinstance(found, type) and issubclass(found, Target)) or found.name != name:
        raise BadInputError(f"target '{name}': {spec} is not a deploykit Target named '{name}'")
    return found


def resolve(names: tuple[str, ...]) -> list[str]:
    """Target names to build: the given ones, every registered one for 'all', the default ones for none."""
    if not names:
        return [n for n in REGISTRY if target_class(n).default]
    if "all" in names:
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


__all__ = ["Artifact", "Option", "RunRequest", "Target", "BUILTIN", "REGISTRY", "target_class", "resolve", "harness_path"]

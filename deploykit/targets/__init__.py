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

from deploykit.errors import BadInputError, MissingRuntimeError
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
    """The Target class registered as `name`. A plugin that cannot be imported is exit 4 naming its
    entry point (built-in targets import only the standard library, numpy and deploykit here)."""
    try:
        spec = REGISTRY[name]
    except KeyError:
        raise BadInputError(f"unknown target '{name}' (available: {', '.join(REGISTRY)})") from None
    module, _, cls = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module), cls)
    except Exception as exc:  # noqa: BLE001 - a broken plugin: ImportError, AttributeError, its own errors
        if name in BUILTIN:
            raise
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise MissingRuntimeError(f"target '{name}': its entry point {spec} (group {ENTRY_POINT_GROUP}) cannot be "
                                  f"loaded: {type(exc).__name__}: {first}; reinstall or uninstall that package") from None
    if not (isinstance(found, type) and issubclass(found, Target)) or getattr(found, "name", None) != name:
        raise BadInputError(f"target '{name}': {spec} is not a deploykit Target named '{name}'")
    return found


def loadable() -> dict[str, type[Target]]:
    """Every registered target that loads; a broken plugin is left out here (it fails only the
    builds that name it), so one bad package does not break every build and listing."""
    found = {}
    for name in REGISTRY:
        try:
            found[name] = target_class(name)
        except MissingRuntimeError:
            continue
    return found


def broken() -> dict[str, str]:
    """Plugins that cannot be loaded: name -> why."""
    problems = {}
    for name in REGISTRY:
        try:
            target_class(name)
        except (MissingRuntimeError, BadInputError) as exc:
            problems[name] = exc.message
    return problems


def resolve(names: tuple[str, ...]) -> list[str]:
    """Target names to build: the given ones, every registered one for 'all', the default ones for none."""
    if not names:
        return [n for n, cls in loadable().items() if cls.default]
    if "all" in names:
        return list(loadable())
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


__all__ = ["Artifact", "Option", "RunRequest", "Target", "BUILTIN", "REGISTRY", "target_class", "loadable", "broken",
           "resolve", "harness_path"]

"""Import and call a user's `module:function`: the model builder of a `module:function` model source,
and the fit stage's model and dataset builders.

The working folder is importable (as `python -c` would have it). Every failure is bad input
(exit 2) on one line that leads with `what` (a config field such as "model", or the spec itself):
a module that cannot be imported, a missing function, and anything the module or the function
raises, `SystemExit` included (a builder that calls `sys.exit(0)` did not build anything).
Only `KeyboardInterrupt` (also how the CLI delivers SIGTERM) goes through, and a `BadInputError`
keeps its own message.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, Callable

from deploykit.errors import BadInputError


def resolve(spec: str, what: str | None = None) -> Callable:
    """The function `spec` ("module:function") names; errors lead with `what` (default: the spec)."""
    what = what or spec
    module_name, sep, func_name = spec.partition(":")
    if not (sep and module_name and func_name):
        raise BadInputError(f"{what}: {spec!r} is not of the form module:function")
    _working_folder_on_path()
    try:
        module = importlib.import_module(module_name)
    except KeyboardInterrupt:
        raise
    except BadInputError:
        raise
    except ImportError as exc:
        raise BadInputError(f"{what}: cannot import module '{module_name}' ({_first_line(exc) or type(exc).__name__})") from None
    except BaseException as exc:  # noqa: BLE001 - the module's own code failed (or exited) on import
        raise BadInputError(f"{what}: importing module '{module_name}' raised {_describe(exc)}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise BadInputError(f"{what}: module '{module_name}' has no function '{func_name}'")
    return func


def call(spec: str, what: str | None = None, /, *args: Any, **kwargs: Any) -> Any:
    """Resolve `spec` and call it with `args`; whatever it raises becomes a BadInputError naming
    the spec and the exception (see the module docstring)."""
    what = what or spec
    func = resolve(spec, what)
    try:
        return func(*args, **kwargs)
    except KeyboardInterrupt:
        raise
    except BadInputError:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit too: a builder must return, never end the run
        subject = "the builder" if what == spec else spec
        raise BadInputError(f"{what}: {subject} raised {_describe(exc)}") from exc


def _working_folder_on_path() -> None:
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""


def _describe(exc: BaseException) -> str:
    line = _first_line(exc)
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__

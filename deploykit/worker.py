"""Model work in a child process: `call()` in the parent, `main()` in the worker.

The parent (the CLI: it holds the output folder and its lock) never imports TensorFlow. Each job
(`deploykit.modelwork`: intake, prepare, convert, and the serving target's in-process checks)
runs as `python -m deploykit.worker JOB REQUEST.json`, inside the sandbox (`deploykit.sandbox`)
unless the model is trusted, and answers with one JSON file. A worker that crashes (SIGSEGV in a
converter), runs past its deadline or past its memory cap becomes a `WorkerFailed` naming the job
and the cause; the parent goes on with the other jobs.

Direction of trust: the request goes parent -> worker and may carry a pickled `BuildConfig` (the
worker only reads what the parent wrote). The answer goes worker -> parent as JSON only, and the
parent treats it as data: error classes are looked up among deploykit's own, paths are checked to
lie inside the worker's scratch folder (`inside()`).
"""
from __future__ import annotations

import errno
import json
import os
import pickle
import sys
import traceback
from pathlib import Path
from typing import Iterable

from deploykit import errors, sandbox
from deploykit.errors import DeployKitError
from deploykit.runner import run_child

DEFAULT_TIMEOUT = float(os.environ.get("DEPLOYKIT_WORKER_TIMEOUT", 3600))


class WorkerFailed(DeployKitError):
    """A worker crashed, hung past its deadline or ran out of memory (not an error it reported)."""

    code = "worker_failed"


def call(job: str, request: dict, *, scratch: Path, sandboxed: bool, reads: Iterable[Path | str] = (),
         config=None, targets: Iterable[str] = (), timeout: float = DEFAULT_TIMEOUT, label: str | None = None,
         memory_mb: int | None = None) -> dict:
    """Run `deploykit.modelwork.JOB(request)` in a worker; return its result (a JSON dict).
    `targets`: the build's targets, so that one registered in this process (not by an entry point)
    is found there too.

    Raises the worker's own DeployKitError (same class, message and details) or WorkerFailed."""
    label = label or job
    scratch = Path(scratch).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    # every target the config holds settings for: unpickling them imports their modules
    registry, roots = _target_imports(dict.fromkeys([*targets, *(getattr(config, "target_settings", None) or {})]))
    # oneDNN off: on CPUs where it is on (x86 with AVX-512, this project's machines among them) grappler
    # fuses patterns only oneDNN kernels run, e.g. Conv2D+BiasAdd+hard-swish into _FusedConv2D with
    # _FusedHardSwish, which the TF.js converter keeps and no TF.js backend implements (MobileNetV3).
    # Every worker converts and computes the same graph on every machine.
    env = {"PYTHONDONTWRITEBYTECODE": "1", "TF_ENABLE_ONEDNN_OPTS": "0"}
    if roots:
        env["PYTHONPATH"] = os.pathsep.join([*roots, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
    request = {**request, "registry": registry}
    if config is not None:  # parent -> worker only
        cfg_path = scratch / "config.pickle"
        cfg_path.write_bytes(pickle.dumps(config))
        request["config"] = str(cfg_path)
    cmd = [sys.executable, "-m", "deploykit.worker", job]
    if sandboxed:
        cmd = sandbox.command(cmd, reads=[*reads, *roots], scratch=scratch, env=env)
    answer = run_child(cmd, request, scratch, timeout=timeout, label=label, env=env,
                       memory_mb=memory_mb or memory_cap_mb())
    if answer.get("ok"):
        return answer.get("result") or {}
    text = str(answer.get("error", ""))
    for marker, code in (("No space left on device", errno.ENOSPC), ("Disk quota exceeded", errno.EDQUOT)):
        if marker in text:  # the build's folder is full, not the model's fault: OutputFolder names it (exit 2)
            raise OSError(code, marker)
    raise _error(answer, label)


def _target_imports(names: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """Targets the worker's own registry lacks (registered in this process): name -> "module:Class",
    and the folders their packages import from."""
    from deploykit.targets import BUILTIN, REGISTRY, _registry, target_class

    known = _registry()
    registry, roots = {}, []
    for name in names:
        if name in BUILTIN or known.get(name) == REGISTRY.get(name):
            continue
        registry[name] = REGISTRY[name]
        top = sys.modules[target_class(name).__module__.split(".")[0]]
        where = Path(top.__file__).resolve()
        root = where.parent.parent if where.name == "__init__.py" else where.parent
        if str(root) not in roots:
            roots.append(str(root))
    return registry, roots


def memory_cap_mb() -> int:
    """A worker's memory cap: DEPLOYKIT_WORKER_MEMORY_MB, else 80% of this machine's memory."""
    if os.environ.get("DEPLOYKIT_WORKER_MEMORY_MB"):
        return int(os.environ["DEPLOYKIT_WORKER_MEMORY_MB"])
    import psutil

    return int(psutil.virtual_memory().total * 0.8 / 2**20)


def inside(scratch: Path, path: str) -> Path:
    """A path a worker returned, refused unless it lies inside its scratch folder."""
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(Path(scratch).resolve()) or resolved.is_symlink():
        raise WorkerFailed(f"a worker returned a path outside its scratch folder: {path[:200]}")
    return resolved


def _error(answer: dict, label: str) -> DeployKitError:
    cls = getattr(errors, str(answer.get("error_class")), None)
    message = str(answer.get("error", f"{label}: failed"))[:4000]
    if isinstance(cls, type) and issubclass(cls, DeployKitError) and cls is not errors.BudgetError:
        return cls(message, details=answer.get("details"))
    if "error_class" in answer:  # the job raised something unexpected: a bug, with its traceback
        return DeployKitError(f"{label}: {message}", details={"traceback": answer.get("traceback")})
    return WorkerFailed(message)  # crashed, hung or out of memory (run_child's words)


# ---- inside the worker ----------------------------------------------------------------------------
def main(argv: list[str]) -> int:
    job, request_path = argv
    request = json.loads(Path(request_path).read_text())
    response = Path(request["response"])
    try:
        if request.get("registry"):  # targets the parent registered in its own process
            from deploykit.targets import REGISTRY, target_class

            REGISTRY.update(request["registry"])
            target_class.cache_clear()
        if "config" in request:
            request["config"] = pickle.loads(Path(request["config"]).read_bytes())
        from deploykit import modelwork

        answer = {"ok": True, "result": getattr(modelwork, job)(request)}
    except DeployKitError as exc:
        answer = {"ok": False, "error_class": type(exc).__name__, "error": exc.message,
                  "details": _jsonable(exc.details)}
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        first = (str(exc).strip().splitlines() or [""])[0]
        answer = {"ok": False, "error_class": None, "error": f"{type(exc).__name__}: {first[:500]}",
                  "traceback": traceback.format_exc()[-4000:]}
    response.write_text(json.dumps(answer, default=str))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip TensorFlow's teardown (slow, and it can crash at exit)


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=str))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

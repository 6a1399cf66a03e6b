"""The sandbox model work runs in: bubblewrap (Debian's `bubblewrap`), one process per job.

Why bubblewrap: it is the small, setuid-free launcher Flatpak is built on, packaged by Debian and
kept up to date there; it uses the kernel's own user, mount, network, PID and IPC namespaces, so
there is no daemon and nothing to configure, and a worker starts in a few milliseconds. (Landlock
needs a newer kernel than some CI runners have, and a seccomp/namespace wrapper of our own would be
security code nobody else reviews.)

What a sandboxed worker sees (`command()`):
- the file system read-only and only: the system folders a Python process needs (/usr, /lib*,
  /bin, /etc/ld.so.*, ...), this Python installation (its prefix and the venv), deploykit's own
  code, the paths the job reads (the model, the data) and its scratch folder, the only place it
  can write (besides an empty, private /tmp). The user's home, /root and every other file are
  absent; the folders that lead to the bound paths exist, empty and read-only.
- no network at all (a fresh network namespace: not even 127.0.0.1 reaches the host's services);
- its own PID namespace, a fresh session (no terminal to inject into), a cleared environment;
- `--die-with-parent`: it dies with the deploykit thread that started it.

Where bubblewrap cannot start (not installed, a kernel without unprivileged user namespaces, a
container that forbids them) `require()` raises MissingRuntimeError (exit 4) naming the cause and
the opt-out, `--trust-model`. Nothing falls back to running a model from elsewhere unsandboxed.
"""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from deploykit.errors import MissingRuntimeError

OPT_OUT = "--trust-model"
# system folders every worker needs, read-only, when they exist
SYSTEM_PATHS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/ld.so.cache", "/etc/ld.so.conf",
                "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime")
# the environment a worker keeps (everything else, tokens and credentials among them, is dropped)
KEEP_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "TF_CPP_MIN_LOG_LEVEL", "TF_USE_LEGACY_KERAS", "CUDA_VISIBLE_DEVICES",
            "OMP_NUM_THREADS", "TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS", "PYTHONHASHSEED",
            "DEPLOYKIT_PARENT_PID", "TFDF_DISABLE_WELCOME_MESSAGE", "PYTHONPATH",
            # deploykit's own settings that targets read while preparing (never the registry credentials)
            "DEPLOYKIT_SERVING_BASE_IMAGE", "DEPLOYKIT_CHROMIUM", "DEPLOYKIT_DOCKER_NETWORK")


def bwrap_binary() -> str | None:
    """`DEPLOYKIT_BWRAP` (a path, e.g. to a newer build) or `bwrap` on PATH."""
    return os.environ.get("DEPLOYKIT_BWRAP") or shutil.which("bwrap")


@lru_cache(maxsize=None)
def _probe(binary: str | None) -> str | None:
    """None when a sandbox starts here, else why not (one line)."""
    if not binary or not Path(binary).exists():
        return "bubblewrap (bwrap) is not installed: run `bash scripts/setup.sh` (apt-get install bubblewrap)"
    try:
        proc = subprocess.run([binary, *_namespace_args(), *_ro(SYSTEM_PATHS), "--", "/bin/true"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap ({binary}) cannot run: {exc}"
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return f"bubblewrap cannot create a sandbox here ({reason}; are unprivileged user namespaces enabled?)"
    return None


def unavailable_reason() -> str | None:
    return _probe(bwrap_binary())


def require(what: str) -> None:
    """Raise MissingRuntimeError (exit 4) when the sandbox cannot start; `what` names the model."""
    reason = unavailable_reason()
    if reason:
        raise MissingRuntimeError(
            f"{what}: refusing to load a model from elsewhere without a sandbox: {reason}. "
            f"Pass {OPT_OUT} to load it unsandboxed if you trust where it came from",
            details={"sandbox": "bubblewrap", "reason": reason, "opt_out": OPT_OUT},
        )


def python_paths(pythonpath: str | None = None) -> list[str]:
    """What this Python needs to run deploykit: its installation, the venv, deploykit's code,
    and PYTHONPATH entries (plugin targets installed that way)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"], *site.getsitepackages()}
    # package folders a .pth file adds (e.g. a venv that borrows another's site-packages); never the
    # working folder, which `python -m` puts first
    paths.update(p for p in sys.path if p and ("site-packages" in p or "dist-packages" in p))
    package = Path(__file__).resolve().parent
    # deploykit's code, its runtime harnesses and templates (a source checkout / editable install)
    paths.update({str(package), str(package.parent / "targets"), str(package.parent / "docker")})
    real_exe = Path(sys.executable).resolve()
    paths.add(str(real_exe.parent.parent))  # the interpreter the venv's python links to
    paths.update(p for p in (pythonpath if pythonpath is not None else os.environ.get("PYTHONPATH", "")).split(os.pathsep) if p)
    return sorted(p for p in paths if p and Path(p).exists())


def command(cmd: list[str], *, reads: Iterable[Path | str] = (), scratch: Path, cwd: Path | None = None,
            env: dict | None = None) -> list[str]:
    """`cmd` wrapped in bubblewrap: `reads` read-only, `scratch` read-write, nothing else of the host.
    The environment is KEEP_ENV's variables of this one, then `env`."""
    binary = bwrap_binary()
    scratch = Path(scratch).resolve()
    env = dict(env or {})
    args = [binary, *_namespace_args(), *_ro(SYSTEM_PATHS), *_ro(python_paths(env.get("PYTHONPATH")))]
    for path in reads:
        path = Path(path).resolve()
        if path.exists():
            args += ["--ro-bind", str(path), str(path)]
    args += ["--bind", str(scratch), str(scratch), "--remount-ro", "/", "--chdir", str(cwd or scratch)]
    args += ["--clearenv", "--setenv", "HOME", str(scratch), "--setenv", "TMPDIR", "/tmp"]
    kept = {key: os.environ[key] for key in KEEP_ENV if key in os.environ}
    for key, value in {**kept, **env}.items():
        args += ["--setenv", key, value]
    return [*args, "--", *cmd]


def _namespace_args() -> list[str]:
    return ["--unshare-all", "--die-with-parent", "--new-session", "--proc", "/proc", "--dev", "/dev",
            "--tmpfs", "/tmp", "--dir", "/var/tmp"]


def _ro(paths: Iterable[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        if os.path.lexists(p):
            out += ["--ro-bind", p, p]
    return out

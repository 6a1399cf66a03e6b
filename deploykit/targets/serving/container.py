"""Containers for the serving target, through the Docker Engine API (the `docker` package).

One job: the image and container lifecycle. Render the Dockerfile from the `docker/` templates,
build the image (reading the build stream and failing on an error in it), run it hardened (non-root
user, read-only root filesystem, every capability dropped, no-new-privileges; REST and gRPC on
127.0.0.1: published ports when the daemon has a bridge network, `--network host` with free ports
otherwise), wait for the model to be AVAILABLE with a deadline, always stop and remove the container,
print its logs on failure, and push (failing on `errorDetail` in the push stream).
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

from deploykit.errors import BadInputError, MissingRuntimeError

DEFAULT_BASE_IMAGE = "tensorflow/serving:2.19.0"  # the TF Serving release matching the pinned TensorFlow
LABEL = "org.deploykit.container"  # every container deploykit starts carries it (tests assert none are left)
# ... and who started it (this boot of this machine, the pid namespace, the pid and its start time): a later build removes
# the containers of an owner that is gone (a killed build cannot remove its own)
OWNER_LABEL = "org.deploykit.owner"
SERVING_USER = "10001:10001"
DOCKER_HINT = ("start one (as root: bash scripts/setup-docker.sh, or `dockerd --iptables=false --bridge=none &`), "
               "or pass --no-container to run only the in-process check")
# name[:tag][@sha256:<64 hex>] (registry host and port allowed in the name)
_IMAGE_REF = re.compile(r"^[a-z0-9]+(?:[._\-/:][a-z0-9]+)*(?::[\w][\w.\-]{0,127})?(?:@sha256:[0-9a-f]{64})?$")


class ContainerError(RuntimeError):
    """A build, start, readiness or push failure; the message carries the log tail."""


def check_image_ref(ref: str, flag: str) -> str:
    if not ref or not _IMAGE_REF.match(ref) or ref.endswith("@"):
        raise BadInputError(f"{flag}: {ref!r} is not an image reference (NAME[:TAG] or NAME@sha256:<64 hex>)")
    return ref


def client():
    """A connected Docker client, or MissingRuntimeError (exit 4) naming what to run."""
    try:
        import docker
    except ImportError as exc:
        raise MissingRuntimeError(f"the serving target needs the docker package ({exc}): pip install 'docker>=7,<8'") from None
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        c = docker.from_env(timeout=120)
        c.ping()
    except Exception as exc:  # noqa: BLE001 - docker raises DockerException, requests errors, OSError
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise MissingRuntimeError(f"the serving target's container check needs a Docker daemon, and none answers at "
                                  f"{where} ({reason}): {DOCKER_HINT}") from None
    return c


# ---- Dockerfile and image ---------------------------------------------------------------------
def template_dir() -> Path:
    """`docker/` in a source checkout; `deploykit/_docker/` inside the wheel."""
    package = Path(__file__).resolve().parents[2]  # deploykit/
    for root in (package / "_docker", package.parent / "docker"):
        if (root / "Dockerfile.serving.j2").exists():
            return root
    raise FileNotFoundError(f"docker/Dockerfile.serving.j2 not found under {package}")


def render_dockerfile(**values) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir())), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)  # noqa: S701 - a Dockerfile, not HTML
    return env.get_template("Dockerfile.serving.j2").render(**values)


def build_image(c, context: Path, tag: str, labels: Mapping[str, str]) -> dict:
    """Build `context/Dockerfile`; returns {"tag", "id"}. The base image must be local or pullable."""
    log: list[str] = []
    image_id = None
    try:
        for chunk in c.api.build(path=str(context), tag=tag, rm=True, forcerm=True, decode=True, labels=dict(labels)):
            if "errorDetail" in chunk or "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk.get("error")
                raise ContainerError(f"docker build {tag} failed: {detail}" + _tail(log))
            if "stream" in chunk:
                log.append(chunk["stream"].rstrip())
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
    except ContainerError:
        raise
    except Exception as exc:  # noqa: BLE001 - APIError (e.g. base image not found), connection errors
        raise ContainerError(f"docker build {tag} failed: {_first_line(exc)}" + _tail(log)) from None
    image = c.images.get(tag)
    return {"tag": tag, "id": image_id or image.id}


def base_digest(c, ref: str) -> str | None:
    """The registry digest of the base image (from the reference, or the local image's RepoDigests)."""
    if "@sha256:" in ref:
        return ref.split("@", 1)[1]
    try:
        digests = c.images.get(ref).attrs.get("RepoDigests") or []
    except Exception:  # noqa: BLE001
        return None
    return digests[0].split("@", 1)[1] if digests else None


def push(c, reference: str, auth: dict | None = None) -> str:
    """Tag the local image as REGISTRY/REPO:TAG (done by the caller), push it, return its digest.
    The one Docker push: the build's `--push` and `deploykit publish` both come here."""
    repo, tag = split_tag(reference)
    digest, log = None, []
    try:
        stream = c.api.push(repo, tag=tag, stream=True, decode=True, auth_config=auth)
        for chunk in stream:  # registry errors arrive inside the stream, not as exceptions
            if "errorDetail" in chunk or "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk.get("error")
                raise ContainerError(f"docker push {reference} failed: {detail}")
            if "status" in chunk:
                log.append(str(chunk["status"]))
            if "aux" in chunk and "Digest" in chunk["aux"]:
                digest = chunk["aux"]["Digest"]
    except ContainerError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ContainerError(f"docker push {reference} failed: {_first_line(exc)}") from None
    if not digest:
        raise ContainerError(f"docker push {reference}: the registry reported no digest" + _tail(log))
    return digest


def split_tag(reference: str) -> tuple[str, str]:
    """'host:5000/repo:tag' -> ('host:5000/repo', 'tag'); no tag -> 'latest'."""
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:
        return reference, "latest"
    return name, tag


# ---- running ----------------------------------------------------------------------------------
@dataclass
class Running:
    container: object
    rest_url: str  # http://127.0.0.1:PORT
    grpc_port: int
    network: str  # "bridge" (ports published on 127.0.0.1) or "host"
    started: float

    def logs(self) -> str:
        try:
            return self.container.logs().decode(errors="replace")
        except Exception as exc:  # noqa: BLE001
            return f"(logs unavailable: {exc})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _network(c) -> str:
    wanted = os.environ.get("DEPLOYKIT_DOCKER_NETWORK")
    if wanted in ("host", "bridge"):
        return wanted
    try:
        return "bridge" if c.networks.list(names=["bridge"]) else "host"
    except Exception:  # noqa: BLE001
        return "host"


@contextlib.contextmanager
def serving(c, image: str, model_name: str, *, deadline: float = 180.0, label: str = "serving",
            versions: list[int] | None = None, flags: str | None = None) -> Iterator[Running]:
    """Start the image hardened, wait until `model_name` is AVAILABLE (every one of `versions` when
    given), yield, always stop and remove.
    `flags`: extra tensorflow_model_server flags (the image's SERVING_FLAGS), e.g. repo.BATCHING_FLAGS.

    On any failure inside (startup or the caller's checks) the container's logs go to stderr.
    """
    network = _network(c)
    rest, grpc = (free_port(), free_port()) if network == "host" else (8501, 8500)
    kwargs = dict(
        detach=True, name=f"deploykit-{label.replace('/', '-')}-{uuid.uuid4().hex[:8]}",
        labels={LABEL: label}, user=SERVING_USER, read_only=True, cap_drop=["ALL"],
        security_opt=["no-new-privileges"], tmpfs={"/tmp": "rw,noexec,nosuid,size=64m"},  # noqa: S108
        environment={"REST_PORT": str(rest), "GRPC_PORT": str(grpc), "HOME": "/tmp"},  # noqa: S108
        mem_limit="2g", pids_limit=512,
    )
    if flags is not None:
        kwargs["environment"]["SERVING_FLAGS"] = flags
    if network == "host":
        kwargs["network_mode"] = "host"
    else:
        kwargs["ports"] = {f"{rest}/tcp": ("127.0.0.1", None), f"{grpc}/tcp": ("127.0.0.1", None)}
    sweep_orphans(c)
    kwargs["labels"][OWNER_LABEL] = owner()
    container = None
    failed = True
    try:
        try:
            container = c.containers.run(image, **kwargs)
        except BaseException:  # created but not started (or the answer was lost): still ours to remove
            with contextlib.suppress(Exception):
                container = c.containers.get(kwargs["name"])
            raise
        if network == "bridge":
            container.reload()
            ports = container.attrs["NetworkSettings"]["Ports"]
            rest, grpc = int(ports[f"{rest}/tcp"][0]["HostPort"]), int(ports[f"{grpc}/tcp"][0]["HostPort"])
        run = Running(container, f"http://127.0.0.1:{rest}", grpc, network, time.perf_counter())
        wait_available(run, model_name, deadline, versions)
        yield run
        failed = False
    finally:
        if container is not None:
            if failed:
                _print_logs(container, label)
            with contextlib.suppress(Exception):
                container.stop(timeout=3)
            _remove(container)


def _remove(container, attempts: int = 3) -> None:
    """Remove `container` (a busy daemon can time out: try again); say so on stderr when it stays."""
    import docker

    for attempt in range(attempts):
        try:
            container.remove(force=True)
            return
        except docker.errors.NotFound:
            return
        except Exception as exc:  # noqa: BLE001 - requests timeouts, APIError
            last = _first_line(exc)
            time.sleep(0.5 * (attempt + 1))
    print(f"warning: serving: could not remove container {container.name} ({last}); the next build removes it, "
          f"or: docker rm -f {container.name}", file=sys.stderr)


# ---- containers whose build is gone ---------------------------------------------------------------
def _machine() -> str:
    """This boot of this machine and this process's pid namespace: where a pid means one process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        space = os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        return ""  # no /proc (not Linux): owners are never judged
    return f"{boot}:{space}"


def _started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after "(comm)" start at field 3


def owner(pid: int | None = None) -> str:
    """The OWNER_LABEL value for this process (or `pid`): MACHINE/PID/START_TICKS."""
    pid = os.getpid() if pid is None else pid
    return f"{_machine()}/{pid}/{_started(pid)}"


def owner_is_gone(value: str) -> bool:
    """True only when the owner ran on this machine since its last boot, in this pid namespace, and that
    process is gone (its pid is free or now names a process started at another time). Owners elsewhere
    (another machine, another container sharing the daemon) or unreadable are never judged."""
    parts = value.split("/")
    here = _machine()
    if len(parts) != 3 or not here or parts[0] != here or not parts[1].isdigit() or not parts[2].isdigit():
        return False
    return _started(int(parts[1])) != parts[2]


def sweep_orphans(c) -> list[str]:
    """Remove the containers deploykit started for a build that is gone (e.g. killed with SIGKILL);
    returns their names. Containers of live builds, and of builds on other machines, are kept."""
    gone = [x for x in c.containers.list(all=True, filters={"label": LABEL})
            if owner_is_gone(x.labels.get(OWNER_LABEL, ""))]
    for x in gone:
        _remove(x)
    if gone:
        print(f"note: serving: removed {len(gone)} container(s) left by a build that is gone: "
              f"{', '.join(x.name for x in gone)}", file=sys.stderr)
    return [x.name for x in gone]


def wait_available(run: Running, model_name: str, deadline: float, versions: list[int] | None = None) -> float:
    """Poll GET /v1/models/NAME until a version (every one of `versions`) is AVAILABLE (HTTP 200 alone
    is not enough)."""
    import requests

    end = time.perf_counter() + deadline
    last = "no answer yet"
    while time.perf_counter() < end:
        run.container.reload()
        if run.container.status in ("exited", "dead"):
            raise ContainerError(f"the container exited before the model was AVAILABLE (status {run.container.status}, "
                                 f"exit code {run.container.attrs['State'].get('ExitCode')})")
        try:
            r = requests.get(f"{run.rest_url}/v1/models/{model_name}", timeout=2)
            listed = r.json().get("model_version_status", []) if r.ok else []
            states = [s.get("state") for s in listed]
            up = {str(s.get("version")) for s in listed if s.get("state") == "AVAILABLE"}
            if up and (versions is None or {str(v) for v in versions} <= up):
                return time.perf_counter() - run.started
            last = f"HTTP {r.status_code}, states {states or r.text[:200]}"
        except Exception as exc:  # noqa: BLE001 - not listening yet
            last = _first_line(exc)
        time.sleep(0.25)
    which = f" version(s) {', '.join(map(str, versions))}" if versions else ""
    raise ContainerError(f"model {model_name}{which} was not AVAILABLE within {deadline:.0f} s (last: {last})")


def leftover_containers(c) -> list[str]:
    return [x.name for x in c.containers.list(all=True, filters={"label": LABEL})]


def _print_logs(container, label: str) -> None:
    try:
        logs = container.logs(tail=80).decode(errors="replace")
    except Exception as exc:  # noqa: BLE001
        logs = f"(logs unavailable: {exc})"
    print(f"--- {label}: container {container.name} logs (last 80 lines) ---\n{logs.rstrip()}\n--- end of logs ---",
          file=sys.stderr, flush=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _tail(lines: list[str], n: int = 5) -> str:
    useful = [ln for ln in lines if ln.strip()]
    return (" | " + " | ".join(useful[-n:])[:600]) if useful else ""

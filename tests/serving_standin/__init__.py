"""The STAND-IN base image for the serving target's tests (the real `tensorflow/serving` image
cannot be pulled here). `ensure_image()` builds it once and reuses it: the tag carries a hash of
its inputs (this folder's files, the Debian suite, the TensorFlow version, requirements.lock).

Layers: Debian bookworm minbase made with debootstrap and `docker import`ed
(`deploykit-standin-base:bookworm`), tensorflow-cpu installed with pip into a folder and copied
in (with tensorflow-serving-api's protos; grpcio comes with tensorflow), `tensorflow_model_server_standin.py`
installed as `/usr/bin/tensorflow_model_server`, its gRPC half `standin_grpc.py` and its batcher
`standin_batching.py` and `standin_http.py` in `/opt/tf`.
First build: about 2-3 minutes; later runs: a lookup.

    python -m tests.serving_standin      # build (or find) it and print the tag
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SUITE = "bookworm"
MIRROR = os.environ.get("DEPLOYKIT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
TF_PIN = "tensorflow-cpu==2.19.0"
SERVING_API_PIN = "tensorflow-serving-api==2.19.0"  # its protos: the gRPC services, PredictionLog (warm-up)
FILES = ("Dockerfile", "tensorflow_model_server_standin.py", "standin_grpc.py", "standin_batching.py", "standin_http.py")
BASE_TAG = f"deploykit-standin-base:{SUITE}"
REPO = "deploykit-serving-standin"
LABEL = "org.deploykit.standin"


def inputs_hash() -> str:
    h = hashlib.sha256()
    for name in FILES:
        h.update((HERE / name).read_bytes())
    h.update(f"{SUITE} {TF_PIN} {SERVING_API_PIN}".encode())
    h.update((ROOT / "requirements.lock").read_bytes())
    return h.hexdigest()[:16]


def image_tag() -> str:
    return f"{REPO}:{inputs_hash()}"


def _log(msg: str) -> None:
    print(f"[serving-standin] {msg}", file=sys.stderr, flush=True)


def _run(cmd, **kw) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))[:200]} failed: {proc.stderr[-1500:]}")


def _ensure_base(client, scratch: Path) -> None:
    import docker

    try:
        client.images.get(BASE_TAG)
        return
    except docker.errors.ImageNotFound:
        pass
    rootfs = scratch / "rootfs"
    _log(f"debootstrap --variant=minbase --include=python3 {SUITE} (about 45 s) ...")
    _run(["debootstrap", "--variant=minbase", "--include=python3", SUITE, str(rootfs), MIRROR])
    tarball = scratch / "rootfs.tar"
    _run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."])
    shutil.rmtree(rootfs, ignore_errors=True)
    repo, tag = BASE_TAG.split(":")
    client.api.import_image(src=str(tarball), repository=repo, tag=tag)
    tarball.unlink()


def ensure_image() -> str:
    """The stand-in image's tag; built if no image with this tag exists."""
    import docker

    client = docker.from_env()
    tag = image_tag()
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    scratch = Path(tempfile.mkdtemp(prefix="deploykit-standin-"))
    try:
        _ensure_base(client, scratch)
        ctx = scratch / "context"
        ctx.mkdir()
        _log(f"pip install {TF_PIN} into the build context (about 30 s) ...")
        _run([sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--only-binary=:all:",
              "--target", str(ctx / "site"), "-c", str(ROOT / "requirements.lock"), TF_PIN])
        _run([sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--no-deps", "--only-binary=:all:",
              "--target", str(ctx / "site"), "-c", str(ROOT / "requirements.lock"), SERVING_API_PIN])
        shutil.copy(HERE / "Dockerfile", ctx / "Dockerfile")
        server = ctx / "tensorflow_model_server"
        shutil.copy(HERE / "tensorflow_model_server_standin.py", server)
        server.chmod(0o755)
        for module in ("standin_grpc.py", "standin_batching.py", "standin_http.py"):
            shutil.copy(HERE / module, ctx / module)
        _log(f"docker build {tag} (about 60 s) ...")
        client.images.build(path=str(ctx), tag=tag, buildargs={"BASE": BASE_TAG}, rm=True, forcerm=True,
                            labels={LABEL: "1"})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return tag


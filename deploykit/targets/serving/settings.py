"""The serving target's settings: the `[serving]` table (or top-level keys, as before), and the
`--model-name`, `--model-version`, `--model-base-path`, `--version-policy`, `--base-image`, `--push`,
`--no-container`, `--load-levels`, `--load-seconds` options."""
from __future__ import annotations

import re
from dataclasses import dataclass

from deploykit.errors import BadInputError
from deploykit.targets.base import Option

# TF Serving model names: letters, digits, _ - . (a folder under models/ and a REST path segment, so
# never "." or ".."; the first character is a letter or digit)
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


@dataclass(frozen=True)
class ServingSettings:
    model_name: str | None = None  # None: from the model's file name (targets.serving.repo.model_name)
    model_version: int | None = None  # None: 1, or the next after the highest in model_base_path
    model_base_path: str | None = None  # an existing TF Serving base path (DIR/1, DIR/2...): the version is added there
    version_policy: str | None = None  # "latest N" | "all" | "specific V,V"; None: latest 2 beside a version, else latest 1
    base_image: str | None = None  # FROM image (None: DEPLOYKIT_SERVING_BASE_IMAGE, else tensorflow/serving)
    push: str | None = None  # push the image to REGISTRY/REPO:TAG after every check passed
    container: bool = True  # build the image and validate through it (False: in-process only)
    # the container check's load stage (latency phase only; targets/serving/load.py); () skips it
    load_levels: tuple[int, ...] = (1, 4, 16, 64)  # concurrent clients per level
    load_seconds: float = 0.25  # per level and API ...
    load_requests: int = 2000  # ... and at most this many requests per level
    load_apis: tuple[str, ...] = ("rest", "grpc")
    load_batching: tuple[str, ...] = ("off", "on")  # "on": a second container with --enable_batching


def int_list(text: str) -> tuple[int, ...]:
    """`--load-levels 1,4,16` -> (1, 4, 16) (a click type: a ValueError is a usage error, exit 2)."""
    try:
        return tuple(int(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated whole numbers, e.g. 1,4,16,64, got {text!r}") from None


OPTIONS = (
    Option("--model-name", "model_name", "serving: the model's name in the repository (models/NAME/VERSION) and over "
           "REST (/v1/models/NAME); letters, digits, _ - . (default: from the model's file name).", metavar="NAME"),
    Option("--model-version", "model_version", "serving: the version to build, a positive integer (default: 1, or the "
           "next after the highest in --model-base-path). An existing version is refused.", metavar="N", type=int),
    Option("--model-base-path", "model_base_path", "serving: an existing TF Serving model base path (DIR/1, DIR/2, ...): "
           "its versions are kept untouched, the policy's are built into the image beside the new one, and the new "
           "version is added to DIR once the build passed.", metavar="DIR"),
    Option("--version-policy", "version_policy", "serving: models.config model_version_policy: 'latest N', 'all' or "
           "'specific V[,V...]'; it must serve the new version (default: latest 2 beside a previous version, so a "
           "rollout keeps it loaded; else latest 1).", metavar="POLICY"),
    Option("--base-image", "base_image", "serving: FROM image, NAME[:TAG] or NAME@sha256:DIGEST "
           "(default: tensorflow/serving:2.19.0).", metavar="IMAGE"),
    Option("--push", "push", "serving: push the image there once every check passed (digest in the manifest).",
           metavar="REGISTRY/REPO:TAG"),
    Option("--no-container", "container", "serving: skip the image and the container check (in-process check only).",
           kind="flag", flag_value=False),
    Option("--load-levels", "load_levels", "serving: concurrent clients per load level, over REST and gRPC, "
           "batching off and on (default: 1,4,16,64; 0 skips the load stage).", metavar="LIST", type=int_list),
    Option("--load-seconds", "load_seconds", "serving: seconds per load level and API (default: 0.25).",
           metavar="S", type=float),
)
MAX_CLIENTS = 256


def check(s: ServingSettings) -> None:
    from deploykit.targets.serving.container import check_image_ref
    from deploykit.targets.serving.versions import MAX_VERSION, parse_policy

    if s.model_name is not None and not (isinstance(s.model_name, str) and MODEL_NAME.fullmatch(s.model_name)):
        raise BadInputError(f"--model-name {s.model_name!r}: a TF Serving model name is 1 to 63 letters, digits, "
                            "'_', '-' or '.', starting with a letter or digit")
    if s.model_version is not None and not (isinstance(s.model_version, int) and 1 <= s.model_version <= MAX_VERSION):
        raise BadInputError(f"--model-version {s.model_version!r}: a TF Serving version is a positive integer "
                            f"(1 to {MAX_VERSION})")
    if s.version_policy is not None:
        parse_policy(s.version_policy)
    if s.model_base_path is not None and not (isinstance(s.model_base_path, str) and s.model_base_path.strip()):
        raise BadInputError(f"--model-base-path {s.model_base_path!r}: expected a folder")
    if s.base_image is not None:
        check_image_ref(s.base_image, "--base-image")
    levels = s.load_levels
    if levels == (0,):
        levels = ()
    if any(not isinstance(n, int) or n < 1 or n > MAX_CLIENTS for n in levels) or len(set(levels)) != len(levels):
        raise BadInputError(f"serving.load_levels: expected distinct client counts from 1 to {MAX_CLIENTS} "
                            f"(or 0 / [] to skip the load stage), got {list(s.load_levels)}")
    if not 0 < s.load_seconds <= 60:
        raise BadInputError(f"serving.load_seconds: expected seconds per level in (0, 60], got {s.load_seconds!r}")
    if s.load_requests < 1:
        raise BadInputError(f"serving.load_requests: expected at least 1 request per level, got {s.load_requests!r}")
    for key, known in (("load_apis", ("rest", "grpc")), ("load_batching", ("off", "on"))):
        given = getattr(s, key)
        if not given or any(v not in known for v in given) or len(set(given)) != len(given):
            raise BadInputError(f"serving.{key}: expected a list of {' and '.join(known)}, got {list(given)}")
    if s.push:
        check_image_ref(s.push, "--push")
        if not s.container:
            raise BadInputError("--push needs the container image: drop --no-container")

"""The serving target's settings: the `[serving]` table (or top-level keys, as before), and the
`--model-name`, `--base-image`, `--push`, `--no-container` options."""
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
    base_image: str | None = None  # FROM image (None: DEPLOYKIT_SERVING_BASE_IMAGE, else tensorflow/serving)
    push: str | None = None  # push the image to REGISTRY/REPO:TAG after every check passed
    container: bool = True  # build the image and validate through it (False: in-process only)


OPTIONS = (
    Option("--model-name", "model_name", "serving: the model's name in the repository (models/NAME/1) and over REST "
           "(/v1/models/NAME); letters, digits, _ - . (default: from the model's file name).", metavar="NAME"),
    Option("--base-image", "base_image", "serving: FROM image, NAME[:TAG] or NAME@sha256:DIGEST "
           "(default: tensorflow/serving:2.19.0).", metavar="IMAGE"),
    Option("--push", "push", "serving: push the image there once every check passed (digest in the manifest).",
           metavar="REGISTRY/REPO:TAG"),
    Option("--no-container", "container", "serving: skip the image and the container check (in-process check only).",
           kind="flag", flag_value=False),
)


def check(s: ServingSettings) -> None:
    from deploykit.targets.serving.container import check_image_ref

    if s.model_name is not None and not (isinstance(s.model_name, str) and MODEL_NAME.fullmatch(s.model_name)):
        raise BadInputError(f"--model-name {s.model_name!r}: a TF Serving model name is 1 to 63 letters, digits, "
                            "'_', '-' or '.', starting with a letter or digit")
    if s.base_image is not None:
        check_image_ref(s.base_image, "--base-image")
    if s.push:
        check_image_ref(s.push, "--push")
        if not s.container:
            raise BadInputError("--push needs the container image: drop --no-container")

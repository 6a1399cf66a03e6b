"""The serving target's settings: the `[serving]` table (or top-level keys, as before), and the
`--base-image`, `--push`, `--no-container` options."""
from __future__ import annotations

from dataclasses import dataclass

from deploykit.errors import BadInputError
from deploykit.targets.base import Option


@dataclass(frozen=True)
class ServingSettings:
    base_image: str | None = None  # FROM image (None: DEPLOYKIT_SERVING_BASE_IMAGE, else tensorflow/serving)
    push: str | None = None  # push the image to REGISTRY/REPO:TAG after every check passed
    container: bool = True  # build the image and validate through it (False: in-process only)


OPTIONS = (
    Option("--base-image", "base_image", "serving: FROM image, NAME[:TAG] or NAME@sha256:DIGEST "
           "(default: tensorflow/serving:2.19.0).", metavar="IMAGE"),
    Option("--push", "push", "serving: push the image there once every check passed (digest in the manifest).",
           metavar="REGISTRY/REPO:TAG"),
    Option("--no-container", "container", "serving: skip the image and the container check (in-process check only).",
           kind="flag", flag_value=False),
)


def check(s: ServingSettings) -> None:
    from deploykit.targets.serving.container import check_image_ref

    if s.base_image is not None:
        check_image_ref(s.base_image, "--base-image")
    if s.push:
        check_image_ref(s.push, "--push")
        if not s.container:
            raise BadInputError("--push needs the container image: drop --no-container")

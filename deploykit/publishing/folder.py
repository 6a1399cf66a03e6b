"""Publish to a folder: the whole build plus `SHA256SUMS`, staged beside DEST and renamed into place,
then verified; a folder that is not a deploykit publication is never replaced."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from deploykit import manifest as manifest_mod
from deploykit.errors import BadInputError, PublishConflictError
from deploykit.publishing.content import SUMS, check_sums, content_id, sums_text
from deploykit.publishing.content import names as _names


def to_folder(root: Path, doc: dict, dest: Path, *, force: bool) -> dict:
    dest = dest.absolute()
    if dest.exists():
        previous = _read_published(dest)
        if previous == content_id(doc) and not force:
            _verify_folder(dest)
            return {"destination": str(dest), "status": "unchanged", "content_id": previous, "artifacts": _names(doc)}
        if previous is None and (not dest.is_dir() or any(dest.iterdir())):  # never replaced, even with --force
            raise BadInputError(f"{dest}: exists and is not a deploykit publication; refusing to replace it")
        if previous is not None and not force:
            raise PublishConflictError(f"{dest}: already holds this version with other content; "
                                       "refusing to replace it (use --force)")
    staging = dest.parent / f".{dest.name}.publish-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        names = [*doc["files"], "manifest.json"]
        for rel in names:
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, staging / rel)
        (staging / SUMS).write_text(sums_text(staging, names))
        old = dest.parent / f".{dest.name}.old-{os.getpid()}"
        if dest.exists():
            os.rename(dest, old)
        os.rename(staging, dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    verified = _verify_folder(dest)
    return {"destination": str(dest), "status": "published", "content_id": content_id(doc), "artifacts": _names(doc),
            "verified_files": verified}


def _read_published(dest: Path) -> str | None:
    try:
        return content_id(manifest_mod.read(dest)) if (dest / SUMS).is_file() else None
    except BadInputError:
        return None


def _verify_folder(dest: Path) -> int:
    text = (dest / SUMS).read_text()
    problems = check_sums(dest, text)
    if problems:
        raise BadInputError(f"{dest}: published copy does not verify: {'; '.join(problems[:3])}")
    return len(text.splitlines())

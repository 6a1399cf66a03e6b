"""sha256 of a file and of a folder tree: the one digest every stage records and checks."""
from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(folder: Path) -> str:
    """A stable digest of a folder: relative paths and contents, in sorted order."""
    digest = hashlib.sha256()
    for p in sorted(q for q in Path(folder).rglob("*") if q.is_file()):
        digest.update(p.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(file_sha256(p).encode())
    return digest.hexdigest()

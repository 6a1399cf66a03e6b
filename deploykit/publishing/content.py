"""What a publication is: the content id of a build (its artifacts' digests) and `SHA256SUMS`."""
from __future__ import annotations

import hashlib
from pathlib import Path

from deploykit.digests import file_sha256

SUMS = "SHA256SUMS"


def content_id(doc: dict) -> str:
    """What "the same content" means for a version: the artifacts' digests (not build timestamps)."""
    lines = sorted(f"{a['target']}/{a['variant']} {a['sha256']}" for a in doc["artifacts"])
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def sums_text(root: Path, names: list[str]) -> str:
    """`sha256sum -c` compatible lines."""
    return "".join(f"{file_sha256(root / n)}  {n}\n" for n in sorted(names))


def check_sums(root: Path, text: str) -> list[str]:
    problems = []
    for line in text.splitlines():
        digest, name = line.split("  ", 1)
        p = root / name
        if not p.is_file():
            problems.append(f"{name}: missing")
        elif file_sha256(p) != digest:
            problems.append(f"{name}: checksum differs")
    return problems


def names(doc: dict) -> list[str]:
    return [f"{a['target']}/{a['variant']}" for a in doc["artifacts"]]

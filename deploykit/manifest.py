"""The build manifest: one JSON document describing what was built, from what, and how it did.

Its schema lives in one place, `schema/manifest.schema.json`, and every manifest written is
checked against it.
"""
from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path

from deploykit.digests import file_sha256, tree_sha256
from deploykit.errors import BadInputError

SCHEMA_VERSION = 1
PACKAGES = ("tensorflow", "tf-keras", "keras", "ai-edge-litert", "numpy", "tensorflow-model-optimization", "tensorflowjs")


@lru_cache(maxsize=None)
def schema() -> dict:
    return json.loads(resources.files("deploykit").joinpath("schema/manifest.schema.json").read_text())


def check(manifest: dict) -> None:
    import jsonschema

    jsonschema.validate(manifest, schema())


def environment() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": versions,
    }


def now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def artifact_digest(path: Path) -> tuple[str, int]:
    """(sha256, bytes) of an artifact: a single file, or a bundle folder (all files, stable order)."""
    if path.is_dir():
        return tree_sha256(path), sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return file_sha256(path), path.stat().st_size


def file_table(root: Path) -> dict[str, dict]:
    """sha256 and size of every file under `root` except the manifest itself."""
    table = {}
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        rel = p.relative_to(root).as_posix()
        if rel != "manifest.json":
            table[rel] = {"sha256": file_sha256(p), "bytes": p.stat().st_size}
    return table


def _finite(value):
    """JSON has no NaN or Infinity: a non-finite metric is recorded as null."""
    if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write(root: Path, manifest: dict) -> Path:
    manifest = _finite(manifest)
    check(manifest)
    path = root / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return path


def read(root: Path) -> dict:
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise BadInputError(f"{path}: no manifest (is {root} a deploykit output folder?)")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: not valid JSON ({exc})") from None
    import jsonschema

    try:
        check(manifest)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise BadInputError(f"{path}: does not match the manifest schema at {where}: {exc.message}") from None
    return manifest


def escaping_paths(root: Path, manifest: dict) -> list[str]:
    """Paths a manifest names that are absolute, leave the output folder or pass through a symbolic
    link: a rewritten manifest must not make `validate` read (and bless) files outside the build."""
    root = Path(root)
    names = [*manifest["files"], *(a["path"] for a in manifest["artifacts"]),
             manifest["data"]["inputs"], manifest["data"]["reference"]]
    problems = []
    for rel in dict.fromkeys(names):
        parts = Path(rel).parts
        if Path(rel).is_absolute() or ".." in parts or "\\" in rel:
            problems.append(f"{root}: manifest path {rel!r} leaves the output folder")
            continue
        for i in range(1, len(parts) + 1):
            if root.joinpath(*parts[:i]).is_symlink():
                problems.append(f"{root.joinpath(*parts[:i])}: is a symbolic link; a build's files must be inside its folder")
                break
    return sorted(set(problems))


def verify_files(root: Path, manifest: dict) -> list[str]:
    """Problems with the files the manifest lists: missing or changed."""
    problems = []
    for rel, facts in manifest["files"].items():
        p = Path(root) / rel
        if not p.is_file():
            problems.append(f"{p}: missing")
        elif file_sha256(p) != facts["sha256"]:
            problems.append(f"{p}: checksum does not match the manifest")
    return problems

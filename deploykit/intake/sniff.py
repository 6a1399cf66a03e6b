"""Identify a model source from its bytes, before any of it reaches Keras.

Keras' own messages for a missing, truncated or mislabelled file are misleading, so these checks
run first and fail with one line naming the file and the problem. No TensorFlow here.
"""
from __future__ import annotations

import json
import re
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.digests import file_sha256, tree_sha256
from deploykit.errors import BadInputError, SecurityError

ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
TFLITE_IDENT = b"TFL3"
CALLABLE_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "keras_zip" | "h5" | "saved_model" | "callable" | "example"
    location: str  # path, or module:function
    keras: str | None = None  # "tf_keras" | "keras3" | None (plain SavedModel / unknown)
    sha256: str | None = None
    config: dict | None = field(default=None, compare=False)  # the Keras model config, if any

    def to_json(self) -> dict:
        return {"kind": self.kind, "location": self.location, "keras": self.keras, "sha256": self.sha256}


def sniff(spec: str) -> ModelSource:
    path = Path(spec)
    if not path.exists() and CALLABLE_RE.match(spec):
        return ModelSource("callable", spec, keras="tf_keras")
    if not path.exists():
        raise BadInputError(f"{spec}: no such file or folder")
    if path.is_dir():
        return _saved_model(path)
    suffix = path.suffix.lower()
    head = _head(path)
    if suffix == ".keras":
        return _keras_zip(path, head)
    if suffix in (".h5", ".hdf5"):
        return _h5(path, head)
    if head.startswith(ZIP_MAGIC):
        raise BadInputError(f"{path}: looks like a Keras zip archive; name it *.keras")
    if head.startswith(HDF5_MAGIC):
        raise BadInputError(f"{path}: looks like an HDF5 model; name it *.h5")
    if head[4:8] == TFLITE_IDENT:
        raise BadInputError(f"{path}: is a TFLite flatbuffer; deploykit builds from a Keras model or SavedModel")
    raise BadInputError(f"{path}: unknown model format (expected .keras, .h5, a SavedModel folder or module:function)")


def _head(path: Path) -> bytes:
    with path.open("rb") as fh:
        head = fh.read(16)
    if not head:
        raise BadInputError(f"{path}: file is empty")
    return head


def _keras_zip(path: Path, head: bytes) -> ModelSource:
    if head.startswith(HDF5_MAGIC):
        raise BadInputError(f"{path}: is an HDF5 file, not a .keras zip archive; name it *.h5")
    if not head.startswith(ZIP_MAGIC):
        raise BadInputError(f"{path}: not a .keras file (no zip signature)")
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise BadInputError(f"{path}: corrupt .keras archive (bad CRC in {bad})")
            _check_members(path, zf)
            names = set(zf.namelist())
            missing = {"config.json", "metadata.json"} - names
            if missing:
                raise BadInputError(f"{path}: not a Keras model archive (missing {', '.join(sorted(missing))})")
            config = json.loads(zf.read("config.json"))
            metadata = json.loads(zf.read("metadata.json"))
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise BadInputError(f"{path}: truncated or corrupt .keras archive ({exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadInputError(f"{path}: .keras archive holds an unreadable config.json or metadata.json") from None
    version = str(metadata.get("keras_version", ""))
    keras = "keras3" if version.startswith("3.") else "tf_keras"
    return ModelSource("keras_zip", str(path), keras=keras, sha256=file_sha256(path), config=config)


def _h5(path: Path, head: bytes) -> ModelSource:
    if head.startswith(ZIP_MAGIC):
        raise BadInputError(f"{path}: is a zip archive (a .keras model?), not HDF5; name it *.keras")
    if not head.startswith(HDF5_MAGIC):
        raise BadInputError(f"{path}: not an HDF5 file (no HDF5 signature)")
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            raw = fh.attrs.get("model_config")
            if raw is None:
                raise BadInputError(f"{path}: HDF5 file holds no model config (weights only?); save with model.save()")
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            if "model_weights" not in fh:
                raise BadInputError(f"{path}: HDF5 file holds a config but no weights")
            version = fh.attrs.get("keras_version", b"")
            version = version.decode() if isinstance(version, bytes) else str(version)
            outside = _h5_outside_refs(fh)
            if outside:
                raise SecurityError(
                    f"{path}: refused: {outside[0]}" + (f" (+{len(outside) - 1} more)" if len(outside) > 1 else "")
                    + "; a model's weights must be inside its own file",
                    details={"findings": outside},
                )
    except OSError as exc:
        raise BadInputError(f"{path}: truncated or corrupt HDF5 file ({str(exc).splitlines()[0]})") from None
    keras = "keras3" if version.startswith("3.") else "tf_keras"
    return ModelSource("h5", str(path), keras=keras, sha256=file_sha256(path), config=config)


def _check_members(path: Path, zf: zipfile.ZipFile) -> None:
    """Refuse archive members that would land outside an extraction folder: absolute paths, `..`,
    symbolic links (Keras extracts parts of a .keras archive to disk)."""
    for info in zf.infolist():
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
            problem = "has an absolute path" if ".." not in parts else "leaves the archive (..)"
        elif stat.S_ISLNK(info.external_attr >> 16):
            problem = "is a symbolic link"
        else:
            continue
        raise SecurityError(f"{path}: refused: archive member '{name[:200]}' {problem}", details={"member": name})


def _h5_outside_refs(fh) -> list[str]:
    """Links, virtual datasets and external storage that make HDF5 read other files. Reads no data
    and follows no link."""
    import h5py

    found = []

    def link(name, info):
        if info.type == h5py.h5l.TYPE_EXTERNAL:
            target = fh.get(name, getlink=True)
            found.append(f"'{name}' is an external link to {target.filename}:{target.path}")
        elif info.type not in (h5py.h5l.TYPE_HARD, h5py.h5l.TYPE_SOFT):
            found.append(f"'{name}' is a user-defined HDF5 link")

    def dataset(name, obj):
        if isinstance(obj, h5py.Dataset):
            if obj.is_virtual:
                files = sorted({src.file_name for src in obj.virtual_sources()})
                found.append(f"'{name}' is a virtual dataset reading {', '.join(files)}")
            if obj.external:
                found.append(f"'{name}' keeps its data in external file(s) {', '.join(str(e[0]) for e in obj.external)}")

    fh.visit_links(lambda name: link(name, fh.id.links.get_info(name.encode())))
    fh.visititems(dataset)
    return found


def _saved_model(path: Path) -> ModelSource:
    pb = path / "saved_model.pb"
    if not pb.exists() and not (path / "saved_model.pbtxt").exists():
        raise BadInputError(f"{path}: folder is not a SavedModel (no saved_model.pb)")
    if pb.exists() and pb.stat().st_size == 0:
        raise BadInputError(f"{pb}: file is empty")
    keras = "tf_keras" if (path / "keras_metadata.pb").exists() else None
    return ModelSource("saved_model", str(path), keras=keras, sha256=tree_sha256(path))

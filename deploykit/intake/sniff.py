"""Identify a model source from its bytes, before any of it reaches Keras.

Keras' own messages for a missing, truncated or mislabelled file are misleading, so these checks
run first and fail with one line naming the file and the problem. No TensorFlow here.

They also refuse (SecurityError, exit 5, whatever `--allow-unsafe-deserialization` says) files whose
structure reaches outside the model: archive members that are absolute, contain `..` or are
symbolic links; HDF5 files, top-level or inside a `.keras` archive, that link other files; symbolic
links or special files anywhere in a SavedModel folder. And they bound what is read before
parsing: a config larger than CONFIG_MAX_BYTES is bad input (exit 2), refused before it is read.
What the model contains is vetted next, by `policy`.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.digests import file_sha256, tree_sha256
from deploykit.errors import BadInputError, SecurityError

ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
TFLITE_IDENT = b"TFL3"
CALLABLE_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
# Bounds on what is read and parsed before any check: Keras configs of real models are kilobytes to
# a few MiB (ResNet152 and NASNetLarge: about 1 MiB); metadata.json is a few hundred bytes.
CONFIG_MAX_BYTES = 64 << 20
METADATA_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "keras_zip" | "h5" | "saved_model" | "callable" | "example"
    location: str  # path, or module:function
    keras: str | None = None  # "tf_keras" | "keras3" | None (plain SavedModel / unknown)
    sha256: str | None = None
    config: dict | None = field(default=None, compare=False)  # the Keras model config, if any
    # model configs found in HDF5 members of a .keras archive ({member: config}), vetted like `config`
    member_configs: dict = field(default_factory=dict, compare=False)

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
            _check_members(path, zf)
            _check_sizes(path, zf)  # before testzip, which reads every member whole
            bad = zf.testzip()
            if bad is not None:
                raise BadInputError(f"{path}: corrupt .keras archive (bad CRC in {bad})")
            names = set(zf.namelist())
            missing = {"config.json", "metadata.json"} - names
            if missing:
                raise BadInputError(f"{path}: not a Keras model archive (missing {', '.join(sorted(missing))})")
            config = json.loads(zf.read("config.json"))
            metadata = json.loads(zf.read("metadata.json"))
            member_configs = _check_hdf5_members(path, zf)
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:  # zlib: a corrupt deflated member
        raise BadInputError(f"{path}: truncated or corrupt .keras archive ({exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise BadInputError(f"{path}: .keras archive holds an unreadable config.json or metadata.json") from None
    if not isinstance(config, dict) or not isinstance(metadata, dict):
        raise BadInputError(f"{path}: .keras archive holds an unreadable config.json or metadata.json")
    version = str(metadata.get("keras_version", ""))
    keras = "keras3" if version.startswith("3.") else "tf_keras"
    return ModelSource("keras_zip", str(path), keras=keras, sha256=file_sha256(path), config=config,
                       member_configs=member_configs)


def _h5(path: Path, head: bytes) -> ModelSource:
    if head.startswith(ZIP_MAGIC):
        raise BadInputError(f"{path}: is a zip archive (a .keras model?), not HDF5; name it *.keras")
    if not head.startswith(HDF5_MAGIC):
        raise BadInputError(f"{path}: not an HDF5 file (no HDF5 signature)")
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            if "model_config" not in fh.attrs:
                raise BadInputError(f"{path}: HDF5 file holds no model config (weights only?); save with model.save()")
            config = _h5_config(path, fh, "HDF5 file")
            if "model_weights" not in fh:
                raise BadInputError(f"{path}: HDF5 file holds a config but no weights")
            version = fh.attrs.get("keras_version", b"")
            version = version.decode() if isinstance(version, bytes) else str(version)
            _refuse_outside_refs(path, _h5_outside_refs(fh))
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


def _h5_config(path: Path, fh, what: str) -> dict:
    """The `model_config` attribute of an open HDF5 file, bounded and parsed."""
    too_big = f"{path}: {what} holds a model_config larger than {CONFIG_MAX_BYTES >> 20} MiB; not a Keras model config"
    if fh.attrs.get_id("model_config").get_storage_size() > CONFIG_MAX_BYTES:
        raise BadInputError(too_big)
    raw = fh.attrs.get("model_config")
    if hasattr(raw, "__len__") and len(raw) > CONFIG_MAX_BYTES:
        raise BadInputError(too_big)
    try:
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, TypeError, AttributeError):
        raise BadInputError(f"{path}: {what} holds an unreadable model config") from None
    if not isinstance(config, dict):
        raise BadInputError(f"{path}: {what} holds an unreadable model config")
    return config


def _check_sizes(path: Path, zf: zipfile.ZipFile) -> None:
    """config.json and metadata.json within bounds, judged by their declared uncompressed sizes
    (zipfile never returns more than that) before any byte of them is read."""
    for name, limit in (("config.json", CONFIG_MAX_BYTES), ("metadata.json", METADATA_MAX_BYTES)):
        try:
            size = zf.getinfo(name).file_size
        except KeyError:
            continue
        if size > limit:
            raise BadInputError(f"{path}: {name} is {size:,} bytes uncompressed (limit {limit >> 20} MiB); "
                                "not a Keras model archive")


def _check_hdf5_members(path: Path, zf: zipfile.ZipFile) -> dict[str, dict]:
    """HDF5 members (the weights) vetted like a top-level .h5: no links to other files. Returns the
    model configs some of them carry (a whole HDF5 model saved into an archive), for the policy."""
    import h5py

    configs = {}
    for info in zf.infolist():
        if info.is_dir():
            continue
        with zf.open(info) as fh:
            head = fh.read(len(HDF5_MAGIC))
        if head != HDF5_MAGIC and not info.filename.lower().endswith((".h5", ".hdf5")):
            continue
        with _member_file(path, zf, info) as member:
            try:
                with h5py.File(member, "r") as h5:
                    outside = _h5_outside_refs(h5)
                    if "model_config" in h5.attrs:
                        configs[info.filename] = _h5_config(path, h5, f"archive member '{info.filename[:200]}'")
            except OSError as exc:
                raise BadInputError(f"{path}: archive member '{info.filename[:200]}' is not a readable HDF5 file "
                                    f"({str(exc).splitlines()[0]})") from None
        _refuse_outside_refs(path, [f"archive member '{info.filename[:200]}': {f}" for f in outside])
    return configs


@contextlib.contextmanager
def _member_file(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo):
    """A seekable file of one archive member for h5py. zipfile's own member files re-read the
    member from its start on every backward seek (minutes for a 300 MB weights file): a stored
    member is read in place from the archive, a compressed one from a temporary copy."""
    if info.compress_type == zipfile.ZIP_STORED:
        with path.open("rb") as raw:
            raw.seek(info.header_offset)
            header = raw.read(30)
            if len(header) < 30 or header[:4] != ZIP_MAGIC:
                raise BadInputError(f"{path}: corrupt .keras archive (bad local header for {info.filename[:200]})")
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            yield _Window(raw, info.header_offset + 30 + name_len + extra_len, info.file_size)
        return
    with zf.open(info) as member, tempfile.TemporaryFile() as spool:
        shutil.copyfileobj(member, spool, 1 << 20)
        spool.seek(0)
        yield spool


class _Window(io.RawIOBase):
    """Bytes [start, start + size) of an open file, as a read-only seekable file."""

    def __init__(self, raw, start: int, size: int):
        super().__init__()
        self._raw, self._start, self._size, self._pos = raw, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), self._size - self._pos))
        if n == 0:
            return 0
        self._raw.seek(self._start + self._pos)
        data = self._raw.read(n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _refuse_outside_refs(path: Path, outside: list[str]) -> None:
    if outside:
        raise SecurityError(
            f"{path}: refused: {outside[0]}" + (f" (+{len(outside) - 1} more)" if len(outside) > 1 else "")
            + "; a model's weights must be inside its own file",
            details={"findings": outside},
        )


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
    _check_tree(path)  # before anything reads a file of it (the digest below reads them all)
    pb = path / "saved_model.pb"
    if not pb.exists() and not (path / "saved_model.pbtxt").exists():
        raise BadInputError(f"{path}: folder is not a SavedModel (no saved_model.pb)")
    if pb.exists() and pb.stat().st_size == 0:
        raise BadInputError(f"{pb}: file is empty")
    keras = "tf_keras" if (path / "keras_metadata.pb").exists() else None
    return ModelSource("saved_model", str(path), keras=keras, sha256=tree_sha256(path))


def _check_tree(folder: Path) -> None:
    """Only regular files and folders inside a SavedModel folder: a symbolic link (an asset linking
    /etc/passwd, a variables folder linking elsewhere) would make TensorFlow read, and deploykit
    copy into its artifacts, a file outside the model; a FIFO or device would hang or never end."""
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            p = Path(root) / name
            mode = os.lstat(p).st_mode
            rel = p.relative_to(folder).as_posix()
            if stat.S_ISLNK(mode):
                problem = "is a symbolic link"
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                problem = "is not a regular file"
            else:
                continue
            raise SecurityError(f"{folder}: refused: '{rel[:200]}' {problem}; a model's files must be inside its folder",
                                details={"path": rel})

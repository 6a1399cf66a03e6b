""".npz files, read safely and written whole.

`read_npz` is the one reader of `.npz` files that come from outside (a user's `--data`, a training
or optimize dataset, the `validation/` files of a build that `deploykit validate` checks): every
member's `.npy` header is read first, so a `.npy` named `.npz`, a truncated member, an object
array (which needs pickle: code could run) or a header declaring more data than the file holds or
than this machine could allocate is exit 2 naming the file, before any array is allocated.
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

from deploykit.errors import BadInputError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK"  # a local file header (PK\3\4) or, for an empty archive, the end record (PK\5\6)


def memory_limit() -> int:
    """At most a quarter of this machine's memory for one file's arrays."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError):
        return 4 << 30


def read_npz(path: str | Path, what: str = "data file") -> dict[str, np.ndarray]:
    """name -> array of an `.npz`; every problem is a BadInputError naming `path`."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"{p}: no such {what}")
    with p.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(NPY_MAGIC):
        raise BadInputError(f"{p}: is a single .npy array, not an .npz archive (save with np.savez(path, name=array))")
    if not head.startswith(ZIP_MAGIC):
        raise BadInputError(f"{p}: unreadable .npz (no zip signature)" if head else f"{p}: file is empty")
    try:
        with zipfile.ZipFile(p) as zf:
            _check_headers(p, zf)
        with np.load(p, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except BadInputError:
        raise
    except ValueError as exc:  # e.g. object arrays, which need pickle
        raise BadInputError(f"{p}: unreadable .npz ({str(exc).splitlines()[0][:200]})") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        raise BadInputError(f"{p}: not a readable .npz file ({str(exc).splitlines()[0][:200]})") from None


def _check_headers(p: Path, zf: zipfile.ZipFile) -> None:
    total, limit = 0, memory_limit()
    members = [i for i in zf.infolist() if not i.is_dir()]
    if not members:
        raise BadInputError(f"{p}: .npz holds no arrays")
    for info in members:
        name = info.filename.removesuffix(".npy")
        with zf.open(info) as fh:
            try:
                version = np.lib.format.read_magic(fh)
                shape, fortran, dtype = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                                         else np.lib.format.read_array_header_2_0(fh))
            except ValueError as exc:
                raise BadInputError(f"{p}[{name}]: not a .npy array ({str(exc).splitlines()[0][:200]})") from None
            header_bytes = fh.tell()
        if dtype.hasobject:
            raise BadInputError(f"{p}[{name}]: holds Python objects ({dtype}), which need pickle to read and are "
                                "refused (allow_pickle=False); save numeric or string (U/S) arrays")
        declared = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if shape else dtype.itemsize
        present = info.file_size - header_bytes
        if declared > present:
            raise BadInputError(f"{p}[{name}]: header declares {declared:,} bytes of data {tuple(shape)} but the "
                                f"member holds {max(present, 0):,}: truncated or forged")
        total += declared
        if total > limit:
            raise BadInputError(f"{p}: arrays declare {total:,} bytes, more than deploykit reads from one file "
                                f"({limit:,} bytes, a quarter of this machine's memory)")


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Built in memory, then written: on a full disk np.savez leaves a half-closed ZipFile whose
    destructor prints a traceback."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    Path(path).write_bytes(buffer.getvalue())

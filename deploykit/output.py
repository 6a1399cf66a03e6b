"""The output folder: a lock, a staging area, and an all-or-nothing swap into place.

A build writes into `.NAME.staging-PID` beside the output folder and renames it into place only
when everything passed. A failed or killed build leaves the previous output untouched; the next
build removes the leftovers. A second build into the same folder exits 75 at once.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

from .errors import BadInputError, LockedError

MANIFEST = "manifest.json"


class OutputFolder:
    def __init__(self, out: str | Path):
        self.out = Path(out).absolute()
        self.parent = self.out.parent
        self.staging = self.parent / f".{self.out.name}.staging-{os.getpid()}"
        self._lock_path = self.parent / f".{self.out.name}.lock"
        self._lock_fd: int | None = None
        self.committed = False

    def __enter__(self) -> "OutputFolder":
        try:
            self.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise BadInputError(f"{self.out}: cannot write here ({exc.strerror})") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise LockedError(f"{self.out}: another build is writing this output folder") from None
        try:
            self._check_replaceable()
            self._remove_leftovers()
            self.staging.mkdir()
        except BaseException:
            self._release()
            raise
        return self

    def _check_replaceable(self) -> None:
        if not self.out.exists():
            return
        if not self.out.is_dir():
            raise BadInputError(f"{self.out}: exists and is not a folder; refusing to replace it")
        if not any(self.out.iterdir()):
            return
        manifest = self.out / MANIFEST
        try:
            is_ours = "deploykit_version" in json.loads(manifest.read_text())
        except (OSError, ValueError):
            is_ours = False
        if not is_ours:
            raise BadInputError(
                f"{self.out}: folder exists and is not a deploykit output; refusing to replace it (choose another --out)"
            )

    def _remove_leftovers(self) -> None:
        """Staging and swap folders of builds that were killed (we hold the lock, so none is live)."""
        for pattern in (f".{self.out.name}.staging-*", f".{self.out.name}.old-*"):
            for stale in self.parent.glob(pattern):
                shutil.rmtree(stale, ignore_errors=True)

    def commit(self) -> None:
        old = self.parent / f".{self.out.name}.old-{os.getpid()}"
        if self.out.exists():
            os.rename(self.out, old)
        os.rename(self.staging, self.out)
        shutil.rmtree(old, ignore_errors=True)
        self.committed = True

    def __exit__(self, *exc) -> None:
        if not self.committed:
            shutil.rmtree(self.staging, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

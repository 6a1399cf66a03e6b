"""The output folder: a lock, a staging area, and an all-or-nothing swap into place.

A build writes into `.NAME.staging-PID` beside the output folder and renames it into place only
when everything passed. A failed or killed build leaves the previous output untouched; the next
build removes the leftovers. A second build into the same folder exits 75 at once; the lock file
`.NAME.lock` is removed when its build ends (a killed build's stays until the next build). While the folder
is open, Python's temporary files (e.g. TensorFlow's autograph sources) go to `.NAME.tmp-PID` beside
it, so a killed build's temporary files are leftovers the next build removes too. A full or read-only
file system is `OutputUnwritableError` (exit 2), not a crash.

A build that ran but failed its budgets is kept for inspection: `keep_failed()` renames the staging
folder to `NAME.failed` beside the output (replacing the previous failed build, never the output
itself). Its manifest says `passed: false`, and `deploykit publish` refuses it.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from deploykit.errors import BadInputError, DeployKitError, LockedError, OutputUnwritableError

MANIFEST = "manifest.json"


class OutputFolder:
    def __init__(self, out: str | Path):
        self.out = Path(out).absolute()
        self.parent = self.out.parent
        self.staging = self.parent / f".{self.out.name}.staging-{os.getpid()}"
        self._lock_path = self.parent / f".{self.out.name}.lock"
        self._lock_fd: int | None = None
        self._tmp = self.parent / f".{self.out.name}.tmp-{os.getpid()}"
        self._saved_tempdir: str | None = None
        self.committed = False

    def __enter__(self) -> "OutputFolder":
        self._lock()
        try:
            self._check_replaceable()
            self._remove_leftovers()
            self.staging.mkdir()
            self._tmp.mkdir()
        except BaseException as exc:
            shutil.rmtree(self.staging, ignore_errors=True)
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._release()
            if isinstance(exc, OSError):
                raise OutputUnwritableError(f"{self.out}: cannot write here ({exc.strerror})") from None
            raise
        self._saved_tempdir, tempfile.tempdir = tempfile.tempdir, str(self._tmp)
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
        for pattern in (f".{self.out.name}.staging-*", f".{self.out.name}.old-*", f".{self.out.name}.tmp-*"):
            for stale in self.parent.glob(pattern):
                shutil.rmtree(stale, ignore_errors=True)

    @property
    def failed(self) -> Path:
        return self.parent / f"{self.out.name}.failed"

    def keep_failed(self) -> Path | None:
        """Move the staging folder (a complete build that failed) to `NAME.failed`; None when a
        folder of that name exists that is not a failed deploykit build (it is left alone)."""
        if self.failed.exists():
            try:
                doc = json.loads((self.failed / MANIFEST).read_text())
                ours = "deploykit_version" in doc and doc.get("passed") is False
            except (OSError, ValueError):
                ours = False
            if not ours or not self.failed.is_dir() or self.failed.is_symlink():
                return None
            old = self.parent / f".{self.out.name}.old-{os.getpid()}"
            os.rename(self.failed, old)
            shutil.rmtree(old, ignore_errors=True)
        os.rename(self.staging, self.failed)
        self.committed = True  # nothing left to clean up
        return self.failed

    def commit(self) -> None:
        old = self.parent / f".{self.out.name}.old-{os.getpid()}"
        if self.out.exists():
            os.rename(self.out, old)
        os.rename(self.staging, self.out)
        shutil.rmtree(old, ignore_errors=True)
        self.committed = True

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.committed:
            for _ in range(3):  # a process killed a moment ago may still have been writing into it
                shutil.rmtree(self.staging, ignore_errors=True)
                if not self.staging.exists():
                    break
                time.sleep(0.2)
        tempfile.tempdir = self._saved_tempdir
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._release()
        why = _cannot_write(exc) if exc is not None and not isinstance(exc, DeployKitError) else None
        if why:  # e.g. TensorFlow's ResourceExhaustedError while saving: a clear error, not a bug
            reason = "no space left on the device" if why == "full" else "read-only file system"
            raise OutputUnwritableError(
                f"{self.out}: {reason} while writing the build; the previous output was kept "
                "(free some space or choose another --out)"
            ) from None

    def _lock(self) -> None:
        """flock `.NAME.lock`. The holder unlinks the file when it is done, so a build that opened
        the old file just before that holds a lock on nothing: it checks that the file it locked is
        still the one at the path, and tries again if not."""
        for _ in range(20):
            try:
                self.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputUnwritableError(f"{self.out}: cannot write here ({exc.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LockedError(f"{self.out}: another build is writing this output folder") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self._lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._lock_fd = fd
                return
            os.close(fd)  # its holder removed it between our open and our flock
        raise LockedError(f"{self.out}: the lock file {self._lock_path} keeps changing; another build is starting")

    def _release(self) -> None:
        if self._lock_fd is not None:
            try:
                os.unlink(self._lock_path)  # still holding the lock: no other build owns this file
            except OSError:
                pass
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None


def _cannot_write(exc: BaseException) -> str | None:
    """'full' or 'readonly' when `exc` says the disk is full or read-only (OSError or TF's errors)."""
    text = str(exc)
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in text \
            or "Disk quota exceeded" in text:
        return "full"
    if getattr(exc, "errno", None) == errno.EROFS or "Read-only file system" in text:
        return "readonly"
    return None

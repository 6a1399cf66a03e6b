"""Keep native (C++) log noise off the user's terminal.

TensorFlow and the TFLite converter write CUDA probing, MLIR pass notes and calibration chatter
straight to file descriptor 2, past Python's `sys.stderr`. For the CLI, fd 2 is pointed at a log
file and Python's own stderr at a copy of the real terminal, so deploykit's progress, warnings and
errors still show. `--debug` turns this off. The log is shown (tail) when a build fails unexpectedly.
"""
from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def native_logs_to_file() -> Iterator[str]:
    sys.stderr.flush()
    saved = os.dup(2)
    fd, path = tempfile.mkstemp(prefix="deploykit-native-", suffix=".log")
    os.unlink(path)  # nameless from the start: even a SIGKILLed process leaves no log file behind
    console = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
    old_stderr = sys.stderr
    os.dup2(fd, 2)
    sys.stderr = console
    try:
        yield f"/proc/self/fd/{fd}"  # readable by `tail` while the file is open
    finally:
        sys.stderr = old_stderr
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
        console.close()


def tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError:
        return ""

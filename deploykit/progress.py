"""Progress on stderr: a live spinner on a terminal, plain timestamped lines in CI and pipes."""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator


class Reporter:
    """Plain lines: `[deploykit] convert tflite/int8 ... ok (1.2 s)`."""

    def __init__(self, stream=None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet

    def info(self, message: str) -> None:
        if not self.quiet:
            print(f"[deploykit] {message}", file=self.stream, flush=True)

    def warn(self, message: str) -> None:
        print(f"[deploykit] warning: {message}", file=self.stream, flush=True)

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        start = time.perf_counter()
        self.info(f"{label} ...")
        try:
            yield
        except BaseException:
            self.info(f"{label} failed ({time.perf_counter() - start:.1f} s)")
            raise
        self.info(f"{label} ok ({time.perf_counter() - start:.1f} s)")


class RichReporter(Reporter):
    """A spinner per step on a terminal, with the finished steps kept on screen."""

    def __init__(self, quiet: bool = False):
        super().__init__(quiet=quiet)
        from rich.console import Console

        self.console = Console(stderr=True)

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"[dim]deploykit[/] {message}", highlight=False)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}", highlight=False)

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        start = time.perf_counter()
        if self.quiet:
            yield
            return
        with self.console.status(label):
            try:
                yield
            except BaseException:
                self.console.print(f"[red]✗[/] {label} ({time.perf_counter() - start:.1f} s)", highlight=False)
                raise
        self.console.print(f"[green]✓[/] {label} ({time.perf_counter() - start:.1f} s)", highlight=False)


def for_terminal(quiet: bool = False) -> Reporter:
    interactive = sys.stderr.isatty() and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"
    return RichReporter(quiet) if interactive else Reporter(quiet=quiet)


def silent() -> Reporter:
    return Reporter(quiet=True)

"""Progress on stderr: a live display on a terminal (rich), plain timestamped lines in CI and pipes.

Two shapes of work are reported:

- `step(label)`: one stage (load, convert, validate); a spinner on a terminal, a start and an end
  line otherwise.
- `tasks(label, total)`: the named jobs of a stage that run side by side (e.g. parity of every
  artifact). The jobs call `started(name)` and `finished(name, ...)` from any thread. On a terminal
  a progress bar shows how many finished and which are running, and each finished job leaves a
  line; otherwise only the finished lines print, one per job (and one per backend of a job that
  ran on several), so a CI log says what ran, how long it took and its verdict.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Mapping


class Tasks:
    """What the jobs of one `Reporter.tasks` phase report; thread-safe."""

    def __init__(self, reporter: "Reporter", label: str):
        self.reporter, self.label = reporter, label
        self.running: list[str] = []
        self.done = 0
        self._lock = threading.Lock()

    def started(self, name: str) -> None:
        with self._lock:
            self.running.append(name)
            self._changed()

    def finished(self, name: str, ok: bool, verdict: str, seconds: float | None = None,
                 backends: Mapping[str, tuple[bool, str]] | None = None) -> None:
        """`name` is done: `verdict` says how (e.g. "pass", "FAIL: ..."); `backends` maps each
        backend of a job that ran on several to its own (ok, verdict)."""
        took = f" ({seconds:.1f} s)" if seconds is not None else ""
        lines = [(ok, f"{self.label} {name}: {verdict}{took}")]
        lines += [(b_ok, f"{self.label} {name} [{backend}]: {b_verdict}") for backend, (b_ok, b_verdict) in
                  (backends or {}).items()]
        with self._lock:
            if name in self.running:
                self.running.remove(name)
            self.done += 1
            for line_ok, line in lines:
                self.reporter._task_line(line_ok, line)
            self._changed()

    def _changed(self) -> None:
        """A job started or finished (called with the lock held)."""


class Reporter:
    """Plain lines: `[deploykit] convert 5 artifact(s) ok (1.2 s)`.

    `details`: also print `detail()` lines, marked `[deploykit:detail]` (a `deploykit train`
    worker process: its output is the task's log file, and the launcher keeps those lines off
    the console)."""

    DETAIL = "[deploykit:detail]"

    def __init__(self, stream=None, quiet: bool = False, details: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.details = details

    def info(self, message: str) -> None:
        if not self.quiet:
            print(f"[deploykit] {message}", file=self.stream, flush=True)

    def warn(self, message: str) -> None:
        print(f"[deploykit] warning: {message}", file=self.stream, flush=True)

    def detail(self, message: str) -> None:
        """A line for logs, not for people watching: printed only by a `details=True` reporter."""
        if self.details and not self.quiet:
            print(f"{self.DETAIL} {message}", file=self.stream, flush=True)

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

    @contextmanager
    def tasks(self, label: str, total: int) -> Iterator[Tasks]:
        """A phase of `total` named jobs; see the module docstring."""
        yield Tasks(self, label)

    def _task_line(self, ok: bool, line: str) -> None:
        self.info(f"  {line}")


class _BarTasks(Tasks):
    def __init__(self, reporter: "RichReporter", label: str, progress, task_id):
        super().__init__(reporter, label)
        self.progress, self.task_id = progress, task_id

    def _changed(self) -> None:
        running = f": {', '.join(self.running)}" if self.running else ""
        self.progress.update(self.task_id, completed=self.done, description=f"{self.label}{running}")
        self.progress.refresh()


class RichReporter(Reporter):
    """On a terminal: a spinner per step and a progress bar per phase of side-by-side jobs, in one
    live display at the bottom; finished steps and jobs stay on screen above it."""

    def __init__(self, quiet: bool = False, console=None):
        super().__init__(quiet=quiet)
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self._progress = None
        self._users = 0
        self._live_lock = threading.Lock()

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"[dim]deploykit[/] {_escape(message)}", highlight=False)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {_escape(message)}", highlight=False)

    def _task_line(self, ok: bool, line: str) -> None:
        mark = "[green]✓[/]" if ok else "[red]✗[/]"
        self.console.print(f"  {mark} {_escape(line)}", highlight=False)

    @contextmanager
    def _live(self):
        """The one live display (rich allows one at a time), shared by nested steps and phases."""
        with self._live_lock:
            if self._progress is None:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    SpinnerColumn,
                    TextColumn,
                    TimeElapsedColumn,
                )

                self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), _IfSized(BarColumn()),
                                          _IfSized(MofNCompleteColumn()), TimeElapsedColumn(),
                                          console=self.console, transient=True)
                self._progress.start()
            self._users += 1
            progress = self._progress
        try:
            yield progress
        finally:
            with self._live_lock:
                self._users -= 1
                if not self._users:
                    self._progress.stop()
                    self._progress = None

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        start = time.perf_counter()
        if self.quiet:
            yield
            return
        with self._live() as progress:
            task = progress.add_task(label, total=None)
            try:
                yield
            except BaseException:
                progress.remove_task(task)
                took = time.perf_counter() - start
                self.console.print(f"[red]✗[/] {_escape(label)} ({took:.1f} s)", highlight=False)
                raise
            progress.remove_task(task)
        self.console.print(f"[green]✓[/] {_escape(label)} ({time.perf_counter() - start:.1f} s)", highlight=False)

    @contextmanager
    def tasks(self, label: str, total: int) -> Iterator[Tasks]:
        if self.quiet:
            yield Tasks(Reporter(quiet=True), label)
            return
        with self._live() as progress:
            task = progress.add_task(label, total=total)
            try:
                yield _BarTasks(self, label, progress, task)
            finally:
                progress.remove_task(task)


def _IfSized(column):
    """A progress column shown only for tasks with a total (a phase's bar, not a step's spinner)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class IfSized(ProgressColumn):
        def render(self, task):
            return column.render(task) if task.total is not None else Text("")

    return IfSized()


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def for_terminal(quiet: bool = False) -> Reporter:
    interactive = sys.stderr.isatty() and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"
    return RichReporter(quiet) if interactive else Reporter(quiet=quiet)


def silent() -> Reporter:
    return Reporter(quiet=True)

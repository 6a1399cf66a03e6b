"""STAND-IN server-side batching of `tensorflow_model_server --enable_batching` (test double; the
product targets the real image).

What it stands for: TF Serving's batching session (`BasicBatchScheduler` over a shared batch
scheduler, configured by the `BatchingParameters` text proto of `--batching_parameters_file`).
Concurrent requests to one signature are queued as tasks; a batch takes tasks until it holds
`max_batch_size` rows (a task that would overflow it closes it and opens the next) or until
`batch_timeout_micros` have passed since its first task; `num_batch_threads` threads each run one
closed batch at a time: the inputs concatenated along dimension 0, one signature call, the outputs
split back to each task. As in TF Serving:

    a task larger than max_batch_size      INVALID_ARGUMENT  Task size N is larger than maximum input batch size M
    max_enqueued_batches already queued    UNAVAILABLE       The batch scheduling queue to which this task was submitted is full

Simplifications (none changes what a client sees beyond timing): one queue per signature *and*
per input shape/dtype (the real server pads or refuses mismatched shapes; the stand-in keeps them
apart), no `allowed_batch_sizes` padding, no large-batch splitting, no adaptive scheduling.
"""
from __future__ import annotations

import re
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
from standin_grpc import ServingError

DEFAULTS = {"max_batch_size": 32, "batch_timeout_micros": 0, "max_enqueued_batches": 100, "num_batch_threads": 1}


def read_parameters(path: str) -> dict:
    """The numeric fields of a BatchingParameters text proto (`name { value: N }` or `name: N`)."""
    params = dict(DEFAULTS)
    text = Path(path).read_text() if path else ""
    for key in DEFAULTS:
        m = re.search(rf"\b{key}\s*(?:\{{\s*value:\s*(\d+)\s*\}}|:\s*(\d+))", text)
        if m:
            params[key] = int(m.group(1) or m.group(2))
    return params


class _Task:
    __slots__ = ("feeds", "size", "done", "result", "error")

    def __init__(self, feeds: dict, size: int):
        self.feeds, self.size = feeds, size
        self.done = threading.Event()
        self.result = self.error = None


class _Queue:
    """One batch queue with its batch threads."""

    def __init__(self, run, params: dict):
        self.run, self.params = run, params
        self.cond = threading.Condition()
        self.open: list[_Task] = []
        self.open_rows = 0
        self.open_since = 0.0
        self.closed: deque[list[_Task]] = deque()
        for i in range(max(1, params["num_batch_threads"])):
            threading.Thread(target=self._loop, name=f"batch-{i}", daemon=True).start()

    def submit(self, feeds: dict, size: int) -> dict:
        p = self.params
        if size > p["max_batch_size"]:
            raise ServingError("INVALID_ARGUMENT", f"Task size {size} is larger than maximum input batch size "
                                                 f"{p['max_batch_size']}")
        task = _Task(feeds, size)
        with self.cond:
            if self.open and self.open_rows + size > p["max_batch_size"]:
                self._close()
            if not self.open:
                if len(self.closed) >= p["max_enqueued_batches"]:
                    raise ServingError("UNAVAILABLE", "The batch scheduling queue to which this task was submitted is full")
                self.open_since = time.perf_counter()
            self.open.append(task)
            self.open_rows += size
            if self.open_rows >= p["max_batch_size"]:
                self._close()
            self.cond.notify_all()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.result

    def _close(self) -> None:
        self.closed.append(self.open)
        self.open, self.open_rows = [], 0

    def _next(self) -> list[_Task]:
        timeout = self.params["batch_timeout_micros"] / 1e6
        with self.cond:
            while True:
                if self.closed:
                    return self.closed.popleft()
                if self.open:
                    left = self.open_since + timeout - time.perf_counter()
                    if left <= 0:
                        self._close()
                        return self.closed.popleft()
                    self.cond.wait(left)
                else:
                    self.cond.wait()

    def _loop(self) -> None:
        while True:
            batch = self._next()
            try:
                names = list(batch[0].feeds)
                joined = {n: np.concatenate([t.feeds[n] for t in batch]) for n in names}
                outputs = self.run(joined)
                start = 0
                for t in batch:
                    t.result = {k: v[start : start + t.size] for k, v in outputs.items()}
                    start += t.size
            except BaseException as exc:  # noqa: BLE001 - every task of the batch gets the batch's error
                for t in batch:
                    t.error = exc
            for t in batch:
                t.done.set()


class Batcher:
    """Queues keyed by (signature, input shapes after the batch dimension, dtypes)."""

    def __init__(self, params: dict):
        self.params = params
        self.queues: dict[tuple, _Queue] = {}
        self.lock = threading.Lock()

    def run(self, key: tuple, call, feeds: dict) -> dict:
        """`call(feeds)` -> {name: ndarray}, batched with other requests to the same `key` (servable, signature)."""
        arrays = {n: np.asarray(v) for n, v in feeds.items()}
        sizes = {a.shape[0] if a.ndim else 1 for a in arrays.values()}
        if len(sizes) != 1 or any(a.ndim == 0 for a in arrays.values()):
            return call(arrays)  # not batchable (scalars, ragged batch sizes): run alone, as an error would
        shape_key = (key, *sorted((n, a.shape[1:], a.dtype.str) for n, a in arrays.items()))
        with self.lock:
            queue = self.queues.get(shape_key)
            if queue is None:
                queue = self.queues[shape_key] = _Queue(call, self.params)
        return queue.submit(arrays, sizes.pop())

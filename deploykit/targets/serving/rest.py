"""A client for the TF Serving REST API: `:predict` in row and columnar formats, and load figures.

Row format sends `{"instances": [...]}` (one object per example, or bare values for a single
input) and reads `{"predictions": [...]}`; columnar sends `{"inputs": {...}}` and reads
`{"outputs": ...}`. Both come back as the same dict of numpy arrays, one per output name.
Latency: single-row requests, sequential (p50/p90/p99), then 1, 4 and 16 concurrent clients
(throughput and percentiles at each level).
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping

import numpy as np

from deploykit.validation.latency import Sampling, timed_calls

CONCURRENCY = (1, 4, 16)
CHUNK_ROWS = 64  # rows per parity request


class RestError(RuntimeError):
    pass


class RestClient:
    def __init__(self, base_url: str, model: str, version: int | None = None, signature: str = "serving_default"):
        import requests

        path = f"/v1/models/{model}" + (f"/versions/{version}" if version else "")
        self.url = f"{base_url}{path}:predict"
        self.signature = signature
        self._local = threading.local()
        self._requests = requests

    def _session(self):
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = self._requests.Session()
        return s

    def _post(self, body: dict) -> dict:
        r = self._session().post(self.url, json={"signature_name": self.signature, **body}, timeout=60)
        if r.status_code != 200:
            raise RestError(f"POST {self.url}: HTTP {r.status_code}: {r.text[:300]}")
        return r.json()

    def predict_rows(self, inputs: Mapping[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        names = list(inputs)
        n = len(inputs[names[0]])
        if len(names) == 1:
            instances = json_values(inputs[names[0]])
        else:
            lists = {k: json_values(v) for k, v in inputs.items()}
            instances = [{k: lists[k][i] for k in names} for i in range(n)]
        predictions = self._post({"instances": instances})["predictions"]
        if len(output_names) == 1 and not (predictions and isinstance(predictions[0], dict)):
            return {output_names[0]: np.asarray(predictions, dtype=np.float64)}
        return {k: np.asarray([p[k] for p in predictions], dtype=np.float64) for k in output_names}

    def predict_columns(self, inputs: Mapping[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        names = list(inputs)
        body = json_values(inputs[names[0]]) if len(names) == 1 else {k: json_values(v) for k, v in inputs.items()}
        outputs = self._post({"inputs": body})["outputs"]
        if not isinstance(outputs, dict):
            outputs = {output_names[0]: outputs}
        return {k: np.asarray(outputs[k], dtype=np.float64) for k in output_names}

    def predict_all(self, inputs: Mapping[str, np.ndarray], output_names: list[str], fmt: str) -> dict[str, np.ndarray]:
        """Every row, in chunks, in the "row" or "columnar" format."""
        call = self.predict_rows if fmt == "row" else self.predict_columns
        n = len(next(iter(inputs.values())))
        parts = [call({k: v[i : i + CHUNK_ROWS] for k, v in inputs.items()}, output_names) for i in range(0, n, CHUNK_ROWS)]
        return {k: np.concatenate([p[k] for p in parts]) for k in output_names}


def json_values(array: np.ndarray) -> list:
    """An array as TF Serving's REST API reads it: numbers and text as JSON, binary strings
    (numpy `S`) as {"b64": base64} objects."""
    if array.dtype.kind == "S":
        import base64

        return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode()}, otypes=[object])(array).tolist()
    return array.tolist()


def single_rows(inputs: Mapping[str, np.ndarray]) -> list[dict]:
    """Columnar bodies of one row each (the unit of the latency figures)."""
    n = len(next(iter(inputs.values())))
    names = list(inputs)
    rows = []
    for i in range(n):
        rows.append(json_values(inputs[names[0]][i : i + 1]) if len(names) == 1
                    else {k: json_values(v[i : i + 1]) for k, v in inputs.items()})
    return rows


def sequential(client: RestClient, inputs: Mapping[str, np.ndarray], warmup: int,
               sampling: Sampling) -> tuple[list[float], float, str]:
    """(per-request milliseconds, first request ms, why sampling stopped): one client, one row per request."""
    bodies = single_rows(inputs)
    return timed_calls(lambda i: client._post({"inputs": bodies[i % len(bodies)]}), warmup, sampling)


def concurrent(call, bodies: list, clients: int, seconds: float) -> dict:
    """`clients` threads each calling `call(body)` back to back for `seconds`: throughput and percentiles."""
    stop = time.perf_counter() + seconds
    per_thread: list[list[float]] = [[] for _ in range(clients)]

    def worker(k: int) -> None:
        i = k
        while time.perf_counter() < stop:
            t = time.perf_counter()
            call(bodies[i % len(bodies)])
            per_thread[k].append((time.perf_counter() - t) * 1000)
            i += clients

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(worker, range(clients)))
    wall = time.perf_counter() - started
    t = np.concatenate([np.asarray(x) for x in per_thread]) if any(per_thread) else np.asarray([0.0])
    p50, p90, p99 = np.percentile(t, [50, 90, 99])
    return {"clients": clients, "requests": int(t.size), "seconds": round(wall, 3),
            "throughput_per_s": round(t.size / wall, 2), "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99)}


def load_figures(client: RestClient, inputs: Mapping[str, np.ndarray], seconds: float,
                 levels: tuple[int, ...] = CONCURRENCY) -> dict[str, dict]:
    bodies = single_rows(inputs)
    call = lambda body: client._post({"inputs": body})  # noqa: E731
    for body in bodies[:4]:  # every connection warm before timing
        call(body)
    return {str(n): concurrent(call, bodies, n, seconds) for n in levels}

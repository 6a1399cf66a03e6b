"""A client for the TF Serving REST API: `:predict` in row and columnar formats, and load figures.

Row format sends `{"instances": [...]}` (one object per example, or bare values for a single
input) and reads `{"predictions": [...]}`; columnar sends `{"inputs": {...}}` and reads
`{"outputs": ...}`. Both come back as the same dict of numpy arrays, one per output name.
Latency: single-row requests, sequential (p50/p90/p99); the load stage (concurrent clients over
REST and gRPC) is `load.py`.
"""
from __future__ import annotations

import threading
from typing import Mapping

import numpy as np

from deploykit.validation.latency import Sampling, timed_calls

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

"""The load stage of the serving container check: the running server as a deployment sees it.

For each API (`rest`: `:predict` columnar JSON; `grpc`: `PredictionService/Predict`) and each
concurrency level N, N clients in parallel (threads; each with its own connection: a
`requests.Session`, or a gRPC channel with its own subchannel pool) send single-row predict
requests on `serving_default` back to back, bounded in time (`seconds` per level) and in count
(`requests` per level, over all clients), to the server on 127.0.0.1. Each client first sends one
untimed request (its connection opens), then all start together. Every answer is checked: a
non-OK answer (HTTP status, gRPC code, a connection error) is an error, and so is an answer whose
outputs differ from what the same server answered to that row alone, before the load (names,
shapes, or values beyond `TOLERANCE` x the output's largest magnitude: a batcher mixing up rows,
a truncated answer).

The harness returns raw per-request milliseconds and counts per level; the figures (p50/p99,
throughput) and the verdicts are computed in `deploykit.validation.load`, like every latency figure.
Runs in the `deploykit` process: REST through `requests`, gRPC through `grpcio` on `wire.py`'s
TensorFlow-free messages.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Mapping

import numpy as np

APIS = ("rest", "grpc")
BATCHING = ("off", "on")
ROWS = 32  # distinct rows cycled through (each checked against the server's own answer)
TOLERANCE = 1e-4  # max |answer - expected| / max |expected| per output (batched rounding stays far below)
REQUEST_TIMEOUT = 10.0  # seconds; a level ends at most this long after its window closes
GRPC_OPTIONS = [("grpc.enable_http_proxy", 0), ("grpc.use_local_subchannel_pool", 1)]  # loopback; a connection per client


@dataclass(frozen=True)
class Plan:
    levels: tuple[int, ...] = (1, 4, 16, 64)
    seconds: float = 0.25  # per level ...
    requests: int = 2000  # ... and at most this many requests per level
    apis: tuple[str, ...] = APIS
    batching: tuple[str, ...] = BATCHING

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, doc: Mapping) -> "Plan":
        return cls(tuple(int(n) for n in doc["levels"]), float(doc["seconds"]), int(doc["requests"]),
                   tuple(doc["apis"]), tuple(doc["batching"]))


class WrongOutput(Exception):
    pass


def single_rows(inputs: Mapping[str, np.ndarray], rows: int = ROWS) -> list[dict[str, np.ndarray]]:
    n = min(rows, len(next(iter(inputs.values()))))
    return [{k: v[i : i + 1] for k, v in inputs.items()} for i in range(n)]


def expected_outputs(rest_url: str, model: str, version: int | None, rows: list[dict]) -> list[dict[str, np.ndarray]]:
    """What the server answers to each row alone (sequential REST, before any load)."""
    from deploykit.targets.serving.rest import RestClient

    client = RestClient(rest_url, model, version=version)
    out = []
    for row in rows:
        body = client._post({"inputs": _rest_inputs(row)})["outputs"]
        out.append({k: np.asarray(v, dtype=np.float64) for k, v in body.items()} if isinstance(body, dict)
                   else {"": np.asarray(body, dtype=np.float64)})
    return out


def check(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray], scale: Mapping[str, float]) -> None:
    if sorted(got) != sorted(want):
        raise WrongOutput(f"wrong output: outputs {sorted(got)}, expected {sorted(want)}")
    for k, w in want.items():
        g = np.asarray(got[k], dtype=np.float64)
        if g.shape != w.shape:
            raise WrongOutput(f"wrong output: '{k}' has shape {g.shape}, expected {w.shape}")
        err = float(np.max(np.abs(g - w))) / scale[k] if w.size else 0.0
        if not err <= TOLERANCE:
            raise WrongOutput(f"wrong output: '{k}' differs from the server's answer to that row alone "
                              f"(max abs / max |expected| = {err:.3g} > {TOLERANCE:g})")


def _scales(expected: list[dict]) -> dict[str, float]:
    return {k: max(float(np.max(np.abs(e[k]))) if e[k].size else 0.0 for e in expected) or 1.0 for k in expected[0]}


def _rest_inputs(row: Mapping[str, np.ndarray]):
    from deploykit.targets.serving.rest import json_values

    names = list(row)
    return json_values(row[names[0]]) if len(names) == 1 else {k: json_values(v) for k, v in row.items()}


# ---- one client per API -----------------------------------------------------------------------------
def rest_client(url: str, model: str, version: int | None, rows: list[dict], expected: list[dict]) -> Callable:
    """A factory of REST clients: each `make()` opens a session and returns `call(i)`."""
    import requests

    endpoint = f"{url}/v1/models/{model}" + (f"/versions/{version}" if version else "") + ":predict"
    bodies = [json.dumps({"signature_name": "serving_default", "inputs": _rest_inputs(r)}).encode() for r in rows]
    scale = _scales(expected)
    single = "" in expected[0]

    def make():
        session = requests.Session()

        def call(i: int) -> None:
            j = i % len(bodies)
            r = session.post(endpoint, data=bodies[j], headers={"Content-Type": "application/json"},
                             timeout=REQUEST_TIMEOUT)
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}: {_clip(r.text)}")
            outputs = r.json()["outputs"]
            got = {"": outputs} if single and not isinstance(outputs, dict) else outputs
            check({k: np.asarray(v) for k, v in got.items()}, expected[j], scale)

        return call, session.close

    return make


def grpc_client(address: str, model: str, version: int | None, rows: list[dict], expected: list[dict]) -> Callable:
    """A factory of gRPC clients: each `make()` opens a channel and returns `call(i)`."""
    import grpc

    from deploykit.targets.serving import wire

    requests_ = [wire.predict_request(model, r, version=version) for r in rows]
    scale = _scales(expected)
    single = "" in expected[0]

    def make():
        channel = grpc.insecure_channel(address, options=GRPC_OPTIONS)
        predict = channel.unary_unary(wire.PREDICT_METHOD)  # bytes in, bytes out

        def call(i: int) -> None:
            j = i % len(requests_)
            try:
                answer = predict(requests_[j], timeout=REQUEST_TIMEOUT)
            except grpc.RpcError as exc:
                raise RuntimeError(f"gRPC {exc.code().name}: {_clip(exc.details() or '')}") from None
            got = wire.predict_outputs(answer)
            if single and len(got) == 1:
                got = {"": next(iter(got.values()))}
            check(got, expected[j], scale)

        return call, channel.close

    return make


# ---- one level -------------------------------------------------------------------------------------
def run_level(make: Callable, clients: int, seconds: float, max_requests: int) -> dict:
    """`clients` threads, each with a client of its own, calling back to back until `seconds` have
    passed or `max_requests` were sent. Returns raw figures: per-request ms of the OK answers,
    errors (wrong outputs included), the first error's message, wall seconds."""
    lock = threading.Lock()
    tickets = itertools.count()
    timings: list[list[float]] = [[] for _ in range(clients)]
    counts = {"errors": 0, "wrong_outputs": 0, "sent": 0}
    first: list[str] = []
    window = {}

    def failed(exc: BaseException) -> None:
        with lock:
            counts["errors"] += 1
            counts["wrong_outputs"] += isinstance(exc, WrongOutput)
            if not first:
                first.append(str(exc) if isinstance(exc, (RuntimeError, WrongOutput)) else
                             f"{type(exc).__name__}: {_clip(str(exc))}")

    def opened():
        window["start"] = time.perf_counter()
        window["end"] = window["start"] + seconds

    barrier = threading.Barrier(clients, action=opened)

    def client(k: int) -> None:
        call = close = None
        try:
            call, close = make()
            call(k)  # untimed: the connection opens
        except Exception as exc:  # noqa: BLE001 - a client that cannot connect: one failed request
            failed(exc)
            with lock:
                counts["sent"] += 1
            call = None
        try:
            barrier.wait(timeout=60)
        except threading.BrokenBarrierError:
            call = None
        while call is not None:
            i = next(tickets)
            if i >= max_requests or time.perf_counter() >= window["end"]:
                break
            t0 = time.perf_counter()
            try:
                call(i)
                timings[k].append((time.perf_counter() - t0) * 1000)
            except Exception as exc:  # noqa: BLE001 - any failed answer counts
                failed(exc)
            with lock:
                counts["sent"] += 1
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001
                pass

    threads = [threading.Thread(target=client, args=(k,), name=f"load-{k}", daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - window.get("start", time.perf_counter())
    ok = [x for per in timings for x in per]
    return {"clients": clients, "requests": counts["sent"], "errors": counts["errors"],
            "wrong_outputs": counts["wrong_outputs"], "first_error": first[0] if first else None,
            "seconds": wall, "timings_ms": ok}


def measure(plan: Plan, batching: str, rest_url: str, grpc_address: str, model: str, version: int | None,
            rows: list[dict], expected: list[dict]) -> list[dict]:
    """Every API and level of `plan` against one running server (`batching` says how it was started)."""
    factories = {"rest": lambda: rest_client(rest_url, model, version, rows, expected),
                 "grpc": lambda: grpc_client(grpc_address, model, version, rows, expected)}
    out = []
    for api in plan.apis:
        make = factories[api]()
        for clients in plan.levels:
            out.append({"api": api, "batching": batching,
                        **run_level(make, clients, plan.seconds, plan.requests)})
    return out


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."

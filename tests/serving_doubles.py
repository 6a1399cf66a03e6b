"""TEST DOUBLES of a TF Serving server for the load stage's fast tests (no Docker, no TensorFlow).

`ServingDouble` answers TF Serving's REST `:predict` (columnar) and gRPC `PredictionService/Predict`
on 127.0.0.1 for a toy model (`y = 2 * x` per row, output `y`), each answer after `delay` seconds,
so that concurrent clients overlap. Failure modes, the reason it exists:

    overload_above=N   a request arriving while N others are in flight is refused: HTTP 503 /
                       gRPC UNAVAILABLE, as an overloaded server answers
    wrong_above=N      such a request gets another row's answer (a batcher mixing up rows)

It is not a model server: the containers (tests/serving_standin, the real tensorflow/serving)
are what the container checks run against.
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from deploykit.targets.serving import wire

from .serving_standin.standin_http import send_json

MODEL = "double"


class ServingDouble:
    def __init__(self, *, delay: float = 0.002, overload_above: int = 0, wrong_above: int = 0):
        self.delay, self.overload_above, self.wrong_above = delay, overload_above, wrong_above
        self.inflight = 0
        self.lock = threading.Lock()
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.http.daemon_threads = True
        self.rest_url = f"http://127.0.0.1:{self.http.server_address[1]}"
        import grpc

        self.grpc = grpc.server(ThreadPoolExecutor(max_workers=80))
        handler = grpc.unary_unary_rpc_method_handler(self._grpc_predict)  # bytes in, bytes out
        self.grpc.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "tensorflow.serving.PredictionService", {"Predict": handler})])
        self.grpc_address = f"127.0.0.1:{self.grpc.add_insecure_port('127.0.0.1:0')}"

    def __enter__(self) -> "ServingDouble":
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.grpc.start()
        return self

    def __exit__(self, *exc) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.grpc.stop(grace=None)

    # ---- the toy model and its failure modes -----------------------------------------------------
    def answer(self, x: np.ndarray) -> tuple[str | None, np.ndarray]:
        """(refusal message or None, outputs) for one request."""
        with self.lock:
            self.inflight += 1
            busy = self.inflight
        try:
            time.sleep(self.delay)
            if self.overload_above and busy > self.overload_above:
                return f"overloaded: {busy} requests in flight (double refuses above {self.overload_above})", x
            y = 2 * np.asarray(x, dtype=np.float32)
            if self.wrong_above and busy > self.wrong_above:
                y = y + 1.0  # another row's answer
            return None, y
        finally:
            with self.lock:
                self.inflight -= 1

    def _handler(self):
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                refused, y = double.answer(np.asarray(body["inputs"], dtype=np.float32))
                code, doc = (503, {"error": refused}) if refused else (200, {"outputs": y.tolist()})
                send_json(self, code, doc)

        return Handler

    def _grpc_predict(self, request: bytes, context) -> bytes:
        import grpc

        model, version, signature, inputs = wire.parse_predict_request(request)
        refused, y = self.answer(inputs["x"])
        if refused:
            context.abort(grpc.StatusCode.UNAVAILABLE, refused)
        return wire.predict_response(model, version or 1, signature, {"y": y})


def rows(n: int = 8) -> list[dict[str, np.ndarray]]:
    """Single-row inputs of the toy model, and the answers it gives to each alone."""
    return [{"x": np.arange(3, dtype=np.float32).reshape(1, 3) + i} for i in range(n)]

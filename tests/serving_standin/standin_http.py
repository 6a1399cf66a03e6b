"""One JSON answer over HTTP, for the stand-in server and the test doubles in tests/serving_doubles.py."""
from __future__ import annotations

import json


def send_json(handler, code: int, doc: dict) -> None:
    """Write `doc` as the JSON body of an HTTP `code` answer on a BaseHTTPRequestHandler."""
    raw = json.dumps(doc).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(raw)))
    handler.end_headers()
    handler.wfile.write(raw)

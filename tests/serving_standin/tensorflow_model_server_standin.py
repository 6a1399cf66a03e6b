#!/usr/bin/env python3
"""STAND-IN for `tensorflow_model_server` (TF Serving), for tests on machines that cannot pull the
real `tensorflow/serving` image. It is a test double: the product targets the real image.

It accepts the `tensorflow_model_server` flags deploykit's Dockerfile passes (`--port`,
`--rest_api_port`, `--rest_api_bind_address`... `--model_config_file`, `--model_name`,
`--model_base_path`, `--file_system_poll_wait_seconds`, `--saved_model_tags`, batching flags;
unknown flags are logged and ignored), loads SavedModels with TensorFlow's own loader and serves
both of TF Serving's APIs from them:

    REST (--rest_api_port)
    GET  /v1/models/NAME[/versions/N]            model_version_status (state AVAILABLE when loaded)
    GET  /v1/models/NAME[/versions/N]/metadata   the GetModelMetadataResponse as JSON (signature_def)
    POST /v1/models/NAME[/versions/N]:predict    {"instances": [...]} (row) or {"inputs": ...} (columnar)
    gRPC (--port; 0 disables it, as in the real server): see standin_grpc.py
    PredictionService  Predict, Classify, Regress, GetModelMetadata;  ModelService  GetModelStatus

Signatures and their metadata are the MetaGraphDef's (`saved_model.pb`, tags `serve`), as the
real server reads them; errors carry TF Serving's status codes (REST: its HTTP mapping,
400 for INVALID_ARGUMENT and FAILED_PRECONDITION, 404 for NOT_FOUND).
Like TF Serving it loads only version folders with integer names, serves the versions its
`model_version_policy` aspires (file_system_storage_path_source.cc: `latest { num_versions: N }`,
the N highest, at least 1 and the default; `all {}`; `specific { versions: ... }`, those present,
a missing one only logged), loading a newly aspired version before unloading one no longer
aspired (state END), replays the warm-up requests in `assets.extra/`, polls the base path for new
versions, and reports a version that fails to load (state END with an error), so a half-written
version is visible to a test. Unlike it, both APIs bind `--rest_api_bind_address` (loopback by
default) instead of every interface.

Batching: with `--enable_batching` (and `--batching_parameters_file`), every signature call of
both APIs goes through `standin_batching.py`, a simple server-side batcher standing for TF
Serving's batching session (max_batch_size, batch_timeout_micros, max_enqueued_batches,
num_batch_threads; its queue-full and task-too-large errors).

Test-double knob (not a TF Serving feature): `STANDIN_OVERLOAD_ABOVE=N` in the environment makes
the stand-in answer UNAVAILABLE (REST: 503) to a predict, classify or regress request that arrives
while N others are in flight (counted from arrival to answer; admitted requests are held 5 ms), as
an overloaded server would; the tests use it to make a load level fail.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(1, str(Path(__file__).resolve().parent))  # standin_grpc beside this file (tests), or on PYTHONPATH
import standin_batching  # noqa: E402
import standin_grpc  # noqa: E402
import standin_http  # noqa: E402
from standin_grpc import ServingError  # noqa: E402

HTTP_STATUS = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400, "NOT_FOUND": 404,
               "ALREADY_EXISTS": 409, "UNIMPLEMENTED": 501, "UNAVAILABLE": 503}  # http_server.cc; others 500

ROUTE = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?(:predict|/metadata)?$")


def log(msg: str) -> None:
    print(f"[standin] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


BATCHER: standin_batching.Batcher | None = None  # set by --enable_batching


class Servable:
    """One loaded version: TensorFlow's loaded object (to run signatures) and the MetaGraphDef's
    signature_def map (what metadata describes, as the real server reads it)."""

    def __init__(self, version_dir: Path, tags: tuple[str, ...]):
        self.loaded = tf.saved_model.load(str(version_dir), tags=list(tags))
        self.signature_defs = signature_defs(version_dir, tags)
        _ = self.loaded.signatures["serving_default"]

    def call(self, name: str, feeds: dict) -> dict:
        """Run signature `name` on `feeds` (tensors or arrays): {output: ndarray}; batched with
        other requests when the server runs with --enable_batching."""
        fn = self.loaded.signatures[name]

        def direct(given: dict) -> dict:
            return {k: v.numpy() for k, v in fn(**{n: tf.constant(a) for n, a in given.items()}).items()}

        if BATCHER is None:
            return direct(feeds)
        arrays = {n: (v.numpy() if isinstance(v, tf.Tensor) else np.asarray(v)) for n, v in feeds.items()}
        return BATCHER.run((id(self), name), direct, arrays)


def signature_defs(version_dir: Path, tags: tuple[str, ...]) -> dict:
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((version_dir / "saved_model.pb").read_bytes())
    for graph in saved.meta_graphs:
        if set(tags) <= set(graph.meta_info_def.tags):
            return dict(graph.signature_def)
    raise ValueError(f"{version_dir}: no MetaGraphDef with tags {','.join(tags)}")


def _status(version: int, state: str, code: str = "OK", message: str = "") -> dict:
    return {"version": version, "state": state, "error_code": code, "error_message": message}


def aspired(policy: tuple, versions: list[int]) -> list[int]:
    """The versions a version policy serves among `versions` (the base path's integer children), as
    file_system_storage_path_source.cc aspires them: ("latest", N) the max(N, 1) highest, ("all",)
    every one, ("specific", [v...]) those listed that are present (a missing one is only logged)."""
    kind = policy[0]
    if kind == "all":
        return sorted(versions)
    if kind == "specific":
        return sorted(v for v in set(versions) if v in policy[1])
    return sorted(versions)[-max(policy[1], 1):] if versions else []


class Model:
    """One served model: polls base_path, keeps the versions its version policy aspires loaded."""

    def __init__(self, name: str, base_path: str, poll: float, tags: tuple[str, ...] = ("serve",),
                 policy: tuple = ("latest", 1)):
        self.name, self.base, self.poll, self.tags, self.policy = name, Path(base_path), poll, tags, policy
        self.loaded: dict[int, Servable] = {}
        self.status: dict[int, dict] = {}
        self.lock = threading.Lock()
        self.scan()
        if poll > 0:
            threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            time.sleep(self.poll)
            self.scan()

    def scan(self) -> None:
        try:
            versions = sorted(int(p.name) for p in self.base.iterdir() if p.is_dir() and p.name.isdigit())
        except OSError:
            versions = []
        wanted = aspired(self.policy, versions)
        if self.policy[0] == "specific":
            for missing in sorted(set(self.policy[1]) - set(versions)):
                log(f"Version {missing} of servable {self.name}, which was requested to be served as a 'specific' "
                    "version in the servable's version policy, was not found in the file system")
        for version in wanted:  # new versions load before old ones go (availability-preserving)
            if version not in self.status:
                self._load(version)
        with self.lock:
            for old in [v for v in self.loaded if v not in wanted]:
                del self.loaded[old]
                self.status[old] = _status(old, "END")

    def _load(self, version: int) -> None:
        try:
            servable = Servable(self.base / str(version), self.tags)
            warm = replay_warmup(servable.loaded, self.base / str(version))
            if warm:
                log(f"Finished reading warmup data for model at {self.base / str(version)}. Number of warmup records read: {warm}.")
        except Exception as exc:  # noqa: BLE001 - reported like TF Serving: state END with an error
            log(f"ERROR loading {self.name} version {version}: {type(exc).__name__}: {str(exc)[:300]}")
            with self.lock:
                self.status[version] = _status(version, "END", "UNKNOWN", str(exc)[:300])
            return
        with self.lock:
            self.loaded[version] = servable
            self.status[version] = _status(version, "AVAILABLE")
        log(f"Successfully loaded servable version {{name: {self.name} version: {version}}}")

    def get(self, version: int | None):
        with self.lock:
            if version is None:
                if not self.loaded:
                    return None, None
                version = max(self.loaded)
            return version, self.loaded.get(version)


class Core:
    """What both APIs ask: a servable for (name, version) and the version states, with TF Serving's
    errors (server_core.cc, basic_manager.cc, get_model_status_impl.cc)."""

    def __init__(self, models: dict[str, Model]):
        self.models = models

    def servable(self, name: str, version: int | None):
        """(name, version, Servable), or NOT_FOUND "Servable not found for request: Latest(m)"."""
        if not name:
            raise ServingError("INVALID_ARGUMENT", "ModelSpec has no name specified.")
        model = self.models.get(name)
        found, servable = model.get(version) if model else (None, None)
        if servable is None:
            asked = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise ServingError("NOT_FOUND", f"Servable not found for request: {asked}")
        return name, found, servable

    def status(self, name: str, version: int | None) -> list[dict]:
        model, states = self.models.get(name), {}
        if model is not None:
            with model.lock:
                states = dict(model.status)
        if version is not None:
            if version not in states:
                raise ServingError("NOT_FOUND", f"Could not find version {version} of model {name}")
            return [states[version]]
        if not states:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        return [states[v] for v in sorted(states, reverse=True)]


def rest_status(s: dict) -> dict:
    return {"version": str(s["version"]), "state": s["state"],
            "status": {"error_code": s["error_code"], "error_message": s["error_message"]}}


def replay_warmup(loaded, version_dir: Path) -> int:
    """Run the PredictionLog records of assets.extra/tf_serving_warmup_requests, as TF Serving does
    with --enable_model_warmup (a bad record fails the load)."""
    path = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    if not path.exists():
        return 0
    from tensorflow_serving.apis import prediction_log_pb2

    count = 0
    for raw in tf.data.TFRecordDataset(str(path)):
        request = prediction_log_pb2.PredictionLog.FromString(raw.numpy()).predict_log.request
        fn = loaded.signatures[request.model_spec.signature_name or "serving_default"]
        fn(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
        count += 1
    return count


POLICY = re.compile(r"model_version_policy\s*\{\s*(?:latest\s*\{\s*(?:num_versions\s*:\s*(\d+)\s*)?\}|(all)\s*\{\s*\}"
                    r"|specific\s*\{((?:\s*versions\s*:\s*\d+)*)\s*\})\s*\}")


def parse_config(path: str) -> list[tuple[str, str, tuple]]:
    """(name, base_path, version policy) of each `config { ... }` in a model_config_list text proto;
    the policy is ("latest", N), ("all",) or ("specific", [versions]); none given: latest 1."""
    text = Path(path).read_text()
    blocks = re.split(r"\bconfig\s*\{", text)[1:]
    found = []
    for block in blocks:
        name, base = re.search(r'\bname:\s*"([^"]+)"', block), re.search(r'\bbase_path:\s*"([^"]+)"', block)
        if not name or not base:
            raise SystemExit(f"standin: cannot read model_config_list from {path}")
        policy: tuple = ("latest", 1)
        if "model_version_policy" in block:
            m = POLICY.search(block)
            if not m:
                raise SystemExit(f"standin: {path}: cannot read the model_version_policy of {name.group(1)}")
            if m.group(2):
                policy = ("all",)
            elif m.group(3) is not None:
                policy = ("specific", [int(v) for v in re.findall(r"\d+", m.group(3))])
            else:
                policy = ("latest", int(m.group(1) or 1))
        found.append((name.group(1), base.group(1), policy))
    if not found:
        raise SystemExit(f"standin: cannot read model_config_list from {path}")
    return found


def to_tensor(value, spec):
    if spec.dtype == tf.string:  # text as JSON strings, binary as {"b64": ...} (TF Serving's REST rules)
        return tf.constant(_strings(value))
    return tf.constant(np.asarray(value, dtype=spec.dtype.as_numpy_dtype))


def _strings(value):
    if isinstance(value, list):
        return [_strings(v) for v in value]
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    return value.encode() if isinstance(value, str) else value


def _named(value) -> bool:
    """Whether a row or an `inputs` value names its inputs: a JSON object, except {"b64": ...},
    which is one binary value (TF Serving's rule)."""
    return isinstance(value, dict) and set(value) != {"b64"}


def predict(servable: Servable, body: dict):
    name = body.get("signature_name", "serving_default")
    specs = servable.loaded.signatures[name].structured_input_signature[1]
    names = sorted(specs)
    if "instances" in body:
        rows = body["instances"]
        if len(names) == 1 and not (rows and _named(rows[0])):
            feeds = {names[0]: rows}
        else:
            feeds = {n: [r[n] for r in rows] for n in names}
    elif "inputs" in body:
        given = body["inputs"]
        feeds = given if _named(given) else {names[0]: given}
    else:
        raise ValueError("Missing 'instances' or 'inputs' key")
    missing = set(names) - set(feeds)
    if missing:
        raise ValueError(f"Missing input(s): {', '.join(sorted(missing))}")
    out = servable.call(name, {n: to_tensor(feeds[n], specs[n]) for n in names})
    out = {k: v.tolist() for k, v in out.items()}
    if "instances" in body:
        if len(out) == 1:
            return {"predictions": next(iter(out.values()))}
        n = len(next(iter(out.values())))
        return {"predictions": [{k: v[i] for k, v in out.items()} for i in range(n)]}
    return {"outputs": next(iter(out.values())) if len(out) == 1 else out}


def rest_metadata(response) -> dict:
    """GetModelMetadataResponse as TF Serving's REST API writes it (http_rest_api_util.cc: proto field
    names, fields without presence printed, the SignatureDefMap unpacked under metadata.signature_def)."""
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_metadata_pb2

    sigmap = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sigmap)
    opts = {"preserving_proto_field_name": True, "always_print_fields_with_no_presence": True}
    return {"model_spec": json_format.MessageToDict(response.model_spec, **opts),
            "metadata": {"signature_def": json_format.MessageToDict(sigmap, **opts)}}


def make_handler(core: Core):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as two writes: no delayed-ACK stalls

        def log_message(self, *args):  # quiet access log
            pass

        def _send(self, code: int, doc: dict) -> None:
            standin_http.send_json(self, code, doc)

        def _error(self, exc: ServingError) -> None:
            self._send(HTTP_STATUS.get(exc.code, 500), {"error": exc.message})

        def _route(self):
            m = ROUTE.match(self.path)
            if not m:
                return None, None, None
            return m.group(1), (int(m.group(2)) if m.group(2) else None), m.group(3)

        def do_GET(self):
            name, version, action = self._route()
            if name is None or action == ":predict":
                return self._send(404, {"error": f"Malformed request: GET {self.path}"})
            try:
                if action == "/metadata":
                    model, found, servable = core.servable(name, version)
                    return self._send(200, rest_metadata(standin_grpc.metadata_response(model, found, servable)))
                self._send(200, {"model_version_status": [rest_status(s) for s in core.status(name, version)]})
            except ServingError as exc:
                self._error(exc)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            name, version, action = self._route()
            if name is None or action != ":predict":
                return self._send(404, {"error": f"Malformed request: POST {self.path}"})
            try:
                _, _, servable = core.servable(name, version)
            except ServingError as exc:
                return self._error(exc)
            try:
                with standin_grpc.in_flight():
                    answer = predict(servable, json.loads(raw))
                self._send(200, answer)
            except ServingError as exc:  # the batch queue is full, the server is overloaded
                self._error(exc)
            except Exception as exc:  # noqa: BLE001 - a bad request, as TF Serving answers it
                self._send(400, {"error": f"{type(exc).__name__}: {str(exc)[:500]}"})

    return Handler


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="tensorflow_model_server (stand-in)")
    p.add_argument("--port", type=int, default=8500)
    p.add_argument("--rest_api_port", type=int, default=0)
    # The real server listens on every interface; the stand-in binds loopback unless told otherwise, so on
    # `--network host` (how the tests run it) nothing is reachable from outside the machine.
    p.add_argument("--rest_api_bind_address", default=os.environ.get("STANDIN_BIND_ADDRESS", "127.0.0.1"))
    p.add_argument("--model_config_file", default="")
    p.add_argument("--model_name", default="default")
    p.add_argument("--model_base_path", default="")
    p.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0)
    p.add_argument("--saved_model_tags", default="serve")
    p.add_argument("--enable_batching", nargs="?", const="true", default="false")
    p.add_argument("--batching_parameters_file", default="")
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # PID 1 in a container: stop promptly
    args, unknown = p.parse_known_args(argv)
    flags = [a for a in argv if a.startswith("--")]
    log(f"flags: {' '.join(flags)}" + (f" (ignored by the stand-in: {' '.join(unknown)})" if unknown else ""))
    models = (parse_config(args.model_config_file) if args.model_config_file
              else [(args.model_name, args.model_base_path, ("latest", 1))])
    global BATCHER
    if args.enable_batching.lower() in ("true", "1"):
        params = standin_batching.read_parameters(args.batching_parameters_file)
        BATCHER = standin_batching.Batcher(params)
        log(f"batching on: {' '.join(f'{k}={v}' for k, v in params.items())}")
    if standin_grpc.OVERLOAD_ABOVE:
        log(f"test double: answering UNAVAILABLE above {standin_grpc.OVERLOAD_ABOVE} requests in flight")
    tags = tuple(t for t in args.saved_model_tags.split(",") if t)
    core = Core({name: Model(name, base, args.file_system_poll_wait_seconds, tags, policy)
                 for name, base, policy in models})
    if not args.rest_api_port:
        raise SystemExit("standin: --rest_api_port is required (the stand-in's readiness is its REST API)")
    # gRPC runs on its own threads; keep the server object referenced (collected, it would stop)
    grpc_server = standin_grpc.start(core, args.rest_api_bind_address, args.port, log) if args.port else None
    ThreadingHTTPServer.request_queue_size = 128  # listen backlog: 16+ concurrent clients connect at once
    server = ThreadingHTTPServer((args.rest_api_bind_address, args.rest_api_port), make_handler(core))
    server.daemon_threads = True
    log(f"Exporting HTTP/REST API at:{args.rest_api_bind_address}:{args.rest_api_port} ...")
    try:
        server.serve_forever()
    finally:
        if grpc_server is not None:
            grpc_server.stop(grace=None)


if __name__ == "__main__":
    main(sys.argv[1:])

"""A client for TF Serving's gRPC API, on the `tensorflow-serving-api` protos and `grpcio`.

    PredictionService  Predict (TensorProtos; DT_STRING carries raw bytes, no base64), Classify and
                       Regress (tf.Example inputs), GetModelMetadata (the SignatureDefMap)
    ModelService       GetModelStatus

The serving protos import `tensorflow` (their TensorProto and SignatureDef live there), so this
module runs in a worker (`container_job`, started by the target without the sandbox: it talks to
the container on 127.0.0.1 and runs no model code, only parses the server's answers), never in the
`deploykit` process. The container check uses every method; `tests/test_serving_grpc.py` runs the
same client against the stand-in and, where present, the real server.

Errors are `grpc.RpcError`s, as the server sent them (`.code()`, `.details()`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from deploykit.targets.serving import metadata as md

CHUNK_ROWS = 64  # rows per parity request, as over REST
TIMEOUT = 60.0
# Loopback only: never through an HTTP proxy from the environment; answers up to 64 MiB
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0), ("grpc.max_receive_message_length", 64 << 20),
                   ("grpc.max_send_message_length", 64 << 20)]


class GrpcClient:
    def __init__(self, address: str, model: str, version: int | None = None, timeout: float = TIMEOUT):
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.address, self.model, self.version, self.timeout = address, model, version, timeout
        self.channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def wait_ready(self, seconds: float) -> None:
        """Wait until the channel connects (the server may open gRPC after REST)."""
        import grpc

        try:
            grpc.channel_ready_future(self.channel).result(timeout=seconds)
        except grpc.FutureTimeoutError:
            from deploykit.errors import DeployKitError

            raise DeployKitError(f"gRPC: nothing answers at {self.address} within {seconds:.0f} s "
                                 "(does the server listen on --port?)") from None

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def spec(self, signature: str | None = None, model: str | None = None, version: int | None = None):
        """A ModelSpec: this client's model and version unless given."""
        from tensorflow_serving.apis import model_pb2

        spec = model_pb2.ModelSpec(name=self.model if model is None else model, signature_name=signature or "")
        version = self.version if version is None else version
        if version:
            spec.version.value = int(version)
        return spec

    # ---- ModelService / metadata ---------------------------------------------------------------------
    def status(self, **spec) -> list[dict]:
        """GetModelStatus: [{"version", "state", "error_code", "error_message"}], as the server listed them."""
        from tensorflow_serving.apis import get_model_status_pb2

        response = self.models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec=self.spec(**spec)),
                                              timeout=self.timeout)
        state = get_model_status_pb2.ModelVersionStatus.State
        return [{"version": s.version, "state": state.Name(s.state), "error_code": _code_name(s.status.error_code),
                 "error_message": s.status.error_message} for s in response.model_version_status]

    def metadata_response(self, fields: tuple[str, ...] = ("signature_def",), **spec):
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=self.spec(**spec), metadata_field=list(fields))
        return self.prediction.GetModelMetadata(request, timeout=self.timeout)

    def metadata(self, **spec) -> tuple[dict, dict]:
        """GetModelMetadata: (model_spec {"name", "version"}, signatures in metadata.py's plain form)."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        response = self.metadata_response(**spec)
        sigmap = get_model_metadata_pb2.SignatureDefMap()
        if "signature_def" not in response.metadata or not response.metadata["signature_def"].Unpack(sigmap):
            raise ValueError(f"GetModelMetadata from {self.address}: no SignatureDefMap under 'signature_def'")
        model_spec = {"name": response.model_spec.name,
                      "version": response.model_spec.version.value if response.model_spec.HasField("version") else None}
        return model_spec, plain_signatures(sigmap)

    # ---- PredictionService ---------------------------------------------------------------------------
    def predict_response(self, inputs: Mapping[str, np.ndarray], signature: str | None = None,
                         output_filter: tuple[str, ...] = (), **spec):
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest(model_spec=self.spec(signature, **spec), output_filter=list(output_filter))
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(to_tensor_proto(value))
        return self.prediction.Predict(request, timeout=self.timeout)

    def predict(self, inputs: Mapping[str, np.ndarray], signature: str | None = None, **kw) -> dict[str, np.ndarray]:
        response = self.predict_response(inputs, signature, **kw)
        return {k: from_tensor_proto(v) for k, v in response.outputs.items()}

    def predict_all(self, inputs: Mapping[str, np.ndarray], signature: str = "serving_default") -> dict[str, np.ndarray]:
        """Every row, in chunks of CHUNK_ROWS, through Predict."""
        n = len(next(iter(inputs.values())))
        parts = [self.predict({k: v[i : i + CHUNK_ROWS] for k, v in inputs.items()}, signature)
                 for i in range(0, n, CHUNK_ROWS)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}  # every output sent: judged by name

    def classify(self, examples: list[bytes], signature: str | None = None, context: bytes | None = None, **spec):
        """Classify serialized tf.Examples: (labels, scores), each [examples, classes] (labels as bytes)."""
        from tensorflow_serving.apis import classification_pb2

        request = classification_pb2.ClassificationRequest(model_spec=self.spec(signature, **spec))
        _fill_input(request.input, examples, context)
        result = self.prediction.Classify(request, timeout=self.timeout).result
        labels = np.asarray([[c.label.encode() for c in row.classes] for row in result.classifications], dtype=object)
        scores = np.asarray([[c.score for c in row.classes] for row in result.classifications], dtype=np.float32)
        return labels, scores

    def regress(self, examples: list[bytes], signature: str | None = None, context: bytes | None = None,
                **spec) -> np.ndarray:
        """Regress serialized tf.Examples: one float per example."""
        from tensorflow_serving.apis import regression_pb2

        request = regression_pb2.RegressionRequest(model_spec=self.spec(signature, **spec))
        _fill_input(request.input, examples, context)
        result = self.prediction.Regress(request, timeout=self.timeout).result
        return np.asarray([r.value for r in result.regressions], dtype=np.float32)


def _fill_input(into, examples: list[bytes], context: bytes | None) -> None:
    from tensorflow.core.example import example_pb2

    parsed = [example_pb2.Example.FromString(e) for e in examples]
    if context is None:
        into.example_list.examples.extend(parsed)
    else:
        into.example_list_with_context.examples.extend(parsed)
        into.example_list_with_context.context.CopyFrom(example_pb2.Example.FromString(context))


def _code_name(code: int) -> str:
    from tensorflow.core.protobuf import error_codes_pb2

    try:
        return error_codes_pb2.Code.Name(code)
    except ValueError:
        return f"code {code}"


# ---- tensors and signatures --------------------------------------------------------------------------
def to_tensor_proto(value) -> object:
    """A TensorProto of `value` (numpy; `S`/object arrays of bytes and `U` text go as DT_STRING raw bytes)."""
    from deploykit.tfenv import tensorflow

    array = np.asarray(value)
    if array.dtype.kind == "U":
        array = np.char.encode(array, "utf-8")
    return tensorflow().make_tensor_proto(array)


def from_tensor_proto(proto) -> np.ndarray:
    """Either encoding a server may answer with: typed fields (`float_val`..., TF Serving's default)
    or `tensor_content`."""
    from deploykit.tfenv import tensorflow

    return tensorflow().make_ndarray(proto)


def plain_signatures(sigmap) -> dict:
    """A SignatureDefMap in metadata.py's plain form."""
    from tensorflow.core.framework import types_pb2

    def info(t) -> dict:
        shape = None if t.tensor_shape.unknown_rank else [int(d.size) for d in t.tensor_shape.dim]
        return {"dtype": types_pb2.DataType.Name(t.dtype), "shape": shape}

    return {name: {"method_name": s.method_name, "inputs": {k: info(v) for k, v in s.inputs.items()},
                   "outputs": {k: info(v) for k, v in s.outputs.items()}}
            for name, s in sigmap.signature_def.items()}


# ---- the tf_example signature through the API its method allows (metadata.example_backend) ------------
def examples_outputs(client: GrpcClient, backend: str, examples: list[bytes], contract: Mapping,
                     signature: str) -> dict[str, np.ndarray]:
    """The contract's outputs for serialized examples through `backend`'s API, in chunks."""
    names = [t["name"] for t in contract["outputs"]]
    parts = []
    for i in range(0, len(examples), CHUNK_ROWS):
        chunk = examples[i : i + CHUNK_ROWS]
        if backend == "grpc-classify":
            parts.append({names[0]: client.classify(chunk, signature)[1]})
        elif backend == "grpc-regress":
            values = client.regress(chunk, signature)
            shape = contract["outputs"][0]["shape"]
            parts.append({names[0]: values.reshape((-1, *[1] * (len(shape) - 1)))})
        else:
            parts.append(client.predict({md.EXAMPLES_INPUT: np.asarray(chunk, dtype=object)}, signature))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ---- the container check's gRPC half (a worker job) ----------------------------------------------------
def container_job(request: dict) -> dict:
    """Worker job (deploykit.modelwork.call): GetModelStatus and GetModelMetadata against the contract,
    then the parity inputs through Predict (`grpc`) and, with a `tf_example` signature, through
    Classify, Regress or Predict on serialized examples. Writes one .npz per backend into `work`.

    Returns {"problems": [...]} when the server does not describe the contract (no data is sent then),
    else {"problems": [], "backends": [...], "outputs": {backend: path}, "example_method": ...}."""
    from deploykit.arrays import read_npz, save_npz
    from deploykit.targets.serving.target import EXAMPLES_SIGNATURE, serialize_examples

    contract, version, model = request.get("contract"), int(request["version"]), request["model"]
    work = Path(request["work"])
    inputs = read_npz(request["inputs"], "parity inputs")
    with GrpcClient(request["address"], model, version) as client:
        client.wait_ready(float(request.get("ready_seconds", 30)))
        statuses = _rpc("GetModelStatus", client.status)
        spec, served = _rpc("GetModelMetadata", client.metadata)
        found = md.status_problems(statuses, version, "gRPC GetModelStatus")
        found += md.spec_problems(spec, model, version, "gRPC GetModelMetadata")
        if contract:  # a manifest written before the contract was recorded here: status and parity only
            found += md.problems(served, md.expected(contract, request["signatures"], EXAMPLES_SIGNATURE),
                                 "gRPC GetModelMetadata")
        if found:
            return {"problems": found}
        results = {"grpc": _rpc("Predict (serving_default)", client.predict_all, inputs)}
        method = None
        if EXAMPLES_SIGNATURE in request["signatures"] and EXAMPLES_SIGNATURE in served:
            method = served[EXAMPLES_SIGNATURE]["method_name"]
            backend = md.example_backend(method, contract) if contract else "grpc-example"
            api = {"grpc-classify": "Classify", "grpc-regress": "Regress"}.get(backend, "Predict")
            results[backend] = _rpc(f"{api} ({EXAMPLES_SIGNATURE})", examples_outputs, client, backend,
                                    serialize_examples(inputs), contract, EXAMPLES_SIGNATURE)
    paths = {}
    for backend, outputs in results.items():
        paths[backend] = str(work / f"{backend}.npz")
        save_npz(Path(paths[backend]), {k: np.asarray(v, dtype=np.float32) for k, v in outputs.items()})
    return {"problems": [], "backends": list(results), "outputs": paths, "example_method": method}


def _rpc(what: str, call, *args):
    """`call(*args)`; a gRPC error becomes a DeployKitError naming the method and the server's code."""
    import grpc as grpclib

    from deploykit.errors import DeployKitError

    try:
        return call(*args)
    except grpclib.RpcError as exc:
        raise DeployKitError(f"gRPC {what}: {exc.code().name}: {(exc.details() or '')[:300]}") from None

"""STAND-IN gRPC API of `tensorflow_model_server` (test double; the product targets the real image).

Built on the same protos as the real server (`tensorflow-serving-api`) and served with `grpc.server`:

    tensorflow.serving.PredictionService  Predict, Classify, Regress, GetModelMetadata
    tensorflow.serving.ModelService       GetModelStatus (HandleReloadConfigRequest: UNIMPLEMENTED)

answering from the same loaded SavedModel and the same MetaGraphDef signatures as the REST side.
Status codes and messages follow TF Serving 2.19's own (predict_util.cc, classifier.cc,
regressor.cc, get_model_metadata_impl.cc, get_model_status_impl.cc, server_core.cc,
basic_manager.cc), e.g.:

    no model_spec                      INVALID_ARGUMENT  Missing ModelSpec
    unknown model / version            NOT_FOUND         Servable not found for request: Latest(m) / Specific(m, 7)
    GetModelStatus, unknown            NOT_FOUND         Could not find any versions of model m / Could not find version 7 of model m
    Predict, unknown signature         FAILED_PRECONDITION  Serving signature key "x" not found.
    Predict, wrong input name          INVALID_ARGUMENT  input size does not match signature ... / Signature input alias: ...
    Predict, wrong dtype               INVALID_ARGUMENT  Expects arg[0] to be float but string is provided
    Predict, unknown output_filter     INVALID_ARGUMENT  output tensor alias not found in signature: ...
    Classify/Regress, unknown signature  INVALID_ARGUMENT  No signature was found with the name: x
    Classify/Regress, other method     INVALID_ARGUMENT  Expected classification signature method_name to be ...
    Classify/Regress, no examples      INVALID_ARGUMENT  Input is empty.
    GetModelMetadata, no field         INVALID_ARGUMENT  GetModelMetadataRequest must specify at least one metadata_field

Outputs are encoded like TF Serving's default (`Tensor::AsProtoField`: typed `*_val` fields, not
`tensor_content`); DT_STRING values are raw bytes.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
    status_pb2,
)

PREDICT, CLASSIFY, REGRESS = "tensorflow/serving/predict", "tensorflow/serving/classify", "tensorflow/serving/regress"
DEFAULT_SIGNATURE = "serving_default"
MESSAGE_LIMIT = 1024  # grpc_status_util.cc: longer messages are cut and end with ...TRUNCATED


# the test-double knob (tensorflow_model_server_standin.py's docstring): refuse above N requests in flight
OVERLOAD_ABOVE = int(os.environ.get("STANDIN_OVERLOAD_ABOVE") or 0)
OVERLOAD_HOLD = 0.005  # with the knob set, an admitted request is held this long (s): clients overlap for sure
_inflight = 0
_inflight_lock = threading.Lock()


@contextlib.contextmanager
def in_flight():
    """One predict/classify/regress request of either API, from arrival to answer; with the test-double
    knob set, UNAVAILABLE above OVERLOAD_ABOVE of them at once (admitted ones take OVERLOAD_HOLD longer,
    as on a slow, overloaded server, so that concurrent clients do overlap)."""
    global _inflight
    with _inflight_lock:
        _inflight += 1
        busy = _inflight
    try:
        if OVERLOAD_ABOVE and busy > OVERLOAD_ABOVE:
            raise ServingError("UNAVAILABLE", f"stand-in overload double (STANDIN_OVERLOAD_ABOVE={OVERLOAD_ABOVE}): "
                                              f"{busy} requests in flight")
        if OVERLOAD_ABOVE:
            time.sleep(OVERLOAD_HOLD)
        yield
    finally:
        with _inflight_lock:
            _inflight -= 1


class ServingError(Exception):
    """A status as TF Serving returns it: a canonical code name (grpc.StatusCode) and its message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def from_tf_error(exc: Exception) -> ServingError:
    """A TensorFlow error raised while running a signature, with its own code (as the session reports it)."""
    if isinstance(exc, tf.errors.OpError):
        return ServingError(error_codes_pb2.Code.Name(exc.error_code), exc.message)
    return invalid(f"{type(exc).__name__}: {str(exc)[:800]}")  # tf.function argument binding: shape, structure


def model_spec_of(request, core):
    """(model, version, servable) for the request's model_spec, or NOT_FOUND / INVALID_ARGUMENT."""
    if not request.HasField("model_spec"):
        raise invalid("Missing ModelSpec")
    spec = request.model_spec
    choice = spec.WhichOneof("version_choice")
    if choice == "version_label":
        raise invalid("ModelSpec has 'version_label' set, but it is not currently allowed by the server.")
    return core.servable(spec.name, spec.version.value if choice == "version" else None)


def _signature(servable, name: str):
    return servable.signature_defs.get(name or DEFAULT_SIGNATURE)


def _response_spec(into, model: str, version: int, signature: str) -> None:
    into.name = model
    into.version.value = version
    into.signature_name = signature


# ---- tensors ---------------------------------------------------------------------------------------
_FIELDS = {  # TensorProto field Tensor::AsProtoField writes, per dtype
    tf.float32: "float_val", tf.float64: "double_val", tf.int32: "int_val", tf.int16: "int_val",
    tf.int8: "int_val", tf.uint8: "int_val", tf.uint16: "int_val", tf.int64: "int64_val",
    tf.uint32: "uint32_val", tf.uint64: "uint64_val", tf.bool: "bool_val", tf.string: "string_val",
}


def as_proto_field(value: np.ndarray):
    """A TensorProto with typed fields, as TF Serving answers (its default serialization option)."""
    value = np.asarray(value)
    proto = tf.make_tensor_proto(value)
    dtype = tf.as_dtype(proto.dtype)
    # make_tensor_proto already wrote a one-element tensor into its typed field: clear it too, or the
    # value would be sent twice (a (1, 1) output as two floats)
    if dtype == tf.float16:
        proto.ClearField("tensor_content")
        proto.ClearField("half_val")
        proto.half_val.extend(value.astype(np.float16).ravel().view(np.uint16).tolist())
    elif dtype in _FIELDS and dtype != tf.string:
        proto.ClearField("tensor_content")
        proto.ClearField(_FIELDS[dtype])
        getattr(proto, _FIELDS[dtype]).extend(value.ravel().tolist())
    return proto


def _feeds(signature, request) -> dict:
    """The request's tensors for the signature's inputs, checked like predict_util.cc and GetInputValues."""
    given, wanted = request.inputs, signature.inputs
    if len(given) > len(wanted) or (len(given) < len(wanted) and not signature.defaults):
        sent, want = sorted(given), sorted(wanted)
        raise invalid(
            f"input size does not match signature: {len(given)}!={len(wanted)} len({{{','.join(sent)}}}) != "
            f"len({{{','.join(want)}}}). Sent extra: {{{','.join(sorted(set(sent) - set(want)))}}}. "
            f"Missing but required: {{{','.join(sorted(set(want) - set(sent)))}}}.")
    arrays = {}
    for alias, info in sorted(wanted.items()):
        if alias not in given:
            raise invalid(f"Signature input alias: {alias}(feed name: {info.name}) not found in request and no default "
                          f"value provided. Inputs expected to be in the request {{{','.join(sorted(given))}}}, "
                          "or default input alias set: ")
        try:
            arrays[alias] = tf.make_ndarray(given[alias])
        except Exception:  # noqa: BLE001 - a malformed TensorProto
            raise invalid(f"tensor parsing error: {alias}") from None
    for i, (alias, info) in enumerate(sorted(wanted.items())):  # then, as the session would: the feeds' dtypes
        got = given[alias].dtype
        if got != info.dtype:
            raise invalid(f"Expects arg[{i}] to be {_type_string(info.dtype)} but {_type_string(got)} is provided")
    return {alias: tf.constant(a, dtype=tf.as_dtype(wanted[alias].dtype)) for alias, a in arrays.items()}


def _type_string(dtype: int) -> str:
    """TensorFlow's DataTypeString: DT_FLOAT -> float, DT_INT32 -> int32."""
    from tensorflow.core.framework import types_pb2

    try:
        return types_pb2.DataType.Name(dtype)[3:].lower()
    except ValueError:
        return f"unknown dtype enum ({dtype})"


def _dt_name(np_dtype) -> str:
    """DataType_Name of a numpy dtype (DT_DOUBLE); bytes and object arrays are DT_STRING."""
    from tensorflow.core.framework import types_pb2

    if np.dtype(np_dtype).kind in "SOU":
        return "DT_STRING"
    return types_pb2.DataType.Name(tf.as_dtype(np_dtype).as_datatype_enum)


def _examples(inp) -> list[bytes]:
    """Serialized tf.Examples of an Input (context bytes first: its features merge under each example's)."""
    kind = inp.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in inp.example_list.examples]
    elif kind == "example_list_with_context":
        context = inp.example_list_with_context.context.SerializeToString()
        examples = [context + e.SerializeToString() for e in inp.example_list_with_context.examples]
    else:
        examples = []
    if not examples:
        raise invalid("Input is empty.")
    return examples


def _run(servable, name: str, feeds: dict) -> dict:
    try:
        return servable.call(name, feeds)  # batched with --enable_batching (standin_batching.py)
    except ServingError:
        raise
    except Exception as exc:  # noqa: BLE001 - what the session would report
        raise from_tf_error(exc) from None


# ---- the RPCs --------------------------------------------------------------------------------------
def predict(core, request):
    model, version, servable = model_spec_of(request, core)
    name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    signature = _signature(servable, name)
    if signature is None:
        raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{name}" not found.')
    if signature.method_name not in (PREDICT, CLASSIFY, REGRESS):
        raise ServingError("INTERNAL", f"Expected prediction signature method_name to be one of {{{PREDICT}, {CLASSIFY}, "
                                       f"{REGRESS}}}. Was: {signature.method_name}")
    feeds = _feeds(signature, request)
    aliases, seen = list(request.output_filter), set()
    for alias in aliases:
        if alias not in signature.outputs:
            raise invalid(f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                          f"{{{','.join(sorted(signature.outputs))}}}.")
        if alias in seen:
            raise invalid(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    out = _run(servable, name, feeds)
    response = predict_pb2.PredictResponse()
    _response_spec(response.model_spec, model, version, name)
    for alias in aliases or sorted(signature.outputs):
        response.outputs[alias].CopyFrom(as_proto_field(out[alias]))
    return response


def _example_signature(servable, spec, method: str, what: str):
    name = spec.signature_name or DEFAULT_SIGNATURE
    signature = _signature(servable, name)
    if signature is None:
        raise invalid(f"No signature was found with the name: {name}")
    if signature.method_name != method:
        raise invalid(f"Expected {what} signature method_name to be {method}. Was: {signature.method_name}")
    if len(signature.inputs) != 1:
        raise invalid("Expected one input Tensor.")
    if "inputs" not in signature.inputs:
        raise invalid(f"No {what} inputs found in SignatureDef: {signature}")
    return name, signature


def classify(core, request):
    model, version, servable = model_spec_of(request, core)
    name, signature = _example_signature(servable, request.model_spec, CLASSIFY, "classification")
    if len(signature.outputs) not in (1, 2):
        raise invalid(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if "classes" not in signature.outputs and "scores" not in signature.outputs:
        raise invalid('Expected classification signature outputs to contain at least one of "classes" or "scores". '
                      f"Signature was: {signature}")
    examples = _examples(request.input)
    out = _run(servable, name, {"inputs": tf.constant(examples)})
    classes, scores = out.get("classes"), out.get("scores")
    for label, t, kind in (("classes", classes, "S"), ("scores", scores, "f")):
        if t is None:
            continue
        if t.ndim != 2:
            raise invalid(f"Expected Tensor shape: [batch_size num_classes] but got {list(t.shape)}")
        if (kind == "S") != (t.dtype.kind in "SO") or (kind == "f" and t.dtype != np.float32):
            raise invalid(f"Expected {label} Tensor of {'DT_STRING' if kind == 'S' else 'DT_FLOAT'}. "
                          f"Got: {_dt_name(t.dtype)}")
        if len(t) != len(examples):
            raise invalid(f"Expected {label} output batch size of {len(examples)}. Got: {len(t)}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid(f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. {scores.shape[1]}")
    response = classification_pb2.ClassificationResponse()
    _response_spec(response.model_spec, model, version, name)
    width = (classes if classes is not None else scores).shape[1]
    for i in range(len(examples)):
        row = response.result.classifications.add()
        for c in range(width):
            cl = row.classes.add()
            if classes is not None:
                cl.label = classes[i, c].decode("utf-8", "replace") if isinstance(classes[i, c], bytes) else str(classes[i, c])
            if scores is not None:
                cl.score = float(scores[i, c])
    return response


def regress(core, request):
    model, version, servable = model_spec_of(request, core)
    name, signature = _example_signature(servable, request.model_spec, REGRESS, "regression")
    if len(signature.outputs) != 1:
        raise invalid("Expected one output Tensor.")
    if "outputs" not in signature.outputs:
        raise invalid(f"No regression outputs found in SignatureDef: {signature}")
    examples = _examples(request.input)
    values = _run(servable, name, {"inputs": tf.constant(examples)})["outputs"]
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise invalid(f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {list(values.shape)}")
    if len(values) != len(examples):
        raise invalid(f"Input batch size did not match output batch size: {len(examples)} vs. {len(values)}")
    if values.dtype != np.float32:
        raise invalid(f"Expected output Tensor of DT_FLOAT.  Got: {_dt_name(values.dtype)}")
    response = regression_pb2.RegressionResponse()
    _response_spec(response.model_spec, model, version, name)
    for v in values.ravel():
        response.result.regressions.add().value = float(v)
    return response


def get_model_metadata(core, request):
    if not request.HasField("model_spec"):
        raise invalid("Missing ModelSpec")
    if not request.metadata_field:
        raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
        if field != "signature_def":
            raise invalid(f"Metadata field {field} is not supported")
    model, version, servable = model_spec_of(request, core)
    return metadata_response(model, version, servable)


def metadata_response(model: str, version: int, servable):
    sigmap = get_model_metadata_pb2.SignatureDefMap()
    for name, signature in servable.signature_defs.items():
        sigmap.signature_def[name].CopyFrom(signature)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = model
    response.model_spec.version.value = version
    response.metadata["signature_def"].Pack(sigmap)
    return response


def get_model_status(core, request):
    if not request.HasField("model_spec"):
        raise invalid("Missing ModelSpec")
    spec = request.model_spec
    statuses = core.status(spec.name, spec.version.value if spec.WhichOneof("version_choice") == "version" else None)
    response = get_model_status_pb2.GetModelStatusResponse()
    state = get_model_status_pb2.ModelVersionStatus.State
    for s in statuses:
        response.model_version_status.add(
            version=s["version"], state=state.Value(s["state"]),
            status=status_pb2.StatusProto(error_code=error_codes_pb2.Code.Value(s["error_code"]),
                                          error_message=s["error_message"]))
    return response


# ---- the server ------------------------------------------------------------------------------------
def _answer(context, fn, core, request, counted: bool = False):
    try:
        if counted:
            with in_flight():
                return fn(core, request)
        return fn(core, request)
    except ServingError as exc:
        message = exc.message if len(exc.message) <= MESSAGE_LIMIT else exc.message[:MESSAGE_LIMIT] + "...TRUNCATED"
        context.abort(getattr(grpc.StatusCode, exc.code), message)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core):
        self.core = core

    def Predict(self, request, context):  # noqa: N802 - the gRPC method names
        return _answer(context, predict, self.core, request, counted=True)

    def Classify(self, request, context):  # noqa: N802
        return _answer(context, classify, self.core, request, counted=True)

    def Regress(self, request, context):  # noqa: N802
        return _answer(context, regress, self.core, request, counted=True)

    def GetModelMetadata(self, request, context):  # noqa: N802
        return _answer(context, get_model_metadata, self.core, request)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core):
        self.core = core

    def GetModelStatus(self, request, context):  # noqa: N802
        return _answer(context, get_model_status, self.core, request)


def start(core, address: str, port: int, log) -> grpc.Server:
    """Serve both services on address:port (fails like the real server when the port is taken)."""
    server = grpc.server(ThreadPoolExecutor(max_workers=16, thread_name_prefix="grpc"),
                         options=[("grpc.max_receive_message_length", 64 << 20),
                                  ("grpc.max_send_message_length", 64 << 20), ("grpc.so_reuseport", 0)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(core), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core), server)
    try:
        bound = server.add_insecure_port(f"{address}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise SystemExit(f"standin: cannot listen for gRPC on {address}:{port}")
    server.start()
    log(f"Running gRPC ModelServer at {address}:{port} ...")
    return server

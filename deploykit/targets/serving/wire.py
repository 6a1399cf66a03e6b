"""gRPC `Predict` on the wire without TensorFlow, for the load stage (`load.py`).

The `tensorflow-serving-api` protos import `tensorflow` (6 s here), so `grpc.py` runs in a worker;
the load stage runs in the `deploykit` process, which never imports TensorFlow. It needs only
`PredictRequest` and `PredictResponse`, which it builds from two well-kept pieces already in the
stack: TensorBoard's copy of TensorFlow's `TensorProto` (`tensorboard.compat.proto`, with
`tensorboard.util.tensor_util.make_tensor_proto` / `make_ndarray`, the same code as TensorFlow's;
tensorboard is a pinned dependency of tensorflow) and, in a private protobuf descriptor pool, the
outer messages of `tensorflow_serving/apis/{model,predict}.proto` with the same field numbers:

    ModelSpec       { string name = 1; Int64Value version = 2; string signature_name = 3; }
    PredictRequest  { ModelSpec model_spec = 1; map<string, TensorProto> inputs = 2; }
    PredictResponse { map<string, TensorProto> outputs = 1; ModelSpec model_spec = 2; }

A map is on the wire a repeated {key = 1, value = 2} entry, and a message field is length-delimited
bytes, so the TensorProtos travel as `bytes` here and are (de)serialized by TensorBoard's class:
the server sees the bytes `grpc.py`'s client sends (tests/test_serving_load.py checks both ways
against the real protos).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Mapping

import numpy as np

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"


@lru_cache(maxsize=1)
def _messages():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    f = descriptor_pb2.FileDescriptorProto(name="deploykit/serving_wire.proto", package="deploykit.serving_wire",
                                           syntax="proto3")

    def message(name: str, *fields: tuple) -> None:
        m = f.message_type.add(name=name)
        for field_name, number, kind, *type_name in fields:
            m.field.add(name=field_name, number=number, type=kind, label=F.LABEL_OPTIONAL,
                        **({"type_name": f".deploykit.serving_wire.{type_name[0]}"} if type_name else {}))
        return m

    message("Int64Value", ("value", 1, F.TYPE_INT64))
    message("ModelSpec", ("name", 1, F.TYPE_STRING), ("version", 2, F.TYPE_MESSAGE, "Int64Value"),
            ("signature_name", 3, F.TYPE_STRING))
    message("TensorEntry", ("key", 1, F.TYPE_STRING), ("value", 2, F.TYPE_BYTES))
    request = message("PredictRequest", ("model_spec", 1, F.TYPE_MESSAGE, "ModelSpec"))
    request.field.add(name="inputs", number=2, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                      type_name=".deploykit.serving_wire.TensorEntry")
    response = message("PredictResponse", ("model_spec", 2, F.TYPE_MESSAGE, "ModelSpec"))
    response.field.add(name="outputs", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                       type_name=".deploykit.serving_wire.TensorEntry")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"deploykit.serving_wire.{name}"))
            for name in ("PredictRequest", "PredictResponse")}


def predict_request(model: str, inputs: Mapping[str, np.ndarray], *, version: int | None = None,
                    signature: str = "serving_default") -> bytes:
    """A serialized tensorflow.serving.PredictRequest (DT_STRING inputs carry raw bytes)."""
    from tensorboard.util import tensor_util

    request = _messages()["PredictRequest"]()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version:
        request.model_spec.version.value = int(version)
    for name in sorted(inputs):
        array = np.asarray(inputs[name])
        if array.dtype.kind == "U":
            array = np.char.encode(array, "utf-8")
        request.inputs.add(key=name, value=tensor_util.make_tensor_proto(array).SerializeToString())
    return request.SerializeToString()


def predict_outputs(response: bytes) -> dict[str, np.ndarray]:
    """The outputs of a serialized tensorflow.serving.PredictResponse, as numpy arrays."""
    from tensorboard.compat.proto import tensor_pb2
    from tensorboard.util import tensor_util

    parsed = _messages()["PredictResponse"].FromString(response)
    return {e.key: tensor_util.make_ndarray(tensor_pb2.TensorProto.FromString(e.value)) for e in parsed.outputs}


def parse_predict_request(data: bytes) -> tuple[str, int | None, str, dict[str, np.ndarray]]:
    """(model, version or None, signature, inputs) of a serialized PredictRequest (for test doubles)."""
    from tensorboard.compat.proto import tensor_pb2
    from tensorboard.util import tensor_util

    parsed = _messages()["PredictRequest"].FromString(data)
    spec = parsed.model_spec
    inputs = {e.key: tensor_util.make_ndarray(tensor_pb2.TensorProto.FromString(e.value)) for e in parsed.inputs}
    return spec.name, (spec.version.value if spec.HasField("version") else None), spec.signature_name, inputs


def predict_response(model: str, version: int, signature: str, outputs: Mapping[str, np.ndarray]) -> bytes:
    """A serialized PredictResponse (for test doubles)."""
    from tensorboard.util import tensor_util

    response = _messages()["PredictResponse"]()
    response.model_spec.name, response.model_spec.signature_name = model, signature
    response.model_spec.version.value = int(version)
    for name in sorted(outputs):
        response.outputs.add(key=name, value=tensor_util.make_tensor_proto(np.asarray(outputs[name])).SerializeToString())
    return response.SerializeToString()

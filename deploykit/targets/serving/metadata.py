"""What the running server says about the model, checked against the model's contract.

TF Serving describes a model in three answers: `GetModelStatus` (gRPC ModelService; REST
`GET /v1/models/NAME`), `GetModelMetadata` (gRPC PredictionService: a `SignatureDefMap` packed in an
`Any`) and REST `GET /v1/models/NAME/versions/N/metadata` (the same map as JSON). Both metadata
answers are read into one plain form (pure Python: no protos, no TensorFlow, so the REST side runs
in the build process):

    {signature: {"method_name": str,
                 "inputs":  {alias: {"dtype": "DT_FLOAT", "shape": [-1, 8, 8, 1] or None}},
                 "outputs": {alias: {...}}}}

(`shape` None: unknown rank; -1 for an open dimension). `expected()` builds the same form from the
manifest's contract: `serving_default` takes the contract's inputs and returns its outputs;
`tf_example` takes one DT_STRING vector `examples` and returns the contract's outputs.
`problems()` lists every difference, each naming the answer, the signature and the tensor;
`example_backend()` picks the API that checks `tf_example` (Classify, Regress or Predict).
"""
from __future__ import annotations

from typing import Mapping

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
EXAMPLES_INPUT = "examples"

# contract dtype (TensorFlow's dtype names) -> TensorFlow DataType enum name
DATA_TYPES = {
    "float16": "DT_HALF", "bfloat16": "DT_BFLOAT16", "float32": "DT_FLOAT", "float64": "DT_DOUBLE",
    "int8": "DT_INT8", "int16": "DT_INT16", "int32": "DT_INT32", "int64": "DT_INT64",
    "uint8": "DT_UINT8", "uint16": "DT_UINT16", "uint32": "DT_UINT32", "uint64": "DT_UINT64",
    "bool": "DT_BOOL", "string": "DT_STRING", "complex64": "DT_COMPLEX64", "complex128": "DT_COMPLEX128",
}


def tensor(dtype: str, shape) -> dict:
    """One tensor of the plain form from a contract dtype and shape (None dims -> -1)."""
    return {"dtype": DATA_TYPES.get(dtype, f"DT_{dtype.upper()}"),
            "shape": None if shape is None else [-1 if d is None else int(d) for d in shape]}


def expected(contract: Mapping, signatures: list[str], examples_signature: str = "tf_example") -> dict:
    """The signatures the repository must serve, from the manifest's contract (its JSON form)."""
    outputs = {t["name"]: tensor(t["dtype"], t["shape"]) for t in contract["outputs"]}
    want = {"serving_default": {"method_name": PREDICT_METHOD,
                                "inputs": {t["name"]: tensor(t["dtype"], t["shape"]) for t in contract["inputs"]},
                                "outputs": outputs}}
    if examples_signature in signatures:
        want[examples_signature] = {"method_name": PREDICT_METHOD,
                                    "inputs": {EXAMPLES_INPUT: tensor("string", [None])}, "outputs": outputs}
    return want


def from_rest(doc: Mapping) -> tuple[dict, dict]:
    """(model_spec, plain signatures) of a REST `/metadata` answer (GetModelMetadataResponse as JSON,
    proto field names: {"model_spec": {...}, "metadata": {"signature_def": {"signature_def": {...}}}})."""
    try:
        spec = dict(doc["model_spec"])
        defs = doc["metadata"]["signature_def"]["signature_def"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a GetModelMetadataResponse (missing {exc})") from None
    plain = {}
    for name, sig in defs.items():
        plain[name] = {"method_name": sig.get("method_name", ""),
                       "inputs": {k: _rest_tensor(v) for k, v in (sig.get("inputs") or {}).items()},
                       "outputs": {k: _rest_tensor(v) for k, v in (sig.get("outputs") or {}).items()}}
    return spec, plain


def _rest_tensor(info: Mapping) -> dict:
    shape = info.get("tensor_shape") or {}
    dims = None if shape.get("unknown_rank") else [int(d.get("size", 0)) for d in shape.get("dim") or []]
    dtype = info.get("dtype", "DT_INVALID")
    return {"dtype": dtype if isinstance(dtype, str) else f"enum {dtype}", "shape": dims}


def problems(served: Mapping, want: Mapping, where: str) -> list[str]:
    """Every difference between the served signatures and the wanted ones (names, methods, dtypes,
    shapes), one line each. Signatures the server has beyond the wanted ones (e.g.
    `__saved_model_init_op`) are not differences."""
    found = []
    for sig, w in want.items():
        s = served.get(sig)
        if s is None:
            found.append(f"{where}: signature '{sig}' is missing (served: {', '.join(sorted(served)) or 'none'})")
            continue
        if s["method_name"] != w["method_name"]:
            found.append(f"{where}: signature '{sig}' has method {s['method_name']!r}, expected {w['method_name']!r}")
        for side in ("inputs", "outputs"):
            got, exp = s[side], w[side]
            for name in exp:
                if name not in got:
                    found.append(f"{where}: signature '{sig}' has no {side[:-1]} '{name}' "
                                 f"(it has: {', '.join(sorted(got)) or 'none'})")
            for name in got:
                if name not in exp:
                    found.append(f"{where}: signature '{sig}' has an unexpected {side[:-1]} '{name}'")
            for name in (n for n in exp if n in got):
                if got[name]["dtype"] != exp[name]["dtype"]:
                    found.append(f"{where}: signature '{sig}' {side[:-1]} '{name}' has dtype {got[name]['dtype']}, "
                                 f"the contract says {exp[name]['dtype']}")
                if got[name]["shape"] != exp[name]["shape"]:
                    found.append(f"{where}: signature '{sig}' {side[:-1]} '{name}' has shape {_shape(got[name]['shape'])}, "
                                 f"the contract says {_shape(exp[name]['shape'])}")
    return found


def spec_problems(spec: Mapping, model: str, version: int, where: str) -> list[str]:
    """The answer's model_spec must name the model and the version asked for."""
    found = []
    if spec.get("name") != model:
        found.append(f"{where}: model_spec names model {spec.get('name')!r}, expected {model!r}")
    got = (spec.get("version") or {}).get("value") if isinstance(spec.get("version"), dict) else spec.get("version")
    if got is None or int(got) != int(version):
        found.append(f"{where}: model_spec has version {got!r}, expected {version}")
    return found


def status_problems(statuses: list[dict], version: int, where: str) -> list[str]:
    """GetModelStatus: `version` must be AVAILABLE with status OK.
    `statuses`: [{"version": int, "state": "AVAILABLE", "error_code": "OK", "error_message": ""}]."""
    mine = [s for s in statuses if int(s["version"]) == int(version)]
    if not mine:
        return [f"{where}: no status for version {version} (versions: "
                f"{', '.join(str(s['version']) for s in statuses) or 'none'})"]
    s = mine[0]
    if s["state"] != "AVAILABLE" or s["error_code"] != "OK":
        return [f"{where}: version {version} is {s['state']} ({s['error_code']}: {s.get('error_message') or 'no message'})"]
    return []


def example_backend(method: str, contract: Mapping) -> str:
    """The backend that checks the `tf_example` signature: Classify when its method is classify and the
    model has one (batch, classes) output (the scores), Regress when regress and one output of one
    value per example, else Predict on serialized examples."""
    outputs = contract["outputs"]
    if len(outputs) == 1:
        shape = list(outputs[0]["shape"])
        if method == CLASSIFY_METHOD and len(shape) == 2:
            return "grpc-classify"
        if method == REGRESS_METHOD and (len(shape) == 1 or shape[1:] == [1]):
            return "grpc-regress"
    return "grpc-example"


def _shape(shape) -> str:
    return "unknown rank" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"

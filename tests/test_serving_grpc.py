"""TF Serving's gRPC API and the model metadata, for the serving target.

1. Fast (no Docker): the metadata check (metadata.py) finds every difference between what a server
   describes and the manifest's contract, reads the REST `/metadata` JSON, and picks the API that
   checks a `tf_example` signature (Classify, Regress, or Predict on serialized examples).
2. Conformance (Docker): the same client checks, through deploykit's own gRPC client
   (`deploykit.targets.serving.grpc.GrpcClient`), against the STAND-IN and against the real
   `tensorflow/serving` server, so the two cannot drift apart silently: GetModelStatus,
   GetModelMetadata (and REST `/metadata`), Predict (tensors, serialized examples, output filter),
   Classify and Regress (tf.Example lists, with context), and the status codes TF Serving returns
   (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION), each with a piece of the real server's message.
   The real server runs only where `DEPLOYKIT_SERVING_BASE_IMAGE` names a local `tensorflow/serving`
   image (it cannot be pulled on our CI machines); otherwise that half is skipped, saying why.

The model served is tests/serving_conformance_model.py (predict, classify and regress signatures).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest

from deploykit.targets.serving import container as ctr
from deploykit.targets.serving import metadata as md
from deploykit.version import __version__

from . import serving_conformance_model as cm

MODEL = "conformance"
STANDIN_LABEL = "org.deploykit.standin"


# ---- 1. the metadata check, without a server ------------------------------------------------------------
def _served() -> dict:
    """What a correct server describes for cm.CONTRACT (plus the init op every TF2 SavedModel has)."""
    served = md.expected(cm.CONTRACT, ["serving_default", "tf_example"])
    served["__saved_model_init_op"] = {"method_name": "", "inputs": {},
                                       "outputs": {"__saved_model_init_op": {"dtype": "DT_INVALID", "shape": None}}}
    return served


def test_metadata_matching_the_contract_has_no_problems():
    want = md.expected(cm.CONTRACT, ["serving_default", "tf_example"])
    assert want["serving_default"]["inputs"] == {"x": {"dtype": "DT_FLOAT", "shape": [-1, 3]}}
    assert want["tf_example"]["inputs"] == {"examples": {"dtype": "DT_STRING", "shape": [-1]}}
    assert want["tf_example"]["outputs"] == want["serving_default"]["outputs"]
    assert md.problems(_served(), want, "gRPC") == []
    assert "tf_example" not in md.expected(cm.CONTRACT, ["serving_default"])


@pytest.mark.parametrize("tamper, message", [
    (lambda c: c["outputs"][0].update(dtype="int32"),
     "gRPC: signature 'serving_default' output 'probs' has dtype DT_FLOAT, the contract says DT_INT32"),
    (lambda c: c["inputs"][0].update(shape=[None, 4]),
     "gRPC: signature 'serving_default' input 'x' has shape [-1, 3], the contract says [-1, 4]"),
    (lambda c: c["inputs"][0].update(name="pixels"), "gRPC: signature 'serving_default' has no input 'pixels' (it has: x)"),
    (lambda c: c["outputs"].pop(), "gRPC: signature 'serving_default' has an unexpected output 'value'"),
], ids=["dtype", "shape", "input-name", "output-name"])
def test_metadata_differences_are_named(tamper, message):
    import copy

    contract = copy.deepcopy(cm.CONTRACT)
    tamper(contract)
    found = md.problems(_served(), md.expected(contract, ["serving_default", "tf_example"]), "gRPC")
    assert message in found, found


def test_metadata_method_and_missing_signature():
    served = _served()
    served["tf_example"]["method_name"] = md.CLASSIFY_METHOD
    del served["serving_default"]
    found = md.problems(served, md.expected(cm.CONTRACT, ["serving_default", "tf_example"]), "REST /metadata")
    assert found[0].startswith("REST /metadata: signature 'serving_default' is missing (served: __saved_model_init_op, tf_example)")
    assert "REST /metadata: signature 'tf_example' has method 'tensorflow/serving/classify', " \
           "expected 'tensorflow/serving/predict'" in found


def test_rest_metadata_json_is_read_like_the_proto():
    doc = {"model_spec": {"name": "m", "signature_name": "", "version": "1"},
           "metadata": {"signature_def": {"signature_def": {"serving_default": {
               "inputs": {"x": {"dtype": "DT_FLOAT", "name": "serving_default_x:0",
                                "tensor_shape": {"dim": [{"size": "-1", "name": ""}, {"size": "3", "name": ""}],
                                                 "unknown_rank": False}}},
               "outputs": {"y": {"dtype": "DT_STRING", "name": "o:0", "tensor_shape": {"dim": [], "unknown_rank": True}}},
               "method_name": "tensorflow/serving/predict", "defaults": {}}}}}}
    spec, plain = md.from_rest(doc)
    assert md.spec_problems(spec, "m", 1, "REST") == []
    assert md.spec_problems(spec, "m", 2, "REST") == ["REST: model_spec has version '1', expected 2"]
    assert plain == {"serving_default": {"method_name": "tensorflow/serving/predict",
                                         "inputs": {"x": {"dtype": "DT_FLOAT", "shape": [-1, 3]}},
                                         "outputs": {"y": {"dtype": "DT_STRING", "shape": None}}}}
    with pytest.raises(ValueError, match="not a GetModelMetadataResponse"):
        md.from_rest({"error": "Servable not found"})


def test_status_must_show_the_version_available():
    ok = {"version": 1, "state": "AVAILABLE", "error_code": "OK", "error_message": ""}
    assert md.status_problems([ok], 1, "gRPC GetModelStatus") == []
    assert md.status_problems([ok], 2, "gRPC GetModelStatus") == ["gRPC GetModelStatus: no status for version 2 (versions: 1)"]
    failed = {**ok, "state": "END", "error_code": "UNKNOWN", "error_message": "bad graph"}
    assert md.status_problems([failed], 1, "g") == ["g: version 1 is END (UNKNOWN: bad graph)"]


def test_the_tf_example_signature_is_checked_through_the_api_its_method_allows():
    one = {"outputs": [{"name": "p", "dtype": "float32", "shape": [None, 3]}]}
    scalar = {"outputs": [{"name": "v", "dtype": "float32", "shape": [None, 1]}]}
    assert md.example_backend(md.CLASSIFY_METHOD, one) == "grpc-classify"
    assert md.example_backend(md.REGRESS_METHOD, scalar) == "grpc-regress"
    assert md.example_backend(md.PREDICT_METHOD, one) == "grpc-example"
    assert md.example_backend(md.REGRESS_METHOD, one) == "grpc-example"  # 3 values per example: not a regression
    assert md.example_backend(md.CLASSIFY_METHOD, cm.CONTRACT) == "grpc-example"  # two outputs: Predict names them


# ---- 2. conformance: the stand-in and the real server ---------------------------------------------------
@dataclass
class Server:
    kind: str  # "standin" or "real"
    running: object  # container.Running
    client: object  # GrpcClient on the container's gRPC port


def _base_image(kind: str, c) -> str:
    if kind == "standin":
        from .serving_standin import ensure_image

        return ensure_image()
    ref = os.environ.get("DEPLOYKIT_SERVING_BASE_IMAGE", "")
    if "tensorflow/serving" not in ref:
        pytest.skip("real TF Serving: DEPLOYKIT_SERVING_BASE_IMAGE does not name a tensorflow/serving image "
                    f"({ref or 'unset'}); optional where it cannot be pulled, see README")
    try:
        image = c.images.get(ref)
    except Exception:  # noqa: BLE001 - ImageNotFound, or a digest the daemon does not know
        pytest.skip(f"real TF Serving: {ref} is not in this Docker daemon (docker load or pull it)")
    if STANDIN_LABEL in (image.labels or {}):
        pytest.skip(f"real TF Serving: {ref} is the stand-in (label {STANDIN_LABEL})")
    return ref


@pytest.fixture(scope="module", params=["standin", "real"])
def server(request, docker_client, tf, tmp_path_factory):
    """The conformance model in an image FROM the stand-in or the real server, built and run the way
    the serving target does it (repo.py, the Dockerfile template, container.serving)."""
    from deploykit.targets.serving import repo as serving_repo
    from deploykit.targets.serving.grpc import GrpcClient

    base = _base_image(request.param, docker_client)
    folder = tmp_path_factory.mktemp(f"conformance-{request.param}")
    root = folder / "serving"
    serving_repo.write_version(root / "models" / MODEL, 1, cm.write(tf, folder / "saved_model"))
    (root / "models.config").write_text(serving_repo.models_config([MODEL]))
    (root / "batching_parameters.txt").write_text(serving_repo.batching_parameters())
    (root / "Dockerfile").write_text(ctr.render_dockerfile(
        base_image=base, model_name=MODEL, model_version=1, model_sha256="0" * 64, source="tests/serving_conformance_model.py",
        revision="test", deploykit_version=__version__, user=ctr.SERVING_USER, extra_flags=""))
    built = ctr.build_image(docker_client, root, f"deploykit-test/conformance:{request.param}", {})
    try:
        with ctr.serving(docker_client, built["id"], MODEL, label=f"conformance-{request.param}") as running:
            with GrpcClient(f"127.0.0.1:{running.grpc_port}", MODEL) as client:
                client.wait_ready(30)
                yield Server(request.param, running, client)
    finally:
        docker_client.images.remove(built["id"], force=True)


X = cm.data(20)
REF = cm.reference(X)


@pytest.mark.slow
@pytest.mark.docker
def test_get_model_status(server):
    available = {"version": 1, "state": "AVAILABLE", "error_code": "OK", "error_message": ""}
    assert server.client.status() == [available]
    assert server.client.status(version=1) == [available]


@pytest.mark.slow
@pytest.mark.docker
def test_get_model_metadata_and_rest_metadata_describe_every_signature(server):
    import requests

    spec, served = server.client.metadata()
    assert spec == {"name": MODEL, "version": 1}
    want = md.expected(cm.CONTRACT, ["serving_default", "tf_example"])
    want["classify"] = {"method_name": md.CLASSIFY_METHOD, "inputs": {"inputs": md.tensor("string", [None])},
                        "outputs": {"scores": md.tensor("float32", [None, 2]), "classes": md.tensor("string", [None, 2])}}
    want["regress"] = {"method_name": md.REGRESS_METHOD, "inputs": {"inputs": md.tensor("string", [None])},
                       "outputs": {"outputs": md.tensor("float32", [None, 1])}}
    assert md.problems(served, want, "gRPC GetModelMetadata") == []
    assert "__saved_model_init_op" in served  # the whole MetaGraphDef signature map, as the real server sends it
    for path in (f"/v1/models/{MODEL}/versions/1/metadata", f"/v1/models/{MODEL}/metadata"):
        r = requests.get(server.running.rest_url + path, timeout=30)
        assert r.status_code == 200, r.text
        rest_spec, rest_served = md.from_rest(r.json())
        assert rest_served == served, path
        assert md.spec_problems(rest_spec, MODEL, 1, "REST") == [] and rest_spec["signature_name"] == ""


@pytest.mark.slow
@pytest.mark.docker
def test_predict_tensors_serialized_examples_and_output_filter(server):
    c = server.client
    got = c.predict({"x": X})
    assert sorted(got) == ["probs", "value"]
    for k in REF:
        np.testing.assert_allclose(got[k], REF[k], rtol=1e-5, atol=1e-6)
    response = c.predict_response({"x": X[:3]}, "serving_default", output_filter=("value",), version=1)
    assert list(response.outputs) == ["value"]
    assert (response.model_spec.name, response.model_spec.version.value, response.model_spec.signature_name) == \
           (MODEL, 1, "serving_default")
    examples = c.predict({"examples": np.asarray(cm.examples(X), dtype=object)}, "tf_example")  # raw bytes, no b64
    for k in REF:
        np.testing.assert_allclose(examples[k], REF[k], rtol=1e-5, atol=1e-6)
    assert c.predict_all({"x": np.concatenate([X] * 7)})["value"].shape == (140, 1)  # chunked: 64 rows a request


@pytest.mark.slow
@pytest.mark.docker
def test_classify_and_regress_tf_examples(server):
    c = server.client
    labels, scores = c.classify(cm.examples(X), "classify")
    assert labels.shape == (len(X), 2) and {tuple(row) for row in labels} == {cm.LABELS}
    np.testing.assert_allclose(scores, REF["probs"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c.regress(cm.examples(X), "regress"), REF["value"].ravel(), rtol=1e-5, atol=1e-6)
    # example_list_with_context: the context's features go into every example (here: all of them)
    context = cm.examples(X[4:5])[0]
    _, scores = c.classify([b""] * 3, "classify", context=context)  # three examples without features
    np.testing.assert_allclose(scores, np.repeat(REF["probs"][4:5], 3, 0), rtol=1e-5, atol=1e-6)


ERRORS = [  # (what, call, code, a piece of TF Serving 2.19's own message)
    ("predict-wrong-input-name", lambda c: c.predict({"pixels": X}), "INVALID_ARGUMENT",
     "Signature input alias: x(feed name: serving_default_x:0) not found in request"),
    ("predict-extra-input", lambda c: c.predict({"x": X, "y": X}), "INVALID_ARGUMENT",
     "input size does not match signature: 2!=1 len({x,y}) != len({x}). Sent extra: {y}. Missing but required: {}."),
    ("predict-wrong-dtype", lambda c: c.predict({"x": np.asarray([[b"a", b"b", b"c"]], dtype=object)}), "INVALID_ARGUMENT",
     "Expects arg[0] to be float but string is provided"),
    ("predict-unknown-output-filter", lambda c: c.predict({"x": X}, output_filter=("logits",)), "INVALID_ARGUMENT",
     "output tensor alias not found in signature: logits Outputs expected to be in the set {probs,value}."),
    ("predict-unknown-signature", lambda c: c.predict({"x": X}, "nope"), "FAILED_PRECONDITION",
     'Serving signature key "nope" not found.'),
    ("predict-unknown-model", lambda c: c.predict({"x": X}, model="no_such_model"), "NOT_FOUND",
     "Servable not found for request: Latest(no_such_model)"),
    ("predict-unknown-version", lambda c: c.predict({"x": X}, version=7), "NOT_FOUND",
     f"Servable not found for request: Specific({MODEL}, 7)"),
    ("classify-unknown-signature", lambda c: c.classify(cm.examples(X), "nope"), "INVALID_ARGUMENT",
     "No signature was found with the name: nope"),
    ("classify-predict-signature", lambda c: c.classify(cm.examples(X), "tf_example"), "INVALID_ARGUMENT",
     "Expected classification signature method_name to be tensorflow/serving/classify. Was: tensorflow/serving/predict"),
    ("classify-no-examples", lambda c: c.classify([], "classify"), "INVALID_ARGUMENT", "Input is empty."),
    ("classify-unknown-model", lambda c: c.classify(cm.examples(X), "classify", model="no_such_model"), "NOT_FOUND",
     "Servable not found for request: Latest(no_such_model)"),
    ("regress-classify-signature", lambda c: c.regress(cm.examples(X), "classify"), "INVALID_ARGUMENT",
     "Expected regression signature method_name to be tensorflow/serving/regress. Was: tensorflow/serving/classify"),
    ("regress-unknown-version", lambda c: c.regress(cm.examples(X), "regress", version=7), "NOT_FOUND",
     f"Servable not found for request: Specific({MODEL}, 7)"),
    ("metadata-no-field", lambda c: c.metadata_response(fields=()), "INVALID_ARGUMENT",
     "GetModelMetadataRequest must specify at least one metadata_field"),
    ("metadata-unknown-field", lambda c: c.metadata_response(fields=("labels",)), "INVALID_ARGUMENT",
     "Metadata field labels is not supported"),
    ("metadata-unknown-model", lambda c: c.metadata(model="no_such_model"), "NOT_FOUND",
     "Servable not found for request: Latest(no_such_model)"),
    ("metadata-unknown-version", lambda c: c.metadata(version=7), "NOT_FOUND",
     f"Servable not found for request: Specific({MODEL}, 7)"),
    ("status-unknown-model", lambda c: c.status(model="no_such_model"), "NOT_FOUND",
     "Could not find any versions of model no_such_model"),
    ("status-unknown-version", lambda c: c.status(version=7), "NOT_FOUND", f"Could not find version 7 of model {MODEL}"),
]


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.parametrize("what, call, code, message", ERRORS, ids=[e[0] for e in ERRORS])
def test_error_codes_are_tf_servings(server, what, call, code, message):
    import grpc

    with pytest.raises(grpc.RpcError) as caught:
        call(server.client)
    assert caught.value.code().name == code, caught.value.details()
    assert message in caught.value.details()


@pytest.mark.slow
@pytest.mark.docker
def test_rest_errors_map_to_http_statuses(server):
    import requests

    base = f"{server.running.rest_url}/v1/models"
    assert requests.get(f"{base}/no_such_model", timeout=30).status_code == 404
    assert requests.get(f"{base}/{MODEL}/versions/7/metadata", timeout=30).status_code == 404
    assert requests.get(f"{base}/no_such_model/metadata", timeout=30).status_code == 404
    r = requests.post(f"{base}/{MODEL}:predict", json={"instances": [{"pixels": [1.0, 2.0, 3.0]}]}, timeout=30)
    assert r.status_code == 400 and "error" in r.json()

"""The serving target's load stage without Docker: deploykit's load clients (REST and gRPC) against
the in-process test double (tests/serving_doubles.py), the figures and verdicts of
deploykit/validation/load.py, the wire encoding of gRPC Predict against the real protos, the
stand-in's batcher, and the settings. (The load stage through the container, batching off and on,
and a failing level's exit code 3: tests/test_serving.py.)
"""
from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from deploykit.errors import BadInputError
from deploykit.targets.serving import load, wire
from deploykit.validation import load as load_stats
from deploykit.validation import parity

from . import serving_doubles
from .conftest import ROOT

PLAN = load.Plan(levels=(1, 4), seconds=0.2, requests=400, apis=("rest", "grpc"), batching=("off",))


def _measure(double, plan=PLAN, batching="off"):
    rows = serving_doubles.rows()
    expected = load.expected_outputs(double.rest_url, serving_doubles.MODEL, 1, rows)
    raw = load.measure(plan, batching, double.rest_url, double.grpc_address, serving_doubles.MODEL, 1, rows, expected)
    return load_stats.summarize(raw, plan.to_json())


def test_every_api_and_level_is_recorded_and_passes():
    with serving_doubles.ServingDouble() as double:
        summary = _measure(double)
    levels = summary["levels"]
    assert [(lv["api"], lv["batching"], lv["clients"]) for lv in levels] == [
        ("rest", "off", 1), ("rest", "off", 4), ("grpc", "off", 1), ("grpc", "off", 4)]
    for lv in levels:
        assert lv["errors"] == lv["wrong_outputs"] == 0 and lv["first_error"] is None, lv
        assert 0 < lv["requests"] <= PLAN.requests and lv["throughput_per_s"] > 0
        assert 0 < lv["p50_ms"] <= lv["p90_ms"] <= lv["p99_ms"] <= lv["max_ms"]
        assert lv["seconds"] < PLAN.seconds + 1.0  # bounded in time
    assert load_stats.failures(summary, {}) == []


def test_bounded_in_count():
    plan = load.Plan(levels=(4,), seconds=30.0, requests=25, apis=("grpc",), batching=("off",))
    with serving_doubles.ServingDouble(delay=0.0) as double:
        (level,) = _measure(double, plan)["levels"]
    assert level["requests"] == 25 and level["seconds"] < 10


def test_an_overloaded_level_fails_naming_api_batching_and_level():
    """The double refuses requests beyond 2 in flight: 1 client passes, 8 clients fail, over each API."""
    plan = load.Plan(levels=(1, 8), seconds=0.2, requests=400, apis=("rest", "grpc"), batching=("on",))
    with serving_doubles.ServingDouble(delay=0.005, overload_above=2) as double:
        summary = _measure(double, plan, batching="on")
    by = {(lv["api"], lv["clients"]): lv for lv in summary["levels"]}
    assert by["rest", 1]["errors"] == by["grpc", 1]["errors"] == 0
    assert by["rest", 8]["errors"] > 0 and by["grpc", 8]["errors"] > 0
    assert by["rest", 8]["first_error"].startswith("HTTP 503: ")
    assert by["grpc", 8]["first_error"].startswith("gRPC UNAVAILABLE: overloaded")
    messages = [f.message for f in load_stats.failures(summary, {})]
    assert len(messages) == 2
    rest = by["rest", 8]
    assert messages[0] == (f"load rest, batching on, 8 clients: {rest['errors']} of {rest['requests']} requests "
                           f"failed (first: {rest['first_error']})")
    assert messages[1].startswith("load grpc, batching on, 8 clients: ")
    assert all(f.kind == "load" and f.metric == "errors" for f in load_stats.failures(summary, {}))


def test_a_wrong_output_under_load_is_an_error():
    plan = load.Plan(levels=(8,), seconds=0.2, requests=400, apis=("rest", "grpc"), batching=("on",))
    with serving_doubles.ServingDouble(delay=0.005, wrong_above=2) as double:
        summary = _measure(double, plan, batching="on")
    for lv in summary["levels"]:
        assert lv["wrong_outputs"] > 0 and lv["wrong_outputs"] == lv["errors"], lv
        assert "wrong output" in lv["first_error"] and "differs from the server's answer to that row alone" in lv["first_error"]
    first = summary["levels"][0]
    assert f"{first['wrong_outputs']} of them wrong outputs" in load_stats.failures(summary, {})[0].message


def test_a_level_over_its_latency_budget_fails():
    with serving_doubles.ServingDouble(delay=0.003) as double:
        summary = _measure(double)
    found = load_stats.failures(summary, {"load_p99_ms": 0.5, "load_p50_ms": 1e6, "p99_ms": 0.001})
    assert len(found) == len(summary["levels"])  # every level breaks 0.5 ms (each answer waits 3 ms); p50 holds
    first = summary["levels"][0]
    assert found[0].message == f"load rest, batching off, 1 client: p99_ms = {first['p99_ms']:.6g}, budget load_p99_ms <= 0.5"
    assert found[0].to_json() == {"kind": "load", "message": found[0].message, "metric": "load_p99_ms",
                                  "value": first["p99_ms"], "budget": 0.5}


def test_load_budget_names_are_known():
    parity.check_budget_names({"load_p99_ms": 20, "load_p50_ms": 5}, "budgets.serving.float32")
    with pytest.raises(BadInputError, match="unknown budget metric"):
        parity.check_budget_names({"load_p98_ms": 20}, "budgets.serving.float32")


def test_a_server_that_does_not_answer_fails_every_level():
    from deploykit.targets.serving.container import free_port

    port = free_port()
    rows = serving_doubles.rows()
    expected = [{"": r["x"] * 2} for r in rows]
    raw = load.measure(load.Plan(levels=(2,), seconds=0.1, requests=10, apis=("rest", "grpc"), batching=("off",)),
                       "off", f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", "m", 1, rows, expected)
    found = load_stats.failures(load_stats.summarize(raw), {})
    assert [f.message.split(":")[0] for f in found] == ["load rest, batching off, 2 clients",
                                                         "load grpc, batching off, 2 clients"]
    assert all("2 of 2 requests failed" in f.message for f in found)


# ---- gRPC Predict on the wire, against the real protos -------------------------------------------
def test_wire_request_is_the_real_predict_request(tf):
    from tensorflow_serving.apis import predict_pb2

    inputs = {"pixels": np.random.default_rng(0).random((1, 8, 8, 1), dtype=np.float32),
              "text": np.asarray([b"a\x00b"], dtype=object)}
    ours = wire.predict_request("digits", inputs, version=3)
    real = predict_pb2.PredictRequest()
    real.model_spec.name, real.model_spec.signature_name = "digits", "serving_default"
    real.model_spec.version.value = 3
    for k, v in inputs.items():
        real.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    assert ours == real.SerializeToString(deterministic=True)
    model, version, signature, parsed = wire.parse_predict_request(ours)
    assert (model, version, signature) == ("digits", 3, "serving_default")
    np.testing.assert_array_equal(parsed["pixels"], inputs["pixels"])


def test_wire_reads_the_real_predict_response(tf):
    """TF Serving answers with typed fields (float_val ...), not tensor_content; both decode."""
    from tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    response.model_spec.name = "digits"
    probs = response.outputs["probs"]
    probs.dtype = tf.float32.as_datatype_enum
    probs.tensor_shape.dim.add(size=1)
    probs.tensor_shape.dim.add(size=3)
    probs.float_val.extend([0.25, 0.5, 0.25])
    response.outputs["ids"].CopyFrom(tf.make_tensor_proto(np.asarray([[7]], dtype=np.int64)))
    out = wire.predict_outputs(response.SerializeToString())
    np.testing.assert_array_equal(out["probs"], np.asarray([[0.25, 0.5, 0.25]], dtype=np.float32))
    assert out["ids"].dtype == np.int64 and out["ids"].tolist() == [[7]]


def test_the_load_clients_do_not_import_tensorflow():
    import subprocess

    code = ("import sys, numpy as np; from deploykit.targets.serving import load, wire; "
            "wire.predict_outputs(wire.predict_response('m', 1, 's', {'y': np.ones((1, 2), np.float32)})); "
            "wire.predict_request('m', {'x': np.ones((1, 2), np.float32)}); import grpc, requests; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


# ---- the stand-in's batcher (tests/serving_standin/standin_batching.py) ---------------------------
def _batching():
    sys.path.insert(0, str(ROOT / "tests" / "serving_standin"))
    try:
        import standin_batching
    finally:
        sys.path.pop(0)
    return standin_batching


def test_standin_batcher_batches_concurrent_requests_and_returns_each_its_rows(tf):
    batching = _batching()
    sizes = []

    def model(feeds):
        sizes.append(len(feeds["x"]))
        return {"y": feeds["x"] * 2}

    batcher = batching.Batcher({"max_batch_size": 4, "batch_timeout_micros": 50_000, "max_enqueued_batches": 100,
                                "num_batch_threads": 1})
    results = {}

    def client(i):
        results[i] = batcher.run(("m", "serving_default"), model, {"x": np.full((1, 2), i, np.float32)})["y"]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(results[i], np.full((1, 2), 2 * i, np.float32)) for i in range(12))
    assert max(sizes) > 1 and sum(sizes) == 12 and max(sizes) <= 4
    with pytest.raises(batching.ServingError, match="Task size 5 is larger than maximum input batch size 4"):
        batcher.run(("m", "serving_default"), model, {"x": np.zeros((5, 2), np.float32)})


def test_standin_batcher_reads_deploykits_batching_parameters(tf):
    from deploykit.targets.serving import repo

    path = ROOT / "tests" / "_batching_parameters.txt"
    try:
        path.write_text(repo.batching_parameters())
        params = _batching().read_parameters(str(path))
    finally:
        path.unlink(missing_ok=True)
    assert params == {"max_batch_size": 32, "batch_timeout_micros": 2000, "max_enqueued_batches": 100,
                      "num_batch_threads": 2}


# ---- settings ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("table, message", [
    ({"load_levels": [1, 0, 4]}, "load_levels"), ({"load_levels": [1, 1]}, "load_levels"),
    ({"load_levels": [1000]}, "load_levels"), ({"load_seconds": 0.0}, "load_seconds"),
    ({"load_requests": 0}, "load_requests"), ({"load_apis": ["soap"]}, "load_apis"),
    ({"load_batching": ["maybe"]}, "load_batching"),
])
def test_bad_load_settings_are_refused(table, message):
    from deploykit import settings as loader
    from deploykit.targets.serving.settings import ServingSettings, check

    with pytest.raises(BadInputError, match=f"serving.{message}"):
        check(loader.from_table(ServingSettings, table, "serving"))


def test_load_plan_from_settings():
    from deploykit import settings as loader
    from deploykit.targets.serving.settings import ServingSettings, check
    from deploykit.targets.serving.target import load_plan

    default = load_plan(ServingSettings())
    assert default == load.Plan((1, 4, 16, 64), 0.25, 2000, ("rest", "grpc"), ("off", "on"))
    assert load.Plan.from_json(default.to_json()) == default
    from deploykit.targets.serving.settings import int_list

    assert int_list("1,4, 16") == (1, 4, 16) and int_list("0") == (0,)
    with pytest.raises(ValueError, match="comma-separated whole numbers"):
        int_list("1,four")
    for skip in ([], [0], int_list("0")):
        s = loader.from_table(ServingSettings, {"load_levels": skip}, "serving")
        check(s)
        assert load_plan(s).levels == ()

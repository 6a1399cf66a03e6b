"""benchmarks/speed.py's arithmetic on recorded figures: the stage table adds up to the wall, backend
rows are not counted twice, missing timing keys are named, and each goal's ratio and verdict (no
TensorFlow, no build)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import speed  # noqa: E402

# the `timings` of a real manifest (bundled example, tflite,js,serving float32, this checkout's pipeline)
RECORDED = {"intake_seconds": 6.372, "convert_seconds": 0.003, "validate_seconds": 13.353, "total_seconds": 23.49,
            "intake.import_tensorflow": 3.769, "intake.load": 0.174, "intake.reference": 0.064,
            "intake.noise_floor": 0.017, "intake.export_saved_model": 0.356, "intake.preflight_tflite": 0.907,
            "intake.write_tflite_float32": 0.0, "intake.preflight_js": 0.432, "intake.write_js_float32": 0.001,
            "intake.preflight_serving": 0.301, "intake.write_serving_float32": 0.038}
# a manifest with per-artifact validation keys (main's pipeline after issue #16's timings): parity ran
# side by side (--jobs 2), latency one artifact at a time, js per backend
NEWER = {
    "intake_seconds": 6.779, "convert_seconds": 0.027, "validate_seconds": 7.152, "total_seconds": 18.017,
    "intake.import_tensorflow": 3.222, "intake.load": 0.226, "intake.reference": 0.068,
    "intake.noise_floor": 0.015, "intake.reuse_saved_model": 0.001, "intake.preflight_tflite": 0.714,
    "intake.write_tflite_float32": 0.001, "intake.preflight_js": 0.368, "intake.write_js_float32": 0.002,
    "intake.preflight_serving": 0.405, "intake.write_serving_float32": 0.009,
    "intake.check_serving_float32": 1.507, "validate.parity.tflite/float32": 0.204,
    "validate.parity.serving/float32": 0.002, "validate.parity.js/float32[cpu]": 0.099,
    "validate.parity.js/float32[wasm]": 0.061, "validate.parity.js/float32[chromium-wasm]": 1.441,
    "validate.parity.js/float32": 1.794, "validate.latency.tflite/float32": 0.151,
    "validate.latency.js/float32[wasm]": 1.097, "validate.latency.js/float32[chromium-wasm]": 3.632,
    "validate.latency.js/float32": 5.201, "validate.latency.serving/float32": 0.004
}
ARTIFACTS = [{"target": t, "variant": "float32", "p50_ms": 1.0} for t in ("tflite", "js", "serving")]


def counted(rows):
    return sum(r["seconds"] for r in rows if r["counted"])


def test_stage_rows_add_up_to_the_wall_and_name_the_remainders():
    rows = speed.stages(RECORDED, 25.7)
    assert counted(rows) == pytest.approx(25.7, abs=0.01)
    by = {r["stage"]: r for r in rows}
    assert by["process start, imports, manifest and report (wall - timings.total)"]["seconds"] == pytest.approx(2.21)
    assert by["intake (rest: not in any intake.* key)"]["seconds"] == pytest.approx(6.372 - 6.059, abs=1e-3)
    assert by["validate"]["share"] == pytest.approx(13.353 / 25.7, abs=1e-4)
    assert speed.top_stage(rows)["stage"] == "validate"
    assert speed.accounted({"stages": rows, "wall_seconds": 25.7}) == pytest.approx(19.728 / 25.7, abs=1e-3)


def test_backend_rows_inside_a_timed_artifact_are_not_counted_twice():
    rows = speed.stages(NEWER, 20.28)
    assert counted(rows) == pytest.approx(20.28, abs=0.01)
    by = {r["stage"].strip(): r for r in rows}
    assert not by["validate.latency.js/float32[chromium-wasm]"]["counted"]  # inside validate.latency.js/float32
    assert by["validate.latency.js/float32"]["counted"]
    # parity ran side by side: its wall is what latency leaves of the stage
    assert by["validate.parity (wall: 1.8 s for 3 steps run side by side, 2.0 s summed)"]["seconds"] == pytest.approx(
        7.152 - 5.356, abs=1e-3)
    assert speed.top_stage(rows)["stage"] == "validate.latency.js/float32"
    table = speed.profile_table(rows, 20.28)
    assert "within the row above" in table and "| **wall**" in table


def test_steps_run_side_by_side_count_their_wall_once():
    timings = {"validate_seconds": 5.0, "total_seconds": 6.0, "validate.parity.a/x": 4.0, "validate.parity.b/x": 4.0}
    rows = speed.stages(timings, 6.0)
    assert counted(rows) == pytest.approx(6.0)
    assert [r["stage"] for r in rows if r["group"] == "validate" and r["counted"]] == [
        "validate.parity (wall: 5.0 s for 2 steps run side by side, 8.0 s summed)"]
    # parity side by side (--jobs), latency one at a time: the latency steps keep their own rows
    timings = {"validate_seconds": 10.0, "total_seconds": 11.0, "validate.parity.a/x": 4.0, "validate.parity.b/x": 4.0,
               "validate.parity.c/x": 3.0, "validate.latency.a/x": 2.5, "validate.latency.b/x": 1.5}
    rows = speed.stages(timings, 11.0)
    assert counted(rows) == pytest.approx(11.0)
    assert {r["stage"]: r["seconds"] for r in rows if r["group"] == "validate" and r["counted"]} == {
        "validate.latency.a/x": 2.5, "validate.latency.b/x": 1.5,
        "validate.parity (wall: 6.0 s for 3 steps run side by side, 11.0 s summed)": 6.0}


def test_missing_keys_are_named_until_the_manifest_has_them():
    old = {"timings": RECORDED, "artifacts": ARTIFACTS}
    assert speed.missing_keys(old) == [f"validate.{k}.{t}/float32" for t in ("tflite", "js", "serving")
                                       for k in ("parity", "latency")]
    assert speed.missing_keys({"timings": NEWER, "artifacts": ARTIFACTS}) == []
    row = speed.g2([{"name": "example", "builds": [{**old, "label": "A", "wall_seconds": 25.7,
                                                      "stages": speed.stages(RECORDED, 25.7)}]}])[0]
    assert (row["measured"], row["status"]) == ("4/10", "MISS")


def build(wall, timings=RECORDED, **extra):
    return {"label": "A", "wall_seconds": wall, "error": None, "timings": timings, "artifacts": ARTIFACTS,
            "stages": speed.stages(timings, wall), "peak_rss_mb": 900.0,
            "largest": {"mb": 900.0, "role": "intake worker"}, **extra}


def test_g1_ratio_against_the_clis_and_the_stage_that_holds_it_back():
    slow = {"name": "mobilenetv2", "params": 3_538_984, "memory_mb": 13.5, "cli": {"seconds": 27.0, "failed": []},
            "builds": [build(121.0)]}
    row = speed.g1([slow])[0]
    assert row["ratio"] == pytest.approx(121 / 27 / 0.6, abs=1e-3) and row["status"] == "MISS"
    assert row["held_back_by"].startswith("process start, imports")  # 97.5 s outside timings.total here
    assert "105 s over the goal" in row["held_back_by"]
    assert "takes 5.3 s = 0.20x the CLIs one after another" in row["held_back_by"]  # import + load + two conversions
    assert "4.8 s = 0.18x with the conversions side by side" in row["held_back_by"]
    fast = {**slow, "builds": [build(15.0, {**RECORDED, "total_seconds": 14.0})]}
    assert speed.g1([fast])[0]["status"] == "PASS"


def test_g3_intervals_overlap_or_not_or_are_absent():
    def model(ci_a, ci_b):
        arts = [[{"target": "tflite", "variant": "float32", "p50_ms": 1.0, "p50_ci_ms": c, "p99_ci_ms": c}] for c in (ci_a, ci_b)]
        return {"name": "example", "builds": [{"artifacts": a, "litert_loop": {"deviation": 0.05, "deploykit_p50_ms": 1.05,
                                                                                "p50_ms": 1.0, "invoke_p50_ms": 0.9}}
                                               for a in arts]}
    near, interval = speed.g3([model([1.0, 1.1], [1.05, 1.2])])
    assert (near["status"], near["ratio"]) == ("PASS", 0.5)
    assert (interval["status"], interval["ratio"]) == ("PASS", 0.6)  # midpoints 0.075 apart, half-widths 0.125
    disjoint = speed.g3([model([1.0, 1.1], [1.2, 1.3])])[1]
    assert (disjoint["status"], disjoint["ratio"]) == ("MISS", 2.0)
    assert "p50 and p99 intervals disjoint" in disjoint["held_back_by"]
    assert speed.g3([model(None, None)])[1]["status"] == "-"


def test_g5_spread_and_peak_memory_limit():
    small = {"name": "example", "params": 25_000, "memory_mb": 0.1, "builds": [build(25.0)]}
    large = {"name": "resnet50", "params": 25_000_000, "memory_mb": 95.4, "builds": [build(250.0, peak_rss_mb=850.0)]}
    baseline = {"name": "tiny", "params": 10, "memory_mb": 0.0, "builds": [build(24.0, peak_rss_mb=700.0)]}
    spread, rss_small, rss_large = speed.g5([small, large], baseline)
    assert spread["ratio"] == pytest.approx((1000 / 10) / 2)  # 1000 s/M vs 10 s/M
    assert "10-parameter build takes 24.0 s" in spread["held_back_by"]
    assert rss_small["status"] == "MISS" and rss_small["ratio"] == pytest.approx(900 / 700.2, abs=1e-3)
    assert rss_large["status"] == "PASS" and rss_large["ratio"] == pytest.approx(850 / (700 + 2 * 95.4), abs=1e-3)


def test_g5_names_the_intake_steps_where_the_peak_grew():
    memory = {"intake.import_tensorflow": 663.0, "intake.load": 849.0, "intake.reference": 1074.0,
              "intake.preflight_tflite": 1074.0, "intake.preflight_js": 1370.0, "intake.check_serving_float32": 1300.0}
    said = speed.memory_growth(memory, top=3)
    assert said == "; the intake worker's peak grew most in: import_tensorflow +663 MB, preflight_js +296 MB, reference +225 MB"
    assert speed.memory_growth({}) == ""  # a manifest from before `memory`
    large = {"name": "resnet50", "params": 25_000_000, "memory_mb": 95.4,
             "builds": [{**build(250.0, peak_rss_mb=1400.0), "memory": memory}]}
    baseline = {"name": "tiny", "params": 10, "memory_mb": 0.0, "builds": [build(24.0, peak_rss_mb=700.0)]}
    assert said in speed.g5([large], baseline)[-1]["held_back_by"]


def test_g4_checks_each_builds_manifest_facts():
    facts = {"timing_keys": sorted(NEWER), "converted_in": {f"{t}/float32": "intake worker" for t in ("tflite", "js", "serving")},
             "js_parity_backends": ["chromium-wasm", "cpu", "wasm"], "js_latency_backends": ["chromium-wasm", "wasm"]}
    good = {"label": "A", "timings": NEWER, "g4": facts}
    assert all(speed.g4_checks("mobilenetv2", good).values()) and len(speed.g4_checks("mobilenetv2", good)) == 5
    assert len(speed.g4_checks("example", good)) == 4  # the overlap is checked on the G1 models only
    # a second conversion, latency timed on cpu, a re-exported source, parity one run at a time
    bad = {"label": "B", "g4": {**facts, "converted_in": {"tflite/float32": "own worker"},
                                "js_latency_backends": ["chromium-wasm", "cpu", "wasm"],
                                "timing_keys": [k.replace("reuse", "export") for k in facts["timing_keys"]]},
           "timings": {**NEWER, "validate_seconds": 20.0}}
    checks = speed.g4_checks("mobilenetv2", bad)
    assert [ok for ok in checks.values()] == [False, False, True, False, False]
    rows = speed.g4([{"name": "mobilenetv2", "builds": [good, bad]}])
    assert rows[0]["measured"] == "6/10" and rows[0]["status"] == "MISS" and rows[0]["ratio"] == pytest.approx(10 / 6, abs=1e-3)
    assert "mobilenetv2 B: SavedModel source not re-exported" in rows[0]["held_back_by"]

"""One contract every target must pass. Each target contributes only its data (its registry
entry); the assertions are the same for all. The bundled example is built once per target.

The suite also runs over `tests/numpy_target/`, a target that lives outside deploykit and is
registered here with one registry line, as a plugin would be."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import deploykit
from deploykit import manifest as manifest_mod
from deploykit.errors import BadInputError, BudgetError
from deploykit.targets import BUILTIN, REGISTRY, target_class
from deploykit.validation.parity import BUDGET_METRICS

from .conftest import FAST

PLUGIN = {"numpy": "numpy_target.target:NumpyTarget"}  # tests/numpy_target: a target from outside deploykit
TARGETS = [*REGISTRY, *PLUGIN]


@pytest.fixture(scope="module", autouse=True)
def plugin_registered():
    with pytest.MonkeyPatch.context() as mp:
        for name, spec in PLUGIN.items():
            mp.setitem(REGISTRY, name, spec)
        yield


@pytest.fixture(scope="module", params=TARGETS)
def built(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "out"
    doc = deploykit.build(targets=(request.param,), out=str(out), **FAST)
    return request.param, out, doc


@pytest.mark.parametrize("name", TARGETS)
def test_capabilities_are_declared_as_data(name, plugin_registered):
    cls = target_class(name)
    d = cls.describe()
    assert d["name"] == name and d["runtime"] and d["variants"]
    assert set(cls.default_budgets) == set(cls.variants), "every variant needs a default budget"
    for variant, budget in cls.default_budgets.items():
        assert budget and set(budget) <= set(BUDGET_METRICS), f"{name}/{variant}"


@pytest.mark.slow
def test_every_variant_is_built_and_passes(built):
    name, out, doc = built
    assert doc["passed"] is True
    assert [a["variant"] for a in doc["artifacts"]] == list(target_class(name).variants)
    for a in doc["artifacts"]:
        assert (out / a["path"]).exists()
        assert a["parity"]["passed"] and a["failures"] == []
        assert set(a["parity"]["outputs"]) == {o["name"] for o in doc["contract"]["outputs"]}
        assert a["parity"]["samples"] == doc["data"]["parity_rows"] > 0
        raised = doc["data"].get("noise_floor", {}).get("raised", {}).get(f"{name}/{a['variant']}", {})
        expected = {**target_class(name).default_budgets[a["variant"]], **{m: r["budget"] for m, r in raised.items()}}
        assert a["budget"] == expected  # the defaults, max_abs_rel raised only to the model's recorded noise floor


@pytest.mark.slow
def test_float32_is_faithful_and_quantized_variants_are_smaller(built):
    _, _, doc = built
    by_variant = {a["variant"]: a for a in doc["artifacts"]}
    f32 = by_variant["float32"]
    for metrics in f32["parity"]["outputs"].values():
        assert metrics["max_abs_rel"] <= 1e-5
    assert f32["size_ratio_to_float32"] == 1.0
    for variant, a in by_variant.items():
        if variant != "float32":
            assert a["bytes"] < f32["bytes"], variant


@pytest.mark.slow
def test_latency_is_measured_in_the_runtime(built):
    _, _, doc = built
    for a in doc["artifacts"]:
        lat = a["latency"]
        assert lat["iterations"] > 0 and lat["warmup"] == FAST["latency"]["warmup"]
        assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]
        # 20 calls (the FAST cap): p50 gets its 95% interval, p99 cannot (validation/latency.py)
        lo, hi = lat["p50_ci_ms"]
        assert lo <= lat["p50_ms"] <= hi and lat["p99_ci_ms"] is None and lat["ci_level"] == 0.95
        # deploykit's loops say why they stopped; a plugin's runtime (numpy) times its own way
        assert lat["stopped"] in ("iteration cap", "time cap") or (a["target"] not in BUILTIN and lat["stopped"] is None)
        assert lat["load_ms"] > 0 and lat["first_inference_ms"] > 0 and lat["peak_rss_mb"] > 0
        assert lat["runtime"] == a["parity"]["runtime"] and lat["runtime_version"]


@pytest.mark.slow
def test_manifest_matches_schema_and_checksums(built):
    _, out, doc = built
    on_disk = json.loads((out / "manifest.json").read_text())
    manifest_mod.check(on_disk)
    assert on_disk["artifacts"] == json.loads(json.dumps(doc["artifacts"]))
    assert manifest_mod.verify_files(out, on_disk) == []
    for a in on_disk["artifacts"]:
        assert _artifact_files(on_disk, a), f"{a['path']} has no checksummed files"
        if (out / a["path"]).is_file():
            assert on_disk["files"][a["path"]]["sha256"] == a["sha256"]
    assert len(on_disk["config"]["hash"]) == 64
    assert on_disk["environment"]["packages"]["tensorflow"] == "2.19.0"
    assert not list(out.rglob(".work")), "scratch files must not reach the output"


@pytest.mark.slow
def test_validate_reruns_against_stored_reference(built, tmp_path):
    _, out, _ = built
    report = deploykit.validate(out)
    assert report["passed"] and len(report["artifacts"]) == len(target_class(built[0]).variants)


def _copy(out: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    return copy


def _artifact_files(doc: dict, artifact: dict) -> list[str]:
    """The files of one artifact (a single file, or every file of a bundle folder)."""
    return [p for p in doc["files"] if p == artifact["path"] or p.startswith(artifact["path"].rstrip("/") + "/")]


@pytest.mark.slow
def test_validate_refuses_a_tampered_artifact(built, tmp_path):
    _, out, doc = built
    copy = _copy(out, tmp_path)
    victim = copy / _artifact_files(doc, doc["artifacts"][0])[0]
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.raises(BadInputError, match="checksum does not match"):
        deploykit.validate(copy)


@pytest.mark.slow
def test_validate_detects_an_unfaithful_artifact(built, tmp_path):
    """Swap the float32 artifact for the int8 one (checksums updated): parity must catch it."""
    from deploykit.digests import file_sha256

    _, out, doc = built
    paths = {a["variant"]: a["path"] for a in doc["artifacts"]}
    if not {"float32", "int8"} <= set(paths) or not (out / paths["float32"]).is_file():
        pytest.skip("target has no single-file float32/int8 pair")
    copy = _copy(out, tmp_path)
    shutil.copy(copy / paths["int8"], copy / paths["float32"])
    m = json.loads((copy / "manifest.json").read_text())
    m["files"][paths["float32"]]["sha256"] = file_sha256(copy / paths["float32"])
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BudgetError, match=r"float32: output '\w+': max_abs_rel"):
        deploykit.validate(copy)


@pytest.mark.slow
def test_breached_budget_fails_and_keeps_previous_output(built, tmp_path):
    name, out, _ = built
    if "float16" not in target_class(name).variants:
        pytest.skip("target has no float16 variant to break (serving: float32 only)")
    target_out = tmp_path / "out"
    shutil.copytree(out, target_out)
    before = {p: p.read_bytes() for p in target_out.rglob("*") if p.is_file()}
    impossible = {name: {"float16": {"max_abs": 0.0}}}
    with pytest.raises(BudgetError) as info:
        deploykit.build(targets=(name,), quantize=("float32", "float16"), out=str(target_out),
                        budgets=impossible, latency={"enabled": False}, example_epochs=2)
    assert "float16" in info.value.message and "max_abs" in info.value.message
    failed = {a["variant"]: a["passed"] for a in info.value.manifest["artifacts"]}
    assert failed == {"float32": True, "float16": False}
    after = {p: p.read_bytes() for p in target_out.rglob("*") if p.is_file()}
    assert after == before
    assert not list(tmp_path.glob(".out.staging-*"))

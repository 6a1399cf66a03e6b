"""`deploykit report` from small synthetic manifests (no build, no TensorFlow): the latency
comparison that knows the noise, the verdict first, budgets and notices beside the figures, plots
that a person can read, and the page as headless Chromium renders it."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from deploykit import manifest as manifest_mod
from deploykit import reporting
from deploykit.reporting import plots
from deploykit.reporting.compare import quantile_interval
from deploykit.validation.latency import summarize

from .conftest import run_cli

CREATED = "2025-01-01T00:00:00Z"


# ---- synthetic manifests --------------------------------------------------------------------------

def timings(p50: float, n: int = 1000, *, spread: float = 0.03, tail: int = 0, tail_ms: float | None = None,
            seed: int = 0) -> np.ndarray:
    """Per-call milliseconds around `p50` (lognormal), plus `tail` slow calls near `tail_ms` (a busy machine)."""
    rng = np.random.default_rng(seed)
    t = p50 * np.exp(rng.normal(0.0, spread, n))
    if tail:
        t[rng.choice(n, tail, replace=False)] = (tail_ms or 5 * p50) * np.exp(rng.normal(0.0, 0.05, tail))
    return t


def latency(t: np.ndarray, runtime: str = "litert", version: str = "2.3.0") -> dict:
    return summarize(t, {"warmup": 20, "load_ms": 0.6, "first_inference_ms": 0.25, "peak_rss_mb": 50.0, "threads": 1,
                         "process_threads": 2, "runtime": runtime, "runtime_version": version})


def artifact(target: str, variant: str, nbytes: int, *, lat: dict | None, outputs: dict | None = None,
             budget: dict | None = None, failures: list | None = None, runtime: str = "litert") -> dict:
    outputs = outputs if outputs is not None else {"digit": {"max_abs_rel": 1e-6, "rmse": 1e-7, "cosine": 1.0,
                                                             "top1_agreement": 1.0}}
    failures = failures or []
    return {"target": target, "variant": variant, "path": f"{target}/model_{variant}",
            "sha256": hashlib.sha256(f"{target}/{variant}".encode()).hexdigest(), "bytes": nbytes,
            "size_ratio_to_float32": None, "details": {}, "budget": budget if budget is not None else {"max_abs_rel": 1e-5},
            "parity": {"samples": 360, "runtime": runtime, "runtime_version": "1.0", "outputs": outputs,
                       "passed": not failures},
            "latency": lat, "failures": failures, "passed": not failures}


def manifest(artifacts: list[dict], *, origin: str = "file", rejected: list | None = None) -> dict:
    floats = {a["target"]: a["bytes"] for a in artifacts if a["variant"] == "float32"}
    for a in artifacts:
        a["size_ratio_to_float32"] = a["bytes"] / floats[a["target"]] if a["target"] in floats else None
    warnings = ["no --data given: parity inputs are generated from the model signature (random values)"] \
        if origin == "generated" else []
    doc = {
        "schema_version": manifest_mod.SCHEMA_VERSION, "deploykit_version": "0.1.0", "created_at": CREATED,
        "passed": all(a["passed"] for a in artifacts),
        "source": {"kind": "keras_zip", "location": "model.keras", "keras": "tf_keras", "sha256": "a" * 64,
                   "optimizable": True, "policy_findings_allowed": []},
        "config": {"hash": "b" * 64, "settings": {}},
        "environment": {"python": "3.11.7", "platform": "Linux", "machine": "x86_64", "packages": {"numpy": "2.1.3"}},
        "contract": {"inputs": [{"name": "pixels", "dtype": "float32", "shape": [None, 8, 8, 1]}],
                     "outputs": [{"name": "digit", "dtype": "float32", "shape": [None, 10]}]},
        "isolation": {"workers": "process per job", "sandbox": None, "trusted_model": True},
        "data": {"origin": origin, "path": "data.npz" if origin == "file" else None, "sha256": None,
                 "warnings": warnings, "rows": 360, "parity_rows": 360, "calibration_rows": 200,
                 "inputs": "validation/inputs.npz", "reference": "validation/reference.npz"},
        "targets": {}, "artifacts": artifacts, "rejected": rejected or [], "files": {},
        "timings": {"total_seconds": 30.0},
    }
    manifest_mod.check(doc)
    return doc


def two_artifacts(*, int8_timings: np.ndarray | None = None, **kw) -> dict:
    return manifest([
        artifact("tflite", "float32", 99016, lat=latency(timings(0.88, seed=1))),
        artifact("tflite", "int8", 30968, lat=latency(int8_timings if int8_timings is not None else timings(0.40, seed=2)),
                 outputs={"digit": {"max_abs_rel": 0.02, "rmse": 0.004, "cosine": 0.9995, "top1_agreement": 0.997}},
                 budget={"cosine": 0.99, "top1_agreement": 0.99, "p50_ms": 2.0}),
    ], **kw)


def ten_artifacts(**kw) -> dict:
    """Ten artifacts of three runtimes, as a build of every target gives: sizes and latencies close
    together within a runtime (labels that collide), latencies 30x apart across runtimes."""
    tl = dict(runtime="litert")
    js = dict(runtime="tfjs")
    arts = [
        artifact("tflite", "float32", 99016, lat=latency(timings(0.150, seed=1)), **tl),
        artifact("tflite", "float16", 52092, lat=latency(timings(0.155, seed=2)), **tl,
                 outputs={"digit": {"max_abs_rel": 3e-4, "cosine": 0.99999, "top1_agreement": 1.0}},
                 budget={"max_abs_rel": 1e-2, "cosine": 0.9999, "top1_agreement": 0.99}),
        artifact("tflite", "dynamic", 30968, lat=latency(timings(0.160, seed=3)), **tl,
                 outputs={"digit": {"max_abs_rel": 0.004, "cosine": 0.9999, "top1_agreement": 1.0}},
                 budget={"max_abs_rel": 0.1, "cosine": 0.99, "top1_agreement": 0.98}),
        artifact("tflite", "int8", 29800, lat=latency(timings(0.162, seed=4)), **tl,
                 outputs={"digit": {"max_abs_rel": 0.03, "cosine": 0.9993, "top1_agreement": 0.997}},
                 budget={"cosine": 0.99, "top1_agreement": 0.99}),
        artifact("tflite", "int16x8", 31200, lat=latency(timings(0.170, seed=5)), **tl,
                 outputs={"digit": {"max_abs_rel": 0.0, "cosine": 1.0, "top1_agreement": 1.0}},
                 budget={"max_abs_rel": 0.05, "cosine": 0.999, "top1_agreement": 0.99}),
        artifact("js", "float32", 100500, lat=latency(timings(3.9, seed=6), "tfjs"), **js,
                 budget={"max_abs_rel": 1e-4}),
        artifact("js", "float16", 51000, lat=latency(timings(4.1, seed=7), "tfjs"), **js,
                 outputs={"digit": {"max_abs_rel": 5e-4, "cosine": 0.99999, "top1_agreement": 1.0}},
                 budget={"max_abs_rel": 1e-2, "cosine": 0.9999, "top1_agreement": 0.99}),
        artifact("js", "uint16", 51500, lat=latency(timings(4.2, seed=8), "tfjs"), **js,
                 outputs={"digit": {"max_abs_rel": 2e-4, "cosine": 0.99999, "top1_agreement": 1.0}},
                 budget={"max_abs_rel": 1e-3, "cosine": 0.9999, "top1_agreement": 0.99}),
        artifact("js", "uint8", 27000, lat=latency(timings(4.0, seed=9), "tfjs"), **js,
                 outputs={"digit": {"max_abs_rel": 0.05, "cosine": 0.998, "top1_agreement": 0.99}},
                 budget={"max_abs_rel": 0.1, "cosine": 0.99, "top1_agreement": 0.98}),
        artifact("serving", "float32", 101000, lat=latency(timings(1.3, seed=10), "tensorflow-serving"),
                 runtime="tensorflow-serving", outputs={"digit": {"max_abs_rel": 0.0, "cosine": 1.0, "top1_agreement": 1.0}}),
    ]
    return manifest(arts, **kw)


def write_out(root: Path, doc: dict) -> Path:
    root.mkdir(parents=True)
    manifest_mod.write(root, doc)
    return root


def busy_pair() -> tuple[dict, dict]:
    """The issue's case: two builds of the same model, the second on a busy machine: a dozen of
    1,000 calls stall and p99 goes from about 0.88 to about 4.4 ms while the median does not move."""
    old = two_artifacts(int8_timings=timings(0.80, spread=0.04, seed=11))
    new = two_artifacts(int8_timings=timings(0.80, spread=0.04, seed=12, tail=12, tail_ms=4.5))
    return old, new


# ---- 7. latency judged with its noise ------------------------------------------------------------

def test_a_busy_machine_is_inconclusive_not_a_regression(tmp_path):
    old, new = busy_pair()
    o, n = old["artifacts"][1]["latency"]["p99_ms"], new["artifacts"][1]["latency"]["p99_ms"]
    th = reporting.Thresholds()
    assert 0.8 < o < 0.95 and n > 4.0 and n > o * th.latency_ratio and n - o > th.latency_noise_ms  # the old rule cried wolf

    cmp = reporting.compare(new, old, th)
    assert cmp["passed"] and cmp["regressions"] == []
    judged = cmp["deltas"][1]["latency"]
    assert judged["p99_ms"]["state"] == "inconclusive" and judged["p99_ms"]["method"] == "recorded"
    assert judged["p50_ms"]["state"] == "unchanged"
    lo_old, hi_old = judged["p99_ms"]["ci_old"]
    lo_new, hi_new = judged["p99_ms"]["ci_new"]
    assert lo_old <= o <= hi_old and lo_new <= n <= hi_new and lo_new <= hi_old  # the intervals overlap
    assert [(g["variant"], g["metric"]) for g in cmp["inconclusive"]] == [("int8", "p99_ms")]

    out = write_out(tmp_path / "out", new)
    proc = run_cli("report", str(out), "--baseline", str(write_out(tmp_path / "old", old)), "--dest", str(tmp_path / "cmp"))
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert md.startswith("## ✅ NO REGRESSION") and "1 latency change(s) inconclusive" in md
    assert "*inconclusive, not a regression:* tflite/int8: p99_ms" in md


def test_a_real_slowdown_is_a_regression_and_exits_3(tmp_path):
    old = two_artifacts(int8_timings=timings(0.40, seed=2))
    new = two_artifacts(int8_timings=timings(0.60, seed=3))  # every call 1.5x slower
    cmp = reporting.compare(new, old, reporting.Thresholds())
    assert {m: j["state"] for m, j in cmp["deltas"][1]["latency"].items()} == {"p50_ms": "regression", "p99_ms": "regression"}
    assert cmp["deltas"][0]["latency"]["p50_ms"]["state"] == "unchanged"  # float32 did not change
    assert not cmp["passed"] and cmp["inconclusive"] == []
    lo_new = cmp["deltas"][1]["latency"]["p50_ms"]["ci_new"][0]
    assert lo_new > cmp["deltas"][1]["latency"]["p50_ms"]["ci_old"][1]  # apart

    proc = run_cli("report", str(write_out(tmp_path / "out", new)), "--baseline", str(write_out(tmp_path / "old", old)),
                   "--dest", str(tmp_path / "cmp"))
    assert proc.returncode == 3, proc.stderr
    assert "tflite/int8: p50_ms 0.3997 -> 0.6007 ms" in proc.stderr and "95% intervals" in proc.stderr
    # with a looser ratio the same slowdown is within the thresholds
    relaxed = reporting.compare(new, old, reporting.Thresholds(latency_ratio=2.0))
    assert relaxed["passed"] and relaxed["deltas"][1]["latency"]["p50_ms"]["state"] == "unchanged"


def test_a_real_speedup_is_an_improvement():
    old = two_artifacts(int8_timings=timings(0.60, seed=2))
    new = two_artifacts(int8_timings=timings(0.30, seed=3))
    cmp = reporting.compare(new, old, reporting.Thresholds())
    assert cmp["passed"] and cmp["deltas"][1]["latency"]["p50_ms"]["state"] == "improvement"


def test_builds_without_recorded_intervals_are_judged_by_their_histograms():
    """Manifests of builds before latency.p50_ci_ms/p99_ci_ms: intervals bootstrapped from the histograms."""
    old, new = busy_pair()
    for doc in (old, new):
        for a in doc["artifacts"]:
            a["latency"].pop("p50_ci_ms"), a["latency"].pop("p99_ci_ms")
    judged = reporting.compare(new, old, reporting.Thresholds())["deltas"][1]["latency"]["p99_ms"]
    assert judged["method"] == "bootstrap" and judged["state"] == "inconclusive"


def test_without_histograms_the_recorded_values_are_compared():
    old = two_artifacts(int8_timings=timings(0.40, seed=2))
    new = two_artifacts(int8_timings=timings(0.80, seed=3))
    for doc in (old, new):
        for a in doc["artifacts"]:
            for key in ("histogram", "p50_ci_ms", "p99_ci_ms"):
                a["latency"].pop(key)
    cmp = reporting.compare(new, old, reporting.Thresholds())
    j = cmp["deltas"][1]["latency"]["p50_ms"]
    assert j["method"] == "point" and j["state"] == "regression" and not cmp["passed"]
    assert "no histogram" in cmp["regressions"][0]["message"]


def test_bootstrap_intervals_are_reproducible_and_narrow_with_many_calls():
    hist = latency(timings(0.5, n=2000, seed=5))["histogram"]
    first = quantile_interval(hist, 0.5, 0.5)
    assert first == quantile_interval(hist, 0.5, 0.5)  # fixed seed
    assert first[0] <= 0.5 <= first[1] and first[1] / first[0] < 1.15
    few = latency(timings(0.5, n=20, seed=5))["histogram"]
    wide = quantile_interval(few, 0.99, max(timings(0.5, n=20, seed=5)))
    assert wide[1] / wide[0] > first[1] / first[0]  # 20 calls say less about p99 than 2,000 about p50


def test_parity_deltas_are_shown_beside_size_and_latency():
    old = two_artifacts()
    new = copy.deepcopy(old)
    new["artifacts"][1]["parity"]["outputs"]["digit"].update(max_abs_rel=0.05, cosine=0.9990)
    doc = reporting.build_report(new, old)
    delta = doc["baseline"]["deltas"][1]["parity"]["digit"]
    assert delta["max_abs_rel"] == {"old": 0.02, "new": 0.05, "delta": 0.05 - 0.02, "regression": True}
    jsonschema.validate(doc, reporting.schema())
    files = reporting.render(doc)
    md, html = files["report.md"], files["report.html"]
    row = next(ln for ln in md.splitlines() if ln.startswith("| tflite/int8 | compared"))
    assert "**digit max_abs_rel 0.0200 → 0.0500 (+0.03)**" in row and "digit cosine 0.9995 → 0.9990 (−0.0005)" in row
    assert "unchanged 1.000x" in row and "1.000x" in row.split("|")[3]  # beside size and latency
    table = html[html.index('<table id="baseline">'):html.index("</table>", html.index('<table id="baseline">'))]
    assert "<th>parity old → new</th>" in table and "digit max_abs_rel 0.0200 → 0.0500 (+0.03)" in table


def test_the_verdict_of_the_comparison_comes_first():
    """A build that passes, compared with a baseline it regresses from: the page says REGRESSION at
    the top (title, heading, colour) and lists the regressions before any table."""
    old = two_artifacts(int8_timings=timings(0.40, seed=2))
    new = two_artifacts(int8_timings=timings(0.60, seed=3))
    assert new["passed"]
    files = reporting.render(reporting.build_report(new, old))
    html, md = files["report.html"], files["report.md"]
    assert "<title>REGRESSION:" in html
    head = html[html.index('<header id="verdict"'):html.index("</header>")]
    assert 'class="bad"' in head and '<span class="word">REGRESSION</span>' in head and "PASS" not in head.split("</h1>")[0]
    assert "tflite/int8: p50_ms" in head and "This build: PASS" in head
    assert html.index('<header id="verdict"') < html.index('<table id="baseline">') < html.index('<table id="artifacts">')
    assert md.startswith("## ❌ REGRESSION")
    assert md.index("- tflite/int8: p50_ms") < md.index("| artifact |")
    # asked for the build alone, the build's verdict leads
    files = reporting.render(reporting.build_report(new))
    assert "<title>PASS:" in files["report.html"] and files["report.md"].startswith("## ✅ PASS")


# ---- 8. what a reader needs -----------------------------------------------------------------------

def test_budgets_are_shown_beside_each_metric():
    doc = reporting.build_report(two_artifacts())
    assert doc["artifacts"][1]["budget"] == {"cosine": 0.99, "top1_agreement": 0.99, "p50_ms": 2.0}
    jsonschema.validate(doc, reporting.schema())
    files = reporting.render(doc)
    row = next(ln for ln in files["report.md"].splitlines() if ln.startswith("| tflite/int8 |"))
    assert "cosine 0.999500 (≥ 0.99)" in row and "top1_agreement 0.9970 (≥ 0.99)" in row and "(≤ 2)" in row
    f32 = next(ln for ln in files["report.md"].splitlines() if ln.startswith("| tflite/float32 |"))
    assert "max_abs_rel 1e-06 (≤ 1e-05)" in f32
    html = files["report.html"]
    int8 = html[html.index("<td rowspan=\"1\">int8</td>"):]
    int8 = int8[:int8.index("</tr>")]
    assert '<small class="budget">≥ 0.99</small>' in int8 and '<small class="budget">≤ 2</small>' in int8
    # a figure over its budget is marked
    over = two_artifacts()
    over["artifacts"][1]["parity"]["outputs"]["digit"]["cosine"] = 0.95
    html = reporting.render(reporting.build_report(over))["report.html"]
    assert '<td class="n over">0.950000<br><small class="budget">≥ 0.99</small></td>' in html


def test_random_parity_data_gets_a_visible_notice():
    html = reporting.render(reporting.build_report(two_artifacts(origin="generated")))
    page, md = html["report.html"], html["report.md"]
    assert 'id="notice-random-data"' in page and "generated at random" in page
    assert page.index('id="notice-random-data"') < page.index('<table id="artifacts">')
    assert "> **⚠ Warning:** Parity data was generated at random" in md
    assert md.index("generated at random") < md.index("| artifact |")
    files = reporting.render(reporting.build_report(two_artifacts(origin="file")))
    assert "notice-random-data" not in files["report.html"] and "Warning" not in files["report.md"]


def test_rejected_variants_are_named_at_the_top_with_why():
    rejected = [{"target": "tflite", "variant": "int16x8", "reason": "missed its budget; not required",
                 "failures": [{"kind": "value", "message": "output 'digit': cosine = 0.97, budget >= 0.999",
                               "output": "digit", "metric": "cosine", "value": 0.97, "budget": 0.999}]}]
    files = reporting.render(reporting.build_report(two_artifacts(rejected=rejected)))
    html, md = files["report.html"], files["report.md"]
    notice = html[html.index('id="notice-rejected"'):]
    assert "1 variant(s) rejected" in notice[:300] and "tflite/int16x8" in notice[:300]
    assert html.index('id="notice-rejected"') < html.index('<table id="artifacts">')
    table = html[html.index('<table id="rejected-variants">'):]
    assert "missed its budget; not required" in table and "cosine = 0.97, budget &gt;= 0.999" in table
    assert md.index("1 variant(s) rejected") < md.index("| artifact |")
    assert "- tflite/int16x8: missed its budget; not required; output 'digit': cosine = 0.97, budget >= 0.999" in md


# ---- 8. plots --------------------------------------------------------------------------------------

def _rows(doc: dict) -> list[dict]:
    return reporting.build_report(doc)["artifacts"]


def _extents(fig, artists) -> list:
    """Window boxes of `artists`; of an annotation, its text alone (not its leader line)."""
    from matplotlib.text import Annotation, Text

    fig.canvas.draw()  # lays out the annotations and the constrained layout
    renderer = fig.canvas.get_renderer()
    return [Text.get_window_extent(a, renderer) if isinstance(a, Annotation) else a.get_window_extent(renderer)
            for a in artists]


def _overlaps(boxes) -> list[tuple[int, int]]:
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]


def test_log_axes_carry_several_labelled_ticks():
    rows = _rows(ten_artifacts())
    fig = plots.size_vs_p50_figure(rows)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"  # 0.15 to 4.2 ms
    assert len(plots.labelled_ticks(ax, "y")) >= 3, plots.labelled_ticks(ax, "y")
    assert ax.get_xscale() == "linear" and len(plots.labelled_ticks(ax, "x")) >= 3  # 26 to 101 KiB
    hist = plots.latency_distribution_figure(rows).axes[0]
    assert hist.get_xscale() == "log" and len(plots.labelled_ticks(hist, "x")) >= 3
    parity = plots.parity_error_figure(rows).axes[0]
    assert len(plots.labelled_ticks(parity, "x")) >= 3
    # a narrow spread stays linear, with labelled ticks too
    narrow = plots.size_vs_p50_figure(rows[:5]).axes[0]
    assert narrow.get_yscale() == "linear" and len(plots.labelled_ticks(narrow, "y")) >= 3


def test_point_labels_do_not_overlap():
    for doc in (ten_artifacts(), _many(40)):
        rows = _rows(doc)
        fig = plots.size_vs_p50_figure(rows)
        labels = [t for t in fig.axes[0].texts if (t.get_gid() or "").startswith("point-label-")]
        assert len(labels) == len(rows)
        boxes = _extents(fig, labels)
        assert _overlaps(boxes) == []
        figure_box = fig.bbox
        assert all(b.x0 >= figure_box.x0 and b.x1 <= figure_box.x1 and b.y0 >= 0 and b.y1 <= figure_box.y1 for b in boxes)


def _many(n: int) -> dict:
    base = ten_artifacts()["artifacts"]
    arts = [dict(copy.deepcopy(base[i % 10]), variant=f"{base[i % 10]['variant']}-{i}") for i in range(n)]
    for a in arts:
        a["variant"] = "float32" if a["variant"].startswith("float32-") and a["variant"].endswith(("-0", "-5", "-9")) \
            else a["variant"]
    return manifest(arts)


def test_the_legend_stays_outside_the_latency_histogram():
    fig = plots.latency_distribution_figure(_rows(ten_artifacts()))
    fig.canvas.draw()
    legend, = fig.legends
    ax = fig.axes[0]
    box, area = _extents(fig, [legend, ax.patch])
    assert not box.overlaps(area), (box, area)


def test_exact_zero_errors_are_marked_not_drawn_as_bars():
    rows = _rows(ten_artifacts())
    zero = [i for i, r in enumerate(rows) if r["parity"]["outputs"]["digit"]["max_abs_rel"] == 0]
    assert len(zero) == 2
    fig = plots.parity_error_figure(rows)
    ax = fig.axes[0]
    bars = [p for p in ax.patches if (p.get_gid() or "").startswith("parity-bar-")]
    assert len(bars) == len(rows) - len(zero)
    assert {int(p.get_gid().split("-")[2]) for p in bars}.isdisjoint(zero)
    smallest = min(p.get_width() for p in bars)
    assert smallest == 1e-6  # the smallest non-zero error is a bar of its own length
    marks = [t for t in ax.texts if (t.get_gid() or "").startswith("parity-zero-label-")]
    assert sorted(int(t.get_gid().split("-")[3]) for t in marks) == zero and {t.get_text() for t in marks} == {"0 (exact)"}
    # and when every error is exactly zero there is still an axis to read
    for r in rows:
        r["parity"]["outputs"]["digit"]["max_abs_rel"] = 0.0
    ax = plots.parity_error_figure(rows).axes[0]
    assert not [p for p in ax.patches if (p.get_gid() or "").startswith("parity-bar-")]
    assert len(plots.labelled_ticks(ax, "x")) >= 3


def test_html_escapes_what_the_manifest_says():
    """Names and messages come from the manifest (a model's file name, an error text): the page
    escapes them, since it runs its own inline script."""
    doc = two_artifacts()
    doc["source"]["location"] = "<img src=x onerror=alert(1)>.keras"
    doc["artifacts"][1]["failures"] = [{"kind": "runtime", "message": "<script>alert(2)</script>"}]
    doc["artifacts"][1]["passed"] = False
    html = reporting.render(reporting.build_report(doc))["report.html"]
    assert "<img src=x" not in html and "<script>alert(2)" not in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;.keras" in html


# ---- the page as a person sees it (headless Chromium) ----------------------------------------------

CHROMIUM = os.environ.get("DEPLOYKIT_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
VIEWPORT = (1280, 800)  # a laptop's first screen


def _missing(what: str) -> None:
    """Skip where the browser tools are absent, with the way to get them; in CI (CI set), fail."""
    reason = f"{what}: install Node.js and Chromium with `bash scripts/setup-js.sh`"
    (pytest.fail if os.environ.get("CI") else pytest.skip)(reason)


def seen_in_chromium(page: Path, tmp_path: Path) -> dict:
    """What headless Chromium shows of `page` at VIEWPORT (targets/js/render.mjs)."""
    import shutil

    if not Path(CHROMIUM).is_file():
        _missing(f"no Chromium at {CHROMIUM}")
    node = shutil.which("node")
    if node is None:
        _missing("no node on PATH")
    from deploykit.targets.js.node import ensure_modules

    request = tmp_path / f"{page.stem}-render.json"
    request.write_text(json.dumps({"page": str(page), "modules": str(ensure_modules(ROOT / "targets" / "js")),
                                   "chromium": CHROMIUM, "width": VIEWPORT[0], "height": VIEWPORT[1]}))
    proc = subprocess.run([node, str(ROOT / "targets" / "js" / "render.mjs"), str(request)], capture_output=True,
                          text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _in_first_screen(box: dict) -> bool:
    return box is not None and box["top"] >= 0 and box["bottom"] <= VIEWPORT[1] and box["left"] >= 0 \
        and box["right"] <= VIEWPORT[0] and box["width"] > 0 and box["height"] > 0


def _apart(a: dict, b: dict) -> bool:
    return a["right"] <= b["left"] or b["right"] <= a["left"] or a["bottom"] <= b["top"] or b["bottom"] <= a["top"]


@pytest.mark.browser
def test_the_page_as_a_reader_sees_it(tmp_path):
    """A comparison that regresses, of a ten-artifact build on random data: Chromium lays out the
    page, and what a reader sees is checked: the verdict and the notice in the first screen, no
    overlapping labels, the legend off the data, zeros marked, several ticks, no request made."""
    old = ten_artifacts(origin="generated")
    new = copy.deepcopy(old)
    new["artifacts"][6]["latency"] = latency(timings(6.0, seed=45), "tfjs")  # js/float16: 1.5x slower
    new["artifacts"][3]["latency"] = latency(timings(0.162, seed=44, tail=12, tail_ms=0.8))  # tflite/int8: noisy p99
    reporting.write(tmp_path / "cmp", reporting.build_report(new, old))
    seen = seen_in_chromium(tmp_path / "cmp" / "report.html", tmp_path)

    assert seen["requests"] == [seen["page"]], seen["requests"]  # nothing but the page itself
    assert seen["console"] == [] and seen["errors"] == []
    assert seen["title"].startswith("REGRESSION:")
    v = seen["verdict"]
    assert v["word"] == "REGRESSION" and v["shown"] and v["className"] == "bad" and v["color"] == "rgb(207, 34, 46)"
    assert _in_first_screen(v["box"]) and _in_first_screen(v["word_box"])
    assert "js/float16: p50_ms" in v["text"] and "This build: PASS" in v["text"]
    notice = {n["id"]: n for n in seen["notices"]}["notice-random-data"]
    assert notice["shown"] and _in_first_screen(notice["box"]) and "generated at random" in notice["text"]
    tops = {x["id"] or x["text"]: x["top"] for x in seen["order"]}
    assert tops["verdict"] < tops["notice-random-data"] < tops["baseline"] < tops["artifacts"]

    plots_seen = seen["plots"]
    assert seen["plots_rendered"] == "3" and set(plots_seen) == {"plot-size-vs-p50", "plot-latency-distribution",
                                                                  "plot-parity-error"}
    labels = plots_seen["plot-size-vs-p50"]["labels"]
    assert len(labels) == 10 and all(lb["shown"] for lb in labels)
    assert {lb["text"] for lb in labels} == {f"{a['target']}/{a['variant']}" for a in new["artifacts"]}
    overlapping = [(a["text"], b["text"]) for i, a in enumerate(labels) for b in labels[i + 1:] if not _apart(a["box"], b["box"])]
    assert overlapping == []
    assert len(plots_seen["plot-size-vs-p50"]["yticks"]) >= 3, plots_seen["plot-size-vs-p50"]["yticks"]
    hist = plots_seen["plot-latency-distribution"]
    assert hist["legend"] and hist["axes"] and _apart(hist["legend"], hist["axes"])
    assert len(hist["xticks"]) >= 3
    parity = plots_seen["plot-parity-error"]
    assert [z["text"] for z in parity["zeros"]] == ["0 (exact)", "0 (exact)"] and all(z["shown"] for z in parity["zeros"])
    assert len(parity["bars"]) == 8


@pytest.mark.browser
def test_the_page_check_sees_a_network_request(tmp_path):
    """The check above would see a request: a page that tries one is caught (and the request blocked)."""
    reporting.write(tmp_path / "out", reporting.build_report(two_artifacts()))
    page = tmp_path / "out" / "report.html"
    page.write_text(page.read_text().replace("</body>", '<img src="http://127.0.0.1:9/x.png"></body>'))
    seen = seen_in_chromium(page, tmp_path)
    assert "http://127.0.0.1:9/x.png" in seen["requests"]
    assert seen["verdict"]["word"] == "PASS" and _in_first_screen(seen["verdict"]["box"])


def test_rendering_is_deterministic_and_the_document_matches_its_schema():
    old, new = busy_pair()
    doc = reporting.build_report(new, old)
    jsonschema.validate(doc, reporting.schema())
    assert doc["report_schema_version"] == 2 and doc["data"]["origin"] == "file"
    first = reporting.render(doc)
    assert reporting.render(reporting.build_report(new, old)) == first  # intervals, plots and all
    assert first["report.html"].count('<svg class="plot"') == 3


def test_the_load_stage_is_a_table_of_its_levels():
    from deploykit.validation import load as load_stats

    lat = latency(timings(1.3, seed=11), "tf-serving")
    raw = [{"api": api, "batching": b, "clients": n, "requests": 100 * n, "errors": 3 if (api, b, n) == ("grpc", "on", 16) else 0,
            "wrong_outputs": 0, "first_error": None, "seconds": 0.25, "timings_ms": list(timings(1.0 + n / 8, n=50))}
           for b in ("off", "on") for api in ("rest", "grpc") for n in (1, 16)]
    lat["load"] = load_stats.summarize(raw, {"levels": [1, 16]})
    doc = manifest([artifact("serving", "float32", 101000, lat=lat, runtime="tf-serving")])
    report = reporting.build_report(doc)
    jsonschema.validate(report, reporting.schema())
    assert len(report["artifacts"][0]["load"]) == 8
    files = reporting.render(report)
    rows = [ln for ln in files["report.md"].splitlines() if ln.startswith(("| serving/float32 | rest |",
                                                                           "| serving/float32 | grpc |"))]
    assert len(rows) == 8 and rows[0].startswith("| serving/float32 | rest | off | 1 | 100 | 0 |")
    assert any(r.startswith("| serving/float32 | grpc | on | 16 | 1600 | 3 |") for r in rows)
    html = files["report.html"]
    assert html.count("<tr><td>serving/float32</td><td>") == 8 and '<td class="n over">3</td>' in html
    assert "**Load**" not in reporting.render(reporting.build_report(two_artifacts()))["report.md"]  # none: no table

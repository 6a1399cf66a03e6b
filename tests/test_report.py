"""`deploykit report`: from a real build of the bundled example (float32 + int8 TFLite, FAST latency)."""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from deploykit import manifest as manifest_mod
from deploykit import reporting as report_mod

from .conftest import FAST, run_cli

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("DEPLOYKIT_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    import deploykit

    out = tmp_path_factory.mktemp("report") / "out"
    deploykit.build(targets=("tflite",), quantize=("float32", "int8"), out=str(out), **FAST)
    return out


def _copy(built: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "out"
    shutil.copytree(built, dest)
    return dest


def test_build_writes_the_report_and_its_checksums_hold(built):
    doc = manifest_mod.read(built)
    for name in report_mod.FILES:
        assert name in doc["files"], f"{name} missing from the manifest's file table"
    assert manifest_mod.verify_files(built, doc) == []
    rep = json.loads((built / "report.json").read_text())
    jsonschema.validate(rep, report_mod.schema())
    assert [(a["target"], a["variant"]) for a in rep["artifacts"]] == [("tflite", "float32"), ("tflite", "int8")]
    int8 = rep["artifacts"][1]
    assert int8["runtime"].startswith("litert ")
    assert 0 < int8["size_ratio_to_float32"] < 0.5
    assert int8["latency"]["p50_ms"] <= int8["latency"]["p90_ms"] <= int8["latency"]["p99_ms"]
    hist = int8["latency"]["histogram"]
    assert sum(hist["counts"]) == int8["latency"]["iterations"] and len(hist["edges_ms"]) == len(hist["counts"]) + 1
    assert set(int8["parity"]["outputs"]["digit"]) >= {"max_abs_rel", "cosine", "top1_agreement"}


def test_report_command_reproduces_the_built_files_and_appends_the_summary(built, tmp_path):
    out = _copy(built, tmp_path)
    before = {n: (out / n).read_bytes() for n in report_mod.FILES}
    for n in report_mod.FILES:
        (out / n).unlink()
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    proc = run_cli("report", str(out), env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert proc.returncode == 0, proc.stderr
    for n in report_mod.FILES:
        assert (out / n).read_bytes() == before[n], f"{n} differs from the one the build wrote"
    assert run_cli("validate", str(out)).returncode == 0
    md = (out / "report.md").read_text()
    assert len(md.encode()) < 64 * 1024
    assert "| tflite/int8 | litert" in md and "PASS" in md
    text = summary.read_text()
    assert text.startswith("# earlier step\n") and md in text


def test_report_never_rewrites_a_sealed_report_differently(built, tmp_path):
    """A report rendered differently from the one OUT's checksums cover (e.g. by another deploykit
    version) goes beside OUT, which stays as built."""
    out = _copy(built, tmp_path)
    doc = manifest_mod.read(out)
    doc["files"]["report.md"]["sha256"] = "0" * 64  # as if an older version had rendered it
    manifest_mod.write(out, doc)
    before = (out / "report.md").read_bytes()
    proc = run_cli("report", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "rendered differently" in proc.stderr and str(tmp_path / "out-report") in proc.stdout
    assert (out / "report.md").read_bytes() == before
    assert (tmp_path / "out-report" / "report.md").read_bytes() == before


def test_report_does_not_import_tensorflow(built, tmp_path):
    out = _copy(built, tmp_path)
    code = (
        "import sys\nfrom deploykit.cli import main\n"
        f"sys.argv = ['deploykit', 'report', {str(out)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = [m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_html_is_self_contained(built):
    html = (built / "report.html").read_text()
    for needle in ('src="http', "src='http", 'href="http', "url(http", "@import"):
        assert needle not in html
    assert html.count('<svg class="plot"') == 3 and "<img" not in html  # plots are inline SVG
    assert "default-src 'none'" in html  # any network request would be blocked (and logged)


def _baseline(built: Path, tmp_path: Path, edit) -> Path:
    doc = copy.deepcopy(manifest_mod.read(built))
    edit(doc)
    path = tmp_path / "old-manifest.json"
    path.write_text(json.dumps(doc))
    return path


def test_baseline_without_regression_exits_0(built, tmp_path):
    out = _copy(built, tmp_path)
    proc = run_cli("report", str(out), "--baseline", str(out / "manifest.json"), "--dest", str(tmp_path / "cmp"), "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["baseline"]["passed"] and rep["baseline"]["regressions"] == []
    assert [d["bytes_ratio"] for d in rep["baseline"]["deltas"]] == [1.0, 1.0]
    assert "no regression" in (tmp_path / "cmp" / "report.md").read_text()
    assert manifest_mod.verify_files(out, manifest_mod.read(out)) == []  # OUT's report untouched


def test_baseline_regressions_exit_3_and_name_each_one(built, tmp_path):
    def edit(doc):
        f32, int8 = doc["artifacts"]
        f32["bytes"] = int(f32["bytes"] / 1.5)  # the new build is 1.5x bigger
        _faster(int8["latency"], 10)  # the new build is 10x slower, every call
        int8["parity"]["outputs"]["digit"]["cosine"] = 1.0
        int8["parity"]["outputs"]["digit"]["max_abs_rel"] = 1e-4

    old = _baseline(built, tmp_path, edit)
    new_p50 = manifest_mod.read(built)["artifacts"][1]["latency"]["p50_ms"]
    proc = run_cli("report", str(built), "--baseline", str(old), "--dest", str(tmp_path / "cmp"),
                   "--latency-noise-ms", str(new_p50 / 100))
    assert proc.returncode == 3, proc.stderr
    assert "tflite/float32: size grew 1.5" in proc.stderr
    assert "tflite/int8: p50_ms" in proc.stderr
    assert "tflite/int8: digit: max_abs_rel" in proc.stderr
    rep = json.loads((tmp_path / "cmp" / "report.json").read_text())
    kinds = {(r["variant"], r["kind"], r["metric"]) for r in rep["baseline"]["regressions"]}
    assert {("float32", "size", "bytes"), ("int8", "latency", "p50_ms"), ("int8", "parity", "max_abs_rel")} <= kinds
    assert "regression" in (tmp_path / "cmp" / "report.md").read_text()

    # the same comparison with thresholds loosened in a config file passes
    cfg = tmp_path / "thresholds.toml"
    cfg.write_text("[regression]\nsize_increase = 1.0\nlatency_ratio = 1000.0\nparity_ratio = 1e9\nagreement_drop = 1.0\n")
    proc = run_cli("report", str(built), "--baseline", str(old), "--dest", str(tmp_path / "cmp2"), "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr


def test_latency_within_the_noise_margin_is_not_a_regression(built):
    new = manifest_mod.read(built)
    old = copy.deepcopy(new)
    for a in old["artifacts"]:
        _faster(a["latency"], 2)  # 2x slower, but by less than the noise margin in absolute terms
    th = report_mod.Thresholds(latency_noise_ms=max(a["latency"]["p99_ms"] for a in new["artifacts"]))
    assert report_mod.compare(new, old, th)["passed"]
    th = report_mod.Thresholds(latency_noise_ms=0.0)
    assert not report_mod.compare(new, old, th)["passed"]


def _faster(lat: dict, factor: float) -> None:
    """A baseline's latency record, every call `factor` times faster (its intervals and histogram too)."""
    for k in ("p50_ms", "p90_ms", "p99_ms", "min_ms", "max_ms"):
        lat[k] /= factor
    for k in ("p50_ci_ms", "p99_ci_ms"):
        if lat.get(k):
            lat[k] = [v / factor for v in lat[k]]
    lat["histogram"]["edges_ms"] = [e / factor for e in lat["histogram"]["edges_ms"]]


def test_bad_inputs_exit_2(built, tmp_path):
    proc = run_cli("report", str(tmp_path))
    assert proc.returncode == 2 and "no manifest" in proc.stderr
    proc = run_cli("report", str(built), "--baseline", str(tmp_path / "missing.json"))
    assert proc.returncode == 2 and "baseline manifest not found" in proc.stderr
    (tmp_path / "bad.toml").write_text("[regression]\nlatency_ration = 2\n")
    proc = run_cli("report", str(built), "--baseline", str(built), "--config", str(tmp_path / "bad.toml"))
    assert proc.returncode == 2 and "latency_ration" in proc.stderr


def test_optimize_section_is_rendered_generically(built):
    doc = manifest_mod.read(built)
    doc["optimize"] = {"techniques": ["prune"], "sparsity_measured": 0.5, "passed": True,
                       "artifacts": [{"target": "tflite", "variant": "int8", "gzip_bytes": 1234, "gzip_ratio": 2.5},
                                     {"target": "tflite", "variant": "float32", "gzip_bytes": 4321}]}
    files = report_mod.render(report_mod.build_report(doc))
    md, html = files["report.md"], files["report.html"]
    assert "### Optimize stage" in md
    assert "| sparsity_measured | 0.5000 |" in md and '| techniques | ["prune"] |' in md
    assert "**artifacts**" in md and "| target | variant | gzip_bytes | gzip_ratio |" in md
    assert "| tflite | int8 | 1,234 | 2.5000 |" in md and "| tflite | float32 | 4,321 | – |" in md
    assert 'id="optimize"' in html and "<h3>artifacts</h3>" in html
    doc.pop("optimize")
    assert "Optimize stage" not in report_mod.render(report_mod.build_report(doc))["report.md"]


def test_markdown_stays_under_64_kb_with_many_artifacts(built):
    doc = manifest_mod.read(built)
    doc["artifacts"] = [dict(doc["artifacts"][i % 2], variant=f"v{i}") for i in range(600)]
    files = report_mod.render(report_mod.build_report(doc))
    assert len(files["report.md"].encode()) < 64 * 1024
    assert "truncated to fit 64 KB" in files["report.md"] and "| tflite/v0 |" in files["report.md"]
    assert files["report.html"].count("<tr>") > 600  # the HTML keeps every row


def _chromium(html: Path, workdir: Path) -> tuple[str, list[str]]:
    """(DOM after load, console lines) from headless Chromium."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install it with `bash scripts/setup-js.sh`")
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={workdir / 'profile'}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", html.as_uri()],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]


@pytest.mark.browser
def test_html_renders_in_headless_chromium(built, tmp_path):
    dom, console = _chromium(built / "report.html", tmp_path)
    assert console == []
    assert 'data-plots-rendered="3"' in dom  # the page's own check: every plot image decoded
    for plot in ("plot-size-vs-p50", "plot-latency-distribution", "plot-parity-error"):
        assert f'id="{plot}"' in dom
    assert "tflite" in dom and "int8" in dom

    # the same check sees console errors and blocked network requests
    bad = tmp_path / "bad.html"
    bad.write_text((built / "report.html").read_text().replace(
        "</body>", '<img src="http://127.0.0.1:9/x.png"><script>console.error("broken")</script></body>'))
    _, console = _chromium(bad, tmp_path)
    assert any("broken" in ln for ln in console) and any("Content Security Policy" in ln for ln in console)

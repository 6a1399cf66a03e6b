"""`deploykit report OUT`: the build's figures as report.json (the source of truth), report.md
(a pull-request comment / CI job summary, under 64 KB) and a self-contained report.html.

Everything is derived from `OUT/manifest.json`; rendering is deterministic (no clock, fixed plot
ids), so re-running `deploykit report OUT` reproduces the files the build wrote byte for byte and
`deploykit validate` checksums keep holding. With `--baseline OLD_MANIFEST`, deltas against the
previous build are added and regressions beyond the thresholds raise BudgetError (exit 3); a
latency change whose confidence intervals overlap is reported as inconclusive instead.
No TensorFlow here: reports are made in CI jobs that only have the output folder.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

from deploykit.errors import BadInputError, BudgetError
from deploykit.records import ManifestEntry, entries
from deploykit.reporting.compare import Thresholds, compare
from deploykit.reporting.render import render
from deploykit.version import __version__

REPORT_SCHEMA_VERSION = 2  # 2: data, budgets, latency intervals and states, inconclusive changes
FILES = ("report.json", "report.md", "report.html")


@lru_cache(maxsize=None)
def schema() -> dict:
    return json.loads(resources.files("deploykit").joinpath("schema/report.schema.json").read_text())


# -- the report document ---------------------------------------------------------------------------

def build_report(manifest: dict, baseline: dict | None = None, thresholds: Thresholds | None = None) -> dict:
    """The report document (report.json) for one manifest, optionally compared with a baseline."""
    doc = {
        "report_schema_version": REPORT_SCHEMA_VERSION,
        "generated_by": f"deploykit {__version__}",
        "build": {
            "created_at": manifest["created_at"],
            "deploykit_version": manifest["deploykit_version"],
            "passed": manifest["passed"],
            "config_hash": manifest["config"]["hash"],
            "source": {k: manifest["source"].get(k) for k in ("kind", "location", "sha256")},
            "timings": manifest.get("timings", {}),
        },
        "data": _data(manifest.get("data") or {}),
        "environment": manifest["environment"],
        "artifacts": [_artifact_row(a) for a in entries(manifest)],
        "rejected": [{"target": r["target"], "variant": r["variant"], "reason": r["reason"],
                      "failures": [f["message"] for f in r.get("failures", [])]} for r in manifest.get("rejected", [])],
        "optimize": manifest.get("optimize"),
        "baseline": None,
    }
    if baseline is not None:
        doc["baseline"] = compare(manifest, baseline, thresholds or Thresholds())
    return doc


def _data(data: dict) -> dict:
    """Where the parity inputs came from; "generated" (random values) gets a notice on the page."""
    return {"origin": data.get("origin", "file"), "path": data.get("path"), "rows": data.get("rows", 0),
            "parity_rows": data.get("parity_rows", 0), "calibration_rows": data.get("calibration_rows", 0),
            "warnings": list(data.get("warnings") or [])}


def _artifact_row(a: ManifestEntry) -> dict:
    lat, par = a.latency or {}, a.parity
    runtime = par.runtime or lat.get("runtime")
    version = par.runtime_version or lat.get("runtime_version")
    return {
        "target": a.target,
        "variant": a.variant,
        "runtime": f"{runtime} {version}" if runtime and version else runtime,
        "path": a.path,
        "sha256": a.sha256,
        "bytes": a.bytes,
        "size_ratio_to_float32": a.size_ratio_to_float32,
        "passed": a.passed,
        "failures": [f["message"] for f in a.failures],
        "budget": dict(a.budget),
        "parity": {"passed": par.passed, "samples": par.samples, "outputs": par.outputs},
        "latency": {k: lat.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "min_ms", "throughput_per_s",
                                             "load_ms", "first_inference_ms", "iterations", "histogram")}
        if lat else None,
        # concurrency levels of a load stage (serving), None without one
        "load": [{k: lv.get(k) for k in ("api", "batching", "clients", "requests", "errors", "p50_ms", "p99_ms",
                                         "throughput_per_s")} for lv in (lat.get("load") or {}).get("levels", [])]
        or None,
    }


# -- writing ---------------------------------------------------------------------------------------

def write(dest: Path, doc: dict, rendered: dict[str, str] | None = None) -> list[Path]:
    """Check the document against its schema, then write the three files into `dest`."""
    import jsonschema

    jsonschema.validate(doc, schema())
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (rendered or render(doc)).items():
        tmp = dest / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, dest / name)
        written.append(dest / name)
    return written


def write_for_build(staging: Path, manifest: dict) -> None:
    """Called by the build just before the manifest is written: the report files go into the
    staging folder and into the manifest's file table, so `deploykit validate` checks them too."""
    from deploykit import manifest as manifest_mod
    from deploykit.digests import file_sha256

    written = write(staging, build_report(manifest_mod._finite(manifest)))
    table = dict(manifest["files"])
    for p in written:
        table[p.name] = {"sha256": file_sha256(p), "bytes": p.stat().st_size}
    manifest["files"] = dict(sorted(table.items()))


def make(out: str | Path, *, baseline: str | None = None, thresholds: Thresholds | None = None,
         dest: str | Path | None = None, summary: str | None = None) -> tuple[dict, Path]:
    """`deploykit report`: (report document, folder written). Raises BudgetError on a regression."""
    from deploykit import manifest as manifest_mod

    root = Path(out)
    doc_manifest = manifest_mod.read(root)
    old = _read_baseline(baseline) if baseline else None
    doc = build_report(doc_manifest, old, thresholds)
    rendered = render(doc)
    # The build's own report lives in OUT, sealed by the manifest's checksums: rewriting it there
    # only reproduces it. A comparison, or a different rendering (another deploykit version), goes
    # beside OUT so `deploykit validate OUT` keeps passing.
    target = Path(dest) if dest else (root.parent / f"{root.name}-report" if baseline else root)
    if not dest and target == root and not _same_as_sealed(doc_manifest, rendered):
        target = root.parent / f"{root.name}-report"
        from deploykit.progress import for_terminal

        for_terminal(True).warn(f"{root}'s report was rendered differently (another deploykit version?): "
                                f"wrote the new one to {target} and left {root} unchanged")
    write(target, doc, rendered)
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write((target / "report.md").read_text(encoding="utf-8") + "\n")
    if doc["baseline"] and not doc["baseline"]["passed"]:
        lines = [r["message"] for r in doc["baseline"]["regressions"]]
        raise BudgetError(f"{len(lines)} regression(s) against {baseline}:\n  " + "\n  ".join(lines),
                          details={"regressions": doc["baseline"]["regressions"], "report": str(target)})
    return doc, target


def _same_as_sealed(manifest: dict, rendered: dict[str, str]) -> bool:
    """True when OUT's checksums do not cover the report, or cover exactly these bytes."""
    import hashlib

    files = manifest["files"]
    return all(name not in files or files[name]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
               for name, text in rendered.items())


def _read_baseline(path: str) -> dict:
    from deploykit import manifest as manifest_mod

    p = Path(path)
    if p.is_dir():
        return manifest_mod.read(p)
    if not p.is_file():
        raise BadInputError(f"{p}: baseline manifest not found")
    return _read_manifest_file(p)


def _read_manifest_file(p: Path) -> dict:
    import jsonschema

    from deploykit import manifest as manifest_mod

    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        manifest_mod.check(doc)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{p}: not valid JSON ({exc})") from None
    except jsonschema.ValidationError as exc:
        where = "/".join(str(x) for x in exc.absolute_path) or "(top level)"
        raise BadInputError(f"{p}: does not match the manifest schema at {where}: {exc.message}") from None
    return doc

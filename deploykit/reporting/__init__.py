"""`deploykit report OUT`: the build's figures as report.json (the source of truth), report.md
(a pull-request comment / CI job summary, under 64 KB) and a self-contained report.html.

Everything is derived from `OUT/manifest.json`; rendering is deterministic (no clock, fixed plot
ids), so re-running `deploykit report OUT` reproduces the files the build wrote byte for byte and
`deploykit validate` checksums keep holding. With `--baseline OLD_MANIFEST`, deltas against the
previous build are added and regressions beyond the thresholds raise BudgetError (exit 3).
No TensorFlow here: reports are made in CI jobs that only have the output folder.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from deploykit.version import __version__
from deploykit import settings as loader
from deploykit.errors import BadInputError, BudgetError

REPORT_SCHEMA_VERSION = 1
FILES = ("report.json", "report.md", "report.html")
MD_LIMIT = 64 * 1024 - 1024  # GitHub's step summary and comment limits, with room to spare


@dataclass(frozen=True)
class Thresholds:
    """When a change against the baseline counts as a regression."""

    size_increase: float = 0.05  # bytes may grow by 5%
    latency_ratio: float = 1.25  # p50 and p99 may be 1.25x the baseline's ...
    latency_noise_ms: float = 0.05  # ... and differences under this many ms are noise
    parity_ratio: float = 2.0  # max_abs_rel / rmse may double ...
    parity_noise: float = 1e-6  # ... and absolute changes under this are noise
    agreement_drop: float = 0.005  # cosine / top1_agreement may drop by this much

    @classmethod
    def from_sources(cls, config: str | None = None, **flags: Any) -> "Thresholds":
        """Defaults < `[regression]` table of a TOML file < flags (None = not given)."""
        values: dict[str, Any] = {}
        if config:
            table = loader.read_toml(config).get("regression", {})
            try:  # unknown keys and wrong types in the file, named with the file
                loader.from_table(cls, table, "regression")
            except BadInputError as exc:
                raise BadInputError(f"{config}: {exc.message}") from None
            values.update(table)
        values.update({k: v for k, v in flags.items() if v is not None})
        th = loader.from_table(cls, values, "regression")
        for f in fields(th):
            v = getattr(th, f.name)
            if not v >= 0 or v == float("inf"):  # NaN compares false
                raise BadInputError(f"regression.{f.name}: must be a non-negative number (got {v!r})")
        return th


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
        "environment": manifest["environment"],
        "artifacts": [_artifact_row(a) for a in manifest["artifacts"]],
        "optimize": manifest.get("optimize"),
        "baseline": None,
    }
    if baseline is not None:
        doc["baseline"] = compare(manifest, baseline, thresholds or Thresholds())
    return doc


def _artifact_row(a: dict) -> dict:
    lat, par = a.get("latency") or {}, a["parity"]
    runtime = par.get("runtime") or lat.get("runtime")
    version = par.get("runtime_version") or lat.get("runtime_version")
    return {
        "target": a["target"],
        "variant": a["variant"],
        "runtime": f"{runtime} {version}" if runtime and version else runtime,
        "path": a["path"],
        "sha256": a["sha256"],
        "bytes": a["bytes"],
        "size_ratio_to_float32": a.get("size_ratio_to_float32"),
        "passed": a["passed"],
        "failures": [f["message"] for f in a["failures"]],
        "parity": {"passed": par["passed"], "samples": par["samples"], "outputs": par["outputs"]},
        "latency": {k: lat.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "min_ms", "throughput_per_s",
                                             "load_ms", "first_inference_ms", "iterations", "histogram")}
        if lat else None,
    }


# -- baseline comparison ---------------------------------------------------------------------------

_LOWER_IS_BETTER = ("max_abs_rel", "rmse")
_HIGHER_IS_BETTER = ("cosine", "top1_agreement")


def compare(new: dict, old: dict, th: Thresholds) -> dict:
    old_by = {(a["target"], a["variant"]): a for a in old["artifacts"]}
    new_keys = {(a["target"], a["variant"]) for a in new["artifacts"]}
    deltas, regressions = [], []
    for a in new["artifacts"]:
        key = (a["target"], a["variant"])
        b = old_by.get(key)
        if b is None:
            deltas.append({"target": key[0], "variant": key[1], "status": "new"})
            continue
        d = {"target": key[0], "variant": key[1], "status": "compared",
             "bytes_old": b["bytes"], "bytes_new": a["bytes"], "bytes_ratio": _ratio(a["bytes"], b["bytes"])}
        if d["bytes_ratio"] is not None and d["bytes_ratio"] > 1 + th.size_increase:
            regressions.append(_reg(key, "size", "bytes", b["bytes"], a["bytes"],
                                    f"size grew {d['bytes_ratio']:.3f}x (limit {1 + th.size_increase:.3f}x)"))
        lat_new, lat_old = a.get("latency") or {}, b.get("latency") or {}
        for m in ("p50_ms", "p99_ms"):
            n, o = lat_new.get(m), lat_old.get(m)
            d[f"{m}_old"], d[f"{m}_new"], d[f"{m}_ratio"] = o, n, _ratio(n, o)
            if n is not None and o is not None and n - o > th.latency_noise_ms and n > o * th.latency_ratio:
                regressions.append(_reg(key, "latency", m, o, n,
                                        f"{m} {o:.4f} -> {n:.4f} ms ({n / o:.2f}x, limit {th.latency_ratio:.2f}x)"))
        d["parity"] = {}
        for out_name, metrics in a["parity"]["outputs"].items():
            before = b["parity"]["outputs"].get(out_name, {})
            d["parity"][out_name] = {m: {"old": before.get(m), "new": metrics.get(m)}
                                     for m in (*_LOWER_IS_BETTER, *_HIGHER_IS_BETTER) if m in metrics}
            for m in _LOWER_IS_BETTER:
                n, o = metrics.get(m), before.get(m)
                if n is not None and o is not None and n - o > th.parity_noise and n > o * th.parity_ratio:
                    regressions.append(_reg(key, "parity", m, o, n, f"{out_name}: {m} {o:.3g} -> {n:.3g}"
                                            f" (limit {th.parity_ratio:g}x)", output=out_name))
            for m in _HIGHER_IS_BETTER:
                n, o = metrics.get(m), before.get(m)
                if n is not None and o is not None and o - n > th.agreement_drop:
                    regressions.append(_reg(key, "parity", m, o, n, f"{out_name}: {m} {o:.4f} -> {n:.4f}"
                                            f" (drop limit {th.agreement_drop:g})", output=out_name))
        if b["passed"] and not a["passed"]:
            regressions.append(_reg(key, "verdict", "passed", True, False, "passed before, fails now"))
        deltas.append(d)
    for key in old_by:
        if key not in new_keys:
            deltas.append({"target": key[0], "variant": key[1], "status": "removed"})
    return {"created_at": old["created_at"], "config_hash": old["config"]["hash"], "thresholds": asdict(th),
            "deltas": deltas, "regressions": regressions, "passed": not regressions}


def _ratio(new, old):
    return (new / old) if new is not None and old else None


def _reg(key, kind, metric, old, new, message, output=None) -> dict:
    r = {"target": key[0], "variant": key[1], "kind": kind, "metric": metric, "old": old, "new": new,
         "message": f"{key[0]}/{key[1]}: {message}"}
    if output is not None:
        r["output"] = output
    return r


# -- rendering ---------------------------------------------------------------------------------------

def render(doc: dict) -> dict[str, str]:
    """{file name: text} for report.json, report.md and report.html."""
    import jinja2

    from deploykit.reporting import plots

    env = jinja2.Environment(loader=jinja2.PackageLoader("deploykit.reporting", "templates"), autoescape=jinja2.select_autoescape(["html"]),
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters.update(num=_num, nbytes=_bytes, ratio=_ratio_text)
    env.globals.update(generic_tables=generic_tables, parity_summary=_parity_summary)
    md = env.get_template("report.md.j2").render(r=doc)
    if len(md.encode()) > MD_LIMIT:  # many artifacts: keep the table head and say where the rest is
        cut = md.encode()[:MD_LIMIT - 200].decode(errors="ignore").rsplit("\n", 1)[0]
        md = cut + "\n\n*(truncated to fit 64 KB: the full report is report.html / report.json)*\n"
    html = env.get_template("report.html.j2").render(r=doc, plots=plots.all_plots(doc))
    return {"report.json": json.dumps(doc, indent=2) + "\n", "report.md": md, "report.html": html}


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


# -- template helpers ----------------------------------------------------------------------------------

def _num(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:,.{digits}f}"
    return str(v)


def _bytes(v) -> str:
    if v is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if v < 1024 or unit == "GiB":
            return f"{v:,} B" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return str(v)


def _ratio_text(v) -> str:
    return "–" if v is None else f"{v:.3f}x"


def _parity_summary(row: dict) -> str:
    parts = []
    for name, m in row["parity"]["outputs"].items():
        bits = [f"{k} {_num(m[k], d)}" for k, d in (("max_abs_rel", 4), ("cosine", 6), ("top1_agreement", 4))
                if m.get(k) is not None]
        parts.append(f"{name}: " + ", ".join(bits))
    return "; ".join(parts) or "–"


def generic_tables(value: Any) -> list[tuple[str, list[str], list[list[str]]]]:
    """[(title, header, rows)] for any JSON value, for manifest sections whose shape the report does
    not own (e.g. `optimize`): a list of objects is a table; an object gives a key/value table of
    its plain fields plus one table per field holding a list (or an object) of objects."""
    def cell(v):
        if isinstance(v, (dict, list)):
            return json.dumps(v, sort_keys=True)[:200]
        return _num(v, 4)

    def rows_of(items: list[dict]):
        cols = list(dict.fromkeys(k for x in items for k in x))
        return cols, [[cell(x.get(c)) for c in cols] for x in items]

    def is_records(v):
        return isinstance(v, list) and v and all(isinstance(x, dict) for x in v)

    def is_keyed_records(v):
        return isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values())

    if is_records(value):
        return [("", *rows_of(value))]
    if is_keyed_records(value):
        cols, rows = rows_of([{"name": k, **x} for k, x in value.items()])
        return [("", cols, rows)]
    if not isinstance(value, dict):
        return [("", ["value"], [[cell(v)] for v in (value if isinstance(value, list) else [value])])]
    tables = []
    plain = [[str(k), cell(v)] for k, v in value.items() if not (is_records(v) or is_keyed_records(v))]
    if plain:
        tables.append(("", ["key", "value"], plain))
    for k, v in value.items():
        if is_records(v) or is_keyed_records(v):
            tables.extend((k, head, rows) for _, head, rows in generic_tables(v))
    return tables

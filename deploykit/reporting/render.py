"""report.json/.md/.html from a report document: Jinja2 templates (`templates/`), SVG plots
(`plots.py`) and the number formats they share. Deterministic: the same document renders the same
bytes."""
from __future__ import annotations

import json
from typing import Any

MD_LIMIT = 64 * 1024 - 1024  # GitHub's step summary and comment limits, with room to spare


def render(doc: dict) -> dict[str, str]:
    """{file name: text} for report.json, report.md and report.html."""
    import jinja2

    from deploykit.reporting import plots

    env = jinja2.Environment(loader=jinja2.PackageLoader("deploykit.reporting", "templates"), autoescape=jinja2.select_autoescape(["html.j2"]),
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters.update(num=_num, nbytes=_bytes, ratio=_ratio_text, interval=_interval)
    env.globals.update(generic_tables=generic_tables, parity_summary=_parity_summary, budget=budget_text,
                       over=over_budget, parity_change=parity_change,
                       judged_elsewhere=judged_elsewhere)
    v = verdict(doc)
    md = env.get_template("report.md.j2").render(r=doc, v=v)
    if len(md.encode()) > MD_LIMIT:  # many artifacts: keep the table head and say where the rest is
        cut = md.encode()[:MD_LIMIT - 200].decode(errors="ignore").rsplit("\n", 1)[0]
        md = cut + "\n\n*(truncated to fit 64 KB: the full report is report.html / report.json)*\n"
    html = env.get_template("report.html.j2").render(r=doc, v=v, plots=plots.all_plots(doc))
    return {"report.json": json.dumps(doc, indent=2) + "\n", "report.md": md, "report.html": html}


RANDOM_DATA_NOTICE = ("Parity data was generated at random: no --data was given, so every artifact was compared with "
                      "the reference on random inputs made from the model's signature (and quantized variants were "
                      "calibrated on them). The parity figures say little about real inputs; pass representative --data.")


def verdict(doc: dict) -> dict:
    """The answer to what was asked, for the head of the page: the comparison's when the report
    compares with a baseline (its exit code is the command's), else the build's.

    {asked, ok, word, summary, lines (what failed, one line each), secondary (the other verdict),
    notices (random parity data, data warnings, rejected variants)}."""
    arts, build_ok = doc["artifacts"], doc["build"]["passed"]
    passing = sum(a["passed"] for a in arts)
    build_line = f"{passing} of {len(arts)} artifact(s) pass their budgets"
    failed = [f"{a['target']}/{a['variant']}: {f}" for a in arts for f in a["failures"]] or \
        [f"{a['target']}/{a['variant']} failed" for a in arts if not a["passed"]]
    base = doc["baseline"]
    if base is not None:
        regs, unsure = base["regressions"], base.get("inconclusive", [])
        out = {"asked": "comparison", "ok": base["passed"], "word": "NO REGRESSION" if base["passed"] else "REGRESSION",
               "summary": (f"{len(regs)} regression(s)" if regs else "no regression")
               + f" against the baseline built {base['created_at']}"
               + (f"; {len(unsure)} latency change(s) inconclusive (within the noise)" if unsure else ""),
               "lines": [r["message"] for r in regs],
               "secondary": f"This build: {'PASS' if build_ok else 'FAIL'}, {build_line}."}
    else:
        out = {"asked": "build", "ok": build_ok, "word": "PASS" if build_ok else "FAIL", "summary": build_line,
               "lines": [] if build_ok else failed, "secondary": None}
    notices = []
    data = doc.get("data") or {}
    if data.get("origin") == "generated":
        notices.append({"id": "random-data", "text": RANDOM_DATA_NOTICE})
    for w in data.get("warnings", []):
        if data.get("origin") != "generated" or "random" not in w:  # the random-data warning is the notice above
            notices.append({"id": "data-warning", "text": f"Parity data: {w}"})
    rejected = doc.get("rejected") or []
    if rejected:
        names = ", ".join(f"{x['target']}/{x['variant']}" for x in rejected)
        notices.append({"id": "rejected", "text": f"{len(rejected)} variant(s) rejected and kept out of the output "
                                                  f"({names}): see Rejected below for why."})
    out["notices"] = notices
    return out


def budget_text(row: dict, metric: str) -> str:
    """"≤ 1e-05" / "≥ 0.99": the artifact's budget for `metric`, or "" when it has none."""
    from deploykit.validation.parity import BUDGET_METRICS

    limit = (row.get("budget") or {}).get(metric)
    if limit is None:
        return ""
    return ("≥ " if BUDGET_METRICS.get(metric) else "≤ ") + (_bytes(int(limit)) if metric == "bytes" else f"{limit:g}")


COLUMN_METRICS = ("max_abs_rel", "cosine", "top1_agreement")  # the parity columns of the tables


def judged_elsewhere(row: dict, metrics: dict) -> list[tuple[str, object]]:
    """(metric, value) of the output metrics the artifact has a budget for but the tables have no column for."""
    from deploykit.validation.parity import OUTPUT_METRICS

    return [(k, metrics.get(k)) for k in (row.get("budget") or {}) if k in OUTPUT_METRICS and k not in COLUMN_METRICS]


def over_budget(row: dict, metric: str, value) -> bool:
    from deploykit.validation.parity import BUDGET_METRICS

    limit = (row.get("budget") or {}).get(metric)
    if limit is None or value is None:
        return False
    return value < limit if BUDGET_METRICS.get(metric) else value > limit


def parity_change(m: dict, digits: int = 4) -> str:
    """One parity metric against the baseline: "old → new (+delta)"."""
    old, new, delta = m.get("old"), m.get("new"), m.get("delta")
    if old is None or new is None:
        return f"{_num(old, digits)} → {_num(new, digits)}"
    sign = "+" if delta > 0 else "−" if delta < 0 else "±"
    return f"{_num(old, digits)} → {_num(new, digits)} ({sign}{_num(abs(delta), 2)})"


def _interval(ci) -> str:
    return "–" if not ci else f"[{_num(ci[0], 4)}, {_num(ci[1], 4)}]"


def _num(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v == 0:
            return "0"  # an exact zero, not a rounded one
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
        bits = [f"{k} {_num(m[k], d)}" + (f" ({budget_text(row, k)})" if budget_text(row, k) else "")
                for k, d in ((*zip(COLUMN_METRICS, (4, 6, 4)), *((k, 4) for k, _ in judged_elsewhere(row, m))))
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

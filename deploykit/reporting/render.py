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

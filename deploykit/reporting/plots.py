"""The report's plots (matplotlib, Agg), as base64 SVG data URIs for a self-contained HTML page.

SVG output is made deterministic (no date, fixed element ids) so the same manifest always gives
the same report bytes.
"""
from __future__ import annotations

import base64
import io


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update({"svg.hashsalt": "deploykit", "svg.fonttype": "none", "font.size": 9})
    import matplotlib.pyplot as plt

    return plt


def _log(ax, which: str) -> None:
    """A log axis with plain tick labels ("0.001", "1e-06"): the default mathtext labels cost
    about a second per plot to lay out."""
    from matplotlib.ticker import FuncFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _label(row: dict) -> str:
    return f"{row['target']}/{row['variant']}"


def _encode(plt, fig) -> str:
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():  # crowded figures keep matplotlib's layout, without the noise
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()


def size_vs_p50(rows: list[dict]) -> str | None:
    pts = [(r["bytes"], r["latency"]["p50_ms"], _label(r)) for r in rows if r["latency"] and r["latency"].get("p50_ms")]
    if not pts:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for size, p50, label in pts:
        ax.scatter(size / 1024, p50, s=36)
        ax.annotate(label, (size / 1024, p50), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("artifact size (KiB)")
    p50s = [p for _, p, _ in pts]
    if max(p50s) / min(p50s) > 20:  # runtimes far apart (e.g. LiteRT vs TF.js): keep both readable
        _log(ax, "y")
    ax.set_ylabel("p50 latency (ms)" + (", log scale" if ax.get_yscale() == "log" else ""))
    ax.set_title("Size vs p50 latency per artifact")
    ax.grid(True, alpha=0.3)
    return _encode(plt, fig)


def latency_distribution(rows: list[dict]) -> str | None:
    """Per artifact: the recorded histogram of per-call times as a step line when the manifest
    has one, else its percentiles (min, p50, p90, p99, max) as a range."""
    measured = [r for r in rows if r["latency"] and r["latency"].get("p50_ms") is not None]
    if not measured:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    with_hist = [r for r in measured if r["latency"].get("histogram")]
    if with_hist:
        for r in with_hist:
            h = r["latency"]["histogram"]
            ax.stairs(h["counts"], h["edges_ms"], label=_label(r))
        _log(ax, "x")
        ax.set_xlabel("per-call latency (ms, log scale)")
        ax.set_ylabel("calls")
        ax.legend(fontsize=8 if len(with_hist) <= 8 else 6, ncol=1 if len(with_hist) <= 8 else 3)
    else:
        for i, r in enumerate(measured):
            lat = r["latency"]
            lo, hi = lat.get("min_ms") or lat["p50_ms"], lat.get("max_ms") or lat["p99_ms"]
            ax.plot([lo, hi], [i, i], color="0.7", linewidth=1)
            ax.plot([lat["p50_ms"], lat["p99_ms"]], [i, i], linewidth=6, solid_capstyle="butt")
            ax.scatter([lat["p50_ms"], lat["p90_ms"], lat["p99_ms"]], [i] * 3, color="k", s=10, zorder=3)
        ax.set_yticks(range(len(measured)), [_label(r) for r in measured])
        ax.set_xlabel("latency (ms): min..max, bar p50..p99, dots p50/p90/p99")
    ax.set_title("Latency distribution per artifact")
    ax.grid(True, alpha=0.3)
    return _encode(plt, fig)


def parity_error(rows: list[dict]) -> str | None:
    """max_abs_rel per artifact and output (log scale): how far each artifact is from the reference."""
    outputs = list(dict.fromkeys(o for r in rows for o in r["parity"]["outputs"]))
    if not outputs:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.9 + 0.45 * len(rows) * len(outputs)))
    height = 0.8 / len(outputs)
    floor = 1e-9  # exact matches still get a visible bar on a log axis
    for j, name in enumerate(outputs):
        values = [max((r["parity"]["outputs"].get(name) or {}).get("max_abs_rel") or 0.0, floor) for r in rows]
        ax.barh([i + j * height for i in range(len(rows))], values, height=height, label=name)
    ax.set_yticks([i + height * (len(outputs) - 1) / 2 for i in range(len(rows))], [_label(r) for r in rows])
    _log(ax, "x")
    ax.set_xlabel("max_abs_rel (max abs error / largest reference magnitude)")
    ax.set_title("Parity error per output")
    ax.legend(fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    return _encode(plt, fig)


MAX_ARTIFACTS = 40  # beyond this a plot is unreadable (and slow to draw): the tables have every row


def all_plots(doc: dict) -> list[dict]:
    rows = doc["artifacts"][:MAX_ARTIFACTS]
    more = f" (first {MAX_ARTIFACTS} of {len(doc['artifacts'])} artifacts)" if len(doc["artifacts"]) > MAX_ARTIFACTS else ""
    made = [("size-vs-p50", "Size vs p50", size_vs_p50(rows)),
            ("latency-distribution", "Latency distribution", latency_distribution(rows)),
            ("parity-error", "Parity error per output", parity_error(rows))]
    return [{"id": i, "title": t + more, "src": src} for i, t, src in made if src]

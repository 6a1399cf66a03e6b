"""The report's plots (matplotlib, Agg), as inline SVG for a self-contained HTML page.

SVG output is made deterministic (no date, fixed element ids) so the same manifest always gives
the same report bytes. Text stays text (`svg.fonttype: none`), so the page's reader (and the
rendered-page test) sees the labels as the browser lays them out.

Readability rules, each checked by tests/test_report_render.py:
- a log axis carries several labelled ticks (1-2-5 per decade on short ranges), and an axis whose
  data spans less than 10x is linear;
- point labels never overlap: they stand in a column beside the plot, in the order of their
  points, each joined to its point by a leader line;
- legends stand outside the data area;
- an exact zero (a parity error of 0) is a marked "0" at the axis, not a bar at some floor.
"""
from __future__ import annotations

import io
import math
import re

from markupsafe import Markup

FONT_PT = 9
LABEL_PT = 8
LABEL_GAP = 1.5  # label pitch, in label font heights: room for the browser's own font metrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update({"svg.hashsalt": "deploykit", "svg.fonttype": "none", "font.size": FONT_PT})
    import matplotlib.pyplot as plt

    return plt


def _scale(ax, which: str, lo: float, hi: float, *, force_log: bool = False) -> str:
    """Linear or log axis over [lo, hi] (positive data), with limits padded and several labelled
    ticks. Plain tick labels ("0.001", "1e-06"): mathtext labels cost about a second per plot."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    set_scale, set_lim = (ax.set_xscale, ax.set_xlim) if which == "x" else (ax.set_yscale, ax.set_ylim)
    if force_log or (lo > 0 and hi / lo > 10):
        lo, hi = lo / 1.5, hi * 1.5
        set_scale("log")
        set_lim(lo, hi)
        decades = math.log10(hi / lo)
        subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if decades <= 1.2 else (1.0, 2.0, 5.0) if decades <= 3 else \
            (1.0, 3.0) if decades <= 5 else (1.0,)
        axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=100))
        axis.set_minor_locator(LogLocator(base=10, subs=(), numticks=100))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())
        return "log"
    pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 1.0
    set_lim(max(lo - pad, 0) if lo >= 0 else lo - pad, hi + pad)
    axis.set_major_locator(MaxNLocator(nbins=6, min_n_ticks=3))
    return "linear"


def _label(row: dict) -> str:
    return f"{row['target']}/{row['variant']}"


def labelled_ticks(ax, which: str) -> list[str]:
    """The tick labels a reader sees on one axis (inside the view, not empty)."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    lo, hi = sorted(axis.get_view_interval())
    ticks = axis.get_major_locator()()
    fmt = axis.get_major_formatter()
    fmt.set_locs(ticks)
    return [t for t in (fmt(v, i) for i, v in enumerate(ticks) if lo <= v <= hi) if t]


# ---- the plots, as figures (tests inspect them) ---------------------------------------------------

def size_vs_p50_figure(rows: list[dict]):
    pts = [(r["bytes"] / 1024, r["latency"]["p50_ms"], _label(r)) for r in rows
           if r["latency"] and r["latency"].get("p50_ms") and r["bytes"]]
    if not pts:
        return None
    plt = _pyplot()
    line_pt = LABEL_PT * LABEL_GAP
    height = max(3.6, (len(pts) * line_pt + 90) / 72)  # the label column always fits beside the plot
    fig = plt.figure(figsize=(7.2, height))
    ax = fig.add_axes((0.1, 60 / 72 / height, 0.52, 1 - 95 / 72 / height))
    sizes, p50s = [p[0] for p in pts], [p[1] for p in pts]
    xs, ys = _scale(ax, "x", min(sizes), max(sizes)), _scale(ax, "y", min(p50s), max(p50s))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (size, p50, _) in enumerate(pts):
        ax.scatter(size, p50, s=36, color=colors[i % len(colors)], zorder=3)
    ax.set_xlabel("artifact size (KiB" + (", log scale)" if xs == "log" else ")"))
    ax.set_ylabel("p50 latency (ms" + (", log scale)" if ys == "log" else ")"))
    ax.set_title("Size vs p50 latency per artifact")
    ax.grid(True, alpha=0.3)
    # the label column: each label at its point's height, pushed apart to one pitch, top to bottom
    to_frac = ax.transData + ax.transAxes.inverted()
    wanted = [float(to_frac.transform((s, p))[1]) for s, p, _ in pts]
    gap = line_pt / (ax.get_position().height * height * 72)
    order = sorted(range(len(pts)), key=lambda i: (-wanted[i], pts[i][2]))
    placed = _spread([wanted[i] for i in order], gap)
    for rank, i in enumerate(order):
        size, p50, label = pts[i]
        ax.annotate(label, (size, p50), xytext=(1.05, placed[rank]), textcoords="axes fraction", fontsize=LABEL_PT,
                    va="center", ha="left", annotation_clip=False, gid=f"point-label-{i}",
                    arrowprops={"arrowstyle": "-", "color": colors[i % len(colors)], "lw": 0.7, "shrinkA": 2,
                                "shrinkB": 4})
    return fig


def _spread(wanted: list[float], gap: float) -> list[float]:
    """Positions (axes fractions, top first) as near to `wanted` (sorted high to low) as they can
    be while at least `gap` apart and inside [0, 1]."""
    pos: list[float] = []
    for w in wanted:  # top down: never closer than gap to the one above
        pos.append(min(w, 1.0, pos[-1] - gap) if pos else min(w, 1.0))
    low = 0.0
    for k in range(len(pos) - 1, -1, -1):  # bottom up: keep inside the axes
        pos[k] = max(pos[k], low)
        low = pos[k] + gap
    return pos


def latency_distribution_figure(rows: list[dict]):
    """Per artifact: the recorded histogram of per-call times as a step line when the manifest
    has one, else its percentiles (min, p50, p90, p99, max) as a range."""
    measured = [r for r in rows if r["latency"] and r["latency"].get("p50_ms") is not None]
    if not measured:
        return None
    plt = _pyplot()
    with_hist = [r for r in measured if r["latency"].get("histogram")]
    if with_hist:
        ncol = 1 if len(with_hist) <= 18 else 2
        fig = plt.figure(figsize=(7.2, max(3.6, 1.2 + 0.17 * math.ceil(len(with_hist) / ncol))),
                         layout="constrained")
        ax = fig.add_subplot()
        edges = [e for r in with_hist for e in r["latency"]["histogram"]["edges_ms"]]
        for r in with_hist:
            h = r["latency"]["histogram"]
            ax.stairs(h["counts"], h["edges_ms"], label=_label(r))
        lo = min(e for e in edges if e > 0) if any(e > 0 for e in edges) else 1e-3
        scale = _scale(ax, "x", lo, max(edges))
        ax.set_xlabel("per-call latency (ms" + (", log scale)" if scale == "log" else ")"))
        ax.set_ylabel("calls")
        fig.legend(loc="outside right upper", fontsize=7, ncol=ncol).set_gid("latency-legend")
    else:
        fig, ax = plt.subplots(figsize=(7.2, max(3.6, 1.0 + 0.3 * len(measured))), layout="constrained")
        for i, r in enumerate(measured):
            lat = r["latency"]
            lo, hi = lat.get("min_ms") or lat["p50_ms"], lat.get("max_ms") or lat["p99_ms"]
            ax.plot([lo, hi], [i, i], color="0.7", linewidth=1)
            ax.plot([lat["p50_ms"], lat["p99_ms"]], [i, i], linewidth=6, solid_capstyle="butt")
            ax.scatter([lat["p50_ms"], lat["p90_ms"], lat["p99_ms"]], [i] * 3, color="k", s=10, zorder=3)
        ax.set_yticks(range(len(measured)), [_label(r) for r in measured])
        values = [v for r in measured for v in (r["latency"].get("min_ms") or r["latency"]["p50_ms"],
                                                r["latency"].get("max_ms") or r["latency"]["p99_ms"]) if v]
        if values:
            _scale(ax, "x", min(values), max(values))
        ax.set_xlabel("latency (ms): min..max, bar p50..p99, dots p50/p90/p99")
    ax.patch.set_gid("latency-axes")
    ax.set_title("Latency distribution per artifact")
    ax.grid(True, alpha=0.3)
    return fig


def parity_error_figure(rows: list[dict]):
    """max_abs_rel per artifact and output (log scale): how far each artifact is from the
    reference. An exact match (0) gets a hollow marker labelled "0" at the axis, no bar."""
    outputs = list(dict.fromkeys(o for r in rows for o in r["parity"]["outputs"]))
    if not outputs:
        return None
    from matplotlib.transforms import blended_transform_factory

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 1.1 + 0.3 * len(rows) * len(outputs)), layout="constrained")
    height = 0.8 / len(outputs)
    values = {(i, j): (r["parity"]["outputs"].get(name) or {}).get("max_abs_rel")
              for i, r in enumerate(rows) for j, name in enumerate(outputs)}
    positive = [v for v in values.values() if v]
    _scale(ax, "x", min(positive) if positive else 1e-7, max(positive) if positive else 1e-5, force_log=True)
    at_axis = blended_transform_factory(ax.transAxes, ax.transData)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, name in enumerate(outputs):
        ys = [i + j * height for i in range(len(rows))]
        bars = [(y, values[i, j]) for i, y in enumerate(ys) if values[i, j]]
        drawn = ax.barh([y for y, _ in bars], [v for _, v in bars], height=height, color=colors[j % len(colors)],
                        label=name)
        for patch, i in zip(drawn.patches, (i for i, _ in enumerate(ys) if values[i, j])):
            patch.set_gid(f"parity-bar-{i}-{j}")
        for i, y in enumerate(ys):
            if values[i, j] == 0:
                ax.plot([0.012], [y], marker="o", markersize=6, markerfacecolor="white", clip_on=False,
                        markeredgecolor=colors[j % len(colors)], transform=at_axis, gid=f"parity-zero-{i}-{j}")
                ax.text(0.03, y, "0 (exact)", transform=at_axis, va="center", fontsize=LABEL_PT,
                        gid=f"parity-zero-label-{i}-{j}")
    ax.set_yticks([i + height * (len(outputs) - 1) / 2 for i in range(len(rows))], [_label(r) for r in rows])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel("max_abs_rel (max abs error / largest reference magnitude, log scale)")
    ax.set_title("Parity error per output" + (f" ({outputs[0]})" if len(outputs) == 1 else ""))
    if len(outputs) > 1:
        fig.legend(loc="outside right upper", fontsize=7).set_gid("parity-legend")
    ax.patch.set_gid("parity-axes")
    ax.grid(True, axis="x", alpha=0.3)
    return fig


# ---- SVG for the page --------------------------------------------------------------------------------

def _svg(plt, fig, plot_id: str, title: str) -> Markup:
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():  # crowded figures keep matplotlib's layout, without the noise
        warnings.simplefilter("ignore", UserWarning)
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    svg = buf.getvalue().decode()
    svg = svg[svg.index("<svg"):]  # inline in HTML: no XML declaration or DOCTYPE
    # matplotlib numbers its groups per figure (patch_1, ...): prefix them, ids stay unique in the page
    svg = re.sub(r'\bid="([a-z0-9]+_\d+)"', rf'id="{plot_id}-\1"', svg)
    title_el = f'<title>{Markup.escape(title)}</title>'
    svg = svg.replace("<svg ", f'<svg class="plot" role="img" aria-label="{Markup.escape(title)}" ', 1)
    svg = re.sub(r"(<svg [^>]*>)", lambda m: m.group(1) + title_el, svg, count=1)
    return Markup(svg.strip())


MAX_ARTIFACTS = 40  # beyond this a plot is unreadable (and slow to draw): the tables have every row


def all_plots(doc: dict) -> list[dict]:
    rows = doc["artifacts"][:MAX_ARTIFACTS]
    more = f" (first {MAX_ARTIFACTS} of {len(doc['artifacts'])} artifacts)" if len(doc["artifacts"]) > MAX_ARTIFACTS else ""
    made = []
    for plot_id, title, build in (("size-vs-p50", "Size vs p50", size_vs_p50_figure),
                                  ("latency-distribution", "Latency distribution", latency_distribution_figure),
                                  ("parity-error", "Parity error per output", parity_error_figure)):
        fig = build(rows)
        if fig is not None:
            made.append({"id": plot_id, "title": title + more, "svg": _svg(_pyplot(), fig, plot_id, title + more)})
    return made

"""`deploykit report OUT`: report.json/.md/.html from a build's manifest (no TensorFlow)."""
from __future__ import annotations

import os

import click

from deploykit.cli.exits import CONTEXT, EXIT_HELP
from deploykit.cli.exits import emit as _emit
from deploykit.cli.exits import run as _run


@click.command(epilog=EXIT_HELP, context_settings=CONTEXT)
@click.argument("out", metavar="OUT")
@click.option("--baseline", metavar="OLD_MANIFEST",
              help="A previous build's manifest.json (or its folder): add deltas, exit 3 on a regression.")
@click.option("--dest", metavar="DIR", help="Where to write report.* (default: OUT; with --baseline: OUT-report).")
@click.option("--config", "config_file", metavar="FILE.toml", help="Regression thresholds from its [regression] table.")
@click.option("--max-size-increase", type=float, metavar="FRACTION", help="Allowed size growth (default 0.05 = 5%).")
@click.option("--max-latency-ratio", type=float, metavar="RATIO",
              help="Allowed p50/p99 ratio new/old (default 1.25); beyond it, a regression only when the 95% "
                   "intervals are apart (else: inconclusive) ...")
@click.option("--latency-noise-ms", type=float, metavar="MS", help="... ignoring differences below this (default 0.05 ms).")
@click.option("--max-parity-ratio", type=float, metavar="RATIO", help="Allowed growth of max_abs_rel and rmse (default 2.0).")
@click.option("--max-agreement-drop", type=float, metavar="DELTA", help="Allowed drop of cosine and top1_agreement (default 0.005).")
@click.option("--json", "as_json", is_flag=True, help="Print report.json on stdout.")
@click.option("--debug", is_flag=True, help="Print tracebacks for internal errors.")
def report(out, baseline, dest, config_file, max_size_increase, max_latency_ratio, latency_noise_ms, max_parity_ratio,
           max_agreement_drop, as_json, debug):
    """Write OUT/report.json, report.md and report.html from the manifest (appends report.md to
    $GITHUB_STEP_SUMMARY when set). With --baseline, exit 3 when a regression exceeds the thresholds
    (latency: judged with bootstrap confidence intervals from the per-call histograms)."""

    def go():
        from deploykit.reporting import Thresholds, make

        th = Thresholds.from_sources(config_file, size_increase=max_size_increase, latency_ratio=max_latency_ratio,
                                     latency_noise_ms=latency_noise_ms, parity_ratio=max_parity_ratio,
                                     agreement_drop=max_agreement_drop)
        return make(out, baseline=baseline, thresholds=th, dest=dest, summary=os.environ.get("GITHUB_STEP_SUMMARY") or None)

    doc, folder = _run(as_json, debug, go)
    if as_json:
        _emit(True, doc)
    else:
        click.echo(f"wrote {folder}/report.json, report.md, report.html")

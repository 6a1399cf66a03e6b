"""`deploykit validate OUT`: re-validate an existing build (no TensorFlow needed)."""
from __future__ import annotations

import click

from deploykit.cli.exits import CONTEXT, EXIT_HELP, emit, run


@click.command(epilog=EXIT_HELP, context_settings=CONTEXT)
@click.argument("out", metavar="OUT")
@click.option("--latency", is_flag=True, help="Also re-measure latency.")
@click.option("--json", "as_json", is_flag=True, help="Print the validation report as JSON on stdout.")
@click.option("--debug", is_flag=True, help="Print tracebacks for internal errors.")
def validate(out, latency, as_json, debug):
    """Re-validate an existing build: checksums, then each artifact in its runtime (no TensorFlow needed)."""

    def go():
        from deploykit.validation.judge import revalidate

        return revalidate(out, latency=latency)

    report = run(as_json, debug, go)
    if as_json:
        emit(True, report)
    else:
        for a in report["artifacts"]:
            click.echo(f"PASS {a['target']}/{a['variant']}")

"""`deploykit targets`: the registered targets, read without importing TensorFlow."""
from __future__ import annotations

import click

from deploykit.cli.exits import CONTEXT, emit


@click.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print the targets as JSON.")
def targets(as_json):
    """List the targets, their variants, runtimes and default budgets (without importing TensorFlow)."""
    from deploykit.targets import broken, loadable

    described = [cls.describe() for cls in loadable().values()]
    for problem in broken().values():
        click.echo(f"deploykit: warning: {problem}", err=True)
    if as_json:
        emit(True, {"targets": described})
        return
    for t in described:
        click.echo(f"{t['name']:<8} {t['summary']}")
        click.echo(f"{'':<8} runtime: {t['runtime']}; variants: {', '.join(t['variants'])}")

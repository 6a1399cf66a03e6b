"""The `deploykit` command line: one module per command over the stages' Python API, and one
error/exit layer (`exits.py`). Results go to stdout (`--json` for scripts); logs and progress go
to stderr. Exit codes are `deploykit.errors.EXIT_CODES` (also in the README). TensorFlow is
imported only by commands that need it, inside the command.
"""
from __future__ import annotations

import click

from deploykit.cli.build import build
from deploykit.cli.exits import CONTEXT, EXIT_HELP, usage_error
from deploykit.cli.publish import publish
from deploykit.cli.report import report
from deploykit.cli.targets import targets
from deploykit.cli.train import train
from deploykit.cli.validate import validate
from deploykit.version import __version__


@click.group(epilog=EXIT_HELP, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="deploykit")
def cli() -> None:
    """Train a Keras model, take it to TFLite, TF.js and TF Serving artifacts, and prove each one
    in its own runtime against the reference model."""


for command in (build, validate, targets, train, report, publish):
    cli.add_command(command)


def main() -> None:
    """The console script. Click's own usage errors (`--jobs abc`, an unknown option) end like every
    other error: one `deploykit: error:` line, exit 2, and the JSON error object with `--json`."""
    import sys

    try:
        code = cli.main(prog_name="deploykit", standalone_mode=False)
    except click.ClickException as exc:
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            click.echo(exc.ctx.get_usage(), err=True)
            click.echo(f"Try '{exc.ctx.command_path} --help' for help.", err=True)
        usage_error(exc.format_message(), exc.exit_code, as_json="--json" in sys.argv[1:])
    except click.Abort:
        click.echo("deploykit: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)

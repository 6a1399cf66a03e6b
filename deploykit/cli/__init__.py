"""The `deploykit` command line: one module per command over the stages' Python API, and one
error/exit layer (`exits.py`). Results go to stdout (`--json` for scripts); logs and progress go
to stderr. Exit codes are `deploykit.errors.EXIT_CODES` (also in the README). TensorFlow is
imported only by commands that need it, inside the command.
"""
from __future__ import annotations

import click

from deploykit.cli.build import build
from deploykit.cli.exits import CONTEXT, epilog, usage_error
from deploykit.cli.publish import publish
from deploykit.cli.report import report
from deploykit.cli.targets import targets
from deploykit.cli.train import train
from deploykit.cli.validate import validate
from deploykit.version import __version__

EXAMPLES = (
    ("deploykit build --target tflite", "build and validate the bundled example (a small CNN on digits) for TFLite"),
    ("deploykit build --model model.keras --data val.npz --target all --out dist",
     "your model and parity data, every target (tflite, js, serving), into dist/"),
    ("deploykit validate dist", "re-check a build later, e.g. in another CI job (no TensorFlow needed)"),
    ("deploykit report dist --baseline previous/manifest.json", "compare with a previous build: exit 3 on a regression"),
    ("deploykit publish dist --to oci://ghcr.io/acme/digits:1.0", "ship the proven artifacts to a registry, verified"),
)


@click.group(epilog=epilog(*EXAMPLES), context_settings=CONTEXT)
@click.version_option(__version__, prog_name="deploykit")
def cli() -> None:
    """Train a Keras model, take it to TFLite, TF.js and TF Serving artifacts, and prove each one
    in its own runtime against the reference model."""


for command in (build, validate, targets, train, report, publish):
    cli.add_command(command)


def parse(argv: list[str]) -> click.Context:
    """Parse a command line as `deploykit` would, without running it: the command's context, with
    its parameters converted and checked (an unknown option, a missing value or a bad choice raises
    click's UsageError). `--help` and `--version` raise click.exceptions.Exit. For the tests that
    keep the help's and the README's examples true."""
    if not argv or argv[0].startswith("-"):
        return cli.make_context("deploykit", list(argv))
    root = click.Context(cli, info_name="deploykit")
    name, command, rest = cli.resolve_command(root, list(argv))
    return command.make_context(name, rest, parent=root)


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

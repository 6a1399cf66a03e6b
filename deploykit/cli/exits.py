"""The CLI's one error and exit layer: every command runs its work through `run`, which turns each
`DeployKitError` into its documented exit code and one `deploykit: error:` line (plus the JSON
error object with `--json`), interrupts into 130/143, and anything else into exit 1. Stages never
import this module; they raise `deploykit.errors` exceptions."""
from __future__ import annotations

import json
import signal
import sys
import traceback

import click

from deploykit.cli.nativelog import native_logs_to_file, tail
from deploykit.errors import EXIT_CODES, BudgetError, DeployKitError

INTERRUPTED = {130: "interrupted (SIGINT)", 143: "terminated (SIGTERM)"}  # exits.run; no DeployKitError
EXIT_HELP = "\b\nExit codes:\n" + "\n".join(f"  {code:>3}  {text}"
                                            for code, text in {**EXIT_CODES, **INTERRUPTED}.items())
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def epilog(*examples: tuple[str, str]) -> str:
    """Help text after the options: (command, what it does) examples, then the exit codes. Each
    example is a real command line (tests parse every one against the CLI)."""
    lines = ["\b", "Examples:"]
    for command, what in examples:
        lines += [f"  # {what}", f"  {command}"]
    return "\n".join(lines) + "\n\n" + EXIT_HELP


def emit(as_json: bool, payload: dict) -> None:
    if as_json:
        click.echo(json.dumps(payload, indent=2))


def run(as_json: bool, debug: bool, fn):
    """Run `fn` with native log noise sent to a file (unless --debug), turning every failure into
    its documented exit code and a one-line message."""
    if debug:
        return _handle(as_json, debug, fn, None)
    with native_logs_to_file() as log:
        return _handle(as_json, debug, fn, log)


def usage_error(message: str, exit_code: int = 2, *, as_json: bool = False) -> None:
    """A command line click could not parse: the same one-line error as every other failure."""
    click.echo(f"deploykit: error: {message}", err=True)
    if as_json:
        click.echo(json.dumps({"error": {"code": "bad_input", "exit_code": exit_code, "message": message}}, indent=2))
    sys.exit(exit_code)


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so staging folders are cleaned on the way out."""


def _on_sigterm(signum, frame):
    from deploykit.runner import stop

    stop()  # kill running runtime children and cancel queued ones, so the exit is prompt
    raise _Terminated()


def _on_sigint(signum, frame):
    from deploykit.runner import stop

    stop()
    raise KeyboardInterrupt()


def _handle(as_json: bool, debug: bool, fn, log: str | None):
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        return fn()
    except DeployKitError as exc:
        click.echo(f"deploykit: error: {exc.message}", err=True)
        if as_json:
            body = exc.to_json()
            if isinstance(exc, BudgetError) and exc.manifest is not None:
                body["manifest"] = exc.manifest
            click.echo(json.dumps(body, indent=2))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("deploykit: interrupted; the output folder was left unchanged", err=True)
        sys.exit(130)
    except _Terminated:
        click.echo("deploykit: terminated; the output folder was left unchanged", err=True)
        sys.exit(143)
    except Exception as exc:  # a bug: say so, and show the traceback on request
        if debug:
            traceback.print_exc()
        elif log and tail(log):
            click.echo(f"--- last native log lines ---\n{tail(log)}--- end ---", err=True)
        click.echo(f"deploykit: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
        if as_json:
            click.echo(json.dumps({"error": {"code": "internal_error", "exit_code": 1, "message": str(exc)}}))
        sys.exit(1)

"""`deploykit publish OUT --to DEST`: ship a proven build to a folder or an OCI registry (no TensorFlow)."""
from __future__ import annotations

import click

from deploykit.cli.exits import CONTEXT, EXIT_HELP
from deploykit.cli.exits import emit as _emit
from deploykit.cli.exits import run as _run


@click.command(epilog=EXIT_HELP, context_settings=CONTEXT)
@click.argument("out", metavar="OUT")
@click.option("--to", "dest", required=True, metavar="DEST",
              help="A folder, or oci://HOST[:PORT]/REPO:TAG (HTTPS) / oci+http://HOST[:PORT]/REPO:TAG (plain HTTP).")
@click.option("--force", is_flag=True, help="Replace a version already published with different content.")
@click.option("--json", "as_json", is_flag=True, help="Print what was published as JSON on stdout.")
@click.option("--debug", is_flag=True, help="Print tracebacks for internal errors.")
def publish(out, dest, force, as_json, debug):
    """Publish a build's proven artifacts to a folder or an OCI registry, then pull back and verify
    every checksum. Registry credentials: DEPLOYKIT_REGISTRY_USERNAME / DEPLOYKIT_REGISTRY_PASSWORD."""

    def go():
        from deploykit.publishing import publish as run

        return run(out, dest, force=force)

    result = _run(as_json, debug, go)
    if as_json:
        _emit(True, result)
        return
    click.echo(f"{result['status']}: {result['destination']} ({len(result.get('pushed') or result.get('artifacts'))} artifact(s), verified)")
    for p in result.get("pushed", []):
        click.echo(f"  {p['artifact']}: {p.get('reference', 'skipped')}")
    for note in result.get("notes", []):
        click.echo(f"  note: {note}")

"""`deploykit train`: run the fit stage (`deploykit.fit.train`).

TensorFlow is imported only when the command runs, so `deploykit --help` stays fast.
"""
from __future__ import annotations

import json

import click

from deploykit.cli.exits import CONTEXT, EXIT_HELP
from deploykit.cli.exits import run as _run


@click.command("train", epilog=EXIT_HELP, context_settings=CONTEXT)
@click.option("--config", "config_file", metavar="FILE", help="Training settings (TOML or YAML). Default: the bundled example.")
@click.option("--out", metavar="RUN_DIR", default="deploykit-run", show_default=True,
              help="Run folder: model.keras, saved_model/, validation.npz, metrics.json, checkpoints, backup, "
                   "TensorBoard logs. `deploykit build --model RUN_DIR` builds it.")
@click.option("--local-workers", type=int, default=0, metavar="N",
              help="Run the job as N local worker processes (multi_worker, or parameter_server if configured).")
@click.option("--max-restarts", type=int, default=0, metavar="N",
              help="With --local-workers: restart the job up to N times after a worker dies (resumes from the backup).")
@click.option("--strategy", type=click.Choice(["none", "one_device", "mirrored", "multi_worker", "parameter_server"]),
              help="Override the config's strategy.")
@click.option("--epochs", type=int, metavar="N", help="Override the config's epochs.")
@click.option("--emit-k8s", metavar="DIR", help="Write Kubeflow TFJob manifests for this job to DIR instead of training.")
@click.option("--json", "as_json", is_flag=True, help="Print the run metrics (or the error) as JSON on stdout.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
@click.option("--debug", is_flag=True, help="Print tracebacks for internal errors and TensorFlow's native logs.")
def train(config_file, out, local_workers, max_restarts, strategy, epochs, emit_k8s, as_json, quiet, debug):
    """Train a model under a tf.distribute strategy; export model.keras, a SavedModel and metrics.json."""
    def go():
        from deploykit.fit.api import train as run_train
        from deploykit.progress import Reporter

        return run_train(config_file, out, local_workers=local_workers, max_restarts=max_restarts, emit_k8s=emit_k8s,
                         reporter=Reporter(quiet=quiet), strategy=strategy, epochs=epochs)

    result = _run(as_json, debug, go)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    elif result.get("role") == "worker":
        click.echo(f"worker finished; the chief writes {out}")
    elif "manifests" in result:
        for path in result["manifests"]:
            click.echo(path)
    else:
        final = " ".join(f"{k}={v:.4f}" for k, v in result.get("final_validation", {}).items())
        click.echo(f"trained {result.get('epochs_completed')} epoch(s), {result.get('strategy')} x{result.get('replicas')}: "
                   f"{final}; {result.get('examples_per_sec')} examples/s -> {out}")

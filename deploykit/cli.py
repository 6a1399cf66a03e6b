"""The `deploykit` command line: a thin layer over `deploykit.build` and `deploykit.validate`.

Results go to stdout (`--json` for scripts); logs and progress go to stderr. Exit codes are listed
in `deploykit.errors.EXIT_CODES` and the README. TensorFlow is imported only by commands that need it.
"""
from __future__ import annotations

import json
import signal
import sys
import traceback

import click

from . import __version__
from .errors import EXIT_CODES, BudgetError, DeployKitError
from .nativelog import native_logs_to_file, tail

EXIT_HELP = "\b\nExit codes:\n" + "\n".join(f"  {code:>2}  {text}" for code, text in EXIT_CODES.items())


@click.group(epilog=EXIT_HELP, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="deploykit")
def cli() -> None:
    """Train a Keras model, take it to TFLite, TF.js and TF Serving artifacts, and prove each one
    in its own runtime against the reference model."""


def _emit(as_json: bool, payload: dict) -> None:
    if as_json:
        click.echo(json.dumps(payload, indent=2))


def _run(as_json: bool, debug: bool, fn):
    """Run `fn` with native log noise sent to a file (unless --debug), turning every failure into
    its documented exit code and a one-line message."""
    if debug:
        return _handle(as_json, debug, fn, None)
    with native_logs_to_file() as log:
        return _handle(as_json, debug, fn, log)


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so staging folders are cleaned on the way out."""


def _on_sigterm(signum, frame):
    from .runner import stop

    stop()  # kill running runtime children and cancel queued ones, so the exit is prompt
    raise _Terminated()


def _on_sigint(signum, frame):
    from .runner import stop

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


def _csv(value):
    if not value:
        return None
    items = []
    for v in value:
        items.extend(s.strip() for s in v.split(",") if s.strip())
    return tuple(items)


@cli.command(epilog=EXIT_HELP)
@click.option("--model", metavar="PATH|module:function",
              help="A .keras or .h5 file, a SavedModel folder, or module:function returning a tf_keras model. "
                   "Default: the bundled example (a small CNN on scikit-learn's digits).")
@click.option("--data", metavar="FILE.npz", help="One array per input name: parity data and int8 calibration set.")
@click.option("--train-config", metavar="FILE", help="Train with the fit stage (TOML/YAML, as `deploykit train --config`), then build the trained model.")
@click.option("--target", "targets", multiple=True, metavar="NAME", help="Target(s) to build, or 'all'. Repeatable. Default: tflite.")
@click.option("--quantize", multiple=True, metavar="LIST",
              help="Variants to build, comma-separated: float32,float16,dynamic,int8,int16x8. Default: all.")
@click.option("--out", metavar="DIR", help="Output folder (default: deploykit-out). Replaced only by a build that passes.")
@click.option("--config", "config_file", metavar="FILE.toml", help="Settings file (budgets, latency, ...); flags override it.")
@click.option("--allow-unsafe-deserialization", is_flag=True, default=None,
              help="Load models that carry code (e.g. Lambda layers). Only for files you trust.")
@click.option("--allow-select-tf-ops", is_flag=True, default=None,
              help="Allow TensorFlow ops outside the TFLite builtins (the artifact then needs the Flex delegate).")
@click.option("--no-latency", is_flag=True, help="Skip latency benchmarks (parity still runs).")
@click.option("--jobs", type=int, metavar="N", help="Conversions and parity runs side by side (default: 2).")
@click.option("--prune", type=float, metavar="SPARSITY", help="Prune to this sparsity (e.g. 0.8) with fine-tuning; see [optimize].")
@click.option("--qat", is_flag=True, default=None, help="Quantization-aware training before conversion (int8 variants use it).")
@click.option("--cluster", type=int, metavar="N", help="Cluster each kernel's weights to N values with fine-tuning.")
@click.option("--base-image", metavar="IMAGE", help="serving: FROM image, NAME[:TAG] or NAME@sha256:DIGEST (default: tensorflow/serving:2.19.0).")
@click.option("--push", metavar="REGISTRY/REPO:TAG", help="serving: push the image there once every check passed (digest in the manifest).")
@click.option("--no-container", is_flag=True, help="serving: skip the image and the container check (in-process check only).")
@click.option("--js-format", type=click.Choice(["graph", "layers"]), help="TF.js bundle format (default: graph).")
@click.option("--js-shard-bytes", type=int, metavar="N", help="TF.js weight shard size in bytes (default: 4194304).")
@click.option("--js-backends", metavar="LIST",
              help="TF.js backends to validate on: cpu,wasm,chromium-wasm,chromium-webgl (default: cpu,wasm,chromium-wasm).")
@click.option("--js-quantize", metavar="LIST|auto",
              help="TF.js variants (float32,float16,uint16,uint8), or auto: keep the smallest that passes its budget.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest (or the error) as JSON on stdout.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr (warnings and errors still print).")
@click.option("--debug", is_flag=True, help="Print tracebacks for internal errors and TensorFlow's native logs.")
def build(model, data, train_config, targets, quantize, out, config_file, allow_unsafe_deserialization, allow_select_tf_ops,
          no_latency, jobs, base_image, push, no_container, as_json, quiet, debug, js_format, js_shard_bytes, js_backends,
          js_quantize, prune, qat, cluster):
    """Build artifacts for the target(s), validate each in its runtime, write OUT/manifest.json."""

    def go():
        from .config import LatencySettings, load_config_file, make_config
        from .pipeline import run
        from .progress import for_terminal

        file_settings = load_config_file(config_file) if config_file else {}
        if no_latency:
            file_settings["latency"] = {**file_settings.get("latency", {}), "enabled": False}
            LatencySettings(**file_settings["latency"])  # unknown keys fail here, named
        opt = {"prune": prune, "qat": qat, "cluster": cluster}
        if any(v is not None for v in opt.values()):  # --prune/--qat/--cluster override the [optimize] table
            file_settings["optimize"] = {**file_settings.get("optimize", {}), **{k: v for k, v in opt.items() if v is not None}}
        js = {"format": js_format, "shard_bytes": js_shard_bytes, "backends": js_backends, "quantize": js_quantize}
        if any(v is not None for v in js.values()):  # --js-* flags override the [js] table key by key
            file_settings["js"] = {**file_settings.get("js", {}), **{k: v for k, v in js.items() if v is not None}}
        cfg = make_config(
            file_settings, model=model, data=data, train_config=train_config, targets=_csv(targets), quantize=_csv(quantize), out=out,
            allow_unsafe_deserialization=allow_unsafe_deserialization, allow_select_tf_ops=allow_select_tf_ops, jobs=jobs,
            base_image=base_image, push=push, container=False if no_container else None,
        )
        return run(cfg, for_terminal(quiet))

    manifest = _run(as_json, debug, go)
    _emit(as_json, manifest)


@cli.command(epilog=EXIT_HELP)
@click.argument("out", metavar="OUT")
@click.option("--latency", is_flag=True, help="Also re-measure latency.")
@click.option("--json", "as_json", is_flag=True, help="Print the validation report as JSON on stdout.")
@click.option("--debug", is_flag=True, help="Print tracebacks for internal errors.")
def validate(out, latency, as_json, debug):
    """Re-validate an existing build: checksums, then each artifact in its runtime (no TensorFlow needed)."""

    def go():
        from .verify import revalidate

        return revalidate(out, latency=latency)

    report = _run(as_json, debug, go)
    if as_json:
        _emit(True, report)
    else:
        for a in report["artifacts"]:
            click.echo(f"PASS {a['target']}/{a['variant']}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the targets as JSON.")
def targets(as_json):
    """List the targets, their variants, runtimes and default budgets (without importing TensorFlow)."""
    from .targets import REGISTRY, target_class

    described = [target_class(name).describe() for name in REGISTRY]
    if as_json:
        _emit(True, {"targets": described})
        return
    for t in described:
        click.echo(f"{t['name']:<8} {t['summary']}")
        click.echo(f"{'':<8} runtime: {t['runtime']}; variants: {', '.join(t['variants'])}")


def _register_train() -> None:
    from .fit.command import train

    cli.add_command(train)


_register_train()


def _register_report_publish() -> None:
    from .cli_publish import publish, report

    cli.add_command(report)
    cli.add_command(publish)


_register_report_publish()


def main() -> None:
    cli(prog_name="deploykit")

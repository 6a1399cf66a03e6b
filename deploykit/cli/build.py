"""`deploykit build`: flags into a `BuildConfig`, then `pipeline.run`.

The core options are declared here; each target adds its own (`Target.options`), read from the
registry without importing TensorFlow, and their values go into that target's settings table.
"""
from __future__ import annotations

import click

from deploykit.cli.exits import CONTEXT, emit, epilog, run
from deploykit.targets import loadable


def _csv(value):
    if not value:
        return None
    items = []
    for v in value:
        items.extend(s.strip() for s in v.split(",") if s.strip())
    return tuple(items)


def _target_option(target: str, opt):
    """A click option for one `targets.base.Option`; its parameter is named `TARGET__KEY`."""
    dest = f"{target}__{opt.key}"
    if opt.kind == "flag":
        return click.option(opt.flag, dest, flag_value=opt.flag_value, default=None, help=opt.help)
    kind = click.Choice(list(opt.choices)) if opt.kind == "choice" else opt.type
    return click.option(opt.flag, dest, type=kind, metavar=opt.metavar, help=opt.help)


def _with_target_options(fn):
    for name, cls in reversed(list(loadable().items())):  # click applies decorators bottom-up
        for opt in reversed(cls.options):
            fn = _target_option(name, opt)(fn)
    return fn


EXAMPLES = (
    ("deploykit build --target tflite --quantize float32,int8",
     "the bundled example (a small CNN on digits): two TFLite variants, into deploykit-out/"),
    ("deploykit build --model model.keras --data val.npz --target tflite --target js --out dist",
     "your model and parity data: TFLite and TF.js, into dist/"),
    ("deploykit build --model saved_model/ --target serving --model-name digits --model-base-path /srv/models/digits",
     "a SavedModel for TF Serving: the next version beside those in /srv/models/digits, added there once it passed"),
    ("deploykit build --model model.keras --budget tflite.int8.cosine=0.98 --no-latency --json",
     "a looser int8 budget, no latency runs, the manifest as JSON on stdout"),
    ("deploykit build --config dk.toml --target all",
     "settings from a file (budgets, latency, [js], [serving], ...), every target"),
)


@click.command(epilog=epilog(*EXAMPLES), context_settings=CONTEXT)
@click.option("--model", metavar="PATH|module:function",
              help="A .keras or .h5 file, a SavedModel folder, module:function returning a tf_keras model, or a "
                   "`deploykit train` run folder (its model.keras, with its validation.npz as the data unless --data). "
                   "Default: the bundled example (a small CNN on scikit-learn's digits).")
@click.option("--data", metavar="FILE.npz", help="One array per input name: parity data and int8 calibration set.")
@click.option("--train-config", metavar="FILE", help="Train with the fit stage (TOML/YAML, as `deploykit train --config`), then build the trained model.")
@click.option("--target", "targets", multiple=True, metavar="NAME",
              help=f"Target(s) to build ({', '.join(loadable())}), or 'all'. Repeatable. Default: "
                   f"{', '.join(n for n, cls in loadable().items() if cls.default)}.")
@click.option("--quantize", multiple=True, metavar="LIST",
              help="Variants to build, comma-separated (" + "; ".join(
                  f"{n}: {','.join(cls.variants)}" for n, cls in loadable().items()) + "). Default: all.")
@click.option("--out", metavar="DIR", help="Output folder (default: deploykit-out). Replaced only by a build that passes.")
@click.option("--config", "config_file", metavar="FILE.toml", help="Settings file (budgets, latency, ...); flags override it.")
@click.option("--allow-unsafe-deserialization", is_flag=True, default=None,
              help="Load models that carry code (e.g. Lambda layers); they still load in the sandbox. Only for files you trust.")
@click.option("--trust-model", is_flag=True, default=None,
              help="Load and convert the model without the sandbox (bubblewrap), in plain worker processes. "
                   "Needed where the sandbox cannot start; only for models you trust.")
@click.option("--budget", "budget_specs", multiple=True, metavar="TARGET.VARIANT.METRIC=VALUE",
              help="Override one budget (repeatable; * for every target or variant), e.g. tflite.int8.cosine=0.98. "
                   "Merged over --config's [budgets] and the defaults; recorded in the manifest.")
@click.option("--no-latency", is_flag=True, help="Skip latency benchmarks (parity still runs).")
@click.option("--jobs", type=int, metavar="N", help="Conversions and parity runs side by side (default: 2).")
@click.option("--prune", type=float, metavar="SPARSITY", help="Prune to this sparsity (e.g. 0.8) with fine-tuning; see [optimize].")
@click.option("--qat", is_flag=True, default=None, help="Quantization-aware training before conversion (int8 variants use it).")
@click.option("--cluster", type=int, metavar="N", help="Cluster each kernel's weights to N values with fine-tuning.")
@_with_target_options
@click.option("--json", "as_json", is_flag=True, help="Print the manifest (or the error) as JSON on stdout.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr (warnings and errors still print).")
@click.option("--debug", is_flag=True, help="Print tracebacks for internal errors and TensorFlow's native logs.")
def build(model, data, train_config, targets, quantize, out, config_file, allow_unsafe_deserialization, trust_model,
          budget_specs, no_latency, jobs, prune, qat, cluster, as_json, quiet, debug, **target_flags):
    """Build artifacts for the target(s), validate each in its runtime, write OUT/manifest.json."""

    def go():
        from deploykit.config import budget_flags, load_config_file, make_config
        from deploykit.pipeline import run as run_build
        from deploykit.progress import for_terminal

        file_settings = load_config_file(config_file) if config_file else {}
        tables: dict[str, dict] = {}  # flags override their table in the file key by key (make_config merges)
        if no_latency:
            tables["latency"] = {"enabled": False}
        if budget_specs:  # merged into the file's budgets metric by metric
            file_settings["budgets"] = budget_flags(budget_specs, file_settings.get("budgets"))
        opt = {k: v for k, v in {"prune": prune, "qat": qat, "cluster": cluster}.items() if v is not None}
        if opt:
            tables["optimize"] = opt
        for dest, value in target_flags.items():  # --js-format etc.: the target's table
            if value is not None:
                name, key = dest.split("__", 1)
                tables.setdefault(name, {})[key] = value
        cfg = make_config(
            file_settings, model=model, data=data, train_config=train_config, targets=_csv(targets), quantize=_csv(quantize),
            out=out, allow_unsafe_deserialization=allow_unsafe_deserialization, trust_model=trust_model,
            jobs=jobs, **tables,
        )
        return run_build(cfg, for_terminal(quiet))

    emit(as_json, run(as_json, debug, go))

"""The model ladder: deploykit build time, sizes, parity and p50 from tiny to large models, side by
side with the official converter CLIs converting the same artifacts from the same SavedModel.

    .venv/bin/python benchmarks/ladder.py [--quick] [--models example,text,...] [--targets tflite,js]
                                          [--out benchmarks/results] [--js-backends cpu,wasm] [--profile]

For each model (built in code, random seeded weights, nothing downloaded) the suite saves one
SavedModel and one .npz of inputs, then:
  1. ladder: one in-process `deploykit.build(targets=(name,))` per target, every variant, validation
     (parity and latency) included;
  2. side by side: `tflite_convert` once (float32: the TF2 CLI has no quantization flags) and
     `tensorflowjs_converter` once per TF.js variant (float32, float16, uint16, uint8), one process per
     artifact, one after another, against deploykit building the same five artifacts (a float32-only
     tflite build plus the js build of step 1), each deploykit build charged one TensorFlow import.
Prints the tables, the ratio deploykit-wall / CLI-wall and seconds per million parameters; writes
ladder.json and ladder.md into --out.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # deploykit and benchmarks.models, whatever the working folder
VENV_BIN = Path(sys.executable).parent

RANDOM_NOTE = "random weights and random inputs: sizes and times stand, parity does not predict accuracy"
# name -> factory (benchmarks.models), rows of generated data, parity rows, note
MODELS = {
    "example": {"rows": None, "parity": 500, "note": "bundled digits CNN, trained here; data: digits validation split"},
    "text": {"rows": 64, "parity": 64, "note": "Embedding(10k, 64) + LSTM(128) + softmax(4), 64 tokens; " + RANDOM_NOTE},
    "transformer": {"rows": 64, "parity": 64,
                    "note": "Embedding(8k, 128) + one encoder block (4-head attention, FFN 512), 64 tokens; " + RANDOM_NOTE},
    "mobilenetv2": {"rows": 16, "parity": 16, "note": "MobileNetV2 224x224, weights=None, BN re-estimated; " + RANDOM_NOTE},
    "resnet50": {"rows": 8, "parity": 8, "note": "ResNet50 224x224, weights=None, BN re-estimated; " + RANDOM_NOTE},
}
QUICK = ("example", "mobilenetv2")
JS_CLI_FLAGS = {"float32": [], "float16": ["--quantize_float16=*"], "uint16": ["--quantize_uint16=*"],
                "uint8": ["--quantize_uint8=*"]}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated, tiny to large: " + ", ".join(MODELS))
    p.add_argument("--quick", action="store_true", help="only " + " and ".join(QUICK) + " (a few minutes)")
    p.add_argument("--targets", default=None,
                   help="comma-separated deploykit targets (default: tflite,js, plus serving when it is registered)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="where ladder.json and ladder.md go")
    p.add_argument("--js-backends", default=os.environ.get("DEPLOYKIT_JS_BACKENDS", "cpu,wasm"),
                   help="DEPLOYKIT_JS_BACKENDS for the js builds (default cpu,wasm: no browser check)")
    p.add_argument("--warmup", type=int, default=5, help="latency: untimed calls per artifact (default 5)")
    p.add_argument("--iterations", type=int, default=200, help="latency: timed calls per artifact (default 200)")
    p.add_argument("--max-seconds", type=float, default=2.0, help="latency: time limit per artifact (default 2)")
    p.add_argument("--no-cli", action="store_true", help="skip the side-by-side with the official CLIs")
    p.add_argument("--merge", nargs="+", metavar="LADDER_JSON",
                   help="no building: combine ladder.json files of earlier runs (e.g. a heavy model run on its own) "
                        "into one ladder.json/ladder.md in --out")
    p.add_argument("--profile", action="store_true", help="cProfile every deploykit build; top functions printed, .prof files in --out")
    args = p.parse_args(argv)
    args.models = list(QUICK) if args.quick else [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown or not args.models:
        p.error(f"--models: unknown {', '.join(unknown) or '(none given)'} (known: {', '.join(MODELS)})")
    from deploykit.targets import REGISTRY

    if args.targets is None:
        args.targets = ["tflite", "js"] + (["serving"] if "serving" in REGISTRY else [])
    else:
        args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.out = Path(args.out)
    return args


def log(message: str) -> None:
    print(f"[ladder {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- the models ---------------------------------------------------------------------------------
def train_example(epochs: int = 12, seed: int = 0):
    """The bundled digits CNN trained as `deploykit build` trains it (Adam 2e-3, batch 32, 12 epochs);
    returns (model, validation inputs by name, validation accuracy)."""
    from deploykit.intake import example
    from deploykit.tfenv import tf_keras

    keras = tf_keras()
    keras.utils.set_random_seed(seed)
    x_train, y_train, x_valid, y_valid = example.digits(seed)
    model = example.build_model()
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    return model, {example.INPUT_NAME: x_valid}, float(model.evaluate(x_valid, y_valid, verbose=0)[1])


def make_model(name: str, folder: Path) -> dict:
    """Build the model in code, save it as a SavedModel and its inputs as .npz; return the facts."""
    import numpy as np

    from benchmarks import models as bm

    spec = MODELS[name]
    if name == "example":
        keras_model, inputs, accuracy = train_example()
        note = f"{spec['note']} (validation accuracy {accuracy:.3f})"
    else:
        factory, data = {
            "text": (bm.text_lstm, lambda n: bm.token_data(n, bm.TEXT_VOCAB, bm.TEXT_LEN)),
            "transformer": (bm.transformer_block, lambda n: bm.token_data(n, bm.TRANSFORMER_VOCAB, bm.TRANSFORMER_LEN)),
            "mobilenetv2": (bm.mobilenetv2, bm.mobilenetv2_data),
            "resnet50": (bm.resnet50, bm.mobilenetv2_data),
        }[name]
        keras_model, inputs, note = factory(), data(spec["rows"]), spec["note"]
    saved_model, npz = folder / "saved_model", folder / "inputs.npz"
    keras_model.save(str(saved_model), save_format="tf")
    np.savez(npz, **inputs)
    return {"name": name, "params": int(keras_model.count_params()), "saved_model": saved_model, "data": npz,
            "rows": len(next(iter(inputs.values()))), "note": note}


# ---- deploykit ----------------------------------------------------------------------------------
def deploykit_build(model: dict, targets: tuple, quantize, out: Path, args, label: str) -> dict:
    """One in-process deploykit.build; wall time, manifest (also of a build that failed a budget)."""
    import deploykit
    from deploykit.errors import BudgetError, DeployKitError

    settings = dict(model=str(model["saved_model"]), data=str(model["data"]), targets=targets, quantize=quantize,
                    out=str(out), parity_samples=MODELS[model["name"]]["parity"], calibration_samples=200,
                    latency={"warmup": args.warmup, "iterations": args.iterations, "max_seconds": args.max_seconds})
    settings.update(optional_settings(args))
    profiler = cProfile.Profile() if args.profile else None
    log(f"{model['name']}: deploykit {label}")
    started = time.perf_counter()
    manifest, error = None, None
    try:
        if profiler:
            profiler.enable()
        manifest = deploykit.build(**settings)
    except BudgetError as exc:
        manifest = exc.manifest
    except DeployKitError as exc:
        error = f"exit {exc.exit_code}: {exc.message}"
    except Exception as exc:  # noqa: BLE001 - a deploykit bug is a result for this model, not the end of the suite
        import traceback

        where = traceback.extract_tb(exc.__traceback__)[-1]
        error = f"internal error: {type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno})"
    finally:
        if profiler:
            profiler.disable()
    wall = time.perf_counter() - started
    if profiler:
        path = args.out / f"profile-{model['name']}-{label.replace(' ', '_')}.prof"
        profiler.dump_stats(path)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(18)
        print(f"\n-- cProfile {model['name']} {label} ({path.name}) --\n" + text.getvalue()[-3500:], file=sys.stderr)
    shutil.rmtree(out, ignore_errors=True)
    log(f"{model['name']}: deploykit {label}: {wall:.1f} s" + (f" ({error})" if error else ""))
    return {"wall_seconds": wall, "manifest": manifest, "error": error}


REPORT_NOTES: list[str] = []


def guard_report_writer() -> None:
    """Builds in this checkout write report.json/.md/.html at the end (`deploykit.reporting`); if that
    step raises, the build's timings and manifest would be lost to the ladder. The benchmark wraps it
    so a report failure is recorded (in the notes) and the build completes; its time is still counted."""
    try:
        import deploykit.reporting as report
    except Exception:  # noqa: BLE001 - no report module in this checkout: nothing to guard
        return
    original = getattr(report, "write_for_build", None)
    if original is None or getattr(original, "guarded", False):
        return

    def guarded(staging, manifest):
        try:
            original(staging, manifest)
        except Exception as exc:  # noqa: BLE001
            REPORT_NOTES.append(f"{manifest.get('source', {}).get('location')}: report writer failed: "
                                f"{type(exc).__name__}: {exc}")

    guarded.guarded = True
    report.write_for_build = guarded


def report_table(manifest: dict) -> str | None:
    """The artifact table of deploykit's own report.md (`deploykit.reporting`), when it renders."""
    try:
        from deploykit import reporting as report

        md = report.render(report.build_report(manifest))["report.md"]
    except Exception as exc:  # noqa: BLE001 - absent or failing: the ladder's own table stands
        REPORT_NOTES.append(f"report table not rendered: {type(exc).__name__}: {exc}")
        return None
    lines = md.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("| artifact |")), None)
    if start is None:
        return None
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])


def optional_settings(args) -> dict:
    """Settings that only newer BuildConfigs have: js backends as a setting (older checkouts read
    DEPLOYKIT_JS_BACKENDS, set in main), and serving without its container (`--no-container`)."""
    from dataclasses import fields

    from deploykit import config

    if hasattr(config, "known_settings"):  # target settings declared by the targets ([js], [serving])
        have = set(config.known_settings())
    else:
        have = {f.name for f in fields(config.BuildConfig)}
    extra = {}
    if "js" in have:
        extra["js"] = {"backends": tuple(b.strip() for b in args.js_backends.split(",") if b.strip())}
    if "container" in have:
        extra["container"] = False
    return extra


def worst(outputs: dict) -> dict:
    merged: dict = {}
    for metrics in outputs.values():
        for k, v in metrics.items():
            high = k in ("cosine", "top1_agreement")
            merged[k] = v if k not in merged else (min if high else max)(merged[k], v)
    return merged


def artifact_rows(manifest: dict) -> list[dict]:
    rows = []
    for a in manifest["artifacts"]:
        lat, metrics = a["latency"] or {}, worst(a["parity"]["outputs"])
        rows.append({
            "target": a["target"], "variant": a["variant"], "bytes": a["bytes"], "size_ratio": a["size_ratio_to_float32"],
            "runtime": lat.get("runtime") or a["parity"].get("runtime"), "p50_ms": lat.get("p50_ms"),
            "p99_ms": lat.get("p99_ms"), "iterations": lat.get("iterations"),
            "convert_seconds": a["details"].get("convert_seconds"), "passed": a["passed"],
            "failures": [f["message"] for f in a["failures"]],
            **{k: metrics.get(k) for k in ("max_abs_rel", "top1_agreement", "cosine")},
        })
    return rows


# ---- the official CLIs --------------------------------------------------------------------------
def cli_env() -> dict:
    return {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "-1",
            # tensorflowjs imports tensorflow_decision_forests, whose welcome message imports IPython
            # (not installed) when stdout is not a terminal
            "TFDF_DISABLE_WELCOME_MESSAGE": "1"}


def run_cli(label: str, cmd: list[str], output: Path) -> dict:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), stdin=subprocess.DEVNULL, timeout=1800)
    seconds = time.perf_counter() - started
    size = (sum(p.stat().st_size for p in output.rglob("*") if p.is_file()) if output.is_dir()
            else output.stat().st_size if output.exists() else None)
    tail = " | ".join([ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-3:])[:400]
    return {"artifact": label, "seconds": seconds, "bytes": size, "ok": proc.returncode == 0 and size is not None,
            "returncode": proc.returncode, "error": None if proc.returncode == 0 else tail,
            "command": " ".join(Path(cmd[0]).name if i == 0 else c for i, c in enumerate(cmd))}


def official_clis(model: dict, folder: Path, js_variants) -> list[dict]:
    sm = str(model["saved_model"])
    folder.mkdir(parents=True, exist_ok=True)  # tflite_convert writes into an existing folder only
    runs = []
    out = folder / "tflite_float32.tflite"
    log(f"{model['name']}: tflite_convert float32")
    runs.append(run_cli("tflite/float32", [str(VENV_BIN / "tflite_convert"), "--saved_model_dir", sm,
                                           "--output_file", str(out)], out))
    for variant in js_variants:
        dest = folder / f"js_{variant}"
        log(f"{model['name']}: tensorflowjs_converter {variant}")
        runs.append(run_cli(f"js/{variant}", [str(VENV_BIN / "tensorflowjs_converter"), "--input_format=tf_saved_model",
                                              "--output_format=tfjs_graph_model", "--signature_name=serving_default",
                                              "--use_structured_outputs_names=true", *JS_CLI_FLAGS[variant], sm, str(dest)],
                            dest))
    log(f"{model['name']}: CLIs {sum(r['seconds'] for r in runs):.1f} s")
    return runs


def import_seconds() -> float:
    """What one `deploykit build` process pays before any work: TensorFlow (legacy Keras) and the
    TF.js converter imported in a fresh interpreter."""
    code = ("import time; t=time.perf_counter(); from deploykit.tfenv import tensorflow; tensorflow(); "
            "from tensorflowjs.converters import tf_saved_model_conversion_v2; print(time.perf_counter()-t)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), cwd=ROOT, timeout=300)
    return float(proc.stdout.strip().splitlines()[-1])


# ---- one model ----------------------------------------------------------------------------------
def bench_model(name: str, args, work: Path, imports: float) -> dict:
    from deploykit.targets import REGISTRY

    folder = work / name
    folder.mkdir()
    log(f"{name}: building the model in code and saving it")
    model = make_model(name, folder)
    result = {k: model[k] for k in ("name", "params", "rows", "note")}
    result["js_backends"] = args.js_backends
    result["parity_rows"] = min(MODELS[name]["parity"], model["rows"])
    result["targets"] = {}
    for target in args.targets:
        if target not in REGISTRY:
            result["targets"][target] = {"skipped": f"target '{target}' is not registered in this checkout"}
            continue
        build = deploykit_build(model, (target,), None, folder / f"dk-{target}", args, f"{target} (all variants)")
        entry = {"build_seconds": round(build["wall_seconds"], 2), "error": build["error"]}
        if build["manifest"]:
            m = build["manifest"]
            entry.update(passed=m["passed"], timings=m["timings"], plan=m["targets"].get(target),
                         artifacts=artifact_rows(m), report_table=report_table(m))
        result["targets"][target] = entry
    if not args.no_cli and {"tflite", "js"} <= set(args.targets):
        js = result["targets"]["js"]
        variants = [a["variant"] for a in js.get("artifacts", [])] or list(JS_CLI_FLAGS)
        f32 = deploykit_build(model, ("tflite",), ("float32",), folder / "dk-tflite-f32", args, "tflite float32 only")
        runs = official_clis(model, folder / "cli", variants)
        dk_wall = f32["wall_seconds"] + js["build_seconds"] + 2 * imports
        cli_wall = sum(r["seconds"] for r in runs)
        result["side_by_side"] = {
            "artifacts": ["tflite/float32"] + [f"js/{v}" for v in variants],
            "deploykit_seconds": round(dk_wall, 2),
            "deploykit_parts": {"tflite_float32_build": round(f32["wall_seconds"], 2), "js_build": js["build_seconds"],
                                "imports": round(2 * imports, 2)},
            "deploykit_errors": [e for e in (f32["error"], js.get("error")) if e],
            "cli_seconds": round(cli_wall, 2), "cli_runs": runs,
            "cli_failed": [r["artifact"] for r in runs if not r["ok"]],
            "ratio": round(dk_wall / cli_wall, 3) if cli_wall else None,
        }
    shutil.rmtree(folder, ignore_errors=True)
    return result


# ---- tables -------------------------------------------------------------------------------------
def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def md_table(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(b) for b in body])


def artifact_table(results: list[dict]) -> str:
    head = ["model", "target", "variant", "runtime", "bytes", "size x", "parity", "max_abs_rel", "top1", "cosine",
            "p50 ms", "p99 ms", "convert s"]
    body = []
    for r in results:
        for target, t in r["targets"].items():
            for a in t.get("artifacts", []):
                body.append([r["name"], target, a["variant"], str(a["runtime"] or "-"), fmt(a["bytes"], ","),
                             fmt(a["size_ratio"], ".3f"), "PASS" if a["passed"] else "FAIL", fmt(a["max_abs_rel"], ".2e"),
                             fmt(a["top1_agreement"], ".3f"), fmt(a["cosine"], ".6f"), fmt(a["p50_ms"], ".3f"),
                             fmt(a["p99_ms"], ".3f"), fmt(a["convert_seconds"], ".2f")])
    return md_table(head, body)


def ladder_table(results: list[dict]) -> str:
    head = ["model", "params", "target", "artifacts", "build s", "load s", "convert s", "validate s", "s / M params", "result"]
    body = []
    for r in results:
        for target, t in r["targets"].items():
            if "skipped" in t:
                body.append([r["name"], fmt(r["params"], ","), target] + ["-"] * 6 + [f"skipped: {t['skipped']}"])
                continue
            tm = t.get("timings") or {}
            verdict = t["error"] or ("PASS" if t.get("passed") else "FAIL (budget)")
            body.append([r["name"], fmt(r["params"], ","), target, str(len(t.get("artifacts", []))),
                         fmt(t["build_seconds"], ".1f"), fmt(tm.get("intake_seconds", tm.get("load_seconds")), ".1f"), fmt(tm.get("convert_seconds"), ".1f"),
                         fmt(tm.get("validate_seconds"), ".1f"), fmt(t["build_seconds"] / (r["params"] / 1e6), ".2f"), verdict])
    return md_table(head, body)


def growth(results: list[dict]) -> dict:
    """Least-squares build seconds = fixed + slope x M params, per target, over the ladder."""
    import numpy as np

    fits = {}
    targets = {t for r in results for t, e in r["targets"].items() if "build_seconds" in e and not e["error"]}
    for target in sorted(targets):
        pts = [(r["params"] / 1e6, r["targets"][target]["build_seconds"]) for r in results
               if "build_seconds" in r["targets"].get(target, {}) and not r["targets"][target]["error"]]
        if len(pts) >= 2:
            slope, fixed = np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)
            fits[target] = {"seconds_per_million_params": round(float(slope), 3), "fixed_seconds": round(float(fixed), 2),
                            "models": len(pts)}
    return fits


def side_table(results: list[dict]) -> str:
    head = ["model", "artifacts", "deploykit s (validated)", "official CLIs s (convert only)", "ratio", "notes"]
    body = []
    for r in results:
        s = r.get("side_by_side")
        if not s:
            continue
        notes = []
        if s["cli_failed"]:
            notes.append("CLI failed: " + ", ".join(s["cli_failed"]))
        if s["deploykit_errors"]:
            notes.append("deploykit failed: " + "; ".join(e[:80] for e in s["deploykit_errors"]))
        unproven = [f"js/{a['variant']}" for a in r["targets"].get("js", {}).get("artifacts", [])
                    if not a["passed"] and a["p50_ms"] is None]
        if unproven:
            notes.append("deploykit built but the runtime could not run: " + ", ".join(unproven))
        per_cli = ", ".join(f"{c['artifact']} {c['seconds']:.1f}" for c in s["cli_runs"])
        body.append([r["name"], str(len(s["artifacts"])), fmt(s["deploykit_seconds"], ".1f"), fmt(s["cli_seconds"], ".1f"),
                     fmt(s["ratio"], ".2f"), "; ".join(notes) or per_cli])
    return md_table(head, body)


def render(doc: dict) -> str:
    results = doc["models"]
    lines = [f"# deploykit model ladder ({doc['created_at']})", "",
             f"{doc['machine']['cpus']} cores, load average {doc['machine']['load_average_start']:.2f} at start and "
             f"{doc['machine']['load_average_end']:.2f} at end (shared machine: figures are noisy). js backends: "
             f"{doc['settings']['js_backends']}; latency: warmup {doc['settings']['warmup']}, up to "
             f"{doc['settings']['iterations']} calls or {doc['settings']['max_seconds']} s per artifact.", "",
             "## Build time per target", "", ladder_table(results), ""]
    if doc["growth"]:
        lines += ["Growth with parameter count (least squares over the ladder): " + "; ".join(
            f"{t}: {g['seconds_per_million_params']} s per M params + {g['fixed_seconds']} s fixed"
            for t, g in doc["growth"].items()), ""]
    lines += ["## Artifacts", "", artifact_table(results), "",
              "p50/p99 are single-sample calls in the artifact's runtime; for js, the slowest backend's figures "
              "(deploykit judges an artifact by its worst backend).", ""]
    reports = [(f"{r['name']} {target}", t["report_table"]) for r in results for target, t in r["targets"].items()
               if t.get("report_table")]
    if reports:
        lines += ["## The same artifacts as deploykit's report.md shows them", ""]
        for name, table in reports:
            lines += [f"**{name}**", "", table, ""]
    if any(r.get("side_by_side") for r in results):
        lines += ["## Side by side with the official converter CLIs", "", side_table(results), ""]
    if doc.get("side_by_side"):
        sb = doc["side_by_side"]
        lines += [f"Total over {sb['models']} model(s) where both sides built every artifact: deploykit {sb['deploykit_seconds']:.1f} s (conversion and validation, "
                  f"{sb['import_seconds']:.1f} s TensorFlow import charged per build) vs official CLIs "
                  f"{sb['cli_seconds']:.1f} s (conversion only, one process per artifact): "
                  f"**ratio deploykit / CLIs = {sb['ratio']:.2f}**", ""]
    for r in results:
        lines.append(f"- **{r['name']}** ({r['params']:,} params, {r['parity_rows']} parity rows, js backends "
                     f"{r.get('js_backends', doc['settings']['js_backends'])}): {r['note']}")
    for note in doc.get("notes") or []:
        lines.append(f"- note: {note}")
    return "\n".join(lines) + "\n"


def finish(doc: dict, args, imports: float, started: float, merged: bool = False) -> str:
    """Totals, growth fit and notes into `doc`; writes ladder.json and ladder.md; returns the Markdown."""
    doc["growth"] = growth(doc["models"])
    sides = [r["side_by_side"] for r in doc["models"] if r.get("side_by_side")]
    ok = [s for s in sides if not s["cli_failed"] and not s["deploykit_errors"]]
    doc.pop("side_by_side", None)
    if ok:
        dk, cli = sum(s["deploykit_seconds"] for s in ok), sum(s["cli_seconds"] for s in ok)
        doc["side_by_side"] = {"models": len(ok), "deploykit_seconds": round(dk, 2), "cli_seconds": round(cli, 2),
                               "ratio": round(dk / cli, 3), "import_seconds": round(imports, 2)}
    if not merged:
        doc["machine"]["load_average_end"] = os.getloadavg()[0]
        doc["notes"] = list(dict.fromkeys(REPORT_NOTES))
    doc["wall_seconds"] = round(time.perf_counter() - started, 1)
    markdown = render(doc)
    (args.out / "ladder.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (args.out / "ladder.md").write_text(markdown)
    return markdown


def merge(args) -> int:
    """Combine earlier runs' ladder.json files (models in the order given) into one."""
    docs = [json.loads(Path(p).read_text()) for p in args.merge]
    first = docs[0]
    models = []
    for d in docs:
        for r in d["models"]:
            r.setdefault("js_backends", d["settings"]["js_backends"])
            models.append(r)
    imports = max((d.get("side_by_side") or {}).get("import_seconds", 0.0) for d in docs)
    doc = {**first, "models": models, "merged_from": [str(p) for p in args.merge],
           "machine": {"cpus": first["machine"]["cpus"], "load_average_start": first["machine"]["load_average_start"]},
           "settings": {**first["settings"], "models": [r["name"] for r in models],
                        "js_backends": ", ".join(dict.fromkeys(r["js_backends"] for r in models))}}
    doc["machine"]["load_average_end"] = docs[-1]["machine"]["load_average_end"]
    args.out.mkdir(parents=True, exist_ok=True)  # each model's deploykit figure keeps its own run's import charge
    markdown = finish(doc, args, imports, time.perf_counter() - sum(d.get("wall_seconds", 0) for d in docs), merged=True)
    print(markdown)
    print(f"merged {len(docs)} run(s); wrote {args.out / 'ladder.json'} and {args.out / 'ladder.md'}")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.merge:
        return merge(args)
    os.environ["DEPLOYKIT_JS_BACKENDS"] = args.js_backends
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    doc = {"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "command": " ".join([Path(sys.executable).name, *sys.argv]) if argv is None else None,
           "machine": {"cpus": os.cpu_count(), "load_average_start": os.getloadavg()[0]},
           "settings": {"models": args.models, "targets": args.targets, "js_backends": args.js_backends,
                        "warmup": args.warmup, "iterations": args.iterations, "max_seconds": args.max_seconds},
           "models": []}
    imports = 0.0
    if not args.no_cli:
        log("timing one TensorFlow + TF.js converter import in a fresh process")
        imports = import_seconds()
        log(f"import: {imports:.1f} s")
    from deploykit.tfenv import tensorflow

    tensorflow()
    guard_report_writer()
    with tempfile.TemporaryDirectory(prefix="deploykit-ladder-") as tmp:
        for name in args.models:
            doc["models"].append(bench_model(name, args, Path(tmp), imports))
            markdown = finish(doc, args, imports, started)  # rewritten after each model: partial runs keep their figures
    print(markdown)
    print(f"wall time {doc['wall_seconds']:.1f} s; wrote {args.out / 'ladder.json'} and {args.out / 'ladder.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The optimize stage: pruning, quantization-aware training and weight clustering with
tensorflow-model-optimization, then measured, not assumed.

    optimized = apply(model, cfg, work, reporter)   # after load, before the reference outputs
    model = optimized.model                          # every target converts this (stripped) model
    section = optimized.report(records, runtimes, cfg, reporter)          # after validation

Order when combined: prune -> cluster (pruning-preserving) -> QAT (sparsity/cluster-preserving).
The unoptimized model's artifacts (same targets and variants) are the baseline for size,
task-metric and latency ratios: `report` asks the pipeline to convert and run them. TensorFlow is imported only when `apply` runs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.errors import BadInputError
from deploykit.optimize.config import SPARSITY_TOLERANCE, OptimizeSettings, optimize_settings

__all__ = ["apply", "Optimized", "OptimizeSettings", "optimize_settings"]


@dataclass
class Optimized:
    original: object  # LoadedModel, unoptimized (the baseline)
    model: object  # LoadedModel of the optimized, stripped model: what the targets convert
    data: object  # finetune.Labelled
    settings: OptimizeSettings
    facts: dict = field(default_factory=dict)

    def report(self, records: list, runtimes, cfg, rep) -> dict:
        """The manifest's `optimize` section: per-artifact size, metric and latency against the
        unoptimized artifact of the same target and variant, then the budgets. `runtimes` is the
        pipeline's (`pipeline.Runtimes`): it converts the baseline and runs artifacts."""
        from deploykit.arrays import save_npz
        from deploykit.optimize import measure
        from deploykit.optimize.finetune import metric_of, worse_by

        section = dict(self.facts)
        valid_npz = runtimes.work / "optimize-valid-inputs.npz"
        save_npz(valid_npz, self.data.x_valid)
        output = self.model.contract.output_names[0]

        def metric(record):
            outputs = runtimes.outputs(record, valid_npz)
            return None if outputs is None else metric_of(outputs[output], self.data.y_valid, self.data.kind)

        baseline = {}
        if self.settings.baseline:
            with rep.step("optimize: build and measure the unoptimized artifacts (baseline)"):
                baseline = runtimes.convert_like(self.original, records)
        rows = []
        for r in records:
            row = {"target": r.target, "variant": r.variant, "bytes": r.bytes, "gzip_bytes": measure.gzip_bytes(r.artifact.path),
                   "metric": metric(r)}
            p50 = (r.latency or {}).get("p50_ms")
            row["p50_ms"] = p50
            base = baseline.get(r.key)
            if base is not None:
                row["baseline_bytes"] = measure.raw_bytes(base.artifact.path)
                row["baseline_gzip_bytes"] = measure.gzip_bytes(base.artifact.path)
                row["gzip_ratio"] = round(row["baseline_gzip_bytes"] / row["gzip_bytes"], 4)
                row["baseline_metric"] = metric(base)
                if row["metric"] is not None and row["baseline_metric"] is not None:
                    row["metric_drop"] = round(worse_by(row["baseline_metric"], row["metric"], self.data.kind), 6)
                if p50 is not None and cfg.latency.enabled:
                    base_p50 = runtimes.p50_ms(base)
                    row["baseline_p50_ms"] = base_p50
                    row["latency_ratio"] = round(p50 / base_p50, 4) if base_p50 else None
            rows.append(row)
        floats = {r["target"]: r for r in rows if r["variant"] == "float32" and "baseline_gzip_bytes" in r}
        for row in rows:
            base_float = floats.get(row["target"])
            if base_float:
                row["gzip_ratio_to_baseline_float32"] = round(base_float["baseline_gzip_bytes"] / row["gzip_bytes"], 4)
        section["artifacts"] = rows
        section["failures"] = _budget_failures(section, self.settings)
        section["passed"] = not section["failures"]
        return section


def apply(model, cfg, work: Path, rep) -> Optimized:
    """Fine-tune with the requested techniques and return the stripped model as a LoadedModel."""
    from deploykit.intake.loader import OPTIMIZE_NOTE
    from deploykit.optimize import finetune, measure

    s = cfg.optimize
    if not model.optimizable:
        raise BadInputError(f"{model.source.location}: cannot {s.describe()}: {OPTIMIZE_NOTE}")
    started = time.perf_counter()
    data = finetune.labelled_data(model, s, cfg.data, cfg.seed, getattr(cfg, "train_config", None))
    base = model.keras_model
    loss = finetune.loss_for(base, data, s)
    strategy = finetune.strategy_for(s.strategy)
    before = finetune.task_metric(base, data)
    current, applied = base, []
    pruned_layers: list[str] = []
    clustered_layers: list[str] = []
    if s.prune is not None:
        from deploykit.optimize import prune

        rep.info(f"optimize: pruning to {s.prune:.0%} sparsity, {s.epochs} epoch(s) of fine-tuning")
        current, facts = prune.apply(current, data, s, loss, strategy)
        pruned_layers = facts["layers"]
        applied.append(facts)
    if s.cluster is not None:
        from deploykit.optimize import cluster

        rep.info(f"optimize: clustering to {s.cluster} values per kernel, {s.epochs} epoch(s) of fine-tuning")
        current, facts = cluster.apply(current, data, s, loss, strategy, pruned=s.prune is not None)
        clustered_layers = facts["layers"]
        applied.append(facts)
    if s.qat:
        from deploykit.optimize import qat

        rep.info(f"optimize: quantization-aware training, {s.epochs} epoch(s)")
        current, facts = qat.apply(current, data, s, loss, pruned=s.prune is not None, clustered=s.cluster is not None)
        applied.append(facts)
        if facts["float_layers"]:
            rep.warn(f"optimize: QAT left layer(s) {', '.join(facts['float_layers'])} in float (not quantizable by tfmot)")
    after = finetune.task_metric(current, data)
    sizes = work / "optimize-sizes"
    sizes.mkdir(parents=True, exist_ok=True)
    keras_before = measure.keras_sizes(base, sizes / "baseline.h5")
    keras_after = measure.keras_sizes(current, sizes / "optimized.h5")
    facts = {
        "requested": {"prune": s.prune, "qat": s.qat, "cluster": s.cluster, "schedule": s.schedule,
                      "epochs": s.epochs, "strategy": s.strategy},
        "applied": applied,
        "fine_tune": {"data": data.origin, "train_rows": int(len(data.y_train)), "validation_rows": int(len(data.y_valid)),
                      "epochs_per_technique": s.epochs, "batch_size": s.batch_size, "learning_rate": s.learning_rate,
                      "loss": getattr(loss, "name", getattr(loss, "__name__", str(loss))), "strategy": s.strategy,
                      "seconds": round(time.perf_counter() - started, 3)},
        "sparsity": {**measure.sparsity(current, pruned_layers or None), "all_weights": measure.all_weights_sparsity(current),
                     "target": s.prune},
        "unique_weights": measure.unique_weights(current, clustered_layers) if clustered_layers else {},
        "metric": {"name": data.kind, "before": round(before, 6), "after": round(after, 6),
                   "drop": round(finetune.worse_by(before, after, data.kind), 6)},
        "keras_model": {"baseline": keras_before, "optimized": keras_after,
                        "gzip_ratio": round(keras_before["gzip_bytes"] / keras_after["gzip_bytes"], 4)},
        "budgets": dict(s.budgets),
    }
    return Optimized(original=model, model=_as_loaded(model, current), data=data, settings=s, facts=facts)


def _as_loaded(original, keras_model):
    """The optimized Keras model behind the original model's contract (same input/output names:
    QAT renames layers, e.g. `digit` -> `quant_digit`, which must not reach the artifacts)."""
    from deploykit.intake.loader import LoadedModel

    in_names = original.contract.input_names
    out_names = original.contract.output_names

    def call(feed: dict) -> dict:
        x = feed[in_names[0]] if len(in_names) == 1 else [feed[n] for n in in_names]
        result = keras_model(x, training=False)
        if isinstance(result, dict):
            result = list(result.values())
        if not isinstance(result, (list, tuple)):
            result = [result]
        return dict(zip(out_names, result))

    return LoadedModel(original.source, original.contract, call, keras_model, keras_model, list(original.findings))


def _budget_failures(section: dict, s: OptimizeSettings) -> list[dict]:
    failures = []

    def fail(metric, value, limit, message):
        failures.append({"metric": metric, "value": value, "budget": limit, "message": message})

    if s.prune is not None:
        reached = section["sparsity"]["overall"]
        if reached < s.prune - SPARSITY_TOLERANCE:
            fail("sparsity", reached, s.prune, f"measured sparsity {reached:.1%} is short of the requested {s.prune:.0%}")
    b = s.budgets
    if "min_sparsity" in b and section["sparsity"]["overall"] < b["min_sparsity"]:
        fail("min_sparsity", section["sparsity"]["overall"], b["min_sparsity"], "sparsity below budget")
    if "metric_drop" in b and section["metric"]["drop"] > b["metric_drop"]:
        fail("metric_drop", section["metric"]["drop"], b["metric_drop"],
             f"{section['metric']['name']} got worse by {section['metric']['drop']:.4f} (Keras model)")
    if "min_gzip_ratio" in b and section["keras_model"]["gzip_ratio"] < b["min_gzip_ratio"]:
        fail("min_gzip_ratio", section["keras_model"]["gzip_ratio"], b["min_gzip_ratio"], "gzip size ratio below budget")
    for row in section.get("artifacts", []):
        where = f"{row['target']}/{row['variant']}"
        if "artifact_metric_drop" in b and row.get("metric_drop") is not None and row["metric_drop"] > b["artifact_metric_drop"]:
            fail("artifact_metric_drop", row["metric_drop"], b["artifact_metric_drop"],
                 f"{where}: {section['metric']['name']} worse by {row['metric_drop']:.4f} than the unoptimized artifact")
        if "max_latency_ratio" in b and row.get("latency_ratio") is not None and row["latency_ratio"] > b["max_latency_ratio"]:
            fail("max_latency_ratio", row["latency_ratio"], b["max_latency_ratio"],
                 f"{where}: p50 latency {row['latency_ratio']:.2f}x the unoptimized artifact")
    return failures

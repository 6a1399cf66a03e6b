"""Train one process's share of a job: build under the strategy scope, compile, fit, export.

The same function runs a single-process job (none / one_device / mirrored), one worker of a
multi_worker job, or the coordinator of a parameter_server job (whose ps and worker tasks only
serve). Only the chief writes the run folder's outputs: `model.keras`, `saved_model/`,
`validation.npz` (the validation inputs, for `deploykit build --model RUN`), `history.jsonl` and,
last, `metrics.json` (a run folder holding it is a finished run); checkpoints, backups and
TensorBoard logs follow Keras's multi-worker rules (non-chief workers write to temporary folders).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from deploykit.errors import BadInputError
from deploykit.fit.config import TrainConfig
from deploykit.fit.data import check_spec, make_datasets
from deploykit.fit.strategy import Role, make_strategy, replicas, role_from_env, run_server
from deploykit.intake import builder
from deploykit.progress import Reporter
from deploykit.tfenv import tf_keras

EXAMPLE_BUILDER = "deploykit.intake.example:build_model"  # the model when the config names none
_OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop", "adagrad": "Adagrad", "adamw": "AdamW", "nadam": "Nadam"}


def build_model(cfg: TrainConfig):
    """Call the builder (inside the caller's strategy scope); errors name the `model` field."""
    keras = tf_keras()
    model = builder.call(cfg.model or EXAMPLE_BUILDER, "model")
    if not isinstance(model, keras.Model):
        raise BadInputError(f"model: builder {cfg.model} returned {type(model).__name__}, not a tf_keras Model")
    return model


def compile_model(model, cfg: TrainConfig, keep_builder_compile: bool = True) -> None:
    keras = tf_keras()
    if keep_builder_compile and getattr(model, "optimizer", None) is not None and model.compiled_loss is not None:
        return  # the builder compiled it: its choices win
    optimizer = keras.optimizers.get({"class_name": _OPTIMIZERS[cfg.optimizer.lower()],
                                      "config": {"learning_rate": cfg.learning_rate}})
    try:
        model.compile(optimizer=optimizer, loss=cfg.loss, metrics=list(cfg.metrics))
    except (ValueError, TypeError) as exc:
        raise BadInputError(f"loss/metrics: cannot compile with loss={cfg.loss!r} metrics={list(cfg.metrics)} ({exc})") from None




def _epoch_log_class():
    keras = tf_keras()

    class _EpochLog(keras.callbacks.Callback):
        """Log epoch ends (beginnings too, in a local job's task logs: the fault tests wait for them)
        and keep the full history across restarts."""

        def __init__(self, cfg: TrainConfig, history_file: Path | None, reporter: Reporter):
            super().__init__()
            self.cfg, self.history_file, self.reporter = cfg, history_file, reporter
            self.first_epoch: int | None = None
            self.epoch_times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            if self.first_epoch is None:
                self.first_epoch = epoch + 1
                if self.history_file is not None:
                    kept = []
                    if epoch > 0 and self.history_file.exists():  # resumed: keep the epochs already done
                        kept = [line for line in self.history_file.read_text().splitlines()
                                if line.strip() and json.loads(line)["epoch"] <= epoch]
                    self.history_file.write_text("".join(line + "\n" for line in kept))
                if epoch > 0:
                    self.reporter.info(f"resumed from backup at epoch {epoch + 1}/{self.cfg.epochs}")
            self._start = time.perf_counter()
            self.reporter.detail(f"epoch {epoch + 1}/{self.cfg.epochs} begin")  # in a task's log, not on the console

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_times.append(time.perf_counter() - self._start)
            logs = {k: float(v) for k, v in (logs or {}).items()}
            shown = " ".join(f"{k}={v:.4f}" for k, v in logs.items())
            self.reporter.info(f"epoch {epoch + 1}/{self.cfg.epochs} end {shown} ({self.epoch_times[-1]:.1f} s)")
            if self.history_file is not None:
                with self.history_file.open("a") as f:
                    f.write(json.dumps({"epoch": epoch + 1, **logs}) + "\n")

    return _EpochLog


def _callbacks(cfg: TrainConfig, out: Path, role: Role, reporter: Reporter, validating: bool):
    keras = tf_keras()
    epoch_log = _epoch_log_class()(cfg, out / "history.jsonl" if role.is_chief else None, reporter)
    callbacks = [epoch_log]
    if cfg.backup_enabled:
        callbacks.append(keras.callbacks.BackupAndRestore(backup_dir=str(out / "backup")))
    monitor = cfg.monitor if validating or not cfg.monitor.startswith("val_") else cfg.monitor[4:]
    callbacks.append(keras.callbacks.ModelCheckpoint(
        str(out / "checkpoints" / "best"), monitor=monitor, save_best_only=True, save_weights_only=True, verbose=0))
    if cfg.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=cfg.early_stopping_patience))
    if cfg.tensorboard:
        sub = "" if role.is_chief else f"_worker-{role.task_index}"
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(out / f"tensorboard{sub}"), profile_batch=0))
    return callbacks, epoch_log, monitor


def run(cfg: TrainConfig, out: str | Path, reporter: Reporter | None = None) -> dict | None:
    """Train this process's part of the job. Returns the run metrics on the chief, None elsewhere."""
    return train_model(cfg, out, reporter)[1]


def train_model(cfg: TrainConfig, out: str | Path, reporter: Reporter | None = None):
    """Train this process's part of the job: (the exported model, run metrics) on the chief,
    (None, None) elsewhere. The model is the plain (strategy-free) copy that was exported."""
    reporter = reporter or Reporter()
    started = time.perf_counter()
    keras = tf_keras()
    role = role_from_env() if cfg.distributed else Role(None)
    if cfg.strategy == "parameter_server" and role.task_type in ("ps", "worker"):
        reporter.info(f"serving as {role.task_type} {role.task_index} of a parameter_server job")
        run_server()
        return None, None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if role.is_chief:  # metrics.json marks a finished run: never a previous run's beside this run's model
        (out / "metrics.json").unlink(missing_ok=True)
    strategy = make_strategy(cfg.strategy)  # first: multi-worker collectives must start before other ops
    keras.utils.set_random_seed(cfg.seed)
    n = replicas(strategy)
    if cfg.batch_size % n:
        raise BadInputError(f"batch_size: {cfg.batch_size} does not split evenly over {n} replicas")
    with strategy.scope():
        model = build_model(cfg)
        compile_model(model, cfg)
    train_ds, valid_ds, info = make_datasets(cfg, model.input_names[0] if len(model.input_names) == 1 else None)
    check_spec(model, train_ds)
    check_spec(model, valid_ds)
    steps = info["steps_per_epoch"]
    ps = cfg.strategy == "parameter_server"
    if ps and steps is None:
        raise BadInputError("steps_per_epoch: required for the parameter_server strategy")
    reporter.info(f"strategy {cfg.strategy}: {n} replica(s), global batch {cfg.batch_size} "
                  f"({cfg.batch_size // n} per replica), shard policy {cfg.shard_policy}"
                  + (f", task {role.task_type}:{role.task_index}" if role.task_type else ""))
    if ps:  # the coordinator dispatches per-worker datasets built by this function
        fit_data = keras.utils.experimental.DatasetCreator(lambda ctx: make_datasets(cfg, model.input_names[0])[0])
    else:
        fit_data = train_ds
    validating = not ps
    callbacks, epoch_log, monitor = _callbacks(cfg, out, role, reporter, validating)
    fit_start = time.perf_counter()
    keras_history = model.fit(
        fit_data, epochs=cfg.epochs, steps_per_epoch=steps, callbacks=callbacks, verbose=0,
        validation_data=valid_ds if validating else None,
        validation_steps=cfg.validation_steps if validating else None)
    fit_seconds = time.perf_counter() - fit_start
    plain = _plain_copy(cfg, model)
    if validating:
        final = {k: float(v) for k, v in model.evaluate(valid_ds, verbose=0, return_dict=True).items()}
    else:  # parameter_server: evaluate the trained weights on the coordinator
        final = {k: float(v) for k, v in plain.evaluate(valid_ds, verbose=0, return_dict=True).items()}
    if not role.is_chief:
        reporter.info("worker done")
        return None, None
    from deploykit.fit.export import VALIDATION_FILE, export_validation

    artifacts = export(plain, out)
    artifacts["validation"] = export_validation(cfg, plain, out)
    if artifacts["validation"]["path"] is None:
        reporter.info(f"note: no {VALIDATION_FILE} written ({artifacts['validation']['reason']}); "
                      "`deploykit build --model RUN` will need --data")
    epochs_run = len(epoch_log.epoch_times)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines() if line.strip()]
    examples = epochs_run * (steps or 0) * cfg.batch_size
    metrics = {
        "strategy": cfg.strategy,
        "replicas": n,
        "num_workers": max(role.num_workers, 1),
        "global_batch_size": cfg.batch_size,
        "per_replica_batch_size": cfg.batch_size // n,
        "shard_policy": cfg.shard_policy,
        "steps_per_epoch": steps,
        "epochs": cfg.epochs,
        "epochs_completed": len(history),
        "first_epoch_this_run": epoch_log.first_epoch,
        "resumed": bool(epoch_log.first_epoch and epoch_log.first_epoch > 1),
        "optimizer_iterations": int(model.optimizer.iterations.numpy()),
        "learning_rate": float(keras.backend.get_value(model.optimizer.learning_rate)),
        "history": history,
        "keras_history": {k: [float(v) for v in vs] for k, vs in keras_history.history.items()},
        "final_validation": final,
        "monitor": monitor,
        "wall_time_s": round(time.perf_counter() - started, 3),
        "fit_time_s": round(fit_seconds, 3),
        "epoch_times_s": [round(t, 3) for t in epoch_log.epoch_times],
        "examples_per_sec": round(examples / fit_seconds, 1) if examples and fit_seconds > 0 else None,
        "artifacts": artifacts,
        "config": cfg.to_json(),
    }
    partial = out / "metrics.json.partial"
    partial.write_text(json.dumps(metrics, indent=2) + "\n")
    os.replace(partial, out / "metrics.json")
    reporter.info(f"trained {len(history)} epoch(s) in {fit_seconds:.1f} s; "
                  + " ".join(f"{k}={v:.4f}" for k, v in final.items()))
    return plain, metrics


def _plain_copy(cfg: TrainConfig, model):
    """The trained weights in a model outside any strategy: what gets evaluated (ps) and exported."""
    keras = tf_keras()
    try:
        plain = keras.models.clone_model(model)
    except Exception:  # subclassed models: build a fresh one
        plain = build_model(cfg)
    plain.set_weights(model.get_weights())
    compile_model(plain, cfg, keep_builder_compile=False)
    return plain


def export(model, out: Path) -> dict:
    """Write `model.keras` and a SavedModel whose serving_default takes the training inputs by name."""
    from deploykit.fit.export import export_model

    return export_model(model, out)

"""The Python entry of the fit stage: one call for every way of running a job."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from deploykit.errors import BadInputError
from deploykit.fit.config import TrainConfig, load_train_config
from deploykit.progress import Reporter

DEFAULT_RUN_DIR = "deploykit-run"


def train(config: str | Path | TrainConfig | None = None, out: str | Path = DEFAULT_RUN_DIR, *,
          local_workers: int = 0, max_restarts: int = 0, emit_k8s: str | Path | None = None,
          reporter: Reporter | None = None, **overrides: Any) -> dict:
    """Train and export; return the run metrics (also written to OUT/metrics.json).

    `config` is a TOML/YAML file, a `TrainConfig`, or None for the bundled example; `overrides` are
    `TrainConfig` fields. `local_workers=N` runs a multi-worker job (or a parameter_server job, if the
    config says so) as N local processes; `max_restarts` relaunches the job after a worker dies.
    `emit_k8s=DIR` only writes Kubeflow TFJob manifests for the job and returns their paths.
    """
    reporter = reporter or Reporter()
    if isinstance(config, TrainConfig):
        from dataclasses import replace

        cfg = replace(config, **overrides) if overrides else config
    else:
        cfg = load_train_config(config, **overrides)
    if local_workers < 0:
        raise BadInputError("--local-workers: must be >= 0")
    if emit_k8s is not None:
        from deploykit.fit.k8s import emit

        return emit(cfg, emit_k8s, workers=max(local_workers, 2), out=str(out))
    if local_workers:
        if cfg.strategy not in ("multi_worker", "parameter_server"):
            from dataclasses import replace

            if cfg.strategy != "mirrored":
                raise BadInputError(f"strategy: {cfg.strategy!r} runs in one process; --local-workers needs multi_worker or parameter_server")
            cfg = replace(cfg, strategy="multi_worker")  # the default strategy, spread over processes
        from deploykit.fit.launcher import launch

        return launch(cfg, out, local_workers, max_restarts=max_restarts, reporter=reporter)
    if cfg.strategy == "parameter_server":
        from deploykit.fit.strategy import tf_config

        if tf_config() is None:
            raise BadInputError("strategy: parameter_server needs a cluster: use --local-workers N or TF_CONFIG")
    from deploykit.fit.trainer import run

    result = run(cfg, out, reporter)
    return result if result is not None else {"role": "worker", "out": str(out)}

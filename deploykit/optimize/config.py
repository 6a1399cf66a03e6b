"""The `[optimize]` settings: what to prune, quantize-aware train or cluster, and how to fine-tune.

Read from the build config's `optimize` table and the `--prune/--qat/--cluster` flags through
`deploykit.settings` (unknown keys and wrong types); ranges and choices are checked here. Every
failure is exit 2 naming `optimize.<key>`. TensorFlow is not imported here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from deploykit import settings as loader
from deploykit.errors import BadInputError

SCHEDULES = ("polynomial_decay", "constant")
CLUSTER_INITS = ("kmeans_plus_plus", "linear", "density_based", "random")
QAT_UNSUPPORTED = ("float", "error")
STRATEGIES = ("none", "one_device", "mirrored")
# budget name -> what it limits (all fractions: 0.005 = half an accuracy point)
BUDGETS = {
    "metric_drop": "max drop of the task metric (accuracy; for regression: loss increase), Keras model after vs before",
    "artifact_metric_drop": "max drop of the task metric of each artifact vs the unoptimized artifact of the same variant",
    "min_sparsity": "min measured sparsity over the pruned kernels",
    "min_gzip_ratio": "min gzip(unoptimized .h5) / gzip(optimized .h5)",
    "max_latency_ratio": "max p50 latency of each artifact / the unoptimized artifact of the same target and variant",
}
SPARSITY_TOLERANCE = 0.01  # measured sparsity further below the target than this fails the build (exit 3)


@dataclass(frozen=True)
class OptimizeSettings:
    prune: float | None = None  # target sparsity in (0, 1) of each pruned kernel
    schedule: str = "polynomial_decay"  # or "constant"
    begin_step: int | None = None  # None: 0
    end_step: int | None = None  # None: derived (70% of the fine-tuning steps, on a pruning turn)
    frequency: int | None = None  # None: derived (about 10 pruning turns between begin and end)
    skip_layers: tuple[str, ...] = ()  # layer names left unpruned / unclustered
    qat: bool = False
    qat_unsupported: str = "float"  # "float": layers QAT cannot quantize stay float; "error": exit 2 naming them
    cluster: int | None = None  # number of clusters per kernel
    cluster_init: str = "kmeans_plus_plus"
    preserve_sparsity: bool = True  # combined with pruning: clustering and QAT keep the zeros
    epochs: int = 6  # fine-tuning epochs per technique (6 x 45 steps: the bundled example keeps its accuracy at 80%)
    batch_size: int = 32
    learning_rate: float = 1e-3
    data: str | None = None  # .npz: the input arrays + labels (user models); None: the example's split or --data
    labels_key: str = "y"
    validation_split: float = 0.2  # last fraction of the labelled rows: the task metric, never trained on
    strategy: str = "none"  # the fit stage's strategy names (QAT always runs on one device)
    loss: str = "auto"  # auto: sparse categorical cross-entropy for integer labels, else mse
    baseline: bool = True  # also build the unoptimized artifacts to compare size, metric and latency
    budgets: Mapping[str, float] = field(default_factory=dict)

    @property
    def requested(self) -> bool:
        return self.prune is not None or self.qat or self.cluster is not None

    def describe(self) -> str:
        parts = []
        if self.prune is not None:
            parts.append(f"prune to {self.prune:.0%} ({self.schedule})")
        if self.cluster is not None:
            parts.append(f"cluster to {self.cluster} values")
        if self.qat:
            parts.append("quantization-aware training")
        return " + ".join(parts) or "nothing"


def optimize_settings(raw: Mapping[str, Any] | OptimizeSettings | None) -> OptimizeSettings:
    """Checked settings from a TOML table (or flags merged into one); errors name `optimize.<key>`.

    Unknown keys and types go through the one settings loader; the ranges and choices are checked here."""
    if raw is None:
        return OptimizeSettings()
    if isinstance(raw, OptimizeSettings):
        return raw
    table = raw
    if isinstance(raw, Mapping) and isinstance(raw.get("skip_layers"), str):
        table = {**raw, "skip_layers": [raw["skip_layers"]]}  # one layer name, never split on commas
    settings = loader.from_table(OptimizeSettings, table, "optimize")
    _check(settings)
    return settings


def _check(s: OptimizeSettings) -> None:
    if s.prune is not None and not 0.0 < s.prune < 1.0:
        raise BadInputError(f"optimize.prune: target sparsity must be between 0 and 1 (exclusive), got {s.prune}")
    if s.cluster is not None and s.cluster < 2:
        raise BadInputError(f"optimize.cluster: needs at least 2 clusters, got {s.cluster}")
    choices = {"schedule": SCHEDULES, "cluster_init": CLUSTER_INITS, "qat_unsupported": QAT_UNSUPPORTED,
               "strategy": STRATEGIES}
    for name, allowed in choices.items():
        if getattr(s, name) not in allowed:
            raise BadInputError(f"optimize.{name}: {getattr(s, name)!r} is not one of {', '.join(allowed)}")
    for name in ("epochs", "batch_size"):
        if getattr(s, name) < 1:
            raise BadInputError(f"optimize.{name}: must be at least 1")
    if s.begin_step is not None and s.begin_step < 0:
        raise BadInputError("optimize.begin_step: must be >= 0")
    if s.frequency is not None and s.frequency < 1:
        raise BadInputError("optimize.frequency: must be at least 1")
    if s.end_step is not None and s.end_step <= (s.begin_step or 0):
        raise BadInputError(f"optimize.end_step: {s.end_step} must be after begin_step ({s.begin_step or 0})")
    if s.learning_rate <= 0:
        raise BadInputError("optimize.learning_rate: must be > 0")
    if not 0.0 < s.validation_split < 1.0:
        raise BadInputError("optimize.validation_split: must be between 0 and 1 (exclusive)")
    for name in s.budgets:  # the loader checked the table and that each limit is a number
        if name not in BUDGETS:
            raise BadInputError(f"optimize.budgets.{name}: unknown budget (known: {', '.join(BUDGETS)})")

"""The `Target` interface every deployment target implements.

A target declares its capabilities as data (variants, default budgets, runtime) and implements
three steps: `prepare` (preflight and plan, once per build), `convert` (one variant), and `run`
(execute an artifact in the target's own runtime, in a child process). Validation, budgets,
manifests and reports are generic and live outside the targets.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Mapping

if TYPE_CHECKING:  # keep TensorFlow out of `deploykit targets`
    from ..config import BuildConfig, LatencySettings
    from ..loader import LoadedModel


@dataclass(frozen=True)
class Artifact:
    target: str
    variant: str
    path: Path  # absolute while building; recorded relative to the output folder
    details: Mapping = field(default_factory=dict)  # conversion facts recorded in the manifest


@dataclass(frozen=True)
class RunRequest:
    """What the runtime harness is asked to do with one artifact."""

    artifact: Artifact
    inputs: Path  # .npz, one array per input name
    outputs: Path  # where the harness writes its outputs (.npz) in parity mode
    mode: str  # "parity" | "latency"
    latency: "LatencySettings"


class Target(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    runtime: ClassVar[str]
    variants: ClassVar[tuple[str, ...]]
    # variant -> metric -> limit; see parity.BUDGET_METRICS for the metric names
    default_budgets: ClassVar[Mapping[str, Mapping[str, float]]]

    @classmethod
    def describe(cls) -> dict:
        return {
            "name": cls.name,
            "summary": cls.summary,
            "runtime": cls.runtime,
            "variants": list(cls.variants),
            "default_budgets": {k: dict(v) for k, v in cls.default_budgets.items()},
        }

    def configure(self, config: "BuildConfig") -> None:
        """Receive the build settings before `check_runtime` (optional)."""

    def check_runtime(self) -> None:
        """Raise MissingRuntimeError (exit 4) if this target's runtime cannot run here."""

    def publish(self, records: list[dict]) -> None:
        """After validation, before the manifest: publish what passed (optional; e.g. serving --push)."""

    @abstractmethod
    def prepare(self, model: "LoadedModel", saved_model: Path, data: Mapping, config: "BuildConfig", work: Path) -> dict:
        """Preflight (e.g. unsupported ops) and plan; returns facts for the manifest."""

    @abstractmethod
    def convert(self, variant: str, dest: Path, calibration: Mapping, config: "BuildConfig") -> Artifact:
        """Write one variant under `dest` (a folder inside the staging area)."""

    @abstractmethod
    def run(self, request: RunRequest, work: Path) -> dict:
        """Run an artifact in the target's runtime; return the harness's raw result."""

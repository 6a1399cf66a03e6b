"""The typed results that travel between stages: one `ArtifactRecord` per converted artifact goes
from conversion to validation (which fills `parity`, `latency`, `failures`, `passed`) to a target's
`after_validation` hook (which may mark it `rejected`) to the manifest (`to_manifest`), in the
same JSON shape `deploykit/schema/manifest.schema.json` describes. No TensorFlow here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit.targets.base import Artifact


@dataclass
class BackendParity:
    """One backend's (or check's) outputs compared with the reference."""

    outputs: dict[str, dict[str, float]]  # output name -> metric -> value
    failures: list[dict]
    passed: bool

    def to_json(self) -> dict:
        return {"outputs": self.outputs, "passed": self.passed, "failures": self.failures}


@dataclass
class Parity:
    """Every backend judged the same way; `outputs` holds the worst value of each metric over them."""

    samples: int
    runtime: str | None
    runtime_version: str | None
    outputs: dict[str, dict[str, float]] = field(default_factory=dict)
    backends: dict[str, BackendParity] = field(default_factory=dict)
    passed: bool = False

    def to_json(self) -> dict:
        doc = {"samples": self.samples, "runtime": self.runtime, "runtime_version": self.runtime_version,
               "outputs": self.outputs, "passed": self.passed}
        if self.backends:
            doc["backends"] = {name: b.to_json() for name, b in self.backends.items()}
        return doc


@dataclass
class ArtifactRecord:
    artifact: Artifact
    inputs: Path  # the parity inputs (.npz)
    budget: dict[str, float]
    bytes: int
    parity: Parity | None = None
    latency: dict | None = None  # validate.latency.summarize's figures
    failures: list[dict] = field(default_factory=list)
    passed: bool = False
    rejected: str | None = None  # why a target's hook kept this artifact out of the output

    @property
    def target(self) -> str:
        return self.artifact.target

    @property
    def variant(self) -> str:
        return self.artifact.variant

    @property
    def key(self) -> str:
        return f"{self.artifact.target}/{self.artifact.variant}"

    def to_manifest(self, root: Path, sha256: str, float32_bytes: int | None) -> dict[str, Any]:
        a = self.artifact
        return {
            "target": a.target,
            "variant": a.variant,
            "path": a.path.relative_to(root).as_posix(),
            "sha256": sha256,
            "bytes": self.bytes,
            "size_ratio_to_float32": (self.bytes / float32_bytes) if float32_bytes else None,
            "details": dict(a.details),
            "budget": self.budget,
            "parity": self.parity.to_json() if self.parity else None,
            "latency": self.latency,
            "failures": self.failures,
            "passed": self.passed,
        }

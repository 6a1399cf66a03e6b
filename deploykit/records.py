"""The typed results that travel between stages.

In a build, one `ArtifactRecord` per converted artifact goes from conversion to validation (which
fills `parity`, `latency`, `failures`, `passed`) to a target's `after_validation` hook (which may
mark it `rejected`) to the manifest, as a `ManifestEntry`. Later jobs (`deploykit validate`,
`report`, `publish`) read the manifest back into the same `ManifestEntry` type. The JSON shape is
`deploykit/schema/manifest.schema.json`. No TensorFlow here.
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

    @classmethod
    def from_json(cls, doc: dict) -> "BackendParity":
        return cls(doc.get("outputs", {}), doc.get("failures", []), doc.get("passed", False))


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

    @classmethod
    def from_json(cls, doc: dict) -> "Parity":
        return cls(doc["samples"], doc.get("runtime"), doc.get("runtime_version"), doc.get("outputs", {}),
                   {n: BackendParity.from_json(b) for n, b in (doc.get("backends") or {}).items()}, doc["passed"])


@dataclass(frozen=True)
class ManifestEntry:
    """One artifact as the manifest records it."""

    target: str
    variant: str
    path: str  # relative to the output folder, POSIX separators
    sha256: str
    bytes: int
    size_ratio_to_float32: float | None
    details: dict
    budget: dict[str, float]
    parity: Parity
    latency: dict | None
    failures: list[dict]
    passed: bool

    @property
    def key(self) -> str:
        return f"{self.target}/{self.variant}"

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "variant": self.variant, "path": self.path, "sha256": self.sha256,
                "bytes": self.bytes, "size_ratio_to_float32": self.size_ratio_to_float32, "details": self.details,
                "budget": self.budget, "parity": self.parity.to_json(), "latency": self.latency,
                "failures": self.failures, "passed": self.passed}

    @classmethod
    def from_json(cls, doc: dict) -> "ManifestEntry":
        return cls(doc["target"], doc["variant"], doc["path"], doc["sha256"], doc["bytes"],
                   doc.get("size_ratio_to_float32"), dict(doc.get("details") or {}), dict(doc.get("budget") or {}),
                   Parity.from_json(doc["parity"]), doc.get("latency"), list(doc.get("failures") or []), doc["passed"])


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

    def to_manifest(self, root: Path, sha256: str, float32_bytes: int | None) -> ManifestEntry:
        a = self.artifact
        path = a.path.relative_to(root).as_posix() if a.path is not None else None  # None: conversion failed
        return ManifestEntry(a.target, a.variant, path, sha256, self.bytes,
                             (self.bytes / float32_bytes) if float32_bytes else None, dict(a.details), self.budget,
                             self.parity, self.latency, self.failures, self.passed)


def entries(manifest: dict) -> list[ManifestEntry]:
    """A manifest's artifacts, typed."""
    return [ManifestEntry.from_json(a) for a in manifest["artifacts"]]

"""A model's I/O contract: the names, dtypes and shapes of its inputs and outputs, in order.

Pure Python: the contract travels into the manifest and into runtimes that never import TensorFlow.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # numpy dtype name, e.g. "float32"
    shape: tuple[int | None, ...]  # None for a dynamic dimension (the batch, usually)

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict) -> "TensorInfo":
        return cls(data["name"], data["dtype"], tuple(data["shape"]))

    @property
    def sample_shape(self) -> tuple[int | None, ...]:
        """The shape of one example (the batch dimension dropped)."""
        return self.shape[1:]


@dataclass(frozen=True)
class IOContract:
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def output(self, name: str) -> TensorInfo:
        return next(t for t in self.outputs if t.name == name)

    def to_json(self) -> dict:
        return {
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }

    @classmethod
    def from_json(cls, data: dict) -> "IOContract":
        return cls(
            tuple(TensorInfo.from_json(t) for t in data["inputs"]),
            tuple(TensorInfo.from_json(t) for t in data["outputs"]),
        )

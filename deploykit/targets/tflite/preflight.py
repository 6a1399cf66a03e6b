"""What the TFLite preflight reads from a flatbuffer, and the calibration data it feeds the converter."""
from __future__ import annotations

from typing import Mapping

import numpy as np


def flex_ops(flatbuffer: bytes) -> list[str]:
    """Names of the Flex (select TensorFlow) ops a TFLite flatbuffer needs."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    found = set()
    for i in range(model.OperatorCodesLength()):
        custom = model.OperatorCodes(i).CustomCode()
        if custom and custom.decode().startswith("Flex"):
            found.add(custom.decode())
    return sorted(found)


def rows(data: Mapping) -> int:
    return len(next(iter(data.values())))


def representative(data: Mapping, names: list[str], by_name: bool):
    """The converter's representative dataset: one row at a time, by input name (SavedModel path)
    or positionally (fixed-shape concrete function)."""
    def gen():
        for i in range(rows(data)):
            sample = [np.asarray(data[n][i : i + 1]) for n in names]
            yield dict(zip(names, sample)) if by_name else sample

    return gen

"""Exact rewrites of TensorFlow ops the TF.js runtime lacks into ops it has, applied to the frozen
graph before the tensorflowjs converter checks its ops.

Each rule replaces one node by a few nodes computing the same function (the formula the TensorFlow
kernel implements); the last node keeps the original name, so consumers and signature outputs are
untouched. Nothing here is an approximation: parity in the TF.js runtimes then proves the bundle.
Ops without a rule (e.g. Lgamma) are still refused by the preflight, named.

Each op below is one TF.js 4.22 lacks (not in tensorflowjs/op_list/*.json) and one a Keras or TF
model produces: Softsign (`activation="softsign"`), Erfc (`tf.math.erfc`), Xlogy/Xlog1py/Xdivy
(entropy-style terms, `tf.math.xlogy`), MulNoNan (`tf.math.multiply_no_nan`).

The hook (`applied_to_frozen_graph`) wraps the converter's private `_freeze_saved_model_v2` while
one conversion runs (under the js target's converter lock); tensorflowjs is pinned at 4.22.0.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable


class _Builder:
    """Adds nodes computing a rewrite of `node` and turns `node` itself into the final op."""

    def __init__(self, graph_def, node):
        self.graph_def, self.node, self.dtype = graph_def, node, node.attr["T"].type
        self.count = 0

    def op(self, op: str, *inputs: str, **bool_attrs: bool) -> str:
        self.count += 1
        new = self.graph_def.node.add(name=f"{self.node.name}/deploykit_rewrite/{op.lower()}_{self.count}", op=op)
        new.input.extend(inputs)
        new.attr["T"].type = self.dtype
        if self.node.device:
            new.device = self.node.device
        for key, value in bool_attrs.items():
            new.attr[key].b = value
        return new.name

    def const(self, value: float) -> str:
        from tensorflow import make_tensor_proto  # noqa: PLC0415 (TensorFlow only while converting)
        from tensorflow.python.framework import dtypes

        self.count += 1
        new = self.graph_def.node.add(name=f"{self.node.name}/deploykit_rewrite/const_{self.count}", op="Const")
        new.attr["dtype"].type = self.dtype
        new.attr["value"].tensor.CopyFrom(make_tensor_proto(value, dtypes.as_dtype(self.dtype)))
        return new.name

    def become(self, op: str, *inputs: str) -> None:
        controls = [i for i in self.node.input if i.startswith("^")]
        self.node.op = op
        del self.node.input[:]
        self.node.input.extend([*inputs, *controls])
        for key in [k for k in self.node.attr if k != "T"]:
            del self.node.attr[key]


@dataclass(frozen=True)
class Rule:
    formula: str
    apply: Callable[[_Builder, list[str]], None]


def _select_zero_where(b: _Builder, test: str, value: str) -> None:
    """value, except 0 where `test` == 0 (the x == 0 convention of Xlogy, Xdivy, MulNoNan)."""
    zero = b.const(0.0)
    b.become("SelectV2", b.op("Equal", test, zero, incompatible_shape_error=True), zero, value)


RULES: dict[str, Rule] = {
    "Softsign": Rule("x / (1 + |x|)", lambda b, i: b.become("RealDiv", i[0], b.op("AddV2", b.op("Abs", i[0]), b.const(1.0)))),
    "Erfc": Rule("1 - erf(x)", lambda b, i: b.become("Sub", b.const(1.0), b.op("Erf", i[0]))),
    "Xlogy": Rule("0 if x == 0 else x * log(y)", lambda b, i: _select_zero_where(b, i[0], b.op("Mul", i[0], b.op("Log", i[1])))),
    "Xlog1py": Rule("0 if x == 0 else x * log1p(y)",
                    lambda b, i: _select_zero_where(b, i[0], b.op("Mul", i[0], b.op("Log1p", i[1])))),
    "Xdivy": Rule("0 if x == 0 else x / y", lambda b, i: _select_zero_where(b, i[0], b.op("RealDiv", i[0], i[1]))),
    "MulNoNan": Rule("0 if y == 0 else x * y", lambda b, i: _select_zero_where(b, i[1], b.op("Mul", i[0], i[1]))),
}


def rewrite(graph_def) -> dict[str, int]:
    """Rewrite, in place, every top-level node whose op has a rule; returns {op: nodes rewritten}."""
    counts: dict[str, int] = {}
    for node in list(graph_def.node):
        rule = RULES.get(node.op)
        if rule is None:
            continue
        data_inputs = [i for i in node.input if not i.startswith("^")]
        original = node.op
        rule.apply(_Builder(graph_def, node), data_inputs)
        counts[original] = counts.get(original, 0) + 1
    return counts


@contextmanager
def applied_to_frozen_graph(applied: dict[str, int]):
    """While converting, rewrite the converter's frozen graph; `applied` receives {op: count}."""
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as conversion

    from deploykit.tfenv import tensorflow

    tf = tensorflow()
    freeze = conversion._freeze_saved_model_v2

    def freeze_and_rewrite(concrete_func, control_flow_v2=False):
        graph = freeze(concrete_func, control_flow_v2)
        graph_def = graph.as_graph_def()
        counts = rewrite(graph_def)
        if not counts:
            return graph
        applied.update(counts)  # the same counts for every variant's conversion
        rewritten = tf.Graph()
        with rewritten.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
        return rewritten

    conversion._freeze_saved_model_v2 = freeze_and_rewrite
    try:
        yield applied
    finally:
        conversion._freeze_saved_model_v2 = freeze

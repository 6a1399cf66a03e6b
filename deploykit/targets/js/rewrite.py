"""Exact rewrites of TensorFlow ops the TF.js runtime lacks into ops it has, applied to the frozen
graph before the tensorflowjs converter checks its ops.

Each rule replaces one node by a few nodes computing the same function (the formula the TensorFlow
kernel implements); the last node keeps the original name, so consumers and signature outputs are
untouched. Nothing here is an approximation: parity in the TF.js runtimes then proves the bundle.
Ops without a rule (e.g. Lgamma) are still refused by the preflight, named.

Each op below is one TF.js 4.22 lacks (not in tensorflowjs/op_list/*.json) and one a Keras or TF
model produces: Softsign (`activation="softsign"`), Erfc (`tf.math.erfc`), Xlogy/Xlog1py/Xdivy
(entropy-style terms, `tf.math.xlogy`), MulNoNan (`tf.math.multiply_no_nan`). One rule is for an op
TF.js has but computes wrongly for some nodes (`lacking=False`): FusedBatchNormV3 with is_training.

The hook (`applied_to_frozen_graph`) wraps the converter's private `_freeze_saved_model_v2` while
one conversion runs (under the js target's converter lock); tensorflowjs is pinned at 4.22.0. It
also replaces the converter's bias-add normalization by one that fuses constant vectors only
(`vector_bias_adds`): upstream's also fuses scalars and matrices, which the wasm backend refuses.
And it swaps in `batchnorm.fold_batch_norms`, upstream's batch-norm folding with the weights scaled
in one numpy operation instead of one Python step per weight (the same output, bit for bit), and,
for a SavedModel source read as it is, hands the converter the intake's loaded copy instead of
letting it load the folder a second time.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

from deploykit.targets.js import batchnorm


class _Builder:
    """Adds nodes computing a rewrite of `node` and turns `node` itself into the final op."""

    def __init__(self, graph_def, node):
        self.graph_def, self.node, self.dtype = graph_def, node, node.attr["T"].type
        self.count = 0

    def op(self, op: str, *inputs: str, **attrs) -> str:
        """A new node of `op` on `inputs`, of the node's dtype; `attrs`: booleans (e.g. keep_dims),
        or the name of an index dtype attribute set to int32 (`Tidx="int32"`)."""
        self.count += 1
        new = self.graph_def.node.add(name=f"{self.node.name}/deploykit_rewrite/{op.lower()}_{self.count}", op=op)
        new.input.extend(inputs)
        new.attr["T"].type = self.dtype
        if self.node.device:
            new.device = self.node.device
        for key, value in attrs.items():
            if isinstance(value, bool):
                new.attr[key].b = value
            else:
                new.attr[key].type = _dtype(value).as_datatype_enum
        return new.name

    def const(self, value, dtype: str | None = None) -> str:
        from tensorflow import make_tensor_proto  # noqa: PLC0415 (TensorFlow only while converting)

        self.count += 1
        new = self.graph_def.node.add(name=f"{self.node.name}/deploykit_rewrite/const_{self.count}", op="Const")
        kind = _dtype(dtype) if dtype else _dtype(self.dtype)
        new.attr["dtype"].type = kind.as_datatype_enum
        new.attr["value"].tensor.CopyFrom(make_tensor_proto(value, kind))
        return new.name

    def become(self, op: str, *inputs: str) -> None:
        controls = [i for i in self.node.input if i.startswith("^")]
        self.node.op = op
        del self.node.input[:]
        self.node.input.extend([*inputs, *controls])
        for key in [k for k in self.node.attr if k != "T"]:
            del self.node.attr[key]


def _dtype(kind):
    from tensorflow.python.framework import dtypes

    return dtypes.as_dtype(kind)


@dataclass(frozen=True)
class Rule:
    formula: str
    apply: Callable[[_Builder, list[str]], None]
    applies: Callable[[object], bool] = lambda node: True  # which nodes of the op the rule is for
    lacking: bool = True  # TF.js has no kernel for the op (False: it has one that is wrong for these nodes)


def _select_zero_where(b: _Builder, test: str, value: str) -> None:
    """value, except 0 where `test` == 0 (the x == 0 convention of Xlogy, Xdivy, MulNoNan)."""
    zero = b.const(0.0)
    b.become("SelectV2", b.op("Equal", test, zero, incompatible_shape_error=True), zero, value)


def _batch_norm_moments(b: _Builder, i: list[str]) -> None:
    """y = (x - mean) / sqrt(var + epsilon) * scale + offset over the batch's own moments: what
    FusedBatchNormV3 computes with is_training=True (tf_keras' LayerNormalization calls it so).
    TF.js's FusedBatchNorm always normalizes with its mean/variance inputs, which are empty here:
    every output would be NaN."""
    x, scale, offset = i[0], i[1], i[2]
    nchw = b.node.attr["data_format"].s == b"NCHW"
    axes = b.const([0, 2, 3] if nchw else [0, 1, 2], "int32")
    mean = b.op("Mean", x, axes, keep_dims=True, Tidx="int32")
    var = b.op("Mean", b.op("SquaredDifference", x, mean), axes, keep_dims=True, Tidx="int32")
    normalized = b.op("Mul", b.op("Sub", x, mean), b.op("Rsqrt", b.op("AddV2", var, b.const(b.node.attr["epsilon"].f))))
    if nchw:  # scale and offset are per channel, axis 1
        shape = b.const([1, -1, 1, 1], "int32")
        scale, offset = (b.op("Reshape", v, shape, Tshape="int32") for v in (scale, offset))
    b.become("AddV2", b.op("Mul", normalized, scale), offset)


RULES: dict[str, Rule] = {
    "FusedBatchNormV3": Rule("(x - mean(x)) / sqrt(var(x) + epsilon) * scale + offset, moments of the batch "
                             "(is_training=True only)", _batch_norm_moments,
                             applies=lambda node: node.attr["is_training"].b, lacking=False),
    "Softsign": Rule("x / (1 + |x|)", lambda b, i: b.become("RealDiv", i[0], b.op("AddV2", b.op("Abs", i[0]), b.const(1.0)))),
    "Erfc": Rule("1 - erf(x)", lambda b, i: b.become("Sub", b.const(1.0), b.op("Erf", i[0]))),
    "Xlogy": Rule("0 if x == 0 else x * log(y)", lambda b, i: _select_zero_where(b, i[0], b.op("Mul", i[0], b.op("Log", i[1])))),
    "Xlog1py": Rule("0 if x == 0 else x * log1p(y)",
                    lambda b, i: _select_zero_where(b, i[0], b.op("Mul", i[0], b.op("Log1p", i[1])))),
    "Xdivy": Rule("0 if x == 0 else x / y", lambda b, i: _select_zero_where(b, i[0], b.op("RealDiv", i[0], i[1]))),
    "MulNoNan": Rule("0 if y == 0 else x * y", lambda b, i: _select_zero_where(b, i[1], b.op("Mul", i[0], i[1]))),
}


NOOP_CONTROLS = "control inputs from NoOps removed (a NoOp computes nothing; TF.js's executeAsync never runs one)"


def formula(op: str) -> str:
    """What a rewrite of `op` (a rule, or NoOp control inputs removed) computes instead."""
    return NOOP_CONTROLS if op == "NoOp" else RULES[op].formula


def drop_noop_controls(graph_def) -> int:
    """Remove, in place, control inputs (`^name`) that name a NoOp; returns how many.

    Keras 3's recurrent loops gate every `Enter` on a `LoopControlInputs` NoOp. A NoOp computes
    nothing, so in an inference graph the edge orders nothing, but TF.js's executeAsync only starts
    from nodes it can reach from the inputs and fails with "Cannot compute the outputs"
    (tensorflow/tfjs#4350).
    """
    noops = {n.name for n in graph_def.node if n.op == "NoOp"}
    dropped = 0
    for node in graph_def.node:
        keep = [i for i in node.input if not (i.startswith("^") and i[1:] in noops)]
        if len(keep) != len(node.input):
            dropped += len(node.input) - len(keep)
            del node.input[:]
            node.input.extend(keep)
    return dropped


def rewrite(graph_def) -> dict[str, int]:
    """Rewrite, in place, every top-level node whose op has a rule; returns {op: nodes rewritten}."""
    counts: dict[str, int] = {}
    for node in list(graph_def.node):
        rule = RULES.get(node.op)
        if rule is None or not rule.applies(node) or _uses_other_outputs(graph_def, node):
            continue
        data_inputs = [i for i in node.input if not i.startswith("^")]
        original = node.op
        rule.apply(_Builder(graph_def, node), data_inputs)
        counts[original] = counts.get(original, 0) + 1
    return counts


FUSABLE = ("Conv2D", "DepthwiseConv2dNative", "MatMul")


def vector_bias_adds(graph_def):
    """The converter's `normalize_bias_add_op`, for constant vectors only.

    Upstream turns every Add/AddV2 after a Conv2D, DepthwiseConv2dNative or MatMul into a BiasAdd
    so that grappler fuses it, whatever its other operand: a scalar (hard-swish's `x + 3` in
    MobileNetV3) or a matrix (an LSTM step's `x @ W + h @ U`). The fused kernels of TF.js's wasm
    backend then refuse the model ("FusedConv2D only supports rank-1 bias but got rank 0").
    BiasAdd adds a vector along the last axis, which is what Add does with a constant vector:
    those are converted as upstream does, the others stay additions (a fusion not made, so not a
    rewrite: `targets.js.rewrites` does not list it).
    """
    from tensorflowjs.converters import graph_rewrite_util as util

    nodes = {n.name: n for n in graph_def.node}
    for node in graph_def.node:
        if node.op not in ("AddV2", "Add") or len(node.input) < 2:
            continue
        ancestor = util.node_from_map(nodes, node.input[0])
        if ancestor.op not in FUSABLE or len(util.get_output_node_names(nodes, node.input[0])) != 1:
            continue
        if _constant_rank(nodes.get(node.input[1].split(":")[0].lstrip("^"))) == 1:
            node.op = "BiasAdd"
            node.attr["data_format"].s = b"NHWC"
    return graph_def


def _constant_rank(node) -> int | None:
    if node is None or node.op != "Const":
        return None
    return len(node.attr["value"].tensor.tensor_shape.dim)


def _uses_other_outputs(graph_def, node) -> bool:
    """Whether any node reads an output of `node` other than the first (a rule computes only that)."""
    prefix = node.name + ":"
    return any(i.startswith(prefix) and i != prefix + "0" for n in graph_def.node for i in n.input)


@contextmanager
def applied_to_frozen_graph(applied: dict[str, int], loaded: tuple | None = None):
    """While converting, rewrite the converter's frozen graph and fuse only vector bias adds;
    `applied` receives {op: count}. `loaded`: (a SavedModel folder, tf.saved_model.load of it already
    in memory), which the converter then uses instead of loading that folder again."""
    from pathlib import Path

    from tensorflowjs.converters import tf_saved_model_conversion_v2 as conversion

    from deploykit.tfenv import tensorflow

    tf = tensorflow()
    freeze = conversion._freeze_saved_model_v2

    def freeze_and_rewrite(concrete_func, control_flow_v2=False):
        graph = freeze(concrete_func, control_flow_v2)
        graph_def = graph.as_graph_def()
        counts = rewrite(graph_def)
        loops = any(n.op == "Enter" for n in graph_def.node)  # only executeAsync (loops) is stuck on them
        if loops and (dropped := drop_noop_controls(graph_def)):
            counts["NoOp"] = dropped
        if not counts:
            return graph
        applied.update(counts)  # the same counts for every variant's conversion
        rewritten = tf.Graph()
        with rewritten.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
        return rewritten

    load_model = conversion._load_model

    def load_once(saved_model_dir, saved_model_tags):
        if loaded is not None and Path(saved_model_dir) == loaded[0]:
            return loaded[1]
        return load_model(saved_model_dir, saved_model_tags)

    normalize = conversion.normalize_bias_add.normalize_bias_add_op
    fold = conversion.fold_batch_norms.fold_batch_norms
    conversion._load_model = load_once
    conversion._freeze_saved_model_v2 = freeze_and_rewrite
    conversion.normalize_bias_add.normalize_bias_add_op = vector_bias_adds
    conversion.fold_batch_norms.fold_batch_norms = batchnorm.fold_batch_norms  # the same fold, vectorized
    try:
        yield applied
    finally:
        conversion._freeze_saved_model_v2 = freeze
        conversion._load_model = load_model
        conversion.normalize_bias_add.normalize_bias_add_op = normalize
        conversion.fold_batch_norms.fold_batch_norms = fold

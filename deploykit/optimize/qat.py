"""Quantization-aware training (tfmot), with the collaborative schemes after pruning/clustering.

Choices (recorded in the manifest under `optimize.applied`):
- The whole model is annotated, as tfmot's `quantize_model` does, so its transforms apply (e.g.
  folding Conv2D + BatchNormalization). Each layer `quantize_apply` refuses (e.g. a
  `BatchNormalization` after a `Conv2D(activation=...)`) is left unannotated, so float, and the build
  goes on (`qat_unsupported = "float"`, the default; names recorded as `float_layers`);
  `qat_unsupported = "error"` refuses instead: exit 2 naming the layer.
- QAT is unsupported under tf.distribute: it always fine-tunes on one device (the default strategy),
  whatever `optimize.strategy` says, and records that.
- After pruning, sparsity-preserving QAT (`Default8BitPrunePreserveQuantizeScheme`); after clustering,
  cluster-preserving QAT (`Default8BitClusterPreserveQuantizeScheme`, keeping zeros too if pruned).
- The quantize wrappers are not stripped: they hold the learned quantization ranges the TFLite int8
  converter uses (every variant of a QAT model is converted from that graph). Pruning and clustering
  wrappers are always stripped before QAT starts.
"""
from __future__ import annotations

import re

from deploykit.errors import BadInputError
from deploykit.optimize import finetune
from deploykit.optimize.config import OptimizeSettings
from deploykit.tfenv import tensorflow, tf_keras


def scheme_for(pruned: bool, clustered: bool, preserve_sparsity: bool):
    import tensorflow_model_optimization as tfmot

    combine = tfmot.experimental.combine
    if clustered:
        return combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=pruned and preserve_sparsity), \
            "cluster_preserving" + ("+sparsity_preserving" if pruned and preserve_sparsity else "")
    if pruned and preserve_sparsity:
        return combine.Default8BitPrunePreserveQuantizeScheme(), "sparsity_preserving"
    return tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme(), "default_8bit"


def annotate(keras_model, scheme, settings: OptimizeSettings, left_float: set[str]):
    """A copy with every layer annotated (as `quantize_annotate_model` does) except `left_float`."""
    import tensorflow_model_optimization as tfmot

    def one(layer):
        if layer.name in left_float or layer.name in settings.skip_layers:
            return layer
        return tfmot.quantization.keras.quantize_annotate_layer(layer)

    return tf_keras().models.clone_model(keras_model, clone_function=one)


_REFUSED = re.compile(r"Layer (\S+?):<class '[^']+'> is not supported")
MAX_REFUSED = 200


def quantize(keras_model, scheme, settings: OptimizeSettings):
    """(QAT model, layers left float). tfmot's own annotation first, so its transforms (e.g. folding
    Conv2D + BatchNormalization) apply; each layer quantize_apply refuses is then left float, one at a
    time, or refused with exit 2 under `qat_unsupported = "error"`."""
    import tensorflow_model_optimization as tfmot

    left_float: set[str] = set()
    for _ in range(MAX_REFUSED):
        annotated = annotate(keras_model, scheme, settings, left_float)
        try:
            with tfmot.quantization.keras.quantize_scope():
                return tfmot.quantization.keras.quantize_apply(annotated, scheme), sorted(left_float)
        except RuntimeError as exc:
            found = _REFUSED.search(str(exc))
            if not found or found.group(1) in left_float:
                raise BadInputError(f"optimize.qat: tfmot refused the model: {str(exc).splitlines()[0][:300]}") from None
            if settings.qat_unsupported == "error":
                raise BadInputError(f"optimize.qat: layer(s) {found.group(1)} cannot be quantization-aware trained "
                                    "(e.g. BatchNormalization after Conv2D(activation=...)); set "
                                    "optimize.qat_unsupported = \"float\" to leave it float, or put the activation "
                                    "after the BatchNormalization") from None
            left_float.add(found.group(1))
    raise BadInputError(f"optimize.qat: more than {MAX_REFUSED} layers refused by tfmot")


def apply(keras_model, data: finetune.Labelled, settings: OptimizeSettings, loss, *, pruned: bool, clustered: bool):
    """Quantization-aware fine-tuning; return (QAT model, facts for the manifest)."""

    default = tensorflow().distribute.get_strategy()  # QAT is unsupported under tf.distribute
    scheme, scheme_name = scheme_for(pruned, clustered, settings.preserve_sparsity)
    copy = finetune.copy_in_scope(keras_model, default)
    model, unsupported = quantize(copy, scheme, settings)
    logs = finetune.fit(model, data, settings, default, loss)
    facts = {"technique": "qat", "scheme": scheme_name, "float_layers": unsupported,
             "unsupported_policy": settings.qat_unsupported,
             "strategy": "none (QAT is unsupported under tf.distribute: fine-tuned on one device)"
             if settings.strategy != "none" else "none",
             "final_loss": logs.get("loss")}
    return model, facts


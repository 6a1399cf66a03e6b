"""Quantization-aware training (tfmot), with the collaborative schemes after pruning/clustering.

Choices (recorded in the manifest under `optimize.applied`):
- Layers the quantize registry cannot quantize on their own (e.g. a `BatchNormalization` after a
  `Conv2D(activation=...)`, which tfmot can only fold into an activation-free conv) are not annotated
  and stay float (`qat_unsupported = "float"`, the default; their names are recorded as
  `float_layers`). `qat_unsupported = "error"` refuses instead: exit 2 naming the layers.
- QAT is unsupported under tf.distribute: it always fine-tunes on one device (the default strategy),
  whatever `optimize.strategy` says, and records that.
- After pruning, sparsity-preserving QAT (`Default8BitPrunePreserveQuantizeScheme`); after clustering,
  cluster-preserving QAT (`Default8BitClusterPreserveQuantizeScheme`, keeping zeros too if pruned).
- The quantize wrappers are not stripped: they hold the learned quantization ranges the TFLite int8
  converter uses (every variant of a QAT model is converted from that graph). Pruning and clustering
  wrappers are always stripped before QAT starts.
"""
from __future__ import annotations

from ..errors import BadInputError
from ..tfenv import tensorflow, tf_keras
from . import finetune
from .config import OptimizeSettings


def scheme_for(pruned: bool, clustered: bool, preserve_sparsity: bool):
    import tensorflow_model_optimization as tfmot

    combine = tfmot.experimental.combine
    if clustered:
        return combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=pruned and preserve_sparsity), \
            "cluster_preserving" + ("+sparsity_preserving" if pruned and preserve_sparsity else "")
    if pruned and preserve_sparsity:
        return combine.Default8BitPrunePreserveQuantizeScheme(), "sparsity_preserving"
    return tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme(), "default_8bit"


def annotate(keras_model, scheme, settings: OptimizeSettings):
    """(annotated copy, names of the layers left float)."""
    import tensorflow_model_optimization as tfmot

    registry = scheme.get_quantize_registry()
    left_float: list[str] = []

    def one(layer):
        if layer.name not in settings.skip_layers and registry.supports(layer):
            return tfmot.quantization.keras.quantize_annotate_layer(layer)
        left_float.append(layer.name)
        return layer

    annotated = tf_keras().models.clone_model(keras_model, clone_function=one)
    return annotated, left_float


def apply(keras_model, data: finetune.Labelled, settings: OptimizeSettings, loss, *, pruned: bool, clustered: bool):
    """Quantization-aware fine-tuning; return (QAT model, facts for the manifest)."""
    import tensorflow_model_optimization as tfmot

    default = tensorflow().distribute.get_strategy()  # QAT is unsupported under tf.distribute
    scheme, scheme_name = scheme_for(pruned, clustered, settings.preserve_sparsity)
    copy = finetune.copy_in_scope(keras_model, default)
    annotated, left_float = annotate(copy, scheme, settings)
    unsupported = [n for n in left_float
                   if n not in settings.skip_layers and type(annotated.get_layer(n)).__name__ != "InputLayer"]
    if unsupported and settings.qat_unsupported == "error":
        raise BadInputError(f"optimize.qat: layer(s) {', '.join(unsupported)} cannot be quantization-aware trained "
                            "(e.g. BatchNormalization after Conv2D(activation=...)); set optimize.qat_unsupported = "
                            "\"float\" to leave them float, or put the activation after the BatchNormalization")
    try:
        with tfmot.quantization.keras.quantize_scope():
            model = tfmot.quantization.keras.quantize_apply(annotated, scheme)
    except (RuntimeError, ValueError) as exc:
        raise BadInputError(f"optimize.qat: tfmot refused the model: {str(exc).splitlines()[0][:300]}") from None
    logs = finetune.fit(model, data, settings, default, loss)
    facts = {"technique": "qat", "scheme": scheme_name, "float_layers": unsupported,
             "unsupported_policy": settings.qat_unsupported,
             "strategy": "none (QAT is unsupported under tf.distribute: fine-tuned on one device)"
             if settings.strategy != "none" else "none",
             "final_loss": logs.get("loss")}
    return model, facts


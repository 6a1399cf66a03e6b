"""Weight clustering (tfmot `cluster_weights`): each clustered kernel keeps at most N distinct values.

Layers the clustering registry supports and that have weights are clustered, except
`optimize.skip_layers`. After pruning, `preserve_sparsity` (default on) keeps the pruned zeros
(pruning-preserving clustering). Fine-tuning trains the centroids; the wrappers are stripped after.
"""
from __future__ import annotations

from deploykit.errors import BadInputError
from deploykit.optimize import finetune
from deploykit.optimize.config import OptimizeSettings
from deploykit.tfenv import tf_keras


def clusterable(layer, skip) -> bool:
    from tensorflow_model_optimization.python.core.clustering.keras.clustering_registry import ClusteringRegistry

    return finetune.wrappable(layer, skip, ClusteringRegistry)


def apply(keras_model, data: finetune.Labelled, settings: OptimizeSettings, loss, strategy, *, pruned: bool):
    """Cluster and fine-tune; return (stripped model, facts for the manifest)."""
    import tensorflow_model_optimization as tfmot

    init = getattr(tfmot.clustering.keras.CentroidInitialization, settings.cluster_init.upper())
    preserve = bool(pruned and settings.preserve_sparsity)
    names: list[str] = []

    def wrap(layer):
        if clusterable(layer, settings.skip_layers):
            names.append(layer.name)
            return tfmot.clustering.keras.cluster_weights(
                layer, number_of_clusters=settings.cluster, cluster_centroids_init=init, preserve_sparsity=preserve)
        return layer

    copy = finetune.copy_in_scope(keras_model, strategy)
    with strategy.scope():
        wrapped = tf_keras().models.clone_model(copy, clone_function=wrap)
    if not names:
        raise BadInputError("optimize.cluster: no layer of the model can be clustered (after optimize.skip_layers)")
    logs = finetune.fit(wrapped, data, settings, strategy, loss)
    stripped = finetune.plain_copy(tfmot.clustering.keras.strip_clustering(wrapped))
    facts = {"technique": "cluster", "clusters": settings.cluster, "init": settings.cluster_init,
             "preserve_sparsity": preserve, "layers": names, "final_loss": logs.get("loss")}
    return stripped, facts

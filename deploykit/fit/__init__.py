"""The distributed fit stage: train a user's (or the bundled) model under a tf.distribute strategy,
survive a lost worker, and hand `model.keras` + a SavedModel + `metrics.json` to the build.

    deploykit.fit.train(config_path_or_None, out=RUN_DIR, local_workers=0) -> metrics dict

TensorFlow is imported only when training starts.
"""
from __future__ import annotations

from deploykit.fit.api import train

__all__ = ["train"]

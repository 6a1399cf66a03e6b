"""The build's SavedModel export (deploykit/intake/export.py): when its signatures capture only
variables, it saves those variables and not the model's object graph (whose per-layer functions
every load would revive); anything else captured (a lookup table) keeps the model in the export.
Either way the export stands on its own: it loads and answers after its source is gone."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from deploykit.intake import loader
from deploykit.intake.sniff import sniff

from . import models


@pytest.mark.parametrize("keras", ["tf_keras", "keras3"])
def test_a_keras_models_export_holds_its_variables_not_its_layers(tf, tmp_path, keras):
    source = models.multi_io(tmp_path / "multi_io.keras", keras=keras)
    model = loader.load(sniff(str(source)))
    data = models.multi_io_data(rows=5)
    want = model.call({k: tf.constant(v) for k, v in data.items()})
    model.export_saved_model(tmp_path / "export")
    del model
    source.unlink()

    restored = tf.saved_model.load(str(tmp_path / "export"))
    assert not hasattr(restored, "model") and len(restored.captured_variables) == 6  # 3 Dense: kernel + bias
    got = restored.signatures["serving_default"](**{k: tf.constant(v) for k, v in data.items()})
    assert sorted(got) == sorted(want) == ["probs", "score"]
    for name in got:
        np.testing.assert_allclose(got[name].numpy(), want[name].numpy(), rtol=1e-6, atol=1e-7)  # eager vs graph: ulps


def test_an_export_that_captures_a_table_keeps_the_model(tf, tmp_path):
    source = models.string_lookup_saved_model(tmp_path / "words")
    model = loader.load(sniff(str(source)))
    model.export_saved_model(tmp_path / "export")
    del model
    shutil.rmtree(source)

    restored = tf.saved_model.load(str(tmp_path / "export"))
    assert hasattr(restored, "model") and not hasattr(restored, "captured_variables")
    got = restored.signatures["serving_default"](text=tf.constant(["The cat", "sat on the mat"]))
    np.testing.assert_array_equal(got["ids"].numpy(), [[1, 2, 0, 0], [3, 0, 1, 0]])

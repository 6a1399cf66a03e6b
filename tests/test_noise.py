"""The float32 noise floor (deploykit/validation/noise.py): it must raise budgets only as far as
rounding reaches, so a faithful deep artifact passes and a corrupted weight still fails."""
from __future__ import annotations

import numpy as np
import pytest

from deploykit.intake import loader
from deploykit.validation import noise, parity


def _deep(keras, depth: int, seed: int = 0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((32,), name="x")
    h = inp
    for i in range(depth):
        h = keras.layers.Dense(64, activation="tanh", name=f"d{i}")(h)
    return keras.Model(inp, keras.layers.Dense(10, name="y")(h))


def _loaded(keras_model):
    from deploykit.intake.sniff import ModelSource

    return loader._from_keras(ModelSource("callable", "test:deep"), keras_model, tf_keras_model=True, findings=[])


def test_raised_budgets_keep_the_default_the_users_choice_and_absent_metrics():
    assert noise.raised_budgets({"max_abs_rel": 1e-5}, 1e-7, {}) == {"max_abs_rel": 1e-5}  # floor below: default
    assert noise.raised_budgets({"max_abs_rel": 1e-5}, 4e-6, {}) == {"max_abs_rel": 4e-5}
    assert noise.raised_budgets({"max_abs_rel": 1e-5}, 4e-6, {"max_abs_rel": 1e-5}) == {"max_abs_rel": 1e-5}
    assert noise.raised_budgets({"cosine": 0.99}, 4e-6, {}) == {"cosine": 0.99}
    assert noise.raised_budgets({"max_abs_rel": 1e-5}, None, {}) == {"max_abs_rel": 1e-5}


def test_floor_grows_with_depth_and_restores_the_weights(keras):
    x = {"x": np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32)}
    floors = {}
    for depth in (2, 24):
        m = _loaded(_deep(keras, depth))
        before = [w.copy() for w in m.keras_model.get_weights()]
        ref = m.predict(x)
        floors[depth] = noise.reference_noise(m, x, ref)["y"]
        after = m.keras_model.get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(before, after))  # put back exactly
        assert np.array_equal(m.predict(x)["y"], ref["y"])
    assert 0 < floors[2] < floors[24] < 1e-4, floors


def test_a_corrupted_weight_still_fails_the_raised_budget(keras):
    """The budget rises to FACTOR x floor; two swapped kernel columns (a layout bug) move outputs
    far more, and so does one element of one kernel off by 1%."""
    x = {"x": np.random.default_rng(1).normal(size=(64, 32)).astype(np.float32)}
    good = _loaded(_deep(keras, 24))
    ref = good.predict(x)
    floor = noise.reference_noise(good, x, ref)["y"]
    budget = noise.raised_budgets({"max_abs_rel": 1e-5}, floor, {})

    def corrupted(edit):
        bad = _deep(keras, 24)
        weights = bad.get_weights()
        edit(weights[10])  # the kernel of layer d5
        bad.set_weights(weights)
        return parity.compare(good.contract, ref, _loaded(bad).predict(x), budget)

    metrics, failures = corrupted(lambda k: k.__setitem__((slice(None), [3, 4]), k[:, [4, 3]]))
    assert failures and metrics["y"]["max_abs_rel"] > 100 * budget["max_abs_rel"], (metrics, budget)
    metrics, failures = corrupted(lambda k: k.flat.__setitem__(7, k.flat[7] * 1.01))
    assert failures, (metrics, budget)


@pytest.mark.parametrize("depth", [24])
def test_floor_bounds_a_real_reordering_of_the_same_float32_math(keras, depth):
    """A faithful re-computation in another order (batch of 1 instead of 64, float64 matmuls
    rounded back) stays within FACTOR x floor."""
    x = {"x": np.random.default_rng(2).normal(size=(64, 32)).astype(np.float32)}
    m = _loaded(_deep(keras, depth))
    ref = m.predict(x)
    floor = noise.reference_noise(m, x, ref)["y"]
    h = x["x"].astype(np.float64)
    layers = m.keras_model.layers[1:]
    for layer in layers:
        w, b = (v.astype(np.float64) for v in layer.get_weights())
        h = h @ w + b
        if layer.get_config()["activation"] == "tanh":
            h = np.tanh(h)
    metrics = parity.output_metrics(ref["y"], h.astype(np.float32))
    assert metrics["max_abs_rel"] <= noise.FACTOR * floor, (metrics["max_abs_rel"], floor)

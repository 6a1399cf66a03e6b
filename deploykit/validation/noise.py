"""The reference model's own float32 noise floor, and the max_abs_rel budgets it sets.

A faithful float32 artifact differs from TensorFlow only by float32 rounding in another order
(XNNPACK's blocking, batch-norm folded into the convolution weights, fused activations). Over a
deep network that adds up: ResNet50's float32 TFLite artifact is 2e-5 away from TensorFlow, above
a fixed budget of 1e-5, though nothing was converted wrongly. The size of that noise is a property
of the model, so it is measured on the model:

  floor = max_abs_rel between the reference outputs and the same model run on the same rows with
          every float variable and every float input moved by one unit in the last place (a random
          sign per element): the outputs' sensitivity to one rounding step everywhere.

Every variant's `max_abs_rel` budget becomes max(the default, FACTOR x floor) unless the user set
that budget; the manifest records the floor, the factor and every budget it raised
(`data.noise_floor`). A conversion error (a swapped or corrupted weight, a wrongly converted op)
moves outputs by orders of magnitude more than rounding does, and still fails
(tests/test_noise.py: a deep model that needs the raise, and a corrupted weight that still fails).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

ULP = 2.0 ** -23  # float32's unit in the last place, relative
FACTOR = 10.0  # the artifact may be this many times noisier than one rounding step of the reference
METHOD = "one-ulp perturbation of every float variable and input"


def reference_noise(model, inputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                    seed: int = 0) -> dict[str, float]:
    """max_abs_rel per output between `reference` and the perturbed model (runs TensorFlow)."""
    from deploykit.validation.parity import output_metrics

    rng = np.random.default_rng(seed)
    variables = [v for v in _variables(model.trackable) if v.dtype.is_floating]
    saved = [v.numpy() for v in variables]
    try:
        for v, w in zip(variables, saved):
            v.assign(_nudge(w, rng))
        moved = {k: _nudge(x, rng) if np.issubdtype(x.dtype, np.floating) else x for k, x in inputs.items()}
        outputs = model.predict(moved)
    finally:
        for v, w in zip(variables, saved):
            v.assign(w)
    return {name: output_metrics(np.asarray(ref), np.asarray(outputs[name]))["max_abs_rel"]
            for name, ref in reference.items() if np.issubdtype(np.asarray(ref).dtype, np.floating)}


def raised_budgets(budget: dict[str, float], floor: float | None, user_set: Mapping[str, float]) -> dict[str, float]:
    """`budget` with max_abs_rel raised to FACTOR x floor where that is larger and the user did not set it."""
    if floor is None or "max_abs_rel" not in budget or "max_abs_rel" in user_set:
        return budget
    return {**budget, "max_abs_rel": max(budget["max_abs_rel"], float(f"{FACTOR * floor:.3g}"))}


def _nudge(x: np.ndarray, rng) -> np.ndarray:
    x = np.asarray(x)
    return (x * (1 + ULP * rng.choice([-1.0, 1.0], size=x.shape))).astype(x.dtype)


def _variables(trackable) -> list:
    found = getattr(trackable, "variables", None)
    if callable(found):
        found = found()
    return list(found or [])

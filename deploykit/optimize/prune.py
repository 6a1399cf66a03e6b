"""Magnitude pruning (tfmot `prune_low_magnitude`) with a schedule that actually reaches its target.

The trap: a pruning step happens only on steps `begin + k * frequency` up to `end_step`, and
`PolynomialDecay` defaults to `frequency=100`. With fewer fine-tuning steps than that nothing is
pruned and nothing complains. Here the fine-tuning length is known before training
(`epochs * ceil(rows / batch_size)` steps), so:

- settings left unset are derived: `end_step` at about 70% of the steps (the rest recovers
  accuracy at full sparsity), `frequency` giving about 10 pruning turns, and `end_step` moved onto
  a pruning turn so the last turn applies the full target;
- settings given explicitly that cannot reach the target within the fine-tuning steps are refused
  (exit 2, naming the field and the step count);
- the sparsity of the stripped weights is measured afterwards anyway (`measure.sparsity`); a
  shortfall of more than one point fails the build (exit 3).
"""
from __future__ import annotations

from deploykit.errors import BadInputError
from deploykit.optimize import finetune
from deploykit.optimize.config import OptimizeSettings
from deploykit.tfenv import tf_keras

RECOVERY_FRACTION = 0.3  # share of the fine-tuning steps left after the last pruning turn (derived end_step)
TURNS = 10  # pruning turns between begin_step and end_step (derived frequency)


def derive_schedule(settings: OptimizeSettings, total_steps: int) -> dict:
    """begin/end step and frequency for `total_steps` fine-tuning steps (0 .. total_steps - 1).

    Returns the schedule plus `derived` (the fields that were computed) ; raises BadInputError when
    explicit settings cannot reach the target sparsity."""
    last = total_steps - 1
    derived = []
    begin = settings.begin_step
    if begin is None:
        begin = 0
        derived.append("begin_step")
    steps_hint = (f"the fine-tuning runs {total_steps} step(s) (epochs {settings.epochs} x "
                  f"ceil(rows / batch_size {settings.batch_size})): raise optimize.epochs or lower the setting")
    if begin >= last:
        raise BadInputError(f"optimize.begin_step: {begin} leaves no pruning step; {steps_hint}")
    if settings.schedule == "constant":
        frequency = settings.frequency
        if frequency is None:
            frequency = max(1, min(100, (last - begin) // TURNS))
            derived.append("frequency")
        return {"schedule": "constant", "begin_step": begin, "end_step": -1, "frequency": frequency,
                "total_steps": total_steps, "derived": derived}
    end = settings.end_step
    if end is not None and end > last:
        raise BadInputError(f"optimize.end_step: {end} is past the last fine-tuning step ({last}); sparsity would "
                            f"stop short of the target; {steps_hint}")
    if end is None:
        end = begin + max(1, int((last - begin) * (1 - RECOVERY_FRACTION)))
        end = min(end, last)
        derived.append("end_step")
    frequency = settings.frequency
    if frequency is None:
        frequency = max(1, min(100, (end - begin) // TURNS))
        derived.append("frequency")
        if "end_step" in derived:
            end = begin + frequency * max(1, (end - begin) // frequency)  # the last turn lands on end_step
    if frequency > end - begin:
        raise BadInputError(f"optimize.frequency: {frequency} is longer than the pruning window "
                            f"(begin_step {begin} to end_step {end}): only the first turn would prune, at "
                            f"sparsity 0 for polynomial_decay; {steps_hint}")
    if (end - begin) % frequency:
        if "end_step" in derived:
            end = begin + frequency * ((end - begin) // frequency)
        else:
            raise BadInputError(f"optimize.end_step: {end} - begin_step {begin} is not a multiple of frequency "
                                f"{frequency}: the last pruning turn would fall before end_step and stop short of "
                                "the target")
    return {"schedule": "polynomial_decay", "begin_step": begin, "end_step": end, "frequency": frequency,
            "total_steps": total_steps, "derived": derived}


def _schedule(settings: OptimizeSettings, plan: dict):
    import tensorflow_model_optimization as tfmot

    if plan["schedule"] == "constant":
        return tfmot.sparsity.keras.ConstantSparsity(settings.prune, begin_step=plan["begin_step"],
                                                     end_step=-1, frequency=plan["frequency"])
    return tfmot.sparsity.keras.PolynomialDecay(0.0, settings.prune, begin_step=plan["begin_step"],
                                                end_step=plan["end_step"], frequency=plan["frequency"])


def prunable(layer, skip) -> bool:
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    return finetune.wrappable(layer, skip, PruneRegistry)


def apply(keras_model, data: finetune.Labelled, settings: OptimizeSettings, loss, strategy):
    """Prune and fine-tune; return (stripped model, facts for the manifest)."""
    import tensorflow_model_optimization as tfmot

    total = settings.epochs * data.steps(settings.batch_size)
    plan = derive_schedule(settings, total)
    schedule = _schedule(settings, plan)
    wrapped_names: list[str] = []

    def wrap(layer):
        if prunable(layer, settings.skip_layers):
            wrapped_names.append(layer.name)
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    copy = finetune.copy_in_scope(keras_model, strategy)
    with strategy.scope():  # pruning under a strategy must wrap inside the same scope
        wrapped = tf_keras().models.clone_model(copy, clone_function=wrap)
    if not wrapped_names:
        raise BadInputError("optimize.prune: no layer of the model can be pruned (after optimize.skip_layers)")
    logs = finetune.fit(wrapped, data, settings, strategy, loss, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = finetune.plain_copy(tfmot.sparsity.keras.strip_pruning(wrapped))
    facts = {"technique": "prune", "target_sparsity": settings.prune, **plan,
             "layers": wrapped_names, "skipped": [n for n in settings.skip_layers], "final_loss": logs.get("loss")}
    return stripped, facts

"""The optimize stage: settings, schedules that really prune, QAT's refused layer pattern, clustering,
stripped wrappers, measured figures in the manifest, budgets (exit 3)."""
from __future__ import annotations

import numpy as np
import pytest

from deploykit.config import make_config
from deploykit.errors import BadInputError, BudgetError
from deploykit.optimize.config import OptimizeSettings
from deploykit.optimize.prune import derive_schedule
from tests.conftest import NO_LATENCY, run_cli

WRAPPER_MARKS = ("prune_low_magnitude", "pruning_step", "/mask", "threshold", "cluster_centroids",
                 "pulling_indices", "cluster_weights")


# ---- builders and data (tiny, so fine-tuning takes a second) ----------------------------------------
def tiny_cnn():
    from deploykit.tfenv import tf_keras

    keras = tf_keras()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="pixels")
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(32, activation="relu", name="hidden")(h)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="digit")(h))


def conv_relu_bn():
    """The pattern tfmot's QAT refuses: BatchNormalization after Conv2D(activation=...)."""
    from deploykit.tfenv import tf_keras

    keras = tf_keras()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="pixels")
    h = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Flatten()(h)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="digit")(h))


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory):
    from deploykit.intake.example import digits

    x, y, _, _ = digits(0)
    path = tmp_path_factory.mktemp("optimize-data") / "digits.npz"
    np.savez(path, pixels=x[:400], y=y[:400])
    return str(path)


def _apply(builder, optimize: dict, data: str, tmp_path):
    """Run the stage directly on a tf_keras model: (Optimized, the model as loaded)."""
    from deploykit import optimize as opt
    from deploykit.intake import loader
    from deploykit.intake.sniff import ModelSource
    from deploykit.progress import silent

    model = loader._from_keras(ModelSource("callable", "tests:model", keras="tf_keras"), builder(),
                               tf_keras_model=True, findings=[])
    cfg = make_config(optimize={"epochs": 1, "data": data, "baseline": False, **optimize}, out=str(tmp_path / "out"))
    return opt.apply(model, cfg, tmp_path, silent()), model


def _layer_types(keras_model) -> set[str]:
    return {type(layer).__name__ for layer in keras_model.layers}


# ---- settings (no TensorFlow) ------------------------------------------------------------------------
@pytest.mark.parametrize("table, field", [
    ({"prune": 1.5}, "optimize.prune"),
    ({"prune": 0.5, "schedul": "constant"}, "schedul"),
    ({"cluster": 1}, "optimize.cluster"),
    ({"prune": 0.5, "schedule": "cubic"}, "optimize.schedule"),
    ({"qat": "yes"}, "optimize.qat"),
    ({"qat": True, "budgets": {"accuracy": 0.1}}, "optimize.budgets.accuracy"),
    ({"prune": 0.5, "begin_step": 10, "end_step": 5}, "optimize.end_step"),
])
def test_bad_settings_fail_naming_the_field(table, field):
    with pytest.raises(BadInputError, match=field.replace(".", r"\.")):
        make_config({"optimize": table})


def test_bad_flags_and_config_are_exit_2_before_any_work(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[optimize]\nprune = 0.8\nfrequncy = 10\n")
    result = run_cli("build", "--config", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "frequncy" in result.stderr
    result = run_cli("build", "--prune", "80", "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "optimize.prune" in result.stderr
    assert not (tmp_path / "out").exists()


def test_qat_defaults_to_the_int8_variant():
    assert make_config({"optimize": {"qat": True}}).quantize == ("int8",)
    assert make_config({"optimize": {"qat": True}}, quantize="float32,int8").quantize == ("float32", "int8")


# ---- the schedule: reaches the target, or is refused --------------------------------------------------
def _turns(plan):
    return list(range(plan["begin_step"], plan["end_step"] + 1, plan["frequency"]))


@pytest.mark.parametrize("total", [2, 7, 45, 90, 1000, 100_000])
def test_derived_schedule_lands_a_pruning_turn_on_end_step(total):
    plan = derive_schedule(OptimizeSettings(prune=0.8), total)
    assert plan["end_step"] <= total - 1, "end_step must be inside the fine-tuning steps"
    assert _turns(plan)[-1] == plan["end_step"], "the last turn must apply the full target"
    assert len(_turns(plan)) >= 2 and plan["frequency"] <= 100


def test_tfmot_default_frequency_with_short_fine_tuning_is_refused():
    # 90 steps with PolynomialDecay's default frequency=100: tfmot would prune nothing, silently.
    with pytest.raises(BadInputError, match=r"optimize\.frequency: 100 .*90 step"):
        derive_schedule(OptimizeSettings(prune=0.8, frequency=100), 90)
    with pytest.raises(BadInputError, match=r"optimize\.end_step: 500 is past the last fine-tuning step \(89\)"):
        derive_schedule(OptimizeSettings(prune=0.8, end_step=500), 90)
    with pytest.raises(BadInputError, match=r"optimize\.end_step: 50 .* not a multiple of frequency 20"):
        derive_schedule(OptimizeSettings(prune=0.8, end_step=50, frequency=20), 90)


def test_a_short_fine_tuning_still_reaches_the_target(digits_npz, tmp_path):
    """10 steps in all (400 rows, 80% for training, batch 32, one epoch): the derived schedule is
    corrected to fit, and the stripped weights really are 80% zeros."""
    optimized, _ = _apply(tiny_cnn, {"prune": 0.8}, digits_npz, tmp_path)
    facts = optimized.facts
    plan = facts["applied"][0]
    assert plan["total_steps"] == 10 and plan["end_step"] <= 9
    assert abs(facts["sparsity"]["overall"] - 0.8) <= 0.01
    assert set(facts["sparsity"]["layers"]) == {"conv", "hidden", "digit"}
    assert "PruneLowMagnitude" not in _layer_types(optimized.model.keras_model)


def test_pruning_under_a_strategy_wraps_inside_its_scope_and_qat_runs_on_one_device(digits_npz, tmp_path):
    optimized, _ = _apply(tiny_cnn, {"prune": 0.7, "strategy": "mirrored"}, digits_npz, tmp_path)
    assert abs(optimized.facts["sparsity"]["overall"] - 0.7) <= 0.01
    optimized, _ = _apply(tiny_cnn, {"qat": True, "strategy": "mirrored"}, digits_npz, tmp_path)
    assert optimized.facts["applied"][0]["strategy"].startswith("none (QAT is unsupported under tf.distribute")


# ---- QAT and clustering ----------------------------------------------------------------------------
def test_qat_leaves_the_refused_layer_float_and_says_so(digits_npz, tmp_path):
    optimized, _ = _apply(conv_relu_bn, {"qat": True}, digits_npz, tmp_path)
    qat = optimized.facts["applied"][0]
    assert qat["technique"] == "qat" and qat["float_layers"] == ["bn"]
    types = {type(layer).__name__: layer for layer in optimized.model.keras_model.layers}
    assert "QuantizeWrapperV2" in types and "BatchNormalization" in types
    assert optimized.model.contract.output_names == ["digit"]  # not tfmot's "quant_digit"


def test_qat_can_refuse_the_layer_instead(digits_npz, tmp_path):
    with pytest.raises(BadInputError, match=r"optimize\.qat: layer\(s\) bn cannot"):
        _apply(conv_relu_bn, {"qat": True, "qat_unsupported": "error"}, digits_npz, tmp_path)


def test_clustering_keeps_at_most_n_values_per_kernel(digits_npz, tmp_path):
    optimized, _ = _apply(tiny_cnn, {"cluster": 6}, digits_npz, tmp_path)
    counts = optimized.facts["unique_weights"]
    assert set(counts) == {"conv/kernel", "hidden/kernel", "digit/kernel"}
    assert all(1 < n <= 6 for n in counts.values()), counts
    keras_model = optimized.model.keras_model
    for layer in keras_model.layers:
        if layer.name in ("conv", "hidden", "digit"):
            assert np.unique(layer.kernel.numpy()).size <= 6
    assert "ClusterWeights" not in _layer_types(keras_model)


# ---- whole builds -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pruned_clustered_build(tmp_path_factory):
    import deploykit

    out = tmp_path_factory.mktemp("optimize-build") / "out"
    doc = deploykit.build(out=str(out), quantize="float32,int8",
                          **{**NO_LATENCY, "optimize": {"prune": 0.8, "cluster": 8, "epochs": 2}})
    return out, doc


@pytest.mark.slow
def test_build_records_what_was_applied_and_measured(pruned_clustered_build):
    _, doc = pruned_clustered_build
    opt = doc["optimize"]
    assert [a["technique"] for a in opt["applied"]] == ["prune", "cluster"]
    assert opt["applied"][1]["preserve_sparsity"] is True
    assert abs(opt["sparsity"]["overall"] - 0.8) <= 0.01  # measured on the stripped weights
    assert all(n <= 8 + 1 for n in opt["unique_weights"].values())  # 8 centroids (+ the preserved zero)
    assert opt["metric"]["name"] == "accuracy" and 0 <= opt["metric"]["after"] <= 1
    by_variant = {a["variant"]: a for a in opt["artifacts"]}
    assert set(by_variant) == {"float32", "int8"}
    for row in by_variant.values():
        assert row["gzip_bytes"] < row["baseline_gzip_bytes"]  # a pruned, clustered model compresses
        assert row["metric"] is not None and row["baseline_metric"] is not None
    assert by_variant["int8"]["gzip_ratio_to_baseline_float32"] > by_variant["float32"]["gzip_ratio"]
    assert opt["passed"] and doc["passed"]


@pytest.mark.slow
def test_no_wrapper_reaches_an_artifact(pruned_clustered_build):
    from ai_edge_litert.interpreter import Interpreter

    out, doc = pruned_clustered_build
    for a in doc["artifacts"]:
        names = [t["name"].lower() for t in Interpreter(model_path=str(out / a["path"])).get_tensor_details()]
        leaked = [n for n in names if any(mark in n for mark in WRAPPER_MARKS)]
        assert not leaked, f"{a['path']}: {leaked}"


@pytest.mark.slow
def test_budget_breach_is_exit_3_with_the_manifest(digits_npz, tmp_path):
    import deploykit

    with pytest.raises(BudgetError, match=r"optimize: .*gzip") as info:
        deploykit.build(model="tests.test_optimize:tiny_cnn", data=digits_npz, quantize="float32", out=str(tmp_path / "out"),
                        **{**NO_LATENCY, "optimize": {"prune": 0.5, "epochs": 1, "budgets": {"min_gzip_ratio": 50}}})
    opt = info.value.manifest["optimize"]
    assert not opt["passed"] and opt["failures"][0]["metric"] == "min_gzip_ratio"
    assert opt["fine_tune"]["data"].startswith("--data digits.npz")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_model_that_cannot_be_optimized_is_exit_2(tmp_path, keras, tf):
    import deploykit

    saved = tmp_path / "saved"
    tf.saved_model.save(tiny_cnn(), str(saved))
    with pytest.raises(BadInputError, match="needs a tf_keras model"):
        deploykit.build(model=str(saved), out=str(tmp_path / "out"), **{**NO_LATENCY, "optimize": {"prune": 0.5}})

"""Every settings table goes through `deploykit.settings`: a wrong type is exit 2 naming the key,
whichever table it is in (build, optimize, fit, regression thresholds). Fast: no TensorFlow."""
from __future__ import annotations

import pytest

from deploykit.errors import BadInputError


def _fails(call, *args, **kwargs) -> str:
    with pytest.raises(BadInputError) as err:
        call(*args, **kwargs)
    assert err.value.exit_code == 2
    return err.value.message


@pytest.mark.parametrize("line, named", [
    ('parity_samples = "many"', "parity_samples: expected a whole number, got 'many'"),
    ("budgets = 5", "budgets: expected a table, got 5"),
    ("latency = 3", "latency: expected a table of settings, got 3"),
    ("quantize = 5", "quantize: expected a list, got 5"),
    ('[budgets.tflite.int8]\nmax_abs = "x"', "budgets.tflite.int8.max_abs: expected a number, got 'x'"),
    ('[latency]\nwarmup = "x"', "latency.warmup: expected a whole number, got 'x'"),
])
def test_build_config_types(tmp_path, line, named):
    from deploykit.config import load_config_file, make_config

    (tmp_path / "dk.toml").write_text(line + "\n")
    assert named in _fails(lambda: make_config(load_config_file(tmp_path / "dk.toml")))


def test_build_budgets_are_tables_of_numbers():
    from deploykit.config import make_config

    assert make_config(budgets={"tflite": {"int8": {"max_abs": 1}}}).budgets == {"tflite": {"int8": {"max_abs": 1.0}}}
    assert "budgets.tflite: expected a table" in _fails(make_config, budgets={"tflite": 5})


@pytest.mark.parametrize("table, named", [
    ({"prune": "x"}, "optimize.prune: expected a number, got 'x'"),
    ({"epochs": 1.5}, "optimize.epochs: expected a whole number"),
    ({"qat": "yes"}, "optimize.qat: expected true or false"),
    ({"skip_layers": ["dense", 3]}, "optimize.skip_layers[1]: expected a string"),
    ({"budgets": 5}, "optimize.budgets: expected a table"),
    ({"budgets": {"metric_drop": "x"}}, "optimize.budgets.metric_drop: expected a number"),
    ({"budgets": {"accuracy": 0.1}}, "optimize.budgets.accuracy: unknown budget"),
    ({"frequncy": 10}, "unknown [optimize] setting(s) frequncy"),
])
def test_optimize_settings_types(table, named):
    from deploykit.optimize.config import optimize_settings

    assert named in _fails(optimize_settings, table)


def test_optimize_skip_layers_string_is_one_layer():
    from deploykit.optimize.config import optimize_settings

    assert optimize_settings({"skip_layers": "dense,1"}).skip_layers == ("dense,1",)
    assert optimize_settings({"skip_layers": ["a", "b"], "prune": 1 / 2}).skip_layers == ("a", "b")


@pytest.mark.parametrize("suffix, text", [
    (".toml", '[train]\nepochs = "x"\n'),
    (".yaml", "train:\n  epochs: x\n"),
])
def test_fit_config_types(tmp_path, suffix, text):
    from deploykit.fit.config import load_train_config

    path = tmp_path / f"train{suffix}"
    path.write_text(text)
    assert "epochs: expected a whole number, got 'x'" in _fails(load_train_config, path)


def test_fit_config_unknown_keys_and_lists(tmp_path):
    from deploykit.fit.config import load_train_config, make_train_config

    assert "unknown [train] setting(s) epoch" in _fails(make_train_config, {"epoch": 3})
    assert "metrics[0]: expected a string" in _fails(make_train_config, {"metrics": [1]})
    (tmp_path / "t.yaml").write_text("train:\n  metrics: accuracy, mse\n  learning_rate: 1\n")
    cfg = load_train_config(tmp_path / "t.yaml")
    assert cfg.metrics == ("accuracy", "mse") and cfg.learning_rate == 1.0


def test_regression_thresholds_types(tmp_path):
    from deploykit.reporting import Thresholds

    (tmp_path / "r.toml").write_text('[regression]\nsize_increase = "x"\n')
    message = _fails(Thresholds.from_sources, str(tmp_path / "r.toml"))
    assert "r.toml: regression.size_increase: expected a number, got 'x'" in message
    (tmp_path / "u.toml").write_text("[regression]\nlatency_ration = 2\n")
    assert "unknown [regression] setting(s) latency_ration" in _fails(Thresholds.from_sources, str(tmp_path / "u.toml"))
    assert "regression.latency_ratio: must be a non-negative number" in _fails(Thresholds.from_sources, latency_ratio=-1)
    (tmp_path / "ok.toml").write_text("[regression]\nsize_increase = 1\n")
    th = Thresholds.from_sources(str(tmp_path / "ok.toml"), latency_ratio=3)
    assert th.size_increase == 1.0 and th.latency_ratio == 3.0 and th.parity_ratio == Thresholds().parity_ratio

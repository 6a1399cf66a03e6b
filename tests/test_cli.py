"""The CLI as users and CI pipelines see it: a child process, exit codes, stdout vs stderr."""
from __future__ import annotations

import fcntl
import json
import os
import shlex
import sys
from pathlib import Path

import click
import pytest

from deploykit.cli import EXAMPLES as MAIN_EXAMPLES
from deploykit.cli import parse
from deploykit.cli.build import EXAMPLES as BUILD_EXAMPLES

from .conftest import FAST_TOML, ROOT, run_cli

GOLDEN = Path(__file__).parent / "golden"


def _no_tf(*argv: str, cwd=None) -> str:
    """Run the CLI in-process in a child and fail if TensorFlow was imported."""
    code = (
        "import sys\nfrom deploykit.cli import main\n"
        f"sys.argv = ['deploykit', *{list(argv)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = [m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "COLUMNS": "100"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_help_and_targets_do_not_import_tensorflow():
    assert "build" in _no_tf("--help")
    assert "tflite" in _no_tf("targets")
    listed = json.loads(_no_tf("targets", "--json"))
    from deploykit.targets import REGISTRY

    assert [t["name"] for t in listed["targets"]] == list(REGISTRY)


@pytest.mark.parametrize("command", ["build", "validate"])
def test_help_matches_golden(command):
    """Regenerate with: COLUMNS=100 deploykit CMD --help > tests/golden/CMD_help.txt"""
    got = _no_tf(command, "--help")
    assert got == (GOLDEN / f"{command}_help.txt").read_text()


@pytest.mark.parametrize("command, examples", [((), MAIN_EXAMPLES), (("build",), BUILD_EXAMPLES)],
                         ids=["deploykit", "build"])
def test_help_shows_examples_that_parse(command, examples):
    """`deploykit --help` and `deploykit build --help` end with 3-5 examples, each a command line the
    real CLI accepts (options that exist, values where they take one, valid choices and types)."""
    shown = _no_tf(*command, "--help")
    assert "Examples:" in shown and 3 <= len(examples) <= 5
    for line, what in examples:
        assert f"    # {what}\n    {line}\n" in shown
        argv = shlex.split(line)
        assert argv[0] == "deploykit" and argv[1:1 + len(command)] == list(command)
        parse(argv[1:])


@pytest.mark.parametrize("argv", [["build", "--no-such-flag"], ["build", "--target"], ["buidl"],
                                  ["build", "--js-format", "columns"], ["build", "--jobs", "two"],
                                  ["validate"], ["build", "extra"]])
def test_parse_refuses_what_the_cli_refuses(argv):
    with pytest.raises(click.UsageError):
        parse(argv)


def test_quantize_help_names_every_registered_targets_variants(tmp_path):
    """From the registry, plugins included (the test-only numpy target, installed by entry point)."""
    from deploykit.targets import loadable

    from .numpy_target.target import NumpyTarget

    shown = " ".join(_no_tf("build", "--help").split())
    for name, cls in loadable().items():
        assert f"{name}: {','.join(cls.variants)}" in shown, name
    dist = tmp_path / "site" / "deploykit_numpy_target-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: deploykit-numpy-target\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[deploykit.targets]\nnumpy = numpy_target.target:NumpyTarget\n")
    env = {"PYTHONPATH": f"{tmp_path / 'site'}:{Path(__file__).parent}", "COLUMNS": "100"}
    plugged = run_cli("build", "--help", cwd=tmp_path, env=env)
    assert f"numpy: {','.join(NumpyTarget.variants)}" in " ".join(plugged.stdout.split()), plugged.stdout


def test_exit_codes_are_documented_in_the_readme():
    from deploykit.errors import EXIT_CODES

    readme = (ROOT / "README.md").read_text()
    for code in EXIT_CODES:
        assert f"| {code} |" in readme, f"exit code {code} missing from README"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "missing.keras"], "missing.keras: no such file or folder"),
        (["--target", "nosuch"], "unknown target 'nosuch'"),
        (["--quantize", "int4"], "--quantize: unknown variant(s) int4"),
        (["--config", "missing.toml"], "missing.toml: config file not found"),
        (["--jobs", "0"], "jobs: must be at least 1"),
        (["--target", "serving", "--no-container", "--model-name", "../x"],
         "--model-name '../x': a TF Serving model name"),
        (["--target", "serving", "--no-container", "--model-name", "my model"], "--model-name 'my model'"),
    ],
)
def test_bad_input_is_exit_2_with_one_line(tmp_path, args, message):
    proc = run_cli("build", *args, "--out", "out", "--json", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("deploykit: error:")]
    assert len(errors) == 1 and message in errors[0]
    body = json.loads(proc.stdout)["error"]
    assert body["exit_code"] == 2 and message in body["message"]
    assert not (tmp_path / "out").exists()


def test_bad_config_setting_names_file_and_field(tmp_path):
    (tmp_path / "dk.toml").write_text("colour = 'blue'\n")
    proc = run_cli("build", "--config", "dk.toml", cwd=tmp_path)
    assert proc.returncode == 2 and "dk.toml: unknown setting(s) colour" in proc.stderr


@pytest.mark.slow
def test_build_json_goes_to_stdout_and_progress_to_stderr(tmp_path):
    (tmp_path / "dk.toml").write_text(FAST_TOML)
    proc = run_cli("build", "--config", "dk.toml", "--quantize", "float32,int8", "--out", "out", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads(proc.stdout)
    assert manifest["passed"] and [a["variant"] for a in manifest["artifacts"]] == ["float32", "int8"]
    assert "[deploykit] convert 2 artifact(s) ok" in proc.stderr
    assert "E0000" not in proc.stderr and "cuda" not in proc.stderr, "native log noise must stay off the terminal"
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["config"]["hash"] == manifest["config"]["hash"]
    validated = run_cli("validate", "out", "--json", cwd=tmp_path)
    assert validated.returncode == 0 and json.loads(validated.stdout)["passed"] is True
    assert "PASS tflite/int8" in _no_tf("validate", "out", cwd=tmp_path)  # later CI jobs need no TensorFlow


@pytest.mark.slow
def test_budget_breach_is_exit_3_naming_output_metric_value_budget(tmp_path):
    (tmp_path / "dk.toml").write_text(FAST_TOML + "[budgets.tflite.dynamic]\nmax_abs = 0.0\n")
    proc = run_cli("build", "--config", "dk.toml", "--quantize", "dynamic", "--out", "out", "--json", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "tflite/dynamic: output 'digit': max_abs = " in proc.stderr and "budget <= 0" in proc.stderr
    body = json.loads(proc.stdout)
    assert body["error"]["code"] == "budget_failed" and body["manifest"]["passed"] is False
    assert not (tmp_path / "out").exists()


def test_missing_runtime_is_exit_4(tmp_path):
    """A stand-in `ai_edge_litert` package that fails to import plays the missing LiteRT runtime."""
    stub = tmp_path / "stub" / "ai_edge_litert"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('stand-in: LiteRT not installed')\n")
    proc = run_cli("build", "--out", "out", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "stub")})
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "pip install ai-edge-litert" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_model_carrying_code_is_exit_5(tmp_path, keras):
    inp = keras.Input((4,), name="x")
    model = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2)(inp))
    model.save(tmp_path / "lambda.keras")
    proc = run_cli("build", "--model", "lambda.keras", "--out", "out", cwd=tmp_path)
    assert proc.returncode == 5, proc.stderr[-2000:]
    assert "lambda.keras: refused" in proc.stderr and "--allow-unsafe-deserialization" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_locked_output_is_exit_75_quickly(tmp_path):
    lock = open(tmp_path / ".out.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        proc = run_cli("build", "--out", "out", "--json", cwd=tmp_path, timeout=60)
    finally:
        lock.close()
    assert proc.returncode == 75, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["error"]["code"] == "output_locked"


# ---------------------------------------------------------------- the serving target's flags

def test_model_name_makes_a_valid_image_tag():
    from deploykit.targets.serving.target import image_component

    assert image_component("digits") == "digits"
    assert image_component("Digits.v2") == "digits.v2"
    assert image_component("a_b-c__d--e") == "a_b-c__d--e"
    assert image_component("a-.b___c.") == "a-b-c"


@pytest.mark.slow
def test_model_name_names_the_served_model(tmp_path):
    from . import models

    models.dense(tmp_path / "dense.keras")
    proc = run_cli("build", "--model", "dense.keras", "--target", "serving", "--model-name", "Digits.v2",
                   "--no-container", "--no-latency", "--out", "out", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (artifact,) = json.loads(proc.stdout)["artifacts"]
    assert artifact["details"]["model_name"] == "Digits.v2"
    assert (tmp_path / "out" / "serving" / "models" / "Digits.v2" / "1" / "saved_model.pb").is_file()
    assert 'name: "Digits.v2"' in (tmp_path / "out" / "serving" / "models.config").read_text()


@pytest.mark.slow
@pytest.mark.docker
def test_missing_base_image_is_one_line_naming_no_container(tmp_path):
    from . import models

    models.dense(tmp_path / "dense.keras")
    proc = run_cli("build", "--model", "dense.keras", "--target", "serving", "--base-image", "nosuch/image:1",
                   "--no-latency", "--out", "out", cwd=tmp_path, env={"DEPLOYKIT_SERVING_BASE_IMAGE": ""})
    assert proc.returncode == 4, proc.stderr[-3000:]
    (error,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("deploykit: error:")]
    assert error.startswith("deploykit: error: --base-image nosuch/image:1: not available locally and cannot be pulled")
    assert "pass --no-container to validate in process only" in error and "docker load" in error
    assert not (tmp_path / "out").exists()

"""The one `module:function` resolver (deploykit.intake.builder): every failure of a user's builder
is bad input (exit 2) naming the spec, `SystemExit` included; fast, no TensorFlow."""
from __future__ import annotations

import sys

import pytest

from deploykit.errors import BadInputError
from deploykit.intake import builder

SOURCE = '''
import sys


def good(scale=1):
    return {"built": scale}


def exits_zero():
    sys.exit(0)


def exits_bare():
    raise SystemExit


def raises_value_error():
    raise ValueError("no weights here\\nsecond line")


def interrupted():
    raise KeyboardInterrupt


def refuses():
    from deploykit.errors import BadInputError

    raise BadInputError("builder says no")


not_a_function = 42
'''


@pytest.fixture
def work(tmp_path, monkeypatch):
    """`dkbuilders.py` (and a module that exits on import) in a fresh working folder, importable
    only because it is the working folder; sys.path and sys.modules are restored afterwards."""
    (tmp_path / "dkbuilders.py").write_text(SOURCE)
    (tmp_path / "dkexits_on_import.py").write_text("import sys\nsys.exit(0)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    names = ("dkbuilders", "dkexits_on_import")
    for name in names:
        sys.modules.pop(name, None)
    yield tmp_path
    for name in names:
        sys.modules.pop(name, None)


def bad_input(spec: str, what: str | None = None, *args) -> BadInputError:
    with pytest.raises(BadInputError) as info:
        builder.call(spec, what, *args)
    exc = info.value
    assert exc.exit_code == 2 and "\n" not in exc.message, exc.message
    return exc


def test_builder_from_the_working_folder_is_called_with_its_arguments(work):
    assert builder.call("dkbuilders:good") == {"built": 1}
    assert builder.call("dkbuilders:good", "model", 3) == {"built": 3}
    assert builder.resolve("dkbuilders:good", "model")(scale=2) == {"built": 2}


@pytest.mark.parametrize("func, says", [
    ("exits_zero", "raised SystemExit: 0"),
    ("exits_bare", "raised SystemExit"),
    ("raises_value_error", "raised ValueError: no weights here"),
])
def test_anything_the_builder_raises_is_exit_2_naming_spec_and_exception(work, func, says):
    spec = f"dkbuilders:{func}"
    exc = bad_input(spec)
    assert exc.message.startswith(f"{spec}: ") and says in exc.message, exc.message
    exc = bad_input(spec, "model")  # a config field leads, the spec is still named
    assert exc.message.startswith("model: ") and spec in exc.message and says in exc.message, exc.message


def test_a_module_that_exits_on_import_is_exit_2(work):
    exc = bad_input("dkexits_on_import:make", "dataset")
    assert exc.message.startswith("dataset: ") and "dkexits_on_import" in exc.message and "SystemExit" in exc.message


def test_missing_module(work):
    exc = bad_input("dk_no_such_module:make")
    assert exc.message.startswith("dk_no_such_module:make: ")
    assert "cannot import module 'dk_no_such_module'" in exc.message
    assert bad_input("dk_no_such_module:make", "model").message.startswith("model: cannot import module")


@pytest.mark.parametrize("func", ["missing", "not_a_function"])
def test_missing_function(work, func):
    exc = bad_input(f"dkbuilders:{func}")
    assert exc.message == f"dkbuilders:{func}: module 'dkbuilders' has no function '{func}'"


@pytest.mark.parametrize("spec", ["dkbuilders", "dkbuilders:", ":good"])
def test_not_a_module_function_spec(work, spec):
    assert "module:function" in bad_input(spec, "model").message


def test_keyboard_interrupt_and_bad_input_go_through(work):
    with pytest.raises(KeyboardInterrupt):
        builder.call("dkbuilders:interrupted")
    assert bad_input("dkbuilders:refuses", "model").message == "builder says no"


def test_model_source_builder_that_exits_is_a_load_failure(work):
    """Through intake: `deploykit build --model dkbuilders:exits_zero` is exit 2, never exit 0."""
    from deploykit.intake.loader import load
    from deploykit.intake.sniff import sniff

    with pytest.raises(BadInputError) as info:
        load(sniff("dkbuilders:exits_zero"))
    assert info.value.exit_code == 2
    assert info.value.message.startswith("dkbuilders:exits_zero: ") and "SystemExit" in info.value.message

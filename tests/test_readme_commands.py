"""The README says what the code does: every `deploykit ...` command in its fenced bash blocks
parses against the real CLI (a concrete command line fully: options, values, choices, types; a
synopsis such as `deploykit validate OUT [--latency] [--json]` option by option: each exists on
that command and takes a value exactly when the synopsis shows one), the cheap ones run for real,
every option of every command is documented, the settings examples load, and the exit-code table
is the CLI's. A renamed command, a removed flag or a new undocumented one fails here."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys

import click
import pytest

from deploykit.cli import cli, parse
from deploykit.cli.exits import INTERRUPTED
from deploykit.errors import EXIT_CODES

from .conftest import ROOT

README = (ROOT / "README.md").read_text()
# other programs' flags the README mentions (not deploykit's)
FOREIGN_FLAGS = {"--network": "docker run --network host, in the serving section",
                 "--port": "tensorflow_model_server's gRPC port flag, in the serving section's stand-in paragraph"}
# commands cheap enough to run for real (no model, no TensorFlow)
CHEAP = (["targets"], ["targets", "--json"], ["--version"], ["--help"])


def _blocks(lang: str) -> list[str]:
    """Every fenced block of `lang`, indented ones (inside list items) included, dedented."""
    found = []
    for indent, body in re.findall(rf"^( *)```{lang}\n(.*?)^\1```", README, re.M | re.S):
        found.append("\n".join(line[len(indent):] for line in body.splitlines()))
    return found


def _commands() -> list[str]:
    """`deploykit ...` command lines of the bash blocks: continuation lines joined, comments dropped,
    `a && b` split; `.venv/bin/deploykit` counts as `deploykit`."""
    lines: list[str] = []
    for block in _blocks("bash"):
        for raw in block.splitlines():
            line = re.sub(r"\s+#\s.*$", "", raw).rstrip()
            if not line.strip():
                continue
            if lines and (raw[:1].isspace() or lines[-1].endswith("\\")):
                lines[-1] = lines[-1].rstrip("\\") + " " + line.strip()
            else:
                lines.append(line.strip())
    commands = []
    for line in lines:
        for part in re.split(r"\s+(?:&&|\|\||;|\|)\s+", line):
            words = part.split()
            if words and (words[0] == "deploykit" or words[0].endswith("/deploykit")):
                commands.append(" ".join(["deploykit", *words[1:]]))
    return commands


def _is_synopsis(command: str) -> bool:
    return "[" in command or "..." in command or any("|" in w for w in command.split())


COMMANDS = _commands()
CONCRETE = [c for c in COMMANDS if not _is_synopsis(c)]
SYNOPSES = [c for c in COMMANDS if _is_synopsis(c)]


def test_the_readme_has_commands_of_both_kinds():
    assert len(CONCRETE) >= 5 and len(SYNOPSES) >= 6, (CONCRETE, SYNOPSES)


def test_every_command_is_in_a_readme_synopsis():
    shown = {c.split()[1] for c in SYNOPSES if len(c.split()) > 1}
    assert set(cli.commands) <= shown, f"no README synopsis for {sorted(set(cli.commands) - shown)}"


@pytest.mark.parametrize("command", CONCRETE)
def test_readme_command_parses(command):
    try:
        parse(shlex.split(command)[1:])
    except click.exceptions.Exit as exc:  # --help, --version
        assert exc.exit_code == 0
    except click.UsageError as exc:
        pytest.fail(f"README: `{command}`: {exc.format_message()}")


def _option(command: click.Command, flag: str) -> click.Parameter | None:
    return next((p for p in command.params if flag in p.opts or flag in p.secondary_opts), None)


@pytest.mark.parametrize("synopsis", SYNOPSES)
def test_readme_synopsis_matches_the_command(synopsis):
    words = synopsis.replace("[", " ").replace("]", " ").split()
    assert words[1] in cli.commands, f"README: `{synopsis}`: no command {words[1]!r}"
    command = cli.commands[words[1]]
    positional, i = [], 2
    while i < len(words):
        word = words[i]
        if word.startswith("--"):
            option = _option(command, word)
            assert option is not None, f"README: `{synopsis}`: deploykit {words[1]} has no option {word}"
            shown_value = i + 1 < len(words) and not words[i + 1].startswith(("--", "..."))
            takes_value = not (option.is_flag or option.count)
            assert shown_value == takes_value, (f"README: `{synopsis}`: {word} " +
                                                ("takes a value" if takes_value else "is a flag (no value)"))
            i += 2 if shown_value else 1
            continue
        if not word.startswith("..."):
            positional.append(word)
        i += 1
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    assert len(positional) == len(arguments), f"README: `{synopsis}`: {positional} for arguments {arguments}"


def test_cheap_readme_commands_run_for_real():
    """`deploykit targets` / `--version` as the README shows them, and `deploykit CMD --help` for
    every command, in a child process: they exit 0 and print something."""
    cheap = [argv for argv in (shlex.split(c)[1:] for c in CONCRETE) if argv in CHEAP]
    assert cheap, "the README's examples show a command that needs no model (deploykit targets)"
    for argv in [*cheap, *([name, "--help"] for name in cli.commands)]:
        proc = subprocess.run([sys.executable, "-m", "deploykit", *argv], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and proc.stdout.strip(), (argv, proc.stderr[-2000:])


def test_every_option_is_documented_and_every_documented_option_exists():
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9](?![\w-])", README))  # not `--js-*`
    known = {"--help", "--version"}
    for name, command in cli.commands.items():
        opts = {o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}
        known |= opts
        missing = sorted(opts - mentioned - {"--help"})
        assert not missing, f"README does not mention deploykit {name} {', '.join(missing)}"
    unknown = sorted(mentioned - known - set(FOREIGN_FLAGS))
    assert not unknown, f"README mentions options no command has: {', '.join(unknown)}"


def test_settings_examples_load(tmp_path):
    """Each TOML example is a settings file its command accepts (unknown keys are exit 2)."""
    from deploykit.config import load_config_file, make_config
    from deploykit.fit.config import load_train_config

    blocks = [b for b in _blocks("toml") if not b.lstrip().startswith("[project")]  # a pyproject snippet
    assert len(blocks) >= 4
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.npz").write_bytes(b"")  # the [train] example names it
    for i, block in enumerate(blocks):
        path = tmp_path / f"example{i}.toml"
        path.write_text(block)
        if re.search(r"^\[train\]", block, re.M):
            load_train_config(str(path))
        else:
            make_config(load_config_file(str(path)))


def test_exit_code_table_is_the_clis():
    section = README.split("## Failure behaviour", 1)[1].split("\n## ", 1)[0]
    codes = {int(c) for row in re.findall(r"^\| ([\d, ]+) \|", section, re.M) for c in row.split(",")}
    assert codes == set(EXIT_CODES) | set(INTERRUPTED)

"""CLI surface: help for every command, lazy TensorFlow imports, usage errors."""


import pytest

from helpers import run_cli
from tinycomp.cli import COMMAND_MODULES, cli

COMMANDS = list(cli.commands)


def test_every_command_module_is_registered():
    assert len(COMMANDS) == len(COMMAND_MODULES) >= 12


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = run_cli([command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output and f"tinycomp {command}" in result.output


@pytest.mark.parametrize("args, line", [
    (["train"], "Error: Missing option '-o' / '--output' (tinycomp train) — see 'tinycomp train --help'"),
    (["nosuch"], "Error: No such command 'nosuch' (tinycomp) — see 'tinycomp --help'"),
    (["eval", "m.tflite", "--jobs", "0"],
     "Error: Invalid value for '--jobs': 0 is not in the range x>=1 (tinycomp eval) — see 'tinycomp eval --help'"),
    (["quantize", "m.h5", "-o", "x.tflite", "--method", "int4"],
     "Error: Invalid value for '--method': 'int4' is not one of 'int8', 'int16x8', 'dynamic', 'float16' (tinycomp quantize) — "
     "see 'tinycomp quantize --help'"),
])
def test_usage_errors_are_one_error_line_with_exit_code_2(args, line):
    result = run_cli(args)
    assert result.exit_code == 2
    assert result.output.splitlines() == [line]


def test_cluster_needs_exactly_one_way_to_name_layers(tmp_path):
    result = run_cli(["cluster", "m.h5", "-o", tmp_path / "c.h5"])
    assert result.exit_code == 2
    assert result.output.strip() == ("Error: choose the layers with exactly one of --spec, --layer or --all (cluster) "
                                     "— e.g. --spec specs/clustering.yaml")

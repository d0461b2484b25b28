"""CLI surface: help for every command, lazy TensorFlow imports, usage errors."""

import subprocess
import sys

import pytest

from conftest import run_cli
from tinycomp.cli import COMMAND_MODULES, cli

COMMANDS = list(cli.commands)


def test_every_command_module_is_registered():
    assert len(COMMANDS) == len(COMMAND_MODULES) >= 12


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = run_cli([command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output and f"tinycomp {command}" in result.output


def test_help_of_every_command_does_not_import_tensorflow():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom tinycomp.cli import cli\n"
            "for args in [['--help'], *([name, '--help'] for name in cli.commands)]:\n"
            "    r = CliRunner().invoke(cli, args)\n"
            "    assert r.exit_code == 0, r.output\n"
            "    loaded = [m for m in ('tensorflow', 'tf_keras', 'tflite_micro') if m in sys.modules]\n"
            "    assert not loaded, f'{args}: imported {loaded}'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


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


def test_find_tensors_and_compress_run_without_tensorflow(pipeline, tmp_path):
    code = ("import sys\nfrom click.testing import CliRunner\nfrom tinycomp.cli import cli\n"
            f"r = CliRunner().invoke(cli, ['find-tensors', {str(pipeline['clustered_int8_tflite'])!r}, '--clustering',"
            f" {str(pipeline['clustered_yaml'])!r}, '-o', {str(tmp_path / 'c.yaml')!r}])\nassert r.exit_code == 0, r.output\n"
            f"r = CliRunner().invoke(cli, ['compress', {str(pipeline['clustered_int8_tflite'])!r}, '--spec',"
            f" {str(tmp_path / 'c.yaml')!r}, '-o', {str(tmp_path / 'c.tflite')!r}])\nassert r.exit_code == 0, r.output\n"
            "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "tinycomp", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and "tinycomp" in result.stdout


def test_cluster_needs_exactly_one_way_to_name_layers(tmp_path):
    result = run_cli(["cluster", "m.h5", "-o", tmp_path / "c.h5"])
    assert result.exit_code == 2
    assert result.output.strip() == ("Error: choose the layers with exactly one of --spec, --layer or --all (cluster) "
                                     "— e.g. --spec specs/clustering.yaml")
